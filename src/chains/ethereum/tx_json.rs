//! The JSON half of transaction parsing: an `eth_signTransaction` object of fields -> [`EthTx`].
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

use alloy_consensus::{TxEip1559, TxEip2930, TxLegacy};
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{Bytes, TxKind, B256};
use serde_json::{Map, Value};

use super::error::{excerpt, EthError};
use super::json::{address, hex_bytes, invalid, quantity, quantity_u128, quantity_u64};
use super::tx::{check_priority_fee, EthTx, ParsedTx};

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

/// The non-null value of `name`.
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
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

fn required<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    why: &'static str,
) -> Result<&'a Value, EthError> {
    get(obj, field).ok_or(EthError::MissingField { field, why })
}

/// The transaction an `eth_signTransaction` object describes, for the wallet's chain id.
pub(super) fn parse_json(value: &Value, wallet_chain_id: u64) -> Result<ParsedTx, EthError> {
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
