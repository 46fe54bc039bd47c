//! Signed votes in the core: the statement of a stored request, the check of a vote an approver
//! sends, and the re-check of every stored vote whenever votes are counted.
//!
//! - **What is signed** is [`crate::governance::vote::VoteStatement`], rebuilt here from the
//!   server's own record ([`context`]): the installation's custody id (the key store's id), the
//!   request id, requester, wallet, payload hash and the decoded intent's lines. The client
//!   supplies only its time, key and signature (and its words).
//! - **A new vote** ([`accept`]) must be signed by a key the policy in force enrols for the
//!   caller (`[approver_keys]`), with a time between the request's arrival and now (5 minutes
//!   of clock skew allowed either way). An approver without an enrolled key may vote unsigned
//!   only under `[policy] allow_unsigned_votes` (development only); an approver with a key
//!   always signs.
//! - **Counting** ([`counting_approvers`]) re-verifies every stored vote under the policy in
//!   force: a vote record injected into the state database (even with a valid record MAC) or
//!   edited, a vote whose key has since been removed from the policy, and an unsigned vote the
//!   policy no longer allows count for nothing. So when an approver's key changes, that
//!   approver's votes on pending requests stop counting until the approver votes again with
//!   the new key (a new vote replaces one that no longer counts).
//! - The requester's vote never counts and only holders of the quorum's roles count
//!   ([`crate::policy::Policy::quorum_status`]).

use crate::governance::intent_text::intent_lines;
use crate::governance::keys::PublicKey;
use crate::governance::vote::{VoteStatement, MAX_CLOCK_SKEW_SECS, MAX_REASON_BYTES};
use crate::governance::{VoteContext, VoteDecision};
use crate::policy::{Policy, Quorum};
use crate::signing::contract::{CoreError, CoreResult, RequestRecord, VoteInput};
use crate::state::requests::{StoredRequest, StoredVote, StoredVoteSignature};

use super::{records, SigningCore};

/// The installation's custody id: the key store's id, hex. Every vote statement names it.
pub(crate) fn custody_id(core: &SigningCore) -> String {
    hex::encode(core.keystore.store_id())
}

/// The vote context of a stored request (`None` without a decoded intent).
pub(crate) fn context(custody: &str, r: &StoredRequest) -> Option<VoteContext> {
    let intent = r.intent.as_ref()?;
    Some(VoteContext {
        custody: custody.to_owned(),
        request_id: r.request_id.clone(),
        requester: r.requester.clone(),
        wallet: r.wallet.clone(),
        payload_sha256: r.payload_sha256.clone(),
        intent: intent_lines(intent),
    })
}

fn refused(code: &str, reason: String) -> CoreError {
    CoreError::Precondition {
        code: code.into(),
        reason,
    }
}

/// Checks a vote `principal` sends on the request of `ctx` (arrived at `created_at`); the vote
/// to record.
pub(crate) fn accept(
    policy: &Policy,
    ctx: &VoteContext,
    principal: &str,
    decision: VoteDecision,
    input: &VoteInput,
    now: i64,
    created_at: i64,
) -> CoreResult<StoredVote> {
    if input.reason.len() > MAX_REASON_BYTES {
        return Err(CoreError::invalid(
            "reason",
            format!("{} bytes; at most {MAX_REASON_BYTES}", input.reason.len()),
        ));
    }
    let enrolled: Vec<&str> = policy.approver_keys_of(principal).collect();
    let Some(sig) = &input.signature else {
        if policy.unsigned_vote_allowed(principal) {
            return Ok(StoredVote {
                principal: principal.to_owned(),
                at: now,
                reason: input.reason.clone(),
                decision,
                signed: None,
            });
        }
        return Err(refused(
            "vote-unsigned",
            if enrolled.is_empty() {
                format!(
                    "no approver key is enrolled for '{principal}', and the policy counts only signed votes: enrol one under [approver_keys]"
                )
            } else {
                format!(
                    "'{principal}' must sign its vote with its enrolled key ({})",
                    enrolled.join(", ")
                )
            },
        ));
    };
    let key = PublicKey::parse(&sig.key).map_err(|e| CoreError::invalid("key", e.to_string()))?;
    let key_text = key.to_text();
    if !enrolled.contains(&key_text.as_str()) {
        return Err(refused(
            "vote-key-not-enrolled",
            format!(
                "key {} is not enrolled for '{principal}' under the policy in force ({})",
                key.fingerprint(),
                if enrolled.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("enrolled: {}", enrolled.join(", "))
                }
            ),
        ));
    }
    if sig.at > now + MAX_CLOCK_SKEW_SECS || sig.at < created_at - MAX_CLOCK_SKEW_SECS {
        return Err(refused(
            "vote-time",
            format!(
                "the vote is dated {} (unix), the server's clock says {now} and the request arrived at {created_at}: a vote is dated between the two (5 minutes of skew allowed)",
                sig.at
            ),
        ));
    }
    let statement = VoteStatement {
        context: ctx.clone(),
        approver: principal.to_owned(),
        key: key_text.clone(),
        decision,
        reason: input.reason.clone(),
        at: sig.at,
    }
    .encode()
    .map_err(|e| CoreError::invalid("vote", e.to_string()))?;
    key.verify(&statement, &sig.signature).map_err(|e| {
        refused(
            "vote-signature-invalid",
            format!(
                "{e}: the signature must cover this request's vote statement (custody, request, requester, wallet, payload hash, intent as shown, approver, key, decision, reason, time)"
            ),
        )
    })?;
    Ok(StoredVote {
        principal: principal.to_owned(),
        at: sig.at,
        reason: input.reason.clone(),
        decision,
        signed: Some(StoredVoteSignature {
            key: key_text,
            signature: hex::encode(&sig.signature),
            statement: hex::encode(&statement),
        }),
    })
}

/// Whether a stored vote counts under `policy`; why not, if it does not.
pub(crate) fn verify_stored(
    policy: &Policy,
    ctx: Option<&VoteContext>,
    v: &StoredVote,
) -> Result<(), String> {
    let Some(signed) = &v.signed else {
        return if policy.unsigned_vote_allowed(&v.principal) {
            Ok(())
        } else if policy.approver_keys_of(&v.principal).next().is_some() {
            Err("unsigned, and a key is enrolled for the approver".into())
        } else {
            Err("unsigned, and the policy counts only signed votes".into())
        };
    };
    let key = PublicKey::parse(&signed.key).map_err(|e| format!("unreadable key: {e}"))?;
    if !policy
        .approver_keys_of(&v.principal)
        .any(|k| k == key.to_text())
    {
        return Err(format!(
            "signed by {}, which the policy in force does not enrol for {}",
            key.fingerprint(),
            v.principal
        ));
    }
    let ctx = ctx.ok_or("the request has no decoded intent to vote on")?;
    let statement = VoteStatement {
        context: ctx.clone(),
        approver: v.principal.clone(),
        key: key.to_text(),
        decision: v.decision,
        reason: v.reason.clone(),
        at: v.at,
    }
    .encode()
    .map_err(|e| e.to_string())?;
    if hex::decode(&signed.statement).ok().as_deref() != Some(statement.as_slice()) {
        return Err("the recorded statement is not this request's".into());
    }
    let signature =
        hex::decode(&signed.signature).map_err(|_| "the recorded signature is not hex")?;
    key.verify(&statement, &signature)
        .map_err(|_| "the signature does not verify".to_owned())
}

/// The approvers whose approve votes count under `policy`, each once, in vote order (the quorum
/// check then drops the requester and non-holders of the quorum's roles).
pub(crate) fn counting_approvers(
    policy: &Policy,
    ctx: Option<&VoteContext>,
    r: &StoredRequest,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in &r.approvals {
        if v.decision != VoteDecision::Approve || out.contains(&v.principal) {
            continue;
        }
        match verify_stored(policy, ctx, v) {
            Ok(()) => out.push(v.principal.clone()),
            Err(why) => tracing::warn!(
                request = %r.request_id,
                requester = %r.requester,
                approver = %v.principal,
                why,
                "a recorded vote does not count"
            ),
        }
    }
    out
}

/// Whether the request's stored votes, verified again under the policy in force, meet `quorum`
/// (the check before an `authorized` request that needed approval is signed by a retry or the
/// recovery pass: a request set `authorized` in the database without its votes is not signed).
pub(crate) fn quorum_met(core: &SigningCore, r: &StoredRequest, quorum: &Quorum) -> bool {
    let policy = core.policy();
    let ctx = context(&custody_id(core), r);
    let voters = counting_approvers(&policy.policy, ctx.as_ref(), r);
    policy
        .policy
        .quorum_status(quorum, &r.requester, &voters)
        .met
}

/// Whether `principal` already has an approve vote that counts.
pub(crate) fn has_counting_vote(
    policy: &Policy,
    ctx: Option<&VoteContext>,
    r: &StoredRequest,
    principal: &str,
) -> bool {
    r.approvals.iter().any(|v| {
        v.principal == principal
            && v.decision == VoteDecision::Approve
            && verify_stored(policy, ctx, v).is_ok()
    })
}

/// The API record of `r`, with each vote's standing under the policy in force and, while the
/// request waits for votes, the context approvers sign.
pub(crate) fn record(core: &SigningCore, r: &StoredRequest) -> CoreResult<RequestRecord> {
    let mut rec = records::record(r)?;
    let policy = core.policy();
    let ctx = context(&custody_id(core), r);
    if let Some(pending) = rec.pending.as_mut() {
        for (vote, stored) in pending.approvals.iter_mut().zip(&r.approvals) {
            match verify_stored(&policy.policy, ctx.as_ref(), stored) {
                Ok(()) => vote.counted = true,
                Err(why) => vote.note = Some(why),
            }
        }
    }
    if r.state == crate::state::requests::StoredState::PendingApproval {
        rec.vote_context = ctx;
    }
    Ok(rec)
}

/// A one-line account of a vote for the audit record: decision, key, time, signature.
pub(crate) fn audit_detail(v: &StoredVote) -> String {
    match &v.signed {
        Some(s) => format!(
            "{} signed by {} at {}; signature {}; statement sha256 {}; reason: {}",
            v.decision.as_str(),
            s.key,
            v.at,
            s.signature,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                hex::decode(&s.statement).unwrap_or_default()
            )),
            v.reason
        ),
        None => format!(
            "{} UNSIGNED (allow_unsigned_votes); reason: {}",
            v.decision.as_str(),
            v.reason
        ),
    }
}
