//! The HTTP/1.1 fast path: client connections proxied by hand.
//!
//! Most gateway traffic is HTTP/1.1 keep-alive requests forwarded to an
//! HTTP/1.1 node. For those, weir parses the head with `httparse`, routes on
//! the borrowed bytes, writes the upstream head straight into one buffer,
//! relays bodies byte for byte (chunked bodies are scanned, not decoded) and
//! keeps bare `TcpStream`s in the per-worker node pools. The whole exchange
//! runs inline in the client connection's task: no channel, no spawned
//! upstream connection task, no header map, one timer per connection.
//!
//! Routes with plugins stay here: the plugins run on the borrowed head and
//! their header edits are applied where the heads are written (see
//! [`crate::plugin_run`] and `weir_plugin`). Anything else is handed, with
//! the bytes already read, to the general hyper-based path
//! ([`crate::forward`]): HTTP/1.0 clients, HTTP/2 prior knowledge, upgrades
//! (WebSocket), expectations other than `100-continue`, `CONNECT`,
//! absolute-form targets, unusual body framing, and https upstreams. A connection that is handed
//! over stays on the general path. On TLS listeners, connections that
//! negotiate `h2` go to the general path after the handshake; the others are
//! served here like plain ones (without the buffer-less idle wait, as rustls
//! keeps its own buffers).
//!
//! Behaviour matches the general path: same routing, header rewriting,
//! balancing, retries, passive health, timeouts, access log and graceful
//! shutdown; the integration tests run against both.

mod bare_cr;
mod buf;
mod conn;
mod deadline;
mod exchange;
mod fallback;
mod general;
mod guard;
mod preface;
mod request;
mod response;

#[doc(hidden)]
pub mod fuzzing;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::snapshot::ProxyState;

pub use conn::serve;
pub use exchange::MAX_PLUGIN_BODY;
pub use general::hand_over;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// The protocol the general path serves a connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, or HTTP/2 when the client starts with its preface (h2c
    /// prior knowledge on a plain listener with `http2: true`).
    Detect,
    /// HTTP/1.1 only: an HTTP/2 preface is a malformed request.
    Http1,
    /// HTTP/2 only (TLS, ALPN `h2`): anything but the HTTP/2 preface gets
    /// GOAWAY(PROTOCOL_ERROR).
    Http2,
}

/// What the fast path needs from its listener, shared by its connections.
pub struct H1Context {
    /// The live configuration and access log.
    pub state: Arc<ProxyState>,
    /// The general path's auto-detecting builder: HTTP/1.1, or HTTP/2 when
    /// the client starts with its preface. Used only where HTTP/2 prior
    /// knowledge is allowed ([`H1Context::h2c`]).
    pub builder: auto::Builder<TokioExecutor>,
    /// The general path's HTTP/1.1-only builder: TLS connections that did
    /// not negotiate `h2`, and plain listeners with `http2: false` (the
    /// auto builder serves an HTTP/2 preface whatever it is told when
    /// upgrades are on).
    pub http1: hyper::server::conn::http1::Builder,
    /// The general path's HTTP/2-only builder: TLS connections that
    /// negotiated `h2` by ALPN.
    pub http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// A plain listener with `http2: true`: a client may start HTTP/2 with
    /// prior knowledge (h2c).
    pub h2c: bool,
    /// Time allowed for a request head once it started, and for an idle
    /// keep-alive connection to send its next request (as hyper's
    /// `header_read_timeout`).
    pub header_timeout: Duration,
    /// `http.body_timeout`: time allowed between two reads of a request
    /// body.
    pub body_timeout: Duration,
    /// `http.send_timeout`: time a write to the client may make no
    /// progress.
    pub send_timeout: Duration,
    /// `http.tunnel_idle_timeout`: time an upgraded tunnel may carry nothing.
    pub tunnel_idle_timeout: Duration,
    /// `http.fast_path`: when false, every connection is handed over at once.
    pub enabled: bool,
    /// Becomes true when the listener stops: idle connections close, busy
    /// ones close after their response.
    pub stop: watch::Receiver<bool>,
}

impl H1Context {
    /// The protocol a connection that did not negotiate `h2` by ALPN is
    /// served with: HTTP/1.1, unless it is plain and the listener allows
    /// h2c. A TLS connection serves exactly what ALPN chose.
    pub fn protocol_for(&self, tls: bool) -> Protocol {
        if !tls && self.h2c {
            Protocol::Detect
        } else {
            Protocol::Http1
        }
    }
}
