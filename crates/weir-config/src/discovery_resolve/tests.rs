use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::discovery::KubernetesDiscovery;

fn parse(yaml: &str) -> KubernetesDiscovery {
    let d: DiscoveryConfig = serde_saphyr::from_str(yaml).expect("test YAML parses");
    d.kubernetes.expect("kubernetes section")
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const IN_CLUSTER: &[(&str, &str)] = &[
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
];

fn ok(yaml: &str, env: &[(&str, &str)]) -> Vec<ResolvedCluster> {
    match resolve_with(&parse(yaml), &env_of(env)) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// The errors as `path: message` lines.
fn errs(yaml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match resolve_with(&parse(yaml), &env_of(env)) {
        Ok(_) => panic!("expected errors for {yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn has(errors: &[String], path: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "no error at {path} containing {needle:?} in {errors:#?}"
    );
}

#[test]
fn minimal_single_cluster_gets_apisix_defaults() {
    let c = ok("kubernetes: {}", IN_CLUSTER);
    assert_eq!(c.len(), 1);
    let c = &c[0];
    assert_eq!(c.id, None);
    assert_eq!(
        c.api_server,
        ApiServer::Direct {
            url: "https://10.96.0.1:443".into(),
            credentials: Credentials::TokenFile(IN_CLUSTER_TOKEN_FILE.into()),
            ca_file: Some(IN_CLUSTER_CA_FILE.into()),
        }
    );
    assert!(c.ssl_verify);
    assert_eq!(c.default_weight, 50);
    assert!(!c.watch_endpoint_slices);
    assert_eq!(c.watch_idle_timeout, Duration::from_secs(60));
    assert!(c.label_selector.is_none());
    assert!(matches!(c.namespace_filter, NamespaceFilter::All));
    // The dump shows the defaults as written, with `${...}` unexpanded.
    let service = c.config.service.clone().unwrap();
    assert_eq!(service.schema.as_deref(), Some("https"));
    assert_eq!(service.host.as_deref(), Some("${KUBERNETES_SERVICE_HOST}"));
    assert_eq!(
        service.port,
        Some(PortValue("${KUBERNETES_SERVICE_PORT}".into()))
    );
    assert_eq!(
        c.config.client.as_ref().unwrap().token_file.as_deref(),
        Some(IN_CLUSTER_TOKEN_FILE)
    );
    assert_eq!(c.config.default_weight, Some(50));
    assert_eq!(c.config.shared_size, Some(serde_json::json!("64m")));
}

#[test]
fn unset_env_var_names_field_and_variable() {
    let e = errs("kubernetes: {}", &[]);
    has(
        &e,
        "discovery.kubernetes.service.host",
        "KUBERNETES_SERVICE_HOST is not set",
    );
    has(
        &e,
        "discovery.kubernetes.service.port",
        "KUBERNETES_SERVICE_PORT is not set",
    );
    let e = errs(
        "kubernetes:\n  service: {host: a.example, port: 6443}\n  client: {token: '${MY_TOKEN}'}",
        &[],
    );
    has(
        &e,
        "discovery.kubernetes.client.token",
        "MY_TOKEN is not set",
    );
}

#[test]
fn env_vars_expand_in_host_port_and_token() {
    let c = ok(
        "kubernetes:\n  service: {schema: http, host: '${H}', port: '${P}'}\n  client: {token: 'Bearer-${T}'}",
        &[("H", "fd00::1"), ("P", "8080"), ("T", "abc")],
    );
    match &c[0].api_server {
        ApiServer::Direct {
            url, credentials, ..
        } => {
            assert_eq!(url, "http://[fd00::1]:8080");
            assert_eq!(credentials, &Credentials::Token(Secret::new("Bearer-abc")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_is_redacted_in_debug_and_dump_config() {
    let c = ok(
        "kubernetes:\n  service: {host: a.example, port: 6443}\n  client: {token: s3cr3t-value}",
        &[],
    );
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let dumped = serde_json::to_string(&c[0].config).unwrap();
    assert!(!dumped.contains("s3cr3t"), "{dumped}");
    assert!(dumped.contains(REDACTED));
}

#[test]
fn bad_schema_port_and_host() {
    let e = errs(
        "kubernetes:\n  service: {schema: ftp, host: 'a b', port: 70000}",
        &[],
    );
    has(
        &e,
        "discovery.kubernetes.service.schema",
        "must be http or https",
    );
    has(&e, "discovery.kubernetes.service.host", "not a host name");
    has(&e, "discovery.kubernetes.service.port", "not a port number");
    let e = errs("kubernetes:\n  service: {host: a, port: '0'}", &[]);
    has(&e, "discovery.kubernetes.service.port", "not a port number");
}

#[test]
fn token_and_token_file_together_are_refused() {
    let e = errs(
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x, token_file: /t}",
        &[],
    );
    has(&e, "discovery.kubernetes.client.token", "not both");
}

#[test]
fn ssl_verify_false_must_be_explicit_and_drops_the_default_ca() {
    let c = ok(
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x, ssl_verify: false}",
        &[],
    );
    assert!(!c[0].ssl_verify);
    assert!(matches!(
        &c[0].api_server,
        ApiServer::Direct { ca_file: None, .. }
    ));
    let c = ok(
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x, ca_file: /ca.pem}",
        &[],
    );
    assert!(c[0].ssl_verify);
    assert!(
        matches!(&c[0].api_server, ApiServer::Direct { ca_file: Some(p), .. } if p == Path::new("/ca.pem"))
    );
}

#[test]
fn multi_cluster_ids_are_checked() {
    let yaml = "kubernetes:
  - {id: Bad_Id, service: {host: a, port: 1}, client: {token: x}}
  - {id: one, service: {host: a, port: 1}, client: {token: x}}
  - {id: one, service: {host: b, port: 1}, client: {token: y}}
  - {service: {host: c, port: 1}, client: {token: z}}";
    let e = errs(yaml, &[]);
    has(&e, "discovery.kubernetes[0].id", "must match");
    has(
        &e,
        "discovery.kubernetes[2].id",
        "duplicate cluster id \"one\"",
    );
    has(&e, "discovery.kubernetes[3].id", "required");
    has(
        &errs("kubernetes: []", &[]),
        "discovery.kubernetes",
        "must not be empty",
    );
}

#[test]
fn multi_cluster_fills_no_service_or_client_defaults() {
    let e = errs("kubernetes:\n  - {id: a}", IN_CLUSTER);
    has(&e, "discovery.kubernetes[0].service", "required");
    let e = errs(
        "kubernetes:\n  - {id: a, service: {host: h, port: 1}}",
        IN_CLUSTER,
    );
    has(
        &e,
        "discovery.kubernetes[0].client",
        "token or token_file is required",
    );
    let c = ok(
        "kubernetes:\n  - {id: a, service: {host: h, port: 1}, client: {token_file: /t}}",
        &[],
    );
    assert_eq!(c[0].id.as_deref(), Some("a"));
    assert!(
        matches!(&c[0].api_server, ApiServer::Direct { ca_file: None, url, .. } if url == "https://h:1")
    );
    assert_eq!(c[0].default_weight, 50);
}

#[test]
fn namespace_selector_kinds() {
    let base =
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x}\n  namespace_selector:";
    let e = errs(&format!("{base} {{equal: a, not_equal: b}}"), &[]);
    has(&e, "discovery.kubernetes.namespace_selector", "only one of");
    let e = errs(&format!("{base} {{match: ['(']}}"), &[]);
    has(
        &e,
        "discovery.kubernetes.namespace_selector.match[0]",
        "invalid regex",
    );
    let e = errs(&format!("{base} {{not_match: []}}"), &[]);
    has(
        &e,
        "discovery.kubernetes.namespace_selector.not_match",
        "at least one",
    );
    let e = errs(&format!("{base} {{equal: 'Not/A/Ns'}}"), &[]);
    has(
        &e,
        "discovery.kubernetes.namespace_selector.equal",
        "not a namespace",
    );

    let c = ok(
        &format!("{base} {{match: [default, '^my-[a-z]+$', 'shop']}}"),
        &[],
    );
    let f = &c[0].namespace_filter;
    assert!(f.accepts("default") && f.accepts("my-app") && f.accepts("shop"));
    // Whole-name match: "shop" does not accept "shop-canary".
    assert!(!f.accepts("shop-canary") && !f.accepts("my-1"));
    let c = ok(&format!("{base} {{not_match: ['kube-.*']}}"), &[]);
    assert!(!c[0].namespace_filter.accepts("kube-system"));
    assert!(c[0].namespace_filter.accepts("default"));
}

#[test]
fn label_selector_is_checked_and_unquoted() {
    let base =
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x}\n  label_selector:";
    let c = ok(&format!("{base} 'first=\"a\",second=\"b\"'"), &[]);
    assert_eq!(c[0].label_selector.as_deref(), Some("first=a,second=b"));
    let c = ok(
        &format!("{base} 'app in (a, b),!canary,tier!=db,example.com/x==y'"),
        &[],
    );
    assert_eq!(
        c[0].label_selector.as_deref(),
        Some("app in (a,b),!canary,tier!=db,example.com/x==y")
    );
    let e = errs(&format!("{base} 'app=(x'"), &[]);
    has(&e, "discovery.kubernetes.label_selector", "");
    let e = errs(&format!("{base} 'a b c'"), &[]);
    has(
        &e,
        "discovery.kubernetes.label_selector",
        "unknown operator",
    );
    let e = errs(&format!("{base} 'a=b,,c=d'"), &[]);
    has(
        &e,
        "discovery.kubernetes.label_selector",
        "empty requirement",
    );
}

#[test]
fn weight_and_idle_timeout() {
    let base = "kubernetes:\n  service: {host: a, port: 1}\n  client: {token: x}";
    let c = ok(
        &format!("{base}\n  default_weight: 0\n  watch_idle_timeout: 0.5"),
        &[],
    );
    assert_eq!(c[0].default_weight, 0);
    assert_eq!(c[0].watch_idle_timeout, Duration::from_millis(500));
    let e = errs(&format!("{base}\n  watch_idle_timeout: 0"), &[]);
    has(&e, "discovery.kubernetes.watch_idle_timeout", "> 0");
    // A negative weight does not even parse into the model.
    assert!(
        serde_saphyr::from_str::<DiscoveryConfig>(&format!("{base}\n  default_weight: -1"))
            .is_err()
    );
}

#[test]
fn kubeconfig_explicit_or_from_env_out_of_cluster() {
    let c = ok(
        "kubernetes:\n  client: {kubeconfig: '${HOME}/.kube/config'}",
        &[("HOME", "/home/u")],
    );
    assert_eq!(
        c[0].api_server,
        ApiServer::Kubeconfig("/home/u/.kube/config".into())
    );
    let c = ok("kubernetes: {}", &[("KUBECONFIG", "/k1:/k2")]);
    assert_eq!(c[0].api_server, ApiServer::Kubeconfig("/k1".into()));
    // In cluster, the service env wins over $KUBECONFIG.
    let mut env = IN_CLUSTER.to_vec();
    env.push(("KUBECONFIG", "/k1"));
    assert!(matches!(
        ok("kubernetes: {}", &env)[0].api_server,
        ApiServer::Direct { .. }
    ));
    let e = errs(
        "kubernetes:\n  service: {host: a, port: 1}\n  client: {kubeconfig: /k}",
        &[],
    );
    has(&e, "discovery.kubernetes.client.kubeconfig", "not both");
}

#[test]
fn service_names_follow_the_mode() {
    let single = parse("kubernetes: {}");
    let multi = parse("kubernetes:\n  - {id: c1, service: {host: a, port: 1}, client: {token: x}}");
    assert!(check_service_name(&single, "shop/cart:http").is_ok());
    assert!(check_service_name(&single, "shop/cart:8080").is_ok());
    assert!(check_service_name(&single, "c1/shop/cart:http").is_err());
    assert!(check_service_name(&single, "shop/cart").is_err());
    assert!(check_service_name(&single, "shop/:http").is_err());
    assert!(check_service_name(&multi, "c1/shop/cart:http").is_ok());
    assert!(check_service_name(&multi, "shop/cart:http").is_err());
    let e = check_service_name(&multi, "c2/shop/cart:http").unwrap_err();
    assert!(e.contains("unknown cluster id \"c2\""), "{e}");
    assert_eq!(
        parse_service_name("c1/shop/cart:http", true),
        Ok(ServiceRef {
            cluster: Some("c1".into()),
            namespace: "shop".into(),
            name: "cart".into(),
            port: "http".into()
        })
    );
}

#[test]
fn expand_env_rejects_bad_syntax() {
    let env = env_of(&[("A", "1")]);
    assert_eq!(expand_env("x${A}y${A}", &env), Ok("x1y1".into()));
    assert!(expand_env("${A", &env)
        .unwrap_err()
        .contains("unterminated"));
    assert!(expand_env("${1A}", &env)
        .unwrap_err()
        .contains("invalid variable"));
    assert_eq!(expand_env("no vars", &env), Ok("no vars".into()));
}

#[test]
fn validate_reports_through_the_document_loader() {
    let text = "discovery:\n  kubernetes:\n    - id: UPPER\n      service: {host: a, port: 1}\n      client: {token: x}\n";
    let err = crate::load_str(text, "t.yaml").unwrap_err().to_string();
    assert!(err.contains("discovery.kubernetes[0].id"), "{err}");
}

#[test]
fn apisix_service_ssl_verify_turns_verification_off_or_on() {
    let off = ok(
        "kubernetes: {service: {host: 10.0.0.1, port: 6443, ssl_verify: false}, client: {token: t}}",
        &[],
    );
    assert!(!off[0].ssl_verify, "APISIX's service.ssl_verify: false");
    assert_eq!(
        off[0].api_server,
        ApiServer::Direct {
            url: "https://10.0.0.1:6443".into(),
            credentials: Credentials::Token(Secret::new("t")),
            ca_file: None,
        },
        "no in-cluster CA default when not verifying"
    );
    let on = ok(
        "kubernetes: {service: {host: 10.0.0.1, port: 6443, ssl_verify: true}, client: {token: t}}",
        &[],
    );
    assert!(on[0].ssl_verify);
    let unset = ok(
        "kubernetes: {service: {host: 10.0.0.1, port: 6443}, client: {token: t}}",
        &[],
    );
    assert!(
        unset[0].ssl_verify,
        "weir verifies unless told otherwise (APISIX does not)"
    );
    let multi = ok(
        "kubernetes: [{id: a, service: {host: h, port: 1, ssl_verify: false}, client: {token: t}}]",
        &[],
    );
    assert!(!multi[0].ssl_verify);
    let e = errs(
        "kubernetes: {service: {host: h, port: 1, ssl_verify: false}, client: {token: t, ssl_verify: true}}",
        &[],
    );
    has(
        &e,
        "discovery.kubernetes.client.ssl_verify",
        "contradicts service.ssl_verify: false",
    );
}
