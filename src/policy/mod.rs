//! The policy engine: policy files, evaluation, tooling.
//!
//! A policy is a TOML file compliance reviews in git (format: `policies/README.md`). It is parsed
//! and validated once ([`Policy::load`]); every request is then evaluated against it by
//! [`Policy::evaluate`], a pure function of the policy, the request (principal, intent, time) and a
//! read-only view of the limit ledger.
//!
//! ## Semantics
//!
//! 1. **Default deny.** A request no rule allows is refused (`deny.default`).
//! 2. **Deny wins.** If any `deny` rule matches (all its conditions, inside its schedule), the
//!    request is refused by the first such rule in file order (`deny.rule`), whatever allow rules
//!    say.
//! 3. **Otherwise the first allow / require_approval rule in file order that matches and whose
//!    limits hold decides**: `allow` (code `allow`) or needs-approval with the rule's quorum
//!    (`approval.required`). A rule whose conditions match but whose schedule or limits do not
//!    hold is passed over and the next one is tried.
//! 4. If none decides but some rule matched except for its schedule or a limit, the refusal names
//!    the first such rule and what stopped it, with the numbers (`limit.per_tx`, `limit.fee`,
//!    `limit.fee_rate`, `limit.window_sum`, `limit.window_count`, `time_window`): "rule 'hot
//!    payouts': 24h wallet window sum would be 12.5 BTC, cap 10 BTC (already 12 BTC)".
//!
//! A rule's conditions all have to hold; an absent condition matches anything. Amounts are exact
//! base units in 256 bits ([`crate::amount`]); no floats anywhere. Windows and the ledger: see
//! [`limits`] and [`crate::state`].
//!
//! ## Files
//!
//! - [`file`](mod@file): the TOML shapes, with spans; [`parse`]: text -> validated [`Policy`] (`parse/span.rs`
//!   places problems at their line and column; `parse/validate.rs`, `parse/assets.rs`,
//!   `parse/rule.rs` and `parse/schedule.rs` check what the file means); [`model`]: the validated
//!   policy; [`amount_units`]: amounts, durations and fee rates as written.
//! - [`eval`]: the decision on one request (`eval.rs`, through the candidate rules of `index`),
//!   with `eval/explain.rs` (the every-rule trace of `explain`), `eval/rule_checks.rs` (one rule's
//!   conditions and limits), `eval/schedule.rs`, `eval/request.rs` (the request and its time) and
//!   `eval/quorum.rs` (who counts towards an approval); [`limits`]: windows, ledger keys and
//!   reservation plans.
//! - [`hash`]: the canonical hash; [`diff`]: what changed between two policies; [`tests_file`]:
//!   a policy's test cases.

pub mod amount_units;
pub mod diff;
pub mod eval;
pub mod file;
pub mod hash;
mod index;
pub mod limits;
pub mod model;
pub mod parse;
pub mod reach;
pub mod tests_file;

use std::path::{Path, PathBuf};

pub use eval::{Decision, Explanation, Outcome, PolicyRequest, QuorumStatus};
pub use limits::{LedgerKey, ReservationPlan, Usage, UsageView};
pub use model::{Policy, Quorum};
pub use parse::{PolicyError, PolicyErrors};
pub use reach::WalletScope;

use crate::assets::{TokenInfo, TokenRegistry};
use crate::network::{Chain, Network};

impl Policy {
    /// Parses and validates policy text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyErrors> {
        parse::parse_policy(text)
    }

    /// Reads, parses and validates a policy file; errors carry `file:line:column`.
    pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyErrors {
            file: Some(file.clone()),
            errors: vec![PolicyError {
                line: 0,
                column: 0,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        parse::parse_policy(&text).map_err(|mut e| {
            e.file = Some(file);
            e
        })
    }

    /// The canonical hash audit records carry (`sha256:<hex>`).
    pub fn hash(&self) -> String {
        hash::policy_hash(self)
    }

    /// The tokens of the policy's `[assets]` on EVM networks, for the chain modules.
    pub fn token_registry(&self) -> TokenRegistry {
        let mut registry = TokenRegistry::new();
        for na in self.assets.iter().filter(|a| a.chain == Chain::Ethereum) {
            let Some(chain_id) = Network::parse(Chain::Ethereum, &na.network)
                .ok()
                .and_then(|n| n.chain_id())
            else {
                continue;
            };
            for t in &na.tokens {
                if let Some(contract) = &t.contract {
                    registry.insert(TokenInfo {
                        chain_id,
                        contract: contract.clone(),
                        symbol: t.symbol.clone(),
                        decimals: t.decimals,
                    });
                }
            }
        }
        registry
    }

    /// The test-case file of a policy at `path`: `[policy] tests` (relative to the policy), or
    /// `<stem>.tests.toml` beside it.
    pub fn tests_path(&self, path: &Path) -> PathBuf {
        let dir = path.parent().unwrap_or(Path::new("."));
        match &self.tests {
            Some(t) => dir.join(t),
            None => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                dir.join(format!("{stem}.tests.toml"))
            }
        }
    }
}
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_approvers;
#[cfg(test)]
mod tests_kinds;
