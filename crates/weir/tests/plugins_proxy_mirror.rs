//! `proxy-mirror` over real sockets: the copy the mirror receives (method,
//! path with `path` and `path_concat_mode`, query, header fields, Host,
//! body, after `proxy-rewrite`), on the three HTTP/1.1 transports and
//! HTTP/2; a mirror that never answers, and one that refuses connections,
//! cost the main requests nothing (none fails, none waits for the mirror);
//! `sample_ratio`; copies counted in `/metrics`.
//!
//! Copies travel on their own, after the main answer may have been sent, so
//! the tests wait for the mirror to have seen them (polling its record
//! against a deadline), never for a fixed time.

mod common;
mod plugin_kit;

use std::time::{Duration, Instant};

use common::get;
use common::wire::{echo_target, Answer, RawBackend, Seen, TLS_NAME};
use plugin_kit::*;
use serde_json::{json, Value};

fn with(node: &str, plugins: Value) -> Value {
    json!({"routes": [{"id": "m", "uri": "/*", "upstream": upstream(node), "plugins": plugins}]})
}

/// Waits (within 10 s) until `mirror` has seen `n` requests; returns them.
async fn seen_by(mirror: &RawBackend, n: usize, what: &str) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = mirror.seen();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the mirror saw {} of {n} copies",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn the_mirror_gets_the_upstream_request(t: T) {
    let main = echo_target().await;
    let mirror = RawBackend::start(|_| {
        Answer::Send(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec())
    })
    .await;
    let gw = start(
        t,
        with(
            &main.node(),
            json!({
                "proxy-mirror": {"host": format!("http://{}", mirror.node()), "path": "/copy", "path_concat_mode": "prefix"},
                "proxy-rewrite": {"regex_uri": ["^/api/(.*)", "/v2/$1"], "headers": {"set": {"X-Rewritten": "yes"}}}
            }),
        ),
    )
    .await;
    let mut c = gw.client();
    let r = c
        .send(
            &Req::post("/api/orders?id=7", b"{\"n\":1}")
                .header("x-client", "c1")
                .header("content-type", "application/json"),
        )
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/v2/orders?id=7"),
        "{t:?}: the main request is unaffected by the mirror's 500"
    );
    let copy = seen_by(&mirror, 1, &format!("{t:?}")).await.remove(0);
    assert_eq!(copy.method, "POST", "{t:?}");
    assert_eq!(copy.target, "/copy/v2/orders?id=7", "{t:?}");
    assert_eq!(copy.body, b"{\"n\":1}", "{t:?}");
    assert_eq!(copy.head.get("x-client"), Some("c1"), "{t:?}");
    assert_eq!(copy.head.get("x-rewritten"), Some("yes"), "{t:?}");
    assert_eq!(
        copy.head.get("content-type"),
        Some("application/json"),
        "{t:?}"
    );
    assert_eq!(
        copy.head.get("host"),
        Some(TLS_NAME),
        "{t:?}: the Host the upstream gets"
    );
    // `replace`: the path is `path`, the query kept.
    let main2 = echo_target().await;
    let gw2 = start(
        t,
        with(
            &main2.node(),
            json!({"proxy-mirror": {"host": format!("http://{}", mirror.node()), "path": "/only"}}),
        ),
    )
    .await;
    let r = gw2.send(&Req::get("/x/y?z=1")).await;
    assert_eq!(r.status, 200, "{t:?}");
    let copy = seen_by(&mirror, 2, &format!("{t:?}")).await.remove(1);
    assert_eq!(
        (copy.method.as_str(), copy.target.as_str()),
        ("GET", "/only?z=1"),
        "{t:?}"
    );
}

/// A listener that accepts and then never reads nor answers.
async fn silent_listener() -> (tokio::task::JoinHandle<()>, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (task, addr)
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

/// Sends `n` requests one after another; all must be 200. Returns the
/// slowest.
async fn sequential(gw: &Gw, n: usize, what: &str) -> Duration {
    let mut c = gw.client();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let r = c.send(&Req::post("/s", b"payload")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "{what}: request {i} failed");
    }
    slowest
}

async fn a_silent_or_dead_mirror_costs_nothing(t: T) {
    let main = echo_target().await;
    let (_silent, silent) = silent_listener().await;
    let dead = closed_port().await;
    let plain = start(t, with(&main.node(), json!({}))).await;
    let baseline = sequential(&plain, 30, &format!("{t:?} without mirror")).await;
    for mirror in [silent, dead] {
        let gw = start(
            t,
            with(
                &main.node(),
                json!({"proxy-mirror": {"host": format!("http://{mirror}")}}),
            ),
        )
        .await;
        let slowest = sequential(&gw, 30, &format!("{t:?} mirror {mirror}")).await;
        // The copies never answer (or never connect): had the main request
        // waited for them, each would take the mirror timeout (60 s).
        assert!(
            slowest < baseline + Duration::from_millis(500),
            "{t:?}: with mirror {mirror} the slowest request took {slowest:?} (without: {baseline:?})"
        );
    }
}

async fn sample_ratio_copies_a_share(t: T) {
    let main = echo_target().await;
    let mirror = RawBackend::start(|_| {
        Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec())
    })
    .await;
    let gw = start(
        t,
        with(
            &main.node(),
            json!({"proxy-mirror": {"host": format!("http://{}", mirror.node()), "sample_ratio": 0.3}}),
        ),
    )
    .await;
    let mut c = gw.client();
    for _ in 0..300 {
        assert_eq!(c.send(&Req::get("/r")).await.status, 200, "{t:?}");
    }
    // 300 x 0.3 = 90 expected (standard deviation about 8).
    seen_by(&mirror, 55, &format!("{t:?}")).await;
    let control = gw.control_addr();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = loop {
        let metrics = get(control, None, "/metrics").await.body;
        let answered = metrics
            .lines()
            .find_map(|l| l.strip_prefix("weir_mirror_requests_total{result=\"answered\"} "))
            .and_then(|n| n.parse::<usize>().ok())
            .expect("the mirror counter in /metrics");
        if answered >= mirror.seen().len() || Instant::now() > deadline {
            break answered;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let copies = mirror.seen().len();
    assert!(
        (55..=125).contains(&copies),
        "{t:?}: {copies} copies of 300 at 0.3"
    );
    assert!(
        answered >= copies,
        "{t:?}: /metrics counts {answered} answered copies, the mirror saw {copies}"
    );
}

on_every_transport!(
    the_mirror_gets_the_upstream_request,
    a_silent_or_dead_mirror_costs_nothing,
);

mod plain_only {
    #[tokio::test]
    async fn sample_ratio_copies_a_share() {
        super::sample_ratio_copies_a_share(super::T::Plain).await;
    }
}
