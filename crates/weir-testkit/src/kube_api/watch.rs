//! Watch streams: chunked JSON lines, history replay, selector transitions, bookmarks,
//! timeouts, and the cut/stall faults.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use super::faults::lock;
use super::server::{response, status_response, Body, ListQuery, Shared};
use super::status::Status;
use super::store::{EventType, ResourceKind, StoreEvent, WatchRegistration};

type FrameTx = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;

/// One `{"type":..,"object":..}` line.
fn event_line(ty: &str, object: &Value) -> Bytes {
    let obj = serde_json::to_string(object).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("{{\"type\":\"{ty}\",\"object\":{obj}}}\n"))
}

/// A BOOKMARK line exactly as a v1.28 server writes it (Go zero values included).
pub(crate) fn bookmark_line(kind: ResourceKind, rv: u64, initial_events_end: bool) -> Bytes {
    let annotations = if initial_events_end {
        r#","annotations":{"k8s.io/initial-events-end":"true"}"#
    } else {
        ""
    };
    let tail = match kind {
        ResourceKind::Endpoints => "",
        ResourceKind::EndpointSlices => r#","addressType":"","endpoints":null,"ports":null"#,
    };
    Bytes::from(format!(
        "{{\"type\":\"BOOKMARK\",\"object\":{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\",\"creationTimestamp\":null{annotations}}}{tail}}}}}\n",
        kind.kind(),
        kind.api_version()
    ))
}

fn error_line(s: &Status) -> Bytes {
    let obj = String::from_utf8(s.to_json(false)).unwrap_or_default();
    Bytes::from(format!("{{\"type\":\"ERROR\",\"object\":{obj}}}\n"))
}

/// Counts an open watch for [`FakeApiServer::open_watches`](super::FakeApiServer::open_watches).
struct WatchGuard {
    shared: Arc<Shared>,
    kind: ResourceKind,
}

impl WatchGuard {
    fn new(shared: Arc<Shared>, kind: ResourceKind) -> WatchGuard {
        shared.watch_counts.send_modify(|c| c[kind.index()] += 1);
        WatchGuard { shared, kind }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let i = self.kind.index();
        self.shared
            .watch_counts
            .send_modify(|c| c[i] = c[i].saturating_sub(1));
    }
}

struct Ctx {
    kind: ResourceKind,
    namespace: Option<String>,
    q: ListQuery,
}

impl Ctx {
    fn passes(&self, ns: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns) && self.q.matches(obj)
    }

    /// Converts a store event for this watcher, like the cacher does: an object that
    /// starts matching is ADDED, one that stops matching is DELETED (previous content,
    /// event's resourceVersion).
    fn convert(&self, ev: &StoreEvent) -> Option<Bytes> {
        if ev.kind != self.kind {
            return None;
        }
        let cur = ev.ty != EventType::Deleted && self.passes(&ev.namespace, &ev.object);
        let old = ev
            .prev
            .as_ref()
            .is_some_and(|p| self.passes(&ev.namespace, p));
        match (cur, old) {
            (true, false) => Some(event_line("ADDED", &ev.object)),
            (true, true) => Some(event_line("MODIFIED", &ev.object)),
            (false, true) => {
                let mut gone = ev.prev.as_deref().cloned().unwrap_or(Value::Null);
                if let Some(m) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), ev.rv.to_string().into());
                }
                Some(event_line("DELETED", &gone))
            }
            (false, false) => None,
        }
    }
}

fn validate_watch(shared: &Shared, q: &ListQuery) -> Result<(), Status> {
    let forbid = |field: &str, msg: &str| Err(Status::invalid_list_options(field, msg));
    match q.send_initial_events {
        None if q.rv_match.is_some() => forbid(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ),
        Some(_) if q.rv_match.as_deref() != Some("NotOlderThan") => forbid(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ),
        Some(_) if !shared.cfg.watch_list => forbid(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ),
        Some(true) if !q.bookmarks => forbid(
            "allowWatchBookmarks",
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        ),
        _ => Ok(()),
    }
}

/// Starts a watch: HTTP 200 with a chunked stream of JSON lines.
pub(crate) async fn watch(
    shared: Arc<Shared>,
    kind: ResourceKind,
    namespace: Option<String>,
    q: ListQuery,
) -> Response<Body> {
    if let Err(s) = validate_watch(&shared, &q) {
        return status_response(&s, false);
    }
    let rv = match q.rv.as_deref() {
        None | Some("0") => None,
        Some(r) => match ListQuery::parse_rv(r) {
            Ok(n) => Some(n),
            Err(s) => return status_response(&s, false),
        },
    };
    let initial_events_end = q.send_initial_events == Some(true);
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Frame<Bytes>, io::Error>>();
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed_unsync();
    let registered = {
        let mut store = lock(&shared.store);
        let from = match (q.send_initial_events, rv) {
            (Some(true), _) => None,
            (Some(false), r) => Some(r.unwrap_or(store.rv())),
            (None, r) => r,
        };
        store.register_watch(kind, from)
    };
    match registered {
        Err(floor) => {
            let requested = rv.unwrap_or(0);
            debug!(
                requested,
                floor, "fake kube-apiserver: watch from expired resourceVersion"
            );
            let _ = tx.send(Ok(Frame::data(error_line(
                &Status::too_old_resource_version(requested, floor),
            ))));
            drop(tx);
        }
        Ok(reg) => {
            let guard = WatchGuard::new(shared.clone(), kind);
            let timeout = q
                .timeout_secs
                .filter(|t| *t > 0)
                .map(Duration::from_secs)
                .unwrap_or(shared.cfg.default_watch_timeout);
            let ctx = Ctx { kind, namespace, q };
            tokio::spawn(run_watch(
                shared,
                ctx,
                reg,
                tx,
                timeout,
                initial_events_end,
                guard,
            ));
        }
    }
    response(200, "application/json", body)
}

async fn run_watch(
    shared: Arc<Shared>,
    ctx: Ctx,
    reg: WatchRegistration,
    tx: FrameTx,
    timeout: Duration,
    initial_events_end: bool,
    _guard: WatchGuard,
) {
    let WatchRegistration {
        initial,
        mut rx,
        start_rv,
    } = reg;
    let mut stall = shared.faults.stall.subscribe();
    let mut cut = shared.faults.cut.subscribe();
    let mut stalled = *stall.borrow_and_update();
    let start = Instant::now();
    let deadline = start + timeout;
    let interval = shared.cfg.bookmark_interval;
    // Like the cacher: a bookmark shortly before the deadline, if that is still ahead.
    let mut pre_timeout = deadline
        .checked_sub(shared.cfg.pre_timeout_bookmark)
        .filter(|t| *t > start);
    let next_bookmark = |now: Instant, pre: Option<Instant>| match pre {
        Some(p) if p < now + interval => p,
        _ => now + interval,
    };
    let mut bookmark_at = next_bookmark(start, pre_timeout);
    let mut seen_rv = start_rv;
    let mut pending: VecDeque<Bytes> = initial.iter().filter_map(|e| ctx.convert(e)).collect();
    if initial_events_end {
        pending.push_back(bookmark_line(ctx.kind, seen_rv, true));
    }
    loop {
        if !stalled {
            while let Some(line) = pending.pop_front() {
                if tx.send(Ok(Frame::data(line))).is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            _ = cut.changed() => {
                debug!(kind = ?ctx.kind, "fake kube-apiserver: cutting watch");
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "watch cut by fault injection")));
                return;
            }
            _ = tx.closed() => return,
            changed = stall.changed() => {
                if changed.is_err() {
                    return;
                }
                stalled = *stall.borrow_and_update();
            }
            ev = rx.recv() => match ev {
                Some(ev) => {
                    seen_rv = seen_rv.max(ev.rv);
                    if let Some(line) = ctx.convert(&ev) {
                        pending.push_back(line);
                    }
                }
                None => return,
            },
            _ = sleep_until(bookmark_at), if ctx.q.bookmarks && !stalled => {
                {
                    // Events are published under the store lock: holding it, the channel
                    // holds every change up to the store's revision, so the bookmark can
                    // carry that revision (progress made by other resources included).
                    let store = lock(&shared.store);
                    if cut.has_changed().unwrap_or(true) {
                        // `expire_watches` moved the revision on and cut us under
                        // this lock: a bookmark now would carry a revision the
                        // watcher must not resume from.
                        continue;
                    }
                    while let Ok(ev) = rx.try_recv() {
                        if let Some(line) = ctx.convert(&ev) {
                            pending.push_back(line);
                        }
                    }
                    seen_rv = seen_rv.max(store.rv());
                }
                pending.push_back(bookmark_line(ctx.kind, seen_rv, false));
                let now = Instant::now();
                if pre_timeout.is_some_and(|p| p <= now) {
                    pre_timeout = None;
                }
                bookmark_at = next_bookmark(now, pre_timeout);
            }
            _ = sleep_until(deadline), if !stalled => {
                while let Some(line) = pending.pop_front() {
                    let _ = tx.send(Ok(Frame::data(line)));
                }
                debug!(kind = ?ctx.kind, "fake kube-apiserver: watch timeout reached");
                return;
            }
        }
    }
}
