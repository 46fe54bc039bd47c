//! A cache of verified record bodies, kept by [`super::State`] when this process is the only
//! writer of its database ([`super::engine::Engine::exclusive`]: sled holds its files locked).
//!
//! Every read of the limit ledger's buckets (policy evaluation reads two windows of about forty
//! buckets each; the cap re-check inside the transaction reads them again, and the reservation
//! reads and rewrites the five buckets of each of its keys) and of the `meta` records every
//! transaction touches (the digest, the audit head) would otherwise cost one HMAC verification.
//! Here a body is verified once, when it is read from the engine, and kept (or its absence kept),
//! so later reads cost a hash-map lookup.
//!
//! Soundness rests on three rules, kept by [`super::State`]:
//! - **Only this process writes.** The cache is off for an engine that others write (a shared
//!   PostgreSQL database), where a record can change underneath the process.
//! - **Commits update the cache in commit order.** Transactions run one at a time while the
//!   cache is on (a lock around each, which costs nothing on sled: it serialises transactions
//!   itself); a committed transaction's writes to cached trees replace the cached bodies before
//!   the next transaction starts, and a transaction that may have failed half-way clears the
//!   cache. Reads inside a transaction therefore see exactly the committed state (and the
//!   transaction's own writes, which it keeps apart until it commits).
//! - **Reads outside transactions never put a stale body back.** Such a read notes the cache's
//!   generation (moved by every commit) before it reads the engine, and keeps what it read only
//!   if no commit happened meanwhile.
//!
//! The cache is bounded (at most [`CAPACITY`] records per tree, in two generations: when the
//! newer holds half of it, the older is dropped, so the records used lately stay and a large
//! ledger does not empty the cache at every new key) and cleared whenever the state's key changes (seal, unseal):
//! what was verified under one key says nothing under another. It is cleared as well when a flush
//! fails and when the engine's instance changes (a reopen after a failure restores only what was
//! flushed, [`super::engine::Engine::incarnation`]).

use std::collections::HashMap;
use std::sync::Mutex;

use super::tree::Tree;

/// Records kept per cached tree at most.
pub const CAPACITY: usize = 1 << 16;

/// The trees whose verified bodies are cached.
pub fn cached(tree: Tree) -> bool {
    matches!(tree, Tree::LedgerBuckets | Tree::Meta)
}

fn slot(tree: Tree) -> usize {
    match tree {
        Tree::LedgerBuckets => 0,
        _ => 1,
    }
}

/// A cached record: its verified body, or `None` when the record is known to be absent.
type Entry = Option<Box<[u8]>>;

/// One tree's cached records in two generations: new records go to `young`; when it holds half
/// the capacity it becomes `old` and the previous `old` is dropped. Lookups read both (`young`
/// first: it is never older). So the records read or written lately stay, a burst of new keys
/// costs at most the older half, and the whole stays within [`CAPACITY`].
#[derive(Default)]
struct Generations {
    young: HashMap<Box<[u8]>, Entry>,
    old: HashMap<Box<[u8]>, Entry>,
}

impl Generations {
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    fn keep(&mut self, key: &[u8], body: Option<&[u8]>) {
        let body = body.map(Box::<[u8]>::from);
        if let Some(entry) = self.young.get_mut(key) {
            *entry = body;
            return;
        }
        if self.young.len() >= CAPACITY / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(key);
        self.young.insert(Box::from(key), body);
    }

    fn clear(&mut self) {
        self.young = HashMap::new();
        self.old = HashMap::new();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// The engine instance the bodies were read from ([`super::engine::Engine::incarnation`]).
    incarnation: u64,
    trees: [Generations; 2],
}

impl Inner {
    fn keep(&mut self, tree: Tree, key: &[u8], body: Option<&[u8]>) {
        self.trees[slot(tree)].keep(key, body);
    }
}

/// The verified bodies of cached trees (see the module docs).
#[derive(Default)]
pub struct VerifiedCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").finish_non_exhaustive()
    }
}

/// A view of the cache under its lock, for a batch of lookups.
pub struct Locked<'a> {
    inner: std::sync::MutexGuard<'a, Inner>,
}

impl Locked<'_> {
    /// `Some(body or None if absent)` if `key` of `tree` is cached.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Option<Option<&[u8]>> {
        self.inner.trees[slot(tree)]
            .get(key)
            .map(|entry| entry.as_deref())
    }

    /// The generation (moved by every commit and every clear).
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }
}

impl VerifiedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache under its lock.
    pub fn locked(&self) -> Locked<'_> {
        Locked { inner: self.lock() }
    }

    /// `f` of the cached body of `key` (`None` inside: known absent); `None` if not cached.
    pub fn get<T>(&self, tree: Tree, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> T) -> Option<T> {
        self.locked().get(tree, key).map(f)
    }

    /// The current generation (read before reading the engine outside a transaction).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps a body read from the engine outside a transaction, unless a commit happened since
    /// `generation` was read (it could be older than what the cache holds now).
    pub fn keep_if_current(&self, generation: u64, tree: Tree, key: &[u8], body: Option<&[u8]>) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.keep(tree, key, body);
        }
    }

    /// Keeps a body read from the engine inside a transaction (no commit can run meanwhile).
    pub fn keep(&self, tree: Tree, key: &[u8], body: Option<&[u8]>) {
        self.lock().keep(tree, key, body);
    }

    /// Applies a committed transaction's writes to cached trees.
    pub fn commit(&self, writes: HashMap<(Tree, Vec<u8>), Option<Vec<u8>>>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for ((tree, key), body) in writes {
            inner.keep(tree, &key, body.as_deref());
        }
    }

    /// Forgets everything (the key changed, or a transaction may have failed half-way).
    pub fn clear(&self) {
        Self::clear_locked(&mut self.lock());
    }

    fn clear_locked(inner: &mut Inner) {
        inner.generation += 1;
        for tree in &mut inner.trees {
            tree.clear();
        }
    }

    /// Forgets everything if the engine's instance changed since the bodies were read (a reopen
    /// restores only what was flushed: a body kept from the failed instance may be gone).
    pub fn follow(&self, incarnation: u64) {
        let mut inner = self.lock();
        if inner.incarnation != incarnation {
            Self::clear_locked(&mut inner);
            inner.incarnation = incarnation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_overtaken_by_a_commit_is_not_kept() {
        let cache = VerifiedCache::default();
        let g = cache.generation();
        // A commit lands between the read's engine access and its keep.
        let mut writes = HashMap::new();
        writes.insert((Tree::LedgerBuckets, b"k".to_vec()), Some(b"new".to_vec()));
        cache.commit(writes);
        cache.keep_if_current(g, Tree::LedgerBuckets, b"k", Some(b"old"));
        assert_eq!(
            cache.get(Tree::LedgerBuckets, b"k", |v| v.map(<[u8]>::to_vec)),
            Some(Some(b"new".to_vec()))
        );
        // A read that no commit overtook is kept, absence included.
        let g = cache.generation();
        cache.keep_if_current(g, Tree::LedgerBuckets, b"j", None);
        assert_eq!(
            cache.get(Tree::LedgerBuckets, b"j", |v| v.is_none()),
            Some(true)
        );
        cache.clear();
        assert_eq!(cache.get(Tree::LedgerBuckets, b"k", |_| ()), None);
    }

    #[test]
    fn a_new_engine_instance_drops_what_was_kept() {
        let cache = VerifiedCache::default();
        cache.follow(0);
        cache.keep(Tree::Meta, b"digest", Some(&[1; 32]));
        cache.follow(0);
        assert!(cache.get(Tree::Meta, b"digest", |_| ()).is_some());
        cache.follow(1);
        assert!(cache.get(Tree::Meta, b"digest", |_| ()).is_none());
    }

    #[test]
    fn it_stays_bounded() {
        let cache = VerifiedCache::default();
        for i in 0..(CAPACITY + 10) as u64 {
            cache.keep(Tree::LedgerBuckets, &i.to_be_bytes(), None);
        }
        assert!(cache.lock().trees[0].len() <= CAPACITY);
        assert!(cache.lock().trees[0].len() >= CAPACITY / 2);
        // Meta is kept apart.
        cache.keep(Tree::Meta, b"digest", Some(&[1; 32]));
        assert!(cache.get(Tree::Meta, b"digest", |_| ()).is_some());
    }

    #[test]
    fn what_was_used_lately_survives_a_flood_of_new_keys() {
        let cache = VerifiedCache::default();
        cache.keep(Tree::LedgerBuckets, b"hot", Some(b"1"));
        // Half the capacity of other keys: one rotation; the hot key is in the older half.
        for i in 0..(CAPACITY / 2) as u64 {
            cache.keep(Tree::LedgerBuckets, &i.to_be_bytes(), None);
        }
        assert_eq!(
            cache.get(Tree::LedgerBuckets, b"hot", |v| v.map(<[u8]>::to_vec)),
            Some(Some(b"1".to_vec()))
        );
        // A write to it lands in the newer half and is what a read sees.
        cache.keep(Tree::LedgerBuckets, b"hot", Some(b"2"));
        for i in 0..(CAPACITY / 2 - 1) as u64 {
            cache.keep(Tree::LedgerBuckets, &(i + 1_000_000).to_be_bytes(), None);
        }
        assert_eq!(
            cache.get(Tree::LedgerBuckets, b"hot", |v| v.map(<[u8]>::to_vec)),
            Some(Some(b"2".to_vec()))
        );
        // Two rotations without it: gone (read again from the engine when next needed).
        for i in 0..CAPACITY as u64 {
            cache.keep(Tree::LedgerBuckets, &(i + 2_000_000).to_be_bytes(), None);
        }
        assert_eq!(cache.get(Tree::LedgerBuckets, b"hot", |_| ()), None);
    }
}
