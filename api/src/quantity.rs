//! Kubernetes resource quantities (`500m`, `0.5`, `128Mi`, `1G`, `1e3`):
//! the syntax specs already use for `resources`, parsed exactly (no
//! floating point), so that `0.1` CPU is 100 millicores and `1.5Gi` is
//! 1610612736 bytes, as Kubernetes reads them.
//!
//! The grammar (Kubernetes `resource.Quantity`):
//!
//! ```text
//! quantity  ::= sign? number suffix
//! number    ::= digits | digits "." digits? | "." digits
//! suffix    ::= "" | "m" | "k" | "M" | "G" | "T" | "P" | "E"     (powers of 10)
//!             | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"         (powers of 2)
//!             | ("e" | "E") sign? digits                         (10^n)
//! ```

use std::fmt;
use std::str::FromStr;

/// Most digits a number may have: more is not a resource amount but a
/// mistake, and the exact arithmetic below stays within `u128`.
const MAX_DIGITS: usize = 30;

/// Largest decimal exponent accepted (`1e18` is an exabyte).
const MAX_EXPONENT: i32 = 30;

/// A parsed quantity: `mantissa` × 10^`exp10` × 2^`exp2`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// Why a text is not a quantity, or not one that fits what it is used for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not the syntax at all.
    #[error(
        "{0:?} is not a quantity (examples: \"500m\", \"0.5\", \"2\", \"128Mi\", \"1G\", \"1e3\")"
    )]
    Syntax(String),
    /// Below zero, where an amount is needed.
    #[error("{0:?} is negative")]
    Negative(String),
    /// Too many digits, or too large to be any real amount.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Quantity {
    /// Parses `text` (no surrounding spaces, as Kubernetes).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let syntax = || QuantityError::Syntax(text.to_string());
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (int, frac) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(syntax());
        }
        // Trailing zeros of the fraction say nothing (`1.000` is 1).
        let frac = frac.trim_end_matches('0');
        let digits = format!("{int}{frac}");
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return Err(QuantityError::TooLarge(text.to_string()));
        }
        let mantissa: u128 = if significant.is_empty() {
            0
        } else {
            significant.parse().map_err(|_| syntax())?
        };
        // `frac.len()` ≤ the whole text's length, itself bounded below.
        let frac_len = i32::try_from(frac.len()).map_err(|_| syntax())?;
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            s if s.starts_with(['e', 'E']) => {
                let exp = &s[1..];
                let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let n: i32 = exp
                    .parse()
                    .map_err(|_| QuantityError::TooLarge(text.to_string()))?;
                if n.unsigned_abs() > MAX_EXPONENT.unsigned_abs() {
                    return Err(QuantityError::TooLarge(text.to_string()));
                }
                (n, 0)
            }
            _ => return Err(syntax()),
        };
        Ok(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10: exp10.checked_sub(frac_len).ok_or_else(syntax)?,
            exp2,
        })
    }

    /// True for a quantity below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The amount in units of 10^`-scale` (scale 0: whole units such as
    /// bytes; scale 3: thousandths such as millicores), rounded up as
    /// Kubernetes rounds (`0.1m` CPU is 1m, `1.5` bytes is 2). Refuses
    /// negative amounts and amounts past `u64`.
    pub fn scaled(&self, text: &str, scale: i32) -> Result<u64, QuantityError> {
        if self.negative {
            return Err(QuantityError::Negative(text.to_string()));
        }
        let too_large = || QuantityError::TooLarge(text.to_string());
        if self.mantissa == 0 {
            return Ok(0);
        }
        let mut value = self
            .mantissa
            .checked_mul(1u128.checked_shl(self.exp2).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
        let exp = self.exp10.checked_add(scale).ok_or_else(too_large)?;
        if exp >= 0 {
            let factor = 10u128
                .checked_pow(exp.unsigned_abs())
                .ok_or_else(too_large)?;
            value = value.checked_mul(factor).ok_or_else(too_large)?;
        } else {
            // Dividing by more than 10^38 leaves at most a fraction: 1.
            match 10u128.checked_pow(exp.unsigned_abs()) {
                Some(divisor) => value = value.div_ceil(divisor),
                None => value = 1,
            }
        }
        u64::try_from(value).map_err(|_| too_large())
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

/// Deserializes a quantity field from text or from a JSON number (as
/// Kubernetes does: `memory: 67108864`, `cpu: 0.5`), keeping its text.
pub fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    let raw: Option<serde_json::Value> = serde::Deserialize::deserialize(d)?;
    match raw {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(t)) => Ok(Some(t)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!(
            "a quantity is text or a number (\"256Mi\", \"500m\", 134217728), not {other}"
        ))),
    }
}

/// Parses a CPU quantity into millicores (`0.5` and `500m` are 500).
pub fn parse_millicores(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text)?.scaled(text, 3)
}

/// Parses a memory quantity into bytes (`128Mi` is 134217728).
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text)?.scaled(text, 0)
}

/// Bytes as the shortest exact binary quantity (`268435456` → `256Mi`),
/// for messages that must quote numbers a reader can compare with a spec.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut unit = "";
    for u in UNITS {
        if value == 0 || !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        unit = u;
    }
    format!("{value}{unit}")
}

/// Millicores as Kubernetes writes them (`500m`, `2`).
pub fn format_millicores(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes that display as both the number and its exact binary quantity
/// (`67108864 bytes (64Mi)`), so that a refusal's numbers can be compared
/// with the spec that asked for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes ({})", self.0, format_bytes(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        for (text, millis) in [
            ("0.5", 500),
            ("500m", 500),
            ("1", 1000),
            ("2", 2000),
            (".25", 250),
            ("1.", 1000),
            ("+1.5", 1500),
            ("100m", 100),
            ("0.1m", 1),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("5e-1", 500),
            ("0", 0),
            ("0.000", 0),
            ("1k", 1_000_000),
        ] {
            assert_eq!(parse_millicores(text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        for (text, bytes) in [
            ("128Mi", 128 << 20),
            ("64Mi", 64 << 20),
            ("1G", 1_000_000_000),
            ("1Gi", 1 << 30),
            ("1.5Gi", 1_610_612_736),
            ("1e3", 1000),
            ("1E3", 1000),
            ("129e6", 129_000_000),
            ("123", 123),
            ("1k", 1000),
            ("1Ki", 1024),
            ("0.5Ki", 512),
            ("1.5", 2),
            ("1m", 1),
            ("2Ti", 2 << 40),
            ("8Ei", 8 << 60),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_syntax_is_refused() {
        for text in [
            "", "abc", "1.2.3", "1 Gi", " 1", "1Gi ", "1gi", "1KI", "1K", "1mi", "Mi", ".", "-",
            "+", "1e", "1e+", "1ee3", "1e3Mi", "1Mi3", "0x10", "1_000", "½", "1,5",
        ] {
            assert!(
                matches!(Quantity::parse(text), Err(QuantityError::Syntax(_))),
                "{text:?} parsed: {:?}",
                Quantity::parse(text)
            );
        }
    }

    #[test]
    fn negative_and_huge_amounts_are_refused() {
        assert_eq!(
            parse_bytes("-1Mi"),
            Err(QuantityError::Negative("-1Mi".into()))
        );
        assert!(Quantity::parse("-1").unwrap().is_negative());
        assert!(!Quantity::parse("-0").unwrap().is_negative());
        for text in ["16Ei", "1e30", "1e31", "99999999999999999999999999999999Ki"] {
            assert!(
                matches!(parse_bytes(text), Err(QuantityError::TooLarge(_))),
                "{text}: {:?}",
                parse_bytes(text)
            );
        }
        assert_eq!(parse_bytes("1e-30"), Ok(1));
        assert_eq!(parse_millicores("1e-30"), Ok(1));
        // Exponents at the edge of i32: refused, never wrapped or panicking.
        for text in [
            "1e-2147483648",
            "1.5e-2147483648",
            "1e2147483647",
            "1e-2147483649",
        ] {
            assert!(
                matches!(parse_bytes(text), Err(QuantityError::TooLarge(_))),
                "{text}: {:?}",
                parse_bytes(text)
            );
        }
    }

    #[test]
    fn trailing_zeros_of_a_fraction_do_not_count_as_digits() {
        assert_eq!(parse_bytes("1.000000000000000000000000000000000000"), Ok(1));
        assert_eq!(
            parse_millicores("0.50000000000000000000000000000000000"),
            Ok(500)
        );
    }

    #[test]
    fn messages_quote_the_text_and_give_examples() {
        let e = parse_bytes("12 parsecs").unwrap_err().to_string();
        assert!(e.contains("\"12 parsecs\"") && e.contains("128Mi"), "{e}");
    }

    #[test]
    fn numbers_on_the_wire_are_quantities_too() {
        #[derive(serde::Deserialize)]
        struct F {
            #[serde(default, deserialize_with = "text")]
            q: Option<String>,
        }
        let f = |v: serde_json::Value| serde_json::from_value::<F>(v).map(|f| f.q);
        assert_eq!(
            f(serde_json::json!({"q": 67108864})).unwrap().as_deref(),
            Some("67108864")
        );
        assert_eq!(
            f(serde_json::json!({"q": 0.5})).unwrap().as_deref(),
            Some("0.5")
        );
        assert_eq!(
            f(serde_json::json!({"q": "1Gi"})).unwrap().as_deref(),
            Some("1Gi")
        );
        assert_eq!(f(serde_json::json!({})).unwrap(), None);
        assert!(f(serde_json::json!({"q": true})).is_err());
        assert_eq!(parse_millicores("0.5"), Ok(500));
        assert_eq!(parse_bytes("1000.0"), Ok(1000));
    }

    #[test]
    fn formatting_is_exact() {
        assert_eq!(format_bytes(256 << 20), "256Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(1536), "1536");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(3 << 30), "3Gi");
        assert_eq!(format_millicores(500), "500m");
        assert_eq!(format_millicores(2000), "2");
        assert_eq!(Bytes(64 << 20).to_string(), "67108864 bytes (64Mi)");
    }
}
