//! Validation of the `[assets]` and `[address_books]` sections: chains and networks exist,
//! symbols are usable and keep one number of decimals everywhere, tokens have valid contract
//! addresses, address book entries are valid addresses of their chain (kept in canonical form).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use toml::Spanned;

use super::validate::{Symbols, Validator};
use crate::network::{Chain, Network};
use crate::policy::file;
use crate::policy::model::*;

impl Validator<'_> {
    pub(super) fn assets(
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

    pub(super) fn address_books(
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
