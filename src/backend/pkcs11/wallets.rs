//! The wallets whose keys live on the token, and the [`KeyBackend`] chains sign them through.
//!
//! A chain asks for a signature by [`KeyRef`] (seed and full BIP32 path). [`HsmWallets`] maps it to
//! the wallet that owns that path, then to the key's label (`custos/<wallet>/<change>/<index>`) and
//! to the public key the wallet expects there — derived from the wallet's account xpub, whatever
//! the token says — and has the token sign. "Not one of our wallets" is `Ok(None)`, so a router can
//! send other keys elsewhere.
//!
//! Taproot: BIP340 Schnorr signatures (and the BIP341 key tweak) have no PKCS#11 mechanism, so a
//! P2TR wallet cannot be put on this backend: [`HsmWallets::add`] refuses it with the reason.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature as EcdsaSignature};
use bitcoin::secp256k1::schnorr::Signature as SchnorrSignature;
use bitcoin::secp256k1::PublicKey;
use bitcoin::taproot::TapNodeHash;

use super::error::Pkcs11Error;
use super::keys::key_label;
use super::Pkcs11Backend;
use crate::backend::{BackendError, Digest32, KeyBackend, KeyRef};
use crate::keys::Purpose;
use crate::wallet::Wallet;

impl From<Pkcs11Error> for BackendError {
    fn from(e: Pkcs11Error) -> Self {
        if e.is_unavailable() {
            BackendError::Unavailable {
                backend: "pkcs11",
                reason: e.to_string(),
            }
        } else {
            BackendError::Device {
                backend: "pkcs11",
                reason: e.to_string(),
            }
        }
    }
}

/// Refuses a wallet this backend cannot sign for, saying why.
pub fn check_supported(wallet: &Wallet) -> Result<(), Pkcs11Error> {
    check_purpose(&wallet.name, wallet.account.path.purpose)
}

/// Refuses a wallet of this purpose (script type) on this backend, saying why.
pub fn check_purpose(name: &str, purpose: Purpose) -> Result<(), Pkcs11Error> {
    if purpose == Purpose::Bip86 {
        return Err(Pkcs11Error::Invalid(format!(
            "wallet '{}' is a taproot (P2TR, BIP86) wallet: BIP340 Schnorr signatures and the \
             BIP341 key tweak have no PKCS#11 mechanism, so its keys cannot be used inside an HSM; \
             keep it on the software backend, or use a P2WPKH (BIP84) wallet on the HSM",
            name
        )));
    }
    Ok(())
}

/// Wallets on one token.
pub struct HsmWallets {
    backend: Arc<Pkcs11Backend>,
    wallets: RwLock<Vec<Wallet>>,
    resolved: RwLock<HashMap<KeyRef, (String, PublicKey)>>,
}

impl std::fmt::Debug for HsmWallets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmWallets")
            .field("token", &self.backend.token().name())
            .field("wallets", &self.wallet_names())
            .finish()
    }
}

impl HsmWallets {
    /// No wallets yet, on `backend`'s token.
    pub fn new(backend: Arc<Pkcs11Backend>) -> Self {
        HsmWallets {
            backend,
            wallets: RwLock::new(Vec::new()),
            resolved: RwLock::new(HashMap::new()),
        }
    }

    /// The backend (token) these wallets use.
    pub fn backend(&self) -> &Arc<Pkcs11Backend> {
        &self.backend
    }

    /// Puts `wallet` on the token; refuses taproot wallets (see the module docs).
    pub fn add(&self, wallet: Wallet) -> Result<(), Pkcs11Error> {
        check_supported(&wallet)?;
        let mut wallets = self.wallets.write().expect("wallet list lock poisoned");
        wallets.retain(|w| w.name != wallet.name);
        wallets.push(wallet);
        self.resolved
            .write()
            .expect("resolution cache lock poisoned")
            .clear();
        Ok(())
    }

    /// The names of the wallets on the token.
    pub fn wallet_names(&self) -> Vec<String> {
        self.wallets
            .read()
            .expect("wallet list lock poisoned")
            .iter()
            .map(|w| w.name.clone())
            .collect()
    }

    /// Whether the wallet `name` is on the token.
    pub fn holds_wallet(&self, name: &str) -> bool {
        self.wallets
            .read()
            .expect("wallet list lock poisoned")
            .iter()
            .any(|w| w.name == name)
    }

    /// Whether `key` belongs to one of the wallets on the token.
    pub fn holds(&self, key: &KeyRef) -> bool {
        matches!(self.resolve(key), Some(Ok(_)))
    }

    /// The label and expected public key of `key`, if one of our wallets owns it.
    fn resolve(&self, key: &KeyRef) -> Option<Result<(String, PublicKey), BackendError>> {
        if let Some(hit) = self
            .resolved
            .read()
            .expect("resolution cache lock poisoned")
            .get(key)
        {
            return Some(Ok(hit.clone()));
        }
        let wallets = self.wallets.read().expect("wallet list lock poisoned");
        let (wallet, change, index) =
            wallets
                .iter()
                .filter(|w| w.seed == key.seed)
                .find_map(|w| {
                    let (_, change, index) = w.key_ref_for_path(&key.path)?;
                    Some((w, change, index))
                })?;
        let expected = match wallet.account.public_key(change, index) {
            Ok(k) => k,
            Err(e) => {
                return Some(Err(BackendError::Derivation {
                    path: key.path.to_string(),
                    reason: e.to_string(),
                }))
            }
        };
        let entry = (key_label(&wallet.name, change, index), expected);
        self.resolved
            .write()
            .expect("resolution cache lock poisoned")
            .insert(key.clone(), entry.clone());
        Some(Ok(entry))
    }
}

impl KeyBackend for HsmWallets {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn public_key(&self, key: &KeyRef) -> Result<Option<PublicKey>, BackendError> {
        let Some(resolved) = self.resolve(key) else {
            return Ok(None);
        };
        let (label, expected) = resolved?;
        match self.backend.public_key(&label)? {
            Some(found) if found == expected => Ok(Some(found)),
            Some(found) => Err(Pkcs11Error::KeyMismatch {
                token: self.backend.token().name().to_owned(),
                label,
                expected: expected.to_string(),
                found: found.to_string(),
            }
            .into()),
            None => Err(Pkcs11Error::KeyNotFound {
                token: self.backend.token().name().to_owned(),
                label,
            }
            .into()),
        }
    }

    fn sign_ecdsa(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        grind_low_r: bool,
    ) -> Result<Option<EcdsaSignature>, BackendError> {
        let Some(resolved) = self.resolve(key) else {
            return Ok(None);
        };
        let (label, expected) = resolved?;
        Ok(Some(self.backend.sign_ecdsa(
            &label,
            &expected,
            digest,
            grind_low_r,
        )?))
    }

    fn sign_ecdsa_recoverable(
        &self,
        key: &KeyRef,
        digest: &Digest32,
    ) -> Result<Option<RecoverableSignature>, BackendError> {
        let Some(resolved) = self.resolve(key) else {
            return Ok(None);
        };
        let (label, expected) = resolved?;
        Ok(Some(
            self.backend.sign_recoverable(&label, &expected, digest)?,
        ))
    }

    fn sign_schnorr_taproot(
        &self,
        key: &KeyRef,
        _digest: &Digest32,
        _merkle_root: Option<TapNodeHash>,
    ) -> Result<Option<SchnorrSignature>, BackendError> {
        if self.resolve(key).is_none() {
            return Ok(None);
        }
        Err(BackendError::Device {
            backend: "pkcs11",
            reason: "BIP340 Schnorr signatures have no PKCS#11 mechanism".into(),
        })
    }
}
