//! Entry points for the fuzz targets in `fuzz/` (`h1_request_head`,
//! `h1_response_head`, `h1_chunked`) and for their corpus replay in
//! `tests/fuzz_regressions.rs`.
//!
//! Each function runs the fast path's real parsing code on arbitrary bytes
//! and **panics when an invariant breaks**: these are the properties that
//! keep weir from desynchronising from a client or a node (request
//! smuggling, response splitting), checked against an independent reading
//! of the same bytes (`httparse` over weir's *output*, and small reference
//! parsers written here). Inputs that weir refuses or hands to the general
//! path are only required not to panic.
//!
//! Not part of weir's API: it exists for testing only.

use std::sync::{Arc, OnceLock};

use weir_config::PassHost;
use weir_http::fields::{classify, Field};

use super::request::{self, parse_length, trim, Head, MAX_HEADERS};
use super::response;
use super::BodyFraming;
use crate::forward::ConnInfo;
use crate::snapshot::{CompiledRoute, Snapshot};
use weir_http::chunked;

/// The node address every route of the fuzzing configurations points to
/// (nothing is ever connected to).
pub const NODE: &str = "127.0.0.1:1";

/// A configuration with one catch-all route and no plugin.
const PLAIN: &str = r#"
routes:
  - id: all
    uri: /*
    upstream:
      type: roundrobin
      nodes: {"127.0.0.1:1": 1}
"#;

/// A configuration with a global rule, routes that run plugins (the request
/// phases before the head is written, one that reads the body, one that
/// rewrites the target, one that takes the client address from a field),
/// every `pass_host`, and `Via`.
const ROUTED: &str = r#"
gateway:
  via: true
global_rules:
  - id: g
    plugins:
      ip-restriction: {blacklist: [10.9.9.9]}
consumers:
  - username: fuzz
    plugins:
      key-auth: {key: k}
routes:
  - id: key
    uri: /key/*
    plugins:
      key-auth: {hide_credentials: true}
    upstream: {type: roundrobin, nodes: {"127.0.0.1:1": 1}}
  - id: rid
    uri: /rid/*
    plugins:
      request-id: {}
      cors: {allow_origins: "**"}
    upstream: {type: roundrobin, nodes: {"127.0.0.1:1": 1}}
  - id: node
    uri: /node/*
    upstream: {type: roundrobin, pass_host: node, nodes: {"127.0.0.1:1": 1}}
  - id: rewrite
    uri: /rewrite/*
    upstream:
      type: roundrobin
      pass_host: rewrite
      upstream_host: up.test
      nodes: {"127.0.0.1:1": 1}
  - id: hash
    uri: /hash/*
    upstream: {type: chash, hash_on: header, key: x-user, nodes: {"127.0.0.1:1": 1}}
  - id: real
    uri: /real/*
    plugins:
      real-ip: {source: http_x_real_ip}
    upstream: {type: roundrobin, nodes: {"127.0.0.1:1": 1}}
  - id: echo
    uri: /echo/*
    plugins: {echo: {}}
  - id: host
    host: h.test
    uri: /*
    upstream: {type: roundrobin, nodes: {"127.0.0.1:1": 1}}
  - id: all
    uri: /*
    plugins: {request-id: {}}
    upstream: {type: roundrobin, nodes: {"127.0.0.1:1": 1}}
"#;

/// The request whose plugin state feeds the response edits.
const PLUGIN_REQUEST: &[u8] =
    b"GET /rid/x HTTP/1.1\r\nHost: a.test\r\nOrigin: http://o.test\r\n\r\n";

struct Harness {
    plain: Arc<Snapshot>,
    routed: Arc<Snapshot>,
    conn: ConnInfo,
    conn_tls: ConnInfo,
    /// [`PLUGIN_REQUEST`], parsed with `routed`.
    plugin_request: Box<request::Request>,
}

fn compile(yaml: &str) -> Arc<Snapshot> {
    let config = weir_config::load_str(yaml, "fuzzing").expect("fuzzing configuration loads");
    let compiler =
        crate::snapshot::Compiler::new(Arc::new(weir_discovery::registry::Registry::new()))
            .expect("TLS client setup");
    Arc::new(
        compiler
            .compile(Arc::new(config))
            .expect("fuzzing configuration compiles"),
    )
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let routed = compile(ROUTED);
        let conn = ConnInfo::new(
            "192.0.2.7:40000".parse().unwrap(),
            "127.0.0.1:9080".parse().unwrap(),
            false,
        );
        let Head::Ready(plugin_request) = request::parse(PLUGIN_REQUEST, &conn, &routed, false)
        else {
            panic!("the plugin request is not served by the fast path");
        };
        assert!(plugin_request.plugins.is_some() && plugin_request.route.is_some());
        Harness {
            plain: compile(PLAIN),
            routed,
            conn,
            conn_tls: ConnInfo::new(
                "[2001:db8::7]:40000".parse().unwrap(),
                "127.0.0.1:9443".parse().unwrap(),
                true,
            ),
            plugin_request,
        }
    })
}

/// Compiles the fuzzing configurations (done once, on first use; call it
/// up front so the first input is not slow).
pub fn init() {
    let _ = harness();
}

// ---------------------------------------------------------------------------
// Helpers

/// `data` for a panic message: printable ASCII as is, the rest escaped.
fn show(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The tokens of a `Connection` value split on bytes (not on UTF-8), as
/// another HTTP implementation would: trimmed of SP/HTAB, empty ones
/// skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// What a reference reading of a head's `Connection` fields says.
#[derive(Default)]
struct ConnectionRef {
    close: bool,
    keep_alive: bool,
    /// Field names listed (lower case), options excluded.
    named: Vec<Vec<u8>>,
}

impl ConnectionRef {
    fn of(fields: &[httparse::Header<'_>]) -> ConnectionRef {
        let mut c = ConnectionRef::default();
        for h in fields.iter().filter(|h| eq(h.name, "connection")) {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    c.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    c.keep_alive = true;
                } else if !t.eq_ignore_ascii_case(b"upgrade") {
                    c.named.push(t.to_ascii_lowercase());
                }
            }
        }
        c
    }

    fn names(&self, name: &str) -> bool {
        self.named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Fields that are never passed on (the `Connection` family), whatever the
/// direction. `Transfer-Encoding` is checked apart.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        classify(name),
        Field::Connection | Field::Upgrade | Field::HopByHop
    )
}

/// The cut points at which a complete head is checked to be still
/// `Partial`: a few, not all (quadratic), and below weir's head limit.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let mut v = vec![0, 1, len / 2, len.saturating_sub(2), len.saturating_sub(1)];
    v.retain(|&c| c < len && c < super::buf::MAX_HEAD);
    v.sort_unstable();
    v.dedup();
    v.into_iter()
}

// ---------------------------------------------------------------------------
// Request heads

/// Parses `data` as a client's request head with [`request::parse`], once
/// per fuzzing configuration (a plain one; one with plugins, `Via`, TLS,
/// every `pass_host`, and the access log on), and checks that:
///
/// - an accepted head (`Ready`) is exactly the head `httparse` reads,
///   HTTP/1.1, with exactly one `Host`; its framing is the one RFC 9112
///   gives (only `Transfer-Encoding: chunked` alone, one valid
///   `Content-Length`, or none), and `close` / `100-continue` follow the
///   fields; every shorter prefix of it is `Partial`;
/// - a `Partial` head is one `httparse` finds partial;
/// - the upstream head weir writes for an accepted request (after the
///   plugins, the body-reading ones included) parses with `httparse` to its
///   last byte, keeps method and path, has exactly one `Host` (the client's,
///   the node's or `upstream_host`, per `pass_host`), at most one framing
///   field announcing exactly the framing weir decided, no hop-by-hop field,
///   no field the client's `Connection` named, no field that is neither the
///   client's nor weir's own, and `X-Forwarded-For` ending with the client
///   address;
/// - a plugin's answer is a well-formed response head whose
///   `Content-Length` is its body's.
pub fn request_head(data: &[u8]) {
    let h = harness();
    check_request(data, &h.plain, &h.conn, false);
    check_request(data, &h.routed, &h.conn_tls, true);
}

/// The reference framing of a request (RFC 9112 §6.3) — `None` when a
/// proxy must not forward it as such (weir refuses it or hands it over).
fn request_framing(fields: &[httparse::Header<'_>]) -> Option<BodyFraming> {
    let te: Vec<_> = fields
        .iter()
        .filter(|h| classify(h.name) == Field::TransferEncoding)
        .collect();
    let cl: Vec<_> = fields
        .iter()
        .filter(|h| classify(h.name) == Field::ContentLength)
        .collect();
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Some(BodyFraming::Length(0)),
        ([], [one]) => parse_length(one.value).map(BodyFraming::Length),
        ([one], []) if trim(one.value).eq_ignore_ascii_case(b"chunked") => {
            Some(BodyFraming::Chunked)
        }
        _ => None,
    }
}

fn check_request(data: &[u8], snapshot: &Arc<Snapshot>, conn: &ConnInfo, log: bool) {
    let head = request::parse(data, conn, snapshot, log);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut client = httparse::Request::new(&mut storage);
    let reference = client.parse(data);
    let mut req = match head {
        Head::Partial => {
            assert!(
                matches!(reference, Ok(httparse::Status::Partial)),
                "weir waits for more of a head httparse reads as {reference:?}: {}",
                show(data)
            );
            return;
        }
        Head::Invalid(..) | Head::Fallback(_) => return,
        Head::Ready(req) => req,
    };
    let head_len = req.head_len;
    let ctx = || show(&data[..head_len.min(data.len())]);
    assert_eq!(
        reference,
        Ok(httparse::Status::Complete(req.head_len)),
        "head length: {}",
        ctx()
    );
    for cut in cuts(req.head_len) {
        assert!(
            matches!(
                request::parse(&data[..cut], conn, snapshot, false),
                Head::Partial
            ),
            "the first {cut} bytes of an accepted head are not Partial: {}",
            ctx()
        );
    }
    assert_eq!(client.version, Some(1), "fast path for HTTP/1.0: {}", ctx());
    let hosts = client
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::Host)
        .count();
    assert_eq!(hosts, 1, "accepted with {hosts} Host fields: {}", ctx());
    let framing = request_framing(client.headers);
    assert_eq!(
        framing,
        Some(req.body),
        "weir's framing differs from RFC 9112's: {}",
        ctx()
    );
    let connection = ConnectionRef::of(client.headers);
    assert!(
        !connection.close || req.close,
        "Connection: close missed: {}",
        ctx()
    );
    let expects = client
        .headers
        .iter()
        .any(|h| classify(h.name) == Field::Expect);
    assert_eq!(req.expect_continue, expects, "Expect: {}", ctx());

    // Plugins that read the body run once it is here.
    if req.awaiting_body() {
        let body = &data[req.head_len..];
        let decoded = match req.body {
            BodyFraming::Chunked => chunked::decode(body).unwrap_or_else(|| body.to_vec()),
            _ => body.to_vec(),
        };
        req.run_plugins(&data[..req.head_len], conn, Some(&decoded), None);
    }
    let Some(route) = req.route.clone() else {
        return;
    };
    if let Some(reply) = req.take_reply() {
        check_reply(&req, &route, &reply, ctx);
        return;
    }
    let mut out = Vec::new();
    req.write_head(req.upstream(&route).map(|u| &**u), NODE, &mut out);
    check_upstream_head(&out, &client, &connection, &req, &route, conn, ctx);
}

fn check_reply(
    req: &request::Request,
    route: &CompiledRoute,
    reply: &weir_http::LocalReply,
    ctx: impl Fn() -> String,
) {
    let head_request = req.method == http::Method::HEAD;
    let mut out = Vec::new();
    let edits = req.plugins.as_deref().map(|run| run.response(route));
    let decision = edits.as_ref().map(|r| r.decide(reply, false));
    reply.write_h1(
        head_request,
        req.close,
        decision.as_ref().map(|d| &*d.edits),
        response::push_date,
        &mut out,
    );
    let mut storage = [httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut storage);
    let n = match resp.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "a plugin's answer does not parse ({other:?}): {}\nfor {}",
            show(&out),
            ctx()
        ),
    };
    let lengths: Vec<_> = resp
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::ContentLength)
        .collect();
    assert!(lengths.len() <= 1, "answer: {}", show(&out));
    if let [cl] = lengths.as_slice() {
        assert_eq!(
            parse_length(cl.value),
            Some(reply.body.len() as u64),
            "answer: {}",
            show(&out)
        );
        let sent = if head_request { 0 } else { reply.body.len() };
        assert_eq!(out.len() - n, sent, "answer: {}", show(&out));
    }
    assert!(
        !resp
            .headers
            .iter()
            .any(|h| classify(h.name) == Field::TransferEncoding),
        "answer: {}",
        show(&out)
    );
}

/// Field names weir writes itself into an upstream request head: framing,
/// `Host`, forwarding fields, `Via`, and the plugins' additions.
fn weirs_own_request_field(name: &str, req: &request::Request) -> bool {
    matches!(
        classify(name),
        Field::Host | Field::XForwardedFor | Field::Forwarding | Field::TransferEncoding
    ) || eq(name, "via")
        || req.plugins.as_deref().is_some_and(|run| {
            run.state
                .upstream_headers
                .additions()
                .any(|(n, _)| eq(n.as_str(), name))
        })
}

fn check_upstream_head(
    out: &[u8],
    client: &httparse::Request<'_, '_>,
    connection: &ConnectionRef,
    req: &request::Request,
    route: &CompiledRoute,
    conn: &ConnInfo,
    ctx: impl Fn() -> String,
) {
    let show_all = || format!("upstream head {}\nfor {}", show(out), ctx());
    // Room for the client's fields plus weir's own.
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 16];
    let mut up = httparse::Request::new(&mut storage);
    match up.parse(out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => panic!("{other:?}: {}", show_all()),
    }
    assert_eq!(up.version, Some(1), "{}", show_all());
    assert_eq!(up.method, client.method, "{}", show_all());
    let path = |t: Option<&str>| t.map(|t| t.split_once('?').map_or(t, |(p, _)| p).to_owned());
    assert_eq!(path(up.path), path(client.path), "{}", show_all());

    // Host: exactly one, the one pass_host asks for.
    let hosts: Vec<&[u8]> = up
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::Host)
        .map(|h| h.value)
        .collect();
    let client_host = client
        .headers
        .iter()
        .find(|h| classify(h.name) == Field::Host)
        .map(|h| h.value)
        .unwrap_or_default();
    assert_eq!(req.client_host(), client_host, "{}", show_all());
    let up_conf = route.upstream.as_deref();
    let want: &[u8] = match up_conf.map(|u| u.pass_host) {
        Some(PassHost::Node) => NODE.as_bytes(),
        Some(PassHost::Rewrite) => up_conf
            .and_then(|u| u.upstream_host.as_ref())
            .map_or(b"", |h| h.as_bytes()),
        _ => client_host,
    };
    assert_eq!(hosts, [want], "Host: {}", show_all());

    // Framing: at most one field, announcing what weir decided.
    let te: Vec<&[u8]> = up
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::TransferEncoding)
        .map(|h| h.value)
        .collect();
    let cl: Vec<&[u8]> = up
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::ContentLength)
        .map(|h| h.value)
        .collect();
    assert!(
        te.len() + cl.len() <= 1,
        "several framing fields: {}",
        show_all()
    );
    let announced = match (te.as_slice(), cl.as_slice()) {
        ([v], []) => {
            assert_eq!(*v, b"chunked", "{}", show_all());
            BodyFraming::Chunked
        }
        ([], [v]) => BodyFraming::Length(
            parse_length(v).unwrap_or_else(|| panic!("bad Content-Length: {}", show_all())),
        ),
        _ => BodyFraming::Length(0),
    };
    assert_eq!(
        announced,
        req.body,
        "announced framing differs: {}",
        show_all()
    );

    for h in up.headers.iter() {
        assert!(
            !is_hop_by_hop(h.name),
            "hop-by-hop {}: {}",
            h.name,
            show_all()
        );
        let own = weirs_own_request_field(h.name, req);
        if !own {
            assert!(
                classify(h.name) == Field::ContentLength || !connection.names(h.name),
                "{}, named by Connection, passed on: {}",
                h.name,
                show_all()
            );
            assert!(
                client
                    .headers
                    .iter()
                    .any(|c| c.name == h.name && c.value == h.value),
                "{} is neither the client's nor weir's: {}",
                h.name,
                show_all()
            );
        }
    }
    // The client address: the peer's, or what `real-ip` established.
    let client_ip = match req.plugins.as_deref().and_then(|run| run.state.real_ip) {
        Some(ip) => ip.to_string(),
        None => String::from_utf8_lossy(conn.remote_ip.as_bytes()).into_owned(),
    };
    let xff = up
        .headers
        .iter()
        .filter(|h| classify(h.name) == Field::XForwardedFor)
        .map(|h| h.value)
        .collect::<Vec<_>>();
    assert!(
        matches!(xff.as_slice(), [v] if v.ends_with(client_ip.as_bytes())),
        "X-Forwarded-For: {}",
        show_all()
    );
}

mod chunked_body;
mod reframe_body;
mod response_head;

pub use chunked_body::chunked;
pub use response_head::response_head;
