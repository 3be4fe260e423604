//! The budget object of draft-hardt-aauth-budgets ("The Budget Object", "Range Limits"):
//! `{amount, unit, decimals}`, its caps, exact rescaling and the `AAuth-Budget` value.

use serde_json::{Map, Value};

/// Largest `amount` the draft lets any party issue (15 digits, "Range Limits"): every
/// figure derived from it fits both a JSON number and an RFC 9651 Integer.
pub(crate) const MAX_AMOUNT: u64 = 999_999_999_999_999;
/// Largest `decimals` accepted. 10^18 still fits a `u64`; rescaling uses `u128`.
pub(crate) const MAX_DECIMALS: u32 = 18;
/// Longest `unit`, in bytes.
pub(crate) const MAX_UNIT_LEN: usize = 32;

/// A budget: `amount / 10^decimals` in `unit` (draft-hardt-aauth-budgets, "The Budget
/// Object").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    amount: u64,
    unit: String,
    decimals: u32,
}

impl Budget {
    /// The ceiling, in units of `10^-decimals` of [`Budget::unit`].
    pub(crate) fn amount(&self) -> u64 {
        self.amount
    }

    /// What is metered (`USD`, `tokens`, …), compared byte for byte.
    pub(crate) fn unit(&self) -> &str {
        &self.unit
    }

    /// The scale of [`Budget::amount`].
    pub(crate) fn decimals(&self) -> u32 {
        self.decimals
    }

    /// A budget within the caps, or `None`.
    pub(crate) fn new(amount: u64, unit: &str, decimals: u32) -> Option<Budget> {
        (amount <= MAX_AMOUNT && is_unit(unit) && decimals <= MAX_DECIMALS).then(|| Budget {
            amount,
            unit: unit.to_owned(),
            decimals,
        })
    }

    /// Reads a `budget` claim: an object whose `amount` and `decimals` are non-negative
    /// JSON integers within the caps and whose `unit` passes [`is_unit`]. Unknown members
    /// are ignored, as for any claim. `None` for anything else (a float, a string amount,
    /// a 16-digit amount, a unit with a quote in it).
    pub(crate) fn from_claim(value: &Value) -> Option<Budget> {
        let object = value.as_object()?;
        let amount = object.get("amount")?.as_u64()?;
        let unit = object.get("unit")?.as_str()?;
        let decimals = u32::try_from(object.get("decimals")?.as_u64()?).ok()?;
        Budget::new(amount, unit, decimals)
    }

    /// The claim value.
    pub(crate) fn to_claim(&self) -> Value {
        let mut object = Map::new();
        object.insert("amount".into(), self.amount.into());
        object.insert("unit".into(), self.unit.clone().into());
        object.insert("decimals".into(), self.decimals.into());
        Value::Object(object)
    }

    /// The same unit and scale, another amount.
    pub(crate) fn with_amount(&self, amount: u64) -> Budget {
        Budget {
            amount: amount.min(MAX_AMOUNT),
            unit: self.unit.clone(),
            decimals: self.decimals,
        }
    }
}

/// A unit this crate accepts: 1 to 32 bytes of ASCII letters, digits and `-_.:/`. Wide
/// enough for ISO 4217 codes and names like `tokens` or `api-calls`, and narrow enough to
/// be written into an RFC 9651 String without escaping.
pub(crate) fn is_unit(unit: &str) -> bool {
    (1..=MAX_UNIT_LEN).contains(&unit.len()) && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

/// `amount` at scale `from` restated at scale `to`, exactly, or `None` when it cannot be
/// (a fraction below the target's resolution, or beyond [`MAX_AMOUNT`]).
pub(crate) fn rescale(amount: u64, from: u32, to: u32) -> Option<u64> {
    let amount = u128::from(amount);
    let value = if to >= from {
        amount.checked_mul(10u128.checked_pow(to - from)?)?
    } else {
        let divisor = 10u128.checked_pow(from - to)?;
        if amount % divisor != 0 {
            return None;
        }
        amount / divisor
    };
    u64::try_from(value).ok().filter(|v| *v <= MAX_AMOUNT)
}

/// [`rescale`], rounding a fraction below the target's resolution up: what a reported
/// cost is charged at when the token's scale is coarser than the route's.
pub(crate) fn rescale_up(amount: u64, from: u32, to: u32) -> Option<u64> {
    if to >= from {
        return rescale(amount, from, to);
    }
    let divisor = 10u128.checked_pow(from - to)?;
    let value = u128::from(amount).div_ceil(divisor);
    u64::try_from(value).ok().filter(|v| *v <= MAX_AMOUNT)
}

/// The figures of one `AAuth-Budget` field (draft-hardt-aauth-budgets, "AAuth-Budget
/// Response Header"), in the granted scale.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) remaining: u64,
    pub(crate) cost: Option<u64>,
    pub(crate) required: Option<u64>,
}

/// The `AAuth-Budget` value: `remaining` first, then `cost` or `required`, then the
/// `unit` and `decimals` pair (always both), written as the draft's examples write it
/// (`remaining=…; cost=…; unit="…"; decimals=…`). Every figure is clamped to the 15
/// digits of an RFC 9651 Integer; the unit passed [`is_unit`], so it needs no escaping.
pub(crate) fn header_value(figures: &Figures, granted: &Budget) -> String {
    use std::fmt::Write;
    let mut value = String::with_capacity(96);
    let _ = write!(value, "remaining={}", figures.remaining.min(MAX_AMOUNT));
    if let Some(cost) = figures.cost {
        let _ = write!(value, "; cost={}", cost.min(MAX_AMOUNT));
    }
    if let Some(required) = figures.required {
        let _ = write!(value, "; required={}", required.min(MAX_AMOUNT));
    }
    let _ = write!(value, "; unit=\"{}\"; decimals={}", granted.unit, granted.decimals);
    value
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_outside_the_caps_or_of_the_wrong_type_are_not_budgets() {
        for claim in [
            json!({"amount": 1_000_000_000_000_000u64, "unit": "USD", "decimals": 6}),
            json!({"amount": -1, "unit": "USD", "decimals": 6}),
            json!({"amount": 1.5, "unit": "USD", "decimals": 6}),
            json!({"amount": "5", "unit": "USD", "decimals": 6}),
            json!({"amount": 5, "unit": "", "decimals": 6}),
            json!({"amount": 5, "unit": "U\"SD", "decimals": 6}),
            json!({"amount": 5, "unit": "x".repeat(33), "decimals": 6}),
            json!({"amount": 5, "unit": "USD", "decimals": 19}),
            json!({"amount": 5, "unit": "USD", "decimals": 4_294_967_302u64}),
            json!({"amount": 5, "unit": "USD"}),
            json!([5, "USD", 6]),
        ] {
            assert_eq!(Budget::from_claim(&claim), None, "{claim}");
        }
        let ok = Budget::from_claim(&json!({"amount": MAX_AMOUNT, "unit": "USD", "decimals": 18, "x": 1}));
        assert_eq!(ok.map(|b| b.amount()), Some(MAX_AMOUNT));
    }

    #[test]
    fn rescaling_is_exact_or_refused() {
        assert_eq!(rescale(1000, 6, 6), Some(1000));
        assert_eq!(rescale(1000, 6, 8), Some(100_000));
        assert_eq!(rescale(1000, 6, 3), Some(1));
        assert_eq!(rescale(1500, 6, 3), None, "a fraction of the coarser scale");
        assert_eq!(rescale(1, 0, 18), None, "beyond 15 digits");
        assert_eq!(rescale(u64::MAX, 0, 18), None, "no overflow");
        assert_eq!(rescale_up(1500, 6, 3), Some(2));
        assert_eq!(rescale_up(1, 18, 0), Some(1));
    }

    #[test]
    fn the_header_names_remaining_first_and_the_unit_with_its_scale() {
        let granted = Budget::new(5_000_000, "USD", 6).unwrap();
        let figures = Figures {
            remaining: 4_000,
            cost: Some(1_000),
            required: None,
        };
        assert_eq!(
            header_value(&figures, &granted),
            "remaining=4000; cost=1000; unit=\"USD\"; decimals=6"
        );
    }
}
