//! Least privilege: who may read which requests and wallets, and who may send a payload at all.
//!
//! The policy's roles and rules are the only source. Privileged calls (Admin, Approve/Reject,
//! Outbox) are checked at the edge with [`crate::signing::contract::Privilege`]s; this module
//! decides everything else, the reads included:
//!
//! | call | who gets an answer | anyone else |
//! |---|---|---|
//! | `Sign` | a principal that some allow or require-approval rule reaches on the wallet ([`crate::policy::reach`]) | `PERMISSION_DENIED policy-no-rule-for-principal` |
//! | `GetRequest` | the requester; a holder of one of the request's quorum roles (an eligible approver, whether or not it voted); an admin | `NOT_FOUND`, word for word what an unknown id gets |
//! | `ListPending` | the pending requests the caller could `GetRequest` (an approver sees those it may vote on, and its own) | an empty page |
//! | `ListWallets` | an admin: every wallet; others: the wallets some rule reaches them on | left out |
//! | `GetAddress` | the same | `NOT_FOUND`, as for an unknown wallet |
//!
//! A principal that holds **no role at all** gets `PERMISSION_DENIED policy-no-role` from every
//! read above: that answer depends on the caller alone, so it says nothing about any request or
//! wallet, and the state is not read for it.
//!
//! The `Sign` refusal comes before the payload is hashed, decoded or stored ([`admit_sign`]): it is
//! audited as `sign.refused` with the request id, the wallet name (at most 64 characters), the
//! payload's kind and size — never the payload — and nothing is stored under the request id, so
//! a legitimate request may use it later. Admins are not exempt: administering is not signing.
//! Because reach over-approximates every decision the policy can make, no request the policy
//! could allow is refused here. An unknown wallet is `NOT_FOUND` only for a principal some rule
//! could reach on a wallet of that name; for anyone else it is the same refusal, so wallet names
//! are not confirmed to outsiders either.

use std::collections::BTreeSet;

use crate::policy::model::Policy;
use crate::policy::{Outcome, WalletScope};
use crate::signing::contract::{CoreError, CoreResult, Principal, Privilege, SignRequest};
use crate::state::audit::AuditEntry;
use crate::state::requests::StoredRequest;
use crate::wallet::Wallet;

use super::input_limits::kind_and_len;
use super::records::DEFAULT_RULE;
use super::{now_unix, role_of, Keys, SigningCore};

/// Stable code: no rule of the policy could let this principal use this wallet.
pub const NO_RULE_FOR_PRINCIPAL: &str = "policy-no-rule-for-principal";
/// Stable code: the principal holds no role in the policy.
pub const NO_ROLE: &str = "policy-no-role";

/// The audit event of a refused `Sign`.
pub const SIGN_REFUSED: &str = "sign.refused";

/// The longest wallet name an audit record or a refusal repeats (a name is caller input).
const MAX_ECHOED_NAME: usize = 64;

/// What one principal may see and use under one policy.
pub(crate) struct Access<'p> {
    policy: &'p Policy,
    principal: &'p str,
    roles: BTreeSet<&'p str>,
}

impl<'p> Access<'p> {
    /// The principal's standing under `policy`.
    pub(crate) fn new(policy: &'p Policy, principal: &'p str) -> Self {
        Access {
            roles: policy.roles_of(principal),
            policy,
            principal,
        }
    }

    fn is_admin(&self) -> bool {
        self.roles.contains(role_of(Privilege::Admin))
    }

    /// `PERMISSION_DENIED policy-no-role` for a principal the policy gives no role at all.
    pub(crate) fn require_a_role(&self) -> CoreResult<()> {
        if self.roles.is_empty() {
            return Err(CoreError::PolicyDenied {
                rule: DEFAULT_RULE.into(),
                code: NO_ROLE.into(),
                reason: format!("principal '{}' holds no role in the policy", self.principal),
            });
        }
        Ok(())
    }

    /// Whether some rule could let the principal request signatures from `wallet`.
    pub(crate) fn may_sign_on(&self, wallet: &Wallet) -> bool {
        let network = wallet.network().name();
        self.policy.could_allow(
            self.principal,
            &WalletScope {
                name: &wallet.name,
                chain: wallet.chain(),
                network: &network,
            },
        )
    }

    /// Whether the principal may see `wallet` (`ListWallets`, `GetAddress`).
    pub(crate) fn may_see_wallet(&self, wallet: &Wallet) -> bool {
        self.is_admin() || self.may_sign_on(wallet)
    }

    /// Whether the principal may see `request` (`GetRequest`, `ListPending`).
    pub(crate) fn may_see_request(&self, request: &StoredRequest) -> bool {
        self.is_admin()
            || request.requester == self.principal
            || request
                .quorum
                .as_ref()
                .is_some_and(|q| q.roles.iter().any(|r| self.roles.contains(r.as_str())))
    }
}

/// `name` cut to [`MAX_ECHOED_NAME`] characters.
fn echo(name: &str) -> String {
    match name.char_indices().nth(MAX_ECHOED_NAME) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}

/// The `Sign` gate (see the module docs): `Ok` when some rule could let `principal` use the
/// request's wallet; otherwise the refusal, audited and flushed first.
pub(crate) async fn admit_sign(
    core: &SigningCore,
    keys: &Keys,
    principal: &Principal,
    request: &SignRequest,
) -> CoreResult<()> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    let reached = match keys.wallet(&request.wallet) {
        Ok(wallet) => access.may_sign_on(&wallet),
        Err(_) => policy
            .policy
            .could_allow_name(principal.as_str(), &request.wallet),
    };
    if reached {
        return Ok(());
    }
    let wallet = echo(&request.wallet);
    let (kind, len) = kind_and_len(&request.payload);
    let record = AuditEntry {
        at: now_unix(),
        event: SIGN_REFUSED.into(),
        principal: principal.to_string(),
        request_id: Some(request.request_id.clone()),
        wallet: Some(wallet.clone()),
        decision: Some(Outcome::Deny.as_str().into()),
        rule: Some(DEFAULT_RULE.into()),
        code: Some(NO_RULE_FOR_PRINCIPAL.into()),
        policy_hash: policy.hash.clone(),
        detail: Some(format!("{kind} of {len} bytes refused unread")),
        ..AuditEntry::default()
    };
    core.state
        .transact(|tx| core.audit_in(tx, &keys.audit_key, &record))
        .map_err(|e| core.fail(e))?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    if let Some(metrics) = core.metrics() {
        metrics.record_decision(DEFAULT_RULE, "deny");
    }
    Err(CoreError::PolicyDenied {
        rule: DEFAULT_RULE.into(),
        code: NO_RULE_FOR_PRINCIPAL.into(),
        reason: format!(
            "no allow or require_approval rule of the policy lets '{principal}' use wallet \
             '{wallet}'; the payload was not read"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_names_are_bounded_on_a_character_boundary() {
        assert_eq!(echo("btc-hot"), "btc-hot");
        let long = "é".repeat(100);
        let cut = echo(&long);
        assert_eq!(cut.chars().count(), MAX_ECHOED_NAME + 1);
        assert!(cut.ends_with('…'));
    }
}
