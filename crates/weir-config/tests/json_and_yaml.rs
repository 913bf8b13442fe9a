//! The same configuration reads the same from YAML and JSON.

#[test]
fn json_documents_load_like_yaml() {
    let yaml = r#"
routes:
  - id: 1
    uri: /api/*
    upstream: {type: chash, hash_on: header, key: x-user, nodes: {"10.0.0.1:80": 2}}
"#;
    let json = r#"{"routes": [{"id": 1, "uri": "/api/*",
        "upstream": {"type": "chash", "hash_on": "header", "key": "x-user", "nodes": {"10.0.0.1:80": 2}}}]}"#;
    let a = weir_config::load_str(yaml, "a.yaml").unwrap();
    let b = weir_config::load_str(json, "b.json").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.routes[0].id.as_ref().unwrap().0, "1");
}

#[test]
fn json_errors_name_the_field_too() {
    let err = weir_config::load_str(r#"{"routes": [{"uri": "/x", "upstrem": {}}]}"#, "c.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("routes[0].upstrem: unknown field"), "{err}");
    let err = weir_config::load_str(r#"{"routes": [}"#, "d.json")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("d.json: not valid YAML/JSON"), "{err}");
}

#[test]
fn empty_document_is_the_defaults() {
    let c = weir_config::load_str("", "empty.yaml").unwrap();
    assert_eq!(c.gateway.listeners[0].address, "127.0.0.1:9080");
    assert!(c.routes.is_empty());
}

#[test]
fn busy_polling_is_off_by_default_and_bounded() {
    let c = weir_config::load_str("", "empty.yaml").unwrap();
    assert_eq!(c.gateway.busy_poll_us, 0);
    let c = weir_config::load_str("gateway: {busy_poll_us: 50}", "bp.yaml").unwrap();
    assert_eq!(c.gateway.busy_poll_us, 50);
    let err = weir_config::load_str("gateway: {busy_poll_us: 20000}", "long.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gateway.busy_poll_us"), "{err}");
    assert!(err.contains("at most 10000"), "{err}");
    let err = weir_config::load_str("gateway: {busy_poll_us: -1}", "neg.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gateway.busy_poll_us"), "{err}");
}
