//! `limit-conn`: at most `conn` requests in flight per key, as APISIX's
//! `limit-conn` (priority 1003; APISIX counts in the access phase and
//! releases in the log phase), which is `resty.limit.conn`.
//!
//! A request raises its key's count. Above `conn + burst` it is refused and
//! not counted; above `conn` it is admitted but delayed by
//! `unit_delay * floor((count - 1) / conn)` seconds. `unit_delay` starts at
//! `default_conn_delay` and, unless `only_use_default_delay` is set, follows
//! the requests' latency (each finished request sets it to the mean of
//! itself and that request's time, delay excluded), as `resty.limit.conn`.
//!
//! The count is released when the request is over, whichever way it ends
//! (response sent, client gone, even while delayed): an admitted request's
//! slot is a value held by the request ([`RequestCtx::hold`]), released
//! when it is dropped.
//!
//! Counts live in this process (`policy: local`: exact across worker
//! threads, per replica) or in Redis (`redis`, `redis-cluster`: one count
//! for every replica; an atomic script counts, and the release is a
//! decrement sent in the background; the key expires `key_ttl` seconds
//! after its last admission, so a replica that died holding slots does not
//! hold them for ever). A count's key holds the route, a digest of the
//! plugin's configuration and the request's key.
//!
//! When the store fails: APISIX's bare 500 (weir's body for it,
//! `{"error_msg":"Internal Server Error"}`), or, with `allow_degradation`,
//! the request goes on uncounted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Script;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, RequestCtx, Then,
};

use crate::limit::local::{Registry, Table};
use crate::limit::redis::{RedisFields, Store};
use crate::limit::{conf_digest, KeyType, PolicyName, Rejection, RequestKey};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "limit-conn",
    priority: 1003,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// The fields of the plugin's own (the Redis fields come on top).
const FIELDS: &[&str] = &[
    "conn",
    "burst",
    "default_conn_delay",
    "only_use_default_delay",
    "key",
    "key_type",
    "rejected_code",
    "rejected_msg",
    "allow_degradation",
    "policy",
    "key_ttl",
];

/// Delays shorter than this are not waited for (as APISIX: 1 ms).
const MIN_DELAY: Duration = Duration::from_millis(1);

#[derive(Deserialize)]
struct Conf {
    conn: Option<u64>,
    burst: Option<u64>,
    default_conn_delay: Option<f64>,
    #[serde(default)]
    only_use_default_delay: bool,
    key: Option<String>,
    #[serde(default)]
    key_type: KeyType,
    #[serde(default = "default_rejected_code")]
    rejected_code: u16,
    rejected_msg: Option<String>,
    #[serde(default)]
    allow_degradation: bool,
    #[serde(default)]
    policy: PolicyName,
    #[serde(default = "default_key_ttl")]
    key_ttl: u64,
    #[serde(flatten)]
    redis: RedisFields,
}

fn default_rejected_code() -> u16 {
    503
}

fn default_key_ttl() -> u64 {
    3600
}

/// The in-flight counts of `limit-conn`.
static COUNTS: Registry<u64> = Registry::new();

#[derive(Clone)]
enum Counter {
    Local(Arc<Table<u64>>),
    Redis { store: Arc<Store>, ttl_secs: i64 },
}

struct LimitConn {
    conn: u64,
    burst: u64,
    /// `resty.limit.conn`'s `unit_delay`, seconds (an `f64`'s bits).
    unit_delay: Arc<AtomicU64>,
    /// `only_use_default_delay`: `unit_delay` stays `default_conn_delay`.
    fixed_delay: bool,
    key: RequestKey,
    digest: String,
    counter: Counter,
    rejection: Rejection,
    allow_degradation: bool,
}

fn build(conf: &Value, _ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    crate::limit::check_fields(conf, FIELDS)?;
    let c: Conf = parse_config(conf)?;
    let conn = c.conn.ok_or_else(|| ConfigError::at("conn", "required"))?;
    if conn == 0 {
        return Err(ConfigError::at("conn", "must be at least 1"));
    }
    let burst = c
        .burst
        .ok_or_else(|| ConfigError::at("burst", "required"))?;
    let delay = c
        .default_conn_delay
        .ok_or_else(|| ConfigError::at("default_conn_delay", "required"))?;
    if !(delay.is_finite() && delay > 0.0) {
        return Err(ConfigError::at(
            "default_conn_delay",
            "must be greater than 0 (seconds)",
        ));
    }
    if c.key_ttl == 0 {
        return Err(ConfigError::at("key_ttl", "must be at least 1 (seconds)"));
    }
    let key = c.key.ok_or_else(|| ConfigError::at("key", "required"))?;
    let key = RequestKey::new(&key, c.key_type, "key")?;
    let rejection = Rejection::new(c.rejected_code, c.rejected_msg)?;
    let digest = conf_digest(conf);
    let counter = match c.redis.target(c.policy)? {
        None => Counter::Local(COUNTS.table(&digest)),
        Some(t) => Counter::Redis {
            store: Store::for_target(&t),
            ttl_secs: i64::try_from(c.key_ttl).unwrap_or(i64::MAX),
        },
    };
    Ok(Arc::new(LimitConn {
        conn,
        burst,
        unit_delay: Arc::new(AtomicU64::new(delay.to_bits())),
        fixed_delay: c.only_use_default_delay,
        key,
        digest,
        counter,
        rejection,
        allow_degradation: c.allow_degradation,
    }))
}

/// Counts one request if there is room. KEYS[1]: the count. ARGV: the
/// most that may be in flight (conn + burst), the key's TTL (s). Returns
/// {admitted, count}.
static INCOMING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('incr', KEYS[1])
if n > tonumber(ARGV[1]) then
  redis.call('decr', KEYS[1])
  return {0, n - 1}
end
redis.call('expire', KEYS[1], ARGV[2])
return {1, n}
",
    )
});

/// Releases one request. KEYS[1]: the count. Returns {count}.
static LEAVING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('exists', KEYS[1]) == 0 then
  return {0}
end
local n = redis.call('decr', KEYS[1])
if n <= 0 then
  redis.call('del', KEYS[1])
end
return {n}
",
    )
});

/// An admitted request's place in its key's count: released when dropped.
struct Slot {
    counter: Counter,
    key: String,
    /// When the request was admitted, and the delay it was given (for the
    /// latency that tunes `unit_delay`).
    admitted: Instant,
    delay: Duration,
    /// `unit_delay` to tune; None with `only_use_default_delay`.
    unit_delay: Option<Arc<AtomicU64>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(unit) = &self.unit_delay {
            let latency = self.admitted.elapsed().saturating_sub(self.delay);
            let _ = unit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(((latency.as_secs_f64() + f64::from_bits(bits)) / 2.0).to_bits())
            });
        }
        match &self.counter {
            Counter::Local(table) => {
                table.with(&self.key, || 0, |n| *n == 0, |n| *n = n.saturating_sub(1))
            }
            Counter::Redis { store, .. } => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    tracing::warn!(
                        plugin = SPEC.name,
                        "no runtime to release a connection slot in Redis; it expires with key_ttl"
                    );
                    return;
                };
                let (store, key) = (store.clone(), std::mem::take(&mut self.key));
                runtime.spawn(async move {
                    // A failure is counted and logged by the store; the
                    // key's TTL bounds the leak.
                    let _ = store.eval(SPEC.name, &LEAVING, &[&key], &[]).await;
                });
            }
        }
    }
}

/// The delay of the request that made the count `n`, with `conn` allowed
/// and `unit` (`unit_delay`'s bits) per `conn` in excess.
fn delay_of(n: u64, conn: u64, unit: &AtomicU64) -> Duration {
    if n <= conn {
        return Duration::ZERO;
    }
    let unit = f64::from_bits(unit.load(Ordering::Relaxed));
    let units = ((n - 1) / conn.max(1)) as f64;
    Duration::try_from_secs_f64(unit * units).unwrap_or(Duration::MAX)
}

impl Slot {
    /// The slot of a request admitted now with `delay`.
    fn new(counter: Counter, key: String, delay: Duration, tune: Option<Arc<AtomicU64>>) -> Slot {
        Slot {
            counter,
            key,
            admitted: Instant::now(),
            delay,
            unit_delay: tune,
        }
    }
}

impl LimitConn {
    /// `unit_delay` when requests tune it (not `only_use_default_delay`).
    fn tuned(&self) -> Option<Arc<AtomicU64>> {
        (!self.fixed_delay).then(|| self.unit_delay.clone())
    }
}

impl Plugin for LimitConn {
    fn access(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        // Owned: the slot held until the request ends keeps it.
        let mut count_key = format!("route:{}:{}:", ctx.route_id(), self.digest);
        self.key.write_or_remote(ctx, &mut count_key);
        let most = self.conn.saturating_add(self.burst);
        match &self.counter {
            Counter::Local(table) => {
                let counted = table.with(
                    &count_key,
                    || 0,
                    |n| *n == 0,
                    |n| {
                        if *n >= most {
                            return None;
                        }
                        *n += 1;
                        Some(*n)
                    },
                );
                let Some(n) = counted else {
                    return Flow::Reply(self.rejection.reply());
                };
                let delay = delay_of(n, self.conn, &self.unit_delay);
                // Held first: a client that leaves during the delay
                // releases its slot too.
                ctx.hold(Box::new(Slot::new(
                    self.counter.clone(),
                    count_key,
                    delay,
                    self.tuned(),
                )));
                if delay < MIN_DELAY {
                    return Flow::Continue;
                }
                Flow::wait(async move {
                    tokio::time::sleep(delay).await;
                    Box::new(|_: &mut RequestCtx<'_>| Flow::Continue) as Then
                })
            }
            Counter::Redis { store, ttl_secs } => {
                let store = store.clone();
                let ttl = *ttl_secs;
                let most = i64::try_from(most).unwrap_or(i64::MAX);
                let redis_key = format!("plugin-limit-conn:v1:{count_key}");
                let rejection = self.rejection.clone();
                let degrade = self.allow_degradation;
                let (conn, unit_delay, tune) = (self.conn, self.unit_delay.clone(), self.tuned());
                let counter = self.counter.clone();
                Flow::wait(async move {
                    let answer = store
                        .eval(SPEC.name, &INCOMING, &[&redis_key], &[most, ttl])
                        .await;
                    let (admitted, n) = match answer.as_deref() {
                        Ok([admitted, n, ..]) => (*admitted == 1, u64::try_from(*n).unwrap_or(0)),
                        _ if degrade => {
                            return Box::new(|_: &mut RequestCtx<'_>| Flow::Continue) as Then
                        }
                        _ => {
                            return Box::new(|_: &mut RequestCtx<'_>| {
                                Flow::Reply(crate::limit::store_failed())
                            }) as Then
                        }
                    };
                    if !admitted {
                        return Box::new(move |_: &mut RequestCtx<'_>| {
                            Flow::Reply(rejection.reply())
                        }) as Then;
                    }
                    let delay = delay_of(n, conn, &unit_delay);
                    // Made before the delay: dropping this future (the
                    // client left) releases the slot.
                    let slot = Slot::new(counter, redis_key, delay, tune);
                    if delay >= MIN_DELAY {
                        tokio::time::sleep(delay).await;
                    }
                    Box::new(move |ctx: &mut RequestCtx<'_>| {
                        ctx.hold(Box::new(slot));
                        Flow::Continue
                    }) as Then
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
        let ok = json!({"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"});
        assert!(build(&ok, &BuildCtx::empty()).is_ok());
        let without = |field: &str| {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove(field);
            c
        };
        let with = |field: &str, v: Value| {
            let mut c = ok.clone();
            c[field] = v;
            c
        };
        for field in ["conn", "burst", "default_conn_delay", "key"] {
            assert_eq!(config_error(&SPEC, without(field)).path, field);
        }
        assert_eq!(config_error(&SPEC, with("conn", json!(0))).path, "conn");
        assert_eq!(config_error(&SPEC, with("burst", json!(-1))).path, "burst");
        assert_eq!(
            config_error(&SPEC, with("default_conn_delay", json!(0))).path,
            "default_conn_delay"
        );
        assert_eq!(
            config_error(&SPEC, with("key_ttl", json!(0))).path,
            "key_ttl"
        );
        assert_eq!(
            config_error(&SPEC, with("rejected_code", json!(600))).path,
            "rejected_code"
        );
        assert_eq!(
            config_error(&SPEC, with("policy", json!("redis"))).path,
            "redis_host"
        );
        assert_eq!(config_error(&SPEC, with("cnno", json!(1))).path, "cnno");
    }

    #[test]
    fn delays_grow_by_unit_per_conn_in_excess() {
        let conf = json!({"conn": 2, "burst": 4, "default_conn_delay": 0.5, "key": "k",
                          "only_use_default_delay": true});
        let c: Conf = parse_config(&conf).unwrap();
        let p = LimitConn {
            conn: 2,
            burst: 4,
            unit_delay: Arc::new(AtomicU64::new(0.5f64.to_bits())),
            fixed_delay: c.only_use_default_delay,
            key: RequestKey::Constant("k".into()),
            digest: String::new(),
            counter: Counter::Local(COUNTS.table("test-delays")),
            rejection: Rejection::new(503, None).unwrap(),
            allow_degradation: false,
        };
        let secs: Vec<f64> = (1..=6)
            .map(|n| delay_of(n, p.conn, &p.unit_delay).as_secs_f64())
            .collect();
        assert_eq!(secs, [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn a_dropped_slot_releases_its_count() {
        let table = COUNTS.table("test-release");
        let p = LimitConn {
            conn: 1,
            burst: 0,
            unit_delay: Arc::new(AtomicU64::new(0.5f64.to_bits())),
            fixed_delay: true,
            key: RequestKey::Constant("k".into()),
            digest: String::new(),
            counter: Counter::Local(table.clone()),
            rejection: Rejection::new(503, None).unwrap(),
            allow_degradation: false,
        };
        table.with("k", || 0, |_| false, |n| *n = 1);
        drop(Slot::new(
            p.counter.clone(),
            "k".into(),
            Duration::ZERO,
            p.tuned(),
        ));
        assert_eq!(table.with("k", || 7, |_| false, |n| *n), 0);
    }
}
