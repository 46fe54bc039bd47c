//! The audit chain: an append-only log in the state store, each record keyed-hash-chained to the
//! one before it.
//!
//! # Record format
//!
//! Tree `audit`: key = sequence number (8 bytes big-endian, from 1, no gaps); value =
//! `mac (32 bytes) ‖ body`, where `body` is the record's canonical bytes: the JSON of
//! [`AuditRecord`] exactly as written (fields in declaration order, no whitespace), and
//!
//! ```text
//! mac = HMAC-SHA256(audit_key, prev_mac ‖ body)      prev_mac of record 1 = 32 zero bytes
//! ```
//!
//! The body repeats its own sequence number and `prev_mac` (hex), so a record moved to another
//! position or a chain spliced from elsewhere fails. `audit_key` is
//! [`crate::keystore::Unsealed::audit_key`] (derived from the store's DEK): whoever can write the
//! state directory but does not hold the seal cannot forge or rewrite history. The head (last
//! sequence and MAC) is kept in `meta/audit_head` (an authenticated record), so a deleted last
//! record is found too; and the head is anchored outside the database (`super::anchor`), so a
//! truncated or rolled-back chain whose head was rewritten to match is found as well.
//!
//! Records are appended inside the same transaction as the state change they describe
//! ([`append_in`]); if the append fails, the transaction aborts and nothing else is kept.
//! [`verify`] walks the chain and reports the first break; [`tail`] reads the newest records
//! (no key needed: the records hold nothing secret).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::engine::{abort, Scan, TxResult};
use super::tree::Tree;
use super::tx::{State, StateTx};
use super::StateError;
use crate::secret::Secret32;

/// The `meta` key of the chain's head: last sequence (8 bytes BE) ‖ its MAC (32 bytes).
pub const HEAD_KEY: &[u8] = b"audit_head";

/// What a caller records (the chain fields are added by [`append_in`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// What happened: `sign.allow`, `sign.deny`, `sign.pending`, `sign.signed`, `sign.failed`,
    /// `approve`, `reject`, `expire`, `quorum.met`, `unseal`, `seal`, `policy.reload`,
    /// `wallet.create`.
    pub event: String,
    /// Who caused it (`host` for host-side events without a principal).
    pub principal: String,
    /// The request, if any.
    pub request_id: Option<String>,
    /// The wallet, if any.
    pub wallet: Option<String>,
    /// One-line intent summary, if any.
    pub intent: Option<String>,
    /// `allow`, `deny` or `needs_approval`, for decisions.
    pub decision: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The stable code.
    pub code: Option<String>,
    /// Hash of the policy in force.
    pub policy_hash: String,
    /// The signed transaction's id (txid / tx hash), once signed.
    pub tx_id: Option<String>,
    /// Free text (a reason, the previous policy hash, ...).
    pub detail: Option<String>,
}

/// One record as stored (its canonical bytes are this struct's compact JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The previous record's MAC, hex (64 zeros for record 1).
    pub prev: String,
    /// Unix seconds.
    pub at: i64,
    /// See [`AuditEntry::event`].
    pub event: String,
    /// Who.
    pub principal: String,
    /// Request.
    pub request_id: Option<String>,
    /// Wallet.
    pub wallet: Option<String>,
    /// Intent summary.
    pub intent: Option<String>,
    /// Decision outcome.
    pub decision: Option<String>,
    /// Rule.
    pub rule: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Policy hash.
    pub policy_hash: String,
    /// Signed tx id.
    pub tx_id: Option<String>,
    /// Free text.
    pub detail: Option<String>,
}

fn mac_of(key: &Secret32, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).expect("HMAC takes any key");
    mac.update(prev);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn decode_head(v: &[u8]) -> Option<(u64, [u8; 32])> {
    if v.len() != 40 {
        return None;
    }
    let seq = u64::from_be_bytes(v[..8].try_into().ok()?);
    let mac = v[8..].try_into().ok()?;
    Some((seq, mac))
}

fn encode_head(seq: u64, mac: &[u8; 32]) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(mac);
    v
}

/// Appends `entry` inside the transaction; returns its sequence number.
pub fn append_in(tx: &StateTx<'_>, key: &Secret32, entry: &AuditEntry) -> TxResult<u64> {
    append_with_mac_in(tx, key, entry).map(|(seq, _)| seq)
}

/// [`append_in`], also returning the new record's MAC (the new head).
pub fn append_with_mac_in(
    tx: &StateTx<'_>,
    key: &Secret32,
    entry: &AuditEntry,
) -> TxResult<(u64, [u8; 32])> {
    let (last, prev) = match tx.get(Tree::Meta, HEAD_KEY)? {
        None => (0, [0u8; 32]),
        Some(v) => decode_head(&v)
            .ok_or_else(|| abort(StateError::Corrupt("audit head has the wrong size".into())))?,
    };
    let seq = last + 1;
    let record = AuditRecord {
        seq,
        prev: hex::encode(prev),
        at: entry.at,
        event: entry.event.clone(),
        principal: entry.principal.clone(),
        request_id: entry.request_id.clone(),
        wallet: entry.wallet.clone(),
        intent: entry.intent.clone(),
        decision: entry.decision.clone(),
        rule: entry.rule.clone(),
        code: entry.code.clone(),
        policy_hash: entry.policy_hash.clone(),
        tx_id: entry.tx_id.clone(),
        detail: entry.detail.clone(),
    };
    let body =
        serde_json::to_vec(&record).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    let mac = mac_of(key, &prev, &body);
    let mut value = mac.to_vec();
    value.extend_from_slice(&body);
    tx.put_chained(Tree::Audit, &seq.to_be_bytes(), value)?;
    tx.put(Tree::Meta, HEAD_KEY, &encode_head(seq, &mac))?;
    Ok((seq, mac))
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every record is in place and authentic.
    Intact {
        /// Number of records.
        records: u64,
    },
    /// The first break.
    Broken {
        /// The sequence number of the first bad record.
        seq: u64,
        /// `record 17: mac mismatch`, `record 17 missing`, ...
        message: String,
    },
}

fn split(seq: u64, value: &[u8]) -> Result<([u8; 32], AuditRecord), String> {
    if value.len() < 32 {
        return Err(format!("record {seq}: truncated"));
    }
    let mac: [u8; 32] = value[..32].try_into().expect("32 bytes");
    let record: AuditRecord =
        serde_json::from_slice(&value[32..]).map_err(|e| format!("record {seq}: corrupt ({e})"))?;
    Ok((mac, record))
}

/// Walks the whole chain with `key` and reports the first break (a gap, a record whose `prev`
/// is not its predecessor's MAC, a MAC that does not authenticate, a record that does not parse,
/// or records missing at the end according to the head).
pub fn verify(state: &State, key: &Secret32) -> Result<VerifyOutcome, StateError> {
    const PAGE: usize = 4096;
    let broken = |seq: u64, message: String| Ok(VerifyOutcome::Broken { seq, message });
    let mut prev = [0u8; 32];
    let mut expected = 1u64;
    let mut scan = Scan::all(Tree::Audit, PAGE);
    loop {
        let page = state.engine().scan_raw(&scan)?;
        let full = page.len() == PAGE;
        let last_key = page.last().map(|(k, _)| k.clone());
        for (k, v) in page {
            let Ok(bytes) = <[u8; 8]>::try_from(&k[..]) else {
                return broken(expected, format!("record {expected}: unexpected key"));
            };
            let seq = u64::from_be_bytes(bytes);
            if seq != expected {
                return broken(expected, format!("record {expected} missing"));
            }
            let (mac, record) = match split(seq, &v) {
                Ok(x) => x,
                Err(message) => return broken(seq, message),
            };
            if record.seq != seq {
                return broken(
                    seq,
                    format!("record {seq}: carries sequence {}", record.seq),
                );
            }
            if record.prev != hex::encode(prev) {
                return broken(
                    seq,
                    format!("record {seq}: prev does not match record {}", seq - 1),
                );
            }
            let want = mac_of(key, &prev, &v[32..]);
            if !crate::secret::constant_time_eq(&want, &mac) {
                return broken(seq, format!("record {seq}: mac mismatch"));
            }
            prev = mac;
            expected += 1;
        }
        match last_key {
            Some(k) if full => scan = Scan::after(Tree::Audit, &k, PAGE),
            _ => break,
        }
    }
    let records = expected - 1;
    let head = match state.get(Tree::Meta, HEAD_KEY) {
        Ok(head) => head,
        Err(StateError::Tampered { reason, .. }) => {
            return broken(
                records + 1,
                format!("audit head fails authentication: {reason}"),
            )
        }
        Err(e) => return Err(e),
    };
    match head {
        Some(v) => {
            let Some((head, head_mac)) = decode_head(&v) else {
                return broken(records + 1, "audit head is corrupt".into());
            };
            if head > records {
                return broken(records + 1, format!("record {} missing", records + 1));
            }
            if head < records {
                return broken(
                    head + 1,
                    format!("record {} is beyond the recorded head ({head})", head + 1),
                );
            }
            if head_mac != prev {
                return broken(
                    records,
                    format!("record {records}: mac mismatch with the head"),
                );
            }
        }
        None if records > 0 => {
            return broken(records, "the audit head is missing".into());
        }
        None => {}
    }
    Ok(VerifyOutcome::Intact { records })
}

/// The record at `seq` and its MAC, as stored (not authenticated: [`verify`] does that).
pub fn record_at(state: &State, seq: u64) -> Result<Option<([u8; 32], AuditRecord)>, StateError> {
    match state.engine().get_raw(Tree::Audit, &seq.to_be_bytes())? {
        None => Ok(None),
        Some(v) => split(seq, &v).map(Some).map_err(StateError::Corrupt),
    }
}

/// The newest `n` records, oldest first (not authenticated: use [`verify`] for that).
pub fn tail(state: &State, n: usize) -> Result<Vec<AuditRecord>, StateError> {
    let scan = Scan {
        reverse: true,
        ..Scan::all(Tree::Audit, n)
    };
    let mut out = Vec::new();
    for (k, v) in state.engine().scan_raw(&scan)? {
        let seq = <[u8; 8]>::try_from(&k[..])
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let (_, record) = split(seq, &v).map_err(StateError::Corrupt)?;
        out.push(record);
    }
    out.reverse();
    Ok(out)
}

/// The head as recorded (sequence, MAC; `(0, zeros)` when empty), authenticated.
pub fn head_with_mac(state: &State) -> Result<(u64, [u8; 32]), StateError> {
    match state.get(Tree::Meta, HEAD_KEY)? {
        None => Ok((0, [0u8; 32])),
        Some(v) => decode_head(&v)
            .ok_or_else(|| StateError::Corrupt("audit head has the wrong size".into())),
    }
}

/// The newest sequence number (0 when empty), authenticated.
pub fn head(state: &State) -> Result<u64, StateError> {
    head_with_mac(state).map(|(seq, _)| seq)
}
