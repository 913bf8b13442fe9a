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

/// Installs the global subscriber. `level` is a tracing filter
/// (`info`, `weir=debug,kube=warn`); `RUST_LOG` wins when set.
pub fn init(format: LogFormat, level: &str) {
    // kube-client logs every failed API request at ERROR; weir's discovery
    // reports the same failures itself, rate-limited, so a down API server
    // does not flood the log. A filter naming kube explicitly keeps its say.
    let directives = if level.contains("kube") {
        level.to_owned()
    } else {
        format!("{level},kube_client::client::builder=off")
    };
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
