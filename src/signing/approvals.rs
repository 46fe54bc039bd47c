//! Needs-approval requests: approve, reject, expiry, listing.
//!
//! A request that needs approval is stored pending with its limits **held** until the quorum's
//! expiry (so pending requests count against windows and cannot dodge a limit). Rules:
//!
//! - Request ids are scoped by requester: `Approve`/`Reject` name the requester when the id alone
//!   is ambiguous (several pending requests from different services share it).
//! - The requester never approves or rejects its own request (`FAILED_PRECONDITION
//!   self-approval`); an approver must hold one of the roles of the quorum in force
//!   (`FAILED_PRECONDITION not-an-approver`).
//! - **Each vote is judged by the policy in force.** The request is evaluated again at every vote
//!   (without its own hold in the windows): if the policy now denies it, the vote ends it `denied`;
//!   if it now needs a bigger or different quorum, the request stays pending under that quorum and
//!   only the votes that still qualify count; if it no longer needs approval, or the quorum is met,
//!   the caps are re-checked atomically while the hold becomes a reservation
//!   ([`crate::state::ledger::reserve_again_in`]) and the request is signed into the outbox. A cap
//!   that now refuses ends it `denied`; `Approve` answers the record, whose `error` says why.
//! - **Votes are signatures** by the approver's enrolled key over the request's vote statement
//!   ([`super::votes`], [`crate::governance::vote`]); every stored vote is verified again under
//!   the policy in force whenever votes are counted, so a vote injected into the state database
//!   counts for nothing.
//! - Each approver counts once: approving again is a no-op that answers the current record (a
//!   vote that no longer counts, e.g. after a key change, is replaced by the new one).
//! - Every vote and every ending re-reads the request **inside its transaction**: a vote racing
//!   the expiry sweep (or a rejection) finds the request no longer pending and changes nothing, so
//!   an expired request cannot be revived.
//! - `Reject` (by a holder of a quorum role) ends it `rejected`; expiry ends it `expired`; both
//!   release the hold and the Ethereum nonce claim.
//! - Expiry is lazy (any access to an expired request expires it) plus the sweep
//!   [`super::SigningCore::expire_pending`] the server calls periodically.

use crate::governance::VoteDecision;
use crate::policy::limits::{LedgerKey, ReservationPlan, Usage, UsageView};
use crate::policy::{Outcome, PolicyRequest, Quorum};
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{ListPending, PendingPage, RequestRecord, RequestRef, VoteInput};
use crate::state::buckets::minute_of;
use crate::state::ledger::{release_in, reserve_again_in, ReservationInfo};
use crate::state::nonces;
use crate::state::requests::{
    self, request_key, StoredDecision, StoredQuorum, StoredRequest, StoredState, StoredVote,
};
use crate::state::{ReserveOutcome, State};

use super::access::Access;
use super::pipeline::{self, entry};
use super::records::{self, denial};
use super::{decode, now_unix, votes, Keys, SigningCore, HOST_PRINCIPAL};

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

/// The key of the request `rref` names. With a requester, that one; without, the caller's own
/// request under that id (`own_first`, for `GetRequest`), else the one request with that id (or,
/// among several, the one still pending); otherwise INVALID_ARGUMENT asking for the requester.
/// With `access`, only the requests the caller may see count (others are not confirmed to exist).
fn resolve(
    core: &SigningCore,
    principal: &Principal,
    rref: &RequestRef,
    own_first: bool,
    access: Option<&Access<'_>>,
) -> CoreResult<String> {
    if let Some(requester) = &rref.requester {
        return Ok(request_key(requester, &rref.request_id));
    }
    if own_first {
        let own = request_key(principal.as_str(), &rref.request_id);
        if requests::get(&core.state, &own)
            .map_err(|e| core.fail(e))?
            .is_some()
        {
            return Ok(own);
        }
    }
    let mut keys =
        requests::keys_with_id(&core.state, &rref.request_id).map_err(|e| core.fail(e))?;
    if let Some(access) = access {
        let mut visible = Vec::with_capacity(keys.len());
        for key in keys {
            let r = requests::get(&core.state, &key).map_err(|e| core.fail(e))?;
            if r.is_some_and(|r| access.may_see_request(&r)) {
                visible.push(key);
            }
        }
        keys = visible;
    }
    if let [one] = keys.as_slice() {
        return Ok(one.clone());
    }
    // Several requesters used the id: the one still pending, if only one is.
    let mut pending = Vec::new();
    for key in &keys {
        if let Some(r) = requests::get(&core.state, key).map_err(|e| core.fail(e))? {
            if r.state == StoredState::PendingApproval {
                pending.push(key.clone());
            }
        }
    }
    match (keys.len(), pending.as_slice()) {
        (0, _) => Err(not_found(&rref.request_id)),
        (_, [one]) => Ok(one.clone()),
        (n, _) => Err(CoreError::invalid(
            "requester",
            format!(
                "{n} requests from different requesters use the id '{}': name the requester",
                rref.request_id
            ),
        )),
    }
}

/// `Signer.GetRequest`: the requester, the holders of one of its quorum's roles and admins see a
/// request; others get NOT_FOUND, as for an id that does not exist (see [`super::access`]).
pub async fn get_request(
    core: &SigningCore,
    principal: &Principal,
    rref: &RequestRef,
) -> CoreResult<RequestRecord> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    access.require_a_role()?;
    let id = &rref.request_id;
    let key = resolve(core, principal, rref, true, Some(&access))?;
    let r = requests::get(&core.state, &key)
        .map_err(|e| core.fail(e))?
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
            if let Some(expired) = expire_one(core, &keys, &key, now_unix())? {
                core.flusher.flush().await.map_err(|e| core.fail(e))?;
                return votes::record(core, &expired);
            }
        }
    }
    if r.state == StoredState::Signed {
        // Durable before visible: a signed result read here may have been committed by a `Sign`
        // still waiting for its flush.
        core.flusher.flush().await.map_err(|e| core.fail(e))?;
    }
    votes::record(core, &r)
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
        let page = requests::pending_page(&core.state, cursor.as_deref(), size)
            .map_err(|e| core.fail(e))?;
        if page.is_empty() {
            break;
        }
        for (key, r) in page {
            cursor = Some(key.clone());
            let live = r.quorum.as_ref().is_some_and(|q| q.expires_at > now);
            let wanted = req.wallet.as_ref().is_none_or(|w| *w == r.wallet);
            if live && wanted && access.may_see_request(&r) {
                out.push(votes::record(core, &r)?);
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
    state: &'a State,
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

/// The requester never votes on its own request; a voter must hold one of `quorum`'s roles.
fn check_voter(
    core: &SigningCore,
    principal: &str,
    r: &StoredRequest,
    quorum: &StoredQuorum,
) -> CoreResult<()> {
    if principal == r.requester {
        return Err(CoreError::Precondition {
            code: "self-approval".into(),
            reason: "the requester cannot approve or reject its own request".into(),
        });
    }
    let policy = core.policy();
    let roles = policy.policy.roles_of(principal);
    if !quorum
        .roles
        .iter()
        .any(|role| roles.contains(role.as_str()))
    {
        return Err(CoreError::Precondition {
            code: "not-an-approver".into(),
            reason: format!(
                "'{principal}' holds none of the roles this quorum needs ({})",
                quorum.roles.join(", ")
            ),
        });
    }
    Ok(())
}

/// Loads a pending request for a vote: expires it (and says so) if its time has passed.
async fn pending_for_vote(core: &SigningCore, keys: &Keys, key: &str) -> CoreResult<StoredRequest> {
    let r = requests::get(&core.state, key)
        .map_err(|e| core.fail(e))?
        .ok_or_else(|| not_found(key))?;
    if r.state != StoredState::PendingApproval {
        return Err(not_pending(&r));
    }
    let now = now_unix();
    if r.quorum.as_ref().is_some_and(|q| q.expires_at <= now) {
        let expired = expire_one(core, keys, key, now)?;
        core.flusher.flush().await.map_err(|e| core.fail(e))?;
        return Err(records::state_error(&expired.unwrap_or(r)));
    }
    Ok(r)
}

/// What one vote does, decided by the policy in force before the vote's transaction.
enum VoteEffect {
    /// The policy now refuses the request.
    Deny(StoredDecision),
    /// Still waiting, under this quorum.
    Pending(StoredQuorum),
    /// Quorum met (or no longer needed): reserve afresh with this plan, then sign.
    Authorize(Option<ReservationPlan>),
}

fn quorum_of(q: &StoredQuorum) -> Quorum {
    Quorum {
        count: q.count,
        roles: q.roles.iter().cloned().collect(),
        expires_secs: 0,
    }
}

/// `Signer.Approve`.
pub async fn approve(
    core: &SigningCore,
    principal: &Principal,
    rref: &RequestRef,
    vote: &VoteInput,
) -> CoreResult<RequestRecord> {
    let keys = core.keys()?;
    let key = resolve(core, principal, rref, false, None)?;
    let _guard = core.lock_request(&key).await;
    let r = pending_for_vote(core, &keys, &key).await?;
    let stored_quorum = r.quorum.clone().ok_or_else(|| not_pending(&r))?;
    let policy = core.policy();
    let ctx = votes::context(&votes::custody_id(core), &r);
    if votes::has_counting_vote(&policy.policy, ctx.as_ref(), &r, principal.as_str()) {
        check_voter(core, principal.as_str(), &r, &stored_quorum)?;
        return votes::record(core, &r);
    }

    // Judge the request by the policy in force, now, without its own hold in the windows.
    let wallet = keys.wallet(&r.wallet)?;
    let decoded = decode::decode(&wallet, &r.payload, &policy.tokens, &core.config.bitcoin)?;
    let now = now_unix();
    let view = WithoutOwn {
        state: &core.state,
        own: core.state.reservation(&key).map_err(|e| core.fail(e))?,
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
    // Only votes whose signatures verify under the policy in force count (re-checked here).
    let mut voters = votes::counting_approvers(&policy.policy, ctx.as_ref(), &r);
    voters.push(principal.to_string());
    let effect = match &decision.outcome {
        Outcome::Deny => {
            check_voter(core, principal.as_str(), &r, &stored_quorum)?;
            VoteEffect::Deny(records::stored_decision(&decision, &policy.hash))
        }
        Outcome::Allow => {
            check_voter(core, principal.as_str(), &r, &stored_quorum)?;
            VoteEffect::Authorize(decision.reservation.clone())
        }
        Outcome::NeedsApproval { quorum } => {
            let now_quorum = StoredQuorum {
                count: quorum.count,
                roles: quorum.roles.iter().cloned().collect(),
                expires_at: stored_quorum.expires_at,
            };
            check_voter(core, principal.as_str(), &r, &now_quorum)?;
            let met = policy
                .policy
                .quorum_status(&quorum_of(&now_quorum), &r.requester, &voters)
                .met;
            if met {
                VoteEffect::Authorize(decision.reservation.clone())
            } else {
                VoteEffect::Pending(now_quorum)
            }
        }
    };
    // The vote itself: a signature by the caller's enrolled key over this request's statement.
    let ctx = ctx.ok_or_else(|| CoreError::Internal {
        reason: format!("pending request '{}' has no intent", r.request_id),
    })?;
    let new_vote = votes::accept(
        &policy.policy,
        &ctx,
        principal.as_str(),
        VoteDecision::Approve,
        vote,
        now,
        r.created_at,
    )?;

    let after = core
        .state
        .transact(|tx| {
            // Re-read: only a request still pending, not yet due and without this vote is voted on.
            let Some(mut r) = requests::get_in(tx, &key)? else {
                return Ok(None);
            };
            let live = r.state == StoredState::PendingApproval
                && r.quorum.as_ref().is_some_and(|q| q.expires_at > now);
            if !live || votes::has_counting_vote(&policy.policy, Some(&ctx), &r, principal.as_str())
            {
                return Ok(Some(r));
            }
            // A vote by this approver that no longer counts (a key changed) gives way.
            r.approvals.retain(|v| v.principal != principal.as_str());
            r.approvals.push(new_vote.clone());
            r.updated_at = now;
            let mut voted = entry("approve", principal.as_str(), &r, &policy.hash, now);
            voted.detail = Some(votes::audit_detail(&new_vote));
            core.audit_in(tx, &keys.audit_key, &voted)?;
            let refused = match &effect {
                VoteEffect::Deny(d) => Some(d.clone()),
                VoteEffect::Pending(q) => {
                    if r.quorum.as_ref() != Some(q) {
                        r.quorum = Some(q.clone());
                    }
                    requests::put_in(tx, &r)?;
                    return Ok(Some(r));
                }
                VoteEffect::Authorize(Some(plan)) => {
                    match reserve_again_in(tx, &key, plan, None)? {
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
                    }
                }
                VoteEffect::Authorize(None) => {
                    release_in(tx, &key)?;
                    None
                }
            };
            match refused {
                Some(d) => {
                    release_in(tx, &key)?;
                    if let Some(nonce) = &r.nonce_key {
                        nonces::release_in(tx, nonce, &key)?;
                    }
                    r.error = Some(format!("refused on re-check at a vote: {}", d.reason));
                    r.decision = Some(d);
                    r.state = StoredState::Denied;
                    let e = entry("quorum.denied", principal.as_str(), &r, &policy.hash, now);
                    core.audit_in(tx, &keys.audit_key, &e)?;
                }
                None => {
                    r.state = StoredState::Authorized;
                    r.authorized_at = Some(now);
                    let mut e = entry("quorum.met", principal.as_str(), &r, &policy.hash, now);
                    e.detail = Some(format!("signed votes counted: {}", voters.join(", ")));
                    core.audit_in(tx, &keys.audit_key, &e)?;
                }
            }
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(|e| core.fail(e))?
        .ok_or_else(|| not_found(&rref.request_id))?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    if after.state == StoredState::PendingApproval
        && !after
            .approvals
            .iter()
            .any(|v| v.principal == principal.as_str())
    {
        // The request was no longer open for votes when the transaction ran (it expired).
        return Err(not_pending(&after));
    }
    if after.state != StoredState::Authorized {
        return votes::record(core, &after);
    }
    match pipeline::finish(core, &keys, after, decoded, &wallet).await {
        Ok(_) | Err(CoreError::Internal { .. }) => {}
        Err(e) => return Err(e),
    }
    let done = requests::get(&core.state, &key)
        .map_err(|e| core.fail(e))?
        .ok_or_else(|| not_found(&rref.request_id))?;
    votes::record(core, &done)
}

/// `Signer.Reject`.
pub async fn reject(
    core: &SigningCore,
    principal: &Principal,
    rref: &RequestRef,
    vote: &VoteInput,
) -> CoreResult<RequestRecord> {
    let keys = core.keys()?;
    let key = resolve(core, principal, rref, false, None)?;
    let _guard = core.lock_request(&key).await;
    let r = pending_for_vote(core, &keys, &key).await?;
    let quorum = r.quorum.clone().ok_or_else(|| not_pending(&r))?;
    check_voter(core, principal.as_str(), &r, &quorum)?;
    let now = now_unix();
    let ctx = votes::context(&votes::custody_id(core), &r).ok_or_else(|| CoreError::Internal {
        reason: format!("pending request '{}' has no intent", r.request_id),
    })?;
    let signed = votes::accept(
        &core.policy().policy,
        &ctx,
        principal.as_str(),
        VoteDecision::Reject,
        vote,
        now,
        r.created_at,
    )?;
    let done = end(
        core,
        &keys,
        &key,
        StoredState::Rejected,
        "reject",
        principal.as_str(),
        &vote.reason,
        now,
        Some(signed),
    )?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    match done {
        Some(done) => votes::record(core, &done),
        // Ended meanwhile (expired, or rejected by someone else): say what it is now.
        None => {
            let now = requests::get(&core.state, &key)
                .map_err(|e| core.fail(e))?
                .unwrap_or(r);
            Err(not_pending(&now))
        }
    }
}

/// Ends a pending request (rejected — with the rejecting `vote` — or expired): releases its hold
/// and nonce claim, audits. `None` if it was no longer pending (or, for expiry, not yet due)
/// when the transaction re-read it.
#[allow(clippy::too_many_arguments)]
fn end(
    core: &SigningCore,
    keys: &Keys,
    key: &str,
    state: StoredState,
    event: &str,
    principal: &str,
    reason: &str,
    now: i64,
    vote: Option<StoredVote>,
) -> CoreResult<Option<StoredRequest>> {
    let policy_hash = core.policy().hash.clone();
    core.state
        .transact(|tx| {
            let Some(mut r) = requests::get_in(tx, key)? else {
                return Ok(None);
            };
            let due = r.quorum.as_ref().is_some_and(|q| q.expires_at <= now);
            if r.state != StoredState::PendingApproval || (state == StoredState::Expired && !due) {
                return Ok(None);
            }
            release_in(tx, key)?;
            if let Some(nonce) = &r.nonce_key {
                nonces::release_in(tx, nonce, key)?;
            }
            r.state = state;
            r.updated_at = now;
            r.error = Some(reason.to_owned());
            let mut e = entry(event, principal, &r, &policy_hash, now);
            if let Some(v) = &vote {
                e.detail = Some(votes::audit_detail(v));
                r.approvals.push(v.clone());
            }
            core.audit_in(tx, &keys.audit_key, &e)?;
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(|e| core.fail(e))
}

/// Expires one request (by key) if it is pending and due (not flushed).
pub(crate) fn expire_one(
    core: &SigningCore,
    keys: &Keys,
    key: &str,
    now: i64,
) -> CoreResult<Option<StoredRequest>> {
    end(
        core,
        keys,
        key,
        StoredState::Expired,
        "expire",
        HOST_PRINCIPAL,
        "expired before the quorum approved",
        now,
        None,
    )
}

/// The sweep behind [`SigningCore::expire_pending`].
pub(crate) fn expire_due(core: &SigningCore, now: i64) -> CoreResult<usize> {
    let Ok(keys) = core.keys() else {
        return Ok(0);
    };
    let mut count = 0;
    for key in requests::pending_due(&core.state, now).map_err(|e| core.fail(e))? {
        if expire_one(core, &keys, &key, now)?.is_some() {
            count += 1;
        }
    }
    if count > 0 {
        core.flusher.flush_blocking().map_err(|e| core.fail(e))?;
    }
    Ok(count)
}
