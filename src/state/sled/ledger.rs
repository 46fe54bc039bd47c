//! The ledger steps inside a transaction: check-and-reserve, release, reserve again (after an
//! approval), confirm, and the window sums they check against; and the [`StateStore`] methods,
//! each one of these steps in its own transaction, flushed before it returns.
//!
//! The steps exist twice: as [`StateStore`] methods, and as functions over a [`LedgerTx`] for use
//! inside a larger transaction ([`SledState::transact`]), so the service commits "reserve limits
//! + store request + append audit" atomically:
//!
//! ```ignore
//! state.transact(|tx| {
//!     let outcome = reserve_in(&tx.ledger, id, &plan, None)?;
//!     // … requests::put_in(tx, ..), audit::append_in(tx, ..) in the same transaction …
//!     Ok(outcome)
//! })?;
//! state.flush()?; // durable before the signature leaves
//! ```

use serde::{Deserialize, Serialize};

use super::{abort, storage, unabortable, LedgerTx, SledState, TxResult};
use crate::amount::{serde_decimal, Amount};
use crate::policy::limits::{LedgerKey, ReservationPlan, Usage, UsageView};
use crate::state::buckets::{
    self, bucket_key, buckets_containing, key_prefix, minute_of, window_buckets, window_runs,
};
use crate::state::{ReleaseOutcome, ReserveOutcome, StateError, StateStore};

/// One reservation as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) at: i64,
    #[serde(with = "serde_decimal")]
    pub(super) amount: Amount,
    pub(super) keys: Vec<LedgerKey>,
    /// `None`: permanent; `Some(t)`: a hold until `t`.
    pub(super) hold_until: Option<i64>,
    pub(super) released: bool,
}

fn hold_key(until: i64, request_id: &str) -> Vec<u8> {
    let mut k = ((until as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Sums the buckets of a window with `get` (a tree or a transactional tree).
fn sum_window<E>(
    mut get: impl FnMut(&[u8]) -> Result<Option<sled::IVec>, E>,
    key: &LedgerKey,
    from: i64,
    to: i64,
) -> Result<Result<Usage, StateError>, E> {
    let prefix = key_prefix(key);
    let mut total = Usage::default();
    for (level, start) in window_buckets(from, to) {
        if let Some(v) = get(&bucket_key(&prefix, level, start))? {
            let Some(u) = buckets::decode(&v) else {
                return Ok(Err(StateError::Corrupt(
                    "ledger bucket has the wrong size".into(),
                )));
            };
            total.sum = total.sum.saturating_add(u.sum);
            total.count = total.count.saturating_add(u.count);
        }
    }
    Ok(Ok(total))
}

/// Adds (or, with `subtract`, removes) `amount` and one request to every bucket of `keys` at `at`.
fn apply(
    tx: &LedgerTx<'_>,
    keys: &[LedgerKey],
    at: i64,
    amount: Amount,
    subtract: bool,
) -> TxResult<()> {
    for key in keys {
        let prefix = key_prefix(key);
        for (level, start) in buckets_containing(minute_of(at)) {
            let k = bucket_key(&prefix, level, start);
            let old = match tx.buckets.get(&k).map_err(unabortable)? {
                Some(v) => buckets::decode(&v).ok_or_else(|| {
                    abort(StateError::Corrupt(
                        "ledger bucket has the wrong size".into(),
                    ))
                })?,
                None => Usage::default(),
            };
            let new = if subtract {
                Usage {
                    sum: old.sum.saturating_sub(amount),
                    count: old.count.saturating_sub(1),
                }
            } else {
                Usage {
                    sum: old.sum.saturating_add(amount),
                    count: old.count.saturating_add(1),
                }
            };
            if new == Usage::default() {
                tx.buckets.remove(k).map_err(unabortable)?;
            } else {
                tx.buckets
                    .insert(k, &buckets::encode(new)[..])
                    .map_err(unabortable)?;
            }
        }
    }
    Ok(())
}

fn read_record(tx: &LedgerTx<'_>, request_id: &str) -> TxResult<Option<Record>> {
    match tx
        .reservations
        .get(request_id.as_bytes())
        .map_err(unabortable)?
    {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
            abort(StateError::Corrupt(format!(
                "reservation '{request_id}': {e}"
            )))
        }),
    }
}

fn write_record(tx: &LedgerTx<'_>, request_id: &str, r: &Record) -> TxResult<()> {
    let bytes = serde_json::to_vec(r).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    tx.reservations
        .insert(request_id.as_bytes(), bytes)
        .map_err(unabortable)?;
    Ok(())
}

/// Check-and-reserve inside a transaction (see [`StateStore::reserve`]).
pub fn reserve_in(
    tx: &LedgerTx<'_>,
    request_id: &str,
    plan: &ReservationPlan,
    hold_until: Option<i64>,
) -> TxResult<ReserveOutcome> {
    if let Some(r) = read_record(tx, request_id)? {
        return Ok(if r.released {
            ReserveOutcome::AlreadyReleased
        } else {
            ReserveOutcome::AlreadyReserved
        });
    }
    for check in &plan.checks {
        let period = i64::try_from(check.period_secs).unwrap_or(i64::MAX);
        let used = sum_window(
            |k| tx.buckets.get(k),
            &check.key,
            plan.at.saturating_sub(period),
            plan.at.saturating_add(period),
        )
        .map_err(unabortable)?
        .map_err(abort)?;
        if let Err((code, message)) = check.check(used, plan.amount) {
            return Ok(ReserveOutcome::LimitExceeded {
                rule: check.rule.clone(),
                code,
                message,
            });
        }
    }
    apply(tx, &plan.keys, plan.at, plan.amount, false)?;
    let record = Record {
        at: plan.at,
        amount: plan.amount,
        keys: plan.keys.clone(),
        hold_until,
        released: false,
    };
    write_record(tx, request_id, &record)?;
    if let Some(until) = hold_until {
        tx.holds
            .insert(hold_key(until, request_id), &[][..])
            .map_err(unabortable)?;
    }
    Ok(ReserveOutcome::Reserved)
}

/// Release inside a transaction (see [`StateStore::release`]).
pub fn release_in(tx: &LedgerTx<'_>, request_id: &str) -> TxResult<ReleaseOutcome> {
    let Some(mut r) = read_record(tx, request_id)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if r.released {
        return Ok(ReleaseOutcome::AlreadyReleased);
    }
    apply(tx, &r.keys, r.at, r.amount, true)?;
    if let Some(until) = r.hold_until.take() {
        tx.holds
            .remove(hold_key(until, request_id))
            .map_err(unabortable)?;
    }
    r.released = true;
    write_record(tx, request_id, &r)?;
    Ok(ReleaseOutcome::Released)
}

/// Re-checks and records `plan` under `request_id` afresh, inside a transaction: the request's
/// earlier reservation (a hold while it waited for approvals) is subtracted first, so the caps are
/// checked against everyone else's usage, exactly once. If a cap refuses, the earlier reservation
/// stays released and nothing new is recorded.
pub fn reserve_again_in(
    tx: &LedgerTx<'_>,
    request_id: &str,
    plan: &ReservationPlan,
    hold_until: Option<i64>,
) -> TxResult<ReserveOutcome> {
    let old = read_record(tx, request_id)?;
    if let Some(r) = &old {
        if !r.released {
            release_in(tx, request_id)?;
        }
        tx.reservations
            .remove(request_id.as_bytes())
            .map_err(unabortable)?;
    }
    let out = reserve_in(tx, request_id, plan, hold_until)?;
    if out != ReserveOutcome::Reserved {
        if let Some(mut r) = old {
            r.released = true;
            r.hold_until = None;
            write_record(tx, request_id, &r)?;
        }
    }
    Ok(out)
}

/// A recorded reservation, as [`SledState::reservation`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationInfo {
    /// Request time.
    pub at: i64,
    /// Amount recorded under each key.
    pub amount: Amount,
    /// The keys.
    pub keys: Vec<LedgerKey>,
    /// Whether it was released.
    pub released: bool,
}

/// Confirm inside a transaction (see [`StateStore::confirm`]).
pub fn confirm_in(tx: &LedgerTx<'_>, request_id: &str) -> TxResult<ReleaseOutcome> {
    let Some(mut r) = read_record(tx, request_id)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if r.released {
        return Ok(ReleaseOutcome::AlreadyReleased);
    }
    if let Some(until) = r.hold_until.take() {
        tx.holds
            .remove(hold_key(until, request_id))
            .map_err(unabortable)?;
        write_record(tx, request_id, &r)?;
    }
    Ok(ReleaseOutcome::Released)
}

impl SledState {
    /// The reservation recorded under `request_id`, if any.
    pub fn reservation(&self, request_id: &str) -> Result<Option<ReservationInfo>, StateError> {
        let Some(v) = self.ledger_reservations.get(request_id).map_err(storage)? else {
            return Ok(None);
        };
        let r: Record = serde_json::from_slice(&v)
            .map_err(|e| StateError::Corrupt(format!("reservation '{request_id}': {e}")))?;
        Ok(Some(ReservationInfo {
            at: r.at,
            amount: r.amount,
            keys: r.keys,
            released: r.released,
        }))
    }

    /// Number of reservations stored (released ones included).
    pub fn reservation_count(&self) -> usize {
        self.ledger_reservations.len()
    }
}

impl UsageView for SledState {
    fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String> {
        self.window_usage(key, from, to).map_err(|e| e.to_string())
    }
}

impl StateStore for SledState {
    fn reserve(
        &self,
        request_id: &str,
        plan: &ReservationPlan,
        hold_until: Option<i64>,
    ) -> Result<ReserveOutcome, StateError> {
        self.ledger_tx(|tx| reserve_in(tx, request_id, plan, hold_until))
    }

    fn confirm(&self, request_id: &str) -> Result<ReleaseOutcome, StateError> {
        self.ledger_tx(|tx| confirm_in(tx, request_id))
    }

    fn release(&self, request_id: &str) -> Result<ReleaseOutcome, StateError> {
        self.ledger_tx(|tx| release_in(tx, request_id))
    }

    fn release_expired(&self, now: i64) -> Result<Vec<String>, StateError> {
        let end = hold_key(now.saturating_add(1), "");
        let mut due = Vec::new();
        for item in self.ledger_holds.range(..end) {
            let (k, _) = item.map_err(storage)?;
            due.push(String::from_utf8_lossy(&k[8..]).into_owned());
        }
        let mut released = Vec::new();
        for id in due {
            let out = self.ledger_tx(|tx| {
                // Re-read inside the transaction: it may have been confirmed meanwhile.
                match read_record(tx, &id)? {
                    Some(r) if !r.released && r.hold_until.is_some_and(|t| t <= now) => {
                        release_in(tx, &id)
                    }
                    _ => Ok(ReleaseOutcome::NotFound),
                }
            })?;
            if out == ReleaseOutcome::Released {
                released.push(id);
            }
        }
        Ok(released)
    }

    /// One range scan per run of same-level buckets (at most nine) instead of one get per
    /// bucket; the same buckets as [`sum_window`] (the transactional path) are summed.
    fn window_usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, StateError> {
        let prefix = key_prefix(key);
        let mut total = Usage::default();
        for (level, first, last) in window_runs(from, to) {
            let range = bucket_key(&prefix, level, first)..=bucket_key(&prefix, level, last);
            for item in self.ledger_buckets.range(range) {
                let (_, v) = item.map_err(storage)?;
                let u = buckets::decode(&v).ok_or_else(|| {
                    StateError::Corrupt("ledger bucket has the wrong size".into())
                })?;
                total.sum = total.sum.saturating_add(u.sum);
                total.count = total.count.saturating_add(u.count);
            }
        }
        Ok(total)
    }
}
