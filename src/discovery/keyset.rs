//! Parsing fetched documents: issuer metadata and JWKS.
//!
//! Both parsers validate the whole document before anything is cached: a document that
//! fails here never replaces keys that were good before.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, SignatureErrorCode};
use crate::jose::{AlgPolicy, Jwk, parse_json_object};

/// The usable keys of one issuer, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Jwk>>,
    /// `kid`s that name an entry we cannot use (another key type, a malformed key, a
    /// duplicated `kid`): asking for one is `invalid_key`, not `unknown_key`.
    unusable: HashSet<String>,
}

/// What a key set says about one `kid`.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// A usable Ed25519 key.
    Found(Arc<Jwk>),
    /// The `kid` is published but its key is unusable.
    Unusable,
    /// The `kid` is not published.
    Missing,
}

impl KeySet {
    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Jwk>> {
        self.keys.get(kid)
    }

    /// The key with this `kid`, telling an unusable key from a missing one.
    pub fn lookup(&self, kid: &str) -> KeyLookup {
        match self.keys.get(kid) {
            Some(key) => KeyLookup::Found(key.clone()),
            None if self.unusable.contains(kid) => KeyLookup::Unusable,
            None => KeyLookup::Missing,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a JWKS document. Keys of other types or algorithms are skipped (an
    /// unselected key must never fail the set) but remembered by `kid` as unusable; a
    /// `kid` that appears twice is unusable. More than `max_keys` entries, a key that
    /// claims to be Ed25519 but is malformed (wrong `kty`, bad `x`, private members), or
    /// a document that is not a JWKS fails as a whole, so it never replaces a good set.
    pub fn from_jwks(body: &[u8], max_keys: usize, policy: AlgPolicy) -> Result<Self, Error> {
        let document = parse_json_object(body).ok_or(Error::invalid_key("the JWKS is not a JSON object"))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(Error::invalid_key("the JWKS has no keys array"));
        };
        if entries.len() > max_keys {
            return Err(Error::invalid_key("the JWKS has too many keys"));
        }
        let mut set = KeySet::default();
        for entry in entries {
            let Some(object) = entry.as_object() else { continue };
            let kid = match object.get("kid") {
                Some(Value::String(kid)) if crate::jose::is_opaque_id(kid) => kid.as_str(),
                _ => continue,
            };
            if set.unusable.contains(kid) {
                continue;
            }
            let parsed = Jwk::from_json(object, policy);
            if let Err(error) = &parsed
                && is_broken_ed25519(object, error)
            {
                return Err(Error::invalid_key("the JWKS has a malformed Ed25519 key"));
            }
            match parsed.ok() {
                Some(jwk) if !set.keys.contains_key(kid) => {
                    set.keys.insert(kid.to_owned(), Arc::new(jwk));
                }
                _ => {
                    set.keys.remove(kid);
                    set.unusable.insert(kid.to_owned());
                }
            }
        }
        Ok(set)
    }

    /// A rough byte count, for the cache weigher.
    pub(crate) fn weight(&self) -> usize {
        // A parsed Ed25519 key (decompressed point, thumbprint, JSON members) and its
        // map slot, as measured by examples/memory.rs.
        const PER_KEY: usize = 450;
        self.keys
            .keys()
            .chain(&self.unusable)
            .map(|kid| kid.len() + PER_KEY)
            .sum()
    }
}

/// Whether an entry that failed to parse claims to be an Ed25519 key (by `crv` or `alg`)
/// and is malformed as one: such a document is broken as a whole, unlike one that merely
/// carries keys of other types (which are skipped, as [AAuth draft -11, "JWKS Discovery
/// and Caching"][draft-11] requires).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
fn is_broken_ed25519(object: &serde_json::Map<String, Value>, error: &Error) -> bool {
    let member = |name| object.get(name).and_then(Value::as_str);
    let claims = member("crv") == Some("Ed25519") || member("alg") == Some("Ed25519");
    claims && (member("kty") != Some("OKP") || error.signature_code() == Some(SignatureErrorCode::InvalidKey))
}

/// Parses metadata fetched for `issuer` and returns its `jwks_uri`.
///
/// `issuer` must be present and byte-equal to the identifier the document was fetched
/// under; `jwks_uri` must be on the same origin (a path under the identifier, nothing
/// that could move the authority).
pub fn metadata_jwks_uri(body: &[u8], issuer: &str) -> Result<String, Error> {
    let document = parse_json_object(body).ok_or(Error::invalid_key("the metadata is not a JSON object"))?;
    match document.get("issuer") {
        None => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMissing,
                "the metadata has no issuer",
            ));
        }
        Some(Value::String(found)) if found == issuer => {}
        Some(_) => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMismatch,
                "the metadata issuer differs from the identifier",
            ));
        }
    }
    same_origin_jwks_uri(&document, issuer)
}

/// [`metadata_jwks_uri`] for demo-generation documents: the signer's identifier may be
/// under `issuer` or `agent`, or absent; when present it must still equal `issuer`.
pub fn legacy_metadata_jwks_uri(body: &[u8], issuer: &str) -> Result<String, Error> {
    let document = parse_json_object(body).ok_or(Error::invalid_key("the metadata is not a JSON object"))?;
    match document.get("issuer").or_else(|| document.get("agent")) {
        None => {}
        Some(Value::String(found)) if found == issuer => {}
        Some(_) => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMismatch,
                "the metadata issuer differs from the identifier",
            ));
        }
    }
    same_origin_jwks_uri(&document, issuer)
}

/// The document's `jwks_uri`, which must be on `issuer`'s origin.
fn same_origin_jwks_uri(document: &serde_json::Map<String, Value>, issuer: &str) -> Result<String, Error> {
    let Some(Value::String(jwks_uri)) = document.get("jwks_uri") else {
        return Err(Error::invalid_key("the metadata has no jwks_uri"));
    };
    let same_origin = jwks_uri
        .strip_prefix(issuer)
        .is_some_and(|rest| rest.starts_with('/') && !rest.starts_with("//"));
    if !same_origin || !jwks_uri.bytes().all(|b| (0x21..0x7f).contains(&b)) || jwks_uri.contains(['\\', '@', '#']) {
        return Err(Error::invalid_key(
            "the metadata's jwks_uri is not on the issuer's origin",
        ));
    }
    Ok(jwks_uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";

    #[test]
    fn a_set_counts_and_finds_only_its_usable_keys_up_to_the_cap() {
        let key = |kid: &str| serde_json::json!({"kty":"OKP","crv":"Ed25519","x":X,"alg":"Ed25519","kid":kid});
        let rsa = serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r1"});
        let not_opaque = key("bad kid\u{1}");
        let body = serde_json::json!({"keys": [key("k1"), key("k2"), rsa, not_opaque]}).to_string();
        let set = KeySet::from_jwks(body.as_bytes(), 4, AlgPolicy::Strict).unwrap();
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
        assert_eq!(set.get("k1").map(|k| k.x()), Some(X));
        assert!(set.get("r1").is_none());
        assert!(set.get("bad kid\u{1}").is_none());
        // Exactly `max_keys` entries is allowed; one more fails the whole document.
        assert!(KeySet::from_jwks(body.as_bytes(), 3, AlgPolicy::Strict).is_err());
        let empty = KeySet::from_jwks(br#"{"keys":[]}"#, 4, AlgPolicy::Strict).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn a_jwks_uri_must_be_a_plain_path_on_the_issuers_origin() {
        let uri = |jwks_uri: &str| {
            let body = serde_json::json!({"issuer": "https://a.example", "jwks_uri": jwks_uri}).to_string();
            metadata_jwks_uri(body.as_bytes(), "https://a.example")
        };
        assert_eq!(
            uri("https://a.example/k/jwks.json").unwrap(),
            "https://a.example/k/jwks.json"
        );
        for refused in [
            "https://b.example/jwks.json",
            "https://a.example.evil/jwks.json",
            "https://a.example//evil/jwks.json",
            "https://a.example",
            "https://a.example/jwks json",
            "https://a.example/jwks\u{7f}",
            "https://a.example/jwks\u{e9}",
            "https://a.example/jwks#frag",
            "https://a.example/@evil",
            "https://a.example/\\evil",
        ] {
            assert_eq!(uri(refused).unwrap_err().code(), "invalid_key", "{refused}");
        }
        let missing = br#"{"issuer":"https://a.example"}"#;
        assert_eq!(
            metadata_jwks_uri(missing, "https://a.example").unwrap_err().code(),
            "invalid_key"
        );
    }

    #[test]
    fn a_one_key_set_is_weighed_near_its_measured_heap() {
        let body = serde_json::json!({"keys": [{"kty":"OKP","crv":"Ed25519","x":X,"alg":"Ed25519","kid":"k1"}]});
        let set = KeySet::from_jwks(body.to_string().as_bytes(), 32, AlgPolicy::Strict).unwrap();
        // With the entry's 800-byte base this is the ~1.3 KB examples/memory.rs measures.
        assert!((400..=600).contains(&set.weight()), "{}", set.weight());
    }

    #[test]
    fn metadata_issuer_must_match() {
        let ok = br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(ok, "https://a.example").unwrap(),
            "https://a.example/jwks.json"
        );
        let other = br#"{"issuer":"https://b.example","jwks_uri":"https://b.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(other, "https://a.example")
                .unwrap_err()
                .signature_code(),
            Some(SignatureErrorCode::IssuerMismatch)
        );
        let missing = br#"{"jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(missing, "https://a.example")
                .unwrap_err()
                .signature_code(),
            Some(SignatureErrorCode::IssuerMissing)
        );
        for cross in [
            "https://a.example.evil.example/jwks",
            "https://a.example@evil.example/jwks",
            "https://a.example//evil.example/jwks",
            "http://a.example/jwks",
            "https://a.example\\@evil.example/",
        ] {
            let body = serde_json::json!({ "issuer": "https://a.example", "jwks_uri": cross }).to_string();
            assert!(
                metadata_jwks_uri(body.as_bytes(), "https://a.example").is_err(),
                "{cross}"
            );
        }
    }

    #[test]
    fn legacy_metadata_may_name_its_signer_under_agent_or_not_at_all() {
        let id = "https://a.example";
        for ok in [
            &br#"{"agent":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#[..],
            br#"{"jwks_uri":"https://a.example/jwks.json"}"#,
            br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#,
        ] {
            assert_eq!(legacy_metadata_jwks_uri(ok, id).unwrap(), "https://a.example/jwks.json");
        }
        let other = br#"{"agent":"https://b.example","jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            legacy_metadata_jwks_uri(other, id).unwrap_err().signature_code(),
            Some(SignatureErrorCode::IssuerMismatch)
        );
        let cross = br#"{"jwks_uri":"https://b.example/jwks.json"}"#;
        assert!(legacy_metadata_jwks_uri(cross, id).is_err());
    }

    #[test]
    fn duplicate_kids_and_foreign_keys_are_unusable_not_fatal() {
        let body = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"a","alg":"Ed25519"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"a","alg":"Ed25519"}},{{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"b","alg":"Ed25519"}}]}}"#
        );
        let set = KeySet::from_jwks(body.as_bytes(), 32, AlgPolicy::Strict).unwrap();
        assert!(matches!(set.lookup("a"), KeyLookup::Unusable));
        assert!(matches!(set.lookup("r"), KeyLookup::Unusable));
        assert!(matches!(set.lookup("b"), KeyLookup::Found(_)));
        assert!(matches!(set.lookup("c"), KeyLookup::Missing));
    }

    #[test]
    fn a_duplicate_after_an_unusable_entry_stays_unusable() {
        let body = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"a"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"a","alg":"Ed25519"}}]}}"#
        );
        let set = KeySet::from_jwks(body.as_bytes(), 32, AlgPolicy::Strict).unwrap();
        assert!(matches!(set.lookup("a"), KeyLookup::Unusable));
    }

    #[test]
    fn a_malformed_ed25519_key_fails_the_set() {
        for key in [
            format!(r#"{{"kty":"EC","crv":"Ed25519","x":"{X}","kid":"a","alg":"Ed25519"}}"#),
            format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"a","alg":"Ed25519"}}"#,
                "A".repeat(5000)
            ),
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{X}","d":"{X}","kid":"a","alg":"Ed25519"}}"#),
        ] {
            let body = format!(r#"{{"keys":[{key}]}}"#);
            assert!(
                KeySet::from_jwks(body.as_bytes(), 32, AlgPolicy::Strict).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn too_many_keys_fail_the_set() {
        let key = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k","alg":"Ed25519"}}"#);
        let body = format!(r#"{{"keys":[{}]}}"#, vec![key; 33].join(","));
        assert!(KeySet::from_jwks(body.as_bytes(), 32, AlgPolicy::Strict).is_err());
    }
}
