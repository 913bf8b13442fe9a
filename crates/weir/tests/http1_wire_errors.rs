//! HTTP/1.1 on the wire, the error cases: malformed requests, request
//! framing that could smuggle a second request past the gateway, and nodes
//! that hang up or answer with broken or ambiguous responses. Same harness
//! and same three transports as `http1_wire.rs` (see there and
//! `common/wire.rs`).

mod common;

use std::io;
use std::time::Duration;

use common::wire::*;
use tokio::time::timeout;

// ---------------------------------------------------------------------------
// Malformed and refused requests, and request framing a proxy and the
// servers around it must agree on (request smuggling).
// ---------------------------------------------------------------------------

/// docs/architecture.md: "Malformed heads get 400 (431 for heads over
/// 64 KiB or 100 fields) and the connection closes" — an answer, not a
/// silent close.
async fn malformed_request_heads_get_400_then_a_close_and_the_gateway_keeps_serving(t: Transport) {
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
            Ok(None) => panic!("{what:?}: closed without the promised 400"),
            Err(e) => panic!("{what:?}: no 400: {e}"),
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

/// docs/architecture.md: 431 for a head over 64 KiB or with more than 100
/// fields, then a close.
async fn oversized_header_section_or_too_many_fields_get_431_and_the_gateway_keeps_serving(
    t: Transport,
) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut huge = b"GET /huge HTTP/1.1\r\nHost: wire.test\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 110 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut many = b"GET /many HTTP/1.1\r\nHost: wire.test\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-F{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    for (what, req) in [("a 110 KiB field", huge), ("102 fields", many)] {
        let mut c = Client::connect(&gw).await;
        // The gateway may stop reading (and close) before it has it all.
        let _ = c.send_lenient(&req).await;
        match c.try_response(false).await {
            Ok(Some(r)) => {
                assert_eq!(r.status, 431, "{what}: {r:?}");
                c.expect_closed(&format!("after refusing {what}")).await;
            }
            Ok(None) => panic!("{what}: closed without the promised 431"),
            Err(e) => panic!("{what}: no 431 answer: {e}"),
        }
    }
    assert!(b.seen().is_empty(), "the node saw {:#?}", b.seen());
    let mut c = Client::connect(&gw).await;
    c.send(&get("/fine")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Sends `req` on a fresh connection and returns the final response: the
/// gateway answers every request it refuses (docs/architecture.md), so a
/// close without one fails the test. With `framing_error`, an error status
/// must be followed by a close: the gateway cannot know where the next
/// request would start.
async fn answer_to(gw: &TestGateway, req: &[u8], framing_error: bool) -> Response {
    let what = lossy(&req[..req.len().min(100)]);
    let mut c = Client::connect(gw).await;
    let _ = c.send_lenient(req).await;
    match c.try_response(false).await {
        Ok(Some(r)) => {
            if framing_error && r.status >= 400 {
                c.expect_closed(&format!("after {} to {what:?}", r.status))
                    .await;
            }
            r
        }
        Ok(None) => panic!("{what:?}: the gateway closed without an answer"),
        Err(e) => panic!("{what:?}: no answer: {e}"),
    }
}

/// Asserts `req` gets one of `statuses` and never reaches the node.
async fn assert_refused(
    gw: &TestGateway,
    b: &RawBackend,
    req: &[u8],
    statuses: &[u16],
    framing_error: bool,
) {
    let what = lossy(&req[..req.len().min(100)]);
    let before = b.seen().len();
    let r = answer_to(gw, req, framing_error).await;
    assert!(
        statuses.contains(&r.status),
        "{what:?} must be refused with one of {statuses:?}: {r:?}"
    );
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
        Ok(None) => panic!("closed without an answer (400, or the de-chunked request's)"),
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
    let bad: [(&[u8], &[u16]); 10] = [
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
            // hyper refuses it with 400 before weir sees it.
            &[400, 501],
        ),
        // Codings weir does not implement before chunked: 501 (the node
        // would get the gzip body as if it were plain), as nginx.
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[501],
        ),
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: identity, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[501],
        ),
        // chunked twice, in one field or in two: 400.
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[400],
        ),
        (
            b"POST /te HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[400],
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

async fn nul_or_bare_cr_in_a_request_header_gets_400_or_never_reaches_the_node(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    for req in [
        &b"GET /nul HTTP/1.1\r\nHost: wire.test\r\nX-Bad: a\x00b\r\n\r\n"[..],
        &b"GET /cr HTTP/1.1\r\nHost: wire.test\r\nX-Bad: a\rb\r\n\r\n"[..],
    ] {
        // RFC 9110 §5.5: reject (a malformed head: 400), or replace the
        // character with SP.
        let before = b.seen().len();
        let r = answer_to(&gw, req, false).await;
        let seen = b.seen();
        if r.status == 200 {
            let got = seen[before..]
                .iter()
                .find_map(|s| s.head.get("x-bad").map(str::to_owned))
                .unwrap_or_default();
            assert!(!got.contains(['\0', '\r']), "the node got {got:?}");
        } else {
            assert_eq!(r.status, 400, "{r:?}");
            assert_eq!(seen.len(), before, "a refused request reached the node");
        }
    }
}

/// docs/operations.md: "A malformed request body (bad chunked framing) is
/// the client's fault: 400, no retry, nothing counted against the node's
/// health." Passive checks that would mark a node unhealthy at its first
/// failure of any kind must find nothing to count.
async fn malformed_chunked_request_body_is_400_with_no_retry_and_no_health_penalty(t: Transport) {
    let a = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let b = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    // Active checks are required beside passive ones (as in APISIX): they
    // probe a port of their own (`port`), so the nodes count only requests.
    let probes = RawBackend::start(|s| Answer::Send(ok(&s.body))).await;
    let probe_port: u16 = probes
        .node()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("probe backend port");
    let route = serde_json::json!({
        "id": "wire",
        "uri": "/*",
        "upstream": {
            "nodes": {a.node(): 1, b.node(): 1},
            "checks": {
                "active": {"port": probe_port, "healthy": {"interval": 3600},
                           "unhealthy": {"interval": 3600}},
                "passive": {"unhealthy": {
                    "http_statuses": [400, 500, 502, 503, 504],
                    "http_failures": 1, "tcp_failures": 1, "timeouts": 1,
                }},
            },
        },
    });
    let gw = gateway_with(
        t,
        &[a.node(), b.node()],
        serde_json::json!({"routes": [route]}),
    )
    .await;
    let bad: [&[u8]; 2] = [
        b"POST /bad HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST /bad HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
    ];
    let mut requests = 0;
    for _round in 0..2 {
        for req in bad {
            let r = answer_to(&gw, req, true).await;
            assert_eq!(r.status, 400, "{:?}: {r:?}", lossy(req));
            requests += 1;
        }
        // The bad chunk only once the head has gone to a node: the body
        // is then being streamed when it turns out malformed.
        let mut c = Client::connect(&gw).await;
        let before = a.connections() + b.connections();
        c.send(b"POST /late HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
        let connected = timeout(IO_TIMEOUT, async {
            while a.connections() + b.connections() == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(connected.is_ok(), "the head never went to a node");
        let _ = c.send_lenient(b"zz\r\nabc\r\n0\r\n\r\n").await;
        match c.try_response(false).await {
            Ok(Some(r)) => {
                assert_eq!(r.status, 400, "a malformed chunk mid-stream: {r:?}");
                c.expect_closed("after 400 to a malformed chunk").await;
            }
            Ok(None) => panic!("a malformed chunk mid-stream: closed without the promised 400"),
            Err(e) => panic!("a malformed chunk mid-stream: no 400: {e}"),
        }
        requests += 1;
    }
    let attempts = a.connections() + b.connections();
    assert!(
        attempts <= requests,
        "a malformed body went to more than one node: {attempts} connections for \
         {requests} requests"
    );
    assert!(
        a.seen().is_empty() && b.seen().is_empty(),
        "a malformed body was forwarded whole: {:#?} {:#?}",
        a.seen(),
        b.seen()
    );
    let health = control_json(&gw, "/v1/healthcheck").await;
    let nodes: Vec<&serde_json::Value> = health
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["nodes"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(nodes.len(), 2, "{health:#}");
    for n in nodes {
        assert_eq!(n["status"], "healthy", "{health:#}");
        for counter in ["http_failure", "tcp_failure", "timeout_failure"] {
            assert_eq!(n["counter"][counter], 0, "{counter}: {health:#}");
        }
    }
    // Both nodes still take traffic.
    for i in 0..4 {
        let mut c = Client::connect(&gw).await;
        c.send(b"POST /good HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 2\r\n\r\nok")
            .await;
        let r = c.response().await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "good POST {i}: {r:?}"
        );
    }
    assert!(
        !a.seen().is_empty() && !b.seen().is_empty(),
        "a node stopped getting traffic"
    );
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

/// `CONNECT` (weir does not tunnel) and `TRACE` are refused with 405 on
/// every path; the node never sees them, and the gateway keeps serving.
async fn connect_and_trace_get_405_and_never_reach_the_node(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let refused: [&[u8]; 3] = [
        b"CONNECT /a HTTP/1.1\r\nHost: wire.test\r\n\r\n",
        b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
        b"TRACE /a HTTP/1.1\r\nHost: wire.test\r\n\r\n",
    ];
    for req in refused {
        let what = lossy(req);
        let mut c = Client::connect(&gw).await;
        let _ = c.send_lenient(req).await;
        match c.try_response(false).await {
            Ok(Some(r)) => {
                assert_eq!(r.status, 405, "{t:?} {what:?}: {r:?}");
                assert!(
                    r.text().contains("405 Method Not Allowed"),
                    "{t:?} {what:?}: {r:?}"
                );
            }
            Ok(None) => panic!("{t:?} {what:?}: closed without the 405"),
            Err(e) => panic!("{t:?} {what:?}: no 405: {e}"),
        }
    }
    assert!(b.seen().is_empty(), "{t:?}: the node saw {:?}", b.seen());
    let mut c = Client::connect(&gw).await;
    c.send(&get("/fine")).await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
}

/// A Host that is not a host (space, `/`, `@`, empty) and userinfo in an
/// absolute-form target get 400 (RFC 9112 §3.2); the node sees none of
/// them, and the gateway keeps serving.
async fn invalid_hosts_and_userinfo_get_400(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let refused: [&[u8]; 5] = [
        b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a@b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://user:pw@other.example/a HTTP/1.1\r\nHost: other.example\r\n\r\n",
    ];
    for req in refused {
        let what = lossy(req);
        let mut c = Client::connect(&gw).await;
        let _ = c.send_lenient(req).await;
        match c.try_response(false).await {
            Ok(Some(r)) => assert_eq!(r.status, 400, "{t:?} {what:?}: {r:?}"),
            Ok(None) => panic!("{t:?} {what:?}: closed without a 400"),
            Err(e) => panic!("{t:?} {what:?}: no 400: {e}"),
        }
    }
    assert!(b.seen().is_empty(), "{t:?}: the node saw {:?}", b.seen());
    let mut c = Client::connect(&gw).await;
    c.send(&get("/fine")).await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
}

/// An expectation other than 100-continue gets 417 (RFC 9110 §10.1.1) on
/// every path, and never reaches the node.
async fn an_unknown_expectation_gets_417(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    let _ = c
        .send_lenient(b"GET /e HTTP/1.1\r\nHost: wire.test\r\nExpect: something-else\r\n\r\n")
        .await;
    match c.try_response(false).await {
        Ok(Some(r)) => assert_eq!(r.status, 417, "{t:?}: {r:?}"),
        Ok(None) => panic!("{t:?}: closed without a 417"),
        Err(e) => panic!("{t:?}: no 417: {e}"),
    }
    assert!(b.seen().is_empty(), "{t:?}: the node saw {:?}", b.seen());
}

every_transport!(
    an_unknown_expectation_gets_417,
    invalid_hosts_and_userinfo_get_400,
    connect_and_trace_get_405_and_never_reach_the_node,
    malformed_request_heads_get_400_then_a_close_and_the_gateway_keeps_serving,
    oversized_header_section_or_too_many_fields_get_431_and_the_gateway_keeps_serving,
    request_with_content_length_and_chunked_is_refused_or_dechunked_then_closed,
    invalid_request_framing_is_400_and_never_reaches_the_node,
    nul_or_bare_cr_in_a_request_header_gets_400_or_never_reaches_the_node,
    malformed_chunked_request_body_is_400_with_no_retry_and_no_health_penalty,
    http11_request_without_host_or_with_two_hosts_is_400,
    post_to_a_node_that_hangs_up_is_502_and_never_replayed,
    get_to_a_node_that_hangs_up_is_retried_on_another_node,
    invalid_upstream_responses_are_502,
    upstream_response_with_content_length_and_chunked_is_relayed_consistently,
    truncated_upstream_bodies_are_not_completed_for_the_client,
    junk_after_an_upstream_response_does_not_leak_into_the_next_one,
    upstream_http10_response_reaches_an_http11_client_as_http11,
);
