//! What both transports do with a request's plugin state after the request
//! phases: the response-headers phase and the edits it leaves, and the log
//! phase once the request is over.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime};

use weir_http::{HeaderEdits, LocalReply, RequestView};
use weir_plugin::pipeline::Pipeline;
use weir_plugin::{BodyFilters, Consumer, ConsumerPlugins, Flow, LogCtx, PluginState, RequestCtx};

use crate::snapshot::{CompiledRoute, ConsumerTable, Snapshot};

/// The pipeline of a request that matched no route, or a route without
/// plugins, when global rules still run.
pub static NO_PLUGINS: LazyLock<Pipeline> = LazyLock::new(Pipeline::default);

/// Runs the request phases of `route` (and the global rules, and the
/// consumer's own plugins) over `view` to their end, awaiting the plugins
/// that wait; the general path's way (the fast path resumes from its
/// exchange, over its read buffer). Returns the plugins' answer, if one
/// answered.
#[allow(clippy::too_many_arguments)]
pub async fn run_request_phases<V: RequestView + Sync>(
    route: &Pipeline,
    snapshot: &Snapshot,
    view: &V,
    conn: &weir_plugin::Conn,
    route_id: &str,
    state: &mut PluginState,
    body: Option<&[u8]>,
) -> Option<LocalReply> {
    let global = snapshot.global.as_deref();
    let consumers = &snapshot.consumers;
    let mut flow = {
        let mut ctx = RequestCtx::new(view, conn, route_id, state, body);
        weir_plugin::run_request(route, global, consumers, &mut ctx)
    };
    loop {
        match flow {
            Flow::Continue => return None,
            Flow::Reply(reply) => return Some(reply),
            Flow::Wait(wait) => {
                let resumed = wait.await;
                let mut ctx = RequestCtx::new(view, conn, route_id, state, body);
                flow = weir_plugin::resume_request(route, global, consumers, &mut ctx, resumed);
            }
        }
    }
}

/// What the response-headers phase needs.
pub struct ResponsePlugins<'a> {
    /// The route's plugins.
    pub route: &'a Pipeline,
    /// The global rules' plugins.
    pub global: Option<&'a Pipeline>,
    /// Consumers' own plugins (the recognised consumer's run too).
    pub consumers: &'a ConsumerTable,
    /// The state the request phases left.
    pub state: &'a PluginState,
}

impl ResponsePlugins<'_> {
    /// What the client's response becomes: the request phases' response
    /// edits, plus what the response-headers phase decides over `view` (a
    /// new status, more edits, filters over the body).
    pub fn decide(
        &self,
        view: &dyn weir_http::ResponseView,
        from_node: bool,
    ) -> ResponseDecision<'_> {
        let consumer = self
            .state
            .consumer
            .as_ref()
            .and_then(|c| self.consumers.plugins_of(&c.username));
        let has_phase = self.route.has_response_phase()
            || self.global.is_some_and(Pipeline::has_response_phase)
            || consumer.is_some_and(Pipeline::has_response_phase);
        if !has_phase {
            return ResponseDecision {
                edits: Cow::Borrowed(&self.state.response_headers),
                status: None,
                body: None,
            };
        }
        let mut state = PluginState {
            response_headers: self.state.response_headers.clone(),
            consumer: self.state.consumer.clone(),
            request_id: self.state.request_id.clone(),
            ..PluginState::default()
        };
        let mut ctx = weir_plugin::ResponseCtx::new(view, &mut state, from_node);
        weir_plugin::run_response(self.route, self.global, consumer, &mut ctx);
        ResponseDecision {
            edits: Cow::Owned(state.response_headers),
            status: state
                .response_status
                .filter(|s| (100..1000).contains(s) && *s != view.status()),
            body: (!state.body_filters.is_empty()).then_some(state.body_filters),
        }
    }
}

/// What the response-headers phase decided for one response.
pub struct ResponseDecision<'a> {
    /// Header edits for the client's response.
    pub edits: Cow<'a, HeaderEdits>,
    /// The status the client gets instead of the response's own.
    pub status: Option<u16>,
    /// Filters over the body; the response is re-framed.
    pub body: Option<BodyFilters>,
}

impl ResponseDecision<'_> {
    /// Applies the new status and the body filters to a reply weir made
    /// (its body is whole: filtered at once); the edits are left to the
    /// writer.
    pub fn apply_to_reply(&mut self, reply: &mut LocalReply) {
        if let Some(status) = self.status.and_then(|s| http::StatusCode::from_u16(s).ok()) {
            reply.status = status;
        }
        if let Some(filters) = &mut self.body {
            reply.body = filters.run_whole(&reply.body).into();
        }
    }
}

/// What the log phase needs once the request is over. Made only for a
/// request whose plugins (the route's, the global rules', its consumer's)
/// have a log phase, so other requests pay nothing for it.
pub struct LogPhase {
    snapshot: Arc<Snapshot>,
    route: Option<Arc<CompiledRoute>>,
    consumer: Option<Arc<Consumer>>,
    method: Box<str>,
    uri: Box<str>,
    host: Box<str>,
    client_ip: IpAddr,
    start: SystemTime,
    /// See [`LogCtx::upstream_status`] (0: none).
    upstream_status: AtomicU16,
    /// See [`LogCtx::request_bytes`].
    request_bytes: u64,
    /// The node that answered, if one did.
    node: OnceLock<Arc<str>>,
    /// See [`LogCtx::upstream_latency`], in microseconds (`u64::MAX`: none).
    upstream_micros: AtomicU64,
    /// See [`LogCtx::notes`].
    notes: Vec<weir_plugin::LogNote>,
}

impl LogPhase {
    /// The log phase of a request whose request phases are done (`state`),
    /// if any of its plugins has one.
    pub fn prepare(
        snapshot: &Arc<Snapshot>,
        route: Option<&Arc<CompiledRoute>>,
        state: &PluginState,
        view: &dyn RequestView,
        client_ip: IpAddr,
    ) -> Option<Box<LogPhase>> {
        let consumer = state
            .consumer
            .as_ref()
            .and_then(|c| snapshot.consumers.plugins_of(&c.username));
        let pipelines = [
            route.map(|r| &r.plugins),
            snapshot.global.as_deref(),
            consumer,
        ];
        let any = |f: fn(&Pipeline) -> bool| pipelines.iter().flatten().any(|p| f(p));
        if !any(Pipeline::has_log_phase) {
            return None;
        }
        let (method, uri, host): (Box<str>, Box<str>, Box<str>) =
            if any(Pipeline::log_reads_request) {
                (
                    view.method().into(),
                    masked_uri(view.path_and_query(), route, snapshot),
                    String::from_utf8_lossy(view.host().unwrap_or_default()).into(),
                )
            } else {
                Default::default()
            };
        Some({
            Box::new(LogPhase {
                snapshot: snapshot.clone(),
                route: route.cloned(),
                consumer: state.consumer.clone(),
                method,
                uri,
                host,
                client_ip: state.real_ip.unwrap_or(client_ip),
                start: SystemTime::now(),
                upstream_status: AtomicU16::new(0),
                request_bytes: request_size(view),
                node: OnceLock::new(),
                upstream_micros: AtomicU64::new(u64::MAX),
                notes: state.log_notes.clone(),
            })
        })
    }

    /// Records what the upstream answered (or the 502/504 weir answered for
    /// it after its nodes failed), and which node answered after how long
    /// (from the start of its attempt to its response head), when one did.
    pub fn upstream_answered(&self, status: u16, answered_by: Option<(&Arc<str>, Duration)>) {
        self.upstream_status.store(status, Ordering::Relaxed);
        if let Some((node, latency)) = answered_by {
            let _ = self.node.set(node.clone());
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX - 1);
            self.upstream_micros.store(micros, Ordering::Relaxed);
        }
    }

    /// Runs the log phase: the request ended with `status` after `duration`,
    /// `body_bytes` of response body sent.
    pub fn run(&self, status: u16, body_bytes: u64, duration: Duration) {
        let route = self.route.as_deref();
        let consumer_plugins = self
            .consumer
            .as_ref()
            .and_then(|c| self.snapshot.consumers.plugins_of(&c.username));
        let ctx = LogCtx {
            method: &self.method,
            uri: &self.uri,
            host: &self.host,
            client_ip: self.client_ip,
            status,
            upstream_status: Some(self.upstream_status.load(Ordering::Relaxed)).filter(|s| *s != 0),
            body_bytes,
            route_id: route.map_or("", |r| &r.id),
            consumer: self.consumer.as_deref(),
            start: self.start,
            duration,
            route: route.map(|r| &r.facts),
            node: self.node.get().map(|n| &**n),
            upstream_latency: Some(self.upstream_micros.load(Ordering::Relaxed))
                .filter(|m| *m != u64::MAX)
                .map(Duration::from_micros),
            request_bytes: self.request_bytes,
            notes: &self.notes,
        };
        weir_plugin::run_log(
            route.map_or(&*NO_PLUGINS, |r| &r.plugins),
            self.snapshot.global.as_deref(),
            consumer_plugins,
            &ctx,
        );
    }
}

/// The request's size as HTTP/1.1 text: request line, fields, the blank
/// line, and the body its `Content-Length` announces (a chunked body counts
/// nothing). Exact for HTTP/1.1 heads as received, an estimate for HTTP/2.
fn request_size(view: &dyn RequestView) -> u64 {
    // "METHOD target HTTP/1.1\r\n"
    let line = view.method().len() + view.path_and_query().len() + 12;
    // "name: value\r\n" each, then "\r\n"
    let fields: usize = view.fields().map(|(n, v)| n.len() + v.len() + 4).sum();
    let body = view
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    (line + fields + 2) as u64 + body
}

/// The request target with credentials sent in the query string masked, as
/// in the access log (`?apikey=***`).
fn masked_uri(target: &str, route: Option<&Arc<CompiledRoute>>, snapshot: &Snapshot) -> Box<str> {
    let mut uri: Cow<'_, [u8]> = Cow::Borrowed(target.as_bytes());
    let route_args = route.map(|r| r.plugins.secret_query_args());
    let global_args = snapshot.global.as_deref().map(Pipeline::secret_query_args);
    for names in [route_args, global_args].into_iter().flatten() {
        if let Some(m) = crate::access_log::mask_query(&uri, names) {
            uri = Cow::Owned(m);
        }
    }
    String::from_utf8_lossy(&uri).into()
}
