//! A workspace for the HSM ceremony tests: a SoftHSM2 token made by `hsm/setup-softhsm.sh`, a
//! `custos.toml` naming it, the built binary run with no terminal (everything it prints kept, to
//! be searched for secrets), the token's public keys as `pkcs11-tool` reads them, and the
//! ceremony report as text and JSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bitcoin::secp256k1::PublicKey;
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_custos");
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
pub const PASSPHRASE: &str = "hsm ceremony passphrase 41c7";

pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A workspace with a token, and everything every command printed.
pub struct Ws {
    pub tmp: tempfile::TempDir,
    pub hsm: PathBuf,
    pub config: PathBuf,
    pub printed: std::cell::RefCell<String>,
}

impl Ws {
    /// A directory, a token made by `hsm/setup-softhsm.sh`, a configuration naming it.
    pub fn new() -> Ws {
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
# The ceremonies load no policy: no compliance officers for this throwaway configuration.
[compliance]
allow_unsigned_policy = true
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

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        p(&self.path(name)).to_owned()
    }

    pub fn cfg(&self) -> String {
        p(&self.config).to_owned()
    }

    pub fn pins(&self) -> Vec<String> {
        ["user-pin", "so-pin"]
            .iter()
            .map(|f| {
                let pin = std::fs::read_to_string(self.hsm.join(f)).unwrap();
                assert!(pin.trim().len() >= 16, "{f}: {pin}");
                pin.trim().to_owned()
            })
            .collect()
    }

    pub fn run(&self, args: &[&str]) -> Output {
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

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in: {err}");
        err
    }

    /// `pkcs11-tool --list-objects` as the user: one block of lines per object.
    pub fn token_objects(&self) -> Vec<String> {
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
    pub fn token_public_keys(&self) -> std::collections::BTreeMap<String, String> {
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
    pub fn report(&self, unsealer: &[&str]) -> (String, serde_json::Value) {
        let store = self.p("store");
        let mut args = vec!["ceremony", "report", "--store", &store];
        args.extend_from_slice(unsealer);
        let text_report = self.ok(&args);
        args.push("--json");
        let json: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (text_report, json)
    }

    /// Every byte of every file under the store directory (the log is in there).
    pub fn store_bytes(&self) -> Vec<u8> {
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

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The entries of `event` in a JSON report.
pub fn entries<'a>(report: &'a serde_json::Value, event: &str) -> Vec<&'a serde_json::Value> {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["event"] == event)
        .collect()
}

/// SHA-256 over `<label> <public key>\n` of `labels`, with the keys the token holds.
pub fn keys_sha256(
    labels: &[String],
    token: &std::collections::BTreeMap<String, String>,
) -> String {
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
pub fn listed_keys_match(
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

/// The share files in `dir`, index 1 first.
pub fn share_files(dir: &Path) -> Vec<PathBuf> {
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
