//! Compiling a validated configuration into a [`Snapshot`]: routes resolved
//! with their services and plugin configs (APISIX's merge), every plugin
//! built from the catalogue, consumers indexed, global rules gathered,
//! upstreams built. Pure: nothing starts here (health checkers start when
//! the snapshot goes live, [`Snapshot::start_health_checks`]), so a
//! configuration can be compiled to validate it or to dry-run a change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use weir_config::resolve::{resolve_routes, EffectiveRoute};
use weir_config::{Config, FieldError, FieldErrors, Scheme};
use weir_discovery::registry::Registry;
use weir_plugin::{BuildCtx, Consumer, ConsumerConf, Pipeline};

use crate::plugin_compile;
use crate::reuse::{plugin_inputs_same, reads_files, Built, BuiltRoute, Previous, Stages};
use crate::router::{RouteSpec, RouteTable};
use crate::snapshot::{CompiledRoute, ConsumerTable, RouteConditions, Snapshot};
use crate::tls::CertTable;
use crate::upstream::{NodeStates, Upstream, UpstreamParts};

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

    /// Compiles a validated configuration into a snapshot. Every error is
    /// reported, each naming its field (plugin settings, consumer keys used
    /// twice, unreadable certificate files...).
    pub fn compile(&self, config: Arc<Config>) -> Result<Snapshot, FieldErrors> {
        self.compile_from(config, None)
    }

    /// [`Compiler::compile`], reusing what `previous` (the live snapshot)
    /// built wherever its inputs are unchanged, so that one change costs
    /// about what the change touches (see [`Built`]). The snapshot is the
    /// same as a whole compile would give, except that reused parts are the
    /// previous ones (the same upstream objects with their balancer state
    /// and health checker, the same plugin instances).
    pub fn compile_from(
        &self,
        config: Arc<Config>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, FieldErrors> {
        let mut clock = Stages::start();
        let prev = previous.map(|p| Previous {
            built: &p.built,
            upstreams: &p.upstreams,
            plugin_inputs_same: plugin_inputs_same(&p.config, &config),
        });
        let mut errors = Vec::new();
        let mut upstreams: HashMap<String, Arc<Upstream>> = HashMap::new();
        for (i, up) in config.upstreams.iter().enumerate() {
            let Some(id) = &up.id else { continue };
            let at = || format!("upstreams[{i}]");
            match self.upstream_reused(id.0.clone(), up, at, prev.as_ref()) {
                Ok(built) => {
                    upstreams.insert(id.0.clone(), built);
                }
                Err(e) => errors.push(e),
            }
        }
        clock.lap("upstreams");

        let consumers = consumer_confs(&config);
        let metadata = |name: &str| config.plugin_metadata.get(name);
        let ctx = BuildCtx::new(consumers.all.clone(), consumers.auth, &metadata);
        check_consumers(&config, &ctx, &mut errors);
        let consumer_table = consumer_plugins(&config, &ctx, &mut errors);
        let global = global_rules(&config, &ctx, &mut errors);
        check_shared_plugins(&config, &ctx, &mut errors);
        clock.lap("consumers, global rules, shared plugins");
        let routes = match resolve_routes(&config) {
            Ok(r) => r,
            Err(mut e) => {
                errors.append(&mut e.0);
                Vec::new()
            }
        };
        clock.lap("resolve routes");
        let mut specs = Vec::with_capacity(routes.len());
        let mut built = Built::default();
        let mut reused = 0usize;
        for route in routes {
            if route.status == 0 {
                continue;
            }
            let upstream = self.route_upstream(&route, &mut upstreams, prev.as_ref(), &mut errors);
            // Reported after the route's plugins' errors, as always.
            let mut later = Vec::new();
            let plugin_upstreams =
                self.plugin_upstreams(&route, &mut upstreams, prev.as_ref(), &mut later);
            let https_upstream = upstream
                .iter()
                .chain(plugin_upstreams.chosen.iter())
                .any(|u| u.scheme == Scheme::Https);
            let svc_name = service_name(&config, &route);
            let same = prev.as_ref().and_then(|p| {
                p.route(
                    &route,
                    svc_name,
                    &upstream,
                    &plugin_upstreams,
                    https_upstream,
                )
            });
            let value = match same {
                Some(old) => {
                    reused += 1;
                    old
                }
                None => {
                    let plugins = route_plugins(&route, &ctx, &mut errors);
                    let conditions =
                        (route.vars.is_some() || route.remote_addrs.is_some()).then(|| {
                            Box::new(RouteConditions {
                                vars: route.vars.clone(),
                                remote: route.remote_addrs.clone(),
                            })
                        });
                    let id: Arc<str> = Arc::from(route.id.as_str());
                    Arc::new(CompiledRoute {
                        stats: crate::metrics::for_route(&id),
                        id,
                        facts: route_facts(svc_name, &route),
                        upstream,
                        plugins,
                        enable_websocket: route.enable_websocket,
                        conditions,
                        plugin_upstreams: plugin_upstreams.inline,
                        https_upstream,
                    })
                }
            };
            errors.append(&mut later);
            let methods = route
                .methods
                .iter()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect();
            specs.push(RouteSpec {
                id: route.id.clone(),
                uris: route.uris.clone(),
                hosts: route.hosts.clone(),
                methods,
                priority: route.priority,
                value: value.clone(),
            });
            built.routes.insert(
                route.id.clone(),
                BuiltRoute {
                    service_name: svc_name.map(str::to_owned),
                    effective: route,
                    compiled: value,
                },
            );
        }
        clock.lap("routes");
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
        let router = RouteTable::build(specs);
        clock.lap("certificates, router");
        tracing::debug!(
            routes = built.routes.len(),
            reused,
            stages = %clock,
            "configuration compiled"
        );
        Ok(Snapshot {
            config,
            router,
            upstreams,
            certs: Arc::new(certs),
            global: global.map(Arc::new),
            consumers: consumer_table,
            built,
        })
    }

    /// The upstream at `key` built from `conf`: the previous snapshot's when
    /// it was built from the same configuration (and reads no file: a TLS
    /// setting naming files is read again each time), else a new one.
    fn upstream_reused(
        &self,
        key: String,
        conf: &weir_config::Upstream,
        at: impl FnOnce() -> String,
        prev: Option<&Previous<'_>>,
    ) -> Result<Arc<Upstream>, FieldError> {
        if let Some(old) = prev.and_then(|p| p.upstreams.get(&key)) {
            if old.built_from() == conf && !reads_files(conf) {
                return Ok(old.clone());
            }
        }
        self.upstream(key, conf, &at()).map(Arc::new)
    }

    /// The compiled upstream of a route: a shared one by key, or one of its
    /// own when the route sets `timeout` (its timeouts replace the
    /// upstream's; node state, pools included, is still shared).
    fn route_upstream(
        &self,
        route: &EffectiveRoute,
        upstreams: &mut HashMap<String, Arc<Upstream>>,
        prev: Option<&Previous<'_>>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Arc<Upstream>> {
        let eff = route.upstream.as_ref()?;
        let timed;
        let (key, config) = match route.timeout {
            Some(t) => {
                let mut up = eff.upstream.clone();
                up.timeout = Some(t);
                timed = up;
                (format!("route:{}", route.id), &timed)
            }
            None => (eff.key.clone(), &eff.upstream),
        };
        if let Some(up) = upstreams.get(&key) {
            return Some(up.clone());
        }
        let at = || match &eff.source {
            weir_config::resolve::UpstreamSource::Service(id) => format!("services[{id}].upstream"),
            _ => format!("routes[{}].upstream", route.index),
        };
        match self.upstream_reused(key.clone(), config, at, prev) {
            Ok(built) => {
                upstreams.insert(key, built.clone());
                Some(built)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        }
    }

    /// The upstreams a route's plugins name (`traffic-split`): ids are
    /// checked against `upstreams`, inline ones built (and added to
    /// `upstreams`, so their health checks run) under
    /// `route:<id>:<the plugin's name for it>`.
    fn plugin_upstreams(
        &self,
        route: &EffectiveRoute,
        upstreams: &mut HashMap<String, Arc<Upstream>>,
        prev: Option<&Previous<'_>>,
        errors: &mut Vec<FieldError>,
    ) -> PluginUpstreams {
        let mut out = PluginUpstreams::default();
        for (plugin, conf) in &route.plugins {
            for u in weir_plugins::plugin_upstreams(plugin, conf) {
                let at = format!("routes[{}].plugins.{plugin}.{}", route.index, u.at);
                match u.source {
                    weir_plugin::PluginUpstreamSource::Id(id) => match upstreams.get(&id) {
                        Some(up) => out.chosen.push(up.clone()),
                        None => errors.push(FieldError::new(
                            format!("{at}.upstream_id"),
                            format!("upstream {id:?} does not exist (no item of `upstreams` has this id)"),
                        )),
                    },
                    weir_plugin::PluginUpstreamSource::Inline(v) => {
                        let at = format!("{at}.upstream");
                        let parsed: Result<weir_config::Upstream, _> =
                            serde_path_to_error::deserialize(&v);
                        let config = match parsed {
                            Ok(c) => c,
                            Err(e) => {
                                let path = e.path().to_string();
                                let field = if path == "." { at } else { format!("{at}.{path}") };
                                errors.push(FieldError::new(field, e.into_inner().to_string()));
                                continue;
                            }
                        };
                        let key = format!("route:{}:{}", route.id, u.name);
                        match self.upstream_reused(key.clone(), &config, || at.clone(), prev) {
                            Ok(built) => {
                                upstreams.insert(key, built.clone());
                                out.chosen.push(built.clone());
                                out.inline.insert(Arc::from(u.name.as_str()), built);
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
            }
        }
        out
    }

    fn upstream(
        &self,
        id: String,
        up: &weir_config::Upstream,
        at: &str,
    ) -> Result<Upstream, FieldError> {
        let static_nodes = up
            .static_nodes()
            .into_iter()
            .map(|n| (n.host, n.port, n.weight, n.priority))
            .collect();
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
        let probe_tls = match up.checks.as_ref().and_then(|c| c.active.as_ref()) {
            Some(active) if active.check_type == weir_config::CheckType::Https => {
                let settings = weir_config::UpstreamTls {
                    verify: active.https_verify_certificate,
                    ca_file: up.tls.as_ref().and_then(|t| t.ca_file.clone()),
                    client_cert: None,
                    client_key: None,
                };
                Some(
                    crate::tls::upstream_client_config_for(&settings)
                        .map_err(|e| FieldError::new(format!("{at}.checks.active"), e))?,
                )
            }
            _ => None,
        };
        Ok(Upstream::build(
            UpstreamParts {
                id,
                config: up.clone(),
                static_nodes,
                discovered,
                probe_tls,
            },
            self.node_states.clone(),
            tls,
        ))
    }
}

/// The upstreams a route's plugins may send its requests to.
#[derive(Default)]
pub(crate) struct PluginUpstreams {
    /// Every one of them.
    pub(crate) chosen: Vec<Arc<Upstream>>,
    /// The inline ones, by the plugin's name for them.
    pub(crate) inline: HashMap<Arc<str>, Arc<Upstream>>,
}

/// The name of the route's service, if it has one.
fn service_name<'c>(config: &'c Config, route: &EffectiveRoute) -> Option<&'c str> {
    route.service_id.as_deref().and_then(|sid| {
        config
            .services
            .iter()
            .find(|s| s.id.as_str() == sid)
            .and_then(|s| s.name.as_deref())
    })
}

/// A route's name, service, path pattern and host, as the log phase
/// reports them (a pattern or host only when the route has exactly one).
fn route_facts(service_name: Option<&str>, route: &EffectiveRoute) -> weir_plugin::RouteFacts {
    let only = |v: &[String]| match v {
        [one] => Some(Box::from(one.as_str())),
        _ => None,
    };
    weir_plugin::RouteFacts {
        name: route.name.as_deref().map(Box::from),
        service_id: route.service_id.as_deref().map(Box::from),
        service_name: service_name.map(Box::from),
        uri: only(&route.uris),
        host: only(&route.hosts),
    }
}

/// A route's merged plugins. Errors are reported here only for the route's
/// own plugins; those from its service or plugin config are reported once,
/// at their own path, by [`check_shared_plugins`].
fn route_plugins(
    route: &EffectiveRoute,
    ctx: &BuildCtx<'_>,
    errors: &mut Vec<FieldError>,
) -> Pipeline {
    let at = format!("routes[{}].plugins", route.index);
    let mut entries = Vec::with_capacity(route.plugins.len());
    for (name, conf) in &route.plugins {
        let own = matches!(
            route.plugin_origins.get(name),
            None | Some(weir_config::resolve::PluginOrigin::Route)
        );
        let one = BTreeMap::from([(name.clone(), conf.clone())]);
        let mut scratch = Vec::new();
        let sink = if own { &mut *errors } else { &mut scratch };
        entries.extend(plugin_compile::compile_entries(&one, &at, ctx, sink));
    }
    Pipeline::new(entries)
}

/// Builds the plugins of every service, plugin config and consumer group
/// once, used or not, so their errors name their own paths.
fn check_shared_plugins(config: &Config, ctx: &BuildCtx<'_>, errors: &mut Vec<FieldError>) {
    let sites = config
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("services[{i}].plugins"), &s.plugins))
        .chain(
            config
                .plugin_configs
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("plugin_configs[{i}].plugins"), &p.plugins)),
        )
        .chain(
            config
                .consumer_groups
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("consumer_groups[{i}].plugins"), &g.plugins)),
        );
    for (at, plugins) in sites {
        plugin_compile::compile_entries(plugins, &at, ctx, errors);
    }
}

/// Every consumer, and every authentication plugin configuration held by a
/// consumer or a credential.
struct Consumers<'a> {
    all: Vec<Arc<Consumer>>,
    auth: Vec<ConsumerConf<'a>>,
}

fn consumer_confs(config: &Config) -> Consumers<'_> {
    let mut all = Vec::with_capacity(config.consumers.len());
    let mut auth = Vec::new();
    let mut by_name: HashMap<&str, Arc<Consumer>> = HashMap::new();
    for (i, c) in config.consumers.iter().enumerate() {
        let consumer = Arc::new(Consumer {
            username: Arc::from(c.username.as_str()),
            custom_id: c.labels.get("custom_id").map(|v| Arc::from(v.as_str())),
            group_id: c.group_id.as_ref().map(|g| Arc::from(g.0.as_str())),
            credential_id: None,
            upstream_values: std::sync::OnceLock::new(),
        });
        by_name.insert(c.username.as_str(), consumer.clone());
        all.push(consumer.clone());
        for (name, conf) in &c.plugins {
            if is_auth(name) {
                auth.push(ConsumerConf {
                    consumer: consumer.clone(),
                    plugin: name,
                    conf,
                    path: format!("consumers[{i}].plugins.{name}"),
                });
            }
        }
    }
    for (i, cred) in config.credentials.iter().enumerate() {
        let Some(owner) = by_name.get(cred.consumer.as_str()) else {
            continue;
        };
        let consumer = Arc::new(Consumer {
            credential_id: Some(Arc::from(cred.id.0.as_str())),
            upstream_values: std::sync::OnceLock::new(),
            ..(**owner).clone()
        });
        for (name, conf) in &cred.plugins {
            auth.push(ConsumerConf {
                consumer: consumer.clone(),
                plugin: name,
                conf,
                path: format!("{}.plugins.{name}", cred.path(i)),
            });
        }
    }
    Consumers { all, auth }
}

fn is_auth(name: &str) -> bool {
    weir_plugins::find(name).is_some_and(|s| s.is_auth())
}

/// Checks every consumer-side authentication configuration, and that no key
/// (username, key id) is used twice: the authentication plugins' indexes
/// are built once here, so a duplicate is reported even where no route uses
/// the plugin yet.
fn check_consumers(config: &Config, ctx: &BuildCtx<'_>, errors: &mut Vec<FieldError>) {
    let mut used = Vec::new();
    let sites = config
        .consumers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("consumers[{i}].plugins"), &c.plugins))
        .chain(
            config
                .credentials
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{}.plugins", c.path(i)), &c.plugins)),
        );
    for (at, plugins) in sites {
        for (name, conf) in plugins {
            let path = format!("{at}.{name}");
            let Some(spec) = weir_plugins::find(name) else {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "unknown plugin, available: {}",
                        weir_plugins::names().join(", ")
                    ),
                ));
                continue;
            };
            let Some(check) = spec.consumer_check else {
                // A consumer's own (non-authentication) plugin: built with
                // the consumer table.
                continue;
            };
            if let Err(e) = check(conf) {
                errors.push(plugin_error(&path, e));
            } else if !used.contains(&spec.name) {
                used.push(spec.name);
            }
        }
    }
    for name in used {
        let Some(spec) = weir_plugins::find(name) else {
            continue;
        };
        if let Err(e) = (spec.build)(&Value::Object(Default::default()), ctx) {
            if e.absolute {
                let err = FieldError::new(e.path, e.message);
                if !errors.contains(&err) {
                    errors.push(err);
                }
            }
        }
    }
}

/// The consumers' own plugins, merged with their group's (the consumer's
/// configuration of a plugin wins), authentication plugins left out.
fn consumer_plugins(
    config: &Config,
    ctx: &BuildCtx<'_>,
    errors: &mut Vec<FieldError>,
) -> ConsumerTable {
    let mut table = ConsumerTable::default();
    for (i, c) in config.consumers.iter().enumerate() {
        let group = c.group_id.as_ref().and_then(|g| {
            config
                .consumer_groups
                .iter()
                .position(|cg| cg.id == *g)
                .map(|j| (j, &config.consumer_groups[j]))
        });
        let mut merged: BTreeMap<String, (String, Value)> = BTreeMap::new();
        if let Some((j, g)) = group {
            for (name, conf) in &g.plugins {
                merged.insert(
                    name.clone(),
                    (format!("consumer_groups[{j}].plugins"), conf.clone()),
                );
            }
        }
        for (name, conf) in &c.plugins {
            merged.insert(
                name.clone(),
                (format!("consumers[{i}].plugins"), conf.clone()),
            );
        }
        merged.retain(|name, _| !is_auth(name));
        if merged.is_empty() {
            continue;
        }
        let mut entries = Vec::new();
        for (name, (at, conf)) in merged {
            let one = BTreeMap::from([(name, conf)]);
            // A group's plugins were checked at their own path already.
            let mut scratch = Vec::new();
            let sink = if at.starts_with("consumer_groups") {
                &mut scratch
            } else {
                &mut *errors
            };
            entries.extend(plugin_compile::compile_entries(&one, &at, ctx, sink));
        }
        if !entries.is_empty() {
            table
                .by_name
                .insert(Arc::from(c.username.as_str()), Pipeline::new(entries));
        }
    }
    table
}

/// Every global rule's plugins in one pipeline (not merged: a plugin in two
/// rules runs twice, as APISIX).
fn global_rules(
    config: &Config,
    ctx: &BuildCtx<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<Pipeline> {
    let mut entries = Vec::new();
    for (i, rule) in config.global_rules.iter().enumerate() {
        entries.extend(plugin_compile::compile_entries(
            &rule.plugins,
            &format!("global_rules[{i}].plugins"),
            ctx,
            errors,
        ));
    }
    (!entries.is_empty()).then(|| Pipeline::new(entries))
}

fn plugin_error(at: &str, e: weir_plugin::ConfigError) -> FieldError {
    if e.absolute {
        FieldError::new(e.path, e.message)
    } else if e.path.is_empty() {
        FieldError::new(at, e.message)
    } else {
        FieldError::new(format!("{at}.{}", e.path), e.message)
    }
}
