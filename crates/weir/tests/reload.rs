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
        // Let some requests through on each generation.
        let seen = ok.load(Ordering::SeqCst);
        while ok.load(Ordering::SeqCst) < seen + 20 {
            tokio::task::yield_now().await;
        }
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
    let watcher = weir::reload::spawn(gw.core.clone(), path.clone()).unwrap();
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
