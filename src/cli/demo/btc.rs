//! The Bitcoin steps of `custos demo`: a PSBT built field by field as an independent wallet
//! (Bitcoin Core, BDK) writes it, decoded into its intent, signed through the software backend and
//! checked independently; then the same PSBT with fake change.

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::hashes::Hash;
use bitcoin::psbt::{Input, Output, Psbt};
use bitcoin::secp256k1::{Message, PublicKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash,
    Witness,
};

use super::{field, print_intent, Demo};
use crate::chains::bitcoin::{decode, sign, BitcoinSigned, SignOptions};
use crate::cli::CliError;
use crate::keys::secp;
use crate::wallet::Wallet;

/// The made-up coin: 0.01 BTC at `btc-hot` 0/0.
const FUNDING_SAT: u64 = 1_000_000;
/// What the payment sends.
const PAYMENT_SAT: u64 = 250_000;
/// The fee: 20 sat/vB on the 141 vB of a one-input, two-output P2WPKH transaction.
const FEE_SAT: u64 = 2_820;

/// Step: a payment from `btc-hot` with change back to it, decoded, signed, checked.
pub(super) fn payment(demo: &Demo) -> Result<(), CliError> {
    let wallet = &demo.btc_hot;
    let payee = external_script(0x11);
    let change = our_script(wallet, true, 0)?;
    let psbt = build_psbt(wallet, &payee, &change)?;
    let text = psbt.to_string();
    let file = demo.write("payment.psbt", text.as_bytes())?;
    println!("  An independent wallet spends a made-up 0.01 BTC coin at btc-hot 0/0: it pays an");
    println!("  external address and sends the change to btc-hot 1/0, with key origins, as");
    println!("  Bitcoin Core writes a PSBT.");
    field(
        "psbt",
        &format!("{} ({} bytes base64)", file.display(), text.len()),
    );

    let decoded = decode(wallet, text.as_bytes(), &SignOptions::default()).map_err(refused)?;
    print_intent(decoded.intent());
    let intent = decoded.intent();
    if intent.change.len() != 1 || intent.amount != crate::amount::Amount::from(PAYMENT_SAT) {
        return Err(CliError::operational(
            "the intent does not show the payment and its change",
        ));
    }
    for input in decoded.owned_inputs() {
        field(
            "signs input",
            &format!(
                "{} at m/{} (a key reference: the backend holds the key)",
                input.index, input.key.path
            ),
        );
    }

    let spent = psbt.inputs[0]
        .witness_utxo
        .clone()
        .expect("build_psbt sets witness_utxo");
    let signed = sign(decoded, wallet, &demo.backend)
        .map_err(|e| CliError::operational(format!("signing failed: {e}")))?;
    let BitcoinSigned::Final {
        raw_tx_hex, txid, ..
    } = signed
    else {
        return Err(CliError::operational(
            "every input is ours, yet the transaction is not final",
        ));
    };
    field("raw tx", &raw_tx_hex);
    field("txid", &txid);
    let public_key = wallet
        .account
        .public_key(false, 0)
        .map_err(CliError::operational)?;
    check_signed(&raw_tx_hex, &txid, &spent, &public_key)?;
    println!("  checked: the txid recomputes from the raw tx, and input 0's signature verifies");
    println!("  against btc-hot's key at 0/0 over the BIP143 sighash computed here.");
    Ok(())
}

/// Step: the same payment, but the "change" pays someone else while its key origin claims our
/// path. The intent must count it as a destination.
pub(super) fn fake_change(demo: &Demo) -> Result<(), CliError> {
    let wallet = &demo.btc_hot;
    let payee = external_script(0x11);
    let thief = external_script(0x22);
    let psbt = build_psbt(wallet, &payee, &thief)?;
    let text = psbt.to_string();
    let file = demo.write("fake-change.psbt", text.as_bytes())?;
    let claimed = wallet.account.child_path(true, 0);
    println!("  Output 1 carries btc-hot's key origin at m/{claimed} (\"this is change\"),");
    println!(
        "  but its script pays {}, not {}.",
        address(&thief, wallet)?,
        address(&our_script(wallet, true, 0)?, wallet)?
    );
    field("psbt", &file.display().to_string());

    let decoded = decode(wallet, text.as_bytes(), &SignOptions::default()).map_err(refused)?;
    let intent = decoded.intent();
    print_intent(intent);
    let thief_address = address(&thief, wallet)?;
    let counted = intent
        .destinations
        .iter()
        .any(|d| d.address == thief_address);
    if !intent.change.is_empty() || !counted {
        return Err(CliError::operational(
            "fake change was not counted as an external destination",
        ));
    }
    println!(
        "  fake change is an external destination: {thief_address} (the intent sends {}, not {})",
        intent.asset.format(intent.amount),
        intent
            .asset
            .format(crate::amount::Amount::from(PAYMENT_SAT))
    );
    println!("  A policy limit or an approver now sees the whole amount leaving the wallet.");
    Ok(())
}

fn refused(e: crate::chains::bitcoin::PsbtError) -> CliError {
    CliError::operational(format!("psbt refused: {e}"))
}

/// A P2WPKH script for a 20-byte hash no one has a key for (a stand-in for someone else's
/// address).
fn external_script(tag: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([tag; 20]))
}

fn our_script(wallet: &Wallet, change: bool, index: u32) -> Result<ScriptBuf, CliError> {
    wallet
        .account
        .script_pubkey(change, index)
        .map_err(CliError::operational)?
        .ok_or_else(|| CliError::operational("not a bitcoin wallet"))
}

fn address(script: &ScriptBuf, wallet: &Wallet) -> Result<String, CliError> {
    let network = wallet
        .network()
        .bitcoin()
        .ok_or_else(|| CliError::operational("not a bitcoin wallet"))?;
    Address::from_script(script, network)
        .map(|a| a.to_string())
        .map_err(CliError::operational)
}

fn origin(wallet: &Wallet, change: bool, index: u32) -> (Fingerprint, DerivationPath) {
    (
        wallet.account.master_fingerprint,
        wallet.account.child_path(change, index),
    )
}

/// The PSBT an independent wallet writes: one input (the made-up coin at 0/0, with
/// `non_witness_utxo`, `witness_utxo` and its key origin), a payment to `payee`, and a second
/// output to `change_script` whose key origin claims `btc-hot` 1/0.
fn build_psbt(
    wallet: &Wallet,
    payee: &ScriptBuf,
    change_script: &ScriptBuf,
) -> Result<Psbt, CliError> {
    let funding = funding_tx(our_script(wallet, false, 0)?);
    let input_key = wallet
        .account
        .public_key(false, 0)
        .map_err(CliError::operational)?;
    let change_key = wallet
        .account
        .public_key(true, 0)
        .map_err(CliError::operational)?;
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(funding.compute_txid(), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(PAYMENT_SAT),
                script_pubkey: payee.clone(),
            },
            TxOut {
                value: Amount::from_sat(FUNDING_SAT - PAYMENT_SAT - FEE_SAT),
                script_pubkey: change_script.clone(),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx)
        .map_err(|e| CliError::operational(format!("cannot build the psbt: {e}")))?;
    psbt.inputs[0] = Input {
        witness_utxo: Some(funding.output[0].clone()),
        non_witness_utxo: Some(funding),
        bip32_derivation: BTreeMap::from([(input_key, origin(wallet, false, 0))]),
        ..Input::default()
    };
    psbt.outputs[1] = Output {
        bip32_derivation: BTreeMap::from([(change_key, origin(wallet, true, 0))]),
        ..Output::default()
    };
    Ok(psbt)
}

/// A made-up transaction paying [`FUNDING_SAT`] to `script` (its own input spends nothing real).
fn funding_tx(script: ScriptBuf) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(
                Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(
                    b"custos demo: a coin that never existed",
                )),
                0,
            ),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(FUNDING_SAT),
            script_pubkey: script,
        }],
    }
}

/// Checks the signed transaction without Custos' signing code: its txid, and the P2WPKH
/// signature of input 0 over a BIP143 sighash computed here.
fn check_signed(
    raw_tx_hex: &str,
    txid: &str,
    spent: &TxOut,
    key: &PublicKey,
) -> Result<(), CliError> {
    let bad = |what: String| CliError::operational(format!("the signed transaction {what}"));
    let bytes = hex::decode(raw_tx_hex).map_err(|e| bad(format!("is not hex: {e}")))?;
    let tx: Transaction =
        bitcoin::consensus::deserialize(&bytes).map_err(|e| bad(format!("does not parse: {e}")))?;
    if tx.compute_txid().to_string() != txid {
        return Err(bad(format!("has txid {}, not {txid}", tx.compute_txid())));
    }
    let witness = &tx.input[0].witness;
    let (Some(sig), Some(pk), 2) = (witness.nth(0), witness.nth(1), witness.len()) else {
        return Err(bad("has no P2WPKH witness on input 0".into()));
    };
    if pk != key.serialize() {
        return Err(bad("input 0 shows another public key".into()));
    }
    let signature = bitcoin::ecdsa::Signature::from_slice(sig)
        .map_err(|e| bad(format!("input 0 signature does not parse: {e}")))?;
    if signature.sighash_type != EcdsaSighashType::All {
        return Err(bad("input 0 is not SIGHASH_ALL".into()));
    }
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(0, &spent.script_pubkey, spent.value, EcdsaSighashType::All)
        .map_err(|e| bad(format!("has no sighash for input 0: {e}")))?;
    secp()
        .verify_ecdsa(
            &Message::from_digest(sighash.to_byte_array()),
            &signature.signature,
            key,
        )
        .map_err(|e| bad(format!("input 0 signature does not verify: {e}")))
}
