//! The HSM ceremonies in the ceremony log, on a SoftHSM2 token made by the project's script:
//! `custos hsm import`, `keygen` and `unseal-slot add|remove` each append an entry naming the
//! operator and the public facts (token, module, labels, paths, public keys, counts), checked
//! against what `pkcs11-tool` — a PKCS#11 client that is not Custos — reads from the token; the
//! transcript's chain verifies; the user and SO PINs, the passphrase and the shares appear
//! nowhere: not in the transcript, not in any output, not in the store's files. A store unsealed
//! only by Shamir shares runs the same ceremonies, and a refused ceremony records nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bitcoin::secp256k1::PublicKey;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_custos");
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const PASSPHRASE: &str = "hsm ceremony passphrase 41c7";

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A workspace with a token, and everything every command printed.
struct Ws {
    tmp: tempfile::TempDir,
    hsm: PathBuf,
    config: PathBuf,
    printed: std::cell::RefCell<String>,
}

impl Ws {
    /// A directory, a token made by `hsm/setup-softhsm.sh`, a configuration naming it.
    fn new() -> Ws {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let hsm = d.join("hsm");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hsm/setup-softhsm.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&hsm)
            .env_remove("SOFTHSM2_CONF")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::write(d.join("mnemonic.txt"), ABANDON).unwrap();
        std::fs::write(d.join("pass"), PASSPHRASE).unwrap();
        let config = d.join("custos.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:0"
store_dir = "store"
state_dir = "state"
policy_file = "policy.toml"
[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"
[hsm]
module = "{MODULE}"
token_label = "custos"
pin_file = "{pin}"
wallets = ["*"]
[hsm.module_env]
SOFTHSM2_CONF = "{conf}"
"#,
                pin = p(&hsm.join("user-pin")),
                conf = p(&hsm.join("softhsm2.conf")),
            ),
        )
        .unwrap();
        Ws {
            tmp,
            hsm,
            config,
            printed: Default::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        p(&self.path(name)).to_owned()
    }

    fn cfg(&self) -> String {
        p(&self.config).to_owned()
    }

    fn pins(&self) -> Vec<String> {
        ["user-pin", "so-pin"]
            .iter()
            .map(|f| {
                let pin = std::fs::read_to_string(self.hsm.join(f)).unwrap();
                assert!(pin.trim().len() >= 16, "{f}: {pin}");
                pin.trim().to_owned()
            })
            .collect()
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("CUSTOS_PASSPHRASE")
            .env_remove("CUSTOS_SHARE_FILES")
            .env_remove("CUSTOS_OPERATOR")
            .env_remove("SOFTHSM2_CONF")
            .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
            .stdin(Stdio::null())
            .output()
            .expect("run custos");
        let mut printed = self.printed.borrow_mut();
        printed.push_str(&text(&out.stdout));
        printed.push_str(&text(&out.stderr));
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in: {err}");
        err
    }

    /// `pkcs11-tool --list-objects` as the user: one block of lines per object.
    fn token_objects(&self) -> Vec<String> {
        let pin = &self.pins()[0];
        let out = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", "custos", "--login"])
            .args(["--pin", pin, "--list-objects"])
            .env("SOFTHSM2_CONF", self.hsm.join("softhsm2.conf"))
            .output()
            .expect("pkcs11-tool (opensc) is installed by .ci/install-tools");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut blocks: Vec<String> = Vec::new();
        for line in text(&out.stdout).lines() {
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

    /// The public keys the token holds, by label, as pkcs11-tool reads them (compressed hex).
    fn token_public_keys(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for block in self.token_objects() {
            if !block.starts_with("Public Key Object; EC") {
                continue;
            }
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                    .unwrap_or_else(|| panic!("no {name} in {block}"))
            };
            let label = field("label:");
            let point = hex::decode(field("EC_POINT:")).unwrap();
            // DER OCTET STRING (04 41) around the uncompressed point.
            assert_eq!(&point[..2], &[0x04, 0x41], "{block}");
            let key = PublicKey::from_slice(&point[2..]).unwrap();
            out.insert(label, key.to_string());
        }
        out
    }

    /// The ceremony report, as text and as JSON, unsealed with `unsealer`.
    fn report(&self, unsealer: &[&str]) -> (String, serde_json::Value) {
        let store = self.p("store");
        let mut args = vec!["ceremony", "report", "--store", &store];
        args.extend_from_slice(unsealer);
        let text_report = self.ok(&args);
        args.push("--json");
        let json: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (text_report, json)
    }

    /// Every byte of every file under the store directory (the log is in there).
    fn store_bytes(&self) -> Vec<u8> {
        fn walk(dir: &Path, out: &mut Vec<u8>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.extend(std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("store"), &mut out);
        out
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The entries of `event` in a JSON report.
fn entries<'a>(report: &'a serde_json::Value, event: &str) -> Vec<&'a serde_json::Value> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["event"] == event)
        .collect()
}

/// SHA-256 over `<label> <public key>\n` of `labels`, with the keys the token holds.
fn keys_sha256(labels: &[String], token: &std::collections::BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for label in labels {
        let key = token
            .get(label)
            .unwrap_or_else(|| panic!("{label} not in the token"));
        h.update(format!("{label} {key}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

/// Every listed key of an entry is in the token under its label with that public key.
fn listed_keys_match(
    entry: &serde_json::Value,
    token: &std::collections::BTreeMap<String, String>,
) {
    for k in entry["event"]["keys"].as_array().unwrap() {
        let label = k["label"].as_str().unwrap();
        assert_eq!(
            token.get(label).map(String::as_str),
            k["public_key"].as_str(),
            "{label}"
        );
    }
}

#[test]
fn hsm_ceremonies_are_in_the_transcript_with_public_facts_and_no_pin() {
    let ws = Ws::new();
    let store = ws.p("store");
    let cfg = ws.cfg();
    let pass = ws.p("pass");
    let unsealer = ["--passphrase-file", pass.as_str()];
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--import-mnemonic-file",
        &ws.p("mnemonic.txt"),
        "--passphrase-file",
        &pass,
        "--operator",
        "alice",
    ]);
    for (name, chain, network, purpose) in [
        ("btc-hsm", "bitcoin", "regtest", "84"),
        ("eth-hsm", "ethereum", "sepolia", "44"),
        ("btc-tr", "bitcoin", "regtest", "86"),
    ] {
        ws.ok(&[
            "wallet",
            "create",
            "--store",
            &store,
            "--passphrase-file",
            &pass,
            "--name",
            name,
            "--chain",
            chain,
            "--network",
            network,
            "--purpose",
            purpose,
            "--operator",
            "alice",
        ]);
    }
    let (_, before) = ws.report(&unsealer);
    let initial = before["entries"].as_array().unwrap().len();
    assert_eq!(initial, 4, "{before}");

    // Imports: 20 keys (bounded listing) and 2 keys (all listed).
    let out = ws.ok(&[
        "hsm",
        "import",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--wallet",
        "btc-hsm",
        "--range",
        "0..10",
        "--operator",
        "bob the operator",
    ]);
    assert!(
        out.contains("20 key(s) imported, 0 already present"),
        "{out}"
    );
    assert!(
        out.contains("recorded in the ceremony log as entry 5"),
        "{out}"
    );
    ws.ok(&[
        "hsm",
        "import",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--wallet",
        "eth-hsm",
        "--range",
        "0..2",
        "--operator",
        "bob the operator",
    ]);
    // Refused ceremonies record nothing: taproot, a bad operator name, keygen over a taken name.
    ws.fails(
        &[
            "hsm",
            "import",
            "--config",
            &cfg,
            "--passphrase-file",
            &pass,
            "--wallet",
            "btc-tr",
            "--range",
            "0..1",
            "--operator",
            "bob",
        ],
        2,
        "taproot",
    );
    ws.fails(
        &[
            "hsm",
            "import",
            "--config",
            &cfg,
            "--passphrase-file",
            &pass,
            "--wallet",
            "eth-hsm",
            "--range",
            "0..1",
            "--operator",
            " ",
        ],
        2,
        "operator name is empty",
    );
    ws.fails(
        &[
            "hsm",
            "keygen",
            "--config",
            &cfg,
            "--passphrase-file",
            &pass,
            "--wallet",
            "eth-hsm",
            "--count",
            "1",
            "--network",
            "sepolia",
            "--operator",
            "carol",
        ],
        1,
        "eth-hsm",
    );
    let (_, after_refusals) = ws.report(&unsealer);
    assert_eq!(
        after_refusals["entries"].as_array().unwrap().len(),
        initial + 2
    );

    // Keys generated in the token.
    ws.ok(&[
        "hsm",
        "keygen",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--wallet",
        "eth-gen",
        "--count",
        "3",
        "--network",
        "sepolia",
        "--operator",
        "carol",
    ]);
    // The unseal slot, added (its key label as pkcs11-tool reads it) and removed.
    ws.ok(&[
        "hsm",
        "unseal-slot",
        "add",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--operator",
        "dave",
    ]);
    let blocks = ws.token_objects();
    let secret: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("Secret Key Object; AES"))
        .collect();
    assert_eq!(secret.len(), 1, "{blocks:?}");
    let unseal_label = secret[0]
        .lines()
        .find_map(|l| l.trim().strip_prefix("label:"))
        .unwrap()
        .trim()
        .to_owned();
    let token = ws.token_public_keys();
    ws.ok(&[
        "hsm",
        "unseal-slot",
        "remove",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--operator",
        "dave",
    ]);
    // Removing again: nothing to remove, nothing recorded.
    let out = ws.ok(&[
        "hsm",
        "unseal-slot",
        "remove",
        "--config",
        &cfg,
        "--passphrase-file",
        &pass,
        "--operator",
        "dave",
    ]);
    assert!(out.contains("no unseal slot"), "{out}");

    let (report_text, report) = ws.report(&unsealer);
    assert_eq!(report["chain"]["status"], "intact", "{report}");
    assert_eq!(report["chain"]["entries"], initial as u64 + 5, "{report}");

    // The Bitcoin import: the wallet, its xpub, the range, both chains, 16 of 20 keys listed and
    // the digest of all 20, each checked against the token.
    let imports = entries(&report, "hsm-import");
    assert_eq!(imports.len(), 2, "{report}");
    let btc = imports[0];
    assert_eq!(btc["operator"], "bob the operator");
    let e = &btc["event"];
    assert_eq!(e["token"], "custos");
    assert_eq!(e["module"], MODULE);
    assert_eq!(e["wallet"], "btc-hsm");
    let xpub = ws.ok(&[
        "wallet",
        "xpub",
        "--store",
        &store,
        "--passphrase-file",
        &pass,
        "--name",
        "btc-hsm",
    ]);
    assert_eq!(e["xpub"].as_str(), xpub.lines().next(), "{e}");
    assert_eq!(e["seed"], "73c5da0a");
    assert_eq!(e["range"], "0..10");
    assert_eq!(e["chains"], "receive and change");
    assert_eq!(e["created"], 20);
    assert_eq!(e["present"], 0);
    assert_eq!(e["key_count"], 20);
    assert_eq!(e["unsealed_by"]["method"], "passphrase");
    let keys = e["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 16, "{e}");
    assert_eq!(keys[0]["label"], "custos/btc-hsm/0/0");
    assert_eq!(keys[0]["path"], "m/84'/1'/0'/0/0");
    assert_eq!(keys[15]["label"], "custos/btc-hsm/1/9");
    listed_keys_match(btc, &token);
    let labels: Vec<String> = [0, 1]
        .iter()
        .flat_map(|c| (0..10).map(move |i| format!("custos/btc-hsm/{c}/{i}")))
        .collect();
    assert_eq!(
        e["keys_sha256"].as_str().unwrap(),
        keys_sha256(&labels, &token)
    );
    let eth = imports[1];
    assert_eq!(eth["event"]["keys"].as_array().unwrap().len(), 2);
    assert_eq!(eth["event"]["chains"], "receive");
    listed_keys_match(eth, &token);

    // The keygen: every key listed, the digest, the first address the wallet reports.
    let keygens = entries(&report, "hsm-keygen");
    assert_eq!(keygens.len(), 1, "{report}");
    let g = keygens[0];
    assert_eq!(g["operator"], "carol");
    assert_eq!(g["event"]["wallet"], "eth-gen");
    assert_eq!(g["event"]["seed"], "hsm:eth-gen");
    assert_eq!(g["event"]["chain"], "ethereum");
    assert_eq!(g["event"]["key_count"], 3);
    assert_eq!(g["event"]["keys"].as_array().unwrap().len(), 3);
    listed_keys_match(g, &token);
    let labels: Vec<String> = (0..3).map(|i| format!("custos/eth-gen/0/{i}")).collect();
    assert_eq!(
        g["event"]["keys_sha256"].as_str().unwrap(),
        keys_sha256(&labels, &token)
    );
    let first = ws.ok(&[
        "wallet",
        "address",
        "--store",
        &store,
        "--passphrase-file",
        &pass,
        "--name",
        "eth-gen",
        "--index",
        "0",
    ]);
    assert_eq!(g["event"]["first_address"].as_str(), Some(first.trim()));

    // The unseal slot: the key label the token holds, then removed with its key destroyed.
    let added = entries(&report, "hsm-unseal-slot-add");
    assert_eq!(added.len(), 1, "{report}");
    assert_eq!(added[0]["operator"], "dave");
    assert_eq!(added[0]["event"]["key_label"], unseal_label.as_str());
    let removed = entries(&report, "hsm-unseal-slot-remove");
    assert_eq!(removed.len(), 1, "{report}");
    assert_eq!(removed[0]["event"]["key_label"], unseal_label.as_str());
    assert_eq!(removed[0]["event"]["key_destroyed"], true);

    // The transcript as custodians read it.
    for line in [
        "chain       INTACT",
        "HSM-IMPORT  by bob the operator",
        "20 key(s) imported into HSM token 'custos'",
        "listed: the first 8 and the last 8 of the 20 keys",
        "key custos/btc-hsm/1/9: public key ",
        "addresses 0..10 (receive and change): 20 created, 0 already present",
        "HSM-KEYGEN  by carol",
        "eth-gen: ethereum sepolia, 3 key(s) generated inside HSM token 'custos'",
        "HSM-UNSEAL-SLOT-ADD  by dave",
        "HSM unseal slot REMOVED",
        "unsealed with passphrase",
        "operator bob the operator: signature",
    ] {
        assert!(
            report_text.contains(line),
            "{line:?} not in:\n{report_text}"
        );
    }

    // No PIN, no passphrase: in the transcript, in any output, in the store's files (which do
    // hold the log: the search would find it).
    let raw = ws.store_bytes();
    assert!(contains(&raw, "hsm-keygen"), "the log is not in the store");
    let printed = ws.printed.borrow().clone();
    for secret in ws.pins().iter().map(String::as_str).chain([PASSPHRASE]) {
        assert!(!report_text.contains(secret));
        assert!(!report.to_string().contains(secret));
        assert!(!printed.contains(secret));
        assert!(!contains(&raw, secret));
    }
}

/// The share files in `dir`, index 1 first.
fn share_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('-').collect();
        parts[parts.len() - 3].parse::<u32>().unwrap()
    });
    files
}

#[test]
fn a_store_unsealed_only_by_shares_runs_the_hsm_ceremonies() {
    let ws = Ws::new();
    let store = ws.p("store");
    let cfg = ws.cfg();
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "2/3",
        "--share-dir",
        &ws.p("shares"),
        "--import-mnemonic-file",
        &ws.p("mnemonic.txt"),
        "--operator",
        "alice",
    ]);
    let files = share_files(&ws.path("shares"));
    assert_eq!(files.len(), 3);
    let s = |i: usize| p(&files[i - 1]).to_owned();
    let (s1, s2, s3) = (s(1), s(2), s(3));
    ws.ok(&[
        "wallet",
        "create",
        "--store",
        &store,
        "--share-file",
        &s1,
        "--share-file",
        &s2,
        "--name",
        "eth-hsm",
        "--chain",
        "ethereum",
        "--network",
        "sepolia",
        "--operator",
        "alice",
    ]);
    // One share is not enough: refused before the token is touched, nothing recorded.
    ws.fails(
        &[
            "hsm",
            "keygen",
            "--config",
            &cfg,
            "--share-file",
            &s3,
            "--wallet",
            "eth-gen",
            "--count",
            "2",
            "--network",
            "sepolia",
            "--operator",
            "carol",
        ],
        2,
        "--share-file",
    );
    assert!(ws.token_public_keys().is_empty());
    // A passphrase does not open it.
    ws.fails(
        &[
            "hsm",
            "unseal-slot",
            "add",
            "--config",
            &cfg,
            "--passphrase-file",
            &ws.p("pass"),
        ],
        2,
        "no passphrase",
    );
    ws.ok(&[
        "hsm",
        "import",
        "--config",
        &cfg,
        "--share-file",
        &s1,
        "--share-file",
        &s3,
        "--wallet",
        "eth-hsm",
        "--range",
        "0..2",
        "--operator",
        "bob",
    ]);
    ws.ok(&[
        "hsm",
        "keygen",
        "--config",
        &cfg,
        "--share-file",
        &s2,
        "--share-file",
        &s3,
        "--wallet",
        "eth-gen",
        "--count",
        "2",
        "--network",
        "sepolia",
        "--operator",
        "carol",
    ]);
    ws.ok(&[
        "hsm",
        "unseal-slot",
        "add",
        "--config",
        &cfg,
        "--share-file",
        &s1,
        "--share-file",
        &s2,
        "--operator",
        "dave",
    ]);
    let (report_text, report) = ws.report(&["--share-file", &s1, "--share-file", &s3]);
    assert_eq!(report["chain"]["status"], "intact", "{report}");
    assert_eq!(report["chain"]["entries"], 5, "{report}");
    let by = |event: &str| {
        let found = entries(&report, event);
        assert_eq!(found.len(), 1, "{event}: {report}");
        found[0]["event"]["unsealed_by"].clone()
    };
    let import = by("hsm-import");
    assert_eq!(import["method"], "shares");
    assert_eq!(import["share_indexes"], serde_json::json!([1, 3]));
    assert_eq!(by("hsm-keygen")["share_indexes"], serde_json::json!([2, 3]));
    assert_eq!(
        by("hsm-unseal-slot-add")["share_indexes"],
        serde_json::json!([1, 2])
    );
    assert!(
        report_text.contains("unsealed with shares 1, 3 of set"),
        "{report_text}"
    );
    // The slot works: the token alone unseals the store now (checked by `hsm status`).
    let status = ws.ok(&["hsm", "status", "--config", &cfg]);
    assert!(status.contains("unseal slot:  yes"), "{status}");

    let printed = ws.printed.borrow().clone();
    let raw = ws.store_bytes();
    // The share itself: the lines of each file that are not `#` comments.
    let shares: Vec<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        shares.len() >= 3 && shares.iter().all(|s| s.len() >= 20),
        "{shares:?}"
    );
    for secret in ws.pins().iter().chain(&shares) {
        assert!(!report_text.contains(secret.as_str()));
        assert!(!report.to_string().contains(secret.as_str()));
        assert!(!printed.contains(secret.as_str()));
        assert!(!contains(&raw, secret));
    }
}
