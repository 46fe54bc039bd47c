//! What the console page shows of a request: the contract's record decoded for people —
//! destinations and amounts in units with their symbol, the fee in the native coin, the rule, the
//! quorum and who has voted (and whether each vote counts), the expiry — plus the vote context
//! the page signs. JSON, built here so that the page never does arithmetic on amounts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::amount::format_decimal;
use crate::governance::intent_text::native_coin;
use crate::intent::Intent;
use crate::signing::contract::{RequestRecord, RequestState};

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn state_name(s: RequestState) -> &'static str {
    match s {
        RequestState::PendingApproval => "pending_approval",
        RequestState::Signed => "signed",
        RequestState::Denied => "denied",
        RequestState::Rejected => "rejected",
        RequestState::Expired => "expired",
        RequestState::Failed => "failed",
    }
}

fn intent_view(i: &Intent) -> Value {
    let (native, decimals) = native_coin(i);
    let unit = |amount| {
        if i.is_unlimited() {
            format!("unlimited {}", i.asset.symbol)
        } else {
            i.asset.format(amount)
        }
    };
    json!({
        "summary": i.summary(),
        "kind": i.kind.as_str(),
        "network": format!("{}/{}", i.chain, i.network),
        "asset": i.asset.symbol,
        "amount": unit(i.amount),
        "fee": format!("{} {native}", format_decimal(i.fee, decimals)),
        "destinations": i.destinations.iter().map(|d| json!({
            "address": d.address,
            "amount": unit(d.amount),
        })).collect::<Vec<_>>(),
        "change": i.change.iter().map(|d| json!({
            "address": d.address,
            "amount": format!("{} {native}", format_decimal(d.amount, decimals)),
        })).collect::<Vec<_>>(),
    })
}

/// The page's view of one request.
pub fn request(r: &RequestRecord) -> Value {
    let pending = r.pending.as_ref();
    json!({
        "request_id": r.request_id,
        "requester": r.requester,
        "wallet": r.wallet,
        "state": state_name(r.state),
        "created_at": unix(r.created_at),
        "payload_sha256": r.payload_sha256,
        "intent": r.intent.as_ref().map_or(Value::Null, intent_view),
        "rule": r.decision.as_ref().map(|d| d.rule.clone()),
        "decision_reason": r.decision.as_ref().map(|d| d.reason.clone()),
        "policy_hash": r.decision.as_ref().map(|d| d.policy_hash.clone()),
        "quorum": pending.map(|p| json!({
            "required": p.required,
            "roles": p.roles,
            "counted": p.approvals.iter().filter(|v| v.counted && v.decision == crate::governance::VoteDecision::Approve).count(),
        })),
        "expires_at": pending.map(|p| unix(p.expires_at)),
        "votes": pending.map(|p| p.approvals.iter().map(|v| json!({
            "approver": v.principal,
            "decision": v.decision.as_str(),
            "at": unix(v.at),
            "reason": v.reason,
            "key": v.signature.as_ref().map(|s| s.key.clone()),
            "counted": v.counted,
            "note": v.note,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "vote_context": r.vote_context,
        "result": r.result.as_ref().map(|s| match &s.output {
            crate::signing::contract::SignedOutput::BitcoinTransaction { txid, .. } => json!({ "tx_id": txid }),
            crate::signing::contract::SignedOutput::EthereumTransaction { tx_hash, .. } => json!({ "tx_id": tx_hash }),
            crate::signing::contract::SignedOutput::SignedPsbt { not_final_reason, .. } => json!({ "partial": not_final_reason }),
            crate::signing::contract::SignedOutput::EthereumSignature { digest_hex, .. } => json!({ "signed_digest": digest_hex }),
        }),
        "error": r.error,
    })
}
