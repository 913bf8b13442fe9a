//! The traffic plugins over real sockets: `ip-restriction`,
//! `ua-restriction`, `referer-restriction`, `cors`, `request-id`, `real-ip`,
//! `redirect` and `echo` (the `_meta` settings and global rules are in
//! `plugins_meta.rs`). Status codes, bodies and header fields are APISIX's
//! (apisix/plugins/*.lua; a plugin's rejection is `{"message":...}` and a
//! newline, as `core.response.exit` sends a table).
//!
//! Each case runs on every client of `every_client!`: HTTP/1.1 byte by byte
//! over plain TCP (fast path), TLS (fast path) and plain TCP with
//! `http.fast_path: false` (general path), and HTTP/2 with prior knowledge.
//! Nodes are raw-socket backends, so a test sees exactly what weir
//! forwarded, and whether anything was forwarded at all.

mod common;
mod traffic_kit;

use common::wire::*;
use serde_json::{json, Value};
use traffic_kit::*;

// ---------------------------------------------------------------------------
// ip-restriction, ua-restriction, referer-restriction
// ---------------------------------------------------------------------------

async fn ip_restriction_whitelists_and_blacklists_addresses_and_cidr_blocks(via: Via) {
    let n = node("n").await;
    let ipr = |conf: Value| json!({ "ip-restriction": conf });
    let (_gw, mut c) = start(
        via,
        json!([
            route("/w-in/*", &n, ipr(json!({"whitelist": ["127.0.0.0/8"]}))),
            route(
                "/w-one/*",
                &n,
                ipr(json!({"whitelist": ["10.0.0.0/8", "127.0.0.1"]}))
            ),
            route(
                "/w-out/*",
                &n,
                ipr(json!({"whitelist": ["10.0.0.0/8", "192.0.2.1", "::1"]}))
            ),
            route(
                "/b-in/*",
                &n,
                ipr(
                    json!({"blacklist": ["127.0.0.1"], "message": "go away", "response_code": 404})
                )
            ),
            route(
                "/b-cidr/*",
                &n,
                ipr(json!({"blacklist": ["10.0.0.0/8", "127.0.0.0/24"]}))
            ),
            route(
                "/b-out/*",
                &n,
                ipr(json!({"blacklist": ["10.0.0.0/8", "::1"]}))
            ),
        ]),
    )
    .await;
    for path in ["/w-in/a", "/w-one/a", "/b-out/a"] {
        let r = c.send(&Req::get(path)).await;
        assert_forwarded(&r, "n", path, path);
    }
    let r = c.send(&Req::get("/w-out/a")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "not in the whitelist",
    );
    let r = c.send(&Req::get("/b-in/a")).await;
    assert_refused(&r, 404, "go away", "blacklisted, custom message and code");
    let r = c.send(&Req::get("/b-cidr/a")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "in a blacklisted block",
    );
    assert_eq!(n.seen().len(), 3, "refused requests never reach the node");
    // The connection is still good after the refusals.
    let r = c.send(&Req::get("/w-in/after")).await;
    assert_forwarded(&r, "n", "/w-in/after", "after the refusals");
}

async fn ua_restriction_allowlist_denylist_and_missing_user_agent(via: Via) {
    let n = node("n").await;
    let uar = |conf: Value| json!({ "ua-restriction": conf });
    let (_gw, mut c) = start(
        via,
        json!([
            route(
                "/allow/*",
                &n,
                uar(json!({"allowlist": ["^curl/", "Firefox/\\d+"]}))
            ),
            route(
                "/deny/*",
                &n,
                uar(json!({"denylist": ["(?i)bot"], "message": "bots go home"}))
            ),
            route(
                "/bypass/*",
                &n,
                uar(json!({"denylist": ["bot"], "bypass_missing": true}))
            ),
        ]),
    )
    .await;
    let ua = |path: &str, agent: &str| Req::get(path).header("User-Agent", agent);
    for (what, req) in [
        ("allowlisted", ua("/allow/1", "curl/8.5.0")),
        (
            "allowlisted, second rule",
            ua("/allow/2", "Mozilla/5.0 Firefox/120.0"),
        ),
        ("not denied", ua("/deny/3", "curl/8.5.0")),
        ("missing, bypass_missing", Req::get("/bypass/4")),
        (
            "not denied (case-sensitive rule)",
            ua("/bypass/5", "GoogleBot"),
        ),
    ] {
        let r = c.send(&req).await;
        assert_forwarded(&r, "n", &req.path, what);
    }
    for (what, req, message) in [
        (
            "not allowlisted",
            ua("/allow/x", "Wget/1.21"),
            "Not allowed",
        ),
        ("missing, allowlist", Req::get("/allow/x"), "Not allowed"),
        (
            "denied, custom message",
            ua("/deny/x", "GoogleBot/2.1"),
            "bots go home",
        ),
        ("missing, denylist", Req::get("/deny/x"), "bots go home"),
        (
            "denied with bypass_missing",
            ua("/bypass/x", "a bot"),
            "Not allowed",
        ),
    ] {
        let r = c.send(&req).await;
        assert_refused(&r, 403, message, what);
    }
    assert_eq!(n.seen().len(), 5, "refused requests never reach the node");
}

async fn referer_restriction_whitelist_blacklist_and_bypass_missing(via: Via) {
    let n = node("n").await;
    let rr = |conf: Value| json!({ "referer-restriction": conf });
    let good = json!(["good.example", "*.good.example"]);
    let (_gw, mut c) = start(
        via,
        json!([
            route("/w/*", &n, rr(json!({"whitelist": good}))),
            route(
                "/wb/*",
                &n,
                rr(json!({"whitelist": good, "bypass_missing": true}))
            ),
            route(
                "/b/*",
                &n,
                rr(json!({"blacklist": ["*.spam.example"], "message": "no spam"}))
            ),
        ]),
    )
    .await;
    let from = |path: &str, referer: &str| Req::get(path).header("Referer", referer);
    for (what, req) in [
        ("whitelisted host", from("/w/1", "http://good.example/page")),
        (
            "whitelisted suffix, port",
            from("/w/2", "https://a.good.example:8443/x?y"),
        ),
        ("missing, bypass_missing", Req::get("/wb/3")),
        ("not blacklisted", from("/b/4", "http://good.example/")),
    ] {
        let r = c.send(&req).await;
        assert_forwarded(&r, "n", &req.path, what);
    }
    let default = "Your referer host is not allowed";
    for (what, req, message) in [
        (
            "not whitelisted",
            from("/w/x", "http://evil.example/"),
            default,
        ),
        (
            "suffix is not the bare domain",
            from("/w/x", "http://xgood.example/"),
            default,
        ),
        ("missing", Req::get("/w/x"), default),
        (
            "not whitelisted, bypass_missing",
            from("/wb/x", "http://evil.example/"),
            default,
        ),
        (
            "blacklisted",
            from("/b/x", "http://a.spam.example/"),
            "no spam",
        ),
        ("missing, blacklist", Req::get("/b/x"), "no spam"),
    ] {
        let r = c.send(&req).await;
        assert_refused(&r, 403, message, what);
    }
    assert_eq!(n.seen().len(), 4, "refused requests never reach the node");
}

// ---------------------------------------------------------------------------
// cors
// ---------------------------------------------------------------------------

fn vary_has_origin(r: &Resp) -> bool {
    r.head.has_token("vary", "origin")
}

async fn cors_preflight_is_answered_by_weir_and_origins_are_checked(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start(
        via,
        json!([
            route(
                "/list/*",
                &n,
                json!({"cors": {
                    "allow_origins": "http://a.example,http://b.example",
                    "allow_methods": "GET,POST",
                    "allow_headers": "X-Token",
                    "expose_headers": "X-Node",
                    "max_age": 60,
                }})
            ),
            route("/star/*", &n, json!({"cors": {}})),
            route(
                "/mirror/*",
                &n,
                json!({"cors": {
                    "allow_origins": "**",
                    "allow_methods": "GET",
                    "allow_headers": "**",
                    "allow_credential": true,
                }})
            ),
        ]),
    )
    .await;

    // A preflight from an allowed origin: 200, empty, never forwarded.
    let preflight = |path: &str, origin: &str| {
        Req::new("OPTIONS", path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "X-Token, X-Other")
    };
    let r = c.send(&preflight("/list/p", "http://b.example")).await;
    assert_eq!(r.status, 200, "preflight: {r:?}");
    assert!(r.body.is_empty(), "a preflight has no body: {r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://b.example")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("X-Token"));
    assert_eq!(r.header("access-control-max-age"), Some("60"));
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Node"));
    assert!(
        r.header("access-control-allow-credentials").is_none(),
        "{r:?}"
    );
    assert!(
        vary_has_origin(&r),
        "Vary: Origin on a listed origin: {r:?}"
    );

    // A preflight from another origin: still 200, but no CORS fields.
    let r = c.send(&preflight("/list/p", "http://c.example")).await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    for field in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert!(
            r.header(field).is_none(),
            "{field} for a disallowed origin: {r:?}"
        );
    }
    assert!(vary_has_origin(&r), "{r:?}");
    assert!(
        n.seen().is_empty(),
        "preflights never reach the node: {:?}",
        n.seen()
    );

    // Simple requests are forwarded; the node's answer gets the fields.
    let r = c
        .send(&Req::get("/list/g").header("Origin", "http://a.example"))
        .await;
    assert_forwarded(&r, "n", "/list/g", "allowed origin");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Node"));
    assert!(vary_has_origin(&r), "{r:?}");
    let r = c
        .send(&Req::get("/list/g").header("Origin", "http://c.example"))
        .await;
    assert_forwarded(&r, "n", "/list/g", "disallowed origin");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    assert!(vary_has_origin(&r), "{r:?}");

    // The defaults: any origin, `*`, and no Vary: Origin.
    let r = c
        .send(&Req::get("/star/g").header("Origin", "http://x.example"))
        .await;
    assert_forwarded(&r, "n", "/star/g", "default cors");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-methods"), Some("*"));
    assert_eq!(r.header("access-control-allow-headers"), Some("*"));
    assert_eq!(r.header("access-control-max-age"), Some("5"));
    assert!(!vary_has_origin(&r), "no Vary: Origin with '*': {r:?}");
    let r = c.send(&preflight("/star/p", "http://x.example")).await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // `**`: the origin and the requested headers mirrored, credentials.
    let r = c.send(&preflight("/mirror/p", "http://m.example")).await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://m.example")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("X-Token, X-Other")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(vary_has_origin(&r), "{r:?}");
    assert_eq!(n.seen().len(), 3, "only the three GETs reached the node");
}

/// The CORS fields are set on every answer for the route, weir's own
/// included (APISIX sets them in `header_filter`, which runs for every
/// response): a plugin's refusal, 502 from a dead node, 503 from an empty
/// node set. A request that matches no route has no CORS plugin.
async fn cors_fields_are_on_weirs_own_answers_for_the_route(via: Via) {
    let dead = common::closed_port().await;
    let cors = json!({"allow_origins": "http://a.example"});
    let (_gw, mut c) = start(
        via,
        json!([
            {"uri": "/dead/*", "upstream": {"nodes": {dead.to_string(): 1}}, "plugins": {"cors": cors}},
            {"uri": "/empty/*", "upstream": {"nodes": {}}, "plugins": {"cors": cors}},
            {"uri": "/refused/*", "upstream": {"nodes": {dead.to_string(): 1}}, "plugins": {
                "cors": cors,
                "ip-restriction": {"blacklist": ["127.0.0.0/8"], "response_code": 404},
            }},
        ]),
    )
    .await;
    let origin = |path: &str| Req::get(path).header("Origin", "http://a.example");
    for (path, status, body) in [
        (
            "/dead/x",
            502,
            "{\"error_msg\":\"502 Bad Gateway\"}".to_owned(),
        ),
        (
            "/empty/x",
            503,
            "{\"error_msg\":\"503 Service Unavailable: no available node\"}".to_owned(),
        ),
        (
            "/refused/x",
            404,
            format!("{}\n", json!({"message": "Your IP address is not allowed"})),
        ),
    ] {
        let r = c.send(&origin(path)).await;
        assert_eq!((r.status, r.text()), (status, body), "{path}: {r:?}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://a.example"),
            "{path}: {r:?}"
        );
        assert!(vary_has_origin(&r), "{path}: {r:?}");
    }
    let r = c.send(&origin("/nowhere")).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

// ---------------------------------------------------------------------------
// request-id
// ---------------------------------------------------------------------------

/// A version-4 UUID in its canonical text form.
fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
        && b[14] == b'4'
}

async fn request_id_is_generated_sent_upstream_and_returned_or_kept(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start(
        via,
        json!([
            route("/rid/*", &n, json!({"request-id": {}})),
            route(
                "/nano/*",
                &n,
                json!({"request-id": {
                    "header_name": "X-Trace", "include_in_response": false, "algorithm": "nanoid",
                }})
            ),
            route(
                "/refused/*",
                &n,
                json!({
                    "request-id": {},
                    "ip-restriction": {"whitelist": ["10.0.0.0/8"]},
                })
            ),
        ]),
    )
    .await;

    let mut ids = Vec::new();
    for i in 0..2 {
        let path = format!("/rid/{i}");
        let r = c.send(&Req::get(&path)).await;
        assert_forwarded(&r, "n", &path, "request-id");
        let seen = n.seen().pop().expect("the node saw the request");
        let upstream = seen.head.all("x-request-id");
        assert_eq!(
            upstream.len(),
            1,
            "one X-Request-Id upstream: {:?}",
            seen.head
        );
        assert!(is_uuid_v4(upstream[0]), "a uuid: {upstream:?}");
        assert_eq!(
            r.header("x-request-id"),
            Some(upstream[0]),
            "the same id in the response"
        );
        ids.push(upstream[0].to_owned());
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");

    // An incoming id is kept, both ways.
    let r = c
        .send(&Req::get("/rid/kept").header("X-Request-Id", "client-id-7"))
        .await;
    assert_forwarded(&r, "n", "/rid/kept", "incoming id");
    let seen = n.seen().pop().expect("the node saw the request");
    assert_eq!(
        seen.head.all("x-request-id"),
        ["client-id-7"],
        "{:?}",
        seen.head
    );
    assert_eq!(r.head.all("x-request-id"), ["client-id-7"], "{r:?}");

    // Another field, another algorithm, not in the response.
    let r = c.send(&Req::get("/nano/1")).await;
    assert_forwarded(&r, "n", "/nano/1", "nanoid");
    let seen = n.seen().pop().expect("the node saw the request");
    let id = seen.head.get("x-trace").expect("X-Trace upstream");
    assert_eq!(id.len(), 21, "a nanoid: {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id:?}"
    );
    assert!(!seen.head.has("x-request-id"), "{:?}", seen.head);
    assert!(
        r.header("x-trace").is_none(),
        "include_in_response: false: {r:?}"
    );

    // weir's own answers carry the id too.
    let r = c.send(&Req::get("/refused/1")).await;
    assert_refused(&r, 403, "Your IP address is not allowed", "refused");
    assert!(is_uuid_v4(r.header("x-request-id").unwrap_or("")), "{r:?}");
    assert_eq!(n.seen().len(), 4);
}

// ---------------------------------------------------------------------------
// real-ip
// ---------------------------------------------------------------------------

async fn real_ip_is_believed_only_from_trusted_peers(via: Via) {
    let n = node("n").await;
    let real_ip =
        |trusted: Value| json!({"source": "http_x_forwarded_for", "trusted_addresses": trusted});
    let trusted = || real_ip(json!(["127.0.0.0/8", "::1"]));
    let untrusted = || real_ip(json!(["10.0.0.0/8"]));
    let allow = json!({"whitelist": ["192.0.2.0/24"]});
    let deny = json!({"blacklist": ["192.0.2.0/24"]});
    let (_gw, mut c) = start(
        via,
        json!([
            {"uri": "/t/echo", "plugins": {"real-ip": trusted(), "echo": {}}},
            {"uri": "/u/echo", "plugins": {"real-ip": untrusted(), "echo": {}}},
            {"uri": "/r/echo", "plugins": {"real-ip": {
                "source": "http_x_forwarded_for",
                "trusted_addresses": ["127.0.0.0/8", "192.0.2.0/24"],
                "recursive": true,
            }, "echo": {}}},
            {"uri": "/h/echo", "plugins": {"real-ip": {"source": "http_x_client"}, "echo": {}}},
            route("/t/allow", &n, json!({"real-ip": trusted(), "ip-restriction": allow})),
            route("/u/allow", &n, json!({"real-ip": untrusted(), "ip-restriction": allow})),
            route("/t/deny", &n, json!({"real-ip": trusted(), "ip-restriction": deny})),
            route("/u/deny", &n, json!({"real-ip": untrusted(), "ip-restriction": deny})),
        ]),
    )
    .await;
    let xff = |path: &str| Req::get(path).header("X-Forwarded-For", "198.51.100.1, 192.0.2.7");

    // echo's origin: the last X-Forwarded-For hop from a trusted peer.
    assert_eq!(echo_origin(&c.send(&xff("/t/echo")).await), "192.0.2.7");
    assert_eq!(echo_origin(&c.send(&xff("/u/echo")).await), "127.0.0.1");
    assert_eq!(
        echo_origin(&c.send(&Req::get("/t/echo")).await),
        "127.0.0.1"
    );
    // recursive: the rightmost address that is not trusted.
    let r = c
        .send(&Req::get("/r/echo").header("X-Forwarded-For", "203.0.113.9, 192.0.2.7"))
        .await;
    assert_eq!(echo_origin(&r), "203.0.113.9");
    // Without trusted_addresses every peer is believed; a port is dropped.
    let r = c
        .send(&Req::get("/h/echo").header("X-Client", "192.0.2.44:5000"))
        .await;
    assert_eq!(echo_origin(&r), "192.0.2.44");

    // ip-restriction decides on the real address.
    let r = c.send(&xff("/t/allow")).await;
    assert_forwarded(
        &r,
        "n",
        "/t/allow",
        "trusted peer, whitelisted real address",
    );
    let r = c.send(&xff("/u/allow")).await;
    assert_refused(&r, 403, "Your IP address is not allowed", "untrusted peer");
    let r = c.send(&xff("/t/deny")).await;
    assert_refused(
        &r,
        403,
        "Your IP address is not allowed",
        "trusted, blacklisted",
    );
    let r = c.send(&xff("/u/deny")).await;
    assert_forwarded(
        &r,
        "n",
        "/u/deny",
        "untrusted peer: its own address decides",
    );
    let r = c.send(&Req::get("/t/deny")).await;
    assert_forwarded(&r, "n", "/t/deny", "no X-Forwarded-For");
    assert_eq!(n.seen().len(), 3);
}

// ---------------------------------------------------------------------------
// redirect
// ---------------------------------------------------------------------------

async fn redirect_uri_ret_code_and_http_to_https(via: Via) {
    let n = node("n").await;
    let (_gw, mut c) = start(
        via,
        json!([
            route(
                "/old/*",
                &n,
                json!({"redirect": {"uri": "/new/$arg_id?from=${uri}", "ret_code": 301}})
            ),
            route(
                "/tmp/*",
                &n,
                json!({"redirect": {"uri": "https://$host/elsewhere"}})
            ),
            route(
                "/secure/*",
                &n,
                json!({"redirect": {"http_to_https": true}})
            ),
        ]),
    )
    .await;
    let r = c.send(&Req::get("/old/x?id=7")).await;
    assert_redirect(
        &r,
        301,
        "/new/7?from=/old/x",
        "uri with variables, ret_code",
    );
    let r = c.send(&Req::get("/tmp/x")).await;
    assert_redirect(&r, 302, "https://wire.test/elsewhere", "default ret_code");

    let secure = |method: &str| Req::new(method, "/secure/p?q=1").header("Host", "wire.test:8080");
    let location = "https://wire.test/secure/p?q=1";
    if via == Via::H1(Transport::Tls) {
        // Already https: nothing to redirect.
        for method in ["GET", "POST"] {
            let r = c.send(&secure(method)).await;
            assert_forwarded(&r, "n", "/secure/p?q=1", "https request");
        }
    } else {
        let r = c.send(&secure("GET")).await;
        assert_redirect(&r, 301, location, "http_to_https, GET");
        let r = c.send(&secure("HEAD")).await;
        assert_eq!(
            (r.status, r.header("location")),
            (301, Some(location)),
            "http_to_https, HEAD: {r:?}"
        );
        let r = c.send(&secure("POST").body("data")).await;
        assert_redirect(&r, 308, location, "http_to_https, POST");
        let r = c.send(&secure("PUT")).await;
        assert_redirect(&r, 308, location, "http_to_https, PUT");
        // A TLS-terminating proxy in front said the request was https.
        let r = c
            .send(&secure("GET").header("X-Forwarded-Proto", "https"))
            .await;
        assert_forwarded(&r, "n", "/secure/p?q=1", "X-Forwarded-Proto: https");
    }
}

// ---------------------------------------------------------------------------
// echo
// ---------------------------------------------------------------------------

async fn echo_answers_with_a_description_of_the_request(via: Via) {
    let (_gw, mut c) = start(
        via,
        json!([
            {"uri": "/echo/*", "plugins": {"echo": {}}},
            {"uri": "/teapot", "plugins": {"echo": {"status": 418}}},
        ]),
    )
    .await;
    let req = Req::new("POST", "/echo/x?a=1&b=two")
        .header("X-Thing", "yes")
        .header("Content-Type", "text/plain")
        .body("hello, echo");
    let r = c.send(&req).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "{r:?}"
    );
    let v: Value = serde_json::from_slice(&r.body).expect("echo answers JSON");
    let scheme = via.transport().scheme();
    assert_eq!(v["method"], "POST", "{v}");
    assert_eq!(v["args"], json!({"a": "1", "b": "two"}), "{v}");
    assert_eq!(v["data"], "hello, echo", "{v}");
    assert_eq!(v["headers"]["X-Thing"], "yes", "{v}");
    assert_eq!(v["origin"], "127.0.0.1", "{v}");
    assert_eq!(
        v["url"],
        format!("{scheme}://wire.test/echo/x?a=1&b=two"),
        "{v}"
    );
    assert!(r.body.ends_with(b"\n"), "{r:?}");

    let r = c.send(&Req::get("/teapot")).await;
    assert_eq!(r.status, 418, "{r:?}");
    let v: Value = serde_json::from_slice(&r.body).expect("echo answers JSON");
    assert_eq!(
        (v["method"].as_str(), v["data"].as_str()),
        (Some("GET"), Some(""))
    );
}

every_client!(
    ip_restriction_whitelists_and_blacklists_addresses_and_cidr_blocks,
    ua_restriction_allowlist_denylist_and_missing_user_agent,
    referer_restriction_whitelist_blacklist_and_bypass_missing,
    cors_preflight_is_answered_by_weir_and_origins_are_checked,
    cors_fields_are_on_weirs_own_answers_for_the_route,
    request_id_is_generated_sent_upstream_and_returned_or_kept,
    real_ip_is_believed_only_from_trusted_peers,
    redirect_uri_ret_code_and_http_to_https,
    echo_answers_with_a_description_of_the_request,
);
