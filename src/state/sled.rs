//! The sled implementation of [`StateStore`](super::StateStore): one database, named trees, multi-tree transactions.
//!
//! This file sets the database up: it opens it ([`SledState::open`], [`SledState::temporary`]),
//! opens the tree set ([`SledState`]), and runs one transaction over every tree a signing step
//! writes ([`SledState::transact`], handing the step a [`StateTx`]). Trees:
//! - `ledger_buckets`: bucket key -> 40-byte usage (see [`super::buckets`]);
//! - `ledger_reservations`: request id -> the reservation record (JSON);
//! - `ledger_holds`: expiry (8 bytes, big-endian, order-preserving) ‖ request id -> empty;
//! - `requests`, `pending` ([`super::requests`]), `audit` ([`super::audit`]), `outbox` and
//!   `cursors` ([`super::outbox`]), `nonces` ([`super::nonces`]), `meta` (chain heads).
//!
//! Durability contract: the [`StateStore`](super::StateStore) methods run their own transaction and flush before
//! they return; a step composed with [`SledState::transact`] is not flushed, and the caller
//! ([`SledState::flush`], or the signing core's group commit) makes it durable before anything
//! leaves.
//!
//! Beside it: `ledger` holds the ledger steps inside a transaction (reserve, release, confirm,
//! window sums: [`reserve_in`], [`release_in`], [`reserve_again_in`], [`confirm_in`], re-exported
//! here) and the `StateStore` methods built on them; `bulk_load` writes large ledgers for
//! benchmarks ([`SledState::load_unchecked`]).

mod bulk_load;
mod ledger;

pub use ledger::{confirm_in, release_in, reserve_again_in, reserve_in, ReservationInfo};

use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::StateError;

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
}
