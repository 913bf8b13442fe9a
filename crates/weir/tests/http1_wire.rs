//! HTTP/1.1 on the wire, the well-formed cases: keep-alive and pipelining,
//! bodies both ways, headers and request targets. Raw-socket clients write
//! exact request bytes and parse the exact response bytes, and raw-socket
//! backends ("nodes") read the exact bytes weir forwards and answer with exact
//! bytes of their own (the harness is `common/wire.rs`; malformed requests
//! and misbehaving nodes are in `http1_wire_errors.rs`, timeouts in
//! `http1_wire_timeouts.rs`, hop-by-hop fields one at a time in
//! `http1_wire_hop_by_hop.rs`).
//!
//! These tests pin down what a client and a node can observe, not how weir
//! implements HTTP/1: they must hold whatever parser weir uses inside. Each
//! one runs once per `Transport` (see `every_transport!` at the end): in
//! `plain`, the client speaks cleartext HTTP/1.1 to a plain listener; in
//! `tls`, HTTP/1.1 over TLS (ALPN `http/1.1`) to a TLS listener; in
//! `plain_general`, cleartext to a plain listener with `http.fast_path: false`,
//! so that weir's general (hyper-based) HTTP/1 path serves every request
//! whichever listener kinds the fast path covers.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::wire::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::timeout;

// ---------------------------------------------------------------------------
// Keep-alive, pipelining and closing.
// ---------------------------------------------------------------------------

async fn pipelined_requests_get_responses_in_order(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    let mut all = Vec::new();
    for p in ["/one", "/two", "/three"] {
        all.extend(get(p));
    }
    c.send(&all).await;
    for p in ["/one", "/two", "/three"] {
        let r = c.response().await;
        assert_eq!(r.status, 200, "pipelined {p}: {r:?}");
        assert_eq!(
            r.text(),
            p,
            "pipelined responses must come in request order"
        );
    }
}

async fn fifty_requests_on_one_client_connection_reuse_upstream_connections(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    for i in 0..50 {
        let path = format!("/ka/{i}");
        c.send(&get(&path)).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.text(), path, "request {i}");
    }
    let seen = b.seen();
    assert_eq!(seen.len(), 50, "the backend saw every request");
    let mut conns: Vec<usize> = seen.iter().map(|s| s.conn).collect();
    conns.dedup();
    assert!(
        b.connections() <= 2,
        "upstream keep-alive: 50 sequential requests used {} TCP connections to the node \
         (connection of each request, runs collapsed: {conns:?})",
        b.connections()
    );
}

async fn connection_close_from_the_client_closes_after_the_response(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /bye HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "/bye");
    c.expect_closed("after Connection: close").await;
}

async fn http10_request_without_host_is_answered_and_closed_unless_keep_alive(t: Transport) {
    let b = RawBackend::start(|s| {
        if s.target == "/chunked" {
            Answer::Send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Answer::Send(ok(&s.target))
        }
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;

    // Plain HTTP/1.0: answered, then closed.
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /ten HTTP/1.0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "/ten");
    c.expect_closed("HTTP/1.0 without keep-alive").await;

    // HTTP/1.0 with keep-alive: if the gateway agrees (says keep-alive) the
    // connection serves another request, otherwise it closes.
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "/ka");
    if r.head.has_token("connection", "keep-alive") {
        assert_ne!(
            r.framing,
            Framing::Close,
            "keep-alive needs a delimited body"
        );
        c.send(b"GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "second HTTP/1.0 keep-alive request: {r:?}");
        assert_eq!(r.text(), "/ka2");
    } else {
        c.expect_closed("HTTP/1.0 keep-alive refused").await;
    }

    // A chunked upstream body must not reach an HTTP/1.0 client chunked
    // (RFC 9112 §6.1).
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /chunked HTTP/1.0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !r.head.has("transfer-encoding"),
        "Transfer-Encoding sent to an HTTP/1.0 client: {:?}",
        r.head
    );
    assert_eq!(r.text(), "abcdef");
}

async fn empty_line_before_a_request_is_ignored(t: Transport) {
    let b =
        RawBackend::start(|s| Answer::Send(ok(format!("{} {}", s.target, lossy(&s.body))))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    // Some old clients send CRLF after a POST body (RFC 9112 §2.2: a server
    // SHOULD ignore at least one empty line before a request-line).
    c.send(b"POST /p HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 2\r\n\r\nhi\r\nGET /next HTTP/1.1\r\nHost: wire.test\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "/p hi"), "{r:?}");
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "/next "), "{r:?}");
}

// ---------------------------------------------------------------------------
// Bodies, both ways.
// ---------------------------------------------------------------------------

async fn chunked_request_body_reaches_the_node_intact(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(s.body.len().to_string()))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    c.send(b"5;a=b\r\nhello\r\n").await;
    c.send(b"1\r\n \r\n").await;
    c.send(b"6\r\nworld!\r\n").await;
    c.send(b"0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = b.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        lossy(&seen.body),
        "hello world!",
        "de-chunked body at the node"
    );
    assert_eq!(r.text(), "12");
    assert!(
        !(seen.head.has("transfer-encoding") && seen.head.has("content-length")),
        "the node must not get both Transfer-Encoding and Content-Length: {:?}",
        seen.head.headers
    );
    // The connection is still in a clean state.
    c.send(&get("/after")).await;
    assert_eq!(
        c.response().await.status,
        200,
        "request after a chunked body"
    );
}

async fn chunked_response_is_decoded_and_the_connection_stays_usable(t: Transport) {
    let b = RawBackend::start(|s| {
        if s.target == "/chunked" {
            Answer::Send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Answer::Send(ok(&s.target))
        }
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/chunked")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Wikipedia in\r\n\r\nchunks.", "decoded body");
    assert_ne!(
        r.framing,
        Framing::Close,
        "an HTTP/1.1 client needs no close-delimited body here"
    );
    c.send(&get("/second")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "second request on the connection: {r:?}");
    assert_eq!(r.text(), "/second");
}

async fn one_mib_content_length_body_streamed_in_pieces_arrives_intact(t: Transport) {
    const LEN: usize = 1024 * 1024;
    let b = RawBackend::start(|s| Answer::Send(ok(s.body.len().to_string()))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut c = Client::connect(&gw).await;
    c.send(
        format!("PUT /big HTTP/1.1\r\nHost: wire.test\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
    )
    .await;
    for piece in payload.chunks(100_000) {
        c.send(piece).await;
    }
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), LEN.to_string(), "length the node read");
    let seen = b.only_request();
    assert_eq!(seen.body.len(), LEN, "body length at the node");
    assert!(seen.body == payload, "body bytes at the node differ");
}

/// A node that answers a POST `413` as soon as it has read the head, and
/// then holds the connection open without reading the body; any other
/// request it answers `200` with its target, and keeps reading.
struct EarlyAnswerNode {
    addr: SocketAddr,
    posts: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large";

impl EarlyAnswerNode {
    async fn start() -> EarlyAnswerNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
        let addr = listener.local_addr().expect("node address");
        let posts = Arc::new(AtomicUsize::new(0));
        let p = posts.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move {
                    let mut wire = Wire::new(stream);
                    while let Ok(Some(head)) = wire.head().await {
                        let target = head.start.split(' ').nth(1).unwrap_or_default();
                        if head.start.starts_with("POST ") {
                            p.fetch_add(1, Ordering::SeqCst);
                            let _ = wire.io.write_all(TOO_LARGE).await;
                            // Hold the connection, reading nothing more,
                            // until the test's runtime ends.
                            std::future::pending::<()>().await;
                        }
                        if wire.io.write_all(&ok(target)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        EarlyAnswerNode {
            addr,
            posts,
            accept,
        }
    }
}

impl Drop for EarlyAnswerNode {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// RFC 9112 §9.3 lets a server answer before it has read the whole request;
/// the client must get that answer while it is still sending, and then a
/// close (the gateway cannot know where the next request would start
/// without reading the rest of the body, which nobody wants any more).
async fn a_node_that_answers_before_the_body_is_sent_is_relayed(t: Transport) {
    const LEN: usize = 8 * 1024 * 1024;
    let node = EarlyAnswerNode::start().await;
    let gw = gateway_to(t, &[node.addr.to_string()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        format!("POST /upload HTTP/1.1\r\nHost: wire.test\r\nContent-Length: {LEN}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let mut w = c.take_writer();
    let sender = tokio::spawn(async move {
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..LEN / piece.len() {
            // The gateway may stop reading, or close: either is fine here.
            if w.write_all(&piece).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    let r = c.response().await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "too large"),
        "the node's early answer: {r:?}"
    );
    c.expect_closed("after an early answer to a request whose body was not read")
        .await;
    sender.abort();
    assert_eq!(
        node.posts.load(Ordering::SeqCst),
        1,
        "the POST reached the node once"
    );

    let mut c = Client::connect(&gw).await;
    c.send(&get("/after")).await;
    let r = c.response().await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/after"),
        "a fresh request after the early answer: {r:?}"
    );
}

async fn close_delimited_response_reaches_the_client_whole(t: Transport) {
    let body: Vec<u8> = (0..200_000).map(|i| b'a' + (i % 26) as u8).collect();
    let expected = body.clone();
    let b = RawBackend::start(move |_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        bytes.extend_from_slice(&body);
        Answer::SendAndClose(bytes)
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/eof")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{:?}", r.head);
    assert_eq!(
        r.body.len(),
        expected.len(),
        "body length ({:?})",
        r.framing
    );
    assert!(r.body == expected, "body bytes differ");
}

async fn head_response_has_headers_but_no_body(t: Transport) {
    let b = RawBackend::start(|s| {
        if s.method == "HEAD" {
            Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Head: yes\r\n\r\n".to_vec())
        } else {
            Answer::Send(ok(&s.target))
        }
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"HEAD /h HTTP/1.1\r\nHost: wire.test\r\n\r\n").await;
    let r = c.response_to(true).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-head"), Some("yes"), "{:?}", r.head);
    assert_eq!(
        r.header("content-length"),
        Some("1234"),
        "the node's Content-Length is relayed on HEAD: {:?}",
        r.head
    );
    // Any body bytes would be read as the start of the next response.
    c.send(&get("/after-head")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "GET after HEAD: {r:?}");
    assert_eq!(r.text(), "/after-head");
}

async fn no_body_204_and_304_keep_the_connection_usable(t: Transport) {
    let b = RawBackend::start(|s| match s.target.as_str() {
        "/204" => Answer::Send(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec()),
        "/304" => Answer::Send(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec()),
        t => Answer::Send(ok(t)),
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/204")).await;
    let r = c.response().await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("x-a"), Some("1"), "{:?}", r.head);
    assert!(
        !r.head.has("transfer-encoding"),
        "204 must not carry Transfer-Encoding: {:?}",
        r.head
    );
    c.send(&get("/304")).await;
    let r = c.response().await;
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.header("etag"), Some("\"v1\""), "{:?}", r.head);
    assert!(
        !r.head.has("transfer-encoding"),
        "304 must not carry Transfer-Encoding: {:?}",
        r.head
    );
    c.send(&get("/after")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "request after 204 and 304: {r:?}");
    assert_eq!(r.text(), "/after");
}

async fn get_with_a_content_length_body_keeps_its_body(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /search HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "abc"), "{r:?}");
}

async fn get_with_a_chunked_body_keeps_its_body(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /search HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(lossy(&b.only_request().body), "abc", "body at the node");
}

async fn expect_100_continue_gets_continue_then_the_final_response(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        b"POST /expect HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 11\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .await;
    // Wait for 100 Continue (bounded); without one, send the body anyway as
    // RFC 9110 §10.1.1 lets a client do.
    let continued = match timeout(Duration::from_secs(3), c.wire.head()).await {
        Err(_) => false,
        Ok(Ok(Some(head))) => {
            assert!(
                head.start.starts_with("HTTP/1.1 100"),
                "expected 100 Continue before the body, got {head:?}"
            );
            true
        }
        Ok(Ok(None)) => panic!("the gateway closed instead of answering Expect"),
        Ok(Err(e)) => panic!("reading the interim response: {e}"),
    };
    c.send(b"hello world").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "continued: {continued}, {r:?}");
    assert_eq!(r.text(), "hello world", "the body the node got");
    assert_eq!(lossy(&b.only_request().body), "hello world");
}

async fn interim_103_from_the_node_does_not_hide_the_final_response(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/hints")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "final");
    assert!(
        r.interim.iter().all(|s| *s == 103),
        "only the node's 103 may precede the 200: {:?}",
        r.interim
    );
    // The connection is still in step.
    c.send(&get("/again")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "final");
}

// ---------------------------------------------------------------------------
// Headers, request targets and hosts.
// ---------------------------------------------------------------------------

async fn hop_by_hop_headers_are_removed_both_ways_and_forwarded_headers_added(t: Transport) {
    hop_by_hop(t, true).await;
}

/// The same without `Upgrade` in the request: an implementation may treat
/// any `Upgrade` field specially, and the ordinary case must hold as well.
async fn hop_by_hop_headers_are_removed_without_an_upgrade_field_too(t: Transport) {
    hop_by_hop(t, false).await;
}

async fn hop_by_hop(t: Transport, with_upgrade: bool) {
    let b = RawBackend::start(|_| {
        Answer::Send(
            b"HTTP/1.1 200 OK\r\nConnection: X-Backend-Secret\r\nX-Backend-Secret: 1\r\n\
              Keep-Alive: timeout=1\r\nX-Backend-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    let upgrade = if with_upgrade { "Upgrade: foo\r\n" } else { "" };
    c.send(
        format!(
            "GET /hop HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\n\
             {upgrade}X-Forwarded-For: 1.2.3.4\r\nX-Kept: yes\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok");

    let seen = b.only_request();
    let h = &seen.head;
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            !h.has(gone),
            "the node must not see {gone}: {:?}",
            h.headers
        );
    }
    assert!(
        !h.has_token("connection", "x-secret"),
        "Connection still names X-Secret: {:?}",
        h.headers
    );
    assert_eq!(h.get("x-kept"), Some("yes"), "end-to-end header kept");
    assert_eq!(h.get("x-forwarded-for"), Some("1.2.3.4, 127.0.0.1"));
    assert_eq!(h.all("x-forwarded-for").len(), 1, "{:?}", h.headers);
    assert_eq!(h.get("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(h.get("x-forwarded-proto"), Some(t.scheme()));
    assert_eq!(h.get("x-forwarded-host"), Some("shop.test"));
    let port = gw.proxy_addr().port().to_string();
    assert_eq!(h.get("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(h.get("host"), Some("shop.test"), "pass_host: pass");

    for gone in ["x-backend-secret", "keep-alive"] {
        assert!(
            !r.head.has(gone),
            "the client must not see {gone}: {:?}",
            r.head.headers
        );
    }
    assert!(
        !r.head.has_token("connection", "x-backend-secret"),
        "Connection still names X-Backend-Secret: {:?}",
        r.head.headers
    );
    assert_eq!(r.header("x-backend-kept"), Some("yes"));
    // The connection is still usable.
    c.send(&get("/again")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
}

async fn duplicate_headers_are_preserved_in_order(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Between: 1\r\n\
              Set-Cookie: b=2; Path=/\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        b"GET /multi HTTP/1.1\r\nHost: wire.test\r\nX-Multi: a\r\nX-Other: o\r\nX-Multi: b\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.head.all("set-cookie"),
        vec!["a=1; Path=/", "b=2; Path=/"],
        "two Set-Cookie lines, in order, never combined: {:?}",
        r.head.headers
    );
    let seen = b.only_request();
    assert_eq!(
        seen.head.list("x-multi"),
        vec!["a", "b"],
        "both X-Multi values, in order: {:?}",
        seen.head.headers
    );
}

async fn absolute_form_target_reaches_the_node_in_origin_form(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = b.only_request();
    assert_eq!(seen.target, "/x?y=1", "origin-form at the node");
    assert_eq!(seen.head.get("host"), Some("example.com"));
}

async fn http10_request_without_host_reaches_the_node_with_a_host_header(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /nohost HTTP/1.0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = b.only_request();
    if seen.version == "HTTP/1.1" {
        assert!(
            seen.head.has("host"),
            "HTTP/1.1 request forwarded without Host: {:?} {:?}",
            seen.head.start,
            seen.head.headers
        );
    }
}

async fn absolute_form_authority_replaces_the_host_header(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    let r = c.response().await;
    if r.status == 400 {
        return;
    }
    assert_eq!(r.status, 200, "{r:?}");
    let seen = b.only_request();
    assert_eq!(seen.target, "/x");
    assert_eq!(
        seen.head.get("host"),
        Some("b.test"),
        "the host weir routed on is the host the node sees: {:?}",
        seen.head.headers
    );
}

/// Several X-Forwarded-For fields reach the node as one list, in order,
/// then the client (nginx's `$proxy_add_x_forwarded_for`): none is lost.
async fn several_x_forwarded_for_fields_are_joined(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /xff HTTP/1.1\r\nHost: wire.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2, 192.0.2.3\r\nX-Forwarded-For: \r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
    let h = b.only_request().head;
    assert_eq!(
        h.all("x-forwarded-for"),
        ["192.0.2.1, 192.0.2.2, 192.0.2.3, 127.0.0.1"],
        "{t:?}"
    );
}

/// A `#fragment` in the request target is not part of the request: the
/// node gets the target without it, on every path.
async fn a_fragment_in_the_target_does_not_reach_the_node(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(b"GET /frag?x=1#section-2 HTTP/1.1\r\nHost: wire.test\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{t:?}: {r:?}");
    assert_eq!(b.only_request().target, "/frag?x=1", "{t:?}");
}

// ---------------------------------------------------------------------------
// Every case above, once per transport.
// ---------------------------------------------------------------------------

every_transport!(
    a_fragment_in_the_target_does_not_reach_the_node,
    several_x_forwarded_for_fields_are_joined,
    pipelined_requests_get_responses_in_order,
    fifty_requests_on_one_client_connection_reuse_upstream_connections,
    connection_close_from_the_client_closes_after_the_response,
    http10_request_without_host_is_answered_and_closed_unless_keep_alive,
    empty_line_before_a_request_is_ignored,
    chunked_request_body_reaches_the_node_intact,
    chunked_response_is_decoded_and_the_connection_stays_usable,
    one_mib_content_length_body_streamed_in_pieces_arrives_intact,
    a_node_that_answers_before_the_body_is_sent_is_relayed,
    close_delimited_response_reaches_the_client_whole,
    head_response_has_headers_but_no_body,
    no_body_204_and_304_keep_the_connection_usable,
    get_with_a_content_length_body_keeps_its_body,
    get_with_a_chunked_body_keeps_its_body,
    expect_100_continue_gets_continue_then_the_final_response,
    interim_103_from_the_node_does_not_hide_the_final_response,
    hop_by_hop_headers_are_removed_both_ways_and_forwarded_headers_added,
    hop_by_hop_headers_are_removed_without_an_upgrade_field_too,
    duplicate_headers_are_preserved_in_order,
    absolute_form_target_reaches_the_node_in_origin_form,
    http10_request_without_host_reaches_the_node_with_a_host_header,
    absolute_form_authority_replaces_the_host_header,
);
