//! The key-encryption key (KEK) from the operator passphrase: argon2id (RFC 9106), version 0x13.
//!
//! Parameters are stored with the passphrase slot so they can be raised later (`custos passphrase
//! change` writes the new ones). New slots must use at least [`KdfParams::MIN_MEMORY_KIB`]
//! (64 MiB) and [`KdfParams::MIN_ITERATIONS`] (3 passes), RFC 9106's second recommended option,
//! unless built with [`KdfParams::unsafe_weak`], which exists for tests only.
//!
//! Reading a slot accepts any parameters argon2 accepts up to a ceiling
//! ([`KdfParams::MAX_MEMORY_KIB`] and friends), so a tampered store cannot make an unseal allocate
//! unbounded memory or spin forever.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use super::error::KeystoreError;
use crate::secret::{Secret32, SecretString};

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The least memory a new slot may use, in KiB (64 MiB).
    pub const MIN_MEMORY_KIB: u32 = 64 * 1024;
    /// The fewest passes a new slot may use.
    pub const MIN_ITERATIONS: u32 = 3;
    /// The most memory a stored slot may ask for (4 GiB).
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes a stored slot may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a stored slot may ask for.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Parameters for a new slot; refuses anything below 64 MiB or 3 passes.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, KeystoreError> {
        if memory_kib < Self::MIN_MEMORY_KIB || iterations < Self::MIN_ITERATIONS {
            return Err(KeystoreError::Kdf(format!(
                "argon2id needs at least {} KiB of memory and {} passes, got {memory_kib} KiB and {iterations}",
                Self::MIN_MEMORY_KIB,
                Self::MIN_ITERATIONS
            )));
        }
        Self::checked(memory_kib, iterations, parallelism)
    }

    /// **Unsafe: tests only.** Parameters below the minimum, so test suites do not spend 64 MiB and
    /// a few hundred milliseconds per unseal. A store sealed this way falls to an offline
    /// brute-force of its passphrase many times faster: never use it for a real store. Still
    /// refuses what argon2 itself refuses (less than 8 KiB per lane).
    pub fn unsafe_weak(memory_kib: u32, iterations: u32) -> Result<Self, KeystoreError> {
        Self::checked(memory_kib, iterations.max(1), 1)
    }

    /// Parameters read from a stored slot: anything argon2 accepts, up to the ceilings.
    pub(crate) fn from_stored(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<Self, String> {
        Self::checked(memory_kib, iterations, parallelism).map_err(|e| e.to_string())
    }

    fn checked(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, KeystoreError> {
        if memory_kib > Self::MAX_MEMORY_KIB
            || iterations > Self::MAX_ITERATIONS
            || parallelism > Self::MAX_PARALLELISM
        {
            return Err(KeystoreError::Kdf(format!(
                "argon2id parameters above the ceiling: m={memory_kib} KiB t={iterations} p={parallelism}"
            )));
        }
        let params = KdfParams {
            memory_kib,
            iterations,
            parallelism,
        };
        params.argon2_params()?;
        Ok(params)
    }

    fn argon2_params(&self) -> Result<Params, KeystoreError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32)).map_err(|e| {
            KeystoreError::Kdf(format!(
                "argon2 refuses m={} KiB t={} p={}: {e}",
                self.memory_kib, self.iterations, self.parallelism
            ))
        })
    }

    /// Memory in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes (t).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes (p).
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// Whether these parameters meet the minimum for new slots.
    pub fn meets_minimum(&self) -> bool {
        self.memory_kib >= Self::MIN_MEMORY_KIB && self.iterations >= Self::MIN_ITERATIONS
    }

    /// Derives the 32-byte key-encryption key from `passphrase` and `salt`.
    pub fn derive_kek(
        &self,
        passphrase: &SecretString,
        salt: &[u8],
    ) -> Result<Secret32, KeystoreError> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.argon2_params()?);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.expose_secret().as_bytes(), salt, out.as_mut())
            .map_err(|e| KeystoreError::Kdf(format!("argon2id failed: {e}")))?;
        Ok(Secret32::new(*out))
    }
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106 §4, second recommended option).
    fn default() -> Self {
        KdfParams {
            memory_kib: Self::MIN_MEMORY_KIB,
            iterations: Self::MIN_ITERATIONS,
            parallelism: 1,
        }
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "argon2id m={} KiB t={} p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_is_enforced_for_new_slots() {
        assert!(KdfParams::default().meets_minimum());
        assert!(KdfParams::new(65536, 3, 1).is_ok());
        assert!(KdfParams::new(65535, 3, 1).is_err());
        assert!(KdfParams::new(65536, 2, 1).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 3, 1).is_err());
        let weak = KdfParams::unsafe_weak(64, 1).unwrap();
        assert!(!weak.meets_minimum());
        assert!(
            KdfParams::unsafe_weak(1, 1).is_err(),
            "argon2 needs 8 KiB per lane"
        );
        assert!(KdfParams::from_stored(64, 0, 1).is_err());
        assert!(KdfParams::from_stored(64, 1, 0).is_err());
    }

    #[test]
    fn kek_depends_on_passphrase_salt_and_params() {
        let p = KdfParams::unsafe_weak(64, 1).unwrap();
        let a = SecretString::new("one".into());
        let b = SecretString::new("two".into());
        let salt = [1u8; 16];
        let k1 = p.derive_kek(&a, &salt).unwrap();
        assert_eq!(k1, p.derive_kek(&a, &salt).unwrap());
        assert_ne!(k1, p.derive_kek(&b, &salt).unwrap());
        assert_ne!(k1, p.derive_kek(&a, &[2u8; 16]).unwrap());
        let p2 = KdfParams::unsafe_weak(64, 2).unwrap();
        assert_ne!(k1, p2.derive_kek(&a, &salt).unwrap());
    }

    /// The reference implementation's own vectors (phc-winner-argon2, `src/test.c`, Argon2id
    /// version 0x13, password "password", salt "somesalt", 32-byte tag): pins the algorithm and
    /// version, so a silent change (which would lock operators out of their stores) fails here.
    #[test]
    fn argon2id_reference_vectors() {
        let password = SecretString::new("password".into());
        for (memory_kib, expected) in [
            (
                256,
                "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe",
            ),
            (
                65536,
                "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7",
            ),
        ] {
            let params = KdfParams::unsafe_weak(memory_kib, 2).unwrap();
            let kek = params.derive_kek(&password, b"somesalt").unwrap();
            assert_eq!(hex::encode(kek.expose_secret()), expected);
        }
    }
}
