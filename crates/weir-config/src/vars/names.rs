//! The request variables expressions may read, and `$var` templates
//! (`hash_on: vars_combinations` keys such as `$host$remote_addr`).

use std::fmt;

use super::VarLookup;

/// Variables known by their full name. The engine's [`VarLookup`] answers
/// these (and the prefixed ones); anything else is a configuration error.
pub const VAR_NAMES: &[&str] = &[
    "uri",
    "request_uri",
    "args",
    "query_string",
    "host",
    "server_name",
    "hostname",
    "remote_addr",
    "remote_port",
    "server_addr",
    "server_port",
    "request_method",
    "scheme",
    "server_protocol",
    "content_type",
    "content_length",
    "route_id",
    "route_name",
    "service_id",
    "service_name",
    "consumer_name",
    "consumer_group_id",
];

/// Variable families: `arg_NAME` (query argument), `http_NAME` (request
/// header; `_` stands for `-`, case-insensitive), `cookie_NAME`.
pub const VAR_PREFIXES: &[&str] = &["arg_", "http_", "cookie_"];

/// Whether `name` is a variable weir knows.
pub fn is_known_var(name: &str) -> bool {
    VAR_NAMES.contains(&name)
        || VAR_PREFIXES.iter().any(|p| {
            name.strip_prefix(p).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
        })
}

/// The message for an unknown variable.
pub(crate) fn unknown_var(name: &str) -> String {
    format!(
        "unknown variable {name:?}; known: {}, and arg_NAME, http_NAME, cookie_NAME",
        VAR_NAMES.join(", ")
    )
}

/// A string with `$name` / `${name}` references to request variables, as
/// APISIX's `vars_combinations` hash key: `$host$remote_addr`, `${arg_a}-x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarsTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl VarsTemplate {
    /// Parses a template; every referenced variable must be known, and there
    /// must be at least one.
    pub fn parse(s: &str) -> Result<VarsTemplate, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            text.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("{s:?}: unterminated ${{"))?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                return Err(format!("{s:?}: a $ must be followed by a variable name"));
            }
            if !is_known_var(name) {
                return Err(format!("{s:?}: {}", unknown_var(name)));
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = next;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return Err(format!(
                "{s:?} names no variable; write e.g. $host$remote_addr"
            ));
        }
        Ok(VarsTemplate { parts })
    }

    /// The text with every variable replaced by its value (absent: empty).
    pub fn render<L: VarLookup + ?Sized>(&self, vars: &L) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    if let Some(value) = vars.var(v) {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }

    /// The variables referenced, in order.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }
}

impl fmt::Display for VarsTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::Var(v) => write!(f, "${{{v}}}")?,
            }
        }
        Ok(())
    }
}
