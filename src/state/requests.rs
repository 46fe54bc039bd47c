//! Requests: the idempotency records, decisions, votes and results of every signing request.
//!
//! Request ids are the client's, scoped by the requester: two services may use the same id
//! without seeing or blocking each other. Tree `requests`: [`request_key`] (requester, request id)
//! -> [`StoredRequest`] (JSON, authenticated like every state record). The payload is kept (it is
//! not secret) so that a request approved later, or left `authorized` by a crash, can be signed
//! from it; its SHA-256 decides whether a retry is the same request. Tree `pending`: expiry (8
//! bytes, order-preserving) ‖ request key -> empty, for the requests waiting for approvals, so the
//! expiry sweep and `ListPending` never scan every request. Tree `request_ids`: request id ‖ 0 ‖
//! request key -> empty, so a request can be found by its id alone (an approver who did not name
//! the requester). [`put_in`] keeps all three in step.

use serde::{Deserialize, Serialize};

use super::engine::{abort, Scan, TxResult};
use super::tree::Tree;
use super::tx::{State, StateTx};
use super::StateError;
use crate::governance::VoteDecision;
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

/// One vote (an approval, or the rejection that ended the request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    /// Approver.
    pub principal: String,
    /// Unix seconds (the statement's time, for a signed vote).
    pub at: i64,
    /// Reason given.
    pub reason: String,
    /// Approve (the default, as records written before signed votes hold) or reject.
    #[serde(default)]
    pub decision: VoteDecision,
    /// The approver's signature and the statement it covers. A vote counts only while this
    /// verifies under a key the policy in force enrols for `principal` (re-checked whenever
    /// votes are counted: a record injected or edited in the database counts for nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<StoredVoteSignature>,
}

/// A vote's signature as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVoteSignature {
    /// The approver's public key, canonical text.
    pub key: String,
    /// The signature, hex.
    pub signature: String,
    /// The signed statement (`custos/vote/v1`), hex.
    pub statement: String,
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
    /// When the request became `authorized` (decided allow, or its quorum met), unix seconds:
    /// an authorization older than the core's bound is expired instead of signed.
    #[serde(default)]
    pub authorized_at: Option<i64>,
}

impl StoredRequest {
    /// The key of this request in `requests` (and of its reservation and nonce claims).
    pub fn key(&self) -> String {
        request_key(&self.requester, &self.request_id)
    }
}

/// The storage key of a request: the requester's length, the requester, the client's id
/// (`14:svc-payments/r-1`): unambiguous whatever characters either contains.
pub fn request_key(requester: &str, request_id: &str) -> String {
    format!("{}:{requester}/{request_id}", requester.len())
}

/// The `pending` key of a request expiring at `expires_at`.
pub fn pending_key(expires_at: i64, request_key: &str) -> Vec<u8> {
    let mut k = ((expires_at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(request_key.as_bytes());
    k
}

fn decode(key: &str, v: &[u8]) -> Result<StoredRequest, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt(format!("request '{key}': {e}")))
}

/// Reads a request by its key.
pub fn get(state: &State, key: &str) -> Result<Option<StoredRequest>, StateError> {
    match state.get(Tree::Requests, key.as_bytes())? {
        None => Ok(None),
        Some(v) => decode(key, &v).map(Some),
    }
}

/// Reads a request inside a transaction.
pub fn get_in(tx: &StateTx<'_>, key: &str) -> TxResult<Option<StoredRequest>> {
    match tx.get(Tree::Requests, key.as_bytes())? {
        None => Ok(None),
        Some(v) => decode(key, &v).map(Some).map_err(abort),
    }
}

/// Writes a request inside a transaction and keeps the `pending` index in step.
pub fn put_in(tx: &StateTx<'_>, request: &StoredRequest) -> TxResult<()> {
    let key = request.key();
    if let Some(q) = &request.quorum {
        let index = pending_key(q.expires_at, &key);
        if request.state == StoredState::PendingApproval {
            tx.put(Tree::Pending, &index, &[])?;
        } else {
            tx.remove(Tree::Pending, &index)?;
        }
    }
    let bytes =
        serde_json::to_vec(request).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    tx.put(
        Tree::RequestIds,
        &id_index_key(&request.request_id, &key),
        &[],
    )?;
    tx.put(Tree::Requests, key.as_bytes(), &bytes)
}

/// The records [`get_in`] and [`put_in`] touch for the request `key` (client id `request_id`),
/// with its `pending` entry when it waits until `expires_at`: for [`StateTx::prefetch`].
pub fn record_keys(request_id: &str, key: &str, expires_at: Option<i64>) -> Vec<(Tree, Vec<u8>)> {
    let mut keys = vec![
        (Tree::Requests, key.as_bytes().to_vec()),
        (Tree::RequestIds, id_index_key(request_id, key)),
    ];
    if let Some(at) = expires_at {
        keys.push((Tree::Pending, pending_key(at, key)));
    }
    keys
}

fn id_index_key(request_id: &str, key: &str) -> Vec<u8> {
    let mut k = request_id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The keys of every request whose client id is `request_id` (whoever asked).
pub fn keys_with_id(state: &State, request_id: &str) -> Result<Vec<String>, StateError> {
    let mut prefix = request_id.as_bytes().to_vec();
    prefix.push(0);
    Ok(state
        .scan_lenient(&Scan::prefix(Tree::RequestIds, &prefix, usize::MAX))?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
        .collect())
}

/// Removes a request (pruning) inside a transaction, with its `pending` index entry.
pub fn remove_in(tx: &StateTx<'_>, request: &StoredRequest) -> TxResult<()> {
    let key = request.key();
    if let Some(q) = &request.quorum {
        tx.remove(Tree::Pending, &pending_key(q.expires_at, &key))?;
    }
    tx.remove(Tree::RequestIds, &id_index_key(&request.request_id, &key))?;
    tx.remove(Tree::Requests, key.as_bytes())?;
    Ok(())
}

fn index_to_key(index: &[u8]) -> String {
    String::from_utf8_lossy(&index[8.min(index.len())..]).into_owned()
}

/// Keys of pending requests whose expiry is at or before `now`.
pub fn pending_due(state: &State, now: i64) -> Result<Vec<String>, StateError> {
    let end = pending_key(now.saturating_add(1), "");
    let scan = Scan {
        tree: Tree::Pending,
        from: std::ops::Bound::Unbounded,
        to: std::ops::Bound::Excluded(end),
        reverse: false,
        limit: usize::MAX,
    };
    Ok(state
        .scan_lenient(&scan)?
        .into_iter()
        .map(|(k, _)| index_to_key(&k))
        .collect())
}

/// Pending requests in expiry order, after the index key `after` (a page token), at most `limit`;
/// with the index key of each.
pub fn pending_page(
    state: &State,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, StoredRequest)>, StateError> {
    let scan = match after {
        Some(a) => Scan::after(Tree::Pending, a, limit),
        None => Scan::all(Tree::Pending, limit),
    };
    let mut out = Vec::new();
    for (k, _) in state.scan_lenient(&scan)? {
        let key = index_to_key(&k);
        if let Some(v) = state.get_lenient(Tree::Requests, key.as_bytes())? {
            out.push((k, decode(&key, &v)?));
        }
    }
    Ok(out)
}

/// Visits every request (in key order, a page at a time); a record that fails authentication is
/// skipped and reported.
pub fn for_each(
    state: &State,
    mut visit: impl FnMut(StoredRequest) -> Result<(), StateError>,
) -> Result<(), StateError> {
    const PAGE: usize = 1024;
    let mut scan = Scan::all(Tree::Requests, PAGE);
    loop {
        let raw = state.engine().scan_raw(&scan)?;
        let full = raw.len() == PAGE;
        let last = raw.last().map(|(k, _)| k.clone());
        for (k, v) in raw {
            if let Some(body) = state.open_lenient(Tree::Requests, &k, &v)? {
                visit(decode(&String::from_utf8_lossy(&k), &body)?)?;
            }
        }
        match last {
            Some(k) if full => scan = Scan::after(Tree::Requests, &k, PAGE),
            _ => return Ok(()),
        }
    }
}

/// Every request in state `wanted` (the recovery pass).
pub fn scan_state(state: &State, wanted: StoredState) -> Result<Vec<StoredRequest>, StateError> {
    let mut out = Vec::new();
    for_each(state, |r| {
        if r.state == wanted {
            out.push(r);
        }
        Ok(())
    })?;
    Ok(out)
}
