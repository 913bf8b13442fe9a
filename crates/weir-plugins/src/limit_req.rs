//! `limit-req`: at most `rate` requests per second per key, smoothed by a
//! leaky bucket, as APISIX's `limit-req` (priority 1001, access phase),
//! which is nginx's `limit_req` (`resty.limit.req`).
//!
//! Each key has a bucket: how many requests are in excess of the rate
//! (`excess`) and when the last admitted request came. A request drains the
//! bucket by `rate` per second elapsed and adds one:
//! `excess = max(excess - rate * elapsed + 1, 0)` (a key's first request
//! finds an empty bucket). Above `burst`, the request is refused and the
//! bucket is left as it was; otherwise it is admitted and the bucket kept,
//! and it is delayed by `excess / rate` seconds (the time it takes the
//! bucket to drain back to the rate) unless `nodelay` is set. The delay
//! suspends the request without blocking its thread.
//!
//! Buckets live in this process (`policy: local`: exact across worker
//! threads, per replica) or in Redis (`redis`, `redis-cluster`: one bucket
//! for every replica, updated by one atomic Lua script, with a TTL of the
//! time the fullest bucket takes to drain). A bucket's key holds the route,
//! a digest of the plugin's configuration and the request's key: a changed
//! configuration starts from empty buckets, an unchanged one keeps them
//! across reloads.
//!
//! When the store fails: APISIX's bare 500 (weir's body for it,
//! `{"error_msg":"Internal Server Error"}`), or, with `allow_degradation`,
//! the request goes on unlimited.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Script;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, RequestCtx, Then,
};

use crate::limit::local::{Registry, Table};
use crate::limit::redis::{RedisFields, Store};
use crate::limit::{conf_digest, with_key_buffer, KeyType, PolicyName, Rejection, RequestKey};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "limit-req",
    priority: 1001,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// The fields of the plugin's own (the Redis fields come on top).
const FIELDS: &[&str] = &[
    "rate",
    "burst",
    "key",
    "key_type",
    "rejected_code",
    "rejected_msg",
    "nodelay",
    "allow_degradation",
    "policy",
];

/// Delays shorter than this are not waited for (as APISIX: 1 ms).
const MIN_DELAY: Duration = Duration::from_millis(1);

#[derive(Deserialize)]
struct Conf {
    rate: Option<f64>,
    burst: Option<f64>,
    key: Option<String>,
    #[serde(default)]
    key_type: KeyType,
    #[serde(default = "default_rejected_code")]
    rejected_code: u16,
    rejected_msg: Option<String>,
    #[serde(default)]
    nodelay: bool,
    #[serde(default)]
    allow_degradation: bool,
    #[serde(default)]
    policy: PolicyName,
    #[serde(flatten)]
    redis: RedisFields,
}

fn default_rejected_code() -> u16 {
    503
}

/// A key's leaky bucket (`policy: local`).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// Requests in excess of the rate.
    excess: f64,
    /// The last admitted request; None for a bucket just made.
    last: Option<Instant>,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        excess: 0.0,
        last: None,
    };

    /// True when the bucket has drained: forgetting it changes nothing.
    fn drained(&self, rate: f64, now: Instant) -> bool {
        self.last
            .is_none_or(|l| now.duration_since(l).as_secs_f64() * rate >= self.excess + 1.0)
    }

    /// One request at `now`: its excess if admitted (the bucket then
    /// keeps it), None if refused (the bucket is unchanged).
    fn incoming(&mut self, rate: f64, burst: f64, now: Instant) -> Option<f64> {
        let excess = match self.last {
            None => 0.0,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                let excess = (self.excess - rate * elapsed + 1.0).max(0.0);
                if excess > burst {
                    return None;
                }
                excess
            }
        };
        *self = Bucket {
            excess,
            last: Some(now),
        };
        Some(excess)
    }
}

/// The buckets of `limit-req`.
static BUCKETS: Registry<Bucket> = Registry::new();

enum Counter {
    Local(Arc<Table<Bucket>>),
    Redis(Arc<Store>),
}

struct LimitReq {
    rate: f64,
    burst: f64,
    key: RequestKey,
    nodelay: bool,
    digest: String,
    counter: Counter,
    rejection: Rejection,
    allow_degradation: bool,
}

fn build(conf: &Value, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    crate::limit::check_fields(conf, FIELDS)?;
    let c: Conf = parse_config(conf)?;
    let rate = c.rate.ok_or_else(|| ConfigError::at("rate", "required"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ConfigError::at("rate", "must be greater than 0"));
    }
    let burst = c
        .burst
        .ok_or_else(|| ConfigError::at("burst", "required"))?;
    if !(burst.is_finite() && burst >= 0.0) {
        return Err(ConfigError::at("burst", "must be at least 0"));
    }
    let key = c.key.ok_or_else(|| ConfigError::at("key", "required"))?;
    let key = RequestKey::new(&key, c.key_type, "key")?;
    let rejection = Rejection::new(c.rejected_code, c.rejected_msg)?;
    let digest = conf_digest(conf);
    let counter = match c.redis.target(c.policy)? {
        None => Counter::Local(BUCKETS.table(&digest)),
        Some(t) => Counter::Redis(Store::for_target(&t)),
    };
    Ok(Arc::new(LimitReq {
        rate,
        burst,
        key,
        nodelay: c.nodelay,
        digest,
        counter,
        rejection,
        allow_degradation: c.allow_degradation,
    }))
}

/// The leaky bucket in Redis, in thousandths of a request (as
/// `resty.limit.req`). KEYS[1]: a hash {excess, last}. ARGV: rate and burst
/// (thousandths), now (ms), TTL (ms). Returns {admitted, excess}.
static INCOMING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local state = redis.call('hmget', KEYS[1], 'excess', 'last')
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local excess = 0
if state[1] and state[2] then
  local elapsed = math.abs(now - tonumber(state[2]))
  excess = math.max(tonumber(state[1]) - rate * elapsed / 1000 + 1000, 0)
  if excess > burst then
    return {0, math.floor(excess)}
  end
end
excess = math.floor(excess)
redis.call('hset', KEYS[1], 'excess', excess, 'last', now)
redis.call('pexpire', KEYS[1], ARGV[4])
return {1, excess}
",
    )
});

/// What the bucket decided: refused, or admitted after this delay.
enum Verdict {
    Refused,
    Admitted(Duration),
}

impl LimitReq {
    fn delay(&self, excess: f64) -> Duration {
        if self.nodelay {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(excess / self.rate).unwrap_or(Duration::MAX)
    }

    /// One request in Redis; None when the store failed.
    async fn redis_incoming(
        store: &Store,
        key: &str,
        rate: f64,
        burst: f64,
    ) -> Option<(bool, f64)> {
        let rate_milli = (rate * 1000.0).round().max(1.0) as i64;
        let burst_milli = (burst * 1000.0).round() as i64;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // The fullest bucket (burst + 1) drains in (burst + 1) / rate s.
        let ttl_ms = (burst_milli.saturating_add(1000))
            .saturating_mul(1000)
            .checked_div(rate_milli)
            .unwrap_or(i64::MAX)
            .saturating_add(1000);
        let r = store
            .eval(
                SPEC.name,
                &INCOMING,
                &[key],
                &[rate_milli, burst_milli, now_ms, ttl_ms],
            )
            .await
            .ok()?;
        let (admitted, excess_milli) = (*r.first()? == 1, *r.get(1)?);
        Some((admitted, excess_milli as f64 / 1000.0))
    }
}

/// Waits `delay` (if it is worth it), then goes on.
fn after(delay: Duration) -> Flow {
    if delay < MIN_DELAY {
        return Flow::Continue;
    }
    Flow::wait(async move {
        tokio::time::sleep(delay).await;
        Box::new(|_: &mut RequestCtx<'_>| Flow::Continue) as Then
    })
}

impl Plugin for LimitReq {
    fn access(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        with_key_buffer(|bucket_key| self.count(ctx, bucket_key))
    }
}

impl LimitReq {
    /// Counts the request in its bucket, whose key (`route:{id}:{digest}:
    /// {key}`) is built in `bucket_key`.
    fn count(&self, ctx: &mut RequestCtx<'_>, bucket_key: &mut String) -> Flow {
        bucket_key.push_str("route:");
        bucket_key.push_str(ctx.route_id());
        bucket_key.push(':');
        bucket_key.push_str(&self.digest);
        bucket_key.push(':');
        self.key.write_or_remote(ctx, bucket_key);
        match &self.counter {
            Counter::Local(table) => {
                let now = Instant::now();
                let (rate, burst) = (self.rate, self.burst);
                let verdict = table.with(
                    bucket_key,
                    || Bucket::EMPTY,
                    |b| b.drained(rate, now),
                    |b| match b.incoming(rate, burst, now) {
                        Some(excess) => Verdict::Admitted(self.delay(excess)),
                        None => Verdict::Refused,
                    },
                );
                match verdict {
                    Verdict::Refused => Flow::Reply(self.rejection.reply()),
                    Verdict::Admitted(delay) => after(delay),
                }
            }
            Counter::Redis(store) => {
                let store = store.clone();
                let (rate, burst, nodelay) = (self.rate, self.burst, self.nodelay);
                let rejection = self.rejection.clone();
                let degrade = self.allow_degradation;
                let redis_key = format!("plugin-limit-req:v1:{bucket_key}");
                Flow::wait(async move {
                    let answer = LimitReq::redis_incoming(&store, &redis_key, rate, burst).await;
                    let flow: fn(&mut RequestCtx<'_>) -> Flow = |_| Flow::Continue;
                    match answer {
                        Some((true, excess)) => {
                            if !nodelay {
                                let delay = Duration::try_from_secs_f64(excess / rate)
                                    .unwrap_or(Duration::MAX);
                                if delay >= MIN_DELAY {
                                    tokio::time::sleep(delay).await;
                                }
                            }
                            Box::new(flow) as Then
                        }
                        Some((false, _)) => {
                            Box::new(move |_: &mut RequestCtx<'_>| Flow::Reply(rejection.reply()))
                                as Then
                        }
                        None if degrade => Box::new(flow) as Then,
                        None => Box::new(|_: &mut RequestCtx<'_>| {
                            Flow::Reply(crate::limit::store_failed())
                        }) as Then,
                    }
                })
            }
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
        assert_eq!(
            config_error(&SPEC, json!({"burst": 1, "key": "remote_addr"})).path,
            "rate"
        );
        assert_eq!(
            config_error(&SPEC, json!({"rate": 0, "burst": 1, "key": "remote_addr"})).path,
            "rate"
        );
        assert_eq!(
            config_error(&SPEC, json!({"rate": 1, "key": "remote_addr"})).path,
            "burst"
        );
        assert_eq!(
            config_error(&SPEC, json!({"rate": 1, "burst": -1, "key": "remote_addr"})).path,
            "burst"
        );
        assert_eq!(
            config_error(&SPEC, json!({"rate": 1, "burst": 1})).path,
            "key"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"rate": 1, "burst": 1, "key": "k", "rejected_code": 100})
            )
            .path,
            "rejected_code"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"rate": 1, "burst": 1, "key": "k", "policy": "redis"})
            )
            .path,
            "redis_host"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"rate": 1, "burst": 1, "key": "k", "nodleay": true})
            )
            .path,
            "nodleay"
        );
        assert!(build(
            &json!({"rate": 0.5, "burst": 2.5, "key": "remote_addr"}),
            &BuildCtx::empty()
        )
        .is_ok());
    }

    #[test]
    fn the_bucket_leaks_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::EMPTY;
        // rate 2/s, burst 2: three at once pass with excess 0, 1, 2.
        assert_eq!(b.incoming(2.0, 2.0, t0), Some(0.0));
        assert_eq!(b.incoming(2.0, 2.0, t0), Some(1.0));
        assert_eq!(b.incoming(2.0, 2.0, t0), Some(2.0));
        assert_eq!(b.incoming(2.0, 2.0, t0), None);
        // Half a second drains one request.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.incoming(2.0, 2.0, later), Some(2.0));
        assert!(!b.drained(2.0, later + Duration::from_millis(1000)));
        assert!(b.drained(2.0, later + Duration::from_millis(1500)));
    }
}
