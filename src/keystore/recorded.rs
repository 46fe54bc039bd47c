//! Changes written together with the ceremony-log entry that records them, in one transaction:
//! a wallet, a passphrase set or changed, the passphrase removed.

use super::ceremony_log::CeremonyDraft;
use super::error::KeystoreError;
use super::kdf::KdfParams;
use super::record::{encode_record, Record, PASSPHRASE_SLOT_ID};
use super::{wrap_dek, Unsealed};
use crate::backend::SeedId;
use crate::keys::{Network, Purpose};
use crate::secret::SecretString;
use crate::wallet::Wallet;

impl Unsealed {
    /// Creates a wallet on `seed` (the store's only seed when `None`) and records the entry
    /// `draft` builds from it, in one transaction; refuses a name already taken.
    pub fn create_wallet_recorded(
        &self,
        seed: Option<&SeedId>,
        name: &str,
        network: Network,
        purpose: Purpose,
        account: u32,
        draft: impl FnOnce(&Wallet) -> CeremonyDraft,
    ) -> Result<Wallet, KeystoreError> {
        let seed = match seed {
            Some(seed) => seed.clone(),
            None => {
                let seeds = self.seed_ids()?;
                match seeds.as_slice() {
                    [seed] => seed.clone(),
                    [] => {
                        return Err(KeystoreError::MissingRecord {
                            id: "seed/*".into(),
                        })
                    }
                    more => return Err(KeystoreError::AmbiguousSeed(more.len())),
                }
            }
        };
        // Held from the checks to the write (see `seal_wallet`).
        let _creating = self.store.wallet_creation_lock();
        let (wallet, id, bytes) = self.seal_wallet(&seed, name, network, purpose, account)?;
        let draft = draft(&wallet);
        match self.store.write_recorded(
            &self.ceremony_key(),
            vec![(id.clone(), Some(bytes))],
            &[id.as_str()],
            Some(&draft),
            None,
        ) {
            Err(KeystoreError::AlreadyPresent { .. }) => {
                Err(KeystoreError::DuplicateWallet(name.to_owned()))
            }
            Err(e) => Err(e),
            Ok(_) => Ok(wallet),
        }
    }

    /// Sets the passphrase slot to `new` (adds one to a shares-only store, or rewraps the data
    /// key), with the ceremony entry, in one transaction. The crash points are those of
    /// `passphrase change` (`passphrase-change:after-unwrap`, `:before-write`, `:after-write`,
    /// `:after-flush`).
    pub fn set_passphrase_recorded(
        &self,
        new: &SecretString,
        kdf: KdfParams,
        draft: &CeremonyDraft,
    ) -> Result<u64, KeystoreError> {
        super::fault::crash_point("passphrase-change:after-unwrap");
        let slot = wrap_dek(self.store.store_id(), &self.dek, new, kdf)?;
        let bytes = encode_record(PASSPHRASE_SLOT_ID, &Record::PassphraseSlot(slot));
        let seq = self.store.write_recorded(
            &self.ceremony_key(),
            vec![(PASSPHRASE_SLOT_ID.to_owned(), Some(bytes))],
            &[],
            Some(draft),
            Some("passphrase-change"),
        )?;
        Ok(seq.expect("a recorded write returns its sequence number"))
    }

    /// Removes the passphrase slot, with the ceremony entry; refuses unless the store has shares
    /// (a store always keeps one way in).
    pub fn remove_passphrase(&self, draft: &CeremonyDraft) -> Result<u64, KeystoreError> {
        if self.store.shamir_slot()?.is_none() {
            return Err(KeystoreError::NoShares);
        }
        let seq = self.store.write_recorded(
            &self.ceremony_key(),
            vec![(PASSPHRASE_SLOT_ID.to_owned(), None)],
            &[],
            Some(draft),
            None,
        )?;
        Ok(seq.expect("a recorded write returns its sequence number"))
    }
}
