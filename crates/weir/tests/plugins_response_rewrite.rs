//! `response-rewrite` over real sockets, on the three HTTP/1.1 transports
//! and HTTP/2 (see `plugin_kit/mod.rs`): status, header fields and body as
//! the client gets them; body filters over every framing a node may use
//! (Content-Length, chunked, close-delimited) and over a gzip body; the
//! `max_resp_body_size` bound (the body passes whole, unfiltered); `vars`;
//! weir's own answers rewritten; HEAD and a status without a body. Every
//! case sends a second request on the same connection, so a response framed
//! wrongly shows.

mod common;
mod plugin_kit;

use std::io::{Read, Write};

use common::wire::{Answer, RawBackend};
use plugin_kit::*;
use serde_json::{json, Value};

fn route(id: &str, uri: &str, node: &str, plugins: Value) -> Value {
    json!({"id": id, "uri": uri, "upstream": upstream(node), "plugins": plugins})
}

/// A node answering `/chunked` with a chunked body, `/close` with a body
/// delimited by the connection's close, `/missing` with a 404 and anything
/// else with `body` and a Content-Length; always with an `ETag` and
/// `X-Node: a`.
async fn node(body: &'static str) -> RawBackend {
    RawBackend::start(move |s| {
        let head = "X-Node: a\r\nX-Remove: gone\r\nETag: \"v1\"\r\n";
        match s.target.as_str() {
            "/chunked" => {
                let (a, b) = body.split_at(body.len() / 2);
                Answer::Send(
                    format!(
                        "HTTP/1.1 200 OK\r\n{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                    .into_bytes(),
                )
            }
            "/close" => Answer::SendAndClose(
                format!("HTTP/1.1 200 OK\r\n{head}Connection: close\r\n\r\n{body}").into_bytes(),
            ),
            "/missing" => Answer::Send(
                format!("HTTP/1.1 404 Not Found\r\n{head}Content-Length: 9\r\n\r\nnot here\n")
                    .into_bytes(),
            ),
            _ => Answer::Send(
                format!(
                    "HTTP/1.1 200 OK\r\n{head}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            ),
        }
    })
    .await
}

async fn status_fields_and_body_are_replaced(t: T) {
    let b = node("the node's body").await;
    let gw = start(
        t,
        json!({"routes": [route("r", "/*", &b.node(), json!({"response-rewrite": {
            "status_code": 201,
            "body": "{\"code\":\"ok\"}\n",
            "headers": {
                "add": ["X-Add: status $status from $upstream_status"],
                "set": {"X-Set": "$upstream_http_x_node", "X-Node": "b"},
                "remove": ["X-Remove"]
            }
        }}))]}),
    )
    .await;
    let mut c = gw.client();
    for target in ["/a", "/chunked"] {
        let r = c.send(&Req::get(target)).await;
        assert_eq!(r.status, 201, "{t:?} {target}");
        assert_eq!(r.text(), "{\"code\":\"ok\"}\n", "{t:?} {target}");
        assert_eq!(
            r.header("x-add"),
            Some("status 201 from 200"),
            "{t:?} {target}"
        );
        assert_eq!(r.header("x-set"), Some("a"), "{t:?} {target}");
        assert_eq!(r.all("x-node"), ["b"], "{t:?} {target}");
        assert_eq!(r.header("x-remove"), None, "{t:?} {target}");
        assert_eq!(
            r.header("etag"),
            None,
            "{t:?} {target}: the validator no longer describes the body"
        );
    }
    assert_eq!(b.seen().len(), 2, "{t:?}: the node was asked each time");
}

async fn filters_edit_every_framing(t: T) {
    let b = node("hello world, hello 2026").await;
    let filters = json!({"response-rewrite": {"filters": [
        {"regex": "hello", "replace": "bye", "scope": "global"},
        {"regex": "(\\d+)", "replace": "<$1>"}
    ]}});
    let gw = start(t, json!({"routes": [route("r", "/*", &b.node(), filters)]})).await;
    let mut c = gw.client();
    for target in ["/len", "/chunked", "/close", "/len"] {
        let r = c.send(&Req::get(target)).await;
        assert_eq!(r.status, 200, "{t:?} {target}");
        assert_eq!(r.text(), "bye world, bye <2026>", "{t:?} {target}");
        assert_eq!(r.header("etag"), None, "{t:?} {target}");
        assert_eq!(r.header("x-node"), Some("a"), "{t:?} {target}");
    }
}

async fn filters_decode_and_encode_gzip(t: T) {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"price: 10 EUR").expect("gzip");
    let gz = e.finish().expect("gzip");
    let b = RawBackend::start(move |_| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        r.extend_from_slice(&gz);
        Answer::Send(r)
    })
    .await;
    let gw = start(
        t,
        json!({"routes": [route("r", "/*", &b.node(), json!({"response-rewrite": {
            "filters": [{"regex": "EUR", "replace": "euros"}]}}))]}),
    )
    .await;
    let mut c = gw.client();
    for _ in 0..2 {
        let r = c.send(&Req::get("/p")).await;
        assert_eq!(r.status, 200, "{t:?}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{t:?}");
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut plain)
            .unwrap_or_else(|e| panic!("{t:?}: not gzip: {e}"));
        assert_eq!(plain, "price: 10 euros", "{t:?}");
    }
}

async fn a_body_beyond_the_bound_passes_whole(t: T) {
    let b = node("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    let gw = start(
        t,
        json!({"routes": [route("r", "/*", &b.node(), json!({"response-rewrite": {
            "max_resp_body_size": 16,
            "filters": [{"regex": "a", "replace": "b", "scope": "global"}]}}))]}),
    )
    .await;
    let mut c = gw.client();
    for target in ["/len", "/chunked"] {
        let r = c.send(&Req::get(target)).await;
        assert_eq!(r.status, 200, "{t:?} {target}");
        assert_eq!(
            r.text(),
            "a".repeat(64),
            "{t:?} {target}: whole and unfiltered"
        );
    }
}

async fn vars_choose_the_responses(t: T) {
    let b = node("fine").await;
    let gw = start(
        t,
        json!({"routes": [route("r", "/*", &b.node(), json!({"response-rewrite": {
            "vars": [["status", "==", 404]],
            "status_code": 200,
            "body": "nothing here, but fine\n"}}))]}),
    )
    .await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/missing")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "nothing here, but fine\n"),
        "{t:?}"
    );
    let r = c.send(&Req::get("/there")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "fine"),
        "{t:?}: untouched"
    );
    assert_eq!(r.header("etag"), Some("\"v1\""), "{t:?}");
}

async fn weirs_own_answers_are_rewritten(t: T) {
    let b = node("secret").await;
    let gw = start(
        t,
        json!({
            "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}],
            "routes": [route("r", "/*", &b.node(), json!({
                "key-auth": {},
                "response-rewrite": {
                    "vars": [["status", "==", 401]],
                    "body": "{\"error\":\"who are you?\"}",
                    "headers": {"X-Why": "no key"}
                }
            }))]
        }),
    )
    .await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/x")).await;
    assert_eq!(r.status, 401, "{t:?}");
    assert_eq!(r.text(), "{\"error\":\"who are you?\"}", "{t:?}");
    assert_eq!(r.header("x-why"), Some("no key"), "{t:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("apikey realm=\"key\""),
        "{t:?}: key-auth's own field stays"
    );
    let r = c.send(&Req::get("/x").header("apikey", "k1")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "secret"), "{t:?}");
    assert_eq!(b.seen().len(), 1, "{t:?}");
}

async fn head_and_bodiless_statuses_send_no_body(t: T) {
    let b = node("some body").await;
    let gw = start(
        t,
        json!({"routes": [
            route("head", "/h", &b.node(), json!({"response-rewrite": {"body": "new body"}})),
            route("none", "/n", &b.node(), json!({"response-rewrite": {"status_code": 204}}))
        ]}),
    )
    .await;
    let mut c = gw.client();
    let mut head = Req::get("/h");
    head.method = "HEAD".into();
    let r = c.send(&head).await;
    assert_eq!(r.status, 200, "{t:?}");
    assert!(r.body.is_empty(), "{t:?}");
    let r = c.send(&Req::get("/n")).await;
    assert_eq!(r.status, 204, "{t:?}");
    assert!(r.body.is_empty(), "{t:?}");
    assert_eq!(r.header("content-length"), None, "{t:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{t:?}");
    let r = c.send(&Req::get("/h")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "new body"),
        "{t:?}: the connection is still in step"
    );
}

on_every_transport!(
    status_fields_and_body_are_replaced,
    filters_edit_every_framing,
    filters_decode_and_encode_gzip,
    a_body_beyond_the_bound_passes_whole,
    vars_choose_the_responses,
    weirs_own_answers_are_rewritten,
    head_and_bodiless_statuses_send_no_body,
);
