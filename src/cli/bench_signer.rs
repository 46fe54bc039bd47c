//! `custos bench signer`: end-to-end signatures per second through the gRPC signer, next to the raw
//! signing rate of the key backend measured in the same run.
//!
//! A throwaway environment (removed at the end): a development CA and certificates, a key store
//! sealed with the real argon2id parameters (a new random mnemonic: nothing to protect, nothing to
//! fund), a regtest and a Sepolia wallet, and a policy written for the benchmark that allows
//! everything for the benchmark's client principal, without limits. The server runs in-process on
//! 127.0.0.1:0 with durable writes exactly as in production (every answer waits for the group
//! commit's flush). `--clients` mutual-TLS connections, each sending its share of `--requests`
//! one after another: alternately an EIP-1559 transfer (distinct nonces) and a one-input P2WPKH
//! PSBT (distinct coins), every request id distinct.
//!
//! Reported: signatures per second and p50/p99 latency as clients see them, the group commit's
//! flushes, and the key backend alone (`sign_ecdsa` with low-R grinding as Bitcoin uses it,
//! `sign_ecdsa_recoverable` as Ethereum does, over fixed digests) on one thread and on every core,
//! with the ratio of the end-to-end rate to the backend's.
//!
//! `--backend pkcs11` runs the same requests twice in the same run — once with the keys in
//! software, once with both wallets' keys in a SoftHSM2 token (made in the throwaway directory;
//! see [`super::bench_signer_hsm`]) — and reports both end-to-end rates, their ratio, the token's
//! raw signing rate through the backend, and the raw libsecp256k1 rate (no derivation, no
//! backend) as the ceiling of either.
//! `--state postgres --replicas N` runs the same requests a second time against N replicas in
//! this process — N signing cores, each with its own copy of the key store, its own connection
//! pool and its own gRPC server on 127.0.0.1, the clients spread over them — sharing one
//! PostgreSQL database: `--postgres-url` (password from `--postgres-password-file` or
//! `CUSTOS_STATE_PASSWORD`; a fresh schema is created in it), or else a throwaway cluster started
//! in the scratch directory. Both figures, the round trips per signature and the raw rate are
//! printed side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use super::common::{keystore_error, with_spinner, UnsafeKdfArgs};
use super::pgdev::Cluster;
use super::sample::{eth_transfer, external_script, p2wpkh_psbt, ScratchDir};
use super::{CliError, CliResult};
use crate::backend::{KeyBackend, KeyRef, SoftwareBackend};
use crate::keys::{MnemonicSecret, Network, Purpose};
use crate::keystore::KeyStore;
use crate::secret::SecretString;
use crate::service::devcerts::write_dev_pki;
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{
    sign_request::Payload, sign_response::Outcome, BitcoinPsbtPayload, EthereumTransactionPayload,
    SignRequest,
};
use crate::service::tls::client_tls;
use crate::service::TlsMaterial;
use crate::signing::{CoreConfig, SigningCore};
use crate::state::postgres::{PgEngine, PgSettings, PgStats};
use crate::wallet::Wallet;

/// The benchmark client's principal.
const CLIENT: &str = "spiffe://custos.bench/client";
const SEPOLIA: u64 = 11_155_111;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";

/// Which engines to measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchState {
    /// sled only.
    #[default]
    Sled,
    /// sled, then PostgreSQL with `--replicas` replicas.
    Postgres,
}

/// Arguments of `custos bench signer`.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// Concurrent mutual-TLS clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Sign requests in total (half Ethereum, half Bitcoin).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Where the keys are: `software`, or `pkcs11` (SoftHSM2; both paths are measured).
    #[arg(long, value_enum, default_value_t = BenchBackend::Software)]
    pub backend: BenchBackend,
    /// The PKCS#11 module for `--backend pkcs11`.
    #[arg(long, value_name = "PATH", default_value = crate::backend::pkcs11::provision::SOFTHSM2_MODULE)]
    pub hsm_module: std::path::PathBuf,
    /// The HSM session pool size for `--backend pkcs11`.
    #[arg(long, default_value_t = 4)]
    pub hsm_sessions: usize,
    /// `postgres`: also measure replicas sharing a PostgreSQL database (after sled).
    #[arg(long, value_enum, default_value_t = BenchState::Sled)]
    pub state: BenchState,
    /// With `--state postgres`: replicas in this process.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// With `--state postgres`: an existing database (no password in the URL); default: a
    /// throwaway cluster started for the run.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// With `--postgres-url`: a file holding its password (else CUSTOS_STATE_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub postgres_password_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kdf: UnsafeKdfArgs,
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    /// Keys derived in memory.
    Software,
    /// Keys in a PKCS#11 token (SoftHSM2), measured beside the software path.
    Pkcs11,
}

/// The benchmark's policy: everything allowed for [`CLIENT`], no limits.
fn policy() -> String {
    format!(
        r#"# Written by `custos bench signer`: allows everything for the benchmark client.
[policy]
name = "bench-signer"
[roles]
signer = ["{CLIENT}"]
[assets.bitcoin.regtest]
native = {{ symbol = "BTC", decimals = 8 }}
[assets.ethereum.sepolia]
native = {{ symbol = "ETH", decimals = 18 }}

[[rules]]
name = "bench allows everything"
effect = "allow"
roles = ["signer"]
destinations = "any"
"#
    )
}

pub(crate) fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// Runs the benchmark.
pub fn run(args: SignerArgs) -> CliResult {
    let clients = args.clients.max(1);
    let requests = args.requests.max(clients);
    let kdf = args.kdf.kdf_params()?;
    let dir = ScratchDir::new("custos-bench-signer")?;
    println!("throwaway environment in {}", dir.path.display());

    let pki = write_dev_pki(
        &dir.join("tls"),
        &[("client".to_owned(), CLIENT.to_owned())],
    )
    .map_err(op)?;
    std::fs::write(dir.join("policy.toml"), policy()).map_err(op)?;
    let passphrase = SecretString::new(format!("bench-{:016x}", rand::random::<u64>()));
    let mnemonic = MnemonicSecret::generate().map_err(op)?;
    let (btc, eth, backend, hsm) = {
        let store = with_spinner("sealing the key store (argon2id)…", || {
            KeyStore::create(
                &dir.join("store"),
                &passphrase,
                kdf,
                &mnemonic,
                &SecretString::new(String::new()),
            )
        })
        .map_err(keystore_error)?;
        let unsealed = with_spinner("unsealing (argon2id)…", || store.unseal(&passphrase))
            .map_err(keystore_error)?;
        let btc = unsealed
            .create_wallet(
                "btc",
                Network::Bitcoin(bitcoin::Network::Regtest),
                Purpose::Bip84,
                0,
            )
            .map_err(keystore_error)?;
        let eth = unsealed
            .create_wallet(
                "eth",
                Network::Ethereum { chain_id: SEPOLIA },
                Purpose::Bip44,
                0,
            )
            .map_err(keystore_error)?;
        let backend = SoftwareBackend::new();
        unsealed.load_into(&backend).map_err(keystore_error)?;
        let hsm = match args.backend {
            BenchBackend::Software => None,
            BenchBackend::Pkcs11 => Some(with_spinner(
                "making a SoftHSM2 token and importing the keys…",
                || {
                    super::bench_signer_hsm::provision(
                        &dir.path,
                        &args.hsm_module,
                        args.hsm_sessions,
                        &unsealed,
                        &[&btc, &eth],
                    )
                },
            )?),
        };
        (btc, eth, backend, hsm)
    };
    println!("key store sealed with argon2id ({kdf}); wallets btc (regtest), eth (sepolia)");

    // Each replica gets its own copy of the key store, taken before any core holds it.
    let postgres = args.state == BenchState::Postgres;
    let replicas = if postgres { args.replicas.max(1) } else { 0 };
    for i in 0..replicas {
        copy_dir(&dir.join("store"), &dir.join(format!("store-{i}")))?;
    }
    let server_tls =
        TlsMaterial::load(&pki.server_cert, &pki.server_key, &pki.ca_cert).map_err(op)?;
    let client = &pki.clients[0];
    let client_tls_material =
        TlsMaterial::load(&client.cert, &client.key, &pki.ca_cert).map_err(op)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(op)?;
    // Both paths run on the same key store and state (the state is bound to the store and
    // anchored in it: a second state would be refused as a rollback), one after the other, with
    // request ids, nonces and coins numbered on from the first path's.
    let run_path = |from: usize, attach: Option<Arc<crate::backend::pkcs11::Pkcs11Backend>>| {
        let core = SigningCore::open(CoreConfig::new(
            dir.join("store"),
            dir.join("state"),
            dir.join("policy.toml"),
        ))
        .map_err(op)?;
        if let Some(backend) = attach {
            core.attach_hsm(crate::signing::hsm::HsmAttachment {
                backend,
                wallets: vec![btc.name.clone(), eth.name.clone()],
            })
            .map_err(|_| op("the hsm was attached twice"))?;
        }
        with_spinner("unsealing the signer (argon2id)…", || {
            core.unseal_with_passphrase(&passphrase)
        })
        .map_err(op)?;
        let core = Arc::new(core);
        let payloads = build_requests(&btc, &eth, from, requests)?;
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
            let server = crate::service::start(core.clone(), &server_tls, listener, None)
                .await
                .map_err(op)?;
            let flushes_before = core.flush_count();
            let report = drive(
                &[server.addr.port()],
                &client_tls_material,
                clients,
                payloads,
            )
            .await;
            let flushes = core.flush_count() - flushes_before;
            server.shutdown().await.map_err(op)?;
            report.map(|r| (r, flushes))
        })
    };
    let (report, flushes) = run_path(0, None)?;
    let hsm_report = match &hsm {
        Some(token) => Some(run_path(requests, Some(token.clone()))?),
        None => None,
    };

    let pg_run = if postgres {
        Some(run_postgres(
            &args,
            &dir,
            replicas,
            &passphrase,
            &runtime,
            &server_tls,
            &client_tls_material,
            clients,
            build_requests(&btc, &eth, 0, requests)?,
        )?)
    } else {
        None
    };

    let raw = raw_backend(&backend, &btc, &eth, requests.max(2000))?;

    println!();
    println!("custos bench signer: {clients} mTLS clients, {requests} requests (half EIP-1559, half P2WPKH PSBTs)");
    let rate = report.rate();
    let sled_rate = rate;
    print_run("end to end", &report);
    println!(
        "  group commit     {flushes} flushes ({:.1} requests per flush, two durable steps each)",
        report.count as f64 / flushes.max(1) as f64
    );
    if let Some((run, stats, description)) = &pg_run {
        print_run(&format!("postgres, {replicas} replica(s)"), &run.report);
        let n = run.report.count.max(1) as f64;
        println!(
            "  postgres         {description}: {:.1} round trips per signature ({:.1} in {:.1} transactions, {:.2} per transaction), {} re-runs",
            stats.round_trips as f64 / n,
            stats.tx_round_trips as f64 / n,
            stats.transactions as f64 / n,
            stats.tx_round_trips as f64 / stats.transactions.max(1) as f64,
            stats.retries,
        );
    }
    println!(
        "  key backend      {:>10.0} signatures/s on one thread, {:.0} on {} threads",
        raw.single, raw.parallel, raw.threads
    );
    println!(
        "  ratio            sled / backend = {:.1}% (one thread), {:.1}% ({} threads)",
        100.0 * sled_rate / raw.single,
        100.0 * sled_rate / raw.parallel,
        raw.threads
    );
    if let (Some(token), Some((hsm_report, hsm_flushes))) = (&hsm, hsm_report) {
        super::bench_signer_hsm::report(
            token,
            &btc,
            &eth,
            requests.max(2000),
            rate,
            &hsm_report,
            hsm_flushes,
        )?;
    }
    if let Some((run, _, _)) = &pg_run {
        let rate = run.report.rate();
        println!(
            "                   postgres / backend = {:.1}% (one thread), {:.1}% ({} threads); postgres / sled = {:.1}%",
            100.0 * rate / raw.single,
            100.0 * rate / raw.parallel,
            raw.threads,
            100.0 * rate / sled_rate.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

fn print_run(label: &str, report: &Report) {
    println!(
        "  {label:<16} {:>10.0} signatures/s  ({} signed in {:.2} s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.rate(),
        report.count,
        report.wall.as_secs_f64(),
        ms(report.p50),
        ms(report.p99),
        ms(report.max)
    );
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), CliError> {
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

/// One measured run.
struct Run {
    report: Report,
}

/// Serves `cores` (one gRPC server each, on 127.0.0.1) and drives them with `clients` clients
/// spread over the servers.
async fn measure(
    cores: &[Arc<SigningCore>],
    server_tls: &TlsMaterial,
    client_tls: &TlsMaterial,
    clients: usize,
    payloads: Vec<SignRequest>,
) -> Result<Run, CliError> {
    let mut servers = Vec::new();
    for core in cores {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
        servers.push(
            crate::service::start(core.clone(), server_tls, listener, None)
                .await
                .map_err(op)?,
        );
    }
    let ports: Vec<u16> = servers.iter().map(|s| s.addr.port()).collect();
    let report = drive(&ports, client_tls, clients, payloads).await;
    for server in servers {
        server.shutdown().await.map_err(op)?;
    }
    Ok(Run { report: report? })
}

/// The PostgreSQL run: a database (given, or a throwaway cluster), a fresh schema, `replicas`
/// cores over it.
#[allow(clippy::too_many_arguments)]
fn run_postgres(
    args: &SignerArgs,
    dir: &ScratchDir,
    replicas: usize,
    passphrase: &SecretString,
    runtime: &tokio::runtime::Runtime,
    server_tls: &TlsMaterial,
    client_tls: &TlsMaterial,
    clients: usize,
    payloads: Vec<SignRequest>,
) -> Result<(Run, PgStats, String), CliError> {
    let schema = format!("bench_{:08x}", rand::random::<u32>());
    let mut cluster = None;
    let mut settings = match &args.postgres_url {
        Some(url) => {
            let mut s = PgSettings::new(url.clone());
            s.password = match &args.postgres_password_file {
                Some(file) => Some(super::common::read_secret_file(file)?),
                None => std::env::var(crate::config::STATE_PASSWORD_ENV)
                    .ok()
                    .map(SecretString::new),
            };
            s
        }
        None => {
            let c = with_spinner("starting a throwaway PostgreSQL…", || {
                Cluster::start(&dir.join("postgres"))
            })
            .map_err(op)?;
            let s = c.settings(None).map_err(op)?;
            cluster = Some(c);
            s
        }
    };
    settings.schema = Some(schema);
    settings.pool_size = settings.pool_size.max(clients.div_ceil(replicas) + 2);
    PgEngine::migrate(&settings).map_err(op)?;
    let mut engines = Vec::new();
    let mut cores = Vec::new();
    for i in 0..replicas {
        let engine = Arc::new(PgEngine::open(&settings).map_err(op)?);
        let core = SigningCore::open_with_engine(
            CoreConfig::new(
                dir.join(format!("store-{i}")),
                PathBuf::new(),
                dir.join("policy.toml"),
            ),
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
    let before: Vec<PgStats> = engines.iter().map(|e| e.stats()).collect();
    let run = runtime.block_on(measure(&cores, server_tls, client_tls, clients, payloads))?;
    let mut stats = PgStats::default();
    for (engine, before) in engines.iter().zip(before) {
        let now = engine.stats();
        stats.transactions += now.transactions - before.transactions;
        stats.tx_round_trips += now.tx_round_trips - before.tx_round_trips;
        stats.round_trips += now.round_trips - before.round_trips;
        stats.retries += now.retries - before.retries;
    }
    let description = match &cluster {
        Some(c) => format!("throwaway cluster on 127.0.0.1:{}", c.port()),
        None => engines[0].description().to_owned(),
    };
    drop(cores);
    drop(engines);
    drop(cluster);
    Ok((run, stats, description))
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Alternating Ethereum and Bitcoin requests, every id, nonce and coin distinct.
/// Request `i` is numbered `from + i` (request id, Ethereum nonce, Bitcoin coin), so a second
/// run on the same state (the HSM path after the software path) signs new requests.
fn build_requests(
    btc: &Wallet,
    eth: &Wallet,
    from: usize,
    n: usize,
) -> Result<Vec<SignRequest>, CliError> {
    let payee = external_script(0x42);
    (from..from + n)
        .map(|i| {
            let payload = if i % 2 == 0 {
                Payload::EthereumTransaction(EthereumTransactionPayload {
                    unsigned_tx: eth_transfer(SEPOLIA, (i / 2) as u64, ETH_PAYEE, 1_000_000_000),
                    address_index: None,
                    replacement: false,
                })
            } else {
                let psbt = p2wpkh_psbt(btc, i as u64, 1_000_000, &payee, 100_000, 2_820)?;
                Payload::BitcoinPsbt(BitcoinPsbtPayload {
                    psbt: psbt.serialize(),
                })
            };
            Ok(SignRequest {
                request_id: format!("bench-{i}"),
                wallet: if i % 2 == 0 { &eth.name } else { &btc.name }.clone(),
                payload: Some(payload),
            })
        })
        .collect()
}

pub(crate) struct Report {
    pub(crate) count: usize,
    pub(crate) wall: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Report {
    fn rate(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// `clients` connections (spread over the servers at `ports`), each sending its share in turn;
/// every answer must be signed.
async fn drive(
    ports: &[u16],
    tls: &TlsMaterial,
    clients: usize,
    requests: Vec<SignRequest>,
) -> Result<Report, CliError> {
    let mut shares: Vec<Vec<SignRequest>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % clients].push(r);
    }
    let mut connected = Vec::new();
    for n in 0..clients {
        let port = ports[n % ports.len()];
        let channel: Channel = Endpoint::from_shared(format!("https://localhost:{port}"))
            .map_err(op)?
            .tls_config(client_tls(tls, "localhost"))
            .map_err(op)?
            .connect()
            .await
            .map_err(|e| op(format!("cannot connect: {e}")))?;
        connected.push(SignerClient::new(channel));
    }
    let total: usize = shares.iter().map(Vec::len).sum();
    let progress = indicatif::ProgressBar::new(total as u64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut client, share) in connected.into_iter().zip(shares) {
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for request in share {
                let id = request.request_id.clone();
                let t = Instant::now();
                let reply = client
                    .sign(request)
                    .await
                    .map_err(|s| format!("request {id}: {:?} {}", s.code(), s.message()))?
                    .into_inner();
                latencies.push(t.elapsed());
                if !matches!(reply.outcome, Some(Outcome::Signed(_))) {
                    return Err(format!("request {id} was not signed: {reply:?}"));
                }
                progress.inc(1);
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.map_err(op)?.map_err(op)?);
    }
    let wall = started.elapsed();
    progress.finish_and_clear();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Report {
        count: latencies.len(),
        wall,
        p50: at(0.50),
        p99: at(0.99),
        max: *latencies.last().expect("at least one request"),
    })
}

pub(crate) struct RawRate {
    pub(crate) single: f64,
    pub(crate) parallel: f64,
    pub(crate) threads: usize,
}

/// The backend alone: `n` signatures over distinct digests, half `sign_ecdsa` (low-R, the
/// Bitcoin key at 0/0) and half `sign_ecdsa_recoverable` (the Ethereum key at 0/0).
pub(crate) fn raw_backend(
    backend: &dyn KeyBackend,
    btc: &Wallet,
    eth: &Wallet,
    n: usize,
) -> Result<RawRate, CliError> {
    let keys = [
        KeyRef {
            seed: btc.seed.clone(),
            path: btc.account.child_path(false, 0),
        },
        KeyRef {
            seed: eth.seed.clone(),
            path: eth.account.child_path(false, 0),
        },
    ];
    let sign = |from: usize, to: usize| -> Result<(), CliError> {
        for i in from..to {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            digest[31] = 1;
            let signed = if i % 2 == 0 {
                backend
                    .sign_ecdsa_recoverable(&keys[1], &digest)
                    .map_err(op)?
                    .is_some()
            } else {
                backend
                    .sign_ecdsa(&keys[0], &digest, true)
                    .map_err(op)?
                    .is_some()
            };
            if !signed {
                return Err(op("the backend does not hold the benchmark keys"));
            }
        }
        Ok(())
    };
    let t = Instant::now();
    sign(0, n)?;
    let single = n as f64 / t.elapsed().as_secs_f64();

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| s.spawn(move || sign(k * per, ((k + 1) * per).min(n))))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| op("a signing thread panicked"))?)
    })?;
    let parallel = n as f64 / t.elapsed().as_secs_f64();
    Ok(RawRate {
        single,
        parallel,
        threads,
    })
}
