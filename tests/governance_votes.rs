//! Votes are signatures by the approvers' own keys, and nothing else counts: forged votes,
//! votes replayed on another request or at another installation, votes cast by the requester,
//! and vote records injected into the state database (with a valid record MAC) count for
//! nothing; a key removed from the policy takes its votes with it. The signatures are in the
//! record, the audit and the proof, and the proof is re-checked offline — by our verifier, by
//! an independent Rust implementation (ring), and by Python's `cryptography`.

mod bitcoin_support;
mod core_support;

use core_support::*;
use custos::governance::proof::Proof;
use custos::governance::{Algorithm, SecretSigningKey, VoteDecision, VoteStatement};
use custos::policy::Policy;
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

/// The statement rebuilt byte by byte from the documented format, without Custos's encoder.
fn independent_statement(p: &Proof, v: &custos::governance::proof::ProofVote) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::new();
    for field in [
        "custos/vote/v1",
        &p.custody,
        &p.request_id,
        &p.requester,
        &p.wallet,
        &p.payload_sha256,
    ] {
        s(&mut out, field);
    }
    out.extend_from_slice(&(p.intent_lines.len() as u32).to_be_bytes());
    for line in &p.intent_lines {
        s(&mut out, line);
    }
    for field in [
        v.approver.as_str(),
        v.key.as_deref().unwrap(),
        v.decision.as_str(),
        &v.reason,
        &v.at.to_string(),
    ] {
        s(&mut out, field);
    }
    out
}

/// ring's check of one vote (Ed25519, or P-256 with SHA-256 over the fixed r || s form).
fn ring_verifies(key_text: &str, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
    let (alg, body) = key_text.split_once(':').unwrap();
    let raw = hex::decode(body).unwrap();
    match alg {
        "ed25519" => UnparsedPublicKey::new(&ED25519, raw)
            .verify(message, signature)
            .is_ok(),
        "p256" => {
            // ring takes the uncompressed point; decompressing is not the check being tested.
            let point = p256::EncodedPoint::from_bytes(&raw).unwrap();
            let key = p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
            let uncompressed =
                p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, uncompressed.as_bytes())
                .verify(message, signature)
                .is_ok()
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn signed_votes_are_in_the_record_the_audit_and_a_proof_anyone_can_check() {
    let env = Env::new();
    let core = env.open();
    core.sign(
        &principal(PAYER),
        btc_request("p-1", &env.psbt(2, 80_000_000, 1)),
    )
    .await
    .unwrap();
    let rref = RequestRef::id("p-1");
    approve_as(&core, BOB, &rref, "ticket 7").await.unwrap();
    let r = approve_as(&core, CAROL, &rref, "ticket 7, checked")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed);
    let votes = &r.pending.as_ref().unwrap().approvals;
    assert!(votes.iter().all(|v| v.counted && v.signature.is_some()));

    // The audit carries the keys and signatures; quorum.met names who counted.
    let records = audit::tail(core.state(), 20).unwrap();
    let approvals: Vec<String> = records
        .iter()
        .filter(|r| r.event == "approve")
        .map(|r| r.detail.clone().unwrap())
        .collect();
    assert_eq!(approvals.len(), 2);
    let bob_key = approver_key(BOB).unwrap().public().to_text();
    assert!(
        approvals[0].contains(&format!("approve signed by {bob_key}")),
        "{approvals:?}"
    );
    assert!(approvals[0].contains("signature "), "{approvals:?}");
    let met = records.iter().find(|r| r.event == "quorum.met").unwrap();
    assert!(
        met.detail
            .as_deref()
            .unwrap()
            .contains(&format!("{BOB}, {CAROL}")),
        "{met:?}"
    );

    // The proof: our offline check, with and without the policy.
    let proof = core.proof(&principal(ADMIN), &rref).await.unwrap();
    assert_eq!(proof.state, "signed");
    let policy = Policy::load(&env.policy).unwrap();
    let check = proof.verify(Some(&policy));
    assert!(check.ok(), "{check:?}");
    assert_eq!(check.approvers, [BOB, CAROL]);
    assert!(proof.verify(None).ok());
    // Outsiders cannot read it.
    let e = core.proof(&principal(OUTSIDER), &rref).await.unwrap_err();
    assert_eq!(code(e), "not-found");

    // ring re-checks every signature over the statement rebuilt by hand.
    for v in &proof.votes {
        let rebuilt = independent_statement(&proof, v);
        assert_eq!(hex::encode(&rebuilt), *v.statement.as_ref().unwrap());
        let sig = hex::decode(v.signature.as_ref().unwrap()).unwrap();
        assert!(
            ring_verifies(v.key.as_ref().unwrap(), &rebuilt, &sig),
            "{v:?}"
        );
    }
    assert!(proof
        .votes
        .iter()
        .any(|v| v.key.as_deref().unwrap().starts_with("p256:")));
    assert!(proof
        .votes
        .iter()
        .any(|v| v.key.as_deref().unwrap().starts_with("ed25519:")));

    // Tampered proofs fail: a changed amount line, a changed reason, a foreign key, a policy
    // that does not enrol the key.
    let mut t = proof.clone();
    let line = t
        .intent_lines
        .iter()
        .position(|l| l.starts_with("amount: "))
        .unwrap();
    t.intent_lines[line] = "amount: 0.0001 BTC".into();
    assert!(!t.verify(None).ok());
    let mut t = proof.clone();
    t.votes[0].reason.push('!');
    assert!(!t.verify(None).ok());
    let mut t = proof.clone();
    t.votes[0].key = Some(stranger_key().public().to_text());
    assert!(!t.verify(None).ok());
    let mut t = proof.clone();
    t.payload_sha256 = "00".repeat(32);
    assert!(!t.verify(None).ok());
    let stranger_policy = Policy::from_toml(
        &policy_text("").replace(
            &bob_key,
            &SecretSigningKey::from_seed(Algorithm::P256, &[0x77; 32])
                .unwrap()
                .public()
                .to_text(),
        ),
    )
    .unwrap();
    // A proof that drops a vote and claims a smaller quorum: the trusted policy's rule decides.
    let mut t = proof.clone();
    t.votes.truncate(1);
    t.quorum.as_mut().unwrap().count = 1;
    let check = t.verify(Some(&policy));
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("signed without its quorum")),
        "{check:?}"
    );
    // The trusted policy judges the proof, not the proof's own claims: a policy without the
    // deciding rule cannot vouch for the quorum (a problem, not the recorded quorum), a policy
    // whose rule denies condemns a signature, and a proof rewritten to say "allowed by another
    // rule" or to drop its decision is caught.
    let renamed =
        Policy::from_toml(&policy_text("").replace("\"btc large\"", "\"btc big\"")).unwrap();
    let check = proof.verify(Some(&renamed));
    assert!(!check.ok(), "{check:?}");
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("no rule 'btc large'") && p.contains("cannot be checked")),
        "{check:?}"
    );
    assert!(
        !check
            .passed
            .iter()
            .any(|p| p.contains("required approvals")),
        "{check:?}"
    );
    let denying = Policy::from_toml(
        &policy_text("")
            .replace("effect = \"require_approval\"", "effect = \"deny\"")
            .replace(
                "approval = { quorum = 2, roles = [\"approver\"], expires = \"1h\" }",
                "",
            ),
    )
    .unwrap();
    let check = proof.verify(Some(&denying));
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("rule 'btc large' of the given policy denies")),
        "{check:?}"
    );
    let mut t = proof.clone();
    t.votes.clear();
    t.quorum = None;
    t.decision.as_mut().unwrap().outcome = "allow".into();
    let check = t.verify(Some(&policy));
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("signed without its quorum: 0 of the 2")),
        "{check:?}"
    );
    let mut t = proof.clone();
    t.decision.as_mut().unwrap().rule = "btc small".into();
    t.quorum = None;
    t.votes.clear();
    let check = t.verify(Some(&policy));
    assert!(check.ok(), "btc small allows without approval: {check:?}");
    let mut t = proof.clone();
    t.decision = None;
    let check = t.verify(Some(&policy));
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("no deciding rule is recorded")),
        "{check:?}"
    );
    let check = proof.verify(Some(&stranger_policy));
    assert!(!check.ok());
    assert!(
        check.problems.iter().any(|p| p.contains("not enrolled")),
        "{check:?}"
    );

    // Python's `cryptography` (OpenSSL), with the statements rebuilt by the script.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proof.json");
    std::fs::write(&path, serde_json::to_string_pretty(&proof).unwrap()).unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, serde_json::to_string(&policy.approver_keys).unwrap()).unwrap();
    let (ok, out) = python_verify(&path, Some(&keys));
    assert!(ok, "{out}");
    assert!(out.contains("2 vote(s) verified independently"), "{out}");
    let mut t = proof.clone();
    t.votes[1].at += 1;
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let (ok, out) = python_verify(&path, Some(&keys));
    assert!(!ok, "{out}");
}

/// Runs tests/governance/verify_proof.py (needs Python's `cryptography`: `.ci/install-tools`).
pub fn python_verify(proof: &std::path::Path, keys: Option<&std::path::Path>) -> (bool, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/governance/verify_proof.py"
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(proof);
    if let Some(k) = keys {
        cmd.arg("--keys").arg(k);
    }
    let out = cmd
        .output()
        .expect("python3 runs (installed by .ci/install-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "Python's cryptography is missing: run .ci/install-tools\n{text}"
    );
    (out.status.success(), text)
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
