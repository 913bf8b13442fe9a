//! `api-breaker`: a circuit breaker, as APISIX's `api-breaker` (priority
//! 1005, access and log phases).
//!
//! Requests are counted per Host and path (APISIX's key). Every
//! `unhealthy.failures`-th upstream answer with a status in
//! `unhealthy.http_statuses` opens the breaker: for 2, 4, 8... seconds (2 to
//! the number of times it opened, capped at `max_breaker_sec`), requests
//! are answered with `break_response_code` (and `break_response_body`,
//! `break_response_headers`) without asking the upstream. An upstream answer
//! in `healthy.http_statuses` after failures counts towards
//! `healthy.successes`; that many close the breaker and forget the
//! failures. Only answers from the upstream count (weir's own 502/504 after
//! its nodes failed included, as nginx's `$upstream_status`), not the
//! breaker's own.
//!
//! The state is shared by every worker thread of the process (each replica
//! has its own, as each APISIX instance does).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, LogCtx, Phase, Phases, Plugin,
    PluginSpec, RequestCtx,
};

use crate::limit::local::{Registry, Table};
use crate::template::Template;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "api-breaker",
    priority: 1005,
    phases: Phases::of(&[Phase::Access, Phase::Log]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    break_response_code: u16,
    break_response_body: Option<String>,
    #[serde(default)]
    break_response_headers: Vec<HeaderConf>,
    #[serde(default = "default_max")]
    max_breaker_sec: u64,
    #[serde(default)]
    unhealthy: UnhealthyConf,
    #[serde(default)]
    healthy: HealthyConf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderConf {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UnhealthyConf {
    http_statuses: Vec<u16>,
    failures: u64,
}

impl Default for UnhealthyConf {
    fn default() -> Self {
        UnhealthyConf {
            http_statuses: vec![500],
            failures: 3,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HealthyConf {
    http_statuses: Vec<u16>,
    successes: u64,
}

impl Default for HealthyConf {
    fn default() -> Self {
        HealthyConf {
            http_statuses: vec![200],
            successes: 3,
        }
    }
}

fn default_max() -> u64 {
    300
}

/// One Host and path's breaker.
#[derive(Debug, Default, Clone)]
struct Breaker {
    unhealthy: u64,
    healthy: u64,
    opened_at: Option<Instant>,
}

impl Breaker {
    fn forgotten(&self) -> bool {
        self.unhealthy == 0 && self.opened_at.is_none()
    }
}

/// Every breaker of the process, by Host and path.
static BREAKERS: Registry<Breaker> = Registry::new();

/// The one table of breakers, kept while any api-breaker is configured.
static TABLE: LazyLock<Arc<Table<Breaker>>> = LazyLock::new(|| BREAKERS.table("api-breaker"));

struct ApiBreaker {
    code: StatusCode,
    body: Option<Bytes>,
    headers: Vec<(HeaderName, Template)>,
    max_open: Duration,
    unhealthy_statuses: Vec<u16>,
    failures: u64,
    healthy_statuses: Vec<u16>,
    successes: u64,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if !(200..=599).contains(&c.break_response_code) {
        return Err(ConfigError::at(
            "break_response_code",
            "must be between 200 and 599",
        ));
    }
    let code = StatusCode::from_u16(c.break_response_code)
        .map_err(|_| ConfigError::at("break_response_code", "not a status code"))?;
    if c.max_breaker_sec < 3 {
        return Err(ConfigError::at("max_breaker_sec", "must be at least 3"));
    }
    let statuses = |list: &[u16], at: &str| -> Result<(), ConfigError> {
        if list.is_empty() {
            return Err(ConfigError::at(at, "must not be empty"));
        }
        for (i, s) in list.iter().enumerate() {
            if !(200..=599).contains(s) {
                return Err(ConfigError::at(
                    format!("{at}[{i}]"),
                    "must be between 200 and 599",
                ));
            }
        }
        Ok(())
    };
    statuses(&c.unhealthy.http_statuses, "unhealthy.http_statuses")?;
    statuses(&c.healthy.http_statuses, "healthy.http_statuses")?;
    if c.unhealthy.failures == 0 {
        return Err(ConfigError::at("unhealthy.failures", "must be at least 1"));
    }
    if c.healthy.successes == 0 {
        return Err(ConfigError::at("healthy.successes", "must be at least 1"));
    }
    let mut headers = Vec::new();
    for (i, h) in c.break_response_headers.iter().enumerate() {
        let name = HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
            ConfigError::at(
                format!("break_response_headers[{i}].key"),
                "not a valid header field name",
            )
        })?;
        headers.push((name, Template::parse(&h.value)));
    }
    Ok(Arc::new(ApiBreaker {
        code,
        body: c.break_response_body.map(Bytes::from),
        headers,
        max_open: Duration::from_secs(c.max_breaker_sec),
        unhealthy_statuses: c.unhealthy.http_statuses,
        failures: c.unhealthy.failures,
        healthy_statuses: c.healthy.http_statuses,
        successes: c.healthy.successes,
    }))
}

fn key(host: &str, path: &str) -> String {
    format!("{host}{path}")
}

impl ApiBreaker {
    /// How long the breaker stays open after its `times`-th opening.
    fn open_for(&self, times: u64) -> Duration {
        let secs = 1u64
            .checked_shl(u32::try_from(times).unwrap_or(64))
            .unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(self.max_open)
    }

    fn reply(&self, ctx: &RequestCtx<'_>) -> LocalReply {
        crate::template::plain_reply(self.code, self.body.clone(), &self.headers, ctx)
    }
}

impl Plugin for ApiBreaker {
    fn access(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        let host = String::from_utf8_lossy(ctx.view().host().unwrap_or_default()).into_owned();
        let k = key(&host, ctx.view().path());
        let now = Instant::now();
        let open = TABLE.with(&k, Breaker::default, Breaker::forgotten, |b| {
            match b.opened_at {
                Some(at) => now < at + self.open_for(b.unhealthy / self.failures),
                None => false,
            }
        });
        if open {
            Flow::Reply(self.reply(ctx))
        } else {
            Flow::Continue
        }
    }

    fn log(&self, log: &LogCtx<'_>) {
        let Some(status) = log.upstream_status else {
            return;
        };
        let path = log.uri.split_once('?').map_or(log.uri, |(p, _)| p);
        let k = key(log.host, path);
        let unhealthy = self.unhealthy_statuses.contains(&status);
        let healthy = self.healthy_statuses.contains(&status);
        if !unhealthy && !healthy {
            return;
        }
        let now = Instant::now();
        TABLE.with(&k, Breaker::default, Breaker::forgotten, |b| {
            if unhealthy {
                b.unhealthy += 1;
                b.healthy = 0;
                if b.unhealthy % self.failures == 0 {
                    b.opened_at = Some(now);
                }
            } else if b.unhealthy > 0 {
                b.healthy += 1;
                if b.healthy >= self.successes {
                    *b = Breaker::default();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn configuration_errors_name_the_field() {
        assert!(config_error(&SPEC, json!({}))
            .message
            .contains("break_response_code"));
        assert_eq!(
            config_error(&SPEC, json!({"break_response_code": 100})).path,
            "break_response_code"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"break_response_code": 502, "max_breaker_sec": 2})
            )
            .path,
            "max_breaker_sec"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"break_response_code": 502, "unhealthy": {"failures": 0}})
            )
            .path,
            "unhealthy.failures"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"break_response_code": 502, "healthy": {"http_statuses": [99]}})
            )
            .path,
            "healthy.http_statuses[0]"
        );
    }
}
