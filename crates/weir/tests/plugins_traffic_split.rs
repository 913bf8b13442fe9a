//! `traffic-split` over real sockets: canary by weight (20/80 over 2,000
//! requests), by header and by cookie, to an inline upstream, to an item of
//! `upstreams` and to the route's own; every case on the three HTTP/1.1
//! transports and HTTP/2 (see `plugin_kit/mod.rs`).

mod common;
mod plugin_kit;

use common::wire::RawBackend;
use plugin_kit::*;
use serde_json::{json, Value};

/// A node that answers with its own name, so the client sees who served.
async fn named(name: &'static str) -> RawBackend {
    common::wire::RawBackend::start(move |_| {
        common::wire::Answer::Send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                name.len()
            )
            .into_bytes(),
        )
    })
    .await
}

fn split_route(stable: &RawBackend, split: Value) -> Value {
    json!({"id": "ts", "uri": "/*", "upstream": upstream(&stable.node()),
           "plugins": {"traffic-split": split}})
}

async fn by_weight_twenty_to_eighty(t: T) {
    let (stable, canary) = (named("stable").await, named("canary").await);
    let gw = start(
        t,
        json!({"routes": [split_route(&stable, json!({"rules": [{"weighted_upstreams": [
            {"upstream": {"nodes": {canary.node(): 1}}, "weight": 20},
            {"weight": 80},
        ]}]}))]}),
    )
    .await;
    let mut c = gw.client();
    let mut to_canary = 0;
    for _ in 0..2000 {
        let r = c.send(&Req::get("/w")).await;
        assert_eq!(r.status, 200, "{t:?}");
        match r.text().as_str() {
            "canary" => to_canary += 1,
            "stable" => {}
            other => panic!("{t:?}: served by {other:?}"),
        }
    }
    // 20% of 2,000 = 400, within ±3 percentage points (±60).
    assert!(
        (340..=460).contains(&to_canary),
        "{t:?}: {to_canary} of 2000"
    );
}

async fn by_header_and_by_cookie(t: T) {
    let (stable, canary, beta) = (
        named("stable").await,
        named("canary").await,
        named("beta").await,
    );
    let gw = start(
        t,
        json!({
            "upstreams": [{"id": "beta-pool", "nodes": {beta.node(): 1}}],
            "routes": [split_route(&stable, json!({"rules": [
                {"match": [{"vars": [["http_x_canary", "==", "1"]]}],
                 "weighted_upstreams": [{"upstream": {"nodes": {canary.node(): 1}}}]},
                {"match": [{"vars": [["cookie_group", "==", "beta"]]},
                           {"vars": [["arg_group", "==", "beta"]]}],
                 "weighted_upstreams": [{"upstream_id": "beta-pool"}]},
            ]}))],
        }),
    )
    .await;
    let mut c = gw.client();
    for (req, want) in [
        (Req::get("/h"), "stable"),
        (Req::get("/h").header("x-canary", "1"), "canary"),
        (Req::get("/h").header("x-canary", "0"), "stable"),
        (Req::get("/h").header("cookie", "a=1; group=beta"), "beta"),
        (Req::get("/h?group=beta"), "beta"),
        (Req::get("/h").header("cookie", "group=alpha"), "stable"),
        // The first matching rule wins.
        (
            Req::get("/h")
                .header("x-canary", "1")
                .header("cookie", "group=beta"),
            "canary",
        ),
    ] {
        let r = c.send(&req).await;
        assert_eq!((r.status, r.text().as_str()), (200, want), "{t:?}: {req:?}");
    }
}

on_every_transport!(by_weight_twenty_to_eighty, by_header_and_by_cookie);

/// The canary's upstream keeps its own settings: `pass_host: rewrite`
/// sends its `upstream_host`, the route's upstream passes the client's Host.
#[tokio::test]
async fn a_chosen_upstream_uses_its_own_host_policy() {
    let (stable, canary) = (
        common::wire::echo_target().await,
        common::wire::echo_target().await,
    );
    let gw = start(
        T::Plain,
        json!({"routes": [split_route(&stable, json!({"rules": [
            {"match": [{"vars": [["http_x_canary", "==", "1"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": {canary.node(): 1},
                 "pass_host": "rewrite", "upstream_host": "canary.internal"}}]}]}))]}),
    )
    .await;
    let mut c = gw.client();
    c.send(&Req::get("/p").header("x-canary", "1")).await;
    c.send(&Req::get("/p")).await;
    assert_eq!(
        one(&last(&canary), "host").as_deref(),
        Some("canary.internal")
    );
    assert_eq!(stable.seen().len(), 1);
    assert_ne!(
        one(&last(&stable), "host").as_deref(),
        Some("canary.internal")
    );
}
