//! The HSM ceremonies as an operator runs them, on a token made by the project's own script
//! (`hsm/setup-softhsm.sh`), checked with OpenSC's `pkcs11-tool` — a PKCS#11 client that is not
//! Custos — for what the token reveals: every private key sensitive and never readable, keys
//! generated in the token marked local and never extractable, the unseal key unreadable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_custos");
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const PASSPHRASE: &str = "correct horse battery staple";

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn custos(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CUSTOS_PASSPHRASE", PASSPHRASE)
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("run custos")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn refused(out: Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stdout));
    text(&out.stderr)
}

/// `hsm/setup-softhsm.sh DIR/hsm`, as an operator runs it.
fn setup_token(dir: &Path) -> PathBuf {
    let hsm = dir.join("hsm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm/setup-softhsm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&hsm)
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    let stdout = ok(out);
    assert!(stdout.contains("export SOFTHSM2_CONF="), "{stdout}");
    // Idempotent: a second run keeps the token and its PINs.
    let pin = std::fs::read_to_string(hsm.join("user-pin")).unwrap();
    ok(Command::new("bash")
        .arg(&script)
        .arg(&hsm)
        .output()
        .unwrap());
    assert_eq!(std::fs::read_to_string(hsm.join("user-pin")).unwrap(), pin);
    hsm
}

fn config(dir: &Path, hsm: &Path, label: &str, pin_file: &Path) -> PathBuf {
    let path = dir.join(format!("custos-{label}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:0"
store_dir = "store"
state_dir = "state"
policy_file = "policy.toml"
[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"
# The ceremonies load no policy: no compliance officers for this throwaway configuration.
[compliance]
allow_unsigned_policy = true
[hsm]
module = "{MODULE}"
token_label = "{label}"
pin_file = "{pin}"
wallets = ["*"]
[hsm.module_env]
SOFTHSM2_CONF = "{conf}"
"#,
            pin = p(pin_file),
            conf = p(&hsm.join("softhsm2.conf")),
        ),
    )
    .unwrap();
    path
}

/// `pkcs11-tool --list-objects` as the user: one block of lines per object.
fn pkcs11_tool_objects(hsm: &Path) -> Vec<String> {
    let pin = std::fs::read_to_string(hsm.join("user-pin")).unwrap();
    let out = Command::new("pkcs11-tool")
        .args(["--module", MODULE, "--token-label", "custos", "--login"])
        .args(["--pin", pin.trim(), "--list-objects"])
        .env("SOFTHSM2_CONF", hsm.join("softhsm2.conf"))
        .output()
        .expect("pkcs11-tool (opensc) is installed by .ci/install-tools");
    let listing = ok(out);
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') {
            blocks.push(String::new());
        }
        if let Some(last) = blocks.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    blocks
}

fn access(block: &str) -> String {
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix("Access:"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[test]
fn ceremonies_on_a_token_made_by_the_project_script() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hsm = setup_token(d);
    std::fs::write(d.join("mnemonic.txt"), ABANDON).unwrap();
    let store = d.join("store");
    ok(custos(&[
        "init",
        "--store",
        p(&store),
        "--import-mnemonic-file",
        p(&d.join("mnemonic.txt")),
    ]));
    for (name, chain, network, purpose) in [
        ("btc-hsm", "bitcoin", "regtest", "84"),
        ("eth-hsm", "ethereum", "sepolia", "44"),
        ("btc-tr", "bitcoin", "regtest", "86"),
    ] {
        ok(custos(&[
            "wallet",
            "create",
            "--store",
            p(&store),
            "--name",
            name,
            "--chain",
            chain,
            "--network",
            network,
            "--purpose",
            purpose,
        ]));
    }
    let cfg = config(d, &hsm, "custos", &hsm.join("user-pin"));
    let cfg = p(&cfg).to_owned();

    // What the token can do, tried for real.
    let shown = ok(custos(&["hsm", "status", "--config", &cfg]));
    assert!(shown.contains("secp256k1:    yes"), "{shown}");
    assert!(shown.contains("CKM_ECDSA:    yes"), "{shown}");

    // HD keys in, both chains for Bitcoin; a rerun keeps them; taproot is refused with the reason.
    let out = ok(custos(&[
        "hsm", "import", "--config", &cfg, "--wallet", "btc-hsm", "--range", "0..3",
    ]));
    assert!(
        out.contains("6 key(s) imported, 0 already present"),
        "{out}"
    );
    let out = ok(custos(&[
        "hsm", "import", "--config", &cfg, "--wallet", "btc-hsm", "--range", "0..4",
    ]));
    assert!(
        out.contains("2 key(s) imported, 6 already present"),
        "{out}"
    );
    ok(custos(&[
        "hsm", "import", "--config", &cfg, "--wallet", "eth-hsm", "--range", "0..2",
    ]));
    let err = refused(
        custos(&[
            "hsm", "import", "--config", &cfg, "--wallet", "btc-tr", "--range", "0..1",
        ]),
        2,
    );
    assert!(err.contains("taproot") && err.contains("BIP340"), "{err}");

    // Keys generated inside the token: a wallet without xpub, Ethereum only.
    let out = ok(custos(&[
        "hsm",
        "keygen",
        "--config",
        &cfg,
        "--wallet",
        "eth-gen",
        "--count",
        "2",
        "--network",
        "sepolia",
    ]));
    assert!(
        out.contains("2 key(s) generated inside token 'custos'"),
        "{out}"
    );
    let err = refused(
        custos(&[
            "hsm",
            "keygen",
            "--config",
            &cfg,
            "--wallet",
            "btc-gen",
            "--count",
            "1",
            "--network",
            "regtest",
        ]),
        2,
    );
    assert!(err.contains("hsm import"), "{err}");
    let err = refused(
        custos(&[
            "hsm", "import", "--config", &cfg, "--wallet", "eth-gen", "--range", "0..1",
        ]),
        2,
    );
    assert!(err.contains("generated"), "{err}");
    let address = ok(custos(&[
        "wallet",
        "address",
        "--store",
        p(&store),
        "--name",
        "eth-gen",
        "--index",
        "1",
    ]));
    assert!(address.trim().starts_with("0x"), "{address}");
    assert!(
        !custos(&["wallet", "xpub", "--store", p(&store), "--name", "eth-gen"])
            .status
            .success()
    );
    let verified = ok(custos(&["store", "verify", "--store", p(&store)]));
    assert!(verified.contains("eth-gen"), "{verified}");

    // The unseal slot: added once.
    let out = ok(custos(&["hsm", "unseal-slot", "add", "--config", &cfg]));
    assert!(out.contains("unseal slot added"), "{out}");
    let err = refused(custos(&["hsm", "unseal-slot", "add", "--config", &cfg]), 1);
    assert!(err.contains("already"), "{err}");

    // What Custos says of the objects...
    let listed: serde_json::Value =
        serde_json::from_str(&ok(custos(&["hsm", "list", "--config", &cfg, "--json"]))).unwrap();
    let objects = listed.as_array().unwrap();
    assert_eq!(objects.len(), (8 + 2 + 2) * 2, "{listed}");
    for o in objects.iter().filter(|o| o["class"] == "private") {
        assert_eq!(o["sensitive"], true, "{o}");
        assert_eq!(o["extractable"], false, "{o}");
        assert_eq!(o["value_readable"], false, "{o}");
        let generated = o["label"].as_str().unwrap().starts_with("custos/eth-gen/");
        assert_eq!(o["local"], generated, "{o}");
    }

    // ...and what pkcs11-tool, which is not Custos, sees.
    let blocks = pkcs11_tool_objects(&hsm);
    let private: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Private Key Object; EC"))
        .collect();
    assert_eq!(private.len(), 12, "{blocks:?}");
    for block in &private {
        let access = access(block);
        assert!(access.contains("sensitive"), "{block}");
        assert!(
            !access
                .replace("never extractable", "")
                .contains("extractable"),
            "{block}"
        );
        assert!(block.contains("Usage:      sign\n"), "{block}");
        if block.contains("custos/eth-gen/") {
            assert!(access.contains("always sensitive"), "{block}");
            assert!(access.contains("never extractable"), "{block}");
            assert!(access.contains("local"), "{block}");
        } else {
            assert!(!access.contains("local"), "imported keys say so: {block}");
        }
    }
    let secret: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Secret Key Object; AES"))
        .collect();
    assert_eq!(secret.len(), 1, "{blocks:?}");
    assert!(
        access(secret[0]).contains("never extractable"),
        "{}",
        secret[0]
    );
    let label = secret[0]
        .lines()
        .find_map(|l| l.trim().strip_prefix("label:"))
        .unwrap()
        .trim()
        .to_owned();
    let pin = std::fs::read_to_string(hsm.join("user-pin")).unwrap();
    let read = Command::new("pkcs11-tool")
        .args(["--module", MODULE, "--token-label", "custos", "--login"])
        .args(["--pin", pin.trim(), "--read-object", "--type", "secrkey"])
        .args(["--label", &label, "--output-file", p(&d.join("stolen"))])
        .env("SOFTHSM2_CONF", hsm.join("softhsm2.conf"))
        .output()
        .unwrap();
    assert!(!read.status.success(), "the unseal key was read");
    assert!(
        text(&read.stderr).contains("CKR_ATTRIBUTE_SENSITIVE"),
        "{}",
        text(&read.stderr)
    );
    assert!(!d.join("stolen").exists() || std::fs::read(d.join("stolen")).unwrap().is_empty());

    // A wrong PIN and a missing token: clear errors naming the token, never the PIN.
    std::fs::write(d.join("wrong-pin"), "000000\n").unwrap();
    let wrong = config(d, &hsm, "custos-x", &d.join("wrong-pin"));
    let wrong_text = std::fs::read_to_string(&wrong)
        .unwrap()
        .replace("token_label = \"custos-x\"", "token_label = \"custos\"");
    std::fs::write(&wrong, wrong_text).unwrap();
    let err = refused(custos(&["hsm", "status", "--config", p(&wrong)]), 1);
    assert!(
        err.contains("CKR_PIN_INCORRECT") && err.contains("token 'custos'"),
        "{err}"
    );
    assert!(!err.contains("000000"), "{err}");
    let missing = config(d, &hsm, "no-such-token", &hsm.join("user-pin"));
    let err = refused(custos(&["hsm", "status", "--config", p(&missing)]), 1);
    assert!(
        err.contains("token 'no-such-token'") && err.contains("not present"),
        "{err}"
    );
    let shown = text(&custos(&["hsm", "status", "--config", p(&missing)]).stdout);
    assert!(shown.contains("tokens present: 'custos'"), "{shown}");

    // Removing the unseal slot destroys the key in the token.
    ok(custos(&["hsm", "unseal-slot", "remove", "--config", &cfg]));
    let blocks = pkcs11_tool_objects(&hsm);
    assert!(
        !blocks.iter().any(|b| b.starts_with("Secret Key Object")),
        "{blocks:?}"
    );
}

#[test]
fn bench_signer_measures_both_paths_in_one_run() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "signer",
            "--backend",
            "pkcs11",
            "--clients",
            "2",
            "--requests",
            "20",
        ])
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    let text = ok(out);
    for line in [
        "end to end",
        "hsm path (SoftHSM2 via PKCS#11, 4 sessions, token 'custos-bench')",
        "hsm backend",
        "hsm / software   end to end = ",
        "raw libsecp256k1",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("(20 signed in"), "{text}");
    assert_eq!(text.matches("(20 signed in").count(), 2, "{text}");
}
