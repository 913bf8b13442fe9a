//! The node registry: `service_name` -> live node list.
//!
//! Discovery writes per service (one Kubernetes object changed → only the
//! entries of that service's ports are recomputed); the proxy reads through
//! [`ServiceNodes::current`], a single atomic load with no lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use weir_config::discovery_resolve::{parse_service_name, ServiceRef};

use crate::ratelimit::RateLimiter;

/// One upstream address of a discovered service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Pod IP (v4 or v6, no brackets).
    pub host: String,
    /// Endpoint port.
    pub port: u16,
    /// Balancer weight (`default_weight` of the cluster).
    pub weight: u32,
}

/// Immutable node list of one service_name at one point in time.
#[derive(Debug, Default)]
pub struct NodeList {
    /// The nodes, sorted by host then port.
    pub nodes: Vec<Node>,
}

/// Nodes of one Kubernetes service, keyed by port key (port name, or its
/// number when the port has no name). Sorted for stable dumps.
pub type PortMap = BTreeMap<String, Vec<Node>>;

/// A live subscription to one service_name; cheap lock-free reads on the hot path.
pub struct ServiceNodes {
    service_name: String,
    nodes: ArcSwap<NodeList>,
}

impl ServiceNodes {
    /// The current node list. `Arc::ptr_eq` with a previous result tells
    /// whether it changed: an update that yields the same nodes keeps the Arc.
    pub fn current(&self) -> Arc<NodeList> {
        self.nodes.load_full()
    }

    /// The service_name this entry follows.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Stores `nodes` unless equal to what is there (so readers keep their Arc).
    fn set(&self, nodes: Vec<Node>) {
        if self.nodes.load().nodes != nodes {
            self.nodes.store(Arc::new(NodeList { nodes }));
        }
    }
}

impl std::fmt::Debug for ServiceNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceNodes")
            .field("service_name", &self.service_name)
            .field("nodes", &self.nodes.load().nodes.len())
            .finish()
    }
}

/// Why a service_name gives no nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// The name has the wrong shape for the discovery mode.
    BadName(String),
    /// Discovery is not configured (or not started yet).
    NotConfigured,
    /// Multi-cluster: no cluster with this id.
    UnknownCluster(String),
    /// The cluster has not finished its initial list yet.
    NotSynced(String),
    /// No Endpoints/EndpointSlice for `namespace/name`.
    NoService(String),
    /// The service exists but has no port with that name.
    NoPort {
        /// `namespace/name`.
        service: String,
        /// The port key asked for.
        port: String,
        /// The port keys the service has.
        known: Vec<String>,
    },
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::BadName(e) => write!(f, "{e}"),
            Unresolved::NotConfigured => f.write_str("kubernetes discovery is not configured"),
            Unresolved::UnknownCluster(id) => write!(f, "unknown cluster id {id:?}"),
            Unresolved::NotSynced(id) => {
                write!(f, "cluster {id:?} has not finished its initial list")
            }
            Unresolved::NoService(s) => write!(f, "no such service {s:?}"),
            Unresolved::NoPort {
                service,
                port,
                known,
            } => {
                write!(
                    f,
                    "service {service:?} has no port named {port:?} (ports: {known:?})"
                )
            }
        }
    }
}

/// Everything discovery knows about one cluster.
#[derive(Debug, Default)]
struct ClusterNodes {
    /// Set once the first full list has been swapped in.
    synced: bool,
    /// `namespace/name` -> its nodes per port.
    services: HashMap<String, Arc<PortMap>>,
}

#[derive(Default)]
struct State {
    /// `None` until discovery is configured; then whether names carry a cluster id.
    multi_cluster: Option<bool>,
    /// Cluster key (`""` in single-cluster mode) -> nodes.
    clusters: HashMap<String, ClusterNodes>,
    /// service_name -> live entry.
    subscriptions: HashMap<String, Arc<ServiceNodes>>,
    /// (cluster key, `namespace/name`) -> service_names subscribed to it.
    by_service: HashMap<(String, String), Vec<String>>,
}

/// The registry of discovered nodes. Send + Sync, shared as `Arc<Registry>`.
pub struct Registry {
    state: Mutex<State>,
    unresolved_log: RateLimiter,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Registry")
            .field("multi_cluster", &st.multi_cluster)
            .field("clusters", &st.clusters.len())
            .field("subscriptions", &st.subscriptions.len())
            .finish()
    }
}

/// Cluster key used inside the registry: the id, or `""` in single-cluster mode.
fn cluster_key(r: &ServiceRef) -> String {
    r.cluster.clone().unwrap_or_default()
}

impl State {
    fn parse(&self, name: &str) -> Result<ServiceRef, Unresolved> {
        let multi = self.multi_cluster.ok_or(Unresolved::NotConfigured)?;
        parse_service_name(name, multi).map_err(Unresolved::BadName)
    }

    fn resolve(&self, name: &str) -> Result<Vec<Node>, Unresolved> {
        let r = self.parse(name)?;
        let key = cluster_key(&r);
        let cluster = self
            .clusters
            .get(&key)
            .ok_or_else(|| Unresolved::UnknownCluster(key.clone()))?;
        let service = r.service_key();
        let ports = match cluster.services.get(&service) {
            Some(p) => p,
            None if !cluster.synced => return Err(Unresolved::NotSynced(key)),
            None => return Err(Unresolved::NoService(service)),
        };
        if let Some(nodes) = ports.get(&r.port) {
            return Ok(nodes.clone());
        }
        // A service scaled to zero has no port at all: zero nodes, not an error.
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        Err(Unresolved::NoPort {
            service,
            port: r.port,
            known: ports.keys().cloned().collect(),
        })
    }

    /// Rebuilds the service -> subscriptions index (after a mode change).
    fn reindex(&mut self) {
        self.by_service.clear();
        let names: Vec<String> = self.subscriptions.keys().cloned().collect();
        for name in names {
            self.index(&name);
        }
    }

    fn index(&mut self, name: &str) {
        if let Ok(r) = self.parse(name) {
            self.by_service
                .entry((cluster_key(&r), r.service_key()))
                .or_default()
                .push(name.to_owned());
        }
    }

    fn refresh_all(&self, log: &RateLimiter) {
        for sub in self.subscriptions.values() {
            sub.set(explain(
                log,
                &sub.service_name,
                self.resolve(&sub.service_name),
            ));
        }
    }

    fn refresh_service(&self, cluster: &str, service: &str, log: &RateLimiter) {
        if let Some(names) = self
            .by_service
            .get(&(cluster.to_owned(), service.to_owned()))
        {
            for name in names {
                if let Some(sub) = self.subscriptions.get(name) {
                    sub.set(explain(log, name, self.resolve(name)));
                }
            }
        }
    }
}

/// The nodes of a resolution; an unresolved name gives no nodes and a
/// rate-limited log line naming the part that did not match.
fn explain(log: &RateLimiter, service_name: &str, r: Result<Vec<Node>, Unresolved>) -> Vec<Node> {
    match r {
        Ok(nodes) => nodes,
        Err(why @ (Unresolved::NotSynced(_) | Unresolved::NotConfigured)) => {
            // Before the first list completes a miss is expected.
            tracing::debug!(service_name, reason = %why, "service_name not resolved yet");
            Vec::new()
        }
        Err(why) => {
            if log.allow(service_name) {
                tracing::warn!(service_name, reason = %why, "service_name does not resolve to any node");
            }
            Vec::new()
        }
    }
}

impl Registry {
    /// An empty registry; every name is unresolved until discovery configures it.
    pub fn new() -> Registry {
        Registry {
            state: Mutex::new(State::default()),
            unresolved_log: RateLimiter::new(Duration::from_secs(30)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every write
        // is a single insert/swap), so poisoning is not fatal.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the (shared, created on demand) live entry for a kubernetes service_name; stays valid across discovery restarts/reloads and gets filled when the service appears.
    pub fn subscribe(&self, service_name: &str) -> Arc<ServiceNodes> {
        let mut st = self.lock();
        if let Some(s) = st.subscriptions.get(service_name) {
            return s.clone();
        }
        let nodes = explain(&self.unresolved_log, service_name, st.resolve(service_name));
        let sub = Arc::new(ServiceNodes {
            service_name: service_name.to_owned(),
            nodes: ArcSwap::from_pointee(NodeList { nodes }),
        });
        st.subscriptions
            .insert(service_name.to_owned(), sub.clone());
        st.index(service_name);
        sub
    }

    /// One-shot lookup (APISIX's nodes(service_name)); None if the name does not resolve.
    pub fn nodes(&self, service_name: &str) -> Option<Vec<Node>> {
        let result = self.lock().resolve(service_name);
        let resolved = result.is_ok();
        let nodes = explain(&self.unresolved_log, service_name, result);
        resolved.then_some(nodes)
    }

    /// Like [`Registry::nodes`] but says why a name does not resolve.
    pub fn resolve(&self, service_name: &str) -> Result<Vec<Node>, Unresolved> {
        self.lock().resolve(service_name)
    }

    /// Sets the discovery mode and the set of clusters; clusters not listed are
    /// dropped (their nodes vanish), listed ones keep their data until their
    /// watcher swaps in a fresh list. `ids` are cluster ids (`""` in single mode).
    pub fn configure(&self, multi_cluster: bool, ids: &[String]) {
        let mut st = self.lock();
        let mode_changed = st.multi_cluster != Some(multi_cluster);
        st.multi_cluster = Some(multi_cluster);
        if mode_changed {
            st.clusters.clear();
        }
        let keep: HashSet<&String> = ids.iter().collect();
        st.clusters.retain(|id, _| keep.contains(id));
        for id in ids {
            st.clusters.entry(id.clone()).or_default();
        }
        if mode_changed {
            st.reindex();
        }
        st.refresh_all(&self.unresolved_log);
    }

    /// Forgets every cluster (discovery removed from the config).
    pub fn unconfigure(&self) {
        let mut st = self.lock();
        st.multi_cluster = None;
        st.clusters.clear();
        st.by_service.clear();
        st.refresh_all(&self.unresolved_log);
    }

    /// Replaces the whole node set of `cluster` (after a full list): services
    /// absent from `services` are deleted. Marks the cluster synced.
    pub fn replace_cluster(&self, cluster: &str, services: HashMap<String, Arc<PortMap>>) {
        let mut st = self.lock();
        let Some(c) = st.clusters.get_mut(cluster) else {
            return; // cluster removed by a newer configuration
        };
        let old = std::mem::replace(&mut c.services, services);
        c.synced = true;
        let c = &st.clusters[cluster];
        let touched: HashSet<&String> = old.keys().chain(c.services.keys()).collect();
        for service in touched {
            let changed = match (old.get(service), c.services.get(service)) {
                (Some(a), Some(b)) => a != b,
                _ => true,
            };
            if changed {
                st.refresh_service(cluster, service, &self.unresolved_log);
            }
        }
        // Subscriptions that were waiting for the first list now resolve (to nothing).
        if old.is_empty() {
            for ((cl, service), _) in st.by_service.iter() {
                if cl == cluster {
                    st.refresh_service(cl, service, &self.unresolved_log);
                }
            }
        }
    }

    /// Sets (`Some`) or deletes (`None`) the nodes of one service `namespace/name`.
    pub fn update_service(&self, cluster: &str, service: &str, ports: Option<Arc<PortMap>>) {
        let mut st = self.lock();
        let Some(c) = st.clusters.get_mut(cluster) else {
            return;
        };
        let changed = match ports {
            Some(p) => c.services.insert(service.to_owned(), p.clone()).as_ref() != Some(&p),
            None => c.services.remove(service).is_some(),
        };
        if changed {
            st.refresh_service(cluster, service, &self.unresolved_log);
        }
    }

    /// Whether `cluster` holds a node set already (a list completed, or a
    /// warm-start state was loaded).
    pub fn cluster_synced(&self, cluster: &str) -> bool {
        self.lock().clusters.get(cluster).is_some_and(|c| c.synced)
    }

    /// Every service of `cluster` with its nodes, sorted by name (for the dump).
    pub fn cluster_services(&self, cluster: &str) -> Vec<(String, Arc<PortMap>)> {
        let st = self.lock();
        let mut out: Vec<(String, Arc<PortMap>)> = st
            .clusters
            .get(cluster)
            .map(|c| {
                c.services
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> Node {
        Node {
            host: host.into(),
            port,
            weight: 50,
        }
    }

    fn ports(entries: &[(&str, Vec<Node>)]) -> Arc<PortMap> {
        Arc::new(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn subscription_is_filled_when_the_service_appears() {
        let r = Registry::new();
        let sub = r.subscribe("shop/cart:http");
        assert!(sub.current().nodes.is_empty());
        r.configure(false, &[String::new()]);
        r.replace_cluster("", HashMap::new());
        assert_eq!(r.nodes("shop/cart:http"), None);
        r.update_service(
            "",
            "shop/cart",
            Some(ports(&[("http", vec![node("10.0.0.1", 80)])])),
        );
        assert_eq!(sub.current().nodes, vec![node("10.0.0.1", 80)]);
        assert_eq!(r.nodes("shop/cart:http"), Some(vec![node("10.0.0.1", 80)]));
        assert!(Arc::ptr_eq(&sub, &r.subscribe("shop/cart:http")));
    }

    #[test]
    fn unchanged_update_keeps_the_same_arc() {
        let r = Registry::new();
        r.configure(false, &[String::new()]);
        let p = ports(&[("http", vec![node("10.0.0.1", 80)])]);
        r.update_service("", "shop/cart", Some(p.clone()));
        let sub = r.subscribe("shop/cart:http");
        let before = sub.current();
        r.update_service(
            "",
            "shop/cart",
            Some(ports(&[
                ("http", vec![node("10.0.0.1", 80)]),
                ("m", vec![]),
            ])),
        );
        assert!(Arc::ptr_eq(&before, &sub.current()));
        r.update_service(
            "",
            "shop/cart",
            Some(ports(&[("http", vec![node("10.0.0.2", 80)])])),
        );
        assert!(!Arc::ptr_eq(&before, &sub.current()));
    }

    #[test]
    fn replace_cluster_deletes_vanished_services() {
        let r = Registry::new();
        r.configure(false, &[String::new()]);
        r.update_service(
            "",
            "shop/old",
            Some(ports(&[("http", vec![node("10.0.0.1", 80)])])),
        );
        let sub = r.subscribe("shop/old:http");
        assert_eq!(sub.current().nodes.len(), 1);
        let mut fresh = HashMap::new();
        fresh.insert(
            "shop/new".to_string(),
            ports(&[("http", vec![node("10.0.0.2", 80)])]),
        );
        r.replace_cluster("", fresh);
        assert!(sub.current().nodes.is_empty());
        assert_eq!(r.nodes("shop/old:http"), None);
        assert_eq!(r.nodes("shop/new:http").map(|n| n.len()), Some(1));
    }

    #[test]
    fn reasons_name_the_part_that_did_not_match() {
        let r = Registry::new();
        assert_eq!(r.resolve("a/b:c"), Err(Unresolved::NotConfigured));
        r.configure(true, &["one".to_string()]);
        r.replace_cluster("one", HashMap::new());
        assert_eq!(
            r.resolve("two/a/b:c"),
            Err(Unresolved::UnknownCluster("two".into()))
        );
        assert_eq!(
            r.resolve("one/a/b:c"),
            Err(Unresolved::NoService("a/b".into()))
        );
        assert!(matches!(r.resolve("a/b:c"), Err(Unresolved::BadName(_))));
        r.update_service("one", "a/b", Some(ports(&[("http", vec![])])));
        assert!(matches!(
            r.resolve("one/a/b:c"),
            Err(Unresolved::NoPort { .. })
        ));
        assert_eq!(r.resolve("one/a/b:http"), Ok(vec![]));
    }

    #[test]
    fn service_without_ports_resolves_to_zero_nodes() {
        let r = Registry::new();
        r.configure(false, &[String::new()]);
        r.update_service("", "shop/empty", Some(Arc::new(PortMap::new())));
        assert_eq!(r.nodes("shop/empty:http"), Some(vec![]));
    }

    #[test]
    fn mode_change_reresolves_subscriptions() {
        let r = Registry::new();
        let multi = r.subscribe("c1/shop/cart:http");
        let single = r.subscribe("shop/cart:http");
        r.configure(true, &["c1".to_string()]);
        r.update_service(
            "c1",
            "shop/cart",
            Some(ports(&[("http", vec![node("10.0.0.1", 80)])])),
        );
        assert_eq!(multi.current().nodes.len(), 1);
        assert!(single.current().nodes.is_empty());
        r.configure(false, &[String::new()]);
        assert!(multi.current().nodes.is_empty());
        r.update_service(
            "",
            "shop/cart",
            Some(ports(&[("http", vec![node("10.0.0.2", 80)])])),
        );
        assert_eq!(single.current().nodes.len(), 1);
    }

    #[test]
    fn removed_cluster_loses_its_nodes() {
        let r = Registry::new();
        r.configure(true, &["a".to_string(), "b".to_string()]);
        r.update_service(
            "a",
            "ns/s",
            Some(ports(&[("p", vec![node("10.0.0.1", 1)])])),
        );
        r.update_service(
            "b",
            "ns/s",
            Some(ports(&[("p", vec![node("10.0.0.2", 1)])])),
        );
        let a = r.subscribe("a/ns/s:p");
        let b = r.subscribe("b/ns/s:p");
        r.configure(true, &["b".to_string()]);
        assert!(a.current().nodes.is_empty());
        assert_eq!(b.current().nodes.len(), 1);
    }
}
