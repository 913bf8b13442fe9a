//! APISIX's `deployment.etcd` settings beyond host / prefix / timeout, each
//! honoured against a real etcd: `watch_timeout` (the watch request is
//! opened again, nothing missed), `health_check_timeout` (a silent etcd is
//! declared unreachable that fast), `resync_delay` (the longest wait between
//! two tries), `startup_retry` (the real binary gives up and exits without a
//! warm start), `tls.sni` and `tls.verify: false`; bad values are refused
//! with their field path.

mod admin_kit;
mod common;

use std::time::{Duration, Instant};

use admin_kit::{control, wait_proxy, wait_source};
use common::etcd_server::{EtcdServer, Relay};
use common::{Backend, WeirProcess};
use http::StatusCode;
use serde_json::{json, Value};

/// The etcd test file with `extra` lines added to `deployment.etcd`.
fn etcd_file_with(hosts: &[String], extra: &str) -> String {
    let file = admin_kit::etcd_file(hosts).replacen(
        "    timeout: 2\n",
        &format!("    timeout: 2\n{extra}"),
        1,
    );
    assert!(file.contains(extra), "{file}");
    file
}

async fn start(yaml: &str) -> weir::Gateway {
    let gw = weir::Gateway::start(common::config(yaml))
        .await
        .expect("gateway start");
    assert!(
        gw.wait_ready(Duration::from_secs(10)).await,
        "etcd read within 10 s"
    );
    gw
}

#[tokio::test]
async fn apisix_etcd_settings_are_accepted_and_checked() {
    let load = |yaml: &str| weir_config::load_str(yaml, "weir.yaml");
    // APISIX's config.yaml.example block, as users copy it.
    let apisix = "deployment:\n  role: traditional\n  role_traditional: {config_provider: etcd}\n  etcd:\n    host: [\"https://127.0.0.1:2379\"]\n    prefix: /apisix\n    timeout: 30\n    watch_timeout: 50\n    resync_delay: 5\n    health_check_timeout: 10\n    startup_retry: 2\n    tls:\n      verify: true\n      sni: etcd.example\n";
    let c = load(apisix).expect("APISIX's etcd settings are accepted");
    let e = &c.deployment.etcd;
    assert_eq!(
        (
            e.watch_timeout,
            e.resync_delay,
            e.health_check_timeout,
            e.startup_retry
        ),
        (50.0, 5.0, 10.0, Some(2))
    );
    assert_eq!(
        e.tls.as_ref().and_then(|t| t.sni.as_deref()),
        Some("etcd.example")
    );
    let d = load("deployment:\n  role_traditional: {config_provider: etcd}\n").expect("defaults");
    let e = &d.deployment.etcd;
    assert_eq!(
        (
            e.watch_timeout,
            e.resync_delay,
            e.health_check_timeout,
            e.startup_retry
        ),
        (50.0, 5.0, 10.0, None),
        "APISIX's defaults; startup_retry unset keeps trying"
    );

    let bad = "deployment:\n  role_traditional: {config_provider: etcd}\n  etcd:\n    watch_timeout: 0\n    resync_delay: -1\n    health_check_timeout: 7200\n    startup_retry: 0\n    tls: {sni: \"\"}\n";
    let msg = load(bad).expect_err("out of range").to_string();
    for field in [
        "deployment.etcd.watch_timeout",
        "deployment.etcd.resync_delay",
        "deployment.etcd.health_check_timeout",
        "deployment.etcd.startup_retry",
        "deployment.etcd.tls.sni",
    ] {
        assert!(msg.contains(field), "{field}: {msg}");
    }
    let typed =
        "deployment:\n  role_traditional: {config_provider: etcd}\n  etcd: {startup_retry: two}\n";
    let msg = load(typed).expect_err("not a number").to_string();
    assert!(msg.contains("startup_retry"), "{msg}");
    let typed =
        "deployment:\n  role_traditional: {config_provider: etcd}\n  etcd: {watch_timeout: soon}\n";
    let msg = load(typed).expect_err("not a number").to_string();
    assert!(msg.contains("watch_timeout"), "{msg}");
}

/// `watch_timeout`: the watch request ends after that long and is opened
/// again from the next revision; that is not an error, and a change made
/// across the renewals is applied.
#[tokio::test]
async fn watch_timeout_renews_the_watch_and_misses_nothing() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("renewed").await;
    let gw = start(&etcd_file_with(&[etcd.url()], "    watch_timeout: 0.3\n")).await;
    let v = wait_source(&gw, "the watch opened again three times", |v| {
        v["watches"].as_u64().is_some_and(|n| n >= 4)
    })
    .await;
    assert_eq!(v["last_error"], Value::Null, "a renewal is no error: {v}");
    assert_eq!(v["connected"], json!(true), "{v}");
    for i in 0..3 {
        etcd.put(
            &format!("/apisix/routes/w{i}"),
            &json!({"uri": format!("/w{i}"), "upstream": {"nodes": {backend.node(): 1}}})
                .to_string(),
        )
        .await;
        wait_proxy(gw.proxy_addr(), &format!("/w{i}"), "served", |s, _| {
            s == StatusCode::OK
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v: Value =
        serde_json::from_str(&control(&gw, "/v1/config_source").await.body).expect("json");
    assert_eq!(v["last_error"], Value::Null, "{v}");
    gw.shutdown().await;
}

/// `health_check_timeout`: an etcd that stops answering (SIGSTOP: its
/// connections stay open, the watch just goes quiet) is declared
/// unreachable by the probe within that timeout, not the 30 s request
/// timeout; the data plane keeps serving; it recovers when etcd does.
#[tokio::test]
async fn health_check_timeout_declares_a_silent_etcd_unreachable() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("kept").await;
    etcd.put(
        "/apisix/routes/k",
        &json!({"uri": "/kept", "upstream": {"nodes": {backend.node(): 1}}}).to_string(),
    )
    .await;
    let file = etcd_file_with(&[etcd.url()], "    health_check_timeout: 0.5\n").replacen(
        "    timeout: 2\n",
        "    timeout: 30\n",
        1,
    );
    let gw = start(&file).await;
    wait_source(&gw, "connected", |v| v["connected"] == json!(true)).await;
    etcd.pause(true);
    let paused = Instant::now();
    // The probe runs every 3 s and waits 0.5 s: unreachable within ~3.5 s
    // (wait_source gives up after 10 s, well before the 30 s timeout).
    let v = wait_source(&gw, "declared unreachable", |v| {
        v["connected"] == json!(false)
    })
    .await;
    let took = paused.elapsed();
    assert!(
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("health_check_timeout")),
        "{v}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let r = common::get(gw.proxy_addr(), None, "/kept").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    etcd.pause(false);
    wait_source(&gw, "connected again", |v| {
        v["connected"] == json!(true) && v["recovered_at"].is_u64()
    })
    .await;
    gw.shutdown().await;
}

/// `resync_delay`: the longest wait between two tries. With 0.2 s, a 3 s
/// outage sees a try at least every 0.2 s (the default 5 s backoff makes
/// at most 6 tries in 3 s: 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s, then 1.6 s), and
/// the connection is back within a moment of etcd.
#[tokio::test]
async fn resync_delay_bounds_the_wait_between_tries() {
    let etcd = EtcdServer::start().await;
    let relay = Relay::start(etcd.addr()).await;
    let gw = start(&etcd_file_with(&[relay.url()], "    resync_delay: 0.2\n")).await;
    wait_source(&gw, "connected", |v| v["connected"] == json!(true)).await;
    let before = relay.accepted();
    relay.cut();
    // The outage itself lasts 3 s (this is its length, not a wait for a
    // state).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tries = relay.accepted() - before;
    relay.restore();
    let restored = Instant::now();
    assert!(
        tries >= 14,
        "{tries} connection attempts in 3 s: expected one every 0.2 s at most"
    );
    wait_source(&gw, "connected again", |v| v["connected"] == json!(true)).await;
    assert!(
        restored.elapsed() < Duration::from_secs(1),
        "reconnected {:?} after etcd came back",
        restored.elapsed()
    );
    gw.shutdown().await;
}

/// `startup_retry`: the real binary, etcd unreachable and no warm state:
/// it tries each host that many times, then exits with an error naming the
/// setting.
#[tokio::test]
async fn startup_retry_gives_up_without_a_warm_state() {
    let (a, b) = (common::closed_port().await, common::closed_port().await);
    let hosts = [format!("http://{a}"), format!("http://{b}")];
    let yaml = etcd_file_with(&hosts, "    startup_retry: 2\n    resync_delay: 0.05\n");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let started = Instant::now();
    let mut weir = WeirProcess::spawn(dir, path);
    let line = weir.wait_log(|v| {
        v["level"] == "ERROR"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("startup_retry"))
    });
    let msg = line["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("after 4 tries") && msg.contains("2 per host, 2 host(s)"),
        "{msg}"
    );
    assert!(msg.contains("no warm-start configuration"), "{msg}");
    assert_eq!(weir.wait_exit(), Some(1), "exits with an error");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after {:?}",
        started.elapsed()
    );
}

/// `tls.sni`: etcd's certificate names `etcd.test`, weir connects to
/// 127.0.0.1: with `sni: etcd.test` the name checks out; without it the
/// certificate is refused; `verify: false` accepts it unchecked.
#[tokio::test]
async fn tls_sni_and_verify_false() {
    let dir = tempfile::tempdir().expect("dir");
    let file = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).expect("write PEM");
        p.display().to_string()
    };
    let (server_cert, server_key) = admin_kit::cert("etcd.test");
    let (client_cert, client_key) = admin_kit::cert("weir-client");
    let (sc, sk) = (file("s.crt", &server_cert), file("s.key", &server_key));
    let (cc, ck) = (file("c.crt", &client_cert), file("c.key", &client_key));
    let trusted = file("trusted.crt", &format!("{client_cert}{server_cert}"));
    let etcd = EtcdServer::start_tls(&sc, &sk, &trusted).await;
    let with_tls = |tls: String| etcd_file_with(&[etcd.https_url()], &format!("    tls: {tls}\n"));

    let gw = start(&with_tls(format!(
        "{{ca_file: {sc:?}, cert: {cc:?}, key: {ck:?}, sni: etcd.test}}"
    )))
    .await;
    gw.shutdown().await;

    let no_sni = weir::Gateway::start(common::config(&with_tls(format!(
        "{{ca_file: {sc:?}, cert: {cc:?}, key: {ck:?}}}"
    ))))
    .await
    .expect("gateway start");
    let v = wait_source(&no_sni, "the name mismatch shown", |v| {
        v["last_error"].is_string()
    })
    .await;
    assert_eq!(v["synced"], json!(false), "{v}");
    no_sni.shutdown().await;

    let gw = start(&with_tls(format!(
        "{{verify: false, cert: {cc:?}, key: {ck:?}}}"
    )))
    .await;
    gw.shutdown().await;
}
