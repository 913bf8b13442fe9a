//! PUT, POST, PATCH and DELETE on the Admin API's state, with APISIX's
//! rules and messages (ids, forbidden fields, timestamps, references that
//! block a delete). Pure: the hub validates, persists and applies the plan.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::error::AdminError;
use crate::hub::View;
use crate::kind::Kind;
use crate::patch;
use crate::state::{AdminState, Entry, Resource, TIME_FIELDS};

/// A write request, as the HTTP layer parsed it.
#[derive(Debug, Clone)]
pub struct Write {
    /// PUT, POST, PATCH or DELETE.
    pub method: Method,
    /// The resource type.
    pub kind: Kind,
    /// The consumer of a credential.
    pub owner: Option<String>,
    /// The id in the path.
    pub id: Option<String>,
    /// What follows the id (`plugins/limit-count`), for PATCH.
    pub sub_path: Option<String>,
    /// The JSON body.
    pub body: Option<Value>,
    /// `?force=true`: delete even if something still uses it.
    pub force: bool,
}

/// What a write will do, before it is validated and applied.
pub struct Plan {
    /// The state after the write.
    pub state: AdminState,
    /// The key written (or deleted).
    pub key: String,
    /// The status to answer with.
    pub status: StatusCode,
    /// The body to answer with.
    pub body: Value,
}

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError::BadRequest(msg.into())
}

/// A string or integer id field of a body.
fn body_id(body: &Map<String, Value>, field: &str) -> Result<Option<String>, AdminError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(bad(format!(
            "invalid configuration: {field}: must be a string or an integer"
        ))),
    }
}

/// APISIX refuses `create_time` / `update_time` in a PUT or POST body (at
/// the top, in `upstream` and as plugin names).
fn forbidden_times(body: &Map<String, Value>) -> Result<(), AdminError> {
    for (scope, prefix) in [
        (Some(body), ""),
        (body.get("upstream").and_then(Value::as_object), "upstream."),
        (body.get("plugins").and_then(Value::as_object), "plugins."),
    ] {
        if let Some(map) = scope {
            if let Some(f) = TIME_FIELDS.iter().find(|f| map.contains_key(**f)) {
                return Err(bad(format!("the property is forbidden:  {prefix}{f}")));
            }
        }
    }
    Ok(())
}

/// The reply of a write: `{key, value}`, an ssl's private keys left out.
pub fn reply_value(kind: Kind, value: &Value) -> Value {
    let mut v = value.clone();
    if kind == Kind::Ssl {
        if let Value::Object(m) = &mut v {
            m.remove("key");
            m.remove("keys");
        }
    }
    v
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Plans `w` against `view`.
pub fn plan(view: &View, w: Write, now: u64) -> Result<Plan, AdminError> {
    if !w.kind.allows(&w.method) {
        return Err(AdminError::MethodNotAllowed(format!(
            "not supported `{}` method for {}",
            w.method,
            w.kind.noun()
        )));
    }
    match w.method {
        Method::PUT | Method::POST => put(view, w, now),
        Method::PATCH => patch_(view, w, now),
        Method::DELETE => delete(view, w),
        _ => Err(AdminError::MethodNotAllowed(format!(
            "not supported `{}` method for {}",
            w.method,
            w.kind.noun()
        ))),
    }
}

fn read_only(kind: Kind, id: &str) -> AdminError {
    bad(format!(
        "{} {id:?} is defined in the configuration file and is read-only to the Admin API",
        kind.noun()
    ))
}

fn consumer_exists(view: &View, user: &str) -> bool {
    let key = Kind::Consumer.key(None, user);
    view.items.contains_key(&key) || view.state.entries.contains_key(&key)
}

fn put(view: &View, w: Write, now: u64) -> Result<Plan, AdminError> {
    let kind = w.kind;
    let noun = kind.noun();
    let Some(body) = w.body else {
        return Err(bad("missing configurations"));
    };
    let Value::Object(mut body) = body else {
        return Err(bad("invalid configuration: the body must be a JSON object"));
    };
    let field = kind.id_field();
    let given = if kind == Kind::PluginMetadata {
        None
    } else {
        body_id(&body, field)?
    };
    let mut state = (*view.state).clone();
    let id = if w.method == Method::POST {
        if w.id.is_some() || given.is_some() {
            return Err(bad(format!("wrong {noun} id, do not need it")));
        }
        state.index += 1;
        format!("{:020}", state.index)
    } else {
        match (w.id, given) {
            (Some(url), Some(b)) if url != b => {
                return Err(bad(if kind == Kind::Consumer {
                    "wrong username".to_owned()
                } else {
                    format!("wrong {noun} id")
                }))
            }
            (Some(url), _) => url,
            (None, Some(b)) => b,
            (None, None) => {
                return Err(bad(match kind {
                    Kind::PluginMetadata => "missing plugin name".to_owned(),
                    Kind::Consumer => {
                        "invalid configuration: property \"username\" is required".to_owned()
                    }
                    _ => format!("missing {noun} id"),
                }))
            }
        }
    };
    forbidden_times(&body)?;
    let owner = w.owner;
    if kind == Kind::Credential {
        let user = owner.as_deref().unwrap_or_default();
        if !consumer_exists(view, user) {
            return Err(AdminError::Missing("consumer not found".into()));
        }
    }
    let key = kind.key(owner.as_deref(), &id);
    if view.items.contains_key(&key) {
        return Err(read_only(kind, &id));
    }
    let previous = state.entries.get(&key).cloned();
    body.insert(field.to_owned(), Value::String(id.clone()));
    let create_time = previous
        .as_ref()
        .and_then(|p| p.value.get("create_time").cloned())
        .unwrap_or_else(|| json!(now));
    body.insert("create_time".into(), create_time);
    body.insert("update_time".into(), json!(now));
    let value = Value::Object(body);
    rules(view, kind, &id, &value)?;
    let status = if previous.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    if w.method != Method::POST {
        state.index += 1;
    }
    store(
        &mut state,
        kind,
        owner,
        id,
        key.clone(),
        value.clone(),
        previous.as_deref(),
    )?;
    Ok(Plan {
        state,
        body: json!({"key": key, "value": reply_value(kind, &value)}),
        key,
        status,
    })
}

/// Decodes `value` and puts it at `key` with the state's current index.
fn store(
    state: &mut AdminState,
    kind: Kind,
    owner: Option<String>,
    id: String,
    key: String,
    value: Value,
    previous: Option<&Entry>,
) -> Result<(), AdminError> {
    let resource = Resource::decode(kind, owner.as_deref(), &value).map_err(|e| {
        let described = crate::merge::describe(&e, &[], &key);
        bad(format!("invalid configuration: {described}"))
    })?;
    let entry = Entry {
        kind,
        owner,
        id,
        value: Arc::new(value),
        resource: Arc::new(resource),
        created: previous.map_or(state.index, |p| p.created),
        modified: state.index,
    };
    state.entries.insert(key, Arc::new(entry));
    Ok(())
}

fn patch_(view: &View, w: Write, now: u64) -> Result<Plan, AdminError> {
    let kind = w.kind;
    let Some(id) = w.id else {
        return Err(bad(format!("missing {} id", kind.noun())));
    };
    let Some(body) = w.body else {
        return Err(bad("missing new configuration"));
    };
    let key = kind.key(w.owner.as_deref(), &id);
    if view.items.contains_key(&key) {
        return Err(read_only(kind, &id));
    }
    let Some(previous) = view.state.entries.get(&key).cloned() else {
        return Err(AdminError::NotFound);
    };
    let mut value = (*previous.value).clone();
    match w.sub_path.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            patch::at_path(&mut value, sub, body).map_err(bad)?;
            set(&mut value, "update_time", json!(now));
        }
        None => {
            let Value::Object(body) = body else {
                return Err(bad("invalid configuration"));
            };
            let keep_time = body.get("update_time").is_some_and(|t| !t.is_null());
            patch::merge(&mut value, Value::Object(body));
            if !keep_time {
                set(&mut value, "update_time", json!(now));
            }
        }
    }
    let field = kind.id_field();
    if value.get(field).and_then(Value::as_str) != Some(id.as_str()) {
        return Err(bad(format!("wrong {} id", kind.noun())));
    }
    rules(view, kind, &id, &value)?;
    let mut state = (*view.state).clone();
    state.index += 1;
    store(
        &mut state,
        kind,
        w.owner,
        id,
        key.clone(),
        value.clone(),
        Some(&previous),
    )?;
    Ok(Plan {
        state,
        body: json!({"key": key, "value": reply_value(kind, &value)}),
        key,
        status: StatusCode::OK,
    })
}

/// Puts `value` at its key without APISIX's request rules (for
/// `schema/validate`); it is still decoded.
pub fn insert_unchecked(
    state: &mut AdminState,
    kind: Kind,
    owner: Option<String>,
    id: &str,
    value: Value,
) -> Result<(), AdminError> {
    let key = kind.key(owner.as_deref(), id);
    store(state, kind, owner, id.to_owned(), key, value, None)
}

/// Rules of one resource type beyond its schema.
fn rules(view: &View, kind: Kind, id: &str, value: &Value) -> Result<(), AdminError> {
    if kind == Kind::GlobalRule {
        if let Some(msg) = crate::refs::global_rule_conflict(view, id, value) {
            return Err(bad(msg));
        }
    }
    Ok(())
}

fn set(value: &mut Value, field: &str, v: Value) {
    if let Value::Object(m) = value {
        m.insert(field.to_owned(), v);
    }
}

fn delete(view: &View, w: Write) -> Result<Plan, AdminError> {
    let kind = w.kind;
    let Some(id) = w.id else {
        return Err(bad(format!("missing {} id", kind.noun())));
    };
    let key = kind.key(w.owner.as_deref(), &id);
    if view.items.contains_key(&key) {
        return Err(read_only(kind, &id));
    }
    if !view.state.entries.contains_key(&key) {
        return Err(AdminError::NotFound);
    }
    if !w.force {
        if let Some(msg) = crate::refs::still_used(view, kind, &id) {
            return Err(bad(msg));
        }
    }
    let mut state = (*view.state).clone();
    state.index += 1;
    state.entries.remove(&key);
    if kind == Kind::Consumer {
        // A consumer's credentials go with it, as APISIX's rmdir.
        let prefix = format!("{key}/credentials/");
        state.entries.retain(|k, _| !k.starts_with(&prefix));
    }
    Ok(Plan {
        state,
        body: json!({"deleted": "1", "key": key}),
        key,
        status: StatusCode::OK,
    })
}
