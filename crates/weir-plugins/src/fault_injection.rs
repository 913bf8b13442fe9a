//! `fault-injection`: delays requests and answers some with an error, as
//! APISIX's `fault-injection` (priority 11000, rewrite phase), to try how
//! clients and downstream services cope.
//!
//! `delay` waits `duration` seconds before the request goes on (without
//! holding a thread); `abort` answers with `http_status`, `body` and
//! `headers` instead of proxying. Each applies to `percentage` percent of
//! the requests (all without it) and only when its `vars` hold (any of its
//! items, each a list of expressions that must all hold). A request may be
//! delayed and then aborted, as in APISIX.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, StatusCode};
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;
use weir_config::vars::Vars;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx, Then,
};

use crate::template::Template;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "fault-injection",
    priority: 11000,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    abort: Option<AbortConf>,
    delay: Option<DelayConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AbortConf {
    http_status: u16,
    body: Option<String>,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    percentage: Option<u8>,
    vars: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayConf {
    duration: f64,
    percentage: Option<u8>,
    vars: Option<Vec<Value>>,
}

/// When a fault applies: a share of requests, among those its `vars` admit.
struct Condition {
    percentage: Option<u8>,
    vars: Vec<Vars>,
}

impl Condition {
    fn new(
        percentage: Option<u8>,
        vars: Option<Vec<Value>>,
        at: &str,
    ) -> Result<Self, ConfigError> {
        if let Some(p) = percentage {
            if !(1..=100).contains(&p) {
                return Err(ConfigError::at(
                    format!("{at}.percentage"),
                    "must be between 1 and 100",
                ));
            }
        }
        let vars = vars
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Vars::from_value(v)
                    .map_err(|e| ConfigError::at(format!("{at}.vars[{i}]{}", e.path), e.message))
            })
            .collect::<Result<_, _>>()?;
        Ok(Condition { percentage, vars })
    }

    fn holds(&self, ctx: &RequestCtx<'_>) -> bool {
        let vars_hold =
            self.vars.is_empty() || self.vars.iter().any(|v| v.eval(&crate::CtxVars(ctx)));
        vars_hold
            && self
                .percentage
                .is_none_or(|p| rand::rng().random_range(1..=100u8) <= p)
    }
}

struct Abort {
    status: StatusCode,
    body: Option<Template>,
    headers: Vec<(HeaderName, Template)>,
    when: Condition,
}

struct Delay {
    duration: Duration,
    when: Condition,
}

struct FaultInjection {
    abort: Option<Arc<Abort>>,
    delay: Option<Delay>,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if c.abort.is_none() && c.delay.is_none() {
        return Err(ConfigError::whole("needs `abort` or `delay` (or both)"));
    }
    let abort = match c.abort {
        None => None,
        Some(a) => {
            if !(200..=599).contains(&a.http_status) {
                return Err(ConfigError::at(
                    "abort.http_status",
                    "must be between 200 and 599",
                ));
            }
            let status = StatusCode::from_u16(a.http_status)
                .map_err(|_| ConfigError::at("abort.http_status", "not a status code"))?;
            let mut headers = Vec::new();
            for (name, v) in &a.headers {
                let at = format!("abort.headers.{name}");
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ConfigError::at(&at, "not a valid header field name"))?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(ConfigError::at(at, "must be a string or a number")),
                };
                headers.push((name, Template::parse(&text)));
            }
            Some(Arc::new(Abort {
                status,
                body: a.body.as_deref().map(Template::parse),
                headers,
                when: Condition::new(a.percentage, a.vars, "abort")?,
            }))
        }
    };
    let delay = match c.delay {
        None => None,
        Some(d) => {
            if !(d.duration.is_finite() && d.duration > 0.0 && d.duration <= 86_400.0) {
                return Err(ConfigError::at(
                    "delay.duration",
                    "must be a number of seconds above 0 (at most a day)",
                ));
            }
            Some(Delay {
                duration: Duration::from_secs_f64(d.duration),
                when: Condition::new(d.percentage, d.vars, "delay")?,
            })
        }
    };
    Ok(Arc::new(FaultInjection { abort, delay }))
}

impl Abort {
    fn reply(&self, ctx: &RequestCtx<'_>) -> LocalReply {
        let body = self.body.as_ref().map(|b| Bytes::from(b.render(ctx, None)));
        crate::template::plain_reply(self.status, body, &self.headers, ctx)
    }
}

impl Plugin for FaultInjection {
    fn rewrite(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        // Whether each fault applies is decided now, on the request as it
        // came, as APISIX does.
        let delay = self
            .delay
            .as_ref()
            .filter(|d| d.when.holds(ctx))
            .map(|d| d.duration);
        let abort = self.abort.as_ref().filter(|a| a.when.holds(ctx)).cloned();
        match (delay, abort) {
            (None, None) => Flow::Continue,
            (None, Some(a)) => Flow::Reply(a.reply(ctx)),
            (Some(d), abort) => Flow::wait(async move {
                tokio::time::sleep(d).await;
                Box::new(move |ctx: &mut RequestCtx<'_>| match abort {
                    Some(a) => Flow::Reply(a.reply(ctx)),
                    None => Flow::Continue,
                }) as Then
            }),
        }
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
            .contains("`abort` or `delay`"));
        assert_eq!(
            config_error(&SPEC, json!({"abort": {"http_status": 100}})).path,
            "abort.http_status"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"abort": {"http_status": 500, "percentage": 0}})
            )
            .path,
            "abort.percentage"
        );
        assert_eq!(
            config_error(&SPEC, json!({"delay": {"duration": 0}})).path,
            "delay.duration"
        );
        assert!(config_error(
            &SPEC,
            json!({"delay": {"duration": 1, "vars": [[["arg_x", "=~", "1"]]]}})
        )
        .path
        .starts_with("delay.vars[0]"));
        assert_eq!(
            config_error(
                &SPEC,
                json!({"abort": {"http_status": 500, "headers": {"bad name": "x"}}})
            )
            .path,
            "abort.headers.bad name"
        );
    }
}
