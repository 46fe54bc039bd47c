//! Pruning: dropping finished requests older than a date, with their payloads, while the audit
//! chain stays whole and verifiable (it never held a payload).
//!
//! A request is finished when nothing can happen to it any more: signed, denied, rejected, expired
//! or failed. Pending and authorized requests are never pruned, nor is anything their limits,
//! nonces or holds depend on. A pruned request's id can no longer be answered from the store (a
//! retry with the same id and payload is then decided afresh), so prune only past the horizon in
//! which clients retry. Ledger usage is kept (it ages out of the windows by itself); the request's
//! reservation record goes, as nothing can release it any more. Each batch is one transaction with
//! its own audit record (`state.prune`: how many, before when).

use super::audit::{self, AuditEntry};
use super::ledger::forget_in;
use super::requests::{self, StoredRequest, StoredState};
use super::tx::State;
use super::StateError;
use crate::secret::Secret32;

/// Requests pruned per transaction.
const BATCH: usize = 256;

/// What pruning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Requests examined.
    pub examined: u64,
    /// Requests removed.
    pub removed: u64,
}

fn finished(r: &StoredRequest) -> bool {
    matches!(
        r.state,
        StoredState::Signed
            | StoredState::Denied
            | StoredState::Rejected
            | StoredState::Expired
            | StoredState::Failed
    )
}

/// Removes finished requests last changed before `before` (unix seconds); audited as `principal`.
pub fn prune(
    state: &State,
    audit_key: &Secret32,
    before: i64,
    principal: &str,
    policy_hash: &str,
    now: i64,
) -> Result<PruneReport, StateError> {
    let mut report = PruneReport::default();
    let mut victims = Vec::new();
    requests::for_each(state, |r| {
        report.examined += 1;
        if finished(&r) && r.updated_at < before {
            victims.push(r);
        }
        Ok(())
    })?;
    for batch in victims.chunks(BATCH) {
        // Every record the batch touches, fetched at once (one round trip on a networked engine).
        let reads: Vec<_> = batch
            .iter()
            .flat_map(|r| {
                let key = r.key();
                let mut keys = requests::record_keys(
                    &r.request_id,
                    &key,
                    r.quorum.as_ref().map(|q| q.expires_at),
                );
                keys.extend(super::ledger::confirm_keys(&key, None));
                keys
            })
            .collect();
        let removed = state.transact(|tx| {
            tx.prefetch(&reads)?;
            let mut removed = 0u64;
            for r in batch {
                // Re-read: only what is still finished and old is removed.
                let Some(current) = requests::get_in(tx, &r.key())? else {
                    continue;
                };
                if !finished(&current) || current.updated_at >= before {
                    continue;
                }
                forget_in(tx, &current.key())?;
                requests::remove_in(tx, &current)?;
                removed += 1;
            }
            if removed > 0 {
                audit::append_in(
                    tx,
                    audit_key,
                    &AuditEntry {
                        at: now,
                        event: "state.prune".into(),
                        principal: principal.to_owned(),
                        policy_hash: policy_hash.to_owned(),
                        detail: Some(format!(
                            "{removed} finished request(s) last changed before {before} removed"
                        )),
                        ..AuditEntry::default()
                    },
                )?;
            }
            Ok(removed)
        })?;
        report.removed += removed;
    }
    state.flush()?;
    Ok(report)
}
