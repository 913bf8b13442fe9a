//! The access log shows one line per request with the node that served it,
//! requests weir could not read included, in the order the requests
//! finished, whichever worker served them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{config, gateway, get, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    assert_eq!(v["protocol"], "HTTP/1.1");
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

/// Milliseconds since the Unix epoch of `2026-12-06T02:51:32.123Z`, None
/// for anything not of exactly that shape.
fn rfc3339_ms(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    u64::try_from(secs * 1000 + n(20..23)).ok()
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn rfc3339_ms_reads_what_it_should() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(
        rfc3339_ms("2026-11-22T03:00:00.042Z"),
        Some(1_795_316_400_042)
    );
    assert_eq!(rfc3339_ms("22/Nov/2026:03:00:00 +0000"), None);
    assert_eq!(rfc3339_ms("2026-11-22T03:00:00Z"), None);
}

/// JSON lines carry the request's arrival with milliseconds (the text
/// format keeps nginx's `$time_local`, to the second).
#[tokio::test]
async fn json_lines_carry_the_time_with_milliseconds() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let gw = gateway(&format!(
        "gateway:\n  access_log: {{path: {:?}, format: json}}\nroutes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        log.display(),
        a.node()
    ))
    .await;
    let before = unix_ms(SystemTime::now());
    get(gw.proxy_addr(), Some("x.test"), "/p").await;
    let after = unix_ms(SystemTime::now());
    let lines = read_lines(&log, 1).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let time = v["time"].as_str().unwrap_or_else(|| panic!("{}", lines[0]));
    let ms = rfc3339_ms(time).unwrap_or_else(|| panic!("not RFC 3339 with ms: {time:?}"));
    assert!(
        (before..=after).contains(&ms),
        "{time} ({ms}) not within the request's span [{before}, {after}]"
    );
}

/// Lines of requests that finished one after the other come out in that
/// order, though the requests (each on a connection of its own) were spread
/// over two workers, each with its own buffer.
///
/// Each request asks weir to close its connection and the next one is sent
/// once it did: weir closes after the exchange, log line included, so the
/// requests finished one after the other in weir too. (With only the answer
/// awaited, the worker that sent it may be descheduled before it numbers
/// its line while the next request is served on the other worker: the fast
/// path numbers a line just after the answer's last byte went out.)
#[tokio::test]
async fn lines_of_sequential_requests_on_several_workers_come_out_in_order() {
    const N: usize = 30;
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = weir::Gateway::start_with_workers(
        config(&format!(
            "gateway:\n  access_log: {{path: {:?}}}\nroutes:\n  - {{id: seq, uri: \"/seq/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
            log.display(),
            a.node()
        )),
        2,
    )
    .await
    .expect("gateway start");
    for i in 0..N {
        let request =
            format!("GET /seq/{i} HTTP/1.1\r\nHost: seq.test\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_exchange(gw.proxy_addr(), request.as_bytes()).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let lines = read_lines(&log, N).await;
    let order: Vec<usize> = lines
        .iter()
        .map(|l| {
            let (_, rest) = l.split_once("\"GET /seq/").unwrap_or_else(|| panic!("{l}"));
            rest.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "{lines:#?}");
}

/// Tests that make the gateway answer requests no route matched with 400,
/// 431 or 408 hold this, so each sees its own in the process-wide counters.
static UNMATCHED_COUNTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `request` on a connection of its own, waits (bounded) for the
/// connection to close, and returns the answer's status and body.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    // The gateway may answer and close before reading everything.
    let _ = c.write_all(request).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut b = [0u8; 4096];
        loop {
            match c.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway never closed the connection");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The count of requests no route matched answered `code`.
async fn unmatched_count(control: SocketAddr, code: u16) -> u64 {
    let r = get(control, None, "/metrics").await;
    let series = format!("weir_http_requests_total{{route=\"\",code=\"{code}\"}} ");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

/// Starts a gateway logging to a temporary file (`http.fast_path` as
/// given, `http.header_timeout` 0.5 s), sends `request` raw, expects
/// `status` back, and returns the body answered and the line logged. The
/// answer is counted as a request no route matched.
async fn unread_request_logged(fast_path: bool, request: &[u8], status: u16) -> (String, String) {
    let _counts = UNMATCHED_COUNTS.lock().await;
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = gateway(&format!(
        "gateway:\n  http: {{fast_path: {fast_path}, header_timeout: 0.5}}\n  access_log: {{path: {:?}}}\nroutes:\n  - {{id: shop, host: shop.test, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        log.display(),
        a.node()
    ))
    .await;
    let control = gw.control_addr().expect("control API");
    let counted = unmatched_count(control, status).await;
    let (answered, body) = raw_exchange(gw.proxy_addr(), request).await;
    assert_eq!(answered, status, "fast_path: {fast_path}: {body}");
    assert_eq!(a.hits(), 0);
    let lines = read_lines(&log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // Counted just after the answer went out: wait (bounded) for it.
    let now = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = unmatched_count(control, status).await;
            if now > counted {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fast_path: {fast_path}: the {status} was not counted"));
    assert_eq!(now, counted + 1, "fast_path: {fast_path}");
    (body, lines.into_iter().next().unwrap())
}

const BAD_HEADER_LINE: &[u8] =
    b"GET /bad?x=1 HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: t/1\r\nnot a header line\r\n\r\n";

fn too_many_headers() -> Vec<u8> {
    let mut req = b"GET /many HTTP/1.1\r\nHost: shop.test\r\n".to_vec();
    for i in 0..120 {
        req.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[tokio::test]
async fn fast_path_malformed_head_is_logged_with_its_400_and_request_line() {
    let (body, line) = unread_request_logged(true, BAD_HEADER_LINE, 400).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    let expected = format!(
        "] \"GET /bad?x=1 HTTP/1.1\" 400 {} \"-\" \"t/1\" host=shop.test rt=",
        body.len()
    );
    assert!(
        line.contains(&expected),
        "expected {expected:?} in {line:?}"
    );
    assert!(
        line.ends_with(" upstream=- ustatus=- urt=- route=-"),
        "{line}"
    );
}

#[tokio::test]
async fn fast_path_head_with_too_many_fields_is_logged_with_its_431() {
    let (body, line) = unread_request_logged(true, &too_many_headers(), 431).await;
    let expected = format!(
        "] \"GET /many HTTP/1.1\" 431 {} \"-\" \"-\" host=shop.test rt=",
        body.len()
    );
    assert!(
        line.contains(&expected),
        "expected {expected:?} in {line:?}"
    );
    assert!(line.ends_with(" route=-"), "{line}");
}

/// The 408 for a head not received in time shows what of it came, and the
/// time it was given (`rt` at least `http.header_timeout`).
#[tokio::test]
async fn fast_path_head_not_received_in_time_is_logged_with_its_408() {
    let (body, line) = unread_request_logged(
        true,
        b"GET /slow?x=1 HTTP/1.1\r\nHost: shop.test\r\nUser-Ag",
        408,
    )
    .await;
    let expected = format!(
        "] \"GET /slow?x=1 HTTP/1.1\" 408 {} \"-\" \"-\" host=shop.test rt=",
        body.len()
    );
    assert!(
        line.contains(&expected),
        "expected {expected:?} in {line:?}"
    );
    let rt: f64 = line
        .split_once(" rt=")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(rt >= 0.5, "rt={rt} below the header timeout: {line}");
}

/// On the general path hyper answers a head it cannot parse itself (400,
/// 431 for too many fields, no body), before weir sees a request: the line
/// shows the status and `-` for the request it never saw.
#[tokio::test]
async fn general_path_malformed_head_is_logged_with_hypers_400() {
    let (body, line) = unread_request_logged(false, BAD_HEADER_LINE, 400).await;
    assert!(body.is_empty(), "{body:?}");
    assert!(
        line.contains("] \"- - -\" 400 0 \"-\" \"-\" host=- rt="),
        "{line}"
    );
    assert!(line.ends_with(" route=-"), "{line}");
}

#[tokio::test]
async fn general_path_head_with_too_many_fields_is_logged_with_hypers_431() {
    let (_, line) = unread_request_logged(false, &too_many_headers(), 431).await;
    assert!(
        line.contains("] \"- - -\" 431 0 \"-\" \"-\" host=- rt="),
        "{line}"
    );
}

/// A request without Host is weir's own 400 on both paths.
async fn request_without_host_is_logged_with_its_400(fast_path: bool) {
    let (body, line) = unread_request_logged(
        fast_path,
        b"GET /nohost HTTP/1.1\r\nUser-Agent: t/2\r\n\r\n",
        400,
    )
    .await;
    let expected = format!(
        "] \"GET /nohost HTTP/1.1\" 400 {} \"-\" \"t/2\" host=- rt=",
        body.len()
    );
    assert!(
        line.contains(&expected),
        "fast_path: {fast_path}: expected {expected:?} in {line:?}"
    );
}

#[tokio::test]
async fn fast_path_request_without_host_is_logged_with_its_400() {
    request_without_host_is_logged_with_its_400(true).await;
}

#[tokio::test]
async fn general_path_request_without_host_is_logged_with_its_400() {
    request_without_host_is_logged_with_its_400(false).await;
}
