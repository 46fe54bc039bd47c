//! The weight the finalised transaction will have, for the fee rate in the intent.
//!
//! Per input, from what will be in the final transaction:
//! - inputs already finalised (ours or others'): their actual scriptSig and witness;
//! - inputs we sign, with low-R grinding (a DER signature of at most 70 bytes, 71 with the sighash
//!   byte, as Bitcoin Core estimates): P2WPKH witness `[71, 33]`; P2SH-P2WPKH the same plus a
//!   23-byte scriptSig; P2PKH scriptSig `push(71) push(33)`; P2TR key path one 64-byte signature
//!   (65 with an explicit sighash type);
//! - foreign inputs not yet finalised, the standard worst case of their type (P2WPKH and
//!   P2SH-P2WPKH with 72-byte signatures, P2PKH compressed, P2TR key path). For other scripts
//!   (P2WSH, bare scripts) the size of what will satisfy them is unknown: only their fixed part is
//!   counted, so the weight is a lower bound and the fee rate an upper bound — a cap on the fee
//!   rate then errs towards refusing.
//!
//! Outputs and the transaction's fixed fields are known exactly.

use bitcoin::transaction::{predict_weight, InputWeightPrediction};
use bitcoin::Weight;

use super::psbt::{Checked, ScriptKind, Sighash};

/// The predicted weight of the finalised transaction.
pub(crate) fn finalised(checked: &Checked) -> Weight {
    let tx = &checked.psbt.unsigned_tx;
    let inputs = checked.psbt.inputs.iter().enumerate().map(|(i, input)| {
        if input.final_script_sig.is_some() || input.final_script_witness.is_some() {
            let script_len = input.final_script_sig.as_ref().map_or(0, |s| s.len());
            let witness: Vec<usize> = input
                .final_script_witness
                .as_ref()
                .map(|w| w.iter().map(<[u8]>::len).collect())
                .unwrap_or_default();
            return InputWeightPrediction::new(script_len, witness);
        }
        if let Some(owned) = &checked.owned[i] {
            return match (owned.kind, owned.sighash) {
                (ScriptKind::P2wpkh, _) => InputWeightPrediction::ground_p2wpkh(1),
                (ScriptKind::P2shP2wpkh, _) => InputWeightPrediction::new(23, [71usize, 33]),
                (ScriptKind::P2pkh, _) => InputWeightPrediction::ground_p2pkh_compressed(1),
                (ScriptKind::P2tr, Sighash::Taproot(bitcoin::TapSighashType::Default)) => {
                    InputWeightPrediction::P2TR_KEY_DEFAULT_SIGHASH
                }
                (ScriptKind::P2tr, _) => InputWeightPrediction::P2TR_KEY_NON_DEFAULT_SIGHASH,
            };
        }
        let script = &checked.prevouts[i].script_pubkey;
        if script.is_p2wpkh() {
            InputWeightPrediction::P2WPKH_MAX
        } else if script.is_p2tr() {
            match &input.tap_key_sig {
                Some(sig) if sig.sighash_type != bitcoin::TapSighashType::Default => {
                    InputWeightPrediction::P2TR_KEY_NON_DEFAULT_SIGHASH
                }
                _ => InputWeightPrediction::P2TR_KEY_DEFAULT_SIGHASH,
            }
        } else if script.is_p2pkh() {
            InputWeightPrediction::P2PKH_COMPRESSED_MAX
        } else if script.is_p2sh() && input.redeem_script.as_ref().is_some_and(|r| r.is_p2wpkh()) {
            InputWeightPrediction::new(23, [72usize, 33])
        } else {
            InputWeightPrediction::new(0, [0usize; 0])
        }
    });
    predict_weight(inputs, tx.script_pubkey_lens())
}
