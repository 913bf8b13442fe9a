//! Counts shared by every replica (`policy: redis` / `redis-cluster`):
//! APISIX's connection fields, one multiplexed connection per server (or
//! cluster) shared by every plugin that names it, one atomic Lua script per
//! request, and failing fast while the store is away: after a failure, no
//! request waits on a reconnection until a jittered, growing backoff has
//! passed; meanwhile requests get the store error at once (or pass, with
//! `allow_degradation`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, RedisConnectionInfo, Script};
use serde::Deserialize;
use weir_plugin::ConfigError;

use super::PolicyName;

/// Store failures since start, by plugin (for `/metrics`).
static FAILURES: LazyLock<Mutex<HashMap<&'static str, u64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Store failures since start, by plugin name.
pub fn failures() -> Vec<(&'static str, u64)> {
    let mut v: Vec<_> = FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect();
    v.sort();
    v
}

fn count_failure(plugin: &'static str) {
    *FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(plugin)
        .or_default() += 1;
}

/// APISIX's Redis connection fields, as they appear flat in the plugin's
/// configuration (`redis_host`, `redis_port`...). Unknown fields are the
/// plugin's own to refuse.
#[derive(Deserialize, Default)]
pub struct RedisFields {
    redis_host: Option<String>,
    #[serde(default)]
    redis_port: Option<u16>,
    redis_username: Option<String>,
    redis_password: Option<String>,
    #[serde(default)]
    redis_database: Option<i64>,
    /// Milliseconds (APISIX's default 1000).
    #[serde(default)]
    redis_timeout: Option<u64>,
    #[serde(default)]
    redis_ssl: Option<bool>,
    #[serde(default)]
    redis_ssl_verify: Option<bool>,
    #[serde(default)]
    redis_keepalive_timeout: Option<u64>,
    #[serde(default)]
    redis_keepalive_pool: Option<u64>,
    redis_cluster_nodes: Option<Vec<String>>,
    redis_cluster_name: Option<String>,
    #[serde(default)]
    redis_cluster_ssl: Option<bool>,
    #[serde(default)]
    redis_cluster_ssl_verify: Option<bool>,
}

impl fmt::Debug for RedisFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFields")
            .field("redis_host", &self.redis_host)
            .field("redis_port", &self.redis_port)
            .field("redis_cluster_nodes", &self.redis_cluster_nodes)
            .finish_non_exhaustive()
    }
}

/// Where a store is and how to speak to it. Holds the password: never
/// printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    kind: TargetKind,
    username: Option<String>,
    password: Option<String>,
    database: i64,
    timeout: Duration,
    /// TLS (`redis_ssl` / `redis_cluster_ssl`): `Some(verify)`, where
    /// `verify` checks the server's certificate against the system's trust
    /// store (`*_ssl_verify`, off by default as in APISIX).
    tls: Option<bool>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum TargetKind {
    Single { host: String, port: u16 },
    Cluster { nodes: Vec<(String, u16)> },
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TargetKind::Single { host, port } => write!(f, "redis {host}:{port}")?,
            TargetKind::Cluster { nodes } => {
                let n: Vec<String> = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                write!(f, "redis cluster {}", n.join(","))?
            }
        }
        match self.tls {
            Some(true) => write!(f, " (TLS)"),
            Some(false) => write!(f, " (TLS, certificate not verified)"),
            None => Ok(()),
        }
    }
}

impl RedisFields {
    /// Checks the fields `policy` needs and refuses those it cannot use.
    /// None for `policy: local` (the fields are then ignored, as APISIX).
    pub fn target(&self, policy: PolicyName) -> Result<Option<Target>, ConfigError> {
        let timeout = Duration::from_millis(self.redis_timeout.unwrap_or(1000));
        if self.redis_timeout == Some(0) {
            return Err(ConfigError::at("redis_timeout", "must be at least 1 (ms)"));
        }
        let kind = match policy {
            PolicyName::Local => return Ok(None),
            PolicyName::Redis => {
                let host = self
                    .redis_host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| ConfigError::at("redis_host", "required with policy `redis`"))?;
                TargetKind::Single {
                    host,
                    port: self.redis_port.unwrap_or(6379),
                }
            }
            PolicyName::RedisCluster => {
                let Some(list) = self.redis_cluster_nodes.as_ref().filter(|n| !n.is_empty()) else {
                    return Err(ConfigError::at(
                        "redis_cluster_nodes",
                        "required with policy `redis-cluster` (a list of host:port)",
                    ));
                };
                if self.redis_cluster_name.as_deref().is_none_or(str::is_empty) {
                    return Err(ConfigError::at(
                        "redis_cluster_name",
                        "required with policy `redis-cluster`",
                    ));
                }
                let mut nodes = Vec::new();
                for (i, n) in list.iter().enumerate() {
                    let parsed = n
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
                        .filter(|(h, _)| !h.is_empty());
                    match parsed {
                        Some((h, p)) => nodes.push((h.to_owned(), p)),
                        None => {
                            return Err(ConfigError::at(
                                format!("redis_cluster_nodes[{i}]"),
                                "must be host:port",
                            ))
                        }
                    }
                }
                TargetKind::Cluster { nodes }
            }
        };
        let _ = (self.redis_keepalive_timeout, self.redis_keepalive_pool);
        let (ssl, verify) = match kind {
            TargetKind::Single { .. } => (self.redis_ssl, self.redis_ssl_verify),
            TargetKind::Cluster { .. } => (self.redis_cluster_ssl, self.redis_cluster_ssl_verify),
        };
        let tls = ssl.unwrap_or(false).then(|| verify.unwrap_or(false));
        Ok(Some(Target {
            kind,
            username: self.redis_username.clone().filter(|u| !u.is_empty()),
            password: self.redis_password.clone().filter(|p| !p.is_empty()),
            database: self.redis_database.unwrap_or(0),
            timeout,
            tls,
        }))
    }
}

/// Why the store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The last attempt failed recently: not retried yet.
    #[error("{0} is unreachable (backing off)")]
    BackingOff(String),
    /// It failed or did not answer in time.
    #[error("{target}: {message}")]
    Failed {
        /// The store.
        target: String,
        /// What happened (never a password).
        message: String,
    },
}

/// One store's connection, shared by every plugin that names it.
pub struct Store {
    target: Target,
    state: tokio::sync::Mutex<ConnState>,
    /// Failures in a row (for the backoff), and the last warning.
    failures_in_a_row: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

struct ConnState {
    conn: Option<ConnHandle>,
    retry_at: Option<Instant>,
}

#[derive(Clone)]
enum ConnHandle {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

static STORES: LazyLock<Mutex<HashMap<Target, Weak<Store>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Store {
    /// The store of `target`, shared with every live configuration that
    /// names the same one. Connects lazily, on the first request.
    pub fn for_target(target: &Target) -> Arc<Store> {
        let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(target).and_then(Weak::upgrade) {
            return s;
        }
        stores.retain(|_, s| s.strong_count() > 0);
        let s = Arc::new(Store {
            target: target.clone(),
            state: tokio::sync::Mutex::new(ConnState {
                conn: None,
                retry_at: None,
            }),
            failures_in_a_row: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        });
        stores.insert(target.clone(), Arc::downgrade(&s));
        s
    }

    async fn connection(&self) -> Result<ConnHandle, StoreError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.conn {
            return Ok(c.clone());
        }
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(StoreError::BackingOff(self.target.to_string()));
        }
        let connected = tokio::time::timeout(self.target.timeout, self.connect()).await;
        match connected {
            Ok(Ok(c)) => {
                state.conn = Some(c.clone());
                state.retry_at = None;
                Ok(c)
            }
            Ok(Err(e)) => {
                state.retry_at = Some(Instant::now() + self.backoff());
                Err(self.failed(e.to_string()))
            }
            Err(_) => {
                state.retry_at = Some(Instant::now() + self.backoff());
                Err(self.failed(format!("no connection within {:?}", self.target.timeout)))
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<ConnHandle> {
        let t = &self.target;
        let mut settings = RedisConnectionInfo::default().set_db(t.database);
        if let Some(u) = &t.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &t.password {
            settings = settings.set_password(p);
        }
        match &t.kind {
            TargetKind::Single { host, port } => {
                let addr = match t.tls {
                    None => redis::ConnectionAddr::Tcp(host.clone(), *port),
                    Some(verify) => redis::ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: !verify,
                        tls_params: None,
                    },
                };
                let info = addr.into_connection_info()?.set_redis_settings(settings);
                let client = redis::Client::open(info)?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(t.timeout))
                    .set_response_timeout(Some(t.timeout));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(ConnHandle::Single(c))
            }
            TargetKind::Cluster { nodes } => {
                let mut b = redis::cluster::ClusterClientBuilder::new(
                    nodes.iter().map(|(h, p)| (h.as_str(), *p)),
                )
                .connection_timeout(t.timeout)
                .response_timeout(t.timeout)
                .retries(1);
                if let Some(verify) = t.tls {
                    b = b.tls(if verify {
                        redis::TlsMode::Secure
                    } else {
                        redis::TlsMode::Insecure
                    });
                }
                if let Some(u) = &t.username {
                    b = b.username(u);
                }
                if let Some(p) = &t.password {
                    b = b.password(p);
                }
                let c = b.build()?.get_async_connection().await?;
                Ok(ConnHandle::Cluster(c))
            }
        }
    }

    /// 100 ms doubling per failure in a row, up to 5 s, with up to 50%
    /// jitter (replicas that lost the store together do not return in step).
    fn backoff(&self) -> Duration {
        let n = self.failures_in_a_row.load(Ordering::Relaxed).min(16);
        let base = Duration::from_millis(100)
            .saturating_mul(1 << n.min(6))
            .min(MAX_BACKOFF);
        let jitter = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(jitter)
    }

    fn failed(&self, message: String) -> StoreError {
        self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        StoreError::Failed {
            target: self.target.to_string(),
            message,
        }
    }

    /// Runs `script` with `keys` and `args`: one atomic step in the store.
    pub async fn eval(
        &self,
        plugin: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let result = self.eval_once(script, keys, args).await;
        match &result {
            Ok(_) => self.failures_in_a_row.store(0, Ordering::Relaxed),
            Err(e) => {
                count_failure(plugin);
                let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    tracing::warn!(plugin, error = %e, "limit store failed (logged at most every 10 s; see weir_limit_store_failures_total)");
                }
            }
        }
        result
    }

    async fn eval_once(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let handle = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let run = async {
            match handle {
                ConnHandle::Single(mut c) => invocation.invoke_async::<Vec<i64>>(&mut c).await,
                ConnHandle::Cluster(mut c) => invocation.invoke_async::<Vec<i64>>(&mut c).await,
            }
        };
        let answer = tokio::time::timeout(self.target.timeout, run).await;
        let error = match answer {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.target.timeout),
        };
        // The connection may be broken: make the next request reconnect
        // (after the backoff).
        let mut state = self.state.lock().await;
        state.conn = None;
        state.retry_at = Some(Instant::now() + self.backoff());
        Err(self.failed(error))
    }
}
