//! The PostgreSQL replica run of `custos bench signer` (`--state postgres --replicas N`): after
//! the sled run, the same kind of load (closed loop, or open loop with `--rate`) against N
//! replicas in this process — N signing cores, each with its own copy of the key store, its own
//! connection pool and its own gRPC server on 127.0.0.1, the clients spread over them — sharing
//! one PostgreSQL database: `--postgres-url` (password from `--postgres-password-file` or
//! `CUSTOS_STATE_PASSWORD`), or else a throwaway cluster started in the scratch directory. Either
//! way the run gets a fresh schema of its own.
//!
//! This module owns the replicas' key store copies (taken before any core opens the original:
//! a core's unseal anchors its state's audit head in the store, and a copy carrying the sled
//! state's anchor would refuse a fresh PostgreSQL state as a rollback), the database and its
//! schema, the replicas' lifetime, and the figures: signatures/s, latency, ratios to raw ECDSA
//! and to sled, and the engines' round trips per signature and per transaction and re-runs.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use tokio::net::TcpListener;

use super::bench_load::{self, Measured, Mode, Requests};
use super::common::with_spinner;
use super::pgdev::Cluster;
use super::sample::ScratchDir;
use super::{CliError, CliResult};
use crate::secret::SecretString;
use crate::service::TlsMaterial;
use crate::signing::{CoreConfig, SigningCore};
use crate::state::postgres::{PgEngine, PgSettings, PgStats};

fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// Which state engines to measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchState {
    /// sled only.
    #[default]
    Sled,
    /// sled, then PostgreSQL with `--replicas` replicas.
    Postgres,
}

/// The PostgreSQL options of `custos bench signer`.
#[derive(Debug, Args)]
pub struct PgArgs {
    /// `postgres`: also measure replicas sharing one PostgreSQL database (after sled).
    #[arg(long, value_enum, default_value_t = BenchState::Sled)]
    pub state: BenchState,
    /// With `--state postgres`: replicas in this process.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// With `--state postgres`: an existing database (no password in the URL; a fresh schema is
    /// created in it); default: a throwaway cluster started for the run.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// With `--postgres-url`: a file holding its password (else CUSTOS_STATE_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub postgres_password_file: Option<PathBuf>,
}

impl PgArgs {
    /// The replicas to run: none unless `--state postgres`. Refuses PostgreSQL options given
    /// without it (they would be ignored silently).
    pub fn replicas(&self) -> Result<usize, CliError> {
        match self.state {
            BenchState::Postgres => Ok(self.replicas.max(1)),
            BenchState::Sled => {
                if self.postgres_url.is_some() || self.postgres_password_file.is_some() {
                    return Err(CliError::usage(
                        "--postgres-url and --postgres-password-file need --state postgres",
                    ));
                }
                Ok(0)
            }
        }
    }
}

/// The key store copy of replica `i`.
fn replica_store(dir: &ScratchDir, i: usize) -> PathBuf {
    dir.join(format!("store-{i}"))
}

/// Copies the key store once per replica. Call it before any core opens the store.
pub fn copy_stores(dir: &ScratchDir, replicas: usize) -> CliResult {
    for i in 0..replicas {
        copy_dir(&dir.join("store"), &replica_store(dir, i))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> CliResult {
    std::fs::create_dir_all(to).map_err(op)?;
    for e in std::fs::read_dir(from).map_err(op)? {
        let e = e.map_err(op)?;
        let target = to.join(e.file_name());
        if e.file_type().map_err(op)?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target).map_err(op)?;
        }
    }
    Ok(())
}

/// The load both runs share: who connects, what is sent, how.
pub struct Load<'a> {
    /// The servers' TLS material.
    pub server_tls: &'a TlsMaterial,
    /// The clients' TLS material.
    pub client_tls: &'a TlsMaterial,
    /// Connections, spread over the replicas.
    pub clients: usize,
    /// The server's admission bound, per replica.
    pub max_in_flight: usize,
    /// Makes the requests.
    pub generator: Arc<Requests>,
    /// Warm-up requests (closed loop, not counted).
    pub warmup: Range<usize>,
    /// Measured requests.
    pub measured: Range<usize>,
    /// Closed or open loop.
    pub mode: Mode,
}

/// What the PostgreSQL run measured.
pub struct PgRun {
    /// Replicas that served.
    pub replicas: usize,
    /// Where the database was (never with a password).
    pub description: String,
    /// The schema the run made.
    pub schema: String,
    /// The load's figures.
    pub measured: Measured,
    /// The engines' counters over the measured requests, summed over the replicas.
    pub stats: PgStats,
}

/// The database settings: `--postgres-url`, or a throwaway cluster (returned, stopped when
/// dropped) in the scratch directory.
fn database(args: &PgArgs, dir: &ScratchDir) -> Result<(PgSettings, Option<Cluster>), CliError> {
    match &args.postgres_url {
        Some(url) => {
            let mut settings = PgSettings::new(url.clone());
            settings.password = match &args.postgres_password_file {
                Some(file) => Some(super::common::read_secret_file(file)?),
                None => std::env::var(crate::config::STATE_PASSWORD_ENV)
                    .ok()
                    .map(SecretString::new),
            };
            Ok((settings, None))
        }
        None => {
            let cluster = with_spinner("starting a throwaway PostgreSQL…", || {
                Cluster::start(&dir.join("postgres"))
            })
            .map_err(op)?;
            let settings = cluster.settings(None).map_err(op)?;
            Ok((settings, Some(cluster)))
        }
    }
}

/// Runs `load` against `replicas` cores over one database in a fresh schema; the store copies
/// must have been made by [`copy_stores`].
pub fn run(
    args: &PgArgs,
    replicas: usize,
    dir: &ScratchDir,
    passphrase: &SecretString,
    runtime: &tokio::runtime::Runtime,
    load: Load<'_>,
) -> Result<PgRun, CliError> {
    let (mut settings, cluster) = database(args, dir)?;
    let schema = format!("bench_{:08x}", rand::random::<u32>());
    settings.schema = Some(schema.clone());
    settings.pool_size = settings.pool_size.max(load.clients.div_ceil(replicas) + 2);
    PgEngine::migrate(&settings).map_err(op)?;
    let mut engines = Vec::with_capacity(replicas);
    let mut cores = Vec::with_capacity(replicas);
    for i in 0..replicas {
        let engine = Arc::new(PgEngine::open(&settings).map_err(op)?);
        let core = SigningCore::open_with_engine(
            CoreConfig {
                max_requests_in_flight: load.max_in_flight.max(1),
                ..CoreConfig::new(
                    replica_store(dir, i),
                    PathBuf::new(),
                    dir.join("policy.toml"),
                )
            },
            engine.clone(),
        )
        .map_err(op)?;
        with_spinner(&format!("unsealing replica {i} (argon2id)…"), || {
            core.unseal_with_passphrase(passphrase)
        })
        .map_err(op)?;
        engines.push(engine);
        cores.push(Arc::new(core));
    }
    let description = match &cluster {
        Some(c) => format!("throwaway cluster on 127.0.0.1:{}", c.port()),
        None => engines[0].description().to_owned(),
    };
    let (measured, stats) = runtime.block_on(serve_and_drive(&cores, &engines, load))?;
    drop(cores);
    drop(engines);
    drop(cluster);
    Ok(PgRun {
        replicas,
        description,
        schema,
        measured,
        stats,
    })
}

/// One gRPC server per core on 127.0.0.1, the connections spread over them; the warm-up, then
/// the measured requests, with the engines' counters taken around them.
async fn serve_and_drive(
    cores: &[Arc<SigningCore>],
    engines: &[Arc<PgEngine>],
    load: Load<'_>,
) -> Result<(Measured, PgStats), CliError> {
    let mut servers = Vec::with_capacity(cores.len());
    for core in cores {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
        servers.push(
            crate::service::start(core.clone(), load.server_tls, listener, None)
                .await
                .map_err(op)?,
        );
    }
    let result = async {
        let mut connections = Vec::with_capacity(load.clients);
        for n in 0..load.clients {
            let port = servers[n % servers.len()].addr.port();
            connections.extend(bench_load::connect(port, load.client_tls, 1).await?);
        }
        if !load.warmup.is_empty() {
            bench_load::run(
                connections.clone(),
                load.generator.clone(),
                load.warmup.clone(),
                Mode::Closed,
                None,
            )
            .await?;
        }
        let before: Vec<PgStats> = engines.iter().map(|e| e.stats()).collect();
        let measured = bench_load::run(
            connections,
            load.generator.clone(),
            load.measured.clone(),
            load.mode,
            None,
        )
        .await?;
        let mut stats = PgStats::default();
        for (engine, before) in engines.iter().zip(before) {
            let now = engine.stats();
            stats.transactions += now.transactions - before.transactions;
            stats.tx_round_trips += now.tx_round_trips - before.tx_round_trips;
            stats.round_trips += now.round_trips - before.round_trips;
            stats.retries += now.retries - before.retries;
        }
        Ok::<_, CliError>((measured, stats))
    }
    .await;
    for server in servers {
        server.shutdown().await.map_err(op)?;
    }
    result
}

/// Prints the PostgreSQL run's figures beside the sled run's (`sled_rate` signatures/s) and
/// the raw ECDSA rates (`raw_one` on one core, `raw_all` on every core).
pub fn report(run: &PgRun, open_loop: bool, sled_rate: f64, raw_one: f64, raw_all: f64) {
    let m = &run.measured;
    let rate = m.signed as f64 / m.wall.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "  postgres         {} replica(s) over one database ({}, schema {})",
        run.replicas, run.description, run.schema
    );
    println!(
        "  pg end to end    {rate:>9.0} signatures/s  ({} signed in {:.2} s; {} refused as overloaded)",
        m.signed,
        m.wall.as_secs_f64(),
        m.refused
    );
    super::bench_report::print_latency("pg latency      ", m, open_loop);
    let n = m.signed.max(1) as f64;
    let s = &run.stats;
    println!(
        "  pg round trips   {:.1} per signature ({:.1} in {:.1} transactions, {:.2} per transaction), {} re-runs",
        s.round_trips as f64 / n,
        s.tx_round_trips as f64 / n,
        s.transactions as f64 / n,
        s.tx_round_trips as f64 / s.transactions.max(1) as f64,
        s.retries,
    );
    println!(
        "  pg ratio         postgres / raw ECDSA on every core = {:.1}% (on one core: {:.1}%); postgres / sled = {:.1}%",
        100.0 * rate / raw_all,
        100.0 * rate / raw_one,
        100.0 * rate / sled_rate.max(f64::MIN_POSITIVE)
    );
}
