//! The sealed key store: a sled directory holding BIP39 seeds and wallets under envelope
//! encryption.
//!
//! # Layout
//!
//! One sled tree (the default one); every value is a versioned record keyed by its id
//! ([`record`] has the byte layout):
//!
//! - `header`: format version and a random 16-byte store id.
//! - `slot/passphrase`: the passphrase unsealer: argon2id parameters and salt, and the DEK
//!   wrapped by the key-encryption key.
//! - `seed/<id>`: one sealed seed: BIP39 entropy and the optional BIP39 passphrase (never the
//!   mnemonic text, never the 64-byte seed or an xprv). The id is the seed's BIP32 master
//!   fingerprint in lower-case hex (`73c5da0a`): public (descriptors and PSBTs carry it), stable
//!   when the same mnemonic is restored into a new store at a recovery ceremony, so key
//!   references and audit records keep meaning the same key. Several seeds may live side by side.
//! - `slot/shamir`: the Shamir unsealer: the DEK wrapped by a KEK that custodians hold M-of-N,
//!   with the Feldman commitments that check each share alone ([`shamir_slot`], [`crate::shares`]).
//! - `ceremony/<seq>`, `ceremony/head`: the ceremony log, hash-chained and keyed with a key
//!   derived from the DEK ([`ceremony_log`]).
//! - `wallet/<name>`: one sealed wallet (public account data: network, path, master fingerprint,
//!   xpub). Sealed rather than merely stored, so that whoever can write the directory cannot swap
//!   an xpub and have Custos hand out their deposit addresses; reading wallets therefore needs the
//!   passphrase.
//!
//! # Envelope encryption and unsealer slots
//!
//! ```text
//!   passphrase --argon2id(salt, m, t, p)--> KEK --XChaCha20-Poly1305--> wrapped DEK  (slot/passphrase)
//!                                                                          |
//!   DEK (random 256-bit) --XChaCha20-Poly1305, AD = label ‖ version ‖ kind ‖ store id ‖ record id
//!        +--> seed/<id>, wallet/<name>
//!        +--> HMAC-SHA256(DEK, "custos audit v1") = the audit chain's key (Unsealed::audit_key)
//! ```
//!
//! Seeds and wallets are encrypted once, under the DEK. An *unsealer slot* is any record
//! `slot/<kind>` that wraps that same DEK under a key-encryption key of its own, with its
//! parameters bound into the associated data: `slot/passphrase` (argon2id over the operator
//! passphrase, at least 64 MiB and 3 passes), `slot/shamir` (a KEK split M-of-N among
//! custodians) and `slot/pkcs11` ([`hsm_slot`]: the DEK sealed under an AES key that never leaves
//! the HSM, for auto-unseal). A store has at least one slot.
//! Unsealing through any slot yields the same DEK; removing a slot revokes that way in. Changing
//! the passphrase rewraps the DEK and rewrites one record, nothing else.
//!
//! Associated data binds each ciphertext to its record id, record kind, format version and store
//! id, so a record copied under another id or into another store fails to authenticate. Each
//! record also ends with a short checksum, so damage is reported as "record X is corrupt" rather
//! than mistaken for a wrong passphrase.
//!
//! # Crash safety of a passphrase change
//!
//! `change_passphrase` unwraps the DEK with the old passphrase, wraps it under the new KEK (fresh
//! salt), then replaces `slot/passphrase` with **one sled `insert` of one key**, which sled applies
//! atomically, and flushes. A crash before the insert leaves the old slot; a crash after the
//! insert but before the flush leaves the old slot or the new one, whichever sled recovered, never
//! a mix, since each slot is a complete record checked by its checksum; after the flush, the new
//! one. The seeds are never rewritten, so neither passphrase can ever be left without its DEK.
//! `tests/cli_keystore.rs` proves it by aborting a real `custos passphrase change` process at
//! each step through a debug-build crash point ([`fault`], `CUSTOS_UNSAFE_TEST_CRASH_AT`) and
//! checking that the old or the new passphrase opens the store.
//!
//! # On disk
//!
//! The directory is created 0700 and the files in it are made 0600. sled holds an exclusive lock
//! on the store while it is open, so the server and an admin command cannot write it at once;
//! [`KeyStore::open`] reports that as [`KeystoreError::InUse`]. Reading (and a wrong passphrase)
//! writes nothing of ours; sled itself rewrites its index snapshot (`snap.*`) on the first open
//! after a write, whatever the passphrase. Nothing under the directory is a
//! secret in clear: `tests/cli_keystore.rs` searches every byte of it for a known mnemonic's
//! entropy, seed, xprv and first private keys.

pub mod anchor;
pub mod backup;
pub mod ceremony_log;
pub mod envelope;
pub mod error;
pub mod fault;
pub mod generated;
pub mod hsm_slot;
pub mod init;
pub mod kdf;
pub mod payload;
pub mod record;
pub mod recorded;
pub mod shamir_slot;
pub mod unsealed;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use anchor::StateAnchor;
pub use ceremony_log::{CeremonyDraft, CeremonyEntry, LogCheck, StoredEntry};
pub use error::KeystoreError;
pub use init::{Created, InitFacts, InitialUnsealer};
pub use kdf::KdfParams;
pub use shamir_slot::{NewShareSet, ShamirSlot, Unsealers};
pub use unsealed::{SeedSummary, Unsealed, VerifyReport, WalletSummary};

use envelope::{associated_data, SealedBox};
use fault::crash_point;
use record::{
    decode_record, encode_record, Header, PassphraseSlot, Record, RecordKind, FORMAT_VERSION,
    HEADER_ID, PASSPHRASE_SLOT_ID, SEED_PREFIX,
};

use crate::backend::SeedId;
use crate::keys::{MasterKey, MnemonicSecret};
use crate::secret::{Secret32, SecretString};

/// An open key store (holds the sled database, and with it the directory's lock).
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    store_id: [u8; 16],
    /// Held while a wallet is checked and written ([`Unsealed::create_wallet_for_seed`]).
    creating_wallet: std::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Closes this handle; when it was the last one, returns once the database's file lock is
    /// released (sled lets go of it from background threads shortly after the last handle
    /// drops), so another process can open the store at once.
    pub fn close(self) {
        let dir = self.inner.dir.clone();
        let last = Arc::strong_count(&self.inner) == 1;
        drop(self);
        if last {
            crate::embedded_db::wait_released(&dir);
        }
    }

    /// Creates a new store at `dir` (absent, or an empty directory) holding `mnemonic` with
    /// `bip39_passphrase`, sealed under `passphrase`. Refuses to touch anything already there.
    pub fn create(
        dir: &Path,
        passphrase: &SecretString,
        kdf: KdfParams,
        mnemonic: &MnemonicSecret,
        bip39_passphrase: &SecretString,
    ) -> Result<KeyStore, KeystoreError> {
        ensure_vacant(dir)?;
        let store_id = random_array::<16>()?;
        let dek = Secret32::random().map_err(|_| KeystoreError::Rng)?;
        let slot = wrap_dek(&store_id, &dek, passphrase, kdf)?;
        let (seed_id, sealed_seed) = seal_seed(&store_id, &dek, mnemonic, bip39_passphrase)?;
        let seed_key = format!("{SEED_PREFIX}{}", seed_id.0);

        write_new_store(
            dir,
            store_id,
            vec![
                (
                    HEADER_ID.to_owned(),
                    encode_record(HEADER_ID, &Record::Header(Header { store_id })),
                ),
                (
                    PASSPHRASE_SLOT_ID.to_owned(),
                    encode_record(PASSPHRASE_SLOT_ID, &Record::PassphraseSlot(slot)),
                ),
                (
                    seed_key.clone(),
                    encode_record(&seed_key, &Record::Seed(sealed_seed)),
                ),
            ],
        )
    }

    /// Opens the store at `dir` and takes its lock. `NotFound` if there is none, `InUse` if
    /// another process holds it.
    pub fn open(dir: &Path) -> Result<KeyStore, KeystoreError> {
        if !dir.join("conf").is_file() || !dir.join("db").is_file() {
            return Err(KeystoreError::NotFound {
                dir: dir.to_owned(),
            });
        }
        let db = open_db(dir)?;
        // sled may have written files (snapshots) with the process umask since the store was
        // created; tighten them again. Best effort: the directory itself is 0700.
        let _ = restrict_permissions(dir);
        let bytes = db
            .get(HEADER_ID)
            .map_err(|e| storage(dir, e))?
            .ok_or_else(|| KeystoreError::MissingRecord {
                id: HEADER_ID.into(),
            })?;
        let Record::Header(header) = decode_record(HEADER_ID, &bytes)? else {
            return Err(KeystoreError::corrupt(HEADER_ID, "not a header record"));
        };
        Ok(KeyStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                db,
                store_id: header.store_id,
                creating_wallet: std::sync::Mutex::new(()),
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The argon2id parameters of the passphrase slot.
    pub fn passphrase_kdf(&self) -> Result<KdfParams, KeystoreError> {
        Ok(self.passphrase_slot()?.kdf)
    }

    /// Unwraps the DEK with `passphrase`. A wrong passphrase is [`KeystoreError::WrongPassphrase`]
    /// and writes nothing.
    pub fn unseal(&self, passphrase: &SecretString) -> Result<Unsealed, KeystoreError> {
        let dek = self.unwrap_dek(passphrase)?;
        Ok(Unsealed::new(self.clone(), dek))
    }

    /// Rewraps the DEK under `new` (fresh salt, `kdf`), after checking `old`. One atomic write;
    /// see the module doc for what a crash at each step leaves.
    pub fn change_passphrase(
        &self,
        old: &SecretString,
        new: &SecretString,
        kdf: KdfParams,
    ) -> Result<(), KeystoreError> {
        self.unseal(old)?.change_passphrase(new, kdf)
    }

    /// Replaces the passphrase slot with `slot` (one atomic sled insert of one key), then flushes.
    pub(crate) fn replace_passphrase_slot(
        &self,
        slot: PassphraseSlot,
    ) -> Result<(), KeystoreError> {
        let bytes = encode_record(PASSPHRASE_SLOT_ID, &Record::PassphraseSlot(slot));
        crash_point("passphrase-change:before-write");
        self.inner
            .db
            .insert(PASSPHRASE_SLOT_ID, bytes)
            .map_err(|e| storage(self.dir(), e))?;
        crash_point("passphrase-change:after-write");
        self.flush()?;
        crash_point("passphrase-change:after-flush");
        Ok(())
    }

    /// The ids of every record in the store, sorted. Ids that are not UTF-8 are shown lossily.
    pub fn record_ids(&self) -> Result<Vec<String>, KeystoreError> {
        self.inner
            .db
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(|e| storage(self.dir(), e))
            })
            .collect()
    }

    fn passphrase_slot(&self) -> Result<PassphraseSlot, KeystoreError> {
        match self.record(PASSPHRASE_SLOT_ID)? {
            Some(Record::PassphraseSlot(slot)) => Ok(slot),
            Some(_) => Err(KeystoreError::corrupt(
                PASSPHRASE_SLOT_ID,
                "not a passphrase slot record",
            )),
            None if self.shamir_slot()?.is_some() => Err(KeystoreError::NoPassphrase),
            None => Err(KeystoreError::MissingRecord {
                id: PASSPHRASE_SLOT_ID.into(),
            }),
        }
    }

    fn unwrap_dek(&self, passphrase: &SecretString) -> Result<Secret32, KeystoreError> {
        let slot = self.passphrase_slot()?;
        let kek = slot.kdf.derive_kek(passphrase, &slot.salt)?;
        let ad = associated_data(
            FORMAT_VERSION,
            RecordKind::Slot.byte(),
            &self.inner.store_id,
            PASSPHRASE_SLOT_ID,
            &slot.binding(),
        );
        let dek = envelope::open(&kek, &ad, &slot.wrapped_dek)
            .map_err(|_| KeystoreError::WrongPassphrase)?;
        let bytes: [u8; 32] = dek.expose_secret().try_into().map_err(|_| {
            KeystoreError::corrupt(PASSPHRASE_SLOT_ID, "the wrapped key is not 32 bytes")
        })?;
        Ok(Secret32::new(bytes))
    }

    /// The decoded record under `id`, if any.
    pub(crate) fn record(&self, id: &str) -> Result<Option<Record>, KeystoreError> {
        match self
            .inner
            .db
            .get(id.as_bytes())
            .map_err(|e| storage(self.dir(), e))?
        {
            Some(bytes) => decode_record(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Ids under `prefix`, with the prefix removed.
    pub(crate) fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, KeystoreError> {
        let mut out = Vec::new();
        for key in self.inner.db.scan_prefix(prefix.as_bytes()).keys() {
            let key = key.map_err(|e| storage(self.dir(), e))?;
            let id = String::from_utf8_lossy(&key).into_owned();
            out.push(id[prefix.len()..].to_owned());
        }
        Ok(out)
    }

    /// Writes `bytes` under `id` only if `id` is absent; `Ok(false)` if it was present.
    pub(crate) fn insert_new(&self, id: &str, bytes: Vec<u8>) -> Result<bool, KeystoreError> {
        let swapped = self
            .inner
            .db
            .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(|e| storage(self.dir(), e))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Serialises wallet creation within this process.
    pub(crate) fn wallet_creation_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock guards no data: a panic mid-creation left at most an unwritten record.
        self.inner
            .creating_wallet
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `bytes` under `id` (replacing what was there) and flushes.
    pub(crate) fn put(&self, id: &str, bytes: Vec<u8>) -> Result<(), KeystoreError> {
        self.inner
            .db
            .insert(id.as_bytes(), bytes)
            .map_err(|e| storage(self.dir(), e))?;
        self.flush()
    }

    pub(crate) fn store_id(&self) -> &[u8; 16] {
        &self.inner.store_id
    }

    fn flush(&self) -> Result<(), KeystoreError> {
        self.inner.db.flush().map_err(|e| storage(self.dir(), e))?;
        // Best effort, as in `open`.
        let _ = restrict_permissions(self.dir());
        Ok(())
    }
}

/// Wraps `dek` under the KEK of `passphrase` with a fresh salt.
pub(crate) fn wrap_dek(
    store_id: &[u8; 16],
    dek: &Secret32,
    passphrase: &SecretString,
    kdf: KdfParams,
) -> Result<PassphraseSlot, KeystoreError> {
    let salt = random_array::<16>()?.to_vec();
    let kek = kdf.derive_kek(passphrase, &salt)?;
    let mut slot = PassphraseSlot {
        kdf,
        salt,
        wrapped_dek: SealedBox {
            nonce: [0; envelope::NONCE_LEN],
            ciphertext: Vec::new(),
        },
    };
    let ad = associated_data(
        FORMAT_VERSION,
        RecordKind::Slot.byte(),
        store_id,
        PASSPHRASE_SLOT_ID,
        &slot.binding(),
    );
    slot.wrapped_dek = envelope::seal(&kek, &ad, dek.expose_secret())?;
    Ok(slot)
}

/// Seals a seed under the DEK; returns its id (the master fingerprint) and the sealed box.
pub(crate) fn seal_seed(
    store_id: &[u8; 16],
    dek: &Secret32,
    mnemonic: &MnemonicSecret,
    bip39_passphrase: &SecretString,
) -> Result<(SeedId, SealedBox), KeystoreError> {
    let master = MasterKey::from_seed(&mnemonic.to_seed(bip39_passphrase))
        .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
    let id = seed_id_of(&master);
    let payload =
        payload::encode_seed(mnemonic, bip39_passphrase).map_err(KeystoreError::Derivation)?;
    let record_id = format!("{SEED_PREFIX}{}", id.0);
    let ad = associated_data(
        FORMAT_VERSION,
        RecordKind::Seed.byte(),
        store_id,
        &record_id,
        b"",
    );
    Ok((id, envelope::seal(dek, &ad, payload.expose_secret())?))
}

/// The seed id the store assigns: the master fingerprint in lower-case hex.
pub fn seed_id_of(master: &MasterKey) -> SeedId {
    SeedId(hex::encode(master.fingerprint().to_bytes()))
}

pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|_| KeystoreError::Rng)?;
    Ok(out)
}

/// Refuses anything at `dir` but nothing or an empty directory (what [`KeyStore::create`] accepts),
/// so a command can refuse before it asks for a passphrase.
pub fn ensure_vacant(dir: &Path) -> Result<(), KeystoreError> {
    let exists = || KeystoreError::AlreadyExists {
        dir: dir.to_owned(),
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KeystoreError::Io {
            path: dir.to_owned(),
            source,
        }),
        Ok(meta) if !meta.is_dir() => Err(exists()),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|source| KeystoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
            if entries.next().is_some() {
                Err(exists())
            } else {
                Ok(())
            }
        }
    }
}

/// Writes `records` (already encoded; the header among them) into a new store at `dir` (absent
/// or empty) in one batch, flushed; removes what it created if anything fails.
pub(crate) fn write_new_store(
    dir: &Path,
    store_id: [u8; 16],
    records: Vec<(String, Vec<u8>)>,
) -> Result<KeyStore, KeystoreError> {
    ensure_vacant(dir)?;
    let created = create_private_dir(dir)?;
    let result = (|| {
        let db = open_db(dir)?;
        let mut batch = sled::Batch::default();
        for (id, bytes) in records {
            batch.insert(id.as_bytes(), bytes);
        }
        db.apply_batch(batch).map_err(|e| storage(dir, e))?;
        db.flush().map_err(|e| storage(dir, e))?;
        restrict_permissions(dir)?;
        Ok(KeyStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                db,
                store_id,
                creating_wallet: std::sync::Mutex::new(()),
            }),
        })
    })();
    if result.is_err() && created {
        let _ = fs::remove_dir_all(dir);
    }
    result
}

/// Creates `dir` 0700 (parents as needed); returns whether it was created here.
fn create_private_dir(dir: &Path) -> Result<bool, KeystoreError> {
    let io = |source| KeystoreError::Io {
        path: dir.to_owned(),
        source,
    };
    let created = !dir.exists();
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)?;
    set_mode(dir, 0o700).map_err(io)?;
    Ok(created)
}

/// Makes every directory under `dir` 0700 and every file 0600.
fn restrict_permissions(dir: &Path) -> Result<(), KeystoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeystoreError::Io { path, source }
    };
    set_mode(dir, 0o700).map_err(io(dir))?;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            restrict_permissions(&path)?;
        } else if meta.is_file() {
            set_mode(&path, 0o600).map_err(io(&path))?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

fn open_db(dir: &Path) -> Result<sled::Db, KeystoreError> {
    // No background flusher: every write here is flushed explicitly before it returns. A reopen
    // in the same process waits for the previous instance's lock (`crate::embedded_db`).
    crate::embedded_db::open(dir, sled::Config::new().path(dir).flush_every_ms(None))
        .map_err(|e| storage(dir, e))
}

/// Maps a sled error; sled reports its lock as an I/O error of kind `Other` whose message says
/// "could not acquire lock", which is the one case an operator needs told apart.
fn storage(dir: &Path, error: sled::Error) -> KeystoreError {
    match error {
        sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
            KeystoreError::InUse {
                dir: dir.to_owned(),
            }
        }
        sled::Error::Io(source) => KeystoreError::Io {
            path: dir.to_owned(),
            source,
        },
        sled::Error::Corruption { .. } => KeystoreError::Storage {
            dir: dir.to_owned(),
            reason: "the store is corrupt (sled found damaged data)".into(),
        },
        other => KeystoreError::Storage {
            dir: dir.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ceremony;
