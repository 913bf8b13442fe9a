//! Clients that stop sending in the middle of a request body, and upgraded
//! tunnels nobody uses (docs/operations.md, "Hostile clients"):
//!
//! - `gateway.http.body_timeout` (1 s here) between two reads of a request
//!   body, on a route answered by a plugin that reads the body (`echo`) and
//!   on a proxied route: 408, then the connection closes (HTTP/1.1; over
//!   HTTP/2 the 408 comes on the stream), and the access log shows the 408.
//!   A body that keeps coming, however slowly, is not cut off, neither by
//!   the client's timeout nor by the node's (`timeout.send` and
//!   `timeout.read` bound each wait on the node, not the whole upload).
//! - `gateway.http.tunnel_idle_timeout` (1 s here): a WebSocket tunnel with
//!   no byte either way is closed; one with traffic stays open.
//!
//! Bodies run on every client (`every_client!`: HTTP/1.1 fast path plain
//! and TLS, the general path, h2c); tunnels on the three HTTP/1.1
//! transports (an upgrade is HTTP/1.1).

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::hostile::LogFile;
use common::wire::*;
use hyper::client::conn::http2::SendRequest;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// The body timeout of these gateways.
const LIMIT: Duration = Duration::from_secs(1);

/// Sooner than this after the last byte, an answer is not the timeout's.
const NOT_BEFORE: Duration = Duration::from_millis(800);

/// A gateway for `via` with `http.body_timeout` and
/// `http.tunnel_idle_timeout` of 1 s and its log in `log`: `/echo` answered
/// by the echo plugin (which reads the body), `/ws` a WebSocket route and
/// everything else proxied to `node`.
async fn gateway(via: Via, node: &str, log: &LogFile) -> TestGateway {
    let extra = serde_json::json!({
        "gateway": {
            "http": {"body_timeout": 1, "tunnel_idle_timeout": 1},
            "access_log": log.config(),
        },
        "routes": [
            {"id": "echo", "uri": "/echo", "plugins": {"echo": {}}},
            {"id": "ws", "uri": "/ws", "enable_websocket": true, "upstream": {"nodes": {node: 1}}},
            {
                "id": "long", "uri": "/long-upload",
                "timeout": {"connect": 1, "send": 1, "read": 1},
                "upstream": {"nodes": {node: 1}},
            },
            {"id": "up", "uri": "/*", "upstream": {"nodes": {node: 1}}},
        ],
    });
    gateway_with(via.transport(), &[node.to_owned()], extra).await
}

// ---------------------------------------------------------------------------
// Request bodies.
// ---------------------------------------------------------------------------

/// A request body fed piece by piece by the test, for hyper's HTTP/2
/// client: it ends only when the sender is dropped.
struct Fed(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// An HTTP/2 connection with prior knowledge to `gw`, driven in its own
/// task.
async fn h2c_sender(gw: &TestGateway) -> SendRequest<Fed> {
    let tcp = tokio::net::TcpStream::connect(gw.proxy_addr())
        .await
        .expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}

/// What came back for a POST whose body was sent in pieces.
struct Outcome {
    status: u16,
    body: String,
    /// When the last piece went out.
    last_piece: Instant,
    /// The HTTP/1.1 client, to see what becomes of its connection.
    h1: Option<Client>,
    /// The HTTP/2 connection, for another request.
    h2: Option<SendRequest<Fed>>,
}

/// POSTs `path` announcing `len` body bytes, sends `pieces` `gap` apart,
/// then nothing more, and reads the answer. The connection stays open, and
/// so does an HTTP/2 stream unless the pieces are the whole body.
async fn post_in_pieces(
    via: Via,
    gw: &TestGateway,
    path: &str,
    len: usize,
    pieces: &[&[u8]],
    gap: Duration,
) -> Outcome {
    match via {
        Via::H1(_) => {
            let mut c = Client::connect(gw).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {TLS_NAME}\r\nContent-Length: {len}\r\n\r\n"
            );
            c.send(head.as_bytes()).await;
            let mut last_piece = Instant::now();
            for (i, p) in pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                c.send(p).await;
                last_piece = Instant::now();
            }
            let r = match c.try_response(false).await {
                Ok(Some(r)) => r,
                Ok(None) => panic!("{via:?}: closed without an answer"),
                Err(e) => panic!("{via:?}: no answer: {e}"),
            };
            Outcome {
                status: r.status,
                body: r.text(),
                last_piece,
                h1: Some(c),
                h2: None,
            }
        }
        Via::H2c => {
            let mut sender = h2c_sender(gw).await;
            let (tx, rx) = mpsc::unbounded_channel();
            let req = http::Request::post(format!("http://{TLS_NAME}{path}"))
                .header("content-length", len)
                .body(Fed(rx))
                .expect("request");
            let answer = tokio::spawn(sender.send_request(req));
            let sender = sender.clone();
            let mut last_piece = Instant::now();
            for (i, p) in pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                tx.send(Bytes::copy_from_slice(p)).expect("feed the body");
                last_piece = Instant::now();
            }
            let whole = pieces.iter().map(|p| p.len()).sum::<usize>() == len;
            let mut tx = Some(tx);
            if whole {
                // END_STREAM.
                tx = None;
            }
            let resp = timeout(IO_TIMEOUT, answer)
                .await
                .unwrap_or_else(|_| panic!("h2c: no answer within {IO_TIMEOUT:?}"))
                .expect("request task")
                .expect("h2 response");
            let status = resp.status().as_u16();
            let body = timeout(
                IO_TIMEOUT,
                http_body_util::BodyExt::collect(resp.into_body()),
            )
            .await
            .expect("h2 response body timed out")
            .expect("h2 response body")
            .to_bytes();
            // An unfinished body's sender lives until here: the client
            // never ended the stream.
            drop(tx);
            Outcome {
                status,
                body: lossy(&body),
                last_piece,
                h1: None,
                h2: Some(sender),
            }
        }
    }
}

/// The request line an access log line shows for `POST {path}` over `via`.
fn request_line(via: Via, path: &str) -> String {
    let version = if via == Via::H2c {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    };
    format!("\"POST {path} {version}\" 408 ")
}

/// Asserts the 408 of a stalled body: late enough to be the timeout's, the
/// HTTP/1.1 connection closed after it, and the access log line.
async fn assert_body_timed_out(via: Via, o: Outcome, log: &LogFile, path: &str) {
    let after = o.last_piece.elapsed();
    assert_eq!(o.status, 408, "{via:?}: {}", o.body);
    assert!(
        after >= NOT_BEFORE,
        "{via:?}: 408 {after:?} after the last byte, before the 1 s body timeout"
    );
    if let Some(mut c) = o.h1 {
        c.expect_closed("after the 408 for a stalled body").await;
    }
    if let Some(mut sender) = o.h2 {
        // Only the stream was given up on: the connection serves another.
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        drop(tx);
        let req = http::Request::get(format!("http://{TLS_NAME}/echo"))
            .body(Fed(rx))
            .expect("request");
        let resp = timeout(IO_TIMEOUT, sender.send_request(req))
            .await
            .expect("a second stream timed out")
            .expect("a second stream after the 408");
        assert_eq!(resp.status(), 200, "a second stream after the 408");
    }
    log.line_with(&[&request_line(via, path)]).await;
}

/// A body that trickles in a byte at a time, then stops, on a route whose
/// plugin reads it: the issue measured such connections open for 320 s.
async fn a_stalled_body_on_a_plugin_route_gets_408(via: Via) {
    let node = echo_target().await;
    let log = LogFile::new();
    let gw = gateway(via, &node.node(), &log).await;
    let gap = Duration::from_millis(300);
    let o = post_in_pieces(via, &gw, "/echo", 10, &[b"a", b"b", b"c"], gap).await;
    assert_body_timed_out(via, o, &log, "/echo").await;
}

/// The timeout is between two reads, not for the whole body: six bytes
/// 300 ms apart (1.5 s in all) with a 1 s timeout are read whole.
async fn a_body_that_keeps_coming_is_read_whole(via: Via) {
    let node = echo_target().await;
    let log = LogFile::new();
    let gw = gateway(via, &node.node(), &log).await;
    let pieces: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
    let started = Instant::now();
    let o = post_in_pieces(via, &gw, "/echo", 6, &pieces, Duration::from_millis(300)).await;
    assert_eq!(o.status, 200, "{via:?}: {}", o.body);
    let echoed: serde_json::Value = serde_json::from_str(&o.body).expect("the echo's JSON");
    assert_eq!(echoed["data"], "abcdef", "{via:?}: {}", o.body);
    assert!(started.elapsed() > LIMIT, "{via:?}: the body came too fast");
}

/// A node that reads what comes and never answers; `closed` gets what
/// each connection carried once the gateway closes it.
async fn sink_node() -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let (tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = tcp.read(&mut b).await {
                    got.extend_from_slice(&b[..n]);
                }
                let _ = tx.send(got);
            });
        }
    });
    (addr, closed)
}

/// A proxied route: the node has the head and the first bytes when the
/// client stops; 408 (the client's fault, not the node's 504), and the
/// node connection is closed with the request unfinished.
async fn a_stalled_body_on_a_proxied_route_gets_408(via: Via) {
    let (node, mut closed) = sink_node().await;
    let log = LogFile::new();
    let gw = gateway(via, &node, &log).await;
    let o = post_in_pieces(via, &gw, "/upload", 10, &[b"abc"], Duration::ZERO).await;
    assert_body_timed_out(via, o, &log, "/upload").await;
    let carried = timeout(IO_TIMEOUT, closed.recv())
        .await
        .unwrap_or_else(|_| panic!("{via:?}: the node connection is still open"))
        .expect("the node's reports");
    let text = lossy(&carried);
    assert!(
        text.starts_with("POST /upload HTTP/1.1\r\n"),
        "{via:?}: the node got {text:?}"
    );
    // Content-Length: 10 (passed on, HTTP/2 included), 3 bytes sent.
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        text.to_ascii_lowercase().contains("content-length: 10\r\n") && body.len() < 10,
        "{via:?}: the node got a whole request: {text:?}"
    );
}

/// The node's `timeout.send` and `timeout.read` (1 s each on `/long-upload`)
/// bound each wait on the node, as nginx's proxy_send_timeout and
/// proxy_read_timeout, not the whole upload: eight bytes 400 ms apart
/// (2.8 s, past send + read) reach the node whole and its answer comes back.
/// Before, the node's time ran from the request head and the client got a
/// 504 at 2 s however steadily it sent.
async fn an_upload_longer_than_the_nodes_timeouts_is_not_cut(via: Via) {
    let node = RawBackend::start(|s| Answer::Send(ok(format!("{} bytes", s.body.len())))).await;
    let log = LogFile::new();
    let gw = gateway(via, &node.node(), &log).await;
    let pieces: [&[u8]; 8] = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
    let started = Instant::now();
    let gap = Duration::from_millis(400);
    let o = post_in_pieces(via, &gw, "/long-upload", 8, &pieces, gap).await;
    assert_eq!(o.status, 200, "{via:?}: {}", o.body);
    assert_eq!(o.body, "8 bytes", "{via:?}");
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "{via:?}: the body came within the node's send + read"
    );
    assert_eq!(node.only_request().body, b"abcdefgh", "{via:?}");
}

/// A node that accepts connections and never reads from them.
async fn deaf_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// `timeout.send` still bounds a node that takes none of the body: a client
/// sending as fast as it can to `/long-upload` (send 1 s) gets a 504 once
/// the buffers between weir and the node are full and a second has passed,
/// not an answer never.
async fn a_node_that_takes_none_of_the_body_gets_504(via: Via) {
    const BLOCK: usize = 64 * 1024;
    let node = deaf_node().await;
    let log = LogFile::new();
    let gw = gateway(via, &node, &log).await;
    let status = match via {
        Via::H1(_) => {
            let mut c = Client::connect(&gw).await;
            let len = 256 * 1024 * 1024;
            let head = format!(
                "POST /long-upload HTTP/1.1\r\nHost: {TLS_NAME}\r\nContent-Length: {len}\r\n\r\n"
            );
            c.send(head.as_bytes()).await;
            let mut w = c.take_writer();
            let writer = tokio::spawn(async move {
                let block = vec![b'x'; BLOCK];
                for _ in 0..len / BLOCK {
                    if tokio::io::AsyncWriteExt::write_all(&mut w, &block)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let r = c.try_response(false).await;
            writer.abort();
            match r {
                Ok(Some(r)) => r.status,
                other => panic!(
                    "{via:?}: no answer: {:?}",
                    other.map(|r| r.map(|r| r.status))
                ),
            }
        }
        Via::H2c => {
            let mut sender = h2c_sender(&gw).await;
            let (tx, rx) = mpsc::unbounded_channel();
            let blocks = 512;
            for _ in 0..blocks {
                tx.send(Bytes::from(vec![b'x'; BLOCK]))
                    .expect("feed the body");
            }
            let req = http::Request::post(format!("http://{TLS_NAME}/long-upload"))
                .header("content-length", blocks * BLOCK)
                .body(Fed(rx))
                .expect("request");
            let resp = timeout(IO_TIMEOUT, sender.send_request(req))
                .await
                .unwrap_or_else(|_| panic!("h2c: no answer within {IO_TIMEOUT:?}"))
                .expect("h2 response");
            drop(tx);
            resp.status().as_u16()
        }
    };
    assert_eq!(status, 504, "{via:?}");
}

every_client!(
    a_node_that_takes_none_of_the_body_gets_504,
    a_stalled_body_on_a_plugin_route_gets_408,
    a_body_that_keeps_coming_is_read_whole,
    a_stalled_body_on_a_proxied_route_gets_408,
    an_upload_longer_than_the_nodes_timeouts_is_not_cut,
);

// ---------------------------------------------------------------------------
// Upgraded tunnels.
// ---------------------------------------------------------------------------

/// A masked client text frame (RFC 6455 §5.2) carrying `text` (under 126
/// bytes).
fn ws_text(text: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let len = u8::try_from(text.len()).expect("short message");
    assert!(len < 126);
    let mut out = vec![0x81, 0x80 | len];
    out.extend_from_slice(&mask);
    out.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Sends `text` and reads the node's echo (an unmasked text frame).
async fn ws_echo(c: &mut Client, text: &[u8]) {
    c.send(&ws_text(text)).await;
    let got = timeout(IO_TIMEOUT, c.wire.exact(2 + text.len()))
        .await
        .expect("the echo timed out")
        .expect("the echo");
    assert_eq!(got[..2], [0x81, text.len() as u8], "{got:?}");
    assert_eq!(&got[2..], text);
}

/// A WebSocket tunnel: echoes pass while messages keep coming (over twice
/// the 1 s idle limit in all), then, once both sides are quiet, the
/// gateway closes it.
async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not(t: Transport) {
    let node = common::Backend::start("ws").await;
    let log = LogFile::new();
    let gw = gateway(Via::H1(t), &node.node(), &log).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {TLS_NAME}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let head = timeout(IO_TIMEOUT, c.wire.head())
        .await
        .expect("the upgrade answer timed out")
        .expect("the upgrade answer")
        .expect("an answer before the close");
    assert!(head.start.contains(" 101 "), "{t:?}: {head:?}");
    let busy_since = Instant::now();
    for i in 0..6u8 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        ws_echo(&mut c, &[b'm', b'0' + i]).await;
    }
    assert!(busy_since.elapsed() > LIMIT * 2);
    let quiet = Instant::now();
    let mut b = [0u8; 256];
    match timeout(IO_TIMEOUT, c.wire.io.read(&mut b)).await {
        Err(_) => panic!("{t:?}: an idle tunnel is still open after {IO_TIMEOUT:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{t:?}: expected the tunnel to close, got {:?}",
            lossy(&b[..n])
        ),
    }
    let after = quiet.elapsed();
    assert!(
        after >= NOT_BEFORE,
        "{t:?}: the tunnel closed {after:?} after the last message, before the 1 s idle limit"
    );
}

/// `every_transport!`'s modules, apart from `every_client!`'s.
mod tunnels {
    use super::*;

    every_transport!(an_idle_tunnel_is_closed_and_a_busy_one_is_not);
}
