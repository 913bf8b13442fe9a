//! The request path: route, run plugins, pick a node, forward, stream back.
//!
//! Read top to bottom, this file is what happens to every request. It loads
//! the snapshot once, takes no lock, and copies request headers only when a
//! retry after sending might be needed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use weir_config::{LbType, PassHost};

use crate::access_log::AccessRecord;
use crate::body::ProxyBody;
use crate::headers;
use crate::plugins::PluginContext;
use crate::pool::{self, PooledConn};
use crate::response_body::{Completion, Lease, ResponseBody};
use crate::snapshot::{CompiledRoute, ProxyState};
use crate::upstream::{NodeSet, Upstream};

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
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Serves one request. Never fails: errors become HTTP responses.
pub async fn handle(
    state: Arc<ProxyState>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let snapshot = state.snapshot.load_full();
    let log_enabled = state.access_log.enabled();
    let mut record = AccessRecord::default();
    if log_enabled {
        record.start = Some(Instant::now());
        record.time = Some(SystemTime::now());
        record.remote = Some(conn.remote);
        record.method = req.method().clone();
        record.uri = req.uri().clone();
        record.version = version_str(req.version());
        record.referer = req.headers().get(header::REFERER).cloned();
        record.user_agent = req.headers().get(header::USER_AGENT).cloned();
        record.host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
    }
    let upgrade_requested = headers::is_websocket_upgrade(req.headers());
    let downstream_upgrade = upgrade_requested.then(|| hyper::upgrade::on(&mut req));

    let match_path = crate::uri_normalize::match_path(req.uri().path());
    let route = snapshot
        .router
        .find(
            request_host(req.uri(), req.headers()),
            &match_path,
            req.method(),
        )
        .map(|m| m.value.clone());
    drop(match_path);
    let Some(route) = route else {
        return Ok(finish(
            &state,
            error_response(StatusCode::NOT_FOUND, "404 Route Not Found"),
            record,
            None,
        ));
    };
    if log_enabled {
        record.route_id = Some(route.id.clone());
    }

    let (mut parts, body) = req.into_parts();
    let body = if route.plugins.is_empty() {
        body
    } else {
        let host = request_host(&parts.uri, &parts.headers).to_owned();
        let ctx = PluginContext {
            remote: conn.remote,
            scheme: conn.scheme(),
            host: &host,
        };
        route.plugins.rewrite(&mut parts, &ctx);
        match route.plugins.access(&parts, body, &ctx).await {
            Ok(resp) => return Ok(finish(&state, resp, record, None)),
            Err(body) => body,
        }
    };

    let Some(upstream) = route.upstream.clone() else {
        return Ok(finish(
            &state,
            error_response(StatusCode::SERVICE_UNAVAILABLE, "route has no upstream"),
            record,
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
        &route,
        &upstream,
        &conn,
        parts,
        ProxyBody::Incoming(body),
        websocket,
        via,
        &mut record,
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
            (error_response(e.status, e.public_message), None)
        }
    };
    Ok(finish(&state, resp, record, lease))
}

fn finish(
    state: &ProxyState,
    resp: Response<ProxyBody>,
    mut record: AccessRecord,
    lease: Option<Lease>,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    if state.is_draining() && parts.status != StatusCode::SWITCHING_PROTOCOLS {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !state.access_log.enabled() && lease.is_none() {
        return Response::from_parts(parts, ResponseBody::plain(body));
    }
    record.status = parts.status.as_u16();
    let completion = Completion {
        record,
        log: state.access_log.clone(),
        lease,
    };
    Response::from_parts(parts, ResponseBody::new(body, Some(completion)))
}

/// A failed forward: the status to answer and why.
struct ForwardError {
    status: StatusCode,
    public_message: &'static str,
    reason: String,
}

impl ForwardError {
    fn new(status: StatusCode, public_message: &'static str, reason: impl Into<String>) -> Self {
        ForwardError {
            status,
            public_message,
            reason: reason.into(),
        }
    }
}

type Forwarded = (Response<ProxyBody>, Option<Lease>);

#[allow(clippy::too_many_arguments)]
async fn forward(
    route: &CompiledRoute,
    upstream: &Upstream,
    conn: &ConnInfo,
    mut parts: Parts,
    body: ProxyBody,
    websocket: Option<OnUpgrade>,
    via: bool,
    record: &mut AccessRecord,
) -> Result<Forwarded, ForwardError> {
    let started = Instant::now();
    let set = upstream.node_set();
    if set.is_empty() {
        let what = upstream.service_name().map_or_else(
            || "no nodes configured".to_owned(),
            |s| format!("no endpoints for {s}"),
        );
        return Err(ForwardError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: no available node",
            what,
        ));
    }
    let hash = if upstream.lb == LbType::Chash {
        crate::hash_input::chash_input(upstream, &parts, conn)
    } else {
        0
    };

    // Prepare the upstream request head once. An absolute-form target's
    // authority replaces the Host field (RFC 9112 §3.2.2).
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned());
    headers::strip_hop_by_hop(&mut parts.headers, websocket.is_some());
    headers::add_forwarded(&mut parts.headers, conn, original_host.as_ref());
    if via {
        parts
            .headers
            .append(header::VIA, headers::VIA_VALUE.clone());
    }
    parts.uri = origin_form(&parts.uri);
    parts.version = Version::HTTP_11;
    route.plugins.before_proxy(&mut parts);

    let idempotent = is_idempotent(&parts.method);
    let max_attempts = 1 + upstream
        .retries
        .map_or(set.len().saturating_sub(1), |r| r as usize);
    // A copy for retries after the request may have reached a node: only for
    // idempotent requests without a body, and only when a retry is possible.
    let replay = (idempotent && body_is_empty(&body) && max_attempts > 1 && websocket.is_none())
        .then(|| RequestHead::copy(&parts));

    let mut tried = Tried::default();
    let mut pending = Some((parts, body));
    let mut last_error = ForwardError::new(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway",
        "no node could be tried",
    );
    // Unhealthy nodes get no traffic, unless every node is unhealthy: then
    // weir fails open and uses them all (and says so).
    let health_aware = upstream.health.is_some();
    let fail_open = health_aware && set.nodes.iter().all(|n| !n.health.is_healthy());
    if fail_open && log_limited(&FAIL_OPEN_LOGGED) {
        tracing::warn!(upstream = %upstream.id, nodes = set.len(), "every node is unhealthy; failing open and using them all");
    }
    let usable = |i: usize, tried: &Tried| {
        !tried.contains(i) && (!health_aware || fail_open || set.nodes[i].health.is_healthy())
    };
    while tried.len() < max_attempts {
        if !tried.is_empty() && retry_deadline_passed(upstream, started) {
            break;
        }
        let Some(idx) = set
            .balancer
            .pick(&set.balance_nodes, hash, &|i| !usable(i, &tried))
        else {
            break;
        };
        tried.push(idx);
        let node = &set.nodes[idx];
        let (mut head, body) = match pending.take() {
            Some(p) => p,
            None => match &replay {
                Some(r) => (r.to_parts(), ProxyBody::empty()),
                None => break,
            },
        };
        set_host(
            &mut head.headers,
            upstream,
            &node.key,
            original_host.as_ref(),
        );
        // Attempt timing feeds ewma and the access log; skip the clock reads
        // when neither wants it.
        let timed = upstream.lb == LbType::Ewma || record.start.is_some();
        let attempt_start = timed.then(Instant::now);
        let in_flight = node.load.begin();
        match send_to_node(upstream, &set, idx, head, body).await {
            Ok((mut resp, sender_back)) => {
                let elapsed = attempt_start.map(|t| t.elapsed()).unwrap_or_default();
                if upstream.lb == LbType::Ewma {
                    node.load.observe(elapsed);
                }
                let status = resp.status();
                record.push_attempt(&node.key, Some(status.as_u16()), elapsed);
                if let Some((outcome, t)) = upstream
                    .health
                    .as_ref()
                    .and_then(|h| h.passive_status(status))
                {
                    crate::health::observe(&upstream.id, node, outcome, &t, "passive");
                }
                // A 502/503/504 from a node is retried on another node when
                // the request can be replayed (idempotent, no body).
                let another =
                    (0..set.len()).any(|i| usable(i, &tried) && set.balance_nodes[i].weight > 0);
                if matches!(status.as_u16(), 502..=504)
                    && replay.is_some()
                    && tried.len() < max_attempts
                    && another
                    && !retry_deadline_passed(upstream, started)
                {
                    tracing::warn!(upstream = %upstream.id, node = %node.key, status = status.as_u16(), "node answered an error; retrying on another node");
                    drop(in_flight);
                    continue;
                }
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    // Only relay a 101 we asked for: an unsolicited switch
                    // would hand the client a dead connection.
                    let Some(down) = websocket else {
                        return Err(ForwardError::new(
                            StatusCode::BAD_GATEWAY,
                            "502 Bad Gateway",
                            format!("{}: unsolicited 101 Switching Protocols", node.key),
                        ));
                    };
                    let up = hyper::upgrade::on(&mut resp);
                    tokio::spawn(tunnel(down, up, node.key.clone()));
                }
                let conn = if status == StatusCode::SWITCHING_PROTOCOLS {
                    None
                } else {
                    sender_back.map(|(sender, uses)| (node.clone(), sender, uses))
                };
                let (mut rparts, rbody) = resp.into_parts();
                if rparts.status != StatusCode::SWITCHING_PROTOCOLS {
                    headers::strip_hop_by_hop(&mut rparts.headers, false);
                }
                if via {
                    rparts
                        .headers
                        .append(header::VIA, headers::VIA_VALUE.clone());
                }
                route.plugins.response_headers(&mut rparts);
                let body = route.plugins.response_body(ProxyBody::Incoming(rbody));
                let lease = Lease { in_flight, conn };
                return Ok((Response::from_parts(rparts, body), Some(lease)));
            }
            Err(failure) => {
                let elapsed = attempt_start.map(|t| t.elapsed()).unwrap_or_default();
                record.push_attempt(&node.key, None, elapsed);
                let timed_out = failure.error.status == StatusCode::GATEWAY_TIMEOUT;
                if let Some((outcome, t)) = upstream
                    .health
                    .as_ref()
                    .and_then(|h| h.passive_failure(timed_out))
                {
                    crate::health::observe(&upstream.id, node, outcome, &t, "passive");
                }
                tracing::warn!(
                    upstream = %upstream.id,
                    node = %node.key,
                    attempt = tried.len(),
                    error = %failure.error.reason,
                    "upstream attempt failed"
                );
                let retryable = failure.unsent.is_some() || (idempotent && replay.is_some());
                pending = failure.unsent;
                last_error = failure.error;
                if !retryable {
                    break;
                }
            }
        }
    }
    Err(last_error)
}

/// Node indices already tried for this request. Inline for the usual few
/// attempts: no allocation on the request path.
#[derive(Default)]
pub(crate) struct Tried {
    inline: [usize; 4],
    len: usize,
    spill: Vec<usize>,
}

impl Tried {
    pub(crate) fn push(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
        } else {
            self.spill.push(i);
        }
        self.len += 1;
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.inline[..self.len.min(self.inline.len())].contains(&i) || self.spill.contains(&i)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(crate) static FAIL_OPEN_LOGGED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// True at most once per second per `slot`: keeps repeated warnings from
/// flooding the log.
pub(crate) fn log_limited(slot: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = slot.load(Ordering::Relaxed);
    now > last
        && slot
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// A failed attempt; `unsent` holds the request when it never left weir.
struct AttemptFailure {
    error: ForwardError,
    unsent: Option<(Parts, ProxyBody)>,
}

type SenderBack = Option<(hyper::client::conn::http1::SendRequest<ProxyBody>, u32)>;

/// One attempt on one node: a pooled or new connection, then the exchange.
async fn send_to_node(
    upstream: &Upstream,
    set: &NodeSet,
    idx: usize,
    head: Parts,
    body: ProxyBody,
) -> Result<(Response<Incoming>, SenderBack), AttemptFailure> {
    let node = &set.nodes[idx];
    let mut req = Request::from_parts(head, body);
    // A pooled connection may have been closed by the node meanwhile; hyper
    // then hands the request back unsent and we try a fresh connection.
    for _ in 0..2 {
        let mut conn: PooledConn = match node.pool.checkout() {
            Some(c) => c,
            None => match pool::connect(&node.endpoint, upstream.timeouts.connect).await {
                Ok(c) => c,
                Err(e) => {
                    let timeout = matches!(e, pool::ConnectError::Timeout(_));
                    let (head, body) = req.into_parts();
                    return Err(AttemptFailure {
                        error: ForwardError::new(
                            if timeout {
                                StatusCode::GATEWAY_TIMEOUT
                            } else {
                                StatusCode::BAD_GATEWAY
                            },
                            if timeout {
                                "504 Gateway Timeout"
                            } else {
                                "502 Bad Gateway"
                            },
                            e.to_string(),
                        ),
                        unsent: Some((head, body)),
                    });
                }
            },
        };
        if conn.sender.ready().await.is_err() {
            continue;
        }
        let reused = conn.reused;
        let exchange = conn.sender.try_send_request(req);
        let wait = upstream.timeouts.send + upstream.timeouts.read;
        match tokio::time::timeout(wait, exchange).await {
            Ok(Ok(resp)) => {
                let keep = !is_connection_close(resp.headers());
                let back = keep.then_some((conn.sender, conn.uses + 1));
                return Ok((resp, back));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    continue;
                }
                Some(unsent) => {
                    let (head, body) = unsent.into_parts();
                    return Err(AttemptFailure {
                        error: ForwardError::new(
                            StatusCode::BAD_GATEWAY,
                            "502 Bad Gateway",
                            format!("{}: {}", node.key, e.error()),
                        ),
                        unsent: Some((head, body)),
                    });
                }
                None => {
                    return Err(AttemptFailure {
                        error: ForwardError::new(
                            StatusCode::BAD_GATEWAY,
                            "502 Bad Gateway",
                            format!("{}: {}", node.key, e.error()),
                        ),
                        unsent: None,
                    })
                }
            },
            Err(_) => {
                return Err(AttemptFailure {
                    error: ForwardError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "504 Gateway Timeout",
                        format!("{}: no response within {:?}", node.key, wait),
                    ),
                    unsent: None,
                })
            }
        }
    }
    Err(AttemptFailure {
        error: ForwardError::new(
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway",
            format!("{}: pooled connections kept failing", node.key),
        ),
        unsent: None,
    })
}

/// Copies bytes both ways between an upgraded client and node connection.
async fn tunnel(down: OnUpgrade, up: OnUpgrade, node: Arc<str>) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(node = %node, error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(node = %node, error = %e, "tunnel closed with error");
    }
}

/// The request head, copied for replays.
struct RequestHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl RequestHead {
    fn copy(parts: &Parts) -> RequestHead {
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    fn to_parts(&self) -> Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = self.uri.clone();
        parts.headers = self.headers.clone();
        parts.version = Version::HTTP_11;
        parts
    }
}

pub(crate) fn retry_deadline_passed(upstream: &Upstream, started: Instant) -> bool {
    upstream
        .retry_timeout
        .is_some_and(|limit| started.elapsed() >= limit)
}

fn set_host(
    headers: &mut HeaderMap,
    upstream: &Upstream,
    node_key: &str,
    original: Option<&HeaderValue>,
) {
    match upstream.pass_host {
        PassHost::Pass => match original {
            Some(h) => {
                headers.insert(header::HOST, h.clone());
            }
            // An HTTP/1.0 client may send no Host; HTTP/1.1 to the node
            // requires one (RFC 9112 §3.2): name the node.
            None => {
                if let Ok(v) = HeaderValue::from_str(node_key) {
                    headers.insert(header::HOST, v);
                }
            }
        },
        PassHost::Node => {
            if let Ok(v) = HeaderValue::from_str(node_key) {
                headers.insert(header::HOST, v);
            }
        }
        PassHost::Rewrite => {
            if let Some(h) = &upstream.upstream_host {
                headers.insert(header::HOST, h.clone());
            }
        }
    }
}

fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn body_is_empty(b: &ProxyBody) -> bool {
    use http_body::Body;
    b.is_end_stream() || b.size_hint().exact() == Some(0)
}

fn is_connection_close(h: &HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    let raw = uri
        .host()
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    strip_port(raw)
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/0.9",
    }
}

/// A JSON error in APISIX's shape: `{"error_msg":"..."}`.
pub fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error_msg": message }).to_string();
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn absolute_uris_become_origin_form() {
        let u: Uri = "http://a.example/x?y=1".parse().unwrap();
        assert_eq!(origin_form(&u).to_string(), "/x?y=1");
    }
}
