//! The `authorization_details` claim (RFC 9396) parsed and bounded: [`AuthorizationDetails`]
//! and its typed entries.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::names;
use crate::verified::VerifiedToken;

/// Most entries accepted in one `authorization_details` claim.
pub(crate) const MAX_DETAILS: usize = 32;
/// Longest accepted `type` value.
pub(crate) const MAX_TYPE_BYTES: usize = 256;

/// Why `authorization_details` could not be used. Every variant fails the guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetailError {
    /// The claim is present but not a JSON array.
    #[error("authorization_details is not an array")]
    NotAnArray,
    /// More than 32 entries.
    #[error("authorization_details has more than {MAX_DETAILS} entries")]
    TooMany,
    /// An entry is not an object.
    #[error("authorization_details[{0}] is not an object")]
    NotAnObject(usize),
    /// An entry has no string `type`, or an empty or oversized one.
    #[error("authorization_details[{0}] has no valid type")]
    BadType(usize),
    /// An entry of the requested type does not deserialise into the requested struct.
    #[error("authorization_details[{index}] does not have the shape its type requires: {reason}")]
    Shape {
        /// The entry's index.
        index: usize,
        /// serde's explanation (about the entry's shape; it never echoes values at length).
        reason: String,
    },
}

impl DetailError {
    /// A fixed, non-secret explanation for a problem body.
    pub fn detail(&self) -> &'static str {
        match self {
            DetailError::NotAnArray => "the token's authorization_details is not an array",
            DetailError::TooMany => "the token's authorization_details has too many entries",
            DetailError::NotAnObject(_) => "an authorization_details entry is not an object",
            DetailError::BadType(_) => "an authorization_details entry has no valid type",
            DetailError::Shape { .. } => "an authorization_details entry does not have the shape its type requires",
        }
    }
}

/// A validated `authorization_details` claim (possibly empty: the claim was absent).
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationDetails<'a> {
    entries: &'a [Value],
}

impl<'a> AuthorizationDetails<'a> {
    /// Validates `claim` (the claim's value; `None` when absent).
    pub fn parse(claim: Option<&'a Value>) -> Result<Self, DetailError> {
        let entries: &[Value] = match claim {
            None => &[],
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(DetailError::NotAnArray),
        };
        if entries.len() > MAX_DETAILS {
            return Err(DetailError::TooMany);
        }
        for (index, entry) in entries.iter().enumerate() {
            let object = entry.as_object().ok_or(DetailError::NotAnObject(index))?;
            match object.get("type") {
                Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TYPE_BYTES => {}
                _ => return Err(DetailError::BadType(index)),
            }
        }
        Ok(AuthorizationDetails { entries })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the claim was absent or empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `type` of every entry, in order.
    pub fn types(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.entries
            .iter()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
    }

    /// The raw entries.
    pub fn entries(&self) -> &'a [Value] {
        self.entries
    }

    /// The raw entries of type `detail_type`, with their index.
    pub fn raw_of_type<'s>(&'s self, detail_type: &'s str) -> impl Iterator<Item = (usize, &'a Value)> + 's {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.get("type").and_then(Value::as_str) == Some(detail_type))
    }

    /// Every entry of type `detail_type`, deserialised into `T`. An entry of that type that
    /// does not fit `T` is an error (never silently dropped).
    pub fn of_type<T: DeserializeOwned>(&self, detail_type: &str) -> Result<Vec<T>, DetailError> {
        self.raw_of_type(detail_type)
            .map(|(index, entry)| {
                T::deserialize(entry).map_err(|e| DetailError::Shape {
                    index,
                    reason: shorten(e.to_string()),
                })
            })
            .collect()
    }
}

/// serde messages quote unexpected values; keep them short.
fn shorten(mut message: String) -> String {
    if message.len() > 200 {
        let mut end = 200;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl VerifiedToken {
    /// The token's `authorization_details` (RFC 9396), validated. Empty when absent.
    pub fn authorization_details(&self) -> Result<AuthorizationDetails<'_>, DetailError> {
        AuthorizationDetails::parse(self.claims.raw.get(names::claim::AUTHORIZATION_DETAILS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Trade {
        symbol: String,
        quantity: u32,
    }

    #[test]
    fn entries_of_one_type_deserialise_into_the_callers_struct() {
        let claim = json!([
            {"type": "trade", "symbol": "ACME", "quantity": 10},
            {"type": "payment", "amount": "5.00"},
            {"type": "trade", "symbol": "INIT", "quantity": 1}
        ]);
        let details = AuthorizationDetails::parse(Some(&claim)).unwrap();
        assert_eq!(details.len(), 3);
        assert_eq!(details.types().collect::<Vec<_>>(), ["trade", "payment", "trade"]);
        let trades: Vec<Trade> = details.of_type("trade").unwrap();
        assert_eq!(
            trades,
            [
                Trade {
                    symbol: "ACME".into(),
                    quantity: 10
                },
                Trade {
                    symbol: "INIT".into(),
                    quantity: 1
                }
            ]
        );
        assert!(details.of_type::<Trade>("unknown").unwrap().is_empty());
    }

    #[test]
    fn an_absent_claim_is_empty() {
        let details = AuthorizationDetails::parse(None).unwrap();
        assert!(details.is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let cases = [
            (json!({"type": "trade"}), DetailError::NotAnArray),
            (json!("trade"), DetailError::NotAnArray),
            (json!(["trade"]), DetailError::NotAnObject(0)),
            (json!([{"type": "a"}, {"symbol": "x"}]), DetailError::BadType(1)),
            (json!([{"type": 7}]), DetailError::BadType(0)),
            (json!([{"type": ""}]), DetailError::BadType(0)),
            (
                json!([{"type": "x".repeat(MAX_TYPE_BYTES + 1)}]),
                DetailError::BadType(0),
            ),
        ];
        for (claim, expected) in cases {
            assert_eq!(
                AuthorizationDetails::parse(Some(&claim)).unwrap_err(),
                expected,
                "{claim}"
            );
        }
    }

    #[test]
    fn huge_arrays_are_capped() {
        let entries: Vec<Value> = (0..=MAX_DETAILS).map(|_| json!({"type": "t"})).collect();
        let claim = Value::Array(entries);
        assert_eq!(
            AuthorizationDetails::parse(Some(&claim)).unwrap_err(),
            DetailError::TooMany
        );
    }

    #[test]
    fn an_entry_of_the_type_with_the_wrong_shape_is_an_error_not_skipped() {
        let claim = json!([
            {"type": "trade", "symbol": "ACME", "quantity": 10},
            {"type": "trade", "symbol": "ACME", "quantity": "lots"}
        ]);
        let details = AuthorizationDetails::parse(Some(&claim)).unwrap();
        let error = details.of_type::<Trade>("trade").unwrap_err();
        assert!(matches!(error, DetailError::Shape { index: 1, .. }), "{error:?}");
    }
}
