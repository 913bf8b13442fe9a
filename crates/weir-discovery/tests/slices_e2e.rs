//! EndpointSlice discovery end to end: several slices per service merged.

mod common;

use common::*;
use weir_testkit::kube_api::{endpoint_slice, EndpointState, FakeApiServer};

fn slices_yaml(api: &FakeApiServer) -> String {
    single_yaml(api, "  watch_endpoint_slices: true")
}

#[tokio::test]
async fn not_ready_endpoints_are_left_out_and_nil_counts_as_ready() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .endpoint("10.0.0.2", EndpointState::NotReady)
            .endpoint("10.0.0.3", EndpointState::NilConditions)
            .port(Some("http"), 8080)
            .port(None, 9090)
            .build(),
    );
    let h = Harness::start(&slices_yaml(&api), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080", "10.0.0.3:8080"])
        .await;
    h.wait_hosts("shop/cart:9090", &["10.0.0.1:9090", "10.0.0.3:9090"])
        .await;
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/apis/discovery.k8s.io/v1/endpointslices"));
}

#[tokio::test]
async fn a_second_slice_adds_nodes_and_its_deletion_removes_them() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .port(Some("http"), 8080)
            .build(),
    );
    let h = Harness::start(&slices_yaml(&api), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080"]).await;
    // A duplicate address across slices counts once.
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-b", "cart")
            .endpoint("10.0.0.2", EndpointState::Ready)
            .endpoint("10.0.0.1", EndpointState::Ready)
            .port(Some("http"), 8080)
            .build(),
    );
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080", "10.0.0.2:8080"])
        .await;
    api.delete_endpoint_slice("shop", "cart-b");
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080"]).await;
    api.delete_endpoint_slice("shop", "cart-a");
    h.wait_unresolved("shop/cart:http").await;
}

#[tokio::test]
async fn terminating_serving_endpoints_are_used_only_when_nothing_is_ready() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .endpoint("10.0.0.2", EndpointState::ServingTerminating)
            .endpoint("10.0.0.3", EndpointState::Terminating)
            .port(Some("http"), 8080)
            .build(),
    );
    let h = Harness::start(&slices_yaml(&api), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080"]).await;
    // The last ready pod starts terminating: serving+terminating pods take over.
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .endpoint("10.0.0.1", EndpointState::ServingTerminating)
            .endpoint("10.0.0.2", EndpointState::ServingTerminating)
            .endpoint("10.0.0.3", EndpointState::Terminating)
            .port(Some("http"), 8080)
            .build(),
    );
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080", "10.0.0.2:8080"])
        .await;
    // A ready pod in another slice wins again.
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-b", "cart")
            .endpoint("10.0.0.9", EndpointState::Ready)
            .port(Some("http"), 8080)
            .build(),
    );
    h.wait_hosts("shop/cart:http", &["10.0.0.9:8080"]).await;
}

#[tokio::test]
async fn a_real_scale_to_zero_gives_zero_nodes() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .port(Some("http"), 8080)
            .build(),
    );
    let h = Harness::start(&slices_yaml(&api), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080"]).await;
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-a", "cart")
            .port(Some("http"), 8080)
            .build(),
    );
    h.wait_nodes("shop/cart:http", |n| n == &Some(vec![])).await;
}
