//! Behaviour of the fake API server over real sockets: list+watch consistency,
//! selectors, pagination, expiry, auth, bookmarks and timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use weir_testkit::kube_api::{
    endpoint_slice, endpoints, EndpointState, FakeApiOptions, FakeApiServer, ResourceKind,
};

async fn start(opts: FakeApiOptions) -> FakeApiServer {
    init_tracing();
    FakeApiServer::start_with(opts).await.unwrap()
}

fn rv_of(e: &Value) -> u64 {
    e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn list_then_watch_sees_every_change_after_the_list() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    for i in 0..3 {
        api.apply_endpoints(
            endpoints("shop", &format!("svc{i}"))
                .ready(["10.0.0.1"])
                .port("http", 80)
                .build(),
        );
    }
    api.apply_endpoint_slice(
        endpoint_slice("shop", "s-1", "svc0")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .build(),
    );
    let list = c.get("/api/v1/endpoints").await.unwrap().json();
    assert_eq!(item_ids(&list), ["shop/svc0", "shop/svc1", "shop/svc2"]);
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Changes made before the watch is opened are replayed from history…
    api.apply_endpoints(
        endpoints("shop", "svc0")
            .ready(["10.0.0.1", "10.0.0.2"])
            .port("http", 80)
            .build(),
    );
    api.delete_endpoints("shop", "svc1");
    // … a no-op apply changes nothing …
    let same = api.apply_endpoints(
        endpoints("shop", "svc2")
            .ready(["10.0.0.1"])
            .port("http", 80)
            .build(),
    );
    assert_eq!(same, api.resource_version());
    let mut w = c
        .watch(&format!(
            "/api/v1/endpoints?watch=1&resourceVersion={list_rv}"
        ))
        .await
        .unwrap();
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    // … and later ones are streamed; other kinds are not mixed in.
    api.apply_endpoint_slice(
        endpoint_slice("shop", "s-2", "svc0")
            .endpoint("10.0.0.3", EndpointState::Ready)
            .build(),
    );
    api.apply_endpoints(endpoints("shop", "svc3").ready(["10.0.0.9"]).build());
    api.delete_endpoints("shop", "svc0");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(w.event().await);
    }
    let summary: Vec<String> = got
        .iter()
        .map(|e| event_summary(e).rsplit_once('@').unwrap().0.to_string())
        .collect();
    assert_eq!(
        summary,
        [
            "MODIFIED shop/svc0",
            "DELETED shop/svc1",
            "ADDED shop/svc3",
            "DELETED shop/svc0"
        ]
    );
    let rvs: Vec<u64> = got.iter().map(rv_of).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > list_rv,
        "{rvs:?}"
    );
    assert_eq!(*rvs.last().unwrap(), api.resource_version());
    // DELETED carries the last state with the deletion resourceVersion.
    assert_eq!(
        got[3]["object"]["subsets"][0]["addresses"][1]["ip"],
        "10.0.0.2"
    );
    assert!(matches!(
        w.next(Duration::from_millis(200)).await,
        Next::Timeout
    ));
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added() {
    let api = start(FakeApiOptions::default()).await;
    api.apply_endpoints(endpoints("b", "x").ready(["10.0.0.1"]).build());
    api.apply_endpoints(endpoints("a", "y").build());
    for q in ["watch=1", "watch=true&resourceVersion=0"] {
        let mut w = Client::new(&api)
            .watch(&format!("/api/v1/endpoints?{q}"))
            .await
            .unwrap();
        let a = w.event().await;
        let b = w.event().await;
        assert_eq!(
            (a["type"].as_str(), b["type"].as_str()),
            (Some("ADDED"), Some("ADDED"))
        );
        assert_eq!(a["object"]["metadata"]["name"], "y");
        assert!(
            a["object"].get("subsets").is_none(),
            "no subsets key when empty"
        );
        api.apply_endpoints(endpoints("a", "z").build());
        let e = w.event().await;
        assert_eq!(
            event_summary(&e),
            format!("ADDED a/z@{}", api.resource_version())
        );
        api.delete_endpoints("a", "z");
        assert_eq!(w.event().await["type"], "DELETED");
    }
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    let mk = |ns: &str, name: &str, app: &str, tier: Option<&str>| {
        let mut b = endpoints(ns, name).label("app", app).ready(["10.0.0.1"]);
        if let Some(t) = tier {
            b = b.label("tier", t);
        }
        b.build()
    };
    api.apply_endpoints(mk("shop", "cart", "cart", Some("backend")));
    api.apply_endpoints(mk("shop", "web", "web", Some("frontend")));
    api.apply_endpoints(mk("shop-canary", "cart", "cart", None));
    api.apply_endpoints(mk("other", "db", "db", None));
    let ids = |q: &str| {
        let c = c.clone();
        let q = q.to_string();
        async move {
            item_ids(
                &c.get(&format!("/api/v1/endpoints?{q}"))
                    .await
                    .unwrap()
                    .json(),
            )
        }
    };
    assert_eq!(
        ids("labelSelector=app%3Dcart").await,
        ["shop-canary/cart", "shop/cart"]
    );
    assert_eq!(ids("labelSelector=app%3D%3Dcart,tier").await, ["shop/cart"]);
    assert_eq!(
        ids("labelSelector=app!%3Dcart").await,
        ["other/db", "shop/web"]
    );
    assert_eq!(
        ids("labelSelector=app%20in%20(web,db)").await,
        ["other/db", "shop/web"]
    );
    assert_eq!(
        ids("labelSelector=app%20notin%20(web,db)").await,
        ["shop-canary/cart", "shop/cart"]
    );
    assert_eq!(
        ids("labelSelector=!tier").await,
        ["other/db", "shop-canary/cart"]
    );
    assert_eq!(
        ids("fieldSelector=metadata.namespace!%3Dshop").await,
        ["other/db", "shop-canary/cart"]
    );
    assert_eq!(
        ids("fieldSelector=metadata.name%3Dcart,metadata.namespace%3Dshop").await,
        ["shop/cart"]
    );
    let ns = c
        .get("/api/v1/namespaces/shop/endpoints?labelSelector=tier")
        .await
        .unwrap()
        .json();
    assert_eq!(item_ids(&ns), ["shop/cart", "shop/web"]);
    let bad = c
        .get("/api/v1/endpoints?fieldSelector=spec.x%3D1")
        .await
        .unwrap();
    assert_eq!(
        (bad.status, bad.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    // Watch with a selector: starting to match is ADDED, stopping is DELETED.
    let mut w = c
        .watch(&format!(
            "/api/v1/namespaces/shop/endpoints?watch=1&resourceVersion={}&labelSelector=app%3Dcart",
            api.resource_version()
        ))
        .await
        .unwrap();
    api.apply_endpoints(mk("shop", "web", "cart", None)); // starts matching
    api.apply_endpoints(mk("other", "db", "cart", None)); // other namespace
    api.apply_endpoints(mk("shop", "cart", "cart", Some("x"))); // still matches
    let before = api.object(ResourceKind::Endpoints, "shop", "cart").unwrap();
    api.apply_endpoints(mk("shop", "cart", "gone", Some("x"))); // stops matching
    let e1 = w.event().await;
    let e2 = w.event().await;
    let e3 = w.event().await;
    assert_eq!(
        event_summary(&e1).split('@').next().unwrap(),
        "ADDED shop/web"
    );
    assert_eq!(
        event_summary(&e2).split('@').next().unwrap(),
        "MODIFIED shop/cart"
    );
    assert_eq!(e3["type"], "DELETED");
    // Previous content, with the resourceVersion of the change.
    assert_eq!(
        e3["object"]["metadata"]["labels"],
        before["metadata"]["labels"]
    );
    assert_eq!(rv_of(&e3), api.resource_version());
    api.delete_endpoints("shop", "cart"); // already not matching: nothing
    assert!(matches!(
        w.next(Duration::from_millis(200)).await,
        Next::Timeout
    ));
}

#[tokio::test]
async fn pagination_walks_a_consistent_snapshot() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    for i in 0..23 {
        api.apply_endpoints(
            endpoints(&format!("ns{}", i % 3), &format!("svc{i:02}"))
                .ready(["10.0.0.1"])
                .build(),
        );
    }
    let all = item_ids(&c.get("/api/v1/endpoints").await.unwrap().json());
    assert_eq!(all.len(), 23);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut list_rv = None;
    let mut pages = 0;
    loop {
        let q = match &token {
            Some(t) => format!("/api/v1/endpoints?limit=5&continue={t}"),
            None => "/api/v1/endpoints?limit=5".to_string(),
        };
        let page = c.get(&q).await.unwrap().json();
        pages += 1;
        let rv = page["metadata"]["resourceVersion"].clone();
        assert_eq!(
            *list_rv.get_or_insert(rv.clone()),
            rv,
            "all pages at the first page's RV"
        );
        seen.extend(item_ids(&page));
        if pages == 1 {
            // Changes after the first page do not show up in later pages.
            api.delete_endpoints("ns2", "svc20");
            api.apply_endpoints(endpoints("ns0", "aaa-new").build());
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) => {
                assert_eq!(page["metadata"]["remainingItemCount"], 23 - seen.len());
                token = Some(t.to_string());
            }
            None => {
                assert!(page["metadata"].get("remainingItemCount").is_none());
                break;
            }
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, all);
    // A namespaced, filtered walk: no remainingItemCount with a selector.
    let p = c
        .get("/api/v1/namespaces/ns1/endpoints?limit=2&labelSelector=!x")
        .await
        .unwrap()
        .json();
    assert_eq!(item_ids(&p).len(), 2);
    assert!(p["metadata"]["continue"].is_string());
    assert!(p["metadata"].get("remainingItemCount").is_none());
    // resourceVersion=0 is served from the watch cache: a v1.28 server ignores limit.
    let p = c
        .get("/api/v1/endpoints?limit=5&resourceVersion=0&resourceVersionMatch=NotOlderThan")
        .await
        .unwrap()
        .json();
    assert_eq!(item_ids(&p).len(), 23);
    assert!(p["metadata"].get("continue").is_none());
    let bad = c
        .get("/api/v1/endpoints?limit=5&continue=!!!")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn old_resource_versions_expire() {
    let api = start(FakeApiOptions {
        history_size: 3,
        too_large_rv_wait: Duration::from_millis(100),
        ..FakeApiOptions::default()
    })
    .await;
    let c = Client::new(&api);
    let rv0 = api.resource_version();
    for i in 0..5 {
        api.apply_endpoints(
            endpoints("shop", "cart")
                .ready([format!("10.0.0.{i}")])
                .build(),
        );
    }
    // The bounded history only covers the last 3 changes.
    let mut w = c
        .watch(&format!("/api/v1/endpoints?watch=1&resourceVersion={rv0}"))
        .await
        .unwrap();
    let (evs, end) = w.drain(T).await;
    assert!(matches!(end, Next::End));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(
        evs[0]["object"]["message"],
        format!("too old resource version: {rv0} ({})", rv0 + 2)
    );
    let mut w = c
        .watch(&format!(
            "/api/v1/endpoints?watch=1&resourceVersion={}",
            rv0 + 2
        ))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(w.event().await["type"], "MODIFIED");
    }
    // Exact lists within history work; below it they are 410.
    let l = c
        .get(&format!(
            "/api/v1/endpoints?resourceVersion={}&resourceVersionMatch=Exact",
            rv0 + 3
        ))
        .await
        .unwrap();
    assert_eq!(l.status, 200);
    assert_eq!(
        l.json()["items"][0]["subsets"][0]["addresses"][0]["ip"],
        "10.0.0.2"
    );
    let l = c
        .get(&format!(
            "/api/v1/endpoints?resourceVersion={rv0}&resourceVersionMatch=Exact"
        ))
        .await
        .unwrap();
    assert_eq!(l.status, 410);
    // A resourceVersion from the future: 504 after waiting.
    let far = api.resource_version() + 100;
    let l = c
        .get(&format!("/api/v1/endpoints?resourceVersion={far}"))
        .await
        .unwrap();
    assert_eq!(
        (l.status, l.json()["reason"].as_str()),
        (504, Some("Timeout"))
    );
    // compact(): even the latest-but-one RV is gone.
    api.compact();
    let mut w = c
        .watch(&format!(
            "/api/v1/endpoints?watch=1&resourceVersion={}",
            api.resource_version() - 1
        ))
        .await
        .unwrap();
    assert_eq!(w.event().await["type"], "ERROR");
    // Watching from exactly the current RV is fine.
    let mut w = c
        .watch(&format!(
            "/api/v1/endpoints?watch=1&resourceVersion={}",
            api.resource_version()
        ))
        .await
        .unwrap();
    api.delete_endpoints("shop", "cart");
    assert_eq!(w.event().await["type"], "DELETED");
}

#[tokio::test]
async fn authentication_and_rbac() {
    let api = start(FakeApiOptions {
        forbidden_tokens: vec!["no-rbac".into()],
        ..FakeApiOptions::default()
    })
    .await;
    let c = Client::new(&api);
    let ok = c.get("/api/v1/endpoints").await.unwrap();
    assert_eq!(ok.status, 200);
    let none = c
        .clone()
        .token(None)
        .get("/api/v1/endpoints")
        .await
        .unwrap();
    assert_eq!(
        (none.status, none.json()["reason"].as_str()),
        (401, Some("Unauthorized"))
    );
    let bad = c
        .clone()
        .token(Some("nope"))
        .watch("/api/v1/endpoints?watch=1")
        .await
        .unwrap();
    assert_eq!(bad.status, 401);
    let f = c
        .clone()
        .token(Some("no-rbac"))
        .get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices")
        .await
        .unwrap();
    assert_eq!(f.status, 403);
    assert_eq!(
        f.json()["message"],
        "endpointslices is forbidden: User \"endpoints-watcher\" cannot list resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"shop\""
    );
    assert_eq!(
        f.json()["details"],
        serde_json::json!({"group": "discovery.k8s.io", "kind": "endpointslices"})
    );
    let f = c
        .clone()
        .token(Some("no-rbac"))
        .watch("/api/v1/endpoints?watch=true")
        .await
        .unwrap();
    assert_eq!(f.status, 403);
    // list/watch only: get, create, other resources are forbidden for the good token too.
    for path in [
        "/api/v1/namespaces/shop/endpoints/cart",
        "/api/v1/services",
        "/api/v1/namespaces/shop/pods",
    ] {
        assert_eq!(c.get(path).await.unwrap().status, 403, "{path}");
    }
    // Rotation: the old token is revoked, the new one works; nothing is logged with tokens.
    api.set_tokens(&["rotated"], &[]);
    assert_eq!(c.get("/api/v1/endpoints").await.unwrap().status, 401);
    assert_eq!(
        c.clone()
            .token(Some("rotated"))
            .get("/api/v1/endpoints")
            .await
            .unwrap()
            .status,
        200
    );
    let reqs = api.requests();
    assert!(reqs.iter().all(|r| !format!("{r:?}").contains("rotated")));
    assert!(reqs.iter().any(|r| !r.has_bearer_token));
    assert!(reqs.iter().any(|r| r.is_watch()));
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let api = start(FakeApiOptions {
        bookmark_interval: Duration::from_millis(100),
        ..FakeApiOptions::default()
    })
    .await;
    let c = Client::new(&api);
    api.apply_endpoint_slice(
        endpoint_slice("shop", "s", "svc")
            .endpoint("10.0.0.1", EndpointState::Ready)
            .build(),
    );
    let mut w = c
        .watch("/apis/discovery.k8s.io/v1/endpointslices?watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(w.event().await["type"], "ADDED");
    api.bump_resource_version(7); // other resources were written
    let b = w.event().await;
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["resourceVersion"],
        api.resource_version().to_string()
    );
    assert_eq!(b["object"]["endpoints"], Value::Null);
    let (evs, end) = w.drain(T).await;
    assert!(
        matches!(end, Next::End),
        "timeoutSeconds closes the stream cleanly: {end:?}"
    );
    assert!(evs.iter().all(|e| e["type"] == "BOOKMARK"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Without allowWatchBookmarks: none.
    let mut w = c
        .watch("/api/v1/endpoints?watch=1&timeoutSeconds=1")
        .await
        .unwrap();
    let (evs, end) = w.drain(T).await;
    assert!(evs.is_empty() && matches!(end, Next::End));
}

#[tokio::test]
async fn bookmark_just_before_timeout() {
    // Periodic bookmarks far apart: the only bookmark is the one
    // `pre_timeout_bookmark` (2 s) before the deadline (3 s).
    const TIMEOUT: Duration = Duration::from_secs(3);
    const PRE_TIMEOUT: Duration = Duration::from_secs(2);
    let api = start(FakeApiOptions {
        bookmark_interval: Duration::from_secs(60),
        pre_timeout_bookmark: PRE_TIMEOUT,
        ..FakeApiOptions::default()
    })
    .await;
    let mut w = Client::new(&api)
        .watch(&format!(
            "/api/v1/endpoints?watch=1&allowWatchBookmarks=true&timeoutSeconds={}",
            TIMEOUT.as_secs()
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let b = w.event().await;
    assert_eq!(b["type"], "BOOKMARK");
    let at = started.elapsed();
    let (evs, end) = w.drain(T).await;
    let ended = started.elapsed();
    assert!(
        evs.is_empty() && matches!(end, Next::End),
        "{evs:?} {end:?}"
    );
    // Not before its time (delays only make it later)...
    assert!(
        at >= (TIMEOUT - PRE_TIMEOUT) * 8 / 10,
        "bookmark after {at:?}"
    );
    // ...and well ahead of the end of the stream, not just before it: a
    // scheduling delay would have to eat half the 2 s lead to fail this.
    assert!(
        ended - at >= PRE_TIMEOUT / 2,
        "bookmark {at:?} after the start, stream end {ended:?}"
    );
}

#[tokio::test]
async fn send_initial_events_like_v1_28_or_with_watch_list() {
    let q = "/api/v1/endpoints?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let api = start(FakeApiOptions::default()).await;
    let r = Client::new(&api).get(q).await.unwrap();
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["message"], "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled");

    let api = start(FakeApiOptions {
        watch_list: true,
        bookmark_interval: Duration::from_secs(60),
        ..FakeApiOptions::default()
    })
    .await;
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    let mut w = Client::new(&api).watch(q).await.unwrap();
    assert_eq!(w.event().await["type"], "ADDED");
    let b = w.event().await;
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn loopback_addresses_accepted_unless_rejected() {
    let api = start(FakeApiOptions::default()).await;
    api.apply_endpoints(endpoints("shop", "cart").ready(["127.0.0.1"]).build());
    let api = start(FakeApiOptions {
        reject_loopback: true,
        ..FakeApiOptions::default()
    })
    .await;
    let err = api
        .try_apply_endpoints(endpoints("shop", "cart").ready(["127.0.0.1"]).build())
        .unwrap_err();
    assert!(
        err.to_string().contains("may not be in the loopback range"),
        "{err}"
    );
    let err = api
        .try_apply_endpoint_slice(
            endpoint_slice("shop", "s", "cart")
                .endpoint("::1", EndpointState::Ready)
                .build(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("may not be in the loopback range"),
        "{err}"
    );
}
