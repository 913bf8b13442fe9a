//! "No progress for this long": a timer for waits that are polled (a
//! response body, a request body, a write to the client).
//!
//! The timer costs nothing while things move: it is armed only when a poll
//! finds nothing to do (`Pending`) after progress, and otherwise left where
//! it is. A stream that never waits never touches the timer wheel; one that
//! waits now and then re-arms it once per wait, not once per poll.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// A stall timer: expires once [`Stall::stalled`] has been reporting waits,
/// with no [`Stall::progress`] in between, for its limit.
#[derive(Debug)]
pub struct Stall {
    limit: Duration,
    /// Allocated at the first wait, reused after.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
}

impl Stall {
    /// A timer for `limit` of no progress; nothing is allocated yet.
    pub fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Progress was made: the next wait starts a fresh period.
    #[inline]
    pub fn progress(&mut self) {
        self.armed = false;
    }

    /// A wait (the caller is about to return `Pending`): arms the timer if
    /// this wait started it, and registers `cx` with it. True once there has
    /// been no progress for the limit.
    pub fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if !self.armed {
                    sleep.as_mut().reset(Instant::now() + self.limit);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(sleep_until(Instant::now() + self.limit))),
        };
        self.armed = true;
        sleep.as_mut().poll(cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_limit_of_waits_without_progress() {
        let mut s = Stall::new(Duration::from_secs(2));
        assert!(!s.stalled(&mut cx()));
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert!(!s.stalled(&mut cx()));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(s.stalled(&mut cx()));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_starts_a_fresh_period() {
        let mut s = Stall::new(Duration::from_secs(2));
        assert!(!s.stalled(&mut cx()));
        tokio::time::advance(Duration::from_millis(1900)).await;
        s.progress();
        tokio::time::advance(Duration::from_millis(1000)).await;
        // Not armed since the progress: this wait starts the period.
        assert!(!s.stalled(&mut cx()));
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert!(!s.stalled(&mut cx()));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(s.stalled(&mut cx()));
    }
}
