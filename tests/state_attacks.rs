//! The state database as an attacker who administers it would treat it: records rewritten,
//! injected, deleted, rolled back one by one or all together, a state copied from another
//! installation. None of it may ever lead to a signature; each refusal says what is wrong; what
//! can be served still is.
//!
//! Every test here failed against the state layer before records were authenticated (plain JSON
//! the core acted on): the rewritten denial was signed by the recovery pass, the transplant was
//! served, zeroed buckets reset the limits, the rolled-back state was served.

mod bitcoin_support;
mod core_support;

use core_support::*;
use custos::signing::contract::{CoreError, RequestRef, RequestState, SignerCore};
use custos::signing::now_unix;
use custos::state::audit::{self, VerifyOutcome};
use custos::state::engine::Scan;
use custos::state::requests::request_key;
use custos::state::{verify, Tree};
use tokio_stream::StreamExt;

fn raw_get(env: &Env, tree: Tree, key: &[u8]) -> Vec<u8> {
    let state = env.open_state();
    state.engine().get_raw(tree, key).unwrap().expect("record")
}

fn raw_entries(env: &Env, tree: Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    let state = env.open_state();
    state
        .engine()
        .scan_raw(&Scan::all(tree, usize::MAX))
        .unwrap()
}

fn set_raw(env: &Env, tree: Tree, key: &[u8], value: Vec<u8>) {
    let state = env.open_state();
    raw_put(&state, tree, key, value);
    state.flush().unwrap();
}

/// Replaces `from` by `to` in a stored value's body, keeping its header (version and MAC), as
/// an attacker without the key can.
fn edit_body(value: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut out = value[..33].to_vec();
    let body = String::from_utf8_lossy(&value[33..]).replace(from, to);
    assert_ne!(body.as_bytes(), &value[33..], "'{from}' not in the record");
    out.extend_from_slice(body.as_bytes());
    out
}

fn unseal_error(core: &custos::signing::SigningCore) -> CoreError {
    core.unseal_with_passphrase(&custos::secret::SecretString::new(PASS.into()))
        .unwrap_err()
}

fn state_is_sealed(core: &custos::signing::SigningCore) -> bool {
    !core.seal_state().borrow().is_unsealed()
}

#[tokio::test]
async fn a_denied_request_rewritten_to_authorized_is_never_signed() {
    let env = Env::new();
    let blocked = env.psbt(66, 10_000_000, 1);
    {
        let core = env.open();
        let e = core
            .sign(&principal(PAYER), btc_request("d-1", &blocked))
            .await
            .unwrap_err();
        assert_eq!(denied(e).1, "deny.rule");
    }
    // The attacker flips the stored state to "authorized" (keeping the header it cannot forge).
    let key = request_key(PAYER, "d-1");
    let stored = raw_get(&env, Tree::Requests, key.as_bytes());
    set_raw(
        &env,
        Tree::Requests,
        key.as_bytes(),
        edit_body(&stored, "\"state\":\"denied\"", "\"state\":\"authorized\""),
    );

    // The recovery pass at unseal does not sign it; the server serves others.
    let core = env.open();
    assert_eq!(outbox_len(&core), 0, "nothing signed by the recovery pass");
    let retry = core
        .sign(&principal(PAYER), btc_request("d-1", &blocked))
        .await
        .unwrap_err();
    assert_eq!(retry.code(), "state-tampered", "{retry}");
    assert!(retry.to_string().contains("requests"), "{retry}");
    assert_eq!(outbox_len(&core), 0, "nothing signed by the retry");
    let other = core
        .sign(
            &principal(PAYER),
            btc_request("ok-1", &env.psbt(2, 10_000_000, 2)),
        )
        .await
        .unwrap();
    assert_eq!(signed(&other).1, Some(1), "others are still served");
    assert!(
        audit_events(&core).iter().any(|e| e == "state.tampered"),
        "{:?}",
        audit_events(&core)
    );
    drop(core);

    // `custos state verify` (the library behind it) lists the record.
    let state = env.open_state();
    let report = verify::verify(&state, &env.audit_key(), None).unwrap();
    assert_eq!(report.bad_count, 1);
    assert_eq!(report.bad[0].tree, "requests");
    assert!(report.bad[0].key.contains("d-1"), "{:?}", report.bad);
}

#[tokio::test]
async fn a_record_written_without_the_key_makes_the_digest_refuse_the_state() {
    let env = Env::new();
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("d-1", &env.psbt(66, 10_000_000, 1)),
        )
        .await
        .unwrap_err();
    }
    // The attacker writes plain JSON of an authorized request (no valid header at all).
    let key = request_key(PAYER, "d-1");
    let stored = raw_get(&env, Tree::Requests, key.as_bytes());
    let json = String::from_utf8_lossy(&stored[33..]).replace("\"denied\"", "\"authorized\"");
    set_raw(&env, Tree::Requests, key.as_bytes(), json.into_bytes());
    let core = env.open_sealed();
    let e = unseal_error(&core);
    assert_eq!(e.code(), "state-rejected", "{e}");
    assert!(e.to_string().contains("digest"), "{e}");
    assert!(state_is_sealed(&core));
}

#[tokio::test]
async fn a_state_copied_from_another_installation_is_refused() {
    let ours = Env::new();
    let theirs = Env::new();
    {
        let core = theirs.open();
        core.sign(
            &principal(PAYER),
            btc_request("t-1", &theirs.psbt(2, 10_000_000, 1)),
        )
        .await
        .unwrap();
    }
    {
        let core = ours.open();
        core.sign(
            &principal(PAYER),
            btc_request("o-1", &ours.psbt(3, 10_000_000, 1)),
        )
        .await
        .unwrap();
    }
    std::fs::remove_dir_all(&ours.state).unwrap();
    std::fs::create_dir_all(&ours.state).unwrap();
    copy_dir(&theirs.state, &ours.state);
    let core = ours.open_sealed();
    let e = unseal_error(&core);
    assert_eq!(e.code(), "state-rejected", "{e}");
    assert!(e.to_string().contains("another installation"), "{e}");
    assert!(state_is_sealed(&core));
    assert!(core
        .sign(
            &principal(PAYER),
            btc_request("t-2", &ours.psbt(4, 1_000, 3))
        )
        .await
        .is_err());
}

#[tokio::test]
async fn zeroed_or_rolled_back_ledger_buckets_do_not_reset_the_limits() {
    let env = Env::new();
    {
        let core = env.open();
        for (i, n) in (10..12).enumerate() {
            core.sign(
                &principal(PAYER),
                btc_request(&format!("l-{i}"), &env.psbt(n, 45_000_000, i as u32)),
            )
            .await
            .unwrap();
        }
        assert_eq!(wallet_usage(core.state()), (2, "90000000".into()));
    }
    let before = env.state.with_extension("before");
    std::fs::create_dir_all(&before).unwrap();
    copy_dir(&env.state, &before);

    // Zero every bucket: the digest no longer matches, the state is refused.
    {
        let state = env.open_state();
        for (k, _) in state
            .engine()
            .scan_raw(&Scan::all(Tree::LedgerBuckets, usize::MAX))
            .unwrap()
        {
            raw_remove(&state, Tree::LedgerBuckets, &k);
        }
        state.flush().unwrap();
    }
    let core = env.open_sealed();
    let e = unseal_error(&core);
    assert!(e.to_string().contains("digest"), "{e}");
    drop(core);

    // One bucket put back to an older authentic version (taken after the first request): also
    // refused.
    std::fs::remove_dir_all(&env.state).unwrap();
    std::fs::create_dir_all(&env.state).unwrap();
    copy_dir(&before, &env.state);
    let first_minute_bucket = raw_entries(&env, Tree::LedgerBuckets)[0].clone();
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("l-9", &env.psbt(19, 5_000_000, 9)),
        )
        .await
        .unwrap();
    }
    set_raw(
        &env,
        Tree::LedgerBuckets,
        &first_minute_bucket.0,
        first_minute_bucket.1,
    );
    let core = env.open_sealed();
    let e = unseal_error(&core);
    assert!(e.to_string().contains("digest"), "{e}");
}

#[tokio::test]
async fn an_injected_vote_counts_for_nothing() {
    let env = Env::new();
    let core = env.open();
    let psbt = env.psbt(5, 80_000_000, 1);
    core.sign(&principal(PAYER), btc_request("v-1", &psbt))
        .await
        .unwrap();
    approve_as(&core, BOB, &RequestRef::id("v-1"), "ok")
        .await
        .unwrap();
    drop(core);
    // Add CAROL's vote to the record by hand.
    let key = request_key(PAYER, "v-1");
    let stored = raw_get(&env, Tree::Requests, key.as_bytes());
    let body = String::from_utf8_lossy(&stored[33..]).replace(
        "\"approvals\":[",
        &format!("\"approvals\":[{{\"principal\":\"{CAROL}\",\"at\":1,\"reason\":\"x\"}},"),
    );
    let mut forged = stored[..33].to_vec();
    forged.extend_from_slice(body.as_bytes());
    set_raw(&env, Tree::Requests, key.as_bytes(), forged);

    let core = env.open();
    let e = approve_as(&core, ALICE, &RequestRef::id("v-1"), "ok")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "state-tampered", "{e}");
    assert_eq!(outbox_len(&core), 0, "the forged quorum signed nothing");
}

#[tokio::test]
async fn a_rolled_back_state_is_refused_until_an_operator_accepts_it() {
    let env = Env::new();
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("r-1", &env.psbt(2, 10_000_000, 1)),
        )
        .await
        .unwrap();
    }
    let backup = env.state.with_extension("backup");
    std::fs::create_dir_all(&backup).unwrap();
    copy_dir(&env.state, &backup);
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("r-2", &env.psbt(3, 10_000_000, 2)),
        )
        .await
        .unwrap();
        core.seal(&principal(ADMIN)).await.unwrap();
    }
    // Restore the older copy: consistent in itself, but behind the anchor.
    std::fs::remove_dir_all(&env.state).unwrap();
    std::fs::create_dir_all(&env.state).unwrap();
    copy_dir(&backup, &env.state);
    {
        let core = env.open_sealed();
        let e = unseal_error(&core);
        assert_eq!(e.code(), "state-rollback", "{e}");
        assert!(e.to_string().contains("rolled back"), "{e}");
        assert!(state_is_sealed(&core));
    }
    // An emptied state is behind the anchor too.
    {
        let saved = env.state.with_extension("saved");
        std::fs::rename(&env.state, &saved).unwrap();
        let core = env.open_sealed();
        let e = unseal_error(&core);
        assert_eq!(e.code(), "state-rollback", "{e}");
        drop(core);
        std::fs::remove_dir_all(&env.state).unwrap();
        std::fs::rename(&saved, &env.state).unwrap();
    }
    // The explicit override serves it, and says so in the audit chain.
    let core = env.open_sealed_with(|c| c.unsafe_accept_state_rollback = true);
    unseal(&core);
    assert!(audit_events(&core)
        .iter()
        .any(|e| e == "state.rollback_accepted"));
}

#[tokio::test]
async fn a_truncated_audit_chain_is_refused() {
    let env = Env::new();
    {
        let core = env.open();
        for i in 0..3 {
            core.sign(
                &principal(PAYER),
                btc_request(&format!("t-{i}"), &env.psbt(2 + i, 1_000_000, i as u32)),
            )
            .await
            .unwrap();
        }
    }
    let head_before = raw_get(&env, Tree::Meta, b"audit_head");
    let backup = env.state.with_extension("backup");
    std::fs::create_dir_all(&backup).unwrap();
    copy_dir(&env.state, &backup);
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("t-9", &env.psbt(9, 1_000_000, 9)),
        )
        .await
        .unwrap();
    }
    // Delete the newest records and put the older (authentic) head back.
    let (count, _) = {
        let state = env.open_state();
        audit::head_with_mac(&state).unwrap()
    };
    let (old_count, _) = {
        let state = custos::state::State::open_sled(&backup).unwrap();
        let unsealed = custos::keystore::KeyStore::open(&env.store)
            .unwrap()
            .unseal(&custos::secret::SecretString::new(PASS.into()))
            .unwrap();
        state.set_auth(Some(custos::state::auth::StateAuth::new(
            unsealed.state_key(),
        )));
        audit::head_with_mac(&state).unwrap()
    };
    {
        let state = env.open_state();
        for seq in old_count + 1..=count {
            raw_remove(&state, Tree::Audit, &seq.to_be_bytes());
        }
        raw_put(&state, Tree::Meta, b"audit_head", head_before);
        state.flush().unwrap();
        assert!(matches!(
            audit::verify(&state, &env.audit_key()).unwrap(),
            VerifyOutcome::Intact { .. }
        ));
    }
    let core = env.open_sealed();
    let e = unseal_error(&core);
    assert!(
        e.to_string().contains("rolled back") || e.to_string().contains("digest"),
        "{e}"
    );
    assert!(state_is_sealed(&core));
}

#[tokio::test]
async fn request_ids_are_scoped_per_requester() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("same", &env.psbt(2, 1_000_000, 1)),
    )
    .await
    .unwrap();
    // Another service using the same id gets its own request, not ALREADY_EXISTS.
    let reply = core
        .sign(
            &principal(ALICE),
            btc_request("same", &env.psbt(3, 2_000_000, 2)),
        )
        .await
        .unwrap();
    assert_eq!(signed(&reply).1, Some(2));
    let mine = core
        .get_request(&principal(PAYER), &RequestRef::id("same"))
        .await
        .unwrap();
    assert_eq!(mine.requester, PAYER);
    let theirs = core
        .get_request(&principal(ALICE), &RequestRef::id("same"))
        .await
        .unwrap();
    assert_eq!(theirs.requester, ALICE);
    assert_ne!(mine.payload_sha256, theirs.payload_sha256);
}

#[tokio::test]
async fn a_stricter_quorum_after_a_reload_is_what_the_votes_must_meet() {
    let env = Env::new();
    let core = env.open();
    let psbt = env.psbt(5, 80_000_000, 1);
    core.sign(&principal(PAYER), btc_request("q-1", &psbt))
        .await
        .unwrap();
    approve_as(&core, BOB, &RequestRef::id("q-1"), "ok")
        .await
        .unwrap();
    // Compliance raises the quorum to 3.
    let stricter = policy_text("").replace(
        "approval = { quorum = 2, roles = [\"approver\"], expires = \"1h\" }",
        "approval = { quorum = 3, roles = [\"approver\"], expires = \"1h\" }",
    );
    std::fs::write(&env.policy, stricter).unwrap();
    core.reload_policy_from_host("local:test").await.unwrap();
    let r = approve_as(&core, CAROL, &RequestRef::id("q-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval, "two votes of three");
    assert_eq!(r.pending.as_ref().unwrap().required, 3);
    assert_eq!(outbox_len(&core), 0);
    let r = approve_as(&core, ALICE, &RequestRef::id("q-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed);

    // A deny rule added meanwhile ends a pending request at the next vote.
    core.sign(
        &principal(PAYER),
        btc_request("q-2", &env.psbt(6, 60_000_000, 2)),
    )
    .await
    .unwrap();
    let p6 = bitcoin::Address::from_script(&payee_script(6), bitcoin::Network::Regtest)
        .unwrap()
        .to_string();
    let deny = policy_text("").replace(
        &format!("addresses = [\"{}\"]", blocked_address()),
        &format!("addresses = [\"{}\", \"{p6}\"]", blocked_address()),
    );
    assert!(deny.contains(&p6));
    std::fs::write(&env.policy, deny).unwrap();
    core.reload_policy_from_host("local:test").await.unwrap();
    let r = approve_as(&core, BOB, &RequestRef::id("q-2"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Denied);
    assert_eq!(r.decision.unwrap().rule, "blocked payees");
    assert_eq!(outbox_len(&core), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_racing_the_expiry_never_revives_the_request() {
    let env = Env::new();
    let core = std::sync::Arc::new(env.open());
    for i in 0..12u32 {
        let id = format!("race-{i}");
        core.sign(
            &principal(PAYER),
            btc_request(&id, &env.psbt(20 + i as u8, 70_000_000, i)),
        )
        .await
        .unwrap();
        let sweeper = core.clone();
        let sweep = tokio::task::spawn_blocking(move || sweeper.expire_pending(now_unix() + 7_200));
        let vote = approve_as(&*core, BOB, &RequestRef::id(&id), "ok").await;
        sweep.await.unwrap().unwrap();
        let r = core
            .get_request(&principal(PAYER), &RequestRef::id(&id))
            .await
            .unwrap();
        assert_eq!(r.state, RequestState::Expired, "{id}: vote {vote:?}");
        assert_eq!(
            wallet_usage(core.state()).0,
            0,
            "{id}: the hold was released"
        );
    }
    assert_eq!(core.state().count(Tree::Pending).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_deliver_only_durable_entries() {
    let env = Env::new();
    let core = std::sync::Arc::new(env.open());
    let mut stream = core
        .stream_signed(&principal(BROADCASTER), Some(0))
        .await
        .unwrap();
    // An allowed request is one durable write: its flush is held.
    core.hold_flushes(Some(0));
    let signer = core.clone();
    let psbt = env.psbt(2, 1_000_000, 1);
    let signing = tokio::spawn(async move {
        signer
            .sign(&principal(PAYER), btc_request("d-1", &psbt))
            .await
    });
    // Wait until the signed result is committed (but not flushed).
    for _ in 0..2_000 {
        if core.state().count(Tree::Outbox).unwrap() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(core.state().count(Tree::Outbox).unwrap(), 1, "committed");
    assert_eq!(core.durable_outbox_head(), 0, "not durable yet");
    // A new stream from the start sees nothing either.
    let mut fresh = core
        .stream_signed(&principal(BROADCASTER), Some(0))
        .await
        .unwrap();
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), fresh.next()).await;
    assert!(early.is_err(), "delivered before durable: {early:?}");
    core.hold_flushes(None);
    signing.await.unwrap().unwrap();
    let entry = stream.next().await.unwrap().unwrap();
    assert_eq!(entry.sequence, 1);
    assert!(entry.audit_sequence > 0);
    assert_eq!(entry.audit_mac.len(), 64);
}

#[tokio::test]
async fn outbox_entries_carry_a_growing_audit_head() {
    let env = Env::new();
    let core = env.open();
    for i in 0..3u8 {
        core.sign(
            &principal(PAYER),
            btc_request(&format!("h-{i}"), &env.psbt(2 + i, 1_000_000, i as u32)),
        )
        .await
        .unwrap();
    }
    let mut stream = core
        .stream_signed(&principal(BROADCASTER), Some(0))
        .await
        .unwrap();
    let mut last = 0;
    for _ in 0..3 {
        let e = stream.next().await.unwrap().unwrap();
        assert!(e.audit_sequence > last);
        last = e.audit_sequence;
        let record = audit::record_at(core.state(), e.audit_sequence)
            .unwrap()
            .unwrap();
        assert_eq!(hex::encode(record.0), e.audit_mac);
        assert_eq!(record.1.event, "sign.signed");
    }
}

#[tokio::test]
async fn pruning_keeps_the_audit_chain_verifiable() {
    let env = Env::new();
    {
        let core = env.open();
        for i in 0..4u8 {
            core.sign(
                &principal(PAYER),
                btc_request(&format!("p-{i}"), &env.psbt(2 + i, 1_000_000, i as u32)),
            )
            .await
            .unwrap();
        }
        core.sign(
            &principal(PAYER),
            btc_request("pending", &env.psbt(9, 70_000_000, 9)),
        )
        .await
        .unwrap();
    }
    let state = env.open_state();
    let key = env.audit_key();
    let report =
        custos::state::prune::prune(&state, &key, now_unix() + 10, "local:test", "-", now_unix())
            .unwrap();
    assert_eq!(report.removed, 4, "finished requests only");
    assert_eq!(
        state.count(Tree::Requests).unwrap(),
        1,
        "the pending one stays"
    );
    assert!(matches!(
        audit::verify(&state, &key).unwrap(),
        VerifyOutcome::Intact { .. }
    ));
    let full = verify::verify(&state, &key, None).unwrap();
    assert!(full.is_intact(), "{:?}", full.problems());
    drop(state);
    let core = env.open();
    assert!(audit_events(&core).iter().any(|e| e == "state.prune"));
}

/// Leaves `id` (signed already) as a crash after its decision would: `authorized`, no result, no
/// outbox entry; `authorized_at` moved by `age` seconds into the past.
fn rewind_to_authorized(env: &Env, id: &str, age: i64) {
    let state = env.open_state();
    let key = request_key(PAYER, id);
    let mut r = custos::state::requests::get(&state, &key).unwrap().unwrap();
    r.state = custos::state::requests::StoredState::Authorized;
    r.result = None;
    r.authorized_at = r.authorized_at.map(|t| t - age);
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

#[tokio::test]
async fn a_stale_authorization_is_expired_not_signed() {
    let env = Env::new();
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("s-1", &env.psbt(2, 30_000_000, 1)),
        )
        .await
        .unwrap();
    }
    rewind_to_authorized(&env, "s-1", 2 * 3600);
    let core = env.open();
    assert_eq!(outbox_len(&core), 0, "the recovery pass did not sign it");
    let r = core
        .get_request(&principal(PAYER), &RequestRef::id("s-1"))
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Expired);
    assert!(r.error.unwrap().contains("longer than"), "says why");
    assert_eq!(
        wallet_usage(core.state()).0,
        0,
        "its reservation was released"
    );
    assert!(audit_events(&core)
        .iter()
        .any(|e| e == "sign.authorization_expired"));
    // A shorter bound in the configuration applies too.
    drop(core);
    let env2 = Env::new();
    {
        let core = env2.open();
        core.sign(
            &principal(PAYER),
            btc_request("s-2", &env2.psbt(3, 30_000_000, 2)),
        )
        .await
        .unwrap();
    }
    rewind_to_authorized(&env2, "s-2", 120);
    let core = env2.open_sealed_with(|c| c.authorization_max_age_secs = 60);
    unseal(&core);
    assert_eq!(outbox_len(&core), 0);
}

#[tokio::test]
async fn an_authorization_the_policy_now_refuses_is_not_signed() {
    let env = Env::new();
    {
        let core = env.open();
        core.sign(
            &principal(PAYER),
            btc_request("n-1", &env.psbt(7, 30_000_000, 1)),
        )
        .await
        .unwrap();
    }
    rewind_to_authorized(&env, "n-1", 0);
    // Compliance blocks the payee meanwhile.
    let p7 = bitcoin::Address::from_script(&payee_script(7), bitcoin::Network::Regtest)
        .unwrap()
        .to_string();
    let blocking = policy_text("").replace(
        &format!("addresses = [\"{}\"]", blocked_address()),
        &format!("addresses = [\"{}\", \"{p7}\"]", blocked_address()),
    );
    std::fs::write(&env.policy, blocking).unwrap();
    let core = env.open();
    assert_eq!(outbox_len(&core), 0);
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("n-1", &env.psbt(7, 30_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(denied(e).0, "blocked payees");
    assert_eq!(wallet_usage(core.state()).0, 0);
}
