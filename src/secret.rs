//! Secret value types: everything that is money if it leaks.
//!
//! Every seed, mnemonic entropy, extended private key, private key, passphrase and Shamir share in
//! Custos lives in one of these types. They share three properties, and a test
//! (`tests/secrets_redacted.rs`) holds them to it:
//!
//! - the bytes are zeroized when the value is dropped ([`zeroize::Zeroizing`]);
//! - `Debug` prints `[REDACTED]`, so a secret that reaches a log line or an error shows nothing;
//! - there is no `Serialize`, `Display` or `Clone`: turning a secret into bytes is the named
//!   method `expose_secret`, and every call site is a place a reviewer can find with grep.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

/// What every secret prints as.
pub const REDACTED: &str = "[REDACTED]";

/// A secret byte string of any length (entropy, seeds, data keys, shares).
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret (the caller remains responsible for its own copy).
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(Zeroizing::new(bytes.to_vec()))
    }

    /// `len` fresh bytes from the operating system's random number generator.
    pub fn random(len: usize) -> Result<Self, getrandom::Error> {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        getrandom::getrandom(&mut bytes)?;
        Ok(SecretBytes(bytes))
    }

    /// The secret bytes. Named so that every place that touches them can be found.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A second copy. Explicit rather than `Clone` so that copies of secrets are visible in review.
    pub fn duplicate(&self) -> Self {
        SecretBytes::from_slice(&self.0)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time comparison, so tests and checks that compare secrets leak no timing.
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for SecretBytes {}

/// A secret text (passphrases, PINs, mnemonic phrases).
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text`; it is zeroized when this value drops.
    pub fn new(text: String) -> Self {
        SecretString(Zeroizing::new(text))
    }

    /// Reads a secret from a file, dropping one trailing line ending (`\n` or `\r\n`) that editors
    /// and `echo` add; any other whitespace is part of the secret.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let bytes = Zeroizing::new(std::fs::read(path)?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "file is not UTF-8 text")
        })?;
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        Ok(SecretString::new(trimmed.to_owned()))
    }

    /// The secret text. Named so that every place that touches it can be found.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A second copy. Explicit rather than `Clone` so that copies of secrets are visible in review.
    pub fn duplicate(&self) -> Self {
        SecretString::new(self.0.as_str().to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for SecretString {
    /// Constant-time comparison of the bytes.
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SecretString {}

/// A 32-byte secret (a private key, a data key, a key-encryption key).
pub struct Secret32(Zeroizing<[u8; 32]>);

impl Secret32 {
    /// Takes the bytes; the caller's copy should be zeroized by the caller.
    pub fn new(bytes: [u8; 32]) -> Self {
        Secret32(Zeroizing::new(bytes))
    }

    /// 32 fresh bytes from the operating system's random number generator.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(bytes.as_mut())?;
        Ok(Secret32(bytes))
    }

    /// The secret bytes. Named so that every place that touches them can be found.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// A second copy. Explicit rather than `Clone` so that copies of secrets are visible in review.
    pub fn duplicate(&self) -> Self {
        Secret32::new(*self.0)
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret32 {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_ref(), other.0.as_ref())
    }
}

impl Eq for Secret32 {}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let bytes = SecretBytes::new(vec![0xAB; 16]);
        let text = SecretString::new("correct horse".into());
        let key = Secret32::new([0x42; 32]);
        for printed in [
            format!("{bytes:?}"),
            format!("{text:?}"),
            format!("{key:?}"),
            format!("{bytes:#?}"),
        ] {
            assert_eq!(printed, REDACTED);
        }
    }

    #[test]
    fn from_file_strips_one_line_ending_only() {
        let dir = std::env::temp_dir().join(format!("custos-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p");
        std::fs::write(&path, "  pass word \r\n").unwrap();
        assert_eq!(
            SecretString::from_file(&path).unwrap().expose_secret(),
            "  pass word "
        );
        std::fs::write(&path, "x\n\n").unwrap();
        assert_eq!(
            SecretString::from_file(&path).unwrap().expose_secret(),
            "x\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn equality() {
        assert_eq!(Secret32::new([1; 32]), Secret32::new([1; 32]));
        assert_ne!(Secret32::new([1; 32]), Secret32::new([2; 32]));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
