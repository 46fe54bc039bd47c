//! The events the ceremony log records, as typed values: only public facts (ids, fingerprints,
//! xpubs, addresses, share indexes and counts, file hashes, who ran it) — no field can hold a
//! share, a passphrase, a mnemonic or entropy. The HSM ceremonies' facts are in [`super::hsm`].

use serde::{Deserialize, Serialize};

use super::hsm::{HsmImport, HsmKeygen, HsmUnsealSlot};
use crate::keystore::{SeedSummary, Unsealers, WalletSummary};
use crate::shares::{ShareIndexes, ShareSetInfo};
use crate::wallet::Wallet;

/// How the store was unsealed for a ceremony.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealedBy {
    /// `passphrase` or `shares`.
    pub method: String,
    /// The share indexes given (shares only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub share_indexes: Vec<u8>,
    /// The share set they belong to (shares only), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_set: Option<String>,
}

impl UnsealedBy {
    /// Unsealed with the passphrase.
    pub fn passphrase() -> Self {
        UnsealedBy {
            method: "passphrase".into(),
            share_indexes: Vec::new(),
            share_set: None,
        }
    }

    /// Unsealed with these shares of `set`.
    pub fn shares(indexes: ShareIndexes, set: &ShareSetInfo) -> Self {
        UnsealedBy {
            method: "shares".into(),
            share_indexes: indexes.to_vec(),
            share_set: Some(hex::encode(set.set_id)),
        }
    }

    /// `shares 1, 3, 4 of set 7be1` or `passphrase`.
    pub fn describe(&self) -> String {
        if self.method == "shares" {
            let list: Vec<String> = self.share_indexes.iter().map(u8::to_string).collect();
            format!(
                "shares {} of set {}",
                list.join(", "),
                self.share_set.as_deref().unwrap_or("?")
            )
        } else {
            self.method.clone()
        }
    }
}

/// A share set, as the log names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSetFact {
    /// Set id, hex.
    pub set: String,
    /// M.
    pub threshold: u8,
    /// N.
    pub count: u8,
    /// How the shares were handed out (`terminal, one custodian at a time` or the directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<String>,
}

impl ShareSetFact {
    /// The facts of `info`.
    pub fn of(info: &ShareSetInfo, delivered: Option<String>) -> Self {
        ShareSetFact {
            set: hex::encode(info.set_id),
            threshold: info.threshold,
            count: info.count,
            delivered,
        }
    }
}

/// A seed, as the log names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFact {
    /// Seed id = master fingerprint.
    pub fingerprint: String,
    /// Mnemonic length (not the words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<usize>,
    /// Whether a BIP39 passphrase is set (not what it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bip39_passphrase: Option<bool>,
}

impl From<&SeedSummary> for SeedFact {
    fn from(s: &SeedSummary) -> Self {
        SeedFact {
            fingerprint: s.id.0.clone(),
            words: Some(s.words),
            bip39_passphrase: Some(s.has_bip39_passphrase),
        }
    }
}

/// A wallet, as the log names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletFact {
    /// Name.
    pub name: String,
    /// Chain.
    pub chain: String,
    /// Network.
    pub network: String,
    /// Account path.
    pub path: String,
    /// Seed id (master fingerprint).
    pub seed: String,
    /// Account xpub (SLIP-132 form on Bitcoin).
    pub xpub: String,
    /// First receive address.
    pub first_address: String,
}

impl WalletFact {
    /// The facts of `wallet` (its first address derived here).
    pub fn of(wallet: &Wallet) -> Self {
        WalletFact {
            name: wallet.name.clone(),
            chain: wallet.chain().to_string(),
            network: wallet.network().name(),
            path: wallet.account.path.to_string(),
            seed: wallet.seed.0.clone(),
            xpub: wallet.account.slip132_xpub(),
            first_address: wallet
                .address(false, 0)
                .unwrap_or_else(|e| format!("(cannot derive: {e})")),
        }
    }
}

impl From<&WalletSummary> for WalletFact {
    fn from(w: &WalletSummary) -> Self {
        let mut fact = WalletFact::of(&w.wallet);
        fact.first_address = w.first_address.clone();
        fact
    }
}

/// Operator entropy mixed into a new seed: how much was typed, never what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntropyFact {
    /// Characters typed.
    pub characters: usize,
    /// Dice rolls, when the text was only digits 1–6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dice_rolls: Option<usize>,
}

/// One share given to the server over the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    /// The principal of the client certificate that sent it.
    pub principal: String,
    /// The share's index.
    pub index: u8,
    /// Unix seconds.
    pub at: i64,
}

/// Which unsealers a store has, as the log names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealersFact {
    /// The passphrase slot's KDF (`argon2id m=… t=… p=…`), if a passphrase unseals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// The share set, if shares unseal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<ShareSetFact>,
}

impl From<&Unsealers> for UnsealersFact {
    fn from(u: &Unsealers) -> Self {
        UnsealersFact {
            passphrase: u.passphrase.map(|k| k.to_string()),
            shares: u.shares.as_ref().map(|s| ShareSetFact::of(s, None)),
        }
    }
}

/// One ceremony, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CeremonyEvent {
    /// A store created.
    Init {
        /// Store id, hex.
        store: String,
        /// `generated` or `imported mnemonic`.
        seed_source: String,
        /// The seed.
        seed: SeedFact,
        /// What unseals it.
        unsealers: UnsealersFact,
        /// Operator entropy mixed in, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator_entropy: Option<EntropyFact>,
    },
    /// A store restored from a backup file, and verified.
    Restore {
        /// Store id, hex.
        store: String,
        /// The file's SHA-256.
        backup_sha256: String,
        /// When it was exported.
        backup_created_at: i64,
        /// Seeds restored.
        seeds: Vec<SeedFact>,
        /// Wallets restored.
        wallets: Vec<WalletFact>,
        /// How the restored copy was unsealed.
        unsealed_by: UnsealedBy,
    },
    /// Shares created for a store that had none.
    SharesAdd {
        /// The new set.
        share_set: ShareSetFact,
        /// Whether the passphrase still unseals too.
        passphrase_kept: bool,
        /// How the store was unsealed.
        unsealed_by: UnsealedBy,
    },
    /// The share set replaced by a new split: old shares stop working.
    SharesRotate {
        /// The set retired.
        retired: ShareSetFact,
        /// The new set.
        share_set: ShareSetFact,
        /// How the store was unsealed.
        unsealed_by: UnsealedBy,
    },
    /// The passphrase slot removed: only shares unseal now.
    PassphraseRemove {
        /// How the store was unsealed (shares, necessarily).
        unsealed_by: UnsealedBy,
    },
    /// The passphrase changed (or set, on a store that had none).
    PassphraseChange {
        /// The new slot's KDF parameters.
        kdf: String,
        /// Whether the store had a passphrase before.
        replaced: bool,
        /// How the store was unsealed.
        unsealed_by: UnsealedBy,
    },
    /// The server unsealed.
    Unseal {
        /// `passphrase`, `shares` or `hsm`.
        method: String,
        /// Where: `server (Admin.Unseal)` or `server start`.
        place: String,
        /// Shares given over the API: who gave which index, when.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contributions: Vec<Contribution>,
        /// The share set (shares only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_set: Option<String>,
        /// Seeds loaded.
        seeds: usize,
        /// Wallets loaded.
        wallets: usize,
    },
    /// The server sealed.
    Seal {
        /// Where: `server (Admin.Seal)`.
        place: String,
    },
    /// A wallet created.
    WalletCreate {
        /// The wallet.
        wallet: WalletFact,
        /// Where: `cli` or `server (Admin.CreateWallet)`.
        place: String,
        /// How the store was unsealed (CLI only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unsealed_by: Option<UnsealedBy>,
    },
    /// Keys imported into an HSM.
    HsmImport(HsmImport),
    /// A wallet whose keys were generated inside an HSM.
    HsmKeygen(HsmKeygen),
    /// The store's HSM unseal slot added.
    HsmUnsealSlotAdd(HsmUnsealSlot),
    /// The store's HSM unseal slot removed.
    HsmUnsealSlotRemove(HsmUnsealSlot),
    /// A backup exported.
    BackupExport {
        /// The file written.
        file: String,
        /// Its SHA-256.
        sha256: String,
        /// Records in it.
        records: usize,
        /// Seeds in it.
        seeds: Vec<String>,
        /// Wallets in it (names).
        wallets: Vec<String>,
        /// How the store was unsealed.
        unsealed_by: UnsealedBy,
    },
    /// A backup checked against the store.
    BackupVerify {
        /// What was checked: `mnemonic`, `backup file`, `shares` or `passphrase`.
        evidence: String,
        /// The backup file's SHA-256, when a file was checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup_sha256: Option<String>,
        /// Seeds the evidence restores.
        seeds: Vec<String>,
        /// Wallets it restores, each with its xpub and first address.
        wallets: Vec<WalletFact>,
        /// How the store was unsealed.
        unsealed_by: UnsealedBy,
    },
}

impl CeremonyEvent {
    /// The event's name as stored (`shares-rotate`).
    pub fn name(&self) -> &'static str {
        match self {
            CeremonyEvent::Init { .. } => "init",
            CeremonyEvent::Restore { .. } => "restore",
            CeremonyEvent::SharesAdd { .. } => "shares-add",
            CeremonyEvent::SharesRotate { .. } => "shares-rotate",
            CeremonyEvent::PassphraseRemove { .. } => "passphrase-remove",
            CeremonyEvent::PassphraseChange { .. } => "passphrase-change",
            CeremonyEvent::Unseal { .. } => "unseal",
            CeremonyEvent::Seal { .. } => "seal",
            CeremonyEvent::WalletCreate { .. } => "wallet-create",
            CeremonyEvent::HsmImport(_) => "hsm-import",
            CeremonyEvent::HsmKeygen(_) => "hsm-keygen",
            CeremonyEvent::HsmUnsealSlotAdd(_) => "hsm-unseal-slot-add",
            CeremonyEvent::HsmUnsealSlotRemove(_) => "hsm-unseal-slot-remove",
            CeremonyEvent::BackupExport { .. } => "backup-export",
            CeremonyEvent::BackupVerify { .. } => "backup-verify",
        }
    }
}
