//! `limit-count`: at most `count` requests per `time_window` seconds per
//! key, as APISIX's `limit-count` (priority 1002, access phase).
//!
//! Counts live in this process (`policy: local`: exact across worker
//! threads, per replica) or in Redis (`redis`, `redis-cluster`: one count
//! for every replica, one atomic Lua script per request). A fixed window
//! starts at a key's first request and counts refused requests too (as
//! APISIX's); `window_type: sliding` weighs the previous window's count by
//! its overlap with the last `time_window` (the sliding-window-counter
//! estimate) and counts admitted requests only.
//!
//! A counter's key holds the route (or `group`), a digest of the plugin's
//! configuration and the request's key: a changed configuration starts from
//! fresh counts, an unchanged one keeps them across reloads.
//!
//! When the store fails: 500 `{"error_msg":"failed to limit count"}`, or,
//! with `allow_degradation`, the request goes on uncounted (APISIX's
//! behaviour). A failed store is retried after a jittered backoff; until
//! then requests do not wait on it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue, StatusCode};
use redis::Script;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx, Then,
};

use crate::limit::local::{self, Table, Window};
use crate::limit::redis::{RedisFields, Store};
use crate::limit::{conf_digest, with_key_buffer, KeyType, PolicyName, Rejection, RequestKey};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "limit-count",
    priority: 1002,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// The fields of the plugin's own (the Redis fields come on top).
const FIELDS: &[&str] = &[
    "count",
    "time_window",
    "window_type",
    "key",
    "key_type",
    "rules",
    "group",
    "rejected_code",
    "rejected_msg",
    "policy",
    "allow_degradation",
    "show_limit_quota_header",
    "sync_interval",
];

#[derive(Deserialize)]
struct Conf {
    count: Option<u64>,
    time_window: Option<u64>,
    #[serde(default)]
    window_type: WindowType,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default)]
    key_type: KeyType,
    rules: Option<Vec<RuleConf>>,
    group: Option<String>,
    #[serde(default = "default_rejected_code")]
    rejected_code: u16,
    rejected_msg: Option<String>,
    #[serde(default)]
    policy: PolicyName,
    #[serde(default)]
    allow_degradation: bool,
    #[serde(default = "yes")]
    show_limit_quota_header: bool,
    sync_interval: Option<f64>,
    #[serde(flatten)]
    redis: RedisFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConf {
    count: u64,
    time_window: u64,
    key: String,
    header_prefix: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WindowType {
    #[default]
    Fixed,
    Sliding,
}

fn default_key() -> String {
    "remote_addr".into()
}

fn default_rejected_code() -> u16 {
    503
}

fn yes() -> bool {
    true
}

/// `plugin_metadata` of `limit-count`: the quota headers' names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Metadata {
    limit_header: String,
    remaining_header: String,
    reset_header: String,
}

impl Default for Metadata {
    fn default() -> Metadata {
        Metadata {
            limit_header: "X-RateLimit-Limit".into(),
            remaining_header: "X-RateLimit-Remaining".into(),
            reset_header: "X-RateLimit-Reset".into(),
        }
    }
}

/// The quota fields' default names, made once (no copy per request).
const DEFAULT_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
];

/// One limit: the top-level one or a rule.
struct Limit {
    count: u64,
    /// `count` as a field value, made once.
    count_value: HeaderValue,
    window: Duration,
    key: RequestKey,
    /// With `rules`: falls back to nothing (the next rule) rather than to
    /// the client address.
    from_rule: bool,
    headers: Option<[HeaderName; 3]>,
}

enum Counter {
    Local(Arc<Table<Window>>),
    Redis(Arc<Store>),
}

struct LimitCount {
    limits: Vec<Limit>,
    sliding: bool,
    /// `group:<name>` or empty (then the route's id scopes the counts).
    group: Option<String>,
    digest: String,
    counter: Counter,
    rejection: Rejection,
    allow_degradation: bool,
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    crate::limit::check_fields(conf, FIELDS)?;
    let c: Conf = parse_config(conf)?;
    if c.sync_interval.is_some_and(|s| s != -1.0) {
        return Err(ConfigError::at(
            "sync_interval",
            "batched counting is not supported by weir; remove it (every request is counted at once)",
        ));
    }
    let meta: Metadata = match ctx.metadata(SPEC.name) {
        Some(m) => parse_config(m).map_err(|e| {
            ConfigError::absolute(format!("plugin_metadata.limit-count.{}", e.path), e.message)
        })?,
        None => Metadata::default(),
    };
    let header = |name: &str, at: &str| {
        if let Some(known) = DEFAULT_HEADERS
            .iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(name))
        {
            return Ok(known.clone());
        }
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::absolute(
                format!("plugin_metadata.limit-count.{at}"),
                "not a valid header field name",
            )
        })
    };
    let plain = [
        header(&meta.limit_header, "limit_header")?,
        header(&meta.remaining_header, "remaining_header")?,
        header(&meta.reset_header, "reset_header")?,
    ];
    let prefixed = |prefix: &str, at: &str| -> Result<[HeaderName; 3], ConfigError> {
        let make = |n: &str| {
            HeaderName::from_bytes(format!("X-{prefix}-{}", n.trim_start_matches("X-")).as_bytes())
                .map_err(|_| ConfigError::at(at, "makes an invalid header field name"))
        };
        Ok([
            make(&meta.limit_header)?,
            make(&meta.remaining_header)?,
            make(&meta.reset_header)?,
        ])
    };
    let show = c.show_limit_quota_header;
    let mut limits = Vec::new();
    match &c.rules {
        Some(rules) => {
            if rules.is_empty() {
                return Err(ConfigError::at("rules", "must not be empty"));
            }
            for (i, r) in rules.iter().enumerate() {
                let at = format!("rules[{i}]");
                positive(r.count, &format!("{at}.count"))?;
                positive(r.time_window, &format!("{at}.time_window"))?;
                let prefix = r
                    .header_prefix
                    .clone()
                    .unwrap_or_else(|| (i + 1).to_string());
                limits.push(Limit {
                    count: r.count,
                    count_value: HeaderValue::from(r.count),
                    window: Duration::from_secs(r.time_window),
                    key: RequestKey::new(&r.key, KeyType::VarCombination, &format!("{at}.key"))
                        .or_else(|_| {
                            RequestKey::new(&r.key, KeyType::Constant, &format!("{at}.key"))
                        })?,
                    from_rule: true,
                    headers: if show {
                        Some(prefixed(&prefix, &format!("{at}.header_prefix"))?)
                    } else {
                        None
                    },
                });
            }
        }
        None => {
            let count = c
                .count
                .ok_or_else(|| ConfigError::at("count", "required (or `rules`)"))?;
            let window = c
                .time_window
                .ok_or_else(|| ConfigError::at("time_window", "required (or `rules`)"))?;
            positive(count, "count")?;
            positive(window, "time_window")?;
            limits.push(Limit {
                count,
                count_value: HeaderValue::from(count),
                window: Duration::from_secs(window),
                key: RequestKey::new(&c.key, c.key_type, "key")?,
                from_rule: false,
                headers: show.then_some(plain),
            });
        }
    }
    let digest = conf_digest(conf);
    if let Some(g) = &c.group {
        if g.is_empty() {
            return Err(ConfigError::at("group", "must not be empty"));
        }
        // APISIX: the routes of one group share one counter, so they must
        // agree on what it counts.
        let groups = ctx.shared("limit-count-groups", |_| {
            Ok(Mutex::new(HashMap::<String, String>::new()))
        })?;
        let mut groups = groups.lock().unwrap_or_else(|e| e.into_inner());
        match groups.get(g) {
            Some(d) if *d != digest => {
                return Err(ConfigError::at(
                    "group",
                    format!("group {g:?} is configured differently elsewhere: every limit-count of one group must have the same configuration"),
                ))
            }
            Some(_) => {}
            None => {
                groups.insert(g.clone(), digest.clone());
            }
        }
    }
    let counter = match c.redis.target(c.policy)? {
        None => Counter::Local(local::WINDOWS.table(&digest)),
        Some(t) => Counter::Redis(Store::for_target(&t)),
    };
    Ok(Arc::new(LimitCount {
        limits,
        sliding: c.window_type == WindowType::Sliding,
        group: c.group,
        digest,
        counter,
        rejection: Rejection::new(c.rejected_code, c.rejected_msg)?,
        allow_degradation: c.allow_degradation,
    }))
}

fn positive(n: u64, at: &str) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(ConfigError::at(at, "must be at least 1"));
    }
    Ok(())
}

/// What one request's count came to.
struct Verdict {
    admitted: bool,
    limit: HeaderValue,
    remaining: u64,
    reset: Duration,
}

impl LimitCount {
    /// Writes the counter's key to `out` (`{scope}:{digest}:{rule}:{key}`,
    /// the scope being the group or the route) and returns the limit that
    /// applies; None when no rule's key is found.
    fn write_key<'s>(
        &'s self,
        ctx: &RequestCtx<'_>,
        out: &mut String,
    ) -> Option<(usize, &'s Limit)> {
        match &self.group {
            Some(g) => {
                out.push_str("group:");
                out.push_str(g);
            }
            None => {
                out.push_str("route:");
                out.push_str(ctx.route_id());
            }
        }
        out.push(':');
        out.push_str(&self.digest);
        out.push(':');
        let scope_len = out.len();
        for (i, l) in self.limits.iter().enumerate() {
            out.truncate(scope_len);
            // Writing to a String cannot fail.
            let _ = write!(out, "{i}:");
            if !l.from_rule {
                l.key.write_or_remote(ctx, out);
                return Some((i, l));
            }
            if l.key.write(ctx, out) {
                return Some((i, l));
            }
        }
        None
    }
}

/// Sets the quota headers and decides.
fn decide(
    ctx: &mut RequestCtx<'_>,
    headers: Option<&[HeaderName; 3]>,
    rejection: &Rejection,
    v: &Verdict,
) -> Flow {
    if let Some([limit, remaining, reset]) = headers {
        let reset_secs = v.reset.as_millis().div_ceil(1000);
        ctx.set_response_header(limit.clone(), v.limit.clone());
        ctx.set_response_header(
            remaining.clone(),
            HeaderValue::from(if v.admitted { v.remaining } else { 0 }),
        );
        ctx.set_response_header(
            reset.clone(),
            HeaderValue::from(u64::try_from(reset_secs).unwrap_or(u64::MAX)),
        );
    }
    if v.admitted {
        Flow::Continue
    } else {
        Flow::Reply(rejection.reply())
    }
}

/// Fixed window: the count and the time left, set on the key's first
/// request (APISIX's script, with milliseconds). Returns {used, pttl}.
static FIXED: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return {tonumber(ARGV[2]), tonumber(ARGV[1])}
end
return {redis.call('incrby', KEYS[1], ARGV[2]), ttl}
",
    )
});

/// Sliding window: the current and previous windows' counts (KEYS[1],
/// KEYS[2], one hash slot), the previous weighted by its overlap. ARGV:
/// limit, window ms, ms into the current window. Returns {admitted, used}.
static SLIDING: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local cur = tonumber(redis.call('get', KEYS[1]) or '0')
local prev = tonumber(redis.call('get', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local estimate = math.floor(prev * (window - elapsed) / window) + cur
if estimate >= limit then
  return {0, estimate}
end
redis.call('incr', KEYS[1])
redis.call('pexpire', KEYS[1], window * 2)
return {1, estimate + 1}
",
    )
});

impl Plugin for LimitCount {
    fn access(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        with_key_buffer(|counter_key| {
            let Some((_, limit)) = self.write_key(ctx, counter_key) else {
                return Flow::Continue;
            };
            match &self.counter {
                Counter::Local(table) => {
                    let c =
                        local::count(table, counter_key, limit.count, limit.window, self.sliding);
                    let v = Verdict {
                        admitted: c.admitted,
                        limit: limit.count_value.clone(),
                        remaining: c.remaining,
                        reset: c.reset,
                    };
                    decide(ctx, limit.headers.as_ref(), &self.rejection, &v)
                }
                Counter::Redis(store) => {
                    let store = store.clone();
                    let (count, window, sliding) = (limit.count, limit.window, self.sliding);
                    let count_value = limit.count_value.clone();
                    let headers = limit.headers.clone();
                    let rejection = self.rejection.clone();
                    let degrade = self.allow_degradation;
                    let base = format!("plugin-limit-count:v1:{counter_key}");
                    Flow::wait(async move {
                        let verdict =
                            redis_count(&store, &base, count, count_value, window, sliding).await;
                        Box::new(move |ctx: &mut RequestCtx<'_>| match verdict {
                            Some(v) => decide(ctx, headers.as_ref(), &rejection, &v),
                            None if degrade => Flow::Continue,
                            None => Flow::Reply(LocalReply::error_msg(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "failed to limit count",
                            )),
                        }) as Then
                    })
                }
            }
        })
    }
}

/// Counts one request in Redis; None when the store failed.
async fn redis_count(
    store: &Store,
    base: &str,
    count: u64,
    count_value: HeaderValue,
    window: Duration,
    sliding: bool,
) -> Option<Verdict> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    if !sliding {
        let r = store
            .eval(SPEC.name, &FIXED, &[base], &[window_ms, 1])
            .await
            .ok()?;
        let (used, pttl) = (*r.first()?, *r.get(1)?);
        return Some(Verdict {
            admitted: used <= limit,
            limit: count_value,
            remaining: u64::try_from(limit - used).unwrap_or(0),
            reset: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
        });
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let index = now_ms / window_ms.max(1);
    let elapsed = now_ms - index * window_ms;
    // One hash tag: both windows in one cluster slot.
    let current = format!("{{{base}}}:{index}");
    let previous = format!("{{{base}}}:{}", index - 1);
    let r = store
        .eval(
            SPEC.name,
            &SLIDING,
            &[&current, &previous],
            &[limit, window_ms, elapsed],
        )
        .await
        .ok()?;
    let (admitted, used) = (*r.first()? == 1, *r.get(1)?);
    Some(Verdict {
        admitted,
        limit: count_value,
        remaining: u64::try_from(limit - used).unwrap_or(0),
        reset: Duration::from_millis(u64::try_from(window_ms - elapsed).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn configuration_errors_name_the_field() {
        assert_eq!(
            config_error(&SPEC, json!({"time_window": 60})).path,
            "count"
        );
        assert_eq!(
            config_error(&SPEC, json!({"count": 0, "time_window": 60})).path,
            "count"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"count": 1, "time_window": 60, "policy": "redis"})
            )
            .path,
            "redis_host"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"count": 1, "time_window": 60, "policy": "redis-cluster",
                       "redis_cluster_nodes": ["a:1", "nope"], "redis_cluster_name": "c"})
            )
            .path,
            "redis_cluster_nodes[1]"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"count": 1, "time_window": 60, "rejected_code": 600})
            )
            .path,
            "rejected_code"
        );
        let e = config_error(&SPEC, json!({"count": 1, "time_window": 60, "cuont": 2}));
        assert!(e.message.contains("unknown field `cuont`"), "{e}");
        assert_eq!(
            config_error(
                &SPEC,
                json!({"count": 1, "time_window": 60, "sync_interval": 0.2})
            )
            .path,
            "sync_interval"
        );
        assert_eq!(config_error(&SPEC, json!({"rules": []})).path, "rules");
        assert_eq!(
            config_error(
                &SPEC,
                json!({"rules": [{"count": 1, "time_window": 0, "key": "$remote_addr"}]})
            )
            .path,
            "rules[0].time_window"
        );
    }

    #[test]
    fn redis_passwords_never_show() {
        let conf: Conf = parse_config(&json!({"count": 1, "time_window": 1, "policy": "redis",
            "redis_host": "127.0.0.1", "redis_password": "hunter2-secret"}))
        .unwrap();
        let t = conf.redis.target(PolicyName::Redis).unwrap().unwrap();
        assert!(!format!("{t} {t:?} {:?}", conf.redis).contains("hunter2"));
    }
}
