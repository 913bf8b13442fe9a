//! Per-cluster sync state, shown by the dump, and the signals the watch
//! loop takes from the HTTP layer (the API server answered; a watch was
//! established).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How one cluster's watch is doing.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncState {
    /// True once the API server answered and until the next error.
    pub connected: bool,
    /// The first full list has been loaded.
    pub initial_list_done: bool,
    /// The nodes served come from the warm-start state (`gateway.state_dir`),
    /// not from this API server: true from start until the first list.
    pub stale: bool,
    /// When the warm-start state was saved, Unix seconds (`None`: no warm
    /// state was loaded).
    pub warm_state_saved_unix: Option<f64>,
    /// When the last event (list item, change, deletion) arrived, Unix seconds.
    pub last_event_unix: Option<f64>,
    /// `metadata.resourceVersion` of the last object seen.
    pub last_resource_version: Option<String>,
    /// The last error, if any (never contains the token). It stays after a
    /// recovery: compare `last_error_unix` with `recovered_at_unix`.
    pub last_error: Option<String>,
    /// When the last error happened, Unix seconds.
    pub last_error_unix: Option<f64>,
    /// When the API server last answered again after errors, Unix seconds.
    pub recovered_at_unix: Option<f64>,
    /// Errors since start.
    pub errors: u64,
    /// Full lists completed since start (1 = the initial one).
    pub lists: u64,
    /// 410 Gone answers (expired resourceVersion), each followed by an
    /// immediate re-list. Not errors: the server answered.
    pub relists_after_gone: u64,
    /// When the last 410 Gone arrived, Unix seconds.
    pub last_gone_unix: Option<f64>,
    /// The API server actually used (`scheme://host:port`), once the client
    /// is built; with a kubeconfig, its current context's server.
    pub server: Option<String>,
}

fn now_unix() -> Option<f64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// A [`SyncState`] shared between a watch task, its HTTP layer and the dump.
#[derive(Debug, Default)]
pub struct SharedSync {
    /// Cluster name for log lines (`kubernetes` or the id).
    name: String,
    state: Mutex<SyncState>,
    /// A 2xx response arrived since the watch loop last looked.
    answered: AtomicBool,
    /// A watch request got a 2xx response since the watch loop last looked.
    watch_started: AtomicBool,
}

impl SharedSync {
    /// The state of cluster `name` (used in log lines).
    pub fn new(name: &str) -> Self {
        SharedSync {
            name: name.to_owned(),
            ..SharedSync::default()
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut SyncState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A copy for the dump.
    pub fn snapshot(&self) -> SyncState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The API server answered: connected again. After errors this is a
    /// recovery, logged once and stamped in `recovered_at_unix`.
    fn live(&self, s: &mut SyncState) {
        if !s.connected && s.errors > 0 {
            let now = now_unix();
            let down_for = match (now, s.last_error_unix) {
                (Some(n), Some(e)) => n - e,
                _ => 0.0,
            };
            tracing::info!(
                cluster = %self.name,
                last_error = s.last_error.as_deref().unwrap_or(""),
                seconds_since_last_error = format!("{down_for:.1}"),
                errors = s.errors,
                "the API server answers again: discovery recovered"
            );
            s.recovered_at_unix = now;
        }
        s.connected = true;
    }

    /// The HTTP layer saw a 2xx response (`watch`: to a watch request).
    pub fn answered(&self, watch: bool) {
        self.answered.store(true, Ordering::Release);
        if watch {
            self.watch_started.store(true, Ordering::Release);
        }
        self.update(|s| self.live(s));
    }

    /// Whether a 2xx response arrived since the last call (and clears it).
    pub fn take_answered(&self) -> bool {
        self.answered.swap(false, Ordering::AcqRel)
    }

    /// Whether a watch was established since the last call (and clears it).
    pub fn take_watch_started(&self) -> bool {
        self.watch_started.swap(false, Ordering::AcqRel)
    }

    /// Records the API server in use.
    pub fn set_server(&self, server: String) {
        self.update(|s| s.server = Some(server));
    }

    /// A warm-start state saved at `saved_unix` is served until the first list.
    pub fn warm_loaded(&self, saved_unix: f64) {
        self.update(|s| {
            s.stale = true;
            s.warm_state_saved_unix = Some(saved_unix);
        });
    }

    /// An event arrived.
    pub fn event(&self, resource_version: Option<&str>) {
        self.update(|s| {
            self.live(s);
            s.last_event_unix = now_unix();
            if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
                s.last_resource_version = Some(rv.to_owned());
            }
        });
    }

    /// A full list completed. Returns true if this ended a stale (warm) period.
    pub fn listed(&self) -> bool {
        self.update(|s| {
            self.live(s);
            s.initial_list_done = true;
            s.lists += 1;
            s.last_event_unix = now_unix();
            std::mem::replace(&mut s.stale, false)
        })
    }

    /// The watch failed (it will be retried after a backoff).
    pub fn error(&self, message: String) {
        self.update(|s| {
            s.connected = false;
            s.errors += 1;
            s.last_error = Some(message);
            s.last_error_unix = now_unix();
        });
    }

    /// 410 Gone: the resourceVersion expired; a re-list follows at once.
    pub fn gone(&self) {
        self.update(|s| {
            s.relists_after_gone += 1;
            s.last_gone_unix = now_unix();
        });
    }

    /// An error from a server that did answer (one undecodable event on a
    /// live stream): recorded as the last error, but `connected` stays as
    /// it is.
    pub fn note_error(&self, message: String) {
        self.update(|s| {
            s.errors += 1;
            s.last_error = Some(message);
            s.last_error_unix = now_unix();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_keeps_the_error_and_stamps_the_time() {
        let s = SharedSync::new("t");
        s.answered(false);
        assert_eq!(s.snapshot().recovered_at_unix, None, "no error yet");
        s.error("HTTP 403".into());
        assert!(!s.snapshot().connected);
        s.answered(true);
        let snap = s.snapshot();
        assert!(snap.connected);
        assert_eq!(snap.last_error.as_deref(), Some("HTTP 403"));
        assert!(snap.recovered_at_unix >= snap.last_error_unix);
        assert!(s.take_watch_started());
        assert!(!s.take_watch_started());
    }

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_recovery() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let s = SharedSync::new("east");
            s.answered(false);
            s.error("connection refused".into());
            s.error("HTTP 403".into());
            s.answered(true);
            s.answered(false);
            s.event(Some("7"));
            s.listed();
        });
        let out =
            String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert_eq!(out.matches("discovery recovered").count(), 1, "{out}");
        assert!(out.contains("east") && out.contains("HTTP 403"), "{out}");
    }
}
