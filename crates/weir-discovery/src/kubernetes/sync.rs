//! Per-cluster sync state, shown by the dump.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How one cluster's watch is doing.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncState {
    /// True unless the last thing the watch produced was an error.
    pub connected: bool,
    /// The first full list has been loaded.
    pub initial_list_done: bool,
    /// When the last event (list item, change, deletion) arrived, Unix seconds.
    pub last_event_unix: Option<f64>,
    /// `metadata.resourceVersion` of the last object seen.
    pub last_resource_version: Option<String>,
    /// The last error, if any (never contains the token).
    pub last_error: Option<String>,
    /// When the last error happened, Unix seconds.
    pub last_error_unix: Option<f64>,
    /// Errors since start.
    pub errors: u64,
    /// Full lists completed since start (1 = the initial one).
    pub lists: u64,
}

fn now_unix() -> Option<f64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// A [`SyncState`] shared between a watch task and the dump.
#[derive(Debug, Default)]
pub struct SharedSync(Mutex<SyncState>);

impl SharedSync {
    fn update(&self, f: impl FnOnce(&mut SyncState)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy for the dump.
    pub fn snapshot(&self) -> SyncState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An event arrived.
    pub fn event(&self, resource_version: Option<&str>) {
        self.update(|s| {
            s.connected = true;
            s.last_event_unix = now_unix();
            if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
                s.last_resource_version = Some(rv.to_owned());
            }
        });
    }

    /// A full list completed.
    pub fn listed(&self) {
        self.update(|s| {
            s.connected = true;
            s.initial_list_done = true;
            s.lists += 1;
            s.last_event_unix = now_unix();
        });
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
}
