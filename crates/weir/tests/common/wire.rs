//! The harness of the HTTP/1.1 wire tests (`http1_wire*.rs`): a raw-socket
//! client that writes exact request bytes and parses the exact response
//! bytes, raw-socket backends ("nodes") that read the exact bytes weir
//! forwards and answer with exact bytes of their own, and the gateway on a
//! listener of each [`Transport`]. `every_transport!` runs a case once per
//! transport.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use weir::Gateway;

/// Bound on every single client-side wait: no wire test can hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("peer closed {what}"))
}

/// `e`, of the same kind, saying where in a message it happened (a TLS
/// stream reports an unclean close as an error, not as end of stream).
pub fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------
// Message parsing, shared by the client and the raw backend.
// ---------------------------------------------------------------------------

/// A message head: the start line and the header fields in wire order
/// (names lower-cased, duplicates kept).
#[derive(Debug, Clone)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn parse(raw: &[u8]) -> io::Result<Head> {
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
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The comma-separated list elements of every `name` line, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    pub fn chunked(&self) -> bool {
        self.list("transfer-encoding")
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    }

    pub fn content_length(&self) -> io::Result<Option<usize>> {
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
pub struct Wire<S> {
    pub io: S,
    pub buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    pub fn new(io: S) -> Self {
        Wire {
            io,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next head; `None` when the stream ended cleanly before it.
    pub async fn head(&mut self) -> io::Result<Option<Head>> {
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

    pub async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
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

    pub async fn line(&mut self) -> io::Result<String> {
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
    pub async fn chunked(&mut self) -> io::Result<Vec<u8>> {
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

    pub async fn until_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

// ---------------------------------------------------------------------------
// The raw client.
// ---------------------------------------------------------------------------

/// How a response body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304).
    NoBody,
    ContentLength,
    Chunked,
    /// Read until the connection closed.
    Close,
}

/// A final response as the client saw it.
#[derive(Debug)]
pub struct Response {
    /// `HTTP/1.1`, `HTTP/1.0`...
    pub version: String,
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Statuses of the interim (1xx) responses that came before it.
    pub interim: Vec<u16>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    pub fn text(&self) -> String {
        lossy(&self.body)
    }
}

/// A client's connection to the gateway: a TCP stream, or a TLS stream
/// over one.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// The receiving half of a client's connection.
pub type ClientReader = ReadHalf<Box<dyn ClientIo>>;

/// The sending half of a client's connection.
pub type ClientWriter = WriteHalf<Box<dyn ClientIo>>;

pub struct Client {
    /// What the gateway sent, with what was read ahead.
    pub wire: Wire<ClientReader>,
    /// `None` once [`Client::take_writer`] took it.
    writer: Option<ClientWriter>,
}

impl Client {
    /// A connection to `gw`'s listener, TLS-wrapped when the listener is.
    pub async fn connect(gw: &TestGateway) -> Client {
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
        let (reader, writer) = tokio::io::split(io);
        Client {
            wire: Wire::new(reader),
            writer: Some(writer),
        }
    }

    /// The sending half, for a test that writes while it reads (from
    /// another task); the `write` and `send` methods panic afterwards.
    pub fn take_writer(&mut self) -> ClientWriter {
        self.writer.take().expect("the writer was taken already")
    }

    /// Writes `bytes` and flushes them (a TLS stream may buffer).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.writer.as_mut().expect("the writer was taken");
        w.write_all(bytes).await?;
        w.flush().await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        timeout(IO_TIMEOUT, self.write(bytes))
            .await
            .expect("writing the request timed out")
            .expect("writing the request");
    }

    /// Like `send`, for requests the gateway may refuse (and close on)
    /// before reading them whole.
    pub async fn send_lenient(&mut self, bytes: &[u8]) -> io::Result<()> {
        match timeout(IO_TIMEOUT, self.write(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// The next final response, skipping (and recording) 1xx interim ones;
    /// `None` when the connection closed cleanly before any byte of it.
    pub async fn read_response(&mut self, to_head: bool) -> io::Result<Option<Response>> {
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

    pub async fn try_response(&mut self, to_head: bool) -> io::Result<Option<Response>> {
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
    pub async fn response(&mut self) -> Response {
        self.response_to(false).await
    }

    pub async fn response_to(&mut self, to_head: bool) -> Response {
        match self.try_response(to_head).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the gateway closed the connection instead of answering"),
            Err(e) => panic!("reading the response: {e}"),
        }
    }

    /// Asserts the gateway closes the connection (read returns 0, or the
    /// connection is reset) with nothing more sent.
    pub async fn expect_closed(&mut self, what: &str) {
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
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: wire.test\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// The raw backend.
// ---------------------------------------------------------------------------

/// A request as a raw backend read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    pub head: Head,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
    /// Which TCP connection (1-based, in accept order) carried it.
    pub conn: usize,
}

/// What a raw backend does once it has read a request.
pub enum Answer {
    /// Write these bytes and keep reading requests on the connection.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Close the connection without answering.
    HangUp,
}

pub type AnswerFn = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A node written byte by byte: reads requests (Content-Length or chunked
/// bodies), records them, and answers whatever bytes the test dictates. It
/// sends `100 Continue` when a request expects it.
pub struct RawBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    pub async fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> RawBackend {
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

    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The only request this backend saw.
    pub fn only_request(&self) -> Seen {
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

pub async fn serve_raw(
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
pub fn ok(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A backend answering every request with its target as the body.
pub async fn echo_target() -> RawBackend {
    RawBackend::start(|s| Answer::Send(ok(&s.target))).await
}

// ---------------------------------------------------------------------------
// The gateway, on a plain or a TLS listener.
// ---------------------------------------------------------------------------

/// How the client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
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
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Plain | Transport::PlainGeneral => "http",
            Transport::Tls => "https",
        }
    }
}

/// The server name the TLS listener's certificate is for, sent as SNI.
pub const TLS_NAME: &str = "wire.test";

/// A running gateway and what a client needs to reach it.
pub struct TestGateway {
    gateway: Gateway,
    /// Set for a TLS listener: a client trusting exactly its certificate.
    tls: Option<TlsConnector>,
    /// The certificate and key files of a TLS listener.
    _certs: Option<tempfile::TempDir>,
}

impl TestGateway {
    pub fn proxy_addr(&self) -> SocketAddr {
        self.gateway.proxy_addr()
    }

    /// A TLS listener's client configuration (ALPN `http/1.1`).
    pub fn tls_connector(&self) -> Option<&TlsConnector> {
        self.tls.as_ref()
    }
}

/// A client TLS configuration trusting exactly `cert`, offering only
/// `http/1.1` by ALPN.
pub fn tls_connector(cert: &rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
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
pub async fn gateway_to(t: Transport, nodes: &[String]) -> TestGateway {
    gateway_with(t, nodes, serde_json::json!({})).await
}

/// Like [`gateway_to`], with `extra` merged into the configuration (objects
/// merged key by key, anything else replaced), e.g.
/// `{"gateway": {"http": {"header_timeout": 1}}}`.
pub async fn gateway_with(t: Transport, nodes: &[String], extra: serde_json::Value) -> TestGateway {
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
    merge(&mut config, extra);
    TestGateway {
        gateway: super::gateway(&config.to_string()).await,
        tls,
        _certs: certs,
    }
}

/// Merges `extra` into `into`: objects key by key, anything else replaced.
fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    match (into, extra) {
        (serde_json::Value::Object(into), serde_json::Value::Object(extra)) => {
            for (k, v) in extra {
                merge(into.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (into, extra) => *into = extra,
    }
}

// ---------------------------------------------------------------------------
// Every case, once per transport.
// ---------------------------------------------------------------------------

/// For each case `name(t: Transport)` at the root of the test file that
/// invokes it, the tests `plain::name`, `tls::name` and `plain_general::name`.
/// A case preceded by `#[plain_general(ATTR)]` gets `#[ATTR]` on its
/// `plain_general` test only (e.g. `ignore = "why"` for a known gap of the
/// general path).
#[macro_export]
macro_rules! every_transport {
    ($($(#[plain_general($($general:tt)*)])? $case:ident),* $(,)?) => {
        mod plain {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::common::wire::Transport::Plain).await;
                }
            )*
        }

        mod tls {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::common::wire::Transport::Tls).await;
                }
            )*
        }

        mod plain_general {
            $(
                $(#[$($general)*])?
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::common::wire::Transport::PlainGeneral).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// The gateway's control API, for tests that read its state.
// ---------------------------------------------------------------------------

impl TestGateway {
    /// The control API address (`/v1/upstreams`, `/v1/healthcheck`...).
    pub fn control_addr(&self) -> SocketAddr {
        self.gateway
            .control_addr()
            .expect("the test gateway has a control listener")
    }
}

/// `GET {path}` on the control API of `gw`, as JSON.
pub async fn control_json(gw: &TestGateway, path: &str) -> serde_json::Value {
    let r = timeout(IO_TIMEOUT, super::get(gw.control_addr(), None, path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} on the control API timed out"));
    assert_eq!(r.status, http::StatusCode::OK, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
}

// The clients that speak every transport (HTTP/2 included) and their
// macro live in `any_client.rs`.
#[allow(unused_imports)]
pub use super::any_client::*;
