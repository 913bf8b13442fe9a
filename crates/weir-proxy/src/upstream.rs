//! Compiled upstreams: node sets, their balancer, and the per-node state
//! (load figures, keep-alive pool) that survives config reloads and
//! discovery updates for nodes that stay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use rustls::pki_types::ServerName;
use weir_config::{HashOn, LbType, PassHost, Scheme};
use weir_discovery::registry::{NodeList, ServiceNodes};

use crate::balance::{BalanceNode, Balancer, NodeLoad};
use crate::pool::{ConnPool, Endpoint, PoolLimits, TlsTarget};

/// One upstream node with its live state.
pub struct NodeState {
    /// `host:port`, as shown in logs and used on the chash ring.
    pub key: Arc<str>,
    /// Where to connect.
    pub endpoint: Endpoint,
    /// In-flight and latency figures.
    pub load: Arc<NodeLoad>,
    /// Idle keep-alive connections (hyper, for the general path).
    pub pool: ConnPool,
    /// Idle keep-alive connections of the HTTP/1.1 fast path.
    pub h1_pool: ConnPool<tokio::net::TcpStream>,
    /// Health as judged by active and passive checks.
    pub health: crate::health::NodeHealth,
    /// What attempts on this node came to (Prometheus).
    pub attempts: crate::metrics::NodeAttempts,
}

/// Shares [`NodeState`] between upstream generations, so that a reload or a
/// discovery update keeps the pools and load figures of nodes that remain.
#[derive(Default)]
pub struct NodeStates {
    states: Mutex<HashMap<String, Weak<NodeState>>>,
}

impl NodeStates {
    /// The live state for a node, created if no generation holds it anymore.
    fn get_or_create(
        &self,
        host: &str,
        port: u16,
        tls: Option<&TlsTarget>,
        limits: PoolLimits,
    ) -> Arc<NodeState> {
        let sni = tls.map(|t| format!("{:?}", t.server_name));
        let id = format!("{}|{host}|{port}", sni.as_deref().unwrap_or("plain"));
        let mut states = match self.states.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(state) = states.get(&id).and_then(Weak::upgrade) {
            return state;
        }
        let key = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let state = Arc::new(NodeState {
            key: Arc::from(key.as_str()),
            endpoint: Endpoint {
                host: host.to_owned(),
                port,
                tls: tls.cloned(),
            },
            load: Arc::new(NodeLoad::default()),
            pool: ConnPool::new(limits),
            h1_pool: ConnPool::new(limits),
            health: crate::health::NodeHealth::default(),
            attempts: crate::metrics::NodeAttempts::default(),
        });
        if states.len() > 64 && states.len().is_power_of_two() {
            states.retain(|_, w| w.strong_count() > 0);
        }
        states.insert(id, Arc::downgrade(&state));
        state
    }
}

/// A node set with its balancer: immutable once built.
pub struct NodeSet {
    /// Nodes, index-aligned with `balance_nodes`.
    pub nodes: Vec<Arc<NodeState>>,
    /// What the balancer sees.
    pub balance_nodes: Vec<BalanceNode>,
    /// The balancing algorithm's state.
    pub balancer: Balancer,
    /// Node priorities (APISIX's `priority`), index-aligned with `nodes`;
    /// empty when every node has the default priority 0.
    pub priorities: Vec<i64>,
    /// One balancer per priority group (empty without priorities), so a
    /// group is balanced by its own weights, as APISIX's picker per group.
    pub groups: Vec<PriorityGroup>,
    /// The discovery list this set was built from (None for static nodes).
    source: Option<Arc<NodeList>>,
}

impl NodeSet {
    /// Number of nodes (including weight 0).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there is no node at all.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The priority of node `i` (0 unless configured).
    pub fn priority(&self, i: usize) -> i64 {
        self.priorities.get(i).copied().unwrap_or(0)
    }
}

/// The nodes of one priority, with a balancer of their own.
pub struct PriorityGroup {
    /// The priority.
    pub priority: i64,
    /// Indices into the set's `nodes`.
    pub members: Vec<usize>,
    /// What the group's balancer sees (index-aligned with `members`).
    pub balance_nodes: Vec<BalanceNode>,
    /// The group's balancer.
    pub balancer: Balancer,
}

/// Where an upstream's nodes come from.
pub enum NodeSource {
    /// Listed in the configuration.
    Static,
    /// Followed live from a discovery registry entry.
    Discovered(Arc<ServiceNodes>),
}

/// Timeouts of one upstream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP + TLS + handshake.
    pub connect: Duration,
    /// Sending the request headers and body.
    pub send: Duration,
    /// Waiting for the response headers.
    pub read: Duration,
}

/// A compiled upstream.
pub struct Upstream {
    /// Id (or `route:<id>` for inline upstreams), for logs.
    pub id: String,
    /// Balancing algorithm.
    pub lb: LbType,
    /// chash input kind.
    pub hash_on: HashOn,
    /// chash input name (lower-cased for headers).
    pub hash_key: String,
    /// `hash_on` as APISIX names it (adds `consumer` and
    /// `vars_combinations` to [`HashOn`]).
    pub hash_kind: weir_config::HashKind,
    /// The parsed `key` of `hash_on: vars_combinations`.
    pub hash_template: Option<weir_config::vars::VarsTemplate>,
    /// Extra attempts; None = number of nodes - 1.
    pub retries: Option<u32>,
    /// No retry starts after this much time.
    pub retry_timeout: Option<Duration>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Host header policy.
    pub pass_host: PassHost,
    /// Host header for `pass_host: rewrite`.
    pub upstream_host: Option<HeaderValue>,
    /// http or https.
    pub scheme: Scheme,
    /// Health checks; None = every node counts as healthy.
    pub health: Option<crate::health::HealthPolicy>,
    source: NodeSource,
    current: ArcSwap<NodeSet>,
    rebuilding: AtomicBool,
    states: Arc<NodeStates>,
    tls: Option<Arc<rustls::ClientConfig>>,
    upstream_host_str: Option<String>,
    limits: PoolLimits,
    /// The configuration it was built from (the next compile reuses it
    /// when that is unchanged).
    built_from: weir_config::Upstream,
    /// Its active health checker was started.
    checker: AtomicBool,
}

/// Everything needed to compile one upstream.
pub struct UpstreamParts {
    /// Id for logs.
    pub id: String,
    /// Parsed configuration.
    pub config: weir_config::Upstream,
    /// Static nodes `(host, port, weight, priority)` (empty for discovery).
    pub static_nodes: Vec<(String, u16, u32, i64)>,
    /// Discovery subscription, if any.
    pub discovered: Option<Arc<ServiceNodes>>,
    /// TLS for `type: https` active probes.
    pub probe_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Upstream {
    /// Compiles an upstream. Node states are shared through `states`.
    pub fn build(
        parts: UpstreamParts,
        states: Arc<NodeStates>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Upstream {
        let c = &parts.config;
        let t = c.timeout.unwrap_or_default();
        let pool = c.keepalive_pool.unwrap_or_default();
        let limits = PoolLimits {
            size: pool.size as usize,
            idle_timeout: Duration::from_secs_f64(pool.idle_timeout),
            max_requests: pool.requests,
        };
        let upstream_host_str = c.upstream_host.clone().filter(|h| !h.is_empty());
        let mut up = Upstream {
            id: parts.id,
            lb: c.lb_type,
            hash_on: c.hash_on,
            hash_kind: c.hash_on_kind,
            hash_template: c.vars_combinations(),
            hash_key: c.key.clone().unwrap_or_default(),
            retries: c.retries,
            retry_timeout: c
                .retry_timeout
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64),
            timeouts: Timeouts {
                connect: Duration::from_secs_f64(t.connect),
                send: Duration::from_secs_f64(t.send),
                read: Duration::from_secs_f64(t.read),
            },
            pass_host: c.pass_host,
            upstream_host: upstream_host_str
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
            scheme: c.scheme,
            health: c.checks.as_ref().map(|ch| crate::health::HealthPolicy {
                active: ch.active.clone(),
                passive: ch.passive.clone(),
                probe_tls: parts.probe_tls.clone(),
            }),
            source: match parts.discovered {
                Some(s) => NodeSource::Discovered(s),
                None => NodeSource::Static,
            },
            current: ArcSwap::from_pointee(NodeSet {
                nodes: Vec::new(),
                balance_nodes: Vec::new(),
                balancer: Balancer::new(c.lb_type, &[]),
                priorities: Vec::new(),
                groups: Vec::new(),
                source: None,
            }),
            rebuilding: AtomicBool::new(false),
            states,
            tls,
            upstream_host_str,
            limits,
            checker: AtomicBool::new(false),
            built_from: parts.config,
        };
        if up.hash_on == HashOn::Header {
            up.hash_key = up.hash_key.to_ascii_lowercase();
        }
        let initial = match &up.source {
            NodeSource::Static => up.build_set(&parts.static_nodes, None),
            NodeSource::Discovered(svc) => {
                let list = svc.current();
                let nodes: Vec<_> = list
                    .nodes
                    .iter()
                    .map(|n| (n.host.clone(), n.port, n.weight, 0))
                    .collect();
                up.build_set(&nodes, Some(list))
            }
        };
        up.current.store(Arc::new(initial));
        up
    }

    /// The configuration it was built from.
    pub fn built_from(&self) -> &weir_config::Upstream {
        &self.built_from
    }

    /// True once: whoever gets it starts the active health checker.
    pub(crate) fn claim_checker(&self) -> bool {
        !self.checker.swap(true, Ordering::AcqRel)
    }

    /// The discovery service this upstream follows, if any.
    pub fn service_name(&self) -> Option<&str> {
        match &self.source {
            NodeSource::Discovered(s) => Some(s.service_name()),
            NodeSource::Static => None,
        }
    }

    /// The current node set. For discovered upstreams, a changed registry
    /// entry is noticed here and the set rebuilt once (by whichever request
    /// sees it first; others keep using the previous set meanwhile).
    pub fn node_set(&self) -> Arc<NodeSet> {
        let current = self.current.load_full();
        let NodeSource::Discovered(svc) = &self.source else {
            return current;
        };
        let latest = svc.current();
        let unchanged = current
            .source
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &latest));
        if unchanged {
            return current;
        }
        let nodes: Vec<_> = latest
            .nodes
            .iter()
            .map(|n| (n.host.clone(), n.port, n.weight, 0))
            .collect();
        let owner = self
            .rebuilding
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if !owner {
            // Another request is installing the new set right now. Serving
            // from the previous one for those microseconds is fine, unless it
            // is empty (first sync): then build a private copy rather than
            // answer 503 while nodes exist.
            if current.is_empty() {
                return Arc::new(self.build_set(&nodes, Some(latest)));
            }
            return current;
        }
        let set = Arc::new(self.build_set(&nodes, Some(latest)));
        self.current.store(set.clone());
        self.rebuilding.store(false, Ordering::Release);
        tracing::debug!(upstream = %self.id, nodes = set.len(), "node set updated from discovery");
        set
    }

    fn build_set(
        &self,
        nodes: &[(String, u16, u32, i64)],
        source: Option<Arc<NodeList>>,
    ) -> NodeSet {
        let mut states = Vec::with_capacity(nodes.len());
        let mut balance_nodes = Vec::with_capacity(nodes.len());
        let mut priorities = Vec::with_capacity(nodes.len());
        for (host, port, weight, priority) in nodes {
            let tls = self.tls.as_ref().and_then(|config| {
                let name = self.upstream_host_str.as_deref().unwrap_or(host);
                ServerName::try_from(name.to_owned())
                    .ok()
                    .map(|server_name| TlsTarget {
                        server_name,
                        config: config.clone(),
                    })
            });
            if self.tls.is_some() && tls.is_none() {
                tracing::warn!(upstream = %self.id, host = %host, "not a valid TLS server name; node skipped");
                continue;
            }
            let state = self
                .states
                .get_or_create(host, *port, tls.as_ref(), self.limits);
            balance_nodes.push(BalanceNode {
                key: state.key.to_string(),
                weight: *weight,
                load: state.load.clone(),
            });
            states.push(state);
            priorities.push(*priority);
        }
        if priorities.iter().all(|p| *p == 0) {
            priorities = Vec::new();
        }
        let mut groups: Vec<PriorityGroup> = Vec::new();
        if !priorities.is_empty() {
            let mut levels = priorities.clone();
            levels.sort_unstable();
            levels.dedup();
            for priority in levels {
                let members: Vec<usize> = (0..priorities.len())
                    .filter(|&i| priorities[i] == priority)
                    .collect();
                let nodes: Vec<BalanceNode> =
                    members.iter().map(|&i| balance_nodes[i].clone()).collect();
                groups.push(PriorityGroup {
                    priority,
                    balancer: Balancer::new(self.lb, &nodes),
                    members,
                    balance_nodes: nodes,
                });
            }
        }
        NodeSet {
            balancer: Balancer::new(self.lb, &balance_nodes),
            nodes: states,
            balance_nodes,
            priorities,
            groups,
            source,
        }
    }
}
