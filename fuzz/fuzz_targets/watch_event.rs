//! Feeds arbitrary bytes as one watch line: decoded with serde_json into
//! `WatchEvent<Endpoints>` and `WatchEvent<EndpointSlice>` (both k8s-openapi's
//! and kube-core's, the one kube's watcher uses); every object that decodes is
//! run through weir's public node-set builders. Nothing may panic.
#![no_main]

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent as OpenApiEvent;
use kube_core::WatchEvent as KubeEvent;
use libfuzzer_sys::fuzz_target;
use weir_discovery::kubernetes::nodes;

fn endpoints(ep: &Endpoints) {
    let a = nodes::endpoints_contribution(ep, 100);
    let b = nodes::endpoints_contribution(ep, 0);
    let _ = nodes::merge([&a, &b]);
}

fn slice(s: &EndpointSlice) {
    let _ = nodes::slice_service_key(s);
    let a = nodes::slice_contribution(s, 100);
    let b = nodes::slice_contribution(s, u32::MAX);
    let _ = nodes::merge([&a, &b]);
}

fn openapi<K: serde::de::DeserializeOwned>(data: &[u8], f: fn(&K)) {
    if let Ok(ev) = serde_json::from_slice::<OpenApiEvent<K>>(data) {
        match ev {
            OpenApiEvent::Added(o) | OpenApiEvent::Modified(o) | OpenApiEvent::Deleted(o) => f(&o),
            _ => {}
        }
    }
}

fn kube<K: serde::de::DeserializeOwned>(data: &[u8], f: fn(&K)) {
    if let Ok(ev) = serde_json::from_slice::<KubeEvent<K>>(data) {
        match ev {
            KubeEvent::Added(o) | KubeEvent::Modified(o) | KubeEvent::Deleted(o) => f(&o),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    openapi::<Endpoints>(data, endpoints);
    openapi::<EndpointSlice>(data, slice);
    kube::<Endpoints>(data, endpoints);
    kube::<EndpointSlice>(data, slice);
});
