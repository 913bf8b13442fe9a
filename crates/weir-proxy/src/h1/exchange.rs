//! One request on the fast path: pick a node, send the request, relay the
//! answer — with the general path's retries, passive health checks,
//! timeouts and access log (see [`crate::forward`] for the reference).

use std::future::Future;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

mod body;
mod relay;

use body::{decoded_body, RequestBody};

use super::buf::{self, Buf, ClientStream, OutBuf};
use super::deadline::Deadline;
use super::request::Request;
use super::response::{self, BodySink, ResponseHead};
use super::BodyFraming;
use weir_http::LocalReply;

use crate::access_log::AccessRecord;
use crate::attempts::{AttemptPlan, Failure, Verdict};
use crate::forward::{self, ConnInfo};
use crate::pool;
use crate::snapshot::{CompiledRoute, ProxyState};
use crate::upstream::{NodeState, Upstream};

/// What becomes of the client connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Ready for the next request.
    KeepAlive,
    /// Must close (the client asked, weir is stopping, or the stream is no
    /// longer in a known state).
    Close,
}

/// The client side of one exchange.
pub struct Exchange<'a, S> {
    /// The client connection.
    pub client: &'a mut S,
    /// The client read buffer: the request head first, then what followed.
    pub cbuf: &'a mut Buf,
    /// Live configuration and access log.
    pub state: &'a ProxyState,
    /// The connection's deadline, reused for every wait.
    pub deadline: &'a mut Deadline,
    /// The listener's stop flag.
    pub stop: &'a watch::Receiver<bool>,
    /// The client connection's facts.
    pub conn: &'a ConnInfo,
    /// Time allowed between two reads of a request body weir buffers
    /// (for plugins that read it).
    pub body_timeout: Duration,
}

/// The access log's `abort` for a response cut short by `http.send_timeout`.
pub(crate) const SEND_TIMEOUT: &str = "send_timeout";

/// The largest request body weir buffers for plugins that read it; larger
/// ones are refused with 413.
pub const MAX_PLUGIN_BODY: usize = 1 << 20;

/// A node's answer, head parsed.
struct Answer {
    up: TcpStream,
    /// The node's bytes after the head.
    ubuf: Buf,
    /// The client's response head.
    out: OutBuf,
    /// The node's status.
    status: u16,
    /// The status the client gets.
    client_status: u16,
    framing: BodyFraming,
    sink: BodySink,
    node_keeps_alive: bool,
    close_client: bool,
    uses: u32,
    /// From the attempt's start to the response head.
    latency: Duration,
}

/// How a wait for the node's bytes ended.
enum NodeRead {
    /// The read's result; 0 means the node closed the connection.
    Read(std::io::Result<usize>),
    /// The connection's deadline passed first.
    TimedOut,
    /// The client closed or broke its connection first.
    ClientGone,
}

async fn timed<F: Future>(deadline: &mut Deadline, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = f => Some(r),
        () = deadline.expired() => None,
    }
}

impl<S: ClientStream> Exchange<'_, S> {
    /// Serves one parsed request.
    pub async fn run(mut self, mut req: Box<Request>) -> After {
        let mut record = req.record.take();
        let mut body = match self.request_body(&req) {
            Some(b) => b,
            None => {
                return self
                    .answer_error(
                        &req,
                        RequestBody::Broken,
                        StatusCode::BAD_REQUEST,
                        "400 Bad Request: invalid chunked body",
                        record,
                    )
                    .await
            }
        };
        if req.awaiting_body() {
            if let Err(after) = self
                .run_plugins_with_body(&mut req, &mut body, &mut record)
                .await
            {
                return after;
            }
        }
        while let Some(wait) = req.take_wait() {
            let resumed = wait.await;
            let all = self.cbuf.filled();
            let data = match (&body, req.plugins_read_body()) {
                (RequestBody::Buffered { len }, true) => Some(decoded_body(all, &req, *len)),
                _ => None,
            };
            req.run_plugins(
                &all[..req.head_len],
                self.conn,
                data.as_deref(),
                Some(resumed),
            );
        }
        if let Some(reply) = req.take_reply() {
            return self.answer(&req, body, reply, record).await;
        }
        let Some(route) = req.route.clone() else {
            return self
                .answer_error(
                    &req,
                    body,
                    StatusCode::NOT_FOUND,
                    "404 Route Not Found",
                    record,
                )
                .await;
        };
        let Some(upstream) = req.upstream(&route).cloned() else {
            return self
                .answer_error(
                    &req,
                    body,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "route has no upstream",
                    record,
                )
                .await;
        };
        match self
            .forward(&req, &route, &upstream, &mut body, &mut record)
            .await
        {
            Ok(after) => after,
            Err(f) if f.client_gone => {
                finish_request(self.state, &req, record, 499, 0);
                After::Close
            }
            Err(f) if f.client_fault => {
                tracing::debug!(route = %route.id, reason = %f.reason, "bad request");
                self.answer_error(&req, body, f.status, f.public, record)
                    .await
            }
            Err(f) => {
                tracing::warn!(
                    route = %route.id,
                    upstream = %upstream.id,
                    status = f.status.as_u16(),
                    reason = %f.reason,
                    "request failed"
                );
                req.upstream_answered(f.status.as_u16(), None);
                self.answer_error(&req, body, f.status, f.public, record)
                    .await
            }
        }
    }

    /// Reads the node's next bytes into `ubuf`, under the deadline.
    ///
    /// With `watch_client`, the client connection is watched meanwhile, as
    /// nginx does while it waits on a node: bytes the client sends (a
    /// pipelined request) are kept in the client buffer for later, and the
    /// end of the client's stream (a close, a reset, or a half-close, which
    /// nginx treats the same way) ends the wait with
    /// [`NodeRead::ClientGone`]. The caller then drops the node connection,
    /// so a node working for a client that left is cut off at once instead
    /// of holding a connection until its answer finally comes. Watching
    /// costs no system call while the client is quiet (its read readiness
    /// is already cleared), only a waker registration.
    async fn read_node(&mut self, up: &TcpStream, ubuf: &mut Buf, watch_client: bool) -> NodeRead {
        loop {
            // A full client buffer cannot take more: stop watching (a read
            // into it would return 0 and look like the end of the stream).
            let watching = watch_client && !self.cbuf.is_full();
            tokio::select! {
                biased;
                r = buf::read(up, ubuf) => return NodeRead::Read(r),
                () = self.deadline.expired() => return NodeRead::TimedOut,
                r = std::future::poll_fn(|cx| self.client.poll_read_into(cx, self.cbuf)), if watching => match r {
                    Ok(0) | Err(_) => return NodeRead::ClientGone,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Tries nodes until one answers; relays its answer.
    async fn forward(
        &mut self,
        req: &Request,
        route: &CompiledRoute,
        upstream: &Upstream,
        body: &mut RequestBody,
        record: &mut Option<AccessRecord>,
    ) -> Result<After, Failure> {
        let set = upstream.node_set();
        // A request may go to another node after it may have reached one
        // only when it is idempotent and has no body (as the general path).
        let replayable = forward::is_idempotent(&req.method) && req.body == BodyFraming::Length(0);
        let mut plan = AttemptPlan::new(upstream, &set, req.hash, replayable, record.is_some())?;
        let mut last = Failure::bad_gateway("no node could be tried".into(), false);
        while let Some(node) = plan.next_node() {
            match self.attempt(req, route, upstream, &node.node, body).await {
                Ok(answer) => {
                    if plan.answered(&node, answer.status, record.as_mut()) == Verdict::Retry {
                        continue;
                    }
                    // The request is done with: drop it from the client buffer.
                    if let RequestBody::Buffered { len } = *body {
                        self.cbuf.consume(req.head_len + len);
                        *body = RequestBody::Streamed;
                    }
                    let read_timeout = upstream.timeouts.read;
                    return Ok(self.relay(req, node, answer, read_timeout, record).await);
                }
                Err(f) => {
                    let again = plan.failed(&node, &f, record.as_mut());
                    if f.client_gone || f.client_fault || !again {
                        return Err(f);
                    }
                    last = f;
                }
            }
        }
        Err(last)
    }

    /// One attempt on one node: a pooled or new connection, the request,
    /// and the response head.
    async fn attempt(
        &mut self,
        req: &Request,
        route: &CompiledRoute,
        upstream: &Upstream,
        node: &NodeState,
        body: &mut RequestBody,
    ) -> Result<Answer, Failure> {
        let started = Instant::now();
        // nginx's proxy_send_timeout / proxy_read_timeout: `send` bounds each
        // write of the request to the node (a long upload that keeps moving
        // is never cut), `read` the wait for the response head once the
        // request is out.
        let (send, read) = (upstream.timeouts.send, upstream.timeouts.read);
        let mut out = OutBuf::take();
        // A pooled connection may turn out closed by the node: then the
        // request goes again on a fresh connection, like the general path.
        for _ in 0..2 {
            let (mut up, uses, reused) = match node.h1_pool.take() {
                Some((s, uses)) => (s, uses, true),
                None => match pool::connect_tcp(&node.endpoint, upstream.timeouts.connect).await {
                    Ok(s) => (s, 0, false),
                    Err(e) => {
                        let reason = e.to_string();
                        return Err(if matches!(e, pool::ConnectError::Timeout(_)) {
                            Failure::timeout(reason, false)
                        } else {
                            Failure::bad_gateway(reason, false)
                        });
                    }
                },
            };
            let answer_by = Instant::now() + send + read;
            self.deadline.set_after(send);
            out.0.clear();
            req.write_head(Some(upstream), &node.key, &mut out.0);
            let prefix = match body {
                RequestBody::Buffered { len } => *len,
                RequestBody::Incomplete { buffered, .. } => *buffered,
                RequestBody::Streamed | RequestBody::Broken => {
                    return Err(Failure::bad_gateway(
                        "request body already sent".into(),
                        true,
                    ))
                }
            };
            let raw = &self.cbuf.filled()[req.head_len..req.head_len + prefix];
            if req.body == BodyFraming::Chunked {
                // Accepted when the body was located: cannot fail.
                let _ = weir_http::reframe::reframe_into(raw, &mut out.0);
            } else {
                out.0.extend_from_slice(raw);
            }
            match timed(self.deadline, up.write_all(&out.0)).await {
                None => {
                    return Err(Failure::timeout(
                        format!("{}: request not sent within {send:?}", node.key),
                        true,
                    ))
                }
                Some(Err(_)) if reused => continue,
                Some(Err(e)) => {
                    return Err(Failure::bad_gateway(format!("{}: {e}", node.key), true))
                }
                Some(Ok(())) => {}
            }
            // The node's time for its response head: its read timeout once a
            // streamed body is out (or the node answered early), else what is
            // left of send + read since the request went out (as the general
            // path, which cannot see when hyper has written it).
            let head_wait = if matches!(body, RequestBody::Incomplete { .. }) {
                self.stream_body(req, &mut up, body, &node.key, send)
                    .await?;
                self.deadline.set_after(read);
                read
            } else {
                self.deadline
                    .set_after(answer_by.saturating_duration_since(Instant::now()));
                send + read
            };
            let head_request = req.method == http::Method::HEAD;
            let resp_plugins = req.plugins.as_deref().map(|run| run.response(route));
            let mut ubuf = Buf::take_node();
            loop {
                out.0.clear();
                // Decided as the answer arrives: a shutdown may have begun
                // while the node was working.
                let close_client = req.close
                    || matches!(body, RequestBody::Broken)
                    || self.state.is_draining()
                    || *self.stop.borrow();
                match response::parse(
                    ubuf.filled(),
                    head_request,
                    close_client,
                    req.via,
                    resp_plugins.as_ref(),
                    &mut out.0,
                ) {
                    ResponseHead::Ready(resp) if resp.is_interim() => {
                        // 1xx: relay it, the final answer follows.
                        ubuf.consume(resp.head_len);
                        if self.client.write_all(&out.0).await.is_err() {
                            return Err(Failure::client_gone());
                        }
                        continue;
                    }
                    ResponseHead::Ready(resp) => {
                        ubuf.consume(resp.head_len);
                        // A node that answered before the whole body went
                        // out may still be reading it: never reuse.
                        let whole_request_sent = !matches!(body, RequestBody::Broken);
                        return Ok(Answer {
                            up,
                            ubuf,
                            out,
                            status: resp.status,
                            client_status: resp.client_status,
                            framing: resp.body,
                            sink: resp.sink,
                            node_keeps_alive: resp.node_keeps_alive && whole_request_sent,
                            close_client: resp.close_client,
                            uses,
                            latency: started.elapsed(),
                        });
                    }
                    ResponseHead::Invalid(why) => {
                        return Err(Failure::bad_gateway(format!("{}: {why}", node.key), true))
                    }
                    ResponseHead::Partial => {}
                }
                if ubuf.is_full() {
                    ubuf.grow(buf::MAX_HEAD);
                }
                let watch_client = !matches!(body, RequestBody::Broken);
                match self.read_node(&up, &mut ubuf, watch_client).await {
                    NodeRead::TimedOut => {
                        return Err(Failure::timeout(
                            format!("{}: no response within {head_wait:?}", node.key),
                            true,
                        ))
                    }
                    NodeRead::ClientGone => return Err(Failure::client_gone()),
                    NodeRead::Read(Ok(0)) | NodeRead::Read(Err(_))
                        if ubuf.is_empty()
                            && reused
                            && matches!(body, RequestBody::Buffered { .. })
                            && req.body == BodyFraming::Length(0)
                            && forward::is_idempotent(&req.method) =>
                    {
                        // The node closed a kept-alive connection as the
                        // request went out: safe to send again.
                        break;
                    }
                    NodeRead::Read(Ok(0)) => {
                        return Err(Failure::bad_gateway(
                            format!(
                                "{}: connection closed before a complete response head",
                                node.key
                            ),
                            true,
                        ))
                    }
                    NodeRead::Read(Err(e)) => {
                        return Err(Failure::bad_gateway(format!("{}: {e}", node.key), true))
                    }
                    NodeRead::Read(Ok(_)) => {}
                }
            }
        }
        Err(Failure::bad_gateway(
            format!("{}: pooled connections kept failing", node.key),
            true,
        ))
    }

    /// Answers an error from weir itself.
    async fn answer_error(
        &mut self,
        req: &Request,
        body: RequestBody,
        status: StatusCode,
        message: &str,
        record: Option<AccessRecord>,
    ) -> After {
        self.answer(req, body, LocalReply::error_msg(status, message), record)
            .await
    }

    /// Answers with a reply weir made (an error, a plugin's answer), with
    /// the plugins' response edits; the body is left out for `HEAD`.
    async fn answer(
        &mut self,
        req: &Request,
        body: RequestBody,
        reply: LocalReply,
        record: Option<AccessRecord>,
    ) -> After {
        let keep = match body {
            RequestBody::Buffered { len } => {
                self.cbuf.consume(req.head_len + len);
                true
            }
            RequestBody::Streamed => true,
            RequestBody::Incomplete { .. } | RequestBody::Broken => false,
        };
        let close = !keep || req.close || self.state.is_draining() || *self.stop.borrow();
        let mut reply = reply;
        let mut out = OutBuf::take();
        let head_request = req.method == http::Method::HEAD;
        match req.plugins.as_deref() {
            Some(run) => {
                let responses = run.response_for(req.route.as_deref());
                let mut decision = responses.decide(&reply, false);
                decision.apply_to_reply(&mut reply);
                reply.write_h1(
                    head_request,
                    close,
                    Some(&decision.edits),
                    response::push_date,
                    &mut out.0,
                );
            }
            None => reply.write_h1(head_request, close, None, response::push_date, &mut out.0),
        }
        let status = reply.status.as_u16();
        let body_bytes = if head_request || status < 200 || status == 204 || status == 304 {
            0
        } else {
            reply.body.len() as u64
        };
        let written = self.client.write_all(&out.0).await.is_ok();
        let mut record = record;
        if let (false, true, Some(r)) = (written, self.client.send_timed_out(), record.as_mut()) {
            r.abort = Some(SEND_TIMEOUT);
        }
        finish_request(self.state, req, record, status, body_bytes);
        if written && !close {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}

/// Counts the request in its route's metrics and writes its log line.
fn finish_request(
    state: &ProxyState,
    req: &Request,
    record: Option<AccessRecord>,
    status: u16,
    bytes: u64,
) {
    let stats: &crate::metrics::RouteStats = match req.route.as_deref() {
        Some(route) => &route.stats,
        None => crate::metrics::unmatched(),
    };
    // One clock read serves the metrics and the log line.
    let elapsed = req.start.elapsed();
    stats.observe(status, elapsed);
    if let Some(log) = req.plugins.as_ref().and_then(|p| p.log.as_deref()) {
        log.run(status, bytes, elapsed);
    }
    if let Some(mut r) = record {
        if let Some(run) = req.plugins.as_deref() {
            r.consumer = run.state.consumer.as_ref().map(|c| c.username.clone());
            r.request_id = run.state.request_id.clone();
            r.trace_id = run.state.trace_id;
        }
        r.request_time = Some(elapsed);
        r.status = status;
        r.body_bytes = bytes;
        state.access_log.finish(r);
    }
}
