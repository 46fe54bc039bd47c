//! The real `custos serve` on SoftHSM2, as an operator runs it: `custos dev env --hsm` (a token in
//! the environment's own directory, the wallets' keys imported, the store's HSM unseal slot),
//! then the spawned server unseals itself through the token, signs a Bitcoin PSBT (verified by
//! Bitcoin Core's script interpreter) and an Ethereum transaction (recovered by alloy) inside the
//! token, and does it again after a restart. A token missing at start leaves the server sealed,
//! saying why, until it comes back; a token removed while requests are in flight makes its
//! wallets answer UNAVAILABLE naming it — nothing signed, never INTERNAL — while a software
//! wallet keeps signing, and the same request ids sign once the token is back.

mod bitcoin_support;
#[allow(dead_code)]
mod served;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use bitcoin_support::{consensus_verify, script, spent_outputs, wallet, Builder, ABANDON, ZOO};
use custos::keys::Purpose;
use served::BIN;

/// eth-hot's first address (m/44'/60'/0'/0/0 of the test mnemonic).
const ETH_HOT: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";

fn custos(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CUSTOS_PASSPHRASE")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("run custos")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// `custos dev env DIR/env --hsm` with the test mnemonic, a fast (unsafe) KDF and port 0.
fn hsm_env(dir: &Path) -> PathBuf {
    let env = dir.join("env");
    let mnemonic = dir.join("mnemonic.txt");
    std::fs::write(&mnemonic, ABANDON).unwrap();
    let out = Command::new(BIN)
        .args(["dev", "env", p(&env), "--port", "0", "--hsm"])
        .args(["--import-mnemonic-file", p(&mnemonic)])
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
        .env_remove("CUSTOS_PASSPHRASE")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("hsm keys   btc-hot"), "{stdout}");
    let config = std::fs::read_to_string(env.join("custos.toml")).unwrap();
    assert!(config.contains("auto_unseal = true"), "{config}");
    assert!(!config.contains("passphrase_file"), "{config}");
    env
}

/// The token's directory (SoftHSM2 names it by a UUID).
fn token_dir(env: &Path) -> PathBuf {
    let tokens: Vec<PathBuf> = std::fs::read_dir(env.join("hsm/tokens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    tokens[0].clone()
}

/// Spawns `serve`; points every client configuration at the port it got.
fn serve(env: &Path, log_name: &str) -> (Child, PathBuf) {
    let log = env.join(log_name);
    let (child, port) = served::spawn_serve(env, &log);
    for entry in std::fs::read_dir(env).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("client-") && name.ends_with(".toml") {
            let config = std::fs::read_to_string(&path).unwrap();
            let pointed = regex_port(&config, port);
            std::fs::write(&path, pointed).unwrap();
        }
    }
    (child, log)
}

/// `endpoint = "https://localhost:N"` with the new port.
fn regex_port(config: &str, port: u16) -> String {
    config
        .lines()
        .map(|line| {
            if line.starts_with("endpoint = ") {
                format!("endpoint = \"https://localhost:{port}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

fn client(env: &Path, name: &str) -> String {
    p(&env.join(format!("client-{name}.toml"))).to_owned()
}

fn status(env: &Path) -> String {
    let out = custos(&["status", "--config", &client(env, "ops-admin")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A PSBT spending from btc-hot's address 0 with change to its change address 1.
fn btc_psbt(dir: &Path, salt: u64) -> (PathBuf, bitcoin::Psbt) {
    let (hot, _) = wallet(
        "btc-hot",
        ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    let (other, _) = wallet("other", ZOO, bitcoin::Network::Bitcoin, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&hot, false, 0, 1_000_000 + salt)
        .pay(script(&other, false, 0), 500_000)
        .change(&hot, 1, 499_000 + salt)
        .build();
    let file = dir.join(format!("withdrawal-{salt}.psbt"));
    std::fs::write(&file, psbt.serialize()).unwrap();
    (file, psbt)
}

fn eth_tx(dir: &Path, nonce: u64) -> PathBuf {
    let tx = serde_json::json!({"type":"0x2","chainId":"0x1","nonce": format!("{nonce:#x}"),
        "gas":"0x5208","maxFeePerGas":"0x6fc23ac00","maxPriorityFeePerGas":"0x3b9aca00",
        "to":"0x3535353535353535353535353535353535353535","value":"0x2386f26fc10000","data":"0x"});
    let file = dir.join(format!("eth-{nonce}.json"));
    std::fs::write(&file, tx.to_string()).unwrap();
    file
}

fn sign(env: &Path, wallet: &str, id: &str, flag: &str, payload: &Path) -> Output {
    custos(&[
        "sign",
        "--config",
        &client(env, "withdrawals"),
        "--wallet",
        wallet,
        "--request-id",
        id,
        flag,
        p(payload),
    ])
}

fn signed(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["status"], "signed", "{json}");
    json
}

/// Recovers the sender of a signed Ethereum transaction with alloy (k256, independent of the
/// libsecp256k1 that checked it inside Custos).
fn eth_sender(json: &serde_json::Value) -> String {
    let raw = json["signed"]["raw_tx_hex"].as_str().unwrap();
    let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
    let env = TxEnvelope::decode_2718(&mut bytes.as_slice()).unwrap();
    env.recover_signer().unwrap().to_checksum(None)
}

fn sign_both(env: &Path, dir: &Path, round: u64) {
    let (psbt_file, psbt) = btc_psbt(dir, round);
    let btc = signed(&sign(
        env,
        "btc-hot",
        &format!("w-{round}"),
        "--psbt",
        &psbt_file,
    ));
    consensus_verify(
        btc["signed"]["raw_tx_hex"].as_str().unwrap(),
        &spent_outputs(&psbt),
    );
    let eth = signed(&sign(
        env,
        "eth-hot",
        &format!("e-{round}"),
        "--eth-tx",
        &eth_tx(dir, round),
    ));
    assert_eq!(eth_sender(&eth), ETH_HOT);
}

#[test]
fn auto_unseal_signs_inside_the_hsm_and_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = hsm_env(dir.path());
    let (child, log) = serve(&env, "serve-1.log");
    let shown = status(&env);
    assert!(shown.contains("seal state:   unsealed"), "{shown}");
    assert!(
        shown.contains("hsm:          token 'custos' (available"),
        "{shown}"
    );
    assert!(
        shown.contains("btc-hot") && shown.contains("eth-hot"),
        "{shown}"
    );
    sign_both(&env, dir.path(), 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("unsealed at start through the hsm"),
        "{logged}"
    );
    stop(child);

    // Restarted: the token unseals it again, no passphrase anywhere in the configuration.
    let (child, log) = serve(&env, "serve-2.log");
    let shown = status(&env);
    assert!(shown.contains("seal state:   unsealed"), "{shown}");
    sign_both(&env, dir.path(), 1);
    stop(child);

    // Each start unsealed through the token, and the ceremony log says so (method hsm), in a
    // chain that verifies.
    let out = custos(&[
        "ceremony",
        "report",
        "--store",
        p(&env.join("store")),
        "--passphrase-file",
        p(&env.join("passphrase")),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["chain"]["status"], "intact", "{report}");
    let unseals: Vec<&serde_json::Value> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["event"] == "unseal")
        .collect();
    assert_eq!(unseals.len(), 2, "{report}");
    for entry in unseals {
        assert_eq!(entry["event"]["method"], "hsm", "{entry}");
        assert!(
            entry["event"]["place"]
                .as_str()
                .unwrap()
                .contains("token 'custos'"),
            "{entry}"
        );
    }

    // Neither the user PIN nor the passphrase is ever logged.
    let pin = std::fs::read_to_string(env.join("hsm/user-pin")).unwrap();
    let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
    for name in ["serve-1.log", "serve-2.log"] {
        let logged = std::fs::read_to_string(env.join(name)).unwrap();
        assert!(!logged.contains(pin.trim()), "{name}");
        assert!(!logged.contains(passphrase.trim()), "{name}");
    }
    drop(log);
}

#[test]
fn a_token_missing_at_start_leaves_it_sealed_saying_why_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = hsm_env(dir.path());
    let token = token_dir(&env);
    let away = env.join("hsm/token-away");
    std::fs::rename(&token, &away).unwrap();
    let (child, log) = serve(&env, "serve.log");
    let shown = status(&env);
    assert!(shown.contains("seal state:   sealed"), "{shown}");
    assert!(
        shown.contains("sealed since: auto-unseal through the hsm failed")
            && shown.contains("token 'custos'")
            && shown.contains("not present"),
        "{shown}"
    );
    assert!(shown.contains("(UNAVAILABLE;"), "{shown}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("auto-unseal through the hsm failed"),
        "{logged}"
    );
    let (psbt_file, _) = btc_psbt(dir.path(), 0);
    let out = sign(&env, "btc-hot", "w-sealed", "--psbt", &psbt_file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[sealed]"),
        "{}",
        text(&out.stderr)
    );

    // The token comes back: the server unseals itself (it retries every few seconds).
    std::fs::rename(&away, &token).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let shown = status(&env);
        if shown.contains("seal state:   unsealed") {
            break;
        }
        assert!(Instant::now() < deadline, "never unsealed: {shown}");
        std::thread::sleep(Duration::from_millis(500));
    }
    sign_both(&env, dir.path(), 2);
    stop(child);
}

#[test]
fn a_token_removed_under_load_is_unavailable_and_software_wallets_keep_signing() {
    let dir = tempfile::tempdir().unwrap();
    let env = hsm_env(dir.path());
    // Only eth-hot on the token: btc-hot signs in software beside it.
    let config_path = env.join("custos.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        config.replace("wallets = [\"*\"]", "wallets = [\"eth-hot\"]"),
    )
    .unwrap();
    let (child, _log) = serve(&env, "serve.log");
    let shown = status(&env);
    assert!(shown.contains("wallets: eth-hot"), "{shown}");
    let first = signed(&sign(
        &env,
        "eth-hot",
        "e-0",
        "--eth-tx",
        &eth_tx(dir.path(), 0),
    ));
    assert_eq!(eth_sender(&first), ETH_HOT);

    // Requests in flight from four clients while the token disappears.
    let token = token_dir(&env);
    let away = env.join("hsm/token-away");
    let env = Arc::new(env);
    let payload_dir = Arc::new(dir.path().to_owned());
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (env, payload_dir) = (env.clone(), payload_dir.clone());
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for i in 0..6u64 {
                    let nonce = 1 + t * 100 + i;
                    let id = format!("e-{nonce}");
                    let out = sign(
                        &env,
                        "eth-hot",
                        &id,
                        "--eth-tx",
                        &eth_tx(&payload_dir, nonce),
                    );
                    outcomes.push((id, nonce, out));
                }
                outcomes
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&token, &away).unwrap();
    let mut unavailable = Vec::new();
    for worker in workers {
        for (id, nonce, out) in worker.join().unwrap() {
            if out.status.success() {
                assert_eq!(eth_sender(&signed(&out)), ETH_HOT, "{id}");
            } else {
                let stderr = text(&out.stderr);
                assert!(
                    stderr.contains("UNAVAILABLE")
                        && stderr.contains("[hsm-unavailable]")
                        && stderr.contains("token 'custos'"),
                    "{id}: a token fault is UNAVAILABLE naming the token, got: {stderr}"
                );
                assert!(!stderr.contains("INTERNAL"), "{stderr}");
                unavailable.push((id, nonce));
            }
        }
    }
    // Now surely gone: an eth-hot request is refused as unavailable, nothing signed...
    let out = sign(
        &env,
        "eth-hot",
        "e-gone",
        "--eth-tx",
        &eth_tx(dir.path(), 900),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        stderr.contains("UNAVAILABLE") && stderr.contains("token 'custos'"),
        "{stderr}"
    );
    unavailable.push(("e-gone".into(), 900));
    // ...while the software wallet signs, and the server says what is wrong.
    let (psbt_file, psbt) = btc_psbt(dir.path(), 7);
    let btc = signed(&sign(&env, "btc-hot", "w-soft", "--psbt", &psbt_file));
    consensus_verify(
        btc["signed"]["raw_tx_hex"].as_str().unwrap(),
        &spent_outputs(&psbt),
    );
    let shown = status(&env);
    assert!(shown.contains("seal state:   unsealed"), "{shown}");
    assert!(shown.contains("(UNAVAILABLE;"), "{shown}");

    // The token is back: the very same request ids sign (they were kept, not failed).
    std::fs::rename(&away, &token).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, nonce) in &unavailable {
        loop {
            let out = sign(&env, "eth-hot", id, "--eth-tx", &eth_tx(dir.path(), *nonce));
            if out.status.success() {
                assert_eq!(eth_sender(&signed(&out)), ETH_HOT);
                break;
            }
            let stderr = text(&out.stderr);
            assert!(stderr.contains("UNAVAILABLE"), "{id}: {stderr}");
            assert!(Instant::now() < deadline, "{id} never signed: {stderr}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(status(&env).contains("(available;"));
    stop(child);
}

#[test]
fn a_wallet_generated_in_the_token_signs_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let env = hsm_env(dir.path());
    // The policy lets the withdrawals service use eth-gen as it uses eth-hot.
    let policy_path = env.join("policy.toml");
    let policy = std::fs::read_to_string(&policy_path).unwrap();
    let widened = policy.replace(
        "wallets = [\"eth-hot\"]\nchains = [\"ethereum\"]\nkinds = [\"transfer\"]",
        "wallets = [\"eth-hot\", \"eth-gen\"]\nchains = [\"ethereum\"]\nkinds = [\"transfer\"]",
    );
    assert_ne!(widened, policy, "the example policy's eth hot rule moved");
    std::fs::write(&policy_path, widened).unwrap();
    // The changed policy takes effect once both compliance officers of the environment sign it.
    for officer in ["compliance-1", "compliance-2"] {
        let signed = Command::new(BIN)
            .args(["policy", "sign", p(&policy_path), "--key"])
            .arg(env.join(format!("compliance/{officer}.pem")))
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", text(&signed.stderr));
    }
    // The ceremony, with the server stopped: three keys generated inside the token.
    let config = p(&env.join("custos.toml")).to_owned();
    let passphrase = p(&env.join("passphrase")).to_owned();
    let out = custos(&[
        "hsm",
        "keygen",
        "--config",
        &config,
        "--passphrase-file",
        &passphrase,
        "--wallet",
        "eth-gen",
        "--count",
        "3",
        "--network",
        "mainnet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = custos(&[
        "wallet",
        "address",
        "--store",
        p(&env.join("store")),
        "--passphrase-file",
        &passphrase,
        "--name",
        "eth-gen",
        "--index",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let address = text(&out.stdout).trim().to_owned();
    assert_ne!(address, ETH_HOT);

    let (child, _log) = serve(&env, "serve.log");
    let shown = status(&env);
    assert!(shown.contains("eth-gen"), "{shown}");
    let tx = eth_tx(dir.path(), 0);
    let out = custos(&[
        "sign",
        "--config",
        &client(&env, "withdrawals"),
        "--wallet",
        "eth-gen",
        "--request-id",
        "gen-1",
        "--index",
        "2",
        "--eth-tx",
        p(&tx),
    ]);
    assert_eq!(eth_sender(&signed(&out)), address);
    // An index the token has no key for: refused as such, naming the key.
    let out = custos(&[
        "sign",
        "--config",
        &client(&env, "withdrawals"),
        "--wallet",
        "eth-gen",
        "--request-id",
        "gen-2",
        "--index",
        "3",
        "--eth-tx",
        p(&eth_tx(dir.path(), 1)),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("INVALID_ARGUMENT") && stderr.contains("3 generated keys"),
        "{stderr}"
    );
    stop(child);
}
