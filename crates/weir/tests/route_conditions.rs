//! Route `vars` and `remote_addrs` over real sockets: conditions decide
//! whether a route matches, and a request a route's conditions refuse goes
//! on to the next candidate (a lower-priority route on the same uri, a
//! less specific uri) or gets 404, as APISIX's router does.
//!
//! Every operator of lua-resty-expr (`==`, `~=`, `>`, `<`, `>=`, `<=`, `~~`,
//! `~*`, `in`, `has`, `!`, `ipmatch`, `AND`/`OR`/`!AND`/`!OR` groups) over
//! `arg_*`, `http_*`, `cookie_*`, `uri`, `host`, `remote_addr` and
//! `request_method`, on every client of `every_client!` (HTTP/1.1 plain,
//! TLS, general path; HTTP/2 h2c). Clients connect from 127.0.0.1, or
//! from ::1 to a gateway listening on [::1].

mod common;

use common::wire::*;
use serde_json::{json, Value};

/// A node answering 200 with its name as the body.
async fn named(name: &'static str) -> RawBackend {
    RawBackend::start(move |_| Answer::Send(ok(name))).await
}

/// Route `A` (priority 10, with `cond`) and route `B` (priority 0, none)
/// on `uri`.
fn pair(uri: &str, a: &RawBackend, b: &RawBackend, cond: Value) -> [Value; 2] {
    let mut first = json!({"uri": uri, "priority": 10, "upstream": {"nodes": {a.node(): 1}}});
    for (k, v) in cond.as_object().expect("conditions are an object") {
        first[k] = v.clone();
    }
    [
        first,
        json!({"uri": uri, "priority": 0, "upstream": {"nodes": {b.node(): 1}}}),
    ]
}

/// Sends every request and checks which route answered (`"A"`, `"B"`, or
/// `"404"` for no route).
async fn expect_routes(c: &mut AnyClient, cases: &[(&str, Req, &str)]) {
    for (what, req, expected) in cases {
        let r = c.send(req).await;
        let got = match r.status {
            200 => r.text(),
            404 => {
                assert_eq!(
                    r.text(),
                    "{\"error_msg\":\"404 Route Not Found\"}",
                    "{what}: {r:?}"
                );
                "404".to_owned()
            }
            s => panic!("{what}: unexpected status {s}: {r:?}"),
        };
        assert_eq!(
            got, *expected,
            "{what}: {} {} {:?} went to the wrong route",
            req.method, req.path, req.headers
        );
    }
}

fn vars(v: Value) -> Value {
    json!({ "vars": v })
}

async fn every_vars_operator_selects_or_skips_the_route(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let conditions = [
        ("/eq", vars(json!([["arg_env", "==", "prod"]]))),
        ("/eq-num", vars(json!([["arg_v", "==", 5]]))),
        ("/eq-null", vars(json!([["http_x_absent", "==", null]]))),
        ("/ne", vars(json!([["http_x_env", "~=", "prod"]]))),
        ("/gt", vars(json!([["arg_n", ">", 10]]))),
        ("/lt", vars(json!([["arg_n", "<", 10]]))),
        ("/ge", vars(json!([["arg_n", ">=", 10]]))),
        ("/le", vars(json!([["arg_n", "<=", 10]]))),
        (
            "/re",
            vars(json!([["http_user_agent", "~~", "^curl/[0-9]"]])),
        ),
        ("/re-i", vars(json!([["http_user_agent", "~*", "^curl/"]]))),
        ("/in", vars(json!([["cookie_beta", "in", ["1", "yes"]]]))),
        ("/has", vars(json!([["http_x_tag", "has", "blue"]]))),
        ("/not", vars(json!([["arg_env", "!", "==", "prod"]]))),
        ("/not-re", vars(json!([["http_x_env", "!", "~~", "^test"]]))),
        (
            "/ipmatch",
            vars(json!([[
                "http_x_ip",
                "ipmatch",
                ["192.0.2.0/24", "2001:db8::/32"]
            ]])),
        ),
        ("/uri/*", vars(json!([["uri", "~~", "^/uri/a"]]))),
        ("/host", vars(json!([["host", "==", "a.example"]]))),
        (
            "/method",
            vars(json!([["request_method", "in", ["POST", "PUT"]]])),
        ),
        (
            "/addr",
            vars(json!([["remote_addr", "ipmatch", ["127.0.0.0/8"]]])),
        ),
        (
            "/addr-out",
            vars(json!([["remote_addr", "ipmatch", ["10.0.0.0/8", "::1"]]])),
        ),
        (
            "/addr-eq",
            vars(json!([["remote_addr", "==", "127.0.0.1"]])),
        ),
        (
            "/all",
            vars(json!([["arg_a", "==", "1"], ["http_x_b", "==", "2"]])),
        ),
        (
            "/nested",
            vars(json!([[
                "OR",
                ["arg_a", "==", "1"],
                ["AND", ["arg_b", "==", "2"], ["http_x_c", "~~", "^y"]]
            ]])),
        ),
        (
            "/not-and",
            vars(json!([[
                "!AND",
                ["arg_a", "==", "1"],
                ["arg_b", "==", "2"]
            ]])),
        ),
        (
            "/not-or",
            vars(json!([["!OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]])),
        ),
    ];
    let mut routes: Vec<Value> = conditions
        .iter()
        .flat_map(|(uri, cond)| pair(uri, &a, &b, cond.clone()))
        .collect();
    // No fallback: 404.
    routes.push(json!({"uri": "/alone", "vars": [["arg_go", "==", "1"]],
        "upstream": {"nodes": {a.node(): 1}}}));
    // The fallback is a less specific uri.
    routes.push(
        json!({"uri": "/spec/exact", "vars": [["arg_go", "==", "1"]],
        "upstream": {"nodes": {a.node(): 1}}}),
    );
    routes.push(json!({"uri": "/spec/*", "upstream": {"nodes": {b.node(): 1}}}));
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;

    let get = Req::get;
    let h = |path: &str, name: &str, value: &str| Req::get(path).header(name, value);
    let cases = [
        ("== string", get("/eq?env=prod"), "A"),
        ("== string, other value", get("/eq?env=dev"), "B"),
        ("== string, absent", get("/eq"), "B"),
        (
            "== string, first argument counts",
            get("/eq?env=prod&env=dev"),
            "A",
        ),
        ("== number", get("/eq-num?v=5.0"), "A"),
        ("== number, other", get("/eq-num?v=6"), "B"),
        ("== number, not a number", get("/eq-num?v=five"), "B"),
        ("== null, absent", get("/eq-null"), "A"),
        ("== null, present", h("/eq-null", "X-Absent", "1"), "B"),
        ("~=", h("/ne", "X-Env", "dev"), "A"),
        ("~=, absent differs", get("/ne"), "A"),
        ("~=, equal", h("/ne", "X-Env", "prod"), "B"),
        (">", get("/gt?n=11"), "A"),
        (">, equal", get("/gt?n=10"), "B"),
        (">, not a number", get("/gt?n=abc"), "B"),
        (">, absent", get("/gt"), "B"),
        ("<", get("/lt?n=9.5"), "A"),
        ("<, equal", get("/lt?n=10"), "B"),
        (">=, equal", get("/ge?n=10"), "A"),
        (">=, below", get("/ge?n=9"), "B"),
        ("<=, equal", get("/le?n=10"), "A"),
        ("<=, above", get("/le?n=10.5"), "B"),
        ("~~", h("/re", "User-Agent", "curl/8.5.0"), "A"),
        (
            "~~ is case-sensitive",
            h("/re", "User-Agent", "Curl/8.5.0"),
            "B",
        ),
        ("~~, absent", get("/re"), "B"),
        ("~*", h("/re-i", "User-Agent", "CURL/8.5.0"), "A"),
        ("~*, no match", h("/re-i", "User-Agent", "Wget/1.0"), "B"),
        ("in", h("/in", "Cookie", "a=b; beta=yes"), "A"),
        ("in, not listed", h("/in", "Cookie", "beta=no; a=b"), "B"),
        ("in, no cookie", get("/in"), "B"),
        (
            "has, one of two fields",
            h("/has", "X-Tag", "red").header("X-Tag", "blue"),
            "A",
        ),
        ("has, not there", h("/has", "X-Tag", "red"), "B"),
        ("! ==", get("/not?env=dev"), "A"),
        ("! ==, absent", get("/not"), "A"),
        ("! ==, equal", get("/not?env=prod"), "B"),
        ("! ~~", h("/not-re", "X-Env", "prod"), "A"),
        ("! ~~, matching", h("/not-re", "X-Env", "testing"), "B"),
        ("ipmatch v4", h("/ipmatch", "X-Ip", "192.0.2.5"), "A"),
        ("ipmatch v6", h("/ipmatch", "X-Ip", "2001:db8::7"), "A"),
        (
            "ipmatch, outside",
            h("/ipmatch", "X-Ip", "198.51.100.1"),
            "B",
        ),
        (
            "ipmatch, not an address",
            h("/ipmatch", "X-Ip", "nope"),
            "B",
        ),
        ("uri", get("/uri/abc"), "A"),
        ("uri, other", get("/uri/xyz"), "B"),
        ("host", h("/host", "Host", "a.example"), "A"),
        (
            "host, port and case",
            h("/host", "Host", "A.Example:8080"),
            "A",
        ),
        ("host, other", h("/host", "Host", "b.example"), "B"),
        ("request_method", Req::new("POST", "/method").body("x"), "A"),
        (
            "request_method, PUT",
            Req::new("PUT", "/method").body("x"),
            "A",
        ),
        ("request_method, other", get("/method"), "B"),
        ("remote_addr ipmatch", get("/addr"), "A"),
        ("remote_addr ipmatch, outside", get("/addr-out"), "B"),
        ("remote_addr ==", get("/addr-eq"), "A"),
        ("a list: all hold", h("/all?a=1", "X-B", "2"), "A"),
        ("a list: one fails", h("/all?a=1", "X-B", "3"), "B"),
        ("OR, first", get("/nested?a=1"), "A"),
        ("OR, nested AND", h("/nested?b=2", "X-C", "yes"), "A"),
        ("OR, nested AND half true", get("/nested?b=2"), "B"),
        ("OR, none", h("/nested?a=2", "X-C", "yes"), "B"),
        ("!AND, one holds", get("/not-and?a=1&b=3"), "A"),
        ("!AND, both hold", get("/not-and?a=1&b=2"), "B"),
        ("!OR, none holds", get("/not-or?a=2&b=3"), "A"),
        ("!OR, one holds", get("/not-or?a=2&b=2"), "B"),
        ("no fallback", get("/alone?go=1"), "A"),
        ("no fallback: 404", get("/alone?go=0"), "404"),
        ("fallback to a prefix", get("/spec/exact?go=1"), "A"),
        (
            "fallback to a prefix, refused",
            get("/spec/exact?go=0"),
            "B",
        ),
    ];
    expect_routes(&mut c, &cases).await;
}

/// `arg_NAME` is the decoded value of the first argument of that name, as
/// APISIX reads it (`ngx.req.get_uri_args`): `%20` and `+` are spaces.
async fn arg_variables_are_percent_decoded(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let routes: Vec<Value> = pair("/q", &a, &b, vars(json!([["arg_q", "==", "a b/c"]])))
        .into_iter()
        .collect();
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;
    let cases = [
        ("plain", Req::get("/q?q=a%20b%2Fc"), "A"),
        ("plus", Req::get("/q?q=a+b%2fc"), "A"),
        ("other", Req::get("/q?q=ab"), "B"),
    ];
    expect_routes(&mut c, &cases).await;
}

/// docs/configuration.md: `has` is true when one of the variable's values
/// (several headers or arguments of that name) equals the value.
async fn has_sees_every_argument_of_the_name(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let routes: Vec<Value> = pair("/t", &a, &b, vars(json!([["arg_t", "has", "2"]])))
        .into_iter()
        .collect();
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;
    let cases = [
        ("second of two", Req::get("/t?t=1&t=2"), "A"),
        ("only", Req::get("/t?t=2"), "A"),
        ("neither", Req::get("/t?t=1&t=3"), "B"),
    ];
    expect_routes(&mut c, &cases).await;
}

/// `uri` is nginx's `$uri`: the path percent-decoded, with `.`/`..`
/// segments resolved and repeated slashes merged (the path the router
/// matches, docs/configuration.md).
async fn uri_variable_is_the_decoded_normalised_path(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let routes: Vec<Value> = pair("/dec/*", &a, &b, vars(json!([["uri", "==", "/dec/a b/c"]])))
        .into_iter()
        .collect();
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;
    let cases = [
        (
            "as is",
            Req::get("/dec/a b/c".replace(' ', "%20").as_str()),
            "A",
        ),
        (
            "dot segments, slashes",
            Req::get("/dec/x/..//a%20b/./c"),
            "A",
        ),
        ("other", Req::get("/dec/a"), "B"),
    ];
    expect_routes(&mut c, &cases).await;
}

/// The variables docs/configuration.md lists and the loader accepts have
/// their values: `content_type`, `content_length`, `server_protocol`.
async fn content_type_content_length_and_server_protocol_have_values(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let protocol = match via {
        Via::H2c => "HTTP/2.0",
        Via::H1(_) => "HTTP/1.1",
    };
    let conditions = [
        (
            "/ct",
            vars(json!([["content_type", "~~", "^application/json"]])),
        ),
        ("/cl", vars(json!([["content_length", ">", 3]]))),
        ("/proto", vars(json!([["server_protocol", "==", protocol]]))),
    ];
    let routes: Vec<Value> = conditions
        .iter()
        .flat_map(|(uri, cond)| pair(uri, &a, &b, cond.clone()))
        .collect();
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;
    let post = |path: &str, ct: &str, body: &str| {
        Req::new("POST", path).header("Content-Type", ct).body(body)
    };
    let cases = [
        ("content_type", post("/ct", "application/json", "{}"), "A"),
        ("content_type, other", post("/ct", "text/plain", "{}"), "B"),
        ("content_length", post("/cl", "text/plain", "12345"), "A"),
        (
            "content_length, short",
            post("/cl", "text/plain", "12"),
            "B",
        ),
        ("server_protocol", Req::get("/proto"), "A"),
    ];
    expect_routes(&mut c, &cases).await;
}

async fn remote_addrs_match_single_addresses_and_cidr_blocks(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let conditions = [
        (
            "/cidr-in",
            json!({"remote_addrs": ["10.0.0.0/8", "127.0.0.0/8"]}),
        ),
        ("/cidr-out", json!({"remote_addrs": ["10.0.0.0/8"]})),
        ("/single-in", json!({"remote_addr": "127.0.0.1"})),
        ("/single-out", json!({"remote_addr": "127.0.0.2"})),
        ("/v6-out", json!({"remote_addrs": ["::1", "fd00::/8"]})),
        (
            "/and-vars",
            json!({"remote_addrs": ["127.0.0.0/8"], "vars": [["arg_x", "==", "1"]]}),
        ),
        (
            "/and-vars-out",
            json!({"remote_addrs": ["10.0.0.0/8"], "vars": [["arg_x", "==", "1"]]}),
        ),
    ];
    let mut routes: Vec<Value> = conditions
        .iter()
        .flat_map(|(uri, cond)| pair(uri, &a, &b, cond.clone()))
        .collect();
    routes.push(json!({"uri": "/alone", "remote_addrs": ["10.0.0.0/8"],
        "upstream": {"nodes": {a.node(): 1}}}));
    let gw = gateway_with(via.transport(), &[], json!({ "routes": routes })).await;
    let mut c = AnyClient::connect(via, &gw).await;
    let get = Req::get;
    let cases = [
        ("in a CIDR block", get("/cidr-in"), "A"),
        ("outside every block", get("/cidr-out"), "B"),
        ("the single address", get("/single-in"), "A"),
        ("another single address", get("/single-out"), "B"),
        ("IPv6 blocks, IPv4 client", get("/v6-out"), "B"),
        ("address and vars hold", get("/and-vars?x=1"), "A"),
        ("address holds, vars do not", get("/and-vars?x=2"), "B"),
        ("vars hold, address does not", get("/and-vars-out?x=1"), "B"),
        ("no fallback", get("/alone"), "404"),
    ];
    expect_routes(&mut c, &cases).await;
}

/// A client on ::1, to a gateway listening on [::1].
async fn remote_addrs_and_vars_match_an_ipv6_client(via: Via) {
    let (a, b) = (named("A").await, named("B").await);
    let conditions = [
        ("/v6", json!({"remote_addrs": ["::1"]})),
        (
            "/v6-cidr",
            json!({"remote_addrs": ["10.0.0.0/8", "::/120"]}),
        ),
        ("/v4-only", json!({"remote_addrs": ["127.0.0.0/8"]})),
        ("/v6-var", vars(json!([["remote_addr", "==", "::1"]]))),
        (
            "/v6-ipmatch",
            vars(json!([["remote_addr", "ipmatch", ["::1/128"]]])),
        ),
        (
            "/v6-ipmatch-out",
            vars(json!([[
                "remote_addr",
                "ipmatch",
                ["fd00::/8", "127.0.0.1"]
            ]])),
        ),
    ];
    let routes: Vec<Value> = conditions
        .iter()
        .flat_map(|(uri, cond)| pair(uri, &a, &b, cond.clone()))
        .collect();
    let tls = via.transport() == Transport::Tls;
    let gw = gateway_with(
        via.transport(),
        &[],
        json!({
            "gateway": {"listeners": [{"address": "[::1]:0", "tls": tls}]},
            "routes": routes,
        }),
    )
    .await;
    assert!(gw.proxy_addr().is_ipv6(), "{}", gw.proxy_addr());
    let mut c = AnyClient::connect(via, &gw).await;
    let get = Req::get;
    let cases = [
        ("::1", get("/v6"), "A"),
        ("in an IPv6 block", get("/v6-cidr"), "A"),
        ("IPv4 blocks only", get("/v4-only"), "B"),
        ("remote_addr == ::1", get("/v6-var"), "A"),
        ("remote_addr ipmatch ::1/128", get("/v6-ipmatch"), "A"),
        ("remote_addr ipmatch, outside", get("/v6-ipmatch-out"), "B"),
    ];
    expect_routes(&mut c, &cases).await;
}

every_client!(
    every_vars_operator_selects_or_skips_the_route,
    arg_variables_are_percent_decoded,
    has_sees_every_argument_of_the_name,
    uri_variable_is_the_decoded_normalised_path,
    content_type_content_length_and_server_protocol_have_values,
    remote_addrs_match_single_addresses_and_cidr_blocks,
    remote_addrs_and_vars_match_an_ipv6_client,
);
