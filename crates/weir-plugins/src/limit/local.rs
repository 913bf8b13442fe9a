//! Counts kept in this process (`policy: local`): exact across worker
//! threads (one lock per shard of keys, never a per-thread count), shared by
//! every configuration generation with the same namespace, so a reload that
//! leaves a plugin unchanged keeps its counts and a change starts afresh.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Keys are spread over this many locks.
const SHARDS: usize = 32;

/// A shard sweeps its expired entries when it has grown by this many since
/// its last sweep.
const SWEEP_EVERY: usize = 1024;

/// A table of per-key values of type `V`, one per namespace, shared
/// process-wide.
pub struct Table<V> {
    shards: Box<[Mutex<Shard<V>>]>,
}

struct Shard<V> {
    entries: HashMap<String, V>,
    swept_at_len: usize,
}

impl<V> Table<V> {
    fn new() -> Table<V> {
        Table {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        swept_at_len: 0,
                    })
                })
                .collect(),
        }
    }

    /// Runs `f` on the value of `key` (made by `make` if missing) under its
    /// shard's lock; `expired` tells which values a sweep may drop.
    pub fn with<R>(
        &self,
        key: &str,
        make: impl FnOnce() -> V,
        expired: impl Fn(&V) -> bool,
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let mut s: MutexGuard<'_, Shard<V>> = shard.lock().unwrap_or_else(|e| e.into_inner());
        if s.entries.len() >= s.swept_at_len + SWEEP_EVERY {
            s.entries.retain(|_, v| !expired(v));
            s.swept_at_len = s.entries.len();
        }
        let v = match s.entries.get_mut(key) {
            Some(v) => v,
            None => s.entries.entry(key.to_owned()).or_insert_with(make),
        };
        f(v)
    }
}

/// The tables of one kind of value, by namespace.
pub struct Registry<V> {
    tables: LazyLock<Mutex<HashMap<String, Weak<Table<V>>>>>,
}

impl<V> Registry<V> {
    /// An empty registry (for a `static`).
    pub const fn new() -> Registry<V> {
        Registry {
            tables: LazyLock::new(|| Mutex::new(HashMap::new())),
        }
    }

    /// The table of `namespace`: the one already in use if a live
    /// configuration has it, else a fresh one.
    pub fn table(&self, namespace: &str) -> Arc<Table<V>> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(namespace).and_then(Weak::upgrade) {
            return t;
        }
        tables.retain(|_, t| t.strong_count() > 0);
        let t = Arc::new(Table::new());
        tables.insert(namespace.to_owned(), Arc::downgrade(&t));
        t
    }
}

impl<V> Default for Registry<V> {
    fn default() -> Self {
        Registry::new()
    }
}

/// A count over windows of fixed length: the current window's and the
/// previous one's (for the sliding estimate).
#[derive(Debug, Clone)]
pub struct Window {
    /// When the current window started.
    pub start: Instant,
    /// Requests counted in it.
    pub count: u64,
    /// Requests counted in the window before it (sliding only).
    pub previous: u64,
}

/// What counting one request decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Admitted.
    pub admitted: bool,
    /// Requests left in the window after this one (0 when refused).
    pub remaining: u64,
    /// Until the window ends.
    pub reset: Duration,
}

impl Window {
    fn fresh(now: Instant) -> Window {
        Window {
            start: now,
            count: 0,
            previous: 0,
        }
    }

    /// True when nothing of it matters any more.
    pub fn expired(&self, window: Duration, now: Instant) -> bool {
        now.duration_since(self.start) >= window * 2
    }

    /// Counts one request against `limit` per `window`. Fixed windows start
    /// at a key's first request (as APISIX's) and count refused requests
    /// too; sliding windows weigh the previous window's count by how much of
    /// it still overlaps the last `window`, and count admitted requests
    /// only.
    pub fn count(&mut self, limit: u64, window: Duration, sliding: bool, now: Instant) -> Counted {
        let elapsed = now.duration_since(self.start);
        if elapsed >= window {
            let windows_passed = elapsed.as_nanos() / window.as_nanos().max(1);
            self.previous = if windows_passed == 1 { self.count } else { 0 };
            self.count = 0;
            self.start += window * u32::try_from(windows_passed).unwrap_or(u32::MAX);
            if now.duration_since(self.start) >= window {
                *self = Window::fresh(now);
            }
        }
        let reset = window.saturating_sub(now.duration_since(self.start));
        if !sliding {
            self.count += 1;
            let admitted = self.count <= limit;
            return Counted {
                admitted,
                remaining: limit.saturating_sub(self.count),
                reset,
            };
        }
        let overlap = reset.as_secs_f64() / window.as_secs_f64().max(f64::MIN_POSITIVE);
        let estimate = (self.previous as f64 * overlap).floor() as u64 + self.count;
        if estimate >= limit {
            return Counted {
                admitted: false,
                remaining: 0,
                reset,
            };
        }
        self.count += 1;
        Counted {
            admitted: true,
            remaining: limit - estimate - 1,
            reset,
        }
    }
}

/// The windows of `limit-count`.
pub static WINDOWS: Registry<Window> = Registry::new();

/// Counts one request of `key` in `table`.
pub fn count(
    table: &Table<Window>,
    key: &str,
    limit: u64,
    window: Duration,
    sliding: bool,
) -> Counted {
    let now = Instant::now();
    table.with(
        key,
        || Window::fresh(now),
        |w| w.expired(window, now),
        |w| w.count(limit, window, sliding, now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_window_admits_exactly_the_limit_then_restarts() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut win = Window::fresh(t0);
        let got: Vec<bool> = (0..4)
            .map(|_| win.count(3, w, false, t0).admitted)
            .collect();
        assert_eq!(got, [true, true, true, false]);
        let later = t0 + Duration::from_secs(10);
        let c = win.count(3, w, false, later);
        assert!(c.admitted);
        assert_eq!(c.remaining, 2);
        assert_eq!(c.reset, w);
    }

    #[test]
    fn a_sliding_window_weighs_the_previous_one() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut win = Window::fresh(t0);
        for _ in 0..10 {
            assert!(win.count(10, w, true, t0).admitted);
        }
        assert!(!win.count(10, w, true, t0).admitted);
        // Half-way into the next window, half of the previous still counts.
        let half = t0 + Duration::from_secs(15);
        let admitted = (0..10)
            .filter(|_| win.count(10, w, true, half).admitted)
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn tables_are_shared_by_namespace_while_in_use() {
        let reg: Registry<Window> = Registry::new();
        let a = reg.table("ns");
        let b = reg.table("ns");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = reg.table("ns");
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn counting_is_exact_across_threads() {
        let reg: Registry<Window> = Registry::new();
        let t = reg.table("threads");
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if count(&t, "k", 2500, Duration::from_secs(60), false).admitted {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 2500);
    }
}
