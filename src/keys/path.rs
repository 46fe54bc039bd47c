//! BIP32 derivation paths: the account paths each chain uses, and strict parsing of paths that
//! arrive as untrusted text (PSBT key origins, CLI arguments).
//!
//! Bitcoin follows BIP44 (P2PKH), BIP49 (P2SH-P2WPKH), BIP84 (P2WPKH) and BIP86 (P2TR key path):
//! `m/purpose'/coin'/account'/change/index` with coin type 0 on mainnet and 1 on every test
//! network (SLIP-44). Ethereum follows BIP44 with coin type 60: `m/44'/60'/account'/0/index`.

use std::fmt;
use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath};
use serde::{Deserialize, Serialize};

use crate::network::Network;

/// The deepest path Custos accepts. BIP32 allows 255 levels; no wallet standard uses more than
/// six, and a limit keeps hostile input from costing thousands of derivations.
pub const MAX_PATH_DEPTH: usize = 32;

/// Why a derivation path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The text does not start with `m`.
    #[error("a derivation path starts with 'm', got '{0}'")]
    MissingMaster(String),
    /// A component is not a number with an optional hardened marker.
    #[error("component {position} of the derivation path ('{component}') is not an index such as 0 or 44'")]
    BadComponent {
        /// 1-based position after `m`.
        position: usize,
        /// The offending text.
        component: String,
    },
    /// A component is 2^31 or larger (the hardened bit is written with `'` or `h`).
    #[error("component {position} of the derivation path is {value}, above the largest index 2147483647")]
    IndexTooLarge {
        /// 1-based position after `m`.
        position: usize,
        /// The value given.
        value: u64,
    },
    /// Deeper than [`MAX_PATH_DEPTH`].
    #[error("derivation path has {depth} levels, more than the {max} Custos accepts")]
    TooDeep {
        /// Depth given.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A BIP purpose Custos does not support for the chain.
    #[error("purpose {purpose} is not supported for {chain}: expected {expected}")]
    UnsupportedPurpose {
        /// The purpose asked for.
        purpose: u32,
        /// The chain.
        chain: &'static str,
        /// What is supported.
        expected: &'static str,
    },
    /// An account index at or above 2^31.
    #[error("account index {0} is too large (at most 2147483647)")]
    AccountTooLarge(u32),
}

/// Parses a derivation path strictly: `m`, then `/`-separated indexes below 2^31, each optionally
/// hardened with `'`, `h` or `H`; at most [`MAX_PATH_DEPTH`] levels; no spaces, no empty parts.
pub fn parse_derivation_path(text: &str) -> Result<DerivationPath, PathError> {
    let mut parts = text.split('/');
    match parts.next() {
        Some("m") | Some("M") => {}
        _ => return Err(PathError::MissingMaster(text.chars().take(64).collect())),
    }
    let mut children = Vec::new();
    for (i, part) in parts.enumerate() {
        let position = i + 1;
        if position > MAX_PATH_DEPTH {
            return Err(PathError::TooDeep {
                depth: text.split('/').count() - 1,
                max: MAX_PATH_DEPTH,
            });
        }
        let (digits, hardened) = match part.strip_suffix(['\'', 'h', 'H']) {
            Some(d) => (d, true),
            None => (part, false),
        };
        let bad = || PathError::BadComponent {
            position,
            component: part.chars().take(24).collect(),
        };
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value: u64 = digits.parse().map_err(|_| bad())?;
        if value >= 1 << 31 {
            return Err(PathError::IndexTooLarge { position, value });
        }
        let index = value as u32;
        children.push(if hardened {
            ChildNumber::Hardened { index }
        } else {
            ChildNumber::Normal { index }
        });
    }
    Ok(DerivationPath::from(children))
}

/// The BIP that fixes an account's script type and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Purpose {
    /// BIP44: P2PKH on Bitcoin; the only purpose used on Ethereum.
    Bip44,
    /// BIP49: P2SH-wrapped P2WPKH.
    Bip49,
    /// BIP84: native segwit v0 P2WPKH.
    Bip84,
    /// BIP86: taproot key path (P2TR, no script tree).
    Bip86,
}

impl Purpose {
    /// The purpose number (44, 49, 84, 86).
    pub fn number(self) -> u32 {
        match self {
            Purpose::Bip44 => 44,
            Purpose::Bip49 => 49,
            Purpose::Bip84 => 84,
            Purpose::Bip86 => 86,
        }
    }
}

impl TryFrom<u32> for Purpose {
    type Error = PathError;
    fn try_from(n: u32) -> Result<Self, PathError> {
        match n {
            44 => Ok(Purpose::Bip44),
            49 => Ok(Purpose::Bip49),
            84 => Ok(Purpose::Bip84),
            86 => Ok(Purpose::Bip86),
            other => Err(PathError::UnsupportedPurpose {
                purpose: other,
                chain: "bitcoin",
                expected: "44, 49, 84 or 86",
            }),
        }
    }
}

impl From<Purpose> for u32 {
    fn from(p: Purpose) -> u32 {
        p.number()
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl FromStr for Purpose {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| PathError::UnsupportedPurpose {
                purpose: u32::MAX,
                chain: "bitcoin",
                expected: "44, 49, 84 or 86",
            })?;
        Purpose::try_from(n)
    }
}

/// One HD account: `m/purpose'/coin_type'/account'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountPath {
    /// The purpose (script type).
    pub purpose: Purpose,
    /// SLIP-44 coin type: 0 Bitcoin mainnet, 1 Bitcoin test networks, 60 Ethereum.
    pub coin_type: u32,
    /// The account index (hardened).
    pub account: u32,
}

impl AccountPath {
    /// The account path for a wallet on `network` with `purpose` and `account`. Ethereum accepts
    /// only BIP44; Bitcoin takes coin type 0 on mainnet and 1 elsewhere.
    pub fn new(network: Network, purpose: Purpose, account: u32) -> Result<Self, PathError> {
        if account >= 1 << 31 {
            return Err(PathError::AccountTooLarge(account));
        }
        let coin_type = match network {
            Network::Bitcoin(bitcoin::Network::Bitcoin) => 0,
            Network::Bitcoin(_) => 1,
            Network::Ethereum { .. } => {
                if purpose != Purpose::Bip44 {
                    return Err(PathError::UnsupportedPurpose {
                        purpose: purpose.number(),
                        chain: "ethereum",
                        expected: "44",
                    });
                }
                60
            }
        };
        Ok(AccountPath {
            purpose,
            coin_type,
            account,
        })
    }

    /// `m/purpose'/coin'/account'`.
    pub fn to_derivation_path(&self) -> DerivationPath {
        DerivationPath::from(vec![
            hardened(self.purpose.number()),
            hardened(self.coin_type),
            hardened(self.account),
        ])
    }

    /// `m/purpose'/coin'/account'/change/index` (`change` is 0 for receive, 1 for change).
    pub fn child(&self, change: bool, index: u32) -> DerivationPath {
        self.to_derivation_path()
            .extend([normal(u32::from(change)), normal(index)])
    }

    /// Whether `path` is `account path / (0|1) / i` for this account; returns `(change, index)`.
    pub fn split_child(&self, path: &DerivationPath) -> Option<(bool, u32)> {
        let components: &[ChildNumber] = path.as_ref();
        let prefix = self.to_derivation_path();
        let prefix: &[ChildNumber] = prefix.as_ref();
        if components.len() != prefix.len() + 2 || &components[..prefix.len()] != prefix {
            return None;
        }
        match (components[prefix.len()], components[prefix.len() + 1]) {
            (ChildNumber::Normal { index: c }, ChildNumber::Normal { index }) if c <= 1 => {
                Some((c == 1, index))
            }
            _ => None,
        }
    }
}

impl fmt::Display for AccountPath {
    /// `m/84'/0'/0'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "m/{}'/{}'/{}'",
            self.purpose.number(),
            self.coin_type,
            self.account
        )
    }
}

fn hardened(index: u32) -> ChildNumber {
    ChildNumber::Hardened { index }
}

fn normal(index: u32) -> ChildNumber {
    ChildNumber::Normal { index }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        let p = parse_derivation_path("m/84'/0h/0H/1/5").unwrap();
        assert_eq!(p.to_string(), "84'/0'/0'/1/5");
        assert_eq!(parse_derivation_path("m").unwrap().len(), 0);
        for bad in [
            "", "84'/0'", "m/", "m//1", "m/1'/x", "m/ 1", "m/-1", "m/1''", "m/+1",
        ] {
            assert!(parse_derivation_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_derivation_path("m/2147483648").unwrap_err(),
            PathError::IndexTooLarge {
                position: 1,
                value: 2147483648
            }
        );
        let deep = format!("m{}", "/0".repeat(MAX_PATH_DEPTH + 1));
        assert!(matches!(
            parse_derivation_path(&deep),
            Err(PathError::TooDeep { .. })
        ));
    }

    #[test]
    fn account_paths() {
        let main = Network::Bitcoin(bitcoin::Network::Bitcoin);
        let test = Network::Bitcoin(bitcoin::Network::Signet);
        let eth = Network::Ethereum { chain_id: 1 };
        assert_eq!(
            AccountPath::new(main, Purpose::Bip84, 0)
                .unwrap()
                .to_string(),
            "m/84'/0'/0'"
        );
        assert_eq!(
            AccountPath::new(test, Purpose::Bip86, 3)
                .unwrap()
                .to_string(),
            "m/86'/1'/3'"
        );
        let a = AccountPath::new(eth, Purpose::Bip44, 0).unwrap();
        assert_eq!(a.child(false, 7).to_string(), "44'/60'/0'/0/7");
        assert_eq!(a.split_child(&a.child(true, 9)), Some((true, 9)));
        assert!(AccountPath::new(eth, Purpose::Bip84, 0).is_err());
    }
}
