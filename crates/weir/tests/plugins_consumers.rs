//! Consumers over real sockets: credentials (APISIX 3.7+), the
//! `consumer-restriction` plugin, and how plugins configured in several
//! places combine — Consumer > Consumer Group > Route > Plugin Config >
//! Service, with global rules running in addition (docs/configuration.md,
//! "How plugins combine"). Every case runs over HTTP/1.1 (fast path, TLS,
//! general path) and HTTP/2 (h2c, h2 over TLS): see `plugin_kit/mod.rs`.
//!
//! Precedence is made visible with `ip-restriction` refusing every client,
//! each level with its own `message` (and `response_code`), so the body says
//! which level's configuration ran; and with `request-id`, each level with
//! its own `header_name`, so the node's head says which ran.

mod common;
mod plugin_kit;

use common::wire::echo_target;
use plugin_kit::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

async fn each_credential_authenticates_as_its_consumer_with_its_id(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({
            "routes": [{"id": "cred", "uri": "/*", "upstream": upstream(&b.node()),
                        "plugins": {"key-auth": {}}}],
            "consumers": [
                {"username": "jack", "labels": {"custom_id": "c-1"},
                 "plugins": {"key-auth": {"key": "jack-main-key"}}},
                // APISIX's standalone form: credentials as consumers items.
                {"id": "jack/credentials/laptop",
                 "plugins": {"key-auth": {"key": "jack-laptop-key"}}},
                {"id": "jack/credentials/phone",
                 "plugins": {"key-auth": {"key": "jack-phone-key"}}},
                // A consumer with no key of its own, only credentials.
                {"username": "rose"},
                {"id": "rose/credentials/r1", "plugins": {"key-auth": {"key": "rose-r1-key"}}},
            ],
            // weir's own section, both forms.
            "credentials": [
                {"id": "tablet", "consumer": "jack",
                 "plugins": {"key-auth": {"key": "jack-tablet-key"}}},
                {"id": "rose/credentials/r2", "plugins": {"key-auth": {"key": "rose-r2-key"}}},
            ],
        }),
    )
    .await;
    let mut c = gw.client();
    for (key, user, credential, custom_id) in [
        ("jack-main-key", "jack", None, Some("c-1")),
        ("jack-laptop-key", "jack", Some("laptop"), Some("c-1")),
        ("jack-phone-key", "jack", Some("phone"), Some("c-1")),
        ("jack-tablet-key", "jack", Some("tablet"), Some("c-1")),
        ("rose-r1-key", "rose", Some("r1"), None),
        ("rose-r2-key", "rose", Some("r2"), None),
        // After a credential, the consumer's own key again: no id left over.
        ("jack-main-key", "jack", None, Some("c-1")),
    ] {
        let r = c
            .send(
                &Req::get("/c")
                    .header("apikey", key)
                    .header("x-credential-identifier", "forged"),
            )
            .await;
        assert_eq!(r.status, 200, "{t:?} {key}: {}", r.text());
        let seen = last(&b);
        assert_eq!(
            one(&seen, "x-consumer-username").as_deref(),
            Some(user),
            "{t:?} {key}"
        );
        assert_eq!(
            one(&seen, "x-credential-identifier").as_deref(),
            credential,
            "{t:?} {key}"
        );
        assert_eq!(
            one(&seen, "x-consumer-custom-id").as_deref(),
            custom_id,
            "{t:?} {key}"
        );
    }
    let r = c
        .send(&Req::get("/c").header("apikey", "jack-gone-key"))
        .await;
    assert_eq!(r.status, 401, "{t:?}: {}", r.text());
}

// ---------------------------------------------------------------------------
// consumer-restriction
// ---------------------------------------------------------------------------

fn restriction_config(node: &str) -> Value {
    let route = |id: &str, restriction: Value| {
        json!({"id": id, "uri": format!("/{id}/*"), "upstream": upstream(node),
               "plugins": {"key-auth": {}, "consumer-restriction": restriction}})
    };
    json!({
        "routes": [
            route("name-white", json!({"whitelist": ["jack"]})),
            route("name-black", json!({"blacklist": ["rose"]})),
            route("group-white", json!({"type": "consumer_group_id", "whitelist": ["gold"]})),
            route("group-black", json!({"type": "consumer_group_id", "blacklist": ["silver"],
                                        "rejected_code": 429, "rejected_msg": "silver go away"})),
            // No authentication plugin: no consumer.
            {"id": "anonymous", "uri": "/anonymous/*", "upstream": upstream(node),
             "plugins": {"consumer-restriction": {"whitelist": ["jack"]}}},
        ],
        "consumer_groups": [
            {"id": "gold", "plugins": {}},
            {"id": "silver", "plugins": {}},
        ],
        "consumers": [
            {"username": "jack", "group_id": "gold", "plugins": {"key-auth": {"key": "jack-k"}}},
            {"username": "rose", "group_id": "silver", "plugins": {"key-auth": {"key": "rose-k"}}},
            {"username": "tom", "plugins": {"key-auth": {"key": "tom-k"}}},
        ],
    })
}

async fn consumer_restriction_by_name_and_group_refuses_with_apisix_answers(t: T) {
    let b = echo_target().await;
    let gw = start(t, restriction_config(&b.node())).await;
    let mut c = gw.client();
    let forbidden = |kind: &str| message(&format!("The {kind} is forbidden."));
    let no_value = |kind: &str| {
        message(&format!(
            "The request is rejected, please check the {kind} for this request"
        ))
    };
    // (route, key, expected status, expected body when refused)
    let cases: Vec<(&str, &str, u16, String)> = vec![
        ("name-white", "jack-k", 200, String::new()),
        ("name-white", "rose-k", 403, forbidden("consumer_name")),
        ("name-black", "jack-k", 200, String::new()),
        ("name-black", "tom-k", 200, String::new()),
        ("name-black", "rose-k", 403, forbidden("consumer_name")),
        ("group-white", "jack-k", 200, String::new()),
        ("group-white", "rose-k", 403, forbidden("consumer_group_id")),
        ("group-white", "tom-k", 401, no_value("consumer_group_id")),
        ("group-black", "jack-k", 200, String::new()),
        ("group-black", "rose-k", 429, message("silver go away")),
        ("group-black", "tom-k", 401, no_value("consumer_group_id")),
    ];
    for (route, key, status, body) in cases {
        let before = b.seen().len();
        let r = c
            .send(&Req::get(&format!("/{route}/x")).header("apikey", key))
            .await;
        let what = format!("{t:?} {route} with {key}");
        if status == 200 {
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            assert_eq!(b.seen().len(), before + 1, "{what}");
        } else {
            assert_rejected(&what, &r, status, &body, None, &b, before);
        }
    }
    // No consumer at all: 401, whatever the client claims to be.
    let before = b.seen().len();
    for req in [
        Req::get("/anonymous/x"),
        Req::get("/anonymous/x").header("x-consumer-username", "jack"),
        Req::get("/anonymous/x").header("apikey", "jack-k"),
    ] {
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} no consumer ({:?})", req.headers),
            &r,
            401,
            &no_value("consumer_name"),
            None,
            &b,
            before,
        );
    }
}

// ---------------------------------------------------------------------------
// Merge precedence
// ---------------------------------------------------------------------------

/// `ip-restriction` refusing every client with `message` (and status).
fn refuse(message: &str, code: u16) -> Value {
    json!({"ip-restriction": {"blacklist": ["0.0.0.0/0", "::/0"],
                              "message": message, "response_code": code}})
}

fn precedence_config(node: &str) -> Value {
    let up = upstream(node);
    json!({
        "services": [
            {"id": "svc", "upstream": up, "plugins": refuse("service", 404)},
            {"id": "svc-rid", "upstream": up,
             "plugins": {"request-id": {"header_name": "X-Service-Id"}}},
        ],
        "plugin_configs": [
            {"id": "pc", "plugins": refuse("plugin_config", 403)},
            {"id": "pc-rid", "plugins": {"request-id": {"header_name": "X-Config-Id"}}},
        ],
        "routes": [
            // The service's plugin runs on a route that has none.
            {"id": "svc-only", "uri": "/svc-only", "service_id": "svc"},
            // Route > Service.
            {"id": "route-over-svc", "uri": "/route-over-svc", "service_id": "svc",
             "plugins": refuse("route", 403)},
            // Plugin Config > Service.
            {"id": "pc-over-svc", "uri": "/pc-over-svc", "service_id": "svc",
             "plugin_config_id": "pc"},
            // Route > Plugin Config.
            {"id": "route-over-pc", "uri": "/route-over-pc", "upstream": up,
             "plugin_config_id": "pc", "plugins": refuse("route", 404)},
            // A plugin config fills gaps: its request-id joins the route's
            // other plugins; the service's request-id is replaced by it.
            {"id": "pc-fills", "uri": "/pc-fills", "service_id": "svc-rid",
             "plugin_config_id": "pc-rid",
             "plugins": {"ip-restriction": {"whitelist": ["0.0.0.0/0", "::/0"]}}},
            // A route's own request-id beats both.
            {"id": "route-rid", "uri": "/route-rid", "service_id": "svc-rid",
             "plugin_config_id": "pc-rid",
             "plugins": {"request-id": {"header_name": "X-Route-Id"}}},
            // Consumer Group > Route, Consumer > Consumer Group.
            {"id": "consumers", "uri": "/consumers", "upstream": up,
             "plugins": {"key-auth": {}, "ip-restriction":
                 {"blacklist": ["0.0.0.0/0", "::/0"], "message": "route"}}},
            // A group's plugin the route does not have at all.
            {"id": "group-adds", "uri": "/group-adds", "upstream": up,
             "plugins": {"key-auth": {}}},
        ],
        "consumer_groups": [
            {"id": "g1", "plugins": refuse("consumer_group", 404)},
        ],
        "consumers": [
            {"username": "nora", "plugins": {"key-auth": {"key": "nora-k"}}},
            {"username": "gina", "group_id": "g1", "plugins": {"key-auth": {"key": "gina-k"}}},
            {"username": "conrad", "group_id": "g1", "plugins": {
                "key-auth": {"key": "conrad-k"},
                "ip-restriction": {"blacklist": ["0.0.0.0/0", "::/0"], "message": "consumer",
                                   "response_code": 403}}},
        ],
    })
}

async fn plugins_combine_consumer_over_group_over_route_over_plugin_config_over_service(t: T) {
    let b = echo_target().await;
    let gw = start(t, precedence_config(&b.node())).await;
    let mut c = gw.client();
    for (what, req, status, winner) in [
        ("service alone", Req::get("/svc-only"), 404, "service"),
        (
            "route over service",
            Req::get("/route-over-svc"),
            403,
            "route",
        ),
        (
            "plugin config over service",
            Req::get("/pc-over-svc"),
            403,
            "plugin_config",
        ),
        (
            "route over plugin config",
            Req::get("/route-over-pc"),
            404,
            "route",
        ),
        (
            "route, for a consumer without group or plugins",
            Req::get("/consumers").header("apikey", "nora-k"),
            403,
            "route",
        ),
        (
            "consumer group over route",
            Req::get("/consumers").header("apikey", "gina-k"),
            404,
            "consumer_group",
        ),
        (
            "consumer over consumer group",
            Req::get("/consumers").header("apikey", "conrad-k"),
            403,
            "consumer",
        ),
        (
            "a group's plugin on a route without it",
            Req::get("/group-adds").header("apikey", "gina-k"),
            404,
            "consumer_group",
        ),
        (
            "a consumer's plugin on a route without it",
            Req::get("/group-adds").header("apikey", "conrad-k"),
            403,
            "consumer",
        ),
    ] {
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} {what}"),
            &r,
            status,
            &message(winner),
            None,
            &b,
            0,
        );
    }

    // Without a group or plugins of its own, a consumer gets the route's
    // plugins only.
    let r = c
        .send(&Req::get("/group-adds").header("apikey", "nora-k"))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());

    for (path, present, absent) in [
        ("/pc-fills", "x-config-id", ["x-service-id", "x-route-id"]),
        ("/route-rid", "x-route-id", ["x-service-id", "x-config-id"]),
    ] {
        let r = c.send(&Req::get(path)).await;
        assert_eq!(r.status, 200, "{t:?} {path}: {}", r.text());
        let seen = last(&b);
        assert!(
            one(&seen, present).is_some_and(|v| !v.is_empty()),
            "{t:?} {path}: the node must get {present}: {:?}",
            seen.head.headers
        );
        for a in absent {
            assert_eq!(
                one(&seen, a),
                None,
                "{t:?} {path}: {a} must not be set (that configuration is overridden)"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Global rules
// ---------------------------------------------------------------------------

fn global_config(node: &str) -> Value {
    json!({
        "global_rules": [
            {"id": "g", "plugins": {"request-id": {"header_name": "X-Global-Id"}}},
            {"id": "block", "plugins": {"ip-restriction": {
                "blacklist": ["192.0.2.1"], "message": "global"}}},
        ],
        "routes": [
            {"id": "with-plugins", "uri": "/with-plugins", "upstream": upstream(node),
             "plugins": {"request-id": {"header_name": "X-Route-Id"}}},
            {"id": "without-plugins", "uri": "/without-plugins", "upstream": upstream(node)},
        ],
    })
}

async fn global_rules_run_in_addition_to_the_routes_plugins(t: T) {
    let b = echo_target().await;
    let gw = start(t, global_config(&b.node())).await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/with-plugins")).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    for name in ["x-global-id", "x-route-id"] {
        assert!(
            one(&seen, name).is_some_and(|v| !v.is_empty()),
            "{t:?}: the node must get {name} (global rule and route both ran): {:?}",
            seen.head.headers
        );
    }
    assert!(
        r.header("x-global-id").is_some(),
        "{t:?}: the global request-id answers with its id too: {:?}",
        r.headers
    );
}

async fn global_rules_run_on_a_route_without_plugins(t: T) {
    let b = echo_target().await;
    let gw = start(t, global_config(&b.node())).await;
    let mut c = gw.client();
    let r = c.send(&Req::get("/without-plugins")).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert!(
        one(&seen, "x-global-id").is_some_and(|v| !v.is_empty()),
        "{t:?}: the global rule's request-id must run on a route without plugins: {:?}",
        seen.head.headers
    );
    assert!(r.header("x-global-id").is_some(), "{t:?}: {:?}", r.headers);
}

on_every_transport!(
    each_credential_authenticates_as_its_consumer_with_its_id,
    consumer_restriction_by_name_and_group_refuses_with_apisix_answers,
    plugins_combine_consumer_over_group_over_route_over_plugin_config_over_service,
    global_rules_run_in_addition_to_the_routes_plugins,
    global_rules_run_on_a_route_without_plugins,
);
