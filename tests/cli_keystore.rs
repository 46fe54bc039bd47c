//! The key store and admin commands, driven through the built `custos` binary as an operator
//! would: temporary directories, passphrases in files, exit codes and stderr checked.
//!
//! Known values for the "abandon ×11 about" mnemonic (BIP39 test vector, empty passphrase):
//! - BIP84 m/84'/0'/0'/0/0 and its zpub: BIP84's own test vectors.
//! - BIP49 m/49'/0'/0'/0/0 (mainnet): BIP49's test vectors use a testnet path; the mainnet address
//!   is the one every BIP49 wallet (Trezor, Electrum, BDK) shows for this mnemonic.
//! - BIP86 m/86'/0'/0'/0/0: BIP86's test vectors.
//! - BIP44 m/44'/0'/0'/0/0 and Ethereum m/44'/60'/0'/0/0: the addresses published by wallets for
//!   this mnemonic (and given in the project's issue).
//! - Testnet addresses of BIP44/49/84 (coin type 1): published by several independent wallet test
//!   suites. The BIP86 testnet address is checked against an independent derivation (the `bip32`
//!   crate) instead, since published values disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use tempfile::TempDir;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const BIP84_ADDRESS: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
const BIP84_ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";
const BIP44_ADDRESS: &str = "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA";
const BIP49_ADDRESS: &str = "37VucYSaXLCAsxYyAPfbSi9eh4iEcbShgf";
const BIP86_ADDRESS: &str = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr";
const ETH_ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";
const TESTNET_BIP44: &str = "mkpZhYtJu2r87Js3pDiWJDmPte2NRZ8bJV";
const TESTNET_BIP49: &str = "2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2";
const TESTNET_BIP84: &str = "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl";

/// A temporary operator workspace: a store path and secret files.
struct Ws {
    tmp: TempDir,
}

impl Ws {
    fn new() -> Ws {
        let ws = Ws {
            tmp: tempfile::tempdir().unwrap(),
        };
        ws.write("pass", "correct horse battery staple\n");
        ws.write("new-pass", "a much better passphrase\n");
        ws.write("wrong-pass", "Correct horse battery staple\n");
        ws.write("mnemonic", &format!("{ABANDON}\n"));
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// `custos ARGS`, with the passphrase variables cleared.
    fn run(&self, args: &[&str]) -> Output {
        custos().args(args).output().unwrap()
    }

    /// `custos ARGS --store STORE --passphrase-file pass`.
    fn run_store(&self, args: &[&str]) -> Output {
        self.run_store_with(args, "pass")
    }

    fn run_store_with(&self, args: &[&str], passphrase_file: &str) -> Output {
        let store = self.store();
        let pass = self.path(passphrase_file);
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--store",
            store.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ]);
        self.run(&all)
    }

    /// `custos init` importing "abandon … about", cheap KDF.
    fn init(&self) {
        let mnemonic = self.path("mnemonic");
        let out = self.run_store(&[
            "init",
            "--import-mnemonic-file",
            mnemonic.to_str().unwrap(),
            "--unsafe-kdf-memory-kib",
            "64",
        ]);
        ok(&out);
    }
}

fn custos() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custos"));
    for var in [
        "CUSTOS_PASSPHRASE",
        "CUSTOS_NEW_PASSPHRASE",
        "CUSTOS_UNSAFE_KDF_MEMORY_KIB",
        "CUSTOS_UNSAFE_TEST_CRASH_AT",
    ] {
        command.env_remove(var);
    }
    command
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Exit code `code`, stderr one line containing `needle`, no panic.
#[track_caller]
fn fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
}

/// Every file under `dir` and the SHA-256 of its bytes (printable when an assertion fails).
fn fingerprints(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::Digest;
    snapshot(dir)
        .into_iter()
        .map(|(path, bytes)| (path, hex::encode(sha2::Sha256::digest(&bytes))))
        .collect()
}

/// Every file under `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn create_wallet(ws: &Ws, name: &str, chain: &str, network: &str, purpose: Option<&str>) {
    let mut args = vec![
        "wallet",
        "create",
        "--name",
        name,
        "--chain",
        chain,
        "--network",
        network,
    ];
    if let Some(p) = purpose {
        args.extend(["--purpose", p]);
    }
    ok(&ws.run_store(&args));
}

fn address(ws: &Ws, name: &str, index: &str, change: bool) -> String {
    let mut args = vec!["wallet", "address", "--name", name, "--index", index];
    if change {
        args.push("--change");
    }
    ok(&ws.run_store(&args)).trim_end().to_owned()
}

/// The public key at `path` of "abandon … about", derived with the independent `bip32` crate.
fn independent_public_key(path: &str) -> [u8; 33] {
    let seed = bip39::Mnemonic::parse(ABANDON).unwrap().to_seed("");
    let path = bip32::DerivationPath::from_str(path).unwrap();
    bip32::XPrv::derive_from_path(seed, &path)
        .unwrap()
        .public_key()
        .to_bytes()
}

/// The P2WPKH address at `path` (independent derivation).
fn independent_address(path: &str, network: bitcoin::Network) -> String {
    let key = bitcoin::CompressedPublicKey::from_slice(&independent_public_key(path)).unwrap();
    bitcoin::Address::p2wpkh(&key, network).to_string()
}

/// The EIP-55 Ethereum address at `path` (independent derivation, k256 and alloy's keccak).
fn independent_eth_address(path: &str) -> String {
    let key = k256::PublicKey::from_sec1_bytes(&independent_public_key(path)).unwrap();
    let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
    alloy_primitives::Address::from_raw_public_key(&point.as_bytes()[1..]).to_checksum(None)
}

/// The first address of `purpose` on testnet, derived with the independent `bip32` crate.
fn independent_testnet_address(purpose: u32) -> String {
    let mnemonic = bip39::Mnemonic::parse(ABANDON).unwrap();
    let seed = mnemonic.to_seed("");
    let path = bip32::DerivationPath::from_str(&format!("m/{purpose}'/1'/0'/0/0")).unwrap();
    let xprv = bip32::XPrv::derive_from_path(seed, &path).unwrap();
    let public = xprv.public_key().to_bytes();
    let key = bitcoin::CompressedPublicKey::from_slice(&public).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let network = bitcoin::Network::Testnet;
    match purpose {
        44 => bitcoin::Address::p2pkh(key, network),
        49 => bitcoin::Address::p2shwpkh(&key, network),
        84 => bitcoin::Address::p2wpkh(&key, network),
        86 => bitcoin::Address::p2tr(&secp, key.0.x_only_public_key().0, None, network),
        _ => unreachable!(),
    }
    .to_string()
}

#[test]
fn operator_creates_wallets_and_reads_known_addresses() {
    let ws = Ws::new();
    ws.init();
    for purpose in ["44", "49", "84", "86"] {
        create_wallet(
            &ws,
            &format!("btc{purpose}"),
            "bitcoin",
            "mainnet",
            Some(purpose),
        );
        create_wallet(
            &ws,
            &format!("tbtc{purpose}"),
            "bitcoin",
            "testnet",
            Some(purpose),
        );
    }
    // One key, one wallet: the default purpose (BIP84) at account 0 is btc84's path, and every
    // EVM network derives from m/44'/60'/account', so Sepolia at account 0 would sign with the
    // mainnet wallet's key. Both are refused, naming the wallet that holds the path.
    fails(
        &ws.run_store(&[
            "wallet",
            "create",
            "--name",
            "default",
            "--chain",
            "bitcoin",
            "--network",
            "mainnet",
        ]),
        1,
        "wallet 'btc84' already uses seed '73c5da0a' at m/84'/0'/0'",
    );
    create_wallet(&ws, "eth", "ethereum", "mainnet", None);
    let refused = ws.run_store(&[
        "wallet",
        "create",
        "--name",
        "sepolia",
        "--chain",
        "ethereum",
        "--network",
        "sepolia",
    ]);
    fails(
        &refused,
        1,
        "wallet 'eth' already uses seed '73c5da0a' at m/44'/60'/0'",
    );
    assert!(
        stderr(&refused).contains("account 1 is free"),
        "{}",
        stderr(&refused)
    );
    for (name, chain, network) in [
        ("default", "bitcoin", "mainnet"),
        ("sepolia", "ethereum", "sepolia"),
    ] {
        ok(&ws.run_store(&[
            "wallet",
            "create",
            "--name",
            name,
            "--chain",
            chain,
            "--network",
            network,
            "--account",
            "1",
        ]));
    }

    assert_eq!(address(&ws, "btc44", "0", false), BIP44_ADDRESS);
    assert_eq!(address(&ws, "btc49", "0", false), BIP49_ADDRESS);
    assert_eq!(address(&ws, "btc84", "0", false), BIP84_ADDRESS);
    assert_eq!(
        address(&ws, "default", "0", false),
        independent_address("m/84'/0'/1'/0/0", bitcoin::Network::Bitcoin)
    );
    assert_ne!(address(&ws, "default", "0", false), BIP84_ADDRESS);
    assert_eq!(address(&ws, "btc86", "0", false), BIP86_ADDRESS);
    assert_eq!(address(&ws, "eth", "0", false), ETH_ADDRESS);
    assert_eq!(
        address(&ws, "sepolia", "0", false),
        independent_eth_address("m/44'/60'/1'/0/0")
    );
    assert_ne!(address(&ws, "sepolia", "0", false), ETH_ADDRESS);
    assert_eq!(address(&ws, "tbtc44", "0", false), TESTNET_BIP44);
    assert_eq!(address(&ws, "tbtc49", "0", false), TESTNET_BIP49);
    assert_eq!(address(&ws, "tbtc84", "0", false), TESTNET_BIP84);
    for purpose in [44, 49, 84, 86] {
        assert_eq!(
            address(&ws, &format!("tbtc{purpose}"), "0", false),
            independent_testnet_address(purpose)
        );
    }
    // BIP84 vectors: second receive address and first change address.
    assert_eq!(
        address(&ws, "btc84", "1", false),
        "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    );
    assert_eq!(
        address(&ws, "btc84", "0", true),
        "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    );

    let xpub = ok(&ws.run_store(&["wallet", "xpub", "--name", "btc84"]));
    let lines: Vec<&str> = xpub.lines().collect();
    assert_eq!(lines.len(), 3, "{xpub}");
    assert_eq!(lines[0], BIP84_ZPUB);
    assert!(
        lines[1].starts_with("wpkh([73c5da0a/84'/0'/0']xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V/0/*)#"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("/1/*)#"), "{}", lines[2]);
    let eth_xpub = ok(&ws.run_store(&["wallet", "xpub", "--name", "eth"]));
    assert_eq!(eth_xpub.lines().count(), 1);
    assert!(eth_xpub.starts_with("xpub"));

    // The table and the JSON list every wallet.
    let table = ok(&ws.run_store(&["wallet", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 1 + 11);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ws.run_store(&["wallet", "list", "--json"]))).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 11);
    let btc84 = list.iter().find(|w| w["name"] == "btc84").unwrap();
    assert_eq!(btc84["xpub"], BIP84_ZPUB);
    assert_eq!(btc84["path"], "m/84'/0'/0'");
    assert_eq!(btc84["master_fingerprint"], "73c5da0a");

    // verify: a summary, no secret.
    let summary = ok(&ws.run_store(&["store", "verify"]));
    assert!(summary.contains("seed 73c5da0a"), "{summary}");
    assert!(summary.contains(BIP84_ADDRESS), "{summary}");
    assert!(summary.contains("wallets: 11"), "{summary}");
    assert!(!summary.contains("abandon"), "{summary}");
}

#[test]
fn usage_errors_exit_2_and_duplicates_exit_1() {
    let ws = Ws::new();
    ws.init();
    create_wallet(&ws, "hot", "bitcoin", "mainnet", None);
    fails(
        &ws.run_store(&[
            "wallet",
            "create",
            "--name",
            "hot",
            "--chain",
            "bitcoin",
            "--network",
            "mainnet",
        ]),
        1,
        "a wallet named 'hot' already exists",
    );
    fails(
        &ws.run_store(&[
            "wallet",
            "create",
            "--name",
            "e",
            "--chain",
            "ethereum",
            "--network",
            "mainnet",
            "--purpose",
            "84",
        ]),
        2,
        "purpose 84 is not supported for ethereum",
    );
    fails(
        &ws.run_store(&[
            "wallet",
            "create",
            "--name",
            "x",
            "--chain",
            "bitcoin",
            "--network",
            "sepolia",
        ]),
        2,
        "unknown bitcoin network",
    );
    fails(
        &ws.run_store(&[
            "wallet",
            "create",
            "--name",
            "a b",
            "--chain",
            "bitcoin",
            "--network",
            "mainnet",
        ]),
        2,
        "invalid wallet name",
    );
    let out = ws.run_store(&[
        "wallet",
        "create",
        "--name",
        "x",
        "--chain",
        "dogecoin",
        "--network",
        "mainnet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    fails(
        &ws.run_store(&["wallet", "address", "--name", "nope", "--index", "0"]),
        1,
        "unknown wallet 'nope'",
    );
    create_wallet(&ws, "eth", "ethereum", "1", None);
    fails(
        &ws.run_store(&[
            "wallet", "address", "--name", "eth", "--index", "0", "--change",
        ]),
        2,
        "no change addresses",
    );
    // No passphrase from anywhere, and no terminal: a usage error, not a hang.
    let out = custos()
        .args(["wallet", "list", "--store"])
        .arg(ws.store())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if out.status.code() == Some(2) {
        assert!(
            stderr(&out).contains("CUSTOS_PASSPHRASE"),
            "{}",
            stderr(&out)
        );
    }
    // The passphrase from the environment works like the file.
    let out = custos()
        .args([
            "wallet", "address", "--name", "hot", "--index", "0", "--store",
        ])
        .arg(ws.store())
        .env("CUSTOS_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), BIP84_ADDRESS);
    // A missing store is named.
    let out = custos()
        .args(["store", "verify", "--store"])
        .arg(ws.path("elsewhere"))
        .env("CUSTOS_PASSPHRASE", "x")
        .output()
        .unwrap();
    fails(&out, 1, "no key store at");
    assert!(!ws.path("elsewhere").exists());
}

#[test]
fn wrong_passphrase_is_one_clear_error_and_writes_nothing() {
    let ws = Ws::new();
    ws.init();
    create_wallet(&ws, "hot", "bitcoin", "mainnet", None);
    let new_pass = ws.path("new-pass");
    let attempts: [&[&str]; 5] = [
        &["wallet", "list"],
        &["wallet", "address", "--name", "hot", "--index", "0"],
        &["store", "verify"],
        &[
            "wallet",
            "create",
            "--name",
            "w2",
            "--chain",
            "bitcoin",
            "--network",
            "mainnet",
        ],
        &[
            "passphrase",
            "change",
            "--new-passphrase-file",
            new_pass.to_str().unwrap(),
        ],
    ];
    // Right after a write, sled rewrites its own index snapshot (`snap.*`) on the next open,
    // whatever the passphrase; the log holding the records (`db`) and `conf` stay as they were.
    let log = |ws: &Ws| {
        let all = fingerprints(&ws.store());
        all.into_iter()
            .filter(|(p, _)| {
                !p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("snap.")
            })
            .collect::<BTreeMap<_, _>>()
    };
    let before = log(&ws);
    fails(
        &ws.run_store_with(attempts[0], "wrong-pass"),
        1,
        "wrong passphrase",
    );
    assert_eq!(log(&ws), before, "a failed unseal wrote to the store");
    // At rest, not one byte changes.
    let before = fingerprints(&ws.store());
    for args in attempts {
        let out = ws.run_store_with(args, "wrong-pass");
        fails(&out, 1, "wrong passphrase");
        assert!(stdout(&out).is_empty());
        assert_eq!(
            fingerprints(&ws.store()),
            before,
            "a failed unseal wrote to the store"
        );
    }
    ok(&ws.run_store(&["store", "verify"]));
}

#[test]
fn init_refuses_an_existing_store() {
    let ws = Ws::new();
    ws.init();
    let before = fingerprints(&ws.store());
    let out = ws.run_store(&["init", "--unsafe-kdf-memory-kib", "64", "--no-display"]);
    fails(&out, 1, "already exists");
    assert_eq!(fingerprints(&ws.store()), before);
    // Nor any non-empty directory.
    std::fs::create_dir(ws.path("other")).unwrap();
    ws.write("other/file", "x");
    let out = custos()
        .args(["init", "--no-display", "--store"])
        .arg(ws.path("other"))
        .env("CUSTOS_PASSPHRASE", "x")
        .output()
        .unwrap();
    fails(&out, 1, "refusing to overwrite");
}

#[test]
fn a_new_store_shows_its_words_once_and_is_private() {
    let ws = Ws::new();
    let out = ws.run_store(&["init", "--unsafe-kdf-memory-kib", "64"]);
    let text = ok(&out);
    assert!(text.contains("24 words"), "{text}");
    assert!(text.contains("24. "), "{text}");
    assert!(stderr(&out).contains("UNSAFE"), "{}", stderr(&out));
    // The words shown are the store's seed: restoring them elsewhere gives the same fingerprint.
    let words: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .flat_map(|l| l.split_whitespace().filter(|w| !w.ends_with('.')))
        .collect();
    assert_eq!(words.len(), 24);
    let fingerprint = text
        .split("master fingerprint ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    ws.write("shown", &words.join(" "));
    let check = ok(&ws.run(&[
        "mnemonic",
        "check",
        "--file",
        ws.path("shown").to_str().unwrap(),
    ]));
    assert!(check.contains(fingerprint), "{check} vs {fingerprint}");
    // --no-display shows nothing of the kind.
    let out = custos()
        .args([
            "init",
            "--no-display",
            "--unsafe-kdf-memory-kib",
            "64",
            "--store",
        ])
        .arg(ws.path("quiet"))
        .env("CUSTOS_PASSPHRASE", "x")
        .output()
        .unwrap();
    assert!(!ok(&out).contains("words"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ws.store()), 0o700);
        for file in snapshot(&ws.store()).keys() {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}

#[test]
fn damaged_records_are_named_never_a_panic() {
    let ws = Ws::new();
    ws.init();
    create_wallet(&ws, "hot", "bitcoin", "mainnet", None);
    let ids = {
        let db = open_raw(ws.store()).unwrap();
        db.iter()
            .keys()
            .map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap())
            .collect::<Vec<_>>()
    };
    // init and wallet create are ceremonies: two log entries and the log's head.
    assert_eq!(
        ids,
        [
            "ceremony/00000000000000000001",
            "ceremony/00000000000000000002",
            "ceremony/head",
            "header",
            "seed/73c5da0a",
            "slot/passphrase",
            "wallet/hot"
        ]
    );
    for id in &ids {
        let original = open_raw(ws.store())
            .unwrap()
            .get(id)
            .unwrap()
            .unwrap()
            .to_vec();
        let mut flipped = original.clone();
        flipped[original.len() / 2] ^= 0x04;
        for damaged in [flipped, original[..original.len() - 5].to_vec(), vec![]] {
            {
                let db = open_raw(ws.store()).unwrap();
                db.insert(id, damaged).unwrap();
                db.flush().unwrap();
            }
            let out = ws.run_store(&["store", "verify"]);
            fails(&out, 1, &format!("'{id}' is corrupt"));
        }
        let db = open_raw(ws.store()).unwrap();
        db.insert(id, original).unwrap();
        db.flush().unwrap();
    }
    ok(&ws.run_store(&["store", "verify"]));
    assert_eq!(address(&ws, "hot", "0", false), BIP84_ADDRESS);

    // A wallet record swapped for another wallet's (an attacker's deposit addresses): refused.
    create_wallet(&ws, "other", "bitcoin", "mainnet", Some("44"));
    {
        let db = open_raw(ws.store()).unwrap();
        let other = db.get("wallet/other").unwrap().unwrap();
        db.insert("wallet/hot", other).unwrap();
        db.flush().unwrap();
    }
    let out = ws.run_store(&["wallet", "address", "--name", "hot", "--index", "0"]);
    fails(&out, 1, "'wallet/hot' is corrupt");
}

/// Damage to sled's own files: a clear error or a store that still verifies, never a panic.
#[test]
fn damaged_storage_files_never_panic() {
    let ws = Ws::new();
    ws.init();
    create_wallet(&ws, "hot", "bitcoin", "mainnet", None);
    let db_file = ws.store().join("db");
    let original = std::fs::read(&db_file).unwrap();
    let used = original.iter().rposition(|b| *b != 0).unwrap_or(0) + 1;
    for at in (0..used).step_by(used.div_ceil(24).max(1)) {
        let mut damaged = original.clone();
        damaged[at] ^= 0xff;
        std::fs::write(&db_file, &damaged).unwrap();
        let out = ws.run_store(&["store", "verify"]);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(101), "panic at byte {at}: {err}");
        assert!(!err.contains("panicked"), "panic at byte {at}: {err}");
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(1), "{err}");
        }
        std::fs::write(&db_file, &original).unwrap();
    }
}

#[test]
fn a_store_in_use_is_named() {
    let ws = Ws::new();
    ws.init();
    let held = custos::keystore::KeyStore::open(&ws.store()).unwrap();
    let out = ws.run_store(&["wallet", "list"]);
    fails(
        &out,
        1,
        &format!(
            "key store {} is in use by another process (is the server running?)",
            ws.store().display()
        ),
    );
    held.close();
    ok(&ws.run_store(&["wallet", "list"]));
}

#[test]
fn passphrase_change_replaces_the_old_one() {
    let ws = Ws::new();
    ws.init();
    create_wallet(&ws, "hot", "bitcoin", "mainnet", None);
    let out = custos()
        .args([
            "passphrase",
            "change",
            "--unsafe-kdf-memory-kib",
            "128",
            "--store",
        ])
        .arg(ws.store())
        .arg("--passphrase-file")
        .arg(ws.path("pass"))
        .env("CUSTOS_NEW_PASSPHRASE", "a much better passphrase")
        .output()
        .unwrap();
    ok(&out);
    fails(&ws.run_store(&["wallet", "list"]), 1, "wrong passphrase");
    let summary = ok(&ws.run_store_with(&["store", "verify"], "new-pass"));
    assert!(summary.contains("m=128 KiB"), "{summary}");
    assert_eq!(
        ok(&ws.run_store_with(
            &["wallet", "address", "--name", "hot", "--index", "0"],
            "new-pass"
        ))
        .trim(),
        BIP84_ADDRESS
    );
}

/// `custos passphrase change` aborted (as by kill -9) between each of its steps: the old or the
/// new passphrase opens the store, never neither.
#[test]
fn passphrase_change_survives_a_crash_at_every_step() {
    if !cfg!(debug_assertions) {
        eprintln!("crash points exist in debug builds only; skipped");
        return;
    }
    for point in ["after-unwrap", "before-write", "after-write", "after-flush"] {
        let ws = Ws::new();
        ws.init();
        let out = custos()
            .args([
                "passphrase",
                "change",
                "--unsafe-kdf-memory-kib",
                "64",
                "--store",
            ])
            .arg(ws.store())
            .arg("--passphrase-file")
            .arg(ws.path("pass"))
            .arg("--new-passphrase-file")
            .arg(ws.path("new-pass"))
            .env(
                "CUSTOS_UNSAFE_TEST_CRASH_AT",
                format!("passphrase-change:{point}"),
            )
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{point}: the crash point did not fire"
        );
        assert_eq!(out.status.code(), None, "{point}: not killed by a signal");
        let old = ws
            .run_store_with(&["store", "verify"], "pass")
            .status
            .success();
        let new = ws
            .run_store_with(&["store", "verify"], "new-pass")
            .status
            .success();
        assert!(old ^ new, "{point}: old works {old}, new works {new}");
        match point {
            "after-unwrap" | "before-write" => assert!(old, "{point}"),
            "after-flush" => assert!(new, "{point}"),
            _ => {}
        }
    }
}

/// No secret in clear anywhere under the store directory, with the real KDF parameters: the
/// entropy, the BIP39 seed, the master xprv (text, and raw key and chain code), account xprvs,
/// first private keys, the BIP39 passphrase and the store passphrase.
#[test]
fn no_secret_in_clear_under_the_store() {
    let ws = Ws::new();
    // A fresh 24-word mnemonic (random entropy, so a match cannot be a coincidence of zeros).
    let mut entropy = [0u8; 32];
    getrandom::getrandom(&mut entropy).unwrap();
    let mnemonic = bip39::Mnemonic::from_entropy(&entropy).unwrap();
    let phrase = mnemonic.to_string();
    ws.write("mnemonic24", &phrase);
    let bip39_passphrase = "custos test bip39 passphrase 7f3a";
    ws.write("bip39", bip39_passphrase);
    let mnemonic_file = ws.path("mnemonic24");
    let bip39_file = ws.path("bip39");
    let out = ws.run_store(&[
        "init",
        "--import-mnemonic-file",
        mnemonic_file.to_str().unwrap(),
        "--bip39-passphrase-file",
        bip39_file.to_str().unwrap(),
    ]);
    assert!(ok(&out).contains("m=65536 KiB t=3"), "the real default KDF");
    create_wallet(&ws, "btc", "bitcoin", "mainnet", None);
    create_wallet(&ws, "tr", "bitcoin", "mainnet", Some("86"));
    create_wallet(&ws, "eth", "ethereum", "mainnet", None);
    let new_pass = ws.path("new-pass");
    ok(&ws.run_store(&[
        "passphrase",
        "change",
        "--new-passphrase-file",
        new_pass.to_str().unwrap(),
    ]));
    assert!(ok(&ws.run_store_with(&["store", "verify"], "new-pass")).contains("wallets: 3"));

    let seed = mnemonic.to_seed(bip39_passphrase);
    let master = bip32::XPrv::new(seed).unwrap();
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("entropy".into(), entropy.to_vec()),
        ("entropy hex".into(), hex::encode(entropy).into_bytes()),
        ("mnemonic".into(), phrase.clone().into_bytes()),
        (
            "first three words".into(),
            phrase
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes(),
        ),
        ("seed".into(), seed.to_vec()),
        ("seed hex".into(), hex::encode(seed).into_bytes()),
        (
            "master xprv".into(),
            master.to_string(bip32::Prefix::XPRV).as_bytes().to_vec(),
        ),
        ("master key".into(), master.to_bytes().to_vec()),
        (
            "master chain code".into(),
            master.attrs().chain_code.to_vec(),
        ),
        (
            "bip39 passphrase".into(),
            bip39_passphrase.as_bytes().to_vec(),
        ),
        (
            "store passphrase".into(),
            b"correct horse battery staple".to_vec(),
        ),
        (
            "new passphrase".into(),
            b"a much better passphrase".to_vec(),
        ),
    ];
    for path in [
        "m/84'/0'/0'",
        "m/86'/0'/0'",
        "m/44'/60'/0'",
        "m/84'/0'/0'/0/0",
        "m/84'/0'/0'/0/1",
        "m/84'/0'/0'/1/0",
        "m/86'/0'/0'/0/0",
        "m/44'/60'/0'/0/0",
    ] {
        let key =
            bip32::XPrv::derive_from_path(seed, &bip32::DerivationPath::from_str(path).unwrap())
                .unwrap();
        needles.push((format!("{path} key"), key.to_bytes().to_vec()));
        needles.push((
            format!("{path} key hex"),
            hex::encode(key.to_bytes()).into_bytes(),
        ));
        needles.push((
            format!("{path} chain code"),
            key.attrs().chain_code.to_vec(),
        ));
        needles.push((
            format!("{path} xprv"),
            key.to_string(bip32::Prefix::XPRV).as_bytes().to_vec(),
        ));
    }
    let files = snapshot(&ws.store());
    assert!(files.len() >= 2, "{files:?}");
    let total: usize = files.values().map(Vec::len).sum();
    assert!(total > 1000);
    for (path, bytes) in &files {
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in clear in {}",
                path.display()
            );
        }
    }
    // The search itself finds a needle planted in a file.
    let mut planted = files.values().next().unwrap().clone();
    planted.extend_from_slice(&seed);
    assert!(planted.windows(64).any(|w| w == seed.as_slice()));
}

/// Opens the store's sled database directly (to damage it), without sled's background flusher so
/// the file lock is released as soon as the handle drops and the binary can open the store next.
fn open_raw(dir: impl AsRef<std::path::Path>) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir.as_ref())
        .flush_every_ms(None)
        .open()
}
