//! The ConfigHub: the one place where the configuration served is put
//! together from its sources (the file, the Admin API's store), checked,
//! kept and handed to the engine. Writes and file reloads go through it one
//! at a time; reads (GETs) take the current [`View`] without waiting.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use weir_config::{Config, ConfigProvider, FieldErrors};

use crate::error::{AdminError, EngineError};
use crate::etcd::EtcdSource;
use crate::kind::Kind;
use crate::merge::{self, FileItem, Merged};
use crate::ops::{self, Write};
use crate::state::AdminState;
use crate::store::{StateFile, Store, StoreError};

/// What the hub needs from the data plane (implemented by the binary).
pub trait Engine: Send + Sync + 'static {
    /// A configuration compiled and ready to be swapped in.
    type Prepared: Send + 'static;
    /// Compiles `config` without applying it, with every check the engine
    /// makes (plugin configurations included). No side effect.
    fn prepare(&self, config: Config) -> Result<Self::Prepared, EngineError>;
    /// Swaps a prepared configuration in; open connections are untouched.
    fn install(&self, prepared: Self::Prepared) -> Result<(), EngineError>;
    /// The plugins weir has, highest priority first
    /// (`GET /apisix/admin/plugins/list`).
    fn plugin_names(&self) -> Vec<String>;
}

/// What is served right now, by source.
pub struct View {
    /// The configuration file (read-only to the Admin API).
    pub file: Arc<Config>,
    /// The file's resources by key, as the Admin API shows them.
    pub items: Arc<BTreeMap<String, FileItem>>,
    /// What the Admin API wrote.
    pub state: Arc<AdminState>,
    /// Admin API resources not served, with why.
    pub left_out: merge::LeftOut,
}

/// Why the hub could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state file could not be read.
    #[error("deployment.admin.state_file: {0}")]
    Store(#[from] StoreError),
    /// The etcd settings cannot be used (TLS files).
    #[error("{0}")]
    Etcd(String),
    /// The file and the state file both define an id.
    #[error("the configuration file and the Admin API's state file disagree:\n{0}")]
    Conflict(FieldErrors),
}

/// The sources of the configuration, merged.
pub struct ConfigHub {
    pub(crate) view: ArcSwap<View>,
    /// Serializes the changes of the view (writes, file reloads, etcd's
    /// change sets).
    pub(crate) writes: tokio::sync::Mutex<()>,
    /// With etcd: this replica's last write, checked and compiled, until
    /// its watch event comes back (see [`crate::etcd::own`]).
    pub(crate) own_write: std::sync::Mutex<Option<crate::etcd::own::OwnWrite>>,
    store: Store,
}

impl std::fmt::Debug for ConfigHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHub")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A write's answer.
#[derive(Debug)]
pub struct Written {
    /// 200 or 201.
    pub status: http::StatusCode,
    /// APISIX's body.
    pub body: Value,
}

pub(crate) fn log_left_out(before: &[(String, String)], now: &[(String, String)]) {
    for (key, why) in now {
        if !before.iter().any(|(k, _)| k == key) {
            tracing::warn!(key = %key, reason = %why, "Admin API resource not served: it refers to something that does not exist");
        }
    }
    for (key, _) in before {
        if !now.iter().any(|(k, _)| k == key) {
            tracing::info!(key = %key, "Admin API resource served again: what it refers to exists");
        }
    }
}

/// A PUT of plugin metadata must name a plugin weir has.
fn check_plugin_name<E: Engine>(engine: &E, w: &Write) -> Result<(), AdminError> {
    if w.kind == Kind::PluginMetadata && w.method == http::Method::PUT {
        let known =
            w.id.as_ref()
                .is_none_or(|name| engine.plugin_names().contains(name));
        if !known {
            return Err(AdminError::BadRequest("invalid plugin name".into()));
        }
    }
    Ok(())
}

impl ConfigHub {
    /// Opens the sources for the file's configuration `file`: reads the
    /// state file when `deployment.admin.state_file` is set. Returns the hub
    /// and the merged configuration to start with.
    pub fn open(file: Config) -> Result<(ConfigHub, Config), OpenError> {
        let store = match (
            file.deployment.role_traditional.config_provider,
            &file.deployment.admin.state_file,
        ) {
            (ConfigProvider::Etcd, _) => Store::Etcd(Arc::new(
                EtcdSource::new(&file.deployment.etcd).map_err(OpenError::Etcd)?,
            )),
            (ConfigProvider::Yaml, Some(path)) => Store::File(StateFile::new(path)),
            (ConfigProvider::Yaml, None) => Store::ReadOnly,
        };
        let state = match &store {
            Store::File(f) => f.load()?,
            // etcd is read by its sync task (`spawn_source`).
            Store::ReadOnly | Store::Etcd(_) => AdminState::default(),
        };
        if let Store::File(f) = &store {
            tracing::info!(file = %f.path().display(), resources = state.entries.len(), index = state.index, "Admin API state loaded");
        }
        let items = merge::file_items(&file);
        let merged = merge::merge(&file, &items, &state, None).map_err(OpenError::Conflict)?;
        log_left_out(&[], &merged.left_out);
        let view = View {
            file: Arc::new(file),
            items: Arc::new(items),
            state: Arc::new(state),
            left_out: merged.left_out,
        };
        let hub = ConfigHub {
            view: ArcSwap::from_pointee(view),
            writes: tokio::sync::Mutex::new(()),
            own_write: std::sync::Mutex::new(None),
            store,
        };
        Ok((hub, merged.config))
    }

    /// What is served now.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Whether the Admin API may write (a state file or etcd).
    pub fn is_writable(&self) -> bool {
        matches!(self.store, Store::File(_) | Store::Etcd(_))
    }

    /// The etcd source, with `config_provider: etcd`.
    pub fn etcd(&self) -> Option<&Arc<EtcdSource>> {
        match &self.store {
            Store::Etcd(src) => Some(src),
            _ => None,
        }
    }

    /// Starts keeping the hub in step with etcd (read, then watch), with
    /// `config_provider: etcd`; the task runs until aborted.
    pub fn spawn_source<E: Engine>(
        self: &Arc<Self>,
        engine: Arc<E>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let src = self.etcd()?.clone();
        Some(tokio::spawn(crate::etcd::sync::run(
            self.clone(),
            src,
            engine,
        )))
    }

    /// A new configuration file: merged with the Admin API's resources,
    /// compiled and swapped in. On error nothing changes.
    pub async fn replace_file<E: Engine>(
        &self,
        file: Config,
        engine: &E,
    ) -> Result<(), EngineError> {
        let _serial = self.writes.lock().await;
        let view = self.view.load_full();
        let items = merge::file_items(&file);
        let merged =
            merge::merge(&file, &items, &view.state, None).map_err(EngineError::Rejected)?;
        let prepared = engine.prepare(merged.config)?;
        engine.install(prepared)?;
        log_left_out(&view.left_out, &merged.left_out);
        self.view.store(Arc::new(View {
            file: Arc::new(file),
            items: Arc::new(items),
            state: view.state.clone(),
            left_out: merged.left_out,
        }));
        Ok(())
    }

    /// Merges `state` with the current file and checks the result as the
    /// file would be checked, then by the engine. Errors are described for
    /// the resource at `key`.
    pub(crate) fn check<E: Engine>(
        view: &View,
        state: &AdminState,
        key: &str,
        engine: &E,
    ) -> Result<(merge::LeftOut, E::Prepared), AdminError> {
        let invalid = |errors: &FieldErrors, places: &[merge::Place]| {
            AdminError::BadRequest(format!(
                "invalid configuration: {}",
                merge::describe(errors, places, key)
            ))
        };
        let started = std::time::Instant::now();
        let Merged {
            config,
            places,
            left_out,
        } = merge::merge(&view.file, &view.items, state, Some(key))
            .map_err(|e| invalid(&e, &[]))?;
        let merged = started.elapsed();
        weir_config::validate_config(&config, &weir_config::AnyPlugin)
            .map_err(|e| invalid(&e, &places))?;
        let validated = started.elapsed();
        let prepared = match engine.prepare(config) {
            Ok(p) => p,
            Err(EngineError::Rejected(e)) => return Err(invalid(&e, &places)),
            Err(e) => return Err(AdminError::Engine(e)),
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            key,
            merge_ms = ms(merged),
            validate_ms = ms(validated - merged),
            prepare_ms = ms(started.elapsed() - validated),
            "Admin API write checked"
        );
        Ok((left_out, prepared))
    }

    /// Applies an Admin API write: plan, merge, validate, persist, swap in
    /// (in that order, one write at a time). Answers after the change is on
    /// disk.
    pub async fn write<E: Engine>(&self, engine: &E, w: Write) -> Result<Written, AdminError> {
        self.write_with_ttl(engine, w, None).await
    }

    /// [`ConfigHub::write`] with APISIX's `?ttl=N`: the resource expires
    /// after `ttl` seconds (an etcd lease; refused with the state file).
    pub async fn write_with_ttl<E: Engine>(
        &self,
        engine: &E,
        w: Write,
        ttl: Option<u64>,
    ) -> Result<Written, AdminError> {
        let file = match &self.store {
            Store::File(file) => file,
            Store::Etcd(src) => {
                check_plugin_name(engine, &w)?;
                return crate::etcd::write::write(self, src, engine, w, ttl).await;
            }
            Store::ReadOnly => return Err(AdminError::BadRequest(
                "the Admin API is read-only: deployment.admin.state_file is not set (config_provider: yaml); set it to let the Admin API write".into(),
            )),
        };
        if ttl.is_some() {
            return Err(AdminError::BadRequest(
                "ttl is not supported with config_provider: yaml (the state file keeps resources until they are deleted); it needs config_provider: etcd".into(),
            ));
        }
        check_plugin_name(engine, &w)?;
        let _serial = self.writes.lock().await;
        let view = self.view.load_full();
        let plan = ops::plan(&view, w, ops::now())?;
        let (left_out, prepared) = Self::check(&view, &plan.state, &plan.key, engine)?;
        let state = Arc::new(plan.state);
        let saving = state.clone();
        let file = file.clone();
        tokio::task::spawn_blocking(move || file.save(&saving))
            .await
            .map_err(StoreError::from)??;
        // On disk: from here on the change stands, even if swapping fails.
        let installed = engine.install(prepared);
        log_left_out(&view.left_out, &left_out);
        self.view.store(Arc::new(View {
            file: view.file.clone(),
            items: view.items.clone(),
            state,
            left_out,
        }));
        if let Err(e) = installed {
            tracing::error!(key = %plan.key, "Admin API change saved but not applied: {e}");
            return Err(AdminError::Engine(e));
        }
        Ok(Written {
            status: plan.status,
            body: plan.body,
        })
    }

    /// `POST /apisix/admin/schema/validate/{kind}`: would `body` be accepted
    /// as a new resource of `kind`? Nothing is kept.
    pub fn validate<E: Engine>(
        &self,
        engine: &E,
        kind: Kind,
        body: Option<Value>,
    ) -> Result<(), AdminError> {
        let view = self.view.load_full();
        let Some(Value::Object(mut body)) = body else {
            return Err(AdminError::BadRequest(
                "invalid configuration: the body must be a JSON object".into(),
            ));
        };
        for f in crate::state::TIME_FIELDS {
            body.remove(f);
        }
        // Checked as a new resource among the current ones: under its own id
        // unless the file has that id (then under a placeholder), and a
        // credential under a placeholder consumer.
        const PLACEHOLDER: &str = "weir-schema-validate";
        let field = kind.id_field();
        let mut state = (*view.state).clone();
        let mut owner = None;
        if kind == Kind::Credential {
            owner = Some(PLACEHOLDER.to_owned());
            let consumer = serde_json::json!({"username": PLACEHOLDER});
            ops::insert_unchecked(&mut state, Kind::Consumer, None, PLACEHOLDER, consumer)?;
        }
        let given = body
            .get(field)
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .filter(|id| !view.items.contains_key(&kind.key(owner.as_deref(), id)));
        let id = given.unwrap_or_else(|| PLACEHOLDER.to_owned());
        let key = kind.key(owner.as_deref(), &id);
        if kind != Kind::PluginMetadata {
            body.insert(field.to_owned(), Value::String(id.clone()));
        }
        ops::insert_unchecked(&mut state, kind, owner, &id, Value::Object(body))?;
        Self::check(&view, &state, &key, engine).map(|_| ())
    }
}
