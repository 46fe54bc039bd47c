//! Governance from the command line, as operators, approvers and compliance officers use it:
//! `custos approver keygen` (0600, never printed, never overwritten); `custos serve` refusing to
//! start without the policy's compliance signatures, and SIGHUP refusing an unsigned change until
//! both officers sign it (`custos policy sign`, `custos policy signatures`); `custos approve`
//! signing with the approver's key file; `custos request proof` and `custos request verify`.

#[allow(dead_code)]
mod served;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use served::{dev_env, point_clients_at, spawn_serve, BIN};

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn custos(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let out = custos(args);
    assert!(out.status.success(), "custos {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_log(log: &Path, wanted: &str) -> String {
    let start = Instant::now();
    loop {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        if content.contains(wanted) {
            return content;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the log never said {wanted:?}:\n{content}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn keygen_writes_a_private_file_and_prints_only_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.pem");
    for (alg, prefix) in [("p256", "p256:"), ("ed25519", "ed25519:")] {
        let _ = std::fs::remove_file(&key);
        let out = custos(&[
            "approver",
            "keygen",
            "--out",
            p(&key),
            "--algorithm",
            alg,
            "--principal",
            "spiffe://x/officers/alice",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.trim().starts_with(prefix), "{stdout}");
        assert_eq!(stdout.lines().count(), 1);
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!text(&out).contains(&body), "the private key was printed");
        assert!(text(&out).contains("\"spiffe://x/officers/alice\" = \""));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let public = ok(&["approver", "pubkey", "--key", p(&key)]);
        assert_eq!(public.trim(), stdout.trim());
    }
    let again = custos(&["approver", "keygen", "--out", p(&key)]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("never overwritten"));
}

/// Waits (bounded) for a server that is expected to refuse to start.
fn refused_start(env: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", p(&env.join("custos.toml"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("serve did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1));
    text(&out)
}

#[test]
fn serve_and_sighup_need_the_compliance_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let (env, printed) = dev_env(dir.path(), None);
    assert!(
        printed.contains("compliance-1 and compliance-2 sign the policy"),
        "{printed}"
    );
    let policy = env.join("policy.toml");
    let sig = env.join("policy.toml.sig");
    let config = env.join("custos.toml");
    ok(&["policy", "signatures", p(&policy), "--config", p(&config)]);

    // Without the signature file, serve refuses to start and says who is missing.
    let saved = std::fs::read(&sig).unwrap();
    std::fs::remove_file(&sig).unwrap();
    let why = refused_start(&env);
    assert!(
        why.contains("0 valid compliance signature(s), 2 required: signed by nobody; 2 more needed (from compliance-1, compliance-2)"),
        "{why}"
    );
    let check = custos(&["policy", "signatures", p(&policy), "--config", p(&config)]);
    assert!(!check.status.success());
    // One signature of two.
    ok(&[
        "policy",
        "sign",
        p(&policy),
        "--key",
        p(&env.join("compliance/compliance-2.pem")),
    ]);
    let why = refused_start(&env);
    assert!(
        why.contains("signed by compliance-2; 1 more needed (from compliance-1)"),
        "{why}"
    );
    std::fs::write(&sig, saved).unwrap();

    // Running: a change nobody signed is refused on SIGHUP, and the running policy stays.
    let log = dir.path().join("serve.log");
    let (mut child, _) = spawn_serve(&env, &log);
    let startup = wait_for_log(&log, "policy signed by compliance-1, compliance-2");
    assert!(!startup.contains("DEVELOPMENT MODE"), "{startup}");
    let original = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        original.replace("per_tx = \"2 BTC\"", "per_tx = \"200 BTC\""),
    )
    .unwrap();
    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    hup(&child);
    let refused = wait_for_log(&log, "policy reload refused");
    assert!(refused.contains("changed after it was signed"), "{refused}");
    // Both officers sign the change: the next SIGHUP loads it.
    for officer in ["compliance-1", "compliance-2"] {
        ok(&[
            "policy",
            "sign",
            p(&policy),
            "--key",
            p(&env.join(format!("compliance/{officer}.pem"))),
            "--signer",
            officer,
        ]);
    }
    hup(&child);
    wait_for_log(&log, "policy reloaded");
    let _ = child.kill();
    let _ = child.wait();
}

fn eth_tx(dir: &Path, nonce: u64) -> String {
    let path = dir.join(format!("tx-{nonce}.json"));
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": "0x3535353535353535353535353535353535353535",
        "value": format!("{:#x}", 100u128 * 1_000_000_000_000_000_000),
        "data": "0x",
    });
    std::fs::write(&path, tx.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn approve_signs_with_the_key_file_and_the_proof_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = dev_env(dir.path(), None);
    let log = dir.path().join("serve.log");
    let (mut child, port) = spawn_serve(&env, &log);
    point_clients_at(&env, port);
    let client = |name: &str| env.join(format!("client-{name}.toml"));

    let signed = ok(&[
        "sign",
        "--config",
        p(&client("treasury")),
        "--wallet",
        "eth-treasury",
        "--request-id",
        "t-1",
        "--eth-tx",
        &eth_tx(dir.path(), 0),
    ]);
    assert!(signed.contains("\"status\": \"pending\""), "{signed}");

    // The requester is no approver; an approver without a key file cannot vote unsigned.
    let own = custos(&[
        "approve",
        "--config",
        p(&client("treasury")),
        "--request-id",
        "t-1",
        "--unsigned",
    ]);
    assert_eq!(own.status.code(), Some(1), "{}", text(&own));
    let unsigned = custos(&[
        "approve",
        "--config",
        p(&client("officers-carol")),
        "--request-id",
        "t-1",
        "--unsigned",
    ]);
    assert!(
        text(&unsigned).contains("vote-unsigned"),
        "{}",
        text(&unsigned)
    );

    let first = custos(&[
        "approve",
        "--config",
        p(&client("officers-alice")),
        "--request-id",
        "t-1",
        "--reason",
        "ticket T-1",
    ]);
    assert!(first.status.success(), "{}", text(&first));
    let shown = String::from_utf8_lossy(&first.stderr);
    assert!(
        shown.contains("amount: 100 ETH"),
        "the intent it signs is shown: {shown}"
    );
    let record: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(record["state"], "REQUEST_STATE_PENDING_APPROVAL");
    assert_eq!(record["pending"]["approvals"][0]["counted"], true);
    let second = ok(&[
        "approve",
        "--config",
        p(&client("officers-bob")),
        "--request-id",
        "t-1",
        "--reason",
        "ticket T-1, checked",
    ]);
    let record: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(record["state"], "REQUEST_STATE_SIGNED", "{second}");

    let proof = dir.path().join("proof.json");
    ok(&[
        "request",
        "proof",
        "--config",
        p(&client("officers-carol")),
        "--request-id",
        "t-1",
        "--requester",
        "spiffe://exchange.example/treasury",
        "--out",
        p(&proof),
    ]);
    let _ = child.kill();
    let _ = child.wait();

    // Offline, with the server gone.
    let policy = env.join("policy.toml");
    let verified = ok(&["request", "verify", p(&proof), "--policy", p(&policy)]);
    assert!(verified.contains("proof verified"), "{verified}");
    assert!(
        verified.contains("enrolled in the given policy"),
        "{verified}"
    );
    let python = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/governance/verify_proof.py"
        ))
        .arg(&proof)
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", text(&python));

    // Judged by a policy that lacks the deciding rule, the same proof fails: the recorded
    // quorum is the server's word, not the policy's.
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    let rule = recorded["decision"]["rule"].as_str().unwrap().to_owned();
    let named = format!("name = \"{rule}\"");
    let policy_text = std::fs::read_to_string(&policy).unwrap();
    assert!(policy_text.contains(&named), "{rule}");
    let other_policy = dir.path().join("renamed-policy.toml");
    std::fs::write(
        &other_policy,
        policy_text.replace(&named, "name = \"some other rule\""),
    )
    .unwrap();
    let judged = custos(&["request", "verify", p(&proof), "--policy", p(&other_policy)]);
    assert_eq!(judged.status.code(), Some(1), "{}", text(&judged));
    assert!(
        text(&judged).contains(&format!("FAIL  the given policy has no rule '{rule}'")),
        "{}",
        text(&judged)
    );

    // A proof whose amount was edited fails, naming what.
    let edited = std::fs::read_to_string(&proof)
        .unwrap()
        .replace("amount: 100 ETH", "amount: 1 ETH");
    std::fs::write(&proof, edited).unwrap();
    let bad = custos(&["request", "verify", p(&proof)]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("FAIL"), "{}", text(&bad));
    let python = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/governance/verify_proof.py"
        ))
        .arg(&proof)
        .output()
        .unwrap();
    assert_eq!(python.status.code(), Some(1), "{}", text(&python));
}
