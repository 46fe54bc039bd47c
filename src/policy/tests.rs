//! Unit tests: invalid files give their precise error; precedence; hash; diff; quorum.

use super::limits::EmptyLedger;
use super::*;
use crate::amount::Amount;
use crate::intent::{ActionKind, Asset, Destination, Intent};
use crate::keys::Chain;

const BASE: &str = r#"
[policy]
name = "t"
[roles]
signer = ["spiffe://a/payouts"]
approver = ["spiffe://a/alice", "spiffe://a/bob", "spiffe://a/officers/*"]
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
