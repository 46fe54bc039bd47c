//! `custos psbt inspect` and `custos eth inspect`, driven through the built binary as an approver
//! would: a real store (restored from "abandon ×11 about", cheap KDF), wallets created with
//! `wallet create`, payloads written to files by an independent wallet, exit codes and stderr
//! checked.
//!
//! The PSBTs are built with tests/bitcoin_support (field by field, as Bitcoin Core writes them);
//! expected addresses come from rust-bitcoin, not from Custos. The EIP-2612 permit and its EIP-712
//! hash are the eth-account vector in tests/data/ethereum/typed_data.json; the personal_sign hash
//! is computed with alloy's EIP-191 implementation.

mod bitcoin_support;

use std::path::PathBuf;
use std::process::{Command, Output};

use bitcoin::{Address, ScriptBuf};
use bitcoin_support::{script, wallet, Builder, ABANDON, ZOO};
use custos::keys::Purpose;
use serde_json::{json, Value};
use tempfile::TempDir;

/// m/44'/60'/0'/0/0 of "abandon ×11 about".
const ETH_ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";
const USDC: &str = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
const PAYEE: &str = "0x3535353535353535353535353535353535353535";
const BOB: &str = "0xb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

/// m/44'/60'/1'/0/0 of "abandon ×11 about": the Sepolia wallet's address (account 1, since one
/// key serves one wallet and mainnet holds account 0), derived here with the independent `bip32`
/// crate, k256 and alloy's keccak.
fn sepolia_address() -> String {
    use std::str::FromStr;
    let seed = bip39::Mnemonic::parse(ABANDON).unwrap().to_seed("");
    let path = bip32::DerivationPath::from_str("m/44'/60'/1'/0/0").unwrap();
    let public = bip32::XPrv::derive_from_path(seed, &path)
        .unwrap()
        .public_key()
        .to_bytes();
    let key = k256::PublicKey::from_sec1_bytes(&public).unwrap();
    let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
    alloy_primitives::Address::from_raw_public_key(&point.as_bytes()[1..]).to_checksum(None)
}

/// An operator's workspace: a store with three wallets, a passphrase file, payload files.
struct Ws {
    tmp: TempDir,
}

impl Ws {
    /// `custos init` (import, cheap KDF), then `wallet create` for `btc` (regtest 84),
    /// `eth-sepolia` and `eth-main`.
    fn new() -> Ws {
        let ws = Ws {
            tmp: tempfile::tempdir().unwrap(),
        };
        ws.write("pass", b"correct horse battery staple\n");
        ws.write("mnemonic", format!("{ABANDON}\n").as_bytes());
        let mnemonic = ws.path("mnemonic");
        ok(&ws.run_store(&[
            "init",
            "--import-mnemonic-file",
            mnemonic.to_str().unwrap(),
            "--unsafe-kdf-memory-kib",
            "64",
        ]));
        for args in [
            ["btc", "bitcoin", "regtest", "84", "0"],
            ["eth-sepolia", "ethereum", "sepolia", "44", "1"],
            ["eth-main", "ethereum", "mainnet", "44", "0"],
        ] {
            let [name, chain, network, purpose, account] = args;
            let text = ok(&ws.run_store(&[
                "wallet",
                "create",
                "--name",
                name,
                "--chain",
                chain,
                "--network",
                network,
                "--purpose",
                purpose,
                "--account",
                account,
            ]));
            assert!(
                text.starts_with(&format!("created wallet {name}")),
                "{text}"
            );
        }
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `custos ARGS --store STORE --passphrase-file pass`.
    fn run_store(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custos"));
        for var in [
            "CUSTOS_PASSPHRASE",
            "CUSTOS_UNSAFE_KDF_MEMORY_KIB",
            "CUSTOS_UNSAFE_TEST_CRASH_AT",
        ] {
            command.env_remove(var);
        }
        command
            .args(args)
            .arg("--store")
            .arg(self.path("store"))
            .arg("--passphrase-file")
            .arg(self.path("pass"))
            .output()
            .unwrap()
    }

    /// `custos psbt inspect --wallet btc --psbt FILE [--json]`.
    fn psbt(&self, file: &str, bytes: &[u8], json: bool) -> Output {
        let path = self.write(file, bytes);
        let mut args = vec!["psbt", "inspect", "--wallet", "btc", "--psbt"];
        args.push(path.to_str().unwrap());
        if json {
            args.push("--json");
        }
        self.run_store(&args)
    }

    /// `custos eth inspect --wallet WALLET --FLAG FILE [--json]`.
    fn eth(&self, wallet: &str, flag: &str, file: &str, bytes: &[u8], json: bool) -> Output {
        let path = self.write(file, bytes);
        let mut args = vec!["eth", "inspect", "--wallet", wallet, flag];
        args.push(path.to_str().unwrap());
        if json {
            args.push("--json");
        }
        self.run_store(&args)
    }

    fn eth_json(&self, wallet: &str, flag: &str, file: &str, bytes: &[u8]) -> Value {
        serde_json::from_str(&ok(&self.eth(wallet, flag, file, bytes, true))).unwrap()
    }
}

#[track_caller]
fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Exit code `code`, stdout empty, stderr one line containing `needle`, no panic.
#[track_caller]
fn fails(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
}

fn regtest_address(spk: &ScriptBuf) -> String {
    Address::from_script(spk, bitcoin::Network::Regtest)
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Bitcoin

#[test]
fn psbt_inspect_explains_payment_fake_change_and_refuses_garbage() {
    let ws = Ws::new();
    // The same account as the store's `btc` wallet (same mnemonic, network, path), derived here
    // by the test support code; and someone else's wallet to pay.
    let (ours, _) = wallet("btc", ABANDON, bitcoin::Network::Regtest, Purpose::Bip84);
    let (other, _) = wallet("other", ZOO, bitcoin::Network::Regtest, Purpose::Bip84);
    let payee = script(&other, false, 0);
    let payee_address = regtest_address(&payee);
    let change_address = regtest_address(&script(&ours, true, 0));
    assert!(change_address.starts_with("bcrt1q"));

    // 100 000 sat in: 60 000 to the payee, 38 000 change, 2 000 fee.
    let psbt = Builder::new()
        .ours(&ours, false, 0, 100_000)
        .pay(payee.clone(), 60_000)
        .change(&ours, 0, 38_000)
        .build();

    // Human form, from base64.
    let text = ok(&ws.psbt("pay.psbt", psbt.to_string().as_bytes(), false));
    assert!(
        text.starts_with(&format!(
            "transfer 0.0006 BTC to {payee_address} on bitcoin/regtest from btc"
        )),
        "{text}"
    );
    assert!(text.contains("sends:        0.0006 BTC"), "{text}");
    assert!(
        text.contains(&format!("change        {change_address}  0.00038 BTC")),
        "{text}"
    );
    assert!(text.contains("fee:          0.00002 BTC"), "{text}");
    assert!(text.contains("signs inputs: 0 (m/84'/1'/0'/0/0)"), "{text}");

    // JSON, from the binary serialization: what the policy engine sees.
    let out = ws.psbt("pay.bin", &psbt.serialize(), true);
    let intent: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(intent["wallet"], "btc");
    assert_eq!(intent["chain"], "bitcoin");
    assert_eq!(intent["network"], "regtest");
    assert_eq!(intent["kind"], "transfer");
    assert_eq!(intent["asset"]["symbol"], "BTC");
    assert_eq!(
        intent["destinations"],
        json!([{"address": payee_address, "amount": "60000"}])
    );
    assert_eq!(intent["amount"], "60000");
    assert_eq!(intent["fee"], "2000");
    assert_eq!(
        intent["change"],
        json!([{"address": change_address, "amount": "38000"}])
    );
    assert!(intent["fee_rate_sat_per_kvb"].as_u64().unwrap() > 0);

    // Fake change: output 1 still claims our key at 1/0, but pays the other wallet's change
    // address. It is a destination, and the amount sent includes it.
    let mut fake = psbt.clone();
    let thief = script(&other, true, 0);
    fake.unsigned_tx.output[1].script_pubkey = thief.clone();
    let out = ws.psbt("fake.psbt", fake.to_string().as_bytes(), true);
    let intent: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        intent.get("change").is_none(),
        "no verified change: {intent}"
    );
    assert_eq!(
        intent["destinations"],
        json!([
            {"address": payee_address, "amount": "60000"},
            {"address": regtest_address(&thief), "amount": "38000"},
        ])
    );
    assert_eq!(intent["amount"], "98000");
    assert_eq!(intent["fee"], "2000");

    // Malformed PSBTs: exit 1, one clear line, nothing on stdout.
    fails(
        &ws.psbt("junk.psbt", b"this is not a psbt\n", false),
        1,
        "psbt refused:",
    );
    let mut truncated = psbt.serialize();
    truncated.truncate(truncated.len() / 2);
    fails(
        &ws.psbt("truncated.psbt", &truncated, true),
        1,
        "psbt refused:",
    );
    // An unknown wallet is an error too, not an empty intent.
    let path = ws.write("again.psbt", psbt.to_string().as_bytes());
    fails(
        &ws.run_store(&[
            "psbt",
            "inspect",
            "--wallet",
            "nope",
            "--psbt",
            path.to_str().unwrap(),
        ]),
        1,
        "nope",
    );
}

// ---------------------------------------------------------------------------------------------
// Ethereum

fn eip1559(chain_id: &str, nonce: &str) -> Value {
    json!({"type":"0x2","chainId":chain_id,"nonce":nonce,"gas":"0x5208",
           "maxFeePerGas":"0x4a817c800","maxPriorityFeePerGas":"0x3b9aca00",
           "to":PAYEE,"value":"0xde0b6b3a7640000","data":"0x"})
}

#[test]
fn eth_inspect_transactions_messages_permits_and_refusals() {
    let ws = Ws::new();

    // A native EIP-1559 transfer on the Sepolia wallet: 1 ETH, 21 000 gas at 20 gwei max.
    let tx = eip1559("0xaa36a7", "0x3").to_string();
    let text = ok(&ws.eth("eth-sepolia", "--tx", "tx.json", tx.as_bytes(), false));
    assert!(
        text.starts_with(&format!(
            "transfer 1 ETH to {PAYEE} on ethereum/sepolia from eth-sepolia (fee 0.00042 ETH)"
        )),
        "{text}"
    );
    let sepolia = sepolia_address();
    assert_ne!(sepolia, ETH_ADDRESS);
    assert!(
        text.contains(&format!("from:          {sepolia} (index 0)")),
        "{text}"
    );
    let v = ws.eth_json("eth-sepolia", "--tx", "tx.json", tx.as_bytes());
    assert_eq!(v["from"], sepolia);
    let intent = &v["intent"];
    assert_eq!(intent["kind"], "transfer");
    assert_eq!(intent["network"], "sepolia");
    assert_eq!(intent["asset"]["symbol"], "ETH");
    assert_eq!(intent["amount"], "1000000000000000000");
    assert_eq!(
        intent["destinations"],
        json!([{"address": PAYEE, "amount": "1000000000000000000"}])
    );
    assert_eq!(intent["fee"], (21_000u64 * 20_000_000_000).to_string());
    assert_eq!(intent["nonce"], 3);

    // An ERC-20 transfer of 1.5 USDC (a token TokenRegistry::well_known knows) on the mainnet
    // wallet: transfer(address,uint256) = 0xa9059cbb, then two 32-byte words.
    let data = format!(
        "0xa9059cbb{:0>64}{:0>64x}",
        BOB.trim_start_matches("0x"),
        1_500_000u64
    );
    let mut tx = eip1559("0x1", "0x0");
    tx["to"] = json!(USDC);
    tx["value"] = json!("0x0");
    tx["gas"] = json!("0xfde8");
    tx["data"] = json!(data);
    let tx = tx.to_string();
    let text = ok(&ws.eth("eth-main", "--tx", "usdc.json", tx.as_bytes(), false));
    assert!(
        text.starts_with(&format!(
            "token_transfer 1.5 USDC to {BOB} on ethereum/mainnet from eth-main"
        )),
        "{text}"
    );
    let intent = ws.eth_json("eth-main", "--tx", "usdc.json", tx.as_bytes())["intent"].clone();
    assert_eq!(intent["kind"], "token_transfer");
    assert_eq!(
        intent["asset"],
        json!({"symbol": "USDC", "decimals": 6, "contract": USDC})
    );
    assert_eq!(
        intent["destinations"],
        json!([{"address": BOB, "amount": "1500000"}])
    );
    assert_eq!(intent["amount"], "1500000");
    assert_eq!(intent["contract"], USDC);
    assert_eq!(intent["selector"], "0xa9059cbb");

    // A personal_sign message: the signing hash is EIP-191's, computed here by alloy.
    let message = b"I approve withdrawal batch 42";
    let v = ws.eth_json("eth-sepolia", "--message", "msg.txt", message);
    assert_eq!(v["intent"]["kind"], "message");
    assert_eq!(
        v["intent"]["message"]["preview"],
        "I approve withdrawal batch 42"
    );
    assert_eq!(
        v["signing_hash"],
        format!("{:#x}", alloy_primitives::eip191_hash_message(message))
    );

    // An EIP-2612 permit for USDC (eth-account's vector): a token approval, with the vector's hash.
    let data: Value = serde_json::from_str(include_str!("data/ethereum/typed_data.json")).unwrap();
    let vector = data["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "eip2612_permit")
        .unwrap();
    let permit = vector["typed_data_json"].as_str().unwrap();
    let text = ok(&ws.eth(
        "eth-main",
        "--typed-data",
        "permit.json",
        permit.as_bytes(),
        false,
    ));
    assert!(
        text.starts_with(
            "token_approval 1 USDC to spender 0x1111111254eeb25477b68fb85ed929f73a960582"
        ),
        "{text}"
    );
    let v = ws.eth_json("eth-main", "--typed-data", "permit.json", permit.as_bytes());
    let intent = &v["intent"];
    assert_eq!(intent["kind"], "token_approval");
    assert_eq!(intent["asset"]["symbol"], "USDC");
    assert_eq!(
        intent["destinations"],
        json!([{"address": "0x1111111254eeb25477b68fb85ed929f73a960582", "amount": "1000000"}])
    );
    assert_eq!(intent["deadline"], 1_900_000_000u64);
    assert_eq!(intent["message"]["primary_type"], "Permit");
    assert_eq!(v["signing_hash"], vector["hash"]);

    // Refusals: exit 1 and one sentence saying why.
    let mainnet_tx = eip1559("0x1", "0x0").to_string();
    fails(
        &ws.eth(
            "eth-sepolia",
            "--tx",
            "wrong-chain.json",
            mainnet_tx.as_bytes(),
            true,
        ),
        1,
        "chain id mismatch: the wallet is on chain 11155111, the payload is for chain 1",
    );
    // The mainnet permit on the Sepolia wallet: its domain names another chain.
    let out = ws.eth(
        "eth-sepolia",
        "--typed-data",
        "permit.json",
        permit.as_bytes(),
        false,
    );
    fails(
        &out,
        1,
        "refused: chain id mismatch: the wallet is on chain 11155111, the payload is for chain 1",
    );
    fails(
        &ws.eth("eth-main", "--tx", "junk.json", b"{\"nonce\": 5", false),
        1,
        "refused: invalid json",
    );
}
