//! HEAD requests to everything weir answers itself — 404 (no route), 502
//! (a dead node), 503 (an empty node set), `echo`, a plugin's refusal (403)
//! — and to a node: the head announces the would-be body's length, no body
//! follows, and the connection goes on serving.
//!
//! HTTP/1.1 on every byte-level transport (`every_transport!`): after the
//! HEAD, a GET on the same connection must parse as the next response (a
//! stray body would be read as its status line), and nothing is left over.
//! HTTP/2 (h2c prior knowledge): a raw frame reader checks that the HEAD's
//! stream ends with its HEADERS frame — no DATA frame, no RST_STREAM, no
//! GOAWAY — and that the connection then serves a GET; hyper's client reads
//! the status and Content-Length.

mod common;

use std::time::Duration;

use common::wire::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A node answering `hello` (a HEAD gets the head only).
async fn hello_node() -> RawBackend {
    RawBackend::start(|s| {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Node: yes\r\n\r\n";
        if s.method == "HEAD" {
            Answer::Send(head.as_bytes().to_vec())
        } else {
            Answer::Send(format!("{head}hello").into_bytes())
        }
    })
    .await
}

/// What a GET and a HEAD to each path get.
struct Case {
    path: &'static str,
    status: u16,
    /// The GET's body (a HEAD's Content-Length is its length), or `None`
    /// when the HEAD's body differs from the GET's (echo describes the
    /// method): then only a non-zero length is required.
    body: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        path: "/nowhere",
        status: 404,
        body: Some("{\"error_msg\":\"404 Route Not Found\"}"),
    },
    Case {
        path: "/dead/x",
        status: 502,
        body: Some("{\"error_msg\":\"502 Bad Gateway\"}"),
    },
    Case {
        path: "/empty/x",
        status: 503,
        body: Some("{\"error_msg\":\"503 Service Unavailable: no available node\"}"),
    },
    Case {
        path: "/echo/x",
        status: 200,
        body: None,
    },
    Case {
        path: "/refused/x",
        status: 403,
        body: Some("{\"message\":\"Your IP address is not allowed\"}\n"),
    },
    Case {
        path: "/node/x",
        status: 200,
        body: Some("hello"),
    },
];

async fn gateway(t: Transport) -> (TestGateway, RawBackend) {
    let dead = common::closed_port().await.to_string();
    let node = hello_node().await;
    let gw = gateway_with(
        t,
        &[],
        json!({"routes": [
            {"uri": "/dead/*", "upstream": {"nodes": {dead: 1}}},
            {"uri": "/empty/*", "upstream": {"nodes": {}}},
            {"uri": "/echo/*", "plugins": {"echo": {}}},
            {"uri": "/refused/*", "upstream": {"nodes": {node.node(): 1}},
             "plugins": {"ip-restriction": {"blacklist": ["127.0.0.0/8"]}}},
            {"uri": "/node/*", "upstream": {"nodes": {node.node(): 1}}},
        ]}),
    )
    .await;
    (gw, node)
}

fn head(path: &str) -> Vec<u8> {
    format!("HEAD {path} HTTP/1.1\r\nHost: wire.test\r\n\r\n").into_bytes()
}

#[track_caller]
fn check_head(case: &Case, r: &Response, what: &str) {
    assert_eq!(r.status, case.status, "{what}: {r:?}");
    let length: usize = r
        .header("content-length")
        .unwrap_or_else(|| panic!("{what}: no Content-Length: {r:?}"))
        .parse()
        .expect("a Content-Length");
    match case.body {
        Some(b) => assert_eq!(length, b.len(), "{what}: the would-be body's length"),
        None => assert!(length > 0, "{what}: {r:?}"),
    }
    assert!(!r.head.chunked(), "{what}: {r:?}");
}

async fn head_gets_the_head_only_and_the_connection_goes_on(t: Transport) {
    let (gw, _node) = gateway(t).await;
    let mut c = Client::connect(&gw).await;
    for case in CASES {
        let what = format!("HEAD {}", case.path);
        c.send(&head(case.path)).await;
        let r = c.response_to(true).await;
        check_head(case, &r, &what);
        // The next request on the connection is answered correctly: a body
        // after the HEAD's head would be read as this response's start.
        c.send(&get(case.path)).await;
        let g = c.response().await;
        assert_eq!(
            g.status, case.status,
            "GET {} after the HEAD: {g:?}",
            case.path
        );
        if let Some(b) = case.body {
            assert_eq!(g.text(), b, "GET {}", case.path);
        }
        assert!(
            c.wire.buf.is_empty(),
            "{what}: left over: {:?}",
            lossy(&c.wire.buf)
        );
    }
}

async fn pipelined_head_then_get_are_both_answered(t: Transport) {
    let (gw, _node) = gateway(t).await;
    let mut c = Client::connect(&gw).await;
    for case in CASES {
        let mut both = head(case.path);
        both.extend(get("/node/after"));
        c.send(&both).await;
        let r = c.response_to(true).await;
        check_head(case, &r, &format!("pipelined HEAD {}", case.path));
        let g = c.response().await;
        assert_eq!(
            (g.status, g.text().as_str()),
            (200, "hello"),
            "the GET pipelined after HEAD {}: {g:?}",
            case.path
        );
    }
}

every_transport!(
    head_gets_the_head_only_and_the_connection_goes_on,
    pipelined_head_then_get_are_both_answered,
);

// ---------------------------------------------------------------------------
// HTTP/2
// ---------------------------------------------------------------------------

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// The frames a raw h2c client saw for one stream.
#[derive(Debug, Default)]
struct StreamFrames {
    /// Each HEADERS frame: its flags.
    headers: Vec<u8>,
    /// Each DATA frame: its payload length and flags.
    data: Vec<(usize, u8)>,
    /// The RST_STREAM error code, if any.
    reset: Option<u32>,
}

/// A raw h2c connection: requests written as HPACK literals, responses
/// seen frame by frame (their header blocks are not decoded).
struct RawH2 {
    io: TcpStream,
    buf: Vec<u8>,
    next_stream: u32,
}

impl RawH2 {
    async fn connect(gw: &TestGateway) -> RawH2 {
        let io = timeout(IO_TIMEOUT, TcpStream::connect(gw.proxy_addr()))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut c = RawH2 {
            io,
            buf: Vec::new(),
            next_stream: 1,
        };
        c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        c.frame(SETTINGS, 0, 0, &[]).await;
        c
    }

    async fn write(&mut self, bytes: &[u8]) {
        timeout(IO_TIMEOUT, self.io.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.write(&f).await;
    }

    /// Sends a bodyless request; returns its stream id.
    async fn request(&mut self, method: &str, path: &str) -> u32 {
        let mut block = Vec::new();
        for (n, v) in [
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", TLS_NAME),
        ] {
            // Literal header field without indexing, new name, no Huffman.
            block.push(0x00);
            block.push(n.len() as u8);
            block.extend_from_slice(n.as_bytes());
            block.push(v.len() as u8);
            block.extend_from_slice(v.as_bytes());
        }
        let id = self.next_stream;
        self.next_stream += 2;
        self.frame(HEADERS, END_STREAM | END_HEADERS, id, &block)
            .await;
        id
    }

    async fn read_frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return (f[3], f[4], stream, f[9..].to_vec());
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = timeout(IO_TIMEOUT, self.io.read(&mut chunk))
                .await
                .expect("no h2 frame in time")
                .expect("read an h2 frame");
            assert!(n > 0, "the gateway closed the h2 connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until `stream` ends (END_STREAM or RST_STREAM);
    /// answers SETTINGS and PING; panics on GOAWAY.
    async fn until_end(&mut self, stream: u32) -> StreamFrames {
        let mut out = StreamFrames::default();
        loop {
            let (kind, flags, id, payload) = self.read_frame().await;
            match kind {
                SETTINGS if flags & ACK == 0 => self.frame(SETTINGS, ACK, 0, &[]).await,
                PING if flags & ACK == 0 => self.frame(PING, ACK, 0, &payload).await,
                GOAWAY => panic!("GOAWAY while waiting for stream {stream}: {payload:?}"),
                HEADERS if id == stream => {
                    out.headers.push(flags);
                    if flags & END_STREAM != 0 {
                        return out;
                    }
                }
                DATA if id == stream => {
                    out.data.push((payload.len(), flags));
                    if flags & END_STREAM != 0 {
                        return out;
                    }
                }
                RST_STREAM if id == stream => {
                    out.reset = Some(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                    return out;
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn h2c_head_gets_headers_without_data_and_the_connection_goes_on() {
    let (gw, _node) = gateway(Transport::Plain).await;
    let mut raw = RawH2::connect(&gw).await;
    let mut h2 = AnyClient::connect(Via::H2c, &gw).await;
    for case in CASES {
        let what = format!("h2 HEAD {}", case.path);
        // The head, as hyper's client reads it.
        let r = h2.send(&Req::new("HEAD", case.path)).await;
        assert_eq!(r.status, case.status, "{what}: {r:?}");
        assert!(r.body.is_empty(), "{what}: {r:?}");
        let length: usize = r
            .header("content-length")
            .unwrap_or_else(|| panic!("{what}: no content-length: {r:?}"))
            .parse()
            .expect("a content-length");
        match case.body {
            Some(b) => assert_eq!(length, b.len(), "{what}: the would-be body's length"),
            None => assert!(length > 0, "{what}"),
        }

        // The frames: HEADERS ending the stream, nothing else.
        let id = raw.request("HEAD", case.path).await;
        let frames = raw.until_end(id).await;
        assert_eq!(
            frames.reset, None,
            "{what}: the stream was reset: {frames:?}"
        );
        assert!(
            frames.data.is_empty(),
            "{what}: DATA frames on a HEAD: {frames:?}"
        );
        assert_eq!(
            frames.headers.last().map(|f| f & END_STREAM),
            Some(END_STREAM),
            "{what}: the HEADERS frame ends the stream: {frames:?}"
        );

        // The connection goes on: a GET gets its body.
        let id = raw.request("GET", "/node/after").await;
        let frames = raw.until_end(id).await;
        assert_eq!(frames.reset, None, "GET after {what}: {frames:?}");
        let body: usize = frames.data.iter().map(|(n, _)| n).sum();
        assert_eq!(body, 5, "GET after {what}: {frames:?}");
    }
    // hyper's connection saw no error either.
    let r = timeout(Duration::from_secs(10), h2.send(&Req::get("/node/end")))
        .await
        .expect("the last h2 request timed out");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r:?}");
}
