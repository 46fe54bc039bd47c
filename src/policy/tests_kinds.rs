//! Unit tests of the two request properties a rule must allow by name: blind messages (a personal
//! message of exactly 32 bytes) and EIP-712 typed data without `domain.chainId`. Both the indexed
//! evaluation and the rule-by-rule explanation are held to it.

use super::limits::EmptyLedger;
use super::*;
use crate::intent::{ActionKind, Asset, Intent, MessageInfo};
use crate::network::Chain;

const BASE: &str = r#"
[policy]
name = "kinds"
[roles]
signer = ["spiffe://a/payouts"]
[assets.ethereum.mainnet]
native = { symbol = "ETH", decimals = 18 }
"#;

fn policy(rules: &str) -> Policy {
    Policy::from_toml(&format!("{BASE}{rules}")).unwrap_or_else(|e| panic!("{e}"))
}

fn request(kind: ActionKind, without_chain_id: bool) -> PolicyRequest {
    PolicyRequest {
        principal: "spiffe://a/payouts".into(),
        at: 1_750_000_000,
        intent: Intent {
            message: Some(MessageInfo {
                primary_type: (kind != ActionKind::BlindMessage).then(|| "Order".into()),
                without_chain_id,
                ..MessageInfo::default()
            }),
            ..Intent::new(
                "eth",
                Chain::Ethereum,
                "mainnet",
                kind,
                Asset::native("ETH", 18),
            )
        },
    }
}

/// The decision (checked to be the same by index, by every rule, and by explain) and the trace.
fn decide(p: &Policy, req: &PolicyRequest) -> (Decision, Vec<String>) {
    let fast = p.evaluate(req, &EmptyLedger).unwrap();
    assert_eq!(fast, p.evaluate_every_rule(req, &EmptyLedger).unwrap());
    let explained = p.explain(req, &EmptyLedger).unwrap();
    assert_eq!(fast, explained.decision);
    let trace = explained
        .rules
        .iter()
        .map(|t| format!("{}: {} {}", t.rule, t.result, t.detail))
        .collect();
    (fast, trace)
}

#[test]
fn blind_messages_need_a_rule_that_names_them() {
    let blind = request(ActionKind::BlindMessage, false);
    // Rules allowing messages, or any kind, do not allow a hash signed blind.
    let p = policy(
        r#"
[[rules]]
name = "messages"
effect = "allow"
roles = ["signer"]
kinds = ["message"]
[[rules]]
name = "anything"
effect = "allow"
roles = ["signer"]
"#,
    );
    let (d, trace) = decide(&p, &blind);
    assert_eq!(d.outcome, Outcome::Deny, "{d:?}");
    assert_eq!(d.code, "deny.default");
    assert!(
        trace[0].contains("kind blind_message is not one of message"),
        "{trace:?}"
    );
    assert!(
        trace[1].contains("allowed only by a rule that names it"),
        "{trace:?}"
    );
    // An ordinary message is still allowed by the first rule.
    let (d, _) = decide(&p, &request(ActionKind::Message, false));
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (Outcome::Allow, Some("messages"))
    );

    // Named, it is allowed.
    let p = policy(
        r#"
[[rules]]
name = "blind"
effect = "allow"
roles = ["signer"]
kinds = ["blind_message"]
"#,
    );
    let (d, _) = decide(&p, &blind);
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (Outcome::Allow, Some("blind"))
    );

    // A deny rule without kinds still covers it.
    let p = policy(
        r#"
[[rules]]
name = "no signing at all"
effect = "deny"
wallets = ["eth"]
[[rules]]
name = "blind"
effect = "allow"
roles = ["signer"]
wallets = ["eth", "other"]
kinds = ["blind_message"]
"#,
    );
    let (d, _) = decide(&p, &blind);
    assert_eq!(d.rule.as_deref(), Some("no signing at all"));
}

#[test]
fn typed_data_without_a_chain_id_needs_the_rule_to_allow_it() {
    let rules = r#"
[[rules]]
name = "orders"
effect = "allow"
roles = ["signer"]
kinds = ["typed_message", "token_approval"]
"#;
    let p = policy(rules);
    for kind in [ActionKind::TypedMessage, ActionKind::TokenApproval] {
        let (d, _) = decide(&p, &request(kind, false));
        assert_eq!(d.outcome, Outcome::Allow, "{kind}: {d:?}");
        let (d, trace) = decide(&p, &request(kind, true));
        assert_eq!(d.outcome, Outcome::Deny, "{kind}: {d:?}");
        assert!(trace[0].contains("no domain.chainId"), "{trace:?}");
    }

    let allowing = rules.replace(
        "kinds = [\"typed_message\", \"token_approval\"]\n",
        "kinds = [\"typed_message\", \"token_approval\"]\nallow_typed_data_without_chain_id = true\n",
    );
    let p2 = policy(&allowing);
    let (d, _) = decide(&p2, &request(ActionKind::TypedMessage, true));
    assert_eq!(
        (d.outcome, d.rule.as_deref()),
        (Outcome::Allow, Some("orders"))
    );

    // The flag is part of the meaning: a new hash, and the diff says it weakens.
    assert_ne!(p.hash(), p2.hash());
    let changes = diff::diff(&p, &p2);
    assert!(
        changes.iter().any(|c| c.contains("rule 'orders'")
            && c.contains("without domain.chainId")
            && c.contains("ALLOWED")),
        "{changes:?}"
    );
    let back = diff::diff(&p2, &p);
    assert!(
        back.iter().any(|c| c.contains("no longer allowed")),
        "{back:?}"
    );

    // A deny rule cannot carry it.
    let error = Policy::from_toml(&format!(
        "{BASE}[[rules]]\nname = \"d\"\neffect = \"deny\"\nallow_typed_data_without_chain_id = true\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("deny rule 'd' cannot allow_typed_data_without_chain_id"),
        "{error}"
    );
}

#[test]
fn the_hash_of_a_policy_without_the_new_flag_is_unchanged() {
    // The flag is left out of the canonical JSON when false, so existing policies keep the hash
    // their audit records carry.
    let p = policy(
        r#"
[[rules]]
name = "orders"
effect = "allow"
roles = ["signer"]
"#,
    );
    assert!(!hash::canonical_json(&p).contains("allow_typed_data_without_chain_id"));
}
