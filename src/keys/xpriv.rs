//! The secret side of BIP32: the master key made from a BIP39 seed and the private keys derived
//! from it.
//!
//! rust-bitcoin's `Xpriv` and `SecretKey` do not erase themselves, and `Xpriv`'s derived `Debug`
//! prints the chain code; so they live here only inside [`MasterKey`] and [`SecretPrivateKey`],
//! which print `[REDACTED]` and overwrite the key and chain code when dropped. The erase uses
//! libsecp256k1's `non_secure_erase` (a plain overwrite the optimiser may in theory elide; the
//! crate offers nothing stronger) for the key and `zeroize` for the chain code.

use std::fmt;

use bitcoin::bip32::{ChainCode, DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::NetworkKind;
use zeroize::Zeroize;

use super::extended::{check_extended_key, ExtendedKind};
use super::secp;
use crate::secret::{Secret32, SecretBytes, SecretString};

/// A BIP32 extended private key (the master key, or an account node kept as a cache).
pub struct MasterKey {
    xpriv: Xpriv,
}

impl MasterKey {
    /// The BIP32 master key for a BIP39 seed (16 to 64 bytes).
    pub fn from_seed(seed: &SecretBytes) -> Result<Self, bitcoin::bip32::Error> {
        Ok(MasterKey {
            xpriv: Xpriv::new_master(NetworkKind::Main, seed.expose_secret())?,
        })
    }

    /// Parses a serialized xprv/tprv (BIP32 test vectors, imports). The text is secret; errors
    /// never include it. Every structural rule of BIP32 is checked (see [`super::extended`]).
    pub fn from_xprv_str(text: &SecretString) -> Result<Self, String> {
        check_extended_key(text.expose_secret(), ExtendedKind::Private)?;
        let xpriv = text
            .expose_secret()
            .parse()
            .map_err(|e: bitcoin::bip32::Error| e.to_string())?;
        Ok(MasterKey { xpriv })
    }

    /// The BIP32 fingerprint of this key (first four bytes of HASH160 of its public key): the key
    /// origin that descriptors and PSBTs name.
    pub fn fingerprint(&self) -> Fingerprint {
        self.xpriv.fingerprint(secp())
    }

    /// The extended private key at `path` below this key.
    pub fn derive(&self, path: &DerivationPath) -> Result<MasterKey, bitcoin::bip32::Error> {
        Ok(MasterKey {
            xpriv: self.xpriv.derive_priv(secp(), path)?,
        })
    }

    /// The private key at `path` below this key.
    pub fn derive_private_key(
        &self,
        path: &DerivationPath,
    ) -> Result<SecretPrivateKey, bitcoin::bip32::Error> {
        let mut child = self.xpriv.derive_priv(secp(), path)?;
        let key = SecretPrivateKey(child.private_key);
        erase_xpriv(&mut child);
        Ok(key)
    }

    /// The extended public key of this node (its `network` only decides xpub vs tpub).
    pub fn to_xpub(&self, network: NetworkKind) -> Xpub {
        let mut xpub = Xpub::from_priv(secp(), &self.xpriv);
        xpub.network = network;
        xpub
    }

    /// The public key of this node.
    pub fn public_key(&self) -> PublicKey {
        self.xpriv.private_key.public_key(secp())
    }

    /// The serialized xprv (mainnet) or tprv (test networks). It is the key itself: for test
    /// vectors and for proving it is absent from disk, never for display.
    pub fn to_xprv_string(&self, network: NetworkKind) -> SecretString {
        let mut copy = self.xpriv;
        copy.network = network;
        let text = SecretString::new(copy.to_string());
        erase_xpriv(&mut copy);
        text
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        erase_xpriv(&mut self.xpriv);
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

fn erase_xpriv(xpriv: &mut Xpriv) {
    xpriv.private_key.non_secure_erase();
    let mut code = xpriv.chain_code.to_bytes();
    code.zeroize();
    xpriv.chain_code = ChainCode::from(code);
}

/// One secp256k1 private key, erased on drop.
pub struct SecretPrivateKey(SecretKey);

impl SecretPrivateKey {
    /// A private key from 32 secret bytes (fails for zero or values at or above the group order).
    pub fn from_secret(bytes: &Secret32) -> Result<Self, bitcoin::secp256k1::Error> {
        Ok(SecretPrivateKey(SecretKey::from_slice(
            bytes.expose_secret(),
        )?))
    }

    /// The key for signing. Callers keep the borrow short and never copy it out.
    pub fn expose_secret(&self) -> &SecretKey {
        &self.0
    }

    /// The 32 secret bytes (for tests that search storage for them, and for HSM import).
    pub fn to_secret_bytes(&self) -> Secret32 {
        Secret32::new(self.0.secret_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.0.public_key(secp())
    }
}

impl Drop for SecretPrivateKey {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl fmt::Debug for SecretPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}
