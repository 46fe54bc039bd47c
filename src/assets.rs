//! Known tokens: contract address -> symbol and decimals, per EVM chain id.
//!
//! A token the registry knows is decoded into token transfers and approvals; a call to any other
//! contract stays an explicit contract call. The policy file's `[assets]` section fills the
//! registry the service uses; [`TokenRegistry::well_known`] holds a few mainnet tokens for
//! inspection without a policy.

use crate::intent::Asset;

/// One ERC-20 token on one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Contract address, lower-case 0x-hex.
    pub contract: String,
    /// Symbol ("USDC").
    pub symbol: String,
    /// Decimals (6 for USDC).
    pub decimals: u8,
}

impl TokenInfo {
    /// The intent asset for this token.
    pub fn asset(&self) -> Asset {
        Asset {
            symbol: self.symbol.clone(),
            decimals: self.decimals,
            contract: Some(self.contract.clone()),
        }
    }
}

/// The tokens Custos can decode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRegistry {
    tokens: Vec<TokenInfo>,
}

impl TokenRegistry {
    /// An empty registry: every contract call stays a contract call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token (the contract is lower-cased). A later entry for the same chain and contract
    /// replaces the earlier one.
    pub fn insert(&mut self, mut token: TokenInfo) {
        token.contract = token.contract.to_ascii_lowercase();
        self.tokens
            .retain(|t| !(t.chain_id == token.chain_id && t.contract == token.contract));
        self.tokens.push(token);
    }

    /// The token at `contract` (any case) on `chain_id`.
    pub fn lookup(&self, chain_id: u64, contract: &str) -> Option<&TokenInfo> {
        self.tokens
            .iter()
            .find(|t| t.chain_id == chain_id && t.contract.eq_ignore_ascii_case(contract))
    }

    /// Every token.
    pub fn tokens(&self) -> &[TokenInfo] {
        &self.tokens
    }

    /// A few widely used Ethereum mainnet tokens (addresses from the issuers' own documentation).
    pub fn well_known() -> Self {
        let mut registry = TokenRegistry::new();
        for (contract, symbol, decimals) in [
            ("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "USDC", 6),
            ("0xdac17f958d2ee523a2206206994597c13d831ec7", "USDT", 6),
            ("0x6b175474e89094c44da98b954eedeac495271d0f", "DAI", 18),
            ("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "WETH", 18),
            ("0x2260fac5e5542a773aa44fbcfedf7c193bc2c599", "WBTC", 8),
        ] {
            registry.insert(TokenInfo {
                chain_id: 1,
                contract: contract.into(),
                symbol: symbol.into(),
                decimals,
            });
        }
        registry
    }
}
