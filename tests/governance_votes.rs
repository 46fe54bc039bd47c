//! Votes are signatures by the approvers' own keys, and nothing else counts: forged votes,
//! votes replayed on another request or at another installation, votes cast by the requester,
//! and vote records injected into the state database (with a valid record MAC) count for
//! nothing, and one approver's vote copied counts once; a key removed from the policy takes its
//! votes with it; a request set `authorized` in the state without its votes is never signed.
//! (Proofs and their offline checks: tests/governance_proof.rs.)

mod bitcoin_support;
mod core_support;

use core_support::*;
use custos::governance::{Algorithm, SecretSigningKey, VoteDecision, VoteStatement};
use custos::signing::contract::{
    CoreError, RequestRef, RequestState, SignerCore, VoteInput, VoteSignature,
};
use custos::signing::now_unix;
use custos::state::audit;
use custos::state::requests::{self, request_key, StoredVote, StoredVoteSignature};

fn code(e: CoreError) -> String {
    e.code().to_owned()
}

async fn pending(core: &impl SignerCore, id: &str) -> custos::signing::contract::RequestRecord {
    core.get_request(&principal(ADMIN), &RequestRef::id(id))
        .await
        .unwrap()
}

fn counted(r: &custos::signing::contract::RequestRecord) -> Vec<String> {
    r.pending
        .as_ref()
        .unwrap()
        .approvals
        .iter()
        .filter(|v| v.counted)
        .map(|v| v.principal.clone())
        .collect()
}

#[tokio::test]
async fn forged_votes_count_for_nothing() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("f-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    let rref = RequestRef::id("f-1");
    let bob = approver_key(BOB).unwrap();
    let approve = VoteDecision::Approve;

    // A key nobody enrolled, and another approver's key.
    let v = vote_with(&core, BOB, Some(&stranger_key()), &rref, approve, "ok").await;
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e.clone()), "vote-key-not-enrolled", "{e}");
    let carol = approver_key(CAROL).unwrap();
    let v = vote_with(&core, BOB, Some(&carol), &rref, approve, "ok").await;
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-key-not-enrolled");

    // A signature with one bit flipped.
    let mut v = vote_with(&core, BOB, Some(&bob), &rref, approve, "ok").await;
    v.signature.as_mut().unwrap().signature[7] ^= 1;
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-signature-invalid");

    // Signed for one reason, sent with another; signed as an approval, sent as a rejection.
    let mut v = vote_with(&core, BOB, Some(&bob), &rref, approve, "ok").await;
    v.reason = "ok, and more".into();
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-signature-invalid");
    let v = vote_with(&core, BOB, Some(&bob), &rref, approve, "no").await;
    let e = core.reject(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-signature-invalid");

    // CAROL's valid vote sent as BOB's: the statement names the approver.
    let v = vote_with(&core, CAROL, Some(&carol), &rref, approve, "ok").await;
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-key-not-enrolled");

    // No signature at all; a signature of the wrong length (DER).
    let e = core
        .approve(
            &principal(BOB),
            &rref,
            &VoteInput {
                reason: "ok".into(),
                signature: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(e.clone()), "vote-unsigned");
    assert!(e.to_string().contains("must sign its vote"), "{e}");
    let mut v = vote_with(&core, BOB, Some(&bob), &rref, approve, "ok").await;
    v.signature.as_mut().unwrap().signature.push(0);
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-signature-invalid");

    // A vote dated an hour ahead (made to be kept and used later) is refused.
    let ctx = vote_context(&core, &rref).await.unwrap();
    let at = now_unix() + 3_600;
    let statement = VoteStatement {
        context: ctx,
        approver: BOB.into(),
        key: bob.public().to_text(),
        decision: approve,
        reason: "ok".into(),
        at,
    };
    let v = VoteInput {
        reason: "ok".into(),
        signature: Some(VoteSignature {
            at,
            key: statement.key.clone(),
            signature: bob.sign(&statement.encode().unwrap()),
        }),
    };
    let e = core.approve(&principal(BOB), &rref, &v).await.unwrap_err();
    assert_eq!(code(e), "vote-time");

    // Nothing was recorded, nothing signed, nothing audited as a vote.
    let r = pending(&core, "f-1").await;
    assert_eq!(r.state, RequestState::PendingApproval);
    assert!(r.pending.unwrap().approvals.is_empty());
    assert_eq!(outbox_len(&core), 0);
    assert!(!audit_events(&core).iter().any(|e| e == "approve"));
}

#[tokio::test]
async fn a_vote_replayed_on_another_request_or_installation_counts_for_nothing() {
    let env = Env::new();
    let core = env.open();
    let psbt = env.psbt(2, 80_000_000, 1);
    core.sign(&principal(PAYER), btc_request("r-1", &psbt))
        .await
        .unwrap();
    core.sign(
        &principal(PAYER),
        btc_request("r-2", &env.psbt(3, 80_000_000, 2)),
    )
    .await
    .unwrap();
    // The same payload under the same id from another requester.
    core.sign(&principal(ALICE), btc_request("r-1", &psbt))
        .await
        .unwrap();
    let bob = approver_key(BOB).unwrap();
    let for_r1 = vote_with(
        &core,
        BOB,
        Some(&bob),
        &RequestRef::of(PAYER, "r-1"),
        VoteDecision::Approve,
        "ok",
    )
    .await;
    for rref in [RequestRef::id("r-2"), RequestRef::of(ALICE, "r-1")] {
        let e = core
            .approve(&principal(BOB), &rref, &for_r1)
            .await
            .unwrap_err();
        assert_eq!(code(e), "vote-signature-invalid", "{rref:?}");
    }

    // Another installation: same mnemonic, wallets, policy, request id and payload — another
    // key store, so another custody id in the statement.
    let other = Env::new();
    let other_core = other.open();
    other_core
        .sign(&principal(PAYER), btc_request("r-1", &psbt))
        .await
        .unwrap();
    let theirs = vote_context(&other_core, &RequestRef::id("r-1"))
        .await
        .unwrap();
    let ours = vote_context(&core, &RequestRef::of(PAYER, "r-1"))
        .await
        .unwrap();
    assert_eq!(theirs.payload_sha256, ours.payload_sha256);
    assert_eq!(theirs.intent, ours.intent);
    assert_ne!(theirs.custody, ours.custody);
    let e = other_core
        .approve(&principal(BOB), &RequestRef::id("r-1"), &for_r1)
        .await
        .unwrap_err();
    assert_eq!(code(e), "vote-signature-invalid");

    // Where it was made for, it counts.
    let r = core
        .approve(&principal(BOB), &RequestRef::of(PAYER, "r-1"), &for_r1)
        .await
        .unwrap();
    assert_eq!(counted(&r), [BOB]);
}

/// A signed vote of `who` over request `id` of `requester`, built outside the server (what
/// someone holding the key, or replaying its signature, could write into the database).
fn signed_vote(
    key: &SecretSigningKey,
    who: &str,
    context: custos::governance::VoteContext,
) -> StoredVote {
    let statement = VoteStatement {
        context,
        approver: who.into(),
        key: key.public().to_text(),
        decision: VoteDecision::Approve,
        reason: "injected".into(),
        at: now_unix(),
    };
    let bytes = statement.encode().unwrap();
    StoredVote {
        principal: who.into(),
        at: statement.at,
        reason: statement.reason.clone(),
        decision: VoteDecision::Approve,
        signed: Some(StoredVoteSignature {
            key: statement.key.clone(),
            signature: hex::encode(key.sign(&bytes)),
            statement: hex::encode(bytes),
        }),
    }
}

/// Appends `votes` to the stored request, through the authenticated state (a valid MAC: what a
/// compromised server, holding the state key, could write).
fn inject(env: &Env, requester: &str, id: &str, votes: Vec<StoredVote>) {
    let state = env.open_state();
    let key = request_key(requester, id);
    state
        .transact(|tx| {
            let mut r = requests::get_in(tx, &key)?.expect("the request exists");
            r.approvals.extend(votes.iter().cloned());
            requests::put_in(tx, &r)
        })
        .unwrap();
    state.flush().unwrap();
}

#[tokio::test]
async fn votes_injected_into_the_state_with_a_valid_mac_count_for_nothing() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("i-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    core.sign(
        &principal(PAYER),
        btc_request("i-2", &env.psbt(3, 80_000_000, 2)),
    )
    .await
    .unwrap();
    let i1 = vote_context(&core, &RequestRef::id("i-1")).await.unwrap();
    let i2 = vote_context(&core, &RequestRef::id("i-2")).await.unwrap();
    drop(core);

    let carol = approver_key(CAROL).unwrap();
    let unsigned = StoredVote {
        principal: CAROL.into(),
        at: now_unix(),
        reason: "injected".into(),
        decision: VoteDecision::Approve,
        signed: None,
    };
    let mut garbage = signed_vote(&carol, CAROL, i1.clone());
    garbage.signed.as_mut().unwrap().signature = "00".repeat(64);
    let by_stranger = signed_vote(&stranger_key(), CAROL, i1.clone());
    // CAROL's genuine signature — over the other request.
    let replayed = signed_vote(&carol, CAROL, i2);
    // The requester's own, validly signed (PAYER holds no key: use ALICE's request below).
    inject(
        &env,
        PAYER,
        "i-1",
        vec![unsigned, garbage, by_stranger, replayed],
    );

    let core = env.open();
    let r = pending(&core, "i-1").await;
    let votes = &r.pending.as_ref().unwrap().approvals;
    assert_eq!(votes.len(), 4);
    assert!(votes.iter().all(|v| !v.counted), "{votes:?}");
    let notes: Vec<&str> = votes.iter().map(|v| v.note.as_deref().unwrap()).collect();
    assert!(notes[0].contains("unsigned"), "{notes:?}");
    assert!(notes[1].contains("does not verify"), "{notes:?}");
    assert!(notes[2].contains("does not enrol"), "{notes:?}");
    assert!(notes[3].contains("not this request's"), "{notes:?}");

    // BOB's genuine vote is one of two: the injected ones did not make a quorum.
    let r = approve_as(&core, BOB, &RequestRef::id("i-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval, "{r:?}");
    assert_eq!(counted(&r), [BOB]);
    assert_eq!(outbox_len(&core), 0);
    // CAROL's own vote replaces the ones made in her name, and meets the quorum.
    let r = approve_as(&core, CAROL, &RequestRef::id("i-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed, "{r:?}");
    assert_eq!(outbox_len(&core), 1);
}

#[tokio::test]
async fn the_requesters_own_signed_vote_never_counts() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(ALICE),
        btc_request("s-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    let e = approve_as(&core, ALICE, &RequestRef::id("s-1"), "mine")
        .await
        .unwrap_err();
    assert_eq!(code(e), "self-approval");
    // Written into the state with a valid signature and a valid MAC, it still does not count.
    let ctx = vote_context(&core, &RequestRef::id("s-1")).await.unwrap();
    drop(core);
    inject(
        &env,
        ALICE,
        "s-1",
        vec![signed_vote(&approver_key(ALICE).unwrap(), ALICE, ctx)],
    );
    let core = env.open();
    let r = approve_as(&core, BOB, &RequestRef::id("s-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval, "{r:?}");
    assert_eq!(outbox_len(&core), 0);
    let r = approve_as(&core, CAROL, &RequestRef::id("s-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed);
}

#[tokio::test]
async fn a_key_removed_from_the_policy_takes_its_votes_with_it() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("k-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    approve_as(&core, BOB, &RequestRef::id("k-1"), "ok")
        .await
        .unwrap();
    // BOB's key is replaced (lost, or compromised).
    let new_bob = SecretSigningKey::from_seed(Algorithm::Ed25519, &[0xb1; 32]).unwrap();
    let rotated = policy_text("").replace(
        &approver_key(BOB).unwrap().public().to_text(),
        &new_bob.public().to_text(),
    );
    std::fs::write(&env.policy, rotated).unwrap();
    core.reload_policy_from_host("local:test").await.unwrap();
    let r = pending(&core, "k-1").await;
    let vote = &r.pending.as_ref().unwrap().approvals[0];
    assert!(!vote.counted);
    assert!(
        vote.note.as_deref().unwrap().contains("does not enrol"),
        "{vote:?}"
    );
    let r = approve_as(&core, CAROL, &RequestRef::id("k-1"), "ok")
        .await
        .unwrap();
    assert_eq!(
        r.state,
        RequestState::PendingApproval,
        "BOB's old vote no longer counts"
    );
    // The old key is refused; BOB votes again with the new one.
    let old = approve_as(&core, BOB, &RequestRef::id("k-1"), "ok")
        .await
        .unwrap_err();
    assert_eq!(code(old), "vote-key-not-enrolled");
    let v = vote_with(
        &core,
        BOB,
        Some(&new_bob),
        &RequestRef::id("k-1"),
        VoteDecision::Approve,
        "again",
    )
    .await;
    let r = core
        .approve(&principal(BOB), &RequestRef::id("k-1"), &v)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed, "{r:?}");
}

#[tokio::test]
async fn unsigned_votes_only_for_keyless_approvers_where_the_policy_allows_them() {
    const DAVE: &str = "spiffe://t/dave";
    let env = Env::new();
    let text = policy_text("")
        .replace(
            "name = \"core-test\"",
            "name = \"core-test\"\nallow_unsigned_votes = true",
        )
        .replace(
            &format!("approver = [\"{ALICE}\""),
            &format!("approver = [\"{DAVE}\", \"{ALICE}\""),
        );
    std::fs::write(&env.policy, text).unwrap();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("u-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    let unsigned = VoteInput {
        reason: "ok".into(),
        signature: None,
    };
    // BOB has a key: he signs, always.
    let e = core
        .approve(&principal(BOB), &RequestRef::id("u-1"), &unsigned)
        .await
        .unwrap_err();
    assert_eq!(code(e), "vote-unsigned");
    let r = core
        .approve(&principal(DAVE), &RequestRef::id("u-1"), &unsigned)
        .await
        .unwrap();
    assert_eq!(counted(&r), [DAVE]);
    let r = approve_as(&core, BOB, &RequestRef::id("u-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed);
    let detail = audit::tail(core.state(), 10)
        .unwrap()
        .into_iter()
        .find(|r| r.event == "approve" && r.principal == DAVE)
        .and_then(|r| r.detail)
        .unwrap();
    assert!(detail.contains("UNSIGNED"), "{detail}");
}

#[tokio::test]
async fn a_request_set_authorized_in_the_state_without_its_votes_is_never_signed() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("x-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    approve_as(&core, BOB, &RequestRef::id("x-1"), "ok")
        .await
        .unwrap();
    drop(core);
    // One valid vote of two; the record is set `authorized` with a valid MAC, as if the quorum
    // had been met and the server had crashed before signing.
    let state = env.open_state();
    let key = request_key(PAYER, "x-1");
    state
        .transact(|tx| {
            let mut r = requests::get_in(tx, &key)?.unwrap();
            r.state = requests::StoredState::Authorized;
            r.authorized_at = Some(now_unix());
            requests::put_in(tx, &r)
        })
        .unwrap();
    state.flush().unwrap();
    drop(state);

    // The recovery pass at unseal re-verifies the votes: it denies instead of signing.
    let core = env.open();
    assert_eq!(outbox_len(&core), 0);
    let r = core
        .get_request(&principal(ADMIN), &RequestRef::id("x-1"))
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Denied, "{r:?}");
    assert_eq!(r.decision.unwrap().code, "approval.votes_invalid");
    // A retry of the request answers the same denial.
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("x-1", &env.psbt(2, 80_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), "approval.votes_invalid");
}

#[tokio::test]
async fn one_approvers_genuine_vote_copied_in_the_state_counts_once() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("d-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    approve_as(&core, BOB, &RequestRef::id("d-1"), "ok")
        .await
        .unwrap();
    drop(core);
    // BOB's valid signed vote written a second time, and the request set `authorized` (valid
    // MACs): two records, one approver — not a quorum of two.
    let state = env.open_state();
    let key = request_key(PAYER, "d-1");
    state
        .transact(|tx| {
            let mut r = requests::get_in(tx, &key)?.unwrap();
            let copy = r.approvals[0].clone();
            r.approvals.push(copy);
            r.state = requests::StoredState::Authorized;
            r.authorized_at = Some(now_unix());
            requests::put_in(tx, &r)
        })
        .unwrap();
    state.flush().unwrap();
    drop(state);

    let core = env.open();
    assert_eq!(outbox_len(&core), 0);
    let r = core
        .get_request(&principal(ADMIN), &RequestRef::id("d-1"))
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Denied, "{r:?}");
    assert_eq!(r.decision.unwrap().code, "approval.votes_invalid");
}
