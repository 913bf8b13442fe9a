//! Ids, duplicates and references between resources, and the checks of
//! services, consumers, credentials, consumer groups, plugin configs, global
//! rules and plugin metadata.

use std::collections::HashMap;

use super::upstream::validate_upstream;
use super::{check_host_pattern, check_labels, check_text, Kind, Pos, Positions, Undecoded};
use crate::error::Errors;
use crate::model::{Config, Id, Plugins};
use crate::path;
use crate::plugin_check::{PluginCheck, PluginSite, AUTH_PLUGINS};

/// Every id by kind, with the path of the element that holds it.
#[derive(Debug, Default)]
pub(super) struct Known {
    pub upstreams: HashMap<String, String>,
    pub services: HashMap<String, String>,
    pub plugin_configs: HashMap<String, String>,
    pub consumers: HashMap<String, String>,
    pub consumer_groups: HashMap<String, String>,
}

/// `^[a-zA-Z0-9-_.]{1,64}$` (integers were turned into strings already).
pub(super) fn check_id(id: &str, at: &str, errors: &mut Errors) {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        errors.add(
            at,
            format!("{id:?}: an id is 1 to 64 letters, digits, -, _ and . (or an integer >= 1)"),
        );
    }
}

/// Records `id` of a `kind` element at `at` (the id field's path); a second
/// element with the same id is an error naming both.
fn record(
    seen: &mut HashMap<String, String>,
    kind: &str,
    id: &str,
    at: String,
    errors: &mut Errors,
) {
    match seen.get(id) {
        Some(first) => {
            let msg = format!("duplicate {kind} {id:?} (also {first})");
            errors.add(at, msg);
        }
        None => {
            seen.insert(id.to_owned(), at);
        }
    }
}

fn undecoded(positions: &Positions, kind: Kind) -> impl Iterator<Item = &Undecoded> {
    positions
        .undecoded
        .iter()
        .filter(move |(k, _, _)| *k == kind)
}

/// Checks id syntax and uniqueness of every kind; returns the ids that
/// references may name.
pub(super) fn collect_ids(config: &Config, positions: &Positions, errors: &mut Errors) -> Known {
    let mut known = Known::default();
    let pos = |list: &[Pos], section: &str, i: usize| Positions::at(list, section, i);

    let mut routes = HashMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(id) = &r.id {
            let at = path::field(&pos(&positions.routes, "routes", i).path, "id");
            check_id(id.as_str(), &at, errors);
            record(&mut routes, "route id", id.as_str(), at, errors);
        }
    }
    for (i, u) in config.upstreams.iter().enumerate() {
        let p = pos(&positions.upstreams, "upstreams", i);
        let at = path::field(&p.path, "id");
        match &u.id {
            None if p.clean => errors.add(at, "an upstream in the upstreams list needs an id"),
            None => {}
            Some(id) => {
                check_id(id.as_str(), &at, errors);
                record(&mut known.upstreams, "upstream id", id.as_str(), at, errors);
            }
        }
    }
    let mut ssls = HashMap::new();
    for (i, s) in config.ssls.iter().enumerate() {
        if let Some(id) = &s.id {
            let at = path::field(&pos(&positions.ssls, "ssls", i).path, "id");
            check_id(id.as_str(), &at, errors);
            record(&mut ssls, "ssl id", id.as_str(), at, errors);
        }
    }
    let ids = |list: &mut HashMap<String, String>,
               kind: Kind,
               what: &str,
               items: &mut dyn Iterator<Item = (&Id, &Pos)>,
               errors: &mut Errors| {
        for (id, p) in items {
            let at = path::field(&p.path, "id");
            check_id(id.as_str(), &at, errors);
            record(list, what, id.as_str(), at, errors);
        }
        for (_, at, id) in undecoded(positions, kind) {
            record(list, what, id, path::field(at, "id"), errors);
        }
    };
    let services = positions.all(&positions.services, "services", config.services.len());
    ids(
        &mut known.services,
        Kind::Service,
        "service id",
        &mut config.services.iter().map(|s| &s.id).zip(services.iter()),
        errors,
    );
    let groups = positions.all(
        &positions.consumer_groups,
        "consumer_groups",
        config.consumer_groups.len(),
    );
    ids(
        &mut known.consumer_groups,
        Kind::ConsumerGroup,
        "consumer_group id",
        &mut config
            .consumer_groups
            .iter()
            .map(|g| &g.id)
            .zip(groups.iter()),
        errors,
    );
    let pcs = positions.all(
        &positions.plugin_configs,
        "plugin_configs",
        config.plugin_configs.len(),
    );
    ids(
        &mut known.plugin_configs,
        Kind::PluginConfig,
        "plugin_config id",
        &mut config.plugin_configs.iter().map(|c| &c.id).zip(pcs.iter()),
        errors,
    );
    let rules = positions.all(
        &positions.global_rules,
        "global_rules",
        config.global_rules.len(),
    );
    ids(
        &mut HashMap::new(),
        Kind::GlobalRule,
        "global_rule id",
        &mut config.global_rules.iter().map(|g| &g.id).zip(rules.iter()),
        errors,
    );
    for (_, at, id) in undecoded(positions, Kind::Upstream) {
        record(
            &mut known.upstreams,
            "upstream id",
            id,
            path::field(at, "id"),
            errors,
        );
    }

    for (i, c) in config.consumers.iter().enumerate() {
        let at = path::field(&pos(&positions.consumers, "consumers", i).path, "username");
        record(
            &mut known.consumers,
            "consumer username",
            &c.username,
            at,
            errors,
        );
    }
    for (_, at, id) in undecoded(positions, Kind::Consumer) {
        record(
            &mut known.consumers,
            "consumer username",
            id,
            path::field(at, "username"),
            errors,
        );
    }
    let mut credentials = HashMap::new();
    for (i, c) in config.credentials.iter().enumerate() {
        let at = path::field(&pos(&positions.credentials, "credentials", i).path, "id");
        check_id(c.id.as_str(), &at, errors);
        let key = format!("{}/credentials/{}", c.consumer, c.id);
        record(&mut credentials, "credential", &key, at, errors);
    }
    known
}

/// `field` of the element at `at` names an id of `kind` that must exist.
fn reference(
    id: Option<&Id>,
    known: &HashMap<String, String>,
    kind: &str,
    at: &str,
    field: &str,
    errors: &mut Errors,
) {
    if let Some(id) = id {
        if !known.contains_key(id.as_str()) {
            errors.add(
                path::field(at, field),
                format!("no {kind} with id {:?}", id.as_str()),
            );
        }
    }
}

/// Checks every reference between resources (also for elements that only
/// partly decoded: their other errors are already reported).
pub(super) fn check_references(
    config: &Config,
    positions: &Positions,
    known: &Known,
    errors: &mut Errors,
) {
    for (i, r) in config.routes.iter().enumerate() {
        let at = Positions::at(&positions.routes, "routes", i).path;
        reference(
            r.upstream_id.as_ref(),
            &known.upstreams,
            "upstream",
            &at,
            "upstream_id",
            errors,
        );
        reference(
            r.service_id.as_ref(),
            &known.services,
            "service",
            &at,
            "service_id",
            errors,
        );
        reference(
            r.plugin_config_id.as_ref(),
            &known.plugin_configs,
            "plugin_config",
            &at,
            "plugin_config_id",
            errors,
        );
    }
    for (i, s) in config.services.iter().enumerate() {
        let at = Positions::at(&positions.services, "services", i).path;
        reference(
            s.upstream_id.as_ref(),
            &known.upstreams,
            "upstream",
            &at,
            "upstream_id",
            errors,
        );
    }
    for (i, c) in config.consumers.iter().enumerate() {
        let at = Positions::at(&positions.consumers, "consumers", i).path;
        reference(
            c.group_id.as_ref(),
            &known.consumer_groups,
            "consumer_group",
            &at,
            "group_id",
            errors,
        );
    }
    for (i, c) in config.credentials.iter().enumerate() {
        let at = Positions::at(&positions.credentials, "credentials", i).path;
        let field = positions
            .credential_owner_field
            .get(i)
            .copied()
            .unwrap_or("consumer");
        if c.consumer.is_empty() {
            errors.add(
                path::field(&at, "consumer"),
                "required: the username of the consumer the credential belongs to (or write the id as <username>/credentials/<id>)",
            );
        } else if !known.consumers.contains_key(&c.consumer) {
            errors.add(
                path::field(&at, field),
                format!(
                    "the credential belongs to consumer {:?}, which does not exist",
                    c.consumer
                ),
            );
        }
    }
}

/// Hands each plugin entry of `plugins` (at `at.plugins`) to the checker.
pub(super) fn check_plugins(
    checker: &dyn PluginCheck,
    site: PluginSite,
    plugins: &Plugins,
    at: &str,
    errors: &mut Errors,
) {
    let pat = path::field(at, "plugins");
    for (name, conf) in plugins {
        checker.check(site, name, conf, &path::key(&pat, name), &mut errors.0);
    }
}

/// Per-element checks of the plugin-carrying resources (clean elements only).
pub(super) fn validate_resources(
    config: &Config,
    positions: &Positions,
    checker: &dyn PluginCheck,
    errors: &mut Errors,
) {
    for (i, s) in config.services.iter().enumerate() {
        let p = Positions::at(&positions.services, "services", i);
        if !p.clean {
            continue;
        }
        let at = p.path;
        check_text(s.name.as_deref(), s.desc.as_deref(), &at, errors);
        check_labels(&s.labels, &at, errors);
        check_plugins(checker, PluginSite::Service, &s.plugins, &at, errors);
        match (&s.upstream, &s.upstream_id) {
            (Some(_), Some(_)) => errors.add(
                path::field(&at, "upstream_id"),
                "give upstream or upstream_id, not both",
            ),
            (Some(up), None) => {
                validate_upstream(config, up, &path::field(&at, "upstream"), errors)
            }
            _ => {}
        }
        if let Some(hosts) = &s.hosts {
            let hat = path::field(&at, "hosts");
            if hosts.is_empty() {
                errors.add(
                    &hat,
                    "must not be empty (leave hosts out to match any host)",
                );
            }
            for (j, h) in hosts.iter().enumerate() {
                if let Err(e) = check_host_pattern(h) {
                    errors.add(path::index(&hat, j), format!("{h:?}: {e}"));
                }
            }
        }
    }
    for (i, c) in config.consumers.iter().enumerate() {
        let p = Positions::at(&positions.consumers, "consumers", i);
        if !p.clean {
            continue;
        }
        let at = p.path;
        let valid = (1..=256).contains(&c.username.len())
            && c.username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            errors.add(
                path::field(&at, "username"),
                format!(
                    "{:?}: a username is 1 to 256 letters, digits, _ and -",
                    c.username
                ),
            );
        }
        check_text(None, c.desc.as_deref(), &at, errors);
        check_labels(&c.labels, &at, errors);
        check_plugins(checker, PluginSite::Consumer, &c.plugins, &at, errors);
    }
    for (i, c) in config.credentials.iter().enumerate() {
        let p = Positions::at(&positions.credentials, "credentials", i);
        if !p.clean {
            continue;
        }
        let at = p.path;
        check_text(c.name.as_deref(), c.desc.as_deref(), &at, errors);
        check_labels(&c.labels, &at, errors);
        let pat = path::field(&at, "plugins");
        if c.plugins.len() != 1 {
            errors.add(
                &pat,
                format!(
                    "a credential holds exactly one auth plugin ({}), found {}",
                    AUTH_PLUGINS.join(", "),
                    c.plugins.len()
                ),
            );
        }
        for name in c.plugins.keys() {
            if !AUTH_PLUGINS.contains(&name.as_str()) {
                errors.add(
                    path::key(&pat, name),
                    format!(
                        "not an auth plugin; a credential holds one of {}",
                        AUTH_PLUGINS.join(", ")
                    ),
                );
            }
        }
        check_plugins(checker, PluginSite::Credential, &c.plugins, &at, errors);
    }
    for (i, g) in config.consumer_groups.iter().enumerate() {
        let p = Positions::at(&positions.consumer_groups, "consumer_groups", i);
        if p.clean {
            check_text(g.name.as_deref(), g.desc.as_deref(), &p.path, errors);
            check_labels(&g.labels, &p.path, errors);
            check_plugins(
                checker,
                PluginSite::ConsumerGroup,
                &g.plugins,
                &p.path,
                errors,
            );
        }
    }
    for (i, c) in config.plugin_configs.iter().enumerate() {
        let p = Positions::at(&positions.plugin_configs, "plugin_configs", i);
        if p.clean {
            check_text(c.name.as_deref(), c.desc.as_deref(), &p.path, errors);
            check_labels(&c.labels, &p.path, errors);
            check_plugins(
                checker,
                PluginSite::PluginConfig,
                &c.plugins,
                &p.path,
                errors,
            );
        }
    }
    for (i, g) in config.global_rules.iter().enumerate() {
        let p = Positions::at(&positions.global_rules, "global_rules", i);
        if p.clean {
            check_plugins(checker, PluginSite::GlobalRule, &g.plugins, &p.path, errors);
        }
    }
    for (name, conf) in &config.plugin_metadata {
        checker.check(
            PluginSite::Metadata,
            name,
            conf,
            &path::key("plugin_metadata", name),
            &mut errors.0,
        );
    }
}
