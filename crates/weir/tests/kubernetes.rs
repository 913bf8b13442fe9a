//! Kubernetes discovery through the whole gateway: fake API server -> weir ->
//! real backend pods. Traffic follows endpoint changes with no failed request.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, empty, get, send_with, Backend};
use http::StatusCode;
use k8s_openapi::api::core::v1::Endpoints;
use weir_testkit::kube_api::{endpoint_slice, EndpointState, FakeApiServer};

/// Endpoints `shop/cart` with one subset per pod (each pod listens on its own
/// port on 127.0.0.1; the fake API server, unlike a real one, accepts loopback).
fn cart(pods: &[&Backend]) -> Endpoints {
    let ports: Vec<u16> = pods.iter().map(|p| p.addr.port()).collect();
    common::cart_endpoints(&ports)
}

fn gateway_yaml(api: &FakeApiServer, extra: &str, service_name: &str) -> String {
    format!(
        r#"
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {port}}}
    client: {{token: test-token}}
    watch_idle_timeout: 5
{extra}
routes:
  - id: cart
    uri: "/*"
    upstream: {{discovery_type: kubernetes, service_name: "{service_name}"}}
"#,
        port = api.addr().port()
    )
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(15), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_endpoints_added_and_removed_under_load() {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    api.apply_endpoints(cart(&[&a, &b]));
    let gw = common::gateway(&gateway_yaml(&api, "", "shop/cart:http")).await;
    assert!(
        gw.wait_ready(Duration::from_secs(15)).await,
        "discovery synced"
    );
    let addr = gw.proxy_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                let r = send_with(&c, addr, "GET", None, "/", empty()).await;
                if r.status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    eprintln!("failed: {} {}", r.status, r.body);
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    wait_until("both pods serve", || a.hits() > 10 && b.hits() > 10).await;
    assert_eq!(c.hits(), 0);

    // Scale up: c joins and starts receiving traffic.
    api.apply_endpoints(cart(&[&a, &b, &c]));
    wait_until("the new pod gets traffic", || c.hits() > 10).await;

    // a is removed from the endpoints: it gets no new requests.
    api.apply_endpoints(cart(&[&b, &c]));
    let registry = gw.core.registry.clone();
    wait_until("the registry drops a", || {
        registry
            .nodes("shop/cart:http")
            .is_some_and(|n| n.len() == 2)
    })
    .await;
    // The first request after the change rebuilds the node set; give the
    // in-flight requests on a the time to finish, then a must stay idle.
    let settle = ok.load(Ordering::SeqCst) + 50;
    wait_until("requests after the change", || {
        ok.load(Ordering::SeqCst) > settle
    })
    .await;
    let a_hits = a.hits();
    let later = ok.load(Ordering::SeqCst) + 200;
    wait_until("200 more requests", || ok.load(Ordering::SeqCst) > later).await;
    assert_eq!(a.hits(), a_hits, "removed endpoint gets no new requests");

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no failed request");
}

#[tokio::test]
async fn unresolvable_service_gives_503_and_dump_shows_nodes() {
    let api = FakeApiServer::start().await.unwrap();
    let a = Backend::start("a").await;
    api.apply_endpoints(cart(&[&a]));
    let gw = common::gateway(&gateway_yaml(&api, "", "shop/missing:http")).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    let control = gw.control_addr().unwrap();
    let dump = get(control, None, "/v1/discovery/kubernetes/dump").await;
    assert_eq!(dump.status, StatusCode::OK);
    assert!(
        !dump.body.contains("test-token"),
        "token redacted: {}",
        dump.body
    );
    let v: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    let text = v.to_string();
    assert!(text.contains("shop/cart"), "{text}");
    assert!(text.contains(&a.addr.port().to_string()), "{text}");
    let ups: serde_json::Value =
        serde_json::from_str(&get(control, None, "/v1/upstreams").await.body).unwrap();
    assert_eq!(ups[0]["service_name"], "shop/missing:http");
    assert_eq!(ups[0]["nodes"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn readiness_waits_for_the_initial_list() {
    let api = FakeApiServer::start().await.unwrap();
    let a = Backend::start("a").await;
    api.apply_endpoints(cart(&[&a]));
    api.stop().await;
    let gw = common::gateway(&gateway_yaml(&api, "", "shop/cart:http")).await;
    let control = gw.control_addr().unwrap();
    assert_eq!(
        get(control, None, "/status/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    api.resume().await.unwrap();
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    assert_eq!(
        get(control, None, "/status/ready").await.status,
        StatusCode::OK
    );
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "a");
}

#[tokio::test]
async fn api_server_down_keeps_routing_on_the_last_synced_nodes() {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    api.apply_endpoints(cart(&[&a, &b]));
    let gw = common::gateway(&gateway_yaml(&api, "", "shop/cart:http")).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    api.stop().await;
    let counts = common::distribution(gw.proxy_addr(), None, "/", 40).await;
    assert_eq!(counts.get("a"), Some(&20));
    assert_eq!(counts.get("b"), Some(&20));
}

#[tokio::test]
async fn endpoint_slices_are_merged_and_terminating_pods_drain() {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let slice = |name: &str, pod: &Backend, state: EndpointState| {
        endpoint_slice("shop", name, "cart")
            .endpoint("127.0.0.1", state)
            .port(Some("http"), i32::from(pod.addr.port()))
            .build()
    };
    api.apply_endpoint_slice(slice("cart-a", &a, EndpointState::Ready));
    api.apply_endpoint_slice(slice("cart-b", &b, EndpointState::Ready));
    let yaml = gateway_yaml(&api, "", "shop/cart:http").replace(
        "watch_idle_timeout: 5",
        "watch_idle_timeout: 5\n    watch_endpoint_slices: true",
    );
    let gw = common::gateway(&yaml).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    let counts = common::distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&5), Some(&5)));

    // b goes terminating while a is ready: only a serves.
    api.apply_endpoint_slice(slice("cart-b", &b, EndpointState::ServingTerminating));
    let registry = gw.core.registry.clone();
    wait_until("b leaves", || {
        registry
            .nodes("shop/cart:http")
            .is_some_and(|n| n.len() == 1)
    })
    .await;
    let counts = common::distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!(counts.get("a"), Some(&10));

    // a disappears: the terminating-but-serving b takes the traffic (as kube-proxy does).
    api.delete_endpoint_slice("shop", "cart-a");
    wait_until("a gone, b back", || {
        registry
            .nodes("shop/cart:http")
            .is_some_and(|n| n.len() == 1 && n[0].port == b.addr.port())
    })
    .await;
    let counts = common::distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!(counts.get("b"), Some(&10));
}
