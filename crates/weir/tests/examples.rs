//! Every configuration in `examples/` validates, and the basic and TLS
//! examples actually serve.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Backend;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use weir_config::{Config, Nodes};

const STEP: Duration = Duration::from_secs(10);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// Every `*.yaml` / `*.yml` / `*.json` file directly in `examples/`, sorted.
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    files
}

/// Loads an example file (plugin contents are checked when the tests
/// compile it into a gateway).
fn load_any(file: &Path) -> Result<Config, weir_config::LoadError> {
    weir_config::load_file(file.to_str().unwrap())
}

fn load_example(name: &str) -> (String, Config) {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path).expect("read example");
    let config = weir_config::load_file(path.to_str().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    (text, config)
}

#[test]
fn every_example_config_in_examples_dir_validates_and_its_files_exist() {
    let files = example_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["basic.yaml", "apisix-routes.yaml", "tls.yaml"] {
        assert!(
            names.iter().any(|n| n == required),
            "examples/{required} is missing; found {names:?}"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        match load_any(file) {
            Ok(config) => {
                // Relative certificate paths are relative to the repository
                // root (the documented working directory): they must exist.
                for (i, ssl) in config.ssls.iter().enumerate() {
                    for (field, p) in [("cert_file", &ssl.cert_file), ("key_file", &ssl.key_file)] {
                        if let Some(p) = p {
                            let resolved = repo_root().join(p);
                            if !resolved.is_file() {
                                failures.push(format!(
                                    "{}: ssls[{i}].{field}: {} does not exist",
                                    file.display(),
                                    resolved.display()
                                ));
                            }
                        }
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} example files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn apisix_example_loads_its_routes_and_named_upstreams() {
    let (_, c) = load_example("apisix-routes.yaml");
    assert_eq!(c.upstreams.len(), 3);
    assert_eq!(c.routes.len(), 7);
    let ids: Vec<String> = c.routes.iter().map(|r| r.id.clone().unwrap().0).collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "4", "5", "6", "7"],
        "integer ids as APISIX"
    );
    let cart = &c.upstreams[0];
    assert_eq!(cart.lb_type, weir_config::LbType::Chash);
    assert_eq!(cart.hash_on, weir_config::HashOn::Header);
    assert_eq!(c.upstreams[1].pass_host, weir_config::PassHost::Rewrite);
    assert!(matches!(c.upstreams[1].nodes, Some(Nodes::List(ref l)) if l.len() == 2));
}

#[tokio::test]
async fn basic_example_serves_echo_and_its_static_upstream_route() {
    let (text, _) = load_example("basic.yaml");
    let backend = Backend::start("api-backend").await;
    let mut config = common::config(&text);
    // Point the static route at a real backend instead of 127.0.0.1:8080.
    let api = config
        .routes
        .iter_mut()
        .find(|r| r.uri.as_deref() == Some("/api/*"))
        .expect("basic.yaml has the /api/* route");
    api.upstream.as_mut().unwrap().nodes = Some(Nodes::Map(vec![(backend.node(), 1)]));
    config.gateway.access_log.enabled = false;
    let gw = weir::Gateway::start(config)
        .await
        .expect("start basic.yaml");
    let addr = gw.proxy_addr();

    let r = common::get(addr, Some("example.test"), "/anything?x=1").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&r.body).expect("echo JSON");
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["url"], "http://example.test/anything?x=1");
    assert_eq!(doc["args"]["x"], "1");

    let r = common::get(addr, None, "/api/users").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), "api-backend");
}

#[tokio::test]
async fn tls_example_certificate_files_load_and_serve_https_by_sni() {
    let (text, _) = load_example("tls.yaml");
    let mut config = common::config(&text);
    let root = repo_root();
    for ssl in &mut config.ssls {
        for p in [&mut ssl.cert_file, &mut ssl.key_file]
            .into_iter()
            .flatten()
        {
            *p = root.join(&*p).to_str().unwrap().to_owned();
        }
    }
    let cert_path = config.ssls[0].cert_file.clone().unwrap();
    let gw = weir::Gateway::start(config)
        .await
        .expect("tls.yaml starts: its certificate and key load and match");
    let tls_addr = gw.proxy_addrs()[1];

    let cert = CertificateDer::from_pem_file(&cert_path).expect("example cert PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let tls = tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("api.example.test").unwrap(), tcp),
    )
    .await
    .expect("handshake timed out")
    .expect("the example certificate verifies for api.example.test");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(presented, cert);

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/anything")
        .header("host", "api.example.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("timed out")
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["url"], "https://api.example.test/anything");
}
