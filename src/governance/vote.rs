//! The vote statement: what an approver's signature covers.
//!
//! A vote is a signature by the approver's enrolled key ([`super::keys`]) over the bytes of a
//! [`VoteStatement`], encoded with [`super::encoding`]. Domain `custos/vote/v1`; fields, in this
//! order:
//!
//! | # | field | form |
//! |---|---|---|
//! | 0 | domain | `str("custos/vote/v1")` |
//! | 1 | custody | `str`: the installation's custody id (32 lower-case hex digits), so a vote never verifies at another installation |
//! | 2 | request id | `str`: the client's id |
//! | 3 | requester | `str`: the principal that asked (ids are scoped by requester) |
//! | 4 | wallet | `str` |
//! | 5 | payload hash | `str`: SHA-256 of the canonical payload, 64 lower-case hex digits |
//! | 6 | intent | `list`: the decoded intent as shown ([`super::intent_text`]) |
//! | 7 | approver | `str`: the voter's principal |
//! | 8 | key | `str`: the voter's public key, canonical text (`ed25519:…`, `p256:…`) |
//! | 9 | decision | `str("approve")` or `str("reject")` |
//! | 10 | reason | `str`: the approver's words, as given |
//! | 11 | time | `str`: unix seconds in decimal (no sign, no leading zeros) |
//!
//! Fields 1–6 are the request's [`VoteContext`], which the server hands approvers with every
//! pending request; the approver's client adds 7–11 and signs. The server rebuilds the
//! statement from its own record (never from what the client claims), so a signature over any
//! other request, payload, intent, installation or decision does not verify.

use serde::{Deserialize, Serialize};

use super::encoding::{EncodingError, Statement};

/// The domain of vote statements.
pub const VOTE_DOMAIN: &str = "custos/vote/v1";

/// How far a vote's time may run ahead of the server's clock, seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The longest reason a vote may give, in bytes.
pub const MAX_REASON_BYTES: usize = 1000;

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VoteDecision {
    /// The approver agrees.
    #[default]
    Approve,
    /// The approver refuses; the request ends.
    Reject,
}

impl VoteDecision {
    /// `approve` or `reject`, as the statement writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VoteDecision::Approve => "approve",
            VoteDecision::Reject => "reject",
        }
    }

    /// Parses `approve` or `reject`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(VoteDecision::Approve),
            "reject" => Some(VoteDecision::Reject),
            _ => None,
        }
    }
}

/// What a vote is about: the request as the server recorded it (fields 1–6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteContext {
    /// The installation's custody id (hex).
    pub custody: String,
    /// The client's request id.
    pub request_id: String,
    /// The requesting principal.
    pub requester: String,
    /// The wallet.
    pub wallet: String,
    /// SHA-256 of the canonical payload, hex.
    pub payload_sha256: String,
    /// The decoded intent as shown.
    pub intent: Vec<String>,
}

/// One vote's statement (fields 1–11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteStatement {
    /// The request.
    pub context: VoteContext,
    /// The voter's principal.
    pub approver: String,
    /// The voter's public key, canonical text.
    pub key: String,
    /// Approve or reject.
    pub decision: VoteDecision,
    /// The approver's words.
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
}

impl VoteStatement {
    /// The bytes the approver signs (see the module docs).
    pub fn encode(&self) -> Result<Vec<u8>, EncodingError> {
        let c = &self.context;
        let mut s = Statement::new(VOTE_DOMAIN)?;
        s.str(&c.custody)?
            .str(&c.request_id)?
            .str(&c.requester)?
            .str(&c.wallet)?
            .str(&c.payload_sha256)?
            .list(&c.intent)?
            .str(&self.approver)?
            .str(&self.key)?
            .str(self.decision.as_str())?
            .str(&self.reason)?
            .str(&self.at.to_string())?;
        Ok(s.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> VoteStatement {
        VoteStatement {
            context: VoteContext {
                custody: "00112233445566778899aabbccddeeff".into(),
                request_id: "r-1".into(),
                requester: "spiffe://x/treasury".into(),
                wallet: "eth-treasury".into(),
                payload_sha256: "ab".repeat(32),
                intent: vec!["action: transfer".into(), "amount: 100 ETH".into()],
            },
            approver: "spiffe://x/officers/alice".into(),
            key: format!("ed25519:{}", "11".repeat(32)),
            decision: VoteDecision::Approve,
            reason: "ticket 7".into(),
            at: 1_764_600_000,
        }
    }

    #[test]
    fn every_field_changes_the_bytes() {
        let base = sample();
        let bytes = base.encode().unwrap();
        assert!(bytes.starts_with(b"\0\0\0\x0ecustos/vote/v1"));
        let variants: Vec<fn(&mut VoteStatement)> = vec![
            |s| s.context.custody.push('0'),
            |s| s.context.request_id = "r-2".into(),
            |s| s.context.requester.push('x'),
            |s| s.context.wallet.push('x'),
            |s| s.context.payload_sha256 = "cd".repeat(32),
            |s| s.context.intent[1] = "amount: 1000 ETH".into(),
            |s| s.context.intent.push(String::new()),
            |s| s.approver.push('x'),
            |s| s.key.push('0'),
            |s| s.decision = VoteDecision::Reject,
            |s| s.reason.clear(),
            |s| s.at += 1,
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut v = base.clone();
            change(&mut v);
            assert_ne!(v.encode().unwrap(), bytes, "variant {i}");
        }
    }

    #[test]
    fn the_encoding_is_fixed() {
        // A pinned digest: changing the encoding is a new statement version, not an accident.
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(sample().encode().unwrap()));
        assert_eq!(digest, include_str!("vote_v1_sample.sha256").trim());
    }
}
