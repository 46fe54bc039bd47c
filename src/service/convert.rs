//! Translation between the plain core types and the protobuf messages (both directions), so the
//! handlers stay a few lines each. Inbound translation validates what the edge can check on its own
//! (request id syntax, a payload present); everything chain- or policy-specific is the core's job.

use prost_types::Timestamp;

use crate::intent::{ActionKind, Intent};
use crate::keys::Chain;

use super::proto;
use crate::signing::contract as model;
use crate::signing::contract::CoreError;
use crate::signing::contract::RequestRef;

/// The longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Checks a caller-chosen request id: 1 to 128 characters from `[A-Za-z0-9._:-]`.
pub fn request_id(id: &str) -> Result<String, CoreError> {
    if id.is_empty() {
        return Err(CoreError::invalid("request_id", "must not be empty"));
    }
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(CoreError::invalid(
            "request_id",
            format!("{} characters, at most {MAX_REQUEST_ID_LEN}", id.len()),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(CoreError::invalid(
            "request_id",
            format!("character {bad:?} is not allowed (expected [A-Za-z0-9._:-])"),
        ));
    }
    Ok(id.to_owned())
}

/// A request reference from an id and an optional requester (empty = none).
pub fn request_ref(id: &str, requester: &str) -> Result<RequestRef, CoreError> {
    let request_id = request_id(id)?;
    let requester = match requester {
        "" => None,
        r if r.len() > 1024 => {
            return Err(CoreError::invalid(
                "requester",
                format!("{} bytes, at most 1024", r.len()),
            ))
        }
        r => Some(r.to_owned()),
    };
    Ok(RequestRef {
        request_id,
        requester,
    })
}

fn non_empty(field: &str, value: String) -> Result<String, CoreError> {
    if value.trim().is_empty() {
        Err(CoreError::invalid(field, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// `SignRequest` in.
pub fn sign_request(request: proto::SignRequest) -> Result<model::SignRequest, CoreError> {
    use proto::sign_request::Payload;
    let request_id = request_id(&request.request_id)?;
    let wallet = non_empty("wallet", request.wallet)?;
    let payload = match request.payload {
        None => return Err(CoreError::invalid("payload", "no payload given")),
        Some(Payload::BitcoinPsbt(p)) => {
            model::SignPayload::BitcoinPsbt(non_empty_bytes("bitcoin_psbt.psbt", p.psbt)?)
        }
        Some(Payload::EthereumTransaction(p)) => model::SignPayload::EthereumTransaction {
            unsigned_tx: non_empty_bytes("ethereum_transaction.unsigned_tx", p.unsigned_tx)?,
            address_index: p.address_index,
            replacement: p.replacement,
        },
        Some(Payload::PersonalMessage(p)) => model::SignPayload::PersonalMessage {
            message: p.message,
            address_index: p.address_index,
        },
        Some(Payload::TypedData(p)) => model::SignPayload::TypedData {
            json: non_empty("typed_data.json", p.json)?,
            address_index: p.address_index,
        },
    };
    Ok(model::SignRequest {
        request_id,
        wallet,
        payload,
    })
}

fn non_empty_bytes(field: &str, value: Vec<u8>) -> Result<Vec<u8>, CoreError> {
    if value.is_empty() {
        Err(CoreError::invalid(field, "must not be empty"))
    } else {
        Ok(value)
    }
}

/// `ListPendingRequest` in: page size clamped to 1..=1000, default 100.
pub fn list_pending(request: proto::ListPendingRequest) -> model::ListPending {
    model::ListPending {
        wallet: Some(request.wallet).filter(|w| !w.is_empty()),
        page_size: match request.page_size {
            0 => 100,
            n => n.min(1000),
        },
        page_token: Some(request.page_token).filter(|t| !t.is_empty()),
    }
}

/// `CreateWalletRequest` in.
pub fn create_wallet(
    request: proto::CreateWalletRequest,
) -> Result<model::CreateWallet, CoreError> {
    let chain = match proto::Chain::try_from(request.chain) {
        Ok(proto::Chain::Bitcoin) => Chain::Bitcoin,
        Ok(proto::Chain::Ethereum) => Chain::Ethereum,
        _ => return Err(CoreError::invalid("chain", "expected bitcoin or ethereum")),
    };
    Ok(model::CreateWallet {
        name: non_empty("name", request.name)?,
        chain,
        network: non_empty("network", request.network)?,
        purpose: Some(request.purpose).filter(|p| *p != 0),
        account: request.account,
        seed: Some(request.seed).filter(|s| !s.is_empty()),
    })
}

/// Chain out.
pub fn chain(chain: Chain) -> proto::Chain {
    match chain {
        Chain::Bitcoin => proto::Chain::Bitcoin,
        Chain::Ethereum => proto::Chain::Ethereum,
    }
}

fn action_kind(kind: ActionKind) -> proto::ActionKind {
    match kind {
        ActionKind::Transfer => proto::ActionKind::Transfer,
        ActionKind::TokenTransfer => proto::ActionKind::TokenTransfer,
        ActionKind::TokenApproval => proto::ActionKind::TokenApproval,
        ActionKind::ContractCall => proto::ActionKind::ContractCall,
        ActionKind::ContractCreation => proto::ActionKind::ContractCreation,
        ActionKind::Message => proto::ActionKind::Message,
        ActionKind::BlindMessage => proto::ActionKind::BlindMessage,
        ActionKind::TypedMessage => proto::ActionKind::TypedMessage,
    }
}

/// Intent out: amounts as decimal strings of base units.
pub fn intent(intent: &Intent) -> proto::Intent {
    let destination = |d: &crate::intent::Destination| proto::Destination {
        address: d.address.clone(),
        amount: d.amount.to_string(),
    };
    proto::Intent {
        wallet: intent.wallet.clone(),
        chain: chain(intent.chain).into(),
        network: intent.network.clone(),
        kind: action_kind(intent.kind).into(),
        asset: Some(proto::Asset {
            symbol: intent.asset.symbol.clone(),
            decimals: u32::from(intent.asset.decimals),
            contract: intent.asset.contract.clone().unwrap_or_default(),
        }),
        destinations: intent.destinations.iter().map(destination).collect(),
        amount: intent.amount.to_string(),
        fee: intent.fee.to_string(),
        fee_rate_sat_per_kvb: intent.fee_rate_sat_per_kvb,
        change: intent.change.iter().map(destination).collect(),
        foreign_input_value: intent.foreign_input_value.to_string(),
        nonce: intent.nonce,
        contract: intent.contract.clone(),
        selector: intent.selector.clone(),
        deadline: intent.deadline,
        message: intent.message.as_ref().map(|m| proto::MessageInfo {
            domain_name: m.domain_name.clone(),
            domain_chain_id: m.domain_chain_id,
            verifying_contract: m.verifying_contract.clone(),
            primary_type: m.primary_type.clone(),
            preview: m.preview.clone(),
            without_chain_id: m.without_chain_id,
        }),
        unlimited: intent.is_unlimited(),
        summary: intent.summary(),
    }
}

/// Decision out.
pub fn decision(decision: &model::Decision) -> proto::Decision {
    use proto::decision::Outcome;
    proto::Decision {
        outcome: match decision.outcome {
            model::DecisionOutcome::Allow => Outcome::Allow,
            model::DecisionOutcome::Deny => Outcome::Deny,
            model::DecisionOutcome::NeedsApproval => Outcome::NeedsApproval,
        }
        .into(),
        rule: decision.rule.clone(),
        code: decision.code.clone(),
        reason: decision.reason.clone(),
        policy_hash: decision.policy_hash.clone(),
    }
}

/// Pending out.
pub fn pending(pending: &model::PendingApproval) -> proto::Pending {
    proto::Pending {
        quorum: Some(proto::Quorum {
            required: pending.required,
            roles: pending.roles.clone(),
        }),
        approvals: pending
            .approvals
            .iter()
            .map(|a| proto::Approval {
                principal: a.principal.clone(),
                at: Some(Timestamp::from(a.at)),
                reason: a.reason.clone(),
                decision: a.decision.as_str().to_owned(),
                key: a
                    .signature
                    .as_ref()
                    .map(|s| s.key.clone())
                    .unwrap_or_default(),
                signature: a
                    .signature
                    .as_ref()
                    .map(|s| s.signature.clone())
                    .unwrap_or_default(),
                statement: a
                    .signature
                    .as_ref()
                    .map(|s| s.statement.clone())
                    .unwrap_or_default(),
                counted: a.counted,
                note: a.note.clone().unwrap_or_default(),
            })
            .collect(),
        expires_at: Some(Timestamp::from(pending.expires_at)),
    }
}

/// Signed result out.
pub fn signed(result: &model::SignedResult) -> proto::Signed {
    use proto::signed::Result as R;
    let result_field = match &result.output {
        model::SignedOutput::BitcoinTransaction {
            raw_tx_hex,
            txid,
            wtxid,
        } => R::BitcoinTransaction(proto::BitcoinTransaction {
            raw_tx_hex: raw_tx_hex.clone(),
            txid: txid.clone(),
            wtxid: wtxid.clone(),
        }),
        model::SignedOutput::SignedPsbt {
            psbt,
            not_final_reason,
        } => R::SignedPsbt(proto::SignedPsbt {
            psbt: psbt.clone(),
            not_final_reason: not_final_reason.clone(),
        }),
        model::SignedOutput::EthereumTransaction {
            raw_tx_hex,
            tx_hash,
        } => R::EthereumTransaction(proto::EthereumTransaction {
            raw_tx_hex: raw_tx_hex.clone(),
            tx_hash: tx_hash.clone(),
        }),
        model::SignedOutput::EthereumSignature {
            signature,
            signer,
            digest_hex,
        } => R::EthereumSignature(proto::EthereumSignature {
            signature: signature.to_vec(),
            signer: signer.clone(),
            digest_hex: digest_hex.clone(),
        }),
    };
    proto::Signed {
        result: Some(result_field),
        outbox_sequence: result.outbox_sequence.unwrap_or(0),
    }
}

/// Sign reply out.
pub fn sign_reply(reply: &model::SignReply) -> proto::SignResponse {
    use proto::sign_response::Outcome;
    proto::SignResponse {
        request_id: reply.request_id.clone(),
        outcome: Some(match &reply.outcome {
            model::SignOutcome::Signed(result) => Outcome::Signed(signed(result)),
            model::SignOutcome::Pending(p) => Outcome::Pending(pending(p)),
        }),
        intent: Some(intent(&reply.intent)),
        decision: Some(decision(&reply.decision)),
    }
}

/// Request record out.
pub fn request_record(record: &model::RequestRecord) -> proto::RequestRecord {
    use model::RequestState as S;
    use proto::RequestState as P;
    proto::RequestRecord {
        request_id: record.request_id.clone(),
        wallet: record.wallet.clone(),
        requester: record.requester.clone(),
        state: match record.state {
            S::PendingApproval => P::PendingApproval,
            S::Signed => P::Signed,
            S::Denied => P::Denied,
            S::Rejected => P::Rejected,
            S::Expired => P::Expired,
            S::Failed => P::Failed,
        }
        .into(),
        intent: record.intent.as_ref().map(intent),
        decision: record.decision.as_ref().map(decision),
        pending: record.pending.as_ref().map(pending),
        result: record.result.as_ref().map(signed),
        created_at: Some(Timestamp::from(record.created_at)),
        updated_at: Some(Timestamp::from(record.updated_at)),
        error: record.error.clone().unwrap_or_default(),
        payload_sha256: record.payload_sha256.clone(),
        vote_context: record.vote_context.as_ref().map(|c| proto::VoteContext {
            custody: c.custody.clone(),
            request_id: c.request_id.clone(),
            requester: c.requester.clone(),
            wallet: c.wallet.clone(),
            payload_sha256: c.payload_sha256.clone(),
            intent: c.intent.clone(),
        }),
    }
}

/// A vote in: the reason and the signature, if any.
pub fn vote(reason: &str, signature: Option<&proto::VoteSignature>) -> model::VoteInput {
    model::VoteInput {
        reason: reason.to_owned(),
        signature: signature.map(|s| model::VoteSignature {
            at: s.at,
            key: s.key.clone(),
            signature: s.signature.clone(),
        }),
    }
}

/// Wallet out.
pub fn wallet(wallet: &model::WalletSummary) -> proto::WalletInfo {
    proto::WalletInfo {
        name: wallet.name.clone(),
        chain: chain(wallet.chain).into(),
        network: wallet.network.clone(),
        account_path: wallet.account_path.clone(),
        master_fingerprint: wallet.master_fingerprint.clone(),
        account_xpub: wallet.account_xpub.clone(),
        descriptor: wallet.descriptor.clone().unwrap_or_default(),
    }
}

/// Outbox entry out.
pub fn outbox_entry(entry: &model::OutboxEntry) -> proto::OutboxEntry {
    proto::OutboxEntry {
        sequence: entry.sequence,
        request_id: entry.request_id.clone(),
        chain: chain(entry.chain).into(),
        network: entry.network.clone(),
        wallet: entry.wallet.clone(),
        raw_tx_hex: entry.raw_tx_hex.clone(),
        tx_id: entry.tx_id.clone(),
        signed_at: Some(Timestamp::from(entry.signed_at)),
        audit_sequence: entry.audit_sequence,
        audit_mac: entry.audit_mac.clone(),
    }
}

/// Seal state out.
pub fn seal_state(state: model::SealState) -> proto::SealState {
    match state {
        model::SealState::Sealed => proto::SealState::Sealed,
        model::SealState::Unsealing { .. } => proto::SealState::Unsealing,
        model::SealState::Unsealed => proto::SealState::Unsealed,
    }
}

/// The shares given and needed while unsealing; zeros otherwise.
pub fn shares(state: model::SealState) -> (u32, u32) {
    match state {
        model::SealState::Unsealing {
            given, threshold, ..
        } => (given, threshold),
        _ => (0, 0),
    }
}

/// The indexes of the shares given and when the progress expires, while unsealing.
pub fn share_progress(state: model::SealState) -> (Vec<u32>, i64) {
    match state {
        model::SealState::Unsealing {
            indexes,
            expires_at,
            ..
        } => (indexes.iter().map(u32::from).collect(), expires_at),
        _ => (Vec::new(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(request_id("pay-2024-01-01:0001_a.b").is_ok());
        assert!(request_id("").is_err());
        assert!(request_id("with space").is_err());
        assert!(request_id(&"x".repeat(129)).is_err());
        assert!(request_id(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn sign_request_needs_a_payload() {
        let err = sign_request(proto::SignRequest {
            request_id: "r1".into(),
            wallet: "hot".into(),
            payload: None,
        })
        .unwrap_err();
        assert_eq!(err.code(), "invalid-argument");
    }
}
