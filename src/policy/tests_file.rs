//! Test cases that live beside a policy (`X.tests.toml`, or the file `[policy] tests` names), run
//! by `custos policy test` in the policy repository's CI.
//!
//! ```toml
//! [[case]]
//! name = "small payout is allowed"
//! principal = "spiffe://exchange.example/payouts"
//! at = "2025-03-04T10:00:00Z"          # RFC 3339 or unix seconds
//! wallet = "btc-hot"
//! chain = "bitcoin"                     # network defaults to mainnet
//! kind = "transfer"                     # the default
//! amount = "0.5 BTC"                    # with its unit; the whole amount goes to the first `to`
//! to = ["bc1q…"]
//! fee = "0.0001 BTC"
//! fee_rate = "12 sat/vB"
//! history = [ { ago = "2h", amount = "9 BTC", rule = "hot payouts" } ]  # already signed
//! expect = "deny"                       # allow | deny | needs_approval
//! rule = "hot payouts"                  # the rule named by the decision ("" = none)
//! code = "limit.window_sum"             # optional
//! message_contains = "24h"              # optional
//!
//! [[sequence]]                          # steps share one ledger; allowed steps are reserved
//! name = "ten payouts then a refusal"
//! steps = [ { … same fields as a case … }, … ]
//! ```
//!
//! A case may give `intent = { … }` (the Intent in its JSON form, amounts as base-unit strings)
//! instead of the shorthand fields.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::amount_units::{parse_duration, parse_fee_rate, parse_units, split_amount, AmountText};
use super::eval::{parse_time, PolicyRequest};
use super::limits::{LedgerKey, ReservationPlan};
use super::model::{Policy, Scope};
use crate::amount::Amount;
use crate::intent::{ActionKind, Asset, Destination, Intent};
use crate::network::{Chain, Network};
use crate::state::State;
use crate::state::{ReserveOutcome, StateStore};

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Independent cases (each with an empty ledger plus its `history`).
    #[serde(default)]
    pub case: Vec<Case>,
    /// Sequences of steps sharing a ledger.
    #[serde(default)]
    pub sequence: Vec<Sequence>,
}

/// A sequence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// Name.
    pub name: String,
    /// Steps, in order.
    pub steps: Vec<Case>,
}

/// One request and its expected decision.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Name (steps may omit it).
    #[serde(default)]
    pub name: Option<String>,
    /// Requesting principal.
    pub principal: String,
    /// Time.
    pub at: toml::Value,
    /// Full intent (instead of the shorthand below).
    #[serde(default)]
    pub intent: Option<Intent>,
    /// Wallet.
    #[serde(default)]
    pub wallet: Option<String>,
    /// Chain.
    #[serde(default)]
    pub chain: Option<String>,
    /// Network (default mainnet).
    #[serde(default)]
    pub network: Option<String>,
    /// Kind (default transfer).
    #[serde(default)]
    pub kind: Option<String>,
    /// Amount with unit.
    #[serde(default)]
    pub amount: Option<String>,
    /// Destinations.
    #[serde(default)]
    pub to: Vec<String>,
    /// Fee with unit.
    #[serde(default)]
    pub fee: Option<String>,
    /// Fee rate ("12 sat/vB").
    #[serde(default)]
    pub fee_rate: Option<String>,
    /// Contract called.
    #[serde(default)]
    pub contract: Option<String>,
    /// Selector.
    #[serde(default)]
    pub selector: Option<String>,
    /// Already-signed requests.
    #[serde(default)]
    pub history: Vec<History>,
    /// Request id (sequences; default: step number) — repeat one to test a retry.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Expected outcome.
    pub expect: String,
    /// Expected rule ("" = none).
    #[serde(default)]
    pub rule: Option<String>,
    /// Expected code.
    #[serde(default)]
    pub code: Option<String>,
    /// Expected message fragment.
    #[serde(default)]
    pub message_contains: Option<String>,
}

/// A request already signed before the case.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// How long before the case's time.
    pub ago: String,
    /// Amount with unit.
    pub amount: String,
    /// The rule that allowed it (for rule-scoped windows).
    #[serde(default)]
    pub rule: Option<String>,
    /// Wallet (default: the case's).
    #[serde(default)]
    pub wallet: Option<String>,
    /// Principal (default: the case's).
    #[serde(default)]
    pub principal: Option<String>,
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// "sequence 'x' step 3" or the case name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// What was decided (and what was expected, on failure).
    pub detail: String,
}

fn asset_for(policy: &Policy, chain: Chain, network: &str, symbol: &str) -> Result<Asset, String> {
    let na = policy
        .assets
        .iter()
        .find(|a| a.chain == chain && a.network == network)
        .ok_or_else(|| format!("the policy has no [assets] for {chain}/{network}"))?;
    std::iter::once(&na.native)
        .chain(&na.tokens)
        .find(|a| a.symbol == symbol)
        .map(|a| Asset {
            symbol: a.symbol.clone(),
            decimals: a.decimals,
            contract: a.contract.clone(),
        })
        .ok_or_else(|| format!("{symbol} is not an asset of {chain}/{network} in the policy"))
}

fn money(
    policy: &Policy,
    chain: Chain,
    network: &str,
    text: &str,
) -> Result<(Asset, Amount), String> {
    match split_amount(text)? {
        AmountText::Unlimited => Err(
            "'unlimited' needs a unit here: write e.g. \"unlimited USDC\" as intent.amount".into(),
        ),
        AmountText::Value { number, symbol } => {
            let asset = asset_for(policy, chain, network, symbol)?;
            if number.eq_ignore_ascii_case("unlimited") {
                return Ok((asset, Amount::MAX));
            }
            let units = parse_units(number, symbol, asset.decimals)?;
            Ok((asset, units))
        }
    }
}

impl Case {
    /// The request this case describes.
    pub fn request(&self, policy: &Policy) -> Result<PolicyRequest, String> {
        let at = match &self.at {
            toml::Value::Integer(i) => *i,
            toml::Value::String(s) => parse_time(s)?,
            toml::Value::Datetime(d) => parse_time(&d.to_string())?,
            _ => return Err("at must be RFC 3339 time or unix seconds".into()),
        };
        let intent = match &self.intent {
            Some(i) => i.clone(),
            None => {
                let chain: Chain = self
                    .chain
                    .as_deref()
                    .ok_or("a case needs chain (or a full intent)")?
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                let network = Network::parse(chain, self.network.as_deref().unwrap_or("mainnet"))
                    .map_err(|e| e.to_string())?
                    .name();
                let kind = match &self.kind {
                    None => ActionKind::Transfer,
                    Some(k) => *ActionKind::ALL
                        .iter()
                        .find(|x| x.as_str() == k)
                        .ok_or_else(|| format!("unknown kind '{k}'"))?,
                };
                let (asset, amount) = match &self.amount {
                    Some(a) => money(policy, chain, &network, a)?,
                    None => {
                        let na = policy
                            .assets
                            .iter()
                            .find(|a| a.chain == chain && a.network == network)
                            .ok_or_else(|| {
                                format!("the policy has no [assets] for {chain}/{network}")
                            })?;
                        (
                            Asset::native(&na.native.symbol, na.native.decimals),
                            Amount::ZERO,
                        )
                    }
                };
                let fee = match &self.fee {
                    Some(f) => money(policy, chain, &network, f)?.1,
                    None => Amount::ZERO,
                };
                let destinations = self
                    .to
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Destination {
                        address: a.clone(),
                        amount: if i == 0 { amount } else { Amount::ZERO },
                    })
                    .collect();
                Intent {
                    contract: self.contract.clone().or_else(|| asset.contract.clone()),
                    destinations,
                    amount,
                    fee,
                    fee_rate_sat_per_kvb: self
                        .fee_rate
                        .as_deref()
                        .map(parse_fee_rate)
                        .transpose()?,
                    selector: self.selector.clone(),
                    ..Intent::new(
                        self.wallet
                            .clone()
                            .ok_or("a case needs wallet (or a full intent)")?,
                        chain,
                        network,
                        kind,
                        asset,
                    )
                }
            }
        };
        Ok(PolicyRequest {
            principal: self.principal.clone(),
            at,
            intent,
        })
    }
}

/// Records a case's history in the ledger.
fn load_history(
    policy: &Policy,
    store: &State,
    case: &Case,
    req: &PolicyRequest,
    tag: &str,
) -> Result<(), String> {
    for (i, h) in case.history.iter().enumerate() {
        let ago = parse_duration(&h.ago)?;
        let (asset, amount) = money(policy, req.intent.chain, &req.intent.network, &h.amount)?;
        let mut keys = Vec::new();
        let wallet = h
            .wallet
            .clone()
            .unwrap_or_else(|| req.intent.wallet.clone());
        let principal = h.principal.clone().unwrap_or_else(|| req.principal.clone());
        let mut scopes = vec![(Scope::Wallet, wallet), (Scope::Principal, principal)];
        if let Some(r) = &h.rule {
            scopes.push((Scope::Rule, r.clone()));
        }
        for (scope, name) in scopes {
            for a in [asset.symbol.as_str(), LedgerKey::ALL_ASSETS] {
                keys.push(LedgerKey {
                    scope,
                    name: name.clone(),
                    asset: a.to_owned(),
                });
            }
        }
        let plan = ReservationPlan {
            at: req.at - ago as i64,
            amount,
            keys,
            checks: Vec::new(),
        };
        store
            .reserve(&format!("history-{tag}-{i}"), &plan, None)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check(
    policy: &Policy,
    store: &State,
    case: &Case,
    name: String,
    tag: &str,
    reserve: bool,
) -> CaseResult {
    let run = || -> Result<CaseResult, String> {
        let req = case.request(policy)?;
        load_history(policy, store, case, &req, tag)?;
        let mut d = policy.evaluate(&req, store).map_err(|e| e.to_string())?;
        if reserve {
            if let Some(plan) = &d.reservation {
                let id = case
                    .request_id
                    .clone()
                    .unwrap_or_else(|| format!("step-{tag}"));
                if let ReserveOutcome::LimitExceeded {
                    rule,
                    code,
                    message,
                } = store.reserve(&id, plan, None).map_err(|e| e.to_string())?
                {
                    d.outcome = super::eval::Outcome::Deny;
                    d.rule = Some(rule);
                    d.code = code;
                    d.message = message;
                }
            }
        }
        let mut problems = Vec::new();
        if d.outcome.as_str() != case.expect {
            problems.push(format!(
                "expected {}, got {}",
                case.expect,
                d.outcome.as_str()
            ));
        }
        if let Some(r) = &case.rule {
            let got = d.rule.clone().unwrap_or_default();
            if *r != got {
                problems.push(format!("expected rule '{r}', got '{got}'"));
            }
        }
        if let Some(c) = &case.code {
            if c != d.code {
                problems.push(format!("expected code {c}, got {}", d.code));
            }
        }
        if let Some(m) = &case.message_contains {
            if !d.message.contains(m.as_str()) {
                problems.push(format!("expected the message to contain '{m}'"));
            }
        }
        let got = format!(
            "{} ({}{}): {}",
            d.outcome.as_str(),
            d.code,
            d.rule
                .as_deref()
                .map(|r| format!(", rule '{r}'"))
                .unwrap_or_default(),
            d.message
        );
        Ok(CaseResult {
            name: name.clone(),
            passed: problems.is_empty(),
            detail: if problems.is_empty() {
                got
            } else {
                format!("{}; decision was {got}", problems.join("; "))
            },
        })
    };
    run().unwrap_or_else(|e| CaseResult {
        name,
        passed: false,
        detail: format!("cannot run: {e}"),
    })
}

/// Runs every case and sequence of a test file against `policy`.
pub fn run_tests(policy: &Policy, tests: &TestFile) -> Result<Vec<CaseResult>, String> {
    let mut results = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, case) in tests.case.iter().enumerate() {
        let store = State::scratch().map_err(|e| e.to_string())?;
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case {}", i + 1));
        *names.entry(name.clone()).or_default() += 1;
        results.push(check(policy, &store, case, name, &i.to_string(), false));
    }
    for seq in &tests.sequence {
        let store = State::scratch().map_err(|e| e.to_string())?;
        for (i, step) in seq.steps.iter().enumerate() {
            let name = format!(
                "sequence '{}' step {}{}",
                seq.name,
                i + 1,
                step.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            results.push(check(
                policy,
                &store,
                step,
                name,
                &(i + 1).to_string(),
                true,
            ));
        }
    }
    Ok(results)
}
