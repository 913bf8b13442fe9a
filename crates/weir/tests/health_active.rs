//! Active checks of `type: https` with `host`, `port` and
//! `https_verify_certificate` (docs/configuration.md, "Health checks"): the
//! probe goes to the configured port, with the configured Host, over TLS,
//! verifying the node's certificate or not as configured; an https check
//! against a plain node, or against a self-signed one with verification on,
//! fails.
//!
//! The probed port is a [`ProbeServer`]: a TLS-only HTTP/1.1 server that
//! records, per connection, whether it opened with a TLS ClientHello and
//! whether the handshake completed, and every request it got.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{gateway, get, Backend};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Seconds between probes (healthy and unhealthy nodes alike).
const INTERVAL: f64 = 0.1;
/// Seconds a probe may take.
const PROBE_TIMEOUT: f64 = 2.0;

/// Bound on waiting for a state the probes reach: many probe periods (each
/// at most interval + probe timeout), with room for a loaded machine.
fn wait_bound() -> Duration {
    Duration::from_secs_f64(10.0 * (INTERVAL + PROBE_TIMEOUT)) + Duration::from_secs(5)
}

/// What a probe sent.
#[derive(Debug, Clone)]
struct Probe {
    path: String,
    host: String,
    user_agent: String,
}

/// A TLS-only HTTP/1.1 server with a self-signed certificate for
/// `localhost`, `127.0.0.1` and `probe.test`, answering `status` to every
/// request.
struct ProbeServer {
    addr: SocketAddr,
    /// The certificate, PEM (to trust it as a CA).
    pem: String,
    status: Arc<AtomicU16>,
    connections: Arc<AtomicUsize>,
    /// Connections whose first byte opened a TLS handshake record.
    client_hellos: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Probe>>>,
}

impl ProbeServer {
    async fn start() -> ProbeServer {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "probe.test".to_owned(),
        ])
        .expect("generate a certificate");
        let pem = ck.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = ProbeServer {
            addr,
            pem,
            status: Arc::new(AtomicU16::new(200)),
            connections: Arc::default(),
            client_hellos: Arc::default(),
            handshakes: Arc::default(),
            requests: Arc::default(),
        };
        let (status, connections, hellos, handshakes, requests) = (
            server.status.clone(),
            server.connections.clone(),
            server.client_hellos.clone(),
            server.handshakes.clone(),
            server.requests.clone(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, status, hellos, handshakes, requests) = (
                    acceptor.clone(),
                    status.clone(),
                    hellos.clone(),
                    handshakes.clone(),
                    requests.clone(),
                );
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    let peeked =
                        tokio::time::timeout(Duration::from_secs(10), tcp.peek(&mut first)).await;
                    if matches!(peeked, Ok(Ok(1))) && first[0] == 0x16 {
                        hellos.fetch_add(1, Ordering::SeqCst);
                    }
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let header = |name: http::header::HeaderName| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        requests.lock().expect("lock").push(Probe {
                            path: req.uri().path().to_owned(),
                            host: header(http::header::HOST),
                            user_agent: header(http::header::USER_AGENT),
                        });
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"probe"),
                        ));
                        *resp.status_mut() =
                            StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("status");
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        server
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Probe> {
        self.requests.lock().expect("lock").clone()
    }

    fn counts(&self) -> (usize, usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.client_hellos.load(Ordering::SeqCst),
            self.handshakes.load(Ordering::SeqCst),
        )
    }
}

async fn node_status(control: SocketAddr, port: u16) -> String {
    let r = get(control, None, "/v1/healthcheck").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("healthcheck JSON");
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["nodes"].as_array().cloned().unwrap_or_default())
        .find(|n| n["port"] == port)
        .and_then(|n| n["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn wait_status(control: SocketAddr, port: u16, want: &str) {
    let reached = tokio::time::timeout(wait_bound(), async {
        while node_status(control, port).await != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "node :{port} never became {want} (now {:?})",
        node_status(control, port).await
    );
}

/// Waits (bounded) until `f` holds.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let ok = tokio::time::timeout(wait_bound(), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

/// One route to `node`, with `upstream_extra` (ending in `, ` when given)
/// and an https active check to `probe_port` with Host `probe.test` and
/// `verify` as `https_verify_certificate`. Any single failure marks the
/// node, any single success restores it.
fn yaml(node: SocketAddr, upstream_extra: &str, probe_port: u16, verify: bool) -> String {
    format!(
        "routes:\n  - {{id: r, uri: \"/*\", upstream: {{{upstream_extra}nodes: {{\"{node}\": 1}}, checks: {{active: {{type: https, timeout: {PROBE_TIMEOUT}, http_path: /health, host: probe.test, port: {probe_port}, https_verify_certificate: {verify}, healthy: {{interval: {INTERVAL}, successes: 1}}, unhealthy: {{interval: {INTERVAL}, http_failures: 1, tcp_failures: 1, timeouts: 1}}}}}}}}}}\n"
    )
}

/// Every probe the server got is the configured one.
fn assert_probes_as_configured(probe: &ProbeServer) {
    let requests = probe.requests();
    assert!(!requests.is_empty(), "the probe port got probes");
    for p in &requests {
        assert_eq!(p.path, "/health", "{p:?}");
        assert_eq!(p.host, "probe.test", "the configured Host: {p:?}");
        assert_eq!(p.user_agent, "weir-healthcheck", "{p:?}");
    }
}

/// Probe results drive the node's health: a failing status marks it, a
/// healthy one restores it.
async fn assert_probe_answers_drive_health(
    control: SocketAddr,
    node_port: u16,
    probe: &ProbeServer,
) {
    probe.set_status(500);
    wait_status(control, node_port, "unhealthy").await;
    probe.set_status(200);
    wait_status(control, node_port, "healthy").await;
}

/// `scheme: https` upstream trusting the node's certificate (`tls.ca_file`),
/// check with verification on: probes go over TLS to the probe port (not
/// the node's), with the configured Host, and their answers drive health.
#[tokio::test]
async fn an_https_check_probes_the_configured_port_with_the_configured_host_over_tls() {
    let (traffic, probe) = (ProbeServer::start().await, ProbeServer::start().await);
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = dir.path().join("ca.pem");
    // Both servers' certificates: the node's for traffic, the probe port's.
    std::fs::write(&ca, format!("{}{}", traffic.pem, probe.pem)).expect("write CA file");
    let extra = format!("scheme: https, tls: {{ca_file: {:?}}}, ", ca.display());
    let gw = gateway(&yaml(traffic.addr, &extra, probe.addr.port(), true)).await;
    let control = gw.control_addr().expect("control API");

    wait_for("a probe", || !probe.requests().is_empty()).await;
    assert_probe_answers_drive_health(control, traffic.addr.port(), &probe).await;
    // The probe port only speaks TLS: each probe recorded came over TLS.
    assert_probes_as_configured(&probe);
    assert_eq!(
        traffic.counts().0,
        0,
        "nothing probed the node's own port: {:?}",
        traffic.requests()
    );
    // The traffic itself still goes to the node's port, over verified TLS.
    let r = get(gw.proxy_addr(), None, "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "probe"));
    assert_eq!(traffic.requests().len(), 1);
}

/// `scheme: http` upstream (a plain node), check `type: https` to a TLS
/// port, verification off: the probe speaks TLS to that port.
#[tokio::test]
async fn an_https_check_on_a_plain_http_upstream_speaks_tls_to_the_probe_port() {
    let node = Backend::start("node").await;
    let probe = ProbeServer::start().await;
    let gw = gateway(&yaml(node.addr, "", probe.addr.port(), false)).await;
    let control = gw.control_addr().expect("control API");

    wait_for("a TLS handshake on the probe port", || probe.counts().2 > 0).await;
    assert_probe_answers_drive_health(control, node.addr.port(), &probe).await;
    assert_probes_as_configured(&probe);
    assert_eq!(node.hits(), 0, "nothing probed the node's own port");
}

/// `scheme: https` upstream whose own TLS settings would refuse the
/// self-signed certificate (web roots), check with
/// `https_verify_certificate: false`: the probe accepts it.
#[tokio::test]
async fn an_https_check_without_verification_accepts_a_self_signed_node() {
    let (traffic, probe) = (ProbeServer::start().await, ProbeServer::start().await);
    let gw = gateway(&yaml(
        traffic.addr,
        "scheme: https, ",
        probe.addr.port(),
        false,
    ))
    .await;
    let control = gw.control_addr().expect("control API");

    wait_for("a probe", || !probe.requests().is_empty()).await;
    assert_probe_answers_drive_health(control, traffic.addr.port(), &probe).await;
    assert_probes_as_configured(&probe);
}

/// `scheme: https` upstream with `tls.verify: false` (traffic to the
/// self-signed node is accepted), check with verification on (the
/// default): the probe refuses the certificate, sends no request, and the
/// node is marked unhealthy although the probe port would answer 200.
#[tokio::test]
async fn an_https_check_verifying_certificates_fails_against_a_self_signed_node() {
    let (traffic, probe) = (ProbeServer::start().await, ProbeServer::start().await);
    let gw = gateway(&yaml(
        traffic.addr,
        "scheme: https, tls: {verify: false}, ",
        probe.addr.port(),
        true,
    ))
    .await;
    let control = gw.control_addr().expect("control API");

    wait_status(control, traffic.addr.port(), "unhealthy").await;
    let (_, hellos, _) = probe.counts();
    assert!(hellos > 0, "the probe opened a TLS handshake");
    assert!(
        probe.requests().is_empty(),
        "no probe request over an unverified connection: {:?}",
        probe.requests()
    );
}

/// `scheme: http` upstream with a plain node, check `type: https` to the
/// node's own (plain) port: there is no TLS to speak, so the probe fails,
/// with verification on or off.
#[tokio::test]
async fn an_https_check_fails_against_a_plain_node() {
    for verify in [true, false] {
        let node = Backend::start("plain").await;
        let gw = gateway(&yaml(node.addr, "", node.addr.port(), verify)).await;
        let control = gw.control_addr().expect("control API");
        wait_status(control, node.addr.port(), "unhealthy").await;
        assert_eq!(
            node.hits(),
            0,
            "no probe request reached the plain node (verify: {verify})"
        );
    }
}
