//! The request body on the fast path: located in the client buffer,
//! buffered whole for plugins that read it, or streamed to the node — with
//! `http.body_timeout` between two reads from the client.

use std::borrow::Cow;
use std::time::Duration;

use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_http::reframe::{self, Reframer, Step};
use weir_http::LocalReply;

use super::{finish_request, timed, After, Exchange, MAX_PLUGIN_BODY};
use crate::access_log::AccessRecord;
use crate::attempts::Failure;
use crate::h1::buf::ClientStream;
use crate::h1::request::Request;
use crate::h1::BodyFraming;

/// Where the request body stands.
pub(super) enum RequestBody {
    /// All of it is in the client buffer right after the head (`len` bytes);
    /// nothing consumed yet, so it can still be sent elsewhere.
    Buffered { len: usize },
    /// Part of it is still to come from the client; `buffered` bytes are in
    /// the buffer after the head (a chunked body: up to where its
    /// re-framer waits for more).
    Incomplete {
        buffered: usize,
        remaining: u64,
        reframer: Option<Reframer>,
    },
    /// Sent upstream and consumed from the buffer.
    Streamed,
    /// Partly consumed and not finished: the connection cannot continue.
    Broken,
}

impl<S: ClientStream> Exchange<'_, S> {
    /// Locates the request body in the buffer; None when a chunked body is
    /// malformed (see [`weir_http::reframe`]).
    pub(super) fn request_body(&self, req: &Request) -> Option<RequestBody> {
        let after_head = &self.cbuf.filled()[req.head_len..];
        match req.body {
            BodyFraming::Length(n) => {
                let buffered = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(after_head.len());
                if buffered as u64 == n {
                    Some(RequestBody::Buffered { len: buffered })
                } else {
                    Some(RequestBody::Incomplete {
                        buffered,
                        remaining: n - buffered as u64,
                        reframer: None,
                    })
                }
            }
            BodyFraming::Chunked => {
                let (used, reframer) = match reframe::check(after_head) {
                    Ok(checked) => checked,
                    Err(e) => {
                        tracing::debug!(client = %self.conn.remote, error = %e, "invalid chunked request body");
                        return None;
                    }
                };
                if reframer.is_done() {
                    Some(RequestBody::Buffered { len: used })
                } else {
                    Some(RequestBody::Incomplete {
                        buffered: used,
                        remaining: 0,
                        reframer: Some(reframer),
                    })
                }
            }
            BodyFraming::UntilClose => None,
        }
    }

    /// Sends the part of the request body still to come from the client.
    /// The client has `http.body_timeout` between two reads (408 past it),
    /// the node `send` (its `timeout.send`) for each write (504 past it), as
    /// nginx's client_body_timeout and proxy_send_timeout: an upload that
    /// keeps moving is never cut, however long it takes.
    pub(super) async fn stream_body(
        &mut self,
        req: &Request,
        up: &mut TcpStream,
        body: &mut RequestBody,
        node: &str,
        send: Duration,
    ) -> Result<(), Failure> {
        let RequestBody::Incomplete {
            buffered,
            mut remaining,
            mut reframer,
        } = std::mem::replace(body, RequestBody::Broken)
        else {
            return Ok(());
        };
        self.cbuf.consume(req.head_len + buffered);
        // The node has the head: time for the client to send the body.
        if req.expect_continue && self.cbuf.is_empty() {
            let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.client.write_all(interim).await.is_err() {
                return Err(Failure::client_gone());
            }
        }
        // A chunked body's re-framer may wait for the rest of a line that
        // is already partly buffered.
        let mut need_more = false;
        loop {
            let done = match &reframer {
                Some(r) => r.is_done(),
                None => remaining == 0,
            };
            if done {
                *body = RequestBody::Streamed;
                return Ok(());
            }
            if self.cbuf.is_empty() || need_more {
                self.deadline.set_after(self.body_timeout);
                let read = tokio::select! {
                    biased;
                    r = timed(self.deadline, self.client.read_into(self.cbuf)) => r,
                    _ = up.readable() => return Ok(()),
                };
                match read {
                    None => {
                        return Err(Failure::body_timeout(format!(
                            "request body: nothing received for {:?}",
                            self.body_timeout
                        )))
                    }
                    Some(Ok(0)) | Some(Err(_)) => return Err(Failure::client_gone()),
                    Some(Ok(_)) => {}
                }
                need_more = false;
            }
            // What goes out: `take` bytes of the buffer as they are, or a
            // re-framed chunk head in place of `take` bytes.
            let (take, replaced) = match &mut reframer {
                Some(r) => match r.step(self.cbuf.filled()) {
                    Ok(Step::Pass(n)) => (n, None),
                    Ok(Step::Replace { consumed, with }) => (consumed, Some(with)),
                    Ok(Step::NeedMore) => {
                        need_more = true;
                        continue;
                    }
                    Ok(Step::Done) => continue,
                    Err(e) => {
                        return Err(Failure::client_fault(
                            "400 Bad Request: invalid chunked body",
                            format!("request body: {e}"),
                        ))
                    }
                },
                None => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.cbuf.len());
                    remaining -= n as u64;
                    (n, None)
                }
            };
            let chunk = match &replaced {
                Some(with) => with.as_bytes(),
                None => &self.cbuf.filled()[..take],
            };
            self.deadline.set_after(send);
            match timed(self.deadline, write_unless_answered(up, chunk)).await {
                None => {
                    return Err(Failure::timeout(
                        format!("{node}: request body: nothing sent for {send:?}"),
                        true,
                    ))
                }
                Some(Err(e)) => return Err(Failure::bad_gateway(format!("{node}: {e}"), true)),
                // The node answers before taking the whole body (413, 401,
                // a redirect...): stop sending, relay its answer, and close
                // the client connection after it (the rest of the body is
                // never read). `body` stays `Broken`.
                Some(Ok(Written::Answered)) => return Ok(()),
                Some(Ok(Written::All)) => {}
            }
            self.cbuf.consume(take);
        }
    }

    /// Buffers the whole request body (up to [`MAX_PLUGIN_BODY`]) for a
    /// route whose plugins read it, then runs their request phases. `Err`:
    /// the exchange is over (answered, or the client left).
    pub(super) async fn run_plugins_with_body(
        &mut self,
        req: &mut Request,
        body: &mut RequestBody,
        record: &mut Option<AccessRecord>,
    ) -> Result<(), After> {
        let mut continued = false;
        loop {
            match body {
                RequestBody::Buffered { len } => {
                    let all = self.cbuf.filled();
                    let data = decoded_body(all, req, *len);
                    req.run_plugins(&all[..req.head_len], self.conn, Some(&data), None);
                    return Ok(());
                }
                RequestBody::Incomplete { .. } => {}
                RequestBody::Streamed | RequestBody::Broken => return Ok(()),
            }
            let limit = req.head_len + MAX_PLUGIN_BODY;
            let too_large = match req.body {
                BodyFraming::Length(n) => n > MAX_PLUGIN_BODY as u64,
                _ => self.cbuf.len() >= limit,
            };
            if too_large {
                let reply = LocalReply::error_msg(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "413 Request Entity Too Large",
                );
                let taken = std::mem::replace(body, RequestBody::Broken);
                return Err(self.answer(req, taken, reply, record.take()).await);
            }
            if req.expect_continue && !continued && self.cbuf.len() == req.head_len {
                continued = true;
                if self
                    .client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
                {
                    finish_request(self.state, req, record.take(), 499, 0);
                    return Err(After::Close);
                }
            }
            if self.cbuf.is_full() {
                let want = match req.body {
                    BodyFraming::Length(n) => req.head_len + n as usize,
                    _ => (self.cbuf.len() * 2).min(limit + 16 * 1024),
                };
                self.cbuf.grow(want.max(self.cbuf.len() + 1));
            }
            self.deadline.set_after(self.body_timeout);
            match timed(self.deadline, self.client.read_into(self.cbuf)).await {
                None => {
                    let reply = LocalReply::error_msg(
                        StatusCode::REQUEST_TIMEOUT,
                        "request body not received in time",
                    );
                    let taken = std::mem::replace(body, RequestBody::Broken);
                    return Err(self.answer(req, taken, reply, record.take()).await);
                }
                Some(Ok(0)) | Some(Err(_)) => {
                    finish_request(self.state, req, record.take(), 499, 0);
                    return Err(After::Close);
                }
                Some(Ok(_)) => {}
            }
            match self.request_body(req) {
                Some(b) => *body = b,
                None => {
                    let reply = LocalReply::error_msg(
                        StatusCode::BAD_REQUEST,
                        "400 Bad Request: invalid chunked body",
                    );
                    return Err(self
                        .answer(req, RequestBody::Broken, reply, record.take())
                        .await);
                }
            }
        }
    }
}

/// The request body buffered after the head (`len` bytes as received),
/// decoded when chunked, for plugins that read it.
pub(super) fn decoded_body<'b>(all: &'b [u8], req: &Request, len: usize) -> Cow<'b, [u8]> {
    let raw = &all[req.head_len..req.head_len + len];
    if req.body == BodyFraming::Chunked {
        weir_http::chunked::decode(raw).map_or(Cow::Borrowed(raw), Cow::Owned)
    } else {
        Cow::Borrowed(raw)
    }
}

/// How a body write ended.
pub(super) enum Written {
    All,
    /// The node started answering first.
    Answered,
}

/// Writes `data` to the node, stopping early if the node starts answering
/// (it then no longer wants the body, and may never read it).
pub(super) async fn write_unless_answered(
    up: &TcpStream,
    mut data: &[u8],
) -> std::io::Result<Written> {
    while !data.is_empty() {
        match up.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::select! {
                    biased;
                    _ = up.readable() => return Ok(Written::Answered),
                    w = up.writable() => w?,
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Written::All)
}
