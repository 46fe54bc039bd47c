//! Unsigned transactions in: a JSON object of fields (as `eth_signTransaction` takes them) or
//! unsigned RLP (EIP-155 legacy list, EIP-2718 typed envelopes 0x01 and 0x02), parsed strictly
//! into one of alloy's transaction types.
//!
//! This file owns the transaction types ([`EthTx`]), the dispatch between the two encodings
//! (`parse`) and the RLP half; the JSON half (the `eth_signTransaction` field rules) is in
//! `tx_json.rs`, over the strict JSON reader and value readers of `json.rs`.
//!
//! RLP rules: the unsigned EIP-155 list `[nonce, gasPrice, gas, to, value, data, chainId, 0, 0]`
//! (a pre-EIP-155 six-item list is refused), or `0x01`/`0x02` followed by the unsigned field list
//! of EIP-2930/EIP-1559. Raw bytes or `0x`-hex text. Integers must be canonical (alloy-rlp refuses
//! leading zeros); signed transactions and trailing bytes are refused.

use alloy_consensus::transaction::{RlpEcdsaDecodableTx, RlpEcdsaEncodableTx};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxLegacy};
use alloy_primitives::{Address, Bytes, Signature, B256, U256};
use alloy_rlp::{Decodable, Header};

use super::error::{excerpt, EthError};

/// One unsigned transaction of a type Custos signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EthTx {
    /// Legacy with EIP-155 replay protection (the chain id is always set).
    Legacy(TxLegacy),
    /// EIP-2930 (type 1).
    Eip2930(TxEip2930),
    /// EIP-1559 (type 2).
    Eip1559(TxEip1559),
}

impl EthTx {
    /// The EIP-2718 type (0 for legacy).
    pub fn tx_type(&self) -> u8 {
        match self {
            EthTx::Legacy(_) => 0,
            EthTx::Eip2930(_) => 1,
            EthTx::Eip1559(_) => 2,
        }
    }

    /// The EIP-155 chain id.
    pub fn chain_id(&self) -> u64 {
        match self {
            // parse() never builds a legacy transaction without a chain id.
            EthTx::Legacy(tx) => tx.chain_id.unwrap_or_default(),
            EthTx::Eip2930(tx) => tx.chain_id,
            EthTx::Eip1559(tx) => tx.chain_id,
        }
    }

    /// The account nonce.
    pub fn nonce(&self) -> u64 {
        match self {
            EthTx::Legacy(tx) => tx.nonce,
            EthTx::Eip2930(tx) => tx.nonce,
            EthTx::Eip1559(tx) => tx.nonce,
        }
    }

    /// The recipient, or `None` for a contract creation.
    pub fn to(&self) -> Option<Address> {
        let kind = match self {
            EthTx::Legacy(tx) => tx.to,
            EthTx::Eip2930(tx) => tx.to,
            EthTx::Eip1559(tx) => tx.to,
        };
        kind.to().copied()
    }

    /// The value in wei.
    pub fn value(&self) -> U256 {
        match self {
            EthTx::Legacy(tx) => tx.value,
            EthTx::Eip2930(tx) => tx.value,
            EthTx::Eip1559(tx) => tx.value,
        }
    }

    /// The calldata (or init code).
    pub fn input(&self) -> &Bytes {
        match self {
            EthTx::Legacy(tx) => &tx.input,
            EthTx::Eip2930(tx) => &tx.input,
            EthTx::Eip1559(tx) => &tx.input,
        }
    }

    /// The most this transaction can cost in fees: gas limit × (gas price, or max fee per gas).
    pub fn max_fee(&self) -> U256 {
        let (gas, price) = match self {
            EthTx::Legacy(tx) => (tx.gas_limit, tx.gas_price),
            EthTx::Eip2930(tx) => (tx.gas_limit, tx.gas_price),
            EthTx::Eip1559(tx) => (tx.gas_limit, tx.max_fee_per_gas),
        };
        // At most 2^64 × 2^128: no overflow in 256 bits.
        U256::from(gas) * U256::from(price)
    }

    /// The hash to sign: keccak256 of the EIP-155 list, or of type ‖ rlp(fields).
    pub fn signing_hash(&self) -> B256 {
        match self {
            EthTx::Legacy(tx) => tx.signature_hash(),
            EthTx::Eip2930(tx) => tx.signature_hash(),
            EthTx::Eip1559(tx) => tx.signature_hash(),
        }
    }

    /// The signed transaction as broadcast (EIP-2718 encoding; EIP-155 `v` for legacy) and its
    /// hash.
    pub fn encode_signed(&self, signature: &Signature) -> (Vec<u8>, B256) {
        let mut out = Vec::new();
        let hash = match self {
            EthTx::Legacy(tx) => {
                tx.eip2718_encode(signature, &mut out);
                tx.tx_hash(signature)
            }
            EthTx::Eip2930(tx) => {
                tx.eip2718_encode(signature, &mut out);
                tx.tx_hash(signature)
            }
            EthTx::Eip1559(tx) => {
                tx.eip2718_encode(signature, &mut out);
                tx.tx_hash(signature)
            }
        };
        (out, hash)
    }
}

/// A parsed transaction and the `from` it claims (JSON only).
#[derive(Clone, Debug)]
pub(crate) struct ParsedTx {
    pub tx: EthTx,
    pub from: Option<Address>,
}

/// Parses a JSON object or unsigned RLP (raw, or 0x-hex text) for the wallet's `chain_id`.
pub(crate) fn parse(bytes: &[u8], chain_id: u64) -> Result<ParsedTx, EthError> {
    let first = *bytes.first().ok_or(EthError::Empty("transaction"))?;
    if first == 0x01 || first == 0x02 || first >= 0xc0 {
        return Ok(ParsedTx {
            tx: parse_rlp(bytes, chain_id)?,
            from: None,
        });
    }
    if (0x03..=0x7f).contains(&first) && !first.is_ascii_graphic() && !first.is_ascii_whitespace() {
        return Err(EthError::UnsupportedType(u64::from(first)));
    }
    let text = bytes.trim_ascii();
    if text.starts_with(b"{") {
        let value = super::json::parse(text)?;
        return super::tx_json::parse_json(&value, chain_id);
    }
    if let Some(hex_text) = text.strip_prefix(b"0x") {
        let raw = hex::decode(hex_text).map_err(|e| EthError::InvalidField {
            field: "transaction".into(),
            expected: "a json object or 0x-hex unsigned rlp",
            found: format!("hex that does not decode ({e})"),
        })?;
        if raw.is_empty() {
            return Err(EthError::Empty("transaction"));
        }
        return Ok(ParsedTx {
            tx: parse_rlp(&raw, chain_id)?,
            from: None,
        });
    }
    Err(EthError::InvalidField {
        field: "transaction".into(),
        expected: "a json object, unsigned rlp bytes or 0x-hex unsigned rlp",
        found: excerpt(&String::from_utf8_lossy(&text[..text.len().min(40)])),
    })
}

// ---------------------------------------------------------------------------------------------
// RLP

fn rlp_err(e: alloy_rlp::Error) -> EthError {
    EthError::Rlp(e.to_string())
}

fn check_chain_id(found: u64, expected: u64) -> Result<(), EthError> {
    if found != expected {
        return Err(EthError::ChainIdMismatch {
            expected,
            found: found.to_string(),
        });
    }
    Ok(())
}

fn parse_rlp(bytes: &[u8], chain_id: u64) -> Result<EthTx, EthError> {
    match bytes[0] {
        0x01 => {
            let tx = decode_typed::<TxEip2930>(&bytes[1..])?;
            check_chain_id(tx.chain_id, chain_id)?;
            Ok(EthTx::Eip2930(tx))
        }
        0x02 => {
            let tx = decode_typed::<TxEip1559>(&bytes[1..])?;
            check_chain_id(tx.chain_id, chain_id)?;
            check_priority_fee(tx.max_priority_fee_per_gas, tx.max_fee_per_gas)?;
            Ok(EthTx::Eip1559(tx))
        }
        b if b >= 0xc0 => {
            let tx = decode_legacy(bytes)?;
            check_chain_id(tx.chain_id.unwrap_or_default(), chain_id)?;
            Ok(EthTx::Legacy(tx))
        }
        other => Err(EthError::UnsupportedType(u64::from(other))),
    }
}

fn decode_typed<T: RlpEcdsaDecodableTx>(body: &[u8]) -> Result<T, EthError> {
    let mut buf = body;
    match T::rlp_decode(&mut buf) {
        Ok(tx) if buf.is_empty() => Ok(tx),
        Ok(_) => Err(EthError::TrailingBytes(buf.len())),
        Err(e) => {
            let mut again = body;
            if T::rlp_decode_with_signature(&mut again).is_ok() {
                return Err(EthError::AlreadySigned);
            }
            Err(rlp_err(e))
        }
    }
}

fn decode_legacy(bytes: &[u8]) -> Result<TxLegacy, EthError> {
    let mut buf = bytes;
    let header = Header::decode(&mut buf).map_err(rlp_err)?;
    if !header.list {
        return Err(EthError::Rlp("expected a list".into()));
    }
    if header.payload_length > buf.len() {
        return Err(rlp_err(alloy_rlp::Error::InputTooShort));
    }
    let trailing = buf.len() - header.payload_length;
    let mut body = &buf[..header.payload_length];
    let mut tx = TxLegacy::rlp_decode_fields(&mut body).map_err(rlp_err)?;
    if body.is_empty() {
        return Err(EthError::MissingChainId);
    }
    let v = u64::decode(&mut body).map_err(|e| EthError::Rlp(format!("chain id: {e}")))?;
    let r = Bytes::decode(&mut body).map_err(rlp_err)?;
    let s = Bytes::decode(&mut body).map_err(rlp_err)?;
    if !body.is_empty() {
        return Err(EthError::Rlp(format!(
            "{} bytes after the ninth item of the legacy list",
            body.len()
        )));
    }
    if !r.is_empty() || !s.is_empty() {
        return Err(EthError::AlreadySigned);
    }
    if v == 0 {
        return Err(EthError::MissingChainId);
    }
    if trailing != 0 {
        return Err(EthError::TrailingBytes(trailing));
    }
    tx.chain_id = Some(v);
    Ok(tx)
}

/// The priority fee may not exceed the fee cap (an EIP-1559 transaction either way it came).
pub(super) fn check_priority_fee(priority: u128, max: u128) -> Result<(), EthError> {
    if priority > max {
        return Err(EthError::PriorityFeeAboveMax { priority, max });
    }
    Ok(())
}
