//! The plugin pipeline.
//!
//! Plugins run in fixed phases, in this order, as in APISIX:
//! `rewrite` (may change the request) -> `access` (may answer it) ->
//! `before_proxy` (may change the upstream request) -> `response_headers` ->
//! `response_body` -> `log`. Plugins are an enum, not trait objects: dispatch
//! is a `match`, with nothing to allocate or look up per request. The
//! catalogue grows by adding variants; `echo` is the first.

mod echo;

use std::net::SocketAddr;

use http::request::Parts;
use hyper::body::Incoming;
use hyper::Response;

use crate::body::ProxyBody;

pub use echo::EchoPlugin;

/// A configured plugin instance.
#[derive(Debug, Clone)]
pub enum Plugin {
    /// Answers with a JSON description of the request (like httpbin `/anything`).
    Echo(EchoPlugin),
}

impl Plugin {
    /// Builds a plugin from its name and (already validated) configuration.
    pub fn build(name: &str, conf: &serde_json::Value) -> Result<Plugin, String> {
        match name {
            "echo" => Ok(Plugin::Echo(EchoPlugin::from_config(conf)?)),
            other => Err(format!("unknown plugin {other:?}")),
        }
    }
}

/// The plugins of one route, ready to run.
#[derive(Debug, Clone, Default)]
pub struct PluginChain {
    plugins: Vec<Plugin>,
}

/// Request context given to plugins.
pub struct PluginContext<'a> {
    /// Client address.
    pub remote: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host the request was routed by.
    pub host: &'a str,
}

impl PluginChain {
    /// A chain from configured plugins.
    pub fn new(plugins: Vec<Plugin>) -> PluginChain {
        PluginChain { plugins }
    }

    /// True when no plugin is configured (the common fast path).
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Rewrite phase: plugins may change the request before routing decisions
    /// are acted on. No plugin in the current catalogue rewrites.
    pub fn rewrite(&self, _parts: &mut Parts, _ctx: &PluginContext<'_>) {}

    /// Access phase: a plugin may answer the request itself. The body is
    /// handed back when no plugin answered.
    pub async fn access(
        &self,
        parts: &Parts,
        body: Incoming,
        ctx: &PluginContext<'_>,
    ) -> Result<Response<ProxyBody>, Incoming> {
        // The first plugin that answers ends the phase. (With one variant
        // today clippy sees a plain map; plugins that do not answer will add
        // `None` arms.)
        #[allow(clippy::unnecessary_find_map)]
        let answering = self.plugins.iter().find_map(|p| match p {
            Plugin::Echo(echo) => Some(echo),
        });
        match answering {
            Some(echo) => Ok(echo.respond(parts, body, ctx).await),
            None => Err(body),
        }
    }

    /// Before-proxy phase: last chance to change the upstream request.
    pub fn before_proxy(&self, _parts: &mut Parts) {}

    /// Response-headers phase.
    pub fn response_headers(&self, _parts: &mut http::response::Parts) {}

    /// Response-body phase: may wrap the body in a transforming stream.
    pub fn response_body(&self, body: ProxyBody) -> ProxyBody {
        body
    }

    /// Log phase: runs once the response is complete.
    pub fn log(&self, _status: u16) {}
}
