//! Operator entropy (`custos init --dice`): typed dice rolls, or any text, mixed into the
//! operating system's randomness for a new seed. It can only add entropy, never replace it.
//!
//! ```text
//! entropy = HMAC-SHA256(key = 32 bytes from the OS generator,
//!                       "custos operator entropy v1" ‖ len(text) (u64 BE) ‖ text)
//! ```
//!
//! and the 32 bytes become a 24-word mnemonic. HMAC-SHA256 is a pseudorandom function of its key:
//! whatever the operator types — nothing, a weak or even a hostile text — the output is as
//! unpredictable as the 32 OS bytes, so the text cannot make the seed weaker. If the OS generator
//! were weak or compromised (the reason to roll dice at all), the output still depends on every
//! character typed: 99 rolls of a fair die carry about 256 bits (log2 6 ≈ 2.585 bits per roll).
//! The text is read without echo, kept in a zeroizing buffer, and never stored or logged; the
//! ceremony log records only how many characters (and dice rolls) were typed.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::EntropyFact;
use crate::secret::{Secret32, SecretString};

const LABEL: &[u8] = b"custos operator entropy v1";
/// Bits of entropy in one roll of a fair six-sided die, in thousandths.
pub const MILLIBITS_PER_ROLL: usize = 2585;

/// Mixes `text` into `os` (see the module doc).
pub fn mix(os: &Secret32, text: &SecretString) -> Secret32 {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(os.expose_secret()).expect("HMAC takes any key");
    mac.update(LABEL);
    mac.update(&(text.expose_secret().len() as u64).to_be_bytes());
    mac.update(text.expose_secret().as_bytes());
    let out = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    Secret32::new(*out)
}

/// 32 bytes of OS randomness with `text` mixed in.
pub fn with_operator_entropy(text: &SecretString) -> Result<Secret32, getrandom::Error> {
    Ok(mix(&Secret32::random()?, text))
}

/// What the log may say about `text`: its length, and the number of dice rolls when it is made
/// of digits 1–6 only (separators ignored).
pub fn describe(text: &SecretString) -> EntropyFact {
    let t = text.expose_secret();
    let significant: Vec<char> = t
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let dice = !significant.is_empty() && significant.iter().all(|c| ('1'..='6').contains(c));
    EntropyFact {
        characters: t.chars().count(),
        dice_rolls: dice.then_some(significant.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_hmac_sha256_keyed_with_the_os_bytes() {
        let os = Secret32::new([7; 32]);
        let text = SecretString::new("3 5 1 6".into());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"custos operator entropy v1");
        mac.update(&7u64.to_be_bytes());
        mac.update(b"3 5 1 6");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(mix(&os, &text).expose_secret(), &expected);
    }

    #[test]
    fn the_text_counts_and_cannot_replace_the_os_bytes() {
        let text = SecretString::new("1111111111".into());
        // The same text with other OS bytes: another result (the OS part is never replaced).
        assert_ne!(
            mix(&Secret32::new([1; 32]), &text),
            mix(&Secret32::new([2; 32]), &text)
        );
        // The same OS bytes with another text: another result (the text is used).
        let os = Secret32::new([1; 32]);
        assert_ne!(
            mix(&os, &text),
            mix(&os, &SecretString::new("1111111112".into()))
        );
        // Even an empty text leaves a uniformly keyed output, distinct from the raw OS bytes.
        assert_ne!(
            mix(&os, &SecretString::new(String::new())).expose_secret(),
            os.expose_secret()
        );
        // Two calls with the same text from the real OS generator differ.
        assert_ne!(
            with_operator_entropy(&text).unwrap(),
            with_operator_entropy(&text).unwrap()
        );
    }

    #[test]
    fn description_counts_without_content() {
        let fact = describe(&SecretString::new("3 5 1, 6 6".into()));
        assert_eq!(fact.characters, 10);
        assert_eq!(fact.dice_rolls, Some(5));
        assert_eq!(
            describe(&SecretString::new("coin flips: hhtt".into())).dice_rolls,
            None
        );
        assert_eq!(describe(&SecretString::new("7".into())).dice_rolls, None);
    }
}
