//! Where the time of one configuration change goes with 10,000 routes:
//! a timing harness, not a test (ignored; run it on an optimised build):
//!
//! ```text
//! cargo test --profile ci-smoke -p weir --test change_cost -- --ignored --nocapture
//! ```
//!
//! The routes are the ones `bench/admin.py seed-etcd` writes (an inline
//! upstream each, 100 hosts), held as Admin API resources like etcd's; one
//! route is then replaced, as a PUT would, and each stage of taking the
//! change is timed: decoding the JSON, merging with the file, validation,
//! the engine's compile (whole, and incremental from the live snapshot).
//! Prints the median and the maximum of each stage over the runs, and the
//! compiler's own breakdown (debug log lines `configuration compiled`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_admin::kind::Kind;
use weir_admin::merge;
use weir_admin::state::{AdminState, Entry, Resource};
use weir_config::{validate_config, AnyPlugin};
use weir_proxy::snapshot::Compiler;

const ROUTES: usize = 10_000;
const RUNS: usize = 21;

fn route(i: usize, path: &str) -> Value {
    json!({"id": format!("r{i}"), "uri": path, "host": format!("h{}.seed.test", i % 100),
           "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:9": 1}}})
}

fn entry(i: usize, value: Value) -> (String, Arc<Entry>) {
    let id = format!("r{i}");
    let resource = Resource::decode(Kind::Route, None, &value).expect("a valid route");
    let e = Entry {
        kind: Kind::Route,
        owner: None,
        id: id.clone(),
        value: Arc::new(value),
        resource: Arc::new(resource),
        created: i as u64 + 1,
        modified: i as u64 + 1,
    };
    (Kind::Route.key(None, &id), Arc::new(e))
}

struct Times(BTreeMap<&'static str, Vec<Duration>>);

impl Times {
    fn add(&mut self, stage: &'static str, since: Instant) -> Instant {
        self.0.entry(stage).or_default().push(since.elapsed());
        Instant::now()
    }

    fn print(mut self) {
        for (stage, v) in self.0.iter_mut() {
            v.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{stage:<40} median {:>8.3} ms   max {:>8.3} ms",
                ms(v[v.len() / 2]),
                ms(v[v.len() - 1])
            );
        }
    }
}

#[test]
#[ignore = "a timing harness: run on an optimised build with --ignored --nocapture"]
fn one_change_with_10k_routes() {
    // The engine's own stage times (`configuration compiled` lines).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("weir_proxy::compile=debug")
        .with_test_writer()
        .try_init();
    let file = weir_config::load_str(
        "gateway:\n  listeners: [{address: \"127.0.0.1:0\"}]\n",
        "bench.yaml",
    )
    .expect("the file loads");
    let items = merge::file_items(&file);
    let mut state = AdminState::default();
    for i in 0..ROUTES {
        let (k, e) = entry(i, route(i, &format!("/api/r{i}/*")));
        state.entries.insert(k, e);
    }
    state.index = ROUTES as u64;
    let compiler =
        Compiler::new(Arc::new(weir_discovery::Registry::new())).expect("a TLS client setup");
    let merged = merge::merge(&file, &items, &state, None).expect("merge");
    let mut live = compiler
        .compile(Arc::new(merged.config))
        .expect("the first compile");

    let mut times = Times(BTreeMap::new());
    for run in 0..RUNS {
        let t = Instant::now();
        let body = serde_json::to_vec(&route(7, &format!("/changed/{run}"))).expect("JSON");
        let value: Value = serde_json::from_slice(&body).expect("JSON");
        let (key, e) = entry(7, value);
        let mut next = state.clone();
        next.entries.insert(key.clone(), e);
        let t = times.add("1 decode the PUT, clone the state", t);
        let merged = merge::merge(&file, &items, &next, Some(&key)).expect("merge");
        let t = times.add("2 merge (file + Admin API state)", t);
        validate_config(&merged.config, &AnyPlugin).expect("valid");
        let t = times.add("3 validate_config", t);
        let config = Arc::new(merged.config);
        let full = compiler.compile(config.clone()).expect("compile");
        let t = times.add("4 compile, whole", t);
        drop(full);
        let t = times.add("5 drop a snapshot", t);
        let incremental = compiler.compile_from(config, Some(&live)).expect("compile");
        times.add("6 compile, incremental from the live one", t);
        live = incremental;
        state = next;
    }
    times.print();
}
