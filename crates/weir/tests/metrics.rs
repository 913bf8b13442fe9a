//! `GET /metrics` on the control API: Prometheus text with requests by
//! route and status code and their latency, on the fast path and the
//! general path alike; counters that carry on across a reload keeping the
//! route; upstream node health; discovery sync state; reloads; the process.
//!
//! Route counters are process-wide (keyed by route id), and the tests of
//! this file share a process: each test uses route ids of its own, and
//! reads the shared no-route counter as a difference.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{black_hole, config, gateway, get, Backend};
use http::StatusCode;
use weir_testkit::kube_api::FakeApiServer;

/// The metrics text, checked for its content type.
async fn scrape(control: SocketAddr) -> String {
    let r = get(control, None, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ct = r
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.body
}

/// The value of the sample `series` (name and labels, exactly as printed),
/// None when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v:?}: {e}")))
}

/// Scrapes until every `(series, value)` in `want` shows (bounded): a
/// request is counted just after its answer goes out, so a client can see
/// the answer a moment before the count.
async fn scrape_when(control: SocketAddr, want: &[(&str, f64)]) -> String {
    let mut text = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            text = scrape(control).await;
            if want.iter().all(|(s, v)| sample(&text, s) == Some(*v)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "never saw {want:?} in:\n{text}");
    text
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Every line is a comment or `name{labels} value` with a number: what a
/// Prometheus scraper needs to parse the document.
fn assert_well_formed(text: &str) {
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, v) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(
            v.parse::<f64>().is_ok() || v == "+Inf",
            "bad value in {line:?}"
        );
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels in {line:?}");
        }
    }
}

/// Requests by route and code, latency histogram, nodes and reloads, on
/// the path `fast_path` picks.
async fn requests_are_counted_by_route_and_code(fast_path: bool, prefix: &str) {
    let a = Backend::start("a").await;
    let dead = black_hole().await;
    let yaml = format!(
        "gateway:\n  http: {{fast_path: {fast_path}}}\nroutes:\n  - {{id: {prefix}-ok, uri: /ok, upstream: {{nodes: {{\"{}\": 1}}}}}}\n  - {{id: {prefix}-dead, uri: /dead, upstream: {{nodes: {{\"{dead}\": 1}}, retries: 0}}}}\n",
        a.node()
    );
    let gw = gateway(&yaml).await;
    let control = gw.control_addr().expect("control listener");
    let before = scrape(control).await;
    let unmatched_before =
        sample(&before, "weir_http_requests_total{route=\"\",code=\"404\"}").unwrap_or(0.0);

    for _ in 0..3 {
        assert_eq!(
            get(gw.proxy_addr(), None, "/ok").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(gw.proxy_addr(), None, "/dead").await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        get(gw.proxy_addr(), None, "/nowhere").await.status,
        StatusCode::NOT_FOUND
    );

    let ok = format!("route=\"{prefix}-ok\"");
    let dead_route = format!("route=\"{prefix}-dead\"");
    let text = scrape_when(
        control,
        &[
            (
                &format!("weir_http_requests_total{{{ok},code=\"200\"}}"),
                3.0,
            ),
            (
                &format!("weir_http_requests_total{{{dead_route},code=\"502\"}}"),
                1.0,
            ),
        ],
    )
    .await;
    assert_well_formed(&text);
    assert_eq!(
        value(
            &text,
            &format!("weir_http_requests_total{{{ok},code=\"200\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("weir_http_requests_total{{{dead_route},code=\"502\"}}")
        ),
        1.0
    );
    // At least ours: the other test of this kind, running alongside,
    // counts its own 404 under the same shared series.
    let unmatched = value(&text, "weir_http_requests_total{route=\"\",code=\"404\"}");
    assert!(
        unmatched - unmatched_before >= 1.0,
        "the 404 was not counted: {unmatched_before} -> {unmatched}"
    );
    // The histogram: cumulative buckets ending at the count.
    let count = value(
        &text,
        &format!("weir_http_request_duration_seconds_count{{{ok}}}"),
    );
    assert_eq!(count, 3.0);
    assert_eq!(
        value(
            &text,
            &format!("weir_http_request_duration_seconds_bucket{{{ok},le=\"+Inf\"}}")
        ),
        3.0
    );
    let sum = value(
        &text,
        &format!("weir_http_request_duration_seconds_sum{{{ok}}}"),
    );
    assert!(sum > 0.0 && sum < 10.0, "sum {sum}");
    let mut last = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with(&format!("weir_http_request_duration_seconds_bucket{{{ok},")))
    {
        let v: f64 = line
            .rsplit_once(' ')
            .map_or(-1.0, |(_, v)| v.parse().unwrap_or(-1.0));
        assert!(v >= last, "buckets must be cumulative: {line}");
        last = v;
    }
    // Upstream nodes (no health checks: healthy).
    assert_eq!(
        value(
            &text,
            &format!("weir_upstream_nodes{{upstream=\"route:{prefix}-ok\",state=\"healthy\"}}")
        ),
        1.0,
        "{text}"
    );
    // Attempts per node: the live node answered 2xx three times, the dead
    // one never answered.
    assert_eq!(
        value(
            &text,
            &format!(
                "weir_upstream_node_attempts_total{{node=\"{}\",result=\"2xx\"}}",
                a.node()
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            &format!("weir_upstream_node_attempts_total{{node=\"{dead}\",result=\"error\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("weir_upstream_node_attempts_total{{node=\"{dead}\",result=\"5xx\"}}")
        ),
        0.0
    );
    assert_eq!(
        value(&text, "weir_config_reloads_total{result=\"applied\"}"),
        0.0
    );
    assert!(value(&text, "process_resident_memory_bytes") > 1e6);
    assert!(value(&text, "process_open_fds") > 0.0);
}

#[tokio::test]
async fn fast_path_requests_are_counted_by_route_and_code() {
    requests_are_counted_by_route_and_code(true, "m-fast").await;
}

#[tokio::test]
async fn general_path_requests_are_counted_by_route_and_code() {
    requests_are_counted_by_route_and_code(false, "m-general").await;
}

/// A reload that keeps a route keeps its counters; a rejected reload shows
/// in the reload metrics.
#[tokio::test]
async fn counters_carry_on_across_a_reload_and_reloads_are_counted() {
    let a = Backend::start("a").await;
    let yaml = |path: &str| {
        format!(
            "routes:\n  - {{id: m-reload, uri: \"{path}\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
            a.node()
        )
    };
    let gw = gateway(&yaml("/one")).await;
    let control = gw.control_addr().expect("control listener");
    assert_eq!(
        get(gw.proxy_addr(), None, "/one").await.status,
        StatusCode::OK
    );
    gw.core
        .reload(config(&yaml("/two")))
        .await
        .expect("reload applied");
    assert_eq!(
        get(gw.proxy_addr(), None, "/two").await.status,
        StatusCode::OK
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "routes:\n  - {id: m-reload, uri: /two, upstream: {nodes: {\"127.0.0.1:99999\": 1}}}\n",
    )
    .expect("write the bad file");
    assert!(
        gw.core
            .reload_file(bad.to_str().expect("UTF-8 path"))
            .await
            .is_err(),
        "port 99999 is refused"
    );

    let text = scrape_when(
        control,
        &[(
            "weir_http_requests_total{route=\"m-reload\",code=\"200\"}",
            2.0,
        )],
    )
    .await;
    assert_eq!(
        value(&text, "weir_config_reloads_total{result=\"applied\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "weir_config_reloads_total{result=\"rejected\"}"),
        1.0
    );
    assert_eq!(value(&text, "weir_config_last_reload_successful"), 0.0);
}

/// Discovery: synced, connected, one full list, services held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sync_state_is_exposed() {
    let api = FakeApiServer::start().await.expect("fake API server");
    let pod = Backend::start("p").await;
    api.apply_endpoints(common::cart_endpoints(&[pod.addr.port()]));
    let yaml = format!(
        "discovery:\n  kubernetes:\n    service: {{schema: http, host: \"127.0.0.1\", port: {}}}\n    client: {{token: test-token}}\nroutes:\n  - {{id: m-k8s, uri: \"/*\", upstream: {{discovery_type: kubernetes, service_name: \"shop/cart:http\"}}}}\n",
        api.addr().port()
    );
    let gw = gateway(&yaml).await;
    assert!(gw.wait_ready(Duration::from_secs(15)).await, "never ready");
    let control = gw.control_addr().expect("control listener");
    assert_eq!(get(gw.proxy_addr(), None, "/").await.status, StatusCode::OK);
    let text = scrape_when(
        control,
        &[(
            "weir_http_requests_total{route=\"m-k8s\",code=\"200\"}",
            1.0,
        )],
    )
    .await;
    assert_well_formed(&text);
    assert!(!text.contains("test-token"), "the token leaked: {text}");
    assert_eq!(value(&text, "weir_discovery_ready{cluster=\"\"}"), 1.0);
    assert_eq!(value(&text, "weir_discovery_connected{cluster=\"\"}"), 1.0);
    assert_eq!(
        value(&text, "weir_discovery_lists_total{cluster=\"\"}"),
        1.0
    );
    assert!(
        value(
            &text,
            "weir_discovery_last_event_timestamp_seconds{cluster=\"\"}"
        ) > 1.7e9
    );
    assert_eq!(value(&text, "weir_discovery_services{cluster=\"\"}"), 1.0);
    assert_eq!(
        value(
            &text,
            "weir_upstream_nodes{upstream=\"route:m-k8s\",state=\"healthy\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "weir_http_requests_total{route=\"m-k8s\",code=\"200\"}"
        ),
        1.0
    );
}

/// A node that accepts connections, reads requests and never answers;
/// reports each request it gets.
async fn silent_node() -> (SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind node");
    let addr = listener.local_addr().expect("node address");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 4096];
                while let Ok(n) = stream.read(&mut b).await {
                    if n == 0 {
                        return;
                    }
                    let _ = tx.send(()).await;
                }
            });
        }
    });
    (addr, rx)
}

/// A client that leaves before the answer counts as 499 on its route.
async fn a_client_that_leaves_counts_as_499(fast_path: bool, route: &str) {
    use tokio::io::AsyncWriteExt;
    let (node, mut got) = silent_node().await;
    let yaml = format!(
        "gateway:\n  http: {{fast_path: {fast_path}}}\nroutes:\n  - {{id: {route}, uri: \"/*\", upstream: {{nodes: {{\"{node}\": 1}}}}}}\n"
    );
    let gw = gateway(&yaml).await;
    let control = gw.control_addr().expect("control listener");
    let mut client = tokio::net::TcpStream::connect(gw.proxy_addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .expect("the request never reached the node");
    drop(client);
    let series = format!("weir_http_requests_total{{route=\"{route}\",code=\"499\"}}");
    scrape_when(control, &[(&series, 1.0)]).await;
}

#[tokio::test]
async fn fast_path_client_gone_counts_as_499() {
    a_client_that_leaves_counts_as_499(true, "m-gone-fast").await;
}

#[tokio::test]
async fn general_path_client_gone_counts_as_499() {
    a_client_that_leaves_counts_as_499(false, "m-gone-general").await;
}

/// docs/configuration.md: "a route answering more than 16 distinct codes
/// counts the rest as `code=\"other\"`". Nineteen distinct codes, one
/// request each: the first sixteen get series of their own, the last three
/// count as `other`; a code that has its series keeps counting there.
async fn codes_beyond_sixteen_per_route_count_as_other(fast_path: bool, route: &str) {
    const CODES: std::ops::RangeInclusive<u16> = 400..=418;
    let a = Backend::start("a").await;
    let yaml = format!(
        "gateway:\n  http: {{fast_path: {fast_path}}}\nroutes:\n  - {{id: {route}, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        a.node()
    );
    let gw = gateway(&yaml).await;
    let control = gw.control_addr().expect("control listener");
    let c = common::client();
    for code in CODES.chain([400]) {
        let r = common::send_with(
            &c,
            gw.proxy_addr(),
            "GET",
            None,
            &format!("/status/{code}"),
            common::empty(),
        )
        .await;
        assert_eq!(r.status.as_u16(), code, "{}", r.body);
    }
    let series =
        |code: &str| format!("weir_http_requests_total{{route=\"{route}\",code=\"{code}\"}}");
    let text = scrape_when(control, &[(&series("other"), 3.0), (&series("400"), 2.0)]).await;
    assert_well_formed(&text);
    for code in 401..=415 {
        assert_eq!(value(&text, &series(&code.to_string())), 1.0, "{code}");
    }
    for code in 416..=418 {
        assert_eq!(
            sample(&text, &series(&code.to_string())),
            None,
            "{code} has no series of its own:\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            &format!("weir_http_request_duration_seconds_count{{route=\"{route}\"}}")
        ),
        20.0,
        "every request is in the histogram"
    );
}

#[tokio::test]
async fn fast_path_codes_beyond_sixteen_per_route_count_as_other() {
    codes_beyond_sixteen_per_route_count_as_other(true, "m-other-fast").await;
}

#[tokio::test]
async fn general_path_codes_beyond_sixteen_per_route_count_as_other() {
    codes_beyond_sixteen_per_route_count_as_other(false, "m-other-general").await;
}
