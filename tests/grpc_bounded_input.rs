//! Bounded input and a full disk, replayed over loopback mutual TLS as issue 10 describes them:
//! a principal with no role sending 3.9 MB personal messages, payloads past each limit, a state
//! disk that fills up (a real tmpfs mounted by the test) and then gets its space back.

mod exchange;
#[allow(dead_code)]
mod served;

mod bitcoin_support;
mod tmpfs;

use std::path::PathBuf;
use std::time::Duration;

use bitcoin_support::{script, wallet, Builder, ABANDON, ZOO};
use custos::governance::{SecretSigningKey, VoteContext, VoteDecision, VoteStatement};
use custos::keys::Purpose;
use custos::service::proto::{
    sign_request::Payload, sign_response::Outcome, ApproveRequest, BitcoinPsbtPayload,
    EthereumTransactionPayload, GetRequestRequest, ListWalletsRequest, PersonalMessagePayload,
    SignRequest, SignResponse, TypedDataPayload, VoteSignature,
};
use custos::signing::input_limits::{InputLimits, KIB, MIB};
use custos::state::{audit, requests, Tree};
use exchange::{Exchange, Options};
use tmpfs::Tmpfs;
use tonic::Code;

const ETH: u128 = 1_000_000_000_000_000_000;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";
/// The size of the issue's messages.
const ATTACK_BYTES: usize = 3_900_000;

fn eth_tx_with_data(wallet: &str, id: &str, nonce: u64, wei: u128, data: &[u8]) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": format!("{nonce:#x}"),
        "gas": "0x30000",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": ETH_PAYEE,
        "value": format!("{wei:#x}"),
        "data": format!("0x{}", hex::encode(data)),
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

fn eth_tx(wallet: &str, id: &str, nonce: u64, wei: u128) -> SignRequest {
    eth_tx_with_data(wallet, id, nonce, wei, &[])
}

fn message(wallet: &str, id: &str, bytes: Vec<u8>) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::PersonalMessage(PersonalMessagePayload {
            message: bytes,
            address_index: None,
        })),
    }
}

fn typed(id: &str, json: String) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: "eth-hot".into(),
        payload: Some(Payload::TypedData(TypedDataPayload {
            json,
            address_index: None,
        })),
    }
}

/// A PSBT of btc-hot with `inputs` inputs of 0.01 BTC and `outputs` outputs (payments to another
/// wallet, the last one change), 1000 sat fee.
fn psbt(id: &str, inputs: usize, outputs: usize) -> SignRequest {
    let (hot, _) = wallet(
        "btc-hot",
        ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    let (other, _) = wallet("other", ZOO, bitcoin::Network::Bitcoin, Purpose::Bip84);
    let mut builder = Builder::new();
    for i in 0..inputs {
        builder = builder.ours(&hot, false, u32::try_from(i).unwrap(), 1_000_000);
    }
    let total = 1_000_000 * inputs as u64 - 1_000;
    let each = 10_000;
    for i in 0..outputs - 1 {
        builder = builder.pay(script(&other, false, u32::try_from(i).unwrap()), each);
    }
    let builder = builder.change(&hot, 0, total - each * (outputs as u64 - 1));
    SignRequest {
        request_id: id.into(),
        wallet: "btc-hot".into(),
        payload: Some(Payload::BitcoinPsbt(BitcoinPsbtPayload {
            psbt: builder.build().serialize(),
        })),
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

fn assert_signed(reply: &SignResponse) {
    assert!(
        matches!(reply.outcome, Some(Outcome::Signed(_))),
        "{reply:?}"
    );
}

/// Nothing about `id` reached the state, whoever the requester.
fn assert_not_stored(x: &Exchange, id: &str) {
    assert!(
        requests::keys_with_id(x.core.state(), id)
            .unwrap()
            .is_empty(),
        "request '{id}' was stored"
    );
}

fn outbox_len(x: &Exchange) -> u64 {
    x.core.state().count(Tree::Outbox).unwrap()
}

#[tokio::test]
async fn an_oversized_message_is_refused_unread_and_the_server_keeps_serving() {
    let x = Exchange::start(Options::default()).await;
    let limit = InputLimits::default().grpc_message_bytes();
    let audit_before = audit::head(x.core.state()).unwrap();
    let bytes_before = x.state_bytes();
    for who in ["withdrawals", "intruder"] {
        let mut client = x.signer(who).await;
        let e = client
            .sign(message("eth-hot", "big-1", vec![b'a'; ATTACK_BYTES]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert_eq!(code_of(&e), "message-too-large");
        assert!(e.message().starts_with("[message-too-large] "), "{e:?}");
        assert!(
            e.message()
                .contains(&format!("the limit is: {limit} bytes")),
            "{e:?}"
        );
        // The same connection keeps working.
        client.list_wallets(ListWalletsRequest {}).await.ok();
    }
    // Not decoded by the core, not stored, not audited: nothing was written at all.
    assert_not_stored(&x, "big-1");
    assert_eq!(audit::head(x.core.state()).unwrap(), audit_before);
    assert_eq!(x.state_bytes(), bytes_before);
    // And others are served as before.
    let mut client = x.signer("withdrawals").await;
    assert_signed(
        &client
            .sign(eth_tx("eth-hot", "after-1", 0, ETH))
            .await
            .unwrap()
            .into_inner(),
    );
}

#[tokio::test]
async fn the_issue_attack_no_role_and_3_9_mb_messages_grows_nothing() {
    // An operator raised the gRPC limit: the messages now reach the core, which still reads none
    // of them from a principal no rule reaches, and measures those of a principal it does.
    let x = Exchange::start(Options {
        max_message_bytes: Some(8 * MIB),
        ..Options::default()
    })
    .await;
    // One signed request first, so the state is warm and its size settled.
    let mut withdrawals = x.signer("withdrawals").await;
    assert_signed(
        &withdrawals
            .sign(eth_tx("eth-hot", "warm-1", 0, ETH))
            .await
            .unwrap()
            .into_inner(),
    );
    let bytes_before = x.state_bytes();
    let audit_before = audit::head(x.core.state()).unwrap();
    let mut intruder = x.signer("intruder").await;
    for i in 0..10 {
        let id = format!("attack-{i}");
        let e = intruder
            .sign(message("eth-hot", &id, vec![b'x'; ATTACK_BYTES]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert_eq!(code_of(&e), "policy-no-rule-for-principal");
        assert_not_stored(&x, &id);
    }
    // Ten refusals audited, each a few hundred bytes and never the payload: 39 MB sent (78 MB
    // once hex-encoded, as the issue measured it stored) left less than 1 MiB.
    let records = audit::tail(x.core.state(), 20).unwrap();
    let refused: Vec<_> = records.iter().filter(|r| r.seq > audit_before).collect();
    assert_eq!(refused.len(), 10);
    for r in &refused {
        assert_eq!(r.event, "sign.refused");
        assert_eq!(
            r.detail.as_deref(),
            Some("personal message of 3900000 bytes refused unread")
        );
        assert!(!format!("{r:?}").contains("xxxxxxxx"));
    }
    let grown = x.state_bytes().saturating_sub(bytes_before);
    assert!(grown < MIB as u64, "the state grew by {grown} bytes");

    // A principal a rule reaches gets its payload measured before anything reads it.
    let e = withdrawals
        .sign(message("eth-hot", "huge-1", vec![b'x'; ATTACK_BYTES]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(code_of(&e), "payload-too-large");
    assert!(e.message().contains("3900000 bytes"), "{e:?}");
    assert!(
        e.message().contains("16384 ([limits] message_bytes)"),
        "{e:?}"
    );
    assert_not_stored(&x, "huge-1");
    assert_eq!(
        audit::head(x.core.state()).unwrap(),
        audit_before + 10,
        "a payload refused for its size is not audited"
    );
}

#[tokio::test]
async fn each_limit_is_named_with_its_value_and_nothing_is_stored() {
    let limits = InputLimits {
        psbt_inputs: 2,
        psbt_outputs: 3,
        eth_calldata_bytes: 16,
        typed_data_depth: 5,
        typed_data_items: 4,
        ..InputLimits::default()
    };
    let x = Exchange::start(Options {
        limits,
        ..Options::default()
    })
    .await;
    let mut client = x.signer("withdrawals").await;
    let cases: Vec<(SignRequest, &str, &str)> = vec![
        (
            psbt("p-in", 3, 2),
            "psbt-too-many-inputs",
            "the psbt has 3 inputs; the limit is 2 ([limits] psbt_inputs)",
        ),
        (
            psbt("p-out", 1, 4),
            "psbt-too-many-outputs",
            "the psbt has 4 outputs; the limit is 3 ([limits] psbt_outputs)",
        ),
        (
            eth_tx_with_data("eth-hot", "calldata", 0, 0, &[7; 17]),
            "eth-calldata-too-large",
            "17 bytes of calldata; the limit is 16 ([limits] eth_calldata_bytes)",
        ),
        (
            typed("deep", r#"{"a":{"b":{"c":{"d":{"e":{}}}}}}"#.into()),
            "typed-data-too-deep",
            "the limit is 5 ([limits] typed_data_depth)",
        ),
        (
            typed("wide", r#"{"types":[1,2,3,4,5]}"#.into()),
            "typed-data-too-many-items",
            "the limit is 4 ([limits] typed_data_items)",
        ),
        (
            message("eth-hot", "msg", vec![b'm'; 16 * KIB + 1]),
            "payload-too-large",
            "the personal message is 16385 bytes; the limit is 16384 ([limits] message_bytes)",
        ),
        (
            eth_tx_with_data("eth-hot", "tx", 0, 0, &[1; 130 * KIB]),
            "payload-too-large",
            "([limits] eth_transaction_bytes)",
        ),
    ];
    for (request, code, text) in cases {
        let id = request.request_id.clone();
        let e = client.sign(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{id}: {e:?}");
        assert_eq!(code_of(&e), code, "{id}: {e:?}");
        assert!(e.message().contains(text), "{id}: {e:?}");
        assert_not_stored(&x, &id);
    }
    // At the limits, the limits let it through (and the policy decides).
    assert_signed(&client.sign(psbt("p-ok", 2, 3)).await.unwrap().into_inner());
    let e = client
        .sign(message("eth-hot", "msg-ok", vec![b'm'; 16 * KIB]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

/// Bounds a call that must answer fast: a hang fails the test instead of hanging it.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call answered instead of hanging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_is_unavailable_at_once_and_signing_resumes_when_space_returns() {
    let disk = Tmpfs::mount(32 * MIB);
    let state_dir = disk.path().join("state");
    let x = Exchange::start(Options {
        limits: InputLimits {
            state_min_free_bytes: 4 * MIB as u64,
            ..InputLimits::default()
        },
        state_dir: Some(state_dir.clone()),
        ..Options::default()
    })
    .await;
    let mut withdrawals = x.signer("withdrawals").await;
    assert_signed(
        &withdrawals
            .sign(eth_tx("eth-hot", "h-1", 0, ETH))
            .await
            .unwrap()
            .into_inner(),
    );
    let pending = x
        .signer("treasury")
        .await
        .sign(eth_tx("eth-treasury", "t-1", 0, 100 * ETH))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(pending.outcome, Some(Outcome::Pending(_))));

    let filler = disk.fill();
    let audit_before = audit::head(x.core.state()).unwrap();
    let outbox_before = outbox_len(&x);
    let bytes_before = x.state_bytes();

    // Sign: UNAVAILABLE at once, naming the disk; a vote too; nothing half-written.
    let e = bounded(withdrawals.sign(eth_tx("eth-hot", "h-2", 1, ETH)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(code_of(&e), "state-unavailable");
    assert!(e.message().contains("state disk full"), "{e:?}");
    assert!(
        e.message().contains(&state_dir.display().to_string()),
        "{e:?}"
    );
    let mut alice = x.signer("alice").await;
    let vote = signed_vote(&x, &mut alice, "officers-alice", "t-1", "checked").await;
    let e = bounded(alice.approve(vote.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("state disk full"), "{e:?}");
    assert_not_stored(&x, "h-2");
    assert_eq!(audit::head(x.core.state()).unwrap(), audit_before);
    assert_eq!(outbox_len(&x), outbox_before);
    assert_eq!(x.state_bytes(), bytes_before);
    // Reads still answer.
    withdrawals
        .get_request(GetRequestRequest {
            request_id: "h-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Space returns: the next calls go through, without a restart.
    std::fs::remove_file(filler).unwrap();
    assert_signed(
        &bounded(withdrawals.sign(eth_tx("eth-hot", "h-2", 1, ETH)))
            .await
            .unwrap()
            .into_inner(),
    );
    let record = bounded(alice.approve(vote)).await.unwrap().into_inner();
    assert_eq!(record.request.unwrap().pending.unwrap().approvals.len(), 1);
    drop(x);
}

/// The guard off: sled itself meets ENOSPC mid-write. Returns the exchange, the filler, and the
/// requests answered signed (acknowledged) before and while the disk filled.
async fn sled_meets_enospc(disk: &Tmpfs) -> (Exchange, PathBuf, Vec<String>) {
    let x = Exchange::start(Options {
        limits: InputLimits {
            state_min_free_bytes: 0,
            state_flush_timeout_secs: 10,
            ..InputLimits::default()
        },
        state_dir: Some(disk.path().join("state")),
        ..Options::default()
    })
    .await;
    let mut withdrawals = x.signer("withdrawals").await;
    assert_signed(
        &withdrawals
            .sign(eth_tx("eth-hot", "h-1", 0, ETH))
            .await
            .unwrap()
            .into_inner(),
    );
    let mut acknowledged = vec!["h-1".to_owned()];
    let filler = disk.fill();
    // Requests until one needs a byte the disk does not have (the first, usually).
    let mut refused = 0;
    for i in 0..20u64 {
        let id = format!("f-{i}");
        match bounded(withdrawals.sign(eth_tx("eth-hot", &id, 1 + i, ETH))).await {
            Ok(reply) => {
                assert_signed(&reply.into_inner());
                acknowledged.push(id);
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the full disk refused nothing");
    // Once sled has failed a write, every call answers UNAVAILABLE at once, reads included.
    for i in 0..5 {
        let e = bounded(withdrawals.sign(eth_tx("eth-hot", &format!("g-{i}"), 100 + i, ETH)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    (x, filler, acknowledged)
}

/// Every acknowledged request is there, signed.
async fn assert_acknowledged_kept(x: &Exchange, acknowledged: &[String]) {
    let mut withdrawals = x.signer("withdrawals").await;
    for id in acknowledged {
        let record = withdrawals
            .get_request(GetRequestRequest {
                request_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged request {id} lost: {e:?}"))
            .into_inner();
        assert!(record.request.unwrap().result.is_some(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sled_meets_enospc_itself_calls_fail_fast_and_a_restart_loses_nothing_acknowledged() {
    let disk = Tmpfs::mount(16 * MIB);
    let (x, filler, acknowledged) = sled_meets_enospc(&disk).await;
    // (sled cannot even open a database on a full disk: its recovery writes.)
    std::fs::remove_file(filler).unwrap();
    let x = x.restart().await;
    assert_acknowledged_kept(&x, &acknowledged).await;
    let mut withdrawals = x.signer("withdrawals").await;
    assert_signed(
        &bounded(withdrawals.sign(eth_tx("eth-hot", "g-0", 100, ETH)))
            .await
            .unwrap()
            .into_inner(),
    );
    drop(x);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sled_meets_enospc_itself_signing_resumes_without_a_restart() {
    let disk = Tmpfs::mount(16 * MIB);
    let (x, filler, acknowledged) = sled_meets_enospc(&disk).await;
    // Space returns: the next call reopens the state database in place and goes on.
    std::fs::remove_file(filler).unwrap();
    let mut withdrawals = x.signer("withdrawals").await;
    assert_signed(
        &bounded(withdrawals.sign(eth_tx("eth-hot", "g-0", 100, ETH)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_acknowledged_kept(&x, &acknowledged).await;
    // A restart unseals over it: every record, the digest, the audit chain and the anchor are
    // checked at unseal, which refuses a state that fails.
    let x = x.restart().await;
    assert_acknowledged_kept(&x, &acknowledged).await;
    assert_acknowledged_kept(&x, &["g-0".to_owned()]).await;
    drop(x);
}

/// An approval of `request_id` signed with the approver key `custos dev env` made for `key_stem`
/// (the vote context read with `client`, whose certificate names the approver).
async fn signed_vote(
    x: &Exchange,
    client: &mut custos::service::proto::signer_client::SignerClient<tonic::transport::Channel>,
    key_stem: &str,
    request_id: &str,
    reason: &str,
) -> ApproveRequest {
    let c = client
        .get_request(GetRequestRequest {
            request_id: request_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .and_then(|r| r.vote_context)
        .expect("a pending request carries its vote context");
    let key = SecretSigningKey::load(&x.env.join(format!("approver-keys/{key_stem}.pem"))).unwrap();
    let statement = VoteStatement {
        context: VoteContext {
            custody: c.custody,
            request_id: c.request_id,
            requester: c.requester,
            wallet: c.wallet,
            payload_sha256: c.payload_sha256,
            intent: c.intent,
        },
        approver: format!("spiffe://exchange.example/{}", key_stem.replace('-', "/")),
        key: key.public().to_text(),
        decision: VoteDecision::Approve,
        reason: reason.into(),
        at: custos::signing::now_unix(),
    };
    ApproveRequest {
        request_id: request_id.into(),
        reason: reason.into(),
        signature: Some(VoteSignature {
            at: statement.at,
            key: statement.key.clone(),
            signature: key.sign(&statement.encode().unwrap()),
        }),
        ..Default::default()
    }
}
