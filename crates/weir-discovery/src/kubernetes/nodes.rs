//! Pure node-set builders over k8s-openapi types.
//!
//! Each watched object becomes a [`Contribution`] (its nodes per port key,
//! split into ready and terminating-but-serving); [`merge`] folds the
//! contributions of one service (one Endpoints object, or all EndpointSlices
//! labelled with the service) into the service's [`PortMap`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::registry::{Node, PortMap};

/// Label on an EndpointSlice naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Nodes of one port key from one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortNodes {
    /// Ready endpoints.
    pub ready: Vec<Node>,
    /// Endpoints that are serving but terminating: used only when no ready
    /// endpoint is left for the port (as kube-proxy does).
    pub terminating: Vec<Node>,
}

/// What one Kubernetes object contributes to its service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Port key -> nodes. A port with no endpoint still has an (empty) entry,
    /// so the name resolves to zero nodes rather than to "no such port".
    pub ports: BTreeMap<String, PortNodes>,
    /// Addresses or ports that were skipped, each naming the object.
    pub problems: Vec<String>,
}

/// The port key APISIX uses: the port's name, or its number when unnamed.
pub fn port_key(name: Option<&str>, number: i32) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => number.to_string(),
    }
}

fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// Parses an endpoint IP; the host is kept in its canonical form.
fn valid_ip(ip: &str) -> Option<String> {
    ip.parse::<IpAddr>().ok().map(|a| a.to_string())
}

fn object_name(ns: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", ns.unwrap_or("?"), name.unwrap_or("?"))
}

/// Nodes of an Endpoints object: `subsets[].addresses` only (ready).
pub fn endpoints_contribution(ep: &Endpoints, weight: u32) -> Contribution {
    let mut out = Contribution::default();
    let obj = object_name(
        ep.metadata.namespace.as_deref(),
        ep.metadata.name.as_deref(),
    );
    for subset in ep.subsets.iter().flatten() {
        let mut ports = Vec::new();
        for p in subset.ports.iter().flatten() {
            let key = port_key(p.name.as_deref(), p.port);
            match valid_port(p.port) {
                Some(n) => ports.push((key, n)),
                None => out.problems.push(format!(
                    "Endpoints {obj}: port {key:?} has invalid number {}",
                    p.port
                )),
            }
        }
        let mut hosts = Vec::new();
        for a in subset.addresses.iter().flatten() {
            match valid_ip(&a.ip) {
                Some(ip) => hosts.push(ip),
                None => out
                    .problems
                    .push(format!("Endpoints {obj}: invalid address {:?}", a.ip)),
            }
        }
        for (key, port) in ports {
            let entry = out.ports.entry(key).or_default();
            entry.ready.extend(hosts.iter().map(|h| Node {
                host: h.clone(),
                port,
                weight,
            }));
        }
    }
    out
}

/// The `namespace/name` of the Service an EndpointSlice belongs to.
pub fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    let ns = slice.metadata.namespace.as_deref()?;
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!("{ns}/{svc}"))
}

/// Nodes of one EndpointSlice. `conditions.ready` nil counts as ready;
/// `serving` nil means "as ready"; `terminating` nil means false.
pub fn slice_contribution(slice: &EndpointSlice, weight: u32) -> Contribution {
    let mut out = Contribution::default();
    let obj = object_name(
        slice.metadata.namespace.as_deref(),
        slice.metadata.name.as_deref(),
    );
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        out.problems.push(format!(
            "EndpointSlice {obj}: addressType {:?} is not supported, slice ignored",
            slice.address_type
        ));
        return out;
    }
    let mut ports = Vec::new();
    for p in slice.ports.iter().flatten() {
        let Some(number) = p.port else {
            // A port without a number means "all ports": nothing to route to.
            out.problems.push(format!(
                "EndpointSlice {obj}: port {:?} has no number, skipped",
                p.name.as_deref().unwrap_or("")
            ));
            continue;
        };
        let key = port_key(p.name.as_deref(), number);
        match valid_port(number) {
            Some(n) => ports.push((key, n)),
            None => out.problems.push(format!(
                "EndpointSlice {obj}: port {key:?} has invalid number {number}"
            )),
        }
    }
    for (key, _) in &ports {
        out.ports.entry(key.clone()).or_default();
    }
    for ep in slice.endpoints.iter().flatten() {
        // Addresses of one endpoint are fungible: the first one is the pod's.
        let Some(addr) = ep.addresses.first() else {
            continue;
        };
        let Some(host) = valid_ip(addr) else {
            out.problems
                .push(format!("EndpointSlice {obj}: invalid address {addr:?}"));
            continue;
        };
        let cond = ep.conditions.clone().unwrap_or_default();
        let ready = cond.ready.unwrap_or(true);
        let serving = cond.serving.unwrap_or(ready);
        let terminating = cond.terminating.unwrap_or(false);
        for (key, port) in &ports {
            let node = Node {
                host: host.clone(),
                port: *port,
                weight,
            };
            let entry = out.ports.entry(key.clone()).or_default();
            if ready {
                entry.ready.push(node);
            } else if serving && terminating {
                entry.terminating.push(node);
            }
        }
    }
    out
}

/// Merges the contributions of one service: union per port key, de-duplicated
/// and sorted; terminating endpoints only for a port with no ready one.
pub fn merge<'a>(contributions: impl IntoIterator<Item = &'a Contribution>) -> PortMap {
    let mut ready: BTreeMap<String, BTreeSet<(String, u16, u32)>> = BTreeMap::new();
    let mut terminating: BTreeMap<String, BTreeSet<(String, u16, u32)>> = BTreeMap::new();
    for c in contributions {
        for (key, nodes) in &c.ports {
            let r = ready.entry(key.clone()).or_default();
            r.extend(
                nodes
                    .ready
                    .iter()
                    .map(|n| (n.host.clone(), n.port, n.weight)),
            );
            let t = terminating.entry(key.clone()).or_default();
            t.extend(
                nodes
                    .terminating
                    .iter()
                    .map(|n| (n.host.clone(), n.port, n.weight)),
            );
        }
    }
    ready
        .into_iter()
        .map(|(key, set)| {
            let set = if set.is_empty() {
                terminating.remove(&key).unwrap_or_default()
            } else {
                set
            };
            let nodes = set
                .into_iter()
                .map(|(host, port, weight)| Node { host, port, weight })
                .collect();
            (key, nodes)
        })
        .collect()
}

#[cfg(test)]
#[path = "nodes_tests.rs"]
mod tests;
