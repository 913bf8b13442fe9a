//! A connection served by the general (hyper) path: HTTP/2, and HTTP/1.1
//! the fast path hands over. Closes the connection gracefully when the
//! listener stops or when it has been idle (no request or response body in
//! flight) for the keep-alive limit; hyper's HTTP/2 server has no idle
//! timeout of its own, and each idle HTTP/2 connection holds the h2
//! crate's buffers (tens of KiB). A connection still open a keep-alive
//! limit after closing began, with nothing in flight, is dropped whatever
//! the client does; so is one whose responses made no progress towards the
//! client for `http.send_timeout` (its writes are guarded, and over HTTP/2
//! a stream starved of flow-control window counts as no progress).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::time::Instant;

use super::bare_cr::{BareCrCheck, Requests};
use super::buf::ClientStream;
use super::fallback::Prefixed;
use super::guard::SendGuard;
use super::{H1Context, Protocol};
use crate::forward::{self, ConnInfo};
use crate::response_body::ResponseBody;

/// Serves the rest of the connection on the general path, `prefix` (bytes
/// already read from it) first, with `protocol` (exactly what ALPN
/// negotiated on TLS).
///
/// `watcher` keeps the connection counted by the listener's graceful
/// shutdown until it ends; the shutdown itself is started from `ctx.stop`.
pub async fn hand_over<S: ClientStream>(
    mut stream: S,
    mut prefix: Vec<u8>,
    info: Arc<ConnInfo>,
    ctx: &H1Context,
    watcher: Watcher,
    protocol: Protocol,
) {
    if protocol == Protocol::Http2 {
        // h2 closes on an invalid preface without a word; RFC 9113 §3.4
        // wants a GOAWAY(PROTOCOL_ERROR) (h2spec 3.5).
        match super::preface::read(&mut stream, &mut prefix, ctx.header_timeout).await {
            super::preface::Preface::Valid => {}
            super::preface::Preface::Invalid => {
                tracing::debug!(client = %info.remote, "invalid HTTP/2 connection preface; GOAWAY");
                super::preface::refuse(&mut stream, ctx.send_timeout).await;
                return;
            }
            super::preface::Preface::Gone => return,
        }
    }
    let activity = Arc::new(Activity::new());
    let state = ctx.state.clone();
    let conn_info = info.clone();
    let tracker = activity.clone();
    let limits = forward::ClientLimits {
        body_timeout: ctx.body_timeout,
        tunnel_idle_timeout: ctx.tunnel_idle_timeout,
    };
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let busy = Busy::begin(tracker.clone());
        // Over HTTP/2 a response can wait on the client with its socket
        // idle (a stream without flow-control window): watched by the
        // connection (`Activity::send_stalled`). Over HTTP/1.1 the write
        // guard sees every wait.
        let watch = req.version() == http::Version::HTTP_2;
        if watch {
            // No HTTP/1.1 head is ever read on this connection again.
            busy.0.requests.not_http1.store(true, Ordering::Relaxed);
        }
        // Boxed: the request's future is large, and hyper moves the
        // future it is given (into each HTTP/2 stream's task, and in and
        // out of the task's stage); a box makes those moves a pointer's.
        let handled = Box::pin(forward::handle(
            state.clone(),
            conn_info.clone(),
            limits,
            req,
        ));
        async move {
            let response = handled.await?;
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // The connection becomes a tunnel.
                busy.0.requests.not_http1.store(true, Ordering::Relaxed);
            }
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                busy,
                watch,
                handed: false,
            }))
        }
    });
    // Every write to the client is bounded by `http.send_timeout`.
    let fired = activity.send_timed_out.clone();
    let guarded = SendGuard::new(Prefixed::new(prefix, stream), ctx.send_timeout, Some(fired));
    // Each arm's connection is boxed on its own (the HTTP/2 one's drive
    // future is 4 KiB in a release build), so this function's future
    // holds none of them and a connection only its own protocol's state.
    let result = match protocol {
        // HTTP/1.1 only, whatever the client sends first (the auto builder
        // would still serve a client's HTTP/2 preface): an HTTP/2 preface
        // is a malformed request, closed without an answer.
        Protocol::Http1 => {
            let io = TokioIo::new(BareCrCheck::new(guarded, activity.requests.clone()));
            let conn = ctx.http1.serve_connection(io, service).with_upgrades();
            let ended = Box::pin(drive(conn, ctx, &info, &activity)).await;
            ended.unwrap_or(Ok(())).map_err(Into::into)
        }
        Protocol::Http2 => {
            let conn = ctx.http2.serve_connection(TokioIo::new(guarded), service);
            let ended = Box::pin(drive(conn, ctx, &info, &activity)).await;
            ended.unwrap_or(Ok(())).map_err(Into::into)
        }
        Protocol::Detect => {
            let io = TokioIo::new(BareCrCheck::new(guarded, activity.requests.clone()));
            let conn = ctx
                .builder
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            Box::pin(drive(conn, ctx, &info, &activity))
                .await
                .unwrap_or(Ok(()))
        }
    };
    drop(watcher);
    if let Err(e) = result {
        tracing::debug!(client = %info.remote, error = %e, "connection ended with error");
        if let Some(status) = e.downcast_ref::<hyper::Error>().and_then(answered_by_hyper) {
            // Nothing of the request is known here.
            let now = std::time::Instant::now();
            super::conn::unread_request(&ctx.state, info.remote, b"", now, status, 0);
        }
    }
}

/// A served connection that can be asked to finish gracefully.
trait Graceful: Future {
    fn finish_gracefully(self: Pin<&mut Self>);
}

impl<I, S, E> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'static, I, S, E>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, S::ResBody>,
{
    fn finish_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn finish_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn finish_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves `conn` to its end: gracefully closed when the listener stops or
/// when it has been idle for the header timeout. None when weir dropped it:
/// still open a header timeout after closing began with nothing in flight
/// (an HTTP/2 client that never answers the GOAWAY's PING, or that left a
/// header block unfinished), or a response on it made no progress towards
/// the client for the send timeout (`http.send_timeout`; over HTTP/2, a
/// stream the client gives no flow-control window).
async fn drive<C, T, E>(
    conn: C,
    ctx: &H1Context,
    info: &ConnInfo,
    activity: &Activity,
) -> Option<Result<T, E>>
where
    C: Graceful<Output = Result<T, E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stop = ctx.stop.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => return Some(result),
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().finish_gracefully();
                closing = true;
                activity.touch();
            }
            _ = activity.idle_for(ctx.header_timeout), if !closing => {
                tracing::debug!(client = %info.remote, "idle connection closed");
                conn.as_mut().finish_gracefully();
                closing = true;
                activity.touch();
            }
            _ = activity.idle_for(ctx.header_timeout), if closing => {
                tracing::debug!(client = %info.remote, "closing connection still open after its grace; dropped");
                return None;
            }
            () = activity.send_stalled(ctx.send_timeout) => {
                tracing::debug!(client = %info.remote, "send_timeout: the client stopped taking the response; connection dropped");
                activity.send_timed_out.store(true, Ordering::Relaxed);
                return None;
            }
        }
    }
}

/// The status hyper answered a request head it could not read with, before
/// closing the connection with `e` (`Role::on_error` in hyper's h1 server: a
/// malformed head gets 400, one over `max_buf_size` or with over 100 fields
/// 431, and no body). None for every other error: nothing was answered (a
/// header timeout closes the connection silently).
fn answered_by_hyper(e: &hyper::Error) -> Option<u16> {
    if e.is_parse_too_large() {
        // `UriTooLong` (414) as well, for a target over 65,534 bytes: such a
        // head is over `max_buf_size` (64 KiB) first.
        Some(431)
    } else if e.is_parse() && !e.is_parse_version_h2() && !e.is_parse_status() {
        Some(400)
    } else {
        None
    }
}

/// Requests in flight on one connection (from the request's arrival until
/// its response body is finished or dropped) and when the last one ended;
/// response bodies waiting on the client.
struct Activity {
    /// Requests begun and in flight (shared with the bare-CR check).
    requests: Arc<Requests>,
    /// Milliseconds since `epoch` at the last change.
    last_change_ms: AtomicU64,
    epoch: Instant,
    /// HTTP/2 response bodies that handed hyper a frame and were not asked
    /// for the next one since: hyper is waiting to send it (the client's
    /// socket, or its flow-control window).
    handed: AtomicUsize,
    /// Milliseconds since `epoch` when a body last handed hyper a frame.
    last_handed_ms: AtomicU64,
    /// The connection was closed for `http.send_timeout` (by its write
    /// guard or by [`Activity::send_stalled`]): its responses' log lines
    /// say so.
    send_timed_out: Arc<AtomicBool>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            requests: Arc::new(Requests::default()),
            last_change_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            handed: AtomicUsize::new(0),
            last_handed_ms: AtomicU64::new(0),
            send_timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Resolves once an HTTP/2 response body has been waiting on the client
    /// while no body handed hyper a frame for `limit`. Wakes about once per
    /// `limit`.
    async fn send_stalled(&self, limit: Duration) {
        let mut due = Instant::now() + limit;
        loop {
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            if self.handed.load(Ordering::Relaxed) == 0 {
                due = now + limit;
                continue;
            }
            let last =
                self.epoch + Duration::from_millis(self.last_handed_ms.load(Ordering::Relaxed));
            if last + limit <= now {
                return;
            }
            due = last + limit;
        }
    }

    fn touch(&self) {
        self.last_change_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves once nothing has been in flight for `limit`. Wakes at most
    /// once per `limit` (plus once when the quiet spell ends), so a busy
    /// connection costs one timer re-arm per `limit`, not one per request.
    async fn idle_for(&self, limit: Duration) {
        let mut deadline = self.epoch + limit;
        loop {
            tokio::time::sleep_until(deadline).await;
            let since = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
            let quiet_from = self.epoch + since;
            if self.requests.in_flight.load(Ordering::Relaxed) > 0 {
                deadline = Instant::now() + limit;
            } else if quiet_from + limit <= Instant::now() {
                return;
            } else {
                deadline = quiet_from + limit;
            }
        }
    }
}

/// Counts one request as in flight while alive.
struct Busy(Arc<Activity>);

impl Busy {
    /// No clock read here: while a request is in flight the idle waiter
    /// ignores the last-change time, and the drop sets it.
    fn begin(activity: Arc<Activity>) -> Busy {
        activity.requests.begun.fetch_add(1, Ordering::Relaxed);
        activity.requests.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body, keeping its request counted as in flight until hyper
/// has sent it (or dropped it), and, over HTTP/2, noting when hyper holds a
/// frame of it it could not send on yet.
struct TrackedBody {
    body: ResponseBody,
    busy: Busy,
    /// Note handed frames (HTTP/2).
    watch: bool,
    /// A frame was handed to hyper and the next not asked for yet.
    handed: bool,
}

impl TrackedBody {
    fn taken_on(&mut self) {
        if std::mem::take(&mut self.handed) {
            self.busy.0.handed.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // Asked for more: what was handed has gone on.
        this.taken_on();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let (true, Poll::Ready(Some(Ok(_)))) = (this.watch, &polled) {
            let activity = &this.busy.0;
            activity
                .last_handed_ms
                .store(activity.now_ms(), Ordering::Relaxed);
            activity.handed.fetch_add(1, Ordering::Relaxed);
            this.handed = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.taken_on();
        if self.busy.0.send_timed_out.load(Ordering::Relaxed) {
            // Before the body's own drop writes its log line.
            self.body.set_abort(super::exchange::SEND_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_quiet_spell_after_the_last_request() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(8)).await;
        let busy = Busy::begin(activity.clone());
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(busy);
        let started = Instant::now();
        activity.idle_for(limit).await;
        assert_eq!(Instant::now() - started, limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_stall_is_a_frame_held_with_none_handed_since_for_the_limit() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        // Nothing waiting on the client: never a stall.
        let waited =
            tokio::time::timeout(Duration::from_secs(60), activity.send_stalled(limit)).await;
        assert!(
            waited.is_err(),
            "a stall with nothing waiting on the client"
        );
        // A frame handed at 65 s and held: the stall ends 10 s later.
        tokio::time::advance(Duration::from_secs(5)).await;
        activity
            .last_handed_ms
            .store(activity.now_ms(), Ordering::Relaxed);
        activity.handed.fetch_add(1, Ordering::Relaxed);
        let from = Instant::now();
        activity.send_stalled(limit).await;
        assert_eq!(Instant::now() - from, limit);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_never_fires_while_a_request_is_in_flight() {
        let activity = Arc::new(Activity::new());
        let _busy = Busy::begin(activity.clone());
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            activity.idle_for(Duration::from_secs(10)),
        )
        .await;
        assert!(waited.is_err(), "idle fired with a request in flight");
    }
}
