//! Short builders for test objects.
//!
//! ```
//! use weir_testkit::kube_api::{endpoints, endpoint_slice, EndpointState};
//! let ep = endpoints("shop", "cart")
//!     .ready(["10.0.0.1", "10.0.0.2"])
//!     .not_ready(["10.0.0.3"])
//!     .port("http", 8080)
//!     .port_unnamed(9090)
//!     .build();
//! let slice = endpoint_slice("shop", "cart-abc", "cart")
//!     .endpoint("10.0.0.1", EndpointState::Ready)
//!     .endpoint("10.0.0.2", EndpointState::ServingTerminating)
//!     .port(Some("http"), 8080)
//!     .build();
//! # let _ = (ep, slice);
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn meta(ns: &str, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

/// Starts an `Endpoints` object `ns/name`.
pub fn endpoints(ns: &str, name: &str) -> EndpointsBuilder {
    EndpointsBuilder {
        ns: ns.to_string(),
        name: name.to_string(),
        labels: BTreeMap::new(),
        subsets: Vec::new(),
    }
}

/// Builder for [`Endpoints`]; see [`endpoints`].
///
/// Addresses and ports go to the current subset; [`EndpointsBuilder::subset`] starts a
/// new one. Subsets without any address are dropped by `build()` (the API server
/// rejects them), so `endpoints(ns, name).build()` is a service scaled to zero: no
/// `subsets` key at all, as in the recordings.
#[derive(Debug, Clone)]
pub struct EndpointsBuilder {
    ns: String,
    name: String,
    labels: BTreeMap<String, String>,
    subsets: Vec<EndpointSubset>,
}

impl EndpointsBuilder {
    fn current(&mut self) -> &mut EndpointSubset {
        if self.subsets.is_empty() {
            self.subsets.push(EndpointSubset::default());
        }
        let last = self.subsets.len() - 1;
        &mut self.subsets[last]
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Starts a new subset (different ports for different addresses).
    pub fn subset(mut self) -> Self {
        self.subsets.push(EndpointSubset::default());
        self
    }

    /// Adds ready addresses (`addresses`) to the current subset.
    pub fn ready<S: Into<String>>(mut self, ips: impl IntoIterator<Item = S>) -> Self {
        let s = self.current();
        let list = s.addresses.get_or_insert_with(Vec::new);
        list.extend(ips.into_iter().map(|ip| EndpointAddress {
            ip: ip.into(),
            ..EndpointAddress::default()
        }));
        self
    }

    /// Adds not-ready addresses (`notReadyAddresses`) to the current subset.
    pub fn not_ready<S: Into<String>>(mut self, ips: impl IntoIterator<Item = S>) -> Self {
        let s = self.current();
        let list = s.not_ready_addresses.get_or_insert_with(Vec::new);
        list.extend(ips.into_iter().map(|ip| EndpointAddress {
            ip: ip.into(),
            ..EndpointAddress::default()
        }));
        self
    }

    /// Adds a full `EndpointAddress` (e.g. with `targetRef`) as ready.
    pub fn ready_address(mut self, address: EndpointAddress) -> Self {
        self.current()
            .addresses
            .get_or_insert_with(Vec::new)
            .push(address);
        self
    }

    /// Adds a full `EndpointAddress` as not ready.
    pub fn not_ready_address(mut self, address: EndpointAddress) -> Self {
        self.current()
            .not_ready_addresses
            .get_or_insert_with(Vec::new)
            .push(address);
        self
    }

    /// Adds a named TCP port to the current subset.
    pub fn port(self, name: &str, port: i32) -> Self {
        self.port_with_protocol(Some(name), port, "TCP")
    }

    /// Adds an unnamed TCP port to the current subset.
    pub fn port_unnamed(self, port: i32) -> Self {
        self.port_with_protocol(None, port, "TCP")
    }

    /// Adds a port with an explicit protocol (`TCP`, `UDP`, `SCTP`).
    pub fn port_with_protocol(mut self, name: Option<&str>, port: i32, protocol: &str) -> Self {
        self.current()
            .ports
            .get_or_insert_with(Vec::new)
            .push(CorePort {
                name: name.map(str::to_string),
                port,
                protocol: Some(protocol.to_string()),
                app_protocol: None,
            });
        self
    }

    /// The object.
    pub fn build(self) -> Endpoints {
        let subsets: Vec<EndpointSubset> = self
            .subsets
            .into_iter()
            .filter(|s| {
                s.addresses.as_ref().is_some_and(|a| !a.is_empty())
                    || s.not_ready_addresses
                        .as_ref()
                        .is_some_and(|a| !a.is_empty())
            })
            .collect();
        Endpoints {
            metadata: meta(&self.ns, &self.name, self.labels),
            subsets: (!subsets.is_empty()).then_some(subsets),
        }
    }
}

/// The conditions of one EndpointSlice endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// `{ready: true, serving: true, terminating: false}`.
    Ready,
    /// `{ready: false, serving: false, terminating: false}`.
    NotReady,
    /// `{ready: false, serving: true, terminating: true}` (draining pod still serving).
    ServingTerminating,
    /// `{ready: false, serving: false, terminating: true}`.
    Terminating,
    /// `conditions: {}`: every condition nil (consumers must treat `ready` nil as ready).
    NilConditions,
}

impl EndpointState {
    fn conditions(self) -> EndpointConditions {
        let c = |r, s, t| EndpointConditions {
            ready: Some(r),
            serving: Some(s),
            terminating: Some(t),
        };
        match self {
            EndpointState::Ready => c(true, true, false),
            EndpointState::NotReady => c(false, false, false),
            EndpointState::ServingTerminating => c(false, true, true),
            EndpointState::Terminating => c(false, false, true),
            EndpointState::NilConditions => EndpointConditions::default(),
        }
    }
}

/// Starts an `EndpointSlice` `ns/name` for Service `service` (sets the
/// `kubernetes.io/service-name` label).
pub fn endpoint_slice(ns: &str, name: &str, service: &str) -> EndpointSliceBuilder {
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_NAME_LABEL.to_string(), service.to_string());
    EndpointSliceBuilder {
        ns: ns.to_string(),
        name: name.to_string(),
        labels,
        address_type: None,
        endpoints: Vec::new(),
        ports: Vec::new(),
    }
}

/// Builder for [`EndpointSlice`]; see [`endpoint_slice`].
#[derive(Debug, Clone)]
pub struct EndpointSliceBuilder {
    ns: String,
    name: String,
    labels: BTreeMap<String, String>,
    address_type: Option<String>,
    endpoints: Vec<Endpoint>,
    ports: Vec<SlicePort>,
}

impl EndpointSliceBuilder {
    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets `addressType` (default: `IPv6` if the first address contains `:`, else `IPv4`).
    pub fn address_type(mut self, t: &str) -> Self {
        self.address_type = Some(t.to_string());
        self
    }

    /// Adds an endpoint with one address.
    pub fn endpoint(mut self, address: &str, state: EndpointState) -> Self {
        self.endpoints.push(Endpoint {
            addresses: vec![address.to_string()],
            conditions: Some(state.conditions()),
            ..Endpoint::default()
        });
        self
    }

    /// Adds a fully specified endpoint (zone, nodeName, targetRef, hints…).
    pub fn endpoint_raw(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds a TCP port; `None` is an unnamed port (served back as `"name": ""`).
    pub fn port(mut self, name: Option<&str>, port: i32) -> Self {
        self.ports.push(SlicePort {
            name: name.map(str::to_string),
            port: Some(port),
            protocol: Some("TCP".into()),
            app_protocol: None,
        });
        self
    }

    /// The object.
    pub fn build(self) -> EndpointSlice {
        let address_type = self.address_type.unwrap_or_else(|| {
            let v6 = self
                .endpoints
                .first()
                .and_then(|e| e.addresses.first())
                .is_some_and(|a| a.contains(':'));
            if v6 { "IPv6" } else { "IPv4" }.to_string()
        });
        EndpointSlice {
            metadata: meta(&self.ns, &self.name, self.labels),
            address_type,
            endpoints: (!self.endpoints.is_empty()).then_some(self.endpoints),
            ports: (!self.ports.is_empty()).then_some(self.ports),
        }
    }
}
