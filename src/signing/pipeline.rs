//! `Sign`: idempotency → decode → intent → policy → atomic commit → sign → outbox → reply (see the
//! [module docs](super)).

use crate::policy::{Decision as PolicyDecision, Outcome, PolicyRequest};
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{SignPayload, SignReply, SignRequest};
use crate::state::audit::AuditEntry;
use crate::state::ledger::{confirm_in, confirm_keys, release_in, reserve_in, reserve_keys};
use crate::state::nonces::{self, ClaimOutcome, NonceClaim};
use crate::state::outbox::{self as outbox_state, StoredOutboxEntry};
use crate::state::requests::{
    self, request_key, StoredOutput, StoredQuorum, StoredRequest, StoredState,
};
use crate::state::ReserveOutcome;
use crate::state::{engine::TxResult, StateTx, Tree};
use crate::wallet::Wallet;

use super::decode::{self, Decoded, SignFailure};
use super::records::{self, denial};
use super::{now_unix, Keys, LoadedPolicy, SigningCore};

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
    let keys = core.keys()?;
    // Before the payload is hashed, decoded or stored: who may send one at all, how large it
    // may be, and whether the state disk has room (module docs, "Bounded input, bounded disk").
    super::access::admit_sign(core, &keys, principal, &req).await?;
    core.config.limits.check(&req.payload)?;
    core.storage.check_space().map_err(|e| core.fail(e))?;
    let (payload, sha) = decode::canonical(&req.payload);
    let key = request_key(principal.as_str(), &req.request_id);
    let _guard = core.lock_request(&key).await;
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
        let Some(committed) =
            commit_decision(core, &keys, &policy, record, &decision, nonce, replacement)?
        else {
            continue; // another replica stored this id meanwhile: answer as a retry
        };
        core.flusher.flush().await.map_err(|e| core.fail(e))?;
        record_decision(core, &committed);
        return match committed.state {
            StoredState::Authorized => {
                let reply = finish(core, &keys, committed, decoded, &wallet).await?;
                if let Some(metrics) = core.metrics() {
                    metrics.observe_sign_latency(started.elapsed());
                }
                Ok(reply)
            }
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
        StoredState::Authorized => "allow",
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
        StoredState::Signed => records::reply(&existing),
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

/// Step 5: the decision, its reservation, nonce claim, request record and audit record, in one
/// transaction. `None` if the id was stored meanwhile.
fn commit_decision(
    core: &SigningCore,
    keys: &Keys,
    policy: &LoadedPolicy,
    record: StoredRequest,
    decision: &PolicyDecision,
    nonce: Option<(u64, String, u64, String)>,
    replacement: bool,
) -> CoreResult<Option<StoredRequest>> {
    let id = record.key();
    let principal = record.requester.clone();
    let now = record.created_at;
    let reads = decision_keys(&record, decision, nonce.as_ref());
    core.state
        .transact(|tx| {
            tx.prefetch(&reads)?;
            if requests::get_in(tx, &id)?.is_some() {
                return Ok(None);
            }
            let mut r = record.clone();
            let deny = |tx: &StateTx<'_>, mut r: StoredRequest, d| -> TxResult<_> {
                r.state = StoredState::Denied;
                if let Some(d) = d {
                    r.decision = Some(d);
                }
                r.error = r.decision.as_ref().map(|d| d.reason.clone());
                core.audit_in(
                    tx,
                    &keys.audit_key,
                    &entry("sign.deny", &principal, &r, &policy.hash, now),
                )?;
                requests::put_in(tx, &r)?;
                Ok(Some(r))
            };
            let (hold, state, event) = match &decision.outcome {
                Outcome::Deny => return deny(tx, r, None),
                Outcome::Allow => (None, StoredState::Authorized, "sign.allow"),
                Outcome::NeedsApproval { quorum } => {
                    let expires_at =
                        now.saturating_add(i64::try_from(quorum.expires_secs).unwrap_or(i64::MAX));
                    r.quorum = Some(StoredQuorum {
                        count: quorum.count,
                        roles: quorum.roles.iter().cloned().collect(),
                        expires_at,
                    });
                    (
                        Some(expires_at),
                        StoredState::PendingApproval,
                        "sign.pending",
                    )
                }
            };
            let claim = match &nonce {
                Some((chain_id, address, n, hash)) => {
                    let key = nonces::nonce_key(*chain_id, address, *n);
                    let claim = NonceClaim {
                        request_id: id.clone(),
                        signing_hash: hash.clone(),
                    };
                    let replace = replacement && decision.allow_replacement;
                    if let ClaimOutcome::Conflict { holder } =
                        nonces::check_in(tx, &key, &claim, replace)?
                    {
                        let why = format!(
                            "nonce {n} of {address} was already used by request '{holder}' \
                             (mark the request as a replacement, under a rule that allows it)"
                        );
                        return deny(
                            tx,
                            r,
                            Some(denial("nonce guard", "nonce.reused", why, &policy.hash)),
                        );
                    }
                    Some((key, claim))
                }
                None => None,
            };
            if let Some(plan) = &decision.reservation {
                match reserve_in(tx, &id, plan, hold)? {
                    ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved => {}
                    ReserveOutcome::AlreadyReleased => {
                        let why = "this request id was reserved and released before".to_owned();
                        return deny(
                            tx,
                            r,
                            Some(denial("ledger", "limit.released", why, &policy.hash)),
                        );
                    }
                    ReserveOutcome::LimitExceeded {
                        rule,
                        code,
                        message,
                    } => {
                        let why = format!("rule '{rule}': {message}");
                        return deny(tx, r, Some(denial(&rule, code, why, &policy.hash)));
                    }
                }
            }
            if let Some((key, claim)) = &claim {
                nonces::claim_in(tx, key, claim)?;
                r.nonce_key = Some(key.clone());
            }
            r.state = state;
            if state == StoredState::Authorized {
                r.authorized_at = Some(now);
            }
            core.audit_in(
                tx,
                &keys.audit_key,
                &entry(event, &principal, &r, &policy.hash, now),
            )?;
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(|e| core.fail(e))
}

/// Every record [`commit_decision`] reads, so that a networked engine fetches them at once.
fn decision_keys(
    record: &StoredRequest,
    decision: &PolicyDecision,
    nonce: Option<&(u64, String, u64, String)>,
) -> Vec<(Tree, Vec<u8>)> {
    let key = record.key();
    let hold = match &decision.outcome {
        Outcome::NeedsApproval { quorum } => Some(
            record
                .created_at
                .saturating_add(i64::try_from(quorum.expires_secs).unwrap_or(i64::MAX)),
        ),
        _ => None,
    };
    let mut keys = requests::record_keys(&record.request_id, &key, hold);
    if let Some((chain_id, address, n, _)) = nonce {
        let nonce = nonces::nonce_key(*chain_id, address, *n);
        keys.push((Tree::Nonces, nonce.into_bytes()));
    }
    if let Some(plan) = &decision.reservation {
        keys.extend(reserve_keys(&key, plan, hold));
    }
    keys
}

/// Every record [`sign_and_commit`] reads (the request, its reservation and hold, its nonce).
fn signed_keys(record: &StoredRequest) -> Vec<(Tree, Vec<u8>)> {
    let key = record.key();
    let hold = record.quorum.as_ref().map(|q| q.expires_at);
    let mut keys = requests::record_keys(&record.request_id, &key, hold);
    keys.extend(confirm_keys(&key, hold));
    if let Some(nonce) = &record.nonce_key {
        keys.push((Tree::Nonces, nonce.as_bytes().to_vec()));
    }
    keys
}

/// Steps 6 and 7 without the flush: signs an `authorized` request and commits the result (see
/// [`commit_signed`]).
pub(crate) fn sign_and_commit(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    decoded: Decoded,
    wallet: &Wallet,
) -> CoreResult<StoredRequest> {
    let signed = decode::sign(decoded, wallet, &*keys.backend);
    commit_signed(core, keys, record, signed, wallet)
}

/// Signs on the blocking pool when the wallet is on an HSM (a token call may take milliseconds,
/// or wait for a free session), inline otherwise (software signing takes microseconds).
async fn sign_decoded(
    keys: &Keys,
    decoded: Decoded,
    wallet: &Wallet,
) -> CoreResult<Result<StoredOutput, SignFailure>> {
    if !keys.backend.is_hsm_wallet(&wallet.name) {
        return Ok(decode::sign(decoded, wallet, &*keys.backend));
    }
    let (router, wallet) = (keys.backend.clone(), wallet.clone());
    tokio::task::spawn_blocking(move || decode::sign(decoded, &wallet, &*router))
        .await
        .map_err(|e| CoreError::Internal {
            reason: format!("signing task failed: {e}"),
        })
}

/// Step 7 without the flush: commits the result of signing an `authorized` request (request
/// signed, outbox entry, hold confirmed, audit). If the request was signed meanwhile, that result
/// stands and nothing is written. A signing failure marks the request failed and releases its
/// reservation and nonce — except when the key backend was unavailable: then nothing was signed,
/// nothing is written, the request stays `authorized` (its reservation held) and the caller gets
/// UNAVAILABLE; a retry with the same request id, or the recovery pass at the next unseal, signs
/// it once the token is back.
pub(crate) fn commit_signed(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    signed: Result<StoredOutput, SignFailure>,
    wallet: &Wallet,
) -> CoreResult<StoredRequest> {
    if let Err(SignFailure::Unavailable(reason)) = &signed {
        tracing::warn!(
            request_id = %record.request_id,
            wallet = %wallet.name,
            %reason,
            "key backend unavailable: nothing signed, the request stays authorized"
        );
        return Err(CoreError::KeyBackendUnavailable {
            reason: reason.clone(),
        });
    }
    let policy_hash = core.policy().hash.clone();
    let id = record.key();
    let now = now_unix();
    let reads = signed_keys(&record);
    core.state
        .transact(|tx| {
            tx.prefetch(&reads)?;
            let Some(mut r) = requests::get_in(tx, &id)? else {
                return Ok(record.clone());
            };
            if r.state != StoredState::Authorized {
                return Ok(r);
            }
            r.updated_at = now;
            match &signed {
                Ok(output) => {
                    confirm_in(tx, &id)?;
                    r.result = Some(output.clone());
                    r.state = StoredState::Signed;
                    let broadcastable = output.broadcastable();
                    if broadcastable.is_some() {
                        // The sequence the entry will get, for the audit record; pushed after it
                        // so that the entry carries the audit head that includes it.
                        r.outbox_seq = Some(outbox_state::next_sequence_in(tx)?);
                    }
                    let (audit_seq, audit_mac) = core.audit_with_mac_in(
                        tx,
                        &keys.audit_key,
                        &entry("sign.signed", &r.requester, &r, &policy_hash, now),
                    )?;
                    if let Some((raw, tx_id)) = broadcastable {
                        outbox_state::push_in(
                            tx,
                            &StoredOutboxEntry {
                                sequence: 0,
                                request_id: r.request_id.clone(),
                                chain: wallet.chain(),
                                network: wallet.network().name(),
                                wallet: wallet.name.clone(),
                                raw_tx_hex: raw.to_owned(),
                                tx_id: tx_id.to_owned(),
                                signed_at: now,
                                audit_sequence: audit_seq,
                                audit_mac: hex::encode(audit_mac),
                            },
                        )?;
                    }
                }
                Err(SignFailure::Failed(reason) | SignFailure::Unavailable(reason)) => {
                    release_in(tx, &id)?;
                    if let Some(key) = &r.nonce_key {
                        nonces::release_in(tx, key, &id)?;
                    }
                    r.state = StoredState::Failed;
                    r.error = Some(reason.clone());
                    core.audit_in(
                        tx,
                        &keys.audit_key,
                        &entry("sign.failed", &r.requester, &r, &policy_hash, now),
                    )?;
                }
            }
            requests::put_in(tx, &r)?;
            Ok(r)
        })
        .map_err(|e| core.fail(e))
}

/// Signs, commits, flushes, wakes the outbox streams, answers.
pub(crate) async fn finish(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    decoded: Decoded,
    wallet: &Wallet,
) -> CoreResult<SignReply> {
    let signed = sign_decoded(keys, decoded, wallet).await?;
    let done = commit_signed(core, keys, record, signed, wallet)?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    super::outbox::notify(core, &done);
    match done.state {
        StoredState::Signed => records::reply(&done),
        StoredState::Failed => Err(CoreError::Internal {
            reason: format!(
                "signing request '{}' failed: {}",
                done.request_id,
                done.error.clone().unwrap_or_default()
            ),
        }),
        _ => Err(records::state_error(&done)),
    }
}
