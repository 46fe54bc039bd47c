//! `Signer.GetProof`: one request's proof file ([`crate::governance::proof`]) — the request as
//! recorded, its canonical payload and intent, and every vote with its key, statement and
//! signature. Whoever may read the request (`GetRequest`'s rule) may have its proof.

use crate::governance::intent_text::intent_lines;
use crate::governance::proof::{Proof, ProofDecision, ProofQuorum, ProofVote, PROOF_FORMAT};
use crate::signing::contract::{CoreError, CoreResult, Principal, RequestRef};
use crate::state::requests::{self, request_key, StoredRequest, StoredState};

use super::{approvals, votes, SigningCore};

/// The proof of the request `rref` names, for `principal`.
pub(crate) async fn proof(
    core: &SigningCore,
    principal: &Principal,
    rref: &RequestRef,
) -> CoreResult<Proof> {
    // Authorizes the caller (and expires a request whose time has passed) exactly as GetRequest.
    let record = approvals::get_request(core, principal, rref).await?;
    let key = request_key(&record.requester, &record.request_id);
    let r = requests::get(&core.state, &key)
        .map_err(|e| core.fail(e))?
        .ok_or_else(|| CoreError::NotFound {
            what: "request",
            id: rref.request_id.clone(),
        })?;
    build(core, &r)
}

fn state_name(s: StoredState) -> &'static str {
    match s {
        StoredState::Authorized => "authorized",
        StoredState::PendingApproval => "pending_approval",
        StoredState::Signed => "signed",
        StoredState::Denied => "denied",
        StoredState::Rejected => "rejected",
        StoredState::Expired => "expired",
        StoredState::Failed => "failed",
    }
}

fn build(core: &SigningCore, r: &StoredRequest) -> CoreResult<Proof> {
    let intent = r.intent.clone().ok_or_else(|| CoreError::Precondition {
        code: "no-intent".into(),
        reason: format!(
            "request '{}' was never decoded: there is nothing to prove",
            r.request_id
        ),
    })?;
    Ok(Proof {
        format: PROOF_FORMAT.into(),
        custody: votes::custody_id(core),
        request_id: r.request_id.clone(),
        requester: r.requester.clone(),
        wallet: r.wallet.clone(),
        state: state_name(r.state).into(),
        created_at: r.created_at,
        payload_sha256: r.payload_sha256.clone(),
        payload: r.payload.clone(),
        intent_lines: intent_lines(&intent),
        intent,
        decision: r.decision.as_ref().map(|d| ProofDecision {
            outcome: d.outcome.clone(),
            rule: d.rule.clone(),
            code: d.code.clone(),
            policy_hash: d.policy_hash.clone(),
        }),
        quorum: r.quorum.as_ref().map(|q| ProofQuorum {
            count: q.count,
            roles: q.roles.clone(),
            expires_at: q.expires_at,
        }),
        result: r.result.as_ref().map(|o| o.audit_id()),
        policy_hash: core.policy().hash.clone(),
        votes: r
            .approvals
            .iter()
            .map(|v| ProofVote {
                approver: v.principal.clone(),
                decision: v.decision,
                reason: v.reason.clone(),
                at: v.at,
                key: v.signed.as_ref().map(|s| s.key.clone()),
                statement: v.signed.as_ref().map(|s| s.statement.clone()),
                signature: v.signed.as_ref().map(|s| s.signature.clone()),
            })
            .collect(),
    })
}
