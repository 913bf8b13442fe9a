//! TLS: server certificates chosen by SNI (from `ssls`), and the client
//! configuration used towards `scheme: https` upstreams.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use weir_config::{FieldError, FieldErrors, Ssl};

use crate::snapshot::ProxyState;

/// Certificates by server name.
#[derive(Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when the client sends no SNI or an unknown one.
    fallback: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// Loads and parses every enabled certificate.
    pub fn build(ssls: &[Ssl]) -> Result<CertTable, FieldErrors> {
        let mut table = CertTable::default();
        let mut errors = Vec::new();
        for (i, ssl) in ssls.iter().enumerate() {
            if ssl.status == 0 {
                continue;
            }
            let key = match load_certified_key(ssl) {
                Ok(k) => Arc::new(k),
                Err((field, msg)) => {
                    errors.push(FieldError::new(format!("ssls[{i}].{field}"), msg));
                    continue;
                }
            };
            for sni in ssl.snis.iter().flatten().chain(ssl.sni.iter()) {
                let sni = sni.to_ascii_lowercase();
                match sni.strip_prefix("*.") {
                    Some(base) => table.wildcard.insert(base.to_owned(), key.clone()),
                    None => table.exact.insert(sni, key.clone()),
                };
            }
            table.fallback.get_or_insert(key);
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(FieldErrors(errors))
        }
    }

    /// The certificate for a server name: exact, then the closest wildcard,
    /// then the first configured certificate.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
                rest = parent;
            }
        }
        self.fallback.clone()
    }

    /// True when no certificate is configured.
    pub fn is_empty(&self) -> bool {
        self.fallback.is_none()
    }
}

fn load_certified_key(ssl: &Ssl) -> Result<CertifiedKey, (&'static str, String)> {
    let (cert_field, cert_pem) = match (&ssl.cert, &ssl.cert_file) {
        (Some(pem), _) => ("cert", pem.clone().into_bytes()),
        (None, Some(path)) => (
            "cert_file",
            std::fs::read(path).map_err(|e| ("cert_file", format!("cannot read {path}: {e}")))?,
        ),
        (None, None) => return Err(("cert", "missing".into())),
    };
    let (key_field, key_pem) = match (&ssl.key, &ssl.key_file) {
        (Some(pem), _) => ("key", pem.clone().into_bytes()),
        (None, Some(path)) => (
            "key_file",
            std::fs::read(path).map_err(|e| ("key_file", format!("cannot read {path}: {e}")))?,
        ),
        (None, None) => return Err(("key", "missing".into())),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| (cert_field, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err((cert_field, "no certificate found in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| (key_field, format!("invalid PEM private key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| (key_field, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        (
            key_field,
            format!("key does not match the certificate: {e}"),
        )
    })?;
    Ok(ck)
}

/// Resolves server certificates from the live snapshot, so certificate
/// changes apply on reload without touching the listener.
#[derive(Debug)]
pub struct SniResolver {
    state: Arc<ProxyState>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyState")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.state.snapshot.load().certs.lookup(hello.server_name())
    }
}

/// A TLS acceptor configuration for a listener.
pub fn server_config(
    state: Arc<ProxyState>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { state }));
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Client TLS towards https upstreams: verified against the webpki roots.
pub fn upstream_client_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client TLS for one upstream's `tls` settings: a private CA bundle instead
/// of the web roots, or (only when explicitly configured) no verification.
pub fn upstream_client_config_for(
    tls: &weir_config::UpstreamTls,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let client_auth = client_identity(tls)?;
    let finish =
        |b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>| {
            match &client_auth {
                Some((certs, key)) => b
                    .with_client_auth_cert(certs.clone(), key.clone_key())
                    .map_err(|e| format!("tls.client_cert / client_key: {e}")),
                None => Ok(b.with_no_client_auth()),
            }
        };
    let mut config = if !tls.verify {
        finish(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        )?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("{path}: invalid PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{path}: unusable CA certificate: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("{path}: no certificate found"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        finish(builder.with_root_certificates(roots))?
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client certificate chain and key weir presents to nodes (mTLS),
/// from `tls.client_cert` / `tls.client_key` (PEM). Errors never quote the
/// key.
#[allow(clippy::type_complexity)]
fn client_identity(
    tls: &weir_config::UpstreamTls,
) -> Result<
    Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
    String,
> {
    let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| "tls.client_cert: invalid PEM".to_owned())?;
    if certs.is_empty() {
        return Err("tls.client_cert: no certificate found".into());
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| "tls.client_key: not a PEM private key".to_owned())?;
    Ok(Some((certs, key)))
}

/// Accepts any server certificate (`tls.verify: false`). Handshake
/// signatures are still checked, so the session keys are sound; only the
/// identity of the node is not.
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
