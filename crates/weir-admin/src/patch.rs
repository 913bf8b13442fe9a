//! PATCH as APISIX does it: a deep merge of objects (arrays replaced,
//! `null` deletes the field), or a sub-path that replaces one subtree.

use serde_json::{Map, Value};

/// Merges `patch` into `target`: objects merge key by key, anything else
/// (arrays included) replaces, and a `null` removes the field.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => merge_maps(t, p),
        (t, p) => *t = without_nulls(p),
    }
}

fn merge_maps(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => match target.get_mut(&k) {
                Some(Value::Object(t)) => merge_maps(t, p),
                _ => {
                    target.insert(k, without_nulls(Value::Object(p)));
                }
            },
            other => {
                target.insert(k, other);
            }
        }
    }
}

/// Drops `null` fields from new objects: a `null` means "no such field".
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Replaces the subtree at `sub_path` (`plugins/limit-count`) with `value`,
/// creating missing objects on the way. Err names the part of the path that
/// is not an object, in APISIX's words.
pub fn at_path(target: &mut Value, sub_path: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = sub_path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segs.split_last() else {
        *target = value;
        return Ok(());
    };
    let mut cur = target;
    for (i, seg) in parents.iter().enumerate() {
        let Value::Object(m) = cur else {
            return Err(format!("invalid sub-path: /{}", segs[..i].join("/")));
        };
        cur = m
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match cur {
        Value::Object(m) => {
            m.insert((*last).to_owned(), value);
            Ok(())
        }
        _ => Err(format!("invalid sub-path: /{}", parents.join("/"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_merge_arrays_replace_nulls_delete() {
        let mut v = json!({"uri": "/a", "methods": ["GET", "POST"], "desc": "x",
            "upstream": {"type": "roundrobin", "nodes": {"n1:80": 1}}});
        merge(
            &mut v,
            json!({"methods": ["PUT"], "desc": null,
                "upstream": {"nodes": {"n2:80": 2}}, "labels": {"a": "b", "gone": null}}),
        );
        assert_eq!(
            v,
            json!({"uri": "/a", "methods": ["PUT"],
                "upstream": {"type": "roundrobin", "nodes": {"n1:80": 1, "n2:80": 2}},
                "labels": {"a": "b"}})
        );
    }

    #[test]
    fn a_sub_path_replaces_its_subtree() {
        let mut v = json!({"plugins": {"a": {"x": 1}, "b": {}}, "uri": "/a"});
        at_path(&mut v, "plugins", json!({"c": {}})).unwrap();
        assert_eq!(v, json!({"plugins": {"c": {}}, "uri": "/a"}));
        at_path(&mut v, "plugins/d/e", json!(2)).unwrap();
        assert_eq!(v["plugins"]["d"], json!({"e": 2}));
        at_path(&mut v, "uri", json!("/b")).unwrap();
        assert_eq!(v["uri"], "/b");
        assert_eq!(
            at_path(&mut v, "uri/x", json!(1)),
            Err("invalid sub-path: /uri".into())
        );
    }
}
