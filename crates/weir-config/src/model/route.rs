//! Routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{default_status, Id, Upstream};

/// A route: which requests it matches and where they go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Route id; defaults to its index in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// One path pattern: exact, prefix with trailing `*`, `:name` segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Several path patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// One host: exact or leading wildcard `*.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Several hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// HTTP methods; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Higher wins between routes with the same host and uri specificity.
    #[serde(default)]
    pub priority: i64,
    /// An inline upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// The id of an entry in `upstreams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Id>,
    /// Let WebSocket upgrades through.
    #[serde(default)]
    pub enable_websocket: bool,
    /// 1 = enabled, 0 = disabled.
    #[serde(default = "default_status")]
    pub status: u8,
    /// Plugins by name with their configuration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, serde_json::Value>,
}
