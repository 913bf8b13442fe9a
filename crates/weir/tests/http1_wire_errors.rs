//! HTTP/1.1 on the wire, the error cases: malformed requests, request
//! framing that could smuggle a second request past the gateway, and nodes
//! that hang up or answer with broken or ambiguous responses. Same harness
//! and same three transports as `http1_wire.rs` (see there and
//! `common/wire.rs`).

mod common;

use std::io;

use common::wire::*;

// ---------------------------------------------------------------------------
// Malformed and refused requests, and request framing a proxy and the
// servers around it must agree on (request smuggling).
// ---------------------------------------------------------------------------

async fn malformed_requests_get_400_or_a_close_and_the_gateway_keeps_serving(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let bad: [&[u8]; 2] = [
        b"GARBAGE\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: wire.test\r\n\r\n",
    ];
    for req in bad {
        let what = lossy(req);
        let mut c = Client::connect(&gw).await;
        let _ = c.send_lenient(req).await;
        match c.try_response(false).await {
            Ok(Some(r)) => {
                assert_eq!(
                    (r.version.as_str(), r.status),
                    ("HTTP/1.1", 400),
                    "{what:?}: {r:?}"
                );
                c.expect_closed(&format!("after 400 to {what:?}")).await;
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                panic!("{what:?}: the gateway hung: {e}")
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                panic!("{what:?}: unparseable answer: {e}")
            }
            // Reset: closed.
            Err(_) => {}
        }
        // A fresh connection is served.
        let mut c = Client::connect(&gw).await;
        c.send(&get("/fine")).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "after {what:?}: {r:?}");
        assert_eq!(r.text(), "/fine");
    }
    assert!(
        b.seen().iter().all(|s| s.target == "/fine"),
        "malformed requests reached the node: {:#?}",
        b.seen()
    );
}

async fn oversized_header_section_is_refused_and_the_gateway_keeps_serving(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    let mut req = b"GET /huge HTTP/1.1\r\nHost: wire.test\r\nX-Huge: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 110 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    // The gateway may stop reading (and close) before it has it all.
    let _ = c.send_lenient(&req).await;
    match c.try_response(false).await {
        Ok(Some(r)) => {
            assert!(
                r.status == 431 || r.status == 400,
                "expected 431 or 400: {r:?}"
            );
            c.expect_closed("after refusing a huge header").await;
        }
        Ok(None) => panic!("closed without an answer"),
        Err(e) => panic!("no 431/400 answer: {e}"),
    }
    assert!(b.seen().is_empty(), "the node saw {:#?}", b.seen());
    let mut c = Client::connect(&gw).await;
    c.send(&get("/fine")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Sends `req` on a fresh connection and returns the final response, or
/// `None` when the gateway closed (or reset) the connection without one.
/// With `framing_error`, an error status must be followed by a close: the
/// gateway cannot know where the next request would start.
async fn refused_or_answered(
    gw: &TestGateway,
    req: &[u8],
    framing_error: bool,
) -> Option<Response> {
    let what = lossy(&req[..req.len().min(100)]);
    let mut c = Client::connect(gw).await;
    let _ = c.send_lenient(req).await;
    match c.try_response(false).await {
        Ok(Some(r)) => {
            if framing_error && r.status >= 400 {
                c.expect_closed(&format!("after {} to {what:?}", r.status))
                    .await;
            }
            Some(r)
        }
        Ok(None) => None,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => panic!("{what:?}: the gateway hung: {e}"),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            panic!("{what:?}: unparseable answer: {e}")
        }
        Err(_) => None,
    }
}

/// Asserts `req` gets one of `statuses` or a close, and never reaches the
/// node.
async fn assert_refused(
    gw: &TestGateway,
    b: &RawBackend,
    req: &[u8],
    statuses: &[u16],
    framing_error: bool,
) {
    let what = lossy(&req[..req.len().min(100)]);
    let before = b.seen().len();
    if let Some(r) = refused_or_answered(gw, req, framing_error).await {
        assert!(
            statuses.contains(&r.status),
            "{what:?} must be refused with one of {statuses:?}: {r:?}"
        );
    }
    assert_eq!(
        b.seen().len(),
        before,
        "{what:?} reached the node: {:#?}",
        b.seen().last()
    );
}

async fn request_with_content_length_and_chunked_is_refused_or_dechunked_then_closed(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    // If the gateway framed by Content-Length, "GET /smuggled" would be a
    // second request; RFC 9112 §6.3: Transfer-Encoding wins, and the
    // connection is closed after the response.
    c.send(
        b"POST /clte HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: wire.test\r\n\r\n",
    )
    .await;
    match c.try_response(false).await {
        Ok(Some(r)) if r.status == 400 => {}
        Ok(Some(r)) => {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.text(), "abc", "the body is framed by Transfer-Encoding");
            let seen = b.only_request();
            assert!(
                !(seen.head.has("content-length") && seen.head.has("transfer-encoding")),
                "the node got both framings: {:?}",
                seen.head.headers
            );
        }
        Ok(None) => {}
        Err(e) => panic!("{e}"),
    }
    c.expect_closed("after a request with both Content-Length and Transfer-Encoding")
        .await;
    assert!(
        b.seen().iter().all(|s| s.target != "/smuggled"),
        "a smuggled request reached the node: {:#?}",
        b.seen()
    );
}

async fn invalid_request_framing_is_400_and_never_reaches_the_node(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let bad: [(&[u8], &[u16]); 6] = [
        (
            b"POST /cl HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            &[400],
        ),
        (
            b"POST /cl HTTP/1.1\r\nHost: wire.test\r\nContent-Length: +3\r\n\r\nabc",
            &[400],
        ),
        (
            b"POST /cl HTTP/1.1\r\nHost: wire.test\r\nContent-Length: -1\r\n\r\n",
            &[400],
        ),
        // A final coding other than chunked: the length is unknowable
        // (RFC 9112 §6.1: 501 for an unknown coding; 400 as well here).
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            &[400, 501],
        ),
        // Transfer-Encoding in HTTP/1.0: faulty framing (RFC 9112 §6.1).
        (
            b"POST /te HTTP/1.0\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[400],
        ),
        // Whitespace between a field name and the colon (RFC 9112 §5.1).
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[400],
        ),
    ];
    for (req, statuses) in bad {
        assert_refused(&gw, &b, req, statuses, true).await;
    }
    let mut c = Client::connect(&gw).await;
    c.send(&get("/fine")).await;
    assert_eq!(c.response().await.status, 200, "still serving");
}

async fn nul_or_bare_cr_in_a_request_header_never_reaches_the_node(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    for req in [
        &b"GET /nul HTTP/1.1\r\nHost: wire.test\r\nX-Bad: a\x00b\r\n\r\n"[..],
        &b"GET /cr HTTP/1.1\r\nHost: wire.test\r\nX-Bad: a\rb\r\n\r\n"[..],
    ] {
        // RFC 9110 §5.5: reject, or replace the character with SP.
        let before = b.seen().len();
        let answer = refused_or_answered(&gw, req, false).await;
        let seen = b.seen();
        match answer {
            Some(r) if r.status == 200 => {
                let got = seen[before..]
                    .iter()
                    .find_map(|s| s.head.get("x-bad").map(str::to_owned))
                    .unwrap_or_default();
                assert!(!got.contains(['\0', '\r']), "the node got {got:?}");
            }
            refused => {
                if let Some(r) = refused {
                    assert_eq!(r.status, 400, "{r:?}");
                }
                assert_eq!(seen.len(), before, "a refused request reached the node");
            }
        }
    }
}

async fn malformed_chunked_request_body_is_a_client_error_not_a_gateway_error(t: Transport) {
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[b.node()]).await;
    for req in [
        &b"POST /bad HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"[..],
        &b"POST /bad HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"[..],
    ] {
        if let Some(r) = refused_or_answered(&gw, req, true).await {
            assert_eq!(r.status, 400, "{:?}: {r:?}", lossy(req));
        }
    }
}

async fn http11_request_without_host_or_with_two_hosts_is_400(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    assert_refused(&gw, &b, b"GET /nohost HTTP/1.1\r\n\r\n", &[400], false).await;
    assert_refused(
        &gw,
        &b,
        b"GET /twohosts HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        &[400],
        false,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Nodes that hang up or answer badly (response splitting, truncation).
// ---------------------------------------------------------------------------

async fn post_to_a_node_that_hangs_up_is_502_and_never_replayed(t: Transport) {
    let hole = RawBackend::start(|_| Answer::HangUp).await;
    let good = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let gw = gateway_to(t, &[hole.node(), good.node()]).await;
    let mut bad_gateways = 0;
    for i in 0..4 {
        let (hole_before, good_before) = (hole.seen().len(), good.seen().len());
        let mut c = Client::connect(&gw).await;
        c.send(b"POST /p HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 5\r\n\r\nhello")
            .await;
        let r = c.response().await;
        let (hole_got, good_got) = (
            hole.seen().len() - hole_before,
            good.seen().len() - good_before,
        );
        match r.status {
            502 => {
                bad_gateways += 1;
                assert_eq!(
                    (hole_got, good_got),
                    (1, 0),
                    "POST {i}: a POST that reached a node must not be replayed"
                );
            }
            200 => {
                assert_eq!(
                    (hole_got, good_got),
                    (0, 1),
                    "POST {i}: served once, by the good node"
                );
                assert_eq!(r.text(), "hello");
            }
            s => panic!("POST {i}: unexpected status {s}: {r:?}"),
        }
    }
    assert!(bad_gateways > 0, "no POST was sent to the hanging-up node");
    assert!(
        hole.seen()
            .iter()
            .all(|s| s.method == "POST" && s.body == b"hello"),
        "{:#?}",
        hole.seen()
    );
}

async fn get_to_a_node_that_hangs_up_is_retried_on_another_node(t: Transport) {
    let hole = RawBackend::start(|_| Answer::HangUp).await;
    let good = echo_target().await;
    let gw = gateway_to(t, &[hole.node(), good.node()]).await;
    for i in 0..4 {
        let mut c = Client::connect(&gw).await;
        let path = format!("/get/{i}");
        c.send(&get(&path)).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "GET {i}: {r:?}");
        assert_eq!(r.text(), path);
    }
    assert!(
        !hole.seen().is_empty(),
        "no GET was sent to the hanging-up node, so no retry was tested"
    );
    assert_eq!(good.seen().len(), 4, "every GET ended at the good node");
}

async fn invalid_upstream_responses_are_502(t: Transport) {
    let b = RawBackend::start(|s| {
        let bytes: &[u8] = match s.target.as_str() {
            "/dup-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "/bad-status" => b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            "/not-http" => b"NOT HTTP AT ALL\r\n\r\n",
            "/space-colon" => b"HTTP/1.1 200 OK\r\nX-Sp : 1\r\nContent-Length: 0\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        Answer::SendAndClose(bytes.to_vec())
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    for path in ["/dup-cl", "/bad-status", "/not-http", "/space-colon"] {
        let mut c = Client::connect(&gw).await;
        c.send(&get(path)).await;
        let r = c.response().await;
        assert_eq!(r.status, 502, "{path}: {r:?}");
    }
}

async fn upstream_response_with_content_length_and_chunked_is_relayed_consistently(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/clte")).await;
    let r = match c.try_response(false).await {
        Ok(Some(r)) => r,
        Ok(None) => panic!("closed without a response"),
        Err(e) => panic!("the client cannot frame the relayed response: {e}"),
    };
    if r.status == 502 {
        return;
    }
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !(r.head.has("content-length") && r.head.has("transfer-encoding")),
        "both framings sent to the client: {:?}",
        r.head
    );
    assert_eq!(r.text(), "abc");
}

async fn truncated_upstream_bodies_are_not_completed_for_the_client(t: Transport) {
    let b = RawBackend::start(|s| {
        let bytes: &[u8] = match s.target.as_str() {
            "/short-length" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        };
        Answer::SendAndClose(bytes.to_vec())
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    for path in ["/short-length", "/short-chunked"] {
        let mut c = Client::connect(&gw).await;
        c.send(&get(path)).await;
        // Either a 502 (nothing sent yet) or a response the client can tell
        // is incomplete: the connection closes before its end.
        match c.try_response(false).await {
            Ok(Some(r)) => assert_eq!(
                r.status, 502,
                "{path}: a truncated body was passed off as complete: {r:?}"
            ),
            Ok(None) => {}
            Err(e) => assert_eq!(
                e.kind(),
                io::ErrorKind::UnexpectedEof,
                "{path}: expected the connection to close mid-body: {e}"
            ),
        }
    }
}

async fn junk_after_an_upstream_response_does_not_leak_into_the_next_one(t: Transport) {
    let b = RawBackend::start(|s| {
        if s.target == "/junk" {
            Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 418 Junk\r\nContent-Length: 0\r\n\r\n".to_vec())
        } else {
            Answer::Send(ok(&s.target))
        }
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/junk")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    for i in 0..3 {
        let path = format!("/next/{i}");
        c.send(&get(&path)).await;
        let r = c.response().await;
        assert_eq!(
            (r.status, r.text()),
            (200, path.clone()),
            "a response after the node sent extra bytes: {r:?}"
        );
    }
}

async fn upstream_http10_response_reaches_an_http11_client_as_http11(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(&get("/ten")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, "HTTP/1.1", "{r:?}");
    c.send(&get("/again")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
}

// ---------------------------------------------------------------------------
// Every case above, once per transport.
// ---------------------------------------------------------------------------

every_transport!(
    malformed_requests_get_400_or_a_close_and_the_gateway_keeps_serving,
    oversized_header_section_is_refused_and_the_gateway_keeps_serving,
    request_with_content_length_and_chunked_is_refused_or_dechunked_then_closed,
    invalid_request_framing_is_400_and_never_reaches_the_node,
    nul_or_bare_cr_in_a_request_header_never_reaches_the_node,
    malformed_chunked_request_body_is_a_client_error_not_a_gateway_error,
    http11_request_without_host_or_with_two_hosts_is_400,
    post_to_a_node_that_hangs_up_is_502_and_never_replayed,
    get_to_a_node_that_hangs_up_is_retried_on_another_node,
    invalid_upstream_responses_are_502,
    upstream_response_with_content_length_and_chunked_is_relayed_consistently,
    truncated_upstream_bodies_are_not_completed_for_the_client,
    junk_after_an_upstream_response_does_not_leak_into_the_next_one,
    upstream_http10_response_reaches_an_http11_client_as_http11,
);
