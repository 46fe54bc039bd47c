//! The HSM ceremonies in the ceremony log, on a SoftHSM2 token made by the project's script:
//! `custos hsm import`, `keygen` and `unseal-slot add|remove` each append an entry naming the
//! operator and the public facts (token, module, labels, paths, public keys, counts), checked
//! against what `pkcs11-tool` — a PKCS#11 client that is not Custos — reads from the token; the
//! transcript's chain verifies; the user and SO PINs, the passphrase and the shares appear
//! nowhere: not in the transcript, not in any output, not in the store's files. A store unsealed
//! only by Shamir shares runs the same ceremonies, and a refused ceremony records nothing.

#[path = "hsm_ceremony_support/mod.rs"]
mod support;

use support::{
    contains, entries, keys_sha256, listed_keys_match, p, share_files, Ws, MODULE, PASSPHRASE,
};

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
