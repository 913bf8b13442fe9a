//! Services, consumers, credentials, consumer groups, plugin configs, global
//! rules, plugin metadata: loading, ids, duplicates and references.

mod common;

use common::{errors, has, load, none_at, NODE};
use serde_json::json;

#[test]
fn every_section_loads_with_apisix_field_names() {
    let c = load(&format!(
        r#"
services:
  - id: 1
    name: shop
    desc: the shop
    labels: {{team: web}}
    plugins: {{cors: {{}}}}
    upstream: {NODE}
    hosts: [shop.example.com]
    enable_websocket: true
consumer_groups:
  - {{id: gold, name: Gold, desc: paying, labels: {{tier: "1"}}, plugins: {{limit-count: {{count: 100}}}}}}
consumers:
  - username: jack
    desc: Jack
    labels: {{custom_id: "42"}}
    group_id: gold
    plugins: {{key-auth: {{key: jack-key}}}}
credentials:
  - {{id: c1, consumer: jack, name: laptop, plugins: {{basic-auth: {{username: jack, password: pw}}}}}}
plugin_configs:
  - {{id: pc1, name: common, desc: shared, labels: {{a: b}}, plugins: {{request-id: {{}}}}}}
global_rules:
  - {{id: 1, plugins: {{ip-restriction: {{blacklist: [10.9.9.9]}}}}}}
plugin_metadata:
  - {{id: http-logger, log_format: {{host: $host}}}}
routes:
  - {{uri: /, service_id: 1, plugin_config_id: pc1}}
"#
    ));
    assert_eq!(c.services[0].id.0, "1", "integer ids become strings");
    assert_eq!(
        c.services[0].hosts.as_deref(),
        Some(&["shop.example.com".to_owned()][..])
    );
    assert_eq!(c.services[0].enable_websocket, Some(true));
    assert_eq!(c.consumers[0].group_id.as_ref().unwrap().0, "gold");
    assert_eq!(c.consumers[0].labels["custom_id"], "42");
    assert_eq!(c.credentials[0].consumer, "jack");
    assert_eq!(c.credentials[0].auth_plugin().unwrap().0, "basic-auth");
    assert_eq!(
        c.consumer_groups[0].plugins["limit-count"],
        json!({"count": 100})
    );
    assert_eq!(c.plugin_configs[0].id.0, "pc1");
    assert_eq!(c.global_rules[0].id.0, "1");
    assert_eq!(
        c.plugin_metadata["http-logger"],
        json!({"log_format": {"host": "$host"}})
    );
    assert_eq!(c.routes[0].service_id.as_ref().unwrap().0, "1");
}

#[test]
fn apisix_standalone_credentials_in_consumers_are_split_out() {
    let c = load(
        r#"
consumers:
  - username: rose
  - username: jack
    plugins: {limit-count: {count: 2}}
  - id: jack/credentials/key-1
    plugins: {key-auth: {key: k1}}
  - id: jack/credentials/jwt.2
    name: mobile
    plugins: {jwt-auth: {key: jack-jwt, secret: s}}
credentials:
  - {id: rose/credentials/k, plugins: {key-auth: {key: k2}}}
  - {id: k3, consumer: rose, plugins: {hmac-auth: {key_id: a, secret_key: b}}}
"#,
    );
    assert_eq!(c.consumers.len(), 2, "credentials are not consumers");
    let creds: Vec<(String, String, String)> = c
        .credentials
        .iter()
        .map(|c| {
            (
                c.consumer.clone(),
                c.id.0.clone(),
                c.auth_plugin().unwrap().0.to_owned(),
            )
        })
        .collect();
    assert_eq!(
        creds,
        [
            ("jack".into(), "key-1".into(), "key-auth".into()),
            ("jack".into(), "jwt.2".into(), "jwt-auth".into()),
            ("rose".into(), "k".into(), "key-auth".into()),
            ("rose".into(), "k3".into(), "hmac-auth".into()),
        ]
    );
    assert_eq!(c.credentials[1].name.as_deref(), Some("mobile"));
}

#[test]
fn credentials_hold_exactly_one_auth_plugin_of_an_existing_consumer() {
    let e = errors(
        r#"
consumers:
  - username: jack
  - id: jack/credentials/two
    plugins: {key-auth: {key: a}, basic-auth: {username: u, password: p}}
  - id: ghost/credentials/c
    plugins: {key-auth: {key: b}}
  - id: jack/credentials/none
  - id: jack/credentials/rl
    plugins: {limit-count: {count: 1}}
credentials:
  - {id: c9, plugins: {key-auth: {key: c}}}
  - {id: c8, consumer: nobody, plugins: {key-auth: {key: d}}}
  - {id: jack/credentials/x, consumer: rose, plugins: {key-auth: {key: e}}}
  - {id: "bad id", consumer: jack, plugins: {key-auth: {key: f}}}
"#,
    );
    has(
        &e,
        "consumers[1].plugins",
        "exactly one auth plugin (key-auth, basic-auth, jwt-auth, hmac-auth), found 2",
    );
    has(
        &e,
        "consumers[2].id",
        "belongs to consumer \"ghost\", which does not exist",
    );
    has(&e, "consumers[3].plugins", "found 0");
    has(&e, "consumers[4].plugins.limit-count", "not an auth plugin");
    has(
        &e,
        "credentials[0].consumer",
        "required: the username of the consumer",
    );
    has(
        &e,
        "credentials[1].consumer",
        "belongs to consumer \"nobody\"",
    );
    has(
        &e,
        "credentials[2].consumer",
        "\"rose\" differs from the consumer named by the id (\"jack\")",
    );
    has(&e, "credentials[3].id", "an id is 1 to 64 letters");
}

#[test]
fn consumer_usernames_and_labels_follow_apisix() {
    let e = errors(
        r#"
consumers:
  - {username: "jack smith"}
  - {username: ok_name-1, labels: {env: "has space"}}
  - {username: x, labels: {n: 5}}
  - {id: 1}
"#,
    );
    has(
        &e,
        "consumers[0].username",
        "a username is 1 to 256 letters, digits, _ and -",
    );
    has(
        &e,
        "consumers[1].labels.env",
        "a label value is 1 to 256 characters without spaces",
    );
    has(&e, "consumers[2].labels.n", "invalid type: integer");
    has(&e, "consumers[3].id", "unknown field `id`");
    has(&e, "consumers[3]", "missing field `username`");
}

#[test]
fn duplicate_ids_name_both_elements_for_every_kind() {
    let e = errors(&format!(
        r#"
upstreams:
  - {{id: u, nodes: {{"10.0.0.1:80": 1}}}}
  - {{id: u, nodes: {{"10.0.0.2:80": 1}}}}
services:
  - {{id: s, upstream_id: u}}
  - {{id: s, upstream_id: u}}
consumer_groups:
  - {{id: 7, plugins: {{}}}}
  - {{id: "7", plugins: {{}}}}
plugin_configs:
  - {{id: p, plugins: {{}}}}
  - {{id: p, plugins: {{}}}}
global_rules:
  - {{id: g, plugins: {{}}}}
  - {{id: g, plugins: {{}}}}
consumers:
  - {{username: jack}}
  - {{username: jack}}
  - {{id: jack/credentials/c, plugins: {{key-auth: {{key: a}}}}}}
credentials:
  - {{id: c, consumer: jack, plugins: {{key-auth: {{key: b}}}}}}
ssls:
  - {{id: t, snis: [a.test], cert: x, key: y}}
  - {{id: t, snis: [b.test], cert: x, key: y}}
routes:
  - {{id: r, uri: /a, upstream: {NODE}}}
  - {{id: r, uri: /b, upstream: {NODE}}}
"#
    ));
    has(
        &e,
        "upstreams[1].id",
        r#"duplicate upstream id "u" (also upstreams[0].id)"#,
    );
    has(
        &e,
        "services[1].id",
        r#"duplicate service id "s" (also services[0].id)"#,
    );
    has(
        &e,
        "consumer_groups[1].id",
        r#"duplicate consumer_group id "7" (also consumer_groups[0].id)"#,
    );
    has(&e, "plugin_configs[1].id", "(also plugin_configs[0].id)");
    has(&e, "global_rules[1].id", "(also global_rules[0].id)");
    has(
        &e,
        "consumers[1].username",
        r#"duplicate consumer username "jack" (also consumers[0].username)"#,
    );
    has(
        &e,
        "credentials[0].id",
        r#"duplicate credential "jack/credentials/c" (also consumers[2].id)"#,
    );
    has(&e, "ssls[1].id", "(also ssls[0].id)");
    has(
        &e,
        "routes[1].id",
        r#"duplicate route id "r" (also routes[0].id)"#,
    );
}

#[test]
fn missing_references_name_the_field() {
    let e = errors(
        r#"
upstreams:
  - {id: u, nodes: {"10.0.0.1:80": 1}}
services:
  - {id: s, upstream_id: nope}
consumers:
  - {username: jack, group_id: gone}
routes:
  - {uri: /a, service_id: missing}
  - {uri: /b, plugin_config_id: missing, upstream_id: u}
  - {uri: /c, upstream_id: lost}
"#,
    );
    has(
        &e,
        "services[0].upstream_id",
        r#"no upstream with id "nope""#,
    );
    has(
        &e,
        "consumers[0].group_id",
        r#"no consumer_group with id "gone""#,
    );
    has(
        &e,
        "routes[0].service_id",
        r#"no service with id "missing""#,
    );
    has(
        &e,
        "routes[1].plugin_config_id",
        r#"no plugin_config with id "missing""#,
    );
    has(&e, "routes[2].upstream_id", r#"no upstream with id "lost""#);
    none_at(&e, "routes[0].upstream");
}

#[test]
fn ids_follow_apisix_pattern_or_positive_integers() {
    let e = errors(&format!(
        r#"
services:
  - {{id: 0}}
  - {{id: -3}}
  - {{id: "a/b"}}
  - {{id: "{long}"}}
  - {{id: ok.id_1-2}}
routes:
  - {{id: "white space", uri: /, upstream: {NODE}}}
"#,
        long = "x".repeat(65)
    ));
    has(&e, "services[0].id", "an integer id must be at least 1");
    has(&e, "services[1].id", "an integer id must be at least 1");
    has(
        &e,
        "services[2].id",
        r#""a/b": an id is 1 to 64 letters, digits, -, _ and ."#,
    );
    has(&e, "services[3].id", "an id is 1 to 64");
    none_at(&e, "services[4]");
    has(&e, "routes[0].id", "an id is 1 to 64");
}

#[test]
fn several_unknown_fields_of_one_object_are_all_named() {
    let e = errors(&format!(
        r#"
routes:
  - uri: /a
    urii: /b
    hots: [a.test]
    upstream: {{nodes: {{"10.0.0.1:80": 1}}, tyep: chash, retires: 2}}
    plugins: {{}}
  - uri: /ok
    upstream: {NODE}
"#
    ));
    for field in ["urii", "hots"] {
        has(
            &e,
            &format!("routes[0].{field}"),
            &format!("unknown field `{field}`"),
        );
    }
    has(&e, "routes[0].upstream.tyep", "unknown field `tyep`");
    has(&e, "routes[0].upstream.retires", "unknown field `retires`");
    assert_eq!(e.len(), 4, "only the decoding errors: {e:#?}");
}

#[test]
fn references_and_duplicates_are_checked_despite_parse_errors_elsewhere() {
    let e = errors(
        r#"
upstreams:
  - {id: a, nodes: {"10.0.0.1:80": 1}, bogus: 1}
  - {id: b, nodes: "not nodes"}
  - {id: a, nodes: {"10.0.0.3:80": 1}}
  - 42
services:
  - {id: s, upstream_id: b, surprise: true}
routes:
  - {id: r1, uri: /a, upstream_id: a, typo: 1}
  - {id: r1, uri: /b, upstream_id: missing}
  - {uri: /c, service_id: s}
  - {uri: /d, service_id: nope, extra: 1}
"#,
    );
    has(&e, "upstreams[0].bogus", "unknown field");
    has(&e, "upstreams[1].nodes", "a map of");
    has(
        &e,
        "upstreams[2].id",
        r#"duplicate upstream id "a" (also upstreams[0].id)"#,
    );
    has(&e, "upstreams[3]", "invalid type");
    has(
        &e,
        "routes[1].id",
        r#"duplicate route id "r1" (also routes[0].id)"#,
    );
    has(
        &e,
        "routes[1].upstream_id",
        r#"no upstream with id "missing""#,
    );
    has(&e, "routes[3].service_id", r#"no service with id "nope""#);
    none_at(&e, "routes[0].upstream_id");
    none_at(&e, "services[0].upstream_id");
    none_at(&e, "routes[2]");
}

#[test]
fn an_element_that_does_not_decode_still_counts_for_ids() {
    let e = errors(
        r#"
upstreams:
  - {id: u1, nodes: {"10.0.0.1:80": 1}, type: fastest}
  - {id: u1, nodes: {"10.0.0.2:80": 1}}
routes:
  - {uri: /, upstream_id: u1}
"#,
    );
    has(&e, "upstreams[0].type", "unknown variant `fastest`");
    has(
        &e,
        "upstreams[1].id",
        "duplicate upstream id \"u1\" (also upstreams[0].id)",
    );
    none_at(&e, "routes[0]");
}

#[test]
fn plugin_metadata_accepts_the_list_and_map_forms() {
    let c = load("plugin_metadata: {http-logger: {log_format: {a: b}}}\n");
    assert_eq!(
        c.plugin_metadata["http-logger"],
        json!({"log_format": {"a": "b"}})
    );
    let e = errors(
        r#"
plugin_metadata:
  - {id: a, x: 1}
  - {id: a, x: 2}
  - {x: 3}
  - 5
"#,
    );
    has(
        &e,
        "plugin_metadata[1].id",
        r#"duplicate plugin_metadata "a" (also plugin_metadata[0].id)"#,
    );
    has(&e, "plugin_metadata[2]", "id: required (the plugin name)");
    has(&e, "plugin_metadata[3]", "must be an object");
    let e = errors("plugin_metadata: {a: 1}\n");
    has(&e, "plugin_metadata.a", "must be an object");
}

#[test]
fn plugins_go_through_the_plugin_check_with_their_site() {
    use std::sync::Mutex;
    use weir_config::{FieldError, LoadOptions, PluginCheck, PluginSite};

    struct Recorder(Mutex<Vec<(PluginSite, String, String)>>);
    impl PluginCheck for Recorder {
        fn check(
            &self,
            site: PluginSite,
            name: &str,
            _: &serde_json::Value,
            at: &str,
            errors: &mut Vec<FieldError>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push((site, name.to_owned(), at.to_owned()));
            if name == "bad" {
                errors.push(FieldError::new(
                    format!("{at}.field"),
                    "rejected by the catalogue",
                ));
            }
        }
    }
    let rec = Recorder(Mutex::new(Vec::new()));
    let yaml = r#"
routes: [{uri: /, plugins: {echo: {}}}]
services: [{id: s, plugins: {a: {}}}]
plugin_configs: [{id: p, plugins: {b: {}}}]
global_rules: [{id: g, plugins: {c: {}}}]
consumer_groups: [{id: cg, plugins: {d: {}}}]
consumers: [{username: u, plugins: {bad: {}}}, {id: u/credentials/1, plugins: {key-auth: {}}}]
plugin_metadata: {f: {}}
"#;
    let env = |_: &str| None;
    let err = weir_config::load_str_with(
        yaml,
        "t.yaml",
        &LoadOptions {
            plugins: &rec,
            env: &env,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("consumers[0].plugins.bad.field: rejected by the catalogue"),
        "{err}"
    );
    let mut seen = rec.0.into_inner().unwrap();
    seen.sort_by(|a, b| a.2.cmp(&b.2));
    let sites: Vec<(PluginSite, &str)> = seen.iter().map(|(s, _, at)| (*s, at.as_str())).collect();
    assert_eq!(
        sites,
        [
            (PluginSite::ConsumerGroup, "consumer_groups[0].plugins.d"),
            (PluginSite::Consumer, "consumers[0].plugins.bad"),
            (PluginSite::Credential, "consumers[1].plugins.key-auth"),
            (PluginSite::GlobalRule, "global_rules[0].plugins.c"),
            (PluginSite::PluginConfig, "plugin_configs[0].plugins.b"),
            (PluginSite::Metadata, "plugin_metadata.f"),
            (PluginSite::Route, "routes[0].plugins.echo"),
            (PluginSite::Service, "services[0].plugins.a"),
        ]
    );
}

#[test]
fn the_default_loader_leaves_plugin_contents_to_the_catalogue() {
    // Names and fields are the engine's to check (it compiles with the
    // catalogue); the loader only requires objects.
    weir_config::load_str(
        "consumers: [{username: u, plugins: {key-auth: {key: k}}}]\nroutes: [{uri: /, plugins: {echo: {status: 7}}}]\n",
        "t.yaml",
    )
    .unwrap();
    let err = weir_config::load_str("global_rules: [{id: 1, plugins: {cors: 5}}]\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("global_rules[0].plugins.cors: plugin configuration must be an object"),
        "{err}"
    );
    let e = errors("routes: [{uri: /, plugins: {cors: 5}}]\n");
    has(
        &e,
        "routes[0].plugins.cors",
        "plugin configuration must be an object",
    );
}

#[test]
fn consumer_and_credential_debug_output_hides_plugin_configuration() {
    let c = load(
        "consumers: [{username: jack, plugins: {key-auth: {key: top-secret-key}}}, {id: jack/credentials/c, plugins: {basic-auth: {username: j, password: hunter2}}}]\n",
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("top-secret-key") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(
        shown.contains("key-auth") && shown.contains("basic-auth"),
        "{shown}"
    );
}

#[test]
fn validate_config_checks_a_configuration_built_in_code() {
    let mut c = load(
        "upstreams: [{id: u, nodes: {\"10.0.0.1:80\": 1}}]\nroutes: [{uri: /, upstream_id: u}]\n",
    );
    weir_config::validate_config(&c, &weir_config::AnyPlugin).unwrap();
    c.routes[0].upstream_id = Some(weir_config::Id("v".into()));
    c.routes.push(c.routes[0].clone());
    let e = weir_config::validate_config(&c, &weir_config::AnyPlugin).unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
    has(&lines, "routes[0].upstream_id", "no upstream with id \"v\"");
    has(&lines, "routes[1].upstream_id", "no upstream with id \"v\"");
}
