//! API-server faults through the whole gateway, with traffic flowing: the
//! gateway keeps routing on the last synced nodes with no failed request,
//! shows the trouble in the discovery dump, and converges after recovery to
//! exactly the new node set, with no restart.

mod common;

use std::time::{Duration, Instant};

use common::{get, registry_ports, wait_until_for, Load, Pod};
use k8s_openapi::api::core::v1::Endpoints;
use serde_json::Value;
use weir::Gateway;
use weir_testkit::kube_api::{FakeApiServer, ResourceKind};

const SERVICE: &str = "shop/cart:http";

fn cart(pods: &[&Pod]) -> Endpoints {
    let ports: Vec<u16> = pods.iter().map(|p| p.port()).collect();
    common::cart_endpoints(&ports)
}

/// Gateway on a fake API server with pods a, b published; c is started but
/// not published yet. Traffic is flowing when this returns.
struct Fixture {
    api: FakeApiServer,
    gw: Gateway,
    a: Pod,
    b: Pod,
    c: Pod,
    load: Load,
}

async fn setup(watch_idle_timeout: u32) -> Fixture {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b, c) = (
        Pod::start("a", 1).await,
        Pod::start("b", 1).await,
        Pod::start("c", 1).await,
    );
    api.apply_endpoints(cart(&[&a, &b]));
    let yaml = format!(
        r#"
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {port}}}
    client: {{token: test-token}}
    watch_idle_timeout: {watch_idle_timeout}
routes:
  - id: cart
    uri: "/*"
    upstream: {{discovery_type: kubernetes, service_name: "{SERVICE}"}}
"#,
        port = api.addr().port()
    );
    let gw = common::gateway(&yaml).await;
    assert!(
        gw.wait_ready(Duration::from_secs(15)).await,
        "discovery synced"
    );
    api.wait_for_watchers(ResourceKind::Endpoints, 1, Duration::from_secs(15))
        .await
        .unwrap();
    let load = Load::start(gw.proxy_addr(), 4, "/", 5);
    wait_until_for(15, "a and b serve", || a.hits() > 20 && b.hits() > 20).await;
    Fixture {
        api,
        gw,
        a,
        b,
        c,
        load,
    }
}

/// The `sync` entry of the single cluster, from the control API.
async fn sync_state(gw: &Gateway) -> Value {
    let r = get(
        gw.control_addr().unwrap(),
        None,
        "/v1/discovery/kubernetes/dump",
    )
    .await;
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["sync"][0].clone()
}

/// Waits (at most `secs`) until the dump's sync entry satisfies `pred`; returns it.
async fn wait_sync(gw: &Gateway, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = sync_state(gw).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "dump never showed {what}; last sync state: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn last_error(s: &Value) -> String {
    s["last_error"].as_str().unwrap_or("").to_owned()
}

/// The nodes still routed to are the last synced ones (a and b).
fn assert_last_synced(fx: &Fixture) {
    let mut want = vec![fx.a.port(), fx.b.port()];
    want.sort_unstable();
    assert_eq!(
        registry_ports(&fx.gw, SERVICE),
        want,
        "last synced nodes kept"
    );
}

/// After recovery: exactly {b, c}, c gets traffic, a gets none, and not one
/// request failed during the whole test.
async fn converge(fx: Fixture, secs: u64) {
    let mut want = vec![fx.b.port(), fx.c.port()];
    want.sort_unstable();
    let t = Instant::now();
    wait_until_for(secs, "the gateway converges to {b, c}", || {
        registry_ports(&fx.gw, SERVICE) == want
    })
    .await;
    let converged_in = t.elapsed();
    wait_until_for(15, "c gets traffic", || fx.c.hits() > 20).await;
    // Requests already routed to a finish; after that a stays idle.
    fx.load.wait_more(100).await;
    let a_hits = fx.a.hits();
    fx.load.wait_more(300).await;
    assert_eq!(fx.a.hits(), a_hits, "the removed pod gets no traffic");

    // The dump agrees: the service has exactly b and c.
    let r = get(
        fx.gw.control_addr().unwrap(),
        None,
        "/v1/discovery/kubernetes/dump",
    )
    .await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let value = v["endpoints"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "shop/cart")
        .map(|e| e["value"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(value.contains(&fx.b.port().to_string()) && value.contains(&fx.c.port().to_string()));
    assert!(
        !value.contains(&fx.a.port().to_string()),
        "stale node in the dump: {value}"
    );
    let s = sync_state(&fx.gw).await;
    assert_eq!(s["connected"], true, "{s}");

    let report = fx.load.finish().await;
    eprintln!(
        "  {} requests ({:.0}/s), {} failed {:?}; converged {:.1?} after recovery; sync: {s}",
        report.sent,
        report.rate(),
        report.failed,
        report.failure_summary(),
        converged_in
    );
    assert_eq!(
        report.failed,
        0,
        "no failed request: {:?}",
        report.failures.first()
    );
}

fn watch_requests(api: &FakeApiServer) -> usize {
    api.requests().iter().filter(|r| r.is_watch()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_cut() {
    let fx = setup(5).await;
    let watches = watch_requests(&fx.api);
    fx.api.cut_watches();
    fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
    wait_until_for(15, "a new watch", || watch_requests(&fx.api) > watches).await;
    converge(fx, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stalled_without_bytes() {
    let fx = setup(2).await;
    fx.api.stall_watches(true);
    let watches = watch_requests(&fx.api);
    fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
    // The silent watch is given up after watch_idle_timeout and a new one is opened.
    wait_until_for(15, "the gateway re-watches the silent stream", || {
        watch_requests(&fx.api) > watches
    })
    .await;
    let s = sync_state(&fx.gw).await;
    eprintln!("stalled watch: sync state while stalled: {s}");
    assert_last_synced(&fx);
    fx.load.hold(Duration::from_millis(500)).await;
    fx.api.stall_watches(false);
    converge(fx, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_answers_500_for_3_seconds() {
    let fx = setup(5).await;
    fx.api.fail_requests(500, Duration::from_secs(3));
    fx.api.cut_watches();
    fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
    let s = wait_sync(&fx.gw, 10, "the 500", |s| last_error(s).contains("500")).await;
    eprintln!("500s: sync state during the fault: {s}");
    assert_eq!(s["connected"], false, "{s}");
    assert_last_synced(&fx);
    converge(fx, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_410_gone() {
    let fx = setup(5).await;
    for i in 0..5 {
        let lists = sync_state(&fx.gw).await["lists"].as_u64().unwrap();
        if i == 2 {
            fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
        }
        fx.api.expire_watches(3);
        wait_sync(&fx.gw, 15, "a re-list", |s| {
            s["lists"].as_u64().unwrap() > lists
        })
        .await;
    }
    let s = sync_state(&fx.gw).await;
    eprintln!("410 storm: sync state: {s}");
    assert!(s["lists"].as_u64().unwrap() >= 6, "{s}");
    // A 410 is not an error (the server answered; weir re-lists at once):
    // it is counted apart, and the connection stays up.
    assert!(s["relists_after_gone"].as_u64().unwrap() >= 5, "{s}");
    assert_eq!(s["connected"], true, "{s}");
    converge(fx, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_then_back_with_a_new_history() {
    let fx = setup(5).await;
    fx.api.stop().await;
    // Changes happen while weir cannot see them; the server comes back with
    // its watch cache reset and the resourceVersion moved on.
    fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
    fx.api.bump_resource_version(10);
    fx.api.compact();
    let s = wait_sync(&fx.gw, 10, "the connection error", |s| {
        s["connected"] == false && !last_error(s).is_empty()
    })
    .await;
    eprintln!("API server down: sync state: {s}");
    fx.load.hold(Duration::from_secs(3)).await;
    assert_last_synced(&fx);
    fx.api.resume().await.unwrap();
    converge(fx, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revoked_then_forbidden_then_restored() {
    let fx = setup(5).await;
    fx.api.set_tokens(&[], &[]);
    fx.api.cut_watches();
    fx.api.apply_endpoints(cart(&[&fx.b, &fx.c]));
    let s = wait_sync(&fx.gw, 10, "the 401", |s| last_error(s).contains("401")).await;
    eprintln!("token revoked: sync state: {s}");
    assert_last_synced(&fx);
    fx.api.set_tokens(&[], &["test-token"]);
    let s = wait_sync(&fx.gw, 15, "the 403", |s| last_error(s).contains("403")).await;
    eprintln!("token forbidden: sync state: {s}");
    assert_last_synced(&fx);
    fx.api.set_tokens(&["test-token"], &[]);
    converge(fx, 20).await;
}
