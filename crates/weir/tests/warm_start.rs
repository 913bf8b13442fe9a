//! Warm start (`gateway.state_dir`): a weir restarted while the Kubernetes
//! API server is down routes to the last-known pods, says it serves stale
//! state (dump, `/metrics`) and is ready; once the API server answers, the
//! live state replaces the saved one and `stale` clears.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{get, Backend};
use k8s_openapi::api::core::v1::Endpoints;
use serde_json::Value;
use weir::Gateway;
use weir_testkit::kube_api::{FakeApiServer, ResourceKind};

fn cart(pods: &[&Backend]) -> Endpoints {
    let ports: Vec<u16> = pods.iter().map(|p| p.addr.port()).collect();
    common::cart_endpoints(&ports)
}

fn yaml(api: &FakeApiServer, state_dir: &Path) -> String {
    format!(
        r#"
gateway:
  state_dir: "{dir}"
  shutdown: {{drain_delay: 0, timeout: 1}}
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {port}}}
    client: {{token: test-token}}
    watch_idle_timeout: 5
routes:
  - id: cart
    uri: "/*"
    upstream: {{discovery_type: kubernetes, service_name: "shop/cart:http"}}
"#,
        dir = state_dir.display(),
        port = api.addr().port()
    )
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}");
}

async fn control(gw: &Gateway, path: &str) -> (u16, String) {
    let r = get(gw.control_addr().unwrap(), None, path).await;
    (r.status.as_u16(), r.body)
}

async fn sync_entry(gw: &Gateway) -> Value {
    let (status, body) = control(gw, "/v1/discovery/kubernetes/dump").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["sync"][0].clone()
}

/// The saved node set names these ports (read from the file, as written).
fn saved_ports(dir: &Path) -> Vec<u16> {
    let Ok(bytes) = std::fs::read(dir.join("discovery/kubernetes.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    let mut ports: Vec<u16> = v["services"]["shop/cart"]["http"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["port"].as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default();
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_api_server_down_routes_to_the_last_known_pods() {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    api.apply_endpoints(cart(&[&a, &b]));
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("weir-state");
    let config = yaml(&api, &dir);

    // First run: learns a and b, and writes them down (debounced).
    let gw = common::gateway(&config).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    let mut want = vec![a.addr.port(), b.addr.port()];
    want.sort_unstable();
    wait_for("the node set saved", async || saved_ports(&dir) == want).await;
    let saved = weir_config::warm::load_config(&dir)
        .unwrap()
        .expect("the installed configuration is saved");
    assert_eq!(saved.config.routes.len(), 1);
    assert!(saved.config.discovery.is_some());
    gw.shutdown().await;

    // The API server goes down; weir starts again with the same state_dir.
    api.stop().await;
    let gw = common::gateway(&config).await;
    let (status, body) = control(&gw, "/status/ready").await;
    assert_eq!(status, 200, "ready on the warm state: {body}");
    let s = sync_entry(&gw).await;
    assert_eq!(s["stale"], true, "{s}");
    assert!(s["warm_state_saved_unix"].is_f64(), "{s}");
    let (_, metrics) = control(&gw, "/metrics").await;
    assert!(
        metrics.contains("weir_discovery_stale{cluster=\"\"} 1"),
        "{metrics}"
    );
    let proxy = gw.proxy_addr();
    for _ in 0..20 {
        let r = get(proxy, None, "/").await;
        assert_eq!(r.status, 200, "routed on the saved nodes: {}", r.body);
    }
    assert!(a.hits() + b.hits() >= 20);
    let a_hits = a.hits();

    // Meanwhile the pods changed: a is gone, c is new. When the API server
    // answers, the live list replaces the saved set and stale clears.
    api.apply_endpoints(cart(&[&b, &c]));
    api.resume().await.unwrap();
    wait_for("stale to clear", async || {
        sync_entry(&gw).await["stale"] == false
    })
    .await;
    let (_, metrics) = control(&gw, "/metrics").await;
    assert!(
        metrics.contains("weir_discovery_stale{cluster=\"\"} 0"),
        "{metrics}"
    );
    api.wait_for_watchers(ResourceKind::Endpoints, 1, Duration::from_secs(15))
        .await
        .unwrap();
    for _ in 0..20 {
        let r = get(proxy, None, "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(a.hits(), a_hits, "the pod that left gets no traffic");
    assert!(c.hits() > 0, "the new pod gets traffic");
    let mut want = vec![b.addr.port(), c.addr.port()];
    want.sort_unstable();
    wait_for("the live node set saved", async || {
        saved_ports(&dir) == want
    })
    .await;
    gw.shutdown().await;
}

/// Without a saved state, a weir whose API server is down is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_saved_state_no_readiness_while_the_api_server_is_down() {
    let api = FakeApiServer::start().await.unwrap();
    api.stop().await;
    let state = tempfile::tempdir().unwrap();
    let gw = common::gateway(&yaml(&api, state.path())).await;
    let (status, body) = control(&gw, "/status/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("warm-start"), "{body}");
    let s = sync_entry(&gw).await;
    assert_eq!(s["stale"], false, "{s}");
    gw.shutdown().await;
}
