//! `prometheus`: APISIX's request metrics with its labels (priority 500,
//! log phase), served with weir's own on the control API's `/metrics`.
//!
//! Per request, under the labels route, service, consumer and node:
//! - `apisix_http_status{code,route,matched_uri,matched_host,service,consumer,node}`,
//!   a counter;
//! - `apisix_http_latency{type,route,service,consumer,node}`, a histogram in
//!   milliseconds with APISIX's default buckets: `type="request"` (arrival
//!   to the end of the answer), `"upstream"` (from the start of the attempt
//!   that answered, connecting included, to its response head; only when a
//!   node answered), `"apisix"` (request minus upstream, never below 0);
//! - `apisix_bandwidth{type,route,service,consumer,node}`, a counter in
//!   bytes: `ingress` the request (head as HTTP/1.1 text and its
//!   `Content-Length`), `egress` the response body sent.
//!
//! `route` is the route's id (its `name` with `prefer_name`), `service` the
//! id of its service (its `name` with `prefer_name`) or `""`, `consumer`
//! the authenticated consumer's username or `""`, `node` the `host:port` of
//! the node that answered or `""` (weir's or a plugin's own answer, or
//! every node failed), `matched_uri` / `matched_host` the route's path
//! pattern and host when it has exactly one of each, else `""`.
//!
//! Recording takes no lock and writes no cache line another thread writes:
//! each thread keeps its own counters per label set (a cell), found in a
//! thread-local map by the labels' hash; a thread takes the registry's
//! write lock only the first time it sees a label set. A scrape sums the
//! cells. The registry holds at most [`MAX_SERIES`] label sets: requests
//! that would add another are not recorded, and counted in
//! `weir_prometheus_series_dropped_total`. Label sets of routes no longer
//! configured are forgotten at the next scrape ([`forget_routes`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{parse_config, BuildCtx, ConfigError, LogCtx, Phase, Phases, Plugin, PluginSpec};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "prometheus",
    priority: 500,
    phases: Phases::of(&[Phase::Log]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// Latency bucket bounds, in milliseconds (APISIX's defaults).
const BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];

/// Label sets the registry holds at most; beyond, requests with a new one
/// are counted as dropped instead.
pub const MAX_SERIES: usize = 10_000;

/// Distinct status codes a cell counts; a label set answered with more
/// kinds counts the rest under `code="other"`.
const CODE_SLOTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    prefer_name: bool,
}

struct Prometheus {
    prefer_name: bool,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    Ok(Arc::new(Prometheus {
        prefer_name: c.prefer_name,
    }))
}

impl Plugin for Prometheus {
    fn log(&self, log: &LogCtx<'_>) {
        let labels = Labels::of(log, self.prefer_name);
        let upstream = log.upstream_latency;
        let apisix = log.duration.saturating_sub(upstream.unwrap_or_default());
        let recorded = with_cell(&labels, |cell| {
            cell.count_status(log.status);
            cell.latency[REQUEST].observe(log.duration);
            if let Some(u) = upstream {
                cell.latency[UPSTREAM].observe(u);
            }
            cell.latency[APISIX].observe(apisix);
            bump(&cell.bandwidth[INGRESS], log.request_bytes);
            bump(&cell.bandwidth[EGRESS], log.body_bytes);
        });
        if !recorded {
            dropped();
        }
    }

    fn log_reads_request(&self) -> bool {
        false
    }
}

// The label values of a request, in this order. `route_id` is not a label:
// it identifies the route whatever `prefer_name` shows, to forget its
// series once it is gone.
const ROUTE_ID: usize = 0;
const ROUTE: usize = 1;
const MATCHED_URI: usize = 2;
const MATCHED_HOST: usize = 3;
const SERVICE: usize = 4;
const CONSUMER: usize = 5;
const NODE: usize = 6;
const LABELS: usize = 7;

/// A request's label values, borrowed from its log context, and the same
/// values in one buffer (see [`Flat`]), by which its cell is found.
struct Labels<'a> {
    values: [&'a str; LABELS],
    flat: Flat,
}

/// Label values in one buffer, each followed by 0xFF (a byte UTF-8 never
/// has, so two different label sets never give the same bytes): finding a
/// request's cell takes one hash and one comparison of this buffer, not
/// seven of each. On the stack when the values are short, as they are.
enum Flat {
    Stack([u8; FLAT_STACK], usize),
    Heap(Vec<u8>),
}

/// Bytes of label values kept on the stack.
const FLAT_STACK: usize = 192;

impl Flat {
    fn of(values: &[&str; LABELS]) -> Flat {
        let len: usize = values.iter().map(|v| v.len() + 1).sum();
        if len > FLAT_STACK {
            let mut out = Vec::with_capacity(len);
            for v in values {
                out.extend_from_slice(v.as_bytes());
                out.push(0xFF);
            }
            return Flat::Heap(out);
        }
        let mut buf = [0u8; FLAT_STACK];
        let mut at = 0;
        for v in values {
            buf[at..at + v.len()].copy_from_slice(v.as_bytes());
            at += v.len();
            buf[at] = 0xFF;
            at += 1;
        }
        Flat::Stack(buf, at)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Flat::Stack(buf, len) => &buf[..*len],
            Flat::Heap(v) => v,
        }
    }
}

impl<'a> Labels<'a> {
    fn new(values: [&'a str; LABELS]) -> Labels<'a> {
        Labels {
            flat: Flat::of(&values),
            values,
        }
    }

    fn of(log: &LogCtx<'a>, prefer_name: bool) -> Labels<'a> {
        let facts = log.route;
        let name = |by_name: Option<&'a str>, id: &'a str| match by_name {
            Some(n) if prefer_name => n,
            _ => id,
        };
        let service_id = facts.and_then(|f| f.service_id.as_deref()).unwrap_or("");
        let mut v = [""; LABELS];
        v[ROUTE_ID] = log.route_id;
        v[ROUTE] = name(facts.and_then(|f| f.name.as_deref()), log.route_id);
        v[MATCHED_URI] = facts.and_then(|f| f.uri.as_deref()).unwrap_or("");
        v[MATCHED_HOST] = facts.and_then(|f| f.host.as_deref()).unwrap_or("");
        v[SERVICE] = name(facts.and_then(|f| f.service_name.as_deref()), service_id);
        v[CONSUMER] = log.consumer.map_or("", |c| &c.username);
        v[NODE] = log.node.unwrap_or("");
        Labels::new(v)
    }

    fn hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        h.write(self.flat.bytes());
        h.finish()
    }
}

/// A label set as the registry keeps it.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    values: [Box<str>; LABELS],
    /// The values as [`Flat`] makes them.
    flat: Box<[u8]>,
}

impl Key {
    fn of(labels: &Labels<'_>) -> Key {
        Key {
            values: labels.values.map(Box::from),
            flat: labels.flat.bytes().into(),
        }
    }

    fn is(&self, labels: &Labels<'_>) -> bool {
        *self.flat == *labels.flat.bytes()
    }
}

// `apisix_http_latency`'s types and `apisix_bandwidth`'s, as indexes.
const REQUEST: usize = 0;
const UPSTREAM: usize = 1;
const APISIX: usize = 2;
const LATENCY_TYPES: [&str; 3] = ["request", "upstream", "apisix"];
const INGRESS: usize = 0;
const EGRESS: usize = 1;
const BANDWIDTH_TYPES: [&str; 2] = ["ingress", "egress"];

/// Adds `n` to a counter only its cell's thread writes. A load and a
/// store, not a locked read-modify-write: nothing else writes it, and a
/// scrape may read a value one request old.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative), the last for `+Inf`.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MS
            .iter()
            .position(|&ms| micros <= ms * 1000)
            .unwrap_or(BUCKETS_MS.len());
        bump(&self.buckets[bucket], 1);
        bump(&self.sum_micros, micros);
    }
}

/// One thread's counters for one label set, written by that thread only.
#[derive(Default)]
struct Cell {
    /// Set when its route's series are forgotten: the thread then drops
    /// the cell from its map.
    retired: AtomicBool,
    /// Status code of each slot (0: free).
    codes: [AtomicU16; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    other_codes: AtomicU64,
    latency: [Histogram; 3],
    bandwidth: [AtomicU64; 2],
}

impl Cell {
    fn count_status(&self, status: u16) {
        for (code, count) in self.codes.iter().zip(&self.counts) {
            match code.load(Ordering::Relaxed) {
                c if c == status => return bump(count, 1),
                0 => {
                    // The count before the code: a scrape that sees the
                    // code (acquire) sees its count.
                    bump(count, 1);
                    code.store(status, Ordering::Release);
                    return;
                }
                _ => {}
            }
        }
        bump(&self.other_codes, 1);
    }
}

/// Every label set and its cells (one per thread that recorded it).
#[derive(Default)]
struct SeriesMap {
    /// By the labels' hash; a collision shares the vector.
    by_hash: HashMap<u64, Vec<Series>>,
    len: usize,
}

struct Series {
    key: Arc<Key>,
    cells: Vec<Arc<Cell>>,
}

/// The registry has no room for another label set.
#[derive(Debug)]
struct Full;

impl SeriesMap {
    fn contains(&self, hash: u64, labels: &Labels<'_>) -> bool {
        self.by_hash
            .get(&hash)
            .is_some_and(|v| v.iter().any(|s| s.key.is(labels)))
    }

    /// A new cell for a thread recording `labels`: of its label set, made
    /// if there is room for it.
    fn new_cell(&mut self, hash: u64, labels: &Labels<'_>, cap: usize) -> Result<KeyedCell, Full> {
        let cell = Arc::new(Cell::default());
        let same_hash = self.by_hash.entry(hash).or_default();
        if let Some(s) = same_hash.iter_mut().find(|s| s.key.is(labels)) {
            s.cells.push(cell.clone());
            return Ok((s.key.clone(), cell));
        }
        if self.len >= cap {
            if same_hash.is_empty() {
                self.by_hash.remove(&hash);
            }
            return Err(Full);
        }
        let key = Arc::new(Key::of(labels));
        same_hash.push(Series {
            key: key.clone(),
            cells: vec![cell.clone()],
        });
        self.len += 1;
        Ok((key, cell))
    }

    /// Forgets the label sets of routes `alive` says are gone (route `""`,
    /// requests that matched none, stays); retires their cells. Returns how
    /// many were forgotten.
    fn forget_routes(&mut self, alive: &dyn Fn(&str) -> bool) -> usize {
        let before = self.len;
        self.by_hash.retain(|_, same_hash| {
            same_hash.retain(|s| {
                let id = &s.key.values[ROUTE_ID];
                let keep = id.is_empty() || alive(id);
                if !keep {
                    for c in &s.cells {
                        c.retired.store(true, Ordering::Relaxed);
                    }
                }
                keep
            });
            !same_hash.is_empty()
        });
        self.len = self.by_hash.values().map(Vec::len).sum();
        before - self.len
    }

    fn series(&self) -> Vec<(Arc<Key>, Vec<Arc<Cell>>)> {
        self.by_hash
            .values()
            .flatten()
            .map(|s| (s.key.clone(), s.cells.clone()))
            .collect()
    }
}

static REGISTRY: LazyLock<RwLock<SeriesMap>> = LazyLock::new(RwLock::default);
/// The registry holds [`MAX_SERIES`] label sets (a hint: read without the
/// lock, so a thread with a new label set need not take the write lock).
static FULL: AtomicBool = AtomicBool::new(false);
/// Bumped when label sets are forgotten: threads then drop retired cells.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);

/// A label set and one thread's cell of it.
type KeyedCell = (Arc<Key>, Arc<Cell>);

/// A thread's cells by the labels' hash.
#[derive(Default)]
struct LocalCells {
    generation: u64,
    by_hash: HashMap<u64, Vec<KeyedCell>>,
}

thread_local! {
    static LOCAL: RefCell<LocalCells> = RefCell::default();
}

/// Runs `record` on this thread's cell for `labels`; false when the
/// registry is full (nothing recorded).
fn with_cell(labels: &Labels<'_>, record: impl FnOnce(&Cell)) -> bool {
    let hash = labels.hash();
    LOCAL
        .try_with(|local| {
            let mut local = local.borrow_mut();
            let generation = GENERATION.load(Ordering::Acquire);
            if local.generation != generation {
                local.generation = generation;
                local.by_hash.retain(|_, v| {
                    v.retain(|(_, c)| !c.retired.load(Ordering::Relaxed));
                    !v.is_empty()
                });
            }
            let found = local
                .by_hash
                .get(&hash)
                .and_then(|v| v.iter().find(|(k, _)| k.is(labels)));
            if let Some((_, cell)) = found {
                record(cell);
                return true;
            }
            match register(hash, labels) {
                Some((key, cell)) => {
                    record(&cell);
                    local.by_hash.entry(hash).or_default().push((key, cell));
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
}

/// A cell of `labels` for the calling thread, from the registry; None when
/// it is full.
fn register(hash: u64, labels: &Labels<'_>) -> Option<KeyedCell> {
    if FULL.load(Ordering::Relaxed)
        && !REGISTRY
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(hash, labels)
    {
        return None;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    let made = registry.new_cell(hash, labels, MAX_SERIES);
    FULL.store(registry.len >= MAX_SERIES, Ordering::Relaxed);
    made.ok()
}

fn dropped() {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!(
            max = MAX_SERIES,
            dropped = n,
            "prometheus: too many label sets (routes x consumers x nodes); requests with new ones are not recorded"
        );
    }
}

/// Forgets the series of routes that `alive` says no longer exist (by
/// route id); called before each scrape with the routes configured now.
pub fn forget_routes(alive: &dyn Fn(&str) -> bool) {
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if registry.forget_routes(alive) > 0 {
        FULL.store(registry.len >= MAX_SERIES, Ordering::Relaxed);
        GENERATION.fetch_add(1, Ordering::Release);
    }
}

/// Appends the plugin's series in the Prometheus text format (0.0.4):
/// nothing for a family without series, and always the plugin's own
/// `weir_prometheus_*` gauges and counters.
pub fn render(out: &mut String) {
    let (series, held) = {
        let registry = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
        (registry.series(), registry.len)
    };
    render_series(&series, out);
    header(
        out,
        "weir_prometheus_series",
        "gauge",
        "Label sets the prometheus plugin holds (at most 10000).",
    );
    let _ = writeln!(out, "weir_prometheus_series {held}");
    header(
        out,
        "weir_prometheus_series_dropped_total",
        "counter",
        "Requests the prometheus plugin did not record: they would have added a label set beyond its maximum.",
    );
    let _ = writeln!(
        out,
        "weir_prometheus_series_dropped_total {}",
        DROPPED.load(Ordering::Relaxed)
    );
}

mod text;
use text::{header, render_series};

#[cfg(test)]
mod tests {
    use super::text::*;
    use super::*;
    use crate::testing::config_error;

    #[test]
    fn configuration_errors_name_the_field() {
        let e = config_error(&SPEC, serde_json::json!({"prefer_name": "yes"}));
        assert_eq!(e.path, "prefer_name");
        assert!(e.message.contains("expected a boolean"), "{e}");
        let e = config_error(&SPEC, serde_json::json!({"export_uri": "/m"}));
        assert!(e.message.contains("unknown field `export_uri`"), "{e}");
        assert!(crate::testing::build(&SPEC, serde_json::json!({})).is_ok());
        assert!(crate::testing::build(&SPEC, serde_json::json!({"prefer_name": true})).is_ok());
    }

    fn labels<'a>(route: &'a str, consumer: &'a str, node: &'a str) -> Labels<'a> {
        let mut v = [""; LABELS];
        v[ROUTE_ID] = route;
        v[ROUTE] = route;
        v[MATCHED_URI] = "/a/*";
        v[CONSUMER] = consumer;
        v[NODE] = node;
        Labels::new(v)
    }

    #[test]
    fn label_sets_differ_whatever_their_lengths() {
        let moved = labels("ab", "c", "n");
        let other = labels("a", "bc", "n");
        assert!(!Key::of(&moved).is(&other));
        assert!(Key::of(&moved).is(&labels("ab", "c", "n")));
        let long = "x".repeat(FLAT_STACK);
        let heap = labels(&long, "c", "n");
        assert!(matches!(heap.flat, Flat::Heap(_)));
        assert!(Key::of(&heap).is(&labels(&long, "c", "n")));
        assert!(!Key::of(&heap).is(&labels(&long, "d", "n")));
        assert_eq!(Key::of(&heap).values[ROUTE].len(), FLAT_STACK);
    }

    /// A map with one cell per label set, filled by `record`.
    fn one_cell(map: &mut SeriesMap, l: &Labels<'_>, record: impl FnOnce(&Cell)) {
        let (_, cell) = map.new_cell(l.hash(), l, 100).unwrap();
        record(&cell);
    }

    #[test]
    fn renders_counters_and_cumulative_histograms_in_the_text_format() {
        let mut map = SeriesMap::default();
        let l = labels("r\"1", "jack", "10.0.0.1:80");
        one_cell(&mut map, &l, |c| {
            c.count_status(200);
            c.count_status(200);
            c.count_status(404);
            c.latency[REQUEST].observe(Duration::from_micros(1500));
            c.latency[REQUEST].observe(Duration::from_millis(300));
            c.latency[UPSTREAM].observe(Duration::from_millis(250));
            bump(&c.bandwidth[INGRESS], 100);
            bump(&c.bandwidth[EGRESS], 7);
        });
        // A second thread's cell of the same label set is summed.
        let (_, second) = map.new_cell(l.hash(), &l, 100).unwrap();
        second.count_status(200);
        let mut out = String::new();
        render_series(&map.series(), &mut out);
        let labels = r#"route="r\"1",service="",consumer="jack",node="10.0.0.1:80""#;
        let uri_host = r#"matched_uri="/a/*",matched_host="""#;
        for line in [
            "# TYPE apisix_http_status counter\n".to_owned(),
            format!("apisix_http_status{{code=\"200\",route=\"r\\\"1\",{uri_host},service=\"\",consumer=\"jack\",node=\"10.0.0.1:80\"}} 3\n"),
            format!("apisix_http_status{{code=\"404\",route=\"r\\\"1\",{uri_host},service=\"\",consumer=\"jack\",node=\"10.0.0.1:80\"}} 1\n"),
            "# TYPE apisix_http_latency histogram\n".to_owned(),
            format!("apisix_http_latency_bucket{{type=\"request\",{labels},le=\"1\"}} 0\n"),
            format!("apisix_http_latency_bucket{{type=\"request\",{labels},le=\"2\"}} 1\n"),
            format!("apisix_http_latency_bucket{{type=\"request\",{labels},le=\"200\"}} 1\n"),
            format!("apisix_http_latency_bucket{{type=\"request\",{labels},le=\"500\"}} 2\n"),
            format!("apisix_http_latency_bucket{{type=\"request\",{labels},le=\"+Inf\"}} 2\n"),
            format!("apisix_http_latency_sum{{type=\"request\",{labels}}} 301.5\n"),
            format!("apisix_http_latency_count{{type=\"request\",{labels}}} 2\n"),
            format!("apisix_http_latency_count{{type=\"upstream\",{labels}}} 1\n"),
            format!("apisix_http_latency_sum{{type=\"upstream\",{labels}}} 250\n"),
            format!("apisix_bandwidth{{type=\"ingress\",{labels}}} 100\n"),
            format!("apisix_bandwidth{{type=\"egress\",{labels}}} 7\n"),
        ] {
            assert!(out.contains(&line), "missing {line:?} in\n{out}");
        }
        assert!(
            !out.contains("type=\"apisix\""),
            "no apisix latency observed: no series\n{out}"
        );
    }

    #[test]
    fn nothing_is_rendered_without_series() {
        let mut out = String::new();
        render_series(&[], &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn codes_beyond_the_slots_count_as_other() {
        let mut map = SeriesMap::default();
        one_cell(&mut map, &labels("r", "", ""), |c| {
            for code in 200..(200 + CODE_SLOTS as u16 + 2) {
                c.count_status(code);
            }
        });
        let mut out = String::new();
        render_series(&map.series(), &mut out);
        assert!(
            out.contains("apisix_http_status{code=\"other\",route=\"r\",matched_uri=\"/a/*\",matched_host=\"\",service=\"\",consumer=\"\",node=\"\"} 2\n"),
            "{out}"
        );
    }

    #[test]
    fn the_map_holds_at_most_its_cap_of_label_sets() {
        let mut map = SeriesMap::default();
        let nodes: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:80")).collect();
        for n in &nodes[..3] {
            let l = labels("r", "", n);
            assert!(map.new_cell(l.hash(), &l, 3).is_ok());
        }
        let l = labels("r", "", &nodes[3]);
        assert!(map.new_cell(l.hash(), &l, 3).is_err(), "a fourth label set");
        let l = labels("r", "", &nodes[0]);
        assert!(
            map.new_cell(l.hash(), &l, 3).is_ok(),
            "another thread's cell of a known label set"
        );
        assert_eq!(map.len, 3);
    }

    #[test]
    fn forgetting_a_route_retires_its_cells_and_frees_room() {
        let mut map = SeriesMap::default();
        let gone = labels("gone", "", "");
        let (_, gone_cell) = map.new_cell(gone.hash(), &gone, 2).unwrap();
        let kept = labels("kept", "", "");
        map.new_cell(kept.hash(), &kept, 2).unwrap();
        let unmatched = labels("", "", "");
        assert!(map.new_cell(unmatched.hash(), &unmatched, 2).is_err());
        assert_eq!(map.forget_routes(&|id| id == "kept"), 1);
        assert!(gone_cell.retired.load(Ordering::Relaxed));
        assert!(map.new_cell(unmatched.hash(), &unmatched, 2).is_ok());
        assert_eq!(
            map.forget_routes(&|_| false),
            1,
            "route \"\" (no route matched) is never forgotten"
        );
        assert_eq!(map.len, 1);
    }

    #[test]
    fn milliseconds_are_exact_decimals() {
        assert_eq!(millis(0), "0");
        assert_eq!(millis(1500), "1.5");
        assert_eq!(millis(2_000), "2");
        assert_eq!(millis(1), "0.001");
    }
}
