//! The decoded intent as approvers read it — and sign it: one line per fact, amounts in units
//! with their symbol. These lines are a field of the vote statement ([`super::vote`]), so what
//! an approver's signature covers is exactly what the console and `custos approve` showed.
//!
//! The lines are a pure function of the [`Intent`] (format version 1, part of `custos/vote/v1`;
//! changing it is a new statement version). In order, each only when it applies:
//!
//! ```text
//! action: transfer                       the kind, as policy files write it
//! network: bitcoin/mainnet
//! asset: BTC                             tokens: "asset: USDC (contract 0xa0b8…, 6 decimals)"
//! amount: 3.5 BTC                        "amount: unlimited USDC" for an unlimited approval
//! to: bc1q… 3.5 BTC                      one per destination ("spender: …" for an approval)
//! change: bc1q… 0.1 BTC                  one per verified change output
//! foreign inputs: 0.2 BTC                inputs of other parties (multi-party transactions)
//! fee: 0.0000141 BTC                     the native coin (Ethereum: the maximum)
//! fee rate: 10.1 sat/vB
//! nonce: 7
//! contract: 0x…
//! selector: 0xa9059cbb
//! token owner: 0x…                       transferFrom: whose tokens move
//! deadline: 1767225600                   unix seconds
//! message domain: …, message chain id: …, verifying contract: …, primary type: …,
//! message: <the preview>
//! ```

use crate::amount::{format_decimal, Amount};
use crate::intent::{ActionKind, Intent};
use crate::network::Chain;

/// The intent's lines (see the module docs).
pub fn intent_lines(intent: &Intent) -> Vec<String> {
    let mut out = Vec::new();
    let unit = |amount: Amount| intent.asset.format(amount);
    out.push(format!("action: {}", intent.kind));
    out.push(format!("network: {}/{}", intent.chain, intent.network));
    match &intent.asset.contract {
        None => out.push(format!("asset: {}", intent.asset.symbol)),
        Some(contract) => out.push(format!(
            "asset: {} (contract {contract}, {} decimals)",
            intent.asset.symbol, intent.asset.decimals
        )),
    }
    if intent.is_unlimited() {
        out.push(format!("amount: unlimited {}", intent.asset.symbol));
    } else {
        out.push(format!("amount: {}", unit(intent.amount)));
    }
    let to = if intent.kind == ActionKind::TokenApproval {
        "spender"
    } else {
        "to"
    };
    for d in &intent.destinations {
        let amount = if intent.is_unlimited() {
            format!("unlimited {}", intent.asset.symbol)
        } else {
            unit(d.amount)
        };
        out.push(format!("{to}: {} {amount}", d.address));
    }
    let (native, native_decimals) = native_coin(intent);
    let in_native =
        |amount: Amount| format!("{} {native}", format_decimal(amount, native_decimals));
    for c in &intent.change {
        out.push(format!("change: {} {}", c.address, in_native(c.amount)));
    }
    if !intent.foreign_input_value.is_zero() {
        out.push(format!(
            "foreign inputs: {}",
            in_native(intent.foreign_input_value)
        ));
    }
    out.push(format!("fee: {}", in_native(intent.fee)));
    if let Some(rate) = intent.fee_rate_sat_per_kvb {
        out.push(format!(
            "fee rate: {} sat/vB",
            format_decimal(Amount::from(rate), 3)
        ));
    }
    if let Some(nonce) = intent.nonce {
        out.push(format!("nonce: {nonce}"));
    }
    if let Some(contract) = &intent.contract {
        out.push(format!("contract: {contract}"));
    }
    if let Some(selector) = &intent.selector {
        out.push(format!("selector: {selector}"));
    }
    if let Some(owner) = &intent.token_owner {
        out.push(format!("token owner: {owner}"));
    }
    if let Some(deadline) = intent.deadline {
        out.push(format!("deadline: {deadline}"));
    }
    if let Some(m) = &intent.message {
        if let Some(v) = &m.domain_name {
            out.push(format!("message domain: {v}"));
        }
        if let Some(v) = m.domain_chain_id {
            out.push(format!("message chain id: {v}"));
        }
        if let Some(v) = &m.verifying_contract {
            out.push(format!("verifying contract: {v}"));
        }
        if let Some(v) = &m.primary_type {
            out.push(format!("primary type: {v}"));
        }
        if let Some(v) = &m.preview {
            out.push(format!("message: {v}"));
        }
    }
    out
}

/// The chain's native coin (symbol, decimals), as fees are paid in it.
pub fn native_coin(intent: &Intent) -> (&str, u8) {
    match intent.chain {
        Chain::Bitcoin => ("BTC", 8),
        Chain::Ethereum if intent.asset.is_native() => (intent.asset.symbol.as_str(), 18),
        Chain::Ethereum => ("ETH", 18),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::{Asset, Destination};

    #[test]
    fn a_bitcoin_transfer_in_units() {
        let intent = Intent {
            destinations: vec![Destination {
                address: "bc1qpayee".into(),
                amount: Amount::from(350_000_000u64),
            }],
            amount: Amount::from(350_000_000u64),
            fee: Amount::from(1_410u64),
            fee_rate_sat_per_kvb: Some(10_100),
            change: vec![Destination {
                address: "bc1qchange".into(),
                amount: Amount::from(10_000_000u64),
            }],
            ..Intent::new(
                "btc-hot",
                Chain::Bitcoin,
                "mainnet",
                ActionKind::Transfer,
                Asset::native("BTC", 8),
            )
        };
        assert_eq!(
            intent_lines(&intent),
            [
                "action: transfer",
                "network: bitcoin/mainnet",
                "asset: BTC",
                "amount: 3.5 BTC",
                "to: bc1qpayee 3.5 BTC",
                "change: bc1qchange 0.1 BTC",
                "fee: 0.0000141 BTC",
                "fee rate: 10.1 sat/vB",
            ]
        );
    }

    #[test]
    fn an_unlimited_token_approval() {
        let usdc = Asset {
            symbol: "USDC".into(),
            decimals: 6,
            contract: Some("0xa0b8".into()),
        };
        let intent = Intent {
            destinations: vec![Destination {
                address: "0xspender".into(),
                amount: Amount::MAX,
            }],
            amount: Amount::MAX,
            fee: Amount::from(10u64).pow(Amount::from(15u8)),
            nonce: Some(3),
            contract: Some("0xa0b8".into()),
            ..Intent::new(
                "eth-mm",
                Chain::Ethereum,
                "mainnet",
                ActionKind::TokenApproval,
                usdc,
            )
        };
        let lines = intent_lines(&intent);
        assert_eq!(lines[2], "asset: USDC (contract 0xa0b8, 6 decimals)");
        assert_eq!(lines[3], "amount: unlimited USDC");
        assert_eq!(lines[4], "spender: 0xspender unlimited USDC");
        assert_eq!(lines[5], "fee: 0.001 ETH");
        assert_eq!(lines[6], "nonce: 3");
    }
}
