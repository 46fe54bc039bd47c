//! Unit tests: invalid files give their precise error; precedence; hash; diff; quorum.

use super::limits::EmptyLedger;
use super::*;
use crate::amount::Amount;
use crate::intent::{ActionKind, Asset, Destination, Intent};
use crate::network::Chain;

const BASE: &str = r#"
[policy]
name = "t"
[roles]
signer = ["spiffe://a/payouts"]
approver = ["spiffe://a/alice", "spiffe://a/bob", "spiffe://a/officers/*"]
[approver_keys]
"spiffe://a/alice" = "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
"spiffe://a/bob" = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
[assets.bitcoin.mainnet]
native = { symbol = "BTC", decimals = 8 }
[assets.ethereum.mainnet]
native = { symbol = "ETH", decimals = 18 }
tokens = [{ symbol = "USDC", contract = "0xA0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", decimals = 6 }]
[address_books.cold]
chain = "bitcoin"
addresses = ["bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"]
"#;

const PAYEE: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

fn policy(rules: &str) -> Policy {
    Policy::from_toml(&format!("{BASE}{rules}")).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(rules: &str) -> String {
    Policy::from_toml(&format!("{BASE}{rules}"))
        .expect_err("must fail")
        .to_string()
}

fn btc(principal: &str, sats: u64, to: &str, at: i64) -> PolicyRequest {
    let amount = Amount::from(sats);
    PolicyRequest {
        principal: principal.into(),
        at,
        intent: Intent {
            destinations: vec![Destination {
                address: to.into(),
                amount,
            }],
            amount,
            fee: Amount::from(1000u64),
            fee_rate_sat_per_kvb: Some(10_000),
            ..Intent::new(
                "hot",
                Chain::Bitcoin,
                "mainnet",
                ActionKind::Transfer,
                Asset::native("BTC", 8),
            )
        },
    }
}

const ALLOW: &str = r#"
[[rules]]
name = "hot"
effect = "allow"
roles = ["signer"]
assets = ["BTC"]
[rules.limits]
per_tx = "1 BTC"
"#;

#[test]
fn invalid_files_give_precise_errors() {
    let cases: &[(&str, &str)] = &[
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\ncolour = \"red\"\n", "unknown field `colour`"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\nmax_amount = \"1 BTCC\"\n", "unknown unit 'BTCC'"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\nmax_amount = \"one BTC\"\n", "'one' is not a decimal amount"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\nmax_amount = \"0.000000001 BTC\"\n", "'0.000000001 BTC' has 9 decimal places, but BTC has only 8"),
        ("[[rules]]\nname = \"x\"\neffect = \"deny\"\n[[rules]]\nname = \"x\"\neffect = \"deny\"\nkinds = [\"message\"]\n", "duplicate rule name 'x' (first used at line"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signers\"]\n", "unknown role 'signers' (roles defined: approver, signer)"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\ndestinations = [\"warm\"]\n", "unknown address book 'warm'"),
        ("[[rules]]\nname = \"no btc\"\neffect = \"deny\"\nassets = [\"BTC\"]\n[[rules]]\nname = \"hot\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\nkinds = [\"transfer\"]\n", "rule 'hot' can never fire: deny rule 'no btc'"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\n[rules.limits]\nper_tx = \"1 BTC\"\n", "must say assets = [\"BTC\"]"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\n", "must name the roles"),
        ("[[rules]]\nname = \"x\"\neffect = \"require_approval\"\nroles = [\"signer\"]\n", "needs an approval"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nkinds = [\"swap\"]\n", "unknown kind 'swap'"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\n[rules.limits]\nwindows = [{ period = \"24 hours\", scope = \"wallet\", sum = \"1 BTC\" }]\n", "is not a duration"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\n[rules.limits]\nfee_rate = \"10 sat/vB\"\n", "fee_rate is a Bitcoin limit"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nschedule = { hours = \"25:00-26:00\" }\n", "is not an hour range"),
        ("[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\nmin_amount = \"2 BTC\"\nmax_amount = \"1 BTC\"\n", "can never match"),
    ];
    for (rules, want) in cases {
        let got = errors(rules);
        assert!(got.contains(want), "want '{want}' in:\n{got}");
        // Every error has a real position.
        assert!(!got.starts_with("0:0"), "{got}");
    }
}

#[test]
fn errors_point_at_line_and_column() {
    let text = format!("{BASE}[[rules]]\nname = \"x\"\neffect = \"allow\"\nroles = [\"nobody\"]\n");
    let e = Policy::from_toml(&text).unwrap_err();
    let line = text.lines().position(|l| l.contains("nobody")).unwrap() + 1;
    assert_eq!(e.errors[0].line, line);
    assert_eq!(e.errors[0].column, 10);
    let syntax = Policy::from_toml("[policy]\nname = \"x\"\nbogus = 1\n").unwrap_err();
    assert_eq!((syntax.errors[0].line, syntax.errors[0].column), (3, 1));
}

#[test]
fn deny_wins_and_default_denies() {
    let p = policy(&format!("{ALLOW}\n[[rules]]\nname = \"cold only via treasury\"\neffect = \"deny\"\nany_destination_in = [\"cold\"]\n"));
    let cold = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3";
    let d = p
        .evaluate(&btc("spiffe://a/payouts", 1000, cold, 0), &EmptyLedger)
        .unwrap();
    assert_eq!(
        (d.outcome.as_str(), d.code, d.rule.as_deref()),
        ("deny", "deny.rule", Some("cold only via treasury"))
    );
    let d = p
        .evaluate(&btc("spiffe://a/payouts", 1000, PAYEE, 0), &EmptyLedger)
        .unwrap();
    assert_eq!((d.code, d.rule.as_deref()), ("allow", Some("hot")));
    let d = p
        .evaluate(&btc("spiffe://b/other", 1000, PAYEE, 0), &EmptyLedger)
        .unwrap();
    assert_eq!((d.code, d.rule), ("deny.default", None));
}

#[test]
fn first_rule_whose_limits_hold_decides() {
    let p = policy(&format!("{ALLOW}\n[[rules]]\nname = \"big\"\neffect = \"require_approval\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\napproval = {{ quorum = 2, roles = [\"approver\"], expires = \"1h\" }}\n"));
    let d = p
        .evaluate(
            &btc("spiffe://a/payouts", 100_000_000, PAYEE, 0),
            &EmptyLedger,
        )
        .unwrap();
    assert_eq!((d.code, d.rule.as_deref()), ("allow", Some("hot")));
    let d = p
        .evaluate(
            &btc("spiffe://a/payouts", 100_000_001, PAYEE, 0),
            &EmptyLedger,
        )
        .unwrap();
    assert_eq!(
        (d.code, d.rule.as_deref()),
        ("approval.required", Some("big"))
    );
    let Outcome::NeedsApproval { quorum } = &d.outcome else {
        panic!()
    };
    let s = p.quorum_status(
        quorum,
        "spiffe://a/payouts",
        &[
            "spiffe://a/payouts".into(),
            "spiffe://a/alice".into(),
            "spiffe://a/alice".into(),
        ],
    );
    assert!(!s.met);
    assert_eq!(s.counted, vec!["spiffe://a/alice".to_owned()]);
    let s = p.quorum_status(
        quorum,
        "spiffe://a/payouts",
        &[
            "spiffe://a/alice".into(),
            "spiffe://a/officers/carol".into(),
        ],
    );
    assert!(s.met);
    // The refusal names the limit with its numbers when nothing else decides.
    let p = policy(ALLOW);
    let d = p
        .evaluate(
            &btc("spiffe://a/payouts", 150_000_000, PAYEE, 0),
            &EmptyLedger,
        )
        .unwrap();
    assert_eq!(d.code, "limit.per_tx");
    assert!(
        d.message
            .contains("amount 1.5 BTC is above the per-transaction limit 1 BTC"),
        "{}",
        d.message
    );
}

#[test]
fn schedules_are_utc_days_and_hours() {
    let p = policy("[[rules]]\nname = \"office\"\neffect = \"allow\"\nroles = [\"signer\"]\nschedule = { days = [\"mon\"], hours = \"22:00-02:00\" }\n");
    // 1970-01-05 was a Monday.
    let monday = 4 * 86_400;
    for (at, ok) in [
        (monday + 23 * 3600, true),
        (monday + 3600, true),
        (monday + 12 * 3600, false),
        (monday + 86_400 + 23 * 3600, false),
    ] {
        let d = p
            .evaluate(&btc("spiffe://a/payouts", 1, PAYEE, at), &EmptyLedger)
            .unwrap();
        assert_eq!(d.code == "allow", ok, "{at}: {}", d.message);
        if !ok {
            assert_eq!(d.code, "time_window");
        }
    }
}

#[test]
fn amounts_past_64_bits_and_decimals_mismatch() {
    let p = policy("[[rules]]\nname = \"usdc\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"USDC\"]\nmax_amount = \"100000000000000000 USDC\"\n");
    let mut r = btc(
        "spiffe://a/payouts",
        0,
        "0x1111111111111111111111111111111111111111",
        0,
    );
    r.intent.chain = Chain::Ethereum;
    r.intent.kind = ActionKind::TokenTransfer;
    r.intent.asset = Asset {
        symbol: "USDC".into(),
        decimals: 6,
        contract: Some("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".into()),
    };
    r.intent.amount = Amount::from(10u8).pow(Amount::from(23u8)); // 10^17 USDC: past u64
    assert_eq!(p.evaluate(&r, &EmptyLedger).unwrap().code, "allow");
    r.intent.amount += Amount::from(1u8);
    assert_eq!(p.evaluate(&r, &EmptyLedger).unwrap().code, "deny.default");
    r.intent.asset.decimals = 18;
    assert_eq!(
        p.evaluate(&r, &EmptyLedger).unwrap().code,
        "deny.asset_mismatch"
    );
    let reg = p.token_registry();
    assert_eq!(
        reg.lookup(1, "0xA0B86991C6218B36C1D19D4A2E9EB0CE3606EB48")
            .map(|t| t.decimals),
        Some(6)
    );
}

#[test]
fn hash_ignores_form_and_sees_meaning() {
    let a = policy(ALLOW);
    let reformatted = format!("# a comment\n{BASE}\n[[rules]]\nname    = \"hot\"\nroles = [\"signer\"]\neffect = \"allow\"\nassets = [\"BTC\"]\nlimits = {{ per_tx = \"1.000 BTC\" }}\n");
    let b = Policy::from_toml(&reformatted).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:") && a.hash().len() == 71);
    let c = policy(&ALLOW.replace("1 BTC", "1.00000001 BTC"));
    assert_ne!(a.hash(), c.hash());
    let changes = diff::diff(&a, &c);
    assert_eq!(
        changes,
        vec!["rule 'hot': per-transaction limit raised from 1 BTC to 1.00000001 BTC".to_owned()]
    );
    assert!(diff::diff(&a, &b).is_empty());
}

#[test]
fn diff_reads_as_sentences() {
    let w = |cap: &str| {
        format!("[[rules]]\nname = \"hot payouts\"\neffect = \"allow\"\nroles = [\"signer\"]\nassets = [\"BTC\"]\n[rules.limits]\nwindows = [{{ period = \"24h\", scope = \"wallet\", sum = \"{cap}\" }}]\n")
    };
    let changes = diff::diff(&policy(&w("10 BTC")), &policy(&w("25 BTC")));
    assert_eq!(
        changes,
        vec![
            "rule 'hot payouts': 24h (wallet scope) sum limit raised from 10 BTC to 25 BTC"
                .to_owned()
        ]
    );
}

#[test]
fn example_policy_is_valid_and_its_tests_pass() {
    let p = Policy::from_toml(include_str!("../../policies/exchange.toml")).unwrap();
    let tests: tests_file::TestFile =
        toml::from_str(include_str!("../../policies/exchange.tests.toml")).unwrap();
    let results = tests_file::run_tests(&p, &tests).unwrap();
    assert!(results.len() > 20);
    for r in results {
        assert!(r.passed, "{}: {}", r.name, r.detail);
    }
}

/// The indexed evaluation never decides differently from the straightforward one.
mod index_equivalence {
    use super::*;
    use crate::policy::limits::{LedgerKey, Usage, UsageView};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    const HEADER: &str = r#"
[policy]
name = "many"
# Evaluation only: nobody votes on this policy.
allow_unsigned_votes = true
[roles]
signer = ["spiffe://a/payouts", "spiffe://a/batch/*"]
ops = ["spiffe://a/ops", "spiffe://a/batch/special"]
approver = ["spiffe://a/alice", "spiffe://a/officers/*"]
[assets.bitcoin.mainnet]
native = { symbol = "BTC", decimals = 8 }
[assets.bitcoin.signet]
native = { symbol = "SBTC", decimals = 8 }
[assets.ethereum.mainnet]
native = { symbol = "ETH", decimals = 18 }
tokens = [{ symbol = "USDC", contract = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", decimals = 6 }]
[address_books.cold]
chain = "bitcoin"
network = "mainnet"
addresses = ["bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"]
[address_books.blocked]
chain = "bitcoin"
addresses = ["1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"]
[address_books.routers]
chain = "ethereum"
network = "mainnet"
addresses = ["0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD"]
"#;

    const ADDRS: [&str; 6] = [
        "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD",
        "0x1111111111111111111111111111111111111111",
    ];
    const PRINCIPALS: [&str; 6] = [
        "spiffe://a/payouts",
        "spiffe://a/batch/x",
        "spiffe://a/batch/special",
        "spiffe://a/ops",
        "spiffe://a/alice",
        "spiffe://a/nobody",
    ];
    const WALLETS: [&str; 4] = ["hot", "cold", "eth", "other"];

    /// A deterministic pseudo-random rule (`seed` picks every condition).
    fn rule(i: usize, mut seed: u64) -> String {
        let mut pick = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let effect = ["allow", "allow", "require_approval", "deny"][pick(4) as usize];
        let mut r = format!("[[rules]]\nname = \"r{i}\"\neffect = \"{effect}\"\n");
        if effect != "deny" || pick(2) == 0 {
            let roles = [
                r#"["signer"]"#,
                r#"["ops"]"#,
                r#"["signer", "ops"]"#,
                r#"["approver"]"#,
            ];
            r += &format!("roles = {}\n", roles[pick(4) as usize]);
        }
        if pick(2) == 0 {
            let w = [
                r#"["hot"]"#,
                r#"["cold"]"#,
                r#"["eth"]"#,
                r#"["hot", "eth"]"#,
            ];
            r += &format!("wallets = {}\n", w[pick(4) as usize]);
        }
        let chain = pick(3);
        let asset = match chain {
            0 => {
                r += "chains = [\"bitcoin\"]\n";
                if pick(2) == 0 {
                    r += ["networks = [\"mainnet\"]\n", "networks = [\"signet\"]\n"]
                        [pick(2) as usize];
                }
                Some("BTC")
            }
            1 => {
                r += "chains = [\"ethereum\"]\n";
                Some(["ETH", "USDC"][pick(2) as usize])
            }
            _ => None,
        };
        if pick(2) == 0 {
            let k = [
                r#"["transfer"]"#,
                r#"["token_transfer", "token_approval"]"#,
                r#"["contract_call", "message"]"#,
                r#"["transfer", "token_transfer"]"#,
                r#"["blind_message", "typed_message"]"#,
            ];
            r += &format!("kinds = {}\n", k[pick(5) as usize]);
        }
        if effect != "deny" && pick(3) == 0 {
            r += "allow_typed_data_without_chain_id = true\n";
        }
        let asset = asset.filter(|_| pick(3) != 0);
        if let Some(a) = asset {
            r += &format!("assets = [\"{a}\"]\n");
        }
        match pick(5) {
            0 => r += "destinations = [\"cold\", \"blocked\"]\n",
            1 => r += "any_destination_in = [\"blocked\"]\n",
            2 => r += "any_destination_not_in = [\"routers\", \"cold\"]\n",
            _ => {}
        }
        if let Some(a) = asset {
            if pick(3) == 0 {
                r += &format!("min_amount = \"1 {a}\"\n");
            }
            if pick(3) == 0 {
                r += &format!("max_amount = \"3 {a}\"\n");
            }
        }
        if pick(4) == 0 {
            r += "schedule = { days = [\"mon\", \"tue\", \"wed\"], hours = \"08:00-18:00\" }\n";
        }
        if effect == "require_approval" {
            r += "approval = { quorum = 2, roles = [\"approver\"], expires = \"4h\" }\n";
        }
        if effect != "deny" {
            if let Some(a) = asset {
                r += "[rules.limits]\n";
                if pick(2) == 0 {
                    r += &format!("per_tx = \"2 {a}\"\n");
                }
                let scope = ["wallet", "principal", "rule"][pick(3) as usize];
                r += &format!(
                    "windows = [{{ period = \"24h\", scope = \"{scope}\", sum = \"5 {a}\", count = 3 }}, {{ period = \"1h\", scope = \"wallet\", sum = \"4 {a}\" }}]\n"
                );
            }
        }
        r
    }

    /// A policy of many rules; candidates the validator refuses (e.g. shadowed by a deny) are
    /// left out.
    fn many_rules() -> Policy {
        let mut text = HEADER.to_owned();
        let mut kept = 0;
        for i in 0..400 {
            let candidate = format!("{text}{}", rule(i, i as u64 * 7 + 3));
            if Policy::from_toml(&candidate).is_ok() {
                text = candidate;
                kept += 1;
            }
        }
        assert!(kept > 100, "only {kept} rules are valid");
        Policy::from_toml(&text).unwrap()
    }

    /// Usage that depends on the key and the window, so limits hold for some and not others.
    struct Fake;
    impl UsageView for Fake {
        fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String> {
            let h = key
                .name
                .bytes()
                .chain(key.asset.bytes())
                .fold((to - from) as u64, |h, b| {
                    h.wrapping_mul(31).wrapping_add(u64::from(b))
                })
                .wrapping_add(key.scope as u64);
            Ok(Usage {
                sum: Amount::from((h % 6) * 100_000_000),
                count: h % 4,
            })
        }
    }

    fn intent() -> impl Strategy<Value = PolicyRequest> {
        (
            0..PRINCIPALS.len(),
            0..WALLETS.len(),
            0..7usize,
            0..8u8,
            proptest::collection::vec(0..ADDRS.len(), 0..3),
            0..500_000_000u64,
            0..(14 * 86_400i64),
            proptest::bool::ANY,
        )
            .prop_map(|(p, w, asset, kind, dests, amount, at, unbound)| {
                let (chain, network, asset) = match asset {
                    0 => (Chain::Bitcoin, "mainnet", Asset::native("BTC", 8)),
                    1 => (Chain::Bitcoin, "signet", Asset::native("SBTC", 8)),
                    2 => (Chain::Ethereum, "mainnet", Asset::native("ETH", 18)),
                    3 => (
                        Chain::Ethereum,
                        "mainnet",
                        Asset {
                            contract: Some("0xA0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".into()),
                            ..Asset::native("USDC", 6)
                        },
                    ),
                    4 => (Chain::Bitcoin, "testnet", Asset::native("TBTC", 8)),
                    5 => (Chain::Bitcoin, "mainnet", Asset::native("BTC", 6)),
                    _ => (Chain::Ethereum, "1", Asset::native("ETH", 18)),
                };
                let kind = [
                    ActionKind::Transfer,
                    ActionKind::TokenTransfer,
                    ActionKind::TokenApproval,
                    ActionKind::ContractCall,
                    ActionKind::ContractCreation,
                    ActionKind::Message,
                    ActionKind::TypedMessage,
                    ActionKind::BlindMessage,
                ][usize::from(kind)];
                // Typed data (a typed message or a permit) with or without domain.chainId.
                let message = matches!(kind, ActionKind::TypedMessage | ActionKind::TokenApproval)
                    .then(|| crate::intent::MessageInfo {
                        without_chain_id: unbound,
                        ..Default::default()
                    });
                let amount = Amount::from(amount);
                PolicyRequest {
                    principal: PRINCIPALS[p].into(),
                    at: 1_750_000_000 + at,
                    intent: Intent {
                        destinations: dests
                            .into_iter()
                            .map(|d| Destination {
                                address: ADDRS[d].into(),
                                amount,
                            })
                            .collect(),
                        amount,
                        fee: Amount::from(1000u64),
                        fee_rate_sat_per_kvb: Some(10_000),
                        message,
                        ..Intent::new(WALLETS[w], chain, network, kind, asset)
                    },
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn indexed_evaluation_decides_like_every_rule(req in intent()) {
            let p = POLICY.with(Clone::clone);
            let fast = p.evaluate(&req, &Fake).unwrap();
            let every = p.evaluate_every_rule(&req, &Fake).unwrap();
            prop_assert_eq!(&fast, &every);
            prop_assert_eq!(&fast, &p.explain(&req, &Fake).unwrap().decision);
        }
    }

    thread_local! {
        static POLICY: Policy = many_rules();
    }

    #[test]
    fn the_generated_policy_exercises_every_outcome() {
        let p = many_rules();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut codes = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let req = intent().new_tree(&mut runner).unwrap().current();
            let e = p.explain(&req, &Fake).unwrap();
            codes.insert(e.decision.code);
            codes.extend(e.rules.iter().map(|t| t.result));
        }
        for code in [
            "allow",
            "approval.required",
            "deny.rule",
            "deny.default",
            "deny.asset_mismatch",
            "limit",
            "time_window",
        ] {
            assert!(codes.contains(code), "{code} never decided: {codes:?}");
        }
    }
}

/// A principal ending in a multi-byte character once sliced the text at a byte that is not a
/// character boundary (a panic on the policy file, i.e. on a reload). Each is now an ordinary
/// principal, or an error naming it.
#[test]
fn principals_ending_in_multibyte_characters_do_not_panic() {
    for principal in [
        "é",
        "svc*é",
        "spiffe://a/caf\u{e9}",
        "x\u{1f600}",
        "*é",
        "é*",
    ] {
        let text = BASE.replace(
            "signer = [\"spiffe://a/payouts\"]",
            &format!("signer = [\"spiffe://a/payouts\", {principal:?}]"),
        );
        match Policy::from_toml(&format!("{text}{ALLOW}")) {
            Ok(p) => assert!(
                p.roles["signer"].contains(principal),
                "{principal}: {:?}",
                p.roles
            ),
            Err(e) => assert!(
                e.to_string().contains("'*' is only allowed at the end"),
                "{principal}: {e}"
            ),
        }
    }
    // '*' inside is refused; at the end it is a prefix.
    let text = BASE.replace("signer = [\"spiffe://a/payouts\"]", "signer = [\"svc*é\"]");
    assert!(Policy::from_toml(&format!("{text}{ALLOW}")).is_err());
}
