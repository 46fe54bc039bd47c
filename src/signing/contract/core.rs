//! The [`SignerCore`] trait: every call an edge (gRPC handlers, host commands) can make of the
//! signing core, with the caller's [`Principal`]; and [`Privilege`]s, the roles beyond asking for
//! signatures, with the [`AccessMap`] that grants them.
//!
//! The signing pipeline ([`crate::signing::SigningCore`]) implements the trait against the key
//! store, chains, policy and state store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use tokio::sync::watch;

use super::error::CoreResult;
use super::model::{
    AckInfo, AddressInfo, CreateWallet, ListPending, OutboxStream, PendingPage, PolicyReload,
    RequestRecord, RequestRef, SealState, SignReply, SignRequest, StatusInfo, UnsealSecret,
    VoteInput, WalletSummary,
};
use super::principal::Principal;
use crate::governance::proof::Proof;
use crate::signing::metrics::Metrics;

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
    /// rule, signing latency, outbox lag). Called once by the server at start; the default ignores
    /// them (a core without a pipeline has nothing to count).
    fn attach_metrics(&self, metrics: std::sync::Arc<Metrics>) {
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
        request: &RequestRef,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.ListPending`.
    fn list_pending(
        &self,
        principal: &Principal,
        request: ListPending,
    ) -> impl Future<Output = CoreResult<PendingPage>> + Send;

    /// `Signer.Approve` (the edge has checked [`Privilege::Approve`]): the vote counts only as a
    /// valid signature by a key enrolled for `principal` (see [`crate::governance`]).
    fn approve(
        &self,
        principal: &Principal,
        request: &RequestRef,
        vote: &VoteInput,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.Reject` (the edge has checked [`Privilege::Approve`]), signed like a vote.
    fn reject(
        &self,
        principal: &Principal,
        request: &RequestRef,
        vote: &VoteInput,
    ) -> impl Future<Output = CoreResult<RequestRecord>> + Send;

    /// `Signer.GetProof`: the request, its intent, its votes and their signatures, for an
    /// offline check. Who may read it is who may read the request.
    fn proof(
        &self,
        principal: &Principal,
        request: &RequestRef,
    ) -> impl Future<Output = CoreResult<Proof>> + Send {
        let _ = (principal, request);
        std::future::ready(Err(super::error::CoreError::NotImplemented {
            what: "request proofs".into(),
        }))
    }

    /// The principal whose enrolled approver key `key` (text) is, under the policy in force
    /// (the approval console signs its users in by key). `None` for any other key.
    fn approver_of_key(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }

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
