//! The real signing core behind the real gRPC server, over loopback mutual TLS, driven with the
//! generated tonic clients so that status codes and metadata are checked exactly.
//!
//! The environment is what an operator gets from `custos dev env` (the example policy, its
//! principals' certificates, mainnet wallets from the test mnemonic — dev keys, never funded); the
//! server runs in-process (`service::start` with a `SigningCore`) so the test can inject an
//! unwritable audit through the core's debug-only [`FaultPlan`](custos::signing::FaultPlan).

mod bitcoin_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bitcoin_support::{script, wallet, Builder, ABANDON, ZOO};
use custos::governance::{SecretSigningKey, VoteContext, VoteDecision, VoteStatement};
use custos::keys::Purpose;
use custos::secret::SecretString;
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::outbox_client::OutboxClient;
use custos::service::proto::signer_client::SignerClient;
use custos::service::proto::{
    self, sign_request::Payload, sign_response::Outcome, signed, AckRequest, ApproveRequest,
    BitcoinPsbtPayload, EthereumTransactionPayload, SealRequest, SignRequest, SignResponse,
    StatusRequest, StreamSignedRequest,
};
use custos::service::tls::client_tls;
use custos::service::{start, RunningServer, TlsMaterial};
use custos::signing::{CoreConfig, SigningCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_custos");
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";
const ETH: u128 = 1_000_000_000_000_000_000;

/// A `custos dev env` directory with the example policy, and the core and server over it.
struct Env {
    _dir: tempfile::TempDir,
    env: PathBuf,
    core: Arc<SigningCore>,
    server: RunningServer,
}

fn dev_env(dir: &Path) -> PathBuf {
    let env = dir.join("env");
    let mnemonic = dir.join("mnemonic.txt");
    std::fs::write(&mnemonic, ABANDON).unwrap();
    let out = Command::new(BIN)
        .args(["dev", "env", env.to_str().unwrap(), "--port", "0"])
        .args(["--import-mnemonic-file", mnemonic.to_str().unwrap()])
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = dev_env(dir.path());
        // The environment's own compliance configuration: the policy carries both signatures.
        let config = custos::config::Config::load(&env.join("custos.toml")).unwrap();
        let core = SigningCore::open(CoreConfig {
            store_dir: env.join("store"),
            state_dir: env.join("state"),
            policy_path: env.join("policy.toml"),
            policy_trust: config.policy_trust(),
            ..CoreConfig::new(Default::default(), Default::default(), Default::default())
        })
        .unwrap();
        let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
        core.unseal_with_passphrase(&SecretString::new(passphrase.trim().to_owned()))
            .unwrap();
        let core = Arc::new(core);
        let tls = TlsMaterial::load(
            &env.join("tls/server.pem"),
            &env.join("tls/server.key"),
            &env.join("tls/ca.pem"),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = start(core.clone(), &tls, listener, Some(metrics))
            .await
            .unwrap();
        Env {
            _dir: dir,
            env,
            core,
            server,
        }
    }

    async fn channel(&self, client: &str) -> Channel {
        let tls = self.env.join("tls");
        let material = TlsMaterial::load(
            &tls.join(format!("clients/{client}.pem")),
            &tls.join(format!("clients/{client}.key")),
            &tls.join("ca.pem"),
        )
        .unwrap();
        Endpoint::from_shared(format!("https://localhost:{}", self.server.addr.port()))
            .unwrap()
            .tls_config(client_tls(&material, "localhost"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("mutual TLS")
    }

    async fn signer(&self, client: &str) -> SignerClient<Channel> {
        SignerClient::new(self.channel(client).await)
    }

    async fn outbox(&self, client: &str) -> OutboxClient<Channel> {
        OutboxClient::new(self.channel(client).await)
    }

    async fn admin(&self, client: &str) -> AdminClient<Channel> {
        AdminClient::new(self.channel(client).await)
    }

    fn outbox_len(&self) -> usize {
        self.core
            .state()
            .count(custos::state::Tree::Outbox)
            .unwrap() as usize
    }

    /// `GET /metrics` over plain HTTP on the metrics port.
    async fn scrape(&self) -> String {
        let addr = self.server.metrics_addr.expect("metrics listener");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    }
}

/// An EIP-1559 transfer of `wei` on Ethereum mainnet (the example policy's wallets).
fn eth_tx(wallet: &str, id: &str, nonce: u64, wei: u128) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": ETH_PAYEE,
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

/// A PSBT spending 0.01 BTC of btc-hot: `sats` to another wallet, change back, 1000 sat fee.
fn btc_tx(id: &str, sats: u64, salt: u32) -> SignRequest {
    let (hot, _) = wallet(
        "btc-hot",
        ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    let (other, _) = wallet("other", ZOO, bitcoin::Network::Bitcoin, Purpose::Bip84);
    let mut builder = Builder::new();
    builder.salt = salt;
    let psbt = builder
        .ours(&hot, false, 0, 1_000_000)
        .pay(script(&other, false, 0), sats)
        .change(&hot, 0, 1_000_000 - sats - 1_000)
        .build();
    SignRequest {
        request_id: id.into(),
        wallet: "btc-hot".into(),
        payload: Some(Payload::BitcoinPsbt(BitcoinPsbtPayload {
            psbt: psbt.serialize(),
        })),
    }
}

/// The tx id of a signed answer.
fn signed_tx_id(reply: &SignResponse) -> String {
    let Some(Outcome::Signed(s)) = &reply.outcome else {
        panic!("not signed: {reply:?}");
    };
    match s.result.as_ref().expect("a result") {
        signed::Result::BitcoinTransaction(t) => t.txid.clone(),
        signed::Result::EthereumTransaction(t) => t.tx_hash.clone(),
        other => panic!("not broadcastable: {other:?}"),
    }
}

fn code_of(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("custos-code")
        .expect("custos-code metadata")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn metrics_show_decisions_by_rule_latency_and_outbox_lag() {
    let env = Env::new().await;
    let mut signer = env.signer("withdrawals").await;
    let reply = signer
        .sign(eth_tx("eth-hot", "m-1", 0, ETH))
        .await
        .unwrap()
        .into_inner();
    signed_tx_id(&reply);
    let denied = signer
        .sign(eth_tx("eth-hot", "m-2", 1, 51 * ETH))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let text = env.scrape().await;
    assert!(
        text.contains("custos_decisions_total{rule=\"eth hot withdrawals\",outcome=\"allow\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("custos_decisions_total{rule=\"eth hot withdrawals\",outcome=\"deny\"} 1"),
        "{text}"
    );
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("custos_sign_seconds_count "))
        .expect("latency histogram")
        .parse()
        .unwrap();
    assert!(count >= 1, "{text}");
    assert!(text.contains("custos_outbox_lag 1"), "{text}");
    assert!(text.contains("custos_sealed 0"), "{text}");

    // The broadcaster acks: the lag drops to 0.
    let mut outbox = env.outbox("broadcaster").await;
    outbox.ack(AckRequest { sequence: 1 }).await.unwrap();
    assert!(env.scrape().await.contains("custos_outbox_lag 0"));
}

#[tokio::test]
async fn roles_are_enforced_per_service() {
    let env = Env::new().await;
    // A signer is not an approver.
    let err = env
        .signer("withdrawals")
        .await
        .approve(ApproveRequest {
            request_id: "x".into(),
            reason: "mine".into(),
            requester: String::new(),
            signature: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // An approver is not a broadcaster.
    let err = env
        .outbox("officers-alice")
        .await
        .stream_signed(StreamSignedRequest {
            after_sequence: Some(0),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A broadcaster is not an admin.
    let err = env
        .admin("broadcaster")
        .await
        .status(StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = env
        .admin("withdrawals")
        .await
        .seal(SealRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // The admin is.
    let status = env
        .admin("ops-admin")
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.principal, "ops-admin.exchange.example");
}

#[tokio::test]
async fn every_refusal_has_its_status_code() {
    let env = Env::new().await;
    let mut signer = env.signer("withdrawals").await;

    // INVALID_ARGUMENT with the parser's own message.
    let mut garbage = btc_tx("bad-1", 500_000, 1);
    garbage.payload = Some(Payload::BitcoinPsbt(BitcoinPsbtPayload {
        psbt: b"not a psbt".to_vec(),
    }));
    let err = signer.sign(garbage).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let (hot, _) = wallet(
        "btc-hot",
        ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    let Err(parser) = custos::chains::bitcoin::decode(&hot, b"not a psbt", &Default::default())
    else {
        panic!("garbage parsed as a PSBT");
    };
    let parser = parser.to_string();
    assert!(err.message().contains(&parser), "{err:?} / {parser}");
    assert_eq!(code_of(&err), "invalid-psbt");

    // PERMISSION_DENIED by a limit, with the stable code in metadata and in the message.
    let err = signer
        .sign(eth_tx("eth-hot", "big-1", 0, 51 * ETH))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let code = code_of(&err).to_owned();
    assert!(!code.is_empty());
    assert!(err.message().starts_with(&format!("[{code}] ")), "{err:?}");
    assert_eq!(
        err.metadata().get("custos-rule").unwrap(),
        "eth hot withdrawals"
    );

    // ALREADY_EXISTS: a request id reused with another payload.
    let first = signer
        .sign(btc_tx("w-1", 500_000, 1))
        .await
        .unwrap()
        .into_inner();
    let again = signer
        .sign(btc_tx("w-1", 500_000, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed_tx_id(&first), signed_tx_id(&again));
    let err = signer.sign(btc_tx("w-1", 400_000, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(env.outbox_len(), 1);

    // UNAVAILABLE when the audit cannot be written; nothing reaches the outbox.
    env.core.faults().fail_audit(true);
    let err = signer.sign(btc_tx("w-2", 300_000, 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(env.outbox_len(), 1);
    env.core.faults().fail_audit(false);
    // Nothing was reserved or stored either: the same request signs once the audit is back.
    signed_tx_id(
        &signer
            .sign(btc_tx("w-2", 300_000, 2))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(env.outbox_len(), 2);

    // FAILED_PRECONDITION while sealed.
    env.admin("ops-admin")
        .await
        .seal(SealRequest {})
        .await
        .unwrap();
    let err = signer.sign(btc_tx("w-3", 300_000, 3)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(code_of(&err), "sealed");
    assert_eq!(env.outbox_len(), 2);
}

#[tokio::test]
async fn approval_flow_and_broadcaster_resumes_after_its_ack() {
    let env = Env::new().await;
    let mut treasury = env.signer("treasury").await;
    let reply = treasury
        .sign(eth_tx("eth-treasury", "t-1", 0, 100 * ETH))
        .await
        .unwrap()
        .into_inner();
    let Some(Outcome::Pending(pending)) = &reply.outcome else {
        panic!("not pending: {reply:?}");
    };
    let quorum = pending.quorum.as_ref().unwrap();
    assert_eq!(quorum.required, 2);
    assert_eq!(quorum.roles, ["approver"]);
    assert_eq!(reply.decision.as_ref().unwrap().rule, "treasury moves");
    assert_eq!(env.outbox_len(), 0);

    // The requester holds no approver role: it cannot approve its own request.
    let err = treasury
        .approve(ApproveRequest {
            request_id: "t-1".into(),
            reason: "mine".into(),
            requester: String::new(),
            signature: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Each officer signs the vote with the key `custos dev env` made for it.
    let approve = |who: &'static str| {
        let env = &env;
        async move {
            let mut signer = env.signer(who).await;
            let ctx = signer
                .get_request(proto::GetRequestRequest {
                    request_id: "t-1".into(),
                    requester: String::new(),
                })
                .await?
                .into_inner()
                .request
                .and_then(|r| r.vote_context);
            let key =
                SecretSigningKey::load(&env.env.join(format!("approver-keys/{who}.pem"))).unwrap();
            let reason = format!("checked by {who}");
            let signature = ctx.map(|c| {
                let statement = VoteStatement {
                    context: VoteContext {
                        custody: c.custody,
                        request_id: c.request_id,
                        requester: c.requester,
                        wallet: c.wallet,
                        payload_sha256: c.payload_sha256,
                        intent: c.intent,
                    },
                    approver: format!("spiffe://exchange.example/{}", who.replace('-', "/")),
                    key: key.public().to_text(),
                    decision: VoteDecision::Approve,
                    reason: reason.clone(),
                    at: custos::signing::now_unix(),
                };
                proto::VoteSignature {
                    at: statement.at,
                    key: statement.key.clone(),
                    signature: key.sign(&statement.encode().unwrap()),
                }
            });
            signer
                .approve(ApproveRequest {
                    request_id: "t-1".into(),
                    reason,
                    requester: String::new(),
                    signature,
                })
                .await
        }
    };
    let one = approve("officers-alice").await.unwrap().into_inner();
    let record = one.request.unwrap();
    assert_eq!(
        record.state(),
        proto::RequestState::PendingApproval,
        "{record:?}"
    );
    // The same officer twice is still one vote.
    if let Ok(twice) = approve("officers-alice").await {
        let record = twice.into_inner().request.unwrap();
        assert_eq!(record.state(), proto::RequestState::PendingApproval);
    }
    assert_eq!(env.outbox_len(), 0);
    let two = approve("officers-bob").await.unwrap().into_inner();
    let record = two.request.unwrap();
    assert_eq!(record.state(), proto::RequestState::Signed, "{record:?}");
    let tx_id = match record.result.unwrap().result.unwrap() {
        signed::Result::EthereumTransaction(t) => t.tx_hash,
        other => panic!("{other:?}"),
    };

    // A second signed transaction, from the hot wallet.
    let hot = env
        .signer("withdrawals")
        .await
        .sign(eth_tx("eth-hot", "h-1", 0, ETH))
        .await
        .unwrap()
        .into_inner();
    let hot_id = signed_tx_id(&hot);

    // The broadcaster streams from cursor 0: both, in order.
    let mut outbox = env.outbox("broadcaster").await;
    let mut stream = outbox
        .stream_signed(StreamSignedRequest {
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await;
    let second = next(&mut stream).await;
    assert_eq!((first.sequence, second.sequence), (1, 2));
    assert_eq!(first.request_id, "t-1");
    assert_eq!(first.tx_id, tx_id);
    assert_eq!(second.tx_id, hot_id);
    let acked = outbox
        .ack(AckRequest { sequence: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((acked.acked_sequence, acked.head_sequence), (1, 2));
    drop(stream);

    // Reconnecting without a cursor resumes after the ack.
    let mut outbox = env.outbox("broadcaster").await;
    let mut stream = outbox
        .stream_signed(StreamSignedRequest {
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let resumed = next(&mut stream).await;
    assert_eq!(resumed.sequence, 2);
    assert_eq!(resumed.tx_id, hot_id);

    // A live stream receives what is signed next.
    let live = env
        .signer("withdrawals")
        .await
        .sign(eth_tx("eth-hot", "h-2", 1, ETH))
        .await
        .unwrap()
        .into_inner();
    let pushed = next(&mut stream).await;
    assert_eq!(pushed.sequence, 3);
    assert_eq!(pushed.tx_id, signed_tx_id(&live));
}

/// The next outbox entry (bounded wait: a missing entry fails the test instead of hanging it).
async fn next(stream: &mut tonic::Streaming<proto::OutboxEntry>) -> proto::OutboxEntry {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("an outbox entry arrives")
        .expect("the stream stays open")
        .expect("an entry, not an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signs_never_exceed_the_rolling_limit() {
    let env = Env::new().await;
    // eth hot withdrawals: 200 ETH per 24h for the wallet. 24 requests of 10 ETH (distinct
    // nonces): exactly 20 fit.
    let mut tasks = Vec::new();
    for i in 0..24u64 {
        let mut signer = env.signer("withdrawals").await;
        tasks.push(tokio::spawn(async move {
            signer
                .sign(eth_tx("eth-hot", &format!("c-{i}"), i, 10 * ETH))
                .await
        }));
    }
    let mut signed_wei = 0u128;
    let mut denied = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(reply) => {
                signed_tx_id(&reply.get_ref().clone());
                signed_wei += 10 * ETH;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                denied += 1;
            }
        }
    }
    assert!(signed_wei <= 200 * ETH, "{signed_wei}");
    assert_eq!(signed_wei, 200 * ETH, "every request that fit was signed");
    assert_eq!(denied, 4);
    assert_eq!(env.outbox_len(), 20);
}

#[tokio::test]
async fn admin_reload_policy_needs_the_compliance_signatures() {
    let env = Env::new().await;
    let mut admin = env.admin("ops-admin").await;
    let running = admin
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .policy_hash;

    // A change of meaning nobody signed: FAILED_PRECONDITION policy-unsigned, the message names
    // what is missing, and the running policy stays.
    let policy_path = env.env.join("policy.toml");
    let original = std::fs::read_to_string(&policy_path).unwrap();
    let changed = original.replace(
        "admin = [\"ops-admin.exchange.example\"]",
        "admin = [\"ops-admin.exchange.example\", \"spiffe://exchange.example/auditor\"]",
    );
    assert_ne!(changed, original, "the example policy's admin role moved");
    std::fs::write(&policy_path, &changed).unwrap();
    let err = admin
        .reload_policy(proto::ReloadPolicyRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(code_of(&err), "policy-unsigned");
    assert!(
        err.message().contains("changed after it was signed"),
        "{err:?}"
    );
    assert!(err.message().contains("2 more needed"), "{err:?}");
    let after = admin
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .policy_hash;
    assert_eq!(after, running);

    // One officer of two: still refused, naming the one missing.
    let sign_as = |officer: &str| {
        let out = Command::new(BIN)
            .args(["policy", "sign"])
            .arg(&policy_path)
            .arg("--key")
            .arg(env.env.join(format!("compliance/{officer}.pem")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sign_as("compliance-1");
    let err = admin
        .reload_policy(proto::ReloadPolicyRequest {})
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "policy-unsigned");
    assert!(
        err.message()
            .contains("signed by compliance-1; 1 more needed (from compliance-2)"),
        "{err:?}"
    );

    // Both: it takes effect.
    sign_as("compliance-2");
    let reload = admin
        .reload_policy(proto::ReloadPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reload.previous_policy_hash, running);
    assert_ne!(reload.policy_hash, running);
    let after = admin
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .policy_hash;
    assert_eq!(after, reload.policy_hash);
}
