//! Group commit: one `fsync` for every transaction committed meanwhile.
//!
//! A step commits its sled transaction, then calls [`GroupCommit::flush`] and waits; only then
//! does its answer (or signature) leave. Each caller takes a ticket (a counter incremented after
//! its commit). Callers queue on one async mutex; whoever holds it reads the newest ticket issued
//! so far, runs `db.flush()` once (on a thread of its own), and records that every ticket up to
//! it is durable. The callers behind it find their ticket already covered and return without
//! flushing.
//! Under load this is one flush per "batch" of concurrent requests instead of one per request; a
//! lone request pays exactly one flush, as before.
//!
//! A failed flush answers its caller with the error at once (the signing core maps it to
//! UNAVAILABLE); the callers queued behind it try their own flush, which fails as fast if the disk
//! is gone. A ticket is never marked durable by a flush that failed.
//!
//! Every flush is bounded by the disk guard's timeout ([`super::storage::Storage::flush`]): a
//! flush that does not return (a wedged database) fails its caller instead of hanging it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::state::sled::SledState;
use crate::state::StateError;

use super::storage::Storage;

/// The group-commit flusher of one database.
pub struct GroupCommit {
    state: SledState,
    storage: Arc<Storage>,
    issued: AtomicU64,
    durable: AtomicU64,
    flushes: AtomicU64,
    leader: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// A flusher for `state`'s database, its flushes bounded by `storage`.
    pub fn new(state: SledState, storage: Arc<Storage>) -> Self {
        GroupCommit {
            state,
            storage,
            issued: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            leader: tokio::sync::Mutex::new(()),
        }
    }

    /// Makes everything committed before this call durable.
    pub async fn flush(&self) -> Result<(), StateError> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let _leader = self.leader.lock().await;
        if self.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let target = self.issued.load(Ordering::SeqCst);
        self.storage.flush(&self.state).await?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// The same, for synchronous callers (unseal at start, the expiry sweep): flushes directly.
    pub fn flush_blocking(&self) -> Result<(), StateError> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        self.storage.flush_blocking(&self.state)?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(ticket, Ordering::SeqCst);
        Ok(())
    }

    /// How many flushes ran (tests check that concurrent requests share them).
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
