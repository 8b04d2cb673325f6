//! Decimal amounts typed by people ("0.5", "50000", "1_000.25") as the integers the contracts use.
//! Never floats: the string's digits are scaled exactly, and extra precision is an error.

use alloy_primitives::U256;

/// Errors from reading a decimal amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain decimal number.
    #[error("{0:?} is not a decimal number (use digits with an optional '.', like 0.25 or 50000)")]
    NotANumber(String),
    /// More fractional digits than the unit has.
    #[error("{input:?} has more than {decimals} decimal places")]
    TooPrecise { input: String, decimals: u8 },
    /// Does not fit 256 bits.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// `input` scaled by 10^`decimals` ("1.5" with 6 decimals is 1_500_000). A leading '-' is refused:
/// callers that take signed amounts strip the sign themselves.
pub fn parse_units(input: &str, decimals: u8) -> Result<U256, AmountError> {
    let clean: String = input.trim().chars().filter(|c| *c != '_').collect();
    let (whole, frac) = clean.split_once('.').unwrap_or((&clean, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(AmountError::NotANumber(input.to_string()));
    }
    if frac.len() > decimals as usize {
        return Err(AmountError::TooPrecise {
            input: input.to_string(),
            decimals,
        });
    }
    let padded = format!(
        "{}{}{}",
        if whole.is_empty() { "0" } else { whole },
        frac,
        "0".repeat(decimals as usize - frac.len())
    );
    U256::from_str_radix(&padded, 10).map_err(|_| AmountError::TooLarge(input.to_string()))
}

/// `value` / 10^`decimals` as a decimal string without trailing zeros ("1500000", 6 -> "1.5").
pub fn format_units(value: U256, decimals: u8) -> String {
    let s = value.to_string();
    let d = decimals as usize;
    let (whole, frac) = if s.len() > d {
        s.split_at(s.len() - d)
    } else {
        ("0", s.as_str())
    };
    let frac = format!("{}{}", "0".repeat(d.saturating_sub(frac.len())), frac);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_exactly() {
        assert_eq!(
            parse_units("0.5", 18).unwrap(),
            U256::from(5u64) * U256::from(10u64).pow(U256::from(17))
        );
        assert_eq!(
            parse_units("50_000", 6).unwrap(),
            U256::from(50_000_000_000u64)
        );
        assert_eq!(parse_units(".25", 2).unwrap(), U256::from(25u64));
        assert_eq!(format_units(U256::from(1_500_000u64), 6), "1.5");
        assert_eq!(format_units(U256::from(5u64), 6), "0.000005");
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(
            parse_units("1.2345678", 6),
            Err(AmountError::TooPrecise {
                input: "1.2345678".into(),
                decimals: 6
            })
        );
        assert!(matches!(
            parse_units("-1", 6),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_units("1e6", 6),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            parse_units("", 6),
            Err(AmountError::NotANumber(_))
        ));
    }
}
