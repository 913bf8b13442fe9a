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
use std::pin::{pin, Pin};
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
///
/// Not an `async fn`: an `async fn` moves each argument into a local of
/// its future and keeps the argument's slot as well, so the stream (1.2
/// KiB for TLS) would be stored twice for the connection's whole life.
/// The block below uses what it captures in place.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice"
)]
pub fn hand_over<S: ClientStream>(
    mut stream: S,
    mut prefix: Vec<u8>,
    info: Arc<ConnInfo>,
    ctx: &H1Context,
    watcher: Watcher,
    protocol: Protocol,
) -> impl Future<Output = ()> + '_ {
    async move {
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
            // connection (`Activity::next_wake`). Over HTTP/1.1 the write
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
        // Each arm's connection is pinned where it is built, in this function's
        // future (which its callers box): an argument moved into a pinned local
        // would be stored twice (the argument slot stays in the future), which
        // cost an idle HTTP/2 connection 1.6 KiB. The arms' connections share
        // one slot, so a connection holds only the largest protocol's state.
        let result = match protocol {
            // HTTP/1.1 only, whatever the client sends first (the auto builder
            // would still serve a client's HTTP/2 preface): an HTTP/2 preface
            // is a malformed request, closed without an answer.
            Protocol::Http1 => {
                let io = TokioIo::new(BareCrCheck::new(guarded, activity.requests.clone()));
                let conn = pin!(ctx.http1.serve_connection(io, service).with_upgrades());
                let ended = drive(conn, ctx, &info, &activity).await;
                ended.unwrap_or(Ok(())).map_err(Into::into)
            }
            Protocol::Http2 => {
                let conn = pin!(ctx.http2.serve_connection(TokioIo::new(guarded), service));
                let ended = drive(conn, ctx, &info, &activity).await;
                ended.unwrap_or(Ok(())).map_err(Into::into)
            }
            Protocol::Detect => {
                let io = TokioIo::new(BareCrCheck::new(guarded, activity.requests.clone()));
                let conn = pin!(ctx
                    .builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned());
                drive(conn, ctx, &info, &activity).await.unwrap_or(Ok(()))
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
///
/// Not an `async fn` (nor is [`Activity::next_wake`]): the block uses its
/// captures in place, where an `async fn` would store each argument twice.
/// Its state is part of every general-path connection's.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice"
)]
fn drive<'a, C, T, E>(
    mut conn: Pin<&'a mut C>,
    ctx: &'a H1Context,
    info: &'a ConnInfo,
    activity: &'a Activity,
) -> impl Future<Output = Option<Result<T, E>>> + 'a
where
    C: Graceful<Output = Result<T, E>>,
{
    async move {
        let mut stop = ctx.stop.clone();
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => return Some(result),
                // `changed`, not `wait_for`: a smaller future. The value only
                // ever becomes true; an error (the listener is gone) stops too.
                changed = stop.changed(), if !closing => {
                    if changed.is_ok() && !*stop.borrow_and_update() {
                        continue;
                    }
                    conn.as_mut().finish_gracefully();
                    closing = true;
                    activity.touch();
                }
                // Boxed (192 bytes, made once per loop, which turns only
                // when the connection starts closing): without it this
                // future and the HTTP/2 connection's state come to just
                // over 2 KiB, and take mimalloc's 2.5 KiB size class.
                wake = Box::pin(activity.next_wake(ctx.header_timeout, ctx.send_timeout)) => match wake {
                    Wake::Idle if !closing => {
                        tracing::debug!(client = %info.remote, "idle connection closed");
                        conn.as_mut().finish_gracefully();
                        closing = true;
                        activity.touch();
                    }
                    Wake::Idle => {
                        tracing::debug!(client = %info.remote, "closing connection still open after its grace; dropped");
                        return None;
                    }
                    Wake::SendStalled => {
                        tracing::debug!(client = %info.remote, "send_timeout: the client stopped taking the response; connection dropped");
                        activity.send_timed_out.store(true, Ordering::Relaxed);
                        return None;
                    }
                }
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
    /// guard or by [`Activity::next_wake`]): its responses' log lines
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

    /// A response body handed hyper a frame (HTTP/2): one more held
    /// until the body is asked for its next.
    fn frame_handed(&self) {
        self.last_handed_ms.store(self.now_ms(), Ordering::Relaxed);
        self.handed.fetch_add(1, Ordering::Relaxed);
    }

    fn touch(&self) {
        self.last_change_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves with the first of the connection's two watches to fire,
    /// on one timer (one `Sleep` in every idle connection's state, not
    /// one per watch):
    /// - [`Wake::Idle`]: nothing has been in flight for `idle`;
    /// - [`Wake::SendStalled`]: an HTTP/2 response body has been waiting
    ///   on the client while no body handed hyper a frame for `send`.
    ///
    /// Wakes at most once per limit for each watch (plus once when a quiet
    /// spell ends), so a busy connection costs a timer re-arm per limit,
    /// not one per request or frame.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    fn next_wake(&self, idle: Duration, send: Duration) -> impl Future<Output = Wake> + '_ {
        async move {
            let mut idle_due = self.epoch + idle;
            let mut send_due = Instant::now() + send;
            loop {
                tokio::time::sleep_until(idle_due.min(send_due)).await;
                let now = Instant::now();
                if idle_due <= now {
                    match self.idle_after(idle, now) {
                        Some(next) => idle_due = next,
                        None => return Wake::Idle,
                    }
                }
                if send_due <= now {
                    match self.stall_after(send, now) {
                        Some(next) => send_due = next,
                        None => return Wake::SendStalled,
                    }
                }
            }
        }
    }

    /// None when nothing has been in flight for `limit` at `now`; else when
    /// to look again.
    fn idle_after(&self, limit: Duration, now: Instant) -> Option<Instant> {
        if self.requests.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(now + limit);
        }
        let since = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
        let quiet_until = self.epoch + since + limit;
        (quiet_until > now).then_some(quiet_until)
    }

    /// None when a response body has been waiting on the client with no
    /// frame handed for `limit` at `now`; else when to look again.
    fn stall_after(&self, limit: Duration, now: Instant) -> Option<Instant> {
        if self.handed.load(Ordering::Relaxed) == 0 {
            return Some(now + limit);
        }
        let last = self.epoch + Duration::from_millis(self.last_handed_ms.load(Ordering::Relaxed));
        (last + limit > now).then_some(last + limit)
    }
}

/// What ended [`Activity::next_wake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Nothing in flight for the idle limit.
    Idle,
    /// A response stalled on the client for the send timeout.
    SendStalled,
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
            this.busy.0.frame_handed();
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

    /// Longer than any test runs: a watch that must not fire.
    const NEVER: Duration = Duration::from_secs(1_000_000);

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_quiet_spell_after_the_last_request() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(8)).await;
        let busy = Busy::begin(activity.clone());
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(busy);
        let started = Instant::now();
        assert_eq!(activity.next_wake(limit, NEVER).await, Wake::Idle);
        assert_eq!(Instant::now() - started, limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_stall_is_a_frame_held_with_none_handed_since_for_the_limit() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_secs(10);
        // A request in flight keeps the idle watch quiet; nothing waiting
        // on the client: never a stall.
        let _busy = Busy::begin(activity.clone());
        let waited =
            tokio::time::timeout(Duration::from_secs(60), activity.next_wake(limit, limit)).await;
        assert!(
            waited.is_err(),
            "a wake with a request in flight and nothing waiting on the client"
        );
        // A frame handed at 65 s and held: the stall ends 10 s later.
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.frame_handed();
        let from = Instant::now();
        assert_eq!(activity.next_wake(NEVER, limit).await, Wake::SendStalled);
        assert_eq!(Instant::now() - from, limit);
    }

    /// What [`Activity::next_wake`] with these limits (seconds) returned,
    /// and after how long.
    async fn timed_wake(activity: &Activity, idle: u64, send: u64) -> (Wake, Duration) {
        let from = Instant::now();
        let wake = activity
            .next_wake(Duration::from_secs(idle), Duration::from_secs(send))
            .await;
        (wake, Instant::now() - from)
    }

    #[tokio::test(start_paused = true)]
    async fn one_timer_serves_both_watches_whichever_is_due_first() {
        let activity = Arc::new(Activity::new());
        // Quiet from the start: idle at 10 s although the stall watch,
        // with nothing handed, re-arms every 3 s on the same timer.
        assert_eq!(
            timed_wake(&activity, 10, 3).await,
            (Wake::Idle, Duration::from_secs(10))
        );
        // A frame held with a request in flight: the stall fires at 4 s,
        // between the idle watch's re-arms at 3 and 6 s.
        let _busy = Busy::begin(activity.clone());
        activity.frame_handed();
        assert_eq!(
            timed_wake(&activity, 3, 4).await,
            (Wake::SendStalled, Duration::from_secs(4))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_never_fires_while_a_request_is_in_flight() {
        let activity = Arc::new(Activity::new());
        let _busy = Busy::begin(activity.clone());
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            activity.next_wake(Duration::from_secs(10), NEVER),
        )
        .await;
        assert!(waited.is_err(), "idle fired with a request in flight");
    }
}
