//! Validation of one `[[rules]]` entry: its effect, the roles, wallets, chains, networks,
//! assets, kinds and address books it names, its amounts (one asset per rule), its limits and
//! windows, its approval quorum, and the combinations that make no sense (a deny rule with
//! limits, a rule that can never match).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;

use super::validate::{list_or_none, Symbols, Validator};
use crate::intent::ActionKind;
use crate::network::{Chain, Network};
use crate::policy::amount_units::{parse_duration, parse_fee_rate};
use crate::policy::file::RuleFile;
use crate::policy::model::*;

impl Validator<'_> {
    pub(super) fn rule(
        &mut self,
        raw: &RuleFile,
        roles: &BTreeMap<String, BTreeSet<String>>,
        symbols: &Symbols,
        books: &BTreeMap<String, AddressBook>,
    ) -> Option<Rule> {
        let name = raw.name.get_ref().trim().to_owned();
        let at = raw.name.span();
        let errors_before = self.error_count();
        let effect = match raw.effect.get_ref().as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            "require_approval" => Effect::RequireApproval,
            other => {
                self.err(
                    raw.effect.span(),
                    format!("unknown effect '{other}': expected allow, deny or require_approval"),
                );
                Effect::Deny
            }
        };
        let known_role = |v: &mut Self, r: &Spanned<String>| {
            if roles.contains_key(r.get_ref()) {
                Some(r.get_ref().clone())
            } else {
                let known: Vec<_> = roles.keys().cloned().collect();
                v.err(
                    r.span(),
                    format!(
                        "unknown role '{}' (roles defined: {})",
                        r.get_ref(),
                        list_or_none(&known)
                    ),
                );
                None
            }
        };
        let rule_roles = self.names(&raw.roles, "roles", at.clone(), known_role);
        if rule_roles.is_none() && effect != Effect::Deny {
            self.err(at.clone(), format!("rule '{name}' must name the roles it applies to (roles = [...]); only deny rules may apply to everyone"));
        }
        let wallets = self.names(&raw.wallets, "wallets", at.clone(), |_, w| {
            Some(w.get_ref().trim().to_owned())
        });
        let chains = self.names(
            &raw.chains,
            "chains",
            at.clone(),
            |v, c| match Chain::from_str(c.get_ref()) {
                Ok(chain) => Some(chain),
                Err(e) => {
                    v.err(c.span(), e.to_string());
                    None
                }
            },
        );
        let candidate_chains: Vec<Chain> = chains
            .clone()
            .map_or(vec![Chain::Bitcoin, Chain::Ethereum], |s| {
                s.into_iter().collect()
            });
        let networks = raw.networks.as_ref().map(|list| {
            let mut set = BTreeSet::new();
            for n in list {
                let mut any = false;
                for chain in &candidate_chains {
                    if let Ok(net) = Network::parse(*chain, n.get_ref()) {
                        set.insert((*chain, net.name()));
                        any = true;
                    }
                }
                if !any {
                    self.err(
                        n.span(),
                        format!(
                            "unknown network '{}' for chain(s) {}",
                            n.get_ref(),
                            candidate_chains
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
            set
        });
        let assets = self.names(&raw.assets, "assets", at.clone(), |v, a| {
            if symbols.decimals.contains_key(a.get_ref()) {
                Some(a.get_ref().clone())
            } else {
                let mut known: Vec<_> = symbols.decimals.keys().cloned().collect();
                known.sort();
                v.err(
                    a.span(),
                    format!(
                        "unknown asset '{}' (assets defined: {})",
                        a.get_ref(),
                        list_or_none(&known)
                    ),
                );
                None
            }
        });
        let kinds = self.names(
            &raw.kinds,
            "kinds",
            at.clone(),
            |v, k| match ActionKind::ALL
                .iter()
                .find(|kind| kind.as_str() == k.get_ref())
            {
                Some(kind) => Some(*kind),
                None => {
                    v.err(
                        k.span(),
                        format!(
                            "unknown kind '{}': expected one of {}",
                            k.get_ref(),
                            ActionKind::ALL.map(|k| k.as_str()).join(", ")
                        ),
                    );
                    None
                }
            },
        );
        let known_book = |v: &mut Self, b: &Spanned<String>| {
            if books.contains_key(b.get_ref()) {
                Some(b.get_ref().clone())
            } else {
                let known: Vec<_> = books.keys().cloned().collect();
                v.err(
                    b.span(),
                    format!(
                        "unknown address book '{}' (address books defined: {})",
                        b.get_ref(),
                        list_or_none(&known)
                    ),
                );
                None
            }
        };
        let all_in = match &raw.destinations {
            None => None,
            Some(value) => {
                match value.get_ref() {
                    toml::Value::String(s) if s == "any" => None,
                    toml::Value::Array(items) => {
                        let mut set = BTreeSet::new();
                        if items.is_empty() {
                            self.err(value.span(), "destinations = [] matches nothing; write \"any\" or name address books");
                        }
                        for item in items {
                            match item.as_str() {
                                Some(b) if books.contains_key(b) => {
                                    set.insert(b.to_owned());
                                }
                                Some(b) => {
                                    let known: Vec<_> = books.keys().cloned().collect();
                                    self.err(value.span(), format!("unknown address book '{b}' (address books defined: {})", list_or_none(&known)));
                                }
                                None => self.err(
                                    value.span(),
                                    "destinations must be \"any\" or a list of address book names",
                                ),
                            }
                        }
                        Some(set)
                    }
                    _ => {
                        self.err(
                            value.span(),
                            "destinations must be \"any\" or a list of address book names",
                        );
                        None
                    }
                }
            }
        };
        let destinations = DestinationMatch {
            all_in,
            any_in: self.names(
                &raw.any_destination_in,
                "any_destination_in",
                at.clone(),
                known_book,
            ),
            any_not_in: self.names(
                &raw.any_destination_not_in,
                "any_destination_not_in",
                at.clone(),
                known_book,
            ),
        };

        // Amounts: all in one asset, and the rule must be restricted to that asset.
        let mut amount_symbols: Vec<(String, Range<usize>)> = Vec::new();
        let mut money =
            |v: &mut Self, text: &Option<Spanned<String>>, unlimited: bool| -> Option<Money> {
                let text = text.as_ref()?;
                let m = v.money(text, symbols, unlimited).ok().flatten()?;
                amount_symbols.push((m.symbol.clone(), text.span()));
                Some(m)
            };
        let min_amount = money(self, &raw.min_amount, false);
        let max_amount = money(self, &raw.max_amount, true);
        let mut limits = Limits::default();
        if let Some(l) = &raw.limits {
            limits.per_tx = money(self, &l.per_tx, true);
            for w in &l.windows {
                let wf = w.get_ref();
                let period = parse_duration(wf.period.get_ref())
                    .map_err(|m| self.err(wf.period.span(), m))
                    .ok();
                let scope = match wf.scope.get_ref().as_str() {
                    "wallet" => Some(Scope::Wallet),
                    "principal" => Some(Scope::Principal),
                    "rule" => Some(Scope::Rule),
                    other => {
                        self.err(
                            wf.scope.span(),
                            format!("unknown scope '{other}': expected wallet, principal or rule"),
                        );
                        None
                    }
                };
                let sum = money(self, &wf.sum, true);
                if wf.sum.is_none() && wf.count.is_none() {
                    self.err(w.span(), "a window needs a sum cap, a count cap, or both");
                }
                if wf.count == Some(0) {
                    self.err(
                        w.span(),
                        "count = 0 refuses everything; use a deny rule instead",
                    );
                }
                if let (Some(period_secs), Some(scope)) = (period, scope) {
                    if sum.is_some() || wf.count.is_some() {
                        limits.windows.push(Window {
                            period_secs,
                            scope,
                            sum,
                            count: wf.count,
                        });
                    }
                }
            }
            if let Some(fee) = &l.fee {
                if let Ok(Some(m)) = self.money(fee, symbols, true) {
                    if !symbols.native.contains(&m.symbol) {
                        self.err(fee.span(), format!("a fee cap is in the native coin, and {} is not any network's native coin", m.symbol));
                    }
                    limits.fee = Some(m);
                }
            }
            if let Some(rate) = &l.fee_rate {
                match parse_fee_rate(rate.get_ref()) {
                    Ok(r) => {
                        if chains.as_ref() != Some(&BTreeSet::from([Chain::Bitcoin])) {
                            self.err(rate.span(), format!("fee_rate is a Bitcoin limit: rule '{name}' must say chains = [\"bitcoin\"]"));
                        }
                        limits.fee_rate_sat_per_kvb = Some(r);
                    }
                    Err(m) => self.err(rate.span(), m),
                }
            }
        }
        if let Some((first, _)) = amount_symbols.first().cloned() {
            for (sym, span) in &amount_symbols {
                if *sym != first {
                    self.err(span.clone(), format!("rule '{name}' mixes amounts in {first} and {sym}; one rule limits one asset"));
                }
            }
            if assets.as_ref() != Some(&BTreeSet::from([first.clone()])) {
                self.err(at.clone(), format!("rule '{name}' has amounts in {first}, so it must say assets = [\"{first}\"]: a limit in one asset cannot bound another"));
            }
        }
        if let (Some(min), Some(max)) = (&min_amount, &max_amount) {
            if min.units > max.units {
                self.err(
                    raw.min_amount.as_ref().map_or(at.clone(), |s| s.span()),
                    format!(
                        "rule '{name}' can never match: min_amount {min} is above max_amount {max}"
                    ),
                );
            }
        }
        let schedule = raw
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(s, at.clone()));
        let approval = match (&raw.approval, effect) {
            (Some(a), Effect::RequireApproval) => {
                let af = a.get_ref();
                let q_roles: BTreeSet<String> = af
                    .roles
                    .iter()
                    .filter_map(|r| known_role(self, r))
                    .collect();
                if af.roles.is_empty() {
                    self.err(a.span(), "an approval must name the roles approvers hold");
                }
                if *af.quorum.get_ref() == 0 {
                    self.err(af.quorum.span(), "quorum must be at least 1");
                }
                let expires = parse_duration(af.expires.get_ref())
                    .map_err(|m| self.err(af.expires.span(), m))
                    .ok();
                expires.map(|expires_secs| Quorum {
                    count: *af.quorum.get_ref(),
                    roles: q_roles,
                    expires_secs,
                })
            }
            (Some(a), _) => {
                self.err(
                    a.span(),
                    format!(
                        "only require_approval rules take an [approval]; rule '{name}' is {}",
                        effect.as_str()
                    ),
                );
                None
            }
            (None, Effect::RequireApproval) => {
                self.err(at.clone(), format!("require_approval rule '{name}' needs an approval = {{ quorum, roles, expires }}"));
                None
            }
            (None, _) => None,
        };
        if effect == Effect::Deny {
            let l = &limits;
            if l.per_tx.is_some()
                || l.fee.is_some()
                || l.fee_rate_sat_per_kvb.is_some()
                || !l.windows.is_empty()
            {
                self.err(at.clone(), format!("deny rule '{name}' has limits, which only bound what allow and require_approval rules let through"));
            }
            if raw.allow_replacement {
                self.err(
                    at.clone(),
                    format!("deny rule '{name}' cannot allow_replacement"),
                );
            }
            if raw.allow_typed_data_without_chain_id {
                self.err(
                    at.clone(),
                    format!("deny rule '{name}' cannot allow_typed_data_without_chain_id (deny rules match such data anyway)"),
                );
            }
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(Rule {
            name,
            description: raw.description.clone(),
            effect,
            roles: rule_roles,
            wallets,
            chains,
            networks,
            assets,
            kinds,
            destinations,
            min_amount,
            max_amount,
            schedule,
            limits,
            approval,
            allow_replacement: raw.allow_replacement,
            allow_typed_data_without_chain_id: raw.allow_typed_data_without_chain_id,
        })
    }
}
