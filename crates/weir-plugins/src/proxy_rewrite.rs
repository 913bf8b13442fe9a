//! `proxy-rewrite`: changes the request sent upstream, as APISIX's
//! `proxy-rewrite` (priority 1008, rewrite phase): its path (`uri`, or
//! `regex_uri` pairs), `method`, `host`, and header fields (`headers.add`,
//! `headers.set`, `headers.remove`, applied in that order; a flat map is
//! `set`). Values take `$variables` (`$remote_addr`, `$http_x_user`,
//! `$arg_id`...) and, after a `regex_uri` match, its captures `$1`..`$9`.
//!
//! The client's query string is kept: appended to the new path (after `&`
//! when the new path has its own query), as APISIX does.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, RequestCtx,
};

use crate::template::Template;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "proxy-rewrite",
    priority: 1008,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    uri: Option<String>,
    regex_uri: Option<Vec<String>>,
    method: Option<String>,
    host: Option<String>,
    headers: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    use_real_request_uri_unsafe: bool,
}

/// A header edit's value.
struct Edit {
    name: HeaderName,
    value: Template,
}

struct ProxyRewrite {
    uri: Option<Template>,
    regex_uri: Vec<(Regex, Template)>,
    method: Option<Method>,
    host: Option<Template>,
    add: Vec<Edit>,
    set: Vec<Edit>,
    remove: Vec<HeaderName>,
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND", "LOCK",
    "UNLOCK", "PATCH", "TRACE",
];

fn header_name(name: &str, at: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::at(at, "not a valid header field name"))
}

fn edits(map: &serde_json::Map<String, Value>, at: &str) -> Result<Vec<Edit>, ConfigError> {
    map.iter()
        .map(|(name, v)| {
            let field = format!("{at}.{name}");
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(ConfigError::at(field, "must be a string or a number")),
            };
            Ok(Edit {
                name: header_name(name, &field)?,
                value: Template::parse(&text),
            })
        })
        .collect()
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if c.use_real_request_uri_unsafe {
        return Err(ConfigError::at(
            "use_real_request_uri_unsafe",
            "not supported by weir (the path sent upstream is the normalised one or the rewritten one)",
        ));
    }
    if c.uri.is_some() && c.regex_uri.is_some() {
        return Err(ConfigError::at(
            "regex_uri",
            "either `uri` or `regex_uri`, not both",
        ));
    }
    let uri = match &c.uri {
        Some(u) if !u.starts_with('/') && !u.starts_with('$') => {
            return Err(ConfigError::at(
                "uri",
                "must start with `/` (or a `$variable`)",
            ))
        }
        Some(u) => Some(Template::parse(u)),
        None => None,
    };
    let mut regex_uri = Vec::new();
    if let Some(pairs) = &c.regex_uri {
        if pairs.is_empty() || pairs.len() % 2 != 0 {
            return Err(ConfigError::at(
                "regex_uri",
                "must be pairs: a regular expression, then its replacement (an even, non-zero count)",
            ));
        }
        for (i, pair) in pairs.chunks(2).enumerate() {
            let re = Regex::new(&pair[0]).map_err(|e| {
                ConfigError::at(
                    format!("regex_uri[{}]", i * 2),
                    format!("invalid regular expression: {e}"),
                )
            })?;
            regex_uri.push((re, Template::parse(&pair[1])));
        }
    }
    let method = match &c.method {
        Some(m) if METHODS.contains(&m.as_str()) => Some(
            Method::from_bytes(m.as_bytes())
                .map_err(|_| ConfigError::at("method", "not a method"))?,
        ),
        Some(_) => {
            return Err(ConfigError::at(
                "method",
                format!("must be one of {}", METHODS.join(", ")),
            ))
        }
        None => None,
    };
    let (mut add, mut set, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(h) = &c.headers {
        let structured = ["add", "set", "remove"].iter().any(|k| h.contains_key(*k));
        if structured {
            for (k, v) in h {
                let at = format!("headers.{k}");
                match (k.as_str(), v) {
                    ("add", Value::Object(m)) => add = edits(m, &at)?,
                    ("set", Value::Object(m)) => set = edits(m, &at)?,
                    ("remove", Value::Array(names)) => {
                        for (i, n) in names.iter().enumerate() {
                            let at = format!("{at}[{i}]");
                            let n = n
                                .as_str()
                                .ok_or_else(|| ConfigError::at(&at, "must be a string"))?;
                            remove.push(header_name(n, &at)?);
                        }
                    }
                    ("add" | "set", _) => return Err(ConfigError::at(at, "must be an object")),
                    ("remove", _) => return Err(ConfigError::at(at, "must be a list")),
                    _ => return Err(ConfigError::at(
                        at,
                        "unknown field: with `add`, `set` or `remove`, `headers` takes only those",
                    )),
                }
            }
        } else {
            set = edits(h, "headers")?;
        }
    }
    Ok(Arc::new(ProxyRewrite {
        uri,
        regex_uri,
        method,
        host: c.host.as_deref().map(Template::parse),
        add,
        set,
        remove,
    }))
}

impl Plugin for ProxyRewrite {
    fn rewrite(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        let path = ctx.view().path().to_owned();
        let query = ctx.view().query().map(str::to_owned);
        let mut captured: Option<(usize, String)> = None;
        let new_path = match (&self.uri, self.regex_uri.is_empty()) {
            (Some(t), _) => Some(t.render(ctx, None)),
            (None, false) => self
                .regex_uri
                .iter()
                .enumerate()
                .find_map(|(i, (re, tpl))| {
                    let caps = re.captures(&path)?;
                    captured = Some((i, path.clone()));
                    let mut out = String::new();
                    out.push_str(&path[..caps.get(0).map_or(0, |m| m.start())]);
                    out.push_str(&tpl.render(ctx, Some(&caps)));
                    out.push_str(&path[caps.get(0).map_or(path.len(), |m| m.end())..]);
                    Some(out)
                }),
            (None, true) => None,
        };
        if let Some(p) = new_path {
            let target = match &query {
                Some(q) if p.contains('?') => format!("{p}&{q}"),
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            ctx.set_upstream_target(target);
        }
        // Captures for header values: the regex_uri pair that matched.
        let caps_source = captured
            .as_ref()
            .map(|(i, p)| (&self.regex_uri[*i].0, p.as_str()));
        let caps = caps_source.and_then(|(re, p)| re.captures(p));
        if let Some(m) = &self.method {
            ctx.set_upstream_method(m.clone());
        }
        if let Some(h) = &self.host {
            if let Ok(v) = HeaderValue::from_str(&h.render(ctx, caps.as_ref())) {
                ctx.set_upstream_host(v);
            }
        }
        for e in &self.add {
            if let Ok(v) = HeaderValue::from_str(&e.value.render(ctx, caps.as_ref())) {
                ctx.append_header(e.name.clone(), v);
            }
        }
        for e in &self.set {
            let value = e.value.render(ctx, caps.as_ref());
            if value.is_empty() {
                // APISIX: setting an empty value removes the field.
                ctx.remove_header(e.name.clone());
            } else if let Ok(v) = HeaderValue::from_str(&value) {
                ctx.set_header(e.name.clone(), v);
            }
        }
        for name in &self.remove {
            ctx.remove_header(name.clone());
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn configuration_errors_name_the_field() {
        assert_eq!(config_error(&SPEC, json!({"uri": "x"})).path, "uri");
        assert_eq!(
            config_error(&SPEC, json!({"regex_uri": ["^/a"]})).path,
            "regex_uri"
        );
        assert_eq!(
            config_error(&SPEC, json!({"regex_uri": ["^/a", "/b", "(", "/c"]})).path,
            "regex_uri[2]"
        );
        assert_eq!(
            config_error(&SPEC, json!({"method": "FETCH"})).path,
            "method"
        );
        assert_eq!(
            config_error(&SPEC, json!({"headers": {"add": []}})).path,
            "headers.add"
        );
        assert_eq!(
            config_error(&SPEC, json!({"headers": {"set": {"bad name": "1"}}})).path,
            "headers.set.bad name"
        );
        assert_eq!(
            config_error(&SPEC, json!({"headers": {"add": {}, "other": 1}})).path,
            "headers.other"
        );
    }
}
