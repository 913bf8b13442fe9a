//! Where the Admin API's writes are kept with `config_provider: yaml`: the
//! state file (`deployment.admin.state_file`), rewritten whole and
//! atomically on every write.
//!
//! Crash safety: the new content goes to a temporary file in the same
//! directory, which is flushed to disk (`fsync`), renamed over the state
//! file (atomic on POSIX file systems), and the directory is flushed so the
//! rename itself survives a power cut. A `kill -9` at any moment leaves
//! either the old file or the new one, never a torn one; a write is only
//! acknowledged after all of this.
//!
//! One process at a time: [`StateFile::load`] takes an exclusive advisory
//! lock on `<state_file>.lock` and keeps it for the life of the process, so
//! a second weir on the same file refuses to start instead of overwriting
//! the first one's acknowledged writes.
//!
//! With `config_provider: etcd` the store is etcd ([`crate::etcd`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_config::FieldErrors;

use crate::kind::Kind;
use crate::state::{AdminState, Entry, Resource};

/// The format tag at the top of the state file.
const FORMAT: &str = "weir-admin-state/1";

/// Where the Admin API's writes go.
#[derive(Debug)]
pub enum Store {
    /// No state file: the Admin API answers writes with an error, as
    /// APISIX's standalone mode.
    ReadOnly,
    /// `deployment.admin.state_file`.
    File(StateFile),
    /// `config_provider: etcd`.
    Etcd(std::sync::Arc<crate::etcd::EtcdSource>),
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("writing", "renaming to").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a state file weir wrote.
    #[error("{path}: not a weir Admin API state file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One stored resource does not decode (a newer weir wrote it, or the
    /// file was edited by hand).
    #[error("{path}: {key}: {errors}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The resource's key.
        key: String,
        /// What is wrong with it.
        errors: FieldErrors,
    },
    /// Another process holds the state file's lock.
    #[error("{path} is in use by another weir process (it holds the lock {lock}); two processes on one state file would overwrite each other's writes: stop the other one or give this one its own state_file")]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The blocking write task did not finish.
    #[error("the state file write did not complete: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    /// The open lock file, locked, once [`StateFile::load`] took it; held
    /// while any clone lives.
    lock: Arc<std::sync::OnceLock<std::fs::File>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    format: String,
    index: u64,
    entries: Vec<DiskEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskEntry {
    key: String,
    value: Value,
    #[serde(rename = "createdIndex")]
    created: u64,
    #[serde(rename = "modifiedIndex")]
    modified: u64,
}

impl StateFile {
    /// The state file at `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile {
            path: path.into(),
            lock: Arc::default(),
        }
    }

    /// `<state_file>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map_or_else(|| "state".into(), std::ffi::OsStr::to_os_string);
        name.push(".lock");
        self.dir().join(name)
    }

    /// Takes the exclusive lock on `<state_file>.lock` (once; it is kept).
    fn take_lock(&self) -> Result<(), StoreError> {
        if self.lock.get().is_some() {
            return Ok(());
        }
        let lock = self.lock_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| self.io("opening the lock file", &lock, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: self.path.clone(),
                    lock,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(self.io("locking", &lock, e));
            }
        }
        // A racing clone that locked first keeps its handle; ours closes.
        let _ = self.lock.set(file);
        Ok(())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
        self.dir().join(format!(".{name}.tmp"))
    }

    fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Reads the state (empty when the file does not exist yet). The
    /// directory must exist. A temporary file left by a write that was cut
    /// short is removed: its write was never acknowledged. Takes the lock
    /// first (see the module docs): fails when another process holds it.
    pub fn load(&self) -> Result<AdminState, StoreError> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Err(self.io(
                "opening the directory of",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        self.take_lock()?;
        let temp = self.temp_path();
        match std::fs::remove_file(&temp) {
            Ok(()) => {
                tracing::warn!(file = %temp.display(), "removed the temporary file of an unfinished Admin API write (it was never acknowledged)")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("removing", &temp, e)),
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AdminState::default()),
            Err(e) => return Err(self.io("reading", &self.path, e)),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if disk.format != FORMAT {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("format {:?}, expected {FORMAT:?}", disk.format),
            });
        }
        let mut state = AdminState {
            index: disk.index,
            ..AdminState::default()
        };
        for e in disk.entries {
            let entry_err = |errors: FieldErrors| StoreError::Entry {
                path: self.path.clone(),
                key: e.key.clone(),
                errors,
            };
            let Some((kind, owner, id)) = Kind::parse_key(&e.key) else {
                return Err(entry_err(FieldErrors(vec![weir_config::FieldError::new(
                    "",
                    "not a resource key",
                )])));
            };
            let resource = Resource::decode(kind, owner.as_deref(), &e.value).map_err(entry_err)?;
            state.index = state.index.max(e.modified);
            state.entries.insert(
                e.key.clone(),
                Arc::new(Entry {
                    kind,
                    owner,
                    id,
                    value: Arc::new(e.value),
                    resource: Arc::new(resource),
                    created: e.created,
                    modified: e.modified,
                }),
            );
        }
        Ok(state)
    }

    /// Replaces the file with `state`, atomically and durably (see the
    /// module docs). Blocking: run it off the async threads.
    pub fn save(&self, state: &AdminState) -> Result<(), StoreError> {
        let disk = OnDisk {
            format: FORMAT.to_owned(),
            index: state.index,
            entries: state
                .entries
                .iter()
                .map(|(key, e)| DiskEntry {
                    key: key.clone(),
                    value: (*e.value).clone(),
                    created: e.created,
                    modified: e.modified,
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&disk).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        let temp = self.temp_path();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // It holds consumer secrets and TLS private keys.
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options
            .open(&temp)
            .map_err(|e| self.io("creating", &temp, e))?;
        f.write_all(&bytes)
            .map_err(|e| self.io("writing", &temp, e))?;
        f.sync_all().map_err(|e| self.io("flushing", &temp, e))?;
        drop(f);
        std::fs::rename(&temp, &self.path).map_err(|e| self.io("renaming to", &self.path, e))?;
        let dir = self.dir();
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("flushing the directory", &dir, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: Kind, id: &str, value: Value, index: u64) -> Arc<Entry> {
        let resource = Resource::decode(kind, None, &value).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Entry {
            kind,
            owner: None,
            id: id.into(),
            value: Arc::new(value),
            resource: Arc::new(resource),
            created: index,
            modified: index,
        })
    }

    #[test]
    fn a_saved_state_loads_back_and_leftover_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("admin.json"));
        assert_eq!(file.load().unwrap().index, 0, "no file yet: empty");
        let mut state = AdminState {
            index: 7,
            ..AdminState::default()
        };
        let v =
            json!({"id": "u1", "nodes": {"127.0.0.1:80": 1}, "create_time": 1, "update_time": 2});
        state.entries.insert(
            "/apisix/upstreams/u1".into(),
            entry(Kind::Upstream, "u1", v.clone(), 7),
        );
        file.save(&state).unwrap();
        std::fs::write(file.temp_path(), b"{half").unwrap();
        let back = file.load().unwrap();
        assert_eq!(back.index, 7);
        assert_eq!(*back.entries["/apisix/upstreams/u1"].value, v);
        assert!(!file.temp_path().exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn one_holder_of_the_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateFile::new(dir.path().join("admin.json"));
        first.load().unwrap();
        let second = StateFile::new(dir.path().join("admin.json"));
        let e = second.load().unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("admin.json.lock") && msg.contains("another weir"),
            "{msg}"
        );
        first.load().unwrap();
        drop(first);
        second.load().unwrap();
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("admin.json"));
        std::fs::write(file.path(), b"routes: []").unwrap();
        assert!(matches!(file.load(), Err(StoreError::Corrupt { .. })));
        let missing = StateFile::new(dir.path().join("nope/admin.json"));
        assert!(matches!(missing.load(), Err(StoreError::Io { .. })));
    }
}
