//! The PostgreSQL engine: several Custos replicas share one database and enforce one set of
//! limits exactly.
//!
//! What this module owns is storage mechanics only — connections, the schema, running a step as
//! one transaction, reads. The records it stores are the authenticated values the layer above
//! produces (`crate::state::auth`): the database holds nothing in clear that the sealed store
//! protects, and a row edited, moved, deleted or rolled back by whoever administers the database is
//! caught exactly as on sled.
//!
//! - **Driver** ([`pool`]): tokio-postgres with a deadpool-postgres pool, on a small runtime the
//!   engine owns. The [`Engine`] seam is synchronous and is called from inside the caller's tokio
//!   runtime (a current-thread one in tests), where blocking on the caller's runtime would panic;
//!   each exchange is spawned onto the engine's runtime and the caller waits on a channel.
//! - **Schema** ([`schema`]): one table of records keyed by (tree, key), a one-row lock table,
//!   versioned migrations embedded in the binary, applied by `custos state migrate`, checked at
//!   open (a version this binary does not know is refused with what to do).
//! - **Transactions** ([`tx`]): READ COMMITTED, ordered by a row lock every transaction takes
//!   first (why not serializable: see [`tx`]); reads announced by the step are fetched with the
//!   lock, writes are buffered and sent with COMMIT: two round trips per step. Serialization
//!   failures and deadlocks re-run the step (bounded); a connection lost before COMMIT was sent
//!   re-runs it on a fresh connection (nothing was committed); a connection lost while COMMIT was
//!   in flight is an error whose outcome is unknown — the caller answers `UNAVAILABLE` and a retry
//!   of the request finds whichever state the database holds (every step is idempotent on its
//!   request id).
//! - **Durability**: a PostgreSQL commit is durable when it returns (`synchronous_commit`, the
//!   default), so [`Engine::flush`] returns at once and the signing core's group commit costs
//!   nothing. [`Engine::shared`] is true: the core learns the outbox head from the database, so a
//!   stream on one replica delivers what another committed.
//! - **Bounds** ([`settings`]): connect, statement, lock and idle-in-transaction timeouts, and a
//!   client-side bound on every exchange: a database that is gone is an error within seconds
//!   (`UNAVAILABLE` at the API), never a hang; connections found broken are dropped and fresh
//!   ones opened on the next call, so serving resumes by itself when the database is back.
//! - **A killed replica** leaves nothing half-done: its open transaction dies with its connection
//!   and the server rolls it back; what it committed is whole.
//! - **CockroachDB**: the SQL avoids what it lacks (advisory locks, `LOCK TABLE`, functions); its
//!   serializable isolation with `FOR UPDATE` behaves the same, and its retry errors (40001) re-run
//!   the step. Documented, not tested.

pub mod pool;
mod read;
pub mod schema;
pub mod settings;
mod sql;
mod tx;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool::{Connections, PgFailure};
pub use schema::MigrateReport;
pub use settings::PgSettings;

use super::engine::{Engine, Entries, RawTx, Scan, TxError, TxResult};
use super::tx::State;
use super::{StateError, Tree};

/// Attempts of one step (serialization failures, deadlocks, a stale connection).
const ATTEMPTS: u32 = 8;

/// The PostgreSQL engine (see the module docs).
pub struct PgEngine {
    connections: Arc<Connections>,
    stats: Stats,
}

/// Counters for benchmarks: transactions and the round trips they took.
#[derive(Debug, Default)]
struct Stats {
    transactions: AtomicU64,
    tx_round_trips: AtomicU64,
    retries: AtomicU64,
}

/// A copy of the engine's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgStats {
    /// Transactions run to their end (committed, or ended by the step).
    pub transactions: u64,
    /// Network round trips those transactions took.
    pub tx_round_trips: u64,
    /// Every network round trip with the database (transactions and reads outside them).
    pub round_trips: u64,
    /// Attempts re-run (serialization failure, deadlock, stale connection).
    pub retries: u64,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEngine")
            .field("database", &self.connections.description)
            .finish_non_exhaustive()
    }
}

pub(crate) fn note_failure(failure: &PgFailure) {
    tracing::debug!(%failure, "database exchange failed");
}

impl PgEngine {
    /// Connects and checks the schema version (refusing one this binary does not serve).
    pub fn open(settings: &PgSettings) -> Result<PgEngine, StateError> {
        let engine = Self::connect(settings)?;
        schema::check(&engine.connections)?;
        Ok(engine)
    }

    /// Connects without checking the schema (for `custos state migrate`).
    pub fn connect(settings: &PgSettings) -> Result<PgEngine, StateError> {
        Ok(PgEngine {
            connections: Arc::new(Connections::new(settings)?),
            stats: Stats::default(),
        })
    }

    /// Applies the migrations the database lacks (creating the settings' schema first).
    pub fn migrate(settings: &PgSettings) -> Result<MigrateReport, StateError> {
        let engine = Self::connect(settings)?;
        schema::migrate(&engine.connections, settings.schema.as_deref())
    }

    /// The schema version of the database (`None`: no Custos schema).
    pub fn schema_version(&self) -> Result<Option<i32>, StateError> {
        schema::version(&self.connections)
    }

    /// `user@host:port/db`.
    pub fn description(&self) -> &str {
        &self.connections.description
    }

    /// The counters so far.
    pub fn stats(&self) -> PgStats {
        PgStats {
            transactions: self.stats.transactions.load(Ordering::Relaxed),
            tx_round_trips: self.stats.tx_round_trips.load(Ordering::Relaxed),
            round_trips: self.connections.round_trips.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
        }
    }

    fn count_attempt(&self, tx: &tx::PgTx<'_>) {
        self.stats
            .tx_round_trips
            .fetch_add(tx.round_trips(), Ordering::Relaxed);
    }

    fn retry_pause(&self, attempt: u32) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        let jitter = u64::from(rand::random::<u8>() % 8);
        std::thread::sleep(Duration::from_millis(
            (1u64 << attempt.min(6)).saturating_add(jitter),
        ));
    }
}

impl Engine for PgEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn transact_raw(
        &self,
        step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
    ) -> Result<(), StateError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = tx::PgTx::new(&self.connections);
            let outcome = step(&tx);
            let failure = tx.take_failure();
            let last = attempt >= ATTEMPTS;
            match (outcome, failure) {
                // A database failure inside the step: nothing is committed.
                (_, Some(failure)) => {
                    note_failure(&failure);
                    tx.abandon();
                    self.count_attempt(&tx);
                    let retry = matches!(failure, PgFailure::Retry(_))
                        || (matches!(failure, PgFailure::Lost(_)) && attempt < 3);
                    if retry && !last {
                        self.retry_pause(attempt);
                        continue;
                    }
                    return Err(tx::failed(&self.connections, &failure));
                }
                (Err(TxError::Conflict), None) => {
                    tx.abandon();
                    self.count_attempt(&tx);
                    if last {
                        return Err(StateError::Storage(
                            "the transaction kept conflicting; try again".into(),
                        ));
                    }
                    self.retry_pause(attempt);
                    continue;
                }
                (Err(TxError::Abort(e)), None) => {
                    tx.abandon();
                    self.count_attempt(&tx);
                    self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                (Ok(()), None) => {
                    let committed = tx.commit();
                    self.count_attempt(&tx);
                    match committed {
                        Ok(()) => {
                            self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        // Definitely not committed (the server said so): run the step again.
                        Err(failure @ PgFailure::Retry(_)) if !last => {
                            note_failure(&failure);
                            tx.abandon();
                            self.retry_pause(attempt);
                            continue;
                        }
                        Err(failure @ PgFailure::Lost(_)) => {
                            note_failure(&failure);
                            return Err(StateError::Storage(format!(
                                "PostgreSQL {}: the connection was lost while committing; the \
                                 outcome is unknown ({failure}): a retry finds what was stored",
                                self.connections.description
                            )));
                        }
                        Err(failure) => {
                            note_failure(&failure);
                            tx.abandon();
                            return Err(tx::failed(&self.connections, &failure));
                        }
                    }
                }
            }
        }
    }

    fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.read_get(tree, key)
    }

    fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError> {
        let mut all = self.read_scans(std::slice::from_ref(scan))?;
        Ok(all.pop().unwrap_or_default())
    }

    fn scan_many_raw(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        if scans.is_empty() {
            return Ok(Vec::new());
        }
        self.read_scans(scans)
    }

    fn flush(&self) -> Result<(), StateError> {
        // Every commit is durable when it returns.
        Ok(())
    }

    fn count(&self, tree: Tree) -> Result<u64, StateError> {
        self.read_count(tree)
    }

    fn shared(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<Option<Arc<dyn Engine>>, StateError> {
        self.open_snapshot().map(Some)
    }
}

impl State {
    /// A sealed state over the PostgreSQL database of `settings` (schema checked).
    pub fn open_postgres(settings: &PgSettings) -> Result<State, StateError> {
        Ok(State::new(Arc::new(PgEngine::open(settings)?)))
    }
}
