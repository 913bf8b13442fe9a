//! Node registry and Kubernetes service discovery.
//!
//! [`Registry`] maps a `service_name` (`ns/name:port` or `id/ns/name:port`)
//! to a live node list; [`KubernetesDiscovery`] list-watches Endpoints or
//! EndpointSlices of one or more clusters and writes into it per service.

pub mod kubernetes;
mod ratelimit;
pub mod registry;

pub use kubernetes::{KubernetesDiscovery, SyncState, WatchOptions};
pub use registry::{Node, NodeList, PortMap, Registry, ServiceNodes, Unresolved};
