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
