//! The compare-and-swap of Admin API writes with etcd, made to lose on
//! purpose: an HTTP proxy between weir and etcd writes the same key
//! directly to etcd just before it forwards weir's transaction, so the key
//! changed between weir's read and its compare-and-swap, every time, with
//! no timing involved. A write's first try plans on what the replica
//! serves and reads nothing from etcd; when it loses, the key is read from
//! etcd and the write is planned again, so a conflict takes a second
//! interfering write, before that second transaction. A PUT, a create and
//! a DELETE that lose then answer 409 (APISIX-style `error_msg`) and change
//! nothing: the other writer's value stands, in etcd and on the proxy. A
//! PATCH that loses is planned again on the new value (nothing of either
//! write is lost).
//!
//! The same proxy records what weir asks etcd, for the round trips of a
//! write on an up-to-date replica (one transaction, no read) and for the
//! writes that must wait for the watch (another write came in between).

mod admin_kit;
mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use admin_kit::wait_proxy;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::etcd_server::EtcdServer;
use common::Backend;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Writes to make directly in etcd before a transaction is forwarded: one
/// batch per transaction, in order; (key, value), or (key, None) for a
/// delete.
type Pending = Arc<Mutex<VecDeque<Vec<(String, Option<String>)>>>>;

/// What weir asked etcd through the proxy: (path, key), the key decoded
/// from the request's `key` field (empty without one), watches left out.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP proxy to etcd at `etcd` that makes the next pending batch of
/// writes when it sees `/v3/kv/txn`, and records every other request in
/// `seen`; its URL.
async fn interfering_proxy(etcd: String, pending: Pending, seen: Seen) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr: SocketAddr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (etcd, pending, seen) = (etcd.clone(), pending.clone(), seen.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (etcd, pending, seen) = (etcd.clone(), pending.clone(), seen.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if path != "/v3/watch" {
                            // A range's `key`; a transaction's first compare.
                            let key = serde_json::from_slice::<Value>(&body)
                                .ok()
                                .and_then(|v| {
                                    v["key"]
                                        .as_str()
                                        .or(v["compare"][0]["key"].as_str())
                                        .map(str::to_owned)
                                })
                                .and_then(|k| B64.decode(k).ok())
                                .map(|k| String::from_utf8_lossy(&k).into_owned())
                                .unwrap_or_default();
                            seen.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((path.clone(), key));
                        }
                        if path == "/v3/kv/txn" {
                            let writes = pending
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .pop_front()
                                .unwrap_or_default();
                            for (key, value) in writes {
                                let (op, req) = match value {
                                    Some(v) => (
                                        "/v3/kv/put",
                                        json!({"key": B64.encode(&key), "value": B64.encode(v)}),
                                    ),
                                    None => {
                                        ("/v3/kv/deleterange", json!({"key": B64.encode(&key)}))
                                    }
                                };
                                let r = Request::post(format!("{etcd}{op}"))
                                    .body(common::body(&req.to_string()))
                                    .expect("request");
                                let resp = common::client().request(r).await.expect("etcd write");
                                assert!(resp.status().is_success(), "the other writer's write");
                                let _ = resp.into_body().collect().await;
                            }
                        }
                        let fwd = Request::post(format!("{etcd}{path}"))
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(common::body(&String::from_utf8_lossy(&body)))
                            .expect("request");
                        let resp: Response<Incoming> = common::client().request(fwd).await?;
                        Ok::<_, hyper_util::client::legacy::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// The other writer writes `key` before the next transaction weir sends.
fn arm(pending: &Pending, key: &str, value: Option<Value>) {
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push_back(vec![(key.to_owned(), value.map(|v| v.to_string()))]);
}

/// The other writer writes `key` before each of weir's next two
/// transactions (the first try's, planned on what weir serves, and the
/// one planned on what it then read from etcd), `second` the second time.
fn arm_twice(pending: &Pending, key: &str, first: Value, second: Option<Value>) {
    arm(pending, key, Some(first));
    arm(pending, key, second);
}

/// The requests weir sent etcd since the last call (watches left out).
fn take(seen: &Seen) -> Vec<(String, String)> {
    std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()))
}

#[tokio::test]
async fn a_write_that_loses_the_compare_and_swap_gets_409_and_changes_nothing() {
    let etcd = EtcdServer::start().await;
    let pending: Pending = Arc::default();
    let proxy = interfering_proxy(etcd.url(), pending.clone(), Seen::default()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let route = |node: String, desc: &str| json!({"uri": "/r", "desc": desc, "upstream": {"nodes": {node: 1}}});
    let (gw, admin) = admin_kit::start_etcd(&[proxy]).await;
    admin
        .put_ok("/apisix/admin/routes/r", route(a.node(), "mine"))
        .await;
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.backend(), "a", "{}", r.body);

    // PUT: another writer replaces the route before weir's first try and
    // again between weir's read and its compare-and-swap.
    arm_twice(
        &pending,
        "/apisix/routes/r",
        route(b.node(), "theirs-0"),
        Some(route(b.node(), "theirs")),
    );
    let p = admin
        .put("/apisix/admin/routes/r", route(a.node(), "lost"))
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.text);
    let msg = p.json["error_msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/apisix/routes/r") && msg.contains("another writer"),
        "{}",
        p.text
    );
    let (stored, _, _) = etcd.get("/apisix/routes/r").await.expect("route");
    assert_eq!(stored["desc"], json!("theirs"), "the winner's write stands");
    wait_proxy(
        gw.proxy_addr(),
        "/r",
        "the winner's route served",
        |s, body| s == StatusCode::OK && body == "b",
    )
    .await;
    let g = admin.get("/apisix/admin/routes/r").await;
    assert_eq!(g.json["value"]["desc"], json!("theirs"), "{}", g.text);

    // DELETE: the other writer changes it first; the delete loses.
    arm_twice(
        &pending,
        "/apisix/routes/r",
        route(b.node(), "theirs-1"),
        Some(route(b.node(), "theirs-2")),
    );
    let d = admin.delete("/apisix/admin/routes/r").await;
    assert_eq!(d.status, StatusCode::CONFLICT, "{}", d.text);
    let (stored, _, _) = etcd.get("/apisix/routes/r").await.expect("not deleted");
    assert_eq!(stored["desc"], json!("theirs-2"));

    // A create of an id someone else creates at that moment.
    let at_n = |node: String, desc: &str| json!({"uri": "/n", "desc": desc, "upstream": {"nodes": {node: 1}}});
    arm_twice(
        &pending,
        "/apisix/routes/n",
        at_n(b.node(), "their-new-0"),
        Some(at_n(b.node(), "their-new")),
    );
    let c = admin
        .put("/apisix/admin/routes/n", at_n(a.node(), "my-new"))
        .await;
    assert_eq!(c.status, StatusCode::CONFLICT, "{}", c.text);
    let (stored, _, _) = etcd.get("/apisix/routes/n").await.expect("theirs");
    assert_eq!(stored["desc"], json!("their-new"));

    // PATCH is planned again on what etcd now holds: both changes kept.
    arm(
        &pending,
        "/apisix/routes/r",
        Some(
            json!({"uri": "/r", "desc": "theirs-3", "name": "named-by-them", "upstream": {"nodes": {b.node(): 1}}}),
        ),
    );
    let p = admin
        .call(
            "PATCH",
            "/apisix/admin/routes/r",
            Some(json!({"desc": "patched"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let (stored, _, _) = etcd.get("/apisix/routes/r").await.expect("route");
    assert_eq!(
        (stored["desc"].clone(), stored["name"].clone()),
        (json!("patched"), json!("named-by-them")),
        "{stored}"
    );

    // Nothing pending: a PUT goes through, the conflicts left no trace.
    assert!(pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    let p = admin
        .put("/apisix/admin/routes/r", route(a.node(), "mine-again"))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.backend(), "a", "{}", r.body);
    gw.shutdown().await;
}

/// (path, key) pairs `seen` holds for `key`: what weir asked etcd about it.
fn about(seen: &[(String, String)], key: &str) -> Vec<String> {
    seen.iter()
        .filter(|(_, k)| k == key)
        .map(|(p, _)| p.clone())
        .collect()
}

#[tokio::test]
async fn a_write_on_an_up_to_date_replica_is_one_transaction_and_served_when_answered() {
    let etcd = EtcdServer::start().await;
    let seen = Seen::default();
    let proxy = interfering_proxy(etcd.url(), Pending::default(), seen.clone()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gw, admin) = admin_kit::start_etcd(&[proxy]).await;
    let key = "/apisix/routes/one";
    let route = |node: String| json!({"uri": "/one", "upstream": {"nodes": {node: 1}}});
    take(&seen);

    // Create, replace, PATCH, DELETE: each one transaction on the key and
    // no read of it, and the proxy serves the change as soon as the
    // answer comes (no polling).
    let c = admin.put("/apisix/admin/routes/one", route(a.node())).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    assert_eq!(about(&take(&seen), key), ["/v3/kv/txn"], "create");
    let r = common::get(gw.proxy_addr(), None, "/one").await;
    assert_eq!(r.backend(), "a", "served when answered: {}", r.body);

    let p = admin.put("/apisix/admin/routes/one", route(b.node())).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(about(&take(&seen), key), ["/v3/kv/txn"], "replace");
    let r = common::get(gw.proxy_addr(), None, "/one").await;
    assert_eq!(r.backend(), "b", "served when answered: {}", r.body);

    let p = admin
        .call(
            "PATCH",
            "/apisix/admin/routes/one",
            Some(json!({"uri": "/one-patched"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(about(&take(&seen), key), ["/v3/kv/txn"], "PATCH");
    let r = common::get(gw.proxy_addr(), None, "/one-patched").await;
    assert_eq!(r.backend(), "b", "served when answered: {}", r.body);

    let d = admin.delete("/apisix/admin/routes/one").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(about(&take(&seen), key), ["/v3/kv/txn"], "DELETE");
    let r = common::get(gw.proxy_addr(), None, "/one-patched").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "gone when answered");
    assert!(etcd.get(key).await.is_none(), "deleted in etcd");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_write_another_came_before_is_answered_once_both_are_served() {
    let etcd = EtcdServer::start().await;
    let pending: Pending = Arc::default();
    let proxy = interfering_proxy(etcd.url(), pending.clone(), Seen::default()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gw, admin) = admin_kit::start_etcd(&[proxy]).await;
    // Another writer creates a route just before weir's transaction for
    // another one: weir's write is not the next revision after what it
    // serves, so what it checked is not all etcd holds. It is answered
    // once its watch has applied both.
    arm(
        &pending,
        "/apisix/routes/theirs",
        Some(json!({"uri": "/theirs", "upstream": {"nodes": {b.node(): 1}}})),
    );
    let c = admin
        .put(
            "/apisix/admin/routes/mine",
            json!({"uri": "/mine", "upstream": {"nodes": {a.node(): 1}}}),
        )
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    let mine = common::get(gw.proxy_addr(), None, "/mine").await;
    let theirs = common::get(gw.proxy_addr(), None, "/theirs").await;
    assert_eq!(
        (mine.status, theirs.status),
        (StatusCode::OK, StatusCode::OK),
        "both served when the write is answered: {} / {}",
        mine.body,
        theirs.body
    );
    assert_eq!((mine.backend(), theirs.backend()), ("a", "b"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_replica_behind_for_the_key_reads_it_from_etcd_and_the_write_stands() {
    let etcd = EtcdServer::start().await;
    let seen = Seen::default();
    let proxy = interfering_proxy(etcd.url(), Pending::default(), seen.clone()).await;
    let a = Backend::start("a").await;
    let (gw, admin) = admin_kit::start_etcd(&[proxy]).await;
    // etcd holds a value weir refuses: weir serves nothing for the key, so
    // a write planned on what it serves (a create) loses its
    // compare-and-swap; the key is read and the write planned again.
    let key = "/apisix/routes/fixme";
    etcd.put(key, "{not json").await;
    admin_kit::wait_source(&gw, "the invalid key listed", |v| {
        v["invalid_keys"].to_string().contains(key)
    })
    .await;
    take(&seen);
    let p = admin
        .put(
            "/apisix/admin/routes/fixme",
            json!({"uri": "/fixme", "upstream": {"nodes": {a.node(): 1}}}),
        )
        .await;
    assert!(p.status.is_success(), "{} {}", p.status, p.text);
    assert_eq!(
        about(&take(&seen), key),
        ["/v3/kv/txn", "/v3/kv/range", "/v3/kv/txn"],
        "the first try lost, the key was read, the second try won"
    );
    let r = common::get(gw.proxy_addr(), None, "/fixme").await;
    assert_eq!(r.backend(), "a", "served when answered: {}", r.body);
    let (stored, _, _) = etcd.get(key).await.expect("stored");
    assert_eq!(stored["uri"], json!("/fixme"));
    admin_kit::wait_source(&gw, "the key leaves the invalid list", |v| {
        !v["invalid_keys"].to_string().contains(key)
    })
    .await;
    gw.shutdown().await;
}
