//! The key store's HSM unsealer slot against a real SoftHSM2 token: the token's AES key opens the
//! same data key as the passphrase; another token, another key under the same label, a damaged
//! record, a refused PIN or a missing slot never open it, each with an error that says which;
//! removing the slot destroys the key. Nothing of the PIN appears in any error or debug output.

#[path = "hsm_support/mod.rs"]
mod hsm;

use custos::backend::pkcs11::wrap::{ensure_unseal_key, unseal_key_label};
use custos::backend::pkcs11::{Pkcs11Backend, Pkcs11Error};
use custos::keys::MnemonicSecret;
use custos::keystore::{KdfParams, KeyStore, KeystoreError};
use custos::secret::SecretString;
use hsm::*;

fn passphrase() -> SecretString {
    SecretString::new("a passphrase for the test store".into())
}

fn store(dir: &std::path::Path) -> KeyStore {
    let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    KeyStore::create(
        &dir.join("store"),
        &passphrase(),
        KdfParams::unsafe_weak(64, 1).unwrap(),
        &mnemonic,
        &SecretString::new(String::new()),
    )
    .unwrap()
}

/// Making a token re-initialises this process's PKCS#11 module (see `hsm::new_token`), which ends
/// the sessions another test holds. Signing reconnects by itself; the key store's slot
/// ceremonies answer UNAVAILABLE instead (an operator runs them again), so the tests of this file
/// run one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_token_unseals_the_same_data_key_as_the_passphrase() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let token = new_token("slot");
    let backend = token.backend(2);
    assert!(store.pkcs11_slot().unwrap().is_none());
    assert!(matches!(
        store.unseal_with_token(backend.token()),
        Err(KeystoreError::MissingRecord { .. })
    ));
    let by_passphrase = store.unseal(&passphrase()).unwrap();
    let label = by_passphrase.add_pkcs11_slot(backend.token()).unwrap();
    assert!(label.starts_with("custos-unseal/"));
    let by_token = store.unseal_with_token(backend.token()).unwrap();
    assert_eq!(by_token.audit_key(), by_passphrase.audit_key());
    assert_eq!(
        by_token.seed_ids().unwrap(),
        by_passphrase.seed_ids().unwrap()
    );
    // Every record still checks, the new slot included.
    let report = by_token.verify().unwrap();
    assert_eq!(report.records, 4, "header, two slots, one seed");
    // Once only.
    let err = by_passphrase.add_pkcs11_slot(backend.token()).unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");

    // Removed: the record goes, and the key with it.
    assert!(by_passphrase
        .remove_pkcs11_slot(Some(backend.token()))
        .unwrap());
    assert!(matches!(
        store.unseal_with_token(backend.token()),
        Err(KeystoreError::MissingRecord { .. })
    ));
    let objects = backend.list("").unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    assert!(!by_passphrase
        .remove_pkcs11_slot(Some(backend.token()))
        .unwrap());
}

#[test]
fn another_token_or_another_key_never_opens_it() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (a, b) = (new_token("slot-a"), new_token("slot-b"));
    let (token_a, token_b) = (a.backend(1), b.backend(1));
    let unsealed = store.unseal(&passphrase()).unwrap();
    let label = unsealed.add_pkcs11_slot(token_a.token()).unwrap();

    // Token b has no such key.
    let err = store.unseal_with_token(token_b.token()).unwrap_err();
    assert!(
        matches!(&err, KeystoreError::Hsm(Pkcs11Error::KeyNotFound { label: l, .. }) if *l == label),
        "{err}"
    );
    // Token b with its own key under that label: refused as the wrong key, not as damage.
    assert!(ensure_unseal_key(token_b.token(), &label).unwrap());
    let err = store.unseal_with_token(token_b.token()).unwrap_err();
    assert!(
        err.to_string().contains("does not open slot/pkcs11"),
        "{err}"
    );
    assert!(!matches!(&err, KeystoreError::Hsm(e) if e.is_unavailable()));

    // A refused PIN is unavailable, and the PIN is in no message or debug output. (A token no
    // one in this process is logged in to: PKCS#11 login state is per token and process.)
    let c = new_token("slot-c");
    let mut settings = c.settings(1);
    settings.pin = SecretString::new("wrong-pin-1234".into());
    assert!(!format!("{settings:?}").contains("wrong-pin-1234"));
    let wrong = Pkcs11Backend::open(settings).unwrap();
    assert!(!format!("{wrong:?}").contains("wrong-pin-1234"));
    let err = store.unseal_with_token(wrong.token()).unwrap_err();
    assert!(
        matches!(&err, KeystoreError::Hsm(e) if e.is_unavailable()),
        "{err}"
    );
    assert!(err.to_string().contains("CKR_PIN_INCORRECT"), "{err}");
    assert!(!err.to_string().contains("wrong-pin-1234"), "{err}");
    assert!(!format!("{err:?}").contains("wrong-pin-1234"));
    let right = a.backend(1);
    assert!(!format!("{right:?}").contains(&a.pin));

    // The key's label is derived from the store id: another store's slot looks elsewhere.
    let other_dir = tempfile::tempdir().unwrap();
    let other = self::store(other_dir.path());
    assert_ne!(unseal_key_label(&[0; 16]), label);
    let err = other.unseal_with_token(token_a.token()).unwrap_err();
    assert!(matches!(err, KeystoreError::MissingRecord { .. }), "{err}");
}
