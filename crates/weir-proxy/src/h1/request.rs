//! Reading a client's request head, routing it, and writing the head that
//! goes upstream — straight from the bytes received, with no header map.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode};
use weir_config::{LbType, PassHost, Scheme};

use super::buf::{OutBuf, MAX_HEAD};
use super::BodyFraming;
use crate::access_log::{AccessRecord, RequestFields};
use crate::forward::ConnInfo;
use crate::hash_input::RequestView;
use crate::snapshot::{CompiledRoute, Snapshot};

/// Most header fields accepted in one message (as hyper).
pub const MAX_HEADERS: usize = 100;
/// Most header names a `Connection` field may list.
const MAX_CONNECTION_TOKENS: usize = 8;

/// What to do with the bytes read so far.
pub enum Head {
    /// The head is not complete yet.
    Partial,
    /// The request is malformed: answer this status and close.
    Invalid(StatusCode, &'static str),
    /// Something only the general (hyper) path handles: hand the
    /// connection over, with every byte read so far.
    Fallback(&'static str),
    /// A request for the fast path.
    Ready(Box<Request>),
}

/// A parsed request, with its upstream head prepared.
pub struct Request {
    /// Bytes of the head in the read buffer.
    pub head_len: usize,
    /// Method.
    pub method: Method,
    /// How the body is delimited.
    pub body: BodyFraming,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// `gateway.via` of the snapshot the request was routed with.
    pub via: bool,
    /// The matched route (None: answer 404).
    pub route: Option<Arc<CompiledRoute>>,
    /// The consistent-hash input (chash upstreams; 0 otherwise).
    pub hash: u64,
    /// Upstream head pieces: request line, then header fields (without
    /// Host and the final CRLF), then the client's Host value.
    parts: OutBuf,
    line_end: usize,
    fields_end: usize,
    /// The access record, when the access log is on.
    pub record: Option<AccessRecord>,
    /// When the head was parsed: the request's arrival, for its latency.
    pub start: Instant,
}

impl Request {
    /// The Host value the client sent, if any.
    pub fn client_host(&self) -> Option<&[u8]> {
        let h = &self.parts.0[self.fields_end..];
        (!h.is_empty()).then_some(h)
    }

    /// Writes the upstream request head for one attempt on `node_key`.
    pub fn write_head(&self, route: &CompiledRoute, node_key: &str, out: &mut Vec<u8>) {
        let p = &self.parts.0;
        out.extend_from_slice(&p[..self.line_end]);
        let host: Option<&[u8]> = match route.upstream.as_deref().map(|u| u.pass_host) {
            Some(PassHost::Node) => Some(node_key.as_bytes()),
            Some(PassHost::Rewrite) => route
                .upstream
                .as_deref()
                .and_then(|u| u.upstream_host.as_ref())
                .map(HeaderValue::as_bytes),
            _ => self.client_host(),
        };
        if let Some(h) = host {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&p[self.line_end..self.fields_end]);
        out.extend_from_slice(b"\r\n");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop: dropped.
    HopByHop,
    /// Needs the general path.
    Upgrade,
    Expect,
    XForwardedFor,
    /// Replaced by weir's own value.
    Replaced,
    Other,
}

fn classify(name: &str) -> Field {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is("te") => Field::HopByHop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("upgrade") => Field::Upgrade,
        7 if is("trailer") => Field::HopByHop,
        9 if is("x-real-ip") => Field::Replaced,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::XForwardedFor,
        16 if is("proxy-connection") => Field::HopByHop,
        16 if is("x-forwarded-host") || is("x-forwarded-port") => Field::Replaced,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        17 if is("x-forwarded-proto") => Field::Replaced,
        19 if is("proxy-authorization") => Field::HopByHop,
        _ => Field::Other,
    }
}

/// Parses the head at the start of `buf` and decides how to serve it.
pub fn parse(buf: &[u8], conn: &ConnInfo, snapshot: &Snapshot, log: bool) -> Head {
    // Uninitialized: zeroing 100 header slots per request shows in profiles.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Head::Invalid(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            )
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Head::Invalid(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            )
        }
        Err(_) if buf.starts_with(b"PRI ") => return Head::Fallback("HTTP/2 preface"),
        Err(_) => return Head::Invalid(StatusCode::BAD_REQUEST, "malformed request head"),
    };
    if req.version != Some(1) {
        return Head::Fallback("HTTP/1.0 client");
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "malformed request line");
    };
    if method == "CONNECT" {
        return Head::Fallback("CONNECT");
    }
    if !target.starts_with('/') {
        return Head::Fallback("absolute-form or asterisk target");
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "invalid method");
    };

    // First pass: what the fields say about framing, routing and the
    // connection.
    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut content_length: Option<&[u8]> = None;
    let mut lengths = 0;
    let mut chunked = false;
    let mut codings = 0;
    let mut close = false;
    let mut xff: Option<&[u8]> = None;
    let mut expect_continue = false;
    let mut named = [""; MAX_CONNECTION_TOKENS];
    let mut named_len = 0;
    for h in req.headers.iter() {
        match classify(h.name) {
            Field::Host => {
                hosts += 1;
                host = Some(h.value);
            }
            Field::ContentLength => {
                lengths += 1;
                content_length = Some(h.value);
            }
            Field::TransferEncoding => {
                codings += 1;
                chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
            }
            Field::Connection => {
                let Ok(v) = std::str::from_utf8(h.value) else {
                    return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Connection field");
                };
                for token in v.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        return Head::Fallback("connection upgrade");
                    } else if token.is_empty() || token.eq_ignore_ascii_case("keep-alive") {
                    } else if named_len < MAX_CONNECTION_TOKENS {
                        named[named_len] = token;
                        named_len += 1;
                    } else {
                        return Head::Fallback("many Connection options");
                    }
                }
            }
            Field::Upgrade => return Head::Fallback("Upgrade"),
            Field::Expect => {
                // 100-continue is answered by weir when it starts reading
                // the body; any other expectation goes to the general path
                // (which answers 417).
                if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    return Head::Fallback("Expect");
                }
                expect_continue = true;
            }
            Field::XForwardedFor => {
                if xff.is_none() {
                    xff = Some(h.value);
                }
            }
            Field::HopByHop | Field::Replaced | Field::Other => {}
        }
    }
    if hosts != 1 {
        return Head::Invalid(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host field",
        );
    }
    let body = match (codings, lengths) {
        (0, 0) => BodyFraming::Length(0),
        (0, 1) => match content_length.and_then(parse_length) {
            Some(n) => BodyFraming::Length(n),
            None => return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Content-Length"),
        },
        (1, 0) if chunked => BodyFraming::Chunked,
        _ => return Head::Fallback("unusual body framing"),
    };
    let host_value = host.unwrap_or_default();
    let Ok(host_str) = std::str::from_utf8(host_value) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Host field");
    };

    // Route.
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let match_path = crate::uri_normalize::match_path(path);
    let route = snapshot
        .router
        .find(host_str, &match_path, &method)
        .map(|m| m.value.clone());
    if let Some(r) = &route {
        if !r.plugins.is_empty() {
            return Head::Fallback("route plugins");
        }
        let Some(up) = &r.upstream else {
            return Head::Fallback("route without upstream");
        };
        if up.scheme == Scheme::Https {
            return Head::Fallback("https upstream");
        }
    }
    let hash = match route.as_ref().and_then(|r| r.upstream.as_deref()) {
        Some(up) if up.lb == LbType::Chash => {
            let view = RawHead {
                target,
                host: host_value,
                headers: req.headers,
            };
            crate::hash_input::chash_input(up, &view, conn.remote)
        }
        _ => 0,
    };

    // Upstream head: request line, surviving fields, forwarding fields.
    let mut parts = OutBuf::take();
    let p = &mut parts.0;
    p.extend_from_slice(method.as_str().as_bytes());
    p.push(b' ');
    p.extend_from_slice(target.as_bytes());
    p.extend_from_slice(b" HTTP/1.1\r\n");
    let line_end = p.len();
    let is_named = |name: &str| {
        named[..named_len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    };
    for h in req.headers.iter() {
        let keep = match classify(h.name) {
            Field::Other => named_len == 0 || !is_named(h.name),
            Field::ContentLength => true,
            _ => false,
        };
        if keep {
            push_field(p, h.name.as_bytes(), h.value);
        }
    }
    let ip = conn.remote_ip.as_bytes();
    match xff.map(trim) {
        Some(prev) if !prev.is_empty() => {
            p.extend_from_slice(b"X-Forwarded-For: ");
            p.extend_from_slice(prev);
            p.extend_from_slice(b", ");
            p.extend_from_slice(ip);
            p.extend_from_slice(b"\r\n");
        }
        _ => push_field(p, b"X-Forwarded-For", ip),
    }
    push_field(p, b"X-Real-IP", ip);
    push_field(
        p,
        b"X-Forwarded-Proto",
        if conn.tls { b"https" } else { b"http" },
    );
    push_field(p, b"X-Forwarded-Host", host_value);
    push_field(p, b"X-Forwarded-Port", conn.local_port.as_bytes());
    if snapshot.config.gateway.via {
        push_field(p, b"Via", crate::headers::VIA_VALUE.as_bytes());
    }
    if body == BodyFraming::Chunked {
        push_field(p, b"Transfer-Encoding", b"chunked");
    }
    let fields_end = p.len();
    p.extend_from_slice(host_value);

    let start = Instant::now();
    let record = log.then(|| {
        let find = |n: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .map(|h| h.value)
        };
        let mut r = AccessRecord::recycled();
        r.start = Some(start);
        r.remote = Some(conn.remote);
        r.version = "HTTP/1.1";
        r.route_id = route.as_ref().map(|r| r.id.clone());
        r.set_request(RequestFields {
            method: method.as_str().as_bytes(),
            target: target.as_bytes(),
            referer: find("referer"),
            user_agent: find("user-agent"),
            host: Some(host_value),
        });
        r
    });
    Head::Ready(Box::new(Request {
        head_len,
        method,
        body,
        close,
        expect_continue,
        via: snapshot.config.gateway.via,
        route,
        hash,
        parts,
        line_end,
        fields_end,
        record,
        start,
    }))
}

/// The parsed head as `chash` sees it.
struct RawHead<'a> {
    target: &'a str,
    host: &'a [u8],
    headers: &'a [httparse::Header<'a>],
}

impl RequestView for RawHead<'_> {
    fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    fn path_and_query(&self) -> &str {
        self.target
    }

    fn host(&self) -> Option<&[u8]> {
        Some(self.host)
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A strict Content-Length: ASCII digits only.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Trims optional whitespace around a field value.
pub fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &v[start..=end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_strict() {
        assert_eq!(parse_length(b" 12 "), Some(12));
        assert_eq!(parse_length(b"+12"), None);
        assert_eq!(parse_length(b"1,2"), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"99999999999999999999"), None);
    }

    #[test]
    fn chash_inputs_match_the_general_path() {
        use crate::hash_input::hash_for;
        use weir_config::HashOn;
        let raw = b"GET /p/q?a=1&b=two HTTP/1.1\r\nHost: shop.test:8080\r\nX-User: alice\r\nCookie: s=1; sid=xyz\r\nCookie: t=2\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut storage);
        assert!(parsed.parse(raw).unwrap().is_complete());
        let view = RawHead {
            target: parsed.path.unwrap(),
            host: b"shop.test:8080",
            headers: parsed.headers,
        };
        let parts = http::Request::get("/p/q?a=1&b=two")
            .header("host", "shop.test:8080")
            .header("x-user", "alice")
            .header("cookie", "s=1; sid=xyz")
            .header("cookie", "t=2")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let remote: std::net::SocketAddr = "10.0.0.9:5555".parse().unwrap();
        for (on, key) in [
            (HashOn::Header, "x-user"),
            (HashOn::Cookie, "sid"),
            (HashOn::Cookie, "t"),
            (HashOn::Vars, "uri"),
            (HashOn::Vars, "request_uri"),
            (HashOn::Vars, "host"),
            (HashOn::Vars, "arg_b"),
            (HashOn::Vars, "http_x_user"),
            (HashOn::Vars, "cookie_sid"),
            (HashOn::Vars, "remote_addr"),
            (HashOn::Header, "absent"),
        ] {
            assert_eq!(
                hash_for(on, key, &view, remote),
                hash_for(on, key, &parts, remote),
                "{on:?} {key}"
            );
        }
        assert_ne!(
            hash_for(HashOn::Header, "x-user", &view, remote),
            hash_for(HashOn::Header, "absent", &view, remote),
            "a present key does not hash like the fallback"
        );
    }

    #[test]
    fn field_names_are_classified_case_insensitively() {
        assert!(classify("HOST") == Field::Host);
        assert!(classify("Transfer-Encoding") == Field::TransferEncoding);
        assert!(classify("x-forwarded-PORT") == Field::Replaced);
        assert!(classify("Proxy-Authorization") == Field::HopByHop);
        assert!(classify("x-custom") == Field::Other);
    }
}
