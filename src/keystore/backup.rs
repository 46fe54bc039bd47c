//! Backups: an encrypted copy of the whole store in one file, and the checks that prove a copy
//! restores exactly what the store holds.
//!
//! # File format (version 1)
//!
//! ```text
//! magic "custos-backup\0\0\0" (16) ‖ version 1 (u8) ‖ store id (16) ‖ created (i64 BE)
//! ‖ record count (u32 BE) ‖ records: id length (u16 BE) ‖ id ‖ value length (u32 BE) ‖ value
//! ‖ manifest: nonce (24) ‖ length (u32 BE) ‖ XChaCha20-Poly1305 ciphertext
//! ‖ SHA-256 of everything before (32)
//! ```
//!
//! The records are the store's records byte for byte — seeds and wallets already sealed under the
//! data key, the unsealer slots, the ceremony log — so the file is exactly as secret as the store
//! directory, and it opens with the unsealers the store had when it was exported (a later share
//! rotation or passphrase change does not reach old backups: keep their shares, or export anew).
//! The manifest (what the store held: record ids, seeds, every wallet with its xpub and first
//! address, the ceremony log's head) is sealed under `HMAC-SHA256(DEK, "custos backup v1")`, with
//! the store id, the date and the SHA-256 of the records as associated data: it cannot be read
//! or changed without the seal, and it cannot be moved onto other records.
//!
//! The trailing SHA-256 finds damage before anything is unsealed; every record is decoded (its
//! own check value) before a restore writes anything; and a restore is verified — every record
//! decrypted, the manifest opened and compared, the ceremony log's chain walked — before
//! `custos init --from-backup` says it is done.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::envelope::{self, derive_subkey, SealedBox, NONCE_LEN};
use super::error::KeystoreError;
use super::record::{decode_record, Record, RecordKind, HEADER_ID};
use super::unsealed::VerifyReport;
use super::{storage, write_new_store, KeyStore, LogCheck, Unsealed};
use crate::secret::Secret32;

const MAGIC: &[u8; 16] = b"custos-backup\0\0\0";
const VERSION: u8 = 1;
const KEY_LABEL: &[u8] = b"custos backup v1";
const MANIFEST_AD: &[u8] = b"custos backup manifest v1";
/// The largest backup file read (a store holds small records; this bounds a hostile file).
pub const MAX_BACKUP_BYTES: usize = 64 * 1024 * 1024;
const MAX_RECORDS: u32 = 1_000_000;

/// One wallet as the manifest lists it (public data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestWallet {
    /// Name.
    pub name: String,
    /// `bitcoin` or `ethereum`.
    pub chain: String,
    /// Network name.
    pub network: String,
    /// Account path.
    pub path: String,
    /// Seed id.
    pub seed: String,
    /// Account xpub (standard form).
    pub xpub: String,
    /// First receive address.
    pub first_address: String,
}

/// What the store held when it was exported (sealed inside the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest version (1).
    pub version: u8,
    /// Every record id, sorted.
    pub records: Vec<String>,
    /// Seed ids.
    pub seeds: Vec<String>,
    /// Wallets.
    pub wallets: Vec<ManifestWallet>,
    /// Ceremony log entries at export.
    pub ceremony_entries: u64,
    /// The log head's MAC at export, hex.
    pub ceremony_head: String,
}

impl Manifest {
    /// The manifest of a verified store.
    pub fn of(report: &VerifyReport, records: Vec<String>) -> Manifest {
        let (ceremony_entries, ceremony_head) = match &report.ceremony {
            LogCheck::Intact { entries, head_mac } => (*entries, head_mac.clone()),
            LogCheck::Broken { .. } => (0, String::new()),
        };
        Manifest {
            version: 1,
            records,
            seeds: report.seeds.iter().map(|s| s.id.0.clone()).collect(),
            wallets: report
                .wallets
                .iter()
                .map(|w| ManifestWallet {
                    name: w.wallet.name.clone(),
                    chain: w.wallet.chain().to_string(),
                    network: w.wallet.network().name(),
                    path: w.wallet.account.path.to_string(),
                    seed: w.wallet.seed.0.clone(),
                    xpub: w.wallet.account.standard_xpub(),
                    first_address: w.first_address.clone(),
                })
                .collect(),
            ceremony_entries,
            ceremony_head,
        }
    }
}

/// A parsed backup file (structure and checksum checked; nothing unsealed yet).
#[derive(Clone, Debug)]
pub struct BackupFile {
    /// The store's id.
    pub store_id: [u8; 16],
    /// Unix seconds of the export.
    pub created_at: i64,
    /// The records, as stored.
    pub records: Vec<(String, Vec<u8>)>,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    manifest: SealedBox,
    records_hash: [u8; 32],
}

fn backup_key(dek: &Secret32) -> Secret32 {
    derive_subkey(dek, KEY_LABEL)
}

fn manifest_ad(store_id: &[u8; 16], created_at: i64, records_hash: &[u8; 32]) -> Vec<u8> {
    let mut ad = MANIFEST_AD.to_vec();
    ad.extend_from_slice(store_id);
    ad.extend_from_slice(&created_at.to_be_bytes());
    ad.extend_from_slice(records_hash);
    ad
}

impl Unsealed {
    /// Exports the store: verifies it first (a damaged store is not exported), then returns the
    /// file's bytes and the manifest it seals.
    pub fn export_backup(&self, created_at: i64) -> Result<(Vec<u8>, Manifest), KeystoreError> {
        let report = self.verify()?;
        if let LogCheck::Broken { message, .. } = &report.ceremony {
            return Err(KeystoreError::corrupt(
                super::ceremony_log::CEREMONY_HEAD_ID,
                format!("the ceremony log is broken ({message}): not exporting"),
            ));
        }
        let mut records = Vec::new();
        for item in self.store.inner.db.iter() {
            let (k, v) = item.map_err(|e| storage(self.store.dir(), e))?;
            records.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        let manifest = Manifest::of(&report, records.iter().map(|(id, _)| id.clone()).collect());
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.store.store_id());
        out.extend_from_slice(&created_at.to_be_bytes());
        out.extend_from_slice(&(records.len() as u32).to_be_bytes());
        let records_start = out.len();
        for (id, value) in &records {
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        let records_hash: [u8; 32] = Sha256::digest(&out[records_start..]).into();
        let json = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let sealed = envelope::seal(
            &backup_key(&self.dek),
            &manifest_ad(self.store.store_id(), created_at, &records_hash),
            &json,
        )?;
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&(sealed.ciphertext.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed.ciphertext);
        let check: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&check);
        Ok((out, manifest))
    }

    /// An unsealed view of `copy` (a restored copy of this same store) with this data key.
    pub fn open_copy(&self, copy: KeyStore) -> Result<Unsealed, KeystoreError> {
        if copy.store_id() != self.store.store_id() {
            return Err(KeystoreError::Backup {
                path: copy.dir().to_owned(),
                reason: format!(
                    "it is a copy of store {}, not of this store ({})",
                    hex::encode(copy.store_id()),
                    hex::encode(self.store.store_id())
                ),
            });
        }
        Ok(Unsealed::new(copy, self.dek.duplicate()))
    }

    /// Opens the manifest of `file` (a backup of this store) with this store's data key.
    pub fn open_manifest(&self, file: &BackupFile, path: &Path) -> Result<Manifest, KeystoreError> {
        let bad = |reason: String| KeystoreError::Backup {
            path: path.to_owned(),
            reason,
        };
        if file.store_id != *self.store.store_id() {
            return Err(bad(format!(
                "it is a backup of store {}, not of this store ({})",
                hex::encode(file.store_id),
                hex::encode(self.store.store_id())
            )));
        }
        let json = envelope::open(
            &backup_key(&self.dek),
            &manifest_ad(&file.store_id, file.created_at, &file.records_hash),
            &file.manifest,
        )
        .map_err(|_| bad("its manifest does not authenticate under this store's key".into()))?;
        serde_json::from_slice(json.expose_secret())
            .map_err(|e| bad(format!("its manifest does not parse: {e}")))
    }
}

impl BackupFile {
    /// Parses and checks a backup file's bytes (`path` only names it in errors). Any bytes give
    /// a file or an error, never a panic.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<BackupFile, KeystoreError> {
        let bad = |reason: String| KeystoreError::Backup {
            path: path.to_owned(),
            reason,
        };
        if bytes.len() > MAX_BACKUP_BYTES {
            return Err(bad(format!(
                "{} bytes: larger than any backup ({MAX_BACKUP_BYTES})",
                bytes.len()
            )));
        }
        if bytes.len() < MAGIC.len() + 1 + 16 + 8 + 4 + NONCE_LEN + 4 + 32
            || &bytes[..MAGIC.len()] != MAGIC
        {
            return Err(bad("not a Custos backup file".into()));
        }
        let (body, check) = bytes.split_at(bytes.len() - 32);
        let digest: [u8; 32] = Sha256::digest(body).into();
        if digest.as_slice() != check {
            return Err(bad(
                "its checksum does not match: the file is truncated or damaged".into(),
            ));
        }
        let mut r = Cursor(&body[MAGIC.len()..]);
        let truncated = |_| bad("truncated".into());
        let version = r.take(1).map_err(truncated)?[0];
        if version != VERSION {
            return Err(bad(format!(
                "backup format {version}; this build reads format {VERSION}"
            )));
        }
        let store_id: [u8; 16] = r.array().map_err(truncated)?;
        let created_at = i64::from_be_bytes(r.array().map_err(truncated)?);
        let count = u32::from_be_bytes(r.array().map_err(truncated)?);
        if count > MAX_RECORDS {
            return Err(bad(format!("{count} records: more than any store holds")));
        }
        let records_start = body.len() - r.0.len();
        let mut records = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..count {
            let id_len = usize::from(u16::from_be_bytes(r.array().map_err(truncated)?));
            let id = std::str::from_utf8(r.take(id_len).map_err(truncated)?)
                .map_err(|_| bad(format!("record {n}: its id is not UTF-8")))?
                .to_owned();
            let len = u32::from_be_bytes(r.array().map_err(truncated)?) as usize;
            let value = r.take(len).map_err(truncated)?.to_vec();
            // Each record must be one this store writes, intact (its own check value).
            if RecordKind::for_id(&id).is_none() {
                return Err(bad(format!(
                    "record '{}' is not one a key store holds",
                    super::error::printable_id(&id)
                )));
            }
            decode_record(&id, &value).map_err(|e| bad(e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err(bad(format!("record '{id}' appears twice")));
            }
            records.push((id, value));
        }
        let records_hash: [u8; 32] =
            Sha256::digest(&body[records_start..body.len() - r.0.len()]).into();
        let nonce: [u8; NONCE_LEN] = r.array().map_err(truncated)?;
        let len = u32::from_be_bytes(r.array().map_err(truncated)?) as usize;
        let ciphertext = r.take(len).map_err(truncated)?.to_vec();
        if !r.0.is_empty() {
            return Err(bad(format!("{} unexpected bytes at the end", r.0.len())));
        }
        match records.iter().find(|(id, _)| id == HEADER_ID) {
            Some((_, v)) => match decode_record(HEADER_ID, v) {
                Ok(Record::Header(h)) if h.store_id == store_id => {}
                _ => return Err(bad("its header names another store".into())),
            },
            None => return Err(bad("it has no store header".into())),
        }
        Ok(BackupFile {
            store_id,
            created_at,
            records,
            sha256: hex::encode(Sha256::digest(bytes)),
            manifest: SealedBox { nonce, ciphertext },
            records_hash,
        })
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<BackupFile, KeystoreError> {
        let meta = std::fs::metadata(path).map_err(|source| KeystoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        if meta.len() > MAX_BACKUP_BYTES as u64 {
            return Err(KeystoreError::Backup {
                path: path.to_owned(),
                reason: format!("{} bytes: larger than any backup", meta.len()),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| KeystoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        BackupFile::parse(&bytes, path)
    }

    /// Writes the records into a new store at `dir` (absent or empty): the same store, same id,
    /// same unsealers. Nothing is unsealed or verified here.
    pub fn restore_to(&self, dir: &Path) -> Result<KeyStore, KeystoreError> {
        write_new_store(dir, self.store_id, self.records.clone())
    }
}

/// How a restored (or copied) store compares with a manifest: every difference, named.
pub fn compare_with_manifest(
    report: &VerifyReport,
    records: &[String],
    manifest: &Manifest,
) -> Vec<String> {
    let mut problems = Vec::new();
    let now = Manifest::of(report, records.to_vec());
    for id in &manifest.records {
        if !now.records.contains(id) {
            problems.push(format!("record '{id}' is missing"));
        }
    }
    for id in &now.records {
        if !manifest.records.contains(id) {
            problems.push(format!("record '{id}' was not in the store"));
        }
    }
    for w in &manifest.wallets {
        match now.wallets.iter().find(|x| x.name == w.name) {
            None => problems.push(format!("wallet '{}' is missing", w.name)),
            Some(x) if x != w => problems.push(format!("wallet '{}' differs", w.name)),
            Some(_) => {}
        }
    }
    if now.seeds != manifest.seeds {
        problems.push(format!(
            "seeds differ: {:?} restored, {:?} exported",
            now.seeds, manifest.seeds
        ));
    }
    if (now.ceremony_entries, &now.ceremony_head)
        != (manifest.ceremony_entries, &manifest.ceremony_head)
    {
        problems.push(format!(
            "the ceremony log differs: {} entries restored, {} exported",
            now.ceremony_entries, manifest.ceremony_entries
        ));
    }
    problems
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
}
