//! The sled implementation of [`StateStore`]: one database, named trees, multi-tree transactions.
//!
//! Trees (the service adds its own beside them, e.g. `requests`, `approvals`, `outbox`, `audit`):
//! - `ledger_buckets`: bucket key -> 40-byte usage (see [`super::buckets`]);
//! - `ledger_reservations`: request id -> the reservation record (JSON);
//! - `ledger_holds`: expiry (8 bytes, big-endian, order-preserving) ‖ request id -> empty.
//!
//! The ledger operations exist twice: as [`StateStore`] methods (their own transaction, flushed
//! before they return), and as functions over a [`LedgerTx`] for use inside a larger
//! `sled::Transactional` transaction, so the service commits "reserve limits + store request +
//! append audit" atomically:
//!
//! ```ignore
//! let s = &state;
//! (&s.ledger_buckets, &s.ledger_reservations, &s.ledger_holds, &requests, &audit)
//!     .transaction(|(b, r, h, req, aud)| {
//!         let outcome = reserve_in(&LedgerTx { buckets: b, reservations: r, holds: h }, id, &plan, None)?;
//!         // … req.insert(..), aud.insert(..) in the same transaction …
//!         Ok(outcome)
//!     })?;
//! s.flush()?; // durable before the signature leaves
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::buckets::{
    self, bucket_key, buckets_containing, key_prefix, minute_of, window_buckets, window_runs,
};
use super::{ReleaseOutcome, ReserveOutcome, StateError, StateStore};
use crate::amount::{serde_decimal, Amount};
use crate::policy::limits::{LedgerKey, ReservationPlan, Usage, UsageView};

/// The sled database and its trees.
#[derive(Clone)]
pub struct SledState {
    /// The database (the service opens its own trees in it).
    pub db: sled::Db,
    /// Bucketed usage.
    pub ledger_buckets: sled::Tree,
    /// Reservations by request id.
    pub ledger_reservations: sled::Tree,
    /// Holds by expiry.
    pub ledger_holds: sled::Tree,
    /// Requests by id ([`super::requests`]).
    pub requests: sled::Tree,
    /// Pending requests by expiry ([`super::requests`]).
    pub pending: sled::Tree,
    /// The audit chain by sequence ([`super::audit`]).
    pub audit: sled::Tree,
    /// Signed transactions by sequence ([`super::outbox`]).
    pub outbox: sled::Tree,
    /// Broadcaster cursors by principal ([`super::outbox`]).
    pub cursors: sled::Tree,
    /// Ethereum nonces claimed by requests ([`super::nonces`]).
    pub nonces: sled::Tree,
    /// Heads of the audit chain and the outbox.
    pub meta: sled::Tree,
}

/// Every tree a signing step writes, inside one transaction (see [`SledState::transact`]).
pub struct StateTx<'a> {
    /// The ledger trees.
    pub ledger: LedgerTx<'a>,
    /// `requests`.
    pub requests: &'a TransactionalTree,
    /// `pending`.
    pub pending: &'a TransactionalTree,
    /// `audit`.
    pub audit: &'a TransactionalTree,
    /// `outbox`.
    pub outbox: &'a TransactionalTree,
    /// `nonces`.
    pub nonces: &'a TransactionalTree,
    /// `meta`.
    pub meta: &'a TransactionalTree,
}

/// The ledger trees inside a transaction.
pub struct LedgerTx<'a> {
    /// `ledger_buckets`.
    pub buckets: &'a TransactionalTree,
    /// `ledger_reservations`.
    pub reservations: &'a TransactionalTree,
    /// `ledger_holds`.
    pub holds: &'a TransactionalTree,
}

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

/// The result of a step inside a transaction.
pub type TxResult<T> = Result<T, ConflictableTransactionError<StateError>>;

pub(crate) fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

/// Turns a read/write failure inside a transaction into the transaction's error.
pub fn unabortable(e: UnabortableTransactionError) -> ConflictableTransactionError<StateError> {
    e.into()
}

/// Aborts a transaction with `e` (nothing it wrote is kept).
pub fn abort(e: StateError) -> ConflictableTransactionError<StateError> {
    ConflictableTransactionError::Abort(e)
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
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        // No background flusher: durability comes from the explicit flushes of the contract above
        // (group commit). A reopen in the same process (a restart) waits for the previous
        // instance's lock (`crate::embedded_db`).
        Self::from_db(
            crate::embedded_db::open(path, sled::Config::new().path(path).flush_every_ms(None))
                .map_err(storage)?,
        )
    }

    /// A throw-away database (tests, `custos policy test`).
    pub fn temporary() -> Result<Self, StateError> {
        Self::from_db(
            sled::Config::new()
                .temporary(true)
                .open()
                .map_err(storage)?,
        )
    }

    /// Uses an open database.
    pub fn from_db(db: sled::Db) -> Result<Self, StateError> {
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        Ok(SledState {
            ledger_buckets: tree("ledger_buckets")?,
            ledger_reservations: tree("ledger_reservations")?,
            ledger_holds: tree("ledger_holds")?,
            requests: tree("requests")?,
            pending: tree("pending")?,
            audit: tree("audit")?,
            outbox: tree("outbox")?,
            cursors: tree("cursors")?,
            nonces: tree("nonces")?,
            meta: tree("meta")?,
            db,
        })
    }

    /// Runs `f` as one atomic transaction over every tree of a signing step (ledger, requests,
    /// pending, audit, outbox, nonces, meta); sled retries it on conflict, so `f` must be free of
    /// side effects outside the transaction. Not flushed: the caller makes it durable
    /// ([`SledState::flush`], or the signing core's group commit) before anything leaves.
    pub fn transact<T>(&self, f: impl Fn(&StateTx<'_>) -> TxResult<T>) -> Result<T, StateError> {
        let trees: [&sled::Tree; 9] = [
            &self.ledger_buckets,
            &self.ledger_reservations,
            &self.ledger_holds,
            &self.requests,
            &self.pending,
            &self.audit,
            &self.outbox,
            &self.nonces,
            &self.meta,
        ];
        trees[..]
            .transaction(|t: &Vec<TransactionalTree>| {
                f(&StateTx {
                    ledger: LedgerTx {
                        buckets: &t[0],
                        reservations: &t[1],
                        holds: &t[2],
                    },
                    requests: &t[3],
                    pending: &t[4],
                    audit: &t[5],
                    outbox: &t[6],
                    nonces: &t[7],
                    meta: &t[8],
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => storage(e),
            })
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn ledger_tx<T>(&self, f: impl Fn(&LedgerTx<'_>) -> TxResult<T>) -> Result<T, StateError> {
        let out = (
            &self.ledger_buckets,
            &self.ledger_reservations,
            &self.ledger_holds,
        )
            .transaction(|(b, r, h)| {
                f(&LedgerTx {
                    buckets: b,
                    reservations: r,
                    holds: h,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => storage(e),
            })?;
        self.flush()?;
        Ok(out)
    }

    /// Records reservations without checks or flush: bulk loading for benchmarks and tests of
    /// large ledgers. Not for the service (it bypasses the caps).
    ///
    /// Takes any number of entries (a slice, or an iterator producing them lazily) and writes each
    /// bucket once: usage is first aggregated in memory per (key, minute), rolled up into the
    /// coarser levels, added to what the tree already holds, and written in key order in batches.
    pub fn load_unchecked<I, E>(&self, entries: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = E>,
        E: std::borrow::Borrow<(String, ReservationPlan)>,
    {
        use std::collections::HashMap;
        const BATCH: usize = 50_000;
        // Ledger keys interned; per (key, minute) usage.
        let mut key_ids: HashMap<LedgerKey, u32> = HashMap::new();
        let mut minutes: HashMap<(u32, i64), Usage> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in entries {
            let (id, plan) = entry.borrow();
            let minute = minute_of(plan.at);
            for key in &plan.keys {
                let n = key_ids.len() as u32;
                let k = match key_ids.get(key) {
                    Some(k) => *k,
                    None => *key_ids.entry(key.clone()).or_insert(n),
                };
                let e = minutes.entry((k, minute)).or_default();
                e.sum = e.sum.saturating_add(plan.amount);
                e.count += 1;
            }
            let record = Record {
                at: plan.at,
                amount: plan.amount,
                keys: plan.keys.clone(),
                hold_until: None,
                released: false,
            };
            batch.insert(id.as_bytes(), serde_json::to_vec(&record).map_err(storage)?);
            pending += 1;
            if pending == BATCH {
                self.ledger_reservations
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(storage)?;
                pending = 0;
            }
        }
        self.ledger_reservations
            .apply_batch(batch)
            .map_err(storage)?;

        // Keys in the byte order of their prefixes, minutes in order: the bucket keys of one
        // ledger key then come out level by level, each level in time order (the tree's order).
        let mut keys: Vec<(Vec<u8>, u32)> =
            key_ids.iter().map(|(k, id)| (key_prefix(k), *id)).collect();
        keys.sort_unstable();
        let mut rank = vec![0u32; keys.len()];
        for (r, (_, id)) in keys.iter().enumerate() {
            rank[*id as usize] = r as u32;
        }
        let mut minutes: Vec<((u32, i64), Usage)> = minutes
            .into_iter()
            .map(|((k, m), u)| ((rank[k as usize], m), u))
            .collect();
        minutes.sort_unstable_by_key(|(k, _)| *k);
        drop(key_ids);

        // Two writers on disjoint key ranges (sled takes concurrent writers; a batch is slower
        // than plain inserts at this size).
        let merge_existing = !self.ledger_buckets.is_empty();
        let split = minutes.len() / 2;
        let split = split
            + minutes[split..].partition_point(|((k, _), _)| {
                minutes.get(split).is_some_and(|((r, _), _)| k == r)
            });
        let (a, b) = minutes.split_at(split);
        let keys = &keys;
        std::thread::scope(|s| {
            let other = s.spawn(|| self.write_buckets(keys, b, merge_existing));
            let mine = self.write_buckets(keys, a, merge_existing);
            other
                .join()
                .map_err(|_| StateError::Storage("bulk loader thread panicked".into()))?
                .and(mine)
        })
    }

    /// Rolls per-minute usage (sorted by key rank, then minute) up into every level and adds it
    /// to the tree.
    fn write_buckets(
        &self,
        keys: &[(Vec<u8>, u32)],
        minutes: &[((u32, i64), Usage)],
        merge_existing: bool,
    ) -> Result<(), StateError> {
        let write = |k: Vec<u8>, add: Usage| -> Result<(), StateError> {
            let old = if merge_existing {
                match self.ledger_buckets.get(&k).map_err(storage)? {
                    Some(v) => buckets::decode(&v).unwrap_or_default(),
                    None => Usage::default(),
                }
            } else {
                Usage::default()
            };
            let new = Usage {
                sum: old.sum.saturating_add(add.sum),
                count: old.count.saturating_add(add.count),
            };
            self.ledger_buckets
                .insert(k, &buckets::encode(new)[..])
                .map_err(storage)?;
            Ok(())
        };
        let mut i = 0;
        while i < minutes.len() {
            let r = minutes[i].0 .0;
            let j = i + minutes[i..].partition_point(|((k, _), _)| *k == r);
            let prefix = &keys[r as usize].0;
            for (level, size) in buckets::LEVELS.iter().enumerate() {
                // Roll the minutes of this key up into aligned buckets of this level (in order).
                let mut cur: Option<(i64, Usage)> = None;
                for ((_, m), u) in &minutes[i..j] {
                    let start = m.div_euclid(*size) * size;
                    match &mut cur {
                        Some((s, acc)) if *s == start => {
                            acc.sum = acc.sum.saturating_add(u.sum);
                            acc.count = acc.count.saturating_add(u.count);
                        }
                        _ => {
                            if let Some((s, acc)) = cur.take() {
                                write(bucket_key(prefix, level, s), acc)?;
                            }
                            cur = Some((start, *u));
                        }
                    }
                }
                if let Some((s, acc)) = cur {
                    write(bucket_key(prefix, level, s), acc)?;
                }
            }
            i = j;
        }
        Ok(())
    }

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
