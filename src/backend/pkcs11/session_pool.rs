//! A bounded pool of logged-in sessions on one token.
//!
//! A PKCS#11 session runs one operation at a time, so concurrent signatures need several; opening
//! one per request would cost a round trip to the HSM each time. The pool holds at most
//! `capacity` sessions (the `[hsm] sessions` setting), hands one out per operation ([`Lease`]) and
//! takes it back when the lease drops. A caller that finds every session busy waits, at most
//! [`SessionPool::wait`], then gets [`Acquire::Busy`] — never an unbounded wait.
//!
//! Sessions belong to a module *generation* ([`super::module`]): after a re-initialisation the old
//! ones are dead, so a session of another generation is dropped without being closed (its handle
//! means nothing any more, or already names a new session), and a lease whose operation hit a
//! token fault is discarded rather than returned.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::error::Pkcs11Error;

/// A session with the generation and slot it was opened in.
pub(crate) struct Pooled {
    pub(crate) session: Session,
    pub(crate) generation: u64,
    pub(crate) slot: Slot,
}

/// The pool.
pub(crate) struct SessionPool {
    capacity: usize,
    wait: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Pooled>,
    /// Sessions alive: idle plus leased.
    open: usize,
}

/// Why no session could be had.
pub(crate) enum Acquire {
    /// Every session stayed busy for the whole wait.
    Busy(Duration),
    /// Opening a new session failed.
    Open(Pkcs11Error),
}

impl SessionPool {
    /// A pool of at most `capacity` sessions (at least one); callers wait at most `wait`.
    pub(crate) fn new(capacity: usize, wait: Duration) -> Self {
        SessionPool {
            capacity: capacity.max(1),
            wait,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    /// The most sessions the pool opens.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sessions open now (idle and leased).
    pub(crate) fn open_count(&self) -> usize {
        self.state.lock().expect("session pool lock poisoned").open
    }

    /// A session of `generation` on `slot`: an idle one, a new one from `open` while below
    /// capacity, or the next one freed.
    pub(crate) fn acquire(
        &self,
        generation: u64,
        slot: Slot,
        open: impl FnOnce() -> Result<Session, Pkcs11Error>,
    ) -> Result<Lease<'_>, Acquire> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.state.lock().expect("session pool lock poisoned");
        loop {
            // Sessions of an older generation (or another slot) are dead: forget them.
            let before = state.idle.len();
            state
                .idle
                .retain(|p| p.generation == generation && p.slot == slot);
            state.open -= before - state.idle.len();
            if let Some(pooled) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    pooled: Some(pooled),
                });
            }
            if state.open < self.capacity {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(session) => Ok(Lease {
                        pool: self,
                        pooled: Some(Pooled {
                            session,
                            generation,
                            slot,
                        }),
                    }),
                    Err(e) => {
                        self.release_slot();
                        Err(Acquire::Open(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Acquire::Busy(self.wait));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .expect("session pool lock poisoned")
                .0;
        }
    }

    /// Adds a session opened elsewhere (the one a connection logged in with). It may take the
    /// pool one above capacity until a stale session is dropped.
    pub(crate) fn put(&self, pooled: Pooled) {
        let mut state = self.state.lock().expect("session pool lock poisoned");
        state.open += 1;
        state.idle.push(pooled);
        drop(state);
        self.freed.notify_one();
    }

    /// Takes the idle sessions of `generation` out of the pool (to be closed by the caller while
    /// it knows that generation is current); sessions of other generations are forgotten.
    pub(crate) fn drain(&self, generation: u64) -> Vec<Session> {
        let mut state = self.state.lock().expect("session pool lock poisoned");
        let idle = std::mem::take(&mut state.idle);
        state.open -= idle.len();
        idle.into_iter()
            .filter(|p| p.generation == generation)
            .map(|p| p.session)
            .collect()
    }

    fn release_slot(&self) {
        let mut state = self.state.lock().expect("session pool lock poisoned");
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.freed.notify_one();
    }
}

/// One session, lent for one operation; returned to the pool when dropped.
pub(crate) struct Lease<'a> {
    pool: &'a SessionPool,
    pooled: Option<Pooled>,
}

impl Lease<'_> {
    /// The session.
    pub(crate) fn session(&self) -> &Session {
        &self
            .pooled
            .as_ref()
            .expect("a lease holds its session")
            .session
    }

    /// The generation the session belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.pooled
            .as_ref()
            .expect("a lease holds its session")
            .generation
    }

    /// Drops the session instead of returning it. It is forgotten, not closed: its handle may
    /// already belong to a newer generation's session, which closing would kill; a token fault is
    /// followed by a re-initialisation, which closes everything.
    pub(crate) fn discard(mut self) {
        if self.pooled.take().is_some() {
            self.pool.release_slot();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            let mut state = self.pool.state.lock().expect("session pool lock poisoned");
            state.idle.push(pooled);
            drop(state);
            self.pool.freed.notify_one();
        }
    }
}
