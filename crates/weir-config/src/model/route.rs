//! Routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{default_status, Id, Labels, Timeout, Upstream};
use crate::ip_match::{IpCidr, IpMatcher};
use crate::vars::Vars;

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
    /// The id of an entry in `services`: the route inherits its plugins,
    /// upstream and hosts, and overrides them with its own
    /// ([`crate::resolve`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Id>,
    /// The id of an entry in `plugin_configs`, whose plugins fill in those
    /// the route does not configure itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config_id: Option<Id>,
    /// Extra conditions on request variables, parsed when loading
    /// (evaluate with [`Vars::eval`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<Vars>,
    /// One client address or CIDR block the request must come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<IpCidr>,
    /// Several client addresses or CIDR blocks (any of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addrs: Option<Vec<IpCidr>>,
    /// Connect/send/read timeouts for this route; they replace the upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Key/value labels (free-form, e.g. `version: v2`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

impl Route {
    /// `remote_addr` / `remote_addrs` as one matcher; `None` when the route
    /// accepts every client.
    pub fn remote_matcher(&self) -> Option<IpMatcher> {
        let blocks: Vec<IpCidr> = self
            .remote_addr
            .iter()
            .chain(self.remote_addrs.iter().flatten())
            .copied()
            .collect();
        (!blocks.is_empty()).then(|| IpMatcher::new(blocks))
    }

    /// `uri` or `uris`, as one list.
    pub fn uri_list(&self) -> Vec<String> {
        self.uris
            .clone()
            .or_else(|| self.uri.clone().map(|u| vec![u]))
            .unwrap_or_default()
    }

    /// `host` or `hosts`, as one list (empty: any host).
    pub fn host_list(&self) -> Vec<String> {
        self.hosts
            .clone()
            .or_else(|| self.host.clone().map(|h| vec![h]))
            .unwrap_or_default()
    }
}
