//! Upstreams: nodes, balancing, timeouts, TLS towards the nodes.

use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{default_true, HealthChecks, Id, Labels};
use crate::vars::VarsTemplate;

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LbType {
    /// Smooth weighted round robin (as nginx).
    #[default]
    Roundrobin,
    /// Consistent hashing on `hash_on` + `key`.
    Chash,
    /// Fewest in-flight requests relative to weight.
    LeastConn,
    /// Lowest exponentially weighted moving average latency.
    Ewma,
}

/// What `chash` hashes, restricted to the kinds the engine of today knows;
/// see [`HashKind`] for every kind APISIX has ([`Upstream::hash_on_kind`]).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// An nginx-style variable: `remote_addr`, `uri`, `host`, `arg_NAME`, `http_NAME`...
    #[default]
    Vars,
    /// A request header named by `key`.
    Header,
    /// A cookie named by `key`.
    Cookie,
}

/// What `chash` hashes (APISIX's `hash_on`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashKind {
    /// A request variable named by `key`: `remote_addr`, `uri`, `host`,
    /// `query_string`, `arg_NAME`, `http_NAME`...
    #[default]
    Vars,
    /// A request header named by `key`.
    Header,
    /// A cookie named by `key`.
    Cookie,
    /// The authenticated consumer's name (no `key`); requests without a
    /// consumer hash the client address.
    Consumer,
    /// `key` is a template of variables, e.g. `$host$remote_addr`
    /// ([`Upstream::vars_combinations`]).
    VarsCombinations,
}

impl HashKind {
    /// The nearest [`HashOn`]: `consumer` and `vars_combinations` map to
    /// `Vars`, whose key then names no variable, so an engine that only
    /// knows [`HashOn`] hashes the client address for them.
    pub fn legacy(self) -> HashOn {
        match self {
            HashKind::Header => HashOn::Header,
            HashKind::Cookie => HashOn::Cookie,
            HashKind::Vars | HashKind::Consumer | HashKind::VarsCombinations => HashOn::Vars,
        }
    }
}

/// Scheme used to talk to the upstream nodes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP/1.1.
    #[default]
    Http,
    /// HTTP/1.1 over TLS, certificate verified against the node host / upstream_host.
    Https,
}

/// Which `Host` header the upstream sees.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PassHost {
    /// The client's Host.
    #[default]
    Pass,
    /// The chosen node's `host:port`.
    Node,
    /// `upstream_host`.
    Rewrite,
}

/// Upstream timeouts in seconds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    /// TCP (+TLS) connect.
    pub connect: f64,
    /// Sending the request.
    pub send: f64,
    /// Waiting for the response headers and between body reads.
    pub read: f64,
}

impl Default for Timeout {
    fn default() -> Self {
        Timeout {
            connect: 60.0,
            send: 60.0,
            read: 60.0,
        }
    }
}

/// An upstream: a set of nodes plus how to balance and talk to them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Id referenced by `routes[].upstream_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Load-balancing algorithm.
    #[serde(default, rename = "type")]
    pub lb_type: LbType,
    /// Static nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Nodes>,
    /// `chash` input kind in the engine's original terms: filled from
    /// [`Upstream::hash_on_kind`] by the loader (`consumer` and
    /// `vars_combinations` show as `Vars`), never read from or written to
    /// the document. New code reads `hash_on_kind`.
    #[serde(skip)]
    pub hash_on: HashOn,
    /// `hash_on`: what `chash` hashes.
    #[serde(default, rename = "hash_on")]
    pub hash_on_kind: HashKind,
    /// `chash` input: variable, header or cookie name, or the
    /// `vars_combinations` template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Extra attempts on another node; default: number of nodes - 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Seconds after which no more retries start; 0 = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<f64>,
    /// Connect/send/read timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// http or https to the nodes.
    #[serde(default)]
    pub scheme: Scheme,
    /// Host header policy.
    #[serde(default)]
    pub pass_host: PassHost,
    /// Host header when `pass_host: rewrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    /// `kubernetes` to take nodes from Kubernetes discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_type: Option<String>,
    /// `namespace/name:port` (or `cluster/namespace/name:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Upstream keep-alive pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_pool: Option<KeepalivePool>,
    /// TLS towards the nodes when `scheme: https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Health checks (`active`, `passive`), APISIX schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<HealthChecks>,
    /// Key/value labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// A static node with its defaults applied (see [`Upstream::static_nodes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StaticNode {
    /// IP address (IPv6 without brackets) or DNS name.
    pub host: String,
    /// Port; 80 / 443 by scheme when the configuration gives none.
    pub port: u16,
    /// Relative weight; 0 = no traffic.
    pub weight: u32,
    /// Priority group: only the highest group with an available node gets
    /// traffic; lower ones are backups (APISIX's meaning). Map-form nodes: 0.
    pub priority: i64,
    /// `metadata` of a list-form node.
    pub metadata: Option<serde_json::Value>,
}

impl Upstream {
    /// The static nodes (map or list form) with defaults applied: the port
    /// by scheme, IPv6 hosts without brackets, priority 0 for map-form
    /// nodes. Entries that do not parse are skipped (validation reports them).
    pub fn static_nodes(&self) -> Vec<StaticNode> {
        let default_port = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        match &self.nodes {
            None => Vec::new(),
            Some(Nodes::Map(m)) => m
                .iter()
                .filter_map(|(k, w)| {
                    let (host, port) = crate::parse_node_key(k).ok()?;
                    Some(StaticNode {
                        host,
                        port: port.unwrap_or(default_port),
                        weight: *w,
                        priority: 0,
                        metadata: None,
                    })
                })
                .collect(),
            Some(Nodes::List(l)) => l
                .iter()
                .map(|n| StaticNode {
                    host: unbracket(&n.host).to_owned(),
                    port: n.port.unwrap_or(default_port),
                    weight: n.weight,
                    priority: n.priority,
                    metadata: n.metadata.clone(),
                })
                .collect(),
        }
    }

    /// The parsed `key` when `hash_on: vars_combinations`.
    pub fn vars_combinations(&self) -> Option<VarsTemplate> {
        if self.hash_on_kind != HashKind::VarsCombinations {
            return None;
        }
        VarsTemplate::parse(self.key.as_deref()?).ok()
    }
}

/// `[::1]` -> `::1`; anything else unchanged.
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        .unwrap_or(host)
}

/// TLS settings towards upstream nodes (`upstream.tls`).
///
/// `Debug` never shows `client_key`, and serializing leaves it out.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Verify the node's certificate (default true; APISIX defaults to false —
    /// weir is secure by default).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// weir extension: PEM CA bundle trusted instead of the public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate (chain) presented to the nodes (mTLS); needs
    /// `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert`. A secret: never printed.
    #[serde(default, skip_serializing)]
    pub client_key: Option<String>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("verify", &self.verify)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert.as_ref().map(|_| "<PEM>"))
            .field(
                "client_key",
                &self
                    .client_key
                    .as_ref()
                    .map(|_| crate::discovery_resolve::REDACTED),
            )
            .finish()
    }
}

/// Upstream keep-alive pool settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepalivePool {
    /// Idle connections kept per node.
    pub size: u32,
    /// Seconds an idle connection is kept.
    pub idle_timeout: f64,
    /// Requests per connection before it is closed.
    pub requests: u32,
}

impl Default for KeepalivePool {
    fn default() -> Self {
        KeepalivePool {
            size: 320,
            idle_timeout: 60.0,
            requests: 1000,
        }
    }
}

/// Static nodes: APISIX's map form `{"host:port": weight}` or list form.
/// Serialized in the form it was read in (the warm-start state and the
/// dump read it back).
#[derive(Debug, Clone, PartialEq)]
pub enum Nodes {
    /// `"host:port": weight`, in file order.
    Map(Vec<(String, u32)>),
    /// `[{host, port, weight}]`.
    List(Vec<NodeSpec>),
}

impl Nodes {
    /// Number of nodes listed.
    pub fn len(&self) -> usize {
        match self {
            Nodes::Map(m) => m.len(),
            Nodes::List(l) => l.len(),
        }
    }

    /// True when no node is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for Nodes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            Nodes::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (addr, weight) in entries {
                    map.serialize_entry(addr, weight)?;
                }
                map.end()
            }
            Nodes::List(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Nodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodesVisitor;
        impl<'de> Visitor<'de> for NodesVisitor {
            type Value = Nodes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of \"host:port\": weight, or a list of {host, port, weight}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Nodes, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, u32>()? {
                    out.push((k, v));
                }
                Ok(Nodes::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nodes, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = seq.next_element::<NodeSpec>()? {
                    out.push(n);
                }
                Ok(Nodes::List(out))
            }
        }
        d.deserialize_any(NodesVisitor)
    }
}

/// One node in list form.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// IP or DNS name.
    pub host: String,
    /// Port; default 80 (http) / 443 (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Relative weight; 0 = no traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Priority group (default 0): lower groups are backups that get
    /// traffic only when no node of a higher group is available.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// Free-form metadata (an object), kept for plugins and the control API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn default_weight() -> u32 {
    1
}
