//! The PKCS#11 backend against a real SoftHSM2 token (one per test, in a temporary directory):
//! keys imported and generated, signatures for both chains checked by independent code (Bitcoin
//! Core's script interpreter; alloy/k256 recovery for Ethereum), what the token reveals of its
//! keys, and its faults: wrong PIN, missing token, token removed while signing, the session pool
//! under concurrency.

#[path = "bitcoin_support/mod.rs"]
mod btc;
#[path = "hsm_support/mod.rs"]
mod hsm;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use bitcoin::secp256k1::Message;
use custos::assets::TokenRegistry;
use custos::backend::pkcs11::ceremony::import_wallet;
use custos::backend::pkcs11::{HsmWallets, Pkcs11Error, TokenSelector};
use custos::backend::{BackendError, KeyBackend, KeyRouter, SoftwareBackend};
use custos::chains::bitcoin::{self as chain_btc, BitcoinSigned, SignOptions};
use custos::chains::ethereum::{self as chain_eth, EthPayload, EthSigned};
use custos::keys::{secp, Network, Purpose};
use custos::wallet::Wallet;
use hsm::*;

const SEPOLIA: u64 = 11_155_111;

fn eth_wallet() -> Wallet {
    wallet(
        "eth-hsm",
        Network::Ethereum { chain_id: SEPOLIA },
        Purpose::Bip44,
        0,
    )
}

fn btc_wallet() -> Wallet {
    wallet(
        "btc-hsm",
        Network::Bitcoin(bitcoin::Network::Regtest),
        Purpose::Bip84,
        0,
    )
}

fn software() -> SoftwareBackend {
    let b = SoftwareBackend::new();
    b.load(seed_id(), master());
    b
}

/// Wallets `ws` imported over 0..n into a fresh token, registered for signing.
fn hsm_with(ws: &[Wallet], n: u32) -> (TestToken, HsmWallets) {
    let token = new_token("sign");
    let backend = token.backend(4);
    let wallets = HsmWallets::new(backend.clone());
    for w in ws {
        let report = import_wallet(&backend, w, &master(), 0..n, &|| {}).unwrap();
        let per_chain = if w.chain() == custos::keys::Chain::Bitcoin {
            2
        } else {
            1
        };
        assert_eq!(report.created, n as usize * per_chain);
        wallets.add(w.clone()).unwrap();
    }
    (token, wallets)
}

fn eth_tx(nonce: u64) -> String {
    serde_json::json!({"type":"0x2","chainId": format!("{SEPOLIA:#x}"),"nonce": format!("{nonce:#x}"),
        "gas":"0x5208","maxFeePerGas":"0x6fc23ac00","maxPriorityFeePerGas":"0x3b9aca00",
        "to":"0x3535353535353535353535353535353535353535","value":"0xde0b6b3a7640000","data":"0x"})
    .to_string()
}

fn sign_eth(w: &Wallet, backend: &dyn KeyBackend, index: u32, nonce: u64) -> (String, String) {
    let decoded = chain_eth::decode(
        w,
        index,
        EthPayload::Transaction(eth_tx(nonce).as_bytes()),
        &TokenRegistry::well_known(),
    )
    .unwrap();
    match chain_eth::sign(decoded, w, backend).unwrap() {
        EthSigned::Transaction {
            raw_tx_hex,
            tx_hash,
        } => (raw_tx_hex, tx_hash),
        other => panic!("expected a transaction, got {other:?}"),
    }
}

fn decode_envelope(raw_hex: &str) -> TxEnvelope {
    let raw = hex::decode(raw_hex.trim_start_matches("0x")).unwrap();
    TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap()
}

fn external() -> bitcoin::ScriptBuf {
    bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap()
}

fn btc_psbt(w: &Wallet) -> bitcoin::Psbt {
    btc::Builder::new()
        .ours(w, false, 0, 50_000)
        .ours(w, true, 2, 70_000)
        .pay(external(), 60_000)
        .change(w, 1, 58_000)
        .build()
}

fn sign_btc(psbt: &bitcoin::Psbt, w: &Wallet, backend: &dyn KeyBackend) -> (String, String) {
    let decoded =
        chain_btc::decode(w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    match chain_btc::sign(decoded, w, backend).unwrap() {
        BitcoinSigned::Final {
            raw_tx_hex, txid, ..
        } => (raw_tx_hex, txid),
        other => panic!("expected a final transaction, got {other:?}"),
    }
}

#[test]
fn imported_keys_sign_both_chains_and_independent_code_verifies() {
    let (eth, btc_w) = (eth_wallet(), btc_wallet());
    let (_token, hsm) = hsm_with(&[eth.clone(), btc_w.clone()], 3);
    let soft = software();

    // Ethereum: the HSM's signature recovers (alloy, over k256) to the wallet's address, and the
    // transaction is the software backend's except for the signature.
    for index in 0..3 {
        let (raw, hash) = sign_eth(&eth, &hsm, index, 7);
        let (soft_raw, _) = sign_eth(&eth, &soft, index, 7);
        let env = decode_envelope(&raw);
        let soft_env = decode_envelope(&soft_raw);
        let address = eth.account.ethereum_address(index).unwrap().unwrap();
        assert_eq!(env.recover_signer().unwrap(), address);
        assert_eq!(soft_env.recover_signer().unwrap(), address);
        assert_eq!(format!("{:#x}", env.tx_hash()), hash);
        let (a, b) = (env.as_eip1559().unwrap(), soft_env.as_eip1559().unwrap());
        assert_eq!(a.tx(), b.tx(), "the unsigned transaction is byte-identical");
        assert_eq!(a.signature_hash(), b.signature_hash());
        // EIP-2: low s.
        assert!(a.signature().normalize_s().is_none());
        assert_eq!(env.nonce(), 7);
    }

    // Bitcoin: every input verified by Bitcoin Core's script interpreter; the txid (which excludes
    // witnesses) and the public keys in the witnesses are the software backend's.
    let psbt = btc_psbt(&btc_w);
    let (raw, txid) = sign_btc(&psbt, &btc_w, &hsm);
    btc::consensus_verify(&raw, &btc::spent_outputs(&psbt));
    let (soft_raw, soft_txid) = sign_btc(&psbt, &btc_w, &soft);
    assert_eq!(txid, soft_txid);
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&hex::decode(&raw).unwrap()).unwrap();
    let soft_tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&hex::decode(&soft_raw).unwrap()).unwrap();
    for (i, (a, b)) in tx.input.iter().zip(&soft_tx.input).enumerate() {
        assert_eq!(
            a.witness.nth(1),
            b.witness.nth(1),
            "input {i}: same public key"
        );
        let der = a.witness.nth(0).unwrap();
        // Low R (grinding) and low S: at most 71 bytes of DER plus the sighash byte.
        assert!(der.len() <= 72, "input {i}: {} bytes", der.len());
        let sig = bitcoin::ecdsa::Signature::from_slice(der).unwrap();
        assert!(sig.signature.serialize_compact()[0] < 0x80);
        let mut normalised = sig.signature;
        normalised.normalize_s();
        assert_eq!(normalised, sig.signature, "low s");
    }
}

#[test]
fn addresses_and_public_keys_are_the_same_on_both_backends() {
    let (eth, btc_w) = (eth_wallet(), btc_wallet());
    let (_token, hsm) = hsm_with(&[eth.clone(), btc_w.clone()], 2);
    let soft = software();
    for w in [&eth, &btc_w] {
        for index in 0..2 {
            let key = w.key_ref(false, index);
            let on_token = hsm.public_key(&key).unwrap().unwrap();
            assert_eq!(on_token, soft.public_key(&key).unwrap().unwrap());
            assert_eq!(on_token, w.account.public_key(false, index).unwrap());
        }
    }
    let label = custos::backend::pkcs11::key_label("btc-hsm", true, 1);
    assert_eq!(label, "custos/btc-hsm/1/1");
    assert_eq!(
        hsm.backend().public_key(&label).unwrap().unwrap(),
        btc_w.account.public_key(true, 1).unwrap()
    );
}

#[test]
fn signatures_verify_under_the_wallet_key_and_recover() {
    let eth = eth_wallet();
    let (_token, hsm) = hsm_with(std::slice::from_ref(&eth), 1);
    let key = eth.key_ref(false, 0);
    let public = eth.account.public_key(false, 0).unwrap();
    for i in 0..40u8 {
        let digest = [i; 32];
        let msg = Message::from_digest(digest);
        let rec = hsm.sign_ecdsa_recoverable(&key, &digest).unwrap().unwrap();
        assert_eq!(secp().recover_ecdsa(&msg, &rec).unwrap(), public);
        let plain = hsm.sign_ecdsa(&key, &digest, true).unwrap().unwrap();
        secp().verify_ecdsa(&msg, &plain, &public).unwrap();
        assert!(plain.serialize_der().len() <= 71);
    }
}

#[test]
fn generated_keys_never_left_the_token() {
    let token = new_token_in_process("keygen");
    let backend = token.backend(2);
    let labels: Vec<String> = (0..3)
        .map(|i| custos::backend::pkcs11::key_label("eth-gen", false, i))
        .collect();
    let keys = backend.generate(&labels, false, &|| {}).unwrap();
    assert_eq!(keys.len(), 3);
    let objects = backend.list("custos/eth-gen/").unwrap();
    let private: Vec<_> = objects.iter().filter(|o| o.class == "private").collect();
    assert_eq!(private.len(), 3);
    for o in &private {
        assert!(o.secp256k1);
        assert_eq!(o.sensitive, Some(true));
        assert_eq!(o.extractable, Some(false));
        assert_eq!(o.private, Some(true));
        assert_eq!(o.local, Some(true), "generated inside the token");
        assert_eq!(o.never_extractable, Some(true));
        assert!(!o.value_readable, "CKA_VALUE must not be readable");
    }
    // Each generated key signs, verified against the key it reported.
    for (label, public) in labels.iter().zip(&keys) {
        let digest = [5u8; 32];
        let sig = backend.sign_recoverable(label, public, &digest).unwrap();
        assert_eq!(
            secp()
                .recover_ecdsa(&Message::from_digest(digest), &sig)
                .unwrap(),
            *public
        );
    }
    // A second keygen over the same labels is refused, the keys stay.
    let again = backend.generate(&labels[..1], false, &|| {}).unwrap_err();
    assert!(again.to_string().contains("already holds"), "{again}");
    assert_eq!(backend.public_key(&labels[0]).unwrap(), Some(keys[0]));
    // An interrupted keygen is completed by adopting what it generated, and nothing else.
    let mut more = labels.clone();
    more.push(custos::backend::pkcs11::key_label("eth-gen", false, 3));
    let adopted = backend.generate(&more, true, &|| {}).unwrap();
    assert_eq!(&adopted[..3], &keys[..]);
    assert_eq!(backend.list("custos/eth-gen/").unwrap().len(), 8);
}

#[test]
fn imported_keys_are_sensitive_and_say_they_were_imported() {
    let (token, _hsm) = hsm_with(&[eth_wallet()], 2);
    let backend = token.backend(1);
    let objects = backend.list("custos/eth-hsm/").unwrap();
    assert_eq!(objects.len(), 4, "{objects:?}");
    for o in objects.iter().filter(|o| o.class == "private") {
        assert_eq!(o.sensitive, Some(true));
        assert_eq!(o.extractable, Some(false));
        assert!(!o.value_readable);
        assert_eq!(o.local, Some(false), "imported, not generated");
    }
    // Importing again creates nothing and checks what is there.
    let report = import_wallet(&backend, &eth_wallet(), &master(), 0..3, &|| {}).unwrap();
    assert_eq!((report.created, report.present), (1, 2));
}

#[test]
fn another_key_under_the_wallet_label_is_never_released() {
    let eth = eth_wallet();
    // Another seed's wallet, same name and path: its key lands under the label eth-hsm expects.
    let other_master = {
        use custos::keys::MnemonicSecret;
        use custos::secret::SecretString;
        let m = MnemonicSecret::parse(&SecretString::new(btc::LEGAL.into())).unwrap();
        custos::keys::MasterKey::from_seed(&m.to_seed(&SecretString::new(String::new()))).unwrap()
    };
    let impostor = Wallet {
        account: custos::keys::AccountKey::from_master(
            &other_master,
            eth.network(),
            eth.account.path,
        )
        .unwrap(),
        ..eth.clone()
    };
    let token = new_token("impostor");
    let backend = token.backend(1);
    import_wallet(&backend, &impostor, &other_master, 0..1, &|| {}).unwrap();
    let hsm = HsmWallets::new(backend.clone());
    hsm.add(eth.clone()).unwrap();
    let err = hsm
        .sign_ecdsa_recoverable(&eth.key_ref(false, 0), &[1; 32])
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::Device { reason, .. } if reason.contains("does not verify against the wallet's key")),
        "{err}"
    );
    // Importing the real wallet over it is refused (the label holds another key).
    let err = import_wallet(&backend, &eth, &master(), 0..1, &|| {}).unwrap_err();
    assert!(matches!(err, Pkcs11Error::KeyMismatch { .. }), "{err}");
}

#[test]
fn a_key_outside_the_imported_range_is_a_clear_error() {
    let eth = eth_wallet();
    let (token, hsm) = hsm_with(std::slice::from_ref(&eth), 1);
    let err = hsm
        .sign_ecdsa_recoverable(&eth.key_ref(false, 5), &[1; 32])
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("custos/eth-hsm/0/5"), "{text}");
    assert!(text.contains(&token.label), "{text}");
    assert!(matches!(err, BackendError::Device { .. }));
}

#[test]
fn taproot_wallets_are_refused() {
    let token = new_token("taproot");
    let backend = token.backend(1);
    let tr = wallet(
        "btc-tr",
        Network::Bitcoin(bitcoin::Network::Regtest),
        Purpose::Bip86,
        0,
    );
    let hsm = HsmWallets::new(backend.clone());
    let err = hsm.add(tr.clone()).unwrap_err().to_string();
    assert!(
        err.contains("BIP340") && err.contains("no PKCS#11 mechanism"),
        "{err}"
    );
    let err = import_wallet(&backend, &tr, &master(), 0..1, &|| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("taproot"), "{err}");
    assert!(
        backend.list("custos/").unwrap().is_empty(),
        "nothing imported"
    );
}

#[test]
fn wrong_pin_is_unavailable_and_not_retried() {
    let token = new_token("wrongpin");
    let mut settings = token.settings(2);
    settings.pin = custos::secret::SecretString::new("not-the-pin".into());
    let backend = Arc::new(custos::backend::pkcs11::Pkcs11Backend::open(settings).unwrap());
    let status = backend.status();
    assert!(!status.available);
    assert!(
        status.detail.contains("CKR_PIN_INCORRECT"),
        "{}",
        status.detail
    );
    assert!(!status.detail.contains("not-the-pin"));
    let hsm = HsmWallets::new(backend);
    hsm.add(eth_wallet()).unwrap();
    for _ in 0..3 {
        let err = hsm
            .sign_ecdsa_recoverable(&eth_wallet().key_ref(false, 0), &[1; 32])
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BackendError::Unavailable { .. }), "{text}");
        assert!(
            text.contains(&token.label) && text.contains("not retrying"),
            "{text}"
        );
        assert!(!text.contains("not-the-pin"));
    }
}

#[test]
fn a_missing_token_is_unavailable_and_named() {
    hsm::softhsm_dir();
    let settings = custos::backend::pkcs11::TokenSettings {
        module: custos::backend::pkcs11::provision::SOFTHSM2_MODULE.into(),
        token: TokenSelector::Label("no-such-token".into()),
        pin: custos::secret::SecretString::new("1234".into()),
        sessions: 1,
    };
    let backend = Arc::new(custos::backend::pkcs11::Pkcs11Backend::open(settings).unwrap());
    let hsm = HsmWallets::new(backend.clone());
    hsm.add(eth_wallet()).unwrap();
    let err = hsm
        .sign_ecdsa_recoverable(&eth_wallet().key_ref(false, 0), &[1; 32])
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{text}");
    assert!(
        text.contains("token 'no-such-token'") && text.contains("not present"),
        "{text}"
    );
    // A module that does not exist is a configuration error, at open.
    let err =
        custos::backend::pkcs11::Pkcs11Backend::open(custos::backend::pkcs11::TokenSettings {
            module: "/nonexistent/libpkcs11.so".into(),
            token: TokenSelector::Label("x".into()),
            pin: custos::secret::SecretString::new("1234".into()),
            sessions: 1,
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/libpkcs11.so"),
        "{err}"
    );
}

#[test]
fn the_session_pool_under_concurrency() {
    let eth = eth_wallet();
    let (_token, hsm) = hsm_with(std::slice::from_ref(&eth), 4);
    let hsm = Arc::new(hsm);
    let signed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let (hsm, eth, signed) = (hsm.clone(), eth.clone(), signed.clone());
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    let index = (t + i) % 4;
                    let mut digest = [0u8; 32];
                    digest[..4].copy_from_slice(&t.to_be_bytes());
                    digest[4..8].copy_from_slice(&i.to_be_bytes());
                    let sig = hsm
                        .sign_ecdsa_recoverable(&eth.key_ref(false, index), &digest)
                        .unwrap()
                        .unwrap();
                    let recovered = secp()
                        .recover_ecdsa(&Message::from_digest(digest), &sig)
                        .unwrap();
                    assert_eq!(recovered, eth.account.public_key(false, index).unwrap());
                    signed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(signed.load(Ordering::SeqCst), 300);
    let (open, capacity) = hsm.backend().status().sessions;
    assert_eq!(capacity, 4);
    assert!(
        open <= capacity,
        "{open} sessions open, capacity {capacity}"
    );
}

#[test]
fn a_token_removed_mid_run_is_unavailable_then_comes_back() {
    let eth = eth_wallet();
    let (token, hsm) = hsm_with(std::slice::from_ref(&eth), 2);
    let router = Arc::new(KeyRouter::with_hsm(software(), hsm));
    // A software wallet beside it keeps signing throughout.
    let soft_wallet = btc_wallet();
    let key = eth.key_ref(false, 1);
    let public = eth.account.public_key(false, 1).unwrap();
    router
        .sign_ecdsa_recoverable(&key, &[9; 32])
        .unwrap()
        .unwrap();

    // Out of the token directory altogether (SoftHSM2 takes any directory under it for a token).
    let dir = token.directory();
    let moved = softhsm_dir().join(format!("removed-{}", token.label));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (router, key, stop, unavailable) = (
                router.clone(),
                key.clone(),
                stop.clone(),
                unavailable.clone(),
            );
            let label = token.label.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let mut digest = [t as u8; 32];
                    digest[..4].copy_from_slice(&n.to_be_bytes());
                    match router.sign_ecdsa_recoverable(&key, &digest) {
                        // Whatever is released verifies under the wallet's key.
                        Ok(Some(sig)) => assert_eq!(
                            secp()
                                .recover_ecdsa(&Message::from_digest(digest), &sig)
                                .unwrap(),
                            public
                        ),
                        Ok(None) => panic!("the router lost the wallet"),
                        Err(BackendError::Unavailable { reason, .. }) => {
                            assert!(reason.contains(&label), "{reason}");
                            unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(other) => panic!("a token fault must be unavailable: {other}"),
                    }
                }
            })
        })
        .collect();
    std::fs::rename(&dir, &moved).unwrap();
    // Wait (bounded) until the workers have seen the token gone.
    let mut waited = 0;
    while unavailable.load(Ordering::SeqCst) < 8 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
        assert!(waited < 1500, "the removal was never noticed");
    }
    // Meanwhile the software wallet signs.
    let (k, d) = (soft_wallet.key_ref(false, 0), [3u8; 32]);
    let sig = router.sign_ecdsa(&k, &d, true).unwrap().unwrap();
    secp()
        .verify_ecdsa(
            &Message::from_digest(d),
            &sig,
            &soft_wallet.account.public_key(false, 0).unwrap(),
        )
        .unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    // The token is back: signing resumes without a restart (reconnect within a bounded wait).
    let mut attempts = 0;
    loop {
        match router.sign_ecdsa_recoverable(&key, &[7; 32]) {
            Ok(Some(_)) => break,
            Err(BackendError::Unavailable { .. }) if attempts < 300 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => panic!("the token did not come back: {other:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(router.hsm().unwrap().backend().status().available);
}
