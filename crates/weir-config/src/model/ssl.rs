//! TLS certificates served by SNI (`ssls`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{default_status, Id};

/// A TLS certificate + key served for some SNIs. `Debug` never shows the
/// inline private key.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
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

impl fmt::Debug for Ssl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ssl")
            .field("id", &self.id)
            .field("sni", &self.sni)
            .field("snis", &self.snis)
            .field("cert", &self.cert.as_ref().map(|_| "<PEM>"))
            .field(
                "key",
                &self
                    .key
                    .as_ref()
                    .map(|_| crate::discovery_resolve::REDACTED),
            )
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("status", &self.status)
            .finish()
    }
}
