//! Request metrics, per route: requests by status code and a latency
//! histogram, exposed in the Prometheus text format by the control API
//! (`GET /metrics`).
//!
//! Counting sits on the hot path, so it takes no lock and shares no cache
//! line between workers: each route's counters are split in shards, one per
//! worker (by [`crate::workers::current`]), padded to their own cache lines,
//! and bumped with relaxed atomic adds. A scrape sums the shards.
//!
//! A route's counters are found by its id when a configuration is compiled,
//! so they carry on across reloads that keep the route; they go away with
//! the last snapshot that has the route. Requests that match no route count
//! under the route `""` (as APISIX does).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Latency bucket bounds, in milliseconds (APISIX's defaults).
pub const BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];

/// Distinct status codes counted per shard; a route that answers more kinds
/// counts the rest under `code="other"`.
const CODE_SLOTS: usize = 16;

/// Shards per route (workers beyond this share shards).
const MAX_SHARDS: usize = 8;

static SHARDS: LazyLock<usize> = LazyLock::new(|| {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_SHARDS)
});

/// Every route's counters by id, weakly: the snapshots hold them.
#[derive(Default)]
struct Registry {
    routes: HashMap<Arc<str>, Weak<RouteStats>>,
    /// Dead entries are swept once the map reaches this size, so compiling
    /// n routes costs O(n), not a sweep per route.
    sweep_at: usize,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

static UNMATCHED: LazyLock<Arc<RouteStats>> = LazyLock::new(|| for_route(&Arc::from("")));

/// One worker's share of a route's counters, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    /// Status code of each slot (0: free), set once.
    codes: [AtomicU16; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    other: AtomicU64,
    /// Requests per latency bucket (not cumulative), the last for `+Inf`.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
}

impl Shard {
    fn count_status(&self, status: u16) {
        for (code, count) in self.codes.iter().zip(&self.counts) {
            let current = code.load(Ordering::Relaxed);
            if current == status {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if current == 0 {
                // Claim the free slot (another thread on this shard may
                // claim it first, for the same code or another).
                match code.compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(won) if won == status => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }
}

/// A route's request counters.
pub struct RouteStats {
    route: Arc<str>,
    /// Allocated at the route's first request: a route that gets none (of
    /// thousands, say) costs no counter memory.
    shards: OnceLock<Box<[Shard]>>,
}

impl RouteStats {
    fn new(route: Arc<str>) -> RouteStats {
        RouteStats {
            route,
            shards: OnceLock::new(),
        }
    }

    /// Counts one request answered with `status` after `elapsed` (from the
    /// request's arrival to the end of its answer).
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let shards = self
            .shards
            .get_or_init(|| (0..*SHARDS).map(|_| Shard::default()).collect());
        let shard = &shards[crate::workers::current() % shards.len()];
        shard.count_status(status);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MS
            .iter()
            .position(|&ms| micros <= ms * 1000)
            .unwrap_or(BUCKETS_MS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The totals over every shard: (code, count) sorted by code with
    /// `other` last, per-bucket counts, and the latency sum in microseconds.
    fn totals(&self) -> Totals {
        let mut codes: Vec<(u16, u64)> = Vec::new();
        let mut other = 0;
        let mut buckets = [0u64; BUCKETS_MS.len() + 1];
        let mut sum_micros = 0u64;
        for shard in self.shards.get().map_or(&[][..], |s| &s[..]) {
            for (code, count) in shard.codes.iter().zip(&shard.counts) {
                let code = code.load(Ordering::Relaxed);
                if code == 0 {
                    continue;
                }
                let count = count.load(Ordering::Relaxed);
                match codes.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += count,
                    None => codes.push((code, count)),
                }
            }
            other += shard.other.load(Ordering::Relaxed);
            for (total, b) in buckets.iter_mut().zip(&shard.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            sum_micros = sum_micros.saturating_add(shard.sum_micros.load(Ordering::Relaxed));
        }
        codes.sort_unstable();
        Totals {
            codes,
            other,
            buckets,
            sum_micros,
        }
    }
}

struct Totals {
    codes: Vec<(u16, u64)>,
    other: u64,
    buckets: [u64; BUCKETS_MS.len() + 1],
    sum_micros: u64,
}

/// What the attempts on one node came to: answers by status class, and
/// attempts that got no answer (refused, reset, timed out). A node's counts
/// live as long as some upstream routes to it (a pod gone from discovery
/// takes its series with it).
#[derive(Default)]
pub struct NodeAttempts {
    /// 1xx..5xx answers, then errors, then timeouts.
    results: [AtomicU64; 7],
}

/// The `result` label of each [`NodeAttempts`] slot.
pub const ATTEMPT_RESULTS: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "timeout"];

impl NodeAttempts {
    /// Counts an attempt the node answered with `status`.
    pub fn answered(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.results[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt that got no answer.
    pub fn failed(&self, timed_out: bool) {
        self.results[if timed_out { 6 } else { 5 }].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, in [`ATTEMPT_RESULTS`] order.
    pub fn totals(&self) -> [u64; 7] {
        self.results.each_ref().map(|r| r.load(Ordering::Relaxed))
    }
}

/// The counters of the route `id`: the same ones a previous configuration's
/// route of that id had, if it still exists.
pub fn for_route(id: &Arc<str>) -> Arc<RouteStats> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stats) = registry.routes.get(id).and_then(Weak::upgrade) {
        return stats;
    }
    let stats = Arc::new(RouteStats::new(id.clone()));
    registry.routes.insert(id.clone(), Arc::downgrade(&stats));
    if registry.routes.len() >= registry.sweep_at {
        registry.routes.retain(|_, w| w.strong_count() > 0);
        registry.sweep_at = (registry.routes.len() * 2).max(1024);
    }
    stats
}

/// The counters of requests that matched no route (route `""`).
pub fn unmatched() -> &'static RouteStats {
    &UNMATCHED
}

/// Appends every route's request metrics in the Prometheus text format.
pub fn render(out: &mut String) {
    let mut routes: Vec<Arc<RouteStats>> = {
        let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.routes.values().filter_map(Weak::upgrade).collect()
    };
    routes.sort_by(|a, b| a.route.cmp(&b.route));
    let totals: Vec<(&str, Totals)> = routes.iter().map(|r| (&*r.route, r.totals())).collect();

    out.push_str("# HELP weir_http_requests_total Requests answered, by route and status code.\n");
    out.push_str("# TYPE weir_http_requests_total counter\n");
    for (route, t) in &totals {
        let route = escape_label(route);
        for (code, count) in &t.codes {
            let _ = writeln!(
                out,
                "weir_http_requests_total{{route=\"{route}\",code=\"{code}\"}} {count}"
            );
        }
        if t.other > 0 {
            let _ = writeln!(
                out,
                "weir_http_requests_total{{route=\"{route}\",code=\"other\"}} {}",
                t.other
            );
        }
    }

    out.push_str(
        "# HELP weir_http_request_duration_seconds Time from a request's arrival to the end of its answer, by route.\n",
    );
    out.push_str("# TYPE weir_http_request_duration_seconds histogram\n");
    for (route, t) in &totals {
        let count: u64 = t.buckets.iter().sum();
        if count == 0 {
            continue;
        }
        let route = escape_label(route);
        let mut cumulative = 0;
        for (i, n) in t.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |ms| seconds(*ms * 1000));
            let _ = writeln!(
                out,
                "weir_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "weir_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            seconds(t.sum_micros)
        );
        let _ = writeln!(
            out,
            "weir_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
        );
    }

    out.push_str(
        "# HELP weir_limit_store_failures_total Requests a limiting plugin could not count in its shared store (Redis), by plugin.\n",
    );
    out.push_str("# TYPE weir_limit_store_failures_total counter\n");
    for (plugin, n) in weir_plugins::limit::redis::failures() {
        let _ = writeln!(
            out,
            "weir_limit_store_failures_total{{plugin=\"{plugin}\"}} {n}"
        );
    }

    out.push_str(
        "# HELP weir_mirror_requests_total Copies proxy-mirror sent, by result: answered (any status), failed (refused, broken, timed out), dropped (too many in flight).\n",
    );
    out.push_str("# TYPE weir_mirror_requests_total counter\n");
    for (result, n) in weir_plugins::proxy_mirror::stats() {
        let _ = writeln!(out, "weir_mirror_requests_total{{result=\"{result}\"}} {n}");
    }

    let otel = weir_plugins::opentelemetry::stats();
    out.push_str("# HELP weir_opentelemetry_spans_exported_total Spans the opentelemetry plugin's collectors accepted.\n");
    out.push_str("# TYPE weir_opentelemetry_spans_exported_total counter\n");
    let _ = writeln!(
        out,
        "weir_opentelemetry_spans_exported_total {}",
        otel.exported
    );
    out.push_str("# HELP weir_opentelemetry_spans_dropped_total Spans the opentelemetry plugin did not deliver, by reason: queue_full (the export queue was full), export_failed (lost with a failed export).\n");
    out.push_str("# TYPE weir_opentelemetry_spans_dropped_total counter\n");
    let _ = writeln!(
        out,
        "weir_opentelemetry_spans_dropped_total{{reason=\"queue_full\"}} {}",
        otel.dropped_queue_full
    );
    let _ = writeln!(
        out,
        "weir_opentelemetry_spans_dropped_total{{reason=\"export_failed\"}} {}",
        otel.dropped_export_failed
    );
    out.push_str("# HELP weir_opentelemetry_export_failures_total Span exports that failed (collector refused, slower than request_timeout, or not 2xx).\n");
    out.push_str("# TYPE weir_opentelemetry_export_failures_total counter\n");
    let _ = writeln!(
        out,
        "weir_opentelemetry_export_failures_total {}",
        otel.export_failures
    );
}

/// Microseconds as decimal seconds, exactly (`1500` → `0.0015`).
fn seconds(micros: u64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A label value escaped for the text format (`\`, `"`, newline).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_bucket_and_sums_the_shards() {
        let stats = RouteStats::new(Arc::from("r"));
        stats.observe(200, Duration::from_micros(500));
        stats.observe(200, Duration::from_millis(3));
        stats.observe(503, Duration::from_secs(100));
        let t = stats.totals();
        assert_eq!(t.codes, vec![(200, 2), (503, 1)]);
        assert_eq!(t.other, 0);
        assert_eq!(t.buckets[0], 1, "0.5 ms is in the 1 ms bucket");
        assert_eq!(t.buckets[2], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(
            t.buckets[BUCKETS_MS.len()],
            1,
            "100 s is past the last bound"
        );
        assert_eq!(t.sum_micros, 500 + 3000 + 100_000_000);
    }

    #[test]
    fn codes_beyond_the_slots_count_as_other() {
        let stats = RouteStats::new(Arc::from("r"));
        for code in 200..(200 + CODE_SLOTS as u16 + 3) {
            stats.observe(code, Duration::ZERO);
        }
        let t = stats.totals();
        assert_eq!(t.codes.len(), CODE_SLOTS);
        assert_eq!(t.other, 3);
    }

    #[test]
    fn a_route_id_keeps_its_counters_while_a_route_holds_them() {
        let id: Arc<str> = Arc::from("metrics-unit-keep");
        let first = for_route(&id);
        first.observe(200, Duration::ZERO);
        let again = for_route(&id);
        assert!(Arc::ptr_eq(&first, &again));
        drop((first, again));
        let fresh = for_route(&id);
        assert!(
            fresh.totals().codes.is_empty(),
            "a dropped route starts over"
        );
    }

    #[test]
    fn renders_the_text_format() {
        let id: Arc<str> = Arc::from("metrics-unit-\"render\"");
        let stats = for_route(&id);
        stats.observe(404, Duration::from_micros(1500));
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains(
                "weir_http_requests_total{route=\"metrics-unit-\\\"render\\\"\",code=\"404\"} 1\n"
            ),
            "{out}"
        );
        assert!(out.contains("weir_http_request_duration_seconds_bucket{route=\"metrics-unit-\\\"render\\\"\",le=\"0.001\"} 0\n"), "{out}");
        assert!(out.contains("weir_http_request_duration_seconds_bucket{route=\"metrics-unit-\\\"render\\\"\",le=\"0.002\"} 1\n"), "{out}");
        assert!(out.contains("weir_http_request_duration_seconds_bucket{route=\"metrics-unit-\\\"render\\\"\",le=\"+Inf\"} 1\n"), "{out}");
        assert!(out.contains("weir_http_request_duration_seconds_sum{route=\"metrics-unit-\\\"render\\\"\"} 0.0015\n"), "{out}");
        assert!(out.contains("weir_http_request_duration_seconds_count{route=\"metrics-unit-\\\"render\\\"\"} 1\n"), "{out}");
    }

    #[test]
    fn node_attempts_count_by_class_and_failure() {
        let n = NodeAttempts::default();
        n.answered(200);
        n.answered(204);
        n.answered(503);
        n.answered(99);
        n.answered(700);
        n.failed(false);
        n.failed(true);
        n.failed(true);
        assert_eq!(n.totals(), [1, 2, 0, 0, 2, 1, 2]);
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1000), "0.001");
        assert_eq!(seconds(1_500_000), "1.5");
        assert_eq!(seconds(60_000_000), "60");
    }
}
