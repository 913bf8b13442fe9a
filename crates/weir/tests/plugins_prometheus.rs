//! `prometheus` over real sockets: after requests through a route with the
//! plugin, the control API's `/metrics` shows APISIX's series with its
//! labels (route, matched uri and host, service, consumer, node, code), the
//! latency split into request / upstream / apisix, and the bandwidth; a
//! route without the plugin adds none. Every case runs over HTTP/1.1 (fast
//! path, TLS, general path) and HTTP/2 (see `plugin_kit/mod.rs`).
//!
//! The plugin's registry is process-wide and a scrape forgets the series
//! of routes its gateway does not have: the cases of this file take turns
//! ([`SERIAL`]), and use route ids of their own per transport.

mod common;
mod plugin_kit;

use std::net::SocketAddr;
use std::time::Duration;

use common::{get, Backend};
use plugin_kit::*;
use serde_json::json;

/// One case at a time (see the module's documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A route id of this case and transport.
fn id(name: &str, t: T) -> String {
    format!("{name}-{t:?}").to_lowercase()
}

async fn scrape(control: SocketAddr) -> String {
    let r = get(control, None, "/metrics").await;
    assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
    r.body
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v:?}: {e}")))
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Scrapes until `series` shows `want` (bounded): the log phase runs just
/// after the answer's last byte goes out, so a client can see the answer a
/// moment before it is counted.
async fn scrape_when(control: SocketAddr, series: &str, want: f64) -> String {
    let mut text = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            text = scrape(control).await;
            if sample(&text, series) == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "never saw {series} {want} in:\n{text}");
    text
}

/// The HTTP/1.1 bytes the harness writes for `req` (its request line, a
/// Host field unless it has one, its fields, the blank line).
fn h1_request_bytes(req: &Req) -> usize {
    let mut n = format!("{} {} HTTP/1.1\r\n", req.method, req.target).len();
    n += "Host: wire.test\r\n".len();
    n += req
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n").len())
        .sum::<usize>();
    n + 2
}

async fn counts_requests_by_route_consumer_node_and_code(t: T) {
    let _turn = SERIAL.lock().await;
    let b = Backend::start("b").await;
    let (r1, r2) = (id("r1", t), id("r2", t));
    let gw = start(
        t,
        json!({
            "routes": [
                {"id": r1, "uri": "/api/*", "upstream": upstream(&b.node()),
                 "plugins": {"key-auth": {}, "prometheus": {}}},
                {"id": r2, "uri": "/plain/*", "upstream": upstream(&b.node())},
            ],
            "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
        }),
    )
    .await;
    let control = gw.control_addr();
    let mut c = gw.client();
    const N: usize = 5;
    let authed = Req::get("/api/orders").header("apikey", "jack-key");
    let mut body_bytes = 0;
    for _ in 0..N {
        let r = c.send(&authed).await;
        assert_eq!(r.status, 200, "{t:?}: {}", r.text());
        body_bytes += r.body.len();
    }
    let refused = c.send(&Req::get("/api/orders")).await;
    assert_eq!(refused.status, 401, "{t:?}");
    for _ in 0..2 {
        assert_eq!(c.send(&Req::get("/plain/x")).await.status, 200, "{t:?}");
    }

    let node = b.node();
    let jack = format!(
        "route=\"{r1}\",matched_uri=\"/api/*\",matched_host=\"\",service=\"\",consumer=\"jack\",node=\"{node}\""
    );
    let status_200 = format!("apisix_http_status{{code=\"200\",{jack}}}");
    scrape_when(control, &status_200, N as f64).await;
    let anonymous = format!(
        "route=\"{r1}\",matched_uri=\"/api/*\",matched_host=\"\",service=\"\",consumer=\"\",node=\"\""
    );
    let status_401 = format!("apisix_http_status{{code=\"401\",{anonymous}}}");
    let text = scrape_when(control, &status_401, 1.0).await;
    assert_eq!(value(&text, &status_200), N as f64, "{t:?}");
    let of_r1 = format!("route=\"{r1}\"");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("apisix_http_status{") && l.contains(&of_r1))
            .count(),
        2,
        "{t:?}: one series per label set:\n{text}"
    );

    let jack = format!("route=\"{r1}\",service=\"\",consumer=\"jack\",node=\"{node}\"");
    for kind in ["request", "upstream", "apisix"] {
        let count = format!("apisix_http_latency_count{{type=\"{kind}\",{jack}}}");
        assert_eq!(value(&text, &count), N as f64, "{t:?}: {kind}");
        let inf = format!("apisix_http_latency_bucket{{type=\"{kind}\",{jack},le=\"+Inf\"}}");
        assert_eq!(value(&text, &inf), N as f64, "{t:?}: {kind}");
    }
    // weir's own answer: no node, no upstream latency.
    let anonymous = "service=\"\",consumer=\"\",node=\"\"";
    let anonymous = format!("route=\"{r1}\",{anonymous}");
    for (kind, n) in [
        ("request", Some(1.0)),
        ("apisix", Some(1.0)),
        ("upstream", None),
    ] {
        let count = format!("apisix_http_latency_count{{type=\"{kind}\",{anonymous}}}");
        assert_eq!(sample(&text, &count), n, "{t:?}: {kind}\n{text}");
    }

    let egress = value(
        &text,
        &format!("apisix_bandwidth{{type=\"egress\",{jack}}}"),
    );
    assert_eq!(egress, body_bytes as f64, "{t:?}: response body bytes");
    let ingress = value(
        &text,
        &format!("apisix_bandwidth{{type=\"ingress\",{jack}}}"),
    );
    if t.h2() {
        assert!(ingress > 0.0, "{t:?}: {ingress}");
    } else {
        assert_eq!(
            ingress,
            (N * h1_request_bytes(&authed)) as f64,
            "{t:?}: the request heads as sent"
        );
    }

    let unplugged = format!("route=\"{r2}\"");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("apisix_") && l.contains(&unplugged)),
        "{t:?}: a route without the plugin has no apisix series:\n{text}"
    );
}

async fn upstream_latency_is_the_nodes_time_to_answer(t: T) {
    let _turn = SERIAL.lock().await;
    let b = Backend::start("slow").await;
    let r = id("slow", t);
    let gw = start(
        t,
        json!({
            "routes": [{"id": r, "uri": "/delay/*", "upstream": upstream(&b.node()),
                        "plugins": {"prometheus": {}}}],
        }),
    )
    .await;
    let control = gw.control_addr();
    let mut c = gw.client();
    const N: usize = 3;
    for _ in 0..N {
        // The node answers 200 ms after the request reached it.
        assert_eq!(c.send(&Req::get("/delay/200")).await.status, 200, "{t:?}");
    }
    let labels = format!(
        "route=\"{r}\",service=\"\",consumer=\"\",node=\"{}\"",
        b.node()
    );
    let text = scrape_when(
        control,
        &format!("apisix_http_latency_count{{type=\"apisix\",{labels}}}"),
        N as f64,
    )
    .await;
    let bucket = |kind: &str, le: &str| {
        value(
            &text,
            &format!("apisix_http_latency_bucket{{type=\"{kind}\",{labels},le=\"{le}\"}}"),
        )
    };
    for kind in ["upstream", "request"] {
        assert_eq!(bucket(kind, "200"), 0.0, "{t:?}: {kind} took over 200 ms");
        assert_eq!(bucket(kind, "500"), N as f64, "{t:?}: {kind} within 500 ms");
    }
    // What weir itself added is well under the node's 200 ms.
    assert_eq!(bucket("apisix", "200"), N as f64, "{t:?}\n{text}");
    let upstream_sum = value(
        &text,
        &format!("apisix_http_latency_sum{{type=\"upstream\",{labels}}}"),
    );
    assert!(
        (N as f64 * 200.0..N as f64 * 500.0).contains(&upstream_sum),
        "{t:?}: upstream sum {upstream_sum} ms"
    );
}

async fn prefer_name_shows_route_and_service_names(t: T) {
    let _turn = SERIAL.lock().await;
    let b = Backend::start("b").await;
    let (r, s) = (id("named", t), id("svc", t));
    let (route_name, service_name) = (id("orders", t), id("shop", t));
    let gw = start(
        t,
        json!({
            "services": [{"id": s, "name": service_name, "upstream": upstream(&b.node())}],
            "routes": [
                {"id": r, "name": route_name, "uri": "/named", "host": "wire.test",
                 "service_id": s, "plugins": {"prometheus": {"prefer_name": true}}},
                {"id": id("by-id", t), "name": "ignored", "uri": "/by-id", "service_id": s,
                 "plugins": {"prometheus": {}}},
            ],
        }),
    )
    .await;
    let control = gw.control_addr();
    let mut c = gw.client();
    assert_eq!(c.send(&Req::get("/named")).await.status, 200, "{t:?}");
    assert_eq!(c.send(&Req::get("/by-id")).await.status, 200, "{t:?}");
    let node = b.node();
    let named = format!(
        "apisix_http_status{{code=\"200\",route=\"{route_name}\",matched_uri=\"/named\",matched_host=\"wire.test\",service=\"{service_name}\",consumer=\"\",node=\"{node}\"}}"
    );
    scrape_when(control, &named, 1.0).await;
    let by_id = format!(
        "apisix_http_status{{code=\"200\",route=\"{}\",matched_uri=\"/by-id\",matched_host=\"\",service=\"{s}\",consumer=\"\",node=\"{node}\"}}",
        id("by-id", t)
    );
    scrape_when(control, &by_id, 1.0).await;
}

on_every_transport!(
    counts_requests_by_route_consumer_node_and_code,
    upstream_latency_is_the_nodes_time_to_answer,
    prefer_name_shows_route_and_service_names,
);
