//! The validated policy: what the engine evaluates, `hash` canonicalises and `diff` compares.
//!
//! Every reference has been resolved (roles, address books, assets), every amount is exact base
//! units with its asset, addresses are canonical (lower-case on Ethereum) and networks carry their
//! canonical names. Sets are `BTreeSet`s, so their order in the file does not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::amount::{format_decimal, serde_decimal, Amount};
use crate::intent::ActionKind;
use crate::network::Chain;

use super::amount_units::{format_duration, format_fee_rate};
use super::index::Index;

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `[policy] name`.
    pub name: String,
    /// `[policy] description`.
    pub description: Option<String>,
    /// Role name -> principals holding it (exact identities, or prefixes ending in `*`).
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// Assets per chain and network.
    pub assets: Vec<NetworkAssets>,
    /// Address books by name.
    pub address_books: BTreeMap<String, AddressBook>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// `[approver_keys]`: principal -> its enrolled public keys (canonical text, see
    /// [`crate::governance::keys`]). A vote counts only as a valid signature by one of its
    /// principal's keys. Left out of the canonical JSON when empty, so policies without keys
    /// keep their hash.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub approver_keys: BTreeMap<String, BTreeSet<String>>,
    /// `[policy] allow_unsigned_votes`: a vote by an approver **without** an enrolled key counts
    /// without a signature. Development only: such a vote is whatever the server records, so
    /// whoever controls the server or can write the state database can forge it. Approvers with
    /// a key always sign. Left out of the canonical JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsigned_votes: bool,
    /// The test-case file named in `[policy] tests`, if any (not part of the hash).
    #[serde(skip)]
    pub tests: Option<String>,
    /// The evaluation index, built from the fields above on the first evaluation. After changing
    /// a field of an evaluated policy, call [`Policy::reindex`].
    #[serde(skip)]
    pub(crate) index: CachedIndex,
}

/// The lazily built [`Index`]; ignored by equality, hashing and serialization.
#[derive(Clone, Default)]
pub(crate) struct CachedIndex(pub(crate) OnceLock<Arc<Index>>);

impl PartialEq for CachedIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CachedIndex {}

impl std::fmt::Debug for CachedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "CachedIndex(built)"
        } else {
            "CachedIndex(not built)"
        })
    }
}

impl Policy {
    /// The evaluation index (built on first use).
    pub(crate) fn index(&self) -> &Index {
        self.index.0.get_or_init(|| Arc::new(Index::build(self)))
    }

    /// Drops the evaluation index so the next evaluation rebuilds it from the fields (needed only
    /// if a field was changed after the policy was evaluated).
    pub fn reindex(&mut self) {
        self.index = CachedIndex::default();
    }

    /// The keys enrolled for `principal` (canonical text).
    pub fn approver_keys_of(&self, principal: &str) -> impl Iterator<Item = &str> {
        self.approver_keys
            .get(principal)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// The principal `key` (canonical text) is enrolled for, if any (a key belongs to one
    /// principal at most; validation refuses anything else).
    pub fn approver_of_key(&self, key: &str) -> Option<&str> {
        self.approver_keys
            .iter()
            .find(|(_, keys)| keys.contains(key))
            .map(|(principal, _)| principal.as_str())
    }

    /// Whether `principal` may vote without a signature: only under `allow_unsigned_votes`, and
    /// only while no key is enrolled for it.
    pub fn unsigned_vote_allowed(&self, principal: &str) -> bool {
        self.allow_unsigned_votes && self.approver_keys_of(principal).next().is_none()
    }
}

/// The assets of one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkAssets {
    /// Chain family.
    pub chain: Chain,
    /// Canonical network name.
    pub network: String,
    /// The native coin.
    pub native: AssetDef,
    /// Known tokens.
    pub tokens: Vec<AssetDef>,
}

/// One asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssetDef {
    /// Symbol.
    pub symbol: String,
    /// Decimals.
    pub decimals: u8,
    /// Contract (lower-case 0x-hex) for tokens.
    pub contract: Option<String>,
}

/// A named list of destinations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressBook {
    /// Chain of the addresses.
    pub chain: Chain,
    /// Network restriction (canonical name), if any.
    pub network: Option<String>,
    /// Canonical addresses.
    pub addresses: BTreeSet<String>,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Sign.
    Allow,
    /// Refuse, whatever else matches.
    Deny,
    /// Sign once a quorum approves.
    RequireApproval,
}

impl Effect {
    /// The file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::RequireApproval => "require_approval",
        }
    }
}

/// An exact amount of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Money {
    /// Base units.
    #[serde(with = "serde_decimal")]
    pub units: Amount,
    /// Asset symbol.
    pub symbol: String,
    /// The asset's decimals (for display).
    #[serde(skip)]
    pub decimals: u8,
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            format_decimal(self.units, self.decimals),
            self.symbol
        )
    }
}

/// Which destinations a rule matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestinationMatch {
    /// Every destination must be in one of these books (and there is at least one destination).
    pub all_in: Option<BTreeSet<String>>,
    /// At least one destination is in one of these books.
    pub any_in: Option<BTreeSet<String>>,
    /// At least one destination is in none of these books.
    pub any_not_in: Option<BTreeSet<String>>,
}

/// Days and hours (UTC) in which a rule applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Weekdays, 0 = Monday … 6 = Sunday.
    pub days: BTreeSet<u8>,
    /// Start minute of the day (inclusive).
    pub from_minute: u32,
    /// End minute of the day (exclusive); smaller than `from_minute` wraps past midnight.
    pub to_minute: u32,
}

/// Whose requests a window adds up.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every signed request of the wallet, whichever rule allowed it.
    Wallet,
    /// Every signed request of the principal, whichever rule allowed it.
    Principal,
    /// Requests this rule allowed.
    Rule,
}

impl Scope {
    /// The file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Wallet => "wallet",
            Scope::Principal => "principal",
            Scope::Rule => "rule",
        }
    }
}

/// A rolling window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Length in seconds.
    pub period_secs: u64,
    /// Scope.
    pub scope: Scope,
    /// Cap on the sum (`None`: no sum cap).
    pub sum: Option<Money>,
    /// Cap on the count.
    pub count: Option<u64>,
}

impl Window {
    /// "24h wallet window".
    pub fn label(&self) -> String {
        format!(
            "{} {} window",
            format_duration(self.period_secs),
            self.scope.as_str()
        )
    }
}

/// Limits of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Per-transaction maximum.
    pub per_tx: Option<Money>,
    /// Fee cap in the native coin.
    pub fee: Option<Money>,
    /// Bitcoin fee-rate cap, sat per 1000 vB.
    pub fee_rate_sat_per_kvb: Option<u64>,
    /// Rolling windows.
    pub windows: Vec<Window>,
}

impl Limits {
    /// Fee rate as written.
    pub fn fee_rate_text(&self) -> Option<String> {
        self.fee_rate_sat_per_kvb.map(format_fee_rate)
    }
}

/// An approval quorum.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Quorum {
    /// Approvals needed (M).
    pub count: u32,
    /// An approver must hold one of these roles.
    pub roles: BTreeSet<String>,
    /// Seconds the request waits before it expires.
    pub expires_secs: u64,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Effect.
    pub effect: Effect,
    /// Requesting principal holds one of these roles (`None`: anyone; deny rules only).
    pub roles: Option<BTreeSet<String>>,
    /// Wallet names.
    pub wallets: Option<BTreeSet<String>>,
    /// Chains.
    pub chains: Option<BTreeSet<Chain>>,
    /// (chain, canonical network) pairs.
    pub networks: Option<BTreeSet<(Chain, String)>>,
    /// Asset symbols.
    pub assets: Option<BTreeSet<String>>,
    /// Action kinds.
    pub kinds: Option<BTreeSet<ActionKind>>,
    /// Destinations.
    pub destinations: DestinationMatch,
    /// Smallest amount matched.
    pub min_amount: Option<Money>,
    /// Largest amount matched.
    pub max_amount: Option<Money>,
    /// When the rule applies.
    pub schedule: Option<Schedule>,
    /// Limits.
    pub limits: Limits,
    /// Quorum (`require_approval` rules).
    pub approval: Option<Quorum>,
    /// Ethereum nonce replacement allowed.
    pub allow_replacement: bool,
    /// EIP-712 typed data whose domain has no `chainId` may be signed. A weakening: such a
    /// signature is valid on every chain where the verifying contract accepts it. Allow and
    /// require_approval rules only; without it they do not match such data.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_typed_data_without_chain_id: bool,
}

impl Rule {
    /// The single asset symbol the rule is restricted to, if exactly one.
    pub fn single_asset(&self) -> Option<&str> {
        match &self.assets {
            Some(set) if set.len() == 1 => set.iter().next().map(String::as_str),
            _ => None,
        }
    }
}
