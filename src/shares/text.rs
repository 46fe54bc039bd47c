//! The text form of a share, made to be written on paper, read aloud and typed back.
//!
//! A share is a bech32m string (BIP-350's checksum, through the `bech32` crate rust-bitcoin
//! uses) with the human-readable part `cshare`, shown in groups of four characters:
//!
//! ```text
//! cshare1 qy3x 8ddc nq5z wqgp …   (18 groups)
//! ```
//!
//! - The alphabet has no `1`, `b`, `i` or `o`, and case does not matter; spaces and hyphens
//!   between groups are ignored, and so is a missing `cshare1` prefix.
//! - The BCH checksum detects any error in up to four characters (BIP-173/350). When the
//!   checksum fails, the parser tries each single-character change, each swap of neighbours, and
//!   each missing or extra character, and names the group where one of them would fit ("group 7
//!   looks mistyped") — without ever printing what it would be.
//! - The payload (41 bytes) is: format `1`; the first 4 bytes of the store id; the share set id
//!   (2 bytes, new at every split); the threshold M; the share's index (1 to 255); its value (a
//!   P-256 scalar, 32 bytes). So a share names its store, set, index and threshold by itself;
//!   whether it is authentic is then checked against the store's commitments
//!   ([`super::collect`]).

use std::fmt;

use bitcoin::bech32::primitives::decode::{CheckedHrpstring, CheckedHrpstringError};
use bitcoin::bech32::{encode_lower_to_fmt, Bech32, Bech32m, Hrp};
use zeroize::Zeroizing;

use super::vss::{ShareValue, VssError, VALUE_LEN};
use crate::secret::SecretString;

/// The human-readable part of every share.
pub const HRP: &str = "cshare";
/// The payload format this build writes and reads.
pub const FORMAT: u8 = 1;
/// Characters after `cshare1`: 66 of payload and 6 of checksum.
pub const DATA_CHARS: usize = 72;
/// Characters per displayed group.
pub const GROUP: usize = 4;
/// Bytes of the store id a share carries.
pub const STORE_TAG_LEN: usize = 4;
/// Bytes of the share set id.
pub const SET_ID_LEN: usize = 2;

const PAYLOAD_LEN: usize = 1 + STORE_TAG_LEN + SET_ID_LEN + 1 + 1 + VALUE_LEN;
const ALPHABET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// The longest input looked at: a share with generous separators.
const MAX_INPUT: usize = 400;

/// Why a text is not a well-formed share. Messages name positions, never the share's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareTextError {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// Far too long to be a share.
    #[error("it is {0} characters long: that is not a share")]
    TooLong(usize),
    /// A character outside the share alphabet.
    #[error("group {group} has the character '{found}', which shares never use{hint}")]
    BadCharacter {
        /// 1-based group.
        group: usize,
        /// The character (not part of any share, so safe to show).
        found: char,
        /// A hint (`"; did you mean '0'?"`) or empty.
        hint: &'static str,
    },
    /// Not 72 characters after the prefix.
    #[error("it has {got} characters after 'cshare1', {expected} expected{where_}")]
    Length {
        /// Characters found.
        got: usize,
        /// Characters expected.
        expected: usize,
        /// Where a character seems missing or extra, if that could be found.
        where_: String,
    },
    /// The checksum does not match.
    #[error("its checksum does not match: a character is mistyped{where_}")]
    Checksum {
        /// `"; group 7 looks mistyped"`, or a request to check every group.
        where_: String,
    },
    /// A checksummed string of another kind (another human-readable part).
    #[error("it is not a Custos share (it starts with '{0}1', not 'cshare1')")]
    NotAShare(String),
    /// A payload format this build does not read.
    #[error("it has share format {0}; this build reads format 1")]
    Format(u8),
    /// Index 0, or a value that is not a valid scalar.
    #[error("its index or value is out of range")]
    Value,
}

/// A decoded share: where it belongs, and its index and value.
pub struct ParsedShare {
    /// The first bytes of the store id it was made for.
    pub store_tag: [u8; STORE_TAG_LEN],
    /// The share set it belongs to.
    pub set_id: [u8; SET_ID_LEN],
    /// The threshold it was made with.
    pub threshold: u8,
    /// Index and value.
    pub share: ShareValue,
}

impl fmt::Debug for ParsedShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedShare")
            .field("store_tag", &hex::encode(self.store_tag))
            .field("set_id", &hex::encode(self.set_id))
            .field("threshold", &self.threshold)
            .field("share", &self.share)
            .finish()
    }
}

/// Encodes a share as `cshare1` followed by 18 space-separated groups of four characters.
pub fn encode(
    store_tag: [u8; STORE_TAG_LEN],
    set_id: [u8; SET_ID_LEN],
    threshold: u8,
    share: &ShareValue,
) -> SecretString {
    let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
    payload[0] = FORMAT;
    payload[1..5].copy_from_slice(&store_tag);
    payload[5..7].copy_from_slice(&set_id);
    payload[7] = threshold;
    payload[8] = share.index();
    payload[9..].copy_from_slice(&*share.value_bytes());
    let hrp = Hrp::parse(HRP).expect("'cshare' is a valid human-readable part");
    let mut plain = Zeroizing::new(String::with_capacity(128));
    encode_lower_to_fmt::<Bech32m, _>(&mut *plain, hrp, &*payload)
        .expect("writing to a String cannot fail and 41 bytes fit a bech32m string");
    let data = &plain[HRP.len() + 1..];
    debug_assert_eq!(data.len(), DATA_CHARS);
    let mut out = String::with_capacity(HRP.len() + 1 + DATA_CHARS + DATA_CHARS / GROUP);
    out.push_str(HRP);
    out.push('1');
    for (i, c) in data.chars().enumerate() {
        if i % GROUP == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    SecretString::new(out)
}

/// The groups of a share's text (after the prefix), for display one by one.
pub fn groups(text: &SecretString) -> Vec<Zeroizing<String>> {
    let normalised = normalise(text.expose_secret());
    let data = normalised
        .strip_prefix(&format!("{HRP}1"))
        .unwrap_or(&normalised);
    data.as_bytes()
        .chunks(GROUP)
        .map(|c| Zeroizing::new(String::from_utf8_lossy(c).into_owned()))
        .collect()
}

/// Parses a share typed, pasted or read from a file. Lines starting with `#` are comments.
pub fn parse(text: &SecretString) -> Result<ParsedShare, ShareTextError> {
    let raw = text.expose_secret();
    if raw.len() > MAX_INPUT * 4 {
        return Err(ShareTextError::TooLong(raw.chars().count()));
    }
    let normalised = normalise(raw);
    if normalised.is_empty() {
        return Err(ShareTextError::Empty);
    }
    if normalised.len() > MAX_INPUT {
        return Err(ShareTextError::TooLong(normalised.len()));
    }
    let prefix = format!("{HRP}1");
    let data: &str = match normalised.strip_prefix(&prefix) {
        Some(rest) => rest,
        None => match normalised.rfind('1') {
            // Some other checksummed kind of string (an address, another tool's share).
            Some(at)
                if at > 0 && !normalised[..at].contains(|c: char| !c.is_ascii_alphanumeric()) =>
            {
                if CheckedHrpstring::new::<Bech32m>(&normalised).is_ok()
                    || CheckedHrpstring::new::<Bech32>(&normalised).is_ok()
                {
                    return Err(ShareTextError::NotAShare(normalised[..at].to_owned()));
                }
                &normalised
            }
            _ => &normalised,
        },
    };
    for (i, c) in data.chars().enumerate() {
        if !ALPHABET.contains(c) {
            let hint = match c {
                'o' => "; did you mean '0' (zero)?",
                'i' | '1' => "; did you mean 'l' (the letter)?",
                'b' => "; did you mean '8'?",
                _ => "",
            };
            return Err(ShareTextError::BadCharacter {
                group: i / GROUP + 1,
                found: c,
                hint,
            });
        }
    }
    let full = Zeroizing::new(format!("{prefix}{data}"));
    if data.len() != DATA_CHARS {
        return Err(ShareTextError::Length {
            got: data.len(),
            expected: DATA_CHARS,
            where_: locate_length_error(data),
        });
    }
    let checked = match CheckedHrpstring::new::<Bech32m>(&full) {
        Ok(checked) => checked,
        Err(CheckedHrpstringError::Checksum(_)) => {
            return Err(ShareTextError::Checksum {
                where_: locate_substitution(data),
            })
        }
        Err(_) => {
            return Err(ShareTextError::Checksum {
                where_: String::new(),
            })
        }
    };
    // 72 characters of which 6 are checksum: 66 × 5 = 330 bits, 41 bytes and 2 zero bits.
    let last = data.as_bytes()[DATA_CHARS - 7];
    let last_value = ALPHABET.find(char::from(last)).unwrap_or(0);
    if last_value & 0b11 != 0 {
        return Err(ShareTextError::Value);
    }
    let mut payload = Zeroizing::new(Vec::with_capacity(PAYLOAD_LEN + 1));
    payload.extend(checked.byte_iter());
    if payload.len() != PAYLOAD_LEN {
        return Err(ShareTextError::Value);
    }
    if payload[0] != FORMAT {
        return Err(ShareTextError::Format(payload[0]));
    }
    let mut value = Zeroizing::new([0u8; VALUE_LEN]);
    value.copy_from_slice(&payload[9..]);
    let share = ShareValue::from_parts(payload[8], &value).map_err(|e| match e {
        VssError::BadValue { .. } => ShareTextError::Value,
        _ => ShareTextError::Value,
    })?;
    Ok(ParsedShare {
        store_tag: payload[1..5].try_into().expect("4 bytes"),
        set_id: payload[5..7].try_into().expect("2 bytes"),
        threshold: payload[7],
        share,
    })
}

/// Lower case, without comment lines, whitespace and hyphens.
fn normalise(raw: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(raw.len().min(MAX_INPUT * 4)));
    for line in raw.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for c in line.chars() {
            if !c.is_whitespace() && c != '-' {
                out.extend(c.to_lowercase());
            }
        }
    }
    out
}

fn checksum_ok(data: &str) -> bool {
    let full = Zeroizing::new(format!("{HRP}1{data}"));
    CheckedHrpstring::new::<Bech32m>(&full).is_ok()
}

fn groups_phrase(mut groups: Vec<usize>, what: &str) -> String {
    groups.sort_unstable();
    groups.dedup();
    match groups.as_slice() {
        [] => "; compare every group with the written share".into(),
        [g] => format!("; group {g} {what}"),
        [a, b] => format!("; group {a} or {b} {what}"),
        _ => "; compare every group with the written share".into(),
    }
}

/// Where one substituted character or one swap of neighbours would make the checksum match.
fn locate_substitution(data: &str) -> String {
    let bytes = data.as_bytes();
    let mut candidate = Zeroizing::new(bytes.to_vec());
    let mut hits = Vec::new();
    for pos in 0..bytes.len() {
        for c in ALPHABET.bytes() {
            if c == bytes[pos] {
                continue;
            }
            candidate[pos] = c;
            if checksum_ok(std::str::from_utf8(&candidate).expect("alphabet is ASCII")) {
                hits.push(pos / GROUP + 1);
            }
        }
        candidate[pos] = bytes[pos];
    }
    if !hits.is_empty() {
        return groups_phrase(hits, "looks mistyped");
    }
    for pos in 0..bytes.len().saturating_sub(1) {
        candidate.swap(pos, pos + 1);
        if checksum_ok(std::str::from_utf8(&candidate).expect("alphabet is ASCII")) {
            hits.push(pos / GROUP + 1);
            hits.push((pos + 1) / GROUP + 1);
        }
        candidate.swap(pos, pos + 1);
    }
    groups_phrase(hits, "has two characters swapped")
}

/// Where one missing or one extra character would make a string of the right length that passes.
fn locate_length_error(data: &str) -> String {
    let bytes = data.as_bytes();
    let mut hits = Vec::new();
    if bytes.len() + 1 == DATA_CHARS {
        for pos in 0..=bytes.len() {
            for c in ALPHABET.bytes() {
                let mut candidate = Zeroizing::new(Vec::with_capacity(DATA_CHARS));
                candidate.extend_from_slice(&bytes[..pos]);
                candidate.push(c);
                candidate.extend_from_slice(&bytes[pos..]);
                if checksum_ok(std::str::from_utf8(&candidate).expect("alphabet is ASCII")) {
                    hits.push(pos / GROUP + 1);
                }
            }
        }
        return groups_phrase(hits, "is missing a character");
    }
    if bytes.len() == DATA_CHARS + 1 {
        for pos in 0..bytes.len() {
            let mut candidate = Zeroizing::new(Vec::with_capacity(DATA_CHARS));
            candidate.extend_from_slice(&bytes[..pos]);
            candidate.extend_from_slice(&bytes[pos + 1..]);
            if checksum_ok(std::str::from_utf8(&candidate).expect("alphabet is ASCII")) {
                hits.push(pos / GROUP + 1);
            }
        }
        return groups_phrase(hits, "has an extra character");
    }
    if bytes.len() < DATA_CHARS {
        format!(
            "; about {} group(s) are missing",
            (DATA_CHARS - bytes.len()).div_ceil(GROUP)
        )
    } else {
        format!(
            "; about {} group(s) too many",
            (bytes.len() - DATA_CHARS).div_ceil(GROUP)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shares::vss::{split, SharedSecret};

    /// A fixed share, so that every position test below is deterministic.
    fn sample() -> (SecretString, ShareValue) {
        let share = ShareValue::from_parts(2, &[0x5a; 32]).unwrap();
        let text = encode([1, 2, 3, 4], [9, 8], 2, &share);
        (text, share)
    }

    #[test]
    fn shares_of_a_real_split_round_trip() {
        let (shares, _) = split(&SharedSecret::random().unwrap(), 3, 5).unwrap();
        for share in &shares {
            let parsed = parse(&encode([7; 4], [1, 1], 3, share)).unwrap();
            assert_eq!(parsed.share.index(), share.index());
            assert_eq!(*parsed.share.value_bytes(), *share.value_bytes());
        }
    }

    fn data_of(text: &SecretString) -> String {
        normalise(text.expose_secret())[HRP.len() + 1..].to_owned()
    }

    fn with_data(data: &str) -> SecretString {
        SecretString::new(format!("cshare1{data}"))
    }

    #[test]
    fn round_trip_and_forms() {
        let (text, share) = sample();
        let shown = text.expose_secret();
        assert!(shown.starts_with("cshare1 "));
        assert_eq!(shown.split(' ').count(), 1 + DATA_CHARS / GROUP);
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.store_tag, [1, 2, 3, 4]);
        assert_eq!(parsed.set_id, [9, 8]);
        assert_eq!(parsed.threshold, 2);
        assert_eq!(parsed.share.index(), 2);
        assert_eq!(*parsed.share.value_bytes(), *share.value_bytes());
        // Upper case, hyphens, line breaks, no prefix, comments: all the same share.
        let data = data_of(&text);
        for variant in [
            shown.to_uppercase(),
            shown.replace(' ', "-"),
            shown.replace(' ', "\n"),
            data.clone(),
            format!("# Custos key share 2 of 3\n{shown}\n"),
        ] {
            let again = parse(&SecretString::new(variant)).unwrap();
            assert_eq!(*again.share.value_bytes(), *share.value_bytes());
        }
        assert_eq!(groups(&text).len(), DATA_CHARS / GROUP);
        assert!(!format!("{parsed:?}").contains(&hex::encode(*share.value_bytes())));
    }

    /// Every single-character substitution is caught (the checksum, all 72 × 31 of them), and
    /// at every position the parser names the group (one substitution per position: locating
    /// tries every candidate, so all of them would take long in a debug build).
    #[test]
    fn every_substitution_is_caught_and_located() {
        let (text, _) = sample();
        let data = data_of(&text);
        for pos in 0..DATA_CHARS {
            let others: Vec<char> = ALPHABET
                .chars()
                .filter(|c| *c != data.as_bytes()[pos] as char)
                .collect();
            for c in &others {
                let mut bad = data.clone().into_bytes();
                bad[pos] = *c as u8;
                assert!(
                    !checksum_ok(std::str::from_utf8(&bad).unwrap()),
                    "{pos} {c}"
                );
            }
            let mut bad = data.clone().into_bytes();
            bad[pos] = others[pos % others.len()] as u8;
            let err = parse(&with_data(std::str::from_utf8(&bad).unwrap())).unwrap_err();
            let group = pos / GROUP + 1;
            assert!(
                matches!(&err, ShareTextError::Checksum { where_ } if where_ == &format!("; group {group} looks mistyped")),
                "pos {pos}: {err}"
            );
        }
    }

    #[test]
    fn swaps_missing_and_extra_characters_are_located() {
        let (text, _) = sample();
        let data = data_of(&text);
        let bytes = data.as_bytes();
        // A swap of two different neighbours inside group 3.
        let pos = (8..11).find(|p| bytes[*p] != bytes[p + 1]).unwrap();
        let mut swapped = bytes.to_vec();
        swapped.swap(pos, pos + 1);
        let err = parse(&with_data(std::str::from_utf8(&swapped).unwrap())).unwrap_err();
        assert!(err.to_string().contains("group 3"), "{err}");
        // A character dropped from group 5.
        let mut short = bytes.to_vec();
        short.remove(17);
        let err = parse(&with_data(std::str::from_utf8(&short).unwrap())).unwrap_err();
        assert!(
            matches!(err, ShareTextError::Length { got: 71, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("group 5"), "{err}");
        // An extra character in group 9.
        let mut long = bytes.to_vec();
        long.insert(33, b'q');
        let err = parse(&with_data(std::str::from_utf8(&long).unwrap())).unwrap_err();
        assert!(err.to_string().contains("group 9"), "{err}");
        // A missing group.
        let err = parse(&with_data(&data[4..])).unwrap_err();
        assert!(
            matches!(err, ShareTextError::Length { got: 68, .. }),
            "{err}"
        );
    }

    #[test]
    fn other_inputs_are_named() {
        let (text, _) = sample();
        let data = data_of(&text);
        assert_eq!(
            parse(&SecretString::new(" \n".into())).err(),
            Some(ShareTextError::Empty)
        );
        let err = parse(&with_data(&data.replacen(&data[12..13], "o", 1))).unwrap_err();
        assert!(
            matches!(err, ShareTextError::BadCharacter { found: 'o', .. }),
            "{err}"
        );
        assert!(err.to_string().contains("did you mean '0'"), "{err}");
        // A bech32m string of another kind.
        let address = "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297";
        assert!(matches!(
            parse(&SecretString::new(address.into())),
            Err(ShareTextError::NotAShare(hrp)) if hrp == "bc"
        ));
        let segwit_v0 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
        assert!(matches!(
            parse(&SecretString::new(segwit_v0.into())),
            Err(ShareTextError::NotAShare(hrp)) if hrp == "bc"
        ));
        assert!(matches!(
            parse(&SecretString::new("x".repeat(5000))),
            Err(ShareTextError::TooLong(_))
        ));
        // Another payload format, correctly checksummed.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0; PAYLOAD_LEN - 1]);
        let hrp = Hrp::parse(HRP).unwrap();
        let mut s = String::new();
        encode_lower_to_fmt::<Bech32m, _>(&mut s, hrp, &payload).unwrap();
        assert_eq!(
            parse(&SecretString::new(s)).err(),
            Some(ShareTextError::Format(2))
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = parse(&SecretString::new(s));
        }

        #[test]
        fn parse_never_panics_on_near_shares(s in "cshare1[qpzry9x8gf2tvdw0s3jn54khce6mua7l -]{60,80}") {
            let _ = parse(&SecretString::new(s));
        }
    }
}
