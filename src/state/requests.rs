//! Requests: the idempotency records, approvals and results of every signing request.
//!
//! Tree `requests`: request id -> [`StoredRequest`] (JSON). The payload is kept (it is not secret)
//! so that a request approved later, or left `authorized` by a crash, can be signed from it; its
//! SHA-256 decides whether a retry is the same request. Tree `pending`: expiry (8 bytes,
//! order-preserving) ‖ request id -> empty, for the requests waiting for approvals, so the expiry
//! sweep and `ListPending` never scan every request. [`put_in`] keeps both in step.

use serde::{Deserialize, Serialize};

use super::sled::{abort, storage, unabortable, SledState, TxResult};
use super::StateError;
use crate::intent::Intent;

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredState {
    /// Decided and committed (limits reserved, audited), not yet signed: a crash left it here, or
    /// signing is under way. A retry (or the recovery pass at unseal) signs it without reserving
    /// again.
    Authorized,
    /// Waiting for approvals (limits held until `quorum.expires_at`).
    PendingApproval,
    /// Signed; `result` holds the artefact.
    Signed,
    /// Refused by the policy (or the nonce guard).
    Denied,
    /// Rejected by an approver.
    Rejected,
    /// Expired unapproved.
    Expired,
    /// Signing failed after the decision (reservation released).
    Failed,
}

/// The payload as received (canonical form; see `signing::decode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredPayload {
    /// PSBT bytes, hex.
    BitcoinPsbt {
        /// Hex.
        hex: String,
    },
    /// Unsigned Ethereum transaction bytes, hex.
    EthereumTransaction {
        /// Hex.
        hex: String,
        /// Address index.
        address_index: Option<u32>,
        /// Marked as a replacement.
        replacement: bool,
    },
    /// EIP-191 message bytes, hex.
    PersonalMessage {
        /// Hex.
        hex: String,
        /// Address index.
        address_index: Option<u32>,
    },
    /// EIP-712 JSON.
    TypedData {
        /// The JSON text.
        json: String,
        /// Address index.
        address_index: Option<u32>,
    },
}

/// A decision as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDecision {
    /// `allow`, `deny` or `needs_approval`.
    pub outcome: String,
    /// The deciding rule (`default` for the default deny).
    pub rule: String,
    /// Stable code.
    pub code: String,
    /// Explanation.
    pub reason: String,
    /// Hash of the deciding policy.
    pub policy_hash: String,
    /// The deciding rule allows nonce replacement.
    #[serde(default)]
    pub allow_replacement: bool,
}

/// The quorum a pending request waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuorum {
    /// Distinct approvals needed.
    pub count: u32,
    /// Roles whose holders may approve.
    pub roles: Vec<String>,
    /// Unix seconds after which the request expires.
    pub expires_at: i64,
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    /// Approver.
    pub principal: String,
    /// Unix seconds.
    pub at: i64,
    /// Reason given.
    pub reason: String,
}

/// A signed artefact as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredOutput {
    /// Final Bitcoin transaction.
    BitcoinTransaction {
        /// Hex.
        raw_tx_hex: String,
        /// Txid.
        txid: String,
        /// Wtxid.
        wtxid: String,
    },
    /// A PSBT still needing other signers.
    SignedPsbt {
        /// BIP174 binary, hex.
        psbt_hex: String,
        /// Why it is not final.
        not_final_reason: String,
    },
    /// Signed Ethereum transaction.
    EthereumTransaction {
        /// 0x-hex.
        raw_tx_hex: String,
        /// 0x-hex.
        tx_hash: String,
    },
    /// A message signature.
    EthereumSignature {
        /// 65 bytes, hex.
        signature_hex: String,
        /// Signer address.
        signer: String,
        /// Digest, 0x-hex.
        digest_hex: String,
    },
}

impl StoredOutput {
    /// The broadcastable transaction (raw hex, id), if this is one.
    pub fn broadcastable(&self) -> Option<(&str, &str)> {
        match self {
            StoredOutput::BitcoinTransaction {
                raw_tx_hex, txid, ..
            } => Some((raw_tx_hex, txid)),
            StoredOutput::EthereumTransaction {
                raw_tx_hex,
                tx_hash,
            } => Some((raw_tx_hex, tx_hash)),
            _ => None,
        }
    }

    /// The id an audit record names (tx id, or the signed digest).
    pub fn audit_id(&self) -> String {
        match self {
            StoredOutput::BitcoinTransaction { txid, .. } => txid.clone(),
            StoredOutput::SignedPsbt { .. } => "partial-psbt".into(),
            StoredOutput::EthereumTransaction { tx_hash, .. } => tx_hash.clone(),
            StoredOutput::EthereumSignature { digest_hex, .. } => digest_hex.clone(),
        }
    }
}

/// Everything stored about one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// Idempotency key.
    pub request_id: String,
    /// Wallet.
    pub wallet: String,
    /// Requesting principal.
    pub requester: String,
    /// The payload.
    pub payload: StoredPayload,
    /// SHA-256 of the canonical payload, hex.
    pub payload_sha256: String,
    /// The decoded intent.
    pub intent: Option<Intent>,
    /// The decision.
    pub decision: Option<StoredDecision>,
    /// Lifecycle state.
    pub state: StoredState,
    /// Quorum, for requests that needed approval.
    pub quorum: Option<StoredQuorum>,
    /// Approvals so far.
    #[serde(default)]
    pub approvals: Vec<StoredVote>,
    /// The signed artefact.
    pub result: Option<StoredOutput>,
    /// Outbox sequence of the signed transaction.
    pub outbox_seq: Option<u64>,
    /// First arrival, unix seconds.
    pub created_at: i64,
    /// Last change, unix seconds.
    pub updated_at: i64,
    /// Failure, denial or rejection reason.
    pub error: Option<String>,
    /// The Ethereum nonce this request claimed ([`super::nonces`]).
    pub nonce_key: Option<String>,
}

/// The `pending` key of a request expiring at `expires_at`.
pub fn pending_key(expires_at: i64, request_id: &str) -> Vec<u8> {
    let mut k = ((expires_at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(request_id.as_bytes());
    k
}

fn decode(id: &str, v: &[u8]) -> Result<StoredRequest, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt(format!("request '{id}': {e}")))
}

/// Reads a request.
pub fn get(state: &SledState, request_id: &str) -> Result<Option<StoredRequest>, StateError> {
    match state.requests.get(request_id).map_err(storage)? {
        None => Ok(None),
        Some(v) => decode(request_id, &v).map(Some),
    }
}

/// Reads a request inside a transaction.
pub fn get_in(tx: &super::sled::StateTx<'_>, request_id: &str) -> TxResult<Option<StoredRequest>> {
    match tx.requests.get(request_id).map_err(unabortable)? {
        None => Ok(None),
        Some(v) => decode(request_id, &v).map(Some).map_err(abort),
    }
}

/// Writes a request inside a transaction and keeps the `pending` index in step.
pub fn put_in(tx: &super::sled::StateTx<'_>, request: &StoredRequest) -> TxResult<()> {
    if let Some(q) = &request.quorum {
        let key = pending_key(q.expires_at, &request.request_id);
        if request.state == StoredState::PendingApproval {
            tx.pending.insert(key, &[][..]).map_err(unabortable)?;
        } else {
            tx.pending.remove(key).map_err(unabortable)?;
        }
    }
    let bytes = serde_json::to_vec(request).map_err(|e| abort(storage(e)))?;
    tx.requests
        .insert(request.request_id.as_bytes(), bytes)
        .map_err(unabortable)?;
    Ok(())
}

/// Ids of pending requests whose expiry is at or before `now`.
pub fn pending_due(state: &SledState, now: i64) -> Result<Vec<String>, StateError> {
    let end = pending_key(now.saturating_add(1), "");
    let mut out = Vec::new();
    for item in state.pending.range(..end) {
        let (k, _) = item.map_err(storage)?;
        out.push(String::from_utf8_lossy(&k[8..]).into_owned());
    }
    Ok(out)
}

/// Pending requests in expiry order, after the index key `after` (a page token), at most `limit`;
/// with the key of the last one returned.
pub fn pending_page(
    state: &SledState,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, StoredRequest)>, StateError> {
    let iter = match after {
        Some(a) => state
            .pending
            .range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
        None => state.pending.iter(),
    };
    let mut out = Vec::new();
    for item in iter {
        let (k, _) = item.map_err(storage)?;
        let id = String::from_utf8_lossy(&k[8..]).into_owned();
        if let Some(r) = get(state, &id)? {
            out.push((k.to_vec(), r));
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Every request in `state` (recovery pass): only those in `wanted`.
pub fn scan_state(
    state: &SledState,
    wanted: StoredState,
) -> Result<Vec<StoredRequest>, StateError> {
    let mut out = Vec::new();
    for item in state.requests.iter() {
        let (k, v) = item.map_err(storage)?;
        let r = decode(&String::from_utf8_lossy(&k), &v)?;
        if r.state == wanted {
            out.push(r);
        }
    }
    Ok(out)
}
