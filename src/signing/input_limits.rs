//! Bounded input: how large a payload may be, per kind, before anything reads it.
//!
//! Every `Sign` payload is measured against [`InputLimits`] (the `[limits]` section of
//! `custos.toml`) in two steps, each refusal an `INVALID_ARGUMENT` whose stable code and message
//! name the limit (its `custos.toml` key) and the value that broke it:
//!
//! 1. **Size** ([`InputLimits::check`], first): the payload's length against its kind's byte limit
//!    — before it is hashed, hex-encoded, decoded or stored (`payload-too-large`).
//! 2. **Shape**, as the first step of decoding: a PSBT's input and output counts, read from its
//!    parsed unsigned transaction before the chain module examines any input
//!    (`psbt-too-many-inputs`, `psbt-too-many-outputs`); EIP-712 typed data's JSON nesting depth
//!    and the members of its largest object or array, from one linear scan of the text before a
//!    JSON parser builds anything (`typed-data-too-deep`, `typed-data-too-many-items`); and, once
//!    the transaction is parsed ([`InputLimits::check_decoded`]), an Ethereum transaction's
//!    calldata (`eth-calldata-too-large`).
//!
//! The defaults are what a custody operator would expect, and each says why:
//!
//! | key | default | why |
//! |---|---|---|
//! | `psbt_bytes` | 1 MiB | a 500-input consolidation with every previous transaction attached (required for segwit v0) |
//! | `psbt_inputs`, `psbt_outputs` | 1 000 | a batch payout or a consolidation; far above daily use, far below the 100 kvB standardness limit's reach |
//! | `eth_transaction_bytes` | 256 KiB | the JSON form writes calldata as hex, twice its size |
//! | `eth_calldata_bytes` | 128 KiB | geth's transaction pool refuses transactions above 128 KiB: larger ones would never be relayed |
//! | `message_bytes` | 16 KiB | a sign-in message or an attestation; a personal message is read by a person |
//! | `typed_data_bytes` | 64 KiB | a Permit2 batch or a Seaport order with its consideration items |
//! | `typed_data_depth` | 16 | the JSON nesting of the document (the message's structs sit 2 levels down) |
//! | `typed_data_items` | 1 024 | members of one object or elements of one array |
//!
//! Limits apply to new requests. A retry of a request id stored before a limit was lowered is
//! measured again and refused like a new one (the stored request is untouched).
//!
//! The gRPC edge refuses any message above [`InputLimits::grpc_message_bytes`] (by default the
//! largest payload limit plus 64 KiB for the request's other fields) before decoding it, so a
//! payload far beyond every limit is never even buffered whole.

use serde::Deserialize;

use crate::chains::bitcoin::psbt::parse_payload;
use crate::signing::contract::{CoreError, CoreResult, SignPayload};

use super::decode::Decoded;

/// One kibibyte.
pub const KIB: usize = 1024;
/// One mebibyte.
pub const MIB: usize = 1024 * KIB;

/// Room in a gRPC message for everything but the payload (request id, wallet name, framing).
pub const GRPC_ENVELOPE_BYTES: usize = 64 * KIB;

/// Stable code: a payload above its kind's byte limit.
pub const PAYLOAD_TOO_LARGE: &str = "payload-too-large";
/// Stable code: a PSBT with more inputs than `psbt_inputs`.
pub const PSBT_TOO_MANY_INPUTS: &str = "psbt-too-many-inputs";
/// Stable code: a PSBT with more outputs than `psbt_outputs`.
pub const PSBT_TOO_MANY_OUTPUTS: &str = "psbt-too-many-outputs";
/// Stable code: an Ethereum transaction whose calldata is above `eth_calldata_bytes`.
pub const ETH_CALLDATA_TOO_LARGE: &str = "eth-calldata-too-large";
/// Stable code: typed data nested deeper than `typed_data_depth`.
pub const TYPED_DATA_TOO_DEEP: &str = "typed-data-too-deep";
/// Stable code: a typed-data object or array with more members than `typed_data_items`.
pub const TYPED_DATA_TOO_MANY_ITEMS: &str = "typed-data-too-many-items";

/// The `[limits]` section of `custos.toml`: bounds on what one request may carry, and on the
/// state disk (see the module docs and [`super::storage`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputLimits {
    /// Largest PSBT, bytes (binary, or its base64/hex text as sent).
    pub psbt_bytes: usize,
    /// Most inputs of one PSBT.
    pub psbt_inputs: usize,
    /// Most outputs of one PSBT.
    pub psbt_outputs: usize,
    /// Largest unsigned Ethereum transaction, bytes (RLP, hex or JSON as sent).
    pub eth_transaction_bytes: usize,
    /// Largest calldata (`input`/`data`) of one Ethereum transaction, bytes.
    pub eth_calldata_bytes: usize,
    /// Largest EIP-191 personal message, bytes.
    pub message_bytes: usize,
    /// Largest EIP-712 typed data document, bytes of JSON.
    pub typed_data_bytes: usize,
    /// Deepest nesting of objects and arrays in typed data.
    pub typed_data_depth: usize,
    /// Most members of one object, or elements of one array, in typed data.
    pub typed_data_items: usize,
    /// Largest gRPC request message the server decodes, bytes. Default: the largest payload
    /// limit plus 64 KiB. Must not be below the largest payload limit.
    pub grpc_message_bytes: Option<usize>,
    /// Free space the state directory's filesystem must keep, bytes: a write step finding less
    /// answers UNAVAILABLE before writing anything (0 turns the guard off). Default 64 MiB.
    pub state_min_free_bytes: u64,
    /// Longest wait for the state database to flush, seconds, before the call answers
    /// UNAVAILABLE (default 30).
    pub state_flush_timeout_secs: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            psbt_bytes: MIB,
            psbt_inputs: 1_000,
            psbt_outputs: 1_000,
            eth_transaction_bytes: 256 * KIB,
            eth_calldata_bytes: 128 * KIB,
            message_bytes: 16 * KIB,
            typed_data_bytes: 64 * KIB,
            typed_data_depth: 16,
            typed_data_items: 1_024,
            grpc_message_bytes: None,
            state_min_free_bytes: 64 * MIB as u64,
            state_flush_timeout_secs: 30,
        }
    }
}

/// The payload's kind (as audit records and messages name it) and its length in bytes.
pub fn kind_and_len(payload: &SignPayload) -> (&'static str, usize) {
    match payload {
        SignPayload::BitcoinPsbt(bytes) => ("bitcoin psbt", bytes.len()),
        SignPayload::EthereumTransaction { unsigned_tx, .. } => {
            ("ethereum transaction", unsigned_tx.len())
        }
        SignPayload::PersonalMessage { message, .. } => ("personal message", message.len()),
        SignPayload::TypedData { json, .. } => ("typed data", json.len()),
    }
}

fn too_large(code: &str, what: String, key: &str, limit: usize) -> CoreError {
    CoreError::InvalidPayload {
        code: code.to_owned(),
        reason: format!("{what}; the limit is {limit} ([limits] {key})"),
    }
}

impl InputLimits {
    /// The largest payload any kind may carry, bytes.
    pub fn largest_payload(&self) -> usize {
        [
            self.psbt_bytes,
            self.eth_transaction_bytes,
            self.message_bytes,
            self.typed_data_bytes,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// The gRPC decoding limit: configured, or the largest payload plus
    /// [`GRPC_ENVELOPE_BYTES`].
    pub fn grpc_message_bytes(&self) -> usize {
        self.grpc_message_bytes
            .unwrap_or_else(|| self.largest_payload().saturating_add(GRPC_ENVELOPE_BYTES))
    }

    /// Checks the values make sense together: every limit above zero, the gRPC limit not below
    /// the largest payload. The message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("psbt_bytes", self.psbt_bytes),
            ("psbt_inputs", self.psbt_inputs),
            ("psbt_outputs", self.psbt_outputs),
            ("eth_transaction_bytes", self.eth_transaction_bytes),
            ("eth_calldata_bytes", self.eth_calldata_bytes),
            ("message_bytes", self.message_bytes),
            ("typed_data_bytes", self.typed_data_bytes),
            ("typed_data_depth", self.typed_data_depth),
            ("typed_data_items", self.typed_data_items),
            (
                "state_flush_timeout_secs",
                usize::try_from(self.state_flush_timeout_secs).unwrap_or(usize::MAX),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("[limits] {key} must be above 0"));
        }
        if let Some(grpc) = self.grpc_message_bytes {
            if grpc < self.largest_payload() {
                return Err(format!(
                    "[limits] grpc_message_bytes is {grpc}, below the largest payload limit \
                     ({}): such payloads could never arrive",
                    self.largest_payload()
                ));
            }
        }
        Ok(())
    }

    /// Steps 1 and 2 of the module docs on the payload as it arrived: its size, then a PSBT's
    /// counts and typed data's depth and widths. Nothing is decoded for the policy yet.
    pub fn check(&self, payload: &SignPayload) -> CoreResult<()> {
        let (kind, len) = kind_and_len(payload);
        let (limit, key) = match payload {
            SignPayload::BitcoinPsbt(_) => (self.psbt_bytes, "psbt_bytes"),
            SignPayload::EthereumTransaction { .. } => {
                (self.eth_transaction_bytes, "eth_transaction_bytes")
            }
            SignPayload::PersonalMessage { .. } => (self.message_bytes, "message_bytes"),
            SignPayload::TypedData { .. } => (self.typed_data_bytes, "typed_data_bytes"),
        };
        if len > limit {
            return Err(too_large(
                PAYLOAD_TOO_LARGE,
                format!("the {kind} is {len} bytes"),
                key,
                limit,
            ));
        }
        match payload {
            SignPayload::BitcoinPsbt(bytes) => self.check_psbt(bytes),
            SignPayload::TypedData { json, .. } => self.check_json(json.as_bytes()),
            _ => Ok(()),
        }
    }

    /// The counts of a PSBT's unsigned transaction. A PSBT that does not parse is left to the
    /// chain module, which says why.
    fn check_psbt(&self, bytes: &[u8]) -> CoreResult<()> {
        let Ok(psbt) = parse_payload(bytes) else {
            return Ok(());
        };
        let tx = &psbt.unsigned_tx;
        if tx.input.len() > self.psbt_inputs {
            return Err(too_large(
                PSBT_TOO_MANY_INPUTS,
                format!("the psbt has {} inputs", tx.input.len()),
                "psbt_inputs",
                self.psbt_inputs,
            ));
        }
        if tx.output.len() > self.psbt_outputs {
            return Err(too_large(
                PSBT_TOO_MANY_OUTPUTS,
                format!("the psbt has {} outputs", tx.output.len()),
                "psbt_outputs",
                self.psbt_outputs,
            ));
        }
        Ok(())
    }

    fn check_json(&self, text: &[u8]) -> CoreResult<()> {
        match scan_json(text, self.typed_data_depth, self.typed_data_items) {
            Ok(()) => Ok(()),
            Err(JsonBound::Depth) => Err(too_large(
                TYPED_DATA_TOO_DEEP,
                format!(
                    "the typed data nests deeper than {} levels",
                    self.typed_data_depth
                ),
                "typed_data_depth",
                self.typed_data_depth,
            )),
            Err(JsonBound::Items) => Err(too_large(
                TYPED_DATA_TOO_MANY_ITEMS,
                format!(
                    "an object or array of the typed data has more than {} members",
                    self.typed_data_items
                ),
                "typed_data_items",
                self.typed_data_items,
            )),
        }
    }

    /// What only the decoded payload shows: an Ethereum transaction's calldata.
    pub fn check_decoded(&self, decoded: &Decoded) -> CoreResult<()> {
        if let Decoded::Ethereum(d) = decoded {
            if let Some(tx) = d.transaction() {
                let len = tx.input().len();
                if len > self.eth_calldata_bytes {
                    return Err(too_large(
                        ETH_CALLDATA_TOO_LARGE,
                        format!("the transaction carries {len} bytes of calldata"),
                        "eth_calldata_bytes",
                        self.eth_calldata_bytes,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Which bound a JSON text broke.
#[derive(Debug, PartialEq, Eq)]
enum JsonBound {
    Depth,
    Items,
}

/// One linear pass over JSON text: nesting depth of objects and arrays, and members of each.
/// Strings (with their escapes) are skipped, so brackets and commas inside them do not count.
/// The text is not validated: malformed JSON passes here and is refused by the parser, which
/// then only ever sees text within the bounds.
fn scan_json(text: &[u8], max_depth: usize, max_items: usize) -> Result<(), JsonBound> {
    // Per open container: members counted so far, and whether a member has started since the
    // last comma.
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        // A value or key starts (or continues) in the innermost container.
        if let Some((count, started)) = open.last_mut() {
            if !matches!(b, b',' | b']' | b'}') && !*started {
                *started = true;
                *count += 1;
                if *count > max_items {
                    return Err(JsonBound::Items);
                }
            }
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                open.push((0, false));
                if open.len() > max_depth {
                    return Err(JsonBound::Depth);
                }
            }
            b'}' | b']' => {
                open.pop();
            }
            b',' => {
                if let Some((_, started)) = open.last_mut() {
                    *started = false;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> SignPayload {
        SignPayload::PersonalMessage {
            message: vec![b'a'; len],
            address_index: None,
        }
    }

    fn typed(json: String) -> SignPayload {
        SignPayload::TypedData {
            json,
            address_index: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_the_grpc_limit_sits_above_every_payload() {
        let limits = InputLimits::default();
        limits.validate().unwrap();
        assert_eq!(limits.largest_payload(), MIB);
        assert_eq!(limits.grpc_message_bytes(), MIB + 64 * KIB);
    }

    #[test]
    fn validation_names_the_key() {
        let limits = InputLimits {
            message_bytes: 0,
            ..InputLimits::default()
        };
        assert!(limits.validate().unwrap_err().contains("message_bytes"));
        let limits = InputLimits {
            grpc_message_bytes: Some(1000),
            ..InputLimits::default()
        };
        let e = limits.validate().unwrap_err();
        assert!(e.contains("grpc_message_bytes is 1000"), "{e}");
    }

    #[test]
    fn each_kind_is_measured_against_its_own_limit() {
        let limits = InputLimits::default();
        limits.check(&message(16 * KIB)).unwrap();
        let e = limits.check(&message(16 * KIB + 1)).unwrap_err();
        assert_eq!(e.code(), PAYLOAD_TOO_LARGE);
        let text = e.to_string();
        assert!(text.contains("16385 bytes"), "{text}");
        assert!(text.contains("16384 ([limits] message_bytes)"), "{text}");
        // The same size is fine for a transaction.
        limits
            .check(&SignPayload::EthereumTransaction {
                unsigned_tx: vec![0xc0; 16 * KIB + 1],
                address_index: None,
                replacement: false,
            })
            .unwrap();
        let e = limits
            .check(&SignPayload::BitcoinPsbt(vec![0; MIB + 1]))
            .unwrap_err();
        assert!(e.to_string().contains("[limits] psbt_bytes"), "{e}");
        let e = limits.check(&typed("x".repeat(64 * KIB + 1))).unwrap_err();
        assert!(e.to_string().contains("[limits] typed_data_bytes"), "{e}");
    }

    #[test]
    fn typed_data_depth_and_width_are_bounded_before_parsing() {
        let limits = InputLimits {
            typed_data_depth: 4,
            typed_data_items: 3,
            ..InputLimits::default()
        };
        limits
            .check(&typed(r#"{"a":{"b":[1,2,3]}}"#.into()))
            .unwrap();
        limits.check(&typed(r#"[[[[]]]]"#.into())).unwrap();
        let e = limits.check(&typed(r#"[[[[[]]]]]"#.into())).unwrap_err();
        assert_eq!(e.code(), TYPED_DATA_TOO_DEEP);
        assert!(e.to_string().contains("[limits] typed_data_depth"), "{e}");
        let e = limits
            .check(&typed(r#"{"a":[1,2,3,4]}"#.into()))
            .unwrap_err();
        assert_eq!(e.code(), TYPED_DATA_TOO_MANY_ITEMS);
        let e = limits
            .check(&typed(r#"{"a":1,"b":2,"c":3,"d":4}"#.into()))
            .unwrap_err();
        assert_eq!(e.code(), TYPED_DATA_TOO_MANY_ITEMS);
        // Brackets, commas and escaped quotes inside strings are text, not structure.
        limits
            .check(&typed(
                r#"{"a":"[[[[[,,,,]]]]]","b":"\"[[[[[","c":[]}"#.into(),
            ))
            .unwrap();
        // An unbounded nesting attack stops at the bound, whatever follows.
        let bomb = "[".repeat(60_000);
        let e = limits.check(&typed(bomb)).unwrap_err();
        assert_eq!(e.code(), TYPED_DATA_TOO_DEEP);
    }

    #[test]
    fn json_scan_counts_members_exactly() {
        assert_eq!(scan_json(b"[]", 1, 0), Ok(()));
        assert_eq!(scan_json(b"[ ]", 1, 0), Ok(()));
        assert_eq!(scan_json(b"[1]", 1, 0), Err(JsonBound::Items));
        assert_eq!(scan_json(b"[1, 2]", 1, 2), Ok(()));
        assert_eq!(scan_json(b"[1, 2, 3]", 1, 2), Err(JsonBound::Items));
        assert_eq!(scan_json(br#"{"k": [1, 2]}"#, 2, 2), Ok(()));
        assert_eq!(scan_json(br#"{"k": [1, 2]}"#, 1, 2), Err(JsonBound::Depth));
        assert_eq!(scan_json(br#"[{}, {}, {}]"#, 2, 3), Ok(()));
        assert_eq!(scan_json(br#"[{}, {}, {}]"#, 2, 2), Err(JsonBound::Items));
    }
}
