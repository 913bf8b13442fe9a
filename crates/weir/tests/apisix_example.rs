//! `examples/apisix-standalone.yaml` serves as APISIX documents it: the file
//! is loaded as an APISIX standalone file (`apisix.yaml`, `#END`,
//! `${{VAR:=default}}` with an empty environment) with only its node
//! addresses replaced by test nodes, and requests exercise its services,
//! consumers and credentials, plugin configs, global rules and routes.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::wire::{ok, Answer, RawBackend, Seen};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::time::timeout;

const STEP: std::time::Duration = std::time::Duration::from_secs(10);

/// A node answering its name, with `X-Node: <name>`.
async fn named(name: &'static str) -> RawBackend {
    RawBackend::start(move |_| {
        Answer::Send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Node: {name}\r\n\r\n{name}",
                name.len()
            )
            .into_bytes(),
        )
    })
    .await
}

/// The requests a node saw, health probes left out.
fn traffic(b: &RawBackend) -> Vec<Seen> {
    b.seen()
        .into_iter()
        .filter(|s| s.target != "/status/200")
        .collect()
}

struct Example {
    gateway: weir::Gateway,
    httpbin: [RawBackend; 2],
    backup: RawBackend,
    admin: RawBackend,
    _dir: tempfile::TempDir,
}

/// Replaces `from` (which must occur exactly once) with `to`.
fn substitute(text: &mut String, from: &str, to: &str) {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the example no longer has exactly one {from:?}"
    );
    *text = text.replacen(from, to, 1);
}

impl Example {
    async fn start() -> Example {
        let httpbin = [named("httpbin-1").await, named("httpbin-2").await];
        let backup = named("backup").await;
        let admin = RawBackend::start(|_| Answer::Send(ok("admin"))).await;
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/apisix-standalone.yaml"
        );
        let mut text = std::fs::read_to_string(file).expect("read the example");
        let port = |b: &RawBackend| b.node().rsplit_once(':').expect("host:port").1.to_owned();
        for (from, b) in [
            ("host: 10.0.5.10, port: 8080", &httpbin[0]),
            ("host: 10.0.5.11, port: 8080", &httpbin[1]),
            ("host: 10.0.5.99, port: 8080", &backup),
        ] {
            substitute(
                &mut text,
                from,
                &format!("host: 127.0.0.1, port: {}", port(b)),
            );
        }
        substitute(
            &mut text,
            "\"10.0.6.10:9000\"",
            &format!("\"{}\"", admin.node()),
        );
        substitute(
            &mut text,
            "\"10.0.5.99:8080\"",
            &format!("\"{}\"", backup.node()),
        );

        // Loaded as APISIX's own file name: the #END rule applies.
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("apisix.yaml");
        std::fs::write(&path, &text).expect("write the copy");
        let no_env = |_: &str| -> Option<String> { None };
        let options = weir_config::LoadOptions {
            env: &no_env,
            ..Default::default()
        };
        let mut config = weir_config::load_file_with(path.to_str().expect("UTF-8 path"), &options)
            .unwrap_or_else(|e| panic!("the example does not load: {e}"));
        for l in &mut config.gateway.listeners {
            l.address = "127.0.0.1:0".into();
        }
        config.gateway.control.address = "127.0.0.1:0".into();
        config.gateway.access_log.enabled = false;
        let gateway = weir::Gateway::start(config)
            .await
            .unwrap_or_else(|e| panic!("the example does not start: {e:#}"));
        Example {
            gateway,
            httpbin,
            backup,
            admin,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gateway.proxy_addr()
    }

    /// Requests that reached the primary httpbin nodes.
    fn httpbin_traffic(&self) -> Vec<Seen> {
        self.httpbin.iter().flat_map(traffic).collect()
    }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (n, v) in fields {
        b = b.header(*n, *v);
    }
    let resp = timeout(
        STEP,
        client.request(b.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = timeout(STEP, resp.into_body().collect())
        .await
        .expect("body timed out")
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn message(m: &str) -> String {
    format!("{}\n", json!({ "message": m }))
}

const API: &str = "api.example.com";

/// The service's key-auth: the consumer's key and a credential's key pass
/// (the node learns who called), a missing or wrong key gets 401; the
/// service's request-id reaches the node and the client.
#[tokio::test]
async fn keys_of_consumers_and_credentials_authenticate_on_the_service_routes() {
    let ex = Example::start().await;
    let r = send(ex.addr(), "GET", API, "/anything/a", &[]).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, message("Missing API key in request"))
    );
    assert_eq!(r.header("www-authenticate"), Some("apikey realm=\"key\""));
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/a",
        &[("apikey", "not-a-key")],
    )
    .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, message("Invalid API key in request"))
    );
    assert!(
        ex.httpbin_traffic().is_empty(),
        "unauthenticated requests reached a node"
    );

    // The consumer's own key (the ${{JACK_API_KEY:=jack-demo-key}} default).
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/b",
        &[("apikey", "jack-demo-key")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("httpbin-"), "{}", r.body);
    let seen = ex.httpbin_traffic().pop().expect("a node saw it");
    assert_eq!(
        seen.head.get("x-consumer-username"),
        Some("jack"),
        "{:?}",
        seen.head
    );
    assert_eq!(
        seen.head.get("x-consumer-custom-id"),
        Some("1001"),
        "{:?}",
        seen.head
    );
    let id = seen
        .head
        .get("x-request-id")
        .expect("the service's request-id");
    assert_eq!(
        r.header("x-request-id"),
        Some(id),
        "the same id to the client"
    );

    // A credential of the same consumer.
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/c",
        &[("apikey", "jack-laptop-key")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = ex
        .httpbin_traffic()
        .into_iter()
        .find(|s| s.target == "/anything/c")
        .expect("a node saw it");
    assert_eq!(
        seen.head.get("x-consumer-username"),
        Some("jack"),
        "{:?}",
        seen.head
    );
    assert_eq!(
        seen.head.get("x-credential-identifier"),
        Some("laptop"),
        "{:?}",
        seen.head
    );

    // The service's hosts apply to its routes.
    let r = send(
        ex.addr(),
        "GET",
        "other.example.com",
        "/anything/d",
        &[("apikey", "jack-demo-key")],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// The route's jwt-auth replaces the service's key-auth (disabled there).
#[tokio::test]
async fn mobile_route_needs_a_jwt_not_a_key() {
    let ex = Example::start().await;
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/mobile/a",
        &[("apikey", "jack-demo-key")],
    )
    .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, message("Missing JWT token in request"))
    );
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/mobile/a",
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(ex.httpbin_traffic().is_empty());
}

/// The plugin config's cors: a preflight is answered before the service's
/// key-auth (cors runs first, and never forwards OPTIONS); an allowed
/// origin gets its fields on authenticated answers too.
#[tokio::test]
async fn plugin_config_cors_answers_preflights_and_decorates_answers() {
    let ex = Example::start().await;
    let origin = "https://app.example.com";
    let r = send(
        ex.addr(),
        "OPTIONS",
        API,
        "/anything/a",
        &[("origin", origin), ("access-control-request-method", "PUT")],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{:?}", r.headers);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,POST,PUT,DELETE")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization,Content-Type,apikey")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert!(
        ex.httpbin_traffic().is_empty(),
        "a preflight reached a node"
    );

    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/b",
        &[("origin", origin), ("apikey", "jack-demo-key")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("X-Request-Id")
    );
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/c",
        &[
            ("origin", "https://evil.example"),
            ("apikey", "jack-demo-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
}

/// The global rule runs for every route: its real-ip believes the
/// X-Forwarded-For of a trusted proxy (the test client, 127.0.0.1), and its
/// ip-restriction (access phase, after the routes' authentication) refuses
/// a blacklisted client whatever the route.
#[tokio::test]
async fn global_rule_refuses_blacklisted_clients_on_every_route() {
    let ex = Example::start().await;
    let rose = ("authorization", "Basic cm9zZTpyb3NlLWRlbW8tcGFzc3dvcmQ=");
    for (host, path, credential) in [
        (API, "/anything/a", ("apikey", "jack-demo-key")),
        ("admin.test", "/admin", rose),
    ] {
        let r = send(
            ex.addr(),
            "GET",
            host,
            path,
            &[("x-forwarded-for", "192.0.2.10"), credential],
        )
        .await;
        assert_eq!(
            (r.status, r.body.clone()),
            (403, message("Your IP address is not allowed")),
            "{path}"
        );
        let r = send(
            ex.addr(),
            "GET",
            host,
            path,
            &[("x-forwarded-for", "2001:db8:dead::1"), credential],
        )
        .await;
        assert_eq!(r.status, 403, "{path}, IPv6: {}", r.body);
    }
    let r = send(
        ex.addr(),
        "GET",
        API,
        "/anything/b",
        &[
            ("x-forwarded-for", "198.51.100.1"),
            ("apikey", "jack-demo-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "a client outside the blacklist: {}", r.body);
    assert_eq!(ex.httpbin_traffic().len(), 1);
    assert!(traffic(&ex.admin).is_empty());
}

/// The admin route: basic auth, only rose, only from inside.
#[tokio::test]
async fn admin_route_takes_rose_with_basic_auth_from_inside_only() {
    let ex = Example::start().await;
    let r = send(ex.addr(), "GET", "admin.test", "/admin/users", &[]).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, message("Missing authorization in request"))
    );
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"basic\""));
    // rose:wrong
    let r = send(
        ex.addr(),
        "GET",
        "admin.test",
        "/admin",
        &[("authorization", "Basic cm9zZTp3cm9uZw==")],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // rose:rose-demo-password
    let rose = [("authorization", "Basic cm9zZTpyb3NlLWRlbW8tcGFzc3dvcmQ=")];
    let r = send(ex.addr(), "GET", "admin.test", "/admin/users", &rose).await;
    assert_eq!((r.status, r.body.as_str()), (200, "admin"));
    let seen = traffic(&ex.admin).pop().expect("the admin node saw it");
    assert_eq!(
        seen.head.get("x-consumer-username"),
        Some("rose"),
        "{:?}",
        seen.head
    );
    // From outside (a trusted proxy says so): the route's whitelist refuses.
    let mut outside = rose.to_vec();
    outside.push(("x-forwarded-for", "203.0.113.5"));
    let r = send(ex.addr(), "GET", "admin.test", "/admin", &outside).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (403, message("admin is internal"))
    );
    assert_eq!(traffic(&ex.admin).len(), 1);
}

/// The canary route needs a client in 10.0.0.0/8 or fd00::/8: from
/// 127.0.0.1 its header does not divert the request, which the service's
/// upstream serves; the backup node (priority -1) gets no traffic.
#[tokio::test]
async fn canary_conditions_and_the_backup_node() {
    let ex = Example::start().await;
    for i in 0..6 {
        let path = format!("/anything/{i}");
        let r = send(
            ex.addr(),
            "GET",
            API,
            &path,
            &[("x-canary", "1"), ("apikey", "jack-demo-key")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with("httpbin-"), "{path}: {}", r.body);
    }
    let served: Vec<usize> = ex.httpbin.iter().map(|b| traffic(b).len()).collect();
    assert!(
        served.iter().all(|&n| n > 0) && served.iter().sum::<usize>() == 6,
        "both primary nodes share the traffic: {served:?}"
    );
    assert!(
        traffic(&ex.backup).is_empty(),
        "the backup got {:?}",
        traffic(&ex.backup)
    );
}
