//! Kubernetes discovery: one watch task per cluster writing into the
//! [`Registry`], readiness, and the APISIX-shaped dump.

mod backoff;
mod client;
pub mod nodes;
mod observe;
mod state;
mod sync;
mod token;
mod warm;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use weir_config::discovery_resolve::{ApiServer, ResolvedCluster};

pub use sync::SyncState;
pub use watch::WatchOptions;

use crate::registry::Registry;
use sync::SharedSync;

struct ClusterHandle {
    key: String,
    cluster: ResolvedCluster,
    sync: Arc<SharedSync>,
}

/// Running Kubernetes discovery. Dropping it stops its watchers, like
/// [`KubernetesDiscovery::shutdown`]; the registry keeps the nodes.
pub struct KubernetesDiscovery {
    clusters: Vec<ClusterHandle>,
    registry: Arc<Registry>,
    multi_cluster: bool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// One flag per cluster: its initial list is done.
    ready: tokio::sync::watch::Receiver<Vec<bool>>,
}

impl std::fmt::Debug for KubernetesDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDiscovery")
            .field("clusters", &self.clusters.len())
            .field("multi_cluster", &self.multi_cluster)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Checks what can be checked before any I/O, so a configuration mistake
/// fails the start instead of looping in a watcher.
fn preflight(cluster: &ResolvedCluster) -> anyhow::Result<()> {
    let name = cluster.id.as_deref().unwrap_or("kubernetes");
    match &cluster.api_server {
        ApiServer::Direct {
            ca_file: Some(f), ..
        } if cluster.ssl_verify
            && f.as_path()
                != std::path::Path::new(weir_config::discovery_resolve::IN_CLUSTER_CA_FILE) =>
        {
            std::fs::metadata(f)
                .with_context(|| format!("cluster {name}: client.ca_file {}", f.display()))?;
        }
        ApiServer::Kubeconfig(p) => {
            std::fs::metadata(p)
                .with_context(|| format!("cluster {name}: kubeconfig {}", p.display()))?;
        }
        _ => {}
    }
    Ok(())
}

impl KubernetesDiscovery {
    /// Spawns one watcher task per cluster on the current tokio runtime, writing into `registry`.
    pub fn start(
        clusters: Vec<ResolvedCluster>,
        registry: Arc<Registry>,
        multi_cluster: bool,
    ) -> anyhow::Result<KubernetesDiscovery> {
        Self::start_with(clusters, registry, multi_cluster, WatchOptions::default())
    }

    /// [`KubernetesDiscovery::start`] with explicit [`WatchOptions`].
    pub fn start_with(
        clusters: Vec<ResolvedCluster>,
        registry: Arc<Registry>,
        multi_cluster: bool,
        options: WatchOptions,
    ) -> anyhow::Result<KubernetesDiscovery> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("kubernetes discovery needs a tokio runtime")?;
        anyhow::ensure!(!clusters.is_empty(), "no cluster to watch");
        anyhow::ensure!(
            multi_cluster || clusters.len() == 1,
            "single-cluster mode takes exactly one cluster"
        );
        for c in &clusters {
            preflight(c)?;
        }
        let keys: Vec<String> = clusters
            .iter()
            .map(|c| {
                if multi_cluster {
                    c.id.clone().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .collect();
        // Clusters kept across a restart keep their nodes until their new
        // watcher's first list replaces them: no empty gap.
        registry.configure(multi_cluster, &keys);

        let warm_dir = options.state_dir.as_deref().map(warm::discovery_dir);
        let syncs: Vec<Arc<SharedSync>> = clusters
            .iter()
            .map(|c| Arc::new(SharedSync::new(c.id.as_deref().unwrap_or("kubernetes"))))
            .collect();
        // Warm start: a cluster the registry knows nothing about yet (a
        // process start, not a reload) gets its last-known node set.
        let warmed: Vec<bool> = clusters
            .iter()
            .zip(&keys)
            .zip(&syncs)
            .map(|((cluster, key), sync)| {
                let Some(dir) = &warm_dir else { return false };
                if registry.cluster_synced(key) {
                    return false;
                }
                let Some(loaded) = warm::load(dir, key, &warm::identity(cluster)) else {
                    return false;
                };
                tracing::info!(
                    cluster = cluster.id.as_deref().unwrap_or("kubernetes"),
                    services = loaded.services.len(),
                    saved_unix = loaded.saved_unix,
                    "warm start: serving the last-known node set until the API server answers"
                );
                registry.replace_cluster(key, loaded.services);
                sync.warm_loaded(loaded.saved_unix);
                true
            })
            .collect();

        let (ready_tx, ready) = tokio::sync::watch::channel(warmed);
        let ready_tx = Arc::new(ready_tx);
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for (i, ((cluster, key), sync)) in clusters.into_iter().zip(keys).zip(syncs).enumerate() {
            let changed = warm_dir.as_ref().map(|dir| {
                let notify = Arc::new(tokio::sync::Notify::new());
                tasks.push(runtime.spawn(warm::persist_loop(
                    dir.clone(),
                    key.clone(),
                    warm::identity(&cluster),
                    registry.clone(),
                    notify.clone(),
                    options.warm_debounce,
                )));
                notify
            });
            let tx = ready_tx.clone();
            let task = watch::ClusterTask {
                key: key.clone(),
                cluster: cluster.clone(),
                registry: registry.clone(),
                sync: sync.clone(),
                on_synced: Box::new(move || {
                    tx.send_modify(|flags| {
                        if let Some(f) = flags.get_mut(i) {
                            *f = true;
                        }
                    })
                }),
                options: options.clone(),
                changed,
            };
            tasks.push(runtime.spawn(watch::run(task)));
            handles.push(ClusterHandle { key, cluster, sync });
        }
        Ok(KubernetesDiscovery {
            clusters: handles,
            registry,
            multi_cluster,
            tasks: Mutex::new(tasks),
            ready,
        })
    }

    /// Every cluster finished its initial list or serves a warm-start node set.
    pub fn is_ready(&self) -> bool {
        self.ready.borrow().iter().all(|r| *r)
    }

    /// Waits until [`Self::is_ready`], at most `timeout`; returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        let all =
            tokio::time::timeout(timeout, rx.wait_for(|flags| flags.iter().all(|r| *r))).await;
        matches!(all, Ok(Ok(_)))
    }

    /// Readiness per cluster: `(id, initial list done or warm state loaded)`;
    /// the id is `None` in single-cluster mode.
    pub fn cluster_readiness(&self) -> Vec<(Option<String>, bool)> {
        let flags = self.ready.borrow();
        self.clusters
            .iter()
            .zip(flags.iter())
            .map(|(c, r)| (c.cluster.id.clone(), *r))
            .collect()
    }

    /// Sync state of each cluster, in configuration order.
    pub fn sync_states(&self) -> Vec<(Option<String>, SyncState)> {
        self.clusters
            .iter()
            .map(|c| (c.cluster.id.clone(), c.sync.snapshot()))
            .collect()
    }

    /// True while some cluster serves a warm-start node set (no list yet).
    pub fn is_stale(&self) -> bool {
        self.clusters.iter().any(|c| c.sync.snapshot().stale)
    }

    /// The dump, in APISIX's shape (`config`, `endpoints`) plus `sync`.
    ///
    /// As in APISIX, single-cluster mode shows `config` as one object and its
    /// `endpoints` entry has no `id`; multi-cluster mode shows the list of
    /// cluster configs and one entry per id. Tokens are redacted. With a
    /// kubeconfig, `config` shows the server actually used.
    pub fn dump(&self) -> Value {
        let configs: Vec<Value> = self.clusters.iter().map(shown_config).collect();
        let endpoints: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| {
                let services: Vec<Value> = self
                    .registry
                    .cluster_services(&c.key)
                    .into_iter()
                    .map(|(name, ports)| {
                        let value = serde_json::to_string(&*ports).unwrap_or_default();
                        json!({ "name": name, "value": value })
                    })
                    .collect();
                let mut entry = json!({ "endpoints": services });
                if let (true, Some(id)) = (self.multi_cluster, &c.cluster.id) {
                    entry["id"] = json!(id);
                }
                entry
            })
            .collect();
        let flags = self.ready.borrow().clone();
        let sync: Vec<Value> = self
            .clusters
            .iter()
            .zip(flags)
            .map(|(c, ready)| {
                let mut v = serde_json::to_value(c.sync.snapshot()).unwrap_or(Value::Null);
                v["ready"] = json!(ready);
                if let (true, Some(id)) = (self.multi_cluster, &c.cluster.id) {
                    v["id"] = json!(id);
                }
                v
            })
            .collect();
        let config = match (self.multi_cluster, configs.first()) {
            (false, Some(single)) => single.clone(),
            _ => Value::Array(configs),
        };
        json!({ "config": config, "endpoints": endpoints, "sync": sync })
    }

    /// Stops the watchers (config reload or exit); registry entries stay.
    pub fn shutdown(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

/// A cluster's configuration as the dump shows it. With a kubeconfig the
/// defaults filled for the in-cluster case (service host and port, token
/// file, CA) say nothing true: the kubeconfig and its server are shown.
fn shown_config(c: &ClusterHandle) -> Value {
    let mut v = serde_json::to_value(&c.cluster.config).unwrap_or(Value::Null);
    if let ApiServer::Kubeconfig(path) = &c.cluster.api_server {
        let server = c.sync.snapshot().server;
        let service = server
            .as_deref()
            .and_then(|s| s.parse::<http::Uri>().ok())
            .map(|u| {
                json!({
                    "schema": u.scheme_str().unwrap_or("https"),
                    "host": u.host().unwrap_or_default().trim_matches(|c| c == '[' || c == ']'),
                    "port": u.port_u16().unwrap_or(if u.scheme_str() == Some("http") { 80 } else { 443 }).to_string(),
                })
            });
        v["service"] = service.unwrap_or(Value::Null);
        v["client"] = json!({ "kubeconfig": path.display().to_string() });
        if !c.cluster.ssl_verify {
            v["client"]["ssl_verify"] = json!(false);
        }
        v["server"] = json!(server);
    }
    v
}

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}
