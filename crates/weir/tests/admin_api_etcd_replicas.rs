//! Several weir replicas on one real etcd: a change made through one
//! replica's Admin API is served by both under load; concurrent PATCHes
//! through both lose no update (compare-and-swap); etcd killed and
//! restarted, then restarted empty, under load: no request fails, and the
//! replicas converge on what etcd then holds.

mod admin_kit;
mod common;

use std::time::Duration;

use admin_kit::{start_etcd, wait_proxy, wait_source};
use common::etcd_server::EtcdServer;
use common::{Backend, Load};
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_change_through_one_replica_is_served_by_both_under_load() {
    let etcd = EtcdServer::start().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gw1, admin1) = start_etcd(&[etcd.url()]).await;
    let (gw2, _admin2) = start_etcd(&[etcd.url()]).await;
    admin1
        .put_ok("/apisix/admin/upstreams/a", json!({"nodes": {a.node(): 1}}))
        .await;
    admin1
        .put_ok(
            "/apisix/admin/routes/base",
            json!({"uri": "/base", "upstream_id": "a"}),
        )
        .await;
    wait_proxy(gw2.proxy_addr(), "/base", "replica 2 has /base", |s, _| {
        s == StatusCode::OK
    })
    .await;
    let load1 = Load::start(gw1.proxy_addr(), 2, "/base", 0);
    let load2 = Load::start(gw2.proxy_addr(), 2, "/base", 0);
    load1.wait_more(50).await;
    load2.wait_more(50).await;
    admin1
        .put_ok(
            "/apisix/admin/routes/new",
            json!({"uri": "/new", "upstream": {"nodes": {b.node(): 1}}}),
        )
        .await;
    for gw in [&gw1, &gw2] {
        let r = wait_proxy(gw.proxy_addr(), "/new", "the new route", |s, _| {
            s == StatusCode::OK
        })
        .await;
        assert_eq!(r.backend(), "b");
    }
    load1.wait_more(50).await;
    load2.wait_more(50).await;
    for load in [load1, load2] {
        let report = load.finish().await;
        assert_eq!(report.failed, 0, "{:?}", report.failure_summary());
    }
    gw1.shutdown().await;
    gw2.shutdown().await;
}

#[tokio::test]
async fn concurrent_patches_through_two_replicas_lose_no_update() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("p").await;
    let (gw1, admin1) = start_etcd(&[etcd.url()]).await;
    let (gw2, admin2) = start_etcd(&[etcd.url()]).await;
    admin1
        .put_ok(
            "/apisix/admin/routes/r",
            json!({"uri": "/r", "upstream": {"nodes": {backend.node(): 1}}, "labels": {"base": "1"}}),
        )
        .await;
    const CLIENTS: usize = 8;
    const EACH: usize = 5;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let admin = if c % 2 == 0 {
                admin1.clone()
            } else {
                admin2.clone()
            };
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..EACH {
                    let p = admin
                        .call(
                            "PATCH",
                            "/apisix/admin/routes/r",
                            Some(json!({"labels": {format!("c{c}-{i}"): "x"}})),
                        )
                        .await;
                    statuses.push((p.status, p.text));
                }
                statuses
            })
        })
        .collect();
    for t in tasks {
        for (status, text) in t.await.expect("client") {
            assert_eq!(status, StatusCode::OK, "{text}");
        }
    }
    let (value, _, _) = etcd.get("/apisix/routes/r").await.expect("route");
    let labels = value["labels"].as_object().expect("labels");
    let missing: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..EACH).map(move |i| format!("c{c}-{i}")))
        .filter(|l| !labels.contains_key(l))
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?} in {value}");
    assert_eq!(labels.len(), CLIENTS * EACH + 1);
    gw1.shutdown().await;
    gw2.shutdown().await;
}

#[tokio::test]
async fn etcd_restarted_and_restarted_empty_under_load() {
    let mut etcd = EtcdServer::start().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gw, admin) = start_etcd(&[etcd.url()]).await;
    admin
        .put_ok("/apisix/admin/upstreams/a", json!({"nodes": {a.node(): 1}}))
        .await;
    admin
        .put_ok(
            "/apisix/admin/routes/base",
            json!({"uri": "/base", "upstream_id": "a"}),
        )
        .await;
    let load = Load::start(gw.proxy_addr(), 4, "/base", 0);
    load.wait_more(50).await;

    // Killed: the last configuration keeps serving; writes get 503.
    etcd.kill();
    wait_source(&gw, "etcd down noticed", |v| v["connected"] == json!(false)).await;
    load.hold(Duration::from_millis(200)).await;
    let w = admin
        .put(
            "/apisix/admin/routes/x",
            json!({"uri": "/x", "upstream_id": "a"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text);

    // Restarted with its data: the watch resumes; a change is applied.
    etcd.restart().await;
    etcd.put(
        "/apisix/routes/after",
        &json!({"id": "after", "uri": "/after", "upstream_id": "a"}).to_string(),
    )
    .await;
    wait_proxy(gw.proxy_addr(), "/after", "change after restart", |s, _| {
        s == StatusCode::OK
    })
    .await;
    let v = wait_source(&gw, "recovered", |v| v["connected"] == json!(true)).await;
    assert!(v["recovered_at"].is_u64(), "{v}");

    // Restarted empty (a new cluster): weir keeps what it serves and says
    // it is stale, rather than dropping every route.
    etcd.restart_empty().await;
    let v = wait_source(&gw, "empty etcd noticed", |v| v["stale"].is_string()).await;
    assert!(
        v["stale"]
            .as_str()
            .is_some_and(|s| s.contains("empty") || s.contains("without")),
        "{v}"
    );
    load.hold(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failure_summary());
    let m = admin_kit::control(&gw, "/metrics").await.body;
    assert!(
        m.contains("weir_config_source_stale{source=\"etcd\"} 1"),
        "{m}"
    );

    // The first write to the new etcd: it is read whole and becomes what
    // is served (the old routes are gone, as in that etcd).
    let p = admin
        .put(
            "/apisix/admin/routes/fresh",
            json!({"uri": "/fresh", "upstream": {"nodes": {b.node(): 1}}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let r = wait_proxy(
        gw.proxy_addr(),
        "/fresh",
        "route in the new etcd",
        |s, _| s == StatusCode::OK,
    )
    .await;
    assert_eq!(r.backend(), "b");
    wait_proxy(gw.proxy_addr(), "/base", "old route gone", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    wait_source(&gw, "no longer stale", |v| v["stale"].is_null()).await;
    gw.shutdown().await;
}
