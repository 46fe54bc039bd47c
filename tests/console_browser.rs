//! The approval console in a real headless browser: Debian's Chromium (installed by
//! `.ci/install-tools`), driven by Playwright (`tests/console/console.mjs`, `npm ci` by the same
//! script), against the real `custos serve` of a `custos dev env` on loopback.
//!
//! Phase one: a key generated in the browser is refused until enrolled; bob imports his key file,
//! signs in, sees the two pending requests decoded (amount in units, fee, rule, quorum), opens
//! one and approves it with a signature made in the browser (1 of 2); alice, the requester of the
//! other, is refused in words. Between the phases this test enrols the browser's key for carol,
//! has both compliance officers sign the policy again and reloads it with SIGHUP. Phase two:
//! carol signs in with the key kept in the browser and approves: the quorum is met and the
//! request is signed. The proof of the request is then verified offline, by `custos request
//! verify` and by Python's `cryptography`. Screenshots are kept under
//! `target/tmp/console-screenshots/`.

#[allow(dead_code)]
mod served;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use served::{dev_env, point_clients_at, BIN};

const TREASURY: &str = "spiffe://t/treasury";
const CAROL: &str = "spiffe://t/officers/carol";
const PAYEE: &str = "0x3535353535353535353535353535353535353535";

const POLICY: &str = r#"
[policy]
name = "console-test"

[roles]
treasury = ["spiffe://t/treasury", "spiffe://t/officers/alice"]
approver = ["spiffe://t/officers/alice", "spiffe://t/officers/bob", "spiffe://t/officers/carol"]
admin = ["admin.t"]

[assets.ethereum.sepolia]
native = { symbol = "ETH", decimals = 18 }

[[rules]]
name = "treasury moves"
effect = "require_approval"
roles = ["treasury"]
wallets = ["eth-treasury"]
chains = ["ethereum"]
kinds = ["transfer"]
assets = ["ETH"]
approval = { quorum = 2, roles = ["approver"], expires = "4h" }
"#;

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `custos serve`, with the console's address from its stdout.
fn serve(env: &Path, log: &Path) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", p(&env.join("custos.toml"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let server = Server(child);
    let mut console = None;
    for _ in 0..5 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(port) = line
            .strip_prefix("custos listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
        {
            point_clients_at(env, port);
        }
        if let Some(url) = line.trim().strip_prefix("approval console on ") {
            console = Some(url.to_owned());
            break;
        }
    }
    std::thread::spawn(move || for _ in stdout.lines() {});
    let console = console.unwrap_or_else(|| {
        panic!(
            "no console line; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    (server, console)
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "custos {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eth_tx(dir: &Path, name: &str, nonce: u64, eth: u64) -> PathBuf {
    let path = dir.join(name);
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": format!("{:#x}", 11_155_111u64),
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": PAYEE,
        "value": format!("{:#x}", u128::from(eth) * 1_000_000_000_000_000_000),
        "data": "0x",
    });
    std::fs::write(&path, tx.to_string()).unwrap();
    path
}

/// Waits (bounded) until the server's log holds `text`.
fn wait_for_log(log: &Path, text: &str) {
    let start = Instant::now();
    loop {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        if content.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the log never said {text:?}:\n{content}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node_phase(config: &serde_json::Value, dir: &Path, phase: &str) -> serde_json::Value {
    let console_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        console_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run .ci/install-tools (npm ci in tests/console)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is not installed: run .ci/install-tools"
    );
    let mut config = config.clone();
    config["phase"] = phase.into();
    config["out"] = p(&dir.join(format!("result-{phase}.json"))).into();
    let path = dir.join(format!("config-{phase}.json"));
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new("node")
        .arg(console_dir.join("console.mjs"))
        .arg(&path)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser phase {phase} failed (screenshots in {}):\n{}{}",
        config["shots"],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("result-{phase}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn approvals_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = dev_env(dir.path(), Some(POLICY));
    let log = dir.path().join("serve.log");
    let (server, url) = serve(&env, &log);

    // Two pending requests: the treasury's, and alice's (she holds both roles).
    let client = |name: &str| env.join(format!("client-{name}.toml"));
    run(&[
        "sign",
        "--config",
        p(&client("treasury")),
        "--wallet",
        "eth-treasury",
        "--request-id",
        "t-1",
        "--eth-tx",
        p(&eth_tx(dir.path(), "t-1.json", 0, 100)),
    ]);
    run(&[
        "sign",
        "--config",
        p(&client("officers-alice")),
        "--wallet",
        "eth-treasury",
        "--request-id",
        "a-1",
        "--eth-tx",
        p(&eth_tx(dir.path(), "a-1.json", 1, 5)),
    ]);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let config = serde_json::json!({
        "url": url,
        "userDataDir": p(&dir.path().join("chromium-profile")),
        "shots": p(&shots),
        "carol": CAROL,
        "keys": {
            "bob": p(&env.join("approver-keys/officers-bob.pem")),
            "alice": p(&env.join("approver-keys/officers-alice.pem")),
        },
    });
    let one = node_phase(&config, dir.path(), "one");
    let carol_key = one["carolKey"].as_str().unwrap().to_owned();
    assert!(carol_key.starts_with("p256:"), "{carol_key}");

    // Compliance enrols the browser's key for carol, signs the policy, and the server reloads.
    let policy_path = env.join("policy.toml");
    let text = std::fs::read_to_string(&policy_path).unwrap();
    let enrolled: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("\"{CAROL}\" =")) {
                format!("\"{CAROL}\" = \"{carol_key}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(enrolled.contains(&carol_key));
    std::fs::write(&policy_path, enrolled + "\n").unwrap();
    for officer in ["compliance-1", "compliance-2"] {
        run(&[
            "policy",
            "sign",
            p(&policy_path),
            "--key",
            p(&env.join(format!("compliance/{officer}.pem"))),
        ]);
    }
    let status = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_log(&log, "policy reloaded");

    node_phase(&config, dir.path(), "two");

    // The signed request's proof, re-checked offline.
    let proof = dir.path().join("t-1.proof.json");
    run(&[
        "request",
        "proof",
        "--config",
        p(&client("officers-bob")),
        "--request-id",
        "t-1",
        "--requester",
        TREASURY,
        "--out",
        p(&proof),
    ]);
    let verified = run(&["request", "verify", p(&proof), "--policy", p(&policy_path)]);
    assert!(verified.contains("proof verified"), "{verified}");
    assert!(
        verified.contains("2 of the 2 required approvals are valid signed votes"),
        "{verified}"
    );
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/governance/verify_proof.py"
        ))
        .arg(&proof)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 vote(s) verified independently"), "{text}");

    for name in [
        "01-signed-out.png",
        "04-list.png",
        "05-detail.png",
        "07-requester-refused.png",
        "08-quorum-met-signed.png",
    ] {
        assert!(shots.join(name).is_file(), "screenshot {name}");
    }
    drop(server);
}
