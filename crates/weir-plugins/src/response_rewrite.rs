//! `response-rewrite`: changes the response the client gets, as APISIX's
//! `response-rewrite` (priority 899, header and body filters): its status
//! (`status_code`), header fields (`headers`: `add`, then `set`, then
//! `remove`; a flat map is `set`; values take response `$variables`), and
//! its body: replaced whole (`body`, `body_base64`) or edited by regular
//! expressions (`filters`, each `once` or `global`). `vars` limits it to the
//! responses it matches. It applies to a node's answers and to weir's own
//! (a 404, a plugin's 401).
//!
//! `filters` hold the body until it is complete, at most
//! `max_resp_body_size` bytes: a longer body is sent as it came from that
//! point on, unfiltered (APISIX cuts it off there; weir never drops data).
//! A gzip- or deflate-encoded body is decoded, filtered and encoded again
//! (its decoded size is bounded the same way); a body in another encoding
//! passes unfiltered.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::Value;
use weir_config::vars::{VarLookup, Vars};
use weir_plugin::{
    parse_config, BodyFilter, BuildCtx, ConfigError, Phase, Phases, Plugin, PluginSpec, ResponseCtx,
};

use crate::template::Template;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "response-rewrite",
    priority: 899,
    phases: Phases::of(&[Phase::ResponseHeaders, Phase::ResponseBody]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// APISIX's default `max_resp_body_size`: 64 MiB.
const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    status_code: Option<u16>,
    body: Option<String>,
    #[serde(default)]
    body_base64: bool,
    headers: Option<serde_json::Map<String, Value>>,
    vars: Option<Value>,
    filters: Option<Vec<FilterConf>>,
    max_resp_body_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterConf {
    regex: String,
    #[serde(default)]
    scope: Scope,
    replace: String,
    #[serde(default = "default_options")]
    options: String,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Scope {
    #[default]
    Once,
    Global,
}

fn default_options() -> String {
    "jo".to_owned()
}

/// One body edit: a regular expression and its replacement.
#[derive(Debug)]
struct Substitution {
    regex: Regex,
    /// In the regex crate's syntax (`${1}`), from nginx's (`$1`).
    replace: String,
    global: bool,
}

struct ResponseRewrite {
    status: Option<u16>,
    body: Option<bytes::Bytes>,
    filters: Arc<[Substitution]>,
    max_body: usize,
    vars: Option<Vars>,
    add: Vec<(HeaderName, Template)>,
    set: Vec<(HeaderName, Template)>,
    remove: Vec<HeaderName>,
}

/// What a response variable condition or template sees.
struct RespVars<'a, 'b>(&'a ResponseCtx<'b>);

impl VarLookup for RespVars<'_, '_> {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.var(name)
    }
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if let Some(s) = c.status_code {
        if !(200..=598).contains(&s) {
            return Err(ConfigError::at(
                "status_code",
                "must be between 200 and 598",
            ));
        }
    }
    if c.body.is_some() && c.filters.is_some() {
        return Err(ConfigError::at(
            "filters",
            "either `body` or `filters`, not both",
        ));
    }
    let body = match (&c.body, c.body_base64) {
        (Some(b), true) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .filter(|d| !d.is_empty())
                .ok_or_else(|| ConfigError::at("body", "invalid base64 content"))?
                .into(),
        ),
        (None, true) => return Err(ConfigError::at("body", "invalid base64 content")),
        (Some(b), false) => Some(bytes::Bytes::from(b.clone())),
        (None, false) => None,
    };
    let max_body = match c.max_resp_body_size {
        Some(0) => return Err(ConfigError::at("max_resp_body_size", "must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_BODY,
    };
    let mut filters = Vec::new();
    if let Some(list) = &c.filters {
        if list.is_empty() {
            return Err(ConfigError::at("filters", "must have at least one item"));
        }
        for (i, f) in list.iter().enumerate() {
            filters.push(substitution(f, &format!("filters[{i}]"))?);
        }
    }
    let vars = match &c.vars {
        None => None,
        Some(v) => {
            let vars = Vars::from_value_any_names(v)
                .map_err(|e| ConfigError::at(format!("vars{}", e.path), e.message))?;
            response_vars_only(vars.var_names().into_iter(), "vars")?;
            Some(vars)
        }
    };
    let (mut add, mut set, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(h) = &c.headers {
        parse_headers(h, &mut add, &mut set, &mut remove)?;
    }
    Ok(Arc::new(ResponseRewrite {
        status: c.status_code,
        body,
        filters: filters.into(),
        max_body,
        vars,
        add,
        set,
        remove,
    }))
}

/// Refuses variables a response does not have (a request's header, its
/// query arguments...): naming them would always read as absent.
fn response_vars_only<'a>(
    mut names: impl Iterator<Item = &'a str>,
    at: &str,
) -> Result<(), ConfigError> {
    match names.find(|n| !weir_plugin::vars::is_response_var(n)) {
        None => Ok(()),
        Some(name) => Err(ConfigError::at(
            at,
            format!(
                "`{name}` is not a response variable; response-rewrite sees status, upstream_status, upstream_http_<name>, sent_http_<name>, consumer_name, consumer_group_id and hostname"
            ),
        )),
    }
}

fn substitution(f: &FilterConf, at: &str) -> Result<Substitution, ConfigError> {
    if f.regex.is_empty() {
        return Err(ConfigError::at(format!("{at}.regex"), "must not be empty"));
    }
    let mut builder = RegexBuilder::new(&f.regex);
    // PCRE's default: `.` does not match a newline, `^`/`$` anchor the text.
    builder.unicode(false);
    for flag in f.options.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            'u' => builder.unicode(true),
            // nginx's compile-once, JIT, DFA and "match at start only"
            // concern how PCRE runs, not what matches (`a` excepted).
            'j' | 'o' | 'd' | 'J' => &mut builder,
            other => {
                return Err(ConfigError::at(
                    format!("{at}.options"),
                    format!("unknown regex option `{other}` (known: i, m, s, x, u, j, o, d, J)"),
                ))
            }
        };
    }
    let regex = builder.build().map_err(|e| {
        ConfigError::at(
            format!("{at}.regex"),
            format!("regex \"{}\" validation failed: {e}", f.regex),
        )
    })?;
    Ok(Substitution {
        regex,
        replace: nginx_replacement(&f.replace),
        global: f.scope == Scope::Global,
    })
}

/// nginx's replacement syntax (`$1`, `${1}`, `$$`) in the regex crate's:
/// a capture number always ends where its digits end (`$1a` is `$1` then
/// `a`), and a `$` that names no capture is literal.
fn nginx_replacement(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("${");
            out.push_str(&after[..digits]);
            out.push('}');
            rest = &after[digits..];
        } else if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) if end > 0 && inner[..end].bytes().all(|b| b.is_ascii_digit()) => {
                    out.push_str("${");
                    out.push_str(&inner[..end]);
                    out.push('}');
                    rest = &inner[end + 1..];
                }
                _ => {
                    out.push_str("$$");
                    rest = after;
                }
            }
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = tail;
        } else {
            out.push_str("$$");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn parse_headers(
    h: &serde_json::Map<String, Value>,
    add: &mut Vec<(HeaderName, Template)>,
    set: &mut Vec<(HeaderName, Template)>,
    remove: &mut Vec<HeaderName>,
) -> Result<(), ConfigError> {
    let structured = ["add", "set", "remove"]
        .iter()
        .any(|k| h.get(*k).is_some_and(|v| v.is_array() || v.is_object()));
    if !structured {
        return set_map(h, "headers", set);
    }
    for key in h.keys() {
        if !matches!(key.as_str(), "add" | "set" | "remove") {
            return Err(ConfigError::at(
                format!("headers.{key}"),
                "unknown field (expected `add`, `set` or `remove`)",
            ));
        }
    }
    if let Some(v) = h.get("add") {
        let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            ConfigError::at("headers.add", "must be a non-empty list of \"name: value\"")
        })?;
        for (i, item) in items.iter().enumerate() {
            let at = format!("headers.add[{i}]");
            let (name, value) = item
                .as_str()
                .and_then(|s| s.split_once(':'))
                .ok_or_else(|| ConfigError::at(&at, "must be a \"name: value\" string"))?;
            add.push((header_name(name.trim(), &at)?, template(value.trim(), &at)?));
        }
    }
    if let Some(v) = h.get("set") {
        let map = v
            .as_object()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ConfigError::at("headers.set", "must be a non-empty object"))?;
        set_map(map, "headers.set", set)?;
    }
    if let Some(v) = h.get("remove") {
        let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            ConfigError::at("headers.remove", "must be a non-empty list of names")
        })?;
        for (i, item) in items.iter().enumerate() {
            let at = format!("headers.remove[{i}]");
            let name = item
                .as_str()
                .ok_or_else(|| ConfigError::at(&at, "must be a header field name"))?;
            remove.push(header_name(name, &at)?);
        }
    }
    Ok(())
}

fn set_map(
    map: &serde_json::Map<String, Value>,
    at: &str,
    set: &mut Vec<(HeaderName, Template)>,
) -> Result<(), ConfigError> {
    for (name, v) in map {
        let field = format!("{at}.{name}");
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(ConfigError::at(field, "must be a string or a number")),
        };
        set.push((header_name(name, &field)?, template(&text, &field)?));
    }
    Ok(())
}

fn header_name(name: &str, at: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::at(at, format!("`{name}` is not a valid header field name")))
}

fn template(text: &str, at: &str) -> Result<Template, ConfigError> {
    let t = Template::parse(text);
    response_vars_only(t.var_names(), at)?;
    Ok(t)
}

impl Plugin for ResponseRewrite {
    fn response_headers(&self, resp: &mut ResponseCtx<'_>) {
        if let Some(vars) = &self.vars {
            if !vars.eval(&RespVars(resp)) {
                return;
            }
        }
        if let Some(s) = self.status {
            resp.set_status(s);
        }
        if self.body.is_some() || !self.filters.is_empty() {
            // The body changes: its validators no longer describe it.
            resp.remove_header(http::header::ETAG);
            resp.remove_header(http::header::LAST_MODIFIED);
        }
        if let Some(body) = &self.body {
            resp.remove_header(http::header::CONTENT_ENCODING);
            resp.filter_body(Box::new(Replace {
                body: Some(body.clone()),
            }));
        } else if !self.filters.is_empty() {
            let coding = match resp.header("content-encoding").map(<[u8]>::trim_ascii) {
                None => Some(Coding::Identity),
                Some(c) if c.is_empty() || c.eq_ignore_ascii_case(b"identity") => {
                    Some(Coding::Identity)
                }
                Some(c) if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") => {
                    Some(Coding::Gzip)
                }
                Some(c) if c.eq_ignore_ascii_case(b"deflate") => Some(Coding::Deflate),
                Some(c) => {
                    tracing::debug!(encoding = %String::from_utf8_lossy(c), "response-rewrite: body in an encoding weir cannot decode passes unfiltered");
                    None
                }
            };
            if let Some(coding) = coding {
                resp.filter_body(Box::new(Substitute {
                    filters: self.filters.clone(),
                    max: self.max_body,
                    coding,
                    held: Vec::new(),
                    passing: false,
                }));
            }
        }
        let mut edits: Vec<(HeaderName, HeaderValue, bool)> = Vec::new();
        for (list, append) in [(&self.add, true), (&self.set, false)] {
            for (name, value) in list {
                let text = value.render_vars(|n| resp.var(n).map(Cow::into_owned), None);
                if let Ok(v) = HeaderValue::from_str(&text) {
                    edits.push((name.clone(), v, append));
                }
            }
        }
        for (name, value, append) in edits {
            if append {
                resp.append_header(name, value);
            } else {
                resp.set_header(name, value);
            }
        }
        for name in &self.remove {
            resp.remove_header(name.clone());
        }
    }
}

/// `body`: the node's body is dropped, this one sent instead.
struct Replace {
    body: Option<bytes::Bytes>,
}

impl BodyFilter for Replace {
    fn filter(&mut self, _data: &[u8], _last: bool, out: &mut Vec<u8>) {
        if let Some(b) = self.body.take() {
            out.extend_from_slice(&b);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Deflate,
}

/// `filters`: holds the body (at most `max` bytes), then edits it whole.
struct Substitute {
    filters: Arc<[Substitution]>,
    max: usize,
    coding: Coding,
    held: Vec<u8>,
    /// The body outgrew `max`: the rest passes as it comes.
    passing: bool,
}

impl BodyFilter for Substitute {
    fn filter(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) {
        if self.passing {
            out.extend_from_slice(data);
            return;
        }
        if self.held.len() + data.len() > self.max {
            tracing::warn!(
                max_resp_body_size = self.max,
                "response-rewrite: response body larger than max_resp_body_size; sent unfiltered"
            );
            self.passing = true;
            out.append(&mut self.held);
            out.extend_from_slice(data);
            return;
        }
        self.held.extend_from_slice(data);
        if !last {
            return;
        }
        let held = std::mem::take(&mut self.held);
        match self.rewrite(&held) {
            Some(body) => out.extend_from_slice(&body),
            None => out.extend_from_slice(&held),
        }
    }
}

impl Substitute {
    /// The edited body, in the body's encoding; None: send it as it came
    /// (it does not decode, or decodes to more than `max`).
    fn rewrite(&self, body: &[u8]) -> Option<Vec<u8>> {
        let plain = match self.coding {
            Coding::Identity => Cow::Borrowed(body),
            Coding::Gzip => Cow::Owned(self.decode(flate2::read::MultiGzDecoder::new(body))?),
            Coding::Deflate => Cow::Owned(self.decode(flate2::read::ZlibDecoder::new(body))?),
        };
        let mut text = plain;
        for f in self.filters.iter() {
            let replaced = if f.global {
                f.regex.replace_all(&text, f.replace.as_bytes())
            } else {
                f.regex.replace(&text, f.replace.as_bytes())
            };
            if let Cow::Owned(r) = replaced {
                text = Cow::Owned(r);
            }
        }
        let level = flate2::Compression::default();
        match self.coding {
            Coding::Identity => Some(text.into_owned()),
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(&text).ok()?;
                e.finish().ok()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(&text).ok()?;
                e.finish().ok()
            }
        }
    }

    /// Decodes at most `max` bytes; None when the body does not decode or
    /// decodes to more.
    fn decode(&self, decoder: impl Read) -> Option<Vec<u8>> {
        let mut plain = Vec::new();
        let limit = u64::try_from(self.max)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        match decoder.take(limit).read_to_end(&mut plain) {
            Ok(n) if n <= self.max => Some(plain),
            Ok(_) => {
                tracing::warn!(
                    max_resp_body_size = self.max,
                    "response-rewrite: decoded response body larger than max_resp_body_size; sent unfiltered"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "response-rewrite: response body does not decode; sent unfiltered");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    fn sub(regex: &str, replace: &str, scope: &str, options: &str) -> Substitute {
        let f = FilterConf {
            regex: regex.into(),
            scope: if scope == "global" {
                Scope::Global
            } else {
                Scope::Once
            },
            replace: replace.into(),
            options: options.into(),
        };
        Substitute {
            filters: vec![substitution(&f, "filters[0]").unwrap()].into(),
            max: 64,
            coding: Coding::Identity,
            held: Vec::new(),
            passing: false,
        }
    }

    fn run(f: &mut dyn BodyFilter, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            f.filter(p, false, &mut out);
        }
        f.filter(b"", true, &mut out);
        out
    }

    #[test]
    fn filters_replace_once_or_everywhere_across_pieces() {
        assert_eq!(
            run(&mut sub("o", "0", "once", "jo"), &[b"fo", b"o"]),
            b"f0o"
        );
        assert_eq!(
            run(&mut sub("o", "0", "global", "jo"), &[b"fo", b"o"]),
            b"f00"
        );
        assert_eq!(
            run(
                &mut sub("(\\w+)@(\\w+)", "$2 at $1", "once", "jo"),
                &[b"me@host"]
            ),
            b"host at me"
        );
        assert_eq!(
            run(&mut sub("HELLO", "bye", "once", "i"), &[b"hello"]),
            b"bye"
        );
    }

    #[test]
    fn a_body_beyond_the_bound_passes_unfiltered_and_whole() {
        let mut f = sub("a", "b", "global", "jo");
        let big = vec![b'a'; 100];
        let out = run(&mut f, &[&big[..40], &big[40..]]);
        assert_eq!(out, big, "nothing lost, nothing filtered");
    }

    #[test]
    fn gzip_bodies_are_decoded_filtered_and_encoded_again() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"hello world").unwrap();
        let gz = e.finish().unwrap();
        let mut f = sub("world", "weir", "once", "jo");
        f.coding = Coding::Gzip;
        f.max = 1024;
        let out = run(&mut f, &[&gz]);
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello weir");

        // Not gzip after all: sent as it came.
        let mut f = sub("x", "y", "once", "jo");
        f.coding = Coding::Gzip;
        assert_eq!(run(&mut f, &[b"xxx"]), b"xxx");
    }

    #[test]
    fn nginx_replacements_translate() {
        assert_eq!(nginx_replacement("$1a"), "${1}a");
        assert_eq!(nginx_replacement("${2}"), "${2}");
        assert_eq!(nginx_replacement("cost $$5 $x"), "cost $$5 $$x");
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let cases = [
            (json!({"status_code": 100}), "status_code"),
            (
                json!({"body": "x", "filters": [{"regex": "a", "replace": "b"}]}),
                "filters",
            ),
            (json!({"body": "%%%", "body_base64": true}), "body"),
            (
                json!({"filters": [{"regex": "(", "replace": "b"}]}),
                "filters[0].regex",
            ),
            (
                json!({"filters": [{"regex": "a", "replace": "b", "options": "q"}]}),
                "filters[0].options",
            ),
            (
                json!({"filters": [{"regex": "a", "replace": "b", "scope": "all"}]}),
                "filters[0].scope",
            ),
            (json!({"filters": []}), "filters"),
            (json!({"max_resp_body_size": 0}), "max_resp_body_size"),
            (json!({"vars": [["http_x", "==", "1"]]}), "vars"),
            (
                json!({"headers": {"set": {"X-A": "$arg_a"}}}),
                "headers.set.X-A",
            ),
            (json!({"headers": {"add": ["no colon"]}}), "headers.add[0]"),
            (
                json!({"headers": {"add": ["X-A: 1"], "sett": {}}}),
                "headers.sett",
            ),
            (json!({"headers": {"X A": "1"}}), "headers.X A"),
            (json!({"bodyy": "x"}), "bodyy"),
        ];
        for (conf, path) in cases {
            let e = config_error(&SPEC, conf.clone());
            assert!(e.path.starts_with(path), "{conf}: {e}");
        }
    }
}
