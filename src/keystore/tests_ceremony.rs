//! Unit tests of shares, the ceremony log and backups on real stores (temporary directories).

use super::backup::BackupFile;
use super::*;
use crate::keys::{Network, Purpose};
use crate::shares::ShareRefusal;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn pass(s: &str) -> SecretString {
    SecretString::new(s.into())
}

fn abandon() -> MnemonicSecret {
    MnemonicSecret::parse(&pass(ABANDON)).unwrap()
}

fn draft(event: &str) -> CeremonyDraft {
    CeremonyDraft {
        at: 1_700_000_000,
        operator: "tester".into(),
        event: serde_json::json!({ "event": event }),
    }
}

fn shares_store(dir: &Path, threshold: u8, count: u8) -> (KeyStore, Vec<SecretString>) {
    let created = KeyStore::create_recorded(
        dir,
        &InitialUnsealer::Shares { threshold, count },
        &abandon(),
        &pass(""),
        |facts| {
            assert_eq!(facts.shares.as_ref().unwrap().threshold, threshold);
            draft("init")
        },
    )
    .unwrap();
    let texts = created
        .shares
        .unwrap()
        .texts()
        .iter()
        .map(SecretString::duplicate)
        .collect();
    (created.store, texts)
}

fn unseal(store: &KeyStore, texts: &[&SecretString]) -> Result<Unsealed, KeystoreError> {
    let mut c = store.share_collector().unwrap();
    for t in texts {
        if c.progress().complete() {
            assert!(matches!(c.offer(t), Err(ShareRefusal::NotNeeded { .. })));
        } else {
            c.offer(t).unwrap();
        }
    }
    store.unseal_with_shares(&c)
}

/// Every subset of the shares of a 3-of-4 store: the ones of 3 or more unseal, smaller ones
/// are refused before anything is combined.
#[test]
fn shares_unseal_a_real_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, texts) = shares_store(&tmp.path().join("s"), 3, 4);
    for mask in 1u32..16 {
        let chosen: Vec<&SecretString> = (0..4)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &texts[i])
            .collect();
        let result = unseal(&store, &chosen);
        if chosen.len() >= 3 {
            let unsealed = result.unwrap();
            assert_eq!(
                unsealed.seed_ids().unwrap(),
                vec![SeedId("73c5da0a".into())]
            );
        } else {
            assert!(matches!(
                result,
                Err(KeystoreError::SharesIncomplete { threshold: 3, .. })
            ));
        }
    }
    assert!(matches!(
        store.unseal(&pass("anything")),
        Err(KeystoreError::NoPassphrase)
    ));
    let unsealed = unseal(&store, &[&texts[0], &texts[1], &texts[2]]).unwrap();
    let report = unsealed.verify().unwrap();
    assert!(report.kdf.is_none());
    assert_eq!(report.shares.as_ref().unwrap().count, 4);
    assert_eq!(
        report.ceremony,
        unsealed.verify_ceremony_log().unwrap(),
        "verify includes the log"
    );
    assert!(matches!(
        report.ceremony,
        LogCheck::Intact { entries: 1, .. }
    ));
}

#[test]
fn rotation_retires_the_old_shares_and_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, old) = shares_store(&tmp.path().join("s"), 2, 3);
    let unsealed = unseal(&store, &[&old[0], &old[2]]).unwrap();
    let old_collector = store.share_collector().unwrap();
    let new = unsealed.prepare_share_set(3, 5).unwrap();
    let old_set = old_collector.info().set_id;
    assert_ne!(new.info().set_id, old_set);
    assert_eq!(new.info().retired, vec![old_set]);
    // Nothing written yet: the old shares still work.
    unseal(&store, &[&old[1], &old[2]]).unwrap();
    unsealed
        .commit_share_set(&new, false, &draft("shares-rotate"))
        .unwrap();

    let mut c = store.share_collector().unwrap();
    let err = c.offer(&old[0]).unwrap_err();
    assert!(
        matches!(err, ShareRefusal::Retired { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no longer works"), "{err}");
    // A collection made for the old set cannot unseal any more.
    let mut stale = old_collector;
    stale.offer(&old[0]).unwrap();
    stale.offer(&old[1]).unwrap();
    assert!(store.unseal_with_shares(&stale).is_err());
    let texts: Vec<&SecretString> = new.texts().iter().collect();
    let again = unseal(&store, &[texts[4], texts[0], texts[2]]).unwrap();
    match again.verify_ceremony_log().unwrap() {
        LogCheck::Intact { entries, .. } => assert_eq!(entries, 2),
        broken => panic!("{broken:?}"),
    }
    let events: Vec<String> = store
        .ceremony_entries()
        .unwrap()
        .iter()
        .map(|e| e.entry.event["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["init", "shares-rotate"]);
}

#[test]
fn shares_added_to_a_passphrase_store_then_the_passphrase_removed_and_set_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let weak = KdfParams::unsafe_weak(64, 1).unwrap();
    let store = KeyStore::create(&dir, &pass("pw"), weak, &abandon(), &pass("")).unwrap();
    let unsealed = store.unseal(&pass("pw")).unwrap();
    assert!(matches!(
        unsealed.remove_passphrase(&draft("passphrase-remove")),
        Err(KeystoreError::NoShares)
    ));
    let set = unsealed.prepare_share_set(2, 2).unwrap();
    unsealed
        .commit_share_set(&set, false, &draft("shares-add"))
        .unwrap();
    // Both ways in now.
    store.unseal(&pass("pw")).unwrap();
    let by_shares = unseal(&store, &[&set.texts()[0], &set.texts()[1]]).unwrap();
    by_shares
        .remove_passphrase(&draft("passphrase-remove"))
        .unwrap();
    assert!(matches!(
        store.unseal(&pass("pw")),
        Err(KeystoreError::NoPassphrase)
    ));
    by_shares
        .set_passphrase_recorded(&pass("new"), weak, &draft("passphrase-change"))
        .unwrap();
    store.unseal(&pass("new")).unwrap();
    assert!(matches!(
        by_shares.verify_ceremony_log().unwrap(),
        LogCheck::Intact { entries: 3, .. }
    ));
}

#[test]
fn recorded_wallets_refuse_duplicates_and_leave_no_entry_then() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, texts) = shares_store(&tmp.path().join("s"), 2, 2);
    let unsealed = unseal(&store, &[&texts[0], &texts[1]]).unwrap();
    let main = Network::Bitcoin(bitcoin::Network::Bitcoin);
    let w = unsealed
        .create_wallet_recorded(None, "hot", main, Purpose::Bip84, 0, |_| {
            draft("wallet-create")
        })
        .unwrap();
    assert_eq!(
        w.address(false, 0).unwrap(),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    assert!(matches!(
        unsealed.create_wallet_recorded(None, "hot", main, Purpose::Bip84, 1, |_| draft("x")),
        Err(KeystoreError::DuplicateWallet(_))
    ));
    assert!(matches!(
        unsealed.verify_ceremony_log().unwrap(),
        LogCheck::Intact { entries: 2, .. }
    ));
}

/// Rewrites the record `id` with `value` and a correct check value (what someone with write
/// access but without the seal can do).
fn rewrite(store: &KeyStore, id: &str, value: Vec<u8>) {
    let bytes = record::encode_record(id, &Record::Ceremony(value));
    store.inner.db.insert(id.as_bytes(), bytes).unwrap();
}

fn raw(store: &KeyStore, id: &str) -> Vec<u8> {
    match store.record(id).unwrap().unwrap() {
        Record::Ceremony(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_log_finds_every_kind_of_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, texts) = shares_store(&tmp.path().join("s"), 2, 2);
    let unsealed = unseal(&store, &[&texts[0], &texts[1]]).unwrap();
    for n in 0..3 {
        unsealed.append_ceremony(&draft(&format!("e{n}"))).unwrap();
    }
    let check = || unsealed.verify_ceremony_log().unwrap();
    assert!(matches!(check(), LogCheck::Intact { entries: 4, .. }));

    // An entry's content changed (the JSON edited, the check value fixed).
    let e2 = raw(&store, &ceremony_log::entry_id(2));
    let edited = String::from_utf8(e2[32..].to_vec())
        .unwrap()
        .replace("tester", "mallory");
    let mut forged = e2[..32].to_vec();
    forged.extend_from_slice(edited.as_bytes());
    rewrite(&store, &ceremony_log::entry_id(2), forged);
    assert!(
        matches!(check(), LogCheck::Broken { seq: 2, ref message } if message.contains("mac mismatch")),
        "{:?}",
        check()
    );
    rewrite(&store, &ceremony_log::entry_id(2), e2.clone());
    assert!(matches!(check(), LogCheck::Intact { .. }));

    // Entries swapped.
    let e3 = raw(&store, &ceremony_log::entry_id(3));
    rewrite(&store, &ceremony_log::entry_id(2), e3.clone());
    rewrite(&store, &ceremony_log::entry_id(3), e2.clone());
    assert!(matches!(check(), LogCheck::Broken { seq: 2, .. }));
    rewrite(&store, &ceremony_log::entry_id(2), e2);
    rewrite(&store, &ceremony_log::entry_id(3), e3);

    // The newest entry deleted: the head says it existed.
    let e4 = raw(&store, &ceremony_log::entry_id(4));
    store
        .inner
        .db
        .remove(ceremony_log::entry_id(4).as_bytes())
        .unwrap();
    assert!(
        matches!(check(), LogCheck::Broken { seq: 4, ref message } if message.contains("missing")),
        "{:?}",
        check()
    );
    // … and the head moved back without the key: refused too.
    let head = raw(&store, ceremony_log::CEREMONY_HEAD_ID);
    let mut back = 3u64.to_be_bytes().to_vec();
    back.extend_from_slice(&e4[..32]);
    back.extend_from_slice(&head[40..]);
    rewrite(&store, ceremony_log::CEREMONY_HEAD_ID, back);
    assert!(matches!(check(), LogCheck::Broken { .. }));
    // A gap in the middle.
    rewrite(&store, &ceremony_log::entry_id(4), e4);
    rewrite(&store, ceremony_log::CEREMONY_HEAD_ID, head);
    assert!(matches!(check(), LogCheck::Intact { entries: 4, .. }));
    store
        .inner
        .db
        .remove(ceremony_log::entry_id(2).as_bytes())
        .unwrap();
    assert!(matches!(check(), LogCheck::Broken { seq: 2, .. }));
    // Appending on a broken head is refused rather than extending a forged chain.
    rewrite(&store, ceremony_log::CEREMONY_HEAD_ID, vec![0; 72]);
    assert!(unsealed.append_ceremony(&draft("after")).is_err());
}

#[test]
fn backups_restore_exactly_and_refuse_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, texts) = shares_store(&tmp.path().join("s"), 2, 3);
    let unsealed = unseal(&store, &[&texts[0], &texts[1]]).unwrap();
    let main = Network::Bitcoin(bitcoin::Network::Bitcoin);
    unsealed
        .create_wallet_recorded(None, "hot", main, Purpose::Bip84, 0, |_| {
            draft("wallet-create")
        })
        .unwrap();
    let (bytes, manifest) = unsealed.export_backup(1_700_000_100).unwrap();
    assert_eq!(manifest.wallets.len(), 1);
    assert_eq!(manifest.ceremony_entries, 2);
    let path = tmp.path().join("b.custos");
    let file = BackupFile::parse(&bytes, &path).unwrap();
    assert_eq!(file.store_id, *store.store_id());
    // No secret in the file: the mnemonic's entropy and the shares are nowhere in it.
    let entropy = abandon().entropy().expose_secret().to_vec();
    assert!(!bytes
        .windows(entropy.len())
        .any(|w| w == entropy.as_slice()));
    for t in &texts {
        let parsed = crate::shares::text::parse(t).unwrap();
        let value = parsed.share.value_bytes();
        assert!(!bytes.windows(32).any(|w| w == value.as_slice()));
    }

    // Restored elsewhere, it opens with the same shares and matches its manifest.
    let copy_dir = tmp.path().join("copy");
    let copy = file.restore_to(&copy_dir).unwrap();
    let copy_unsealed = unseal(&copy, &[&texts[2], &texts[1]]).unwrap();
    let check =
        crate::ceremony::verify::check_backup(&copy_unsealed, &file, &path, &copy_dir, false)
            .unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    drop(copy_unsealed);
    drop(copy);
    // Against the live store, with its key, in a scratch directory.
    let check = crate::ceremony::verify::check_backup(
        &unsealed,
        &file,
        &path,
        &tmp.path().join("scratch"),
        true,
    )
    .unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    assert_eq!(check.wallets.len(), 1);
    assert!(check.wallets[0].ok());

    // A wallet created after the export: the backup no longer restores the store exactly.
    unsealed
        .create_wallet_recorded(
            None,
            "eth",
            Network::Ethereum { chain_id: 1 },
            Purpose::Bip44,
            0,
            |_| draft("wallet-create"),
        )
        .unwrap();
    let check = crate::ceremony::verify::check_backup(
        &unsealed,
        &file,
        &path,
        &tmp.path().join("scratch2"),
        true,
    )
    .unwrap();
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains("wallet 'eth' is not in the backup")),
        "{:?}",
        check.problems
    );

    // Every truncation and every flipped byte is refused before anything is written.
    for len in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(BackupFile::parse(&bytes[..len], &path).is_err());
    }
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(BackupFile::parse(&bad, &path).is_err(), "byte {i}");
    }
    // Another store's key does not open the manifest.
    let (other, other_texts) = shares_store(&tmp.path().join("other"), 2, 2);
    let other_unsealed = unseal(&other, &[&other_texts[0], &other_texts[1]]).unwrap();
    let err = other_unsealed.open_manifest(&file, &path).unwrap_err();
    assert!(err.to_string().contains("not of this store"), "{err}");
}

#[test]
fn backup_parser_never_panics_on_garbage() {
    let path = Path::new("x");
    let mut bytes = b"custos-backup\0\0\0".to_vec();
    bytes.extend_from_slice(&[1; 200]);
    for len in 0..bytes.len() {
        let _ = BackupFile::parse(&bytes[..len], path);
    }
}
