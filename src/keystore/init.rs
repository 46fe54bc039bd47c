//! Creating a store as a recorded ceremony: the header, an unsealer (a passphrase slot or a
//! Shamir share set), the seed and the first ceremony-log entry, written in one batch.

use super::ceremony_log::{first_entry, CeremonyDraft};
use super::kdf::KdfParams;
use super::record::{encode_record, Header, Record, HEADER_ID, PASSPHRASE_SLOT_ID, SEED_PREFIX};
use super::shamir_slot::{new_share_set, slot_record, NewShareSet};
use super::{random_array, seal_seed, wrap_dek, write_new_store, KeyStore, KeystoreError};
use crate::backend::SeedId;
use crate::keys::MnemonicSecret;
use crate::secret::{Secret32, SecretString};
use crate::shares::ShareSetInfo;

/// What will unseal a new store.
pub enum InitialUnsealer<'a> {
    /// An operator passphrase (argon2id with `kdf`).
    Passphrase {
        /// The passphrase.
        passphrase: &'a SecretString,
        /// Its KDF parameters.
        kdf: KdfParams,
    },
    /// `threshold` of `count` Shamir shares.
    Shares {
        /// M.
        threshold: u8,
        /// N.
        count: u8,
    },
}

impl std::fmt::Debug for InitialUnsealer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitialUnsealer::Passphrase { kdf, .. } => write!(f, "Passphrase({kdf})"),
            InitialUnsealer::Shares { threshold, count } => {
                write!(f, "Shares({threshold} of {count})")
            }
        }
    }
}

/// The public facts of a store being created, for its first log entry.
#[derive(Clone, Debug)]
pub struct InitFacts {
    /// The new store's id.
    pub store_id: [u8; 16],
    /// The seed's id (master fingerprint).
    pub seed: SeedId,
    /// The share set, when shares unseal it.
    pub shares: Option<ShareSetInfo>,
    /// The passphrase slot's parameters, when a passphrase unseals it.
    pub passphrase_kdf: Option<KdfParams>,
}

/// A store created by [`KeyStore::create_recorded`].
#[derive(Debug)]
pub struct Created {
    /// The open store.
    pub store: KeyStore,
    /// What went into its first log entry.
    pub facts: InitFacts,
    /// The shares to hand to the custodians (when created with shares).
    pub shares: Option<NewShareSet>,
}

impl KeyStore {
    /// Creates a store at `dir` (absent or empty) holding `mnemonic`, unsealed by `unsealer`,
    /// whose ceremony log starts with the entry `draft` builds from the new store's facts — all
    /// in one batch, so a store never exists without its first entry.
    pub fn create_recorded(
        dir: &std::path::Path,
        unsealer: &InitialUnsealer<'_>,
        mnemonic: &MnemonicSecret,
        bip39_passphrase: &SecretString,
        draft: impl FnOnce(&InitFacts) -> CeremonyDraft,
    ) -> Result<Created, KeystoreError> {
        super::ensure_vacant(dir)?;
        let store_id = random_array::<16>()?;
        let dek = Secret32::random().map_err(|_| KeystoreError::Rng)?;
        let (seed, sealed_seed) = seal_seed(&store_id, &dek, mnemonic, bip39_passphrase)?;
        let seed_key = format!("{SEED_PREFIX}{}", seed.0);
        let mut records = vec![
            (
                HEADER_ID.to_owned(),
                encode_record(HEADER_ID, &Record::Header(Header { store_id })),
            ),
            (
                seed_key.clone(),
                encode_record(&seed_key, &Record::Seed(sealed_seed)),
            ),
        ];
        let (shares, passphrase_kdf) = match unsealer {
            InitialUnsealer::Passphrase { passphrase, kdf } => {
                let slot = wrap_dek(&store_id, &dek, passphrase, *kdf)?;
                records.push((
                    PASSPHRASE_SLOT_ID.to_owned(),
                    encode_record(PASSPHRASE_SLOT_ID, &Record::PassphraseSlot(slot)),
                ));
                (None, Some(*kdf))
            }
            InitialUnsealer::Shares { threshold, count } => {
                let set = new_share_set(&store_id, &dek, *threshold, *count, Vec::new(), &[])?;
                records.push(slot_record(set.slot()));
                (Some(set), None)
            }
        };
        let facts = InitFacts {
            store_id,
            seed,
            shares: shares.as_ref().map(NewShareSet::info),
            passphrase_kdf,
        };
        records.extend(first_entry(&dek, &draft(&facts))?);
        let store = write_new_store(dir, store_id, records)?;
        Ok(Created {
            store,
            facts,
            shares,
        })
    }
}
