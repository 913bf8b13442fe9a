//! Plugins that send a request to another upstream than the route's
//! (`traffic-split`): what they name in their configuration, for the engine
//! to build and check when it compiles a snapshot, and what they choose per
//! request.

use std::sync::Arc;

/// An upstream a plugin's configuration names.
#[derive(Debug, Clone)]
pub struct PluginUpstream {
    /// The plugin's own name for it (unique within the configuration), for
    /// [`UpstreamChoice::Inline`].
    pub name: String,
    /// Its path inside the plugin's configuration
    /// (`rules[0].weighted_upstreams[1]`), for errors.
    pub at: String,
    /// An `upstream_id` or an inline upstream.
    pub source: PluginUpstreamSource,
}

/// Where a plugin's upstream is defined.
#[derive(Debug, Clone)]
pub enum PluginUpstreamSource {
    /// `upstream_id`: an item of `upstreams`.
    Id(String),
    /// An upstream written in the plugin's configuration.
    Inline(serde_json::Value),
}

/// The upstream a plugin chose for a request (none: the route's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamChoice {
    /// An item of `upstreams`, by id.
    Id(Arc<str>),
    /// One of the plugin's inline upstreams, by its [`PluginUpstream::name`].
    Inline(Arc<str>),
}
