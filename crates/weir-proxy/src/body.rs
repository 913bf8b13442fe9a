//! The one body type of the data plane.
//!
//! An enum rather than a boxed trait object: the common cases (a streamed
//! hyper body, an empty or small fixed body) cost no allocation, and bodies
//! stream chunk by chunk, never buffered whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use weir_plugin::BodyFilters;

use crate::stall::Stall;
use crate::upload::UploadWatch;

/// Errors a body can yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body flowing through weir.
pub enum ProxyBody {
    /// Streamed from a client or an upstream.
    Incoming(Incoming),
    /// A client's request body, with `http.body_timeout` between frames.
    Client(ClientBody),
    /// A complete body known up front (error pages, echo).
    Full(Option<Bytes>),
    /// Anything else (plugin transformations).
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
    /// A body passed through the plugins' body filters.
    Filtered(Box<Filtered>),
}

/// A client's request body on the general path: an error (a
/// [`BodyTimedOut`]) once the client has sent nothing for the body timeout
/// while it is read. The timer runs only while the reader waits on the
/// client, so a node slow to take the body costs the client nothing.
pub struct ClientBody {
    inner: Incoming,
    stall: Stall,
    /// Set while the body streams to a node (the node's timeouts).
    watch: Option<Arc<UploadWatch>>,
}

/// The error of a request body the client stopped sending
/// (`http.body_timeout`): answered 408.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body: nothing received for {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

impl BodyTimedOut {
    /// True when `e`, or what it wraps, is a body timeout.
    pub fn is_cause_of(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut at = Some(e);
        while let Some(err) = at {
            if err.is::<BodyTimedOut>() {
                return true;
            }
            at = err.source();
        }
        false
    }
}

impl ClientBody {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(watch) = &self.watch {
            let ended = match &polled {
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
                Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
                Poll::Pending => false,
            };
            watch.polled(polled.is_pending(), ended);
        }
        match polled {
            Poll::Ready(r) => {
                self.stall.progress();
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending if self.stall.stalled(cx) => {
                let limit = self.stall.limit();
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A body through the response-body phase's filters: each data frame goes
/// through them as it arrives; what they give is sent, what they hold is
/// not (yet). Trailers pass after the filters' last output.
pub struct Filtered {
    inner: ProxyBody,
    filters: BodyFilters,
    /// The inner body has ended and the filters have given their last.
    done: bool,
    trailers: Option<http::HeaderMap>,
    /// Input was taken that gave no output since the last
    /// [`ProxyBody::take_hidden_progress`].
    hidden_progress: bool,
}

impl ProxyBody {
    /// A client's request body, failing with [`BodyTimedOut`] after
    /// `timeout` without a frame while it is read.
    pub fn client(inner: Incoming, timeout: Duration) -> ProxyBody {
        ProxyBody::Client(ClientBody {
            inner,
            stall: Stall::new(timeout),
            watch: None,
        })
    }

    /// For a client's body still to stream: a new [`UploadWatch`] its polls
    /// report to, for the node's timeouts while it goes out
    /// ([`crate::upload::with_node_deadlines`]). `None` for any other body.
    pub fn watch_upload(&mut self) -> Option<Arc<UploadWatch>> {
        match self {
            ProxyBody::Client(b) if !b.inner.is_end_stream() => {
                let watch = Arc::new(UploadWatch::default());
                b.watch = Some(watch.clone());
                Some(watch)
            }
            _ => None,
        }
    }

    /// An empty body.
    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }

    /// `inner` through the body filters.
    pub fn filtered(inner: ProxyBody, filters: BodyFilters) -> ProxyBody {
        ProxyBody::Filtered(Box::new(Filtered {
            inner,
            filters,
            done: false,
            trailers: None,
            hidden_progress: false,
        }))
    }

    /// `inner` read to its end, none of it given (a status without a body).
    pub fn discarded(inner: ProxyBody) -> ProxyBody {
        struct Discard;
        impl weir_plugin::BodyFilter for Discard {
            fn filter(&mut self, _: &[u8], _: bool, _: &mut Vec<u8>) {}
        }
        let mut filters = BodyFilters::default();
        filters.push(Box::new(Discard));
        ProxyBody::filtered(inner, filters)
    }

    /// True when the body took input from its source that the filters held
    /// (no frame came out of it) since the last call: the source is alive
    /// even though nothing is sent.
    pub fn take_hidden_progress(&mut self) -> bool {
        match self {
            ProxyBody::Filtered(f) => std::mem::take(&mut f.hidden_progress),
            _ => false,
        }
    }

    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        let b = bytes.into();
        if b.is_empty() {
            ProxyBody::Full(None)
        } else {
            ProxyBody::Full(Some(b))
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(b: Incoming) -> Self {
        ProxyBody::Incoming(b)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ProxyBody::Client(b) => b.poll(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Boxed(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Filtered(f) => f.poll_filtered(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Incoming(b) => b.is_end_stream(),
            ProxyBody::Client(b) => b.inner.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Boxed(b) => b.is_end_stream(),
            ProxyBody::Filtered(f) => f.done && f.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Incoming(b) => b.size_hint(),
            ProxyBody::Client(b) => b.inner.size_hint(),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Boxed(b) => b.size_hint(),
            ProxyBody::Filtered(_) => SizeHint::default(),
        }
    }
}

impl Filtered {
    fn poll_filtered(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let mut out = Vec::new();
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.filters.run(&data, false, &mut out),
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        continue;
                    }
                },
                Poll::Ready(None) => {
                    self.filters.run(&[], true, &mut out);
                    self.done = true;
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.into()))));
            }
            self.hidden_progress = true;
        }
    }
}
