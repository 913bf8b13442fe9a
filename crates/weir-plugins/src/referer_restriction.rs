//! `referer-restriction`: allows or refuses requests by the host of their
//! `Referer`, as APISIX's `referer-restriction` (priority 2990, access
//! phase).
//!
//! Exactly one of `whitelist` or `blacklist` is configured: host names,
//! where a leading `*` makes a suffix (`*.example.com` matches
//! `a.example.com`; `*` alone matches every host). The host is read from
//! `Referer` as lua-resty-http parses URLs (`http://` or `https://` or `//`,
//! then the host up to `:`, `/` or `?`; a bracketed IPv6 literal is kept
//! with its brackets) and compared as sent (case-sensitive, as APISIX). A
//! request without a readable `Referer` is refused unless `bypass_missing`.
//! Refusals are 403 with `{"message":<message>}`.

use std::collections::HashSet;
use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

use crate::ip_restriction::check_message;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "referer-restriction",
    priority: 2990,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    bypass_missing: bool,
    #[serde(default)]
    whitelist: Option<Vec<String>>,
    #[serde(default)]
    blacklist: Option<Vec<String>>,
    #[serde(default = "default_message")]
    message: String,
}

fn default_message() -> String {
    "Your referer host is not allowed".into()
}

/// Exact hosts and `*` suffixes.
struct Hosts {
    exact: HashSet<String>,
    suffixes: Vec<String>,
}

impl Hosts {
    /// Parses a list; entries must match APISIX's `host_def`
    /// (`^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$`).
    fn parse(field: &str, hosts: &[String]) -> Result<Hosts, ConfigError> {
        if hosts.is_empty() {
            return Err(ConfigError::at(field, "must not be empty"));
        }
        let mut exact = HashSet::new();
        let mut suffixes = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let body = h.strip_prefix('*').unwrap_or(h);
            let valid = body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
            if h.is_empty() || !valid || (body.is_empty() && h != "*") {
                return Err(ConfigError::at(
                    format!("{field}[{i}]"),
                    "must be a host name, optionally starting with '*'",
                ));
            }
            match h.strip_prefix('*') {
                Some(suffix) => suffixes.push(suffix.to_owned()),
                None => {
                    exact.insert(h.clone());
                }
            }
        }
        Ok(Hosts { exact, suffixes })
    }

    fn matches(&self, host: &str) -> bool {
        self.exact.contains(host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

/// The host of a `Referer` value, as lua-resty-http's `parse_uri` finds it.
fn referer_host(referer: &str) -> Option<&str> {
    let rest = referer
        .strip_prefix("http:")
        .or_else(|| referer.strip_prefix("https:"))
        .unwrap_or(referer);
    let rest = rest.strip_prefix("//")?;
    if rest.starts_with('[') {
        // `\[.+\]`: greedy, to the last `]`.
        let end = rest.rfind(']').filter(|&e| e > 1)?;
        return Some(&rest[..=end]);
    }
    let end = rest.find(['[', ']', ':', '/', '?']).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

struct RefererRestriction {
    hosts: Hosts,
    /// True for a whitelist.
    allow: bool,
    bypass_missing: bool,
    message: String,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    check_message(&conf.message)?;
    let (hosts, allow) = match (&conf.whitelist, &conf.blacklist) {
        (Some(w), None) => (Hosts::parse("whitelist", w)?, true),
        (None, Some(b)) => (Hosts::parse("blacklist", b)?, false),
        _ => {
            return Err(ConfigError::whole(
                "exactly one of whitelist and blacklist is required",
            ))
        }
    };
    Ok(Arc::new(RefererRestriction {
        hosts,
        allow,
        bypass_missing: conf.bypass_missing,
        message: conf.message,
    }))
}

impl Plugin for RefererRestriction {
    fn access(&self, req: &mut RequestCtx<'_>) -> Flow {
        let host = req
            .view()
            .header("referer")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(referer_host);
        let passed = match host {
            None => self.bypass_missing,
            Some(h) => self.hosts.matches(h) == self.allow,
        };
        if passed {
            return Flow::Continue;
        }
        Flow::Reply(LocalReply::message(StatusCode::FORBIDDEN, &self.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, TestReq};
    use serde_json::json;

    fn from(referer: &str) -> TestReq {
        TestReq::get("/").header("Referer", referer)
    }

    #[test]
    fn hosts_are_read_as_lua_resty_http_does() {
        let cases = [
            ("http://a.example/x?y", Some("a.example")),
            ("https://a.example:8443/", Some("a.example")),
            ("//a.example", Some("a.example")),
            ("https://[::1]:80/p", Some("[::1]")),
            ("http://A.Example?q", Some("A.Example")),
            ("ftp://a.example/", None),
            ("a.example", None),
            ("http:///path", None),
        ];
        for (referer, host) in cases {
            assert_eq!(referer_host(referer), host, "{referer}");
        }
    }

    #[test]
    fn whitelists_and_blacklists() {
        let w = build(&SPEC, json!({"whitelist": ["a.example", "*.b.example"]})).unwrap();
        assert!(from("http://a.example/").access(&w).continued());
        assert!(from("https://x.y.b.example/").access(&w).continued());
        let out = from("http://c.example/").access(&w);
        assert_eq!(out.status(), 403);
        assert_eq!(
            out.body(),
            "{\"message\":\"Your referer host is not allowed\"}\n"
        );
        assert_eq!(from("http://b.example/").access(&w).status(), 403);
        assert_eq!(from("not a url").access(&w).status(), 403);
        assert_eq!(TestReq::get("/").access(&w).status(), 403);

        let b = build(
            &SPEC,
            json!({"blacklist": ["*.spam.example"], "bypass_missing": true, "message": "no"}),
        )
        .unwrap();
        assert!(from("http://a.example/").access(&b).continued());
        assert!(TestReq::get("/").access(&b).continued());
        assert!(
            from("garbage").access(&b).continued(),
            "unreadable = missing"
        );
        let out = from("http://x.spam.example/").access(&b);
        assert_eq!(out.body(), "{\"message\":\"no\"}\n");

        let all = build(&SPEC, json!({"blacklist": ["*"]})).unwrap();
        assert_eq!(from("http://anything/").access(&all).status(), 403);
    }

    #[test]
    fn configuration_is_checked() {
        let cases = [
            (
                json!({}),
                "exactly one of whitelist and blacklist is required",
            ),
            (json!({"whitelist": []}), "whitelist: must not be empty"),
            (
                json!({"whitelist": ["a.example", "bad host"]}),
                "whitelist[1]: must be a host name, optionally starting with '*'",
            ),
            (
                json!({"blacklist": ["**"]}),
                "blacklist[0]: must be a host name, optionally starting with '*'",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
    }
}
