//! The watch's retry delay: jittered, doubling from 0.8 s up to 30 s, and
//! reset once a watch is established again. Unlike kube's default backoff,
//! which counts every error (a 410 included) and only resets after two
//! quiet minutes, the watch loop never sleeps on a 410 or on the first 401
//! of a streak (see `watch.rs`).

use std::time::Duration;

/// First step.
const BASE: Duration = Duration::from_millis(800);
/// Longest step.
const MAX: Duration = Duration::from_secs(30);

/// Doubling delay with jitter; [`Backoff::reset`] starts over.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    /// Back to the first step.
    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// The upper bound of the next delay (without jitter).
    fn ceiling(&self) -> Duration {
        BASE.saturating_mul(1u32 << self.step.min(16)).min(MAX)
    }

    /// The delay to wait now: between half and all of the current step,
    /// so clients restarted together do not retry in lockstep.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.step = self.step.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= BASE / 2 && first <= BASE, "{first:?}");
        let second = b.next_delay();
        assert!(second >= BASE && second <= BASE * 2, "{second:?}");
        for _ in 0..40 {
            assert!(b.next_delay() <= MAX);
        }
        b.reset();
        assert!(b.next_delay() <= BASE);
    }
}
