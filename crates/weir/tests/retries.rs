//! Which failed attempts are sent again to another node, over the wire.
//!
//! docs/configuration.md ("Retries"): a request that may have reached a
//! node (the connection broke after sending) is retried only when its
//! method is idempotent (`GET HEAD OPTIONS TRACE PUT DELETE`) and it has no
//! body; a request that never reached a node (connect refused or timed out)
//! is retried whatever its method. The bodyless cases matter: a POST or
//! PATCH with `Content-Length: 0` (or no body framing at all) has no body,
//! so only its method keeps it from being replayed.
//!
//! The HTTP/1.1 cases run once per transport (`every_transport!`, see
//! `common/wire.rs`): the fast path in cleartext and over TLS, and the
//! general path (`http.fast_path: false`); the HTTP/2 cases (h2c prior
//! knowledge) go through the general path from an HTTP/2 client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::wire::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// Requests per (method, framing) case: round robin over two nodes sends
/// about half of them to the node that hangs up.
const ROUNDS: usize = 4;

/// A node that reads the request and closes the connection without an
/// answer (a pod that dies mid-request), and one that answers every request
/// `200` with `<method> <target>`.
async fn hanging_up_and_good_nodes() -> (RawBackend, RawBackend) {
    let hole = RawBackend::start(|_| Answer::HangUp).await;
    let good = RawBackend::start(|s| Answer::Send(ok(format!("{} {}", s.method, s.target)))).await;
    (hole, good)
}

/// A bodyless request: `Content-Length: 0`, or no body framing at all.
fn bodyless(method: &str, path: &str, content_length: bool) -> Vec<u8> {
    let cl = if content_length {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    format!("{method} {path} HTTP/1.1\r\nHost: wire.test\r\n{cl}\r\n").into_bytes()
}

async fn bodyless_post_and_patch_that_reached_a_node_that_hung_up_are_never_sent_again(
    t: Transport,
) {
    let (hole, good) = hanging_up_and_good_nodes().await;
    let gw = gateway_to(t, &[hole.node(), good.node()]).await;
    for method in ["POST", "PATCH"] {
        for content_length in [true, false] {
            let mut reached_the_hole = 0;
            for i in 0..ROUNDS {
                let what = format!("{method} {i} (Content-Length: 0: {content_length})");
                let path = format!("/{method}/{content_length}/{i}");
                let (hole_before, good_before) = (hole.seen().len(), good.seen().len());
                let mut c = Client::connect(&gw).await;
                c.send(&bodyless(method, &path, content_length)).await;
                let r = c.response().await;
                let (hole_got, good_got) = (
                    hole.seen().len() - hole_before,
                    good.seen().len() - good_before,
                );
                match r.status {
                    502 => {
                        reached_the_hole += 1;
                        assert_eq!(
                            (hole_got, good_got),
                            (1, 0),
                            "{what}: a non-idempotent request that reached a node must \
                             not be sent again"
                        );
                    }
                    200 => {
                        assert_eq!((hole_got, good_got), (0, 1), "{what}: served once");
                        assert_eq!(r.text(), format!("{method} {path}"), "{what}");
                    }
                    s => panic!("{what}: unexpected status {s}: {r:?}"),
                }
            }
            assert!(
                reached_the_hole > 0,
                "no {method} (Content-Length: 0: {content_length}) reached the node that \
                 hangs up, so nothing was tested"
            );
        }
    }
    assert!(
        hole.seen()
            .iter()
            .all(|s| (s.method == "POST" || s.method == "PATCH") && s.body.is_empty()),
        "{:#?}",
        hole.seen()
    );
}

async fn bodyless_put_and_delete_that_reached_a_node_that_hung_up_are_retried_on_another_node(
    t: Transport,
) {
    let (hole, good) = hanging_up_and_good_nodes().await;
    let gw = gateway_to(t, &[hole.node(), good.node()]).await;
    for method in ["PUT", "DELETE"] {
        for content_length in [true, false] {
            let hole_before = hole.seen().len();
            for i in 0..ROUNDS {
                let what = format!("{method} {i} (Content-Length: 0: {content_length})");
                let path = format!("/{method}/{content_length}/{i}");
                let good_before = good.seen().len();
                let mut c = Client::connect(&gw).await;
                c.send(&bodyless(method, &path, content_length)).await;
                let r = c.response().await;
                assert_eq!(r.status, 200, "{what}: retried on the good node: {r:?}");
                assert_eq!(r.text(), format!("{method} {path}"), "{what}");
                assert_eq!(
                    good.seen().len() - good_before,
                    1,
                    "{what}: the good node served it once"
                );
            }
            assert!(
                hole.seen().len() > hole_before,
                "no {method} (Content-Length: 0: {content_length}) reached the node that \
                 hangs up, so no retry was tested"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A node that never answers the connection attempt (timeout.connect).
// ---------------------------------------------------------------------------

/// An address whose SYNs go unanswered, and what keeps it so: a listener
/// with a backlog of 0 that never accepts, its accept queue filled by
/// connections held open. Linux drops a SYN for a listener whose accept
/// queue is full, so a connect attempt to it hangs until its timeout (the
/// kernel retransmits the SYN after 1 s, 3 s...): a node that is certain not
/// to answer, on loopback, with no port that could be taken by anyone else.
struct Unanswered {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

async fn unanswered_address() -> Unanswered {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("listener address");
    let mut fillers = Vec::new();
    // Fill the accept queue until a connect attempt goes unanswered (the
    // signal that the address is ready), trying a bounded number of times.
    for _ in 0..16 {
        match timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect to the never-accepting listener: {e}"),
            Err(_) => {
                return Unanswered {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                }
            }
        }
    }
    panic!(
        "{} connections to a listener with backlog 0 that never accepts all completed: \
         its SYNs are not being dropped",
        fillers.len()
    );
}

/// The connect timeout the cases below configure, in seconds; `send` and
/// `read` are far longer, so only the connect timeout can end an attempt
/// on the unanswered node in time.
const CONNECT_TIMEOUT: f64 = 0.5;

/// Generous room over the connect timeout for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(4);

/// The route of [`gateway_with`] to `nodes`, with that connect timeout.
fn with_connect_timeout(nodes: &[String]) -> serde_json::Value {
    let nodes: serde_json::Map<String, serde_json::Value> =
        nodes.iter().map(|n| (n.clone(), 1.into())).collect();
    let upstream = serde_json::json!({
        "nodes": nodes,
        "timeout": {"connect": CONNECT_TIMEOUT, "send": 60, "read": 60},
    });
    serde_json::json!({"routes": [{"id": "wire", "uri": "/*", "upstream": upstream}]})
}

async fn a_node_that_never_answers_the_connect_is_504_after_the_connect_timeout(t: Transport) {
    let dead = unanswered_address().await;
    let nodes = [dead.addr.to_string()];
    let gw = gateway_with(t, &nodes, with_connect_timeout(&nodes)).await;
    let mut c = Client::connect(&gw).await;
    let sent = Instant::now();
    c.send(&get("/connect")).await;
    let r = c.response().await;
    let after = sent.elapsed();
    assert_eq!(r.status, 504, "connect timed out: {r:?}");
    let limit = Duration::from_secs_f64(CONNECT_TIMEOUT);
    assert!(
        after >= limit.mul_f64(0.9),
        "answered after {after:?}, before the {limit:?} connect timeout"
    );
    assert!(
        after < limit + MARGIN,
        "answered after {after:?}: not the {limit:?} connect timeout's doing"
    );
}

/// A request that never reached a node is retried whatever its method: a
/// POST with a body, first sent to the node that never answers the connect,
/// is answered by the other node, once.
async fn a_post_whose_connect_timed_out_is_retried_on_another_node(t: Transport) {
    let dead = unanswered_address().await;
    let good = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let nodes = [dead.addr.to_string(), good.node()];
    let gw = gateway_with(t, &nodes, with_connect_timeout(&nodes)).await;
    let mut slow = 0;
    for i in 0..ROUNDS {
        let mut c = Client::connect(&gw).await;
        let sent = Instant::now();
        c.send(b"POST /p HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 5\r\n\r\nhello")
            .await;
        let r = c.response().await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "POST {i}: {r:?}"
        );
        // The attempts that went to the dead node first waited for its
        // connect timeout.
        if sent.elapsed() >= Duration::from_secs_f64(CONNECT_TIMEOUT).mul_f64(0.9) {
            slow += 1;
        }
    }
    assert_eq!(
        good.seen().len(),
        ROUNDS,
        "the good node got each POST once"
    );
    assert!(
        good.seen().iter().all(|s| s.body == b"hello"),
        "{:#?}",
        good.seen()
    );
    assert!(
        slow > 0,
        "no POST was tried on the node that never answers the connect first"
    );
}

every_transport!(
    bodyless_post_and_patch_that_reached_a_node_that_hung_up_are_never_sent_again,
    bodyless_put_and_delete_that_reached_a_node_that_hung_up_are_retried_on_another_node,
    a_node_that_never_answers_the_connect_is_504_after_the_connect_timeout,
    a_post_whose_connect_timed_out_is_retried_on_another_node,
);

// ---------------------------------------------------------------------------
// The same over HTTP/2 (h2c prior knowledge: the general path).
// ---------------------------------------------------------------------------

async fn h2c(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
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

/// Sends a bodyless request (END_STREAM on its HEADERS frame), with
/// `content-length: 0` if asked; returns the status and the body.
async fn h2_bodyless(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    content_length: bool,
) -> (u16, String) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://wire.test{path}"));
    if content_length {
        b = b.header("content-length", "0");
    }
    let req = b.body(Full::new(Bytes::new())).expect("request");
    let resp = timeout(IO_TIMEOUT, sender.send_request(req))
        .await
        .expect("h2 request timed out")
        .expect("h2 request");
    let status = resp.status().as_u16();
    let body = timeout(IO_TIMEOUT, resp.into_body().collect())
        .await
        .expect("h2 body timed out")
        .expect("h2 body")
        .to_bytes();
    (status, lossy(&body))
}

#[tokio::test]
async fn h2_bodyless_post_and_patch_that_reached_a_node_that_hung_up_are_never_sent_again() {
    let (hole, good) = hanging_up_and_good_nodes().await;
    let gw = gateway_to(Transport::Plain, &[hole.node(), good.node()]).await;
    let mut s = h2c(gw.proxy_addr()).await;
    for method in ["POST", "PATCH"] {
        for content_length in [true, false] {
            let mut reached_the_hole = 0;
            for i in 0..ROUNDS {
                let what = format!("h2 {method} {i} (content-length: 0: {content_length})");
                let path = format!("/{method}/{content_length}/{i}");
                let (hole_before, good_before) = (hole.seen().len(), good.seen().len());
                let (status, body) = h2_bodyless(&mut s, method, &path, content_length).await;
                let (hole_got, good_got) = (
                    hole.seen().len() - hole_before,
                    good.seen().len() - good_before,
                );
                match status {
                    502 => {
                        reached_the_hole += 1;
                        assert_eq!(
                            (hole_got, good_got),
                            (1, 0),
                            "{what}: a non-idempotent request that reached a node must \
                             not be sent again"
                        );
                    }
                    200 => {
                        assert_eq!((hole_got, good_got), (0, 1), "{what}: served once");
                        assert_eq!(body, format!("{method} {path}"), "{what}");
                    }
                    s => panic!("{what}: unexpected status {s}: {body}"),
                }
            }
            assert!(
                reached_the_hole > 0,
                "no h2 {method} (content-length: 0: {content_length}) reached the node \
                 that hangs up, so nothing was tested"
            );
        }
    }
}

#[tokio::test]
async fn h2_bodyless_put_and_delete_that_reached_a_node_that_hung_up_are_retried_on_another_node() {
    let (hole, good) = hanging_up_and_good_nodes().await;
    let gw = gateway_to(Transport::Plain, &[hole.node(), good.node()]).await;
    let mut s = h2c(gw.proxy_addr()).await;
    for method in ["PUT", "DELETE"] {
        for content_length in [true, false] {
            let hole_before = hole.seen().len();
            for i in 0..ROUNDS {
                let what = format!("h2 {method} {i} (content-length: 0: {content_length})");
                let path = format!("/{method}/{content_length}/{i}");
                let good_before = good.seen().len();
                let (status, body) = h2_bodyless(&mut s, method, &path, content_length).await;
                assert_eq!(status, 200, "{what}: retried on the good node: {body}");
                assert_eq!(body, format!("{method} {path}"), "{what}");
                assert_eq!(
                    good.seen().len() - good_before,
                    1,
                    "{what}: the good node served it once"
                );
            }
            assert!(
                hole.seen().len() > hole_before,
                "no h2 {method} (content-length: 0: {content_length}) reached the node \
                 that hangs up, so no retry was tested"
            );
        }
    }
}

#[tokio::test]
async fn h2_post_whose_connect_timed_out_is_retried_on_another_node() {
    let dead = unanswered_address().await;
    let good = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let nodes = [dead.addr.to_string(), good.node()];
    let gw = gateway_with(Transport::Plain, &nodes, with_connect_timeout(&nodes)).await;
    let mut s = h2c(gw.proxy_addr()).await;
    for i in 0..ROUNDS {
        let req = http::Request::post("http://wire.test/p")
            .body(Full::new(Bytes::from_static(b"hello")))
            .expect("request");
        let resp = timeout(IO_TIMEOUT, s.send_request(req))
            .await
            .expect("h2 request timed out")
            .expect("h2 request");
        let status = resp.status().as_u16();
        let body = timeout(IO_TIMEOUT, resp.into_body().collect())
            .await
            .expect("h2 body timed out")
            .expect("h2 body")
            .to_bytes();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]), "h2 POST {i}");
    }
    assert_eq!(
        good.seen().len(),
        ROUNDS,
        "the good node got each POST once"
    );
}
