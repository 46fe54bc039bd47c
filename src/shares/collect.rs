//! Collecting shares one by one until the threshold: each is parsed and checked on entry against
//! the store's share set, and refused by name when it is wrong.
//!
//! The collector is transport-free: the CLI feeds it from files and prompts, the server from
//! `Admin.Unseal` calls (and adds who gave each share and when partial progress expires). A
//! refused share changes nothing: the shares accepted so far stay, and the next one may come.

use std::fmt;

use super::text::{self, ShareTextError, SET_ID_LEN, STORE_TAG_LEN};
use super::vss::{self, Commitments, ShareValue, SharedSecret, VssError};
use super::ShareIndexes;
use crate::secret::SecretString;

/// The public facts of a store's share set, as its slot records them.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareSetInfo {
    /// The store's id.
    pub store_id: [u8; 16],
    /// This set's id (new at every split).
    pub set_id: [u8; SET_ID_LEN],
    /// M.
    pub threshold: u8,
    /// N.
    pub count: u8,
    /// The Feldman commitments.
    pub commitments: Commitments,
    /// Ids of earlier sets of this store, retired by rotations (oldest first).
    pub retired: Vec<[u8; SET_ID_LEN]>,
}

impl ShareSetInfo {
    /// The store tag shares carry (the first bytes of the store id).
    pub fn store_tag(&self) -> [u8; STORE_TAG_LEN] {
        self.store_id[..STORE_TAG_LEN]
            .try_into()
            .expect("the store id is longer than its tag")
    }
}

impl fmt::Debug for ShareSetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShareSetInfo {{ store: {}, set: {}, {} of {} }}",
            hex::encode(self.store_id),
            hex::encode(self.set_id),
            self.threshold,
            self.count
        )
    }
}

/// Why a share was refused at entry. Each names the share (its index, once the text could be
/// read) and what was wrong; [`ShareRefusal::code`] is a stable tag for the API and the logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareRefusal {
    /// The text is not a well-formed share (a typing error, usually).
    #[error("the share is not readable: {0}")]
    Mistyped(ShareTextError),
    /// A share of another key store.
    #[error(
        "share {index} belongs to key store {share_store}…, not to this store ({this_store}…)"
    )]
    ForeignStore {
        /// Its index.
        index: u8,
        /// The store it names (tag, hex).
        share_store: String,
        /// This store's tag.
        this_store: String,
    },
    /// A share of a set this store has retired.
    #[error("share {index} belongs to share set {set}, retired by a rotation: it no longer works (the current set is {current})")]
    Retired {
        /// Its index.
        index: u8,
        /// Its set.
        set: String,
        /// The current set.
        current: String,
    },
    /// A share of a set this store never had (or does not remember).
    #[error("share {index} belongs to share set {set}, which is not this store's current set ({current})")]
    OtherSet {
        /// Its index.
        index: u8,
        /// Its set.
        set: String,
        /// The current set.
        current: String,
    },
    /// It claims another threshold than its set has.
    #[error("share {index} says its threshold is {share}, but this store's share set needs {store}: it is forged or damaged")]
    ThresholdMismatch {
        /// Its index.
        index: u8,
        /// What it says.
        share: u8,
        /// What the set has.
        store: u8,
    },
    /// An index the set never issued.
    #[error("share {index} cannot exist: this store's set has shares 1 to {count}")]
    IndexOutOfRange {
        /// Its index.
        index: u8,
        /// N.
        count: u8,
    },
    /// The same share twice.
    #[error("share {index} was already given")]
    Duplicate {
        /// Its index.
        index: u8,
    },
    /// Well formed and of this set, but not on the committed polynomial.
    #[error("share {index} does not match this store's commitments: it is forged, or damaged in a way its checksum cannot see")]
    Forged {
        /// Its index.
        index: u8,
    },
    /// The threshold was already met.
    #[error("share {index} is not needed: the threshold of {threshold} is already met")]
    NotNeeded {
        /// Its index.
        index: u8,
        /// M.
        threshold: u8,
    },
}

impl ShareRefusal {
    /// A stable tag (`share-forged`, `share-foreign-store`, …).
    pub fn code(&self) -> &'static str {
        match self {
            ShareRefusal::Mistyped(_) => "share-mistyped",
            ShareRefusal::ForeignStore { .. } => "share-foreign-store",
            ShareRefusal::Retired { .. } => "share-retired",
            ShareRefusal::OtherSet { .. } => "share-other-set",
            ShareRefusal::ThresholdMismatch { .. } => "share-threshold-mismatch",
            ShareRefusal::IndexOutOfRange { .. } => "share-index-out-of-range",
            ShareRefusal::Duplicate { .. } => "share-duplicate",
            ShareRefusal::Forged { .. } => "share-forged",
            ShareRefusal::NotNeeded { .. } => "share-not-needed",
        }
    }

    /// The share's index, when the text could be read.
    pub fn index(&self) -> Option<u8> {
        match self {
            ShareRefusal::Mistyped(_) => None,
            ShareRefusal::ForeignStore { index, .. }
            | ShareRefusal::Retired { index, .. }
            | ShareRefusal::OtherSet { index, .. }
            | ShareRefusal::ThresholdMismatch { index, .. }
            | ShareRefusal::IndexOutOfRange { index, .. }
            | ShareRefusal::Duplicate { index }
            | ShareRefusal::Forged { index }
            | ShareRefusal::NotNeeded { index, .. } => Some(*index),
        }
    }
}

/// How far a collection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The indexes accepted so far.
    pub indexes: ShareIndexes,
    /// M.
    pub threshold: u8,
    /// N.
    pub count: u8,
}

impl Progress {
    /// Shares accepted so far.
    pub fn given(&self) -> usize {
        self.indexes.len()
    }

    /// Whether the threshold is met.
    pub fn complete(&self) -> bool {
        self.given() >= usize::from(self.threshold)
    }
}

impl fmt::Display for Progress {
    /// `2 of 3 shares (indexes 1, 4)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} shares (indexes {})",
            self.given(),
            self.threshold,
            self.indexes
        )
    }
}

/// Shares accepted so far for one share set (values zeroized on drop).
pub struct Collector {
    info: ShareSetInfo,
    accepted: Vec<ShareValue>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Collector {{ {:?}, {} }}", self.info, self.progress())
    }
}

impl Collector {
    /// An empty collection for `info`'s set.
    pub fn new(info: ShareSetInfo) -> Self {
        Collector {
            info,
            accepted: Vec::new(),
        }
    }

    /// The set being collected for.
    pub fn info(&self) -> &ShareSetInfo {
        &self.info
    }

    /// Parses and checks one share; accepts it (returning its index) or refuses it by name,
    /// changing nothing.
    pub fn offer(&mut self, text: &SecretString) -> Result<u8, ShareRefusal> {
        let parsed = text::parse(text).map_err(ShareRefusal::Mistyped)?;
        let index = parsed.share.index();
        let info = &self.info;
        if parsed.store_tag != info.store_tag() {
            return Err(ShareRefusal::ForeignStore {
                index,
                share_store: hex::encode(parsed.store_tag),
                this_store: hex::encode(info.store_tag()),
            });
        }
        if parsed.set_id != info.set_id {
            let set = hex::encode(parsed.set_id);
            let current = hex::encode(info.set_id);
            return Err(if info.retired.contains(&parsed.set_id) {
                ShareRefusal::Retired {
                    index,
                    set,
                    current,
                }
            } else {
                ShareRefusal::OtherSet {
                    index,
                    set,
                    current,
                }
            });
        }
        if parsed.threshold != info.threshold {
            return Err(ShareRefusal::ThresholdMismatch {
                index,
                share: parsed.threshold,
                store: info.threshold,
            });
        }
        if index > info.count {
            return Err(ShareRefusal::IndexOutOfRange {
                index,
                count: info.count,
            });
        }
        if self.accepted.iter().any(|s| s.index() == index) {
            return Err(ShareRefusal::Duplicate { index });
        }
        if self.accepted.len() >= usize::from(info.threshold) {
            return Err(ShareRefusal::NotNeeded {
                index,
                threshold: info.threshold,
            });
        }
        info.commitments
            .verify(&parsed.share)
            .map_err(|_| ShareRefusal::Forged { index })?;
        self.accepted.push(parsed.share);
        Ok(index)
    }

    /// How far the collection is.
    pub fn progress(&self) -> Progress {
        Progress {
            indexes: self.accepted.iter().map(ShareValue::index).collect(),
            threshold: self.info.threshold,
            count: self.info.count,
        }
    }

    /// The secret, once the threshold is met (checked against the commitments).
    pub fn combine(&self) -> Result<SharedSecret, VssError> {
        vss::combine(&self.info.commitments, &self.accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shares::text::encode;
    use crate::shares::vss::split;

    struct Fixture {
        info: ShareSetInfo,
        texts: Vec<SecretString>,
        secret: SharedSecret,
    }

    fn fixture(threshold: u8, count: u8, store_id: [u8; 16], set_id: [u8; 2]) -> Fixture {
        let secret = SharedSecret::random().unwrap();
        let (shares, commitments) = split(&secret, threshold, count).unwrap();
        let tag: [u8; 4] = store_id[..4].try_into().unwrap();
        let texts = shares
            .iter()
            .map(|s| encode(tag, set_id, threshold, s))
            .collect();
        Fixture {
            info: ShareSetInfo {
                store_id,
                set_id,
                threshold,
                count,
                commitments,
                retired: vec![[0xaa, 0xbb]],
            },
            texts,
            secret,
        }
    }

    #[test]
    fn collects_to_the_threshold_in_any_order() {
        let f = fixture(3, 5, [1; 16], [0, 1]);
        for order in [[0usize, 1, 2], [4, 2, 0], [3, 4, 1]] {
            let mut c = Collector::new(f.info.clone());
            for (n, i) in order.iter().enumerate() {
                assert!(!c.progress().complete());
                assert!(c.combine().is_err(), "combined with {n} shares");
                assert_eq!(c.offer(&f.texts[*i]).unwrap(), *i as u8 + 1);
            }
            assert!(c.progress().complete());
            assert_eq!(
                c.combine().unwrap().to_secret_bytes(),
                f.secret.to_secret_bytes()
            );
        }
    }

    #[test]
    fn refusals_are_named_and_change_nothing() {
        let f = fixture(2, 3, [1; 16], [0, 1]);
        let mut c = Collector::new(f.info.clone());
        c.offer(&f.texts[0]).unwrap();

        // Duplicate.
        assert_eq!(
            c.offer(&f.texts[0]),
            Err(ShareRefusal::Duplicate { index: 1 })
        );
        // Mistyped.
        let mut typo = f.texts[1].expose_secret().to_owned().into_bytes();
        let at = typo.len() - 3;
        typo[at] = if typo[at] == b'q' { b'p' } else { b'q' };
        let err = c
            .offer(&SecretString::new(String::from_utf8(typo).unwrap()))
            .unwrap_err();
        assert_eq!(err.code(), "share-mistyped");
        assert!(err.to_string().contains("group 18"), "{err}");
        // Another store (same shape, other id).
        let other = fixture(2, 3, [2; 16], [0, 1]);
        let err = c.offer(&other.texts[1]).unwrap_err();
        assert_eq!(err.code(), "share-foreign-store");
        assert!(err.to_string().contains("02020202"), "{err}");
        // Forged: right store and set and threshold, but another polynomial.
        let forger = fixture(2, 3, [1; 16], [0, 1]);
        assert_eq!(
            c.offer(&forger.texts[1]),
            Err(ShareRefusal::Forged { index: 2 })
        );
        // A retired set, and an unknown one.
        let retired = fixture(2, 3, [1; 16], [0xaa, 0xbb]);
        assert_eq!(
            c.offer(&retired.texts[2]).unwrap_err().code(),
            "share-retired"
        );
        let unknown = fixture(2, 3, [1; 16], [0xcc, 0xdd]);
        assert_eq!(
            c.offer(&unknown.texts[2]).unwrap_err().code(),
            "share-other-set"
        );
        // Another threshold, an index out of range.
        let bigger = fixture(3, 5, [1; 16], [0, 1]);
        assert_eq!(
            c.offer(&bigger.texts[0]).unwrap_err().code(),
            "share-threshold-mismatch"
        );
        let wider = fixture(2, 5, [1; 16], [0, 1]);
        assert_eq!(
            c.offer(&wider.texts[4]),
            Err(ShareRefusal::IndexOutOfRange { index: 5, count: 3 })
        );

        // Nothing above changed the collection; the real second share completes it.
        assert_eq!(c.progress().indexes.to_vec(), vec![1]);
        c.offer(&f.texts[2]).unwrap();
        assert_eq!(
            c.offer(&f.texts[1]),
            Err(ShareRefusal::NotNeeded {
                index: 2,
                threshold: 2
            })
        );
        assert_eq!(
            c.combine().unwrap().to_secret_bytes(),
            f.secret.to_secret_bytes()
        );
    }

    /// Below the threshold nothing is combined, whichever shares were given.
    #[test]
    fn m_minus_one_shares_never_combine() {
        for count in 2u8..=5 {
            for threshold in 2..=count {
                let f = fixture(threshold, count, [3; 16], [1, 2]);
                let mut c = Collector::new(f.info.clone());
                for text in f.texts.iter().take(usize::from(threshold) - 1) {
                    c.offer(text).unwrap();
                }
                assert!(!c.progress().complete());
                assert!(matches!(c.combine(), Err(VssError::TooFew { .. })));
            }
        }
    }
}
