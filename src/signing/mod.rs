//! The transport-free signing core: one request from payload to outbox, the way `DESIGN.md`
//! ("One signing request") orders it, behind [`crate::signing::contract::SignerCore`].
//!
//! # The pipeline ([`pipeline`])
//!
//! 1. **Sealed?** Nothing is decided or signed while sealed (`FAILED_PRECONDITION sealed`).
//! 2. **Idempotency.** The payload's canonical form is hashed ([`decode::canonical`]). A request
//!    id seen before returns its first result whatever happened in between (a restart included):
//!    the same signed transaction, the same pending state, the same denial. Another payload (or
//!    another requester) under that id is `ALREADY_EXISTS`. A request left `authorized` (a quorum
//!    met, then a crash before its signature; or an older version's two-step path) is signed
//!    now, without reserving again, if its authorization still stands.
//! 3. **Decode** ([`decode`]): the chain module parses the payload for the wallet and explains it
//!    as an [`crate::intent::Intent`]; a parser error is `INVALID_ARGUMENT` with its message.
//! 4. **Policy**: allow, deny or needs-approval, naming the rule.
//! 5. **Allowed: sign in memory, then one durable write** (`commit::commit_signed`): the
//!    chain module signs through the key backend and checks the signature (nothing is released);
//!    then ONE transaction ([`crate::state::State::transact`]) re-checks what may have changed
//!    since the evaluation — the id stored by a concurrent retry, the Ethereum nonce guard, every
//!    cap of the reservation plan — and stores the reservation, the request `signed` with its
//!    result, the outbox entry (broadcastable transactions) and the audit records (`sign.allow`,
//!    `sign.signed`) together. A cap taken meanwhile turns the request into a denial inside the
//!    same transaction and the signature is dropped; a concurrent retry's record wins and is
//!    answered.
//! 6. **Reply** after ONE flush, and wake the broadcaster streams.
//! 7. **Denied, or needing approval**: the decision is stored in its own transaction
//!    (`commit::commit_decision`; limits held until the quorum's expiry for needs-approval).
//!    Denials are stored and audited too (`PERMISSION_DENIED` with the rule and stable code).
//!    When a quorum is met the request becomes `authorized` and is signed in a second
//!    transaction (`commit::sign_and_commit`: request `signed`, outbox entry, hold confirmed,
//!    audit), guarded so that a request never gets two outbox entries. The same second write
//!    completes requests left `authorized` by an older version or a crash between the two
//!    writes (a retry, or the recovery pass at unseal, [`seal`]).
//!
//! Before all of it, **admission**: at most `max_requests_in_flight` `Sign` calls are admitted at
//! once; the next is refused at once (`RESOURCE_EXHAUSTED`, [`CoreError::Overloaded`]) rather
//! than queued, so the latency of the admitted ones stays bounded.
//!
//! # Durability contract ("durable before visible")
//!
//! No answer, and above all no signature, leaves before the transaction that explains it is
//! flushed: an allowed request's single write is flushed before the reply and before live outbox
//! streams are woken (a crash before that flush releases nothing: the signature existed only in
//! memory); a decision's write is flushed before its answer, and a second write before its reply.
//! A retry answered from a stored signed result flushes first too. Flushing goes through a group
//! commit ([`flush`]): concurrent requests share one `fsync`. If a transaction or a flush fails —
//! the audit record cannot be written, the disk is full — the caller gets `UNAVAILABLE` at once
//! and nothing was released: the transaction aborted as a whole, so nothing was reserved either
//! (fail closed). Debug builds can inject that failure ([`FaultPlan`]).
//!
//! # Who may do what
//!
//! [`SignerCore::authorize`] maps the policy's roles to privileges: role `admin` → the Admin
//! service, role `custodian` → Admin.Unseal and Admin.Status only (custodians giving their
//! Shamir share), role `approver` → Approve/Reject, role `broadcaster` → the Outbox service. Which
//! requests a principal may have signed is the policy's business alone; who may read which
//! request or wallet, and who may send a payload at all, is [`access`]'s (least privilege).
//!
//! # Bounded input, bounded disk
//!
//! Before step 2, `Sign` refuses a principal no rule could allow on the wallet ([`access`],
//! audited, nothing stored), a payload above its kind's limits ([`input_limits`]) and a full
//! state disk ([`storage`]): none of them costs a decode or a write.
//!
//! The rest: approvals and expiry ([`approvals`]), the outbox ([`outbox`]), seal/unseal and the
//! recovery pass ([`seal`]), status, wallets and policy reload ([`admin`]), the HSM beside the key
//! store: which wallets sign on it, auto-unseal ([`hsm`]).

pub mod access;
pub mod admin;
pub mod approvals;
pub(crate) mod commit;
pub mod contract;
pub mod decode;
pub mod flush;
pub mod host;
pub mod hsm;
pub mod input_limits;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod policy_load;
pub(crate) mod proofs;
pub mod records;
pub mod seal;
pub mod shares;
pub mod stages;
pub mod storage;
pub(crate) mod tamper;
pub(crate) mod votes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::assets::TokenRegistry;
use crate::backend::KeyRouter;
use crate::governance::policy_sig::{PolicyTrust, TrustReport};
use crate::governance::proof::Proof;
use crate::keystore::{KeyStore, KeystoreError, Unsealed};
use crate::policy::Policy;
use crate::secret::{Secret32, SecretString};
use crate::signing::contract::Principal;
use crate::signing::contract::{
    AckInfo, AddressInfo, CreateWallet, ListPending, OutboxStream, PendingPage, PolicyReload,
    RequestRecord, RequestRef, SealState, SignReply, SignRequest, StatusInfo, UnsealSecret,
    VoteInput, WalletSummary,
};
use crate::signing::contract::{CoreError, CoreResult, Privilege, SignerCore};
use crate::signing::metrics::Metrics;
use crate::state::audit::{self, AuditEntry};
use crate::state::engine::{abort, Engine, TxResult};
use crate::state::{State, StateError, StateTx};
use crate::wallet::Wallet;

use flush::GroupCommit;

/// Where the core finds its key store, state and policy.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The key store directory (held open, and locked, for the life of the core).
    pub store_dir: PathBuf,
    /// The state database directory (ledger, requests, audit, outbox).
    pub state_dir: PathBuf,
    /// The policy file (reloaded from here by `ReloadPolicy`).
    pub policy_path: PathBuf,
    /// Bitcoin signing options.
    pub bitcoin: crate::chains::bitcoin::SignOptions,
    /// Bounds on payloads and on the state disk (`[limits]` of `custos.toml`).
    pub limits: input_limits::InputLimits,
    /// An `authorized` request older than this (seconds since it was authorized) is expired,
    /// its reservation released, instead of being signed by a retry or the recovery pass.
    pub authorization_max_age_secs: u64,
    /// Allow unsealing over a state whose audit chain is behind the key store's anchor (a
    /// restored backup). Unsafe: the state may have been rolled back to replay or undo work;
    /// the override is recorded in the audit chain.
    pub unsafe_accept_state_rollback: bool,
    /// `Sign` calls admitted at once; past it a call is refused at once ([`CoreError::Overloaded`]).
    pub max_requests_in_flight: usize,
    /// Which policies may take effect: `custos serve` sets the compliance officers' keys and
    /// threshold from `custos.toml`. [`CoreConfig::new`] starts in development mode (unsigned
    /// policies load, loudly), for tests and tools that build a core themselves.
    pub policy_trust: PolicyTrust,
    /// The policy's signature file (default: `<policy file>.sig` beside it).
    pub policy_signatures: Option<PathBuf>,
}

impl CoreConfig {
    /// A configuration with the default bounds.
    pub fn new(store_dir: PathBuf, state_dir: PathBuf, policy_path: PathBuf) -> Self {
        CoreConfig {
            store_dir,
            state_dir,
            policy_path,
            bitcoin: crate::chains::bitcoin::SignOptions::default(),
            limits: input_limits::InputLimits::default(),
            authorization_max_age_secs: DEFAULT_AUTHORIZATION_MAX_AGE_SECS,
            unsafe_accept_state_rollback: false,
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            policy_trust: PolicyTrust::development(Vec::new()),
            policy_signatures: None,
        }
    }
}

/// One hour: how long an authorization left unsigned by a crash may still be signed.
pub const DEFAULT_AUTHORIZATION_MAX_AGE_SECS: u64 = 3600;

/// `Sign` calls admitted at once by default: far above what two cores keep busy (a few dozen),
/// low enough that an admitted request waits at most a few tens of milliseconds behind the others.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 128;

/// Why the core could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningOpenError {
    /// The key store could not be opened (absent, in use, damaged).
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The state database could not be opened.
    #[error("state database {}: {source}", dir.display())]
    State {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: StateError,
    },
    /// The policy file is invalid, or lacks its compliance signatures.
    #[error("policy refused:\n{0}")]
    Policy(policy_load::PolicyLoadError),
}

/// Test-only fault injection: make the audit log unwritable. Settable only in debug builds
/// ([`SigningCore::faults`]), or with `CUSTOS_UNSAFE_TEST_FAIL_AUDIT=1` in a debug build; release
/// builds never fail on purpose.
#[derive(Debug, Default)]
pub struct FaultPlan {
    fail_audit: AtomicBool,
}

impl FaultPlan {
    /// Every audit append fails (the step's transaction aborts) while `on`.
    #[cfg(debug_assertions)]
    pub fn fail_audit(&self, on: bool) {
        self.fail_audit.store(on, Ordering::SeqCst);
    }

    fn audit_fails(&self) -> bool {
        cfg!(debug_assertions) && self.fail_audit.load(Ordering::SeqCst)
    }
}

/// The policy in force, with what is derived from it once.
pub(crate) struct LoadedPolicy {
    pub(crate) policy: Policy,
    pub(crate) hash: String,
    pub(crate) tokens: TokenRegistry,
    /// Who signed it (or that it runs unsigned, in development mode).
    pub(crate) trust: TrustReport,
}

impl LoadedPolicy {
    fn new(policy: Policy, trust: TrustReport) -> Self {
        LoadedPolicy {
            hash: policy.hash(),
            tokens: policy.token_registry(),
            policy,
            trust,
        }
    }
}

/// What exists only while unsealed.
pub(crate) struct Keys {
    pub(crate) unsealed: Unsealed,
    pub(crate) backend: Arc<KeyRouter>,
    pub(crate) wallets: RwLock<BTreeMap<String, Wallet>>,
    pub(crate) audit_key: Secret32,
}

impl Keys {
    pub(crate) fn wallet(&self, name: &str) -> CoreResult<Wallet> {
        self.wallets
            .read()
            .expect("wallet lock poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::NotFound {
                what: "wallet",
                id: name.to_owned(),
            })
    }
}

/// The signing core (see the module docs).
pub struct SigningCore {
    config: CoreConfig,
    keystore: KeyStore,
    state: Arc<State>,
    storage: Arc<storage::GuardedEngine>,
    flusher: GroupCommit,
    policy: RwLock<Arc<LoadedPolicy>>,
    keys: RwLock<Option<Arc<Keys>>>,
    seal: watch::Sender<SealState>,
    outbox_head: watch::Sender<u64>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// `Sign` calls admitted and not finished (bounded by `config.max_requests_in_flight`).
    admitted: AtomicUsize,
    faults: FaultPlan,
    tamper: Arc<tamper::TamperReports>,
    hsm: OnceLock<hsm::HsmAttachment>,
    seal_reason: Mutex<Option<String>>,
    shares: shares::ShareUnseal,
    /// Where the time of signed requests goes ([`stages`]).
    stages: stages::StageTimes,
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The API error of a state failure (see [`SigningCore::fail`] for the one that also reports
/// tampering).
pub(crate) fn unavailable(e: StateError) -> CoreError {
    match e {
        StateError::Sealed => CoreError::Sealed,
        StateError::Tampered { .. } => CoreError::StateTampered {
            reason: e.to_string(),
        },
        StateError::Rollback(reason) => CoreError::Precondition {
            code: "state-rollback".into(),
            reason,
        },
        other => CoreError::StateUnavailable {
            reason: other.to_string(),
        },
    }
}

/// The principal recorded for host-side events (unseal at start, expiry sweep).
pub const HOST_PRINCIPAL: &str = "host";

impl SigningCore {
    /// Opens the key store (sealed; its lock held), the state database, and loads and validates
    /// the policy. The database is reopened in place after a storage failure ([`storage`]).
    pub fn open(config: CoreConfig) -> Result<SigningCore, SigningOpenError> {
        let dir = config.state_dir.clone();
        let engine = crate::state::sled::SledEngine::open(&dir).map_err(|source| {
            SigningOpenError::State {
                dir: dir.clone(),
                source,
            }
        })?;
        let reopen: storage::Reopen = Box::new(move || {
            Ok(Arc::new(crate::state::sled::SledEngine::open(&dir)?) as Arc<dyn Engine>)
        });
        let storage = storage::Storage::new(
            config.state_dir.clone(),
            config.limits.state_min_free_bytes,
            Duration::from_secs(config.limits.state_flush_timeout_secs),
        );
        Self::open_guarded(config, Arc::new(engine), storage, Some(reopen))
    }

    /// [`SigningCore::open`] over a state engine opened by the caller. The engine keeps its data
    /// where it chooses: no free-space guard on `state_dir`, no reopen ([`storage`]).
    pub fn open_with_engine(
        config: CoreConfig,
        engine: Arc<dyn Engine>,
    ) -> Result<SigningCore, SigningOpenError> {
        let storage = storage::Storage::new(
            config.state_dir.clone(),
            0,
            Duration::from_secs(config.limits.state_flush_timeout_secs),
        );
        Self::open_guarded(config, engine, storage, None)
    }

    fn open_guarded(
        config: CoreConfig,
        engine: Arc<dyn Engine>,
        storage: storage::Storage,
        reopen: Option<storage::Reopen>,
    ) -> Result<SigningCore, SigningOpenError> {
        let policy = policy_load::load(&config).map_err(SigningOpenError::Policy)?;
        let keystore = KeyStore::open(&config.store_dir)?;
        let storage = Arc::new(storage::GuardedEngine::new(
            Arc::new(storage),
            engine,
            reopen,
        ));
        let state = Arc::new(State::new(storage.clone()));
        let tamper = Arc::new(tamper::TamperReports::default());
        let observer = tamper.clone();
        state.set_tamper_observer(Arc::new(move |e| observer.report(e)));
        let (seal, _) = watch::channel(SealState::Sealed);
        // The durable outbox head; read (authenticated) at unseal.
        let (outbox_head, _) = watch::channel(0);
        let faults = FaultPlan::default();
        if cfg!(debug_assertions)
            && std::env::var_os("CUSTOS_UNSAFE_TEST_FAIL_AUDIT").is_some_and(|v| v == "1")
        {
            faults.fail_audit.store(true, Ordering::SeqCst);
        }
        Ok(SigningCore {
            flusher: GroupCommit::new(state.clone()),
            storage,
            config,
            keystore,
            state,
            policy: RwLock::new(Arc::new(policy)),
            keys: RwLock::new(None),
            seal,
            outbox_head,
            inflight: Mutex::new(HashMap::new()),
            admitted: AtomicUsize::new(0),
            faults,
            tamper,
            hsm: OnceLock::new(),
            seal_reason: Mutex::new(None),
            shares: shares::ShareUnseal::default(),
            stages: stages::StageTimes::default(),
        })
    }

    /// Makes the core update `metrics` (decisions by rule, signing latency, outbox lag); the
    /// server calls it through [`SignerCore::attach_metrics`]. The first set wins: one core
    /// reports to one server's metrics.
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        if self.tamper.metrics.set(metrics).is_ok() {
            self.update_outbox_lag();
        }
    }

    /// The metrics, if a server attached them.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.tamper.metrics.get().map(|m| &**m)
    }

    /// Sets the outbox lag gauge: the head minus the slowest cursor of the policy's broadcasters
    /// (the head itself when the policy names none). Best effort: a read error leaves the gauge.
    pub(crate) fn update_outbox_lag(&self) {
        let Some(metrics) = self.metrics() else {
            return;
        };
        let head = *self.outbox_head.borrow();
        let policy = self.policy();
        let slowest = policy
            .policy
            .roles
            .get(role_of(Privilege::StreamOutbox))
            .into_iter()
            .flatten()
            .filter(|p| !p.ends_with('*'))
            .filter_map(|p| crate::state::outbox::cursor(&self.state, p).ok())
            .min()
            .unwrap_or(0);
        metrics.set_outbox_lag(head.saturating_sub(slowest));
    }

    /// Unseals with the store passphrase (`serve` at start, when a passphrase file is configured);
    /// audited. Runs argon2id on the calling thread.
    pub fn unseal_with_passphrase(&self, passphrase: &SecretString) -> CoreResult<SealState> {
        let _admitted = self.storage.try_admit().map_err(unavailable)?;
        let unsealed = self
            .keystore
            .unseal(passphrase)
            .map_err(seal::unseal_error)?;
        self.finish_unseal(
            unsealed,
            HOST_PRINCIPAL,
            seal::UnsealHow::Passphrase {
                place: "server start",
            },
        )
    }

    /// Expires every pending request whose time has come (releasing its hold); returns how many.
    /// While sealed nothing can be audited, so nothing expires (holds keep counting — the safe
    /// side) until the next sweep after unsealing.
    pub fn expire_pending(&self, now: i64) -> CoreResult<usize> {
        let _admitted = self.storage.try_admit().map_err(unavailable)?;
        let expired = approvals::expire_due(self, now);
        self.audit_tamper_reports();
        expired
    }

    /// Reloads the policy for a host-side trigger (SIGHUP), recorded in the audit as `who`.
    /// Only the host can send the process a signal, so no role is required; the file is
    /// validated and the reload audited exactly as `Admin.ReloadPolicy` does.
    pub async fn reload_policy_from_host(&self, who: &str) -> CoreResult<PolicyReload> {
        let _admitted = self.admit().await?;
        admin::reload_policy_as(self, who).await
    }

    /// Admits a call that can write into the core ([`storage::GuardedEngine::admit`]: a failed
    /// state database is reopened only while no admitted call is in progress).
    pub(crate) async fn admit(&self) -> CoreResult<storage::Admitted> {
        self.storage.admit().await.map_err(unavailable)
    }

    /// The policy file the core reloads from.
    pub fn policy_path(&self) -> &Path {
        &self.config.policy_path
    }

    /// The state database (tests and tools read it; the core owns the writes).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The outbox head that is durable (what streams may deliver). On a database other replicas
    /// commit to, the head is read from it (its commits are durable), so entries another replica
    /// signed count too.
    pub fn durable_outbox_head(&self) -> u64 {
        if self.state.engine().shared() {
            if let Ok(head) = crate::state::outbox::head(&self.state) {
                self.outbox_head.send_if_modified(|h| {
                    let moved = head > *h;
                    *h = (*h).max(head);
                    moved
                });
            }
        }
        *self.outbox_head.borrow()
    }

    /// The API error of a state failure; a record that fails authentication is also reported
    /// (logged, counted and audited once, see [`tamper`]).
    pub(crate) fn fail(&self, e: StateError) -> CoreError {
        if matches!(e, StateError::Tampered { .. }) {
            self.tamper.report(&e);
            self.audit_tamper_reports();
        }
        unavailable(e)
    }

    /// Appends a `state.tampered` audit record for every report not yet audited (best effort:
    /// what cannot be written now is kept for the next try). Needs the keys.
    pub(crate) fn audit_tamper_reports(&self) {
        let Ok(keys) = self.keys() else { return };
        // Admitted: the commit and its flush are not split by a reopen of the state ([`storage`]).
        let Ok(_admitted) = self.storage.try_admit() else {
            return;
        };
        let reports = self.tamper.take_unaudited();
        if reports.is_empty() {
            return;
        }
        let policy_hash = self.policy().hash.clone();
        let written = self
            .state
            .transact(|tx| {
                for detail in &reports {
                    let entry = AuditEntry {
                        at: now_unix(),
                        event: "state.tampered".into(),
                        principal: HOST_PRINCIPAL.into(),
                        policy_hash: policy_hash.clone(),
                        detail: Some(detail.clone()),
                        ..AuditEntry::default()
                    };
                    audit::append_in(tx, &keys.audit_key, &entry)?;
                }
                Ok(())
            })
            .and_then(|_| self.flusher.flush_blocking());
        if let Err(error) = written {
            tracing::error!(%error, "tampered records could not be audited; will retry");
            self.tamper.requeue(reports);
        }
    }

    /// The fault plan (debug builds can make the audit unwritable).
    pub fn faults(&self) -> &FaultPlan {
        &self.faults
    }

    /// Test-only fault injection (debug builds): let `Some(n)` more group-commit flushes run,
    /// then hold the rest until `None`.
    #[cfg(debug_assertions)]
    pub fn hold_flushes(&self, after: Option<u64>) {
        self.flusher.hold(after);
    }

    /// How many flushes the group commit ran.
    pub fn flush_count(&self) -> u64 {
        self.flusher.flush_count()
    }

    /// The running sums of the stages of signed requests (see [`stages`]).
    pub fn stage_times(&self) -> stages::StageSnapshot {
        self.stages.snapshot()
    }

    pub(crate) fn policy(&self) -> Arc<LoadedPolicy> {
        self.policy.read().expect("policy lock poisoned").clone()
    }

    /// The unsealed keys, or `Sealed`.
    pub(crate) fn keys(&self) -> CoreResult<Arc<Keys>> {
        self.keys
            .read()
            .expect("key lock poisoned")
            .clone()
            .ok_or(CoreError::Sealed)
    }

    /// Appends an audit record inside a step's transaction (fails the step when the audit is
    /// unwritable).
    pub(crate) fn audit_in(
        &self,
        tx: &StateTx<'_>,
        key: &Secret32,
        entry: &AuditEntry,
    ) -> TxResult<u64> {
        self.audit_with_mac_in(tx, key, entry).map(|(seq, _)| seq)
    }

    /// [`SigningCore::audit_in`], also returning the record's MAC (the new audit head).
    pub(crate) fn audit_with_mac_in(
        &self,
        tx: &StateTx<'_>,
        key: &Secret32,
        entry: &AuditEntry,
    ) -> TxResult<(u64, [u8; 32])> {
        if self.faults.audit_fails() {
            return Err(abort(StateError::Storage(
                "audit log unwritable (injected fault)".into(),
            )));
        }
        audit::append_with_mac_in(tx, key, entry)
    }

    /// Admits one `Sign` call, or refuses it at once when `max_requests_in_flight` are already
    /// admitted (overload is refused, not queued). The slot is given back when the guard drops.
    pub(crate) fn admit_in_flight(&self) -> CoreResult<InFlight<'_>> {
        let limit = self.config.max_requests_in_flight.max(1);
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(CoreError::Overloaded { limit });
        }
        Ok(InFlight(&self.admitted))
    }

    /// `Sign` calls admitted now (tests).
    pub fn requests_in_flight(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Serialises work on one request (by its key) within this process (a retry arriving while
    /// the first attempt signs waits for it, then finds its result).
    pub(crate) async fn lock_request(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.inflight.lock().expect("inflight lock poisoned");
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn holds(&self, principal: &str, privilege: Privilege) -> bool {
        let policy = self.policy();
        let roles = policy.policy.roles_of(principal);
        roles.contains(role_of(privilege))
            || (privilege == Privilege::Unseal && roles.contains(role_of(Privilege::Admin)))
    }
}

/// One `Sign` call in flight (see [`SigningCore::admit_in_flight`]).
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The policy role that grants a privilege.
pub fn role_of(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::Admin => "admin",
        Privilege::Approve => "approver",
        Privilege::StreamOutbox => "broadcaster",
        Privilege::Unseal => "custodian",
    }
}

impl SignerCore for SigningCore {
    fn authorize(&self, principal: &Principal, privilege: Privilege) -> CoreResult<()> {
        if self.holds(principal.as_str(), privilege) {
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

    fn attach_metrics(&self, metrics: Arc<Metrics>) {
        self.set_metrics(metrics);
    }

    async fn status(&self, principal: &Principal) -> CoreResult<StatusInfo> {
        admin::status(self, principal)
    }

    async fn unseal(&self, principal: &Principal, secret: UnsealSecret) -> CoreResult<SealState> {
        let _admitted = self.admit().await?;
        seal::unseal(self, principal, secret).await
    }

    async fn seal(&self, principal: &Principal) -> CoreResult<SealState> {
        let _admitted = self.admit().await?;
        seal::seal(self, principal.as_str()).await
    }

    async fn create_wallet(
        &self,
        principal: &Principal,
        request: CreateWallet,
    ) -> CoreResult<WalletSummary> {
        let _admitted = self.admit().await?;
        admin::create_wallet(self, principal, request).await
    }

    async fn reload_policy(&self, principal: &Principal) -> CoreResult<PolicyReload> {
        let _admitted = self.admit().await?;
        admin::reload_policy(self, principal).await
    }

    async fn sign(&self, principal: &Principal, request: SignRequest) -> CoreResult<SignReply> {
        // Overload is refused at once, before any work or wait: the requests admitted keep their
        // latency.
        let _in_flight = self.admit_in_flight()?;
        let _admitted = self.admit().await?;
        pipeline::sign(self, principal, request).await
    }

    async fn get_request(
        &self,
        principal: &Principal,
        request: &RequestRef,
    ) -> CoreResult<RequestRecord> {
        let _admitted = self.admit().await?;
        approvals::get_request(self, principal, request).await
    }

    async fn list_pending(
        &self,
        principal: &Principal,
        request: ListPending,
    ) -> CoreResult<PendingPage> {
        let page = approvals::list_pending(self, principal, request);
        self.audit_tamper_reports();
        page
    }

    async fn approve(
        &self,
        principal: &Principal,
        request: &RequestRef,
        vote: &VoteInput,
    ) -> CoreResult<RequestRecord> {
        let _admitted = self.admit().await?;
        approvals::approve(self, principal, request, vote).await
    }

    async fn reject(
        &self,
        principal: &Principal,
        request: &RequestRef,
        vote: &VoteInput,
    ) -> CoreResult<RequestRecord> {
        let _admitted = self.admit().await?;
        approvals::reject(self, principal, request, vote).await
    }

    async fn proof(&self, principal: &Principal, request: &RequestRef) -> CoreResult<Proof> {
        let _admitted = self.admit().await?;
        proofs::proof(self, principal, request).await
    }

    fn approver_of_key(&self, key: &str) -> Option<String> {
        let key = crate::governance::PublicKey::parse(key).ok()?.to_text();
        self.policy()
            .policy
            .approver_of_key(&key)
            .map(str::to_owned)
    }

    async fn list_wallets(&self, principal: &Principal) -> CoreResult<Vec<WalletSummary>> {
        admin::list_wallets(self, principal)
    }

    async fn get_address(
        &self,
        principal: &Principal,
        wallet: &str,
        change: bool,
        index: u32,
    ) -> CoreResult<AddressInfo> {
        admin::get_address(self, principal, wallet, change, index)
    }

    async fn stream_signed(
        &self,
        principal: &Principal,
        after: Option<u64>,
    ) -> CoreResult<OutboxStream> {
        outbox::stream_signed(self, principal, after)
    }

    async fn ack(&self, principal: &Principal, sequence: u64) -> CoreResult<AckInfo> {
        let _admitted = self.admit().await?;
        outbox::ack(self, principal, sequence).await
    }
}
