//! Process logging: tracing to stderr, text or JSON.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Filter directives that quiet kube's own per-request error lines.
pub const KUBE_QUIET: &str = "kube_client::client::builder=off,kube_runtime::watcher=error";

/// Installs the global subscriber. `level` is a tracing filter
/// (`info`, `weir=debug,kube=warn`); `RUST_LOG` wins when set.
pub fn init(format: LogFormat, level: &str) {
    let directives = filter_directives(level);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The filter for `--log-level` `level`.
pub fn filter_directives(level: &str) -> String {
    // kube-client logs every failed API request at ERROR, and kube's
    // watcher every 403 at WARN (a freshly started API server answers 403
    // until its RBAC cache loads); weir's discovery reports the same
    // failures itself, rate-limited, so a down API server does not flood
    // the log. A filter naming kube explicitly keeps its say.
    if level.contains("kube") {
        level.to_owned()
    } else {
        format!("{level},{KUBE_QUIET}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// kube's per-request lines (the watcher's WARN on each 403, the
    /// client's ERROR on each failed request) are dropped; weir's own
    /// rate-limited discovery lines and kube's real errors stay.
    #[test]
    fn kube_per_request_lines_are_quieted() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter_directives("info")))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "kube_runtime::watcher", "watch list error with 403");
            tracing::error!(target: "kube_client::client::builder", "failed with status 403");
            tracing::error!(target: "kube_runtime::watcher", "a real bug");
            tracing::warn!(target: "weir_discovery::kubernetes::watch", "watch failed");
        });
        let out =
            String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert!(!out.contains("error with 403"), "{out}");
        assert!(!out.contains("failed with status"), "{out}");
        assert!(out.contains("a real bug"), "{out}");
        assert!(out.contains("watch failed"), "{out}");
        // A filter naming kube keeps kube's lines.
        assert!(!filter_directives("info,kube=debug").contains("off"));
    }
}
