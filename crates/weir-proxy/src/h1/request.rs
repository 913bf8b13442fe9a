//! Reading a client's request head, routing it, and writing the head that
//! goes upstream — straight from the bytes received, with no header map.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode};
use weir_config::{LbType, PassHost};
use weir_http::fields::{self, classify, Field, NamedFields, RequestCoding};
use weir_http::{LocalReply, RawHead, RequestView};
use weir_plugin::{Flow, Pipeline, PluginState, RequestCtx, Resumed, Wait};

use super::buf::{OutBuf, MAX_HEAD};
use super::BodyFraming;
use crate::access_log::{AccessRecord, RequestFields};
use crate::forward::ConnInfo;
use crate::plugin_run::{LogPhase, ResponsePlugins, NO_PLUGINS};
use crate::snapshot::{CompiledRoute, Snapshot};
use crate::upstream::Upstream;

/// Most header fields accepted in one message (as hyper).
pub const MAX_HEADERS: usize = 100;

/// The hand-over reason for a connection that starts with what is not an
/// HTTP/1.1 request line but `PRI `: the HTTP/2 client preface.
pub const HTTP2_PREFACE: &str = "HTTP/2 preface";

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
    /// Routes with plugins: what the plugins decided so far.
    pub plugins: Option<Box<PluginRun>>,
}

/// A request's plugin run: the snapshot it was routed with (for the global
/// rules and consumers), the plugins' state, and their answer if they gave
/// one.
pub struct PluginRun {
    /// The snapshot the request was routed with.
    pub snapshot: Arc<Snapshot>,
    /// Edits, consumer, ...
    pub state: PluginState,
    /// A plugin answered: no node is asked.
    pub reply: Option<LocalReply>,
    /// The request phases wait for the whole body (a plugin reads it).
    pub awaiting_body: bool,
    /// The plugins' log phase, once the request phases ran (None: no
    /// plugin of this request has one).
    pub log: Option<Box<LogPhase>>,
    /// A plugin waits (a shared store, a delay): the exchange awaits it and
    /// resumes the request phases.
    pub waiting: Option<Wait>,
}

impl PluginRun {
    /// The response-side edits and phases of this run.
    pub fn response<'a>(&'a self, route: &'a CompiledRoute) -> ResponsePlugins<'a> {
        self.response_for(Some(route))
    }

    /// The same, for a request that may have matched no route.
    pub fn response_for<'a>(&'a self, route: Option<&'a CompiledRoute>) -> ResponsePlugins<'a> {
        ResponsePlugins {
            route: route.map_or(&*NO_PLUGINS, |r| &r.plugins),
            global: self.snapshot.global.as_deref(),
            consumers: &self.snapshot.consumers,
            state: &self.state,
        }
    }
}

impl Request {
    /// The Host value the client sent (empty for `Host:`, which is valid:
    /// RFC 9112 §3.2).
    pub fn client_host(&self) -> &[u8] {
        &self.parts.0[self.fields_end..]
    }

    /// The upstream this request goes to: the one a plugin chose, else the
    /// route's.
    pub fn upstream<'a>(&'a self, route: &'a CompiledRoute) -> Option<&'a Arc<Upstream>> {
        route.upstream_for(self.plugins.as_deref().map(|p| (&*p.snapshot, &p.state)))
    }

    /// Writes the upstream request head for one attempt on `node_key` of
    /// `upstream`.
    pub fn write_head(&self, upstream: Option<&Upstream>, node_key: &str, out: &mut Vec<u8>) {
        let p = &self.parts.0;
        out.extend_from_slice(&p[..self.line_end]);
        let rewritten = self
            .plugins
            .as_ref()
            .and_then(|p| p.state.upstream_host.as_ref());
        let host: Option<&[u8]> = match upstream.map(|u| u.pass_host) {
            _ if rewritten.is_some() => rewritten.map(HeaderValue::as_bytes),
            Some(PassHost::Node) => Some(node_key.as_bytes()),
            Some(PassHost::Rewrite) => upstream
                .and_then(|u| u.upstream_host.as_ref())
                .map(HeaderValue::as_bytes),
            // Even empty: the request had exactly one, so has the node's.
            _ => Some(self.client_host()),
        };
        if let Some(h) = host {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&p[self.line_end..self.fields_end]);
        out.extend_from_slice(b"\r\n");
    }

    /// The plugins' answer, if one answered.
    pub fn take_reply(&mut self) -> Option<LocalReply> {
        self.plugins.as_mut().and_then(|p| p.reply.take())
    }

    /// True when the plugins wait for the whole body before they run.
    pub fn awaiting_body(&self) -> bool {
        self.plugins.as_ref().is_some_and(|p| p.awaiting_body)
    }

    /// True when the plugins' request phases read the body.
    pub fn plugins_read_body(&self) -> bool {
        self.plugins.as_ref().is_some_and(|p| {
            self.route
                .as_deref()
                .is_some_and(|r| r.plugins.needs_body())
                || p.snapshot
                    .global
                    .as_deref()
                    .is_some_and(Pipeline::needs_body)
        })
    }

    /// Tells the log phase (if any) what the upstream answered, and which
    /// node answered after how long (see [`LogPhase::upstream_answered`]).
    pub fn upstream_answered(&self, status: u16, answered_by: Option<(&Arc<str>, Duration)>) {
        if let Some(log) = self.plugins.as_ref().and_then(|p| p.log.as_deref()) {
            log.upstream_answered(status, answered_by);
        }
    }

    /// The wait a plugin asked for, if one did: await it, then call
    /// [`Request::run_plugins`] with what it gives.
    pub fn take_wait(&mut self) -> Option<Wait> {
        self.plugins.as_mut().and_then(|p| p.waiting.take())
    }

    /// Runs the request phases (again, or on) where they could not run
    /// when the head was parsed: a plugin reads the body (`body`, decoded),
    /// or a plugin waited (`resumed`: what its wait gave). `head` is the
    /// request head as received (the start of the read buffer). Prepares
    /// the upstream head once the phases are done, unless a plugin answered;
    /// a plugin may wait again (see [`Request::take_wait`]).
    pub fn run_plugins(
        &mut self,
        head: &[u8],
        conn: &ConnInfo,
        body: Option<&[u8]>,
        resumed: Option<Resumed>,
    ) {
        let Some(run) = self.plugins.as_mut() else {
            return;
        };
        let route = self.route.as_deref();
        run.awaiting_body = false;
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        if !matches!(
            req.parse_with_uninit_headers(head, &mut storage),
            Ok(httparse::Status::Complete(_))
        ) {
            // It parsed when it arrived; it cannot fail now.
            run.reply = Some(LocalReply::error_msg(
                StatusCode::BAD_REQUEST,
                "malformed request head",
            ));
            return;
        }
        let (Some(method), Some(target)) = (req.method, req.path.map(without_fragment)) else {
            return;
        };
        let Ok(facts) = scan_fields(req.headers) else {
            return;
        };
        let view = RawHead {
            method,
            target,
            host: facts.host.unwrap_or_default(),
            fields: req.headers,
        };
        let route_id = route.map_or("", |r| &r.id);
        let mut ctx = RequestCtx::new(&view, &conn.plugin, route_id, &mut run.state, body);
        let snapshot = &run.snapshot;
        let pipeline = route.map_or(&*NO_PLUGINS, |r| &r.plugins);
        let global = snapshot.global.as_deref();
        let flow = match resumed {
            None => weir_plugin::run_request(pipeline, global, &snapshot.consumers, &mut ctx),
            Some(r) => {
                weir_plugin::resume_request(pipeline, global, &snapshot.consumers, &mut ctx, r)
            }
        };
        let reply = match flow {
            Flow::Wait(w) => {
                run.waiting = Some(w);
                return;
            }
            Flow::Reply(r) => Some(r),
            Flow::Continue => None,
        };
        run.log = LogPhase::prepare(
            snapshot,
            self.route.as_ref(),
            &run.state,
            &view,
            conn.remote.ip(),
        );
        if reply.is_some() {
            run.reply = reply;
            return;
        }
        let out = UpstreamHead {
            method,
            target,
            fields: req.headers,
            facts: &facts,
            body: self.body,
            conn,
            via: self.via,
        }
        .write(Some(&run.state));
        (self.parts, self.line_end, self.fields_end) = out;
    }
}

/// What the fields of a request head say about framing, routing and the
/// connection.
struct FieldFacts<'b> {
    host: Option<&'b [u8]>,
    hosts: usize,
    content_length: Option<&'b [u8]>,
    lengths: usize,
    /// `chunked` codings seen (over every Transfer-Encoding field).
    chunked: usize,
    codings: usize,
    close: bool,
    xff: Option<&'b [u8]>,
    /// X-Forwarded-For fields (nginx joins them into one list).
    xffs: usize,
    expect_continue: bool,
    named: NamedFields<'b>,
}

/// One pass over the fields; `Err` when the request cannot be served here.
fn scan_fields<'b>(fields: &[httparse::Header<'b>]) -> Result<FieldFacts<'b>, Head> {
    let mut f = FieldFacts {
        host: None,
        hosts: 0,
        content_length: None,
        lengths: 0,
        chunked: 0,
        codings: 0,
        close: false,
        xff: None,
        xffs: 0,
        expect_continue: false,
        named: NamedFields::default(),
    };
    for h in fields {
        match classify(h.name) {
            Field::Host => {
                f.hosts += 1;
                f.host = Some(h.value);
            }
            Field::ContentLength => {
                f.lengths += 1;
                f.content_length = Some(h.value);
            }
            Field::TransferEncoding => {
                f.codings += 1;
                match fields::request_coding([h.value]) {
                    RequestCoding::None => {}
                    RequestCoding::Chunked => f.chunked += 1,
                    RequestCoding::RepeatedChunked => f.chunked += 2,
                    RequestCoding::NotImplemented => {
                        return Err(Head::Invalid(
                            StatusCode::NOT_IMPLEMENTED,
                            "transfer coding not implemented (only chunked is)",
                        ))
                    }
                }
            }
            Field::Connection => {
                let Ok(v) = std::str::from_utf8(h.value) else {
                    return Err(Head::Invalid(
                        StatusCode::BAD_REQUEST,
                        "invalid Connection field",
                    ));
                };
                for token in fields::connection_tokens(v) {
                    if token.eq_ignore_ascii_case("close") {
                        f.close = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        return Err(Head::Fallback("connection upgrade"));
                    } else if !fields::is_connection_option(token) {
                        f.named.push(token);
                    }
                }
            }
            Field::Upgrade => return Err(Head::Fallback("Upgrade")),
            Field::Expect => {
                // 100-continue is answered by weir when it starts reading
                // the body; any other expectation goes to the general path,
                // which answers 417.
                if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(Head::Fallback("Expect"));
                }
                f.expect_continue = true;
            }
            Field::XForwardedFor => {
                f.xffs += 1;
                if f.xff.is_none() {
                    f.xff = Some(h.value);
                }
            }
            Field::HopByHop | Field::Forwarding | Field::Date | Field::Other => {}
        }
    }
    Ok(f)
}

/// Parses the head at the start of `buf` and decides how to serve it.
pub fn parse(buf: &[u8], conn: &ConnInfo, snapshot: &Arc<Snapshot>, log: bool) -> Head {
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
        Err(_) if buf.starts_with(b"PRI ") => return Head::Fallback(HTTP2_PREFACE),
        Err(_) => return Head::Invalid(StatusCode::BAD_REQUEST, "malformed request head"),
    };
    if req.version != Some(1) {
        return Head::Fallback("HTTP/1.0 client");
    }
    let (Some(method_str), Some(target)) = (req.method, req.path.map(without_fragment)) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "malformed request line");
    };
    if let Some(why) = crate::headers::refused_method(method_str) {
        return Head::Invalid(StatusCode::METHOD_NOT_ALLOWED, why);
    }
    if !target.starts_with('/') {
        return Head::Fallback("absolute-form or asterisk target");
    }
    let Ok(method) = Method::from_bytes(method_str.as_bytes()) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "invalid method");
    };
    let facts = match scan_fields(req.headers) {
        Ok(f) => f,
        Err(head) => return head,
    };
    if facts.hosts != 1 {
        return Head::Invalid(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host field",
        );
    }
    let body = match (facts.codings, facts.lengths) {
        (0, 0) => BodyFraming::Length(0),
        (0, 1) => match facts.content_length.and_then(parse_length) {
            Some(n) => BodyFraming::Length(n),
            None => return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Content-Length"),
        },
        (_, _) if facts.chunked > 1 => {
            return Head::Invalid(StatusCode::BAD_REQUEST, "chunked given more than once")
        }
        (1, 0) if facts.chunked == 1 => BodyFraming::Chunked,
        _ => return Head::Fallback("unusual body framing"),
    };
    let host_value = facts.host.unwrap_or_default();
    let Ok(host_str) = std::str::from_utf8(host_value) else {
        return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Host field");
    };
    if !weir_http::uri::is_valid_host(host_value) {
        return Head::Invalid(StatusCode::BAD_REQUEST, "invalid Host field");
    }

    // Route.
    let view = RawHead {
        method: method_str,
        target,
        host: host_value,
        fields: req.headers,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let match_path = crate::uri_normalize::match_path(path);
    let route = snapshot
        .router
        .find_where(host_str, &match_path, &method, |r| {
            r.admits(&view, &conn.plugin)
        })
        .map(|m| m.value.clone());
    if route.as_ref().is_some_and(|r| r.https_upstream) {
        return Head::Fallback("https upstream");
    }
    // Plugins: run now, on the borrowed head, unless one reads the body.
    let plugins = match &route {
        // Global rules run on every request, a route's plugins or not,
        // and before the 404 of a request no route matched.
        r if r.as_ref().is_some_and(|r| !r.plugins.is_empty()) || snapshot.global.is_some() => {
            let pipeline = r.as_ref().map_or(&*NO_PLUGINS, |r| &r.plugins);
            let global = snapshot.global.as_deref();
            let mut run = Box::new(PluginRun {
                snapshot: snapshot.clone(),
                state: PluginState::default(),
                reply: None,
                awaiting_body: pipeline.needs_body() || global.is_some_and(Pipeline::needs_body),
                log: None,
                waiting: None,
            });
            if !run.awaiting_body {
                let route_id = r.as_ref().map_or("", |r| &r.id);
                let mut ctx = RequestCtx::new(&view, &conn.plugin, route_id, &mut run.state, None);
                match weir_plugin::run_request(pipeline, global, &snapshot.consumers, &mut ctx) {
                    Flow::Wait(w) => run.waiting = Some(w),
                    flow => {
                        run.log = LogPhase::prepare(
                            snapshot,
                            r.as_ref(),
                            &run.state,
                            &view,
                            conn.remote.ip(),
                        );
                        if let Flow::Reply(reply) = flow {
                            run.reply = Some(reply);
                        }
                    }
                }
            }
            Some(run)
        }
        _ => None,
    };

    // The consistent-hash input, once the consumer is known.
    let chosen = plugins.as_deref().map(|p| (&*p.snapshot, &p.state));
    let hash = match route.as_ref().and_then(|r| r.upstream_for(chosen)) {
        Some(up) if up.lb == LbType::Chash => {
            let consumer = plugins
                .as_ref()
                .and_then(|p| p.state.consumer.as_ref())
                .map(|c| &*c.username);
            crate::hash_input::chash_input(up, &view, &conn.plugin, consumer)
        }
        _ => 0,
    };

    // Upstream head: request line, surviving fields, forwarding fields
    // (later, once the body is here, for plugins that read it; never for a
    // request a plugin answered).
    let via = snapshot.config.gateway.via;
    let (parts, line_end, fields_end) = match &plugins {
        Some(run) if run.awaiting_body || run.reply.is_some() || run.waiting.is_some() => {
            (OutBuf::take(), 0, 0)
        }
        _ => UpstreamHead {
            method: method_str,
            target,
            fields: req.headers,
            facts: &facts,
            body,
            conn,
            via,
        }
        .write(plugins.as_ref().map(|p| &p.state)),
    };

    let start = Instant::now();
    let record = log.then(|| {
        let mut r = AccessRecord::recycled();
        r.start = Some(start);
        r.remote = Some(match plugins.as_ref().and_then(|p| p.state.real_ip) {
            Some(ip) => std::net::SocketAddr::new(ip, conn.remote.port()),
            None => conn.remote,
        });
        r.version = "HTTP/1.1";
        r.route_id = route.as_ref().map(|r| r.id.clone());
        r.set_request(RequestFields {
            method: method.as_str().as_bytes(),
            target: target.as_bytes(),
            referer: view.header("referer"),
            user_agent: view.header("user-agent"),
            host: Some(host_value),
        });
        if let Some(route) = &route {
            r.mask_query_args(route.plugins.secret_query_args());
        }
        if let Some(global) = &snapshot.global {
            r.mask_query_args(global.secret_query_args());
        }
        r
    });
    Head::Ready(Box::new(Request {
        head_len,
        method,
        body,
        close: facts.close,
        expect_continue: facts.expect_continue,
        via,
        route,
        hash,
        parts,
        line_end,
        fields_end,
        record,
        start,
        plugins,
    }))
}

/// The inputs of the upstream request head.
struct UpstreamHead<'a, 'b> {
    method: &'a str,
    target: &'a str,
    fields: &'a [httparse::Header<'b>],
    facts: &'a FieldFacts<'b>,
    body: BodyFraming,
    conn: &'a ConnInfo,
    via: bool,
}

impl UpstreamHead<'_, '_> {
    /// Writes the request line and fields (Host last, apart): the client's
    /// fields minus hop-by-hop ones, weir's forwarding fields, then the
    /// plugins' edits. Returns the buffer and where the line and the fields
    /// end.
    fn write(&self, plugins: Option<&PluginState>) -> (OutBuf, usize, usize) {
        let edits = plugins
            .map(|s| &s.upstream_headers)
            .filter(|e| !e.is_empty());
        let dropped = |name: &str| edits.is_some_and(|e| e.drops(name));
        let target = plugins
            .and_then(|s| s.upstream_target.as_deref())
            .unwrap_or(self.target);
        let method = plugins
            .and_then(|s| s.upstream_method.as_ref())
            .map_or(self.method, http::Method::as_str);
        let mut parts = OutBuf::take();
        let p = &mut parts.0;
        p.extend_from_slice(method.as_bytes());
        p.push(b' ');
        p.extend_from_slice(target.as_bytes());
        p.extend_from_slice(b" HTTP/1.1\r\n");
        let line_end = p.len();
        let named = &self.facts.named;
        for h in self.fields {
            let keep = match classify(h.name) {
                Field::Other | Field::Date => {
                    (named.is_empty() || !named.contains(h.name)) && !dropped(h.name)
                }
                Field::ContentLength => true,
                _ => false,
            };
            if keep {
                push_field(p, h.name.as_bytes(), h.value);
            }
        }
        // The client address: the peer's, or what `real-ip` established.
        let real_ip = plugins.and_then(|s| s.real_ip).map(|ip| ip.to_string());
        let ip = real_ip
            .as_deref()
            .map_or(self.conn.remote_ip.as_bytes(), str::as_bytes);
        if !dropped("x-forwarded-for") {
            // The client's list (every X-Forwarded-For field, joined as
            // nginx's $proxy_add_x_forwarded_for does), then the client.
            let mut listed = false;
            let mut add = |value: &[u8], p: &mut Vec<u8>| {
                let value = trim(value);
                if value.is_empty() {
                    return;
                }
                p.extend_from_slice(if listed { b", " } else { b"X-Forwarded-For: " });
                p.extend_from_slice(value);
                listed = true;
            };
            if self.facts.xffs > 1 {
                for h in self.fields {
                    if classify(h.name) == Field::XForwardedFor {
                        add(h.value, p);
                    }
                }
            } else if let Some(prev) = self.facts.xff {
                add(prev, p);
            }
            if listed {
                p.extend_from_slice(b", ");
                p.extend_from_slice(ip);
                p.extend_from_slice(b"\r\n");
            } else {
                push_field(p, b"X-Forwarded-For", ip);
            }
        }
        let host = self.facts.host.unwrap_or_default();
        let proto: &[u8] = if self.conn.tls { b"https" } else { b"http" };
        for (name, value) in [
            ("X-Real-IP", ip),
            ("X-Forwarded-Proto", proto),
            ("X-Forwarded-Host", host),
            ("X-Forwarded-Port", self.conn.local_port.as_bytes()),
        ] {
            if !dropped(name) {
                push_field(p, name.as_bytes(), value);
            }
        }
        if self.via {
            push_field(p, b"Via", crate::headers::VIA_VALUE.as_bytes());
        }
        if self.body == BodyFraming::Chunked {
            push_field(p, b"Transfer-Encoding", b"chunked");
        }
        if let Some(edits) = edits {
            for (name, value) in edits.additions() {
                if !matches!(
                    classify(name.as_str()),
                    Field::ContentLength | Field::TransferEncoding | Field::Host
                ) && !fields::is_hop_by_hop(name.as_str())
                {
                    push_field(p, name.as_str().as_bytes(), value.as_bytes());
                }
            }
        }
        let fields_end = p.len();
        p.extend_from_slice(host);
        (parts, line_end, fields_end)
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

/// The request target without a `#fragment`: a fragment is not part of a
/// request (RFC 9110 §4.2.5), and hyper's general path strips it too.
fn without_fragment(target: &str) -> &str {
    target.split_once('#').map_or(target, |(t, _)| t)
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
            method: "GET",
            target: parsed.path.unwrap(),
            host: b"shop.test:8080",
            fields: parsed.headers,
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
        assert!(classify("x-forwarded-PORT") == Field::Forwarding);
        assert!(classify("Proxy-Authorization") == Field::HopByHop);
        assert!(classify("x-custom") == Field::Other);
    }
}
