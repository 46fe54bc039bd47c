//! Needs-approval requests: approve, reject, expiry, listing.
//!
//! A request that needs approval is stored pending with its limits **held** until the quorum's
//! expiry (so pending requests count against windows and cannot dodge a limit). Rules:
//!
//! - An approver must hold one of the quorum's roles (`FAILED_PRECONDITION not-an-approver`); the
//!   requester never approves its own request (`FAILED_PRECONDITION self-approval`).
//! - Each approver counts once: approving again is a no-op that answers the current record (so a
//!   client retrying an `Approve` gets a plain answer), not a second vote.
//! - When the quorum is met, the policy is evaluated again (at that time, with the request's own
//!   hold left out of the windows) and the caps are re-checked atomically while the hold is turned
//!   into a reservation ([`crate::state::sled::reserve_again_in`]); then the request is signed into
//!   the outbox. If the policy or a cap now refuses, the request ends `denied` (hold released) and
//!   `Approve` answers the record, whose `error` says why.
//! - `Reject` (by a holder of a quorum role) ends it `rejected`; expiry ends it `expired`; both
//!   release the hold and the Ethereum nonce claim.
//! - Expiry is lazy (any access to an expired request expires it) plus the sweep
//!   [`super::SigningCore::expire_pending`] the server calls periodically.

use crate::policy::limits::{LedgerKey, Usage, UsageView};
use crate::policy::{Outcome, PolicyRequest, Quorum};
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{ListPending, PendingPage, RequestRecord};
use crate::state::buckets::minute_of;
use crate::state::nonces;
use crate::state::requests::{self, StoredRequest, StoredState, StoredVote};
use crate::state::sled::{release_in, reserve_again_in, ReservationInfo, SledState};
use crate::state::ReserveOutcome;

use super::access::Access;
use super::pipeline::{self, entry};
use super::records::{self, denial};
use super::{decode, now_unix, unavailable, Keys, SigningCore, HOST_PRINCIPAL};

fn not_found(id: &str) -> CoreError {
    CoreError::NotFound {
        what: "request",
        id: id.to_owned(),
    }
}

fn not_pending(r: &StoredRequest) -> CoreError {
    CoreError::Precondition {
        code: "not-pending".into(),
        reason: format!(
            "request '{}' is not waiting for approvals (it is {:?})",
            r.request_id, r.state
        ),
    }
}

/// `Signer.GetRequest`: the requester, the holders of one of its quorum's roles and admins see a
/// request; others get NOT_FOUND, as for an id that does not exist (see [`super::access`]).
pub async fn get_request(
    core: &SigningCore,
    principal: &Principal,
    id: &str,
) -> CoreResult<RequestRecord> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    access.require_a_role()?;
    let r = requests::get(&core.state, id)
        .map_err(unavailable)?
        .ok_or_else(|| not_found(id))?;
    if !access.may_see_request(&r) {
        return Err(not_found(id));
    }
    if r.state == StoredState::PendingApproval
        && r.quorum
            .as_ref()
            .is_some_and(|q| q.expires_at <= now_unix())
    {
        if let Ok(keys) = core.keys() {
            if let Some(expired) = expire_one(core, &keys, id, now_unix())? {
                core.flusher.flush().await.map_err(unavailable)?;
                return records::record(&expired);
            }
        }
    }
    records::record(&r)
}

/// `Signer.ListPending`: oldest expiry first; expired ones are left to the sweep and not shown.
/// Only the requests the caller may see ([`super::access`]) are listed.
pub fn list_pending(
    core: &SigningCore,
    principal: &Principal,
    req: ListPending,
) -> CoreResult<PendingPage> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    access.require_a_role()?;
    let size = match req.page_size {
        0 => 100,
        n => n.min(1000) as usize,
    };
    let after = match &req.page_token {
        Some(t) => {
            Some(hex::decode(t).map_err(|_| CoreError::invalid("page_token", "not a token"))?)
        }
        None => None,
    };
    let now = now_unix();
    let mut out = Vec::new();
    let mut cursor = after;
    let mut next = None;
    'pages: loop {
        let page =
            requests::pending_page(&core.state, cursor.as_deref(), size).map_err(unavailable)?;
        if page.is_empty() {
            break;
        }
        for (key, r) in page {
            cursor = Some(key.clone());
            let live = r.quorum.as_ref().is_some_and(|q| q.expires_at > now);
            let wanted = req.wallet.as_ref().is_none_or(|w| *w == r.wallet);
            if live && wanted && access.may_see_request(&r) {
                out.push(records::record(&r)?);
                if out.len() >= size {
                    next = Some(hex::encode(key));
                    break 'pages;
                }
            }
        }
    }
    Ok(PendingPage {
        requests: out,
        next_page_token: next,
    })
}

/// The ledger as it would be without one request's own reservation (for re-evaluating a request
/// whose hold is already recorded). May under-count at bucket edges; the atomic re-check in
/// `reserve_again_in` is exact.
struct WithoutOwn<'a> {
    state: &'a SledState,
    own: Option<ReservationInfo>,
}

impl UsageView for WithoutOwn<'_> {
    fn usage(&self, key: &LedgerKey, from: i64, to: i64) -> Result<Usage, String> {
        let mut u = self.state.usage(key, from, to)?;
        if let Some(own) = &self.own {
            let m = minute_of(own.at);
            if !own.released
                && own.keys.contains(key)
                && m >= minute_of(from.saturating_add(1))
                && m <= minute_of(to)
            {
                u.sum = u.sum.saturating_sub(own.amount);
                u.count = u.count.saturating_sub(1);
            }
        }
        Ok(u)
    }
}

fn check_approver(core: &SigningCore, principal: &str, r: &StoredRequest) -> CoreResult<()> {
    if principal == r.requester {
        return Err(CoreError::Precondition {
            code: "self-approval".into(),
            reason: "the requester cannot approve or reject its own request".into(),
        });
    }
    let q = r.quorum.as_ref().ok_or_else(|| not_pending(r))?;
    let policy = core.policy();
    let roles = policy.policy.roles_of(principal);
    if !q.roles.iter().any(|role| roles.contains(role.as_str())) {
        return Err(CoreError::Precondition {
            code: "not-an-approver".into(),
            reason: format!(
                "'{principal}' holds none of the roles this quorum needs ({})",
                q.roles.join(", ")
            ),
        });
    }
    Ok(())
}

/// Loads a pending request for a vote: expires it (and says so) if its time has passed.
async fn pending_for_vote(core: &SigningCore, keys: &Keys, id: &str) -> CoreResult<StoredRequest> {
    let r = requests::get(&core.state, id)
        .map_err(unavailable)?
        .ok_or_else(|| not_found(id))?;
    if r.state != StoredState::PendingApproval {
        return Err(not_pending(&r));
    }
    let now = now_unix();
    if r.quorum.as_ref().is_some_and(|q| q.expires_at <= now) {
        let expired = expire_one(core, keys, id, now)?;
        core.flusher.flush().await.map_err(unavailable)?;
        return Err(records::state_error(&expired.unwrap_or(r)));
    }
    Ok(r)
}

/// `Signer.Approve`.
pub async fn approve(
    core: &SigningCore,
    principal: &Principal,
    id: &str,
    reason: &str,
) -> CoreResult<RequestRecord> {
    let keys = core.keys()?;
    let _guard = core.lock_request(id).await;
    let mut r = pending_for_vote(core, &keys, id).await?;
    check_approver(core, principal.as_str(), &r)?;
    if r.approvals
        .iter()
        .any(|v| v.principal == principal.as_str())
    {
        return records::record(&r);
    }
    let now = now_unix();
    r.approvals.push(StoredVote {
        principal: principal.to_string(),
        at: now,
        reason: reason.to_owned(),
    });
    r.updated_at = now;
    let policy = core.policy();
    let q = r.quorum.clone().ok_or_else(|| not_pending(&r))?;
    let voters: Vec<String> = r.approvals.iter().map(|v| v.principal.clone()).collect();
    let quorum = Quorum {
        count: q.count,
        roles: q.roles.iter().cloned().collect(),
        expires_secs: 0,
    };
    let met = policy
        .policy
        .quorum_status(&quorum, &r.requester, &voters)
        .met;
    let vote = entry("approve", principal.as_str(), &r, &policy.hash, now);
    if !met {
        core.state
            .transact(|tx| {
                core.audit_in(tx, &keys.audit_key, &vote)?;
                requests::put_in(tx, &r)
            })
            .map_err(unavailable)?;
        core.flusher.flush().await.map_err(unavailable)?;
        return records::record(&r);
    }

    // Quorum met: decide again, now, without the request's own hold in the windows.
    let wallet = keys.wallet(&r.wallet)?;
    let decoded = decode::decode(&wallet, &r.payload, &policy.tokens, &core.config.bitcoin)?;
    let view = WithoutOwn {
        state: &core.state,
        own: core.state.reservation(id).map_err(unavailable)?,
    };
    let decision = policy
        .policy
        .evaluate(
            &PolicyRequest {
                principal: r.requester.clone(),
                at: now,
                intent: decoded.intent().clone(),
            },
            &view,
        )
        .map_err(|e| CoreError::StateUnavailable {
            reason: e.to_string(),
        })?;
    let after = core
        .state
        .transact(|tx| {
            let mut r = r.clone();
            core.audit_in(tx, &keys.audit_key, &vote)?;
            let refused = match (&decision.outcome, &decision.reservation) {
                (Outcome::Deny, _) => Some(records::stored_decision(&decision, &policy.hash)),
                (_, Some(plan)) => match reserve_again_in(&tx.ledger, id, plan, None)? {
                    ReserveOutcome::LimitExceeded {
                        rule,
                        code,
                        message,
                    } => Some(denial(
                        &rule,
                        code,
                        format!("rule '{rule}': {message}"),
                        &policy.hash,
                    )),
                    _ => None,
                },
                (_, None) => {
                    release_in(&tx.ledger, id)?;
                    None
                }
            };
            match refused {
                Some(d) => {
                    release_in(&tx.ledger, id)?;
                    if let Some(key) = &r.nonce_key {
                        nonces::release_in(tx, key, id)?;
                    }
                    r.error = Some(format!("quorum met, but refused on re-check: {}", d.reason));
                    r.decision = Some(d);
                    r.state = StoredState::Denied;
                    let e = entry("quorum.denied", principal.as_str(), &r, &policy.hash, now);
                    core.audit_in(tx, &keys.audit_key, &e)?;
                }
                None => {
                    r.state = StoredState::Authorized;
                    let e = entry("quorum.met", principal.as_str(), &r, &policy.hash, now);
                    core.audit_in(tx, &keys.audit_key, &e)?;
                }
            }
            requests::put_in(tx, &r)?;
            Ok(r)
        })
        .map_err(unavailable)?;
    core.flusher.flush().await.map_err(unavailable)?;
    if after.state != StoredState::Authorized {
        return records::record(&after);
    }
    match pipeline::finish(core, &keys, after, decoded, &wallet).await {
        Ok(_) | Err(CoreError::Internal { .. }) => {}
        Err(e) => return Err(e),
    }
    let done = requests::get(&core.state, id)
        .map_err(unavailable)?
        .ok_or_else(|| not_found(id))?;
    records::record(&done)
}

/// `Signer.Reject`.
pub async fn reject(
    core: &SigningCore,
    principal: &Principal,
    id: &str,
    reason: &str,
) -> CoreResult<RequestRecord> {
    let keys = core.keys()?;
    let _guard = core.lock_request(id).await;
    let r = pending_for_vote(core, &keys, id).await?;
    check_approver(core, principal.as_str(), &r)?;
    let done = end(
        core,
        &keys,
        id,
        StoredState::Rejected,
        "reject",
        principal.as_str(),
        reason,
        now_unix(),
    )?
    .unwrap_or(r);
    core.flusher.flush().await.map_err(unavailable)?;
    records::record(&done)
}

/// Ends a pending request (rejected or expired): releases its hold and nonce claim, audits.
/// `None` if it was no longer pending (or, for expiry, not yet due).
#[allow(clippy::too_many_arguments)]
fn end(
    core: &SigningCore,
    keys: &Keys,
    id: &str,
    state: StoredState,
    event: &str,
    principal: &str,
    reason: &str,
    now: i64,
) -> CoreResult<Option<StoredRequest>> {
    let policy_hash = core.policy().hash.clone();
    core.state
        .transact(|tx| {
            let Some(mut r) = requests::get_in(tx, id)? else {
                return Ok(None);
            };
            let due = r.quorum.as_ref().is_some_and(|q| q.expires_at <= now);
            if r.state != StoredState::PendingApproval || (state == StoredState::Expired && !due) {
                return Ok(None);
            }
            release_in(&tx.ledger, id)?;
            if let Some(key) = &r.nonce_key {
                nonces::release_in(tx, key, id)?;
            }
            r.state = state;
            r.updated_at = now;
            r.error = Some(reason.to_owned());
            core.audit_in(
                tx,
                &keys.audit_key,
                &entry(event, principal, &r, &policy_hash, now),
            )?;
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(unavailable)
}

/// Expires one request if it is pending and due (not flushed).
pub(crate) fn expire_one(
    core: &SigningCore,
    keys: &Keys,
    id: &str,
    now: i64,
) -> CoreResult<Option<StoredRequest>> {
    end(
        core,
        keys,
        id,
        StoredState::Expired,
        "expire",
        HOST_PRINCIPAL,
        "expired before the quorum approved",
        now,
    )
}

/// The sweep behind [`SigningCore::expire_pending`].
pub(crate) fn expire_due(core: &SigningCore, now: i64) -> CoreResult<usize> {
    let Ok(keys) = core.keys() else {
        return Ok(0);
    };
    let mut count = 0;
    for id in requests::pending_due(&core.state, now).map_err(unavailable)? {
        if expire_one(core, &keys, &id, now)?.is_some() {
            count += 1;
        }
    }
    if count > 0 {
        core.flusher.flush_blocking().map_err(unavailable)?;
    }
    Ok(count)
}
