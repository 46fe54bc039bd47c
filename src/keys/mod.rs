//! HD keys: BIP39 mnemonics and seeds, BIP32 derivation along the paths each chain uses, and the
//! public face of a wallet account (xpubs, descriptors, addresses).
//!
//! - [`mnemonic`]: BIP39 (English, 12–24 words) into entropy and seed; errors name the bad word's
//!   position or the bad checksum, never the words themselves.
//! - [`path`]: BIP44/49/84/86 account paths (coin type 0 on Bitcoin mainnet, 1 on test networks,
//!   60 on Ethereum) and strict parsing of derivation paths from untrusted text.
//! - [`xpriv`]: the secret side: the BIP32 master key and derived private keys in types that erase
//!   themselves and print as `[REDACTED]`.
//! - [`account`]: the public side a watch-only system can hold: the account xpub in the
//!   conventional SLIP-132 form (xpub/ypub/zpub, tpub/upub/vpub), output descriptors with key
//!   origin (BIP380–386), and addresses.
//!
//! Nothing here stores anything; the sealed key store keeps the entropy, and the key backend holds
//! unsealed master keys.

pub mod account;
pub mod extended;
pub mod mnemonic;
pub mod path;
pub mod xpriv;

pub use account::{AccountKey, AccountKeyError, AccountKeys};
pub use mnemonic::{MnemonicError, MnemonicSecret};
// Chain and network names are chain-neutral vocabulary (`crate::network`); keys use them too.
pub use crate::network::{Chain, Network, NetworkError};
pub use path::{AccountPath, PathError, Purpose};
pub use xpriv::{MasterKey, SecretPrivateKey};

use std::sync::LazyLock;

use bitcoin::secp256k1::{All, Secp256k1};

static SECP: LazyLock<Secp256k1<All>> = LazyLock::new(Secp256k1::new);

/// The process-wide libsecp256k1 context (signing and verification). Creating one costs far more
/// than a signature, so every module shares this one.
pub fn secp() -> &'static Secp256k1<All> {
    &SECP
}
