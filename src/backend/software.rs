//! The software key backend: BIP32 keys derived in memory from unsealed seeds.
//!
//! Holds each unsealed seed's master key, and caches hardened account-level nodes
//! (`m/purpose'/coin'/account'`) because deriving three hardened levels costs more than the
//! signature itself. [`SoftwareBackend::seal`] drops every key; the types erase themselves.

use std::collections::HashMap;
use std::sync::RwLock;

use bitcoin::bip32::{ChildNumber, DerivationPath};
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature as EcdsaSignature};
use bitcoin::secp256k1::schnorr::Signature as SchnorrSignature;
use bitcoin::secp256k1::{Message, PublicKey};
use bitcoin::taproot::TapNodeHash;

use super::{BackendError, Digest32, KeyBackend, KeyRef, SeedId};
use crate::keys::{secp, MasterKey, SecretPrivateKey};

/// How many leading path components make the cached node (the hardened account level).
const CACHED_DEPTH: usize = 3;

#[derive(Default)]
struct Keys {
    masters: HashMap<SeedId, MasterKey>,
    accounts: HashMap<(SeedId, DerivationPath), MasterKey>,
}

/// Keys in memory, from seeds the key store unsealed.
#[derive(Default)]
pub struct SoftwareBackend {
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for SoftwareBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareBackend")
            .field("unsealed", &self.is_unsealed())
            .finish_non_exhaustive()
    }
}

impl SoftwareBackend {
    /// An empty (sealed) backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an unsealed seed's master key.
    pub fn load(&self, seed: SeedId, master: MasterKey) {
        let mut keys = self.keys.write().expect("key lock poisoned");
        keys.accounts.retain(|(id, _), _| *id != seed);
        keys.masters.insert(seed, master);
    }

    /// Drops every key from memory.
    pub fn seal(&self) {
        let mut keys = self.keys.write().expect("key lock poisoned");
        keys.masters.clear();
        keys.accounts.clear();
    }

    /// Whether any seed is loaded.
    pub fn is_unsealed(&self) -> bool {
        !self
            .keys
            .read()
            .expect("key lock poisoned")
            .masters
            .is_empty()
    }

    /// The private key at `key`, through the account-node cache. `Ok(None)` if the seed is not
    /// loaded here.
    fn private_key(&self, key: &KeyRef) -> Result<Option<SecretPrivateKey>, BackendError> {
        let components: &[ChildNumber] = key.path.as_ref();
        let fail = |e: bitcoin::bip32::Error| BackendError::Derivation {
            path: key.path.to_string(),
            reason: e.to_string(),
        };
        let split = if components.len() > CACHED_DEPTH
            && components[..CACHED_DEPTH]
                .iter()
                .all(ChildNumber::is_hardened)
        {
            CACHED_DEPTH
        } else {
            0
        };
        let (prefix, rest) = components.split_at(split);
        let prefix = DerivationPath::from(prefix);
        let rest = DerivationPath::from(rest);
        {
            let keys = self.keys.read().expect("key lock poisoned");
            if keys.masters.is_empty() {
                return Err(BackendError::Sealed);
            }
            let Some(master) = keys.masters.get(&key.seed) else {
                return Ok(None);
            };
            if split == 0 {
                return master.derive_private_key(&key.path).map(Some).map_err(fail);
            }
            if let Some(node) = keys.accounts.get(&(key.seed.clone(), prefix.clone())) {
                return node.derive_private_key(&rest).map(Some).map_err(fail);
            }
        }
        let mut keys = self.keys.write().expect("key lock poisoned");
        let Some(master) = keys.masters.get(&key.seed) else {
            return Ok(None);
        };
        let node = master.derive(&prefix).map_err(fail)?;
        let private = node.derive_private_key(&rest).map_err(fail)?;
        keys.accounts.insert((key.seed.clone(), prefix), node);
        Ok(Some(private))
    }
}

impl KeyBackend for SoftwareBackend {
    fn name(&self) -> &'static str {
        "software"
    }

    fn public_key(&self, key: &KeyRef) -> Result<Option<PublicKey>, BackendError> {
        Ok(self.private_key(key)?.map(|k| k.public_key()))
    }

    fn sign_ecdsa(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        grind_low_r: bool,
    ) -> Result<Option<EcdsaSignature>, BackendError> {
        let Some(private) = self.private_key(key)? else {
            return Ok(None);
        };
        let message = Message::from_digest(*digest);
        let signature = if grind_low_r {
            secp().sign_ecdsa_low_r(&message, private.expose_secret())
        } else {
            secp().sign_ecdsa(&message, private.expose_secret())
        };
        Ok(Some(signature))
    }

    fn sign_ecdsa_recoverable(
        &self,
        key: &KeyRef,
        digest: &Digest32,
    ) -> Result<Option<RecoverableSignature>, BackendError> {
        let Some(private) = self.private_key(key)? else {
            return Ok(None);
        };
        let message = Message::from_digest(*digest);
        Ok(Some(
            secp().sign_ecdsa_recoverable(&message, private.expose_secret()),
        ))
    }

    fn sign_schnorr_taproot(
        &self,
        key: &KeyRef,
        digest: &Digest32,
        merkle_root: Option<TapNodeHash>,
    ) -> Result<Option<SchnorrSignature>, BackendError> {
        let Some(private) = self.private_key(key)? else {
            return Ok(None);
        };
        let keypair = Keypair::from_secret_key(secp(), private.expose_secret());
        let tweaked = keypair.tap_tweak(secp(), merkle_root).to_keypair();
        let message = Message::from_digest(*digest);
        let mut aux = [0u8; 32];
        getrandom::getrandom(&mut aux).map_err(|e| BackendError::Device {
            backend: "software",
            reason: format!("operating system random number generator failed: {e}"),
        })?;
        Ok(Some(
            secp().sign_schnorr_with_aux_rand(&message, &tweaked, &aux),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::path::parse_derivation_path;
    use crate::secret::SecretBytes;

    fn backend() -> SoftwareBackend {
        let b = SoftwareBackend::new();
        b.load(
            SeedId("s".into()),
            MasterKey::from_seed(&SecretBytes::new(vec![7; 64])).unwrap(),
        );
        b
    }

    #[test]
    fn cached_and_direct_derivation_agree() {
        let b = backend();
        let path = parse_derivation_path("m/84'/0'/0'/0/3").unwrap();
        let k = KeyRef {
            seed: SeedId("s".into()),
            path: path.clone(),
        };
        let first = b.public_key(&k).unwrap().unwrap();
        let again = b.public_key(&k).unwrap().unwrap();
        let direct = MasterKey::from_seed(&SecretBytes::new(vec![7; 64]))
            .unwrap()
            .derive_private_key(&path)
            .unwrap()
            .public_key();
        assert_eq!(first, direct);
        assert_eq!(again, direct);
    }

    #[test]
    fn unknown_seed_is_none_and_sealed_is_error() {
        let b = backend();
        let other = KeyRef {
            seed: SeedId("other".into()),
            path: parse_derivation_path("m/0").unwrap(),
        };
        assert_eq!(b.public_key(&other).unwrap(), None);
        b.seal();
        assert_eq!(b.public_key(&other).unwrap_err(), BackendError::Sealed);
    }

    #[test]
    fn signatures_verify() {
        let b = backend();
        let k = KeyRef {
            seed: SeedId("s".into()),
            path: parse_derivation_path("m/86'/0'/0'/0/0").unwrap(),
        };
        let pk = b.public_key(&k).unwrap().unwrap();
        let digest = [9u8; 32];
        let msg = Message::from_digest(digest);
        let sig = b.sign_ecdsa(&k, &digest, true).unwrap().unwrap();
        secp().verify_ecdsa(&msg, &sig, &pk).unwrap();
        assert!(sig.serialize_der().len() <= 71);
        let rec = b.sign_ecdsa_recoverable(&k, &digest).unwrap().unwrap();
        assert_eq!(secp().recover_ecdsa(&msg, &rec).unwrap(), pk);
        let schnorr = b.sign_schnorr_taproot(&k, &digest, None).unwrap().unwrap();
        let (xonly, _) = pk.x_only_public_key();
        let (tweaked, _) = xonly.tap_tweak(secp(), None);
        secp()
            .verify_schnorr(&schnorr, &msg, &tweaked.to_x_only_public_key())
            .unwrap();
    }
}
