//! The request path: route, run plugins, pick a node, forward, stream back.
//!
//! Read top to bottom, this file is what happens to every request. It loads
//! the snapshot once, takes no lock, and copies request headers only when a
//! retry after sending might be needed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use weir_config::LbType;
use weir_http::LocalReply;
use weir_plugin::{Held, PluginState};

use crate::access_log::{AccessLog, AccessRecord, RequestFields};
use crate::attempts::{AttemptPlan, Failure, Verdict};
use crate::body::ProxyBody;
use crate::headers;
use crate::metrics::RouteStats;
use crate::plugin_run::{run_request_phases, LogPhase, ResponsePlugins, NO_PLUGINS};
use crate::response_body::{Completion, Lease, ResponseBody};
use crate::snapshot::ProxyState;
use crate::upstream::Upstream;

mod attempt;
mod support;

use attempt::{send_to_node, tunnel, AttemptFailure};
use support::{
    announced_trailers, body_is_empty, origin_form, request_host, set_host, version_str,
    RequestHead,
};
pub(crate) use support::{is_idempotent, retry_clock, retry_deadline_passed, Tried};

/// What the proxy knows about the client connection. Built once per
/// connection, with the header values every request of it will send
/// upstream, so requests do not format them again.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Client address.
    pub remote: SocketAddr,
    /// Our listener address.
    pub local: SocketAddr,
    /// TLS-terminated connection.
    pub tls: bool,
    /// The client IP as a header value (X-Real-IP, X-Forwarded-For).
    pub remote_ip: HeaderValue,
    /// Our port as a header value (X-Forwarded-Port).
    pub local_port: HeaderValue,
    /// The same facts as plugins see them.
    pub plugin: weir_plugin::Conn,
}

impl ConnInfo {
    /// Connection facts for a newly accepted client.
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> ConnInfo {
        let ip = remote.ip().to_string();
        ConnInfo {
            remote,
            local,
            tls,
            remote_ip: HeaderValue::from_maybe_shared(bytes::Bytes::from(ip))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            local_port: HeaderValue::from(local.port()),
            plugin: weir_plugin::Conn { remote, local, tls },
        }
    }
}

/// The client-side limits of a listener (`gateway.http`) the request path
/// applies.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// `http.body_timeout`: time allowed between two frames of a request
    /// body (408 past it).
    pub body_timeout: Duration,
    /// `http.tunnel_idle_timeout`: time an upgraded tunnel may carry
    /// nothing before it is closed.
    pub tunnel_idle_timeout: Duration,
}

/// Serves one request. Never fails: errors become HTTP responses.
pub async fn handle(
    state: Arc<ProxyState>,
    conn: Arc<ConnInfo>,
    limits: ClientLimits,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let snapshot = state.snapshot.load_full();
    let log_enabled = state.access_log.enabled();
    let mut pending = PendingRecord {
        record: AccessRecord::default(),
        log: &state.access_log,
        start: Instant::now(),
        stats: None,
        log_phase: None,
        held: Vec::new(),
        taken: false,
    };
    let record = &mut pending.record;
    if log_enabled {
        *record = AccessRecord::recycled();
        record.start = Some(pending.start);
        record.remote = Some(conn.remote);
        record.version = version_str(req.version());
        let headers = req.headers();
        record.set_request(RequestFields {
            method: req.method().as_str().as_bytes(),
            target: req
                .uri()
                .path_and_query()
                .map_or(b"/", |p| p.as_str().as_bytes()),
            referer: headers.get(header::REFERER).map(HeaderValue::as_bytes),
            user_agent: headers.get(header::USER_AGENT).map(HeaderValue::as_bytes),
            host: headers
                .get(header::HOST)
                .map(HeaderValue::as_bytes)
                .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes())),
        });
    }
    let head_request = req.method() == Method::HEAD;
    // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host field.
    if req.version() == Version::HTTP_11 && req.headers().get_all(header::HOST).iter().count() != 1
    {
        return Ok(finish(
            &state,
            local(
                LocalReply::error_msg(
                    StatusCode::BAD_REQUEST,
                    "400 Bad Request: an HTTP/1.1 request needs exactly one Host field",
                ),
                head_request,
                None,
            ),
            pending.take(),
            None,
        ));
    }
    // RFC 9112 §3.2: a Host (or an authority) that is not a host is refused,
    // and so is userinfo in the target (RFC 9110 §4.2.4).
    let authority_ok = req
        .uri()
        .authority()
        .is_none_or(|a| weir_http::uri::is_valid_host(a.as_str().as_bytes()));
    let host_ok = req
        .headers()
        .get(header::HOST)
        .is_none_or(|h| weir_http::uri::is_valid_host(h.as_bytes()));
    // HTTP/2: a Host that names another authority than `:authority` (nginx
    // refuses it too).
    let host_agrees = req.version() != Version::HTTP_2
        || match (req.uri().authority(), req.headers().get(header::HOST)) {
            (Some(a), Some(h)) => a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()),
            _ => true,
        };
    if !authority_ok || !host_ok || !host_agrees {
        return Ok(finish(
            &state,
            local(
                LocalReply::error_msg(StatusCode::BAD_REQUEST, "400 Bad Request: invalid Host"),
                head_request,
                None,
            ),
            pending.take(),
            None,
        ));
    }
    let coding = weir_http::fields::request_coding(
        req.headers()
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let refused_coding = match coding {
        weir_http::fields::RequestCoding::NotImplemented => Some((
            StatusCode::NOT_IMPLEMENTED,
            "501 Not Implemented: transfer coding not implemented (only chunked is)",
        )),
        weir_http::fields::RequestCoding::RepeatedChunked => Some((
            StatusCode::BAD_REQUEST,
            "400 Bad Request: chunked given more than once",
        )),
        _ => None,
    };
    if let Some((status, why)) = refused_coding {
        // Where the body ends is not known: the connection closes after.
        let mut resp = local(LocalReply::error_msg(status, why), head_request, None);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(finish(&state, resp, pending.take(), None));
    }
    // An expectation other than 100-continue cannot be met (RFC 9110
    // §10.1.1): 417 rather than passing it to the node.
    let expect_unmet = req.headers().get_all(header::EXPECT).iter().any(|v| {
        !v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    });
    if expect_unmet {
        return Ok(finish(
            &state,
            local(
                LocalReply::error_msg(
                    StatusCode::EXPECTATION_FAILED,
                    "417 Expectation Failed: only 100-continue is supported",
                ),
                head_request,
                None,
            ),
            pending.take(),
            None,
        ));
    }
    if let Some(why) = headers::refused_method(req.method().as_str()) {
        return Ok(finish(
            &state,
            local(
                LocalReply::error_msg(StatusCode::METHOD_NOT_ALLOWED, why),
                head_request,
                None,
            ),
            pending.take(),
            None,
        ));
    }
    let upgrade_requested = headers::is_websocket_upgrade(req.headers());
    let downstream_upgrade = upgrade_requested.then(|| hyper::upgrade::on(&mut req));

    let (head, body) = req.into_parts();
    let match_path = crate::uri_normalize::match_path(head.uri.path());
    let route = snapshot
        .router
        .find_where(
            request_host(&head.uri, &head.headers),
            &match_path,
            &head.method,
            |r| r.admits(&head, &conn.plugin),
        )
        .map(|m| m.value.clone());
    drop(match_path);
    let req = Request::from_parts(head, body);
    let Some(route) = route else {
        let not_found = LocalReply::error_msg(StatusCode::NOT_FOUND, "404 Route Not Found");
        // Global rules run before the 404, as APISIX's.
        let Some(global) = snapshot.global.as_deref() else {
            return Ok(finish(
                &state,
                local(not_found, head_request, None),
                pending.take(),
                None,
            ));
        };
        let (parts, _body) = req.into_parts();
        let mut plugin_state = PluginState::default();
        let answer = run_request_phases(
            &NO_PLUGINS,
            &snapshot,
            &parts,
            &conn.plugin,
            "",
            &mut plugin_state,
            None,
        )
        .await;
        pending.log_phase =
            LogPhase::prepare(&snapshot, None, &plugin_state, &parts, conn.remote.ip());
        record.consumer = plugin_state.consumer.as_ref().map(|c| c.username.clone());
        record.request_id = plugin_state.request_id.clone();
        record.trace_id = plugin_state.trace_id;
        pending.held = std::mem::take(&mut plugin_state.held);
        let reply = answer.unwrap_or(not_found);
        let responses = ResponsePlugins {
            route: &NO_PLUGINS,
            global: Some(global),
            consumers: &snapshot.consumers,
            state: &plugin_state,
        };
        let resp = local(reply, head_request, Some(&responses));
        return Ok(finish(&state, resp, pending.take(), None));
    };
    if log_enabled {
        record.route_id = Some(route.id.clone());
        record.mask_query_args(route.plugins.secret_query_args());
        if let Some(global) = &snapshot.global {
            record.mask_query_args(global.secret_query_args());
        }
    }
    pending.stats = Some(route.stats.clone());

    let (parts, body) = req.into_parts();
    let mut body = Some(ProxyBody::client(body, limits.body_timeout));
    // Plugins run on the borrowed head; only those that read the body make
    // the request wait for it.
    let global = snapshot.global.as_deref();
    let plugin_state = if route.plugins.is_empty() && global.is_none() {
        None
    } else {
        let mut plugin_state = PluginState::default();
        let buffered = if route.plugins.needs_body() || global.is_some_and(|g| g.needs_body()) {
            match read_body(body.take()).await {
                Ok(b) => Some(b),
                Err(reply) => {
                    return Ok(finish(
                        &state,
                        local(reply, head_request, None),
                        pending.take(),
                        None,
                    ))
                }
            }
        } else {
            None
        };
        let answer = run_request_phases(
            &route.plugins,
            &snapshot,
            &parts,
            &conn.plugin,
            &route.id,
            &mut plugin_state,
            buffered.as_deref(),
        )
        .await;
        pending.held = std::mem::take(&mut plugin_state.held);
        record.consumer = plugin_state.consumer.as_ref().map(|c| c.username.clone());
        record.request_id = plugin_state.request_id.clone();
        record.trace_id = plugin_state.trace_id;
        pending.log_phase = LogPhase::prepare(
            &snapshot,
            Some(&route),
            &plugin_state,
            &parts,
            conn.remote.ip(),
        );
        let responses = ResponsePlugins {
            route: &route.plugins,
            global: snapshot.global.as_deref(),
            consumers: &snapshot.consumers,
            state: &plugin_state,
        };
        if let Some(reply) = answer {
            let resp = local(reply, head_request, Some(&responses));
            return Ok(finish(&state, resp, pending.take(), None));
        }
        if let Some(b) = buffered {
            body = Some(ProxyBody::full(b));
        }
        if let (Some(ip), true) = (plugin_state.real_ip, log_enabled) {
            record.remote = Some(SocketAddr::new(ip, conn.remote.port()));
        }
        Some(plugin_state)
    };
    let responses = plugin_state.as_ref().map(|s| ResponsePlugins {
        route: &route.plugins,
        global: snapshot.global.as_deref(),
        consumers: &snapshot.consumers,
        state: s,
    });

    let chosen = plugin_state.as_ref().map(|s| (&*snapshot, s));
    let Some(upstream) = route.upstream_for(chosen).cloned() else {
        let reply = LocalReply::error_msg(StatusCode::SERVICE_UNAVAILABLE, "route has no upstream");
        return Ok(finish(
            &state,
            local(reply, head_request, responses.as_ref()),
            pending.take(),
            None,
        ));
    };
    let websocket = if upgrade_requested && route.enable_websocket {
        downstream_upgrade
    } else {
        None
    };
    let via = snapshot.config.gateway.via;
    // Boxed: hyper keeps one service future per connection for the
    // connection's whole life, so the large forwarding state machine lives
    // only while a request is in flight, not in every idle keep-alive
    // connection.
    let outcome = Box::pin(forward(
        &upstream,
        &conn,
        parts,
        body.unwrap_or_else(ProxyBody::empty),
        websocket,
        via,
        record,
        responses.as_ref(),
        limits.tunnel_idle_timeout,
    ))
    .await;
    let (resp, lease) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(
                route = %route.id,
                upstream = %upstream.id,
                status = e.status.as_u16(),
                reason = %e.reason,
                "request failed"
            );
            if !e.client_fault {
                if let Some(l) = &pending.log_phase {
                    l.upstream_answered(e.status.as_u16(), None);
                }
            }
            let reply = LocalReply::error_msg(e.status, e.public);
            (local(reply, head_request, responses.as_ref()), None)
        }
    };
    Ok(finish(&state, resp, pending.take(), lease))
}

/// A request while its answer is worked out: its access record, arrival
/// time and route counters. hyper drops the request's future when the
/// client leaves first (its connection closed or broke); the request is
/// then counted and logged with status 499, nginx's code for a client that
/// closed the connection, rather than lost.
struct PendingRecord<'a> {
    record: AccessRecord,
    log: &'a AccessLog,
    start: Instant,
    /// The matched route's counters (None until a route matched).
    stats: Option<Arc<RouteStats>>,
    /// The plugins' log phase, once the request phases ran.
    log_phase: Option<Box<LogPhase>>,
    /// What the plugins keep until the request is over.
    held: Vec<Held>,
    taken: bool,
}

/// What a finished request leaves for its response to settle at its end.
struct Outcome {
    record: AccessRecord,
    stats: Option<Arc<RouteStats>>,
    start: Instant,
    log_phase: Option<Box<LogPhase>>,
    held: Vec<Held>,
}

impl PendingRecord<'_> {
    /// The request's record and counters, for the response to carry to its
    /// end; nothing is left to count or log here.
    fn take(&mut self) -> Outcome {
        self.taken = true;
        Outcome {
            record: std::mem::take(&mut self.record),
            stats: self.stats.take(),
            start: self.start,
            log_phase: self.log_phase.take(),
            held: std::mem::take(&mut self.held),
        }
    }
}

impl Drop for PendingRecord<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let Outcome {
            mut record,
            stats,
            start,
            log_phase,
            held,
        } = self.take();
        drop(held);
        let elapsed = start.elapsed();
        stats
            .as_deref()
            .unwrap_or_else(|| crate::metrics::unmatched())
            .observe(499, elapsed);
        if let Some(l) = log_phase {
            l.run(499, 0, elapsed);
        }
        // Only a record that was started (the log is on).
        if record.start.is_some() {
            record.request_time = Some(elapsed);
            record.status = 499;
            self.log.finish(record);
        }
    }
}

fn finish(
    state: &ProxyState,
    resp: Response<ProxyBody>,
    outcome: Outcome,
    lease: Option<Lease>,
) -> Response<ResponseBody> {
    let Outcome {
        mut record,
        stats,
        start,
        log_phase,
        held,
    } = outcome;
    let (mut parts, body) = resp.into_parts();
    if state.is_draining() && parts.status != StatusCode::SWITCHING_PROTOCOLS {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    record.status = parts.status.as_u16();
    if let (Some(l), Some(lease)) = (&log_phase, &lease) {
        l.upstream_answered(record.status, Some((&lease.node, lease.latency)));
    }
    let completion = Completion {
        record,
        log: state.access_log.clone(),
        lease,
        stats,
        start,
        log_phase,
        held,
    };
    Response::from_parts(parts, ResponseBody::new(body, Some(completion)))
}

type Forwarded = (Response<ProxyBody>, Option<Lease>);

#[allow(clippy::too_many_arguments)]
async fn forward(
    upstream: &Upstream,
    conn: &ConnInfo,
    mut parts: Parts,
    body: ProxyBody,
    websocket: Option<OnUpgrade>,
    via: bool,
    record: &mut AccessRecord,
    plugins: Option<&ResponsePlugins<'_>>,
    tunnel_idle: Duration,
) -> Result<Forwarded, Failure> {
    let set = upstream.node_set();
    let head_request = parts.method == Method::HEAD;
    let hash = if upstream.lb == LbType::Chash {
        let consumer = plugins
            .and_then(|p| p.state.consumer.as_ref())
            .map(|c| &*c.username);
        crate::hash_input::chash_input(upstream, &parts, &conn.plugin, consumer)
    } else {
        0
    };
    // A request may go to another node after it may have reached one only
    // when it is idempotent and has no body (and is not an upgrade).
    let replayable = is_idempotent(&parts.method) && body_is_empty(&body) && websocket.is_none();
    let logging = record.start.is_some();
    let mut plan = AttemptPlan::new(upstream, &set, hash, replayable, logging)?;

    // Prepare the upstream request head once. An absolute-form target's
    // authority replaces the Host field (RFC 9112 §3.2.2).
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    // The trailer fields the client announced (`Trailer`) go on with the
    // body: hyper's HTTP/1.1 client sends exactly the announced ones, in a
    // chunked body.
    let trailers = announced_trailers(&parts.headers).filter(|_| !body_is_empty(&body));
    headers::strip_hop_by_hop(&mut parts.headers, websocket.is_some());
    if let Some(names) = trailers {
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::TRAILER, names);
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    // A body of unknown length goes upstream chunked, whatever the method:
    // hyper's client would otherwise send a GET or DELETE without its body.
    // An upgrade request's too (nginx forwards it): the upgrade happens
    // after it, on the node's 101.
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && !body_is_empty(&body)
        && http_body::Body::size_hint(&body).exact().is_none()
    {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    // The client address: the peer's, or what `real-ip` established.
    let real_conn = plugins.and_then(|p| p.state.real_ip).map(|ip| {
        ConnInfo::new(
            SocketAddr::new(ip, conn.remote.port()),
            conn.local,
            conn.tls,
        )
    });
    let forwarded_for = real_conn.as_ref().unwrap_or(conn);
    headers::add_forwarded(&mut parts.headers, forwarded_for, original_host.as_ref());
    if via {
        parts
            .headers
            .append(header::VIA, headers::VIA_VALUE.clone());
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    if let Some(p) = plugins {
        p.state.upstream_headers.apply(&mut parts.headers);
        if let Some(target) = &p.state.upstream_target {
            if let Ok(uri) = target.parse() {
                parts.uri = uri;
            }
        }
        if let Some(m) = &p.state.upstream_method {
            parts.method = m.clone();
        }
    }
    let rewritten_host = plugins.and_then(|p| p.state.upstream_host.clone());

    // A copy for retries after the request may have reached a node.
    let replay = plan.replayable().then(|| RequestHead::copy(&parts));
    let mut pending = Some((parts, body));
    let mut last = Failure::bad_gateway("no node could be tried".into(), false);
    while let Some(attempt) = plan.next_node() {
        let (mut head, body) = match pending.take() {
            Some(p) => p,
            None => match &replay {
                Some(r) => (r.to_parts(), ProxyBody::empty()),
                None => break,
            },
        };
        let node = attempt.node.clone();
        set_host(
            &mut head.headers,
            upstream,
            &node.key,
            original_host.as_ref(),
        );
        if let Some(h) = &rewritten_host {
            head.headers.insert(header::HOST, h.clone());
        }
        let log = logging.then_some(&mut *record);
        let started = Instant::now();
        match send_to_node(upstream, &set, attempt.index, head, body).await {
            Ok((mut resp, sender_back)) => {
                let latency = started.elapsed();
                let status = resp.status();
                if plan.answered(&attempt, status.as_u16(), log) == Verdict::Retry {
                    continue;
                }
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    // Only relay a 101 we asked for: an unsolicited switch
                    // would hand the client a dead connection.
                    let Some(down) = websocket else {
                        return Err(Failure::bad_gateway(
                            format!("{}: unsolicited 101 Switching Protocols", node.key),
                            true,
                        ));
                    };
                    let up = hyper::upgrade::on(&mut resp);
                    tokio::spawn(tunnel(down, up, node.key.clone(), tunnel_idle));
                }
                let pooled = if status == StatusCode::SWITCHING_PROTOCOLS {
                    None
                } else {
                    sender_back.map(|(sender, uses)| (node.clone(), sender, uses))
                };
                let (mut rparts, rbody) = resp.into_parts();
                // hyper has de-chunked the body: a Content-Length sent
                // alongside Transfer-Encoding no longer describes it (RFC
                // 9112 §6.3). And weir speaks HTTP/1.1 to its clients, whatever
                // version the node used.
                if rparts.headers.contains_key(header::TRANSFER_ENCODING) {
                    rparts.headers.remove(header::CONTENT_LENGTH);
                }
                rparts.version = Version::HTTP_11;
                if rparts.status != StatusCode::SWITCHING_PROTOCOLS {
                    headers::strip_hop_by_hop(&mut rparts.headers, false);
                }
                if via {
                    rparts
                        .headers
                        .append(header::VIA, headers::VIA_VALUE.clone());
                }
                let mut body = ProxyBody::Incoming(rbody);
                if let Some(p) = plugins {
                    let decision = p.decide(&rparts, true);
                    decision.edits.apply(&mut rparts.headers);
                    if let Some(s) = decision.status.and_then(|s| StatusCode::from_u16(s).ok()) {
                        rparts.status = s;
                    }
                    if head_request && decision.body.is_some() {
                        // No body follows; the length would be the
                        // unfiltered one.
                        rparts.headers.remove(header::CONTENT_LENGTH);
                    } else if matches!(rparts.status.as_u16(), 204 | 304) {
                        // A status without a body (RFC 9110 §15.3.5): the
                        // node's is read to its end (the connection stays
                        // usable) and dropped.
                        rparts.headers.remove(header::CONTENT_LENGTH);
                        rparts.headers.remove(header::TRANSFER_ENCODING);
                        body = ProxyBody::discarded(body);
                    } else if let Some(filters) = decision.body {
                        // The filtered body's length is known once it has
                        // passed: hyper frames it (chunked, or DATA frames).
                        rparts.headers.remove(header::CONTENT_LENGTH);
                        body = ProxyBody::filtered(body, filters);
                    }
                }
                let lease = Lease {
                    in_flight: attempt.in_flight,
                    conn: pooled,
                    read_timeout: upstream.timeouts.read,
                    node: node.key.clone(),
                    latency,
                };
                return Ok((Response::from_parts(rparts, body), Some(lease)));
            }
            Err(AttemptFailure { failure, unsent }) => {
                let again = plan.failed(&attempt, &failure, log);
                if failure.client_fault || !again {
                    return Err(failure);
                }
                pending = unsent;
                last = failure;
            }
        }
    }
    Err(last)
}

/// A reply weir made, as a hyper response: what the plugins' response
/// phases decide applied, and no body for `HEAD` (over HTTP/2 too).
fn local(
    mut reply: LocalReply,
    head_request: bool,
    plugins: Option<&ResponsePlugins<'_>>,
) -> Response<ProxyBody> {
    let decision = plugins.map(|p| {
        let mut d = p.decide(&reply, false);
        d.apply_to_reply(&mut reply);
        d
    });
    let (parts, body) = reply.into_http(head_request, decision.as_ref().map(|d| &*d.edits));
    Response::from_parts(parts, ProxyBody::full(body))
}

/// Reads a request body whole for plugins that read it (up to
/// [`crate::h1::MAX_PLUGIN_BODY`]).
async fn read_body(body: Option<ProxyBody>) -> Result<bytes::Bytes, LocalReply> {
    let body = body.unwrap_or_else(ProxyBody::empty);
    match Limited::new(body, crate::h1::MAX_PLUGIN_BODY)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(LocalReply::error_msg(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413 Request Entity Too Large",
        )),
        Err(e) if crate::body::BodyTimedOut::is_cause_of(&*e) => Err(LocalReply::error_msg(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
        Err(_) => Err(LocalReply::error_msg(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: invalid request body",
        )),
    }
}
