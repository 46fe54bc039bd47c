//! PSBTs that lie or ask for too much: each is refused with an error naming the input or output,
//! or (fake change) explained so that nothing is understated.

#[path = "bitcoin_support/mod.rs"]
mod support;

use bitcoin::psbt::PsbtSighashType;
use bitcoin::{Amount as BtcAmount, Network as BtcNetwork, Psbt, ScriptBuf};
use custos::amount::Amount;
use custos::chains::bitcoin::{decode, PsbtError, SignOptions};
use custos::keys::Purpose;
use custos::wallet::Wallet;
use support::*;

fn external() -> ScriptBuf {
    ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap()
}

fn hot(purpose: Purpose) -> Wallet {
    wallet("hot", ABANDON, BtcNetwork::Regtest, purpose).0
}

fn err(w: &Wallet, psbt: &Psbt) -> PsbtError {
    decode(w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap_err()
}

fn simple(w: &Wallet) -> Psbt {
    Builder::new()
        .ours(w, false, 0, 100_000)
        .pay(external(), 60_000)
        .change(w, 0, 39_000)
        .build()
}

#[test]
fn fake_change_is_an_external_destination() {
    let w = hot(Purpose::Bip84);
    let (thief, _) = wallet("thief", ZOO, BtcNetwork::Regtest, Purpose::Bip84);
    // The change output pays the thief but carries our key origin for 1/0.
    let mut psbt = simple(&w);
    psbt.unsigned_tx.output[1].script_pubkey = script(&thief, true, 0);
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    let intent = decoded.intent();
    assert!(intent.change.is_empty());
    assert_eq!(intent.destinations.len(), 2);
    assert_eq!(intent.amount, Amount::from(99_000u64));

    // Our script at another path than the one claimed: still not change.
    let mut psbt = simple(&w);
    psbt.unsigned_tx.output[1].script_pubkey = script(&w, true, 1);
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    assert!(decoded.intent().change.is_empty());

    // Our key with another script type (P2TR of our BIP84 key) is not this wallet's change.
    let mut psbt = simple(&w);
    let pk = w.account.public_key(true, 0).unwrap();
    psbt.unsigned_tx.output[1].script_pubkey =
        ScriptBuf::new_p2tr(custos::keys::secp(), pk.x_only_public_key().0, None);
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    assert!(decoded.intent().change.is_empty());

    // Change with no key origin at all is a destination too.
    let mut psbt = simple(&w);
    psbt.outputs[1] = Default::default();
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    assert!(decoded.intent().change.is_empty());
}

#[test]
fn missing_utxo_data_is_refused() {
    let w = hot(Purpose::Bip84);
    let mut psbt = simple(&w);
    psbt.inputs[0].witness_utxo = None;
    psbt.inputs[0].non_witness_utxo = None;
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::MissingUtxo { input: 0, .. }
    ));

    // A foreign input without any utxo: the fee cannot be known.
    let mut psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .foreign(external(), 5_000)
        .pay(external(), 100_000)
        .build();
    psbt.inputs[1].witness_utxo = None;
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::MissingUtxo { input: 1, .. }
    ));

    // P2PKH: witness_utxo is not enough (legacy signatures do not commit to the amount).
    let legacy = hot(Purpose::Bip44);
    let mut psbt = simple(&legacy);
    psbt.inputs[0].witness_utxo = psbt.inputs[0]
        .non_witness_utxo
        .as_ref()
        .map(|t| t.output[psbt.unsigned_tx.input[0].previous_output.vout as usize].clone());
    psbt.inputs[0].non_witness_utxo = None;
    assert!(matches!(
        err(&legacy, &psbt),
        PsbtError::MissingUtxo {
            input: 0,
            expected: "non_witness_utxo"
        }
    ));

    // Segwit v0 with only witness_utxo is refused by default (CVE-2020-14199), for native and
    // P2SH-wrapped inputs alike, and accepted only when the weakening is asked for.
    for (purpose, script) in [(Purpose::Bip84, "p2wpkh"), (Purpose::Bip49, "p2sh-p2wpkh")] {
        let w = hot(purpose);
        let mut psbt = simple(&w);
        psbt.inputs[0].non_witness_utxo = None;
        let e = err(&w, &psbt);
        assert_eq!(
            e,
            PsbtError::MissingPreviousTransaction { input: 0, script },
            "{purpose:?}"
        );
        let message = e.to_string();
        assert!(message.contains("input 0"), "{message}");
        assert!(message.contains("non_witness_utxo"), "{message}");
        let loose = SignOptions {
            allow_witness_utxo_only: true,
            ..SignOptions::default()
        };
        decode(&w, psbt.to_string().as_bytes(), &loose).unwrap();
    }

    // Taproot signatures commit to every amount: witness_utxo alone is enough by default.
    let tr = hot(Purpose::Bip86);
    let mut psbt = simple(&tr);
    psbt.inputs[0].non_witness_utxo = None;
    decode(&tr, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
}

#[test]
fn mismatched_non_witness_utxo_is_refused() {
    let w = hot(Purpose::Bip84);
    let mut psbt = simple(&w);
    let mut other = psbt.inputs[0].non_witness_utxo.clone().unwrap();
    other.lock_time = bitcoin::absolute::LockTime::from_consensus(1);
    psbt.inputs[0].non_witness_utxo = Some(other);
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::NonWitnessUtxoMismatch { input: 0, .. }
    ));

    // witness_utxo lying about the value while non_witness_utxo tells the truth.
    let mut psbt = simple(&w);
    psbt.inputs[0].witness_utxo.as_mut().unwrap().value = BtcAmount::from_sat(99_000);
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::UtxoConflict { input: 0, .. }
    ));

    // Outpoint index past the previous transaction's outputs.
    let mut psbt = simple(&w);
    psbt.unsigned_tx.input[0].previous_output.vout = 50;
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::VoutOutOfRange { input: 0, .. }
    ));
}

#[test]
fn claims_of_our_key_that_do_not_hold_are_refused() {
    let w = hot(Purpose::Bip84);
    // The previous output is someone else's script, yet the input claims our key at 0/0.
    let mut psbt = simple(&w);
    psbt.inputs[0].non_witness_utxo = None;
    psbt.inputs[0].witness_utxo.as_mut().unwrap().script_pubkey = external();
    let e = err(&w, &psbt);
    assert!(
        matches!(e, PsbtError::ScriptMismatch { input: 0, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("input 0"));

    // P2SH-P2WPKH with a redeem script that is not our key's program.
    let w49 = hot(Purpose::Bip49);
    let mut psbt = simple(&w49);
    psbt.inputs[0].redeem_script = Some(external());
    assert!(matches!(
        err(&w49, &psbt),
        PsbtError::RedeemScriptMismatch { input: 0, .. }
    ));

    // A taproot input of ours that claims a script tree.
    let w86 = hot(Purpose::Bip86);
    let mut psbt = simple(&w86);
    psbt.inputs[0].tap_merkle_root = Some(bitcoin::hashes::Hash::all_zeros());
    assert!(matches!(
        err(&w86, &psbt),
        PsbtError::TaprootTree { input: 0, .. }
    ));

    // No input of ours at all.
    let (other, _) = wallet("other", ZOO, BtcNetwork::Regtest, Purpose::Bip84);
    let psbt = simple(&other);
    assert!(matches!(err(&w, &psbt), PsbtError::NothingToSign { .. }));
}

#[test]
fn wrong_network_is_refused() {
    // A mainnet PSBT (key origins with coin type 0) sent to a regtest wallet of the same seed.
    let (main, _) = wallet("main", ABANDON, BtcNetwork::Bitcoin, Purpose::Bip84);
    let w = hot(Purpose::Bip84);
    let psbt = simple(&main);
    let e = err(&w, &psbt);
    assert!(matches!(e, PsbtError::WrongNetwork { .. }), "{e}");

    // And the other way round.
    let (main, _) = wallet("main", ABANDON, BtcNetwork::Bitcoin, Purpose::Bip86);
    let test = hot(Purpose::Bip86);
    assert!(matches!(
        err(&main, &simple(&test)),
        PsbtError::WrongNetwork { .. }
    ));

    // A global xpub of the other network kind.
    let mut psbt = simple(&w);
    psbt.xpub.insert(
        *main.account.xpub().unwrap(),
        (
            main.account.master_fingerprint,
            main.account.path.to_derivation_path(),
        ),
    );
    assert!(matches!(err(&w, &psbt), PsbtError::WrongNetwork { .. }));
}

#[test]
fn odd_sighash_types_are_refused() {
    for purpose in [
        Purpose::Bip84,
        Purpose::Bip86,
        Purpose::Bip44,
        Purpose::Bip49,
    ] {
        let w = hot(purpose);
        for ty in [2u32, 3, 0x81, 0x82, 0x83] {
            let mut psbt = simple(&w);
            psbt.inputs[0].sighash_type = Some(PsbtSighashType::from_u32(ty));
            assert!(
                matches!(
                    err(&w, &psbt),
                    PsbtError::SighashNotAllowed { input: 0, .. }
                ),
                "{purpose:?} {ty:#x}"
            );
            // Allowed explicitly, they decode.
            let loose = SignOptions {
                allow_all_sighashes: true,
                ..SignOptions::default()
            };
            decode(&w, psbt.to_string().as_bytes(), &loose).unwrap();
        }
        for ty in [0x04u32, 0x40, 0x1_0001] {
            let mut psbt = simple(&w);
            psbt.inputs[0].sighash_type = Some(PsbtSighashType::from_u32(ty));
            assert!(
                matches!(
                    err(&w, &psbt),
                    PsbtError::InvalidSighash { input: 0, .. }
                        | PsbtError::SighashNotAllowed { input: 0, .. }
                ),
                "{purpose:?} {ty:#x}"
            );
        }
    }
    // SIGHASH_DEFAULT (0) is a taproot type only.
    let w = hot(Purpose::Bip84);
    let mut psbt = simple(&w);
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from_u32(0));
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::InvalidSighash { input: 0, .. }
    ));
}

#[test]
fn duplicate_inputs_are_refused() {
    let w = hot(Purpose::Bip84);
    let mut psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .ours(&w, false, 1, 100_000)
        .pay(external(), 199_000)
        .build();
    psbt.unsigned_tx.input[1].previous_output = psbt.unsigned_tx.input[0].previous_output;
    psbt.inputs[1] = psbt.inputs[0].clone();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::DuplicateInput {
            first: 0,
            second: 1,
            ..
        }
    ));
}

#[test]
fn absurd_fees_are_refused() {
    let w = hot(Purpose::Bip84);
    // 0.2 BTC fee: above max_fee_sat.
    let psbt = Builder::new()
        .ours(&w, false, 0, 30_000_000)
        .pay(external(), 10_000_000)
        .build();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::AbsurdFee {
            fee: 20_000_000,
            ..
        }
    ));
    // 0.01 BTC fee on one small payment: about 9000 sat/vB.
    let psbt = Builder::new()
        .ours(&w, false, 0, 1_100_000)
        .pay(external(), 100_000)
        .build();
    let e = err(&w, &psbt);
    assert!(matches!(e, PsbtError::AbsurdFeeRate { .. }), "{e}");
    // The caps are options.
    let loose = SignOptions {
        max_fee_rate_sat_per_vb: u64::MAX,
        max_fee_sat: u64::MAX,
        ..SignOptions::default()
    };
    decode(&w, psbt.to_string().as_bytes(), &loose).unwrap();

    // Outputs above inputs.
    let psbt = Builder::new()
        .ours(&w, false, 0, 1_000)
        .pay(external(), 100_000)
        .build();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::OutputsExceedInputs { .. }
    ));
}

#[test]
fn dust_burnt_value_and_unknown_scripts_are_refused() {
    let w = hot(Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .pay(external(), 293)
        .change(&w, 0, 98_000)
        .build();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::Dust {
            output: 0,
            value: 293,
            min: 294
        }
    ));
    // Dust change is dust too.
    let psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .pay(external(), 90_000)
        .change(&w, 0, 100)
        .build();
    assert!(matches!(err(&w, &psbt), PsbtError::Dust { output: 1, .. }));

    let psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .pay(ScriptBuf::new_op_return(b"x"), 5_000)
        .pay(external(), 90_000)
        .build();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::BurntValue { output: 0, .. }
    ));

    // A bare P2PK output has no address: who receives it cannot be named.
    let pk = bitcoin::PublicKey::new(w.account.public_key(false, 9).unwrap());
    let psbt = Builder::new()
        .ours(&w, false, 0, 100_000)
        .pay(ScriptBuf::new_p2pk(&pk), 90_000)
        .build();
    assert!(matches!(
        err(&w, &psbt),
        PsbtError::UnknownOutputScript { output: 0, .. }
    ));
}

#[test]
fn garbage_is_refused_without_panicking() {
    let w = hot(Purpose::Bip84);
    let opts = SignOptions::default();
    for payload in [
        &b""[..],
        b"psbt\xff",
        b"cHNidP8=",
        b"not a psbt",
        b"70736274ff00",
        &[0xff; 64],
    ] {
        assert!(matches!(
            decode(&w, payload, &opts),
            Err(PsbtError::Encoding(_))
        ));
    }
    let huge = vec![b'A'; 5_000_000];
    assert!(matches!(
        decode(&w, &huge, &opts),
        Err(PsbtError::TooLarge { .. })
    ));

    // Every truncation of a valid PSBT fails cleanly.
    let bytes = simple(&w).serialize();
    for len in 0..bytes.len() {
        assert!(decode(&w, &bytes[..len], &opts).is_err());
    }
}

#[test]
fn an_ethereum_wallet_is_refused() {
    let mut w = hot(Purpose::Bip84);
    w.account.network = custos::keys::Network::Ethereum { chain_id: 1 };
    assert!(matches!(
        err(&w, &simple(&hot(Purpose::Bip84))),
        PsbtError::NotBitcoinWallet { .. }
    ));
}

/// Found by the `psbt` fuzz target: text whose tenth byte falls inside a multi-byte character
/// panicked the hex/base64 sniffing. It must be a plain encoding error.
#[test]
fn non_ascii_text_is_an_encoding_error_not_a_panic() {
    let w = hot(Purpose::Bip84);
    let payload = [
        0x61, 0x62, 0x6f, 0x75, 0xed, 0x90, 0x89, 0x75, 0xed, 0x90, 0x89,
    ];
    let error = decode(&w, &payload, &SignOptions::default()).unwrap_err();
    assert!(matches!(error, PsbtError::Encoding(_)), "{error}");
}
