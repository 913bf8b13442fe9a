//! Building a `kube::Client` for one resolved cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use weir_config::discovery_resolve::{ApiServer, Credentials, ResolvedCluster, IN_CLUSTER_CA_FILE};

use super::observe::ObserveLayer;
use super::sync::SharedSync;
use super::token::{BearerAuthLayer, TokenSource};

/// Connect timeout to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client for `cluster`: TLS verified unless `ssl_verify: false`, the
/// bearer token attached by [`BearerAuthLayer`], 2xx answers reported to
/// `sync` by [`ObserveLayer`], and a read timeout of `watch_idle_timeout`
/// so a connection that goes silent is noticed. The API server used (for a
/// kubeconfig: its current context's) is recorded in `sync`.
pub async fn build(
    cluster: &ResolvedCluster,
    sync: &Arc<SharedSync>,
) -> anyhow::Result<kube::Client> {
    let name = cluster.id.as_deref().unwrap_or("kubernetes");
    let (mut config, auth) = match &cluster.api_server {
        ApiServer::Direct {
            url,
            credentials,
            ca_file,
        } => {
            let uri: http::Uri = url
                .parse()
                .with_context(|| format!("cluster {name}: invalid API server URL {url}"))?;
            let mut config = kube::Config::new(uri);
            config.root_cert_file = match ca_file {
                Some(f) if !f.exists() && f == Path::new(IN_CLUSTER_CA_FILE) => {
                    tracing::warn!(
                        cluster = name,
                        ca_file = %f.display(),
                        "in-cluster CA bundle not found; verifying the API server against the system roots"
                    );
                    None
                }
                Some(f) => {
                    anyhow::ensure!(
                        f.exists() || !cluster.ssl_verify,
                        "cluster {name}: client.ca_file {} does not exist",
                        f.display()
                    );
                    Some(f.clone())
                }
                None => None,
            };
            let auth = match credentials {
                Credentials::Token(t) => Some(TokenSource::Static(t.clone())),
                Credentials::TokenFile(p) => Some(TokenSource::file(p.clone())),
                Credentials::None => None,
            };
            (config, auth)
        }
        ApiServer::Kubeconfig(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| {
                format!("cluster {name}: reading kubeconfig {}", path.display())
            })?;
            let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("cluster {name}: using kubeconfig {}", path.display()))?;
            (config, None)
        }
    };
    sync.set_server(server_shown(&config.cluster_url));
    config.accept_invalid_certs = !cluster.ssl_verify;
    if !cluster.ssl_verify {
        tracing::warn!(
            cluster = name,
            "TLS verification of the API server is disabled (ssl_verify: false)"
        );
    }
    config.connect_timeout =
        Some(CONNECT_TIMEOUT.min(cluster.watch_idle_timeout.max(Duration::from_secs(1))));
    config.read_timeout = Some(cluster.watch_idle_timeout);
    config.reset_reader_on_write = true;
    // Retries belong to the watcher's backoff, where they are visible in the sync state.
    config.default_retry = false;

    let builder = ClientBuilder::try_from(config)
        .with_context(|| format!("cluster {name}: building the API client"))?;
    let observe = ObserveLayer::new(sync.clone());
    let client = match auth {
        Some(source) => builder
            .with_layer(&BearerAuthLayer::new(source))
            .with_layer(&observe)
            .build(),
        None => builder.with_layer(&observe).build(),
    };
    Ok(client)
}

/// `scheme://authority` of the API server URL: a kubeconfig's server may
/// carry a path, and never user info worth showing.
fn server_shown(url: &http::Uri) -> String {
    match (url.scheme_str(), url.authority()) {
        (Some(scheme), Some(authority)) => {
            let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host_port}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_shown_without_credentials_or_path() {
        let u: http::Uri = "https://user:pw@10.0.0.1:6443/prefix".parse().unwrap();
        assert_eq!(server_shown(&u), "https://10.0.0.1:6443");
    }
}
