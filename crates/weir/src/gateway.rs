//! A running gateway: data plane, control API, discovery, and live reload.
//!
//! Tests start it in-process with [`Gateway::start`] on port 0 listeners and
//! read back the bound addresses; the binary does the same from `main`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use weir_admin::{AdminServer, ConfigHub, EngineError};
use weir_config::{Config, FieldErrors};
use weir_discovery::{KubernetesDiscovery, Registry};
use weir_proxy::access_log::AccessLog;
use weir_proxy::server::{self, ProxyServer};
use weir_proxy::snapshot::{Compiler, ProxyState};
use weir_proxy::workers::Workers;

use crate::control::ControlServer;

/// Shared gateway state, seen by the control API and the reloader.
pub struct GatewayCore {
    /// The data plane's live state.
    pub proxy: Arc<ProxyState>,
    /// Discovery registry.
    pub registry: Arc<Registry>,
    /// The configuration currently served (the file's resources merged with
    /// the Admin API's).
    pub config: ArcSwap<Config>,
    /// The configuration's sources: the file and the Admin API's store.
    /// Every change goes through it.
    pub hub: Arc<ConfigHub>,
    compiler: Compiler,
    discovery: Mutex<Option<Arc<KubernetesDiscovery>>>,
    shutting_down: AtomicBool,
    /// Latched once every discovery source has synced: a later discovery
    /// restart (reload) keeps serving the last known nodes, so it must not
    /// take every replica out of its Service at once.
    synced_once: AtomicBool,
    reloads: tokio::sync::watch::Sender<ReloadStatus>,
    /// Warm start (`gateway.state_dir`): keeps the installed configuration.
    warm: Option<crate::warm::ConfigSaver>,
    /// With etcd: the configuration saved in `gateway.state_dir` was loaded
    /// at start and serves (marked stale) until etcd is read, so the
    /// gateway is ready without etcd.
    warm_started: bool,
}

/// The outcome of the latest reload attempt (shown by the control API).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Reload attempts so far (accepted or not).
    pub attempts: u64,
    /// Accepted reloads so far.
    pub applied: u64,
    /// Why the last attempt was rejected, if it was.
    pub last_error: Option<String>,
}

/// Why a reload was refused; the old configuration keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration did not load or validate.
    #[error("{0}")]
    Load(#[from] weir_config::LoadError),
    /// It validated but could not be compiled (e.g. certificate files).
    #[error("configuration rejected:\n{0}")]
    Compile(FieldErrors),
    /// Discovery could not start with the new settings.
    #[error("discovery: {0:#}")]
    Discovery(anyhow::Error),
}

impl GatewayCore {
    /// True once the configuration is loaded and every discovery source has
    /// synced, until shutdown begins. Latched: a discovery restart by a later
    /// reload serves the last known nodes meanwhile and stays ready.
    pub fn is_ready(&self) -> bool {
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        if !self.warm_started && self.hub.etcd().is_some_and(|s| !s.is_synced()) {
            return false;
        }
        if self.synced_once.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.discovery_guard().as_ref().is_none_or(|d| d.is_ready());
        if ready {
            self.synced_once.store(true, Ordering::Release);
        }
        ready
    }

    /// Why the gateway is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.warm_started && self.hub.etcd().is_some_and(|s| !s.is_synced()) {
            Some("etcd (deployment.etcd) has not been read yet (and no warm-start configuration was loaded)")
        } else if !self.is_ready() {
            Some("discovery has not finished its initial sync (and no warm-start state was loaded)")
        } else {
            None
        }
    }

    /// The discovery dump, when Kubernetes discovery is configured.
    pub fn discovery_dump(&self) -> Option<serde_json::Value> {
        self.discovery_guard().as_ref().map(|d| d.dump())
    }

    fn discovery_guard(&self) -> std::sync::MutexGuard<'_, Option<Arc<KubernetesDiscovery>>> {
        match self.discovery.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Subscribes to reload outcomes.
    pub fn reload_status(&self) -> tokio::sync::watch::Receiver<ReloadStatus> {
        self.reloads.subscribe()
    }

    fn record_reload(&self, result: &Result<(), ReloadError>) {
        self.reloads.send_modify(|s| {
            s.attempts += 1;
            match result {
                Ok(()) => {
                    s.applied += 1;
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
    }

    /// Applies a new configuration file: merged with the Admin API's
    /// resources, compiled beside the live configuration and swapped in.
    /// In-flight requests and open connections are untouched. On error
    /// nothing changes.
    pub async fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let result = self
            .hub
            .replace_file(config, self)
            .await
            .map_err(|e| match e {
                EngineError::Rejected(errors) => ReloadError::Compile(errors),
                EngineError::Failed(e) => ReloadError::Discovery(anyhow::Error::from_boxed(e)),
            });
        self.record_reload(&result);
        if result.is_ok() {
            tracing::info!("configuration reloaded");
        }
        result
    }

    /// Compiles `config`; nothing starts and nothing is swapped.
    fn prepare(&self, config: Config) -> Result<Prepared, ReloadError> {
        let old = self.config.load_full();
        if old.gateway.listeners != config.gateway.listeners
            || old.gateway.control != config.gateway.control
            || old.gateway.access_log != config.gateway.access_log
            || old.gateway.workers != config.gateway.workers
            || old.gateway.busy_poll_us != config.gateway.busy_poll_us
            || old.gateway.http != config.gateway.http
            || old.gateway.state_dir != config.gateway.state_dir
        {
            tracing::warn!("changes to gateway.listeners, control, access_log, http, workers, busy_poll_us or state_dir take effect after a restart");
        }
        let (a, b) = (&old.deployment, &config.deployment);
        if a.admin.admin_listen != b.admin.admin_listen
            || a.admin.state_file != b.admin.state_file
            || a.role_traditional != b.role_traditional
            || a.admin.admin_key.is_empty() != b.admin.admin_key.is_empty()
            || a.etcd != b.etcd
        {
            tracing::warn!("changes to deployment.admin.admin_listen, state_file, config_provider, etcd, or adding the first / removing the last admin_key, take effect after a restart");
        }
        let config = Arc::new(config);
        // Incremental: what the live snapshot built from unchanged inputs
        // is reused (weir_proxy's `reuse` module).
        let live = self.proxy.snapshot.load();
        let snapshot = self
            .compiler
            .compile_from(config.clone(), Some(&live))
            .map_err(ReloadError::Compile)?;
        Ok(Prepared { config, snapshot })
    }

    /// Swaps a compiled configuration in, restarting discovery first if its
    /// settings changed.
    fn install(&self, prepared: Prepared) -> Result<(), ReloadError> {
        let Prepared { config, snapshot } = prepared;
        let old = self.config.load_full();
        let discovery_changed = old.discovery != config.discovery;
        let new_discovery = if discovery_changed {
            start_discovery(&config, &self.registry).map_err(ReloadError::Discovery)?
        } else {
            None
        };
        if discovery_changed {
            // Latch "synced once" from the discovery being replaced: its
            // sync must count even if nobody asked for readiness yet, or
            // the new watchers' first sync would turn readiness 503.
            let _ = self.is_ready();
            let mut slot = self.discovery_guard();
            if let Some(old) = slot.take() {
                old.shutdown();
            }
            if new_discovery.is_none() {
                self.registry.unconfigure();
            }
            *slot = new_discovery;
        }
        snapshot.start_health_checks();
        self.proxy.swap(snapshot);
        if let Some(w) = &self.warm {
            w.save(config.clone());
        }
        self.config.store(config);
        Ok(())
    }

    /// Loads, validates and applies a configuration file.
    pub async fn reload_file(&self, path: &str) -> Result<(), ReloadError> {
        let text =
            tokio::fs::read_to_string(path)
                .await
                .map_err(|source| weir_config::LoadError::Io {
                    path: path.to_owned(),
                    source,
                })?;
        match weir_config::load_str(&text, path) {
            Ok(config) => self.reload(config).await,
            Err(e) => {
                let result = Err(ReloadError::Load(e));
                self.record_reload(&result);
                result
            }
        }
    }
}

/// A configuration compiled by [`GatewayCore`], not yet live.
pub struct Prepared {
    config: Arc<Config>,
    snapshot: weir_proxy::snapshot::Snapshot,
}

fn engine_error(e: ReloadError) -> EngineError {
    match e {
        ReloadError::Compile(errors) => EngineError::Rejected(errors),
        other => EngineError::Failed(Box::new(other)),
    }
}

/// The data plane as the configuration hub sees it: compile, then swap.
impl weir_admin::Engine for GatewayCore {
    type Prepared = Prepared;

    fn prepare(&self, config: Config) -> Result<Prepared, EngineError> {
        GatewayCore::prepare(self, config).map_err(engine_error)
    }

    fn install(&self, prepared: Prepared) -> Result<(), EngineError> {
        GatewayCore::install(self, prepared).map_err(engine_error)
    }

    fn plugin_names(&self) -> Vec<String> {
        let mut specs: Vec<_> = weir_plugins::CATALOGUE.to_vec();
        specs.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        specs.into_iter().map(|s| s.name.to_owned()).collect()
    }
}

fn start_discovery(
    config: &Config,
    registry: &Arc<Registry>,
) -> anyhow::Result<Option<Arc<KubernetesDiscovery>>> {
    let Some(k8s) = config
        .discovery
        .as_ref()
        .and_then(|d| d.kubernetes.as_ref())
    else {
        return Ok(None);
    };
    let clusters =
        weir_config::discovery_resolve::resolve(k8s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let multi = matches!(k8s, weir_config::discovery::KubernetesDiscovery::Multi(_));
    let options = weir_discovery::WatchOptions {
        state_dir: config.gateway.state_dir.as_ref().map(Into::into),
        ..Default::default()
    };
    let d = KubernetesDiscovery::start_with(clusters, registry.clone(), multi, options)?;
    Ok(Some(Arc::new(d)))
}

/// Starts the Admin API when keys are configured; there is no default key.
async fn start_admin(
    config: &Config,
    hub: Arc<ConfigHub>,
    core: Arc<GatewayCore>,
) -> anyhow::Result<Option<AdminServer>> {
    let admin = &config.deployment.admin;
    if admin.admin_key.is_empty() {
        tracing::info!("Admin API not started: deployment.admin.admin_key lists no key (weir has no default key)");
        return Ok(None);
    }
    let server = AdminServer::start(&admin.admin_listen.address(), hub, core).await?;
    Ok(Some(server))
}

/// With `config_provider: etcd` and `gateway.state_dir`: the configuration
/// installed last (saved in the state directory), with the file's own
/// `gateway`, `deployment` and `discovery` settings, if one was saved and
/// it still validates. Anything unusable is logged and skipped.
fn warm_etcd_config(dir: &std::path::Path, file: &Config) -> Option<(Config, f64)> {
    let saved = match weir_config::warm::load_config(dir) {
        Ok(Some(saved)) => saved,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "warm start: the saved configuration cannot be read; waiting for etcd");
            return None;
        }
    };
    let mut config = saved.config;
    config.gateway = file.gateway.clone();
    config.deployment = file.deployment.clone();
    config.discovery = file.discovery.clone();
    if let Err(e) = weir_config::validate_config(&config, &weir_config::AnyPlugin) {
        tracing::warn!(error = %e, "warm start: the saved configuration no longer validates; waiting for etcd");
        return None;
    }
    Some((config, saved.saved_unix))
}

/// A started gateway.
pub struct Gateway {
    /// Shared state.
    pub core: Arc<GatewayCore>,
    server: ProxyServer,
    control: Option<ControlServer>,
    admin: Option<AdminServer>,
    workers: Option<Workers>,
    /// Keeps the configuration in step with etcd (`config_provider: etcd`).
    source: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds every listener, starts discovery, and serves everything on the
    /// current tokio runtime (what in-process tests use).
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        Self::start_inner(config, None).await
    }

    /// Like [`Gateway::start`], but the data plane runs on `workers`
    /// dedicated threads, one single-threaded runtime each with its own
    /// `SO_REUSEPORT` listener socket (what the `weir` binary uses). The
    /// current runtime keeps the control API, discovery and reloads.
    pub async fn start_with_workers(config: Config, workers: usize) -> anyhow::Result<Gateway> {
        Self::start_inner(config, Some(workers)).await
    }

    async fn start_inner(config: Config, workers: Option<usize>) -> anyhow::Result<Gateway> {
        // Workers first: per-worker connection pools are sized when nodes
        // are compiled.
        let workers = match workers {
            Some(n) => {
                let busy_poll = (config.gateway.busy_poll_us > 0).then(|| {
                    std::time::Duration::from_micros(u64::from(config.gateway.busy_poll_us))
                });
                Some(Workers::start(n, busy_poll).context("starting data-plane workers")?)
            }
            None => None,
        };
        let registry = Arc::new(Registry::new());
        let compiler = Compiler::new(registry.clone()).context("TLS client setup")?;
        // The file's configuration, merged with what the Admin API wrote.
        let (hub, config) = ConfigHub::open(config)?;
        let hub = Arc::new(hub);
        // With etcd and a state directory, the configuration installed last
        // serves until etcd is read (etcd may be down at start).
        let file_config = config.clone();
        let warm_config = match (hub.etcd(), config.gateway.state_dir.as_deref()) {
            (Some(_), Some(dir)) => warm_etcd_config(std::path::Path::new(dir), &config),
            _ => None,
        };
        let (config, warm_saved_unix) = match warm_config {
            Some((c, at)) => (c, Some(at)),
            None => (config, None),
        };
        let warm = match &config.gateway.state_dir {
            Some(dir) => Some(crate::warm::ConfigSaver::start(dir.into())?),
            None => None,
        };
        let discovery = start_discovery(&config, &registry)?;
        let mut config = Arc::new(config);
        let mut warm_started = warm_saved_unix.is_some();
        let snapshot = match compiler.compile(config.clone()) {
            Err(e) if warm_started => {
                tracing::warn!(error = %e, "warm start: the saved configuration does not compile; starting from the configuration file until etcd is read");
                warm_started = false;
                config = Arc::new(file_config);
                compiler.compile(config.clone())
            }
            compiled => compiled,
        }
        .map_err(|e| anyhow::anyhow!("configuration rejected:\n{e}"))?;
        if let (true, Some(src), Some(at)) = (warm_started, hub.etcd(), warm_saved_unix) {
            let why = format!("warm start: serving the configuration saved at {at:.0} (Unix seconds) in gateway.state_dir until etcd is read");
            tracing::info!("{why}");
            src.mark_stale(why);
        }
        snapshot.start_health_checks();
        let access_log = AccessLog::start(&config.gateway.access_log)
            .with_context(|| format!("opening access log {:?}", config.gateway.access_log.path))?;
        let proxy = Arc::new(ProxyState::new(snapshot, access_log));
        let copies = workers.as_ref().map_or(1, |w| w.handles().len());
        let bound = server::bind(&config.gateway.listeners, copies)?;
        let core = Arc::new(GatewayCore {
            proxy: proxy.clone(),
            registry,
            config: ArcSwap::new(config.clone()),
            hub: hub.clone(),
            compiler,
            discovery: Mutex::new(discovery),
            shutting_down: AtomicBool::new(false),
            synced_once: AtomicBool::new(false),
            reloads: tokio::sync::watch::channel(ReloadStatus::default()).0,
            warm,
            warm_started,
        });
        // With etcd, what is installed before etcd is read is not worth
        // saving (the file alone, or the warm state itself).
        if let (Some(w), None) = (&core.warm, core.hub.etcd()) {
            w.save(config.clone());
        }
        let control = if config.gateway.control.enabled {
            Some(ControlServer::start(&config.gateway.control.address, core.clone()).await?)
        } else {
            None
        };
        let source = hub.spawn_source(core.clone());
        let admin = match start_admin(&config, hub, core.clone()).await {
            Ok(a) => a,
            Err(e) => {
                if let Some(s) = &source {
                    s.abort();
                }
                return Err(e);
            }
        };
        let handles = workers.as_ref().map_or(&[][..], |w| w.handles());
        let server = ProxyServer::start(proxy, bound, &config.gateway.http, handles)?;
        Ok(Gateway {
            core,
            server,
            control,
            admin,
            workers,
            source,
        })
    }

    /// Proxy listener addresses, in configuration order.
    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.server.local_addrs
    }

    /// The first proxy listener address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.server.local_addrs[0]
    }

    /// The control API address, when enabled.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|c| c.local_addr)
    }

    /// The Admin API address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr)
    }

    /// Waits until the gateway reports ready (etcd read, discovery synced),
    /// up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let started = tokio::time::Instant::now();
        if let Some(src) = self.core.hub.etcd() {
            if !src.wait_synced(timeout).await {
                return false;
            }
        }
        let timeout = timeout.saturating_sub(started.elapsed());
        let discovery = self.core.discovery_guard().clone();
        match discovery {
            None => true,
            Some(d) => d.wait_ready(timeout).await,
        }
    }

    /// Graceful shutdown: readiness turns 503 at once; serving continues for
    /// `drain_delay`; then listeners close, keep-alive connections get
    /// `Connection: close`, h2 connections GOAWAY, and in-flight requests get
    /// up to `timeout` to finish.
    pub async fn shutdown(self) {
        let config = self.core.config.load_full();
        self.core.shutting_down.store(true, Ordering::Release);
        let drain = Duration::from_secs_f64(config.gateway.shutdown.drain_delay);
        if !drain.is_zero() {
            tracing::info!(
                ?drain,
                "shutdown: readiness is failing; still serving during drain delay"
            );
            tokio::time::sleep(drain).await;
        }
        self.core.proxy.start_draining();
        let timeout = Duration::from_secs_f64(config.gateway.shutdown.timeout);
        let left = self.server.shutdown(timeout).await;
        if let Some(w) = self.workers {
            // Off the async context: joining threads blocks.
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
        }
        let proxy = self.core.proxy.clone();
        let _ = tokio::task::spawn_blocking(move || proxy.access_log.close()).await;
        if let Some(c) = self.control {
            c.stop();
        }
        if let Some(a) = self.admin {
            a.stop();
        }
        if let Some(s) = self.source {
            s.abort();
        }
        if let Some(d) = self.core.discovery_guard().take() {
            d.shutdown();
        }
        tracing::info!(unfinished_connections = left, "shutdown complete");
    }
}
