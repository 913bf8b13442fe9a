//! The live configuration: compiled from a validated [`Config`] off the hot
//! path and swapped in atomically. A request loads it once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use weir_config::{Config, FieldError, FieldErrors, Nodes, Scheme};
use weir_discovery::registry::Registry;

use crate::access_log::AccessLog;
use crate::router::{RouteSpec, RouteTable};
use crate::tls::CertTable;
use crate::upstream::{NodeStates, Upstream, UpstreamParts};
use weir_plugin::{BuildCtx, ConsumerPlugins, Pipeline};

/// A compiled route.
pub struct CompiledRoute {
    /// Route id.
    pub id: Arc<str>,
    /// Where to forward (None when a plugin answers every request).
    pub upstream: Option<Arc<Upstream>>,
    /// The route's plugins, one ordered list per phase (empty: the request
    /// path runs no plugin code at all).
    pub plugins: Pipeline,
    /// Let WebSocket upgrades through.
    pub enable_websocket: bool,
    /// Request counters (Prometheus), kept across reloads by route id.
    pub stats: Arc<crate::metrics::RouteStats>,
}

/// Everything a request needs, immutable.
pub struct Snapshot {
    /// The configuration this was compiled from.
    pub config: Arc<Config>,
    /// Route matching.
    pub router: RouteTable<Arc<CompiledRoute>>,
    /// Every upstream by id (inline ones as `route:<id>`).
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// TLS certificates by SNI.
    pub certs: Arc<CertTable>,
    /// `global_rules`' plugins, run for every request besides the route's.
    pub global: Option<Arc<Pipeline>>,
    /// Consumers' own plugins (merged with their group's), by username.
    pub consumers: ConsumerTable,
}

impl Snapshot {
    /// Starts the active health checkers of this snapshot's upstreams. Kept
    /// out of [`Compiler::compile`], so compiling (to validate, or to dry-run
    /// a change) has no side effect; called when the snapshot goes live. A
    /// checker stops by itself once its upstream is dropped.
    pub fn start_health_checks(&self) {
        for up in self.upstreams.values() {
            if let Some(active) = up.health.as_ref().and_then(|h| h.active.clone()) {
                crate::health::spawn_active_checker(Arc::downgrade(up), active);
            }
        }
    }
}

/// Consumers' own (non-authentication) plugins, by username.
#[derive(Default)]
pub struct ConsumerTable {
    by_name: HashMap<Arc<str>, Pipeline>,
}

impl ConsumerPlugins for ConsumerTable {
    fn plugins_of(&self, username: &str) -> Option<&Pipeline> {
        self.by_name.get(username).filter(|p| !p.is_empty())
    }
}

/// State shared by every connection of the data plane.
pub struct ProxyState {
    /// The live snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Access log writer.
    pub access_log: Arc<AccessLog>,
    draining: AtomicBool,
}

impl ProxyState {
    /// Wraps a first snapshot.
    pub fn new(snapshot: Snapshot, access_log: AccessLog) -> ProxyState {
        ProxyState {
            snapshot: ArcSwap::from_pointee(snapshot),
            access_log: Arc::new(access_log),
            draining: AtomicBool::new(false),
        }
    }

    /// Installs a new snapshot; requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// From now on, responses carry `Connection: close`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True once shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Long-lived inputs to compilation.
pub struct Compiler {
    /// Discovery registry (for `discovery_type` upstreams).
    pub registry: Arc<Registry>,
    /// Node state shared across generations.
    pub node_states: Arc<NodeStates>,
    /// TLS client configuration for `scheme: https` upstreams.
    pub upstream_tls: Arc<rustls::ClientConfig>,
}

impl Compiler {
    /// A compiler with default upstream TLS (webpki roots, ALPN http/1.1).
    pub fn new(registry: Arc<Registry>) -> Result<Compiler, rustls::Error> {
        Ok(Compiler {
            registry,
            node_states: Arc::new(NodeStates::default()),
            upstream_tls: crate::tls::upstream_client_config()?,
        })
    }

    /// Compiles a validated configuration into a snapshot. Errors that only
    /// show at this stage (unreadable certificate files...) name their field.
    pub fn compile(&self, config: Arc<Config>) -> Result<Snapshot, FieldErrors> {
        let mut errors = Vec::new();
        let mut upstreams: HashMap<String, Arc<Upstream>> = HashMap::new();
        for (i, up) in config.upstreams.iter().enumerate() {
            let Some(id) = &up.id else { continue };
            match self.upstream(id.0.clone(), up, &format!("upstreams[{i}]")) {
                Ok(built) => {
                    upstreams.insert(id.0.clone(), Arc::new(built));
                }
                Err(e) => errors.push(e),
            }
        }
        let build_ctx = BuildCtx::empty();
        let mut specs = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            if route.status == 0 {
                continue;
            }
            let id = route
                .id
                .as_ref()
                .map_or_else(|| i.to_string(), |id| id.0.clone());
            let upstream = if let Some(up) = &route.upstream {
                let key = format!("route:{id}");
                match self.upstream(key.clone(), up, &format!("routes[{i}].upstream")) {
                    Ok(built) => {
                        let built = Arc::new(built);
                        upstreams.insert(key, built.clone());
                        Some(built)
                    }
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            } else if let Some(uid) = &route.upstream_id {
                upstreams.get(&uid.0).cloned()
            } else {
                None
            };
            let plugins = crate::plugin_compile::compile(
                &route.plugins,
                &format!("routes[{i}].plugins"),
                &build_ctx,
                &mut errors,
            );
            let uris = route
                .uris
                .clone()
                .or_else(|| route.uri.clone().map(|u| vec![u]))
                .unwrap_or_default();
            let hosts = route
                .hosts
                .clone()
                .or_else(|| route.host.clone().map(|h| vec![h]))
                .unwrap_or_default();
            let methods = route
                .methods
                .iter()
                .flatten()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect();
            specs.push(RouteSpec {
                id: id.clone(),
                uris,
                hosts,
                methods,
                priority: route.priority,
                value: Arc::new(CompiledRoute {
                    stats: crate::metrics::for_route(&Arc::from(id.as_str())),
                    id: Arc::from(id.as_str()),
                    upstream,
                    plugins,
                    enable_websocket: route.enable_websocket,
                }),
            });
        }
        let certs = match CertTable::build(&config.ssls) {
            Ok(t) => t,
            Err(mut e) => {
                errors.append(&mut e.0);
                CertTable::default()
            }
        };
        if !errors.is_empty() {
            return Err(FieldErrors(errors));
        }
        Ok(Snapshot {
            config,
            router: RouteTable::build(specs),
            upstreams,
            certs: Arc::new(certs),
            global: None,
            consumers: ConsumerTable::default(),
        })
    }

    fn upstream(
        &self,
        id: String,
        up: &weir_config::Upstream,
        at: &str,
    ) -> Result<Upstream, FieldError> {
        let default_port = match up.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let static_nodes = match &up.nodes {
            None => Vec::new(),
            Some(Nodes::Map(m)) => m
                .iter()
                .filter_map(|(k, w)| {
                    let (host, port) = weir_config::parse_node_key(k).ok()?;
                    Some((host, port.unwrap_or(default_port), *w))
                })
                .collect(),
            Some(Nodes::List(l)) => l
                .iter()
                .map(|n| (n.host.clone(), n.port.unwrap_or(default_port), n.weight))
                .collect(),
        };
        let discovered = match (&up.discovery_type, &up.service_name) {
            (Some(_), Some(name)) => Some(self.registry.subscribe(name)),
            _ => None,
        };
        let tls = match (up.scheme, &up.tls) {
            (Scheme::Http, _) => None,
            (Scheme::Https, None) => Some(self.upstream_tls.clone()),
            (Scheme::Https, Some(settings)) => Some(
                crate::tls::upstream_client_config_for(settings)
                    .map_err(|e| FieldError::new(format!("{at}.tls"), e))?,
            ),
        };
        Ok(Upstream::build(
            UpstreamParts {
                id,
                config: up.clone(),
                static_nodes,
                discovered,
            },
            self.node_states.clone(),
            tls,
        ))
    }
}
