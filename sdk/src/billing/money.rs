//! Money as people read and type it. Amounts stay integers of minor units on the wire and in
//! every database; this module only converts at the edge, with each currency's number of decimals
//! from ISO 4217 (EUR 2, JPY 0, KWD 3, …).

use std::fmt;

use super::tariff::MAX_AMOUNT;

/// Currencies whose minor unit is not a hundredth (ISO 4217 list 1, active codes).
const DECIMALS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// How many decimals the currency `code` has (ISO 4217): 2 unless listed otherwise.
pub fn currency_decimals(code: &str) -> u32 {
    DECIMALS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map_or(2, |(_, d)| *d)
}

/// An amount in minor units of a currency, displayed in major units: `0.10 EUR`, `-5.00 EUR`,
/// `1200 JPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money<'a> {
    /// Minor units (cents for EUR).
    pub minor: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
}

impl<'a> Money<'a> {
    /// `minor` units of `currency`.
    pub fn new(minor: i64, currency: &'a str) -> Self {
        Money { minor, currency }
    }

    /// The amount in major units without the currency code: `0.10`, `-5.00`, `1200`.
    pub fn major(&self) -> String {
        format_major(self.minor, currency_decimals(self.currency))
    }
}

impl fmt::Display for Money<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.major(), self.currency)
    }
}

fn format_major(minor: i64, decimals: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = decimals as usize
    )
}

/// Reads an amount typed in major units of `currency` (`5`, `5.5`, `0.10`, `-2.00`; a
/// thousands separator is not accepted) as minor units. Refuses more decimals than the currency
/// has, anything that is not a number, and amounts beyond ±[`MAX_AMOUNT`] minor units.
pub fn parse_major(text: &str, currency: &str) -> Result<i64, String> {
    let decimals = currency_decimals(currency);
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_suffix(currency)
        .map_or(trimmed, str::trim_end);
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let example = format_major(1050 * 10i64.pow(decimals) / 100, decimals);
    let bad = || {
        format!(
            "{text:?} is not an amount of {currency} (write it in {currency}, with at most {decimals} decimals, e.g. {example})"
        )
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit())
        || (digits.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    if fraction.len() > decimals as usize {
        return Err(format!(
            "{text:?} has more decimals than {currency} has ({decimals})"
        ));
    }
    let too_large = || {
        format!(
            "{text:?} is too large: at most {}",
            Money::new(MAX_AMOUNT, currency)
        )
    };
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let fraction_value: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let scale = 10i64.pow(decimals - fraction.len() as u32);
    let minor = whole
        .checked_mul(10i64.pow(decimals))
        .and_then(|w| w.checked_add(fraction_value * scale))
        .filter(|m| *m <= MAX_AMOUNT)
        .ok_or_else(too_large)?;
    Ok(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_in_major_units_with_the_currency_decimals() {
        assert_eq!(Money::new(10, "EUR").to_string(), "0.10 EUR");
        assert_eq!(Money::new(990, "EUR").to_string(), "9.90 EUR");
        assert_eq!(Money::new(-500, "USD").to_string(), "-5.00 USD");
        assert_eq!(Money::new(-5, "EUR").to_string(), "-0.05 EUR");
        assert_eq!(Money::new(1200, "JPY").to_string(), "1200 JPY");
        assert_eq!(Money::new(1234, "KWD").to_string(), "1.234 KWD");
        assert_eq!(Money::new(0, "EUR").major(), "0.00");
        assert_eq!(Money::new(i64::MIN, "EUR").major(), "-92233720368547758.08");
    }

    #[test]
    fn typed_amounts_become_minor_units_and_bad_ones_are_named() {
        assert_eq!(parse_major("5", "EUR"), Ok(500));
        assert_eq!(parse_major("5.5", "EUR"), Ok(550));
        assert_eq!(parse_major("0.10", "EUR"), Ok(10));
        assert_eq!(parse_major("0.10 EUR", "EUR"), Ok(10));
        assert_eq!(parse_major("-2.00", "EUR"), Ok(-200));
        assert_eq!(parse_major("1200", "JPY"), Ok(1200));
        assert_eq!(parse_major("1.234", "KWD"), Ok(1234));
        assert!(parse_major("0.001", "EUR")
            .unwrap_err()
            .contains("more decimals"));
        assert!(parse_major("1.5", "JPY").unwrap_err().contains("(0)"));
        for bad in ["", "-", ".5", "5.", "1,000", "ten", "1e3", "+5", "5..0"] {
            let e = parse_major(bad, "EUR").unwrap_err();
            assert!(e.contains("not an amount of EUR"), "{bad:?}: {e}");
        }
        assert!(parse_major("10000000001", "EUR")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_major("99999999999999999999", "EUR")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_major("10000000000", "EUR"), Ok(MAX_AMOUNT));
    }
}
