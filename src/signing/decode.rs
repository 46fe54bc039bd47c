//! Payload -> chain module -> intent, and the signing of a decoded payload.
//!
//! The payload's canonical form ([`StoredPayload`]) is what the request record keeps and what its
//! SHA-256 (the idempotency check) covers: the payload kind, its bytes, the address index (absent
//! and 0 are the same index) and the replacement flag.

use sha2::{Digest, Sha256};

use crate::assets::TokenRegistry;
use crate::backend::{BackendError, KeyBackend};
use crate::chains::bitcoin::{self, BitcoinSigned, DecodedPsbt, SignOptions};
use crate::chains::ethereum::{self, DecodedEth, EthPayload, EthSigned};
use crate::intent::Intent;
use crate::signing::contract::CoreError;
use crate::signing::contract::SignPayload;
use crate::state::requests::{StoredOutput, StoredPayload};
use crate::wallet::Wallet;

/// The canonical stored form of a payload and its SHA-256 (hex).
pub fn canonical(payload: &SignPayload) -> (StoredPayload, String) {
    let mut h = Sha256::new();
    let idx = |i: &Option<u32>| i.unwrap_or(0).to_be_bytes();
    let stored = match payload {
        SignPayload::BitcoinPsbt(bytes) => {
            h.update(b"bitcoin-psbt\0");
            h.update(bytes);
            StoredPayload::BitcoinPsbt {
                hex: hex::encode(bytes),
            }
        }
        SignPayload::EthereumTransaction {
            unsigned_tx,
            address_index,
            replacement,
        } => {
            h.update(b"ethereum-transaction\0");
            h.update(idx(address_index));
            h.update([u8::from(*replacement)]);
            h.update(unsigned_tx);
            StoredPayload::EthereumTransaction {
                hex: hex::encode(unsigned_tx),
                address_index: *address_index,
                replacement: *replacement,
            }
        }
        SignPayload::PersonalMessage {
            message,
            address_index,
        } => {
            h.update(b"personal-message\0");
            h.update(idx(address_index));
            h.update(message);
            StoredPayload::PersonalMessage {
                hex: hex::encode(message),
                address_index: *address_index,
            }
        }
        SignPayload::TypedData {
            json,
            address_index,
        } => {
            h.update(b"typed-data\0");
            h.update(idx(address_index));
            h.update(json.as_bytes());
            StoredPayload::TypedData {
                json: json.clone(),
                address_index: *address_index,
            }
        }
    };
    (stored, hex::encode(h.finalize()))
}

/// A payload decoded for one wallet.
pub enum Decoded {
    /// A PSBT.
    Bitcoin(Box<DecodedPsbt>),
    /// An Ethereum transaction or message.
    Ethereum(Box<DecodedEth>),
}

impl Decoded {
    /// The intent.
    pub fn intent(&self) -> &Intent {
        match self {
            Decoded::Bitcoin(d) => d.intent(),
            Decoded::Ethereum(d) => d.intent(),
        }
    }

    /// For Ethereum transactions: (chain id, from address, nonce, signing hash hex).
    pub fn nonce(&self, wallet: &Wallet) -> Option<(u64, String, u64, String)> {
        match self {
            Decoded::Ethereum(d) if d.transaction().is_some() => Some((
                wallet.network().chain_id()?,
                format!("{:#x}", d.from_address()),
                d.nonce()?,
                format!("0x{}", hex::encode(d.signing_hash())),
            )),
            _ => None,
        }
    }
}

fn bytes_of(field: &str, text: &str) -> Result<Vec<u8>, CoreError> {
    hex::decode(text).map_err(|e| CoreError::Internal {
        reason: format!("stored {field} is not hex: {e}"),
    })
}

/// Decodes a stored payload for `wallet`; parser errors become INVALID_ARGUMENT with the chain
/// module's message.
pub fn decode(
    wallet: &Wallet,
    payload: &StoredPayload,
    tokens: &TokenRegistry,
    options: &SignOptions,
) -> Result<Decoded, CoreError> {
    let invalid = |code: &str, e: &dyn std::fmt::Display| CoreError::InvalidPayload {
        code: code.to_owned(),
        reason: e.to_string(),
    };
    match payload {
        StoredPayload::BitcoinPsbt { hex } => {
            let bytes = bytes_of("psbt", hex)?;
            bitcoin::decode(wallet, &bytes, options)
                .map(|d| Decoded::Bitcoin(Box::new(d)))
                .map_err(|e| invalid("invalid-psbt", &e))
        }
        StoredPayload::EthereumTransaction {
            hex, address_index, ..
        } => {
            let bytes = bytes_of("transaction", hex)?;
            eth(
                wallet,
                *address_index,
                EthPayload::Transaction(&bytes),
                tokens,
            )
            .map_err(|e| invalid("invalid-eth-payload", &e))
        }
        StoredPayload::PersonalMessage { hex, address_index } => {
            let bytes = bytes_of("message", hex)?;
            eth(
                wallet,
                *address_index,
                EthPayload::PersonalMessage(&bytes),
                tokens,
            )
            .map_err(|e| invalid("invalid-eth-payload", &e))
        }
        StoredPayload::TypedData {
            json,
            address_index,
        } => eth(
            wallet,
            *address_index,
            EthPayload::TypedData(json.as_bytes()),
            tokens,
        )
        .map_err(|e| invalid("invalid-eth-payload", &e)),
    }
}

fn eth(
    wallet: &Wallet,
    index: Option<u32>,
    payload: EthPayload<'_>,
    tokens: &TokenRegistry,
) -> Result<Decoded, ethereum::EthError> {
    ethereum::decode(wallet, index.unwrap_or(0), payload, tokens)
        .map(|d| Decoded::Ethereum(Box::new(d)))
}

/// Why a decoded payload was not signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignFailure {
    /// The key backend (an HSM token) cannot be used now; nothing was signed and the request can
    /// be signed later. Carries the backend's reason (naming the token).
    Unavailable(String),
    /// Signing failed for good (a key missing, a signature refused); the message says why.
    Failed(String),
}

impl From<String> for SignFailure {
    fn from(reason: String) -> Self {
        SignFailure::Failed(reason)
    }
}

fn backend_failure(source: Option<&BackendError>, message: String) -> SignFailure {
    match source {
        Some(BackendError::Unavailable { reason, .. }) => SignFailure::Unavailable(reason.clone()),
        _ => SignFailure::Failed(message),
    }
}

fn bitcoin_failure(e: bitcoin::SignError) -> SignFailure {
    let source = match &e {
        bitcoin::SignError::Backend { source, .. } => Some(source),
        _ => None,
    };
    backend_failure(source, e.to_string())
}

fn ethereum_failure(e: ethereum::EthError) -> SignFailure {
    let source = match &e {
        ethereum::EthError::Backend(source) => Some(source),
        _ => None,
    };
    backend_failure(source, e.to_string())
}

/// Signs a decoded payload through `backend`.
pub fn sign(
    decoded: Decoded,
    wallet: &Wallet,
    backend: &dyn KeyBackend,
) -> Result<StoredOutput, SignFailure> {
    match decoded {
        Decoded::Bitcoin(d) => {
            match bitcoin::sign(*d, wallet, backend).map_err(bitcoin_failure)? {
                BitcoinSigned::Final {
                    raw_tx_hex,
                    txid,
                    wtxid,
                } => Ok(StoredOutput::BitcoinTransaction {
                    raw_tx_hex,
                    txid,
                    wtxid,
                }),
                BitcoinSigned::Partial { psbt_base64 } => {
                    use base64::Engine;
                    let psbt = base64::engine::general_purpose::STANDARD
                        .decode(psbt_base64)
                        .map_err(|e| SignFailure::Failed(e.to_string()))?;
                    Ok(StoredOutput::SignedPsbt {
                        psbt_hex: hex::encode(psbt),
                        not_final_reason: "inputs of other signers are not final".into(),
                    })
                }
            }
        }
        Decoded::Ethereum(d) => {
            let signer = format!("{:#x}", d.from_address());
            let digest_hex = format!("0x{}", hex::encode(d.signing_hash()));
            match ethereum::sign(*d, wallet, backend).map_err(ethereum_failure)? {
                EthSigned::Transaction {
                    raw_tx_hex,
                    tx_hash,
                } => Ok(StoredOutput::EthereumTransaction {
                    raw_tx_hex,
                    tx_hash,
                }),
                EthSigned::Message { signature_hex } => Ok(StoredOutput::EthereumSignature {
                    signature_hex: signature_hex.trim_start_matches("0x").to_owned(),
                    signer,
                    digest_hex,
                }),
            }
        }
    }
}
