//! Live reload: the configuration file is watched, and SIGHUP re-reads it.
//! A valid new file is compiled beside the live one and swapped in; an
//! invalid one is rejected with every error logged, and the old one serves on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::gateway::GatewayCore;

/// Editors and `kubectl` ConfigMap updates write files in bursts (rename,
/// symlink swap); events closer together than this are one change.
const SETTLE: Duration = Duration::from_millis(100);

/// The SIGHUP stream, installed by the caller as early as possible.
#[cfg(unix)]
pub type Hangup = tokio::signal::unix::Signal;
/// No SIGHUP off Unix.
#[cfg(not(unix))]
pub type Hangup = ();

/// Watches `path` and reloads on change, and on SIGHUP when `hangup` is
/// given, until the task is aborted.
pub fn spawn(
    core: Arc<GatewayCore>,
    path: PathBuf,
    hangup: Option<Hangup>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let file_name = path.file_name().map(|n| n.to_os_string());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let notify_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        // Watch the directory (files are often replaced, not modified in
        // place), and react to our file or to Kubernetes' `..data` symlink swap.
        let relevant = event.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                Some(n.to_os_string()) == file_name || n.to_string_lossy() == "..data"
            })
        });
        if relevant {
            let _ = notify_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;

    #[cfg(unix)]
    if let Some(mut hup) = hangup {
        let hup_tx = tx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading configuration");
                if hup_tx.send(()).is_err() {
                    break;
                }
            }
        });
    }

    let path_str = path.to_string_lossy().into_owned();
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the notifications
        while rx.recv().await.is_some() {
            // Let the burst settle, then reload once.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            match core.reload_file(&path_str).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(file = %path_str, "reload rejected, previous configuration still serving:\n{e}")
                }
            }
        }
    }))
}
