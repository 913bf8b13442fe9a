//! `labelSelector` and `fieldSelector` parsing and matching, as the API server does
//! them for list and watch.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold (comma = AND).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_err(term: &str, why: &str) -> String {
    format!("unable to parse requirement: {term:?}: {why}")
}

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for term in split_top_level(s) {
            let t = term.trim();
            if t.is_empty() {
                return Err(parse_err(t, "found '', expected: identifier"));
            }
            let req = if let Some(key) = t.strip_prefix('!') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(parse_err(t, "invalid label key"));
                }
                Requirement::NotExists(key.to_string())
            } else if let Some(open) = t.find('(') {
                let head: Vec<&str> = t[..open].split_whitespace().collect();
                let Some(inner) = t[open + 1..].strip_suffix(')') else {
                    return Err(parse_err(t, "found end of string, expected: ')'"));
                };
                let [key, op] = head[..] else {
                    return Err(parse_err(t, "expected: key in|notin (values)"));
                };
                if !valid_key(key) {
                    return Err(parse_err(t, "invalid label key"));
                }
                let values: Vec<String> = inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if values.iter().any(|v| !valid_value(v)) {
                    return Err(parse_err(t, "invalid label value"));
                }
                match op {
                    "in" => Requirement::In(key.to_string(), values),
                    "notin" => Requirement::NotIn(key.to_string(), values),
                    _ => return Err(parse_err(t, "expected: in, notin")),
                }
            } else if let Some((k, v)) = t.split_once("!=") {
                Self::kv(t, k, v, false)?
            } else if let Some((k, v)) = t.split_once("==") {
                Self::kv(t, k, v, true)?
            } else if let Some((k, v)) = t.split_once('=') {
                Self::kv(t, k, v, true)?
            } else if t.contains(['<', '>']) {
                // gt/lt operators exist in the real grammar; not needed by weir.
                return Err(parse_err(
                    t,
                    "operators > and < are not supported by the fake",
                ));
            } else {
                if !valid_key(t) {
                    return Err(parse_err(t, "invalid label key"));
                }
                Requirement::Exists(t.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    fn kv(term: &str, k: &str, v: &str, eq: bool) -> Result<Requirement, String> {
        let (k, v) = (k.trim(), v.trim());
        if !valid_key(k) {
            return Err(parse_err(term, "invalid label key"));
        }
        if !valid_value(v) {
            return Err(parse_err(term, "invalid label value"));
        }
        Ok(if eq {
            Requirement::Eq(k.into(), v.into())
        } else {
            Requirement::NotEq(k.into(), v.into())
        })
    }

    /// True if there are no requirements (matches everything).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches the `metadata.labels` of `obj`.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector over `metadata.name` and `metadata.namespace`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(&'static str, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(reqs));
        }
        for term in s.split(',') {
            let t = term.trim();
            let (field, eq, value) = if let Some((f, v)) = t.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = t.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = t.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{t}'"));
            };
            let field = match field.trim() {
                "metadata.name" => "name",
                "metadata.namespace" => "namespace",
                other => return Err(format!("field label not supported: {other}")),
            };
            reqs.push((field, eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let meta = obj.get("metadata");
        self.0.iter().all(|(field, eq, value)| {
            let actual = meta
                .and_then(|m| m.get(*field))
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "cart", "namespace": "shop", "labels": labels}})
    }

    #[test]
    fn label_selector_grammar() {
        let o = obj(json!({"app": "cart", "tier": "backend"}));
        let cases = [
            ("app=cart", true),
            ("app==cart", true),
            ("app!=cart", false),
            ("app!=web", true),
            ("missing!=x", true),
            ("app in (cart, web)", true),
            ("app in (web)", false),
            ("app notin (web,db)", true),
            ("missing notin (web)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=cart,tier=backend", true),
            ("app=cart,tier in (frontend)", false),
            ("kubernetes.io/service-name=cart", false),
            ("", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&o), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("app=cart,").is_err());
    }

    #[test]
    fn field_selector_grammar() {
        let o = obj(json!({}));
        let ok = |s: &str| FieldSelector::parse(s).unwrap().matches(&o);
        assert!(ok("metadata.namespace=shop"));
        assert!(!ok("metadata.namespace!=shop"));
        assert!(ok("metadata.name==cart,metadata.namespace!=other"));
        assert!(FieldSelector::parse("spec.foo=bar")
            .unwrap_err()
            .contains("field label not supported: spec.foo"));
    }
}
