//! An unsealed store: the DEK in memory, and what it opens (seeds, wallets, the audit key).

use std::fmt;

use super::envelope::{self, associated_data, derive_subkey};
use super::error::KeystoreError;
use super::fault::crash_point;
use super::kdf::KdfParams;
use super::payload::{self, SeedSecret};
use super::record::{
    encode_record, validate_wallet_name, Record, RecordKind, FORMAT_VERSION, HEADER_ID,
    SEED_PREFIX, WALLET_PREFIX,
};
use super::{seal_seed, seed_id_of, wrap_dek, KeyStore};
use crate::backend::{SeedId, SoftwareBackend};
use crate::keys::{AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use crate::secret::{Secret32, SecretString};
use crate::wallet::Wallet;

/// The label of the audit-chain key derived from the DEK.
const AUDIT_KEY_LABEL: &[u8] = b"custos audit v1";
/// The label of the state-record key derived from the DEK.
const STATE_KEY_LABEL: &[u8] = b"custos state v1";

/// An unsealed key store: holds the DEK (zeroized on drop) and the store handle (so the store
/// stays locked while this lives).
pub struct Unsealed {
    pub(super) store: KeyStore,
    pub(super) dek: Secret32,
}

impl fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsealed")
            .field("store", &self.store)
            .field("dek", &self.dek)
            .finish()
    }
}

/// A seed as `store verify` shows it: nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSummary {
    /// The seed id (its master fingerprint).
    pub id: SeedId,
    /// Number of mnemonic words.
    pub words: usize,
    /// Whether a BIP39 passphrase is set (not what it is).
    pub has_bip39_passphrase: bool,
}

/// A wallet as `store verify` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletSummary {
    /// The wallet.
    pub wallet: Wallet,
    /// Its first receive address (`0/0`).
    pub first_address: String,
}

/// What `verify` found, when every record decrypted and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Format version.
    pub format_version: u8,
    /// Passphrase slot parameters (`None`: the store has no passphrase).
    pub kdf: Option<KdfParams>,
    /// The Shamir share set (`None`: the store has no shares).
    pub shares: Option<crate::shares::ShareSetInfo>,
    /// The ceremony log's chain.
    pub ceremony: super::ceremony_log::LogCheck,
    /// Number of records checked.
    pub records: usize,
    /// Seeds.
    pub seeds: Vec<SeedSummary>,
    /// Wallets.
    pub wallets: Vec<WalletSummary>,
}

impl Unsealed {
    pub(super) fn new(store: KeyStore, dek: Secret32) -> Self {
        Unsealed { store, dek }
    }

    /// The store this was unsealed from.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The key of the audit chain's HMAC: HMAC-SHA256(DEK, "custos audit v1"). Stable for the
    /// life of the store (passphrase changes rewrap the DEK, they do not change it).
    pub fn audit_key(&self) -> Secret32 {
        derive_subkey(&self.dek, AUDIT_KEY_LABEL)
    }

    /// The key that authenticates the state database's records (`crate::state::auth`):
    /// HMAC-SHA256(DEK, "custos state v1"). Stable for the life of the store.
    pub fn state_key(&self) -> Secret32 {
        derive_subkey(&self.dek, STATE_KEY_LABEL)
    }

    /// The ids of the seeds in the store, sorted.
    pub fn seed_ids(&self) -> Result<Vec<SeedId>, KeystoreError> {
        Ok(self
            .store
            .ids_with_prefix(SEED_PREFIX)?
            .into_iter()
            .map(SeedId)
            .collect())
    }

    /// Decrypts one sealed record's payload.
    pub(super) fn open_record(
        &self,
        id: &str,
        kind: RecordKind,
    ) -> Result<Option<crate::secret::SecretBytes>, KeystoreError> {
        let sealed = match self.store.record(id)? {
            Some(Record::Seed(sealed))
            | Some(Record::Wallet(sealed))
            | Some(Record::Anchor(sealed)) => sealed,
            Some(_) => return Err(KeystoreError::corrupt(id, "unexpected record kind")),
            None => return Ok(None),
        };
        let ad = associated_data(FORMAT_VERSION, kind.byte(), self.store.store_id(), id, b"");
        envelope::open(&self.dek, &ad, &sealed)
            .map(Some)
            .map_err(|_| {
                KeystoreError::corrupt(
                    id,
                    "it does not authenticate under this store's key (damaged, or moved from elsewhere)",
                )
            })
    }

    fn seed_secret(&self, seed: &SeedId) -> Result<SeedSecret, KeystoreError> {
        let id = format!("{SEED_PREFIX}{}", seed.0);
        let bytes = self
            .open_record(&id, RecordKind::Seed)?
            .ok_or_else(|| KeystoreError::UnknownSeed(seed.0.clone()))?;
        payload::decode_seed(&bytes).map_err(|reason| KeystoreError::corrupt(&id, reason))
    }

    /// The master key of one seed, checked against its id (the master fingerprint).
    pub fn master_key(&self, seed: &SeedId) -> Result<MasterKey, KeystoreError> {
        self.master_and_summary(seed).map(|(master, _)| master)
    }

    fn master_and_summary(&self, seed: &SeedId) -> Result<(MasterKey, SeedSummary), KeystoreError> {
        let secret = self.seed_secret(seed)?;
        let master = MasterKey::from_seed(&secret.mnemonic.to_seed(&secret.bip39_passphrase))
            .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
        if seed_id_of(&master) != *seed {
            return Err(KeystoreError::corrupt(
                &format!("{SEED_PREFIX}{}", seed.0),
                "its master fingerprint does not match its id",
            ));
        }
        let summary = SeedSummary {
            id: seed.clone(),
            words: secret.mnemonic.word_count(),
            has_bip39_passphrase: !secret.bip39_passphrase.is_empty(),
        };
        Ok((master, summary))
    }

    /// Rewraps the DEK under `new` (fresh salt, `kdf`) and replaces the passphrase slot in one
    /// atomic write; seeds and wallets are untouched.
    pub fn change_passphrase(
        &self,
        new: &SecretString,
        kdf: KdfParams,
    ) -> Result<(), KeystoreError> {
        crash_point("passphrase-change:after-unwrap");
        let slot = wrap_dek(self.store.store_id(), &self.dek, new, kdf)?;
        self.store.replace_passphrase_slot(slot)
    }

    /// Every seed's master key.
    pub fn seeds(&self) -> Result<Vec<(SeedId, MasterKey)>, KeystoreError> {
        self.seed_ids()?
            .into_iter()
            .map(|id| {
                let master = self.master_key(&id)?;
                Ok((id, master))
            })
            .collect()
    }

    /// Loads every seed into the software backend; returns how many.
    pub fn load_into(&self, backend: &SoftwareBackend) -> Result<usize, KeystoreError> {
        let seeds = self.seeds()?;
        let count = seeds.len();
        for (id, master) in seeds {
            backend.load(id, master);
        }
        Ok(count)
    }

    /// Adds another seed; refuses one already present (same mnemonic and BIP39 passphrase).
    pub fn add_seed(
        &self,
        mnemonic: &MnemonicSecret,
        bip39_passphrase: &SecretString,
    ) -> Result<SeedId, KeystoreError> {
        let (id, sealed) = seal_seed(self.store.store_id(), &self.dek, mnemonic, bip39_passphrase)?;
        let record_id = format!("{SEED_PREFIX}{}", id.0);
        let bytes = encode_record(&record_id, &Record::Seed(sealed));
        if !self.store.insert_new(&record_id, bytes)? {
            return Err(KeystoreError::DuplicateSeed(id.0));
        }
        Ok(id)
    }

    /// Every wallet, sorted by name.
    pub fn wallets(&self) -> Result<Vec<Wallet>, KeystoreError> {
        self.store
            .ids_with_prefix(WALLET_PREFIX)?
            .iter()
            .map(|name| self.wallet(name))
            .collect()
    }

    /// One wallet by name.
    pub fn wallet(&self, name: &str) -> Result<Wallet, KeystoreError> {
        if validate_wallet_name(name).is_err() {
            return Err(KeystoreError::UnknownWallet(
                name.chars().take(64).collect(),
            ));
        }
        let id = format!("{WALLET_PREFIX}{name}");
        let bytes = self
            .open_record(&id, RecordKind::Wallet)?
            .ok_or_else(|| KeystoreError::UnknownWallet(name.to_owned()))?;
        payload::decode_wallet(name, bytes.expose_secret())
            .map_err(|reason| KeystoreError::corrupt(&id, reason))
    }

    /// Creates a wallet on the store's seed (the store must hold exactly one; see
    /// [`Unsealed::create_wallet_for_seed`]).
    pub fn create_wallet(
        &self,
        name: &str,
        network: Network,
        purpose: Purpose,
        account: u32,
    ) -> Result<Wallet, KeystoreError> {
        let seeds = self.seed_ids()?;
        match seeds.as_slice() {
            [seed] => self.create_wallet_for_seed(seed, name, network, purpose, account),
            [] => Err(KeystoreError::MissingRecord {
                id: format!("{SEED_PREFIX}*"),
            }),
            more => Err(KeystoreError::AmbiguousSeed(more.len())),
        }
    }

    /// Creates a wallet (an HD account) on `seed`; refuses a name already taken, and an account
    /// path another wallet on the same seed already uses ([`KeystoreError::KeyInUse`]): two
    /// networks sharing a key (Sepolia and mainnet both derive from `m/44'/60'/0'`) would make
    /// a signature allowed on one valid on the other.
    pub fn create_wallet_for_seed(
        &self,
        seed: &SeedId,
        name: &str,
        network: Network,
        purpose: Purpose,
        account: u32,
    ) -> Result<Wallet, KeystoreError> {
        // One creation at a time in this process (the store's lock keeps other processes out),
        // held from the checks to the write, so two concurrent requests cannot both find a
        // path free.
        let _creating = self.store.wallet_creation_lock();
        let (wallet, id, bytes) = self.seal_wallet(seed, name, network, purpose, account)?;
        if !self.store.insert_new(&id, bytes)? {
            return Err(KeystoreError::DuplicateWallet(name.to_owned()));
        }
        Ok(wallet)
    }

    /// Derives a wallet on `seed` and seals it: the wallet, its record id and the encoded record
    /// (not written). Refuses an invalid name or one already taken, and a path another wallet
    /// on the seed uses. The caller holds [`KeyStore::wallet_creation_lock`] until the record is
    /// written, so the checks still hold when it is.
    pub(crate) fn seal_wallet(
        &self,
        seed: &SeedId,
        name: &str,
        network: Network,
        purpose: Purpose,
        account: u32,
    ) -> Result<(Wallet, String, Vec<u8>), KeystoreError> {
        validate_wallet_name(name).map_err(|reason| KeystoreError::InvalidWalletName {
            name: name.chars().take(64).collect(),
            reason,
        })?;
        let id = format!("{WALLET_PREFIX}{name}");
        if self.store.record(&id)?.is_some() {
            return Err(KeystoreError::DuplicateWallet(name.to_owned()));
        }
        let path = AccountPath::new(network, purpose, account)
            .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
        self.check_path_free(seed, name, path)?;
        let master = self.master_key(seed)?;
        let account = AccountKey::from_master(&master, network, path)
            .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
        let wallet = Wallet {
            name: name.to_owned(),
            seed: seed.clone(),
            account,
        };
        let bytes = self.encode_wallet_record(&id, &wallet)?;
        Ok((wallet, id, bytes))
    }

    /// `wallet` sealed under the data key, bound to the store and to its record id `id`, as the
    /// encoded record to write.
    pub(crate) fn encode_wallet_record(
        &self,
        id: &str,
        wallet: &Wallet,
    ) -> Result<Vec<u8>, KeystoreError> {
        let ad = associated_data(
            FORMAT_VERSION,
            RecordKind::Wallet.byte(),
            self.store.store_id(),
            id,
            b"",
        );
        let sealed = envelope::seal(&self.dek, &ad, &payload::encode_wallet(wallet))?;
        Ok(encode_record(id, &Record::Wallet(sealed)))
    }

    /// Refuses `path` on `seed` when another wallet derives from it, naming that wallet and the
    /// lowest free account for the same purpose and coin type.
    fn check_path_free(
        &self,
        seed: &SeedId,
        name: &str,
        path: AccountPath,
    ) -> Result<(), KeystoreError> {
        let on_seed: Vec<Wallet> = self
            .wallets()?
            .into_iter()
            .filter(|w| w.seed == *seed)
            .collect();
        let Some(existing) = on_seed.iter().find(|w| w.account.path == path) else {
            return Ok(());
        };
        let taken = |account: u32| {
            on_seed
                .iter()
                .any(|w| w.account.path == AccountPath { account, ..path })
        };
        let free = (0..1u32 << 31).find(|a| !taken(*a)).unwrap_or(0);
        Err(KeystoreError::KeyInUse {
            name: name.to_owned(),
            existing: existing.name.clone(),
            seed: seed.0.clone(),
            path: path.to_string(),
            free,
        })
    }

    /// Decrypts and checks every record: each decodes and authenticates, each seed matches its
    /// id, each wallet's xpub is what its seed derives at its path, no record is unknown.
    pub fn verify(&self) -> Result<VerifyReport, KeystoreError> {
        let ids = self.store.record_ids()?;
        let mut seeds = Vec::new();
        let mut masters = Vec::new();
        let mut wallet_names = Vec::new();
        for id in &ids {
            match RecordKind::for_id(id) {
                Some(RecordKind::Header) | Some(RecordKind::Slot) | Some(RecordKind::Ceremony) => {
                    self.store.record(id)?;
                }
                Some(RecordKind::Seed) => {
                    let seed = SeedId(id[SEED_PREFIX.len()..].to_owned());
                    let (master, summary) = self.master_and_summary(&seed)?;
                    seeds.push(summary);
                    masters.push((seed, master));
                }
                Some(RecordKind::Wallet) => wallet_names.push(id[WALLET_PREFIX.len()..].to_owned()),
                Some(RecordKind::Anchor) => {
                    self.state_anchor()?;
                }
                None => {
                    return Err(KeystoreError::corrupt(
                        id,
                        "not a record id this store writes",
                    ))
                }
            }
        }
        if !ids.iter().any(|id| id == HEADER_ID) {
            return Err(KeystoreError::MissingRecord {
                id: HEADER_ID.into(),
            });
        }
        // At least one unsealer slot (else: MissingRecord).
        let unsealers = self.store.unsealers()?;
        let mut wallets = Vec::new();
        for name in wallet_names {
            let wallet = self.wallet(&name)?;
            let id = format!("{WALLET_PREFIX}{name}");
            if wallet.account.is_generated() {
                // No seed derives these keys: they were generated in an HSM (decoding checked
                // their form); the token is what holds them.
                let first_address = wallet
                    .address(false, 0)
                    .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
                wallets.push(WalletSummary {
                    wallet,
                    first_address,
                });
                continue;
            }
            let Some((_, master)) = masters.iter().find(|(s, _)| *s == wallet.seed) else {
                return Err(KeystoreError::corrupt(
                    &id,
                    format!("its seed '{}' is not in the store", wallet.seed),
                ));
            };
            let derived = AccountKey::from_master(master, wallet.network(), wallet.account.path)
                .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
            if derived != wallet.account {
                return Err(KeystoreError::corrupt(
                    &id,
                    "its xpub is not the one its seed derives at its path",
                ));
            }
            let first_address = wallet
                .address(false, 0)
                .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
            wallets.push(WalletSummary {
                wallet,
                first_address,
            });
        }
        Ok(VerifyReport {
            format_version: FORMAT_VERSION,
            kdf: unsealers.passphrase,
            shares: unsealers.shares,
            ceremony: self.verify_ceremony_log()?,
            records: ids.len(),
            seeds,
            wallets,
        })
    }
}
