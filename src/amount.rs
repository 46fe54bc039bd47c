//! Money as integers: exact decimal text <-> base units (satoshi, wei, token units) in 256 bits.
//!
//! Policies write "0.5 BTC" and "2500 USDC"; chains and the ledger count base units. The
//! conversion is exact: no floats anywhere, a value with more decimals than the asset has is an
//! error rather than a rounding, and overflow past 2^256 − 1 is an error.

use ruint::aliases::U256;

/// An amount in an asset's base units (satoshi, wei, smallest token unit).
pub type Amount = U256;

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not digits with at most one decimal point.
    #[error("'{0}' is not a decimal amount such as 12 or 0.5")]
    NotDecimal(String),
    /// More fractional digits than the asset's decimals.
    #[error("'{text}' has {got} decimal places, but the asset has only {decimals}")]
    TooManyDecimals {
        /// The text given.
        text: String,
        /// Fractional digits given.
        got: usize,
        /// The asset's decimals.
        decimals: u8,
    },
    /// Larger than 2^256 − 1 base units.
    #[error("'{0}' is larger than the largest amount (2^256 - 1 base units)")]
    Overflow(String),
}

/// Parses a non-negative decimal ("12", "0.5", "1_000.25") into base units of an asset with
/// `decimals` decimal places. Underscores are allowed between digits for readability.
pub fn parse_decimal(text: &str, decimals: u8) -> Result<Amount, AmountError> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    let (whole, frac) = match cleaned.split_once('.') {
        Some((w, f)) => (w, f),
        None => (cleaned.as_str(), ""),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !digits_ok(whole)
        || !digits_ok(frac)
        || cleaned.ends_with('.')
        || cleaned.starts_with('.')
    {
        return Err(AmountError::NotDecimal(text.to_owned()));
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > usize::from(decimals) {
        return Err(AmountError::TooManyDecimals {
            text: text.to_owned(),
            got: frac_trimmed.len(),
            decimals,
        });
    }
    let overflow = || AmountError::Overflow(text.to_owned());
    let mut value = Amount::ZERO;
    let ten = Amount::from(10u8);
    let padded = format!("{frac_trimmed:0<width$}", width = usize::from(decimals));
    for b in whole.bytes().chain(padded.bytes()) {
        value = value
            .checked_mul(ten)
            .and_then(|v| v.checked_add(Amount::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(value)
}

/// Formats base units as a decimal with the asset's decimals, trailing zeros dropped
/// (`150000000` sat with 8 decimals is "1.5").
pub fn format_decimal(amount: Amount, decimals: u8) -> String {
    let digits = amount.to_string();
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (whole, frac) = padded.split_at(padded.len() - decimals);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

/// Serde for amounts as decimal strings of base units ("150000000"), the form intents and
/// requests use in JSON: exact, and readable in any language without a big-integer library.
pub mod serde_decimal {
    use super::Amount;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the amount as a decimal string.
    pub fn serialize<S: Serializer>(amount: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&amount.to_string())
    }

    /// Reads a decimal string of base units (digits only).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "amount '{text}' must be a decimal string of base units"
            )));
        }
        Amount::from_str_radix(&text, 10).map_err(|_| D::Error::custom("amount exceeds 2^256 - 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_parsing() {
        assert_eq!(
            parse_decimal("0.5", 8).unwrap(),
            Amount::from(50_000_000u64)
        );
        assert_eq!(
            parse_decimal("1_000", 6).unwrap(),
            Amount::from(1_000_000_000u64)
        );
        assert_eq!(parse_decimal("1.20", 1).unwrap(), Amount::from(12u8));
        assert_eq!(
            parse_decimal("1.2", 18).unwrap(),
            Amount::from(1_200_000_000_000_000_000u128)
        );
        assert!(matches!(
            parse_decimal("0.000000001", 8),
            Err(AmountError::TooManyDecimals { got: 9, .. })
        ));
        for bad in ["", ".", "1.", ".5", "-1", "1e5", "0x10", "1.2.3", "one"] {
            assert!(parse_decimal(bad, 8).is_err(), "{bad}");
        }
        let max = Amount::MAX.to_string();
        assert_eq!(parse_decimal(&max, 0).unwrap(), Amount::MAX);
        assert!(matches!(
            parse_decimal(&format!("{max}0"), 0),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_round_trips() {
        for (units, decimals, text) in [
            (150_000_000u64, 8, "1.5"),
            (1, 8, "0.00000001"),
            (0, 18, "0"),
            (2_500_000_000, 6, "2500"),
            (7, 0, "7"),
        ] {
            let amount = Amount::from(units);
            assert_eq!(format_decimal(amount, decimals), text);
            assert_eq!(parse_decimal(text, decimals).unwrap(), amount);
        }
    }
}
