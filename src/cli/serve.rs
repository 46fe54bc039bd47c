//! `custos serve --config custos.toml`: the gRPC signer daemon.
//!
//! Loads and validates the configuration, sets up logging (human or JSON), starts the server with
//! mutual TLS and the metrics listener, prints the listening address, and shuts down gracefully on
//! SIGTERM or Ctrl-C. Until the signing pipeline is wired the server runs the
//! [`StandbyCore`]: sealed, answering status and health, signing nothing.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::net::TcpListener;

use crate::cli::{CliError, CliResult};
use crate::config::{Config, LogFormat};
use crate::service::{AccessMap, StandbyCore, TlsMaterial};

/// Arguments of `custos serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = "custos.toml")]
    pub config: PathBuf,
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> CliResult {
    let config = Config::load(&args.config).map_err(CliError::usage)?;
    init_logging(config.log_format);
    let tls = TlsMaterial::load(&config.tls.cert, &config.tls.key, &config.tls.client_ca)
        .map_err(CliError::operational)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(config, tls))
}

async fn serve(config: Config, tls: TlsMaterial) -> CliResult {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| CliError::operational(format!("cannot listen on {}: {e}", config.listen)))?;
    let metrics = TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|e| {
            CliError::operational(format!(
                "cannot listen for metrics on {}: {e}",
                config.metrics_listen
            ))
        })?;
    // The policy engine will grant privileges from the policy's roles; until it is wired, no
    // principal holds one, so only health, reflection and Signer calls (refused while sealed) work.
    tracing::warn!(
        policy = %config.policy_file.display(),
        "signing pipeline not wired yet: serving in standby (sealed, no privileged principals)"
    );
    let core = Arc::new(StandbyCore::new(AccessMap::new()));
    let server = crate::service::start(core, &tls, listener, Some(metrics))
        .await
        .map_err(CliError::operational)?;
    println!("custos listening on {} (mutual TLS)", server.addr);
    if let Some(addr) = server.metrics_addr {
        println!("metrics on http://{addr}/metrics");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await.map_err(CliError::operational)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
