//! Plain Rust request and result types of the signing core: what gRPC handlers translate protobuf
//! messages into and out of. No tonic or prost types here, so the core (`crate::signing`) and its
//! tests never depend on the transport.

use std::pin::Pin;
use std::time::SystemTime;

use tokio_stream::Stream;

use crate::governance::{VoteContext, VoteDecision};
use crate::intent::Intent;
use crate::network::Chain;
use crate::secret::SecretString;

use super::error::CoreError;

/// Whether keys can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealState {
    /// Keys are encrypted; nothing can be signed.
    Sealed,
    /// Some Shamir shares given; more needed.
    Unsealing {
        /// Shares given so far.
        given: u32,
        /// Shares needed.
        threshold: u32,
        /// Which shares (indexes only, never content).
        indexes: crate::shares::ShareIndexes,
        /// When the partial progress is forgotten (Unix seconds).
        expires_at: i64,
    },
    /// Keys are available.
    Unsealed,
}

impl SealState {
    /// Whether signing is possible.
    pub fn is_unsealed(self) -> bool {
        self == SealState::Unsealed
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SealState::Sealed => "sealed",
            SealState::Unsealing { .. } => "unsealing",
            SealState::Unsealed => "unsealed",
        }
    }
}

/// `Admin.Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusInfo {
    /// Seal state.
    pub seal: SealState,
    /// SHA-256 (hex) of the loaded policy, if one is loaded.
    pub policy_hash: Option<String>,
    /// Version of the binary.
    pub version: String,
    /// The caller's principal.
    pub principal: String,
    /// The caller's roles under the loaded policy.
    pub roles: Vec<String>,
    /// Newest outbox sequence (0 when empty).
    pub outbox_head: u64,
    /// What unseals the store.
    pub unsealers: UnsealerInfo,
    /// Why the core is sealed, while it is and a reason is known.
    pub seal_reason: Option<String>,
    /// The HSM token, when one is configured.
    pub hsm: Option<HsmStatusInfo>,
}

/// The HSM token as `Admin.Status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmStatusInfo {
    /// `token 'custos'`.
    pub token: String,
    /// The PKCS#11 module path.
    pub module: String,
    /// Whether it can be used now.
    pub available: bool,
    /// `available in slot 3`, or why not.
    pub detail: String,
    /// The wallets signing on it.
    pub wallets: Vec<String>,
    /// Sessions open.
    pub sessions_open: u32,
    /// The session pool's capacity.
    pub sessions_max: u32,
}

/// What unseals the store (public facts, for `Admin.Status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsealerInfo {
    /// Whether the passphrase unseals it.
    pub passphrase: bool,
    /// M of the Shamir split (0: no shares).
    pub share_threshold: u32,
    /// N of the Shamir split (0: no shares).
    pub share_count: u32,
}

/// What unseals the store (`Admin.Unseal`).
#[derive(Debug)]
pub enum UnsealSecret {
    /// The store passphrase.
    Passphrase(SecretString),
    /// One Shamir share as the ceremony printed it.
    Share(SecretString),
}

/// `Admin.CreateWallet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateWallet {
    /// Unique wallet name.
    pub name: String,
    /// Chain family.
    pub chain: Chain,
    /// Network name as given (parsed by the core).
    pub network: String,
    /// BIP purpose (Bitcoin); `None` picks the default.
    pub purpose: Option<u32>,
    /// Account index.
    pub account: u32,
    /// Seed id; `None` for the store's only seed.
    pub seed: Option<String>,
}

/// `Admin.ReloadPolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyReload {
    /// Hash of the policy before.
    pub previous_hash: String,
    /// Hash of the policy now running.
    pub hash: String,
}

/// A wallet's public data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletSummary {
    /// Unique name.
    pub name: String,
    /// Chain family.
    pub chain: Chain,
    /// Canonical network name.
    pub network: String,
    /// Account derivation path (`m/84'/0'/0'`).
    pub account_path: String,
    /// Master fingerprint, 8 hex digits.
    pub master_fingerprint: String,
    /// Account xpub (SLIP-132 form on Bitcoin).
    pub account_xpub: String,
    /// Receive descriptor (Bitcoin).
    pub descriptor: Option<String>,
}

/// One derived address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressInfo {
    /// Canonical address text.
    pub address: String,
    /// Full derivation path.
    pub derivation_path: String,
}

/// What to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignPayload {
    /// A BIP174/BIP370 PSBT, binary.
    BitcoinPsbt(Vec<u8>),
    /// An unsigned Ethereum transaction (EIP-2718 envelope or legacy RLP).
    EthereumTransaction {
        /// The unsigned transaction bytes.
        unsigned_tx: Vec<u8>,
        /// Address index below the account (0 when `None`).
        address_index: Option<u32>,
        /// Deliberately replaces a transaction with the same nonce.
        replacement: bool,
    },
    /// An EIP-191 personal message.
    PersonalMessage {
        /// The message bytes.
        message: Vec<u8>,
        /// Address index below the account.
        address_index: Option<u32>,
    },
    /// EIP-712 typed data as JSON.
    TypedData {
        /// The JSON text.
        json: String,
        /// Address index below the account.
        address_index: Option<u32>,
    },
}

/// `Signer.Sign`, validated at the edge (request id syntax, a payload present).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// Caller-chosen idempotency key.
    pub request_id: String,
    /// Wallet name.
    pub wallet: String,
    /// What to sign.
    pub payload: SignPayload,
}

/// A policy decision, as the API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny or needs approval.
    pub outcome: DecisionOutcome,
    /// The rule that decided.
    pub rule: String,
    /// Stable code.
    pub code: String,
    /// Human explanation.
    pub reason: String,
    /// Hash of the policy that decided.
    pub policy_hash: String,
}

/// The three outcomes of a policy evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Allowed by a rule.
    Allow,
    /// Refused.
    Deny,
    /// A quorum must approve first.
    NeedsApproval,
}

/// What a pending request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingApproval {
    /// Distinct approvals required.
    pub required: u32,
    /// Roles whose members may approve.
    pub roles: Vec<String>,
    /// Votes so far.
    pub approvals: Vec<ApprovalVote>,
    /// When the request expires unapproved.
    pub expires_at: SystemTime,
}

/// One approver's vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalVote {
    /// The approver's principal.
    pub principal: String,
    /// When (the time the approver signed).
    pub at: SystemTime,
    /// The approver's reason.
    pub reason: String,
    /// Approve or reject.
    pub decision: VoteDecision,
    /// The approver's signature, with the statement it covers (absent for an unsigned vote).
    pub signature: Option<VoteSignatureRecord>,
    /// Whether the vote counts under the policy in force: a valid signature by a key now
    /// enrolled for the approver (or an unsigned vote the policy allows).
    pub counted: bool,
    /// Why it does not count, when it does not.
    pub note: Option<String>,
}

/// A vote's signature as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteSignatureRecord {
    /// The approver's public key (canonical text).
    pub key: String,
    /// The signature (64 bytes).
    pub signature: Vec<u8>,
    /// The signed statement (`custos/vote/v1`).
    pub statement: Vec<u8>,
}

/// A vote as the approver's client sends it (`Approve`, `Reject`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteInput {
    /// The approver's words (signed with the rest).
    pub reason: String,
    /// The signature over the vote statement; `None` only where the policy allows unsigned
    /// votes.
    pub signature: Option<VoteSignature>,
}

/// The approver's signature over a vote statement (see [`crate::governance::vote`]); the
/// server rebuilds the statement from its own record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteSignature {
    /// The statement's time, unix seconds.
    pub at: i64,
    /// The approver's public key (text).
    pub key: String,
    /// The signature (64 bytes).
    pub signature: Vec<u8>,
}

/// A signed artefact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedOutput {
    /// A finalised Bitcoin transaction.
    BitcoinTransaction {
        /// Consensus serialisation, hex.
        raw_tx_hex: String,
        /// Txid, display order hex.
        txid: String,
        /// Wtxid, display order hex.
        wtxid: String,
    },
    /// A PSBT signed by us but not final.
    SignedPsbt {
        /// BIP174 binary.
        psbt: Vec<u8>,
        /// Why it is not final.
        not_final_reason: String,
    },
    /// A signed Ethereum transaction.
    EthereumTransaction {
        /// 0x-hex raw transaction.
        raw_tx_hex: String,
        /// 0x-hex hash.
        tx_hash: String,
    },
    /// A 65-byte message signature.
    EthereumSignature {
        /// r || s || v (v = 27 or 28).
        signature: [u8; 65],
        /// Signing address, lower-case 0x-hex.
        signer: String,
        /// The signed digest, 0x-hex.
        digest_hex: String,
    },
}

/// A signed result and where it sits in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedResult {
    /// The artefact.
    pub output: SignedOutput,
    /// Outbox sequence, when the result was queued for broadcast.
    pub outbox_sequence: Option<u64>,
}

/// Signed now or pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignOutcome {
    /// Signed.
    Signed(SignedResult),
    /// Waiting for approvals.
    Pending(PendingApproval),
}

/// `Signer.Sign`'s answer (refusals are [`CoreError`]s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignReply {
    /// The request id.
    pub request_id: String,
    /// Signed or pending.
    pub outcome: SignOutcome,
    /// The decoded intent.
    pub intent: Intent,
    /// The decision that allowed it or asked for approval.
    pub decision: Decision,
}

/// The lifecycle of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for approvals.
    PendingApproval,
    /// Signed.
    Signed,
    /// Refused by the policy.
    Denied,
    /// Rejected by an approver.
    Rejected,
    /// Expired unapproved.
    Expired,
    /// Signing failed after the decision.
    Failed,
}

/// Which request a call means: request ids are the client's and scoped by requester, so two
/// services may use the same id. `requester` may be left out where the caller's own request is
/// meant (`GetRequest`) or where exactly one pending request has the id (`Approve`, `Reject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef {
    /// The client's request id.
    pub request_id: String,
    /// The principal that asked, when the id alone is ambiguous.
    pub requester: Option<String>,
}

impl RequestRef {
    /// A reference by id alone.
    pub fn id(request_id: impl Into<String>) -> Self {
        RequestRef {
            request_id: request_id.into(),
            requester: None,
        }
    }

    /// A reference by requester and id.
    pub fn of(requester: impl Into<String>, request_id: impl Into<String>) -> Self {
        RequestRef {
            request_id: request_id.into(),
            requester: Some(requester.into()),
        }
    }
}

/// Everything known about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request id.
    pub request_id: String,
    /// The wallet.
    pub wallet: String,
    /// Who asked.
    pub requester: String,
    /// Current state.
    pub state: RequestState,
    /// The decoded intent, when decoding succeeded.
    pub intent: Option<Intent>,
    /// The decision.
    pub decision: Option<Decision>,
    /// Quorum and votes, for requests that needed approval.
    pub pending: Option<PendingApproval>,
    /// The signed result.
    pub result: Option<SignedResult>,
    /// First arrival.
    pub created_at: SystemTime,
    /// Last state change.
    pub updated_at: SystemTime,
    /// Failure or rejection reason.
    pub error: Option<String>,
    /// SHA-256 of the canonical payload, hex.
    pub payload_sha256: String,
    /// What an approver signs a vote about (set while the request waits for votes).
    pub vote_context: Option<VoteContext>,
}

/// `Signer.ListPending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPending {
    /// Only this wallet.
    pub wallet: Option<String>,
    /// Page size (the edge clamps it to 1..=1000, default 100).
    pub page_size: u32,
    /// Continuation token.
    pub page_token: Option<String>,
}

/// One page of pending requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPage {
    /// Oldest first.
    pub requests: Vec<RequestRecord>,
    /// Next page, if any.
    pub next_page_token: Option<String>,
}

/// One signed transaction for the broadcaster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Cursor position, strictly increasing.
    pub sequence: u64,
    /// The producing request.
    pub request_id: String,
    /// Chain family.
    pub chain: Chain,
    /// Canonical network name.
    pub network: String,
    /// Wallet that signed.
    pub wallet: String,
    /// Raw transaction hex.
    pub raw_tx_hex: String,
    /// Txid or tx hash.
    pub tx_id: String,
    /// When it was signed.
    pub signed_at: SystemTime,
    /// The audit chain's head after this entry's `sign.signed` record: its sequence. A
    /// broadcaster that sees this go backwards is talking to a rolled-back state.
    pub audit_sequence: u64,
    /// ... and that record's MAC, hex.
    pub audit_mac: String,
}

/// A live stream of outbox entries (the catch-up from the cursor, then new entries).
pub type OutboxStream = Pin<Box<dyn Stream<Item = Result<OutboxEntry, CoreError>> + Send>>;

/// `Outbox.Ack`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckInfo {
    /// The principal's acknowledged cursor.
    pub acked: u64,
    /// Newest sequence.
    pub head: u64,
}
