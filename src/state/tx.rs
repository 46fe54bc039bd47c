//! [`State`]: the state database as the signing core uses it — an [`Engine`] whose every record is
//! authenticated ([`super::auth`]) — and [`StateTx`], one authenticated transaction.
//!
//! Records can only be read and written while the state is unsealed ([`State::set_auth`] with the
//! key derived from the sealed store); sealed, every step answers [`StateError::Sealed`]. Inside a
//! transaction, [`StateTx::get`] returns a record's body only if its MAC verifies (a failure aborts
//! the step with [`StateError::Tampered`]); [`StateTx::put`] and [`StateTx::remove`] keep the
//! digest of all records in step, written once at the end of the transaction.
//!
//! Where the engine says this process is its only writer ([`Engine::exclusive`]), the bodies of
//! the hot trees are verified once and kept ([`super::cache`]); transactions then run one at a
//! time, and each commit updates the cache before the next begins.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::auth::{term, Digest, StateAuth};
use super::cache::{self, VerifiedCache};
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
    /// Transactions committed that wrote something (the group commit's numbering).
    committed: AtomicU64,
    /// Verified bodies, when this process is the engine's only writer.
    cache: Option<VerifiedCache>,
    /// Held around each transaction while the cache is on (commits update it in order).
    serial: Mutex<()>,
}

/// Writes of a transaction to cached trees, applied to the cache once it commits.
type Overlay = HashMap<(Tree, Vec<u8>), Option<Vec<u8>>>;

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
        let cache = engine.exclusive().then(VerifiedCache::default);
        State {
            engine,
            auth: RwLock::new(None),
            observer: RwLock::new(None),
            committed: AtomicU64::new(0),
            cache,
            serial: Mutex::new(()),
        }
    }

    /// How many transactions that wrote have committed so far (in this process).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Whether verified bodies are kept in memory (see [`super::cache`]).
    pub fn caches_verified_records(&self) -> bool {
        self.cache.is_some()
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
            committed: AtomicU64::new(0),
            // A full check reads the engine itself, never what this process kept.
            cache: None,
            serial: Mutex::new(()),
        })
    }

    /// The engine (raw access, for verification and tools).
    pub fn engine(&self) -> &dyn Engine {
        &*self.engine
    }

    /// Unseals (`Some`) or seals (`None`) the records.
    pub fn set_auth(&self, auth: Option<StateAuth>) {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = auth.map(Arc::new);
        // What was verified under one key says nothing under another.
        if let Some(cache) = &self.cache {
            cache.clear();
        }
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
        let _serial = self
            .cache
            .as_ref()
            .map(|_| self.serial.lock().unwrap_or_else(|e| e.into_inner()));
        let auth = self.auth()?;
        if let Some(cache) = &self.cache {
            cache.follow(self.engine.incarnation());
        }
        let mut out = None;
        let mut wrote = false;
        let mut overlay = Overlay::new();
        let result = self.engine.transact_raw(&mut |raw| {
            let tx = StateTx {
                raw,
                auth: &auth,
                delta: Cell::new(Digest::default()),
                wrote: Cell::new(false),
                cache: self.cache.as_ref(),
                overlay: RefCell::new(Overlay::new()),
            };
            let result = step(&tx)?;
            tx.finish()?;
            wrote = tx.wrote.get();
            overlay = tx.overlay.take();
            out = Some(result);
            Ok(())
        });
        match (&result, &self.cache) {
            (Ok(()), Some(cache)) => cache.commit(overlay),
            // The step finished but the commit failed: it may have been applied in part.
            (Err(_), Some(cache)) if out.is_some() => cache.clear(),
            _ => {}
        }
        result?;
        if wrote {
            self.committed.fetch_add(1, Ordering::SeqCst);
        }
        out.ok_or_else(|| StateError::Storage("transaction ended without a result".into()))
    }

    /// One record's body, authenticated.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let auth = self.auth()?;
        if let Some(cache) = self.cache_now().filter(|_| cache::cached(tree)) {
            if let Some(body) = cache.get(tree, key, |b| b.map(<[u8]>::to_vec)) {
                return Ok(body);
            }
            let generation = cache.generation();
            let body = match self.engine.get_raw(tree, key)? {
                None => None,
                Some(value) => Some(auth.open(tree, key, &value)?.to_vec()),
            };
            cache.keep_if_current(generation, tree, key, body.as_deref());
            return Ok(body);
        }
        match self.engine.get_raw(tree, key)? {
            None => Ok(None),
            Some(value) if tree == Tree::Audit => Ok(Some(value)),
            Some(value) => auth.open(tree, key, &value).map(|b| Some(b.to_vec())),
        }
    }

    /// Visits the verified bodies of `count` keys of a cached tree (`None`: absent), in order,
    /// from the cache where it has them; `false` (nothing visited) when the cache is off or
    /// `tree` is not cached. `key_of(i, buf)` writes the `i`th key into the empty `buf`: the keys
    /// are made one at a time in one buffer, not allocated each (policy evaluation reads about
    /// fifty per request). Outside a transaction: the bodies are each current at some moment of
    /// the call.
    pub fn visit_cached(
        &self,
        tree: Tree,
        count: usize,
        mut key_of: impl FnMut(usize, &mut Vec<u8>),
        mut visit: impl FnMut(Option<&[u8]>) -> Result<(), StateError>,
    ) -> Result<bool, StateError> {
        let Some(cache) = self.cache_now().filter(|_| cache::cached(tree)) else {
            return Ok(false);
        };
        let auth = self.auth()?;
        let mut key = Vec::with_capacity(64);
        let mut misses = Vec::new();
        let generation = {
            let locked = cache.locked();
            for i in 0..count {
                key.clear();
                key_of(i, &mut key);
                match locked.get(tree, &key) {
                    Some(body) => visit(body)?,
                    None => misses.push(i),
                }
            }
            locked.generation()
        };
        for i in misses {
            key.clear();
            key_of(i, &mut key);
            let body = match self.engine.get_raw(tree, &key)? {
                None => None,
                Some(value) => Some(auth.open(tree, &key, &value)?.to_vec()),
            };
            cache.keep_if_current(generation, tree, &key, body.as_deref());
            visit(body.as_deref())?;
        }
        Ok(true)
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
        let flushed = self.engine.flush();
        if flushed.is_err() {
            // What was committed but not flushed may be lost (a reopen): forget it.
            if let Some(cache) = &self.cache {
                cache.clear();
            }
        }
        flushed
    }

    /// The cache, following the engine's instance (see [`super::cache`]).
    fn cache_now(&self) -> Option<&VerifiedCache> {
        let cache = self.cache.as_ref()?;
        cache.follow(self.engine.incarnation());
        Some(cache)
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
    cache: Option<&'a VerifiedCache>,
    overlay: RefCell<Overlay>,
}

impl StateTx<'_> {
    fn account(&self, tree: Tree, old: Option<&[u8]>, new: Option<&[u8]>) {
        let mut d = self.delta.get();
        d.replace(tree, old, new);
        self.delta.set(d);
        self.wrote.set(true);
    }

    /// [`StateTx::account`] of a write whose new value's term is known.
    fn account_term(&self, tree: Tree, old: Option<&[u8]>, new: ruint::aliases::U256) {
        let mut d = self.delta.get();
        d.replace(tree, old, None);
        d.0 = d.0.wrapping_add(new);
        self.delta.set(d);
        self.wrote.set(true);
    }

    fn cache_for(&self, tree: Tree) -> Option<&VerifiedCache> {
        self.cache.filter(|_| cache::cached(tree))
    }

    /// One record's body, if it authenticates (else the step aborts with `Tampered`).
    pub fn get(&self, tree: Tree, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.get_map(tree, key, <[u8]>::to_vec)
    }

    /// `f` of one record's body, if it authenticates (else the step aborts with `Tampered`):
    /// [`StateTx::get`] without copying the body where the cache holds it.
    pub fn get_map<T>(
        &self,
        tree: Tree,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> T,
    ) -> TxResult<Option<T>> {
        debug_assert!(
            tree != Tree::Audit,
            "the audit chain is read with get_chained"
        );
        if let Some(cache) = self.cache_for(tree) {
            if let Some(own) = self.overlay.borrow().get(&(tree, key.to_vec())) {
                return Ok(own.as_deref().map(f));
            }
            // Transactions run one at a time while the cache is on: it holds the committed state.
            let mut f = Some(f);
            if let Some(hit) = cache.get(tree, key, |body| {
                body.map(|b| (f.take().expect("called once"))(b))
            }) {
                return Ok(hit);
            }
            let body = match self.raw.get(tree, key)? {
                None => None,
                Some(value) => Some(self.auth.open(tree, key, &value).map_err(abort)?.to_vec()),
            };
            cache.keep(tree, key, body.as_deref());
            let f = f.take().expect("not called yet");
            return Ok(body.as_deref().map(f));
        }
        match self.raw.get(tree, key)? {
            None => Ok(None),
            Some(value) => self
                .auth
                .open(tree, key, &value)
                .map(|b| Some(f(b)))
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
        let term = term(tree, &value);
        let old = self.raw.insert(tree, key, value)?;
        self.account_term(tree, old.as_deref(), term);
        if self.cache_for(tree).is_some() {
            self.overlay
                .borrow_mut()
                .insert((tree, key.to_vec()), Some(body.to_vec()));
        }
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, tree: Tree, key: &[u8]) -> TxResult<bool> {
        let old = self.raw.remove(tree, key)?;
        let existed = old.is_some();
        if existed {
            self.account(tree, old.as_deref(), None);
        }
        if self.cache_for(tree).is_some() {
            self.overlay.borrow_mut().insert((tree, key.to_vec()), None);
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
        let current = match self.get_map(Tree::Meta, DIGEST_KEY, |b| <[u8; 32]>::try_from(b))? {
            None => Digest::default(),
            Some(Ok(bytes)) => Digest::from_bytes(&bytes),
            Some(Err(_)) => {
                return Err(abort(StateError::Tampered {
                    tree: "meta",
                    key: "digest".into(),
                    reason: "not 32 bytes".into(),
                }))
            }
        };
        let next = Digest(current.0.wrapping_add(self.delta.get().0)).to_bytes();
        // The digest is outside its own sum: written without accounting.
        self.raw.insert(
            Tree::Meta,
            DIGEST_KEY,
            self.auth.seal(Tree::Meta, DIGEST_KEY, &next),
        )?;
        if self.cache_for(Tree::Meta).is_some() {
            self.overlay
                .borrow_mut()
                .insert((Tree::Meta, DIGEST_KEY.to_vec()), Some(next.to_vec()));
        }
        Ok(())
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
