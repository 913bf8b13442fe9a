//! The real binary: graceful shutdown on SIGTERM/SIGINT/SIGQUIT, SIGHUP
//! reload, and the control API.

mod common;

use std::time::Duration;

use common::{get, Backend, WeirProcess};
use http::StatusCode;

fn yaml(b: &Backend, extra: &str) -> String {
    format!(
        "gateway:\n  listeners: [{{address: \"127.0.0.1:0\"}}]\n  control: {{address: \"127.0.0.1:0\"}}\n  access_log: {{enabled: false}}\n{extra}routes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        b.node()
    )
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn shutdown_finishes_in_flight(sig: &str) {
    let slow = Backend::start("slow").await;
    slow.set_delay(800);
    let mut weir = WeirProcess::start(&yaml(&slow, ""));
    let proxy = weir.proxy;
    let in_flight = tokio::spawn(async move { get(proxy, None, "/").await });
    wait_until("the request to reach the backend", || {
        slow.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    weir.signal(sig);
    weir.wait_log(|v| v["message"] == "listeners closed; draining connections");
    // New connections are refused once listeners are closed...
    assert!(tokio::net::TcpStream::connect(proxy).await.is_err());
    // ...while the request in flight completes.
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), "slow");
    assert_eq!(
        r.headers["connection"], "close",
        "keep-alive ends with this response"
    );
    assert_eq!(weir.wait_exit(), Some(0));
}

#[tokio::test]
async fn sigterm_sends_goaway_on_h2_and_finishes_the_open_stream() {
    use http_body_util::{BodyExt, Empty};
    let slow = Backend::start("slow").await;
    slow.set_delay(800);
    let mut weir = WeirProcess::start(&yaml(&slow, ""));
    let proxy = weir.proxy;
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn_task = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{proxy}/"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let open_stream = h2.send_request(req);
    let open_stream = tokio::spawn(open_stream);
    wait_until("the request to reach the backend", || {
        slow.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    weir.signal("TERM");
    // The stream opened before the signal completes normally.
    let resp = open_stream
        .await
        .unwrap()
        .expect("in-flight h2 stream completes");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
    // After GOAWAY the connection accepts no new stream and then closes.
    let req = http::Request::get(format!("http://{proxy}/"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert!(
        h2.send_request(req).await.is_err(),
        "no new stream after GOAWAY"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), conn_task)
        .await
        .expect("connection closed");
    assert_eq!(weir.wait_exit(), Some(0));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    shutdown_finishes_in_flight("TERM").await;
}

#[tokio::test]
async fn sigquit_and_sigint_shut_down_gracefully_too() {
    shutdown_finishes_in_flight("QUIT").await;
    shutdown_finishes_in_flight("INT").await;
}

#[tokio::test]
async fn readiness_fails_at_once_during_the_drain_delay() {
    let b = Backend::start("b").await;
    let mut weir = WeirProcess::start(&yaml(&b, "  shutdown: {drain_delay: 1, timeout: 5}\n"));
    assert_eq!(
        get(weir.control, None, "/status/ready").await.status,
        StatusCode::OK
    );
    weir.signal("TERM");
    weir.wait_log(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("drain delay"))
    });
    assert_eq!(
        get(weir.control, None, "/status/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Still serving traffic during the drain delay.
    assert_eq!(get(weir.proxy, None, "/").await.status, StatusCode::OK);
    assert_eq!(weir.wait_exit(), Some(0));
}

#[tokio::test]
async fn sighup_rereads_the_configuration() {
    let a = Backend::start("a").await;
    let mut weir = WeirProcess::start(&yaml(&a, ""));
    weir.signal("HUP");
    weir.wait_log(|v| v["message"] == "configuration reloaded");
    let status: serde_json::Value =
        serde_json::from_str(&get(weir.control, None, "/v1/reload").await.body).unwrap();
    assert!(status["applied"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(get(weir.proxy, None, "/").await.backend(), "a");
}

#[tokio::test]
async fn control_api_reports_status_routes_and_live_upstream_nodes() {
    let a = Backend::start("a").await;
    let weir = WeirProcess::start(&yaml(&a, ""));
    let c = weir.control;
    assert_eq!(get(c, None, "/status").await.status, StatusCode::OK);
    assert_eq!(get(c, None, "/status/ready").await.status, StatusCode::OK);
    let routes: serde_json::Value =
        serde_json::from_str(&get(c, None, "/v1/routes").await.body).unwrap();
    assert_eq!(routes[0]["id"], "r");
    let ups: serde_json::Value =
        serde_json::from_str(&get(c, None, "/v1/upstreams").await.body).unwrap();
    assert_eq!(ups[0]["id"], "route:r");
    assert_eq!(ups[0]["nodes"][0]["port"], a.addr.port());
    let dump = get(c, None, "/v1/discovery/kubernetes/dump").await;
    assert_eq!(
        dump.status,
        StatusCode::NOT_FOUND,
        "no discovery configured"
    );
    assert_eq!(get(c, None, "/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_during_the_drain_delay_sees_no_failure() {
    let b = Backend::start("b").await;
    let mut weir = WeirProcess::start(&yaml(&b, "  shutdown: {drain_delay: 3, timeout: 5}\n"));
    // Keep-alive and fresh connections mixed, as clients behind a Service.
    let load = common::Load::start(weir.proxy, 4, "/", 0);
    load.wait_more(200).await;
    weir.signal("TERM");
    weir.wait_log(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("drain delay"))
    });
    assert_eq!(
        get(weir.control, None, "/status/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Kubernetes takes the pod out of the Service during this window; until
    // then every request must still succeed.
    load.wait_more(300).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failure_summary());
    assert_eq!(weir.wait_exit(), Some(0));
}
