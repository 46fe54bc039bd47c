//! Opening the embedded sled databases (the key store, the state store), with the one piece of
//! care sled's own `open` lacks: waiting for the previous instance of the same database in this
//! process to let go of its file lock.
//!
//! sled takes an exclusive `flock` on `<dir>/db` at open and releases it when the last reference
//! to its file is dropped. Dropping the last `Db` handle is not that moment: sled's I/O thread pool
//! still holds the file while it finishes writing a buffer it already reported stable, for a few
//! microseconds on an idle machine and much longer on a busy one. An open of the same directory in
//! that window failed with "could not acquire lock" (a restart test, a CLI command run after the
//! server in-process, a property test that reopens its files).
//!
//! So a *reopen* — a directory this process has opened before — waits for the lock, bounded by
//! [`REOPEN_LOCK_WAIT`], before handing over to sled. Waiting for the lock is also the correct
//! synchronisation point: once it is free, no thread of the old instance can still write the file.
//! A directory this process has never opened is not waited for: a lock held there belongs to
//! another process (a running server), and the caller reports it at once.

use std::collections::HashSet;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest a reopen waits for the previous instance's lock before sled reports it held.
pub const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How often the lock is tried while waiting.
const POLL: Duration = Duration::from_millis(2);

fn opened() -> &'static Mutex<HashSet<PathBuf>> {
    static OPENED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPENED.get_or_init(Default::default)
}

fn identity(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
}

/// Opens the database at `dir` with `config` (whose path must be `dir`): waits first for the lock
/// when this process has opened `dir` before (see the module doc).
pub fn open(dir: &Path, config: sled::Config) -> sled::Result<sled::Db> {
    let id = identity(dir);
    let reopen = opened()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id);
    if reopen {
        wait_for_lock(&dir.join("db"), REOPEN_LOCK_WAIT);
    }
    let db = config.open()?;
    opened()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(identity(dir));
    Ok(db)
}

/// Waits, bounded by [`REOPEN_LOCK_WAIT`], until the database at `dir` is no longer locked: for a
/// caller that has dropped its last handle and hands the directory to another process next (a
/// command run right after), which would not wait (see the module doc).
pub fn wait_released(dir: &Path) {
    wait_for_lock(&dir.join("db"), REOPEN_LOCK_WAIT);
}

/// Waits until the file's exclusive lock can be taken (then lets it go at once), for at most
/// `limit`. Gives up silently: sled's own open then reports the lock as held.
fn wait_for_lock(file: &Path, limit: Duration) {
    let Ok(handle) = File::open(file) else {
        return;
    };
    let deadline = Instant::now() + limit;
    loop {
        match handle.try_lock() {
            Ok(()) => {
                let _ = handle.unlock();
                return;
            }
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(POLL),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_only_within_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        std::fs::write(&path, b"").unwrap();
        let holder = File::open(&path).unwrap();
        holder.lock().unwrap();
        // Held: the wait gives up after its bound (a short one here) instead of hanging.
        wait_for_lock(&path, Duration::from_millis(20));
        assert!(matches!(
            File::open(&path).unwrap().try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        // Released from another thread while waiting: the wait returns and the lock is free.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(holder);
        });
        wait_for_lock(&path, REOPEN_LOCK_WAIT);
        File::open(&path).unwrap().try_lock().unwrap();
        releaser.join().unwrap();
    }
}
