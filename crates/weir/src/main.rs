//! The `weir` command: `run`, `validate`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weir::logging::{self, LogFormat};
use weir::Gateway;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "An API gateway for Kubernetes that routes straight to pods"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Log level or tracing filter (RUST_LOG overrides).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded default configuration without -c).
    Run {
        /// Configuration file (YAML or JSON); watched for changes.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and print every error with its field path.
    Validate {
        /// Configuration file (YAML or JSON).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("weir {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => validate(&config),
        Command::Run { config } => {
            logging::init(cli.log_format, &cli.log_level);
            run(config)
        }
    }
}

/// Loads a file and checks the files it names (CA bundles, certificates,
/// the access log), so `validate` refuses what `run` would.
fn load_checked(path: &std::path::Path) -> Result<weir_config::Config, weir_config::LoadError> {
    let origin = path.to_string_lossy();
    let config = weir_config::load_file(&origin)?;
    weir_config::check_files(&config).map_err(|errors| weir_config::LoadError::Invalid {
        origin: origin.into_owned(),
        errors,
    })?;
    Ok(config)
}

fn validate(path: &std::path::Path) -> ExitCode {
    let loaded = load_checked(path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            // Compiling has no side effect: it builds every plugin, so a
            // plugin's configuration errors show here too.
            let compiler = weir_proxy::snapshot::Compiler::new(std::sync::Arc::new(
                weir_discovery::registry::Registry::new(),
            ))
            .map_err(|e| format!("TLS client setup: {e}"))?;
            let config = std::sync::Arc::new(config);
            compiler.compile(config.clone()).map_err(|errors| {
                weir_config::LoadError::Invalid {
                    origin: path.to_string_lossy().into_owned(),
                    errors,
                }
                .to_string()
            })?;
            Ok(config)
        });
    match loaded {
        Ok(config) => {
            println!(
                "{}: ok ({} routes, {} upstreams, {} ssls{})",
                path.display(),
                config.routes.len(),
                config.upstreams.len(),
                config.ssls.len(),
                if config.discovery.is_some() {
                    ", discovery"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let loaded = match &path {
        Some(p) => load_checked(p),
        None => weir_config::load_default(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The control plane (control API, discovery, reloads) runs on this
    // thread; the data plane gets one single-threaded runtime per worker.
    let workers = config.gateway.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("weir-control")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, path, workers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: weir_config::Config,
    path: Option<PathBuf>,
    workers: usize,
) -> anyhow::Result<()> {
    // Signal handlers go in first: a signal that arrives while we start must
    // not take the default action (terminate) nor wait for readiness.
    let mut signals = Signals::install()?;
    let source = path.as_ref().map_or_else(
        || "embedded default".to_owned(),
        |p| p.display().to_string(),
    );
    let gateway = Gateway::start_with_workers(config, workers).await?;
    tracing::info!(config = %source, version = env!("CARGO_PKG_VERSION"), "weir started");
    let reloader = match path {
        Some(p) => Some(weir::reload::spawn(
            gateway.core.clone(),
            p,
            signals.hangup.take(),
        )?),
        None => None,
    };
    // deployment.etcd.startup_retry: etcd could not be read at start and
    // nothing else can be served.
    let etcd = gateway.core.hub.etcd().cloned();
    let gave_up = async {
        match &etcd {
            Some(src) => src.wait_gave_up().await,
            None => std::future::pending().await,
        }
    };
    let signal = tokio::select! {
        ready = gateway.wait_ready(Duration::from_secs(365 * 24 * 3600)) => {
            if ready {
                tracing::info!("ready");
            }
            signals.shutdown().await
        }
        s = signals.shutdown() => s,
        why = gave_up => {
            if let Some(r) = reloader {
                r.abort();
            }
            gateway.shutdown().await;
            anyhow::bail!("{why}");
        }
    };
    tracing::info!(signal, "shutting down");
    if let Some(r) = reloader {
        r.abort();
    }
    gateway.shutdown().await;
    Ok(())
}

/// The process signals weir reacts to.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    quit: tokio::signal::unix::Signal,
    /// SIGHUP, handed to the reloader.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))]
    hangup: Option<()>,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                quit: signal(SignalKind::quit())?,
                hangup: Some(signal(SignalKind::hangup())?),
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals { hangup: None })
        }
    }

    /// Waits for SIGTERM, SIGINT or SIGQUIT.
    async fn shutdown(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.quit.recv() => "SIGQUIT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
