//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`), parsed and formatted exactly.
//!
//! A [`Quantity`] holds its value as an integer count of nano-units (10⁻⁹), which is the
//! finest precision Kubernetes keeps: finer digits are rounded up, as the API server does.
//! All arithmetic is checked; nothing here ever goes through floating point.

use std::fmt;
use std::str::FromStr;

/// Number of nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Largest magnitude a quantity may hold, in units: Kubernetes stores values as int64.
const MAX_UNITS: i128 = i64::MAX as i128;

/// How a quantity was written, which decides how it is formatted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// Powers of 1000 with SI letters: `n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
    /// Scientific notation: `1e3`, `12E-3`.
    DecimalExponent,
}

/// Why a quantity string was rejected or a computation could not be represented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not a Kubernetes quantity.
    #[error("invalid quantity {input:?}: {reason}")]
    Invalid {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value does not fit the range Kubernetes (and Tide) can represent.
    #[error("quantity {input:?} is out of range: {reason}")]
    Overflow {
        /// The text or expression that overflowed.
        input: String,
        /// Which limit was passed.
        reason: &'static str,
    },
    /// A negative value where only non-negative amounts make sense (CPU, memory).
    #[error("quantity {input:?} is negative where a non-negative amount is required")]
    Negative {
        /// The text as given.
        input: String,
    },
}

/// An exact Kubernetes quantity.
///
/// ```
/// use tide_api::Quantity;
/// let q: Quantity = "1.5Gi".parse().unwrap();
/// assert_eq!(q.value_ceil().unwrap(), 1_610_612_736);
/// assert_eq!(q.to_string(), "1536Mi");
/// let cpu: Quantity = "250m".parse().unwrap();
/// assert_eq!(cpu.milli_value_ceil().unwrap(), 250);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

impl Quantity {
    /// A quantity of `milli` thousandths (CPU millicores), formatted in decimal SI.
    pub fn from_milli(milli: i64) -> Self {
        Self {
            nanos: i128::from(milli) * 1_000_000,
            format: QuantityFormat::DecimalSI,
        }
    }

    /// A quantity of whole units in the given format (bytes are usually [`QuantityFormat::BinarySI`]).
    pub fn from_units(units: i64, format: QuantityFormat) -> Self {
        Self {
            nanos: i128::from(units) * NANOS_PER_UNIT,
            format,
        }
    }

    /// The format the quantity was written in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// True when the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths, rounded up (Kubernetes' `MilliValue`), checked to fit in `i64`.
    pub fn milli_value_ceil(&self) -> Result<i64, QuantityError> {
        to_i64(div_ceil(self.nanos, 1_000_000), self)
    }

    /// The value in whole units, rounded up (Kubernetes' `Value`), checked to fit in `i64`.
    pub fn value_ceil(&self) -> Result<i64, QuantityError> {
        to_i64(div_ceil(self.nanos, NANOS_PER_UNIT), self)
    }

    /// The value as a floating-point number of units (for statistics only, never for accounting).
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    /// Exact sum; the format of `self` is kept. Errors when the result leaves the int64 range.
    pub fn checked_add(&self, other: &Quantity) -> Result<Quantity, QuantityError> {
        let nanos = self
            .nanos
            .checked_add(other.nanos)
            .filter(|n| n.abs() <= MAX_UNITS * NANOS_PER_UNIT)
            .ok_or_else(|| QuantityError::Overflow {
                input: format!("{self} + {other}"),
                reason: "sum exceeds the int64 range",
            })?;
        Ok(Quantity {
            nanos,
            format: self.format,
        })
    }

    /// Exact difference; the format of `self` is kept.
    pub fn checked_sub(&self, other: &Quantity) -> Result<Quantity, QuantityError> {
        let negated = Quantity {
            nanos: -other.nanos,
            format: other.format,
        };
        self.checked_add(&negated)
    }
}

fn div_ceil(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 { q + 1 } else { q }
}

fn to_i64(v: i128, q: &Quantity) -> Result<i64, QuantityError> {
    i64::try_from(v).map_err(|_| QuantityError::Overflow {
        input: q.to_string(),
        reason: "value exceeds the int64 range",
    })
}

fn invalid(input: &str, reason: &'static str) -> QuantityError {
    QuantityError::Invalid {
        input: input.to_owned(),
        reason,
    }
}

fn overflow(input: &str, reason: &'static str) -> QuantityError {
    QuantityError::Overflow {
        input: input.to_owned(),
        reason,
    }
}

/// Splits `s` into its leading number (sign, digits, point) and the suffix.
fn split_number(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    s.split_at(i)
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(invalid(input, "empty string"));
        }
        if input.trim() != input {
            return Err(invalid(input, "leading or trailing white space"));
        }
        let (number, suffix) = split_number(input);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => {
                if f.contains('.') {
                    return Err(invalid(input, "more than one decimal point"));
                }
                (i, f)
            }
            None => (digits, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid(input, "expected a number"));
        }

        // Exponent of ten and power of 1024 contributed by the suffix.
        let (mut exp10, bin_pow, format): (i64, u32, QuantityFormat) = match suffix {
            "" => (0, 0, QuantityFormat::DecimalSI),
            "n" => (-9, 0, QuantityFormat::DecimalSI),
            "u" => (-6, 0, QuantityFormat::DecimalSI),
            "m" => (-3, 0, QuantityFormat::DecimalSI),
            "k" => (3, 0, QuantityFormat::DecimalSI),
            "M" => (6, 0, QuantityFormat::DecimalSI),
            "G" => (9, 0, QuantityFormat::DecimalSI),
            "T" => (12, 0, QuantityFormat::DecimalSI),
            "P" => (15, 0, QuantityFormat::DecimalSI),
            "E" => (18, 0, QuantityFormat::DecimalSI),
            "Ki" => (0, 1, QuantityFormat::BinarySI),
            "Mi" => (0, 2, QuantityFormat::BinarySI),
            "Gi" => (0, 3, QuantityFormat::BinarySI),
            "Ti" => (0, 4, QuantityFormat::BinarySI),
            "Pi" => (0, 5, QuantityFormat::BinarySI),
            "Ei" => (0, 6, QuantityFormat::BinarySI),
            s if s.starts_with(['e', 'E']) => {
                let e = &s[1..];
                let body = e.strip_prefix(['+', '-']).unwrap_or(e);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(input, "exponent must be a whole number"));
                }
                let e: i64 = e
                    .parse()
                    .map_err(|_| overflow(input, "exponent out of range"))?;
                (e, 0, QuantityFormat::DecimalExponent)
            }
            _ => return Err(invalid(input, "unknown suffix")),
        };

        // Mantissa from all significant digits; leading zeros carry no information.
        let all_digits = format!("{int_part}{frac_part}");
        let significant = all_digits.trim_start_matches('0');
        exp10 = exp10.saturating_sub(i64::try_from(frac_part.len()).unwrap_or(i64::MAX));
        // Trailing zeros move into the exponent so long zero tails cannot overflow.
        let trimmed = significant.trim_end_matches('0');
        exp10 = exp10
            .saturating_add(i64::try_from(significant.len() - trimmed.len()).unwrap_or(i64::MAX));
        if trimmed.is_empty() {
            return Ok(Quantity { nanos: 0, format });
        }
        if trimmed.len() > 30 {
            return Err(overflow(input, "more than 30 significant digits"));
        }
        let mut mantissa: i128 = trimmed
            .parse()
            .map_err(|_| overflow(input, "too many digits"))?;
        mantissa = mantissa
            .checked_mul(1i128 << (10 * bin_pow))
            .ok_or_else(|| overflow(input, "value exceeds the int64 range"))?;

        // Scale to nano-units, rounding up anything finer than a nano (Kubernetes does too).
        let shift = exp10.saturating_add(9);
        let nanos = if shift >= 0 {
            if shift > 38 {
                return Err(overflow(input, "value exceeds the int64 range"));
            }
            let scale = 10i128.pow(u32::try_from(shift).unwrap_or(u32::MAX));
            mantissa
                .checked_mul(scale)
                .ok_or_else(|| overflow(input, "value exceeds the int64 range"))?
        } else if shift < -38 {
            // Far below a nano: any non-zero value rounds up to one nano-unit.
            1
        } else {
            let scale = 10i128.pow(u32::try_from(-shift).unwrap_or(u32::MAX));
            div_ceil(mantissa, scale)
        };
        if nanos > MAX_UNITS * NANOS_PER_UNIT {
            return Err(overflow(input, "value exceeds the int64 range"));
        }
        let nanos = if negative { -nanos } else { nanos };
        Ok(Quantity { nanos, format })
    }
}

/// SI suffixes by power of 1000, from exa down to nano.
const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (6, "E"),
    (5, "P"),
    (4, "T"),
    (3, "G"),
    (2, "M"),
    (1, "k"),
    (0, ""),
    (-1, "m"),
    (-2, "u"),
    (-3, "n"),
];
const BINARY_SUFFIXES: [(u32, &str); 6] = [
    (6, "Ei"),
    (5, "Pi"),
    (4, "Ti"),
    (3, "Gi"),
    (2, "Mi"),
    (1, "Ki"),
];

/// Largest power of 1000 (as in `DECIMAL_SUFFIXES`) by which `nanos` is an integer multiple.
fn decimal_split(nanos: i128) -> (i128, i32) {
    for (pow, _) in DECIMAL_SUFFIXES {
        let scale = 10i128.pow(u32::try_from(9 + 3 * pow).unwrap_or(0));
        if nanos % scale == 0 {
            return (nanos / scale, pow);
        }
    }
    (nanos, -3)
}

impl fmt::Display for Quantity {
    /// The canonical form, as the API server would write it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let binary_ok =
            self.nanos % NANOS_PER_UNIT == 0 && self.nanos.abs() >= 1024 * NANOS_PER_UNIT;
        match self.format {
            QuantityFormat::BinarySI if binary_ok => {
                let units = self.nanos / NANOS_PER_UNIT;
                for (pow, suffix) in BINARY_SUFFIXES {
                    let scale = 1i128 << (10 * pow);
                    if units % scale == 0 {
                        return write!(f, "{}{}", units / scale, suffix);
                    }
                }
                write!(f, "{units}")
            }
            QuantityFormat::DecimalExponent => {
                let (mantissa, pow) = decimal_split(self.nanos);
                if pow == 0 {
                    write!(f, "{mantissa}")
                } else {
                    write!(f, "{}e{}", mantissa, 3 * pow)
                }
            }
            QuantityFormat::BinarySI | QuantityFormat::DecimalSI => {
                let (mantissa, pow) = decimal_split(self.nanos);
                let suffix = DECIMAL_SUFFIXES
                    .iter()
                    .find(|(p, _)| *p == pow)
                    .map_or("", |(_, s)| *s);
                write!(f, "{mantissa}{suffix}")
            }
        }
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes quantity such as \"500m\" or \"1Gi\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::from_units(v, QuantityFormat::DecimalSI))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                let v = i64::try_from(v).map_err(|_| {
                    E::custom(overflow(&v.to_string(), "value exceeds the int64 range"))
                })?;
                Ok(Quantity::from_units(v, QuantityFormat::DecimalSI))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(invalid(&v.to_string(), "not a finite number")));
                }
                v.to_string().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form_to_the_exact_value() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("500m", 500_000_000),
            ("2", 2_000_000_000),
            ("1.5", 1_500_000_000),
            ("+1.5", 1_500_000_000),
            ("-1.5", -1_500_000_000),
            (".5", 500_000_000),
            ("5.", 5_000_000_000),
            ("1Ki", 1024 * NANOS_PER_UNIT),
            ("1Mi", (1i128 << 20) * NANOS_PER_UNIT),
            ("1Gi", (1i128 << 30) * NANOS_PER_UNIT),
            ("1Ti", (1i128 << 40) * NANOS_PER_UNIT),
            ("1Pi", (1i128 << 50) * NANOS_PER_UNIT),
            ("1Ei", (1i128 << 60) * NANOS_PER_UNIT),
            ("1k", 1_000 * NANOS_PER_UNIT),
            ("1M", 1_000_000 * NANOS_PER_UNIT),
            ("1G", 1_000_000_000 * NANOS_PER_UNIT),
            ("1T", 10i128.pow(12) * NANOS_PER_UNIT),
            ("1P", 10i128.pow(15) * NANOS_PER_UNIT),
            ("1E", 10i128.pow(18) * NANOS_PER_UNIT),
            ("1e3", 1_000 * NANOS_PER_UNIT),
            ("1E-3", 1_000_000),
            ("12e+2", 1_200 * NANOS_PER_UNIT),
            ("1n", 1),
            ("1u", 1_000),
            ("1.5Gi", 3 * (1i128 << 29) * NANOS_PER_UNIT),
            ("0.1n", 1), // rounded up to a nano, as Kubernetes does
            ("000012", 12 * NANOS_PER_UNIT),
            ("100000000000000000m", 10i128.pow(14) * NANOS_PER_UNIT),
        ];
        for (s, nanos) in cases {
            assert_eq!(q(s).nanos, *nanos, "{s}");
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_input_quoted() {
        for bad in [
            "", " 1", "1 ", "abc", "1.2.3", "1Ki2", "1ki", "1mi", "1e", "1e+", "1.5.", "Mi", "--1",
            "1 Gi", "0x10", "1e3.5", ".", "+", "1Q",
        ] {
            let err = bad.parse::<Quantity>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        for big in [
            "10Ei",
            "9223372036854775808",
            "1e19",
            "1e999999999999",
            "99999999999999999999999999999999999",
        ] {
            let err = big.parse::<Quantity>().expect_err(big);
            assert!(
                matches!(err, QuantityError::Overflow { .. }),
                "{big}: {err}"
            );
        }
        assert!(q("7Ei").checked_add(&q("7Ei")).is_err());
        assert!(
            "8Ei".parse::<Quantity>().is_err(),
            "8Ei does not fit in int64"
        );
        assert!("10e9223372036854775807".parse::<Quantity>().is_err());
        assert_eq!(q("1e-9223372036854775807").nanos, 1, "tiny values round up");
    }

    #[test]
    fn rounding_up_matches_kubernetes() {
        assert_eq!(q("1.0001m").milli_value_ceil().unwrap(), 2);
        assert_eq!(q("100.5").value_ceil().unwrap(), 101);
        assert_eq!(q("-100.5").value_ceil().unwrap(), -100);
        assert_eq!(q("0.1").milli_value_ceil().unwrap(), 100);
    }

    #[test]
    fn canonical_formatting() {
        let cases = [
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1024Ki", "1Mi"),
            ("1.5Gi", "1536Mi"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1500e-3", "1500e-3"),
            ("0Gi", "0"),
            ("-1Gi", "-1Gi"),
            ("100Mi", "100Mi"),
            ("1n", "1n"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn json_accepts_strings_and_numbers() {
        let v: Vec<Quantity> = serde_json::from_str(r#"["250m", 2, 0.5, "1Gi"]"#).unwrap();
        let milli: Vec<i64> = v.iter().map(|q| q.milli_value_ceil().unwrap()).collect();
        assert_eq!(milli, [250, 2_000, 500, 1_073_741_824_000]);
        let err = serde_json::from_str::<Quantity>(r#""12 cores""#).unwrap_err();
        assert!(err.to_string().contains("12 cores"), "{err}");
        assert_eq!(serde_json::to_string(&q("1.5")).unwrap(), r#""1500m""#);
    }

    fn quantity_text() -> impl Strategy<Value = String> {
        let suffix = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec!["n", "u", "m", "k", "M", "G", "T", "P", "E"])
                .prop_map(String::from),
            prop::sample::select(vec!["Ki", "Mi", "Gi", "Ti", "Pi"]).prop_map(String::from),
            (-9i32..=15).prop_map(|e| format!("e{e}")),
        ];
        (
            any::<bool>(),
            0u64..1_000_000,
            prop::option::of(0u32..1000),
            suffix,
        )
            .prop_map(|(neg, int, frac, suffix)| {
                let sign = if neg { "-" } else { "" };
                match frac {
                    Some(f) => format!("{sign}{int}.{f:03}{suffix}"),
                    None => format!("{sign}{int}{suffix}"),
                }
            })
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(text in quantity_text()) {
            if let Ok(parsed) = text.parse::<Quantity>() {
                let printed = parsed.to_string();
                let reparsed: Quantity = printed.parse().unwrap();
                prop_assert_eq!(reparsed.nanos, parsed.nanos, "{} -> {}", text, printed);
                // Canonical text is a fixed point.
                prop_assert_eq!(reparsed.to_string(), printed);
            }
        }

        #[test]
        fn milli_and_unit_constructors_round_trip(m in any::<i32>(), u in any::<i32>()) {
            let milli = Quantity::from_milli(i64::from(m));
            prop_assert_eq!(milli.to_string().parse::<Quantity>().unwrap().milli_value_ceil().unwrap(), i64::from(m));
            let bytes = Quantity::from_units(i64::from(u), QuantityFormat::BinarySI);
            prop_assert_eq!(bytes.to_string().parse::<Quantity>().unwrap().value_ceil().unwrap(), i64::from(u));
        }

        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,24}") {
            let _ = s.parse::<Quantity>();
        }
    }
}
