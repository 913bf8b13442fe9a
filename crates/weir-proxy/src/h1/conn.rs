//! One client connection on the fast path: wait for a request, read its
//! head, proxy it, repeat.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper_util::server::graceful::Watcher;
use tokio::io::AsyncWriteExt;

use super::buf::{Buf, ClientStream, MAX_HEAD};
use super::deadline::Deadline;
use super::exchange::{self, After};
use super::general::hand_over;
use super::guard::SendGuard;
use super::request::{self, Head};
use super::{H1Context, Protocol};
use crate::access_log::AccessRecord;
use crate::forward::ConnInfo;
use crate::snapshot::ProxyState;

/// Serves a client connection (plain TCP or TLS) until it closes, the listener
/// stops, or the connection needs the general path.
///
/// `watcher` keeps the connection counted by the listener's graceful
/// shutdown for as long as it is open (on either path).
///
/// Not an `async fn`, so that the stream is stored once, in `conn`: an
/// `async fn` would keep its argument's slot beside the local it moves it
/// to (1.2 KiB more in every TLS connection).
pub fn serve<S: ClientStream>(
    stream: S,
    info: Arc<ConnInfo>,
    ctx: Arc<H1Context>,
    watcher: Watcher,
) -> impl Future<Output = ()> {
    let mut conn = Conn {
        // Every write to the client is bounded by `http.send_timeout`.
        stream: SendGuard::new(stream, ctx.send_timeout, None),
        info,
        deadline: Deadline::new(),
        buf: None,
    };
    async move {
        // Boxed, and dropped before the general path starts, so a connection
        // handed over does not keep the fast path's state (`run`'s future,
        // 336 bytes in a release build) for its whole life.
        let ending = Box::pin(conn.run(&ctx)).await;
        match ending {
            Ending::Closed => {}
            Ending::HandOver(why) => {
                tracing::trace!(client = %conn.info.remote, reason = why, "connection handed to the general path");
                let prefix = conn
                    .buf
                    .take()
                    .map(|b| b.filled().to_vec())
                    .unwrap_or_default();
                // The general path guards its writes itself.
                let stream = conn.stream.into_inner();
                let protocol = match ctx.protocol_for(conn.info.tls) {
                    // h2c prior knowledge, already recognised: served by the
                    // HTTP/2 builder directly, not by the auto builder, which
                    // would read the version again and carry HTTP/1.1's state
                    // and checks in every HTTP/2 connection.
                    Protocol::Detect if why == request::HTTP2_PREFACE => Protocol::Http2,
                    protocol => protocol,
                };
                // Boxed: the general path's future holds hyper's connection
                // (1,992 bytes in all for h2c in a release build), and a
                // future awaited inline is part of every connection's task,
                // fast-path ones included. An idle h2c connection measures
                // 25.3 KiB (docs/benchmarks/README.md).
                Box::pin(hand_over(
                    stream, prefix, conn.info, &ctx, watcher, protocol,
                ))
                .await;
            }
        }
    }
}

enum Ending {
    Closed,
    HandOver(&'static str),
}

struct Conn<S> {
    stream: S,
    info: Arc<ConnInfo>,
    deadline: Deadline,
    /// Held only while bytes are buffered.
    buf: Option<Buf>,
}

impl<S: ClientStream> Conn<S> {
    async fn run(&mut self, ctx: &H1Context) -> Ending {
        // One long-lived wait on the stop flag (registering a fresh one for
        // every idle period costs a lock per request).
        let mut stop = ctx.stop.clone();
        let mut stopped = Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        loop {
            if *ctx.stop.borrow() {
                return Ending::Closed;
            }
            if self.buf.as_ref().is_none_or(Buf::is_empty) {
                self.deadline.set_after(ctx.header_timeout);
                if S::READINESS {
                    // Idle: no buffer held while waiting.
                    self.buf = None;
                    tokio::select! {
                        biased;
                        () = &mut stopped => return Ending::Closed,
                        ready = self.stream.ready() => {
                            if ready.is_err() {
                                return Ending::Closed;
                            }
                        }
                        () = self.deadline.expired() => return Ending::Closed,
                    }
                }
                let b = self.buf.get_or_insert_with(Buf::take);
                let read = tokio::select! {
                    biased;
                    () = &mut stopped => return Ending::Closed,
                    r = self.stream.read_now(b) => r,
                    () = self.deadline.expired() => return Ending::Closed,
                };
                match read {
                    Ok(0) => return Ending::Closed,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return Ending::Closed,
                }
            }
            let req = match self.read_head(ctx).await {
                Ok(req) => req,
                Err(ending) => return ending,
            };
            let Some(b) = self.buf.as_mut() else {
                return Ending::Closed;
            };
            let exchange = exchange::Exchange {
                client: &mut self.stream,
                cbuf: b,
                state: &ctx.state,
                deadline: &mut self.deadline,
                stop: &ctx.stop,
                conn: &self.info,
                body_timeout: ctx.body_timeout,
            };
            // Boxed: the exchange's state lives only while a request is in
            // flight, not in every idle keep-alive connection.
            if Box::pin(exchange.run(req)).await == After::Close {
                let _ = self.stream.shutdown().await;
                return Ending::Closed;
            }
        }
    }

    /// Reads until the head is complete and decides how to serve it.
    async fn read_head(&mut self, ctx: &H1Context) -> Result<Box<request::Request>, Ending> {
        // When the head turned out not to have arrived in one read (no
        // clock read otherwise): the start of a request that is answered
        // 408, or 400/431 after more reads.
        let mut started: Option<Instant> = None;
        loop {
            let Some(b) = self.buf.as_mut() else {
                return Err(Ending::Closed);
            };
            let parsed = {
                let snapshot = ctx.state.snapshot.load();
                request::parse(
                    b.filled(),
                    &self.info,
                    &snapshot,
                    ctx.state.access_log.enabled(),
                )
            };
            match parsed {
                Head::Ready(req) => return Ok(req),
                Head::Fallback(why) => return Err(Ending::HandOver(why)),
                Head::Invalid(status, why) => {
                    tracing::debug!(client = %self.info.remote, reason = why, "bad request");
                    let start = started.unwrap_or_else(Instant::now);
                    let (resp, body_bytes) = local_error(status, why);
                    // Logged before the answer goes out, so the line is
                    // buffered before the client can send its next request.
                    let remote = self.info.remote;
                    let code = status.as_u16();
                    unread_request(&ctx.state, remote, b.filled(), start, code, body_bytes);
                    let _ = self.stream.write_all(&resp).await;
                    let _ = self.stream.shutdown().await;
                    return Err(Ending::Closed);
                }
                Head::Partial => {}
            }
            if b.is_full() {
                b.grow(MAX_HEAD);
            }
            let start = match started {
                Some(at) => at,
                None => {
                    // The head started: it has `header_timeout` to complete
                    // (read first: a 408's `rt` is at least the timeout).
                    let now = *started.insert(Instant::now());
                    self.deadline.set_after(ctx.header_timeout);
                    now
                }
            };
            let read = tokio::select! {
                biased;
                r = self.stream.read_into(b) => r,
                () = self.deadline.expired() => {
                    let status = http::StatusCode::REQUEST_TIMEOUT;
                    let (resp, body_bytes) =
                        local_error(status, "request head not received in time");
                    let (remote, code) = (self.info.remote, status.as_u16());
                    unread_request(&ctx.state, remote, b.filled(), start, code, body_bytes);
                    let _ = self.stream.write_all(&resp).await;
                    return Err(Ending::Closed);
                }
            };
            match read {
                Ok(0) | Err(_) => return Err(Ending::Closed),
                Ok(_) => {}
            }
        }
    }
}

/// weir's error reply for a request it could not read (the connection then
/// closes), and the size of its body.
fn local_error(status: http::StatusCode, why: &str) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let reply = weir_http::LocalReply::error_msg(status, why);
    reply.write_h1(false, true, None, super::response::push_date, &mut out);
    (out, reply.body.len() as u64)
}

/// Counts and logs an answer to a request weir could not read whole (a
/// malformed or oversized head, or one not received in time): no route
/// matched it, so it counts with the requests no route matched, and its line
/// shows what `head`, the bytes received, shows of it (query arguments the
/// global rules hold secret masked, as for any request no route matched).
pub(super) fn unread_request(
    state: &ProxyState,
    remote: SocketAddr,
    head: &[u8],
    start: Instant,
    status: u16,
    body_bytes: u64,
) {
    let elapsed = start.elapsed();
    crate::metrics::unmatched().observe(status, elapsed);
    if !state.access_log.enabled() {
        return;
    }
    let mut r = AccessRecord::recycled();
    r.start = Some(start);
    r.request_time = Some(elapsed);
    r.remote = Some(remote);
    r.status = status;
    r.body_bytes = body_bytes;
    r.set_unread_request(head);
    if let Some(global) = &state.snapshot.load().global {
        r.mask_query_args(global.secret_query_args());
    }
    state.access_log.finish(r);
}
