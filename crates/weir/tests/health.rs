//! Health checks: active probes and passive observation take failing nodes
//! out of rotation and bring them back; all-unhealthy fails open; 502/503/504
//! answers are retried on another node when the request can be replayed.

mod common;

use std::time::Duration;

use common::{body, distribution, gateway, get, send, Backend};
use http::StatusCode;

async fn node_status(control: std::net::SocketAddr, port: u16) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&get(control, None, "/v1/healthcheck").await.body).unwrap();
    v[0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["port"] == port)
        .map(|n| n["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn wait_status(control: std::net::SocketAddr, port: u16, want: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while node_status(control, port).await != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node :{port} never became {want}"));
}

fn yaml(a: &Backend, b: &Backend, checks: &str) -> String {
    format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: {{\"{}\": 1, \"{}\": 1}}, checks: {checks}}}}}\n",
        a.node(),
        b.node()
    )
}

const ACTIVE: &str = "{active: {http_path: /health, healthy: {interval: 0.1, successes: 1}, unhealthy: {interval: 0.1, http_failures: 1}}}";

#[tokio::test]
async fn active_checks_take_a_failing_node_out_and_bring_it_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gw = gateway(&yaml(&a, &b, ACTIVE)).await;
    let control = gw.control_addr().unwrap();
    wait_status(control, b.addr.port(), "healthy").await;

    b.set_fail_status(500);
    wait_status(control, b.addr.port(), "unhealthy").await;
    let counts = distribution(gw.proxy_addr(), None, "/", 20).await;
    assert_eq!(counts.get("a"), Some(&20), "{counts:?}");

    b.set_fail_status(0);
    wait_status(control, b.addr.port(), "healthy").await;
    let counts = distribution(gw.proxy_addr(), None, "/", 20).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&10), Some(&10)));
}

#[tokio::test]
async fn active_tcp_checks_notice_a_dead_node() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let checks = "{active: {type: tcp, healthy: {interval: 0.1}, unhealthy: {interval: 0.1, tcp_failures: 1}}}";
    let gw = gateway(&yaml(&a, &b, checks)).await;
    let control = gw.control_addr().unwrap();
    b.kill();
    wait_status(control, b.addr.port(), "unhealthy").await;
    let counts = distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!(counts.get("a"), Some(&10));
}

#[tokio::test]
async fn passive_checks_stop_traffic_to_a_node_answering_errors() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.set_fail_status(500);
    // APISIX (and weir) require active checks beside passive ones; these
    // probes judge nothing (their statuses are in neither list), so only
    // live traffic counts here.
    let checks = "{active: {healthy: {http_statuses: [299]}, unhealthy: {http_statuses: [599]}}, passive: {unhealthy: {http_statuses: [500], http_failures: 2}}}";
    let gw = gateway(&yaml(&a, &b, checks)).await;
    let mut errors = 0;
    for _ in 0..20 {
        if get(gw.proxy_addr(), None, "/").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
    }
    assert_eq!(
        errors, 2,
        "two failures mark b unhealthy; then only a serves"
    );
    assert_eq!(
        node_status(gw.control_addr().unwrap(), b.addr.port()).await,
        "unhealthy"
    );
}

#[tokio::test]
async fn every_node_unhealthy_fails_open() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // The probe path answers 503 on both nodes, real traffic is fine.
    let checks = "{active: {http_path: /status/503, healthy: {interval: 0.1}, unhealthy: {interval: 0.1, http_failures: 1}}}";
    let gw = gateway(&yaml(&a, &b, checks)).await;
    let control = gw.control_addr().unwrap();
    wait_status(control, a.addr.port(), "unhealthy").await;
    wait_status(control, b.addr.port(), "unhealthy").await;
    let counts = distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&5), Some(&5)));
}

#[tokio::test]
async fn node_errors_502_503_504_are_retried_only_for_replayable_requests() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_fail_status(503);
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: {{\"{}\": 1, \"{}\": 1}}}}}}\n",
        a.node(),
        b.node()
    ))
    .await;
    let counts = distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!(
        counts.get("b"),
        Some(&10),
        "every GET ends on the healthy node"
    );
    assert!(a.hits() >= 5, "a was tried first at least half the time");
    let a_before = a.hits();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            send(gw.proxy_addr(), "POST", None, "/", body("x"))
                .await
                .status,
        );
    }
    let unavailable = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(unavailable > 0, "{statuses:?}");
    assert_eq!(
        unavailable,
        a.hits() - a_before,
        "every POST that reached a got a's 503, never a replay: {statuses:?}"
    );
}

#[tokio::test]
async fn invalid_checks_are_rejected_with_their_path() {
    let err = weir_config::load_str(
        "routes:\n  - {uri: /, upstream: {nodes: {\"10.0.0.1:80\": 1}, checks: {active: {http_path: health, healthy: {successes: 0}, unhealthy: {http_statuses: [99]}}}}}\n",
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("routes[0].upstream.checks.active.http_path: \"health\" must start with /"),
        "{err}"
    );
    assert!(
        err.contains("routes[0].upstream.checks.active.healthy.successes: must be 1..254, got 0"),
        "{err}"
    );
    assert!(
        err.contains(
            "routes[0].upstream.checks.active.unhealthy.http_statuses[0]: 99 is not an HTTP status"
        ),
        "{err}"
    );
}
