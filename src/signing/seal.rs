//! Seal and unseal.
//!
//! The core holds the key store open for its whole life (the directory's lock: an admin command
//! run meanwhile gets "in use") and starts sealed. Unsealing with the passphrase runs argon2id (on
//! the blocking pool), loads every seed into a [`SoftwareBackend`], reads the wallets, and then,
//! before anything is served, checks the state database it is about to trust:
//!
//! 1. its records are unsealed with the key derived from the store (`crate::state::auth`), and
//!    its identity names this store ([`crate::state::identity`]) — a state copied from another
//!    installation is refused;
//! 2. its audit chain reaches the head anchored in the key store ([`crate::state::anchor`]) — a
//!    rolled-back or truncated state is refused, unless the configuration explicitly accepts it
//!    (`unsafe_accept_state_rollback`), which is then audited;
//! 3. the digest over all records matches ([`crate::state::verify`]): no record was deleted,
//!    injected or rolled back on its own.
//!
//! Any of these failing leaves the core sealed with the reason. The same full check also
//! authenticates every record and walks the audit chain: a record that fails on its own, or a
//! broken chain, is reported (log, metric, `state.tampered` audit record) and never acted on,
//! while everything else is served. Then the `unseal` record is appended — if it
//! cannot be written the keys are dropped again and the caller gets UNAVAILABLE —, the anchor is
//! moved to the new head, and the **recovery pass** runs: requests a crash left `authorized`
//! (committed, never signed) are signed into the outbox now, without reserving again, if their
//! authorization is still fresh and the policy in force does not refuse them; otherwise they are
//! ended and their reservations released ([`super::pipeline::recheck_authorization`]).
//!
//! Sealing appends the `seal` record while the audit key still exists, anchors the head, then
//! drops every key (backend, wallets, DEK, audit and state keys). Sealing always seals: if its
//! record cannot be written, the keys are dropped anyway and the failure is logged (a seal is the
//! safe direction).
//!
//! Unsealing with Shamir shares (one share per `Admin.Unseal` call) is [`super::shares`]. Every
//! unseal and seal is also a ceremony: the store's ceremony log gets an entry (how, by whom, and
//! for shares who gave which index when) — written before the audit record; if it cannot be
//! written the keys are dropped again (UNAVAILABLE), as for the audit record.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::backend::SoftwareBackend;
use crate::ceremony::{self, CeremonyEvent, Contribution, Operator};
use crate::keystore::StateAnchor;
use crate::keystore::{KeystoreError, Unsealed};
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{SealState, UnsealSecret};
use crate::state::anchor::{self as state_anchor, format_head};
use crate::state::audit::{self, AuditEntry};
use crate::state::auth::StateAuth;
use crate::state::identity::{self, Identity};
use crate::state::requests::{self, StoredState};
use crate::state::{verify, StateError};

use super::{decode, now_unix, pipeline, unavailable, Keys, SigningCore};

/// A key-store error at unseal, as the API reports it.
pub(crate) fn unseal_error(e: KeystoreError) -> CoreError {
    match e {
        KeystoreError::WrongPassphrase => CoreError::Precondition {
            code: "wrong-passphrase".into(),
            reason: "wrong passphrase: the key store stays sealed".into(),
        },
        KeystoreError::Hsm(e) if e.is_unavailable() => CoreError::KeyBackendUnavailable {
            reason: e.to_string(),
        },
        KeystoreError::NoPassphrase => CoreError::Precondition {
            code: "no-passphrase".into(),
            reason: "this key store has no passphrase: unseal it with Shamir shares".into(),
        },
        other => CoreError::Internal {
            reason: format!("cannot unseal: {other}"),
        },
    }
}

fn host_entry(core: &SigningCore, event: &str, principal: &str, detail: String) -> AuditEntry {
    AuditEntry {
        at: now_unix(),
        event: event.to_owned(),
        principal: principal.to_owned(),
        policy_hash: core.policy().hash.clone(),
        detail: Some(detail),
        ..AuditEntry::default()
    }
}

/// `Admin.Unseal`.
pub async fn unseal(
    core: &SigningCore,
    principal: &Principal,
    secret: UnsealSecret,
) -> CoreResult<SealState> {
    let passphrase = match secret {
        UnsealSecret::Passphrase(p) => p,
        UnsealSecret::Share(share) => return super::shares::offer(core, principal, share).await,
    };
    if core.keys().is_ok() {
        return Ok(SealState::Unsealed);
    }
    let store = core.keystore.clone();
    let unsealed = tokio::task::spawn_blocking(move || store.unseal(&passphrase))
        .await
        .map_err(|e| CoreError::Internal {
            reason: format!("unseal task failed: {e}"),
        })?
        .map_err(unseal_error)?;
    core.finish_unseal(
        unsealed,
        principal.as_str(),
        UnsealHow::Passphrase {
            place: "server (Admin.Unseal)",
        },
    )
}

/// How an unseal came about, for its records.
pub(crate) enum UnsealHow {
    /// The passphrase, at `place`.
    Passphrase {
        /// `server start` or `server (Admin.Unseal)`.
        place: &'static str,
    },
    /// A threshold of shares over the API.
    Shares {
        /// The share set, hex.
        set: String,
        /// Who gave which share, when.
        contributions: Vec<Contribution>,
    },
    /// The store's HSM slot, through the attached token (auto-unseal).
    Hsm {
        /// The token (`token 'custos'`).
        token: String,
    },
}

impl UnsealHow {
    fn event(&self, seeds: usize, wallets: usize) -> CeremonyEvent {
        match self {
            UnsealHow::Passphrase { place } => CeremonyEvent::Unseal {
                method: "passphrase".into(),
                place: (*place).into(),
                contributions: Vec::new(),
                share_set: None,
                seeds,
                wallets,
            },
            UnsealHow::Shares { set, contributions } => CeremonyEvent::Unseal {
                method: "shares".into(),
                place: "server (Admin.Unseal)".into(),
                contributions: contributions.clone(),
                share_set: Some(set.clone()),
                seeds,
                wallets,
            },
            UnsealHow::Hsm { token } => CeremonyEvent::Unseal {
                method: "hsm".into(),
                place: format!("server (auto-unseal, {token})"),
                contributions: Vec::new(),
                share_set: None,
                seeds,
                wallets,
            },
        }
    }

    /// The audit detail: how, and the share refusals and expiries since the last unseal.
    fn audit_detail(&self, journal: &[String]) -> String {
        let mut text = match self {
            UnsealHow::Passphrase { .. } => "passphrase".to_owned(),
            UnsealHow::Shares { set, contributions } => {
                let given: Vec<String> = contributions
                    .iter()
                    .map(|c| format!("share {} by {}", c.index, c.principal))
                    .collect();
                format!("shares of set {set}: {}", given.join(", "))
            }
            UnsealHow::Hsm { token } => format!("hsm slot through {token}"),
        };
        if !journal.is_empty() {
            text.push_str(&format!("; meanwhile: {}", journal.join("; ")));
        }
        text
    }
}

impl SigningCore {
    /// Everything after the KDF: the state checked, keys in, ceremony-log entry, audit record,
    /// anchor, state Unsealed, recovery pass.
    pub(crate) fn finish_unseal(
        &self,
        unsealed: Unsealed,
        principal: &str,
        how: UnsealHow,
    ) -> CoreResult<SealState> {
        let mut slot = self.keys.write().expect("key lock poisoned");
        if slot.is_some() {
            return Ok(SealState::Unsealed);
        }
        let software = SoftwareBackend::new();
        let seeds = unsealed.load_into(&software).map_err(unseal_error)?;
        let wallets: BTreeMap<_, _> = unsealed
            .wallets()
            .map_err(unseal_error)?
            .into_iter()
            .map(|w| (w.name.clone(), w))
            .collect();
        let backend = Arc::new(self.key_router(software, &wallets)?);
        let audit_key = unsealed.audit_key();
        self.state
            .set_auth(Some(StateAuth::new(unsealed.state_key())));
        let checked = self
            .check_state(&unsealed, &audit_key, principal)
            .and_then(|()| {
                ceremony::record(
                    &unsealed,
                    &Operator::system(principal),
                    &how.event(seeds, wallets.len()),
                )
                .map(|_| ())
                .map_err(|e| CoreError::StateUnavailable {
                    reason: format!("the ceremony log cannot be written: {e}"),
                })
            });
        let record = host_entry(
            self,
            "unseal",
            principal,
            format!(
                "{seeds} seed(s), {} wallet(s); {}; {}",
                wallets.len(),
                how.audit_detail(&self.take_share_journal()),
                self.policy().trust.summary()
            ),
        );
        let written = checked.and_then(|()| {
            self.state
                .transact(|tx| self.audit_in(tx, &audit_key, &record))
                .and_then(|_| self.flusher.flush_blocking())
                .map_err(unavailable)
        });
        if let Err(e) = written {
            self.state.set_auth(None);
            backend.seal();
            tracing::error!(error = %e, "unseal refused");
            return Err(e);
        }
        self.seal_reason
            .lock()
            .expect("seal reason lock poisoned")
            .take();
        let head = crate::state::outbox::head(&self.state).map_err(unavailable)?;
        self.outbox_head.send_replace(head);
        *slot = Some(Arc::new(Keys {
            unsealed,
            backend,
            wallets: RwLock::new(wallets),
            audit_key,
        }));
        drop(slot);
        self.anchor_now();
        self.seal.send_replace(SealState::Unsealed);
        tracing::info!(principal, "key store unsealed");
        self.recover();
        self.audit_tamper_reports();
        Ok(SealState::Unsealed)
    }

    /// The checks of the module doc (identity, anchor, full verification), with the state's
    /// records already unsealed.
    fn check_state(
        &self,
        unsealed: &Unsealed,
        audit_key: &crate::secret::Secret32,
        principal: &str,
    ) -> CoreResult<()> {
        let refuse = |reason: String| CoreError::Precondition {
            code: "state-rejected".into(),
            reason: format!("the state database is refused, the key store stays sealed: {reason}"),
        };
        match identity::check_or_init(&self.state, self.keystore.store_id()) {
            Ok(Identity::Known) => {}
            Ok(Identity::Adopted) => tracing::info!("a new, empty state database was adopted"),
            Err(StateError::Rollback(reason)) => return Err(refuse(reason)),
            Err(e) => return Err(unavailable(e)),
        }
        let anchor = unsealed.state_anchor().map_err(unseal_error)?;
        if let Some(anchor) = anchor {
            let head = (anchor.audit_sequence, anchor.audit_mac);
            match state_anchor::check(&self.state, head) {
                Ok(()) => {}
                Err(StateError::Rollback(reason)) if self.config.unsafe_accept_state_rollback => {
                    let now_head = audit::head_with_mac(&self.state).map_err(unavailable)?;
                    tracing::warn!(
                        reason,
                        "unsafe_accept_state_rollback is set: serving a state behind its anchor"
                    );
                    let record = host_entry(
                        self,
                        "state.rollback_accepted",
                        principal,
                        format!(
                            "{reason}; anchored head {}, state head {}; accepted by configuration",
                            format_head(head),
                            format_head(now_head)
                        ),
                    );
                    self.state
                        .transact(|tx| self.audit_in(tx, audit_key, &record))
                        .and_then(|_| self.flusher.flush_blocking())
                        .map_err(unavailable)?;
                }
                Err(StateError::Rollback(reason)) => {
                    return Err(CoreError::Precondition {
                        code: "state-rollback".into(),
                        reason: format!(
                            "{reason} (anchored head {}); the key store stays sealed. Restore \
                             the newest state, or accept the rollback explicitly",
                            format_head(head)
                        ),
                    })
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        // The full check. What makes the state as a whole untrustworthy refuses the unseal: a
        // digest that does not match means records were deleted, injected or rolled back one by
        // one (a reset ledger must not be served). A record that fails on its own, or a broken
        // audit record, is reported and never acted on, and the others are served.
        let report = verify::verify(&self.state, audit_key, None).map_err(unavailable)?;
        if let Some(problem) = &report.digest_problem {
            if let Some(metrics) = self.metrics() {
                metrics.record_tampered("digest");
            }
            let mut reason = problem.clone();
            if report.bad_count > 0 {
                reason.push_str(&format!(
                    "; {} record(s) fail authentication (custos state verify lists them)",
                    report.bad_count
                ));
            }
            return Err(refuse(reason));
        }
        for bad in &report.bad {
            self.tamper.report(&StateError::Tampered {
                tree: bad.tree,
                key: bad.key.clone(),
                reason: bad.reason.clone(),
            });
        }
        if let verify_outcome @ crate::state::audit::VerifyOutcome::Broken { .. } = &report.audit {
            if let Some(metrics) = self.metrics() {
                metrics.record_tampered("audit");
            }
            tracing::error!(audit = ?verify_outcome, "the audit chain is broken; serving, and recording it");
            self.tamper.report(&StateError::Tampered {
                tree: "audit",
                key: "chain".into(),
                reason: report.problems().join("; "),
            });
        }
        Ok(())
    }

    /// Writes the current audit head into the key store (best effort: a failure is logged; the
    /// previous anchor stays, which only makes the rollback check older, never wrong).
    pub fn anchor_now(&self) {
        let Ok(keys) = self.keys() else { return };
        // Admitted, so the state is not reopened between the read and the flush; the head is
        // anchored only once the flush made it durable (never ahead of what is on disk).
        let Ok(_admitted) = self.storage.try_admit() else {
            return;
        };
        let written = audit::head_with_mac(&self.state)
            .and_then(|head| self.flusher.flush_blocking().map(|()| head))
            .map_err(|e| e.to_string())
            .and_then(|(seq, mac)| {
                keys.unsealed
                    .set_state_anchor(&StateAnchor {
                        audit_sequence: seq,
                        audit_mac: mac,
                        written_at: now_unix(),
                    })
                    .map_err(|e| e.to_string())
            });
        if let Err(error) = written {
            tracing::error!(%error, "the audit head could not be anchored in the key store");
        }
    }

    /// Signs the requests a crash left `authorized` (see the module docs). Failures are logged;
    /// a retry of the request completes it as well.
    fn recover(&self) {
        let Ok(keys) = self.keys() else { return };
        let pending = match requests::scan_state(&self.state, StoredState::Authorized) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "recovery pass: cannot read requests");
                return;
            }
        };
        for r in pending {
            let id = r.request_id.clone();
            let done = keys.wallet(&r.wallet).and_then(|wallet| {
                let policy = self.policy();
                let decoded =
                    decode::decode(&wallet, &r.payload, &policy.tokens, &self.config.bitcoin)?;
                match pipeline::recheck_authorization(self, &keys, &r, &decoded, now_unix())? {
                    Some(ended) => Ok(ended),
                    None => pipeline::sign_and_commit(self, &keys, r, decoded, &wallet),
                }
            });
            match done.and_then(|d| {
                self.flusher
                    .flush_blocking()
                    .map_err(unavailable)
                    .map(|_| d)
            }) {
                Ok(d) => {
                    super::outbox::notify(self, &d);
                    tracing::info!(request_id = %id, state = ?d.state, "recovery pass completed a request");
                }
                Err(e) => tracing::error!(request_id = %id, error = %e, "recovery pass failed"),
            }
        }
    }
}

/// `Admin.Seal` (and the host's seal command): audit, then forget every key.
pub async fn seal(core: &SigningCore, principal: &str) -> CoreResult<SealState> {
    let taken = core.keys.write().expect("key lock poisoned").take();
    core.reset_share_session();
    core.seal.send_replace(SealState::Sealed);
    core.set_seal_reason(format!("sealed by {principal}"));
    if let Some(keys) = taken {
        if let Err(e) = ceremony::record(
            &keys.unsealed,
            &Operator::system(principal),
            &CeremonyEvent::Seal {
                place: "server (Admin.Seal)".into(),
            },
        ) {
            tracing::error!(error = %e, "the seal could not be recorded in the ceremony log; sealed anyway");
        }
        let record = host_entry(core, "seal", principal, "keys dropped from memory".into());
        let written = core
            .state
            .transact(|tx| core.audit_with_mac_in(tx, &keys.audit_key, &record));
        let flushed = match written {
            Ok(head) => core.flusher.flush().await.map(|()| head),
            Err(e) => Err(e),
        };
        match flushed {
            Ok((seq, mac)) => {
                if let Err(error) = keys.unsealed.set_state_anchor(&StateAnchor {
                    audit_sequence: seq,
                    audit_mac: mac,
                    written_at: now_unix(),
                }) {
                    tracing::error!(%error, "the audit head could not be anchored at seal");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the seal record could not be written; sealed anyway")
            }
        }
        core.state.set_auth(None);
        keys.backend.seal();
        keys.wallets.write().expect("wallet lock poisoned").clear();
        drop(keys);
        tracing::info!(principal, "key store sealed");
    }
    Ok(SealState::Sealed)
}
