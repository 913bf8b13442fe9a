//! Keeps the last installed configuration in `gateway.state_dir` (warm
//! start): every install hands the configuration over without waiting; one
//! background task writes the latest one (a burst of changes coalesces into
//! one write), atomically, with [`weir_config::warm::save_config`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_config::Config;

/// The writer of `config.json` in the state directory.
pub struct ConfigSaver {
    latest: watch::Sender<Option<Arc<Config>>>,
    task: JoinHandle<()>,
}

impl ConfigSaver {
    /// Checks (and creates) `dir` and starts the writer on the current runtime.
    pub fn start(dir: PathBuf) -> anyhow::Result<ConfigSaver> {
        weir_config::warm::prepare_dir(&dir)
            .map_err(|e| anyhow::anyhow!("gateway.state_dir: {e}"))?;
        let (latest, mut rx) = watch::channel::<Option<Arc<Config>>>(None);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some(config) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let dir = dir.clone();
                let written = tokio::task::spawn_blocking(move || {
                    weir_config::warm::save_config(&dir, &config)
                })
                .await;
                match written {
                    Ok(Ok(())) => tracing::debug!("warm start: configuration saved"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "warm start: cannot save the configuration")
                    }
                    Err(e) => tracing::warn!(error = %e, "warm start: the save task failed"),
                }
            }
        });
        Ok(ConfigSaver { latest, task })
    }

    /// Queues `config` to be saved (the newest queued one wins).
    pub fn save(&self, config: Arc<Config>) {
        self.latest.send_replace(Some(config));
    }
}

impl Drop for ConfigSaver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
