//! Error answers and retries over real sockets: 502, 503, 504, and retries
//! that never replay a non-idempotent request that may have reached a node.

mod common;

use std::time::{Duration, Instant};

use common::{black_hole, body, closed_port, distribution, gateway, get, send, Backend};
use http::StatusCode;

#[tokio::test]
async fn upstream_without_nodes_is_503() {
    let gw = gateway("routes:\n  - {uri: \"/*\", upstream: {nodes: {}}}\n").await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("error_msg"), "{}", r.body);
}

#[tokio::test]
async fn connect_failure_is_502() {
    let dead = closed_port().await;
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: {{\"{dead}\": 1}}}}}}\n"
    ))
    .await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.body, r#"{"error_msg":"502 Bad Gateway"}"#);
}

/// How long the slow nodes below take to answer: far beyond the timeouts
/// configured (fractions of a second), so an answer that comes before it
/// was not waiting for the node, however loaded the machine.
const SLOW_NODE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn slow_upstream_is_504_after_the_read_timeout() {
    let slow = Backend::start("slow").await;
    slow.set_delay(SLOW_NODE.as_millis() as u64);
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{timeout: {{connect: 1, send: 0.2, read: 0.2}}, nodes: {{\"{}\": 1}}}}}}\n",
        slow.node()
    ))
    .await;
    let started = Instant::now();
    let r = get(gw.proxy_addr(), None, "/").await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // Not before the node's time (send + read) was up, and not after it answered.
    assert!(
        took >= Duration::from_millis(400),
        "504 before the 0.2 + 0.2 s timeout: {took:?}"
    );
    assert!(took < SLOW_NODE, "waited for the node: {took:?}");
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_node_for_every_method() {
    let live = Backend::start("live").await;
    let dead = closed_port().await;
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: {{\"{dead}\": 1, \"{}\": 1}}}}}}\n",
        live.node()
    ))
    .await;
    let counts = distribution(gw.proxy_addr(), None, "/", 20).await;
    assert_eq!(counts.get("live"), Some(&20), "{counts:?}");
    // A POST that never reached a node is safe to retry.
    for _ in 0..6 {
        let r = send(gw.proxy_addr(), "POST", None, "/upload", body("payload")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "7");
    }
}

#[tokio::test]
async fn requests_lost_mid_flight_are_retried_only_when_idempotent() {
    let live = Backend::start("live").await;
    let hole = black_hole().await;
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{nodes: {{\"{hole}\": 1, \"{}\": 1}}}}}}\n",
        live.node()
    ))
    .await;
    // GETs: whichever node is tried first, every one ends 200.
    for _ in 0..10 {
        assert_eq!(get(gw.proxy_addr(), None, "/").await.status, StatusCode::OK);
    }
    // POSTs with a body: those that hit the black hole may have been
    // processed, so they are not replayed: 502, never a duplicate.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            send(gw.proxy_addr(), "POST", None, "/upload", body("x"))
                .await
                .status,
        );
    }
    assert!(statuses.contains(&StatusCode::BAD_GATEWAY), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
}

#[tokio::test]
async fn retries_zero_means_one_attempt() {
    let dead = closed_port().await;
    let live = Backend::start("live").await;
    let gw = gateway(&format!(
        "routes:\n  - {{uri: \"/*\", upstream: {{retries: 0, nodes: {{\"{dead}\": 1, \"{}\": 1}}}}}}\n",
        live.node()
    ))
    .await;
    let mut bad = 0;
    for _ in 0..10 {
        if get(gw.proxy_addr(), None, "/").await.status == StatusCode::BAD_GATEWAY {
            bad += 1;
        }
    }
    // Round robin alternates: half the requests go to the dead node first.
    assert_eq!(bad, 5);
}

/// `retry_timeout` bounds the time after the first attempt during which a
/// retry may start: a node that times out after 0.3 s is retried on the live
/// node under a 5 s retry budget, and answered 504 under a 0.1 s one. Run on
/// the HTTP/1.1 fast path and on the general path.
async fn retry_timeout_bounds_when_a_retry_may_start(general_path: bool) {
    let slow = Backend::start("slow").await;
    slow.set_delay(SLOW_NODE.as_millis() as u64);
    let live = Backend::start("live").await;
    let gateway_block = if general_path {
        "gateway: {http: {fast_path: false}}\n"
    } else {
        ""
    };
    // The slow node's weight makes it every request's first pick.
    let yaml = |retry_timeout: f64| {
        format!(
            "{gateway_block}routes:\n  - {{uri: \"/*\", upstream: {{retry_timeout: {retry_timeout}, \
             timeout: {{connect: 1, send: 0.3, read: 0.3}}, nodes: {{\"{}\": 100, \"{}\": 1}}}}}}\n",
            slow.node(),
            live.node()
        )
    };

    let patient = gateway(&yaml(5.0)).await;
    let r = get(patient.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK, "retried within the budget");
    assert_eq!(r.backend(), "live");

    let hasty = gateway(&yaml(0.1)).await;
    let started = Instant::now();
    let r = get(hasty.proxy_addr(), None, "/").await;
    assert_eq!(
        r.status,
        StatusCode::GATEWAY_TIMEOUT,
        "no retry once the budget is spent"
    );
    let took = started.elapsed();
    assert!(
        took < SLOW_NODE,
        "answered after the first attempt, not the slow node: {took:?}"
    );
    assert_eq!(live.hits(), 1, "the live node saw only the patient request");
}

#[tokio::test]
async fn retry_timeout_bounds_when_a_retry_may_start_fast_path() {
    retry_timeout_bounds_when_a_retry_may_start(false).await;
}

#[tokio::test]
async fn retry_timeout_bounds_when_a_retry_may_start_general_path() {
    retry_timeout_bounds_when_a_retry_may_start(true).await;
}
