//! Kubernetes discovery: one watch task per cluster writing into the
//! [`Registry`], readiness, and the APISIX-shaped dump.

mod client;
pub mod nodes;
mod state;
mod sync;
mod token;
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

        let (ready_tx, ready) = tokio::sync::watch::channel(vec![false; clusters.len()]);
        let ready_tx = Arc::new(ready_tx);
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for (i, (cluster, key)) in clusters.into_iter().zip(keys).enumerate() {
            let sync = Arc::new(SharedSync::default());
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

    /// Every cluster finished its initial list.
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

    /// Readiness per cluster: `(id, initial list done)`; the id is `None` in
    /// single-cluster mode.
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

    /// The dump, in APISIX's shape (`config`, `endpoints`) plus `sync`.
    ///
    /// As in APISIX, single-cluster mode shows `config` as one object and its
    /// `endpoints` entry has no `id`; multi-cluster mode shows the list of
    /// cluster configs and one entry per id. Tokens are redacted.
    pub fn dump(&self) -> Value {
        let configs: Vec<Value> = self
            .clusters
            .iter()
            .map(|c| serde_json::to_value(&c.cluster.config).unwrap_or(Value::Null))
            .collect();
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

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}
