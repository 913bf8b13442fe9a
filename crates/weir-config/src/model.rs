//! The typed configuration model.
//!
//! Field names and meanings follow Apache APISIX wherever weir supports the
//! feature, so an APISIX standalone route list loads unchanged. Every struct
//! denies unknown fields: a typo is an error, never silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::discovery::DiscoveryConfig;

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

/// Process-wide settings: where to listen and how to behave.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Proxy listeners (plain HTTP/1.1 + h2c, or TLS with ALPN h2/http1.1).
    pub listeners: Vec<Listener>,
    /// The control API (status, readiness, live routes, discovery dump).
    pub control: ControlConfig,
    /// Downstream (client side) HTTP settings.
    pub http: HttpConfig,
    /// One line per request.
    pub access_log: AccessLogConfig,
    /// Graceful shutdown on SIGTERM / SIGINT / SIGQUIT.
    pub shutdown: ShutdownConfig,
    /// Add a `Via` header to proxied requests and responses.
    pub via: bool,
    /// Worker threads for the data plane; default: one per CPU core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Busy-poll a worker's event loop through idle gaps of up to this many
    /// microseconds instead of sleeping (adaptive; 0, the default, is off).
    /// Trades CPU for throughput and latency on dedicated cores.
    pub busy_poll_us: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listeners: vec![Listener::default()],
            control: ControlConfig::default(),
            http: HttpConfig::default(),
            access_log: AccessLogConfig::default(),
            shutdown: ShutdownConfig::default(),
            via: false,
            workers: None,
            busy_poll_us: 0,
        }
    }
}

/// A proxy listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port` to bind, e.g. `0.0.0.0:9080` or `[::]:9443`.
    pub address: String,
    /// Terminate TLS here with certificates from `ssls`, chosen by SNI.
    #[serde(default)]
    pub tls: bool,
    /// Accept HTTP/2 (h2c prior knowledge on plain listeners, ALPN `h2` on TLS).
    #[serde(default = "default_true")]
    pub http2: bool,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            address: "127.0.0.1:9080".into(),
            tls: false,
            http2: true,
        }
    }
}

/// The control API listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `ip:port`; default `127.0.0.1:9090`.
    pub address: String,
    /// Set to false to run without a control API.
    pub enabled: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            address: "127.0.0.1:9090".into(),
            enabled: true,
        }
    }
}

/// Downstream HTTP behaviour.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds to wait for a client's request headers.
    pub header_timeout: f64,
    /// Serve HTTP/1.1 on the hand-written fast path (default). `false`
    /// serves every connection with the general, hyper-based path.
    pub fast_path: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: 30.0,
            fast_path: true,
        }
    }
}

/// Access log settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write an access log at all.
    pub enabled: bool,
    /// `stdout`, `stderr` or a file path.
    pub path: String,
    /// Line format.
    pub format: AccessLogFormat,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            path: "stdout".into(),
            format: AccessLogFormat::Text,
        }
    }
}

/// Access log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// nginx "combined" plus host, request time and upstream details.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Graceful shutdown.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds to keep serving (with readiness failing) before closing listeners.
    pub drain_delay: f64,
    /// Seconds allowed for in-flight requests to finish after listeners close.
    pub timeout: f64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_delay: 0.0,
            timeout: 30.0,
        }
    }
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

/// `checks`: active probes and passive observation of live traffic.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthChecks {
    /// Probes sent by weir on a timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveCheck>,
    /// Judgement from the responses of real requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveCheck>,
}

/// Probe kind.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// HTTP GET of `http_path`.
    #[default]
    Http,
    /// HTTP GET over TLS.
    Https,
    /// TCP connect only.
    Tcp,
}

/// `checks.active`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActiveCheck {
    /// http, https or tcp.
    #[serde(default, rename = "type")]
    pub check_type: CheckType,
    /// Seconds a probe may take.
    #[serde(default = "default_check_timeout")]
    pub timeout: f64,
    /// Path probed.
    #[serde(default = "default_http_path")]
    pub http_path: String,
    /// Host header of probes (default: the node's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port probed instead of the node's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Verify the certificate for `type: https`.
    #[serde(default = "default_true")]
    pub https_verify_certificate: bool,
    /// When a node counts as healthy again.
    #[serde(default)]
    pub healthy: ActiveHealthy,
    /// When a node counts as unhealthy.
    #[serde(default)]
    pub unhealthy: ActiveUnhealthy,
}

/// `checks.active.healthy`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy node.
    pub interval: f64,
    /// Statuses that count as success.
    pub http_statuses: Vec<u16>,
    /// Consecutive successes that make an unhealthy node healthy.
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            interval: 1.0,
            http_statuses: vec![200, 302],
            successes: 2,
        }
    }
}

/// `checks.active.unhealthy`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy node.
    pub interval: f64,
    /// Statuses that count as an HTTP failure.
    pub http_statuses: Vec<u16>,
    /// HTTP failures that make a node unhealthy.
    pub http_failures: u32,
    /// TCP failures that make a node unhealthy.
    pub tcp_failures: u32,
    /// Timeouts that make a node unhealthy.
    pub timeouts: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 1.0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            http_failures: 5,
            tcp_failures: 2,
            timeouts: 3,
        }
    }
}

/// `checks.passive`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveCheck {
    /// http, https or tcp (tcp: only connection failures count).
    #[serde(default, rename = "type")]
    pub check_type: CheckType,
    /// When traffic shows a node healthy.
    #[serde(default)]
    pub healthy: PassiveHealthy,
    /// When traffic shows a node unhealthy.
    #[serde(default)]
    pub unhealthy: PassiveUnhealthy,
}

/// `checks.passive.healthy`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthy {
    /// Statuses that count as success.
    pub http_statuses: Vec<u16>,
    /// Successes that make an unhealthy node healthy.
    pub successes: u32,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        PassiveHealthy {
            http_statuses: vec![
                200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                306, 307, 308,
            ],
            successes: 5,
        }
    }
}

/// `checks.passive.unhealthy`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveUnhealthy {
    /// Statuses that count as an HTTP failure.
    pub http_statuses: Vec<u16>,
    /// HTTP failures that make a node unhealthy.
    pub http_failures: u32,
    /// Connection failures that make a node unhealthy.
    pub tcp_failures: u32,
    /// Timeouts that make a node unhealthy.
    pub timeouts: u32,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        PassiveUnhealthy {
            http_statuses: vec![429, 500, 503],
            http_failures: 5,
            tcp_failures: 2,
            timeouts: 7,
        }
    }
}

fn default_check_timeout() -> f64 {
    1.0
}

fn default_http_path() -> String {
    "/".into()
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

/// A TLS certificate + key served for some SNIs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ssl {
    /// Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// One server name (exact or `*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Several server names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snis: Option<Vec<String>>,
    /// PEM certificate chain, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key, inline.
    #[serde(default, skip_serializing)]
    pub key: Option<String>,
    /// PEM certificate chain file (weir extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key file (weir extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// 1 = enabled, 0 = disabled.
    #[serde(default = "default_status")]
    pub status: u8,
}

fn default_true() -> bool {
    true
}

fn default_status() -> u8 {
    1
}

fn default_weight() -> u32 {
    1
}
