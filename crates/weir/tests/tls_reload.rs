//! Certificates follow the configuration: a reload that replaces a
//! certificate (inline, or its `cert_file`/`key_file` rewritten) serves the
//! new one to new handshakes while connections opened before carry on, and
//! an `ssls[]` entry with `status: 0` is never served.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{config, Backend};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on each client step (connect, handshake, request).
const STEP: Duration = Duration::from_secs(10);

struct Cert {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn self_signed(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    Cert {
        pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

/// Which of `known` the presented certificate is ("none of them" otherwise).
fn named(presented: &[u8], known: &[(&'static str, &Cert)]) -> &'static str {
    known
        .iter()
        .find(|(_, c)| c.der.as_ref() == presented)
        .map_or("none of them", |(name, _)| name)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (handshake signatures still checked); the
/// test compares what was presented.
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

fn client() -> TlsConnector {
    let p = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// A keep-alive HTTP/1.1 connection over TLS, with the certificate the
/// gateway presented in its handshake.
struct Conn {
    cert: Vec<u8>,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

async fn connect(addr: SocketAddr, sni: &str) -> Conn {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect within bound")
        .expect("connect");
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let tls = tokio::time::timeout(STEP, client().connect(name, tcp))
        .await
        .expect("handshake within bound")
        .expect("handshake");
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate was presented")
        .as_ref()
        .to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    Conn { cert, sender }
}

impl Conn {
    /// GET over this connection; the body.
    async fn get(&mut self, host: &str) -> String {
        let req = Request::get("/")
            .header("host", host)
            .body(Empty::new())
            .expect("request");
        let resp = tokio::time::timeout(STEP, self.sender.send_request(req))
            .await
            .expect("answer within bound")
            .expect("request on the connection");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = tokio::time::timeout(STEP, resp.into_body().collect())
            .await
            .expect("body within bound")
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }
}

fn tls_config(backend: &Backend, ssls: serde_json::Value) -> weir_config::Config {
    config(
        &serde_json::json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0", "tls": true}]},
            "ssls": ssls,
            "routes": [{"id": "all", "uri": "/*", "upstream": {"nodes": {backend.node(): 1}}}]
        })
        .to_string(),
    )
}

fn inline(id: &str, sni: &str, cert: &Cert, status: u8) -> serde_json::Value {
    serde_json::json!({"id": id, "sni": sni, "cert": cert.pem, "key": cert.key_pem, "status": status})
}

#[tokio::test]
async fn a_reload_replacing_an_inline_certificate_serves_it_to_new_handshakes_and_keeps_open_connections(
) {
    let backend = Backend::start("backend").await;
    let (old, new) = (self_signed("a.test"), self_signed("a.test"));
    let gw = weir::Gateway::start(tls_config(
        &backend,
        serde_json::json!([inline("a", "a.test", &old, 1)]),
    ))
    .await
    .expect("gateway start");
    let addr = gw.proxy_addr();
    let mut before = connect(addr, "a.test").await;
    assert_eq!(
        named(&before.cert, &[("old", &old), ("new", &new)]),
        "old",
        "the configured certificate"
    );
    assert_eq!(before.get("a.test").await, "backend");

    gw.core
        .reload(tls_config(
            &backend,
            serde_json::json!([inline("a", "a.test", &new, 1)]),
        ))
        .await
        .expect("valid reload");

    let mut after = connect(addr, "a.test").await;
    assert_eq!(
        named(&after.cert, &[("old", &old), ("new", &new)]),
        "new",
        "a new handshake gets the new certificate"
    );
    assert_eq!(after.get("a.test").await, "backend");
    // The connection opened before the reload carries on.
    assert_eq!(before.get("a.test").await, "backend");
    assert_eq!(before.get("a.test").await, "backend");
    assert_eq!(backend.hits(), 4);
}

#[tokio::test]
async fn a_reload_rereads_rewritten_certificate_files() {
    let backend = Backend::start("backend").await;
    let (old, new) = (self_signed("a.test"), self_signed("a.test"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert_file, key_file) = (dir.path().join("a.crt"), dir.path().join("a.key"));
    let write = |c: &Cert| {
        std::fs::write(&cert_file, &c.pem).expect("write certificate");
        std::fs::write(&key_file, &c.key_pem).expect("write key");
    };
    write(&old);
    let ssls = serde_json::json!([{
        "id": "a", "sni": "a.test",
        "cert_file": cert_file.to_str().expect("UTF-8 path"),
        "key_file": key_file.to_str().expect("UTF-8 path"),
    }]);
    let gw = weir::Gateway::start(tls_config(&backend, ssls.clone()))
        .await
        .expect("gateway start");
    let addr = gw.proxy_addr();
    let mut before = connect(addr, "a.test").await;
    assert_eq!(named(&before.cert, &[("old", &old), ("new", &new)]), "old");

    // The same configuration, the files rewritten (a renewed certificate).
    write(&new);
    gw.core
        .reload(tls_config(&backend, ssls))
        .await
        .expect("valid reload");
    let mut after = connect(addr, "a.test").await;
    assert_eq!(
        named(&after.cert, &[("old", &old), ("new", &new)]),
        "new",
        "a new handshake gets the renewed certificate"
    );
    assert_eq!(after.get("a.test").await, "backend");
    assert_eq!(
        before.get("a.test").await,
        "backend",
        "the old connection carries on"
    );
}

#[tokio::test]
async fn a_disabled_certificate_is_never_served() {
    let backend = Backend::start("backend").await;
    let (a, b) = (self_signed("a.test"), self_signed("b.test"));
    // a.test is listed first but disabled: the first enabled entry (b) is
    // the fallback, and a.test is an unknown name.
    let gw = weir::Gateway::start(tls_config(
        &backend,
        serde_json::json!([inline("a", "a.test", &a, 0), inline("b", "b.test", &b, 1)]),
    ))
    .await
    .expect("gateway start");
    let addr = gw.proxy_addr();
    for sni in ["a.test", "b.test", "unknown.test", "127.0.0.1"] {
        let mut c = connect(addr, sni).await;
        assert_eq!(
            named(&c.cert, &[("a", &a), ("b", &b)]),
            "b",
            "SNI {sni}: the enabled certificate, never the disabled one"
        );
        assert_eq!(c.get(sni).await, "backend");
    }
}

#[tokio::test]
async fn a_reload_disabling_a_certificate_stops_serving_it() {
    let backend = Backend::start("backend").await;
    let (a, b) = (self_signed("a.test"), self_signed("b.test"));
    let ssls = |a_status: u8| {
        serde_json::json!([
            inline("a", "a.test", &a, a_status),
            inline("b", "b.test", &b, 1)
        ])
    };
    let gw = weir::Gateway::start(tls_config(&backend, ssls(1)))
        .await
        .expect("gateway start");
    let addr = gw.proxy_addr();
    let mut before = connect(addr, "a.test").await;
    assert_eq!(
        named(&before.cert, &[("a", &a), ("b", &b)]),
        "a",
        "enabled: served for its name"
    );

    gw.core
        .reload(tls_config(&backend, ssls(0)))
        .await
        .expect("valid reload");
    let mut after = connect(addr, "a.test").await;
    assert_eq!(
        named(&after.cert, &[("a", &a), ("b", &b)]),
        "b",
        "disabled by the reload: no longer served"
    );
    assert_eq!(after.get("a.test").await, "backend");
    assert_eq!(
        before.get("a.test").await,
        "backend",
        "the old connection carries on"
    );
}
