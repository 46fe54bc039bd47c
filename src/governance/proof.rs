//! The proof file of one request (`custos request proof`), and its offline check (`custos
//! request verify`).
//!
//! A proof is JSON ([`Proof`], format `custos-proof/v1`): the request as the server recorded it
//! (id, requester, wallet, state, decision, quorum, result), the canonical payload and its
//! SHA-256, the decoded intent and its lines as approvers saw them, the installation's custody id,
//! and every vote with its public key, statement and signature (hex). Anyone can re-check it
//! without the server:
//!
//! 1. the payload hashes to `payload_sha256` (the canonical form of `signing::decode`);
//! 2. the intent lines are those of the intent ([`super::intent_text`]);
//! 3. each vote's statement is rebuilt from the proof's own fields ([`super::vote`]), equals the
//!    recorded statement, and its signature verifies under the vote's key;
//! 4. with the policy the verifier trusts (`--policy`): each key is enrolled for its approver,
//!    the approver holds one of the quorum's roles and is not the requester, and a signed
//!    request had at least the quorum of such votes — the quorum of the trusted policy's
//!    deciding rule (never less than the recorded one). A proof whose deciding rule the trusted
//!    policy lacks is a problem, not a pass: the recorded quorum is only the server's word.
//!
//! Without a policy only 1–3 can be checked: the proof then shows who signed with which key, not
//! that those keys were the approvers'. `tests/governance/verify_proof.py` does 3 with an
//! independent implementation (Python's `cryptography`).

use serde::{Deserialize, Serialize};

use super::intent_text::intent_lines;
use super::keys::PublicKey;
use super::vote::{VoteContext, VoteDecision, VoteStatement};
use crate::intent::Intent;
use crate::policy::model::Effect;
use crate::policy::Policy;
use crate::signing::contract::SignPayload;
use crate::state::requests::StoredPayload;

/// The format tag of a proof file.
pub const PROOF_FORMAT: &str = "custos-proof/v1";

/// The decision that put the request up for approval (or decided it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofDecision {
    /// `allow`, `deny`, `needs_approval`.
    pub outcome: String,
    /// The deciding rule.
    pub rule: String,
    /// Its stable code.
    pub code: String,
    /// The deciding policy's hash.
    pub policy_hash: String,
}

/// The quorum the request waited for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuorum {
    /// Approvals needed.
    pub count: u32,
    /// Roles whose holders count.
    pub roles: Vec<String>,
    /// Expiry, unix seconds.
    pub expires_at: i64,
}

/// One vote in a proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofVote {
    /// The voter's principal.
    pub approver: String,
    /// Approve or reject.
    pub decision: VoteDecision,
    /// The voter's words.
    pub reason: String,
    /// The statement's time, unix seconds.
    pub at: i64,
    /// The voter's public key (absent for an unsigned vote).
    pub key: Option<String>,
    /// The signed statement, hex.
    pub statement: Option<String>,
    /// The signature, hex.
    pub signature: Option<String>,
}

/// A request's proof file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The installation's custody id.
    pub custody: String,
    /// The client's request id.
    pub request_id: String,
    /// Who asked.
    pub requester: String,
    /// The wallet.
    pub wallet: String,
    /// The request's state when exported (`signed`, `pending_approval`, `rejected`, …).
    pub state: String,
    /// When it arrived, unix seconds.
    pub created_at: i64,
    /// SHA-256 of the canonical payload, hex.
    pub payload_sha256: String,
    /// The canonical payload.
    pub payload: StoredPayload,
    /// The decoded intent.
    pub intent: Intent,
    /// The intent as approvers read it (and signed it).
    pub intent_lines: Vec<String>,
    /// The decision.
    pub decision: Option<ProofDecision>,
    /// The quorum.
    pub quorum: Option<ProofQuorum>,
    /// The signed transaction's id, when signed.
    pub result: Option<String>,
    /// The policy in force when the proof was exported.
    pub policy_hash: String,
    /// Every vote, in order.
    pub votes: Vec<ProofVote>,
}

/// What the offline check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofCheck {
    /// What held, one line each.
    pub passed: Vec<String>,
    /// What did not, one line each (empty: the proof holds).
    pub problems: Vec<String>,
    /// Approvers whose approve votes verified (and, with a policy, count), in order.
    pub approvers: Vec<String>,
}

impl ProofCheck {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn sign_payload(p: &StoredPayload) -> Option<SignPayload> {
    Some(match p {
        StoredPayload::BitcoinPsbt { hex } => SignPayload::BitcoinPsbt(hex::decode(hex).ok()?),
        StoredPayload::EthereumTransaction {
            hex,
            address_index,
            replacement,
        } => SignPayload::EthereumTransaction {
            unsigned_tx: hex::decode(hex).ok()?,
            address_index: *address_index,
            replacement: *replacement,
        },
        StoredPayload::PersonalMessage { hex, address_index } => SignPayload::PersonalMessage {
            message: hex::decode(hex).ok()?,
            address_index: *address_index,
        },
        StoredPayload::TypedData {
            json,
            address_index,
        } => SignPayload::TypedData {
            json: json.clone(),
            address_index: *address_index,
        },
    })
}

impl Proof {
    /// The vote context every statement in this proof must carry.
    pub fn context(&self) -> VoteContext {
        VoteContext {
            custody: self.custody.clone(),
            request_id: self.request_id.clone(),
            requester: self.requester.clone(),
            wallet: self.wallet.clone(),
            payload_sha256: self.payload_sha256.clone(),
            intent: self.intent_lines.clone(),
        }
    }

    /// Checks the proof offline (see the module docs); `policy` is the one the verifier trusts.
    pub fn verify(&self, policy: Option<&Policy>) -> ProofCheck {
        let mut c = ProofCheck::default();
        let mut check = |ok: bool, pass: String, fail: String| {
            if ok {
                c.passed.push(pass);
            } else {
                c.problems.push(fail);
            }
        };
        check(
            self.format == PROOF_FORMAT,
            format!("format {PROOF_FORMAT}"),
            format!("format '{}', expected {PROOF_FORMAT}", self.format),
        );
        let hash = sign_payload(&self.payload)
            .map(|p| crate::signing::decode::canonical(&p).1)
            .unwrap_or_default();
        check(
            hash == self.payload_sha256,
            format!("the payload hashes to {}", self.payload_sha256),
            format!(
                "the payload hashes to {hash}, the proof says {}",
                self.payload_sha256
            ),
        );
        check(
            intent_lines(&self.intent) == self.intent_lines && self.intent.wallet == self.wallet,
            "the intent lines are the intent's".into(),
            "the intent lines (what approvers signed) are not those of the intent".into(),
        );
        let ctx = self.context();
        for (i, v) in self.votes.iter().enumerate() {
            match self.check_vote(&ctx, v) {
                Ok(key) => {
                    let mut line = format!(
                        "vote {}: {} by {} signed with {} at {}",
                        i + 1,
                        v.decision.as_str(),
                        v.approver,
                        key.fingerprint(),
                        v.at
                    );
                    let enrolled =
                        policy.map(|p| p.approver_keys_of(&v.approver).any(|k| k == key.to_text()));
                    match enrolled {
                        Some(false) => c.problems.push(format!(
                            "vote {} by {}: key {} is not enrolled for it in the given policy",
                            i + 1,
                            v.approver,
                            key.fingerprint()
                        )),
                        _ => {
                            if enrolled == Some(true) {
                                line.push_str(" (enrolled in the given policy)");
                            }
                            c.passed.push(line);
                            if v.decision == VoteDecision::Approve
                                && v.approver != self.requester
                                && !c.approvers.contains(&v.approver)
                            {
                                c.approvers.push(v.approver.clone());
                            }
                        }
                    }
                }
                Err(why) => c
                    .problems
                    .push(format!("vote {} by {}: {why}", i + 1, v.approver)),
            }
        }
        match policy {
            Some(p) => self.check_quorum(p, &mut c),
            None => c.passed.push(
                "keys not checked against an enrolment: pass --policy FILE (the policy you trust)"
                    .into(),
            ),
        }
        c
    }

    /// Checks the request's approvals against the policy the verifier trusts: the quorum is the
    /// one that policy's deciding rule asks for (never less than the one recorded), counted over
    /// the verified votes of holders of its roles. A proof the trusted policy cannot judge — no
    /// deciding rule recorded, or no rule of that name in the policy — is a problem whenever it
    /// claims a signature or a quorum: the recorded quorum is the server's word, not the policy's.
    fn check_quorum(&self, p: &Policy, c: &mut ProofCheck) {
        let signed = self.state == "signed";
        let given_hash = p.hash();
        let decision = self.decision.as_ref();
        if let Some(d) = decision {
            if d.policy_hash != given_hash {
                c.passed.push(format!(
                    "decided under policy {}, judged by the given policy {given_hash}",
                    d.policy_hash
                ));
            }
        }
        let rule_name = decision.map(|d| d.rule.as_str()).filter(|r| !r.is_empty());
        let Some(rule) = rule_name.and_then(|n| p.rules.iter().find(|r| r.name == n)) else {
            if signed || self.quorum.is_some() {
                c.problems.push(match rule_name {
                    Some(n) => format!(
                        "the given policy has no rule '{n}' (the rule that decided this request): \
                         its quorum cannot be checked against the policy you trust"
                    ),
                    None => "no deciding rule is recorded: the quorum cannot be checked against \
                             the policy you trust"
                        .into(),
                });
            }
            return;
        };
        if signed && rule.effect == Effect::Deny {
            c.problems.push(format!(
                "signed, but rule '{}' of the given policy denies",
                rule.name
            ));
            return;
        }
        let (count, roles): (u32, Vec<String>) = match (&rule.approval, &self.quorum) {
            (Some(q), recorded) => (
                q.count.max(recorded.as_ref().map_or(0, |r| r.count)),
                q.roles.iter().cloned().collect(),
            ),
            (None, Some(recorded)) => {
                c.passed.push(format!(
                    "rule '{}' of the given policy asks for no approval; the recorded quorum is checked",
                    rule.name
                ));
                (recorded.count, recorded.roles.clone())
            }
            (None, None) => {
                c.passed.push(format!(
                    "rule '{}' of the given policy asks for no approval",
                    rule.name
                ));
                return;
            }
        };
        let counted: Vec<&str> = c
            .approvers
            .iter()
            .filter(|a| p.roles_of(a).iter().any(|r| roles.iter().any(|x| x == r)))
            .map(String::as_str)
            .collect();
        let enough = counted.len() >= count as usize;
        let summary = format!(
            "{} of the {} required approvals are valid signed votes by holders of {}: {}",
            counted.len(),
            count,
            roles.join(", "),
            counted.join(", ")
        );
        if signed && !enough {
            c.problems
                .push(format!("signed without its quorum: {summary}"));
        } else {
            c.passed.push(summary);
        }
    }

    fn check_vote(&self, ctx: &VoteContext, v: &ProofVote) -> Result<PublicKey, String> {
        let (Some(key), Some(statement), Some(signature)) = (&v.key, &v.statement, &v.signature)
        else {
            return Err("unsigned: it proves nothing".into());
        };
        let key = PublicKey::parse(key).map_err(|e| e.to_string())?;
        let rebuilt = VoteStatement {
            context: ctx.clone(),
            approver: v.approver.clone(),
            key: key.to_text(),
            decision: v.decision,
            reason: v.reason.clone(),
            at: v.at,
        }
        .encode()
        .map_err(|e| e.to_string())?;
        if hex::decode(statement).ok().as_deref() != Some(rebuilt.as_slice()) {
            return Err(
                "its statement is not this request's (rebuilt from the proof's fields)".into(),
            );
        }
        let signature = hex::decode(signature).map_err(|_| "the signature is not hex")?;
        key.verify(&rebuilt, &signature)
            .map_err(|e| e.to_string())?;
        Ok(key)
    }
}
