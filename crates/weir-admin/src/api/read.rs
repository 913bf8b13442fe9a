//! GET: one resource `{key, value, createdIndex, modifiedIndex}` or a list
//! `{total, list}` with APISIX's filters (`name`, `label`, `uri`, `filter`)
//! and paging (`page`, `page_size`). The file's resources are listed with
//! the Admin API's; their indexes are 0.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::AdminError;
use crate::hub::View;
use crate::kind::Kind;
use crate::ops::reply_value;

/// One resource as GET shows it.
struct Item {
    key: String,
    value: Value,
    created: u64,
    modified: u64,
}

impl Item {
    fn to_json(&self) -> Value {
        json!({
            "key": self.key,
            "value": self.value,
            "createdIndex": self.created,
            "modifiedIndex": self.modified,
        })
    }
}

fn find(view: &View, key: &str) -> Option<Item> {
    if let Some(e) = view.state.entries.get(key) {
        return Some(Item {
            key: key.to_owned(),
            value: reply_value(e.kind, &e.value),
            created: e.created,
            modified: e.modified,
        });
    }
    view.items.get(key).map(|f| Item {
        key: key.to_owned(),
        value: reply_value(f.kind, &f.value),
        created: 0,
        modified: 0,
    })
}

/// `GET /apisix/admin/<kind>/<id>`.
pub fn one(view: &View, kind: Kind, owner: Option<&str>, id: &str) -> Result<Value, AdminError> {
    find(view, &kind.key(owner, id))
        .map(|i| i.to_json())
        .ok_or(AdminError::NotFound)
}

/// `GET /apisix/admin/<kind>` (or a consumer's credentials).
pub fn list(
    view: &View,
    kind: Kind,
    owner: Option<&str>,
    args: &HashMap<String, String>,
) -> Result<Value, AdminError> {
    if let (Kind::Credential, Some(user)) = (kind, owner) {
        let consumer = Kind::Consumer.key(None, user);
        if !view.state.entries.contains_key(&consumer) && !view.items.contains_key(&consumer) {
            return Err(AdminError::NotFound);
        }
    }
    let prefix = match (kind, owner) {
        (Kind::Credential, Some(user)) => {
            format!("{}/credentials/", Kind::Consumer.key(None, user))
        }
        _ => format!("{}/{}/", crate::kind::PREFIX, kind.segment()),
    };
    let mut keys: Vec<&String> = view
        .state
        .entries
        .iter()
        .filter(|(_, e)| e.kind == kind)
        .map(|(k, _)| k)
        .chain(
            view.items
                .iter()
                .filter(|(_, f)| f.kind == kind)
                .map(|(k, _)| k),
        )
        .filter(|k| k.starts_with(&prefix))
        .collect();
    keys.sort();
    let filter = Filter::new(kind, args)?;
    let mut items: Vec<Item> = keys
        .into_iter()
        .filter_map(|k| find(view, k))
        .filter(|i| filter.admits(&i.value))
        .collect();
    let total = items.len();
    if let Some((page, size)) = paging(args)? {
        items.sort_by_key(|i| i.created);
        items = items
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect();
    }
    Ok(json!({
        "total": total,
        "list": items.iter().map(Item::to_json).collect::<Vec<_>>(),
    }))
}

/// `page` and `page_size`, when both are given (APISIX pages only then).
fn paging(args: &HashMap<String, String>) -> Result<Option<(usize, usize)>, AdminError> {
    let (Some(page), Some(size)) = (args.get("page"), args.get("page_size")) else {
        return Ok(None);
    };
    let (Ok(page), Ok(size)) = (page.parse::<usize>(), size.parse::<usize>()) else {
        return Ok(None);
    };
    if !(10..=500).contains(&size) {
        return Err(AdminError::BadRequest(
            "page_size must be between 10 and 500".into(),
        ));
    }
    Ok(Some((page.max(1), size)))
}

/// The list filters of a request.
struct Filter {
    name: Option<regex::Regex>,
    label: Option<String>,
    uri: Option<regex::Regex>,
    fields: Vec<(String, String)>,
}

fn regex_arg(
    args: &HashMap<String, String>,
    name: &str,
) -> Result<Option<regex::Regex>, AdminError> {
    args.get(name)
        .map(|p| {
            regex::Regex::new(p).map_err(|e| {
                AdminError::BadRequest(format!("invalid {name}: not a regular expression: {e}"))
            })
        })
        .transpose()
}

impl Filter {
    fn new(kind: Kind, args: &HashMap<String, String>) -> Result<Filter, AdminError> {
        let fields = args
            .get("filter")
            .map(|f| super::query::parse(f))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| {
                let known = kind.filter_fields().contains(&k.as_str());
                if !known {
                    tracing::debug!(field = %k, "Admin API list: filter field not supported by this resource, ignored");
                }
                known
            })
            .collect();
        Ok(Filter {
            name: regex_arg(args, "name")?,
            label: args.get("label").cloned(),
            uri: regex_arg(args, "uri")?,
            fields,
        })
    }

    fn admits(&self, v: &Value) -> bool {
        if let Some(re) = &self.name {
            if !v
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| re.is_match(n))
            {
                return false;
            }
        }
        if let Some(label) = &self.label {
            if !v
                .get("labels")
                .and_then(Value::as_object)
                .is_some_and(|l| l.contains_key(label))
            {
                return false;
            }
        }
        if let Some(re) = &self.uri {
            let one = v
                .get("uri")
                .and_then(Value::as_str)
                .is_some_and(|u| re.is_match(u));
            let many = v
                .get("uris")
                .and_then(Value::as_array)
                .is_some_and(|us| us.iter().filter_map(Value::as_str).any(|u| re.is_match(u)));
            if !one && !many {
                return false;
            }
        }
        self.fields.iter().all(|(k, want)| match v.get(k) {
            Some(Value::String(s)) => s == want,
            Some(Value::Number(n)) => n.to_string() == *want,
            _ => false,
        })
    }
}
