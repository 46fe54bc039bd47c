//! The HSM ceremonies as the ceremony log records them: keys imported into a token
//! (`custos hsm import`), keys generated inside it (`custos hsm keygen`), the store's HSM unseal
//! slot added or removed (`custos hsm unseal-slot add|remove`). Public facts only: the token's
//! label and module path, object labels, wallets, derivation paths, public keys, counts and the
//! unseal key's label. Nothing here is given the user PIN, and no field can hold key material.
//!
//! # Many keys, one bounded entry
//!
//! An import or a keygen may cover thousands of keys, more than one log entry may hold
//! ([`crate::keystore::ceremony_log::MAX_ENTRY_BODY`]). The entry lists every key when there are
//! at most [`LISTED_KEYS`], else the first and the last `LISTED_KEYS / 2` in order; it always
//! carries the count and `keys_sha256`, the SHA-256 of the lines `<label> <public key hex>\n` of
//! every key in order, which whoever holds the keys' public halves (the token's public objects,
//! or the wallet's xpub for an import) can recompute.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::UnsealedBy;

/// The most keys an entry lists one by one.
pub const LISTED_KEYS: usize = 16;

/// One key the HSM holds (public facts only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmKeyFact {
    /// The object label in the token.
    pub label: String,
    /// The wallet it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<String>,
    /// Its derivation path, if HD-derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its public key, hex (compressed SEC1).
    pub public_key: String,
}

/// An HSM import (see [`super::record_hsm_import`]). The fields after `keys` are filled by
/// `custos hsm import`; entries that only list keys stay readable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmImport {
    /// The token's label (or `slot N`).
    pub token: String,
    /// The PKCS#11 module path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The keys imported: all of them, or the first and last ones when there are more than
    /// [`LISTED_KEYS`] (see `key_count`).
    pub keys: Vec<HsmKeyFact>,
    /// The wallet whose keys were imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<String>,
    /// Its seed (master fingerprint): the keys were derived from it on the ceremony host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Its account xpub (SLIP-132 form on Bitcoin), from which every public key can be derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xpub: Option<String>,
    /// The address indexes, `START..END` (END excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// `receive` or `receive and change`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chains: Option<String>,
    /// Key pairs created in the token by this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// Key pairs that were in the token already, with the expected public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<u64>,
    /// How many keys the import covers (`keys` may list fewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u64>,
    /// SHA-256 over `<label> <public key>\n` of every key covered, in order, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_sha256: Option<String>,
    /// How the store was unsealed to derive them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsealed_by: Option<UnsealedBy>,
}

/// A wallet whose keys were generated inside the token (`custos hsm keygen`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmKeygen {
    /// The token's label (or `slot N`).
    pub token: String,
    /// The PKCS#11 module path.
    pub module: String,
    /// The new wallet.
    pub wallet: String,
    /// Its chain.
    pub chain: String,
    /// Its network.
    pub network: String,
    /// Its seed id (`hsm:<wallet>`: there is no seed).
    pub seed: String,
    /// Its first address.
    pub first_address: String,
    /// How many keys were generated (addresses 0..N).
    pub key_count: u64,
    /// The keys: all of them, or the first and last ones (see `key_count`).
    pub keys: Vec<HsmKeyFact>,
    /// SHA-256 over `<label> <public key>\n` of every key, in order, hex.
    pub keys_sha256: String,
    /// How the store was unsealed to record the wallet.
    pub unsealed_by: UnsealedBy,
}

/// The store's HSM unseal slot, added or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmUnsealSlot {
    /// The token's label (or `slot N`).
    pub token: String,
    /// The PKCS#11 module path.
    pub module: String,
    /// The label of the AES-256 key in the token that seals the store's data key.
    pub key_label: String,
    /// Removal only: whether the key is destroyed in the token too (after the record is gone)
    /// or kept there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_destroyed: Option<bool>,
    /// How the store was unsealed.
    pub unsealed_by: UnsealedBy,
}

/// The keys of one ceremony as an entry holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySummary {
    /// How many keys.
    pub count: u64,
    /// All of them up to [`LISTED_KEYS`], else the first and last `LISTED_KEYS / 2`.
    pub listed: Vec<HsmKeyFact>,
    /// SHA-256 over `<label> <public key>\n` of every key, hex.
    pub sha256: String,
}

/// Builds a [`KeySummary`] from keys given one at a time, in order, in bounded memory.
#[derive(Debug)]
pub struct KeyDigest {
    hash: Sha256,
    count: u64,
    head: Vec<HsmKeyFact>,
    tail: VecDeque<HsmKeyFact>,
}

impl Default for KeyDigest {
    fn default() -> Self {
        KeyDigest {
            hash: Sha256::new(),
            count: 0,
            head: Vec::new(),
            tail: VecDeque::new(),
        }
    }
}

impl KeyDigest {
    /// Adds the next key.
    pub fn push(&mut self, key: HsmKeyFact) {
        self.hash.update(key.label.as_bytes());
        self.hash.update(b" ");
        self.hash.update(key.public_key.as_bytes());
        self.hash.update(b"\n");
        self.count += 1;
        if self.head.len() < LISTED_KEYS / 2 {
            self.head.push(key);
            return;
        }
        self.tail.push_back(key);
        if self.tail.len() > LISTED_KEYS - LISTED_KEYS / 2 {
            self.tail.pop_front();
        }
    }

    /// The summary. With at most [`LISTED_KEYS`] keys, every key is listed.
    pub fn finish(self) -> KeySummary {
        let mut listed = self.head;
        listed.extend(self.tail);
        KeySummary {
            count: self.count,
            listed,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
}

/// The lines that say how many keys, which are listed, and the digest.
fn key_lines(count: u64, keys: &[HsmKeyFact], sha256: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sha) = sha256 {
        out.push(format!(
            "sha256 over each key's 'label public-key' line, in order: {sha}"
        ));
    }
    if (keys.len() as u64) < count {
        out.push(format!(
            "listed: the first {} and the last {} of the {count} keys",
            keys.len().min(LISTED_KEYS / 2),
            keys.len().saturating_sub(LISTED_KEYS / 2)
        ));
    }
    for k in keys {
        let mut s = format!("key {}: public key {}", k.label, k.public_key);
        if let Some(p) = &k.path {
            s.push_str(&format!(", path {p}"));
        }
        out.push(s);
    }
    out
}

impl HsmImport {
    /// The transcript lines of this import.
    pub fn lines(&self) -> Vec<String> {
        let count = self.key_count.unwrap_or(self.keys.len() as u64);
        let mut out = vec![format!(
            "{count} key(s) imported into HSM token '{}'",
            self.token
        )];
        if let Some(m) = &self.module {
            out.push(format!("module {m}"));
        }
        if let Some(w) = &self.wallet {
            out.push(format!(
                "wallet {w}, seed {}: the keys were derived from the seed on the ceremony host",
                self.seed.as_deref().unwrap_or("?")
            ));
        }
        if let Some(x) = &self.xpub {
            out.push(format!("xpub {x}"));
        }
        if let Some(r) = &self.range {
            out.push(format!(
                "addresses {r} ({}): {} created, {} already present",
                self.chains.as_deref().unwrap_or("?"),
                self.created.map_or("?".into(), |n| n.to_string()),
                self.present.map_or("?".into(), |n| n.to_string())
            ));
        }
        out.extend(key_lines(count, &self.keys, self.keys_sha256.as_deref()));
        if let Some(u) = &self.unsealed_by {
            out.push(format!("unsealed with {}", u.describe()));
        }
        out
    }
}

impl HsmKeygen {
    /// The transcript lines of this keygen.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "wallet {}: {} {}, {} key(s) generated inside HSM token '{}', never extractable",
                self.wallet, self.chain, self.network, self.key_count, self.token
            ),
            format!("module {}", self.module),
            format!(
                "seed id {} (no seed, no xpub: the token is the only copy of these keys)",
                self.seed
            ),
            format!("first address {}", self.first_address),
        ];
        out.extend(key_lines(
            self.key_count,
            &self.keys,
            Some(self.keys_sha256.as_str()),
        ));
        out.push(format!("unsealed with {}", self.unsealed_by.describe()));
        out
    }
}

impl HsmUnsealSlot {
    /// The transcript lines of an unseal slot added (`removed` false) or removed.
    pub fn lines(&self, removed: bool) -> Vec<String> {
        let mut out = Vec::new();
        if removed {
            out.push(format!(
                "HSM unseal slot REMOVED: key '{}' in token '{}' no longer unseals the store",
                self.key_label, self.token
            ));
            out.push(match self.key_destroyed {
                Some(true) => {
                    "the key is destroyed in the token after the record was removed".into()
                }
                _ => "the key was kept in the token".into(),
            });
        } else {
            out.push(format!(
                "HSM unseal slot added: the store's data key is sealed by key '{}' (AES-256, not extractable) in token '{}'",
                self.key_label, self.token
            ));
            out.push("whoever can use that key with the token's user PIN can unseal the store (auto-unseal)".into());
        }
        out.push(format!("module {}", self.module));
        out.push(format!("unsealed with {}", self.unsealed_by.describe()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> HsmKeyFact {
        HsmKeyFact {
            label: format!("custos/w/0/{i}"),
            wallet: Some("w".into()),
            path: None,
            public_key: format!("02{i:064x}"),
        }
    }

    #[test]
    fn a_few_keys_are_all_listed_many_are_bounded_and_all_hashed() {
        for n in [0u32, 1, 7, 16, 17, 1000] {
            let mut digest = KeyDigest::default();
            let mut lines = String::new();
            for i in 0..n {
                digest.push(key(i));
                let k = key(i);
                lines.push_str(&format!("{} {}\n", k.label, k.public_key));
            }
            let summary = digest.finish();
            assert_eq!(summary.count, u64::from(n));
            assert_eq!(
                summary.sha256,
                hex::encode(Sha256::digest(lines.as_bytes()))
            );
            let expected: Vec<HsmKeyFact> = if n as usize <= LISTED_KEYS {
                (0..n).map(key).collect()
            } else {
                (0..8).chain(n - 8..n).map(key).collect()
            };
            assert_eq!(summary.listed, expected, "{n}");
        }
    }

    #[test]
    fn lines_name_the_bounded_listing() {
        let mut digest = KeyDigest::default();
        for i in 0..40 {
            digest.push(key(i));
        }
        let s = digest.finish();
        let text = key_lines(s.count, &s.listed, Some(&s.sha256)).join("\n");
        assert!(
            text.contains("the first 8 and the last 8 of the 40 keys"),
            "{text}"
        );
        assert!(text.contains(&s.sha256));
        assert!(text.contains("custos/w/0/39") && !text.contains("custos/w/0/20"));
    }
}
