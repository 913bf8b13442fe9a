//! HTTP/1.1 on the wire: raw-socket clients write exact request bytes and
//! parse the exact response bytes, and raw-socket backends ("nodes") read the
//! exact bytes weir forwards and answer with exact bytes of their own.
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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use weir::Gateway;

/// Bound on every single client-side wait: nothing in this file can hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("peer closed {what}"))
}

/// `e`, of the same kind, saying where in a message it happened (a TLS
/// stream reports an unclean close as an error, not as end of stream).
fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------
// Message parsing, shared by the client and the raw backend.
// ---------------------------------------------------------------------------

/// A message head: the start line and the header fields in wire order
/// (names lower-cased, duplicates kept).
#[derive(Debug, Clone)]
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(raw).map_err(|_| invalid("head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("header line without a colon: {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(Head { start, headers })
    }

    /// Every value of the field `name`, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The comma-separated list elements of every `name` line, in order.
    fn list(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    fn chunked(&self) -> bool {
        self.list("transfer-encoding")
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<usize>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| invalid(format!("bad Content-Length {v:?}"))),
        }
    }
}

/// A byte stream with a read-ahead buffer (pipelined messages stay in it).
struct Wire<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    fn new(io: S) -> Self {
        Wire {
            io,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next head; `None` when the stream ended cleanly before it.
    async fn head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Head::parse(&raw[..end]).map(Some);
            }
            let n = self.fill().await.map_err(|e| {
                context(
                    e,
                    format_args!("reading a head after {:?}", lossy(&self.buf)),
                )
            })?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(eof(&format!("mid-head after {:?}", lossy(&self.buf))));
            }
        }
    }

    async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            let got = self.buf.len();
            let more = self
                .fill()
                .await
                .map_err(|e| context(e, format_args!("reading body bytes after {got} of {n}")))?;
            if more == 0 {
                return Err(eof(&format!("after {} of {n} body bytes", self.buf.len())));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(lossy(&raw[..end]));
            }
            let n = self
                .fill()
                .await
                .map_err(|e| context(e, "reading a line"))?;
            if n == 0 {
                return Err(eof("mid-line"));
            }
        }
    }

    /// A chunked body, decoded (extensions and trailers are skipped).
    async fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.exact(size).await?);
            let crlf = self.exact(2).await?;
            if crlf != b"\r\n" {
                return Err(invalid(format!("chunk not followed by CRLF: {crlf:?}")));
            }
        }
    }

    async fn until_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

// ---------------------------------------------------------------------------
// The raw client.
// ---------------------------------------------------------------------------

/// How a response body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    NoBody,
    ContentLength,
    Chunked,
    /// Read until the connection closed.
    Close,
}

/// A final response as the client saw it.
#[derive(Debug)]
struct Response {
    /// `HTTP/1.1`, `HTTP/1.0`...
    version: String,
    status: u16,
    head: Head,
    body: Vec<u8>,
    framing: Framing,
    /// Statuses of the interim (1xx) responses that came before it.
    interim: Vec<u16>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    fn text(&self) -> String {
        lossy(&self.body)
    }
}

/// A client's connection to the gateway: a TCP stream, or a TLS stream
/// over one.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

struct Client {
    wire: Wire<Box<dyn ClientIo>>,
}

impl Client {
    /// A connection to `gw`'s listener, TLS-wrapped when the listener is.
    async fn connect(gw: &TestGateway) -> Client {
        let addr = gw.proxy_addr();
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect to the gateway timed out")
            .expect("connect to the gateway");
        stream.set_nodelay(true).expect("set_nodelay");
        let io: Box<dyn ClientIo> = match &gw.tls {
            None => Box::new(stream),
            Some(connector) => {
                let name = ServerName::try_from(TLS_NAME).expect("TLS server name");
                let tls = timeout(IO_TIMEOUT, connector.connect(name, stream))
                    .await
                    .expect("TLS handshake with the gateway timed out")
                    .expect("TLS handshake with the gateway");
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"http/1.1"[..]),
                    "the TLS listener must negotiate http/1.1"
                );
                Box::new(tls)
            }
        };
        Client {
            wire: Wire::new(io),
        }
    }

    /// Writes `bytes` and flushes them (a TLS stream may buffer).
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.io.write_all(bytes).await?;
        self.wire.io.flush().await
    }

    async fn send(&mut self, bytes: &[u8]) {
        timeout(IO_TIMEOUT, self.write(bytes))
            .await
            .expect("writing the request timed out")
            .expect("writing the request");
    }

    /// Like `send`, for requests the gateway may refuse (and close on)
    /// before reading them whole.
    async fn send_lenient(&mut self, bytes: &[u8]) -> io::Result<()> {
        match timeout(IO_TIMEOUT, self.write(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// The next final response, skipping (and recording) 1xx interim ones;
    /// `None` when the connection closed cleanly before any byte of it.
    async fn read_response(&mut self, to_head: bool) -> io::Result<Option<Response>> {
        let mut interim = Vec::new();
        loop {
            let Some(head) = self.wire.head().await? else {
                if interim.is_empty() {
                    return Ok(None);
                }
                return Err(eof("after an interim response"));
            };
            let mut parts = head.start.splitn(3, ' ');
            let version = parts.next().unwrap_or_default().to_owned();
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {:?}", head.start)))?;
            if !version.starts_with("HTTP/1.") {
                return Err(invalid(format!("bad status line {:?}", head.start)));
            }
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            let (body, framing) = if to_head || status < 200 || status == 204 || status == 304 {
                (Vec::new(), Framing::NoBody)
            } else if head.chunked() {
                (self.wire.chunked().await?, Framing::Chunked)
            } else if let Some(n) = head.content_length()? {
                (self.wire.exact(n).await?, Framing::ContentLength)
            } else {
                (self.wire.until_eof().await?, Framing::Close)
            };
            return Ok(Some(Response {
                version,
                status,
                head,
                body,
                framing,
                interim,
            }));
        }
    }

    async fn try_response(&mut self, to_head: bool) -> io::Result<Option<Response>> {
        match timeout(IO_TIMEOUT, self.read_response(to_head)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no complete response within {IO_TIMEOUT:?}; buffered: {:?}",
                    lossy(&self.wire.buf)
                ),
            )),
        }
    }

    /// The response to a request other than HEAD.
    async fn response(&mut self) -> Response {
        self.response_to(false).await
    }

    async fn response_to(&mut self, to_head: bool) -> Response {
        match self.try_response(to_head).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the gateway closed the connection instead of answering"),
            Err(e) => panic!("reading the response: {e}"),
        }
    }

    /// Asserts the gateway closes the connection (read returns 0, or the
    /// connection is reset) with nothing more sent.
    async fn expect_closed(&mut self, what: &str) {
        assert!(
            self.wire.buf.is_empty(),
            "{what}: unexpected bytes after the response: {:?}",
            lossy(&self.wire.buf)
        );
        let mut b = [0u8; 1024];
        match timeout(IO_TIMEOUT, self.wire.io.read(&mut b)).await {
            Err(_) => panic!("{what}: the connection is still open after {IO_TIMEOUT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!(
                "{what}: expected the connection to close, got {:?}",
                lossy(&b[..n])
            ),
        }
    }
}

/// A GET with a Host header, on its own.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: wire.test\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// The raw backend.
// ---------------------------------------------------------------------------

/// A request as a raw backend read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    version: String,
    head: Head,
    /// The body, de-chunked when it came chunked.
    body: Vec<u8>,
    /// Which TCP connection (1-based, in accept order) carried it.
    conn: usize,
}

/// What a raw backend does once it has read a request.
enum Answer {
    /// Write these bytes and keep reading requests on the connection.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Close the connection without answering.
    HangUp,
}

type AnswerFn = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A node written byte by byte: reads requests (Content-Length or chunked
/// bodies), records them, and answers whatever bytes the test dictates. It
/// sends `100 Continue` when a request expects it.
struct RawBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    async fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().expect("raw backend address");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<AnswerFn> = Arc::new(answer);
        let (c, s) = (connections.clone(), seen.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = c.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve_raw(stream, id, answer.clone(), s.clone()));
            }
        });
        RawBackend {
            addr,
            connections,
            seen,
            accept,
        }
    }

    fn node(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The only request this backend saw.
    fn only_request(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "the backend saw {seen:#?}");
        seen.into_iter().next().expect("one request")
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve_raw(
    stream: TcpStream,
    conn: usize,
    answer: Arc<AnswerFn>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let _ = stream.set_nodelay(true);
    let mut wire = Wire::new(stream);
    loop {
        let Ok(Some(head)) = wire.head().await else {
            return;
        };
        let mut parts = head.start.splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().unwrap_or_default().to_owned();
        if head.has_token("expect", "100-continue")
            && wire
                .io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let body = if head.chunked() {
            wire.chunked().await
        } else {
            match head.content_length() {
                Ok(Some(n)) => wire.exact(n).await,
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        let Ok(body) = body else { return };
        let request = Seen {
            method,
            target,
            version,
            head,
            body,
            conn,
        };
        seen.lock().expect("seen lock").push(request.clone());
        match answer(&request) {
            Answer::Send(bytes) => {
                if wire.io.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::SendAndClose(bytes) => {
                let _ = wire.io.write_all(&bytes).await;
                let _ = wire.io.shutdown().await;
                return;
            }
            Answer::HangUp => return,
        }
    }
}

/// `200 OK` with a Content-Length body.
fn ok(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A backend answering every request with its target as the body.
async fn echo_target() -> RawBackend {
    RawBackend::start(|s| Answer::Send(ok(&s.target))).await
}

// ---------------------------------------------------------------------------
// The gateway, on a plain or a TLS listener.
// ---------------------------------------------------------------------------

/// How the client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Cleartext HTTP/1.1 to a plain listener.
    Plain,
    /// HTTP/1.1 over TLS (ALPN `http/1.1` only) to a TLS listener.
    Tls,
    /// Cleartext HTTP/1.1 to a plain listener, with the HTTP/1.1 fast path
    /// switched off (`http.fast_path: false`): the general path serves all.
    PlainGeneral,
}

impl Transport {
    /// The scheme weir reports to nodes in `X-Forwarded-Proto`.
    fn scheme(self) -> &'static str {
        match self {
            Transport::Plain | Transport::PlainGeneral => "http",
            Transport::Tls => "https",
        }
    }
}

/// The server name the TLS listener's certificate is for, sent as SNI.
const TLS_NAME: &str = "wire.test";

/// A running gateway and what a client needs to reach it.
struct TestGateway {
    gateway: Gateway,
    /// Set for a TLS listener: a client trusting exactly its certificate.
    tls: Option<TlsConnector>,
    /// The certificate and key files of a TLS listener.
    _certs: Option<tempfile::TempDir>,
}

impl TestGateway {
    fn proxy_addr(&self) -> SocketAddr {
        self.gateway.proxy_addr()
    }
}

/// A client TLS configuration trusting exactly `cert`, offering only
/// `http/1.1` by ALPN.
fn tls_connector(cert: &rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// A gateway with one catch-all route (no host) to `nodes`, weight 1 each,
/// on a 127.0.0.1 listener of the kind `t` asks for. A TLS listener gets a
/// fresh self-signed certificate for `wire.test`, from files in a temporary
/// directory of its own.
async fn gateway_to(t: Transport, nodes: &[String]) -> TestGateway {
    let nodes: serde_json::Map<String, serde_json::Value> =
        nodes.iter().map(|n| (n.clone(), 1.into())).collect();
    let mut config = serde_json::json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": t == Transport::Tls}]},
        "routes": [{"id": "wire", "uri": "/*", "upstream": {"nodes": nodes}}]
    });
    if t == Transport::PlainGeneral {
        config["gateway"]["http"] = serde_json::json!({"fast_path": false});
    }
    let (tls, certs) = match t {
        Transport::Plain | Transport::PlainGeneral => (None, None),
        Transport::Tls => {
            let ck = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()])
                .expect("generate a certificate");
            let dir = tempfile::tempdir().expect("temporary directory");
            let cert_file = dir.path().join("wire.crt");
            let key_file = dir.path().join("wire.key");
            std::fs::write(&cert_file, ck.cert.pem()).expect("write the certificate");
            std::fs::write(&key_file, ck.signing_key.serialize_pem()).expect("write the key");
            config["ssls"] = serde_json::json!([{
                "id": "wire",
                "sni": TLS_NAME,
                "cert_file": cert_file.to_str().expect("UTF-8 temporary path"),
                "key_file": key_file.to_str().expect("UTF-8 temporary path"),
            }]);
            (Some(tls_connector(ck.cert.der())), Some(dir))
        }
    };
    TestGateway {
        gateway: common::gateway(&config.to_string()).await,
        tls,
        _certs: certs,
    }
}

// ---------------------------------------------------------------------------
// Tests.
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

// ---------------------------------------------------------------------------
// Beyond the basics: message framing and header hygiene, where a proxy and
// the servers around it must agree on where each message ends (request
// smuggling, response splitting) and on which host a request is for.
// ---------------------------------------------------------------------------

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

/// For each case `name(t: Transport)` above, `plain::name`, `tls::name` and
/// `plain_general::name`.
macro_rules! every_transport {
    ($($case:ident),* $(,)?) => {
        mod plain {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Transport::Plain).await;
                }
            )*
        }

        mod tls {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Transport::Tls).await;
                }
            )*
        }

        mod plain_general {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Transport::PlainGeneral).await;
                }
            )*
        }
    };
}

every_transport!(
    pipelined_requests_get_responses_in_order,
    fifty_requests_on_one_client_connection_reuse_upstream_connections,
    chunked_request_body_reaches_the_node_intact,
    chunked_response_is_decoded_and_the_connection_stays_usable,
    one_mib_content_length_body_streamed_in_pieces_arrives_intact,
    close_delimited_response_reaches_the_client_whole,
    head_response_has_headers_but_no_body,
    no_body_204_and_304_keep_the_connection_usable,
    hop_by_hop_headers_are_removed_both_ways_and_forwarded_headers_added,
    hop_by_hop_headers_are_removed_without_an_upgrade_field_too,
    duplicate_headers_are_preserved_in_order,
    connection_close_from_the_client_closes_after_the_response,
    http10_request_without_host_is_answered_and_closed_unless_keep_alive,
    malformed_requests_get_400_or_a_close_and_the_gateway_keeps_serving,
    oversized_header_section_is_refused_and_the_gateway_keeps_serving,
    expect_100_continue_gets_continue_then_the_final_response,
    absolute_form_target_reaches_the_node_in_origin_form,
    interim_103_from_the_node_does_not_hide_the_final_response,
    post_to_a_node_that_hangs_up_is_502_and_never_replayed,
    get_to_a_node_that_hangs_up_is_retried_on_another_node,
    request_with_content_length_and_chunked_is_refused_or_dechunked_then_closed,
    invalid_request_framing_is_400_and_never_reaches_the_node,
    nul_or_bare_cr_in_a_request_header_never_reaches_the_node,
    empty_line_before_a_request_is_ignored,
    malformed_chunked_request_body_is_a_client_error_not_a_gateway_error,
    get_with_a_content_length_body_keeps_its_body,
    get_with_a_chunked_body_keeps_its_body,
    http11_request_without_host_or_with_two_hosts_is_400,
    http10_request_without_host_reaches_the_node_with_a_host_header,
    absolute_form_authority_replaces_the_host_header,
    invalid_upstream_responses_are_502,
    upstream_response_with_content_length_and_chunked_is_relayed_consistently,
    truncated_upstream_bodies_are_not_completed_for_the_client,
    junk_after_an_upstream_response_does_not_leak_into_the_next_one,
    upstream_http10_response_reaches_an_http11_client_as_http11,
);
