//! `type: chash` end to end: a request's key picks its node, the same one
//! on the HTTP/1.1 fast path and on the general path (h2c prior knowledge
//! on the same listener), for `hash_on: header`, `cookie` and `vars`
//! (`arg_NAME`, `remote_addr`); a request without the key goes where its
//! client address hashes (docs/configuration.md). What each key hashes is
//! unit-tested in `weir-proxy/src/hash_input.rs`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use common::wire::*;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::timeout;

const NODES: usize = 4;
const KEYS: usize = 12;

async fn h2c(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect to the gateway timed out")
        .expect("connect to the gateway");
    let (sender, conn) = timeout(
        IO_TIMEOUT,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
    )
    .await
    .expect("h2c handshake timed out")
    .expect("h2c prior-knowledge handshake");
    tokio::spawn(conn);
    sender
}

/// A GET with these header fields; returns the answering node's name.
async fn over_h1(gw: &TestGateway, target: &str, fields: &[(&str, String)]) -> String {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: wire.test\r\n");
    for (n, v) in fields {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut c = Client::connect(gw).await;
    c.send(req.as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "HTTP/1.1 {target} {fields:?}: {r:?}");
    r.text()
}

async fn over_h2(
    s: &mut SendRequest<Empty<Bytes>>,
    target: &str,
    fields: &[(&str, String)],
) -> String {
    let mut b = http::Request::get(format!("http://wire.test{target}"));
    for (n, v) in fields {
        b = b.header(*n, v);
    }
    let resp = timeout(
        IO_TIMEOUT,
        s.send_request(b.body(Empty::new()).expect("request")),
    )
    .await
    .expect("h2 request timed out")
    .expect("h2 request");
    let status = resp.status();
    let body = timeout(IO_TIMEOUT, resp.into_body().collect())
        .await
        .expect("h2 body timed out")
        .expect("h2 body")
        .to_bytes();
    assert_eq!(status, 200, "h2 {target} {fields:?}");
    lossy(&body)
}

#[tokio::test]
async fn chash_sends_the_same_key_to_the_same_node_on_the_fast_and_the_general_path() {
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let name = format!("node-{i}");
        nodes.push(RawBackend::start(move |_| Answer::Send(ok(&name))).await);
    }
    let names: Vec<String> = nodes.iter().map(RawBackend::node).collect();
    let node_map: serde_json::Map<String, serde_json::Value> =
        names.iter().map(|n| (n.clone(), 1.into())).collect();
    let route = |id: &str, uri: &str, hash_on: &str, key: &str| {
        serde_json::json!({
            "id": id,
            "uri": uri,
            "upstream": {"type": "chash", "hash_on": hash_on, "key": key, "nodes": node_map},
        })
    };
    let routes = serde_json::json!({"routes": [
        route("header", "/h/*", "header", "x-user"),
        route("cookie", "/c/*", "cookie", "sid"),
        route("arg", "/a/*", "vars", "arg_user"),
        route("addr", "/r/*", "vars", "remote_addr"),
    ]});
    let gw = gateway_with(Transport::Plain, &names, routes).await;
    let mut h2 = h2c(gw.proxy_addr()).await;

    // (kind, the request for key `k`: target and fields)
    type Build = fn(&str) -> (String, Vec<(&'static str, String)>);
    let kinds: [(&str, Build); 3] = [
        ("header x-user", |k| {
            ("/h/x".into(), vec![("x-user", k.to_owned())])
        }),
        ("cookie sid", |k| {
            ("/c/x".into(), vec![("cookie", format!("a=1; sid={k}"))])
        }),
        ("vars arg_user", |k| (format!("/a/x?x=1&user={k}"), vec![])),
    ];
    for (kind, build) in kinds {
        let mut used = BTreeSet::new();
        for i in 0..KEYS {
            let key = format!("user-{i}");
            let (target, fields) = build(&key);
            let first = over_h1(&gw, &target, &fields).await;
            let again = over_h1(&gw, &target, &fields).await;
            let general = over_h2(&mut h2, &target, &fields).await;
            assert_eq!(
                (&again, &general),
                (&first, &first),
                "{kind} {key}: (fast path again, general path) vs fast path"
            );
            used.insert(first);
        }
        assert!(
            used.len() > 1,
            "{kind}: {KEYS} keys all went to {used:?}: the key is not what is hashed"
        );
    }

    // remote_addr: every request of this client goes to one node; a
    // request without its key goes to the same one (the same nodes make
    // the same ring in every upstream).
    let by_addr = over_h1(&gw, "/r/x?user=a", &[]).await;
    for (target, fields) in [
        ("/r/y?user=b", vec![("x-user", "b".to_owned())]),
        ("/h/missing", vec![]),
        ("/c/missing", vec![("cookie", "other=1".to_owned())]),
        ("/a/missing?username=a", vec![]),
    ] {
        assert_eq!(
            over_h1(&gw, target, &fields).await,
            by_addr,
            "{target} {fields:?} over HTTP/1.1"
        );
        assert_eq!(
            over_h2(&mut h2, target, &fields).await,
            by_addr,
            "{target} {fields:?} over h2c"
        );
    }
}
