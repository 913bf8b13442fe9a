//! `cors`: Cross-Origin Resource Sharing headers, as APISIX's `cors`
//! (priority 4000, rewrite and header_filter phases).
//!
//! Every `OPTIONS` request is answered here with 200 and an empty body (no
//! upstream), as APISIX does. The CORS headers are decided in the rewrite
//! phase from the request's `Origin` and set on the response, whichever
//! answers it (a node, this plugin, or another plugin's refusal):
//!
//! - `allow_origins`: `*` (any: `Access-Control-Allow-Origin: *`), `**`
//!   (mirrors the request's `Origin`), `null`, one origin (always sent as
//!   configured, so a different `Origin` gets no headers), or a
//!   comma-separated list (the request's `Origin` when listed);
//! - `allow_origins_by_regex` replaces `allow_origins` when set (unanchored
//!   regular expressions, Rust `regex` syntax);
//! - `allow_origins_by_metadata` names entries of the `cors` plugin
//!   metadata's `allow_origins` map (read when the configuration is
//!   loaded);
//! - `allow_methods` and `allow_headers` (`**`: every method; the request's
//!   `Access-Control-Request-Headers`), `expose_headers`, `max_age`,
//!   `allow_credential` (which forbids `*` elsewhere), and
//!   `timing_allow_origins(_by_regex)` for `Timing-Allow-Origin`;
//! - `Vary: Origin` is added unless `allow_origins` is `*`.
//!
//! Not done: with `allow_headers: "**"` and no
//! `Access-Control-Request-Headers`, APISIX removes the node's own
//! `Access-Control-Allow-Headers`; weir leaves it (the request phase cannot
//! remove response fields).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

use crate::ua_restriction::regex_error;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "cors",
    priority: 4000,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Conf {
    allow_origins: String,
    allow_methods: String,
    allow_headers: String,
    expose_headers: Option<String>,
    max_age: i64,
    allow_credential: bool,
    allow_origins_by_regex: Option<Vec<String>>,
    allow_origins_by_metadata: Option<Vec<String>>,
    timing_allow_origins: Option<String>,
    timing_allow_origins_by_regex: Option<Vec<String>>,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            allow_origins: "*".into(),
            allow_methods: "*".into(),
            allow_headers: "*".into(),
            expose_headers: None,
            max_age: 5,
            allow_credential: false,
            allow_origins_by_regex: None,
            allow_origins_by_metadata: None,
            timing_allow_origins: None,
            timing_allow_origins_by_regex: None,
        }
    }
}

/// The `cors` plugin metadata.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    allow_origins: HashMap<String, String>,
}

/// An `allow_origins` value.
#[derive(Debug, Clone, PartialEq)]
enum Origins {
    /// `*`.
    Any,
    /// `**`.
    Mirror,
    /// One origin (or `null`), sent as it is.
    One(String),
    /// Several, comma-separated.
    List(Vec<String>),
}

impl Origins {
    /// Parses a value matching APISIX's
    /// `^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$`.
    fn parse(s: &str) -> Option<Origins> {
        match s {
            "*" => return Some(Origins::Any),
            "**" => return Some(Origins::Mirror),
            "null" => return Some(Origins::One(s.to_owned())),
            _ => {}
        }
        let valid = |o: &str| {
            o.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !rest.is_empty()
            })
        };
        let parts: Vec<&str> = s.split(',').collect();
        if !parts.iter().all(|p| valid(p)) {
            return None;
        }
        Some(match parts.as_slice() {
            [one] => Origins::One((*one).to_owned()),
            _ => Origins::List(parts.iter().map(|p| (*p).to_owned()).collect()),
        })
    }

    /// APISIX's `process_with_allow_origins`: the value to send for a
    /// request from `origin`, if any.
    fn resolve<'a>(&'a self, origin: Option<&'a str>) -> Option<Cow<'a, str>> {
        match self {
            Origins::Any => Some(Cow::Borrowed("*")),
            Origins::Mirror => match origin {
                None => Some(Cow::Borrowed("*")),
                // A mirrored value with a comma is split into a list, in
                // which the origin itself cannot be.
                Some(o) if o.contains(',') => None,
                Some(o) => Some(Cow::Borrowed(o)),
            },
            Origins::One(o) => Some(Cow::Borrowed(o)),
            Origins::List(list) => origin
                .filter(|o| list.iter().any(|l| l == o))
                .map(Cow::Borrowed),
        }
    }
}

/// APISIX's `match_origins` (two absent values match).
fn matches(origin: Option<&str>, allow: Option<&str>) -> bool {
    origin == allow || allow == Some("*")
}

struct Cors {
    origins: Origins,
    by_regex: Option<Regex>,
    by_metadata: Option<Vec<Origins>>,
    methods: HeaderValue,
    /// `None`: `**`, the request's `Access-Control-Request-Headers`.
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
    credential: bool,
    timing: Option<Origins>,
    timing_by_regex: Option<Regex>,
    /// The configured origins' field values, made once (most answers carry
    /// one of them).
    values: Vec<(String, HeaderValue)>,
}

fn parse_origins(field: &str, s: &str) -> Result<Origins, ConfigError> {
    Origins::parse(s).ok_or_else(|| {
        ConfigError::at(
            field,
            "must be '*', '**', 'null' or comma-separated scheme://host[:port] origins",
        )
    })
}

/// Compiles rules joined by `|`, as APISIX does.
fn joined(field: &str, rules: &Option<Vec<String>>) -> Result<Option<Regex>, ConfigError> {
    let Some(rules) = rules else {
        return Ok(None);
    };
    distinct(field, rules)?;
    for (i, r) in rules.iter().enumerate() {
        Regex::new(r).map_err(|e| ConfigError::at(format!("{field}[{i}]"), regex_error(&e)))?;
    }
    Regex::new(&rules.join("|"))
        .map(Some)
        .map_err(|e| ConfigError::at(field, regex_error(&e)))
}

/// At least one item, each of 1 to 4096 characters, no two alike.
fn distinct(field: &str, items: &[String]) -> Result<(), ConfigError> {
    if items.is_empty() {
        return Err(ConfigError::at(field, "must not be empty"));
    }
    for (i, s) in items.iter().enumerate() {
        if s.is_empty() || s.chars().count() > 4096 {
            return Err(ConfigError::at(
                format!("{field}[{i}]"),
                "must be 1 to 4096 characters",
            ));
        }
        if items[..i].contains(s) {
            return Err(ConfigError::at(format!("{field}[{i}]"), "duplicate item"));
        }
    }
    Ok(())
}

fn header_value(field: &str, s: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(s).map_err(|_| ConfigError::at(field, "not valid in a header field"))
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let origins = parse_origins("allow_origins", &conf.allow_origins)?;
    let timing = match &conf.timing_allow_origins {
        Some(t) => Some(parse_origins("timing_allow_origins", t)?),
        None => None,
    };
    if conf.allow_credential {
        let stars = [
            Some(&conf.allow_origins),
            Some(&conf.allow_methods),
            Some(&conf.allow_headers),
            conf.expose_headers.as_ref(),
            conf.timing_allow_origins.as_ref(),
        ];
        if stars.iter().flatten().any(|s| *s == "*") {
            return Err(ConfigError::whole(
                "you can not set '*' for other option when 'allow_credential' is true",
            ));
        }
    }
    let by_regex = joined("allow_origins_by_regex", &conf.allow_origins_by_regex)?;
    let timing_by_regex = joined(
        "timing_allow_origins_by_regex",
        &conf.timing_allow_origins_by_regex,
    )?;
    let by_metadata = match &conf.allow_origins_by_metadata {
        None => None,
        Some(keys) => {
            distinct("allow_origins_by_metadata", keys)?;
            let meta: Metadata = match ctx.metadata(SPEC.name) {
                None => Metadata {
                    allow_origins: HashMap::new(),
                },
                Some(m) => parse_config(m).map_err(|e| {
                    ConfigError::at(
                        "allow_origins_by_metadata",
                        format!("the cors plugin metadata: {e}"),
                    )
                })?,
            };
            let mut found = Vec::new();
            for key in keys {
                if let Some(v) = meta.allow_origins.get(key) {
                    found.push(parse_origins("allow_origins_by_metadata", v).map_err(|e| {
                        ConfigError::at(
                            e.path,
                            format!(
                                "the cors plugin metadata's allow_origins.{key}: {}",
                                e.message
                            ),
                        )
                    })?);
                }
            }
            Some(found)
        }
    };
    let methods = match conf.allow_methods.as_str() {
        "**" => HeaderValue::from_static("GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"),
        m => header_value("allow_methods", m)?,
    };
    let headers = match conf.allow_headers.as_str() {
        "**" => None,
        h => Some(header_value("allow_headers", h)?),
    };
    let expose = match conf.expose_headers.as_deref() {
        None | Some("") => None,
        Some(e) => Some(header_value("expose_headers", e)?),
    };
    let values = origin_values(&origins);
    Ok(Arc::new(Cors {
        origins,
        by_regex,
        by_metadata,
        methods,
        headers,
        expose,
        max_age: HeaderValue::from(conf.max_age),
        credential: conf.allow_credential,
        values,
        timing,
        timing_by_regex,
    }))
}

/// The field values of the origins `origins` names.
fn origin_values(origins: &Origins) -> Vec<(String, HeaderValue)> {
    let names: Vec<&str> = match origins {
        Origins::Any => vec!["*"],
        Origins::Mirror => Vec::new(),
        Origins::One(o) => vec![o.as_str()],
        Origins::List(l) => l.iter().map(String::as_str).collect(),
    };
    names
        .into_iter()
        .filter_map(|n| HeaderValue::from_str(n).ok().map(|v| (n.to_owned(), v)))
        .collect()
}

impl Cors {
    /// The field value of `origin`: made once for configured origins.
    fn value(&self, origin: &str) -> Option<HeaderValue> {
        match self.values.iter().find(|(o, _)| o == origin) {
            Some((_, v)) => Some(v.clone()),
            None => HeaderValue::from_str(origin).ok(),
        }
    }

    /// APISIX's `process_with_allow_origins_by_metadata`.
    fn by_metadata<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        let list = self.by_metadata.as_ref()?;
        list.iter()
            .any(|o| matches(origin, o.resolve(origin).as_deref()))
            .then_some(origin)
            .flatten()
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if any, as
    /// APISIX's header filter decides it.
    fn allow_origin<'a>(&'a self, origin: Option<&'a str>) -> Option<Cow<'a, str>> {
        let mut allow: Option<Cow<'a, str>> = None;
        let local = match &self.by_metadata {
            None => true,
            Some(_) => {
                allow = self.by_metadata(origin).map(Cow::Borrowed);
                !matches(origin, allow.as_deref()) && self.origins != Origins::Any
            }
        };
        if local {
            allow = match &self.by_regex {
                None => self.origins.resolve(origin),
                Some(re) => origin.filter(|o| re.is_match(o)).map(Cow::Borrowed),
            };
        }
        if !matches(origin, allow.as_deref()) {
            allow = self.by_metadata(origin).map(Cow::Borrowed);
        }
        allow
    }

    fn timing_origin<'a>(&'a self, origin: Option<&'a str>) -> Option<Cow<'a, str>> {
        let t = match (&self.timing_by_regex, &self.timing) {
            (Some(re), _) => origin.filter(|o| re.is_match(o)).map(Cow::Borrowed),
            (None, Some(t)) => t.resolve(origin),
            (None, None) => None,
        };
        t.filter(|t| matches(origin, Some(t)))
    }
}

fn set(req: &mut RequestCtx<'_>, name: HeaderName, value: HeaderValue) {
    req.set_response_header(name, value);
}

const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
const ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
const MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");
const EXPOSE_HEADERS: HeaderName = HeaderName::from_static("access-control-expose-headers");
const ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
const ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

impl Plugin for Cors {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let view = req.view();
        let origin = view
            .header("origin")
            .and_then(|o| std::str::from_utf8(o).ok());
        let request_headers = view
            .header("access-control-request-headers")
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        let allow = self.allow_origin(origin).and_then(|a| self.value(&a));
        let timing = self
            .timing_origin(origin)
            .and_then(|t| HeaderValue::from_str(&t).ok());
        if self.origins != Origins::Any {
            req.append_response_header(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(allow) = allow {
            set(req, ALLOW_ORIGIN, allow);
            set(req, ALLOW_METHODS, self.methods.clone());
            set(req, MAX_AGE, self.max_age.clone());
            if let Some(e) = &self.expose {
                set(req, EXPOSE_HEADERS, e.clone());
            }
            if let Some(h) = self.headers.clone().or(request_headers) {
                set(req, ALLOW_HEADERS, h);
            }
            if self.credential {
                set(req, ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
        if let Some(t) = timing {
            set(req, TIMING_ALLOW_ORIGIN, t);
        }
        if req.method() == "OPTIONS" {
            return Flow::Reply(LocalReply::empty(StatusCode::OK));
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, build_with_metadata, Outcome, TestReq};
    use serde_json::json;

    fn from(origin: &str) -> TestReq {
        TestReq::get("/").header("Origin", origin)
    }

    fn cors_headers(out: &Outcome) -> Vec<(String, String)> {
        out.response()
    }

    fn acao(out: &Outcome) -> Option<String> {
        out.response_header("access-control-allow-origin")
    }

    #[test]
    fn defaults_allow_any_origin() {
        let p = build(&SPEC, json!({})).unwrap();
        let out = from("http://a.example").rewrite(&p);
        assert!(out.continued());
        let expected = [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "*"),
            ("access-control-max-age", "5"),
            ("access-control-allow-headers", "*"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(cors_headers(&out), expected);
        assert_eq!(
            cors_headers(&TestReq::get("/").rewrite(&p)),
            expected,
            "no Origin"
        );
    }

    #[test]
    fn options_is_answered_here() {
        let p = build(&SPEC, json!({"allow_origins": "http://a.example"})).unwrap();
        let out = from("http://a.example").method("OPTIONS").rewrite(&p);
        assert_eq!(out.status(), 200);
        assert!(out.reply().body.is_empty());
        assert_eq!(acao(&out).as_deref(), Some("http://a.example"));
        assert_eq!(out.response_header("vary").as_deref(), Some("Origin"));
        // Even when the origin is not allowed: 200, no CORS headers.
        let out = from("http://evil.example").method("OPTIONS").rewrite(&p);
        assert_eq!(out.status(), 200);
        assert_eq!(acao(&out), None);
        assert_eq!(
            out.response(),
            vec![("vary".to_owned(), "Origin".to_owned())]
        );
    }

    #[test]
    fn origin_lists_and_mirroring() {
        let p = build(
            &SPEC,
            json!({"allow_origins": "http://a.example,https://b.example:8443"}),
        )
        .unwrap();
        let out = from("https://b.example:8443").rewrite(&p);
        assert_eq!(acao(&out).as_deref(), Some("https://b.example:8443"));
        assert_eq!(out.response_header("vary").as_deref(), Some("Origin"));
        assert_eq!(acao(&from("https://b.example").rewrite(&p)), None);
        assert_eq!(acao(&TestReq::get("/").rewrite(&p)), None);

        let p = build(
            &SPEC,
            json!({"allow_origins": "**", "allow_methods": "**", "allow_headers": "**",
                   "expose_headers": "X-Total", "max_age": -1}),
        )
        .unwrap();
        let out = from("http://any.example")
            .header("Access-Control-Request-Headers", "x-a, x-b")
            .rewrite(&p);
        assert_eq!(acao(&out).as_deref(), Some("http://any.example"));
        assert_eq!(
            out.response_header("access-control-allow-methods")
                .as_deref(),
            Some("GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE")
        );
        assert_eq!(
            out.response_header("access-control-allow-headers")
                .as_deref(),
            Some("x-a, x-b")
        );
        assert_eq!(
            out.response_header("access-control-expose-headers")
                .as_deref(),
            Some("X-Total")
        );
        assert_eq!(
            out.response_header("access-control-max-age").as_deref(),
            Some("-1")
        );
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(acao(&out).as_deref(), Some("*"));
        assert_eq!(out.response_header("access-control-allow-headers"), None);
        let null = build(&SPEC, json!({"allow_origins": "null"})).unwrap();
        assert_eq!(acao(&from("null").rewrite(&null)).as_deref(), Some("null"));
    }

    #[test]
    fn regexes_credentials_and_timing() {
        let p = build(
            &SPEC,
            json!({"allow_origins_by_regex": [".*\\.a\\.example$", "^http://b\\.example$"],
                   "timing_allow_origins": "http://t.example"}),
        )
        .unwrap();
        let out = from("https://x.a.example").rewrite(&p);
        assert_eq!(acao(&out).as_deref(), Some("https://x.a.example"));
        assert_eq!(out.response_header("vary"), None, "allow_origins stays '*'");
        assert_eq!(out.response_header("timing-allow-origin"), None);
        assert_eq!(
            acao(&from("http://b.example").rewrite(&p)).as_deref(),
            Some("http://b.example")
        );
        assert_eq!(acao(&from("http://c.example").rewrite(&p)), None);
        let out = from("http://t.example").rewrite(&p);
        assert_eq!(
            out.response_header("timing-allow-origin").as_deref(),
            Some("http://t.example")
        );

        let p = build(
            &SPEC,
            json!({"allow_origins": "http://a.example,http://b.example", "allow_credential": true,
                   "allow_methods": "GET,POST", "allow_headers": "x-a"}),
        )
        .unwrap();
        let out = from("http://a.example").rewrite(&p);
        assert_eq!(
            out.response_header("access-control-allow-credentials")
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            out.response_header("access-control-allow-methods")
                .as_deref(),
            Some("GET,POST")
        );
        assert_eq!(
            out.response_header("access-control-allow-headers")
                .as_deref(),
            Some("x-a")
        );
    }

    #[test]
    fn origins_from_plugin_metadata() {
        let meta = json!({"allow_origins": {"team": "http://a.example,http://b.example",
                                            "all": "*"}});
        let conf =
            json!({"allow_origins_by_metadata": ["team"], "allow_origins": "http://c.example"});
        let p = build_with_metadata(&SPEC, conf, meta.clone()).unwrap();
        assert_eq!(
            acao(&from("http://b.example").rewrite(&p)).as_deref(),
            Some("http://b.example")
        );
        assert_eq!(
            acao(&from("http://c.example").rewrite(&p)).as_deref(),
            Some("http://c.example")
        );
        assert_eq!(acao(&from("http://d.example").rewrite(&p)), None);
        let p = build_with_metadata(
            &SPEC,
            json!({"allow_origins_by_metadata": ["nope", "all"]}),
            meta,
        )
        .unwrap();
        assert_eq!(
            acao(&from("http://z.example").rewrite(&p)).as_deref(),
            Some("http://z.example")
        );
        let p = build(&SPEC, json!({"allow_origins_by_metadata": ["team"]})).unwrap();
        assert_eq!(
            acao(&from("http://a.example").rewrite(&p)),
            None,
            "no metadata"
        );
        let bad = json!({"allow_origins": {"team": "a.example"}});
        let e = build_error(build_with_metadata(
            &SPEC,
            json!({"allow_origins_by_metadata": ["team"]}),
            bad,
        ));
        assert!(e.contains("metadata's allow_origins.team"), "{e}");
    }

    #[test]
    fn configuration_is_checked() {
        let star = "you can not set '*' for other option when 'allow_credential' is true";
        let cases = [
            (json!({"allow_credential": true}), star),
            (
                json!({"allow_credential": true, "allow_origins": "http://a.example", "allow_methods": "GET",
                       "allow_headers": "x", "expose_headers": "*"}),
                star,
            ),
            (
                json!({"allow_origins": "a.example"}),
                "allow_origins: must be '*', '**', 'null' or comma-separated scheme://host[:port] origins",
            ),
            (
                json!({"allow_origins": "http://a.example,"}),
                "allow_origins: must be '*', '**', 'null' or comma-separated scheme://host[:port] origins",
            ),
            (json!({"allow_origins_by_regex": []}), "allow_origins_by_regex: must not be empty"),
            (json!({"allow_origins_by_regex": ["a", "a"]}), "allow_origins_by_regex[1]: duplicate item"),
            (json!({"allow_methods": "GET\nPOST"}), "allow_methods: not valid in a header field"),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
        let e = build_error(build(&SPEC, json!({"allow_origins_by_regex": ["(x"]})));
        assert!(
            e.starts_with("allow_origins_by_regex[0]: invalid regular expression"),
            "{e}"
        );
        // '**' is allowed with credentials, as APISIX.
        assert!(build(
            &SPEC,
            json!({"allow_credential": true, "allow_origins": "**",
                                    "allow_methods": "**", "allow_headers": "**"})
        )
        .is_ok());
    }
}
