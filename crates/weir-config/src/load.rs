//! Reading a document (YAML or JSON) into a validated [`Config`].
//!
//! Each section, and each element of a list, is decoded on its own so that
//! one broken route does not hide the errors of the next. Within an element,
//! a field that fails to decode (an unknown field, a wrong type) is reported
//! and removed, and decoding is tried again: every such error of the element
//! is reported at once. An element that needed this still takes part in the
//! id and reference checks (duplicate ids, `upstream_id` naming nothing...),
//! but not in its own semantic checks, whose findings would only echo the
//! removed fields.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Errors, FieldError, FieldErrors, LoadError};
use crate::model::{split_credential_id, unbracket, Config, Credential, Id, Nodes, Upstream};
use crate::path;
use crate::plugin_check::{AnyPlugin, PluginCheck};
use crate::standalone::{self, MarkerError};
use crate::validate::{self, Kind, Pos, Positions, Undecoded};

/// The configuration `weir run` uses when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

const SECTIONS: &[&str] = &[
    "gateway",
    "routes",
    "upstreams",
    "ssls",
    "discovery",
    "services",
    "consumers",
    "credentials",
    "consumer_groups",
    "plugin_configs",
    "global_rules",
    "plugin_metadata",
    "deployment",
];

/// Most fields removed from one element before giving up on it.
const MAX_ATTEMPTS: usize = 64;

/// How a document is loaded: who checks plugin configurations, and where
/// `${{VAR}}` values come from.
pub struct LoadOptions<'a> {
    /// Checks every plugin entry ([`AnyPlugin`] by default).
    pub plugins: &'a dyn PluginCheck,
    /// Environment lookup for `${{VAR}}` (the process environment by default).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Default for LoadOptions<'static> {
    fn default() -> Self {
        LoadOptions {
            plugins: &AnyPlugin,
            env: &process_env,
        }
    }
}

/// Reads, parses and validates a configuration file.
pub fn load_file(file: &str) -> Result<Config, LoadError> {
    load_file_with(file, &LoadOptions::default())
}

/// [`load_file`] with explicit options.
pub fn load_file_with(file: &str, options: &LoadOptions<'_>) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|source| LoadError::Io {
        path: file.to_owned(),
        source,
    })?;
    load_str_with(&text, file, options)
}

/// Parses and validates the embedded default configuration.
pub fn load_default() -> Result<Config, LoadError> {
    load_str(EMBEDDED_DEFAULT, "<embedded default>")
}

/// Parses and validates a document; `origin` names it in messages (and,
/// when it is a file name, decides the `#END` rule: see [`standalone`]).
pub fn load_str(text: &str, origin: &str) -> Result<Config, LoadError> {
    load_str_with(text, origin, &LoadOptions::default())
}

/// [`load_str`] with explicit options.
pub fn load_str_with(
    text: &str,
    origin: &str,
    options: &LoadOptions<'_>,
) -> Result<Config, LoadError> {
    let invalid = |errors: Vec<FieldError>| LoadError::Invalid {
        origin: origin.to_owned(),
        errors: FieldErrors(errors),
    };
    let body = standalone_body(text, origin)?;
    let json = body.trim_start().starts_with('{');
    let body: Cow<'_, str> = if json {
        Cow::Borrowed(body)
    } else {
        Cow::Owned(standalone::substitute_text(body, options.env).map_err(invalid)?)
    };
    let mut doc = parse_document(&body, json).map_err(|message| LoadError::Syntax {
        origin: origin.to_owned(),
        message,
    })?;
    if json {
        standalone::substitute_value(&mut doc, options.env).map_err(invalid)?;
    }
    let mut errors = Errors::default();
    let mut positions = Positions::default();
    let mut config = decode(doc, &mut errors, &mut positions);
    normalize(&mut config);
    // Semantic checks run even after decoding errors, on what did decode,
    // under the original list positions, so every problem is reported at once.
    validate::validate(&config, &positions, options.plugins, &mut errors);
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(invalid(errors.0))
    }
}

/// The text to parse under the `#END` rule ([`standalone`]): a
/// standalone-style file without its marker is refused as incomplete, so a
/// half-written file is never applied.
pub fn standalone_body<'a>(text: &'a str, origin: &str) -> Result<&'a str, LoadError> {
    standalone::body(text, origin).map_err(|e| match e {
        MarkerError::Missing => LoadError::Incomplete {
            origin: origin.to_owned(),
        },
        MarkerError::TrailingContent(line) => LoadError::Invalid {
            origin: origin.to_owned(),
            errors: FieldErrors(vec![FieldError::new(
                "",
                format!("line {line}: text after the #END marker; #END must be the last line"),
            )]),
        },
    })
}

/// YAML or JSON text to a generic tree.
fn parse_document(text: &str, json: bool) -> Result<Value, String> {
    if text.trim_start().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = if json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    Ok(match value {
        Value::Null => Value::Object(Default::default()),
        v => v,
    })
}

/// Decodes one resource given as JSON (an Admin API body) by the loader's
/// rules: every field that does not decode is reported at once, with its
/// path below the resource (`methods[0]`), and APISIX fields weir lacks are
/// explained. Semantic checks are [`crate::validate_config`]'s, on a whole
/// configuration.
pub fn decode_resource<T: DeserializeOwned>(value: Value) -> Result<T, FieldErrors> {
    let mut errors = Errors::default();
    match decode_item(value, "", &mut errors) {
        Some((v, true)) => Ok(v),
        _ if errors.0.is_empty() => Err(FieldErrors(vec![FieldError::new("", "does not decode")])),
        _ => Err(FieldErrors(errors.0)),
    }
}

/// Fills what the loader derives: the engine-facing `hash_on` mirror and
/// IPv6 list-node hosts without brackets. The loader does it; a
/// configuration assembled from decoded resources needs it too (it is
/// idempotent).
pub fn normalize(config: &mut Config) {
    let fix = |up: &mut Upstream| {
        up.hash_on = up.hash_on_kind.legacy();
        if let Some(Nodes::List(nodes)) = &mut up.nodes {
            for n in nodes {
                let bare = unbracket(&n.host);
                if bare.len() != n.host.len() {
                    n.host = bare.to_owned();
                }
            }
        }
    };
    config.upstreams.iter_mut().for_each(fix);
    config
        .routes
        .iter_mut()
        .filter_map(|r| r.upstream.as_mut())
        .for_each(fix);
    config
        .services
        .iter_mut()
        .filter_map(|s| s.upstream.as_mut())
        .for_each(fix);
}

fn decode(doc: Value, errors: &mut Errors, positions: &mut Positions) -> Config {
    let mut config = Config::default();
    let Value::Object(top) = doc else {
        errors.add(
            "",
            format!("the document must be a mapping with {}", SECTIONS.join("/")),
        );
        return config;
    };
    let before = errors.0.len();
    let mut consumer_items = None;
    let mut credential_items = None;
    for (name, value) in top {
        match name.as_str() {
            "gateway" => {
                if let Some((g, _)) = decode_item(value, "gateway", errors) {
                    config.gateway = g;
                }
            }
            "routes" => {
                config.routes = decode_list(
                    value,
                    "routes",
                    None,
                    errors,
                    &mut positions.routes,
                    &mut positions.undecoded,
                )
            }
            "upstreams" => {
                config.upstreams = decode_list(
                    value,
                    "upstreams",
                    Some((Kind::Upstream, "id")),
                    errors,
                    &mut positions.upstreams,
                    &mut positions.undecoded,
                )
            }
            "ssls" => {
                config.ssls = decode_list(
                    value,
                    "ssls",
                    None,
                    errors,
                    &mut positions.ssls,
                    &mut positions.undecoded,
                )
            }
            "deployment" => {
                if let Some((d, _)) = decode_item(value, "deployment", errors) {
                    config.deployment = d;
                }
            }
            "discovery" => {
                if !value.is_null() {
                    config.discovery = decode_item(value, "discovery", errors).map(|(d, _)| d);
                }
            }
            "services" => {
                config.services = decode_list(
                    value,
                    "services",
                    Some((Kind::Service, "id")),
                    errors,
                    &mut positions.services,
                    &mut positions.undecoded,
                )
            }
            "consumer_groups" => {
                config.consumer_groups = decode_list(
                    value,
                    "consumer_groups",
                    Some((Kind::ConsumerGroup, "id")),
                    errors,
                    &mut positions.consumer_groups,
                    &mut positions.undecoded,
                )
            }
            "plugin_configs" => {
                config.plugin_configs = decode_list(
                    value,
                    "plugin_configs",
                    Some((Kind::PluginConfig, "id")),
                    errors,
                    &mut positions.plugin_configs,
                    &mut positions.undecoded,
                )
            }
            "global_rules" => {
                config.global_rules = decode_list(
                    value,
                    "global_rules",
                    Some((Kind::GlobalRule, "id")),
                    errors,
                    &mut positions.global_rules,
                    &mut positions.undecoded,
                )
            }
            "plugin_metadata" => config.plugin_metadata = decode_metadata(value, errors),
            "consumers" => consumer_items = Some(value),
            "credentials" => credential_items = Some(value),
            other => errors.add(
                path::key("", other),
                format!("unknown section, expected one of {}", SECTIONS.join(", ")),
            ),
        }
    }
    // Consumers first: their list may hold credentials (APISIX's standalone form).
    if let Some(value) = consumer_items {
        decode_consumers(value, &mut config, errors, positions);
    }
    if let Some(value) = credential_items {
        for (i, item) in list_items(value, "credentials", errors) {
            decode_credential(
                item,
                path::index("credentials", i),
                &mut config,
                errors,
                positions,
            );
        }
    }
    if errors.0.len() > before {
        // Keep the order users read files in: by path.
        errors.0[before..].sort_by(|a, b| a.path.cmp(&b.path));
    }
    config
}

/// The items of a list section (null is an empty list).
fn list_items(value: Value, at: &str, errors: &mut Errors) -> Vec<(usize, Value)> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.into_iter().enumerate().collect(),
        _ => {
            errors.add(at, "must be a list");
            Vec::new()
        }
    }
}

/// Decodes each element on its own, recording positions in `positions`.
/// Elements that do not decode at all leave their raw id (field `id_of.1`)
/// in `undecoded`, for the id checks.
fn decode_list<T: DeserializeOwned>(
    value: Value,
    at: &str,
    id_of: Option<(Kind, &str)>,
    errors: &mut Errors,
    positions: &mut Vec<Pos>,
    undecoded: &mut Vec<Undecoded>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, item) in list_items(value, at, errors) {
        let item_at = path::index(at, i);
        let raw = id_of.and_then(|(kind, field)| Some((kind, raw_id(&item, field)?)));
        match decode_item(item, &item_at, errors) {
            Some((v, clean)) => {
                out.push(v);
                positions.push(Pos {
                    path: item_at,
                    clean,
                });
            }
            None => {
                if let Some((kind, id)) = raw {
                    undecoded.push((kind, item_at, id));
                }
            }
        }
    }
    out
}

/// A string or integer field of a raw element.
fn raw_id(item: &Value, field: &str) -> Option<String> {
    match item.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn decode_consumers(
    value: Value,
    config: &mut Config,
    errors: &mut Errors,
    positions: &mut Positions,
) {
    for (i, item) in list_items(value, "consumers", errors) {
        let at = path::index("consumers", i);
        let credential = item
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| split_credential_id(id).is_some());
        if credential {
            decode_credential(item, at, config, errors, positions);
            continue;
        }
        let raw = raw_id(&item, "username");
        match decode_item(item, &at, errors) {
            Some((c, clean)) => {
                config.consumers.push(c);
                positions.consumers.push(Pos { path: at, clean });
            }
            None => {
                if let Some(name) = raw {
                    positions.undecoded.push((Kind::Consumer, at, name));
                }
            }
        }
    }
}

/// A credential from `credentials` or from `consumers` (id
/// `<username>/credentials/<id>`): the consumer is split out of the id.
fn decode_credential(
    item: Value,
    at: String,
    config: &mut Config,
    errors: &mut Errors,
    positions: &mut Positions,
) {
    let Some((mut c, clean)) = decode_item::<Credential>(item, &at, errors) else {
        return;
    };
    let mut owner_field = "consumer";
    if let Some((user, id)) = split_credential_id(c.id.as_str()) {
        let (user, id) = (user.to_owned(), id.to_owned());
        if !c.consumer.is_empty() && c.consumer != user {
            errors.add(
                path::field(&at, "consumer"),
                format!(
                    "{:?} differs from the consumer named by the id ({user:?})",
                    c.consumer
                ),
            );
        }
        c.consumer = user;
        c.id = Id(id);
        owner_field = "id";
    }
    c.source = at.clone();
    config.credentials.push(c);
    positions.credentials.push(Pos { path: at, clean });
    positions.credential_owner_field.push(owner_field);
}

/// `plugin_metadata`: APISIX's list of `{id: <plugin>, ...}` or a map.
fn decode_metadata(value: Value, errors: &mut Errors) -> BTreeMap<String, Value> {
    let at = "plugin_metadata";
    let mut out = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (name, v) in map {
                if v.is_object() {
                    out.insert(name, v);
                } else {
                    errors.add(path::key(at, &name), "must be an object");
                }
            }
        }
        Value::Array(items) => {
            let mut first = BTreeMap::new();
            for (i, item) in items.into_iter().enumerate() {
                let item_at = path::index(at, i);
                match crate::model::metadata_item(item) {
                    Ok((name, body)) => {
                        if let Some(prev) = first.get(&name) {
                            errors.add(
                                path::field(&item_at, "id"),
                                format!("duplicate plugin_metadata {name:?} (also {prev})"),
                            );
                        } else {
                            first.insert(name.clone(), path::field(&item_at, "id"));
                            out.insert(name, body);
                        }
                    }
                    Err(e) => errors.add(item_at, e),
                }
            }
        }
        _ => errors.add(
            at,
            "must be a list of {id: <plugin name>, ...} or a map of plugin name to object",
        ),
    }
    out
}

/// Decodes one element, reporting every field that does not decode (see
/// the module docs). Returns the value and whether it decoded cleanly.
fn decode_item<T: DeserializeOwned>(
    value: Value,
    at: &str,
    errors: &mut Errors,
) -> Option<(T, bool)> {
    let mut value = value;
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(v) => return Some((v, removed.is_empty())),
            Err(e) => e,
        };
        let shown = path::from_serde(at, err.path());
        let segs = segments(err.path());
        let message = err.into_inner().to_string();
        if let (Some(field), Some(segs)) = (missing_field(&message), &segs) {
            // The field is missing because we removed it: already reported.
            let ours = removed.iter().any(|r| {
                r.len() == segs.len() + 1
                    && r.starts_with(segs)
                    && matches!(r.last(), Some(Seg::Key(k)) if k == field)
            });
            if ours {
                return None;
            }
        }
        errors.add(shown, explain(&message));
        let target = segs.and_then(removal_target)?;
        if !remove(&mut value, &target) {
            return None;
        }
        removed.push(target);
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The path of an error as navigable segments; `None` when part of it is
/// not navigable (enum variants, unknown positions).
fn segments(p: &serde_path_to_error::Path) -> Option<Vec<Seg>> {
    use serde_path_to_error::Segment;
    p.iter()
        .map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            _ => None,
        })
        .collect()
}

/// `missing field `x`` -> `x`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// APISIX fields weir does not support, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "filter_func",
        "filter_func (a Lua function) is not supported by weir; express the condition with vars",
    ),
    ("script", "script (Lua) is not supported by weir"),
    ("script_id", "script_id (Lua) is not supported by weir"),
    (
        "client_cert_id",
        "client_cert_id is not supported by weir; give tls.client_cert and tls.client_key inline",
    ),
    (
        "discovery_args",
        "discovery_args (Nacos) is not supported by weir; discovery_type kubernetes takes none",
    ),
    (
        "create_time",
        "create_time is set by APISIX's Admin API and not accepted in a file; remove it",
    ),
    (
        "update_time",
        "update_time is set by APISIX's Admin API and not accepted in a file; remove it",
    ),
];

/// serde's message, or a clearer one for APISIX fields weir lacks.
fn explain(message: &str) -> String {
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match unknown.and_then(|f| UNSUPPORTED.iter().find(|(name, _)| *name == f)) {
        Some((_, why)) => (*why).to_owned(),
        None => message.to_owned(),
    }
}

/// What to remove for an error at `segs`: the field itself, or, for a bad
/// list item, the whole list field (removing an item would shift the
/// positions of later errors). `None` at the element itself.
fn removal_target(mut segs: Vec<Seg>) -> Option<Vec<Seg>> {
    while matches!(segs.last(), Some(Seg::Index(_))) {
        segs.pop();
    }
    (!segs.is_empty()).then_some(segs)
}

/// Removes the map entry at `segs`; false when there is none.
fn remove(value: &mut Value, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = value;
    for s in parents {
        let next = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}
