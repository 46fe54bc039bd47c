//! The anchor: the state database's audit head (sequence and MAC), kept in the sealed key store,
//! outside the state database it vouches for.
//!
//! The signing core writes it when it seals, at a clean shutdown, after unsealing and every half
//! minute while serving; at unseal it refuses a state whose audit chain ends before the anchored
//! record, or that does not contain the anchored record at its place (`crate::state::anchor`).
//! The record (`anchor/state`) is sealed under the DEK like a wallet, with its id in the
//! associated data: whoever can write the key store's directory cannot forge or move it; they can
//! only delete it or put back an older one — which makes the check weaker (an older anchor), never
//! wrong, and what remains is written down in `crate::state::anchor`.

use serde::{Deserialize, Serialize};

use super::envelope::{self, associated_data};
use super::error::KeystoreError;
use super::record::{encode_record, Record, RecordKind, ANCHOR_ID, FORMAT_VERSION};
use super::unsealed::Unsealed;

/// An anchored audit head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnchor {
    /// The audit record's sequence number.
    pub audit_sequence: u64,
    /// Its MAC.
    #[serde(with = "hex_32")]
    pub audit_mac: [u8; 32],
    /// When the anchor was written, unix seconds.
    pub written_at: i64,
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

impl Unsealed {
    /// The anchored audit head, if one was written.
    pub fn state_anchor(&self) -> Result<Option<StateAnchor>, KeystoreError> {
        let Some(bytes) = self.open_record(ANCHOR_ID, RecordKind::Anchor)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.expose_secret())
            .map(Some)
            .map_err(|e| KeystoreError::corrupt(ANCHOR_ID, format!("not an anchor: {e}")))
    }

    /// Writes (replaces) the anchored audit head, durably.
    pub fn set_state_anchor(&self, anchor: &StateAnchor) -> Result<(), KeystoreError> {
        let body = serde_json::to_vec(anchor)
            .map_err(|e| KeystoreError::corrupt(ANCHOR_ID, e.to_string()))?;
        let ad = associated_data(
            FORMAT_VERSION,
            RecordKind::Anchor.byte(),
            self.store.store_id(),
            ANCHOR_ID,
            b"",
        );
        let sealed = envelope::seal(&self.dek, &ad, &body)?;
        self.store
            .put(ANCHOR_ID, encode_record(ANCHOR_ID, &Record::Anchor(sealed)))
    }
}
