//! Applying what etcd holds to the hub: one change set at a time, checked
//! as an Admin API write is (merge, validation, the engine's compile), then
//! swapped in whole. A change set that is exactly this replica's own write,
//! already checked and compiled, is not compiled again ([`super::own`]). A stored value that is invalid is logged with its key
//! and skipped; the last good version of that resource keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;
use weir_config::FieldErrors;

use super::client::{Event, Kv};
use super::EtcdSource;
use crate::error::EngineError;
use crate::hub::{ConfigHub, Engine, View};
use crate::kind::Kind;
use crate::merge;
use crate::state::{AdminState, Entry, Resource};

/// What changed in etcd.
pub(crate) enum Change {
    /// Everything under the prefix (a full read).
    Full(Vec<Kv>),
    /// The events of one watch answer.
    Events(Vec<Event>),
}

/// What became of a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Applied (possibly without some invalid values).
    Applied,
    /// An empty etcd was not applied over a non-empty configuration.
    Held,
}

enum Decoded {
    /// Not a resource key (APISIX's directory placeholders, other data).
    Skip,
    /// A resource whose value is invalid.
    Invalid(String, String),
    /// A resource.
    Entry(String, Arc<Entry>),
}

fn id_text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v.as_u64().map(|n| n.to_string()))
}

fn decode(src: &EtcdSource, kv: &Kv) -> Decoded {
    let Some(key) = src.hub_key(&kv.key) else {
        return Decoded::Skip;
    };
    let Some((kind, owner, id)) = Kind::parse_key(&key) else {
        tracing::debug!(key = %kv.key, "etcd: not a resource key, skipped");
        return Decoded::Skip;
    };
    let mut value: Value = match serde_json::from_slice(&kv.value) {
        Ok(v) => v,
        Err(e) => return Decoded::Invalid(key, format!("not JSON: {e}")),
    };
    let field = kind.id_field();
    if let Value::Object(m) = &mut value {
        match m.get(field).map(id_text) {
            None => {
                m.insert(field.to_owned(), Value::String(id.clone()));
            }
            Some(Some(given)) if given == id => {
                m.insert(field.to_owned(), Value::String(id.clone()));
            }
            Some(_) if kind == Kind::PluginMetadata => {
                m.insert(field.to_owned(), Value::String(id.clone()));
            }
            Some(_) => {
                return Decoded::Invalid(
                    key,
                    format!("{field}: does not match the key's id {id:?}"),
                )
            }
        }
    }
    let resource = match Resource::decode(kind, owner.as_deref(), &value) {
        Ok(r) => r,
        Err(e) => return Decoded::Invalid(key.clone(), merge::describe(&e, &[], &key)),
    };
    let entry = Entry {
        kind,
        owner,
        id,
        value: Arc::new(value),
        resource: Arc::new(resource),
        created: u64::try_from(kv.create_revision).unwrap_or(0),
        modified: u64::try_from(kv.mod_revision).unwrap_or(0),
    };
    Decoded::Entry(key, Arc::new(entry))
}

/// A stored value as the hub's key and entry; `None` when it is not a
/// resource or is invalid.
pub(super) fn decode_entry(src: &EtcdSource, kv: &Kv) -> Option<(String, Arc<Entry>)> {
    match decode(src, kv) {
        Decoded::Entry(key, e) => Some((key, e)),
        _ => None,
    }
}

/// The keys of the Admin API resources the errors are in.
fn culprits(errors: &FieldErrors, places: &[merge::Place]) -> BTreeSet<String> {
    errors
        .0
        .iter()
        .filter_map(|e| {
            places.iter().find(|p| {
                e.path == p.path
                    || e.path
                        .strip_prefix(&p.path)
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
        })
        .map(|p| p.key.clone())
        .collect()
}

/// Merges `state` with the file and checks it: the prepared configuration,
/// or the keys to blame (empty: nobody in particular) and why.
#[allow(clippy::type_complexity)]
fn check<E: Engine>(
    view: &View,
    state: &AdminState,
    engine: &E,
) -> Result<(merge::LeftOut, E::Prepared), (BTreeSet<String>, String)> {
    let merged = match merge::merge(&view.file, &view.items, state, None) {
        Ok(m) => m,
        Err(e) => {
            let keys = state
                .entries
                .keys()
                .filter(|k| view.items.contains_key(*k))
                .cloned()
                .collect();
            return Err((keys, e.to_string()));
        }
    };
    if let Err(e) = weir_config::validate_config(&merged.config, &weir_config::AnyPlugin) {
        return Err((culprits(&e, &merged.places), e.to_string()));
    }
    match engine.prepare(merged.config) {
        Ok(p) => Ok((merged.left_out, p)),
        Err(EngineError::Rejected(e)) => Err((culprits(&e, &merged.places), e.to_string())),
        Err(e) => Err((BTreeSet::new(), e.to_string())),
    }
}

/// Applies `change` (etcd at `revision`). With `hold_if_empty`, an etcd
/// without any resource does not replace a configuration that has some.
pub(crate) async fn apply<E: Engine>(
    hub: &ConfigHub,
    src: &EtcdSource,
    engine: &E,
    change: Change,
    revision: i64,
    hold_if_empty: bool,
) -> Outcome {
    let _serial = hub.writes.lock().await;
    let view = hub.view.load_full();
    // This replica's own write, if it was the last thing done: used at most
    // once, by the first change set after it.
    let own = hub
        .own_write
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let old = &view.state.entries;
    let mut invalid: BTreeSet<String> = src.status().invalid_keys.into_iter().collect();
    let full = matches!(change, Change::Full(_));
    let mut entries: BTreeMap<String, Arc<Entry>> = match &change {
        Change::Full(_) => BTreeMap::new(),
        Change::Events(_) => old.clone(),
    };
    let skip_invalid = |key: String,
                        why: String,
                        entries: &mut BTreeMap<String, Arc<Entry>>,
                        invalid: &mut BTreeSet<String>| {
        tracing::warn!(key = %src.etcd_key(&key), error = %why, "etcd: invalid value skipped; the last good version of this resource (if any) keeps serving");
        match old.get(&key) {
            Some(prev) => {
                entries.insert(key.clone(), prev.clone());
            }
            None => {
                entries.remove(&key);
            }
        }
        invalid.insert(key);
    };
    match change {
        Change::Full(kvs) => {
            invalid.clear();
            for kv in &kvs {
                match decode(src, kv) {
                    Decoded::Skip => {}
                    Decoded::Invalid(key, why) => {
                        skip_invalid(key, why, &mut entries, &mut invalid)
                    }
                    Decoded::Entry(key, e) => {
                        entries.insert(key, e);
                    }
                }
            }
        }
        Change::Events(events) => {
            for ev in &events {
                match ev {
                    Event::Put(kv) => match decode(src, kv) {
                        Decoded::Skip => {}
                        Decoded::Invalid(key, why) => {
                            skip_invalid(key, why, &mut entries, &mut invalid)
                        }
                        Decoded::Entry(key, e) => {
                            invalid.remove(&key);
                            entries.insert(key, e);
                        }
                    },
                    Event::Delete(kv) => {
                        if let Some(key) = src.hub_key(&kv.key) {
                            invalid.remove(&key);
                            entries.remove(&key);
                        }
                    }
                }
            }
        }
    }
    if hold_if_empty && entries.is_empty() && !old.is_empty() {
        let why = format!(
            "etcd came back without any resource under {} (a new or restored cluster); the last configuration ({} resources) keeps serving until something is written there",
            src.prefix,
            old.len()
        );
        tracing::warn!("{why}");
        src.set_stale(Some(why));
        src.applied(revision, full);
        return Outcome::Held;
    }
    // What serves while stale (a warm-start configuration, or one held over
    // an empty etcd) may differ from the hub's view: install even when no
    // key changed.
    let was_stale = src.status().stale.is_some();
    src.set_stale(None);
    let changed: Vec<String> = old
        .keys()
        .chain(entries.keys())
        .filter(|k| old.get(*k).map(|e| e.modified) != entries.get(*k).map(|e| e.modified))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = u64::try_from(revision).unwrap_or(0).max(view.state.index);
    let mut state = AdminState { entries, index };
    let mut result = None;
    if changed.is_empty() && !was_stale {
        result = Some((view.left_out.clone(), None));
    } else if let (Some(own), false, false) = (own, was_stale, full) {
        if let Some((left_out, prepared)) = own.reuse::<E::Prepared>(&view, &state) {
            tracing::debug!(
                revision,
                "etcd: own write came back as checked; its compile reused"
            );
            result = Some((left_out, Some(prepared)));
        }
    }
    let mut tries = 0;
    while result.is_none() {
        tries += 1;
        match check(&view, &state, engine) {
            Ok((left_out, prepared)) => result = Some((left_out, Some(prepared))),
            Err((blamed, why)) => {
                let blamed: Vec<&String> = changed.iter().filter(|k| blamed.contains(*k)).collect();
                let revert: Vec<&String> = if blamed.is_empty() || tries > 3 {
                    tracing::error!(revision, error = %why, "etcd: change set refused as a whole; the last configuration keeps serving");
                    changed.iter().collect()
                } else {
                    for k in &blamed {
                        tracing::warn!(key = %src.etcd_key(k), error = %why, "etcd: value refused; the last good version of this resource (if any) keeps serving");
                    }
                    blamed
                };
                for k in revert {
                    invalid.insert(k.clone());
                    match old.get(k) {
                        Some(prev) => state.entries.insert(k.clone(), prev.clone()),
                        None => state.entries.remove(k),
                    };
                }
                if tries > 3 {
                    result = Some((view.left_out.clone(), None));
                }
            }
        }
    }
    let (left_out, prepared) = result.unwrap_or_default();
    if let Some(prepared) = prepared {
        if let Err(e) = engine.install(prepared) {
            tracing::error!(revision, error = %e, "etcd: change set compiled but not applied; the last configuration keeps serving");
            src.set_invalid(invalid.into_iter().collect());
            src.applied(revision, full);
            return Outcome::Applied;
        }
        crate::hub::log_left_out(&view.left_out, &left_out);
    }
    hub.view.store(Arc::new(View {
        file: view.file.clone(),
        items: view.items.clone(),
        state: Arc::new(state),
        left_out,
    }));
    src.set_invalid(invalid.into_iter().collect());
    src.applied(revision, full);
    Outcome::Applied
}
