//! The explain trace: every rule, in file order, with why it matched or not.
//!
//! [`Policy::explain`] (`custos policy explain`, the policy test runner) and
//! [`Policy::evaluate_every_rule`] (the reference the indexed [`Policy::evaluate`] is tested
//! against) run the straightforward evaluation here: no index, every rule examined with the same
//! checks (`rule_checks`), and, when explaining, one [`RuleTrace`] per rule. The decision it
//! reaches is the one the indexed path reaches.

use serde::Serialize;

use super::{allowed_by, denied_by, deny, finish, schedule, Decision, EvalError, PolicyRequest};
use crate::policy::limits::UsageView;
use crate::policy::model::{Effect, Policy, Rule};

/// How one rule fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    /// Rule name.
    pub rule: String,
    /// Its effect.
    pub effect: Effect,
    /// `decided`, `matched` (a deny that lost to an earlier deny), `not_matched`, `limit`,
    /// `time_window` or `not_reached`.
    pub result: &'static str,
    /// Why, in words.
    pub detail: String,
}

/// A decision and the trace of every rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// Every rule, in file order.
    pub rules: Vec<RuleTrace>,
}

impl Policy {
    /// The straightforward evaluation: every rule, in file order, with the same code `explain`
    /// runs (the reference the indexed [`Policy::evaluate`] is tested against).
    pub fn evaluate_every_rule(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
    ) -> Result<Decision, EvalError> {
        self.run(req, view, None)
    }

    /// Decides one request and explains every rule.
    pub fn explain(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
    ) -> Result<Explanation, EvalError> {
        let mut trace = Vec::new();
        let decision = self.run(req, view, Some(&mut trace))?;
        Ok(Explanation {
            decision,
            rules: trace,
        })
    }

    fn run(
        &self,
        req: &PolicyRequest,
        view: &dyn UsageView,
        mut trace: Option<&mut Vec<RuleTrace>>,
    ) -> Result<Decision, EvalError> {
        let mut ctx = match self.context(req) {
            Ok(c) => c,
            Err(d) => {
                if let Some(t) = trace.as_deref_mut() {
                    for r in &self.rules {
                        t.push(rt(
                            r,
                            "not_reached",
                            "the asset does not match the policy".into(),
                        ));
                    }
                }
                return Ok(*d);
            }
        };
        ctx.roles = self.roles_of(&req.principal);
        let explaining = trace.is_some();
        let mut slots: Vec<Option<RuleTrace>> =
            vec![None; if explaining { self.rules.len() } else { 0 }];

        // 1. A matching deny rule wins over any allow.
        let mut denied: Option<Decision> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect != Effect::Deny {
                continue;
            }
            let m = self
                .conditions(rule, &ctx)
                .and_then(|_| schedule(rule, req.at));
            match m {
                Ok(()) if denied.is_none() => {
                    denied = Some(denied_by(rule));
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "decided",
                            "every condition matches; a deny wins".into(),
                        ));
                    } else {
                        break;
                    }
                }
                Ok(()) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "matched",
                            "matches too, but an earlier deny rule decided".into(),
                        ));
                    }
                }
                Err((code, why)) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            if code == "time_window" {
                                "time_window"
                            } else {
                                "not_matched"
                            },
                            why,
                        ));
                    }
                }
            }
        }

        // 2. Otherwise the first allow / require_approval rule that matches and whose limits hold.
        let mut decision = denied;
        let mut near_miss: Option<Decision> = None;
        let mut also: Vec<String> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect == Effect::Deny {
                continue;
            }
            if decision.is_some() {
                if !explaining {
                    break;
                }
                slots[i] = Some(rt(
                    rule,
                    "not_reached",
                    "the decision was already made".into(),
                ));
                continue;
            }
            let outcome = self
                .conditions(rule, &ctx)
                .map_err(|(c, w)| (c, w, false))
                .and_then(|_| schedule(rule, req.at).map_err(|(c, w)| (c, w, true)))
                .and_then(|_| self.limits(rule, &ctx, view).map_err(|(c, w)| (c, w, true)));
            match outcome {
                Ok(plan) => {
                    if explaining {
                        slots[i] = Some(rt(
                            rule,
                            "decided",
                            "every condition matches and every limit holds".into(),
                        ));
                    }
                    decision = Some(allowed_by(rule, plan));
                }
                Err((code, why, near)) => {
                    if near && near_miss.is_none() {
                        near_miss = Some(deny(
                            Some(&rule.name),
                            code,
                            format!("rule '{}': {why}", rule.name),
                        ));
                    } else if near {
                        also.push(format!("rule '{}': {why}", rule.name));
                    }
                    if explaining {
                        let result = match code {
                            "time_window" => "time_window",
                            c if c.starts_with("limit.") => "limit",
                            _ => "not_matched",
                        };
                        slots[i] = Some(rt(rule, result, why));
                    }
                }
            }
        }
        if let Some(t) = trace {
            t.extend(slots.into_iter().flatten());
        }
        Ok(finish(req, decision, near_miss, also))
    }
}

fn rt(rule: &Rule, result: &'static str, detail: String) -> RuleTrace {
    RuleTrace {
        rule: rule.name.clone(),
        effect: rule.effect,
        result,
        detail,
    }
}

impl Explanation {
    /// Text for `custos policy explain`.
    pub fn render(&self) -> String {
        let d = &self.decision;
        let mut out = format!(
            "decision: {} (code {}{})\n  {}\n",
            d.outcome.as_str(),
            d.code,
            d.rule
                .as_deref()
                .map(|r| format!(", rule '{r}'"))
                .unwrap_or_default(),
            d.message
        );
        out.push_str("rules, in file order (deny rules are checked first and win):\n");
        for t in &self.rules {
            out.push_str(&format!(
                "  [{}] {} '{}': {}\n",
                t.result,
                t.effect.as_str(),
                t.rule,
                t.detail
            ));
        }
        out
    }
}
