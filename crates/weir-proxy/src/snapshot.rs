//! The live configuration: compiled from a validated [`Config`] off the hot
//! path and swapped in atomically. A request loads it once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use weir_config::Config;

use crate::access_log::AccessLog;
use crate::router::RouteTable;
use crate::tls::CertTable;
use crate::upstream::Upstream;
use weir_plugin::{ConsumerPlugins, Pipeline};

/// A compiled route.
pub struct CompiledRoute {
    /// Route id.
    pub id: Arc<str>,
    /// Its name, service, path pattern and host, for the log phase
    /// (`prometheus`'s labels).
    pub facts: weir_plugin::RouteFacts,
    /// Where to forward (None when a plugin answers every request).
    pub upstream: Option<Arc<Upstream>>,
    /// The route's plugins, one ordered list per phase (empty: the request
    /// path runs no plugin code at all).
    pub plugins: Pipeline,
    /// Let WebSocket upgrades through.
    pub enable_websocket: bool,
    /// Request counters (Prometheus), kept across reloads by route id.
    pub stats: Arc<crate::metrics::RouteStats>,
    /// `vars` and `remote_addrs`: further conditions a request must meet
    /// (None: host, path and method decide).
    pub conditions: Option<Box<RouteConditions>>,
    /// Inline upstreams of its plugins (`traffic-split`), by the plugin's
    /// name for them.
    pub plugin_upstreams: HashMap<Arc<str>, Arc<Upstream>>,
    /// Some upstream its requests may go to (its own, or one its plugins
    /// may choose) speaks TLS: the HTTP/1.1 fast path hands such routes to
    /// the general path.
    pub https_upstream: bool,
}

impl CompiledRoute {
    /// The upstream a request goes to: the one a plugin chose (`state`,
    /// with the `snapshot` the request was routed with), else the route's
    /// own.
    pub fn upstream_for<'a>(
        &'a self,
        chosen: Option<(&'a Snapshot, &'a weir_plugin::PluginState)>,
    ) -> Option<&'a Arc<Upstream>> {
        let picked = chosen.and_then(|(snapshot, state)| match state.upstream.as_ref()? {
            weir_plugin::UpstreamChoice::Id(id) => snapshot.upstreams.get(&**id),
            weir_plugin::UpstreamChoice::Inline(name) => self.plugin_upstreams.get(name),
        });
        picked.or(self.upstream.as_ref())
    }

    /// True when the request meets the route's `vars` and `remote_addrs`.
    pub fn admits(&self, view: &dyn weir_http::RequestView, conn: &weir_plugin::Conn) -> bool {
        self.conditions
            .as_ref()
            .is_none_or(|c| c.admits(view, conn))
    }
}

/// A route's conditions beyond host, path and method.
pub struct RouteConditions {
    /// APISIX `vars` expressions.
    pub vars: Option<weir_config::vars::Vars>,
    /// `remote_addr` / `remote_addrs`.
    pub remote: Option<weir_config::ip_match::IpMatcher>,
}

impl RouteConditions {
    fn admits(&self, view: &dyn weir_http::RequestView, conn: &weir_plugin::Conn) -> bool {
        if let Some(m) = &self.remote {
            if !m.contains(conn.remote.ip()) {
                return false;
            }
        }
        match &self.vars {
            Some(v) => v.eval(&RequestVars { view, conn }),
            None => true,
        }
    }
}

/// A request's APISIX variables, for `vars` expressions.
pub(crate) struct RequestVars<'a> {
    pub(crate) view: &'a dyn weir_http::RequestView,
    pub(crate) conn: &'a weir_plugin::Conn,
}

impl weir_config::vars::VarLookup for RequestVars<'_> {
    fn var(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let state = weir_plugin::PluginState::default();
        weir_plugin::vars::lookup(name, self.view, self.conn, &state, "")
            .map(|v| std::borrow::Cow::Owned(v.into_owned()))
    }

    fn var_values(&self, name: &str) -> Vec<std::borrow::Cow<'_, str>> {
        if let Some(field) = name.strip_prefix("http_") {
            let field = field.replace('_', "-");
            return self
                .view
                .header_values(&field)
                .map(|v| std::borrow::Cow::Owned(String::from_utf8_lossy(v).into_owned()))
                .collect();
        }
        if let Some(arg) = name.strip_prefix("arg_") {
            return self
                .view
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .filter(|(k, _)| *k == arg)
                .map(|(_, v)| {
                    std::borrow::Cow::Owned(weir_http::view::percent_decode(v).into_owned())
                })
                .collect();
        }
        self.var(name).into_iter().collect()
    }
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
    /// What was built per route, for the next compile to reuse.
    pub(crate) built: crate::reuse::Built,
}

impl Snapshot {
    /// Starts the active health checkers of this snapshot's upstreams. Kept
    /// out of [`Compiler::compile`], so compiling (to validate, or to dry-run
    /// a change) has no side effect; called when the snapshot goes live. A
    /// checker stops by itself once its upstream is dropped. An upstream
    /// reused from the previous snapshot keeps the checker it has: one
    /// checker per upstream object, however many snapshots hold it.
    pub fn start_health_checks(&self) {
        for up in self.upstreams.values() {
            if let Some(active) = up.health.as_ref().and_then(|h| h.active.clone()) {
                if up.claim_checker() {
                    crate::health::spawn_active_checker(Arc::downgrade(up), active);
                }
            }
        }
    }
}

/// Consumers' own (non-authentication) plugins, merged with their
/// group's, by username.
#[derive(Default)]
pub struct ConsumerTable {
    pub(crate) by_name: HashMap<Arc<str>, Pipeline>,
}

impl ConsumerPlugins for ConsumerTable {
    fn plugins_of(&self, username: &str) -> Option<&Pipeline> {
        if self.by_name.is_empty() {
            // No consumer has plugins of its own: no hashing per request.
            return None;
        }
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
pub use crate::compile::Compiler;
