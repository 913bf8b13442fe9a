//! One attempt on one node over the general (hyper) path: a pooled or new
//! connection, the exchange, and the WebSocket tunnel after a 101.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::attempts::Failure;
use crate::body::{BodyTimedOut, ProxyBody};
use crate::pool::{self, PooledConn};
use crate::upload::{with_node_deadlines, NodeTimeout};
use crate::upstream::{NodeSet, Upstream};

/// A failed attempt; `unsent` holds the request when it never left weir
/// (then `failure.sent` is false).
pub(super) struct AttemptFailure {
    pub(super) failure: Failure,
    pub(super) unsent: Option<(Parts, ProxyBody)>,
}

pub(super) type SenderBack = Option<(pool::H1Client, u32)>;

/// One attempt on one node: a pooled or new connection, then the exchange.
pub(super) async fn send_to_node(
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
                    let failure = if matches!(e, pool::ConnectError::Timeout(_)) {
                        Failure::timeout(e.to_string(), false)
                    } else {
                        Failure::bad_gateway(e.to_string(), false)
                    };
                    return Err(AttemptFailure {
                        failure,
                        unsent: Some(req.into_parts()),
                    });
                }
            },
        };
        if conn.sender.ready().await.is_err() {
            continue;
        }
        let reused = conn.reused;
        // A body still streaming from the client: nginx's send and read
        // timeouts (crate::upload); else the request goes out at once and
        // the node has both for its response head.
        let watch = req.body_mut().watch_upload();
        let exchange = conn.sender.try_send_request(req);
        let (send, read) = (upstream.timeouts.send, upstream.timeouts.read);
        let answered = match &watch {
            Some(watch) => with_node_deadlines(exchange, watch, send, read).await,
            None => tokio::time::timeout(send + read, exchange)
                .await
                .map_err(|_| NodeTimeout::Read(send + read)),
        };
        match answered {
            Ok(Ok(resp)) => {
                let keep = !is_connection_close(resp.headers());
                let uses = conn.uses + 1;
                let back = keep.then(|| (conn.into_client(), uses));
                return Ok((resp, back));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    continue;
                }
                Some(unsent) => {
                    return Err(AttemptFailure {
                        failure: Failure::bad_gateway(
                            format!("{}: {}", node.key, e.error()),
                            false,
                        ),
                        unsent: Some(unsent.into_parts()),
                    });
                }
                None if e.error().is_user() && BodyTimedOut::is_cause_of(e.error()) => {
                    return Err(AttemptFailure {
                        failure: Failure::body_timeout(
                            "request body: the client stopped sending it".into(),
                        ),
                        unsent: None,
                    })
                }
                None if e.error().is_user() => {
                    return Err(AttemptFailure {
                        failure: Failure::client_fault(
                            "400 Bad Request: invalid request body",
                            format!("request body: {}", e.error()),
                        ),
                        unsent: None,
                    })
                }
                None => {
                    return Err(AttemptFailure {
                        failure: Failure::bad_gateway(format!("{}: {}", node.key, e.error()), true),
                        unsent: None,
                    })
                }
            },
            Err(timeout) => {
                let why = match timeout {
                    NodeTimeout::Send(t) => format!("request body: nothing sent for {t:?}"),
                    NodeTimeout::Read(t) => format!("no response within {t:?}"),
                };
                return Err(AttemptFailure {
                    failure: Failure::timeout(format!("{}: {why}", node.key), true),
                    unsent: None,
                });
            }
        }
    }
    Err(AttemptFailure {
        failure: Failure::bad_gateway(
            format!("{}: pooled connections kept failing", node.key),
            true,
        ),
        unsent: None,
    })
}

/// Copies bytes both ways between an upgraded client and node connection,
/// until either side closes or no byte has passed either way for `idle`
/// (`http.tunnel_idle_timeout`); then both connections close.
pub(super) async fn tunnel(down: OnUpgrade, up: OnUpgrade, node: Arc<str>, idle: Duration) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(node = %node, error = %e, "upgrade failed");
            return;
        }
    };
    let last = LastByte::new();
    // Every byte either way goes through the client's side.
    let mut down = Watched {
        io: TokioIo::new(down),
        last: &last,
    };
    let mut up = TokioIo::new(up);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => {
            if let Err(e) = copied {
                tracing::debug!(node = %node, error = %e, "tunnel closed with error");
            }
        }
        () = last.quiet_for(idle) => {
            tracing::debug!(node = %node, ?idle, "idle tunnel closed (tunnel_idle_timeout)");
        }
    }
}

/// When a byte last passed through a tunnel.
struct LastByte {
    epoch: Instant,
    /// Milliseconds from `epoch`.
    at_ms: AtomicU64,
}

impl LastByte {
    fn new() -> LastByte {
        LastByte {
            epoch: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no byte has passed for `limit`; wakes about once per
    /// `limit` while bytes flow.
    async fn quiet_for(&self, limit: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.at_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One side of a tunnel, noting when bytes pass.
struct Watched<'a, T> {
    io: T,
    last: &'a LastByte,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.last.touch();
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn is_connection_close(h: &HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}
