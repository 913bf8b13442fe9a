//! Incremental compile: what a snapshot keeps of its compilation, and the
//! rules by which the next compile reuses it ([`crate::compile`]).
//!
//! A configuration change recompiles from the merged configuration as a
//! whole (so the result is always what a whole compile would give), but
//! takes from the live snapshot what it built from the same inputs:
//!
//! - an **upstream** (by its key: the `upstreams` id, `route:<id>`,
//!   `service:<id>`, `route:<id>:<plugin's name>`) whose configuration is
//!   equal, unless it names TLS files (read again on every compile);
//! - a **route** (plugins built, conditions, facts) whose effective
//!   configuration (route, service, plugin config and upstream folded in,
//!   [`EffectiveRoute::same_as`]) is equal, whose service name is the same,
//!   whose upstreams are the very objects reused above, and, when it has
//!   plugins, whose plugins' other inputs (consumers, credentials,
//!   consumer groups, plugin metadata: what a plugin may look at while it
//!   is built) are all unchanged. A route with a `limit-count` `group` is
//!   always built again: the group's check spans routes.
//!
//! Anything else (consumers' own plugins, global rules, shared plugin
//! checks, certificates, the router) is built again each time: its cost is
//! proportional to what it holds, not to the number of routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use weir_config::resolve::EffectiveRoute;
use weir_config::Config;

use crate::snapshot::CompiledRoute;
use crate::upstream::Upstream;

/// What a snapshot's compilation built per route, for the next compile.
#[derive(Default)]
pub struct Built {
    pub(crate) routes: HashMap<String, BuiltRoute>,
}

/// One enabled route: what it was built from, and what was built.
pub(crate) struct BuiltRoute {
    pub(crate) effective: EffectiveRoute,
    pub(crate) service_name: Option<String>,
    pub(crate) compiled: Arc<CompiledRoute>,
}

/// The live snapshot, as a compile reuses it.
pub(crate) struct Previous<'a> {
    pub(crate) built: &'a Built,
    pub(crate) upstreams: &'a HashMap<String, Arc<Upstream>>,
    /// Consumers, credentials, consumer groups and plugin metadata are
    /// unchanged: a plugin built before would be built the same.
    pub(crate) plugin_inputs_same: bool,
}

impl Previous<'_> {
    /// The previous compiled route, when building `route` again would give
    /// the same one.
    pub(crate) fn route(
        &self,
        route: &EffectiveRoute,
        service_name: Option<&str>,
        upstream: &Option<Arc<Upstream>>,
        plugin_upstreams: &crate::compile::PluginUpstreams,
        https_upstream: bool,
    ) -> Option<Arc<CompiledRoute>> {
        let old = self.built.routes.get(&route.id)?;
        let c = &old.compiled;
        let reusable = (self.plugin_inputs_same || route.plugins.is_empty())
            && !spans_routes(route)
            && old.service_name.as_deref() == service_name
            && c.https_upstream == https_upstream
            && same_arc(&c.upstream, upstream)
            && c.plugin_upstreams.len() == plugin_upstreams.inline.len()
            && c.plugin_upstreams.iter().all(|(name, up)| {
                plugin_upstreams
                    .inline
                    .get(name)
                    .is_some_and(|new| Arc::ptr_eq(up, new))
            })
            && route.same_as(&old.effective);
        reusable.then(|| c.clone())
    }
}

fn same_arc<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// A route whose plugins are checked against other routes' while built
/// (`limit-count`'s `group`: one configuration per group).
fn spans_routes(route: &EffectiveRoute) -> bool {
    route
        .plugins
        .get("limit-count")
        .is_some_and(|c| c.get("group").is_some())
}

/// What plugins may look at while they are built, besides their own
/// configuration, is the same in both configurations.
pub(crate) fn plugin_inputs_same(a: &Config, b: &Config) -> bool {
    a.consumers == b.consumers
        && a.credentials == b.credentials
        && a.consumer_groups == b.consumer_groups
        && a.plugin_metadata == b.plugin_metadata
}

/// An upstream whose compile reads files (TLS CA, client certificate).
pub(crate) fn reads_files(up: &weir_config::Upstream) -> bool {
    up.tls
        .as_ref()
        .is_some_and(|t| t.ca_file.is_some() || t.client_cert.is_some() || t.client_key.is_some())
}

/// The time each stage of a compile took (logged at debug level).
pub(crate) struct Stages {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Stages {
    pub(crate) fn start() -> Stages {
        Stages {
            last: Instant::now(),
            laps: Vec::with_capacity(6),
        }
    }

    pub(crate) fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.laps.push((stage, ms));
        self.last = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, ms)) in self.laps.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{stage} {ms:.3} ms")?;
        }
        Ok(())
    }
}
