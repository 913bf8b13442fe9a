//! The typed configuration model.
//!
//! Field names and meanings follow Apache APISIX wherever weir supports the
//! feature, so an APISIX standalone route list loads unchanged. Every struct
//! denies unknown fields: a typo is an error, never silently ignored.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::discovery::DiscoveryConfig;

mod gateway;
mod health;
mod route;
mod ssl;
mod upstream;

pub use gateway::*;
pub use health::*;
pub use route::*;
pub use ssl::*;
pub use upstream::*;

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
}

/// An identifier that APISIX allows to be a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Id(pub String);

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
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
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
