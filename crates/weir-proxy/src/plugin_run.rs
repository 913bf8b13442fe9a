//! What both transports do with a request's plugin state on the response
//! side: the response-headers phase and the edits it leaves.

use std::borrow::Cow;
use std::sync::LazyLock;

use weir_http::HeaderEdits;
use weir_plugin::pipeline::Pipeline;
use weir_plugin::PluginState;

/// The pipeline of a request that matched no route, or a route without
/// plugins, when global rules still run.
pub static NO_PLUGINS: LazyLock<Pipeline> = LazyLock::new(Pipeline::default);

/// What the response-headers phase needs.
pub struct ResponsePlugins<'a> {
    /// The route's plugins.
    pub route: &'a Pipeline,
    /// The global rules' plugins.
    pub global: Option<&'a Pipeline>,
    /// The state the request phases left.
    pub state: &'a PluginState,
}

impl ResponsePlugins<'_> {
    /// The response edits: the request phases' ones, plus what the
    /// response-headers phase decides over `view`.
    pub fn edits(
        &self,
        view: &dyn weir_http::ResponseView,
        from_node: bool,
    ) -> Cow<'_, HeaderEdits> {
        let has_phase = self.route.has_response_phase()
            || self.global.is_some_and(Pipeline::has_response_phase);
        if !has_phase {
            return Cow::Borrowed(&self.state.response_headers);
        }
        let mut state = PluginState {
            response_headers: self.state.response_headers.clone(),
            consumer: self.state.consumer.clone(),
            ..PluginState::default()
        };
        let mut ctx = weir_plugin::ResponseCtx::new(view, &mut state, from_node);
        weir_plugin::run_response(self.route, self.global, &mut ctx);
        Cow::Owned(state.response_headers)
    }
}
