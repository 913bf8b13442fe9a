//! `redirect`: answers with a redirection, as APISIX's `redirect` (priority
//! 900, rewrite phase). Exactly one of:
//!
//! - `uri`: the `Location`, with `$name` and `${name}` replaced by APISIX
//!   variables (`$host`, `$request_uri`, `$arg_x`, `$http_x`, ...; an
//!   unknown one is empty);
//! - `regex_uri`: `[regex, template]` applied to the request path; the
//!   template's `$0`..`$9`, `${N}` name captures and `$$` is a `$`. A path
//!   the regex does not match is not redirected;
//! - `http_to_https`: plain-HTTP requests (by `X-Forwarded-Proto`, else the
//!   connection) go to `https://$host$request_uri` with 301 for GET and
//!   HEAD, 308 otherwise.
//!
//! `ret_code` (302) is the status otherwise; `encode_uri` percent-encodes
//! the path part of the new location as nginx's `ngx_escape_uri` does;
//! `append_query_string` appends the request's query. The answer has the
//! `Location` field and no body.
//!
//! Differences from APISIX: the https port is always the default (weir has
//! no `plugin_attr.redirect.https_port` or APISIX `ssl.listen` list);
//! `regex_uri` applies to the path as sent, not nginx's decoded and
//! normalised `$uri`; patterns use Rust `regex` syntax.

use std::sync::Arc;

use http::header::LOCATION;
use http::{HeaderValue, StatusCode};
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
    name: "redirect",
    priority: 900,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default = "default_code")]
    ret_code: u16,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    regex_uri: Option<Vec<String>>,
    #[serde(default)]
    http_to_https: Option<bool>,
    #[serde(default)]
    encode_uri: bool,
    #[serde(default)]
    append_query_string: bool,
}

fn default_code() -> u16 {
    302
}

/// A piece of a `uri` template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

/// Splits a `uri` template as APISIX's pattern does:
/// `\$name` stays as it is (backslash included), `${name}` and `$name` are
/// variables, a lone `$` is text, and any other backslash is dropped.
fn pieces(t: &str) -> Vec<Piece> {
    let b = t.as_bytes();
    let name_end = |from: usize| {
        from + b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let end = if b.get(i + 1) == Some(&b'$') {
                    name_end(i + 2)
                } else {
                    i
                };
                if end > i + 2 {
                    out.push(Piece::Text(t[i..end].to_owned()));
                    i = end;
                } else {
                    i += 1;
                }
            }
            b'$' => {
                let braced = (b.get(i + 1) == Some(&b'{'))
                    .then(|| name_end(i + 2))
                    .filter(|&e| e > i + 2 && b.get(e) == Some(&b'}'));
                let bare = name_end(i + 1);
                if let Some(e) = braced {
                    out.push(Piece::Var(t[i + 2..e].to_owned()));
                    i = e + 1;
                } else if bare > i + 1 {
                    out.push(Piece::Var(t[i + 1..bare].to_owned()));
                    i = bare;
                } else {
                    out.push(Piece::Text("$".into()));
                    i += 1;
                }
            }
            _ => {
                let end = b[i..]
                    .iter()
                    .position(|c| *c == b'$' || *c == b'\\')
                    .map_or(b.len(), |p| i + p);
                out.push(Piece::Text(t[i..end].to_owned()));
                i = end;
            }
        }
    }
    out
}

/// A piece of a `regex_uri` replacement.
#[derive(Debug, PartialEq)]
enum Sub {
    Text(String),
    Group(usize),
}

/// Parses an ngx.re.sub template: `$N`, `${N}`, `$$`.
fn template(t: &str) -> Result<Vec<Sub>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = t.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let digits = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            let mut n = String::new();
            while let Some((_, d)) = chars.next_if(|(_, d)| d.is_ascii_digit()) {
                n.push(d);
            }
            n
        };
        let group = match chars.peek().map(|(_, c)| *c) {
            Some('$') => {
                chars.next();
                text.push('$');
                continue;
            }
            Some('{') => {
                chars.next();
                let n = digits(&mut chars);
                if chars.next().map(|(_, c)| c) != Some('}') || n.is_empty() {
                    return Err("invalid capturing variable name in ${...}".into());
                }
                n
            }
            Some(d) if d.is_ascii_digit() => digits(&mut chars),
            _ => return Err("'$' must be followed by a group number, '{' or '$'".into()),
        };
        let group = group
            .parse()
            .map_err(|_| "group number too large".to_owned())?;
        out.push(Sub::Text(std::mem::take(&mut text)));
        out.push(Sub::Group(group));
    }
    out.push(Sub::Text(text));
    Ok(out)
}

enum Target {
    Uri(Vec<Piece>),
    Regex(Regex, Vec<Sub>),
    HttpToHttps,
    /// `http_to_https: false`: APISIX accepts it and does nothing.
    Nothing,
}

struct Redirect {
    status: StatusCode,
    target: Target,
    encode_uri: bool,
    append_query_string: bool,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let status = Some(conf.ret_code)
        .filter(|c| (200..=999).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ConfigError::at("ret_code", "must be between 200 and 999"))?;
    let target = match (&conf.uri, &conf.regex_uri, conf.http_to_https) {
        (Some(uri), None, None) => {
            if uri.chars().count() < 2 {
                return Err(ConfigError::at("uri", "must be at least 2 characters"));
            }
            Target::Uri(pieces(uri))
        }
        (None, Some(pair), None) => {
            let [re, tpl] = pair.as_slice() else {
                return Err(ConfigError::at(
                    "regex_uri",
                    "must be [regular expression, replacement]",
                ));
            };
            let invalid = |e: String| {
                ConfigError::at(
                    "regex_uri",
                    format!("invalid regex_uri ({re}, {tpl}), err: {e}"),
                )
            };
            let compiled = Regex::new(re).map_err(|e| invalid(regex_error(&e)))?;
            Target::Regex(compiled, template(tpl).map_err(invalid)?)
        }
        (None, None, Some(true)) => Target::HttpToHttps,
        (None, None, Some(false)) => Target::Nothing,
        _ => {
            return Err(ConfigError::whole(
                "exactly one of uri, regex_uri and http_to_https is required",
            ))
        }
    };
    if conf.http_to_https.is_some() && conf.append_query_string {
        return Err(ConfigError::whole(
            "only one of `http_to_https` and `append_query_string` can be configured.",
        ));
    }
    Ok(Arc::new(Redirect {
        status,
        target,
        encode_uri: conf.encode_uri,
        append_query_string: conf.append_query_string,
    }))
}

/// nginx's `ngx_escape_uri` (NGX_ESCAPE_URI): controls, space, `#`, `%`,
/// `?`, DEL and non-ASCII bytes become `%XX`.
fn escape_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b <= 0x20 || b >= 0x7f || matches!(b, b'#' | b'%' | b'?') {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

impl Redirect {
    /// The new location, or `None` when this request is not redirected.
    fn location(&self, req: &RequestCtx<'_>) -> Option<(String, StatusCode)> {
        let mut status = self.status;
        let new = match &self.target {
            Target::Nothing => return None,
            Target::Uri(pieces) => expand(req, pieces),
            Target::HttpToHttps => {
                let scheme = match req.header("x-forwarded-proto") {
                    Some(p) => String::from_utf8_lossy(p).into_owned(),
                    None => req
                        .var("scheme")
                        .map(|s| s.into_owned())
                        .unwrap_or_default(),
                };
                if scheme == "https" {
                    return None;
                }
                status = match req.method() {
                    "GET" | "HEAD" => StatusCode::MOVED_PERMANENTLY,
                    _ => StatusCode::PERMANENT_REDIRECT,
                };
                let host = req.var("host").unwrap_or_default();
                format!("https://{host}{}", req.view().path_and_query())
            }
            Target::Regex(re, subs) => {
                let path = req.view().path();
                let caps = re.captures(path)?;
                let whole = caps.get(0)?;
                let mut out = String::with_capacity(path.len() + 16);
                out.push_str(&path[..whole.start()]);
                for s in subs {
                    match s {
                        Sub::Text(t) => out.push_str(t),
                        Sub::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
                    }
                }
                out.push_str(&path[whole.end()..]);
                out
            }
        };
        let query_at = new.find('?');
        let mut new = match (self.encode_uri, query_at) {
            (false, _) => new,
            (true, Some(q)) => format!("{}{}", escape_uri(&new[..q]), &new[q..]),
            (true, None) => escape_uri(&new),
        };
        if self.append_query_string {
            if let Some(args) = req.view().query() {
                new.push(if query_at.is_some() { '&' } else { '?' });
                new.push_str(args);
            }
        }
        Some((new, status))
    }
}

fn expand(req: &RequestCtx<'_>, pieces: &[Piece]) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => out.push_str(&req.var(v).unwrap_or_default()),
        }
    }
    out
}

impl Plugin for Redirect {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let Some((location, status)) = self.location(req) else {
            return Flow::Continue;
        };
        match HeaderValue::from_bytes(location.as_bytes()) {
            Ok(v) => Flow::Reply(LocalReply::empty(status).with_header(LOCATION, v)),
            Err(_) => Flow::Reply(LocalReply::empty(StatusCode::INTERNAL_SERVER_ERROR)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, Outcome, TestReq};
    use serde_json::json;

    fn go(conf: Value, req: TestReq) -> Outcome {
        req.rewrite(&build(&SPEC, conf).unwrap())
    }

    fn assert_redirect(out: &Outcome, status: u16, location: &str) {
        assert_eq!(out.status(), status);
        assert_eq!(out.reply_header("location").as_deref(), Some(location));
        assert!(out.reply().body.is_empty());
        assert_eq!(out.reply().headers.len(), 1);
    }

    #[test]
    fn uri_templates() {
        let req = TestReq::get("/a/b?x=1").header("X-Env", "prod");
        let out = go(json!({"uri": "https://$host${request_uri}"}), req.clone());
        assert_redirect(&out, 302, "https://a.example/a/b?x=1");
        let out = go(
            json!({"uri": "/new/$http_x_env/$arg_x$missing$", "ret_code": 301}),
            req.clone(),
        );
        assert_redirect(&out, 301, "/new/prod/1$");
        let out = go(json!({"uri": "/p\\$host\\q"}), req);
        assert_redirect(&out, 302, "/p\\$hostq");
        assert_eq!(
            pieces("a${b}c$d_e-\\"),
            vec![
                Piece::Text("a".into()),
                Piece::Var("b".into()),
                Piece::Text("c".into()),
                Piece::Var("d_e".into()),
                Piece::Text("-".into()),
            ]
        );
        assert_eq!(
            pieces("${x"),
            vec![Piece::Text("$".into()), Piece::Text("{x".into())]
        );
    }

    #[test]
    fn regex_uri() {
        let conf = json!({"regex_uri": ["^/api/(.*)/v(\\d+)$", "/v${2}/$1$$"]});
        let out = go(conf.clone(), TestReq::get("/api/users/v2?q=1"));
        assert_redirect(&out, 302, "/v2/users$");
        assert!(
            go(conf, TestReq::get("/other")).continued(),
            "no match, no redirect"
        );
        // Only the first match is replaced; the rest of the path stays.
        let out = go(json!({"regex_uri": ["o", "0"]}), TestReq::get("/foo"));
        assert_redirect(&out, 302, "/f0o");
    }

    #[test]
    fn http_to_https() {
        let conf = json!({"http_to_https": true});
        let out = go(
            conf.clone(),
            TestReq::get("/p?q=1").replace("Host", "B.example:8080"),
        );
        assert_redirect(&out, 301, "https://b.example/p?q=1");
        let out = go(conf.clone(), TestReq::get("/p").method("POST"));
        assert_redirect(&out, 308, "https://a.example/p");
        assert!(go(conf.clone(), TestReq::get("/p").tls()).continued());
        let proxied = TestReq::get("/p").header("X-Forwarded-Proto", "https");
        assert!(go(conf.clone(), proxied).continued());
        let proxied = TestReq::get("/p").header("X-Forwarded-Proto", "http").tls();
        assert_redirect(&go(conf, proxied), 301, "https://a.example/p");
        assert!(go(json!({"http_to_https": false}), TestReq::get("/")).continued());
    }

    #[test]
    fn encode_and_append_query_string() {
        let conf = json!({"uri": "/a b/100%?k=v w", "encode_uri": true});
        assert_redirect(&go(conf, TestReq::get("/")), 302, "/a%20b/100%25?k=v w");
        let conf = json!({"uri": "/é#", "encode_uri": true});
        assert_redirect(&go(conf, TestReq::get("/")), 302, "/%C3%A9%23");
        let conf = json!({"uri": "/new", "append_query_string": true});
        assert_redirect(
            &go(conf.clone(), TestReq::get("/old?a=1&b")),
            302,
            "/new?a=1&b",
        );
        assert_redirect(&go(conf.clone(), TestReq::get("/old")), 302, "/new");
        assert_redirect(&go(conf, TestReq::get("/old?")), 302, "/new?");
        let conf = json!({"uri": "/new?x=1", "append_query_string": true});
        assert_redirect(&go(conf, TestReq::get("/old?a=1")), 302, "/new?x=1&a=1");
    }

    #[test]
    fn configuration_is_checked() {
        let one = "exactly one of uri, regex_uri and http_to_https is required";
        let cases = [
            (json!({}), one.to_owned()),
            (json!({"uri": "/a", "http_to_https": true}), one.to_owned()),
            (
                json!({"uri": "/"}),
                "uri: must be at least 2 characters".to_owned(),
            ),
            (
                json!({"uri": "/a", "ret_code": 100}),
                "ret_code: must be between 200 and 999".into(),
            ),
            (
                json!({"regex_uri": ["a"]}),
                "regex_uri: must be [regular expression, replacement]".into(),
            ),
            (
                json!({"regex_uri": ["a", "$x"]}),
                "regex_uri: invalid regex_uri (a, $x), err: '$' must be followed by a group \
                 number, '{' or '$'"
                    .into(),
            ),
            (
                json!({"http_to_https": true, "append_query_string": true}),
                "only one of `http_to_https` and `append_query_string` can be configured.".into(),
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
        let e = build_error(build(&SPEC, json!({"regex_uri": ["(", "/"]})));
        assert!(
            e.starts_with("regex_uri: invalid regex_uri ((, /), err: invalid regular"),
            "{e}"
        );
    }
}
