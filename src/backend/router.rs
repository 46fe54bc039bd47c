//! Routes each key to the backend that holds it: wallets put on an HSM sign there, every other
//! wallet signs with the software backend.
//!
//! Which wallets are on the HSM is the operator's choice (`[hsm] wallets` in `custos.toml`), made
//! once per unseal. A key of an HSM wallet is never signed in software, even though the seed it
//! was derived from may be in the store: when the token is unavailable, that wallet's requests
//! fail (UNAVAILABLE) while the other wallets keep signing.

use bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature as EcdsaSignature};
use bitcoin::secp256k1::schnorr::Signature as SchnorrSignature;
use bitcoin::secp256k1::PublicKey;
use bitcoin::taproot::TapNodeHash;

use super::pkcs11::HsmWallets;
use super::{BackendError, Digest32, KeyBackend, KeyRef, SoftwareBackend};

/// The software backend, and optionally wallets on an HSM.
#[derive(Debug, Default)]
pub struct KeyRouter {
    software: SoftwareBackend,
    hsm: Option<HsmWallets>,
}

impl KeyRouter {
    /// Software only.
    pub fn new(software: SoftwareBackend) -> Self {
        KeyRouter {
            software,
            hsm: None,
        }
    }

    /// Software, and `hsm` for the wallets it holds.
    pub fn with_hsm(software: SoftwareBackend, hsm: HsmWallets) -> Self {
        KeyRouter {
            software,
            hsm: Some(hsm),
        }
    }

    /// The software backend.
    pub fn software(&self) -> &SoftwareBackend {
        &self.software
    }

    /// The HSM wallets, if any.
    pub fn hsm(&self) -> Option<&HsmWallets> {
        self.hsm.as_ref()
    }

    /// Whether the wallet `name` signs on the HSM.
    pub fn is_hsm_wallet(&self, name: &str) -> bool {
        self.hsm.as_ref().is_some_and(|h| h.holds_wallet(name))
    }

    /// Drops every software key from memory (HSM keys stay in the HSM).
    pub fn seal(&self) {
        self.software.seal();
    }

    fn route(&self, key: &KeyRef) -> &dyn KeyBackend {
        match &self.hsm {
            Some(hsm) if hsm.holds(key) => hsm,
            _ => &self.software,
        }
    }
}

impl KeyBackend for KeyRouter {
    fn name(&self) -> &'static str {
        if self.hsm.is_some() {
            "software+pkcs11"
        } else {
            "software"
        }
    }

    fn public_key(&self, key: &KeyRef) -> Result<Option<PublicKey>, BackendError> {
        self.route(key).public_key(key)
    }

    fn sign_ecdsa(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        grind_low_r: bool,
    ) -> Result<Option<EcdsaSignature>, BackendError> {
        self.route(key).sign_ecdsa(key, digest, grind_low_r)
    }

    fn sign_ecdsa_recoverable(
        &self,
        key: &KeyRef,
        digest: &Digest32,
    ) -> Result<Option<RecoverableSignature>, BackendError> {
        self.route(key).sign_ecdsa_recoverable(key, digest)
    }

    fn sign_schnorr_taproot(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        merkle_root: Option<TapNodeHash>,
    ) -> Result<Option<SchnorrSignature>, BackendError> {
        self.route(key)
            .sign_schnorr_taproot(key, digest, merkle_root)
    }
}
