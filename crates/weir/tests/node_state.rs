//! Per-node state (keep-alive pool, in-flight count, health) is shared
//! between upstream generations (`NodeStates`, keyed by TLS name, host and
//! port): a configuration reload or a discovery update that keeps a node
//! keeps its pooled connections, its in-flight count and its health.
//!
//! Observed from outside: the node's own count of TCP connections, the
//! control API's `/v1/upstreams` (in-flight, idle pooled connections) and
//! `/v1/healthcheck`, and where traffic goes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::wire::{self, RawBackend};
use common::{config, gateway, get, registry_ports, wait_until_for, Backend};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_testkit::kube_api::FakeApiServer;

/// Bound on every wait for state the gateway reaches on its own.
const WAIT: Duration = Duration::from_secs(10);

async fn json(control: SocketAddr, path: &str) -> serde_json::Value {
    let r = get(control, None, path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

/// The node on `port` in `/v1/upstreams` (the live snapshot), or Null.
async fn upstream_node(control: SocketAddr, port: u16) -> serde_json::Value {
    let v = json(control, "/v1/upstreams").await;
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["nodes"].as_array().cloned().unwrap_or_default())
        .find(|n| n["port"] == port)
        .unwrap_or(serde_json::Value::Null)
}

/// `status` of the node on `port` in `/v1/healthcheck` ("" when absent).
async fn health(control: SocketAddr, port: u16) -> String {
    let v = json(control, "/v1/healthcheck").await;
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["nodes"].as_array().cloned().unwrap_or_default())
        .find(|n| n["port"] == port)
        .and_then(|n| n["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits (bounded) until the node on `port` has `n` idle pooled
/// connections: the node connection goes back to the pool just after the
/// client has its answer.
async fn wait_idle(control: SocketAddr, port: u16, n: u64) {
    let reached = tokio::time::timeout(WAIT, async {
        while upstream_node(control, port).await["idle_connections"] != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "node :{port} never had {n} idle connection(s): {}",
        upstream_node(control, port).await
    );
}

async fn wait_health(control: SocketAddr, port: u16, want: &str) {
    let reached = tokio::time::timeout(WAIT, async {
        while health(control, port).await != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "node :{port} never became {want}");
}

fn port_of(node: &RawBackend) -> u16 {
    node.node()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("node port")
}

/// A configuration with one route `r` to `node`; `generation` 2 changes the
/// route (another balancer, timeouts, explicit retries) and adds a route, so
/// the upstream is compiled anew while the node stays.
fn one_node(node: &str, fast_path: bool, generation: u8) -> String {
    let mut yaml = format!("gateway:\n  http: {{fast_path: {fast_path}}}\nroutes:\n");
    if generation == 1 {
        yaml += &format!("  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{node}\": 1}}}}}}\n");
    } else {
        yaml += &format!(
            "  - {{id: r, uri: \"/*\", upstream: {{type: least_conn, retries: 0, timeout: {{connect: 5, send: 5, read: 5}}, nodes: {{\"{node}\": 1}}}}}}\n  - {{id: extra, uri: /extra, plugins: {{echo: {{}}}}}}\n"
        );
    }
    yaml
}

async fn reload_keeps_the_pooled_connection(fast_path: bool) {
    let node = wire::echo_target().await;
    let port = port_of(&node);
    let gw = gateway(&one_node(&node.node(), fast_path, 1)).await;
    let control = gw.control_addr().expect("control API");

    let r = get(gw.proxy_addr(), None, "/before").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "/before"));
    assert_eq!(node.connections(), 1);
    wait_idle(control, port, 1).await;

    gw.core
        .reload(config(&one_node(&node.node(), fast_path, 2)))
        .await
        .expect("valid reload");
    // The next request goes over the connection opened before ...
    let r = get(gw.proxy_addr(), None, "/after").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "/after"));
    assert_eq!(
        node.connections(),
        1,
        "the request after the reload reused the pooled connection (the node saw no new TCP connection)"
    );
    let seen = node.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[1].conn, 1, "carried by the first connection");
    // ... which the new generation's node pools again.
    wait_idle(control, port, 1).await;
}

#[tokio::test]
async fn a_reload_keeping_a_node_keeps_its_pooled_connection_on_the_fast_path() {
    reload_keeps_the_pooled_connection(true).await;
}

#[tokio::test]
async fn a_reload_keeping_a_node_keeps_its_pooled_connection_on_the_general_path() {
    reload_keeps_the_pooled_connection(false).await;
}

/// A node that holds every request until the test releases it: accepts one
/// connection at a time, reports each request head, answers `200 ok` once
/// released.
struct HeldNode {
    addr: SocketAddr,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: tokio::sync::mpsc::UnboundedSender<()>,
}

impl HeldNode {
    async fn start() -> HeldNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
        let (release, mut release_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = arrived_tx.send(());
                        if release_rx.recv().await.is_none() {
                            return;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                        head.clear();
                    }
                }
            }
        });
        HeldNode {
            addr,
            arrived,
            release,
        }
    }
}

async fn in_flight(control: SocketAddr, port: u16) -> serde_json::Value {
    upstream_node(control, port).await["in_flight"].clone()
}

#[tokio::test]
async fn a_reload_keeping_a_node_keeps_its_in_flight_count() {
    let mut node = HeldNode::start().await;
    let port = node.addr.port();
    let gw = gateway(&one_node(&node.addr.to_string(), true, 1)).await;
    let control = gw.control_addr().expect("control API");
    let proxy = gw.proxy_addr();

    let request = tokio::spawn(async move { get(proxy, None, "/held").await });
    tokio::time::timeout(WAIT, node.arrived.recv())
        .await
        .expect("the request reaches the node")
        .expect("node running");
    assert_eq!(in_flight(control, port).await, 1);

    gw.core
        .reload(config(&one_node(&node.addr.to_string(), true, 2)))
        .await
        .expect("valid reload");
    assert_eq!(
        in_flight(control, port).await,
        1,
        "the reloaded upstream still counts the request in flight on the node (least_conn reads it)"
    );

    node.release.send(()).expect("node running");
    let r = tokio::time::timeout(WAIT, request)
        .await
        .expect("answer after release")
        .expect("request task");
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    let settled = tokio::time::timeout(WAIT, async {
        while in_flight(control, port).await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the count returns to 0 when the request ends: {}",
        in_flight(control, port).await
    );
}

/// Passive checks (with the active ones APISIX requires beside them: TCP
/// connects an hour apart, which count nothing here).
const PASSIVE: &str = "{active: {type: tcp, healthy: {interval: 3600}, unhealthy: {interval: 3600}}, passive: {unhealthy: {http_statuses: [500], http_failures: 1}}}";

fn two_nodes(a: &Backend, b: &Backend, generation: u8) -> String {
    let extra = if generation == 1 {
        ""
    } else {
        "type: least_conn, retries: 1, "
    };
    format!(
        "routes:\n  - {{id: r, uri: \"/*\", upstream: {{{extra}nodes: {{\"{}\": 1, \"{}\": 1}}, checks: {PASSIVE}}}}}\n",
        a.node(),
        b.node()
    )
}

#[tokio::test]
async fn a_reload_keeping_an_unhealthy_node_keeps_it_unhealthy() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    b.set_fail_status(500);
    let gw = gateway(&two_nodes(&a, &b, 1)).await;
    let control = gw.control_addr().expect("control API");
    // Round robin: one of two requests meets b's 500, which marks it.
    for _ in 0..2 {
        get(gw.proxy_addr(), None, "/").await;
    }
    assert_eq!(b.hits(), 1);
    wait_health(control, b.addr.port(), "unhealthy").await;

    gw.core
        .reload(config(&two_nodes(&a, &b, 2)))
        .await
        .expect("valid reload");
    // Passive checks alone never bring it back: it gets no traffic ...
    let counts = common::distribution(gw.proxy_addr(), None, "/", 10).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(b.hits(), 1, "no request reached the unhealthy node");
    // ... and the reloaded upstream shows it unhealthy.
    assert_eq!(
        health(control, b.addr.port()).await,
        "unhealthy",
        "b is still unhealthy in the reloaded upstream"
    );
}

/// Discovery: endpoints `shop/cart` with `a` (a raw node counting its
/// connections) and `b` (answering 500), then `c` joins. The update keeps
/// `a` and `b`: `a` keeps its pooled connection, `b` stays unhealthy.
#[tokio::test]
async fn a_discovery_update_keeping_nodes_keeps_their_pool_and_health() {
    let a = wire::echo_target().await;
    let a_port = port_of(&a);
    let (b, c) = (Backend::start("b").await, Backend::start("c").await);
    b.set_fail_status(500);
    let api = FakeApiServer::start().await.expect("fake API server");
    api.apply_endpoints(common::cart_endpoints(&[a_port, b.addr.port()]));
    let yaml = format!(
        r#"
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {port}}}
    client: {{token: test-token}}
routes:
  - id: cart
    uri: "/*"
    upstream: {{discovery_type: kubernetes, service_name: "shop/cart:http", checks: {PASSIVE}}}
"#,
        port = api.addr().port()
    );
    let gw = gateway(&yaml).await;
    assert!(gw.wait_ready(WAIT).await, "discovery synced");
    let control = gw.control_addr().expect("control API");
    let mut want = vec![a_port, b.addr.port()];
    want.sort_unstable();
    wait_until_for(10, "a and b discovered", || {
        registry_ports(&gw, "shop/cart:http") == want
    })
    .await;

    // b answers 500 once and is marked; a answers and pools its connection.
    for _ in 0..2 {
        get(gw.proxy_addr(), None, "/").await;
    }
    assert_eq!(b.hits(), 1);
    wait_health(control, b.addr.port(), "unhealthy").await;
    if a.seen().is_empty() {
        assert_eq!(get(gw.proxy_addr(), None, "/").await.status, StatusCode::OK);
    }
    assert_eq!(a.connections(), 1);
    wait_idle(control, a_port, 1).await;

    // c joins: a new node list, with a and b still in it.
    api.apply_endpoints(common::cart_endpoints(&[
        a_port,
        b.addr.port(),
        c.addr.port(),
    ]));
    want.push(c.addr.port());
    want.sort_unstable();
    wait_until_for(10, "c discovered", || {
        registry_ports(&gw, "shop/cart:http") == want
    })
    .await;
    // The first request to reach a after the update uses its pooled
    // connection (the first request after the update rebuilds the set).
    let seen_before = a.seen().len();
    let reached_a = tokio::time::timeout(WAIT, async {
        while a.seen().len() == seen_before {
            let r = get(gw.proxy_addr(), None, "/").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    })
    .await;
    assert!(reached_a.is_ok(), "a gets traffic after the update");
    assert_eq!(
        a.connections(),
        1,
        "the first request to a after the update reused its pooled connection"
    );
    // And b, still unhealthy, gets nothing while a and c are healthy.
    for _ in 0..10 {
        let r = get(gw.proxy_addr(), None, "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert!(c.hits() > 0, "c serves: the node set follows the update");
    assert_eq!(b.hits(), 1, "no request reached the unhealthy node");
    // The control API agrees.
    let v = json(control, "/v1/healthcheck").await;
    assert_eq!(v[0]["nodes"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(
        health(control, b.addr.port()).await,
        "unhealthy",
        "b stays unhealthy across the discovery update"
    );
}
