//! Shared helpers of the end-to-end tests: a discovery instance against the
//! fake API server of `weir-testkit`, and bounded waits.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use weir_config::discovery::{DiscoveryConfig, KubernetesDiscovery as K8sConfig};
use weir_config::discovery_resolve::{resolve_with, ResolvedCluster};
use weir_discovery::{KubernetesDiscovery, Node, Registry, WatchOptions};
use weir_testkit::kube_api::FakeApiServer;

/// Upper bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// Logs to the test output (`RUST_LOG=weir_discovery=debug` to see more).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "weir_discovery=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Parses a `discovery:` body and resolves it with `env` as the environment.
pub fn resolve_yaml(yaml: &str, env: &[(&str, &str)]) -> (Vec<ResolvedCluster>, bool) {
    let d: DiscoveryConfig = serde_saphyr_from_str(yaml);
    let k = d.kubernetes.expect("kubernetes section");
    let multi = matches!(k, K8sConfig::Multi(_));
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match resolve_with(&k, &|v| map.get(v).cloned()) {
        Ok(c) => (c, multi),
        Err(e) => panic!("config errors:\n{e}"),
    }
}

fn serde_saphyr_from_str(yaml: &str) -> DiscoveryConfig {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("config does not parse: {e}\n{yaml}"))
}

/// `host` and `port` of a fake server.
pub fn host_port(api: &FakeApiServer) -> (String, u16) {
    (api.addr().ip().to_string(), api.addr().port())
}

/// A single-cluster config body for `api` (plain HTTP, inline token) plus `extra` lines.
pub fn single_yaml(api: &FakeApiServer, extra: &str) -> String {
    let (h, p) = host_port(api);
    format!(
        "kubernetes:\n  service: {{schema: http, host: '{h}', port: {p}}}\n  client: {{token: test-token}}\n  watch_idle_timeout: 5\n{extra}"
    )
}

/// A running discovery and its registry.
pub struct Harness {
    pub registry: Arc<Registry>,
    pub discovery: KubernetesDiscovery,
}

impl Harness {
    /// Starts discovery from a `discovery:` body.
    pub fn start(yaml: &str, env: &[(&str, &str)]) -> Harness {
        Self::start_with(yaml, env, WatchOptions::default())
    }

    /// Starts discovery with watch options.
    pub fn start_with(yaml: &str, env: &[(&str, &str)], options: WatchOptions) -> Harness {
        init_tracing();
        let (clusters, multi) = resolve_yaml(yaml, env);
        let registry = Arc::new(Registry::new());
        let discovery = KubernetesDiscovery::start_with(clusters, registry.clone(), multi, options)
            .expect("discovery starts");
        Harness {
            registry,
            discovery,
        }
    }

    /// Waits for the initial list of every cluster.
    pub async fn ready(&self) {
        assert!(
            self.discovery.wait_ready(WAIT).await,
            "discovery not ready within {WAIT:?}: {}",
            self.discovery.dump()
        );
    }

    /// Waits until `nodes(name)` satisfies `pred`; panics with the last value.
    pub async fn wait_nodes(
        &self,
        name: &str,
        pred: impl Fn(&Option<Vec<Node>>) -> bool,
    ) -> Option<Vec<Node>> {
        let registry = self.registry.clone();
        let got = wait_until(WAIT, || {
            let n = registry.nodes(name);
            pred(&n).then_some(n)
        })
        .await;
        match got {
            Some(n) => n,
            None => panic!(
                "nodes({name}) never satisfied the condition; last {:?}; dump {}",
                self.registry.nodes(name),
                self.discovery.dump()
            ),
        }
    }

    /// Waits until `nodes(name)` is exactly `expected` (host:port strings, sorted).
    pub async fn wait_hosts(&self, name: &str, expected: &[&str]) {
        let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        self.wait_nodes(name, |n| n.as_ref().map(|n| hosts(n)) == Some(want.clone()))
            .await;
    }

    /// Waits until `nodes(name)` is `None` (the name does not resolve).
    pub async fn wait_unresolved(&self, name: &str) {
        self.wait_nodes(name, |n| n.is_none()).await;
    }
}

/// `host:port` of each node, sorted.
pub fn hosts(nodes: &[Node]) -> Vec<String> {
    let mut v: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{}", n.host, n.port))
        .collect();
    v.sort();
    v
}

/// Polls `check` every 20 ms until it returns `Some`, at most `timeout`.
pub async fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    tokio::time::timeout(timeout, async {
        loop {
            if let Some(v) = check() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .ok()
}

/// Runs `fut` with the test-wide bound.
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {WAIT:?}"))
}

/// `shop/cart` with one ready address per IP on port 80 (`http`).
pub fn cart(ips: &[&str]) -> k8s_openapi::api::core::v1::Endpoints {
    weir_testkit::kube_api::endpoints("shop", "cart")
        .ready(ips.iter().map(|s| s.to_string()))
        .port("http", 80)
        .build()
}

/// A discovery whose client reads its token from a file, against a fake
/// API server that accepts only `old-token` (the file's content) and
/// serves `shop/cart` at 10.0.0.1; ready. Keep the directory alive.
pub async fn token_file_harness() -> (
    FakeApiServer,
    Harness,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let api = FakeApiServer::start_with(weir_testkit::kube_api::FakeApiOptions {
        tokens: vec!["old-token".into()],
        ..Default::default()
    })
    .await
    .expect("fake API server starts");
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "old-token\n").expect("token file written");
    let yaml = single_yaml(&api, "").replace(
        "client: {token: test-token}",
        &format!("client: {{token_file: '{}'}}", token_file.display()),
    );
    let h = Harness::start(&yaml, &[]);
    h.ready().await;
    (api, h, token_file, dir)
}
