//! The AES-256 key that lets a token unseal the key store (auto-unseal), and the two operations
//! on it: seal a data key, open it again.
//!
//! The key is generated **inside** the token (`CKM_AES_KEY_GEN`, 256 bits) as a token object that
//! is private, sensitive, not extractable, and may only encrypt and decrypt (no wrap, unwrap,
//! derive or sign). Its label names the store it serves, `custos-unseal/<store id>`, so one token
//! can hold the keys of several stores.
//!
//! The store's data key (DEK) is sealed with `CKM_AES_GCM` (96-bit IV, 128-bit tag) and associated
//! data that binds the result to the store, the slot record and its parameters (see
//! `crate::keystore::hsm_slot`). AES-GCM rather than `CKM_AES_KEY_WRAP_PAD`: key wrapping would
//! need the DEK as an extractable object inside the token and an unwrap that yields an extractable,
//! non-sensitive key to read back — weaker attributes than a plain authenticated encryption of
//! 32 bytes. GCM's associated data also binds the parameters, which key wrap cannot. The IV is
//! random (12 bytes from the OS); modules that must generate the IV themselves (FIPS-mode Luna,
//! CloudHSM) write it back into the parameters, and the IV read back after encryption is the one
//! stored. One IV per seal: the DEK is sealed once per slot creation, so the GCM nonce bound is
//! never approached.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::error::{rv_name, Pkcs11Error};
use super::keys::describe;
use super::token::Token;
use crate::secret::SecretBytes;

/// The prefix of unseal key labels.
pub const UNSEAL_LABEL_PREFIX: &str = "custos-unseal/";
/// GCM IV length.
pub const IV_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;

/// The label of the unseal key of the store with this id.
pub fn unseal_key_label(store_id: &[u8; 16]) -> String {
    format!("{UNSEAL_LABEL_PREFIX}{}", hex::encode(store_id))
}

fn find(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

/// Generates the unseal key `label` inside the token, unless one exists already (a previous
/// attempt that died before using it): `Ok(true)` if it was generated now.
pub fn ensure_unseal_key(token: &Token, label: &str) -> Result<bool, Pkcs11Error> {
    let refused = |rv: String| Pkcs11Error::Refused {
        token: token.name().to_owned(),
        operation: format!("generating the aes-256 unseal key '{label}'"),
        rv,
    };
    token
        .with_rw_session("generating the unseal key", |session| {
            if !find(session, label)?.is_empty() {
                return Ok(false);
            }
            session.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Derive(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Id(label.as_bytes().to_vec()),
                ],
            )?;
            Ok(true)
        })?
        .map_err(|e| refused(rv_name(&e)))
}

/// Destroys the unseal key `label` (revoking that way in for every copy of the slot record).
/// `Ok(false)` if there was none.
pub fn destroy_unseal_key(token: &Token, label: &str) -> Result<bool, Pkcs11Error> {
    token
        .with_rw_session("destroying the unseal key", |session| {
            let found = find(session, label)?;
            for handle in &found {
                session.destroy_object(*handle)?;
            }
            Ok(!found.is_empty())
        })?
        .map_err(|e| Pkcs11Error::Refused {
            token: token.name().to_owned(),
            operation: format!("destroying the unseal key '{label}'"),
            rv: rv_name(&e),
        })
}

/// The one usable key under `label`: exactly one, sensitive and not extractable.
fn unseal_key(session: &Session, token: &Token, label: &str) -> Result<ObjectHandle, UnsealKey> {
    let found = find(session, label).map_err(UnsealKey::Ck)?;
    let handle = match found.as_slice() {
        [] => {
            return Err(UnsealKey::Refused(Pkcs11Error::KeyNotFound {
                token: token.name().to_owned(),
                label: label.to_owned(),
            }))
        }
        [one] => *one,
        more => {
            return Err(UnsealKey::Refused(Pkcs11Error::BadObject {
                token: token.name().to_owned(),
                label: label.to_owned(),
                reason: format!("{} objects carry this label", more.len()),
            }))
        }
    };
    let object = describe(session, handle, "secret").map_err(UnsealKey::Ck)?;
    if object.sensitive != Some(true) || object.extractable != Some(false) {
        return Err(UnsealKey::Refused(Pkcs11Error::BadObject {
            token: token.name().to_owned(),
            label: label.to_owned(),
            reason: "the unseal key must be sensitive and not extractable".into(),
        }));
    }
    Ok(handle)
}

enum UnsealKey {
    Ck(CkError),
    Refused(Pkcs11Error),
}

/// Encrypts `plaintext` under the unseal key with AES-GCM and `aad`; returns the IV used and
/// the ciphertext followed by the tag.
pub fn seal(
    token: &Token,
    label: &str,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; IV_LEN], Vec<u8>), Pkcs11Error> {
    let mut iv = [0u8; IV_LEN];
    getrandom::getrandom(&mut iv).map_err(|e| {
        Pkcs11Error::Invalid(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    run_gcm(token, label, "sealing the data key", |session, key| {
        let mut iv_buf = iv;
        let params = GcmParams::new(&mut iv_buf, aad, 128.into())?;
        let mut mechanism = Mechanism::AesGcm(params);
        let ciphertext = session.encrypt(&mechanism, key, plaintext)?;
        let mut used = [0u8; IV_LEN];
        if let Mechanism::AesGcm(params) = &mut mechanism {
            used.copy_from_slice(params.iv());
        }
        Ok((used, ciphertext))
    })
}

/// Decrypts and authenticates a sealed data key. `Ok(None)` when the token refuses it as not
/// authentic (another key under that label, or the record or its parameters changed).
///
/// Tokens differ in how they report a GCM tag mismatch: `CKR_ENCRYPTED_DATA_INVALID` as the
/// standard says, or (SoftHSM2) `CKR_GENERAL_ERROR`. The latter is also what a failing token
/// says, so it counts as "not authentic" only if the token then answers `C_GetTokenInfo`.
pub fn open(
    token: &Token,
    label: &str,
    aad: &[u8],
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
) -> Result<Option<SecretBytes>, Pkcs11Error> {
    let opened = run_gcm(token, label, "opening the data key", |session, key| {
        let mut iv_buf = *iv;
        let params = GcmParams::new(&mut iv_buf, aad, 128.into())?;
        match session.decrypt(&Mechanism::AesGcm(params), key, ciphertext) {
            Ok(plain) => Ok(Some(Some(SecretBytes::new(plain)))),
            Err(CkError::Pkcs11(
                cryptoki::error::RvError::EncryptedDataInvalid
                | cryptoki::error::RvError::EncryptedDataLenRange,
                _,
            )) => Ok(Some(None)),
            Err(CkError::Pkcs11(cryptoki::error::RvError::GeneralError, _)) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    match opened {
        Some(result) => Ok(result),
        None => {
            token.check_present()?;
            Ok(None)
        }
    }
}

fn run_gcm<T>(
    token: &Token,
    label: &str,
    what: &str,
    op: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>,
) -> Result<T, Pkcs11Error> {
    let ran = token.run(what, |session, _| match unseal_key(session, token, label) {
        Ok(key) => op(session, key).map(Ok),
        Err(UnsealKey::Ck(e)) => Err(e),
        Err(UnsealKey::Refused(e)) => Ok(Err(e)),
    })?;
    match ran {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refused)) => {
            if matches!(refused, Pkcs11Error::KeyNotFound { .. }) {
                token.check_present()?;
            }
            Err(refused)
        }
        Err(e) => Err(Pkcs11Error::Refused {
            token: token.name().to_owned(),
            operation: format!("{what} with '{label}'"),
            rv: rv_name(&e),
        }),
    }
}
