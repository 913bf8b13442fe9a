//! APISIX standalone-file conventions: the `#END` marker that tells a
//! complete file from a half-written one, and `${{VAR}}` /
//! `${{VAR:=default}}` environment substitution.
//!
//! **The `#END` rule.** A YAML document is *standalone style* when its file
//! name is `apisix.yaml` (or `apisix.yml`), or when it has a line that is
//! exactly `#END` (surrounding spaces allowed). Such a document must contain
//! that line: without it the file is refused as incomplete ("no #END
//! marker"), so a file caught while being written is never applied. After
//! the marker only blank and comment lines may follow (APISIX requires the
//! marker at the very end). JSON documents never need the marker (as
//! APISIX's `apisix.json`), and other YAML files are unaffected.
//!
//! **Substitution.** As APISIX's standalone mode (`apisix/cli/file.lua`):
//! in YAML, `${{NAME}}` is replaced in the raw text before parsing, so YAML
//! quoting decides the type (`port: ${{P}}` is a number, `"${{P}}"` a
//! string); in JSON it is replaced inside string values and keys after
//! parsing, and a string that was entirely substituted becomes a number or
//! boolean when it reads as one. `NAME` is `[A-Za-z0-9_]+`; `${{NAME:=x}}`
//! uses `x` (trimmed) when the variable is unset. An unset variable without
//! a default is an error naming it. Unlike APISIX, lines that are YAML
//! comments are left alone. weir's own `${VAR}` (in `discovery`) is
//! unrelated and unchanged.

use serde_json::Value;

use crate::error::FieldError;
use crate::path;

/// The marker line.
pub const END_MARKER: &str = "#END";

/// Why a standalone-style text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerError {
    /// The document is standalone style but has no `#END` line.
    Missing,
    /// A non-comment line follows the marker (1-based line number).
    TrailingContent(usize),
}

/// Whether `text` (read from `origin`) follows the `#END` rule.
pub fn is_standalone_style(text: &str, origin: &str) -> bool {
    if text.trim_start().starts_with('{') {
        return false;
    }
    let name = origin.rsplit(['/', '\\']).next().unwrap_or(origin);
    matches!(name, "apisix.yaml" | "apisix.yml") || marker_line(text).is_some()
}

/// Index (0-based) of the first `#END` line.
fn marker_line(text: &str) -> Option<usize> {
    text.lines().position(|l| l.trim() == END_MARKER)
}

/// The part of `text` to parse: everything before the `#END` line for a
/// standalone-style document, the whole text otherwise.
pub fn body<'a>(text: &'a str, origin: &str) -> Result<&'a str, MarkerError> {
    if !is_standalone_style(text, origin) {
        return Ok(text);
    }
    let Some(marker) = marker_line(text) else {
        return Err(MarkerError::Missing);
    };
    let mut offset = 0;
    let mut end = text.len();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == marker {
            end = offset;
        } else if i > marker {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                return Err(MarkerError::TrailingContent(i + 1));
            }
        }
        offset += line.len();
    }
    Ok(&text[..end])
}

/// One `${{...}}` reference: its byte range in the text and what replaces it.
fn resolve_ref(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let inner = inner.trim();
    let (name, default) = match inner.split_once(":=") {
        Some((n, d)) => (n.trim(), Some(d.trim())),
        None => (inner, None),
    };
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "${{{{{inner}}}}}: not a variable reference (${{{{NAME}}}} or ${{{{NAME:=default}}}}, NAME of letters, digits and _)"
        ));
    }
    match env(name).or_else(|| default.map(str::to_owned)) {
        Some(v) => Ok(v),
        None => Err(format!(
            "environment variable {name} is not set (write ${{{{{name}:=default}}}} to give a default)"
        )),
    }
}

/// Replaces every `${{...}}` in `s`; returns the new string and whether
/// anything was replaced. Every problem is pushed to `errors`.
fn substitute(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut used = false;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        match resolve_ref(&after[..end], env) {
            Ok(v) => out.push_str(&v),
            Err(e) => errors.push(e),
        }
        used = true;
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    (out, used)
}

/// Substitutes `${{...}}` in YAML text, line by line, leaving comment lines
/// alone. Errors are `line N: ...`.
pub fn substitute_text(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<FieldError>> {
    if !text.contains("${{") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${{") {
            out.push_str(line);
            continue;
        }
        let mut line_errors = Vec::new();
        let (new, _) = substitute(line, env, &mut line_errors);
        out.push_str(&new);
        errors.extend(
            line_errors
                .into_iter()
                .map(|e| FieldError::new("", format!("line {}: {e}", i + 1))),
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Substitutes `${{...}}` in the string values and keys of a JSON tree, as
/// APISIX does for `apisix.json`. Errors carry the field path.
pub fn substitute_value(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    walk(value, "", env, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn walk(
    value: &mut Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<FieldError>,
) {
    fn push(errors: &mut Vec<FieldError>, at: &str, list: Vec<String>) {
        errors.extend(list.into_iter().map(|e| FieldError::new(at, e)));
    }
    match value {
        Value::String(s) if s.contains("${{") => {
            let mut errs = Vec::new();
            let (new, used) = substitute(s, env, &mut errs);
            push(errors, at, errs);
            *value = if used { typed(new) } else { Value::String(new) };
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path::index(at, i), env, errors);
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                let key = if k.contains("${{") {
                    let mut errs = Vec::new();
                    let (new, _) = substitute(&k, env, &mut errs);
                    push(errors, &path::key(at, &k), errs);
                    new
                } else {
                    k
                };
                walk(&mut v, &path::key(at, &key), env, errors);
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

/// APISIX turns a substituted string that reads as a number or boolean into one.
fn typed(s: String) -> Value {
    if let Some(n) = crate::vars::lua_number(&s) {
        let t = s.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Value::from(i);
        }
        if let Some(f) = serde_json::Number::from_f64(n) {
            return Value::Number(f);
        }
    }
    match s.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.7".into()),
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            "FLAG" => Some("true".into()),
            _ => None,
        }
    }

    #[test]
    fn text_substitution() {
        let out = substitute_text(
            "a: ${{HOST}}:${{ PORT }}\nb: \"${{NOPE:= x y }}\"\nc: ${{EMPTY:=d}}\n",
            &env,
        )
        .unwrap();
        assert_eq!(out, "a: 10.0.0.7:8080\nb: \"x y\"\nc: \n");
        let out = substitute_text("# ${{UNSET}} in a comment\nx: 1\n", &env).unwrap();
        assert!(out.contains("${{UNSET}}"), "comment lines are left alone");
        let errs = substitute_text("a: 1\nb: ${{UNSET}}\nc: ${{A-B}}\n", &env).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].message,
            "line 2: environment variable UNSET is not set (write ${{UNSET:=default}} to give a default)"
        );
        assert!(
            errs[1]
                .message
                .starts_with("line 3: ${{A-B}}: not a variable reference"),
            "{}",
            errs[1]
        );
        assert_eq!(
            substitute_text("x: ${{ unterminated", &env).unwrap(),
            "x: ${{ unterminated"
        );
    }

    #[test]
    fn json_substitution_types_whole_values() {
        let mut v = json!({"a": "${{PORT}}", "b": "host=${{HOST}}", "c": ["${{FLAG}}"], "${{HOST}}:80": 1, "d": "${{UNSET}}"});
        let errs = substitute_value(&mut v, &env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "d");
        assert_eq!(v["a"], json!(8080));
        assert_eq!(v["b"], json!("host=10.0.0.7"));
        assert_eq!(v["c"][0], json!(true));
        assert_eq!(v["10.0.0.7:80"], json!(1));
    }

    #[test]
    fn end_marker_rule() {
        assert!(!is_standalone_style("routes: []\n", "weir.yaml"));
        assert!(is_standalone_style(
            "routes: []\n",
            "/etc/apisix/conf/apisix.yaml"
        ));
        assert!(is_standalone_style("routes: []\n#END\n", "x.yaml"));
        assert!(
            !is_standalone_style("{\"routes\": []}", "apisix.yaml"),
            "JSON needs no marker"
        );
        assert_eq!(
            body("routes: []\n", "apisix.yaml"),
            Err(MarkerError::Missing)
        );
        assert_eq!(
            body("routes: []\n#END\n", "apisix.yaml"),
            Ok("routes: []\n")
        );
        assert_eq!(body("a: 1\n  #END  \n\n# bye\n", "x.yml"), Ok("a: 1\n"));
        assert_eq!(
            body("a: 1\n#END\nb: 2\n", "x.yml"),
            Err(MarkerError::TrailingContent(3))
        );
        assert_eq!(body("a: 1\n", "weir.yaml"), Ok("a: 1\n"));
        assert_eq!(
            body("a: 1 #END\n", "weir.yaml"),
            Ok("a: 1 #END\n"),
            "only a whole line counts"
        );
    }
}
