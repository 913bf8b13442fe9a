//! The plugin API.
//!
//! A plugin is one file in the catalogue (`weir-plugins`): a [`PluginSpec`]
//! (its name, APISIX's priority, the phases it implements, a builder from its
//! typed configuration) and a type implementing [`Plugin`] for only those
//! phases. The engine resolves, per route and when a snapshot is compiled,
//! the ordered list of plugins of each phase; a route without plugins runs
//! none of this.
//!
//! Plugins see requests through [`RequestCtx`], a borrowed view over the
//! parsed head (no header map is built on the HTTP/1.1 fast path); their
//! header changes are edit lists the transports apply where they write heads,
//! and their answers are [`LocalReply`]s written by the one local-reply
//! writer. Plugins cannot reach the engine: this crate is all they know.
#![forbid(unsafe_code)]

mod body;
mod build;
mod consumer;
mod ctx;
pub mod pipeline;
mod upstream;
pub mod vars;

use std::sync::Arc;

pub use body::{BodyFilter, BodyFilters};
pub use build::{parse_config, BuildCtx, ConfigError, ConsumerConf};
pub use consumer::Consumer;
pub use ctx::{Conn, LogCtx, LogNote, PluginState, RequestCtx, ResponseCtx, RouteFacts};
pub use pipeline::{
    resume_request, run_log, run_request, run_response, ConsumerPlugins, Entry, Pipeline, Resumed,
    Wait,
};
pub use upstream::{PluginUpstream, PluginUpstreamSource, UpstreamChoice};
pub use weir_http::view::percent_decode;
pub use weir_http::{HeaderEdits, LocalReply, RequestView};

/// The phases of a request, in the order they run (APISIX's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before anything else; may change the request or answer it.
    /// Authentication runs here.
    Rewrite,
    /// May answer the request (restrictions, limits).
    Access,
    /// Last changes to the upstream request.
    BeforeProxy,
    /// The response head, from a node or from weir itself.
    ResponseHeaders,
    /// The response body: a plugin with this phase installs a
    /// [`BodyFilter`] from its response-headers phase over the responses
    /// whose body it changes ([`ResponseCtx::filter_body`]).
    ResponseBody,
    /// After the response is complete.
    Log,
}

/// A set of phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases(u8);

impl Phases {
    /// No phase.
    pub const NONE: Phases = Phases(0);

    /// A set of the given phases.
    pub const fn of(phases: &[Phase]) -> Phases {
        let mut bits = 0u8;
        let mut i = 0;
        while i < phases.len() {
            bits |= 1 << phases[i] as u8;
            i += 1;
        }
        Phases(bits)
    }

    /// True when `phase` is in the set.
    pub const fn has(self, phase: Phase) -> bool {
        self.0 & (1 << phase as u8) != 0
    }
}

/// What a request phase decided.
pub enum Flow {
    /// Go on with the next plugin, then the next phase.
    Continue,
    /// Answer the request with this reply; no later plugin of the request
    /// phases runs, and no node is asked. The response-header and log phases
    /// still run.
    Reply(LocalReply),
    /// Wait for something (a shared store's answer, a delay) before
    /// deciding: the request phases stop here, the transport awaits the
    /// future without blocking its thread, then hands the request back to
    /// the closure the future gave, which decides as a phase would; the
    /// next plugin follows. Make one with [`Flow::wait`].
    Wait(Wait),
}

impl Flow {
    /// A decision that waits for `future` first; its output then decides
    /// over the request (and may set headers, or wait again).
    pub fn wait<F>(future: F) -> Flow
    where
        F: std::future::Future<Output = Then> + Send + 'static,
    {
        Flow::Wait(Wait::new(Box::pin(future)))
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flow::Continue => f.write_str("Continue"),
            Flow::Reply(r) => f.debug_tuple("Reply").field(r).finish(),
            Flow::Wait(_) => f.write_str("Wait"),
        }
    }
}

/// What a waiting plugin decides once its wait is over.
pub type Then = Box<dyn FnOnce(&mut RequestCtx<'_>) -> Flow + Send>;

/// Something a plugin keeps until the request is over, whichever way it
/// ends (a connection slot of `limit-conn`, released on drop): the
/// transports drop it after the response's last byte, or when the client
/// leaves.
pub type Held = Box<dyn std::any::Any + Send + Sync>;

/// A configured plugin instance: the phases it declared in its
/// [`PluginSpec`] are called; the others keep their defaults, which do
/// nothing.
pub trait Plugin: Send + Sync + 'static {
    /// Rewrite phase (see [`Phase::Rewrite`]).
    fn rewrite(&self, _req: &mut RequestCtx<'_>) -> Flow {
        Flow::Continue
    }

    /// Access phase (see [`Phase::Access`]).
    fn access(&self, _req: &mut RequestCtx<'_>) -> Flow {
        Flow::Continue
    }

    /// Before-proxy phase: edits of the upstream request only.
    fn before_proxy(&self, _req: &mut RequestCtx<'_>) {}

    /// Response-headers phase: sees the status and head of the response
    /// (a node's or weir's own) and may edit its header fields.
    fn response_headers(&self, _resp: &mut ResponseCtx<'_>) {}

    /// Log phase: the request is over.
    fn log(&self, _log: &LogCtx<'_>) {}

    /// Whether this plugin's log phase reads the request line
    /// ([`LogCtx::method`], [`LogCtx::uri`], [`LogCtx::host`]). When no
    /// log-phase plugin of a request does, they are not kept for it (they
    /// are empty), which spares a metrics-only log phase three copies per
    /// request.
    fn log_reads_request(&self) -> bool {
        true
    }

    /// For a plugin whose spec declares `needs_body`: whether this
    /// configuration reads the body (`hmac-auth` only with
    /// `validate_request_body`). Routes buffer request bodies only for
    /// plugins that answer true.
    fn reads_body(&self) -> bool {
        true
    }

    /// Query arguments that carry a credential for this plugin (`apikey`,
    /// `jwt`): their values are masked in the access log.
    fn secret_query_args(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Builds a plugin from its JSON configuration (already stripped of
/// `_meta`). Errors name the field path inside the plugin's configuration.
pub type BuildFn = fn(&serde_json::Value, &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError>;

/// Checks the consumer-side configuration of an authentication plugin (the
/// `key-auth` block of a consumer or credential).
pub type ConsumerCheckFn = fn(&serde_json::Value) -> Result<(), ConfigError>;

/// A plugin's entry in the catalogue.
pub struct PluginSpec {
    /// APISIX's name (`key-auth`).
    pub name: &'static str,
    /// APISIX's default priority: within a phase, higher runs first.
    pub priority: i32,
    /// The phases the plugin implements.
    pub phases: Phases,
    /// The plugin reads the whole request body ([`RequestCtx::body`]): its
    /// routes buffer the body before the request phases run.
    pub needs_body: bool,
    /// Builds an instance from its configuration.
    pub build: BuildFn,
    /// For authentication plugins: checks a consumer's or credential's
    /// configuration of this plugin. `None`: not an authentication plugin.
    pub consumer_check: Option<ConsumerCheckFn>,
}

impl std::fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSpec")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl PluginSpec {
    /// True for authentication plugins (they identify a consumer).
    pub fn is_auth(&self) -> bool {
        self.consumer_check.is_some()
    }
}
