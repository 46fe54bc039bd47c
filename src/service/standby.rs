//! [`StandbyCore`]: a [`SignerCore`] with no key store, policy or state behind it. It reports
//! status and seal state for real and refuses everything else; the edge's own tests (TLS, health,
//! reflection) run the server with it, so they exercise the transport and nothing of the core.

use tokio::sync::watch;

use crate::signing::contract::{
    AccessMap, AckInfo, AddressInfo, CoreError, CoreResult, CreateWallet, ListPending,
    OutboxStream, PendingPage, PolicyReload, Principal, Privilege, RequestRecord, RequestRef,
    SealState, SignReply, SignRequest, SignerCore, StatusInfo, UnsealSecret, VoteInput,
    WalletSummary,
};

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
            seal_reason: None,
            hsm: None,
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

    async fn get_request(&self, _: &Principal, _: &RequestRef) -> CoreResult<RequestRecord> {
        Err(Self::pipeline_missing("request lookup"))
    }

    async fn list_pending(&self, _: &Principal, _: ListPending) -> CoreResult<PendingPage> {
        Err(Self::pipeline_missing("listing pending requests"))
    }

    async fn approve(
        &self,
        _: &Principal,
        _: &RequestRef,
        _: &VoteInput,
    ) -> CoreResult<RequestRecord> {
        Err(Self::pipeline_missing("approving"))
    }

    async fn reject(
        &self,
        _: &Principal,
        _: &RequestRef,
        _: &VoteInput,
    ) -> CoreResult<RequestRecord> {
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
