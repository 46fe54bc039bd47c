//! `custos audit verify` and `custos audit tail`, run as an operator would, on a state directory
//! the signing core wrote.

use std::path::Path;
use std::process::{Command, Output};

use custos::keys::{Chain, MnemonicSecret, Network, Purpose};
use custos::keystore::{KdfParams, KeyStore};
use custos::secret::SecretString;
use custos::signing::contract::{Principal, PrincipalSource, SignerCore};
use custos::signing::contract::{SignPayload, SignRequest};
use custos::signing::{CoreConfig, SigningCore};

const PASS: &str = "audit test passphrase";
const MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

const POLICY: &str = r#"
[policy]
name = "audit-cli"
[roles]
signer = ["spiffe://t/payouts"]
admin = ["admin.t"]
[assets.ethereum.sepolia]
native = { symbol = "ETH", decimals = 18 }
[[rules]]
name = "messages"
effect = "allow"
roles = ["signer"]
kinds = ["message"]
"#;

fn custos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .expect("run custos")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A store, a policy, and a state directory holding unseal, allow, signed and seal records.
async fn prepare(dir: &Path) {
    let store = dir.join("store");
    let pass = SecretString::new(PASS.into());
    let ks = KeyStore::create(
        &store,
        &pass,
        KdfParams::unsafe_weak(64, 1).unwrap(),
        &MnemonicSecret::parse(&SecretString::new(MNEMONIC.into())).unwrap(),
        &SecretString::new(String::new()),
    )
    .unwrap();
    ks.unseal(&pass)
        .unwrap()
        .create_wallet(
            "eth",
            Network::parse(Chain::Ethereum, "sepolia").unwrap(),
            Purpose::Bip44,
            0,
        )
        .unwrap();
    drop(ks);
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.join("pass"), PASS).unwrap();
    let core = SigningCore::open(CoreConfig {
        store_dir: store,
        state_dir: dir.join("state"),
        policy_path: dir.join("policy.toml"),
        ..CoreConfig::new(Default::default(), Default::default(), Default::default())
    })
    .unwrap();
    core.unseal_with_passphrase(&pass).unwrap();
    let payer = Principal::new("spiffe://t/payouts", PrincipalSource::SanUri);
    core.sign(
        &payer,
        SignRequest {
            request_id: "m-1".into(),
            wallet: "eth".into(),
            payload: SignPayload::PersonalMessage {
                message: b"hello auditors".to_vec(),
                address_index: None,
            },
        },
    )
    .await
    .unwrap();
    core.seal(&Principal::new("admin.t", PrincipalSource::SanDns))
        .await
        .unwrap();
}

#[tokio::test]
async fn operator_verifies_and_tails_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path()).await;
    let d = |p: &str| dir.path().join(p).display().to_string();
    let verify = || {
        custos(&[
            "audit",
            "verify",
            "--state",
            &d("state"),
            "--store",
            &d("store"),
            "--passphrase-file",
            &d("pass"),
        ])
    };

    let out = verify();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout).trim().to_owned();
    let head = line
        .strip_prefix("audit chain intact: 4 records, head 4:")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(head.len(), 64, "{line}");
    assert!(head.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");

    let out = custos(&["audit", "tail", "--state", &d("state"), "-n", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("sign.signed") && lines[0].contains("request=\"m-1\""));
    assert!(lines[1].contains("seal by admin.t"));

    let out = custos(&["audit", "tail", "--state", &d("state"), "--json"]);
    let events: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
        .collect();
    assert_eq!(
        events,
        [
            "\"unseal\"",
            "\"sign.allow\"",
            "\"sign.signed\"",
            "\"seal\""
        ]
    );

    // Tamper with record 2 behind the signer's back.
    {
        use custos::state::{State, Tree};
        let state = State::open_sled(&dir.path().join("state")).unwrap();
        let k = 2u64.to_be_bytes();
        let mut v = state.engine().get_raw(Tree::Audit, &k).unwrap().unwrap();
        let body = String::from_utf8_lossy(&v[32..]).replace("m-1", "m-2");
        v.truncate(32);
        v.extend_from_slice(body.as_bytes());
        state
            .engine()
            .transact_raw(&mut |tx| tx.insert(Tree::Audit, &k, v.clone()).map(|_| ()))
            .unwrap();
        state.flush().unwrap();
    }
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("record 2: mac mismatch"),
        "{}",
        text(&out.stderr)
    );

    // A wrong passphrase is refused before anything is claimed.
    std::fs::write(dir.path().join("wrong"), "nope").unwrap();
    let out = custos(&[
        "audit",
        "verify",
        "--state",
        &d("state"),
        "--store",
        &d("store"),
        "--passphrase-file",
        &d("wrong"),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn operator_verifies_prunes_and_accepts_a_rollback_of_the_state() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path()).await;
    let d = |p: &str| dir.path().join(p).display().to_string();
    let with_store = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        for extra in [
            "--state",
            &d("state"),
            "--store",
            &d("store"),
            "--passphrase-file",
            &d("pass"),
        ] {
            all.push(extra.to_owned());
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        custos(&refs)
    };

    let out = with_store(&["state", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("state intact"), "{stdout}");
    assert!(stdout.contains("anchored head        4:"), "{stdout}");

    // The head an outbox entry or an earlier verify printed is found in the chain; a made-up one
    // is not.
    let out = with_store(&["audit", "verify"]);
    let line = text(&out.stdout);
    let head = line.trim().rsplit("head ").next().unwrap().to_owned();
    let out = with_store(&["audit", "verify", "--expect-head", &head]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let forged = format!("3:{}", "ab".repeat(32));
    let out = with_store(&["audit", "verify", "--expect-head", &forged]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("expected head"),
        "{}",
        text(&out.stderr)
    );

    // A record edited behind the signer's back is listed by tree and key.
    {
        use custos::state::{State, Tree};
        let flip = || {
            let state = State::open_sled(&dir.path().join("state")).unwrap();
            let entries = state
                .engine()
                .scan_raw(&custos::state::engine::Scan::all(Tree::Requests, 10))
                .unwrap();
            let (k, mut v) = entries[0].clone();
            let last = v.len() - 2;
            v[last] ^= 0x01;
            state
                .engine()
                .transact_raw(&mut |tx| tx.insert(Tree::Requests, &k, v.clone()).map(|_| ()))
                .unwrap();
            state.flush().unwrap();
        };
        flip();
        let out = with_store(&["state", "verify"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("BAD  requests/"), "{stdout}");
        assert!(stdout.contains("m-1"), "{stdout}");
        flip(); // put it back
    }

    // Pruning removes the finished request; the chain stays verifiable.
    let out = with_store(&["state", "prune", "--before", "2999-01-01"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed 1 of 1"),
        "{}",
        text(&out.stdout)
    );
    let out = with_store(&["state", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = with_store(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Nothing to accept while the state is not behind its anchor.
    let out = with_store(&["state", "accept-rollback", "--operator", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nothing to accept"),
        "{}",
        text(&out.stdout)
    );
}
