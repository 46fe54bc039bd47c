//! [`CoreError`]: why the core refused or failed a call. Each variant has one stable code
//! ([`CoreError::code`]); the gRPC edge maps each to one status in exactly one place
//! (`crate::service::status`). Messages never contain secrets.

use super::core::Privilege;

/// Why the core refused or failed a call. Each variant maps to one gRPC code and one stable
/// machine-readable code ([`CoreError::code`]); messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A request field is malformed (INVALID_ARGUMENT).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API.
        field: String,
        /// What was expected and what came.
        reason: String,
    },
    /// The payload could not be parsed or explained (INVALID_ARGUMENT), with the chain module's
    /// stable code (`psbt-missing-utxo`, `eth-chain-id-mismatch`, ...).
    #[error("invalid payload: {reason}")]
    InvalidPayload {
        /// Stable code.
        code: String,
        /// What was wrong.
        reason: String,
    },
    /// The policy refused the request (PERMISSION_DENIED): a rule, a limit, or the default deny.
    #[error("denied by policy rule '{rule}': {reason}")]
    PolicyDenied {
        /// The rule that decided.
        rule: String,
        /// Stable code (`policy-deny-limit-daily`, `policy-default-deny`, ...).
        code: String,
        /// Human explanation.
        reason: String,
    },
    /// The principal lacks the privilege the method needs (PERMISSION_DENIED).
    #[error("principal '{principal}' does not have the {privilege} role")]
    Forbidden {
        /// Who asked.
        principal: String,
        /// What was needed.
        privilege: Privilege,
    },
    /// No usable identity (UNAUTHENTICATED).
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Why the identity could not be established.
        reason: String,
    },
    /// The request id was used before with a different payload (ALREADY_EXISTS).
    #[error("request id '{request_id}' was already used with a different payload")]
    RequestIdConflict {
        /// The reused id.
        request_id: String,
    },
    /// An unknown wallet, request or seed (NOT_FOUND).
    #[error("{what} '{id}' not found")]
    NotFound {
        /// "wallet", "request", "seed".
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The key store is sealed (FAILED_PRECONDITION, code `sealed`).
    #[error("sealed: unseal the key store before signing")]
    Sealed,
    /// The request cannot proceed in its current state (FAILED_PRECONDITION), e.g. approving a
    /// request that is no longer pending (`not-pending`).
    #[error("{reason}")]
    Precondition {
        /// Stable code.
        code: String,
        /// Why.
        reason: String,
    },
    /// The state store or the audit log cannot be written (UNAVAILABLE). Nothing was signed.
    #[error("state unavailable: {reason}")]
    StateUnavailable {
        /// What failed (no secrets, no payloads).
        reason: String,
    },
    /// A state record the call needed fails authentication: it was edited, moved, rolled back
    /// or comes from another installation (DATA_LOSS, code `state-tampered`). It was not acted
    /// on; the failure is logged, counted and audited.
    #[error("state integrity: {reason}")]
    StateTampered {
        /// Which record, and why (no payloads, no secrets).
        reason: String,
    },
    /// A key backend (an HSM token) cannot be used now: absent, removed, failing, locked or busy
    /// (UNAVAILABLE, code `hsm-unavailable`). Nothing was signed; the request is kept and a retry
    /// with the same request id signs it once the token is back.
    #[error("hsm unavailable: {reason}; nothing was signed, retry with the same request id")]
    KeyBackendUnavailable {
        /// What is wrong, naming the token.
        reason: String,
    },
    /// The method is not available in this build or configuration (UNIMPLEMENTED).
    #[error("not implemented: {what}")]
    NotImplemented {
        /// What is missing.
        what: String,
    },
    /// A bug or an unexpected failure (INTERNAL).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

impl CoreError {
    /// The stable code carried in the `custos-code` metadata and at the start of the message.
    pub fn code(&self) -> &str {
        match self {
            CoreError::InvalidArgument { .. } => "invalid-argument",
            CoreError::InvalidPayload { code, .. } => code,
            CoreError::PolicyDenied { code, .. } => code,
            CoreError::Forbidden { .. } => "forbidden",
            CoreError::Unauthenticated { .. } => "unauthenticated",
            CoreError::RequestIdConflict { .. } => "request-id-conflict",
            CoreError::NotFound { .. } => "not-found",
            CoreError::Sealed => "sealed",
            CoreError::Precondition { code, .. } => code,
            CoreError::StateUnavailable { .. } => "state-unavailable",
            CoreError::KeyBackendUnavailable { .. } => "hsm-unavailable",
            CoreError::StateTampered { .. } => "state-tampered",
            CoreError::NotImplemented { .. } => "not-implemented",
            CoreError::Internal { .. } => "internal",
        }
    }

    /// Shorthand for [`CoreError::InvalidArgument`].
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The result of every core call.
pub type CoreResult<T> = Result<T, CoreError>;
