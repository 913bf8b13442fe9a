//! The watch task of one cluster: kube's `watcher` (list, paginate, watch
//! with bookmarks) feeding [`ClusterState`] and writing the updates into the
//! registry, with weir's own retry policy:
//!
//! - 410 Gone (the resourceVersion expired: compaction, a restarted API
//!   server's new watch cache) re-lists at once, with no backoff step;
//! - the first 401 of a streak retries at once (the auth layer has dropped
//!   the cached token, so the retry reads `token_file` again); a second
//!   one backs off;
//! - anything else backs off ([`Backoff`]: jittered, doubling), and the
//!   backoff starts over once a watch is established again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, watcher, Event};
use kube::{Api, Resource};
use tokio::sync::Notify;
use weir_config::discovery_resolve::{NamespaceFilter, ResolvedCluster};

use super::backoff::Backoff;
use super::client;
use super::state::{ClusterState, EndpointSource};
use super::sync::SharedSync;
use crate::ratelimit::RateLimiter;
use crate::registry::Registry;

/// Knobs of the watch that are not part of the cluster configuration.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Objects per list page (`limit`); kube's default is 500.
    pub page_size: u32,
    /// `gateway.state_dir`: load the last-known node sets from it at start
    /// and keep them there (warm start). `None`: no warm start.
    pub state_dir: Option<std::path::PathBuf>,
    /// Node-set changes are written to the state directory at most this
    /// often (a rolling update does not write per event).
    pub warm_debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            page_size: 500,
            state_dir: None,
            warm_debounce: Duration::from_secs(1),
        }
    }
}

/// Everything one cluster's task needs.
pub(crate) struct ClusterTask {
    /// Registry key of the cluster (`""` in single-cluster mode).
    pub key: String,
    pub cluster: ResolvedCluster,
    pub registry: Arc<Registry>,
    pub sync: Arc<SharedSync>,
    /// Called once, at the first completed list.
    pub on_synced: Box<dyn Fn() + Send + Sync>,
    pub options: WatchOptions,
    /// Woken after each change of the node set (warm start on).
    pub changed: Option<Arc<Notify>>,
}

impl ClusterTask {
    fn name(&self) -> &str {
        self.cluster.id.as_deref().unwrap_or("kubernetes")
    }

    fn node_set_changed(&self) {
        if let Some(n) = &self.changed {
            n.notify_one();
        }
    }
}

/// Server-side `timeoutSeconds` of a watch: below the client's idle timeout,
/// so a healthy but quiet watch is ended by the server (and resumed) before
/// the client would call it dead.
pub(crate) fn server_timeout_secs(idle: Duration) -> u32 {
    let secs = (idle.as_secs_f64() * 0.75).floor();
    // Truncation is intended: the value is clamped to 1..=290 first.
    secs.clamp(1.0, 290.0) as u32
}

/// Runs until aborted.
pub(crate) async fn run(task: ClusterTask) {
    let log = RateLimiter::new(Duration::from_secs(30));
    let mut delay = Duration::from_millis(500);
    let client = loop {
        match client::build(&task.cluster, &task.sync).await {
            Ok(c) => break c,
            Err(e) => {
                let msg = format!("{e:#}");
                if log.allow("client") {
                    tracing::error!(cluster = task.name(), error = %msg, "cannot create the API client");
                }
                task.sync.error(msg);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    if task.cluster.watch_endpoint_slices {
        watch_kind::<EndpointSlice>(&task, client, &log).await;
    } else {
        watch_kind::<Endpoints>(&task, client, &log).await;
    }
}

fn watcher_config(cluster: &ResolvedCluster, options: &WatchOptions) -> watcher::Config {
    let mut cfg = watcher::Config::default()
        .timeout(server_timeout_secs(cluster.watch_idle_timeout))
        .page_size(options.page_size.max(1));
    if let Some(sel) = &cluster.label_selector {
        cfg = cfg.labels(sel);
    }
    if let NamespaceFilter::NotEqual(ns) = &cluster.namespace_filter {
        cfg = cfg.fields(&format!("metadata.namespace!={ns}"));
    }
    cfg
}

/// What the watch loop does about an error.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// 410 Gone: re-list now. `fresh_watcher`: kube's watcher would retry
    /// the same expired resourceVersion, so a new watcher (starting with a
    /// list) replaces it.
    Relist { fresh_watcher: bool },
    /// 401 Unauthorized.
    Unauthorized,
    /// Anything else: back off.
    Backoff,
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn classify(e: &watcher::Error) -> Retry {
    let code = match e {
        // kube's watcher has reset itself to a fresh list.
        watcher::Error::WatchError(s) if s.code == 410 => {
            return Retry::Relist {
                fresh_watcher: false,
            }
        }
        watcher::Error::WatchError(s) => Some(s.code),
        // An expired continue token: the watcher lists again from the start.
        watcher::Error::InitialListFailed(c) if status_code(c) == Some(410) => {
            return Retry::Relist {
                fresh_watcher: false,
            }
        }
        // A watch refused with HTTP 410: the watcher keeps its resourceVersion.
        watcher::Error::WatchStartFailed(c) if status_code(c) == Some(410) => {
            return Retry::Relist {
                fresh_watcher: true,
            }
        }
        watcher::Error::InitialListFailed(c)
        | watcher::Error::WatchStartFailed(c)
        | watcher::Error::WatchFailed(c) => status_code(c),
        watcher::Error::NoResourceVersion => None,
    };
    if code == Some(401) {
        Retry::Unauthorized
    } else {
        Retry::Backoff
    }
}

async fn watch_kind<K>(task: &ClusterTask, client: kube::Client, log: &RateLimiter)
where
    K: EndpointSource + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = match &task.cluster.namespace_filter {
        NamespaceFilter::Equal(ns) => Api::namespaced(client, ns),
        _ => Api::all(client),
    };
    let cfg = watcher_config(&task.cluster, &task.options);
    let mut state = ClusterState::new(
        task.cluster.default_weight,
        task.cluster.namespace_filter.clone(),
    );
    let mut synced_once = false;
    let mut backoff = Backoff::default();
    let mut retried_401 = false;
    tracing::info!(
        cluster = task.name(),
        kind = K::KIND,
        "watching the API server"
    );
    loop {
        // An event that cannot be decoded on an otherwise healthy stream is
        // skipped here: counted as a stream error it would delay every later
        // (valid) event by the backoff.
        let sync = task.sync.clone();
        let name = task.name().to_owned();
        let events = watcher(api.clone(), cfg.clone()).filter(move |item| {
            let undecodable = item.as_ref().err().and_then(undecodable_event);
            if let Some(why) = &undecodable {
                if log.allow("watch:undecodable") {
                    tracing::warn!(cluster = %name, kind = K::KIND, error = %why,
                        "skipped a watch event that could not be decoded");
                }
                sync.note_error(why.clone());
            }
            std::future::ready(undecodable.is_none())
        });
        let mut stream = std::pin::pin!(events);
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(ev) => ev,
                Err(e) => {
                    if task.sync.take_watch_started() {
                        backoff.reset();
                    }
                    if task.sync.take_answered() {
                        retried_401 = false;
                    }
                    let msg = describe_error(&e);
                    match classify(&e) {
                        Retry::Relist { fresh_watcher } => {
                            if log.allow("watch:410") {
                                tracing::info!(cluster = task.name(), kind = K::KIND, error = %msg,
                                    "resourceVersion expired (410 Gone): re-listing now");
                            }
                            task.sync.gone();
                            if fresh_watcher {
                                break;
                            }
                        }
                        Retry::Unauthorized if !retried_401 => {
                            retried_401 = true;
                            if log.allow("watch:401") {
                                tracing::warn!(cluster = task.name(), kind = K::KIND, error = %msg,
                                    "401 Unauthorized: reading the token again and retrying now");
                            }
                            task.sync.error(msg);
                        }
                        Retry::Unauthorized | Retry::Backoff => {
                            if log.allow(&format!("watch:{msg}")) {
                                tracing::warn!(cluster = task.name(), kind = K::KIND, error = %msg,
                                    "watch failed; keeping the last synced nodes and retrying with backoff");
                            }
                            task.sync.error(msg);
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                    }
                    continue;
                }
            };
            handle_event(task, &mut state, &mut synced_once, event);
        }
    }
}

fn handle_event<K: EndpointSource>(
    task: &ClusterTask,
    state: &mut ClusterState,
    synced_once: &mut bool,
    event: Event<K>,
) {
    match event {
        Event::Init => {
            tracing::debug!(cluster = task.name(), "full list starting");
            state.init();
        }
        Event::InitApply(obj) => {
            task.sync.event(obj.meta().resource_version.as_deref());
            state.init_apply(&obj);
        }
        Event::InitDone => {
            let services = state.init_done();
            tracing::info!(
                cluster = task.name(),
                services = services.len(),
                "full list loaded"
            );
            task.registry.replace_cluster(&task.key, services);
            if task.sync.listed() {
                tracing::info!(
                    cluster = task.name(),
                    "the API server's list replaces the warm-start node set: serving live state"
                );
            }
            task.node_set_changed();
            if !*synced_once {
                *synced_once = true;
                (task.on_synced)();
            }
        }
        Event::Apply(obj) => {
            task.sync.event(obj.meta().resource_version.as_deref());
            for (service, ports) in state.apply(&obj) {
                tracing::debug!(cluster = task.name(), service, "service updated");
                task.registry.update_service(&task.key, &service, ports);
            }
            task.node_set_changed();
        }
        Event::Delete(obj) => {
            task.sync.event(obj.meta().resource_version.as_deref());
            if let Some((service, ports)) = state.delete(&obj) {
                tracing::debug!(cluster = task.name(), service, "service object deleted");
                task.registry.update_service(&task.key, &service, ports);
            }
            task.node_set_changed();
        }
    }
}

/// Describes a watch error caused by one bad event on a live stream (rather
/// than by the connection): garbage that is not JSON, or a JSON object that
/// is neither an event nor a Status (kube reports it as a Status with code 0).
fn undecodable_event(e: &watcher::Error) -> Option<String> {
    match e {
        watcher::Error::WatchFailed(kube::Error::SerdeError(err)) => {
            Some(format!("undecodable watch event: {err}"))
        }
        watcher::Error::WatchFailed(kube::Error::Api(status)) if status.code == 0 => Some(format!(
            "undecodable watch event (not an event object){}",
            if status.message.is_empty() {
                String::new()
            } else {
                format!(": {}", status.message)
            }
        )),
        _ => None,
    }
}

/// A one-line description of a watch error (HTTP status and reason when the
/// API server sent one). Request headers, hence the token, are never part of it.
fn describe_error(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(c) => format!("list failed: {}", client_error(c)),
        watcher::Error::WatchStartFailed(c) => format!("watch start failed: {}", client_error(c)),
        watcher::Error::WatchFailed(c) => format!("watch stream failed: {}", client_error(c)),
        watcher::Error::WatchError(s) => {
            format!("watch error event: {} {} {}", s.code, s.reason, s.message)
        }
        watcher::Error::NoResourceVersion => "no resourceVersion in the API response".to_owned(),
    }
}

fn client_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("HTTP {} {}: {}", s.code, s.reason, s.message),
        other => {
            // Include the causes: "service error" alone says nothing.
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", "y")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn gone_relists_and_401_is_told_apart() {
        assert_eq!(
            classify(&watcher::Error::WatchStartFailed(api_error(410))),
            Retry::Relist {
                fresh_watcher: true
            }
        );
        assert_eq!(
            classify(&watcher::Error::InitialListFailed(api_error(401))),
            Retry::Unauthorized
        );
        assert_eq!(
            classify(&watcher::Error::WatchStartFailed(api_error(403))),
            Retry::Backoff
        );
    }

    #[test]
    fn server_timeout_is_below_the_idle_timeout() {
        assert_eq!(server_timeout_secs(Duration::from_secs(60)), 45);
        assert_eq!(server_timeout_secs(Duration::from_secs(1)), 1);
        assert_eq!(server_timeout_secs(Duration::from_secs(3600)), 290);
    }
}
