//! `basic-auth`: a consumer is recognised by the username and password of an
//! `Authorization: Basic ...` header (RFC 7617). As APISIX's `basic-auth`
//! (priority 2520, rewrite phase).
//!
//! Passwords are kept as SHA-256 digests and compared in constant time; an
//! unknown username costs the same comparison as a wrong password. As
//! APISIX: the credentials are split at every `:` (a password holding `:`
//! is cut there) and whitespace is removed from both parts.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Consumer, Flow, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

use crate::auth::{self, Failure};
use crate::secret::SecretDigest;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "basic-auth",
    priority: 2520,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: Some(check_consumer),
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    anonymous_consumer: Option<String>,
}

fn default_realm() -> String {
    "basic".into()
}

/// A consumer's (or credential's) `basic-auth` block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerConf {
    username: String,
    password: String,
}

fn check_consumer(conf: &Value) -> Result<(), ConfigError> {
    parse_config::<ConsumerConf>(conf).map(|_| ())
}

/// Every consumer's password digest, by username.
struct Users {
    by_name: HashMap<String, (SecretDigest, Arc<Consumer>)>,
}

fn index(ctx: &BuildCtx<'_>) -> Result<Users, ConfigError> {
    let mut by_name = HashMap::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    for c in ctx.consumers_of(SPEC.name) {
        let conf: ConsumerConf = parse_config(c.conf)
            .map_err(|e| ConfigError::absolute(format!("{}.{}", c.path, e.path), e.message))?;
        if let Some(first) = owner.get(&conf.username) {
            return Err(ConfigError::absolute(
                format!("{}.username", c.path),
                format!("the same username is already used by {first}.username"),
            ));
        }
        owner.insert(conf.username.clone(), c.path.clone());
        let digest = SecretDigest::of(conf.password.as_bytes());
        by_name.insert(conf.username, (digest, c.consumer.clone()));
    }
    Ok(Users { by_name })
}

struct BasicAuth {
    hide_credentials: bool,
    failure: Failure,
    users: Arc<Users>,
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let failure = Failure::new(
        "Basic",
        &conf.realm,
        conf.anonymous_consumer.as_deref(),
        ctx,
    )?;
    let users = ctx.shared("basic-auth/users", index)?;
    Ok(Arc::new(BasicAuth {
        hide_credentials: conf.hide_credentials,
        failure,
        users,
    }))
}

/// Username and password from an `Authorization` value, as APISIX reads
/// them: `basic` (any case) and one whitespace character anywhere in the
/// value, then base64 of `user:password`.
fn credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let at = value
        .windows(6)
        .position(|w| w[..5].eq_ignore_ascii_case(b"basic") && is_pcre_space(w[5]))?;
    let encoded = &value[at + 6..];
    if encoded.is_empty() {
        return None;
    }
    let decoded = auth::decode_base64(encoded)?;
    let mut parts = decoded.split(|&b| b == b':');
    let user = parts.next()?;
    let password = parts.next()?;
    let strip =
        |s: &[u8]| -> Vec<u8> { s.iter().copied().filter(|&b| !is_pcre_space(b)).collect() };
    Some((strip(user), strip(password)))
}

/// PCRE's `\s`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_pcre_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl BasicAuth {
    fn find(&self, req: &RequestCtx<'_>) -> Result<Arc<Consumer>, &'static str> {
        let value = req
            .header("authorization")
            .ok_or("Missing authorization in request")?;
        let (user, password) = credentials(value).ok_or("Invalid authorization in request")?;
        let given = SecretDigest::of(&password);
        let found = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.by_name.get(u));
        match found {
            Some((stored, consumer)) if stored.matches(&given) => Ok(consumer.clone()),
            Some(_) => Err("Invalid user authorization"),
            None => {
                // The same work as a known user's comparison.
                let _ = SecretDigest::of(b"").matches(&given);
                Err("Invalid user authorization")
            }
        }
    }
}

impl Plugin for BasicAuth {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let consumer = match self.find(req) {
            Ok(c) => Ok(c),
            Err(message) => self.failure.fallback(message),
        };
        if consumer.is_ok() && self.hide_credentials {
            req.remove_header(AUTHORIZATION);
        }
        auth::attach(req, consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{b64, build_error, build_with, TestReq};
    use serde_json::json;

    fn plugin(conf: Value) -> Arc<dyn Plugin> {
        build_with(
            &SPEC,
            conf,
            &[
                ("jack", json!({"username": "jack", "password": "s3cret"})),
                ("rose", json!({"username": "rose", "password": "p w"})),
            ],
            &["guest"],
        )
        .unwrap()
    }

    fn basic(userpass: &str) -> String {
        format!("Basic {}", b64(userpass.as_bytes()))
    }

    #[test]
    fn good_credentials_attach_the_consumer() {
        let p = plugin(json!({}));
        let out = TestReq::get("/")
            .header("Authorization", &basic("jack:s3cret"))
            .rewrite(&p);
        assert!(out.continued());
        assert_eq!(out.consumer(), Some("jack"));
        assert_eq!(
            out.upstream("x-consumer-username"),
            Some(Some("jack".into()))
        );
        assert_eq!(out.upstream("authorization"), None);
        // Scheme in any case; whitespace removed from both parts.
        let out = TestReq::get("/")
            .header("Authorization", &basic(" jack : s3c ret"))
            .rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
        let out = TestReq::get("/")
            .header("Authorization", &basic("rose:pw"))
            .rewrite(&p);
        assert_eq!(out.consumer(), None, "stored passwords keep their spaces");
        let v = basic("jack:s3cret").replace("Basic", "bAsIc");
        assert_eq!(
            TestReq::get("/")
                .header("Authorization", &v)
                .rewrite(&p)
                .consumer(),
            Some("jack")
        );
    }

    #[test]
    fn failures_answer_as_apisix() {
        let p = plugin(json!({}));
        let cases = [
            (None, "Missing authorization in request"),
            (
                Some("Bearer abc".to_owned()),
                "Invalid authorization in request",
            ),
            (
                Some("Basic !!!!".to_owned()),
                "Invalid authorization in request",
            ),
            (Some(basic("jack")), "Invalid authorization in request"),
            (Some(basic("nobody:s3cret")), "Invalid user authorization"),
            (Some(basic("jack:wrong")), "Invalid user authorization"),
            (
                Some(basic("jack:s3cret:x").replace("Basic ", "Basic  ")),
                "Invalid authorization in request",
            ),
        ];
        for (value, message) in cases {
            let mut req = TestReq::get("/");
            if let Some(v) = &value {
                req = req.header("Authorization", v);
            }
            let out = req.rewrite(&p);
            assert_eq!(out.status(), 401, "{value:?}");
            assert_eq!(
                out.body(),
                format!("{{\"message\":\"{message}\"}}\n"),
                "{value:?}"
            );
            assert_eq!(
                out.reply_header("www-authenticate").unwrap(),
                "Basic realm=\"basic\""
            );
            assert_eq!(out.consumer(), None);
        }
        // A password is cut at its second ':', as APISIX does.
        let out = TestReq::get("/")
            .header("Authorization", &basic("jack:s3cret:x"))
            .rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
    }

    #[test]
    fn hide_credentials_realm_and_anonymous() {
        let p = plugin(json!({"hide_credentials": true, "realm": "private"}));
        let out = TestReq::get("/")
            .header("Authorization", &basic("jack:s3cret"))
            .rewrite(&p);
        assert_eq!(out.upstream("authorization"), Some(None));
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(
            out.reply_header("www-authenticate").unwrap(),
            "Basic realm=\"private\""
        );

        let p = plugin(json!({"anonymous_consumer": "guest"}));
        let out = TestReq::get("/")
            .header("Authorization", &basic("jack:bad"))
            .rewrite(&p);
        assert!(out.continued());
        assert_eq!(out.consumer(), Some("guest"));
        let p = plugin(json!({"anonymous_consumer": "ghost"}));
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(out.status(), 401);
        assert_eq!(out.body(), "{\"message\":\"Invalid user authorization\"}\n");
    }

    #[test]
    fn configuration_is_checked() {
        let e = build_error(build_with(&SPEC, json!({"realm": "a\"b"}), &[], &[]));
        assert!(e.starts_with("realm: "), "{e}");
        let e = build_error(build_with(&SPEC, json!({"hide": true}), &[], &[]));
        assert!(e.contains("unknown field"), "{e}");
        let dup = [
            ("a", json!({"username": "u", "password": "topsecret1"})),
            ("b", json!({"username": "u", "password": "topsecret2"})),
        ];
        let e = build_error(build_with(&SPEC, json!({}), &dup, &[]));
        assert!(
            e.contains("consumers[1].plugins.basic-auth.username"),
            "{e}"
        );
        assert!(!e.contains("topsecret"), "{e}");
        assert!(check_consumer(&json!({"username": "u"})).is_err());
        let e = check_consumer(&json!({"username": "u", "password": 5})).unwrap_err();
        assert!(!e.to_string().contains('5'), "{e}");
    }
}
