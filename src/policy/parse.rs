//! TOML text -> validated [`Policy`], with every problem reported at its line and column.
//!
//! Syntax and shape errors (unknown field, wrong type) come from the TOML deserializer with its
//! span; meaning errors (unknown role, too many decimals, a rule that can never fire) are checked
//! here against the spans the file structs keep. All meaning errors are collected, so one run of
//! `custos policy check` lists every problem, in file order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;

use super::amount_units::{parse_duration, parse_fee_rate, parse_units, split_amount, AmountText};
use super::file::{self, PolicyFile, RuleFile};
use super::model::*;
use crate::intent::ActionKind;
use crate::network::{Chain, Network};

/// One problem in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line (0 when the problem has no position).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Plain sentence.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in a policy file (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    /// The file name to prefix each error with, when known.
    pub file: Option<String>,
    /// The problems, in file order.
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &self.file {
                Some(file) => write!(f, "{file}:{e}")?,
                None => write!(f, "{e}")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut safe = offset;
    while !text.is_char_boundary(safe) {
        safe -= 1;
    }
    let before = &text[..safe];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses and validates a policy.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyErrors> {
    let raw: PolicyFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        PolicyErrors {
            file: None,
            errors: vec![PolicyError {
                line,
                column,
                message: e.message().trim().to_owned(),
            }],
        }
    })?;
    let mut v = Validator {
        text,
        errors: Vec::new(),
    };
    let policy = v.policy(raw);
    if v.errors.is_empty() {
        Ok(policy)
    } else {
        v.errors.sort_by_key(|e| (e.line, e.column));
        Err(PolicyErrors {
            file: None,
            errors: v.errors,
        })
    }
}

struct Validator<'t> {
    text: &'t str,
    errors: Vec<PolicyError>,
}

/// Symbols known to the policy: symbol -> decimals, and whether it is some network's native coin.
#[derive(Default)]
struct Symbols {
    decimals: HashMap<String, u8>,
    native: BTreeSet<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(PolicyError {
            line,
            column,
            message: message.into(),
        });
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        line_col(self.text, span.start).0
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
        Policy {
            name: raw.policy.name.trim().to_owned(),
            description: raw.policy.description,
            roles,
            assets,
            address_books: books,
            rules,
            tests: raw.policy.tests,
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
                } else if text[..text.len() - 1].contains('*') {
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

    fn assets(
        &mut self,
        raw: &BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, file::NetworkAssetsFile>>,
    ) -> (Vec<NetworkAssets>, Symbols) {
        let mut out: Vec<NetworkAssets> = Vec::new();
        let mut symbols = Symbols::default();
        let mut symbol_home: HashMap<String, String> = HashMap::new();
        for (chain_key, networks) in raw {
            let Ok(chain) = Chain::from_str(chain_key.get_ref()) else {
                self.err(
                    chain_key.span(),
                    format!(
                        "unknown chain '{}': expected bitcoin or ethereum",
                        chain_key.get_ref()
                    ),
                );
                continue;
            };
            for (net_key, na) in networks {
                let network = match Network::parse(chain, net_key.get_ref()) {
                    Ok(n) => n.name(),
                    Err(e) => {
                        self.err(net_key.span(), e.to_string());
                        continue;
                    }
                };
                if out.iter().any(|a| a.chain == chain && a.network == network) {
                    self.err(
                        net_key.span(),
                        format!("assets for {chain}/{network} are defined twice"),
                    );
                    continue;
                }
                let place = format!("{chain}/{network}");
                let mut defs = Vec::new();
                let mut local: BTreeSet<String> = BTreeSet::new();
                for (i, asset) in std::iter::once(&na.native).chain(&na.tokens).enumerate() {
                    let is_native = i == 0;
                    let symbol = asset.symbol.get_ref().trim().to_owned();
                    if symbol.is_empty()
                        || symbol.eq_ignore_ascii_case("unlimited")
                        || symbol.chars().any(|c| c.is_whitespace())
                    {
                        self.err(
                            asset.symbol.span(),
                            format!("'{symbol}' is not a usable symbol"),
                        );
                        continue;
                    }
                    let decimals = *asset.decimals.get_ref();
                    if decimals > 77 {
                        self.err(
                            asset.decimals.span(),
                            "decimals must be at most 77 (a 256-bit amount has 78 digits)",
                        );
                    }
                    if !local.insert(symbol.clone()) {
                        self.err(
                            asset.symbol.span(),
                            format!("symbol {symbol} appears twice on {place}"),
                        );
                    }
                    let contract = match (&asset.contract, is_native) {
                        (Some(c), true) => {
                            self.err(
                                c.span(),
                                "the native coin has no contract; put tokens under tokens = [...]",
                            );
                            None
                        }
                        (None, false) => {
                            self.err(
                                asset.symbol.span(),
                                format!("token {symbol} needs its contract address"),
                            );
                            None
                        }
                        (None, true) => None,
                        (Some(c), false) => {
                            if chain != Chain::Ethereum {
                                self.err(
                                    c.span(),
                                    format!("tokens are only supported on ethereum, not {chain}"),
                                );
                            }
                            match eth_address(c.get_ref()) {
                                Some(addr) => {
                                    if defs
                                        .iter()
                                        .any(|d: &AssetDef| d.contract.as_deref() == Some(&addr))
                                    {
                                        self.err(
                                            c.span(),
                                            format!("contract {addr} is listed twice on {place}"),
                                        );
                                    }
                                    Some(addr)
                                }
                                None => {
                                    self.err(c.span(), format!("'{}' is not an Ethereum address (0x and 40 hex digits)", c.get_ref()));
                                    None
                                }
                            }
                        }
                    };
                    match symbols.decimals.get(&symbol) {
                        Some(d) if *d != decimals => {
                            let home = symbol_home.get(&symbol).cloned().unwrap_or_default();
                            self.err(
                                asset.decimals.span(),
                                format!(
                                    "symbol {symbol} has {d} decimals on {home} but {decimals} on {place}; give them distinct symbols"
                                ),
                            );
                        }
                        Some(_) => {}
                        None => {
                            symbols.decimals.insert(symbol.clone(), decimals);
                            symbol_home.insert(symbol.clone(), place.clone());
                        }
                    }
                    if is_native {
                        symbols.native.insert(symbol.clone());
                    }
                    defs.push(AssetDef {
                        symbol,
                        decimals,
                        contract,
                    });
                }
                if defs.is_empty() {
                    continue;
                }
                let native = defs.remove(0);
                out.push(NetworkAssets {
                    chain,
                    network,
                    native,
                    tokens: defs,
                });
            }
        }
        (out, symbols)
    }

    fn address_books(
        &mut self,
        raw: &BTreeMap<Spanned<String>, file::AddressBookFile>,
    ) -> BTreeMap<String, AddressBook> {
        let mut out = BTreeMap::new();
        for (name, book) in raw {
            let Ok(chain) = Chain::from_str(book.chain.get_ref()) else {
                self.err(
                    book.chain.span(),
                    format!(
                        "unknown chain '{}': expected bitcoin or ethereum",
                        book.chain.get_ref()
                    ),
                );
                continue;
            };
            let network = match &book.network {
                None => None,
                Some(n) => match Network::parse(chain, n.get_ref()) {
                    Ok(net) => Some(net.name()),
                    Err(e) => {
                        self.err(n.span(), e.to_string());
                        None
                    }
                },
            };
            let mut addresses = BTreeSet::new();
            for a in &book.addresses {
                match canonical_address(chain, a.get_ref()) {
                    Ok(addr) => {
                        if !addresses.insert(addr.clone()) {
                            self.err(
                                a.span(),
                                format!(
                                    "address {addr} is listed twice in address book '{}'",
                                    name.get_ref()
                                ),
                            );
                        }
                    }
                    Err(msg) => self.err(a.span(), msg),
                }
            }
            out.insert(
                name.get_ref().clone(),
                AddressBook {
                    chain,
                    network,
                    addresses,
                },
            );
        }
        out
    }

    fn money(
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

    fn names<F: FnMut(&mut Self, &Spanned<String>) -> Option<T>, T: Ord>(
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

    fn rule(
        &mut self,
        raw: &RuleFile,
        roles: &BTreeMap<String, BTreeSet<String>>,
        symbols: &Symbols,
        books: &BTreeMap<String, AddressBook>,
    ) -> Option<Rule> {
        let name = raw.name.get_ref().trim().to_owned();
        let at = raw.name.span();
        let errors_before = self.errors.len();
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
        }
        if self.errors.len() > errors_before {
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
        })
    }

    fn schedule(&mut self, raw: &file::ScheduleFile, at: Range<usize>) -> Option<Schedule> {
        let mut days = BTreeSet::new();
        match &raw.days {
            None => days.extend(0..7u8),
            Some(list) => {
                if list.is_empty() {
                    self.err(at, "schedule days = [] never applies");
                }
                for d in list {
                    let lower = d.get_ref().to_ascii_lowercase();
                    match DAYS.iter().position(|x| lower.starts_with(x) && (lower.len() == 3 || is_day_name(&lower))) {
                        Some(i) => {
                            days.insert(i as u8);
                        }
                        None => self.err(d.span(), format!("'{}' is not a weekday: expected mon, tue, wed, thu, fri, sat or sun", d.get_ref())),
                    }
                }
            }
        }
        let (from_minute, to_minute) = match &raw.hours {
            None => (0, 24 * 60),
            Some(h) => match parse_hours(h.get_ref()) {
                Ok(r) => r,
                Err(m) => {
                    self.err(h.span(), m);
                    return None;
                }
            },
        };
        Some(Schedule {
            days,
            from_minute,
            to_minute,
        })
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

fn is_day_name(lower: &str) -> bool {
    matches!(
        lower,
        "monday" | "tuesday" | "wednesday" | "thursday" | "friday" | "saturday" | "sunday"
    )
}

/// "08:00-18:00" -> (480, 1080); "22:00-06:00" wraps past midnight; "00:00-24:00" is all day.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{text}' is not an hour range such as \"08:00-18:00\" (UTC)");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |s: &str| -> Result<u32, String> {
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (from, to) = (minute(a)?, minute(b)?);
    if from == to {
        return Err(format!("'{text}' is an empty hour range"));
    }
    if from == 24 * 60 {
        return Err(bad());
    }
    Ok((from, to))
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Lower-case 0x-hex if `text` is an Ethereum address.
pub fn eth_address(text: &str) -> Option<String> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

/// The canonical form of an address on `chain`: lower-case 0x-hex on Ethereum, the address as
/// written (after checking it parses) on Bitcoin.
pub fn canonical_address(chain: Chain, text: &str) -> Result<String, String> {
    match chain {
        Chain::Ethereum => eth_address(text)
            .ok_or_else(|| format!("'{text}' is not an Ethereum address (0x and 40 hex digits)")),
        Chain::Bitcoin => {
            let t = text.trim();
            bitcoin::Address::from_str(t)
                .map(|a| a.assume_checked().to_string())
                .map_err(|e| format!("'{text}' is not a Bitcoin address: {e}"))
        }
    }
}
