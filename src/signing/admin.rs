//! Status, wallets, addresses and policy reload.
//!
//! Policy reload reads and validates the configured file and checks its compliance signatures
//! ([`super::policy_load`]); an invalid file leaves the running policy in place and answers
//! `FAILED_PRECONDITION policy-invalid` with the `file:line:column` messages, one without a
//! threshold of valid signatures `FAILED_PRECONDITION policy-unsigned` naming who signed and how
//! many are missing; a valid, signed one is swapped in. Every outcome is audited (with the
//! running and the new hash, and the signers), so a reload needs the audit key: while sealed it
//! is refused (`sealed`).

use std::sync::Arc;

use crate::ceremony::{self, CeremonyEvent, Operator, WalletFact};
use crate::keys::{Chain, Network, Purpose};
use crate::keystore::KeystoreError;
use crate::signing::contract::Principal;
use crate::signing::contract::{
    AddressInfo, CreateWallet, PolicyReload, StatusInfo, UnsealerInfo, WalletSummary,
};
use crate::signing::contract::{CoreError, CoreResult, Privilege, SignerCore};
use crate::state::audit::AuditEntry;
use crate::wallet::Wallet;

use super::access::Access;
use super::{now_unix, policy_load, unavailable, SigningCore};

/// `Admin.Status`.
pub fn status(core: &SigningCore, principal: &Principal) -> CoreResult<StatusInfo> {
    core.expire_share_session(now_unix());
    let policy = core.policy();
    // Public facts of the store's slots; a store that cannot say is reported as having none.
    let unsealers = core
        .keystore
        .unsealers()
        .map(|u| UnsealerInfo {
            passphrase: u.passphrase.is_some(),
            share_threshold: u.shares.as_ref().map_or(0, |s| u32::from(s.threshold)),
            share_count: u.shares.as_ref().map_or(0, |s| u32::from(s.count)),
        })
        .unwrap_or_default();
    Ok(StatusInfo {
        seal: *core.seal.borrow(),
        policy_hash: Some(policy.hash.clone()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        principal: principal.to_string(),
        roles: policy
            .policy
            .roles_of(principal.as_str())
            .into_iter()
            .map(str::to_owned)
            .collect(),
        outbox_head: core.durable_outbox_head(),
        seal_reason: core.seal_reason(),
        hsm: core.hsm_status(),
        unsealers,
    })
}

/// The API summary of a wallet.
pub fn summary(w: &Wallet) -> WalletSummary {
    WalletSummary {
        name: w.name.clone(),
        chain: w.chain(),
        network: w.network().name(),
        account_path: w.account.path_text(),
        master_fingerprint: w.account.master_fingerprint.to_string(),
        account_xpub: w.account.slip132_xpub(),
        descriptor: match w.chain() {
            Chain::Bitcoin => w.account.descriptor(false).ok(),
            Chain::Ethereum => None,
        },
    }
}

fn keystore_error(e: KeystoreError) -> CoreError {
    match e {
        KeystoreError::InvalidWalletName { .. } => CoreError::invalid("name", e.to_string()),
        KeystoreError::DuplicateWallet(_) => CoreError::Precondition {
            code: "wallet-exists".into(),
            reason: e.to_string(),
        },
        KeystoreError::KeyInUse { .. } => CoreError::Precondition {
            code: "key-in-use".into(),
            reason: e.to_string(),
        },
        KeystoreError::UnknownSeed(id) => CoreError::NotFound { what: "seed", id },
        KeystoreError::AmbiguousSeed(_) => CoreError::invalid("seed", e.to_string()),
        other => CoreError::Internal {
            reason: other.to_string(),
        },
    }
}

/// `Admin.CreateWallet` (audited).
pub async fn create_wallet(
    core: &SigningCore,
    principal: &Principal,
    req: CreateWallet,
) -> CoreResult<WalletSummary> {
    core.authorize(principal, Privilege::Admin)?;
    let keys = core.keys()?;
    let network = Network::parse(req.chain, &req.network)
        .map_err(|e| CoreError::invalid("network", e.to_string()))?;
    let purpose = match (req.purpose, req.chain) {
        (Some(n), _) => {
            Purpose::try_from(n).map_err(|e| CoreError::invalid("purpose", e.to_string()))?
        }
        (None, Chain::Bitcoin) => Purpose::Bip84,
        (None, Chain::Ethereum) => Purpose::Bip44,
    };
    core.check_new_wallet(&req.name, purpose)?;
    let seed = req.seed.clone().map(crate::backend::SeedId);
    let wallet = keys
        .unsealed
        .create_wallet_recorded(
            seed.as_ref(),
            &req.name,
            network,
            purpose,
            req.account,
            |wallet| {
                ceremony::draft(
                    &Operator::system(principal.as_str()),
                    &CeremonyEvent::WalletCreate {
                        wallet: WalletFact::of(wallet),
                        place: "server (Admin.CreateWallet)".into(),
                        unsealed_by: None,
                    },
                )
            },
        )
        .map_err(keystore_error)?;
    core.register_new_wallet(&keys.backend, &wallet);
    let record = AuditEntry {
        at: now_unix(),
        event: "wallet.create".into(),
        principal: principal.to_string(),
        wallet: Some(wallet.name.clone()),
        policy_hash: core.policy().hash.clone(),
        detail: Some(format!("{} {}", network.name(), wallet.account.path)),
        ..AuditEntry::default()
    };
    core.state
        .transact(|tx| core.audit_in(tx, &keys.audit_key, &record))
        .map_err(unavailable)?;
    core.flusher.flush().await.map_err(unavailable)?;
    keys.wallets
        .write()
        .expect("wallet lock poisoned")
        .insert(wallet.name.clone(), wallet.clone());
    Ok(summary(&wallet))
}

/// `Admin.ReloadPolicy` (see the module docs): admin principals only.
pub async fn reload_policy(core: &SigningCore, principal: &Principal) -> CoreResult<PolicyReload> {
    core.authorize(principal, Privilege::Admin)?;
    reload_policy_as(core, &principal.to_string()).await
}

/// Reloads the policy file on behalf of `who` without a role check: for triggers that only the
/// host can pull (SIGHUP). Validation and the audit record are exactly those of
/// `Admin.ReloadPolicy`; an invalid file keeps the running policy.
pub async fn reload_policy_as(core: &SigningCore, who: &str) -> CoreResult<PolicyReload> {
    let keys = core.keys()?;
    let old = core.policy();
    let loaded = policy_load::load(&core.config);
    let (event, new_hash, detail) = match &loaded {
        Ok(p) => (
            "policy.reload",
            p.hash.clone(),
            format!("previous {}; {}", old.hash, p.trust.summary()),
        ),
        Err(e) => (
            "policy.reload.refused",
            old.hash.clone(),
            format!("policy file kept out: {e}"),
        ),
    };
    let record = AuditEntry {
        at: now_unix(),
        event: event.into(),
        principal: who.to_owned(),
        policy_hash: new_hash.clone(),
        detail: Some(detail),
        ..AuditEntry::default()
    };
    core.state
        .transact(|tx| core.audit_in(tx, &keys.audit_key, &record))
        .map_err(unavailable)?;
    core.flusher.flush().await.map_err(unavailable)?;
    match loaded {
        Ok(policy) => {
            *core.policy.write().expect("policy lock poisoned") = Arc::new(policy);
            tracing::info!(previous = %old.hash, hash = %new_hash, "policy reloaded");
            Ok(PolicyReload {
                previous_hash: old.hash.clone(),
                hash: new_hash,
            })
        }
        Err(e) => Err(CoreError::Precondition {
            code: e.code().into(),
            reason: match e {
                policy_load::PolicyLoadError::Invalid(_) => {
                    format!("the new policy is invalid; the running one stays:\n{e}")
                }
                _ => format!("the new policy is refused; the running one stays: {e}"),
            },
        }),
    }
}

/// `Signer.ListWallets`: admins see every wallet; others the wallets some allow or
/// require-approval rule reaches them on ([`super::access`]).
pub fn list_wallets(core: &SigningCore, principal: &Principal) -> CoreResult<Vec<WalletSummary>> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    access.require_a_role()?;
    let keys = core.keys()?;
    let wallets = keys.wallets.read().expect("wallet lock poisoned");
    let out = wallets
        .values()
        .filter(|w| access.may_see_wallet(w))
        .map(summary)
        .collect();
    Ok(out)
}

/// `Signer.GetAddress`: for the principals that may see the wallet; others get NOT_FOUND, as for
/// an unknown wallet.
pub fn get_address(
    core: &SigningCore,
    principal: &Principal,
    wallet: &str,
    change: bool,
    index: u32,
) -> CoreResult<AddressInfo> {
    let policy = core.policy();
    let access = Access::new(&policy.policy, principal.as_str());
    access.require_a_role()?;
    let keys = core.keys()?;
    let w = keys.wallet(wallet)?;
    if !access.may_see_wallet(&w) {
        return Err(CoreError::NotFound {
            what: "wallet",
            id: wallet.to_owned(),
        });
    }
    let address = w
        .address(change, index)
        .map_err(|e| CoreError::invalid("index", e.to_string()))?;
    let path = w.account.child_path(change, index).to_string();
    Ok(AddressInfo {
        address,
        derivation_path: if path.starts_with('m') {
            path
        } else {
            format!("m/{path}")
        },
    })
}
