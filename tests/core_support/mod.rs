//! The set-up of the signing-core tests (tests/signing_core.rs): a key store sealed in a
//! temporary directory with two wallets (`btc` on regtest, `eth` on Sepolia), a policy file with
//! roles for the principals below, a state directory, and the core opened over them; the requests
//! the tests send, and readers of what the core left in its state (usage, outbox, audit).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bitcoin::hashes::Hash;
use bitcoin::{ScriptBuf, WPubkeyHash};
use custos::governance::{Algorithm, SecretSigningKey, VoteContext, VoteDecision, VoteStatement};
use custos::keys::{MnemonicSecret, Network, Purpose};
use custos::keystore::{KdfParams, KeyStore};
use custos::policy::limits::{LedgerKey, UsageView};
use custos::policy::model::Scope;
use custos::secret::{Secret32, SecretString};
use custos::signing::contract::{
    CoreError, CoreResult, Principal, PrincipalSource, RequestRecord, RequestRef, SignOutcome,
    SignPayload, SignReply, SignRequest, SignedOutput, SignerCore, VoteInput, VoteSignature,
};
use custos::signing::{now_unix, CoreConfig, SigningCore};
use custos::state::audit;
use custos::state::auth::StateAuth;
use custos::state::{State, Tree};
use custos::wallet::Wallet;

use crate::bitcoin_support::{Builder, ABANDON};

/// The key store passphrase.
pub const PASS: &str = "correct horse battery staple";
pub const PAYER: &str = "spiffe://t/payouts";
pub const OUTSIDER: &str = "spiffe://t/nobody";
pub const ALICE: &str = "spiffe://t/alice";
pub const BOB: &str = "spiffe://t/bob";
pub const CAROL: &str = "spiffe://t/carol";
pub const ADMIN: &str = "admin.t";
pub const BROADCASTER: &str = "broadcaster.t";
pub const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";
pub const SEPOLIA: u64 = 11_155_111;

/// The approvers' signing keys in the tests: fixed seeds, so a policy can enrol them. ALICE and
/// CAROL hold Ed25519 keys, BOB a P-256 key.
pub fn approver_key(who: &str) -> Option<SecretSigningKey> {
    let (alg, seed) = match who {
        ALICE => (Algorithm::Ed25519, [0xa1; 32]),
        BOB => (Algorithm::P256, [0xb0; 32]),
        CAROL => (Algorithm::Ed25519, [0xc0; 32]),
        _ => return None,
    };
    SecretSigningKey::from_seed(alg, &seed)
}

/// A key nobody enrolled.
pub fn stranger_key() -> SecretSigningKey {
    SecretSigningKey::from_seed(Algorithm::Ed25519, &[0x5e; 32]).unwrap()
}

/// The `[approver_keys]` table of the test policy.
pub fn approver_keys_toml() -> String {
    let mut out = String::from("[approver_keys]\n");
    for who in [ALICE, BOB, CAROL] {
        out.push_str(&format!(
            "\"{who}\" = \"{}\"\n",
            approver_key(who).unwrap().public()
        ));
    }
    out
}

/// The vote context of a request, as an approver's client reads it (through an admin, who sees
/// every request).
pub async fn vote_context(core: &impl SignerCore, rref: &RequestRef) -> Option<VoteContext> {
    core.get_request(&principal(ADMIN), rref)
        .await
        .ok()
        .and_then(|r| r.vote_context)
}

/// A vote by `who` signed with `key` over the request's statement (unsigned without a key or a
/// context).
pub async fn vote_with(
    core: &impl SignerCore,
    who: &str,
    key: Option<&SecretSigningKey>,
    rref: &RequestRef,
    decision: VoteDecision,
    reason: &str,
) -> VoteInput {
    let ctx = vote_context(core, rref).await;
    let signature = match (key, ctx) {
        (Some(key), Some(context)) => {
            let statement = VoteStatement {
                context,
                approver: who.to_owned(),
                key: key.public().to_text(),
                decision,
                reason: reason.to_owned(),
                at: now_unix(),
            };
            Some(VoteSignature {
                at: statement.at,
                key: statement.key.clone(),
                signature: key.sign(&statement.encode().unwrap()),
            })
        }
        _ => None,
    };
    VoteInput {
        reason: reason.to_owned(),
        signature,
    }
}

/// `who` approves with its own key, as its client would.
pub async fn approve_as(
    core: &impl SignerCore,
    who: &str,
    rref: &RequestRef,
    reason: &str,
) -> CoreResult<RequestRecord> {
    let key = approver_key(who);
    let vote = vote_with(core, who, key.as_ref(), rref, VoteDecision::Approve, reason).await;
    core.approve(&principal(who), rref, &vote).await
}

/// `who` rejects with its own key.
pub async fn reject_as(
    core: &impl SignerCore,
    who: &str,
    rref: &RequestRef,
    reason: &str,
) -> CoreResult<RequestRecord> {
    let key = approver_key(who);
    let vote = vote_with(core, who, key.as_ref(), rref, VoteDecision::Reject, reason).await;
    core.reject(&principal(who), rref, &vote).await
}

/// The test policy, with `extra_allow_rule` (TOML `[[rules]]`) after the deny rule.
pub fn policy_text(extra_allow_rule: &str) -> String {
    format!(
        r#"
[policy]
name = "core-test"
[roles]
signer = ["{PAYER}", "{ALICE}"]
approver = ["{ALICE}", "{BOB}", "{CAROL}"]
admin = ["{ADMIN}"]
broadcaster = ["{BROADCASTER}"]
{keys}
[assets.bitcoin.regtest]
native = {{ symbol = "BTC", decimals = 8 }}
[assets.ethereum.sepolia]
native = {{ symbol = "ETH", decimals = 18 }}
[address_books.blocked]
chain = "bitcoin"
addresses = ["{blocked}"]

[[rules]]
name = "blocked payees"
effect = "deny"
chains = ["bitcoin"]
any_destination_in = ["blocked"]
{extra_allow_rule}
[[rules]]
name = "btc small"
effect = "allow"
roles = ["signer"]
wallets = ["btc"]
kinds = ["transfer"]
assets = ["BTC"]
max_amount = "0.5 BTC"
destinations = "any"
[rules.limits]
windows = [{{ period = "24h", scope = "wallet", sum = "1 BTC" }}]

[[rules]]
name = "btc large"
effect = "require_approval"
roles = ["signer"]
wallets = ["btc"]
kinds = ["transfer"]
assets = ["BTC"]
min_amount = "0.5 BTC"
destinations = "any"
approval = {{ quorum = 2, roles = ["approver"], expires = "1h" }}

[[rules]]
name = "eth payouts"
effect = "allow"
roles = ["signer"]
wallets = ["eth"]
kinds = ["transfer"]
assets = ["ETH"]
destinations = "any"
allow_replacement = true
[rules.limits]
per_tx = "1 ETH"
"#,
        blocked = blocked_address(),
        keys = approver_keys_toml(),
    )
}

/// A principal as the edge would pass it (SAN URI if it has a scheme, else SAN DNS).
pub fn principal(name: &str) -> Principal {
    let source = if name.contains("://") {
        PrincipalSource::SanUri
    } else {
        PrincipalSource::SanDns
    };
    Principal::new(name, source)
}

pub fn payee_script(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

pub fn blocked_address() -> String {
    bitcoin::Address::from_script(&payee_script(66), bitcoin::Network::Regtest)
        .unwrap()
        .to_string()
}

/// A key store, a policy file and a state directory in a temporary directory.
pub struct Env {
    _dir: tempfile::TempDir,
    pub store: PathBuf,
    pub state: PathBuf,
    /// The state on PostgreSQL (else sled in `state`).
    pub postgres: Option<custos::state::postgres::PgSettings>,
    pub policy: PathBuf,
    pub btc: Wallet,
    pub eth: Wallet,
}

impl Env {
    /// A fresh store with the `btc` and `eth` wallets, and the test policy.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let pass = SecretString::new(PASS.into());
        let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
        let ks = KeyStore::create(
            &store,
            &pass,
            KdfParams::unsafe_weak(64, 1).unwrap(),
            &mnemonic,
            &SecretString::new(String::new()),
        )
        .unwrap();
        let unsealed = ks.unseal(&pass).unwrap();
        let btc = unsealed
            .create_wallet(
                "btc",
                Network::Bitcoin(bitcoin::Network::Regtest),
                Purpose::Bip84,
                0,
            )
            .unwrap();
        let eth = unsealed
            .create_wallet(
                "eth",
                Network::parse(custos::keys::Chain::Ethereum, "sepolia").unwrap(),
                Purpose::Bip44,
                0,
            )
            .unwrap();
        drop(unsealed);
        drop(ks);
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, policy_text("")).unwrap();
        Env {
            postgres: None,
            state: dir.path().join("state"),
            store,
            policy,
            btc,
            eth,
            _dir: dir,
        }
    }

    /// The same, with the state on PostgreSQL (a migrated schema of its own).
    pub fn with_postgres(settings: custos::state::postgres::PgSettings) -> Env {
        Env {
            postgres: Some(settings),
            ..Env::new()
        }
    }

    /// The core over the environment, sealed.
    pub fn open_sealed(&self) -> SigningCore {
        self.open_sealed_with(|_| {})
    }

    /// The core over the environment, sealed, with a changed configuration.
    pub fn open_sealed_with(&self, change: impl FnOnce(&mut CoreConfig)) -> SigningCore {
        let mut config =
            CoreConfig::new(self.store.clone(), self.state.clone(), self.policy.clone());
        change(&mut config);
        match &self.postgres {
            Some(settings) => {
                let engine = custos::state::postgres::PgEngine::open(settings).unwrap();
                SigningCore::open_with_engine(config, std::sync::Arc::new(engine)).unwrap()
            }
            None => SigningCore::open(config).unwrap(),
        }
    }

    /// The core over the environment, unsealed.
    pub fn open(&self) -> SigningCore {
        let core = self.open_sealed();
        unseal(&core);
        core
    }

    /// The state database, opened directly (no core may hold it), its records unsealed with the
    /// store's key (as `custos state verify` does).
    pub fn open_state(&self) -> State {
        let unsealed = KeyStore::open(&self.store)
            .unwrap()
            .unseal(&SecretString::new(PASS.into()))
            .unwrap();
        let state = match &self.postgres {
            Some(settings) => State::open_postgres(settings).unwrap(),
            None => State::open_sled(&self.state).unwrap(),
        };
        state.set_auth(Some(StateAuth::new(unsealed.state_key())));
        state
    }

    /// The store's audit key, read from the store itself (no core may hold it).
    pub fn audit_key(&self) -> Secret32 {
        let ks = KeyStore::open(&self.store).unwrap();
        ks.unseal(&SecretString::new(PASS.into()))
            .unwrap()
            .audit_key()
    }

    /// The store's audit key while a core holds the store's lock: read from a copy of the
    /// directory, which can be opened alongside.
    pub fn audit_key_of_copy(&self) -> Secret32 {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&self.store, copy.path());
        let ks = KeyStore::open(copy.path()).unwrap();
        ks.unseal(&SecretString::new(PASS.into()))
            .unwrap()
            .audit_key()
    }

    /// A PSBT spending one 1 BTC input of the wallet, paying `sats` to payee `n`, change back.
    pub fn psbt(&self, n: u8, sats: u64, salt: u32) -> bitcoin::Psbt {
        let mut b = Builder::new();
        b.salt = salt * 10;
        b.ours(&self.btc, false, 0, 100_000_000)
            .pay(payee_script(n), sats)
            .change(&self.btc, 0, 100_000_000 - sats - 2_000)
            .build()
    }

    pub fn eth_address(&self) -> alloy_primitives::Address {
        self.eth.account.ethereum_address(0).unwrap().unwrap()
    }
}

pub fn btc_request(id: &str, psbt: &bitcoin::Psbt) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: "btc".into(),
        payload: SignPayload::BitcoinPsbt(psbt.serialize()),
    }
}

pub fn eth_request(id: &str, nonce: u64, wei: u128, replacement: bool) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": format!("{SEPOLIA:#x}"),
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": ETH_PAYEE,
        "value": format!("{wei:#x}"),
        "data": "0x",
    });
    SignRequest {
        request_id: id.into(),
        wallet: "eth".into(),
        payload: SignPayload::EthereumTransaction {
            unsigned_tx: serde_json::to_vec(&tx).unwrap(),
            address_index: None,
            replacement,
        },
    }
}

pub const MILLI_ETH: u128 = 1_000_000_000_000_000;

pub fn signed(reply: &SignReply) -> (&SignedOutput, Option<u64>) {
    match &reply.outcome {
        SignOutcome::Signed(r) => (&r.output, r.outbox_sequence),
        other => panic!("not signed: {other:?}"),
    }
}

pub fn wallet_usage(state: &State) -> (u64, String) {
    let key = LedgerKey {
        scope: Scope::Wallet,
        name: "btc".into(),
        asset: "BTC".into(),
    };
    let now = now_unix();
    let u = state.usage(&key, now - 86_400, now + 86_400).unwrap();
    (u.count, u.sum.to_string())
}

pub fn outbox_len(core: &SigningCore) -> usize {
    core.state().count(Tree::Outbox).unwrap() as usize
}

pub fn audit_events(core: &SigningCore) -> Vec<String> {
    audit::tail(core.state(), 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

pub fn denied(e: CoreError) -> (String, String) {
    match e {
        CoreError::PolicyDenied { rule, code, .. } => (rule, code),
        other => panic!("expected a policy denial, got {other:?}"),
    }
}

/// Unseals `core` with the store's passphrase (the recovery pass runs).
pub fn unseal(core: &SigningCore) {
    core.unseal_with_passphrase(&SecretString::new(PASS.into()))
        .unwrap();
}

/// Copies a directory tree (a backup, or a copy taken from another installation).
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Writes a raw value, as someone with write access to the state directory would.
pub fn raw_put(state: &State, tree: Tree, key: &[u8], value: Vec<u8>) {
    state
        .engine()
        .transact_raw(&mut |tx| tx.insert(tree, key, value.clone()).map(|_| ()))
        .unwrap();
}

/// Removes a raw value, as someone with write access to the state directory would.
pub fn raw_remove(state: &State, tree: Tree, key: &[u8]) {
    state
        .engine()
        .transact_raw(&mut |tx| tx.remove(tree, key).map(|_| ()))
        .unwrap();
}
