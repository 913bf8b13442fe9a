//! Rate limiting for log lines that would otherwise repeat on every request
//! or every retry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows one event per key per `interval`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

/// Above this many keys the table is cleared rather than grown (names come
/// from configuration and requests; this bounds memory).
const MAX_KEYS: usize = 4096;

impl RateLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        RateLimiter {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// True if an event for `key` may be logged now.
    pub(crate) fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(key) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                if last.len() >= MAX_KEYS {
                    last.clear();
                }
                last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_interval_are_suppressed() {
        let r = RateLimiter::new(Duration::from_secs(60));
        assert!(r.allow("a"));
        assert!(!r.allow("a"));
        assert!(r.allow("b"));
    }
}
