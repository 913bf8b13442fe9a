//! HTTP/1.1 on the wire, a client that leaves while the node works: the
//! gateway notices at once, closes its connection to the node (which is then
//! free to stop working) and logs 499, as nginx does — while a client that
//! merely sends its next request early (pipelining) is still served.
//! Same harness and same three transports as `http1_wire.rs` (see there and
//! `common/wire.rs`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// Bound on the wait for the gateway to close the node's connection once
/// the client is gone (it should take a few milliseconds; without the
/// watch, it takes until the node answers, which these nodes never do).
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A node that takes one connection, reads a request head, writes
/// `answer_start` (maybe nothing, maybe a head and part of a body) and then
/// stalls, reporting when it has the request and when the gateway closes
/// the connection.
struct StallingNode {
    addr: String,
    got_request: mpsc::Receiver<()>,
    closed: mpsc::Receiver<()>,
}

impl StallingNode {
    async fn start(answer_start: &'static [u8]) -> StallingNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
        let addr = listener.local_addr().expect("node address").to_string();
        let (got_tx, got_request) = mpsc::channel(1);
        let (closed_tx, closed) = mpsc::channel(1);
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut wire = Wire::new(stream);
            if !matches!(wire.head().await, Ok(Some(_))) {
                return;
            }
            if wire.io.write_all(answer_start).await.is_err() {
                return;
            }
            let _ = got_tx.send(()).await;
            let mut b = [0u8; 1024];
            loop {
                match wire.io.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = closed_tx.send(()).await;
            // The listener stays open: a retry would find it.
            let _keep = listener;
            std::future::pending::<()>().await;
        });
        StallingNode {
            addr,
            got_request,
            closed,
        }
    }

    async fn has_request(&mut self) {
        timeout(IO_TIMEOUT, self.got_request.recv())
            .await
            .expect("the request never reached the node")
            .expect("the node stopped");
    }

    async fn assert_closed_by_gateway(&mut self, what: &str) {
        match timeout(CLOSE_BOUND, self.closed.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("{what}: the node stopped"),
            Err(_) => panic!(
                "{what}: the gateway still held the node's connection {CLOSE_BOUND:?} after the client left"
            ),
        }
    }
}

/// A gateway to `node` that writes a JSON access log to `log`.
async fn gateway_logging(t: Transport, node: &str, log: &Path) -> TestGateway {
    let extra = serde_json::json!({
        "gateway": {"access_log": {"path": log.to_str().expect("UTF-8 path"), "format": "json"}}
    });
    gateway_with(t, &[node.to_owned()], extra).await
}

/// The first access-log line, once written (bounded wait).
async fn first_log_line(path: &Path) -> serde_json::Value {
    let line = timeout(IO_TIMEOUT, async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no access log line written");
    serde_json::from_str(&line).expect("a JSON access log line")
}

async fn a_client_that_leaves_before_the_answer_frees_the_node(t: Transport) {
    let mut node = StallingNode::start(b"").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.json");
    let gw = gateway_logging(t, &node.addr, &log).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/slow")).await;
    node.has_request().await;
    drop(c);
    node.assert_closed_by_gateway("client gone before the response head")
        .await;
    let line = first_log_line(&log).await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["uri"], "/slow", "{line}");
}

async fn a_client_that_leaves_mid_body_frees_the_node(t: Transport) {
    let mut node =
        StallingNode::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("access.json");
    let gw = gateway_logging(t, &node.addr, &log).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/stream")).await;
    node.has_request().await;
    let head = timeout(IO_TIMEOUT, c.wire.head())
        .await
        .expect("no response head in time")
        .expect("read the response head")
        .expect("a response head");
    assert!(head.start.contains(" 200 "), "{head:?}");
    drop(c);
    node.assert_closed_by_gateway("client gone in the middle of a streamed body")
        .await;
    // The node's status went out; the log keeps it (nginx does the same).
    let line = first_log_line(&log).await;
    assert_eq!(line["status"], 200, "{line}");
}

/// The watch must not mistake a pipelined request for the client leaving,
/// nor lose its bytes: both requests are answered, in order.
async fn a_request_pipelined_while_the_node_works_is_served_next(t: Transport) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
    let addr = listener.local_addr().expect("node address").to_string();
    let (got_tx, mut got_first) = mpsc::channel(1);
    let (release_tx, released) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(released)));
    tokio::spawn(async move {
        // Any connection the gateway opens: the first request waits for
        // the release, every request is answered with its own path.
        while let Ok((stream, _)) = listener.accept().await {
            let (got_tx, release) = (got_tx.clone(), release.clone());
            tokio::spawn(async move {
                let mut wire = Wire::new(stream);
                while let Ok(Some(head)) = wire.head().await {
                    if let Some(released) = release.lock().await.take() {
                        let _ = got_tx.send(head.start.clone()).await;
                        if released.await.is_err() {
                            return;
                        }
                    }
                    let path = head.start.split(' ').nth(1).unwrap_or_default().to_owned();
                    if wire
                        .io
                        .write_all(&ok(path.trim_start_matches('/')))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let gw = gateway_to(t, std::slice::from_ref(&addr)).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/first")).await;
    let first = timeout(IO_TIMEOUT, got_first.recv())
        .await
        .expect("the first request never reached the node")
        .expect("the node stopped");
    assert!(first.contains("/first"), "{first}");
    // Sent while the node works on the first one.
    c.send(&get("/second")).await;
    let _ = release_tx.send(());
    let r1 = c.response().await;
    assert_eq!((r1.status, r1.text().as_str()), (200, "first"), "{r1:?}");
    let r2 = c.response().await;
    assert_eq!((r2.status, r2.text().as_str()), (200, "second"), "{r2:?}");
}

every_transport!(
    a_client_that_leaves_before_the_answer_frees_the_node,
    a_client_that_leaves_mid_body_frees_the_node,
    a_request_pipelined_while_the_node_works_is_served_next,
);
