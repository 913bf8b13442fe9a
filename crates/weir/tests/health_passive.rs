//! The passive `timeouts` threshold: a node that leaves real requests
//! unanswered past `timeout.send + timeout.read` is marked unhealthy after
//! exactly `checks.passive.unhealthy.timeouts` timeouts, and then gets no
//! traffic while another node is healthy. On both request paths.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{gateway, get, Backend, Reply};
use http::StatusCode;

/// `timeout.send` and `timeout.read`, seconds: a node answering later than
/// their sum has timed out.
const SEND: f64 = 0.2;
const READ: f64 = 0.3;
/// The slow node answers after this many ms: far beyond send + read.
const SLOW_MS: u64 = 60_000;
/// `checks.passive.unhealthy.timeouts`.
const TIMEOUTS: usize = 3;

/// One GET, bounded: a timed-out attempt plus its retry on the other node,
/// with a generous margin for a loaded machine.
async fn bounded_get(addr: SocketAddr) -> Reply {
    let limit = Duration::from_secs_f64(2.0 * (SEND + READ)) + Duration::from_secs(10);
    tokio::time::timeout(limit, get(addr, None, "/"))
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
}

async fn node_status(control: SocketAddr, port: u16) -> String {
    let r = get(control, None, "/v1/healthcheck").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("healthcheck JSON");
    v[0]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["port"] == port)
        .and_then(|n| n["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn timeouts_mark_a_node_unhealthy(fast_path: bool) {
    let (fast, slow) = (Backend::start("fast").await, Backend::start("slow").await);
    slow.set_delay(SLOW_MS);
    // Only timeouts can mark the node: the other thresholds are out of reach.
    // Active probes are required beside passive checks (as in APISIX); these
    // are TCP connects an hour apart (no request reaches the nodes' counters,
    // no probe success resets the passive counts during the test).
    let gw = gateway(&format!(
        "gateway: {{http: {{fast_path: {fast_path}}}}}\nroutes:\n  - {{uri: \"/*\", upstream: {{timeout: {{connect: 5, send: {SEND}, read: {READ}}}, nodes: {{\"{}\": 1, \"{}\": 1}}, checks: {{active: {{type: tcp, healthy: {{interval: 3600}}, unhealthy: {{interval: 3600, tcp_failures: 254, timeouts: 254}}}}, passive: {{unhealthy: {{timeouts: {TIMEOUTS}, http_failures: 254, tcp_failures: 254}}}}}}}}}}\n",
        fast.node(),
        slow.node()
    ))
    .await;
    let control = gw.control_addr().expect("control API");
    let slow_port = slow.addr.port();

    // Each request that meets the slow node times out there and is retried
    // on the fast one (a bodyless GET may be replayed).
    let mut requests = 0;
    while slow.hits() < TIMEOUTS {
        requests += 1;
        assert!(requests <= 4 * TIMEOUTS, "the slow node is not being tried");
        let before = slow.hits();
        let r = bounded_get(gw.proxy_addr()).await;
        assert_eq!(
            (r.status, r.backend()),
            (StatusCode::OK, "fast"),
            "{}",
            r.body
        );
        if slow.hits() > before && slow.hits() < TIMEOUTS {
            assert_eq!(
                node_status(control, slow_port).await,
                "healthy",
                "{} timeout(s) of {TIMEOUTS} do not mark the node",
                slow.hits()
            );
        }
    }
    // The timeout is recorded before the retry answers the client.
    assert_eq!(
        node_status(control, slow_port).await,
        "unhealthy",
        "{TIMEOUTS} timeouts mark the node"
    );

    // From then on the slow node gets nothing; every request is answered
    // by the fast node at once.
    for _ in 0..10 {
        let r = bounded_get(gw.proxy_addr()).await;
        assert_eq!(
            (r.status, r.backend()),
            (StatusCode::OK, "fast"),
            "{}",
            r.body
        );
    }
    assert_eq!(
        slow.hits(),
        TIMEOUTS,
        "no request reached the unhealthy node"
    );
}

#[tokio::test]
async fn passive_timeouts_threshold_marks_a_node_unhealthy_on_the_fast_path() {
    timeouts_mark_a_node_unhealthy(true).await;
}

#[tokio::test]
async fn passive_timeouts_threshold_marks_a_node_unhealthy_on_the_general_path() {
    timeouts_mark_a_node_unhealthy(false).await;
}
