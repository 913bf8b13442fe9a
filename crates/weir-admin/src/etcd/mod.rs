//! `config_provider: etcd`: the configuration lives in etcd in APISIX's
//! layout (`<prefix>/<resource>/<id>`, one JSON value each).
//!
//! - [`client`]: etcd's v3 JSON gateway over hyper.
//! - [`sync`]: reads the whole prefix, then watches it; every watch answer
//!   is one change set for the hub (validated, compiled, swapped in at once).
//! - [`write`]: the Admin API's writes, compare-and-swap transactions.
//! - [`own`]: a write compiled once, reused when its watch event comes back.
//! - [`EtcdSource`]: the connection state the control API and `/metrics`
//!   show.

mod apply;
pub mod client;
pub(crate) mod own;
pub mod sync;
mod tls;
pub mod write;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_config::EtcdSettings;

pub use client::{EtcdClient, EtcdError};

use crate::kind::PREFIX;

/// What the control API shows of the etcd source. Never holds a secret.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `etcd`.
    pub provider: &'static str,
    /// The etcd URLs.
    pub hosts: Vec<String>,
    /// The key prefix.
    pub prefix: String,
    /// A watch is established.
    pub connected: bool,
    /// The whole prefix was read once since start.
    pub synced: bool,
    /// The last revision applied.
    pub revision: i64,
    /// etcd's cluster id (a new data directory is a new cluster).
    pub cluster_id: String,
    /// The last error, even if it is over (see `recovered_at`).
    pub last_error: Option<String>,
    /// When it happened (seconds since the epoch).
    pub last_error_at: Option<u64>,
    /// When the connection came back after `last_error`.
    pub recovered_at: Option<u64>,
    /// Why what is served is not what etcd holds, when it is not.
    pub stale: Option<String>,
    /// Stored values skipped because they are invalid (their last good
    /// version, if any, is served).
    pub invalid_keys: Vec<String>,
    /// Watch requests opened since start (one more after each
    /// `deployment.etcd.watch_timeout`, reconnection or re-read).
    pub watches: u64,
}

/// The timing settings of `deployment.etcd`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A watch request is opened again after this long.
    pub watch_timeout: Duration,
    /// The longest wait between two tries after a failure.
    pub resync_delay: Duration,
    /// The liveness probe's timeout.
    pub health_check_timeout: Duration,
    /// Failed reads before start-up gives up (without a warm start);
    /// `None`: never.
    pub startup_tries: Option<u64>,
}

/// The etcd source of one hub: its client and its state.
#[derive(Debug)]
pub struct EtcdSource {
    /// The client.
    pub client: EtcdClient,
    /// etcd's key prefix (`/apisix`).
    pub prefix: String,
    status: Mutex<SourceStatus>,
    applied: tokio::sync::watch::Sender<i64>,
    synced: tokio::sync::watch::Sender<bool>,
    errors_logged: Mutex<Option<Instant>>,
    /// The timing settings.
    pub timing: Timing,
    /// A warm-start configuration serves (set by [`EtcdSource::mark_stale`]).
    warm: std::sync::atomic::AtomicBool,
    /// Why start-up gave up reading etcd, once it did.
    gave_up: tokio::sync::watch::Sender<Option<String>>,
}

fn secs(s: f64, min: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(min, 3600.0)
    } else {
        min
    })
}

/// Seconds since the epoch.
fn now() -> u64 {
    crate::ops::now()
}

/// How often a persisting failure is logged again.
const LOG_EVERY: Duration = Duration::from_secs(30);

impl EtcdSource {
    /// The source for `deployment.etcd` (nothing is connected yet); fails
    /// when the TLS files cannot be used.
    pub fn new(settings: &EtcdSettings) -> Result<EtcdSource, String> {
        let status = SourceStatus {
            provider: "etcd",
            hosts: settings.host.clone(),
            prefix: settings.prefix.clone(),
            ..SourceStatus::default()
        };
        let client = EtcdClient::new(settings)?;
        let timing = Timing {
            watch_timeout: secs(settings.watch_timeout, 0.1),
            resync_delay: secs(settings.resync_delay, 0.01),
            health_check_timeout: secs(settings.health_check_timeout, 0.05),
            startup_tries: settings
                .startup_retry
                .map(|n| u64::from(n.max(1)) * client.host_count().max(1) as u64),
        };
        Ok(EtcdSource {
            client,
            prefix: settings.prefix.clone(),
            status: Mutex::new(status),
            applied: tokio::sync::watch::channel(0).0,
            synced: tokio::sync::watch::channel(false).0,
            errors_logged: Mutex::new(None),
            timing,
            warm: std::sync::atomic::AtomicBool::new(false),
            gave_up: tokio::sync::watch::channel(None).0,
        })
    }

    /// Waits until start-up gives up reading etcd
    /// (`deployment.etcd.startup_retry`, without a warm start); the reason.
    /// Never returns when it does not.
    pub async fn wait_gave_up(&self) -> String {
        let mut rx = self.gave_up.subscribe();
        let why = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|why| why.clone());
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// Start-up reads failed `tries` times in a row (the last with `e`):
    /// true when it should give up now.
    pub(crate) fn startup_gives_up(&self, tries: u64, e: &EtcdError) -> bool {
        let Some(limit) = self.timing.startup_tries else {
            return false;
        };
        if tries < limit || self.is_synced() || self.warm.load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let why = format!(
            "etcd could not be read at start after {tries} tries (deployment.etcd.startup_retry: {} per host, {} host(s)) and no warm-start configuration was loaded (gateway.state_dir): {e}",
            limit / self.client.host_count().max(1) as u64,
            self.client.host_count()
        );
        tracing::error!("{why}");
        self.gave_up.send_replace(Some(why));
        true
    }

    /// One more watch request was opened.
    pub(crate) fn watch_opened(&self) {
        self.lock().watches += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state now.
    pub fn status(&self) -> SourceStatus {
        self.lock().clone()
    }

    /// True once the prefix was read once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the prefix was read once, up to `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until `revision` is applied, up to `timeout`.
    pub async fn wait_applied(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A connection or protocol failure: state and a rate-limited log line
    /// (the first failure after being connected is always logged).
    pub(crate) fn failed(&self, e: &EtcdError) {
        let was_connected = {
            let mut s = self.lock();
            let was = s.connected;
            s.connected = false;
            s.last_error = Some(e.to_string());
            s.last_error_at = Some(now());
            s.recovered_at = None;
            was
        };
        let mut last = self.errors_logged.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if was_connected || due {
            *last = Some(Instant::now());
            tracing::warn!(error = %e, "etcd unreachable: serving the last configuration, retrying (logged again every 30 s while it lasts)");
        }
    }

    /// A watch is established at `revision` of cluster `cluster_id`.
    pub(crate) fn connected(&self, cluster_id: u64) {
        let mut s = self.lock();
        if !s.connected && s.last_error.is_some() {
            s.recovered_at = Some(now());
            tracing::info!(
                error_was = s.last_error.as_deref().unwrap_or(""),
                "etcd connection recovered"
            );
        }
        s.connected = true;
        s.cluster_id = format!("{cluster_id:x}");
        *self.errors_logged.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A change set (or a full read) up to `revision` was applied.
    pub(crate) fn applied(&self, revision: i64, full: bool) {
        {
            let mut s = self.lock();
            s.revision = revision;
            if full {
                s.synced = true;
            }
        }
        self.applied.send_replace(revision);
        if full {
            self.synced.send_replace(true);
        }
    }

    /// Marks what is served as not what etcd holds, for `why` (warm start:
    /// a saved configuration serves until the prefix is read; the first
    /// read clears it).
    pub fn mark_stale(&self, why: String) {
        self.warm.store(true, std::sync::atomic::Ordering::Release);
        self.set_stale(Some(why));
    }

    pub(crate) fn set_stale(&self, why: Option<String>) {
        self.lock().stale = why;
    }

    pub(crate) fn set_invalid(&self, keys: Vec<String>) {
        self.lock().invalid_keys = keys;
    }

    /// etcd's key for the hub's key (`/apisix/routes/1` under prefix `/p`
    /// is `/p/routes/1`).
    pub fn etcd_key(&self, key: &str) -> String {
        match key.strip_prefix(PREFIX) {
            Some(rest) => format!("{}{rest}", self.prefix),
            None => key.to_owned(),
        }
    }

    /// The hub's key for etcd's key, when it is under the prefix.
    pub fn hub_key(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(&self.prefix)?;
        rest.starts_with('/').then(|| format!("{PREFIX}{rest}"))
    }

    /// The prefix of every key watched (`/apisix/`).
    pub fn watch_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }
}
