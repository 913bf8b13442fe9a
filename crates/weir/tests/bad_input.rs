//! Bad input from the API server, through the whole gateway: garbage in the
//! watch stream, objects with bad IPs or ports or the wrong JSON types, a
//! huge object, objects of other services. Each is logged and skipped: the
//! gateway never crashes and never empties the node set of another service.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{registry_ports, wait_until_for, Load, Pod};
use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir::Gateway;
use weir_testkit::kube_api::{endpoints, FakeApiServer, ResourceKind};

const SERVICE: &str = "shop/cart:http";

fn cart(pods: &[&Pod]) -> Endpoints {
    let ports: Vec<u16> = pods.iter().map(|p| p.port()).collect();
    common::cart_endpoints(&ports)
}

fn yaml(api_port: u16, watch_idle_timeout: u32) -> String {
    format!(
        r#"
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {api_port}}}
    client: {{token: test-token}}
    watch_idle_timeout: {watch_idle_timeout}
routes:
  - id: cart
    uri: "/*"
    upstream: {{discovery_type: kubernetes, service_name: "{SERVICE}"}}
"#
    )
}

async fn dump(gw: &Gateway) -> Value {
    let r = common::get(
        gw.control_addr().unwrap(),
        None,
        "/v1/discovery/kubernetes/dump",
    )
    .await;
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).unwrap()
}

fn sorted(mut v: Vec<u16>) -> Vec<u16> {
    v.sort_unstable();
    v
}

/// Gateway on the fake API server with `shop/cart` = {a, b} and traffic flowing.
async fn setup() -> (FakeApiServer, Gateway, Pod, Pod, Load) {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b) = (Pod::start("a", 0).await, Pod::start("b", 0).await);
    api.apply_endpoints(cart(&[&a, &b]));
    let gw = common::gateway(&yaml(api.addr().port(), 5)).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    api.wait_for_watchers(ResourceKind::Endpoints, 1, Duration::from_secs(15))
        .await
        .unwrap();
    let load = Load::start(gw.proxy_addr(), 2, "/", 0);
    wait_until_for(15, "a and b serve", || a.hits() > 10 && b.hits() > 10).await;
    (api, gw, a, b, load)
}

/// A marker change to `shop/cart` that proves the watch still delivers
/// events after the bad input: c joins.
async fn still_follows(api: &FakeApiServer, gw: &Gateway, a: &Pod, b: &Pod) -> Pod {
    let c = Pod::start("c", 0).await;
    api.apply_endpoints(cart(&[a, b, &c]));
    let want = sorted(vec![a.port(), b.port(), c.port()]);
    wait_until_for(15, "the watch still follows shop/cart", || {
        registry_ports(gw, SERVICE) == want
    })
    .await;
    wait_until_for(15, "c serves", || c.hits() > 10).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ips_and_ports_are_skipped_per_address() {
    let (api, gw, a, b, load) = setup().await;
    let good = Pod::start("good", 0).await;
    // Typed correctly but invalid values (a real API server would refuse
    // most of them): the valid address x valid port survives.
    api.apply_json(
        ResourceKind::Endpoints,
        json!({
            "metadata": {"namespace": "shop", "name": "bad"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "not-an-ip"}, {"ip": "999.1.1.1"}, {"ip": ""},
                        {"ip": "10.0.0.1/24"}, {"ip": "127.0.0.1"}
                    ],
                    "ports": [
                        {"name": "zero", "port": 0}, {"name": "big", "port": 70000},
                        {"name": "neg", "port": -1}, {"name": "http", "port": good.port()}
                    ]
                },
                {"ports": [{"name": "http", "port": 1}]},
                {"addresses": [{"ip": "10.0.0.9"}]}
            ]
        }),
    )
    .unwrap();
    wait_until_for(15, "shop/bad appears", || {
        gw.core.registry.nodes("shop/bad:http").is_some()
    })
    .await;
    let nodes = gw.core.registry.nodes("shop/bad:http").unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(
        (nodes[0].host.as_str(), nodes[0].port),
        ("127.0.0.1", good.port())
    );
    for bad in ["shop/bad:zero", "shop/bad:big", "shop/bad:neg"] {
        assert!(
            gw.core.registry.nodes(bad).is_none_or(|n| n.is_empty()),
            "{bad}: {:?}",
            gw.core.registry.nodes(bad)
        );
    }
    assert_eq!(
        registry_ports(&gw, SERVICE),
        sorted(vec![a.port(), b.port()])
    );
    let _c = still_follows(&api, &gw, &a, &b).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures.first());
}

/// Objects whose JSON does not even fit the Endpoints type: the watch event
/// cannot be decoded. It is reported and skipped; the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_objects_are_skipped_and_other_services_keep_their_nodes() {
    let (api, gw, a, b, load) = setup().await;
    api.apply_json(
        ResourceKind::Endpoints,
        json!({
            "metadata": {"namespace": "shop", "name": "garbage"},
            "subsets": [{"addresses": [{"ip": 12345}], "ports": [{"name": "http", "port": "eighty"}]}]
        }),
    )
    .unwrap();
    let d = dump(&gw).await;
    let c = still_follows(&api, &gw, &a, &b).await;
    let s = &dump(&gw).await["sync"][0];
    eprintln!("undecodable object: sync {s} (before: {})", d["sync"][0]);
    assert!(
        s["errors"].as_u64().unwrap() >= 1,
        "the bad event is counted: {s}"
    );
    assert!(gw.core.registry.nodes("shop/garbage:http").is_none());

    // A re-list (410) cannot decode the list while the bad object is in it:
    // the gateway keeps the last synced nodes, it does not empty them.
    let lists = s["lists"].as_u64().unwrap();
    let errors = s["errors"].as_u64().unwrap();
    api.expire_watches(2);
    let want = sorted(vec![a.port(), b.port(), c.port()]);
    // Until the failed re-list shows in the sync state (bounded), and once
    // after it, the node set is the last synced one.
    let s = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            assert_eq!(registry_ports(&gw, SERVICE), want, "node set kept");
            let s = dump(&gw).await["sync"][0].clone();
            let failed_list = s["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("list failed") && e.contains("12345"));
            if failed_list {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no failed re-list within 20 s of the 410");
    eprintln!("re-list with the bad object present: sync {s}");
    assert!(s["errors"].as_u64().unwrap() > errors, "counted: {s}");
    assert_eq!(
        s["lists"].as_u64().unwrap(),
        lists,
        "the re-list did not complete: {s}"
    );
    assert_eq!(registry_ports(&gw, SERVICE), want, "node set kept");
    // Once the object is fixed, the re-list succeeds and everything converges.
    api.delete_endpoints("shop", "garbage");
    api.apply_endpoints(cart(&[&b, &c]));
    let want = sorted(vec![b.port(), c.port()]);
    wait_until_for(20, "convergence after the bad object is gone", || {
        registry_ports(&gw, SERVICE) == want
    })
    .await;
    let s = dump(&gw).await["sync"][0].clone();
    assert!(
        s["lists"].as_u64().unwrap() > lists,
        "a re-list happened: {s}"
    );
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_object_is_handled() {
    let (api, gw, a, b, load) = setup().await;
    let ips: Vec<String> = (0..5000)
        .map(|i| format!("10.{}.{}.{}", i / 62500, (i / 250) % 250, i % 250 + 1))
        .collect();
    let huge = endpoints("shop", "huge")
        .ready(ips)
        .port("http", 8080)
        .build();
    api.apply_endpoints(huge);
    wait_until_for(15, "5,000 nodes", || {
        gw.core
            .registry
            .nodes("shop/huge:http")
            .is_some_and(|n| n.len() == 5000)
    })
    .await;
    assert_eq!(
        registry_ports(&gw, SERVICE),
        sorted(vec![a.port(), b.port()])
    );
    // The dump shows it too.
    let d = dump(&gw).await;
    assert!(
        d.to_string().contains("10.0.19.250"),
        "dump lists the huge service"
    );
    // A re-list with it in the list (limit/continue pages).
    let lists = d["sync"][0]["lists"].as_u64().unwrap();
    api.expire_watches(2);
    wait_until_for(15, "re-list", || {
        gw.core.discovery_dump().unwrap()["sync"][0]["lists"]
            .as_u64()
            .unwrap()
            > lists
    })
    .await;
    assert_eq!(
        gw.core.registry.nodes("shop/huge:http").unwrap().len(),
        5000
    );
    let _c = still_follows(&api, &gw, &a, &b).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_other_services_do_not_touch_this_one() {
    let (api, gw, _a, _b, load) = setup().await;
    let before = gw.core.registry.subscribe(SERVICE).current();
    let x = Pod::start("x", 0).await;
    // Same name in another namespace, another service in the same
    // namespace, then both deleted, then an empty one.
    api.apply_endpoints(cart(&[&x]).tap_ns("other"));
    let mut other = cart(&[&x]);
    other.metadata.name = Some("payments".into());
    api.apply_endpoints(other);
    wait_until_for(15, "other services appear", || {
        gw.core.registry.nodes("other/cart:http").is_some()
            && gw.core.registry.nodes("shop/payments:http").is_some()
    })
    .await;
    api.delete_endpoints("other", "cart");
    api.delete_endpoints("shop", "payments");
    api.apply_endpoints(endpoints("shop", "empty").build());
    wait_until_for(15, "other services gone", || {
        gw.core.registry.nodes("other/cart:http").is_none()
            && gw.core.registry.nodes("shop/payments:http").is_none()
    })
    .await;
    let after = gw.core.registry.subscribe(SERVICE).current();
    assert!(
        std::sync::Arc::ptr_eq(&before, &after),
        "shop/cart's node list was never rebuilt"
    );
    assert_eq!(x.hits(), 0);
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures.first());
}

trait TapNs {
    fn tap_ns(self, ns: &str) -> Self;
}

impl TapNs for Endpoints {
    fn tap_ns(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.into());
        self
    }
}

// ----- A raw API server that sends garbage in the watch stream -----

fn endpoints_json(name: &str, rv: u64, ports: &[u16]) -> Value {
    let subsets: Vec<Value> = ports
        .iter()
        .map(
            |p| json!({"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": p}]}),
        )
        .collect();
    json!({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"namespace": "shop", "name": name, "resourceVersion": rv.to_string()},
        "subsets": subsets
    })
}

/// Just enough of an API server: lists answer `list`; the first watch sends
/// `lines` (one chunk each), later watches send nothing; both stay open.
async fn raw_api_server(list: Value, lines: Vec<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let watches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (list, lines, watches) = (list.clone(), lines.clone(), watches.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request head (GETs have no body).
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                    if !target.contains("watch=") {
                        let body = list.to_string();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let first = watches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    if first {
                        for l in &lines {
                            let chunk = format!("{:x}\r\n{l}\n\r\n", l.len() + 1);
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Keep the stream open; the client ends it.
                    let mut sink = [0u8; 1024];
                    while let Ok(n) = s.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                    return;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_watch_stream_is_skipped() {
    let (a, b, c) = (
        Pod::start("a", 0).await,
        Pod::start("b", 0).await,
        Pod::start("c", 0).await,
    );
    let other = Pod::start("other", 0).await;
    let list = json!({
        "kind": "EndpointsList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "10"},
        "items": [
            endpoints_json("cart", 5, &[a.port(), b.port()]),
            endpoints_json("other", 6, &[other.port()]),
        ]
    });
    let garbage = vec![
        "this is not json".to_owned(),
        "\u{0}\u{1}\u{2}\u{fffd} binary garbage".to_owned(),
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Endpoints\"".to_owned(), // truncated
        "[1,2,3]".to_owned(),
        json!({"type": "MODIFIED", "object": {"metadata": {"name": "cart", "namespace": "shop"}, "subsets": "nope"}}).to_string(),
        json!({"type": "BOGUS", "object": endpoints_json("cart", 11, &[])}).to_string(),
        json!({"type": "MODIFIED"}).to_string(),
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError", "message": "boom"}}).to_string(),
    ];
    // Each bad line is followed by a valid (unchanged) event of another
    // service: a good event resets the watcher's backoff (see the report on
    // consecutive bad lines).
    let mut lines = Vec::new();
    for (i, g) in garbage.into_iter().enumerate() {
        lines.push(g);
        lines.push(
            json!({"type": "MODIFIED", "object": endpoints_json("other", 20 + i as u64, &[other.port()])})
                .to_string(),
        );
    }
    // Finally a valid change: cart becomes {b, c}.
    lines.push(
        json!({"type": "MODIFIED", "object": endpoints_json("cart", 40, &[b.port(), c.port()])})
            .to_string(),
    );
    let api = raw_api_server(list, lines).await;
    let gw = common::gateway(&yaml(api.port(), 30)).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    let started = std::time::Instant::now();
    let load = Load::start(gw.proxy_addr(), 2, "/", 0);
    let want = sorted(vec![b.port(), c.port()]);
    wait_until_for(25, "the valid event after the garbage", || {
        // Never empty on the way.
        let now = registry_ports(&gw, SERVICE);
        assert!(!now.is_empty(), "shop/cart emptied by garbage");
        assert_eq!(
            registry_ports(&gw, "shop/other:http"),
            vec![other.port()],
            "another service touched"
        );
        now == want
    })
    .await;
    wait_until_for(15, "c serves", || c.hits() > 10).await;
    let s = dump(&gw).await["sync"][0].clone();
    eprintln!(
        "garbage in the watch stream: valid event applied {:.1?} after the list; sync {s}",
        started.elapsed()
    );
    assert!(s["errors"].as_u64().unwrap() >= 1, "{s}");
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures.first());
}

/// A few undecodable events in a row on a healthy watch stream should cost
/// little: the stream itself is fine, only those events are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_garbage_lines_do_not_delay_valid_events() {
    let (a, b, c) = (
        Pod::start("a", 0).await,
        Pod::start("b", 0).await,
        Pod::start("c", 0).await,
    );
    let list = json!({
        "kind": "EndpointsList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "10"},
        "items": [endpoints_json("cart", 5, &[a.port(), b.port()])]
    });
    let mut lines: Vec<String> = (0..4).map(|i| format!("garbage line {i}")).collect();
    lines.push(
        json!({"type": "MODIFIED", "object": endpoints_json("cart", 40, &[b.port(), c.port()])})
            .to_string(),
    );
    let api = raw_api_server(list, lines).await;
    let gw = common::gateway(&yaml(api.port(), 30)).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await);
    let started = std::time::Instant::now();
    let want = sorted(vec![b.port(), c.port()]);
    wait_until_for(25, "the valid event", || {
        registry_ports(&gw, SERVICE) == want
    })
    .await;
    let took = started.elapsed();
    eprintln!("4 garbage lines in a row: valid event applied after {took:.1?}");
    // Counted as stream errors, the 4 lines would each cost a watcher
    // backoff (kube-runtime's default: 800 ms, doubled after each consecutive
    // error, plus jitter): at least 0.8 + 1.6 + 3.2 + 6.4 = 12 s. Half that
    // leaves a loaded machine seconds for what takes milliseconds.
    let backoffs: Duration = (0..4).map(|i| KUBE_FIRST_BACKOFF * (1 << i)).sum();
    assert!(
        took < backoffs / 2,
        "valid event delayed by {took:?}: the garbage lines cost a backoff ({backoffs:?} for 4)"
    );
}

/// kube-runtime's `DefaultBackoff`: the first delay after a watch error.
const KUBE_FIRST_BACKOFF: Duration = Duration::from_millis(800);
