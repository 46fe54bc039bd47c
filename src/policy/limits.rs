//! Limits and what the ledger must record: window keys, usage, and the reservation plan.
//!
//! The engine is pure: it reads window usage through [`UsageView`] and returns a
//! [`ReservationPlan`] with the decision. The state store applies the plan with a check-and-reserve
//! in one transaction ([`crate::state::StateStore::reserve`]), re-checking every cap in
//! [`ReservationPlan::checks`] so two concurrent requests cannot both pass a cap that has room for
//! one.
//!
//! ## What is recorded
//!
//! Every request that goes ahead is recorded under six keys: its wallet, its principal and the rule
//! that allowed it, each for the asset's symbol and for `*` (all assets, used by count windows of
//! rules that do not name exactly one asset). So a wallet-scoped window counts every signed request
//! of that wallet, whichever rule allowed it, and a window added to a policy later sees the past.
//!
//! The amount recorded is the intent's amount for value-moving kinds (transfer, token transfer,
//! contract call, contract creation) and zero for token approvals and messages (they count once
//! towards count caps; an allowance is bounded by the rule's `max_amount`/`per_tx` instead).
//! Fees are not added to sums.

use serde::{Deserialize, Serialize};

use crate::amount::{format_decimal, serde_decimal, Amount};
use crate::intent::ActionKind;

use super::model::Scope;

/// Whose usage a key adds up, and in which asset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LedgerKey {
    /// Wallet, principal or rule.
    pub scope: Scope,
    /// The wallet name, principal identity or rule name.
    pub name: String,
    /// Asset symbol, or `*` for all assets.
    pub asset: String,
}

impl LedgerKey {
    /// The asset wildcard.
    pub const ALL_ASSETS: &'static str = "*";
}

/// What a window already holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of recorded amounts.
    pub sum: Amount,
    /// Number of recorded requests.
    pub count: u64,
}

/// Read-only access to window usage (the state store implements it).
pub trait UsageView {
    /// The usage recorded under `key` at times `t` with `from < t <= to`. An implementation may
    /// count more (a whole bucket at the edge) but never less.
    fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String>;
}

/// A ledger with nothing in it.
pub struct EmptyLedger;

impl UsageView for EmptyLedger {
    fn usage(&self, _: &LedgerKey, _: i64, _: i64) -> Result<Usage, String> {
        Ok(Usage::default())
    }
}

/// One cap to re-check atomically when reserving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCheck {
    /// The key whose usage is capped.
    pub key: LedgerKey,
    /// Window length, seconds.
    pub period_secs: u64,
    /// Sum cap, base units.
    #[serde(default, with = "opt_decimal")]
    pub max_sum: Option<Amount>,
    /// Count cap.
    pub max_count: Option<u64>,
    /// Decimals of the asset (for messages).
    pub decimals: u8,
    /// The rule whose window this is.
    pub rule: String,
    /// "24h wallet window" (for messages).
    pub label: String,
}

impl WindowCheck {
    /// `Ok(())` if adding `amount` (and one request) to `used` stays within the caps; otherwise the
    /// stable code and a message with the numbers.
    pub fn check(&self, used: Usage, amount: Amount) -> Result<(), (&'static str, String)> {
        if let Some(cap) = self.max_sum {
            let would = used.sum.saturating_add(amount);
            if would > cap {
                let unit = if self.key.asset == LedgerKey::ALL_ASSETS {
                    String::new()
                } else {
                    format!(" {}", self.key.asset)
                };
                return Err((
                    "limit.window_sum",
                    format!(
                        "{} sum would be {}{unit}, cap {}{unit} (already {}{unit})",
                        self.label,
                        format_decimal(would, self.decimals),
                        format_decimal(cap, self.decimals),
                        format_decimal(used.sum, self.decimals),
                    ),
                ));
            }
        }
        if let Some(cap) = self.max_count {
            let would = used.count.saturating_add(1);
            if would > cap {
                return Err((
                    "limit.window_count",
                    format!("{} count would be {would} requests, cap {cap}", self.label),
                ));
            }
        }
        Ok(())
    }
}

/// What the state store must record if the request goes ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationPlan {
    /// Request time, unix seconds UTC.
    pub at: i64,
    /// Amount added to every key (base units).
    #[serde(with = "serde_decimal")]
    pub amount: Amount,
    /// Keys the request is recorded under.
    pub keys: Vec<LedgerKey>,
    /// Caps to re-check in the same transaction.
    pub checks: Vec<WindowCheck>,
}

/// The amount a request adds to window sums (see the module docs).
pub fn counted_amount(kind: ActionKind, amount: Amount) -> Amount {
    match kind {
        ActionKind::Transfer
        | ActionKind::TokenTransfer
        | ActionKind::ContractCall
        | ActionKind::ContractCreation => amount,
        ActionKind::TokenApproval
        | ActionKind::Message
        | ActionKind::BlindMessage
        | ActionKind::TypedMessage => Amount::ZERO,
    }
}

mod opt_decimal {
    use crate::amount::Amount;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_some(&a.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|t| Amount::from_str_radix(&t, 10).map_err(serde::de::Error::custom))
            .transpose()
    }
}
