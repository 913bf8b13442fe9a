//! The harness of the plugin tests (`plugins_*.rs`): a gateway started on a
//! configuration of the test's own (routes with plugins, consumers,
//! credentials, groups, services, plugin configs, global rules), and one
//! client that speaks to it over each transport a request can take:
//!
//! - `plain`: cleartext HTTP/1.1 to a plain listener (weir's fast path);
//! - `tls`: HTTP/1.1 over TLS (ALPN `http/1.1`);
//! - `plain_general`: cleartext HTTP/1.1 with `http.fast_path: false` (the
//!   general, hyper-based path);
//! - `h2c`: HTTP/2 with prior knowledge on a plain listener;
//! - `h2_tls`: HTTP/2 over TLS (ALPN `h2`).
//!
//! HTTP/1.1 requests are written byte by byte and responses parsed from the
//! bytes with the wire harness (`common/wire.rs`); nodes are its raw
//! backends, so a test sees the exact head and target weir forwards.
//! `on_every_transport!` runs a case once per transport.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::common::wire::{
    lossy, tls_connector, ClientIo, ClientReader, ClientWriter, Head, RawBackend, Seen, Wire,
    IO_TIMEOUT, TLS_NAME,
};

/// How the client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    /// HTTP/1.1, cleartext, fast path.
    Plain,
    /// HTTP/1.1 over TLS.
    Tls,
    /// HTTP/1.1, cleartext, `http.fast_path: false`.
    PlainGeneral,
    /// HTTP/2 with prior knowledge, cleartext.
    H2c,
    /// HTTP/2 over TLS.
    H2Tls,
}

impl T {
    pub fn tls(self) -> bool {
        matches!(self, T::Tls | T::H2Tls)
    }

    pub fn h2(self) -> bool {
        matches!(self, T::H2c | T::H2Tls)
    }

    pub fn scheme(self) -> &'static str {
        if self.tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// A running gateway and what a client needs to reach it.
pub struct Gw {
    pub gateway: weir::Gateway,
    pub t: T,
    tls: Option<TlsConnector>,
    _certs: Option<tempfile::TempDir>,
}

/// Merges `extra` into `into`: objects key by key, anything else replaced.
pub fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(into), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, extra) => *into = extra,
    }
}

/// An inline upstream to `node`.
pub fn upstream(node: &str) -> Value {
    json!({"nodes": {node: 1}})
}

/// Starts a gateway on `config` (routes, consumers...; a `gateway` section
/// is merged with the listener this transport needs) with one listener of
/// the kind `t` asks for, on 127.0.0.1:0. A TLS listener gets a fresh
/// self-signed certificate for `wire.test`.
pub async fn start(t: T, config: Value) -> Gw {
    let mut doc = json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": t.tls()}]},
    });
    if t == T::PlainGeneral {
        doc["gateway"]["http"] = json!({"fast_path": false});
    }
    merge(&mut doc, config);
    let (tls, certs) = if t.tls() {
        let ck = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()])
            .expect("generate a certificate");
        let dir = tempfile::tempdir().expect("temporary directory");
        let cert_file = dir.path().join("gw.crt");
        let key_file = dir.path().join("gw.key");
        std::fs::write(&cert_file, ck.cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, ck.signing_key.serialize_pem()).expect("write the key");
        doc["ssls"] = json!([{
            "id": "wire",
            "sni": TLS_NAME,
            "cert_file": cert_file.to_str().expect("UTF-8 temporary path"),
            "key_file": key_file.to_str().expect("UTF-8 temporary path"),
        }]);
        let connector = if t.h2() {
            h2_connector(ck.cert.der())
        } else {
            tls_connector(ck.cert.der())
        };
        (Some(connector), Some(dir))
    } else {
        (None, None)
    };
    Gw {
        gateway: crate::common::gateway(&doc.to_string()).await,
        t,
        tls,
        _certs: certs,
    }
}

/// A client TLS configuration trusting exactly `cert`, offering only `h2`.
fn h2_connector(cert: &rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

impl Gw {
    pub fn control_addr(&self) -> std::net::SocketAddr {
        self.gateway
            .control_addr()
            .expect("the test gateway has a control listener")
    }

    /// A client of this gateway over its transport (it connects on its
    /// first request and keeps the connection while the gateway does).
    pub fn client(&self) -> Client {
        Client {
            t: self.t,
            addr: self.gateway.proxy_addr(),
            tls: self.tls.clone(),
            h1: None,
            h2: None,
        }
    }

    /// One request on a connection of its own.
    pub async fn send(&self, req: &Req) -> Resp {
        self.client().send(req).await
    }
}

/// A request: method, target (path and query), fields, body.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn get(target: &str) -> Req {
        Req {
            method: "GET".into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(target: &str, body: &[u8]) -> Req {
        Req {
            method: "POST".into(),
            target: target.into(),
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A final response as the client saw it (field names lower-cased).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    pub fn text(&self) -> String {
        lossy(&self.body)
    }
}

pub struct Client {
    t: T,
    addr: std::net::SocketAddr,
    tls: Option<TlsConnector>,
    h1: Option<(Wire<ClientReader>, ClientWriter)>,
    h2: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn io(&self) -> Box<dyn ClientIo> {
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .expect("connect to the gateway timed out")
            .expect("connect to the gateway");
        tcp.set_nodelay(true).expect("set_nodelay");
        match &self.tls {
            None => Box::new(tcp),
            Some(connector) => {
                let name = ServerName::try_from(TLS_NAME).expect("TLS server name");
                let tls = timeout(IO_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .expect("TLS handshake with the gateway timed out")
                    .expect("TLS handshake with the gateway");
                let want: &[u8] = if self.t.h2() { b"h2" } else { b"http/1.1" };
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(want),
                    "ALPN with the TLS listener"
                );
                Box::new(tls)
            }
        }
    }

    /// Sends `req` and reads the whole response, within [`IO_TIMEOUT`].
    pub async fn send(&mut self, req: &Req) -> Resp {
        let what = format!("{:?} {} {}", self.t, req.method, req.target);
        match timeout(IO_TIMEOUT * 2, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => panic!("{what}: no complete response in time"),
        }
    }

    async fn exchange(&mut self, req: &Req) -> Resp {
        if self.t.h2() {
            self.h2_exchange(req).await
        } else {
            self.h1_exchange(req).await
        }
    }

    async fn h1_exchange(&mut self, req: &Req) -> Resp {
        if self.h1.is_none() {
            let (r, w) = tokio::io::split(self.io().await);
            self.h1 = Some((Wire::new(r), w));
        }
        let (wire, writer) = self.h1.as_mut().expect("connection");
        let mut bytes = format!("{} {} HTTP/1.1\r\n", req.method, req.target).into_bytes();
        if !req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            bytes.extend_from_slice(format!("Host: {TLS_NAME}\r\n").as_bytes());
        }
        for (n, v) in &req.headers {
            bytes.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&req.body);
        writer.write_all(&bytes).await.expect("write the request");
        writer.flush().await.expect("flush the request");
        let head: Head = wire
            .head()
            .await
            .expect("read the response head")
            .expect("the gateway closed the connection instead of answering");
        let status: u16 = head
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {:?}", head.start));
        assert!(
            head.start.starts_with("HTTP/1.1 "),
            "status line {:?}",
            head.start
        );
        let body = if req.method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if head.chunked() {
            wire.chunked().await.expect("chunked body")
        } else if let Some(n) = head.content_length().expect("Content-Length") {
            wire.exact(n).await.expect("body")
        } else {
            wire.until_eof().await.expect("body up to the close")
        };
        if head.has_token("connection", "close") {
            self.h1 = None;
        }
        Resp {
            status,
            headers: head.headers,
            body,
        }
    }

    async fn h2_exchange(&mut self, req: &Req) -> Resp {
        if self.h2.is_none() {
            let io = self.io().await;
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            self.h2 = Some(sender);
        }
        let sender = self.h2.as_mut().expect("h2 connection");
        let mut b = http::Request::builder()
            .method(req.method.as_str())
            .uri(format!("{}://{TLS_NAME}{}", self.t.scheme(), req.target));
        for (n, v) in &req.headers {
            if n.eq_ignore_ascii_case("host") {
                continue;
            }
            b = b.header(n.as_str(), v.as_str());
        }
        let request = b
            .body(Full::new(Bytes::from(req.body.clone())))
            .expect("request");
        sender.ready().await.expect("h2 connection ready");
        let resp = sender.send_request(request).await.expect("h2 request");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("h2 body").to_bytes().to_vec();
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), lossy(v.as_bytes())))
            .collect();
        Resp {
            status: parts.status.as_u16(),
            headers,
            body,
        }
    }
}

/// The request the node saw last.
pub fn last(b: &RawBackend) -> Seen {
    b.seen().pop().expect("the node saw no request")
}

/// `{"message":"<m>"}` and a newline: an APISIX plugin's rejection body.
pub fn message(m: &str) -> String {
    format!("{}\n", json!({ "message": m }))
}

/// Asserts a plugin's rejection: status, exact body, and (for
/// authentication plugins) the challenge; the node saw nothing new.
pub fn assert_rejected(
    what: &str,
    r: &Resp,
    status: u16,
    body: &str,
    challenge: Option<&str>,
    node: &RawBackend,
    seen_before: usize,
) {
    assert_eq!(r.status, status, "{what}: status; body {:?}", r.text());
    assert_eq!(r.text(), body, "{what}: body");
    if let Some(c) = challenge {
        assert_eq!(
            r.all("www-authenticate"),
            vec![c],
            "{what}: WWW-Authenticate; headers {:?}",
            r.headers
        );
    }
    assert_eq!(
        node.seen().len(),
        seen_before,
        "{what}: a rejected request must not reach the node: {:#?}",
        node.seen().last()
    );
}

/// The single value of `name` in the head the node saw (`None`: absent);
/// panics if the field came more than once.
pub fn one(seen: &Seen, name: &str) -> Option<String> {
    let all = seen.head.all(name);
    assert!(
        all.len() <= 1,
        "{name} must reach the node at most once: {:?}",
        seen.head.headers
    );
    all.first().map(|v| (*v).to_owned())
}

/// For each case `name(t: T)` at the root of the test file that invokes it,
/// the tests `plain::name`, `tls::name`, `plain_general::name`, `h2c::name`
/// and `h2_tls::name`. Attributes before a case (`#[ignore = "bug: ..."]`)
/// go on each of its tests.
#[macro_export]
macro_rules! on_every_transport {
    ($($(#[$attr:meta])* $case:ident),* $(,)?) => {
        $crate::on_every_transport!(@mod plain Plain; $($(#[$attr])* $case),*);
        $crate::on_every_transport!(@mod tls Tls; $($(#[$attr])* $case),*);
        $crate::on_every_transport!(@mod plain_general PlainGeneral; $($(#[$attr])* $case),*);
        $crate::on_every_transport!(@mod h2c H2c; $($(#[$attr])* $case),*);
        $crate::on_every_transport!(@mod h2_tls H2Tls; $($(#[$attr])* $case),*);
    };
    (@mod $m:ident $t:ident; $($(#[$attr:meta])* $case:ident),*) => {
        mod $m {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::plugin_kit::T::$t).await;
                }
            )*
        }
    };
}
