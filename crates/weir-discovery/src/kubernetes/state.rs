//! The per-cluster state machine: watcher events in, per-service node-set
//! updates out. Plain data, no I/O; the watch task feeds it and writes what
//! it returns into the registry.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use serde::de::DeserializeOwned;
use weir_config::discovery_resolve::NamespaceFilter;

use super::nodes::{self, Contribution};
use crate::registry::PortMap;

/// A Kubernetes kind that carries endpoints: Endpoints or EndpointSlice.
pub trait EndpointSource:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Kind name for logs.
    const KIND: &'static str;
    /// `namespace/name` of the Service the object belongs to.
    fn service_key(&self) -> Option<String>;
    /// The object's nodes.
    fn contribution(&self, weight: u32) -> Contribution;
}

impl EndpointSource for Endpoints {
    const KIND: &'static str = "Endpoints";
    fn service_key(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.metadata.namespace.as_deref()?,
            self.metadata.name.as_deref()?
        ))
    }
    fn contribution(&self, weight: u32) -> Contribution {
        nodes::endpoints_contribution(self, weight)
    }
}

impl EndpointSource for EndpointSlice {
    const KIND: &'static str = "EndpointSlice";
    fn service_key(&self) -> Option<String> {
        nodes::slice_service_key(self)
    }
    fn contribution(&self, weight: u32) -> Contribution {
        nodes::slice_contribution(self, weight)
    }
}

/// Service key -> object name -> that object's contribution.
type Services = HashMap<String, BTreeMap<String, Contribution>>;

/// One service changed: `Some(ports)` to set, `None` when it is gone.
pub type ServiceUpdate = (String, Option<Arc<PortMap>>);

/// Objects of one cluster, grouped by service.
#[derive(Debug)]
pub struct ClusterState {
    weight: u32,
    filter: NamespaceFilter,
    services: Services,
    /// `namespace/object name` -> the service it currently contributes to.
    owners: HashMap<String, String>,
    /// Filled between `Init` and `InitDone`; swapped in at `InitDone`.
    relist: Option<Services>,
}

/// Object key inside its service (slices of one service have distinct names).
fn object_key<K: Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

/// `namespace/name` of the object itself.
fn owner_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

impl ClusterState {
    /// An empty state for a cluster with this weight and namespace filter.
    pub fn new(weight: u32, filter: NamespaceFilter) -> Self {
        ClusterState {
            weight,
            filter,
            services: HashMap::new(),
            owners: HashMap::new(),
            relist: None,
        }
    }

    fn keep<K: EndpointSource>(&self, obj: &K) -> Option<String> {
        let ns = obj.meta().namespace.as_deref()?;
        if !self.filter.accepts(ns) {
            return None;
        }
        let key = obj.service_key();
        if key.is_none() {
            tracing::debug!(
                kind = K::KIND,
                name = obj.meta().name.as_deref().unwrap_or(""),
                "object names no service, ignored"
            );
        }
        key
    }

    fn contribution<K: EndpointSource>(&self, obj: &K) -> Contribution {
        let c = obj.contribution(self.weight);
        for p in &c.problems {
            tracing::warn!(kind = K::KIND, "{p}");
        }
        c
    }

    /// A re-list starts: objects are collected aside until [`Self::init_done`].
    pub fn init(&mut self) {
        self.relist = Some(Services::new());
    }

    /// One object of the re-list.
    pub fn init_apply<K: EndpointSource>(&mut self, obj: &K) {
        let Some(service) = self.keep(obj) else {
            return;
        };
        let c = self.contribution(obj);
        self.relist
            .get_or_insert_with(Services::new)
            .entry(service)
            .or_default()
            .insert(object_key(obj), c);
    }

    /// The re-list is complete: it replaces everything (what vanished is
    /// deleted). Returns the full node set of the cluster.
    pub fn init_done(&mut self) -> HashMap<String, Arc<PortMap>> {
        self.services = self.relist.take().unwrap_or_default();
        self.owners = self
            .services
            .iter()
            .flat_map(|(service, objs)| {
                let ns = service.split('/').next().unwrap_or_default();
                objs.keys()
                    .map(move |name| (format!("{ns}/{name}"), service.clone()))
            })
            .collect();
        self.services
            .iter()
            .map(|(k, objs)| (k.clone(), Arc::new(nodes::merge(objs.values()))))
            .collect()
    }

    /// An object was added or modified.
    pub fn apply<K: EndpointSource>(&mut self, obj: &K) -> Vec<ServiceUpdate> {
        let name = object_key(obj);
        let owner = owner_key(obj);
        let service = self.keep(obj);
        let mut updates = Vec::new();
        // A slice may move to another service (label change): drop it from the old one.
        if let Some(old) = self.owners.get(&owner).cloned() {
            if Some(&old) != service.as_ref() {
                self.owners.remove(&owner);
                updates.push(self.remove_object(&old, &name));
            }
        }
        if let Some(service) = service {
            let c = self.contribution(obj);
            self.owners.insert(owner, service.clone());
            let objs = self.services.entry(service.clone()).or_default();
            objs.insert(name, c);
            updates.push((service, Some(Arc::new(nodes::merge(objs.values())))));
        }
        updates
    }

    /// An object was deleted.
    pub fn delete<K: EndpointSource>(&mut self, obj: &K) -> Option<ServiceUpdate> {
        let service = self.owners.remove(&owner_key(obj))?;
        Some(self.remove_object(&service, &object_key(obj)))
    }

    fn remove_object(&mut self, service: &str, name: &str) -> ServiceUpdate {
        let Some(objs) = self.services.get_mut(service) else {
            return (service.to_owned(), None);
        };
        objs.remove(name);
        if objs.is_empty() {
            self.services.remove(service);
            (service.to_owned(), None)
        } else {
            let ports = Arc::new(nodes::merge(objs.values()));
            (service.to_owned(), Some(ports))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ep(ns: &str, name: &str, ips: &[&str]) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(
                    ips.iter()
                        .map(|ip| EndpointAddress {
                            ip: ip.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: 80,
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
        }
    }

    fn hosts(p: &PortMap) -> Vec<String> {
        p["http"].iter().map(|n| n.host.clone()).collect()
    }

    #[test]
    fn relist_replaces_and_deletes_vanished() {
        let mut s = ClusterState::new(50, NamespaceFilter::All);
        s.init();
        s.init_apply(&ep("a", "one", &["10.0.0.1"]));
        s.init_apply(&ep("a", "two", &["10.0.0.2"]));
        assert_eq!(s.init_done().len(), 2);
        s.init();
        s.init_apply(&ep("a", "two", &["10.0.0.3"]));
        let all = s.init_done();
        assert_eq!(all.len(), 1);
        assert_eq!(hosts(&all["a/two"]), vec!["10.0.0.3"]);
    }

    #[test]
    fn namespace_filter_drops_objects() {
        let mut s = ClusterState::new(50, NamespaceFilter::NotEqual("kube-system".into()));
        assert!(s.apply(&ep("kube-system", "dns", &["10.0.0.1"])).is_empty());
        assert_eq!(s.apply(&ep("a", "web", &["10.0.0.1"])).len(), 1);
    }

    #[test]
    fn delete_of_last_object_removes_the_service() {
        let mut s = ClusterState::new(50, NamespaceFilter::All);
        s.apply(&ep("a", "web", &["10.0.0.1"]));
        assert_eq!(
            s.delete(&ep("a", "web", &[])),
            Some(("a/web".to_string(), None))
        );
    }
}
