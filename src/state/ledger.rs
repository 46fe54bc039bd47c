//! The limit ledger's steps, engine-neutral: check-and-reserve, release, confirm, re-reserve,
//! window sums, the expiry of holds and a bulk loader for benchmarks.
//!
//! Trees (every value authenticated, see [`super::auth`]):
//! - `ledger_buckets`: bucket key -> 40-byte usage (see [`super::buckets`]);
//! - `ledger_reservations`: request key -> the reservation record (JSON);
//! - `ledger_holds`: expiry (8 bytes, big-endian, order-preserving) ‖ request key -> empty.
//!
//! The `*_in` functions run inside a larger [`StateTx`] so the signing core commits "reserve
//! limits + store request + append audit" atomically; [`State`] implements [`StateStore`] with
//! each operation in its own transaction, flushed before it returns.

use serde::{Deserialize, Serialize};

use super::buckets::{
    self, bucket_key, buckets_containing, key_prefix, minute_of, window_buckets, window_runs,
};
use super::engine::{abort, Scan, TxResult};
use super::tree::Tree;
use super::tx::{State, StateTx};
use super::{ReleaseOutcome, ReserveOutcome, StateError, StateStore};
use crate::amount::{serde_decimal, Amount};
use crate::policy::limits::{LedgerKey, ReservationPlan, Usage, UsageView};

/// One reservation as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    at: i64,
    #[serde(with = "serde_decimal")]
    amount: Amount,
    keys: Vec<LedgerKey>,
    /// `None`: permanent; `Some(t)`: a hold until `t`.
    hold_until: Option<i64>,
    released: bool,
}

/// A recorded reservation, as [`State::reservation`] reads it.
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

fn hold_key(until: i64, request_key: &str) -> Vec<u8> {
    let mut k = ((until as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(request_key.as_bytes());
    k
}

fn corrupt_bucket() -> StateError {
    StateError::Corrupt("ledger bucket has the wrong size".into())
}

fn read_bucket(tx: &StateTx<'_>, key: &[u8]) -> TxResult<Usage> {
    match tx.get_map(Tree::LedgerBuckets, key, buckets::decode)? {
        Some(Some(usage)) => Ok(usage),
        Some(None) => Err(abort(corrupt_bucket())),
        None => Ok(Usage::default()),
    }
}

/// Sums the buckets of a window inside a transaction.
fn sum_window_in(tx: &StateTx<'_>, key: &LedgerKey, from: i64, to: i64) -> TxResult<Usage> {
    let prefix = key_prefix(key);
    let mut total = Usage::default();
    for (level, start) in window_buckets(from, to) {
        let u = read_bucket(tx, &bucket_key(&prefix, level, start))?;
        total.sum = total.sum.saturating_add(u.sum);
        total.count = total.count.saturating_add(u.count);
    }
    Ok(total)
}

/// Adds (or, with `subtract`, removes) `amount` and one request to every bucket of `keys` at `at`.
fn apply(
    tx: &StateTx<'_>,
    keys: &[LedgerKey],
    at: i64,
    amount: Amount,
    subtract: bool,
) -> TxResult<()> {
    for key in keys {
        let prefix = key_prefix(key);
        for (level, start) in buckets_containing(minute_of(at)) {
            let k = bucket_key(&prefix, level, start);
            let old = read_bucket(tx, &k)?;
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
                tx.remove(Tree::LedgerBuckets, &k)?;
            } else {
                tx.put(Tree::LedgerBuckets, &k, &buckets::encode(new))?;
            }
        }
    }
    Ok(())
}

fn read_record(tx: &StateTx<'_>, request_key: &str) -> TxResult<Option<Record>> {
    match tx.get(Tree::LedgerReservations, request_key.as_bytes())? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| {
            abort(StateError::Corrupt(format!(
                "reservation '{request_key}': {e}"
            )))
        }),
    }
}

fn write_record(tx: &StateTx<'_>, request_key: &str, r: &Record) -> TxResult<()> {
    let bytes = serde_json::to_vec(r).map_err(|e| abort(StateError::Corrupt(e.to_string())))?;
    tx.put(Tree::LedgerReservations, request_key.as_bytes(), &bytes)
}

/// The records [`reserve_in`] reads for `plan`: the reservation, the buckets of every window it
/// checks and of every key it adds to, and the hold. An engine with a network round trip per read
/// fetches them in one ([`StateTx::prefetch`]).
pub fn reserve_keys(
    request_key: &str,
    plan: &ReservationPlan,
    hold_until: Option<i64>,
) -> Vec<(Tree, Vec<u8>)> {
    let mut keys = vec![(Tree::LedgerReservations, request_key.as_bytes().to_vec())];
    for check in &plan.checks {
        let period = i64::try_from(check.period_secs).unwrap_or(i64::MAX);
        let prefix = key_prefix(&check.key);
        for (level, start) in window_buckets(
            plan.at.saturating_sub(period),
            plan.at.saturating_add(period),
        ) {
            keys.push((Tree::LedgerBuckets, bucket_key(&prefix, level, start)));
        }
    }
    for key in &plan.keys {
        let prefix = key_prefix(key);
        for (level, start) in buckets_containing(minute_of(plan.at)) {
            keys.push((Tree::LedgerBuckets, bucket_key(&prefix, level, start)));
        }
    }
    if let Some(until) = hold_until {
        keys.push((Tree::LedgerHolds, hold_key(until, request_key)));
    }
    keys
}

/// The records [`confirm_in`] (and [`release_in`] of a hold until `hold_until`) reads.
pub fn confirm_keys(request_key: &str, hold_until: Option<i64>) -> Vec<(Tree, Vec<u8>)> {
    let mut keys = vec![(Tree::LedgerReservations, request_key.as_bytes().to_vec())];
    if let Some(until) = hold_until {
        keys.push((Tree::LedgerHolds, hold_key(until, request_key)));
    }
    keys
}

/// Check-and-reserve inside a transaction (see [`StateStore::reserve`]).
pub fn reserve_in(
    tx: &StateTx<'_>,
    request_key: &str,
    plan: &ReservationPlan,
    hold_until: Option<i64>,
) -> TxResult<ReserveOutcome> {
    tx.prefetch(&reserve_keys(request_key, plan, hold_until))?;
    if let Some(r) = read_record(tx, request_key)? {
        return Ok(if r.released {
            ReserveOutcome::AlreadyReleased
        } else {
            ReserveOutcome::AlreadyReserved
        });
    }
    for check in &plan.checks {
        let period = i64::try_from(check.period_secs).unwrap_or(i64::MAX);
        let used = sum_window_in(
            tx,
            &check.key,
            plan.at.saturating_sub(period),
            plan.at.saturating_add(period),
        )?;
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
    write_record(tx, request_key, &record)?;
    if let Some(until) = hold_until {
        tx.put(Tree::LedgerHolds, &hold_key(until, request_key), &[])?;
    }
    Ok(ReserveOutcome::Reserved)
}

/// Release inside a transaction (see [`StateStore::release`]).
pub fn release_in(tx: &StateTx<'_>, request_key: &str) -> TxResult<ReleaseOutcome> {
    let Some(mut r) = read_record(tx, request_key)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if r.released {
        return Ok(ReleaseOutcome::AlreadyReleased);
    }
    apply(tx, &r.keys, r.at, r.amount, true)?;
    if let Some(until) = r.hold_until.take() {
        tx.remove(Tree::LedgerHolds, &hold_key(until, request_key))?;
    }
    r.released = true;
    write_record(tx, request_key, &r)?;
    Ok(ReleaseOutcome::Released)
}

/// Re-checks and records `plan` under `request_key` afresh, inside a transaction: the request's
/// earlier reservation (a hold while it waited for approvals) is subtracted first, so the caps are
/// checked against everyone else's usage, exactly once. If a cap refuses, the earlier reservation
/// stays released and nothing new is recorded.
pub fn reserve_again_in(
    tx: &StateTx<'_>,
    request_key: &str,
    plan: &ReservationPlan,
    hold_until: Option<i64>,
) -> TxResult<ReserveOutcome> {
    let old = read_record(tx, request_key)?;
    if let Some(r) = &old {
        if !r.released {
            release_in(tx, request_key)?;
        }
        tx.remove(Tree::LedgerReservations, request_key.as_bytes())?;
    }
    let out = reserve_in(tx, request_key, plan, hold_until)?;
    if out != ReserveOutcome::Reserved {
        if let Some(mut r) = old {
            r.released = true;
            r.hold_until = None;
            write_record(tx, request_key, &r)?;
        }
    }
    Ok(out)
}

/// Confirm inside a transaction (see [`StateStore::confirm`]).
pub fn confirm_in(tx: &StateTx<'_>, request_key: &str) -> TxResult<ReleaseOutcome> {
    let Some(mut r) = read_record(tx, request_key)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if r.released {
        return Ok(ReleaseOutcome::AlreadyReleased);
    }
    if let Some(until) = r.hold_until.take() {
        tx.remove(Tree::LedgerHolds, &hold_key(until, request_key))?;
        write_record(tx, request_key, &r)?;
    }
    Ok(ReleaseOutcome::Released)
}

/// Drops a finished request's reservation record (pruning): permanent reservations keep counting
/// in their buckets, released ones counted nothing; either way the record is no longer needed once
/// the request can no longer be released.
pub fn forget_in(tx: &StateTx<'_>, request_key: &str) -> TxResult<()> {
    if let Some(r) = read_record(tx, request_key)? {
        if r.hold_until.is_none() {
            tx.remove(Tree::LedgerReservations, request_key.as_bytes())?;
        }
    }
    Ok(())
}

impl State {
    /// The reservation recorded under `request_key`, if any.
    pub fn reservation(&self, request_key: &str) -> Result<Option<ReservationInfo>, StateError> {
        let Some(v) = self.get(Tree::LedgerReservations, request_key.as_bytes())? else {
            return Ok(None);
        };
        let r: Record = serde_json::from_slice(&v)
            .map_err(|e| StateError::Corrupt(format!("reservation '{request_key}': {e}")))?;
        Ok(Some(ReservationInfo {
            at: r.at,
            amount: r.amount,
            keys: r.keys,
            released: r.released,
        }))
    }

    /// Number of reservations stored (released ones included).
    pub fn reservation_count(&self) -> Result<u64, StateError> {
        self.count(Tree::LedgerReservations)
    }

    fn ledger_step<T>(
        &self,
        step: impl FnMut(&StateTx<'_>) -> TxResult<T>,
    ) -> Result<T, StateError> {
        let out = self.transact(step)?;
        self.flush()?;
        Ok(out)
    }

    /// Records reservations without checks or flush: bulk loading for benchmarks and tests of
    /// large ledgers. Not for the service (it bypasses the caps).
    ///
    /// Usage is first aggregated in memory per (key, minute) and rolled up into the coarser
    /// levels, so each bucket is written once (added to what it already holds); records are
    /// written in transactions of a few thousand.
    pub fn load_unchecked<I, E>(&self, entries: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = E>,
        E: std::borrow::Borrow<(String, ReservationPlan)>,
    {
        use std::collections::BTreeMap;
        const CHUNK: usize = 4096;
        let mut buckets_to_add: BTreeMap<Vec<u8>, Usage> = BTreeMap::new();
        let mut records: Vec<(String, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let flush_records = |records: &mut Vec<(String, Vec<u8>)>| -> Result<(), StateError> {
            let chunk = std::mem::take(records);
            let reads: Vec<(Tree, Vec<u8>)> = chunk
                .iter()
                .map(|(id, _)| (Tree::LedgerReservations, id.as_bytes().to_vec()))
                .collect();
            self.transact(|tx| {
                tx.prefetch(&reads)?;
                for (id, bytes) in &chunk {
                    tx.put(Tree::LedgerReservations, id.as_bytes(), bytes)?;
                }
                Ok(())
            })
        };
        for entry in entries {
            let (id, plan) = entry.borrow();
            for key in &plan.keys {
                let prefix = key_prefix(key);
                for (level, start) in buckets_containing(minute_of(plan.at)) {
                    let u = buckets_to_add
                        .entry(bucket_key(&prefix, level, start))
                        .or_default();
                    u.sum = u.sum.saturating_add(plan.amount);
                    u.count += 1;
                }
            }
            let record = Record {
                at: plan.at,
                amount: plan.amount,
                keys: plan.keys.clone(),
                hold_until: None,
                released: false,
            };
            records.push((
                id.clone(),
                serde_json::to_vec(&record).map_err(|e| StateError::Corrupt(e.to_string()))?,
            ));
            if records.len() == CHUNK {
                flush_records(&mut records)?;
            }
        }
        flush_records(&mut records)?;
        let all: Vec<(Vec<u8>, Usage)> = buckets_to_add.into_iter().collect();
        for chunk in all.chunks(CHUNK) {
            let reads: Vec<(Tree, Vec<u8>)> = chunk
                .iter()
                .map(|(k, _)| (Tree::LedgerBuckets, k.clone()))
                .collect();
            self.transact(|tx| {
                tx.prefetch(&reads)?;
                for (k, add) in chunk {
                    let old = read_bucket(tx, k)?;
                    let new = Usage {
                        sum: old.sum.saturating_add(add.sum),
                        count: old.count.saturating_add(add.count),
                    };
                    tx.put(Tree::LedgerBuckets, k, &buckets::encode(new))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl UsageView for State {
    fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String> {
        self.window_usage(key, from, to).map_err(|e| e.to_string())
    }
}

impl StateStore for State {
    fn reserve(
        &self,
        request_key: &str,
        plan: &ReservationPlan,
        hold_until: Option<i64>,
    ) -> Result<ReserveOutcome, StateError> {
        self.ledger_step(|tx| reserve_in(tx, request_key, plan, hold_until))
    }

    fn confirm(&self, request_key: &str) -> Result<ReleaseOutcome, StateError> {
        self.ledger_step(|tx| confirm_in(tx, request_key))
    }

    fn release(&self, request_key: &str) -> Result<ReleaseOutcome, StateError> {
        self.ledger_step(|tx| release_in(tx, request_key))
    }

    fn release_expired(&self, now: i64) -> Result<Vec<String>, StateError> {
        let end = hold_key(now.saturating_add(1), "");
        let due: Vec<String> = self
            .scan(&Scan {
                tree: Tree::LedgerHolds,
                from: std::ops::Bound::Unbounded,
                to: std::ops::Bound::Excluded(end),
                reverse: false,
                limit: usize::MAX,
            })?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[8..]).into_owned())
            .collect();
        let mut released = Vec::new();
        for id in due {
            let out = self.ledger_step(|tx| {
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

    /// One range read per run of same-level buckets (at most nine, all sent at once) instead of
    /// one read per bucket; the same buckets as the transactional sum are counted.
    fn window_usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, StateError> {
        let prefix = key_prefix(key);
        let mut total = Usage::default();
        if self.caches_verified_records() {
            // Bucket by bucket from the verified cache (absent buckets included).
            let window = window_buckets(from, to);
            let visited = self.visit_cached(
                Tree::LedgerBuckets,
                window.len(),
                |i, key| {
                    let (level, start) = window[i];
                    buckets::write_bucket_key(key, &prefix, level, start);
                },
                |body| {
                    if let Some(body) = body {
                        let u = buckets::decode(body).ok_or_else(corrupt_bucket)?;
                        total.sum = total.sum.saturating_add(u.sum);
                        total.count = total.count.saturating_add(u.count);
                    }
                    Ok(())
                },
            )?;
            if visited {
                return Ok(total);
            }
        }
        let scans: Vec<Scan> = window_runs(from, to)
            .into_iter()
            .map(|(level, first, last)| Scan {
                tree: Tree::LedgerBuckets,
                from: std::ops::Bound::Included(bucket_key(&prefix, level, first)),
                to: std::ops::Bound::Included(bucket_key(&prefix, level, last)),
                reverse: false,
                limit: usize::MAX,
            })
            .collect();
        // The runs in one go (one round trip on a networked engine).
        for run in self.scan_many(&scans)? {
            for (_, v) in run {
                let u = buckets::decode(&v).ok_or_else(corrupt_bucket)?;
                total.sum = total.sum.saturating_add(u.sum);
                total.count = total.count.saturating_add(u.count);
            }
        }
        Ok(total)
    }
}
