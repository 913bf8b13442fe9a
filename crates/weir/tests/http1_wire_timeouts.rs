//! HTTP/1.1 on the wire, the client-side timeouts: a client that stops
//! sending, between requests, in the middle of a request head, or before
//! its TLS handshake, loses its connection after `gateway.http.header_timeout`;
//! a node that stalls mid-body is cut off after its `timeout.read`.
//! Same harness and same three transports as `http1_wire.rs` (see there and
//! `common/wire.rs`).

mod common;

use std::io;
use std::time::Duration;

use common::wire::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Bound on the wait for the gateway to act on the 1 s header timeout.
const CLOSE_BOUND: Duration = Duration::from_secs(6);

/// Sooner than this, a close is not the timeout's doing.
const NOT_BEFORE: Duration = Duration::from_millis(500);

/// A gateway to `nodes` whose clients get 1 s to send a request head.
async fn gateway_with_header_timeout(t: Transport, nodes: &[String]) -> TestGateway {
    let extra = serde_json::json!({"gateway": {"http": {"header_timeout": 1}}});
    gateway_with(t, nodes, extra).await
}

/// Asserts that the gateway closed (or reset) `io` with nothing sent, no
/// sooner than `NOT_BEFORE` and no later than `CLOSE_BOUND` after `since`.
async fn assert_closed_by_timeout<R: tokio::io::AsyncRead + Unpin>(
    io: &mut R,
    since: Instant,
    what: &str,
) {
    let mut b = [0u8; 1024];
    let read = timeout(CLOSE_BOUND, io.read(&mut b)).await;
    let after = since.elapsed();
    match read {
        Err(_) => panic!("{what}: the connection is still open after {CLOSE_BOUND:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{what}: expected a close, got {:?} after {after:?}",
            lossy(&b[..n])
        ),
    }
    assert!(
        after >= NOT_BEFORE,
        "{what}: closed after {after:?}, before the 1 s header timeout could fire"
    );
}

async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_with_header_timeout(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/one")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "/one"), "{r:?}");
    let idle = Instant::now();
    assert!(
        c.wire.buf.is_empty(),
        "unexpected bytes after the response: {:?}",
        lossy(&c.wire.buf)
    );
    assert_closed_by_timeout(&mut c.wire.io, idle, "an idle keep-alive connection").await;
}

/// docs/operations.md: "A client has `gateway.http.header_timeout` to
/// finish a request head once it starts (408, then close)"; with the fast
/// path switched off, hyper's header timeout closes without the 408 (as the
/// docs say).
async fn a_partial_request_head_gets_408_after_the_header_timeout_then_a_close(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_with_header_timeout(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    let sent = Instant::now();
    if t == Transport::PlainGeneral {
        assert!(c.wire.buf.is_empty(), "{:?}", lossy(&c.wire.buf));
        assert_closed_by_timeout(&mut c.wire.io, sent, "a partial head (general path)").await;
        assert!(b.seen().is_empty(), "the node saw {:#?}", b.seen());
        return;
    }
    match timeout(CLOSE_BOUND, c.read_response(false)).await {
        Err(_) => panic!("the gateway waited more than {CLOSE_BOUND:?} for the rest of the head"),
        Ok(Ok(Some(r))) => {
            let after = sent.elapsed();
            assert_eq!(r.status, 408, "{r:?}");
            assert!(after >= NOT_BEFORE, "408 after only {after:?}");
            c.expect_closed("after 408").await;
        }
        Ok(Ok(None)) => panic!("closed after {:?} without the promised 408", sent.elapsed()),
        Ok(Err(e)) => panic!("no 408 after {:?}: {e}", sent.elapsed()),
    }
    assert!(b.seen().is_empty(), "the node saw {:#?}", b.seen());
}

/// A node that sends part of a body and then nothing is cut off after its
/// read timeout (1 s here): the client gets the head and the bytes that came,
/// then the connection closes short of the promised length. Before, the
/// general path waited on such a node forever.
async fn a_node_that_stalls_mid_body_is_cut_off_after_its_read_timeout(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec())
    })
    .await;
    let route = serde_json::json!({
        "id": "wire",
        "uri": "/*",
        "upstream": {"nodes": {b.node(): 1}, "timeout": {"connect": 5, "send": 5, "read": 1}},
    });
    let gw = gateway_with(t, &[b.node()], serde_json::json!({"routes": [route]})).await;
    let mut c = Client::connect(&gw).await;
    let since = Instant::now();
    c.send(&get("/stall")).await;
    match timeout(CLOSE_BOUND, c.try_response(false)).await {
        Err(_) => panic!("no end after {CLOSE_BOUND:?}: the stalled body was never cut off"),
        Ok(Ok(Some(r))) => panic!("a stalled body was passed off as complete: {r:?}"),
        Ok(Ok(None)) => panic!("closed before the response head was relayed"),
        Ok(Err(e)) => assert_eq!(
            e.kind(),
            io::ErrorKind::UnexpectedEof,
            "expected the connection to close mid-body: {e}"
        ),
    }
    let after = since.elapsed();
    assert!(
        after >= NOT_BEFORE,
        "cut off after {after:?}, before the 1 s read timeout could fire"
    );
}

every_transport!(
    an_idle_keep_alive_connection_is_closed_after_the_header_timeout,
    a_partial_request_head_gets_408_after_the_header_timeout_then_a_close,
    a_node_that_stalls_mid_body_is_cut_off_after_its_read_timeout,
);

/// A client that opens a TCP connection to a TLS listener and never starts
/// the handshake does not hold the connection past the header timeout.
#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped() {
    let b = echo_target().await;
    let gw = gateway_with_header_timeout(Transport::Tls, &[b.node()]).await;
    let mut tcp = timeout(IO_TIMEOUT, TcpStream::connect(gw.proxy_addr()))
        .await
        .expect("connect to the gateway timed out")
        .expect("connect to the gateway");
    let opened = Instant::now();
    assert_closed_by_timeout(&mut tcp, opened, "a connection with no TLS handshake").await;
    assert!(b.seen().is_empty(), "the node saw {:#?}", b.seen());
}
