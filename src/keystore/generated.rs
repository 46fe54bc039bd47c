//! Wallets whose keys were generated inside an HSM (`custos hsm keygen`): not HD, so the store
//! keeps their public keys (sealed, like every wallet, so that whoever can write the directory
//! cannot swap one) instead of an xpub, and they have no seed.
//!
//! Such a wallet's seed id is `hsm:<name>` (never a store seed: there is none to unseal, and the
//! id keeps its key references distinct from every other wallet's); its keys are signed with
//! only on the token, whatever `[hsm] wallets` says. Ethereum only: a generated key is one
//! address, and nothing is derived from it (Bitcoin wallets on an HSM are HD and imported).
//!
//! Losing the token (and its backup) loses these keys: there is no mnemonic to restore them from.
//! Back the token up with the vendor's procedure (`hsm/README.md`).

use bitcoin::secp256k1::PublicKey;

use super::ceremony_log::CeremonyDraft;
use super::error::KeystoreError;
use super::record::{validate_wallet_name, WALLET_PREFIX};
use super::unsealed::Unsealed;
use crate::backend::SeedId;
use crate::keys::{AccountKey, Network};
use crate::wallet::Wallet;

/// The prefix of a generated wallet's seed id.
pub const GENERATED_SEED_PREFIX: &str = "hsm:";

/// The seed id of the generated wallet `name`.
pub fn generated_seed(name: &str) -> SeedId {
    SeedId(format!("{GENERATED_SEED_PREFIX}{name}"))
}

impl Unsealed {
    /// Stores a wallet whose `keys` (address `i` is key `i`) were generated in an HSM; refuses a
    /// name already taken and anything but an Ethereum network.
    pub fn create_generated_wallet(
        &self,
        name: &str,
        network: Network,
        keys: Vec<PublicKey>,
    ) -> Result<Wallet, KeystoreError> {
        self.store_generated_wallet(name, network, keys, |_| None)
    }

    /// [`Self::create_generated_wallet`] with the ceremony-log entry `draft` builds from the
    /// wallet, written in the same transaction (`custos hsm keygen`).
    pub fn create_generated_wallet_recorded(
        &self,
        name: &str,
        network: Network,
        keys: Vec<PublicKey>,
        draft: impl FnOnce(&Wallet) -> CeremonyDraft,
    ) -> Result<Wallet, KeystoreError> {
        self.store_generated_wallet(name, network, keys, |wallet| Some(draft(wallet)))
    }

    fn store_generated_wallet(
        &self,
        name: &str,
        network: Network,
        keys: Vec<PublicKey>,
        draft: impl FnOnce(&Wallet) -> Option<CeremonyDraft>,
    ) -> Result<Wallet, KeystoreError> {
        validate_wallet_name(name).map_err(|reason| KeystoreError::InvalidWalletName {
            name: name.chars().take(64).collect(),
            reason,
        })?;
        let id = format!("{WALLET_PREFIX}{name}");
        if self.store.record(&id)?.is_some() {
            return Err(KeystoreError::DuplicateWallet(name.to_owned()));
        }
        let account = AccountKey::generated(network, keys)
            .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
        let wallet = Wallet {
            name: name.to_owned(),
            seed: generated_seed(name),
            account,
        };
        let record = self.encode_wallet_record(&id, &wallet)?;
        let draft = draft(&wallet);
        // The wallet and its entry in one transaction: neither exists without the other.
        match self.store.write_recorded(
            &self.ceremony_key(),
            vec![(id.clone(), Some(record))],
            &[id.as_str()],
            draft.as_ref(),
            None,
        ) {
            Err(KeystoreError::AlreadyPresent { .. }) => {
                Err(KeystoreError::DuplicateWallet(name.to_owned()))
            }
            Err(e) => Err(e),
            Ok(_) => Ok(wallet),
        }
    }
}

/// Whether `wallet` is consistent as a generated wallet (its seed id is its own `hsm:` id).
pub(crate) fn check_generated(wallet: &Wallet) -> Result<(), String> {
    if wallet.seed != generated_seed(&wallet.name) {
        return Err(format!(
            "a wallet with generated keys has seed id '{}', expected '{}'",
            wallet.seed,
            generated_seed(&wallet.name)
        ));
    }
    Ok(())
}
