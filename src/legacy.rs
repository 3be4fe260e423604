//! The demo generation's `Signature-Key` member forms, parsed leniently under the legacy
//! profiles. Every form the demo generation adds, and why each is safe to accept only when
//! asked, is documented on [`Profile`](crate::Profile).

use crate::error::Error;

/// One member of a demo-generation `Signature-Key` field:
/// `label=(scheme=<token> name="value" name2=token …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMember<'a> {
    /// The `scheme` value.
    pub scheme: &'a str,
    /// The other parameters in order, values unquoted and unescaped.
    pub params: Vec<(&'a str, String)>,
}

/// Finds `label`'s member in a demo-generation `Signature-Key` field.
///
/// Members are `label=( … )`, separated by commas; inside the parentheses, parameters
/// `name=value` are separated by spaces, where `value` is a quoted string (`\"` and `\\`
/// escapes) or a bare token. The whole field must parse (a trailing or unbalanced piece
/// refuses it), labels and parameter names must not repeat, and `scheme` is required.
/// Every failure is `invalid_key`, except a field without `label`, which is
/// `invalid_signature` as in the strict parser.
pub fn signature_key_member<'a>(field: &'a str, label: &str) -> Result<LegacyMember<'a>, Error> {
    let malformed = || Error::invalid_key("Signature-Key is neither a structured dictionary nor the demo form");
    let mut rest = field.trim_matches(' ');
    let mut found: Option<LegacyMember<'a>> = None;
    let mut labels: Vec<&str> = Vec::new();
    loop {
        let (name, after) = rest.split_once("=(").ok_or_else(malformed)?;
        if !is_key(name) || labels.contains(&name) {
            return Err(malformed());
        }
        labels.push(name);
        let (member, after) = parse_inner(after).ok_or_else(malformed)?;
        if name == label {
            found = Some(member);
        }
        let after = after.trim_start_matches(' ');
        if after.is_empty() {
            break;
        }
        rest = after.strip_prefix(',').ok_or_else(malformed)?.trim_start_matches(' ');
    }
    found.ok_or(Error::invalid_signature(
        "Signature-Key has no member for the signed label",
    ))
}

/// Whether `field` is a demo-generation `Signature-Key` (not RFC 9651, but the fallback
/// form). Used only on error paths that answer differently per generation.
pub fn is_legacy_signature_key(field: &str) -> bool {
    crate::httpsig::parse_dictionary_strict(field).is_none() && parses_as_legacy(field)
}

fn parses_as_legacy(field: &str) -> bool {
    // Any label will do: the member lookup runs after the whole field parsed.
    match signature_key_member(field, "") {
        Ok(_) => true,
        Err(error) => error.signature_code() == Some(crate::error::SignatureErrorCode::InvalidSignature),
    }
}

/// Parses `name=value …)` and returns the member and the text after `)`.
fn parse_inner(text: &str) -> Option<(LegacyMember<'_>, &str)> {
    let mut scheme: Option<&str> = None;
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut rest = text.trim_start_matches(' ');
    loop {
        if let Some(after) = rest.strip_prefix(')') {
            let scheme = scheme?;
            return Some((LegacyMember { scheme, params }, after));
        }
        let (name, after) = rest.split_once('=')?;
        if !is_key(name) || (name == "scheme" && scheme.is_some()) || params.iter().any(|(n, _)| *n == name) {
            return None;
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            parse_quoted(quoted)?
        } else {
            let end = after.find([' ', ')']).unwrap_or(after.len());
            let token = &after[..end];
            if token.is_empty() || !token.bytes().all(is_token_byte) {
                return None;
            }
            (token.to_owned(), &after[end..])
        };
        if name == "scheme" {
            // The scheme is a bare token, as in every published example.
            if after_is_quoted(rest) {
                return None;
            }
            scheme = Some(&rest[name.len() + 1..name.len() + 1 + value.len()]);
        } else {
            params.push((name, value));
        }
        // Parameters are separated by at least one space, or the list closes.
        rest = match after.strip_prefix(' ') {
            Some(spaced) => spaced.trim_start_matches(' '),
            None if after.starts_with(')') => after,
            None => return None,
        };
    }
}

fn after_is_quoted(param: &str) -> bool {
    param.split_once('=').is_some_and(|(_, value)| value.starts_with('"'))
}

/// Parses the body of a quoted string (after the opening quote).
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                _ => return None,
            },
            ' '..='~' => value.push(c),
            _ => return None,
        }
    }
    None
}

/// An RFC 9651 key: `lcalpha / "*"` then `lcalpha / DIGIT / "_" / "-" / "." / "*"`.
fn is_key(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'*'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
}

/// Bytes of a bare parameter value: visible ASCII except quotes, parentheses, commas.
fn is_token_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"\"(),\\".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SignatureErrorCode;

    #[test]
    fn parses_the_seed_articles_jwks_uri_member() {
        let field = r#"sig=(scheme=jwks_uri id="https://agent.supply-chain.com" kid="key-1")"#;
        let member = signature_key_member(field, "sig").unwrap();
        assert_eq!(member.scheme, "jwks_uri");
        assert_eq!(
            member.params,
            vec![
                ("id", "https://agent.supply-chain.com".to_owned()),
                ("kid", "key-1".to_owned())
            ]
        );
    }

    #[test]
    fn selects_the_signed_label_among_several_members() {
        let field = r#"other=(scheme=hwk kty="OKP"), sig=(scheme=jwt jwt="a.b.c")"#;
        let member = signature_key_member(field, "sig").unwrap();
        assert_eq!(member.scheme, "jwt");
        assert_eq!(member.params, vec![("jwt", "a.b.c".to_owned())]);
    }

    #[test]
    fn unescapes_quoted_values() {
        let member = signature_key_member(r#"sig=(scheme=hwk x="a\"b\\c")"#, "sig").unwrap();
        assert_eq!(member.params, vec![("x", "a\"b\\c".to_owned())]);
    }

    #[test]
    fn a_missing_label_is_invalid_signature() {
        let err = signature_key_member(r#"other=(scheme=jwt jwt="a.b.c")"#, "sig").unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidSignature));
    }

    #[test]
    fn malformed_fields_are_invalid_key() {
        for field in [
            r#"sig=(scheme=jwt jwt="a.b.c""#,
            r#"sig=(scheme=jwt jwt="a.b.c") trailing"#,
            r#"sig=(jwt="a.b.c")"#,
            r#"sig=(scheme=jwt scheme=hwk)"#,
            r#"sig=(scheme="jwt" jwt="a.b.c")"#,
            r#"sig=(scheme=jwt jwt="a" jwt="b")"#,
            r#"sig=(scheme=jwt jwt="a.b.c"), sig=(scheme=hwk)"#,
            r#"sig=(scheme=jwt jwt="a.b.c"x="y")"#,
            r#"sig=(scheme=jwt jwt="tab	inside")"#,
            r#"Sig=(scheme=jwt jwt="a.b.c")"#,
            r#"sig=(scheme=jwt jwt="a\nb")"#,
            "",
        ] {
            let err = signature_key_member(field, "sig").unwrap_err();
            assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey), "{field:?}");
        }
    }

    #[test]
    fn detects_only_the_demo_form() {
        assert!(is_legacy_signature_key(r#"sig=(scheme=jwt jwt="a.b.c")"#));
        assert!(!is_legacy_signature_key(r#"sig=jwt;jwt="a.b.c""#));
        assert!(!is_legacy_signature_key("sig=(garbage"));
    }
}
