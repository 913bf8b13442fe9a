//! Route fields added for APISIX compatibility.

mod common;

use std::borrow::Cow;
use std::collections::HashMap;

use common::{errors, has, load, none_at, NODE};

struct Req(HashMap<&'static str, &'static str>);

impl weir_config::vars::VarLookup for Req {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|v| Cow::Borrowed(*v))
    }
}

#[test]
fn vars_are_parsed_at_load_and_evaluated_by_the_engine() {
    let c = load(&format!(
        r#"
routes:
  - uri: /
    upstream: {NODE}
    vars:
      - [arg_name, "==", json]
      - [http_x_env, "!", "~~", "^test"]
      - [OR, [remote_addr, ipmatch, [10.0.0.0/8]], [cookie_vip, in, ["1", "yes"]]]
"#
    ));
    let vars = c.routes[0].vars.as_ref().unwrap();
    let req = |pairs: &[(&'static str, &'static str)]| Req(pairs.iter().copied().collect());
    assert!(vars.eval(&req(&[("arg_name", "json"), ("remote_addr", "10.1.1.1")])));
    assert!(vars.eval(&req(&[
        ("arg_name", "json"),
        ("cookie_vip", "yes"),
        ("remote_addr", "1.1.1.1")
    ])));
    assert!(!vars.eval(&req(&[
        ("arg_name", "json"),
        ("http_x_env", "testing"),
        ("remote_addr", "10.1.1.1")
    ])));
    assert!(!vars.eval(&req(&[("arg_name", "xml"), ("remote_addr", "10.1.1.1")])));
    // Serializing gives back an equivalent list (the control API shows it).
    let shown = serde_json::to_value(&c.routes[0]).unwrap();
    assert_eq!(
        shown["vars"][1],
        serde_json::json!(["http_x_env", "!", "~~", "^test"])
    );
}

#[test]
fn vars_errors_carry_the_exact_position() {
    let e = errors(&format!(
        r#"
routes:
  - uri: /a
    upstream: {NODE}
    vars: [[arg_a, "==", "1"], [arg_b, "~~", "(unclosed"]]
  - uri: /b
    upstream: {NODE}
    vars: [[arg_a, "=", "1"]]
  - uri: /c
    upstream: {NODE}
    vars: [[no_such_var, "==", "1"]]
  - uri: /d
    upstream: {NODE}
    vars: [arg_a, "==", "1"]
"#
    ));
    has(&e, "routes[0].vars[1][2]", "invalid regular expression");
    has(&e, "routes[1].vars[0][1]", r#"unknown operator "=""#);
    has(
        &e,
        "routes[2].vars[0][0]",
        r#"unknown variable "no_such_var""#,
    );
    has(&e, "routes[3].vars", "must be a list of its own");
}

#[test]
fn remote_addrs_accept_ipv4_ipv6_and_cidrs() {
    let c = load(&format!(
        r#"
routes:
  - {{uri: /a, upstream: {NODE}, remote_addr: 127.0.0.1}}
  - {{uri: /b, upstream: {NODE}, remote_addrs: [10.0.0.0/8, "::1", "2001:db8::/32"]}}
  - {{uri: /c, upstream: {NODE}}}
"#
    ));
    let a = c.routes[0].remote_matcher().unwrap();
    assert!(a.contains("127.0.0.1".parse().unwrap()));
    assert!(!a.contains("127.0.0.2".parse().unwrap()));
    let b = c.routes[1].remote_matcher().unwrap();
    for ip in ["10.9.8.7", "::1", "2001:db8::5", "::ffff:10.0.0.1"] {
        assert!(b.contains(ip.parse().unwrap()), "{ip}");
    }
    assert!(!b.contains("192.168.0.1".parse().unwrap()));
    assert!(c.routes[2].remote_matcher().is_none());

    let e = errors(&format!(
        r#"
routes:
  - {{uri: /a, upstream: {NODE}, remote_addrs: [10.0.0.0/8, 10.0.0.0/33, "[::1]"]}}
  - {{uri: /b, upstream: {NODE}, remote_addr: 1.2.3.4, remote_addrs: [5.6.7.8]}}
  - {{uri: /c, upstream: {NODE}, remote_addrs: []}}
"#
    ));
    has(
        &e,
        "routes[0].remote_addrs[1]",
        "the prefix length must be 0..32",
    );
    has(
        &e,
        "routes[1].remote_addrs",
        "give remote_addr or remote_addrs, not both",
    );
    has(&e, "routes[2].remote_addrs", "must not be empty");
}

#[test]
fn timeout_labels_name_desc_status() {
    let c = load(&format!(
        r#"
routes:
  - uri: /a
    name: api
    desc: the API
    labels: {{version: v2, team: core}}
    timeout: {{connect: 1, send: 2, read: 3.5}}
    status: 0
    upstream: {NODE}
"#
    ));
    let r = &c.routes[0];
    assert_eq!(r.timeout.unwrap().read, 3.5);
    assert_eq!(r.labels["version"], "v2");
    assert_eq!(r.status, 0);
    let e = errors(&format!(
        r#"
routes:
  - {{uri: /a, upstream: {NODE}, timeout: {{connect: 0, send: 1, read: 1}}}}
  - {{uri: /b, upstream: {NODE}, timeout: {{connect: 1, send: 1}}}}
  - {{uri: /c, upstream: {NODE}, labels: {{a: ""}}, name: "", desc: "{long}"}}
  - {{uri: /d, upstream: {NODE}, status: 2}}
"#,
        long = "d".repeat(257)
    ));
    has(
        &e,
        "routes[0].timeout.connect",
        "must be a positive number of seconds",
    );
    has(&e, "routes[1].timeout", "missing field `read`");
    has(
        &e,
        "routes[2].labels.a",
        "a label value is 1 to 256 characters",
    );
    has(&e, "routes[2].name", "must be 1 to 256 characters");
    has(&e, "routes[2].desc", "at most 256 characters");
    has(&e, "routes[3].status", "must be 0 or 1");
}

#[test]
fn filter_func_and_scripts_are_refused_as_not_supported() {
    let e = errors(&format!(
        r#"
routes:
  - {{uri: /a, upstream: {NODE}, filter_func: "function(vars) return vars['arg_a'] == '1' end"}}
  - {{uri: /b, upstream: {NODE}, script: "local _M = {{}} return _M"}}
"#
    ));
    has(
        &e,
        "routes[0].filter_func",
        "filter_func (a Lua function) is not supported by weir; express the condition with vars",
    );
    has(
        &e,
        "routes[1].script",
        "script (Lua) is not supported by weir",
    );
}

#[test]
fn a_route_needs_an_upstream_from_itself_its_service_or_plugins() {
    let e = errors(
        r#"
upstreams: [{id: u, nodes: {"10.0.0.1:80": 1}}]
services:
  - {id: with-up, upstream_id: u}
  - {id: bare}
  - {id: with-plugins, plugins: {echo: {}}}
plugin_configs: [{id: pc, plugins: {echo: {}}}]
routes:
  - {uri: /a, service_id: with-up}
  - {uri: /b, service_id: bare}
  - {uri: /c, service_id: with-plugins}
  - {uri: /d, plugin_config_id: pc}
  - {uri: /e, plugins: {echo: {}}}
  - {uri: /f}
"#,
    );
    none_at(&e, "routes[0]");
    has(
        &e,
        "routes[1].upstream",
        "upstream or upstream_id is required (or a service_id whose service has one)",
    );
    none_at(&e, "routes[2]");
    none_at(&e, "routes[3]");
    none_at(&e, "routes[4]");
    has(
        &e,
        "routes[5].upstream",
        "upstream or upstream_id is required",
    );
}

#[test]
fn services_are_checked_like_routes() {
    let e = errors(
        r#"
upstreams: [{id: u, nodes: {"10.0.0.1:80": 1}}]
services:
  - {id: a, upstream_id: u, upstream: {nodes: {"10.0.0.1:80": 1}}}
  - {id: b, hosts: ["bad host"]}
  - {id: c, hosts: []}
  - {id: d, upstream: {nodes: {"10.0.0.1:80x": 1}}}
"#,
    );
    has(
        &e,
        "services[0].upstream_id",
        "give upstream or upstream_id, not both",
    );
    has(&e, "services[1].hosts[0]", "invalid character in host name");
    has(&e, "services[2].hosts", "must not be empty");
    has(
        &e,
        "services[3].upstream.nodes[\"10.0.0.1:80x\"]",
        "invalid port",
    );
}
