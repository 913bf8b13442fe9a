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

#[test]
fn client_timeouts_default_like_nginx_and_must_be_positive() {
    let c = weir_config::load_str("", "empty.yaml").unwrap();
    assert_eq!(c.gateway.http.body_timeout, 60.0);
    assert_eq!(c.gateway.http.send_timeout, 60.0);
    assert_eq!(c.gateway.http.tunnel_idle_timeout, 3600.0);
    let yaml = "gateway: {http: {body_timeout: 0.5, send_timeout: 2, tunnel_idle_timeout: 30}}";
    let c = weir_config::load_str(yaml, "set.yaml").unwrap();
    assert_eq!(c.gateway.http.body_timeout, 0.5);
    assert_eq!(c.gateway.http.send_timeout, 2.0);
    assert_eq!(c.gateway.http.tunnel_idle_timeout, 30.0);
    let yaml = "gateway: {http: {body_timeout: 0, send_timeout: -1, tunnel_idle_timeout: 0}}";
    let err = weir_config::load_str(yaml, "bad.yaml")
        .unwrap_err()
        .to_string();
    for field in [
        "gateway.http.body_timeout",
        "gateway.http.send_timeout",
        "gateway.http.tunnel_idle_timeout",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    assert!(
        err.contains("must be a positive number of seconds"),
        "{err}"
    );
}

#[test]
fn durations_beyond_a_year_are_rejected_with_their_path() {
    // 1e20 s used to pass validation and panic (Duration overflow) when the
    // configuration was applied: at start, or on a reload of a running
    // gateway.
    let yaml = r#"
gateway: {shutdown: {timeout: 1e9}}
routes:
  - id: r
    uri: /*
    upstream: {retry_timeout: 4e7, timeout: {connect: 1, send: 1, read: 1e20}, nodes: {"10.0.0.1:80": 1}}
"#;
    let err = weir_config::load_str(yaml, "huge.yaml")
        .unwrap_err()
        .to_string();
    for field in [
        "gateway.shutdown.timeout",
        "routes[0].upstream.retry_timeout",
        "routes[0].upstream.timeout.read",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    assert!(err.contains("at most 31536000 seconds"), "{err}");
    let ok = yaml
        .replace("1e9", "30")
        .replace("4e7", "5")
        .replace("1e20", "31536000");
    weir_config::load_str(&ok, "year.yaml").unwrap();
}
