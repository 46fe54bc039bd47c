//! Chain-neutral vocabulary: which chain family and network a wallet, an intent or a policy rule
//! names. Keys, chains, the policy engine and the state store all speak it; it depends on none of
//! them.
//!
//! Bitcoin wallets name one of rust-bitcoin's networks; EVM wallets carry the EIP-155 chain id
//! (written either as a number or as a well-known name). The canonical text form of a network —
//! what the CLI prints, intents carry and policies match — is [`Network::name`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A chain family: one chain module in `chains/` per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Bitcoin and its test networks.
    Bitcoin,
    /// Ethereum and EVM chains (chain id in the network).
    Ethereum,
}

impl Chain {
    /// Lower-case name: `bitcoin` or `ethereum`.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Ethereum => "ethereum",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Chain {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bitcoin" | "btc" => Ok(Chain::Bitcoin),
            "ethereum" | "eth" | "evm" => Ok(Chain::Ethereum),
            _ => Err(NetworkError::UnknownChain(s.to_owned())),
        }
    }
}

/// Why a chain or network name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// Not `bitcoin` or `ethereum`.
    #[error("unknown chain '{0}': expected bitcoin or ethereum")]
    UnknownChain(String),
    /// Not a Bitcoin network name.
    #[error(
        "unknown bitcoin network '{0}': expected mainnet, testnet, testnet4, signet or regtest"
    )]
    UnknownBitcoinNetwork(String),
    /// Not a chain id nor a known EVM network name.
    #[error("unknown ethereum network '{0}': expected a chain id (e.g. 1) or a known name ({names})", names = KNOWN_EVM.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", "))]
    UnknownEvmNetwork(String),
    /// Chain id zero is not a chain.
    #[error("chain id 0 is not valid")]
    ZeroChainId,
}

/// Well-known EVM networks: name, chain id, native coin symbol.
const KNOWN_EVM: &[(&str, u64, &str)] = &[
    ("mainnet", 1, "ETH"),
    ("sepolia", 11_155_111, "ETH"),
    ("holesky", 17_000, "ETH"),
    ("hoodi", 560_048, "ETH"),
    ("optimism", 10, "ETH"),
    ("arbitrum", 42_161, "ETH"),
    ("base", 8_453, "ETH"),
    ("polygon", 137, "POL"),
    ("bsc", 56, "BNB"),
    ("avalanche", 43_114, "AVAX"),
];

/// A wallet's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// A Bitcoin network (mainnet, testnet, signet, regtest).
    Bitcoin(bitcoin::Network),
    /// An EVM chain, by EIP-155 chain id.
    Ethereum {
        /// The EIP-155 chain id.
        chain_id: u64,
    },
}

impl Network {
    /// Parses a network name for `chain`: mainnet/testnet/signet/regtest for Bitcoin; a chain id
    /// or a well-known name (mainnet, sepolia, holesky, …) for Ethereum.
    pub fn parse(chain: Chain, text: &str) -> Result<Self, NetworkError> {
        let lower = text.trim().to_ascii_lowercase();
        match chain {
            Chain::Bitcoin => match lower.as_str() {
                "mainnet" | "main" | "bitcoin" => Ok(Network::Bitcoin(bitcoin::Network::Bitcoin)),
                "testnet" | "testnet3" | "test" => Ok(Network::Bitcoin(bitcoin::Network::Testnet)),
                "testnet4" => Ok(Network::Bitcoin(bitcoin::Network::Testnet4)),
                "signet" => Ok(Network::Bitcoin(bitcoin::Network::Signet)),
                "regtest" => Ok(Network::Bitcoin(bitcoin::Network::Regtest)),
                _ => Err(NetworkError::UnknownBitcoinNetwork(text.to_owned())),
            },
            Chain::Ethereum => {
                if let Some((_, id, _)) = KNOWN_EVM.iter().find(|(name, _, _)| *name == lower) {
                    return Ok(Network::Ethereum { chain_id: *id });
                }
                let id = if let Some(hex) = lower.strip_prefix("0x") {
                    u64::from_str_radix(hex, 16)
                } else {
                    lower.parse::<u64>()
                }
                .map_err(|_| NetworkError::UnknownEvmNetwork(text.to_owned()))?;
                if id == 0 {
                    return Err(NetworkError::ZeroChainId);
                }
                Ok(Network::Ethereum { chain_id: id })
            }
        }
    }

    /// The chain family.
    pub fn chain(&self) -> Chain {
        match self {
            Network::Bitcoin(_) => Chain::Bitcoin,
            Network::Ethereum { .. } => Chain::Ethereum,
        }
    }

    /// Canonical name: `mainnet`, `testnet`, `signet`, `regtest` for Bitcoin; the well-known name
    /// for a known EVM chain id, else the chain id in decimal.
    pub fn name(&self) -> String {
        match self {
            Network::Bitcoin(bitcoin::Network::Bitcoin) => "mainnet".into(),
            Network::Bitcoin(bitcoin::Network::Signet) => "signet".into(),
            Network::Bitcoin(bitcoin::Network::Regtest) => "regtest".into(),
            Network::Bitcoin(other) => other.to_string(),
            Network::Ethereum { chain_id } => KNOWN_EVM
                .iter()
                .find(|(_, id, _)| id == chain_id)
                .map(|(name, _, _)| (*name).to_owned())
                .unwrap_or_else(|| chain_id.to_string()),
        }
    }

    /// Whether this is a main network (real money), as opposed to a test network.
    pub fn is_mainnet(&self) -> bool {
        match self {
            Network::Bitcoin(n) => *n == bitcoin::Network::Bitcoin,
            Network::Ethereum { chain_id } => {
                !matches!(chain_id, 11_155_111 | 17_000 | 560_048 | 5 | 1337 | 31_337)
            }
        }
    }

    /// The native coin's symbol and decimals (BTC/8; ETH/18 or the chain's own coin).
    pub fn native_asset(&self) -> (&'static str, u8) {
        match self {
            Network::Bitcoin(_) => ("BTC", 8),
            Network::Ethereum { chain_id } => (
                KNOWN_EVM
                    .iter()
                    .find(|(_, id, _)| id == chain_id)
                    .map(|(_, _, symbol)| *symbol)
                    .unwrap_or("ETH"),
                18,
            ),
        }
    }

    /// The rust-bitcoin network, for Bitcoin wallets.
    pub fn bitcoin(&self) -> Option<bitcoin::Network> {
        match self {
            Network::Bitcoin(n) => Some(*n),
            Network::Ethereum { .. } => None,
        }
    }

    /// The EIP-155 chain id, for EVM wallets.
    pub fn chain_id(&self) -> Option<u64> {
        match self {
            Network::Bitcoin(_) => None,
            Network::Ethereum { chain_id } => Some(*chain_id),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (chain, text) in [
            (Chain::Bitcoin, "mainnet"),
            (Chain::Bitcoin, "testnet"),
            (Chain::Bitcoin, "signet"),
            (Chain::Bitcoin, "regtest"),
            (Chain::Ethereum, "mainnet"),
            (Chain::Ethereum, "sepolia"),
            (Chain::Ethereum, "31337"),
        ] {
            let n = Network::parse(chain, text).unwrap();
            assert_eq!(n.name(), text);
            assert_eq!(Network::parse(chain, &n.name()).unwrap(), n);
        }
        assert_eq!(
            Network::parse(Chain::Ethereum, "0x1").unwrap(),
            Network::Ethereum { chain_id: 1 }
        );
        assert!(Network::parse(Chain::Ethereum, "0").is_err());
        assert!(Network::parse(Chain::Bitcoin, "sepolia").is_err());
    }
}
