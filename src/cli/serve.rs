//! `custos serve --config custos.toml`: the gRPC signer daemon.
//!
//! In order, and refusing to start (exit 1, one clear sentence) when a step fails:
//!
//! 1. load and validate the configuration; set up logging (human or JSON, on stderr);
//! 2. run the known-answer self-tests ([`crate::selftest`]) — derivation and both chains' signing,
//!    as HSM firmware does before it serves;
//! 3. open the signing core ([`SigningCore::open_with_engine`]): the key store (sealed), the state
//!    (sled in `state_dir`, or PostgreSQL per `[state]`: connected, its schema version checked)
//!    and the policy, validated and carrying the threshold of compliance signatures
//!    `[compliance]` requires (refused otherwise, naming who signed and how many are missing;
//!    `allow_unsigned_policy` is development mode, said in the log at every start and in the
//!    unseal audit record);
//! 4. with an `[hsm]` section: load the PKCS#11 module (a module that cannot be loaded, or a PIN
//!    that cannot be read, refuses the start) and attach the token, which may be absent for now
//!    (its wallets then answer UNAVAILABLE until it is back; the others sign);
//! 5. unseal: through the HSM slot when `[hsm] auto_unseal` is set and the token is there, else
//!    with a configured passphrase (`passphrase_file`, else `CUSTOS_PASSPHRASE`); otherwise start
//!    sealed, log why, keep the reason for `custos status`, and wait for `custos unseal`. While an
//!    auto-unseal is what failed, it is retried every [`AUTO_UNSEAL_RETRY`] until it succeeds or
//!    someone unseals or seals by hand;
//! 6. listen with mutual TLS (and metrics on their own port), and print
//!    `custos listening on ADDR (mutual TLS)` on stdout — with the real port when the configuration
//!    says port 0; with `[console]`, also serve the approval console on its loopback address
//!    (`approval console on http://ADDR/`).
//!
//! While it runs: pending requests past their expiry are expired every 30 s; SIGHUP reloads the
//! policy through the core as the host principal [`SIGHUP_PRINCIPAL`] (the core validates the new
//! file, keeps the old policy if it is invalid, and audits both hashes; the outcome is logged),
//! and reloads the revocation settings of `[tls]` (`crl_file`, `revoked_serials`,
//! `revoked_principals`) from the configuration file: a newly revoked certificate is refused at
//! its next handshake and at the next call of a connection already open; if the file or the CRL
//! is invalid, the revocation set in force stays and the error is logged.
//!
//! Options of `[bitcoin]` that weaken a check are logged (warning) at start and written into the
//! audit chain (`config.weakened`, as the host) each time the core becomes unsealed.
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

use crate::cli::common::{read_secret_file, take_secret_env, PASSPHRASE_ENV};
use crate::cli::state::StateLocation;
use crate::cli::{CliError, CliResult};
use crate::config::{Config, LogFormat};
use crate::secret::SecretString;
use crate::selftest::{self, KNOWN_ANSWERS};
use crate::service::trust::RevocationSummary;
use crate::service::{ClientTrust, TlsMaterial};
use crate::signing::contract::SignerCore;
use crate::signing::host::WEAKENED_EVENT;
use crate::signing::{now_unix, CoreConfig, SigningCore};

/// The principal a SIGHUP reload is made (and audited) as. Certificates cannot claim it: the edge
/// refuses client certificates naming a `local:` URI.
pub const SIGHUP_PRINCIPAL: &str = "local:sighup";

/// How often pending requests are checked for expiry.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// How often a failed auto-unseal is tried again while nothing else unsealed or sealed.
pub const AUTO_UNSEAL_RETRY: Duration = Duration::from_secs(5);

/// The start of the seal reason an auto-unseal failure leaves (see [`SigningCore::unseal_with_hsm`]).
const AUTO_UNSEAL_FAILED: &str = "auto-unseal through the hsm failed";

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
    let trust = ClientTrust::new(&tls.ca_pem, &config.tls.revocation())
        .map_err(|e| CliError::operational(format!("cannot load the client trust: {e}")))?;
    log_revocation(&trust.summary(), "loaded");
    let core = open_core(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?;
    let reload = Reload {
        config_path: args.config,
        trust: trust.clone(),
    };
    runtime.block_on(serve(config, tls, trust, Arc::new(core), reload))
}

/// What SIGHUP reloads besides the policy.
struct Reload {
    config_path: PathBuf,
    trust: Arc<ClientTrust>,
}

fn log_revocation(summary: &RevocationSummary, what: &str) {
    tracing::info!(
        crls = summary.crls,
        crl_entries = summary.crl_entries,
        serials = summary.serials,
        principals = summary.principals,
        "client certificate revocation {what}"
    );
}

/// Reads the configuration file again and puts its revocation settings in force; on any error
/// the set in force stays.
fn reload_revocation(reload: &Reload) {
    let revocation = match Config::load(&reload.config_path) {
        Ok(config) => config.tls.revocation(),
        Err(e) => {
            tracing::error!(error = %e, "revocation reload refused (configuration invalid); the revocation set in force stays");
            return;
        }
    };
    match reload.trust.reload(&revocation) {
        Ok(summary) => log_revocation(&summary, "reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "revocation reload refused; the revocation set in force stays")
        }
    }
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
    let location = StateLocation::of_config(config)?;
    let core_config = CoreConfig {
        policy_trust: trust,
        policy_signatures: config.policy_signatures(),
        authorization_max_age_secs: config.signing.authorization_max_age,
        unsafe_accept_state_rollback: config.signing.unsafe_accept_state_rollback,
        bitcoin: config.bitcoin.sign_options(),
        limits: config.limits.clone(),
        max_requests_in_flight: config.signing.max_requests_in_flight,
        ..CoreConfig::new(
            config.store_dir.clone(),
            config.state_dir.clone().unwrap_or_default(),
            config.policy_file.clone(),
        )
    };
    // sled: the core opens the directory itself, with the free-space guard and the reopen after
    // a storage failure (signing::storage); PostgreSQL keeps its data where it chooses.
    let core = match &location {
        StateLocation::Sled(_) => SigningCore::open(core_config),
        StateLocation::Postgres(_) => {
            SigningCore::open_with_engine(core_config, location.open_engine_for_serving()?)
        }
    }
    .map_err(|e| CliError::operational(format!("cannot open the signing core: {e}")))?;
    for weakening in core.bitcoin_options().weakenings() {
        tracing::warn!(
            option = weakening.option,
            value = %weakening.value,
            risk = weakening.risk,
            "a check is WEAKENED by the configuration (audited as {WEAKENED_EVENT} at each unseal)"
        );
    }
    core.set_share_timeout(config.share_unseal_timeout_secs);
    tracing::info!(
        store = %config.store_dir.display(),
        state = %location.describe(),
        policy = %core.policy_path().display(),
        "signing core open (sealed)"
    );
    let auto_unseal = attach_hsm(config, &core)?;
    if auto_unseal {
        match core.unseal_with_hsm() {
            Ok(state) => {
                tracing::info!(
                    seal_state = state.as_str(),
                    "unsealed at start through the hsm"
                );
                return Ok(core);
            }
            Err(e) => tracing::warn!(
                code = e.code(),
                error = %e,
                "auto-unseal through the hsm failed"
            ),
        }
    }
    match startup_passphrase(config)? {
        Some((passphrase, source)) => {
            tracing::info!(source, "unsealing the key store (argon2id)");
            let state = core.unseal_with_passphrase(&passphrase).map_err(|e| {
                CliError::operational(format!(
                    "cannot unseal with the passphrase from {source}: {e}"
                ))
            })?;
            tracing::info!(seal_state = state.as_str(), "unsealed at start");
        }
        None if auto_unseal => tracing::warn!(
            reason = core.seal_reason().unwrap_or_default(),
            "starting sealed: the hsm did not unseal the store and no passphrase is configured; \
             retrying every few seconds, or unseal with `custos unseal --config CLIENT.toml`"
        ),
        None => {
            core.set_seal_reason(
                "no passphrase or hsm auto-unseal configured: waiting for `custos unseal`",
            );
            tracing::info!(
                "no passphrase configured: starting sealed; unseal with `custos unseal --config CLIENT.toml` (the passphrase, or one Shamir share per custodian)"
            )
        }
    }
    Ok(core)
}

/// Loads the `[hsm]` module and attaches the token to the core; returns whether auto-unseal is
/// configured. A token absent now is logged, not fatal.
fn attach_hsm(config: &Config, core: &SigningCore) -> Result<bool, CliError> {
    let Some(hsm) = &config.hsm else {
        return Ok(false);
    };
    let backend = super::hsm::open_backend(hsm)?;
    let status = backend.status();
    if status.available {
        tracing::info!(token = %status.token, module = %status.module.display(), detail = %status.detail, "hsm token attached");
    } else {
        tracing::warn!(token = %status.token, module = %status.module.display(), reason = %status.detail, "hsm token not available: its wallets answer UNAVAILABLE until it is back");
    }
    core.attach_hsm(crate::signing::hsm::HsmAttachment {
        backend,
        wallets: hsm.wallets.clone(),
    })
    .map_err(|_| CliError::operational("the hsm was attached twice"))?;
    Ok(hsm.auto_unseal)
}

/// The unseal passphrase for an unattended start: `passphrase_file`, else `CUSTOS_PASSPHRASE`,
/// with where it came from (for the log; never the value).
///
/// `CUSTOS_PASSPHRASE` is taken out of the process environment in every case (even when a file
/// is configured and it goes unused), so that no child process inherits it and
/// `/proc/<pid>/environ` no longer shows it.
fn startup_passphrase(config: &Config) -> Result<Option<(SecretString, String)>, CliError> {
    let from_env = take_secret_env(PASSPHRASE_ENV)?;
    if let Some(path) = &config.passphrase_file {
        return Ok(Some((read_secret_file(path)?, path.display().to_string())));
    }
    Ok(from_env.map(|secret| (secret, PASSPHRASE_ENV.to_owned())))
}

async fn serve(
    config: Config,
    tls: TlsMaterial,
    trust: Arc<ClientTrust>,
    core: Arc<SigningCore>,
    reload: Reload,
) -> CliResult {
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
    let options = crate::service::ServerOptions {
        max_message_bytes: config.limits.grpc_message_bytes(),
    };
    tracing::info!(
        grpc_message_bytes = options.max_message_bytes,
        state_min_free_bytes = config.limits.state_min_free_bytes,
        "input limits"
    );
    let server = crate::service::start_with_trust(
        core.clone(),
        &tls,
        trust,
        listener,
        Some(metrics),
        options,
    )
    .await
    .map_err(CliError::operational)?;
    // Signal handlers first: a signal sent as soon as the line below appears is handled.
    let stop = shutdown_signal();
    let hangups = reload_on_sighup(core.clone(), reload);
    let tasks = [
        tokio::spawn(expire_periodically(core.clone())),
        tokio::spawn(retry_auto_unseal(core.clone())),
        tokio::spawn(audit_weakenings_when_unsealed(core.clone())),
        tokio::spawn(hangups),
    ];
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
    stop.await;
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

/// Writes the configuration's weakened options into the audit chain each time the core becomes
/// unsealed (at start when a passphrase is configured, else at the first `custos unseal`): the
/// audit key exists only while unsealed.
async fn audit_weakenings_when_unsealed(core: Arc<SigningCore>) {
    if core.bitcoin_options().weakenings().is_empty() {
        return;
    }
    let mut seal = core.seal_state();
    loop {
        if seal.wait_for(|s| s.is_unsealed()).await.is_err() {
            return;
        }
        match core.audit_weakened_options().await {
            Ok(n) => tracing::warn!(weakened = n, "weakened options recorded in the audit"),
            Err(e) => tracing::error!(error = %e, "cannot audit the weakened options"),
        }
        if seal.wait_for(|s| !s.is_unsealed()).await.is_err() {
            return;
        }
    }
}

/// Expires pending requests past their time and partial share unseals past theirs, and anchors
/// the audit head in the key store, every
/// [`EXPIRY_INTERVAL`].
async fn expire_periodically(core: Arc<SigningCore>) {
    let mut ticker = tokio::time::interval(EXPIRY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        core.expire_share_session(now_unix());
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

/// Tries the auto-unseal again every [`AUTO_UNSEAL_RETRY`] while it is what failed (the token was
/// absent or locked at start); stops once the core is unsealed or an operator sealed it.
async fn retry_auto_unseal(core: Arc<SigningCore>) {
    let mut ticker = tokio::time::interval(AUTO_UNSEAL_RETRY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let failed = core
            .seal_reason()
            .is_some_and(|r| r.starts_with(AUTO_UNSEAL_FAILED));
        if !failed {
            if core.seal_reason().is_none() {
                return;
            }
            continue;
        }
        let attempt = core.clone();
        match tokio::task::spawn_blocking(move || attempt.unseal_with_hsm()).await {
            Ok(Ok(_)) => {
                tracing::info!("unsealed through the hsm (retry)");
                return;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "auto-unseal retry failed"),
            Err(e) => tracing::error!(error = %e, "auto-unseal retry task failed"),
        }
    }
}

/// Reloads the revocation settings and the policy on every SIGHUP, logging the outcome. The
/// handler is installed when this is called, before the server says it listens (an early SIGHUP
/// would otherwise terminate the process).
#[cfg(unix)]
fn reload_on_sighup(
    core: Arc<SigningCore>,
    reload: Reload,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangups = signal(SignalKind::hangup());
    async move {
        let mut hangups = match hangups {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: policy reload only through Admin.ReloadPolicy");
                return;
            }
        };
        reload_loop(&mut hangups, &core, &reload).await;
    }
}

#[cfg(unix)]
async fn reload_loop(
    hangups: &mut tokio::signal::unix::Signal,
    core: &SigningCore,
    reload: &Reload,
) {
    while hangups.recv().await.is_some() {
        tracing::info!(config = %reload.config_path.display(), "SIGHUP: reloading the revocation settings");
        reload_revocation(reload);
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
fn reload_on_sighup(
    _core: Arc<SigningCore>,
    _reload: Reload,
) -> impl std::future::Future<Output = ()> {
    std::future::ready(())
}

/// Waits for SIGTERM or Ctrl-C. The handlers are installed when this is called (not when the
/// future is first polled), so a signal sent as soon as the server says it listens is caught.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let terminate = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = terminate => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
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
