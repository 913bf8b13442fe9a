//! Warm start: what weir keeps in `gateway.state_dir` so that it can serve
//! after a restart while its sources (the Kubernetes API server, later
//! etcd) are unreachable.
//!
//! - [`save_config`] / [`load_config`]: the last configuration the gateway
//!   installed (`config.json`). With the file provider the file stays
//!   authoritative at start; a provider whose source may be down at start
//!   (etcd) falls back to [`load_config`].
//! - [`write_atomic`]: every file here is written the same way: a temporary
//!   file in the same directory, flushed (`fsync`), renamed over the old
//!   one, then the directory flushed, so a crash at any moment leaves the
//!   old or the new version, never a torn one. Files are created `0600`:
//!   the configuration holds secrets, as the configuration file does.
//!
//! Discovery keeps its node sets beside it (`discovery/`, see the
//! `weir-discovery` crate).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::Config;

/// The saved configuration's file name inside the state directory.
pub const CONFIG_FILE: &str = "config.json";
/// Version of the saved files' layout.
pub const FORMAT_VERSION: u32 = 1;

/// Why a warm-start file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`writing`, `renaming to`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but does not hold a state weir can use.
    #[error("{path} is not a usable saved state: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WarmError + 'a {
    move |source| WarmError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Creates `dir` if needed and checks that a file can be written there, so
/// a wrong `gateway.state_dir` fails the start rather than every save.
pub fn prepare_dir(dir: &Path) -> Result<(), WarmError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let probe = dir.join(".weir-write-check");
    write_atomic(&probe, b"ok")?;
    std::fs::remove_file(&probe).map_err(io("removing", &probe))?;
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably (see the module
/// documentation). The parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WarmError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(&temp).map_err(io("creating", &temp))?;
    f.write_all(bytes).map_err(io("writing", &temp))?;
    f.sync_all().map_err(io("flushing", &temp))?;
    drop(f);
    std::fs::rename(&temp, path).map_err(io("renaming to", path))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flushing the directory", &dir))?;
    Ok(())
}

#[derive(Serialize)]
struct SavedConfigRef<'a> {
    version: u32,
    saved_unix: f64,
    config: &'a Config,
}

#[derive(Deserialize)]
struct SavedConfig {
    version: u32,
    saved_unix: f64,
    /// Decoded after its `deployment` block is dropped (see [`load_config`]).
    config: serde_json::Value,
}

/// A configuration read back by [`load_config`].
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration as it was installed. Validate it before use, as
    /// any configuration.
    pub config: Config,
    /// When it was saved, Unix seconds.
    pub saved_unix: f64,
}

/// Saves `config` as the last installed configuration in `dir`.
pub fn save_config(dir: &Path, config: &Config) -> Result<(), WarmError> {
    let path = dir.join(CONFIG_FILE);
    let saved = SavedConfigRef {
        version: FORMAT_VERSION,
        saved_unix: now_unix(),
        config,
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| WarmError::Invalid {
        path: path.clone(),
        message: format!("cannot encode the configuration: {e}"),
    })?;
    write_atomic(&path, &bytes)
}

/// The configuration last saved in `dir`; `Ok(None)` when there is none.
/// Its `deployment` block is the default one: the saved file has none that
/// decodes (its keys and passwords are never serialized), so a caller sets
/// its own.
pub fn load_config(dir: &Path) -> Result<Option<LoadedConfig>, WarmError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let saved: SavedConfig = serde_json::from_slice(&bytes).map_err(|e| WarmError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if saved.version != FORMAT_VERSION {
        return Err(WarmError::Invalid {
            path,
            message: format!(
                "format version {} (this weir reads {FORMAT_VERSION})",
                saved.version
            ),
        });
    }
    // The `deployment` block is not kept: its secrets (Admin API keys, the
    // etcd password) are never serialized, so it would not decode. The
    // caller supplies its own (the configuration file's).
    let mut config = saved.config;
    if let Some(fields) = config.as_object_mut() {
        fields.remove("deployment");
    }
    let config: Config = serde_json::from_value(config).map_err(|e| WarmError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(LoadedConfig {
        config,
        saved_unix: saved.saved_unix,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-warm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn config_round_trips_and_a_torn_file_is_refused() {
        let dir = temp_dir("cfg");
        prepare_dir(&dir).unwrap();
        assert!(load_config(&dir).unwrap().is_none());
        let config = crate::load_default().unwrap();
        save_config(&dir, &config).unwrap();
        let back = load_config(&dir).unwrap().unwrap();
        assert_eq!(back.config, config);
        assert!(back.saved_unix > 0.0);
        std::fs::write(dir.join(CONFIG_FILE), b"{\"version\":1,\"saved").unwrap();
        let err = load_config(&dir).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every node form survives the round trip (the map form was once
    /// written as a list of pairs, read back as `host: "ip:port"`), and a
    /// saved `deployment` block, whose keys are never serialized, is not
    /// needed to read the rest.
    #[test]
    fn node_forms_and_a_deployment_with_keys_round_trip() {
        let dir = temp_dir("nodes");
        prepare_dir(&dir).unwrap();
        let text = "routes:\n  - id: m\n    uri: /m\n    upstream: {type: roundrobin, nodes: {\"127.0.0.1:1980\": 2, \"127.0.0.1:1981\": 0}}\n  - id: l\n    uri: /l\n    upstream: {type: roundrobin, nodes: [{host: 127.0.0.1, port: 1982, weight: 3, priority: -1}]}\ndeployment:\n  admin:\n    admin_key: [{name: a, key: 0123456789abcdef0123456789abcdef, role: admin}]\n";
        let config = crate::load_str(text, "test").unwrap();
        save_config(&dir, &config).unwrap();
        let back = load_config(&dir).unwrap().unwrap();
        assert_eq!(back.config.routes, config.routes);
        crate::validate_config(&back.config, &crate::AnyPlugin).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("mode");
        prepare_dir(&dir).unwrap();
        let path = dir.join("x.json");
        write_atomic(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
