//! The downstream response body: streams the inner body, counts bytes, keeps
//! the node's in-flight count up until the last byte, and writes the access
//! log line when the exchange ends (completed or aborted).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{AccessLog, AccessRecord};
use crate::balance::InFlight;
use crate::body::{BoxError, ProxyBody};

/// Work to do once the response has been sent (or abandoned).
pub struct Completion {
    /// The access record, filled along the request path.
    pub record: AccessRecord,
    /// Where to write it.
    pub log: Arc<AccessLog>,
    /// The node's in-flight marker, released at the end of the body.
    pub in_flight: Option<InFlight>,
}

/// Response body sent to clients.
pub struct ResponseBody {
    inner: ProxyBody,
    completion: Option<Completion>,
    bytes: u64,
}

impl ResponseBody {
    /// A body that runs `completion` when done.
    pub fn new(inner: ProxyBody, completion: Option<Completion>) -> ResponseBody {
        ResponseBody {
            inner,
            completion,
            bytes: 0,
        }
    }

    /// A plain body with nothing to do at the end.
    pub fn plain(inner: ProxyBody) -> ResponseBody {
        ResponseBody::new(inner, None)
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.completion.take() {
            c.record.body_bytes = self.bytes;
            drop(c.in_flight.take());
            if c.log.enabled() {
                c.log.write(&c.record);
            }
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
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
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
