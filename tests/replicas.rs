//! Three `custos serve` replicas, each with its own copy of the sealed key store, sharing one
//! PostgreSQL (a real server started by the project's own code on an ephemeral loopback port).
//!
//! Many concurrent clients, spread over the replicas, against one rolling-window cap: exactly the
//! allowed number is signed and the ledger's usage is the sum signed — while one replica is
//! SIGKILLed mid-load and restarted, and, in a second phase, while the database itself is stopped
//! (as a crash) and started again under load (the replicas answer UNAVAILABLE meanwhile and
//! resume by themselves). Then approvals from officers on different replicas reach one quorum; a
//! broadcaster reads the outbox from one replica, acknowledges, and resumes from its cursor on
//! another: every entry once, in order; the audit chain and the whole state verify (with the
//! replicas still serving).

mod pg_support;
#[allow(dead_code)]
mod served;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use custos::governance::{SecretSigningKey, VoteContext, VoteDecision, VoteStatement};
use custos::policy::limits::{LedgerKey, UsageView};
use custos::policy::model::Scope;
use custos::service::proto::outbox_client::OutboxClient;
use custos::service::proto::signer_client::SignerClient;
use custos::service::proto::{
    sign_request::Payload, sign_response::Outcome, signed, AckRequest, ApproveRequest,
    EthereumTransactionPayload, GetRequestRequest, RequestState, SignRequest, StreamSignedRequest,
    VoteSignature,
};
use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use custos::signing::now_unix;
use custos::state::auth::StateAuth;
use custos::state::State;
use served::BIN;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const ETH: u128 = 1_000_000_000_000_000_000;
const SEPOLIA: u64 = 11_155_111;
const PAYEE: &str = "0x3535353535353535353535353535353535353535";

const POLICY: &str = r#"
[policy]
name = "replicas"
[roles]
withdrawals = ["spiffe://t/withdrawals"]
approver = ["spiffe://t/officers/alice", "spiffe://t/officers/bob", "spiffe://t/officers/carol"]
broadcaster = ["broadcaster.t"]
admin = ["admin.t"]
[assets.ethereum.sepolia]
native = { symbol = "ETH", decimals = 18 }

[[rules]]
name = "hot"
effect = "allow"
roles = ["withdrawals"]
wallets = ["eth-hot"]
kinds = ["transfer"]
assets = ["ETH"]
max_amount = "10 ETH"
destinations = "any"
[rules.limits]
windows = [{ period = "24h", scope = "wallet", sum = "150 ETH" }]

[[rules]]
name = "b"
effect = "allow"
roles = ["withdrawals"]
wallets = ["eth-b"]
kinds = ["transfer"]
assets = ["ETH"]
max_amount = "10 ETH"
destinations = "any"
[rules.limits]
windows = [{ period = "24h", scope = "wallet", sum = "50 ETH" }]

[[rules]]
name = "large"
effect = "require_approval"
roles = ["withdrawals"]
wallets = ["eth-hot"]
kinds = ["transfer"]
assets = ["ETH"]
min_amount = "20 ETH"
destinations = "any"
approval = { quorum = 2, roles = ["approver"], expires = "1h" }
"#;

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// One replica: its directory (a copy of the environment, with its own key store) and process.
struct Replica {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
    starts: usize,
}

impl Replica {
    fn start(&mut self) {
        let log = self.dir.join(format!("serve-{}.log", self.starts));
        self.starts += 1;
        let (child, port) = served::spawn_serve(&self.dir, &log);
        self.child = Some(child);
        self.port = port;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn channel(dir: &Path, port: u16, client: &str) -> Option<Channel> {
    let tls = dir.join("tls");
    let material = TlsMaterial::load(
        &tls.join(format!("clients/{client}.pem")),
        &tls.join(format!("clients/{client}.key")),
        &tls.join("ca.pem"),
    )
    .unwrap();
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(&material, "localhost"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .ok()
}

fn request(wallet: &str, id: &str, nonce: u64, wei: u128) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": format!("{SEPOLIA:#x}"),
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": PAYEE,
        "value": format!("{wei:#x}"),
        "data": "0x",
    });
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: serde_json::to_vec(&tx).unwrap(),
            address_index: None,
            replacement: false,
        })),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Signed(String),
    Denied(String),
}

/// A definitive answer, or `None` to retry (the replica or the database went away).
fn answer(
    result: Result<tonic::Response<custos::service::proto::SignResponse>, tonic::Status>,
) -> Option<Answer> {
    match result {
        Ok(reply) => match reply.into_inner().outcome {
            Some(Outcome::Signed(s)) => match s.result {
                Some(signed::Result::EthereumTransaction(t)) => Some(Answer::Signed(t.tx_hash)),
                other => panic!("{other:?}"),
            },
            other => panic!("not signed: {other:?}"),
        },
        Err(status) if status.code() == Code::PermissionDenied => {
            let code = status
                .metadata()
                .get("custos-code")
                .expect("custos-code")
                .to_str()
                .unwrap()
                .to_owned();
            Some(Answer::Denied(code))
        }
        Err(status) => {
            assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
                ),
                "{status:?}"
            );
            None
        }
    }
}

/// Sends every request of `ids` (wallet, nonce = id, `wei` each) concurrently, spread over the
/// replicas, retrying on another replica until each has a definitive answer. `disrupt` runs once
/// after `after` answers (a replica killed, the database stopped); `restore` runs once two more
/// answers came or three calls failed since (events, not timers).
#[allow(clippy::too_many_arguments)]
async fn load(
    replicas: &mut [Replica],
    wallet: &str,
    prefix: &str,
    ids: std::ops::Range<u64>,
    wei: u128,
    after: usize,
    mut disrupt: impl FnMut(&mut [Replica]),
    mut restore: impl FnMut(&mut [Replica]),
) -> BTreeMap<u64, Answer> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ports: Vec<(PathBuf, u16)> = replicas.iter().map(|r| (r.dir.clone(), r.port)).collect();
    let ports = Arc::new(Mutex::new(ports));
    let failures = Arc::new(AtomicUsize::new(0));
    let total = (ids.end - ids.start) as usize;
    for i in ids {
        let tx = tx.clone();
        let ports = ports.clone();
        let failures = failures.clone();
        let wallet = wallet.to_owned();
        let id = format!("{prefix}-{i}");
        tokio::spawn(async move {
            for attempt in 0..600usize {
                let (dir, port) = {
                    let ports = ports.lock().unwrap();
                    ports[(i as usize + attempt) % ports.len()].clone()
                };
                let got = match channel(&dir, port, "withdrawals").await {
                    Some(ch) => answer(
                        SignerClient::new(ch)
                            .sign(request(&wallet, &id, i, wei))
                            .await,
                    ),
                    None => None,
                };
                if let Some(a) = got {
                    let _ = tx.send((i, a));
                    return;
                }
                failures.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{id}: no answer after 600 attempts");
        });
    }
    drop(tx);
    let mut answers = BTreeMap::new();
    let mut disrupted_at: Option<(usize, usize)> = None;
    let mut restored = false;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some((i, a)) => { answers.insert(i, a); }
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if disrupted_at.is_none() && answers.len() >= after.min(total) {
            disrupt(replicas);
            disrupted_at = Some((answers.len(), failures.load(Ordering::SeqCst)));
        }
        if let Some((answered, failed)) = disrupted_at {
            let more = answers.len() >= (answered + 2).min(total);
            let failing = failures.load(Ordering::SeqCst) >= failed + 3;
            if !restored && (more || failing) {
                restored = true;
                restore(replicas);
                let fresh: Vec<(PathBuf, u16)> =
                    replicas.iter().map(|r| (r.dir.clone(), r.port)).collect();
                *ports.lock().unwrap() = fresh;
            }
        }
    }
    if disrupted_at.is_some() && !restored {
        restore(replicas);
    }
    eprintln!(
        "{prefix}: {} answered, {} calls retried",
        answers.len(),
        failures.load(Ordering::SeqCst)
    );
    answers
}

fn signed_count(answers: &BTreeMap<u64, Answer>) -> usize {
    answers
        .values()
        .filter(|a| matches!(a, Answer::Signed(_)))
        .count()
}

fn custos(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CUSTOS_PASSPHRASE")
        .env_remove("CUSTOS_STATE_PASSWORD")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_state_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // The environment, then its state moved to PostgreSQL (a schema of its own).
    let (env, _) = served::dev_env(dir.path(), Some(POLICY));
    let schema = pg_support::fresh_schema();
    let (url, password_file) = {
        let cluster = pg_support::cluster();
        (cluster.url(), cluster.password_file())
    };
    std::fs::copy(&password_file, env.join("pg-password")).unwrap();
    let config = std::fs::read_to_string(env.join("custos.toml"))
        .unwrap()
        .replace("state_dir = \"state\"\n", "");
    let config = format!(
        "{config}\n[state]\nengine = \"postgres\"\nurl = \"{url}\"\npassword_file = \"pg-password\"\nschema = \"{schema}\"\n"
    );
    std::fs::write(env.join("custos.toml"), config).unwrap();
    // A server refuses a database without the schema.
    let out = Command::new(BIN)
        .args(["serve", "--config", p(&env.join("custos.toml"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("custos state migrate"), "{stderr}");
    let out = custos(&["state", "migrate", "--config", p(&env.join("custos.toml"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied migration 1"));

    // Three replicas, each with its own copy of the environment (key store included), copied
    // while no server holds it.
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| {
            let rdir = dir.path().join(format!("replica-{n}"));
            copy_dir(&env, &rdir);
            Replica {
                dir: rdir,
                child: None,
                port: 0,
                starts: 0,
            }
        })
        .collect();
    for r in &mut replicas {
        r.start();
    }

    // Phase A: 40 requests of 5 ETH against a 150 ETH window, over three replicas; replica 1 is
    // SIGKILLed after 8 answers and restarted.
    let a = load(
        &mut replicas,
        "eth-hot",
        "a",
        0..40,
        5 * ETH,
        8,
        |rs| rs[1].kill(),
        |rs| rs[1].start(),
    )
    .await;
    assert_eq!(a.len(), 40, "every request answered");
    assert_eq!(signed_count(&a), 30, "exactly the 30 that fit were signed");
    for answer in a.values() {
        if let Answer::Denied(code) = answer {
            assert_eq!(code, "limit.window_sum");
        }
    }

    // Phase B: the database stops (as a crash) after 4 answers and starts again.
    let b = load(
        &mut replicas,
        "eth-b",
        "b",
        0..15,
        5 * ETH,
        4,
        |_| pg_support::cluster().stop(true).unwrap(),
        |_| pg_support::cluster().start_again().unwrap(),
    )
    .await;
    assert_eq!(b.len(), 15);
    assert_eq!(signed_count(&b), 10, "exactly the 10 that fit were signed");

    // Approvals from officers on different replicas reach one quorum.
    let ch = channel(&replicas[0].dir, replicas[0].port, "withdrawals")
        .await
        .unwrap();
    let reply = SignerClient::new(ch)
        .sign(request("eth-hot", "big-1", 1000, 25 * ETH))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(reply.outcome, Some(Outcome::Pending(_))),
        "{reply:?}"
    );
    let vote = |n: usize, who: &'static str| {
        let dir = replicas[n].dir.clone();
        let port = replicas[n].port;
        async move {
            let ch = channel(&dir, port, who).await.unwrap();
            let mut client = SignerClient::new(ch);
            // The vote is signed with the key `custos dev env` enrolled for the officer.
            let c = client
                .get_request(GetRequestRequest {
                    request_id: "big-1".into(),
                    requester: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .request
                .and_then(|r| r.vote_context)
                .expect("a pending request carries its vote context");
            let key =
                SecretSigningKey::load(&dir.join(format!("approver-keys/{who}.pem"))).unwrap();
            let reason = format!("{who} agrees");
            let statement = VoteStatement {
                context: VoteContext {
                    custody: c.custody,
                    request_id: c.request_id,
                    requester: c.requester,
                    wallet: c.wallet,
                    payload_sha256: c.payload_sha256,
                    intent: c.intent,
                },
                approver: format!("spiffe://t/{}", who.replace('-', "/")),
                key: key.public().to_text(),
                decision: VoteDecision::Approve,
                reason: reason.clone(),
                at: now_unix(),
            };
            client
                .approve(ApproveRequest {
                    request_id: "big-1".into(),
                    reason,
                    requester: String::new(),
                    signature: Some(VoteSignature {
                        at: statement.at,
                        key: statement.key.clone(),
                        signature: key.sign(&statement.encode().unwrap()),
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .request
                .unwrap()
        }
    };
    let first = vote(1, "officers-alice").await;
    assert_eq!(first.state(), RequestState::PendingApproval);
    let second = vote(2, "officers-bob").await;
    assert_eq!(second.state(), RequestState::Signed);
    let signed_total = 30 + 10 + 1;

    // The broadcaster: from replica 0 it reads the first ten entries and acknowledges them;
    // on replica 2 it resumes from its cursor; every entry once, in order.
    let mut seen = Vec::new();
    {
        let ch = channel(&replicas[0].dir, replicas[0].port, "broadcaster")
            .await
            .unwrap();
        let mut outbox = OutboxClient::new(ch);
        let mut stream = outbox
            .stream_signed(StreamSignedRequest {
                after_sequence: None,
            })
            .await
            .unwrap()
            .into_inner();
        while seen.len() < 10 {
            let e = stream.message().await.unwrap().unwrap();
            seen.push((e.sequence, e.request_id));
        }
        drop(stream);
        let ack = outbox
            .ack(AckRequest { sequence: 10 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.acked_sequence, 10);
        assert_eq!(ack.head_sequence, signed_total as u64);
    }
    {
        let ch = channel(&replicas[2].dir, replicas[2].port, "broadcaster")
            .await
            .unwrap();
        let mut outbox = OutboxClient::new(ch);
        let mut stream = outbox
            .stream_signed(StreamSignedRequest {
                after_sequence: None,
            })
            .await
            .unwrap()
            .into_inner();
        while seen.len() < signed_total {
            let e = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .expect("the stream delivers every entry")
                .unwrap()
                .unwrap();
            seen.push((e.sequence, e.request_id));
        }
    }
    let sequences: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=signed_total as u64).collect::<Vec<_>>());
    let mut ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), signed_total, "one entry per signed request");

    // The whole state verifies while the replicas keep serving (one consistent snapshot), and
    // the audit chain is one chain across replicas. (With a copy of the key store no replica
    // holds: each replica's store is locked while it runs.)
    let config = replicas[0].dir.join("custos.toml");
    let store_args = |_: &Replica| {
        vec![
            "--store".to_owned(),
            env.join("store").display().to_string(),
            "--passphrase-file".to_owned(),
            env.join("passphrase").display().to_string(),
        ]
    };
    let mut args = vec!["state", "verify", "--config", p(&config)]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    args.extend(store_args(&replicas[0]));
    let out = custos(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec!["audit", "verify", "--config", p(&config)]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    args.extend(store_args(&replicas[2]));
    let out = custos(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chain intact"));

    // The ledger, read directly: usage is the sum signed, per wallet.
    for r in &mut replicas {
        r.kill();
    }
    let settings = {
        let cluster = pg_support::cluster();
        cluster.settings(Some(&schema)).unwrap()
    };
    let state = State::open_postgres(&settings).unwrap();
    let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
    let unsealed = custos::keystore::KeyStore::open(&replicas[0].dir.join("store"))
        .unwrap()
        .unseal(&custos::secret::SecretString::new(
            passphrase.trim().to_owned(),
        ))
        .unwrap();
    state.set_auth(Some(StateAuth::new(unsealed.state_key())));
    // Usage is the sum signed: eth-hot 30 × 5 ETH and the approved 25 ETH; eth-b 10 × 5 ETH.
    for (wallet, want) in [("eth-hot", 175 * ETH), ("eth-b", 50 * ETH)] {
        let usage = state
            .usage(
                &LedgerKey {
                    scope: Scope::Wallet,
                    name: wallet.into(),
                    asset: "ETH".into(),
                },
                now_unix() - 86_400,
                now_unix() + 86_400,
            )
            .unwrap();
        assert_eq!(usage.sum.to_string(), want.to_string(), "{wallet}");
    }
    let outbox = custos::state::outbox::read_after(&state, 0, u64::MAX, 10_000).unwrap();
    assert_eq!(outbox.len(), signed_total);
    let mut tx_of: BTreeMap<String, String> = BTreeMap::new();
    for e in &outbox {
        assert!(tx_of
            .insert(e.request_id.clone(), e.tx_id.clone())
            .is_none());
    }
    // Nothing half-done: a signed request has its outbox entry and its reservation; a denied one
    // has neither; no request is left between its decision and its signature.
    for (prefix, answers) in [("a", &a), ("b", &b)] {
        for (i, answer) in answers {
            let id = format!("{prefix}-{i}");
            let key = custos::state::requests::request_key("spiffe://t/withdrawals", &id);
            let reservation = state.reservation(&key).unwrap();
            match answer {
                Answer::Signed(tx) => {
                    assert_eq!(tx_of.get(&id), Some(tx), "{id}");
                    assert!(reservation.is_some_and(|r| !r.released), "{id}");
                }
                Answer::Denied(_) => {
                    assert!(!tx_of.contains_key(&id), "{id}");
                    assert!(reservation.is_none(), "{id}");
                }
            }
        }
    }
    let authorized = custos::state::requests::scan_state(
        &state,
        custos::state::requests::StoredState::Authorized,
    )
    .unwrap();
    assert!(authorized.is_empty(), "{authorized:?}");
}
