//! Faults end to end: 410 re-list, stalled watches, 500s, token rotation,
//! API server restarts, several clusters, discovery restarts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_discovery::{KubernetesDiscovery, Registry, Unresolved};
use weir_testkit::kube_api::{endpoints, FailScope, FakeApiServer, ResourceKind};

fn list_requests(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| !r.is_watch() && r.path.ends_with("/endpoints"))
        .count()
}

#[tokio::test]
async fn relist_after_410_deletes_what_vanished() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    api.apply_endpoints(
        endpoints("shop", "old")
            .ready(["10.0.0.5"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    h.wait_hosts("shop/old:http", &["10.0.0.5:80"]).await;
    // While the watcher cannot see it: a deletion and a change, then the
    // history is compacted, so resuming the watch gets 410 Expired.
    api.stop().await;
    api.delete_endpoints("shop", "old");
    api.apply_endpoints(cart(&["10.0.0.2"]));
    api.compact();
    // Meanwhile the last synced state is kept.
    assert_eq!(h.registry.nodes("shop/old:http").map(|n| n.len()), Some(1));
    api.resume().await.unwrap();
    h.wait_unresolved("shop/old:http").await;
    h.wait_hosts("shop/cart:http", &["10.0.0.2:80"]).await;
    assert!(list_requests(&api) >= 2, "a full re-list happened");
    assert!(h.discovery.sync_states()[0].1.lists >= 2);
}

#[tokio::test]
async fn a_stalled_watch_is_detected_and_reestablished() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let h = Harness::start(
        &single_yaml(&api, "  watch_idle_timeout: 2").replace("  watch_idle_timeout: 5\n", ""),
        &[],
    );
    h.ready().await;
    bounded(
        "watch",
        api.wait_for_watchers(ResourceKind::Endpoints, 1, WAIT),
    )
    .await
    .unwrap();
    api.stall_watches(true);
    let before = api.requests().iter().filter(|r| r.is_watch()).count();
    // The stalled server never closes the watch itself: a new watch request
    // can only come from the client's idle timeout.
    let detected = wait_until(WAIT, || {
        let s = h.discovery.sync_states()[0].1.clone();
        (s.errors > 0 && api.requests().iter().filter(|r| r.is_watch()).count() > before)
            .then_some(s)
    })
    .await
    .expect("the stalled watch was not noticed");
    // The error stays in the sync state; `connected` turns true again as
    // soon as the new watch is answered, so it is not asserted here.
    assert!(detected.last_error.is_some(), "{detected:?}");
    api.stall_watches(false);
    api.apply_endpoints(cart(&["10.0.0.1", "10.0.0.2"]));
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80", "10.0.0.2:80"])
        .await;
}

#[tokio::test]
async fn server_errors_back_off_and_keep_the_last_state() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    api.fail_requests(500, FailScope::Always);
    api.clear_requests();
    api.compact();
    api.cut_watches();
    let s = wait_until(WAIT, || {
        let s = h.discovery.sync_states()[0].1.clone();
        (s.errors >= 2).then_some(s)
    })
    .await
    .expect("errors are reported");
    assert!(s.last_error.unwrap_or_default().contains("500"));
    // Jittered exponential backoff (0.8 s, 1.6 s, …): few attempts, not a storm.
    // A measurement window (not a readiness signal): count attempts in 3 s.
    api.clear_requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = api.requests().len();
    assert!(attempts <= 6, "{attempts} requests in 3 s");
    // Routing goes on with the last synced nodes.
    assert_eq!(h.registry.nodes("shop/cart:http").map(|n| n.len()), Some(1));
    api.clear_failures();
    api.apply_endpoints(cart(&["10.0.0.3"]));
    h.wait_hosts("shop/cart:http", &["10.0.0.3:80"]).await;
}

#[tokio::test]
async fn rotated_token_file_is_reread_after_401() {
    let (api, h, token_file, _dir) = token_file_harness().await;
    // The old token is revoked: the next requests get 401.
    api.set_tokens(&["new-token"], &[]);
    api.compact();
    api.cut_watches();
    let s = wait_until(WAIT, || {
        let s = h.discovery.sync_states()[0].1.clone();
        s.last_error
            .clone()
            .filter(|e| e.contains("401"))
            .map(|_| s)
    })
    .await
    .expect("401 reported");
    assert!(
        !format!("{s:?}").contains("old-token"),
        "no token in the sync state"
    );
    // The projected token is rotated on disk: picked up on the next attempt.
    std::fs::write(&token_file, "new-token\n").unwrap();
    api.apply_endpoints(cart(&["10.0.0.2"]));
    h.wait_hosts("shop/cart:http", &["10.0.0.2:80"]).await;
    assert!(api.requests().iter().all(|r| r.has_bearer_token));
}

#[tokio::test]
async fn api_server_restart_converges() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    api.restart().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.4"]));
    h.wait_hosts("shop/cart:http", &["10.0.0.4:80"]).await;
    assert!(h.discovery.is_ready());
}

fn multi_yaml(a: &FakeApiServer, b: &FakeApiServer) -> String {
    let (ha, pa) = host_port(a);
    let (hb, pb) = host_port(b);
    format!(
        "kubernetes:
  - id: east
    service: {{schema: http, host: '{ha}', port: {pa}}}
    client: {{token: test-token}}
    watch_idle_timeout: 5
  - id: west
    service: {{schema: http, host: '{hb}', port: {pb}}}
    client: {{token: test-token}}
    watch_idle_timeout: 5
    default_weight: 10
"
    )
}

#[tokio::test]
async fn clusters_are_independent_and_ready_only_together() {
    let east = FakeApiServer::start().await.unwrap();
    let west = FakeApiServer::start().await.unwrap();
    east.apply_endpoints(cart(&["10.1.0.1"]));
    west.apply_endpoints(cart(&["10.2.0.1"]));
    west.stop().await;
    let h = Harness::start(&multi_yaml(&east, &west), &[]);
    // east syncs while west is down; readiness waits for both.
    h.wait_hosts("east/shop/cart:http", &["10.1.0.1:80"]).await;
    assert!(!h.discovery.is_ready());
    assert_eq!(
        h.discovery.cluster_readiness(),
        vec![(Some("east".into()), true), (Some("west".into()), false)]
    );
    assert!(matches!(
        h.registry.resolve("north/shop/cart:http"),
        Err(Unresolved::UnknownCluster(_))
    ));
    west.resume().await.unwrap();
    h.ready().await;
    let west_nodes = h
        .wait_nodes("west/shop/cart:http", |n| n.is_some())
        .await
        .unwrap();
    assert_eq!(west_nodes[0].weight, 10);
    // west goes down again: east keeps flowing, west keeps its last state.
    west.stop().await;
    east.apply_endpoints(cart(&["10.1.0.2"]));
    h.wait_hosts("east/shop/cart:http", &["10.1.0.2:80"]).await;
    assert_eq!(
        h.registry.nodes("west/shop/cart:http").map(|n| n.len()),
        Some(1)
    );
    let dump = h.discovery.dump();
    assert_eq!(dump["config"].as_array().map(|a| a.len()), Some(2));
    assert_eq!(dump["endpoints"][0]["id"], "east");
    assert_eq!(dump["endpoints"][1]["id"], "west");
    assert_eq!(dump["sync"][1]["id"], "west");
}

#[tokio::test]
async fn restarted_discovery_replaces_the_old_state_without_a_gap() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    api.apply_endpoints(
        endpoints("other", "svc")
            .ready(["10.0.0.7"])
            .port("http", 80)
            .build(),
    );
    let registry = Arc::new(Registry::new());
    let (clusters, _) = resolve_yaml(&single_yaml(&api, ""), &[]);
    let first = KubernetesDiscovery::start(clusters, registry.clone(), false).unwrap();
    assert!(first.wait_ready(WAIT).await);
    let sub = registry.subscribe("other/svc:http");
    assert_eq!(sub.current().nodes.len(), 1);
    first.shutdown();
    // New config: only namespace shop. Until its first list, the old nodes stay.
    let (clusters, _) = resolve_yaml(
        &single_yaml(&api, "  namespace_selector: {equal: shop}"),
        &[],
    );
    api.stop().await;
    let second = KubernetesDiscovery::start(clusters, registry.clone(), false).unwrap();
    assert_eq!(registry.nodes("shop/cart:http").map(|n| n.len()), Some(1));
    assert_eq!(sub.current().nodes.len(), 1);
    api.resume().await.unwrap();
    assert!(second.wait_ready(WAIT).await);
    assert!(sub.current().nodes.is_empty(), "vanished from the new view");
    assert_eq!(registry.nodes("other/svc:http"), None);
    assert_eq!(registry.nodes("shop/cart:http").map(|n| n.len()), Some(1));
}
