//! Seal and unseal.
//!
//! The core holds the key store open for its whole life (the directory's lock: an admin command
//! run meanwhile gets "in use") and starts sealed. Unsealing with the passphrase runs argon2id (on
//! the blocking pool), loads every seed into a [`SoftwareBackend`], reads the wallets, keeps the
//! audit key, appends the `unseal` record — if that record cannot be written the keys are dropped
//! again and the caller gets UNAVAILABLE — and then runs the **recovery pass**: requests a crash
//! left `authorized` (committed, never signed) are signed into the outbox now, without reserving
//! again. Sealing appends the `seal` record while the audit key still exists, then drops every key
//! (backend, wallets, DEK, audit key). Sealing always seals: if its record cannot be written, the
//! keys are dropped anyway and the failure is logged (a seal is the safe direction).
//!
//! Unsealing with Shamir shares (one share per `Admin.Unseal` call) is [`super::shares`]. Every
//! unseal and seal is also a ceremony: the store's ceremony log gets an entry (how, by whom, and
//! for shares who gave which index when) — written before the audit record; if it cannot be
//! written the keys are dropped again (UNAVAILABLE), as for the audit record.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::backend::SoftwareBackend;
use crate::ceremony::{self, CeremonyEvent, Contribution, Operator};
use crate::keystore::{KeystoreError, Unsealed};
use crate::service::core::{CoreError, CoreResult};
use crate::service::model::{SealState, UnsealSecret};
use crate::service::principal::Principal;
use crate::state::audit::AuditEntry;
use crate::state::requests::{self, StoredState};

use super::{decode, now_unix, pipeline, unavailable, Keys, SigningCore};

/// A key-store error at unseal, as the API reports it.
pub(crate) fn unseal_error(e: KeystoreError) -> CoreError {
    match e {
        KeystoreError::WrongPassphrase => CoreError::Precondition {
            code: "wrong-passphrase".into(),
            reason: "wrong passphrase: the key store stays sealed".into(),
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
        /// Refusals and expiries since the last unseal.
        journal: Vec<String>,
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
            UnsealHow::Shares {
                set, contributions, ..
            } => CeremonyEvent::Unseal {
                method: "shares".into(),
                place: "server (Admin.Unseal)".into(),
                contributions: contributions.clone(),
                share_set: Some(set.clone()),
                seeds,
                wallets,
            },
        }
    }

    fn audit_detail(&self) -> String {
        match self {
            UnsealHow::Passphrase { .. } => "passphrase".into(),
            UnsealHow::Shares {
                set,
                contributions,
                journal,
            } => {
                let given: Vec<String> = contributions
                    .iter()
                    .map(|c| format!("share {} by {}", c.index, c.principal))
                    .collect();
                let mut text = format!("shares of set {set}: {}", given.join(", "));
                if !journal.is_empty() {
                    text.push_str(&format!("; meanwhile: {}", journal.join("; ")));
                }
                text
            }
        }
    }
}

impl SigningCore {
    /// Everything after the KDF: keys in, ceremony-log entry, audit record, state Unsealed,
    /// recovery pass.
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
        let backend = SoftwareBackend::new();
        let seeds = unsealed.load_into(&backend).map_err(unseal_error)?;
        let wallets: BTreeMap<_, _> = unsealed
            .wallets()
            .map_err(unseal_error)?
            .into_iter()
            .map(|w| (w.name.clone(), w))
            .collect();
        let audit_key = unsealed.audit_key();
        if let Err(e) = ceremony::record(
            &unsealed,
            &Operator::system(principal),
            &how.event(seeds, wallets.len()),
        ) {
            backend.seal();
            tracing::error!(error = %e, "the unseal could not be recorded in the ceremony log; staying sealed");
            return Err(CoreError::StateUnavailable {
                reason: format!("the ceremony log cannot be written: {e}"),
            });
        }
        let record = host_entry(
            self,
            "unseal",
            principal,
            format!(
                "{seeds} seed(s), {} wallet(s); {}",
                wallets.len(),
                how.audit_detail()
            ),
        );
        let written = self
            .state
            .transact(|tx| self.audit_in(tx, &audit_key, &record))
            .and_then(|_| self.flusher.flush_blocking());
        if let Err(e) = written {
            backend.seal();
            return Err(unavailable(e));
        }
        *slot = Some(Arc::new(Keys {
            unsealed,
            backend,
            wallets: RwLock::new(wallets),
            audit_key,
        }));
        drop(slot);
        self.seal.send_replace(SealState::Unsealed);
        tracing::info!(principal, "key store unsealed");
        self.recover();
        Ok(SealState::Unsealed)
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
                pipeline::sign_and_commit(self, &keys, r, decoded, &wallet)
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
            .transact(|tx| core.audit_in(tx, &keys.audit_key, &record));
        let flushed = match written {
            Ok(_) => core.flusher.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            tracing::error!(error = %e, "the seal record could not be written; sealed anyway");
        }
        keys.backend.seal();
        keys.wallets.write().expect("wallet lock poisoned").clear();
        drop(keys);
        tracing::info!(principal, "key store sealed");
    }
    Ok(SealState::Sealed)
}
