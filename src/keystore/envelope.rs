//! Envelope encryption: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) under a 256-bit key, with
//! associated data that binds each ciphertext to the store, the record's kind, its id and the
//! format version.
//!
//! Nonces are 24 random bytes per encryption: with XChaCha's 192-bit nonce, random nonces are safe
//! for far more messages than a key store will ever write under one key.
//!
//! The same primitive serves both layers: the data key (DEK) seals records, and a
//! key-encryption key (KEK) from an unsealer wraps the DEK.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::KeystoreError;
use crate::secret::{Secret32, SecretBytes};

/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// A nonce and ciphertext-with-tag, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBox {
    /// The random nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// The AEAD refused a ciphertext: wrong key, or the ciphertext or its associated data changed.
/// Carries nothing, so it can never carry a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

/// Encrypts `plaintext` under `key` with `associated_data`, with a fresh random nonce.
pub fn seal(
    key: &Secret32,
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox, KeystoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|_| KeystoreError::Rng)?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.expose_secret()));
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .expect("XChaCha20-Poly1305 encryption fails only for messages above 256 GiB");
    Ok(SealedBox { nonce, ciphertext })
}

/// Decrypts and authenticates `sealed`; the plaintext is returned in a zeroizing buffer.
pub fn open(
    key: &Secret32,
    associated_data: &[u8],
    sealed: &SealedBox,
) -> Result<SecretBytes, AuthenticationFailed> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.expose_secret()));
    let plaintext = cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: associated_data,
            },
        )
        .map_err(|_| AuthenticationFailed)?;
    Ok(SecretBytes::new(plaintext))
}

/// The associated data of a record: a fixed label, the format version, the record kind, the
/// store's random id and the record id, each length-prefixed where variable, followed by
/// `extra` (a slot's KDF parameters and salt). Moving a ciphertext to another id, kind, store
/// or version makes it fail to authenticate.
pub fn associated_data(
    version: u8,
    kind: u8,
    store_id: &[u8; 16],
    record_id: &str,
    extra: &[u8],
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(32 + record_id.len() + extra.len());
    ad.extend_from_slice(b"custos-keystore\0");
    ad.push(version);
    ad.push(kind);
    ad.extend_from_slice(store_id);
    ad.extend_from_slice(&(record_id.len() as u32).to_be_bytes());
    ad.extend_from_slice(record_id.as_bytes());
    ad.extend_from_slice(extra);
    ad
}

/// A 32-byte subkey of `key` for one purpose: HMAC-SHA256(key, label). HMAC is a PRF, so subkeys
/// for distinct labels are independent of each other and of the AEAD use of `key`.
pub fn derive_subkey(key: &Secret32, label: &[u8]) -> Secret32 {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts keys of any length");
    mac.update(label);
    let out = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    Secret32::new(*out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = Secret32::new([7; 32]);
        let ad = associated_data(1, 3, &[9; 16], "seed/a", b"");
        let sealed = seal(&key, &ad, b"hello").unwrap();
        assert_eq!(sealed.ciphertext.len(), 5 + TAG_LEN);
        assert_eq!(open(&key, &ad, &sealed).unwrap().expose_secret(), b"hello");
        // Another id, store, kind or key: refused.
        for other in [
            associated_data(1, 3, &[9; 16], "seed/b", b""),
            associated_data(1, 3, &[8; 16], "seed/a", b""),
            associated_data(1, 4, &[9; 16], "seed/a", b""),
            associated_data(2, 3, &[9; 16], "seed/a", b""),
        ] {
            assert_eq!(
                open(&key, &other, &sealed).unwrap_err(),
                AuthenticationFailed
            );
        }
        assert!(open(&Secret32::new([8; 32]), &ad, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(open(&key, &ad, &flipped).is_err());
        let mut nonce = sealed.clone();
        nonce.nonce[23] ^= 0x80;
        assert!(open(&key, &ad, &nonce).is_err());
    }

    #[test]
    fn nonces_are_fresh() {
        let key = Secret32::new([7; 32]);
        let a = seal(&key, b"", b"x").unwrap();
        let b = seal(&key, b"", b"x").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    /// Subkeys differ per label and per key, and from the key itself.
    #[test]
    fn subkeys_are_separated() {
        let key = Secret32::new([1; 32]);
        let a = derive_subkey(&key, b"custos audit v1");
        assert_eq!(a, derive_subkey(&key, b"custos audit v1"));
        assert_ne!(a, derive_subkey(&key, b"custos audit v2"));
        assert_ne!(
            a,
            derive_subkey(&Secret32::new([2; 32]), b"custos audit v1")
        );
        assert_ne!(a.expose_secret(), key.expose_secret());
    }
}
