//! `slot/shamir`: the data key wrapped under a key-encryption key that custodians hold M-of-N
//! (see [`crate::shares`] for the scheme and what it relies on).
//!
//! Body of the record (after version and kind, before the check value):
//!
//! ```text
//! unsealer 2 ‖ set id (2) ‖ M (u8) ‖ N (u8) ‖ M commitments (33 bytes each)
//!            ‖ retired set count (u8) ‖ retired set ids (2 bytes each)
//!            ‖ nonce (24) ‖ wrapped DEK length (u8, 48) ‖ wrapped DEK
//! ```
//!
//! Everything before the nonce is bound into the wrapped key's associated data, so commitments,
//! threshold and set id cannot be changed without the data key failing to unwrap. The KEK is
//! `HMAC-SHA256(s, "custos shamir kek v1")` for the shared secret `s`.
//!
//! A new split ([`Unsealed::prepare_share_set`]) draws a fresh secret, so a rotation makes every
//! earlier share useless: the old slot, its commitments and its wrapped key are replaced in one
//! transaction together with the ceremony-log entry that says so, and the old set's id joins the
//! `retired` list, so an old share is refused as "retired by a rotation" rather than as a mystery.
//! The data key itself never changes: backups exported before a rotation still open with the
//! shares (or passphrase) they were exported with.

use std::fmt;

use super::ceremony_log::{CeremonyDraft, WriteOp};
use super::envelope::{self, associated_data, derive_subkey, SealedBox, NONCE_LEN, TAG_LEN};
use super::error::KeystoreError;
use super::kdf::KdfParams;
use super::record::{encode_record, Record, RecordKind, FORMAT_VERSION, PASSPHRASE_SLOT_ID};
use super::{KeyStore, Unsealed};
use crate::secret::{Secret32, SecretString};
use crate::shares::text::{self, SET_ID_LEN};
use crate::shares::vss::{self, Commitments, SharedSecret, COMMITMENT_LEN};
use crate::shares::{Collector, ShareSetInfo};

/// Id of the Shamir unsealer slot.
pub const SHAMIR_SLOT_ID: &str = "slot/shamir";
/// How many retired set ids a slot remembers.
pub const MAX_RETIRED: usize = 64;

const UNSEALER_SHAMIR: u8 = 2;
const KEK_LABEL: &[u8] = b"custos shamir kek v1";
const DEK_WRAP_LEN: usize = 32 + TAG_LEN;

/// The stored Shamir slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShamirSlot {
    /// This split's id.
    pub set_id: [u8; SET_ID_LEN],
    /// M.
    pub threshold: u8,
    /// N.
    pub count: u8,
    /// Feldman commitments (M points).
    pub commitments: Commitments,
    /// Ids of earlier splits, oldest first.
    pub retired: Vec<[u8; SET_ID_LEN]>,
    /// The DEK under the shared KEK.
    pub wrapped_dek: SealedBox,
}

impl ShamirSlot {
    /// The parameters bound into the wrapped DEK's associated data.
    pub fn binding(&self) -> Vec<u8> {
        let mut out = vec![UNSEALER_SHAMIR];
        out.extend_from_slice(&self.set_id);
        out.push(self.threshold);
        out.push(self.count);
        for point in self.commitments.points() {
            out.extend_from_slice(point);
        }
        out.push(self.retired.len() as u8);
        for id in &self.retired {
            out.extend_from_slice(id);
        }
        out
    }

    /// The record body (see the module doc).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = self.binding();
        out.extend_from_slice(&self.wrapped_dek.nonce);
        out.push(self.wrapped_dek.ciphertext.len() as u8);
        out.extend_from_slice(&self.wrapped_dek.ciphertext);
        out
    }

    /// Parses a record body; any bytes give a slot or a reason, never a panic.
    pub fn decode_body(bytes: &[u8]) -> Result<ShamirSlot, String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= bytes.len())
                .ok_or_else(|| format!("truncated: {n} more bytes expected"))?;
            let out = &bytes[at..end];
            at = end;
            Ok(out)
        };
        let unsealer = take(1)?[0];
        if unsealer != UNSEALER_SHAMIR {
            return Err(format!("unknown unsealer type {unsealer}"));
        }
        let set_id: [u8; SET_ID_LEN] = take(SET_ID_LEN)?.try_into().expect("2 bytes");
        let threshold = take(1)?[0];
        let count = take(1)?[0];
        if threshold < vss::MIN_THRESHOLD || threshold > count {
            return Err(format!("threshold {threshold} of {count} shares"));
        }
        let mut points = Vec::with_capacity(usize::from(threshold));
        for _ in 0..threshold {
            points.push(<[u8; COMMITMENT_LEN]>::try_from(take(COMMITMENT_LEN)?).expect("33"));
        }
        let commitments = Commitments::from_stored(points).map_err(|e| e.to_string())?;
        let retired_len = usize::from(take(1)?[0]);
        if retired_len > MAX_RETIRED {
            return Err(format!(
                "{retired_len} retired sets (at most {MAX_RETIRED})"
            ));
        }
        let mut retired = Vec::with_capacity(retired_len);
        for _ in 0..retired_len {
            retired.push(take(SET_ID_LEN)?.try_into().expect("2 bytes"));
        }
        let nonce: [u8; NONCE_LEN] = take(NONCE_LEN)?.try_into().expect("24 bytes");
        let wrap_len = usize::from(take(1)?[0]);
        if wrap_len != DEK_WRAP_LEN {
            return Err(format!(
                "wrapped key of {wrap_len} bytes ({DEK_WRAP_LEN} expected)"
            ));
        }
        let ciphertext = take(wrap_len)?.to_vec();
        if at != bytes.len() {
            return Err(format!(
                "{} unexpected bytes after the slot",
                bytes.len() - at
            ));
        }
        Ok(ShamirSlot {
            set_id,
            threshold,
            count,
            commitments,
            retired,
            wrapped_dek: SealedBox { nonce, ciphertext },
        })
    }

    fn info(&self, store_id: &[u8; 16]) -> ShareSetInfo {
        ShareSetInfo {
            store_id: *store_id,
            set_id: self.set_id,
            threshold: self.threshold,
            count: self.count,
            commitments: self.commitments.clone(),
            retired: self.retired.clone(),
        }
    }
}

/// Which unsealers a store has (public facts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsealers {
    /// The passphrase slot's parameters, if the passphrase unseals.
    pub passphrase: Option<KdfParams>,
    /// The share set, if shares unseal.
    pub shares: Option<ShareSetInfo>,
}

/// A split made and its DEK wrapped, not yet written: the share texts for the custodians and the
/// slot that makes them work once committed.
pub struct NewShareSet {
    slot: ShamirSlot,
    store_id: [u8; 16],
    texts: Vec<SecretString>,
}

impl fmt::Debug for NewShareSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewShareSet {{ {:?}, texts: [REDACTED] }}", self.info())
    }
}

impl NewShareSet {
    /// The share texts, index 1 first. Secret: show each to its custodian only.
    pub fn texts(&self) -> &[SecretString] {
        &self.texts
    }

    /// The set's public facts.
    pub fn info(&self) -> ShareSetInfo {
        self.slot.info(&self.store_id)
    }

    /// The slot to store.
    pub(crate) fn slot(&self) -> &ShamirSlot {
        &self.slot
    }
}

/// Splits a fresh secret M-of-N and wraps `dek` under its KEK, with a set id not in `taken`.
pub(crate) fn new_share_set(
    store_id: &[u8; 16],
    dek: &Secret32,
    threshold: u8,
    count: u8,
    retired: Vec<[u8; SET_ID_LEN]>,
    taken: &[[u8; SET_ID_LEN]],
) -> Result<NewShareSet, KeystoreError> {
    let secret = SharedSecret::random().map_err(|e| KeystoreError::Shares(e.to_string()))?;
    let (shares, commitments) =
        vss::split(&secret, threshold, count).map_err(|e| KeystoreError::Shares(e.to_string()))?;
    let set_id = loop {
        let id = super::random_array::<SET_ID_LEN>()?;
        if !taken.contains(&id) && !retired.contains(&id) {
            break id;
        }
    };
    let mut slot = ShamirSlot {
        set_id,
        threshold,
        count,
        commitments,
        retired,
        wrapped_dek: SealedBox {
            nonce: [0; NONCE_LEN],
            ciphertext: Vec::new(),
        },
    };
    let kek = kek_of(&secret);
    slot.wrapped_dek = envelope::seal(&kek, &slot_ad(store_id, &slot), dek.expose_secret())?;
    let tag: [u8; text::STORE_TAG_LEN] =
        store_id[..text::STORE_TAG_LEN].try_into().expect("4 bytes");
    let texts = shares
        .iter()
        .map(|s| text::encode(tag, set_id, threshold, s))
        .collect();
    Ok(NewShareSet {
        slot,
        store_id: *store_id,
        texts,
    })
}

fn kek_of(secret: &SharedSecret) -> Secret32 {
    derive_subkey(&secret.to_secret_bytes(), KEK_LABEL)
}

fn slot_ad(store_id: &[u8; 16], slot: &ShamirSlot) -> Vec<u8> {
    associated_data(
        FORMAT_VERSION,
        RecordKind::Slot.byte(),
        store_id,
        SHAMIR_SLOT_ID,
        &slot.binding(),
    )
}

/// The encoded slot record, for a batch.
pub(crate) fn slot_record(slot: &ShamirSlot) -> (String, Vec<u8>) {
    (
        SHAMIR_SLOT_ID.to_owned(),
        encode_record(SHAMIR_SLOT_ID, &Record::ShamirSlot(slot.clone())),
    )
}

impl KeyStore {
    /// The Shamir slot, if the store has one.
    pub fn shamir_slot(&self) -> Result<Option<ShamirSlot>, KeystoreError> {
        match self.record(SHAMIR_SLOT_ID)? {
            Some(Record::ShamirSlot(slot)) => Ok(Some(slot)),
            Some(_) => Err(KeystoreError::corrupt(SHAMIR_SLOT_ID, "not a Shamir slot")),
            None => Ok(None),
        }
    }

    /// Which unsealers the store has.
    pub fn unsealers(&self) -> Result<Unsealers, KeystoreError> {
        let passphrase = match self.record(PASSPHRASE_SLOT_ID)? {
            Some(Record::PassphraseSlot(slot)) => Some(slot.kdf),
            Some(_) => {
                return Err(KeystoreError::corrupt(
                    PASSPHRASE_SLOT_ID,
                    "not a passphrase slot record",
                ))
            }
            None => None,
        };
        let shares = self.shamir_slot()?.map(|s| s.info(self.store_id()));
        if passphrase.is_none() && shares.is_none() {
            return Err(KeystoreError::MissingRecord {
                id: "slot/*".into(),
            });
        }
        Ok(Unsealers { passphrase, shares })
    }

    /// An empty share collection for the store's current set.
    pub fn share_collector(&self) -> Result<Collector, KeystoreError> {
        let slot = self.shamir_slot()?.ok_or(KeystoreError::NoShares)?;
        Ok(Collector::new(slot.info(self.store_id())))
    }

    /// Unseals with a threshold of shares collected (and so checked) for the current set.
    pub fn unseal_with_shares(&self, collector: &Collector) -> Result<Unsealed, KeystoreError> {
        let slot = self.shamir_slot()?.ok_or(KeystoreError::NoShares)?;
        if collector.info() != &slot.info(self.store_id()) {
            return Err(KeystoreError::Shares(
                "the shares were collected for another share set (the store changed meanwhile)"
                    .into(),
            ));
        }
        let progress = collector.progress();
        if !progress.complete() {
            return Err(KeystoreError::SharesIncomplete {
                given: progress.given(),
                threshold: progress.threshold,
            });
        }
        let secret = collector
            .combine()
            .map_err(|e| KeystoreError::Shares(e.to_string()))?;
        let dek = envelope::open(&kek_of(&secret), &slot_ad(self.store_id(), &slot), &slot.wrapped_dek)
            .map_err(|_| {
                KeystoreError::corrupt(
                    SHAMIR_SLOT_ID,
                    "the shares match the commitments but do not unwrap the data key (the slot is damaged)",
                )
            })?;
        let bytes: [u8; 32] = dek.expose_secret().try_into().map_err(|_| {
            KeystoreError::corrupt(SHAMIR_SLOT_ID, "the wrapped key is not 32 bytes")
        })?;
        Ok(Unsealed::new(self.clone(), Secret32::new(bytes)))
    }
}

impl Unsealed {
    /// A new share set for this store (fresh secret, the DEK wrapped), not yet written. Its set
    /// id differs from the current and every retired one.
    pub fn prepare_share_set(
        &self,
        threshold: u8,
        count: u8,
    ) -> Result<NewShareSet, KeystoreError> {
        let (retired, taken) = match self.store.shamir_slot()? {
            Some(old) => {
                let mut retired = old.retired.clone();
                retired.push(old.set_id);
                let excess = retired.len().saturating_sub(MAX_RETIRED);
                retired.drain(..excess);
                (retired, vec![old.set_id])
            }
            None => (Vec::new(), Vec::new()),
        };
        new_share_set(
            self.store.store_id(),
            &self.dek,
            threshold,
            count,
            retired,
            &taken,
        )
    }

    /// Writes `set` as the store's Shamir slot (replacing any earlier set, whose shares stop
    /// working) and, if `remove_passphrase`, removes the passphrase slot — with the ceremony
    /// entry, in one transaction.
    pub fn commit_share_set(
        &self,
        set: &NewShareSet,
        remove_passphrase: bool,
        draft: &CeremonyDraft,
    ) -> Result<u64, KeystoreError> {
        if set.store_id != *self.store.store_id() {
            return Err(KeystoreError::Shares(
                "the share set was made for another store".into(),
            ));
        }
        let (id, bytes) = slot_record(set.slot());
        let mut ops: Vec<WriteOp> = vec![(id, Some(bytes))];
        if remove_passphrase {
            ops.push((PASSPHRASE_SLOT_ID.to_owned(), None));
        }
        let seq = self.store.write_recorded(
            &self.ceremony_key(),
            ops,
            &[],
            Some(draft),
            Some("shares-commit"),
        )?;
        Ok(seq.expect("a recorded write returns its sequence number"))
    }
}
