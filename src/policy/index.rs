//! The evaluation index: a policy precompiled for [`Policy::evaluate`].
//!
//! Built once per policy (lazily, on the first evaluation) from the validated model. Names are
//! interned to small integers so that matching a rule against a request is a handful of bit tests
//! with no allocation and no formatting:
//!
//! - roles: the principal's roles are one hash lookup (exact members) plus the prefix members;
//! - wallets: rules are indexed by wallet name, so only the rules of the request's wallet and the
//!   rules that name no wallet are candidates (kept in file order);
//! - chains, networks, kinds, assets: bit sets;
//! - address books: each canonical address maps to the set of books that list it.
//!
//! [`CompiledRule::matches`] is exactly `Policy::conditions(..).is_ok()` (the straightforward
//! path `explain` uses); the unit tests check that decisions never differ.

use std::collections::HashMap;

use crate::amount::Amount;
use crate::intent::ActionKind;
use crate::network::Chain;

use super::model::{Effect, Policy};

/// A fixed-size bit set (roles, books, assets, networks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    fn with_len(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64).max(1)])
    }

    fn set(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn intersects(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    /// Whether `self & mask & other` is not empty.
    fn intersects_masked(&self, mask: &Bits, other: &Bits) -> bool {
        self.0
            .iter()
            .zip(&mask.0)
            .zip(&other.0)
            .any(|((a, m), b)| a & m & b != 0)
    }
}

fn chain_bit(c: Chain) -> u8 {
    match c {
        Chain::Bitcoin => 1,
        Chain::Ethereum => 2,
    }
}

fn kind_bit(k: ActionKind) -> u8 {
    1 << (k as u8)
}

/// One rule's conditions, precompiled. `None`: the condition is absent (matches anything).
#[derive(Debug)]
pub(crate) struct CompiledRule {
    roles: Option<Bits>,
    chains: Option<u8>,
    networks: Option<Bits>,
    kinds: Option<u8>,
    assets: Option<Bits>,
    all_in: Option<Bits>,
    any_in: Option<Bits>,
    any_not_in: Option<Bits>,
    min_amount: Option<Amount>,
    max_amount: Option<Amount>,
    /// Matches EIP-712 data without `domain.chainId` (deny rules, and rules that allow it).
    typed_data_without_chain_id: bool,
}

/// The request, resolved against the index once.
pub(crate) struct Facts<'a> {
    pub roles: Bits,
    pub chain: Chain,
    pub network: Option<usize>,
    pub kind: ActionKind,
    /// The asset's symbol id, if the asset is listed in `[assets]` (and its symbol used by a rule).
    pub asset: Option<usize>,
    /// Books that apply to the request's chain and network.
    pub eligible_books: Bits,
    /// Per destination: the books listing it (before `eligible_books`).
    pub destinations: Vec<Option<&'a Bits>>,
    pub amount: Amount,
    /// EIP-712 data without `domain.chainId`.
    pub typed_data_without_chain_id: bool,
}

/// The whole policy, precompiled.
#[derive(Debug)]
pub(crate) struct Index {
    role_count: usize,
    exact_members: HashMap<String, Bits>,
    prefix_members: Vec<(String, usize)>,
    /// Per chain (`chain_bit - 1`): canonical network name -> id.
    networks: [HashMap<String, usize>; 2],
    symbols: HashMap<String, usize>,
    books: Vec<(Chain, Option<String>)>,
    addresses: HashMap<String, Bits>,
    pub(crate) rules: Vec<CompiledRule>,
    by_wallet: HashMap<String, Vec<u32>>,
    any_wallet: Vec<u32>,
}

fn intern(map: &mut HashMap<String, usize>, name: &str) -> usize {
    let n = map.len();
    *map.entry(name.to_owned()).or_insert(n)
}

impl Index {
    pub(crate) fn build(policy: &Policy) -> Index {
        let role_ids: HashMap<&str, usize> = policy
            .roles
            .keys()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let role_count = role_ids.len();
        let mut exact_members: HashMap<String, Bits> = HashMap::new();
        let mut prefix_members = Vec::new();
        for (i, members) in policy.roles.values().enumerate() {
            for m in members {
                match m.strip_suffix('*') {
                    Some(prefix) => prefix_members.push((prefix.to_owned(), i)),
                    None => exact_members
                        .entry(m.clone())
                        .or_insert_with(|| Bits::with_len(role_count))
                        .set(i),
                }
            }
        }
        let book_ids: HashMap<&str, usize> = policy
            .address_books
            .keys()
            .enumerate()
            .map(|(i, b)| (b.as_str(), i))
            .collect();
        let book_count = book_ids.len();
        let mut addresses: HashMap<String, Bits> = HashMap::new();
        let mut books = Vec::with_capacity(book_count);
        for (i, book) in policy.address_books.values().enumerate() {
            books.push((book.chain, book.network.clone()));
            for a in &book.addresses {
                addresses
                    .entry(a.clone())
                    .or_insert_with(|| Bits::with_len(book_count))
                    .set(i);
            }
        }
        let book_bits = |names: &Option<std::collections::BTreeSet<String>>| {
            names.as_ref().map(|names| {
                let mut b = Bits::with_len(book_count);
                // An unknown book lists nothing.
                for i in names.iter().filter_map(|n| book_ids.get(n.as_str())) {
                    b.set(*i);
                }
                b
            })
        };
        let mut networks: [HashMap<String, usize>; 2] = Default::default();
        let mut network_count = 0;
        let mut symbols: HashMap<String, usize> = HashMap::new();
        let mut rules = Vec::with_capacity(policy.rules.len());
        let mut by_wallet: HashMap<String, Vec<u32>> = HashMap::new();
        let mut any_wallet = Vec::new();
        for (i, r) in policy.rules.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 rules");
            match &r.wallets {
                None => any_wallet.push(i),
                Some(ws) => {
                    for w in ws {
                        by_wallet.entry(w.clone()).or_default().push(i);
                    }
                }
            }
            let roles = r.roles.as_ref().map(|names| {
                let mut b = Bits::with_len(role_count);
                for id in names.iter().filter_map(|n| role_ids.get(n.as_str())) {
                    b.set(*id);
                }
                b
            });
            let nets = r.networks.as_ref().map(|set| {
                let mut b = Bits::default();
                for (chain, name) in set {
                    let map = &mut networks[usize::from(chain_bit(*chain) - 1)];
                    let id = *map.entry(name.clone()).or_insert(network_count);
                    if id == network_count {
                        network_count += 1;
                    }
                    b.set(id);
                }
                b
            });
            let assets = r.assets.as_ref().map(|set| {
                let mut b = Bits::default();
                for s in set {
                    b.set(intern(&mut symbols, s));
                }
                b
            });
            let d = &r.destinations;
            rules.push(CompiledRule {
                roles,
                chains: r
                    .chains
                    .as_ref()
                    .map(|c| c.iter().fold(0, |m, c| m | chain_bit(*c))),
                networks: nets,
                // A kind that must be named (blind messages) is outside an allow rule without
                // `kinds`; deny rules without `kinds` match every kind.
                kinds: match (&r.kinds, r.effect) {
                    (Some(k), _) => Some(k.iter().fold(0, |m, k| m | kind_bit(*k))),
                    (None, Effect::Deny) => None,
                    (None, _) => Some(
                        ActionKind::ALL
                            .iter()
                            .filter(|k| !k.needs_naming())
                            .fold(0, |m, k| m | kind_bit(*k)),
                    ),
                },
                assets,
                all_in: book_bits(&d.all_in),
                any_in: book_bits(&d.any_in),
                any_not_in: book_bits(&d.any_not_in),
                min_amount: r.min_amount.as_ref().map(|m| m.units),
                max_amount: r.max_amount.as_ref().map(|m| m.units),
                typed_data_without_chain_id: r.effect == Effect::Deny
                    || r.allow_typed_data_without_chain_id,
            });
        }
        Index {
            role_count,
            exact_members,
            prefix_members,
            networks,
            symbols,
            books,
            addresses,
            rules,
            by_wallet,
            any_wallet,
        }
    }

    /// The bit set of roles `principal` holds.
    pub(crate) fn roles_of(&self, principal: &str) -> Bits {
        let mut bits = self
            .exact_members
            .get(principal)
            .cloned()
            .unwrap_or_else(|| Bits::with_len(self.role_count));
        for (prefix, role) in &self.prefix_members {
            if principal.starts_with(prefix.as_str()) {
                bits.set(*role);
            }
        }
        bits
    }

    /// Resolves the request once (`network` canonical, `symbol` the listed asset's symbol if it is
    /// listed, `destinations` canonical).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn facts<'a>(
        &'a self,
        principal: &str,
        chain: Chain,
        network: &str,
        kind: ActionKind,
        symbol: Option<&str>,
        destinations: &[String],
        amount: Amount,
        typed_data_without_chain_id: bool,
    ) -> Facts<'a> {
        let mut eligible_books = Bits::with_len(self.books.len());
        for (i, (c, n)) in self.books.iter().enumerate() {
            if *c == chain && n.as_deref().is_none_or(|n| n == network) {
                eligible_books.set(i);
            }
        }
        Facts {
            roles: self.roles_of(principal),
            chain,
            network: self.networks[usize::from(chain_bit(chain) - 1)]
                .get(network)
                .copied(),
            kind,
            asset: symbol.and_then(|s| self.symbols.get(s).copied()),
            eligible_books,
            destinations: destinations
                .iter()
                .map(|a| self.addresses.get(a.as_str()))
                .collect(),
            amount,
            typed_data_without_chain_id,
        }
    }

    /// The rules that can match a request for `wallet`, in file order.
    pub(crate) fn candidates<'a>(&'a self, wallet: &str) -> impl Iterator<Item = usize> + 'a {
        let named: &[u32] = self.by_wallet.get(wallet).map_or(&[], Vec::as_slice);
        Merge {
            a: named,
            b: &self.any_wallet,
        }
    }
}

/// The sorted union of two sorted, disjoint index lists.
struct Merge<'a> {
    a: &'a [u32],
    b: &'a [u32],
}

impl Iterator for Merge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => x < y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let side = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = side.split_first()?;
        *side = rest;
        Some(*first as usize)
    }
}

impl CompiledRule {
    /// Whether every condition holds (the wallet condition is the index's: see
    /// [`Index::candidates`]).
    pub(crate) fn matches(&self, f: &Facts<'_>) -> bool {
        if let Some(r) = &self.roles {
            if !r.intersects(&f.roles) {
                return false;
            }
        }
        if let Some(c) = self.chains {
            if c & chain_bit(f.chain) == 0 {
                return false;
            }
        }
        if let Some(n) = &self.networks {
            if !f.network.is_some_and(|id| n.get(id)) {
                return false;
            }
        }
        if let Some(k) = self.kinds {
            if k & kind_bit(f.kind) == 0 {
                return false;
            }
        }
        if f.typed_data_without_chain_id && !self.typed_data_without_chain_id {
            return false;
        }
        if let Some(a) = &self.assets {
            if !f.asset.is_some_and(|id| a.get(id)) {
                return false;
            }
        }
        let listed = |d: &Option<&Bits>, books: &Bits| {
            d.is_some_and(|d| d.intersects_masked(&f.eligible_books, books))
        };
        if let Some(books) = &self.all_in {
            if f.destinations.is_empty() || !f.destinations.iter().all(|d| listed(d, books)) {
                return false;
            }
        }
        if let Some(books) = &self.any_in {
            if !f.destinations.iter().any(|d| listed(d, books)) {
                return false;
            }
        }
        if let Some(books) = &self.any_not_in {
            if f.destinations.iter().all(|d| listed(d, books)) {
                return false;
            }
        }
        if let Some(min) = self.min_amount {
            if f.amount < min {
                return false;
            }
        }
        if let Some(max) = self.max_amount {
            if f.amount > max {
                return false;
            }
        }
        true
    }
}
