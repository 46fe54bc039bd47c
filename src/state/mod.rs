//! Shared state: what several Custos replicas must agree on.
//!
//! Everything replicas share lives in one database: the **limit ledger** ([`ledger`], behind the
//! [`StateStore`] trait; [`buckets`] is its bucket layout), and beside it the **requests**
//! (idempotency records, decisions, votes and results, [`requests`]), the **audit chain**
//! ([`audit`]), the **outbox** and broadcaster cursors ([`outbox`]) and the **Ethereum nonce
//! guard** ([`nonces`]).
//!
//! - [`engine`]: the seam to a storage engine (ordered byte trees, atomic multi-tree
//!   transactions, flush); [`sled::SledEngine`] is the embedded one. Each signing step is ONE
//!   transaction over every tree ([`State::transact`] and the `*_in` functions), so reserving the
//!   limits, storing the request and appending the audit record (and pushing the outbox entry)
//!   commit atomically or not at all, on any engine.
//! - [`auth`] and [`tx`]: every record is authenticated under a key derived from the sealed store,
//!   bound to its tree and key, and a digest over all records catches deletion, injection and
//!   per-record rollback; [`State`] refuses to read or write while sealed.
//! - [`anchor`]: the audit head kept outside the database (the sealed key store, every outbox
//!   entry), so a rolled-back or truncated database is noticed; [`verify`]: the full check
//!   (`custos state verify`, and at unseal); [`identity`]: which key store a state belongs to;
//!   [`prune`]: dropping old finished requests while the audit chain stays verifiable.
//!
//! Durability: transactions are not flushed by the step functions; the signing core flushes
//! (group commit, `crate::signing::flush`) before any answer or signature leaves.
//!
//! ## The limit ledger
//!
//! - **Reserve** ([`StateStore::reserve`]): in one transaction, re-check every cap of the
//!   [`ReservationPlan`] against the ledger and, if all hold, record the request's amount and count
//!   under each of the plan's keys. Two concurrent requests therefore cannot both pass a cap that
//!   has room for one.
//! - **Idempotent**: a reservation is stored under its request id; reserving the same id again
//!   records nothing and answers [`ReserveOutcome::AlreadyReserved`].
//! - **Release** ([`StateStore::release`]) on rejection or expiry subtracts exactly what was
//!   recorded; releasing twice is harmless. A reservation may be a **hold** with an expiry (a request
//!   waiting for approvals); [`StateStore::release_expired`] releases holds past their time and
//!   [`StateStore::confirm`] turns a hold into a permanent reservation once the request is signed.
//! - **Durable**: the standalone methods flush the database before they return, so a reservation
//!   that was answered survives a crash and a restart. Callers composing their own transaction
//!   ([`ledger::reserve_in`] and the other `*_in` steps) must call [`State::flush`] before the
//!   signature leaves.
//!
//! ## Rolling windows and their granularity
//!
//! Usage is kept as aggregates in time buckets of 1 minute, 10 minutes, 1 hour, 6 hours and 1 day
//! per key (a reservation adds to the one bucket of each size that contains its time). A window
//! `(at − period, at]` is read as the fewest aligned buckets that cover the minutes it touches, so
//! a 24 h window reads at most about 40 buckets and a 7 d window about 50, whatever the size of
//! the ledger. The first minute is counted whole: usage up to 59 seconds older than the window
//! start may still count. The ledger can **over-count by less than one minute, never under-count**.
//! Time comes from the caller (`plan.at`): give every replica the same clock. Entries stamped
//! after a request's time (clock skew, a late retry) are counted as well, so a request can never
//! be slipped in "in the past" under a window that later entries already fill.

pub mod anchor;
pub mod audit;
pub mod auth;
pub mod buckets;
pub mod engine;
pub mod identity;
pub mod ledger;
pub mod nonces;
pub mod outbox;
pub mod postgres;
pub mod prune;
pub mod requests;
pub mod sled;
pub mod tree;
pub mod tx;
pub mod verify;

pub use tree::Tree;
pub use tx::{State, StateTx};

use crate::policy::limits::{LedgerKey, ReservationPlan, Usage, UsageView};

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database failed (I/O, corruption reported by the engine).
    #[error("state store failed: {0}")]
    Storage(String),
    /// A record could not be decoded.
    #[error("state store record is corrupt: {0}")]
    Corrupt(String),
    /// A record does not authenticate: edited, moved, rolled back or from another installation.
    /// It is never acted on.
    #[error("state record {tree}/{key} fails authentication: {reason}")]
    Tampered {
        /// The tree.
        tree: &'static str,
        /// The record's key (printable form).
        key: String,
        /// What failed.
        reason: String,
    },
    /// The records cannot be read or written while the key store is sealed.
    #[error("the state is sealed: unseal the key store first")]
    Sealed,
    /// The state database as a whole is not the one this key store last saw: rolled back,
    /// truncated, or another installation's.
    #[error("{0}")]
    Rollback(String),
}

/// What reserving did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Recorded.
    Reserved,
    /// This request id was reserved before; nothing recorded again.
    AlreadyReserved,
    /// This request id was reserved and then released; nothing recorded (use a new request id).
    AlreadyReleased,
    /// A cap would be exceeded (another request took the room since the evaluation); nothing
    /// recorded.
    LimitExceeded {
        /// The rule whose window refused.
        rule: String,
        /// `limit.window_sum` or `limit.window_count`.
        code: &'static str,
        /// The numbers.
        message: String,
    },
}

/// What releasing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Subtracted.
    Released,
    /// Already released before.
    AlreadyReleased,
    /// No reservation under this request id.
    NotFound,
}

/// Everything Custos replicas share. Today: the limit ledger (see the module docs).
pub trait StateStore: UsageView + Send + Sync {
    /// Re-checks the plan's caps and records it under `request_key`, atomically. `hold_until`
    /// makes it a hold that [`StateStore::release_expired`] releases after that time.
    fn reserve(
        &self,
        request_key: &str,
        plan: &ReservationPlan,
        hold_until: Option<i64>,
    ) -> Result<ReserveOutcome, StateError>;

    /// Makes a hold permanent (the request was signed). `NotFound` if there is no reservation;
    /// `AlreadyReleased` if it was released (expired) before.
    fn confirm(&self, request_key: &str) -> Result<ReleaseOutcome, StateError>;

    /// Subtracts a reservation (the request was rejected or expired).
    fn release(&self, request_key: &str) -> Result<ReleaseOutcome, StateError>;

    /// Releases every hold whose time is at or before `now`; returns their request ids.
    fn release_expired(&self, now: i64) -> Result<Vec<String>, StateError>;

    /// Usage under `key` in `(from, to]` (see the granularity note in the module docs).
    fn window_usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, StateError>;
}
