//! `custos bench signer`: end-to-end signatures per second through the gRPC signer, beside the
//! raw libsecp256k1 ECDSA rate measured in the same run.
//!
//! A throwaway environment (removed at the end unless `--keep`): a development CA and
//! certificates, a key store sealed with the real argon2id parameters (a new random mnemonic:
//! nothing to protect, nothing to fund), a regtest and a Sepolia wallet, and a realistic policy:
//! deny rules first (a sanctioned-address book, no contract deployment), then one allow rule per
//! chain with a per-transaction limit, a fee cap, destinations restricted to an address book, and
//! two rolling windows (24 h per wallet, sum and count; 1 h per principal) — so every request
//! reads its windows and every reservation re-checks them inside its transaction. `--rules N`
//! pads the policy with allow rules for other wallets, up to N rules (the 1,000-rule case).
//!
//! The server runs in-process on 127.0.0.1:0 with durable writes exactly as in production (every
//! answer waits for the group commit's flush; sled, fsync) and the same admission bound
//! (`--max-in-flight`). Requests are made on the fly, alternately an EIP-1559 transfer (distinct
//! nonces) and a one-input P2WPKH PSBT (distinct coins), every request id distinct; a warm-up of
//! a tenth of the requests (at most 2,000) runs first and is not counted.
//!
//! - **Closed loop** (default): `--clients` mutual-TLS connections, each sending its next request
//!   when the previous one is answered. Latency: send to answer.
//! - **Open loop** (`--rate R`): requests leave on a fixed schedule (R per second, spread over the
//!   connections) whatever the answers; latency counts from each request's *scheduled* send time,
//!   so queueing in the client, the network stack or the server is never hidden. Requests past
//!   the server's admission bound are refused (RESOURCE_EXHAUSTED) and counted.
//!
//! Reported: signatures per second; latency percentiles; flushes of the group commit; the
//! process's CPU time per request (server and clients share the machine); resident memory after
//! every tenth of the run and its peak (a long run must stay flat); and the raw libsecp256k1 ECDSA
//! rate (RFC 6979, no grinding) on one core and on every core, measured before and after the load
//! in the same process, with the ratio of the end-to-end rate to it. `--outputs FILE` writes the
//! signed results (every `--sample-every`th) as JSON lines for independent verification (the
//! `bench_outputs` test checks them with Bitcoin Core's consensus code and Ethereum signer
//! recovery through RustCrypto's `k256`, neither of which the signer uses).
//!
//! `--state postgres --replicas N` then runs the same kind of load against N replicas sharing
//! one PostgreSQL database (see [`super::bench_signer_pg`]) and prints its figures — round trips
//! per signature and per transaction included — beside the sled run's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use super::bench_load::{self, Measured, Mode, OutputSink, Requests};
use super::bench_report::report;
use super::bench_signer_pg::{self as pg, PgArgs};
use super::bench_stats::{cpu_time, raw_ecdsa, threads_cpu_time};
pub(crate) use super::bench_stats::{raw_backend, Report};
use super::common::{keystore_error, with_spinner, UnsafeKdfArgs};
use super::sample::{external_script, ScratchDir};
use super::{CliError, CliResult};
use crate::keys::{MnemonicSecret, Network, Purpose};
use crate::keystore::KeyStore;
use crate::secret::SecretString;
use crate::service::devcerts::write_dev_pki;
use crate::service::TlsMaterial;
use crate::signing::{CoreConfig, SigningCore, DEFAULT_MAX_REQUESTS_IN_FLIGHT};

/// The benchmark client's principal.
const CLIENT: &str = "spiffe://custos.bench/client";
const SEPOLIA: u64 = 11_155_111;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";
/// Rules of the realistic policy before any padding.
const BASE_RULES: usize = 4;

/// Arguments of `custos bench signer`.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// Concurrent mutual-TLS connections (closed loop: one request in flight on each).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Sign requests measured (half Ethereum, half Bitcoin), after the warm-up.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Open loop: send this many requests per second on schedule, whatever the answers.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Pad the policy with rules for other wallets up to this many rules (e.g. 1000).
    #[arg(long, default_value_t = BASE_RULES)]
    pub rules: usize,
    /// The server's bound on requests in flight (`max_requests_in_flight`).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Write the signed results (with their requests) as JSON lines, for independent checks.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    /// With `--outputs`: keep every Nth result only.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub sample_every: usize,
    /// Keep the throwaway environment (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Where the keys are: `software`, or `pkcs11` (SoftHSM2; both paths are measured, the HSM
    /// path in closed loop after the software one).
    #[arg(long, value_enum, default_value_t = BenchBackend::Software)]
    pub backend: BenchBackend,
    /// The PKCS#11 module for `--backend pkcs11`.
    #[arg(long, value_name = "PATH", default_value = crate::backend::pkcs11::provision::SOFTHSM2_MODULE)]
    pub hsm_module: PathBuf,
    /// The HSM session pool size for `--backend pkcs11`.
    #[arg(long, default_value_t = 4)]
    pub hsm_sessions: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub postgres: PgArgs,
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

pub(crate) fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// The benchmark's policy (see the module docs), padded to `rules` rules.
fn policy(btc_payee: &str, sanctioned: &str, rules: usize) -> String {
    let mut text = format!(
        r#"# Written by `custos bench signer`.
[policy]
name = "bench-signer"
[roles]
signer = ["{CLIENT}"]
[assets.bitcoin.regtest]
native = {{ symbol = "BTC", decimals = 8 }}
[assets.ethereum.sepolia]
native = {{ symbol = "ETH", decimals = 18 }}

[address_books.sanctioned_btc]
chain = "bitcoin"
addresses = ["{sanctioned}"]
[address_books.btc_payees]
chain = "bitcoin"
network = "regtest"
addresses = ["{btc_payee}"]
[address_books.eth_payees]
chain = "ethereum"
addresses = ["{ETH_PAYEE}"]

[[rules]]
name = "sanctioned destinations"
effect = "deny"
chains = ["bitcoin"]
any_destination_in = ["sanctioned_btc"]

[[rules]]
name = "no contract deployment"
effect = "deny"
kinds = ["contract_creation"]
"#
    );
    for i in BASE_RULES..rules {
        text.push_str(&format!(
            r#"
[[rules]]
name = "desk {i}"
effect = "allow"
roles = ["signer"]
wallets = ["desk-{i}"]
chains = ["bitcoin"]
kinds = ["transfer"]
assets = ["BTC"]
destinations = ["btc_payees"]
[rules.limits]
per_tx = "0.5 BTC"
windows = [ {{ period = "24h", scope = "wallet", sum = "10 BTC", count = 1000 }} ]
"#
        ));
    }
    text.push_str(
        r#"
[[rules]]
name = "btc payouts"
effect = "allow"
roles = ["signer"]
wallets = ["btc"]
chains = ["bitcoin"]
kinds = ["transfer"]
assets = ["BTC"]
destinations = ["btc_payees"]
[rules.limits]
per_tx = "0.01 BTC"
fee = "0.001 BTC"
fee_rate = "200 sat/vB"
windows = [
  { period = "24h", scope = "wallet", sum = "1000000 BTC", count = 100000000 },
  { period = "1h", scope = "principal", sum = "100000 BTC" },
]

[[rules]]
name = "eth payouts"
effect = "allow"
roles = ["signer"]
wallets = ["eth"]
chains = ["ethereum"]
kinds = ["transfer"]
assets = ["ETH"]
destinations = ["eth_payees"]
[rules.limits]
per_tx = "1 ETH"
fee = "0.01 ETH"
windows = [
  { period = "24h", scope = "wallet", sum = "1000000 ETH", count = 100000000 },
  { period = "1h", scope = "principal", sum = "100000 ETH" },
]
"#,
    );
    text
}

/// Runs the benchmark.
pub fn run(args: SignerArgs) -> CliResult {
    let clients = args.clients.max(1);
    let requests = args.requests.max(clients);
    let warmup = (requests / 10).min(2_000);
    let rules = args.rules.max(BASE_RULES);
    let replicas = args.postgres.replicas()?;
    let kdf = args.kdf.kdf_params()?;
    let mut dir = ScratchDir::new("custos-bench-signer")?;
    dir.keep = args.keep;
    println!("throwaway environment in {}", dir.path.display());

    let pki = write_dev_pki(
        &dir.join("tls"),
        &[("client".to_owned(), CLIENT.to_owned())],
    )
    .map_err(op)?;
    let regtest = |tag: u8| {
        bitcoin::Address::from_script(&external_script(tag), bitcoin::Network::Regtest)
            .map(|a| a.to_string())
            .map_err(op)
    };
    std::fs::write(
        dir.join("policy.toml"),
        policy(&regtest(0x42)?, &regtest(0x66)?, rules),
    )
    .map_err(op)?;
    let passphrase = SecretString::new(format!("bench-{:016x}", rand::random::<u64>()));
    let mnemonic = MnemonicSecret::generate().map_err(op)?;
    let (btc, eth, hsm) = {
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
        (btc, eth, hsm)
    };
    println!("key store sealed with argon2id ({kdf}); wallets btc (regtest), eth (sepolia)");
    // The replicas' copies, taken before any core unseals the store (and anchors its state in it).
    pg::copy_stores(&dir, replicas)?;

    let core = open_core(&dir, &args, &passphrase, None)?;
    let server_tls =
        TlsMaterial::load(&pki.server_cert, &pki.server_key, &pki.ca_cert).map_err(op)?;
    let client = &pki.clients[0];
    let client_tls = TlsMaterial::load(&client.cert, &client.key, &pki.ca_cert).map_err(op)?;
    let outputs = match &args.outputs {
        Some(path) => Some(Arc::new(OutputSink::create(path, args.sample_every)?)),
        None => None,
    };
    let eth_from = eth
        .account
        .ethereum_address(0)
        .map_err(op)?
        .map(|a| a.to_string())
        .unwrap_or_default();
    let generator = Arc::new(Requests {
        btc,
        eth,
        chain_id: SEPOLIA,
        btc_payee: external_script(0x42),
        eth_payee: ETH_PAYEE.to_owned(),
        eth_from,
        prefix: "bench".into(),
    });
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed,
    };

    let raw_before = with_spinner("raw libsecp256k1 ECDSA…", || raw_ecdsa(20_000));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(op)?;
    let client_runtime = clients_runtime()?;
    let (measured, flushes, cpu, stages) = runtime.block_on(load(
        core,
        &server_tls,
        &client_tls,
        client_runtime.handle(),
        clients,
        generator.clone(),
        0..warmup,
        warmup..warmup + requests,
        mode,
        outputs.clone(),
    ))?;
    if let Some(sink) = &outputs {
        sink.finish()?;
    }
    let raw_after = with_spinner("raw libsecp256k1 ECDSA…", || raw_ecdsa(20_000));
    let mut next = warmup + requests;
    let hsm_run = match &hsm {
        Some(token) => {
            // The same store and state (the state is anchored in the store: a second one would
            // be refused as a rollback), with request ids, nonces and coins numbered on.
            let core = open_core(&dir, &args, &passphrase, Some(token.clone()))?;
            let from = next;
            next += requests;
            Some(runtime.block_on(load(
                core,
                &server_tls,
                &client_tls,
                client_runtime.handle(),
                clients,
                generator.clone(),
                from..from,
                from..from + requests,
                Mode::Closed,
                None,
            ))?)
        }
        None => None,
    };
    let pg_run = if replicas > 0 {
        // A fresh schema, so numbering on is not needed for distinct ids; it keeps every run's
        // requests distinct all the same.
        let from = next;
        Some(pg::run(
            &args.postgres,
            replicas,
            &dir,
            &passphrase,
            &runtime,
            pg::Load {
                server_tls: &server_tls,
                client_tls: &client_tls,
                clients,
                max_in_flight: args.max_in_flight,
                generator: generator.clone(),
                warmup: from..from + warmup,
                measured: from + warmup..from + warmup + requests,
                mode,
            },
        )?)
    } else {
        None
    };
    report(
        &args, clients, requests, warmup, rules, &measured, flushes, cpu, stages, raw_before,
        raw_after,
    );
    if let Some(bytes) = directory_bytes(&dir.join("state")) {
        println!(
            "  state database   {:.0} MiB on disk after the run",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let rate = measured.signed as f64 / measured.wall.as_secs_f64();
    if let Some(run) = &pg_run {
        pg::report(
            run,
            args.rate.is_some(),
            rate,
            (raw_before.one_core + raw_after.one_core) / 2.0,
            (raw_before.all_cores + raw_after.all_cores) / 2.0,
        );
    }
    if let (Some(token), Some((hsm, hsm_flushes, _, _))) = (&hsm, hsm_run) {
        super::bench_signer_hsm::report(
            token,
            &generator.btc,
            &generator.eth,
            requests.max(2000),
            rate,
            &Report::of(&hsm),
            hsm_flushes,
        )?;
    }
    Ok(())
}

/// Opens the signing core over the environment (with the token attached for the HSM path) and
/// unseals it.
fn open_core(
    dir: &ScratchDir,
    args: &SignerArgs,
    passphrase: &SecretString,
    token: Option<Arc<crate::backend::pkcs11::Pkcs11Backend>>,
) -> Result<Arc<SigningCore>, CliError> {
    let core = SigningCore::open(CoreConfig {
        max_requests_in_flight: args.max_in_flight.max(1),
        ..CoreConfig::new(
            dir.join("store"),
            dir.join("state"),
            dir.join("policy.toml"),
        )
    })
    .map_err(op)?;
    if let Some(backend) = token {
        core.attach_hsm(crate::signing::hsm::HsmAttachment {
            backend,
            wallets: vec!["btc".into(), "eth".into()],
        })
        .map_err(|_| op("the hsm was attached twice"))?;
    }
    with_spinner("unsealing the signer (argon2id)…", || {
        core.unseal_with_passphrase(passphrase)
    })
    .map_err(op)?;
    Ok(Arc::new(core))
}

/// Serves `core` on 127.0.0.1:0, runs the warm-up then the measured requests, stops the server
/// (the core goes with it): what was measured, the flushes, the CPU time.
#[allow(clippy::too_many_arguments)]
async fn load(
    core: Arc<SigningCore>,
    server_tls: &TlsMaterial,
    client_tls: &TlsMaterial,
    clients_runtime: &tokio::runtime::Handle,
    clients: usize,
    generator: Arc<Requests>,
    warmup: std::ops::Range<usize>,
    measured: std::ops::Range<usize>,
    mode: Mode,
    outputs: Option<Arc<OutputSink>>,
) -> Result<(Measured, u64, Option<CpuSplit>, StageMeans), CliError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
    let server = crate::service::start(core.clone(), server_tls, listener, None)
        .await
        .map_err(op)?;
    // The clients run on a runtime of their own (threads named CLIENT_THREADS), so the CPU
    // they use is told apart from the server's.
    let (port, tls) = (server.addr.port(), client_tls.clone());
    let joined = |e: tokio::task::JoinError| op(format!("the clients' task failed: {e}"));
    let connections = clients_runtime
        .spawn(async move { bench_load::connect(port, &tls, clients).await })
        .await
        .map_err(joined)??;
    if !warmup.is_empty() {
        let (connections, generator) = (connections.clone(), generator.clone());
        clients_runtime
            .spawn(bench_load::run(
                connections,
                generator,
                warmup,
                Mode::Closed,
                None,
            ))
            .await
            .map_err(joined)??;
    }
    let flushes_before = core.flush_count();
    let stages_before = core.stage_times();
    let cpu_before = cpu_time().zip(threads_cpu_time(CLIENT_THREADS));
    let result = clients_runtime
        .spawn(bench_load::run(
            connections,
            generator,
            measured,
            mode,
            outputs,
        ))
        .await
        .map_err(joined)?;
    let cpu = cpu_time()
        .zip(threads_cpu_time(CLIENT_THREADS))
        .zip(cpu_before)
        .map(
            |((total, clients), (total_before, clients_before))| CpuSplit {
                total: total.saturating_sub(total_before),
                clients: clients.saturating_sub(clients_before),
            },
        );
    let flushes = core.flush_count() - flushes_before;
    let stages = core.stage_times().mean_since(&stages_before);
    server.shutdown().await.map_err(op)?;
    result.map(|m| (m, flushes, cpu, stages))
}

/// The mean time of a signed request in each stage of the core ([`crate::signing::stages`]).
pub(crate) type StageMeans = [Duration; 5];

/// The bytes of the files under `dir`, if it can be read.
fn directory_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        total += if meta.is_dir() {
            directory_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Some(total)
}

/// The name of the clients' threads.
const CLIENT_THREADS: &str = "bench-client";

/// The clients' runtime: two workers, like the server's on this machine's two cores.
fn clients_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .map_err(op)
}

/// CPU time of a measured run: the whole process, and the clients' threads among it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSplit {
    /// Server, clients and everything else of the process.
    pub total: Duration,
    /// The clients' runtime threads (building requests, client TLS and HTTP/2).
    pub clients: Duration,
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
