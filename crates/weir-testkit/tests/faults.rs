//! The fault injector: cut, stall, failing requests, restart/stop, TLS.

mod common;

use std::time::Duration;

use common::*;
use weir_testkit::kube_api::{
    endpoints, FailScope, FakeApiOptions, FakeApiServer, ResourceKind, RestartOptions,
};

async fn start(opts: FakeApiOptions) -> FakeApiServer {
    init_tracing();
    FakeApiServer::start_with(opts).await.unwrap()
}

#[tokio::test]
async fn cut_watches_drops_streams_mid_flight() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    let mut a = c.watch("/api/v1/endpoints?watch=1").await.unwrap();
    let mut b = c
        .watch("/apis/discovery.k8s.io/v1/endpointslices?watch=1")
        .await
        .unwrap();
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.wait_for_watchers(ResourceKind::EndpointSlices, 1, T)
        .await
        .unwrap();
    assert_eq!(api.open_watches(), 2);
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    assert_eq!(a.event().await["type"], "ADDED");
    api.cut_watches();
    for w in [&mut a, &mut b] {
        let (_, end) = w.drain(T).await;
        assert!(matches!(end, Next::Broken(_)), "not a clean end: {end:?}");
    }
    api.wait_for_watch_count(ResourceKind::Endpoints, |n| n == 0, T)
        .await
        .unwrap();
    assert_eq!(api.open_watches(), 0);
    // New watches are unaffected by an earlier cut.
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
async fn stalled_watches_send_nothing_until_released() {
    let api = start(FakeApiOptions {
        bookmark_interval: Duration::from_millis(50),
        ..FakeApiOptions::default()
    })
    .await;
    let c = Client::new(&api);
    let mut w = c
        .watch("/api/v1/endpoints?watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
        .await
        .unwrap();
    assert_eq!(w.event().await["type"], "BOOKMARK");
    api.stall_watches(true);
    // Drain what may have been in flight, then: silence, even past timeoutSeconds.
    while let Next::Event(_) = w.next(Duration::from_millis(150)).await {}
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    assert!(matches!(
        w.next(Duration::from_millis(1200)).await,
        Next::Timeout
    ));
    assert_eq!(api.open_watches(), 1, "a stalled watch is still open");
    api.stall_watches(false);
    let e = w.non_bookmark().await;
    assert_eq!(
        event_summary(&e),
        format!("ADDED shop/cart@{}", api.resource_version())
    );
    // The deadline has passed meanwhile: the stream now ends.
    let (_, end) = w.drain(T).await;
    assert!(matches!(end, Next::End), "{end:?}");
}

#[tokio::test]
async fn fail_requests_by_count_and_duration() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    api.fail_requests(500, 2);
    for _ in 0..2 {
        let r = c.get("/api/v1/endpoints").await.unwrap();
        assert_eq!(r.status, 500);
        let s = r.json();
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str(), s["code"].as_u64()),
            (Some("Status"), Some("InternalError"), Some(500))
        );
    }
    assert_eq!(c.get("/api/v1/endpoints").await.unwrap().status, 200);

    api.fail_requests(503, Duration::from_millis(300));
    let r = c.watch("/api/v1/endpoints?watch=1").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    // It ends by itself: poll with a bounded number of attempts.
    let mut recovered = false;
    for _ in 0..100 {
        if c.get("/api/v1/endpoints").await.unwrap().status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered);

    api.fail_requests(429, FailScope::Always);
    assert_eq!(c.get("/version").await.unwrap().status, 429);
    api.clear_failures();
    assert_eq!(c.get("/version").await.unwrap().status, 200);
}

#[tokio::test]
async fn restart_comes_back_on_the_same_port_with_an_empty_watch_cache() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    let addr = api.addr();
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    let rv = api.resource_version();
    let mut w = c
        .watch(&format!("/api/v1/endpoints?watch=1&resourceVersion={rv}"))
        .await
        .unwrap();
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.2"]).build());
    assert_eq!(w.event().await["type"], "MODIFIED");
    api.restart().await.unwrap();
    let (_, end) = w.drain(T).await;
    assert!(matches!(end, Next::Broken(_)), "{end:?}");
    assert_eq!(api.addr(), addr);
    assert_eq!(api.open_watches(), 0);
    // Objects survive; resuming from the old RV is 410 like demo-410.txt.
    let list = c.get("/api/v1/endpoints").await.unwrap().json();
    assert_eq!(item_ids(&list), ["shop/cart"]);
    let mut w = c
        .watch(&format!("/api/v1/endpoints?watch=1&resourceVersion={rv}"))
        .await
        .unwrap();
    let e = w.event().await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );

    // keep_history + resourceVersion jump: old RVs stay valid, new ones are higher.
    let rv = api.resource_version();
    api.restart_with(RestartOptions {
        keep_history: true,
        resource_version_jump: 1000,
        ..RestartOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(api.resource_version(), rv + 1000);
    let mut w = c
        .watch(&format!("/api/v1/endpoints?watch=1&resourceVersion={rv}"))
        .await
        .unwrap();
    api.delete_endpoints("shop", "cart");
    let e = w.event().await;
    assert_eq!(
        event_summary(&e),
        format!("DELETED shop/cart@{}", rv + 1001)
    );
}

#[tokio::test]
async fn stop_refuses_connections_and_keeps_the_port_until_resumed() {
    let api = start(FakeApiOptions::default()).await;
    let c = Client::new(&api);
    let _w = c.watch("/api/v1/endpoints?watch=1").await.unwrap();
    api.wait_for_watchers(ResourceKind::Endpoints, 1, T)
        .await
        .unwrap();
    api.stop().await;
    assert!(!api.is_running());
    assert_eq!(api.open_watches(), 0);
    let err = tokio::net::TcpStream::connect(api.addr())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // Nothing else can take the port meanwhile (std binds with SO_REUSEADDR).
    let taken = std::net::TcpListener::bind(api.addr()).map(|l| l.local_addr().unwrap());
    assert_eq!(
        taken.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AddrInUse),
        "the stopped server's port was free for another listener"
    );
    api.resume().await.unwrap();
    assert_eq!(c.get("/api/v1/endpoints").await.unwrap().status, 200);
    let seen = api
        .wait_for_request(T, |r| r.path == "/api/v1/endpoints" && !r.is_watch())
        .await
        .unwrap();
    assert!(seen.has_bearer_token);
}

#[tokio::test]
async fn https_with_generated_ca() {
    let api = start(FakeApiOptions {
        tls: true,
        ..FakeApiOptions::default()
    })
    .await;
    assert!(api.url().starts_with("https://127.0.0.1:"));
    assert!(api
        .ca_pem()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    api.apply_endpoints(endpoints("shop", "cart").ready(["10.0.0.1"]).build());
    let c = Client::new(&api);
    let list = c.get("/api/v1/endpoints").await.unwrap();
    assert_eq!(list.status, 200);
    let mut w = c.watch("/api/v1/endpoints?watch=1").await.unwrap();
    assert_eq!(w.event().await["type"], "ADDED");
    // Plain HTTP to the TLS port does not get an API answer.
    let r = tokio::time::timeout(T, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(api.addr()).await?;
        s.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!String::from_utf8_lossy(&r).contains("gitVersion"));
}
