//! kube-rs itself against the fake: proves the fake speaks what kube's client and
//! `runtime::watcher` expect (lists, pagination, watches, bookmarks, 410, TLS).

mod common;

use std::time::Duration;

use common::{init_tracing, T};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event, ListSemantic};
use kube::{Api, Client, Config};
use tokio::sync::mpsc;
use weir_testkit::kube_api::{
    endpoint_slice, endpoints, EndpointState, FakeApiOptions, FakeApiServer, ResourceKind,
};

async fn client_from(kubeconfig: &str) -> anyhow::Result<Client> {
    let kc = Kubeconfig::from_yaml(kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn kube_client(api: &FakeApiServer) -> Client {
    client_from(&api.kubeconfig("test-token")).await.unwrap()
}

/// A compact description of a watcher event.
fn describe<K: kube::Resource>(e: &Result<Event<K>, watcher::Error>) -> String {
    let name = |k: &K| {
        format!(
            "{}/{}",
            k.meta().namespace.clone().unwrap_or_default(),
            k.meta().name.clone().unwrap_or_default()
        )
    };
    match e {
        Ok(Event::Init) => "Init".into(),
        Ok(Event::InitApply(k)) => format!("InitApply {}", name(k)),
        Ok(Event::InitDone) => "InitDone".into(),
        Ok(Event::Apply(k)) => format!("Apply {}", name(k)),
        Ok(Event::Delete(k)) => format!("Delete {}", name(k)),
        Err(e) => format!("Err {e}"),
    }
}

/// Drives a kube watcher in its own task (a watcher only issues its next request when
/// polled) and forwards described events.
struct Watched(mpsc::UnboundedReceiver<String>);

fn spawn_watcher<K>(
    s: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> Watched
where
    K: kube::Resource + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(s);
        while let Some(e) = s.next().await {
            if tx.send(describe(&e)).is_err() {
                return;
            }
        }
    });
    Watched(rx)
}

impl Watched {
    async fn next(&mut self) -> String {
        tokio::time::timeout(T, self.0.recv())
            .await
            .expect("watcher silent")
            .expect("watcher ended")
    }

    /// The next `n` events.
    async fn next_n(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// The next non-error event (errors are expected around faults).
    async fn next_ok(&mut self) -> String {
        loop {
            let e = self.next().await;
            if !e.starts_with("Err") {
                return e;
            }
        }
    }

    /// Events up to and including the next InitDone.
    async fn until_init_done(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while out.last().map(String::as_str) != Some("InitDone") {
            out.push(self.next().await);
        }
        out
    }
}

#[tokio::test]
async fn kube_watcher_sees_init_and_changes() {
    init_tracing();
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["127.0.0.1"])
            .port("http", 8080)
            .build(),
    );
    api.apply_endpoints(endpoints("shop-canary", "empty").build());
    let client = kube_client(&api).await;
    let mut w = spawn_watcher(watcher::watcher(
        Api::<Endpoints>::all(client),
        watcher::Config::default(),
    ));
    assert_eq!(
        w.next_n(4).await,
        [
            "Init",
            "InitApply shop-canary/empty",
            "InitApply shop/cart",
            "InitDone"
        ]
    );
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.apply_endpoints(
        endpoints("shop", "cart")
            .ready(["127.0.0.1", "127.0.0.2"])
            .port("http", 8080)
            .build(),
    );
    api.apply_endpoints(endpoints("shop", "new").ready(["127.0.0.3"]).build());
    api.delete_endpoints("shop-canary", "empty");
    assert_eq!(
        w.next_n(3).await,
        [
            "Apply shop/cart",
            "Apply shop/new",
            "Delete shop-canary/empty"
        ]
    );
    // What kube-rs sent: a paginated consistent list, then a watch with bookmarks.
    let reqs = api.requests();
    let list = reqs.iter().find(|r| !r.is_watch()).unwrap();
    assert_eq!(list.path, "/api/v1/endpoints");
    assert_eq!(list.query_param("limit"), Some("500"));
    assert_eq!(list.query_param("resourceVersion"), None);
    let watch = reqs.iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(watch.query_param("allowWatchBookmarks"), Some("true"));
    assert!(watch.query_param("resourceVersion").is_some());
    assert!(reqs.iter().all(|r| r.has_bearer_token));
}

#[tokio::test]
async fn kube_watcher_survives_cut_compaction_and_restart() {
    init_tracing();
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    let client = kube_client(&api).await;
    let mut w = spawn_watcher(watcher::watcher(
        Api::<Endpoints>::all(client),
        watcher::Config::default(),
    ));
    assert_eq!(
        w.next_n(3).await,
        ["Init", "InitApply shop/cart", "InitDone"]
    );
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();

    // Cut: kube re-watches from its last resourceVersion; nothing is lost, no relist.
    api.clear_requests();
    api.cut_watches();
    api.apply_endpoints(endpoints("shop", "during-cut").build());
    assert_eq!(w.next_ok().await, "Apply shop/during-cut");
    let rewatch = api.wait_for_request(T, |r| r.is_watch()).await.unwrap();
    assert!(rewatch
        .query_param("resourceVersion")
        .is_some_and(|rv| rv != "0"));
    assert!(
        api.requests().iter().all(|r| r.is_watch()),
        "no relist after a cut"
    );

    // Compaction + cut: the re-watch gets the 410 ERROR event and kube relists.
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.apply_endpoints(endpoints("shop", "before-compact").build());
    assert_eq!(w.next_ok().await, "Apply shop/before-compact");
    api.stall_watches(true);
    api.apply_endpoints(endpoints("shop", "lost-in-stall").build());
    api.compact();
    api.cut_watches();
    api.stall_watches(false);
    let evs = w.until_init_done().await;
    assert!(
        evs.iter()
            .any(|e| e.starts_with("Err") && e.contains("too old resource version")),
        "{evs:?}"
    );
    assert!(
        evs.contains(&"InitApply shop/lost-in-stall".to_string()),
        "{evs:?}"
    );

    // Restart: same port, empty watch cache -> 410 -> relist.
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.apply_endpoints(endpoints("shop", "before-restart").build());
    assert_eq!(w.next_ok().await, "Apply shop/before-restart");
    api.restart().await.unwrap();
    let evs = w.until_init_done().await;
    assert!(
        evs.iter().any(|e| e.contains("too old resource version")),
        "{evs:?}"
    );
    assert!(
        evs.contains(&"InitApply shop/before-restart".to_string()),
        "{evs:?}"
    );
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.delete_endpoints("shop", "cart");
    assert_eq!(w.next_ok().await, "Delete shop/cart");
}

#[tokio::test]
async fn kube_paginated_list_and_streaming_list() {
    init_tracing();
    let api = FakeApiServer::start_with(FakeApiOptions {
        watch_list: true,
        ..FakeApiOptions::default()
    })
    .await
    .unwrap();
    for i in 0..5 {
        api.apply_endpoints(
            endpoints("shop", &format!("svc{i}"))
                .ready(["10.0.0.1"])
                .build(),
        );
    }
    let client = kube_client(&api).await;
    let eps: Api<Endpoints> = Api::all(client.clone());
    // Pagination through kube (MostRecent semantic honours limit).
    let cfg = watcher::Config::default()
        .list_semantic(ListSemantic::MostRecent)
        .page_size(2);
    let mut w = spawn_watcher(watcher::watcher(eps.clone(), cfg));
    let evs = w.next_n(7).await;
    assert_eq!(evs.first().unwrap(), "Init");
    assert_eq!(evs.last().unwrap(), "InitDone");
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.query_param("limit") == Some("2"))
        .count();
    assert_eq!(pages, 3);
    // Streaming list (sendInitialEvents) with the WatchList feature on.
    let mut w = spawn_watcher(watcher::watcher(
        eps.clone(),
        watcher::Config::default().streaming_lists(),
    ));
    let evs = w.next_n(7).await;
    assert_eq!(
        (evs[0].as_str(), evs[6].as_str()),
        ("Init", "InitDone"),
        "{evs:?}"
    );
    // Plain list call.
    let list = eps
        .list(&ListParams::default().labels("!nothing"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 5);
    // 403 for get, surfaced as an API error.
    let err = Api::<Endpoints>::namespaced(client, "shop")
        .get("svc0")
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 403),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_over_https_verifies_the_fake_ca() {
    init_tracing();
    let api = FakeApiServer::start_with(FakeApiOptions {
        tls: true,
        ..FakeApiOptions::default()
    })
    .await
    .unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-1", "cart")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .endpoint("10.0.0.2", EndpointState::ServingTerminating)
            .port(Some("http"), 8080)
            .build(),
    );
    api.apply_endpoint_slice(
        endpoint_slice("shop", "web-1", "web")
            .endpoint("10.0.1.1", EndpointState::Ready)
            .build(),
    );
    let client = kube_client(&api).await;
    let slices: Api<EndpointSlice> = Api::all(client);
    let cfg = watcher::Config::default().labels("kubernetes.io/service-name=cart");
    let mut w = spawn_watcher(watcher::watcher(slices, cfg));
    assert_eq!(
        w.next_n(3).await,
        ["Init", "InitApply shop/cart-1", "InitDone"]
    );
    api.wait_for_watchers(ResourceKind::EndpointSlices, 1, T)
        .await
        .unwrap();
    api.apply_endpoint_slice(
        endpoint_slice("shop", "cart-2", "cart")
            .endpoint("10.0.0.3", EndpointState::NilConditions)
            .build(),
    );
    api.apply_endpoint_slice(endpoint_slice("shop", "web-2", "web").build());
    assert_eq!(w.next().await, "Apply shop/cart-2");
    let served = api
        .object(ResourceKind::EndpointSlices, "shop", "cart-2")
        .unwrap();
    assert_eq!(served["endpoints"][0]["conditions"], serde_json::json!({}));

    // A client trusting another CA must refuse the fake's certificate.
    let other = FakeApiServer::start_with(FakeApiOptions {
        tls: true,
        ..FakeApiOptions::default()
    })
    .await
    .unwrap();
    let wrong = other
        .kubeconfig("test-token")
        .replace(&other.url(), &api.url());
    let client = client_from(&wrong).await.unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        Api::<EndpointSlice>::all(client).list(&ListParams::default()),
    )
    .await
    .unwrap();
    assert!(res.is_err(), "TLS verification must fail with the wrong CA");
}
