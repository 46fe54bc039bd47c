//! The sled engine: one database directory, one sled tree per [`Tree`], multi-tree transactions.
//!
//! This file owns only the storage mechanics (opening the database, the tree set, running a
//! closure as one sled transaction over every tree, range reads, flushing). What the records mean,
//! and their authentication, live in the engine-neutral modules of `crate::state`.
//!
//! sled runs without its background flusher: durability comes from [`Engine::flush`], called by
//! the signing core's group commit before any answer or signature leaves. A reopen in the same
//! process waits (bounded) for the previous instance's file lock (`crate::embedded_db`).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::engine::{Engine, Entries, RawTx, Scan, TxError, TxResult};
use super::tree::Tree;
use super::tx::State;
use super::StateError;

/// The sled database and its trees.
#[derive(Clone)]
pub struct SledEngine {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine").finish_non_exhaustive()
    }
}

pub(crate) fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

fn index(tree: Tree) -> usize {
    Tree::ALL
        .iter()
        .position(|t| *t == tree)
        .expect("every tree is in Tree::ALL")
}

/// sled's page cache, bytes (sled's default is 1 GiB: the process would grow with the database
/// until it reached it). The hot records (ledger buckets, heads) are few; the rest is read rarely.
pub const CACHE_BYTES: u64 = 64 << 20;

impl SledEngine {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES);
        let db = crate::embedded_db::open(path, config).map_err(storage)?;
        Self::from_db(db)
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

    fn from_db(db: sled::Db) -> Result<Self, StateError> {
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map_err(storage))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SledEngine { db, trees })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[index(tree)]
    }
}

/// A sled transaction over every tree.
struct SledTx<'a> {
    trees: &'a [TransactionalTree],
}

fn unabortable(e: UnabortableTransactionError) -> TxError {
    match e {
        UnabortableTransactionError::Conflict => TxError::Conflict,
        UnabortableTransactionError::Storage(e) => TxError::Abort(storage(e)),
    }
}

impl RawTx for SledTx<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.trees[index(tree)]
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unabortable)
    }

    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> TxResult<Option<Vec<u8>>> {
        self.trees[index(tree)]
            .insert(key, value)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unabortable)
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.trees[index(tree)]
            .remove(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unabortable)
    }
}

impl Engine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn transact_raw(
        &self,
        step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
    ) -> Result<(), StateError> {
        // sled wants `Fn`; the step is `FnMut` (it keeps its result): a RefCell bridges them, and
        // sled runs the closure on this thread, one attempt at a time.
        let step = std::cell::RefCell::new(step);
        self.trees[..]
            .transaction(|trees: &Vec<TransactionalTree>| {
                let tx = SledTx { trees };
                (step.borrow_mut())(&tx).map_err(|e| match e {
                    TxError::Abort(e) => ConflictableTransactionError::Abort(e),
                    TxError::Conflict => ConflictableTransactionError::Conflict,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => storage(e),
            })
    }

    fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(storage)
    }

    fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError> {
        let tree = self.tree(scan.tree);
        let range = (bound(&scan.from), bound(&scan.to));
        let mut out = Vec::new();
        let mut push = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, StateError> {
            let (k, v) = item.map_err(storage)?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < scan.limit)
        };
        if scan.limit == 0 {
            return Ok(Vec::new());
        }
        if scan.reverse {
            for item in tree.range::<&[u8], _>(range).rev() {
                if !push(item)? {
                    break;
                }
            }
        } else {
            for item in tree.range::<&[u8], _>(range) {
                if !push(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn count(&self, tree: Tree) -> Result<u64, StateError> {
        Ok(self.tree(tree).len() as u64)
    }

    /// sled holds its files locked: no other process writes them while this one has them open.
    fn exclusive(&self) -> bool {
        true
    }
}

fn bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl State {
    /// A sealed state over the sled database at `path`.
    pub fn open_sled(path: &Path) -> Result<State, StateError> {
        Ok(State::new(Arc::new(SledEngine::open(path)?)))
    }

    /// A sealed state over a throw-away sled database.
    pub fn temporary_sled() -> Result<State, StateError> {
        Ok(State::new(Arc::new(SledEngine::temporary()?)))
    }

    /// A throw-away, unsealed state under a random key that dies with it (`custos policy test`,
    /// benchmarks, tests).
    pub fn scratch() -> Result<State, StateError> {
        let state = Self::temporary_sled()?;
        let key = crate::secret::Secret32::random()
            .map_err(|_| StateError::Storage("the OS random generator failed".into()))?;
        state.set_auth(Some(super::auth::StateAuth::new(key)));
        Ok(state)
    }
}
