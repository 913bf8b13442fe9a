//! A route's plugins, resolved once per snapshot into one ordered list per
//! phase, and the loop that runs them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use sync_wrapper::SyncWrapper;

use crate::{Flow, LocalReply, LogCtx, Phase, Plugin, PluginSpec, RequestCtx, ResponseCtx, Then};

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
    log_reads_request: bool,
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
            needs_body: entries
                .iter()
                .any(|e| e.spec.needs_body && e.plugin.reads_body()),
            log_reads_request: entries
                .iter()
                .any(|e| e.spec.phases.has(Phase::Log) && e.plugin.log_reads_request()),
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

    /// True when some log-phase plugin reads the request line
    /// ([`Plugin::log_reads_request`]).
    pub fn log_reads_request(&self) -> bool {
        self.log_reads_request
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

/// The request-phase stages, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    GlobalRewrite,
    RouteRewrite,
    ConsumerRewrite,
    GlobalAccess,
    Access,
}

const STAGES: [Stage; 5] = [
    Stage::GlobalRewrite,
    Stage::RouteRewrite,
    Stage::ConsumerRewrite,
    Stage::GlobalAccess,
    Stage::Access,
];

/// Where a request's phases stopped to wait: the stage and the index of
/// the waiting plugin in that stage's list.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    stage: Stage,
    index: usize,
}

/// A plugin's wait (see [`Flow::Wait`]), with where the request phases
/// stopped. Awaiting it gives the [`Resumed`] to pass to
/// [`resume_request`].
pub struct Wait {
    future: SyncWrapper<Pin<Box<dyn Future<Output = Then> + Send>>>,
    at: Option<Cursor>,
}

impl Wait {
    pub(crate) fn new(future: Pin<Box<dyn Future<Output = Then> + Send>>) -> Wait {
        Wait {
            future: SyncWrapper::new(future),
            at: None,
        }
    }
}

impl Future for Wait {
    type Output = Resumed;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Resumed> {
        let at = self.at;
        self.future
            .get_mut()
            .as_mut()
            .poll(cx)
            .map(|then| Resumed { then, at })
    }
}

/// A finished wait: what the plugin decides now, and where to go on.
pub struct Resumed {
    then: Then,
    at: Option<Cursor>,
}

/// The entries one stage runs: a phase list of one pipeline, or a list made
/// for this request (the consumer's plugins merged in).
enum StageList<'p> {
    Phase(&'p Pipeline, &'p [u16]),
    Made(Vec<&'p Entry>),
}

impl<'p> StageList<'p> {
    fn get(&self, i: usize) -> Option<&'p Entry> {
        match self {
            StageList::Phase(p, list) => list.get(i).map(|&e| &p.entries[e as usize]),
            StageList::Made(v) => v.get(i).copied(),
        }
    }
}

/// The pipelines one request runs.
struct Plan<'p> {
    route: &'p Pipeline,
    global: Option<&'p Pipeline>,
    consumers: &'p dyn ConsumerPlugins,
}

impl<'p> Plan<'p> {
    fn list(&self, stage: Stage, ctx: &RequestCtx<'_>) -> StageList<'p> {
        let empty = || StageList::Made(Vec::new());
        let consumer = || {
            ctx.consumer()
                .and_then(|c| self.consumers.plugins_of(&c.username))
        };
        match stage {
            Stage::GlobalRewrite => self
                .global
                .map_or_else(empty, |g| StageList::Phase(g, &g.rewrite)),
            Stage::RouteRewrite => StageList::Phase(self.route, &self.route.rewrite),
            Stage::ConsumerRewrite => match consumer() {
                None => empty(),
                Some(c) => StageList::Made(
                    c.phase(&c.rewrite)
                        .filter(|e| !e.spec.is_auth() && !self.route.has(e.spec.name))
                        .collect(),
                ),
            },
            Stage::GlobalAccess => self
                .global
                .map_or_else(empty, |g| StageList::Phase(g, &g.access)),
            Stage::Access => match consumer() {
                None => StageList::Phase(self.route, &self.route.access),
                Some(c) => {
                    let mut merged: Vec<&Entry> = self
                        .route
                        .phase(&self.route.access)
                        .filter(|e| !c.has(e.spec.name))
                        .chain(c.phase(&c.access))
                        .collect();
                    merged.sort_by_key(|e| std::cmp::Reverse(e.priority));
                    StageList::Made(merged)
                }
            },
        }
    }

    /// Runs the request phases from `from` on.
    fn run_from(&self, ctx: &mut RequestCtx<'_>, from: Cursor) -> Flow {
        for stage in STAGES.into_iter().filter(|s| *s >= from.stage) {
            let list = self.list(stage, ctx);
            let call: fn(&dyn Plugin, &mut RequestCtx<'_>) -> Flow = match stage {
                Stage::GlobalRewrite | Stage::RouteRewrite | Stage::ConsumerRewrite => {
                    Plugin::rewrite
                }
                Stage::GlobalAccess | Stage::Access => Plugin::access,
            };
            let mut i = if stage == from.stage { from.index } else { 0 };
            while let Some(e) = list.get(i) {
                if e.runs(ctx) {
                    match call(e.plugin.as_ref(), ctx) {
                        Flow::Continue => {}
                        Flow::Reply(reply) => return Flow::Reply(e.answer(reply)),
                        Flow::Wait(mut w) => {
                            w.at = Some(Cursor { stage, index: i });
                            return Flow::Wait(w);
                        }
                    }
                }
                i += 1;
            }
        }
        self.before_proxy(ctx);
        Flow::Continue
    }

    fn before_proxy(&self, ctx: &mut RequestCtx<'_>) {
        let consumer = ctx
            .consumer()
            .and_then(|c| self.consumers.plugins_of(&c.username));
        for p in [self.global, Some(self.route), consumer]
            .into_iter()
            .flatten()
        {
            // A route plugin the consumer configures runs once: the consumer's.
            let overridden = |e: &Entry| {
                std::ptr::eq(p, self.route) && consumer.is_some_and(|c| c.has(e.spec.name))
            };
            for e in p.phase(&p.before_proxy) {
                if !overridden(e) && e.runs(ctx) {
                    e.plugin.before_proxy(ctx);
                }
            }
        }
    }
}

/// Runs the request phases as APISIX does: global rewrite, route rewrite
/// (authentication attaches the consumer), the consumer's own plugins'
/// rewrite (those the route does not have), global access, then the access
/// phase of the route merged with the consumer's (the consumer's
/// configuration of a plugin wins), then before-proxy. The first answer
/// ends the request phases. A plugin that waits stops them: the transport
/// awaits the [`Wait`] and calls [`resume_request`] with what it gives.
pub fn run_request(
    route: &Pipeline,
    global: Option<&Pipeline>,
    consumers: &dyn ConsumerPlugins,
    ctx: &mut RequestCtx<'_>,
) -> Flow {
    let plan = Plan {
        route,
        global,
        consumers,
    };
    plan.run_from(
        ctx,
        Cursor {
            stage: Stage::GlobalRewrite,
            index: 0,
        },
    )
}

/// Goes on with the request phases after a wait: the waiting plugin
/// decides (`resumed`), then the plugins after it run. The pipelines must be
/// the ones [`run_request`] ran (the same snapshot), and `ctx` a context
/// over the same request and state.
pub fn resume_request(
    route: &Pipeline,
    global: Option<&Pipeline>,
    consumers: &dyn ConsumerPlugins,
    ctx: &mut RequestCtx<'_>,
    resumed: Resumed,
) -> Flow {
    let plan = Plan {
        route,
        global,
        consumers,
    };
    let Some(at) = resumed.at else {
        // A wait that did not come from the pipeline: decide, then stop.
        return (resumed.then)(ctx);
    };
    let entry = plan.list(at.stage, ctx).get(at.index);
    match (resumed.then)(ctx) {
        Flow::Continue => plan.run_from(
            ctx,
            Cursor {
                stage: at.stage,
                index: at.index + 1,
            },
        ),
        Flow::Reply(reply) => Flow::Reply(match entry {
            Some(e) => e.answer(reply),
            None => reply,
        }),
        Flow::Wait(mut w) => {
            w.at = Some(at);
            Flow::Wait(w)
        }
    }
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
