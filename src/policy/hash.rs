//! The canonical hash audit records carry: `sha256:<hex>` of the validated policy as canonical
//! JSON (object keys sorted, no whitespace).
//!
//! Because it is computed from the validated model, it ignores comments, whitespace, key order,
//! table style and equivalent spellings ("0.50 BTC" and "0.5 BTC", "1d" and "24h", a checksummed
//! and a lower-case Ethereum address, the order of members in a role or of addresses in a book).
//! It changes with anything that is meaning: rule order, a name, a limit, an address, a
//! description. The `[policy] tests` path is not part of it.

use sha2::{Digest, Sha256};

use super::model::Policy;

/// Canonical JSON of a policy.
pub fn canonical_json(policy: &Policy) -> String {
    let value = serde_json::to_value(policy).expect("the policy model always serializes to JSON");
    let mut out = String::new();
    write_canonical(&value, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `sha256:<hex>` of the canonical JSON.
pub fn policy_hash(policy: &Policy) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical_json(policy).as_bytes()))
    )
}
