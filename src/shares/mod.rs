//! Shamir M-of-N shares of the key store's key-encryption key, each verifiable alone.
//!
//! A store may be unsealed by custodians instead of (or beside) a passphrase: a random secret
//! `s` is split M-of-N with **Feldman's verifiable secret sharing**, the key-encryption key is
//! `HMAC-SHA256(s, "custos shamir kek v1")`, and that key wraps the store's data key in the slot
//! `slot/shamir` ([`crate::keystore::shamir_slot`]). The slot also keeps the public commitments
//! `G·a_0, …, G·a_{M-1}` to the polynomial's coefficients (P-256 points), so **each share is
//! checked alone, at entry**, before the threshold is reached: a mistyped share fails its
//! checksum ([`text`]), a share of another store or of a retired set is named as such, and a
//! forged share — well formed, right store, but not on the committed polynomial — fails
//! Feldman's check ([`collect`]). HashiCorp Vault, by contrast, notices a bad share only when
//! the combined key fails to decrypt (its issues #8278 and #2484).
//!
//! # What we rely on in vsss-rs, and what the tests prove
//!
//! We never do field or group arithmetic ourselves. vsss-rs 6 (`feldman::split_secret`,
//! `FeldmanVerifierSet::verify_share`, `ReadableShareSet::combine`) evaluates the polynomial,
//! computes the commitments, checks a share against them and interpolates at zero, over p256's
//! scalar field and group (RustCrypto). We rely on it for: uniform polynomial coefficients from
//! the generator we pass (a ChaCha20 stream seeded with 32 bytes of the OS generator), correct
//! Lagrange interpolation, and a Feldman check that refuses any share off the polynomial.
//! vsss-rs's README says it was audited (funded by LIT Protocol and Turnkey); version 6.0 is
//! recent, so we also check its answers ourselves where it is cheap:
//!
//! - after a split, the share identifiers must be 1..N and every share must pass the Feldman
//!   check, and the first commitment must be `G·s`;
//! - after a combination, the result must be non-zero and `G·result` must equal the first
//!   commitment — a wrong combination is refused, never turned into a wrong key.
//!
//! The tests prove, with the real library: every threshold M of every N up to 5 recovers the
//! secret from every subset of M or more shares and from no smaller one (`vss.rs`); a changed
//! value, a value under another index and a share of another split all fail the commitments;
//! duplicates never count twice; every single-character substitution of a share text is caught
//! and located, and so are swaps, missing and extra characters (`text.rs`); and the collector
//! refuses mistyped, foreign, retired, forged, duplicate and surplus shares by name
//! (`collect.rs`), while the binary tests drive the same through `custos` and a live server.
//!
//! # What fewer than M shares reveal
//!
//! The tool never combines fewer than M verified shares. Mathematically, M−1 shares of a random
//! degree-(M−1) polynomial are uniformly distributed whatever the secret; the public
//! commitments add `G·s`, so recovering `s` from them is the discrete logarithm problem on
//! P-256 — Feldman's scheme hides the secret computationally, not perfectly. `s` is a fresh
//! uniform scalar used only to derive the key-encryption key (the store's data key is
//! independent of it), so the commitments say nothing about the data key.

pub mod collect;
pub mod text;
pub mod vss;

pub use collect::{Collector, Progress, ShareRefusal, ShareSetInfo};
pub use text::{ParsedShare, ShareTextError};
pub use vss::{Commitments, ShareValue, SharedSecret, VssError};

use std::fmt;

/// A set of share indexes (1 to 255): which shares have been given, never what they are.
/// `Copy`, so it can travel in the seal-state channel.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShareIndexes([u64; 4]);

impl ShareIndexes {
    /// The empty set.
    pub const fn new() -> Self {
        ShareIndexes([0; 4])
    }

    /// Adds `index`; returns whether it was new.
    pub fn insert(&mut self, index: u8) -> bool {
        let (word, bit) = (usize::from(index / 64), index % 64);
        let was = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        !was
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: u8) -> bool {
        self.0[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }

    /// How many indexes.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indexes in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|i| self.contains(*i))
    }

    /// The indexes as a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.iter().collect()
    }
}

impl FromIterator<u8> for ShareIndexes {
    fn from_iter<T: IntoIterator<Item = u8>>(iter: T) -> Self {
        let mut set = ShareIndexes::new();
        for i in iter {
            set.insert(i);
        }
        set
    }
}

impl fmt::Display for ShareIndexes {
    /// `1, 3, 4` (or `none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let list: Vec<String> = self.iter().map(|i| i.to_string()).collect();
        f.write_str(&list.join(", "))
    }
}

impl fmt::Debug for ShareIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareIndexes[{self}]")
    }
}

/// Parses `M/N` (`3/5`): the threshold and the number of shares.
pub fn parse_threshold(text: &str) -> Result<(u8, u8), String> {
    let (m, n) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}': expected M/N, such as 3/5"))?;
    let m: u8 = m
        .trim()
        .parse()
        .map_err(|_| format!("'{text}': the threshold M is not a number from 2 to 255"))?;
    let n: u8 = n
        .trim()
        .parse()
        .map_err(|_| format!("'{text}': the share count N is not a number from 2 to 255"))?;
    if m < vss::MIN_THRESHOLD || m > n {
        return Err(format!(
            "'{text}': a split needs 2 <= M <= N <= 255 (one share alone would unseal, or more shares would be needed than exist)"
        ));
    }
    Ok((m, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes() {
        let mut set = ShareIndexes::new();
        assert!(set.is_empty());
        assert!(set.insert(3));
        assert!(set.insert(255));
        assert!(set.insert(1));
        assert!(!set.insert(3));
        assert_eq!(set.to_vec(), vec![1, 3, 255]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.to_string(), "1, 3, 255");
        assert_eq!(ShareIndexes::new().to_string(), "none");
    }

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("3/5"), Ok((3, 5)));
        assert_eq!(parse_threshold(" 2 / 2 "), Ok((2, 2)));
        for bad in ["1/3", "4/3", "3", "a/b", "0/0", "3/256", "-1/3"] {
            assert!(parse_threshold(bad).is_err(), "{bad}");
        }
    }
}
