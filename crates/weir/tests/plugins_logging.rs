//! The log phase over real sockets, through `file-logger`: one JSON line per
//! request, written after the response, for proxied requests, plugin
//! answers and requests no route matched (a global rule); the consumer's own
//! plugins run in the response and log phases too. Every case runs over
//! HTTP/1.1 (fast path, TLS, general path) and HTTP/2 (see
//! `plugin_kit/mod.rs`).

mod common;
mod plugin_kit;

use std::path::{Path, PathBuf};

use common::wait_until_for;
use common::wire::echo_target;
use plugin_kit::*;
use serde_json::{json, Value};

/// A fresh directory and the path of a log file in it.
fn log_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("access.json");
    (dir, path)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// The file's JSON lines.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits (bounded) until the file holds `n` lines, and returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    wait_until_for(10, &format!("{n} lines in {}", path.display()), || {
        lines(path).len() >= n
    })
    .await;
    lines(path)
}

async fn a_line_per_request_with_what_happened(t: T) {
    let b = echo_target().await;
    let (_dir, path) = log_file();
    let gw = start(
        t,
        json!({
            "routes": [{"id": "logged", "uri": "/*", "upstream": upstream(&b.node()),
                        "plugins": {"key-auth": {}, "file-logger": {"path": path_str(&path)}}}],
            "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
        }),
    )
    .await;
    let mut c = gw.client();
    let ok = c
        .send(&Req::get("/orders?page=2").header("apikey", "jack-key"))
        .await;
    assert_eq!(ok.status, 200, "{t:?}: {}", ok.text());
    // key-auth answers this one: the log phase still runs. A key sent in
    // the query string is masked.
    let refused = c.send(&Req::get("/orders?apikey=wrong-key")).await;
    assert_eq!(refused.status, 401, "{t:?}");
    let l = wait_lines(&path, 2).await;
    assert_eq!(l.len(), 2, "{t:?}: {l:#?}");
    let (first, second) = (&l[0], &l[1]);
    assert_eq!(first["route_id"], "logged", "{first}");
    assert_eq!(first["request"]["method"], "GET", "{first}");
    assert_eq!(first["request"]["uri"], "/orders?page=2", "{first}");
    assert_eq!(first["response"]["status"], 200, "{first}");
    assert_eq!(
        first["response"]["size"],
        ok.body.len() as u64,
        "{t:?}: {first}"
    );
    assert_eq!(first["consumer"]["username"], "jack", "{first}");
    assert_eq!(first["client_ip"], "127.0.0.1", "{first}");
    assert!(
        first["latency"].as_f64().is_some_and(|l| l >= 0.0),
        "{first}"
    );
    assert!(
        first["start_time"].as_u64().is_some_and(|s| s > 0),
        "{first}"
    );
    assert_eq!(second["response"]["status"], 401, "{second}");
    assert_eq!(second["request"]["uri"], "/orders?apikey=***", "{second}");
    assert!(second.get("consumer").is_none(), "{second}");
    // The key never reaches the log line.
    let text = std::fs::read_to_string(&path).expect("read the log file");
    assert!(
        !text.contains("jack-key") && !text.contains("wrong-key"),
        "{text}"
    );
}

async fn a_global_rule_logs_requests_no_route_matched(t: T) {
    let b = echo_target().await;
    let (_dir, path) = log_file();
    let gw = start(
        t,
        json!({
            "routes": [{"id": "r", "uri": "/known", "upstream": upstream(&b.node())}],
            "global_rules": [{"id": "1", "plugins": {"file-logger": {"path": path_str(&path)}}}],
        }),
    )
    .await;
    let mut c = gw.client();
    assert_eq!(c.send(&Req::get("/unknown")).await.status, 404);
    assert_eq!(c.send(&Req::get("/known")).await.status, 200);
    let l = wait_lines(&path, 2).await;
    assert_eq!(
        (&l[0]["response"]["status"], &l[0]["route_id"]),
        (&json!(404), &json!("")),
        "{t:?}: {:#?}",
        l
    );
    assert_eq!(
        (&l[1]["response"]["status"], &l[1]["route_id"]),
        (&json!(200), &json!("r")),
        "{t:?}: {l:#?}"
    );
}

async fn log_format_takes_variables_and_literals(t: T) {
    let b = echo_target().await;
    let (_dir, path) = log_file();
    let gw = start(
        t,
        json!({
            "routes": [{"id": "fmt", "uri": "/*", "upstream": upstream(&b.node()),
                        "plugins": {"file-logger": {"path": path_str(&path), "log_format": {
                            "who": "$remote_addr", "m": "$request_method", "u": "$uri",
                            "q": "$args", "s": "$status", "route": "$route_id",
                            "at": "$time_iso8601", "env": "staging"}}}}],
        }),
    )
    .await;
    let r = gw.send(&Req::post("/things?x=1", b"{}")).await;
    assert_eq!(r.status, 200, "{t:?}");
    let l = wait_lines(&path, 1).await;
    let line = &l[0];
    assert_eq!(
        (&line["who"], &line["m"], &line["u"], &line["q"]),
        (
            &json!("127.0.0.1"),
            &json!("POST"),
            &json!("/things"),
            &json!("x=1")
        ),
        "{t:?}: {line}"
    );
    assert_eq!(
        (&line["s"], &line["route"], &line["env"]),
        (&json!(200), &json!("fmt"), &json!("staging")),
        "{line}"
    );
    assert!(
        line["at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z') && s.len() == 20),
        "{line}"
    );
}

/// A consumer's own plugins run in the response and log phases: jack's
/// requests are logged to jack's file and carry jack's CORS header; rose's
/// are not logged and carry none.
async fn a_consumers_own_plugins_run_in_the_response_and_log_phases(t: T) {
    let b = echo_target().await;
    let (_dir, path) = log_file();
    let gw = start(
        t,
        json!({
            "routes": [{"id": "r", "uri": "/*", "upstream": upstream(&b.node()),
                        "plugins": {"key-auth": {}}}],
            "consumers": [
                {"username": "jack", "plugins": {
                    "key-auth": {"key": "jack-key"},
                    "cors": {"allow_origins": "https://jack.example"},
                    "file-logger": {"path": path_str(&path)}}},
                {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
            ],
        }),
    )
    .await;
    let mut c = gw.client();
    let origin = "https://jack.example";
    let rose = c
        .send(
            &Req::get("/rose")
                .header("apikey", "rose-key")
                .header("origin", origin),
        )
        .await;
    assert_eq!(rose.status, 200, "{t:?}");
    assert_eq!(rose.header("access-control-allow-origin"), None, "{t:?}");
    let jack = c
        .send(
            &Req::get("/jack")
                .header("apikey", "jack-key")
                .header("origin", origin),
        )
        .await;
    assert_eq!(jack.status, 200, "{t:?}");
    assert_eq!(
        jack.header("access-control-allow-origin"),
        Some(origin),
        "{t:?}: {:?}",
        jack.headers
    );
    let l = wait_lines(&path, 1).await;
    // Rose's request came first and left no line.
    assert_eq!(l.len(), 1, "{t:?}: {l:#?}");
    assert_eq!(l[0]["request"]["uri"], "/jack", "{}", l[0]);
    assert_eq!(l[0]["consumer"]["username"], "jack", "{}", l[0]);
}

/// Sends `first` then `second` on one connection to a gateway on `config`
/// whose access log goes to a file in `format`; returns the two lines and
/// the two responses.
async fn access_log_of(
    t: T,
    format: &str,
    mut config: Value,
    first: Req,
    second: Req,
) -> (Vec<String>, Resp, Resp) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("access.log");
    merge(
        &mut config,
        json!({"gateway": {"access_log": {"path": path_str(&path), "format": format}}}),
    );
    let gw = start(t, config).await;
    let mut c = gw.client();
    let (r1, r2) = (c.send(&first).await, c.send(&second).await);
    wait_until_for(10, "two access log lines", || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    let lines = std::fs::read_to_string(&path)
        .expect("read the access log")
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, r1, r2)
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The access log names the consumer an authentication plugin recognised
/// (text: ` consumer=<name>` at the end; JSON: `"consumer"`), and only then.
async fn the_access_log_names_the_consumer(t: T) {
    let b = echo_target().await;
    let config = json!({
        "routes": [{"id": "r", "uri": "/*", "upstream": upstream(&b.node()),
                    "plugins": {"key-auth": {}}}],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}],
    });
    let requests = || (Req::get("/a").header("apikey", "jack-key"), Req::get("/b"));
    let (first, second) = requests();
    let (text_lines, r1, r2) = access_log_of(t, "text", config.clone(), first, second).await;
    assert_eq!((r1.status, r2.status), (200, 401), "{t:?}");
    assert!(
        text_lines[0].ends_with(" route=r consumer=jack"),
        "{t:?}: {}",
        text_lines[0]
    );
    assert!(
        text_lines[1].ends_with(" route=r"),
        "{t:?}: {}",
        text_lines[1]
    );
    let (first, second) = requests();
    let (lines, r1, r2) = access_log_of(t, "json", config, first, second).await;
    assert_eq!((r1.status, r2.status), (200, 401), "{t:?}");
    let json_lines = json_lines(&lines);
    assert_eq!(
        json_lines[0]["consumer"], "jack",
        "{t:?}: {}",
        json_lines[0]
    );
    assert!(
        json_lines[1].get("consumer").is_none(),
        "{t:?}: {}",
        json_lines[1]
    );
}

/// The access log carries the request's identifier when `request-id` gave
/// or kept one: the client's, else the one it made (the response shows it).
async fn the_access_log_carries_the_request_id(t: T) {
    let b = echo_target().await;
    let config = json!({
        "routes": [{"id": "r", "uri": "/*", "upstream": upstream(&b.node()),
                    "plugins": {"request-id": {}}}],
    });
    for format in ["text", "json"] {
        let first = Req::get("/a").header("x-request-id", "client-id-1");
        let (l, _, made) = access_log_of(t, format, config.clone(), first, Req::get("/b")).await;
        let made = made
            .header("x-request-id")
            .expect("an id in the response")
            .to_owned();
        if format == "text" {
            assert!(l[0].ends_with(" request_id=client-id-1"), "{t:?}: {}", l[0]);
            assert!(
                l[1].ends_with(&format!(" request_id={made}")),
                "{t:?}: {}",
                l[1]
            );
        } else {
            let v = json_lines(&l);
            assert_eq!(v[0]["request_id"], "client-id-1", "{t:?}");
            assert_eq!(v[1]["request_id"], made.as_str(), "{t:?}");
        }
    }
}

on_every_transport!(
    the_access_log_carries_the_request_id,
    the_access_log_names_the_consumer,
    a_line_per_request_with_what_happened,
    a_global_rule_logs_requests_no_route_matched,
    log_format_takes_variables_and_literals,
    a_consumers_own_plugins_run_in_the_response_and_log_phases,
);
