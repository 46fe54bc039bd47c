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

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use super::common::{keystore_error, with_spinner, UnsafeKdfArgs};
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
use crate::wallet::Wallet;

/// The benchmark client's principal.
const CLIENT: &str = "spiffe://custos.bench/client";
const SEPOLIA: u64 = 11_155_111;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";

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
            let report = drive(server.addr.port(), &client_tls_material, clients, payloads).await;
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

    let raw = raw_backend(&backend, &btc, &eth, requests.max(2000))?;

    let rate = report.count as f64 / report.wall.as_secs_f64();
    println!();
    println!("custos bench signer: {clients} mTLS clients, {requests} requests (half EIP-1559, half P2WPKH PSBTs)");
    println!(
        "  end to end       {rate:>10.0} signatures/s  ({} signed in {:.2} s)",
        report.count,
        report.wall.as_secs_f64()
    );
    println!(
        "  latency          p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(report.p50),
        ms(report.p99),
        ms(report.max)
    );
    println!(
        "  group commit     {flushes} flushes ({:.1} requests per flush, two durable steps each)",
        report.count as f64 / flushes.max(1) as f64
    );
    println!(
        "  key backend      {:>10.0} signatures/s on one thread, {:.0} on {} threads",
        raw.single, raw.parallel, raw.threads
    );
    println!(
        "  ratio            end to end / backend = {:.1}% (one thread), {:.1}% ({} threads)",
        100.0 * rate / raw.single,
        100.0 * rate / raw.parallel,
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
    Ok(())
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

/// `clients` connections, each sending its share in turn; every answer must be signed.
async fn drive(
    port: u16,
    tls: &TlsMaterial,
    clients: usize,
    requests: Vec<SignRequest>,
) -> Result<Report, CliError> {
    let mut shares: Vec<Vec<SignRequest>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % clients].push(r);
    }
    let mut connected = Vec::new();
    for _ in 0..clients {
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
