//! Key ceremonies through the built `custos` binary, as custodians and operators run them with
//! files (no terminal): init with Shamir shares, every subset of the shares, bad shares named at
//! entry, rotation, a passphrase store gaining shares and losing its passphrase, operator dice,
//! backups exported, verified and restored, and the ceremony transcript — with its chain verified,
//! tampering found, and every output searched for the secrets of the ceremony.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use custos::secret::SecretString;
use custos::shares::text::{encode, parse};
use custos::shares::ShareValue;

const BIN: &str = env!("CARGO_BIN_EXE_custos");
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const ZOO: &str = "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong";
const BIP84_ADDRESS: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
const PASSPHRASE: &str = "ceremony passphrase 5d1e";

/// A workspace, and everything every command printed (searched for secrets at the end).
struct Ws {
    tmp: tempfile::TempDir,
    printed: std::cell::RefCell<String>,
}

impl Ws {
    fn new() -> Ws {
        let ws = Ws {
            tmp: tempfile::tempdir().unwrap(),
            printed: Default::default(),
        };
        std::fs::write(ws.path("mnemonic"), ABANDON).unwrap();
        std::fs::write(ws.path("zoo"), ZOO).unwrap();
        std::fs::write(ws.path("pass"), PASSPHRASE).unwrap();
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("CUSTOS_PASSPHRASE")
            .env_remove("CUSTOS_SHARE_FILES")
            .env_remove("CUSTOS_OPERATOR")
            .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.command();
        c.args(args);
        let out = match stdin {
            None => c.output().unwrap(),
            Some(text) => {
                c.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = c.spawn().unwrap();
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        };
        let mut printed = self.printed.borrow_mut();
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects failure with `code`; returns stderr, which must contain `needle`.
    fn fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in: {err}"
        );
        err
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

fn share_text(path: &Path) -> SecretString {
    SecretString::from_file(path).unwrap()
}

/// `--share-file F` for each file.
fn share_args(files: &[&PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["--share-file".to_owned(), f.to_str().unwrap().to_owned()])
        .collect()
}

fn with(base: &[&str], extra: &[String]) -> Vec<String> {
    base.iter()
        .map(|s| (*s).to_owned())
        .chain(extra.iter().cloned())
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every secret of a share set as it could leak: each share's value (hex) and every run of three
/// of its groups.
fn share_needles(files: &[PathBuf]) -> Vec<String> {
    let mut needles = Vec::new();
    for f in files {
        let text = share_text(f);
        needles.push(hex::encode(*parse(&text).unwrap().share.value_bytes()));
        let line = text
            .expose_secret()
            .lines()
            .find(|l| l.starts_with("cshare1"))
            .unwrap()
            .to_owned();
        let groups: Vec<&str> = line.split(' ').skip(1).collect();
        for w in groups.windows(3) {
            needles.push(w.join(" "));
            needles.push(w.concat());
        }
    }
    needles
}

fn assert_no_secret(haystack: &str, needles: &[String], what: &str) {
    for n in needles {
        assert!(!haystack.contains(n.as_str()), "{what} leaks a secret: {n}");
    }
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn every_subset_of_a_3_of_5_split_and_the_files_are_private() {
    let ws = Ws::new();
    let store = ws.p("store");
    let out = ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "3/5",
        "--share-dir",
        &ws.p("shares"),
        "--import-mnemonic-file",
        &ws.p("mnemonic"),
        "--operator",
        "alice",
    ]);
    assert!(out.contains("unsealed by 3 of 5 Shamir shares"), "{out}");
    let files = share_files(&ws.path("shares"));
    assert_eq!(files.len(), 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ws.path("shares")), 0o700);
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    // A passphrase does not open it.
    ws.fails(
        &[
            "wallet",
            "list",
            "--store",
            &store,
            "--passphrase-file",
            &ws.p("pass"),
        ],
        2,
        "no passphrase",
    );
    ws.ok(&with(
        &[
            "wallet",
            "create",
            "--store",
            &store,
            "--name",
            "hot",
            "--chain",
            "bitcoin",
            "--network",
            "mainnet",
            "--operator",
            "alice",
        ],
        &share_args(&[&files[0], &files[1], &files[2]]),
    )
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    for k in 1..=5 {
        for subset in subsets(5, k) {
            let chosen: Vec<&PathBuf> = subset.iter().map(|i| &files[*i]).collect();
            let args = with(
                &[
                    "wallet", "address", "--store", &store, "--name", "hot", "--index", "0",
                ],
                &share_args(&chosen),
            );
            let out = ws.run(&strs(&args));
            let stderr = String::from_utf8_lossy(&out.stderr);
            if k >= 3 {
                assert!(out.status.success(), "{subset:?}: {stderr}");
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), BIP84_ADDRESS);
            } else {
                // Fewer than M: nothing is combined; without a terminal the command says so.
                assert_eq!(out.status.code(), Some(2), "{subset:?}: {stderr}");
                assert!(
                    stderr.contains(&format!("{k} of 3 shares")),
                    "{subset:?}: {stderr}"
                );
                assert!(stderr.contains("--share-file"), "{stderr}");
            }
        }
    }
    assert_no_secret(&ws.printed.borrow(), &share_needles(&files), "the outputs");
}

#[test]
fn tampered_foreign_duplicate_and_mistyped_shares_are_named_at_entry() {
    let ws = Ws::new();
    let store = ws.p("store");
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "2/3",
        "--share-dir",
        &ws.p("shares"),
        "--no-display",
    ]);
    ws.ok(&[
        "init",
        "--store",
        &ws.p("other"),
        "--shares",
        "2/3",
        "--share-dir",
        &ws.p("other-shares"),
        "--no-display",
    ]);
    let files = share_files(&ws.path("shares"));
    let foreign = share_files(&ws.path("other-shares"));
    let before = ws.ok(&["shares", "info", "--store", &store, "--json"]);

    // Mistyped: one character of group 5 changed.
    let text = share_text(&files[1]);
    let line = text
        .expose_secret()
        .lines()
        .find(|l| l.starts_with("cshare1"))
        .unwrap();
    let mut groups: Vec<String> = line.split(' ').map(str::to_owned).collect();
    let c = if groups[5].starts_with('q') { "p" } else { "q" };
    groups[5].replace_range(0..1, c);
    std::fs::write(ws.path("typo"), groups.join(" ")).unwrap();
    // Forged: right store, set and threshold, a value off the polynomial.
    let parsed = parse(&text).unwrap();
    let forged = encode(
        parsed.store_tag,
        parsed.set_id,
        parsed.threshold,
        &ShareValue::from_parts(2, &[0x22; 32]).unwrap(),
    );
    std::fs::write(ws.path("forged"), forged.expose_secret()).unwrap();

    let list = |second: &Path| {
        with(
            &["wallet", "list", "--store", &store],
            &share_args(&[&files[0], &second.to_path_buf()]),
        )
    };
    let err = ws.fails(&strs(&list(&ws.path("typo"))), 1, "group 5 looks mistyped");
    assert!(err.contains("typo"), "the file is named: {err}");
    let err = ws.fails(&strs(&list(&foreign[1])), 1, "belongs to key store");
    assert!(err.contains("share 2"), "{err}");
    let err = ws.fails(
        &strs(&list(&ws.path("forged"))),
        1,
        "does not match this store's commitments",
    );
    assert!(err.contains("share 2"), "{err}");
    ws.fails(&strs(&list(&files[0])), 1, "share 1 was already given");
    // Checked alone, without unsealing: the good ones pass, each bad one is named.
    let args = with(
        &["shares", "check", "--store", &store],
        &share_args(&[&files[2], &ws.path("typo"), &foreign[0], &ws.path("forged")]),
    );
    let out = ws.run(&strs(&args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("share 3 of set"), "{stdout}");
    assert!(stdout.contains("valid for this store"), "{stdout}");
    assert_eq!(stdout.matches("REFUSED").count(), 3, "{stdout}");
    // Nothing changed, nothing was recorded.
    assert_eq!(
        ws.ok(&["shares", "info", "--store", &store, "--json"]),
        before
    );
    let report = ws.ok(&with(
        &["ceremony", "report", "--store", &store, "--json"],
        &share_args(&[&files[0], &files[2]]),
    )
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["entries"].as_array().unwrap().len(), 1, "{report}");
}

#[test]
fn rotation_retires_the_old_shares_and_says_so() {
    let ws = Ws::new();
    let store = ws.p("store");
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "3/5",
        "--share-dir",
        &ws.p("old"),
        "--no-display",
    ]);
    let old = share_files(&ws.path("old"));
    // Two shares are not a threshold: no rotation.
    let args = with(
        &[
            "shares",
            "rotate",
            "--store",
            &store,
            "--shares",
            "2/3",
            "--share-dir",
            &ws.p("new"),
        ],
        &share_args(&[&old[0], &old[4]]),
    );
    ws.fails(&strs(&args), 2, "2 of 3 shares");
    assert!(!ws.path("new").exists());
    let args = with(
        &[
            "shares",
            "rotate",
            "--store",
            &store,
            "--shares",
            "2/3",
            "--share-dir",
            &ws.p("new"),
            "--operator",
            "dave",
        ],
        &share_args(&[&old[0], &old[2], &old[4]]),
    );
    let out = ws.ok(&strs(&args));
    assert!(out.contains("retired — its shares no longer work"), "{out}");
    let new = share_files(&ws.path("new"));
    assert_eq!(new.len(), 3);
    // Every old share is refused as retired; the new ones unseal.
    for f in &old {
        let args = with(&["shares", "check", "--store", &store], &share_args(&[f]));
        let out = ws.run(&strs(&args));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("retired by a rotation: it no longer works"),
            "{stdout}"
        );
    }
    let args = with(
        &["wallet", "list", "--store", &store],
        &share_args(&[&old[0], &old[1], &old[2]]),
    );
    ws.fails(&strs(&args), 1, "retired by a rotation");
    let args = with(
        &["ceremony", "report", "--store", &store],
        &share_args(&[&new[1], &new[2]]),
    );
    let report = ws.ok(&strs(&args));
    assert!(report.contains("SHARES-ROTATE  by dave"), "{report}");
    assert!(
        report.contains("RETIRED: its shares no longer work"),
        "{report}"
    );
    assert!(
        report.contains("unsealed with shares 1, 3, 5 of set"),
        "{report}"
    );
    let mut all = old.clone();
    all.extend(new);
    assert_no_secret(&ws.printed.borrow(), &share_needles(&all), "the outputs");
}

#[test]
fn a_passphrase_store_gains_shares_and_loses_its_passphrase_only_through_them() {
    let ws = Ws::new();
    let store = ws.p("store");
    let pass = ws.p("pass");
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--passphrase-file",
        &pass,
        "--import-mnemonic-file",
        &ws.p("mnemonic"),
        "--operator",
        "alice",
    ]);
    ws.fails(
        &[
            "shares",
            "rotate",
            "--store",
            &store,
            "--shares",
            "2/3",
            "--share-dir",
            &ws.p("x"),
            "--passphrase-file",
            &pass,
        ],
        1,
        "no Shamir shares",
    );
    let out = ws.ok(&[
        "shares",
        "add",
        "--store",
        &store,
        "--shares",
        "2/3",
        "--share-dir",
        &ws.p("shares"),
        "--passphrase-file",
        &pass,
        "--operator",
        "bob",
    ]);
    assert!(out.contains("the passphrase still unseals it too"), "{out}");
    ws.fails(
        &[
            "shares",
            "add",
            "--store",
            &store,
            "--shares",
            "2/3",
            "--share-dir",
            &ws.p("again"),
            "--passphrase-file",
            &pass,
        ],
        2,
        "has shares already",
    );
    let files = share_files(&ws.path("shares"));
    // Both ways in.
    ws.ok(&[
        "store",
        "verify",
        "--store",
        &store,
        "--passphrase-file",
        &pass,
    ]);
    ws.ok(&strs(&with(
        &["store", "verify", "--store", &store],
        &share_args(&[&files[0], &files[2]]),
    )));
    // Removing the passphrase needs the shares, not the passphrase.
    ws.fails(
        &[
            "passphrase",
            "remove",
            "--store",
            &store,
            "--passphrase-file",
            &pass,
        ],
        2,
        "",
    );
    ws.ok(&strs(&with(
        &[
            "passphrase",
            "remove",
            "--store",
            &store,
            "--operator",
            "carol",
        ],
        &share_args(&[&files[1], &files[2]]),
    )));
    ws.fails(
        &[
            "store",
            "verify",
            "--store",
            &store,
            "--passphrase-file",
            &pass,
        ],
        2,
        "no passphrase",
    );
    let info = ws.ok(&["shares", "info", "--store", &store]);
    assert!(info.contains("passphrase: none"), "{info}");
    // A passphrase can be set again, by the shares.
    std::fs::write(ws.path("new-pass"), "another passphrase 77").unwrap();
    ws.ok(&strs(&with(
        &[
            "passphrase",
            "change",
            "--store",
            &store,
            "--new-passphrase-file",
            &ws.p("new-pass"),
        ],
        &share_args(&[&files[0], &files[1]]),
    )));
    ws.ok(&[
        "store",
        "verify",
        "--store",
        &store,
        "--passphrase-file",
        &ws.p("new-pass"),
    ]);
    let report = ws.ok(&[
        "ceremony",
        "report",
        "--store",
        &store,
        "--passphrase-file",
        &ws.p("new-pass"),
    ]);
    for needle in [
        "SHARES-ADD  by bob",
        "PASSPHRASE-REMOVE  by carol",
        "passphrase set",
        "unsealed with passphrase",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }
    assert!(!ws.printed.borrow().contains(PASSPHRASE));
    assert!(!ws.printed.borrow().contains("another passphrase 77"));
}

#[test]
fn operator_dice_are_mixed_in_and_recorded_only_as_a_count() {
    let ws = Ws::new();
    let dice = "3 6 1 4 2 5 5 1 6 2 3 4 1 1 6 6 2 5 3 4";
    let mut fingerprints = Vec::new();
    for name in ["a", "b"] {
        let store = ws.p(name);
        let out = ws.run_with_stdin(
            &[
                "init",
                "--store",
                &store,
                "--shares",
                "2/2",
                "--share-dir",
                &ws.p(&format!("{name}-shares")),
                "--dice",
                "--no-display",
                "--operator",
                "alice",
            ],
            Some(dice),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("operator entropy: 39 characters"),
            "{stdout}"
        );
        fingerprints.push(stdout.split("with seed ").nth(1).unwrap()[..8].to_owned());
        let files = share_files(&ws.path(&format!("{name}-shares")));
        let report = ws.ok(&strs(&with(
            &["ceremony", "report", "--store", &store, "--json"],
            &share_args(&[&files[0], &files[1]]),
        )));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        let init = &report["entries"][0]["event"];
        assert_eq!(init["operator_entropy"]["dice_rolls"], 20, "{init}");
        assert!(!report.to_string().contains("3 6 1 4"));
    }
    // The same dice twice: two different seeds (the OS randomness is never replaced).
    assert_ne!(fingerprints[0], fingerprints[1]);
    // No text, no seed.
    let out = ws.run_with_stdin(
        &[
            "init",
            "--store",
            &ws.p("c"),
            "--shares",
            "2/2",
            "--share-dir",
            &ws.p("c-shares"),
            "--dice",
        ],
        Some("\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!ws.path("c").exists());
    assert!(!ws.printed.borrow().contains(dice));
}

#[test]
fn backups_are_exported_verified_and_restored_exactly() {
    let ws = Ws::new();
    let store = ws.p("store");
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "2/3",
        "--share-dir",
        &ws.p("shares"),
        "--import-mnemonic-file",
        &ws.p("mnemonic"),
        "--operator",
        "alice",
    ]);
    let files = share_files(&ws.path("shares"));
    let sh = |a: usize, b: usize| share_args(&[&files[a], &files[b]]);
    for (name, chain, network) in [
        ("hot", "bitcoin", "mainnet"),
        ("eth", "ethereum", "mainnet"),
    ] {
        ws.ok(&strs(&with(
            &[
                "wallet",
                "create",
                "--store",
                &store,
                "--name",
                name,
                "--chain",
                chain,
                "--network",
                network,
            ],
            &sh(0, 1),
        )));
    }
    // The paper words restore the seed and both wallets; other words do not.
    let out = ws.ok(&strs(&with(
        &[
            "backup",
            "verify",
            "--store",
            &store,
            "--mnemonic-file",
            &ws.p("mnemonic"),
            "--operator",
            "erin",
        ],
        &sh(1, 2),
    )));
    assert!(
        out.contains("seed 73c5da0a: in the store, same master key"),
        "{out}"
    );
    assert!(out.contains(BIP84_ADDRESS), "{out}");
    assert!(
        out.contains("0x9858EfFD232B4033E47d90003D41EC34EcaEda94"),
        "{out}"
    );
    assert_eq!(out.matches("— matches").count(), 4, "{out}");
    let err = ws.run(&strs(&with(
        &[
            "backup",
            "verify",
            "--store",
            &store,
            "--mnemonic-file",
            &ws.p("zoo"),
        ],
        &sh(1, 2),
    )));
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stdout).contains("NOT a seed of this store"));

    // Export; the file is private and holds no secret in clear.
    let backup = ws.p("store.backup");
    let out = ws.ok(&strs(&with(
        &[
            "backup",
            "export",
            "--store",
            &store,
            "--out",
            &backup,
            "--operator",
            "frank",
        ],
        &sh(0, 2),
    )));
    assert!(out.contains("it opens with 2 of the 3 shares"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    ws.fails(
        &strs(&with(
            &["backup", "export", "--store", &store, "--out", &backup],
            &sh(0, 2),
        )),
        2,
        "exists",
    );
    let bytes = std::fs::read(&backup).unwrap();
    let entropy = bip39::Mnemonic::parse(ABANDON).unwrap().to_entropy();
    assert!(!bytes
        .windows(entropy.len())
        .any(|w| w == entropy.as_slice()));
    assert!(!String::from_utf8_lossy(&bytes).contains("abandon"));

    // It restores the store exactly: against the store, alone, and into a new directory.
    let out = ws.ok(&strs(&with(
        &["backup", "verify", "--store", &store, "--backup", &backup],
        &sh(0, 1),
    )));
    assert!(
        out.contains("ok: the backup file restores exactly"),
        "{out}"
    );
    let out = ws.ok(&strs(&with(
        &["backup", "verify", "--backup", &backup],
        &sh(1, 2),
    )));
    assert!(out.contains("restores store"), "{out}");
    let restored = ws.p("restored");
    let out = ws.ok(&strs(&with(
        &[
            "init",
            "--store",
            &restored,
            "--from-backup",
            &backup,
            "--operator",
            "grace",
        ],
        &sh(0, 2),
    )));
    assert!(out.contains("and verified"), "{out}");
    assert!(out.contains(BIP84_ADDRESS), "{out}");
    let addr = ws.ok(&strs(&with(
        &[
            "wallet", "address", "--store", &restored, "--name", "hot", "--index", "0",
        ],
        &sh(1, 2),
    )));
    assert_eq!(addr.trim(), BIP84_ADDRESS);
    let report = ws.ok(&strs(&with(
        &["ceremony", "report", "--store", &restored],
        &sh(0, 1),
    )));
    assert!(report.contains("RESTORE  by grace"), "{report}");
    assert!(report.contains("chain       INTACT"), "{report}");

    // A wallet made after the export: the backup no longer restores the store exactly.
    ws.ok(&strs(&with(
        &[
            "wallet",
            "create",
            "--store",
            &store,
            "--name",
            "late",
            "--chain",
            "bitcoin",
            "--network",
            "testnet",
        ],
        &sh(0, 1),
    )));
    let out = ws.run(&strs(&with(
        &["backup", "verify", "--store", &store, "--backup", &backup],
        &sh(0, 1),
    )));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wallet 'late' is not in the backup"));

    // A damaged backup restores nothing, and leaves no directory behind.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(ws.path("damaged.backup"), &damaged).unwrap();
    ws.fails(
        &strs(&with(
            &[
                "init",
                "--store",
                &ws.p("r2"),
                "--from-backup",
                &ws.p("damaged.backup"),
            ],
            &sh(0, 1),
        )),
        1,
        "checksum does not match",
    );
    assert!(!ws.path("r2").exists());
    // Restoring with another store's shares: refused at entry, directory removed.
    ws.ok(&[
        "init",
        "--store",
        &ws.p("other"),
        "--shares",
        "2/2",
        "--share-dir",
        &ws.p("other-shares"),
        "--no-display",
    ]);
    let other = share_files(&ws.path("other-shares"));
    ws.fails(
        &strs(&with(
            &["init", "--store", &ws.p("r3"), "--from-backup", &backup],
            &share_args(&[&other[0], &other[1]]),
        )),
        1,
        "belongs to key store",
    );
    assert!(!ws.path("r3").exists());

    // The transcript: verified, every ceremony in order, nothing secret.
    let report = ws.ok(&strs(&with(
        &["ceremony", "report", "--store", &store, "--json"],
        &sh(1, 2),
    )));
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(json["chain"]["status"], "intact");
    let events: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "init",
            "wallet-create",
            "wallet-create",
            "backup-verify",
            "backup-export",
            "backup-verify",
            "wallet-create"
        ]
    );
    let mut needles = share_needles(&files);
    needles.push(ABANDON.to_owned());
    needles.push(hex::encode(&entropy));
    assert_no_secret(&ws.printed.borrow(), &needles, "the outputs");
}

#[test]
fn the_transcript_finds_tampering() {
    let ws = Ws::new();
    let store = ws.p("store");
    ws.ok(&[
        "init",
        "--store",
        &store,
        "--shares",
        "2/2",
        "--share-dir",
        &ws.p("shares"),
        "--no-display",
        "--operator",
        "alice",
    ]);
    let files = share_files(&ws.path("shares"));
    let sh = share_args(&[&files[0], &files[1]]);
    ws.ok(&strs(&with(
        &[
            "wallet",
            "create",
            "--store",
            &store,
            "--name",
            "hot",
            "--chain",
            "bitcoin",
            "--network",
            "regtest",
            "--operator",
            "bob",
        ],
        &sh,
    )));
    let text = ws.ok(&strs(&with(
        &["ceremony", "report", "--store", &store],
        &sh,
    )));
    assert!(text.contains("INTACT: 2 entries"), "{text}");
    assert!(text.contains("custodian of share 2"), "{text}");
    // Unverified, without unsealing: printed under a warning.
    let out = ws.ok(&["ceremony", "report", "--store", &store, "--unverified"]);
    assert!(out.contains("NOT VERIFIED"), "{out}");

    // Someone with write access but without the seal edits the operator of entry 2.
    {
        let db = sled::Config::new()
            .path(ws.path("store"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        let id = "ceremony/00000000000000000002";
        let raw = db.get(id).unwrap().unwrap().to_vec();
        let mut body = raw[..raw.len() - 8].to_vec();
        let pos = body.windows(3).position(|w| w == b"bob").unwrap();
        body[pos..pos + 3].copy_from_slice(b"eve");
        // A correct check value (it is not a secret), so only the chain can tell.
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update((id.len() as u64).to_be_bytes());
        h.update(id.as_bytes());
        h.update(&body);
        body.extend_from_slice(&h.finalize()[..8]);
        db.insert(id, body).unwrap();
        db.flush().unwrap();
    }
    let out = ws.run(&strs(&with(
        &["ceremony", "report", "--store", &store],
        &sh,
    )));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("BROKEN at entry 2: entry 2: mac mismatch"),
        "{stdout}"
    );
    ws.fails(
        &strs(&with(&["store", "verify", "--store", &store], &sh)),
        1,
        "ceremony log broken",
    );
}
