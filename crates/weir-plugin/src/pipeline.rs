//! A route's plugins, resolved once per snapshot into one ordered list per
//! phase, and the loop that runs them.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use crate::{Flow, LocalReply, LogCtx, Phase, Plugin, PluginSpec, RequestCtx, ResponseCtx};

/// A `_meta.filter` condition: the plugin runs only when it holds.
pub type Filter = Box<dyn Fn(&RequestCtx<'_>) -> bool + Send + Sync>;

/// One configured plugin with its `_meta` settings.
pub struct Entry {
    /// The catalogue entry.
    pub spec: &'static PluginSpec,
    /// The instance.
    pub plugin: Arc<dyn Plugin>,
    /// Effective priority (`_meta.priority` or the spec's).
    pub priority: i32,
    /// `_meta.filter`.
    pub filter: Option<Filter>,
    /// `_meta.error_response`: replaces the body of this plugin's answers
    /// with status >= 400.
    pub error_response: Option<Bytes>,
}

impl Entry {
    fn runs(&self, ctx: &RequestCtx<'_>) -> bool {
        self.filter.as_ref().is_none_or(|f| f(ctx))
    }

    fn answer(&self, mut reply: LocalReply) -> LocalReply {
        if let Some(body) = &self.error_response {
            if reply.status.as_u16() >= 400 {
                reply.replace_body(HeaderValue::from_static("text/plain"), body.clone());
            }
        }
        reply
    }
}

/// A set of plugins (a route's, a consumer's, the global rules') with one
/// index list per phase, each ordered by priority, higher first.
#[derive(Default)]
pub struct Pipeline {
    entries: Vec<Entry>,
    rewrite: Box<[u16]>,
    access: Box<[u16]>,
    before_proxy: Box<[u16]>,
    response: Box<[u16]>,
    log: Box<[u16]>,
    needs_body: bool,
    secret_args: Box<[Box<str>]>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (e.spec.name, e.priority)))
            .finish()
    }
}

impl Pipeline {
    /// Orders `entries` by priority (higher first; ties by name, so the
    /// order never depends on the configuration's key order) and indexes
    /// each phase.
    pub fn new(mut entries: Vec<Entry>) -> Pipeline {
        entries.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.spec.name.cmp(b.spec.name))
        });
        let of = |phase: Phase| -> Box<[u16]> {
            (0..entries.len())
                .filter(|&i| entries[i].spec.phases.has(phase))
                .map(|i| i as u16)
                .collect()
        };
        Pipeline {
            rewrite: of(Phase::Rewrite),
            access: of(Phase::Access),
            before_proxy: of(Phase::BeforeProxy),
            response: of(Phase::ResponseHeaders),
            log: of(Phase::Log),
            needs_body: entries.iter().any(|e| e.spec.needs_body),
            secret_args: entries
                .iter()
                .flat_map(|e| e.plugin.secret_query_args())
                .map(String::into_boxed_str)
                .collect(),
            entries,
        }
    }

    /// True when there is no plugin.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when a plugin reads the whole request body.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Query arguments whose values are masked in the access log.
    pub fn secret_query_args(&self) -> &[Box<str>] {
        &self.secret_args
    }

    /// True when some plugin has a response-headers phase.
    pub fn has_response_phase(&self) -> bool {
        !self.response.is_empty()
    }

    /// True when some plugin has a log phase.
    pub fn has_log_phase(&self) -> bool {
        !self.log.is_empty()
    }

    /// True when the pipeline holds a plugin named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.spec.name == name)
    }

    /// The plugins' names, in priority order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.spec.name)
    }

    fn phase<'s>(&'s self, list: &'s [u16]) -> impl Iterator<Item = &'s Entry> + 's {
        list.iter().map(|&i| &self.entries[i as usize])
    }
}

/// Where consumers' own plugins come from: the engine's table of compiled
/// consumer (and consumer group) plugins, by username.
pub trait ConsumerPlugins {
    /// The merged plugins of a consumer and its group, if any.
    fn plugins_of(&self, username: &str) -> Option<&Pipeline>;
}

impl ConsumerPlugins for () {
    fn plugins_of(&self, _: &str) -> Option<&Pipeline> {
        None
    }
}

/// Runs the request phases as APISIX does: global rewrite, route rewrite
/// (authentication attaches the consumer), the consumer's own plugins'
/// rewrite (those the route does not have), global access, then the access
/// phase of the route merged with the consumer's (the consumer's
/// configuration of a plugin wins), then before-proxy. The first answer
/// ends the request phases.
pub fn run_request(
    route: &Pipeline,
    global: Option<&Pipeline>,
    consumers: &dyn ConsumerPlugins,
    ctx: &mut RequestCtx<'_>,
) -> Flow {
    if let Some(g) = global {
        if let Flow::Reply(r) = run_phase(g.phase(&g.rewrite), ctx, Plugin::rewrite) {
            return Flow::Reply(r);
        }
    }
    if let Flow::Reply(r) = run_phase(route.phase(&route.rewrite), ctx, Plugin::rewrite) {
        return Flow::Reply(r);
    }
    let consumer = ctx
        .consumer()
        .and_then(|c| consumers.plugins_of(&c.username));
    if let Some(c) = consumer {
        let extra = c
            .phase(&c.rewrite)
            .filter(|e| !e.spec.is_auth() && !route.has(e.spec.name));
        if let Flow::Reply(r) = run_phase(extra, ctx, Plugin::rewrite) {
            return Flow::Reply(r);
        }
    }
    if let Some(g) = global {
        if let Flow::Reply(r) = run_phase(g.phase(&g.access), ctx, Plugin::access) {
            return Flow::Reply(r);
        }
    }
    let flow = match consumer {
        None => run_phase(route.phase(&route.access), ctx, Plugin::access),
        Some(c) => {
            let mut merged: Vec<&Entry> = route
                .phase(&route.access)
                .filter(|e| !c.has(e.spec.name))
                .chain(c.phase(&c.access))
                .collect();
            merged.sort_by_key(|e| std::cmp::Reverse(e.priority));
            run_phase(merged.into_iter(), ctx, Plugin::access)
        }
    };
    if let Flow::Reply(r) = flow {
        return Flow::Reply(r);
    }
    for p in [global, Some(route), consumer].into_iter().flatten() {
        // A route plugin the consumer configures runs once: the consumer's.
        let overridden =
            |e: &Entry| std::ptr::eq(p, route) && consumer.is_some_and(|c| c.has(e.spec.name));
        for e in p.phase(&p.before_proxy) {
            if !overridden(e) && e.runs(ctx) {
                e.plugin.before_proxy(ctx);
            }
        }
    }
    Flow::Continue
}

fn run_phase<'e>(
    entries: impl Iterator<Item = &'e Entry>,
    ctx: &mut RequestCtx<'_>,
    call: fn(&dyn Plugin, &mut RequestCtx<'_>) -> Flow,
) -> Flow {
    for e in entries {
        if !e.runs(ctx) {
            continue;
        }
        if let Flow::Reply(reply) = call(e.plugin.as_ref(), ctx) {
            return Flow::Reply(e.answer(reply));
        }
    }
    Flow::Continue
}

/// The entries of `phase` a request runs after the global rules: the
/// route's, minus those its consumer configures itself, merged with the
/// consumer's own (not its authentication plugins), by priority.
fn route_and_consumer<'p>(
    route: &'p Pipeline,
    consumer: Option<&'p Pipeline>,
    list: fn(&Pipeline) -> &[u16],
) -> Vec<&'p Entry> {
    let Some(c) = consumer else {
        return route.phase(list(route)).collect();
    };
    let mut merged: Vec<&Entry> = route
        .phase(list(route))
        .filter(|e| !c.has(e.spec.name))
        .chain(c.phase(list(c)).filter(|e| !e.spec.is_auth()))
        .collect();
    merged.sort_by_key(|e| std::cmp::Reverse(e.priority));
    merged
}

/// Runs the response-headers phase: global rules first, then the route's
/// merged with the consumer's own plugins (`consumer`: the recognised
/// consumer's pipeline, if it has one).
pub fn run_response(
    route: &Pipeline,
    global: Option<&Pipeline>,
    consumer: Option<&Pipeline>,
    ctx: &mut ResponseCtx<'_>,
) {
    if let Some(g) = global {
        for e in g.phase(&g.response) {
            e.plugin.response_headers(ctx);
        }
    }
    for e in route_and_consumer(route, consumer, |p| &p.response) {
        e.plugin.response_headers(ctx);
    }
}

/// Runs the log phase, in the same order as the response phase.
pub fn run_log(
    route: &Pipeline,
    global: Option<&Pipeline>,
    consumer: Option<&Pipeline>,
    ctx: &LogCtx<'_>,
) {
    if let Some(g) = global {
        for e in g.phase(&g.log) {
            e.plugin.log(ctx);
        }
    }
    for e in route_and_consumer(route, consumer, |p| &p.log) {
        e.plugin.log(ctx);
    }
}
