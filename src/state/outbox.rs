//! The outbox: signed transactions for the broadcaster, in order, from a cursor.
//!
//! Tree `outbox`: sequence (8 bytes big-endian, from 1) -> [`StoredOutboxEntry`] (JSON,
//! authenticated). The entry is pushed in the same transaction that marks its request signed
//! ([`push_in`]), so a request is signed iff its entry exists, and never has two. `meta/outbox_head`
//! holds the newest sequence. Tree `cursors`: broadcaster principal -> the last sequence it
//! acknowledged (8 bytes BE); delivery is at-least-once from there (the tx ids let the broadcaster
//! dedupe).
//!
//! Each entry carries the audit chain's head as of its own `sign.signed` record (sequence and
//! MAC): the broadcaster sees the chain only ever grow, so a state database rolled back behind
//! what it already received shows up as a sequence going backwards.

use serde::{Deserialize, Serialize};

use super::engine::{abort, Scan, TxResult};
use super::tree::Tree;
use super::tx::{State, StateTx};
use super::StateError;
use crate::network::Chain;

/// The `meta` key of the newest outbox sequence.
pub const HEAD_KEY: &[u8] = b"outbox_head";

/// One signed transaction as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutboxEntry {
    /// Sequence.
    pub sequence: u64,
    /// The producing request (the client's id).
    pub request_id: String,
    /// Chain family.
    pub chain: Chain,
    /// Canonical network name.
    pub network: String,
    /// Wallet.
    pub wallet: String,
    /// Raw transaction, hex.
    pub raw_tx_hex: String,
    /// Txid / tx hash.
    pub tx_id: String,
    /// Unix seconds.
    pub signed_at: i64,
    /// The audit chain's head after this entry's `sign.signed` record: its sequence.
    #[serde(default)]
    pub audit_sequence: u64,
    /// ... and its MAC, hex.
    #[serde(default)]
    pub audit_mac: String,
}

fn u64_of(v: &[u8]) -> u64 {
    <[u8; 8]>::try_from(v).map(u64::from_be_bytes).unwrap_or(0)
}

fn head_in(tx: &StateTx<'_>) -> TxResult<u64> {
    Ok(tx
        .get(Tree::Meta, HEAD_KEY)?
        .map(|v| u64_of(&v))
        .unwrap_or(0))
}

/// The sequence the next [`push_in`] of this transaction will assign.
pub fn next_sequence_in(tx: &StateTx<'_>) -> TxResult<u64> {
    Ok(head_in(tx)? + 1)
}

/// Appends an entry (its `sequence` is assigned here) inside a transaction; returns the sequence.
pub fn push_in(tx: &StateTx<'_>, entry: &StoredOutboxEntry) -> TxResult<u64> {
    let seq = head_in(tx)? + 1;
    let mut e = entry.clone();
    e.sequence = seq;
    let bytes = serde_json::to_vec(&e).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    tx.put(Tree::Outbox, &seq.to_be_bytes(), &bytes)?;
    tx.put(Tree::Meta, HEAD_KEY, &seq.to_be_bytes())?;
    Ok(seq)
}

/// The newest sequence (0 when empty).
pub fn head(state: &State) -> Result<u64, StateError> {
    Ok(state
        .get(Tree::Meta, HEAD_KEY)?
        .map(|v| u64_of(&v))
        .unwrap_or(0))
}

/// Entries with `after` < sequence ≤ `up_to`, at most `limit`, in order.
pub fn read_after(
    state: &State,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredOutboxEntry>, StateError> {
    if up_to <= after {
        return Ok(Vec::new());
    }
    let scan = Scan {
        tree: Tree::Outbox,
        from: std::ops::Bound::Excluded(after.to_be_bytes().to_vec()),
        to: std::ops::Bound::Included(up_to.to_be_bytes().to_vec()),
        reverse: false,
        limit,
    };
    // Lenient: an entry that fails authentication is skipped (and reported), never delivered;
    // the broadcaster sees a gap in the sequence.
    state
        .scan_lenient(&scan)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| StateError::Corrupt(format!("outbox entry: {e}")))
        })
        .collect()
}

/// The acknowledged cursor of `principal` (0 when none).
pub fn cursor(state: &State, principal: &str) -> Result<u64, StateError> {
    Ok(state
        .get(Tree::Cursors, principal.as_bytes())?
        .map(|v| u64_of(&v))
        .unwrap_or(0))
}

/// Moves the cursor of `principal` forward to `sequence` (never back) inside a transaction;
/// returns the cursor now.
pub fn ack_in(tx: &StateTx<'_>, principal: &str, sequence: u64) -> TxResult<u64> {
    let old = tx
        .get(Tree::Cursors, principal.as_bytes())?
        .map(|v| u64_of(&v))
        .unwrap_or(0);
    let new = old.max(sequence);
    if new != old {
        tx.put(Tree::Cursors, principal.as_bytes(), &new.to_be_bytes())?;
    }
    Ok(new)
}
