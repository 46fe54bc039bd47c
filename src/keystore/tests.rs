//! Unit tests of the store as a whole (temporary directories, cheap KDF parameters).

use super::*;
use crate::keys::{Network, Purpose};

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn pass(s: &str) -> SecretString {
    SecretString::new(s.into())
}

fn weak() -> KdfParams {
    KdfParams::unsafe_weak(64, 1).unwrap()
}

fn abandon() -> MnemonicSecret {
    MnemonicSecret::parse(&pass(ABANDON)).unwrap()
}

fn new_store(dir: &Path) -> KeyStore {
    KeyStore::create(dir, &pass("pw"), weak(), &abandon(), &pass("")).unwrap()
}

#[test]
fn create_unseal_and_known_wallets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = new_store(&dir);
    let unsealed = store.unseal(&pass("pw")).unwrap();
    assert_eq!(
        unsealed.seed_ids().unwrap(),
        vec![SeedId("73c5da0a".into())]
    );
    let main = Network::Bitcoin(bitcoin::Network::Bitcoin);
    let w = unsealed
        .create_wallet("hot", main, Purpose::Bip84, 0)
        .unwrap();
    assert_eq!(
        w.address(false, 0).unwrap(),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    let eth = unsealed
        .create_wallet("eth", Network::Ethereum { chain_id: 1 }, Purpose::Bip44, 0)
        .unwrap();
    assert_eq!(
        eth.address(false, 0).unwrap(),
        "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    );
    assert!(matches!(
        unsealed.create_wallet("hot", main, Purpose::Bip44, 1),
        Err(KeystoreError::DuplicateWallet(_))
    ));
    assert!(matches!(
        unsealed.create_wallet("bad name", main, Purpose::Bip44, 1),
        Err(KeystoreError::InvalidWalletName { .. })
    ));
    assert!(matches!(
        unsealed.wallet("nope"),
        Err(KeystoreError::UnknownWallet(n)) if n == "nope"
    ));
    let names: Vec<_> = unsealed
        .wallets()
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["eth", "hot"]);
    let report = unsealed.verify().unwrap();
    assert_eq!(report.seeds.len(), 1);
    assert_eq!(report.seeds[0].words, 12);
    assert_eq!(report.wallets.len(), 2);

    let backend = SoftwareBackend::new();
    assert_eq!(unsealed.load_into(&backend).unwrap(), 1);
    assert!(backend.is_unsealed());

    // Reopen: wallets persist, the lock was released.
    drop(unsealed);
    drop(store);
    let store = KeyStore::open(&dir).unwrap();
    let unsealed = store.unseal(&pass("pw")).unwrap();
    assert_eq!(unsealed.wallet("hot").unwrap(), w);
}

use crate::backend::SoftwareBackend;

#[test]
fn wrong_passphrase_and_not_found_and_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = new_store(&dir);
    assert!(matches!(
        store.unseal(&pass("PW")),
        Err(KeystoreError::WrongPassphrase)
    ));
    assert!(matches!(
        KeyStore::open(&tmp.path().join("missing")),
        Err(KeystoreError::NotFound { .. })
    ));
    assert!(!tmp.path().join("missing").exists(), "open must not create");
    drop(store);
    assert!(matches!(
        KeyStore::create(&dir, &pass("x"), weak(), &abandon(), &pass("")),
        Err(KeystoreError::AlreadyExists { .. })
    ));
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    new_store(&empty);
}

#[test]
fn second_open_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let _store = new_store(&dir);
    let err = KeyStore::open(&dir).unwrap_err();
    assert!(matches!(err, KeystoreError::InUse { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("is in use by another process (is the server running?)"));
}

#[test]
fn weak_parameters_need_the_unsafe_constructor() {
    assert!(KdfParams::new(1024, 3, 1).is_err());
}

#[test]
fn passphrase_change_keeps_the_dek() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(&tmp.path().join("s"));
    let audit = store.unseal(&pass("pw")).unwrap().audit_key();
    assert!(matches!(
        store.change_passphrase(&pass("nope"), &pass("new"), weak()),
        Err(KeystoreError::WrongPassphrase)
    ));
    store
        .change_passphrase(&pass("pw"), &pass("new"), weak())
        .unwrap();
    assert!(matches!(
        store.unseal(&pass("pw")),
        Err(KeystoreError::WrongPassphrase)
    ));
    let unsealed = store.unseal(&pass("new")).unwrap();
    assert_eq!(unsealed.audit_key(), audit);
    assert_ne!(audit.expose_secret(), unsealed.dek.expose_secret());
    unsealed.verify().unwrap();
}

#[test]
fn bip39_passphrase_and_second_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::create(
        &tmp.path().join("s"),
        &pass("pw"),
        weak(),
        &abandon(),
        &pass("TREZOR"),
    )
    .unwrap();
    let unsealed = store.unseal(&pass("pw")).unwrap();
    let ids = unsealed.seed_ids().unwrap();
    assert_ne!(ids, vec![SeedId("73c5da0a".into())]);
    let report = unsealed.verify().unwrap();
    assert!(report.seeds[0].has_bip39_passphrase);
    let second = unsealed.add_seed(&abandon(), &pass("")).unwrap();
    assert_eq!(second.0, "73c5da0a");
    assert!(matches!(
        unsealed.add_seed(&abandon(), &pass("")),
        Err(KeystoreError::DuplicateSeed(_))
    ));
    let main = Network::Bitcoin(bitcoin::Network::Bitcoin);
    assert!(matches!(
        unsealed.create_wallet("w", main, Purpose::Bip84, 0),
        Err(KeystoreError::AmbiguousSeed(2))
    ));
    let w = unsealed
        .create_wallet_for_seed(&second, "w", main, Purpose::Bip84, 0)
        .unwrap();
    assert_eq!(
        w.address(false, 0).unwrap(),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    assert_eq!(unsealed.verify().unwrap().seeds.len(), 2);
}

/// Every record, damaged in place inside sled: a named error, never a panic.
#[test]
fn damaged_records_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(&tmp.path().join("s"));
    let unsealed = store.unseal(&pass("pw")).unwrap();
    unsealed
        .create_wallet(
            "hot",
            Network::Bitcoin(bitcoin::Network::Bitcoin),
            Purpose::Bip84,
            0,
        )
        .unwrap();
    let db = &store.inner.db;
    for id in store.record_ids().unwrap() {
        let original = db.get(&id).unwrap().unwrap();
        let mut damaged: Vec<Vec<u8>> = vec![original[..original.len() / 2].to_vec()];
        for i in [0, 1, 5, original.len() / 2, original.len() - 1] {
            let mut flipped = original.to_vec();
            flipped[i] ^= 0x10;
            damaged.push(flipped);
        }
        for bytes in damaged {
            db.insert(&id, bytes).unwrap();
            let err = if id == HEADER_ID {
                decode_record(&id, &db.get(&id).unwrap().unwrap()).unwrap_err()
            } else {
                unsealed.verify().unwrap_err()
            };
            assert!(err.to_string().contains(&id), "{id}: {err}");
        }
        db.insert(&id, original).unwrap();
        unsealed.verify().unwrap();
    }
    // A seed record moved under another seed's id, a wallet under another name: refused.
    let seed = db.get("seed/73c5da0a").unwrap().unwrap();
    db.insert(
        "seed/00000000",
        encode_record(
            "seed/00000000",
            &decode_record("seed/73c5da0a", &seed).unwrap(),
        ),
    )
    .unwrap();
    let err = unsealed.verify().unwrap_err();
    assert!(err.to_string().contains("seed/00000000"), "{err}");
}

#[test]
fn unsealed_debug_hides_the_dek_and_audit_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(&tmp.path().join("s"));
    let unsealed = store.unseal(&pass("pw")).unwrap();
    let dek = hex::encode(unsealed.dek.expose_secret());
    let audit = hex::encode(unsealed.audit_key().expose_secret());
    for text in [format!("{unsealed:?}"), format!("{unsealed:#?}")] {
        assert!(text.contains("[REDACTED]"), "{text}");
        assert!(
            !text.contains(&dek[..16]) && !text.contains(&audit[..16]),
            "{text}"
        );
        assert!(!text.contains(
            &format!("{:?}", &unsealed.dek.expose_secret()[..4])
                .trim_end_matches(']')
                .to_owned()
        ));
    }
}

#[test]
fn one_key_serves_one_wallet() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(&tmp.path().join("s"));
    let unsealed = store.unseal(&pass("pw")).unwrap();
    let mainnet = Network::Ethereum { chain_id: 1 };
    let sepolia = Network::Ethereum {
        chain_id: 11_155_111,
    };
    unsealed
        .create_wallet("eth", mainnet, Purpose::Bip44, 0)
        .unwrap();
    // Sepolia at account 0 is mainnet's key: refused, naming the wallet and a free account.
    let error = unsealed
        .create_wallet("sepolia", sepolia, Purpose::Bip44, 0)
        .unwrap_err();
    assert!(
        matches!(&error, KeystoreError::KeyInUse { existing, path, free: 1, .. }
            if existing == "eth" && path == "m/44'/60'/0'"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("wallet 'eth'"), "{message}");
    assert!(message.contains("account 1 is free"), "{message}");
    assert!(matches!(
        unsealed.wallet("sepolia"),
        Err(KeystoreError::UnknownWallet(_))
    ));
    unsealed
        .create_wallet("sepolia", sepolia, Purpose::Bip44, 1)
        .unwrap();
    // Another chain id at account 1 is refused too; the next free account is 2.
    let error = unsealed
        .create_wallet(
            "holesky",
            Network::Ethereum { chain_id: 17_000 },
            Purpose::Bip44,
            1,
        )
        .unwrap_err();
    assert!(
        matches!(&error, KeystoreError::KeyInUse { existing, free: 2, .. } if existing == "sepolia"),
        "{error:?}"
    );

    // Bitcoin test networks share coin type 1: regtest after testnet at the same path is refused;
    // another purpose is another path and is fine.
    let testnet = Network::Bitcoin(bitcoin::Network::Testnet);
    let regtest = Network::Bitcoin(bitcoin::Network::Regtest);
    unsealed
        .create_wallet("tb", testnet, Purpose::Bip84, 0)
        .unwrap();
    assert!(matches!(
        unsealed.create_wallet("rt", regtest, Purpose::Bip84, 0),
        Err(KeystoreError::KeyInUse { .. })
    ));
    unsealed
        .create_wallet("rt", regtest, Purpose::Bip86, 0)
        .unwrap();
    // The same path on another seed is another key.
    let second = unsealed.add_seed(&abandon(), &pass("TREZOR")).unwrap();
    unsealed
        .create_wallet_for_seed(&second, "eth2", mainnet, Purpose::Bip44, 0)
        .unwrap();
    assert_eq!(unsealed.wallets().unwrap().len(), 5);
}

#[test]
fn concurrent_creations_cannot_share_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(&tmp.path().join("s"));
    let unsealed = std::sync::Arc::new(store.unseal(&pass("pw")).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let unsealed = unsealed.clone();
            std::thread::spawn(move || {
                unsealed
                    .create_wallet(
                        &format!("eth{i}"),
                        Network::Ethereum { chain_id: 1 + i },
                        Purpose::Bip44,
                        0,
                    )
                    .is_ok()
            })
        })
        .collect();
    let created = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(created, 1);
    assert_eq!(unsealed.wallets().unwrap().len(), 1);
}
