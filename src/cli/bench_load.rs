//! The load of `custos bench signer`: requests made on the fly (constant memory whatever their
//! number), sent over mutual-TLS gRPC connections in closed loop (each client sends its next
//! request when the previous one is answered) or open loop (requests leave on a fixed schedule
//! whatever the answers, and latency counts from each request's scheduled send time, so queueing
//! is never hidden).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::ScriptBuf;
use tonic::transport::{Channel, Endpoint};

use super::bench_stats::{rss_kib, Histogram};
use super::sample::{eth_transfer, p2wpkh_psbt};
use super::{CliError, CliResult};
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{
    sign_request::Payload, sign_response::Outcome, signed, BitcoinPsbtPayload,
    EthereumTransactionPayload, SignRequest,
};
use crate::service::tls::client_tls;
use crate::service::TlsMaterial;
use crate::wallet::Wallet;

fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// Makes request `i`: even ones an EIP-1559 transfer (nonce `i / 2`), odd ones a one-input
/// P2WPKH PSBT (a coin of its own); ids are distinct.
pub struct Requests {
    /// The Bitcoin wallet.
    pub btc: Wallet,
    /// The Ethereum wallet.
    pub eth: Wallet,
    /// Its chain id.
    pub chain_id: u64,
    /// Where Bitcoin payments go (in the policy's address book).
    pub btc_payee: ScriptBuf,
    /// Where Ethereum payments go (in the policy's address book).
    pub eth_payee: String,
    /// The Ethereum wallet's address (index 0), written beside its signed transactions.
    pub eth_from: String,
    /// Request ids start with this (distinct per run).
    pub prefix: String,
}

impl Requests {
    /// Request `i`.
    pub fn make(&self, i: usize) -> Result<SignRequest, CliError> {
        let payload = if i.is_multiple_of(2) {
            Payload::EthereumTransaction(EthereumTransactionPayload {
                unsigned_tx: eth_transfer(
                    self.chain_id,
                    (i / 2) as u64,
                    &self.eth_payee,
                    1_000_000_000,
                ),
                address_index: None,
                replacement: false,
            })
        } else {
            let psbt = p2wpkh_psbt(
                &self.btc,
                i as u64,
                1_000_000,
                &self.btc_payee,
                100_000,
                2_820,
            )?;
            Payload::BitcoinPsbt(BitcoinPsbtPayload {
                psbt: psbt.serialize(),
            })
        };
        Ok(SignRequest {
            request_id: format!("{}-{i}", self.prefix),
            wallet: if i.is_multiple_of(2) {
                &self.eth.name
            } else {
                &self.btc.name
            }
            .clone(),
            payload: Some(payload),
        })
    }
}

/// How the load is sent.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `clients` connections, each waiting for its answer before sending again.
    Closed,
    /// `rate` requests per second on schedule, spread over the connections.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Latency of the signed requests (closed loop: send to answer; open loop: scheduled send
    /// time to answer).
    pub latency: Histogram,
    /// Answered with a signature.
    pub signed: u64,
    /// Refused as overload (RESOURCE_EXHAUSTED).
    pub refused: u64,
    /// Wall time from the first send to the last answer.
    pub wall: Duration,
    /// Resident memory (KiB) after each tenth of the requests was answered.
    pub rss: Vec<(u64, u64)>,
    /// Open loop: the largest lag of a send behind its schedule.
    pub send_lag: Duration,
}

/// Where signed results go for independent verification (`--outputs`).
pub struct OutputSink {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    every: usize,
}

impl OutputSink {
    /// Writes every `every`th signed request and result to `path` as JSON lines.
    pub fn create(path: &std::path::Path, every: usize) -> Result<Self, CliError> {
        let file = std::fs::File::create(path)
            .map_err(|e| op(format!("cannot create {}: {e}", path.display())))?;
        Ok(OutputSink {
            file: Mutex::new(std::io::BufWriter::new(file)),
            every: every.max(1),
        })
    }

    fn record(
        &self,
        i: usize,
        request: &SignRequest,
        reply: &Outcome,
        eth_from: &str,
    ) -> CliResult {
        if !i.is_multiple_of(self.every) {
            return Ok(());
        }
        let Outcome::Signed(signed) = reply else {
            return Ok(());
        };
        let line = match (&request.payload, &signed.result) {
            (Some(Payload::BitcoinPsbt(p)), Some(signed::Result::BitcoinTransaction(tx))) => {
                serde_json::json!({
                    "chain": "bitcoin",
                    "request_id": request.request_id,
                    "psbt_hex": hex::encode(&p.psbt),
                    "raw_tx_hex": tx.raw_tx_hex,
                    "txid": tx.txid,
                })
            }
            (
                Some(Payload::EthereumTransaction(p)),
                Some(signed::Result::EthereumTransaction(tx)),
            ) => serde_json::json!({
                "chain": "ethereum",
                "request_id": request.request_id,
                "from": eth_from,
                "unsigned_tx": String::from_utf8_lossy(&p.unsigned_tx),
                "raw_tx_hex": tx.raw_tx_hex,
                "tx_hash": tx.tx_hash,
            }),
            other => {
                return Err(op(format!(
                    "unexpected result for {}: {other:?}",
                    request.request_id
                )))
            }
        };
        let mut file = self.file.lock().expect("output lock poisoned");
        writeln!(file, "{line}").map_err(op)
    }

    /// Flushes the file.
    pub fn finish(&self) -> CliResult {
        self.file
            .lock()
            .expect("output lock poisoned")
            .flush()
            .map_err(op)
    }
}

/// Opens `n` mutual-TLS connections to `127.0.0.1:port`.
pub async fn connect(
    port: u16,
    tls: &TlsMaterial,
    n: usize,
) -> Result<Vec<SignerClient<Channel>>, CliError> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
            .map_err(op)?
            .tls_config(client_tls(tls, "localhost"))
            .map_err(op)?
            .connect()
            .await
            .map_err(|e| op(format!("cannot connect: {e}")))?;
        out.push(SignerClient::new(channel));
    }
    Ok(out)
}

struct Shared {
    requests: Arc<Requests>,
    /// Requests of this run.
    total: usize,
    /// Index of the first.
    first: usize,
    /// Index of the next to send (closed loop).
    next: AtomicUsize,
    answered: AtomicU64,
    refused: AtomicU64,
    rss: Mutex<Vec<(u64, u64)>>,
    outputs: Option<Arc<OutputSink>>,
    progress: indicatif::ProgressBar,
}

impl Shared {
    /// Counts an answer; samples memory at every tenth.
    fn answered(&self) {
        let done = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
        self.progress.inc(1);
        let tenth = (self.total as u64 / 10).max(1);
        if done.is_multiple_of(tenth) {
            if let Some(kib) = rss_kib() {
                self.rss
                    .lock()
                    .expect("rss lock poisoned")
                    .push((done, kib));
            }
        }
    }
}

/// Sends one request; `Ok(true)` signed, `Ok(false)` refused as overload.
async fn send(
    client: &mut SignerClient<Channel>,
    shared: &Shared,
    i: usize,
) -> Result<bool, CliError> {
    let request = shared.requests.make(i)?;
    let kept = shared.outputs.as_ref().map(|_| request.clone());
    let reply = match client.sign(request).await {
        Ok(reply) => reply.into_inner(),
        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            shared.answered();
            return Ok(false);
        }
        Err(status) => {
            return Err(op(format!(
                "request {i}: {:?} {}",
                status.code(),
                status.message()
            )))
        }
    };
    match &reply.outcome {
        Some(outcome @ Outcome::Signed(_)) => {
            if let (Some(sink), Some(request)) = (&shared.outputs, &kept) {
                sink.record(i, request, outcome, &shared.requests.eth_from)?;
            }
        }
        other => return Err(op(format!("request {i} was not signed: {other:?}"))),
    }
    shared.answered();
    Ok(true)
}

/// Runs requests `range` over `clients` in `mode`.
pub async fn run(
    clients: Vec<SignerClient<Channel>>,
    requests: Arc<Requests>,
    range: std::ops::Range<usize>,
    mode: Mode,
    outputs: Option<Arc<OutputSink>>,
) -> Result<Measured, CliError> {
    let total = range.len();
    let progress = indicatif::ProgressBar::new(total as u64);
    let shared = Arc::new(Shared {
        requests,
        total,
        first: range.start,
        next: AtomicUsize::new(range.start),
        answered: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        rss: Mutex::new(Vec::new()),
        outputs,
        progress: progress.clone(),
    });
    let started = Instant::now();
    let (latency, send_lag) = match mode {
        Mode::Closed => (closed(clients, shared.clone()).await?, Duration::ZERO),
        Mode::Open { rate } => open(clients, shared.clone(), rate, started).await?,
    };
    let wall = started.elapsed();
    progress.finish_and_clear();
    let refused = shared.refused.load(Ordering::Relaxed);
    let rss = std::mem::take(&mut *shared.rss.lock().expect("rss lock poisoned"));
    Ok(Measured {
        signed: latency.count(),
        latency,
        refused,
        wall,
        rss,
        send_lag,
    })
}

async fn closed(
    clients: Vec<SignerClient<Channel>>,
    shared: Arc<Shared>,
) -> Result<Histogram, CliError> {
    let mut tasks = Vec::new();
    for mut client in clients {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::default();
            loop {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if i >= shared.first + shared.total {
                    return Ok::<_, CliError>(latency);
                }
                let t = Instant::now();
                if send(&mut client, &shared, i).await? {
                    latency.record(t.elapsed());
                }
            }
        }));
    }
    let mut all = Histogram::default();
    for task in tasks {
        all.merge(&task.await.map_err(op)??);
    }
    Ok(all)
}

async fn open(
    clients: Vec<SignerClient<Channel>>,
    shared: Arc<Shared>,
    rate: f64,
    started: Instant,
) -> Result<(Histogram, Duration), CliError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(CliError::usage(format!(
            "--rate must be a positive number, not {rate}"
        )));
    }
    let latency = Arc::new(Mutex::new(Histogram::default()));
    let failure: Arc<Mutex<Option<CliError>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    let mut lag = Duration::ZERO;
    while sent < shared.total {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(shared.total);
        while sent < due {
            let i = shared.first + sent;
            let scheduled = started + Duration::from_secs_f64(sent as f64 / rate);
            sent += 1;
            lag = lag.max(Instant::now().saturating_duration_since(scheduled));
            let mut client = clients[i % clients.len()].clone();
            let shared = shared.clone();
            let latency = latency.clone();
            let failure = failure.clone();
            tasks.spawn(async move {
                match send(&mut client, &shared, i).await {
                    Ok(true) => latency
                        .lock()
                        .expect("latency lock poisoned")
                        .record(scheduled.elapsed()),
                    Ok(false) => {}
                    Err(e) => {
                        failure
                            .lock()
                            .expect("failure lock poisoned")
                            .get_or_insert(e);
                    }
                }
            });
        }
        // Reap what finished, so a long run holds only the requests in flight.
        while tasks.try_join_next().is_some() {}
        if let Some(e) = failure.lock().expect("failure lock poisoned").take() {
            return Err(e);
        }
        let next = started + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(next.into()).await;
    }
    while tasks.join_next().await.is_some() {}
    if let Some(e) = failure.lock().expect("failure lock poisoned").take() {
        return Err(e);
    }
    let latency = latency.lock().expect("latency lock poisoned").clone();
    Ok((latency, lag))
}
