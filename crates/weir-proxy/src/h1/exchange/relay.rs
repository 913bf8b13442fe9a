//! The answer's way back: the node's response relayed to the client, and
//! both connections settled (pooled, kept alive or closed).

use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::{finish_request, After, Answer, Exchange, NodeRead, SEND_TIMEOUT};
use crate::access_log::AccessRecord;
use crate::attempts::NodeTry;
use crate::h1::buf::ClientStream;
use crate::h1::request::Request;
use crate::h1::response::BodySink;
use crate::h1::BodyFraming;
use weir_http::chunked::ChunkedScanner;

impl<S: ClientStream> Exchange<'_, S> {
    /// Sends the node's answer to the client and settles both connections.
    pub(super) async fn relay(
        &mut self,
        req: &Request,
        attempt: NodeTry,
        answer: Answer,
        read_timeout: Duration,
        record: &mut Option<AccessRecord>,
    ) -> After {
        let Answer {
            up,
            mut ubuf,
            mut out,
            status,
            client_status,
            framing,
            mut sink,
            node_keeps_alive,
            close_client,
            uses,
            latency,
        } = answer;
        let NodeTry {
            node, in_flight, ..
        } = attempt;
        let mut sent: u64 = 0;
        let mut remaining = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        let mut scanner = ChunkedScanner::default();
        let mut first = true;
        let mut complete = framing == BodyFraming::Length(0);
        let mut ok = true;
        // What the body filters gave, before it is framed as a chunk.
        let mut filtered = Vec::new();
        loop {
            let take = if complete {
                0
            } else {
                match framing {
                    BodyFraming::Length(_) => {
                        let n = usize::try_from(remaining)
                            .unwrap_or(usize::MAX)
                            .min(ubuf.len());
                        remaining -= n as u64;
                        complete = remaining == 0;
                        n
                    }
                    BodyFraming::Chunked => {
                        let scanned = match &mut sink {
                            BodySink::Filter(filters) => scanner.scan_with(ubuf.filled(), |data| {
                                filters.run(data, false, &mut filtered)
                            }),
                            _ => scanner.scan(ubuf.filled()),
                        };
                        match scanned {
                            Ok(n) => {
                                complete = scanner.is_done();
                                n
                            }
                            Err(e) => {
                                tracing::warn!(node = %node.key, error = %e, "invalid chunked response body");
                                ok = false;
                                0
                            }
                        }
                    }
                    BodyFraming::UntilClose => ubuf.len(),
                }
            };
            let written = match &mut sink {
                BodySink::Pass if first => {
                    out.0.extend_from_slice(&ubuf.filled()[..take]);
                    sent += take as u64;
                    self.send_client(&out.0).await
                }
                BodySink::Pass if take > 0 => {
                    sent += take as u64;
                    self.send_client(&ubuf.filled()[..take]).await
                }
                BodySink::Pass | BodySink::Discard if !first => Ok(()),
                BodySink::Pass | BodySink::Discard => self.send_client(&out.0).await,
                BodySink::Filter(filters) => {
                    if framing != BodyFraming::Chunked {
                        filters.run(&ubuf.filled()[..take], false, &mut filtered);
                    }
                    if complete && ok {
                        filters.run(&[], true, &mut filtered);
                    }
                    if !first {
                        out.0.clear();
                    }
                    sent += filtered.len() as u64;
                    push_chunk(&mut out.0, &filtered, complete && ok);
                    filtered.clear();
                    if out.0.is_empty() {
                        Ok(())
                    } else {
                        self.send_client(&out.0).await
                    }
                }
            };
            first = false;
            if written.is_err() {
                ok = false;
            }
            ubuf.consume(take);
            if complete || !ok {
                break;
            }
            // Between body reads the node has its read timeout to send more.
            self.deadline.set_after(read_timeout);
            match self.read_node(&up, &mut ubuf, true).await {
                NodeRead::Read(Ok(0)) if framing == BodyFraming::UntilClose => {
                    complete = true;
                    if let BodySink::Filter(filters) = &mut sink {
                        // The last of the filters' output, and the end.
                        filters.run(&[], true, &mut filtered);
                        out.0.clear();
                        sent += filtered.len() as u64;
                        push_chunk(&mut out.0, &filtered, true);
                        if self.send_client(&out.0).await.is_err() {
                            ok = false;
                        }
                    }
                    break;
                }
                NodeRead::Read(Ok(0)) | NodeRead::Read(Err(_)) => {
                    tracing::warn!(node = %node.key, "node closed the connection in the middle of a response body");
                    ok = false;
                    break;
                }
                NodeRead::TimedOut => {
                    tracing::warn!(node = %node.key, "node stopped sending a response body");
                    ok = false;
                    break;
                }
                NodeRead::ClientGone => {
                    tracing::debug!(node = %node.key, "client went away in the middle of a response body");
                    ok = false;
                    break;
                }
                NodeRead::Read(Ok(_)) => {}
            }
        }
        drop(in_flight);
        if !ok && self.client.send_timed_out() {
            tracing::debug!(client = %self.conn.remote, node = %node.key, "send_timeout: the client stopped reading the response; both connections closed");
            if let Some(r) = record.as_mut() {
                r.abort = Some(SEND_TIMEOUT);
            }
        }
        if complete && ok && node_keeps_alive && ubuf.is_empty() {
            node.h1_pool.put(up, uses + 1);
        } else {
            drop(up);
        }
        req.upstream_answered(status, Some((&node.key, latency)));
        finish_request(self.state, req, record.take(), client_status, sent);
        if complete && ok && !close_client {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}

impl<S: ClientStream> Exchange<'_, S> {
    /// Writes `bytes` to the client. While the write waits on the client,
    /// the client is watched as [`Exchange::read_node`] does: bytes it sends
    /// (a pipelined request) are kept, and the end of its stream (a close,
    /// a reset, or a half-close: nginx too takes these for a client that
    /// left) fails the write at once. A blocked write would not notice it
    /// otherwise, and keep both connections until the send timeout. A write
    /// that goes through (the usual case) polls nothing more.
    async fn send_client(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let (client, cbuf) = (&mut *self.client, &mut *self.cbuf);
        std::future::poll_fn(|cx| {
            while !bytes.is_empty() {
                match Pin::new(&mut *client).poll_write(cx, bytes) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => bytes = &bytes[n..],
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // A full client buffer cannot take more (a read
                        // into it would look like the end of the stream).
                        while !cbuf.is_full() {
                            match client.poll_read_into(cx, cbuf) {
                                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                                    return Poll::Ready(Err(io::Error::new(
                                        io::ErrorKind::ConnectionAborted,
                                        "the client closed its side of the connection",
                                    )))
                                }
                                Poll::Ready(Ok(_)) => {}
                                Poll::Pending => break,
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

/// Appends `data` as one chunk (none when empty), then the last chunk and
/// the end of the body when `last`.
fn push_chunk(out: &mut Vec<u8>, data: &[u8], last: bool) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    if last {
        out.extend_from_slice(b"0\r\n\r\n");
    }
}
