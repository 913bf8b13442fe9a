//! Upstreams: nodes, balancing, timeouts, TLS towards the nodes.

use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{default_true, HealthChecks, Id};

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

/// What `chash` hashes.
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
    /// `chash` input kind.
    #[serde(default)]
    pub hash_on: HashOn,
    /// `chash` input name.
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
}

/// TLS settings towards upstream nodes (`upstream.tls`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Verify the node's certificate (default true; APISIX defaults to false —
    /// weir is secure by default).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// weir extension: PEM CA bundle trusted instead of the public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
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
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
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
    /// Accepted for APISIX compatibility; weir does not use node priority yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Free-form metadata, accepted for APISIX compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

fn default_weight() -> u32 {
    1
}
