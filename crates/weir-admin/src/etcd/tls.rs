//! TLS towards etcd (`https://` hosts, `deployment.etcd.tls`): etcd's
//! certificate is checked against `ca_file` (else the web's roots), and a
//! client certificate is presented when `cert` / `key` are given (etcd's
//! `--client-cert-auth`). Errors name the setting, never a key's content.
//! `verify: false` (APISIX's setting, for tests) accepts any certificate;
//! the handshake's signatures are still checked.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use weir_config::EtcdTls;

/// The client configuration for `tls` (the defaults when `None`).
pub fn client_config(tls: Option<&EtcdTls>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("deployment.etcd.tls: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_deref()) {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("deployment.etcd.tls.ca_file: cannot read {path}: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    format!("deployment.etcd.tls.ca_file: {path}: invalid PEM: {e}")
                })?;
                roots.add(cert).map_err(|e| {
                    format!("deployment.etcd.tls.ca_file: {path}: unusable certificate: {e}")
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "deployment.etcd.tls.ca_file: {path}: no certificate found"
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = builder.with_root_certificates(roots);
    let config = match tls.map(|t| (&t.cert, &t.key)) {
        Some((Some(cert), Some(key))) => {
            let pem = std::fs::read(cert)
                .map_err(|e| format!("deployment.etcd.tls.cert: cannot read {cert}: {e}"))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("deployment.etcd.tls.cert: {cert}: invalid PEM"))?;
            if certs.is_empty() {
                return Err(format!(
                    "deployment.etcd.tls.cert: {cert}: no certificate found"
                ));
            }
            let key_pem = std::fs::read(key)
                .map_err(|e| format!("deployment.etcd.tls.key: cannot read {key}: {e}"))?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| format!("deployment.etcd.tls.key: {key}: not a PEM private key"))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| format!("deployment.etcd.tls.cert / key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = config;
    if tls.is_some_and(|t| !t.verify) {
        tracing::warn!("deployment.etcd.tls.verify is false: etcd's certificate is not checked, anyone between weir and etcd can read and change the configuration");
        let provider = config.crypto_provider().clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerification(provider)));
    }
    Ok(config)
}

/// `verify: false`: any certificate is accepted; the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
