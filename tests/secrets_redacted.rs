//! Every secret type, formatted with `{:?}` and `{:#?}` and logged through `tracing` (as a field
//! and in a message), shows none of its bytes or words; nor do errors built from secret input.

use std::io::Write;
use std::sync::{Arc, Mutex};

use custos::backend::SeedId;
use custos::keys::path::parse_derivation_path;
use custos::keys::{MasterKey, MnemonicSecret};
use custos::keystore::{KdfParams, KeyStore, KeystoreError};
use custos::secret::{Secret32, SecretBytes, SecretString, REDACTED};

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The ways a byte string can show up in text: hex (both cases), Rust's `Debug` of a slice, and
/// the decimal run that `Debug` prints for the first bytes.
fn byte_needles(bytes: &[u8]) -> Vec<String> {
    let lower = hex::encode(bytes);
    vec![
        lower.clone(),
        lower.to_uppercase(),
        lower[..16].to_owned(),
        format!("{:?}", bytes),
        format!("{:?}", &bytes[..4])
            .trim_end_matches(']')
            .to_owned(),
    ]
}

/// Formats `value` every way a developer might, logs it, and checks no needle appears.
fn assert_hidden<T: std::fmt::Debug>(what: &str, value: &T, needles: &[String]) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(secret = ?value, "field");
        tracing::warn!("message {:?}", value);
        tracing::error!("pretty {:#?}", value);
        let span = tracing::info_span!("span", secret = ?value);
        let _entered = span.enter();
        tracing::debug!("inside a span");
    });
    let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains(REDACTED) || !logged.is_empty(),
        "{what}: nothing logged"
    );
    for text in [format!("{value:?}"), format!("{value:#?}"), logged] {
        for needle in needles {
            assert!(
                !text.contains(needle.as_str()),
                "{what} shows '{needle}' in: {text}"
            );
        }
    }
}

#[test]
fn secret_types_never_show_their_bytes() {
    let bytes = [0x5au8, 0xc3, 0x17, 0x99, 0x01, 0xfe, 0x42, 0x88, 0x10, 0x20];
    assert_hidden(
        "SecretBytes",
        &SecretBytes::from_slice(&bytes),
        &byte_needles(&bytes),
    );
    let key = [0x3cu8; 32];
    let mut varied = key;
    varied[0] = 0xa1;
    varied[31] = 0x07;
    assert_hidden("Secret32", &Secret32::new(varied), &byte_needles(&varied));
    let words = "correct horse battery staple".to_owned();
    assert_hidden(
        "SecretString",
        &SecretString::new(words.clone()),
        &["correct".into(), "horse".into(), "staple".into()],
    );
}

#[test]
fn keys_never_show_words_seed_or_key() {
    let phrase = SecretString::new(ABANDON.into());
    let mnemonic = MnemonicSecret::parse(&phrase).unwrap();
    assert_hidden(
        "MnemonicSecret",
        &mnemonic,
        &["abandon".into(), "about".into()],
    );
    let seed = mnemonic.to_seed(&SecretString::new(String::new()));
    let mut needles = byte_needles(seed.expose_secret());
    assert_hidden("seed", &seed, &needles);

    let master = MasterKey::from_seed(&seed).unwrap();
    let xprv = master.to_xprv_string(bitcoin::NetworkKind::Main);
    needles.push(xprv.expose_secret().to_owned());
    needles.push(xprv.expose_secret()[4..40].to_owned());
    let master_private = master
        .derive_private_key(&parse_derivation_path("m").unwrap())
        .unwrap();
    needles.extend(byte_needles(
        master_private.to_secret_bytes().expose_secret(),
    ));
    assert_hidden("MasterKey", &master, &needles);

    let child = master
        .derive_private_key(&parse_derivation_path("m/84'/0'/0'/0/0").unwrap())
        .unwrap();
    let child_needles = byte_needles(child.to_secret_bytes().expose_secret());
    assert_hidden("SecretPrivateKey", &child, &child_needles);
    let account = master
        .derive(&parse_derivation_path("m/84'/0'/0'").unwrap())
        .unwrap();
    assert_hidden(
        "account MasterKey",
        &account,
        &[account
            .to_xprv_string(bitcoin::NetworkKind::Main)
            .expose_secret()
            .to_owned()],
    );
}

#[test]
fn store_types_and_errors_never_show_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let passphrase = SecretString::new("store passphrase 91c2".into());
    let bip39 = SecretString::new("bip39 words 77ab".into());
    let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    let seed = mnemonic.to_seed(&bip39);
    let store = KeyStore::create(
        &tmp.path().join("s"),
        &passphrase,
        KdfParams::unsafe_weak(64, 1).unwrap(),
        &mnemonic,
        &bip39,
    )
    .unwrap();
    let unsealed = store.unseal(&passphrase).unwrap();
    let audit = unsealed.audit_key();
    let mut needles = vec![
        "store passphrase".to_owned(),
        "91c2".into(),
        "bip39 words".into(),
        "abandon".into(),
    ];
    needles.extend(byte_needles(seed.expose_secret()));
    needles.extend(byte_needles(audit.expose_secret()));
    assert_hidden("Unsealed", &unsealed, &needles);
    assert_hidden("KeyStore", &store, &needles);
    assert_hidden("audit key", &audit, &needles);
    let masters = unsealed.seeds().unwrap();
    assert_eq!(masters.len(), 1);
    assert_hidden("seeds()", &masters, &needles);
    assert_ne!(
        masters[0].0,
        SeedId("73c5da0a".into()),
        "the BIP39 passphrase counts"
    );

    // Errors from secret input.
    let wrong = store
        .unseal(&SecretString::new("store passphrase 91c3".into()))
        .unwrap_err();
    assert!(matches!(wrong, KeystoreError::WrongPassphrase));
    assert_hidden("wrong passphrase error", &wrong, &["91c3".into()]);
    assert_eq!(wrong.to_string(), "wrong passphrase");
    let bad_word = ABANDON.replace("about", "zzzzz");
    let mnemonic_error = MnemonicSecret::parse(&SecretString::new(bad_word)).unwrap_err();
    assert_hidden(
        "MnemonicError",
        &mnemonic_error,
        &["abandon".into(), "zzzzz".into()],
    );
    assert!(!mnemonic_error.to_string().contains("zzzzz"));
    let bad_checksum = ABANDON.replace("about", "abandon");
    let checksum_error = MnemonicSecret::parse(&SecretString::new(bad_checksum)).unwrap_err();
    assert_hidden("checksum error", &checksum_error, &["abandon".into()]);
    assert!(!checksum_error.to_string().contains("abandon"));
    let cli_error = custos::cli::common::keystore_error(wrong);
    assert_hidden("CliError", &cli_error, &["91c3".into()]);
}

#[test]
fn approver_and_officer_keys_never_show_their_bytes() {
    use custos::governance::{Algorithm, SecretSigningKey};
    for alg in [Algorithm::Ed25519, Algorithm::P256] {
        let seed = [0x6bu8; 32];
        let key = SecretSigningKey::from_seed(alg, &seed).unwrap();
        let pem = key.to_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut needles = byte_needles(&seed);
        needles.push(body[..40].to_owned());
        assert_hidden("SecretSigningKey", &key, &needles);
        // A key file that does not parse is named, never quoted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(
            &path,
            pem.replace("MC4CAQ", "XXXX").replace("MIGHAg", "XXXX"),
        )
        .unwrap();
        if let Err(e) = SecretSigningKey::load(&path) {
            assert_hidden("key file error", &e, &needles);
            assert!(!e.to_string().contains(&body[..20]), "{e}");
        }
    }
}

#[test]
fn share_types_and_refusals_never_show_a_share() {
    use custos::keystore::{CeremonyDraft, InitialUnsealer};
    use custos::shares::text::parse;

    let tmp = tempfile::tempdir().unwrap();
    let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    let created = KeyStore::create_recorded(
        &tmp.path().join("s"),
        &InitialUnsealer::Shares {
            threshold: 2,
            count: 3,
        },
        &mnemonic,
        &SecretString::new(String::new()),
        |_| CeremonyDraft {
            at: 0,
            operator: "t".into(),
            event: serde_json::json!({"event": "init"}),
        },
    )
    .unwrap();
    let set = created.shares.as_ref().unwrap();
    let texts = set.texts();
    let mut needles = Vec::new();
    for t in texts {
        let parsed = parse(t).unwrap();
        needles.extend(byte_needles(parsed.share.value_bytes().as_slice()));
        let groups: Vec<&str> = t.expose_secret().split(' ').skip(1).collect();
        needles.extend(groups.windows(2).map(|w| w.concat()));
        needles.push(groups.join(" "));
        assert_hidden("ParsedShare", &parsed, &needles);
        assert_hidden("ShareValue", &parsed.share, &needles);
        assert_hidden("share text", t, &needles);
    }
    assert_hidden("NewShareSet", set, &needles);
    assert_hidden("Created", &created, &needles);
    let mut collector = created.store.share_collector().unwrap();
    collector.offer(&texts[0]).unwrap();
    assert_hidden("Collector", &collector, &needles);
    // Refusals name the share, never show it.
    let duplicate = collector.offer(&texts[0]).unwrap_err();
    assert_hidden("duplicate refusal", &duplicate, &needles);
    let mut typo = texts[1].expose_secret().to_owned();
    typo.push('q');
    let mistyped = collector.offer(&SecretString::new(typo)).unwrap_err();
    assert_hidden("mistyped refusal", &mistyped, &needles);
    assert_hidden("mistyped message", &mistyped.to_string(), &needles);
    collector.offer(&texts[2]).unwrap();
    let secret = collector.combine().unwrap();
    let key = secret.to_secret_bytes();
    needles.extend(byte_needles(key.expose_secret()));
    assert_hidden("SharedSecret", &secret, &needles);
    let unsealed = created.store.unseal_with_shares(&collector).unwrap();
    assert_hidden("Unsealed (shares)", &unsealed, &needles);
}
