//! Proving that a backup restores exactly what the store holds, without printing a secret.
//!
//! - **A mnemonic** ([`check_mnemonic`]): its master key must be one of the store's seeds (same
//!   fingerprint and same master public key and chain code), and for every wallet on that seed
//!   the account xpub derived from the mnemonic must equal the stored one, and so must the first
//!   receive address derived from it.
//! - **A backup file** ([`check_backup`]): its manifest must open under the store's key; the
//!   copy it restores (in a scratch directory) must decrypt record by record with that key, hold
//!   what the manifest lists and an intact ceremony log; and, against a live store, the copy must
//!   hold exactly the live store's seeds and wallets (a wallet created since the export is a
//!   failure: export again). The unsealers inside the file are reported, since a backup opens
//!   with the shares it was exported with, not with later ones.
//! - **Shares or a passphrase** alone: unsealing the store with them and verifying every record
//!   ([`crate::keystore::Unsealed::verify`]) proves they restore it.

use std::path::Path;

use super::event::WalletFact;
use crate::keys::{AccountKey, MasterKey, MnemonicSecret};
use crate::keystore::backup::{compare_with_manifest, BackupFile};
use crate::keystore::{KeystoreError, LogCheck, Unsealed, VerifyReport};
use crate::secret::SecretString;

/// One wallet checked against the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletCheck {
    /// The wallet as the store holds it.
    pub wallet: WalletFact,
    /// Whether the evidence gives the same account xpub.
    pub xpub_matches: bool,
    /// Whether the evidence gives the same first receive address.
    pub first_address_matches: bool,
}

impl WalletCheck {
    /// Both match.
    pub fn ok(&self) -> bool {
        self.xpub_matches && self.first_address_matches
    }
}

/// What a mnemonic restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnemonicCheck {
    /// The mnemonic's master fingerprint.
    pub fingerprint: String,
    /// Number of words.
    pub words: usize,
    /// Whether the store has a seed with that fingerprint and the same master key.
    pub seed_matches: bool,
    /// The store's wallets on that seed.
    pub wallets: Vec<WalletCheck>,
    /// The store's other seeds (which this mnemonic does not restore).
    pub other_seeds: Vec<String>,
}

impl MnemonicCheck {
    /// The seed and every wallet on it match.
    pub fn ok(&self) -> bool {
        self.seed_matches && self.wallets.iter().all(WalletCheck::ok)
    }
}

/// Checks `mnemonic` (with `bip39_passphrase`) against the unsealed store.
pub fn check_mnemonic(
    unsealed: &Unsealed,
    mnemonic: &MnemonicSecret,
    bip39_passphrase: &SecretString,
) -> Result<MnemonicCheck, KeystoreError> {
    let master = MasterKey::from_seed(&mnemonic.to_seed(bip39_passphrase))
        .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
    let fingerprint = crate::keystore::seed_id_of(&master);
    let seeds = unsealed.seed_ids()?;
    let seed_matches = if seeds.contains(&fingerprint) {
        let stored = unsealed.master_key(&fingerprint)?;
        let kind = bitcoin::NetworkKind::Main;
        stored.to_xpub(kind) == master.to_xpub(kind)
    } else {
        false
    };
    let mut wallets = Vec::new();
    if seed_matches {
        for wallet in unsealed.wallets()? {
            if wallet.seed != fingerprint {
                continue;
            }
            let derived = AccountKey::from_master(&master, wallet.network(), wallet.account.path)
                .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
            let stored_first = wallet
                .address(false, 0)
                .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
            let derived_first = derived
                .address_string(false, 0)
                .map_err(|e| KeystoreError::Derivation(e.to_string()))?;
            wallets.push(WalletCheck {
                xpub_matches: derived == wallet.account,
                first_address_matches: derived_first == stored_first,
                wallet: WalletFact::of(&wallet),
            });
        }
    }
    Ok(MnemonicCheck {
        fingerprint: fingerprint.0.clone(),
        words: mnemonic.word_count(),
        seed_matches,
        wallets,
        other_seeds: seeds
            .into_iter()
            .filter(|s| *s != fingerprint)
            .map(|s| s.0)
            .collect(),
    })
}

/// What a backup file holds and how it compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupCheck {
    /// The file's SHA-256.
    pub sha256: String,
    /// When it was exported.
    pub created_at: i64,
    /// Records in it.
    pub records: usize,
    /// Seeds it restores.
    pub seeds: Vec<String>,
    /// Wallets it restores (checked against the live store when there is one).
    pub wallets: Vec<WalletCheck>,
    /// Its unsealers: the passphrase KDF and the share set, as found in the file.
    pub unsealers: super::UnsealersFact,
    /// Every difference found; empty means it restores exactly.
    pub problems: Vec<String>,
    /// Things to know that are not failures (another share set than the live one, …).
    pub notes: Vec<String>,
}

impl BackupCheck {
    /// No difference.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the backup `file` (read from `path`) with the data key of `unsealed`, restoring it
/// into `scratch` (absent or empty; the caller removes it). With `live`, `unsealed` is the live
/// store and the copy must hold exactly its seeds and wallets; without, `unsealed` is the
/// restored copy itself (already at `scratch`) and only the manifest is compared.
pub fn check_backup(
    unsealed: &Unsealed,
    file: &BackupFile,
    path: &Path,
    scratch: &Path,
    live: bool,
) -> Result<BackupCheck, KeystoreError> {
    let manifest = unsealed.open_manifest(file, path)?;
    let restored;
    let copy = if live {
        restored = unsealed.open_copy(file.restore_to(scratch)?)?;
        &restored
    } else {
        unsealed
    };
    let report = copy.verify()?;
    let record_ids = copy.store().record_ids()?;
    let mut problems = compare_with_manifest(&report, &record_ids, &manifest);
    if let LogCheck::Broken { message, .. } = &report.ceremony {
        problems.push(format!("its ceremony log is broken: {message}"));
    }
    let unsealers = super::UnsealersFact::from(&copy.store().unsealers()?);
    let mut notes = Vec::new();
    let wallets = if live {
        let now = unsealed.verify()?;
        compare_live(&now, &report, &mut problems);
        if let (Some(backup_set), Some(live_set)) = (&report.shares, &now.shares) {
            if backup_set.set_id != live_set.set_id {
                notes.push(format!(
                    "the backup opens with the shares of set {} ({} of {}), not with the store's current set {}: keep those shares with the backup, or export a new one",
                    hex::encode(backup_set.set_id),
                    backup_set.threshold,
                    backup_set.count,
                    hex::encode(live_set.set_id)
                ));
            }
        }
        if report.kdf.is_some() != now.kdf.is_some() {
            notes.push(if report.kdf.is_some() {
                "the backup still opens with the passphrase the store had at export".into()
            } else {
                "the backup does not open with the store's passphrase (it had none at export)"
                    .into()
            });
        }
        report
            .wallets
            .iter()
            .map(|w| {
                let live_wallet = now.wallets.iter().find(|x| x.wallet.name == w.wallet.name);
                WalletCheck {
                    wallet: WalletFact::from(w),
                    xpub_matches: live_wallet.is_some_and(|x| x.wallet.account == w.wallet.account),
                    first_address_matches: live_wallet
                        .is_some_and(|x| x.first_address == w.first_address),
                }
            })
            .collect()
    } else {
        report
            .wallets
            .iter()
            .map(|w| {
                let listed = manifest.wallets.iter().find(|x| x.name == w.wallet.name);
                WalletCheck {
                    wallet: WalletFact::from(w),
                    xpub_matches: listed
                        .is_some_and(|x| x.xpub == w.wallet.account.standard_xpub()),
                    first_address_matches: listed
                        .is_some_and(|x| x.first_address == w.first_address),
                }
            })
            .collect()
    };
    Ok(BackupCheck {
        sha256: file.sha256.clone(),
        created_at: file.created_at,
        records: file.records.len(),
        seeds: report.seeds.iter().map(|s| s.id.0.clone()).collect(),
        wallets,
        unsealers,
        problems,
        notes,
    })
}

/// Differences between the live store and a restored copy.
fn compare_live(live: &VerifyReport, copy: &VerifyReport, problems: &mut Vec<String>) {
    let seeds = |r: &VerifyReport| r.seeds.iter().map(|s| s.id.0.clone()).collect::<Vec<_>>();
    if seeds(live) != seeds(copy) {
        problems.push(format!(
            "the store holds seeds {:?}, the backup {:?}",
            seeds(live),
            seeds(copy)
        ));
    }
    for w in &live.wallets {
        match copy.wallets.iter().find(|x| x.wallet.name == w.wallet.name) {
            None => problems.push(format!(
                "wallet '{}' is not in the backup (created after the export?): export again",
                w.wallet.name
            )),
            Some(x) if x.wallet != w.wallet || x.first_address != w.first_address => {
                problems.push(format!(
                    "wallet '{}' differs between the store and the backup",
                    w.wallet.name
                ))
            }
            Some(_) => {}
        }
    }
    for w in &copy.wallets {
        if !live.wallets.iter().any(|x| x.wallet.name == w.wallet.name) {
            problems.push(format!(
                "wallet '{}' is in the backup but not in the store",
                w.wallet.name
            ));
        }
    }
}
