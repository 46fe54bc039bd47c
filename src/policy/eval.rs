//! Evaluation: one request against a policy -> a [`Decision`].
//!
//! Pure: the policy, the request (with its time) and a read-only [`UsageView`] of the ledger go
//! in; nothing is written. The semantics are in the [module docs](super).
//!
//! This file owns the decision: the request's context (its network, asset and destinations as
//! the policy names them), the indexed [`Policy::evaluate`] the signing path calls, and the
//! decisions it returns. Beside it:
//! - `request`: [`PolicyRequest`] and the time formats it accepts;
//! - `rule_checks`: one rule against one request (conditions, limits), shared by both paths;
//! - `schedule`: whether a rule's schedule includes a time;
//! - `explain`: the every-rule path ([`Policy::explain`], [`Policy::evaluate_every_rule`]) that
//!   records why each rule matched or not;
//! - `quorum`: who counts towards an approval quorum ([`Policy::quorum_status`]).

mod explain;
mod quorum;
mod request;
mod rule_checks;
mod schedule;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::network::{Chain, Network};

use super::amount_units::format_duration;
use super::limits::{LedgerKey, ReservationPlan, Usage, UsageView};
use super::model::{Effect, Policy, Quorum, Rule};

pub use explain::{Explanation, RuleTrace};
pub use quorum::QuorumStatus;
pub use request::{format_time, parse_time, PolicyRequest};
pub use schedule::{describe_schedule, schedule_contains};

use schedule::{schedule, schedule_contains_opt};

/// What happens to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Sign it.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it until the quorum approves.
    NeedsApproval {
        /// Who must approve.
        quorum: Quorum,
    },
}

impl Outcome {
    /// `allow`, `deny` or `needs_approval`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::NeedsApproval { .. } => "needs_approval",
        }
    }
}

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What happens.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The rule that decided (or whose limit refused); `None` for the default deny.
    pub rule: Option<String>,
    /// Stable code: `allow`, `approval.required`, `deny.rule`, `deny.default`,
    /// `deny.asset_mismatch`, `limit.per_tx`, `limit.fee`, `limit.fee_rate`, `limit.window_sum`,
    /// `limit.window_count`, `time_window`.
    pub code: &'static str,
    /// One sentence with the numbers.
    pub message: String,
    /// What to record in the ledger if the request goes ahead (allow and needs-approval).
    pub reservation: Option<ReservationPlan>,
    /// The deciding rule allows Ethereum nonce replacement.
    pub allow_replacement: bool,
}

/// Storage failed while reading window usage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the limit ledger: {0}")]
pub struct EvalError(pub String);

/// The asset of a request as the policy knows it.
struct Resolved<'p> {
    symbol: String,
    decimals: u8,
    known: bool,
    native: Option<&'p super::model::AssetDef>,
}

struct Ctx<'p> {
    req: &'p PolicyRequest,
    roles: BTreeSet<&'p str>,
    network: String,
    asset: Resolved<'p>,
    destinations: Vec<String>,
}

/// Whether `principal` matches a role member (`*` at the end is a prefix match).
pub fn principal_matches(pattern: &str, principal: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => principal.starts_with(prefix),
        None => pattern == principal,
    }
}

type Miss = (&'static str, String);

impl Policy {
    /// The roles `principal` holds.
    pub fn roles_of(&self, principal: &str) -> BTreeSet<&str> {
        self.roles
            .iter()
            .filter(|(_, members)| members.iter().any(|m| principal_matches(m, principal)))
            .map(|(role, _)| role.as_str())
            .collect()
    }

    /// Decides one request.
    ///
    /// Only the rules the [index](super::index) leaves as candidates are examined, in file order,
    /// and each distinct window is read once; the decision is the one [`Policy::explain`] gives
    /// (which examines every rule).
    pub fn evaluate(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
    ) -> Result<Decision, EvalError> {
        let ctx = match self.context(req) {
            Ok(c) => c,
            Err(d) => return Ok(*d),
        };
        let index = self.index();
        let intent = &req.intent;
        let facts = index.facts(
            &req.principal,
            intent.chain,
            &ctx.network,
            intent.kind,
            ctx.asset.known.then_some(ctx.asset.symbol.as_str()),
            &ctx.destinations,
            intent.amount,
            intent.is_typed_data_without_chain_id(),
        );
        let matches = |i: usize| index.rules[i].matches(&facts);

        // 1. A matching deny rule wins over any allow.
        for i in index.candidates(&intent.wallet) {
            let rule = &self.rules[i];
            if rule.effect == Effect::Deny && matches(i) && schedule_contains_opt(rule, req.at) {
                return Ok(denied_by(rule));
            }
        }

        // 2. Otherwise the first allow / require_approval rule that matches and whose limits hold.
        let view = MemoView::new(view);
        let mut near_miss: Option<Decision> = None;
        let mut also: Vec<String> = Vec::new();
        for i in index.candidates(&intent.wallet) {
            let rule = &self.rules[i];
            if rule.effect == Effect::Deny || !matches(i) {
                continue;
            }
            match schedule(rule, req.at).and_then(|_| self.limits(rule, &ctx, &view)) {
                Ok(plan) => return Ok(allowed_by(rule, plan)),
                Err((code, why)) => {
                    let message = format!("rule '{}': {why}", rule.name);
                    if near_miss.is_none() {
                        near_miss = Some(deny(Some(&rule.name), code, message));
                    } else {
                        also.push(message);
                    }
                }
            }
        }
        Ok(finish(req, None, near_miss, also))
    }

    fn context<'p>(&'p self, req: &'p PolicyRequest) -> Result<Ctx<'p>, Box<Decision>> {
        let intent = &req.intent;
        let network = Network::parse(intent.chain, &intent.network)
            .map(|n| n.name())
            .unwrap_or_else(|_| intent.network.clone());
        let net = self
            .assets
            .iter()
            .find(|a| a.chain == intent.chain && a.network == network);
        let def = net.and_then(|n| match &intent.asset.contract {
            None => Some(&n.native),
            Some(c) => n.tokens.iter().find(|t| {
                t.contract
                    .as_deref()
                    .is_some_and(|tc| tc.eq_ignore_ascii_case(c))
            }),
        });
        let asset = match def {
            Some(d) if d.decimals != intent.asset.decimals => {
                return Err(Box::new(deny(
                    None,
                    "deny.asset_mismatch",
                    format!(
                        "the request says {} has {} decimals, the policy says {} has {}",
                        intent.asset.symbol, intent.asset.decimals, d.symbol, d.decimals
                    ),
                )))
            }
            Some(d) => Resolved {
                symbol: d.symbol.clone(),
                decimals: d.decimals,
                known: true,
                native: net.map(|n| &n.native),
            },
            None => Resolved {
                symbol: format!("unlisted:{}", intent.asset.symbol),
                decimals: intent.asset.decimals,
                known: false,
                native: net.map(|n| &n.native),
            },
        };
        let destinations = intent
            .destinations
            .iter()
            .map(|d| canonical(intent.chain, &d.address))
            .collect();
        Ok(Ctx {
            req,
            roles: BTreeSet::new(),
            network,
            asset,
            destinations,
        })
    }
}

/// The deny decision of a matching deny rule.
fn denied_by(rule: &Rule) -> Decision {
    let msg = format!(
        "denied by rule '{}'{}",
        rule.name,
        rule.description
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    );
    deny(Some(&rule.name), "deny.rule", msg)
}

/// The decision of an allow / require_approval rule that matches and whose limits hold.
fn allowed_by(rule: &Rule, plan: ReservationPlan) -> Decision {
    let (outcome, code, message) = match rule.effect {
        Effect::RequireApproval => {
            let quorum = rule
                .approval
                .clone()
                .expect("validated: require_approval rules have a quorum");
            let message = format!(
                "rule '{}' requires {} approval(s) from {} within {}",
                rule.name,
                quorum.count,
                quorum
                    .roles
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" or "),
                format_duration(quorum.expires_secs)
            );
            (
                Outcome::NeedsApproval { quorum },
                "approval.required",
                message,
            )
        }
        _ => (
            Outcome::Allow,
            "allow",
            format!("allowed by rule '{}'", rule.name),
        ),
    };
    Decision {
        outcome,
        rule: Some(rule.name.clone()),
        code,
        message,
        reservation: Some(plan),
        allow_replacement: rule.allow_replacement,
    }
}

/// The decision if one was made, else the first near miss (with the others), else default deny.
fn finish(
    req: &PolicyRequest,
    decision: Option<Decision>,
    mut near_miss: Option<Decision>,
    also: Vec<String>,
) -> Decision {
    if let Some(n) = near_miss.as_mut() {
        if !also.is_empty() {
            n.message = format!("{} (also: {})", n.message, also.join("; "));
        }
    }
    decision.or(near_miss).unwrap_or_else(|| {
        let mut hint = String::new();
        if req.intent.kind.needs_naming() {
            hint = format!(
                "; a {} is allowed only by a rule that names it in kinds",
                req.intent.kind
            );
        }
        if req.intent.is_typed_data_without_chain_id() {
            hint.push_str("; typed data without domain.chainId (valid on every chain) needs a rule with allow_typed_data_without_chain_id");
        }
        deny(
            None,
            "deny.default",
            format!(
                "no rule allows this request (default deny): {}{hint}",
                req.intent.summary()
            ),
        )
    })
}

/// A [`UsageView`] that reads each distinct window once per evaluation (rules sharing a window
/// see the same usage, and the ledger is not read again).
struct MemoView<'v> {
    view: &'v dyn UsageView,
    seen: std::cell::RefCell<Vec<(LedgerKey, i64, i64, Usage)>>,
}

impl<'v> MemoView<'v> {
    fn new(view: &'v dyn UsageView) -> Self {
        MemoView {
            view,
            seen: Default::default(),
        }
    }
}

impl UsageView for MemoView<'_> {
    fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String> {
        if let Some((.., u)) = self
            .seen
            .borrow()
            .iter()
            .find(|(k, f, t, _)| *f == from && *t == to && k == key)
        {
            return Ok(*u);
        }
        let u = self.view.usage(key, from, to)?;
        self.seen.borrow_mut().push((key.clone(), from, to, u));
        Ok(u)
    }
}

fn canonical(chain: Chain, address: &str) -> String {
    match chain {
        Chain::Ethereum => address.trim().to_ascii_lowercase(),
        Chain::Bitcoin => address.trim().to_owned(),
    }
}

fn deny(rule: Option<&str>, code: &'static str, message: String) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        rule: rule.map(str::to_owned),
        code,
        message,
        reservation: None,
        allow_replacement: false,
    }
}

fn join<I: IntoIterator<Item = S>, S: ToString>(items: I) -> String {
    items
        .into_iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
