use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::json;

use super::*;

#[derive(Default)]
struct Req {
    vars: HashMap<String, Vec<String>>,
}

impl Req {
    fn with(pairs: &[(&str, &str)]) -> Req {
        let mut r = Req::default();
        for (k, v) in pairs {
            r.vars
                .entry((*k).to_owned())
                .or_default()
                .push((*v).to_owned());
        }
        r
    }
}

impl VarLookup for Req {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        self.vars
            .get(name)
            .and_then(|v| v.first())
            .map(|s| Cow::Borrowed(s.as_str()))
    }
    fn var_values(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.vars
            .get(name)
            .map(|v| v.iter().map(|s| Cow::Borrowed(s.as_str())).collect())
            .unwrap_or_default()
    }
}

fn vars(v: serde_json::Value) -> Vars {
    Vars::from_value(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn err(v: serde_json::Value) -> String {
    Vars::from_value(&v).unwrap_err().to_string()
}

fn check(v: serde_json::Value, req: &[(&str, &str)]) -> bool {
    vars(v).eval(&Req::with(req))
}

#[test]
fn empty_list_matches_everything() {
    let v = vars(json!([]));
    assert!(v.is_empty());
    assert!(v.eval(&Req::default()));
}

#[test]
fn equality_and_inequality() {
    let e = json!([["arg_a", "==", "x"]]);
    assert!(check(e.clone(), &[("arg_a", "x")]));
    assert!(!check(e.clone(), &[("arg_a", "X")]));
    assert!(!check(e, &[]), "an absent variable equals no string");
    let n = json!([["arg_a", "==", 5]]);
    assert!(
        check(n.clone(), &[("arg_a", "5.0")]),
        "numbers compare as numbers"
    );
    assert!(check(n.clone(), &[("arg_a", " 5 ")]));
    assert!(check(n.clone(), &[("arg_a", "0x5")]), "Lua reads hex");
    assert!(!check(n, &[("arg_a", "five")]));
    let ne = json!([["arg_a", "~=", "x"]]);
    assert!(check(ne.clone(), &[("arg_a", "y")]));
    assert!(check(ne.clone(), &[]), "absent differs from any value");
    assert!(!check(ne, &[("arg_a", "x")]));
    assert!(check(json!([["arg_a", "~=", 1]]), &[("arg_a", "abc")]));
    let absent = json!([["http_x", "==", null]]);
    assert!(check(absent.clone(), &[]));
    assert!(!check(absent, &[("http_x", "1")]));
    assert!(check(json!([["http_x", "~=", null]]), &[("http_x", "")]));
}

#[test]
fn numeric_comparisons() {
    for (op, v, expected) in [
        (">", "11", true),
        (">", "10", false),
        (">=", "10", true),
        ("<", "9.5", true),
        ("<", "10", false),
        ("<=", "10", true),
        (">", "abc", false),
        (">", "inf", false),
        (">", "1e3", true),
    ] {
        assert_eq!(
            check(json!([["arg_n", op, 10]]), &[("arg_n", v)]),
            expected,
            "{v} {op} 10"
        );
    }
    assert!(
        check(json!([["arg_n", ">", "10"]]), &[("arg_n", "11")]),
        "numeric string operand"
    );
    assert!(!check(json!([["arg_n", ">", 10]]), &[]));
}

#[test]
fn regexes() {
    let re = json!([["uri", "~~", "^/api/v[0-9]+/"]]);
    assert!(check(re.clone(), &[("uri", "/api/v2/users")]));
    assert!(!check(re.clone(), &[("uri", "/API/v2/")]));
    assert!(!check(re, &[]));
    assert!(check(
        json!([["http_user_agent", "~*", "curl"]]),
        &[("http_user_agent", "CURL/8.0")]
    ));
    assert!(
        check(json!([["uri", "~~", "users"]]), &[("uri", "/a/users/1")]),
        "a search, not a full match"
    );
}

#[test]
fn in_has_and_ipmatch() {
    let e = json!([["arg_env", "in", ["dev", "test", 3]]]);
    assert!(check(e.clone(), &[("arg_env", "test")]));
    assert!(check(e.clone(), &[("arg_env", "3")]));
    assert!(!check(e.clone(), &[("arg_env", "prod")]));
    assert!(!check(e, &[]));
    let has = json!([["http_x_tag", "has", "blue"]]);
    assert!(check(
        has.clone(),
        &[("http_x_tag", "red"), ("http_x_tag", "blue")]
    ));
    assert!(!check(has, &[("http_x_tag", "red")]));
    let ip = json!([["remote_addr", "ipmatch", ["10.0.0.0/8", "::1"]]]);
    assert!(check(ip.clone(), &[("remote_addr", "10.2.3.4")]));
    assert!(check(ip.clone(), &[("remote_addr", "::1")]));
    assert!(!check(ip.clone(), &[("remote_addr", "192.168.0.1")]));
    assert!(!check(ip.clone(), &[("remote_addr", "not-an-ip")]));
    assert!(!check(ip, &[]));
    assert!(check(
        json!([["remote_addr", "ipmatch", "127.0.0.1"]]),
        &[("remote_addr", "127.0.0.1")]
    ));
}

#[test]
fn negation_and_groups() {
    let not = json!([["arg_a", "!", "==", "x"]]);
    assert!(check(not.clone(), &[("arg_a", "y")]));
    assert!(
        check(not.clone(), &[]),
        "! inverts: an absent variable is not equal"
    );
    assert!(!check(not, &[("arg_a", "x")]));
    let all = json!([["arg_a", "==", "1"], ["arg_b", "==", "2"]]);
    assert!(check(all.clone(), &[("arg_a", "1"), ("arg_b", "2")]));
    assert!(!check(all, &[("arg_a", "1")]));
    let or = json!(["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]);
    assert!(check(or.clone(), &[("arg_b", "2")]));
    assert!(!check(or, &[]));
    let nested = json!([
        ["uri", "~~", "^/api"],
        [
            "or",
            ["arg_a", "==", "1"],
            ["AND", ["arg_b", ">", 1], ["arg_b", "<", 5]]
        ]
    ]);
    assert!(check(nested.clone(), &[("uri", "/api"), ("arg_b", "3")]));
    assert!(!check(nested.clone(), &[("uri", "/api"), ("arg_b", "7")]));
    assert!(!check(nested, &[("uri", "/web"), ("arg_a", "1")]));
    let not_and = json!(["!AND", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]);
    assert!(check(not_and.clone(), &[("arg_a", "1")]));
    assert!(!check(not_and, &[("arg_a", "1"), ("arg_b", "2")]));
    let not_or = json!(["!OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]);
    assert!(check(not_or.clone(), &[]));
    assert!(!check(not_or, &[("arg_b", "2")]));
    let lists = json!([[["arg_a", "==", "1"], ["arg_b", "==", "2"]]]);
    assert!(
        check(lists.clone(), &[("arg_a", "1"), ("arg_b", "2")]),
        "a nested list is AND"
    );
    assert!(!check(lists, &[("arg_a", "1")]));
}

#[test]
fn operator_names_are_case_insensitive_and_legacy_pairs_mean_equal() {
    assert!(check(json!([["arg_a", "IN", ["x"]]]), &[("arg_a", "x")]));
    assert!(check(
        json!([["arg_a", "IPMATCH", "1.2.3.4"]]),
        &[("arg_a", "1.2.3.4")]
    ));
    // lua-resty-expr reads `[var, value]` as `==` with the value lower-cased.
    let legacy = json!([["arg_a", "Json"]]);
    assert!(check(legacy.clone(), &[("arg_a", "json")]));
    assert!(!check(legacy, &[("arg_a", "Json")]));
    assert!(check(json!([["arg_a", 5]]), &[("arg_a", "5")]));
}

#[test]
fn errors_name_the_position() {
    let cases = [
        (json!(["arg_a", "==", "x"]), "", "must be a list of its own"),
        (
            json!([["arg_a", "=", "x"]]),
            "[0][1]",
            "unknown operator \"=\"",
        ),
        (json!([["arg_a", "!=", "x"]]), "[0][1]", "write \"~=\""),
        (
            json!([["arg_a", "==", "x"], ["arg_b", "~~", "(unclosed"]]),
            "[1][2]",
            "invalid regular expression",
        ),
        (
            json!([["arg_a", "~~", "(?=look)"]]),
            "[0][2]",
            "look-around",
        ),
        (
            json!([["arg_a", ">", "ten"]]),
            "[0][2]",
            "\"ten\" is not a number",
        ),
        (json!([["arg_a", ">", true]]), "[0][2]", "expected a number"),
        (
            json!([["arg_a", "==", true]]),
            "[0][2]",
            "expected a string, a number or null",
        ),
        (json!([["arg_a", "in", "x"]]), "[0][2]", "expected a list"),
        (
            json!([["arg_a", "in", ["x", {"a": 1}]]]),
            "[0][2][1]",
            "expected a string or a number",
        ),
        (
            json!([["remote_addr", "ipmatch", ["10.0.0.0/8", "10.0.0.300"]]]),
            "[0][2][1]",
            "\"10.0.0.300\" is not an IPv4/IPv6 address",
        ),
        (
            json!([["remote_addr", "ipmatch", []]]),
            "[0][2]",
            "at least one address",
        ),
        (
            json!([["arg_a", "x", "==", "y"]]),
            "[0][1]",
            "expected \"!\"",
        ),
        (
            json!([["arg_a", "==", "x", "y", "z"]]),
            "[0]",
            "this one has 5 items",
        ),
        (json!([["arg_a"]]), "[0]", "operator and value are missing"),
        (json!([["arg_a", "in"]]), "[0][1]", "needs a value"),
        (
            json!([["nosuchvar", "==", "x"]]),
            "[0][0]",
            "unknown variable \"nosuchvar\"",
        ),
        (json!([["arg_", "==", "x"]]), "[0][0]", "unknown variable"),
        (json!([[]]), "[0]", "empty expression"),
        (
            json!([["OR", ["arg_a", "==", "x"]]]),
            "[0]",
            "at least two expressions",
        ),
        (
            json!(["AND", ["arg_a", "==", "x"]]),
            "",
            "at least two expressions",
        ),
        (
            json!([["OR", ["arg_a", "==", "x"], ["bad", "==", 1]]]),
            "[0][2][0]",
            "unknown variable",
        ),
        (json!([[5, "==", 1]]), "[0][0]", "expected a variable name"),
        (json!({"a": 1}), "", "a list of expressions"),
        (json!([["arg_a", "!", "!", 1]]), "[0][2]", "goes second"),
    ];
    for (value, path, message) in cases {
        let e = Vars::from_value(&value).unwrap_err();
        assert_eq!(e.path, path, "{value}: {e}");
        assert!(e.message.contains(message), "{value}: {e}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let mut v = json!(["arg_a", "==", "x"]);
    for _ in 0..40 {
        v = json!([v]);
    }
    assert!(err(v).contains("nested more than 16 levels"));
}

#[test]
fn serializes_back_to_an_equivalent_list() {
    let src = json!([
        ["arg_a", "==", "x"],
        ["arg_n", "!", ">", 3],
        ["OR", ["uri", "~*", "^/A"], ["arg_b", "in", ["p", 2]]],
        ["remote_addr", "ipmatch", ["10.0.0.1/8"]],
        ["http_x", "==", null],
        [["arg_c", "has", "q"]]
    ]);
    let parsed = vars(src);
    let out = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        out,
        json!([
            ["arg_a", "==", "x"],
            ["arg_n", "!", ">", 3],
            ["OR", ["uri", "~*", "^/A"], ["arg_b", "in", ["p", 2]]],
            ["remote_addr", "ipmatch", ["10.0.0.0/8"]],
            ["http_x", "==", null],
            [["arg_c", "has", "q"]]
        ])
    );
    assert_eq!(vars(out), parsed);
    assert_eq!(
        parsed.var_names(),
        [
            "arg_a",
            "arg_n",
            "uri",
            "arg_b",
            "remote_addr",
            "http_x",
            "arg_c"
        ]
    );
}

#[test]
fn templates() {
    let t = VarsTemplate::parse("$host-${arg_a}$remote_addr").unwrap();
    let req = Req::with(&[("host", "h"), ("remote_addr", "1.2.3.4")]);
    assert_eq!(t.render(&req), "h-1.2.3.4");
    assert_eq!(
        t.var_names().collect::<Vec<_>>(),
        ["host", "arg_a", "remote_addr"]
    );
    assert_eq!(t.to_string(), "${host}-${arg_a}${remote_addr}");
    assert!(VarsTemplate::parse("plain")
        .unwrap_err()
        .contains("names no variable"));
    assert!(VarsTemplate::parse("$nope")
        .unwrap_err()
        .contains("unknown variable"));
    assert!(VarsTemplate::parse("a$")
        .unwrap_err()
        .contains("followed by a variable name"));
    assert!(VarsTemplate::parse("${host")
        .unwrap_err()
        .contains("unterminated"));
}
