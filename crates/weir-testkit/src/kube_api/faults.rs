//! Fault injection state and the request log.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long an injected request failure lasts (see [`FakeApiServer::fail_requests`]).
///
/// `usize` converts to [`FailScope::Next`] and `Duration` to [`FailScope::For`], so
/// `fail_requests(500, 3)` and `fail_requests(503, Duration::from_secs(2))` both work.
///
/// [`FakeApiServer::fail_requests`]: super::FakeApiServer::fail_requests
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailScope {
    /// The next `n` requests fail.
    Next(usize),
    /// Every request fails for this long (counted from the call).
    For(Duration),
    /// Every request fails until [`FakeApiServer::clear_failures`](super::FakeApiServer::clear_failures).
    Always,
}

impl From<usize> for FailScope {
    fn from(n: usize) -> Self {
        FailScope::Next(n)
    }
}

impl From<Duration> for FailScope {
    fn from(d: Duration) -> Self {
        FailScope::For(d)
    }
}

#[derive(Debug)]
struct ActiveFailure {
    status: u16,
    remaining: Option<usize>,
    until: Option<Instant>,
}

/// Shared fault switches, read by request handlers and watch streams.
pub(crate) struct Faults {
    failure: Mutex<Option<ActiveFailure>>,
    pub(crate) stall: watch::Sender<bool>,
    pub(crate) cut: watch::Sender<u64>,
}

impl Faults {
    pub(crate) fn new() -> Faults {
        Faults {
            failure: Mutex::new(None),
            stall: watch::channel(false).0,
            cut: watch::channel(0).0,
        }
    }

    pub(crate) fn set_failure(&self, status: u16, scope: FailScope) {
        let f = match scope {
            FailScope::Next(0) => None,
            FailScope::Next(n) => Some(ActiveFailure {
                status,
                remaining: Some(n),
                until: None,
            }),
            FailScope::For(d) => Some(ActiveFailure {
                status,
                remaining: None,
                until: Some(Instant::now() + d),
            }),
            FailScope::Always => Some(ActiveFailure {
                status,
                remaining: None,
                until: None,
            }),
        };
        *lock(&self.failure) = f;
    }

    /// Consumes one failure, if any is armed; returns the status code to answer with.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        let mut g = lock(&self.failure);
        let f = g.as_mut()?;
        if f.until.is_some_and(|u| Instant::now() >= u) {
            *g = None;
            return None;
        }
        let status = f.status;
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                *g = None;
            }
        }
        Some(status)
    }
}

/// Locks a std mutex, ignoring poisoning (a panicking test must not cascade).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request as the fake API server saw it. The bearer token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// URL path, e.g. `/api/v1/endpoints`.
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Whether an `Authorization: Bearer …` header was present.
    pub has_bearer_token: bool,
    /// When the request arrived (before any injected failure or
    /// authentication), so tests can measure the gaps between a client's
    /// attempts at the server rather than with sleeps.
    pub at: std::time::Instant,
}

impl RecordedRequest {
    /// The first value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for `watch=1` / `watch=true` requests.
    pub fn is_watch(&self) -> bool {
        self.query_param("watch").is_some_and(parse_bool)
    }
}

/// Go `strconv.ParseBool` truthiness.
pub(crate) fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "true" | "TRUE" | "True")
}
