//! [`State`]: the state database as the signing core uses it — an [`Engine`] whose every record is
//! authenticated ([`super::auth`]) — and [`StateTx`], one authenticated transaction.
//!
//! Records can only be read and written while the state is unsealed ([`State::set_auth`] with the
//! key derived from the sealed store); sealed, every step answers [`StateError::Sealed`]. Inside a
//! transaction, [`StateTx::get`] returns a record's body only if its MAC verifies (a failure aborts
//! the step with [`StateError::Tampered`]); [`StateTx::put`] and [`StateTx::remove`] keep the
//! digest of all records in step, written once at the end of the transaction.

use std::cell::Cell;
use std::sync::{Arc, RwLock};

use super::auth::{term, Digest, StateAuth};
use super::engine::{abort, Engine, Entries, RawTx, Scan, TxError, TxResult};
use super::tree::Tree;
use super::StateError;

/// The `meta` key of the digest of every record (authenticated, outside the sum).
pub const DIGEST_KEY: &[u8] = b"digest";

/// Told about every record a lenient scan skipped because it failed authentication.
pub type TamperObserver = Arc<dyn Fn(&StateError) + Send + Sync>;

/// The state database: an engine and, while unsealed, the key that authenticates its records.
pub struct State {
    engine: Arc<dyn Engine>,
    auth: RwLock<Option<Arc<StateAuth>>>,
    observer: RwLock<Option<TamperObserver>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("engine", &self.engine.name())
            .field("unsealed", &self.is_unsealed())
            .finish()
    }
}

impl State {
    /// A sealed state over `engine`.
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        State {
            engine,
            auth: RwLock::new(None),
            observer: RwLock::new(None),
        }
    }

    /// Sets who is told about records a lenient scan skipped (the signing core logs, counts and
    /// audits them).
    pub fn set_tamper_observer(&self, observer: TamperObserver) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    fn report(&self, error: &StateError) {
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match observer {
            Some(observe) => observe(error),
            None => tracing::error!(%error, "state record fails authentication; skipped"),
        }
    }

    /// The same records read at one consistent point in time (see [`Engine::snapshot`]), under
    /// the same key; this state itself when the engine reads consistently anyway. Writes through
    /// a snapshot fail.
    pub fn snapshot(&self) -> Result<State, StateError> {
        let engine = match self.engine.snapshot()? {
            Some(engine) => engine,
            None => self.engine.clone(),
        };
        Ok(State {
            engine,
            auth: RwLock::new(self.auth.read().unwrap_or_else(|e| e.into_inner()).clone()),
            observer: RwLock::new(
                self.observer
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
        })
    }

    /// The engine (raw access, for verification and tools).
    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// Unseals (`Some`) or seals (`None`) the records.
    pub fn set_auth(&self, auth: Option<StateAuth>) {
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = auth.map(Arc::new);
    }

    /// Whether records can be read and written.
    pub fn is_unsealed(&self) -> bool {
        self.auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The record key, or `Sealed`.
    pub fn auth(&self) -> Result<Arc<StateAuth>, StateError> {
        self.auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StateError::Sealed)
    }

    /// Runs `step` as one atomic, authenticated transaction (see [`Engine::transact_raw`]: it may
    /// run more than once).
    pub fn transact<R>(
        &self,
        mut step: impl FnMut(&StateTx<'_>) -> TxResult<R>,
    ) -> Result<R, StateError> {
        let auth = self.auth()?;
        let mut out = None;
        self.engine.transact_raw(&mut |raw| {
            let tx = StateTx {
                raw,
                auth: &auth,
                delta: Cell::new(Digest::default()),
                wrote: Cell::new(false),
            };
            let result = step(&tx)?;
            tx.finish()?;
            out = Some(result);
            Ok(())
        })?;
        out.ok_or_else(|| StateError::Storage("transaction ended without a result".into()))
    }

    /// One record's body, authenticated.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let auth = self.auth()?;
        match self.engine.get_raw(tree, key)? {
            None => Ok(None),
            Some(value) if tree == Tree::Audit => Ok(Some(value)),
            Some(value) => auth.open(tree, key, &value).map(|b| Some(b.to_vec())),
        }
    }

    /// A range of records, each authenticated (the first that fails ends the read with its error).
    /// The audit tree's values are returned as stored (the chain authenticates them).
    pub fn scan(&self, scan: &Scan) -> Result<Entries, StateError> {
        let auth = self.auth()?;
        let mut out = self.engine.scan_raw(scan)?;
        if scan.tree != Tree::Audit {
            for (key, value) in &mut out {
                let body = auth.open(scan.tree, key, value)?.to_vec();
                *value = body;
            }
        }
        Ok(out)
    }

    /// Several ranges at once ([`Engine::scan_many_raw`]), each record authenticated (the first
    /// that fails ends the read with its error).
    pub fn scan_many(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        let auth = self.auth()?;
        let mut out = self.engine.scan_many_raw(scans)?;
        for (scan, entries) in scans.iter().zip(out.iter_mut()) {
            if scan.tree == Tree::Audit {
                continue;
            }
            for (key, value) in entries.iter_mut() {
                let body = auth.open(scan.tree, key, value)?.to_vec();
                *value = body;
            }
        }
        Ok(out)
    }

    /// A range of records, each authenticated; a record that fails is skipped and reported to the
    /// tamper observer (for listings and sweeps, where one bad record must not stop the others;
    /// never for sums that caps are checked against).
    pub fn scan_lenient(&self, scan: &Scan) -> Result<Entries, StateError> {
        let auth = self.auth()?;
        let raw = self.engine.scan_raw(scan)?;
        if scan.tree == Tree::Audit {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            match auth.open(scan.tree, &key, &value) {
                Ok(body) => {
                    let body = body.to_vec();
                    out.push((key, body));
                }
                Err(error) => self.report(&error),
            }
        }
        Ok(out)
    }

    /// The body of a raw stored value, if it authenticates; else `None`, reported to the observer.
    pub fn open_lenient(
        &self,
        tree: Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let auth = self.auth()?;
        match auth.open(tree, key, value) {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(error) => {
                self.report(&error);
                Ok(None)
            }
        }
    }

    /// One record's body, authenticated; a record that fails reads as absent and is reported
    /// (for indexes followed by listings).
    pub fn get_lenient(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.get(tree, key) {
            Err(error @ StateError::Tampered { .. }) => {
                self.report(&error);
                Ok(None)
            }
            other => other,
        }
    }

    /// Makes every committed transaction durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.engine.flush()
    }

    /// Number of entries of a tree (no authentication: a count).
    pub fn count(&self, tree: Tree) -> Result<u64, StateError> {
        self.engine.count(tree)
    }
}

/// One authenticated transaction (see the module doc).
pub struct StateTx<'a> {
    raw: &'a dyn RawTx,
    auth: &'a StateAuth,
    delta: Cell<Digest>,
    wrote: Cell<bool>,
}

impl StateTx<'_> {
    fn account(&self, tree: Tree, old: Option<&[u8]>, new: Option<&[u8]>) {
        let mut d = self.delta.get();
        d.replace(tree, old, new);
        self.delta.set(d);
        self.wrote.set(true);
    }

    /// One record's body, if it authenticates (else the step aborts with `Tampered`).
    pub fn get(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        debug_assert!(
            tree != Tree::Audit,
            "the audit chain is read with get_chained"
        );
        match self.raw.get(tree, key)? {
            None => Ok(None),
            Some(value) => self
                .auth
                .open(tree, key, &value)
                .map(|b| Some(b.to_vec()))
                .map_err(abort),
        }
    }

    /// Stores `body` under `key`, authenticated.
    pub fn put(&self, tree: Tree, key: &[u8], body: &[u8]) -> TxResult<()> {
        debug_assert!(
            tree != Tree::Audit,
            "the audit chain is written with put_chained"
        );
        let value = self.auth.seal(tree, key, body);
        let old = self.raw.insert(tree, key, value.clone())?;
        self.account(tree, old.as_deref(), Some(&value));
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, tree: Tree, key: &[u8]) -> TxResult<bool> {
        let old = self.raw.remove(tree, key)?;
        let existed = old.is_some();
        if existed {
            self.account(tree, old.as_deref(), None);
        }
        Ok(existed)
    }

    /// A value of a tree that authenticates itself (the audit chain), as stored.
    pub fn get_chained(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.raw.get(tree, key)
    }

    /// Stores a value that authenticates itself (the audit chain), counted in the digest.
    pub fn put_chained(&self, tree: Tree, key: &[u8], value: Vec<u8>) -> TxResult<()> {
        let new = value.clone();
        let old = self.raw.insert(tree, key, value)?;
        self.account(tree, old.as_deref(), Some(&new));
        Ok(())
    }

    /// Passes a read-ahead hint to the engine.
    pub fn prefetch(&self, keys: &[(Tree, Vec<u8>)]) -> TxResult<()> {
        self.raw.prefetch(keys)
    }

    /// Writes the digest, moved by what this transaction wrote.
    fn finish(&self) -> TxResult<()> {
        if !self.wrote.get() {
            return Ok(());
        }
        let current = read_digest(self.raw, self.auth)?;
        let next = Digest(current.0.wrapping_add(self.delta.get().0));
        self.raw.insert(
            Tree::Meta,
            DIGEST_KEY,
            self.auth.seal(Tree::Meta, DIGEST_KEY, &next.to_bytes()),
        )?;
        Ok(())
    }
}

fn read_digest(raw: &dyn RawTx, auth: &StateAuth) -> TxResult<Digest> {
    match raw.get(Tree::Meta, DIGEST_KEY)? {
        None => Ok(Digest::default()),
        Some(value) => {
            let body = auth.open(Tree::Meta, DIGEST_KEY, &value).map_err(abort)?;
            let bytes: [u8; 32] = body.try_into().map_err(|_| {
                abort(StateError::Tampered {
                    tree: "meta",
                    key: "digest".into(),
                    reason: "not 32 bytes".into(),
                })
            })?;
            Ok(Digest::from_bytes(&bytes))
        }
    }
}

/// The digest recorded in the database (authenticated).
pub fn recorded_digest(state: &State) -> Result<Digest, StateError> {
    match state.get(Tree::Meta, DIGEST_KEY)? {
        None => Ok(Digest::default()),
        Some(body) => {
            let bytes: [u8; 32] = body
                .as_slice()
                .try_into()
                .map_err(|_| StateError::Tampered {
                    tree: "meta",
                    key: "digest".into(),
                    reason: "not 32 bytes".into(),
                })?;
            Ok(Digest::from_bytes(&bytes))
        }
    }
}

/// The digest recomputed over every stored value (a full scan; `custos state verify`).
pub fn computed_digest(state: &State) -> Result<Digest, StateError> {
    const PAGE: usize = 4096;
    let mut digest = Digest::default();
    for tree in Tree::ALL {
        let mut scan = Scan::all(tree, PAGE);
        loop {
            let page = state.engine().scan_raw(&scan)?;
            for (key, value) in &page {
                if tree == Tree::Meta && key.as_slice() == DIGEST_KEY {
                    continue;
                }
                digest.0 = digest.0.wrapping_add(term(tree, value));
            }
            match page.last() {
                Some((key, _)) if page.len() == PAGE => scan = Scan::after(tree, key, PAGE),
                _ => break,
            }
        }
    }
    Ok(digest)
}

impl From<TxError> for StateError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Abort(e) => e,
            TxError::Conflict => StateError::Storage("transaction conflict".into()),
        }
    }
}
