//! Route matching over real sockets: every rule and precedence case.

mod common;

use common::{gateway, get, Backend};
use http::StatusCode;

async fn backends(names: &[&str]) -> Vec<Backend> {
    let mut v = Vec::new();
    for n in names {
        v.push(Backend::start(n).await);
    }
    v
}

fn up(b: &Backend) -> String {
    format!("{{nodes: {{\"{}\": 1}}}}", b.node())
}

#[tokio::test]
async fn apisix_precedence_host_then_uri_then_priority() {
    let b = backends(&[
        "exact-host",
        "wild-host",
        "no-host",
        "exact-path",
        "prefix-long",
        "prefix-short",
        "prio-high",
        "prio-low",
        "param",
    ])
    .await;
    let yaml = format!(
        r#"
routes:
  - {{id: exact-host, host: api.example.com, uri: "/*", upstream: {}}}
  - {{id: wild-host, host: "*.example.com", uri: "/*", upstream: {}}}
  - {{id: no-host, uri: "/*", upstream: {}}}
  - {{id: exact-path, uri: /p/exact, upstream: {}}}
  - {{id: prefix-long, uri: "/p/exact/more/*", upstream: {}}}
  - {{id: prefix-short, uri: "/p/*", upstream: {}}}
  - {{id: prio-low, uri: /prio, priority: 1, upstream: {}}}
  - {{id: prio-high, uri: /prio, priority: 10, upstream: {}}}
  - {{id: param, uri: /users/:id/orders, upstream: {}}}
"#,
        up(&b[0]),
        up(&b[1]),
        up(&b[2]),
        up(&b[3]),
        up(&b[4]),
        up(&b[5]),
        up(&b[7]),
        up(&b[6]),
        up(&b[8])
    );
    let gw = gateway(&yaml).await;
    let a = gw.proxy_addr();
    // Exact host beats wildcard host beats host-less.
    assert_eq!(
        get(a, Some("api.example.com"), "/x").await.backend(),
        "exact-host"
    );
    assert_eq!(
        get(a, Some("API.Example.com:9080"), "/x").await.backend(),
        "exact-host"
    );
    assert_eq!(
        get(a, Some("www.example.com"), "/x").await.backend(),
        "wild-host"
    );
    assert_eq!(get(a, Some("other.test"), "/x").await.backend(), "no-host");
    // Exact path beats prefixes; the longest prefix wins.
    assert_eq!(
        get(a, Some("other.test"), "/p/exact").await.backend(),
        "exact-path"
    );
    assert_eq!(
        get(a, Some("other.test"), "/p/exact/more/x")
            .await
            .backend(),
        "prefix-long"
    );
    assert_eq!(
        get(a, Some("other.test"), "/p/other").await.backend(),
        "prefix-short"
    );
    // Same uri: higher priority wins whatever the order in the file.
    assert_eq!(
        get(a, Some("other.test"), "/prio").await.backend(),
        "prio-high"
    );
    // :param segments.
    assert_eq!(
        get(a, Some("other.test"), "/users/42/orders")
            .await
            .backend(),
        "param"
    );
}

#[tokio::test]
async fn methods_filter_and_fall_through() {
    let b = backends(&["posts", "any"]).await;
    let yaml = format!(
        r#"
routes:
  - {{id: posts, uri: /m, methods: [POST, PUT], upstream: {}}}
  - {{id: any, uri: "/*", upstream: {}}}
"#,
        up(&b[0]),
        up(&b[1])
    );
    let gw = gateway(&yaml).await;
    let a = gw.proxy_addr();
    let r = common::send(a, "POST", None, "/m", common::body("x")).await;
    assert_eq!(r.backend(), "posts");
    assert_eq!(get(a, None, "/m").await.backend(), "any");
}

#[tokio::test]
async fn no_route_is_404_with_apisix_body_and_disabled_routes_do_not_match() {
    let b = backends(&["off"]).await;
    let yaml = format!(
        r#"
routes:
  - {{id: "off", uri: /off, status: 0, upstream: {}}}
  - {{id: hosts, hosts: [a.test, b.test], uris: [/one, /two], upstream: {}}}
"#,
        up(&b[0]),
        up(&b[0])
    );
    let gw = gateway(&yaml).await;
    let a = gw.proxy_addr();
    let r = get(a, None, "/off").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, r#"{"error_msg":"404 Route Not Found"}"#);
    assert_eq!(get(a, Some("b.test"), "/two").await.status, StatusCode::OK);
    assert_eq!(
        get(a, Some("c.test"), "/two").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(a, Some("a.test"), "/three").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn proxy_headers_are_set_and_hop_by_hop_removed() {
    let b = backends(&["h"]).await;
    let yaml = format!(
        "gateway: {{via: true}}\nroutes:\n  - {{id: h, uri: /headers, upstream: {}}}\n",
        up(&b[0])
    );
    let gw = gateway(&yaml).await;
    let a = gw.proxy_addr();
    let c = common::client();
    let req = http::Request::builder()
        .uri(format!("http://{a}/headers"))
        .header("host", "shop.test")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("x-forwarded-for", "203.0.113.9")
        .body(common::empty())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert!(resp.headers().get("via").is_some(), "Via on the response");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seen["host"], "shop.test",
        "pass_host: pass keeps the client Host"
    );
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.test");
    assert_eq!(seen["via"], "1.1 weir");
    assert!(
        seen.get("x-drop-me").is_none(),
        "Connection-named header removed"
    );
}

#[tokio::test]
async fn pass_host_node_and_rewrite() {
    let b = backends(&["n"]).await;
    let yaml = format!(
        r#"
routes:
  - {{id: node, uri: /node/*, upstream: {{pass_host: node, nodes: {{"{n}": 1}}}}}}
  - {{id: rw, uri: /rw/*, upstream: {{pass_host: rewrite, upstream_host: internal.svc, nodes: {{"{n}": 1}}}}}}
"#,
        n = b[0].node()
    );
    let gw = gateway(&yaml).await;
    let a = gw.proxy_addr();
    // The backend answers its name on unknown paths; use /headers via prefix routes.
    let r = get(a, Some("client.test"), "/node/x").await;
    assert_eq!(r.status, StatusCode::OK);
    let yaml2 = format!(
        "routes:\n  - {{id: node, uri: /headers, upstream: {{pass_host: node, nodes: {{\"{n}\": 1}}}}}}\n",
        n = b[0].node()
    );
    let gw2 = gateway(&yaml2).await;
    let seen: serde_json::Value = serde_json::from_str(
        &get(gw2.proxy_addr(), Some("client.test"), "/headers")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(seen["host"], b[0].node());
    let yaml3 = format!(
        "routes:\n  - {{id: rw, uri: /headers, upstream: {{pass_host: rewrite, upstream_host: internal.svc, nodes: {{\"{n}\": 1}}}}}}\n",
        n = b[0].node()
    );
    let gw3 = gateway(&yaml3).await;
    let seen: serde_json::Value = serde_json::from_str(
        &get(gw3.proxy_addr(), Some("client.test"), "/headers")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(seen["host"], "internal.svc");
}
