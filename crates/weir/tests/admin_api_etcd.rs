//! `config_provider: etcd` against a real etcd: APISIX's layout written raw
//! is served and watched; the Admin API writes through etcd (indexes are
//! etcd's revisions, `?ttl` is a lease); an invalid stored value is skipped
//! and the last good version keeps serving; a partition with a compaction
//! during it is caught up by a full re-read, with no request failing; TLS
//! with a client certificate; authentication; the client's compare-and-swap
//! and paged reads.

mod admin_kit;
mod common;

use std::time::Duration;

use admin_kit::{control, start_etcd, wait_proxy, wait_source};
use common::etcd_server::{EtcdServer, Relay};
use common::{Backend, Load};
use http::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn apisix_layout_written_raw_is_served_and_watched() {
    let etcd = EtcdServer::start().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let up = json!({"id": "u1", "type": "roundrobin", "nodes": {a.node(): 1}});
    etcd.put("/apisix/upstreams/u1", &up.to_string()).await;
    etcd.put(
        "/apisix/routes/1",
        &json!({"id": "1", "uri": "/one", "upstream_id": "u1"}).to_string(),
    )
    .await;
    // APISIX's directory placeholders and data weir does not know.
    etcd.put("/apisix/routes", "init_dir").await;
    etcd.put("/apisix/data_plane/server_info/x", "{\"id\":\"x\"}")
        .await;
    etcd.put("/apisix/unknown_dir/x", "not json").await;
    etcd.put("/other/routes/9", "{}").await;
    let (gw, _admin) = start_etcd(&[etcd.url()]).await;
    let r = common::get(gw.proxy_addr(), None, "/one").await;
    assert_eq!((r.status, r.backend()), (StatusCode::OK, "a"), "{}", r.body);

    // Watched: a new route (its id only in the key), then a delete.
    etcd.put(
        "/apisix/routes/2",
        &json!({"uri": "/two", "upstream": {"nodes": {b.node(): 1}}}).to_string(),
    )
    .await;
    let r = wait_proxy(gw.proxy_addr(), "/two", "route 2 served", |s, _| {
        s == StatusCode::OK
    })
    .await;
    assert_eq!(r.backend(), "b");
    let rev = etcd.delete("/apisix/routes/1").await;
    wait_proxy(gw.proxy_addr(), "/one", "route 1 deleted", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    let v = wait_source(&gw, "revision applied", |v| v["revision"] == json!(rev)).await;
    assert_eq!(v["connected"], json!(true), "{v}");
    assert_eq!(v["synced"], json!(true), "{v}");
    assert_eq!(v["provider"], json!("etcd"), "{v}");
    let m = control(&gw, "/metrics").await.body;
    assert!(
        m.contains("weir_config_source_up{source=\"etcd\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "weir_config_source_revision{{source=\"etcd\"}} {rev}"
        )),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_api_writes_go_to_etcd_with_its_revisions() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("crud").await;
    let (gw, admin) = start_etcd(&[etcd.url()]).await;
    let p = admin
        .put(
            "/apisix/admin/upstreams/u",
            json!({"nodes": {backend.node(): 1}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let (stored, created, modified) = etcd.get("/apisix/upstreams/u").await.expect("in etcd");
    assert_eq!(stored["id"], json!("u"));
    let g = admin.get("/apisix/admin/upstreams/u").await;
    assert_eq!(g.json["createdIndex"], json!(created), "{}", g.text);
    assert_eq!(g.json["modifiedIndex"], json!(modified), "{}", g.text);

    let p = admin
        .put(
            "/apisix/admin/routes/r",
            json!({"uri": "/r", "upstream_id": "u", "desc": "v1"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    // Answered once applied here: served at once.
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (_, r_created, _) = etcd.get("/apisix/routes/r").await.expect("route in etcd");

    let p = admin
        .put(
            "/apisix/admin/routes/r",
            json!({"uri": "/r", "upstream_id": "u", "desc": "v2"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let p = admin
        .call(
            "PATCH",
            "/apisix/admin/routes/r",
            Some(json!({"desc": "v3"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let (stored, created, modified) = etcd.get("/apisix/routes/r").await.expect("route");
    assert_eq!(stored["desc"], json!("v3"));
    assert_eq!(created, r_created, "a replace keeps the create revision");
    assert!(modified > created);
    let g = admin.get("/apisix/admin/routes/r").await;
    assert_eq!(
        (
            g.json["createdIndex"].clone(),
            g.json["modifiedIndex"].clone()
        ),
        (json!(created), json!(modified)),
        "{}",
        g.text
    );

    let p = admin
        .call(
            "POST",
            "/apisix/admin/routes",
            Some(json!({"uri": "/posted", "upstream_id": "u"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let key = p.json["key"].as_str().expect("key").to_owned();
    assert!(etcd.get(&key).await.is_some(), "{key} is in etcd");

    // Still referenced: refused; the route goes first.
    let d = admin.delete("/apisix/admin/upstreams/u").await;
    assert_eq!(d.status, StatusCode::BAD_REQUEST, "{}", d.text);
    let d = admin.delete("/apisix/admin/routes/r").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert!(etcd.get("/apisix/routes/r").await.is_none());
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // ?ttl: an etcd lease; the route goes when it expires.
    let bad = admin
        .call(
            "PUT",
            "/apisix/admin/routes/t?ttl=soon",
            Some(json!({"uri": "/t", "upstream_id": "u"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains("ttl"), "{}", bad.text);
    let t = admin
        .call(
            "PUT",
            "/apisix/admin/routes/t?ttl=1",
            Some(json!({"uri": "/t", "upstream_id": "u"})),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let r = common::get(gw.proxy_addr(), None, "/t").await;
    assert_eq!(r.status, StatusCode::OK, "served until the lease expires");
    wait_proxy(gw.proxy_addr(), "/t", "the ttl route expired", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    assert!(etcd.get("/apisix/routes/t").await.is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn an_invalid_stored_value_is_skipped_and_the_last_good_one_kept() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("good").await;
    let (gw, admin) = start_etcd(&[etcd.url()]).await;
    admin
        .put_ok(
            "/apisix/admin/upstreams/u",
            json!({"nodes": {backend.node(): 1}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/routes/r",
            json!({"uri": "/r", "upstream_id": "u"}),
        )
        .await;
    // A schema error, a value that is not JSON, and a plugin configuration
    // only the engine refuses.
    etcd.put(
        "/apisix/routes/r",
        &json!({"id": "r", "uri": 5}).to_string(),
    )
    .await;
    etcd.put("/apisix/routes/garbage", "{not json").await;
    etcd.put(
        "/apisix/routes/p",
        &json!({"uri": "/p", "upstream_id": "u", "plugins": {"limit-count": {"count": -1, "time_window": 1}}})
            .to_string(),
    )
    .await;
    // A valid change after them is applied: the watch went past them.
    etcd.put(
        "/apisix/routes/after",
        &json!({"uri": "/after", "upstream_id": "u"}).to_string(),
    )
    .await;
    wait_proxy(gw.proxy_addr(), "/after", "the valid change", |s, _| {
        s == StatusCode::OK
    })
    .await;
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.status, StatusCode::OK, "the last good /r keeps serving");
    let r = common::get(gw.proxy_addr(), None, "/p").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the refused route is not served"
    );
    let v = wait_source(&gw, "invalid keys listed", |v| {
        v["invalid_keys"].as_array().is_some_and(|k| k.len() == 3)
    })
    .await;
    let keys = v["invalid_keys"].to_string();
    for k in [
        "/apisix/routes/r",
        "/apisix/routes/garbage",
        "/apisix/routes/p",
    ] {
        assert!(keys.contains(k), "{k} in {keys}");
    }
    // The Admin API still shows the good version.
    let g = admin.get("/apisix/admin/routes/r").await;
    assert_eq!(g.json["value"]["uri"], json!("/r"), "{}", g.text);
    // A corrected value is applied and leaves the list.
    etcd.put(
        "/apisix/routes/r",
        &json!({"id": "r", "uri": "/r2", "upstream_id": "u"}).to_string(),
    )
    .await;
    wait_proxy(gw.proxy_addr(), "/r2", "the corrected route", |s, _| {
        s == StatusCode::OK
    })
    .await;
    wait_source(&gw, "corrected key leaves the list", |v| {
        !v["invalid_keys"].to_string().contains("/apisix/routes/r\"")
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_partition_with_a_compaction_is_caught_up_without_failures() {
    let etcd = EtcdServer::start().await;
    let relay = Relay::start(etcd.addr()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gw, admin) = start_etcd(&[relay.url()]).await;
    admin
        .put_ok("/apisix/admin/upstreams/a", json!({"nodes": {a.node(): 1}}))
        .await;
    admin
        .put_ok("/apisix/admin/upstreams/b", json!({"nodes": {b.node(): 1}}))
        .await;
    for (id, up) in [("keep", "a"), ("gone", "a"), ("moved", "a")] {
        admin
            .put_ok(
                &format!("/apisix/admin/routes/{id}"),
                json!({"uri": format!("/{id}"), "upstream_id": up}),
            )
            .await;
    }
    let load = Load::start(gw.proxy_addr(), 4, "/keep", 0);
    load.wait_more(50).await;

    relay.cut();
    wait_source(&gw, "partition noticed", |v| v["connected"] == json!(false)).await;
    // Writes through this replica fail clearly while etcd is out of reach.
    let w = admin
        .put(
            "/apisix/admin/routes/x",
            json!({"uri": "/x", "upstream_id": "a"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text);
    assert!(
        w.json["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("etcd")),
        "{}",
        w.text
    );
    let m = control(&gw, "/metrics").await.body;
    assert!(
        m.contains("weir_config_source_up{source=\"etcd\"} 0"),
        "{m}"
    );
    // Meanwhile, in etcd: a new route, a delete, several versions of one
    // route; then the history is compacted away.
    etcd.put(
        "/apisix/routes/new",
        &json!({"id": "new", "uri": "/new", "upstream_id": "b"}).to_string(),
    )
    .await;
    etcd.delete("/apisix/routes/gone").await;
    for up in ["b", "a", "b"] {
        etcd.put(
            "/apisix/routes/moved",
            &json!({"id": "moved", "uri": "/moved", "upstream_id": up}).to_string(),
        )
        .await;
    }
    let rev = etcd.revision().await;
    etcd.compact(rev).await;
    load.hold(Duration::from_millis(200)).await;

    relay.restore();
    let v = wait_source(&gw, "caught up", |v| {
        v["connected"] == json!(true) && v["revision"].as_i64() >= Some(rev)
    })
    .await;
    assert!(v["recovered_at"].is_u64(), "{v}");
    assert!(
        v["last_error"].is_string(),
        "the past error stays visible: {v}"
    );
    let r = common::get(gw.proxy_addr(), None, "/new").await;
    assert_eq!((r.status, r.backend()), (StatusCode::OK, "b"));
    let r = common::get(gw.proxy_addr(), None, "/moved").await;
    assert_eq!(
        (r.status, r.backend()),
        (StatusCode::OK, "b"),
        "the last version"
    );
    let r = common::get(gw.proxy_addr(), None, "/gone").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failure_summary());
    assert!(report.ok > 100, "{report:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn startup_with_etcd_unreachable_waits_and_then_serves() {
    let etcd = EtcdServer::start().await;
    let relay = Relay::start(etcd.addr()).await;
    relay.cut();
    let backend = Backend::start("late").await;
    let gw = weir::Gateway::start(common::config(&admin_kit::etcd_file(&[relay.url()])))
        .await
        .expect("starts without etcd");
    let ready = control(&gw, "/status/ready").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert!(ready.body.contains("etcd"), "{}", ready.body);
    etcd.put(
        "/apisix/routes/l",
        &json!({"uri": "/late", "upstream": {"nodes": {backend.node(): 1}}}).to_string(),
    )
    .await;
    relay.restore();
    assert!(gw.wait_ready(Duration::from_secs(10)).await);
    let ready = control(&gw, "/status/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let r = common::get(gw.proxy_addr(), None, "/late").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value =
        serde_json::from_str(&control(&gw, "/v1/config_source").await.body).expect("json");
    assert!(v["last_error"].is_string(), "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn ttl_with_the_state_file_is_refused() {
    let s = admin_kit::start(admin_kit::EMPTY).await;
    let t = s
        .admin
        .put(
            "/apisix/admin/routes/t?ttl=5",
            json!({"uri": "/t", "upstream": {"nodes": {"127.0.0.1:9": 1}}}),
        )
        .await;
    assert_eq!(t.status, StatusCode::BAD_REQUEST, "{}", t.text);
    assert!(
        t.text.contains("ttl") && t.text.contains("etcd"),
        "{}",
        t.text
    );
    let g = s.admin.get("/apisix/admin/routes/t").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND, "nothing was written");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn tls_to_etcd_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let file = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).expect("write PEM");
        p.display().to_string()
    };
    let (server_cert, server_key) = admin_kit::cert("127.0.0.1");
    let (client_cert, client_key) = admin_kit::cert("weir-client");
    let (sc, sk) = (file("s.crt", &server_cert), file("s.key", &server_key));
    let (cc, ck) = (file("c.crt", &client_cert), file("c.key", &client_key));
    // etcd's JSON gateway calls etcd itself with the server certificate:
    // etcd trusts it as well as weir's.
    let trusted = file("trusted.crt", &format!("{client_cert}{server_cert}"));
    let etcd = EtcdServer::start_tls(&sc, &sk, &trusted).await;
    let backend = Backend::start("tls").await;
    let with_tls = |tls: String| {
        admin_kit::etcd_file(&[etcd.https_url()]).replace(
            "    timeout: 2\n",
            &format!("    timeout: 2\n    tls: {tls}\n"),
        )
    };
    let yaml = with_tls(format!("{{ca_file: {sc:?}, cert: {cc:?}, key: {ck:?}}}"));
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("gateway start");
    if !gw.wait_ready(Duration::from_secs(10)).await {
        let shown = control(&gw, "/v1/config_source").await.body;
        panic!("etcd not read over TLS: {shown}");
    }
    let admin = admin_kit::Admin::new(gw.admin_addr().expect("admin"));
    admin
        .put_ok(
            "/apisix/admin/routes/t",
            json!({"uri": "/tls", "upstream": {"nodes": {backend.node(): 1}}}),
        )
        .await;
    let r = common::get(gw.proxy_addr(), None, "/tls").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(etcd.get("/apisix/routes/t").await.is_some());

    // Without the client certificate etcd refuses weir: not ready, and the
    // error is shown.
    let no_cert = with_tls(format!("{{ca_file: {sc:?}}}"));
    let gw2 = weir::Gateway::start(common::config(&no_cert))
        .await
        .expect("gateway start");
    assert!(!gw2.wait_ready(Duration::from_millis(500)).await);
    let v = wait_source(&gw2, "the TLS failure shown", |v| {
        v["last_error"].is_string()
    })
    .await;
    assert_eq!(v["synced"], json!(false), "{v}");
    gw2.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn etcd_authentication_with_user_and_password() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("auth").await;
    etcd.put(
        "/apisix/routes/a",
        &json!({"uri": "/a", "upstream": {"nodes": {backend.node(): 1}}}).to_string(),
    )
    .await;
    etcd.enable_auth("etcd-pw-4f1c").await;
    let with = |pw: &str| {
        admin_kit::etcd_file(&[etcd.url()]).replace(
            "    timeout: 2\n",
            &format!("    timeout: 2\n    user: root\n    password: {pw}\n"),
        )
    };
    let gw = weir::Gateway::start(common::config(&with("etcd-pw-4f1c")))
        .await
        .expect("gateway start");
    assert!(
        gw.wait_ready(Duration::from_secs(10)).await,
        "read with a token"
    );
    let r = common::get(gw.proxy_addr(), None, "/a").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let admin = admin_kit::Admin::new(gw.admin_addr().expect("admin"));
    admin
        .put_ok(
            "/apisix/admin/routes/b",
            json!({"uri": "/b", "upstream": {"nodes": {backend.node(): 1}}}),
        )
        .await;
    let r = common::get(gw.proxy_addr(), None, "/b").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let shown = control(&gw, "/v1/config_source").await.body;
    assert!(!shown.contains("etcd-pw-4f1c"), "{shown}");

    // A wrong password: not ready, the error shown, the password never.
    let gw2 = weir::Gateway::start(common::config(&with("wrong-pw-77")))
        .await
        .expect("gateway start");
    assert!(!gw2.wait_ready(Duration::from_millis(500)).await);
    let v = wait_source(&gw2, "the refusal shown", |v| v["last_error"].is_string()).await;
    assert!(!v.to_string().contains("wrong-pw-77"), "{v}");
    let m = control(&gw2, "/metrics").await.body;
    assert!(!m.contains("wrong-pw-77"));
    gw2.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_client_compares_and_swaps_and_reads_large_prefixes_in_pages() {
    use weir_admin::etcd::client::{Compare, EtcdClient, Op};
    let etcd = EtcdServer::start().await;
    let settings = weir_config::EtcdSettings {
        host: vec![etcd.url()],
        timeout: 5.0,
        ..weir_config::EtcdSettings::default()
    };
    let client = EtcdClient::new(&settings).expect("client");
    let put = |v: &str| vec![Op::Put("/p/k".into(), v.as_bytes().to_vec(), 0)];
    let (ok, h1) = client
        .txn("/p/k", Compare::Absent, &put("1"))
        .await
        .expect("txn");
    assert!(ok, "created");
    let (ok, _) = client
        .txn("/p/k", Compare::Absent, &put("2"))
        .await
        .expect("txn");
    assert!(!ok, "a second create loses");
    let (ok, h2) = client
        .txn("/p/k", Compare::ModRevision(h1.revision), &put("3"))
        .await
        .expect("txn");
    assert!(ok, "a replace of what was read");
    let (ok, _) = client
        .txn("/p/k", Compare::ModRevision(h1.revision), &put("4"))
        .await
        .expect("txn");
    assert!(!ok, "a replace of a stale read loses");
    let (_, kv) = client.get("/p/k").await.expect("get");
    let kv = kv.expect("the key");
    assert_eq!((&kv.value[..], kv.mod_revision), (&b"3"[..], h2.revision));

    // More keys than one page (1000), written while the read goes on page
    // by page: one revision's view, every key once.
    let n = 1234;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|i| Op::Put(format!("/big/{i:05}"), b"v".to_vec(), 0))
            .collect();
        let (ok, _) = client
            .txn("/none", Compare::Absent, &ops)
            .await
            .expect("bulk put");
        assert!(ok);
    }
    let (h, kvs) = client.range_prefix("/big/").await.expect("range");
    assert_eq!(kvs.len(), n);
    let keys: std::collections::BTreeSet<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys.len(), n, "no key twice");
    assert!(kvs.iter().all(|k| k.mod_revision <= h.revision));
}

#[tokio::test]
async fn a_custom_prefix_is_read_and_written() {
    let etcd = EtcdServer::start().await;
    let backend = Backend::start("prefixed").await;
    let route = |uri: &str| json!({"uri": uri, "upstream": {"nodes": {backend.node(): 1}}});
    etcd.put("/weir/routes/1", &route("/one").to_string()).await;
    etcd.put("/apisix/routes/2", &route("/other-prefix").to_string())
        .await;
    let yaml = admin_kit::etcd_file(&[etcd.url()])
        .replace("    timeout: 2\n", "    timeout: 2\n    prefix: /weir\n");
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("gateway start");
    assert!(gw.wait_ready(Duration::from_secs(10)).await);
    let r = common::get(gw.proxy_addr(), None, "/one").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = common::get(gw.proxy_addr(), None, "/other-prefix").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another prefix is not read"
    );
    let admin = admin_kit::Admin::new(gw.admin_addr().expect("admin"));
    let p = admin.put("/apisix/admin/routes/3", route("/three")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    assert_eq!(p.json["key"], json!("/apisix/routes/3"));
    assert!(etcd.get("/weir/routes/3").await.is_some());
    assert!(etcd.get("/apisix/routes/3").await.is_none());
    gw.shutdown().await;
}

/// Warm start with etcd: a weir that restarts while etcd is unreachable
/// serves the configuration it installed last (saved in
/// `gateway.state_dir`), is ready, and says it is stale until etcd answers.
#[tokio::test]
async fn restart_with_etcd_down_serves_the_saved_configuration() {
    let etcd = EtcdServer::start().await;
    let relay = Relay::start(etcd.addr()).await;
    let backend = Backend::start("warm").await;
    let state = tempfile::tempdir().expect("state dir");
    // `gateway.state_dir` added to the etcd test file's gateway block.
    let file = admin_kit::etcd_file(&[relay.url()]).replacen(
        "  access_log: {enabled: false}\n",
        &format!(
            "  access_log: {{enabled: false}}\n  state_dir: {:?}\n",
            state.path().display().to_string()
        ),
        1,
    );
    assert!(file.contains("state_dir"), "{file}");
    etcd.put(
        "/apisix/routes/w",
        &json!({"uri": "/warm", "upstream": {"nodes": {backend.node(): 1}}}).to_string(),
    )
    .await;

    let gw = weir::Gateway::start(common::config(&file))
        .await
        .expect("gateway start");
    assert!(gw.wait_ready(Duration::from_secs(10)).await, "etcd read");
    wait_proxy(gw.proxy_addr(), "/warm", "route from etcd", |s, _| {
        s == StatusCode::OK
    })
    .await;
    // The installed configuration reaches the state directory.
    let saved = state.path().join("config.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("/warm")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "config.json with /warm not written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.shutdown().await;

    // etcd unreachable: the restarted gateway is ready on the saved state.
    relay.cut();
    let gw = weir::Gateway::start(common::config(&file))
        .await
        .expect("starts without etcd");
    let ready = control(&gw, "/status/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let r = common::get(gw.proxy_addr(), None, "/warm").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value =
        serde_json::from_str(&control(&gw, "/v1/config_source").await.body).expect("json");
    assert!(
        v["stale"]
            .as_str()
            .is_some_and(|s| s.contains("warm start")),
        "{v}"
    );
    // The saved file was not overwritten by what served before etcd was read.
    assert!(std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("/warm")));

    // etcd answers: its state replaces the saved one and stale clears.
    etcd.delete("/apisix/routes/w").await;
    relay.restore();
    wait_source(&gw, "stale cleared", |v| {
        v["stale"].is_null() && v["connected"] == true
    })
    .await;
    wait_proxy(gw.proxy_addr(), "/warm", "route deleted in etcd", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    gw.shutdown().await;
}
