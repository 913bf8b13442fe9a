//! The Admin API over real sockets: every resource's round trip with
//! APISIX's codes and envelopes, a change live on the proxy, validation
//! errors with field paths, authentication, references that block a
//! delete, and PATCH.

mod admin_kit;
mod common;

use admin_kit::{start, wait_proxy, Admin, EMPTY, KEY, VIEWER};
use common::Backend;
use http::StatusCode;
use serde_json::{json, Value};

fn assert_envelope_headers(a: &admin_kit::Answer) {
    assert_eq!(a.headers["content-type"], "application/json", "{a:?}");
    assert_eq!(a.headers["x-api-version"], "v3", "{a:?}");
}

/// PUT (201), GET, PUT again (200), list, DELETE (200), GET (404), each
/// with APISIX's body. `collection` is the path below `/apisix/admin`.
async fn round_trip(admin: &Admin, collection: &str, id: &str, create: Value, replace: Value) {
    let path = format!("/apisix/admin/{collection}/{id}");
    let key = format!("/apisix/{collection}/{id}");

    let a = admin.put(&path, create.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "PUT {path}: {}", a.text);
    assert_envelope_headers(&a);
    assert_eq!(a.json["key"], key, "{}", a.text);
    let obj = a.json.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "PUT answers {{key, value}}: {}", a.text);
    for (k, v) in create.as_object().expect("object body") {
        assert_eq!(&a.json["value"][k], v, "{path}: field {k} as written");
    }
    let created = a.json["value"]["create_time"]
        .as_u64()
        .expect("create_time");
    assert!(a.json["value"]["update_time"].is_u64(), "{}", a.text);

    let g = admin.get(&path).await;
    assert_eq!(g.status, StatusCode::OK, "GET {path}: {}", g.text);
    assert_envelope_headers(&g);
    let mut fields: Vec<&str> = g
        .json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["createdIndex", "key", "modifiedIndex", "value"],
        "{}",
        g.text
    );
    assert_eq!(g.json["key"], key);
    assert_eq!(g.json["value"], a.json["value"]);
    let first_index = g.json["createdIndex"].as_u64().expect("createdIndex");
    assert_eq!(g.json["modifiedIndex"].as_u64(), Some(first_index));

    let r = admin.put(&path, replace.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "PUT {path} again replaces: {}",
        r.text
    );
    for (k, v) in replace.as_object().expect("object body") {
        assert_eq!(&r.json["value"][k], v, "{path}: field {k} replaced");
    }
    assert_eq!(
        r.json["value"]["create_time"].as_u64(),
        Some(created),
        "create_time kept"
    );
    let g = admin.get(&path).await;
    assert_eq!(g.json["createdIndex"].as_u64(), Some(first_index));
    assert!(
        g.json["modifiedIndex"].as_u64().expect("modifiedIndex") > first_index,
        "{}",
        g.text
    );

    let collection_path = format!("/apisix/admin/{collection}");
    let l = admin.get(&collection_path).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    let list = l.json["list"].as_array().expect("list");
    assert_eq!(
        l.json["total"].as_u64(),
        Some(list.len() as u64),
        "{}",
        l.text
    );
    let item = list.iter().find(|i| i["key"] == key).expect("listed");
    assert_eq!(item["value"], g.json["value"]);
    assert_eq!(item["modifiedIndex"], g.json["modifiedIndex"]);

    let d = admin.delete(&path).await;
    assert_eq!(d.status, StatusCode::OK, "DELETE {path}: {}", d.text);
    assert_eq!(d.json, json!({"deleted": "1", "key": key}));
    let g = admin.get(&path).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.json, json!({"message": "Key not found"}));
    let d = admin.delete(&path).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND, "{}", d.text);
}

#[tokio::test]
async fn every_resource_round_trips_with_apisix_codes_and_envelopes() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    let node = json!({"127.0.0.1:1980": 1});
    round_trip(
        a,
        "upstreams",
        "u1",
        json!({"nodes": node, "type": "roundrobin"}),
        json!({"nodes": {"127.0.0.1:1981": 2}, "type": "chash", "key": "remote_addr"}),
    )
    .await;
    a.put_ok("/apisix/admin/upstreams/up", json!({"nodes": node}))
        .await;
    round_trip(
        a,
        "services",
        "s1",
        json!({"upstream_id": "up", "name": "svc"}),
        json!({"upstream": {"nodes": node}, "desc": "inline"}),
    )
    .await;
    round_trip(
        a,
        "routes",
        "r1",
        json!({"uri": "/a", "upstream_id": "up", "methods": ["GET"]}),
        json!({"uris": ["/b", "/c/*"], "upstream": {"nodes": node}, "name": "r"}),
    )
    .await;
    round_trip(
        a,
        "consumer_groups",
        "g1",
        json!({"plugins": {}}),
        json!({"plugins": {"request-id": {"header_name": "X-G"}}, "desc": "gold"}),
    )
    .await;
    round_trip(
        a,
        "consumers",
        "jack",
        json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-k"}}}),
        json!({"username": "jack", "desc": "d"}),
    )
    .await;
    a.put_ok("/apisix/admin/consumers/jill", json!({"username": "jill"}))
        .await;
    round_trip(
        a,
        "consumers/jill/credentials",
        "c1",
        json!({"plugins": {"key-auth": {"key": "jill-k"}}}),
        json!({"plugins": {"key-auth": {"key": "jill-k2"}}, "desc": "rotated"}),
    )
    .await;
    round_trip(
        a,
        "plugin_configs",
        "pc1",
        json!({"plugins": {"request-id": {"header_name": "X-P"}}}),
        json!({"plugins": {}, "desc": "none"}),
    )
    .await;
    round_trip(
        a,
        "global_rules",
        "gr1",
        json!({"plugins": {"request-id": {"header_name": "X-Gl"}}}),
        json!({"plugins": {}}),
    )
    .await;
    round_trip(
        a,
        "plugin_metadata",
        "limit-count",
        json!({"limit_header": "X-Quota"}),
        json!({"limit_header": "X-Quota-2"}),
    )
    .await;

    // ssls: the private key is never returned.
    let (cert, key) = admin_kit::cert("a.example.com");
    let (cert2, key2) = admin_kit::cert("b.example.com");
    let path = "/apisix/admin/ssls/t1";
    let w = a
        .put(
            path,
            json!({"cert": cert, "key": key, "snis": ["a.example.com"]}),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED, "{}", w.text);
    assert!(
        w.json["value"].get("key").is_none(),
        "PUT answer without the key: {}",
        w.text
    );
    assert!(!w.text.contains("PRIVATE KEY"), "{}", w.text);
    let g = a.get(path).await;
    assert_eq!(g.json["value"]["cert"], json!(cert));
    assert!(
        g.json["value"].get("key").is_none() && !g.text.contains("PRIVATE KEY"),
        "{}",
        g.text
    );
    let l = a.get("/apisix/admin/ssls").await;
    assert!(
        !l.text.contains("PRIVATE KEY") && l.json["total"] == 1,
        "{}",
        l.text
    );
    let r = a
        .put(
            path,
            json!({"cert": cert2, "key": key2, "snis": ["b.example.com"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(a.delete(path).await.status, StatusCode::OK);

    // POST: a generated 20-digit id, 201; refused (405) where APISIX refuses it.
    for (collection, body) in [
        ("routes", json!({"uri": "/p", "upstream_id": "up"})),
        ("services", json!({"upstream_id": "up"})),
        ("upstreams", json!({"nodes": node})),
    ] {
        let p = a
            .call("POST", &format!("/apisix/admin/{collection}"), Some(body))
            .await;
        assert_eq!(
            p.status,
            StatusCode::CREATED,
            "POST {collection}: {}",
            p.text
        );
        let id = p.json["value"]["id"]
            .as_str()
            .expect("generated id")
            .to_owned();
        assert!(
            id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        assert_eq!(p.json["key"], format!("/apisix/{collection}/{id}"));
        assert_eq!(
            a.get(&format!("/apisix/admin/{collection}/{id}"))
                .await
                .status,
            StatusCode::OK
        );
    }
    let p = a
        .call(
            "POST",
            "/apisix/admin/consumers",
            Some(json!({"username": "x"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        p.json,
        json!({"error_msg": "not supported `POST` method for consumer"})
    );
    let p = a
        .call(
            "POST",
            "/apisix/admin/routes/9",
            Some(json!({"uri": "/x", "upstream_id": "up"})),
        )
        .await;
    assert_eq!(
        p.json,
        json!({"error_msg": "wrong route id, do not need it"}),
        "{}",
        p.text
    );

    // Deleting a consumer deletes its credentials.
    a.put_ok(
        "/apisix/admin/consumers/jill/credentials/c2",
        json!({"plugins": {"key-auth": {"key": "jill-k3"}}}),
    )
    .await;
    assert_eq!(
        a.delete("/apisix/admin/consumers/jill").await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.get("/apisix/admin/consumers/jill/credentials/c2")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Unknown resources and the plugin list.
    let u = a.get("/apisix/admin/routs").await;
    assert_eq!(u.status, StatusCode::NOT_FOUND);
    assert_eq!(
        u.json,
        json!({"error_msg": "Unsupported resource type: routs"})
    );
    let p = a.get("/apisix/admin/plugins/list").await;
    assert_eq!(p.status, StatusCode::OK);
    let names: Vec<&str> = p
        .json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"key-auth") && names.contains(&"limit-count"),
        "{names:?}"
    );
    let pos = |n: &str| names.iter().position(|x| *x == n).expect("listed");
    // APISIX's priorities: key-auth 2500 runs before limit-count 1002.
    assert!(pos("key-auth") < pos("limit-count"), "{names:?}");
}

#[tokio::test]
async fn a_route_created_through_the_admin_api_is_live_on_the_proxy_without_touching_connections() {
    let backend = Backend::start("from-admin").await;
    let s = start(EMPTY).await;
    let proxy = s.proxy();
    // A keep-alive connection opened before the change.
    let tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let (mut conn, driver) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(driver);
    let send = |conn: &mut hyper::client::conn::http1::SendRequest<
        http_body_util::Empty<bytes::Bytes>,
    >,
                path: &str| {
        let req = http::Request::get(path)
            .header("host", "x")
            .body(http_body_util::Empty::new())
            .expect("request");
        conn.send_request(req)
    };
    assert_eq!(
        send(&mut conn, "/live").await.expect("before").status(),
        StatusCode::NOT_FOUND
    );

    s.admin
        .put_ok(
            "/apisix/admin/upstreams/u",
            json!({"nodes": {backend.node(): 1}}),
        )
        .await;
    s.admin
        .put_ok(
            "/apisix/admin/routes/live",
            json!({"uri": "/live", "upstream_id": "u"}),
        )
        .await;
    wait_proxy(proxy, "/live", "the new route", |st, _| {
        st == StatusCode::OK
    })
    .await;
    let r = send(&mut conn, "/live")
        .await
        .expect("the same connection still serves");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-backend"], "from-admin");

    assert_eq!(
        s.admin.delete("/apisix/admin/routes/live").await.status,
        StatusCode::OK
    );
    wait_proxy(proxy, "/live", "the deleted route gone", |st, _| {
        st == StatusCode::NOT_FOUND
    })
    .await;
    assert_eq!(
        send(&mut conn, "/live").await.expect("after").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invalid_resources_get_400_naming_the_field_path_and_change_nothing() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    let node = json!({"127.0.0.1:1980": 1});
    let cases = [
        (
            json!({"uri": "/a", "methods": ["GET", "FETCH"], "upstream": {"nodes": node}}),
            "methods[1]: unknown method \"FETCH\"",
        ),
        (
            json!({"uri": "/a", "upstream_id": "nope"}),
            "upstream_id: no upstream with id \"nope\"",
        ),
        (
            json!({"uri": "/a", "upstream": {"nodes": {"127.0.0.1:80x": 1}}}),
            "upstream.nodes",
        ),
        (
            json!({"uri": "/a", "upstream": {"nodes": node}, "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"uri": "a", "upstream": {"nodes": node}}),
            "uri: \"a\" must start with /",
        ),
        (
            json!({"uri": "/a", "upstream": {"nodes": node}, "plugins": {"limit-count": {"count": "ten", "time_window": 60}}}),
            "plugins.limit-count",
        ),
        (
            json!({"uri": "/a", "upstream": {"nodes": node}, "plugins": {"no-such-plugin": {}}}),
            "no-such-plugin",
        ),
    ];
    for (body, expected) in cases {
        let r = a.put("/apisix/admin/routes/bad", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_envelope_headers(&r);
        let msg = r.json["error_msg"]
            .as_str()
            .unwrap_or_else(|| panic!("error_msg: {}", r.text));
        assert!(msg.starts_with("invalid configuration: "), "{msg}");
        assert!(
            msg.contains(expected),
            "{body}: expected {expected:?} in {msg:?}"
        );
    }
    assert_eq!(
        a.get("/apisix/admin/routes/bad").await.status,
        StatusCode::NOT_FOUND,
        "nothing was kept"
    );
    let r = a
        .put(
            "/apisix/admin/routes/x",
            json!({"uri": "/a", "upstream": {"nodes": node}, "create_time": 1}),
        )
        .await;
    assert_eq!(
        r.json,
        json!({"error_msg": "the property is forbidden:  create_time"})
    );
    let r = a
        .put(
            "/apisix/admin/routes/x",
            json!({"id": "y", "uri": "/a", "upstream": {"nodes": node}}),
        )
        .await;
    assert_eq!(r.json, json!({"error_msg": "wrong route id"}));
    let r = a
        .put(
            "/apisix/admin/routes",
            json!({"uri": "/a", "upstream": {"nodes": node}}),
        )
        .await;
    assert_eq!(r.json, json!({"error_msg": "missing route id"}));
    let r = a
        .call_with(
            "PUT",
            "/apisix/admin/routes/x",
            None,
            &[("x-api-key", KEY), ("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.json, json!({"error_msg": "missing configurations"}));
    let r = a
        .put(
            "/apisix/admin/consumers/nobody/credentials/c",
            json!({"plugins": {"key-auth": {"key": "k"}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json),
        (
            StatusCode::NOT_FOUND,
            json!({"error_msg": "consumer not found"})
        )
    );
    let r = a
        .put("/apisix/admin/plugin_metadata/no-such-plugin", json!({}))
        .await;
    assert_eq!(r.json, json!({"error_msg": "invalid plugin name"}));
    // The schema endpoint checks without keeping anything.
    let v = a
        .call(
            "POST",
            "/apisix/admin/schema/validate/routes",
            Some(json!({"uri": "/a", "methods": ["NOPE"], "upstream": {"nodes": node}})),
        )
        .await;
    assert_eq!(v.status, StatusCode::BAD_REQUEST, "{}", v.text);
    assert!(
        v.json["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("methods[0]")),
        "{}",
        v.text
    );
    let v = a
        .call(
            "POST",
            "/apisix/admin/schema/validate/routes",
            Some(json!({"uri": "/a", "upstream": {"nodes": node}})),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text);
    assert_eq!(a.get("/apisix/admin/routes").await.json["total"], 0);
}

#[tokio::test]
async fn keys_roles_and_client_addresses_are_checked_as_apisix_does() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    let r = a.call_with("GET", "/apisix/admin/routes", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json,
        json!({"error_msg": "failed to check token", "description": "missing apikey"})
    );
    let r = a
        .call_with(
            "GET",
            "/apisix/admin/routes",
            None,
            &[("x-api-key", "guess")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json,
        json!({"error_msg": "failed to check token", "description": "wrong apikey"})
    );
    // The key as an argument or a cookie.
    let r = a
        .call_with(
            "GET",
            &format!("/apisix/admin/routes?api_key={KEY}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cookie = format!("a=1; x_api_key={KEY}");
    let r = a
        .call_with("GET", "/apisix/admin/routes", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A viewer reads but does not write.
    let r = a
        .call_with(
            "GET",
            "/apisix/admin/routes",
            None,
            &[("x-api-key", VIEWER)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = json!({"uri": "/v", "upstream": {"nodes": {"127.0.0.1:1980": 1}}});
    for method in ["PUT", "PATCH", "DELETE", "POST"] {
        let r = a
            .call_with(
                method,
                "/apisix/admin/routes/v",
                Some(body.clone()),
                &[("x-api-key", VIEWER)],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(r.json["description"], "invalid method for role viewer");
    }
    assert_eq!(
        a.get("/apisix/admin/routes/v").await.status,
        StatusCode::NOT_FOUND
    );

    // A client outside allow_admin is refused whatever its key.
    let dir = tempfile::tempdir().expect("dir");
    let yaml = format!(
        "{EMPTY}{}    allow_admin: [10.0.0.0/8]\n",
        admin_kit::deployment(Some(&dir.path().join("s.json")))
    );
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("start");
    let far = Admin::new(gw.admin_addr().expect("admin"));
    let r = far.get("/apisix/admin/routes").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.json["error_msg"]
        .as_str()
        .is_some_and(|m| m.contains("allow_admin")));
}

#[tokio::test]
async fn a_resource_still_in_use_is_not_deleted_unless_forced() {
    let backend = Backend::start("b").await;
    let s = start(EMPTY).await;
    let a = &s.admin;
    a.put_ok(
        "/apisix/admin/upstreams/u1",
        json!({"nodes": {backend.node(): 1}}),
    )
    .await;
    a.put_ok("/apisix/admin/services/s1", json!({"upstream_id": "u1"}))
        .await;
    a.put_ok("/apisix/admin/plugin_configs/pc1", json!({"plugins": {}}))
        .await;
    a.put_ok("/apisix/admin/consumer_groups/g1", json!({"plugins": {}}))
        .await;
    a.put_ok(
        "/apisix/admin/consumers/ann",
        json!({"username": "ann", "group_id": "g1"}),
    )
    .await;
    a.put_ok(
        "/apisix/admin/routes/r1",
        json!({"uri": "/r1", "upstream_id": "u1", "plugin_config_id": "pc1"}),
    )
    .await;
    a.put_ok(
        "/apisix/admin/routes/r2",
        json!({"uri": "/r2", "service_id": "s1"}),
    )
    .await;
    wait_proxy(s.proxy(), "/r1", "route r1", |st, _| st == StatusCode::OK).await;

    for (path, msg) in [
        (
            "/apisix/admin/upstreams/u1",
            "can not delete this upstream, route [r1] is still using it now",
        ),
        (
            "/apisix/admin/services/s1",
            "can not delete this service directly, route [r2] is still using it now",
        ),
        (
            "/apisix/admin/plugin_configs/pc1",
            "can not delete this plugin config, route [r1] is still using it now",
        ),
        (
            "/apisix/admin/consumer_groups/g1",
            "can not delete this consumer group, consumer [ann] is still using it now",
        ),
    ] {
        let r = a.delete(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert_eq!(r.json, json!({"error_msg": msg}));
        assert_eq!(a.get(path).await.status, StatusCode::OK, "{path} kept");
    }

    // Forced: gone; the route that used it stays stored but is not served.
    let r = a.delete("/apisix/admin/upstreams/u1?force=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        a.get("/apisix/admin/upstreams/u1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.get("/apisix/admin/routes/r1").await.status,
        StatusCode::OK
    );
    wait_proxy(s.proxy(), "/r1", "route r1 left out", |st, _| {
        st == StatusCode::NOT_FOUND
    })
    .await;
    // Writes of other resources still go through, and the upstream back
    // brings the route back.
    a.put_ok(
        "/apisix/admin/upstreams/u1",
        json!({"nodes": {backend.node(): 1}}),
    )
    .await;
    wait_proxy(s.proxy(), "/r1", "route r1 served again", |st, _| {
        st == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn patch_merges_objects_replaces_arrays_deletes_nulls_and_takes_sub_paths() {
    let s = start(EMPTY).await;
    let a = &s.admin;
    let node = json!({"127.0.0.1:1980": 1});
    a.put_ok(
        "/apisix/admin/routes/p",
        json!({"uri": "/p", "methods": ["GET", "POST"], "desc": "d", "labels": {"a": "1", "b": "2"},
               "upstream": {"nodes": node, "type": "roundrobin"},
               "plugins": {"request-id": {"header_name": "X-A"}}}),
    )
    .await;
    let before = a.get("/apisix/admin/routes/p").await;
    let r = a
        .call(
            "PATCH",
            "/apisix/admin/routes/p",
            Some(
                json!({"methods": ["PUT"], "desc": null, "labels": {"b": null, "c": "3"},
            "upstream": {"nodes": {"127.0.0.1:1981": 2}}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = &r.json["value"];
    assert_eq!(v["methods"], json!(["PUT"]), "arrays are replaced");
    assert!(v.get("desc").is_none(), "null deletes: {v}");
    assert_eq!(v["labels"], json!({"a": "1", "c": "3"}), "objects merge");
    assert_eq!(
        v["upstream"]["nodes"],
        json!({"127.0.0.1:1980": 1, "127.0.0.1:1981": 2})
    );
    assert_eq!(v["upstream"]["type"], "roundrobin");
    assert_eq!(v["uri"], "/p");
    assert_eq!(v["create_time"], before.json["value"]["create_time"]);
    let after = a.get("/apisix/admin/routes/p").await;
    assert!(after.json["modifiedIndex"].as_u64() > before.json["modifiedIndex"].as_u64());

    // A sub-path replaces that subtree.
    let r = a
        .call(
            "PATCH",
            "/apisix/admin/routes/p/plugins",
            Some(json!({"request-id": {"header_name": "X-B"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["value"]["plugins"],
        json!({"request-id": {"header_name": "X-B"}})
    );
    let r = a
        .call("PATCH", "/apisix/admin/routes/p/uri", Some(json!("/q")))
        .await;
    assert_eq!(r.json["value"]["uri"], "/q", "{}", r.text);
    let r = a
        .call("PATCH", "/apisix/admin/routes/p/uri/x", Some(json!(1)))
        .await;
    assert_eq!(
        (r.status, r.json),
        (
            StatusCode::BAD_REQUEST,
            json!({"error_msg": "invalid sub-path: /uri"})
        )
    );
    // Validated like a PUT, and nothing changes when refused.
    let r = a
        .call(
            "PATCH",
            "/apisix/admin/routes/p",
            Some(json!({"methods": ["BREW"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.json["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("methods[0]")),
        "{}",
        r.text
    );
    assert_eq!(
        a.get("/apisix/admin/routes/p").await.json["value"]["methods"],
        json!(["PUT"])
    );
    let r = a
        .call(
            "PATCH",
            "/apisix/admin/routes/nope",
            Some(json!({"desc": "x"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::NOT_FOUND, json!({"message": "Key not found"}))
    );
    let r = a
        .call(
            "PATCH",
            "/apisix/admin/consumers/c",
            Some(json!({"desc": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}
