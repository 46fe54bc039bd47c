//! Unsigned transactions in: a JSON object of fields (as `eth_signTransaction` takes them) or
//! unsigned RLP (EIP-155 legacy list, EIP-2718 typed envelopes 0x01 and 0x02), parsed strictly
//! into one of alloy's transaction types.
//!
//! JSON rules (strict, and written down here because they are policy):
//! - Field names as `eth_signTransaction`: `from`, `to`, `gas` (or `gasLimit`), `gasPrice`,
//!   `maxFeePerGas`, `maxPriorityFeePerGas`, `value`, `data` (or `input`), `nonce`, `chainId`,
//!   `type`, `accessList`. Any other field is refused by name (a signed transaction's `v`/`r`/`s`
//!   included). A field set to `null` counts as absent. Duplicate keys are refused.
//! - Quantities are JSON-RPC quantities, as geth reads them: `0x` then hex digits without leading
//!   zeros (`0x0`, `0x5208`; not `0x05208`, not `0x`, not decimal numbers). Byte strings
//!   (`data`) are `0x` then an even number of hex digits. Addresses are 20 bytes of hex; a
//!   mixed-case address must carry a valid EIP-55 checksum (a mistyped address is refused).
//! - The type is `type` when given, else inferred as geth does: EIP-1559 when `maxFeePerGas` or
//!   `maxPriorityFeePerGas` is present, else EIP-2930 when `accessList` is, else legacy. Fields
//!   of another type (`gasPrice` with EIP-1559 fees, `accessList` in a legacy transaction) are
//!   refused, never dropped.
//! - `nonce`, the gas limit and the fee fields are required: Custos never fills them in. A legacy
//!   transaction needs `chainId` (EIP-155); a typed transaction without one gets the wallet's
//!   (its signature commits to it). Any chain id other than the wallet's is refused.
//! - `gas`/`gasLimit` and `data`/`input` may both be given only with the same value.
//!
//! RLP rules: the unsigned EIP-155 list `[nonce, gasPrice, gas, to, value, data, chainId, 0, 0]`
//! (a pre-EIP-155 six-item list is refused), or `0x01`/`0x02` followed by the unsigned field list
//! of EIP-2930/EIP-1559. Raw bytes or `0x`-hex text. Integers must be canonical (alloy-rlp refuses
//! leading zeros); signed transactions and trailing bytes are refused.

use alloy_consensus::transaction::{RlpEcdsaDecodableTx, RlpEcdsaEncodableTx};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxLegacy};
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use alloy_rlp::{Decodable, Header};
use serde_json::{Map, Value};

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
        return parse_json(&value, chain_id);
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

// ---------------------------------------------------------------------------------------------
// JSON

const FIELDS: &[&str] = &[
    "from",
    "to",
    "gas",
    "gasLimit",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "value",
    "data",
    "input",
    "nonce",
    "chainId",
    "type",
    "accessList",
];

fn invalid(field: &str, expected: &'static str, found: &Value) -> EthError {
    EthError::InvalidField {
        field: field.to_owned(),
        expected,
        found: excerpt(&found.to_string()),
    }
}

/// The non-null value of `name`.
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A JSON-RPC quantity: `0x` and hex digits, no leading zeros, at most 256 bits.
pub(crate) fn quantity(field: &str, value: &Value) -> Result<U256, EthError> {
    const EXPECTED: &str = "a 0x-hex quantity without leading zeros (e.g. \"0x5208\")";
    let text = value
        .as_str()
        .ok_or_else(|| invalid(field, EXPECTED, value))?;
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| invalid(field, EXPECTED, value))?;
    if digits.is_empty()
        || digits.len() > 64
        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(invalid(field, EXPECTED, value));
    }
    U256::from_str_radix(digits, 16).map_err(|_| invalid(field, EXPECTED, value))
}

fn quantity_u64(field: &str, value: &Value) -> Result<u64, EthError> {
    let q = quantity(field, value)?;
    u64::try_from(q).map_err(|_| invalid(field, "a quantity below 2^64", value))
}

fn quantity_u128(field: &str, value: &Value) -> Result<u128, EthError> {
    let q = quantity(field, value)?;
    u128::try_from(q).map_err(|_| invalid(field, "a quantity below 2^128", value))
}

/// `0x` and an even number of hex digits.
pub(crate) fn hex_bytes(field: &str, value: &Value) -> Result<Bytes, EthError> {
    const EXPECTED: &str = "0x-hex bytes (an even number of hex digits)";
    let text = value
        .as_str()
        .ok_or_else(|| invalid(field, EXPECTED, value))?;
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| invalid(field, EXPECTED, value))?;
    hex::decode(digits)
        .map(Bytes::from)
        .map_err(|_| invalid(field, EXPECTED, value))
}

/// A 20-byte address; mixed case must be a valid EIP-55 checksum.
pub(crate) fn address(field: &str, value: &Value) -> Result<Address, EthError> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(field, "a 0x-hex address", value))?;
    parse_address_text(field, text)
}

/// A 20-byte address from text; mixed case must be a valid EIP-55 checksum.
pub(crate) fn parse_address_text(field: &str, text: &str) -> Result<Address, EthError> {
    let bad = |expected| EthError::InvalidField {
        field: field.to_owned(),
        expected,
        found: excerpt(text),
    };
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| bad("a 0x-hex address of 20 bytes"))?;
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("a 0x-hex address of 20 bytes"));
    }
    let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Address::parse_checksummed(text, None)
            .map_err(|_| bad("a valid eip-55 checksum (mixed-case address)"));
    }
    text.parse::<Address>()
        .map_err(|_| bad("a 0x-hex address of 20 bytes"))
}

fn access_list(value: &Value) -> Result<AccessList, EthError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid("accessList", "an array", value))?;
    let mut list = Vec::with_capacity(items.len());
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| invalid("accessList", "an array of objects", item))?;
        for key in obj.keys() {
            if key != "address" && key != "storageKeys" {
                return Err(EthError::UnknownField {
                    field: excerpt(key),
                    context: "access list entry",
                });
            }
        }
        let addr = obj.get("address").ok_or(EthError::MissingField {
            field: "address",
            why: "every access list entry names an address",
        })?;
        let keys = obj.get("storageKeys").ok_or(EthError::MissingField {
            field: "storageKeys",
            why: "every access list entry lists its storage keys (possibly none)",
        })?;
        let keys = keys
            .as_array()
            .ok_or_else(|| invalid("storageKeys", "an array of 32-byte 0x-hex keys", keys))?;
        let mut storage_keys = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = hex_bytes("storageKeys", key)?;
            if bytes.len() != 32 {
                return Err(invalid("storageKeys", "32-byte 0x-hex keys", key));
            }
            storage_keys.push(B256::from_slice(&bytes));
        }
        list.push(AccessListItem {
            address: address("accessList.address", addr)?,
            storage_keys,
        });
    }
    Ok(AccessList(list))
}

fn check_priority_fee(priority: u128, max: u128) -> Result<(), EthError> {
    if priority > max {
        return Err(EthError::PriorityFeeAboveMax { priority, max });
    }
    Ok(())
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    why: &'static str,
) -> Result<&'a Value, EthError> {
    get(obj, field).ok_or(EthError::MissingField { field, why })
}

fn parse_json(value: &Value, wallet_chain_id: u64) -> Result<ParsedTx, EthError> {
    let obj = value
        .as_object()
        .ok_or_else(|| EthError::Json("expected a json object of transaction fields".into()))?;
    if let Some(field) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(EthError::UnknownField {
            field: excerpt(field),
            context: "transaction",
        });
    }

    let has = |name| get(obj, name).is_some();
    let tx_type = match get(obj, "type") {
        Some(t) => quantity("type", t).map(|q| u64::try_from(q).unwrap_or(u64::MAX))?,
        None if has("maxFeePerGas") || has("maxPriorityFeePerGas") => 2,
        None if has("accessList") => 1,
        None => 0,
    };
    if tx_type > 2 {
        return Err(EthError::UnsupportedType(tx_type));
    }
    let tx_type = tx_type as u8;
    if has("gasPrice") && (has("maxFeePerGas") || has("maxPriorityFeePerGas")) {
        return Err(EthError::ConflictingFields(
            "gasPrice",
            if has("maxFeePerGas") {
                "maxFeePerGas"
            } else {
                "maxPriorityFeePerGas"
            },
        ));
    }
    let not_in_type = |field| EthError::FieldNotInType { field, tx_type };
    match tx_type {
        0 | 1 => {
            for field in ["maxFeePerGas", "maxPriorityFeePerGas"] {
                if has(field) {
                    return Err(not_in_type(field));
                }
            }
            if tx_type == 0 && has("accessList") {
                return Err(not_in_type("accessList"));
            }
        }
        _ => {
            if has("gasPrice") {
                return Err(not_in_type("gasPrice"));
            }
        }
    }

    let from = get(obj, "from").map(|v| address("from", v)).transpose()?;
    let to = match get(obj, "to") {
        Some(v) => TxKind::Call(address("to", v)?),
        None => TxKind::Create,
    };
    let nonce = quantity_u64(
        "nonce",
        required(obj, "nonce", "the signer never chooses the nonce")?,
    )?;
    let gas = match (get(obj, "gas"), get(obj, "gasLimit")) {
        (Some(a), Some(b)) => {
            let (a, b) = (quantity_u64("gas", a)?, quantity_u64("gasLimit", b)?);
            if a != b {
                return Err(EthError::ConflictingFields("gas", "gasLimit"));
            }
            a
        }
        (Some(v), None) => quantity_u64("gas", v)?,
        (None, Some(v)) => quantity_u64("gasLimit", v)?,
        (None, None) => {
            return Err(EthError::MissingField {
                field: "gas",
                why: "the gas limit bounds the fee and is never estimated by the signer",
            })
        }
    };
    let value = get(obj, "value")
        .map(|v| quantity("value", v))
        .transpose()?
        .unwrap_or_default();
    let input = match (get(obj, "data"), get(obj, "input")) {
        (Some(a), Some(b)) => {
            let (a, b) = (hex_bytes("data", a)?, hex_bytes("input", b)?);
            if a != b {
                return Err(EthError::ConflictingFields("data", "input"));
            }
            a
        }
        (Some(v), None) => hex_bytes("data", v)?,
        (None, Some(v)) => hex_bytes("input", v)?,
        (None, None) => Bytes::new(),
    };
    let chain_id = match get(obj, "chainId") {
        Some(v) => {
            let q = quantity("chainId", v)?;
            match u64::try_from(q) {
                Ok(id) if id == wallet_chain_id => id,
                _ => {
                    return Err(EthError::ChainIdMismatch {
                        expected: wallet_chain_id,
                        found: q.to_string(),
                    })
                }
            }
        }
        None if tx_type == 0 => return Err(EthError::MissingChainId),
        None => wallet_chain_id,
    };
    let access_list = get(obj, "accessList")
        .map(access_list)
        .transpose()?
        .unwrap_or_default();

    let tx = match tx_type {
        0 => EthTx::Legacy(TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price: quantity_u128(
                "gasPrice",
                required(
                    obj,
                    "gasPrice",
                    "a legacy transaction pays gasPrice per gas",
                )?,
            )?,
            gas_limit: gas,
            to,
            value,
            input,
        }),
        1 => EthTx::Eip2930(TxEip2930 {
            chain_id,
            nonce,
            gas_price: quantity_u128(
                "gasPrice",
                required(
                    obj,
                    "gasPrice",
                    "an eip-2930 transaction pays gasPrice per gas",
                )?,
            )?,
            gas_limit: gas,
            to,
            value,
            access_list,
            input,
        }),
        _ => {
            let max_fee_per_gas = quantity_u128(
                "maxFeePerGas",
                required(
                    obj,
                    "maxFeePerGas",
                    "an eip-1559 transaction needs its fee cap",
                )?,
            )?;
            let max_priority_fee_per_gas = quantity_u128(
                "maxPriorityFeePerGas",
                required(
                    obj,
                    "maxPriorityFeePerGas",
                    "an eip-1559 transaction needs its priority fee",
                )?,
            )?;
            check_priority_fee(max_priority_fee_per_gas, max_fee_per_gas)?;
            EthTx::Eip1559(TxEip1559 {
                chain_id,
                nonce,
                gas_limit: gas,
                max_fee_per_gas,
                max_priority_fee_per_gas,
                to,
                value,
                access_list,
                input,
            })
        }
    };
    Ok(ParsedTx { tx, from })
}
