//! BIP174 finaliser and extractor for the input types this wallet signs.
//!
//! An owned input with our signature gets its `final_script_witness` / `final_script_sig`:
//! P2WPKH `[sig, pubkey]`; P2SH-P2WPKH the same plus scriptSig `push(redeem script)`; P2PKH
//! scriptSig `push(sig) push(pubkey)`; P2TR key path `[schnorr sig]`. As BIP174 asks, the other
//! fields of a finalised input are dropped (previous outputs and unknown/proprietary fields stay).
//! Foreign inputs that are already finalised stay as they are. When every input is final, the
//! network transaction is extracted; otherwise the PSBT goes back to its other signers.

use bitcoin::consensus::encode;
use bitcoin::psbt::Input;
use bitcoin::script::PushBytesBuf;
use bitcoin::{ScriptBuf, Witness};

use super::psbt::{Checked, ScriptKind};
use super::sign::p2wpkh_program;
use super::BitcoinSigned;

/// Finalises the owned inputs that carry our signature and assembles the result.
pub(crate) fn finalize(mut checked: Checked) -> BitcoinSigned {
    for owned in checked.owned.iter().flatten() {
        let input = &mut checked.psbt.inputs[owned.index];
        if input.final_script_sig.is_some() || input.final_script_witness.is_some() {
            continue;
        }
        let (script_sig, witness) = match owned.kind {
            ScriptKind::P2tr => {
                let Some(sig) = input.tap_key_sig else {
                    continue;
                };
                (None, Some(Witness::p2tr_key_spend(&sig)))
            }
            kind => {
                let key = bitcoin::PublicKey::new(owned.public_key);
                let Some(sig) = input.partial_sigs.get(&key) else {
                    continue;
                };
                match kind {
                    ScriptKind::P2pkh => {
                        let script = ScriptBuf::builder()
                            .push_slice(sig.serialize())
                            .push_key(&key)
                            .into_script();
                        (Some(script), None)
                    }
                    ScriptKind::P2wpkh => (None, Some(Witness::p2wpkh(sig, &owned.public_key))),
                    _ => {
                        let redeem = PushBytesBuf::try_from(p2wpkh_program(owned).into_bytes())
                            .expect("a 22-byte p2wpkh program is a valid push");
                        let script = ScriptBuf::builder().push_slice(redeem).into_script();
                        (Some(script), Some(Witness::p2wpkh(sig, &owned.public_key)))
                    }
                }
            }
        };
        *input = Input {
            non_witness_utxo: input.non_witness_utxo.take(),
            witness_utxo: input.witness_utxo.take(),
            final_script_sig: script_sig,
            final_script_witness: witness,
            unknown: std::mem::take(&mut input.unknown),
            proprietary: std::mem::take(&mut input.proprietary),
            ..Input::default()
        };
    }
    let complete = checked
        .psbt
        .inputs
        .iter()
        .all(|i| i.final_script_sig.is_some() || i.final_script_witness.is_some());
    if !complete {
        return BitcoinSigned::Partial {
            psbt_base64: checked.psbt.to_string(),
        };
    }
    // The fee (and its rate) was checked against the caps when the PSBT was decoded.
    let tx = checked.psbt.extract_tx_unchecked_fee_rate();
    BitcoinSigned::Final {
        raw_tx_hex: encode::serialize_hex(&tx),
        txid: tx.compute_txid().to_string(),
        wtxid: tx.compute_wtxid().to_string(),
    }
}
