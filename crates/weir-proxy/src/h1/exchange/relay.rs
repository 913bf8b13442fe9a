//! The answer's way back: the node's response relayed to the client, and
//! both connections settled (pooled, kept alive or closed).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{finish_request, After, Answer, Exchange, NodeRead};
use crate::access_log::AccessRecord;
use crate::attempts::NodeTry;
use crate::h1::buf::ClientStream;
use crate::h1::chunked::ChunkedScanner;
use crate::h1::request::Request;
use crate::h1::BodyFraming;

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
            framing,
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
                    BodyFraming::Chunked => match scanner.scan(ubuf.filled()) {
                        Ok(n) => {
                            complete = scanner.is_done();
                            n
                        }
                        Err(e) => {
                            tracing::warn!(node = %node.key, error = %e, "invalid chunked response body");
                            ok = false;
                            0
                        }
                    },
                    BodyFraming::UntilClose => ubuf.len(),
                }
            };
            let written = if first {
                first = false;
                out.0.extend_from_slice(&ubuf.filled()[..take]);
                self.client.write_all(&out.0).await
            } else if take > 0 {
                self.client.write_all(&ubuf.filled()[..take]).await
            } else {
                Ok(())
            };
            if written.is_err() {
                ok = false;
            }
            sent += take as u64;
            ubuf.consume(take);
            if complete || !ok {
                break;
            }
            // Between body reads the node has its read timeout to send more.
            self.deadline.set_after(read_timeout);
            match self.read_node(&up, &mut ubuf, true).await {
                NodeRead::Read(Ok(0)) if framing == BodyFraming::UntilClose => {
                    complete = true;
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
        if complete && ok && node_keeps_alive && ubuf.is_empty() {
            node.h1_pool.put(up, uses + 1);
        } else {
            drop(up);
        }
        req.upstream_answered(status, Some((&node.key, latency)));
        finish_request(self.state, req, record.take(), status, sent);
        if complete && ok && !close_client {
            After::KeepAlive
        } else {
            After::Close
        }
    }
}
