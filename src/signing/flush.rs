//! Group commit: one `fsync` for every transaction committed meanwhile.
//!
//! A step commits its transaction, then calls [`GroupCommit::flush`] and waits; only then does its
//! answer (or signature) leave. Every transaction that wrote has a commit number
//! ([`State::committed`], counted after the engine committed it); `flush` wants the number it
//! reads when it is called made durable. One dedicated thread (the flusher) does the flushing:
//! woken by a caller, it reads the newest commit number, runs the engine's flush once, and
//! publishes that everything up to that number is durable on a `watch` channel, which wakes
//! every waiting caller at once. Under load this is one flush per batch of concurrent requests,
//! with no hand-off chain between them; a lone request pays exactly one flush; a caller whose
//! commits are already durable (nothing committed since the last flush) returns at once.
//!
//! A failed flush answers every caller whose commits it covered with the error at once (the
//! signing core maps it to UNAVAILABLE); the flusher tries again only when asked again, so a dead
//! disk is not hammered, and a commit number is never marked durable by a flush that failed.
//! Debug builds can hold flushes ([`GroupCommit::hold`]) to test what is visible between a
//! commit and its flush.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::state::{State, StateError};

/// What the flusher has done so far.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every commit numbered up to this is durable.
    durable: u64,
    /// Flush attempts finished (successful or not).
    attempts: u64,
    /// The last failed attempt: its number, the commit number it covered, the error.
    failure: Option<(u64, u64, StateError)>,
}

/// Requests to the flusher thread.
#[derive(Default)]
struct Requests {
    /// Incremented by every caller that needs a flush.
    asked: u64,
    /// Set when the group commit is dropped.
    stop: bool,
}

struct Inner {
    state: Arc<State>,
    requests: Mutex<Requests>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    flushes: AtomicU64,
    stopping: AtomicBool,
    /// Debug builds only: `Some(n)`: n more flushes may run, then they wait (tests hold a
    /// committed transaction between its commit and its flush); `None`: no hold.
    held: Mutex<Option<u64>>,
    released: Condvar,
}

/// The group-commit flusher of one database (see the module docs).
pub struct GroupCommit {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// A flusher for `state`'s database (starts its thread).
    pub fn new(state: Arc<State>) -> Self {
        let inner = Arc::new(Inner {
            state,
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            progress: watch::channel(Progress::default()).0,
            flushes: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            held: Mutex::new(None),
            released: Condvar::new(),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("custos-flusher".into())
            .spawn(move || worker.run())
            .expect("the operating system starts the flusher thread");
        GroupCommit {
            inner,
            thread: Some(thread),
        }
    }

    /// Test-only fault injection (debug builds): `Some(n)` lets `n` more asynchronous flushes
    /// run, then holds the following ones (what they would make durable stays not durable) until
    /// `None` releases them.
    #[cfg(debug_assertions)]
    pub fn hold(&self, after: Option<u64>) {
        *self.inner.held.lock().expect("hold lock poisoned") = after;
        self.inner.released.notify_all();
    }

    /// Makes everything committed before this call durable.
    pub async fn flush(&self) -> Result<(), StateError> {
        let target = self.inner.state.committed();
        let mut progress = self.inner.progress.subscribe();
        let seen = {
            let now = progress.borrow_and_update();
            if now.durable >= target {
                return Ok(());
            }
            now.attempts
        };
        {
            let mut requests = self.inner.requests.lock().expect("flush lock poisoned");
            requests.asked += 1;
        }
        self.inner.wake.notify_one();
        loop {
            progress
                .changed()
                .await
                .map_err(|_| StateError::Storage("the group commit stopped".into()))?;
            let now = progress.borrow_and_update();
            if now.durable >= target {
                return Ok(());
            }
            if let Some((attempt, covered, error)) = &now.failure {
                if *attempt > seen && *covered >= target {
                    return Err(error.clone());
                }
            }
        }
    }

    /// The same, for synchronous callers (unseal at start, the expiry sweep): flushes directly
    /// on the calling thread.
    pub fn flush_blocking(&self) -> Result<(), StateError> {
        let target = self.inner.state.committed();
        self.inner.state.flush()?;
        self.inner.flushes.fetch_add(1, Ordering::Relaxed);
        self.inner.progress.send_if_modified(|p| {
            let moved = target > p.durable;
            p.durable = p.durable.max(target);
            moved
        });
        Ok(())
    }

    /// How many flushes ran (tests check that concurrent requests share them).
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        {
            // Set under each lock its waiter checks, so no wake-up is lost.
            let _held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.stopping.store(true, Ordering::SeqCst);
        }
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.inner.wake.notify_all();
        self.inner.released.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread holds the state: joining it lets the database close with the core.
            let _ = thread.join();
        }
    }
}

impl Inner {
    /// The flusher thread: waits to be asked, flushes once for everything committed so far,
    /// publishes the result.
    fn run(&self) {
        let mut served = 0u64;
        loop {
            {
                let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
                while requests.asked == served && !requests.stop {
                    requests = self.wake.wait(requests).unwrap_or_else(|e| e.into_inner());
                }
                if requests.stop {
                    return;
                }
                served = requests.asked;
            }
            if !self.pass_hold() {
                return;
            }
            let target = self.state.committed();
            if target <= self.progress.borrow().durable {
                // Already durable (a direct flush ran meanwhile): wake whoever waits.
                self.progress.send_modify(|_| {});
                continue;
            }
            let result = self.state.flush();
            if result.is_ok() {
                self.flushes.fetch_add(1, Ordering::Relaxed);
            }
            self.progress.send_modify(|p| {
                p.attempts += 1;
                match result {
                    Ok(()) => p.durable = p.durable.max(target),
                    Err(e) => p.failure = Some((p.attempts, target, e)),
                }
            });
        }
    }

    /// Debug builds: waits while flushes are held; `false` if the group commit stops meanwhile.
    fn pass_hold(&self) -> bool {
        if !cfg!(debug_assertions) {
            return true;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            match *held {
                None => return true,
                Some(n) if n > 0 => {
                    *held = Some(n - 1);
                    return true;
                }
                Some(_) => held = self.released.wait(held).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}
