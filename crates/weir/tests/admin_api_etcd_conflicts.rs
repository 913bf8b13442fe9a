//! The compare-and-swap of Admin API writes with etcd, made to lose on
//! purpose: an HTTP proxy between weir and etcd writes the same key
//! directly to etcd just before it forwards weir's transaction, so the key
//! changed between weir's read and its compare-and-swap, every time, with
//! no timing involved. A PUT, a create and a DELETE that lose answer 409
//! (APISIX-style `error_msg`) and change nothing: the other writer's value
//! stands, in etcd and on the proxy. A PATCH that loses is planned again
//! on the new value (nothing of either write is lost).

mod admin_kit;
mod common;

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

/// Writes to make directly in etcd before the next transaction is
/// forwarded: (key, value), or (key, None) for a delete.
type Pending = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An HTTP proxy to etcd at `etcd` that first makes the pending writes when
/// it sees `/v3/kv/txn`; its URL.
async fn interfering_proxy(etcd: String, pending: Pending) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr: SocketAddr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (etcd, pending) = (etcd.clone(), pending.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (etcd, pending) = (etcd.clone(), pending.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if path == "/v3/kv/txn" {
                            let writes: Vec<_> = std::mem::take(
                                &mut *pending.lock().unwrap_or_else(|p| p.into_inner()),
                            );
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

fn arm(pending: &Pending, key: &str, value: Option<Value>) {
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key.to_owned(), value.map(|v| v.to_string())));
}

#[tokio::test]
async fn a_write_that_loses_the_compare_and_swap_gets_409_and_changes_nothing() {
    let etcd = EtcdServer::start().await;
    let pending: Pending = Arc::default();
    let proxy = interfering_proxy(etcd.url(), pending.clone()).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let route = |node: String, desc: &str| json!({"uri": "/r", "desc": desc, "upstream": {"nodes": {node: 1}}});
    let (gw, admin) = admin_kit::start_etcd(&[proxy]).await;
    admin
        .put_ok("/apisix/admin/routes/r", route(a.node(), "mine"))
        .await;
    let r = common::get(gw.proxy_addr(), None, "/r").await;
    assert_eq!(r.backend(), "a", "{}", r.body);

    // PUT: another writer replaces the route between weir's read and its
    // compare-and-swap.
    arm(
        &pending,
        "/apisix/routes/r",
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
    arm(
        &pending,
        "/apisix/routes/r",
        Some(route(b.node(), "theirs-2")),
    );
    let d = admin.delete("/apisix/admin/routes/r").await;
    assert_eq!(d.status, StatusCode::CONFLICT, "{}", d.text);
    let (stored, _, _) = etcd.get("/apisix/routes/r").await.expect("not deleted");
    assert_eq!(stored["desc"], json!("theirs-2"));

    // A create of an id someone else creates at that moment.
    let at_n = |node: String, desc: &str| json!({"uri": "/n", "desc": desc, "upstream": {"nodes": {node: 1}}});
    arm(
        &pending,
        "/apisix/routes/n",
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
