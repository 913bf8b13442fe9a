//! APISIX's plugin-carrying resources: services, consumers and their
//! credentials, consumer groups, plugin configs, global rules, plugin
//! metadata.
//!
//! How their plugins combine with a route's is described in
//! [`crate::resolve`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{Id, Labels, Plugins, Upstream};

/// A service: plugins, an upstream and hosts shared by the routes that name
/// it in `service_id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Id referenced by `routes[].service_id`.
    pub id: Id,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Key/value labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Plugins of every route of the service (a route's own win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: Plugins,
    /// An inline upstream for routes that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// The id of an entry in `upstreams`, for routes that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Id>,
    /// Hosts matched by routes that give none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Let WebSocket upgrades through on the service's routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_websocket: Option<bool>,
}

/// A consumer: an API client identified by an auth plugin, with plugins that
/// apply to its requests.
///
/// `Debug` shows plugin names only: consumer plugins hold credentials.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Unique name, `^[a-zA-Z0-9_\-]+$`; sent upstream as `X-Consumer-Username`.
    pub username: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Key/value labels (`custom_id` is sent upstream as `X-Consumer-Custom-ID`).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The id of an entry in `consumer_groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<Id>,
    /// Auth plugins (with this consumer's credentials) and plugins applied
    /// to its requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: Plugins,
}

/// One credential of a consumer (APISIX 3.7+): exactly one auth plugin
/// (`key-auth`, `basic-auth`, `jwt-auth`, `hmac-auth`) with its secret.
///
/// In APISIX's standalone file a credential is an item of `consumers` whose
/// `id` is `<username>/credentials/<id>`; the loader moves such items here.
/// Under `credentials:` either form is accepted: `{id: c1, consumer: jack}`
/// or `{id: jack/credentials/c1}`.
///
/// `Debug` shows plugin names only.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The credential's own id (after loading, without the
    /// `<username>/credentials/` prefix); sent upstream as
    /// `X-Credential-Identifier`.
    pub id: Id,
    /// Username of the consumer it belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consumer: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Key/value labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Exactly one auth plugin with its consumer configuration.
    #[serde(default)]
    pub plugins: Plugins,
    /// Where the loader found it (`consumers[2]` for APISIX's standalone
    /// form, `credentials[0]`), so later checks name its place in the file;
    /// empty for credentials made in code.
    #[serde(skip)]
    pub source: String,
}

impl Credential {
    /// Where it is in the configuration: `source`, or `credentials[index]`.
    pub fn path(&self, index: usize) -> String {
        if self.source.is_empty() {
            format!("credentials[{index}]")
        } else {
            self.source.clone()
        }
    }

    /// The auth plugin and its configuration.
    pub fn auth_plugin(&self) -> Option<(&str, &serde_json::Value)> {
        self.plugins.iter().next().map(|(k, v)| (k.as_str(), v))
    }
}

/// Splits APISIX's credential key `<username>/credentials/<id>`.
pub fn split_credential_id(id: &str) -> Option<(&str, &str)> {
    let (user, rest) = id.split_once('/')?;
    let cred = rest.strip_prefix("credentials/")?;
    Some((user, cred))
}

fn plugin_names(p: &Plugins) -> Vec<&str> {
    p.keys().map(String::as_str).collect()
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("username", &self.username)
            .field("desc", &self.desc)
            .field("labels", &self.labels)
            .field("group_id", &self.group_id)
            .field("plugins", &plugin_names(&self.plugins))
            .finish()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("consumer", &self.consumer)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("plugins", &plugin_names(&self.plugins))
            .finish()
    }
}

/// Plugins shared by the consumers that name the group in `group_id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroup {
    /// Id referenced by `consumers[].group_id`.
    pub id: Id,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Key/value labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Plugins applied to the group's consumers.
    #[serde(default)]
    pub plugins: Plugins,
}

/// A reusable set of plugins, referenced by `routes[].plugin_config_id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Id referenced by `routes[].plugin_config_id`.
    pub id: Id,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Key/value labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The plugins.
    #[serde(default)]
    pub plugins: Plugins,
}

/// Plugins that run for every request, in addition to (never merged with)
/// the matched route's.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalRule {
    /// Id.
    pub id: Id,
    /// The plugins.
    #[serde(default)]
    pub plugins: Plugins,
}

/// Reads `plugin_metadata` in APISIX's standalone form (a list of objects
/// whose `id` is the plugin name) or as a map from plugin name to object.
pub(crate) fn deserialize_plugin_metadata<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    struct MetadataVisitor;
    impl<'de> Visitor<'de> for MetadataVisitor {
        type Value = BTreeMap<String, serde_json::Value>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a list of objects with an id (the plugin name), or a map of plugin name to object",
            )
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                if !v.is_object() {
                    return Err(de::Error::custom(format!("{k}: must be an object")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                let (name, body) = metadata_item(v).map_err(de::Error::custom)?;
                if out.insert(name.clone(), body).is_some() {
                    return Err(de::Error::custom(format!("plugin {name:?} appears twice")));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(MetadataVisitor)
}

/// One list item of `plugin_metadata`: `{id: <plugin>, ...fields}` ->
/// (plugin, fields without `id`).
pub(crate) fn metadata_item(v: serde_json::Value) -> Result<(String, serde_json::Value), String> {
    let serde_json::Value::Object(mut obj) = v else {
        return Err("must be an object with an id (the plugin name)".into());
    };
    match obj.remove("id") {
        Some(serde_json::Value::String(name)) if !name.is_empty() => {
            Ok((name, serde_json::Value::Object(obj)))
        }
        Some(_) => Err("id: must be the plugin name (a string)".into()),
        None => Err("id: required (the plugin name)".into()),
    }
}
