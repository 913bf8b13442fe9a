//! The `weir` command line: `validate` reports every mistake with its field
//! path and exits 1; `version`; `run` refuses a bad file.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the weir binary with `args`, killing it if it runs longer than 30 s.
fn weir(args: &[&str]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
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
            panic!("weir {args:?} did not exit within 30 s");
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
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `weir validate -c` on `yaml` must exit 1 and print every `expected` line part.
fn assert_rejected(yaml: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "config.yaml", yaml);
    let out = weir(&["validate", "-c", &file]);
    assert_eq!(
        out.code,
        Some(1),
        "exit code; stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains(&file),
        "stderr names the file {file}: {}",
        out.stderr
    );
    for e in expected {
        assert!(
            out.stderr.contains(e),
            "stderr lacks {e:?}; got:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stdout.contains("ok"),
        "nothing reported ok: {}",
        out.stdout
    );
}

macro_rules! rejects {
    ($name:ident, $yaml:expr, $($expected:expr),+ $(,)?) => {
        #[test]
        fn $name() {
            assert_rejected($yaml, &[$($expected),+]);
        }
    };
}

const NODE: &str = r#"{nodes: {"10.0.0.1:80": 1}}"#;

rejects!(
    validate_rejects_unknown_field_typo_with_its_path,
    r#"
routes:
  - uri: /a
    upsteam: {nodes: {"10.0.0.1:80": 1}}
"#,
    "1 error(s)",
    "routes[0].upsteam: unknown field `upsteam`, expected one of"
);

rejects!(
    validate_rejects_node_with_invalid_port,
    r#"
routes:
  - uri: /a
    upstream: {nodes: {"10.0.0.1:80x": 1}}
"#,
    r#"routes[0].upstream.nodes["10.0.0.1:80x"]: invalid port"#
);

rejects!(
    validate_rejects_uri_not_starting_with_slash,
    &format!("routes:\n  - {{uri: api/v1, upstream: {NODE}}}\n"),
    r#"routes[0].uri: "api/v1" must start with /"#
);

rejects!(
    validate_rejects_unknown_upstream_id,
    "upstreams:\n  - {id: known, nodes: {\"10.0.0.1:80\": 1}}\nroutes:\n  - {uri: /a, upstream_id: missing}\n",
    r#"routes[0].upstream_id: no upstream with id "missing""#
);

rejects!(
    validate_rejects_duplicate_route_id,
    &format!("routes:\n  - {{id: r1, uri: /a, upstream: {NODE}}}\n  - {{id: r1, uri: /b, upstream: {NODE}}}\n"),
    r#"routes[1].id: duplicate route id "r1""#
);

rejects!(
    validate_rejects_chash_without_key,
    r#"
routes:
  - uri: /a
    upstream: {type: chash, hash_on: header, nodes: {"10.0.0.1:80": 1}}
"#,
    "routes[0].upstream.key: type chash needs a key"
);

rejects!(
    validate_rejects_unknown_lb_type,
    r#"
routes:
  - uri: /a
    upstream: {type: fastest, nodes: {"10.0.0.1:80": 1}}
"#,
    "routes[0].upstream.type: unknown variant `fastest`"
);

rejects!(
    validate_rejects_listener_address_without_ip,
    &format!(
        "gateway:\n  listeners:\n    - address: localhost:9080\nroutes:\n  - {{uri: /a, upstream: {NODE}}}\n"
    ),
    r#"gateway.listeners[0].address: "localhost:9080" is not an ip:port address"#
);

rejects!(
    validate_rejects_pass_host_rewrite_without_upstream_host,
    r#"
routes:
  - uri: /a
    upstream: {pass_host: rewrite, nodes: {"10.0.0.1:80": 1}}
"#,
    "routes[0].upstream.upstream_host: required when pass_host is rewrite"
);

rejects!(
    validate_rejects_both_uri_and_uris,
    &format!("routes:\n  - {{uri: /a, uris: [/b], upstream: {NODE}}}\n"),
    "routes[0].uris: give uri or uris, not both"
);

rejects!(
    validate_rejects_unknown_plugin,
    &format!(
        "routes:\n  - {{uri: /a, plugins: {{grpc-transcode: {{proto_id: 1}}}}, upstream: {NODE}}}\n"
    ),
    "routes[0].plugins.grpc-transcode: unknown plugin"
);

rejects!(
    validate_rejects_wildcard_host_not_in_leading_label,
    &format!("routes:\n  - {{uri: /a, host: \"api.*.example.com\", upstream: {NODE}}}\n"),
    r#"routes[0].host: "api.*.example.com": a wildcard is only allowed as the leading label"#
);

rejects!(
    validate_rejects_tls_listener_without_ssls,
    &format!(
        "gateway:\n  listeners:\n    - {{address: \"127.0.0.1:9443\", tls: true}}\nroutes:\n  - {{uri: /a, upstream: {NODE}}}\n"
    ),
    "gateway.listeners[0].tls: a TLS listener needs at least one enabled entry in ssls"
);

rejects!(
    validate_rejects_invalid_yaml_syntax_with_line_and_column,
    r#"routes:
  - uri: /a
    upstream: {nodes: {"10.0.0.1:80": 1}
  - bad
"#,
    "not valid YAML/JSON",
    "line 4 column 3"
);

rejects!(
    validate_rejects_discovery_type_without_discovery_configured,
    r#"
routes:
  - uri: /a
    upstream: {discovery_type: kubernetes, service_name: "shop/cart:http"}
"#,
    "routes[0].upstream.discovery_type: discovery.kubernetes is not configured"
);

rejects!(
    validate_rejects_unknown_http_method,
    &format!("routes:\n  - {{uri: /a, methods: [GET, FETCH], upstream: {NODE}}}\n"),
    r#"routes[0].methods[1]: unknown method "FETCH""#
);

rejects!(
    validate_rejects_unknown_top_level_section,
    "route:\n  - uri: /a\n",
    "route: unknown section, expected one of gateway, routes, upstreams, ssls, discovery"
);

rejects!(
    validate_rejects_upstream_timeout_missing_a_field,
    r#"
routes:
  - uri: /a
    upstream: {timeout: {connect: 1}, nodes: {"10.0.0.1:80": 1}}
"#,
    "routes[0].upstream.timeout: missing field `send`"
);

rejects!(
    validate_rejects_listed_upstream_without_id,
    "upstreams:\n  - {nodes: {\"10.0.0.1:80\": 1}}\n",
    "upstreams[0].id: an upstream in the upstreams list needs an id"
);

rejects!(
    validate_rejects_ssl_without_sni_or_key,
    "ssls:\n  - {cert_file: /etc/weir/a.crt}\n",
    "ssls[0].snis: at least one of sni / snis is required",
    "ssls[0].key: key or key_file is required"
);

#[test]
fn validate_prints_every_mistake_of_a_file_at_once() {
    assert_rejected(
        r#"
gateway:
  listeners:
    - address: "nowhere"
routes:
  - id: one
    uri: no-slash
    upstream: {nodes: {"10.0.0.1:80x": 1}}
  - id: two
    uri: /b
    upstream: {type: chash, nodes: {"10.0.0.1:80": 1}}
  - id: three
    uri: /c
    upstream_id: ghost
    enable_websockets: true
  - id: four
    uri: /d
    upstream_id: ghost
upstreams:
  - {id: real, pass_host: rewrite, nodes: {"10.0.0.2:80": 1}}
"#,
        &[
            // routes[2] has a parse error, and its reference is still checked.
            "8 error(s)",
            r#"gateway.listeners[0].address: "nowhere" is not an ip:port address"#,
            r#"routes[0].uri: "no-slash" must start with /"#,
            r#"routes[0].upstream.nodes["10.0.0.1:80x"]: invalid port"#,
            "routes[1].upstream.key: type chash needs a key",
            "routes[2].enable_websockets: unknown field `enable_websockets`",
            r#"routes[2].upstream_id: no upstream with id "ghost""#,
            r#"routes[3].upstream_id: no upstream with id "ghost""#,
            "upstreams[0].upstream_host: required when pass_host is rewrite",
        ],
    );
}

#[test]
fn validate_accepts_a_valid_file_with_exit_0_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ok.yaml",
        r#"
gateway:
  listeners:
    - address: 127.0.0.1:9080
upstreams:
  - {id: shop, type: chash, hash_on: header, key: x-user, nodes: {"10.0.0.1:80": 1, "10.0.0.2:80": 2}}
routes:
  - {id: a, uris: [/a, "/b/*"], hosts: [a.test, "*.b.test"], methods: [GET, POST], upstream_id: shop}
  - {id: echo, uri: "/*", plugins: {echo: {}}}
"#,
    );
    let out = weir(&["validate", "-c", &file]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{file}: ok (2 routes, 1 upstreams, 0 ssls)")),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "no errors: {}", out.stderr);
}

#[test]
fn validate_of_a_missing_file_exits_1_naming_it() {
    let out = weir(&["validate", "-c", "/nonexistent/weir.yaml"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("cannot read /nonexistent/weir.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn version_prints_the_crate_version() {
    for args in [&["version"][..], &["--version"], &["-V"]] {
        let out = weir(args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stdout.trim(),
            format!("weir {}", env!("CARGO_PKG_VERSION")),
            "{args:?}"
        );
    }
}

#[test]
fn run_with_an_invalid_file_exits_1_with_the_errors_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        r#"
gateway:
  listeners:
    - address: 127.0.0.1:0
  control: {address: "127.0.0.1:0"}
routes:
  - uri: /a
    upstream: {nodes: {"10.0.0.1:80x": 1}}
  - uri: relative
    plugins: {echo: {}}
"#,
    );
    let out = weir(&["run", "-c", &file]);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{file}: 2 error(s)")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(r#"routes[0].upstream.nodes["10.0.0.1:80x"]: invalid port"#),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(r#"routes[1].uri: "relative" must start with /"#),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_and_run_refuse_missing_ca_files_and_unwritable_access_logs() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "files.yaml",
        r#"
gateway:
  listeners:
    - address: 127.0.0.1:0
  control: {address: "127.0.0.1:0"}
  access_log: {path: /nonexistent-dir/access.log}
upstreams:
  - {id: u, scheme: https, tls: {ca_file: /nonexistent/ca.pem}, nodes: {"10.0.0.1:443": 1}}
routes:
  - {uri: /, upstream_id: u}
"#,
    );
    for command in ["validate", "run"] {
        let out = weir(&[command, "-c", &file]);
        assert_eq!(out.code, Some(1), "{command}: stderr: {}", out.stderr);
        for expected in [
            "gateway.access_log.path: cannot create /nonexistent-dir/access.log: directory /nonexistent-dir does not exist",
            "upstreams[0].tls.ca_file: cannot read /nonexistent/ca.pem",
        ] {
            assert!(out.stderr.contains(expected), "{command}: {}", out.stderr);
        }
        assert!(!out.stdout.contains("ok"), "{}", out.stdout);
    }
}
