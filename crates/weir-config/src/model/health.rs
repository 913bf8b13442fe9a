//! Upstream health checks (`checks`), APISIX's schema.

use serde::{Deserialize, Serialize};

use super::default_true;

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
    /// Nodes probed at the same time (APISIX's `concurrency`, default 10).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Method of HTTP probes (default `GET`).
    #[serde(default = "default_http_method")]
    pub http_method: String,
    /// Body of HTTP probes (default none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub http_req_body: String,
    /// Extra request headers of HTTP probes, as `"Name: value"` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_headers: Option<Vec<String>>,
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

fn default_concurrency() -> u32 {
    10
}

fn default_http_method() -> String {
    "GET".into()
}

fn default_http_path() -> String {
    "/".into()
}
