//! A wallet: the public data of one HD account, as the key store keeps it and chains use it.
//!
//! Chains check "is this script ours at this path?" and ask the key backend for signatures through
//! a wallet; they never see seeds or private keys (BDK's habit: the wallet holds only public
//! descriptors, keys are supplied separately).

use bitcoin::bip32::DerivationPath;

use crate::backend::{KeyRef, SeedId};
use crate::keys::{AccountKey, AccountKeyError, Chain, Network};

/// One wallet (an HD account on one network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wallet {
    /// Unique name in the store (`hot`, `treasury`).
    pub name: String,
    /// The seed whose keys the wallet uses.
    pub seed: SeedId,
    /// Network, account path, master fingerprint and account xpub.
    pub account: AccountKey,
}

impl Wallet {
    /// The chain family.
    pub fn chain(&self) -> Chain {
        self.account.network.chain()
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.account.network
    }

    /// The key reference for `change/index` below the account.
    pub fn key_ref(&self, change: bool, index: u32) -> KeyRef {
        KeyRef {
            seed: self.seed.clone(),
            path: self.account.child_path(change, index),
        }
    }

    /// The key reference for a full path from the master key (as PSBTs carry them), if that path
    /// lies inside this account as `account/change/index`; `None` otherwise.
    pub fn key_ref_for_path(&self, path: &DerivationPath) -> Option<(KeyRef, bool, u32)> {
        let (change, index) = self.account.path.split_child(path)?;
        Some((self.key_ref(change, index), change, index))
    }

    /// The address at `change/index`, as text.
    pub fn address(&self, change: bool, index: u32) -> Result<String, AccountKeyError> {
        self.account.address_string(change, index)
    }
}
