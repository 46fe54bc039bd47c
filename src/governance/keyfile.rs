//! Private keys of approvers and compliance officers: generated, written to a key file, read
//! back, used to sign statements.
//!
//! A key file is a PKCS#8 private key in PEM (`-----BEGIN PRIVATE KEY-----`, RFC 5208 / RFC 5958;
//! Ed25519 as RFC 8410 describes it), the form OpenSSL, Python's `cryptography`, hardware-key
//! tooling and the browser's WebCrypto (`importKey("pkcs8", …)`) all read, so the approval
//! console can import the same file `custos approve --key` signs with. Files are written 0600;
//! the key lives in zeroizing memory and prints `[REDACTED]`; nothing here ever formats it.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use p256_ecdsa::pkcs8::LineEnding;
use zeroize::Zeroizing;

use super::keys::{Algorithm, PublicKey};
use crate::secret::REDACTED;

/// Why a key file could not be made, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a PKCS#8 Ed25519 or P-256 private key.
    #[error("{path}: not a PKCS#8 PEM private key for Ed25519 or P-256 (expected '-----BEGIN PRIVATE KEY-----')")]
    NotAKey {
        /// The file.
        path: String,
    },
    /// The file exists already (keygen never overwrites a key).
    #[error("{path} exists already: a key file is never overwritten")]
    Exists {
        /// The file.
        path: String,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// Encoding failed.
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// A private signing key (approver or compliance officer). Zeroized on drop; `Debug` prints
/// `[REDACTED]`; no `Clone`, no `Serialize`.
pub enum SecretSigningKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// ECDSA P-256.
    P256(p256_ecdsa::ecdsa::SigningKey),
}

impl fmt::Debug for SecretSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl SecretSigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(algorithm: Algorithm) -> Result<Self, KeyFileError> {
        match algorithm {
            Algorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                getrandom::getrandom(seed.as_mut())
                    .map_err(|e| KeyFileError::Random(e.to_string()))?;
                Ok(SecretSigningKey::Ed25519(
                    ed25519_dalek::SigningKey::from_bytes(&seed),
                ))
            }
            Algorithm::P256 => Ok(SecretSigningKey::P256(
                p256_ecdsa::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            )),
        }
    }

    /// A key from 32 secret bytes (Ed25519: the RFC 8032 seed; P-256: the scalar). For
    /// deterministic test keys; `None` if the bytes are no valid P-256 scalar.
    pub fn from_seed(algorithm: Algorithm, seed: &[u8; 32]) -> Option<Self> {
        match algorithm {
            Algorithm::Ed25519 => Some(SecretSigningKey::Ed25519(
                ed25519_dalek::SigningKey::from_bytes(seed),
            )),
            Algorithm::P256 => p256_ecdsa::ecdsa::SigningKey::from_slice(seed)
                .ok()
                .map(SecretSigningKey::P256),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SecretSigningKey::Ed25519(_) => Algorithm::Ed25519,
            SecretSigningKey::P256(_) => Algorithm::P256,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            SecretSigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SecretSigningKey::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// Signs `message`: Ed25519 (RFC 8032) over the bytes; P-256 ECDSA over their SHA-256 (RFC
    /// 6979 nonces), `r ‖ s`. 64 bytes either way.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SecretSigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
            SecretSigningKey::P256(k) => {
                use p256_ecdsa::ecdsa::signature::Signer as _;
                let sig: p256_ecdsa::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// The key as PKCS#8 PEM (zeroizing). Ed25519 keys are written as PKCS#8 v1 (the private
    /// key alone, as `openssl genpkey` writes them), which every reader accepts.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyFileError> {
        let encode = |e: ed25519_dalek::pkcs8::Error| KeyFileError::Encode(e.to_string());
        match self {
            SecretSigningKey::Ed25519(k) => {
                let pair = ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                };
                let pem = pair.to_pkcs8_pem(LineEnding::LF).map_err(encode);
                // `pair` holds the secret bytes: zeroize them before they go out of scope.
                let mut pair = pair;
                zeroize::Zeroize::zeroize(&mut pair.secret_key);
                pem
            }
            SecretSigningKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(encode),
        }
    }

    /// Reads a PKCS#8 PEM key (Ed25519 or P-256).
    pub fn from_pem(pem: &str) -> Option<Self> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Some(SecretSigningKey::Ed25519(k));
        }
        use p256_ecdsa::pkcs8::DecodePrivateKey as _;
        p256_ecdsa::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .ok()
            .map(SecretSigningKey::P256)
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_pem(&text).ok_or_else(|| KeyFileError::NotAKey {
            path: path.display().to_string(),
        })
    }

    /// Writes the key to a new file, mode 0600. An existing file is never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write as _;
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = self.to_pem()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                io(e)
            }
        })?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_round_trip_through_pem_and_sign() {
        for alg in [Algorithm::Ed25519, Algorithm::P256] {
            let key = SecretSigningKey::generate(alg).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
            let back = SecretSigningKey::from_pem(&pem).unwrap();
            assert_eq!(back.public(), key.public());
            let sig = back.sign(b"hello");
            key.public().verify(b"hello", &sig).unwrap();
            assert_eq!(format!("{key:?}"), REDACTED);
        }
    }

    #[test]
    fn files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = SecretSigningKey::generate(Algorithm::P256).unwrap();
        key.write_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SecretSigningKey::generate(Algorithm::P256).unwrap();
        assert!(matches!(
            again.write_new(&path),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(
            SecretSigningKey::load(&path).unwrap().public(),
            key.public()
        );
        std::fs::write(&path, "not a key").unwrap();
        let e = SecretSigningKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a PKCS#8 PEM private key"), "{e}");
    }
}
