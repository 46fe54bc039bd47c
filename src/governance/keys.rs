//! Public keys of approvers and compliance officers, as policy files and `custos.toml` write
//! them, and signature checks.
//!
//! Two algorithms:
//!
//! - **Ed25519** (RFC 8032, pure): `ed25519:` and the 32-byte public key in hex (64 digits).
//!   Signatures are the 64 bytes RFC 8032 defines, over the statement bytes themselves, checked
//!   strictly (`verify_strict`: no small-order keys, canonical `S`).
//! - **ECDSA P-256 with SHA-256** (FIPS 186-4; what WebCrypto, hardware keys and HSMs hold):
//!   `p256:` and the SEC1 point in hex — compressed (33 bytes) is the canonical form; the
//!   uncompressed form (65 bytes, what WebCrypto's `raw` export gives) is accepted and
//!   rewritten compressed. Signatures are `r ‖ s`, 32 bytes each, big-endian (IEEE P1363, what
//!   WebCrypto's `sign` returns) over SHA-256 of the statement bytes; high and low `s` are both
//!   accepted (WebCrypto does not normalise). A signature that is DER-encoded is refused rather
//!   than guessed at.
//!
//! Hex is lower-case in the canonical text ([`PublicKey::to_text`]); upper-case is accepted.

use std::fmt;

use ed25519_dalek::Verifier as _;
use sha2::{Digest, Sha256};

/// The two signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256.
    P256,
}

impl Algorithm {
    /// The prefix of the key text (`ed25519`, `p256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::P256 => "p256",
        }
    }

    /// Parses `ed25519` or `p256` (as the command line takes it).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Algorithm::Ed25519),
            "p256" | "p-256" | "ecdsa-p256" | "secp256r1" => Ok(Algorithm::P256),
            other => Err(KeyError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key text or a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No `algorithm:` prefix.
    #[error(
        "a public key is written 'ed25519:<64 hex digits>' or 'p256:<66 hex digits>', got '{0}'"
    )]
    Syntax(String),
    /// An algorithm other than the two.
    #[error("unknown key algorithm '{0}' (expected ed25519 or p256)")]
    UnknownAlgorithm(String),
    /// The hex part does not decode.
    #[error("the {algorithm} key is not hex: {reason}")]
    Hex {
        /// The algorithm named.
        algorithm: Algorithm,
        /// What the decoder said.
        reason: String,
    },
    /// The bytes are no valid key.
    #[error("not a valid {algorithm} public key: {reason}")]
    Invalid {
        /// The algorithm named.
        algorithm: Algorithm,
        /// Why.
        reason: String,
    },
    /// The signature has the wrong shape.
    #[error("a {algorithm} signature is {expected} bytes, got {got}")]
    SignatureLength {
        /// The key's algorithm.
        algorithm: Algorithm,
        /// 64.
        expected: usize,
        /// What came.
        got: usize,
    },
    /// The signature does not verify.
    #[error("the {algorithm} signature does not verify under {key}")]
    BadSignature {
        /// The key's algorithm.
        algorithm: Algorithm,
        /// The key, as text.
        key: String,
    },
}

/// A public key that verifies governance statements.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// ECDSA P-256.
    P256(p256_ecdsa::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Parses `ed25519:<hex>` or `p256:<hex>` (see the module docs).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let (alg, body) = text
            .split_once(':')
            .ok_or_else(|| KeyError::Syntax(text.chars().take(80).collect()))?;
        let algorithm = Algorithm::parse(alg)?;
        let bytes = hex::decode(body).map_err(|e| KeyError::Hex {
            algorithm,
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| KeyError::Invalid { algorithm, reason };
        match algorithm {
            Algorithm::Ed25519 => {
                let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    invalid(format!(
                        "expected 32 bytes (64 hex digits), got {}",
                        bytes.len()
                    ))
                })?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map_err(|e| invalid(e.to_string()))?;
                if key.is_weak() {
                    return Err(invalid(
                        "a small-order point, which any signature verifies under".into(),
                    ));
                }
                Ok(PublicKey::Ed25519(key))
            }
            Algorithm::P256 => {
                if bytes.len() != 33 && bytes.len() != 65 {
                    return Err(invalid(format!(
                        "expected a SEC1 point of 33 bytes (compressed) or 65 (uncompressed), got {}",
                        bytes.len()
                    )));
                }
                p256_ecdsa::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                    .map(PublicKey::P256)
                    .map_err(|_| invalid("not a point on the curve".into()))
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
            PublicKey::P256(_) => Algorithm::P256,
        }
    }

    /// The raw public key bytes (Ed25519: 32; P-256: the compressed SEC1 point, 33).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
            PublicKey::P256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The canonical text: `ed25519:<hex>` or `p256:<compressed hex>`, lower-case.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.algorithm(), hex::encode(self.to_bytes()))
    }

    /// A short, stable name for messages: the first 8 bytes of SHA-256 of the canonical text,
    /// in hex, after the algorithm (`p256/3f2a…`).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.to_text().as_bytes());
        format!("{}/{}", self.algorithm(), hex::encode(&digest[..8]))
    }

    /// Checks `signature` over `message` (see the module docs for each algorithm's form).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let bad = || KeyError::BadSignature {
            algorithm: self.algorithm(),
            key: self.to_text(),
        };
        if signature.len() != 64 {
            return Err(KeyError::SignatureLength {
                algorithm: self.algorithm(),
                expected: 64,
                got: signature.len(),
            });
        }
        match self {
            PublicKey::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| bad())?;
                k.verify_strict(message, &sig).map_err(|_| bad())
            }
            PublicKey::P256(k) => {
                let sig = p256_ecdsa::ecdsa::Signature::from_slice(signature).map_err(|_| bad())?;
                k.verify(message, &sig).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PublicKey::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032, section 7.1, TEST 2: one-byte message 0x72.
    const RFC8032_PK: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC8032_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn ed25519_rfc8032_vector() {
        let key = PublicKey::parse(&format!("ed25519:{RFC8032_PK}")).unwrap();
        let sig = hex::decode(RFC8032_SIG).unwrap();
        key.verify(&[0x72], &sig).unwrap();
        assert!(key.verify(&[0x73], &sig).is_err());
        assert_eq!(key.to_text(), format!("ed25519:{RFC8032_PK}"));
        let upper = PublicKey::parse(&format!("ED25519:{}", RFC8032_PK.to_uppercase())).unwrap();
        assert_eq!(upper, key);
    }

    #[test]
    fn malformed_keys_say_what_was_expected() {
        let e = PublicKey::parse("3d40").unwrap_err().to_string();
        assert!(e.contains("ed25519:<64 hex digits>"), "{e}");
        let e = PublicKey::parse("rsa:00").unwrap_err().to_string();
        assert!(e.contains("unknown key algorithm 'rsa'"), "{e}");
        let e = PublicKey::parse("ed25519:zz").unwrap_err().to_string();
        assert!(e.contains("not hex"), "{e}");
        let e = PublicKey::parse("ed25519:00").unwrap_err().to_string();
        assert!(e.contains("expected 32 bytes"), "{e}");
        // The identity point is small-order: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = PublicKey::parse(&format!("ed25519:{}", hex::encode(identity)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("small-order"), "{e}");
        // x = 1: x^3 - 3x + b is not a square mod p, so no point has it.
        let e = PublicKey::parse(&format!("p256:02{}01", "00".repeat(31)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a point"), "{e}");
        let e = PublicKey::parse("p256:0202").unwrap_err().to_string();
        assert!(e.contains("33 bytes"), "{e}");
    }

    #[test]
    fn p256_uncompressed_is_rewritten_compressed() {
        use p256_ecdsa::ecdsa::signature::Signer as _;
        let sk = p256_ecdsa::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let vk = sk.verifying_key();
        let long = format!(
            "p256:{}",
            hex::encode(vk.to_encoded_point(false).as_bytes())
        );
        let key = PublicKey::parse(&long).unwrap();
        assert_eq!(key.to_text().len(), "p256:".len() + 66);
        let sig: p256_ecdsa::ecdsa::Signature = sk.sign(b"statement");
        key.verify(b"statement", &sig.to_bytes()).unwrap();
        // High s verifies too (WebCrypto does not normalise).
        let (r, s) = sig.split_scalars();
        let high = p256_ecdsa::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        key.verify(b"statement", &high.to_bytes()).unwrap();
        // DER is refused by length, not guessed at.
        let der = sig.to_der();
        assert!(matches!(
            key.verify(b"statement", der.as_bytes()),
            Err(KeyError::SignatureLength { .. })
        ));
        assert!(key.verify(b"statemenT", &sig.to_bytes()).is_err());
    }
}
