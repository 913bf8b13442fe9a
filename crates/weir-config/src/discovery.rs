//! The `discovery:` section, compatible with APISIX's `discovery.kubernetes`.
//!
//! `discovery.kubernetes` is either one object (single-cluster mode) or a list
//! of objects each with an `id` (multi-cluster mode), exactly as in APISIX.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// `discovery:` — service discovery sources.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Kubernetes Endpoints / EndpointSlices discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesDiscovery>,
}

/// Single-cluster (object) or multi-cluster (list) mode.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KubernetesDiscovery {
    /// `discovery.kubernetes: {...}`; service names are `ns/name:port`.
    Single(Box<KubernetesCluster>),
    /// `discovery.kubernetes: [{id: ..., ...}]`; service names are `id/ns/name:port`.
    Multi(Vec<KubernetesCluster>),
}

impl<'de> Deserialize<'de> for KubernetesDiscovery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl<'de> Visitor<'de> for ModeVisitor {
            type Value = KubernetesDiscovery;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object (single cluster) or a list of clusters with ids")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let cluster =
                    KubernetesCluster::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(KubernetesDiscovery::Single(Box::new(cluster)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let clusters = Vec::<KubernetesCluster>::deserialize(
                    de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(KubernetesDiscovery::Multi(clusters))
            }
        }
        d.deserialize_any(ModeVisitor)
    }
}

/// One cluster's discovery settings (APISIX field names).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesCluster {
    /// Cluster id (multi-cluster mode only), `^[a-z0-9]{1,64}$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the API server is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ApiServerService>,
    /// How to authenticate and verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ApiServerClient>,
    /// Weight given to each discovered endpoint (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_weight: Option<u32>,
    /// Keep only endpoints from matching namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Kubernetes label selector, sent to the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Accepted for APISIX compatibility; has no effect in weir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_size: Option<serde_json::Value>,
    /// Watch EndpointSlices instead of Endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_endpoint_slices: Option<bool>,
    /// weir extension: seconds without any byte on a watch before it is
    /// considered dead and re-established (default 60; bookmarks keep it alive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_idle_timeout: Option<f64>,
}

/// `service:` — the API server address.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiServerService {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Host, IP or `${ENV}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port number or `${ENV}` (string or integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortValue>,
    /// APISIX's switch for verifying the API server's certificate. Unlike
    /// APISIX (unset means no verification), weir verifies unless this (or
    /// `client.ssl_verify`) is explicitly `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_verify: Option<bool>,
}

/// A port given as a number or a string (possibly `${ENV}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(transparent)]
pub struct PortValue(pub String);

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
                Ok(PortValue(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortValue, E> {
                Ok(PortValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
                Ok(PortValue(v.to_string()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// `client:` — credentials and TLS verification.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiServerClient {
    /// Bearer token inline (may be `${ENV}`). Never logged or dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the bearer token; re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// weir extension: CA bundle used to verify the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// weir extension: `false` disables TLS verification (must be explicit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_verify: Option<bool>,
    /// weir extension: use a kubeconfig file instead of service/token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

/// `namespace_selector:` — one of the four kinds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSelector {
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equal: Option<String>,
    /// Every namespace but this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equal: Option<String>,
    /// Namespaces matching one of these regexes (whole-name match).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Vec<String>>,
    /// Namespaces matching none of these regexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_match: Option<Vec<String>>,
}
