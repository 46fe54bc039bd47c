//! The stored form of every record, with its format version: encoding, and decoding that never
//! panics (it is a fuzz target: `fuzz/fuzz_targets/keystore_record.rs` calls [`decode_record`]).
//!
//! Every value in the store is one record, keyed by its id:
//!
//! | id | kind | body |
//! |---|---|---|
//! | `header` | 1 | magic `custos-keystore\0`, 16-byte random store id |
//! | `slot/passphrase` | 2 | unsealer `1` (argon2id v0x13), m, t, p (u32 BE), salt (u8 length + 16–64 bytes), nonce (24), wrapped DEK (u8 length + 48 bytes) |
//! | `slot/pkcs11` | 2 | unsealer `3` (PKCS#11 AES-GCM), key label (u8 length + 1–64 bytes), IV (12), sealed DEK (u8 length + 48 bytes); see [`super::hsm_slot`] |
//! | `seed/<id>` | 3 | nonce (24), ciphertext + tag (16 … 4096 bytes) |
//! | `wallet/<name>` | 4 | nonce (24), ciphertext + tag (16 … 65536 bytes) |
//! | `slot/shamir` | 2 | unsealer `2`, share set, threshold, commitments, retired sets, nonce, wrapped DEK ([`super::shamir_slot`]) |
//! | `ceremony/<seq>`, `ceremony/head` | 5 | a log entry or the log head (1 … 65600 bytes, [`super::ceremony_log`]) |
//! | `anchor/state` | 8 | nonce (24), ciphertext + tag (16 … 4096 bytes): the state's audit head |
//!
//! Each record is `version (u8) ‖ kind (u8) ‖ body ‖ check`, where `check` is the first 8 bytes of
//! SHA-256 over the id and everything before it. The check is not a security measure (the AEAD is):
//! it lets a truncated or bit-flipped record be reported as *corrupt*, by name, even where the AEAD
//! could not tell damage from a wrong key (the passphrase slot, whose failure would otherwise read
//! "wrong passphrase").

use sha2::{Digest, Sha256};

use super::ceremony_log::{is_ceremony_id, MAX_ENTRY_BODY};
use super::envelope::{SealedBox, TAG_LEN};
use super::error::KeystoreError;
use super::kdf::KdfParams;
use super::shamir_slot::{ShamirSlot, SHAMIR_SLOT_ID};

/// The record format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Id of the header record.
pub const HEADER_ID: &str = "header";
/// Id of the passphrase unsealer slot.
pub const PASSPHRASE_SLOT_ID: &str = "slot/passphrase";
/// Prefix of sealed seed ids.
pub const SEED_PREFIX: &str = "seed/";
/// Prefix of sealed wallet ids.
pub const WALLET_PREFIX: &str = "wallet/";
/// Id of the sealed anchor of the state database's audit head (`crate::keystore::anchor`).
pub const ANCHOR_ID: &str = "anchor/state";

const MAGIC: &[u8; 16] = b"custos-keystore\0";
const CHECK_LEN: usize = 8;
const DEK_WRAP_LEN: usize = 32 + TAG_LEN;
const MAX_SEED_CIPHERTEXT: usize = 4096;
const MAX_WALLET_CIPHERTEXT: usize = 65536;
const UNSEALER_ARGON2ID: u8 = 1;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// The store header.
    Header = 1,
    /// An unsealer slot (wraps the DEK).
    Slot = 2,
    /// A sealed seed.
    Seed = 3,
    /// A sealed wallet.
    Wallet = 4,
    /// A ceremony log entry or its head.
    Ceremony = 5,
    /// The sealed anchor of the state's audit head.
    Anchor = 8,
}

impl RecordKind {
    /// The kind an id must hold, or `None` for an id the store never writes.
    pub fn for_id(id: &str) -> Option<RecordKind> {
        if id == HEADER_ID {
            Some(RecordKind::Header)
        } else if id == PASSPHRASE_SLOT_ID
            || id == SHAMIR_SLOT_ID
            || id == super::hsm_slot::PKCS11_SLOT_ID
        {
            Some(RecordKind::Slot)
        } else if is_ceremony_id(id) {
            Some(RecordKind::Ceremony)
        } else if id == ANCHOR_ID {
            Some(RecordKind::Anchor)
        } else if id.strip_prefix(SEED_PREFIX).is_some_and(valid_seed_id) {
            Some(RecordKind::Seed)
        } else if id
            .strip_prefix(WALLET_PREFIX)
            .is_some_and(|n| validate_wallet_name(n).is_ok())
        {
            Some(RecordKind::Wallet)
        } else {
            None
        }
    }

    /// The byte stored for this kind.
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// The store header: identifies the store, so records cannot be moved between stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Random, assigned at creation.
    pub store_id: [u8; 16],
}

/// The passphrase unsealer slot: argon2id parameters and salt, and the DEK wrapped by the KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassphraseSlot {
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: Vec<u8>,
    /// The DEK sealed under the KEK.
    pub wrapped_dek: SealedBox,
}

impl PassphraseSlot {
    /// The unsealer's parameters as bound into the wrapped DEK's associated data.
    pub fn binding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.salt.len());
        out.push(UNSEALER_ARGON2ID);
        out.extend_from_slice(&self.kdf.memory_kib().to_be_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_be_bytes());
        out.extend_from_slice(&self.kdf.parallelism().to_be_bytes());
        out.push(self.salt.len() as u8);
        out.extend_from_slice(&self.salt);
        out
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// `header`
    Header(Header),
    /// `slot/passphrase`
    PassphraseSlot(PassphraseSlot),
    /// `slot/pkcs11`
    Pkcs11Slot(super::hsm_slot::Pkcs11Slot),
    /// `seed/<id>`
    Seed(SealedBox),
    /// `wallet/<name>`
    Wallet(SealedBox),
    /// `slot/shamir`
    ShamirSlot(ShamirSlot),
    /// `ceremony/<seq>` or `ceremony/head` (parsed by the log).
    Ceremony(Vec<u8>),
    /// `anchor/state`
    Anchor(SealedBox),
}

impl Record {
    /// This record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Header(_) => RecordKind::Header,
            Record::PassphraseSlot(_) | Record::Pkcs11Slot(_) => RecordKind::Slot,
            Record::Seed(_) => RecordKind::Seed,
            Record::Wallet(_) => RecordKind::Wallet,
            Record::ShamirSlot(_) => RecordKind::Slot,
            Record::Ceremony(_) => RecordKind::Ceremony,
            Record::Anchor(_) => RecordKind::Anchor,
        }
    }
}

/// Whether `id` is a seed id the store assigns: 8 lower-case hex digits (a master fingerprint).
pub fn valid_seed_id(id: &str) -> bool {
    id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a wallet name: 1–64 characters, ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit (names appear in record ids, tables and scripts).
pub fn validate_wallet_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a wallet name has 1 to 64 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("a wallet name starts with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("a wallet name has only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Encodes `record` for storage under `id`.
pub fn encode_record(id: &str, record: &Record) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, record.kind().byte()];
    match record {
        Record::Header(header) => {
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&header.store_id);
        }
        Record::PassphraseSlot(slot) => {
            out.extend_from_slice(&slot.binding());
            out.extend_from_slice(&slot.wrapped_dek.nonce);
            out.push(slot.wrapped_dek.ciphertext.len() as u8);
            out.extend_from_slice(&slot.wrapped_dek.ciphertext);
        }
        Record::Pkcs11Slot(slot) => slot.encode_body(&mut out),
        Record::Seed(sealed) | Record::Wallet(sealed) | Record::Anchor(sealed) => {
            out.extend_from_slice(&sealed.nonce);
            out.extend_from_slice(&sealed.ciphertext);
        }
        Record::ShamirSlot(slot) => out.extend_from_slice(&slot.encode_body()),
        Record::Ceremony(bytes) => out.extend_from_slice(bytes),
    }
    let check = check_value(id, &out);
    out.extend_from_slice(&check);
    out
}

/// The integrity check appended to a record (public so that the fuzz target can build records
/// whose check is right and reach the decoder behind it).
pub fn check_value(id: &str, bytes: &[u8]) -> [u8; CHECK_LEN] {
    let mut hash = Sha256::new();
    hash.update((id.len() as u64).to_be_bytes());
    hash.update(id.as_bytes());
    hash.update(bytes);
    let digest = hash.finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

/// Decodes the record stored under `id`. Any byte string gives a value or an error naming the
/// record, never a panic.
pub fn decode_record(id: &str, bytes: &[u8]) -> Result<Record, KeystoreError> {
    let corrupt = |reason: String| KeystoreError::corrupt(id, reason);
    let Some(expected_kind) = RecordKind::for_id(id) else {
        return Err(corrupt("not a record id this store writes".into()));
    };
    if bytes.len() < 2 + CHECK_LEN {
        return Err(corrupt(format!("truncated: {} bytes", bytes.len())));
    }
    let (content, check) = bytes.split_at(bytes.len() - CHECK_LEN);
    if check_value(id, content) != check {
        return Err(corrupt(
            "its check value does not match (the record is truncated or damaged)".into(),
        ));
    }
    if content[0] != FORMAT_VERSION {
        return Err(KeystoreError::UnsupportedVersion {
            id: super::error::printable_id(id),
            got: content[0],
            expected: FORMAT_VERSION,
        });
    }
    if content[1] != expected_kind.byte() {
        return Err(corrupt(format!(
            "expected record kind {}, found {}",
            expected_kind.byte(),
            content[1]
        )));
    }
    decode_body(expected_kind, id, &content[2..]).map_err(corrupt)
}

fn decode_body(kind: RecordKind, id: &str, bytes: &[u8]) -> Result<Record, String> {
    let mut body = Reader(bytes);
    let record = match kind {
        RecordKind::Slot if id == SHAMIR_SLOT_ID => {
            return ShamirSlot::decode_body(bytes).map(Record::ShamirSlot)
        }
        RecordKind::Ceremony => {
            if bytes.is_empty() || bytes.len() > MAX_ENTRY_BODY + 64 {
                return Err(format!(
                    "log record of {} bytes (1 to {} expected)",
                    bytes.len(),
                    MAX_ENTRY_BODY + 64
                ));
            }
            return Ok(Record::Ceremony(bytes.to_vec()));
        }
        RecordKind::Header => {
            if body.take(MAGIC.len())? != MAGIC {
                return Err("not a custos key store header".into());
            }
            Record::Header(Header {
                store_id: body.array()?,
            })
        }
        RecordKind::Slot => {
            let unsealer = body.byte()?;
            if unsealer == super::hsm_slot::UNSEALER_PKCS11 {
                return super::hsm_slot::decode_body(body.rest()).map(Record::Pkcs11Slot);
            }
            if unsealer != UNSEALER_ARGON2ID {
                return Err(format!("unknown unsealer type {unsealer}"));
            }
            let m = body.u32()?;
            let t = body.u32()?;
            let p = body.u32()?;
            let kdf = KdfParams::from_stored(m, t, p)?;
            let salt_len = usize::from(body.byte()?);
            if !(16..=64).contains(&salt_len) {
                return Err(format!("salt of {salt_len} bytes (16 to 64 expected)"));
            }
            let salt = body.take(salt_len)?.to_vec();
            let nonce = body.array()?;
            let wrap_len = usize::from(body.byte()?);
            if wrap_len != DEK_WRAP_LEN {
                return Err(format!(
                    "wrapped key of {wrap_len} bytes ({DEK_WRAP_LEN} expected)"
                ));
            }
            let ciphertext = body.take(wrap_len)?.to_vec();
            Record::PassphraseSlot(PassphraseSlot {
                kdf,
                salt,
                wrapped_dek: SealedBox { nonce, ciphertext },
            })
        }
        RecordKind::Seed | RecordKind::Wallet | RecordKind::Anchor => {
            let nonce = body.array()?;
            let ciphertext = body.rest().to_vec();
            let max = if kind == RecordKind::Wallet {
                MAX_WALLET_CIPHERTEXT
            } else {
                MAX_SEED_CIPHERTEXT
            };
            if ciphertext.len() < TAG_LEN || ciphertext.len() > max {
                return Err(format!(
                    "ciphertext of {} bytes ({TAG_LEN} to {max} expected)",
                    ciphertext.len()
                ));
            }
            let sealed = SealedBox { nonce, ciphertext };
            match kind {
                RecordKind::Seed => Record::Seed(sealed),
                RecordKind::Wallet => Record::Wallet(sealed),
                _ => Record::Anchor(sealed),
            }
        }
    };
    if !body.rest().is_empty() {
        return Err(format!(
            "{} unexpected bytes after the record",
            body.rest().len()
        ));
    }
    Ok(record)
}

/// A cursor over a record body whose every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: {n} more bytes expected, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::envelope::NONCE_LEN;

    fn samples() -> Vec<(&'static str, Record)> {
        vec![
            (HEADER_ID, Record::Header(Header { store_id: [5; 16] })),
            (
                PASSPHRASE_SLOT_ID,
                Record::PassphraseSlot(PassphraseSlot {
                    kdf: KdfParams::default(),
                    salt: vec![1; 16],
                    wrapped_dek: SealedBox {
                        nonce: [2; NONCE_LEN],
                        ciphertext: vec![3; DEK_WRAP_LEN],
                    },
                }),
            ),
            (
                "seed/73c5da0a",
                Record::Seed(SealedBox {
                    nonce: [4; NONCE_LEN],
                    ciphertext: vec![5; 60],
                }),
            ),
            (
                "wallet/hot-1",
                Record::Wallet(SealedBox {
                    nonce: [6; NONCE_LEN],
                    ciphertext: vec![7; 300],
                }),
            ),
            (SHAMIR_SLOT_ID, Record::ShamirSlot(shamir_sample())),
            (
                "ceremony/00000000000000000001",
                Record::Ceremony(vec![8; 100]),
            ),
            ("ceremony/head", Record::Ceremony(vec![9; 72])),
        ]
    }

    fn shamir_sample() -> ShamirSlot {
        use crate::shares::vss::{split, SharedSecret};
        let (_, commitments) = split(&SharedSecret::random().unwrap(), 3, 5).unwrap();
        ShamirSlot {
            set_id: [1, 2],
            threshold: 3,
            count: 5,
            commitments,
            retired: vec![[3, 4], [5, 6]],
            wrapped_dek: SealedBox {
                nonce: [2; NONCE_LEN],
                ciphertext: vec![3; DEK_WRAP_LEN],
            },
        }
    }

    #[test]
    fn shamir_slot_bodies_are_checked() {
        let slot = shamir_sample();
        let body = slot.encode_body();
        assert_eq!(ShamirSlot::decode_body(&body).unwrap(), slot);
        for len in 0..body.len() {
            assert!(ShamirSlot::decode_body(&body[..len]).is_err(), "{len}");
        }
        let mut extra = body.clone();
        extra.push(0);
        assert!(ShamirSlot::decode_body(&extra).is_err());
        let mut bad_threshold = body.clone();
        bad_threshold[3] = 6;
        assert!(ShamirSlot::decode_body(&bad_threshold).is_err());
        let mut bad_point = body;
        bad_point[5..38].copy_from_slice(&[0xff; 33]);
        assert!(ShamirSlot::decode_body(&bad_point).is_err());
    }

    #[test]
    fn round_trip() {
        for (id, record) in samples() {
            let bytes = encode_record(id, &record);
            assert_eq!(decode_record(id, &bytes).unwrap(), record, "{id}");
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_a_named_error() {
        for (id, record) in samples() {
            let bytes = encode_record(id, &record);
            for len in 0..bytes.len() {
                let err = decode_record(id, &bytes[..len]).unwrap_err();
                assert!(err.to_string().contains(id), "{err}");
            }
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut flipped = bytes.clone();
                    flipped[i] ^= 1 << bit;
                    let err = decode_record(id, &flipped).unwrap_err();
                    assert!(err.to_string().contains(id), "{err}");
                }
            }
        }
    }

    #[test]
    fn a_record_under_another_id_is_refused() {
        let (_, record) = samples().remove(2);
        let bytes = encode_record("seed/73c5da0a", &record);
        assert!(decode_record("seed/00000000", &bytes).is_err());
        assert!(decode_record("wallet/x", &bytes).is_err());
        assert!(decode_record("nonsense", &bytes).is_err());
    }

    #[test]
    fn other_versions_are_named() {
        let (id, record) = samples().remove(0);
        let mut bytes = encode_record(id, &record);
        bytes[0] = 2;
        let len = bytes.len();
        let check = check_value(id, &bytes[..len - CHECK_LEN]);
        bytes[len - CHECK_LEN..].copy_from_slice(&check);
        assert!(matches!(
            decode_record(id, &bytes),
            Err(KeystoreError::UnsupportedVersion { got: 2, .. })
        ));
    }

    #[test]
    fn names_and_ids() {
        assert!(validate_wallet_name("hot").is_ok());
        assert!(validate_wallet_name("cold.btc-2_x").is_ok());
        for bad in ["", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_wallet_name(bad).is_err(), "{bad}");
        }
        assert!(valid_seed_id("73c5da0a"));
        assert!(!valid_seed_id("73C5DA0A"));
        assert!(!valid_seed_id("73c5da0"));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(id in "(header|slot/passphrase|slot/shamir|ceremony/head|ceremony/[0-9]{20}|seed/[0-9a-f]{8}|wallet/[a-z]{1,5}|.{0,12})",
                               bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = decode_record(&id, &bytes);
        }
    }
}
