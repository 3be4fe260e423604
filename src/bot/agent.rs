//! `Signature-Agent`: from the covered field to the key directory it names.
//!
//! The value is read only as the signature covers it: the Dictionary member the covered
//! component's `key` parameter selects, or, in the legacy form, the whole field as one
//! String. The URL is then admitted by its raw string (the same grammar as every
//! identifier this crate fetches from) before anything is fetched.

use sfv::{BareItem, ListEntry, Parser};

use crate::discovery::admission::IdentifierPolicy;
use crate::error::Error;
use crate::httpsig::parse_dictionary_strict;
use crate::names;

/// Longest `Signature-Agent` URL considered (an origin plus the well-known path fits).
pub const MAX_AGENT_URL: usize = 512;

/// The key directory a `Signature-Agent` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDirectory {
    /// The directory's origin, `https://host` (or `http://127.0.0.1:PORT` under the
    /// loopback fence): what a [`VerifiedBot`](crate::bot::VerifiedBot) is named by.
    pub origin: String,
    /// `{origin}/.well-known/http-message-signatures-directory`.
    pub url: String,
}

const NOT_A_DICTIONARY: Error = Error::invalid_signature("the Signature-Agent field is not a Dictionary");
const NO_MEMBER: Error = Error::invalid_signature("the covered Signature-Agent member is absent");
const NOT_A_STRING: Error = Error::invalid_signature("the Signature-Agent member is not a String");
const NOT_ADMITTED: Error = Error::invalid_key("the Signature-Agent origin is not admitted");

/// Reads the directory out of a `Signature-Agent` field value: `member` is the `key`
/// parameter of the covered component (the Dictionary form), `None` for the legacy form
/// (the whole field one String). No I/O.
pub fn signature_agent_directory(
    field: &str,
    member: Option<&str>,
    identifiers: &IdentifierPolicy,
) -> Result<AgentDirectory, Error> {
    let fast = member.and_then(|member| crate::httpsig::string_member(field, member));
    let url = match (member, fast) {
        // A canonical Dictionary of Strings, read without allocating.
        (_, Some(found)) => found.ok_or(NO_MEMBER)?.to_owned(),
        (Some(member), None) => {
            let dictionary = parse_dictionary_strict(field).ok_or(NOT_A_DICTIONARY)?;
            let entry = dictionary
                .iter()
                .find(|(key, _)| key.as_str() == member)
                .map(|(_, entry)| entry)
                .ok_or(NO_MEMBER)?;
            match entry {
                ListEntry::Item(item) => match &item.bare_item {
                    BareItem::String(url) => url.as_str().to_owned(),
                    _ => return Err(NOT_A_STRING),
                },
                ListEntry::InnerList(_) => return Err(NOT_A_STRING),
            }
        }
        (None, None) => match Parser::new(field).parse::<sfv::Item>() {
            Ok(item) => match item.bare_item {
                BareItem::String(url) => url.as_str().to_owned(),
                _ => return Err(NOT_A_STRING),
            },
            Err(_) => return Err(NOT_A_STRING),
        },
    };
    directory_of(&url, identifiers)
}

/// The origin and directory URL of a `Signature-Agent` URL: an origin, with or without a
/// trailing `/`, or the directory's own well-known URL on it. Anything else (another
/// path, a query, userinfo, a port on `https`, an address literal) is refused.
fn directory_of(url: &str, identifiers: &IdentifierPolicy) -> Result<AgentDirectory, Error> {
    if url.len() > MAX_AGENT_URL {
        return Err(NOT_ADMITTED);
    }
    let origin = url
        .strip_suffix(names::bot::DIRECTORY_PATH)
        .or_else(|| url.strip_suffix('/'))
        .unwrap_or(url);
    if !admitted_origin(origin, identifiers) {
        return Err(NOT_ADMITTED);
    }
    let mut url = String::with_capacity(origin.len() + names::bot::DIRECTORY_PATH.len());
    url.push_str(origin);
    url.push_str(names::bot::DIRECTORY_PATH);
    Ok(AgentDirectory {
        origin: origin.to_owned(),
        url,
    })
}

/// Whether `origin` may name a key directory: an `https` origin on a DNS name (the
/// identifier grammar), or, under the loopback fence only, exactly
/// `http://127.0.0.1:PORT`, not `localhost`, `[::1]` or `https` on loopback, so that a
/// bot's origin has one spelling.
pub(crate) fn admitted_origin(origin: &str, identifiers: &IdentifierPolicy) -> bool {
    if IdentifierPolicy::strict().admits(origin) {
        return true;
    }
    identifiers.allows_http_loopback() && identifiers.admits(origin) && is_fenced_loopback(origin)
}

/// `http://127.0.0.1:PORT`, the port one to five digits without a leading zero, 1 to 65535.
fn is_fenced_loopback(origin: &str) -> bool {
    origin.strip_prefix("http://127.0.0.1:").is_some_and(|port| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u16>().is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> IdentifierPolicy {
        IdentifierPolicy::strict()
    }

    #[test]
    fn the_dictionary_member_named_by_the_covered_key_is_the_directory() {
        let found = signature_agent_directory(
            r#"other="https://evil.example", agent1="https://bots.example""#,
            Some("agent1"),
            &strict(),
        )
        .unwrap();
        assert_eq!(found.origin, "https://bots.example");
        assert_eq!(
            found.url,
            "https://bots.example/.well-known/http-message-signatures-directory"
        );
    }

    #[test]
    fn the_legacy_bare_string_names_the_directory() {
        let found = signature_agent_directory(r#""https://bots.example/""#, None, &strict()).unwrap();
        assert_eq!(found.origin, "https://bots.example");
    }

    #[test]
    fn the_well_known_url_itself_names_its_origin() {
        let value = r#"a="https://bots.example/.well-known/http-message-signatures-directory""#;
        let found = signature_agent_directory(value, Some("a"), &strict()).unwrap();
        assert_eq!(found.origin, "https://bots.example");
    }

    #[test]
    fn malformed_and_unadmitted_values_are_refused_without_io() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (r#""https://bots.example""#, Some("agent1"), "invalid_signature"),
            (r#"agent1="https://bots.example""#, Some("agent2"), "invalid_signature"),
            (r#"agent1=?1"#, Some("agent1"), "invalid_signature"),
            (
                r#"agent1=("https://bots.example")"#,
                Some("agent1"),
                "invalid_signature",
            ),
            (r#"https://bots.example"#, None, "invalid_signature"),
            (r#"agent1="https://10.0.0.1""#, Some("agent1"), "invalid_key"),
            (r#"agent1="http://bots.example""#, Some("agent1"), "invalid_key"),
            (r#"agent1="https://bots.example/other""#, Some("agent1"), "invalid_key"),
            (r#"agent1="https://bots.example:8443""#, Some("agent1"), "invalid_key"),
            (r#"agent1="https://user@bots.example""#, Some("agent1"), "invalid_key"),
            (r#"agent1="https://localhost""#, Some("agent1"), "invalid_key"),
            (r#"agent1="http://127.0.0.1:8080""#, Some("agent1"), "invalid_key"),
        ];
        for (value, member, code) in cases {
            let refused = signature_agent_directory(value, *member, &strict()).unwrap_err();
            assert_eq!(refused.code(), *code, "{value}");
        }
    }

    #[test]
    fn under_the_loopback_fence_only_http_on_127_0_0_1_with_a_port_is_admitted() {
        let fence = IdentifierPolicy::allowing_http_loopback();
        for origin in [
            "http://localhost:8080",
            "https://localhost:8080",
            "http://[::1]:8080",
            "https://[::1]:8080",
            "https://127.0.0.1:8080",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:08080",
        ] {
            let value = format!("agent1=\"{origin}\"");
            let refused = signature_agent_directory(&value, Some("agent1"), &fence).unwrap_err();
            assert_eq!(refused.code(), "invalid_key", "{origin}");
        }
        let found = signature_agent_directory(r#"agent1="http://127.0.0.1:65535/""#, Some("agent1"), &fence);
        assert_eq!(found.unwrap().origin, "http://127.0.0.1:65535");
    }

    #[test]
    fn loopback_origins_pass_only_under_the_loopback_fence() {
        let value = r#"agent1="http://127.0.0.1:8080""#;
        let found = signature_agent_directory(value, Some("agent1"), &IdentifierPolicy::allowing_http_loopback());
        assert_eq!(found.unwrap().origin, "http://127.0.0.1:8080");
    }
}
