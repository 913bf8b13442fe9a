//! Each route's *effective* configuration: what the route, its plugin config
//! and its service say together, merged as APISIX merges them. Pure: no I/O,
//! nothing started.
//!
//! # Precedence
//!
//! When the same plugin is configured in several places, the higher wins:
//!
//! **Consumer > Consumer Group > Route > Plugin Config > Service**
//!
//! - *Plugin Config*: its plugins only fill in those the route does not
//!   configure (APISIX's `plugin_config.merge`).
//! - *Service*: the route's plugins replace the service's plugin by plugin;
//!   the route's `upstream` / `upstream_id` replace the service's; the
//!   service's `hosts` apply when the route gives no `host` / `hosts`;
//!   `enable_websocket` is on when the route or the service turns it on
//!   (APISIX lets a route's explicit `false` win; weir's route field has no
//!   "unset", so it cannot).
//! - *Consumer Group*, *Consumer*: known only once a request is
//!   authenticated, so the engine merges them per request with
//!   [`merge_consumer_plugins`] on top of [`EffectiveRoute::plugins`].
//! - *Global rules* are never merged: they run in addition to the route's
//!   plugins (the same plugin can run twice), from `config.global_rules`.

use std::collections::BTreeMap;

use crate::error::{FieldError, FieldErrors};
use crate::ip_match::IpMatcher;
use crate::model::{Config, Labels, Plugins, Route, Timeout, Upstream};
use crate::path;
use crate::plugin_check::AUTH_PLUGINS;
use crate::vars::Vars;

/// Where a plugin of an effective route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginOrigin {
    /// `routes[].plugins`.
    Route,
    /// The route's plugin config.
    PluginConfig,
    /// The route's service.
    Service,
}

/// Where an effective upstream is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSource {
    /// An entry of `upstreams` (its id).
    Named(String),
    /// Inline in the route.
    Route,
    /// Inline in the service (its id).
    Service(String),
}

/// The upstream a route forwards to.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveUpstream {
    /// A key under which one compiled upstream can be shared: the id of an
    /// `upstreams` entry, `route:<route id>` or `service:<service id>` for
    /// inline ones (one per service, shared by its routes).
    pub key: String,
    /// Where it is defined.
    pub source: UpstreamSource,
    /// Its configuration.
    pub upstream: Upstream,
}

/// A route with its service and plugin config folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRoute {
    /// Position in `config.routes`.
    pub index: usize,
    /// The route's id, or its index when it has none.
    pub id: String,
    /// The route's name.
    pub name: Option<String>,
    /// `0` = disabled (kept, so that tools can list it).
    pub status: u8,
    /// The service the route belongs to.
    pub service_id: Option<String>,
    /// The plugin config it uses.
    pub plugin_config_id: Option<String>,
    /// Path patterns (`uri` or `uris`).
    pub uris: Vec<String>,
    /// Hosts: the route's, else its service's; empty = any host.
    pub hosts: Vec<String>,
    /// Methods; empty = all.
    pub methods: Vec<String>,
    /// Route priority.
    pub priority: i64,
    /// `vars` conditions.
    pub vars: Option<Vars>,
    /// `remote_addr` / `remote_addrs`.
    pub remote_addrs: Option<IpMatcher>,
    /// Plugins after merging plugin config and service (not consumers).
    pub plugins: Plugins,
    /// Where each plugin of `plugins` comes from.
    pub plugin_origins: BTreeMap<String, PluginOrigin>,
    /// Where requests go; `None` when neither route nor service has an
    /// upstream (plugins answer, or the engine answers 503).
    pub upstream: Option<EffectiveUpstream>,
    /// The route's timeouts, which replace the upstream's.
    pub timeout: Option<Timeout>,
    /// Let WebSocket upgrades through.
    pub enable_websocket: bool,
    /// The route's labels.
    pub labels: Labels,
}

impl EffectiveRoute {
    /// The timeouts that apply: the route's, else the upstream's.
    pub fn effective_timeout(&self) -> Option<Timeout> {
        self.timeout
            .or_else(|| self.upstream.as_ref().and_then(|u| u.upstream.timeout))
    }

    /// True when `other` describes the same route, wherever it sits in
    /// `config.routes` (`index` aside): what the engine builds from the
    /// two is the same. (Every field is named, so a field added later has
    /// to be considered here.)
    pub fn same_as(&self, other: &EffectiveRoute) -> bool {
        let EffectiveRoute {
            index: _,
            id,
            name,
            status,
            service_id,
            plugin_config_id,
            uris,
            hosts,
            methods,
            priority,
            vars,
            remote_addrs,
            plugins,
            plugin_origins,
            upstream,
            timeout,
            enable_websocket,
            labels,
        } = self;
        *id == other.id
            && *status == other.status
            && *priority == other.priority
            && *enable_websocket == other.enable_websocket
            && *name == other.name
            && *service_id == other.service_id
            && *plugin_config_id == other.plugin_config_id
            && *uris == other.uris
            && *hosts == other.hosts
            && *methods == other.methods
            && *timeout == other.timeout
            && *vars == other.vars
            && *remote_addrs == other.remote_addrs
            && *upstream == other.upstream
            && *plugin_origins == other.plugin_origins
            && *plugins == other.plugins
            && *labels == other.labels
    }
}

/// The effective configuration of every route, in `config.routes` order.
/// A reference that names nothing (impossible after validation) is an error
/// naming its field.
pub fn resolve_routes(config: &Config) -> Result<Vec<EffectiveRoute>, FieldErrors> {
    let mut errors = Vec::new();
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| resolve_route(config, i, r, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(routes)
    } else {
        Err(FieldErrors(errors))
    }
}

/// The effective configuration of `config.routes[index]`.
pub fn resolve_route(
    config: &Config,
    index: usize,
    route: &Route,
    errors: &mut Vec<FieldError>,
) -> EffectiveRoute {
    let at = path::index("routes", index);
    let id = route
        .id
        .as_ref()
        .map_or_else(|| index.to_string(), |id| id.0.clone());
    let service = route.service_id.as_ref().and_then(|sid| {
        let found = config
            .services
            .iter()
            .enumerate()
            .find(|(_, s)| s.id == *sid);
        if found.is_none() {
            errors.push(FieldError::new(
                path::field(&at, "service_id"),
                format!("no service with id {:?}", sid.0),
            ));
        }
        found
    });
    let plugin_config = route.plugin_config_id.as_ref().and_then(|pid| {
        let found = config.plugin_configs.iter().find(|c| c.id == *pid);
        if found.is_none() {
            errors.push(FieldError::new(
                path::field(&at, "plugin_config_id"),
                format!("no plugin_config with id {:?}", pid.0),
            ));
        }
        found
    });

    let mut plugins = Plugins::new();
    let mut origins = BTreeMap::new();
    let layers = [
        (service.map(|(_, s)| &s.plugins), PluginOrigin::Service),
        (
            plugin_config.map(|c| &c.plugins),
            PluginOrigin::PluginConfig,
        ),
        (Some(&route.plugins), PluginOrigin::Route),
    ];
    for (layer, origin) in layers {
        for (name, conf) in layer.into_iter().flatten() {
            // A plugin config only fills gaps left by the route; both
            // replace the service's.
            plugins.insert(name.clone(), conf.clone());
            origins.insert(name.clone(), origin);
        }
    }

    let named = |uid: &crate::model::Id, field: &str, errors: &mut Vec<FieldError>| {
        let found = config.upstreams.iter().find(|u| u.id.as_ref() == Some(uid));
        if found.is_none() {
            errors.push(FieldError::new(
                field,
                format!("no upstream with id {:?}", uid.0),
            ));
        }
        found.map(|u| EffectiveUpstream {
            key: uid.0.clone(),
            source: UpstreamSource::Named(uid.0.clone()),
            upstream: u.clone(),
        })
    };
    let upstream = if let Some(up) = &route.upstream {
        Some(EffectiveUpstream {
            key: format!("route:{id}"),
            source: UpstreamSource::Route,
            upstream: up.clone(),
        })
    } else if let Some(uid) = &route.upstream_id {
        named(uid, &path::field(&at, "upstream_id"), errors)
    } else if let Some((si, s)) = service {
        if let Some(up) = &s.upstream {
            Some(EffectiveUpstream {
                key: format!("service:{}", s.id.0),
                source: UpstreamSource::Service(s.id.0.clone()),
                upstream: up.clone(),
            })
        } else if let Some(uid) = &s.upstream_id {
            named(
                uid,
                &path::field(&path::index("services", si), "upstream_id"),
                errors,
            )
        } else {
            None
        }
    } else {
        None
    };

    let mut hosts = route.host_list();
    if hosts.is_empty() {
        hosts = service
            .and_then(|(_, s)| s.hosts.clone())
            .unwrap_or_default();
    }
    EffectiveRoute {
        index,
        id,
        name: route.name.clone(),
        status: route.status,
        service_id: route.service_id.as_ref().map(|s| s.0.clone()),
        plugin_config_id: route.plugin_config_id.as_ref().map(|s| s.0.clone()),
        uris: route.uri_list(),
        hosts,
        methods: route.methods.clone().unwrap_or_default(),
        priority: route.priority,
        vars: route.vars.clone(),
        remote_addrs: route.remote_matcher(),
        plugins,
        plugin_origins: origins,
        upstream,
        timeout: route.timeout,
        enable_websocket: route.enable_websocket
            || service.is_some_and(|(_, s)| s.enable_websocket == Some(true)),
        labels: route.labels.clone(),
    }
}

/// A route's plugins with the authenticated consumer's group and the
/// consumer's own plugins merged on top (Consumer > Consumer Group > Route),
/// as APISIX's `merge_consumer_route`. Auth plugins (`key-auth`...) of the
/// group and the consumer are left out: there they hold credentials, not
/// route behaviour, and authentication has already run.
///
/// Plugins whose name is not in `route_plugins` are new for this request;
/// APISIX runs their rewrite phase right after authentication.
pub fn merge_consumer_plugins(
    route_plugins: &Plugins,
    group_plugins: Option<&Plugins>,
    consumer_plugins: &Plugins,
) -> Plugins {
    let mut merged = route_plugins.clone();
    for layer in [group_plugins, Some(consumer_plugins)]
        .into_iter()
        .flatten()
    {
        for (name, conf) in layer {
            if !AUTH_PLUGINS.contains(&name.as_str()) {
                merged.insert(name.clone(), conf.clone());
            }
        }
    }
    merged
}
