//! Opt-in busy polling of a worker's event loop (`gateway.busy_poll_us`).
//!
//! When a worker runs out of work it normally sleeps in `epoll_wait`, and the
//! next packet must wake it: an interrupt to another core, and on virtual
//! machines an exit to the hypervisor on both sides. Under steady load those
//! wake-ups cost the *senders* (clients, nodes) more than the proxy saves by
//! sleeping. With busy polling a worker that did work within the last
//! `busy_poll_us` microseconds keeps its event loop turning instead: a task
//! that only yields makes tokio poll the reactor without blocking, so new
//! events are picked up at once, and nothing has to wake the worker.
//!
//! The window adapts like KVM's halt polling. The runtime's park/unpark hooks
//! measure how long each sleep lasted: an idle gap longer than the window
//! halves it (down to zero: no spinning at all at low request rates), a gap
//! the window would have covered doubles it (up to the configured maximum).
//! An idle gateway never spins; a busy one shows up to 100% CPU, which is why
//! this is off by default (CPU-based autoscaling would misread it).

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// The poller's waker while it sleeps.
    static SLEEPING: Cell<Option<Waker>> = const { Cell::new(None) };
    /// When this worker last went to sleep in the kernel.
    static PARKED_AT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// How long its last sleep lasted.
    static LAST_SLEEP: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Smallest window worth spinning for; below it the poller sleeps at once.
pub const MIN_WINDOW: Duration = Duration::from_micros(5);

/// Adds the park/unpark hooks the poller relies on to a worker's runtime.
pub fn install(builder: &mut tokio::runtime::Builder) {
    builder.on_thread_park(parked).on_thread_unpark(unparked);
}

fn parked() {
    PARKED_AT.set(Some(Instant::now()));
}

fn unparked() {
    if let Some(at) = PARKED_AT.take() {
        LAST_SLEEP.set(at.elapsed());
    }
    if let Some(waker) = SLEEPING.take() {
        waker.wake();
    }
}

/// The adaptive spin window.
#[derive(Debug, Clone, Copy)]
struct Window {
    current: Duration,
    max: Duration,
}

impl Window {
    fn new(max: Duration) -> Window {
        Window { current: max, max }
    }

    /// Adjusts the window after an idle gap (from the end of the last work
    /// to the next event) of `gap`.
    fn after_gap(&mut self, gap: Duration) {
        if gap <= self.max {
            self.current = (self.current * 2).clamp(MIN_WINDOW, self.max);
        } else {
            self.current /= 2;
            if self.current < MIN_WINDOW {
                self.current = Duration::ZERO;
            }
        }
    }
}

/// Tells a turn of the event loop that did work from an empty one by its
/// length: an empty turn (run the poller, poll the reactor, find nothing)
/// costs a system call and little else; the quietest turn seen is the
/// yardstick, allowed to drift up slowly should the machine get slower.
#[derive(Debug)]
struct TurnClock {
    quietest: Duration,
    turns: u32,
}

impl TurnClock {
    fn new() -> TurnClock {
        TurnClock {
            quietest: Duration::from_micros(100),
            turns: 0,
        }
    }

    /// True when a turn of `turn` ran other tasks or handled events.
    fn did_work(&mut self, turn: Duration) -> bool {
        self.turns = self.turns.wrapping_add(1);
        if self.turns.is_multiple_of(4096) {
            self.quietest += self.quietest / 8;
        }
        self.quietest = self.quietest.min(turn);
        turn > self.quietest * 4 + Duration::from_micros(2)
    }
}

/// What one worker's poller is doing, as [`pollers`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerState {
    /// The window of its latest spin; zero when it went to sleep without
    /// spinning at all.
    pub window: Duration,
    /// True while the poller waits for its worker to come back from a sleep.
    pub asleep: bool,
    /// Times the poller has gone to sleep.
    pub sleeps: u64,
    /// Turns of the event loop it has spun through so far.
    pub spin_turns: u64,
}

/// A poller's state, published once per sleep (never from the spin loop).
#[derive(Default)]
struct Published {
    window_ns: AtomicU64,
    asleep: AtomicBool,
    sleeps: AtomicU64,
    spin_turns: AtomicU64,
}

/// Every running poller of the process.
static POLLERS: Mutex<Vec<Weak<Published>>> = Mutex::new(Vec::new());

/// The state of every poller running in this process (one per worker with
/// busy polling on), for tests and diagnostics.
pub fn pollers() -> Vec<PollerState> {
    let mut all = POLLERS.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|p| p.strong_count() > 0);
    all.iter()
        .filter_map(Weak::upgrade)
        .map(|p| PollerState {
            window: Duration::from_nanos(p.window_ns.load(Ordering::Relaxed)),
            asleep: p.asleep.load(Ordering::Relaxed),
            sleeps: p.sleeps.load(Ordering::Relaxed),
            spin_turns: p.spin_turns.load(Ordering::Relaxed),
        })
        .collect()
}

/// Runs forever on a worker's runtime built with [`install`] (spawn it
/// there): spins while the worker keeps getting work, sleeps with it when the
/// work stops. `max` is the longest idle gap it spins through.
pub async fn run(max: Duration) {
    let mut window = Window::new(max);
    let mut turns = TurnClock::new();
    let published = Arc::new(Published::default());
    POLLERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(&published));
    loop {
        published
            .window_ns
            .store(window.current.as_nanos() as u64, Ordering::Relaxed);
        let mut last_work = Instant::now();
        let mut prev = last_work;
        let mut spun_idle = Duration::ZERO;
        let mut spun = 0u64;
        // Spin: each yield lets tokio run what is ready and poll the reactor
        // with a zero timeout.
        while !window.current.is_zero() {
            tokio::task::yield_now().await;
            spun += 1;
            let now = Instant::now();
            if turns.did_work(now - prev) {
                last_work = now;
            } else if now - last_work >= window.current {
                spun_idle = now - last_work;
                break;
            }
            prev = now;
        }
        published.spin_turns.fetch_add(spun, Ordering::Relaxed);
        published.sleeps.fetch_add(1, Ordering::Relaxed);
        // Sleep: the worker parks in the kernel once nothing else is ready,
        // and the unpark hook wakes the poller when it comes back.
        let mut asleep = false;
        poll_fn(|cx| {
            if asleep {
                Poll::Ready(())
            } else {
                asleep = true;
                SLEEPING.set(Some(cx.waker().clone()));
                published.asleep.store(true, Ordering::Relaxed);
                Poll::Pending
            }
        })
        .await;
        published.asleep.store(false, Ordering::Relaxed);
        window.after_gap(spun_idle + LAST_SLEEP.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poller_sleeps() -> bool {
        let waker = SLEEPING.take();
        let sleeping = waker.is_some();
        SLEEPING.set(waker);
        sleeping
    }

    #[test]
    fn turns_that_ran_other_work_stand_out_from_empty_ones() {
        let mut t = TurnClock::new();
        for _ in 0..100 {
            assert!(!t.did_work(Duration::from_nanos(800)));
        }
        assert!(
            t.did_work(Duration::from_micros(12)),
            "a request's worth of work"
        );
        assert!(
            !t.did_work(Duration::from_micros(2)),
            "noise around an empty turn"
        );
    }

    #[test]
    fn long_gaps_shrink_the_window_to_nothing_and_short_ones_grow_it_back() {
        let max = Duration::from_micros(50);
        let mut w = Window::new(max);
        for _ in 0..4 {
            w.after_gap(Duration::from_millis(1));
        }
        assert_eq!(w.current, Duration::ZERO, "low request rates never spin");
        w.after_gap(Duration::from_micros(20));
        assert_eq!(w.current, MIN_WINDOW);
        for _ in 0..10 {
            w.after_gap(Duration::from_micros(20));
        }
        assert_eq!(w.current, max, "never beyond the configured maximum");
    }

    #[test]
    fn the_poller_sleeps_when_work_stops_and_wakes_with_the_worker() {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        install(&mut builder);
        let runtime = builder.build().unwrap();
        runtime.block_on(async {
            tokio::spawn(run(Duration::from_micros(200)));
            // Nothing to do: within about one window the poller must go to
            // sleep (its waker parked with the hooks).
            let asleep = async {
                while !poller_sleeps() {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), asleep)
                .await
                .expect("the poller went to sleep");
            // The worker sleeps in the kernel until the timer; waking up
            // wakes the poller (takes its waker) and records the sleep.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(LAST_SLEEP.get() >= Duration::from_millis(10));
        });
    }
}
