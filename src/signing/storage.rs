//! The state database's disk: a full disk answers UNAVAILABLE at once and never hangs a call,
//! and signing resumes by itself when space returns.
//!
//! # What sled 0.34 does when the disk fills
//!
//! Measured on a small tmpfs (`tests/grpc_bounded_input.rs` replays it through the server):
//!
//! 1. **A failed write poisons the instance.** The first write that meets `ENOSPC` fails, and
//!    sled records it as a global error of that open database: every later transaction and every
//!    flush fails at once with the same `No space left on device`, *even after space returns*.
//!    Only a new open clears it (`PageCache::start` resets the error); reopening then recovers
//!    exactly what had been flushed (the transaction whose flush failed is gone).
//! 2. **Reads still answer from memory**, including the transaction whose flush failed and which
//!    a reopen will not have.
//! 3. **A large page wedges the whole process.** Pages above a quarter of a segment (about
//!    128 KiB: a record holding a large payload, or a leaf of up to 16 records of a few KiB once
//!    consolidated) are written to a blob file of their own while a slot of the log buffer is
//!    reserved. When that blob write fails, the reservation is never released: the log buffer can
//!    never be written, every later `flush` waits forever, and — sled's concurrency control and
//!    epochs being process-wide — transactions of *every* sled database in the process (the key
//!    store's too) never return either, spinning. Measured with two databases in one process
//!    (`tests/state_disk_wedge.rs` keeps its wedged database in a process of its own for that
//!    reason). Inline pages that fail (case 1) leave other databases alone.
//!
//! So sled must not be the one to find out that the disk is full, and nothing may wait on it
//! without a bound.
//!
//! # What the core does
//!
//! - **Guard** ([`Storage::check_space`]): every write step checks, before it writes, that the
//!   filesystem holding the state directory has at least `[limits] state_min_free_bytes` free for
//!   unprivileged use (`statvfs` `f_bavail`; default 64 MiB — several worst-case requests, each a
//!   1 MiB PSBT stored hex-encoded and rewritten at every state change). Below it the step answers
//!   `UNAVAILABLE` with the directory, the free bytes and the reserve, writes nothing, and sled
//!   never meets `ENOSPC` from the signer's own growth or from another file filling the disk.
//!   Nothing is remembered: the first write after space returns goes ahead, without a restart.
//!   `Sign` checks before it hashes or decodes the payload; every transaction checks again as it
//!   appends its audit record (all write steps do), so an expiry sweep or a vote is refused the
//!   same way. The first refusal and the return of space are logged once each, never per call (a
//!   log on the same disk must not fill it faster).
//! - **Bounded flush** ([`Storage::flush`]): a flush that has not returned within
//!   `[limits] state_flush_timeout_secs` answers `UNAVAILABLE`, and marks the database
//!   **wedged**: from then on every flush fails at once, saying that the server must be
//!   restarted (case 3 above never recovers in place), instead of queueing more callers behind a
//!   flush that will not return.
//!
//! # What is not done here
//!
//! When sled meets `ENOSPC` anyway (the reserve was eaten between the check and the write, by
//! concurrent large requests or by another process):
//!
//! - on an inline page (case 1) the instance is poisoned: every write answers `UNAVAILABLE` at
//!   once and nothing is signed (no signature leaves before its transaction is flushed), but
//!   signing resumes only after a restart. Recovering in place means reopening the database once
//!   space is back: the core must then hold the state as a swappable handle (today
//!   `SigningCore::state` is a plain `SledState` whose trees every step and the public
//!   `SigningCore::state()` borrow), drain the steps in flight, drop every handle (the file lock
//!   goes with the last one), reopen through `crate::embedded_db`, re-read the outbox head and run
//!   the recovery pass for `authorized` requests. Nothing acknowledged can be lost by that: every
//!   answer waited for a successful flush, and a reopen restores everything flushed and nothing
//!   else (measured). `tests/grpc_bounded_input.rs` keeps that case as an ignored test.
//! - on a blob page (case 3) the process is wedged: the bounded flush answers its caller and
//!   latches, but a transaction already inside sled's commit never returns, and holds its tokio
//!   worker. No in-process recovery exists; only a restart. The fix belongs to the state layer:
//!   keep every page below sled's blob threshold (payloads and results out of the request
//!   records, in a tree of their own in bounded chunks), or run state transactions on threads of
//!   their own so that the runtime survives, or leave sled (the PostgreSQL store).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::state::sled::SledState;
use crate::state::StateError;

/// The state database's disk guard and flush bound (see the module docs).
pub struct Storage {
    dir: PathBuf,
    min_free: u64,
    flush_timeout: Duration,
    full: AtomicBool,
    wedged: Mutex<Option<String>>,
}

impl Storage {
    /// The guard for the state directory `dir`, keeping `min_free` bytes free (0: no guard), and
    /// bounding flushes by `flush_timeout`.
    pub fn new(dir: PathBuf, min_free: u64, flush_timeout: Duration) -> Self {
        Storage {
            dir,
            min_free,
            flush_timeout,
            full: AtomicBool::new(false),
            wedged: Mutex::new(None),
        }
    }

    /// `Ok` if a write step may write: the disk keeps its reserve and no flush is stuck.
    pub fn check_space(&self) -> Result<(), StateError> {
        self.check_wedged()?;
        if self.min_free == 0 {
            return Ok(());
        }
        let free = fs2::available_space(&self.dir).map_err(|e| {
            StateError::Storage(format!(
                "cannot read the free space of the state disk ({}): {e}",
                self.dir.display()
            ))
        })?;
        if free >= self.min_free {
            if self.full.swap(false, Ordering::SeqCst) {
                tracing::info!(
                    dir = %self.dir.display(),
                    free,
                    "state disk has room again: writes resume"
                );
            }
            return Ok(());
        }
        if !self.full.swap(true, Ordering::SeqCst) {
            tracing::error!(
                dir = %self.dir.display(),
                free,
                reserve = self.min_free,
                "state disk full: refusing every write until space returns"
            );
        }
        Err(StateError::Storage(format!(
            "state disk full: {} has {free} bytes free, below the reserve of {} bytes \
             ([limits] state_min_free_bytes); nothing was written",
            self.dir.display(),
            self.min_free
        )))
    }

    fn check_wedged(&self) -> Result<(), StateError> {
        match &*self.wedged.lock().expect("wedge lock poisoned") {
            Some(why) => Err(StateError::Storage(why.clone())),
            None => Ok(()),
        }
    }

    fn wedge(&self) -> StateError {
        let why = format!(
            "the state database ({}) did not finish a flush within {}s (disk full or failing); \
             it no longer accepts writes: restart the server once the disk is healthy",
            self.dir.display(),
            self.flush_timeout.as_secs()
        );
        let mut wedged = self.wedged.lock().expect("wedge lock poisoned");
        if wedged.is_none() {
            tracing::error!(dir = %self.dir.display(), "{why}");
            *wedged = Some(why.clone());
        }
        StateError::Storage(why)
    }

    /// Flushes `state`, waiting at most the flush timeout.
    ///
    /// The flush runs on a thread of its own rather than on the runtime's blocking pool: a
    /// flush that never returns must not hold up the runtime's shutdown as well.
    pub async fn flush(&self, state: &SledState) -> Result<(), StateError> {
        self.check_wedged()?;
        let (done, result) = tokio::sync::oneshot::channel();
        spawn_flush(state.clone(), move |flushed| {
            let _ = done.send(flushed);
        })?;
        match tokio::time::timeout(self.flush_timeout, result).await {
            Ok(Ok(flushed)) => flushed,
            Ok(Err(_)) => Err(StateError::Storage(
                "the flush thread ended unanswered".into(),
            )),
            Err(_) => Err(self.wedge()),
        }
    }

    /// The same for synchronous callers (the expiry sweep, unseal).
    pub fn flush_blocking(&self, state: &SledState) -> Result<(), StateError> {
        self.check_wedged()?;
        let (done, result) = std::sync::mpsc::channel();
        spawn_flush(state.clone(), move |flushed| {
            let _ = done.send(flushed);
        })?;
        match result.recv_timeout(self.flush_timeout) {
            Ok(flushed) => flushed,
            Err(_) => Err(self.wedge()),
        }
    }
}

/// Flushes `state` on a new thread and hands the result to `answer`.
fn spawn_flush(
    state: SledState,
    answer: impl FnOnce(Result<(), StateError>) + Send + 'static,
) -> Result<(), StateError> {
    std::thread::Builder::new()
        .name("custos-flush".into())
        .spawn(move || answer(state.flush()))
        .map(drop)
        .map_err(|e| StateError::Storage(format!("cannot start a flush thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_with_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().to_owned(), u64::MAX, Duration::from_secs(5));
        let e = storage.check_space().unwrap_err().to_string();
        assert!(e.contains("state disk full"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains(&format!("reserve of {} bytes", u64::MAX)), "{e}");
        // No reserve: no refusal.
        let storage = Storage::new(dir.path().to_owned(), 0, Duration::from_secs(5));
        storage.check_space().unwrap();
        let storage = Storage::new(dir.path().to_owned(), 1, Duration::from_secs(5));
        storage.check_space().unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_pass() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("absent");
        let storage = Storage::new(gone, 1, Duration::from_secs(5));
        let e = storage.check_space().unwrap_err().to_string();
        assert!(e.contains("cannot read the free space"), "{e}");
    }

    #[tokio::test]
    async fn flushes_pass_until_wedged_then_fail_at_once() {
        let state = SledState::temporary().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().to_owned(), 1, Duration::from_secs(30));
        storage.flush(&state).await.unwrap();
        storage.flush_blocking(&state).unwrap();
        // As a timed-out flush leaves it:
        let why = storage.wedge().to_string();
        assert!(why.contains("restart the server"), "{why}");
        assert_eq!(storage.flush(&state).await.unwrap_err().to_string(), why);
        assert_eq!(storage.flush_blocking(&state).unwrap_err().to_string(), why);
        assert_eq!(storage.check_space().unwrap_err().to_string(), why);
    }
}
