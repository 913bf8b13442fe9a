//! `proxy-rewrite`, `fault-injection`, `api-breaker` and
//! `request-validation` over real sockets: every rewrite
//! checked where it lands (what the node received) and at the client;
//! aborts with their status, body and headers; delays measured (bounded
//! below by the configured delay, above generously); percentages within
//! tolerance. Every case on the three HTTP/1.1 transports and HTTP/2 (see
//! `plugin_kit/mod.rs`).

mod common;
mod plugin_kit;

use std::time::{Duration, Instant};

use common::wire::echo_target;
use plugin_kit::*;
use serde_json::{json, Value};

fn with(node: &str, plugins: Value) -> Value {
    json!({"routes": [{"id": "t", "uri": "/*", "upstream": upstream(node), "plugins": plugins}]})
}

async fn proxy_rewrite_changes_path_method_host_and_fields(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        with(
            &b.node(),
            json!({"proxy-rewrite": {
                "regex_uri": ["^/api/v1/(\\w+)/(\\d+)", "/internal/$1?id=$2"],
                "method": "POST",
                "host": "backend.internal",
                "headers": {
                    "add": {"X-Trace": "from-$remote_addr"},
                    "set": {"X-User": "$http_x_login", "X-Kind": "$1"},
                    "remove": ["X-Secret"]
                }
            }}),
        ),
    )
    .await;
    let r = gw
        .send(
            &Req::get("/api/v1/orders/42?page=2")
                .header("x-login", "jack")
                .header("x-user", "forged")
                .header("x-secret", "s3")
                .header("x-trace", "client"),
        )
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(seen.method, "POST", "{t:?}");
    assert_eq!(seen.target, "/internal/orders?id=42&page=2", "{t:?}");
    assert_eq!(
        r.text(),
        "/internal/orders?id=42&page=2",
        "{t:?}: the client sees the node's answer"
    );
    assert_eq!(
        one(&seen, "host").as_deref(),
        Some("backend.internal"),
        "{t:?}"
    );
    assert_eq!(one(&seen, "x-user").as_deref(), Some("jack"), "{t:?}");
    assert_eq!(one(&seen, "x-kind").as_deref(), Some("orders"), "{t:?}");
    assert_eq!(one(&seen, "x-secret"), None, "{t:?}");
    assert_eq!(
        seen.head.all("x-trace"),
        ["client", "from-127.0.0.1"],
        "{t:?}: add keeps the client's value"
    );
}

async fn proxy_rewrite_uri_keeps_the_query(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        with(
            &b.node(),
            json!({"proxy-rewrite": {"uri": "/v2/$arg_kind"}}),
        ),
    )
    .await;
    let r = gw.send(&Req::get("/old?kind=shoes&x=1")).await;
    assert_eq!(r.status, 200, "{t:?}");
    assert_eq!(last(&b).target, "/v2/shoes?kind=shoes&x=1", "{t:?}");
}

async fn fault_injection_aborts_with_status_body_and_headers(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        with(
            &b.node(),
            json!({"fault-injection": {"abort": {
                "http_status": 418, "body": "no tea for $remote_addr\n",
                "headers": {"X-Fault": "abort"},
                "vars": [[["arg_fail", "==", "1"]]]}}}),
        ),
    )
    .await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/f?fail=1")).await;
    assert_eq!(r.status, 418, "{t:?}");
    assert_eq!(r.text(), "no tea for 127.0.0.1\n", "{t:?}");
    assert_eq!(r.header("x-fault"), Some("abort"), "{t:?}");
    assert!(
        b.seen().is_empty(),
        "{t:?}: an aborted request reached the node"
    );
    let ok = c.send(&Req::get("/f?fail=0")).await;
    assert_eq!(ok.status, 200, "{t:?}: vars did not hold, no fault");
    assert_eq!(b.seen().len(), 1, "{t:?}");
}

async fn fault_injection_delays_then_proxies(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        with(
            &b.node(),
            json!({"fault-injection": {"delay": {"duration": 0.4}}}),
        ),
    )
    .await;
    let mut c = gw.client();
    let started = Instant::now();
    let r = c.send(&Req::get("/d")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{t:?}");
    assert!(took >= Duration::from_millis(400), "{t:?}: only {took:?}");
    assert!(took < Duration::from_secs(5), "{t:?}: {took:?}");
    assert_eq!(b.seen().len(), 1, "{t:?}");
}

on_every_transport!(
    proxy_rewrite_changes_path_method_host_and_fields,
    proxy_rewrite_uri_keeps_the_query,
    fault_injection_aborts_with_status_body_and_headers,
    fault_injection_delays_then_proxies,
    api_breaker_opens_and_closes,
    request_validation_refuses_what_the_schemas_refuse,
);

/// `percentage: 30` aborts about 30% of 1,000 requests (binomial: the
/// standard deviation is about 14.5; ±75 is more than 5 of them).
#[tokio::test]
async fn fault_injection_percentage_is_respected() {
    let b = echo_target().await;
    let gw = start(
        T::Plain,
        with(
            &b.node(),
            json!({"fault-injection": {"abort": {"http_status": 503, "percentage": 30}}}),
        ),
    )
    .await;
    let mut c = gw.client();
    let mut aborted = 0;
    for _ in 0..1000 {
        if c.send(&Req::get("/p")).await.status == 503 {
            aborted += 1;
        }
    }
    assert!((225..=375).contains(&aborted), "{aborted} of 1000 aborted");
    assert_eq!(b.seen().len(), 1000 - aborted);
}

/// Several delayed requests wait together, not one after the other: the
/// delay holds no thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_do_not_hold_threads() {
    let b = echo_target().await;
    let gw = start(
        T::Plain,
        with(
            &b.node(),
            json!({"fault-injection": {"delay": {"duration": 0.5}}}),
        ),
    )
    .await;
    let addr = gw.gateway.proxy_addr();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(async move {
            common::get(addr, None, "/c").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("client task"), 200);
    }
    let took = started.elapsed();
    // 20 requests one after the other would take 10 s.
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// `api-breaker`: the third 500 from the upstream opens the breaker (the
/// breaker's own answer, the node not asked) for 2 s; then requests reach
/// the node again; three 200s close it and forget the failures. Each
/// transport uses its own path: breakers are per Host and path.
async fn api_breaker_opens_and_closes(t: T) {
    let b = common::Backend::start("b").await;
    let gw = start(
        t,
        with(
            &b.node(),
            json!({"api-breaker": {
                "break_response_code": 502, "break_response_body": "breaker open\n",
                "break_response_headers": [{"key": "X-Breaker", "value": "open"}],
                "unhealthy": {"http_statuses": [500], "failures": 3},
                "healthy": {"http_statuses": [200], "successes": 3},
                "max_breaker_sec": 3}}),
        ),
    )
    .await;
    let path = format!("/breaker/{t:?}");
    let mut c = gw.client();
    b.set_fail_status(500);
    for i in 0..3 {
        let r = c.send(&Req::get(&path)).await;
        assert_eq!(r.status, 500, "{t:?}: failure {i} is the node's");
    }
    let opened = Instant::now();
    let r = c.send(&Req::get(&path)).await;
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-breaker")),
        (502, "breaker open\n", Some("open")),
        "{t:?}"
    );
    assert_eq!(b.hits(), 3, "{t:?}: the open breaker asked the node");
    // It stays open about 2 s, then lets requests through again.
    b.set_fail_status(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.send(&Req::get(&path)).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 502, "{t:?}");
        assert!(Instant::now() < deadline, "{t:?}: the breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "{t:?}: closed after only {:?}",
        opened.elapsed()
    );
    // Two more successes close it for good: a new failure does not reopen.
    for _ in 0..2 {
        assert_eq!(c.send(&Req::get(&path)).await.status, 200, "{t:?}");
    }
    b.set_fail_status(500);
    assert_eq!(c.send(&Req::get(&path)).await.status, 500, "{t:?}");
    b.set_fail_status(0);
    assert_eq!(
        c.send(&Req::get(&path)).await.status,
        200,
        "{t:?}: reopened after one failure"
    );
}

/// `request-validation`: a header schema and a body schema (JSON and form);
/// refusals are 400 with the validator's message (or `rejected_msg`), and
/// never reach the node.
async fn request_validation_refuses_what_the_schemas_refuse(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({"routes": [
            {"id": "v", "uri": "/orders", "upstream": upstream(&b.node()), "plugins": {
                "request-validation": {
                    "header_schema": {"type": "object", "required": ["x-tenant"],
                                      "properties": {"x-tenant": {"type": "string", "pattern": "^[a-z]+$"}}},
                    "body_schema": {"type": "object", "required": ["qty"],
                                    "properties": {"qty": {"type": "integer", "minimum": 1}}}}}},
            {"id": "m", "uri": "/form", "upstream": upstream(&b.node()), "plugins": {
                "request-validation": {
                    "body_schema": {"type": "object", "required": ["name"]},
                    "rejected_code": 422, "rejected_msg": "name is required"}}},
        ]}),
    )
    .await;
    let mut c = gw.client();
    let ok = c
        .send(&Req::post("/orders", br#"{"qty": 2}"#).header("x-tenant", "acme"))
        .await;
    assert_eq!(ok.status, 200, "{t:?}: {}", ok.text());
    assert_eq!(
        last(&b).body,
        br#"{"qty": 2}"#,
        "{t:?}: the body reached the node"
    );
    for (req, why) in [
        (Req::post("/orders", br#"{"qty": 2}"#), "x-tenant"),
        (
            Req::post("/orders", br#"{"qty": 2}"#).header("x-tenant", "ACME1"),
            "ACME1",
        ),
        (
            Req::post("/orders", br#"{"qty": 0}"#).header("x-tenant", "acme"),
            "minimum",
        ),
        (
            Req::post("/orders", b"{not json").header("x-tenant", "acme"),
            "failed to decode the json body",
        ),
    ] {
        let r = c.send(&req).await;
        assert_eq!(r.status, 400, "{t:?}: {req:?}");
        assert!(
            r.text().contains(why),
            "{t:?}: {:?} lacks {why:?}",
            r.text()
        );
    }
    let form = |body: &'static [u8]| {
        Req::post("/form", body).header("content-type", "application/x-www-form-urlencoded")
    };
    assert_eq!(c.send(&form(b"name=jack&x=1")).await.status, 200, "{t:?}");
    let r = c.send(&form(b"x=1")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (422, "name is required"),
        "{t:?}"
    );
    assert_eq!(
        b.seen().len(),
        2,
        "{t:?}: a refused request reached the node"
    );
}
