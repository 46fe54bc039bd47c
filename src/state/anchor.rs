//! Rollback and truncation: the audit head checked against an anchor kept outside the database.
//!
//! The state database cannot vouch for its own freshness: an older copy of the whole directory is
//! consistent in itself (every record authenticates, the digest matches). So the audit chain's
//! head is also kept where the state's administrator cannot roll it back together with the state:
//! in the sealed key store (`crate::keystore::anchor`, written at seal, at a clean shutdown, after
//! unsealing and periodically while serving), in every outbox entry (the broadcaster sees the
//! chain's sequence only grow), and wherever an operator writes it down (`custos audit verify
//! --expect-head SEQ:MAC`).
//!
//! [`check`] compares the state with an anchor: the chain must reach the anchored sequence and hold
//! the anchored MAC there. So it detects a state rolled back or truncated to before the anchor, a
//! chain rewritten after it, an emptied state, and a state from another installation.
//!
//! What it cannot detect: a rollback to a point *after* the newest anchor (the work since the last
//! anchor — at most the anchoring period, 30 s by default, unless the process was killed, in
//! which case up to the last anchor before the kill), unless the broadcaster or an operator holds
//! a newer head; and a rollback of the key store together with the state (both directories
//! restored from the same backup) — keep key-store backups apart from state backups, and keep the
//! broadcaster's view.

use super::audit;
use super::tx::State;
use super::StateError;

/// The audit head (sequence, MAC) an anchor asserts.
pub type Head = (u64, [u8; 32]);

/// Whether the state's audit chain contains `anchor`: `Ok` if the chain reaches it with the same
/// MAC, `Err(Rollback)` saying what is wrong.
pub fn check(state: &State, anchor: Head) -> Result<(), StateError> {
    let (anchor_seq, anchor_mac) = anchor;
    if anchor_seq == 0 {
        return Ok(());
    }
    let (seq, mac) = audit::head_with_mac(state)?;
    if seq < anchor_seq {
        return Err(StateError::Rollback(format!(
            "the state's audit chain ends at record {seq}, but record {anchor_seq} was anchored: \
             the state database was rolled back or truncated"
        )));
    }
    let at_anchor = if seq == anchor_seq {
        Some(mac)
    } else {
        audit::record_at(state, anchor_seq)?.map(|(mac, _)| mac)
    };
    match at_anchor {
        Some(found) if crate::secret::constant_time_eq(&found, &anchor_mac) => Ok(()),
        Some(_) => Err(StateError::Rollback(format!(
            "audit record {anchor_seq} is not the one anchored: the state's history was \
             rewritten, or the state belongs to another installation"
        ))),
        None => Err(StateError::Rollback(format!(
            "audit record {anchor_seq}, which was anchored, is missing"
        ))),
    }
}

/// Parses `SEQ:MAC` (MAC as 64 hex digits), as `custos audit verify --expect-head` takes it and
/// as [`format_head`] prints it.
pub fn parse_head(text: &str) -> Result<Head, String> {
    let (seq, mac) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not SEQ:MAC"))?;
    let seq: u64 = seq
        .trim()
        .parse()
        .map_err(|_| format!("'{seq}' is not a sequence number"))?;
    let bytes = hex::decode(mac.trim()).map_err(|_| "the MAC is not hex".to_owned())?;
    let mac: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "the MAC is not 32 bytes (64 hex digits)".to_owned())?;
    Ok((seq, mac))
}

/// `SEQ:MAC`.
pub fn format_head(head: Head) -> String {
    format!("{}:{}", head.0, hex::encode(head.1))
}
