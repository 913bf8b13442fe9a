//! Warm start with both sources down at once: a weir with
//! `gateway.state_dir`, `config_provider: etcd` and a route (in etcd) whose
//! upstream is discovered from the Kubernetes API server learns both, is
//! stopped; etcd and the API server go down; weir restarts: it is ready,
//! routes to the saved pod endpoints, and the control API and `/metrics`
//! say both sources are stale until they answer again.

mod admin_kit;
mod common;

use std::path::Path;
use std::time::Duration;

use admin_kit::control;
use common::etcd_server::{EtcdServer, Relay};
use common::{get, Backend};
use http::StatusCode;
use serde_json::{json, Value};
use weir_testkit::kube_api::FakeApiServer;

fn yaml(api: &FakeApiServer, etcd: &str, state_dir: &Path) -> String {
    format!(
        r#"
gateway:
  listeners: [{{address: "127.0.0.1:0"}}]
  control: {{address: "127.0.0.1:0"}}
  access_log: {{enabled: false}}
  state_dir: "{dir}"
  shutdown: {{drain_delay: 0, timeout: 1}}
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {port}}}
    client: {{token: test-token}}
    watch_idle_timeout: 5
deployment:
  role_traditional: {{config_provider: etcd}}
  etcd:
    host: ["{etcd}"]
    timeout: 2
    startup_retry: 1
"#,
        dir = state_dir.display(),
        port = api.addr().port()
    )
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}");
}

async fn json_of(gw: &weir::Gateway, path: &str) -> Value {
    let r = control(gw, path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// The ports of the saved node set of `shop/cart`, sorted.
fn saved_ports(dir: &Path) -> Vec<u64> {
    let v: Value = std::fs::read(dir.join("discovery/kubernetes.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let mut ports: Vec<u64> = v["services"]["shop/cart"]["http"]
        .as_array()
        .map(|nodes| nodes.iter().filter_map(|n| n["port"].as_u64()).collect())
        .unwrap_or_default();
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_etcd_and_the_api_server_both_down() {
    let api = FakeApiServer::start().await.expect("fake API server");
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    api.apply_endpoints(common::cart_endpoints(&[a.addr.port(), b.addr.port()]));
    let etcd = EtcdServer::start().await;
    let relay = Relay::start(etcd.addr()).await;
    etcd.put(
        "/apisix/routes/cart",
        &json!({"uri": "/*", "upstream": {"discovery_type": "kubernetes", "service_name": "shop/cart:http"}})
            .to_string(),
    )
    .await;
    let state = tempfile::tempdir().expect("state dir");
    let config = yaml(&api, &relay.url(), state.path());

    // First run: the route from etcd, its nodes from the API server; both
    // are written down.
    let gw = weir::Gateway::start(common::config(&config))
        .await
        .expect("gateway start");
    assert!(gw.wait_ready(Duration::from_secs(10)).await, "both read");
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut want = vec![u64::from(a.addr.port()), u64::from(b.addr.port())];
    want.sort_unstable();
    wait_for("the node set saved", async || {
        saved_ports(state.path()) == want
    })
    .await;
    let saved = state.path().join("config.json");
    wait_for("the configuration from etcd saved", async || {
        std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("shop/cart:http"))
    })
    .await;
    gw.shutdown().await;

    // Both sources go down; weir starts again on the same state_dir.
    relay.cut();
    api.stop().await;
    let gw = weir::Gateway::start(common::config(&config))
        .await
        .expect("starts with both sources down");
    let ready = control(&gw, "/status/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "ready: {}", ready.body);
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..20 {
        let r = get(gw.proxy_addr(), None, "/").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "routed on the saved state: {}",
            r.body
        );
        assert!(r.body == "a" || r.body == "b", "{}", r.body);
    }
    assert_eq!(a.hits() + b.hits() - a0 - b0, 20, "the saved pods served");

    let source = json_of(&gw, "/v1/config_source").await;
    assert!(
        source["stale"]
            .as_str()
            .is_some_and(|s| s.contains("warm start")),
        "{source}"
    );
    assert_eq!(source["synced"], json!(false), "{source}");
    let dump = json_of(&gw, "/v1/discovery/kubernetes/dump").await;
    assert_eq!(dump["sync"][0]["stale"], json!(true), "{dump}");
    let metrics = control(&gw, "/metrics").await.body;
    for line in [
        "weir_config_source_stale{source=\"etcd\"} 1",
        "weir_config_source_up{source=\"etcd\"} 0",
        "weir_discovery_stale{cluster=\"\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    // startup_retry: 1 does not stop a weir that serves a warm state: etcd
    // was tried and failed, and (below) it is read once it is back, which a
    // source that gave up would never do.
    wait_for("etcd tried", async || {
        json_of(&gw, "/v1/config_source").await["last_error"].is_string()
    })
    .await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Both answer again: the stale marks clear.
    relay.restore();
    api.resume().await.expect("API server back");
    wait_for("both sources fresh", async || {
        let s = json_of(&gw, "/v1/config_source").await;
        let d = json_of(&gw, "/v1/discovery/kubernetes/dump").await;
        s["stale"].is_null() && s["synced"] == json!(true) && d["sync"][0]["stale"] == json!(false)
    })
    .await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    gw.shutdown().await;
}
