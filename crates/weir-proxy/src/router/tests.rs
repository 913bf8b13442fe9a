use http::Method;

use super::{strip_port, strip_port_bytes, RouteSpec, RouteTable};

/// A route whose value is its id, matching any host and method.
fn route(id: &str, uris: &[&str]) -> RouteSpec<String> {
    RouteSpec {
        id: id.to_owned(),
        uris: uris.iter().map(|u| (*u).to_owned()).collect(),
        hosts: Vec::new(),
        methods: Vec::new(),
        priority: 0,
        value: id.to_owned(),
    }
}

fn with_hosts(mut spec: RouteSpec<String>, hosts: &[&str]) -> RouteSpec<String> {
    spec.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
    spec
}

fn with_methods(mut spec: RouteSpec<String>, methods: &[Method]) -> RouteSpec<String> {
    spec.methods = methods.to_vec();
    spec
}

fn with_priority(mut spec: RouteSpec<String>, priority: i64) -> RouteSpec<String> {
    spec.priority = priority;
    spec
}

/// The id of the route chosen for a GET to `host` + `path`.
fn get(table: &RouteTable<String>, host: &str, path: &str) -> Option<String> {
    method(table, Method::GET, host, path)
}

fn method(table: &RouteTable<String>, m: Method, host: &str, path: &str) -> Option<String> {
    table.find(host, path, &m).map(|found| {
        assert_eq!(found.value, found.route_id, "value and id travel together");
        found.route_id.to_owned()
    })
}

fn hit(id: &str) -> Option<String> {
    Some(id.to_owned())
}

// ---- uri pattern kinds ----

#[test]
fn exact_path_matches_only_itself() {
    let table = RouteTable::build(vec![route("r", &["/a/b"])]);
    assert_eq!(get(&table, "h", "/a/b"), hit("r"));
    assert_eq!(get(&table, "h", "/a/b/"), None);
    assert_eq!(get(&table, "h", "/a/bc"), None);
    assert_eq!(get(&table, "h", "/a"), None);
}

#[test]
fn slash_star_prefix_matches_deeper_paths_and_trailing_slash_but_not_bare_name() {
    // lua-resty-radixtree stores `/anything/*` as the prefix `/anything/`.
    let table = RouteTable::build(vec![route("r", &["/anything/*"])]);
    assert_eq!(get(&table, "h", "/anything/x/y"), hit("r"));
    assert_eq!(get(&table, "h", "/anything/"), hit("r"));
    assert_eq!(get(&table, "h", "/anything"), None);
    assert_eq!(get(&table, "h", "/anythingelse"), None);
}

#[test]
fn bare_star_prefix_matches_on_raw_characters() {
    let table = RouteTable::build(vec![route("r", &["/blog/bar*"])]);
    assert_eq!(get(&table, "h", "/blog/bar"), hit("r"));
    assert_eq!(get(&table, "h", "/blog/barn"), hit("r"));
    assert_eq!(get(&table, "h", "/blog/bar/a/b"), hit("r"));
    assert_eq!(get(&table, "h", "/blog/ba"), None);
}

#[test]
fn root_catch_all_matches_every_path() {
    let table = RouteTable::build(vec![route("all", &["/*"])]);
    assert_eq!(get(&table, "h", "/"), hit("all"));
    assert_eq!(get(&table, "h", "/x/y/z"), hit("all"));
}

#[test]
fn param_segment_captures_one_segment() {
    let table = RouteTable::build(vec![route("r", &["/users/:id/orders"])]);
    let found = table
        .find("h", "/users/42/orders", &Method::GET)
        .expect("matches");
    assert_eq!(found.route_id, "r");
    assert_eq!(found.param("id"), Some("42"));
    assert_eq!(found.param("other"), None);
    assert_eq!(found.uri_pattern(), "/users/:id/orders");
    assert_eq!(get(&table, "h", "/users/4/2/orders"), None);
    assert_eq!(get(&table, "h", "/users//orders"), None);
    assert_eq!(get(&table, "h", "/users/42/orders/x"), None);
}

#[test]
fn several_params_are_reported_in_pattern_order() {
    let table = RouteTable::build(vec![route("r", &["/orgs/:org/repos/:repo"])]);
    let found = table
        .find("h", "/orgs/apache/repos/apisix", &Method::GET)
        .expect("matches");
    let params: Vec<_> = found.params().collect();
    assert_eq!(params, vec![("org", "apache"), ("repo", "apisix")]);
}

#[test]
fn param_with_trailing_star_exposes_the_rest() {
    let table = RouteTable::build(vec![route("r", &["/files/:bucket/*"])]);
    let found = table
        .find("h", "/files/b1/a/b.txt", &Method::GET)
        .expect("matches");
    assert_eq!(found.param("bucket"), Some("b1"));
    assert_eq!(found.wildcard(), Some("a/b.txt"));
    assert_eq!(get(&table, "h", "/files/b1"), None);
}

#[test]
fn route_with_several_uris_matches_each() {
    let table = RouteTable::build(vec![route("r", &["/a", "/b/*"])]);
    assert_eq!(get(&table, "h", "/a"), hit("r"));
    assert_eq!(get(&table, "h", "/b/c"), hit("r"));
    assert_eq!(get(&table, "h", "/c"), None);
}

// ---- uri precedence ----

#[test]
fn exact_path_beats_prefix() {
    let table = RouteTable::build(vec![route("prefix", &["/a/*"]), route("exact", &["/a/b"])]);
    assert_eq!(get(&table, "h", "/a/b"), hit("exact"));
    assert_eq!(get(&table, "h", "/a/c"), hit("prefix"));
}

#[test]
fn exact_path_beats_prefix_with_higher_priority() {
    let table = RouteTable::build(vec![
        with_priority(route("prefix", &["/a/*"]), 100),
        route("exact", &["/a/b"]),
    ]);
    assert_eq!(get(&table, "h", "/a/b"), hit("exact"));
}

#[test]
fn exact_path_beats_param() {
    let table = RouteTable::build(vec![
        route("param", &["/users/:id"]),
        route("exact", &["/users/me"]),
    ]);
    assert_eq!(get(&table, "h", "/users/me"), hit("exact"));
    assert_eq!(get(&table, "h", "/users/7"), hit("param"));
}

#[test]
fn longer_prefix_beats_shorter_prefix() {
    let table = RouteTable::build(vec![
        route("root", &["/*"]),
        route("foo", &["/blog/foo/*"]),
        route("foo_a", &["/blog/foo/a/*"]),
    ]);
    assert_eq!(get(&table, "h", "/blog/foo/a/b/c"), hit("foo_a"));
    assert_eq!(get(&table, "h", "/blog/foo/gloo"), hit("foo"));
    assert_eq!(get(&table, "h", "/blog/bar"), hit("root"));
}

#[test]
fn longer_prefix_beats_shorter_prefix_with_higher_priority() {
    let table = RouteTable::build(vec![
        with_priority(route("short", &["/a/*"]), 10),
        route("long", &["/a/b/*"]),
    ]);
    assert_eq!(get(&table, "h", "/a/b/c"), hit("long"));
}

#[test]
fn param_beats_prefix_with_same_literal_prefix() {
    let table = RouteTable::build(vec![
        route("prefix", &["/users/*"]),
        route("param", &["/users/:id"]),
    ]);
    assert_eq!(get(&table, "h", "/users/7"), hit("param"));
    assert_eq!(get(&table, "h", "/users/7/x"), hit("prefix"));
}

#[test]
fn priority_beats_pattern_length_within_same_literal_prefix() {
    let table = RouteTable::build(vec![
        route("param", &["/users/:id"]),
        with_priority(route("prefix", &["/users/*"]), 1),
    ]);
    assert_eq!(get(&table, "h", "/users/7"), hit("prefix"));
}

#[test]
fn longer_literal_prefix_beats_param() {
    // `/users/a*` files under `/users/a`, deeper than `/users/:id`'s `/users/`.
    let table = RouteTable::build(vec![
        route("param", &["/users/:id"]),
        route("prefix", &["/users/a*"]),
    ]);
    assert_eq!(get(&table, "h", "/users/abc"), hit("prefix"));
    assert_eq!(get(&table, "h", "/users/xyz"), hit("param"));
}

#[test]
fn param_that_does_not_match_falls_back_to_shorter_prefix() {
    let table = RouteTable::build(vec![
        route("root", &["/*"]),
        route("param", &["/users/:id/orders"]),
    ]);
    assert_eq!(get(&table, "h", "/users/7/invoices"), hit("root"));
}

#[test]
fn higher_priority_wins_on_same_exact_path() {
    let table = RouteTable::build(vec![
        route("low", &["/aa"]),
        with_priority(route("high", &["/aa"]), 2),
    ]);
    assert_eq!(get(&table, "h", "/aa"), hit("high"));
}

#[test]
fn higher_priority_wins_on_same_prefix() {
    let table = RouteTable::build(vec![
        route("low", &["/aa*"]),
        with_priority(route("high", &["/aa*"]), 1),
    ]);
    assert_eq!(get(&table, "h", "/aa/bb"), hit("high"));
}

#[test]
fn negative_priority_loses_to_default() {
    let table = RouteTable::build(vec![
        with_priority(route("neg", &["/aa"]), -1),
        route("zero", &["/aa"]),
    ]);
    assert_eq!(get(&table, "h", "/aa"), hit("zero"));
}

#[test]
fn config_order_breaks_ties() {
    let table = RouteTable::build(vec![
        route("first", &["/aa*"]),
        route("second", &["/aa*"]),
        route("first_exact", &["/x"]),
        route("second_exact", &["/x"]),
    ]);
    assert_eq!(get(&table, "h", "/aa/bb"), hit("first"));
    assert_eq!(get(&table, "h", "/x"), hit("first_exact"));
}

// ---- methods ----

#[test]
fn empty_methods_accept_any_method() {
    let table = RouteTable::build(vec![route("r", &["/a"])]);
    assert_eq!(method(&table, Method::DELETE, "h", "/a"), hit("r"));
    assert_eq!(
        method(
            &table,
            Method::from_bytes(b"PURGE").expect("valid"),
            "h",
            "/a"
        ),
        hit("r")
    );
}

#[test]
fn method_not_listed_is_not_matched() {
    let table = RouteTable::build(vec![with_methods(
        route("r", &["/a"]),
        &[Method::GET, Method::POST],
    )]);
    assert_eq!(method(&table, Method::POST, "h", "/a"), hit("r"));
    assert_eq!(method(&table, Method::PUT, "h", "/a"), None);
    assert_eq!(
        method(&table, Method::HEAD, "h", "/a"),
        None,
        "HEAD is not implied by GET"
    );
}

#[test]
fn method_mismatch_falls_through_to_next_route() {
    let table = RouteTable::build(vec![
        with_methods(route("get_only", &["/a"]), &[Method::GET]),
        route("any", &["/a"]),
    ]);
    assert_eq!(method(&table, Method::GET, "h", "/a"), hit("get_only"));
    assert_eq!(method(&table, Method::POST, "h", "/a"), hit("any"));
}

#[test]
fn method_mismatch_on_exact_falls_through_to_prefix() {
    let table = RouteTable::build(vec![
        route("prefix", &["/a/*"]),
        with_methods(route("exact", &["/a/b"]), &[Method::PUT]),
    ]);
    assert_eq!(method(&table, Method::GET, "h", "/a/b"), hit("prefix"));
}

#[test]
fn method_mismatch_on_longer_prefix_falls_back_to_shorter_prefix() {
    let table = RouteTable::build(vec![
        route("root", &["/*"]),
        with_methods(route("bb", &["/bb/*"]), &[Method::PUT]),
        with_methods(route("bb_aa", &["/bb/aa/*"]), &[Method::PUT]),
    ]);
    assert_eq!(method(&table, Method::GET, "h", "/bb/aa/bb"), hit("root"));
    assert_eq!(method(&table, Method::PUT, "h", "/bb/aa/bb"), hit("bb_aa"));
}

// ---- hosts ----

#[test]
fn exact_host_is_case_insensitive() {
    let table = RouteTable::build(vec![with_hosts(route("r", &["/a"]), &["Foo.COM"])]);
    assert_eq!(get(&table, "foo.com", "/a"), hit("r"));
    assert_eq!(get(&table, "FOO.com", "/a"), hit("r"));
    assert_eq!(get(&table, "www.foo.com", "/a"), None);
}

#[test]
fn host_port_and_trailing_dot_are_ignored() {
    let table = RouteTable::build(vec![with_hosts(route("r", &["/a"]), &["foo.com"])]);
    assert_eq!(get(&table, "foo.com:8080", "/a"), hit("r"));
    assert_eq!(get(&table, "foo.com.", "/a"), hit("r"));
    assert_eq!(get(&table, "FOO.COM.:443", "/a"), hit("r"));
}

#[test]
fn ipv6_host_matches_without_brackets_and_port() {
    let table = RouteTable::build(vec![with_hosts(route("r", &["/a"]), &["::1"])]);
    assert_eq!(get(&table, "[::1]:9080", "/a"), hit("r"));
    assert_eq!(get(&table, "[::1]", "/a"), hit("r"));
}

#[test]
fn wildcard_host_matches_subdomains_at_any_depth() {
    let table = RouteTable::build(vec![with_hosts(route("r", &["/a"]), &["*.example.com"])]);
    assert_eq!(get(&table, "a.example.com", "/a"), hit("r"));
    assert_eq!(get(&table, "a.b.example.com", "/a"), hit("r"));
    assert_eq!(get(&table, "A.Example.COM:80", "/a"), hit("r"));
}

#[test]
fn wildcard_host_does_not_match_bare_domain() {
    let table = RouteTable::build(vec![with_hosts(route("r", &["/a"]), &["*.example.com"])]);
    assert_eq!(get(&table, "example.com", "/a"), None);
    assert_eq!(get(&table, "badexample.com", "/a"), None);
}

#[test]
fn host_route_beats_hostless_route() {
    let table = RouteTable::build(vec![
        route("any", &["/a/b"]),
        with_hosts(route("host", &["/*"]), &["foo.com"]),
    ]);
    // The host group is searched first even though its uri is less specific.
    assert_eq!(get(&table, "foo.com", "/a/b"), hit("host"));
    assert_eq!(get(&table, "bar.com", "/a/b"), hit("any"));
}

#[test]
fn hostless_route_matches_any_host() {
    let table = RouteTable::build(vec![route("any", &["/a"])]);
    assert_eq!(get(&table, "whatever.io", "/a"), hit("any"));
    assert_eq!(get(&table, "", "/a"), hit("any"));
}

#[test]
fn host_route_whose_path_misses_falls_back_to_hostless() {
    let table = RouteTable::build(vec![
        with_hosts(route("host", &["/a"]), &["foo.com"]),
        route("any", &["/b"]),
    ]);
    assert_eq!(get(&table, "foo.com", "/b"), hit("any"));
}

#[test]
fn wildcard_host_loses_to_exact_host() {
    let table = RouteTable::build(vec![
        with_hosts(route("wild", &["/a"]), &["*.foo.com"]),
        with_hosts(route("exact", &["/*"]), &["www.foo.com"]),
    ]);
    assert_eq!(get(&table, "www.foo.com", "/a"), hit("exact"));
    assert_eq!(get(&table, "api.foo.com", "/a"), hit("wild"));
}

#[test]
fn longer_wildcard_suffix_beats_shorter() {
    let table = RouteTable::build(vec![
        with_hosts(route("short", &["/*"]), &["*.com"]),
        with_hosts(route("long", &["/*"]), &["*.foo.com"]),
    ]);
    assert_eq!(get(&table, "a.foo.com", "/x"), hit("long"));
    assert_eq!(get(&table, "a.bar.com", "/x"), hit("short"));
}

#[test]
fn exact_host_miss_falls_back_to_wildcard_then_hostless() {
    let table = RouteTable::build(vec![
        with_hosts(route("exact", &["/e"]), &["a.foo.com"]),
        with_hosts(route("wild", &["/w"]), &["*.foo.com"]),
        route("any", &["/*"]),
    ]);
    assert_eq!(get(&table, "a.foo.com", "/e"), hit("exact"));
    assert_eq!(get(&table, "a.foo.com", "/w"), hit("wild"));
    assert_eq!(get(&table, "a.foo.com", "/x"), hit("any"));
}

#[test]
fn route_with_several_hosts_matches_each() {
    let table = RouteTable::build(vec![with_hosts(
        route("r", &["/a"]),
        &["foo.com", "*.bar.com"],
    )]);
    assert_eq!(get(&table, "foo.com", "/a"), hit("r"));
    assert_eq!(get(&table, "www.bar.com", "/a"), hit("r"));
    assert_eq!(get(&table, "bar.com", "/a"), None);
}

// ---- misc ----

#[test]
fn empty_table_matches_nothing() {
    let table: RouteTable<String> = RouteTable::build(Vec::new());
    assert!(table.is_empty());
    assert_eq!(get(&table, "h", "/"), None);
}

#[test]
fn len_counts_routes_not_uris_or_hosts() {
    let table = RouteTable::build(vec![
        with_hosts(route("a", &["/a", "/b"]), &["x.com", "y.com"]),
        route("b", &["/c"]),
    ]);
    assert_eq!(table.len(), 2);
}

#[test]
fn thousand_host_routes_each_find_their_own() {
    let routes = (0..1000)
        .map(|i| {
            let spec = route(
                &format!("r{i}"),
                &[&format!("/svc/{i}/*"), &format!("/exact/{i}")],
            );
            if i % 2 == 0 {
                with_hosts(spec, &[&format!("h{i}.example.com")])
            } else {
                with_hosts(spec, &[&format!("*.w{i}.example.com")])
            }
        })
        .collect();
    let table = RouteTable::build(routes);
    for i in 0..1000 {
        let host = if i % 2 == 0 {
            format!("h{i}.example.com")
        } else {
            format!("x.w{i}.example.com")
        };
        assert_eq!(
            get(&table, &host, &format!("/svc/{i}/deep/path")),
            Some(format!("r{i}"))
        );
        assert_eq!(
            get(&table, &host, &format!("/exact/{i}")),
            Some(format!("r{i}"))
        );
        assert_eq!(get(&table, &host, "/svc/other"), None);
    }
}

#[test]
fn routing_doc_worked_examples_hold() {
    // The table in docs/routing.md ("Worked examples"); `old` is disabled and
    // therefore not compiled.
    let table = RouteTable::build(vec![
        route("catch-all", &["/*"]),
        route("api", &["/api/*"]),
        route("api-v2", &["/api/v2/*"]),
        route("health", &["/api/health"]),
        route("user", &["/api/users/:id"]),
        route("users-any", &["/api/users/*"]),
        with_methods(
            route("upload", &["/api/upload"]),
            &[Method::POST, Method::PUT],
        ),
        with_hosts(route("shop", &["/*"]), &["shop.example.com"]),
        with_hosts(route("tenants", &["/api/health"]), &["*.example.com"]),
        with_hosts(route("eu-tenants", &["/api/*"]), &["*.eu.example.com"]),
        route("low", &["/dup"]),
        with_priority(route("high", &["/dup"]), 5),
    ]);
    let cases = [
        (Method::GET, "x.io", "/api/health", "health"),
        (Method::GET, "x.io", "/api/v2/items", "api-v2"),
        (Method::GET, "x.io", "/api/v1/items", "api"),
        (Method::GET, "x.io", "/api/users/7", "user"),
        (Method::GET, "x.io", "/api/users/7/cart", "users-any"),
        (Method::POST, "x.io", "/api/upload", "upload"),
        (Method::GET, "x.io", "/api/upload", "api"),
        (Method::GET, "shop.example.com", "/api/health", "shop"),
        (Method::GET, "a.example.com", "/api/health", "tenants"),
        (Method::GET, "a.eu.example.com", "/api/health", "eu-tenants"),
        (Method::GET, "a.example.com", "/other", "catch-all"),
        (Method::GET, "example.com", "/api/health", "health"),
        (Method::GET, "x.io", "/dup", "high"),
        (Method::GET, "x.io", "/legacy", "catch-all"),
    ];
    for (m, host, path, expected) in cases {
        assert_eq!(
            method(&table, m.clone(), host, path),
            hit(expected),
            "{m} {host} {path}"
        );
    }
    let user = table
        .find("x.io", "/api/users/7", &Method::GET)
        .expect("matches");
    assert_eq!(user.param("id"), Some("7"));
}

#[test]
fn ports_are_stripped_from_hosts() {
    assert_eq!(strip_port("example.com:8080"), "example.com");
    assert_eq!(strip_port("example.com"), "example.com");
    assert_eq!(strip_port("[::1]:80"), "[::1]");
    assert_eq!(strip_port("h\u{e9}te.test:80"), "h\u{e9}te.test");
    assert_eq!(strip_port("example.com:"), "example.com");
    assert_eq!(strip_port("a:b"), "a:b");
    assert_eq!(strip_port_bytes(b"shop.test:8080"), b"shop.test");
    assert_eq!(strip_port_bytes(b"\xff:80"), b"\xff");
    assert_eq!(strip_port_bytes(b"[::1"), b"[::1");
    assert_eq!(strip_port_bytes(b""), b"");
}
