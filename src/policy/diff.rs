//! `custos policy diff`: what changed between two versions, in sentences a reviewer can sign off.

use std::collections::BTreeSet;
use std::fmt::Display;

use super::amount_units::{format_duration, format_fee_rate};
use super::eval::describe_schedule;
use super::model::{Money, Policy, Rule, Window};

/// The changes from `old` to `new`, one sentence each (empty: same meaning).
pub fn diff(old: &Policy, new: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if old.name != new.name {
        out.push(format!(
            "policy renamed from '{}' to '{}'",
            old.name, new.name
        ));
    }
    if old.description != new.description {
        out.push("policy description changed".into());
    }
    // Roles.
    for (role, members) in &new.roles {
        match old.roles.get(role) {
            None => out.push(format!("role '{role}' added with {}", list(members))),
            Some(before) => {
                for m in members.difference(before) {
                    out.push(format!("role '{role}': {m} added"));
                }
                for m in before.difference(members) {
                    out.push(format!("role '{role}': {m} removed"));
                }
            }
        }
    }
    for role in old.roles.keys().filter(|r| !new.roles.contains_key(*r)) {
        out.push(format!("role '{role}' removed"));
    }
    approver_key_changes(old, new, &mut out);
    // Assets.
    for na in &new.assets {
        let place = format!("{}/{}", na.chain, na.network);
        match old
            .assets
            .iter()
            .find(|o| o.chain == na.chain && o.network == na.network)
        {
            None => out.push(format!(
                "assets for {place} added (native {})",
                na.native.symbol
            )),
            Some(o) => {
                if o.native != na.native {
                    out.push(format!(
                        "{place}: native coin changed from {} ({} decimals) to {} ({} decimals)",
                        o.native.symbol, o.native.decimals, na.native.symbol, na.native.decimals
                    ));
                }
                for t in &na.tokens {
                    match o.tokens.iter().find(|x| x.contract == t.contract) {
                        None => out.push(format!("{place}: token {} ({}, {} decimals) added", t.symbol, t.contract.as_deref().unwrap_or(""), t.decimals)),
                        Some(x) if x != t => out.push(format!("{place}: token at {} changed from {} ({} decimals) to {} ({} decimals)", t.contract.as_deref().unwrap_or(""), x.symbol, x.decimals, t.symbol, t.decimals)),
                        Some(_) => {}
                    }
                }
                for t in o
                    .tokens
                    .iter()
                    .filter(|x| !na.tokens.iter().any(|t| t.contract == x.contract))
                {
                    out.push(format!(
                        "{place}: token {} ({}) removed",
                        t.symbol,
                        t.contract.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    for o in old.assets.iter().filter(|o| {
        !new.assets
            .iter()
            .any(|n| n.chain == o.chain && n.network == o.network)
    }) {
        out.push(format!("assets for {}/{} removed", o.chain, o.network));
    }
    // Address books.
    for (name, book) in &new.address_books {
        match old.address_books.get(name) {
            None => out.push(format!(
                "address book '{name}' added ({} on {}): {}",
                count(book.addresses.len(), "address", "addresses"),
                book.chain,
                list(&book.addresses)
            )),
            Some(before) => {
                if before.chain != book.chain || before.network != book.network {
                    out.push(format!(
                        "address book '{name}': now for {}{}",
                        book.chain,
                        book.network
                            .as_deref()
                            .map(|n| format!("/{n}"))
                            .unwrap_or_default()
                    ));
                }
                for a in book.addresses.difference(&before.addresses) {
                    out.push(format!("address book '{name}': {a} added"));
                }
                for a in before.addresses.difference(&book.addresses) {
                    out.push(format!("address book '{name}': {a} removed"));
                }
            }
        }
    }
    for name in old
        .address_books
        .keys()
        .filter(|n| !new.address_books.contains_key(*n))
    {
        out.push(format!("address book '{name}' removed"));
    }
    // Rules.
    for (i, rule) in new.rules.iter().enumerate() {
        match old.rules.iter().position(|r| r.name == rule.name) {
            None => out.push(format!(
                "rule '{}' added at position {} ({})",
                rule.name,
                i + 1,
                rule.effect.as_str()
            )),
            Some(j) => {
                rule_changes(&old.rules[j], rule, &mut out);
            }
        }
    }
    for rule in old
        .rules
        .iter()
        .filter(|r| !new.rules.iter().any(|n| n.name == r.name))
    {
        out.push(format!(
            "rule '{}' removed ({})",
            rule.name,
            rule.effect.as_str()
        ));
    }
    let old_order: Vec<&str> = old
        .rules
        .iter()
        .filter(|r| new.rules.iter().any(|n| n.name == r.name))
        .map(|r| r.name.as_str())
        .collect();
    let new_order: Vec<&str> = new
        .rules
        .iter()
        .filter(|r| old.rules.iter().any(|o| o.name == r.name))
        .map(|r| r.name.as_str())
        .collect();
    if old_order != new_order {
        out.push(format!(
            "rule order changed (the first matching allow rule decides): now {}",
            new_order
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// Enrolled approver keys, by principal, and the unsigned-votes switch.
fn approver_key_changes(old: &Policy, new: &Policy, out: &mut Vec<String>) {
    let empty = BTreeSet::new();
    let principals: BTreeSet<&String> = old
        .approver_keys
        .keys()
        .chain(new.approver_keys.keys())
        .collect();
    for p in principals {
        let before = old.approver_keys.get(p).unwrap_or(&empty);
        let after = new.approver_keys.get(p).unwrap_or(&empty);
        for k in after.difference(before) {
            out.push(format!("approver key of {p}: {k} enrolled"));
        }
        for k in before.difference(after) {
            out.push(format!(
                "approver key of {p}: {k} removed (its votes on pending requests no longer count)"
            ));
        }
    }
    if old.allow_unsigned_votes != new.allow_unsigned_votes {
        out.push(if new.allow_unsigned_votes {
            "unsigned votes now allowed for approvers without an enrolled key (development only)"
                .to_owned()
        } else {
            "unsigned votes no longer allowed: every vote must be signed by an enrolled key"
                .to_owned()
        });
    }
}

fn rule_changes(o: &Rule, n: &Rule, out: &mut Vec<String>) {
    let r = &n.name;
    if o.effect != n.effect {
        out.push(format!(
            "rule '{r}': effect changed from {} to {}",
            o.effect.as_str(),
            n.effect.as_str()
        ));
    }
    if o.description != n.description {
        out.push(format!("rule '{r}': description changed"));
    }
    set_change(r, "roles", &o.roles, &n.roles, out);
    set_change(r, "wallets", &o.wallets, &n.wallets, out);
    set_change(
        r,
        "chains",
        &o.chains
            .as_ref()
            .map(|s| s.iter().map(|c| c.as_str().to_owned()).collect()),
        &n.chains
            .as_ref()
            .map(|s| s.iter().map(|c| c.as_str().to_owned()).collect()),
        out,
    );
    set_change(
        r,
        "networks",
        &o.networks
            .as_ref()
            .map(|s| s.iter().map(|(c, n)| format!("{c}/{n}")).collect()),
        &n.networks
            .as_ref()
            .map(|s| s.iter().map(|(c, n)| format!("{c}/{n}")).collect()),
        out,
    );
    set_change(r, "assets", &o.assets, &n.assets, out);
    set_change(
        r,
        "kinds",
        &o.kinds
            .as_ref()
            .map(|s| s.iter().map(|k| k.as_str().to_owned()).collect()),
        &n.kinds
            .as_ref()
            .map(|s| s.iter().map(|k| k.as_str().to_owned()).collect()),
        out,
    );
    set_change(
        r,
        "destinations (every destination in)",
        &o.destinations.all_in,
        &n.destinations.all_in,
        out,
    );
    set_change(
        r,
        "any_destination_in",
        &o.destinations.any_in,
        &n.destinations.any_in,
        out,
    );
    set_change(
        r,
        "any_destination_not_in",
        &o.destinations.any_not_in,
        &n.destinations.any_not_in,
        out,
    );
    money_change(r, "min_amount", &o.min_amount, &n.min_amount, "none", out);
    money_change(
        r,
        "max_amount",
        &o.max_amount,
        &n.max_amount,
        "unlimited",
        out,
    );
    money_change(
        r,
        "per-transaction limit",
        &o.limits.per_tx,
        &n.limits.per_tx,
        "unlimited",
        out,
    );
    money_change(r, "fee cap", &o.limits.fee, &n.limits.fee, "none", out);
    if o.limits.fee_rate_sat_per_kvb != n.limits.fee_rate_sat_per_kvb {
        let f = |v: Option<u64>| v.map_or("none".to_owned(), format_fee_rate);
        out.push(format!(
            "rule '{r}': fee rate cap {} from {} to {}",
            verb_u(o.limits.fee_rate_sat_per_kvb, n.limits.fee_rate_sat_per_kvb),
            f(o.limits.fee_rate_sat_per_kvb),
            f(n.limits.fee_rate_sat_per_kvb)
        ));
    }
    window_changes(r, &o.limits.windows, &n.limits.windows, out);
    if o.schedule != n.schedule {
        let f = |s: &Option<super::model::Schedule>| {
            s.as_ref().map_or("always".to_owned(), describe_schedule)
        };
        out.push(format!(
            "rule '{r}': schedule changed from {} to {}",
            f(&o.schedule),
            f(&n.schedule)
        ));
    }
    if o.approval != n.approval {
        let f = |q: &Option<super::model::Quorum>| {
            q.as_ref().map_or("none".to_owned(), |q| {
                format!(
                    "{} of roles {} within {}",
                    q.count,
                    list(&q.roles),
                    format_duration(q.expires_secs)
                )
            })
        };
        out.push(format!(
            "rule '{r}': approval changed from {} to {}",
            f(&o.approval),
            f(&n.approval)
        ));
    }
    if o.allow_typed_data_without_chain_id != n.allow_typed_data_without_chain_id {
        out.push(format!(
            "rule '{r}': EIP-712 typed data without domain.chainId (valid on every chain) {}",
            if n.allow_typed_data_without_chain_id {
                "now ALLOWED (weaker)"
            } else {
                "no longer allowed (stricter)"
            }
        ));
    }
    if o.allow_replacement != n.allow_replacement {
        out.push(format!(
            "rule '{r}': nonce replacement {}",
            if n.allow_replacement {
                "now allowed"
            } else {
                "no longer allowed"
            }
        ));
    }
}

fn window_changes(r: &str, old: &[Window], new: &[Window], out: &mut Vec<String>) {
    let label = |w: &Window| {
        format!(
            "{} ({} scope)",
            format_duration(w.period_secs),
            w.scope.as_str()
        )
    };
    for w in new {
        match old
            .iter()
            .find(|o| o.period_secs == w.period_secs && o.scope == w.scope)
        {
            None => out.push(format!("rule '{r}': {} limit added: {}", label(w), caps(w))),
            Some(o) => {
                if o.sum != w.sum {
                    let f = |m: &Option<Money>| {
                        m.as_ref().map_or("no cap".to_owned(), |m| m.to_string())
                    };
                    let verb = match (&o.sum, &w.sum) {
                        (Some(a), Some(b)) if b.units > a.units => "raised",
                        (Some(_), Some(_)) => "lowered",
                        (None, Some(_)) => "set",
                        _ => "removed",
                    };
                    out.push(format!(
                        "rule '{r}': {} sum limit {verb} from {} to {}",
                        label(w),
                        f(&o.sum),
                        f(&w.sum)
                    ));
                }
                if o.count != w.count {
                    let f =
                        |c: Option<u64>| c.map_or("no cap".to_owned(), |c| format!("{c} requests"));
                    out.push(format!(
                        "rule '{r}': {} count limit {} from {} to {}",
                        label(w),
                        verb_u(o.count, w.count),
                        f(o.count),
                        f(w.count)
                    ));
                }
            }
        }
    }
    for o in old.iter().filter(|o| {
        !new.iter()
            .any(|w| w.period_secs == o.period_secs && w.scope == o.scope)
    }) {
        out.push(format!(
            "rule '{r}': {} limit removed (was {})",
            label(o),
            caps(o)
        ));
    }
}

fn caps(w: &Window) -> String {
    match (&w.sum, w.count) {
        (Some(s), Some(c)) => format!("sum {s}, count {c}"),
        (Some(s), None) => format!("sum {s}"),
        (None, Some(c)) => format!("count {c}"),
        (None, None) => "none".into(),
    }
}

fn verb_u(o: Option<u64>, n: Option<u64>) -> &'static str {
    match (o, n) {
        (Some(a), Some(b)) if b > a => "raised",
        (Some(_), Some(_)) => "lowered",
        (None, Some(_)) => "set",
        _ => "removed",
    }
}

fn money_change(
    r: &str,
    what: &str,
    o: &Option<Money>,
    n: &Option<Money>,
    none: &str,
    out: &mut Vec<String>,
) {
    if o == n {
        return;
    }
    let f = |m: &Option<Money>| m.as_ref().map_or(none.to_owned(), |m| m.to_string());
    let verb = match (o, n) {
        (Some(a), Some(b)) if b.units > a.units => "raised",
        (Some(_), Some(_)) => "lowered",
        (None, Some(_)) => "set",
        _ => "removed",
    };
    out.push(format!(
        "rule '{r}': {what} {verb} from {} to {}",
        f(o),
        f(n)
    ));
}

fn set_change<T: Ord + Display + Clone>(
    r: &str,
    what: &str,
    o: &Option<BTreeSet<T>>,
    n: &Option<BTreeSet<T>>,
    out: &mut Vec<String>,
) {
    if o == n {
        return;
    }
    match (o, n) {
        (None, Some(s)) => out.push(format!("rule '{r}': {what} now restricted to {}", list(s))),
        (Some(s), None) => out.push(format!(
            "rule '{r}': {what} no longer restricted (was {})",
            list(s)
        )),
        (Some(a), Some(b)) => {
            let added: BTreeSet<T> = b.difference(a).cloned().collect();
            let removed: BTreeSet<T> = a.difference(b).cloned().collect();
            if !added.is_empty() {
                out.push(format!(
                    "rule '{r}': {what} now also include {}",
                    list(&added)
                ));
            }
            if !removed.is_empty() {
                out.push(format!(
                    "rule '{r}': {what} no longer include {}",
                    list(&removed)
                ));
            }
        }
        (None, None) => {}
    }
}

fn list<T: Display>(items: &BTreeSet<T>) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
