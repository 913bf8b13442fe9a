//! Consumers' secrets never leak. With the access log, metrics and the
//! control API on, and every log event of the process captured (trace level
//! for weir's own crates), requests carrying a valid and an invalid key (in
//! the `apikey` header and in `?apikey=`), basic-auth passwords, and a key
//! on a request whose node is down: no key or password shows up in the
//! access log, `GET /metrics`, any control API answer, any log line, any
//! response (401 bodies included), nor in the error of a refused reload.
//! Every case runs over HTTP/1.1 (fast path, TLS, general path) and HTTP/2
//! (h2c, h2 over TLS): see `plugin_kit/mod.rs`.

mod common;
mod plugin_kit;

use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::Duration;

use base64::Engine;
use common::wire::{ok, Answer, RawBackend};
use plugin_kit::*;
use serde_json::{json, Value};

const KEY: &str = "Sup3rS3cret-K3y-x9";
const WRONG_KEY: &str = "Wr0ngS3cret-K3y-x8";
const PASSWORD: &str = "Passw0rd-S3cret-q7";
const WRONG_PASSWORD: &str = "Passw0rd-Wr0ng-q6";
const SECRETS: [&str; 4] = [KEY, WRONG_KEY, PASSWORD, WRONG_PASSWORD];

/// Every log event of this test process, as the binary writes them (JSON).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,h2=info,hyper=info,hyper_util=info,rustls=info,tokio=info,mio=info",
        );
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(|| Sink)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// A gateway with the access log in `dir` (`format`), key-auth and
/// basic-auth routes, and a route whose node is down.
async fn secrets_gateway(t: T, dir: &Path, format: &str, node: &str) -> Gw {
    let down = common::closed_port().await.to_string();
    start(
        t,
        json!({
            "gateway": {"access_log": {"path": dir.join("access.log"), "format": format}},
            "routes": [
                {"id": format!("secrets-key-{t:?}"), "uri": "/key/*", "upstream": upstream(node),
                 "plugins": {"key-auth": {}}},
                {"id": format!("secrets-basic-{t:?}"), "uri": "/basic/*", "upstream": upstream(node),
                 "plugins": {"basic-auth": {}}},
                {"id": format!("secrets-down-{t:?}"), "uri": "/down/*", "upstream": upstream(&down),
                 "plugins": {"key-auth": {}}},
            ],
            "consumers": [
                {"username": "jack", "plugins": {
                    "key-auth": {"key": KEY},
                    "basic-auth": {"username": "jack", "password": PASSWORD}}},
            ],
        }),
    )
    .await
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// The access log's lines once there are at least `n` (bounded wait).
async fn access_log(path: &Path, n: usize) -> Vec<String> {
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
    .unwrap_or_else(|_| panic!("{n} access log lines not written within 10 s"))
}

/// Every answer of the control API (crates/weir/src/control.rs), by path.
async fn control_dumps(gw: &Gw) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in [
        "/status",
        "/status/ready",
        "/metrics",
        "/v1/routes",
        "/v1/upstreams",
        "/v1/healthcheck",
        "/v1/reload",
        "/v1/discovery/kubernetes/dump",
    ] {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            common::get(gw.control_addr(), None, path),
        )
        .await
        .unwrap_or_else(|_| panic!("GET {path} on the control API timed out"));
        out.push((path.to_owned(), r.body));
    }
    out
}

/// Where a secret was found, sink by sink.
#[derive(Default, Debug)]
struct Leaks {
    access_log: Vec<String>,
    elsewhere: Vec<String>,
}

fn find(sink: &str, text: &str, into: &mut Vec<String>) {
    for s in SECRETS {
        if text.contains(s) {
            let line = text.lines().find(|l| l.contains(s)).unwrap_or(text);
            into.push(format!("{sink}: {s:?} in {line}"));
        }
    }
}

/// Sends `requests` (each with the status it must get), then looks for the
/// secrets in the responses, the access log, the control API and the logs,
/// and in a refused reload.
async fn run_and_collect(t: T, format: &str, requests: Vec<(Req, u16)>) -> Leaks {
    capture_logs();
    // A node that never echoes what it got: what a response shows is weir's.
    let b = RawBackend::start(|_| Answer::Send(ok("ok"))).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = secrets_gateway(t, dir.path(), format, &b.node()).await;
    let mut leaks = Leaks::default();
    let mut c = gw.client();
    for (req, status) in &requests {
        let r = c.send(req).await;
        assert_eq!(
            r.status,
            *status,
            "{t:?} {} {:?}: {}",
            req.target,
            req.headers,
            r.text()
        );
        find(
            &format!("response to {}", req.target),
            &format!("{:?}\n{}", r.headers, r.text()),
            &mut leaks.elsewhere,
        );
    }
    let lines = access_log(&dir.path().join("access.log"), requests.len()).await;
    for l in &lines {
        find("access log", l, &mut leaks.access_log);
    }
    for (path, body) in control_dumps(&gw).await {
        find(&format!("GET {path}"), &body, &mut leaks.elsewhere);
    }

    // A refused reload (the key used twice) and what the control API then
    // says about it.
    let mut doc: Value = json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
        "routes": [{"id": "r", "uri": "/*", "upstream": upstream(&b.node()),
                    "plugins": {"key-auth": {}}}],
        "consumers": [
            {"username": "jack", "plugins": {"key-auth": {"key": KEY}}},
            {"username": "rose", "plugins": {"key-auth": {"key": KEY}}},
        ],
    });
    doc["consumers"][1]["plugins"]["basic-auth"] = json!({"username": "r", "password": [PASSWORD]});
    let err = gw
        .gateway
        .core
        .reload(common::config(&doc.to_string()))
        .await
        .expect_err("a reload with a key used twice is refused");
    find("reload error", &format!("{err}"), &mut leaks.elsewhere);
    for (path, body) in control_dumps(&gw).await {
        find(
            &format!("GET {path} after the refused reload"),
            &body,
            &mut leaks.elsewhere,
        );
    }
    let captured = logs();
    let down = format!("\"secrets-down-{t:?}\"");
    assert!(
        captured
            .lines()
            .any(|l| l.contains("request failed") && l.contains(&down)),
        "{t:?}: the log capture must hold the 502's \"request failed\" event"
    );
    find("log events", &captured, &mut leaks.elsewhere);
    leaks
}

fn header_requests() -> Vec<(Req, u16)> {
    vec![
        (Req::get("/key/a").header("apikey", KEY), 200),
        (Req::get("/key/b").header("apikey", WRONG_KEY), 401),
        (Req::get("/down/c").header("apikey", KEY), 502),
        (
            Req::get("/basic/d").header("authorization", &basic(&format!("jack:{PASSWORD}"))),
            200,
        ),
        (
            Req::get("/basic/e").header("authorization", &basic(&format!("jack:{WRONG_PASSWORD}"))),
            401,
        ),
    ]
}

fn query_requests() -> Vec<(Req, u16)> {
    vec![
        (Req::get(&format!("/key/a?apikey={KEY}&x=1")), 200),
        (Req::get(&format!("/key/b?x=1&apikey={WRONG_KEY}")), 401),
        (Req::get(&format!("/down/c?apikey={KEY}")), 502),
    ]
}

async fn keys_and_passwords_in_headers_appear_nowhere(t: T) {
    for format in ["text", "json"] {
        let leaks = run_and_collect(t, format, header_requests()).await;
        assert!(
            leaks.access_log.is_empty() && leaks.elsewhere.is_empty(),
            "{t:?}, {format} access log: secrets leaked: {leaks:#?}"
        );
    }
}

async fn keys_in_the_query_appear_nowhere_but_the_access_log(t: T) {
    let leaks = run_and_collect(t, "text", query_requests()).await;
    assert!(
        leaks.elsewhere.is_empty(),
        "{t:?}: secrets leaked: {:#?}",
        leaks.elsewhere
    );
}

async fn keys_in_the_query_are_masked_in_the_access_log(t: T) {
    for format in ["text", "json"] {
        let leaks = run_and_collect(t, format, query_requests()).await;
        assert!(
            leaks.access_log.is_empty(),
            "{t:?}, {format}: the access log shows `?apikey=` keys: {:#?}",
            leaks.access_log
        );
    }
}

on_every_transport!(
    keys_and_passwords_in_headers_appear_nowhere,
    keys_in_the_query_appear_nowhere_but_the_access_log,
    keys_in_the_query_are_masked_in_the_access_log,
);
