//! The signing core driven in-process, as the gRPC handlers drive it: a real key store, a real
//! policy file and a real sled state directory, principals given directly. The set-up (store,
//! wallets, policy, principals, requests) is in `core_support`.

mod bitcoin_support;
mod core_support;

use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use bitcoin_support::{consensus_verify, spent_outputs};
use core_support::*;
use custos::keystore::KeyStore;
use custos::secret::SecretString;
use custos::signing::contract::RequestRef;
use custos::signing::contract::{
    CoreError, ListPending, RequestState, SignOutcome, SignPayload, SignRequest, SignedOutput,
    SignerCore, UnsealSecret,
};
use custos::signing::now_unix;
use custos::state::audit::{self, VerifyOutcome};
use custos::state::Tree;
use tokio_stream::StreamExt;

#[tokio::test]
async fn allowed_requests_are_signed_into_the_outbox_and_audited() {
    let env = Env::new();
    let core = env.open();
    let psbt = env.psbt(1, 10_000_000, 1);
    let reply = core
        .sign(&principal(PAYER), btc_request("b-1", &psbt))
        .await
        .unwrap();
    assert_eq!(reply.decision.rule, "btc small");
    let (out, seq) = signed(&reply);
    let SignedOutput::BitcoinTransaction { raw_tx_hex, .. } = out else {
        panic!("not final: {out:?}");
    };
    consensus_verify(raw_tx_hex, &spent_outputs(&psbt));
    assert_eq!(seq, Some(1));

    let reply = core
        .sign(
            &principal(PAYER),
            eth_request("e-1", 0, 10 * MILLI_ETH, false),
        )
        .await
        .unwrap();
    let (out, seq) = signed(&reply);
    let SignedOutput::EthereumTransaction { raw_tx_hex, .. } = out else {
        panic!("{out:?}");
    };
    let raw = hex::decode(raw_tx_hex.trim_start_matches("0x")).unwrap();
    let env_tx = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    assert_eq!(env_tx.recover_signer().unwrap(), env.eth_address());
    assert_eq!(seq, Some(2));

    assert_eq!(outbox_len(&core), 2);
    let events = audit_events(&core);
    assert_eq!(
        events,
        [
            "unseal",
            "sign.allow",
            "sign.signed",
            "sign.allow",
            "sign.signed"
        ]
    );
    let last = audit::tail(core.state(), 1).unwrap().remove(0);
    assert_eq!(last.request_id.as_deref(), Some("e-1"));
    assert!(last.tx_id.unwrap().starts_with("0x"));
    assert_eq!(last.rule.as_deref(), Some("eth payouts"));
    assert!(last.policy_hash.starts_with("sha256:"));

    // The broadcaster streams both, acks the first, and resumes after it.
    let b = principal(BROADCASTER);
    let mut stream = core.stream_signed(&b, None).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!((first.sequence, second.sequence), (1, 2));
    assert_eq!(first.request_id, "b-1");
    drop(stream);
    let ack = core.ack(&b, 1).await.unwrap();
    assert_eq!((ack.acked, ack.head), (1, 2));
    let mut stream = core.stream_signed(&b, None).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().sequence, 2);
    // New entries are pushed to a live stream.
    core.sign(&principal(PAYER), eth_request("e-2", 1, MILLI_ETH, false))
        .await
        .unwrap();
    let third = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((third.sequence, third.request_id.as_str()), (3, "e-2"));
    // Only broadcasters stream.
    assert!(matches!(
        core.stream_signed(&principal(PAYER), None).await,
        Err(CoreError::Forbidden { .. })
    ));
}

#[tokio::test]
async fn denials_name_the_rule_and_code_and_leave_nothing_in_the_outbox() {
    let env = Env::new();
    let core = env.open();
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("d-1", &env.psbt(66, 1_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(denied(e), ("blocked payees".into(), "deny.rule".into()));
    let e = core
        .sign(
            &principal(PAYER),
            eth_request("d-2", 0, 2_000 * MILLI_ETH, false),
        )
        .await
        .unwrap_err();
    assert_eq!(denied(e), ("eth payouts".into(), "limit.per_tx".into()));
    let e = core
        .sign(
            &principal(OUTSIDER),
            eth_request("d-3", 0, MILLI_ETH, false),
        )
        .await
        .unwrap_err();
    // No rule could let the outsider use the wallet: refused before its payload is read.
    assert_eq!(denied(e).1, "policy-no-rule-for-principal");
    // The denial is the stored answer for that id.
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("d-1", &env.psbt(66, 1_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(denied(e).0, "blocked payees");
    assert_eq!(outbox_len(&core), 0);
    assert_eq!(wallet_usage(core.state()).0, 0);
    assert_eq!(
        audit_events(&core),
        ["unseal", "sign.deny", "sign.deny", "sign.refused"]
    );
    // A malformed payload is INVALID_ARGUMENT with the parser's message.
    let bad = SignRequest {
        request_id: "d-4".into(),
        wallet: "btc".into(),
        payload: SignPayload::BitcoinPsbt(b"not a psbt".to_vec()),
    };
    assert!(matches!(
        core.sign(&principal(PAYER), bad).await,
        Err(CoreError::InvalidPayload { .. })
    ));
}

#[tokio::test]
async fn retries_return_the_first_result_even_after_a_restart() {
    let env = Env::new();
    let psbt = env.psbt(1, 10_000_000, 1);
    let first = {
        let core = env.open();
        let first = core
            .sign(&principal(PAYER), btc_request("r-1", &psbt))
            .await
            .unwrap();
        let again = core
            .sign(&principal(PAYER), btc_request("r-1", &psbt))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(outbox_len(&core), 1);
        assert_eq!(wallet_usage(core.state()), (1, "10000000".into()));
        let e = core
            .sign(
                &principal(PAYER),
                btc_request("r-1", &env.psbt(1, 20_000_000, 2)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::RequestIdConflict { .. }), "{e:?}");
        first
    };
    let core = env.open();
    let again = core
        .sign(&principal(PAYER), btc_request("r-1", &psbt))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(outbox_len(&core), 1);
    assert_eq!(wallet_usage(core.state()).0, 1);
}

#[tokio::test]
async fn needs_approval_quorum_of_distinct_approvers_then_signed() {
    let env = Env::new();
    let core = env.open();
    let psbt = env.psbt(2, 80_000_000, 1);
    let reply = core
        .sign(&principal(PAYER), btc_request("a-1", &psbt))
        .await
        .unwrap();
    let SignOutcome::Pending(p) = &reply.outcome else {
        panic!("{reply:?}")
    };
    assert_eq!(p.required, 2);
    assert_eq!(reply.decision.rule, "btc large");
    // The hold counts against the window already.
    assert_eq!(wallet_usage(core.state()), (1, "80000000".into()));
    assert_eq!(outbox_len(&core), 0);

    // The requester (also an approver here) cannot approve its own request... ALICE asks:
    let own = core
        .sign(
            &principal(ALICE),
            btc_request("a-2", &env.psbt(3, 60_000_000, 2)),
        )
        .await
        .unwrap();
    assert!(matches!(own.outcome, SignOutcome::Pending(_)));
    let e = approve_as(&core, ALICE, &RequestRef::id("a-2"), "mine")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "self-approval");
    // Outsiders are no approvers.
    let e = approve_as(&core, OUTSIDER, &RequestRef::id("a-1"), "x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not-an-approver");

    let page = core
        .list_pending(&principal(BOB), ListPending::default())
        .await
        .unwrap();
    assert_eq!(page.requests.len(), 2);

    let r = approve_as(&core, BOB, &RequestRef::id("a-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval);
    let r = approve_as(&core, BOB, &RequestRef::id("a-1"), "again")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval);
    assert_eq!(r.pending.unwrap().approvals.len(), 1);
    let r = approve_as(&core, CAROL, &RequestRef::id("a-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed, "{r:?}");
    let result = r.result.unwrap();
    assert_eq!(result.outbox_sequence, Some(1));
    let SignedOutput::BitcoinTransaction { raw_tx_hex, .. } = &result.output else {
        panic!()
    };
    consensus_verify(raw_tx_hex, &spent_outputs(&psbt));
    // Counted once: the hold became the reservation.
    assert_eq!(wallet_usage(core.state()).0, 2);
    // The retry of the original request now answers signed.
    let again = core
        .sign(&principal(PAYER), btc_request("a-1", &psbt))
        .await
        .unwrap();
    assert_eq!(signed(&again).1, Some(1));
    assert_eq!(outbox_len(&core), 1);
    let events = audit_events(&core);
    assert!(events.ends_with(&[
        "approve".into(),
        "approve".into(),
        "quorum.met".into(),
        "sign.signed".into()
    ]));

    // Reject releases the hold.
    let r = reject_as(&core, BOB, &RequestRef::id("a-2"), "no")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Rejected);
    assert_eq!(wallet_usage(core.state()), (1, "80000000".into()));
    let e = approve_as(&core, CAROL, &RequestRef::id("a-2"), "late")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not-pending");
}

#[tokio::test]
async fn expiry_releases_the_hold() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("x-1", &env.psbt(2, 70_000_000, 1)),
    )
    .await
    .unwrap();
    assert_eq!(wallet_usage(core.state()).0, 1);
    assert_eq!(core.expire_pending(now_unix()).unwrap(), 0);
    assert_eq!(core.expire_pending(now_unix() + 3_601).unwrap(), 1);
    assert_eq!(wallet_usage(core.state()).0, 0);
    let r = core
        .get_request(&principal(PAYER), &RequestRef::id("x-1"))
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Expired);
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("x-1", &env.psbt(2, 70_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "request-expired");
    assert_eq!(audit_events(&core).last().unwrap(), "expire");
}

#[tokio::test]
async fn nonce_guard_refuses_a_second_transaction_unless_it_is_a_replacement() {
    let env = Env::new();
    let core = env.open();
    core.sign(&principal(PAYER), eth_request("n-1", 5, MILLI_ETH, false))
        .await
        .unwrap();
    let e = core
        .sign(
            &principal(PAYER),
            eth_request("n-2", 5, 2 * MILLI_ETH, false),
        )
        .await
        .unwrap_err();
    assert_eq!(denied(e), ("nonce guard".into(), "nonce.reused".into()));
    let reply = core
        .sign(
            &principal(PAYER),
            eth_request("n-3", 5, 2 * MILLI_ETH, true),
        )
        .await
        .unwrap();
    signed(&reply);
    assert_eq!(outbox_len(&core), 2);
}

#[tokio::test]
async fn sealed_cores_sign_nothing() {
    let env = Env::new();
    let core = env.open_sealed();
    let req = eth_request("s-1", 0, MILLI_ETH, false);
    assert_eq!(
        core.sign(&principal(PAYER), req.clone()).await.unwrap_err(),
        CoreError::Sealed
    );
    let e = core
        .unseal(
            &principal(ADMIN),
            UnsealSecret::Passphrase(SecretString::new("wrong".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "wrong-passphrase");
    core.unseal(
        &principal(ADMIN),
        UnsealSecret::Passphrase(SecretString::new(PASS.into())),
    )
    .await
    .unwrap();
    assert!(core.seal_state().borrow().is_unsealed());
    core.sign(&principal(PAYER), req).await.unwrap();
    core.seal(&principal(ADMIN)).await.unwrap();
    assert!(!core.seal_state().borrow().is_unsealed());
    assert_eq!(
        core.sign(&principal(PAYER), eth_request("s-2", 1, MILLI_ETH, false))
            .await
            .unwrap_err(),
        CoreError::Sealed
    );
    assert_eq!(audit_events(&core).last().unwrap(), "seal");
    // The key store is held open: the CLI gets "in use".
    assert!(KeyStore::open(&env.store).is_err());
}

#[cfg(debug_assertions)]
#[tokio::test]
async fn an_unwritable_audit_fails_closed() {
    let env = Env::new();
    let core = env.open();
    core.faults().fail_audit(true);
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("f-1", &env.psbt(1, 1_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::StateUnavailable { .. }), "{e:?}");
    assert_eq!(outbox_len(&core), 0);
    assert_eq!(wallet_usage(core.state()).0, 0);
    assert_eq!(core.state().count(Tree::LedgerReservations).unwrap(), 0);
    assert_eq!(core.state().count(Tree::Requests).unwrap(), 0);
    core.faults().fail_audit(false);
    let reply = core
        .sign(
            &principal(PAYER),
            btc_request("f-1", &env.psbt(1, 1_000_000, 1)),
        )
        .await
        .unwrap();
    signed(&reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_exceed_the_window_cap() {
    let env = Env::new();
    let core = Arc::new(env.open());
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let core = core.clone();
        let psbt = env.psbt(1, 15_000_000, 100 + i);
        tasks.push(tokio::spawn(async move {
            core.sign(&principal(PAYER), btc_request(&format!("c-{i}"), &psbt))
                .await
        }));
    }
    let mut signed_sum = 0u64;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => signed_sum += 15_000_000,
            Err(e) => {
                assert_eq!(denied(e).1, "limit.window_sum");
                refused += 1;
            }
        }
    }
    assert!(signed_sum <= 100_000_000, "{signed_sum}");
    assert_eq!(signed_sum, 6 * 15_000_000, "six fit under 1 BTC");
    assert_eq!(refused, 10);
    assert_eq!(outbox_len(&core), 6);
    assert!(matches!(
        audit::verify(core.state(), &env.audit_key_of_copy()),
        Ok(VerifyOutcome::Intact { .. })
    ));
}

#[tokio::test]
async fn audit_verify_finds_tampered_and_missing_records() {
    let env = Env::new();
    {
        let core = env.open();
        for i in 0..3 {
            core.sign(
                &principal(PAYER),
                eth_request(&format!("v-{i}"), i, MILLI_ETH, false),
            )
            .await
            .unwrap();
        }
    }
    let key = env.audit_key();
    let state = env.open_state();
    assert_eq!(
        audit::verify(&state, &key).unwrap(),
        VerifyOutcome::Intact { records: 7 }
    );
    // Tamper with record 4's bytes.
    let k4 = 4u64.to_be_bytes();
    let original = state.engine().get_raw(Tree::Audit, &k4).unwrap().unwrap();
    let tampered = String::from_utf8_lossy(&original[32..]).replace("v-1", "v-9");
    let mut bytes = original[..32].to_vec();
    bytes.extend_from_slice(tampered.as_bytes());
    raw_put(&state, Tree::Audit, &k4, bytes);
    match audit::verify(&state, &key).unwrap() {
        VerifyOutcome::Broken { seq, message } => {
            assert_eq!(seq, 4);
            assert_eq!(message, "record 4: mac mismatch");
        }
        other => panic!("{other:?}"),
    }
    raw_put(&state, Tree::Audit, &k4, original);
    // A wrong key breaks at record 1.
    let wrong = custos::secret::Secret32::new([9; 32]);
    assert!(matches!(
        audit::verify(&state, &wrong).unwrap(),
        VerifyOutcome::Broken { seq: 1, .. }
    ));
    // Delete record 5; then the last one.
    let k5 = 5u64.to_be_bytes();
    let five = state.engine().get_raw(Tree::Audit, &k5).unwrap().unwrap();
    raw_remove(&state, Tree::Audit, &k5);
    assert_eq!(
        audit::verify(&state, &key).unwrap(),
        VerifyOutcome::Broken {
            seq: 5,
            message: "record 5 missing".into()
        }
    );
    raw_put(&state, Tree::Audit, &k5, five);
    raw_remove(&state, Tree::Audit, &7u64.to_be_bytes());
    assert_eq!(
        audit::verify(&state, &key).unwrap(),
        VerifyOutcome::Broken {
            seq: 7,
            message: "record 7 missing".into()
        }
    );
}

#[tokio::test]
async fn policy_reload_keeps_the_old_policy_when_the_new_one_is_invalid() {
    let env = Env::new();
    let core = env.open();
    let admin = principal(ADMIN);
    let before = core.status(&admin).await.unwrap().policy_hash.unwrap();
    std::fs::write(&env.policy, "[policy]\nname = 1\n").unwrap();
    let e = core.reload_policy(&admin).await.unwrap_err();
    assert_eq!(e.code(), "policy-invalid");
    assert!(e.to_string().contains("policy.toml:"), "{e}");
    assert_eq!(
        core.status(&admin).await.unwrap().policy_hash.unwrap(),
        before
    );
    // A valid one swaps: a deny-everything-ETH rule first.
    std::fs::write(
        &env.policy,
        policy_text(
            "[[rules]]\nname = \"eth frozen\"\neffect = \"deny\"\nchains = [\"ethereum\"]\n",
        ),
    )
    .unwrap();
    let reload = core.reload_policy(&admin).await.unwrap();
    assert_eq!(reload.previous_hash, before);
    assert_ne!(reload.hash, before);
    let e = core
        .sign(&principal(PAYER), eth_request("p-1", 0, MILLI_ETH, false))
        .await
        .unwrap_err();
    assert_eq!(denied(e).0, "eth frozen");
    let events = audit_events(&core);
    assert_eq!(
        events,
        [
            "unseal",
            "policy.reload.refused",
            "policy.reload",
            "sign.deny"
        ]
    );
    // Only admins reload.
    assert!(matches!(
        core.reload_policy(&principal(PAYER)).await,
        Err(CoreError::Forbidden { .. })
    ));
}

#[tokio::test]
async fn a_request_left_authorized_by_a_crash_is_signed_once_on_retry() {
    let env = Env::new();
    let psbt = env.psbt(1, 10_000_000, 1);
    {
        let core = env.open();
        core.sign(&principal(PAYER), btc_request("k-1", &psbt))
            .await
            .unwrap();
    }
    // Rewind the request to "authorized" without its result, as a crash after the first commit
    // would leave it (and drop its outbox entry).
    {
        let state = env.open_state();
        let key = custos::state::requests::request_key(PAYER, "k-1");
        let mut r = custos::state::requests::get(&state, &key).unwrap().unwrap();
        r.state = custos::state::requests::StoredState::Authorized;
        r.result = None;
        let seq = r.outbox_seq.take().unwrap();
        state
            .transact(|tx| {
                custos::state::requests::put_in(tx, &r)?;
                tx.remove(Tree::Outbox, &seq.to_be_bytes())?;
                tx.remove(Tree::Meta, b"outbox_head")?;
                Ok(())
            })
            .unwrap();
        state.flush().unwrap();
    }
    let core = env.open_sealed();
    // Unsealing runs the recovery pass, which signs it.
    unseal(&core);
    assert_eq!(outbox_len(&core), 1);
    let reply = core
        .sign(&principal(PAYER), btc_request("k-1", &psbt))
        .await
        .unwrap();
    assert_eq!(signed(&reply).1, Some(1));
    assert_eq!(outbox_len(&core), 1);
    assert_eq!(wallet_usage(core.state()).0, 1);
}
