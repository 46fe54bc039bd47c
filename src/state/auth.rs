//! Authenticated state records: every value the state database holds carries a MAC under a key
//! derived from the sealed store, bound to its tree and its key; and one digest over all of them.
//!
//! DESIGN.md ("What the state database may do wrong") treats the state database like the network:
//! whoever administers it can read, rewrite, roll back or transplant it. So:
//!
//! - **Each record** is stored as `version (1) ‖ mac (32) ‖ body`, where
//!
//!   ```text
//!   mac = HMAC-SHA256(state_key, "custos state v1" ‖ tree id (1) ‖ len(key) (4, BE) ‖ key ‖ body)
//!   state_key = HMAC-SHA256(DEK, "custos state v1")        (crate::keystore::Unsealed::state_key)
//!   ```
//!
//!   A record edited in place, written under another key or tree, or copied from another
//!   installation (another DEK) fails [`StateAuth::open`] and is never acted on: the read returns
//!   [`StateError::Tampered`] naming the tree and key.
//! - **The digest** is the sum, modulo 2^256, of the MACs of every record in every tree (the audit
//!   chain's records count with their chain MAC), kept in an authenticated `meta` record and
//!   updated in the transaction of every write ([`Digest::replace`]). A single record deleted,
//!   injected from elsewhere or rolled back to an older authentic version changes the sum, which
//!   nobody without the key can compensate for (each term is a keyed MAC the attacker cannot
//!   compute). `custos state verify` and the check at unseal recompute it over a full scan.
//! - **Rollback of the whole database** (an older copy, consistent in itself) is the one thing a
//!   digest kept inside the database cannot see: the audit head is anchored outside it (see
//!   `crate::state::anchor`).
//!
//! What is *not* detected between two full checks: a record rolled back to an older authentic
//! version by someone writing the live database underneath a running server (possible with a
//! shared SQL database, not with sled, which holds the files locked and cached). Each read still
//! authenticates what it reads; the next `state verify` or unseal reports the digest mismatch.

use std::fmt;

use hmac::{Hmac, Mac};
use ruint::aliases::U256;
use sha2::Sha256;

use super::tree::Tree;
use super::StateError;
use crate::secret::Secret32;

/// The format version byte at the start of every authenticated value.
pub const RECORD_VERSION: u8 = 1;
/// Length of the record header (version + MAC).
pub const HEADER_LEN: usize = 33;
const DOMAIN: &[u8] = b"custos state v1";

/// The key that authenticates state records (zeroized on drop; never printed).
pub struct StateAuth {
    key: Secret32,
}

impl fmt::Debug for StateAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateAuth").finish_non_exhaustive()
    }
}

/// A printable form of a record key for messages: UTF-8 text as is (truncated), else hex.
pub fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.chars().take(96).collect(),
        _ => hex::encode(&key[..key.len().min(48)]),
    }
}

impl StateAuth {
    /// The authenticator for `key` (see [`crate::keystore::Unsealed::state_key`]).
    pub fn new(key: Secret32) -> Self {
        StateAuth { key }
    }

    fn mac(&self, tree: Tree, key: &[u8], body: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .expect("HMAC takes any key");
        mac.update(DOMAIN);
        mac.update(&[tree.id()]);
        mac.update(&(key.len() as u32).to_be_bytes());
        mac.update(key);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The stored value of `body` under `tree`/`key`.
    pub fn seal(&self, tree: Tree, key: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.mac(tree, key, body));
        out.extend_from_slice(body);
        out
    }

    /// The body of a stored value, if it authenticates under `tree`/`key`.
    pub fn open<'v>(
        &self,
        tree: Tree,
        key: &[u8],
        value: &'v [u8],
    ) -> Result<&'v [u8], StateError> {
        let tampered = |reason: &str| StateError::Tampered {
            tree: tree.name(),
            key: printable_key(key),
            reason: reason.to_owned(),
        };
        if value.len() < HEADER_LEN {
            return Err(tampered("shorter than a record header"));
        }
        if value[0] != RECORD_VERSION {
            return Err(tampered("unknown record version"));
        }
        let body = &value[HEADER_LEN..];
        let want = self.mac(tree, key, body);
        if !crate::secret::constant_time_eq(&want, &value[1..HEADER_LEN]) {
            return Err(tampered(
                "its MAC does not verify under this store's key (edited, moved, or from another installation)",
            ));
        }
        Ok(body)
    }
}

/// The term a stored value adds to the digest: its MAC as a 256-bit number (the audit chain's
/// records start with their chain MAC; every other record with the version byte, then its MAC).
pub fn term(tree: Tree, value: &[u8]) -> U256 {
    let mac = match tree {
        Tree::Audit => value.get(..32),
        _ => value.get(1..HEADER_LEN),
    };
    match mac {
        Some(bytes) => U256::from_be_slice(bytes),
        // A value too short to hold a MAC still changes the sum (it cannot match by accident).
        None => U256::from(value.len() as u64 + 1),
    }
}

/// The sum of the terms of every record (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest(pub U256);

impl Digest {
    /// Accounts for one write: the old value (if any) leaves the sum, the new one (if any) joins.
    pub fn replace(&mut self, tree: Tree, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(old) = old {
            self.0 = self.0.wrapping_sub(term(tree, old));
        }
        if let Some(new) = new {
            self.0 = self.0.wrapping_add(term(tree, new));
        }
    }

    /// 32 bytes, big-endian.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    /// From 32 bytes, big-endian.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Digest(U256::from_be_bytes(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(byte: u8) -> StateAuth {
        StateAuth::new(Secret32::new([byte; 32]))
    }

    #[test]
    fn a_record_opens_only_where_it_was_sealed() {
        let a = auth(1);
        let v = a.seal(Tree::Requests, b"svc/r-1", b"{\"state\":\"denied\"}");
        assert_eq!(
            a.open(Tree::Requests, b"svc/r-1", &v).unwrap(),
            b"{\"state\":\"denied\"}"
        );
        // Another key, another tree, another installation, an edited body, a truncation.
        assert!(a.open(Tree::Requests, b"svc/r-2", &v).is_err());
        assert!(a.open(Tree::Nonces, b"svc/r-1", &v).is_err());
        assert!(auth(2).open(Tree::Requests, b"svc/r-1", &v).is_err());
        let mut edited = v.clone();
        let last = edited.len() - 3;
        edited[last] ^= 0x20;
        let err = a.open(Tree::Requests, b"svc/r-1", &edited).unwrap_err();
        assert!(err.to_string().contains("requests"), "{err}");
        assert!(a.open(Tree::Requests, b"svc/r-1", &v[..20]).is_err());
        // Every single bit flip is caught.
        for bit in 0..v.len() * 8 {
            let mut flipped = v.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                a.open(Tree::Requests, b"svc/r-1", &flipped).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn the_digest_notices_deletion_injection_and_rollback() {
        let a = auth(3);
        let v1 = a.seal(Tree::LedgerBuckets, b"k", b"old");
        let v2 = a.seal(Tree::LedgerBuckets, b"k", b"new");
        let other = a.seal(Tree::LedgerBuckets, b"j", b"x");
        let mut kept = Digest::default();
        kept.replace(Tree::LedgerBuckets, None, Some(&v1));
        kept.replace(Tree::LedgerBuckets, None, Some(&other));
        kept.replace(Tree::LedgerBuckets, Some(&v1), Some(&v2));
        let full = |values: &[&Vec<u8>]| {
            let mut d = Digest::default();
            for v in values {
                d.replace(Tree::LedgerBuckets, None, Some(v));
            }
            d
        };
        assert_eq!(full(&[&v2, &other]), kept);
        assert_ne!(full(&[&other]), kept, "deleted");
        assert_ne!(full(&[&v1, &other]), kept, "rolled back");
        assert_ne!(full(&[&v2, &other, &v1]), kept, "injected");
        assert_eq!(Digest::from_bytes(&kept.to_bytes()), kept);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let text = format!("{:?}", auth(0x5a));
        assert!(!text.contains("5a") && !text.contains("90"), "{text}");
    }
}
