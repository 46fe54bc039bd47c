//! The outbox: signed transactions for the broadcaster, in order, from a cursor.
//!
//! Tree `outbox`: sequence (8 bytes big-endian, from 1) -> [`StoredOutboxEntry`] (JSON). The entry
//! is pushed in the same transaction that marks its request signed ([`push_in`]), so a request is
//! signed iff its entry exists, and never has two. `meta/outbox_head` holds the newest sequence.
//! Tree `cursors`: broadcaster principal -> the last sequence it acknowledged (8 bytes BE);
//! delivery is at-least-once from there (the tx ids let the broadcaster dedupe).

use serde::{Deserialize, Serialize};

use super::sled::{abort, storage, unabortable, SledState, StateTx, TxResult};
use super::StateError;
use crate::keys::Chain;

/// The `meta` key of the newest outbox sequence.
pub const HEAD_KEY: &[u8] = b"outbox_head";

/// One signed transaction as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutboxEntry {
    /// Sequence.
    pub sequence: u64,
    /// The producing request.
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
}

fn u64_of(v: &[u8]) -> u64 {
    <[u8; 8]>::try_from(v).map(u64::from_be_bytes).unwrap_or(0)
}

/// Appends an entry (its `sequence` is assigned here) inside a transaction; returns the sequence.
pub fn push_in(tx: &StateTx<'_>, entry: &StoredOutboxEntry) -> TxResult<u64> {
    let head = tx
        .meta
        .get(HEAD_KEY)
        .map_err(unabortable)?
        .map(|v| u64_of(&v))
        .unwrap_or(0);
    let seq = head + 1;
    let mut e = entry.clone();
    e.sequence = seq;
    let bytes = serde_json::to_vec(&e).map_err(|e| abort(storage(e)))?;
    tx.outbox
        .insert(&seq.to_be_bytes(), bytes)
        .map_err(unabortable)?;
    tx.meta
        .insert(HEAD_KEY, &seq.to_be_bytes())
        .map_err(unabortable)?;
    Ok(seq)
}

/// The newest sequence (0 when empty).
pub fn head(state: &SledState) -> Result<u64, StateError> {
    Ok(state
        .meta
        .get(HEAD_KEY)
        .map_err(storage)?
        .map(|v| u64_of(&v))
        .unwrap_or(0))
}

/// Entries with sequence > `after`, at most `limit`, in order.
pub fn read_after(
    state: &SledState,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredOutboxEntry>, StateError> {
    let mut out = Vec::new();
    for item in state.outbox.range(after.saturating_add(1).to_be_bytes()..) {
        let (_, v) = item.map_err(storage)?;
        out.push(
            serde_json::from_slice(&v)
                .map_err(|e| StateError::Corrupt(format!("outbox entry: {e}")))?,
        );
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The acknowledged cursor of `principal` (0 when none).
pub fn cursor(state: &SledState, principal: &str) -> Result<u64, StateError> {
    Ok(state
        .cursors
        .get(principal)
        .map_err(storage)?
        .map(|v| u64_of(&v))
        .unwrap_or(0))
}

/// Moves the cursor of `principal` forward to `sequence` (never back); returns the cursor now.
/// Not flushed: the caller makes it durable.
pub fn ack(state: &SledState, principal: &str, sequence: u64) -> Result<u64, StateError> {
    let new = state
        .cursors
        .update_and_fetch(principal, |old| {
            let old = old.map(u64_of).unwrap_or(0);
            Some(old.max(sequence).to_be_bytes().to_vec())
        })
        .map_err(storage)?;
    Ok(new.map(|v| u64_of(&v)).unwrap_or(sequence))
}
