//! A faithful fake Kubernetes API server (shaped after a recorded v1.28 server) with a
//! fault injector, for testing weir's Endpoints/EndpointSlice discovery without a cluster.
//!
//! It serves, over real sockets (HTTP, or HTTPS with a generated CA):
//! - `GET /api/v1/endpoints`, `/api/v1/namespaces/{ns}/endpoints`,
//!   `/apis/discovery.k8s.io/v1/endpointslices` and `…/namespaces/{ns}/endpointslices`,
//!   with `labelSelector`, `fieldSelector` (`metadata.name`/`metadata.namespace`),
//!   `limit`/`continue`, `resourceVersion`/`resourceVersionMatch`;
//! - the same with `watch=1`: a chunked stream of JSON lines (ADDED / MODIFIED /
//!   DELETED / BOOKMARK / ERROR) with history replay, 410 `Expired` for compacted
//!   resourceVersions, `allowWatchBookmarks` and `timeoutSeconds`;
//! - bearer-token authentication (401) and list/watch-only RBAC (403 for anything else);
//! - `/version`, `/api`, `/apis` and minimal resource lists.
//!
//! Unlike a real API server, it **accepts loopback addresses** in Endpoints and
//! EndpointSlices by default, so tests can point them at backends on `127.0.0.1`. A real
//! server refuses 127.0.0.0/8 and ::1 (`may not be in the loopback range`); set
//! [`FakeApiOptions::reject_loopback`] to get that behaviour.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use weir_testkit::kube_api::{endpoints, FakeApiServer, ResourceKind};
//! use std::time::Duration;
//! let api = FakeApiServer::start().await?; // http://127.0.0.1:<port>, token "test-token"
//! api.apply_endpoints(endpoints("shop", "cart").ready(["127.0.0.1"]).port("http", 8080).build());
//! // … start the component under test against api.url() …
//! api.wait_for_watchers(ResourceKind::Endpoints, 1, Duration::from_secs(5)).await?;
//! api.cut_watches();
//! # Ok(()) }
//! ```

mod builders;
mod faults;
mod selectors;
mod server;
mod status;
mod store;
mod tls;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use tokio::sync::watch as tokio_watch;

pub use builders::{
    endpoint_slice, endpoints, EndpointSliceBuilder, EndpointState, EndpointsBuilder,
    SERVICE_NAME_LABEL,
};
pub use faults::{FailScope, RecordedRequest};
pub use store::ResourceKind;

use faults::{lock, Faults};
use server::{Auth, Running, ServerConfig, Shared};
use store::Store;

/// The token [`FakeApiServer::start`] accepts.
pub const DEFAULT_TOKEN: &str = "test-token";

/// Options for [`FakeApiServer::start_with`]. Start from `FakeApiOptions::default()`.
#[derive(Debug, Clone)]
pub struct FakeApiOptions {
    /// Serve HTTPS with a freshly generated CA (see [`FakeApiServer::ca_pem`]). Default false.
    pub tls: bool,
    /// Address to bind. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Tokens that are authenticated and may list/watch endpoints and endpointslices.
    /// Default `["test-token"]`.
    pub tokens: Vec<String>,
    /// Tokens that are authenticated but have no RBAC (every request gets 403). Default none.
    pub forbidden_tokens: Vec<String>,
    /// User name the tokens authenticate as (appears in 403 messages).
    /// Default `endpoints-watcher`, as in the recordings.
    pub user: String,
    /// Treat requests without a token as `system:anonymous` (403 on resources) instead
    /// of answering 401. Default false.
    pub anonymous_auth: bool,
    /// Period of BOOKMARK events on watches with `allowWatchBookmarks=true`.
    /// Default 1 s (a real server uses about 1 min).
    pub bookmark_interval: Duration,
    /// A bookmark is also sent this long before a watch's `timeoutSeconds` ends, if
    /// that is still in the future. Default 2 s, like the real cacher.
    pub pre_timeout_bookmark: Duration,
    /// Watch duration when `timeoutSeconds` is absent or 0. Default 1800 s.
    pub default_watch_timeout: Duration,
    /// How many changes the watch cache remembers; watches from older
    /// resourceVersions get 410. Default 1000.
    pub history_size: usize,
    /// The resourceVersion of the empty store. Default 100.
    pub initial_resource_version: u64,
    /// Refuse loopback addresses like a real API server. Default false.
    pub reject_loopback: bool,
    /// Enable the WatchList feature (`sendInitialEvents=true`). Default false, as on
    /// v1.28, which answers 422 `Invalid` to `sendInitialEvents`.
    pub watch_list: bool,
    /// How long a `resourceVersion` from the future is waited for before 504
    /// `Too large resource version`. Default 3 s, like the real server.
    pub too_large_rv_wait: Duration,
}

impl Default for FakeApiOptions {
    fn default() -> Self {
        FakeApiOptions {
            tls: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: vec![DEFAULT_TOKEN.to_string()],
            forbidden_tokens: Vec::new(),
            user: "endpoints-watcher".to_string(),
            anonymous_auth: false,
            bookmark_interval: Duration::from_secs(1),
            pre_timeout_bookmark: Duration::from_secs(2),
            default_watch_timeout: Duration::from_secs(1800),
            history_size: 1000,
            initial_resource_version: 100,
            reject_loopback: false,
            watch_list: false,
            too_large_rv_wait: Duration::from_secs(3),
        }
    }
}

/// Options for [`FakeApiServer::restart_with`].
#[derive(Debug, Clone)]
pub struct RestartOptions {
    /// Keep the watch-cache history, so watches can resume from old resourceVersions.
    /// Default false: like a real kube-apiserver restart (see `demo-410.txt`), the
    /// watch cache starts empty and resuming from an older resourceVersion gets 410.
    pub keep_history: bool,
    /// Advance the resourceVersion by this much while down. Default 1: a restarting
    /// apiserver writes to etcd itself (leases, endpoint reconciler), so even a client
    /// that was fully up to date resumes from a too-old resourceVersion (410).
    pub resource_version_jump: u64,
    /// Stay down (connection refused) this long before listening again.
    pub down_for: Duration,
}

impl Default for RestartOptions {
    fn default() -> Self {
        RestartOptions {
            keep_history: false,
            resource_version_jump: 1,
            down_for: Duration::ZERO,
        }
    }
}

/// A fake kube-apiserver on a real socket. Dropping it shuts it down.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<tls::TlsMaterial>,
    running: Mutex<Option<Running>>,
    /// While stopped: the port, bound but not listening, so no other socket
    /// can take it before [`resume`](Self::resume) listens on it again.
    held: Mutex<Option<tokio::net::TcpSocket>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url())
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    /// Starts a plain-HTTP server on `127.0.0.1:0` accepting the token `test-token`.
    pub async fn start() -> anyhow::Result<FakeApiServer> {
        FakeApiServer::start_with(FakeApiOptions::default()).await
    }

    /// Starts a server with `opts`.
    pub async fn start_with(opts: FakeApiOptions) -> anyhow::Result<FakeApiServer> {
        let tls = if opts.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            cfg: ServerConfig {
                user: opts.user.clone(),
                anonymous_auth: opts.anonymous_auth,
                watch_list: opts.watch_list,
                bookmark_interval: opts.bookmark_interval.max(Duration::from_millis(10)),
                pre_timeout_bookmark: opts.pre_timeout_bookmark,
                default_watch_timeout: opts.default_watch_timeout,
                too_large_rv_wait: opts.too_large_rv_wait,
            },
            store: Mutex::new(Store::new(
                opts.initial_resource_version,
                opts.history_size,
                opts.reject_loopback,
            )),
            auth: Mutex::new(Auth {
                valid: opts.tokens.iter().cloned().collect(),
                forbidden: opts.forbidden_tokens.iter().cloned().collect(),
            }),
            faults: Faults::new(),
            requests: Mutex::new(Vec::new()),
            request_count: tokio_watch::channel(0).0,
            watch_counts: tokio_watch::channel([0, 0]).0,
        });
        let listener = server::bind(opts.bind).with_context(|| format!("binding {}", opts.bind))?;
        let addr = listener.local_addr()?;
        let running = server::spawn_accept_loop(
            listener,
            shared.clone(),
            tls.as_ref().map(|t| t.acceptor.clone()),
        );
        tracing::info!(%addr, tls = opts.tls, "fake kube-apiserver listening");
        Ok(FakeApiServer {
            shared,
            addr,
            tls,
            running: Mutex::new(Some(running)),
            held: Mutex::new(None),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (or `https://…` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The listening address (stable across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the serving certificate (HTTPS mode only).
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// DER of the CA certificate (HTTPS mode only).
    pub fn ca_der(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(|t| t.ca_der.clone())
    }

    /// A kubeconfig YAML pointing at this server with `token` (and the CA in HTTPS mode).
    pub fn kubeconfig(&self, token: &str) -> String {
        let ca = self
            .tls
            .as_ref()
            .map(|t| {
                format!(
                    "\n    certificate-authority-data: {}",
                    status::base64_std_encode(t.ca_pem.as_bytes())
                )
            })
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}{ca}\nusers:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        )
    }

    // ----- state -----

    fn apply_value(&self, kind: ResourceKind, v: Value) -> anyhow::Result<u64> {
        lock(&self.shared.store)
            .apply(kind, v)
            .map_err(|e| anyhow!(e))
    }

    /// Creates or replaces an Endpoints object; returns its new resourceVersion. A real
    /// server would have rejected what this refuses (see [`try_apply_endpoints`](Self::try_apply_endpoints)).
    ///
    /// # Panics
    /// If the object is invalid (no name/namespace, or loopback with `reject_loopback`).
    pub fn apply_endpoints(&self, ep: Endpoints) -> u64 {
        self.try_apply_endpoints(ep)
            .unwrap_or_else(|e| panic!("apply_endpoints: {e}"))
    }

    /// Like [`apply_endpoints`](Self::apply_endpoints) but returns the API server's
    /// validation message instead of panicking.
    pub fn try_apply_endpoints(&self, ep: Endpoints) -> anyhow::Result<u64> {
        self.apply_value(ResourceKind::Endpoints, serde_json::to_value(ep)?)
    }

    /// Deletes Endpoints `ns/name`; returns the deletion resourceVersion if it existed.
    pub fn delete_endpoints(&self, ns: &str, name: &str) -> Option<u64> {
        lock(&self.shared.store).delete(ResourceKind::Endpoints, ns, name)
    }

    /// Creates or replaces an EndpointSlice; returns its new resourceVersion.
    ///
    /// # Panics
    /// If the object is invalid (no name/namespace, or loopback with `reject_loopback`).
    pub fn apply_endpoint_slice(&self, s: EndpointSlice) -> u64 {
        self.try_apply_endpoint_slice(s)
            .unwrap_or_else(|e| panic!("apply_endpoint_slice: {e}"))
    }

    /// Like [`apply_endpoint_slice`](Self::apply_endpoint_slice) but returns the
    /// validation message instead of panicking.
    pub fn try_apply_endpoint_slice(&self, s: EndpointSlice) -> anyhow::Result<u64> {
        self.apply_value(ResourceKind::EndpointSlices, serde_json::to_value(s)?)
    }

    /// Deletes EndpointSlice `ns/name`; returns the deletion resourceVersion if it existed.
    pub fn delete_endpoint_slice(&self, ns: &str, name: &str) -> Option<u64> {
        lock(&self.shared.store).delete(ResourceKind::EndpointSlices, ns, name)
    }

    /// Creates or replaces an object given as raw JSON (e.g. an item of a recorded list,
    /// keeping its uid, annotations and managedFields).
    pub fn apply_json(&self, kind: ResourceKind, object: Value) -> anyhow::Result<u64> {
        self.apply_value(kind, object)
    }

    /// The stored object `ns/name` as served in watch events (with kind/apiVersion).
    pub fn object(&self, kind: ResourceKind, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store)
            .get(kind, ns, name)
            .map(|o| o.as_ref().clone())
    }

    /// The current global resourceVersion (etcd revision).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv()
    }

    /// Advances the resourceVersion without touching endpoints (writes to other resources).
    pub fn bump_resource_version(&self, by: u64) {
        lock(&self.shared.store).bump(by);
    }

    // ----- auth -----

    /// Replaces the token sets at runtime (rotation/revocation). `valid` tokens may
    /// list/watch; `forbidden` ones are authenticated but get 403; others get 401.
    /// Open watches are not affected (as on a real server).
    pub fn set_tokens(&self, valid: &[&str], forbidden: &[&str]) {
        let mut auth = lock(&self.shared.auth);
        auth.valid = valid.iter().map(|s| s.to_string()).collect();
        auth.forbidden = forbidden.iter().map(|s| s.to_string()).collect();
    }

    // ----- faults -----

    /// Abruptly ends every open watch stream: the connection is dropped mid-stream
    /// without the terminating chunk.
    pub fn cut_watches(&self) {
        self.shared.faults.cut.send_modify(|g| *g += 1);
    }

    /// While `stalled`, open watches send nothing at all (no events, no bookmarks, no
    /// timeout close); queued events are delivered when un-stalled.
    pub fn stall_watches(&self, stalled: bool) {
        self.shared.faults.stall.send_replace(stalled);
    }

    /// Makes requests fail with HTTP `status` and a matching Status body (500
    /// InternalError, 503 ServiceUnavailable, 429 TooManyRequests with Retry-After, …).
    /// `scope`: a count (`3`), a `Duration`, or [`FailScope::Always`]. Applies to every
    /// request, before authentication; already open watches continue.
    pub fn fail_requests(&self, status: u16, scope: impl Into<FailScope>) {
        self.shared.faults.set_failure(status, scope.into());
    }

    /// Cancels [`fail_requests`](Self::fail_requests).
    pub fn clear_failures(&self) {
        self.shared.faults.set_failure(0, FailScope::Next(0));
    }

    /// Forgets all history (etcd compaction + watch-cache reset): watches from an older
    /// resourceVersion get the 410 ERROR event, older continue tokens and `Exact`
    /// lists get HTTP 410.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Moves the resourceVersion on by `by`, forgets all history and cuts every
    /// open watch, as one step: no bookmark can carry the new revision to a
    /// watcher in between, so every watcher resumes from a compacted
    /// resourceVersion and gets 410 Expired (then re-lists). Doing the three
    /// separately races with the bookmark timer: a bookmark sent between the
    /// bump and the cut lets the watcher resume without a 410.
    pub fn expire_watches(&self, by: u64) {
        let mut store = lock(&self.shared.store);
        store.bump(by);
        store.compact();
        // Signalled under the store lock: a bookmark that takes the lock after
        // this sees the cut and sends nothing (see `watch::run_watch`).
        self.shared.faults.cut.send_modify(|g| *g += 1);
    }

    /// Stops listening and drops every connection (the API server is down: connections
    /// are refused) until [`resume`](Self::resume). The port stays bound meanwhile
    /// (a socket that does not listen), so nothing else can take it.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(r) = running {
            // Bind the placeholder before the listener closes: the port is never free.
            match server::hold_port(self.addr) {
                Ok(socket) => *lock(&self.held) = Some(socket),
                Err(e) => tracing::warn!(addr = %self.addr, error = %e,
                    "fake kube-apiserver: cannot hold the port while stopped; resume will bind it again"),
            }
            let _ = r.shutdown.send(true);
            let _ = r.task.await;
        }
        lock(&self.shared.store).drop_watchers();
        let mut counts = self.shared.watch_counts.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            counts.wait_for(|c| c.iter().all(|n| *n == 0)),
        )
        .await;
        tracing::info!(addr = %self.addr, "fake kube-apiserver stopped");
    }

    /// Listens again on the same address (on the socket that held it) after
    /// [`stop`](Self::stop).
    pub async fn resume(&self) -> anyhow::Result<()> {
        if lock(&self.running).is_some() {
            return Ok(());
        }
        let held = lock(&self.held).take();
        let listener = match held {
            Some(socket) => socket.listen(1024),
            None => server::bind(self.addr),
        }
        .with_context(|| format!("listening on {} again after stop", self.addr))?;
        let running = server::spawn_accept_loop(
            listener,
            self.shared.clone(),
            self.tls.as_ref().map(|t| t.acceptor.clone()),
        );
        *lock(&self.running) = Some(running);
        tracing::info!(addr = %self.addr, "fake kube-apiserver resumed");
        Ok(())
    }

    /// True unless stopped.
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Restarts like a real kube-apiserver: all connections dropped, briefly not
    /// listening, back on the same port with an empty watch cache and the
    /// resourceVersion advanced by 1, so resuming any earlier watch gets 410 and clients
    /// relist. Objects are kept (they live in etcd).
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.restart_with(RestartOptions::default()).await
    }

    /// [`restart`](Self::restart) with options.
    pub async fn restart_with(&self, opts: RestartOptions) -> anyhow::Result<()> {
        self.stop().await;
        {
            let mut store = lock(&self.shared.store);
            if opts.resource_version_jump > 0 {
                store.bump(opts.resource_version_jump);
            }
            if !opts.keep_history {
                store.compact();
            }
        }
        if !opts.down_for.is_zero() {
            tokio::time::sleep(opts.down_for).await;
        }
        self.resume().await
    }

    // ----- observation -----

    /// Every request received so far, in order (tokens are never recorded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Waits until a request matching `pred` has been received (including earlier
    /// ones) and returns the first such request.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> anyhow::Result<RecordedRequest> {
        let mut rx = self.shared.request_count.subscribe();
        let fut = async {
            loop {
                if let Some(r) = lock(&self.shared.requests).iter().find(|r| pred(r)) {
                    return r.clone();
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("no matching request within {timeout:?}"))
    }

    /// Number of open watch streams (both kinds).
    pub fn open_watches(&self) -> usize {
        self.shared.watch_counts.borrow().iter().sum()
    }

    /// Number of open watch streams of `kind`.
    pub fn open_watches_of(&self, kind: ResourceKind) -> usize {
        self.shared.watch_counts.borrow()[kind.index()]
    }

    /// Waits until at least `n` watches of `kind` are open. A watch counts as open once
    /// it is registered, so every change applied after this returns is delivered to it.
    pub async fn wait_for_watchers(
        &self,
        kind: ResourceKind,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for_watch_count(kind, |c| c >= n, timeout)
            .await
            .map_err(|e| anyhow!("waiting for {n} {} watch(es): {e}", kind.plural()))
    }

    /// Waits until the number of open watches of `kind` satisfies `pred` (e.g. `|n| n == 0`).
    pub async fn wait_for_watch_count(
        &self,
        kind: ResourceKind,
        pred: impl Fn(usize) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut rx = self.shared.watch_counts.subscribe();
        let i = kind.index();
        let res = tokio::time::timeout(timeout, async {
            rx.wait_for(|c| pred(c[i])).await.map(|_| ())
        })
        .await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(anyhow!("server gone")),
            Err(_) => Err(anyhow!(
                "timed out after {timeout:?} with {} open",
                self.open_watches_of(kind)
            )),
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.running).take() {
            let _ = r.shutdown.send(true);
            r.task.abort();
        }
        lock(&self.shared.store).drop_watchers();
    }
}
