//! Endpoints discovery end to end: fake API server -> watcher -> registry.

mod common;

use std::time::Duration;

use common::*;
use weir_discovery::{Unresolved, WatchOptions};
use weir_testkit::kube_api::{endpoints, FakeApiOptions, FakeApiServer, ResourceKind};

#[tokio::test]
async fn https_defaults_with_env_vars_and_verified_ca() {
    let api = FakeApiServer::start_with(FakeApiOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 8080)
            .build(),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, api.ca_pem().unwrap()).unwrap();
    let (h, p) = host_port(&api);
    // schema defaults to https; host/port come from the environment.
    let yaml = format!(
        "kubernetes:\n  service: {{host: '${{API_HOST}}', port: '${{API_PORT}}'}}\n  client: {{token: '${{API_TOKEN}}', ca_file: '{}'}}",
        ca.display()
    );
    let port = p.to_string();
    let h = Harness::start(
        &yaml,
        &[
            ("API_HOST", &h),
            ("API_PORT", &port),
            ("API_TOKEN", "test-token"),
        ],
    );
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080"]).await;
    let n = h.registry.nodes("shop/cart:http").unwrap();
    assert_eq!(n[0].weight, 50, "default_weight");
}

#[tokio::test]
async fn unknown_ca_is_refused_by_default() {
    let api = FakeApiServer::start_with(FakeApiOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (host, port) = host_port(&api);
    // No ca_file: the in-cluster CA is absent here, so the system roots are used,
    // and they do not know the fake's CA.
    let yaml = format!(
        "kubernetes:\n  service: {{host: '{host}', port: {port}}}\n  client: {{token: test-token}}"
    );
    let h = Harness::start(&yaml, &[]);
    let failed = wait_until(WAIT, || {
        let s = h.discovery.sync_states()[0].1.clone();
        s.last_error.filter(|_| s.errors > 0)
    })
    .await
    .expect("the TLS handshake fails");
    assert!(!h.discovery.is_ready());
    assert!(
        failed.to_lowercase().contains("certificate") || failed.contains("tls"),
        "{failed}"
    );

    // ssl_verify: false must be written to get through.
    let yaml = format!(
        "kubernetes:\n  service: {{host: '{host}', port: {port}}}\n  client: {{token: test-token, ssl_verify: false}}"
    );
    let h = Harness::start(&yaml, &[]);
    h.ready().await;
}

#[tokio::test]
async fn named_and_unnamed_ports_and_port_rename() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1", "10.0.0.2"])
            .not_ready(["10.0.0.3"])
            .port("http", 8080)
            .port_unnamed(9090)
            .build(),
    );
    let h = Harness::start(&single_yaml(&api, "  default_weight: 7"), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:8080", "10.0.0.2:8080"])
        .await;
    h.wait_hosts("shop/cart:9090", &["10.0.0.1:9090", "10.0.0.2:9090"])
        .await;
    assert!(h
        .registry
        .nodes("shop/cart:http")
        .unwrap()
        .iter()
        .all(|n| n.weight == 7));
    // A named port is not reachable by its number.
    assert_eq!(h.registry.nodes("shop/cart:8080"), None);

    let sub = h.registry.subscribe("shop/cart:http");
    assert_eq!(sub.current().nodes.len(), 2);
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1", "10.0.0.2"])
            .port("web", 8080)
            .build(),
    );
    h.wait_hosts("shop/cart:web", &["10.0.0.1:8080", "10.0.0.2:8080"])
        .await;
    h.wait_unresolved("shop/cart:http").await;
    assert!(
        sub.current().nodes.is_empty(),
        "the live entry follows the rename"
    );
    assert!(matches!(
        h.registry.resolve("shop/cart:http"),
        Err(Unresolved::NoPort { .. })
    ));
}

#[tokio::test]
async fn scale_to_zero_and_empty_subsets_give_zero_nodes() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    // `subsets: []` / no subsets at all.
    api.apply_endpoints(endpoints("shop", "empty").build());
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    assert_eq!(h.registry.nodes("shop/empty:http"), Some(vec![]));
    let sub = h.registry.subscribe("shop/cart:http");
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    // Scale to zero: the object loses its subsets.
    api.apply_endpoints(endpoints("shop", "cart").build());
    h.wait_nodes("shop/cart:http", |n| n == &Some(vec![])).await;
    assert!(sub.current().nodes.is_empty());
    // Deleted: no longer resolves.
    api.delete_endpoints("shop", "cart");
    h.wait_unresolved("shop/cart:http").await;
    assert!(matches!(
        h.registry.resolve("shop/cart:http"),
        Err(Unresolved::NoService(_))
    ));
}

#[tokio::test]
async fn updates_are_per_service() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "a")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    api.apply_endpoints(
        endpoints("shop", "b")
            .ready(["10.0.0.2"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    let a = h.registry.subscribe("shop/a:http");
    let b = h.registry.subscribe("shop/b:http");
    let (a0, b0) = (a.current(), b.current());
    api.apply_endpoints(
        endpoints("shop", "b")
            .ready(["10.0.0.2", "10.0.0.3"])
            .port("http", 80)
            .build(),
    );
    h.wait_hosts("shop/b:http", &["10.0.0.2:80", "10.0.0.3:80"])
        .await;
    assert!(
        std::sync::Arc::ptr_eq(&a0, &a.current()),
        "service a untouched"
    );
    assert!(!std::sync::Arc::ptr_eq(&b0, &b.current()));
}

#[tokio::test]
async fn namespace_selector_equal_watches_one_namespace() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    api.apply_endpoints(
        endpoints("other", "cart")
            .ready(["10.0.0.2"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(
        &single_yaml(&api, "  namespace_selector: {equal: shop}"),
        &[],
    );
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    assert_eq!(h.registry.nodes("other/cart:http"), None);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/shop/endpoints"));
}

#[tokio::test]
async fn namespace_selector_not_equal_uses_a_field_selector() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    api.apply_endpoints(
        endpoints("other", "cart")
            .ready(["10.0.0.2"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(
        &single_yaml(&api, "  namespace_selector: {not_equal: shop}"),
        &[],
    );
    h.ready().await;
    h.wait_hosts("other/cart:http", &["10.0.0.2:80"]).await;
    assert_eq!(h.registry.nodes("shop/cart:http"), None);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.query_param("fieldSelector") == Some("metadata.namespace!=shop")));
}

#[tokio::test]
async fn namespace_selector_match_and_not_match_are_whole_name_regexes() {
    let api = FakeApiServer::start().await.unwrap();
    for ns in ["shop", "shop-canary", "my-app", "kube-system"] {
        api.apply_endpoints(
            endpoints(ns, "svc")
                .ready(["10.0.0.1"])
                .port("http", 80)
                .build(),
        );
    }
    let h = Harness::start(
        &single_yaml(&api, "  namespace_selector: {match: [shop, '^my-[a-z]+$']}"),
        &[],
    );
    h.ready().await;
    assert!(h.registry.nodes("shop/svc:http").is_some());
    assert!(h.registry.nodes("my-app/svc:http").is_some());
    assert_eq!(h.registry.nodes("shop-canary/svc:http"), None);
    assert_eq!(h.registry.nodes("kube-system/svc:http"), None);
    // Later events are filtered too.
    api.apply_endpoints(
        endpoints("my-new", "svc")
            .ready(["10.0.0.9"])
            .port("http", 80)
            .build(),
    );
    api.apply_endpoints(
        endpoints("nope", "svc")
            .ready(["10.0.0.9"])
            .port("http", 80)
            .build(),
    );
    h.wait_hosts("my-new/svc:http", &["10.0.0.9:80"]).await;
    assert_eq!(h.registry.nodes("nope/svc:http"), None);

    let h = Harness::start(
        &single_yaml(&api, "  namespace_selector: {not_match: ['kube-.*', shop]}"),
        &[],
    );
    h.ready().await;
    assert!(h.registry.nodes("shop-canary/svc:http").is_some());
    assert_eq!(h.registry.nodes("shop/svc:http"), None);
    assert_eq!(h.registry.nodes("kube-system/svc:http"), None);
}

#[tokio::test]
async fn label_selector_is_sent_to_the_server() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .label("app", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    api.apply_endpoints(
        endpoints("shop", "db")
            .label("app", "db")
            .ready(["10.0.0.2"])
            .port("http", 80)
            .build(),
    );
    // Quoted as on the APISIX page.
    let h = Harness::start(&single_yaml(&api, "  label_selector: 'app=\"cart\"'"), &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    assert_eq!(h.registry.nodes("shop/db:http"), None);
    let watch = api.wait_for_request(WAIT, |r| r.is_watch()).await.unwrap();
    assert_eq!(watch.query_param("labelSelector"), Some("app=cart"));
    let list = api.wait_for_request(WAIT, |r| !r.is_watch()).await.unwrap();
    assert_eq!(list.query_param("labelSelector"), Some("app=cart"));
}

#[tokio::test]
async fn initial_list_is_paginated() {
    let api = FakeApiServer::start().await.unwrap();
    for i in 0..7 {
        api.apply_endpoints(
            endpoints("shop", &format!("s{i}"))
                .ready([format!("10.0.0.{i}")])
                .port("http", 80)
                .build(),
        );
    }
    let h = Harness::start_with(
        &single_yaml(&api, ""),
        &[],
        WatchOptions {
            page_size: 2,
            ..Default::default()
        },
    );
    h.ready().await;
    for i in 0..7 {
        assert_eq!(
            h.registry
                .nodes(&format!("shop/s{i}:http"))
                .map(|n| n.len()),
            Some(1)
        );
    }
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.query_param("limit") == Some("2")));
    assert!(
        reqs.iter()
            .filter(|r| r.query_param("continue").is_some())
            .count()
            >= 3
    );
}

#[tokio::test]
async fn bookmarks_are_requested_and_advance_the_resume_point() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    bounded(
        "watch",
        api.wait_for_watchers(ResourceKind::Endpoints, 1, WAIT),
    )
    .await
    .unwrap();
    let first = api.requests().into_iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(first.query_param("allowWatchBookmarks"), Some("true"));
    // Writes elsewhere move the resourceVersion; only bookmarks tell the watcher.
    api.bump_resource_version(50);
    let target = api.resource_version();
    // Bookmarks come every second: cut the watch now and then (not at every
    // poll, or no watch would live long enough to get one) until a new watch
    // starts from the bookmarked resourceVersion.
    let mut polls = 0u32;
    let resumed = wait_until(WAIT, || {
        polls += 1;
        if polls >= 60 {
            polls = 0;
            api.cut_watches();
        }
        api.requests().into_iter().find(|r| {
            r.is_watch()
                && r.query_param("resourceVersion")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|rv| rv >= target)
        })
    })
    .await;
    assert!(
        resumed.is_some(),
        "no watch resumed from a bookmark's resourceVersion"
    );
    // And no re-list was needed for it.
    let lists = api
        .requests()
        .iter()
        .filter(|r| !r.is_watch() && r.path.ends_with("/endpoints"))
        .count();
    assert_eq!(lists, 1);
}

#[tokio::test]
async fn dump_has_apisix_shape_sync_state_and_no_token() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    let dump = h.discovery.dump();
    let text = dump.to_string();
    assert!(!text.contains("test-token"), "{text}");
    assert_eq!(dump["config"]["client"]["token"], "<redacted>");
    assert_eq!(dump["config"]["default_weight"], 50);
    assert_eq!(dump["config"]["shared_size"], "64m");
    let eps = &dump["endpoints"][0];
    assert!(
        eps.get("id").is_none(),
        "single-cluster entries have no id, as in APISIX"
    );
    assert_eq!(eps["endpoints"][0]["name"], "shop/cart");
    let value: serde_json::Value =
        serde_json::from_str(eps["endpoints"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"http": [{"host": "10.0.0.1", "port": 80, "weight": 50}]})
    );
    let sync = &dump["sync"][0];
    assert_eq!(sync["connected"], true);
    assert_eq!(sync["ready"], true);
    assert_eq!(sync["initial_list_done"], true);
    assert!(sync["last_event_unix"].as_f64().is_some());
    assert!(sync["last_resource_version"].as_str().is_some());
    assert!(!format!("{:?}", h.discovery.sync_states()).contains("test-token"));
}

#[tokio::test]
async fn unreachable_api_server_is_not_ready_and_recovers() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    api.stop().await;
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    assert!(!h.discovery.wait_ready(Duration::from_millis(500)).await);
    assert_eq!(h.registry.nodes("shop/cart:http"), None);
    api.resume().await.unwrap();
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
}

#[tokio::test]
async fn kubeconfig_works_out_of_cluster() {
    let api = FakeApiServer::start_with(FakeApiOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    std::fs::write(&kc, api.kubeconfig("test-token")).unwrap();
    // `kubernetes: {}` outside a pod: no KUBERNETES_SERVICE_HOST, $KUBECONFIG set.
    let kc = kc.display().to_string();
    let h = Harness::start(
        "kubernetes: {watch_idle_timeout: 5}",
        &[("KUBECONFIG", &kc)],
    );
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    // And written explicitly.
    let h = Harness::start(
        &format!("kubernetes:\n  client: {{kubeconfig: '{kc}'}}"),
        &[],
    );
    h.ready().await;
}
