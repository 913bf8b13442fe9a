//! The typed configuration model.
//!
//! Field names and meanings follow Apache APISIX wherever weir supports the
//! feature, so an APISIX standalone route list loads unchanged. Every struct
//! denies unknown fields: a typo is an error, never silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::discovery::DiscoveryConfig;

mod deployment;
mod gateway;
mod health;
mod resources;
mod route;
mod ssl;
mod upstream;

pub use deployment::*;
pub use gateway::*;
pub use health::*;
pub use resources::*;
pub use route::*;
pub use ssl::*;
pub use upstream::*;

pub(crate) use upstream::unbracket;

/// Plugins by name with their configuration (checked by the plugin
/// catalogue, not by this crate).
pub type Plugins = BTreeMap<String, serde_json::Value>;

/// Key/value labels; values are non-empty strings without spaces.
pub type Labels = BTreeMap<String, String>;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, timeouts, access log, shutdown.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Routes, APISIX field names.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Named upstreams that routes refer to with `upstream_id`.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    /// TLS certificates, chosen by SNI.
    #[serde(default)]
    pub ssls: Vec<Ssl>,
    /// Service discovery sources (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryConfig>,
    /// Services: plugins, upstream and hosts shared by routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Consumers (API clients). In an APISIX standalone file this list also
    /// holds credentials (`id: <username>/credentials/<id>`); the loader
    /// moves those to `credentials`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// Credentials of consumers (APISIX 3.7+), one auth plugin each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// Plugins shared by groups of consumers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumer_groups: Vec<ConsumerGroup>,
    /// Reusable plugin sets referenced by `routes[].plugin_config_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_configs: Vec<PluginConfig>,
    /// Plugins run for every request besides the route's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_rules: Vec<GlobalRule>,
    /// Per-plugin settings shared by every instance: plugin name -> object
    /// (APISIX's list of `{id: <plugin>, ...}` is accepted too).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "resources::deserialize_plugin_metadata"
    )]
    pub plugin_metadata: BTreeMap<String, serde_json::Value>,
    /// APISIX's `deployment:` block: where the configuration lives and the
    /// Admin API.
    #[serde(default)]
    pub deployment: DeploymentConfig,
}

/// An identifier that APISIX allows to be a string or an integer (>= 1);
/// integers are kept as their decimal string. Validation checks the
/// string form against `^[a-zA-Z0-9-_.]{1,64}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Id(pub String);

impl Id {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                if v == 0 {
                    return Err(E::custom("an integer id must be at least 1"));
                }
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                if v < 1 {
                    return Err(E::custom("an integer id must be at least 1"));
                }
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_status() -> u8 {
    1
}
