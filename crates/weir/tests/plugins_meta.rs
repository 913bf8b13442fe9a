//! Plugin settings over real sockets: the `_meta` settings (`disable`,
//! `priority`, `error_response`) and global rules (before and besides a
//! route's plugins, on a route without plugins, before a 404), with the
//! traffic plugins of `plugins_traffic.rs` as the plugins they act on.
//!
//! Each case runs on every client of `every_client!` (fast path plain and
//! TLS, general path, HTTP/2 with prior knowledge), against raw-socket
//! nodes.

mod common;
mod traffic_kit;

use common::wire::*;
use serde_json::{json, Value};
use traffic_kit::*;

// ---------------------------------------------------------------------------
// _meta
// ---------------------------------------------------------------------------

async fn meta_disable_turns_a_plugin_off(via: Via) {
    let n = node("n").await;
    let deny = json!({"blacklist": ["127.0.0.0/8"]});
    let mut off = deny.clone();
    off["_meta"] = json!({"disable": true});
    let mut legacy = deny.clone();
    legacy["disable"] = json!(true);
    let mut on = deny.clone();
    on["_meta"] = json!({"disable": false});
    let (_gw, mut c) = start(
        via,
        json!([
            route("/off/*", &n, json!({"ip-restriction": off})),
            route("/legacy/*", &n, json!({"ip-restriction": legacy})),
            route("/on/*", &n, json!({"ip-restriction": on})),
        ]),
    )
    .await;
    let r = c.send(&Req::get("/off/1")).await;
    assert_forwarded(&r, "n", "/off/1", "_meta.disable: true");
    let r = c.send(&Req::get("/legacy/1")).await;
    assert_forwarded(&r, "n", "/legacy/1", "disable: true");
    let r = c.send(&Req::get("/on/1")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "_meta.disable: false",
    );
}

/// ip-restriction (3000) and ua-restriction (2999) both refuse the request:
/// the one with the higher effective priority answers.
async fn meta_priority_decides_which_refusing_plugin_answers(via: Via) {
    let n = node("n").await;
    let plugins = |ip_priority: Option<i64>, ua_priority: Option<i64>| {
        let mut ip =
            json!({"blacklist": ["127.0.0.0/8"], "message": "ip says no", "response_code": 404});
        let mut ua = json!({"denylist": ["."], "message": "ua says no"});
        if let Some(p) = ip_priority {
            ip["_meta"] = json!({ "priority": p });
        }
        if let Some(p) = ua_priority {
            ua["_meta"] = json!({ "priority": p });
        }
        json!({"ip-restriction": ip, "ua-restriction": ua})
    };
    let (_gw, mut c) = start(
        via,
        json!([
            route("/default/*", &n, plugins(None, None)),
            route("/ua-raised/*", &n, plugins(None, Some(3001))),
            route("/ip-lowered/*", &n, plugins(Some(-5), None)),
            route(
                "/echo-first/*",
                &n,
                json!({
                    "ip-restriction": {"blacklist": ["127.0.0.0/8"]},
                    "echo": {"_meta": {"priority": 5000}},
                })
            ),
        ]),
    )
    .await;
    let ua = |path: &str| Req::get(path).header("User-Agent", "agent");
    let r = c.send(&ua("/default/1")).await;
    assert_refused(
        &r,
        404,
        "ip says no",
        "APISIX's priorities: ip-restriction first",
    );
    let r = c.send(&ua("/ua-raised/1")).await;
    assert_refused(&r, 403, "ua says no", "ua-restriction raised above");
    let r = c.send(&ua("/ip-lowered/1")).await;
    assert_refused(&r, 403, "ua says no", "ip-restriction lowered below");
    let r = c.send(&ua("/echo-first/1")).await;
    assert_eq!(
        echo_origin(&r),
        "127.0.0.1",
        "echo raised above ip-restriction"
    );
    assert!(n.seen().is_empty());
}

async fn meta_error_response_replaces_the_body_of_a_plugins_refusal(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start(
        via,
        json!([
            route("/text/*", &n, json!({"ip-restriction": {
                "blacklist": ["127.0.0.0/8"], "_meta": {"error_response": "forbidden here"},
            }})),
            // Only the refusing plugin's own error_response counts.
            route("/other/*", &n, json!({
                "ip-restriction": {"whitelist": ["127.0.0.0/8"], "_meta": {"error_response": "ip"}},
                "ua-restriction": {"denylist": ["."]},
            })),
            // Not for answers below 400.
            route("/redirect/*", &n, json!({"redirect": {
                "uri": "/elsewhere", "_meta": {"error_response": "nope"},
            }})),
            route("/cors/*", &n, json!({"cors": {"_meta": {"error_response": "nope"}}})),
        ]),
    )
    .await;
    let r = c.send(&Req::get("/text/1")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "forbidden here"),
        "{r:?}"
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = c
        .send(&Req::get("/other/1").header("User-Agent", "x"))
        .await;
    assert_refused(&r, 403, "Not allowed", "another plugin's refusal");
    let r = c.send(&Req::get("/redirect/1")).await;
    assert_redirect(&r, 302, "/elsewhere", "a redirect keeps its (empty) body");
    let r = c.send(&Req::new("OPTIONS", "/cors/1")).await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    assert!(n.seen().is_empty());
}

/// APISIX sends a table `error_response` as JSON and a newline
/// (`core.response.exit` encodes tables so).
async fn meta_error_response_object_is_sent_as_json_and_a_newline(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start(
        via,
        json!([route(
            "/json/*",
            &n,
            json!({"ip-restriction": {
                "blacklist": ["127.0.0.0/8"], "_meta": {"error_response": {"code": "E403"}},
            }})
        )]),
    )
    .await;
    let r = c.send(&Req::get("/json/1")).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.text(), "{\"code\":\"E403\"}\n", "{r:?}");
}

// ---------------------------------------------------------------------------
// global rules
// ---------------------------------------------------------------------------

/// A gateway whose global rules give every request an id and believe the
/// client's X-Forwarded-For, and refuse 192.0.2.0/24.
async fn start_with_global_rules(via: Via, routes: Value) -> (TestGateway, AnyClient) {
    let gw = gateway_with(
        via.transport(),
        &[],
        json!({
            "routes": routes,
            "global_rules": [
                {"id": 1, "plugins": {"request-id": {}}},
                {"id": 2, "plugins": {
                    "real-ip": {"source": "http_x_forwarded_for"},
                    "ip-restriction": {"blacklist": ["192.0.2.0/24"]},
                }},
            ],
        }),
    )
    .await;
    let client = AnyClient::connect(via, &gw).await;
    (gw, client)
}

/// Global rules run for a route with plugins of its own: before them
/// (the global real-ip decides the route's ip-restriction) and besides
/// them (the global request-id).
async fn global_rules_run_before_and_besides_a_routes_plugins(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start_with_global_rules(
        via,
        json!([route(
            "/with/*",
            &n,
            json!({
                "ip-restriction": {"whitelist": ["198.51.100.0/24"]},
            })
        )]),
    )
    .await;
    let from = |ip: &str| Req::get("/with/x").header("X-Forwarded-For", ip);
    let r = c.send(&from("198.51.100.7")).await;
    assert_forwarded(
        &r,
        "n",
        "/with/x",
        "the global real-ip, then the route's whitelist",
    );
    let seen = n.seen().pop().expect("the node saw it");
    let id = seen
        .head
        .get("x-request-id")
        .expect("the global request-id upstream");
    assert_eq!(r.header("x-request-id"), Some(id), "{r:?}");
    let r = c.send(&from("192.0.2.7")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "the global blacklist",
    );
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    let r = c.send(&from("203.0.113.1")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "the route's whitelist",
    );
    assert_eq!(n.seen().len(), 1);
}

/// APISIX runs the global rules for every request (`http_access_phase`),
/// a route without plugins of its own included.
async fn global_rules_run_for_a_route_without_plugins(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start_with_global_rules(
        via,
        json!([{"uri": "/bare/*", "upstream": {"nodes": {n.node(): 1}}}]),
    )
    .await;
    let r = c.send(&Req::get("/bare/x")).await;
    assert_forwarded(&r, "n", "/bare/x", "a route without plugins");
    let seen = n.seen().pop().expect("the node saw it");
    let id = seen.head.get("x-request-id");
    assert!(
        id.is_some(),
        "the global request-id upstream: {:?}",
        seen.head
    );
    assert_eq!(r.header("x-request-id"), id, "{r:?}");
    let r = c
        .send(&Req::get("/bare/x").header("X-Forwarded-For", "192.0.2.7"))
        .await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "the global blacklist",
    );
}

/// APISIX runs the global rules before answering 404 for a request that
/// matches no route (`http_access_phase`: `run_global_rules`, then
/// `404 Route Not Found`), and their header filters on that 404.
async fn global_rules_run_for_a_request_that_matches_no_route(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start_with_global_rules(via, json!([route("/only/*", &n, json!({}))])).await;
    let r = c.send(&Req::get("/nowhere")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "{\"error_msg\":\"404 Route Not Found\"}"),
        "{r:?}"
    );
    assert!(
        r.header("x-request-id").is_some(),
        "the global request-id: {r:?}"
    );
    let r = c
        .send(&Req::get("/nowhere").header("X-Forwarded-For", "192.0.2.7"))
        .await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "the global blacklist",
    );
}

every_client!(
    meta_disable_turns_a_plugin_off,
    meta_priority_decides_which_refusing_plugin_answers,
    meta_error_response_replaces_the_body_of_a_plugins_refusal,
    meta_error_response_object_is_sent_as_json_and_a_newline,
    global_rules_run_before_and_besides_a_routes_plugins,
    global_rules_run_for_a_route_without_plugins,
    global_rules_run_for_a_request_that_matches_no_route,
);
