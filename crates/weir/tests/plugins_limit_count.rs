//! `limit-count` over real sockets: the count, the refusal and the quota
//! headers on every transport; local counts exact across worker threads
//! and kept across an unchanged reload; Redis counts shared by two weir
//! processes; Redis killed under traffic and back (a real `redis-server`,
//! see `common/redis_server.rs`).

mod common;
mod plugin_kit;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::{RedisCluster, RedisServer};
use common::wire::echo_target;
use common::{get, Backend, WeirProcess};
use plugin_kit::*;
use serde_json::{json, Value};

fn route(id: &str, uri: &str, node: &str, limit: Value) -> Value {
    json!({"id": id, "uri": uri, "upstream": upstream(node), "plugins": {"limit-count": limit}})
}

fn quota(r: &Resp) -> (Option<&str>, Option<&str>, Option<u64>) {
    (
        r.header("x-ratelimit-limit"),
        r.header("x-ratelimit-remaining"),
        r.header("x-ratelimit-reset").and_then(|v| v.parse().ok()),
    )
}

/// Three requests a minute, then APISIX's configured refusal; the quota
/// headers count down on the admitted ones and show 0 on the refusal.
async fn the_count_then_the_refusal_with_quota_headers(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({"routes": [route("lc", "/*", &b.node(), json!({
            "count": 3, "time_window": 60, "rejected_code": 429, "rejected_msg": "slow down"}))]}),
    )
    .await;
    let mut c = gw.client();
    for left in ["2", "1", "0"] {
        let r = c.send(&Req::get("/x")).await;
        assert_eq!(r.status, 200, "{t:?}: {}", r.text());
        let (limit, remaining, reset) = quota(&r);
        assert_eq!((limit, remaining), (Some("3"), Some(left)), "{t:?}");
        assert!(
            reset.is_some_and(|s| (1..=60).contains(&s)),
            "{t:?}: {reset:?}"
        );
    }
    let r = c.send(&Req::get("/x")).await;
    assert_eq!(r.status, 429, "{t:?}");
    assert_eq!(r.text(), r#"{"error_msg":"slow down"}"#, "{t:?}");
    assert_eq!(quota(&r).0, Some("3"), "{t:?}");
    assert_eq!(quota(&r).1, Some("0"), "{t:?}");
    assert_eq!(b.seen().len(), 3, "{t:?}: the node saw the refused request");
}

/// The same through Redis: the count lives in the server (its key is
/// there), and the refusal is APISIX's default 503.
async fn with_policy_redis_the_count_lives_in_redis(t: T) {
    let redis = RedisServer::start().await;
    let b = echo_target().await;
    let gw = start(
        t,
        json!({"routes": [route("lcr", "/*", &b.node(), json!({
            "count": 2, "time_window": 60, "policy": "redis",
            "redis_host": "127.0.0.1", "redis_port": redis.port()}))]}),
    )
    .await;
    let mut c = gw.client();
    for left in ["1", "0"] {
        let r = c.send(&Req::get("/y")).await;
        assert_eq!(r.status, 200, "{t:?}: {}", r.text());
        assert_eq!(quota(&r).1, Some(left), "{t:?}");
    }
    assert_eq!(c.send(&Req::get("/y")).await.status, 503, "{t:?}");
    let keys = redis.command("KEYS plugin-limit-count:*").await;
    assert!(
        keys.starts_with("*1\r\n") && keys.contains("route:lcr"),
        "{t:?}: {keys:?}"
    );
}

on_every_transport!(
    the_count_then_the_refusal_with_quota_headers,
    with_policy_redis_the_count_lives_in_redis,
);

/// APISIX's `redis_ssl`: the count lives in a Redis reached over TLS only
/// (its TLS port; nothing on it speaks plain RESP). With `redis_ssl_verify`
/// off (APISIX's default) the server's self-signed certificate is taken;
/// with it on, the certificate is checked against the system's roots and
/// refused: APISIX's store error, 500 "failed to limit count".
#[tokio::test]
async fn with_redis_ssl_the_count_goes_over_tls() {
    let cert = common::hostile::TestCert::new();
    let redis = RedisServer::start_tls(&cert.cert_file, &cert.key_file).await;
    let b = echo_target().await;
    let tls = |verify: bool| {
        json!({"count": 2, "time_window": 60, "policy": "redis",
            "redis_host": "127.0.0.1", "redis_port": redis.tls_port(),
            "redis_ssl": true, "redis_ssl_verify": verify})
    };
    let gw = start(
        T::Plain,
        json!({"routes": [
            route("lctls", "/tls/*", &b.node(), tls(false)),
            route("lcverify", "/verify/*", &b.node(), tls(true)),
        ]}),
    )
    .await;
    let mut c = gw.client();
    for left in ["1", "0"] {
        let r = c.send(&Req::get("/tls/x")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(quota(&r).1, Some(left));
    }
    assert_eq!(c.send(&Req::get("/tls/x")).await.status, 503);
    let keys = redis.command("KEYS plugin-limit-count:*").await;
    assert!(keys.contains("route:lctls"), "{keys:?}");
    let r = c.send(&Req::get("/verify/x")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), r#"{"error_msg":"failed to limit count"}"#);
}

/// Concurrent clients on a gateway with two worker threads (connections
/// spread over both): exactly `count` requests are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_counts_are_exact_across_worker_threads() {
    let b = Backend::start("b").await;
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}], "workers": 2},
            "routes": [route("exact", "/*", &b.node(), json!({
                "count": 100, "time_window": 60, "key_type": "constant", "key": "all"}))],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (ok, refused) = (ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                match get(addr, None, "/n").await.status.as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    503 => refused.fetch_add(1, Ordering::Relaxed),
                    s => panic!("unexpected status {s}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(
        (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)),
        (100, 200)
    );
    assert_eq!(b.hits(), 100);
}

/// A reload that leaves the plugin unchanged keeps its counts; one that
/// changes it starts from fresh counts.
#[tokio::test]
async fn an_unchanged_reload_keeps_the_counts_a_changed_one_starts_afresh() {
    let b = Backend::start("b").await;
    let doc = |count: u64, extra_route: bool| {
        let mut routes = vec![route(
            "keep",
            "/keep",
            &b.node(),
            json!({"count": count, "time_window": 60}),
        )];
        if extra_route {
            routes.push(json!({"id": "other", "uri": "/other", "upstream": upstream(&b.node())}));
        }
        common::config(
            &json!({"gateway": {"listeners": [{"address": "127.0.0.1:0"}]}, "routes": routes})
                .to_string(),
        )
    };
    let gw = common::gateway(
        &json!({"gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
                "routes": [route("keep", "/keep", &b.node(), json!({"count": 2, "time_window": 60}))]})
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    let statuses = |n: usize| async move {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(get(addr, None, "/keep").await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses(3).await, [200, 200, 503]);
    gw.core.reload(doc(2, true)).await.expect("reload");
    assert_eq!(
        statuses(1).await,
        [503],
        "an unchanged plugin lost its counts"
    );
    gw.core.reload(doc(3, true)).await.expect("reload");
    assert_eq!(
        statuses(4).await,
        [200, 200, 200, 503],
        "a changed plugin kept old counts"
    );
}

/// `rules`: the first rule whose key the request has applies, with its own
/// header prefix (APISIX's `X-<header_prefix>-RateLimit-*`).
#[tokio::test]
async fn rules_pick_the_first_key_the_request_has() {
    let b = echo_target().await;
    let gw = start(
        T::Plain,
        json!({"routes": [route("rules", "/*", &b.node(), json!({"rules": [
            {"count": 1, "time_window": 60, "key": "$http_x_user", "header_prefix": "user"},
            {"count": 2, "time_window": 60, "key": "$remote_addr"},
        ]}))]}),
    )
    .await;
    let mut c = gw.client();
    let jack = Req::get("/r").header("x-user", "jack");
    let r = c.send(&jack).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-user-ratelimit-limit"),
        Some("1"),
        "{:?}",
        r.headers
    );
    assert_eq!(c.send(&jack).await.status, 503, "jack's rule allows one");
    let anon = c.send(&Req::get("/r")).await;
    assert_eq!(anon.status, 200, "the address rule still has room");
    assert_eq!(
        anon.header("x-2-ratelimit-limit"),
        Some("2"),
        "{:?}",
        anon.headers
    );
}

fn process_yaml(node: &str, redis: &RedisServer) -> String {
    format!(
        r#"gateway:
  listeners: [{{address: "127.0.0.1:0"}}]
  control: {{address: "127.0.0.1:0"}}
  access_log: {{enabled: false}}
routes:
  - id: shared
    uri: /*
    upstream: {{nodes: {{"{node}": 1}}}}
    plugins:
      limit-count: {{count: 20, time_window: 60, key_type: constant, key: all,
                     policy: redis, redis_host: 127.0.0.1, redis_port: {port}}}
"#,
        port = redis.port()
    )
}

/// Two weir processes (two replicas) on one Redis enforce one limit: 60
/// concurrent requests spread over both, exactly 20 admitted (the window is
/// a minute, so no request falls on a window's edge).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_weir_processes_share_one_limit_in_redis() {
    let redis = RedisServer::start().await;
    let b = Backend::start("b").await;
    let one = WeirProcess::start(&process_yaml(&b.node(), &redis));
    let two = WeirProcess::start(&process_yaml(&b.node(), &redis));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let addr = if i % 2 == 0 { one.proxy } else { two.proxy };
        let (ok, refused) = (ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            match get(addr, None, "/s").await.status.as_u16() {
                200 => ok.fetch_add(1, Ordering::Relaxed),
                503 => refused.fetch_add(1, Ordering::Relaxed),
                s => panic!("unexpected status {s}"),
            };
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(
        (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)),
        (20, 40),
        "each replica counting alone would admit up to 40"
    );
    assert_eq!(b.hits(), 20);
}

/// Redis killed under traffic: the redis route answers APISIX's 500 at once
/// (no request waits out a timeout per attempt), the degraded route lets
/// requests through uncounted, the route without limits never fails; the
/// failures show in the metrics; when Redis is back, counting resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_traffic_then_back() {
    let mut redis = RedisServer::start().await;
    let b = Backend::start("b").await;
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1",
                       "redis_port": redis.port(), "redis_timeout": 500});
    let limit = |extra: Value| {
        let mut l = json!({"count": 1000, "time_window": 60});
        plugin_kit::merge(&mut l, store.clone());
        plugin_kit::merge(&mut l, extra);
        l
    };
    let gw = common::gateway(
        &json!({
            "gateway": {"listeners": [{"address": "127.0.0.1:0"}],
                        "control": {"address": "127.0.0.1:0"}},
            "routes": [
                route("strict", "/strict", &b.node(), limit(json!({}))),
                route("lenient", "/lenient", &b.node(), limit(json!({"allow_degradation": true}))),
                {"id": "free", "uri": "/free", "upstream": upstream(&b.node())},
            ],
        })
        .to_string(),
    )
    .await;
    let addr = gw.proxy_addr();
    for path in ["/strict", "/lenient", "/free"] {
        assert_eq!(get(addr, None, path).await.status, 200, "{path} before");
    }

    redis.kill();
    let mut strict_500 = 0;
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        let r = get(addr, None, "/strict").await;
        assert_eq!(r.status, 500, "strict route with Redis gone");
        assert_eq!(r.body, r#"{"error_msg":"failed to limit count"}"#);
        // Bounded by the store's timeout (500 ms), with room for a loaded
        // machine; most answers come at once (backing off).
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        strict_500 += 1;
        assert_eq!(
            get(addr, None, "/lenient").await.status,
            200,
            "degraded route"
        );
        assert_eq!(
            get(addr, None, "/free").await.status,
            200,
            "route without limits"
        );
    }
    assert_eq!(strict_500, 20);
    let control = gw.control_addr().expect("control listener");
    let metrics = get(control, None, "/metrics").await.body;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_limit_store_failures_total{plugin=\"limit-count\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 20, "failures counted: {failures}\n{metrics}");

    redis.restart().await;
    // Back within the backoff (at most 5 s) plus margin.
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if get(addr, None, "/strict").await.status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "the strict route never recovered");
    let keys = redis.command("KEYS plugin-limit-count:*").await;
    assert!(
        keys.contains("route:strict"),
        "counting resumed in Redis: {keys:?}"
    );
}

/// `policy: redis-cluster` on a real three-node cluster: the count is
/// shared (two gateways, exactly `count` admitted), and keys live in the
/// cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_policy_redis_cluster_two_gateways_share_one_count() {
    let cluster = RedisCluster::start().await;
    let b = Backend::start("b").await;
    let doc = json!({
        "gateway": {"listeners": [{"address": "127.0.0.1:0"}]},
        "routes": [route("clustered", "/*", &b.node(), json!({
            "count": 10, "time_window": 60, "key_type": "constant", "key": "all",
            "policy": "redis-cluster", "redis_cluster_name": "test",
            "redis_cluster_nodes": cluster.node_list()}))],
    })
    .to_string();
    let (one, two) = (common::gateway(&doc).await, common::gateway(&doc).await);
    let mut ok = 0;
    for i in 0..30 {
        let addr = if i % 2 == 0 {
            one.proxy_addr()
        } else {
            two.proxy_addr()
        };
        match get(addr, None, "/c").await.status.as_u16() {
            200 => ok += 1,
            503 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 10);
    let keys = cluster.keys("plugin-limit-count:*").await;
    assert!(keys.contains("route:clustered"), "{keys:?}");
}
