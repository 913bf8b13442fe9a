//! Which resources still use another (APISIX's `delete_checker`s), over the
//! file's resources and the Admin API's alike.

use serde_json::Value;
use weir_config::{Id, Plugins};

use crate::hub::View;
use crate::kind::Kind;
use crate::state::Resource;

/// What a resource refers to.
struct Refs<'a> {
    upstream: Option<&'a Id>,
    service: Option<&'a Id>,
    plugin_config: Option<&'a Id>,
    group: Option<&'a Id>,
    plugins: &'a Plugins,
}

impl<'a> Refs<'a> {
    fn plugins(plugins: &'a Plugins) -> Refs<'a> {
        Refs {
            upstream: None,
            service: None,
            plugin_config: None,
            group: None,
            plugins,
        }
    }

    fn route(r: &'a weir_config::Route) -> Refs<'a> {
        Refs {
            upstream: r.upstream_id.as_ref(),
            service: r.service_id.as_ref(),
            plugin_config: r.plugin_config_id.as_ref(),
            ..Refs::plugins(&r.plugins)
        }
    }

    fn service(s: &'a weir_config::Service) -> Refs<'a> {
        Refs {
            upstream: s.upstream_id.as_ref(),
            ..Refs::plugins(&s.plugins)
        }
    }

    fn consumer(c: &'a weir_config::Consumer) -> Refs<'a> {
        Refs {
            group: c.group_id.as_ref(),
            ..Refs::plugins(&c.plugins)
        }
    }
}

/// Every resource of `kind` with its id: the file's, then the Admin API's.
fn all(view: &View, kind: Kind) -> Vec<(String, Refs<'_>)> {
    let f = &view.file;
    let mut out: Vec<(String, Refs<'_>)> = match kind {
        Kind::Route => f
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id =
                    r.id.as_ref()
                        .map_or_else(|| i.to_string(), |id| id.0.clone());
                (id, Refs::route(r))
            })
            .collect(),
        Kind::Service => f
            .services
            .iter()
            .map(|s| (s.id.0.clone(), Refs::service(s)))
            .collect(),
        Kind::Consumer => f
            .consumers
            .iter()
            .map(|c| (c.username.clone(), Refs::consumer(c)))
            .collect(),
        Kind::PluginConfig => f
            .plugin_configs
            .iter()
            .map(|p| (p.id.0.clone(), Refs::plugins(&p.plugins)))
            .collect(),
        Kind::ConsumerGroup => f
            .consumer_groups
            .iter()
            .map(|g| (g.id.0.clone(), Refs::plugins(&g.plugins)))
            .collect(),
        Kind::GlobalRule => f
            .global_rules
            .iter()
            .map(|g| (g.id.0.clone(), Refs::plugins(&g.plugins)))
            .collect(),
        _ => Vec::new(),
    };
    for e in view.state.of_kind(kind) {
        let refs = match &*e.resource {
            Resource::Route(r) => Refs::route(r),
            Resource::Service(s) => Refs::service(s),
            Resource::Consumer(c) => Refs::consumer(c),
            Resource::PluginConfig(p) => Refs::plugins(&p.plugins),
            Resource::ConsumerGroup(g) => Refs::plugins(&g.plugins),
            Resource::GlobalRule(g) => Refs::plugins(&g.plugins),
            _ => continue,
        };
        out.push((e.id.clone(), refs));
    }
    out
}

/// Whether `plugins` name upstream `id` (traffic-split's weighted
/// upstreams).
fn plugin_uses_upstream(plugins: &Plugins, id: &str) -> bool {
    let Some(rules) = plugins
        .get("traffic-split")
        .and_then(|c| c.get("rules"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    rules
        .iter()
        .filter_map(|r| r.get("weighted_upstreams").and_then(Value::as_array))
        .flatten()
        .filter_map(|u| u.get("upstream_id"))
        .any(|u| match u {
            Value::String(s) => s == id,
            Value::Number(n) => n.to_string() == id,
            _ => false,
        })
}

fn named(v: Option<&Id>, id: &str) -> bool {
    v.is_some_and(|v| v.as_str() == id)
}

/// APISIX's message when `kind` `id` is still used by something, `None`
/// when it may go.
pub fn still_used(view: &View, kind: Kind, id: &str) -> Option<String> {
    match kind {
        Kind::Upstream => {
            for (referrer, label, direct) in [
                (Kind::Route, "route", true),
                (Kind::Service, "service", true),
                (Kind::PluginConfig, "plugin_config", false),
                (Kind::Consumer, "consumer", false),
                (Kind::ConsumerGroup, "consumer_group", false),
                (Kind::GlobalRule, "global_rules", false),
            ] {
                for (rid, refs) in all(view, referrer) {
                    if direct && named(refs.upstream, id) {
                        return Some(format!(
                            "can not delete this upstream, {label} [{rid}] is still using it now"
                        ));
                    }
                }
                for (rid, refs) in all(view, referrer) {
                    if plugin_uses_upstream(refs.plugins, id) {
                        return Some(format!(
                            "can not delete this upstream, plugin in {label} [{rid}] is still using it now"
                        ));
                    }
                }
            }
            None
        }
        Kind::Service => all(view, Kind::Route)
            .into_iter()
            .find(|(_, r)| named(r.service, id))
            .map(|(rid, _)| {
                format!("can not delete this service directly, route [{rid}] is still using it now")
            }),
        Kind::PluginConfig => all(view, Kind::Route)
            .into_iter()
            .find(|(_, r)| named(r.plugin_config, id))
            .map(|(rid, _)| {
                format!("can not delete this plugin config, route [{rid}] is still using it now")
            }),
        Kind::ConsumerGroup => all(view, Kind::Consumer)
            .into_iter()
            .find(|(_, r)| named(r.group, id))
            .map(|(user, _)| {
                format!(
                    "can not delete this consumer group, consumer [{user}] is still using it now"
                )
            }),
        _ => None,
    }
}

/// APISIX refuses a global rule that configures a plugin another global
/// rule already has.
pub fn global_rule_conflict(view: &View, id: &str, value: &Value) -> Option<String> {
    let plugins = value.get("plugins").and_then(Value::as_object)?;
    for (other, theirs) in all(view, Kind::GlobalRule) {
        if other == id {
            continue;
        }
        if let Some(name) = plugins.keys().find(|n| theirs.plugins.contains_key(*n)) {
            return Some(format!(
                "plugin '{name}' already exists in global rule with id '{other}'"
            ));
        }
    }
    None
}
