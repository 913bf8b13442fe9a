//! `ua-restriction`: allows or refuses requests by `User-Agent`, as APISIX's
//! `ua-restriction` (priority 2999, access phase).
//!
//! Exactly one of `allowlist` (a request passes when a rule matches) or
//! `denylist` (it is refused when one does) is configured: regular
//! expressions, unanchored, tried on the field's value with surrounding
//! whitespace trimmed. A request without `User-Agent` is refused unless
//! `bypass_missing`. Refusals are 403 with `{"message":<message>}`.
//!
//! Differences from APISIX: the rules are Rust `regex` syntax (PCRE's
//! look-around and back-references are configuration errors). With
//! several `User-Agent` fields, the allowlist passes when one of them
//! matches (as APISIX) and the denylist refuses when any of them matches
//! (APISIX refuses when any does not, and lets through a request whose
//! every value is denied, which reads as a bug).

use std::sync::Arc;

use http::StatusCode;
use regex::bytes::RegexSet;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

use crate::ip_restriction::check_message;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "ua-restriction",
    priority: 2999,
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
    allowlist: Option<Vec<String>>,
    #[serde(default)]
    denylist: Option<Vec<String>>,
    #[serde(default = "default_message")]
    message: String,
}

fn default_message() -> String {
    "Not allowed".into()
}

struct UaRestriction {
    rules: RegexSet,
    /// True for an allowlist.
    allow: bool,
    bypass_missing: bool,
    message: String,
}

/// Compiles a list of rules; errors name `field[i]`.
pub(crate) fn compile(field: &str, rules: &[String]) -> Result<RegexSet, ConfigError> {
    if rules.is_empty() {
        return Err(ConfigError::at(field, "must not be empty"));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.is_empty() {
            return Err(ConfigError::at(
                format!("{field}[{i}]"),
                "must not be empty",
            ));
        }
        regex::bytes::Regex::new(r)
            .map_err(|e| ConfigError::at(format!("{field}[{i}]"), regex_error(&e)))?;
    }
    RegexSet::new(rules).map_err(|e| ConfigError::at(field, regex_error(&e)))
}

/// The regex crate's message, on one line.
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rfind(|l| !l.trim().is_empty());
    format!("invalid regular expression: {}", last.unwrap_or("").trim())
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    check_message(&conf.message)?;
    let (rules, allow) = match (&conf.allowlist, &conf.denylist) {
        (Some(a), None) => (compile("allowlist", a)?, true),
        (None, Some(d)) => (compile("denylist", d)?, false),
        _ => {
            return Err(ConfigError::whole(
                "exactly one of allowlist and denylist is required",
            ))
        }
    };
    Ok(Arc::new(UaRestriction {
        rules,
        allow,
        bypass_missing: conf.bypass_missing,
        message: conf.message,
    }))
}

impl Plugin for UaRestriction {
    fn access(&self, req: &mut RequestCtx<'_>) -> Flow {
        let mut values = req.view().header_values("user-agent").peekable();
        let passed = if values.peek().is_none() {
            self.bypass_missing
        } else {
            let mut matched = values.map(|v| self.rules.is_match(v.trim_ascii()));
            if self.allow {
                matched.any(|m| m)
            } else {
                !matched.any(|m| m)
            }
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

    fn ua(v: &str) -> TestReq {
        TestReq::get("/").header("User-Agent", v)
    }

    #[test]
    fn allowlists_and_denylists() {
        let a = build(&SPEC, json!({"allowlist": ["^curl/", "Firefox/\\d+"]})).unwrap();
        assert!(ua("curl/8.5").access(&a).continued());
        assert!(ua("  curl/8.5").access(&a).continued(), "trimmed");
        assert!(ua("Mozilla/5.0 Firefox/120.0").access(&a).continued());
        let out = ua("wget/1.0").access(&a);
        assert_eq!(out.status(), 403);
        assert_eq!(out.body(), "{\"message\":\"Not allowed\"}\n");
        assert!(ua("wget/1.0")
            .header("User-Agent", "curl/1")
            .access(&a)
            .continued());

        let d = build(
            &SPEC,
            json!({"denylist": ["(?i)bot"], "message": "bots go home"}),
        )
        .unwrap();
        assert!(ua("curl/8.5").access(&d).continued());
        let out = ua("GoogleBot/2.1").access(&d);
        assert_eq!(out.body(), "{\"message\":\"bots go home\"}\n");
        assert_eq!(
            ua("curl").header("User-Agent", "a-bot").access(&d).status(),
            403
        );
    }

    #[test]
    fn missing_user_agent() {
        let d = build(&SPEC, json!({"denylist": ["bot"]})).unwrap();
        assert_eq!(TestReq::get("/").access(&d).status(), 403);
        let d = build(&SPEC, json!({"denylist": ["bot"], "bypass_missing": true})).unwrap();
        assert!(TestReq::get("/").access(&d).continued());
    }

    #[test]
    fn configuration_is_checked() {
        let cases = [
            (
                json!({}),
                "exactly one of allowlist and denylist is required",
            ),
            (
                json!({"allowlist": ["a"], "denylist": ["b"]}),
                "exactly one of allowlist and denylist is required",
            ),
            (json!({"allowlist": []}), "allowlist: must not be empty"),
            (
                json!({"denylist": ["a", ""]}),
                "denylist[1]: must not be empty",
            ),
            (
                json!({"denylist": ["a"], "message": ""}),
                "message: must be 1 to 1024 characters",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
        let e = build_error(build(&SPEC, json!({"denylist": ["ok", "(unclosed"]})));
        assert!(
            e.starts_with("denylist[1]: invalid regular expression: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
