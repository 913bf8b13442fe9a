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

/// `GET /v1/reload` on the control API.
async fn reload_status(weir: &WeirProcess) -> serde_json::Value {
    serde_json::from_str(&get(weir.control, None, "/v1/reload").await.body).unwrap()
}

/// SIGHUP re-reads a changed file, and the change is one the file watcher
/// cannot see: `weir.yaml` is a symlink to a file in another directory,
/// edited in place (the watcher watches `weir.yaml`'s directory, which sees
/// no event), so only the signal can have applied it.
#[tokio::test]
async fn sighup_rereads_a_changed_configuration_the_watcher_does_not_see() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let real = elsewhere.path().join("weir.yaml");
    std::fs::write(&real, yaml(&a, "")).unwrap();
    let link = dir.path().join("weir.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut weir = WeirProcess::spawn(dir, link);
    weir.wait_listening();
    weir.wait_log(|v| v["message"] == "ready");
    assert_eq!(get(weir.proxy, None, "/").await.backend(), "a");

    std::fs::write(&real, yaml(&b, "")).unwrap();
    assert_eq!(
        reload_status(&weir).await["attempts"],
        0,
        "nothing reloaded yet"
    );
    weir.signal("HUP");
    // The signal is logged before the reload it causes; a reload by the
    // watcher would have been logged first.
    let first = weir.wait_log(|v| {
        v["message"] == "SIGHUP: reloading configuration"
            || v["message"] == "configuration reloaded"
    });
    assert_eq!(first["message"], "SIGHUP: reloading configuration");
    weir.wait_log(|v| v["message"] == "configuration reloaded");
    assert_eq!(get(weir.proxy, None, "/").await.backend(), "b");
    let status = reload_status(&weir).await;
    assert_eq!(
        (&status["attempts"], &status["applied"]),
        (&1.into(), &1.into()),
        "{status}"
    );
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

/// `gateway.shutdown.timeout` expiring: a request still waiting for its node
/// is cut, and the process exits 0 once the timeout is up, not when the
/// node answers.
#[tokio::test]
async fn shutdown_timeout_cuts_requests_still_in_flight_and_exits_zero() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    // The node answers long after the timeout (and before wait_exit's 30 s).
    const NODE: Duration = Duration::from_secs(20);
    let slow = Backend::start("slow").await;
    slow.set_delay(NODE.as_millis() as u64);
    let mut weir = WeirProcess::start(&yaml(
        &slow,
        &format!("  shutdown: {{timeout: {}}}\n", TIMEOUT.as_secs()),
    ));
    let proxy = weir.proxy;
    let in_flight = tokio::spawn(async move {
        let req = http::Request::get(format!("http://{proxy}/"))
            .body(common::empty())
            .unwrap();
        common::client().request(req).await.map(|r| r.status())
    });
    wait_until("the request to reach the node", || {
        slow.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let signalled = std::time::Instant::now();
    weir.signal("TERM");
    assert_eq!(weir.wait_exit(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= TIMEOUT,
        "exited {took:?} after SIGTERM, before the timeout"
    );
    assert!(took < NODE, "waited {took:?} for the node");
    let cut = in_flight.await.unwrap();
    assert!(cut.is_err(), "the request in flight was cut: {cut:?}");
    let done = weir.wait_log(|v| v["message"] == "shutdown complete");
    assert_eq!(done["unfinished_connections"], 1, "{done}");
}

/// A signal that arrives while weir is still starting (here: blocked
/// opening its access log, a FIFO nobody reads yet, before any listener
/// opens) is not fatal: once start-up completes, weir shuts down cleanly.
#[tokio::test]
async fn sigterm_during_start_up_shuts_down_cleanly_once_started() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let config_path = dir.path().join("weir.yaml");
    std::fs::write(
        &config_path,
        format!(
            "gateway:\n  listeners: [{{address: \"127.0.0.1:0\"}}]\n  control: {{address: \"127.0.0.1:0\"}}\n  access_log: {{path: {fifo:?}}}\nroutes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
            b.node()
        ),
    )
    .unwrap();
    let mut weir = WeirProcess::spawn(dir, config_path);
    let pid = weir.child.id();
    // Opening a FIFO for writing blocks until a reader opens it: wait until
    // a thread of weir sleeps there.
    wait_until("weir blocked opening its access log", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("wchan"))
                    .is_ok_and(|w| w.trim() == "wait_for_partner")
            })
    })
    .await;
    weir.signal("TERM");
    // Start-up may go on now: read (and discard) the access log.
    let reader = std::thread::spawn(move || {
        let mut log = std::fs::File::open(fifo).unwrap();
        std::io::copy(&mut log, &mut std::io::sink()).unwrap();
    });
    let down = weir.wait_log(|v| v["message"] == "shutting down");
    assert_eq!(down["signal"], "SIGTERM", "{down}");
    assert_eq!(weir.wait_exit(), Some(0));
    reader.join().unwrap();
}

/// A discovery block whose `client.ca_file` does not exist.
fn missing_ca_discovery(dir: &std::path::Path) -> String {
    format!(
        "discovery:\n  kubernetes:\n    service: {{schema: https, host: 127.0.0.1, port: 6443}}\n    client: {{token: t, ca_file: {:?}}}\n",
        dir.join("missing-ca.pem")
    )
}

#[tokio::test]
async fn a_missing_client_ca_file_refuses_start() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("weir.yaml");
    let discovery = missing_ca_discovery(dir.path());
    std::fs::write(&config_path, format!("{discovery}{}", yaml(&b, ""))).unwrap();
    let mut weir = WeirProcess::spawn(dir, config_path);
    assert_eq!(weir.wait_exit(), Some(1), "start refused");
    let err = weir.wait_log(|v| v["level"] == "ERROR");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("client.ca_file") && msg.contains("missing-ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_client_ca_file_refuses_a_reload_and_the_old_config_keeps_serving() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut weir = WeirProcess::start(&yaml(&a, ""));
    // The file watcher is in place once weir logs "ready".
    weir.wait_log(|v| v["message"] == "ready");
    let discovery = missing_ca_discovery(weir.dir.path());
    std::fs::write(&weir.config_path, format!("{discovery}{}", yaml(&b, ""))).unwrap();
    let rejected = weir.wait_log(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("reload rejected"))
    });
    let msg = rejected["message"].as_str().unwrap();
    assert!(msg.contains("client.ca_file"), "{rejected}");
    let status = reload_status(&weir).await;
    assert_eq!(status["applied"], 0, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("client.ca_file")),
        "{status}"
    );
    assert_eq!(get(weir.proxy, None, "/").await.backend(), "a");
}

/// A reload that changes restart-only fields (here `listeners[0].http2`)
/// applies everything else (the route moves to b) and logs a warning; the
/// listener keeps its settings (HTTP/2 still accepted) until a restart.
#[tokio::test]
async fn a_reload_changing_restart_only_fields_applies_the_rest_with_a_warning() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut weir = WeirProcess::start(&yaml(&a, ""));
    // The file watcher is in place once weir logs "ready".
    weir.wait_log(|v| v["message"] == "ready");
    let changed = yaml(&b, "").replace(
        "listeners: [{address: \"127.0.0.1:0\"}]",
        "listeners: [{address: \"127.0.0.1:0\", http2: false}]",
    );
    assert!(changed.contains("http2: false"));
    std::fs::write(&weir.config_path, changed).unwrap();
    let warning = weir.wait_log(|v| {
        v["level"] == "WARN"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("take effect after a restart"))
    });
    assert!(
        warning["message"].as_str().unwrap().contains("listeners"),
        "{warning}"
    );
    weir.wait_log(|v| v["message"] == "configuration reloaded");
    assert_eq!(reload_status(&weir).await["applied"], 1);
    assert_eq!(get(weir.proxy, None, "/").await.backend(), "b");
    // The listener still speaks h2c (prior knowledge), as before the reload.
    let tcp = tokio::net::TcpStream::connect(weir.proxy).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake after the reload");
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/", weir.proxy))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), h2.send_request(req))
        .await
        .expect("h2 answer within 10 s")
        .expect("h2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-backend"], "b");
}
