//! The key store's error: one enum, lower-case messages, never a secret in a message.
//!
//! Every variant that concerns one stored record names it (`seed/73c5da0a`, `wallet/hot`), so an
//! operator facing a damaged store knows which record to restore from backup.

use std::path::PathBuf;

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// No key store at this directory.
    #[error("no key store at {} (create one with `custos init --store {}`)", dir.display(), dir.display())]
    NotFound {
        /// The directory asked for.
        dir: PathBuf,
    },
    /// `create` found something at the directory already.
    #[error("{} already exists and is not empty: refusing to overwrite it", dir.display())]
    AlreadyExists {
        /// The directory asked for.
        dir: PathBuf,
    },
    /// Another process (usually the running server) holds sled's lock on the store.
    #[error("key store {} is in use by another process (is the server running?)", dir.display())]
    InUse {
        /// The store directory.
        dir: PathBuf,
    },
    /// The passphrase does not unwrap the data key.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A record does not decode or does not authenticate.
    #[error("key store record '{id}' is corrupt: {reason}")]
    CorruptRecord {
        /// The record's id (its key in the store).
        id: String,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// A record every store has is absent.
    #[error("key store record '{id}' is missing: the store is incomplete or damaged")]
    MissingRecord {
        /// The record's id.
        id: String,
    },
    /// The store was written by a newer (or unknown) version of Custos.
    #[error(
        "key store record '{id}' has format version {got}, this build reads version {expected}"
    )]
    UnsupportedVersion {
        /// The record's id.
        id: String,
        /// Version found.
        got: u8,
        /// Version this build writes and reads.
        expected: u8,
    },
    /// No wallet by this name.
    #[error("unknown wallet '{0}'")]
    UnknownWallet(String),
    /// A wallet by this name exists already.
    #[error("a wallet named '{0}' already exists")]
    DuplicateWallet(String),
    /// Another wallet already uses this seed at this account path: the same keys would sign for
    /// two wallets (every EVM network derives from `m/44'/60'/account'`, every Bitcoin test
    /// network from coin type 1), so a signature one wallet's policy allows would be valid for
    /// the other's chain too.
    #[error("wallet '{existing}' already uses seed '{seed}' at {path}: one key serves one wallet; give '{name}' another account (account {free} is free)")]
    KeyInUse {
        /// The wallet asked for.
        name: String,
        /// The wallet holding that path.
        existing: String,
        /// The seed id.
        seed: String,
        /// The account path (`m/44'/60'/0'`).
        path: String,
        /// The lowest account index free on this seed for the same purpose and coin type.
        free: u32,
    },
    /// A wallet name with characters the store does not allow.
    #[error("invalid wallet name '{name}': {reason}")]
    InvalidWalletName {
        /// The name given (truncated).
        name: String,
        /// What is expected.
        reason: &'static str,
    },
    /// `create_wallet` without a seed when the store holds several.
    #[error("the key store holds {0} seeds: name the seed the wallet uses")]
    AmbiguousSeed(usize),
    /// No seed by this id.
    #[error("unknown seed '{0}'")]
    UnknownSeed(String),
    /// The seed exists already (the same mnemonic and BIP39 passphrase).
    #[error("seed '{0}' is already in the key store")]
    DuplicateSeed(String),
    /// The store has no Shamir shares (no `slot/shamir`).
    #[error("this key store has no Shamir shares (create them with `custos shares add`)")]
    NoShares,
    /// The store has no passphrase (it is unsealed by Shamir shares).
    #[error("this key store has no passphrase: it is unsealed by Shamir shares")]
    NoPassphrase,
    /// Fewer shares than the threshold.
    #[error("{given} of {threshold} shares given: the store stays sealed")]
    SharesIncomplete {
        /// Shares accepted.
        given: usize,
        /// Shares needed.
        threshold: u8,
    },
    /// Splitting or combining shares failed.
    #[error("shares: {0}")]
    Shares(String),
    /// A record that must not exist yet does.
    #[error("key store record '{id}' exists already")]
    AlreadyPresent {
        /// Its id.
        id: String,
    },
    /// A ceremony log entry above the size limit.
    #[error("a ceremony log entry of {0} bytes is above the 64 KiB limit")]
    CeremonyEntryTooLarge(usize),
    /// A backup file is damaged, of another store, or does not match what it says it holds.
    #[error("backup {}: {reason}", path.display())]
    Backup {
        /// The file.
        path: PathBuf,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// KDF parameters below the minimum, or not accepted by argon2.
    #[error("key derivation parameters refused: {0}")]
    Kdf(String),
    /// Key derivation or account data failed (a wallet path, an xpub).
    #[error("key derivation failed: {0}")]
    Derivation(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The HSM unsealer slot could not be used or made: the token is unavailable (see
    /// [`crate::backend::pkcs11::Pkcs11Error::is_unavailable`]), its key is missing, or the key
    /// does not open the slot.
    #[error("hsm unsealer: {0}")]
    Hsm(crate::backend::pkcs11::Pkcs11Error),
    /// A file system operation on the store directory failed.
    #[error("key store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// sled failed (I/O below it, or its own consistency checks).
    #[error("key store {}: storage error: {reason}", dir.display())]
    Storage {
        /// The store directory.
        dir: PathBuf,
        /// sled's message.
        reason: String,
    },
}

impl KeystoreError {
    /// A corrupt-record error.
    pub(crate) fn corrupt(id: &str, reason: impl Into<String>) -> Self {
        KeystoreError::CorruptRecord {
            id: printable_id(id),
            reason: reason.into(),
        }
    }
}

/// A record id as it may appear in a message: ids come from the store (untrusted bytes), so
/// control characters are escaped and the length is capped.
pub(crate) fn printable_id(id: &str) -> String {
    let mut out: String = id.chars().take(80).flat_map(char::escape_default).collect();
    if id.chars().count() > 80 {
        out.push('…');
    }
    out
}
