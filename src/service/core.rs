//! The contract between the gRPC edge and the transport-free signing core.
//!
//! Handlers authenticate the caller (a [`Principal`] from the client certificate), translate the
//! protobuf request into the plain types of [`super::model`], call one [`SignerCore`] method and
//! translate the answer back; a [`CoreError`] becomes a gRPC status in exactly one place
//! (`super::status`). The signing pipeline (`crate::signing`) implements this trait against the
//! key store, chains, policy and state store; [`StandbyCore`] is the part that exists without them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use tokio::sync::watch;

use super::model::{
    AckInfo, AddressInfo, CreateWallet, ListPending, OutboxStream, PendingPage, PolicyReload,
    RequestRecord, SealState, SignReply, SignRequest, StatusInfo, UnsealSecret, WalletSummary,
};
use super::principal::Principal;

/// What a principal may do beyond asking for signatures (which the policy decides per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    /// The `Admin` service.
    Admin,
    /// `Signer.Approve` and `Signer.Reject`.
    Approve,
    /// The `Outbox` service.
    StreamOutbox,
    /// `Admin.Unseal` and `Admin.Status`: custodians giving their share (admins hold it too).
    Unseal,
}

impl Privilege {
    /// Lower-case name for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Admin => "admin",
            Privilege::Approve => "approver",
            Privilege::StreamOutbox => "broadcaster",
            Privilege::Unseal => "custodian",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// The transport-free signing core the gRPC services delegate to.
///
/// Every method takes the authenticated caller. The edge checks [`Privilege`]s through
/// [`SignerCore::authorize`] before calling the privileged methods (`Admin`, `Approve`/`Reject`,
/// `Outbox`); the core applies the policy to everything else and enforces the rest of the rules
/// (the quorum counts distinct non-requesting approvers, and so on).
///
/// Durability contract: when `sign`/`approve` return a signed result, the request state, the audit
/// record and the outbox entry are already durable; when the state or audit cannot be written they
/// return [`CoreError::StateUnavailable`] and nothing was signed.
pub trait SignerCore: Send + Sync + 'static {
    /// Whether `principal` holds `privilege` under the loaded policy; [`CoreError::Forbidden`] if not.
    fn authorize(&self, principal: &Principal, privilege: Privilege) -> CoreResult<()>;

    /// The seal state, watched: the server turns health NOT_SERVING while sealed and exports it as a
    /// metric.
    fn seal_state(&self) -> watch::Receiver<SealState>;

    /// Hands the server's metrics to the core, which updates what only it sees (decisions by
    /// rule, signing latency, outbox lag). Called once by [`super::start`]; the default ignores
    /// them (a core without a pipeline has nothing to count).
    fn attach_metrics(&self, metrics: std::sync::Arc<super::metrics::Metrics>) {
        let _ = metrics;
    }

    /// `Admin.Status`.
    fn status(&self, principal: &Principal) -> impl Future<Output = CoreResult<StatusInfo>> + Send;

    /// `Admin.Unseal`: one passphrase, or one more Shamir share.
    fn unseal(
        &self,
        principal: &Principal,
        secret: UnsealSecret,
    ) -> impl Future<Output = CoreResult<SealState>> + Send;

    /// `Admin.Seal`: forget every unsealed key.
    fn seal(&self, principal: &Principal) -> impl Future<Output = CoreResult<SealState>> + Send;

    /// `Admin.CreateWallet`.
    fn create_wallet(
        &self,
        principal: &Principal,
        request: CreateWallet,
    ) -> impl Future<Output = CoreResult<WalletSummary>> + Send;

    /// `Admin.ReloadPolicy`.
    fn reload_policy(
        &self,
        principal: &Principal,
    ) -> impl Future<Output = CoreResult<PolicyReload>> + Send;

    /// `Signer.Sign`: decode, decide, commit, sign (idempotent by request id).
    fn sign(
        &self,
        principal: &Principal,
        request: SignRequest,
    ) -> impl Future<Output = CoreResult<SignReply>> + Send;

    /// `Signer.GetRequest`.
    fn get_request(
        &self,
        principal: &Principal,
        request_id: &str,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.ListPending`.
    fn list_pending(
        &self,
        principal: &Principal,
        request: ListPending,
    ) -> impl Future<Output = CoreResult<PendingPage>> + Send;

    /// `Signer.Approve` (the edge has checked [`Privilege::Approve`]).
    fn approve(
        &self,
        principal: &Principal,
        request_id: &str,
        reason: &str,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.Reject` (the edge has checked [`Privilege::Approve`]).
    fn reject(
        &self,
        principal: &Principal,
        request_id: &str,
        reason: &str,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.ListWallets`: the wallets this principal may use.
    fn list_wallets(
        &self,
        principal: &Principal,
    ) -> impl Future<Output = CoreResult<Vec<WalletSummary>>> + Send;

    /// `Signer.GetAddress`.
    fn get_address(
        &self,
        principal: &Principal,
        wallet: &str,
        change: bool,
        index: u32,
    ) -> impl Future<Output = CoreResult<AddressInfo>> + Send;

    /// `Outbox.StreamSigned`: entries after `after` (or after the principal's acked cursor when
    /// `None`), then new ones as they are signed.
    fn stream_signed(
        &self,
        principal: &Principal,
        after: Option<u64>,
    ) -> impl Future<Output = CoreResult<OutboxStream>> + Send;

    /// `Outbox.Ack`: everything up to and including `sequence`.
    fn ack(
        &self,
        principal: &Principal,
        sequence: u64,
    ) -> impl Future<Output = CoreResult<AckInfo>> + Send;
}

/// Which principals hold which privileges. The signing core derives this from the policy's roles;
/// [`StandbyCore`] is given one explicitly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessMap {
    grants: BTreeMap<String, BTreeSet<Privilege>>,
}

impl AccessMap {
    /// Nobody holds any privilege.
    pub fn new() -> Self {
        AccessMap::default()
    }

    /// Grants `privilege` to `principal` (builder style).
    pub fn grant(mut self, principal: impl Into<String>, privilege: Privilege) -> Self {
        self.grants
            .entry(principal.into())
            .or_default()
            .insert(privilege);
        self
    }

    /// Whether `principal` holds `privilege` (an admin also holds `Unseal`).
    pub fn allows(&self, principal: &str, privilege: Privilege) -> bool {
        self.grants.get(principal).is_some_and(|set| {
            set.contains(&privilege)
                || (privilege == Privilege::Unseal && set.contains(&Privilege::Admin))
        })
    }

    /// The privileges of `principal`, as role names.
    pub fn roles(&self, principal: &str) -> Vec<String> {
        self.grants
            .get(principal)
            .map(|set| set.iter().map(|p| p.as_str().to_owned()).collect())
            .unwrap_or_default()
    }
}

/// The core as far as it exists without a key store, a policy and a state store: it reports its
/// status and seal state for real, can be sealed, and refuses everything that needs keys or state.
///
/// Nothing can unseal it (there is no key store to open), so `Sign` answers FAILED_PRECONDITION
/// "sealed" — the true answer — and the other pipeline methods answer UNIMPLEMENTED. The signing
/// core replaces it once the key store, policy and state modules are wired.
#[derive(Debug)]
pub struct StandbyCore {
    access: AccessMap,
    seal: watch::Sender<SealState>,
}

impl StandbyCore {
    /// A sealed core with the given privileges.
    pub fn new(access: AccessMap) -> Self {
        let (seal, _) = watch::channel(SealState::Sealed);
        StandbyCore { access, seal }
    }

    /// Sets the seal state (tests use it to drive health; the key store will own it later).
    pub fn set_seal_state(&self, state: SealState) {
        self.seal.send_replace(state);
    }

    fn pipeline_missing(what: &str) -> CoreError {
        CoreError::NotImplemented {
            what: format!("{what} needs the signing pipeline, which this server does not run"),
        }
    }

    fn require_unsealed(&self) -> CoreResult<()> {
        if self.seal.borrow().is_unsealed() {
            Ok(())
        } else {
            Err(CoreError::Sealed)
        }
    }
}

impl SignerCore for StandbyCore {
    fn authorize(&self, principal: &Principal, privilege: Privilege) -> CoreResult<()> {
        if self.access.allows(principal.as_str(), privilege) {
            Ok(())
        } else {
            Err(CoreError::Forbidden {
                principal: principal.to_string(),
                privilege,
            })
        }
    }

    fn seal_state(&self) -> watch::Receiver<SealState> {
        self.seal.subscribe()
    }

    async fn status(&self, principal: &Principal) -> CoreResult<StatusInfo> {
        Ok(StatusInfo {
            seal: *self.seal.borrow(),
            policy_hash: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            principal: principal.to_string(),
            roles: self.access.roles(principal.as_str()),
            outbox_head: 0,
            unsealers: Default::default(),
        })
    }

    async fn unseal(&self, _: &Principal, _secret: UnsealSecret) -> CoreResult<SealState> {
        Err(Self::pipeline_missing("unsealing"))
    }

    async fn seal(&self, _: &Principal) -> CoreResult<SealState> {
        self.seal.send_replace(SealState::Sealed);
        Ok(SealState::Sealed)
    }

    async fn create_wallet(&self, _: &Principal, _: CreateWallet) -> CoreResult<WalletSummary> {
        Err(Self::pipeline_missing("creating a wallet"))
    }

    async fn reload_policy(&self, _: &Principal) -> CoreResult<PolicyReload> {
        Err(Self::pipeline_missing("reloading the policy"))
    }

    async fn sign(&self, _: &Principal, _: SignRequest) -> CoreResult<SignReply> {
        self.require_unsealed()?;
        Err(Self::pipeline_missing("signing"))
    }

    async fn get_request(&self, _: &Principal, _: &str) -> CoreResult<RequestRecord> {
        Err(Self::pipeline_missing("request lookup"))
    }

    async fn list_pending(&self, _: &Principal, _: ListPending) -> CoreResult<PendingPage> {
        Err(Self::pipeline_missing("listing pending requests"))
    }

    async fn approve(&self, _: &Principal, _: &str, _: &str) -> CoreResult<RequestRecord> {
        Err(Self::pipeline_missing("approving"))
    }

    async fn reject(&self, _: &Principal, _: &str, _: &str) -> CoreResult<RequestRecord> {
        Err(Self::pipeline_missing("rejecting"))
    }

    async fn list_wallets(&self, _: &Principal) -> CoreResult<Vec<WalletSummary>> {
        Err(Self::pipeline_missing("listing wallets"))
    }

    async fn get_address(
        &self,
        _: &Principal,
        _: &str,
        _: bool,
        _: u32,
    ) -> CoreResult<AddressInfo> {
        Err(Self::pipeline_missing("address derivation"))
    }

    async fn stream_signed(&self, _: &Principal, _: Option<u64>) -> CoreResult<OutboxStream> {
        Err(Self::pipeline_missing("the outbox"))
    }

    async fn ack(&self, _: &Principal, _: u64) -> CoreResult<AckInfo> {
        Err(Self::pipeline_missing("the outbox"))
    }
}
