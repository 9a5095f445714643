//! Decimal amounts: money and rates that add up exactly.
//!
//! Finance answers are read by people who check them against their bank's figures, so a
//! payment must come out as `1264.14`, not `1264.1399999999`. Amounts are therefore
//! `rust_decimal::Decimal` — base-10, 96-bit mantissa, 28 significant digits — rather than
//! `f64` or integer cents:
//!
//! - `f64` cannot represent `0.1` and drifts over hundreds of compounding steps;
//! - integer cents are exact for sums but not for what these tools compute: a monthly rate of
//!   6.5 % / 12 and `(1 + r)^360` are not whole cents, so cents would need a second,
//!   fixed-point representation for every intermediate value anyway;
//! - `Decimal` keeps the user's numbers exactly as written (`0.1` stays `0.1`), computes the
//!   intermediates with 28 digits, and every operation is checked, so an overflow is an
//!   error rather than a wrong answer or a panic. Results are rounded to cents once, at the
//!   end, half away from zero as bank statements do.
//!
//! [`Amount`] is the argument and result type: JSON numbers in and out (the schema the flow
//! sees says `number`), `Decimal` inside.

use clarion_engine::ToolErrorKind;
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, MathematicalOps, RoundingStrategy};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use clarion_engine::ToolError;

/// A decimal number read from and written as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Amount(pub Decimal);

impl Amount {
    /// The decimal value.
    #[must_use]
    pub fn get(self) -> Decimal {
        self.0
    }

    /// Rounded to cents, half away from zero.
    #[must_use]
    pub fn cents(value: Decimal) -> Self {
        Self::places(value, 2)
    }

    /// Rounded to `dp` decimal places, half away from zero.
    #[must_use]
    pub fn places(value: Decimal, dp: u32) -> Self {
        Self(
            value
                .round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
                .normalize(),
        )
    }
}

impl From<Decimal> for Amount {
    fn from(value: Decimal) -> Self {
        Self(value)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Converts a JSON number to a decimal through its shortest text form, so `0.1` becomes
/// exactly `0.1` (not `0.1000000000000000055511151231257827`).
fn from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::from_str(&value.to_string()).ok()
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;

        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(value)))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(value)))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Amount, E> {
                from_f64(value).map(Amount).ok_or_else(|| {
                    E::custom(format!(
                        "{value} is too large for an amount (at most 28 digits)"
                    ))
                })
            }
        }

        deserializer.deserialize_any(AmountVisitor)
    }
}

impl Serialize for Amount {
    /// A whole value is a JSON integer (`1200`), anything else the nearest `f64`, whose
    /// shortest form is the decimal itself for the two-digit values these tools return
    /// (`1264.14`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0.normalize();
        if value.scale() == 0
            && let Ok(whole) = i64::try_from(value.mantissa())
        {
            return serializer.serialize_i64(whole);
        }
        match f64::from_str(&value.to_string()) {
            Ok(float) => serializer.serialize_f64(float),
            Err(_) => serializer.serialize_str(&value.to_string()),
        }
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "number" })
    }
}

/// Checked decimal arithmetic: every step can overflow 28 digits, and an overflow is the
/// caller's numbers being out of range, not a bug.
pub(crate) trait Checked: Sized {
    fn add(self, other: Decimal) -> Result<Self, ToolError>;
    fn sub(self, other: Decimal) -> Result<Self, ToolError>;
    fn mul(self, other: Decimal) -> Result<Self, ToolError>;
    fn div(self, other: Decimal) -> Result<Self, ToolError>;
    fn pow(self, exponent: u64) -> Result<Self, ToolError>;
}

fn out_of_range() -> ToolError {
    ToolError::new(
        ToolErrorKind::InvalidArguments,
        "the numbers are too large to compute with (amounts are limited to 28 significant digits)",
    )
}

impl Checked for Decimal {
    fn add(self, other: Decimal) -> Result<Self, ToolError> {
        self.checked_add(other).ok_or_else(out_of_range)
    }

    fn sub(self, other: Decimal) -> Result<Self, ToolError> {
        self.checked_sub(other).ok_or_else(out_of_range)
    }

    fn mul(self, other: Decimal) -> Result<Self, ToolError> {
        self.checked_mul(other).ok_or_else(out_of_range)
    }

    fn div(self, other: Decimal) -> Result<Self, ToolError> {
        self.checked_div(other).ok_or_else(out_of_range)
    }

    fn pow(self, exponent: u64) -> Result<Self, ToolError> {
        self.checked_powu(exponent).ok_or_else(out_of_range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amount(value: serde_json::Value) -> Amount {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_numbers_become_the_decimals_they_print_as() {
        assert_eq!(amount(json!(0.1)).get().to_string(), "0.1");
        assert_eq!(amount(json!(1200)).get().to_string(), "1200");
        assert_eq!(amount(json!(-3)).get().to_string(), "-3");
        let sum = amount(json!(0.1)).get() + amount(json!(0.2)).get();
        assert_eq!(sum.to_string(), "0.3");
        assert!(serde_json::from_value::<Amount>(json!(1e300)).is_err());
        assert!(serde_json::from_value::<Amount>(json!("12")).is_err());
    }

    #[test]
    fn amounts_print_as_plain_json_numbers() {
        let cents = Amount::cents(Decimal::from_str("1264.1399").unwrap_or_default());
        assert_eq!(
            serde_json::to_string(&cents).ok().as_deref(),
            Some("1264.14")
        );
        let whole = Amount::cents(Decimal::from_str("1200.00").unwrap_or_default());
        assert_eq!(serde_json::to_string(&whole).ok().as_deref(), Some("1200"));
        let half = Amount::cents(Decimal::from_str("0.125").unwrap_or_default());
        assert_eq!(half.to_string(), "0.13", "half away from zero");
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(Decimal::MAX.add(Decimal::ONE).is_err());
        assert!(Decimal::ONE.div(Decimal::ZERO).is_err());
        assert!(Decimal::TEN.pow(40).is_err());
    }
}
