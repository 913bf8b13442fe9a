//! TLS termination over real sockets: certificates chosen by SNI (exact,
//! wildcard, fallback), HTTP/1.1 and ALPN h2 through to a plain backend, and
//! certificate errors reported at start with their field path.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Backend;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const STEP: Duration = Duration::from_secs(10);

struct TestCert {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn self_signed(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    TestCert {
        pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts exactly `trusted` (real chain + hostname verification).
fn trusting_client(trusted: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("add root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

/// Accepts any server certificate; the test then inspects what was presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_client() -> TlsConnector {
    let p = provider();
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

async fn tls_connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("tcp connect timed out")?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
}

fn peer_cert(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server presented a certificate")
        .as_ref()
        .to_vec()
}

fn alpn(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

struct Reply {
    status: StatusCode,
    body: String,
}

/// One HTTP/1.1 GET over an established TLS stream.
async fn http1_get(tls: TlsStream<TcpStream>, host: &str, path: &str) -> Reply {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("response timed out")
        .expect("request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Two certificates: `a.test` inline, `*.b.test` from files in `dir`.
struct Fixture {
    a: TestCert,
    b: TestCert,
    backend: Backend,
    _dir: tempfile::TempDir,
    config: serde_json::Value,
}

async fn fixture() -> Fixture {
    let a = self_signed(&["a.test"]);
    let b = self_signed(&["*.b.test"]);
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("b.crt");
    let key_file = dir.path().join("b.key");
    std::fs::write(&cert_file, &b.pem).unwrap();
    std::fs::write(&key_file, &b.key_pem).unwrap();
    let backend = Backend::start("tls-backend").await;
    let config = serde_json::json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": true}]},
        "ssls": [
            {"id": "a", "sni": "a.test", "cert": a.pem, "key": a.key_pem},
            {"id": "b", "snis": ["*.b.test"],
             "cert_file": cert_file.to_str().unwrap(),
             "key_file": key_file.to_str().unwrap()}
        ],
        "routes": [
            {"id": "all", "uri": "/*", "upstream": {"nodes": {backend.node(): 1}}}
        ]
    });
    Fixture {
        a,
        b,
        backend,
        _dir: dir,
        config,
    }
}

#[tokio::test]
async fn sni_selects_inline_exact_and_file_wildcard_certificates_and_http1_reaches_backend() {
    let f = fixture().await;
    let gw = common::gateway(&f.config.to_string()).await;
    let addr = gw.proxy_addr();

    // a.test: the inline certificate, verified by a client trusting only it.
    let tls = tls_connect(&trusting_client(&f.a.der, &[b"http/1.1"]), addr, "a.test")
        .await
        .expect("a.test handshake with a client trusting only cert A");
    assert_eq!(peer_cert(&tls), f.a.der.as_ref(), "a.test gets cert A");
    assert_eq!(alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    let r = http1_get(tls, "a.test", "/hello").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "tls-backend");

    // x.b.test: the wildcard certificate loaded from cert_file/key_file.
    let tls = tls_connect(&trusting_client(&f.b.der, &[b"http/1.1"]), addr, "x.b.test")
        .await
        .expect("x.b.test handshake with a client trusting only cert B");
    assert_eq!(peer_cert(&tls), f.b.der.as_ref(), "x.b.test gets cert B");
    let r = http1_get(tls, "x.b.test", "/hello").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "tls-backend");

    // The wrong trust anchor fails: the server really presented B, not A.
    let wrong = tls_connect(&trusting_client(&f.a.der, &[]), addr, "x.b.test").await;
    assert!(wrong.is_err(), "cert B must not verify against cert A");
    assert_eq!(f.backend.hits(), 2);
}

#[tokio::test]
async fn alpn_h2_over_tls_reaches_http1_backend_with_x_forwarded_proto_https() {
    let f = fixture().await;
    let gw = common::gateway(&f.config.to_string()).await;
    let addr = gw.proxy_addr();
    let tls = tls_connect(
        &trusting_client(&f.b.der, &[b"h2", b"http/1.1"]),
        addr,
        "api.b.test",
    )
    .await
    .expect("handshake");
    assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]), "server selects h2");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake over TLS");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("https://api.b.test/headers")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .expect("timed out")
            .expect("h2 request");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("backend JSON");
        assert_eq!(seen["x-forwarded-proto"], "https");
        assert_eq!(seen["host"], "api.b.test", "Host from :authority");
    }
    assert_eq!(f.backend.hits(), 3);
}

#[tokio::test]
async fn unknown_or_missing_sni_gets_the_first_configured_certificate() {
    let f = fixture().await;
    let gw = common::gateway(&f.config.to_string()).await;
    let addr = gw.proxy_addr();
    let client = accept_any_client();
    let tls = tls_connect(&client, addr, "unknown.test")
        .await
        .expect("handshake");
    assert_eq!(peer_cert(&tls), f.a.der.as_ref(), "fallback is ssls[0]");
    // b.test itself is not covered by *.b.test: it falls back too.
    let tls2 = tls_connect(&client, addr, "b.test")
        .await
        .expect("handshake");
    assert_eq!(peer_cert(&tls2), f.a.der.as_ref());
    // An IP address sends no SNI at all.
    let tls3 = tls_connect(&client, addr, "127.0.0.1")
        .await
        .expect("handshake");
    assert_eq!(peer_cert(&tls3), f.a.der.as_ref());
    let r = http1_get(tls, "unknown.test", "/x").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn tls_listener_with_http2_off_negotiates_http1_only() {
    let f = fixture().await;
    let mut config = f.config.clone();
    config["gateway"]["listeners"][0]["http2"] = false.into();
    let gw = common::gateway(&config.to_string()).await;
    let tls = tls_connect(
        &trusting_client(&f.a.der, &[b"h2", b"http/1.1"]),
        gw.proxy_addr(),
        "a.test",
    )
    .await
    .expect("handshake");
    assert_eq!(alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(http1_get(tls, "a.test", "/").await.status, StatusCode::OK);

    // A client that sends the HTTP/2 preface anyway is not served HTTP/2.
    let mut tls = tls_connect(
        &trusting_client(&f.a.der, &[b"http/1.1"]),
        gw.proxy_addr(),
        "a.test",
    )
    .await
    .expect("handshake");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write the preface");
    let mut got = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut got)).await;
    let h2_frame = got.len() >= 9 && got[3] == 4;
    assert!(
        !h2_frame && (got.is_empty() || got.starts_with(b"HTTP/1.1 ")),
        "HTTP/2 was served over TLS with http2 off: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn bad_certificate_pem_is_a_start_error_naming_ssls_0_cert() {
    let key = self_signed(&["a.test"]).key_pem;
    let config = serde_json::json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": true}]},
        "ssls": [{"sni": "a.test", "cert": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "key": key}],
        "routes": [{"uri": "/*", "plugins": {"echo": {}}}]
    });
    // Validation does not read certificates; starting does.
    let cfg = common::config(&config.to_string());
    let err = match weir::Gateway::start(cfg).await {
        Ok(_) => panic!("a gateway with an invalid certificate must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("ssls[0].cert:"),
        "error names the field: {err}"
    );

    // A missing cert_file names ssls[0].cert_file and the path.
    let config = serde_json::json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": true}]},
        "ssls": [{"sni": "a.test", "cert_file": "/nonexistent/weir-test.crt", "key": key}],
        "routes": [{"uri": "/*", "plugins": {"echo": {}}}]
    });
    let err = match weir::Gateway::start(common::config(&config.to_string())).await {
        Ok(_) => panic!("a gateway with a missing cert_file must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("ssls[0].cert_file:") && err.contains("/nonexistent/weir-test.crt"),
        "{err}"
    );
}
