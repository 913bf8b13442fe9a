//! Warm start of discovery: the last-known node set of each cluster, kept in
//! `<state_dir>/discovery/`, loaded at start when the registry has nothing
//! for the cluster yet, and written back (debounced) while the source is
//! live.
//!
//! A saved set is used only by the same source: its identity (API server,
//! namespace and label selectors, kind, weight) is saved with it and must
//! match the configuration, or the file is ignored with a log line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;
use weir_config::discovery_resolve::ResolvedCluster;
use weir_config::warm::{self, WarmError, FORMAT_VERSION};

use crate::ratelimit::RateLimiter;
use crate::registry::{PortMap, Registry};

/// The directory of discovery's files inside the state directory.
pub(crate) fn discovery_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("discovery")
}

/// The file of one cluster (`key` is `""` in single-cluster mode; ids are
/// `[a-z0-9]{1,64}`, so they are safe in a file name).
fn file_for(dir: &Path, key: &str) -> PathBuf {
    if key.is_empty() {
        dir.join("kubernetes.json")
    } else {
        dir.join(format!("kubernetes-{key}.json"))
    }
}

/// What decides a cluster's node set; a saved set is only reused by a
/// configuration with the same identity.
pub(crate) fn identity(cluster: &ResolvedCluster) -> Value {
    let c = &cluster.config;
    json!({
        "id": c.id,
        "service": c.service,
        "kubeconfig": c.client.as_ref().and_then(|cl| cl.kubeconfig.clone()),
        "namespace_selector": c.namespace_selector,
        "label_selector": c.label_selector,
        "watch_endpoint_slices": cluster.watch_endpoint_slices,
        "default_weight": cluster.default_weight,
    })
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    saved_unix: f64,
    identity: Value,
    services: BTreeMap<String, PortMap>,
}

/// A node set read back by [`load`].
pub(crate) struct Loaded {
    pub saved_unix: f64,
    pub services: HashMap<String, Arc<PortMap>>,
}

/// The saved node set of cluster `key`, if there is a usable one. Problems
/// are logged (never fatal: discovery then starts cold).
pub(crate) fn load(dir: &Path, key: &str, identity: &Value) -> Option<Loaded> {
    let path = file_for(dir, key);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "warm start: cannot read the saved node set; starting cold");
            return None;
        }
    };
    let saved: Saved = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "warm start: the saved node set is not valid; starting cold");
            return None;
        }
    };
    if saved.version != FORMAT_VERSION {
        tracing::warn!(file = %path.display(), version = saved.version, "warm start: unknown format version; starting cold");
        return None;
    }
    if &saved.identity != identity {
        tracing::warn!(file = %path.display(), "warm start: the saved node set belongs to a differently configured source; starting cold");
        return None;
    }
    Some(Loaded {
        saved_unix: saved.saved_unix,
        services: saved
            .services
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
    })
}

/// Writes the node set of cluster `key` atomically.
pub(crate) fn save(
    dir: &Path,
    key: &str,
    identity: Value,
    services: Vec<(String, Arc<PortMap>)>,
) -> Result<(), WarmError> {
    std::fs::create_dir_all(dir).map_err(|source| WarmError::Io {
        action: "creating",
        path: dir.to_owned(),
        source,
    })?;
    let path = file_for(dir, key);
    let saved = Saved {
        version: FORMAT_VERSION,
        saved_unix: warm::now_unix(),
        identity,
        services: services
            .into_iter()
            .map(|(k, v)| (k, PortMap::clone(&v)))
            .collect(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| WarmError::Invalid {
        path: path.clone(),
        message: format!("cannot encode the node set: {e}"),
    })?;
    warm::write_atomic(&path, &bytes)
}

/// Writes cluster `key`'s node set after each burst of changes: woken by
/// `changed`, it waits `debounce` (more changes meanwhile are coalesced),
/// then writes what the registry holds. Runs until aborted.
pub(crate) async fn persist_loop(
    dir: PathBuf,
    key: String,
    identity: Value,
    registry: Arc<Registry>,
    changed: Arc<Notify>,
    debounce: Duration,
) {
    let log = RateLimiter::new(Duration::from_secs(60));
    loop {
        changed.notified().await;
        tokio::time::sleep(debounce).await;
        let services = registry.cluster_services(&key);
        let (dir, key2, identity) = (dir.clone(), key.clone(), identity.clone());
        let written =
            tokio::task::spawn_blocking(move || save(&dir, &key2, identity, services)).await;
        match written {
            Ok(Ok(())) => tracing::debug!(cluster = %key, "warm start: node set saved"),
            Ok(Err(e)) => {
                if log.allow("save") {
                    tracing::warn!(cluster = %key, error = %e, "warm start: cannot save the node set");
                }
            }
            Err(e) => {
                tracing::warn!(cluster = %key, error = %e, "warm start: the save task failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Node;

    #[test]
    fn a_node_set_round_trips_only_for_the_same_source() {
        let dir = std::env::temp_dir().join(format!("weir-warm-nodes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ports = PortMap::new();
        ports.insert(
            "http".into(),
            vec![Node {
                host: "10.0.0.1".into(),
                port: 80,
                weight: 50,
            }],
        );
        let id = json!({"service": "a"});
        save(
            &dir,
            "",
            id.clone(),
            vec![("shop/cart".into(), Arc::new(ports.clone()))],
        )
        .unwrap();
        let back = load(&dir, "", &id).unwrap();
        assert_eq!(*back.services["shop/cart"], ports);
        assert!(load(&dir, "", &json!({"service": "b"})).is_none());
        assert!(load(&dir, "east", &id).is_none());
        std::fs::write(file_for(&dir, ""), b"{not json").unwrap();
        assert!(load(&dir, "", &id).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
