//! `custos serve --config custos.toml`: the gRPC signer daemon.
//!
//! In order, and refusing to start (exit 1, one clear sentence) when a step fails:
//!
//! 1. load and validate the configuration; set up logging (human or JSON, on stderr);
//! 2. run the known-answer self-tests ([`crate::selftest`]) — derivation and both chains' signing,
//!    as HSM firmware does before it serves;
//! 3. open the signing core ([`SigningCore::open`]): the key store (sealed), the state database
//!    and the policy, validated and carrying the threshold of compliance signatures
//!    `[compliance]` requires (refused otherwise, naming who signed and how many are missing;
//!    `allow_unsigned_policy` is development mode, said in the log at every start and in the
//!    unseal audit record);
//! 4. unseal if a passphrase is configured (`passphrase_file`, else `CUSTOS_PASSPHRASE`);
//!    otherwise start sealed and wait for `custos unseal`;
//! 5. listen with mutual TLS (and metrics on their own port), and print
//!    `custos listening on ADDR (mutual TLS)` on stdout — with the real port when the configuration
//!    says port 0; with `[console]`, also serve the approval console on its loopback address
//!    (`approval console on http://ADDR/`).
//!
//! While it runs: pending requests past their expiry are expired every 30 s; SIGHUP reloads the
//! policy through the core as the host principal [`SIGHUP_PRINCIPAL`] (the core validates the new
//! file, keeps the old policy if it is invalid, and audits both hashes; the outcome is logged).
//! The core authorises a reload like any Admin call, so the policy decides whether a signal may
//! reload it: list `local:sighup` under `[roles] admin` (no certificate can claim a `local:` name,
//! so this grants nothing to network callers); otherwise use `Admin.ReloadPolicy`.
//!
//! SIGTERM or Ctrl-C stops it gracefully. No log line carries a secret: the passphrase is read
//! into a zeroizing type and never formatted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use crate::cli::common::{read_secret_file, PASSPHRASE_ENV};
use crate::cli::{CliError, CliResult};
use crate::config::{Config, LogFormat};
use crate::secret::SecretString;
use crate::selftest::{self, KNOWN_ANSWERS};
use crate::service::TlsMaterial;
use crate::signing::{now_unix, CoreConfig, SigningCore};

/// The principal a SIGHUP reload is made (and audited) as. Certificates cannot claim it: the edge
/// refuses client certificates naming a `local:` URI.
pub const SIGHUP_PRINCIPAL: &str = "local:sighup";

/// How often pending requests are checked for expiry.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

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
    run_self_tests()?;
    let tls = TlsMaterial::load(&config.tls.cert, &config.tls.key, &config.tls.client_ca)
        .map_err(CliError::operational)?;
    let core = open_core(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(config, tls, Arc::new(core)))
}

/// The known-answer self-tests: every result logged, an error if any failed.
fn run_self_tests() -> CliResult {
    let report = selftest::run(&KNOWN_ANSWERS);
    for check in &report.checks {
        match &check.outcome {
            Ok(()) => tracing::info!(check = check.name, "self-test passed"),
            Err(e) => tracing::error!(check = check.name, error = %e, "self-test FAILED"),
        }
    }
    if report.passed() {
        Ok(())
    } else {
        let failed: Vec<String> = report.failures().map(ToString::to_string).collect();
        Err(CliError::operational(format!(
            "known-answer self-test failed, refusing to serve:\n  {}",
            failed.join("\n  ")
        )))
    }
}

/// Opens the signing core and unseals it when a passphrase is configured.
fn open_core(config: &Config) -> Result<SigningCore, CliError> {
    let trust = config.policy_trust();
    if trust.is_development() {
        tracing::warn!(
            "DEVELOPMENT MODE: [compliance] allow_unsigned_policy = true — a policy takes effect \
             without compliance signatures; whoever can write the policy file decides what is signed"
        );
    }
    if config.signing.unsafe_accept_state_rollback {
        tracing::warn!(
            "[signing] unsafe_accept_state_rollback is on: a state database behind its anchor will be served (the unseal records it in the audit chain)"
        );
    }
    let core = SigningCore::open(CoreConfig {
        policy_trust: trust,
        policy_signatures: config.policy_signatures(),
        authorization_max_age_secs: config.signing.authorization_max_age,
        unsafe_accept_state_rollback: config.signing.unsafe_accept_state_rollback,
        ..CoreConfig::new(
            config.store_dir.clone(),
            config.state_dir.clone(),
            config.policy_file.clone(),
        )
    })
    .map_err(|e| CliError::operational(format!("cannot open the signing core: {e}")))?;
    tracing::info!(
        store = %config.store_dir.display(),
        state = %config.state_dir.display(),
        policy = %core.policy_path().display(),
        "signing core open (sealed)"
    );
    match startup_passphrase(config)? {
        Some((passphrase, source)) => {
            tracing::info!(source, "unsealing the key store (argon2id)");
            let state = core.unseal_with_passphrase(&passphrase).map_err(|e| {
                CliError::operational(format!("cannot unseal with the passphrase from {source}: {e}"))
            })?;
            tracing::info!(seal_state = state.as_str(), "unsealed at start");
        }
        None => tracing::info!(
            "no passphrase configured: starting sealed; unseal with `custos unseal --config CLIENT.toml`"
        ),
    }
    Ok(core)
}

/// The unseal passphrase for an unattended start: `passphrase_file`, else `CUSTOS_PASSPHRASE`,
/// with where it came from (for the log; never the value).
fn startup_passphrase(config: &Config) -> Result<Option<(SecretString, String)>, CliError> {
    if let Some(path) = &config.passphrase_file {
        return Ok(Some((read_secret_file(path)?, path.display().to_string())));
    }
    match std::env::var_os(PASSPHRASE_ENV) {
        Some(value) => {
            let text = value.into_string().map_err(|_| {
                CliError::usage(format!(
                    "the {PASSPHRASE_ENV} environment variable is not UTF-8"
                ))
            })?;
            Ok(Some((SecretString::new(text), PASSPHRASE_ENV.to_owned())))
        }
        None => Ok(None),
    }
}

async fn serve(config: Config, tls: TlsMaterial, core: Arc<SigningCore>) -> CliResult {
    // Listen for SIGHUP before anything is announced: a reload signal sent as soon as the
    // server says it listens must reload, never terminate the process (SIGHUP's default).
    let hangups = hangup_signals();
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
    let console = match &config.console {
        Some(c) => {
            let addr = *c.listen.get_ref();
            Some(TcpListener::bind(addr).await.map_err(|e| {
                CliError::operational(format!(
                    "cannot listen for the approval console on {addr}: {e}"
                ))
            })?)
        }
        None => None,
    };
    let server = crate::service::start(core.clone(), &tls, listener, Some(metrics))
        .await
        .map_err(CliError::operational)?;
    println!("custos listening on {} (mutual TLS)", server.addr);
    if let Some(addr) = server.metrics_addr {
        println!("metrics on http://{addr}/metrics");
    }
    let console = match console {
        Some(listener) => {
            let running = crate::service::console::start(core.clone(), listener)
                .map_err(CliError::operational)?;
            println!("approval console on http://{}/", running.addr);
            Some(running)
        }
        None => None,
    };
    let tasks = [
        tokio::spawn(expire_periodically(core.clone())),
        tokio::spawn(reload_on_sighup(core.clone(), hangups)),
    ];
    shutdown_signal().await;
    tracing::info!("shutting down");
    for task in &tasks {
        task.abort();
    }
    if let Some(console) = console {
        console.shutdown().await;
    }
    let stopped = server.shutdown().await.map_err(CliError::operational);
    // A clean shutdown anchors the final audit head in the key store (see state::anchor).
    let anchoring = core.clone();
    let _ = tokio::task::spawn_blocking(move || anchoring.anchor_now()).await;
    stopped
}

/// Expires pending requests past their time, and anchors the audit head in the key store, every
/// [`EXPIRY_INTERVAL`].
async fn expire_periodically(core: Arc<SigningCore>) {
    let mut ticker = tokio::time::interval(EXPIRY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let sweep = core.clone();
        match tokio::task::spawn_blocking(move || {
            let expired = sweep.expire_pending(now_unix());
            sweep.anchor_now();
            expired
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(expired = n, "expired pending requests"),
            Ok(Err(crate::signing::contract::CoreError::Sealed)) => {
                tracing::debug!("sealed: pending requests expire after the next unseal")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed"),
            Err(e) => tracing::error!(error = %e, "expiry sweep task failed"),
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

/// The SIGHUP stream (installed now, so the signal no longer terminates the process).
#[cfg(unix)]
fn hangup_signals() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: policy reload only through Admin.ReloadPolicy");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

/// Reloads the policy on every SIGHUP, logging the outcome.
#[cfg(unix)]
async fn reload_on_sighup(core: Arc<SigningCore>, hangups: Hangups) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!(policy = %core.policy_path().display(), "SIGHUP: reloading the policy");
        match core.reload_policy_from_host(SIGHUP_PRINCIPAL).await {
            Ok(reload) if reload.previous_hash == reload.hash => {
                tracing::info!(hash = %reload.hash, "policy reloaded (unchanged)")
            }
            Ok(reload) => tracing::info!(
                previous = %reload.previous_hash,
                hash = %reload.hash,
                "policy reloaded"
            ),
            Err(e) => tracing::error!(
                code = e.code(),
                error = %e,
                "policy reload refused; the running policy stays"
            ),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_core: Arc<SigningCore>, _hangups: Hangups) {}

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
