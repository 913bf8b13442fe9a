//! `limit-req` and `limit-conn` over real sockets: the leaky bucket's
//! refusals and delays on every transport, in this process and in a real
//! `redis-server` (see `common/redis_server.rs`); in-flight counts refused
//! beyond `conn`, released when a request ends, whichever way (response
//! sent, client gone mid-request); Redis killed (APISIX's bare 500, or pass
//! with `allow_degradation`).

mod common;
mod plugin_kit;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::wire::echo_target;
use common::{get, Backend};
use plugin_kit::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Bounds every polling loop of this file.
const WITHIN: Duration = Duration::from_secs(10);

fn route(id: &str, uri: &str, node: &str, plugin: &str, conf: Value) -> Value {
    json!({"id": id, "uri": uri, "upstream": upstream(node), "plugins": {plugin: conf}})
}

/// rate 1, burst 0, nodelay: the second immediate request is refused with
/// the configured status and body, and never reaches the node.
async fn limit_req_refuses_beyond_the_rate(t: T) {
    let b = echo_target().await;
    let id = format!("lr-refuse-{t:?}");
    let gw = start(
        t,
        json!({"routes": [route(&id, "/*", &b.node(), "limit-req", json!({
            "rate": 1, "burst": 0, "nodelay": true, "key": "remote_addr",
            "rejected_code": 429, "rejected_msg": "slow down"}))]}),
    )
    .await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/a")).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let r = c.send(&Req::get("/a")).await;
    assert_eq!(r.status, 429, "{t:?}: {}", r.text());
    assert_eq!(r.text(), r#"{"error_msg":"slow down"}"#, "{t:?}");
    assert_eq!(b.seen().len(), 1, "{t:?}: the node saw the refused request");
}

/// rate 2, burst 2, no nodelay: of five requests sent at once, three are
/// admitted (excess 0, 1, 2: delayed 0, 0.5 and 1 s) and two refused at once.
async fn limit_req_delays_within_the_burst(t: T) {
    let b = echo_target().await;
    let id = format!("lr-delay-{t:?}");
    let gw = start(
        t,
        json!({"routes": [
            route(&id, "/limited/*", &b.node(), "limit-req",
                  json!({"rate": 2, "burst": 2, "key": "remote_addr"})),
            {"id": format!("free-{t:?}"), "uri": "/free", "upstream": upstream(&b.node())},
        ]}),
    )
    .await;
    // Five connections, opened (and warmed) before the burst so that the
    // five requests arrive together.
    let mut clients: Vec<Client> = (0..5).map(|_| gw.client()).collect();
    for c in &mut clients {
        assert_eq!(c.send(&Req::get("/free")).await.status, 200, "{t:?}");
    }
    let started = Instant::now();
    let req = Req::get("/limited/x");
    let answers = futures::future::join_all(clients.iter_mut().map(|c| {
        let req = req.clone();
        async move {
            let r = c.send(&req).await;
            (r.status, started.elapsed())
        }
    }))
    .await;
    let mut admitted: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, d)| *d)
        .collect();
    admitted.sort();
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, d)| *d)
        .collect();
    assert_eq!(
        (admitted.len(), refused.len()),
        (3, 2),
        "{t:?}: {answers:?}"
    );
    let spread = admitted[2] - admitted[0];
    assert!(
        spread >= Duration::from_millis(450),
        "{t:?}: the burst was not delayed: {answers:?}"
    );
    assert!(admitted[2] < Duration::from_secs(5), "{t:?}: {answers:?}");
    assert!(
        refused.iter().all(|d| *d < admitted[2]),
        "{t:?}: refusals wait for nothing: {answers:?}"
    );
}

on_every_transport!(
    limit_req_refuses_beyond_the_rate,
    limit_req_delays_within_the_burst,
);

/// With policy redis the bucket lives in the server: rate 1 burst 1
/// nodelay admits two at once and refuses the third; its key is there.
#[tokio::test]
async fn limit_req_with_policy_redis_keeps_the_bucket_in_redis() {
    let redis = RedisServer::start().await;
    let b = echo_target().await;
    let gw = start(
        T::Plain,
        json!({"routes": [route("lrr", "/*", &b.node(), "limit-req", json!({
            "rate": 1, "burst": 1, "nodelay": true, "key": "remote_addr",
            "policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port()}))]}),
    )
    .await;
    let mut c = gw.client();
    assert_eq!(c.send(&Req::get("/r")).await.status, 200);
    assert_eq!(c.send(&Req::get("/r")).await.status, 200);
    let r = c.send(&Req::get("/r")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), r#"{"error_msg":"Service Unavailable"}"#);
    let keys = redis.command("KEYS plugin-limit-req:*").await;
    assert!(
        keys.starts_with("*1\r\n") && keys.contains("route:lrr"),
        "{keys:?}"
    );
    assert_eq!(b.seen().len(), 2);
}

/// Waits until `f` holds, or panics after [`WITHIN`].
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WITHIN;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {WITHIN:?}");
}

/// conn 1, burst 0 on a slow node: while one request is in flight, another
/// is refused; when it is over, the next one is admitted.
async fn one_in_flight_then_released(addr: SocketAddr, b: &Backend, path: &'static str) {
    let first = tokio::spawn(async move { get(addr, None, path).await });
    let in_flight = b.in_flight.clone();
    until("the first request reaches the node", async || {
        in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let refused = get(addr, None, path).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body, r#"{"error_msg":"one at a time"}"#);
    let first = first.await.expect("first request");
    assert_eq!(first.status, 200, "{}", first.body);
}

fn conn_conf(extra: Value) -> Value {
    let mut c = json!({"conn": 1, "burst": 0, "default_conn_delay": 0.1,
                       "key": "all", "key_type": "constant",
                       "rejected_code": 429, "rejected_msg": "one at a time"});
    merge(&mut c, extra);
    c
}

/// Local counts: refused beyond `conn`, released when the response is
/// sent, and released when the client leaves mid-request (the node still
/// working on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_counts_in_flight_and_releases_however_requests_end() {
    let b = Backend::start("b").await;
    b.set_delay(800);
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
            "routes": [route("lc-local", "/*", &b.node(), "limit-conn", conn_conf(json!({})))],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    one_in_flight_then_released(addr, &b, "/c").await;
    b.set_delay(0);
    let again = get(addr, None, "/c").await;
    assert_eq!(
        again.status, 200,
        "the slot was not released: {}",
        again.body
    );

    // A client that leaves while the node still works on its request.
    b.set_delay(10_000);
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let in_flight = b.in_flight.clone();
    until("the abandoned request reaches the node", async || {
        in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    b.set_delay(0);
    assert_eq!(get(addr, None, "/c").await.status, 429, "the slot is taken");
    drop(raw);
    // Released when weir sees the client gone, long before the node's 10 s.
    until("a request is admitted after the client left", async || {
        get(addr, None, "/c").await.status == 200
    })
    .await;
}

/// Redis counts: shared the same way, released afterwards (the key goes
/// when the count is back to 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_with_policy_redis_counts_in_redis_and_releases() {
    let redis = RedisServer::start().await;
    let b = Backend::start("b").await;
    b.set_delay(800);
    let conf = conn_conf(json!({"policy": "redis", "redis_host": "127.0.0.1",
                                "redis_port": redis.port()}));
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
            "routes": [route("lc-redis", "/*", &b.node(), "limit-conn", conf)],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    let first = tokio::spawn(async move { get(addr, None, "/c").await });
    let in_flight = b.in_flight.clone();
    until("the first request reaches the node", async || {
        in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let keys = redis.command("KEYS plugin-limit-conn:*").await;
    assert!(
        keys.starts_with("*1\r\n") && keys.contains("route:lc-redis"),
        "{keys:?}"
    );
    let refused = get(addr, None, "/c").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(first.await.expect("first").status, 200);
    until("the count is released in Redis", async || {
        redis
            .command("KEYS plugin-limit-conn:*")
            .await
            .starts_with("*0\r\n")
    })
    .await;
    b.set_delay(0);
    assert_eq!(get(addr, None, "/c").await.status, 200);
    assert_eq!(get(addr, None, "/c").await.status, 200, "released again");
}

/// Redis killed: both plugins answer APISIX's bare 500 (weir's body for
/// it), or let requests through with `allow_degradation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_gives_500_or_passes_with_degradation() {
    let mut redis = RedisServer::start().await;
    let b = Backend::start("b").await;
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1",
                       "redis_port": redis.port(), "redis_timeout": 500});
    let with = |base: Value, extra: Value| {
        let mut c = base;
        merge(&mut c, store.clone());
        merge(&mut c, extra);
        c
    };
    let req_conf = json!({"rate": 1000, "burst": 1000, "nodelay": true, "key": "remote_addr"});
    let conn_base =
        json!({"conn": 100, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"});
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
            "routes": [
                route("req-strict", "/req-strict", &b.node(), "limit-req", with(req_conf.clone(), json!({}))),
                route("req-lenient", "/req-lenient", &b.node(), "limit-req",
                      with(req_conf, json!({"allow_degradation": true}))),
                route("conn-strict", "/conn-strict", &b.node(), "limit-conn", with(conn_base.clone(), json!({}))),
                route("conn-lenient", "/conn-lenient", &b.node(), "limit-conn",
                      with(conn_base, json!({"allow_degradation": true}))),
            ],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    for path in [
        "/req-strict",
        "/req-lenient",
        "/conn-strict",
        "/conn-lenient",
    ] {
        assert_eq!(get(addr, None, path).await.status, 200, "{path} before");
    }
    redis.kill();
    for _ in 0..5 {
        for path in ["/req-strict", "/conn-strict"] {
            let started = Instant::now();
            let r = get(addr, None, path).await;
            assert_eq!(r.status, 500, "{path} with Redis gone: {}", r.body);
            assert_eq!(r.body, r#"{"error_msg":"Internal Server Error"}"#, "{path}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{path}: {:?}",
                started.elapsed()
            );
        }
        for path in ["/req-lenient", "/conn-lenient"] {
            assert_eq!(get(addr, None, path).await.status, 200, "{path} degraded");
        }
    }
}

/// conn 1, burst 1: a second request while one is in flight is admitted
/// but waits `default_conn_delay` (0.5 s) before it reaches the node (not
/// for the first to finish: that takes 3 s); a third, beyond conn + burst,
/// is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_delays_requests_within_the_burst() {
    let b = Backend::start("b").await;
    b.set_delay(3000);
    let conf = conn_conf(json!({"burst": 1, "default_conn_delay": 0.5,
                                "only_use_default_delay": true}));
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
            "routes": [route("lc-delay", "/*", &b.node(), "limit-conn", conf)],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    let first = tokio::spawn(async move { get(addr, None, "/d").await });
    let in_flight = b.in_flight.clone();
    until("the first request reaches the node", async || {
        in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let sent = Instant::now();
    let second = tokio::spawn(async move { get(addr, None, "/d").await });
    until("the second request reaches the node", async || {
        in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "not delayed: {waited:?}"
    );
    assert!(
        !first.is_finished(),
        "the second waited for the first to finish, not for its delay"
    );
    let third = get(addr, None, "/d").await;
    assert_eq!(third.status, 429, "beyond conn + burst: {}", third.body);
    assert_eq!(first.await.expect("first").status, 200);
    assert_eq!(second.await.expect("second").status, 200);
}
