//! The access log shows one line per request with the node that served it.

mod common;

use std::time::Duration;

use common::{gateway, get, Backend};

async fn read_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("access log lines written")
}

#[tokio::test]
async fn text_lines_show_the_pods_taking_turns() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = gateway(&format!(
        "gateway:\n  access_log: {{path: {:?}}}\nroutes:\n  - {{id: shop, host: shop.test, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1, \"{}\": 1}}}}}}\n",
        log.display(),
        a.node(),
        b.node()
    ))
    .await;
    for _ in 0..4 {
        get(gw.proxy_addr(), Some("shop.test"), "/cart?id=1").await;
    }
    let lines = read_lines(&log, 4).await;
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(
        lines[0].contains("\"GET /cart?id=1 HTTP/1.1\" 200 1 "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("host=shop.test"), "{}", lines[0]);
    assert!(lines[0].contains("route=shop"), "{}", lines[0]);
    assert!(lines[0].contains("ustatus=200"), "{}", lines[0]);
    let served: Vec<bool> = lines[..4]
        .iter()
        .map(|l| l.contains(&format!("upstream={} ", a.node())))
        .collect();
    assert_eq!(
        served,
        vec![served[0], !served[0], served[0], !served[0]],
        "nodes alternate: {lines:#?}"
    );
}

#[tokio::test]
async fn json_lines_carry_the_same_fields() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let gw = gateway(&format!(
        "gateway:\n  access_log: {{path: {:?}, format: json}}\nroutes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        log.display(),
        a.node()
    ))
    .await;
    get(gw.proxy_addr(), Some("x.test"), "/p").await;
    let lines = read_lines(&log, 1).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["uri"], "/p");
    assert_eq!(v["host"], "x.test");
    assert_eq!(v["route_id"], "r");
    assert_eq!(v["upstream_addr"], a.node());
    assert_eq!(v["upstream_status"], "200");
    assert_eq!(v["body_bytes_sent"], 1);
}

/// Starts a gateway logging to a temporary file, with one route for host
/// `shop.test` only, on the path `fast_path` picks; sends a request no route
/// matches and returns the answer's body and the line logged for it.
async fn log_line_of_a_404(fast_path: bool) -> (String, String) {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = gateway(&format!(
        "gateway:\n  http: {{fast_path: {fast_path}}}\n  access_log: {{path: {:?}}}\nroutes:\n  - {{id: shop, host: shop.test, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        log.display(),
        a.node()
    ))
    .await;
    let r = get(gw.proxy_addr(), Some("nowhere.test"), "/missing?x=1").await;
    assert_eq!(r.status, http::StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(a.hits(), 0);
    let lines = read_lines(&log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    (r.body, lines[0].clone())
}

/// A request no route matches is logged with its 404, no attempt
/// (`upstream=- ustatus=- urt=-`) and `route=-` (docs/configuration.md,
/// "Access log"; an empty field is written `-`).
async fn a_request_no_route_matches_is_logged_with_404_and_route_dash(fast_path: bool) {
    let (_, line) = log_line_of_a_404(fast_path).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("\"GET /missing?x=1 HTTP/1.1\" 404 "),
        "fast_path: {fast_path}: {line:?}"
    );
    assert!(
        line.contains(" \"-\" \"-\" host=nowhere.test rt="),
        "fast_path: {fast_path}: {line:?}"
    );
    assert!(
        line.ends_with(" upstream=- ustatus=- urt=- route=-"),
        "fast_path: {fast_path}: {line:?}"
    );
}

/// The line's body size (nginx's `$body_bytes_sent`) is the size of the
/// error body weir answered with, as for any other answer.
async fn a_404_is_logged_with_the_size_of_its_error_body(fast_path: bool) {
    let (body, line) = log_line_of_a_404(fast_path).await;
    assert!(!body.is_empty());
    let expected = format!("\" 404 {} \"-\"", body.len());
    assert!(
        line.contains(&expected),
        "fast_path: {fast_path}: expected {expected:?} in {line:?}"
    );
}

#[tokio::test]
async fn fast_path_request_no_route_matches_is_logged_with_404_and_route_dash() {
    a_request_no_route_matches_is_logged_with_404_and_route_dash(true).await;
}

#[tokio::test]
async fn general_path_request_no_route_matches_is_logged_with_404_and_route_dash() {
    a_request_no_route_matches_is_logged_with_404_and_route_dash(false).await;
}

#[tokio::test]
async fn fast_path_404_is_logged_with_the_size_of_its_error_body() {
    a_404_is_logged_with_the_size_of_its_error_body(true).await;
}

#[tokio::test]
async fn general_path_404_is_logged_with_the_size_of_its_error_body() {
    a_404_is_logged_with_the_size_of_its_error_body(false).await;
}
