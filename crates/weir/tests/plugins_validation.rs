//! Plugin and consumer configurations that must be refused, and how: every
//! error names the field path where the mistake is in the file (so a key
//! used twice names both places), an unknown plugin lists the available
//! ones, and no message quotes a secret. Checked through `weir validate`
//! (the command an operator runs), `Gateway::start` and a reload (whose
//! rejection the control API shows).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `weir validate -c` on `yaml` (killed after 30 s).
fn validate(yaml: &str) -> (Outcome, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["validate", "-c", &file])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir validate did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (
        Outcome {
            code: status.code(),
            stdout,
            stderr,
        },
        file,
    )
}

/// `weir validate` refuses `config` (exit 1), and stderr holds every
/// `expected` fragment and none of the `secrets`.
fn assert_refused(config: &Value, expected: &[&str], secrets: &[&str]) -> String {
    // JSON is YAML: the loader reads either.
    let (out, _file) = validate(&serde_json::to_string_pretty(config).unwrap());
    assert_eq!(
        out.code,
        Some(1),
        "exit code; stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    for e in expected {
        assert!(
            out.stderr.contains(e),
            "stderr lacks {e:?}; got:\n{}",
            out.stderr
        );
    }
    for s in secrets {
        assert!(
            !out.stderr.contains(s) && !out.stdout.contains(s),
            "the error quotes the secret {s:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    out.stderr
}

const NODE: &str = "127.0.0.1:1980";

fn route(plugins: Value) -> Value {
    json!({"id": "r", "uri": "/*", "upstream": {"nodes": {NODE: 1}}, "plugins": plugins})
}

#[test]
fn a_valid_consumer_configuration_validates() {
    // The baseline for the refusals below: the same shapes, no mistake.
    let config = json!({
        "routes": [route(json!({"key-auth": {}}))],
        "consumers": [
            {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}},
            {"id": "jack/credentials/c1", "plugins": {"key-auth": {"key": "jack-c1"}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}},
        ],
        "credentials": [{"id": "c2", "consumer": "rose", "plugins": {"key-auth": {"key": "rose-c2"}}}],
    });
    let (out, _) = validate(&config.to_string());
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn a_key_used_by_two_consumers_is_refused_naming_both_and_not_the_key() {
    let dup = "shared-Key-91x";
    for routes in [json!([route(json!({"key-auth": {}}))]), json!([])] {
        let config = json!({
            "routes": routes,
            "consumers": [
                {"username": "jack", "plugins": {"key-auth": {"key": dup}}},
                {"username": "rose", "plugins": {"key-auth": {"key": "rose-own"}}},
                {"username": "tom", "plugins": {"key-auth": {"key": dup}}},
            ],
        });
        assert_refused(
            &config,
            &[
                "consumers[2].plugins.key-auth.key",
                "consumers[0].plugins.key-auth.key",
            ],
            &[dup],
        );
    }
}

#[test]
fn every_auth_plugins_identifier_used_twice_is_refused_naming_both() {
    let pem = include_str!("../../weir-plugins/src/testdata/rsa-public.pem");
    for (plugin, a, b, field) in [
        (
            "basic-auth",
            json!({"username": "same-user", "password": "pw-one"}),
            json!({"username": "same-user", "password": "pw-two"}),
            "username",
        ),
        (
            "jwt-auth",
            json!({"key": "same-jwt", "secret": "jwt-secret-one"}),
            json!({"key": "same-jwt", "algorithm": "RS256", "public_key": pem}),
            "key",
        ),
        (
            "hmac-auth",
            json!({"key_id": "same-id", "secret_key": "hmac-secret-one"}),
            json!({"key_id": "same-id", "secret_key": "hmac-secret-two"}),
            "key_id",
        ),
    ] {
        let config = json!({
            "routes": [route(json!({plugin: {}}))],
            "consumers": [
                {"username": "jack", "plugins": {plugin: a}},
                {"username": "rose", "plugins": {plugin: b}},
            ],
        });
        assert_refused(
            &config,
            &[
                &format!("consumers[1].plugins.{plugin}.{field}"),
                &format!("consumers[0].plugins.{plugin}.{field}"),
            ],
            &[
                "pw-one",
                "pw-two",
                "jwt-secret-one",
                "hmac-secret-one",
                "hmac-secret-two",
            ],
        );
    }
}

#[test]
fn a_key_used_by_a_consumer_and_a_credential_is_refused_naming_both() {
    let dup = "jack-Dup-key-44";
    // weir's `credentials` section.
    let config = json!({
        "routes": [route(json!({"key-auth": {}}))],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": dup}}},
                      {"username": "rose"}],
        "credentials": [{"id": "c1", "consumer": "rose", "plugins": {"key-auth": {"key": dup}}}],
    });
    assert_refused(
        &config,
        &[
            "credentials[0].plugins.key-auth.key",
            "consumers[0].plugins.key-auth.key",
        ],
        &[dup],
    );
}

#[test]
fn a_key_used_by_a_consumer_and_a_standalone_form_credential_names_its_place_in_the_file() {
    let dup = "jack-Dup-key-45";
    // APISIX's standalone form: the credential is an item of `consumers`.
    let config = json!({
        "routes": [route(json!({"key-auth": {}}))],
        "consumers": [
            {"username": "jack", "plugins": {"key-auth": {"key": dup}}},
            {"username": "rose"},
            {"id": "rose/credentials/c1", "plugins": {"key-auth": {"key": dup}}},
        ],
    });
    let stderr = assert_refused(
        &config,
        &[
            "consumers[2].plugins.key-auth.key",
            "consumers[0].plugins.key-auth.key",
        ],
        &[dup],
    );
    assert!(
        !stderr.contains("credentials["),
        "the file has no `credentials` section:\n{stderr}"
    );
}

#[test]
fn an_unknown_plugin_is_refused_listing_the_available_ones() {
    for (config, at) in [
        (
            json!({"routes": [route(json!({"key-auht": {}}))]}),
            "routes[0].plugins.key-auht",
        ),
        (
            json!({"routes": [route(json!({}))],
                   "consumers": [{"username": "jack", "plugins": {"key-auht": {"key": "k"}}}]}),
            "consumers[0].plugins.key-auht",
        ),
        (
            json!({"routes": [route(json!({}))],
                   "global_rules": [{"id": "g", "plugins": {"key-auht": {}}}]}),
            "global_rules[0].plugins.key-auht",
        ),
    ] {
        let stderr = assert_refused(&config, &[at, "unknown plugin"], &[]);
        let line = stderr.lines().find(|l| l.contains(at)).unwrap_or_default();
        for name in [
            "basic-auth",
            "consumer-restriction",
            "echo",
            "hmac-auth",
            "ip-restriction",
            "jwt-auth",
            "key-auth",
            "request-id",
        ] {
            assert!(
                line.contains(name),
                "{at}: the available plugins are listed ({name} missing): {line}"
            );
        }
    }
}

#[test]
fn a_plugin_field_error_names_the_field_path() {
    for (config, expected) in [
        (
            json!({"routes": [route(json!({"key-auth": {"header": 42}}))]}),
            "routes[0].plugins.key-auth.header",
        ),
        (
            json!({"routes": [route(json!({"key-auth": {"header": "bad header"}}))]}),
            "routes[0].plugins.key-auth.header",
        ),
        (
            json!({"routes": [route(json!({"key-auth": {"hide_credential": true}}))]}),
            "routes[0].plugins.key-auth",
        ),
        (
            json!({"routes": [route(json!({"consumer-restriction": {"whitelist": []}}))]}),
            "routes[0].plugins.consumer-restriction.whitelist",
        ),
        (
            json!({"routes": [route(json!({}))],
                   "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": ""}}}]}),
            "consumers[0].plugins.key-auth.key",
        ),
        (
            json!({"routes": [route(json!({}))],
                   "consumers": [{"username": "jack", "plugins": {"jwt-auth": {"key": "k", "algorithm": "RS256"}}}]}),
            "consumers[0].plugins.jwt-auth.public_key",
        ),
    ] {
        assert_refused(&config, &[expected], &[]);
    }
    // An unknown field is named.
    assert_refused(
        &json!({"routes": [route(json!({"key-auth": {"hide_credential": true}}))]}),
        &["hide_credential"],
        &[],
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_not_quoted() {
    let config = json!({
        "routes": [route(json!({"basic-auth": {}}))],
        "consumers": [
            {"username": "jack", "plugins": {"basic-auth": {"username": "jack", "password": ["pw-in-a-list-77"]}}},
            {"username": "rose", "plugins": {"key-auth": {"key": {"k": "key-in-an-object-78"}}}},
        ],
    });
    assert_refused(
        &config,
        &[
            "consumers[0].plugins.basic-auth.password",
            "consumers[1].plugins.key-auth.key",
        ],
        &["pw-in-a-list-77", "key-in-an-object-78"],
    );
}

#[test]
fn a_plugin_error_in_a_service_plugin_config_or_group_names_its_own_path() {
    let mut problems = Vec::new();
    for (config, expected) in [
        (
            json!({"services": [{"id": "s", "plugins": {"key-auth": {"header": 42}}}],
                   "routes": [{"id": "r", "uri": "/*", "service_id": "s",
                               "upstream": {"nodes": {NODE: 1}}}]}),
            "services[0].plugins.key-auth.header",
        ),
        (
            json!({"plugin_configs": [{"id": "p", "plugins": {"key-auth": {"header": 42}}}],
                   "routes": [{"id": "r", "uri": "/*", "plugin_config_id": "p",
                               "upstream": {"nodes": {NODE: 1}}}]}),
            "plugin_configs[0].plugins.key-auth.header",
        ),
        (
            // Used by no route.
            json!({"services": [{"id": "s", "plugins": {"key-auht": {}}}],
                   "routes": [route(json!({}))]}),
            "services[0].plugins.key-auht",
        ),
        (
            // A group without consumers.
            json!({"consumer_groups": [{"id": "g", "plugins": {"key-auht": {}}}],
                   "routes": [route(json!({}))]}),
            "consumer_groups[0].plugins.key-auht",
        ),
    ] {
        let (out, _) = validate(&config.to_string());
        if out.code != Some(1) || !out.stderr.contains(expected) {
            problems.push(format!(
                "{expected}: exit {:?}, stderr {:?}",
                out.code, out.stderr
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn gateway_start_and_a_reload_refuse_a_key_used_twice_without_quoting_it() {
    let dup = "reload-Dup-key-31";
    let node = common::Backend::start("n").await;
    let good = json!({
        "routes": [{"id": "r", "uri": "/*", "upstream": {"nodes": {node.node(): 1}},
                    "plugins": {"key-auth": {}}}],
        "consumers": [
            {"username": "jack", "plugins": {"key-auth": {"key": dup}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rose-own-key"}}},
        ],
    });
    let mut bad = good.clone();
    bad["consumers"][1]["plugins"]["key-auth"]["key"] = json!(dup);

    // Refused at start.
    let err = match weir::Gateway::start(common::config(&bad.to_string())).await {
        Ok(_) => panic!("a gateway started with a key used twice"),
        Err(e) => format!("{e:#}"),
    };
    for path in [
        "consumers[1].plugins.key-auth.key",
        "consumers[0].plugins.key-auth.key",
    ] {
        assert!(err.contains(path), "start error lacks {path}: {err}");
    }
    assert!(!err.contains(dup), "start error quotes the key: {err}");

    // Refused by a reload: the old configuration keeps serving, and the
    // control API tells why without the key.
    let gw = common::gateway(&good.to_string()).await;
    let err = gw
        .core
        .reload(common::config(&bad.to_string()))
        .await
        .expect_err("a reload with a key used twice is refused")
        .to_string();
    assert!(
        err.contains("consumers[1].plugins.key-auth.key"),
        "reload error: {err}"
    );
    assert!(!err.contains(dup), "reload error quotes the key: {err}");
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        common::get(gw.control_addr().unwrap(), None, "/v1/reload"),
    )
    .await
    .expect("GET /v1/reload timed out");
    assert!(
        status.body.contains("consumers[1].plugins.key-auth.key"),
        "/v1/reload shows the rejection: {}",
        status.body
    );
    assert!(
        !status.body.contains(dup),
        "/v1/reload quotes the key: {}",
        status.body
    );
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let c = common::client();
        let req = http::Request::get(format!("http://{}/x", gw.proxy_addr()))
            .header("apikey", "rose-own-key")
            .body(common::empty())
            .unwrap();
        c.request(req).await.expect("request").status()
    })
    .await
    .expect("request timed out");
    assert_eq!(r, 200, "the previous configuration keeps serving");
}

#[test]
fn traffic_split_upstreams_are_checked_where_they_are_written() {
    let config = json!({
        "routes": [route(json!({"traffic-split": {"rules": [{"weighted_upstreams": [
            {"upstream_id": "missing-pool", "weight": 1},
            {"upstream": {"nodes": {NODE: 1}, "type": "fastest"}, "weight": 1},
        ]}]}}))],
    });
    assert_refused(
        &config,
        &[
            "routes[0].plugins.traffic-split.rules[0].weighted_upstreams[0].upstream_id",
            "\"missing-pool\" does not exist",
            "routes[0].plugins.traffic-split.rules[0].weighted_upstreams[1].upstream.type",
        ],
        &[],
    );
}

#[test]
fn limit_count_mistakes_are_named() {
    let config = json!({
        "routes": [route(json!({"limit-count": {"count": 0, "time_window": 60}})),
                   {"id": "r2", "uri": "/b", "upstream": {"nodes": {NODE: 1}},
                    "plugins": {"limit-count": {"count": 1, "time_window": 60, "policy": "redis",
                                                "redis_password": "p4ss-w0rd-never-shown"}}}],
    });
    assert_refused(
        &config,
        &[
            "routes[0].plugins.limit-count.count",
            "routes[1].plugins.limit-count.redis_host",
        ],
        &["p4ss-w0rd-never-shown"],
    );
}
