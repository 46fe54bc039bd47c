//! Evaluation: one request against a policy -> a [`Decision`] (and, for `explain`, a trace of
//! every rule considered).
//!
//! Pure: the policy, the request (with its time) and a read-only [`UsageView`] of the ledger go
//! in; nothing is written. The semantics are in the [module docs](super).

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::amount::{format_decimal, Amount};
use crate::intent::Intent;
use crate::network::{Chain, Network};

use super::amount_units::{format_duration, format_fee_rate};
use super::limits::{counted_amount, LedgerKey, ReservationPlan, Usage, UsageView, WindowCheck};
use super::model::{Effect, Money, Policy, Quorum, Rule, Schedule, Scope};

/// One request as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// The mTLS identity of the requester (SAN URI or DNS name).
    pub principal: String,
    /// Request time, unix seconds UTC (JSON: an integer, or RFC 3339 text).
    #[serde(deserialize_with = "de_time")]
    pub at: i64,
    /// What the request does.
    pub intent: Intent,
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        Secs(i64),
        Text(String),
    }
    match T::deserialize(d)? {
        T::Secs(s) => Ok(s),
        T::Text(t) => parse_time(&t).map_err(serde::de::Error::custom),
    }
}

/// Parses RFC 3339 ("2024-05-06T10:00:00Z") or unix seconds into unix seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            format!("'{text}' is not RFC 3339 time (2024-05-06T10:00:00Z) or unix seconds: {e}")
        })
}

/// Formats unix seconds as RFC 3339 UTC.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

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

/// How one rule fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    /// Rule name.
    pub rule: String,
    /// Its effect.
    pub effect: Effect,
    /// `decided`, `matched` (a deny that lost to an earlier deny), `not_matched`, `limit`,
    /// `time_window` or `not_reached`.
    pub result: &'static str,
    /// Why, in words.
    pub detail: String,
}

/// A decision and the trace of every rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// Every rule, in file order.
    pub rules: Vec<RuleTrace>,
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

    /// The straightforward evaluation: every rule, in file order, with the same code `explain`
    /// runs (the reference the indexed [`Policy::evaluate`] is tested against).
    pub fn evaluate_every_rule(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
    ) -> Result<Decision, EvalError> {
        self.run(req, view, None)
    }

    /// Decides one request and explains every rule.
    pub fn explain(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
    ) -> Result<Explanation, EvalError> {
        let mut trace = Vec::new();
        let decision = self.run(req, view, Some(&mut trace))?;
        Ok(Explanation {
            decision,
            rules: trace,
        })
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

    fn run(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
        mut trace: Option<&mut Vec<RuleTrace>>,
    ) -> Result<Decision, EvalError> {
        let mut ctx = match self.context(req) {
            Ok(c) => c,
            Err(d) => {
                if let Some(t) = trace.as_deref_mut() {
                    for r in &self.rules {
                        t.push(rt(
                            r,
                            "not_reached",
                            "the asset does not match the policy".into(),
                        ));
                    }
                }
                return Ok(*d);
            }
        };
        ctx.roles = self.roles_of(&req.principal);
        let explaining = trace.is_some();
        let mut slots: Vec<Option<RuleTrace>> =
            vec![None; if explaining { self.rules.len() } else { 0 }];

        // 1. A matching deny rule wins over any allow.
        let mut denied: Option<Decision> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect != Effect::Deny {
                continue;
            }
            let m = self
                .conditions(rule, &ctx)
                .and_then(|_| schedule(rule, req.at));
            match m {
                Ok(()) if denied.is_none() => {
                    denied = Some(denied_by(rule));
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "decided",
                            "every condition matches; a deny wins".into(),
                        ));
                    } else {
                        break;
                    }
                }
                Ok(()) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "matched",
                            "matches too, but an earlier deny rule decided".into(),
                        ));
                    }
                }
                Err((code, why)) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            if code == "time_window" {
                                "time_window"
                            } else {
                                "not_matched"
                            },
                            why,
                        ));
                    }
                }
            }
        }

        // 2. Otherwise the first allow / require_approval rule that matches and whose limits hold.
        let mut decision = denied;
        let mut near_miss: Option<Decision> = None;
        let mut also: Vec<String> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect == Effect::Deny {
                continue;
            }
            if decision.is_some() {
                if !explaining {
                    break;
                }
                slots[i] = Some(rt(
                    rule,
                    "not_reached",
                    "the decision was already made".into(),
                ));
                continue;
            }
            let outcome = self
                .conditions(rule, &ctx)
                .map_err(|(c, w)| (c, w, false))
                .and_then(|_| schedule(rule, req.at).map_err(|(c, w)| (c, w, true)))
                .and_then(|_| self.limits(rule, &ctx, view).map_err(|(c, w)| (c, w, true)));
            match outcome {
                Ok(plan) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "decided",
                            "every condition matches and every limit holds".into(),
                        ));
                    }
                    decision = Some(allowed_by(rule, plan));
                }
                Err((code, why, near)) => {
                    if near && near_miss.is_none() {
                        near_miss = Some(deny(
                            Some(&rule.name),
                            code,
                            format!("rule '{}': {why}", rule.name),
                        ));
                    } else if near {
                        also.push(format!("rule '{}': {why}", rule.name));
                    }
                    if explaining {
                        let result = match code {
                            "time_window" => "time_window",
                            c if c.starts_with("limit.") => "limit",
                            _ => "not_matched",
                        };
                        slots[i] = Some(rt(rule, result, why));
                    }
                }
            }
        }
        if let Some(t) = trace {
            t.extend(slots.into_iter().flatten());
        }
        Ok(finish(req, decision, near_miss, also))
    }

    /// The first condition of `rule` the request does not meet.
    fn conditions(&self, rule: &Rule, ctx: &Ctx<'_>) -> Result<(), Miss> {
        let intent = &ctx.req.intent;
        let no = |w: String| Err(("no_match", w));
        if let Some(roles) = &rule.roles {
            if !roles.iter().any(|r| ctx.roles.contains(r.as_str())) {
                return no(format!(
                    "principal '{}' holds none of the roles {}",
                    ctx.req.principal,
                    join(roles)
                ));
            }
        }
        if let Some(w) = &rule.wallets {
            if !w.contains(&intent.wallet) {
                return no(format!(
                    "wallet '{}' is not one of {}",
                    intent.wallet,
                    join(w)
                ));
            }
        }
        if let Some(c) = &rule.chains {
            if !c.contains(&intent.chain) {
                return no(format!(
                    "chain {} is not one of {}",
                    intent.chain,
                    join(c.iter().map(|c| c.as_str()))
                ));
            }
        }
        if let Some(n) = &rule.networks {
            if !n.contains(&(intent.chain, ctx.network.clone())) {
                return no(format!(
                    "network {}/{} is not one of {}",
                    intent.chain,
                    ctx.network,
                    join(n.iter().map(|(c, n)| format!("{c}/{n}")))
                ));
            }
        }
        if let Some(k) = &rule.kinds {
            if !k.contains(&intent.kind) {
                return no(format!(
                    "kind {} is not one of {}",
                    intent.kind,
                    join(k.iter().map(|k| k.as_str()))
                ));
            }
        }
        if let Some(a) = &rule.assets {
            if !ctx.asset.known || !a.contains(&ctx.asset.symbol) {
                let what = if ctx.asset.known {
                    ctx.asset.symbol.clone()
                } else {
                    format!(
                        "{} (not listed in [assets] for {}/{})",
                        intent.asset.symbol, intent.chain, ctx.network
                    )
                };
                return no(format!("asset {what} is not one of {}", join(a)));
            }
        }
        let d = &rule.destinations;
        if let Some(books) = &d.all_in {
            if ctx.destinations.is_empty() {
                return no("the request has no destination, and the rule needs every destination in an address book".into());
            }
            if let Some(out) = ctx
                .destinations
                .iter()
                .find(|a| !self.in_books(books, a, ctx))
            {
                return no(format!(
                    "destination {out} is not in address book {}",
                    join(books)
                ));
            }
        }
        if let Some(books) = &d.any_in {
            if !ctx
                .destinations
                .iter()
                .any(|a| self.in_books(books, a, ctx))
            {
                return no(format!("no destination is in address book {}", join(books)));
            }
        }
        if let Some(books) = &d.any_not_in {
            if ctx
                .destinations
                .iter()
                .all(|a| self.in_books(books, a, ctx))
            {
                return no(format!(
                    "every destination is in address book {}",
                    join(books)
                ));
            }
        }
        if let Some(min) = &rule.min_amount {
            if intent.amount < min.units {
                return no(format!(
                    "amount {} is below min_amount {min}",
                    self.fmt_amount(ctx, intent.amount)
                ));
            }
        }
        if let Some(max) = &rule.max_amount {
            if intent.amount > max.units {
                return no(format!(
                    "amount {} is above max_amount {max}",
                    self.fmt_amount(ctx, intent.amount)
                ));
            }
        }
        Ok(())
    }

    fn in_books(&self, books: &BTreeSet<String>, address: &str, ctx: &Ctx<'_>) -> bool {
        books.iter().any(|name| {
            self.address_books.get(name).is_some_and(|b| {
                b.chain == ctx.req.intent.chain
                    && b.network.as_ref().is_none_or(|n| *n == ctx.network)
                    && b.addresses.contains(address)
            })
        })
    }

    fn fmt_amount(&self, ctx: &Ctx<'_>, amount: Amount) -> String {
        if ctx.req.intent.is_unlimited() {
            return format!("unlimited {}", ctx.req.intent.asset.symbol);
        }
        let symbol = if ctx.asset.known {
            &ctx.asset.symbol
        } else {
            &ctx.req.intent.asset.symbol
        };
        format!("{} {symbol}", format_decimal(amount, ctx.asset.decimals))
    }

    /// Checks the rule's limits; on success, the reservation plan.
    fn limits(
        &self,
        rule: &Rule,
        ctx: &Ctx<'_>,
        view: &dyn UsageView,
    ) -> Result<ReservationPlan, Miss> {
        let intent = &ctx.req.intent;
        let l = &rule.limits;
        if let Some(cap) = &l.per_tx {
            if intent.amount > cap.units {
                return Err((
                    "limit.per_tx",
                    format!(
                        "amount {} is above the per-transaction limit {cap}",
                        self.fmt_amount(ctx, intent.amount)
                    ),
                ));
            }
        }
        if let Some(cap) = &l.fee {
            check_fee(cap, ctx)?;
        }
        if let Some(cap) = l.fee_rate_sat_per_kvb {
            match (intent.chain, intent.fee_rate_sat_per_kvb) {
                (Chain::Bitcoin, Some(rate)) if rate > cap => {
                    return Err((
                        "limit.fee_rate",
                        format!(
                            "fee rate {} is above the cap {}",
                            format_fee_rate(rate),
                            format_fee_rate(cap)
                        ),
                    ))
                }
                (Chain::Bitcoin, None) => {
                    return Err((
                        "limit.fee_rate",
                        "the request carries no fee rate, and the rule caps it".into(),
                    ))
                }
                _ => {}
            }
        }
        let amount = counted_amount(intent.kind, intent.amount);
        let mut checks = Vec::with_capacity(l.windows.len());
        for w in &l.windows {
            let name = match w.scope {
                Scope::Wallet => intent.wallet.clone(),
                Scope::Principal => ctx.req.principal.clone(),
                Scope::Rule => rule.name.clone(),
            };
            let (asset, decimals) = match (&w.sum, rule.single_asset()) {
                (Some(m), _) => (m.symbol.clone(), m.decimals),
                (None, Some(s)) => (s.to_owned(), ctx.asset.decimals),
                (None, None) => (LedgerKey::ALL_ASSETS.to_owned(), 0),
            };
            let check = WindowCheck {
                key: LedgerKey {
                    scope: w.scope,
                    name,
                    asset,
                },
                period_secs: w.period_secs,
                max_sum: w.sum.as_ref().map(|m| m.units),
                max_count: w.count,
                decimals,
                rule: rule.name.clone(),
                label: w.label(),
            };
            let period =
                i64::try_from(w.period_secs).expect("validated: periods are at most ten years");
            let used = view
                // Entries stamped after `at` (another replica's clock, a late retry) count too:
                // a window ending later that contains them would also contain this request.
                .usage(
                    &check.key,
                    ctx.req.at.saturating_sub(period),
                    ctx.req.at.saturating_add(period),
                )
                .map_err(|e| {
                    (
                        "limit.unavailable",
                        format!("cannot read the limit ledger: {e}"),
                    )
                })?;
            check.check(used, amount)?;
            checks.push(check);
        }
        let mut keys = Vec::with_capacity(6);
        for (scope, name) in [
            (Scope::Wallet, &intent.wallet),
            (Scope::Principal, &ctx.req.principal),
            (Scope::Rule, &rule.name),
        ] {
            for asset in [ctx.asset.symbol.as_str(), LedgerKey::ALL_ASSETS] {
                keys.push(LedgerKey {
                    scope,
                    name: name.clone(),
                    asset: asset.to_owned(),
                });
            }
        }
        Ok(ReservationPlan {
            at: ctx.req.at,
            amount,
            keys,
            checks,
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
        deny(
            None,
            "deny.default",
            format!(
                "no rule allows this request (default deny): {}",
                req.intent.summary()
            ),
        )
    })
}

/// Whether the rule has no schedule or its schedule includes `at`.
fn schedule_contains_opt(rule: &Rule, at: i64) -> bool {
    rule.schedule
        .as_ref()
        .is_none_or(|s| schedule_contains(s, at))
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

fn check_fee(cap: &Money, ctx: &Ctx<'_>) -> Result<(), Miss> {
    let intent = &ctx.req.intent;
    match ctx.asset.native {
        Some(native) if native.symbol == cap.symbol => {
            if intent.fee > cap.units {
                return Err((
                    "limit.fee",
                    format!(
                        "fee {} {} is above the cap {cap}",
                        format_decimal(intent.fee, native.decimals),
                        native.symbol
                    ),
                ));
            }
            Ok(())
        }
        Some(native) => Err((
            "limit.fee",
            format!(
                "the fee is paid in {}, but the rule caps fees in {}",
                native.symbol, cap.symbol
            ),
        )),
        None => Err((
            "limit.fee",
            format!(
                "{}/{} has no native coin in [assets], so the fee cannot be checked",
                intent.chain, ctx.network
            ),
        )),
    }
}

/// Whether the rule's schedule includes `at`.
fn schedule(rule: &Rule, at: i64) -> Result<(), Miss> {
    let Some(s) = &rule.schedule else {
        return Ok(());
    };
    if schedule_contains(s, at) {
        Ok(())
    } else {
        Err((
            "time_window",
            format!(
                "{} is outside the rule's schedule ({})",
                format_time(at),
                describe_schedule(s)
            ),
        ))
    }
}

/// Whether `at` (unix seconds) falls in the schedule (UTC; the day is the day of `at`).
pub fn schedule_contains(s: &Schedule, at: i64) -> bool {
    let days = at.div_euclid(86_400);
    let weekday = (days + 3).rem_euclid(7) as u8; // 1970-01-01 was a Thursday; 0 = Monday
    let minute = (at.rem_euclid(86_400) / 60) as u32;
    let in_hours = if s.from_minute < s.to_minute {
        minute >= s.from_minute && minute < s.to_minute
    } else {
        minute >= s.from_minute || minute < s.to_minute
    };
    s.days.contains(&weekday) && in_hours
}

/// "mon, tue 08:00-18:00 UTC".
pub fn describe_schedule(s: &Schedule) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let days = if s.days.len() == 7 {
        "every day".to_owned()
    } else {
        s.days
            .iter()
            .map(|d| NAMES[usize::from(*d)])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{days} {}-{} UTC", hm(s.from_minute), hm(s.to_minute))
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

fn rt(rule: &Rule, result: &'static str, detail: String) -> RuleTrace {
    RuleTrace {
        rule: rule.name.clone(),
        effect: rule.effect,
        result,
        detail,
    }
}

fn join<I: IntoIterator<Item = S>, S: ToString>(items: I) -> String {
    items
        .into_iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Explanation {
    /// Text for `custos policy explain`.
    pub fn render(&self) -> String {
        let d = &self.decision;
        let mut out = format!(
            "decision: {} (code {}{})\n  {}\n",
            d.outcome.as_str(),
            d.code,
            d.rule
                .as_deref()
                .map(|r| format!(", rule '{r}'"))
                .unwrap_or_default(),
            d.message
        );
        out.push_str("rules, in file order (deny rules are checked first and win):\n");
        for t in &self.rules {
            out.push_str(&format!(
                "  [{}] {} '{}': {}\n",
                t.result,
                t.effect.as_str(),
                t.rule,
                t.detail
            ));
        }
        out
    }
}

/// Who counts towards a quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuorumStatus {
    /// Distinct approvers that count.
    pub counted: Vec<String>,
    /// Approvals that do not count, and why.
    pub ignored: Vec<(String, String)>,
    /// Whether `counted.len() >= quorum.count`.
    pub met: bool,
}

impl Policy {
    /// Counts approvals: each principal once, never the requester, only holders of the quorum's
    /// roles.
    pub fn quorum_status(
        &self,
        quorum: &Quorum,
        requester: &str,
        approvers: &[String],
    ) -> QuorumStatus {
        let mut counted: Vec<String> = Vec::new();
        let mut ignored = Vec::new();
        for a in approvers {
            if a == requester {
                ignored.push((
                    a.clone(),
                    "the requester never approves its own request".into(),
                ));
            } else if counted.contains(a) {
                ignored.push((a.clone(), "already counted once".into()));
            } else if !self.roles_of(a).iter().any(|r| quorum.roles.contains(*r)) {
                ignored.push((
                    a.clone(),
                    format!("holds none of the roles {}", join(&quorum.roles)),
                ));
            } else {
                counted.push(a.clone());
            }
        }
        let met = counted.len() >= quorum.count as usize;
        QuorumStatus {
            counted,
            ignored,
            met,
        }
    }
}
