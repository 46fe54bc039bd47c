//! A whole custody ceremony, scripted with the built binary as custodians and operators would run
//! it: a store initialised with 2-of-3 Shamir shares (and operator dice), a wallet, a real
//! `custos serve` started sealed, custodians unsealing it one share each — from the CLI and over
//! raw gRPC, each with their own client certificate —, bad shares refused by name on the way,
//! a wallet created on the server, a seal, a restart and a second unseal, then offline: a share
//! rotation, a backup exported, verified against the paper words and restored into another
//! directory, the audit chain verified, and the ceremony transcript read and its chain verified.
//! Everything every command printed, the server's log and the transcript are searched for the
//! ceremony's secrets (shares, mnemonic, dice).

#[allow(dead_code)]
mod served;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use custos::secret::SecretString;
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::{unseal_request, CreateWalletRequest, SealState, UnsealRequest};
use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use custos::shares::text::parse;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use served::BIN;

const C1: &str = "spiffe://custody.example/custodians/c1";
const C2: &str = "spiffe://custody.example/custodians/c2";
const C3: &str = "spiffe://custody.example/custodians/c3";
const DICE: &str = "6 2 5 1 3 4 4 2 6 1 5 3 2 2 6 4 1 5 3 6 2 4 1 1 5";

fn policy() -> String {
    format!(
        r#"
[policy]
name = "custody-ceremony"
[roles]
admin = ["ops-admin.custody.example"]
custodian = ["{C1}", "{C2}", "{C3}"]
signer = ["spiffe://custody.example/payouts"]
[assets.bitcoin.regtest]
native = {{ symbol = "BTC", decimals = 8 }}
[[rules]]
name = "payouts"
effect = "allow"
roles = ["signer"]
wallets = ["btc-hot"]
kinds = ["transfer"]
assets = ["BTC"]
destinations = "any"
"#
    )
}

/// Every command run, with what it printed (searched for secrets at the end).
struct Ceremony {
    dir: tempfile::TempDir,
    env: PathBuf,
    printed: String,
}

impl Ceremony {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn client(&self, name: &str) -> String {
        self.env
            .join(format!("client-{name}.toml"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn store(&self) -> String {
        self.env.join("store").to_str().unwrap().to_owned()
    }

    fn run_in<S: AsRef<str>>(&mut self, args: &[S], stdin: Option<&str>, record: bool) -> Output {
        let mut c = Command::new(BIN);
        c.args(args.iter().map(AsRef::as_ref))
            .env_remove("CUSTOS_PASSPHRASE")
            .env_remove("CUSTOS_SHARE_FILES")
            .env_remove("CUSTOS_OPERATOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = c.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if record {
            self.printed.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        self.printed.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    fn ok<S: AsRef<str>>(&mut self, args: &[S]) -> String {
        let out = self.run_in(args, None, true);
        let shown: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        assert!(
            out.status.success(),
            "{shown:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn refused(&mut self, args: &[&str], needle: &str) -> String {
        let out = self.run_in(args, None, true);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        err
    }
}

fn share_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// Points every client configuration at `port`.
fn point_clients(env: &Path, from: &str, port: u16) {
    for entry in std::fs::read_dir(env).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("client-") && name.ends_with(".toml") {
            let config = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, config.replace(from, &format!("localhost:{port}\""))).unwrap();
        }
    }
}

fn stop(mut child: Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
}

async fn channel(env: &Path, port: u16, name: &str) -> tonic::transport::Channel {
    let tls = env.join("tls");
    let material = TlsMaterial::load(
        &tls.join(format!("clients/{name}.pem")),
        &tls.join(format!("clients/{name}.key")),
        &tls.join("ca.pem"),
    )
    .unwrap();
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(&material, "localhost"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health(env: &Path, port: u16) -> ServingStatus {
    HealthClient::new(channel(env, port, "custodians-c1").await)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_whole_ceremony_with_custodians_a_server_a_rotation_and_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = served::dev_env(dir.path(), Some(&policy()));
    let mut c = Ceremony {
        dir,
        env: env.clone(),
        printed: String::new(),
    };

    // 1. Init with 2-of-3 shares and operator dice (the dev env's passphrase store replaced),
    //    the mnemonic shown once for the paper backup.
    std::fs::remove_dir_all(env.join("store")).unwrap();
    let store = c.store();
    let shares_dir = c.p("shares");
    let out = c.run_in(
        &[
            "init",
            "--store",
            &store,
            "--shares",
            "2/3",
            "--share-dir",
            &shares_dir,
            "--dice",
            "--operator",
            "alice",
        ],
        Some(DICE),
        false,
    );
    let init = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{init}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: Vec<String> = init
        .lines()
        .skip_while(|l| !l.starts_with("Write down these 24 words"))
        .skip(1)
        .take(6)
        .flat_map(|l| {
            l.split_whitespace()
                .filter(|w| !w.ends_with('.'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(words.len(), 24, "{init}");
    let mnemonic = words.join(" ");
    std::fs::write(c.p("paper-words"), &mnemonic).unwrap();
    let fingerprint = init.split("with seed ").nth(1).unwrap()[..8].to_owned();
    let old = share_files(Path::new(&shares_dir));
    assert_eq!(old.len(), 3);
    let sh = |files: &[&PathBuf]| -> Vec<String> {
        files
            .iter()
            .flat_map(|f| ["--share-file".to_owned(), s(f)])
            .collect()
    };
    let args = |base: &[&str], extra: Vec<String>| -> Vec<String> {
        base.iter().map(|x| (*x).to_owned()).chain(extra).collect()
    };

    // 2. The wallet the policy names, created with two custodians' shares.
    let a = args(
        &[
            "wallet",
            "create",
            "--store",
            &store,
            "--name",
            "btc-hot",
            "--chain",
            "bitcoin",
            "--network",
            "regtest",
            "--operator",
            "alice",
        ],
        sh(&[&old[0], &old[1]]),
    );
    let out = c.ok(&a);
    let first_address = out
        .rsplit("first address ")
        .next()
        .unwrap()
        .trim()
        .to_owned();

    // 3. The server, started sealed (no passphrase to start with).
    let config = std::fs::read_to_string(env.join("custos.toml")).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("passphrase_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(env.join("custos.toml"), config).unwrap();
    let log = env.join("serve.log");
    let (child, port) = served::spawn_serve(&env, &log);
    point_clients(&env, "localhost:0\"", port);
    let status = c.ok(&["status", "--config", &c.client("custodians-c1")]);
    assert!(status.contains("seal state:   sealed"), "{status}");
    assert!(
        status.contains("unsealed by:  any 2 of 3 Shamir shares"),
        "{status}"
    );
    assert_eq!(health(&env, port).await, ServingStatus::NotServing);

    // 4. Custodian 1 gives their share from the CLI.
    let out = c.ok(&[
        "unseal",
        "--config",
        &c.client("custodians-c1"),
        "--share-file",
        &s(&old[0]),
    ]);
    assert!(out.contains("share accepted: 1 of 2 shares given"), "{out}");
    assert!(out.contains("(indexes 1)"), "{out}");
    // Bad shares are refused by name, and the progress stays: mistyped, foreign, duplicate; a
    // principal that is no custodian may not even try.
    let text = SecretString::from_file(&old[1]).unwrap();
    let line = text
        .expose_secret()
        .lines()
        .find(|l| l.starts_with("cshare1"))
        .unwrap();
    let mut groups: Vec<String> = line.split(' ').map(str::to_owned).collect();
    let ch = if groups[9].starts_with('q') { "p" } else { "q" };
    groups[9].replace_range(0..1, ch);
    std::fs::write(c.p("typo"), groups.join(" ")).unwrap();
    c.refused(
        &[
            "unseal",
            "--config",
            &c.client("custodians-c2"),
            "--share-file",
            &c.p("typo"),
        ],
        "group 9 looks mistyped",
    );
    let other_store = c.p("other-store");
    let other_shares = c.p("other-shares");
    c.ok(&[
        "init",
        "--store",
        &other_store,
        "--shares",
        "2/3",
        "--share-dir",
        &other_shares,
        "--no-display",
    ]);
    let foreign = share_files(Path::new(&other_shares));
    c.refused(
        &[
            "unseal",
            "--config",
            &c.client("custodians-c2"),
            "--share-file",
            &s(&foreign[1]),
        ],
        "[share-foreign-store]",
    );
    c.refused(
        &[
            "unseal",
            "--config",
            &c.client("custodians-c2"),
            "--share-file",
            &s(&old[0]),
        ],
        "share 1 was already given",
    );
    c.refused(
        &[
            "unseal",
            "--config",
            &c.client("payouts"),
            "--share-file",
            &s(&old[1]),
        ],
        "PERMISSION_DENIED",
    );
    let status = c.ok(&["status", "--config", &c.client("custodians-c2")]);
    assert!(
        status.contains("unsealing: 1 of 2 shares given (any 2 of 3) (indexes 1)"),
        "{status}"
    );
    assert!(
        status.contains("or the shares given are forgotten"),
        "{status}"
    );

    // 5. Custodian 3 completes it over raw gRPC with their own certificate.
    let share3 = SecretString::from_file(&old[2]).unwrap();
    let reply = AdminClient::new(channel(&env, port, "custodians-c3").await)
        .unseal(UnsealRequest {
            secret: Some(unseal_request::Secret::Share(share3.expose_secret().into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.seal_state, SealState::Unsealed as i32);
    assert_eq!(health(&env, port).await, ServingStatus::Serving);
    // A custodian cannot create wallets; the admin can (recorded on the server).
    let request = CreateWalletRequest {
        name: "btc-cold".into(),
        chain: custos::service::proto::Chain::Bitcoin as i32,
        network: "regtest".into(),
        purpose: 84,
        account: 1,
        seed: String::new(),
    };
    let denied = AdminClient::new(channel(&env, port, "custodians-c3").await)
        .create_wallet(request.clone())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    AdminClient::new(channel(&env, port, "ops-admin").await)
        .create_wallet(request)
        .await
        .unwrap();
    let out = c.ok(&["seal", "--config", &c.client("ops-admin")]);
    assert!(out.contains("sealed"), "{out}");

    // 6. Restart: sealed again; two other custodians unseal it from the CLI.
    stop(child);
    let (child, new_port) = served::spawn_serve(&env, &log);
    point_clients(&env, &format!("localhost:{port}\""), new_port);
    let out = c.ok(&[
        "unseal",
        "--config",
        &c.client("custodians-c2"),
        "--share-file",
        &s(&old[1]),
    ]);
    assert!(out.contains("1 of 2 shares given"), "{out}");
    let out = c.ok(&[
        "unseal",
        "--config",
        &c.client("custodians-c3"),
        "--share-file",
        &s(&old[2]),
    ]);
    assert_eq!(out.trim(), "unsealed");
    let status = c.ok(&["status", "--config", &c.client("ops-admin")]);
    assert!(status.contains("seal state:   unsealed"), "{status}");
    stop(child);
    let server_log = std::fs::read_to_string(&log).unwrap();
    c.printed.push_str(&server_log);

    // 7. Offline: rotation to 3 of 4 (old shares stop working), a backup, its checks, a restore.
    let new_dir = c.p("new-shares");
    let a = args(
        &[
            "shares",
            "rotate",
            "--store",
            &store,
            "--shares",
            "3/4",
            "--share-dir",
            &new_dir,
            "--operator",
            "bob",
        ],
        sh(&[&old[0], &old[2]]),
    );
    c.ok(&a);
    let new = share_files(Path::new(&new_dir));
    assert_eq!(new.len(), 4);
    let a = args(&["shares", "check", "--store", &store], sh(&[&old[1]]));
    let out = c.run_in(&a, None, true);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retired by a rotation"));
    let three = sh(&[&new[3], &new[0], &new[2]]);
    let backup = c.p("store.backup");
    let a = args(
        &[
            "backup",
            "export",
            "--store",
            &store,
            "--out",
            &backup,
            "--operator",
            "carol",
        ],
        three.clone(),
    );
    c.ok(&a);
    let a = args(
        &[
            "backup",
            "verify",
            "--store",
            &store,
            "--mnemonic-file",
            &c.p("paper-words"),
            "--operator",
            "dana",
        ],
        three.clone(),
    );
    let out = c.ok(&a);
    assert!(out.contains(&first_address), "{out}");
    assert!(
        out.contains("wallet btc-cold"),
        "the server's wallet too: {out}"
    );
    let a = args(
        &[
            "backup",
            "verify",
            "--store",
            &store,
            "--backup",
            &backup,
            "--operator",
            "dana",
        ],
        three.clone(),
    );
    c.ok(&a);
    let restored = c.p("restored");
    let a = args(
        &[
            "init",
            "--store",
            &restored,
            "--from-backup",
            &backup,
            "--operator",
            "erin",
        ],
        sh(&[&new[1], &new[2], &new[3]]),
    );
    let out = c.ok(&a);
    assert!(out.contains("and verified"), "{out}");
    assert!(out.contains(&first_address), "{out}");
    let a = args(
        &[
            "wallet", "address", "--store", &restored, "--name", "btc-hot", "--index", "0",
        ],
        three.clone(),
    );
    assert_eq!(c.ok(&a).trim(), first_address);

    // 8. The server's audit chain: intact, and it says who gave which share.
    let a = args(
        &[
            "audit",
            "verify",
            "--state",
            &s(&env.join("state")),
            "--store",
            &store,
        ],
        three.clone(),
    );
    let out = c.ok(&a);
    assert!(out.contains("audit chain intact"), "{out}");
    let tail = c.ok(&[
        "audit",
        "tail",
        "--state",
        &s(&env.join("state")),
        "-n",
        "50",
    ]);
    assert!(tail.contains(&format!("share 1 by {C1}")), "{tail}");
    assert!(tail.contains(&format!("share 3 by {C3}")), "{tail}");
    assert!(tail.contains("share-foreign-store"), "{tail}");

    // 9. The transcript: chain verified, every ceremony in order, who gave which share.
    let a = args(
        &["ceremony", "report", "--store", &store, "--json"],
        three.clone(),
    );
    let json: serde_json::Value = serde_json::from_str(&c.ok(&a)).unwrap();
    assert_eq!(json["chain"]["status"], "intact", "{json}");
    let entries = json["entries"].as_array().unwrap();
    let events: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "init",
            "wallet-create",
            "unseal",
            "wallet-create",
            "seal",
            "unseal",
            "shares-rotate",
            "backup-export",
            "backup-verify",
            "backup-verify"
        ],
        "{json}"
    );
    assert_eq!(
        entries[0]["event"]["seed"]["fingerprint"],
        fingerprint.as_str()
    );
    assert_eq!(entries[0]["event"]["operator_entropy"]["dice_rolls"], 25);
    let who: Vec<(String, u64)> = entries[2]["event"]["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["principal"].as_str().unwrap().to_owned(),
                c["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(who, vec![(C1.to_owned(), 1), (C3.to_owned(), 3)]);
    assert_eq!(entries[3]["operator"], "ops-admin.custody.example");
    assert_eq!(entries[6]["event"]["retired"]["threshold"], 2);
    assert_eq!(entries[6]["event"]["share_set"]["count"], 4);
    let a = args(&["ceremony", "report", "--store", &store], three);
    let text = c.ok(&a);
    assert!(text.contains("chain       INTACT: 10 entries"), "{text}");
    assert!(text.contains(&format!("share 3 given by {C3}")), "{text}");
    assert!(text.contains("custodian of share 4"), "{text}");

    // 10. No secret anywhere: not in any output (the one-time mnemonic display aside), the
    //     server's log, the transcript or the audit chain.
    let mut needles: Vec<String> = vec![mnemonic.clone(), DICE.to_owned(), DICE.replace(' ', "")];
    needles.extend(words.windows(3).map(|w| w.join(" ")));
    for f in old.iter().chain(new.iter()) {
        let text = SecretString::from_file(f).unwrap();
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
    for n in &needles {
        assert!(
            !c.printed.contains(n.as_str()),
            "a secret was printed or logged: {n}"
        );
    }
}
