//! HTTP side: accept loop, connections, authentication, routing and list requests.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::faults::{lock, parse_bool, Faults, RecordedRequest};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{new_uid, ContinueToken, Status};
use super::store::{ResourceKind, Store};

pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) user: String,
    pub(crate) anonymous_auth: bool,
    pub(crate) watch_list: bool,
    pub(crate) bookmark_interval: Duration,
    pub(crate) pre_timeout_bookmark: Duration,
    pub(crate) default_watch_timeout: Duration,
    pub(crate) too_large_rv_wait: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Auth {
    pub(crate) valid: HashSet<String>,
    pub(crate) forbidden: HashSet<String>,
}

/// State shared by the handle and every connection.
pub(crate) struct Shared {
    pub(crate) cfg: ServerConfig,
    pub(crate) store: Mutex<Store>,
    pub(crate) auth: Mutex<Auth>,
    pub(crate) faults: Faults,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) request_count: watch::Sender<usize>,
    pub(crate) watch_counts: watch::Sender<[usize; 2]>,
}

/// A running accept loop.
pub(crate) struct Running {
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and listens, with SO_REUSEADDR (so that a restart can take
/// the same port again despite connections in TIME_WAIT) and SO_REUSEPORT
/// (so that [`hold_port`] can bind it beside this listener).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A socket bound to the port of a live listener from [`bind`], without
/// listening: once that listener closes, connections are refused, and no
/// other socket can bind the port (no SO_REUSEADDR; only an explicit
/// SO_REUSEPORT bind by this user could) until this one listens on it.
pub(crate) fn hold_port(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = new_socket(addr)?;
    socket.bind(addr)?;
    Ok(socket)
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
    socket.set_reuseport(true)?;
    Ok(socket)
}

pub(crate) fn spawn_accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Running {
    let (shutdown, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = rx.changed() => break,
                res = listener.accept() => match res {
                    Ok((stream, peer)) => {
                        debug!(%peer, "fake kube-apiserver: connection");
                        conns.spawn(serve_conn(stream, shared.clone(), tls.clone()));
                    }
                    Err(e) => {
                        warn!(error = %e, "fake kube-apiserver: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    });
    Running { shutdown, task }
}

async fn serve_conn(
    stream: TcpStream,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let res = match tls {
        None => builder.serve_connection(TokioIo::new(stream), svc).await,
        Some(acceptor) => {
            let accepted =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match accepted {
                Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                Ok(Err(e)) => {
                    debug!(error = %e, "fake kube-apiserver: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    if let Err(e) = res {
        debug!(error = %e, "fake kube-apiserver: connection ended with error");
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Common response headers of the API server.
pub(crate) fn response(code: u16, content_type: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put("audit-id", &new_uid());
    put("cache-control", "no-cache, private");
    put("content-type", content_type);
    r
}

pub(crate) fn status_response(s: &Status, pretty: bool) -> Response<Body> {
    let mut r = response(s.code(), "application/json", full(s.to_json(pretty)));
    if matches!(s.code(), 429 | 503 | 504) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    if s.code() == 403 || s.code() == 401 {
        r.headers_mut().insert(
            "x-content-type-options",
            http::HeaderValue::from_static("nosniff"),
        );
    }
    r
}

fn json_response<T: Serialize>(v: &T, pretty: bool) -> Response<Body> {
    let bytes = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    };
    match bytes {
        Ok(b) => response(200, "application/json", full(b)),
        Err(e) => status_response(&Status::new(500, "InternalError", e.to_string()), pretty),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The list/watch query parameters the fake understands.
#[derive(Debug, Default)]
pub(crate) struct ListQuery {
    pub(crate) label: LabelSelector,
    pub(crate) field: FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_: Option<String>,
    pub(crate) rv: Option<String>,
    pub(crate) rv_match: Option<String>,
    pub(crate) watch: bool,
    pub(crate) bookmarks: bool,
    pub(crate) timeout_secs: Option<u64>,
    pub(crate) send_initial_events: Option<bool>,
}

impl ListQuery {
    fn parse(q: &[(String, String)]) -> Result<ListQuery, Status> {
        let mut lq = ListQuery::default();
        for (k, v) in q {
            match k.as_str() {
                "labelSelector" => {
                    lq.label = LabelSelector::parse(v).map_err(Status::bad_request)?
                }
                "fieldSelector" => {
                    lq.field = FieldSelector::parse(v).map_err(Status::bad_request)?
                }
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        Status::bad_request(format!("limit: Invalid value: \"{v}\""))
                    })?;
                    lq.limit = (n > 0).then_some(n as usize);
                }
                "continue" if !v.is_empty() => lq.continue_ = Some(v.clone()),
                "resourceVersion" if !v.is_empty() => lq.rv = Some(v.clone()),
                "resourceVersionMatch" if !v.is_empty() => lq.rv_match = Some(v.clone()),
                "watch" => lq.watch = parse_bool(v),
                "allowWatchBookmarks" => lq.bookmarks = parse_bool(v),
                "timeoutSeconds" => lq.timeout_secs = v.parse().ok(),
                "sendInitialEvents" => lq.send_initial_events = Some(parse_bool(v)),
                _ => {}
            }
        }
        Ok(lq)
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.label.matches(obj) && self.field.matches(obj)
    }

    pub(crate) fn parse_rv(s: &str) -> Result<u64, Status> {
        s.parse::<u64>().map_err(|e| {
            Status::bad_request(format!(
                "invalid resource version: strconv.ParseUint: parsing {s:?}: {e}"
            ))
        })
    }
}

enum Caller {
    Authorized(String),
    Unauthorized(String),
}

impl Caller {
    fn name(&self) -> &str {
        match self {
            Caller::Authorized(n) | Caller::Unauthorized(n) => n,
        }
    }
}

fn authenticate(shared: &Shared, token: Option<&str>) -> Result<Caller, Status> {
    let auth = lock(&shared.auth);
    match token {
        Some(t) if auth.valid.contains(t) => Ok(Caller::Authorized(shared.cfg.user.clone())),
        Some(t) if auth.forbidden.contains(t) => Ok(Caller::Unauthorized(shared.cfg.user.clone())),
        None if shared.cfg.anonymous_auth => Ok(Caller::Unauthorized("system:anonymous".into())),
        _ => Err(Status::unauthorized()),
    }
}

/// Handles one HTTP request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // kube-apiserver pretty-prints for curl, wget and browsers (hence the recordings' layout).
    let pretty = ["curl", "Wget", "Mozilla/5.0"]
        .iter()
        .any(|p| ua.starts_with(p))
        || query.iter().any(|(k, v)| k == "pretty" && parse_bool(v));
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        has_bearer_token: token.is_some(),
        at: std::time::Instant::now(),
    };
    debug!(method = %recorded.method, path = %recorded.path, query = ?recorded.query, "fake kube-apiserver: request");
    lock(&shared.requests).push(recorded);
    shared.request_count.send_modify(|n| *n += 1);

    if let Some(code) = shared.faults.take_failure() {
        debug!(code, "fake kube-apiserver: injected failure");
        return status_response(&Status::injected(code), pretty);
    }
    let caller = match authenticate(&shared, token.as_deref()) {
        Ok(c) => c,
        Err(s) => return status_response(&s, pretty),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/version") => response(200, "application/json", full(VERSION)),
        (&Method::GET, "/healthz" | "/livez" | "/readyz") => {
            response(200, "text/plain; charset=utf-8", full("ok"))
        }
        (&Method::GET, "/api") => json_response(&discovery_api(), pretty),
        (&Method::GET, "/apis") => json_response(&discovery_apis(), pretty),
        (&Method::GET, "/api/v1") => json_response(&resource_list(ResourceKind::Endpoints), pretty),
        (&Method::GET, "/apis/discovery.k8s.io/v1") => {
            json_response(&resource_list(ResourceKind::EndpointSlices), pretty)
        }
        (_, p) if p.starts_with("/api/") || p.starts_with("/apis/") => {
            resource_request(shared, &method, p, &query, &caller, pretty).await
        }
        _ => {
            let verb = method.as_str().to_ascii_lowercase();
            status_response(&Status::forbidden_path(caller.name(), &verb, &path), pretty)
        }
    }
}

const VERSION: &str = r#"{"major":"1","minor":"28","gitVersion":"v1.28.0","gitCommit":"8bfc72d03e2130f1bee566d692596931b0ff57cf","gitTreeState":"clean","buildDate":"2026-11-22T01:29:42Z","goVersion":"go1.21.13","compiler":"gc","platform":"linux/amd64"}"#;

fn discovery_api() -> Value {
    serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
}

fn discovery_apis() -> Value {
    let gv = serde_json::json!({"groupVersion": "discovery.k8s.io/v1", "version": "v1"});
    serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "discovery.k8s.io", "versions": [gv.clone()], "preferredVersion": gv}]})
}

fn resource_list(kind: ResourceKind) -> Value {
    serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": kind.api_version(),
        "resources": [{"name": kind.plural(), "singularName": kind.kind().to_ascii_lowercase(),
            "namespaced": true, "kind": kind.kind(),
            "verbs": ["create","delete","deletecollection","get","list","patch","update","watch"]}]})
}

/// A parsed `/api/...` or `/apis/...` path.
struct ResourcePath<'a> {
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    resource: String,
    name: Option<&'a str>,
}

fn parse_resource_path(path: &str) -> Option<ResourcePath<'_>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs[..] {
        ["api", v, ref rest @ ..] => ("", v, rest),
        ["apis", g, v, ref rest @ ..] => (g, v, rest),
        _ => return None,
    };
    let (namespace, resource, name, sub) = match rest {
        ["namespaces", ns, res, tail @ ..] => (Some(*ns), *res, tail.first().copied(), tail.get(1)),
        ["namespaces", ns] => (None, "namespaces", Some(*ns), None),
        [res, tail @ ..] => (None, *res, tail.first().copied(), tail.get(1)),
        [] => return None,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some(ResourcePath {
        group,
        version,
        namespace,
        resource,
        name,
    })
}

async fn resource_request(
    shared: Arc<Shared>,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    caller: &Caller,
    pretty: bool,
) -> Response<Body> {
    let Some(rp) = parse_resource_path(path) else {
        return status_response(&Status::not_found(), pretty);
    };
    let watch = query.iter().any(|(k, v)| k == "watch" && parse_bool(v));
    let verb = match (method, rp.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    };
    let kind = ResourceKind::ALL
        .into_iter()
        .find(|k| k.group() == rp.group && k.plural() == rp.resource);
    let allowed = matches!(caller, Caller::Authorized(_))
        && kind.is_some()
        && matches!(verb, "list" | "watch");
    let Some(kind) = kind.filter(|_| allowed) else {
        let s = Status::forbidden_resource(
            caller.name(),
            verb,
            rp.group,
            &rp.resource,
            rp.name,
            rp.namespace,
        );
        return status_response(&s, pretty);
    };
    if rp.version != "v1" {
        return status_response(&Status::not_found(), pretty);
    }
    let q = match ListQuery::parse(query) {
        Ok(q) => q,
        Err(s) => return status_response(&s, pretty),
    };
    let ns = rp.namespace.map(str::to_string);
    if q.watch {
        super::watch::watch(shared, kind, ns, q).await
    } else {
        match list(&shared, kind, ns.as_deref(), &q).await {
            Ok(body) => {
                let bytes = if pretty {
                    serde_json::to_vec_pretty(&body)
                } else {
                    serde_json::to_vec(&body)
                };
                response(200, "application/json", full(bytes.unwrap_or_default()))
            }
            Err(s) => status_response(&s, pretty),
        }
    }
}

#[derive(Serialize)]
struct ListBody {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: ListMeta,
    items: Vec<Value>,
}

#[derive(Serialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_: Option<String>,
    #[serde(rename = "remainingItemCount", skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<u64>,
}

/// Validation shared with watch: `ListOptions` rules of a v1.28 server.
fn validate_list(q: &ListQuery) -> Result<(), Status> {
    if q.send_initial_events.is_some() {
        return Err(Status::invalid_list_options(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    if let Some(m) = &q.rv_match {
        if q.rv.is_none() {
            return Err(Status::invalid_list_options(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if m != "NotOlderThan" && m != "Exact" {
            return Err(Status::invalid_list_options(
                "resourceVersionMatch",
                &format!("unsupported resourceVersionMatch {m:?}; supported values: \"Exact\", \"NotOlderThan\""),
            ));
        }
        if q.continue_.is_some() {
            return Err(Status::invalid_list_options(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m == "Exact" && q.rv.as_deref() == Some("0") {
            return Err(Status::invalid_list_options(
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if q.continue_.is_some() && q.rv.as_deref().is_some_and(|r| r != "0") {
        return Err(Status::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    Ok(())
}

async fn list(
    shared: &Shared,
    kind: ResourceKind,
    ns: Option<&str>,
    q: &ListQuery,
) -> Result<ListBody, Status> {
    validate_list(q)?;
    // A NotOlderThan list from the future waits (like the watch cache) before giving up.
    if let (Some(rv), None | Some("NotOlderThan")) = (q.rv.as_deref(), q.rv_match.as_deref()) {
        let want = ListQuery::parse_rv(rv)?;
        let mut rx = lock(&shared.store).subscribe_rv();
        let wait = rx.wait_for(|cur| *cur >= want);
        if tokio::time::timeout(shared.cfg.too_large_rv_wait, wait)
            .await
            .is_err()
        {
            let cur = lock(&shared.store).rv();
            return Err(Status::too_large_resource_version(want, cur));
        }
    }
    let store = lock(&shared.store);
    let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
    let mut limit = q.limit;
    let (snapshot, list_rv, start) = if let Some(token) = &q.continue_ {
        let t = ContinueToken::decode(token)
            .map_err(|e| Status::bad_request(format!("continue key is not valid: {e}")))?;
        if t.rv == -1 {
            (store.current(kind).clone(), store.rv(), t.start)
        } else {
            let rv = u64::try_from(t.rv).unwrap_or(0);
            match store.snapshot_at(kind, rv) {
                Some(s) => (s, rv, t.start),
                None => return Err(Status::continue_expired(ContinueToken::encode(-1, t.start))),
            }
        }
    } else {
        match (q.rv.as_deref(), q.rv_match.as_deref()) {
            (Some("0"), _) => {
                // Served from the watch cache: a v1.28 server ignores `limit` here.
                limit = None;
                (store.current(kind).clone(), store.rv(), String::new())
            }
            (Some(rv), Some("Exact")) => {
                let rv = ListQuery::parse_rv(rv)?;
                if rv > store.rv() {
                    return Err(Status::too_large_resource_version(rv, store.rv()));
                }
                let snap = store
                    .snapshot_at(kind, rv)
                    .ok_or_else(Status::list_rv_too_old)?;
                (snap, rv, String::new())
            }
            _ => (store.current(kind).clone(), store.rv(), String::new()),
        }
    };
    drop(store);
    let from = format!("{prefix}{start}");
    let plain = q.label.is_empty() && q.field.is_empty();
    let mut items = Vec::new();
    let mut last_key: Option<&str> = None;
    let mut has_more = false;
    let mut remaining = 0u64;
    for (key, obj) in snapshot.range(from..) {
        if !key.starts_with(&prefix) {
            break;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            has_more = true;
            if !plain {
                break;
            }
            remaining += 1;
            continue;
        }
        last_key = Some(key);
        if q.matches(obj) {
            let mut item = obj.as_ref().clone();
            if let Some(o) = item.as_object_mut() {
                // List items carry no kind/apiVersion (see endpoints-list.json).
                o.remove("kind");
                o.remove("apiVersion");
            }
            items.push(item);
        }
    }
    let continue_ = match (has_more, last_key) {
        (true, Some(k)) => {
            let rel = k.strip_prefix(&prefix).unwrap_or(k);
            Some(ContinueToken::encode(list_rv as i64, format!("{rel}\0")))
        }
        _ => None,
    };
    Ok(ListBody {
        kind: kind.list_kind(),
        api_version: kind.api_version(),
        metadata: ListMeta {
            resource_version: list_rv.to_string(),
            remaining_item_count: (continue_.is_some() && plain).then_some(remaining),
            continue_,
        },
        items,
    })
}
