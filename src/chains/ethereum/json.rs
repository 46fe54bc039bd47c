//! Strict JSON for untrusted payloads: duplicate keys are refused at every depth (a reviewer and
//! the signer must never read two different values for one field), and integers too large for 64
//! bits keep every digit (they become decimal strings, which EIP-712 coercion reads exactly,
//! instead of the lossy floats serde_json would make of them).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::EthError;

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
