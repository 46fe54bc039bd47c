//! `Sign`: admission → idempotency → decode → intent → policy → (allowed: sign in memory → one
//! durable write) or (otherwise: the decision's write) → flush → reply (see the
//! [module docs](super); the writes themselves are in [`super::commit`]).

use crate::policy::{Outcome, PolicyRequest};
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{SignPayload, SignReply, SignRequest};
use crate::state::audit::AuditEntry;
use crate::state::ledger::release_in;
use crate::state::nonces;
use crate::state::requests::{self, request_key, StoredRequest, StoredState};

use super::commit::{answer, commit_decision, commit_signed, sign_decoded, unavailable};
use super::decode::{self, Decoded, SignFailure};
use super::records;
use super::stages::{Stage, StageClock};
use super::{now_unix, Keys, SigningCore};

pub(crate) use super::commit::{finish, sign_and_commit};

/// The audit record of a request event.
pub(crate) fn entry(
    event: &str,
    principal: &str,
    r: &StoredRequest,
    policy_hash: &str,
    at: i64,
) -> AuditEntry {
    AuditEntry {
        at,
        event: event.to_owned(),
        principal: principal.to_owned(),
        request_id: Some(r.request_id.clone()),
        wallet: Some(r.wallet.clone()),
        intent: r.intent.as_ref().map(|i| i.summary()),
        decision: r.decision.as_ref().map(|d| d.outcome.clone()),
        rule: r.decision.as_ref().map(|d| d.rule.clone()),
        code: r.decision.as_ref().map(|d| d.code.clone()),
        policy_hash: policy_hash.to_owned(),
        tx_id: r.result.as_ref().map(|o| o.audit_id()),
        detail: r.error.clone(),
    }
}

/// `Signer.Sign`.
pub async fn sign(
    core: &SigningCore,
    principal: &Principal,
    req: SignRequest,
) -> CoreResult<SignReply> {
    let started = std::time::Instant::now();
    let mut clock = StageClock::start(started);
    let keys = core.keys()?;
    // Before the payload is hashed, decoded or stored: who may send one at all, how large it
    // may be, and whether the state disk has room (module docs, "Bounded input, bounded disk").
    super::access::admit_sign(core, &keys, principal, &req).await?;
    core.config.limits.check(&req.payload)?;
    core.storage.check_space().map_err(|e| core.fail(e))?;
    let (payload, sha) = decode::canonical(&req.payload);
    let key = request_key(principal.as_str(), &req.request_id);
    let _guard = core.lock_request(&key).await;
    clock.mark(Stage::Admit);
    loop {
        if let Some(existing) = requests::get(&core.state, &key).map_err(|e| core.fail(e))? {
            return resume(core, &keys, existing, &sha).await;
        }
        let wallet = keys.wallet(&req.wallet)?;
        let policy = core.policy();
        let decoded = decode::decode(&wallet, &payload, &policy.tokens, &core.config.bitcoin)?;
        core.config.limits.check_decoded(&decoded)?;
        let intent = decoded.intent().clone();
        let now = now_unix();
        let decision = policy
            .policy
            .evaluate(
                &PolicyRequest {
                    principal: principal.to_string(),
                    at: now,
                    intent: intent.clone(),
                },
                &*core.state,
            )
            .map_err(|e| CoreError::StateUnavailable {
                reason: e.to_string(),
            })?;
        let replacement = matches!(
            req.payload,
            SignPayload::EthereumTransaction {
                replacement: true,
                ..
            }
        );
        let record = StoredRequest {
            request_id: req.request_id.clone(),
            wallet: wallet.name.clone(),
            requester: principal.to_string(),
            payload: payload.clone(),
            payload_sha256: sha.clone(),
            intent: Some(intent),
            decision: Some(records::stored_decision(&decision, &policy.hash)),
            state: StoredState::Denied,
            quorum: None,
            approvals: Vec::new(),
            result: None,
            outbox_seq: None,
            created_at: now,
            updated_at: now,
            error: None,
            nonce_key: None,
            authorized_at: None,
        };
        let nonce = decoded.nonce(&wallet);
        clock.mark(Stage::Decide);
        if decision.outcome == Outcome::Allow {
            // One durable write: sign in memory (checked, never released from here), then store
            // decision, reservation, result, outbox entry and audit in one transaction that
            // re-checks the caps; its refusal drops the signature.
            let signed = sign_decoded(&keys, decoded, &wallet).await?;
            clock.mark(Stage::Sign);
            if let Err(SignFailure::Unavailable(reason)) = &signed {
                // Nothing was signed (the key backend cannot be used now): the decision is
                // stored as the two-step path stores it (authorized, its limits reserved), so a
                // retry with the same id, or the recovery pass, signs it once the token is back.
                let Some(committed) =
                    commit_decision(core, &keys, &policy, record, &decision, nonce, replacement)?
                else {
                    continue; // the id was stored meanwhile: answer as a retry
                };
                core.flusher.flush().await.map_err(|e| core.fail(e))?;
                record_decision(core, &committed);
                return Err(match committed.state {
                    StoredState::Authorized => unavailable(&committed, &wallet, reason),
                    _ => records::state_error(&committed),
                });
            }
            let Some(done) = commit_signed(
                core,
                &keys,
                &policy,
                record,
                &decision,
                nonce,
                replacement,
                &signed,
                &wallet,
            )?
            else {
                continue; // the id was stored meanwhile (a concurrent retry): answer as one
            };
            drop(signed);
            clock.mark(Stage::Commit);
            core.flusher.flush().await.map_err(|e| core.fail(e))?;
            clock.mark(Stage::Flush);
            if done.state == StoredState::Signed {
                core.stages.record(&clock);
            }
            record_decision(core, &done);
            super::outbox::notify(core, &done);
            let reply = answer(&done)?;
            if let Some(metrics) = core.metrics() {
                metrics.observe_sign_latency(started.elapsed());
            }
            return Ok(reply);
        }
        // Denied or waiting for approvals: the decision's own write.
        let Some(committed) =
            commit_decision(core, &keys, &policy, record, &decision, nonce, replacement)?
        else {
            continue; // another replica stored this id meanwhile: answer as a retry
        };
        core.flusher.flush().await.map_err(|e| core.fail(e))?;
        record_decision(core, &committed);
        return match committed.state {
            StoredState::PendingApproval => records::reply(&committed),
            _ => Err(records::state_error(&committed)),
        };
    }
}

/// Counts a committed decision under its rule (`custos_decisions_total`): the outcome as it
/// was stored, so a cap taken by a concurrent request counts as the denial it became.
fn record_decision(core: &SigningCore, committed: &StoredRequest) {
    let (Some(metrics), Some(decision)) = (core.metrics(), &committed.decision) else {
        return;
    };
    let outcome = match committed.state {
        StoredState::Authorized | StoredState::Signed | StoredState::Failed => "allow",
        StoredState::PendingApproval => "needs_approval",
        _ => "deny",
    };
    metrics.record_decision(&decision.rule, outcome);
}

/// A request id seen before (from this requester): the first result, or signing a request a
/// crash left authorized — if its authorization still stands.
async fn resume(
    core: &SigningCore,
    keys: &Keys,
    existing: StoredRequest,
    sha: &str,
) -> CoreResult<SignReply> {
    if existing.payload_sha256 != sha {
        return Err(CoreError::RequestIdConflict {
            request_id: existing.request_id,
        });
    }
    match existing.state {
        StoredState::Signed => {
            // Durable before visible, for retries too: the first attempt's flush may have failed.
            core.flusher.flush().await.map_err(|e| core.fail(e))?;
            records::reply(&existing)
        }
        StoredState::PendingApproval => {
            let now = now_unix();
            if existing
                .quorum
                .as_ref()
                .is_some_and(|q| q.expires_at <= now)
            {
                let expired = super::approvals::expire_one(core, keys, &existing.key(), now)?;
                core.flusher.flush().await.map_err(|e| core.fail(e))?;
                return Err(records::state_error(&expired.unwrap_or(existing)));
            }
            records::reply(&existing)
        }
        StoredState::Authorized => {
            let wallet = keys.wallet(&existing.wallet)?;
            let policy = core.policy();
            let decoded = decode::decode(
                &wallet,
                &existing.payload,
                &policy.tokens,
                &core.config.bitcoin,
            )?;
            let Some(ended) = recheck_authorization(core, keys, &existing, &decoded, now_unix())?
            else {
                return finish(core, keys, existing, decoded, &wallet).await;
            };
            core.flusher.flush().await.map_err(|e| core.fail(e))?;
            Err(records::state_error(&ended))
        }
        _ => Err(records::state_error(&existing)),
    }
}

/// Before an `authorized` request left unsigned (by a crash, or a signer that failed) is signed
/// by a retry or the recovery pass: its authorization must be fresh (younger than the core's
/// bound) and the policy in force must not refuse it (evaluated at the time it was authorized,
/// against an empty ledger: its own reservation is already counted). Otherwise the request ends
/// — `expired` or `denied`, its reservation and nonce released, audited — and is returned;
/// `None` means it may be signed.
pub(crate) fn recheck_authorization(
    core: &SigningCore,
    keys: &Keys,
    r: &StoredRequest,
    decoded: &Decoded,
    now: i64,
) -> CoreResult<Option<StoredRequest>> {
    let policy = core.policy();
    let max_age = i64::try_from(core.config.authorization_max_age_secs).unwrap_or(i64::MAX);
    let (state, event, why, decision) =
        match r.authorized_at {
            None => (
                StoredState::Expired,
                "sign.authorization_expired",
                "the request has no recorded authorization time".to_owned(),
                None,
            ),
            Some(at) if now.saturating_sub(at) > max_age => (
                StoredState::Expired,
                "sign.authorization_expired",
                format!(
                    "authorized {}s ago, longer than the {}s an authorization stays valid",
                    now.saturating_sub(at),
                    max_age
                ),
                None,
            ),
            Some(at) => {
                let request = PolicyRequest {
                    principal: r.requester.clone(),
                    at,
                    intent: decoded.intent().clone(),
                };
                let now_decision = policy
                    .policy
                    .evaluate(&request, &crate::policy::limits::EmptyLedger)
                    .map_err(|e| CoreError::Internal {
                        reason: e.to_string(),
                    })?;
                // A request that needs approval is signed only with its quorum of valid signed
                // votes (re-verified: an `authorized` state written without them signs nothing).
                let votes_hold = match &now_decision.outcome {
                    Outcome::NeedsApproval { quorum } => super::votes::quorum_met(core, r, quorum),
                    _ => true,
                };
                if now_decision.outcome != Outcome::Deny && votes_hold {
                    return Ok(None);
                }
                let d =
                    if votes_hold {
                        records::stored_decision(&now_decision, &policy.hash)
                    } else {
                        records::denial(
                    now_decision.rule.as_deref().unwrap_or(records::DEFAULT_RULE),
                    "approval.votes_invalid",
                    "its recorded votes do not make the quorum: they are missing, or their \
                     signatures do not verify under the policy in force"
                        .into(),
                    &policy.hash,
                )
                    };
                (
                    StoredState::Denied,
                    "sign.deny",
                    format!("the policy in force refuses it now: {}", d.reason),
                    Some(d),
                )
            }
        };
    let key = r.key();
    core.state
        .transact(|tx| {
            let Some(mut current) = requests::get_in(tx, &key)? else {
                return Ok(None);
            };
            if current.state != StoredState::Authorized {
                return Ok(Some(current));
            }
            release_in(tx, &key)?;
            if let Some(nonce) = &current.nonce_key {
                nonces::release_in(tx, nonce, &key)?;
            }
            current.state = state;
            current.updated_at = now;
            current.error = Some(why.clone());
            if let Some(d) = &decision {
                current.decision = Some(d.clone());
            }
            core.audit_in(
                tx,
                &keys.audit_key,
                &entry(event, super::HOST_PRINCIPAL, &current, &policy.hash, now),
            )?;
            requests::put_in(tx, &current)?;
            Ok(Some(current))
        })
        .map_err(|e| core.fail(e))
        .map(|ended| ended.or_else(|| Some(r.clone())))
}
