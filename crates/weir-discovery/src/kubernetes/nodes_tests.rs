//! Builders and the cluster state machine, checked on responses recorded
//! from a real API server (`testdata/k8s-recordings`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::List;
use kube::core::WatchEvent;
use serde::de::DeserializeOwned;
use weir_config::discovery_resolve::NamespaceFilter;

use super::*;
use crate::kubernetes::state::{ClusterState, EndpointSource};

const ENDPOINTS_LIST: &str = include_str!("../../testdata/k8s-recordings/endpoints-list.json");
const SLICES_LIST: &str = include_str!("../../testdata/k8s-recordings/endpointslices-list.json");
const ENDPOINTS_WATCH: &str = include_str!("../../testdata/k8s-recordings/endpoints-watch.jsonl");
const SLICES_WATCH: &str = include_str!("../../testdata/k8s-recordings/endpointslices-watch.jsonl");

fn list<K: DeserializeOwned + k8s_openapi::ListableResource>(text: &str) -> Vec<K> {
    let l: List<K> = serde_json::from_str(text).expect("recorded list parses");
    l.items
}

fn find<'a, K: kube::Resource>(items: &'a [K], ns: &str, name: &str) -> &'a K {
    items
        .iter()
        .find(|o| {
            o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
        })
        .expect("object in the recording")
}

fn hosts(ports: &PortMap, key: &str) -> Vec<String> {
    ports[key]
        .iter()
        .map(|n| format!("{}:{}", n.host, n.port))
        .collect()
}

fn node(host: &str, port: u16) -> Node {
    Node {
        host: host.into(),
        port,
        weight: 50,
    }
}

#[test]
fn endpoints_use_ready_addresses_only_per_named_port() {
    let items: Vec<Endpoints> = list(ENDPOINTS_LIST);
    let c = endpoints_contribution(find(&items, "shop", "cart"), 50);
    assert!(c.problems.is_empty());
    let ports = merge([&c]);
    assert_eq!(hosts(&ports, "http"), ["10.2.0.11:8080", "10.2.0.12:8080"]);
    assert_eq!(
        hosts(&ports, "metrics"),
        ["10.2.0.11:9100", "10.2.0.12:9100"]
    );
    assert_eq!(ports["http"][0].weight, 50);
}

#[test]
fn unnamed_endpoints_port_is_keyed_by_number() {
    let items: Vec<Endpoints> = list(ENDPOINTS_LIST);
    let ports = merge([&endpoints_contribution(find(&items, "shop", "legacy"), 7)]);
    assert_eq!(ports.keys().collect::<Vec<_>>(), ["3306"]);
    assert_eq!(
        ports["3306"],
        vec![Node {
            host: "10.2.1.21".into(),
            port: 3306,
            weight: 7
        }]
    );
}

#[test]
fn endpoints_without_subsets_have_no_ports() {
    let items: Vec<Endpoints> = list(ENDPOINTS_LIST);
    let ports = merge([&endpoints_contribution(
        find(&items, "shop-canary", "empty"),
        50,
    )]);
    assert!(ports.is_empty());
}

#[test]
fn slices_of_a_service_merge_deduplicated_with_nil_ready_as_ready() {
    let items: Vec<EndpointSlice> = list(SLICES_LIST);
    let x = slice_contribution(find(&items, "shop", "cart-x1y2z"), 50);
    let q = slice_contribution(find(&items, "shop", "cart-q8r7s"), 50);
    assert_eq!(
        slice_service_key(find(&items, "shop", "cart-x1y2z")).as_deref(),
        Some("shop/cart")
    );
    let ports = merge([&x, &q]);
    // .11 ready, .12 `conditions: {}` (nil = ready) and duplicated in q, .13 terminating, .14 ready.
    assert_eq!(
        hosts(&ports, "http"),
        ["10.2.0.11:8080", "10.2.0.12:8080", "10.2.0.14:8080"]
    );
    assert_eq!(hosts(&ports, "metrics").len(), 3);
}

#[test]
fn ipv6_slice_with_empty_port_name_is_keyed_by_number() {
    let items: Vec<EndpointSlice> = list(SLICES_LIST);
    let ports = merge([&slice_contribution(find(&items, "shop", "legacy-v6"), 50)]);
    assert_eq!(ports["3306"], vec![node("fd00::21", 3306)]);
}

#[test]
fn terminating_serving_endpoints_are_used_only_when_none_is_ready() {
    let items: Vec<EndpointSlice> = list(SLICES_LIST);
    // demo-a/web: one ready (.11) and one serving+terminating (.12).
    let web = merge([&slice_contribution(find(&items, "demo-a", "web-abc12"), 50)]);
    assert_eq!(hosts(&web, "http"), ["10.1.0.11:8080"]);
    // The recorded watch turns .11 terminating in cart-x1y2z.
    let modified = SLICES_WATCH.lines().next().expect("first event");
    let ev: WatchEvent<EndpointSlice> = serde_json::from_str(modified).expect("event parses");
    let WatchEvent::Modified(slice) = ev else {
        panic!("expected MODIFIED")
    };
    let alone = merge([&slice_contribution(&slice, 50)]);
    // .12 (nil conditions) is still ready, so terminating ones stay out.
    assert_eq!(hosts(&alone, "http"), ["10.2.0.12:8080"]);
    let mut all_terminating = slice.clone();
    for ep in all_terminating.endpoints.iter_mut().flatten() {
        ep.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready: Some(false),
            serving: Some(true),
            terminating: Some(true),
        });
    }
    let fallback = merge([&slice_contribution(&all_terminating, 50)]);
    assert_eq!(hosts(&fallback, "http").len(), 3);
    // Not serving and not ready: nothing.
    for ep in all_terminating.endpoints.iter_mut().flatten() {
        ep.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(true),
        });
    }
    let none = merge([&slice_contribution(&all_terminating, 50)]);
    assert!(none["http"].is_empty());
}

#[test]
fn bad_addresses_and_ports_are_skipped_with_a_named_problem() {
    let items: Vec<Endpoints> = list(ENDPOINTS_LIST);
    let mut ep = find(&items, "shop", "cart").clone();
    let subset = &mut ep.subsets.as_mut().expect("subsets")[0];
    subset.addresses.as_mut().expect("addresses")[0].ip = "not-an-ip".into();
    subset.ports.as_mut().expect("ports")[1].port = 70000;
    let c = endpoints_contribution(&ep, 50);
    let ports = merge([&c]);
    assert_eq!(hosts(&ports, "http"), ["10.2.0.12:8080"]);
    assert!(!ports.contains_key("metrics"));
    assert_eq!(c.problems.len(), 2);
    assert!(
        c.problems.iter().all(|p| p.contains("shop/cart")),
        "{:?}",
        c.problems
    );

    let slices: Vec<EndpointSlice> = list(SLICES_LIST);
    let mut s = find(&slices, "shop", "cart-q8r7s").clone();
    s.address_type = "FQDN".into();
    assert!(slice_contribution(&s, 50).ports.is_empty());
    let mut s = find(&slices, "shop", "cart-q8r7s").clone();
    s.endpoints.as_mut().expect("endpoints")[0].addresses = vec!["10.2.0.300".into()];
    s.endpoints.as_mut().expect("endpoints")[1].addresses = vec![];
    let c = slice_contribution(&s, 50);
    assert!(c.ports["http"].ready.is_empty());
    assert!(c.problems[0].contains("shop/cart-q8r7s"));
}

type Services = HashMap<String, Arc<PortMap>>;
type Latest = HashMap<String, Option<Arc<PortMap>>>;

/// Replays a recorded watch on top of the recorded list.
fn replay<K: EndpointSource + k8s_openapi::ListableResource>(
    list_text: &str,
    watch_text: &str,
) -> (Services, Latest) {
    let mut state = ClusterState::new(50, NamespaceFilter::All);
    state.init();
    for obj in list::<K>(list_text) {
        state.init_apply(&obj);
    }
    let initial = state.init_done();
    let mut latest = HashMap::new();
    for line in watch_text.lines().filter(|l| !l.trim().is_empty()) {
        let ev: WatchEvent<K> = serde_json::from_str(line).expect("recorded event parses");
        let updates = match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => state.apply(&o),
            WatchEvent::Deleted(o) => state.delete(&o).into_iter().collect(),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => vec![],
        };
        for (service, ports) in updates {
            latest.insert(service, ports);
        }
    }
    (initial, latest)
}

#[test]
fn recorded_endpoints_watch_scale_delete_add() {
    let (initial, latest) = replay::<Endpoints>(ENDPOINTS_LIST, ENDPOINTS_WATCH);
    assert_eq!(hosts(&initial["shop/cart"], "http").len(), 2);
    // Scaled to zero: `subsets` removed -> the service exists with no port.
    assert_eq!(latest["shop/cart"].as_deref(), Some(&PortMap::new()));
    assert_eq!(latest["shop/legacy"], None);
    // Two subsets, same port name, different numbers.
    let checkout = latest["shop-canary/checkout"].clone().expect("added");
    assert_eq!(hosts(&checkout, "grpc"), ["10.3.0.5:9000", "10.3.0.6:9001"]);
}

#[test]
fn recorded_slice_watch_updates_the_merged_service() {
    let (initial, latest) = replay::<EndpointSlice>(SLICES_LIST, SLICES_WATCH);
    assert_eq!(hosts(&initial["shop/cart"], "http").len(), 3);
    assert_eq!(hosts(&initial["shop/legacy"], "3306"), ["fd00::21:3306"]);
    // After: x1y2z has .12 ready (nil) and .11/.13 terminating; q8r7s deleted;
    // n3w00 adds .15 on http only.
    let cart = latest["shop/cart"].clone().expect("cart still exists");
    assert_eq!(hosts(&cart, "http"), ["10.2.0.12:8080", "10.2.0.15:8080"]);
    assert_eq!(hosts(&cart, "metrics"), ["10.2.0.12:9100"]);
}
