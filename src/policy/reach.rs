//! Reach: could a principal ever be allowed to act on a wallet, whatever it asks?
//!
//! The question the signing core asks before it reads a payload (`Sign`), and before it shows a
//! wallet (`ListWallets`, `GetAddress`). A rule **reaches** a principal on a wallet when
//!
//! - its effect is `allow` or `require_approval` (a deny rule never lets anything through);
//! - the principal holds one of its `roles` (exact members, or prefixes ending in `*`; a rule
//!   without roles — only deny rules may omit them — would apply to everyone);
//! - its `wallets` include the wallet's name, or it names none;
//! - its `chains` include the wallet's chain, and its `networks` the wallet's network, or it
//!   names none.
//!
//! Every other condition (kinds, assets, destinations, amounts, schedule, limits) depends on the
//! request, so it is left out: reach over-approximates, never under-approximates, what
//! [`Policy::evaluate`] can allow. A principal no rule reaches on a wallet is refused by every
//! evaluation, whatever the payload; refusing it before the payload is read changes no decision.
//! Deny rules are not considered either: the parser already refuses an allow rule that a deny
//! rule always overrides ("can never fire"), and a deny rule that only sometimes matches leaves
//! the principal reachable.

use std::collections::BTreeSet;

use crate::network::Chain;

use super::model::{Effect, Policy, Rule};

/// A wallet as the policy's rule scopes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletScope<'a> {
    /// The wallet's unique name.
    pub name: &'a str,
    /// Its chain.
    pub chain: Chain,
    /// Its canonical network name (`mainnet`, `sepolia`, ...).
    pub network: &'a str,
}

impl Policy {
    /// Whether some allow or require_approval rule reaches `principal` on `wallet` (see the
    /// module docs).
    pub fn could_allow(&self, principal: &str, wallet: &WalletScope<'_>) -> bool {
        self.rules_reaching(principal, wallet).next().is_some()
    }

    /// The allow and require_approval rules that reach `principal` on `wallet`, in file order.
    pub fn rules_reaching<'p>(
        &'p self,
        principal: &str,
        wallet: &WalletScope<'_>,
    ) -> impl Iterator<Item = &'p Rule> + 'p {
        let roles = self.roles_of(principal);
        let wallet = OwnedScope {
            name: wallet.name.to_owned(),
            chain: wallet.chain,
            network: wallet.network.to_owned(),
        };
        self.rules
            .iter()
            .filter(move |rule| reaches(rule, &roles, &wallet))
    }

    /// Whether some allow or require_approval rule reaches `principal` on a wallet called `name`
    /// on any chain and network: for a wallet name that names no wallet, so that "no such wallet"
    /// is only ever said to a principal that could have used a wallet of that name.
    pub fn could_allow_name(&self, principal: &str, name: &str) -> bool {
        let roles = self.roles_of(principal);
        self.rules.iter().any(|rule| {
            grants(rule)
                && holds_role(rule, &roles)
                && rule.wallets.as_ref().is_none_or(|ws| ws.contains(name))
        })
    }
}

struct OwnedScope {
    name: String,
    chain: Chain,
    network: String,
}

fn grants(rule: &Rule) -> bool {
    matches!(rule.effect, Effect::Allow | Effect::RequireApproval)
}

fn holds_role(rule: &Rule, roles: &BTreeSet<&str>) -> bool {
    rule.roles
        .as_ref()
        .is_none_or(|rs| rs.iter().any(|r| roles.contains(r.as_str())))
}

fn reaches(rule: &Rule, roles: &BTreeSet<&str>, wallet: &OwnedScope) -> bool {
    grants(rule)
        && holds_role(rule, roles)
        && rule
            .wallets
            .as_ref()
            .is_none_or(|ws| ws.contains(&wallet.name))
        && rule
            .chains
            .as_ref()
            .is_none_or(|cs| cs.contains(&wallet.chain))
        && rule.networks.as_ref().is_none_or(|ns| {
            ns.iter()
                .any(|(c, n)| *c == wallet.chain && *n == wallet.network)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[policy]
name = "reach"
# Who may vote is not what this module decides: no approver keys here.
allow_unsigned_votes = true

[roles]
payer = ["spiffe://t/payer"]
desk = ["spiffe://t/desk/*"]
treasury = ["spiffe://t/treasury"]
approver = ["spiffe://t/officer"]
admin = ["ops.t"]

[assets.bitcoin.mainnet]
native = { symbol = "BTC", decimals = 8 }

[assets.ethereum.mainnet]
native = { symbol = "ETH", decimals = 18 }

[[rules]]
name = "no contract deployment"
effect = "deny"
kinds = ["contract_creation"]

[[rules]]
name = "deny the payer on the cold wallet"
effect = "deny"
roles = ["payer"]
wallets = ["btc-cold"]

[[rules]]
name = "hot payouts"
effect = "allow"
roles = ["payer"]
wallets = ["btc-hot"]
kinds = ["transfer"]

[[rules]]
name = "desk on any ethereum mainnet wallet"
effect = "allow"
roles = ["desk"]
chains = ["ethereum"]
networks = ["mainnet"]

[[rules]]
name = "treasury moves"
effect = "require_approval"
roles = ["treasury"]
wallets = ["btc-cold", "eth-cold"]
approval = { quorum = 2, roles = ["approver"], expires = "4h" }
"#;

    fn policy() -> Policy {
        Policy::from_toml(POLICY).expect("the test policy is valid")
    }

    fn scope<'a>(name: &'a str, chain: Chain, network: &'a str) -> WalletScope<'a> {
        WalletScope {
            name,
            chain,
            network,
        }
    }

    const BTC_HOT: WalletScope<'static> = WalletScope {
        name: "btc-hot",
        chain: Chain::Bitcoin,
        network: "mainnet",
    };

    #[test]
    fn an_allow_rule_reaches_its_roles_on_its_wallets_only() {
        let p = policy();
        assert!(p.could_allow("spiffe://t/payer", &BTC_HOT));
        let names: Vec<&str> = p
            .rules_reaching("spiffe://t/payer", &BTC_HOT)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["hot payouts"]);
        // Another wallet, even of the same chain and network.
        assert!(!p.could_allow(
            "spiffe://t/payer",
            &scope("btc-other", Chain::Bitcoin, "mainnet")
        ));
    }

    #[test]
    fn deny_rules_reach_no_one() {
        let p = policy();
        // "deny the payer on the cold wallet" names the payer and btc-cold; the deny-everyone
        // rule names nobody's roles: neither lets anything through.
        assert!(!p.could_allow(
            "spiffe://t/payer",
            &scope("btc-cold", Chain::Bitcoin, "mainnet")
        ));
        assert!(!p.could_allow("spiffe://t/nobody", &BTC_HOT));
    }

    #[test]
    fn a_principal_without_roles_is_reached_by_nothing() {
        let p = policy();
        for wallet in [
            BTC_HOT,
            scope("btc-cold", Chain::Bitcoin, "mainnet"),
            scope("eth-cold", Chain::Ethereum, "mainnet"),
        ] {
            assert!(!p.could_allow("spiffe://t/intruder", &wallet), "{wallet:?}");
        }
        assert!(!p.could_allow_name("spiffe://t/intruder", "btc-hot"));
        // A name that only looks like a member does not hold the role.
        assert!(!p.could_allow("spiffe://t/payer2", &BTC_HOT));
        assert!(!p.could_allow("spiffe://t/des", &scope("x", Chain::Ethereum, "mainnet")));
    }

    #[test]
    fn require_approval_rules_reach_their_requesters_not_their_approvers() {
        let p = policy();
        let cold = scope("eth-cold", Chain::Ethereum, "mainnet");
        assert!(p.could_allow("spiffe://t/treasury", &cold));
        // Approvers vote; they do not request.
        assert!(!p.could_allow("spiffe://t/officer", &cold));
        // Admins administer; the policy gives them no signing rule here.
        assert!(!p.could_allow("ops.t", &cold));
    }

    #[test]
    fn a_rule_without_wallets_reaches_every_wallet_of_its_chain_and_network() {
        let p = policy();
        let desk = "spiffe://t/desk/fx";
        assert!(p.could_allow(desk, &scope("eth-any", Chain::Ethereum, "mainnet")));
        assert!(p.could_allow(desk, &scope("eth-cold", Chain::Ethereum, "mainnet")));
        // Not another network of the chain, not another chain with a network of that name.
        assert!(!p.could_allow(desk, &scope("eth-test", Chain::Ethereum, "sepolia")));
        assert!(!p.could_allow(desk, &BTC_HOT));
        // By name alone (a wallet that does not exist): any name.
        assert!(p.could_allow_name(desk, "no-such-wallet"));
        assert!(!p.could_allow_name("spiffe://t/payer", "no-such-wallet"));
        assert!(p.could_allow_name("spiffe://t/payer", "btc-hot"));
    }
}
