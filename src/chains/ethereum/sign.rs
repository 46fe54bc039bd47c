//! Signing through the key backend: the digest goes out, a recoverable signature comes back, and
//! nothing is released before it is checked — low-S (EIP-2), recovery id 0 or 1, and recovering
//! to the address the request was decoded for. Recovery runs in libsecp256k1 (about three times
//! faster here than RustCrypto's `k256`, which the start-up self-test keeps as an independent
//! check of the same arithmetic).
//!
//! Transactions come back as the raw EIP-2718 encoding (legacy: `v = chainId × 2 + 35 + y`, per
//! EIP-155; typed: `yParity`) with their hash; messages as 65 bytes `r ‖ s ‖ v` with `v = 27 + y`.

use alloy_primitives::{Signature, B256};
use bitcoin::secp256k1::Message;

use super::error::EthError;
use super::{Body, DecodedEth, EthSigned};
use crate::backend::KeyBackend;
use crate::wallet::Wallet;

/// Signs a decoded request with the wallet's key at the decoded index.
pub fn sign(
    decoded: DecodedEth,
    wallet: &Wallet,
    backend: &dyn KeyBackend,
) -> Result<EthSigned, EthError> {
    if decoded.wallet != wallet.name {
        return Err(EthError::WalletMismatch {
            decoded: decoded.wallet.clone(),
            wallet: wallet.name.clone(),
        });
    }
    let ours = super::our_address(wallet, decoded.index)?;
    if ours != decoded.from {
        return Err(EthError::WalletMismatch {
            decoded: decoded.wallet.clone(),
            wallet: wallet.name.clone(),
        });
    }
    let key = wallet.key_ref(false, decoded.index);
    let digest = decoded.hash;
    let recoverable = backend
        .sign_ecdsa_recoverable(&key, &digest.0)?
        .ok_or_else(|| EthError::KeyNotFound(wallet.name.clone()))?;
    let signature = checked_signature(&recoverable, &digest, &decoded.from)?;
    Ok(match &decoded.body {
        Body::Transaction(tx) => {
            let (raw, hash) = tx.encode_signed(&signature);
            EthSigned::Transaction {
                raw_tx_hex: format!("0x{}", hex::encode(raw)),
                tx_hash: format!("{hash:#x}"),
            }
        }
        Body::Message => EthSigned::Message {
            signature_hex: format!("0x{}", hex::encode(message_signature_bytes(&signature))),
        },
    })
}

/// The alloy signature of a libsecp256k1 recoverable signature, after checking that it is low-S,
/// has recovery id 0 or 1, and recovers to `expected` over `digest`.
pub fn checked_signature(
    recoverable: &bitcoin::secp256k1::ecdsa::RecoverableSignature,
    digest: &B256,
    expected: &alloy_primitives::Address,
) -> Result<Signature, EthError> {
    let (recid, compact) = recoverable.serialize_compact();
    let parity = match recid.to_i32() {
        0 => false,
        1 => true,
        other => {
            return Err(EthError::BadSignature(format!(
                "recovery id {other}: expected 0 or 1"
            )))
        }
    };
    let signature = Signature::from_scalars_and_parity(
        B256::from_slice(&compact[..32]),
        B256::from_slice(&compact[32..]),
        parity,
    );
    if signature.normalize_s().is_some() {
        return Err(EthError::BadSignature(
            "high s (eip-2 requires low s)".into(),
        ));
    }
    let key = crate::keys::secp()
        .recover_ecdsa(&Message::from_digest(digest.0), recoverable)
        .map_err(|e| EthError::BadSignature(e.to_string()))?;
    let recovered = crate::keys::account::ethereum_address_of(&key);
    if recovered != *expected {
        return Err(EthError::BadSignature(format!(
            "recovers to {recovered}, expected {expected}"
        )));
    }
    Ok(signature)
}

/// `r ‖ s ‖ v` with `v = 27 + y_parity`, as `personal_sign` and `eth_signTypedData_v4` return.
pub fn message_signature_bytes(signature: &Signature) -> [u8; 65] {
    let mut out = [0u8; 65];
    out[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    out[32..64].copy_from_slice(&signature.s().to_be_bytes::<32>());
    out[64] = 27 + u8::from(signature.v());
    out
}
