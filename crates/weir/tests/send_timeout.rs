//! A client that stops reading a large response (docs/operations.md,
//! "Hostile clients"): after `gateway.http.send_timeout` (1 s here) without
//! progress, the gateway closes the client connection and the node
//! connection the response comes from, and the access log line says why
//! (`abort=send_timeout`). Before, such a client pinned both connections
//! (and a backend worker) for as long as it stayed.
//!
//! Every client (`every_client!`): HTTP/1.1 on the fast path (plain and
//! TLS) and on the general path, whose client takes nothing (a socket with a
//! 4 KiB receive window that is never read), and h2c, whose client (hyper's)
//! keeps reading the socket but never reads the body, so the stream's
//! flow-control window stays shut. An HTTP/1.1 client is cut off with a
//! reset (SO_LINGER 0). Plus the measured case: the
//! client half-closes (FIN) while the gateway is blocked writing to it; and
//! a raw HTTP/2 client that reads every byte but grants no flow-control
//! window, which only the connection's send-stall watch can see.

mod common;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use common::hostile::{maybe_tls, tiny_window_tcp, LogFile};
use common::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::{timeout, Instant};

/// The response: far more than the socket buffers on both sides hold.
const BIG: usize = 16 << 20;

/// Bound on the wait for the 1 s send timeout to act.
const BOUND: Duration = Duration::from_secs(8);

/// Sooner than this after the request, a close is not the timeout's doing.
const NOT_BEFORE: Duration = Duration::from_millis(800);

/// How a node connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The whole response went out.
    Sent,
    /// A write failed: the gateway closed the connection.
    Cut,
}

/// A node answering every request with [`BIG`] bytes; `ended` reports how
/// each of its connections ended, and `blocked` is notified when one of
/// them first finds its socket full: the gateway has stopped reading it,
/// which it does only while it cannot write to its client.
struct BigNode {
    addr: String,
    ended: mpsc::UnboundedReceiver<Ended>,
    blocked: Arc<Notify>,
}

impl BigNode {
    async fn start() -> BigNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let (tx, ended) = mpsc::unbounded_channel();
        let blocked = Arc::new(Notify::new());
        let notify = blocked.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, notify) = (tx.clone(), notify.clone());
                tokio::spawn(async move {
                    let mut wire = Wire::new(tcp);
                    if !matches!(wire.head().await, Ok(Some(_))) {
                        return;
                    }
                    let sent = send_big(&wire.io, &notify).await;
                    let _ = tx.send(if sent.is_ok() {
                        Ended::Sent
                    } else {
                        Ended::Cut
                    });
                });
            }
        });
        BigNode {
            addr,
            ended,
            blocked,
        }
    }

    /// How the next node connection ended, within [`BOUND`].
    async fn next_end(&mut self, what: &str) -> Ended {
        timeout(BOUND, self.ended.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: the node connection is still open after {BOUND:?}"))
            .expect("the node's reports")
    }
}

/// Writes the response head and [`BIG`] bytes on `tcp`, notifying
/// `blocked` the first time the socket is full.
async fn send_big(tcp: &TcpStream, blocked: &Notify) -> io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
    let chunk = vec![b'z'; 64 * 1024];
    let mut told = false;
    let mut pending = head.into_bytes();
    let mut left = BIG;
    loop {
        while !pending.is_empty() {
            match tcp.try_write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !std::mem::replace(&mut told, true) {
                        blocked.notify_one();
                    }
                    tcp.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        if left == 0 {
            return Ok(());
        }
        let n = left.min(chunk.len());
        pending.extend_from_slice(&chunk[..n]);
        left -= n;
    }
}

async fn gateway(t: Transport, node: &BigNode, log: &LogFile) -> TestGateway {
    let extra = serde_json::json!({
        "gateway": {"http": {"send_timeout": 1}, "access_log": log.config()},
    });
    gateway_with(t, std::slice::from_ref(&node.addr), extra).await
}

/// Reads what is left to read on `io` (bounded): the connection must end.
/// Returns the number of bytes read, and how the connection ended (None:
/// an orderly close).
async fn drain(io: &mut Box<dyn ClientIo>, what: &str) -> (usize, Option<io::ErrorKind>) {
    let mut total = 0;
    let mut b = vec![0u8; 256 * 1024];
    let drained = timeout(BOUND, async {
        loop {
            match io.read(&mut b).await {
                Ok(0) => return None,
                Err(e) => return Some(e.kind()),
                Ok(n) => total += n,
            }
        }
    })
    .await;
    match drained {
        Ok(end) => (total, end),
        Err(_) => panic!("{what}: the client connection is still open after {BOUND:?}"),
    }
}

/// A client that sends its request and never reads (HTTP/1.1), or never
/// reads the body (HTTP/2).
async fn a_client_that_stops_reading_is_cut_off_with_its_node(via: Via) {
    let mut node = BigNode::start().await;
    let log = LogFile::new();
    let gw = gateway(via.transport(), &node, &log).await;
    let what = format!("{via:?}");
    let (sent, client_end) = match via {
        Via::H1(_) => {
            let tcp = tiny_window_tcp(gw.proxy_addr()).await;
            let mut io = maybe_tls(tcp, gw.tls_connector(), b"http/1.1").await;
            io.write_all(format!("GET /big HTTP/1.1\r\nHost: {TLS_NAME}\r\n\r\n").as_bytes())
                .await
                .expect("send the request");
            io.flush().await.expect("flush the request");
            (Instant::now(), ClientEnd::H1(io))
        }
        Via::H2c => {
            let tcp = tokio::net::TcpStream::connect(gw.proxy_addr())
                .await
                .expect("connect");
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .expect("h2c handshake");
            let conn = tokio::spawn(conn);
            let req = http::Request::get(format!("http://{TLS_NAME}/big"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request");
            let sent = Instant::now();
            let resp = timeout(IO_TIMEOUT, sender.send_request(req))
                .await
                .expect("the response head timed out")
                .expect("the response head");
            assert_eq!(resp.status(), 200);
            // The body is held, never read: its window stays shut.
            (sent, ClientEnd::H2(conn, resp))
        }
    };
    assert_eq!(node.next_end(&what).await, Ended::Cut, "{what}");
    let after = sent.elapsed();
    assert!(
        after >= NOT_BEFORE,
        "{what}: the node was cut off {after:?} after the request, before the 1 s send timeout"
    );
    match client_end {
        ClientEnd::H1(mut io) => {
            let (got, end) = drain(&mut io, &what).await;
            assert!(
                got < BIG,
                "{what}: the whole response arrived ({got} bytes)"
            );
            // Reset on close (SO_LINGER 0, nginx's
            // `reset_timedout_connection`): what the client did not take
            // is dropped, not left queued behind a FIN.
            assert_eq!(
                end,
                Some(io::ErrorKind::ConnectionReset),
                "{what}: not closed with a reset after {got} bytes"
            );
        }
        ClientEnd::H2(conn, _held) => {
            let ended = timeout(BOUND, conn).await;
            assert!(
                ended.is_ok(),
                "{what}: the HTTP/2 connection is still open after {BOUND:?}"
            );
        }
    }
    let version = if via == Via::H2c {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    };
    let line = log
        .line_with(&[&format!("\"GET /big {version}\" 200 ")])
        .await;
    assert!(line.ends_with(" abort=send_timeout"), "{what}: {line}");
}

/// The client's end of a case, kept until its connection is checked.
enum ClientEnd {
    H1(Box<dyn ClientIo>),
    H2(
        tokio::task::JoinHandle<Result<(), hyper::Error>>,
        http::Response<hyper::body::Incoming>,
    ),
}

every_client!(a_client_that_stops_reading_is_cut_off_with_its_node);

/// HTTP/2 with a client that reads every byte but grants no flow-control
/// window (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE): the socket
/// never fills, so the write guard sees no wait, and only the connection's
/// send-stall watch (`Activity::next_wake` in `h1/general.rs`) sees the
/// response held. After the 1 s send timeout the connection is dropped, and
/// the node's connection with it.
#[tokio::test]
async fn an_h2c_client_that_reads_but_grants_no_window_is_cut_off_with_its_node() {
    use common::hostile::{frames_until_closed, Answers, RawH2, END_STREAM, HEADERS, SETTINGS};
    const END_HEADERS: u8 = 0x4;
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    let mut node = BigNode::start().await;
    let log = LogFile::new();
    let gw = gateway(Transport::Plain, &node, &log).await;
    let tcp = TcpStream::connect(gw.proxy_addr()).await.expect("connect");
    let mut h2 = RawH2::without_preface(Box::new(tcp));
    h2.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write the preface");
    let mut no_window = INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
    no_window.extend_from_slice(&0u32.to_be_bytes());
    h2.send(SETTINGS, 0, 0, &no_window)
        .await
        .expect("write SETTINGS");
    // HPACK: `:method GET`, `:scheme http` (static table), then `:path`
    // and `:authority` as literals with indexed names, not indexed.
    let mut block = vec![0x82, 0x86, 0x04, 4];
    block.extend_from_slice(b"/big");
    block.push(0x01);
    block.push(u8::try_from(TLS_NAME.len()).expect("short name"));
    block.extend_from_slice(TLS_NAME.as_bytes());
    h2.send(HEADERS, END_STREAM | END_HEADERS, 1, &block)
        .await
        .expect("write HEADERS");
    let sent = Instant::now();
    let seen = timeout(BOUND, frames_until_closed(&mut h2, Answers::Settings, sent))
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {BOUND:?}"));
    let closed = sent.elapsed();
    assert!(
        seen.iter().any(|(kind, _)| *kind == HEADERS),
        "no response head: {seen:?}"
    );
    assert!(
        closed >= NOT_BEFORE,
        "the connection ended {closed:?} after the request, before the send timeout: {seen:?}"
    );
    assert_eq!(node.next_end("h2c without window").await, Ended::Cut);
    let line = log.line_with(&["\"GET /big HTTP/2.0\" 200 "]).await;
    assert!(line.ends_with(" abort=send_timeout"), "{line}");
}

/// The measured case: the client stops reading and, once the
/// gateway is blocked writing to it, half-closes. On the fast path the
/// blocked write did not notice the FIN, and the connection sat in
/// CLOSE-WAIT with 4 MB unsent; now a blocked write watches the client as a
/// wait on the node does, and the FIN ends the exchange at once (hyper's
/// general path notices it too). The send timeout here is 30 s: an end
/// within [`BOUND`] is the FIN's doing.
async fn a_client_that_half_closes_while_the_gateway_is_blocked_is_cut_off_at_once(t: Transport) {
    let mut node = BigNode::start().await;
    let log = LogFile::new();
    let extra = serde_json::json!({
        "gateway": {"http": {"send_timeout": 30}, "access_log": log.config()},
    });
    let gw = gateway_with(t, std::slice::from_ref(&node.addr), extra).await;
    let what = format!("{t:?}");
    let tcp = tiny_window_tcp(gw.proxy_addr()).await;
    let mut io = maybe_tls(tcp, gw.tls_connector(), b"http/1.1").await;
    io.write_all(format!("GET /big HTTP/1.1\r\nHost: {TLS_NAME}\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    io.flush().await.expect("flush the request");
    timeout(IO_TIMEOUT, node.blocked.notified())
        .await
        .unwrap_or_else(|_| panic!("{what}: the gateway never stopped reading the node"));
    io.shutdown().await.expect("half-close");
    assert_eq!(node.next_end(&what).await, Ended::Cut, "{what}");
    let (got, _) = drain(&mut io, &what).await;
    assert!(got < BIG, "{what}: the whole response arrived");
    let line = log.line_with(&["\"GET /big HTTP/1.1\" 200 "]).await;
    assert!(!line.contains("abort="), "{what}: {line}");
}

mod half_close {
    use super::*;

    #[tokio::test]
    async fn plain() {
        a_client_that_half_closes_while_the_gateway_is_blocked_is_cut_off_at_once(Transport::Plain)
            .await;
    }

    #[tokio::test]
    async fn tls() {
        a_client_that_half_closes_while_the_gateway_is_blocked_is_cut_off_at_once(Transport::Tls)
            .await;
    }

    #[tokio::test]
    async fn plain_general() {
        a_client_that_half_closes_while_the_gateway_is_blocked_is_cut_off_at_once(
            Transport::PlainGeneral,
        )
        .await;
    }
}
