//! Hostile HTTP/1.1 request bytes (docs/operations.md, "Hostile clients"),
//! on every transport (`every_transport!`: the fast path plain and over
//! TLS, and the general path):
//!
//! - a chunked request body reaches the node canonically framed (chunk
//!   heads rewritten, extensions and forbidden trailer fields dropped, no
//!   chunk over 31 bits) or is refused; the fast path refuses what RFC 9112
//!   §7.1 does not allow (400), where hyper's general path may normalise;
//! - a request head with bare CRs gets 400 at once, even when it arrives
//!   over several reads (hyper waited for the header timeout);
//! - a WebSocket upgrade request's chunked body reaches the node (it was
//!   dropped), as nginx forwards it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

// ---------------------------------------------------------------------------
// A node that records the raw bytes of chunked request bodies.
// ---------------------------------------------------------------------------

/// What a [`ChunkTap`] read of one request: its head, and the raw bytes of
/// its body so far.
#[derive(Debug, Clone, Default)]
struct Tapped {
    head: Option<Head>,
    raw: Vec<u8>,
}

/// A node that keeps the exact bytes of each request's chunked body and
/// answers `200` (`Content-Length: 0`) once the body is complete.
struct ChunkTap {
    addr: String,
    seen: Arc<Mutex<Vec<Tapped>>>,
}

impl ChunkTap {
    async fn start() -> ChunkTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let seen: Arc<Mutex<Vec<Tapped>>> = Arc::default();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut wire = Wire::new(tcp);
                    while let Ok(Some(head)) = wire.head().await {
                        let slot = {
                            let mut all = s.lock().expect("lock");
                            all.push(Tapped {
                                head: Some(head),
                                raw: Vec::new(),
                            });
                            all.len() - 1
                        };
                        let mut raw = std::mem::take(&mut wire.buf);
                        loop {
                            s.lock().expect("lock")[slot].raw = raw.clone();
                            if matches!(canonical(&raw), Ok(Some(_)) | Err(_)) {
                                break;
                            }
                            let mut chunk = [0u8; 16 * 1024];
                            match wire.io.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        if wire.io.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ChunkTap { addr, seen }
    }

    fn seen(&self) -> Vec<Tapped> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (at most [`IO_TIMEOUT`]) until a request's raw body satisfies
    /// `ready`, and returns it.
    async fn body_where(&self, ready: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let found = timeout(IO_TIMEOUT, async {
            loop {
                if let Some(t) = self.seen().into_iter().find(|t| ready(&t.raw)) {
                    return t.raw;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no such body at the node: {:?}", self.seen()))
    }
}

/// A body as it must reach the node: its data and trailer lines.
#[derive(Debug, PartialEq, Eq)]
struct Canonical {
    data: Vec<u8>,
    trailers: Vec<String>,
}

/// Reads `raw` as a canonically framed chunked body: sizes in hex without
/// leading zeros and at most `7fffffff`, no extensions, CRLF everywhere,
/// trailer fields `name: value` none of which RFC 9110 §6.5.1 forbids.
/// `Ok(None)`: a valid prefix.
fn canonical(raw: &[u8]) -> Result<Option<Canonical>, String> {
    let mut data = Vec::new();
    let mut i = 0;
    let line = |i: usize| -> Result<Option<(&[u8], usize)>, String> {
        let Some(lf) = raw[i..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let l = &raw[i..i + lf];
        let content = l.strip_suffix(b"\r").ok_or(format!("bare LF at {i}"))?;
        Ok(Some((content, i + lf + 1)))
    };
    loop {
        let Some((size, next)) = line(i)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(size).map_err(|_| format!("size line {size:?}"))?;
        let ok = !text.is_empty()
            && text.len() <= 8
            && text.bytes().all(|b| b.is_ascii_hexdigit())
            && (text == "0" || !text.starts_with('0'));
        if !ok {
            return Err(format!("not a canonical chunk size line: {text:?}"));
        }
        let n = usize::from_str_radix(text, 16).map_err(|e| e.to_string())?;
        if n > 0x7fff_ffff {
            return Err(format!("chunk of {n:#x} bytes"));
        }
        i = next;
        if n == 0 {
            break;
        }
        let Some(chunk) = raw.get(i..i + n) else {
            data.extend_from_slice(&raw[i..]);
            return Ok(None);
        };
        data.extend_from_slice(chunk);
        i += n;
        match raw.get(i..i + 2) {
            None => return Ok(None),
            Some(b"\r\n") => i += 2,
            Some(other) => return Err(format!("chunk data followed by {other:?}")),
        }
    }
    let mut trailers = Vec::new();
    loop {
        let Some((l, next)) = line(i)? else {
            return Ok(None);
        };
        i = next;
        if l.is_empty() {
            break;
        }
        let text = lossy(l);
        let (name, _) = text
            .split_once(':')
            .ok_or(format!("trailer without a colon: {text:?}"))?;
        let forbidden = [
            "content-length",
            "transfer-encoding",
            "host",
            "trailer",
            "te",
            "connection",
            "authorization",
            "content-type",
            "cookie",
        ];
        if forbidden.contains(&name.to_ascii_lowercase().as_str()) || name.starts_with([' ', '\t'])
        {
            return Err(format!("forbidden trailer {text:?}"));
        }
        trailers.push(text);
    }
    if i != raw.len() {
        return Err(format!("{} bytes after the body", raw.len() - i));
    }
    Ok(Some(Canonical { data, trailers }))
}

fn chunked_post(body: &[u8]) -> Vec<u8> {
    let mut r =
        b"POST /up HTTP/1.1\r\nHost: wire.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    r.extend_from_slice(body);
    r
}

fn fast(t: Transport) -> bool {
    t != Transport::PlainGeneral
}

// ---------------------------------------------------------------------------
// Chunked request bodies.
// ---------------------------------------------------------------------------

async fn chunked_request_bodies_reach_the_node_canonically_framed(t: Transport) {
    let tap = ChunkTap::start().await;
    let gw = gateway_to(t, std::slice::from_ref(&tap.addr)).await;
    let body = b"005;ext=1\r\nhello\r\n1 ; a=b ;c\r\nx\r\n0000;last\r\nX-Ok: 1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\r\n";
    let mut c = Client::connect(&gw).await;
    c.send(&chunked_post(body)).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{t:?}: {r:?}");
    let seen = tap.seen();
    assert_eq!(seen.len(), 1, "{t:?}: {seen:?}");
    let got = canonical(&seen[0].raw)
        .unwrap_or_else(|e| panic!("{t:?}: {e}: {:?}", lossy(&seen[0].raw)))
        .unwrap_or_else(|| panic!("{t:?}: incomplete: {:?}", lossy(&seen[0].raw)));
    assert_eq!(got.data, b"hellox", "{t:?}");
    if fast(t) {
        // Only heads are rewritten; the allowed trailer is kept.
        assert_eq!(
            lossy(&seen[0].raw),
            "5\r\nhello\r\n1\r\nx\r\n0\r\nX-Ok: 1\r\n\r\n",
            "{t:?}"
        );
    }
    // The connection goes on with the next request.
    c.send(&chunked_post(b"3\r\nabc\r\n0\r\n\r\n")).await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
    assert_eq!(tap.seen()[1].raw, b"3\r\nabc\r\n0\r\n\r\n", "{t:?}");
}

async fn malformed_chunked_request_bodies_are_refused(t: Transport) {
    let tap = ChunkTap::start().await;
    let gw = gateway_to(t, std::slice::from_ref(&tap.addr)).await;
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(64 * 1024));
    let bad: Vec<&[u8]> = vec![
        // Whitespace after a chunk size (RFC 9112 §7.1 allows none
        // without an extension).
        &b"5 \r\nhello\r\n0\r\n\r\n"[..],
        &b"5\t\r\nhello\r\n0\r\n\r\n"[..],
        // 16 leading zeros: 17 hex digits.
        &b"00000000000000005\r\nhello\r\n0\r\n\r\n"[..],
        // A NUL in a chunk extension; an extension of 64 KiB.
        &b"5;a=\x00\r\nhello\r\n0\r\n\r\n"[..],
        long_ext.as_bytes(),
        // A trailer line without a colon; an obs-folded trailer.
        &b"5\r\nhello\r\n0\r\nbad\r\n\r\n"[..],
        &b"5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n"[..],
    ];
    for body in bad {
        let what = lossy(&body[..body.len().min(40)]);
        let before = tap.seen().len();
        let mut c = Client::connect(&gw).await;
        let _ = c.send_lenient(&chunked_post(body)).await;
        let r = match c.try_response(false).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("{t:?} {what:?}: closed without an answer"),
            Err(e) => panic!("{t:?} {what:?}: no answer: {e}"),
        };
        let at_node: Vec<Tapped> = tap.seen().split_off(before);
        if fast(t) {
            assert_eq!(r.status, 400, "{t:?} {what:?}: {r:?}");
            c.expect_closed(&format!("{t:?} {what:?}")).await;
            assert!(
                at_node.is_empty(),
                "{t:?} {what:?}: reached the node: {at_node:?}"
            );
        } else if r.status == 200 {
            // hyper normalises some of these: then canonically.
            let raw = &at_node.first().expect("at the node").raw;
            let got = canonical(raw).unwrap_or_else(|e| panic!("{t:?} {what:?}: {e}"));
            assert!(got.is_some(), "{t:?} {what:?}: incomplete {:?}", lossy(raw));
        } else {
            assert_eq!(r.status, 400, "{t:?} {what:?}: {r:?}");
        }
    }
}

/// A chunk size over 32 bits (a node reading sizes into 32 bits would take
/// `100000005` for 5 and read what follows as a new request): the node
/// gets chunks of at most `7fffffff` bytes.
async fn a_chunk_over_31_bits_reaches_the_node_split(t: Transport) {
    let tap = ChunkTap::start().await;
    let gw = gateway_to(t, std::slice::from_ref(&tap.addr)).await;
    let mut c = Client::connect(&gw).await;
    c.send(&chunked_post(b"100000005\r\nhello")).await;
    let raw = tap
        .body_where(|raw| raw.windows(5).any(|w| w == b"hello"))
        .await;
    let got = canonical(&raw).unwrap_or_else(|e| panic!("{t:?}: {e}: {:?}", lossy(&raw)));
    assert!(got.is_none(), "{t:?}: a complete body {got:?}");
    if fast(t) {
        assert_eq!(lossy(&raw), "7fffffff\r\nhello", "{t:?}");
    }
}

// ---------------------------------------------------------------------------
// Bare CR.
// ---------------------------------------------------------------------------

/// Sends `req` in `pieces` writes, 100 ms apart (the way a slow client's
/// head arrives over several reads).
async fn send_in_pieces(c: &mut Client, req: &[u8], pieces: usize) {
    let step = req.len().div_ceil(pieces);
    for (i, piece) in req.chunks(step).enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = c.send_lenient(piece).await;
    }
}

async fn a_head_with_bare_crs_gets_400_at_once(t: Transport) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let bad: [&[u8]; 3] = [
        b"GET /cr HTTP/1.1\rHost: wire.test\r\r",
        b"GET /cr HTTP/1.1\r\nHost: wire.test\rX-A: 1\r\r",
        b"GET /cr HTTP/1.1\r\nHost: wire.test\r\nX-A: a\rb\r\n\r\n",
    ];
    for req in bad {
        let what = lossy(req);
        for keep_alive in [false, true] {
            let mut c = Client::connect(&gw).await;
            if keep_alive {
                // After a request served on the connection.
                c.send(&get("/first")).await;
                assert_eq!(c.response().await.status, 200, "{t:?}");
            }
            let before = b.seen().len();
            send_in_pieces(&mut c, req, 3).await;
            match c.try_response(false).await {
                Ok(Some(r)) => assert_eq!(r.status, 400, "{t:?} {what:?}: {r:?}"),
                Ok(None) => panic!("{t:?} {what:?}: closed without an answer"),
                Err(e) => panic!("{t:?} {what:?} (keep-alive {keep_alive}): no answer: {e}"),
            }
            c.expect_closed(&format!("{t:?} {what:?}")).await;
            assert_eq!(b.seen().len(), before, "{t:?} {what:?}: reached the node");
        }
    }
    // Bodies may hold bare CRs.
    let mut c = Client::connect(&gw).await;
    send_in_pieces(
        &mut c,
        b"POST /body HTTP/1.1\r\nHost: wire.test\r\nContent-Length: 6\r\n\r\na\rb\rc\r",
        4,
    )
    .await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
    c.send(&get("/after")).await;
    assert_eq!(c.response().await.status, 200, "{t:?}");
}

// ---------------------------------------------------------------------------
// WebSocket upgrade with a body.
// ---------------------------------------------------------------------------

const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

async fn a_websocket_upgrade_with_a_chunked_body_reaches_the_node_whole(t: Transport) {
    let b = RawBackend::start(|_| Answer::Send(SWITCH.to_vec())).await;
    let mut nodes = serde_json::Map::new();
    nodes.insert(b.node(), 1.into());
    let extra = serde_json::json!({
        "routes": [{"id": "ws", "uri": "/*", "enable_websocket": true,
                    "upstream": {"nodes": nodes}}],
    });
    let gw = gateway_with(t, &[b.node()], extra).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: wire.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 101, "{t:?}: {r:?}");
    let seen = b.only_request();
    assert_eq!(lossy(&seen.body), "hello world", "{t:?}: {seen:?}");
    assert!(
        seen.head.has_token("upgrade", "websocket"),
        "{t:?}: {seen:?}"
    );
}

every_transport!(
    chunked_request_bodies_reach_the_node_canonically_framed,
    malformed_chunked_request_bodies_are_refused,
    a_chunk_over_31_bits_reaches_the_node_split,
    a_head_with_bare_crs_gets_400_at_once,
    a_websocket_upgrade_with_a_chunked_body_reaches_the_node_whole,
);

// ---------------------------------------------------------------------------
// HTTP/2 request trailers.
// ---------------------------------------------------------------------------

mod h2c {
    use super::*;
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    /// An HTTP/2 request's trailers reach the HTTP/1.1 node as chunked
    /// trailers when the request announced them (`trailer`), as hyper's
    /// HTTP/1.1 client sends them; a field forbidden in trailers (RFC 9110
    /// §6.5.1) is not announced upstream, so it never reaches the node, and
    /// neither does an unannounced one.
    #[tokio::test]
    async fn announced_request_trailers_reach_the_node_as_chunked_trailers() {
        let tap = ChunkTap::start().await;
        let gw = gateway_to(Transport::Plain, std::slice::from_ref(&tap.addr)).await;
        let tcp = tokio::net::TcpStream::connect(gw.proxy_addr())
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(conn);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().expect("value"));
        trailers.insert("cache-control", "no-store".parse().expect("value"));
        trailers.insert("x-unannounced", "1".parse().expect("value"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let req = http::Request::post(format!("http://{TLS_NAME}/up"))
            .header("trailer", "x-checksum, cache-control")
            .body(StreamBody::new(futures::stream::iter(frames)))
            .expect("request");
        let resp = timeout(IO_TIMEOUT, sender.send_request(req))
            .await
            .expect("the response timed out")
            .expect("the response");
        assert_eq!(resp.status(), 200);
        let seen = tap.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let head = seen[0].head.as_ref().expect("head");
        assert_eq!(head.get("trailer"), Some("x-checksum"), "{head:?}");
        let got = canonical(&seen[0].raw)
            .unwrap_or_else(|e| panic!("{e}: {:?}", lossy(&seen[0].raw)))
            .expect("a complete body");
        assert_eq!(got.data, b"hello");
        assert_eq!(got.trailers, vec!["x-checksum: abc".to_owned()]);
    }
}
