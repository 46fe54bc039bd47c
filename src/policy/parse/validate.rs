//! Validation: the meaning of a deserialized policy file. Names are unique, roles, assets and
//! address books referred to are defined, amounts fit their asset, and no allow rule is shadowed
//! by a deny rule that always wins. Every problem is recorded (through [`Diagnostics`]) at the
//! span the file structs kept, and validation goes on, so one run reports them all.
//!
//! The policy-wide checks are here; the sections have their own files: [`super::assets`] (assets
//! and address books), [`super::rule`] (one rule), [`super::schedule`] (a rule's schedule).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use toml::Spanned;

use super::span::{Diagnostics, PolicyErrors};
use crate::policy::amount_units::{parse_units, split_amount, AmountText};
use crate::policy::file::PolicyFile;
use crate::policy::model::*;

/// Validates a deserialized policy file read from `text` (spans point into it).
pub(super) fn validate(text: &str, raw: PolicyFile) -> Result<Policy, PolicyErrors> {
    let mut v = Validator {
        diag: Diagnostics::new(text),
    };
    let policy = v.policy(raw);
    v.diag.finish().map(|()| policy)
}

/// Walks a policy file, recording every problem.
pub(super) struct Validator<'t> {
    diag: Diagnostics<'t>,
}

/// Symbols known to the policy: symbol -> decimals, and whether it is some network's native coin.
#[derive(Default)]
pub(super) struct Symbols {
    pub(super) decimals: HashMap<String, u8>,
    pub(super) native: BTreeSet<String>,
}

impl Validator<'_> {
    /// Records a problem at `span`.
    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diag.at(span, message);
    }

    /// The line `span` starts on.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        self.diag.line_of(span)
    }

    /// How many problems were recorded so far.
    pub(super) fn error_count(&self) -> usize {
        self.diag.count()
    }

    fn policy(&mut self, raw: PolicyFile) -> Policy {
        if raw.policy.name.trim().is_empty() {
            self.err(0..0, "[policy] name must not be empty");
        }
        let roles = self.roles(&raw.roles);
        let (assets, symbols) = self.assets(&raw.assets);
        let books = self.address_books(&raw.address_books);
        let mut rules = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        let mut name_spans = Vec::new();
        for rule in &raw.rules {
            let name = rule.name.get_ref().trim().to_owned();
            if name.is_empty() {
                self.err(rule.name.span(), "a rule name must not be empty");
            } else if let Some(first) = seen.get(&name) {
                let first_line = self.line_of(first.clone());
                self.err(
                    rule.name.span(),
                    format!("duplicate rule name '{name}' (first used at line {first_line})"),
                );
            } else {
                seen.insert(name.clone(), rule.name.span());
            }
            if let Some(r) = self.rule(rule, &roles, &symbols, &books) {
                rules.push(r);
                name_spans.push(rule.name.span());
            }
        }
        self.shadowing(&rules, &name_spans);
        let approver_keys = self.approver_keys(&raw.approver_keys, &roles);
        let allow_unsigned_votes = raw
            .policy
            .allow_unsigned_votes
            .as_ref()
            .is_some_and(|v| *v.get_ref());
        if !allow_unsigned_votes {
            self.signed_quorums(&raw.rules, &roles, &approver_keys);
        }
        Policy {
            name: raw.policy.name.trim().to_owned(),
            description: raw.policy.description,
            roles,
            assets,
            address_books: books,
            rules,
            tests: raw.policy.tests,
            approver_keys,
            allow_unsigned_votes,
            index: Default::default(),
        }
    }

    fn roles(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for (role, principals) in raw {
            if !is_identifier(role.get_ref()) {
                self.err(
                    role.span(),
                    format!(
                        "role name '{}' must be letters, digits, '_' or '-'",
                        role.get_ref()
                    ),
                );
            }
            let mut set = BTreeSet::new();
            for p in principals {
                let text = p.get_ref().trim();
                if text.is_empty() || text == "*" {
                    self.err(
                        p.span(),
                        format!(
                            "principal '{text}' of role '{}' must be an identity (a SAN URI such as spiffe://…, or a DNS name), optionally ending in '*'",
                            role.get_ref()
                        ),
                    );
                } else if text.strip_suffix('*').unwrap_or(text).contains('*') {
                    self.err(
                        p.span(),
                        format!(
                            "principal '{text}': '*' is only allowed at the end (a prefix match)"
                        ),
                    );
                }
                set.insert(text.to_owned());
            }
            out.insert(role.get_ref().clone(), set);
        }
        out
    }

    pub(super) fn money(
        &mut self,
        text: &Spanned<String>,
        symbols: &Symbols,
        allow_unlimited: bool,
    ) -> Result<Option<Money>, ()> {
        match split_amount(text.get_ref()) {
            Err(msg) => {
                self.err(text.span(), msg);
                Err(())
            }
            Ok(AmountText::Unlimited) if allow_unlimited => Ok(None),
            Ok(AmountText::Unlimited) => {
                self.err(
                    text.span(),
                    "'unlimited' makes no sense here; write an amount such as \"0.5 BTC\"",
                );
                Err(())
            }
            Ok(AmountText::Value { number, symbol }) => {
                let Some(decimals) = symbols.decimals.get(symbol).copied() else {
                    let mut known: Vec<_> = symbols.decimals.keys().cloned().collect();
                    known.sort();
                    self.err(
                        text.span(),
                        format!(
                            "unknown unit '{symbol}' in '{}': define it under [assets] (known: {})",
                            text.get_ref(),
                            list_or_none(&known)
                        ),
                    );
                    return Err(());
                };
                match parse_units(number, symbol, decimals) {
                    Ok(units) => Ok(Some(Money {
                        units,
                        symbol: symbol.to_owned(),
                        decimals,
                    })),
                    Err(msg) => {
                        self.err(text.span(), msg);
                        Err(())
                    }
                }
            }
        }
    }

    pub(super) fn names<F: FnMut(&mut Self, &Spanned<String>) -> Option<T>, T: Ord>(
        &mut self,
        list: &Option<Vec<Spanned<String>>>,
        what: &str,
        span_hint: Range<usize>,
        mut each: F,
    ) -> Option<BTreeSet<T>> {
        let list = list.as_ref()?;
        if list.is_empty() {
            self.err(
                span_hint,
                format!("an empty {what} list matches nothing; remove the key to match any"),
            );
        }
        Some(list.iter().filter_map(|s| each(self, s)).collect())
    }

    /// An allow or require_approval rule that some deny rule always overrides can never fire.
    fn shadowing(&mut self, rules: &[Rule], spans: &[Range<usize>]) {
        for (i, a) in rules.iter().enumerate() {
            if a.effect == Effect::Deny {
                continue;
            }
            if let Some((j, d)) = rules
                .iter()
                .enumerate()
                .find(|(_, d)| d.effect == Effect::Deny && covers(d, a))
            {
                let line = self.line_of(spans[j].clone());
                self.err(
                    spans[i].clone(),
                    format!(
                        "rule '{}' can never fire: deny rule '{}' (line {line}) matches every request it matches, and a deny always wins",
                        a.name, d.name
                    ),
                );
            }
        }
    }
}

/// Whether deny rule `d` matches every request allow rule `a` matches (conservative: `false` when
/// unsure).
fn covers(d: &Rule, a: &Rule) -> bool {
    fn set<T: Ord>(d: &Option<BTreeSet<T>>, a: &Option<BTreeSet<T>>) -> bool {
        match (d, a) {
            (None, _) => true,
            (Some(ds), Some(as_)) => as_.is_subset(ds),
            (Some(_), None) => false,
        }
    }
    let dest = d.destinations == DestinationMatch::default() || d.destinations == a.destinations;
    let min = match (&d.min_amount, &a.min_amount) {
        (None, _) => true,
        (Some(dm), Some(am)) => am.units >= dm.units,
        (Some(_), None) => false,
    };
    let max = match (&d.max_amount, &a.max_amount) {
        (None, _) => true,
        (Some(dm), Some(am)) => am.units <= dm.units,
        (Some(_), None) => false,
    };
    let schedule = d.schedule.is_none() || d.schedule == a.schedule;
    set(&d.roles, &a.roles)
        && set(&d.wallets, &a.wallets)
        && set(&d.chains, &a.chains)
        && set(&d.networks, &a.networks)
        && set(&d.assets, &a.assets)
        && set(&d.kinds, &a.kinds)
        && dest
        && min
        && max
        && schedule
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
