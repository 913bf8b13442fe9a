//! `key-auth`: a consumer is recognised by an API key sent in a header
//! (default `apikey`) or, failing that, a query argument (default
//! `apikey`). As APISIX's `key-auth` (priority 2500, rewrite phase).

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Consumer, Flow, LocalReply, Phase, Phases, Plugin,
    PluginSpec, RequestCtx,
};

use crate::secret::SecretDigest;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "key-auth",
    priority: 2500,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: Some(check_consumer),
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default = "default_name")]
    header: String,
    #[serde(default = "default_name")]
    query: String,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default)]
    anonymous_consumer: Option<String>,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_name() -> String {
    "apikey".into()
}

fn default_realm() -> String {
    "key".into()
}

/// A consumer's (or credential's) `key-auth` block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerConf {
    key: String,
}

fn check_consumer(conf: &Value) -> Result<(), ConfigError> {
    let c: ConsumerConf = parse_config(conf)?;
    if c.key.is_empty() {
        return Err(ConfigError::at("key", "must not be empty"));
    }
    Ok(())
}

/// Every consumer key, by digest.
struct KeyIndex {
    by_key: HashMap<SecretDigest, (SecretDigest, Arc<Consumer>)>,
}

fn index(ctx: &BuildCtx<'_>) -> Result<KeyIndex, ConfigError> {
    let mut by_key = HashMap::new();
    let mut owner: HashMap<SecretDigest, String> = HashMap::new();
    for c in ctx.consumers_of(SPEC.name) {
        let conf: ConsumerConf = parse_config(c.conf)
            .map_err(|e| ConfigError::absolute(format!("{}.{}", c.path, e.path), e.message))?;
        let digest = SecretDigest::of(conf.key.as_bytes());
        if let Some(first) = owner.get(&digest) {
            return Err(ConfigError::absolute(
                format!("{}.key", c.path),
                format!("the same key is already used by {first}.key"),
            ));
        }
        owner.insert(digest, c.path.clone());
        by_key.insert(digest, (digest, c.consumer.clone()));
    }
    Ok(KeyIndex { by_key })
}

struct KeyAuth {
    header: String,
    query: String,
    hide_credentials: bool,
    anonymous: Option<Anonymous>,
    challenge: HeaderValue,
    keys: Arc<KeyIndex>,
}

enum Anonymous {
    Found(Arc<Consumer>),
    Missing,
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    HeaderName::from_bytes(conf.header.as_bytes())
        .map_err(|_| ConfigError::at("header", "not a valid header field name"))?;
    let challenge = HeaderValue::from_str(&format!("apikey realm=\"{}\"", conf.realm))
        .map_err(|_| ConfigError::at("realm", "not valid in a header field"))?;
    let keys = ctx.shared("key-auth/keys", index)?;
    let anonymous = conf
        .anonymous_consumer
        .as_deref()
        .map(|name| match ctx.consumer(name) {
            Some(c) => Anonymous::Found(c),
            None => Anonymous::Missing,
        });
    Ok(Arc::new(KeyAuth {
        header: conf.header.to_ascii_lowercase(),
        query: conf.query,
        hide_credentials: conf.hide_credentials,
        anonymous,
        challenge,
        keys,
    }))
}

impl KeyAuth {
    fn reject(&self, message: &str) -> Flow {
        Flow::Reply(
            LocalReply::message(StatusCode::UNAUTHORIZED, message)
                .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone()),
        )
    }

    /// Without a valid key: the anonymous consumer if one is configured,
    /// else APISIX's 401.
    fn fallback(&self, req: &mut RequestCtx<'_>, message: &str) -> Flow {
        match &self.anonymous {
            None => self.reject(message),
            Some(Anonymous::Found(c)) => {
                req.authenticate(c.clone());
                Flow::Continue
            }
            Some(Anonymous::Missing) => self.reject("Invalid user authorization"),
        }
    }
}

impl Plugin for KeyAuth {
    fn secret_query_args(&self) -> Vec<String> {
        vec![self.query.clone()]
    }

    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let (key, from_header) = match req.view().header(&self.header) {
            Some(k) => (std::borrow::Cow::Borrowed(k), true),
            None => match req.query_arg(&self.query) {
                Some(k) => (
                    match weir_http_decode(k) {
                        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
                        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
                    },
                    false,
                ),
                None => return self.fallback(req, "Missing API key in request"),
            },
        };
        let digest = SecretDigest::of(&key);
        let found = self
            .keys
            .by_key
            .get(&digest)
            .filter(|(stored, _)| stored.matches(&digest))
            .map(|(_, c)| c.clone());
        let Some(consumer) = found else {
            return self.fallback(req, "Invalid API key in request");
        };
        if self.hide_credentials {
            if from_header {
                if let Ok(name) = HeaderName::from_bytes(self.header.as_bytes()) {
                    req.remove_header(name);
                }
            } else {
                let target = without_query_arg(req.upstream_target(), &self.query);
                req.set_upstream_target(target);
            }
        }
        req.authenticate(consumer);
        Flow::Continue
    }
}

fn weir_http_decode(s: &str) -> std::borrow::Cow<'_, str> {
    weir_plugin::percent_decode(s)
}

/// `target` without the query argument `name`.
pub(crate) fn without_query_arg(target: &str, name: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split_once('=').map_or(*p, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_query_keys_leave_the_other_arguments() {
        assert_eq!(without_query_arg("/a?apikey=k&x=1", "apikey"), "/a?x=1");
        assert_eq!(without_query_arg("/a?apikey=k", "apikey"), "/a");
        assert_eq!(without_query_arg("/a?x=1&apikey", "apikey"), "/a?x=1");
        assert_eq!(without_query_arg("/a", "apikey"), "/a");
    }
}
