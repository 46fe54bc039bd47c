//! The seam between the state steps and a storage engine: ordered byte trees with atomic
//! multi-tree transactions, nothing more.
//!
//! Every step of the signing pipeline (reserve limits + store the request + append the audit
//! record, mark signed + push the outbox entry, a vote, an expiry, an ack) is written once, in
//! `crate::state`, against [`StateTx`] (which authenticates every record, see [`super::auth`]);
//! an engine only has to run a closure atomically over its trees ([`Engine::transact_raw`]), read
//! outside transactions, and make committed work durable ([`Engine::flush`]).
//!
//! Contract of an engine:
//! - `transact_raw` runs the closure as one atomic transaction, serializable with every other:
//!   either all of its writes are committed or none. It may run the closure more than once (an
//!   optimistic engine retries on a conflict: the closure must have no effect outside the
//!   transaction). A closure returning [`TxError::Abort`] commits nothing and the error is
//!   returned.
//! - Reads inside a transaction see its own writes.
//! - `flush` returns once every transaction that committed before it was called is durable.
//!   An engine whose commits are durable by themselves (PostgreSQL) returns at once.
//!
//! [`StateTx`]: super::tx::StateTx

use std::ops::Bound;

use super::tree::Tree;
use super::StateError;

/// Why a transaction step stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxError {
    /// The closure gave up: nothing is committed and the error is returned to the caller.
    Abort(StateError),
    /// The engine saw a conflicting concurrent transaction: it retries the closure.
    Conflict,
}

impl From<StateError> for TxError {
    fn from(e: StateError) -> Self {
        TxError::Abort(e)
    }
}

/// The result of a step inside a transaction.
pub type TxResult<T> = Result<T, TxError>;

/// Key-value pairs read by a range scan, in scan order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Aborts a transaction with `e` (nothing it wrote is kept).
pub fn abort(e: StateError) -> TxError {
    TxError::Abort(e)
}

/// One transaction of an engine, over raw stored values.
pub trait RawTx {
    /// The stored value of `key` in `tree`.
    fn get(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>>;
    /// Stores `value`; returns the value it replaced.
    fn insert(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> TxResult<Option<Vec<u8>>>;
    /// Removes `key`; returns the value it had.
    fn remove(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>>;
    /// A hint that the step will read these keys: an engine with a network round trip per read
    /// fetches them in one. The default does nothing.
    fn prefetch(&self, keys: &[(Tree, Vec<u8>)]) -> TxResult<()> {
        let _ = keys;
        Ok(())
    }
}

/// One range read: keys in `(from, to)` of `tree`, in key order (or reverse), at most `limit`.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The tree.
    pub tree: Tree,
    /// Lower bound.
    pub from: Bound<Vec<u8>>,
    /// Upper bound.
    pub to: Bound<Vec<u8>>,
    /// Newest (largest key) first.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: usize,
}

impl Scan {
    /// Every key of `tree` (at most `limit`), in order.
    pub fn all(tree: Tree, limit: usize) -> Self {
        Scan {
            tree,
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            reverse: false,
            limit,
        }
    }

    /// Keys starting with `prefix`, in order.
    pub fn prefix(tree: Tree, prefix: &[u8], limit: usize) -> Self {
        let to = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        Scan {
            tree,
            from: Bound::Included(prefix.to_vec()),
            to,
            reverse: false,
            limit,
        }
    }

    /// Keys strictly after `key`, in order.
    pub fn after(tree: Tree, key: &[u8], limit: usize) -> Self {
        Scan {
            tree,
            from: Bound::Excluded(key.to_vec()),
            to: Bound::Unbounded,
            reverse: false,
            limit,
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A storage engine (see the module doc for the contract).
pub trait Engine: Send + Sync {
    /// A short name for messages and metrics (`sled`, `postgres`).
    fn name(&self) -> &'static str;

    /// Runs `step` as one atomic transaction (retrying it on [`TxError::Conflict`]).
    fn transact_raw(
        &self,
        step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
    ) -> Result<(), StateError>;

    /// Reads one value outside a transaction.
    fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Reads a range outside a transaction.
    fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError>;

    /// Makes every transaction committed so far durable.
    fn flush(&self) -> Result<(), StateError>;

    /// Number of entries in `tree` (tests and tools).
    fn count(&self, tree: Tree) -> Result<u64, StateError>;

    /// Several range reads at once (one network round trip on an engine that has them); the
    /// results in the order of `scans`. The default reads them one after another.
    fn scan_many_raw(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        scans.iter().map(|scan| self.scan_raw(scan)).collect()
    }

    /// Whether other processes (replicas) commit to this database too. Such an engine's commits
    /// are durable when [`Engine::transact_raw`] returns, so what it holds is what may be
    /// delivered: the signing core then learns the outbox head from the database, not only from
    /// its own commits. The default: this process is the only writer.
    fn shared(&self) -> bool {
        false
    }

    /// A read-only view of one consistent point in time, for reads that must agree with each
    /// other while others write (the full check: every record and the digest over them). `None`
    /// when the engine has no other writer while such a check runs (sled: one process holds the
    /// database), so reading it directly is consistent.
    fn snapshot(&self) -> Result<Option<std::sync::Arc<dyn Engine>>, StateError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
