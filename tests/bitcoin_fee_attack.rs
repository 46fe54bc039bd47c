//! CVE-2020-14199, replayed the way it is exploited: two signing requests over the same
//! transaction, each understating a different segwit v0 input's amount in `witness_utxo` (and
//! leaving out the previous transactions), each showing a small fee. With witness_utxo accepted,
//! both are signed, and the truthful input's signature of each request combines into one
//! transaction that Bitcoin Core's consensus code accepts against the true amounts and that pays
//! 1 BTC of fee. By default both requests are refused before anything is signed, naming the input
//! and the missing previous transaction.
//!
//! Played against the chain module and against the signing core (a real key store, policy file
//! and state directory).

#[path = "bitcoin_support/mod.rs"]
mod support;

use std::path::PathBuf;

use bitcoin::{Amount as BtcAmount, Network as BtcNetwork, Psbt, Transaction, TxOut};
use custos::chains::bitcoin::{decode, sign, BitcoinSigned, PsbtError, SignOptions};
use custos::keys::{MnemonicSecret, Network, Purpose};
use custos::keystore::{KdfParams, KeyStore};
use custos::secret::SecretString;
use custos::signing::contract::{
    CoreError, Principal, PrincipalSource, SignOutcome, SignPayload, SignRequest, SignedOutput,
    SignerCore,
};
use custos::signing::{CoreConfig, SigningCore};
use custos::state::audit;
use custos::wallet::Wallet;
use support::*;

const ONE_BTC: u64 = 100_000_000;
/// What each request shows as its fee.
const SHOWN_FEE: u64 = 10_000;

fn external() -> bitcoin::ScriptBuf {
    bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap()
}

/// The honest transaction: two inputs of `w` worth 1 BTC each, 1 BTC paid out, 1 BTC of fee.
/// Its PSBT carries the previous transactions (as Bitcoin Core writes it).
fn honest(w: &Wallet) -> Psbt {
    Builder::new()
        .ours(w, false, 0, ONE_BTC)
        .ours(w, false, 1, ONE_BTC)
        .pay(external(), ONE_BTC)
        .build()
}

/// The attacker's request: only witness_utxo, with input `understated` worth just enough that
/// the fee shows as [`SHOWN_FEE`].
fn lying(w: &Wallet, understated: usize) -> Psbt {
    let mut psbt = honest(w);
    for input in &mut psbt.inputs {
        input.non_witness_utxo = None;
    }
    psbt.inputs[understated]
        .witness_utxo
        .as_mut()
        .expect("segwit inputs carry witness_utxo")
        .value = BtcAmount::from_sat(SHOWN_FEE);
    psbt
}

fn raw_tx(hex_text: &str) -> Transaction {
    bitcoin::consensus::deserialize(&hex::decode(hex_text).unwrap()).unwrap()
}

/// Combines the two signed transactions: input 1's witness from the first (where input 1 was
/// truthful) and input 0's from the second.
fn combine(first: &str, second: &str) -> Transaction {
    let first = raw_tx(first);
    let second = raw_tx(second);
    assert_eq!(
        first.compute_txid(),
        second.compute_txid(),
        "same transaction"
    );
    let mut combined = first.clone();
    combined.input[0].witness = second.input[0].witness.clone();
    combined
}

/// Consensus-verifies `tx` against the true spent outputs and returns the fee it really pays.
fn verify_and_fee(tx: &Transaction, spent: &[TxOut]) -> u64 {
    let bytes = bitcoin::consensus::serialize(tx);
    for i in 0..spent.len() {
        consensus_verify_input(&bytes, spent, i).unwrap();
    }
    let inputs: u64 = spent.iter().map(|o| o.value.to_sat()).sum();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    inputs - outputs
}

fn chain_request(
    w: &Wallet,
    backend: &custos::backend::SoftwareBackend,
    psbt: &Psbt,
    options: &SignOptions,
) -> Result<String, PsbtError> {
    let decoded = decode(w, psbt.to_string().as_bytes(), options)?;
    assert_eq!(
        decoded.intent().fee,
        custos::amount::Amount::from(SHOWN_FEE),
        "each request shows a small fee"
    );
    match sign(decoded, w, backend).unwrap() {
        BitcoinSigned::Final { raw_tx_hex, .. } => Ok(raw_tx_hex),
        other => panic!("expected a final transaction, got {other:?}"),
    }
}

#[test]
fn split_requests_are_refused_by_default_naming_the_input() {
    for (purpose, script) in [(Purpose::Bip84, "p2wpkh"), (Purpose::Bip49, "p2sh-p2wpkh")] {
        let (w, backend) = wallet("hot", ABANDON, BtcNetwork::Regtest, purpose);
        for understated in [0, 1] {
            let e = chain_request(
                &w,
                &backend,
                &lying(&w, understated),
                &SignOptions::default(),
            )
            .unwrap_err();
            // The first of our inputs without its previous transaction is named (both lack it).
            assert_eq!(
                e,
                PsbtError::MissingPreviousTransaction { input: 0, script },
                "{purpose:?}"
            );
            let message = e.to_string();
            assert!(message.contains("input 0"), "{message}");
            assert!(message.contains("non_witness_utxo"), "{message}");
            assert!(message.contains("CVE-2020-14199"), "{message}");
        }
        // The honest PSBT (previous transactions included) decodes, and shows the real fee.
        let decoded = decode(
            &w,
            honest(&w).to_string().as_bytes(),
            &SignOptions {
                max_fee_sat: u64::MAX,
                max_fee_rate_sat_per_vb: u64::MAX,
                ..SignOptions::default()
            },
        )
        .unwrap();
        assert_eq!(decoded.intent().fee, custos::amount::Amount::from(ONE_BTC));
        // And with them, the fee cap refuses it.
        assert!(matches!(
            decode(
                &w,
                honest(&w).to_string().as_bytes(),
                &SignOptions::default()
            ),
            Err(PsbtError::AbsurdFee { fee: ONE_BTC, .. })
        ));
    }
}

#[test]
fn a_previous_transaction_that_lies_is_refused_too() {
    let (w, _) = wallet("hot", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    // The full transaction given, but witness_utxo understates the amount.
    let mut psbt = honest(&w);
    psbt.inputs[1].witness_utxo.as_mut().unwrap().value = BtcAmount::from_sat(SHOWN_FEE);
    assert!(matches!(
        decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()),
        Err(PsbtError::UtxoConflict { input: 1, .. })
    ));
    // A forged previous transaction whose output says less: its txid is not the outpoint's.
    let mut psbt = honest(&w);
    let vout = psbt.unsigned_tx.input[1].previous_output.vout as usize;
    let prev = psbt.inputs[1].non_witness_utxo.as_mut().unwrap();
    prev.output[vout].value = BtcAmount::from_sat(SHOWN_FEE);
    psbt.inputs[1].witness_utxo = Some(prev.output[vout].clone());
    assert!(matches!(
        decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()),
        Err(PsbtError::NonWitnessUtxoMismatch { input: 1, .. })
    ));
}

#[test]
fn with_the_weakening_the_attack_burns_one_btc() {
    // The control: the attack is real, and this test would catch it if the default regressed.
    let (w, backend) = wallet("hot", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    let loose = SignOptions {
        allow_witness_utxo_only: true,
        ..SignOptions::default()
    };
    let first = chain_request(&w, &backend, &lying(&w, 0), &loose).unwrap();
    let second = chain_request(&w, &backend, &lying(&w, 1), &loose).unwrap();
    let spent = spent_outputs(&honest(&w));
    let combined = combine(&first, &second);
    let fee = verify_and_fee(&combined, &spent);
    assert_eq!(fee, ONE_BTC);
    assert!(fee > SignOptions::default().max_fee_sat);
}

#[test]
fn taproot_inputs_need_only_witness_utxo() {
    // BIP341 commits to every spent amount: the same lie gives signatures that do not verify.
    let (w, backend) = wallet("tr", ABANDON, BtcNetwork::Regtest, Purpose::Bip86);
    let mut psbt = Builder::new()
        .ours(&w, false, 0, 200_000)
        .ours(&w, false, 1, 100_000)
        .pay(external(), 290_000)
        .build();
    let spent = spent_outputs(&psbt);
    for input in &mut psbt.inputs {
        input.non_witness_utxo = None;
    }
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    let BitcoinSigned::Final { raw_tx_hex, .. } = sign(decoded, &w, &backend).unwrap() else {
        panic!("not final");
    };
    consensus_verify(&raw_tx_hex, &spent);

    psbt.inputs[0].witness_utxo.as_mut().unwrap().value = BtcAmount::from_sat(195_000);
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    let BitcoinSigned::Final { raw_tx_hex, .. } = sign(decoded, &w, &backend).unwrap() else {
        panic!("not final");
    };
    let bytes = hex::decode(raw_tx_hex).unwrap();
    for i in 0..2 {
        assert!(
            consensus_verify_input(&bytes, &spent, i).is_err(),
            "input {i}"
        );
    }
}

// --- through the signing core -------------------------------------------------------------

const PASS: &str = "correct horse battery staple";
const PAYER: &str = "spiffe://t/payouts";

const POLICY: &str = r#"
[policy]
name = "fee-attack"
[roles]
signer = ["spiffe://t/payouts"]
[assets.bitcoin.regtest]
native = { symbol = "BTC", decimals = 8 }

[[rules]]
name = "btc payouts"
effect = "allow"
roles = ["signer"]
wallets = ["btc"]
kinds = ["transfer"]
assets = ["BTC"]
max_amount = "2 BTC"
destinations = "any"
"#;

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
    state: PathBuf,
    policy: PathBuf,
    btc: Wallet,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let pass = SecretString::new(PASS.into());
        let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
        let ks = KeyStore::create(
            &store,
            &pass,
            KdfParams::unsafe_weak(64, 1).unwrap(),
            &mnemonic,
            &SecretString::new(String::new()),
        )
        .unwrap();
        let btc = ks
            .unseal(&pass)
            .unwrap()
            .create_wallet(
                "btc",
                Network::Bitcoin(BtcNetwork::Regtest),
                Purpose::Bip84,
                0,
            )
            .unwrap();
        drop(ks);
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        Env {
            state: dir.path().join("state"),
            store,
            policy,
            btc,
            _dir: dir,
        }
    }

    fn open(&self, bitcoin: SignOptions) -> SigningCore {
        let core = SigningCore::open(CoreConfig {
            store_dir: self.store.clone(),
            state_dir: self.state.clone(),
            policy_path: self.policy.clone(),
            bitcoin,
            ..CoreConfig::new(Default::default(), Default::default(), Default::default())
        })
        .unwrap();
        core.unseal_with_passphrase(&SecretString::new(PASS.into()))
            .unwrap();
        core
    }
}

fn request(id: &str, psbt: &Psbt) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: "btc".into(),
        payload: SignPayload::BitcoinPsbt(psbt.serialize()),
    }
}

fn payer() -> Principal {
    Principal::new(PAYER, PrincipalSource::SanUri)
}

fn events(core: &SigningCore) -> Vec<String> {
    audit::tail(core.state(), 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

#[tokio::test]
async fn the_signing_core_refuses_both_requests_before_signing() {
    let env = Env::new();
    let core = env.open(SignOptions::default());
    for (id, understated) in [("attack-1", 0), ("attack-2", 1)] {
        let error = core
            .sign(&payer(), request(id, &lying(&env.btc, understated)))
            .await
            .unwrap_err();
        let CoreError::InvalidPayload { code, reason } = &error else {
            panic!("expected an invalid payload, got {error:?}");
        };
        assert_eq!(code, "invalid-psbt");
        assert!(reason.contains("input 0"), "{reason}");
        assert!(reason.contains("non_witness_utxo"), "{reason}");
    }
    assert_eq!(
        custos::state::outbox::head(core.state()).unwrap(),
        0,
        "nothing signed, nothing delivered"
    );
    let events = events(&core);
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("sign.allow") || e == "sign.signed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_signing_core_with_the_weakening_signs_both_and_the_fee_burns() {
    let env = Env::new();
    let core = env.open(SignOptions {
        allow_witness_utxo_only: true,
        ..SignOptions::default()
    });
    let mut raw = Vec::new();
    for (id, understated) in [("attack-1", 0), ("attack-2", 1)] {
        let reply = core
            .sign(&payer(), request(id, &lying(&env.btc, understated)))
            .await
            .unwrap();
        assert_eq!(reply.intent.fee, custos::amount::Amount::from(SHOWN_FEE));
        let SignOutcome::Signed(signed) = reply.outcome else {
            panic!("not signed");
        };
        let SignedOutput::BitcoinTransaction { raw_tx_hex, .. } = signed.output else {
            panic!("not final");
        };
        raw.push(raw_tx_hex);
    }
    let combined = combine(&raw[0], &raw[1]);
    let fee = verify_and_fee(&combined, &spent_outputs(&honest(&env.btc)));
    assert_eq!(fee, ONE_BTC);

    // The weakening is written into the audit chain when the host asks.
    assert_eq!(core.audit_weakened_options().await.unwrap(), 1);
    let last = audit::tail(core.state(), 1).unwrap().remove(0);
    assert_eq!(last.event, custos::signing::host::WEAKENED_EVENT);
    assert_eq!(last.principal, custos::signing::HOST_PRINCIPAL);
    let detail = last.detail.unwrap();
    assert!(
        detail.contains("bitcoin.allow_witness_utxo_only = true"),
        "{detail}"
    );
}
