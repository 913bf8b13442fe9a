//! `scheme: https` upstreams: the node certificate is verified (web roots by
//! default, `tls.ca_file` for a private CA); `tls.verify: false` must be explicit.

mod common;

use std::sync::Arc;

use common::{gateway, get};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTPS backend with a self-signed certificate for 127.0.0.1/localhost;
/// returns its address and the certificate PEM.
async fn tls_backend() -> (std::net::SocketAddr, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"secure")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, pem)
}

fn yaml(node: std::net::SocketAddr, tls: &str) -> String {
    format!("routes:\n  - {{uri: \"/*\", upstream: {{scheme: https, {tls} nodes: {{\"{node}\": 1}}}}}}\n")
}

#[tokio::test]
async fn private_ca_file_verifies_the_node() {
    let (node, pem) = tls_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let gw = gateway(&yaml(
        node,
        &format!("tls: {{ca_file: {:?}}},", ca.display()),
    ))
    .await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "secure");
}

#[tokio::test]
async fn untrusted_node_certificate_is_refused_by_default() {
    let (node, _) = tls_backend().await;
    let gw = gateway(&yaml(node, "")).await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn verify_false_must_be_explicit_and_then_connects() {
    let (node, _) = tls_backend().await;
    let gw = gateway(&yaml(node, "tls: {verify: false},")).await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "secure");
}

#[tokio::test]
async fn unreadable_ca_file_is_an_error_naming_the_field() {
    let cfg = common::config(&yaml(
        "127.0.0.1:1".parse().unwrap(),
        "tls: {ca_file: /nonexistent/ca.pem},",
    ));
    let err = weir::Gateway::start(cfg)
        .await
        .err()
        .expect("start fails")
        .to_string();
    assert!(err.contains("routes[0].upstream.tls"), "{err}");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

/// An HTTPS backend that requires a client certificate signed by `client_ca`
/// (mutual TLS); answers with "mtls".
async fn mtls_backend(client_ca: &rcgen::CertifiedKey<rcgen::KeyPair>) -> std::net::SocketAddr {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server.signing_key.serialize_der().into());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"mtls")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// A client CA and a client certificate it signed, as PEM (cert, key).
fn client_identity() -> (rcgen::CertifiedKey<rcgen::KeyPair>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_params = rcgen::CertificateParams::new(vec!["weir-client".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    let (cert_pem, key_pem) = (client_cert.pem(), client_key.serialize_pem());
    (
        rcgen::CertifiedKey {
            cert: ca_cert,
            signing_key: ca_key,
        },
        cert_pem,
        key_pem,
    )
}

#[tokio::test]
async fn client_certificate_is_presented_to_nodes_that_require_one() {
    let (ca, cert_pem, key_pem) = client_identity();
    let node = mtls_backend(&ca).await;
    let with_cert =
        format!("tls: {{verify: false, client_cert: {cert_pem:?}, client_key: {key_pem:?}}},");
    let gw = gateway(&yaml(node, &with_cert)).await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "mtls");
    // The same node refuses weir without a client certificate.
    let gw = gateway(&yaml(node, "tls: {verify: false},")).await;
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}
