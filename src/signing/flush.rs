//! Group commit: one `fsync` for every transaction committed meanwhile.
//!
//! A step commits its transaction, then calls [`GroupCommit::flush`] and waits; only then
//! does its answer (or signature) leave. Each caller takes a ticket (a counter incremented after
//! its commit). Callers queue on one async mutex; whoever holds it reads the newest ticket issued
//! so far, runs `db.flush()` once (on the blocking pool), and records that every ticket up to it is
//! durable. The callers behind it find their ticket already covered and return without flushing.
//! Under load this is one flush per "batch" of concurrent requests instead of one per request; a
//! lone request pays exactly one flush, as before.
//!
//! A failed flush answers its caller with the error at once (the signing core maps it to
//! UNAVAILABLE); the callers queued behind it try their own flush, which fails as fast if the disk
//! is gone. A ticket is never marked durable by a flush that failed.

use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use crate::state::{State, StateError};

/// The group-commit flusher of one database.
pub struct GroupCommit {
    state: Arc<State>,
    issued: AtomicU64,
    durable: AtomicU64,
    flushes: AtomicU64,
    leader: tokio::sync::Mutex<()>,
    /// Debug builds only: `Some(n)`: n more flushes may run, then they wait (tests hold a
    /// committed transaction between its commit and its flush); `None`: no hold.
    held: tokio::sync::watch::Sender<Option<u64>>,
}

impl GroupCommit {
    /// A flusher for `state`'s database.
    pub fn new(state: Arc<State>) -> Self {
        GroupCommit {
            state,
            issued: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            leader: tokio::sync::Mutex::new(()),
            held: tokio::sync::watch::channel(None).0,
        }
    }

    /// Test-only fault injection (debug builds): `Some(n)` lets `n` more asynchronous flushes
    /// run, then holds the following ones (what they would make durable stays not durable) until
    /// `None` releases them.
    #[cfg(debug_assertions)]
    pub fn hold(&self, after: Option<u64>) {
        self.held.send_replace(after);
    }

    /// Makes everything committed before this call durable.
    pub async fn flush(&self) -> Result<(), StateError> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let _leader = self.leader.lock().await;
        if self.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        if cfg!(debug_assertions) {
            let mut passed = false;
            self.held.send_if_modified(|hold| match hold {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    passed = true;
                    false
                }
                Some(_) => false,
                None => {
                    passed = true;
                    false
                }
            });
            if !passed {
                let mut held = self.held.subscribe();
                let _ = held.wait_for(|hold| hold.is_none()).await;
            }
        }
        let target = self.issued.load(Ordering::SeqCst);
        let state = self.state.clone();
        let flushed = tokio::task::spawn_blocking(move || state.flush())
            .await
            .map_err(|e| StateError::Storage(format!("flush task failed: {e}")))?;
        flushed?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// The same, for synchronous callers (unseal at start, the expiry sweep): flushes directly.
    pub fn flush_blocking(&self) -> Result<(), StateError> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.flush()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(ticket, Ordering::SeqCst);
        Ok(())
    }

    /// How many flushes ran (tests check that concurrent requests share them).
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
