//! What the traffic plugin tests share: a named node, a route to it, a
//! gateway with a client, and the two shapes of answer they check.
#![allow(dead_code)]

use crate::common::wire::*;
use serde_json::{json, Value};

/// A node answering 200 with `X-Node: <name>` and `<name> <target>` as the
/// body.
pub async fn node(name: &'static str) -> RawBackend {
    RawBackend::start(move |s| {
        let body = format!("{name} {}", s.target);
        Answer::Send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Node: {name}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    })
    .await
}

/// A route on `uri` to `node` with `plugins`.
pub fn route(uri: &str, node: &RawBackend, plugins: Value) -> Value {
    json!({"uri": uri, "upstream": {"nodes": {node.node(): 1}}, "plugins": plugins})
}

/// A gateway with these routes, on the listener `via` needs, and a client
/// connection to it.
pub async fn start(via: Via, routes: Value) -> (TestGateway, AnyClient) {
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let client = AnyClient::connect(via, &gw).await;
    (gw, client)
}

/// `r` is the node's answer to `path`.
#[track_caller]
pub fn assert_forwarded(r: &Resp, node: &str, path: &str, what: &str) {
    assert_eq!(
        (r.status, r.text()),
        (200, format!("{node} {path}")),
        "{what}: expected the node's answer: {r:?}"
    );
}

/// `r` is a plugin's refusal as APISIX sends it.
#[track_caller]
pub fn assert_refused(r: &Resp, status: u16, message: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(
        r.text(),
        format!("{}\n", json!({ "message": message })),
        "{what}: the body of the refusal"
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/plain"),
        "{what}: {r:?}"
    );
    assert!(r.header("x-node").is_none(), "{what}: the node answered");
}

/// The `origin` of an `echo` answer.
#[track_caller]
pub fn echo_origin(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_slice(&r.body).expect("echo's JSON");
    v["origin"].as_str().expect("origin").to_owned()
}

/// `r` is a redirection to `location`, without a body.
#[track_caller]
pub fn assert_redirect(r: &Resp, status: u16, location: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(r.header("location"), Some(location), "{what}: {r:?}");
    assert!(r.body.is_empty(), "{what}: a redirect has no body: {r:?}");
    assert!(r.header("x-node").is_none(), "{what}: the node answered");
}
