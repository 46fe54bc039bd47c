//! One transaction on PostgreSQL: the state lock, reads served from what was fetched at the
//! start, writes buffered and sent with the commit.
//!
//! Two network round trips for a step whose reads were announced ([`RawTx::prefetch`]):
//!
//! 1. `BEGIN`, `SELECT … FOR UPDATE` on the lock row, and one `SELECT` of the announced keys, the
//!    whole `meta` tree and the last record of the audit chain and of the outbox — three
//!    statements pipelined on one connection, one round trip. The transaction starts lazily, at
//!    the closure's first read or prefetch, so the keys it announces first ride along.
//! 2. `DELETE` of the removed keys, `INSERT … ON CONFLICT DO UPDATE` of the written ones (each one
//!    statement over arrays, whatever the number of records) and `COMMIT` — pipelined again.
//!
//! A read the step did not announce costs one round trip of its own (while the lock is held).
//! Keys known absent need none: a key of `meta` that was not returned, and a key past the tail of
//! an append-only tree (the next audit record, the next outbox entry).
//!
//! Isolation: READ COMMITTED plus the lock row. Every transaction of every replica takes the lock
//! first, so they run one after the other; each statement after the lock sees everything
//! committed before it, so each transaction reads the state as the previous one left it — a
//! serial order, which is what the limits need. Serializable isolation without the lock would be
//! correct too, but every step writes the same `meta` rows (digest, audit head): under load
//! nearly every transaction would fail at commit and be re-run, wasting work, while the lock
//! queues them fairly. Serialization failures and deadlocks (which CockroachDB, serializable by
//! default, may still report) roll the transaction back and re-run the closure, a bounded number
//! of times.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::pool::{Connections, Lease, PgFailure};
use super::sql;
use crate::state::engine::{RawTx, TxError, TxResult};
use crate::state::{StateError, Tree};

type Key = (Tree, Vec<u8>);

/// What the transaction knows of a tree beyond single keys.
#[derive(Clone, Debug)]
enum Extent {
    /// Every key of the tree was fetched.
    Whole,
    /// No key after this one exists (`None`: the tree is empty).
    After(Option<Vec<u8>>),
}

/// One attempt of a transaction.
pub(super) struct PgTx<'a> {
    connections: &'a Connections,
    pool: deadpool_postgres::Pool,
    lease: RefCell<Option<Lease>>,
    begun: Cell<bool>,
    known: RefCell<HashMap<Key, Option<Vec<u8>>>>,
    extents: RefCell<HashMap<Tree, Extent>>,
    writes: RefCell<BTreeMap<Key, Option<Vec<u8>>>>,
    failure: RefCell<Option<PgFailure>>,
    round_trips: Cell<u64>,
}

fn pg_tree(tree: Tree) -> i16 {
    sql::tree_id(tree)
}

impl<'a> PgTx<'a> {
    pub(super) fn new(connections: &'a Connections) -> Self {
        PgTx {
            connections,
            pool: connections.pool.clone(),
            lease: RefCell::new(None),
            begun: Cell::new(false),
            known: RefCell::new(HashMap::new()),
            extents: RefCell::new(HashMap::new()),
            writes: RefCell::new(BTreeMap::new()),
            failure: RefCell::new(None),
            round_trips: Cell::new(0),
        }
    }

    /// Round trips this attempt made.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    /// The failure of a database exchange, if one happened (the closure may have swallowed it).
    pub(super) fn take_failure(&self) -> Option<PgFailure> {
        self.failure.borrow_mut().take()
    }

    fn fail(&self, failure: PgFailure) -> TxError {
        let error = match &failure {
            PgFailure::Retry(_) => TxError::Conflict,
            other => TxError::Abort(super::pool::storage(self.connections, "transaction", other)),
        };
        *self.failure.borrow_mut() = Some(failure);
        error
    }

    /// Runs one exchange with the transaction's connection, which the future hands back.
    fn exchange<T: Send + 'static, F>(
        &self,
        run: impl FnOnce(Lease) -> F + Send + 'static,
    ) -> Result<T, PgFailure>
    where
        F: std::future::Future<Output = (Lease, Result<T, PgFailure>)> + Send,
    {
        if self.failure.borrow().is_some() {
            return Err(PgFailure::Unavailable(
                "the transaction already failed".into(),
            ));
        }
        let lease = self.lease.borrow_mut().take();
        let pool = self.pool.clone();
        self.round_trips.set(self.round_trips.get() + 1);
        let outcome = self.connections.block(async move {
            let lease = match lease {
                Some(lease) => lease,
                None => match Connections::get(&pool).await {
                    Ok(lease) => lease,
                    Err(e) => return (None, Err(e)),
                },
            };
            let (lease, result) = run(lease).await;
            (Some(lease), result)
        });
        match outcome {
            Ok((lease, result)) => {
                let broken = result
                    .as_ref()
                    .err()
                    .is_some_and(PgFailure::connection_broken);
                if !broken {
                    *self.lease.borrow_mut() = lease;
                }
                result
            }
            Err(e) => Err(e),
        }
    }

    /// Absorbs fetched rows: `kind` 0 a listed key, 1 a key of a tree read whole, 2 a tail.
    fn absorb(&self, rows: Vec<Row>, listed: &[Key], begin: bool) {
        let mut known = self.known.borrow_mut();
        let mut extents = self.extents.borrow_mut();
        if begin {
            for tree in sql::WHOLE {
                extents.insert(tree, Extent::Whole);
            }
            for tree in sql::TAILS {
                extents.insert(tree, Extent::After(None));
            }
        }
        for key in listed {
            known.entry(key.clone()).or_insert(None);
        }
        for row in rows {
            let kind: i16 = row.get(0);
            let Some(tree) = sql::tree_of(row.get(1)) else {
                continue;
            };
            let key: Vec<u8> = row.get(2);
            let value: Vec<u8> = row.get(3);
            if kind == 2 {
                extents.insert(tree, Extent::After(Some(key.clone())));
            }
            known.insert((tree, key), Some(value));
        }
    }

    /// What is known of `key` without asking: `Some(value or absence)`, or `None` (unknown).
    fn lookup(&self, tree: Tree, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = self.known.borrow().get(&(tree, key.to_vec())) {
            return Some(v.clone());
        }
        match self.extents.borrow().get(&tree) {
            Some(Extent::Whole) => Some(None),
            Some(Extent::After(None)) => Some(None),
            Some(Extent::After(Some(last))) if key > last.as_slice() => Some(None),
            _ => None,
        }
    }

    /// Starts the transaction: BEGIN, the lock, and the first fetch, in one round trip.
    fn begin(&self, keys: Vec<Key>) -> TxResult<()> {
        let trees: Vec<i16> = keys.iter().map(|(t, _)| pg_tree(*t)).collect();
        let raw: Vec<Vec<u8>> = keys.iter().map(|(_, k)| k.clone()).collect();
        let rows = self
            .exchange(move |lease| async move {
                let result = async {
                    let (begin, lock, fetch) = tokio::join!(
                        lease.prepare_cached(sql::BEGIN),
                        lease.prepare_cached(sql::LOCK),
                        lease.prepare_cached(sql::fetch_begin()),
                    );
                    let (begin, lock, fetch) = (
                        begin.map_err(PgFailure::from_pg)?,
                        lock.map_err(PgFailure::from_pg)?,
                        fetch.map_err(PgFailure::from_pg)?,
                    );
                    let params: [&(dyn ToSql + Sync); 2] = [&trees, &raw];
                    let (began, locked, fetched) = tokio::join!(
                        lease.execute(&begin, &[]),
                        lease.query(&lock, &[]),
                        lease.query(&fetch, &params),
                    );
                    began.map_err(PgFailure::from_pg)?;
                    locked.map_err(PgFailure::from_pg)?;
                    fetched.map_err(PgFailure::from_pg)
                }
                .await;
                (lease, result)
            })
            .map_err(|e| self.fail(e))?;
        self.begun.set(true);
        self.absorb(rows, &keys, true);
        Ok(())
    }

    /// Fetches `keys` (none known yet) in one round trip.
    fn fetch(&self, keys: Vec<Key>) -> TxResult<()> {
        if !self.begun.get() {
            return self.begin(keys);
        }
        if keys.is_empty() {
            return Ok(());
        }
        let trees: Vec<i16> = keys.iter().map(|(t, _)| pg_tree(*t)).collect();
        let raw: Vec<Vec<u8>> = keys.iter().map(|(_, k)| k.clone()).collect();
        let rows = self
            .exchange(move |lease| async move {
                let result = async {
                    let fetch = lease
                        .prepare_cached(sql::FETCH_KEYS)
                        .await
                        .map_err(PgFailure::from_pg)?;
                    lease
                        .query(&fetch, &[&trees, &raw])
                        .await
                        .map_err(PgFailure::from_pg)
                }
                .await;
                (lease, result)
            })
            .map_err(|e| self.fail(e))?;
        self.absorb(rows, &keys, false);
        Ok(())
    }

    fn read(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        if let Some(v) = self.lookup(tree, key) {
            return Ok(v);
        }
        self.fetch(vec![(tree, key.to_vec())])?;
        Ok(self.lookup(tree, key).flatten())
    }

    fn write(&self, tree: Tree, key: &[u8], value: Option<Vec<u8>>) -> TxResult<Option<Vec<u8>>> {
        let old = self.read(tree, key)?;
        self.known
            .borrow_mut()
            .insert((tree, key.to_vec()), value.clone());
        self.writes.borrow_mut().insert((tree, key.to_vec()), value);
        Ok(old)
    }

    /// Sends the buffered writes and COMMIT in one round trip. `Ok` once committed.
    pub(super) fn commit(&self) -> Result<(), PgFailure> {
        if !self.begun.get() {
            return Ok(());
        }
        let writes = std::mem::take(&mut *self.writes.borrow_mut());
        if writes.is_empty() {
            self.abandon();
            return Ok(());
        }
        let (mut del_trees, mut del_keys) = (Vec::new(), Vec::new());
        let (mut put_trees, mut put_keys, mut put_values) = (Vec::new(), Vec::new(), Vec::new());
        for ((tree, key), value) in writes {
            match value {
                None => {
                    del_trees.push(pg_tree(tree));
                    del_keys.push(key);
                }
                Some(v) => {
                    put_trees.push(pg_tree(tree));
                    put_keys.push(key);
                    put_values.push(v);
                }
            }
        }
        let committed = self.exchange(move |lease| async move {
            let result = async {
                let (delete, upsert, commit) = tokio::join!(
                    lease.prepare_cached(sql::DELETE),
                    lease.prepare_cached(sql::UPSERT),
                    lease.prepare_cached(sql::COMMIT),
                );
                let (delete, upsert, commit) = (
                    delete.map_err(PgFailure::from_pg)?,
                    upsert.map_err(PgFailure::from_pg)?,
                    commit.map_err(PgFailure::from_pg)?,
                );
                let del_params: [&(dyn ToSql + Sync); 2] = [&del_trees, &del_keys];
                let put_params: [&(dyn ToSql + Sync); 3] = [&put_trees, &put_keys, &put_values];
                let deleting = async {
                    if del_keys.is_empty() {
                        Ok(0)
                    } else {
                        lease.execute(&delete, &del_params).await
                    }
                };
                let upserting = async {
                    if put_keys.is_empty() {
                        Ok(0)
                    } else {
                        lease.execute(&upsert, &put_params).await
                    }
                };
                let (deleted, upserted, committed) =
                    tokio::join!(deleting, upserting, lease.execute(&commit, &[]));
                // A failed write aborts the transaction; the COMMIT then only ends it (PostgreSQL
                // answers it with ROLLBACK): nothing was committed, and the connection is idle.
                deleted.map_err(PgFailure::from_pg)?;
                upserted.map_err(PgFailure::from_pg)?;
                committed.map_err(PgFailure::from_pg)?;
                Ok(())
            }
            .await;
            (lease, result)
        });
        if committed.is_ok() {
            if let Some(lease) = self.lease.borrow_mut().take() {
                lease.release();
            }
        }
        committed
    }

    /// Ends the transaction without committing: ROLLBACK in the background (the caller does not
    /// wait for it), then the connection goes back to the pool; a broken one is closed.
    pub(super) fn abandon(&self) {
        let Some(lease) = self.lease.borrow_mut().take() else {
            return;
        };
        if !self.begun.get() {
            lease.release();
            return;
        }
        self.connections.detach(async move {
            let rolled_back = async {
                let rollback = lease.prepare_cached(sql::ROLLBACK).await?;
                lease.execute(&rollback, &[]).await
            }
            .await;
            if rolled_back.is_ok() {
                lease.release();
            }
        });
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl RawTx for PgTx<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.read(tree, key)
    }

    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> TxResult<Option<Vec<u8>>> {
        self.write(tree, key, Some(value))
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.write(tree, key, None)
    }

    fn prefetch(&self, keys: &[(Tree, Vec<u8>)]) -> TxResult<()> {
        let mut seen = HashSet::new();
        let wanted: Vec<Key> = keys
            .iter()
            .filter(|(tree, key)| self.lookup(*tree, key).is_none())
            .filter(|k| seen.insert((*k).clone()))
            .cloned()
            .collect();
        if wanted.is_empty() && self.begun.get() {
            return Ok(());
        }
        self.fetch(wanted)
    }
}

/// A storage error for a transaction failure (for `transact_raw`'s caller).
pub(super) fn failed(connections: &Connections, failure: &PgFailure) -> StateError {
    super::pool::storage(connections, "transaction", failure)
}
