//! The durable writes of a signing request: what each transaction holds and what it refuses.
//!
//! - [`commit_signed`] — **one write per allowed request**: the request was decided `allow` and
//!   signed in memory (the signature checked, nothing released); one transaction re-checks
//!   everything that could have changed since the evaluation (the id stored meanwhile by a
//!   concurrent retry, the nonce guard, every cap of the reservation plan) and stores the
//!   decision, the reservation, the signed result, the outbox entry and the audit records
//!   (`sign.allow`, `sign.signed`) at once. If it refuses, the signature is dropped and the
//!   request answers as the transaction decided; if it cannot be written (the audit is
//!   unwritable, the disk is gone) nothing is stored and nothing is released (fail closed).
//! - [`commit_decision`] — the first of the **two writes** of the other paths: a denial, or a
//!   request that needs approval (its limits held until the quorum's expiry), stored and audited.
//! - [`sign_and_commit`] and [`finish`] — the second write of a request that became
//!   `authorized` without being signed: a quorum met, or a request an older version (or a crash
//!   between the two writes) left `authorized` (see the recovery pass in [`super::seal`]).
//!
//! None of these flush: the caller flushes (group commit) before anything leaves.

use crate::policy::{Decision as PolicyDecision, Outcome};
use crate::signing::contract::{CoreError, CoreResult, SignReply};
use crate::state::engine::TxResult;
use crate::state::ledger::{confirm_in, confirm_keys, release_in, reserve_in, reserve_keys};
use crate::state::nonces::{self, ClaimOutcome, NonceClaim};
use crate::state::outbox::{self as outbox_state, StoredOutboxEntry};
use crate::state::requests::{
    self, StoredDecision, StoredOutput, StoredQuorum, StoredRequest, StoredState,
};
use crate::state::{ReserveOutcome, StateTx, Tree};
use crate::wallet::Wallet;

use super::decode::{self, Decoded, SignFailure};
use super::pipeline::entry;
use super::records::{self, denial};
use super::{now_unix, Keys, LoadedPolicy, SigningCore};

/// An Ethereum transaction's nonce: (chain id, from address, nonce, signing hash hex).
pub(crate) type NonceUse = (u64, String, u64, String);

/// Every record a decision's write reads, so that a networked engine fetches them at once.
fn decision_keys(
    record: &StoredRequest,
    decision: &PolicyDecision,
    nonce: Option<&NonceUse>,
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

/// Every record the second write reads (the request, its reservation and hold, its nonce).
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

/// Stores `r` as denied (by `d`, or by its own decision), audited.
fn deny_in(
    core: &SigningCore,
    keys: &Keys,
    policy: &LoadedPolicy,
    tx: &StateTx<'_>,
    mut r: StoredRequest,
    d: Option<StoredDecision>,
) -> TxResult<Option<StoredRequest>> {
    r.state = StoredState::Denied;
    if let Some(d) = d {
        r.decision = Some(d);
    }
    r.error = r.decision.as_ref().map(|d| d.reason.clone());
    let e = entry("sign.deny", &r.requester, &r, &policy.hash, r.created_at);
    core.audit_in(tx, &keys.audit_key, &e)?;
    requests::put_in(tx, &r)?;
    Ok(Some(r))
}

/// The nonce guard inside a transaction: `Ok(claim)` to make (none for payloads without a
/// nonce), or `Err(denial)` when another request holds the nonce and this one may not replace it.
fn check_nonce_in(
    tx: &StateTx<'_>,
    policy: &LoadedPolicy,
    id: &str,
    nonce: &Option<NonceUse>,
    replace: bool,
) -> TxResult<Result<Option<(String, NonceClaim)>, StoredDecision>> {
    let Some((chain_id, address, n, hash)) = nonce else {
        return Ok(Ok(None));
    };
    let key = nonces::nonce_key(*chain_id, address, *n);
    let claim = NonceClaim {
        request_id: id.to_owned(),
        signing_hash: hash.clone(),
    };
    if let ClaimOutcome::Conflict { holder } = nonces::check_in(tx, &key, &claim, replace)? {
        let why = format!(
            "nonce {n} of {address} was already used by request '{holder}' \
             (mark the request as a replacement, under a rule that allows it)"
        );
        return Ok(Err(denial(
            "nonce guard",
            "nonce.reused",
            why,
            &policy.hash,
        )));
    }
    Ok(Ok(Some((key, claim))))
}

/// Check-and-reserve inside a transaction: `Some(denial)` if the plan cannot be recorded.
fn reserve_or_deny_in(
    tx: &StateTx<'_>,
    policy: &LoadedPolicy,
    id: &str,
    decision: &PolicyDecision,
    hold: Option<i64>,
) -> TxResult<Option<StoredDecision>> {
    let Some(plan) = &decision.reservation else {
        return Ok(None);
    };
    Ok(match reserve_in(tx, id, plan, hold)? {
        ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved => None,
        ReserveOutcome::AlreadyReleased => {
            let why = "this request id was reserved and released before".to_owned();
            Some(denial("ledger", "limit.released", why, &policy.hash))
        }
        ReserveOutcome::LimitExceeded {
            rule,
            code,
            message,
        } => {
            let why = format!("rule '{rule}': {message}");
            Some(denial(&rule, code, why, &policy.hash))
        }
    })
}

/// The one write of an allowed request signed in memory (see the module docs). `None` if the
/// id was stored meanwhile (the caller answers as a retry); otherwise the request as stored:
/// `signed`, `denied` (a cap or the nonce taken meanwhile: the signature is dropped) or `failed`
/// (signing failed: nothing stays reserved).
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit_signed(
    core: &SigningCore,
    keys: &Keys,
    policy: &LoadedPolicy,
    record: StoredRequest,
    decision: &PolicyDecision,
    nonce: Option<NonceUse>,
    replacement: bool,
    signed: &Result<StoredOutput, SignFailure>,
    wallet: &Wallet,
) -> CoreResult<Option<StoredRequest>> {
    debug_assert!(matches!(decision.outcome, Outcome::Allow));
    let id = record.key();
    let now = record.created_at;
    let reads = decision_keys(&record, decision, nonce.as_ref());
    core.state
        .transact(|tx| {
            tx.prefetch(&reads)?;
            if requests::get_in(tx, &id)?.is_some() {
                return Ok(None);
            }
            let mut r = record.clone();
            let replace = replacement && decision.allow_replacement;
            let claim = match check_nonce_in(tx, policy, &id, &nonce, replace)? {
                Ok(claim) => claim,
                Err(d) => return deny_in(core, keys, policy, tx, r, Some(d)),
            };
            if let Some(d) = reserve_or_deny_in(tx, policy, &id, decision, None)? {
                return deny_in(core, keys, policy, tx, r, Some(d));
            }
            r.state = StoredState::Authorized;
            r.authorized_at = Some(now);
            let allowed = entry("sign.allow", &r.requester, &r, &policy.hash, now);
            core.audit_in(tx, &keys.audit_key, &allowed)?;
            match signed {
                Ok(output) => {
                    if let Some((key, claim)) = &claim {
                        nonces::claim_in(tx, key, claim)?;
                        r.nonce_key = Some(key.clone());
                    }
                    signed_in(core, keys, tx, &mut r, output, wallet, &policy.hash, now)?;
                }
                // As the two-step path would end: the reservation released at once. (An
                // unavailable backend never gets here: the caller stores the decision instead.)
                Err(SignFailure::Failed(reason) | SignFailure::Unavailable(reason)) => {
                    failed_in(core, keys, tx, &mut r, reason, &policy.hash, now)?
                }
            }
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(|e| core.fail(e))
}

/// Marks `r` signed with `output`, inside the transaction: the result, the outbox entry (for a
/// broadcastable transaction, carrying the audit head that includes its own `sign.signed`
/// record) and that record. The caller stores `r`.
#[allow(clippy::too_many_arguments)]
fn signed_in(
    core: &SigningCore,
    keys: &Keys,
    tx: &StateTx<'_>,
    r: &mut StoredRequest,
    output: &StoredOutput,
    wallet: &Wallet,
    policy_hash: &str,
    now: i64,
) -> TxResult<()> {
    r.updated_at = now;
    r.result = Some(output.clone());
    r.state = StoredState::Signed;
    let broadcastable = output.broadcastable();
    if broadcastable.is_some() {
        // The sequence the entry will get, for the audit record; pushed after it so that the
        // entry carries the audit head that includes it.
        r.outbox_seq = Some(outbox_state::next_sequence_in(tx)?);
    }
    let (audit_seq, audit_mac) = core.audit_with_mac_in(
        tx,
        &keys.audit_key,
        &entry("sign.signed", &r.requester, r, policy_hash, now),
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
    Ok(())
}

/// Marks `r` failed (signing failed after the decision), inside the transaction: its
/// reservation and nonce released, audited. The caller stores `r`.
fn failed_in(
    core: &SigningCore,
    keys: &Keys,
    tx: &StateTx<'_>,
    r: &mut StoredRequest,
    reason: &str,
    policy_hash: &str,
    now: i64,
) -> TxResult<()> {
    let id = r.key();
    release_in(tx, &id)?;
    if let Some(key) = &r.nonce_key {
        nonces::release_in(tx, key, &id)?;
    }
    r.updated_at = now;
    r.state = StoredState::Failed;
    r.error = Some(reason.to_owned());
    core.audit_in(
        tx,
        &keys.audit_key,
        &entry("sign.failed", &r.requester, r, policy_hash, now),
    )?;
    Ok(())
}

/// The first write of the two-step paths: the decision, its reservation (a hold until the
/// quorum's expiry for needs-approval), nonce claim, request record and audit record, in one
/// transaction. `None` if the id was stored meanwhile.
pub(crate) fn commit_decision(
    core: &SigningCore,
    keys: &Keys,
    policy: &LoadedPolicy,
    record: StoredRequest,
    decision: &PolicyDecision,
    nonce: Option<NonceUse>,
    replacement: bool,
) -> CoreResult<Option<StoredRequest>> {
    let id = record.key();
    let now = record.created_at;
    let reads = decision_keys(&record, decision, nonce.as_ref());
    core.state
        .transact(|tx| {
            tx.prefetch(&reads)?;
            if requests::get_in(tx, &id)?.is_some() {
                return Ok(None);
            }
            let mut r = record.clone();
            let (hold, state, event) = match &decision.outcome {
                Outcome::Deny => return deny_in(core, keys, policy, tx, r, None),
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
            let replace = replacement && decision.allow_replacement;
            let claim = match check_nonce_in(tx, policy, &id, &nonce, replace)? {
                Ok(claim) => claim,
                Err(d) => return deny_in(core, keys, policy, tx, r, Some(d)),
            };
            if let Some(d) = reserve_or_deny_in(tx, policy, &id, decision, hold)? {
                return deny_in(core, keys, policy, tx, r, Some(d));
            }
            if let Some((key, claim)) = &claim {
                nonces::claim_in(tx, key, claim)?;
                r.nonce_key = Some(key.clone());
            }
            r.state = state;
            if state == StoredState::Authorized {
                r.authorized_at = Some(now);
            }
            let e = entry(event, &r.requester, &r, &policy.hash, now);
            core.audit_in(tx, &keys.audit_key, &e)?;
            requests::put_in(tx, &r)?;
            Ok(Some(r))
        })
        .map_err(|e| core.fail(e))
}

/// Signs on the blocking pool when the wallet is on an HSM (a token call may take milliseconds,
/// or wait for a free session), inline otherwise (software signing takes microseconds).
pub(crate) async fn sign_decoded(
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

/// The error of a key backend that could not be used: nothing was signed.
pub(crate) fn unavailable(record: &StoredRequest, wallet: &Wallet, reason: &str) -> CoreError {
    tracing::warn!(
        request_id = %record.request_id,
        wallet = %wallet.name,
        %reason,
        "key backend unavailable: nothing signed, the request stays authorized"
    );
    CoreError::KeyBackendUnavailable {
        reason: reason.to_owned(),
    }
}

/// The second write, without the flush: signs an `authorized` request and commits the result
/// ([`commit_result`]).
pub(crate) fn sign_and_commit(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    decoded: Decoded,
    wallet: &Wallet,
) -> CoreResult<StoredRequest> {
    let signed = decode::sign(decoded, wallet, &*keys.backend);
    commit_result(core, keys, record, signed, wallet)
}

/// The second write, without the flush: commits the result of signing an `authorized` request
/// (request signed, outbox entry carrying the audit head, hold confirmed, audit). If the request
/// was signed meanwhile, that result stands and nothing is written. A signing failure marks the
/// request failed and releases its reservation and nonce — except when the key backend was
/// unavailable: then nothing was signed, nothing is written, the request stays `authorized` (its
/// reservation held) and the caller gets UNAVAILABLE; a retry with the same request id, or the
/// recovery pass at the next unseal, signs it once the token is back.
pub(crate) fn commit_result(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    signed: Result<StoredOutput, SignFailure>,
    wallet: &Wallet,
) -> CoreResult<StoredRequest> {
    if let Err(SignFailure::Unavailable(reason)) = &signed {
        return Err(unavailable(&record, wallet, reason));
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
            match &signed {
                Ok(output) => {
                    confirm_in(tx, &id)?;
                    signed_in(core, keys, tx, &mut r, output, wallet, &policy_hash, now)?;
                }
                Err(SignFailure::Failed(reason) | SignFailure::Unavailable(reason)) => {
                    failed_in(core, keys, tx, &mut r, reason, &policy_hash, now)?
                }
            }
            requests::put_in(tx, &r)?;
            Ok(r)
        })
        .map_err(|e| core.fail(e))
}

/// The answer for a request after its signing write was flushed.
pub(crate) fn answer(done: &StoredRequest) -> CoreResult<SignReply> {
    match done.state {
        StoredState::Signed => records::reply(done),
        StoredState::Failed => Err(CoreError::Internal {
            reason: format!(
                "signing request '{}' failed: {}",
                done.request_id,
                done.error.clone().unwrap_or_default()
            ),
        }),
        _ => Err(records::state_error(done)),
    }
}

/// Signs, commits, flushes, wakes the outbox streams, answers (the second write).
pub(crate) async fn finish(
    core: &SigningCore,
    keys: &Keys,
    record: StoredRequest,
    decoded: Decoded,
    wallet: &Wallet,
) -> CoreResult<SignReply> {
    let signed = sign_decoded(keys, decoded, wallet).await?;
    let done = commit_result(core, keys, record, signed, wallet)?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    super::outbox::notify(core, &done);
    answer(&done)
}
