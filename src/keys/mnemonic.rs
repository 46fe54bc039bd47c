//! BIP39 mnemonics (English word list), as the operator types them at a recovery ceremony.
//!
//! Implements BIP39 through the `bip39` crate (the rust-bitcoin project's implementation). What
//! this module adds is the custody habit: the mnemonic is kept only as its entropy in a zeroizing
//! type, and errors point at the position of a bad word, never at the word, so an error message or
//! a log line can never carry part of a seed phrase.

use std::fmt;

use bip39::{Language, Mnemonic};
use zeroize::Zeroizing;

use crate::secret::{SecretBytes, SecretString};

/// Why a mnemonic was refused. Messages never contain the words themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MnemonicError {
    /// The phrase has a number of words BIP39 does not allow.
    #[error("a mnemonic has 12, 15, 18, 21 or 24 words, this one has {got}")]
    WordCount {
        /// How many words were given.
        got: usize,
    },
    /// A word is not in the English BIP39 list (position counted from 1).
    #[error("word {position} of {count} is not in the BIP39 English word list")]
    UnknownWord {
        /// 1-based position of the word.
        position: usize,
        /// Total number of words.
        count: usize,
    },
    /// Every word is valid but the checksum the last word carries does not match.
    #[error(
        "the mnemonic's checksum does not match: a word is wrong or the words are out of order"
    )]
    BadChecksum,
    /// Entropy of a length BIP39 does not allow (16, 20, 24, 28 or 32 bytes).
    #[error("mnemonic entropy must be 16, 20, 24, 28 or 32 bytes, got {got}")]
    EntropyLength {
        /// Length given, in bytes.
        got: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// A BIP39 mnemonic held as its entropy (16–32 bytes), zeroized on drop.
pub struct MnemonicSecret {
    entropy: SecretBytes,
}

impl MnemonicSecret {
    /// A new 24-word mnemonic from 256 bits of operating-system randomness.
    pub fn generate() -> Result<Self, MnemonicError> {
        let entropy = SecretBytes::random(32).map_err(|_| MnemonicError::Rng)?;
        Ok(MnemonicSecret { entropy })
    }

    /// Parses an English mnemonic. Case and runs of whitespace (spaces, tabs, new lines) are
    /// forgiven, since operators copy phrases from paper and files; anything else is an error.
    pub fn parse(phrase: &SecretString) -> Result<Self, MnemonicError> {
        let normalized = Zeroizing::new(
            phrase
                .expose_secret()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        );
        let count = normalized.split(' ').filter(|w| !w.is_empty()).count();
        if !matches!(count, 12 | 15 | 18 | 21 | 24) {
            return Err(MnemonicError::WordCount { got: count });
        }
        let mnemonic =
            Mnemonic::parse_in_normalized(Language::English, &normalized).map_err(|error| {
                match error {
                    bip39::Error::UnknownWord(index) => MnemonicError::UnknownWord {
                        position: index + 1,
                        count,
                    },
                    bip39::Error::BadWordCount(got) => MnemonicError::WordCount { got },
                    bip39::Error::BadEntropyBitCount(bits) => {
                        MnemonicError::EntropyLength { got: bits / 8 }
                    }
                    _ => MnemonicError::BadChecksum,
                }
            })?;
        let (array, len) = mnemonic.to_entropy_array();
        let array = Zeroizing::new(array);
        Ok(MnemonicSecret {
            entropy: SecretBytes::from_slice(&array[..len]),
        })
    }

    /// A mnemonic from its entropy (16, 20, 24, 28 or 32 bytes).
    pub fn from_entropy(entropy: SecretBytes) -> Result<Self, MnemonicError> {
        if !matches!(entropy.len(), 16 | 20 | 24 | 28 | 32) {
            return Err(MnemonicError::EntropyLength { got: entropy.len() });
        }
        Ok(MnemonicSecret { entropy })
    }

    /// The entropy (what the key store seals).
    pub fn entropy(&self) -> &SecretBytes {
        &self.entropy
    }

    /// Number of words (12–24).
    pub fn word_count(&self) -> usize {
        self.entropy.len() * 3 / 4
    }

    fn as_bip39(&self) -> Mnemonic {
        Mnemonic::from_entropy_in(Language::English, self.entropy.expose_secret())
            .expect("entropy length was checked when this value was made")
    }

    /// The words, for the paper backup shown once at `init`. The caller must not log them.
    pub fn phrase(&self) -> SecretString {
        let mnemonic = self.as_bip39();
        SecretString::new(mnemonic.words().collect::<Vec<_>>().join(" "))
    }

    /// The 64-byte BIP39 seed for an optional passphrase (the "25th word").
    pub fn to_seed(&self, passphrase: &SecretString) -> SecretBytes {
        let mnemonic = self.as_bip39();
        let seed = Zeroizing::new(mnemonic.to_seed(passphrase.expose_secret()));
        SecretBytes::from_slice(seed.as_ref())
    }
}

impl fmt::Debug for MnemonicSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MnemonicSecret, MnemonicError> {
        MnemonicSecret::parse(&SecretString::new(s.into()))
    }

    const ABANDON: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn forgives_case_and_whitespace() {
        let m = parse(&ABANDON.replace(' ', " \n\t").to_uppercase()).unwrap();
        assert_eq!(m.entropy().expose_secret(), &[0u8; 16]);
        assert_eq!(m.phrase().expose_secret(), ABANDON);
    }

    #[test]
    fn errors_name_position_not_word() {
        let bad = ABANDON.replace("about", "abuot");
        let err = parse(&bad).unwrap_err();
        assert_eq!(
            err,
            MnemonicError::UnknownWord {
                position: 12,
                count: 12
            }
        );
        assert!(!err.to_string().contains("abuot"));
        assert_eq!(
            parse(&ABANDON.replace("about", "abandon")).unwrap_err(),
            MnemonicError::BadChecksum
        );
        assert_eq!(
            parse("abandon abandon").unwrap_err(),
            MnemonicError::WordCount { got: 2 }
        );
    }

    #[test]
    fn generate_is_24_words() {
        let m = MnemonicSecret::generate().unwrap();
        assert_eq!(m.word_count(), 24);
        assert_eq!(m.phrase().expose_secret().split(' ').count(), 24);
    }
}
