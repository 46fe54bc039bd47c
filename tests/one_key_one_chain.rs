//! One key, one chain, through the signing core (a real key store, policy file and state): a
//! second wallet on the same seed and path is refused by Admin.CreateWallet; a 32-byte personal
//! message (a hash, signed blind) is refused by a policy that allows `message` and signed once a
//! rule names `blind_message`; EIP-712 data without `domain.chainId` is refused unless the rule
//! says `allow_typed_data_without_chain_id`.

use std::path::PathBuf;

use custos::keys::{Chain, MnemonicSecret, Network, Purpose};
use custos::keystore::{KdfParams, KeyStore};
use custos::secret::SecretString;
use custos::signing::contract::{
    CoreError, CreateWallet, Principal, PrincipalSource, SignOutcome, SignPayload, SignRequest,
    SignerCore,
};
use custos::signing::{CoreConfig, SigningCore};
use serde_json::Value;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const PASS: &str = "correct horse battery staple";
const SIGNER: &str = "spiffe://t/signer";
const ADMIN: &str = "admin.t";

fn policy_text(extra: &str) -> String {
    format!(
        r#"
[policy]
name = "one-key"
[roles]
signer = ["{SIGNER}"]
admin = ["{ADMIN}"]
[assets.ethereum.mainnet]
native = {{ symbol = "ETH", decimals = 18 }}

[[rules]]
name = "messages"
effect = "allow"
roles = ["signer"]
wallets = ["eth"]
kinds = ["message", "typed_message"]
{extra}
"#
    )
}

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
    state: PathBuf,
    policy: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let pass = SecretString::new(PASS.into());
        let ks = KeyStore::create(
            &store,
            &pass,
            KdfParams::unsafe_weak(64, 1).unwrap(),
            &MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap(),
            &SecretString::new(String::new()),
        )
        .unwrap();
        ks.unseal(&pass)
            .unwrap()
            .create_wallet("eth", Network::Ethereum { chain_id: 1 }, Purpose::Bip44, 0)
            .unwrap();
        drop(ks);
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, policy_text("")).unwrap();
        Env {
            state: dir.path().join("state"),
            store,
            policy,
            _dir: dir,
        }
    }

    fn open(&self) -> SigningCore {
        let core = SigningCore::open(CoreConfig::new(
            self.store.clone(),
            self.state.clone(),
            self.policy.clone(),
        ))
        .unwrap();
        core.unseal_with_passphrase(&SecretString::new(PASS.into()))
            .unwrap();
        core
    }
}

fn principal(name: &str) -> Principal {
    let source = if name.contains("://") {
        PrincipalSource::SanUri
    } else {
        PrincipalSource::SanDns
    };
    Principal::new(name, source)
}

fn message(id: &str, bytes: &[u8]) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: "eth".into(),
        payload: SignPayload::PersonalMessage {
            message: bytes.to_vec(),
            address_index: None,
        },
    }
}

/// The EIP-712 "Mail" example (tests/data/ethereum/typed_data.json), with or without chainId.
fn mail(id: &str, with_chain_id: bool) -> SignRequest {
    let data: Value = serde_json::from_str(include_str!("data/ethereum/typed_data.json")).unwrap();
    let vector = data["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "mail")
        .unwrap();
    let mut typed: Value =
        serde_json::from_str(vector["typed_data_json"].as_str().unwrap()).unwrap();
    if !with_chain_id {
        typed["domain"].as_object_mut().unwrap().remove("chainId");
        let fields = typed["types"]["EIP712Domain"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "chainId");
    }
    SignRequest {
        request_id: id.into(),
        wallet: "eth".into(),
        payload: SignPayload::TypedData {
            json: serde_json::to_string(&typed).unwrap(),
            address_index: None,
        },
    }
}

fn signed(result: Result<custos::signing::contract::SignReply, CoreError>) {
    match result {
        Ok(reply) => assert!(matches!(reply.outcome, SignOutcome::Signed(_)), "{reply:?}"),
        Err(e) => panic!("refused: {e}"),
    }
}

fn denied(result: Result<custos::signing::contract::SignReply, CoreError>, needle: &str) {
    match result {
        Err(CoreError::PolicyDenied { code, reason, .. }) => {
            assert_eq!(code, "deny.default", "{reason}");
            assert!(reason.contains(needle), "{needle:?} not in {reason}");
        }
        other => panic!("expected a policy denial, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_wallet_on_the_same_path_is_refused_by_the_core() {
    let env = Env::new();
    let core = env.open();
    let create = |network: &str, account: u32| CreateWallet {
        name: "sepolia".into(),
        chain: Chain::Ethereum,
        network: network.into(),
        purpose: None,
        account,
        seed: None,
    };
    let error = core
        .create_wallet(&principal(ADMIN), create("sepolia", 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "key-in-use", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("wallet 'eth'") && text.contains("account 1 is free"),
        "{text}"
    );
    core.create_wallet(&principal(ADMIN), create("sepolia", 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn blind_messages_and_unbound_typed_data_need_rules_that_allow_them() {
    let env = Env::new();
    let core = env.open();
    let who = principal(SIGNER);
    signed(core.sign(&who, message("m-31", &[7u8; 31])).await);
    signed(core.sign(&who, message("m-33", &[7u8; 33])).await);
    denied(
        core.sign(&who, message("m-32", &[7u8; 32])).await,
        "a blind_message is allowed only by a rule that names it",
    );
    signed(core.sign(&who, mail("t-bound", true)).await);
    denied(
        core.sign(&who, mail("t-unbound", false)).await,
        "needs a rule with allow_typed_data_without_chain_id",
    );

    // The policy now names blind messages and allows unbound typed data (new request ids).
    std::fs::write(
        &env.policy,
        policy_text("allow_typed_data_without_chain_id = true\n\n[[rules]]\nname = \"blind\"\neffect = \"allow\"\nroles = [\"signer\"]\nwallets = [\"eth\"]\nkinds = [\"blind_message\"]\n"),
    )
    .unwrap();
    core.reload_policy(&principal(ADMIN)).await.unwrap();
    signed(core.sign(&who, message("m-32b", &[7u8; 32])).await);
    signed(core.sign(&who, mail("t-unbound-b", false)).await);
}
