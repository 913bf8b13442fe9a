//! The configuration served: the file's resources with the Admin API's
//! merged in (the ConfigHub's "merge by owner"). The file's resources are
//! read-only to the Admin API and an id may be owned by only one of them.
//!
//! An Admin API resource whose reference names nothing (its upstream was
//! deleted with `?force=true`, or the file dropped it) stays stored and
//! listed, but is left out of what is served until the reference exists
//! again; each one is logged.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use weir_config::{path, Config, FieldError, FieldErrors, Id};

use crate::kind::Kind;
use crate::state::{AdminState, Entry, Resource};

/// A resource of the configuration file, as the Admin API shows it.
#[derive(Clone)]
pub struct FileItem {
    /// Its kind.
    pub kind: Kind,
    /// Its path in the file (`routes[2]`).
    pub path: String,
    /// The value GET returns (as APISIX would store it).
    pub value: Value,
}

/// Every resource of the file by key.
pub fn file_items(file: &Config) -> BTreeMap<String, FileItem> {
    let mut out = BTreeMap::new();
    let mut add = |kind: Kind, owner: Option<&str>, id: &str, path: String, value: Value| {
        out.insert(kind.key(owner, id), FileItem { kind, path, value });
    };
    for (i, r) in file.routes.iter().enumerate() {
        let id =
            r.id.as_ref()
                .map_or_else(|| i.to_string(), |id| id.0.clone());
        let mut value = to_value(r);
        set(&mut value, "id", Value::String(id.clone()));
        add(Kind::Route, None, &id, path::index("routes", i), value);
    }
    for (i, u) in file.upstreams.iter().enumerate() {
        if let Some(id) = &u.id {
            add(
                Kind::Upstream,
                None,
                id.as_str(),
                path::index("upstreams", i),
                to_value(u),
            );
        }
    }
    for (i, s) in file.services.iter().enumerate() {
        add(
            Kind::Service,
            None,
            s.id.as_str(),
            path::index("services", i),
            to_value(s),
        );
    }
    for (i, c) in file.consumers.iter().enumerate() {
        add(
            Kind::Consumer,
            None,
            &c.username,
            path::index("consumers", i),
            to_value(c),
        );
    }
    for (i, c) in file.credentials.iter().enumerate() {
        let mut value = to_value(c);
        if let Value::Object(m) = &mut value {
            m.remove("consumer");
        }
        add(
            Kind::Credential,
            Some(&c.consumer),
            c.id.as_str(),
            c.path(i),
            value,
        );
    }
    for (i, g) in file.consumer_groups.iter().enumerate() {
        add(
            Kind::ConsumerGroup,
            None,
            g.id.as_str(),
            path::index("consumer_groups", i),
            to_value(g),
        );
    }
    for (i, p) in file.plugin_configs.iter().enumerate() {
        add(
            Kind::PluginConfig,
            None,
            p.id.as_str(),
            path::index("plugin_configs", i),
            to_value(p),
        );
    }
    for (i, g) in file.global_rules.iter().enumerate() {
        add(
            Kind::GlobalRule,
            None,
            g.id.as_str(),
            path::index("global_rules", i),
            to_value(g),
        );
    }
    for (i, s) in file.ssls.iter().enumerate() {
        if let Some(id) = &s.id {
            add(
                Kind::Ssl,
                None,
                id.as_str(),
                path::index("ssls", i),
                to_value(s),
            );
        }
    }
    for (name, conf) in &file.plugin_metadata {
        let mut value = conf.clone();
        set(&mut value, "id", Value::String(name.clone()));
        add(
            Kind::PluginMetadata,
            None,
            name,
            path::key("plugin_metadata", name),
            value,
        );
    }
    out
}

/// A model value as JSON (the model's types always serialize; null
/// otherwise).
fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn set(value: &mut Value, field: &str, v: Value) {
    if let Value::Object(m) = value {
        m.insert(field.to_owned(), v);
    }
}

/// Where an Admin API resource sits in the merged configuration.
#[derive(Debug, Clone)]
pub struct Place {
    /// `routes[12]`, `plugin_metadata.key-auth`.
    pub path: String,
    /// `/apisix/routes/5`.
    pub key: String,
}

/// Admin API resources not served, each with why: (key, reason).
pub type LeftOut = Vec<(String, String)>;

/// The merged configuration.
pub struct Merged {
    /// What the engine gets.
    pub config: Config,
    /// Where each Admin API resource landed in it.
    pub places: Vec<Place>,
    /// Admin API resources left out, with the reference that names nothing.
    pub left_out: LeftOut,
}

/// Merges `state` into `file`. An id owned by both is an error naming the
/// file's resource. The resource at `keep` (one being written) is never
/// left out, so that validation reports what it names that does not exist
/// along with its other errors.
pub fn merge(
    file: &Config,
    items: &BTreeMap<String, FileItem>,
    state: &AdminState,
    keep: Option<&str>,
) -> Result<Merged, FieldErrors> {
    let conflicts: Vec<FieldError> = state
        .entries
        .keys()
        .filter_map(|key| items.get(key).map(|item| (key, item)))
        .map(|(key, item)| {
            FieldError::new(
                &item.path,
                format!(
                    "{key} is also written through the Admin API (deployment.admin.state_file); an id belongs to the file or to the Admin API, not both: remove one of them"
                ),
            )
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(FieldErrors(conflicts));
    }
    let left_out = dangling(items, state, keep);
    let out: BTreeSet<&str> = left_out.iter().map(|(k, _)| k.as_str()).collect();
    let mut config = file.clone();
    let mut places = Vec::new();
    for (key, e) in &state.entries {
        if out.contains(key.as_str()) {
            continue;
        }
        let path = push(&mut config, e);
        places.push(Place {
            path,
            key: key.clone(),
        });
    }
    weir_config::normalize(&mut config);
    Ok(Merged {
        config,
        places,
        left_out,
    })
}

/// Adds one resource to `config`; returns its path there.
fn push(config: &mut Config, e: &Entry) -> String {
    fn at<T>(list: &mut Vec<T>, section: &str, v: T) -> String {
        list.push(v);
        path::index(section, list.len() - 1)
    }
    match &*e.resource {
        Resource::Route(r) => at(&mut config.routes, "routes", r.clone()),
        Resource::Service(s) => at(&mut config.services, "services", s.clone()),
        Resource::Upstream(u) => at(&mut config.upstreams, "upstreams", u.clone()),
        Resource::Consumer(c) => at(&mut config.consumers, "consumers", c.clone()),
        Resource::Credential(c) => at(&mut config.credentials, "credentials", c.clone()),
        Resource::ConsumerGroup(g) => at(&mut config.consumer_groups, "consumer_groups", g.clone()),
        Resource::PluginConfig(p) => at(&mut config.plugin_configs, "plugin_configs", p.clone()),
        Resource::GlobalRule(g) => at(&mut config.global_rules, "global_rules", g.clone()),
        Resource::Ssl(s) => at(&mut config.ssls, "ssls", s.clone()),
        Resource::PluginMetadata(v) => {
            config.plugin_metadata.insert(e.id.clone(), v.clone());
            path::key("plugin_metadata", &e.id)
        }
    }
}

/// The references of an Admin API resource: (field, kind, id).
pub fn references(resource: &Resource, owner: Option<&str>) -> Vec<(&'static str, Kind, String)> {
    let id = |field: &'static str, kind: Kind, v: &Option<Id>| {
        v.as_ref().map(|i| (field, kind, i.0.clone()))
    };
    match resource {
        Resource::Route(r) => [
            id("upstream_id", Kind::Upstream, &r.upstream_id),
            id("service_id", Kind::Service, &r.service_id),
            id("plugin_config_id", Kind::PluginConfig, &r.plugin_config_id),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Resource::Service(s) => id("upstream_id", Kind::Upstream, &s.upstream_id)
            .into_iter()
            .collect(),
        Resource::Consumer(c) => id("group_id", Kind::ConsumerGroup, &c.group_id)
            .into_iter()
            .collect(),
        Resource::Credential(_) => owner
            .map(|u| ("consumer", Kind::Consumer, u.to_owned()))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Admin API resources whose references name nothing, to a fixed point (a
/// service left out takes its routes with it).
fn dangling(
    items: &BTreeMap<String, FileItem>,
    state: &AdminState,
    keep: Option<&str>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut changed = false;
        for (key, e) in &state.entries {
            if gone.contains(key) || keep == Some(key.as_str()) {
                continue;
            }
            let missing = references(&e.resource, e.owner.as_deref())
                .into_iter()
                .find(|(_, kind, id)| {
                    let k = kind.key(None, id);
                    !items.contains_key(&k)
                        && (!state.entries.contains_key(&k) || gone.contains(&k))
                });
            if let Some((field, kind, id)) = missing {
                gone.insert(key.clone());
                out.push((
                    key.clone(),
                    format!("{field}: no {} with id {id:?}", kind.noun()),
                ));
                changed = true;
            }
        }
        if !changed {
            return out;
        }
    }
}

/// Renders engine or validation errors for the Admin API: an error in the
/// resource being written names its field below the resource (`methods[0]:
/// ...`), one in another Admin API resource names its key, one in the file
/// its path in the file.
pub fn describe(errors: &FieldErrors, places: &[Place], written: &str) -> String {
    let mut parts = Vec::new();
    for e in &errors.0 {
        let e = &FieldError::new(e.path.clone(), rename_places(&e.message, places));
        let place = places.iter().find(|p| {
            e.path == p.path
                || e.path
                    .strip_prefix(&p.path)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        let text = match place {
            Some(p) => {
                let rel = e.path[p.path.len()..].trim_start_matches('.');
                let inner = if rel.is_empty() {
                    e.message.clone()
                } else {
                    format!("{rel}: {}", e.message)
                };
                if p.key == written {
                    inner
                } else {
                    format!("{}: {inner}", p.key)
                }
            }
            None if e.path.is_empty() => e.message.clone(),
            None => format!("configuration file: {e}"),
        };
        parts.push(text);
    }
    parts.join("; ")
}

/// Messages name other elements by their place in the merged configuration
/// (`the same key is already used by consumers[3].plugins...`): an Admin
/// API resource is named by its key instead, a file element keeps its path.
fn rename_places(message: &str, places: &[Place]) -> String {
    static PLACE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = PLACE.get_or_init(|| {
        regex::Regex::new(
            r"\b(?:routes|services|upstreams|consumers|credentials|consumer_groups|plugin_configs|global_rules|ssls)\[\d+\]",
        )
        .ok()
    });
    let Some(re) = re else {
        return message.to_owned();
    };
    let mut out = String::with_capacity(message.len());
    let mut last = 0;
    for m in re.find_iter(message) {
        out.push_str(&message[last..m.start()]);
        last = m.end();
        match places.iter().find(|p| p.path == m.as_str()) {
            Some(p) => {
                // `consumers[3].plugins.x` -> `/apisix/consumers/ann (plugins.x)`
                let rest = &message[m.end()..];
                let field_len = rest
                    .strip_prefix('.')
                    .map(|r| {
                        1 + r
                            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')'))
                            .unwrap_or(r.len())
                    })
                    .unwrap_or(0);
                out.push_str(&p.key);
                if field_len > 1 {
                    out.push_str(&format!(" ({})", &rest[1..field_len]));
                }
                last += field_len;
            }
            None => {
                out.push_str("the file's ");
                out.push_str(m.as_str());
            }
        }
    }
    out.push_str(&message[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_relative_to_the_written_resource() {
        let places = vec![
            Place {
                path: "routes[1]".into(),
                key: "/apisix/routes/a".into(),
            },
            Place {
                path: "routes[12]".into(),
                key: "/apisix/routes/b".into(),
            },
        ];
        let errors = FieldErrors(vec![
            FieldError::new("routes[12].methods[0]", "unknown method"),
            FieldError::new("routes[12].id", "the same as routes[1].id and routes[0].id"),
            FieldError::new("routes[1].uri", "bad"),
            FieldError::new("routes[0].uri", "bad too"),
            FieldError::new("routes[12]", "whole"),
        ]);
        assert_eq!(
            describe(&errors, &places, "/apisix/routes/b"),
            "methods[0]: unknown method; id: the same as /apisix/routes/a (id) and the file's routes[0].id; /apisix/routes/a: uri: bad; configuration file: routes[0].uri: bad too; whole"
        );
    }
}
