//! The policy file as TOML spells it: serde structs with `deny_unknown_fields` and source spans.
//!
//! Nothing here is trusted yet: [`super::parse`] turns a [`PolicyFile`] into a validated
//! [`super::model::Policy`], reporting each problem at its line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `[policy]`: name and bookkeeping.
    pub policy: HeaderFile,
    /// `[roles]`: role name -> principals.
    #[serde(default)]
    pub roles: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// `[assets.<chain>.<network>]`.
    #[serde(default)]
    pub assets: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, NetworkAssetsFile>>,
    /// `[address_books.<name>]`.
    #[serde(default)]
    pub address_books: BTreeMap<Spanned<String>, AddressBookFile>,
    /// `[[rules]]`, in file order.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    /// `[approver_keys]`: principal -> its public key, or a list of keys (`ed25519:…`, `p256:…`).
    #[serde(default)]
    pub approver_keys: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFile {
    /// Policy name.
    pub name: String,
    /// Free text for reviewers.
    #[serde(default)]
    pub description: Option<String>,
    /// Test cases file, relative to the policy file (default: `<stem>.tests.toml`).
    #[serde(default)]
    pub tests: Option<String>,
    /// Votes of approvers without an enrolled key count without a signature (development only).
    #[serde(default)]
    pub allow_unsigned_votes: Option<Spanned<bool>>,
}

/// The assets of one network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAssetsFile {
    /// The native coin.
    pub native: AssetFile,
    /// Known tokens (contract required).
    #[serde(default)]
    pub tokens: Vec<AssetFile>,
}

/// One asset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetFile {
    /// Symbol, as amounts write it.
    pub symbol: Spanned<String>,
    /// Decimal places.
    pub decimals: Spanned<u8>,
    /// Token contract (0x-hex).
    #[serde(default)]
    pub contract: Option<Spanned<String>>,
}

/// `[address_books.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBookFile {
    /// Chain of every address.
    pub chain: Spanned<String>,
    /// Optional network restriction.
    #[serde(default)]
    pub network: Option<Spanned<String>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The addresses.
    pub addresses: Vec<Spanned<String>>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Unique name.
    pub name: Spanned<String>,
    /// `allow`, `deny` or `require_approval`.
    pub effect: Spanned<String>,
    /// Free text for reviewers.
    #[serde(default)]
    pub description: Option<String>,
    /// Roles of the requesting principal.
    #[serde(default)]
    pub roles: Option<Vec<Spanned<String>>>,
    /// Wallet names.
    #[serde(default)]
    pub wallets: Option<Vec<Spanned<String>>>,
    /// Chains.
    #[serde(default)]
    pub chains: Option<Vec<Spanned<String>>>,
    /// Networks.
    #[serde(default)]
    pub networks: Option<Vec<Spanned<String>>>,
    /// Asset symbols.
    #[serde(default)]
    pub assets: Option<Vec<Spanned<String>>>,
    /// Action kinds.
    #[serde(default)]
    pub kinds: Option<Vec<Spanned<String>>>,
    /// `"any"` or address books every destination must be in.
    #[serde(default)]
    pub destinations: Option<Spanned<toml::Value>>,
    /// Address books at least one destination is in.
    #[serde(default)]
    pub any_destination_in: Option<Vec<Spanned<String>>>,
    /// Address books at least one destination is outside of.
    #[serde(default)]
    pub any_destination_not_in: Option<Vec<Spanned<String>>>,
    /// Smallest amount matched (inclusive).
    #[serde(default)]
    pub min_amount: Option<Spanned<String>>,
    /// Largest amount matched (inclusive).
    #[serde(default)]
    pub max_amount: Option<Spanned<String>>,
    /// When the rule applies.
    #[serde(default)]
    pub schedule: Option<ScheduleFile>,
    /// Limits.
    #[serde(default)]
    pub limits: Option<LimitsFile>,
    /// Approval quorum (`require_approval` rules).
    #[serde(default)]
    pub approval: Option<Spanned<ApprovalFile>>,
    /// Ethereum nonce replacement allowed.
    #[serde(default)]
    pub allow_replacement: bool,
    /// EIP-712 typed data without `domain.chainId` allowed.
    #[serde(default)]
    pub allow_typed_data_without_chain_id: bool,
}

/// `[rules.schedule]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Weekdays ("mon".."sun").
    #[serde(default)]
    pub days: Option<Vec<Spanned<String>>>,
    /// "HH:MM-HH:MM", UTC.
    #[serde(default)]
    pub hours: Option<Spanned<String>>,
}

/// `[rules.limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Per-transaction maximum.
    #[serde(default)]
    pub per_tx: Option<Spanned<String>>,
    /// Fee cap in the native coin.
    #[serde(default)]
    pub fee: Option<Spanned<String>>,
    /// Bitcoin fee-rate cap.
    #[serde(default)]
    pub fee_rate: Option<Spanned<String>>,
    /// Rolling windows.
    #[serde(default)]
    pub windows: Vec<Spanned<WindowFile>>,
}

/// One rolling window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    /// Length ("24h").
    pub period: Spanned<String>,
    /// `wallet`, `principal` or `rule`.
    pub scope: Spanned<String>,
    /// Cap on the sum.
    #[serde(default)]
    pub sum: Option<Spanned<String>>,
    /// Cap on the number of requests.
    #[serde(default)]
    pub count: Option<u64>,
}

/// `[rules.approval]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFile {
    /// Approvals needed.
    pub quorum: Spanned<u32>,
    /// Roles an approver must hold.
    pub roles: Vec<Spanned<String>>,
    /// How long the request waits ("24h").
    pub expires: Spanned<String>,
}
