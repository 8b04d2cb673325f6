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
    TooPrecise {
        /// The text given.
        input: String,
        /// How many decimals the unit has.
        decimals: u8,
    },
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

/// An ETH amount as wei: "0.05eth", "20gwei", "1000wei" or a bare number of wei.
pub fn parse_wei(input: &str) -> Result<U256, AmountError> {
    let s = input.trim().to_ascii_lowercase();
    let (number, decimals) = if let Some(n) = s.strip_suffix("gwei") {
        (n, 9)
    } else if let Some(n) = s.strip_suffix("wei") {
        (n, 0)
    } else if let Some(n) = s.strip_suffix("eth") {
        (n, 18)
    } else {
        (s.as_str(), 0)
    };
    parse_units(number.trim(), decimals).map_err(|e| match e {
        AmountError::TooPrecise { .. } => AmountError::TooPrecise {
            input: input.to_string(),
            decimals,
        },
        AmountError::TooLarge(_) => AmountError::TooLarge(input.to_string()),
        AmountError::NotANumber(_) => AmountError::NotANumber(input.to_string()),
    })
}

/// A percentage as basis points: "15%" or "15" is 1,500; "0.5%" is 50.
pub fn parse_bps(input: &str) -> Result<u32, AmountError> {
    let s = input.trim();
    let number = s.strip_suffix('%').unwrap_or(s).trim();
    let bps = parse_units(number, 2).map_err(|_| AmountError::NotANumber(input.to_string()))?;
    u32::try_from(bps).map_err(|_| AmountError::TooLarge(input.to_string()))
}

/// A leverage as hundredths: "3", "3x" or "2.5x" is 300 or 250.
pub fn parse_leverage(input: &str) -> Result<u32, AmountError> {
    let s = input.trim();
    let number = s.strip_suffix(['x', 'X']).unwrap_or(s).trim();
    let hundredths =
        parse_units(number, 2).map_err(|_| AmountError::NotANumber(input.to_string()))?;
    u32::try_from(hundredths).map_err(|_| AmountError::TooLarge(input.to_string()))
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

/// `format_units` with the whole part grouped in thousands, as people read amounts in messages
/// ("9994000000", 6 -> "9,994"; 60,000 x 10^18, 18 -> "60,000").
pub fn format_amount(value: U256, decimals: u8) -> String {
    let plain = format_units(value, decimals);
    let (whole, frac) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

/// `format_amount` of a signed value ("-1,250.5").
pub fn format_signed_amount(value: alloy_primitives::I256, decimals: u8) -> String {
    let sign = if value.is_negative() { "-" } else { "" };
    format!("{sign}{}", format_amount(value.unsigned_abs(), decimals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_messages_are_grouped() {
        assert_eq!(format_amount(U256::from(9_994_000_000u64), 6), "9,994");
        assert_eq!(
            format_amount(parse_units("60000", 18).unwrap(), 18),
            "60,000"
        );
        assert_eq!(
            format_amount(U256::from(1_234_567_500_000u64), 6),
            "1,234,567.5"
        );
        assert_eq!(format_amount(U256::from(999u64), 0), "999");
        assert_eq!(format_amount(U256::ZERO, 6), "0");
        assert_eq!(
            format_signed_amount(
                alloy_primitives::I256::try_from(-1_250_500_000i64).unwrap(),
                6
            ),
            "-1,250.5"
        );
    }

    #[test]
    fn wei_bps_and_leverage_read_as_people_write_them() {
        assert_eq!(
            parse_wei("0.05eth").unwrap(),
            U256::from(50_000_000_000_000_000u64)
        );
        assert_eq!(parse_wei("20gwei").unwrap(), U256::from(20_000_000_000u64));
        assert_eq!(parse_wei("1000").unwrap(), U256::from(1000u64));
        assert!(matches!(
            parse_wei("0.5wei"),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(parse_wei("lots"), Err(AmountError::NotANumber(_))));
        assert_eq!(parse_bps("15%").unwrap(), 1_500);
        assert_eq!(parse_bps("0.5%").unwrap(), 50);
        assert!(parse_bps("0.005%").is_err());
        assert_eq!(parse_leverage("3").unwrap(), 300);
        assert_eq!(parse_leverage("2.5x").unwrap(), 250);
        assert!(parse_leverage("x").is_err());
    }

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
