//! `custos dev env`, `custos serve` and the host commands as an operator runs them: the spawned
//! binary listens with mutual TLS on a free port, starts unsealed from the dev passphrase, signs a
//! Bitcoin PSBT for the policy's hot wallet, refuses a principal the policy does not allow,
//! refuses while sealed, signs again after `custos unseal`, keeps its policy when SIGHUP finds a
//! broken file, and stops cleanly on SIGTERM.

mod bitcoin_support;
#[allow(dead_code)]
mod served;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use bitcoin_support::{script, wallet, Builder, ABANDON, ZOO};
use custos::keys::Purpose;
use custos::policy::Policy;
use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use served::BIN;

fn custos(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .expect("run custos")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// The example policy, as shipped.
fn example_policy() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/exchange.toml"))
        .unwrap()
}

/// `policy` with one more admin principal: a change of meaning, so a new hash.
fn with_second_admin(example: &str) -> String {
    let replaced = example.replace(
        "admin = [\"ops-admin.exchange.example\"]",
        "admin = [\"ops-admin.exchange.example\", \"spiffe://exchange.example/auditor\"]",
    );
    assert_ne!(replaced, example, "the example policy's admin role moved");
    replaced
}

/// `dev env` into `dir/env` with the test mnemonic, a fast (unsafe) KDF, port 0 and `policy`;
/// checks it says how to go on.
fn dev_env(dir: &Path, policy: &str) -> PathBuf {
    let (env_dir, stdout) = served::dev_env(dir, Some(policy));
    assert!(stdout.contains("custos serve --config"), "{stdout}");
    assert!(stdout.contains("client-withdrawals.toml"), "{stdout}");
    assert!(
        stdout.contains("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"),
        "{stdout}"
    );
    env_dir
}

/// Spawns `serve`; returns the child, the port it printed, and its log file.
fn serve(env_dir: &Path) -> (Child, u16, PathBuf) {
    let log = env_dir.join("serve.log");
    let (child, port) = served::spawn_serve(env_dir, &log);
    // Point every client configuration at the port the server got.
    for entry in std::fs::read_dir(env_dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("client-") && name.ends_with(".toml") {
            let config = std::fs::read_to_string(&p).unwrap();
            std::fs::write(
                &p,
                config.replace("localhost:0\"", &format!("localhost:{port}\"")),
            )
            .unwrap();
        }
    }
    (child, port, log)
}

fn client(env_dir: &Path, name: &str) -> String {
    path(&env_dir.join(format!("client-{name}.toml"))).to_owned()
}

/// A PSBT spending 0.01 BTC of btc-hot (m/84'/0'/0', the test mnemonic): 0.005 BTC to another
/// wallet, change back, 1000 sat fee.
fn hot_wallet_psbt(dir: &Path) -> PathBuf {
    let (hot, _) = wallet(
        "btc-hot",
        ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    let (other, _) = wallet("other", ZOO, bitcoin::Network::Bitcoin, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&hot, false, 0, 1_000_000)
        .pay(script(&other, false, 0), 500_000)
        .change(&hot, 0, 499_000)
        .build();
    let file = dir.join("withdrawal.psbt");
    std::fs::write(&file, psbt.serialize()).unwrap();
    file
}

fn sign(env_dir: &Path, as_client: &str, request_id: &str, psbt: &Path) -> Output {
    custos(&[
        "sign",
        "--config",
        &client(env_dir, as_client),
        "--wallet",
        "btc-hot",
        "--request-id",
        request_id,
        "--psbt",
        path(psbt),
    ])
}

fn status(env_dir: &Path) -> String {
    let out = custos(&["status", "--config", &client(env_dir, "ops-admin")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn assert_signed(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["status"], "signed", "{json}");
    let txid = json["signed"]["txid"].as_str().expect("a txid");
    assert_eq!(txid.len(), 64, "{json}");
    assert_eq!(json["decision"]["rule"], "btc hot withdrawals", "{json}");
    json
}

fn assert_refused(out: &Output, code: &str, detail: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(code), "{stderr}");
    assert!(stderr.contains(detail), "{stderr}");
}

#[tokio::test]
async fn dev_env_serve_sign_seal_unseal_reload_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let policy = example_policy();
    let env_dir = dev_env(dir.path(), &policy);
    // The environment's copy: the example with the environment's own approver keys enrolled.
    let policy = std::fs::read_to_string(env_dir.join("policy.toml")).unwrap();
    let policy_hash = Policy::from_toml(&policy).unwrap().hash();
    let (mut child, port, log) = serve(&env_dir);

    // Unsealed from the dev passphrase, with the policy's hash.
    let shown = status(&env_dir);
    assert!(shown.contains("seal state:   unsealed"), "{shown}");
    assert!(shown.contains(&policy_hash), "{shown}");
    assert!(
        shown.contains("principal:    ops-admin.exchange.example"),
        "{shown}"
    );

    // Health follows the seal state, over the same mutual TLS.
    let tls = env_dir.join("tls");
    let material = TlsMaterial::load(
        &tls.join("clients/withdrawals.pem"),
        &tls.join("clients/withdrawals.key"),
        &tls.join("ca.pem"),
    )
    .unwrap();
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(&material, "localhost"))
        .unwrap()
        .connect()
        .await
        .expect("mutual TLS to the daemon");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(health, ServingStatus::Serving);

    // The withdrawals service may sign from btc-hot.
    let psbt = hot_wallet_psbt(dir.path());
    let first = assert_signed(&sign(&env_dir, "withdrawals", "w-1", &psbt));
    // Idempotent: the same request id returns the same transaction.
    let again = assert_signed(&sign(&env_dir, "withdrawals", "w-1", &psbt));
    assert_eq!(first["signed"]["txid"], again["signed"]["txid"]);

    // The approvers' commands reach the server: an officer voting on a request that does not
    // exist gets NOT_FOUND; a service without the approver role may not vote at all.
    assert_refused(
        &custos(&[
            "approve",
            "--config",
            &client(&env_dir, "officers-alice"),
            "--request-id",
            "no-such-request",
            "--reason",
            "checked the invoice",
        ]),
        "NOT_FOUND",
        "no-such-request",
    );
    assert_refused(
        &custos(&[
            "reject",
            "--config",
            &client(&env_dir, "withdrawals"),
            "--request-id",
            "w-1",
            "--reason",
            "not mine to judge",
            // It holds no approver key either: the server refuses it for lack of the role.
            "--unsigned",
        ]),
        "PERMISSION_DENIED",
        "approver",
    );

    // The market maker may not: no rule gives it btc-hot.
    assert_refused(
        &sign(&env_dir, "market-maker", "mm-1", &psbt),
        "PERMISSION_DENIED",
        "[",
    );

    // Sealed: nothing is signed.
    let out = custos(&["seal", "--config", &client(&env_dir, "ops-admin")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "sealed");
    assert_refused(
        &sign(&env_dir, "withdrawals", "w-2", &psbt),
        "FAILED_PRECONDITION",
        "[sealed]",
    );
    assert!(status(&env_dir).contains("seal state:   sealed"));

    // Unsealed again with the passphrase: signing works.
    let out = custos(&[
        "unseal",
        "--config",
        &client(&env_dir, "ops-admin"),
        "--passphrase-file",
        path(&env_dir.join("passphrase")),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "unsealed");
    assert_signed(&sign(&env_dir, "withdrawals", "w-2", &psbt));

    // SIGHUP with a broken policy file: refused, logged, the old policy keeps running.
    std::fs::write(env_dir.join("policy.toml"), "[policy\nname = ").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = std::fs::read_to_string(&log).unwrap();
        if logged.contains("policy-invalid") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload outcome logged:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server keeps running"
    );
    let shown = status(&env_dir);
    assert!(shown.contains(&policy_hash), "{shown}");
    assert_signed(&sign(&env_dir, "withdrawals", "w-3", &psbt));

    // SIGHUP with a valid new policy, signed by both compliance officers: it reloads by signal
    // (the host needs no role for it), and status shows the new hash.
    let changed = with_second_admin(&policy);
    let changed_hash = Policy::from_toml(&changed).unwrap().hash();
    assert_ne!(changed_hash, policy_hash);
    std::fs::write(env_dir.join("policy.toml"), &changed).unwrap();
    for officer in ["compliance-1", "compliance-2"] {
        let signed = Command::new(served::BIN)
            .args(["policy", "sign"])
            .arg(env_dir.join("policy.toml"))
            .arg("--key")
            .arg(env_dir.join(format!("compliance/{officer}.pem")))
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", text(&signed.stderr));
    }
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = std::fs::read_to_string(&log).unwrap();
        if logged.contains(&changed_hash) {
            break;
        }
        assert!(Instant::now() < deadline, "no reload logged:\n{logged}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown = status(&env_dir);
    assert!(shown.contains(&changed_hash), "{shown}");

    // No secret in the log.
    let passphrase = std::fs::read_to_string(env_dir.join("passphrase")).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(passphrase.trim()));
    assert!(!logged.contains("abandon"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn selftest_command_passes() {
    let out = custos(&["selftest"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for name in [
        "bip84-derivation",
        "ecdsa-rfc6979",
        "eip155-sign",
        "bip340-schnorr",
    ] {
        assert!(stdout.contains(&format!("ok    {name}")), "{stdout}");
    }
    assert!(stdout.contains("all 4 self-tests passed"), "{stdout}");
}

#[test]
fn client_with_unreadable_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = custos(&["status", "--config", path(&dir.path().join("missing.toml"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
