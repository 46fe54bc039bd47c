//! `custos demo`, run as a newcomer runs it (with the hidden cheap-KDF variable so the test is
//! fast): it exits 0, prints the lines that show each step did its job — offline, then through
//! the gRPC signer with the example policy — and cleans up after itself unless `--dir` asks to
//! keep its files.

use std::path::Path;
use std::process::{Command, Output};

/// The first address of "abandon ×11 about" at m/44'/60'/0'/0/0 (published by every wallet).
const ETH_ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";

fn demo(tmp: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("demo")
        .args(args)
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "64")
        .env("TMPDIR", tmp)
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
}

/// The value of the first `  label   value` line.
fn value<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{text}"))
}

#[test]
fn demo_runs_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), &[]);
    let text = ok(&out);

    // Demo keys and passphrase are announced as such.
    assert!(text.contains("DEMO KEYS"), "{text}");
    assert!(text.contains("Never do this in production"), "{text}");
    assert!(text.contains("[19/19]"), "{text}");
    assert!(text.trim_end().ends_with("Every step passed."), "{text}");

    // Wallets, with their public data.
    assert_eq!(value(&text, "address 0"), ETH_ADDRESS);
    assert!(value(&text, "receive desc").starts_with("wpkh([73c5da0a/84'/1'/0']tpub"));
    assert!(value(&text, "xpub").starts_with("vpub"), "{text}");

    // The Bitcoin payment: intent with verified change, a raw tx and a txid.
    assert!(text.contains("(verified: ours)"), "{text}");
    assert!(text.contains("(20.000 sat/vB)"), "{text}");
    let txid = value(&text, "txid");
    assert_eq!(txid.len(), 64, "{txid}");
    assert!(txid.bytes().all(|b| b.is_ascii_hexdigit()), "{txid}");
    let raw = value(&text, "raw tx");
    assert!(raw.starts_with("02000000000101"), "a segwit v2 tx: {raw}");

    // Fake change is counted as a destination.
    assert!(
        text.contains("fake change is an external destination: bcrt1q"),
        "{text}"
    );
    assert!(
        text.contains("the intent sends 0.0099718 BTC, not 0.0025 BTC"),
        "{text}"
    );

    // Ethereum: both transactions and the message recover to the wallet's address.
    let recovered = format!("recovered signer {ETH_ADDRESS} equals eth-hot's address");
    assert_eq!(text.matches(&recovered).count(), 3, "{text}");
    assert!(
        text.contains("token_transfer 25 USDC to 0x3535353535353535353535353535353535353535"),
        "{text}"
    );
    assert!(value(&text, "tx hash").starts_with("0x"), "{text}");

    // Signed inside a SoftHSM2 token (installed by .ci/install-tools): same signer, the key
    // sensitive and unreadable.
    assert!(
        value(&text, "hsm key").starts_with(
            "custos/eth-hot/0/0: secp256k1, sensitive=true, extractable=false, CKA_VALUE unreadable"
        ),
        "{text}"
    );
    assert_eq!(
        value(&text, "hsm signer"),
        format!("{ETH_ADDRESS} equals eth-hot's address")
    );
    assert!(value(&text, "signed in hsm").starts_with("0x02"), "{text}");

    // The refused payload, with its precise reason.
    assert!(
        text.contains(
            "chain id mismatch: the wallet is on chain 11155111, the payload is for chain 1"
        ),
        "{text}"
    );

    // Through the server, over loopback mutual TLS, with the example policy.
    let listening = value(&text, "listening");
    assert!(listening.starts_with("127.0.0.1:"), "{listening}");
    assert!(listening.ends_with("(mutual TLS)"), "{listening}");
    assert!(text.contains("Admin.Status   as ops-admin.exchange.example: Unsealed"));
    assert!(text.contains("MAINNET"), "{text}");
    assert!(
        text.contains(
            "btc-hot       bitcoin mainnet m/84'/0'/0'  bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        ),
        "{text}"
    );
    assert!(
        text.contains("decision       Allow by rule 'btc hot withdrawals'"),
        "{text}"
    );
    assert!(
        text.contains("decision       Allow by rule 'eth hot withdrawals'"),
        "{text}"
    );
    assert!(text.contains("same transaction, signed and counted once"));
    // Refused by a limit, with the stable code.
    assert!(
        text.contains("refused        PERMISSION_DENIED [limit.per_tx]"),
        "{text}"
    );
    assert_eq!(value(&text, "custos-code"), "limit.per_tx");
    // Two officers approve the treasury move; the requester cannot.
    assert!(
        text.contains("decision       NeedsApproval by rule 'treasury moves'"),
        "{text}"
    );
    assert!(
        text.contains("treasury       approves its own request: PERMISSION_DENIED"),
        "{text}"
    );
    // The policy is signed by compliance; each officer's vote is a signature by its own key,
    // over the decoded request it shows.
    assert!(
        text.contains(
            "compliance     policy signed by compliance-1, compliance-2 (2 of 2 required)"
        ),
        "{text}"
    );
    assert!(
        text.contains("officer alice  signs with ed25519:"),
        "{text}"
    );
    assert!(text.contains("amount: 100 ETH"), "{text}");
    assert!(
        text.contains("-> PendingApproval, 1 of 2 signed approvals"),
        "{text}"
    );
    assert!(text.contains("officer bob    signs with p256:"), "{text}");
    assert!(text.contains("-> Signed"), "{text}");
    assert_eq!(
        text.matches("                 signature ").count(),
        2,
        "{text}"
    );
    // The proof, verified offline.
    assert!(text.contains("treasury-1.proof.json"), "{text}");
    assert!(
        text.contains(
            "2 of the 2 required approvals are valid signed votes by holders of approver"
        ),
        "{text}"
    );
    assert!(
        text.contains("approve signed by ed25519:"),
        "the audit carries the vote: {text}"
    );
    // The broadcaster receives the three signed transactions, in order.
    assert!(value(&text, "entry 1").starts_with("withdrawal-1  btc-hot"));
    assert!(value(&text, "entry 2").starts_with("withdrawal-2  eth-hot"));
    assert!(value(&text, "entry 3").starts_with("treasury-1    eth-treasury"));
    assert!(text.contains("acked 3 of 3"), "{text}");
    // The audit chain verifies.
    assert!(
        value(&text, "audit chain").starts_with("intact: "),
        "{text}"
    );
    assert!(text.contains("quorum.met"), "{text}");

    // The temporary directory is gone.
    let dir = value(&text, "directory")
        .split(" (")
        .next()
        .unwrap()
        .to_owned();
    assert!(dir.starts_with(tmp.path().to_str().unwrap()), "{dir}");
    assert!(!Path::new(&dir).exists(), "{dir} was left behind");
}

#[test]
fn demo_dir_keeps_the_files_and_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let text = ok(&demo(tmp.path(), &["--dir", dir.to_str().unwrap()]));
    assert!(text.contains("custos psbt inspect --store"), "{text}");
    for file in [
        "store",
        "passphrase",
        "payment.psbt",
        "fake-change.psbt",
        "eth-transfer.json",
        "erc20-transfer.json",
        "wrong-chain.json",
        "tokens.toml",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }

    // The kept payment PSBT replays through `psbt inspect` with the same intent.
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "psbt", "inspect", "--wallet", "btc-hot", "--json", "--store",
        ])
        .arg(dir.join("store"))
        .arg("--passphrase-file")
        .arg(dir.join("passphrase"))
        .arg("--psbt")
        .arg(dir.join("payment.psbt"))
        .output()
        .unwrap();
    let intent: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(intent["amount"], "250000");
    assert_eq!(intent["fee"], "2820");

    // A second run into the same directory refuses, and leaves it as it was.
    let out = demo(tmp.path(), &["--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(dir.join("payment.psbt").exists());
}
