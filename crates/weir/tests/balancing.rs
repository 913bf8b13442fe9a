//! Load balancing over real sockets: weights, consistent hashing, least_conn
//! and ewma under uneven latency.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{client, distribution, empty, gateway, send_with, Backend};

fn within(actual: usize, expected: usize, tolerance_pct: f64) -> bool {
    let diff = (actual as f64 - expected as f64).abs();
    diff <= expected as f64 * tolerance_pct / 100.0
}

#[tokio::test]
async fn roundrobin_weights_1_2_3_over_600_requests() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let yaml = format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{type: roundrobin, nodes: {{\"{}\": 1, \"{}\": 2, \"{}\": 3}}}}}}\n",
        a.node(), b.node(), c.node()
    );
    let gw = gateway(&yaml).await;
    let counts = distribution(gw.proxy_addr(), None, "/", 600).await;
    // Tolerance: 2% of each expected share (smooth WRR is exact for one client).
    assert!(within(counts["a"], 100, 2.0), "{counts:?}");
    assert!(within(counts["b"], 200, 2.0), "{counts:?}");
    assert!(within(counts["c"], 300, 2.0), "{counts:?}");
}

#[tokio::test]
async fn weight_zero_node_gets_no_traffic() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let yaml = format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: [{{host: 127.0.0.1, port: {}, weight: 1}}, {{host: 127.0.0.1, port: {}, weight: 0}}]}}}}\n",
        a.addr.port(), b.addr.port()
    );
    let gw = gateway(&yaml).await;
    let counts = distribution(gw.proxy_addr(), None, "/", 50).await;
    assert_eq!(counts.get("a"), Some(&50));
    assert_eq!(b.hits(), 0);
}

async fn chash_map(addr: std::net::SocketAddr, keys: usize) -> BTreeMap<usize, String> {
    let c = client();
    let mut map = BTreeMap::new();
    for k in 0..keys {
        let req = http::Request::builder()
            .uri(format!("http://{addr}/"))
            .header("x-user", format!("user-{k}"))
            .body(empty())
            .unwrap();
        let resp = c.request(req).await.unwrap();
        let backend = resp.headers()["x-backend"].to_str().unwrap().to_owned();
        map.insert(k, backend);
    }
    map
}

#[tokio::test]
async fn chash_is_sticky_and_adding_a_node_remaps_about_one_share() {
    let backends = [
        Backend::start("n0").await,
        Backend::start("n1").await,
        Backend::start("n2").await,
        Backend::start("n3").await,
    ];
    let nodes = |n: usize| {
        backends[..n]
            .iter()
            .map(|b| format!("\"{}\": 1", b.node()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let yaml = |n: usize| {
        format!(
            "routes:\n  - {{uri: \"/*\", upstream: {{type: chash, hash_on: header, key: x-user, nodes: {{{}}}}}}}\n",
            nodes(n)
        )
    };
    let gw = gateway(&yaml(3)).await;
    let keys = 600;
    let first = chash_map(gw.proxy_addr(), keys).await;
    let second = chash_map(gw.proxy_addr(), keys).await;
    assert_eq!(first, second, "the same key always reaches the same node");
    let used: std::collections::BTreeSet<_> = first.values().collect();
    assert_eq!(used.len(), 3, "keys spread over every node");

    // Add a fourth node by reloading the configuration.
    gw.core.reload(common::config(&yaml(4))).await.unwrap();
    let after = chash_map(gw.proxy_addr(), keys).await;
    let moved: Vec<_> = (0..keys).filter(|k| first[k] != after[k]).collect();
    for k in &moved {
        assert_eq!(after[k], "n3", "keys only move to the new node");
    }
    // Ideal share is 1/4 of the keys; allow up to 1/4 + 10 points.
    assert!(
        moved.len() <= keys * 35 / 100 && !moved.is_empty(),
        "{} of {keys} keys moved",
        moved.len()
    );
}

/// Fires `total` requests from `concurrency` workers; returns hits per backend.
async fn concurrent_load(
    addr: std::net::SocketAddr,
    total: usize,
    concurrency: usize,
) -> BTreeMap<String, usize> {
    let counts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (counts, next) = (counts.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < total {
                let r = send_with(&c, addr, "GET", None, "/", empty()).await;
                assert_eq!(r.status, 200);
                *counts
                    .lock()
                    .unwrap()
                    .entry(r.backend().to_owned())
                    .or_insert(0) += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let out = counts.lock().unwrap().clone();
    out
}

async fn uneven_latency_share(lb: &str) -> f64 {
    let fast = Backend::start("fast").await;
    let slow = Backend::start("slow").await;
    slow.set_delay(100);
    fast.set_delay(2);
    let yaml = format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{type: {lb}, nodes: {{\"{}\": 1, \"{}\": 1}}}}}}\n",
        fast.node(),
        slow.node()
    );
    let gw = gateway(&yaml).await;
    let counts = concurrent_load(gw.proxy_addr(), 300, 10).await;
    *counts.get("fast").unwrap_or(&0) as f64 / 300.0
}

#[tokio::test]
async fn least_conn_sends_most_traffic_to_the_fast_node() {
    let share = uneven_latency_share("least_conn").await;
    // Round robin would give 50%; least_conn should keep the slow node at
    // about one request in flight.
    assert!(share > 0.75, "fast node share {share}");
}

#[tokio::test]
async fn ewma_sends_most_traffic_to_the_fast_node() {
    let share = uneven_latency_share("ewma").await;
    assert!(share > 0.75, "fast node share {share}");
}

#[tokio::test]
async fn roundrobin_ignores_latency() {
    let share = uneven_latency_share("roundrobin").await;
    assert!((0.45..=0.55).contains(&share), "fast node share {share}");
}
