//! Live configuration changes: swaps under load lose nothing, the watched
//! file is picked up, and an invalid file leaves the old config serving.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, config, empty, gateway, get, send_with, Backend};
use http::StatusCode;

fn route_to(b: &Backend) -> String {
    format!(
        "routes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        b.node()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_continuous_load_fail_no_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = gateway(&route_to(&a)).await;
    let addr = gw.proxy_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // Half the workers keep connections alive, half open new ones.
            let pooled = client();
            while !stop.load(Ordering::SeqCst) {
                let r = if w % 2 == 0 {
                    send_with(&pooled, addr, "GET", None, "/", empty()).await
                } else {
                    get(addr, None, "/").await
                };
                if r.status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for i in 0..30 {
        let target = if i % 2 == 0 { &b } else { &a };
        gw.core
            .reload(config(&route_to(target)))
            .await
            .expect("valid reload");
        // Let some requests through on each generation; a reload that
        // stopped serving fails here instead of hanging.
        let seen = ok.load(Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(15), async {
            while ok.load(Ordering::SeqCst) < seen + 20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "reload {i}: fewer than 20 requests succeeded within 15 s ({} ok, {} failed in all)",
                ok.load(Ordering::SeqCst),
                failed.load(Ordering::SeqCst)
            )
        });
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) >= 600);
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "both generations served traffic"
    );
    let status = gw.core.reload_status().borrow().clone();
    assert_eq!(status.applied, 30);
}

#[tokio::test]
async fn watched_file_changes_apply_and_invalid_files_are_rejected() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, route_to(&a)).unwrap();
    let gw = weir::Gateway::start(config(&route_to(&a))).await.unwrap();
    let mut status = gw.core.reload_status();
    let watcher = weir::reload::spawn(gw.core.clone(), path.clone(), None).unwrap();
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "a");

    // A valid change is picked up.
    std::fs::write(&path, route_to(&b)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.applied >= 1))
        .await
        .expect("reload within 10 s")
        .unwrap();
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "b");

    // An invalid file is rejected; the last good config keeps serving.
    let attempts = status.borrow().attempts;
    std::fs::write(
        &path,
        "routes:\n  - {uri: nope, upstream: {nodes: {\"1.2.3.4:80x\": 1}}}\n",
    )
    .unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.attempts > attempts),
    )
    .await
    .expect("reload attempt within 10 s")
    .unwrap()
    .clone();
    let err = s.last_error.expect("rejected");
    assert!(err.contains("routes[0].uri"), "{err}");
    assert!(
        err.contains("routes[0].upstream.nodes[\"1.2.3.4:80x\"]: invalid port"),
        "{err}"
    );
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "b");
    watcher.abort();
}

#[tokio::test]
async fn route_changes_take_effect_without_touching_other_routes() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let v1 = format!(
        "routes:\n  - {{id: one, uri: /one, upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        a.node()
    );
    let v2 = format!(
        "{v1}  - {{id: two, uri: /two, upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        b.node()
    );
    let gw = gateway(&v1).await;
    assert_eq!(
        get(gw.proxy_addr(), None, "/two").await.status,
        StatusCode::NOT_FOUND
    );
    gw.core.reload(config(&v2)).await.unwrap();
    assert_eq!(get(gw.proxy_addr(), None, "/two").await.backend(), "b");
    assert_eq!(get(gw.proxy_addr(), None, "/one").await.backend(), "a");
}

#[tokio::test]
async fn websocket_and_h2_connections_opened_before_a_reload_keep_working() {
    use futures::{SinkExt, StreamExt};
    use http_body_util::BodyExt;
    use tokio_tungstenite::tungstenite::Message;

    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let yaml = |x: &Backend| {
        format!(
            "routes:\n  - {{id: ws, uri: /ws, enable_websocket: true, upstream: {{nodes: {{\"{n}\": 1}}}}}}\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{n}\": 1}}}}}}\n",
            n = x.node()
        )
    };
    let gw = gateway(&yaml(&a)).await;
    let addr = gw.proxy_addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let h2_get =
        |h2: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>| {
            let req = http::Request::get(format!("http://{addr}/"))
                .body(http_body_util::Empty::new())
                .unwrap();
            h2.send_request(req)
        };
    let r = h2_get(&mut h2).await.unwrap();
    assert_eq!(r.headers()["x-backend"], "a");

    gw.core.reload(config(&yaml(&b))).await.unwrap();

    // The tunnel opened before the reload still echoes.
    ws.send(Message::text("still here")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("still here"));
    // The h2 connection opened before the reload takes new streams, routed by
    // the new configuration.
    let r = h2_get(&mut h2).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-backend"], "b");
    let _ = r.into_body().collect().await.unwrap();
}

/// Kubernetes updates a mounted ConfigMap with its atomic writer: the files
/// live in a timestamped directory, `..data` links to it and `weir.yaml` to
/// `..data/weir.yaml`; an update writes a new directory, renames a new link
/// over `..data` and removes the old directory. `weir.yaml` itself never
/// changes, yet the watcher must pick the update up.
#[tokio::test]
async fn a_configmap_update_by_data_symlink_swap_is_picked_up_by_the_watcher() {
    use std::os::unix::fs::symlink;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let write_version = |name: &str, yaml: &str| {
        std::fs::create_dir(mount.join(name)).unwrap();
        std::fs::write(mount.join(name).join("weir.yaml"), yaml).unwrap();
    };
    let (v1, v2) = (
        "..2026_01_02_03_04_05.000000001",
        "..2026_01_02_03_09_10.000000002",
    );
    write_version(v1, &route_to(&a));
    symlink(v1, mount.join("..data")).unwrap();
    symlink("..data/weir.yaml", mount.join("weir.yaml")).unwrap();
    let gw = weir::Gateway::start(config(&route_to(&a))).await.unwrap();
    let mut status = gw.core.reload_status();
    let watcher = weir::reload::spawn(gw.core.clone(), mount.join("weir.yaml"), None).unwrap();
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "a");

    write_version(v2, &route_to(&b));
    symlink(v2, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join(v1)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.applied >= 1))
        .await
        .expect("the symlink swap reloaded within 10 s")
        .unwrap();
    assert_eq!(get(gw.proxy_addr(), None, "/").await.backend(), "b");
    assert_eq!(status.borrow().last_error, None);
    watcher.abort();
}

/// A gateway discovering `shop/cart` (one pod) from a fake API server,
/// synced; `yaml(idle)` is its configuration with `watch_idle_timeout: idle`.
struct DiscoveryFixture {
    api: weir_testkit::kube_api::FakeApiServer,
    _pod: Backend,
    gw: weir::Gateway,
    control: std::net::SocketAddr,
}

impl DiscoveryFixture {
    async fn start() -> DiscoveryFixture {
        let api = weir_testkit::kube_api::FakeApiServer::start()
            .await
            .unwrap();
        let pod = Backend::start("pod").await;
        api.apply_endpoints(common::cart_endpoints(&[pod.addr.port()]));
        let mut fx = DiscoveryFixture {
            gw: common::gateway(&discovery_yaml(api.addr().port(), 5)).await,
            api,
            _pod: pod,
            control: "0.0.0.0:0".parse().unwrap(),
        };
        fx.control = fx.gw.control_addr().unwrap();
        assert!(
            fx.gw.wait_ready(Duration::from_secs(15)).await,
            "first sync"
        );
        fx
    }

    /// Reloads with another `watch_idle_timeout` (new watchers) while the
    /// API server answers every request 500, and returns once the new
    /// watchers have tried to list and been refused: they are unsynced.
    async fn reload_discovery_with_lists_failing(&self) {
        self.api
            .fail_requests(500, weir_testkit::kube_api::FailScope::Always);
        self.api.clear_requests();
        self.gw
            .core
            .reload(config(&discovery_yaml(self.api.addr().port(), 6)))
            .await
            .expect("reload accepted");
        self.api
            .wait_for_request(Duration::from_secs(15), |r| {
                r.path == "/api/v1/endpoints" && !r.is_watch()
            })
            .await
            .unwrap();
        let s = self.sync().await;
        assert_eq!(s["initial_list_done"], false, "new watchers unsynced: {s}");
    }

    /// The discovery dump's sync state of the (single) cluster.
    async fn sync(&self) -> serde_json::Value {
        let r = get(self.control, None, "/v1/discovery/kubernetes/dump").await;
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["sync"][0].clone()
    }
}

fn discovery_yaml(api_port: u16, watch_idle_timeout: u32) -> String {
    format!(
        "discovery:\n  kubernetes:\n    service: {{schema: http, host: \"127.0.0.1\", port: {api_port}}}\n    client: {{token: test-token}}\n    watch_idle_timeout: {watch_idle_timeout}\nroutes:\n  - {{id: cart, uri: \"/*\", upstream: {{discovery_type: kubernetes, service_name: \"shop/cart:http\"}}}}\n"
    )
}

/// A reload that changes `discovery:` restarts the watchers; until the new
/// ones have listed, the gateway serves the last known nodes and must stay
/// ready (a 503 would take every replica out of its Service at once). The
/// new watchers' lists fail (the API server answers 500) until readiness
/// has been seen 200 while they are unsynced; readiness is polled all along,
/// from a first 200 before the reload (a probe saw the gateway ready) until
/// the new watchers have synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_200_across_a_reload_that_restarts_discovery() {
    let fx = DiscoveryFixture::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (polls, not_ready) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (stop, polls, not_ready) = (stop.clone(), polls.clone(), not_ready.clone());
        let control = fx.control;
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                let r = send_with(&c, control, "GET", None, "/status/ready", empty()).await;
                if r.status != StatusCode::OK {
                    not_ready.fetch_add(1, Ordering::SeqCst);
                }
                polls.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let polled = |n: u64, what: &'static str| {
        let polls = polls.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while polls.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("readiness not polled {what}"));
        }
    };
    polled(1, "before the reload").await;

    fx.reload_discovery_with_lists_failing().await;
    polled(
        polls.load(Ordering::SeqCst) + 3,
        "while the new watchers are unsynced",
    )
    .await;
    assert_eq!(get(fx.gw.proxy_addr(), None, "/").await.backend(), "pod");

    // The API server recovers; the new watchers sync.
    fx.api.clear_failures();
    tokio::time::timeout(Duration::from_secs(15), async {
        while fx.sync().await["initial_list_done"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the new watchers synced within 15 s");
    stop.store(true, Ordering::SeqCst);
    poller.await.unwrap();
    assert_eq!(
        not_ready.load(Ordering::SeqCst),
        0,
        "readiness answered 503 in {} of {} polls across the discovery restart",
        not_ready.load(Ordering::SeqCst),
        polls.load(Ordering::SeqCst)
    );
}

/// The same, when nothing asked for readiness between the first sync and
/// the reload: docs/operations.md promises 503 only before the first sync
/// and from SIGTERM on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_200_across_a_discovery_reload_even_if_never_queried_before() {
    let fx = DiscoveryFixture::start().await;
    fx.reload_discovery_with_lists_failing().await;
    assert_eq!(
        get(fx.control, None, "/status/ready").await.status,
        StatusCode::OK,
        "synced once, then a discovery reload: still ready"
    );
}
