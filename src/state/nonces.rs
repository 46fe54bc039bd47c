//! The Ethereum nonce guard: which request claimed each (chain id, address, nonce).
//!
//! Tree `nonces`: `<chain id>/<address lower-case 0x-hex>/<nonce>` -> [`NonceClaim`] (JSON). A
//! request claims its nonce in the same transaction that commits its decision (allowed, or pending
//! approval), so two different transactions with one nonce cannot both be signed, whatever the
//! concurrency. A claim is dropped when its request is rejected, expires or fails; a replacement
//! (marked by the client and allowed by the deciding rule) takes the claim over.

use serde::{Deserialize, Serialize};

use super::engine::{abort, TxResult};
use super::tree::Tree;
use super::tx::StateTx;
use super::StateError;

/// Who holds a nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceClaim {
    /// The claiming request's key ([`super::requests::request_key`]).
    pub request_id: String,
    /// The transaction's signing hash, 0x-hex (the same transaction again is not a conflict).
    pub signing_hash: String,
}

/// The key of a nonce.
pub fn nonce_key(chain_id: u64, address: &str, nonce: u64) -> String {
    format!("{chain_id}/{}/{nonce}", address.to_ascii_lowercase())
}

/// What claiming found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed (it was free, or held by the same transaction, or replaced).
    Claimed,
    /// Another transaction holds it.
    Conflict {
        /// The request holding it.
        holder: String,
    },
}

/// Whether `claim` may take `key` (read only): free, held by the same request or the same
/// transaction, or `replace` (a replacement the policy allows).
pub fn check_in(
    tx: &StateTx<'_>,
    key: &str,
    claim: &NonceClaim,
    replace: bool,
) -> TxResult<ClaimOutcome> {
    if let Some(v) = tx.get(Tree::Nonces, key.as_bytes())? {
        let old: NonceClaim = serde_json::from_slice(&v)
            .map_err(|e| abort(StateError::Corrupt(format!("nonce '{key}': {e}"))))?;
        if old.request_id != claim.request_id && old.signing_hash != claim.signing_hash && !replace
        {
            return Ok(ClaimOutcome::Conflict {
                holder: old.request_id,
            });
        }
    }
    Ok(ClaimOutcome::Claimed)
}

/// Records `claim` on `key` (after [`check_in`] said it may).
pub fn claim_in(tx: &StateTx<'_>, key: &str, claim: &NonceClaim) -> TxResult<()> {
    let bytes = serde_json::to_vec(claim).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    tx.put(Tree::Nonces, key.as_bytes(), &bytes)
}

/// Drops the claim on `key` if `request_id` holds it.
pub fn release_in(tx: &StateTx<'_>, key: &str, request_id: &str) -> TxResult<()> {
    if let Some(v) = tx.get(Tree::Nonces, key.as_bytes())? {
        if let Ok(old) = serde_json::from_slice::<NonceClaim>(&v) {
            if old.request_id == request_id {
                tx.remove(Tree::Nonces, key.as_bytes())?;
            }
        }
    }
    Ok(())
}
