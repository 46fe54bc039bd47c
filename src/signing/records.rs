//! Stored records -> the API's plain types (and policy decisions -> stored decisions).

use crate::policy::{Decision as PolicyDecision, Outcome};
use crate::signing::contract::{
    ApprovalVote, Decision, DecisionOutcome, PendingApproval, RequestRecord, RequestState,
    SignOutcome, SignReply, SignedOutput, SignedResult, VoteSignatureRecord,
};
use crate::signing::contract::{CoreError, CoreResult};
use crate::state::requests::{StoredDecision, StoredOutput, StoredRequest, StoredState};

use super::system_time;

/// The rule name recorded for the default deny.
pub const DEFAULT_RULE: &str = "default";

/// A policy decision as stored.
pub fn stored_decision(d: &PolicyDecision, policy_hash: &str) -> StoredDecision {
    StoredDecision {
        outcome: d.outcome.as_str().to_owned(),
        rule: d.rule.clone().unwrap_or_else(|| DEFAULT_RULE.to_owned()),
        code: d.code.to_owned(),
        reason: d.message.clone(),
        policy_hash: policy_hash.to_owned(),
        allow_replacement: d.allow_replacement,
    }
}

/// A denial decision (a cap taken meanwhile, the nonce guard).
pub fn denial(rule: &str, code: &str, reason: String, policy_hash: &str) -> StoredDecision {
    StoredDecision {
        outcome: Outcome::Deny.as_str().to_owned(),
        rule: rule.to_owned(),
        code: code.to_owned(),
        reason,
        policy_hash: policy_hash.to_owned(),
        allow_replacement: false,
    }
}

/// The API decision.
pub fn decision(d: &StoredDecision) -> Decision {
    Decision {
        outcome: match d.outcome.as_str() {
            "allow" => DecisionOutcome::Allow,
            "needs_approval" => DecisionOutcome::NeedsApproval,
            _ => DecisionOutcome::Deny,
        },
        rule: d.rule.clone(),
        code: d.code.clone(),
        reason: d.reason.clone(),
        policy_hash: d.policy_hash.clone(),
    }
}

/// The refusal a denied request answers with (every time it is asked again).
pub fn denied_error(r: &StoredRequest) -> CoreError {
    match &r.decision {
        Some(d) => CoreError::PolicyDenied {
            rule: d.rule.clone(),
            code: d.code.clone(),
            reason: d.reason.clone(),
        },
        None => CoreError::PolicyDenied {
            rule: DEFAULT_RULE.into(),
            code: "deny.default".into(),
            reason: r.error.clone().unwrap_or_default(),
        },
    }
}

/// The API form of a signed artefact.
pub fn output(o: &StoredOutput) -> CoreResult<SignedOutput> {
    let bad = |e: hex::FromHexError| CoreError::Internal {
        reason: format!("stored result is not hex: {e}"),
    };
    Ok(match o {
        StoredOutput::BitcoinTransaction {
            raw_tx_hex,
            txid,
            wtxid,
        } => SignedOutput::BitcoinTransaction {
            raw_tx_hex: raw_tx_hex.clone(),
            txid: txid.clone(),
            wtxid: wtxid.clone(),
        },
        StoredOutput::SignedPsbt {
            psbt_hex,
            not_final_reason,
        } => SignedOutput::SignedPsbt {
            psbt: hex::decode(psbt_hex).map_err(bad)?,
            not_final_reason: not_final_reason.clone(),
        },
        StoredOutput::EthereumTransaction {
            raw_tx_hex,
            tx_hash,
        } => SignedOutput::EthereumTransaction {
            raw_tx_hex: raw_tx_hex.clone(),
            tx_hash: tx_hash.clone(),
        },
        StoredOutput::EthereumSignature {
            signature_hex,
            signer,
            digest_hex,
        } => {
            let bytes = hex::decode(signature_hex).map_err(bad)?;
            let signature: [u8; 65] = bytes.try_into().map_err(|_| CoreError::Internal {
                reason: "stored signature is not 65 bytes".into(),
            })?;
            SignedOutput::EthereumSignature {
                signature,
                signer: signer.clone(),
                digest_hex: digest_hex.clone(),
            }
        }
    })
}

fn pending(r: &StoredRequest) -> Option<PendingApproval> {
    let q = r.quorum.as_ref()?;
    Some(PendingApproval {
        required: q.count,
        roles: q.roles.clone(),
        approvals: r
            .approvals
            .iter()
            .map(|v| ApprovalVote {
                principal: v.principal.clone(),
                at: system_time(v.at),
                reason: v.reason.clone(),
                decision: v.decision,
                signature: v.signed.as_ref().map(|s| VoteSignatureRecord {
                    key: s.key.clone(),
                    signature: hex::decode(&s.signature).unwrap_or_default(),
                    statement: hex::decode(&s.statement).unwrap_or_default(),
                }),
                // Whether it counts is decided against the policy in force
                // (`signing::votes::record`); a plain record claims nothing.
                counted: false,
                note: None,
            })
            .collect(),
        expires_at: system_time(q.expires_at),
    })
}

/// The API record of a request.
pub fn record(r: &StoredRequest) -> CoreResult<RequestRecord> {
    Ok(RequestRecord {
        request_id: r.request_id.clone(),
        wallet: r.wallet.clone(),
        requester: r.requester.clone(),
        state: match r.state {
            StoredState::PendingApproval => RequestState::PendingApproval,
            StoredState::Signed => RequestState::Signed,
            StoredState::Denied => RequestState::Denied,
            StoredState::Rejected => RequestState::Rejected,
            StoredState::Expired => RequestState::Expired,
            StoredState::Failed => RequestState::Failed,
            // Authorized is an instant between two commits (or a crash): to the API it is still
            // "being signed", which the closest state, pending, describes.
            StoredState::Authorized => RequestState::PendingApproval,
        },
        intent: r.intent.clone(),
        decision: r.decision.as_ref().map(decision),
        pending: pending(r),
        result: match &r.result {
            Some(o) => Some(SignedResult {
                output: output(o)?,
                outbox_sequence: r.outbox_seq,
            }),
            None => None,
        },
        created_at: system_time(r.created_at),
        updated_at: system_time(r.updated_at),
        error: r.error.clone(),
        payload_sha256: r.payload_sha256.clone(),
        vote_context: None,
    })
}

/// The `Sign` answer for a signed or pending request.
pub fn reply(r: &StoredRequest) -> CoreResult<SignReply> {
    let intent = r.intent.clone().ok_or_else(|| CoreError::Internal {
        reason: format!("request '{}' has no intent", r.request_id),
    })?;
    let d = r.decision.as_ref().ok_or_else(|| CoreError::Internal {
        reason: format!("request '{}' has no decision", r.request_id),
    })?;
    let outcome = match (&r.state, &r.result) {
        (StoredState::Signed, Some(o)) => SignOutcome::Signed(SignedResult {
            output: output(o)?,
            outbox_sequence: r.outbox_seq,
        }),
        (StoredState::PendingApproval, _) => {
            SignOutcome::Pending(pending(r).ok_or_else(|| CoreError::Internal {
                reason: format!("pending request '{}' has no quorum", r.request_id),
            })?)
        }
        _ => return Err(state_error(r)),
    };
    Ok(SignReply {
        request_id: r.request_id.clone(),
        outcome,
        intent,
        decision: decision(d),
    })
}

/// The error a request in a final, unsigned state answers with.
pub fn state_error(r: &StoredRequest) -> CoreError {
    let why = r.error.clone().unwrap_or_default();
    match r.state {
        StoredState::Denied => denied_error(r),
        StoredState::Rejected => CoreError::Precondition {
            code: "request-rejected".into(),
            reason: format!("request '{}' was rejected: {why}", r.request_id),
        },
        StoredState::Expired => CoreError::Precondition {
            code: "request-expired".into(),
            reason: format!("request '{}' expired unapproved", r.request_id),
        },
        StoredState::Failed => CoreError::Precondition {
            code: "request-failed".into(),
            reason: format!("request '{}' failed: {why}", r.request_id),
        },
        _ => CoreError::Internal {
            reason: format!("request '{}' is in an unexpected state", r.request_id),
        },
    }
}
