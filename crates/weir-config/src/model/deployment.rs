//! APISIX's `deployment:` block (its `config.yaml` names): where the
//! configuration lives and the Admin API's listener, keys and client list.
//! Only the settings weir implements are accepted; `state_file` is weir's own.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::discovery_resolve::Secret;
use crate::ip_match::IpCidr;

/// APISIX's `deployment:` block.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentConfig {
    /// APISIX's deployment role; weir is always `traditional` (it serves
    /// traffic and the Admin API in one process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Settings of the `traditional` role.
    pub role_traditional: RoleTraditional,
    /// The Admin API.
    pub admin: AdminSettings,
    /// etcd, with `config_provider: etcd`.
    pub etcd: EtcdSettings,
}

/// `deployment.role_traditional`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoleTraditional {
    /// Where the routes, upstreams, ... live.
    pub config_provider: ConfigProvider,
}

/// `deployment.role_traditional.config_provider`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConfigProvider {
    /// This file (and, with `deployment.admin.state_file`, what the Admin
    /// API wrote).
    #[default]
    Yaml,
    /// etcd in APISIX's layout (`deployment.etcd`): read at start, then
    /// watched; the Admin API writes there.
    Etcd,
}

/// `deployment.admin`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Where the Admin API listens (default `127.0.0.1:9180`).
    pub admin_listen: AdminListen,
    /// The keys that may call the Admin API. None: the Admin API does not
    /// start.
    pub admin_key: Vec<AdminKey>,
    /// Client addresses allowed to connect (default: loopback only).
    pub allow_admin: Vec<IpCidr>,
    /// weir's own: the file where the Admin API keeps what it writes. Unset:
    /// the Admin API is read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            admin_listen: AdminListen::default(),
            admin_key: Vec::new(),
            allow_admin: default_allow_admin(),
            state_file: None,
        }
    }
}

/// Loopback, IPv4 and IPv6.
fn default_allow_admin() -> Vec<IpCidr> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `deployment.admin.admin_listen`, APISIX's `{ip, port}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminListen {
    /// Address to bind (default `127.0.0.1`, unlike APISIX's `0.0.0.0`).
    pub ip: String,
    /// Port (default 9180).
    pub port: u16,
}

impl Default for AdminListen {
    fn default() -> Self {
        AdminListen {
            ip: "127.0.0.1".into(),
            port: 9180,
        }
    }
}

impl AdminListen {
    /// `ip:port` (IPv6 in brackets), for binding.
    pub fn address(&self) -> String {
        if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// One Admin API key. `Debug` never shows the key, and it is never
/// serialized.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// A name for logs and messages (the key itself is never shown).
    #[serde(default)]
    pub name: String,
    /// The secret sent as `X-API-KEY`.
    #[serde(skip_serializing)]
    pub key: Secret,
    /// What the key may do.
    #[serde(default)]
    pub role: AdminRole,
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminKey")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("role", &self.role)
            .finish()
    }
}

/// An Admin API key's role.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Every method.
    #[default]
    Admin,
    /// `GET` only.
    Viewer,
}

/// The sample key APISIX once shipped in its default configuration; it is
/// public, so weir refuses it.
pub const PUBLISHED_SAMPLE_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";

/// `deployment.etcd`, APISIX's names. `password` is never serialized (the
/// dump) nor shown by `Debug`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdSettings {
    /// etcd's client URLs (`http://127.0.0.1:2379`); tried in turn.
    pub host: Vec<String>,
    /// The key prefix (default `/apisix`): resources live under
    /// `<prefix>/<resource>/<id>`.
    pub prefix: String,
    /// Seconds one request to etcd may take (default 30).
    pub timeout: f64,
    /// User for etcd's authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its password (never serialized).
    #[serde(skip_serializing)]
    pub password: Option<Secret>,
    /// TLS to etcd (`https://` hosts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTls>,
    /// Seconds a watch request lives before it is opened again from the
    /// next revision (APISIX's default 50). Its end is not an error.
    pub watch_timeout: f64,
    /// The longest wait, in seconds, between two tries after etcd failed
    /// (reads, watches): the wait starts at 100 ms (or this, if smaller),
    /// doubles after each failure up to this, with jitter (APISIX's
    /// default 5).
    pub resync_delay: f64,
    /// Seconds the liveness probe (every 3 s while a watch is open) waits
    /// for an answer before etcd is declared unreachable (APISIX's default
    /// 10).
    pub health_check_timeout: f64,
    /// How many times start-up reads each etcd host before weir gives up
    /// and exits, when no warm-start configuration was loaded. Unset:
    /// weir keeps trying (not ready until etcd is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_retry: Option<u32>,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        EtcdSettings {
            host: vec!["http://127.0.0.1:2379".into()],
            prefix: "/apisix".into(),
            timeout: 30.0,
            user: None,
            password: None,
            tls: None,
            watch_timeout: 50.0,
            resync_delay: 5.0,
            health_check_timeout: 10.0,
            startup_retry: None,
        }
    }
}

/// `deployment.etcd.tls`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// Client certificate (PEM file) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Its private key (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Verify etcd's certificate (default true). `false` accepts any
    /// certificate (a warning is logged at start): for tests only.
    #[serde(default = "yes")]
    pub verify: bool,
    /// weir's own: the CA certificates (PEM file) etcd's certificate is
    /// checked against (APISIX takes them from
    /// `apisix.ssl.ssl_trusted_certificate`). Unset: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The name sent as SNI and checked in etcd's certificate (default:
    /// the host's in `deployment.etcd.host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

fn yes() -> bool {
    true
}
