//! Putting a wallet's keys on the token: HD keys derived on the admin host and imported, so that
//! the wallet's xpub and addresses are the same whichever backend holds its keys.
//!
//! # What an import means for the seed
//!
//! The keys are derived from the seed on the host that runs `custos hsm import` (the seed is
//! unsealed there, in memory, for the ceremony), then created in the token as sensitive,
//! non-extractable objects. The token cannot make them better than they were: they existed in
//! that host's memory, and anyone who holds the seed (the store with its passphrase, the paper
//! backup) can derive them again. An imported wallet is therefore exactly as safe as its seed;
//! what the HSM adds is that the **signing server** never holds them. For keys that have never
//! existed outside the HSM, generate them there (`custos hsm keygen`), and accept that such a
//! wallet has no xpub, no seed backup, and cannot be restored without the HSM's own backup.
//!
//! Run imports on an offline ceremony host, then keep the seed offline (paper backup, or a store
//! kept off the signing server); the token's objects say so too: imported keys carry
//! `CKA_LOCAL = false` and `CKA_NEVER_EXTRACTABLE = false`.
//!
//! Bitcoin wallets get both chains (receive `0/i` and change `1/i`); Ethereum wallets only `0/i`.
//! Existing objects with the right public key are kept, so an interrupted import can be rerun.

use std::ops::Range;

use super::error::Pkcs11Error;
use super::keys::key_label;
use super::wallets::check_supported;
use super::{ImportItem, ImportReport, Pkcs11Backend};
use crate::keys::{Chain, MasterKey};
use crate::wallet::Wallet;

/// The most keys one import may create per chain.
pub const MAX_IMPORT: u32 = 100_000;

/// The (change, index) pairs an import of `range` covers for `wallet`.
pub fn import_plan(wallet: &Wallet, range: &Range<u32>) -> Result<Vec<(bool, u32)>, Pkcs11Error> {
    if range.is_empty() {
        return Err(Pkcs11Error::Invalid(format!(
            "the range {}..{} is empty",
            range.start, range.end
        )));
    }
    if range.end - range.start > MAX_IMPORT || range.end > 1 << 31 {
        return Err(Pkcs11Error::Invalid(format!(
            "the range {}..{} is too large (at most {MAX_IMPORT} keys, indexes below 2^31)",
            range.start, range.end
        )));
    }
    let chains: &[bool] = match wallet.chain() {
        Chain::Bitcoin => &[false, true],
        Chain::Ethereum => &[false],
    };
    Ok(chains
        .iter()
        .flat_map(|change| range.clone().map(move |i| (*change, i)))
        .collect())
}

/// Derives `wallet`'s keys over `range` from `master` and imports them into the token.
/// `master` must be the wallet's seed (checked against the wallet's xpub, key by key).
pub fn import_wallet(
    backend: &Pkcs11Backend,
    wallet: &Wallet,
    master: &MasterKey,
    range: Range<u32>,
    progress: &dyn Fn(),
) -> Result<ImportReport, Pkcs11Error> {
    check_supported(wallet)?;
    let plan = import_plan(wallet, &range)?;
    let mut items = plan.into_iter().map(|(change, index)| {
        let path = wallet.account.child_path(change, index);
        let secret = master.derive_private_key(&path).map_err(|e| {
            Pkcs11Error::Invalid(format!("deriving {path}: {e}"))
        })?;
        let public = secret.public_key();
        let expected = wallet
            .account
            .public_key(change, index)
            .map_err(|e| Pkcs11Error::Invalid(format!("deriving {path} from the xpub: {e}")))?;
        if public != expected {
            return Err(Pkcs11Error::Invalid(format!(
                "the seed does not derive wallet '{}' (at {path} it gives {public}, the wallet's xpub {expected})",
                wallet.name
            )));
        }
        Ok(ImportItem {
            label: key_label(&wallet.name, change, index),
            secret,
            public,
        })
    });
    backend.import(&mut items, progress)
}
