//! Events the host (the process running the core, not a network caller) records in the audit
//! chain: configuration that weakens a check, for instance, so that an auditor reading the chain
//! sees under which options the signatures after it were made.

use crate::chains::bitcoin::SignOptions;
use crate::signing::contract::CoreResult;
use crate::state::audit::AuditEntry;

use super::{now_unix, unavailable, SigningCore, HOST_PRINCIPAL};

/// The audit event of a weakened option in force ([`SigningCore::audit_weakened_options`]).
pub const WEAKENED_EVENT: &str = "config.weakened";

impl SigningCore {
    /// The Bitcoin sign options the core decodes and signs with.
    pub fn bitcoin_options(&self) -> &SignOptions {
        &self.config.bitcoin
    }

    /// Appends a host event (principal [`HOST_PRINCIPAL`]) to the audit chain and flushes it;
    /// returns its sequence number. Needs the audit key: `Sealed` while sealed.
    pub async fn record_host_event(&self, event: &str, detail: String) -> CoreResult<u64> {
        let keys = self.keys()?;
        let record = AuditEntry {
            at: now_unix(),
            event: event.to_owned(),
            principal: HOST_PRINCIPAL.to_owned(),
            policy_hash: self.policy().hash.clone(),
            detail: Some(detail),
            ..AuditEntry::default()
        };
        let seq = self
            .state
            .transact(|tx| self.audit_in(tx, &keys.audit_key, &record))
            .map_err(unavailable)?;
        self.flusher.flush().await.map_err(unavailable)?;
        Ok(seq)
    }

    /// Records one [`WEAKENED_EVENT`] per option set below its safe default (see
    /// [`SignOptions::weakenings`]); returns how many. `custos serve` calls it whenever the core
    /// becomes unsealed, so every unsealed period of the audit chain shows them.
    pub async fn audit_weakened_options(&self) -> CoreResult<usize> {
        let weakenings = self.config.bitcoin.weakenings();
        for weakening in &weakenings {
            self.record_host_event(WEAKENED_EVENT, weakening.to_string())
                .await?;
        }
        Ok(weakenings.len())
    }
}
