//! Building plugins: typed configuration with field paths, and what a
//! plugin may look at while it is built (consumers, plugin metadata).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Consumer;

/// A configuration error inside one plugin's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ConfigError {
    /// Field path relative to the plugin's configuration (`whitelist[2]`);
    /// empty for the configuration as a whole. With `absolute`, a path from
    /// the root of the configuration (`consumers[1].plugins.key-auth.key`).
    pub path: String,
    /// `path` starts at the configuration's root.
    pub absolute: bool,
    /// What is wrong. Never contains a secret's value.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` (relative to the plugin's configuration).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            absolute: false,
            message: message.into(),
        }
    }

    /// An error at a path from the configuration's root (consumer
    /// settings shared by every route, say).
    pub fn absolute(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            absolute: true,
            message: message.into(),
        }
    }

    /// An error about the configuration as a whole.
    pub fn whole(message: impl Into<String>) -> ConfigError {
        ConfigError::at("", message)
    }
}

/// Decodes a plugin's configuration into its typed form; the one source of
/// both parsing and validation. Errors carry the path of the offending
/// field. Value-bearing serde messages are kept short: they could echo a
/// secret, so only the expectation is reported for mistyped values.
pub fn parse_config<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::at(path, redact(&e.into_inner().to_string()))
    })
}

/// serde's "invalid type: string \"abc\", expected ..." quotes the value;
/// keep the kind and the expectation only.
fn redact(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let kind = rest.split([' ', ',']).next().unwrap_or("value");
        let expected = rest.split_once("expected ").map_or("", |(_, e)| e);
        return format!("invalid type: {kind}, expected {expected}");
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let expected = rest.split_once("expected ").map_or("", |(_, e)| e);
        return format!("invalid value, expected {expected}");
    }
    message.to_owned()
}

/// One authentication plugin's configuration held by a consumer or one of
/// its credentials.
pub struct ConsumerConf<'a> {
    /// The consumer it identifies.
    pub consumer: Arc<Consumer>,
    /// The plugin's name (`key-auth`).
    pub plugin: &'a str,
    /// Its configuration.
    pub conf: &'a serde_json::Value,
    /// Where it is in the configuration (`consumers[2].plugins.key-auth`).
    pub path: String,
}

/// What a plugin may consult while it is built. One per snapshot: values
/// built from it through [`BuildCtx::shared`] (a consumer index, say) are
/// built once and shared by every route.
pub struct BuildCtx<'a> {
    all_consumers: Vec<Arc<Consumer>>,
    consumers: Vec<ConsumerConf<'a>>,
    metadata: &'a dyn Fn(&str) -> Option<&'a serde_json::Value>,
    shared: RefCell<HashMap<&'static str, Arc<dyn Any + Send + Sync>>>,
}

impl<'a> BuildCtx<'a> {
    /// A context over the consumers' authentication configurations and a
    /// lookup of `plugin_metadata` by plugin name.
    pub fn new(
        all_consumers: Vec<Arc<Consumer>>,
        consumers: Vec<ConsumerConf<'a>>,
        metadata: &'a dyn Fn(&str) -> Option<&'a serde_json::Value>,
    ) -> BuildCtx<'a> {
        BuildCtx {
            all_consumers,
            consumers,
            metadata,
            shared: RefCell::new(HashMap::new()),
        }
    }

    /// A context with no consumer and no metadata (tests, checks).
    pub fn empty() -> BuildCtx<'static> {
        BuildCtx::new(Vec::new(), Vec::new(), &|_| None)
    }

    /// Every consumer (or credential) configuration of `plugin`.
    pub fn consumers_of<'s>(
        &'s self,
        plugin: &'s str,
    ) -> impl Iterator<Item = &'s ConsumerConf<'a>> {
        self.consumers.iter().filter(move |c| c.plugin == plugin)
    }

    /// The consumer named `username` (the credential-less identity).
    pub fn consumer(&self, username: &str) -> Option<Arc<Consumer>> {
        self.all_consumers
            .iter()
            .find(|c| &*c.username == username)
            .cloned()
    }

    /// The `plugin_metadata` of `plugin`, if configured.
    pub fn metadata(&self, plugin: &str) -> Option<&'a serde_json::Value> {
        (self.metadata)(plugin)
    }

    /// A value built once per snapshot under `key` and shared by every
    /// route (for example an index of consumer keys).
    pub fn shared<T: Any + Send + Sync>(
        &self,
        key: &'static str,
        make: impl FnOnce(&Self) -> Result<T, ConfigError>,
    ) -> Result<Arc<T>, ConfigError> {
        if let Some(v) = self.shared.borrow().get(key) {
            if let Ok(v) = v.clone().downcast::<T>() {
                return Ok(v);
            }
        }
        let v = Arc::new(make(self)?);
        self.shared.borrow_mut().insert(key, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        key: String,
        list: Vec<u16>,
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let e = parse_config::<Conf>(&serde_json::json!({"key": 5, "list": []})).unwrap_err();
        assert_eq!(e.path, "key");
        assert!(!e.message.contains('5'), "{e}");
        let e = parse_config::<Conf>(&serde_json::json!({"key": "s3cret", "list": ["s3cret"]}))
            .unwrap_err();
        assert_eq!(e.path, "list[0]");
        assert!(!e.message.contains("s3cret"), "{e}");
        let e =
            parse_config::<Conf>(&serde_json::json!({"key": "k", "list": [], "x": 1})).unwrap_err();
        assert!(e.message.contains("unknown field `x`"), "{e}");
    }
}
