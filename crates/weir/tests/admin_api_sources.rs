//! The Admin API and the configuration file side by side: the file's
//! resources are listed and read-only, a file reload keeps what the Admin
//! API wrote, no state file means a read-only Admin API, no key means no
//! Admin API; list filters and paging; the `deployment` settings' errors;
//! concurrent writers; APISIX's resources weir does not have.

mod admin_kit;
mod common;

use admin_kit::{start, wait_proxy, Admin, EMPTY, KEY};
use common::Backend;
use http::StatusCode;
use serde_json::json;

fn file_with(backend: &Backend, route_uri: &str) -> String {
    format!(
        "gateway:\n  listeners: [{{address: \"127.0.0.1:0\"}}]\nupstreams:\n  - {{id: fu, nodes: {{\"{}\": 1}}}}\nroutes:\n  - {{id: f1, uri: \"{route_uri}\", upstream_id: fu}}\n",
        backend.node()
    )
}

#[tokio::test]
async fn the_files_resources_are_listed_read_only_and_usable_by_admin_resources() {
    let backend = Backend::start("file-node").await;
    let s = start(&file_with(&backend, "/file")).await;
    let a = &s.admin;
    let l = a.get("/apisix/admin/routes").await;
    assert_eq!(l.json["total"], 1, "{}", l.text);
    assert_eq!(l.json["list"][0]["key"], "/apisix/routes/f1");
    assert_eq!(l.json["list"][0]["value"]["uri"], "/file");
    assert_eq!(l.json["list"][0]["createdIndex"], 0);
    let g = a.get("/apisix/admin/upstreams/fu").await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);

    let body = json!({"uri": "/x", "upstream_id": "fu"});
    let expected = json!({"error_msg": "route \"f1\" is defined in the configuration file and is read-only to the Admin API"});
    for method in ["PUT", "PATCH", "DELETE"] {
        let r = a
            .call(method, "/apisix/admin/routes/f1", Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, &r.json),
            (StatusCode::BAD_REQUEST, &expected),
            "{method}"
        );
    }
    let r = a.delete("/apisix/admin/upstreams/fu").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // An Admin API route may use the file's upstream.
    a.put_ok(
        "/apisix/admin/routes/a1",
        json!({"uri": "/admin", "upstream_id": "fu"}),
    )
    .await;
    let r = wait_proxy(s.proxy(), "/admin", "the admin route", |st, _| {
        st == StatusCode::OK
    })
    .await;
    assert_eq!(r.backend(), "file-node");
    assert_eq!(
        common::get(s.proxy(), None, "/file").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reload_of_the_file_keeps_what_the_admin_api_wrote() {
    let backend = Backend::start("n").await;
    let s = start(&file_with(&backend, "/file")).await;
    s.admin
        .put_ok(
            "/apisix/admin/routes/a1",
            json!({"uri": "/admin", "upstream_id": "fu"}),
        )
        .await;
    wait_proxy(s.proxy(), "/admin", "the admin route", |st, _| {
        st == StatusCode::OK
    })
    .await;

    // The file changes its route; the reload keeps the Admin API's.
    let path = s.dir.path().join("weir.yaml");
    let yaml = format!(
        "{}\n{}",
        file_with(&backend, "/file-v2"),
        admin_kit::deployment(Some(&s.state_file()))
    );
    std::fs::write(&path, &yaml).expect("write");
    let path = path.to_str().expect("utf-8");
    // Restart-only settings that differ (the control API's address) are
    // warned about, not an error.
    s.gw.core.reload_file(path).await.expect("reload accepted");
    wait_proxy(s.proxy(), "/file-v2", "the file's new route", |st, _| {
        st == StatusCode::OK
    })
    .await;
    assert_eq!(
        common::get(s.proxy(), None, "/admin").await.status,
        StatusCode::OK,
        "the Admin API's route survives the reload"
    );
    let l = s.admin.get("/apisix/admin/routes").await;
    let keys: Vec<&str> = l.json["list"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, ["/apisix/routes/a1", "/apisix/routes/f1"]);

    // A file that takes an id the Admin API owns is refused; nothing changes.
    let clash = yaml
        .replace("id: f1", "id: a1")
        .replace("/file-v2", "/clash");
    std::fs::write(path, clash).expect("write");
    let e = s.gw.core.reload_file(path).await.expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("routes[0]") && msg.contains("/apisix/routes/a1"),
        "{msg}"
    );
    assert_eq!(
        common::get(s.proxy(), None, "/admin").await.status,
        StatusCode::OK
    );
    assert_eq!(
        common::get(s.proxy(), None, "/clash").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_a_state_file_the_admin_api_reads_but_does_not_write() {
    let yaml = format!("{EMPTY}{}", admin_kit::deployment(None));
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("start");
    let a = Admin::new(gw.admin_addr().expect("the Admin API runs read-only"));
    assert_eq!(
        a.get("/apisix/admin/routes").await.json,
        json!({"total": 0, "list": []})
    );
    let r = a
        .put(
            "/apisix/admin/upstreams/u",
            json!({"nodes": {"127.0.0.1:1": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let msg = r.json["error_msg"].as_str().expect("error_msg");
    assert!(
        msg.contains("read-only") && msg.contains("deployment.admin.state_file"),
        "{msg}"
    );
}

#[tokio::test]
async fn without_a_key_the_admin_api_does_not_start() {
    let yaml =
        format!("{EMPTY}deployment:\n  admin:\n    admin_listen: {{ip: 127.0.0.1, port: 0}}\n");
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("start");
    assert_eq!(gw.admin_addr(), None);
    let gw = common::gateway(EMPTY).await;
    assert_eq!(gw.admin_addr(), None, "nor by default");
}

#[tokio::test]
async fn deployment_settings_are_validated_and_keys_never_shown() {
    let load = |yaml: &str| weir_config::load_str(yaml, "weir.yaml");
    let sample = "deployment:\n  admin:\n    admin_key: [{name: old, key: edd1c9f034335f136f87ad84b625c8f1}]\n";
    let e = load(sample)
        .expect_err("the published sample key is refused")
        .to_string();
    assert!(e.contains("deployment.admin.admin_key[0].key"), "{e}");
    assert!(
        !e.contains("edd1c9f034335f136f87ad84b625c8f1"),
        "the key is not repeated: {e}"
    );
    let etcd = "deployment:\n  role_traditional: {config_provider: etcd}\n  etcd: {host: [\"127.0.0.1:2379\", \"http://e:2379/v3\"], prefix: apisix/, timeout: 0, password: s3cr3t-pw, tls: {sni: \"a b\", cert: c.pem}}\n";
    let e = load(etcd).expect_err("bad etcd settings").to_string();
    for field in [
        "deployment.etcd.host[0]",
        "deployment.etcd.host[1]",
        "deployment.etcd.prefix",
        "deployment.etcd.timeout",
        "deployment.etcd.password",
        "deployment.etcd.tls.sni",
        "deployment.etcd.tls:",
    ] {
        assert!(e.contains(field), "{field}: {e}");
    }
    assert!(
        !e.contains("s3cr3t-pw"),
        "the password is not repeated: {e}"
    );
    let good = "deployment:\n  role_traditional: {config_provider: etcd}\n  etcd: {host: [\"http://127.0.0.1:2379\"], user: root, password: s3cr3t-pw}\n";
    let c = load(good).expect("etcd settings");
    let shown = format!("{} {c:?}", serde_json::to_string(&c).expect("dump"));
    assert!(
        shown.contains("root") && !shown.contains("s3cr3t-pw"),
        "the password is never shown: {shown}"
    );
    let e = load("deployment:\n  admin:\n    admin_key: [{key: [1]}]\n")
        .expect_err("bad")
        .to_string();
    assert!(e.contains("deployment.admin.admin_key[0].key"), "{e}");
    let e = load("deployment:\n  admin:\n    allow_admin: []\n")
        .expect_err("empty")
        .to_string();
    assert!(e.contains("deployment.admin.allow_admin"), "{e}");
    let e = load("deployment:\n  admin:\n    admin_listen: {ip: localhost}\n")
        .expect_err("ip")
        .to_string();
    assert!(e.contains("deployment.admin.admin_listen.ip"), "{e}");

    let config = load(&format!("{EMPTY}{}", admin_kit::deployment(None))).expect("valid");
    assert_eq!(config.deployment.admin.admin_key.len(), 2);
    assert_eq!(
        config.deployment.admin.admin_listen.address(),
        "127.0.0.1:0"
    );
    let debug = format!("{config:?}");
    assert!(
        !debug.contains(KEY) && debug.contains("<redacted>"),
        "{debug}"
    );
    let dumped = serde_json::to_string(&config).expect("serializes");
    assert!(!dumped.contains(KEY), "{dumped}");

    // And the control API's dump of the live configuration does not show it.
    let gw = weir::Gateway::start(common::config(&format!(
        "{EMPTY}{}",
        admin_kit::deployment(None)
    )))
    .await
    .expect("start");
    let control = gw.control_addr().expect("control API");
    for path in ["/v1/routes", "/v1/reload", "/v1/upstreams"] {
        let r = common::get(control, None, path).await;
        assert!(!r.body.contains(KEY), "{path}: {}", r.body);
    }
}

#[tokio::test]
async fn lists_filter_by_name_label_uri_and_field_and_page_by_created_index() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    a.put_ok(
        "/apisix/admin/upstreams/u",
        json!({"nodes": {"127.0.0.1:1980": 1}}),
    )
    .await;
    a.put_ok("/apisix/admin/services/s", json!({"upstream_id": "u"}))
        .await;
    // Written in reverse key order, so paging (by createdIndex) differs
    // from the list's key order.
    for i in (0..12).rev() {
        let mut body =
            json!({"uri": format!("/r/{i}"), "name": format!("route-{i}"), "upstream_id": "u"});
        if i % 2 == 0 {
            body["labels"] = json!({"even": "yes"});
        }
        if i == 3 {
            body = json!({"uris": ["/three", "/tres"], "name": "third", "service_id": "s"});
        }
        a.put_ok(&format!("/apisix/admin/routes/r{i:02}"), body)
            .await;
    }
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["list"]
            .as_array()
            .expect("list")
            .iter()
            .map(|i| i["value"]["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let all = a.get("/apisix/admin/routes").await;
    assert_eq!(all.json["total"], 12);
    assert_eq!(ids(&all.json)[0], "r00", "key order");
    let r = a.get("/apisix/admin/routes?name=route-1").await;
    assert_eq!(ids(&r.json), ["r01", "r10", "r11"]);
    assert_eq!(r.json["total"], 3);
    let r = a.get("/apisix/admin/routes?label=even").await;
    assert_eq!(r.json["total"], 6);
    let r = a.get("/apisix/admin/routes?uri=%5E%2Ftr").await;
    assert_eq!(ids(&r.json), ["r03"], "uris are searched too");
    let r = a.get("/apisix/admin/routes?filter=service_id%3Ds").await;
    assert_eq!(ids(&r.json), ["r03"]);
    let r = a.get("/apisix/admin/routes?page=2&page_size=10").await;
    assert_eq!(r.json["total"], 12, "total before paging");
    assert_eq!(ids(&r.json), ["r01", "r00"], "page 2 by createdIndex");
    let r = a.get("/apisix/admin/routes?page=1&page_size=5").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = a.get("/apisix/admin/routes?name=(").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let creds = a.get("/apisix/admin/consumers/nobody/credentials").await;
    assert_eq!(creds.status, StatusCode::NOT_FOUND);
    a.put_ok("/apisix/admin/consumers/ann", json!({"username": "ann"}))
        .await;
    a.put_ok(
        "/apisix/admin/consumers/ann/credentials/k",
        json!({"plugins": {"key-auth": {"key": "ann-k"}}}),
    )
    .await;
    let creds = a.get("/apisix/admin/consumers/ann/credentials").await;
    assert_eq!(creds.json["total"], 1, "{}", creds.text);
    assert_eq!(
        creds.json["list"][0]["key"],
        "/apisix/consumers/ann/credentials/k"
    );
    let consumers = a.get("/apisix/admin/consumers").await;
    assert_eq!(
        consumers.json["total"], 1,
        "credentials are not consumers: {}",
        consumers.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_one_route_lose_no_update() {
    let s = start(EMPTY).await;
    let a = s.admin.clone();
    a.put_ok(
        "/apisix/admin/routes/shared",
        json!({"uri": "/s", "upstream": {"nodes": {"127.0.0.1:1980": 1}}}),
    )
    .await;
    let mut clients = Vec::new();
    for c in 0..8 {
        let a = a.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..5 {
                let body = json!({"labels": {format!("c{c}-{i}"): "set"}});
                let r = a
                    .call("PATCH", "/apisix/admin/routes/shared", Some(body))
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    let g = a.get("/apisix/admin/routes/shared").await;
    let labels = g.json["value"]["labels"].as_object().expect("labels");
    assert_eq!(labels.len(), 40, "every PATCH kept: {}", g.text);
    assert_eq!(
        g.json["modifiedIndex"].as_u64(),
        g.json["createdIndex"].as_u64().map(|i| i + 40)
    );
}

/// `stream_routes`, `protos` and `secrets` exist in APISIX, not in weir:
/// every method answers 400 saying so (as an APISIX with its stream mode
/// off answers for `stream_routes`), never a 404 or an empty list that
/// would look like "nothing configured yet".
#[tokio::test]
async fn resources_weir_does_not_have_say_so() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    for (res, why) in [
        ("stream_routes", "stream (TCP/UDP) proxy"),
        ("protos", "grpc-transcode"),
        ("secrets", "secret managers"),
    ] {
        let calls = [
            ("GET", format!("/apisix/admin/{res}"), None),
            ("GET", format!("/apisix/admin/{res}/1"), None),
            ("PUT", format!("/apisix/admin/{res}/1"), Some(json!({}))),
            ("POST", format!("/apisix/admin/{res}"), Some(json!({}))),
            ("PATCH", format!("/apisix/admin/{res}/1"), Some(json!({}))),
            ("DELETE", format!("/apisix/admin/{res}/1"), None),
            ("GET", format!("/apisix/admin/{res}/vault/1"), None),
            (
                "POST",
                format!("/apisix/admin/schema/validate/{res}"),
                Some(json!({})),
            ),
        ];
        for (method, path, body) in calls {
            let r = a.call(method, &path, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}");
            let msg = r.json["error_msg"].as_str().unwrap_or_default();
            assert!(
                msg.starts_with(&format!("weir does not support {res}")) && msg.contains(why),
                "{method} {path}: {}",
                r.text
            );
        }
    }
    // A viewer gets the same answer, and an unknown name is still APISIX's.
    let v = a
        .call_with(
            "GET",
            "/apisix/admin/stream_routes",
            None,
            &[("x-api-key", admin_kit::VIEWER)],
        )
        .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST, "{}", v.text);
    let u = a.get("/apisix/admin/stream_route").await;
    assert_eq!(u.status, StatusCode::NOT_FOUND, "{}", u.text);
    s.gw.shutdown().await;
}
