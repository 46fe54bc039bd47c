//! Proofs anyone can check: the signatures are in the request record, the audit and the proof
//! file, and the proof is re-checked offline — by Custos's own verifier (against the policy the
//! verifier trusts, which sets the quorum), by an independent Rust implementation (ring) over
//! statements rebuilt by hand from the documented format, and by Python's `cryptography`.

mod bitcoin_support;
mod core_support;

use core_support::*;
use custos::governance::proof::Proof;
use custos::governance::{Algorithm, SecretSigningKey};
use custos::policy::Policy;
use custos::signing::contract::{CoreError, RequestRef, RequestState, SignerCore};
use custos::state::audit;

fn code(e: CoreError) -> String {
    e.code().to_owned()
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
            let point = p256_ecdsa::EncodedPoint::from_bytes(&raw).unwrap();
            let key = p256_ecdsa::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
            let uncompressed =
                p256_ecdsa::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
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
    // Those who may not read the request may not have its proof: a principal with no role is
    // refused, one whose role gives no sight of it is told it does not exist (as GetRequest).
    let e = core.proof(&principal(OUTSIDER), &rref).await.unwrap_err();
    assert_eq!(code(e), "policy-no-role");
    let e = core
        .proof(&principal(BROADCASTER), &rref)
        .await
        .unwrap_err();
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
