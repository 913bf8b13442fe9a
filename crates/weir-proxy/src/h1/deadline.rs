//! One timer per connection, re-armed lazily.
//!
//! A keep-alive connection needs a deadline for almost everything it waits
//! on (the next request, the rest of a head, the upstream's answer), and
//! arming a fresh timer for each of them costs a timer-wheel insert and
//! removal per request. Here the deadline is a plain `Instant`; the
//! underlying timer is only moved when the deadline comes *earlier* than
//! where it is armed. When it fires early, it is re-armed at the current
//! deadline, so a busy connection touches the wheel about once per timeout
//! period instead of once per request.

use std::future::pending;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// A connection's current deadline.
pub struct Deadline {
    timer: Pin<Box<Sleep>>,
    at: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::new()
    }
}

impl Deadline {
    /// No deadline yet.
    pub fn new() -> Deadline {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Deadline {
            timer: Box::pin(sleep_until(far)),
            at: None,
        }
    }

    /// Sets the deadline to `after` from now.
    pub fn set_after(&mut self, after: Duration) {
        let at = Instant::now() + after;
        self.at = Some(at);
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Removes the deadline: [`Deadline::expired`] never completes.
    #[cfg(test)]
    pub fn clear(&mut self) {
        self.at = None;
    }

    /// Completes when the deadline has passed.
    pub async fn expired(&mut self) {
        let Some(at) = self.at else {
            return pending().await;
        };
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= at {
                return;
            }
            self.timer.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_honoured_after_an_early_wake() {
        let mut d = Deadline::new();
        d.set_after(Duration::from_secs(1));
        let start = Instant::now();
        d.set_after(Duration::from_secs(5));
        d.expired().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer() {
        let mut d = Deadline::new();
        d.set_after(Duration::from_secs(30));
        let start = Instant::now();
        d.set_after(Duration::from_secs(2));
        d.expired().await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_never_expires() {
        let mut d = Deadline::new();
        d.set_after(Duration::from_secs(1));
        d.clear();
        let r = tokio::time::timeout(Duration::from_secs(10), d.expired()).await;
        assert!(r.is_err());
    }
}
