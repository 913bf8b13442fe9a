//! Proxy header hygiene for HTTP/2 clients, over h2c (prior knowledge on a
//! plain listener) and h2 over TLS (ALPN): what the node gets —
//! X-Forwarded-For appended to the client's, X-Real-IP, X-Forwarded-Proto,
//! -Host and -Port set by weir whatever the client sent — and hop-by-hop
//! fields stripped both ways (docs/architecture.md; the same rules as the
//! HTTP/1.1 cases in `http1_wire.rs`). Nodes are the raw-socket backends
//! of `common/wire.rs`, so the test sees the exact head weir forwards.
//!
//! An HTTP/2 client cannot send most hop-by-hop fields (RFC 9113 §8.2.2:
//! `Connection`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`,
//! `Upgrade` make a request malformed), so the request side covers the
//! ones it can: `TE: trailers`, `Trailer`, `Proxy-Authorization`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::wire::*;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// How the HTTP/2 client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2 {
    /// h2c with prior knowledge, to a plain listener.
    Cleartext,
    /// h2 over TLS, negotiated by ALPN.
    Tls,
}

impl H2 {
    fn scheme(self) -> &'static str {
        match self {
            H2::Cleartext => "http",
            H2::Tls => "https",
        }
    }
}

/// A gateway with one catch-all route to `nodes`, and an HTTP/2 client
/// connection to it.
struct Setup {
    gateway: weir::Gateway,
    sender: SendRequest<Empty<Bytes>>,
    _certs: Option<tempfile::TempDir>,
}

impl Setup {
    async fn start(h2: H2, nodes: &[String]) -> Setup {
        let nodes: serde_json::Map<String, serde_json::Value> =
            nodes.iter().map(|n| (n.clone(), 1.into())).collect();
        let mut config = serde_json::json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": h2 == H2::Tls}]},
            "routes": [{"id": "h2", "uri": "/*", "upstream": {"nodes": nodes}}],
        });
        let (certs, connector) = match h2 {
            H2::Cleartext => (None, None),
            H2::Tls => {
                let ck = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()])
                    .expect("generate a certificate");
                let dir = tempfile::tempdir().expect("temporary directory");
                let cert_file = dir.path().join("h2.crt");
                let key_file = dir.path().join("h2.key");
                std::fs::write(&cert_file, ck.cert.pem()).expect("write the certificate");
                std::fs::write(&key_file, ck.signing_key.serialize_pem()).expect("write the key");
                config["ssls"] = serde_json::json!([{
                    "id": "h2",
                    "sni": TLS_NAME,
                    "cert_file": cert_file.to_str().expect("UTF-8 path"),
                    "key_file": key_file.to_str().expect("UTF-8 path"),
                }]);
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(ck.cert.der().clone())
                    .expect("trust the certificate");
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("TLS protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                cfg.alpn_protocols = vec![b"h2".to_vec()];
                (Some(dir), Some(TlsConnector::from(Arc::new(cfg))))
            }
        };
        let gateway = common::gateway(&config.to_string()).await;
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(gateway.proxy_addr()))
            .await
            .expect("connect to the gateway timed out")
            .expect("connect to the gateway");
        let sender = match connector {
            None => handshake(tcp).await,
            Some(connector) => {
                let name = ServerName::try_from(TLS_NAME).expect("server name");
                let tls = timeout(IO_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .expect("TLS handshake timed out")
                    .expect("TLS handshake");
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "the TLS listener must negotiate h2"
                );
                handshake(tls).await
            }
        };
        Setup {
            gateway,
            sender,
            _certs: certs,
        }
    }

    fn port(&self) -> u16 {
        self.gateway.proxy_addr().port()
    }

    /// A GET with these fields; returns the response head (the body is read).
    async fn get(&mut self, h2: H2, path: &str, fields: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Request::get(format!("{}://{TLS_NAME}{path}", h2.scheme()));
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        let req = b.body(Empty::new()).expect("request");
        let resp = timeout(IO_TIMEOUT, self.sender.send_request(req))
            .await
            .expect("h2 request timed out")
            .expect("h2 request");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let (parts, body) = resp.into_parts();
        timeout(IO_TIMEOUT, body.collect())
            .await
            .expect("h2 body timed out")
            .expect("h2 body");
        parts
    }
}

async fn handshake<T>(io: T) -> SendRequest<Empty<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = timeout(
        IO_TIMEOUT,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
    )
    .await
    .expect("h2 handshake timed out")
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// The request the node saw last.
fn last(b: &RawBackend) -> Seen {
    b.seen().pop().expect("the node saw no request")
}

async fn forwarded_headers_are_set_by_the_gateway(h2: H2) {
    let b = echo_target().await;
    let mut s = Setup::start(h2, &[b.node()]).await;
    let port = s.port().to_string();
    let client_ip = "127.0.0.1";
    for (what, fields, xff) in [
        ("no X-Forwarded-For", vec![], client_ip.to_owned()),
        (
            "an X-Forwarded-For and spoofed forwarding fields",
            vec![
                ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-proto", "ftp"),
                ("x-forwarded-host", "evil.test"),
                ("x-forwarded-port", "1"),
            ],
            format!("1.2.3.4, 5.6.7.8, {client_ip}"),
        ),
    ] {
        let r = s.get(h2, "/fwd", &fields).await;
        assert_eq!(r.status, 200, "{h2:?}, {what}");
        let seen = last(&b);
        let h = &seen.head;
        let one = |name: &str| {
            let all = h.all(name);
            assert_eq!(all.len(), 1, "{h2:?}, {what}: one {name}: {:?}", h.headers);
            all[0].to_owned()
        };
        assert_eq!(one("x-forwarded-for"), xff, "{h2:?}, {what}");
        assert_eq!(one("x-real-ip"), client_ip, "{h2:?}, {what}");
        assert_eq!(one("x-forwarded-proto"), h2.scheme(), "{h2:?}, {what}");
        assert_eq!(one("x-forwarded-host"), TLS_NAME, "{h2:?}, {what}");
        assert_eq!(one("x-forwarded-port"), port, "{h2:?}, {what}");
        assert_eq!(
            one("host"),
            TLS_NAME,
            "{h2:?}, {what}: Host from :authority"
        );
        assert_eq!(
            seen.version, "HTTP/1.1",
            "{h2:?}: nodes are spoken to in HTTP/1.1"
        );
    }
}

async fn request_hop_by_hop_fields_do_not_reach_the_node(h2: H2) {
    let b = echo_target().await;
    let mut s = Setup::start(h2, &[b.node()]).await;
    for (field, value) in [
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("proxy-authorization", "Basic dXNlcjpwYXNz"),
    ] {
        let r = s
            .get(h2, "/hop", &[(field, value), ("x-kept", "yes")])
            .await;
        assert_eq!(r.status, 200, "{h2:?}, {field}");
        let seen = last(&b);
        assert!(
            !seen.head.has(field),
            "{h2:?}: the node must not see {field}: {:?}",
            seen.head.headers
        );
        assert_eq!(seen.head.get("x-kept"), Some("yes"), "{h2:?}, {field}");
    }
}

/// Hop-by-hop fields a node answers with, one per request (the target
/// names the case).
fn response_cases() -> Vec<(&'static str, String, Vec<String>)> {
    let nine: Vec<String> = (1..=9).map(|i| format!("x-named-{i}")).collect();
    let mut nine_fields = format!("Connection: {}\r\n", nine.join(", "));
    for n in &nine {
        nine_fields.push_str(&format!("{n}: 1\r\n"));
    }
    let s = |v: &str| v.to_owned();
    vec![
        (
            "/named",
            s("Connection: X-Secret\r\nX-Secret: 1\r\n"),
            vec![s("x-secret")],
        ),
        (
            "/two-lines",
            s("Connection: X-One\r\nX-One: 1\r\nX-Two: 2\r\nConnection: keep-alive, X-Two\r\n"),
            vec![s("x-one"), s("x-two")],
        ),
        ("/nine", nine_fields, nine),
        (
            "/keep-alive",
            s("Keep-Alive: timeout=1\r\n"),
            vec![s("keep-alive")],
        ),
        (
            "/proxy-connection",
            s("Proxy-Connection: keep-alive\r\n"),
            vec![s("proxy-connection")],
        ),
        ("/te", s("TE: trailers\r\n"), vec![s("te")]),
        ("/trailer", s("Trailer: X-Checksum\r\n"), vec![s("trailer")]),
        ("/upgrade", s("Upgrade: h2c\r\n"), vec![s("upgrade")]),
        (
            "/proxy-authorization",
            s("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
            vec![s("proxy-authorization")],
        ),
    ]
}

async fn response_hop_by_hop_fields_do_not_reach_the_client(h2: H2) {
    let cases = response_cases();
    let answers = cases.clone();
    let b = RawBackend::start(move |seen| {
        let fields = answers
            .iter()
            .find(|(path, _, _)| *path == seen.target)
            .map_or("", |(_, f, _)| f.as_str());
        Answer::Send(
            format!(
                "HTTP/1.1 200 OK\r\n{fields}X-Backend-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
            )
            .into_bytes(),
        )
    })
    .await;
    let mut s = Setup::start(h2, &[b.node()]).await;
    for (path, _, gone) in &cases {
        let r = s.get(h2, path, &[]).await;
        assert_eq!(r.status, 200, "{h2:?} {path}");
        for name in gone {
            assert!(
                !r.headers.contains_key(name.as_str()),
                "{h2:?} {path}: the client must not see {name}: {:?}",
                r.headers
            );
        }
        assert!(
            !r.headers.contains_key("connection"),
            "{h2:?} {path}: {:?}",
            r.headers
        );
        assert_eq!(
            r.headers.get("x-backend-kept").map(|v| v.as_bytes()),
            Some(&b"yes"[..]),
            "{h2:?} {path}"
        );
    }
}

#[tokio::test]
async fn h2c_forwarded_headers_are_set_by_the_gateway_and_x_forwarded_for_appended() {
    forwarded_headers_are_set_by_the_gateway(H2::Cleartext).await;
}

#[tokio::test]
async fn h2_tls_forwarded_headers_are_set_by_the_gateway_and_x_forwarded_for_appended() {
    forwarded_headers_are_set_by_the_gateway(H2::Tls).await;
}

#[tokio::test]
async fn h2c_request_hop_by_hop_fields_do_not_reach_the_node() {
    request_hop_by_hop_fields_do_not_reach_the_node(H2::Cleartext).await;
}

#[tokio::test]
async fn h2_tls_request_hop_by_hop_fields_do_not_reach_the_node() {
    request_hop_by_hop_fields_do_not_reach_the_node(H2::Tls).await;
}

#[tokio::test]
async fn h2c_response_hop_by_hop_fields_do_not_reach_the_client() {
    response_hop_by_hop_fields_do_not_reach_the_client(H2::Cleartext).await;
}

#[tokio::test]
async fn h2_tls_response_hop_by_hop_fields_do_not_reach_the_client() {
    response_hop_by_hop_fields_do_not_reach_the_client(H2::Tls).await;
}
