//! One rule against one request: the rule's conditions (roles, wallets, chains, networks, kinds,
//! assets, destinations, amounts) and its limits (per transaction, fee, fee rate, rolling
//! windows read through a [`UsageView`]). Both the indexed decision and the explain trace run
//! these checks; a failed check is a [`Miss`]: the stable code and the sentence with the numbers.

use std::collections::BTreeSet;

use crate::amount::{format_decimal, Amount};
use crate::network::Chain;

use super::{join, Ctx, Miss};
use crate::policy::amount_units::format_fee_rate;
use crate::policy::limits::{counted_amount, LedgerKey, ReservationPlan, UsageView, WindowCheck};
use crate::policy::model::{Effect, Money, Policy, Rule, Scope};

impl Policy {
    /// The first condition of `rule` the request does not meet.
    pub(super) fn conditions(&self, rule: &Rule, ctx: &Ctx<'_>) -> Result<(), Miss> {
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
        if rule.effect != Effect::Deny {
            if intent.kind.needs_naming() && rule.kinds.is_none() {
                return no(format!(
                    "kind {} is allowed only by a rule that names it in kinds",
                    intent.kind
                ));
            }
            if intent.is_typed_data_without_chain_id() && !rule.allow_typed_data_without_chain_id {
                return no("the typed data has no domain.chainId (valid on every chain), and the rule does not allow_typed_data_without_chain_id".into());
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
    pub(super) fn limits(
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
