//! The downstream response body: streams the inner body, counts bytes, keeps
//! the node's in-flight count up until the last byte, gives the node its
//! read timeout between body frames, and counts the request in the metrics
//! and writes its access log line when the exchange ends (completed or
//! aborted).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{AccessLog, AccessRecord};
use crate::balance::InFlight;
use crate::body::{BoxError, ProxyBody};
use crate::metrics::RouteStats;
use crate::pool::H1Client;
use crate::stall::Stall;
use crate::upstream::NodeState;

/// How long a connection whose response has ended may take to become ready
/// for the next request before it is closed instead of pooled. hyper
/// usually reports it ready at once; one still busy after this is sending
/// a request body that the node answered without reading all of it.
const SETTLE_GRACE: Duration = Duration::from_secs(1);

/// Puts an upstream connection back in its node's pool once its exchange
/// is over, or closes it.
///
/// A node may answer before it has read the whole request body (413, 401, a
/// redirect) and then stop reading. The connection's task would go on
/// trying to send the rest for as long as the node keeps the connection
/// open, holding the client's request body, which keeps the client's
/// connection from either closing or serving its next request. Such a
/// connection is aborted after [`SETTLE_GRACE`]: the request body is
/// dropped, and the client's connection closes after the answer it got (as
/// on the fast path).
fn return_to_pool(node: Arc<NodeState>, mut client: H1Client, uses: u32) {
    if client.sender.is_ready() {
        node.pool.give_back(client, uses);
        return;
    }
    tokio::spawn(async move {
        match tokio::time::timeout(SETTLE_GRACE, client.sender.ready()).await {
            Ok(Ok(())) => node.pool.give_back(client, uses),
            Ok(Err(_)) => {}
            Err(_) => {
                tracing::debug!(node = %node.key, "node answered without taking the whole request body; closing its connection");
                client.abort();
            }
        }
    });
}

/// Work to do once the response has been sent (or abandoned).
pub struct Completion {
    /// The access record, filled along the request path.
    pub record: AccessRecord,
    /// Where to write it.
    pub log: Arc<AccessLog>,
    /// What the response holds on its upstream node, if proxied.
    pub lease: Option<Lease>,
    /// The matched route's request counters (None: no route matched).
    pub stats: Option<Arc<RouteStats>>,
    /// When the request arrived.
    pub start: Instant,
    /// The plugins' log phase, run when the exchange ends.
    pub log_phase: Option<Box<crate::plugin_run::LogPhase>>,
    /// What the plugins keep until the exchange ends (dropped then).
    pub held: Vec<weir_plugin::Held>,
}

/// What a proxied response holds on its node until its body is done.
pub struct Lease {
    /// The node's in-flight marker.
    pub in_flight: InFlight,
    /// The node's `timeout.read`, allowed between body frames too (as on
    /// the fast path): a node that stalls mid-body is cut off after it.
    pub read_timeout: Duration,
    /// The upstream connection, returned to the node's pool once the body has
    /// been read to the end (a body abandoned midway closes it instead).
    pub conn: Option<(Arc<NodeState>, H1Client, u32)>,
    /// The node that answered (its key, `host:port`).
    pub node: Arc<str>,
    /// From the start of its attempt to its response head.
    pub latency: Duration,
}

/// Response body sent to clients.
pub struct ResponseBody {
    inner: ProxyBody,
    completion: Option<Completion>,
    bytes: u64,
    ended: bool,
    stall: Option<StallTimer>,
}

/// The read timeout between body frames: armed when the node has nothing
/// ready, re-armed after each frame it sends.
struct StallTimer {
    stall: Stall,
    /// The node, for the log line.
    node: Option<Arc<str>>,
}

impl ResponseBody {
    /// A body that runs `completion` when done.
    pub fn new(inner: ProxyBody, completion: Option<Completion>) -> ResponseBody {
        let stall = completion
            .as_ref()
            .and_then(|c| c.lease.as_ref())
            .map(|lease| StallTimer {
                stall: Stall::new(lease.read_timeout),
                node: lease.conn.as_ref().map(|(node, _, _)| node.key.clone()),
            });
        ResponseBody {
            ended: inner.is_end_stream(),
            inner,
            completion,
            bytes: 0,
            stall,
        }
    }

    fn finish(&mut self) {
        if let Some(Completion {
            mut record,
            log,
            lease,
            stats,
            start,
            log_phase,
            held,
        }) = self.completion.take()
        {
            // One clock read serves the metrics and the log line.
            let elapsed = start.elapsed();
            stats
                .as_deref()
                .unwrap_or_else(|| crate::metrics::unmatched())
                .observe(record.status, elapsed);
            drop(held);
            if let Some(l) = log_phase {
                l.run(record.status, self.bytes, elapsed);
            }
            record.request_time = Some(elapsed);
            record.body_bytes = self.bytes;
            if let Some(lease) = lease {
                drop(lease.in_flight);
                match (self.ended, lease.conn) {
                    (true, Some((node, sender, uses))) => return_to_pool(node, sender, uses),
                    // Abandoned midway (the client left or timed out, or
                    // the node stalled): the node's connection closes now
                    // rather than whenever its task notices.
                    (false, Some((_, sender, _))) => sender.abort(),
                    (_, None) => {}
                }
            }
            if log.enabled() {
                log.finish(record);
            }
        }
    }
}

impl ResponseBody {
    /// Why the response was cut short, for its access log line (e.g.
    /// `send_timeout`); set before the body is dropped.
    pub fn set_abort(&mut self, why: &'static str) {
        if let Some(c) = &mut self.completion {
            c.record.abort = Some(why);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(stall) = &mut this.stall {
                    stall.stall.progress();
                }
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.ended = true;
                    this.finish();
                }
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.finish();
            }
            Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {
                if this.inner.take_hidden_progress() {
                    // The node sent what a body filter holds.
                    if let Some(stall) = &mut this.stall {
                        stall.stall.progress();
                    }
                }
                let stalled = this
                    .stall
                    .as_mut()
                    .and_then(|stall| stall.stall.stalled(cx).then(|| stall.node.clone()));
                if let Some(node) = stalled {
                    tracing::warn!(node = ?node, "node stopped sending a response body");
                    // The connection is not reused (the body did not end)
                    // and the client sees the response cut short.
                    this.finish();
                    return Poll::Ready(Some(Err("node stopped sending the response body".into())));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
