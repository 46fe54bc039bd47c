//! Sighashes of the inputs this wallet owns, signed through the key backend.
//!
//! - P2WPKH and P2SH-P2WPKH: BIP143 sighash over the P2WPKH script code; ECDSA, low-S, low-R
//!   grinding as Bitcoin Core does; the signature goes into `partial_sigs`.
//! - P2PKH: legacy sighash; same ECDSA.
//! - P2TR key path (BIP86): BIP341 sighash with every spent output (`Prevouts::All`); BIP340
//!   Schnorr with the key tweaked by the BIP86 (empty) tree; the signature goes into `tap_key_sig`.
//!
//! The backend sees a key reference and a digest, never the PSBT. Each signature is verified
//! against the wallet's own re-derived key before it is kept, so a faulty backend cannot slip a
//! bad signature into a transaction. Inputs that are already finalised, or whose key the backend
//! does not hold (`Ok(None)`), are left as they are.

use bitcoin::key::TapTweak;
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{ecdsa, taproot, ScriptBuf};

use super::error::SignError;
use super::psbt::{Checked, OwnedInput, ScriptKind, Sighash};
use crate::backend::KeyBackend;
use crate::keys::secp;

/// Signs every owned input the backend holds a key for; returns how many it signed.
pub(crate) fn sign_owned(
    checked: &mut Checked,
    backend: &dyn KeyBackend,
) -> Result<usize, SignError> {
    let tx = checked.psbt.unsigned_tx.clone();
    let mut cache = SighashCache::new(&tx);
    let mut signed = 0;
    for owned in checked.owned.iter().flatten() {
        let i = owned.index;
        let input = &mut checked.psbt.inputs[i];
        if input.final_script_sig.is_some() || input.final_script_witness.is_some() {
            continue;
        }
        let prevout = &checked.prevouts[i];
        let sighash_err = |reason: String| SignError::Sighash { input: i, reason };
        match owned.sighash {
            Sighash::Ecdsa(ty) => {
                let digest: [u8; 32] = match owned.kind {
                    ScriptKind::P2pkh => {
                        use bitcoin::hashes::Hash;
                        cache
                            .legacy_signature_hash(i, &prevout.script_pubkey, ty.to_u32())
                            .map_err(|e| sighash_err(e.to_string()))?
                            .to_byte_array()
                    }
                    _ => {
                        use bitcoin::hashes::Hash;
                        let program = p2wpkh_program(owned);
                        cache
                            .p2wpkh_signature_hash(i, &program, prevout.value, ty)
                            .map_err(|e| sighash_err(e.to_string()))?
                            .to_byte_array()
                    }
                };
                let Some(signature) = backend
                    .sign_ecdsa(&owned.key, &digest, true)
                    .map_err(|source| SignError::Backend { input: i, source })?
                else {
                    continue;
                };
                secp()
                    .verify_ecdsa(&Message::from_digest(digest), &signature, &owned.public_key)
                    .map_err(|_| SignError::BadSignature {
                        input: i,
                        key: owned.public_key.to_string(),
                    })?;
                input.partial_sigs.insert(
                    bitcoin::PublicKey::new(owned.public_key),
                    ecdsa::Signature {
                        signature,
                        sighash_type: ty,
                    },
                );
                if owned.kind == ScriptKind::P2shP2wpkh && input.redeem_script.is_none() {
                    input.redeem_script = Some(p2wpkh_program(owned));
                }
            }
            Sighash::Taproot(ty) => {
                use bitcoin::hashes::Hash;
                let digest = cache
                    .taproot_key_spend_signature_hash(i, &Prevouts::All(&checked.prevouts), ty)
                    .map_err(|e| sighash_err(e.to_string()))?
                    .to_byte_array();
                let Some(signature) = backend
                    .sign_schnorr_taproot(&owned.key, &digest, None)
                    .map_err(|source| SignError::Backend { input: i, source })?
                else {
                    continue;
                };
                let (internal, _) = owned.public_key.x_only_public_key();
                let (output_key, _) = internal.tap_tweak(secp(), None);
                secp()
                    .verify_schnorr(
                        &signature,
                        &Message::from_digest(digest),
                        &output_key.to_x_only_public_key(),
                    )
                    .map_err(|_| SignError::BadSignature {
                        input: i,
                        key: output_key.to_string(),
                    })?;
                input.tap_key_sig = Some(taproot::Signature {
                    signature,
                    sighash_type: ty,
                });
                if input.tap_internal_key.is_none() {
                    input.tap_internal_key = Some(internal);
                }
            }
        }
        signed += 1;
    }
    Ok(signed)
}

/// The P2WPKH program of an owned segwit v0 key (the scriptPubKey, or the P2SH redeem script).
pub(crate) fn p2wpkh_program(owned: &OwnedInput) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::CompressedPublicKey(owned.public_key).wpubkey_hash())
}
