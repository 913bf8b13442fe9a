//! Upstream fields added for APISIX compatibility: node priority and
//! metadata, IPv6 list nodes, every hash_on kind, client certificates,
//! labels, and the health-check schema.

mod common;

use common::{errors, has, load, none_at};
use weir_config::{HashKind, HashOn, Nodes, StaticNode};

const CERT: &str = include_str!("../../../examples/certs/example-only.crt.pem");
const KEY: &str = include_str!("../../../examples/certs/example-only.key.pem");

#[test]
fn node_priority_and_metadata_are_kept() {
    let c = load(
        r#"
upstreams:
  - id: u
    nodes:
      - {host: 10.0.0.1, port: 80, weight: 1}
      - {host: 10.0.0.2, port: 80, weight: 1, priority: -1, metadata: {zone: b}}
      - {host: "[::1]", port: 8080, weight: 2, priority: 5}
      - {host: "::2", weight: 1}
"#,
    );
    let up = &c.upstreams[0];
    let Some(Nodes::List(list)) = &up.nodes else {
        panic!("list form")
    };
    assert_eq!(list[0].priority, 0, "default 0");
    assert_eq!(list[1].priority, -1);
    assert_eq!(list[2].host, "::1", "brackets removed at load");
    assert_eq!(
        up.static_nodes(),
        [
            StaticNode {
                host: "10.0.0.1".into(),
                port: 80,
                weight: 1,
                priority: 0,
                metadata: None
            },
            StaticNode {
                host: "10.0.0.2".into(),
                port: 80,
                weight: 1,
                priority: -1,
                metadata: Some(serde_json::json!({"zone": "b"})),
            },
            StaticNode {
                host: "::1".into(),
                port: 8080,
                weight: 2,
                priority: 5,
                metadata: None
            },
            StaticNode {
                host: "::2".into(),
                port: 80,
                weight: 1,
                priority: 0,
                metadata: None
            },
        ]
    );
    let map = load(r#"upstreams: [{id: m, scheme: https, nodes: {"[::1]": 3, "a.test:8443": 1}}]"#);
    let nodes = map.upstreams[0].static_nodes();
    assert_eq!(
        (nodes[0].host.as_str(), nodes[0].port, nodes[0].priority),
        ("::1", 443, 0)
    );
    assert_eq!((nodes[1].host.as_str(), nodes[1].port), ("a.test", 8443));

    let e = errors(
        r#"
upstreams:
  - id: u
    nodes:
      - {host: "[::1", port: 80}
      - {host: 10.0.0.1, priority: high}
      - {host: 10.0.0.1, metadata: [a]}
      - {host: "[nothost]"}
"#,
    );
    has(
        &e,
        "upstreams[0].nodes[1].priority",
        "invalid type: string \"high\", expected i64",
    );
    let e = errors(
        r#"
upstreams:
  - id: u
    nodes:
      - {host: "[::1", port: 80}
      - {host: 10.0.0.1, metadata: [a]}
      - {host: "[nothost]"}
"#,
    );
    has(
        &e,
        "upstreams[0].nodes[0].host",
        "invalid character in host name",
    );
    has(&e, "upstreams[0].nodes[1].metadata", "must be an object");
    has(
        &e,
        "upstreams[0].nodes[2].host",
        "invalid character in host name",
    );
}

#[test]
fn every_apisix_hash_on_kind() {
    let c = load(
        r#"
upstreams:
  - {id: a, type: chash, hash_on: consumer, nodes: {"10.0.0.1:80": 1}}
  - {id: b, type: chash, hash_on: vars_combinations, key: "$host$remote_addr", nodes: {"10.0.0.1:80": 1}}
  - {id: c, type: chash, hash_on: vars, key: query_string, nodes: {"10.0.0.1:80": 1}}
  - {id: d, type: chash, hash_on: header, key: X-User_Id, nodes: {"10.0.0.1:80": 1}}
  - {id: e, type: chash, key: server_addr, nodes: {"10.0.0.1:80": 1}}
"#,
    );
    let kinds: Vec<(HashKind, HashOn)> = c
        .upstreams
        .iter()
        .map(|u| (u.hash_on_kind, u.hash_on))
        .collect();
    assert_eq!(
        kinds,
        [
            (HashKind::Consumer, HashOn::Vars),
            (HashKind::VarsCombinations, HashOn::Vars),
            (HashKind::Vars, HashOn::Vars),
            (HashKind::Header, HashOn::Header),
            (HashKind::Vars, HashOn::Vars),
        ],
        "hash_on keeps the engine's three kinds; hash_on_kind has APISIX's"
    );
    let t = c.upstreams[1].vars_combinations().unwrap();
    assert_eq!(t.var_names().collect::<Vec<_>>(), ["host", "remote_addr"]);
    let shown = serde_json::to_value(&c.upstreams[0]).unwrap();
    assert_eq!(
        shown["hash_on"], "consumer",
        "serialized under APISIX's name"
    );

    let e = errors(
        r#"
upstreams:
  - {id: a, type: chash, hash_on: vars_combinations, key: "no vars", nodes: {"10.0.0.1:80": 1}}
  - {id: b, type: chash, hash_on: vars, key: mqtt_nope, nodes: {"10.0.0.1:80": 1}}
  - {id: c, type: chash, hash_on: cookie, key: "a b", nodes: {"10.0.0.1:80": 1}}
  - {id: d, type: chash, hash_on: header, nodes: {"10.0.0.1:80": 1}}
  - {id: e, type: chash, hash_on: route, key: x, nodes: {"10.0.0.1:80": 1}}
"#,
    );
    has(&e, "upstreams[0].key", "names no variable");
    has(&e, "upstreams[1].key", "is not a supported variable");
    has(
        &e,
        "upstreams[2].key",
        "a header or cookie name has only letters",
    );
    has(&e, "upstreams[3].key", "type chash needs a key");
    has(&e, "upstreams[4].hash_on", "unknown variant `route`");
}

#[test]
fn client_certificates_are_checked_and_the_key_never_shown() {
    let yaml = format!(
        "upstreams:\n  - id: m\n    scheme: https\n    nodes: {{\"10.0.0.1:443\": 1}}\n    tls:\n      verify: true\n      client_cert: {cert:?}\n      client_key: {key:?}\n",
        cert = CERT,
        key = KEY
    );
    let c = load(&yaml);
    let tls = c.upstreams[0].tls.as_ref().unwrap();
    assert!(tls
        .client_cert
        .as_deref()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let key_body = KEY.lines().nth(1).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains(key_body), "Debug shows the private key");
    assert!(
        debug.contains("client_key: Some(\"<redacted>\")"),
        "{debug}"
    );
    let json = serde_json::to_string(&c).unwrap();
    assert!(
        !json.contains(key_body) && !json.contains("client_key"),
        "serialized key"
    );

    let secret =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
    let broken = format!(
        "upstreams:\n  - id: m\n    scheme: https\n    nodes: {{\"10.0.0.1:443\": 1}}\n    tls: {{client_cert: \"not pem\", client_key: {:?}}}\n  - id: m2\n    scheme: https\n    nodes: {{\"10.0.0.1:443\": 1}}\n    tls: {{client_cert: {:?}}}\n  - id: m3\n    scheme: https\n    nodes: {{\"10.0.0.1:443\": 1}}\n    tls: {{client_key: \"-----BEGIN RSA PRIVATE KEY-----\\nAAAA-secret-AAAA\\n\"}}\n",
        secret.replace("PRIVATE KEY-----\nc2", "PRIVATE KEY-----\n!!"),
        CERT
    );
    let e = errors(&broken);
    has(&e, "upstreams[0].tls.client_cert", "no PEM certificate");
    has(&e, "upstreams[0].tls.client_key", "not a PEM private key");
    has(
        &e,
        "upstreams[1].tls.client_key",
        "required with client_cert",
    );
    has(
        &e,
        "upstreams[2].tls.client_cert",
        "required with client_key",
    );
    has(&e, "upstreams[2].tls.client_key", "not a PEM private key");
    let all = e.join("\n");
    assert!(
        !all.contains("secret") && !all.contains("!!"),
        "a key leaked into: {all}"
    );
}

#[test]
fn keepalive_pool_labels_and_tls_verify() {
    let c = load(
        r#"
upstreams:
  - id: u
    labels: {env: prod}
    scheme: https
    tls: {verify: false}
    keepalive_pool: {size: 8, idle_timeout: 5, requests: 100}
    nodes: {"10.0.0.1:443": 1}
"#,
    );
    let up = &c.upstreams[0];
    assert_eq!(up.labels["env"], "prod");
    assert!(!up.tls.as_ref().unwrap().verify);
    assert_eq!(up.keepalive_pool.unwrap().size, 8);
    let e = errors(
        r#"
upstreams:
  - {id: u, keepalive_pool: {size: 0, requests: 0}, nodes: {"10.0.0.1:80": 1}}
  - {id: v, tls: {verify: true}, nodes: {"10.0.0.1:80": 1}}
"#,
    );
    has(&e, "upstreams[0].keepalive_pool.size", "must be at least 1");
    has(
        &e,
        "upstreams[0].keepalive_pool.requests",
        "must be at least 1",
    );
    has(&e, "upstreams[1].tls", "only used with scheme: https");
}

#[test]
fn health_checks_take_apisix_fields_and_refuse_passive_alone() {
    let c = load(
        r#"
upstreams:
  - id: u
    nodes: {"10.0.0.1:80": 1}
    checks:
      active:
        concurrency: 4
        http_method: HEAD
        http_req_body: "ping"
        req_headers: ["User-Agent: weir-check", "X-Probe: 1"]
      passive: {unhealthy: {http_failures: 3}}
"#,
    );
    let a = c.upstreams[0]
        .checks
        .as_ref()
        .unwrap()
        .active
        .as_ref()
        .unwrap();
    assert_eq!(
        (
            a.concurrency,
            a.http_method.as_str(),
            a.http_req_body.as_str()
        ),
        (4, "HEAD", "ping")
    );
    assert_eq!(a.req_headers.as_ref().unwrap().len(), 2);
    let defaults = load(r#"upstreams: [{id: u, nodes: {"10.0.0.1:80": 1}, checks: {active: {}}}]"#);
    let d = defaults.upstreams[0]
        .checks
        .as_ref()
        .unwrap()
        .active
        .as_ref()
        .unwrap();
    assert_eq!((d.concurrency, d.http_method.as_str()), (10, "GET"));

    let e = errors(
        r#"
upstreams:
  - {id: a, nodes: {"10.0.0.1:80": 1}, checks: {passive: {unhealthy: {http_failures: 2}}}}
  - {id: b, nodes: {"10.0.0.1:80": 1}, checks: {active: {concurrency: 0, http_method: FETCH, req_headers: ["no colon"]}}}
  - {id: c, nodes: {"10.0.0.1:80": 1}, checks: {active: {req_headers: []}}}
  - {id: d, nodes: {"10.0.0.1:80": 1}, checks: {}}
"#,
    );
    has(
        &e,
        "upstreams[0].checks.passive",
        "passive checks need active checks too (as in APISIX)",
    );
    has(
        &e,
        "upstreams[1].checks.active.concurrency",
        "must be at least 1",
    );
    has(
        &e,
        "upstreams[1].checks.active.http_method",
        "unknown method \"FETCH\"",
    );
    has(
        &e,
        "upstreams[1].checks.active.req_headers[0]",
        "is not a header line",
    );
    has(
        &e,
        "upstreams[2].checks.active.req_headers",
        "must not be empty",
    );
    has(&e, "upstreams[3].checks", "give active");
    none_at(&e, "upstreams[0].checks.active");
}

#[test]
fn apisix_fields_weir_lacks_say_so() {
    let e = errors(
        r#"
upstreams:
  - {id: a, scheme: https, tls: {client_cert_id: 1}, nodes: {"10.0.0.1:443": 1}}
  - {id: b, discovery_type: kubernetes, service_name: a/b:c, discovery_args: {namespace_id: x}}
  - {id: c, create_time: 1700000000, nodes: {"10.0.0.1:80": 1}}
"#,
    );
    has(
        &e,
        "upstreams[0].tls.client_cert_id",
        "not supported by weir; give tls.client_cert and tls.client_key",
    );
    has(
        &e,
        "upstreams[1].discovery_args",
        "discovery_args (Nacos) is not supported by weir",
    );
    has(&e, "upstreams[2].create_time", "set by APISIX's Admin API");
}

#[test]
fn a_field_removed_for_its_error_is_not_reported_again_as_missing() {
    let e = errors(
        r#"upstreams: [{id: a, timeout: {connect: fast, send: 1, read: 1}, nodes: {"10.0.0.1:80": 1}}]"#,
    );
    assert_eq!(
        e,
        ["upstreams[0].timeout.connect: invalid type: string \"fast\", expected f64"],
        "no \"missing field `connect`\" echo"
    );
}

#[test]
fn an_inline_ssl_key_is_not_shown_by_debug_either() {
    let c = load(&format!(
        "ssls:\n  - {{snis: [a.test], cert: {CERT:?}, key: {KEY:?}}}\n"
    ));
    let shown = format!("{:?}", c.ssls[0]);
    assert!(!shown.contains(KEY.lines().nth(1).unwrap()), "{shown}");
    assert!(shown.contains("key: Some(\"<redacted>\")"), "{shown}");
}
