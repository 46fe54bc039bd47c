//! The HSM beside the key store: which wallets sign on it, unsealing through it at start, and
//! what the status reports about it.
//!
//! The server attaches the token once, before unsealing ([`SigningCore::attach_hsm`]), with the
//! wallets chosen in `custos.toml` (`[hsm] wallets`, names or `"*"` for every wallet of the store
//! that the HSM can hold). At each unseal the wallets chosen are put on the token
//! ([`SigningCore::key_router`]); every other wallet signs in software. A wallet named explicitly
//! that cannot live on an HSM (taproot) makes the unseal fail with the reason, since signing it in
//! software would go against the configuration; with `"*"` it stays in software and the log says
//! so. A wallet created later through `Admin.CreateWallet` is put on the token if chosen, and a
//! chosen taproot wallet is refused when it is created.
//!
//! Auto-unseal ([`SigningCore::unseal_with_hsm`]) opens the store through `slot/pkcs11` with the
//! attached token. When it cannot (no slot, token absent or locked, key refused) the server starts
//! sealed and the reason is kept for `Admin.Status` ([`SigningCore::seal_reason`]) and logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::pkcs11::wallets::check_purpose;
use crate::backend::pkcs11::{HsmWallets, Pkcs11Backend};
use crate::backend::{KeyRouter, SoftwareBackend};
use crate::keys::Purpose;
use crate::keystore::KeystoreError;
use crate::signing::contract::{CoreError, CoreResult};
use crate::signing::contract::{HsmStatusInfo, SealState};
use crate::wallet::Wallet;

use super::SigningCore;

/// The principal recorded for an unseal through the HSM at start.
pub const HSM_UNSEAL_PRINCIPAL: &str = "host:hsm-auto-unseal";

/// The token and the wallets that sign on it.
pub struct HsmAttachment {
    /// The token.
    pub backend: Arc<Pkcs11Backend>,
    /// Wallet names, or `"*"` for every wallet the HSM can hold.
    pub wallets: Vec<String>,
}

impl std::fmt::Debug for HsmAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmAttachment")
            .field("token", &self.backend.token().name())
            .field("wallets", &self.wallets)
            .finish()
    }
}

impl HsmAttachment {
    /// Whether the configuration puts `name` on the token.
    pub fn selects(&self, name: &str) -> bool {
        self.wallets.iter().any(|w| w == "*" || w == name)
    }

    /// Whether `name` is chosen by name (not only through `"*"`).
    fn names(&self, name: &str) -> bool {
        self.wallets.iter().any(|w| w == name)
    }
}

impl SigningCore {
    /// Attaches the token (once, before unsealing). A second attachment is refused and returned.
    pub fn attach_hsm(&self, hsm: HsmAttachment) -> Result<(), HsmAttachment> {
        self.hsm.set(hsm)
    }

    /// The attached token, if any.
    pub fn hsm(&self) -> Option<&HsmAttachment> {
        self.hsm.get()
    }

    /// Why the core is sealed, when it is and a reason is known (auto-unseal failed, no way to
    /// unseal was configured, sealed by an operator).
    pub fn seal_reason(&self) -> Option<String> {
        if self.keys().is_ok() {
            return None;
        }
        self.seal_reason
            .lock()
            .expect("seal reason lock poisoned")
            .clone()
    }

    /// Records why the core is sealed (shown by `Admin.Status` while it stays sealed).
    pub fn set_seal_reason(&self, reason: impl Into<String>) {
        *self.seal_reason.lock().expect("seal reason lock poisoned") = Some(reason.into());
    }

    /// Unseals through the store's HSM slot with the attached token; audited as
    /// [`HSM_UNSEAL_PRINCIPAL`]. On failure the core stays sealed and the reason is kept.
    pub fn unseal_with_hsm(&self) -> CoreResult<SealState> {
        let result = self.try_unseal_with_hsm();
        if let Err(e) = &result {
            self.set_seal_reason(format!("auto-unseal through the hsm failed: {e}"));
        }
        result
    }

    fn try_unseal_with_hsm(&self) -> CoreResult<SealState> {
        let Some(hsm) = self.hsm() else {
            return Err(CoreError::Precondition {
                code: "hsm-not-configured".into(),
                reason: "no [hsm] section in the configuration".into(),
            });
        };
        let unsealed = self
            .keystore
            .unseal_with_token(hsm.backend.token())
            .map_err(|e| match e {
                KeystoreError::MissingRecord { .. } => CoreError::Precondition {
                    code: "hsm-slot-missing".into(),
                    reason:
                        "the key store has no hsm slot (add one with `custos hsm unseal-slot add`)"
                            .into(),
                },
                KeystoreError::Hsm(e) if e.is_unavailable() => CoreError::KeyBackendUnavailable {
                    reason: e.to_string(),
                },
                other => CoreError::Precondition {
                    code: "hsm-unseal-refused".into(),
                    reason: other.to_string(),
                },
            })?;
        let token = hsm.backend.status().token;
        self.finish_unseal(
            unsealed,
            HSM_UNSEAL_PRINCIPAL,
            super::seal::UnsealHow::Hsm { token },
        )
    }

    /// The key router for one unseal: `software`, and the attached token for the wallets the
    /// configuration puts on it.
    pub(crate) fn key_router(
        &self,
        software: SoftwareBackend,
        wallets: &BTreeMap<String, Wallet>,
    ) -> CoreResult<KeyRouter> {
        let Some(hsm) = self.hsm() else {
            return Ok(KeyRouter::new(software));
        };
        let on_token = HsmWallets::new(hsm.backend.clone());
        // Wallets with generated keys exist only on the token: always there.
        for wallet in wallets
            .values()
            .filter(|w| hsm.selects(&w.name) || w.account.is_generated())
        {
            match on_token.add(wallet.clone()) {
                Ok(()) => {}
                Err(e) if hsm.names(&wallet.name) => {
                    return Err(CoreError::Precondition {
                        code: "hsm-wallet-refused".into(),
                        reason: format!("[hsm] wallets names '{}': {e}", wallet.name),
                    })
                }
                Err(e) => {
                    tracing::info!(wallet = %wallet.name, reason = %e, "wallet stays on the software backend")
                }
            }
        }
        for name in hsm.wallets.iter().filter(|w| *w != "*") {
            if !wallets.contains_key(name) {
                tracing::warn!(wallet = %name, "[hsm] wallets names a wallet the key store does not hold (yet)");
            }
        }
        tracing::info!(
            token = hsm.backend.token().name(),
            wallets = ?on_token.wallet_names(),
            "wallets signing on the hsm"
        );
        Ok(KeyRouter::with_hsm(software, on_token))
    }

    /// Refuses a new wallet the configuration names for the token but the token cannot hold
    /// (with `"*"` such a wallet simply stays on the software backend).
    pub(crate) fn check_new_wallet(&self, name: &str, purpose: Purpose) -> CoreResult<()> {
        match self.hsm() {
            Some(hsm) if hsm.names(name) => {
                check_purpose(name, purpose).map_err(|e| CoreError::Precondition {
                    code: "hsm-wallet-refused".into(),
                    reason: e.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Puts a wallet created while unsealed on the token, if the configuration chooses it.
    pub(crate) fn register_new_wallet(&self, router: &KeyRouter, wallet: &Wallet) {
        let (Some(hsm), Some(on_token)) = (self.hsm(), router.hsm()) else {
            return;
        };
        if hsm.selects(&wallet.name) {
            if let Err(e) = on_token.add(wallet.clone()) {
                tracing::info!(wallet = %wallet.name, reason = %e, "wallet stays on the software backend");
            }
        }
    }

    /// What `Admin.Status` reports about the token.
    pub(crate) fn hsm_status(&self) -> Option<HsmStatusInfo> {
        let hsm = self.hsm()?;
        let status = hsm.backend.status();
        let wallets = self
            .keys()
            .ok()
            .and_then(|k| k.backend.hsm().map(|h| h.wallet_names()))
            .unwrap_or_default();
        Some(HsmStatusInfo {
            token: status.token,
            module: status.module.display().to_string(),
            available: status.available,
            detail: status.detail,
            wallets,
            sessions_open: status.sessions.0 as u32,
            sessions_max: status.sessions.1 as u32,
        })
    }
}
