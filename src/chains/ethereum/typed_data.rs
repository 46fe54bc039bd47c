//! EIP-712 typed data (`eth_signTypedData_v4` JSON) and the permits hidden in it.
//!
//! Hashing is alloy-dyn-abi's `TypedData::eip712_signing_hash` (full `encodeType` with sorted
//! dependencies, nested structs, arrays of structs, `keccak256("\x19\x01" ‖ domainSeparator ‖
//! hashStruct(message))`). Around it, Custos is stricter than wallets usually are, so that what an
//! approver reads is what is signed:
//! - the top level has exactly `types`, `primaryType`, `domain` and `message`; the domain only
//!   the five EIP-712 fields; every property definition exactly `name` and `type`; every message
//!   object only the fields its type declares (at any depth); duplicate keys nowhere;
//! - a declared `EIP712Domain` type must list exactly the domain's fields in EIP-712 order with
//!   their standard types (alloy derives the domain type from the fields present, so any other
//!   declaration would hash differently from what a wallet would);
//! - a domain `chainId` other than the wallet's is refused (a domain without one is allowed for
//!   plain typed messages and said so in the intent).
//!
//! Permits are approvals and become [`crate::intent::ActionKind::TokenApproval`] intents:
//! - EIP-2612 `Permit(address owner,address spender,uint256 value,uint256 nonce,uint256
//!   deadline)`: the token is the domain's `verifyingContract`; `owner` must be our address.
//! - DAI's `Permit(address holder,address spender,uint256 nonce,uint256 expiry,bool allowed)`:
//!   `allowed` grants an unlimited allowance (2^256 − 1) or revokes it (0); `holder` must be ours;
//!   an `expiry` of 0 (never) gives no deadline.
//! - Uniswap Permit2 (verifying contract 0x000000000022D473030F116dDEE9F6B43aC78BA3):
//!   `PermitSingle` (deadline = `sigDeadline`; the allowance's own `expiration` is not carried),
//!   `PermitTransferFrom`, their witness variants, and the batch variants with exactly one token.
//!
//! A token the registry does not know still gives an approval, with the contract address as its
//! symbol and 0 decimals. Typed data that claims to be a permit but has another shape (primary
//! type `Permit` with other fields, any other Permit2 message, a Permit2 batch of several tokens)
//! is refused rather than passed on as an opaque typed message. Deadlines above 2^64 − 1 are
//! carried as 2^64 − 1.

use std::collections::BTreeMap;

use alloy_dyn_abi::eip712::{Resolver, TypedData};
use alloy_dyn_abi::DynSolValue;
use alloy_primitives::{address, Address, B256, U256};
use alloy_sol_types::Eip712Domain;
use serde_json::{Map, Value};

use super::error::{excerpt, EthError};
use super::json::parse_address_text;

/// Uniswap's Permit2 contract (the same address on every chain).
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");

const EIP2612_PERMIT: &str =
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)";
const DAI_PERMIT: &str =
    "Permit(address holder,address spender,uint256 nonce,uint256 expiry,bool allowed)";
const PERMIT_DETAILS: &str =
    "PermitDetails(address token,uint160 amount,uint48 expiration,uint48 nonce)";
const TOKEN_PERMISSIONS: &str = "TokenPermissions(address token,uint256 amount)";

/// The EIP-712 domain fields in their standard order, with their types.
const DOMAIN_FIELDS: [(&str, &str); 5] = [
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
];

/// A permit recognised in typed data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    /// Which standard (`eip-2612`, `dai`, `permit2-single`, `permit2-transfer-from`, …).
    pub standard: &'static str,
    /// The token contract.
    pub token: Address,
    /// Who may spend.
    pub spender: Address,
    /// How much (2^256 − 1, or 2^160 − 1 in Permit2, is unlimited).
    pub amount: U256,
    /// Unix seconds after which the signature is void, if any.
    pub deadline: Option<u64>,
}

/// Typed data, checked and hashed.
#[derive(Clone, Debug)]
pub struct ParsedTypedData {
    /// The EIP-712 signing hash.
    pub hash: B256,
    /// The domain.
    pub domain: Eip712Domain,
    /// The domain chain id, when the domain has one (equal to the wallet's).
    pub chain_id: Option<u64>,
    /// The primary type.
    pub primary_type: String,
    /// The permit it carries, if it is one.
    pub permit: Option<Permit>,
}

fn bad(msg: impl Into<String>) -> EthError {
    EthError::TypedData(msg.into())
}

fn invalid(field: &str, expected: &'static str, found: &Value) -> EthError {
    EthError::InvalidField {
        field: field.to_owned(),
        expected,
        found: excerpt(&found.to_string()),
    }
}

/// Parses, checks and hashes `eth_signTypedData_v4` JSON for a wallet on `chain_id` whose
/// address (at account index `index`) is `ours`.
pub fn parse(
    bytes: &[u8],
    chain_id: u64,
    ours: Address,
    index: u32,
) -> Result<ParsedTypedData, EthError> {
    if bytes.trim_ascii().is_empty() {
        return Err(EthError::Empty("typed data"));
    }
    let value = super::json::parse(bytes)?;
    let obj = value
        .as_object()
        .ok_or_else(|| EthError::Json("expected a json object of typed data".into()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["types", "primaryType", "domain", "message"].contains(&k.as_str()))
    {
        return Err(EthError::UnknownField {
            field: excerpt(k),
            context: "typed data",
        });
    }
    let field = |name: &'static str, why: &'static str| {
        obj.get(name)
            .ok_or(EthError::MissingField { field: name, why })
    };
    let types_json = field("types", "typed data declares its types")?;
    let primary_type = field("primaryType", "typed data names its primary type")?;
    let primary_type = primary_type
        .as_str()
        .ok_or_else(|| invalid("primaryType", "a type name", primary_type))?
        .to_owned();
    let domain_json = field("domain", "typed data is bound to a domain")?;
    let message = field("message", "typed data carries a message")?;

    let types = check_types(types_json)?;
    let (domain, domain_chain_id) = parse_domain(domain_json, chain_id)?;
    check_domain_type(&types, domain_json)?;
    if primary_type != "EIP712Domain" {
        if !types.contains_key(&primary_type) {
            return Err(bad(format!(
                "primary type '{}' is not declared in types",
                excerpt(&primary_type)
            )));
        }
        check_message(&types, &primary_type, message, "message")?;
    }

    let resolver: Resolver =
        serde_json::from_value(types_json.clone()).map_err(|e| bad(e.to_string()))?;
    let typed = TypedData {
        domain: domain.clone(),
        resolver,
        primary_type: primary_type.clone(),
        message: message.clone(),
    };
    let hash = typed
        .eip712_signing_hash()
        .map_err(|e| bad(e.to_string()))?;
    let permit = recognise_permit(&typed, ours, index)?;
    Ok(ParsedTypedData {
        hash,
        domain,
        chain_id: domain_chain_id,
        primary_type,
        permit,
    })
}

/// Type name -> [(field, type)], after checking the JSON shape.
type Types = BTreeMap<String, Vec<(String, String)>>;

fn check_types(types: &Value) -> Result<Types, EthError> {
    let obj = types
        .as_object()
        .ok_or_else(|| invalid("types", "an object of type definitions", types))?;
    let mut out = Types::new();
    for (name, props) in obj {
        let props = props
            .as_array()
            .ok_or_else(|| invalid("types", "arrays of {name, type} definitions", props))?;
        let mut fields = Vec::with_capacity(props.len());
        for prop in props {
            let p = prop
                .as_object()
                .ok_or_else(|| invalid("types", "{name, type} objects", prop))?;
            if let Some(k) = p.keys().find(|k| *k != "name" && *k != "type") {
                return Err(EthError::UnknownField {
                    field: excerpt(k),
                    context: "type definition",
                });
            }
            let (Some(Value::String(field)), Some(Value::String(ty))) =
                (p.get("name"), p.get("type"))
            else {
                return Err(invalid("types", "{name, type} objects of strings", prop));
            };
            if fields.iter().any(|(f, _)| f == field) {
                return Err(bad(format!(
                    "type '{}' declares field '{}' twice",
                    excerpt(name),
                    excerpt(field)
                )));
            }
            fields.push((field.clone(), ty.clone()));
        }
        out.insert(name.clone(), fields);
    }
    Ok(out)
}

fn parse_domain(
    value: &Value,
    wallet_chain_id: u64,
) -> Result<(Eip712Domain, Option<u64>), EthError> {
    let obj: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| invalid("domain", "an object", value))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !DOMAIN_FIELDS.iter().any(|(f, _)| f == k))
    {
        return Err(EthError::UnknownField {
            field: excerpt(k),
            context: "domain",
        });
    }
    let text = |name: &str| -> Result<Option<String>, EthError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(name, "a string", other)),
        }
    };
    let name = text("name")?;
    let version = text("version")?;
    let chain_id = match obj.get("chainId") {
        None => None,
        Some(v) => {
            let parsed = match v {
                Value::Number(n) => n.as_u64().map(U256::from),
                Value::String(s) => s.parse::<U256>().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid("domain.chainId", "an integer or a 0x-hex/decimal string", v))?;
            if parsed != U256::from(wallet_chain_id) {
                return Err(EthError::ChainIdMismatch {
                    expected: wallet_chain_id,
                    found: parsed.to_string(),
                });
            }
            Some(wallet_chain_id)
        }
    };
    let verifying_contract = match obj.get("verifyingContract") {
        None => None,
        Some(Value::String(s)) => Some(parse_address_text("domain.verifyingContract", s)?),
        Some(other) => {
            return Err(invalid(
                "domain.verifyingContract",
                "a 0x-hex address",
                other,
            ))
        }
    };
    let salt = match obj.get("salt") {
        None => None,
        Some(v) => {
            let bytes = super::json::hex_bytes("domain.salt", v)?;
            if bytes.len() != 32 {
                return Err(invalid("domain.salt", "32 bytes of 0x-hex", v));
            }
            Some(B256::from_slice(&bytes))
        }
    };
    let domain = Eip712Domain {
        name: name.map(Into::into),
        version: version.map(Into::into),
        chain_id: chain_id.map(U256::from),
        verifying_contract,
        salt,
    };
    Ok((domain, chain_id))
}

/// A declared `EIP712Domain` must be exactly the present domain fields, in order, standard types.
fn check_domain_type(types: &Types, domain: &Value) -> Result<(), EthError> {
    let Some(declared) = types.get("EIP712Domain") else {
        return Ok(());
    };
    let expected: Vec<(String, String)> = DOMAIN_FIELDS
        .iter()
        .filter(|(f, _)| domain.get(*f).is_some())
        .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
        .collect();
    if *declared != expected {
        let show = |fields: &[(String, String)]| {
            fields
                .iter()
                .map(|(f, t)| format!("{t} {f}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(bad(format!(
            "EIP712Domain type declares ({}) but the domain has ({})",
            excerpt(&show(declared)),
            show(&expected)
        )));
    }
    Ok(())
}

/// Every object in the message has exactly the fields its struct type declares.
fn check_message(types: &Types, ty: &str, value: &Value, path: &str) -> Result<(), EthError> {
    if let Some(inner) = ty.strip_suffix(']') {
        let Some(open) = inner.rfind('[') else {
            return Err(bad(format!("malformed type '{}'", excerpt(ty))));
        };
        let element = &inner[..open];
        let items = value
            .as_array()
            .ok_or_else(|| invalid(path, "an array", value))?;
        for (i, item) in items.iter().enumerate() {
            check_message(types, element, item, &format!("{path}[{i}]"))?;
        }
        return Ok(());
    }
    let Some(fields) = types.get(ty) else {
        return Ok(()); // an atomic type: alloy checks the value.
    };
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(path, "an object", value))?;
    if let Some(k) = obj.keys().find(|k| !fields.iter().any(|(f, _)| f == *k)) {
        return Err(bad(format!(
            "field '{}' at {} is not declared in type '{}'",
            excerpt(k),
            excerpt(path),
            excerpt(ty)
        )));
    }
    for (field, field_ty) in fields {
        let Some(v) = obj.get(field) else {
            return Err(bad(format!(
                "field '{}' of type '{}' is missing at {}",
                excerpt(field),
                excerpt(ty),
                excerpt(path)
            )));
        };
        check_message(types, field_ty, v, &format!("{path}.{field}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Permits

fn get<'a>(value: &'a DynSolValue, name: &str) -> Option<&'a DynSolValue> {
    let (_, names, fields) = value.as_custom_struct()?;
    names.iter().position(|n| n == name).map(|i| &fields[i])
}

fn get_address(value: &DynSolValue, name: &str) -> Option<Address> {
    get(value, name)?.as_address()
}

fn get_uint(value: &DynSolValue, name: &str) -> Option<U256> {
    get(value, name)?.as_uint().map(|(u, _)| u)
}

fn deadline(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn recognise_permit(
    typed: &TypedData,
    ours: Address,
    index: u32,
) -> Result<Option<Permit>, EthError> {
    let primary = typed.primary_type.as_str();
    let is_permit2 = typed.domain.verifying_contract == Some(PERMIT2);
    if primary == "EIP712Domain" {
        return Ok(None);
    }
    if !is_permit2 && primary != "Permit" {
        return Ok(None);
    }
    let encoded = typed.encode_type().map_err(|e| bad(e.to_string()))?;
    let message = typed.coerce().map_err(|e| bad(e.to_string()))?;
    let unrecognised = |what: String| EthError::UnrecognisedPermit(what);
    let malformed = || unrecognised(format!("'{primary}' does not decode"));

    if is_permit2 {
        let single = format!(
            "PermitSingle(PermitDetails details,address spender,uint256 sigDeadline){PERMIT_DETAILS}"
        );
        let batch = format!(
            "PermitBatch(PermitDetails[] details,address spender,uint256 sigDeadline){PERMIT_DETAILS}"
        );
        let transfer = format!(
            "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline){TOKEN_PERMISSIONS}"
        );
        let batch_transfer = format!(
            "PermitBatchTransferFrom(TokenPermissions[] permitted,address spender,uint256 nonce,uint256 deadline){TOKEN_PERMISSIONS}"
        );
        let witness_prefix =
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";
        let batch_witness_prefix = "PermitBatchWitnessTransferFrom(TokenPermissions[] permitted,address spender,uint256 nonce,uint256 deadline,";
        let has_token_permissions = encoded.contains(TOKEN_PERMISSIONS);

        // (details-or-permitted value, its field for the amount, deadline field, standard)
        let (entry, deadline_field, standard) = if primary == "PermitSingle" && encoded == single {
            (
                get(&message, "details").ok_or_else(malformed)?.clone(),
                "sigDeadline",
                "permit2-single",
            )
        } else if primary == "PermitBatch" && encoded == batch {
            (
                single_entry(&message, "details")?,
                "sigDeadline",
                "permit2-batch",
            )
        } else if primary == "PermitTransferFrom" && encoded == transfer {
            (
                get(&message, "permitted").ok_or_else(malformed)?.clone(),
                "deadline",
                "permit2-transfer-from",
            )
        } else if primary == "PermitBatchTransferFrom" && encoded == batch_transfer {
            (
                single_entry(&message, "permitted")?,
                "deadline",
                "permit2-batch-transfer-from",
            )
        } else if primary == "PermitWitnessTransferFrom"
            && encoded.starts_with(witness_prefix)
            && has_token_permissions
        {
            (
                get(&message, "permitted").ok_or_else(malformed)?.clone(),
                "deadline",
                "permit2-witness-transfer-from",
            )
        } else if primary == "PermitBatchWitnessTransferFrom"
            && encoded.starts_with(batch_witness_prefix)
            && has_token_permissions
        {
            (
                single_entry(&message, "permitted")?,
                "deadline",
                "permit2-batch-witness-transfer-from",
            )
        } else {
            return Err(unrecognised(format!(
                "typed data for the permit2 contract with primary type '{}' ({}): only PermitSingle, PermitTransferFrom, their witness variants and single-token batches are decoded",
                excerpt(primary),
                excerpt(&encoded)
            )));
        };
        return Ok(Some(Permit {
            standard,
            token: get_address(&entry, "token").ok_or_else(malformed)?,
            spender: get_address(&message, "spender").ok_or_else(malformed)?,
            amount: get_uint(&entry, "amount").ok_or_else(malformed)?,
            deadline: Some(deadline(
                get_uint(&message, deadline_field).ok_or_else(malformed)?,
            )),
        }));
    }

    // primary == "Permit", not on Permit2.
    let token = typed.domain.verifying_contract.ok_or_else(|| {
        unrecognised("a Permit without a verifyingContract names no token".into())
    })?;
    let check_owner = |field: &'static str| -> Result<(), EthError> {
        let owner = get_address(&message, field).ok_or_else(malformed)?;
        if owner != ours {
            return Err(EthError::WrongSender {
                field,
                expected: ours.to_checksum(None),
                found: owner.to_checksum(None),
                index,
            });
        }
        Ok(())
    };
    if encoded == EIP2612_PERMIT {
        check_owner("owner")?;
        Ok(Some(Permit {
            standard: "eip-2612",
            token,
            spender: get_address(&message, "spender").ok_or_else(malformed)?,
            amount: get_uint(&message, "value").ok_or_else(malformed)?,
            deadline: Some(deadline(
                get_uint(&message, "deadline").ok_or_else(malformed)?,
            )),
        }))
    } else if encoded == DAI_PERMIT {
        check_owner("holder")?;
        let allowed = get(&message, "allowed")
            .and_then(DynSolValue::as_bool)
            .ok_or_else(malformed)?;
        let expiry = get_uint(&message, "expiry").ok_or_else(malformed)?;
        Ok(Some(Permit {
            standard: "dai",
            token,
            spender: get_address(&message, "spender").ok_or_else(malformed)?,
            amount: if allowed { U256::MAX } else { U256::ZERO },
            deadline: (!expiry.is_zero()).then(|| deadline(expiry)),
        }))
    } else {
        Err(unrecognised(format!(
            "primary type 'Permit' with fields {}: expected eip-2612 ({EIP2612_PERMIT}) or dai ({DAI_PERMIT})",
            excerpt(&encoded)
        )))
    }
}

/// The one entry of a Permit2 batch; several tokens are refused (one intent, one asset).
fn single_entry(message: &DynSolValue, field: &str) -> Result<DynSolValue, EthError> {
    let items = get(message, field)
        .and_then(DynSolValue::as_array)
        .ok_or_else(|| EthError::UnrecognisedPermit(format!("'{field}' does not decode")))?;
    match items {
        [one] => Ok(one.clone()),
        _ => Err(EthError::UnrecognisedPermit(format!(
            "a permit2 batch of {} tokens: sign one permit per token",
            items.len()
        ))),
    }
}
