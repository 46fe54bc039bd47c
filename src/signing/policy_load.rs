//! Loading the policy the core enforces: the file is parsed and validated, and its compliance
//! signatures are checked against the officers `custos.toml` pins
//! ([`crate::governance::policy_sig`]) — at open (so `custos serve` refuses to start), on SIGHUP
//! and on `Admin.ReloadPolicy` (which keep the running policy). In development mode
//! (`allow_unsigned_policy`) an unsigned policy is loaded, and every load says so loudly: a
//! warning in the log, and the unseal and reload audit records.

use std::path::Path;

use crate::governance::policy_sig::{signature_path, SignatureFile, TrustReport};
use crate::policy::{Policy, PolicyErrors};

use super::{CoreConfig, LoadedPolicy};

/// Why a policy may not take effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// The file is invalid (file:line:column messages).
    #[error("{0}")]
    Invalid(PolicyErrors),
    /// Too few compliance signatures.
    #[error("{}", .0.refusal())]
    Unsigned(Box<TrustReport>),
    /// The signature file cannot be read.
    #[error("{0}")]
    SignatureFile(String),
}

impl PolicyLoadError {
    /// The stable code of the refusal (`policy-invalid`, `policy-unsigned`).
    pub fn code(&self) -> &'static str {
        match self {
            PolicyLoadError::Invalid(_) => "policy-invalid",
            PolicyLoadError::Unsigned(_) | PolicyLoadError::SignatureFile(_) => "policy-unsigned",
        }
    }
}

/// The signature file of the configured policy.
pub fn signatures_of(config: &CoreConfig) -> std::path::PathBuf {
    config
        .policy_signatures
        .clone()
        .unwrap_or_else(|| signature_path(&config.policy_path))
}

/// Reads, validates and checks the signatures of the configured policy.
pub(crate) fn load(config: &CoreConfig) -> Result<LoadedPolicy, PolicyLoadError> {
    let policy = Policy::load(&config.policy_path).map_err(PolicyLoadError::Invalid)?;
    let trust = check(config, &policy.hash(), &signatures_of(config))?;
    if trust.threshold_met() {
        tracing::info!(policy = %config.policy_path.display(), "{}", trust.summary());
    } else {
        tracing::warn!(policy = %config.policy_path.display(), "{}", trust.summary());
    }
    Ok(LoadedPolicy::new(policy, trust))
}

fn check(config: &CoreConfig, hash: &str, sigs: &Path) -> Result<TrustReport, PolicyLoadError> {
    let file = match SignatureFile::read(sigs) {
        Ok(f) => f,
        // In development mode an unreadable signature file is reported, not fatal.
        Err(e) if config.policy_trust.is_development() => {
            tracing::warn!(error = %e, "policy signature file unreadable");
            None
        }
        Err(e) => return Err(PolicyLoadError::SignatureFile(e.to_string())),
    };
    let report = config.policy_trust.check(hash, file.as_ref());
    if report.accepted() {
        Ok(report)
    } else {
        Err(PolicyLoadError::Unsigned(Box::new(report)))
    }
}
