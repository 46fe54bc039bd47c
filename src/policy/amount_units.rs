//! Quantities as policy files write them: amounts with their unit ("0.5 BTC", "2500 USDC",
//! "unlimited"), durations ("90s", "15m", "24h", "7d") and Bitcoin fee rates ("25 sat/vB").
//!
//! Every conversion is exact: amounts go through [`crate::amount::parse_decimal`] into 256-bit base
//! units, so "0.000000001 BTC" is an error (BTC has 8 decimals), never a rounding.

use crate::amount::{parse_decimal, Amount};

/// "0.5 BTC" split into its number and its unit, before the unit is resolved to an asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmountText<'a> {
    /// The word `unlimited`: no cap.
    Unlimited,
    /// A decimal number and an asset symbol.
    Value {
        /// The decimal number as written ("0.5", "1_000").
        number: &'a str,
        /// The asset symbol ("BTC").
        symbol: &'a str,
    },
}

/// Splits an amount into number and symbol. Errors are plain sentences.
pub fn split_amount(text: &str) -> Result<AmountText<'_>, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("unlimited") {
        return Ok(AmountText::Unlimited);
    }
    let mut parts = trimmed.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(number), Some(symbol), None) => Ok(AmountText::Value { number, symbol }),
        _ => Err(format!(
            "'{text}' is not an amount with a unit, such as \"0.5 BTC\" or \"2500 USDC\" (or \"unlimited\")"
        )),
    }
}

/// Parses the number of an amount for an asset with `decimals` decimals, exactly.
pub fn parse_units(number: &str, symbol: &str, decimals: u8) -> Result<Amount, String> {
    parse_decimal(number, decimals).map_err(|e| match e {
        crate::amount::AmountError::TooManyDecimals { got, .. } => format!(
            "'{number} {symbol}' has {got} decimal places, but {symbol} has only {decimals}"
        ),
        other => other.to_string(),
    })
}

/// Parses a duration: a positive integer followed by `s`, `m`, `h`, `d` or `w` ("24h", "7d").
/// Returns seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!("'{text}' is not a duration such as \"90s\", \"15m\", \"1h\", \"24h\" or \"7d\"")
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("duration '{text}' must be longer than zero"));
    }
    // At most ten years: windows longer than that are a typo, and the product cannot overflow.
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs > 10 * 366 * 86_400 {
        return Err(format!("duration '{text}' is longer than ten years"));
    }
    Ok(secs)
}

/// Formats seconds the way a policy writes them ("24h", "7d", "90m", "45s").
pub fn format_duration(secs: u64) -> String {
    if secs.is_multiple_of(86_400) && secs > 86_400 {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Parses a Bitcoin fee rate "25 sat/vB" (up to 3 decimals, "12.5 sat/vB") into sat per 1000 vB,
/// the unit [`crate::intent::Intent::fee_rate_sat_per_kvb`] uses.
pub fn parse_fee_rate(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a fee rate such as \"25 sat/vB\"");
    let t = text.trim();
    let number = t
        .strip_suffix("sat/vB")
        .or_else(|| t.strip_suffix("sat/vb"))
        .ok_or_else(bad)?
        .trim();
    let units = parse_decimal(number, 3).map_err(|e| match e {
        crate::amount::AmountError::TooManyDecimals { got, .. } => {
            format!(
                "'{text}' has {got} decimal places; fee rates allow at most 3 (sat per 1000 vB)"
            )
        }
        _ => bad(),
    })?;
    u64::try_from(units).map_err(|_| bad())
}

/// Formats sat per 1000 vB as "12.5 sat/vB".
pub fn format_fee_rate(sat_per_kvb: u64) -> String {
    format!(
        "{} sat/vB",
        crate::amount::format_decimal(Amount::from(sat_per_kvb), 3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_split() {
        assert_eq!(split_amount("unlimited").unwrap(), AmountText::Unlimited);
        assert_eq!(
            split_amount(" 0.5  BTC ").unwrap(),
            AmountText::Value {
                number: "0.5",
                symbol: "BTC"
            }
        );
        for bad in ["0.5", "BTC", "0.5 BTC extra", ""] {
            assert!(split_amount(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_units("1.2", "ETH", 18).unwrap(),
            Amount::from(1_200_000_000_000_000_000u128)
        );
        let err = parse_units("0.000000001", "BTC", 8).unwrap_err();
        assert_eq!(
            err,
            "'0.000000001 BTC' has 9 decimal places, but BTC has only 8"
        );
        // Past 64 bits: 10^30 wei.
        assert_eq!(
            parse_units("1000000000000", "ETH", 18).unwrap(),
            Amount::from(10u8).pow(Amount::from(30u8))
        );
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        for bad in [
            "",
            "h",
            "0h",
            "1.5h",
            "-1h",
            "24 hours",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(86_400), "24h");
        assert_eq!(format_duration(604_800), "7d");
        assert_eq!(format_duration(172_800), "2d");
        assert_eq!(parse_fee_rate("25 sat/vB").unwrap(), 25_000);
        assert_eq!(parse_fee_rate("12.5 sat/vB").unwrap(), 12_500);
        assert!(parse_fee_rate("1.2345 sat/vB").is_err());
        assert!(parse_fee_rate("25 BTC").is_err());
        assert_eq!(format_fee_rate(12_500), "12.5 sat/vB");
    }
}
