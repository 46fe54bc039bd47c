//! The chain-neutral Intent: what one request really does, in integer base units.
//!
//! Chain modules turn a payload (a PSBT, an Ethereum transaction, a message) into an [`Intent`];
//! the policy engine decides on intents alone; the audit log and approvers read them. So an intent
//! must never understate what a request does: a chain module that cannot fully explain a payload
//! refuses it or produces an explicit [`ActionKind::ContractCall`] — never a plain transfer.
//!
//! No chain-crate types appear here: addresses are their canonical text (Bitcoin address as
//! rust-bitcoin prints it; Ethereum address as lower-case 0x-hex so that comparisons are exact), and
//! amounts are 256-bit integers of base units serialized as decimal strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::amount::{format_decimal, serde_decimal, Amount};
use crate::network::Chain;

/// What kind of action a request is. Policies match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Native coin sent to others (BTC, ETH).
    Transfer,
    /// A known token's `transfer`/`transferFrom`.
    TokenTransfer,
    /// A known token's `approve`, or a signed permit (EIP-2612, Permit2): a spender may move funds.
    TokenApproval,
    /// A call to a contract the chain module cannot fully explain (unknown contract, or calldata
    /// that does not decode exactly).
    ContractCall,
    /// A transaction with no recipient that deploys a contract.
    ContractCreation,
    /// A personal message signature (EIP-191) of a message that is not exactly 32 bytes.
    Message,
    /// A personal message of exactly 32 bytes: a hash, signed blind (the signer cannot see what
    /// it commits to: a transaction hash, an order, another chain's digest). A policy must allow
    /// it by this name; rules allowing `message` do not.
    BlindMessage,
    /// EIP-712 typed data that is not a recognised permit.
    TypedMessage,
}

impl ActionKind {
    /// The snake_case name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Transfer => "transfer",
            ActionKind::TokenTransfer => "token_transfer",
            ActionKind::TokenApproval => "token_approval",
            ActionKind::ContractCall => "contract_call",
            ActionKind::ContractCreation => "contract_creation",
            ActionKind::Message => "message",
            ActionKind::BlindMessage => "blind_message",
            ActionKind::TypedMessage => "typed_message",
        }
    }

    /// Every kind, in a fixed order (for tooling and documentation).
    pub const ALL: [ActionKind; 8] = [
        ActionKind::Transfer,
        ActionKind::TokenTransfer,
        ActionKind::TokenApproval,
        ActionKind::ContractCall,
        ActionKind::ContractCreation,
        ActionKind::Message,
        ActionKind::BlindMessage,
        ActionKind::TypedMessage,
    ];

    /// Kinds that only a rule naming them in `kinds` matches (a rule without `kinds`, or one
    /// naming a broader kind, does not allow them). Deny rules still match them.
    pub fn needs_naming(self) -> bool {
        matches!(self, ActionKind::BlindMessage)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The asset an intent moves or approves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Symbol ("BTC", "ETH", "USDC").
    pub symbol: String,
    /// Decimal places of one whole unit (8 for BTC, 18 for ETH, 6 for USDC).
    pub decimals: u8,
    /// Token contract (lower-case 0x-hex); `None` for the chain's native coin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
}

impl Asset {
    /// The chain's native coin.
    pub fn native(symbol: &str, decimals: u8) -> Self {
        Asset {
            symbol: symbol.to_owned(),
            decimals,
            contract: None,
        }
    }

    /// Whether this is the native coin.
    pub fn is_native(&self) -> bool {
        self.contract.is_none()
    }

    /// "1.5 BTC" for an amount of this asset.
    pub fn format(&self, amount: Amount) -> String {
        format!("{} {}", format_decimal(amount, self.decimals), self.symbol)
    }
}

/// One party that receives value or permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Canonical address text (Bitcoin address; lower-case 0x-hex on Ethereum).
    pub address: String,
    /// Amount in the intent's asset base units (for an approval: the allowance granted).
    #[serde(with = "serde_decimal")]
    pub amount: Amount,
}

/// Extra context for messages and typed data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageInfo {
    /// EIP-712 domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// EIP-712 domain chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_chain_id: Option<u64>,
    /// EIP-712 verifying contract (lower-case 0x-hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<String>,
    /// EIP-712 primary type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_type: Option<String>,
    /// A short, printable preview of a personal message (never more than 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// EIP-712 data whose domain has no `chainId`: its signature is valid on every chain where
    /// the verifying contract (or any verifier) accepts it, so a policy must allow it explicitly
    /// (`allow_typed_data_without_chain_id`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_chain_id: bool,
}

/// What one request does, chain-neutrally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The wallet asked to sign.
    pub wallet: String,
    /// Chain family.
    pub chain: Chain,
    /// Canonical network name (`mainnet`, `signet`, `sepolia`, or an EVM chain id in decimal).
    pub network: String,
    /// What kind of action.
    pub kind: ActionKind,
    /// The asset moved or approved (the native coin for contract calls, messages and creations).
    pub asset: Asset,
    /// Who receives value or permission: payees of a transfer, the spender of an approval, the
    /// contract of a call. Never includes our own verified change.
    pub destinations: Vec<Destination>,
    /// Total of `destinations` in the asset's base units: what leaves the wallet (or is approved).
    /// `Amount::MAX` for an unlimited approval.
    #[serde(with = "serde_decimal")]
    pub amount: Amount,
    /// The fee in the native coin's base units (Bitcoin: exact; Ethereum: the maximum, gas limit
    /// times max fee per gas). Zero for messages.
    #[serde(with = "serde_decimal")]
    pub fee: Amount,
    /// Bitcoin fee rate in satoshi per 1000 virtual bytes (sat/vB × 1000), from the previous outputs
    /// and the finalised weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_rate_sat_per_kvb: Option<u64>,
    /// Outputs that verifiably pay back to this wallet (re-derived at the path the payload claims).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change: Vec<Destination>,
    /// Value of inputs that belong to others (multi-party Bitcoin transactions), base units.
    #[serde(
        default,
        with = "serde_decimal",
        skip_serializing_if = "Amount::is_zero"
    )]
    pub foreign_input_value: Amount,
    /// The account nonce (Ethereum transactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// The contract called (contract calls, token actions), lower-case 0x-hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// The 4-byte function selector of a contract call, 0x-hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Whose tokens a token transfer moves when that is not this wallet's own balance: the `from`
    /// of an ERC-20 `transferFrom` (lower-case 0x-hex). `None` when the wallet moves its own funds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_owner: Option<String>,
    /// Deadline of a permit (unix seconds), when the payload carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// Message and typed-data context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageInfo>,
}

impl Intent {
    /// An intent that moves nothing yet: no destinations, zero amount and fee, every optional field
    /// empty. Chain modules and tests fill in what the payload says with struct-update syntax
    /// (`Intent { destinations, amount, ..Intent::new(..) }`).
    pub fn new(
        wallet: impl Into<String>,
        chain: Chain,
        network: impl Into<String>,
        kind: ActionKind,
        asset: Asset,
    ) -> Self {
        Intent {
            wallet: wallet.into(),
            chain,
            network: network.into(),
            kind,
            asset,
            destinations: Vec::new(),
            amount: Amount::ZERO,
            fee: Amount::ZERO,
            fee_rate_sat_per_kvb: None,
            change: Vec::new(),
            foreign_input_value: Amount::ZERO,
            nonce: None,
            contract: None,
            selector: None,
            token_owner: None,
            deadline: None,
            message: None,
        }
    }

    /// Whether this is EIP-712 typed data not bound to a chain (no `domain.chainId`).
    pub fn is_typed_data_without_chain_id(&self) -> bool {
        self.message.as_ref().is_some_and(|m| m.without_chain_id)
    }

    /// Whether this approval is unlimited (2^256 − 1, or the 160-bit max Permit2 uses).
    pub fn is_unlimited(&self) -> bool {
        self.kind == ActionKind::TokenApproval
            && (self.amount == Amount::MAX
                || self.amount == (Amount::from(1u8) << 160) - Amount::from(1u8))
    }

    /// One line for logs, audit records and approvers:
    /// "transfer 0.5 BTC to bc1q… on bitcoin/mainnet from hot (fee 0.0000141 BTC)".
    pub fn summary(&self) -> String {
        let to = self
            .destinations
            .iter()
            .map(|d| d.address.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let amount = if self.is_unlimited() {
            format!("unlimited {}", self.asset.symbol)
        } else {
            self.asset.format(self.amount)
        };
        let what = match self.kind {
            ActionKind::Transfer | ActionKind::TokenTransfer => match &self.token_owner {
                Some(owner) => format!("{amount} owned by {owner} to {to}"),
                None => format!("{amount} to {to}"),
            },
            ActionKind::TokenApproval => format!("{amount} to spender {to}"),
            ActionKind::ContractCall => format!(
                "call {} selector {} with {amount}",
                self.contract.as_deref().unwrap_or(&to),
                self.selector.as_deref().unwrap_or("none")
            ),
            ActionKind::ContractCreation => format!("deploy a contract with {amount}"),
            ActionKind::Message | ActionKind::BlindMessage | ActionKind::TypedMessage => {
                let info = self.message.clone().unwrap_or_default();
                info.primary_type
                    .or(info.domain_name)
                    .or(info.preview)
                    .unwrap_or_default()
            }
        };
        let (native, decimals) = match self.chain {
            Chain::Bitcoin => ("BTC", 8),
            Chain::Ethereum => (
                if self.asset.is_native() {
                    self.asset.symbol.as_str()
                } else {
                    "ETH"
                },
                18,
            ),
        };
        format!(
            "{} {} on {}/{} from {} (fee {} {})",
            self.kind,
            what,
            self.chain,
            self.network,
            self.wallet,
            format_decimal(self.fee, decimals),
            native
        )
    }
}
