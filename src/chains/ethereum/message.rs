//! EIP-191 version 0x45 (`personal_sign`): keccak256("\x19Ethereum Signed Message:\n" ‖
//! decimal length ‖ message).
//!
//! The payload is the message's exact bytes. Custos does not guess whether text that looks like
//! hex is hex (wallets disagree on it): a caller holding `0x`-hex data decodes it first, and the
//! CLI's `--message` file is read byte for byte.

use alloy_primitives::{eip191_hash_message, B256};

/// Longest preview, in characters.
const PREVIEW_CHARS: usize = 200;

/// The EIP-191 signing hash of `message`.
pub fn signing_hash(message: &[u8]) -> B256 {
    eip191_hash_message(message)
}

/// A printable preview for approvers: UTF-8 text with control characters escaped, or 0x-hex for
/// binary messages; at most 200 characters (with "…" when cut).
pub fn preview(message: &[u8]) -> String {
    let full: String = match std::str::from_utf8(message) {
        Ok(text) => text
            .chars()
            .flat_map(|c| {
                if c.is_control() || is_invisible(c) {
                    c.escape_unicode().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .take(PREVIEW_CHARS + 1)
            .collect(),
        Err(_) => {
            let cut = &message[..message.len().min(PREVIEW_CHARS / 2)];
            let mut s = format!("0x{}", hex::encode(cut));
            if cut.len() < message.len() {
                s.push('…');
            }
            return s;
        }
    };
    if full.chars().count() > PREVIEW_CHARS {
        let mut cut: String = full.chars().take(PREVIEW_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        full
    }
}

/// Characters that render as nothing or reorder text (bidi controls, zero-width), escaped so a
/// preview cannot hide part of a message.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip191_hash_of_hello_world() {
        // keccak256("\x19Ethereum Signed Message:\n11hello world"), as every wallet computes it.
        assert_eq!(
            signing_hash(b"hello world").to_string(),
            "0xd9eba16ed0ecae432b71fe008c98cc872bb4cc214d3220a36f365326cf807d68"
        );
    }

    #[test]
    fn previews() {
        assert_eq!(preview(b"hi\nthere"), "hi\\u{a}there");
        assert_eq!(preview(&[0xff, 0x00]), "0xff00");
        assert_eq!(preview("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        let long = "x".repeat(500);
        assert_eq!(preview(long.as_bytes()).chars().count(), 200);
    }
}
