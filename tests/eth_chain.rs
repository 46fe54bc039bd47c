//! The Ethereum chain module against independent vectors (eth-account, see
//! tests/data/ethereum/README.md), the EIP-155 and EIP-712 examples, and adversarial payloads.

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Signature, B256, U256};
use custos::assets::{TokenInfo, TokenRegistry};
use custos::backend::{SeedId, SoftwareBackend};
use custos::chains::ethereum::{decode, sign, EthError, EthPayload, EthSigned};
use custos::intent::ActionKind;
use custos::keys::{AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::SecretString;
use custos::wallet::Wallet;
use serde_json::{json, Value};

const MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";
const ADDRESS_1: &str = "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0";
const USDC: &str = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";

fn master() -> MasterKey {
    let m = MnemonicSecret::parse(&SecretString::new(MNEMONIC.into())).unwrap();
    MasterKey::from_seed(&m.to_seed(&SecretString::new(String::new()))).unwrap()
}

fn wallet(chain_id: u64) -> Wallet {
    let network = Network::Ethereum { chain_id };
    let path = AccountPath::new(network, Purpose::Bip44, 0).unwrap();
    Wallet {
        name: "hot".into(),
        seed: SeedId("seed-1".into()),
        account: AccountKey::from_master(&master(), network, path).unwrap(),
    }
}

fn backend() -> SoftwareBackend {
    let b = SoftwareBackend::new();
    b.load(SeedId("seed-1".into()), master());
    b
}

fn tokens() -> TokenRegistry {
    TokenRegistry::well_known()
}

fn ours() -> Address {
    ADDRESS.parse().unwrap()
}

fn tx_json(v: Value) -> Result<custos::chains::ethereum::DecodedEth, EthError> {
    let text = v.to_string();
    decode(
        &wallet(1),
        0,
        EthPayload::Transaction(text.as_bytes()),
        &tokens(),
    )
}

fn base_1559() -> Value {
    json!({"type":"0x2","chainId":"0x1","nonce":"0x7","gas":"0x5208","maxFeePerGas":"0x6fc23ac00",
           "maxPriorityFeePerGas":"0x3b9aca00","to":"0x3535353535353535353535353535353535353535",
           "value":"0xde0b6b3a7640000","data":"0x"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn recover_tx(raw_hex: &str) -> Address {
    let raw = hex::decode(raw_hex.trim_start_matches("0x")).unwrap();
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    env.recover_signer().unwrap()
}

fn recover_message(hash: [u8; 32], sig_hex: &str) -> Address {
    let bytes = hex::decode(sig_hex.trim_start_matches("0x")).unwrap();
    assert_eq!(bytes.len(), 65);
    assert!(bytes[64] == 27 || bytes[64] == 28);
    let sig = Signature::from_raw(&bytes).unwrap();
    sig.recover_address_from_prehash(&B256::from(hash)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Independent vectors

#[test]
fn transactions_match_eth_account() {
    let data: Value =
        serde_json::from_str(include_str!("data/ethereum/transactions.json")).unwrap();
    assert_eq!(data["meta"]["address"], ADDRESS);
    let vectors = data["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 40);
    let backend = backend();
    for (i, v) in vectors.iter().enumerate() {
        let chain_id = v["chain_id"].as_u64().unwrap();
        let w = wallet(chain_id);
        let json_text = v["json"].to_string();
        let rlp_hex = v["unsigned_rlp"].as_str().unwrap();
        let rlp_raw = hex::decode(&rlp_hex[2..]).unwrap();
        for payload in [json_text.as_bytes(), rlp_hex.as_bytes(), rlp_raw.as_slice()] {
            let decoded = decode(&w, 0, EthPayload::Transaction(payload), &tokens())
                .unwrap_or_else(|e| panic!("vector {i}: {e}"));
            assert_eq!(
                format!("0x{}", hex::encode(decoded.signing_hash())),
                v["signing_hash"].as_str().unwrap(),
                "vector {i} signing hash"
            );
            assert_eq!(decoded.from_address(), ours());
            assert_eq!(
                decoded.transaction().unwrap().tx_type() as u64,
                v["type"].as_u64().unwrap()
            );
            let signed = sign(decoded, &w, &backend).unwrap();
            let EthSigned::Transaction {
                raw_tx_hex,
                tx_hash,
            } = signed
            else {
                panic!("vector {i}: not a transaction")
            };
            assert_eq!(
                raw_tx_hex,
                v["raw_tx"].as_str().unwrap(),
                "vector {i} raw tx"
            );
            assert_eq!(
                tx_hash,
                v["tx_hash"].as_str().unwrap(),
                "vector {i} tx hash"
            );
            assert_eq!(recover_tx(&raw_tx_hex), ours(), "vector {i} signer");
        }
    }
}

#[test]
fn messages_match_eth_account() {
    let data: Value = serde_json::from_str(include_str!("data/ethereum/messages.json")).unwrap();
    let backend = backend();
    let w = wallet(1);
    let mut kinds = std::collections::BTreeSet::new();
    for v in data["vectors"].as_array().unwrap() {
        let msg = hex::decode(&v["message_hex"].as_str().unwrap()[2..]).unwrap();
        let decoded = decode(&w, 0, EthPayload::PersonalMessage(&msg), &tokens()).unwrap();
        // Exactly 32 bytes is a hash signed blind: its own kind, which a policy allows by name.
        let expected = if msg.len() == 32 {
            ActionKind::BlindMessage
        } else {
            ActionKind::Message
        };
        assert_eq!(decoded.intent().kind, expected);
        kinds.insert(expected);
        assert_eq!(decoded.intent().fee, U256::ZERO);
        let hash = decoded.signing_hash();
        assert_eq!(
            format!("0x{}", hex::encode(hash)),
            v["hash"].as_str().unwrap()
        );
        let EthSigned::Message { signature_hex } = sign(decoded, &w, &backend).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(signature_hex, v["signature"].as_str().unwrap());
        assert_eq!(recover_message(hash, &signature_hex), ours());
    }
    assert_eq!(kinds.len(), 2, "the vectors hold both kinds: {kinds:?}");
}

#[test]
fn typed_data_matches_eth_account() {
    let data: Value = serde_json::from_str(include_str!("data/ethereum/typed_data.json")).unwrap();
    let backend = backend();
    let w = wallet(1);
    for v in data["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let text = v["typed_data_json"].as_str().unwrap();
        let decoded = decode(&w, 0, EthPayload::TypedData(text.as_bytes()), &tokens())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let hash = decoded.signing_hash();
        assert_eq!(
            format!("0x{}", hex::encode(hash)),
            v["hash"].as_str().unwrap(),
            "{name}"
        );
        let intent = decoded.intent().clone();
        let EthSigned::Message { signature_hex } = sign(decoded, &w, &backend).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(signature_hex, v["signature"].as_str().unwrap(), "{name}");
        assert_eq!(recover_message(hash, &signature_hex), ours(), "{name}");
        match name {
            "mail" | "nested" => assert_eq!(intent.kind, ActionKind::TypedMessage),
            "eip2612_permit" => {
                assert_eq!(intent.kind, ActionKind::TokenApproval);
                assert_eq!(intent.asset.symbol, "USDC");
                assert_eq!(intent.amount, U256::from(1_000_000u64));
                assert_eq!(
                    intent.destinations[0].address,
                    "0x1111111254eeb25477b68fb85ed929f73a960582"
                );
                assert_eq!(intent.deadline, Some(1_900_000_000));
            }
            "permit2_single" => {
                assert_eq!(intent.kind, ActionKind::TokenApproval);
                assert_eq!(intent.asset.symbol, "USDT");
                assert!(intent.is_unlimited(), "max uint160 is unlimited");
                assert_eq!(
                    intent.destinations[0].address,
                    "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
                );
                assert_eq!(intent.deadline, Some(1_800_000_000));
            }
            "permit2_transfer_from" => {
                assert_eq!(intent.kind, ActionKind::TokenApproval);
                assert_eq!(intent.asset.symbol, "DAI");
                assert_eq!(intent.amount, U256::from(5_000_000_000_000_000_000u128));
                assert_eq!(intent.deadline, Some(1_750_000_000));
            }
            other => panic!("unexpected vector {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The examples from the EIPs

#[test]
fn eip155_example() {
    // EIP-155: nonce 9, gasPrice 20 gwei, gas 21000, to 0x3535…, 1 ether, chain id 1, key 0x4646…
    let tx = json!({"nonce":"0x9","gasPrice":"0x4a817c800","gas":"0x5208",
        "to":"0x3535353535353535353535353535353535353535","value":"0xde0b6b3a7640000","data":"0x",
        "chainId":"0x1"});
    let decoded = tx_json(tx).unwrap();
    assert_eq!(
        hex::encode(decoded.signing_hash()),
        "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    );
    // The key is not in a wallet: sign with libsecp256k1 directly and assemble.
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let key = bitcoin::secp256k1::SecretKey::from_slice(&[0x46; 32]).unwrap();
    let msg = bitcoin::secp256k1::Message::from_digest(decoded.signing_hash());
    let recoverable = secp.sign_ecdsa_recoverable(&msg, &key);
    let expected = custos::keys::account::ethereum_address_of(&key.public_key(&secp));
    let sig = custos::chains::ethereum::sign::checked_signature(
        &recoverable,
        &B256::from(decoded.signing_hash()),
        &expected,
    )
    .unwrap();
    let (raw, _) = decoded.transaction().unwrap().encode_signed(&sig);
    assert_eq!(
        format!("0x{}", hex::encode(raw)),
        "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    );
}

#[test]
fn eip712_mail_example() {
    let data: Value = serde_json::from_str(include_str!("data/ethereum/typed_data.json")).unwrap();
    let mail = data["vectors"][0]["typed_data"].to_string();
    let decoded = decode(
        &wallet(1),
        0,
        EthPayload::TypedData(mail.as_bytes()),
        &tokens(),
    )
    .unwrap();
    assert_eq!(
        hex::encode(decoded.signing_hash()),
        "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    let info = decoded.intent().message.clone().unwrap();
    assert_eq!(info.domain_name.as_deref(), Some("Ether Mail"));
    assert_eq!(info.domain_chain_id, Some(1));
    assert_eq!(
        info.verifying_contract.as_deref(),
        Some("0xcccccccccccccccccccccccccccccccccccccccc")
    );
    assert_eq!(info.primary_type.as_deref(), Some("Mail"));
}

// ---------------------------------------------------------------------------------------------
// Intents

fn erc20(selector: &str, words: &[&str]) -> String {
    let mut s = format!("0x{selector}");
    for w in words {
        s.push_str(&format!("{:0>64}", w.trim_start_matches("0x")));
    }
    s
}

const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

#[test]
fn native_transfer_intent() {
    let d = tx_json(base_1559()).unwrap();
    let i = d.intent();
    assert_eq!(i.kind, ActionKind::Transfer);
    assert_eq!(i.asset.symbol, "ETH");
    assert_eq!(i.amount, U256::from(10u64).pow(U256::from(18)));
    assert_eq!(
        i.destinations[0].address,
        "0x3535353535353535353535353535353535353535"
    );
    assert_eq!(i.fee, U256::from(21_000u64) * U256::from(30_000_000_000u64));
    assert_eq!(i.nonce, Some(7));
    assert_eq!(d.nonce(), Some(7));
    assert_eq!(i.network, "mainnet");
}

#[test]
fn token_intents() {
    let to_usdc = |data: String, value: &str| {
        tx_json(with(
            with(with(base_1559(), "to", json!(USDC)), "data", json!(data)),
            "value",
            json!(value),
        ))
        .unwrap()
        .intent()
        .clone()
    };
    let i = to_usdc(erc20("a9059cbb", &[BOB, "f4240"]), "0x0");
    assert_eq!(i.kind, ActionKind::TokenTransfer);
    assert_eq!(i.asset.symbol, "USDC");
    assert_eq!(i.asset.decimals, 6);
    assert_eq!(i.destinations[0].address, format!("0x{BOB}"));
    assert_eq!(i.amount, U256::from(1_000_000u64));
    assert_eq!(i.contract.as_deref(), Some(USDC));
    assert_eq!(i.selector.as_deref(), Some("0xa9059cbb"));
    assert_eq!(i.token_owner, None);

    let owner = "1111111111111111111111111111111111111111";
    let i = to_usdc(erc20("23b872dd", &[owner, BOB, "5"]), "0x0");
    assert_eq!(i.kind, ActionKind::TokenTransfer);
    assert_eq!(i.destinations[0].address, format!("0x{BOB}"));
    assert_eq!(i.amount, U256::from(5u8));
    assert_eq!(i.token_owner, Some(format!("0x{owner}")));
    assert!(i.summary().contains("owned by"), "{}", i.summary());

    let max = "f".repeat(64);
    let i = to_usdc(erc20("095ea7b3", &[BOB, &max]), "0x0");
    assert_eq!(i.kind, ActionKind::TokenApproval);
    assert_eq!(i.amount, U256::MAX);
    assert!(i.is_unlimited());
    assert!(i.summary().contains("unlimited USDC"), "{}", i.summary());

    // Every inexact form is a contract call, never a transfer.
    let exact = erc20("a9059cbb", &[BOB, "f4240"]);
    let mut dirty = exact.clone();
    dirty.replace_range(10..12, "01");
    for (data, value) in [
        (exact.clone(), "0x1"),                       // token call that also sends ETH
        (exact[..exact.len() - 2].to_owned(), "0x0"), // short
        (format!("{exact}00"), "0x0"),                // extra byte
        (format!("{exact}{}", "0".repeat(64)), "0x0"), // extra word
        (format!("0xa9059cbc{}", &exact[10..]), "0x0"), // wrong selector
        (dirty, "0x0"),                               // dirty address padding
        ("0xa9059c".to_owned(), "0x0"),               // not even a selector
    ] {
        let i = to_usdc(data.clone(), value);
        assert_eq!(i.kind, ActionKind::ContractCall, "{data}");
        assert_eq!(i.contract.as_deref(), Some(USDC));
        assert_eq!(i.amount, U256::from_str_radix(&value[2..], 16).unwrap());
    }
    // Known calldata to an unknown contract.
    let i = tx_json(with(base_1559(), "data", json!(exact)))
        .unwrap()
        .intent()
        .clone();
    assert_eq!(i.kind, ActionKind::ContractCall);
    assert_eq!(i.selector.as_deref(), Some("0xa9059cbb"));
    assert_eq!(i.amount, U256::from(10u64).pow(U256::from(18)));
    // The token is known per chain: the same contract on another chain is unknown.
    let mut registry = TokenRegistry::new();
    registry.insert(TokenInfo {
        chain_id: 5,
        contract: USDC.into(),
        symbol: "USDC".into(),
        decimals: 6,
    });
    let text = with(
        with(base_1559(), "to", json!(USDC)),
        "data",
        json!(erc20("a9059cbb", &[BOB, "1"])),
    )
    .to_string();
    let d = decode(
        &wallet(1),
        0,
        EthPayload::Transaction(text.as_bytes()),
        &registry,
    )
    .unwrap();
    assert_eq!(d.intent().kind, ActionKind::ContractCall);
}

#[test]
fn contract_creation_intent() {
    let d = tx_json(with(
        without(base_1559(), "to"),
        "data",
        json!("0x6080604052"),
    ))
    .unwrap();
    assert_eq!(d.intent().kind, ActionKind::ContractCreation);
    assert!(d.intent().destinations.is_empty());
    let d = tx_json(with(base_1559(), "to", Value::Null)).unwrap();
    assert_eq!(d.intent().kind, ActionKind::ContractCreation);
}

// ---------------------------------------------------------------------------------------------
// Refusals

fn refused(v: Value) -> String {
    match tx_json(v.clone()) {
        Ok(_) => panic!("accepted {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_transactions_are_refused() {
    let b = base_1559();
    let legacy = json!({"nonce":"0x0","gasPrice":"0x1","gas":"0x5208","to":"0x3535353535353535353535353535353535353535","chainId":"0x1"});
    let cases: Vec<(Value, &str)> = vec![
        (
            with(b.clone(), "chainId", json!("0x5")),
            "chain id mismatch",
        ),
        (without(legacy.clone(), "chainId"), "without a chain id"),
        (without(b.clone(), "nonce"), "missing field 'nonce'"),
        (without(b.clone(), "gas"), "missing field 'gas'"),
        (
            without(b.clone(), "maxPriorityFeePerGas"),
            "missing field 'maxPriorityFeePerGas'",
        ),
        (
            without(without(b.clone(), "maxPriorityFeePerGas"), "maxFeePerGas"),
            "missing field 'maxFeePerGas'",
        ),
        (
            without(legacy.clone(), "gasPrice"),
            "missing field 'gasPrice'",
        ),
        (
            with(b.clone(), "maxPriorityFeePerGas", json!("0x6fc23ac01")),
            "above maxFeePerGas",
        ),
        (
            with(b.clone(), "from", json!(ADDRESS_1)),
            "is not this wallet's address",
        ),
        (
            with(b.clone(), "gasPrice", json!("0x1")),
            "conflicting fields 'gasPrice'",
        ),
        (
            with(legacy.clone(), "maxFeePerGas", json!("0x1")),
            "conflicting fields",
        ),
        (
            with(
                with(legacy.clone(), "type", json!("0x0")),
                "accessList",
                json!([]),
            ),
            "not allowed in a type 0",
        ),
        (with(b.clone(), "foo", json!(1)), "unknown field 'foo'"),
        (with(b.clone(), "r", json!("0x1")), "unknown field 'r'"),
        (
            with(b.clone(), "nonce", json!("0x07")),
            "without leading zeros",
        ),
        (with(b.clone(), "nonce", json!(7)), "invalid field 'nonce'"),
        (
            with(b.clone(), "nonce", json!("0x")),
            "invalid field 'nonce'",
        ),
        (
            with(b.clone(), "nonce", json!("0x10000000000000000")),
            "below 2^64",
        ),
        (
            with(
                b.clone(),
                "maxFeePerGas",
                json!(format!("0x1{}", "0".repeat(32))),
            ),
            "below 2^128",
        ),
        (
            with(b.clone(), "value", json!(format!("0x1{}", "0".repeat(64)))),
            "invalid field 'value'",
        ),
        (
            with(b.clone(), "data", json!("0xabc")),
            "invalid field 'data'",
        ),
        (
            with(
                with(b.clone(), "data", json!("0x01")),
                "input",
                json!("0x02"),
            ),
            "conflicting fields 'data' and 'input'",
        ),
        (
            with(
                with(b.clone(), "gas", json!("0x1")),
                "gasLimit",
                json!("0x2"),
            ),
            "conflicting fields 'gas'",
        ),
        (
            with(b.clone(), "type", json!("0x3")),
            "unsupported transaction type",
        ),
        (
            with(
                b.clone(),
                "to",
                json!("0x353535353535353535353535353535353535353"),
            ),
            "invalid field 'to'",
        ),
        (
            with(
                b.clone(),
                "to",
                json!("0x9858EfFD232B4033E47d90003D41EC34EcaEda95"),
            ),
            "eip-55",
        ),
        (
            with(
                b.clone(),
                "accessList",
                json!([{"address":"0x3535353535353535353535353535353535353535"}]),
            ),
            "storageKeys",
        ),
        (
            with(
                b.clone(),
                "accessList",
                json!([{"address":"0x3535353535353535353535353535353535353535","storageKeys":[],"x":1}]),
            ),
            "unknown field 'x'",
        ),
        (json!([1, 2]), "json object"),
    ];
    for (v, expected) in cases {
        let e = refused(v.clone());
        assert!(
            e.contains(expected),
            "{v}: got '{e}', expected '{expected}'"
        );
    }
    // Duplicate keys.
    let dup = br#"{"type":"0x2","to":"0x3535353535353535353535353535353535353535","to":"0x3636363636363636363636363636363636363636"}"#;
    let e = decode(&wallet(1), 0, EthPayload::Transaction(dup), &tokens()).unwrap_err();
    assert!(e.to_string().contains("duplicate field 'to'"), "{e}");
    // From at another index: accepted at that index.
    let v = with(base_1559(), "from", json!(ADDRESS_1)).to_string();
    let d = decode(
        &wallet(1),
        1,
        EthPayload::Transaction(v.as_bytes()),
        &tokens(),
    )
    .unwrap();
    assert_eq!(d.from_address(), ADDRESS_1.parse::<Address>().unwrap());
    // A Bitcoin wallet is not an Ethereum wallet.
    let network = Network::Bitcoin(bitcoin::Network::Bitcoin);
    let btc = Wallet {
        name: "btc".into(),
        seed: SeedId("seed-1".into()),
        account: AccountKey::from_master(
            &master(),
            network,
            AccountPath::new(network, Purpose::Bip84, 0).unwrap(),
        )
        .unwrap(),
    };
    assert!(matches!(
        decode(&btc, 0, EthPayload::PersonalMessage(b"x"), &tokens()),
        Err(EthError::NotEthereumWallet { .. })
    ));
}

#[test]
fn malformed_rlp_is_refused() {
    let data: Value =
        serde_json::from_str(include_str!("data/ethereum/transactions.json")).unwrap();
    let v = &data["vectors"];
    let pick = |ty: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == ty && x["chain_id"] == 1)
            .unwrap()
            .clone()
    };
    let w = wallet(1);
    let dec = |bytes: &[u8]| decode(&w, 0, EthPayload::Transaction(bytes), &tokens());
    for ty in [0, 1, 2] {
        let x = pick(ty);
        let unsigned = hex::decode(&x["unsigned_rlp"].as_str().unwrap()[2..]).unwrap();
        let signed = hex::decode(&x["raw_tx"].as_str().unwrap()[2..]).unwrap();
        assert!(
            matches!(dec(&signed), Err(EthError::AlreadySigned)),
            "type {ty}: {:?}",
            dec(&signed)
        );
        let mut trailing = unsigned.clone();
        trailing.push(0);
        assert!(dec(&trailing).is_err(), "type {ty} trailing");
        assert!(
            dec(&unsigned[..unsigned.len() - 1]).is_err(),
            "type {ty} short"
        );
        // On another chain's wallet.
        let e = decode(&wallet(5), 0, EthPayload::Transaction(&unsigned), &tokens()).unwrap_err();
        assert!(
            matches!(e, EthError::ChainIdMismatch { expected: 5, .. }),
            "{e}"
        );
    }
    // Pre-EIP-155 legacy list: [nonce, gasPrice, gas, to, value, data].
    let pre155 = hex::decode(
        "e4098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a7640000",
    )
    .unwrap();
    assert!(dec(&pre155).is_err());
    let mut pre155_ok_len = pre155.clone();
    pre155_ok_len.push(0x80);
    pre155_ok_len[0] += 1;
    assert!(matches!(
        dec(&pre155_ok_len),
        Err(EthError::Rlp(_)) | Err(EthError::MissingChainId)
    ));
    let pre155 = hex::decode(
        "e9098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080",
    )
    .unwrap();
    assert!(
        matches!(dec(&pre155), Err(EthError::MissingChainId)),
        "{:?}",
        dec(&pre155)
    );
    // Blob and set-code transactions, garbage.
    assert!(matches!(
        dec(&[0x03, 0xc0]),
        Err(EthError::UnsupportedType(3))
    ));
    assert!(matches!(
        dec(&[0x04, 0xc0]),
        Err(EthError::UnsupportedType(4))
    ));
    assert!(dec(b"").is_err());
    assert!(dec(b"0x").is_err());
    assert!(dec(b"0xzz").is_err());
    assert!(dec(b"hello").is_err());
}

fn typed(v: &Value) -> Result<custos::chains::ethereum::DecodedEth, EthError> {
    let text = v.to_string();
    decode(
        &wallet(1),
        0,
        EthPayload::TypedData(text.as_bytes()),
        &tokens(),
    )
}

fn vector(name: &str) -> Value {
    let data: Value = serde_json::from_str(include_str!("data/ethereum/typed_data.json")).unwrap();
    data["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()["typed_data"]
        .clone()
}

#[test]
fn malformed_typed_data_is_refused() {
    let mail = vector("mail");
    let permit = vector("eip2612_permit");
    let single = vector("permit2_single");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut m = mail.clone();
    m["domain"]["chainId"] = json!(5);
    cases.push((m, "chain id mismatch"));
    let mut m = mail.clone();
    m["domain"]["chainId"] = json!("0x5");
    cases.push((m, "chain id mismatch"));
    let mut m = mail.clone();
    m["extra"] = json!(1);
    cases.push((m, "unknown field 'extra'"));
    let mut m = mail.clone();
    m["domain"]["chainID"] = json!(1);
    cases.push((m, "unknown field 'chainID'"));
    let mut m = mail.clone();
    m["message"]["from"]["age"] = json!(1);
    cases.push((m, "not declared"));
    let mut m = mail.clone();
    m["message"].as_object_mut().unwrap().remove("contents");
    cases.push((m, "missing"));
    let mut m = mail.clone();
    m["types"]["EIP712Domain"]
        .as_array_mut()
        .unwrap()
        .swap(0, 1);
    cases.push((m, "EIP712Domain type declares"));
    let mut m = mail.clone();
    m["primaryType"] = json!("Letter");
    cases.push((m, "not declared"));
    let mut m = mail.clone();
    m["message"]["to"]["wallet"] = json!("0x12");
    cases.push((m, "invalid typed data"));
    let mut m = permit.clone();
    m["message"]["owner"] = json!(ADDRESS_1);
    cases.push((m, "owner"));
    let mut m = permit.clone();
    m["types"]["Permit"].as_array_mut().unwrap().swap(3, 4);
    m["message"]["nonce"] = json!(0);
    cases.push((m, "unrecognised permit"));
    let mut m = single.clone();
    m["primaryType"] = json!("PermitDetails");
    m["message"] = m["message"]["details"].clone();
    cases.push((m, "unrecognised permit"));
    let mut m = single.clone();
    m["types"]["PermitBatch"] = json!([{"name":"details","type":"PermitDetails[]"},{"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}]);
    m["types"].as_object_mut().unwrap().remove("PermitSingle");
    m["primaryType"] = json!("PermitBatch");
    let d = m["message"]["details"].clone();
    m["message"]["details"] = json!([d.clone(), d]);
    cases.push((m, "batch of 2 tokens"));
    for (v, expected) in cases {
        match typed(&v) {
            Ok(_) => panic!("accepted {v}"),
            Err(e) => assert!(
                e.to_string().contains(expected),
                "got '{e}', expected '{expected}'"
            ),
        }
    }
}

#[test]
fn permit_variants() {
    // An EIP-2612 permit for a token the registry does not know is still an approval.
    let mut p = vector("eip2612_permit");
    p["domain"]["verifyingContract"] = json!("0x1234567890123456789012345678901234567890");
    let i = typed(&p).unwrap().intent().clone();
    assert_eq!(i.kind, ActionKind::TokenApproval);
    assert_eq!(i.asset.symbol, "0x1234567890123456789012345678901234567890");
    assert_eq!(i.asset.decimals, 0);
    // Unlimited, written as a big JSON number.
    let text = vector("eip2612_permit").to_string().replace(
        "\"1000000\"",
        "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    );
    let d = decode(
        &wallet(1),
        0,
        EthPayload::TypedData(text.as_bytes()),
        &tokens(),
    )
    .unwrap();
    assert!(d.intent().is_unlimited());
    // DAI's permit: allowed = true is unlimited.
    let dai = json!({
        "types": {
            "EIP712Domain": [{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
            "Permit": [{"name":"holder","type":"address"},{"name":"spender","type":"address"},{"name":"nonce","type":"uint256"},{"name":"expiry","type":"uint256"},{"name":"allowed","type":"bool"}]
        },
        "primaryType": "Permit",
        "domain": {"name":"Dai Stablecoin","version":"1","chainId":1,"verifyingContract":"0x6B175474E89094C44Da98b954EedeAC495271d0F"},
        "message": {"holder": ADDRESS, "spender": format!("0x{BOB}"), "nonce": 0, "expiry": 0, "allowed": true}
    });
    let i = typed(&dai).unwrap().intent().clone();
    assert_eq!(i.kind, ActionKind::TokenApproval);
    assert_eq!(i.asset.symbol, "DAI");
    assert_eq!(i.amount, U256::MAX);
    assert_eq!(i.deadline, None);
    // Permit2 PermitTransferFrom with a witness (UniswapX style).
    let mut w = vector("permit2_transfer_from");
    w["types"]["PermitWitnessTransferFrom"] = json!([
        {"name":"permitted","type":"TokenPermissions"},{"name":"spender","type":"address"},
        {"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"},{"name":"witness","type":"Order"}]);
    w["types"]["Order"] = json!([{"name":"id","type":"uint256"}]);
    w["types"]
        .as_object_mut()
        .unwrap()
        .remove("PermitTransferFrom");
    w["primaryType"] = json!("PermitWitnessTransferFrom");
    w["message"]["witness"] = json!({"id": 1});
    let i = typed(&w).unwrap().intent().clone();
    assert_eq!(i.kind, ActionKind::TokenApproval);
    assert_eq!(i.asset.symbol, "DAI");
    // A typed message without a domain chain id is allowed, and says so.
    let mut m = vector("mail");
    m["domain"].as_object_mut().unwrap().remove("chainId");
    m["types"]["EIP712Domain"].as_array_mut().unwrap().remove(2);
    let i = typed(&m).unwrap().intent().clone();
    assert_eq!(i.kind, ActionKind::TypedMessage);
    assert_eq!(i.message.unwrap().domain_chain_id, None);
}

#[test]
fn signing_checks_the_wallet() {
    let d = tx_json(base_1559()).unwrap();
    let mut other = wallet(1);
    other.name = "cold".into();
    assert!(matches!(
        sign(d.clone(), &other, &backend()),
        Err(EthError::WalletMismatch { .. })
    ));
    // A backend without the seed: not our key.
    assert!(matches!(
        sign(d, &wallet(1), &SoftwareBackend::new()),
        Err(EthError::KeyNotFound(_) | EthError::Backend(_))
    ));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap, deterministic stand-in for the fuzz target: mutations of valid payloads.
    let data: Value =
        serde_json::from_str(include_str!("data/ethereum/transactions.json")).unwrap();
    let mut seeds: Vec<Vec<u8>> = data["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .take(6)
        .flat_map(|v| {
            vec![
                v["json"].to_string().into_bytes(),
                hex::decode(&v["unsigned_rlp"].as_str().unwrap()[2..]).unwrap(),
            ]
        })
        .collect();
    seeds.push(vector("nested").to_string().into_bytes());
    seeds.push(vector("permit2_single").to_string().into_bytes());
    let w = wallet(1);
    let registry = tokens();
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in &seeds {
        for _ in 0..150 {
            let mut m = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % m.len().max(1);
                match next() % 3 {
                    0 if !m.is_empty() => m[pos] = next() as u8,
                    1 if !m.is_empty() => {
                        m.remove(pos);
                    }
                    _ => m.insert(pos.min(m.len()), next() as u8),
                }
            }
            for payload in [
                EthPayload::Transaction(&m),
                EthPayload::TypedData(&m),
                EthPayload::PersonalMessage(&m),
            ] {
                let _ = decode(&w, 0, payload, &registry);
            }
        }
    }
}

#[test]
fn cli_inspect_prints_the_intent() {
    use custos::cli::eth::{inspect, InspectArgs};
    let dir = tempfile::tempdir().unwrap();
    let tx = dir.path().join("tx.json");
    let token = "0x1234567890123456789012345678901234567890";
    std::fs::write(
        &tx,
        with(
            with(with(base_1559(), "value", json!("0x0")), "to", json!(token)),
            "data",
            json!(erc20("a9059cbb", &[BOB, "3e8"])),
        )
        .to_string(),
    )
    .unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nchain_id = 1\ncontract = \"{token}\"\nsymbol = \"TKN\"\ndecimals = 3\n"
        ),
    )
    .unwrap();
    let mut args = InspectArgs {
        store: dir.path().into(),
        wallet: "hot".into(),
        index: 0,
        passphrase_file: None,
        shares: Default::default(),
        tx: Some(tx),
        typed_data: None,
        message: None,
        tokens: Some(tokens.clone()),
        json: false,
    };
    let text = inspect(&args, &wallet(1)).unwrap();
    assert!(text.starts_with("token_transfer 1 TKN to 0xb0b0"), "{text}");
    assert!(text.contains("nonce:         7"), "{text}");
    args.json = true;
    let v: Value = serde_json::from_str(&inspect(&args, &wallet(1)).unwrap()).unwrap();
    assert_eq!(v["intent"]["kind"], "token_transfer");
    assert_eq!(v["intent"]["amount"], "1000");
    assert_eq!(v["from"], ADDRESS);
    // Unknown fields in the token file are refused.
    std::fs::write(
        &tokens,
        "[[token]]\nchain_id = 1\ncontract = \"0x12\"\nsymbol = \"X\"\ndecimals = 0\n",
    )
    .unwrap();
    assert!(inspect(&args, &wallet(1)).is_err());
}
