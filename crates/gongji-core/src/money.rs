//! Money as integer fen (1 yuan = 100 fen).
//!
//! Amounts never pass through floating point: a JSON number such as `12.3` or `1.5E1` is read
//! from its decimal text straight into fen, so there is no rounding anywhere and every amount
//! the API accepts has exactly one representation. Arithmetic is checked only; an overflow is a
//! caller decision, never a silent wrap.

use std::fmt;

/// Integer fen. Checked arithmetic only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(pub u64);

impl Fen {
    /// No money.
    pub const ZERO: Fen = Fen(0);
    /// 99999999.99 yuan: the largest amount the API accepts.
    pub const INPUT_MAX: Fen = Fen(9_999_999_999);

    /// `self + o`, or `None` on overflow.
    pub const fn checked_add(self, o: Fen) -> Option<Fen> {
        match self.0.checked_add(o.0) {
            Some(v) => Some(Fen(v)),
            None => None,
        }
    }

    /// `self - o`, or `None` when `o` is larger (fen are never negative).
    pub const fn checked_sub(self, o: Fen) -> Option<Fen> {
        match self.0.checked_sub(o.0) {
            Some(v) => Some(Fen(v)),
            None => None,
        }
    }

    /// The smaller of the two amounts (inherent and `const`, unlike `Ord::min`).
    pub const fn min(self, o: Fen) -> Fen {
        if self.0 <= o.0 {
            self
        } else {
            o
        }
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Fen {
    /// Yuan with exactly two decimals: `12.30`, `0.00`, `99999999.99`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Formats a signed fen difference as yuan with two decimals: `-200.00`, `3.05`, `0.00`.
///
/// Uses `unsigned_abs` so that `i64::MIN` formats instead of overflowing on negation.
pub fn format_signed_fen(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}", Fen(v.unsigned_abs()))
}

/// Why an amount text was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain decimal number (empty, `+1`, `.5`, `5.`, spaces, `NaN`, hex, separators...).
    Syntax,
    /// A well-formed number with a leading `-`, including `-0`.
    Negative,
    /// A digit below 0.01 yuan: more than two decimals written out, or an exponent form whose
    /// exact value is not a whole number of fen.
    TooManyDecimals,
    /// Above [`Fen::INPUT_MAX`].
    TooLarge,
}

/// The number of decimal digits in [`Fen::INPUT_MAX`]; a fen value with more significant
/// digits is certainly too large, which lets us decide before any multiplication can overflow.
const INPUT_MAX_DIGITS: i64 = 10;

/// Parses the decimal text of a JSON number or JSON string amount straight into fen.
///
/// Grammar: `-`? digits (`.` digits)? ([`eE`] [`+-`]? digits)?. Leading zeros are accepted
/// (`012` is 12 yuan) to keep string amounts simple. Without an exponent, more than two
/// written decimals is [`AmountError::TooManyDecimals`] even if they are zeros (`12.300`);
/// with an exponent the exact value decides (`1.234e1` is 12.34 yuan). Arbitrarily long
/// digit strings and exponents are handled without overflow.
pub fn parse_amount(text: &str) -> Result<Fen, AmountError> {
    let b = text.as_bytes();
    let (negative, body) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let num = split_number(body).ok_or(AmountError::Syntax)?;
    // Negativity is reported only for otherwise well-formed numbers, so `-abc` stays Syntax.
    if negative {
        return Err(AmountError::Negative);
    }
    if num.exponent.is_none() && num.frac.len() > 2 {
        return Err(AmountError::TooManyDecimals);
    }
    let exponent = match num.exponent {
        Some(e) => parse_exponent(e),
        None => 0,
    };
    exact_fen(num.int, num.frac, exponent)
}

/// The three digit runs of a syntactically valid number, borrowed from the input.
struct NumberParts<'a> {
    int: &'a [u8],
    frac: &'a [u8],
    /// Sign and digits after `e`/`E`.
    exponent: Option<&'a [u8]>,
}

/// Splits `digits (. digits)? ([eE] [+-]? digits)?`, or `None` if the text does not match.
fn split_number(b: &[u8]) -> Option<NumberParts<'_>> {
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    let (int, mut rest) = b.split_at(int_len);
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        frac = &after[..n];
        rest = &after[n..];
    }
    let mut exponent = None;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let digits = match after.split_first() {
            Some((b'+' | b'-', d)) => d,
            _ => after,
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        exponent = Some(after);
        rest = &[];
    }
    if !rest.is_empty() {
        return None;
    }
    Some(NumberParts {
        int,
        frac,
        exponent,
    })
}

/// Reads a validated `[+-]?digits` exponent, saturating: any exponent beyond `i64` range is as
/// decisive as `i64::MAX` because no input text is long enough to compensate for it.
fn parse_exponent(e: &[u8]) -> i64 {
    let (neg, digits) = match e.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, e),
    };
    let mag = digits.iter().fold(0i64, |acc, &c| {
        acc.saturating_mul(10).saturating_add(i64::from(c - b'0'))
    });
    if neg {
        -mag
    } else {
        mag
    }
}

/// The exact value `int.frac × 10^exponent` in fen.
///
/// Works on the significant digits only: the value in fen is `sig × 10^shift`, where `sig` is
/// the digit string with leading and trailing zeros removed. A negative shift means a non-zero
/// digit below one fen; a long `sig` or large shift means too large. Both are decided by
/// counting digits, so nothing here can overflow whatever the input length.
fn exact_fen(int: &[u8], frac: &[u8], exponent: i64) -> Result<Fen, AmountError> {
    let all = int.iter().chain(frac.iter());
    let lead = all.clone().take_while(|&&c| c == b'0').count();
    let total = int.len() + frac.len();
    if lead == total {
        // Every digit is zero, so the value is zero whatever the exponent.
        return Ok(Fen::ZERO);
    }
    let trail = all.rev().take_while(|&&c| c == b'0').count();
    let sig_len = total - lead - trail;
    // Input text length always fits in i64; saturation only matters for absurd exponents.
    let shift = exponent
        .saturating_sub(frac.len() as i64)
        .saturating_add(2)
        .saturating_add(trail as i64);
    if shift < 0 {
        return Err(AmountError::TooManyDecimals);
    }
    if (sig_len as i64).saturating_add(shift) > INPUT_MAX_DIGITS {
        return Err(AmountError::TooLarge);
    }
    // At most 10 significant digits times 10^shift with sig_len + shift <= 10: fits in u64.
    let sig = int
        .iter()
        .chain(frac.iter())
        .skip(lead)
        .take(sig_len)
        .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'));
    let fen = sig * 10u64.pow(shift as u32);
    if fen > Fen::INPUT_MAX.0 {
        return Err(AmountError::TooLarge);
    }
    Ok(Fen(fen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_has_exactly_two_decimals() {
        // Proves Display renders yuan with two decimals, zero-padded, at the edges of the range.
        assert_eq!(Fen(1230).to_string(), "12.30");
        assert_eq!(Fen(0).to_string(), "0.00");
        assert_eq!(Fen(5).to_string(), "0.05");
        assert_eq!(Fen(100).to_string(), "1.00");
        assert_eq!(Fen::INPUT_MAX.to_string(), "99999999.99");
        assert_eq!(Fen(u64::MAX).to_string(), "184467440737095516.15");
    }

    #[test]
    fn signed_format() {
        // Proves format_signed_fen puts the sign in front of the yuan text, including i64::MIN.
        assert_eq!(format_signed_fen(-20000), "-200.00");
        assert_eq!(format_signed_fen(305), "3.05");
        assert_eq!(format_signed_fen(0), "0.00");
        assert_eq!(format_signed_fen(-5), "-0.05");
        assert_eq!(format_signed_fen(i64::MIN), "-92233720368547758.08");
        assert_eq!(format_signed_fen(i64::MAX), "92233720368547758.07");
    }

    #[test]
    fn checked_arithmetic() {
        // Proves add/sub report overflow and underflow as None instead of wrapping.
        assert_eq!(Fen(1).checked_add(Fen(2)), Some(Fen(3)));
        assert_eq!(Fen(u64::MAX).checked_add(Fen(1)), None);
        assert_eq!(Fen(5).checked_sub(Fen(5)), Some(Fen::ZERO));
        assert_eq!(Fen(4).checked_sub(Fen(5)), None);
        assert_eq!(Fen(4).min(Fen(5)), Fen(4));
        assert_eq!(Fen(6).min(Fen(5)), Fen(5));
        assert!(Fen::ZERO.is_zero());
        assert!(!Fen(1).is_zero());
        assert_eq!(Fen::default(), Fen::ZERO);
    }

    #[test]
    fn parse_table() {
        // Proves every documented accept/reject rule of parse_amount, one row per case.
        use AmountError::*;
        let long_int = "1".repeat(40);
        let long_zeros = format!("{}1", "0".repeat(40));
        let long_frac_zero = format!("1.{}", "0".repeat(40));
        let cases: &[(&str, Result<Fen, AmountError>)] = &[
            ("12", Ok(Fen(1200))),
            ("12.3", Ok(Fen(1230))),
            ("12.30", Ok(Fen(1230))),
            ("0", Ok(Fen(0))),
            ("0.00", Ok(Fen(0))),
            ("0.01", Ok(Fen(1))),
            ("99999999.99", Ok(Fen::INPUT_MAX)),
            ("012", Ok(Fen(1200))),
            ("012.00", Ok(Fen(1200))),
            (&long_zeros, Ok(Fen(100))),
            // Exponent forms, converted exactly.
            ("1e2", Ok(Fen(10000))),
            ("1E2", Ok(Fen(10000))),
            ("1e+2", Ok(Fen(10000))),
            ("1.5E1", Ok(Fen(1500))),
            ("2.5e-1", Ok(Fen(25))),
            ("1e-2", Ok(Fen(1))),
            ("1.234e1", Ok(Fen(1234))),
            ("12.300e0", Ok(Fen(1230))),
            ("1234e-2", Ok(Fen(1234))),
            ("0e400", Ok(Fen(0))),
            ("0.000e-99999999999999999999999", Ok(Fen(0))),
            ("9.999999999e7", Ok(Fen::INPUT_MAX)),
            ("999999999900e-4", Ok(Fen::INPUT_MAX)),
            // Too many decimals.
            ("12.300", Err(TooManyDecimals)),
            ("0.001", Err(TooManyDecimals)),
            ("0.000", Err(TooManyDecimals)),
            (&long_frac_zero, Err(TooManyDecimals)),
            ("1e-3", Err(TooManyDecimals)),
            ("2.5e-2", Err(TooManyDecimals)),
            ("1.001e1", Ok(Fen(1001))),
            ("1.0001e1", Err(TooManyDecimals)),
            ("99999999.999e0", Err(TooManyDecimals)),
            ("1e-99999999999999999999999", Err(TooManyDecimals)),
            // Negative, including zero.
            ("-1", Err(Negative)),
            ("-0", Err(Negative)),
            ("-0.00", Err(Negative)),
            ("-1e2", Err(Negative)),
            // Too large, including numbers that would overflow u64 or any exponent.
            ("100000000", Err(TooLarge)),
            ("100000000.00", Err(TooLarge)),
            ("999999999.9e0", Err(TooLarge)),
            ("1e8", Err(TooLarge)),
            ("1e400", Err(TooLarge)),
            ("1e99999999999999999999999", Err(TooLarge)),
            ("18446744073709551616", Err(TooLarge)),
            (&long_int, Err(TooLarge)),
            // Syntax.
            ("", Err(Syntax)),
            ("-", Err(Syntax)),
            ("--1", Err(Syntax)),
            ("-abc", Err(Syntax)),
            ("+1", Err(Syntax)),
            (".5", Err(Syntax)),
            ("5.", Err(Syntax)),
            ("1.e5", Err(Syntax)),
            (" 5", Err(Syntax)),
            ("5 ", Err(Syntax)),
            ("NaN", Err(Syntax)),
            ("Infinity", Err(Syntax)),
            ("-Infinity", Err(Syntax)),
            ("1_000", Err(Syntax)),
            ("1,00", Err(Syntax)),
            ("0x10", Err(Syntax)),
            ("1.2.3", Err(Syntax)),
            ("1e", Err(Syntax)),
            ("1e+", Err(Syntax)),
            ("1e2.5", Err(Syntax)),
            ("1e2e3", Err(Syntax)),
            ("１２", Err(Syntax)),
            ("12\n", Err(Syntax)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_amount(text), *want, "input {text:?}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v in 0..=Fen::INPUT_MAX.0) {
            // Proves every accepted amount survives Display then parse_amount unchanged.
            let fen = Fen(v);
            prop_assert_eq!(parse_amount(&fen.to_string()), Ok(fen));
        }

        #[test]
        fn exponent_form_round_trip(v in 1..=Fen::INPUT_MAX.0, e in 0u32..12) {
            // Proves `v e-(2+e)` scaled back up by trailing zeros parses to exactly v fen.
            let text = format!("{v}{}e-{}", "0".repeat(e as usize), 2 + e);
            prop_assert_eq!(parse_amount(&text), Ok(Fen(v)));
        }

        #[test]
        fn never_panics(s in "[-+0-9.eE]{0,30}") {
            // Proves arbitrary number-like text never panics and any success is within range.
            if let Ok(f) = parse_amount(&s) {
                prop_assert!(f <= Fen::INPUT_MAX);
            }
        }
    }
}
