//! One client connection on the fast path: wait for a request, read its
//! head, proxy it, repeat.

use std::io;
use std::sync::Arc;

use hyper_util::server::graceful::Watcher;
use tokio::io::AsyncWriteExt;

use super::buf::{Buf, ClientStream, MAX_HEAD};
use super::deadline::Deadline;
use super::exchange::{self, After};
use super::general::hand_over;
use super::request::{self, Head};
use super::H1Context;
use crate::forward::ConnInfo;

/// Serves a client connection (plain TCP or TLS) until it closes, the listener
/// stops, or the connection needs the general path.
///
/// `watcher` keeps the connection counted by the listener's graceful
/// shutdown for as long as it is open (on either path).
pub async fn serve<S: ClientStream>(
    stream: S,
    info: Arc<ConnInfo>,
    ctx: Arc<H1Context>,
    watcher: Watcher,
) {
    let mut conn = Conn {
        stream,
        info,
        deadline: Deadline::new(),
        buf: None,
    };
    match conn.run(&ctx).await {
        Ending::Closed => {}
        Ending::HandOver(why) => {
            tracing::trace!(client = %conn.info.remote, reason = why, "connection handed to the general path");
            let prefix = conn
                .buf
                .take()
                .map(|b| b.filled().to_vec())
                .unwrap_or_default();
            hand_over(conn.stream, prefix, conn.info, &ctx, watcher).await;
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
                body_timeout: ctx.header_timeout,
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
        let mut deadline_set = false;
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
                    let _ = self.stream.write_all(&local_error(status, why)).await;
                    let _ = self.stream.shutdown().await;
                    return Err(Ending::Closed);
                }
                Head::Partial => {}
            }
            if b.is_full() {
                b.grow(MAX_HEAD);
            }
            if !deadline_set {
                // The head started: it has `header_timeout` to complete.
                self.deadline.set_after(ctx.header_timeout);
                deadline_set = true;
            }
            let read = tokio::select! {
                biased;
                r = self.stream.read_into(b) => r,
                () = self.deadline.expired() => {
                    let resp = local_error(
                        http::StatusCode::REQUEST_TIMEOUT,
                        "request head not received in time",
                    );
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
/// closes).
fn local_error(status: http::StatusCode, why: &str) -> Vec<u8> {
    let mut out = Vec::new();
    weir_http::LocalReply::error_msg(status, why).write_h1(
        false,
        true,
        None,
        super::response::push_date,
        &mut out,
    );
    out
}
