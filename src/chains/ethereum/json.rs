//! Strict JSON for untrusted payloads: duplicate keys are refused at every depth (a reviewer and
//! the signer must never read two different values for one field), and integers too large for 64
//! bits keep every digit (they become decimal strings, which EIP-712 coercion reads exactly,
//! instead of the lossy floats serde_json would make of them).
//!
//! Also the strict readers of JSON-RPC values the transaction and typed-data parsers share:
//! quantities (`0x`, hex digits, no leading zeros), byte strings (`0x`, an even number of hex
//! digits) and addresses (20 bytes; mixed case must carry a valid EIP-55 checksum).

use alloy_primitives::{Address, Bytes, U256};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::{excerpt, EthError};

/// Parses `bytes` (UTF-8 JSON text) into a value, refusing duplicate keys and keeping big
/// integers exact.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, EthError> {
    let text = std::str::from_utf8(bytes).map_err(|e| EthError::Json(e.to_string()))?;
    let text = quote_big_integers(text);
    let mut de = serde_json::Deserializer::from_str(&text);
    let StrictValue(value) =
        StrictValue::deserialize(&mut de).map_err(|e| EthError::Json(e.to_string()))?;
    de.end().map_err(|e| EthError::Json(e.to_string()))?;
    Ok(value)
}

/// Rewrites integer literals that do not fit in an i64/u64 as decimal strings; everything else
/// (strings included) is copied unchanged. A JSON lexer only needs to know whether it is inside a
/// string to find number tokens.
fn quote_big_integers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            continue;
        }
        if c == '-' || c.is_ascii_digit() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let token = &text[i..end];
            let digits = token.strip_prefix('-').unwrap_or(token);
            let is_integer = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if is_integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                out.push('"');
                out.push_str(token);
                out.push('"');
            } else {
                out.push_str(token);
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A `serde_json::Value` that refuses duplicate object keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a json value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate field '{}'",
                    super::error::excerpt(&key)
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC values, as geth reads them

/// A field whose value is not what was expected.
pub(crate) fn invalid(field: &str, expected: &'static str, found: &Value) -> EthError {
    EthError::InvalidField {
        field: field.to_owned(),
        expected,
        found: excerpt(&found.to_string()),
    }
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

/// A quantity below 2^64.
pub(crate) fn quantity_u64(field: &str, value: &Value) -> Result<u64, EthError> {
    let q = quantity(field, value)?;
    u64::try_from(q).map_err(|_| invalid(field, "a quantity below 2^64", value))
}

/// A quantity below 2^128.
pub(crate) fn quantity_u128(field: &str, value: &Value) -> Result<u128, EthError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(parse(br#"{"a":1,"a":1}"#).is_err());
        let err = parse(br#"{"a":{"b":[{"c":1,"c":2}]}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field 'c'"), "{err}");
        assert!(parse(br#"{"a":1} x"#).is_err());
        assert!(parse(b"\xff").is_err());
    }

    #[test]
    fn keeps_big_integers_exact() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        let v = parse(
            format!(r#"{{"v":{max},"s":"{max} \"x\" 1","n":-1,"f":1.5,"u":18446744073709551615}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(v["v"], Value::String(max.into()));
        assert_eq!(v["s"], Value::String(format!("{max} \"x\" 1")));
        assert_eq!(v["n"], Value::from(-1));
        assert_eq!(v["u"], Value::from(u64::MAX));
        assert!(v["f"].is_f64());
        assert!(parse(b"[-]").is_err());
        assert!(parse(b"[0123]").is_err());
    }
}
