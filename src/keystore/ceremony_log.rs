//! The ceremony log: every key ceremony run on this store, hash-chained and keyed, stored in the
//! store itself (so it travels with backups and is written in the same atomic step as the change
//! it records).
//!
//! # Format
//!
//! Records `ceremony/<seq>` (`seq` in 20 decimal digits, from 1, no gaps) hold
//! `mac (32 bytes) ‖ body`, where `body` is the compact JSON of a [`CeremonyEntry`] exactly as
//! written, and
//!
//! ```text
//! key = HMAC-SHA256(DEK, "custos ceremony v1")          (Unsealed::ceremony_key)
//! mac = HMAC-SHA256(key, prev_mac ‖ body)                prev_mac of entry 1 = 32 zero bytes
//! ```
//!
//! The body repeats its sequence number and `prev_mac` (hex), so an entry moved or spliced from
//! elsewhere fails. `ceremony/head` holds `seq (8 bytes BE) ‖ mac ‖ HMAC(key, "head" ‖ seq ‖ mac)`:
//! deleting the newest entries is found, and so is a head rewritten without the key. Whoever can
//! write the store directory but cannot unseal it can delete the log, not forge or rewrite it;
//! what cannot be noticed from inside the store is a rollback of the whole directory to an older
//! copy — `custos ceremony report` prints the head's MAC for the custodians to write on their
//! sign-off, and a later report must show that entry with that MAC.
//!
//! Appends run in one sled transaction with the records they describe ([`KeyStore::write_recorded`]),
//! so a share rotation, a passphrase change or a new wallet never exists without its entry.
//! Entries hold public facts only (the typed events of [`crate::ceremony`]); tests search every
//! transcript for the secrets of the ceremonies they run.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::envelope::derive_subkey;
use super::error::KeystoreError;
use super::fault::crash_point;
use super::record::{decode_record, encode_record, Record};
use super::{storage, KeyStore, Unsealed};
use crate::secret::{constant_time_eq, Secret32};

/// Prefix of the log's records.
pub const CEREMONY_PREFIX: &str = "ceremony/";
/// Id of the head record.
pub const CEREMONY_HEAD_ID: &str = "ceremony/head";
/// The most bytes one entry's body may have.
pub const MAX_ENTRY_BODY: usize = 64 * 1024;

const KEY_LABEL: &[u8] = b"custos ceremony v1";

/// One write to the store: records to set (`Some`) or remove (`None`).
pub type WriteOp = (String, Option<Vec<u8>>);
/// Encoded records, ready for a batch.
pub type Records = Vec<(String, Vec<u8>)>;
const SEQ_DIGITS: usize = 20;

/// What a caller records: when, who, and the event (public facts, as JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct CeremonyDraft {
    /// Unix seconds.
    pub at: i64,
    /// The operator, as named on the command line (or the server principal).
    pub operator: String,
    /// The event: an object with at least `"event": "<name>"`.
    pub event: serde_json::Value,
}

/// One entry as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The previous entry's MAC, hex (64 zeros for entry 1).
    pub prev: String,
    /// Unix seconds.
    pub at: i64,
    /// Who ran it.
    pub operator: String,
    /// What happened (see [`crate::ceremony::CeremonyEvent`]).
    pub event: serde_json::Value,
}

/// An entry with its MAC, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    /// The entry.
    pub entry: CeremonyEntry,
    /// Its MAC, hex.
    pub mac: String,
}

/// What [`Unsealed::verify_ceremony_log`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogCheck {
    /// Every entry is in place and authentic.
    Intact {
        /// Number of entries.
        entries: u64,
        /// The newest entry's MAC, hex (empty when the log is empty).
        head_mac: String,
    },
    /// The first break.
    Broken {
        /// The sequence number where it breaks.
        seq: u64,
        /// `entry 4: mac mismatch`, `entry 4 missing`, …
        message: String,
    },
}

/// The record id of entry `seq`.
pub fn entry_id(seq: u64) -> String {
    format!("{CEREMONY_PREFIX}{seq:0SEQ_DIGITS$}")
}

/// Whether `id` is a record id of the log.
pub fn is_ceremony_id(id: &str) -> bool {
    id == CEREMONY_HEAD_ID
        || id
            .strip_prefix(CEREMONY_PREFIX)
            .is_some_and(|d| d.len() == SEQ_DIGITS && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The log key of a store's data key.
pub(crate) fn key_of(dek: &Secret32) -> Secret32 {
    derive_subkey(dek, KEY_LABEL)
}

fn mac_of(key: &Secret32, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).expect("HMAC takes any key");
    mac.update(prev);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn head_tag(key: &Secret32, seq: u64, mac: &[u8; 32]) -> [u8; 32] {
    let mut h =
        <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()).expect("HMAC takes any key");
    h.update(b"head");
    h.update(&seq.to_be_bytes());
    h.update(mac);
    h.finalize().into_bytes().into()
}

fn encode_head(key: &Secret32, seq: u64, mac: &[u8; 32]) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(mac);
    v.extend_from_slice(&head_tag(key, seq, mac));
    v
}

fn decode_head(v: &[u8]) -> Option<(u64, [u8; 32], [u8; 32])> {
    if v.len() != 72 {
        return None;
    }
    Some((
        u64::from_be_bytes(v[..8].try_into().ok()?),
        v[8..40].try_into().ok()?,
        v[40..].try_into().ok()?,
    ))
}

/// Parses an entry record's body (`mac ‖ json`).
fn split_entry(seq: u64, bytes: &[u8]) -> Result<([u8; 32], CeremonyEntry), String> {
    if bytes.len() < 33 {
        return Err(format!("entry {seq}: truncated"));
    }
    let mac: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
    let entry: CeremonyEntry = serde_json::from_slice(&bytes[32..])
        .map_err(|e| format!("entry {seq}: does not parse ({e})"))?;
    Ok((mac, entry))
}

/// The records that append `draft` after the head `(seq, mac)`: the entry and the new head.
fn append_records(
    key: &Secret32,
    head: Option<(u64, [u8; 32])>,
    draft: &CeremonyDraft,
) -> Result<(u64, Records), KeystoreError> {
    let (last, prev) = head.unwrap_or((0, [0; 32]));
    let seq = last + 1;
    let entry = CeremonyEntry {
        seq,
        prev: hex::encode(prev),
        at: draft.at,
        operator: draft.operator.clone(),
        event: draft.event.clone(),
    };
    let body = serde_json::to_vec(&entry).map_err(|e| {
        KeystoreError::corrupt(CEREMONY_HEAD_ID, format!("cannot encode an entry: {e}"))
    })?;
    if body.len() > MAX_ENTRY_BODY {
        return Err(KeystoreError::CeremonyEntryTooLarge(body.len()));
    }
    let mac = mac_of(key, &prev, &body);
    let mut value = mac.to_vec();
    value.extend_from_slice(&body);
    let id = entry_id(seq);
    Ok((
        seq,
        vec![
            (id.clone(), encode_record(&id, &Record::Ceremony(value))),
            (
                CEREMONY_HEAD_ID.to_owned(),
                encode_record(
                    CEREMONY_HEAD_ID,
                    &Record::Ceremony(encode_head(key, seq, &mac)),
                ),
            ),
        ],
    ))
}

/// The head `(seq, mac)` of the stored log, checked with `key`; `None` when the log is empty.
fn read_head(
    key: &Secret32,
    bytes: Option<&[u8]>,
) -> Result<Option<(u64, [u8; 32])>, KeystoreError> {
    let Some(bytes) = bytes else { return Ok(None) };
    let Record::Ceremony(value) = decode_record(CEREMONY_HEAD_ID, bytes)? else {
        return Err(KeystoreError::corrupt(CEREMONY_HEAD_ID, "not a log head"));
    };
    let (seq, mac, tag) = decode_head(&value)
        .ok_or_else(|| KeystoreError::corrupt(CEREMONY_HEAD_ID, "the head has the wrong size"))?;
    if !constant_time_eq(&tag, &head_tag(key, seq, &mac)) {
        return Err(KeystoreError::corrupt(
            CEREMONY_HEAD_ID,
            "the log head does not authenticate under this store's key (rewritten without the seal?)",
        ));
    }
    Ok(Some((seq, mac)))
}

impl KeyStore {
    /// Applies `ops` and appends `draft` to the ceremony log (keyed with `key`), in one sled
    /// transaction, then flushes; refuses ([`KeystoreError::AlreadyPresent`]) if a record of
    /// `absent` exists. Returns the entry's sequence number. `crash_at` names crash points
    /// (`<name>:before-write`, `:after-write`, `:after-flush`) for the crash tests.
    pub(crate) fn write_recorded(
        &self,
        key: &Secret32,
        ops: Vec<WriteOp>,
        absent: &[&str],
        draft: Option<&CeremonyDraft>,
        crash_at: Option<&str>,
    ) -> Result<Option<u64>, KeystoreError> {
        let point = |step: &str| {
            if let Some(name) = crash_at {
                crash_point(&format!("{name}:{step}"));
            }
        };
        point("before-write");
        let result = self.inner.db.transaction(|tx| {
            for id in absent {
                if tx.get(id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(
                        KeystoreError::AlreadyPresent {
                            id: (*id).to_owned(),
                        },
                    ));
                }
            }
            for (id, value) in &ops {
                match value {
                    Some(v) => tx.insert(id.as_bytes(), v.as_slice())?,
                    None => tx.remove(id.as_bytes())?,
                };
            }
            let Some(draft) = draft else {
                return Ok(None);
            };
            let head_bytes = tx.get(CEREMONY_HEAD_ID.as_bytes())?;
            let head = read_head(key, head_bytes.as_deref())
                .map_err(ConflictableTransactionError::Abort)?;
            let (seq, records) =
                append_records(key, head, draft).map_err(ConflictableTransactionError::Abort)?;
            for (id, value) in records {
                tx.insert(id.as_bytes(), value)?;
            }
            Ok(Some(seq))
        });
        let seq = match result {
            Ok(seq) => seq,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(storage(self.dir(), e)),
        };
        point("after-write");
        self.flush()?;
        point("after-flush");
        Ok(seq)
    }

    /// The store's id in hex (public: it is in the header, in clear).
    pub fn store_id_hex(&self) -> String {
        hex::encode(self.store_id())
    }

    /// Every log entry in order, not authenticated (see [`Unsealed::verify_ceremony_log`]).
    /// Entries that do not parse are skipped here; verification reports them.
    pub fn ceremony_entries(&self) -> Result<Vec<StoredEntry>, KeystoreError> {
        let mut out = Vec::new();
        for item in self.inner.db.scan_prefix(CEREMONY_PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|e| storage(self.dir(), e))?;
            let id = String::from_utf8_lossy(&k).into_owned();
            if id == CEREMONY_HEAD_ID {
                continue;
            }
            let Ok(Record::Ceremony(value)) = decode_record(&id, &v) else {
                continue;
            };
            if let Ok((mac, entry)) = split_entry(0, &value) {
                out.push(StoredEntry {
                    entry,
                    mac: hex::encode(mac),
                });
            }
        }
        Ok(out)
    }
}

/// The records of a new store's first log entry (the store does not exist yet).
pub(crate) fn first_entry(dek: &Secret32, draft: &CeremonyDraft) -> Result<Records, KeystoreError> {
    append_records(&key_of(dek), None, draft).map(|(_, records)| records)
}

impl Unsealed {
    /// The key of the ceremony log: HMAC-SHA256(DEK, "custos ceremony v1").
    pub fn ceremony_key(&self) -> Secret32 {
        key_of(&self.dek)
    }

    /// Appends one entry (one transaction, flushed); returns its sequence number.
    pub fn append_ceremony(&self, draft: &CeremonyDraft) -> Result<u64, KeystoreError> {
        let seq =
            self.store
                .write_recorded(&self.ceremony_key(), Vec::new(), &[], Some(draft), None)?;
        Ok(seq.expect("an append with a draft returns its sequence number"))
    }

    /// Walks the whole log and reports the first break: a gap, an entry whose `prev` is not its
    /// predecessor's MAC, a MAC or head that does not authenticate, an entry that does not parse,
    /// or entries missing at the end according to the head.
    pub fn verify_ceremony_log(&self) -> Result<LogCheck, KeystoreError> {
        let key = self.ceremony_key();
        let broken = |seq: u64, message: String| Ok(LogCheck::Broken { seq, message });
        let mut prev = [0u8; 32];
        let mut expected = 1u64;
        let db = &self.store.inner.db;
        for item in db.scan_prefix(CEREMONY_PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|e| storage(self.store.dir(), e))?;
            let id = String::from_utf8_lossy(&k).into_owned();
            if id == CEREMONY_HEAD_ID {
                continue;
            }
            if id != entry_id(expected) {
                return broken(expected, format!("entry {expected} missing"));
            }
            let value = match decode_record(&id, &v) {
                Ok(Record::Ceremony(value)) => value,
                Ok(_) => return broken(expected, format!("entry {expected}: wrong record kind")),
                Err(e) => return broken(expected, format!("entry {expected}: {e}")),
            };
            let (mac, entry) = match split_entry(expected, &value) {
                Ok(x) => x,
                Err(message) => return broken(expected, message),
            };
            if entry.seq != expected {
                return broken(
                    expected,
                    format!("entry {expected}: carries sequence {}", entry.seq),
                );
            }
            if entry.prev != hex::encode(prev) {
                return broken(
                    expected,
                    format!(
                        "entry {expected}: prev does not match entry {}",
                        expected - 1
                    ),
                );
            }
            if !constant_time_eq(&mac_of(&key, &prev, &value[32..]), &mac) {
                return broken(expected, format!("entry {expected}: mac mismatch"));
            }
            prev = mac;
            expected += 1;
        }
        let entries = expected - 1;
        let head_bytes = db
            .get(CEREMONY_HEAD_ID.as_bytes())
            .map_err(|e| storage(self.store.dir(), e))?;
        match read_head(&key, head_bytes.as_deref()) {
            Err(e) => return broken(entries + 1, e.to_string()),
            Ok(None) if entries > 0 => {
                return broken(entries, "the log head is missing".into());
            }
            Ok(None) => {}
            Ok(Some((seq, mac))) => {
                if seq > entries {
                    return broken(entries + 1, format!("entry {} missing", entries + 1));
                }
                if seq < entries || mac != prev {
                    return broken(
                        entries,
                        format!("entry {entries}: not the head the log recorded"),
                    );
                }
            }
        }
        Ok(LogCheck::Intact {
            entries,
            head_mac: if entries == 0 {
                String::new()
            } else {
                hex::encode(prev)
            },
        })
    }
}
