//! Key backends: a key reference and a digest in, a signature out.
//!
//! A backend never sees a PSBT, a transaction or a message: chains compute the digest (sighash,
//! EIP-155 signing hash, EIP-712 hash) and ask for a signature on it by [`KeyRef`]. "Not a key this
//! backend holds" is `Ok(None)`, not an error, so multi-party transactions keep working and a chain
//! can ask several backends in turn.
//!
//! - [`software`]: keys derived in memory from unsealed BIP39 seeds (the embedded default).
//! - [`pkcs11`]: secp256k1 keys inside an HSM, signing with `CKM_ECDSA` (see its module docs).
//! - [`router`]: sends each key to the backend its wallet is on.

pub mod pkcs11;
pub mod router;
pub mod software;

use bitcoin::bip32::DerivationPath;
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature as EcdsaSignature};
use bitcoin::secp256k1::schnorr::Signature as SchnorrSignature;
use bitcoin::secp256k1::PublicKey;
use bitcoin::taproot::TapNodeHash;
use serde::{Deserialize, Serialize};

pub use router::KeyRouter;
pub use software::SoftwareBackend;

/// Identifies one sealed seed in the key store (its id in the store, not a secret).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeedId(pub String);

impl std::fmt::Display for SeedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which key to use: a seed and a full BIP32 path from its master key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef {
    /// The seed.
    pub seed: SeedId,
    /// Full path from the master key (`m/84'/0'/0'/0/5`).
    pub path: DerivationPath,
}

/// A 32-byte message digest to sign (a sighash, a transaction signing hash, an EIP-712 hash).
pub type Digest32 = [u8; 32];

/// Why a backend could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend is sealed: no key material in memory.
    #[error("sealed")]
    Sealed,
    /// Derivation failed for this path (for instance a hardened step the backend cannot take).
    #[error("key derivation failed at {path}: {reason}")]
    Derivation {
        /// The path asked for.
        path: String,
        /// Why.
        reason: String,
    },
    /// The device (HSM) cannot be used now: absent, removed, failing, locked, or busy. Nothing was
    /// signed; the same request can be retried once the device is back.
    #[error("key backend {backend} unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: &'static str,
        /// What is wrong, naming the token (never key material or a PIN).
        reason: String,
    },
    /// The device (HSM) failed or refused.
    #[error("key backend {backend} failed: {reason}")]
    Device {
        /// Backend name.
        backend: &'static str,
        /// What the device said (never key material).
        reason: String,
    },
}

/// A source of signatures. Implementations are shared across threads.
pub trait KeyBackend: Send + Sync {
    /// A short name for logs and metrics (`software`, `pkcs11`).
    fn name(&self) -> &'static str;

    /// The public key at `key`, or `None` if this backend does not hold that seed.
    fn public_key(&self, key: &KeyRef) -> Result<Option<PublicKey>, BackendError>;

    /// ECDSA over `digest`, low-S (BIP62/BIP146). With `grind_low_r`, retries with extra nonce
    /// data until R is below 2^255 (a 71-byte DER signature), as Bitcoin Core does.
    fn sign_ecdsa(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        grind_low_r: bool,
    ) -> Result<Option<EcdsaSignature>, BackendError>;

    /// Recoverable ECDSA over `digest` (RFC 6979, low-S, recovery id), for Ethereum.
    fn sign_ecdsa_recoverable(
        &self,
        key: &KeyRef,
        digest: &Digest32,
    ) -> Result<Option<RecoverableSignature>, BackendError>;

    /// BIP340 Schnorr over `digest` with the key tweaked per BIP341 for a taproot output whose
    /// internal key is the key at `key` and whose script tree root is `merkle_root` (`None` for
    /// BIP86 key-path-only outputs).
    fn sign_schnorr_taproot(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        merkle_root: Option<TapNodeHash>,
    ) -> Result<Option<SchnorrSignature>, BackendError>;
}
