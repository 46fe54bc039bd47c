//! Unsealing the server with Shamir shares: `Admin.Unseal` calls from custodians, one share each,
//! until the threshold.
//!
//! Each share is checked the moment it arrives ([`crate::shares::Collector`]): a mistyped,
//! foreign, retired, forged or duplicate share is refused by name (`FAILED_PRECONDITION` with a
//! stable code such as `share-forged`; `INVALID_ARGUMENT share-mistyped` for an unreadable one),
//! and the shares accepted so far stay. Progress — how many of M, which indexes, when it
//! expires, never a share — shows in `Admin.Status` and the seal-state channel (`UNSEALING`).
//!
//! Partial progress is forgotten [`DEFAULT_TIMEOUT_SECS`] (configurable) after the **first**
//! share: the whole threshold must arrive within that window. It is checked at every call and by
//! the server's periodic sweep ([`SigningCore::expire_share_session`]), so shares do not linger in
//! memory. `Admin.Seal` forgets it at once.
//!
//! While sealed nothing can be written to the audit chain or the ceremony log (both are keyed from
//! the data key), so refusals and expiries are logged (tracing) and kept in a small journal; the
//! unseal that completes writes them, with who gave which share and when, into both the audit
//! record and the store's ceremony log.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use crate::ceremony::Contribution;
use crate::keystore::KeystoreError;
use crate::secret::SecretString;
use crate::shares::{Collector, ShareRefusal};
use crate::signing::contract::{CoreError, CoreResult, Principal, SealState};

use super::seal::{unseal_error, UnsealHow};
use super::{now_unix, SigningCore};

/// Default time for a threshold of shares to arrive, from the first one (15 minutes).
pub const DEFAULT_TIMEOUT_SECS: i64 = 15 * 60;
/// How many refusals and expiries the journal keeps until the next unseal.
const JOURNAL_LEN: usize = 32;

struct Session {
    collector: Collector,
    started_at: i64,
    contributions: Vec<Contribution>,
}

/// The share-unseal state of one core.
pub(crate) struct ShareUnseal {
    /// Held for a whole `offer`, completion included: shares are human-paced, and one at a time
    /// no share can start a new collection while another completes the unseal.
    gate: tokio::sync::Mutex<()>,
    session: Mutex<Option<Session>>,
    journal: Mutex<Vec<String>>,
    timeout_secs: AtomicI64,
}

impl Default for ShareUnseal {
    fn default() -> Self {
        ShareUnseal {
            gate: tokio::sync::Mutex::new(()),
            session: Mutex::new(None),
            journal: Mutex::new(Vec::new()),
            timeout_secs: AtomicI64::new(DEFAULT_TIMEOUT_SECS),
        }
    }
}

impl ShareUnseal {
    fn note(&self, line: String) {
        let mut journal = self.journal.lock().expect("journal lock poisoned");
        if journal.len() >= JOURNAL_LEN {
            journal.remove(0);
        }
        journal.push(line);
    }

    fn timeout(&self) -> i64 {
        self.timeout_secs.load(Ordering::Relaxed)
    }

    /// Drops an expired session (returns whether one was dropped).
    fn expire(&self, session: &mut Option<Session>, now: i64) -> bool {
        let expired = session
            .as_ref()
            .is_some_and(|s| now >= s.started_at.saturating_add(self.timeout()));
        if expired {
            if let Some(s) = session.take() {
                let progress = s.collector.progress();
                let who: Vec<String> = s
                    .contributions
                    .iter()
                    .map(|c| format!("{} (share {})", c.principal, c.index))
                    .collect();
                tracing::warn!(%progress, "partial unseal expired: the shares given are forgotten");
                self.note(format!(
                    "a partial unseal expired with {progress} from {}",
                    who.join(", ")
                ));
            }
        }
        expired
    }
}

fn refusal_error(refusal: &ShareRefusal) -> CoreError {
    match refusal {
        ShareRefusal::Mistyped(_) => CoreError::invalid("share", refusal.to_string()),
        _ => CoreError::Precondition {
            code: refusal.code().into(),
            reason: refusal.to_string(),
        },
    }
}

fn unsealing_state(session: &Session, timeout: i64) -> SealState {
    let progress = session.collector.progress();
    SealState::Unsealing {
        given: progress.given() as u32,
        threshold: u32::from(progress.threshold),
        indexes: progress.indexes,
        expires_at: session.started_at.saturating_add(timeout),
    }
}

impl SigningCore {
    /// How long, from the first share, a threshold of shares has to arrive.
    pub fn set_share_timeout(&self, secs: u64) {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX).max(1);
        self.shares.timeout_secs.store(secs, Ordering::Relaxed);
    }

    /// Forgets partial share progress older than the timeout; returns whether it did.
    pub fn expire_share_session(&self, now: i64) -> bool {
        let mut session = self.shares.session.lock().expect("share lock poisoned");
        let expired = self.shares.expire(&mut session, now);
        if expired && self.keys().is_err() {
            self.seal.send_replace(SealState::Sealed);
        }
        expired
    }

    /// Takes the refusals and expiries noted since the last unseal (for its audit record).
    pub(crate) fn take_share_journal(&self) -> Vec<String> {
        std::mem::take(&mut *self.shares.journal.lock().expect("journal lock poisoned"))
    }

    /// Forgets partial share progress (a seal).
    pub(crate) fn reset_share_session(&self) {
        let taken = self
            .shares
            .session
            .lock()
            .expect("share lock poisoned")
            .take();
        if let Some(s) = taken {
            self.shares.note(format!(
                "a partial unseal with {} was reset by a seal",
                s.collector.progress()
            ));
        }
    }
}

/// `Admin.Unseal` with one share.
pub(crate) async fn offer(
    core: &SigningCore,
    principal: &Principal,
    share: SecretString,
) -> CoreResult<SealState> {
    let _one_at_a_time = core.shares.gate.lock().await;
    if core.keys().is_ok() {
        tracing::info!(principal = %principal, "a share arrived while unsealed: not used");
        return Ok(SealState::Unsealed);
    }
    let now = now_unix();
    let timeout = core.shares.timeout();
    let complete = {
        let mut guard = core.shares.session.lock().expect("share lock poisoned");
        core.shares.expire(&mut guard, now);
        if guard.is_none() {
            let collector = core.keystore.share_collector().map_err(|e| match e {
                KeystoreError::NoShares => CoreError::Precondition {
                    code: "no-shares".into(),
                    reason: "this key store has no Shamir shares: unseal it with its passphrase"
                        .into(),
                },
                other => unseal_error(other),
            })?;
            *guard = Some(Session {
                collector,
                started_at: now,
                contributions: Vec::new(),
            });
        }
        let session = guard.as_mut().expect("a session was just made");
        match session.collector.offer(&share) {
            Err(refusal) => {
                tracing::warn!(
                    principal = %principal,
                    code = refusal.code(),
                    index = refusal.index(),
                    "share refused"
                );
                core.shares.note(format!(
                    "share from {principal} refused: {refusal} [{}]",
                    refusal.code()
                ));
                let state = unsealing_state(session, timeout);
                if session.collector.progress().given() == 0 {
                    *guard = None;
                    core.seal.send_replace(SealState::Sealed);
                } else {
                    core.seal.send_replace(state);
                }
                return Err(refusal_error(&refusal));
            }
            Ok(index) => {
                tracing::info!(principal = %principal, index, progress = %session.collector.progress(), "share accepted");
                session.contributions.push(Contribution {
                    principal: principal.to_string(),
                    index,
                    at: now,
                });
            }
        }
        if !session.collector.progress().complete() {
            let state = unsealing_state(session, timeout);
            core.seal.send_replace(state);
            return Ok(state);
        }
        guard.take().expect("the session is there")
    };
    let store = core.keystore.clone();
    let Session {
        collector,
        contributions,
        ..
    } = complete;
    let set = hex::encode(collector.info().set_id);
    let unsealed = tokio::task::spawn_blocking(move || store.unseal_with_shares(&collector))
        .await
        .map_err(|e| CoreError::Internal {
            reason: format!("unseal task failed: {e}"),
        })?;
    let unsealed = match unsealed {
        Ok(u) => u,
        Err(e) => {
            core.seal.send_replace(SealState::Sealed);
            return Err(unseal_error(e));
        }
    };
    let result = core.finish_unseal(
        unsealed,
        principal.as_str(),
        UnsealHow::Shares { set, contributions },
    );
    if result.is_err() {
        core.seal.send_replace(SealState::Sealed);
    }
    result
}
