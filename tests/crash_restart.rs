//! The server killed with SIGKILL while requests are in flight and restarted, many times: no limit
//! lost or double-counted, no signed transaction missing from the outbox (nor there twice), the
//! audit chain intact. And a record flipped behind the signer's back is found by `audit verify`.
//!
//! The `custos serve` binary runs on a `custos dev env` directory (the example policy: eth-hot may
//! move 200 ETH per 24 h). A client fires concurrent `Sign` calls with distinct request ids, plus
//! retries of ids already answered; after the k-th answer of the round (an event, not a timer) the
//! server is killed. It is restarted on the same directories and every id without an answer is
//! sent again, until all are answered. Then the state database is read directly.

#[allow(dead_code)]
mod served;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use custos::policy::limits::{LedgerKey, UsageView};
use custos::policy::model::Scope;
use custos::service::proto::signer_client::SignerClient;
use custos::service::proto::{
    sign_request::Payload, sign_response::Outcome, signed, EthereumTransactionPayload, SignRequest,
};
use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use custos::signing::now_unix;
use custos::state::auth::StateAuth;
use custos::state::State;
use served::BIN;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";
const ETH: u128 = 1_000_000_000_000_000_000;
/// The example policy's 24 h cap on eth-hot.
const CAP: u128 = 200 * ETH;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn dev_env(dir: &Path) -> PathBuf {
    served::dev_env(dir, None).0
}

/// Spawns `custos serve` on `env` (a fresh port each start), logging to `serve-ROUND.log`.
fn serve(env: &Path, round: usize) -> (Child, u16) {
    served::spawn_serve(env, &env.join(format!("serve-{round}.log")))
}

/// SIGKILL, and reap.
fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn client(env: &Path, port: u16) -> SignerClient<Channel> {
    let tls = env.join("tls");
    let material = TlsMaterial::load(
        &tls.join("clients/withdrawals.pem"),
        &tls.join("clients/withdrawals.key"),
        &tls.join("ca.pem"),
    )
    .unwrap();
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(&material, "localhost"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("mutual TLS to the server");
    SignerClient::new(channel)
}

/// Request `i`: an EIP-1559 transfer of [`amount`]`(i)` from eth-hot with nonce `i`.
fn request(i: u64) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": format!("{i:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": ETH_PAYEE,
        "value": format!("{:#x}", amount(i)),
        "data": "0x",
    });
    SignRequest {
        request_id: format!("crash-{i}"),
        wallet: "eth-hot".into(),
        payload: Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: serde_json::to_vec(&tx).unwrap(),
            address_index: None,
            replacement: false,
        })),
    }
}

/// 3 to 9 ETH: five rounds of twelve ask for far more than the cap.
fn amount(i: u64) -> u128 {
    u128::from(i % 7 + 3) * ETH
}

/// A definitive answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Signed(String),
    Denied(String),
}

/// The answer of one call, or `None` when it has to be retried (the server went away).
fn answer(
    result: Result<tonic::Response<custos::service::proto::SignResponse>, tonic::Status>,
) -> Option<Answer> {
    match result {
        Ok(reply) => {
            let reply = reply.into_inner();
            let Some(Outcome::Signed(s)) = reply.outcome else {
                panic!("not signed: {reply:?}");
            };
            match s.result {
                Some(signed::Result::EthereumTransaction(t)) => Some(Answer::Signed(t.tx_hash)),
                other => panic!("{other:?}"),
            }
        }
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
            // The server was killed under this call (or refused while going down): retry.
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

fn audit_verify(env: &Path) -> Output {
    Command::new(BIN)
        .args(["audit", "verify", "--state", p(&env.join("state"))])
        .args(["--store", p(&env.join("store"))])
        .args(["--passphrase-file", p(&env.join("passphrase"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .unwrap()
}

/// One round: sends `ids` concurrently and kills the server after `kill_after` answers (never,
/// when `None`); returns the answers received.
async fn round(env: &Path, n: usize, ids: &[u64], kill_after: Option<usize>) -> Vec<(u64, Answer)> {
    let env_owned = env.to_owned();
    let (child, port) = tokio::task::spawn_blocking(move || serve(&env_owned, n))
        .await
        .unwrap();
    let signer = client(env, port).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for &i in ids {
        let mut signer = signer.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let got = answer(signer.sign(request(i)).await);
            let _ = tx.send((i, got));
        });
    }
    drop(tx);
    let mut child = Some(child);
    let mut answers = Vec::new();
    while let Some((i, got)) = rx.recv().await {
        if let Some(a) = got {
            answers.push((i, a));
        }
        if kill_after.is_some_and(|k| answers.len() >= k) {
            if let Some(c) = child.take() {
                kill(c);
            }
        }
    }
    if let Some(c) = child.take() {
        kill(c);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = dev_env(dir.path());

    let mut answered: BTreeMap<u64, Answer> = BTreeMap::new();
    let mut next_id = 0u64;
    let kills = [1usize, 4, 7, 2, 10];
    for (n, k) in kills.iter().enumerate() {
        // Everything not answered yet, twelve new ids, and retries of three answered ones.
        let mut ids: Vec<u64> = (0..next_id).filter(|i| !answered.contains_key(i)).collect();
        ids.extend(next_id..next_id + 12);
        next_id += 12;
        ids.extend(answered.keys().step_by(5).take(3).copied());
        let got = round(&env, n, &ids, Some(*k)).await;
        eprintln!(
            "round {n}: sent {}, answered {} before the kill",
            ids.len(),
            got.len()
        );
        for (i, got) in got {
            if let Some(first) = answered.get(&i) {
                assert_eq!(
                    first, &got,
                    "request {i} answered differently after a restart"
                );
            }
            answered.insert(i, got);
        }
    }
    // Drain: restart until every id has its answer (no kill).
    for n in kills.len()..kills.len() + 3 {
        let ids: Vec<u64> = (0..next_id).filter(|i| !answered.contains_key(i)).collect();
        if ids.is_empty() {
            break;
        }
        for (i, got) in round(&env, n, &ids, None).await {
            answered.insert(i, got);
        }
    }
    assert_eq!(answered.len() as u64, next_id, "every request answered");

    let signed: BTreeMap<u64, &String> = answered
        .iter()
        .filter_map(|(i, a)| match a {
            Answer::Signed(tx) => Some((*i, tx)),
            Answer::Denied(_) => None,
        })
        .collect();
    let signed_sum: u128 = signed.keys().map(|i| amount(*i)).sum();
    assert!(!signed.is_empty());
    assert!(signed.len() < answered.len(), "the cap was reached");
    eprintln!(
        "{} requests: {} signed ({signed_sum} wei), {} denied",
        answered.len(),
        signed.len(),
        answered.len() - signed.len()
    );

    // The state, read directly (the server is gone).
    let state = State::open_sled(&env.join("state")).unwrap();
    let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
    let unsealed = custos::keystore::KeyStore::open(&env.join("store"))
        .unwrap()
        .unseal(&custos::secret::SecretString::new(
            passphrase.trim().to_owned(),
        ))
        .unwrap();
    state.set_auth(Some(StateAuth::new(unsealed.state_key())));
    let outbox = custos::state::outbox::read_after(&state, 0, u64::MAX, 10_000).unwrap();
    assert_eq!(outbox.len(), signed.len(), "one outbox entry per signed id");
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &outbox {
        by_id
            .entry(e.request_id.clone())
            .or_default()
            .push(e.tx_id.clone());
    }
    for (i, tx) in &signed {
        let entries = by_id
            .get(&format!("crash-{i}"))
            .unwrap_or_else(|| panic!("crash-{i} signed but not in the outbox"));
        assert_eq!(entries, &vec![(*tx).clone()], "crash-{i}");
    }
    let usage = state
        .usage(
            &LedgerKey {
                scope: Scope::Wallet,
                name: "eth-hot".into(),
                asset: "ETH".into(),
            },
            now_unix() - 86_400,
            now_unix() + 86_400,
        )
        .unwrap();
    assert_eq!(usage.sum.to_string(), signed_sum.to_string());
    assert_eq!(usage.count, signed.len() as u64);
    assert!(signed_sum <= CAP);
    // Every limit denial was right: even the final usage had no room for it.
    for (i, a) in &answered {
        if let Answer::Denied(code) = a {
            assert!(code.contains("limit"), "crash-{i}: {code}");
            assert!(
                signed_sum + amount(*i) > CAP,
                "crash-{i} denied with room left"
            );
        }
    }
    drop(state);
    drop(unsealed);

    let out = audit_verify(&env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("audit chain intact"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_audit_byte_is_reported_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let env = dev_env(dir.path());
    let answers = round(&env, 0, &[0, 1, 2], None).await;
    assert_eq!(answers.len(), 3);
    let out = audit_verify(&env);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Flip one byte of record 3 (its MAC) behind the signer's back.
    {
        use custos::state::Tree;
        let state = State::open_sled(&env.join("state")).unwrap();
        assert!(state.count(Tree::Audit).unwrap() >= 4);
        let key = 3u64.to_be_bytes();
        let mut record = state
            .engine()
            .get_raw(Tree::Audit, &key)
            .unwrap()
            .expect("record 3");
        record[0] ^= 0x01;
        state
            .engine()
            .transact_raw(&mut |tx| tx.insert(Tree::Audit, &key, record.clone()).map(|_| ()))
            .unwrap();
        state.flush().unwrap();
    }
    let out = audit_verify(&env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("record 3"), "{stderr}");
}
