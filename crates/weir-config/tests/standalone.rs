//! APISIX standalone files: `${{VAR}}`, the `#END` marker, the example in
//! `examples/`, merge precedence, and the file-system checks.

mod common;

use std::collections::HashMap;

use serde_json::json;
use weir_config::resolve::{merge_consumer_plugins, resolve_routes, PluginOrigin, UpstreamSource};
use weir_config::{AnyPlugin, LoadError, LoadOptions, Plugins};

fn example_path() -> String {
    format!(
        "{}/../../examples/apisix-standalone.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn with_env<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> LoadOptions<'a> {
    LoadOptions {
        plugins: &AnyPlugin,
        env,
    }
}

#[test]
fn the_apisix_example_loads_unchanged() {
    let env = |_: &str| None;
    let c = weir_config::load_file_with(&example_path(), &with_env(&env))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.services.len(), 1);
    assert_eq!(
        c.consumers
            .iter()
            .map(|c| c.username.as_str())
            .collect::<Vec<_>>(),
        ["jack", "rose"]
    );
    let creds: Vec<String> = c
        .credentials
        .iter()
        .map(|c| format!("{}/{}:{}", c.consumer, c.id, c.auth_plugin().unwrap().0))
        .collect();
    assert_eq!(
        creds,
        [
            "jack/laptop:key-auth",
            "rose/basic:basic-auth",
            "rose/mobile:jwt-auth"
        ]
    );
    assert_eq!(
        c.consumers[0].plugins["key-auth"],
        json!({"key": "jack-demo-key"}),
        "${{VAR:=default}}"
    );
    let nodes = c.upstreams[0].static_nodes();
    assert_eq!(
        nodes.iter().map(|n| n.priority).collect::<Vec<_>>(),
        [0, 0, -1]
    );
    assert_eq!(
        c.global_rules[0].plugins.keys().collect::<Vec<_>>(),
        ["ip-restriction", "real-ip"]
    );

    let routes = resolve_routes(&c).unwrap();
    let anything = &routes[0];
    assert_eq!(
        anything.hosts,
        ["api.example.com"],
        "hosts from the service"
    );
    assert_eq!(
        anything
            .plugin_origins
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        [
            ("cors", PluginOrigin::PluginConfig),
            ("key-auth", PluginOrigin::Service),
            ("request-id", PluginOrigin::Service),
        ]
    );
    assert_eq!(
        anything.upstream.as_ref().unwrap().source,
        UpstreamSource::Named("httpbin".into())
    );
    let mobile = &routes[1];
    assert_eq!(
        mobile.plugins["key-auth"],
        json!({"_meta": {"disable": true}}),
        "the route's entry wins"
    );
    assert_eq!(mobile.plugin_origins["key-auth"], PluginOrigin::Route);
    let canary = &routes[2];
    assert_eq!(
        canary.upstream.as_ref().unwrap().key,
        "route:canary",
        "the route's upstream beats the service's"
    );
    assert_eq!(canary.effective_timeout().unwrap().read, 10.0);
    assert!(canary
        .remote_addrs
        .as_ref()
        .unwrap()
        .contains("10.1.2.3".parse().unwrap()));
    assert!(canary.vars.is_some());

    let env = |name: &str| (name == "JACK_API_KEY").then(|| "from-env".to_owned());
    let c = weir_config::load_file_with(&example_path(), &with_env(&env)).unwrap();
    assert_eq!(
        c.consumers[0].plugins["key-auth"],
        json!({"key": "from-env"})
    );
}

#[test]
fn a_half_written_standalone_file_is_refused() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let cut = &text[..text.find("routes:").unwrap()];
    let env = |_: &str| None;
    let err = weir_config::load_str_with(cut, "/etc/apisix/conf/apisix.yaml", &with_env(&env))
        .unwrap_err();
    assert!(matches!(err, LoadError::Incomplete { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "/etc/apisix/conf/apisix.yaml: incomplete file (no #END marker): an APISIX standalone file ends with a line #END; nothing was applied"
    );
    // Any file with the marker follows the rule; other files are unaffected.
    assert!(weir_config::load_str("routes: []\n", "weir.yaml").is_ok());
    assert!(weir_config::load_str("routes: []\n#END\n", "weir.yaml").is_ok());
    let err = weir_config::load_str("routes: []\n#END\nupstreams: []\n", "weir.yaml").unwrap_err();
    assert!(
        err.to_string()
            .contains("line 3: text after the #END marker"),
        "{err}"
    );
    assert!(weir_config::standalone_body("a: 1\n", "apisix.yml").is_err());
    assert_eq!(
        weir_config::standalone_body("a: 1\n#END\n", "apisix.yml").unwrap(),
        "a: 1\n"
    );
    // APISIX's apisix.json needs no marker.
    assert!(weir_config::load_str(r#"{"routes": []}"#, "apisix.json").is_ok());
}

#[test]
fn environment_substitution_as_apisix_standalone() {
    let vars: HashMap<&str, &str> =
        HashMap::from([("NODE", "10.0.0.9:8080"), ("WEIGHT", "3"), ("NAME", "007")]);
    let env = move |k: &str| vars.get(k).map(|v| (*v).to_owned());
    let yaml = r#"
routes:
  - uri: /a
    name: "${{NAME}}"
    upstream:
      nodes:
        "${{NODE}}": ${{WEIGHT}}
        "${{OTHER:=10.0.0.10:80}}": ${{ OTHER_WEIGHT := 1 }}
#   ${{UNSET_IN_A_COMMENT}}
"#;
    let c = weir_config::load_str_with(yaml, "t.yaml", &with_env(&env))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.routes[0].name.as_deref(),
        Some("007"),
        "quoted: stays a string"
    );
    let mut nodes: Vec<(String, u16, u32)> = c.routes[0]
        .upstream
        .as_ref()
        .unwrap()
        .static_nodes()
        .into_iter()
        .map(|n| (n.host, n.port, n.weight))
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [("10.0.0.10".into(), 80, 1), ("10.0.0.9".into(), 8080, 3)]
    );

    let err = weir_config::load_str_with(
        "routes:\n  - uri: ${{PATH_A}}\n    upstream: {nodes: {\"${{PATH_B}}\": 1}}\n",
        "t.yaml",
        &with_env(&|_| None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 2: environment variable PATH_A is not set"),
        "{err}"
    );
    assert!(
        err.contains("line 3: environment variable PATH_B is not set"),
        "{err}"
    );

    // JSON: substituted inside strings, typed when the whole value is one.
    let json = r#"{"routes": [{"uri": "/j", "priority": "${{WEIGHT}}", "upstream": {"nodes": {"${{NODE}}": 1}}}]}"#;
    let c = weir_config::load_str_with(json, "t.json", &with_env(&env))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes[0].priority, 3);
    let err = weir_config::load_str_with(
        r#"{"routes": [{"uri": "${{NOPE}}"}]}"#,
        "t.json",
        &with_env(&|_| None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("routes[0].uri: environment variable NOPE is not set"),
        "{err}"
    );
}

#[test]
fn merge_precedence_consumer_group_route_plugin_config_service() {
    let c = common::load(
        r#"
upstreams: [{id: u, nodes: {"10.0.0.1:80": 1}}]
services:
  - id: s
    upstream_id: u
    hosts: [svc.test]
    enable_websocket: true
    plugins: {p-service: {from: service}, p-shared: {from: service}, p-all: {from: service}}
plugin_configs:
  - id: pc
    plugins: {p-config: {from: config}, p-shared: {from: config}, p-all: {from: config}}
consumer_groups:
  - id: g
    plugins: {p-group: {from: group}, p-all: {from: group}, key-auth: {key: never-merged}}
consumers:
  - username: jack
    group_id: g
    plugins: {key-auth: {key: secret}, p-consumer: {from: consumer}, p-all: {from: consumer}}
routes:
  - id: r
    uri: /
    host: route.test
    service_id: s
    plugin_config_id: pc
    plugins: {p-route: {from: route}, p-all: {from: route}, key-auth: {}}
  - {id: plain, uri: /x, service_id: s}
"#,
    );
    let routes = resolve_routes(&c).unwrap();
    let r = &routes[0];
    let from = |p: &Plugins, name: &str| p[name]["from"].as_str().unwrap_or("-").to_owned();
    assert_eq!(from(&r.plugins, "p-service"), "service");
    assert_eq!(from(&r.plugins, "p-config"), "config");
    assert_eq!(
        from(&r.plugins, "p-shared"),
        "config",
        "Plugin Config > Service"
    );
    assert_eq!(
        from(&r.plugins, "p-all"),
        "route",
        "Route > Plugin Config > Service"
    );
    assert_eq!(r.hosts, ["route.test"], "the route's host wins");
    assert!(r.enable_websocket, "from the service");
    assert_eq!(
        r.upstream.as_ref().unwrap().key,
        "u",
        "the service's upstream"
    );
    assert_eq!(routes[1].hosts, ["svc.test"]);
    assert_eq!(routes[1].id, "plain");

    let jack = &c.consumers[0];
    let group = &c.consumer_groups[0].plugins;
    let merged = merge_consumer_plugins(&r.plugins, Some(group), &jack.plugins);
    assert_eq!(
        from(&merged, "p-all"),
        "consumer",
        "Consumer > Consumer Group > Route"
    );
    assert_eq!(from(&merged, "p-group"), "group");
    assert_eq!(from(&merged, "p-consumer"), "consumer");
    assert_eq!(
        merged["key-auth"],
        json!({}),
        "auth plugins of consumers are credentials, not merged"
    );
    let without_group = merge_consumer_plugins(&r.plugins, None, &jack.plugins);
    assert!(!without_group.contains_key("p-group"));
}

#[test]
fn check_files_reports_missing_and_unwritable_files() {
    let dir = std::env::temp_dir().join(format!("weir-check-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        include_str!("../../../examples/certs/example-only.crt.pem"),
    )
    .unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let log = dir.join("access.log");
    let yaml = |log: &str, ca: &str| {
        format!(
            r#"
gateway: {{access_log: {{path: "{log}"}}}}
upstreams:
  - {{id: u, scheme: https, tls: {{ca_file: "{ca}"}}, nodes: {{"10.0.0.1:443": 1}}}}
routes:
  - {{uri: /, upstream: {{scheme: https, tls: {{ca_file: "{np}"}}, nodes: {{"10.0.0.1:443": 1}}}}}}
  - {{uri: /off, upstream: {{scheme: https, tls: {{verify: false, ca_file: /nonexistent/ignored.pem}}, nodes: {{"10.0.0.1:443": 1}}}}}}
ssls:
  - {{snis: [a.test], cert_file: /nonexistent/cert.pem, key_file: "{np}"}}
"#,
            np = not_pem.display()
        )
    };
    let c = common::load(&yaml(&log.display().to_string(), &ca.display().to_string()));
    let errors = weir_config::check_files(&c).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
    common::has(
        &lines,
        "routes[0].upstream.tls.ca_file",
        "no PEM certificate",
    );
    common::has(
        &lines,
        "ssls[0].cert_file",
        "cannot read /nonexistent/cert.pem",
    );
    common::has(&lines, "ssls[0].key_file", "not a PEM private key");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(!log.exists(), "the check leaves no file behind");

    let c = common::load(&yaml("/nonexistent-dir/access.log", "/nonexistent/ca.pem"));
    let lines: Vec<String> = weir_config::check_files(&c)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    common::has(
        &lines,
        "gateway.access_log.path",
        "directory /nonexistent-dir does not exist",
    );
    common::has(
        &lines,
        "upstreams[0].tls.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
    let c = common::load(&yaml(&dir.display().to_string(), &ca.display().to_string()));
    let lines: Vec<String> = weir_config::check_files(&c)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    common::has(&lines, "gateway.access_log.path", "is a directory");

    let ok = common::load(&format!(
        "gateway: {{access_log: {{path: \"{}\"}}}}\nupstreams: [{{id: u, scheme: https, tls: {{ca_file: \"{}\"}}, nodes: {{\"10.0.0.1:443\": 1}}}}]\n",
        log.display(),
        ca.display()
    ));
    weir_config::check_files(&ok).unwrap();
    std::fs::write(&log, "existing\n").unwrap();
    weir_config::check_files(&ok).unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "existing\n",
        "an existing log is not touched"
    );
    weir_config::check_files(&weir_config::load_default().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
