//! `AAuth-Capabilities` ([AAuth draft -11, "AAuth-Capabilities"][draft-11]): the request
//! header in which an agent declares what it can do besides signing, an RFC 9651 List of
//! Tokens (`interaction`, `clarification`, `payment`, extensible).
//!
//! Read strictly with `sfv` and capped: the field lines, joined as RFC 9110 joins them, at
//! most [`MAX_FIELD_BYTES`] and [`MAX_MEMBERS`] members. A field that is absent, over a cap
//! or not a valid List declares nothing (RFC 9651 §4.2: a field that fails to parse is
//! ignored as a whole); members that are not tokens, and parameters, are ignored, as are
//! tokens this crate does not know.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use http::HeaderMap;

use crate::names;

/// The largest `AAuth-Capabilities` field (all lines together) that is read.
pub(crate) const MAX_FIELD_BYTES: usize = 512;
/// The most members a read field may have.
pub(crate) const MAX_MEMBERS: usize = 16;

/// The `interaction` capability: the agent can send a person to an interaction URL.
const INTERACTION: &str = "interaction";

/// Whether the agent declared the `interaction` capability.
pub(crate) fn declares_interaction(headers: &HeaderMap) -> bool {
    declared(headers).is_some_and(|tokens| tokens.iter().any(|t| t == INTERACTION))
}

/// The tokens of a readable field; `None` when absent, over a cap or not a List.
pub(crate) fn declared(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut joined = String::new();
    for value in headers.get_all(names::header::AAUTH_CAPABILITIES) {
        let value = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        if joined.len() + value.len() > MAX_FIELD_BYTES {
            return None;
        }
        joined.push_str(value);
    }
    if joined.is_empty() {
        return None;
    }
    parse(&joined)
}

/// The token members of an RFC 9651 List.
fn parse(field: &str) -> Option<Vec<String>> {
    if field.len() > MAX_FIELD_BYTES {
        return None;
    }
    let list = sfv::Parser::new(field).parse::<sfv::List>().ok()?;
    if list.len() > MAX_MEMBERS {
        return None;
    }
    Some(
        list.iter()
            .filter_map(|member| match member {
                sfv::ListEntry::Item(item) => item.bare_item.as_token().map(|t| t.as_str().to_owned()),
                sfv::ListEntry::InnerList(_) => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(names::header::AAUTH_CAPABILITIES, line.parse().unwrap());
        }
        headers
    }

    #[test]
    fn interaction_is_read_from_every_valid_list_that_names_it() {
        for lines in [
            &["interaction"][..],
            &["payment, interaction"],
            &["payment", "interaction"],
            &["interaction;v=2, clarification"],
            &["future-thing, interaction, \"string\", 7, (a b)"],
            &["  interaction  "],
        ] {
            assert!(declares_interaction(&headers(lines)), "{lines:?}");
        }
    }

    #[test]
    fn absent_invalid_oversized_or_other_lists_declare_no_interaction() {
        let long = format!("interaction, {}", vec!["x"; 300].join(", "));
        let many = format!("interaction{}", ", a".repeat(MAX_MEMBERS));
        for lines in [
            &[][..],
            &[""],
            &["payment, clarification"],
            &["\"interaction\""],
            &["(interaction)"],
            &["interaction,"],
            &["interaction;;"],
            &["Interaction"],
            &["interaction interaction"],
            &[long.as_str()],
            &[many.as_str()],
        ] {
            assert!(!declares_interaction(&headers(lines)), "{lines:?}");
        }
    }

    #[test]
    fn a_field_line_that_is_not_visible_ascii_declares_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            names::header::AAUTH_CAPABILITIES,
            http::HeaderValue::from_bytes(b"interaction, \xff").unwrap(),
        );
        assert_eq!(declared(&headers), None);
    }

    proptest::proptest! {
        #[test]
        fn any_capability_fields_are_read_without_panicking(lines in proptest::collection::vec("[ -~]{0,300}", 0..4)) {
            let mut headers = HeaderMap::new();
            for line in &lines {
                if let Ok(value) = http::HeaderValue::from_str(line) {
                    headers.append(names::header::AAUTH_CAPABILITIES, value);
                }
            }
            if let Some(tokens) = declared(&headers) {
                proptest::prop_assert!(tokens.len() <= MAX_MEMBERS);
            }
        }
    }
}
