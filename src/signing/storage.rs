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
//!    a reopen will not have. And a database cannot even be *opened* on a full disk (its
//!    recovery writes): a restart does not help until space returns.
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
//! The state engine is wrapped in a [`GuardedEngine`] (an [`Engine`] like any other: nothing
//! above it changes), which owns these:
//!
//! - **Guard** ([`Storage::check_space`]): before every transaction, the filesystem holding the
//!   state directory must have at least `[limits] state_min_free_bytes` free for unprivileged use
//!   (`statvfs` `f_bavail`; default 64 MiB — several worst-case requests, each a 1 MiB PSBT stored
//!   hex-encoded and rewritten at every state change). Below it the transaction answers
//!   `UNAVAILABLE` with the directory, the free bytes and the reserve, writes nothing, and sled
//!   never meets `ENOSPC` from the signer's own growth or from another file filling the disk.
//!   Nothing is remembered: the first write after space returns goes ahead, without a restart.
//!   `Sign` also checks before it hashes or decodes the payload. The first refusal and the return
//!   of space are logged once each, never per call (a log on the same disk must not fill it
//!   faster).
//! - **Reopen** (case 1): an error of the engine itself on a transaction or a flush (not a step
//!   that gave up on its own) marks the database **failed**. From then on every call, reads
//!   included (a poisoned instance answers from memory what a reopen will not have), answers
//!   `UNAVAILABLE` at once. The database is reopened by the first call admitted into the core
//!   ([`GuardedEngine::admit`], one line at the top of each core call that can write, and of the
//!   host's sweep, unseal and reload) once the disk is back above its reserve, while **no other
//!   call is inside the core**: it takes the admission gate exclusively (waiting at most
//!   [`ADMIT_WAIT`] for the calls inside, which fail fast, to leave; new calls queue behind it),
//!   drops the failed instance, opens the directory again (`crate::embedded_db` waits, bounded,
//!   for the old instance's file lock) and goes on with the fresh one. A failed attempt is tried
//!   again once the free space grew, or a second later.
//!
//!   Why nothing acknowledged is lost: the core answers (and releases a signature) only after the
//!   flush that makes its commits durable, within the same call — the durability contract of
//!   [`crate::signing`]. A successful flush means every earlier commit is on disk, and a reopen
//!   restores everything on disk (measured: the transaction whose flush failed is gone,
//!   everything flushed before it is there). While the database is failed every flush fails, and
//!   it is only reopened once no call is inside the core, so no call can hold a commit of the
//!   failed instance and then see a flush of the fresh one succeed. A request answered
//!   `UNAVAILABLE` may or may not be there after the reopen; its retry (same request id) finds its
//!   record or makes it anew — idempotency covers both. The core's own memory holds nothing that
//!   only the failed instance had: the durable outbox head moves only after a flush, and anchors
//!   are read from the database when they are written.
//! - **Bounded flush** (case 3): a flush runs on the storage's flush thread (one long-lived
//!   thread, not one per flush) and is waited for at most
//!   `[limits] state_flush_timeout_secs`; past that the call answers `UNAVAILABLE` and the
//!   database is latched **wedged**: every later call fails at once, saying that the server must
//!   be restarted. No reopen is tried: the wedged instance never lets go of its file lock, and
//!   sled is stuck process-wide anyway. The thread left waiting is not the runtime's, so it holds
//!   up neither calls nor the shutdown.
//!
//! # What is not done here
//!
//! Case 3 has no in-process recovery: a transaction already inside sled's commit when the blob
//! write failed never returns, and holds its tokio worker. The guard is what keeps it from
//! happening (sled only meets `ENOSPC` if the reserve is eaten between the check and the write, by
//! concurrent large requests or by another process). The fix belongs to the state layer: keep
//! every page below sled's blob threshold (payloads and results out of the request records, in a
//! tree of their own in bounded chunks), or run state transactions on threads of their own so
//! that the runtime survives, or leave sled (the PostgreSQL store).
//!
//! An engine given by the caller ([`crate::signing::SigningCore::open_with_engine`]) keeps its data
//! where it chooses: it gets the bounded flush, but no free-space guard on the state directory and
//! no reopen. A shared engine ([`Engine::shared`]: PostgreSQL) is not latched either: the latch
//! exists because a failed sled instance answers from memory what is not on disk, while a
//! networked engine keeps nothing of a failed transaction, so each call that meets the failure
//! answers `UNAVAILABLE` and serving resumes by itself once the database is back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::state::engine::{Engine, Entries, RawTx, Scan, TxError, TxResult};
use crate::state::{StateError, Tree};

/// Opens the state database again after a failure.
pub type Reopen = Box<dyn Fn() -> Result<Arc<dyn Engine>, StateError> + Send + Sync>;

/// Attempts to reopen a failed database are at least this far apart.
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// How long a reopen waits for a flush thread still holding the failed instance.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How long an admitted call that would reopen the database waits for the calls inside the core.
pub const ADMIT_WAIT: Duration = Duration::from_secs(2);

/// The state disk's guard and the flush bound (see the module docs).
pub struct Storage {
    dir: PathBuf,
    min_free: u64,
    flush_timeout: Duration,
    full: AtomicBool,
    wedged: Mutex<Option<String>>,
    /// The flush thread's queue (see [`Storage::flush_thread`]); dropping it ends the thread.
    flusher: Mutex<Option<mpsc::Sender<FlushJob>>>,
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
            flusher: Mutex::new(None),
        }
    }

    /// `Ok` if a write may go ahead: the disk keeps its reserve and no flush is stuck.
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

    /// Bytes free on the state disk, if they can be read.
    fn free(&self) -> Option<u64> {
        fs2::available_space(&self.dir).ok()
    }

    fn check_wedged(&self) -> Result<(), StateError> {
        match &*self.wedged.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(StateError::Storage(why.clone())),
            None => Ok(()),
        }
    }

    fn is_wedged(&self) -> bool {
        self.check_wedged().is_err()
    }

    fn wedge(&self) -> StateError {
        let why = format!(
            "the state database ({}) did not finish a flush within {}s (disk full or failing); \
             it no longer accepts anything: restart the server once the disk is healthy",
            self.dir.display(),
            self.flush_timeout.as_secs()
        );
        let mut wedged = self.wedged.lock().unwrap_or_else(|e| e.into_inner());
        if wedged.is_none() {
            tracing::error!(dir = %self.dir.display(), "{why}");
            *wedged = Some(why.clone());
        }
        StateError::Storage(why)
    }

    /// Flushes `engine` on the flush thread, waiting at most the flush timeout (then wedged).
    fn flush(&self, engine: Arc<dyn Engine>) -> Result<(), StateError> {
        self.check_wedged()?;
        let (done, result) = mpsc::sync_channel(1);
        self.flush_thread((engine, done))?;
        match result.recv_timeout(self.flush_timeout) {
            Ok(flushed) => flushed,
            Err(_) => Err(self.wedge()),
        }
    }

    /// Hands `job` to the flush thread, starting it on first use (or again, should it be gone).
    /// One long-lived thread instead of one per flush: no thread is made on the signing path.
    fn flush_thread(&self, job: FlushJob) -> Result<(), StateError> {
        let mut thread = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        let job = match thread.as_ref() {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (jobs, queue) = mpsc::channel::<FlushJob>();
        std::thread::Builder::new()
            .name("custos-flush".into())
            .spawn(move || {
                while let Ok((engine, done)) = queue.recv() {
                    let flushed = engine.flush();
                    // The engine is let go before the answer: a caller closing the database
                    // right after its flush finds no reference left here.
                    drop(engine);
                    let _ = done.send(flushed);
                }
            })
            .map_err(|e| StateError::Storage(format!("cannot start the flush thread: {e}")))?;
        jobs.send(job)
            .map_err(|_| StateError::Storage("the flush thread stopped at once".into()))?;
        *thread = Some(jobs);
        Ok(())
    }
}

/// A flush for the flush thread: the engine, and where its result goes.
type FlushJob = (Arc<dyn Engine>, mpsc::SyncSender<Result<(), StateError>>);

/// Why the database is failed, and when a reopen was last tried (with the free space then).
struct Failure {
    reason: String,
    last_attempt: Option<(Instant, Option<u64>)>,
}

/// An engine behind the disk guard, the flush bound and the reopen of the module docs.
pub struct GuardedEngine {
    storage: Arc<Storage>,
    name: &'static str,
    /// The engine's [`Engine::shared`]: other replicas commit to it too (PostgreSQL). Such an
    /// engine keeps nothing of a failed transaction, so its failures are not latched.
    shared: bool,
    current: RwLock<Option<Arc<dyn Engine>>>,
    reopen: Option<Reopen>,
    failure: Mutex<Option<Failure>>,
    /// Held shared by every admitted call; taken exclusively (never waited for) to reopen.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Reopens so far ([`Engine::incarnation`]).
    reopens: std::sync::atomic::AtomicU64,
    /// Whether the engine wrapped is its database's only writer ([`Engine::exclusive`]).
    exclusive: bool,
}

/// A call admitted into the core ([`GuardedEngine::admit`]): the database is not reopened while
/// it lives.
#[derive(Debug)]
#[must_use = "the admission lasts as long as this value"]
pub struct Admitted(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>);

impl GuardedEngine {
    /// Wraps `engine`; `reopen` opens the same database again after a failure (`None`: a failed
    /// database stays failed until a restart).
    pub fn new(storage: Arc<Storage>, engine: Arc<dyn Engine>, reopen: Option<Reopen>) -> Self {
        GuardedEngine {
            storage,
            name: engine.name(),
            reopens: std::sync::atomic::AtomicU64::new(0),
            exclusive: engine.exclusive(),
            shared: engine.shared(),
            current: RwLock::new(Some(engine)),
            reopen,
            failure: Mutex::new(None),
            gate: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// The disk guard ([`Storage::check_space`]).
    pub fn check_space(&self) -> Result<(), StateError> {
        self.storage.check_space()
    }

    /// Whether the database is failed (waiting for a reopen).
    pub fn is_failed(&self) -> bool {
        self.failed().is_some()
    }

    fn failed(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.reason.clone())
    }

    /// Admits one call into the core. If the database is failed and the disk has room, the call
    /// first waits (at most [`ADMIT_WAIT`]) for the calls inside the core to leave — failing fast,
    /// they leave at once — and reopens it; if it stays failed, `UNAVAILABLE` at once.
    pub async fn admit(&self) -> Result<Admitted, StateError> {
        if self.may_reopen()? {
            let exclusive = tokio::time::timeout(ADMIT_WAIT, self.gate.clone().write_owned())
                .await
                .map_err(|_| self.unavailable("it is reopened once the calls in progress end"))?;
            self.reopen_alone(exclusive)?;
        }
        Ok(Admitted(self.gate.clone().read_owned().await))
    }

    /// [`GuardedEngine::admit`] for synchronous callers: never waits (a busy core is
    /// `UNAVAILABLE`, and the next admitted call reopens).
    pub fn try_admit(&self) -> Result<Admitted, StateError> {
        if self.may_reopen()? {
            let exclusive =
                self.gate.clone().try_write_owned().map_err(|_| {
                    self.unavailable("it is reopened once the calls in progress end")
                })?;
            self.reopen_alone(exclusive)?;
        }
        self.gate
            .clone()
            .try_read_owned()
            .map(Admitted)
            .map_err(|_| StateError::Storage("the state database is being reopened".into()))
    }

    fn unavailable(&self, now: &str) -> StateError {
        let reason = self.failed().unwrap_or_default();
        StateError::Storage(format!("the state database failed ({reason}); {now}"))
    }

    /// `Ok(false)`: not failed. `Ok(true)`: failed, and a reopen may be tried now (the disk has
    /// room and no attempt failed just before at the same free space). `Err`: failed, and no
    /// reopen now.
    fn may_reopen(&self) -> Result<bool, StateError> {
        self.storage.check_wedged()?;
        if self.failed().is_none() {
            return Ok(false);
        }
        if self.reopen.is_none() {
            return Err(self.unavailable("restart the server once the disk is healthy"));
        }
        self.storage.check_space().map_err(|e| {
            self.unavailable(&format!("it is reopened once the disk has room ({e})"))
        })?;
        // A failed attempt is tried again once space grew, or after a pause: a full disk must
        // not turn every refused call into an open of the database.
        let free = self.storage.free();
        let last = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|f| f.last_attempt);
        if let Some((at, then)) = last {
            let grew = matches!((free, then), (Some(now), Some(then)) if now > then);
            if !grew && at.elapsed() < REOPEN_EVERY {
                return Err(self.unavailable("the last reopen failed; it is tried again shortly"));
            }
        }
        Ok(true)
    }

    /// Reopens the failed database, holding the gate exclusively: no other call is inside the
    /// core, so none waits between a commit of the failed instance and its flush.
    fn reopen_alone(
        &self,
        exclusive: tokio::sync::OwnedRwLockWriteGuard<()>,
    ) -> Result<(), StateError> {
        if self.failed().is_none() {
            return Ok(()); // reopened meanwhile
        }
        let Some(reopen) = &self.reopen else {
            return Err(self.unavailable("restart the server once the disk is healthy"));
        };
        let old = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(old) = old {
            // Only a flush thread of the failed instance can still hold it; it ends at once.
            let deadline = Instant::now() + RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if Arc::strong_count(&old) > 1 {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(old);
                return Err(self.unavailable("the failed instance is still in use"));
            }
        }
        let fresh = match reopen() {
            Ok(fresh) => fresh,
            Err(e) => {
                let free = self.storage.free();
                if let Some(f) = self
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    f.last_attempt = Some((Instant::now(), free));
                }
                return Err(self.unavailable(&format!("reopening it failed: {e}")));
            }
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        // Before anyone is let in: records kept in memory from the failed instance are dropped.
        self.reopens
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(exclusive);
        tracing::info!("the state database was reopened after a failure: serving resumes");
        Ok(())
    }

    /// The engine to use now, or why none can be.
    fn engine(&self) -> Result<Arc<dyn Engine>, StateError> {
        self.storage.check_wedged()?;
        if let Some(reason) = self.failed() {
            let now = if self.reopen.is_some() {
                "it is reopened once the disk has room and no call is in progress"
            } else {
                "restart the server once the disk is healthy"
            };
            return Err(StateError::Storage(format!(
                "the state database failed ({reason}); {now}"
            )));
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StateError::Storage("the state database is being reopened".into()))
    }

    /// Records that the engine itself failed (the first failure is logged).
    fn fail(&self, error: &StateError) {
        if self.shared {
            // Not latched (module docs): this call fails, the next one tries the database again.
            tracing::warn!(error = %error, "the state database failed this call (UNAVAILABLE)");
            return;
        }
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            tracing::error!(
                error = %error,
                "the state database failed: every call answers UNAVAILABLE until it is reopened \
                 (once the disk has room)"
            );
            *failure = Some(Failure {
                reason: error.to_string(),
                last_attempt: None,
            });
        }
    }
}

impl Engine for GuardedEngine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn transact_raw(
        &self,
        step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
    ) -> Result<(), StateError> {
        self.storage.check_space()?;
        let engine = self.engine()?;
        // What the step itself gave up with, to tell it from a failure of the engine.
        let mut gave_up: Option<StateError> = None;
        let result = engine.transact_raw(&mut |raw| {
            let outcome = step(raw);
            gave_up = match &outcome {
                Err(TxError::Abort(e)) => Some(e.clone()),
                _ => None,
            };
            outcome
        });
        if let Err(e) = &result {
            if gave_up.as_ref() != Some(e) {
                self.fail(e);
            }
        }
        result
    }

    fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.engine()?.get_raw(tree, key)
    }

    fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError> {
        self.engine()?.scan_raw(scan)
    }

    fn flush(&self) -> Result<(), StateError> {
        let engine = self.engine()?;
        let flushed = self.storage.flush(engine);
        if let Err(e) = &flushed {
            if !self.storage.is_wedged() {
                self.fail(e);
            }
        }
        flushed
    }

    fn count(&self, tree: Tree) -> Result<u64, StateError> {
        self.engine()?.count(tree)
    }

    /// A reopened instance is opened the same way: the wrapped engine's answer holds.
    fn exclusive(&self) -> bool {
        self.exclusive
    }

    fn incarnation(&self) -> u64 {
        self.reopens.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn scan_many_raw(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        self.engine()?.scan_many_raw(scans)
    }

    fn shared(&self) -> bool {
        self.shared
    }

    fn snapshot(&self) -> Result<Option<Arc<dyn Engine>>, StateError> {
        self.engine()?.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sled::SledEngine;

    fn guard(dir: &std::path::Path, min_free: u64) -> Arc<Storage> {
        Arc::new(Storage::new(
            dir.to_owned(),
            min_free,
            Duration::from_secs(30),
        ))
    }

    fn insert(engine: &dyn Engine, key: &[u8]) -> Result<(), StateError> {
        engine.transact_raw(&mut |raw| raw.insert(Tree::Meta, key, b"v".to_vec()).map(drop))
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_with_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let e = guard(dir.path(), u64::MAX)
            .check_space()
            .unwrap_err()
            .to_string();
        assert!(e.contains("state disk full"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains(&format!("reserve of {} bytes", u64::MAX)), "{e}");
        guard(dir.path(), 0).check_space().unwrap();
        guard(dir.path(), 1).check_space().unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_pass() {
        let dir = tempfile::tempdir().unwrap();
        let e = guard(&dir.path().join("absent"), 1)
            .check_space()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the free space"), "{e}");
    }

    #[test]
    fn the_guard_refuses_transactions_and_a_refusal_is_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let engine = GuardedEngine::new(
            guard(dir.path(), u64::MAX),
            Arc::new(SledEngine::temporary().unwrap()),
            None,
        );
        let e = insert(&engine, b"k").unwrap_err().to_string();
        assert!(e.contains("state disk full"), "{e}");
        assert!(!engine.is_failed());
        // A step that gives up is not a failure of the engine either.
        let engine = GuardedEngine::new(
            guard(dir.path(), 0),
            Arc::new(SledEngine::temporary().unwrap()),
            None,
        );
        let refused =
            engine.transact_raw(&mut |_| Err(TxError::Abort(StateError::Corrupt("no".into()))));
        assert_eq!(refused, Err(StateError::Corrupt("no".into())));
        assert!(!engine.is_failed());
        insert(&engine, b"k").unwrap();
        engine.flush().unwrap();
    }

    /// An engine that fails every write until told otherwise.
    struct Flaky {
        inner: SledEngine,
        broken: Arc<AtomicBool>,
    }

    impl Engine for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn transact_raw(
            &self,
            step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
        ) -> Result<(), StateError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StateError::Storage("No space left on device".into()));
            }
            self.inner.transact_raw(step)
        }
        fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get_raw(tree, key)
        }
        fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError> {
            self.inner.scan_raw(scan)
        }
        fn flush(&self) -> Result<(), StateError> {
            self.inner.flush()
        }
        fn count(&self, tree: Tree) -> Result<u64, StateError> {
            self.inner.count(tree)
        }
    }

    #[test]
    fn a_failed_engine_answers_nothing_until_reopened_then_serves_the_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let broken = Arc::new(AtomicBool::new(true));
        let reopened = Arc::new(AtomicBool::new(false));
        let reopen: Reopen = {
            let reopened = reopened.clone();
            Box::new(move || {
                reopened.store(true, Ordering::SeqCst);
                Ok(Arc::new(SledEngine::temporary()?) as Arc<dyn Engine>)
            })
        };
        let engine = GuardedEngine::new(
            guard(dir.path(), 0),
            Arc::new(Flaky {
                inner: SledEngine::temporary().unwrap(),
                broken: broken.clone(),
            }),
            Some(reopen),
        );
        let e = insert(&engine, b"k").unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        assert!(engine.is_failed());
        // Failed: everything answers at once, reads too, until a call is admitted.
        let e = engine.get_raw(Tree::Meta, b"k").unwrap_err().to_string();
        assert!(e.contains("No space left"), "{e}");
        // Not while another call is inside the core.
        let held = engine.gate.clone().try_read_owned().unwrap();
        let busy = engine.try_admit().unwrap_err().to_string();
        assert!(busy.contains("calls in progress"), "{busy}");
        assert!(!reopened.load(Ordering::SeqCst));
        drop(held);
        // Quiet, and the disk has room (no reserve here): the admitted call reopens.
        let admitted = engine.try_admit().unwrap();
        assert!(reopened.load(Ordering::SeqCst));
        assert!(!engine.is_failed());
        insert(&engine, b"k").unwrap();
        assert_eq!(
            engine.get_raw(Tree::Meta, b"k").unwrap(),
            Some(b"v".to_vec())
        );
        drop(admitted);
    }

    #[test]
    fn without_a_reopen_a_failed_engine_refuses_reads_too() {
        let dir = tempfile::tempdir().unwrap();
        let engine = GuardedEngine::new(
            guard(dir.path(), 0),
            Arc::new(Flaky {
                inner: SledEngine::temporary().unwrap(),
                broken: Arc::new(AtomicBool::new(true)),
            }),
            None,
        );
        insert(&engine, b"k").unwrap_err();
        let e = engine.get_raw(Tree::Meta, b"k").unwrap_err().to_string();
        assert!(e.contains("restart the server"), "{e}");
    }

    #[test]
    fn flushes_pass_until_wedged_then_everything_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = guard(dir.path(), 1);
        let engine = GuardedEngine::new(
            storage.clone(),
            Arc::new(SledEngine::temporary().unwrap()),
            None,
        );
        insert(&engine, b"k").unwrap();
        engine.flush().unwrap();
        // As a timed-out flush leaves it:
        let why = storage.wedge().to_string();
        assert!(why.contains("restart the server"), "{why}");
        assert_eq!(engine.flush().unwrap_err().to_string(), why);
        assert_eq!(insert(&engine, b"j").unwrap_err().to_string(), why);
        assert_eq!(
            engine.get_raw(Tree::Meta, b"k").unwrap_err().to_string(),
            why
        );
    }
}
