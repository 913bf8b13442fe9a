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
    get(gw.proxy_addr(), Some("shop.test"), "/missing").await;
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
