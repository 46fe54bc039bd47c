//! The HSM unsealer slot, `slot/pkcs11`: the store's data key (DEK) sealed by an AES-256 key that
//! never leaves a PKCS#11 token, so a server restarted beside its HSM unseals itself.
//!
//! ```text
//!   AES-256 key in the token (custos-unseal/<store id>; sensitive, not extractable)
//!        --CKM_AES_GCM(IV, AD = label ‖ version ‖ kind ‖ store id ‖ "slot/pkcs11" ‖ binding)-->
//!   sealed DEK                                                                  (slot/pkcs11)
//! ```
//!
//! It is a third way in beside `slot/passphrase` (and the Shamir slot): unsealing through it
//! yields the same DEK, and removing it (`custos hsm unseal-slot remove`, which also destroys the
//! token's key) revokes that way in. The record binds, through the GCM associated data, the store
//! id, the record id and its own parameters (unsealer type and key label): copied into another
//! store, or with its label changed, it no longer opens.
//!
//! # Record body (after the version and kind bytes, see [`super::record`])
//!
//! `unsealer 3 (PKCS#11 AES-GCM) ‖ key label (u8 length + 1..=64 bytes, UTF-8) ‖ IV (12) ‖
//! sealed DEK (u8 length = 48: 32 + 16-byte tag)`.
//!
//! # What it trusts
//!
//! Whoever can use the token's key with its PIN can unseal the store: the PIN file of the server
//! becomes as sensitive as the passphrase. That is the point of auto-unseal (an unattended
//! restart); operators who want a human at every start leave `auto_unseal` off. Creating the slot
//! needs the store unsealed (the passphrase), so holding the token alone does not create a way in.
//!
//! # Crash safety
//!
//! Adding: the key is made in the token first (or reused if a previous attempt made it and died),
//! then the record is written with one atomic insert and flushed; a crash in between leaves an
//! unused key, which the next attempt reuses. Removing: the record is removed and flushed first,
//! then the key destroyed; a crash in between leaves a key no record refers to.
//!
//! # Recorded
//!
//! `custos hsm unseal-slot add|remove` write their ceremony-log entry in the same transaction as
//! the record ([`Unsealed::add_pkcs11_slot_recorded`], [`Unsealed::remove_pkcs11_slot_recorded`]).

use super::ceremony_log::CeremonyDraft;
use super::envelope::associated_data;
use super::error::KeystoreError;
use super::record::{encode_record, Record, RecordKind, FORMAT_VERSION};
use super::unsealed::Unsealed;
use super::KeyStore;
use crate::backend::pkcs11::wrap::{self, IV_LEN, TAG_LEN};
use crate::backend::pkcs11::{Pkcs11Error, Token};
use crate::secret::Secret32;

/// Id of the HSM unsealer slot.
pub const PKCS11_SLOT_ID: &str = "slot/pkcs11";
/// The unsealer type byte of this slot (the passphrase slot is 1; 2 is left to Shamir shares).
pub const UNSEALER_PKCS11: u8 = 3;
const SEALED_LEN: usize = 32 + TAG_LEN;
const MAX_LABEL: usize = 64;

/// The stored slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Slot {
    /// The label of the AES key in the token.
    pub key_label: String,
    /// The GCM IV.
    pub iv: [u8; IV_LEN],
    /// The sealed DEK (ciphertext and tag).
    pub sealed_dek: Vec<u8>,
}

impl Pkcs11Slot {
    /// The slot's parameters as bound into the associated data.
    pub fn binding(&self) -> Vec<u8> {
        let mut out = vec![UNSEALER_PKCS11, self.key_label.len() as u8];
        out.extend_from_slice(self.key_label.as_bytes());
        out
    }

    /// Appends the record body (after version and kind).
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.binding());
        out.extend_from_slice(&self.iv);
        out.push(self.sealed_dek.len() as u8);
        out.extend_from_slice(&self.sealed_dek);
    }
}

/// Decodes the body after the unsealer byte; every byte must be accounted for.
pub(crate) fn decode_body(bytes: &[u8]) -> Result<Pkcs11Slot, String> {
    let (&label_len, rest) = bytes.split_first().ok_or("truncated: no key label")?;
    let label_len = usize::from(label_len);
    if label_len == 0 || label_len > MAX_LABEL {
        return Err(format!(
            "key label of {label_len} bytes (1 to {MAX_LABEL} expected)"
        ));
    }
    if rest.len() < label_len + IV_LEN + 1 {
        return Err(format!(
            "truncated: {} bytes after the label length",
            rest.len()
        ));
    }
    let (label, rest) = rest.split_at(label_len);
    let key_label = std::str::from_utf8(label)
        .map_err(|_| "the key label is not UTF-8")?
        .to_owned();
    let (iv, rest) = rest.split_at(IV_LEN);
    let (&sealed_len, rest) = rest.split_first().ok_or("truncated: no sealed key")?;
    if usize::from(sealed_len) != SEALED_LEN {
        return Err(format!(
            "sealed key of {sealed_len} bytes ({SEALED_LEN} expected)"
        ));
    }
    if rest.len() != SEALED_LEN {
        return Err(format!(
            "{} bytes of sealed key ({SEALED_LEN} expected)",
            rest.len()
        ));
    }
    Ok(Pkcs11Slot {
        key_label,
        iv: iv.try_into().expect("split at IV_LEN"),
        sealed_dek: rest.to_vec(),
    })
}

fn aad(store_id: &[u8; 16], slot_binding: &[u8]) -> Vec<u8> {
    associated_data(
        FORMAT_VERSION,
        RecordKind::Slot.byte(),
        store_id,
        PKCS11_SLOT_ID,
        slot_binding,
    )
}

fn hsm(e: Pkcs11Error) -> KeystoreError {
    KeystoreError::Hsm(e)
}

impl KeyStore {
    /// The HSM slot, if the store has one.
    pub fn pkcs11_slot(&self) -> Result<Option<Pkcs11Slot>, KeystoreError> {
        match self.record(PKCS11_SLOT_ID)? {
            Some(Record::Pkcs11Slot(slot)) => Ok(Some(slot)),
            Some(_) => Err(KeystoreError::corrupt(
                PKCS11_SLOT_ID,
                "not a pkcs#11 slot record",
            )),
            None => Ok(None),
        }
    }

    /// Unseals through the HSM slot with `token`. No slot is [`KeystoreError::MissingRecord`];
    /// a token that is absent, locked or failing is [`KeystoreError::Hsm`] with an unavailable
    /// cause; a key that does not open the slot is [`KeystoreError::Hsm`] naming it.
    pub fn unseal_with_token(&self, token: &Token) -> Result<Unsealed, KeystoreError> {
        let slot = self
            .pkcs11_slot()?
            .ok_or_else(|| KeystoreError::MissingRecord {
                id: PKCS11_SLOT_ID.into(),
            })?;
        let ad = aad(self.store_id(), &slot.binding());
        let opened = wrap::open(token, &slot.key_label, &ad, &slot.iv, &slot.sealed_dek)
            .map_err(hsm)?
            .ok_or_else(|| {
                hsm(Pkcs11Error::BadObject {
                    token: token.name().to_owned(),
                    label: slot.key_label.clone(),
                    reason: format!(
                        "it does not open {PKCS11_SLOT_ID} (another key under this label, or the record was changed)"
                    ),
                })
            })?;
        let bytes: [u8; 32] = opened.expose_secret().try_into().map_err(|_| {
            KeystoreError::corrupt(PKCS11_SLOT_ID, "the sealed key is not 32 bytes")
        })?;
        Ok(Unsealed::new(self.clone(), Secret32::new(bytes)))
    }
}

impl Unsealed {
    /// Adds the HSM slot: an AES-256 key made in `token` (or the one a crashed attempt left
    /// there) seals the DEK. Refuses if the store has an HSM slot already. Returns the key label.
    pub fn add_pkcs11_slot(&self, token: &Token) -> Result<String, KeystoreError> {
        self.add_slot(token, |_| None)
    }

    /// [`Self::add_pkcs11_slot`] with the ceremony-log entry `draft` builds from the key label,
    /// written in the same transaction as the slot (`custos hsm unseal-slot add`).
    pub fn add_pkcs11_slot_recorded(
        &self,
        token: &Token,
        draft: impl FnOnce(&str) -> CeremonyDraft,
    ) -> Result<String, KeystoreError> {
        self.add_slot(token, |label| Some(draft(label)))
    }

    fn add_slot(
        &self,
        token: &Token,
        draft: impl FnOnce(&str) -> Option<CeremonyDraft>,
    ) -> Result<String, KeystoreError> {
        if self.store.pkcs11_slot()?.is_some() {
            return Err(KeystoreError::Hsm(Pkcs11Error::Invalid(format!(
                "the key store has an hsm slot already ({PKCS11_SLOT_ID}); remove it first"
            ))));
        }
        let label = wrap::unseal_key_label(self.store.store_id());
        // A key left by an attempt that died before writing the record is reused.
        wrap::ensure_unseal_key(token, &label).map_err(hsm)?;
        let mut slot = Pkcs11Slot {
            key_label: label.clone(),
            iv: [0; IV_LEN],
            sealed_dek: Vec::new(),
        };
        let ad = aad(self.store.store_id(), &slot.binding());
        let (iv, sealed) = wrap::seal(token, &label, &ad, self.dek.expose_secret()).map_err(hsm)?;
        if sealed.len() != SEALED_LEN {
            return Err(hsm(Pkcs11Error::Invalid(format!(
                "the token returned {} bytes for the sealed key ({SEALED_LEN} expected)",
                sealed.len()
            ))));
        }
        slot.iv = iv;
        slot.sealed_dek = sealed;
        // Prove the slot opens before it is stored.
        let opened = wrap::open(token, &label, &ad, &slot.iv, &slot.sealed_dek)
            .map_err(hsm)?
            .filter(|dek| dek.expose_secret() == self.dek.expose_secret());
        if opened.is_none() {
            return Err(hsm(Pkcs11Error::Invalid(
                "the token does not open what it sealed: slot not stored".into(),
            )));
        }
        let bytes = encode_record(PKCS11_SLOT_ID, &Record::Pkcs11Slot(slot));
        let draft = draft(&label);
        // The slot and its ceremony entry in one transaction (with no entry: the slot alone).
        match self.store.write_recorded(
            &self.ceremony_key(),
            vec![(PKCS11_SLOT_ID.to_owned(), Some(bytes))],
            &[PKCS11_SLOT_ID],
            draft.as_ref(),
            None,
        ) {
            Err(KeystoreError::AlreadyPresent { .. }) => Err(KeystoreError::Hsm(
                Pkcs11Error::Invalid(format!("{PKCS11_SLOT_ID} was added meanwhile")),
            )),
            Err(e) => Err(e),
            Ok(_) => Ok(label),
        }
    }

    /// Removes the HSM slot (record first, flushed), then destroys its key in `token` if given.
    /// `Ok(false)` if there was no slot.
    pub fn remove_pkcs11_slot(&self, token: Option<&Token>) -> Result<bool, KeystoreError> {
        self.remove_slot(token, |_| None)
    }

    /// [`Self::remove_pkcs11_slot`] with the ceremony-log entry `draft` builds from the slot
    /// removed, written in the same transaction as the removal, before the key is destroyed
    /// (`custos hsm unseal-slot remove`). No slot: nothing is written, `Ok(false)`.
    pub fn remove_pkcs11_slot_recorded(
        &self,
        token: Option<&Token>,
        draft: impl FnOnce(&Pkcs11Slot) -> CeremonyDraft,
    ) -> Result<bool, KeystoreError> {
        self.remove_slot(token, |slot| Some(draft(slot)))
    }

    fn remove_slot(
        &self,
        token: Option<&Token>,
        draft: impl FnOnce(&Pkcs11Slot) -> Option<CeremonyDraft>,
    ) -> Result<bool, KeystoreError> {
        let Some(slot) = self.store.pkcs11_slot()? else {
            return Ok(false);
        };
        let draft = draft(&slot);
        // Removal and entry in one transaction, flushed, before the key is destroyed: a crash
        // after it leaves a key no record refers to, never a slot whose key is gone.
        self.store.write_recorded(
            &self.ceremony_key(),
            vec![(PKCS11_SLOT_ID.to_owned(), None)],
            &[],
            draft.as_ref(),
            None,
        )?;
        if let Some(token) = token {
            wrap::destroy_unseal_key(token, &slot.key_label).map_err(hsm)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::record::decode_record;

    fn sample() -> Pkcs11Slot {
        Pkcs11Slot {
            key_label: "custos-unseal/00112233445566778899aabbccddeeff".into(),
            iv: [7; IV_LEN],
            sealed_dek: vec![9; SEALED_LEN],
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_named() {
        let record = Record::Pkcs11Slot(sample());
        let bytes = encode_record(PKCS11_SLOT_ID, &record);
        assert_eq!(decode_record(PKCS11_SLOT_ID, &bytes).unwrap(), record);
        for len in 0..bytes.len() {
            let err = decode_record(PKCS11_SLOT_ID, &bytes[..len]).unwrap_err();
            assert!(err.to_string().contains(PKCS11_SLOT_ID), "{err}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(decode_record(PKCS11_SLOT_ID, &flipped).is_err());
        }
        // Not readable under the passphrase slot's id.
        assert!(decode_record("slot/passphrase", &bytes).is_err());
    }

    #[test]
    fn body_bounds() {
        let mut body = Vec::new();
        sample().encode_body(&mut body);
        assert_eq!(decode_body(&body[1..]).unwrap(), sample());
        let mut longer = body[1..].to_vec();
        longer.push(0);
        assert!(decode_body(&longer).is_err());
        assert!(decode_body(&[0]).is_err());
        assert!(decode_body(&[65]).is_err());
    }
}
