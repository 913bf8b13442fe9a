//! Process-wide settings: listeners, control API, HTTP, access log, shutdown.

use serde::{Deserialize, Serialize};

use super::default_true;

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
    /// weir's own: a directory where the last installed configuration and
    /// the last-known discovered node sets are kept, so that a restart while
    /// the API server is down still routes (warm start). Unset: no warm start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
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
            state_dir: None,
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
    /// Seconds allowed between two reads of a request body (nginx's
    /// `client_body_timeout`): past it the request is answered 408 (when
    /// its answer has not started) and the connection closed.
    pub body_timeout: f64,
    /// Seconds a write to the client may make no progress (nginx's
    /// `send_timeout`): past it the client connection is closed, and with
    /// it the node connection the response came from.
    pub send_timeout: f64,
    /// Seconds an upgraded (WebSocket) tunnel may carry no byte in either
    /// direction before both its connections are closed.
    pub tunnel_idle_timeout: f64,
    /// Serve HTTP/1.1 on the hand-written fast path (default). `false`
    /// serves every connection with the general, hyper-based path.
    pub fast_path: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: 30.0,
            body_timeout: 60.0,
            send_timeout: 60.0,
            tunnel_idle_timeout: 3600.0,
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
