//! The `Signature-Key` header (draft-hardt-httpbis-signature-key-09): which key signed
//! the request, by scheme.
//!
//! * `hwk` — the public key is in the header's parameters.
//! * `jwks_uri` — `{id}/.well-known/{dwk}` names a JWKS; `kid` selects the key.
//! * `jwt` — a JWT whose issuer key verifies it; its `cnf.jwk` is the request key.
//!
//! A selected member whose scheme is not accepted is `unsupported_scheme`, answered with
//! `Accept-Signature-Scheme` listing exactly the accepted set.

use http::HeaderValue;
use serde_json::{Map, Value};
use sfv::{BareItem, ListEntry};

use crate::error::{Error, SignatureErrorCode};
use crate::httpsig::{key_end, parse_dictionary_strict, plain_string_end};
use crate::jose::{AlgPolicy, Jwk};
use crate::names;

/// A `Signature-Key` scheme this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `hwk`: header web key (pseudonymous).
    Hwk,
    /// `jwks_uri`: key published by an identified signer.
    JwksUri,
    /// `jwt`: key confirmed (`cnf.jwk`) by a token.
    Jwt,
}

impl Scheme {
    /// The scheme token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Hwk => names::scheme::HWK,
            Scheme::JwksUri => names::scheme::JWKS_URI,
            Scheme::Jwt => names::scheme::JWT,
        }
    }

    fn from_token(token: &str) -> Option<Self> {
        Some(match token {
            names::scheme::HWK => Scheme::Hwk,
            names::scheme::JWKS_URI => Scheme::JwksUri,
            names::scheme::JWT => Scheme::Jwt,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of schemes a layer accepts, with its precomputed `Accept-Signature-Scheme`.
#[derive(Debug, Clone)]
pub struct AcceptedSchemes {
    schemes: Vec<Scheme>,
    header: HeaderValue,
}

impl AcceptedSchemes {
    /// Accept these schemes, in this order of preference.
    pub fn new(schemes: impl IntoIterator<Item = Scheme>) -> Self {
        let mut list: Vec<Scheme> = Vec::new();
        for scheme in schemes {
            if !list.contains(&scheme) {
                list.push(scheme);
            }
        }
        let text = list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        AcceptedSchemes {
            header: HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("jwt")),
            schemes: list,
        }
    }

    /// Whether `scheme` is accepted.
    pub fn contains(&self, scheme: Scheme) -> bool {
        self.schemes.contains(&scheme)
    }

    /// The accepted schemes.
    pub fn schemes(&self) -> &[Scheme] {
        &self.schemes
    }

    /// The `unsupported_scheme` error, with `Accept-Signature-Scheme`.
    pub fn unsupported(&self) -> Error {
        Error(crate::error::Kind::Signature {
            code: SignatureErrorCode::UnsupportedScheme,
            detail: "the Signature-Key scheme is not accepted here",
            required_input: None,
            accept: Some(self.header.clone()),
        })
    }
}

impl Default for AcceptedSchemes {
    fn default() -> Self {
        AcceptedSchemes::new([Scheme::Jwt, Scheme::JwksUri, Scheme::Hwk])
    }
}

/// The key source named by the selected `Signature-Key` member.
#[derive(Debug, Clone)]
// Lives on the stack for one request; boxing the key would add an allocation to the
// `hwk` hot path to save bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
pub enum SignatureKey {
    /// The key itself.
    Hwk(Jwk),
    /// An identified signer's published key.
    JwksUri {
        /// The signer's server identifier.
        id: String,
        /// The well-known document name.
        dwk: String,
        /// The key id in the signer's JWKS.
        kid: String,
    },
    /// A token whose `cnf.jwk` is the key.
    Jwt {
        /// The compact JWT.
        token: String,
    },
}

impl SignatureKey {
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            SignatureKey::Hwk(_) => Scheme::Hwk,
            SignatureKey::JwksUri { .. } => Scheme::JwksUri,
            SignatureKey::Jwt { .. } => Scheme::Jwt,
        }
    }

    /// Parses `field` and selects the member for `label` (draft -11 forms only).
    ///
    /// Members for other labels are ignored, whatever their scheme.
    pub fn parse(field: &str, label: &str, accepted: &AcceptedSchemes) -> Result<Self, Error> {
        Self::parse_profiled(field, label, accepted, false).map(|parsed| parsed.key)
    }

    /// Parses `field` and selects the member for `label`; with `legacy`, the demo
    /// generation's forms are accepted too (see [`Profile`](crate::Profile)): the non-RFC 9651
    /// member shape (tried only when the strict parse fails) and `jwks_uri` without `dwk`.
    pub fn parse_profiled(
        field: &str,
        label: &str,
        accepted: &AcceptedSchemes,
        legacy: bool,
    ) -> Result<ParsedSignatureKey, Error> {
        // `jwt` first, although `common_member` reads it too: its ~900-byte token is
        // checked by the vectorised compact-JWS test instead of one byte at a time.
        if let Some(token) = common_jwt_member(field, label) {
            return from_params(names::scheme::JWT, &[("jwt", Some(token))], accepted, legacy, false);
        }
        let mut params = [("", None); COMMON_MAX_PARAMS];
        if let Some((scheme, count)) = common_member(field, label, &mut params) {
            return from_params(scheme, &params[..count], accepted, legacy, false);
        }
        Self::parse_general(field, label, accepted, legacy)
    }

    /// Every shape the fast paths decline: `sfv`, then the demo generation's forms.
    fn parse_general(
        field: &str,
        label: &str,
        accepted: &AcceptedSchemes,
        legacy: bool,
    ) -> Result<ParsedSignatureKey, Error> {
        let Some(dict) = parse_dictionary_strict(field) else {
            if !legacy {
                return Err(Error::invalid_key("Signature-Key is not a valid structured dictionary"));
            }
            let member = crate::legacy::signature_key_member(field, label)?;
            let params: Vec<(&str, Option<&str>)> = member
                .params
                .iter()
                .map(|(name, value)| (*name, Some(value.as_str())))
                .collect();
            return from_params(member.scheme, &params, accepted, legacy, true);
        };
        let member = dict
            .iter()
            .find(|(key, _)| key.as_str() == label)
            .map(|(_, entry)| entry)
            .ok_or(Error::invalid_signature(
                "Signature-Key has no member for the signed label",
            ))?;
        let ListEntry::Item(item) = member else {
            return Err(Error::invalid_key("the Signature-Key member is not an item"));
        };
        let BareItem::Token(scheme) = &item.bare_item else {
            return Err(Error::invalid_key("the Signature-Key scheme is not a token"));
        };
        let params: Vec<(&str, Option<&str>)> = item
            .params
            .iter()
            .map(|(name, value)| match value {
                BareItem::String(s) => (name.as_str(), Some(s.as_str())),
                _ => (name.as_str(), None),
            })
            .collect();
        from_params(scheme.as_str(), &params, accepted, legacy, false)
    }
}

/// A selected `Signature-Key` member and whether it used a demo-generation form.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ParsedSignatureKey {
    /// The key source.
    pub key: SignatureKey,
    /// Whether the member was in a demo-generation form: the non-RFC 9651 shape,
    /// `jwks_uri` without `dwk`, or `hwk` without `alg`.
    pub legacy_form: bool,
}

/// The shape of nearly every `jwt` request, `label=jwt;jwt="<compact JWS>"` and nothing
/// else, read without building a Dictionary. For such a field `sfv` yields exactly one
/// member, `label` (a valid key: it came out of `Signature-Input`'s Dictionary), a Token
/// `jwt` with one String parameter `jwt` whose characters need no unescaping, so the
/// general path would produce the same parameters. `None`: take the general path.
fn common_jwt_member<'a>(field: &'a str, label: &str) -> Option<&'a str> {
    let token = field
        .strip_prefix(label)?
        .strip_prefix("=jwt;jwt=\"")?
        .strip_suffix('"')?;
    (!token.is_empty() && crate::jose::is_compact_jws_text(token)).then_some(token)
}

/// The most parameters a member may have to take [`common_member`] (`hwk` has four).
const COMMON_MAX_PARAMS: usize = 6;

/// The shape agents send for every scheme, `label=<scheme>` then `;name="value"`
/// parameters and nothing else — no other member, no spaces, no escapes, no repeated
/// name — read without building a Dictionary. For such a field `sfv` yields one member,
/// `label`, a Token with exactly these String parameters in this order, so
/// [`from_params`] is given what the general path would give it. Fills `params` and
/// returns the scheme and the parameter count; `None`: take the general path.
fn common_member<'a>(
    field: &'a str,
    label: &str,
    params: &mut [(&'a str, Option<&'a str>); COMMON_MAX_PARAMS],
) -> Option<(&'a str, usize)> {
    let bytes = field.as_bytes();
    let scheme_start = field.strip_prefix(label)?.strip_prefix('=').map(|_| label.len() + 1)?;
    // Every scheme is lower-case letters and `_`: any other token takes the general path.
    let mut at = scheme_start;
    while bytes.get(at).is_some_and(|b| b.is_ascii_lowercase() || *b == b'_') {
        at += 1;
    }
    if !bytes.get(scheme_start).is_some_and(u8::is_ascii_lowercase) {
        return None;
    }
    let scheme = &field[scheme_start..at];
    let mut count = 0;
    while at < bytes.len() {
        if bytes[at] != b';' || count == COMMON_MAX_PARAMS {
            return None;
        }
        let name_start = at + 1;
        let name_end = key_end(bytes, name_start)?;
        if bytes.get(name_end) != Some(&b'=') || bytes.get(name_end + 1) != Some(&b'"') {
            return None;
        }
        let name = &field[name_start..name_end];
        if params[..count].iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        let value_start = name_end + 2;
        let value_end = plain_string_end(bytes, value_start)?;
        params[count] = (name, Some(&field[value_start..value_end]));
        count += 1;
        at = value_end + 1;
    }
    Some((scheme, count))
}

fn parse_hwk(params: &[(&str, Option<&str>)]) -> Result<Jwk, Error> {
    // An agent sends the same key on every request: parse it once (`Jwk::parse_cached`).
    let mut cache_key = String::with_capacity(96);
    cache_key.push_str("hwk\0");
    for (name, value) in params {
        let Some(value) = value else {
            return Err(Error::invalid_key("an hwk parameter is not a string"));
        };
        // sf keys and strings are printable ASCII: NUL separates unambiguously.
        cache_key.push_str(name);
        cache_key.push('\0');
        cache_key.push_str(value);
        cache_key.push('\0');
    }
    Jwk::parse_cached(cache_key, || {
        let mut jwk = Map::new();
        for (name, value) in params {
            jwk.insert((*name).to_owned(), Value::String(value.unwrap_or_default().to_owned()));
        }
        Jwk::from_json(&jwk, AlgPolicy::Legacy)
    })
}

/// Builds the key source from a member's scheme and parameters (`None`: not a string).
fn from_params(
    scheme: &str,
    params: &[(&str, Option<&str>)],
    accepted: &AcceptedSchemes,
    legacy: bool,
    mut legacy_form: bool,
) -> Result<ParsedSignatureKey, Error> {
    let scheme = Scheme::from_token(scheme).ok_or_else(|| accepted.unsupported())?;
    if !accepted.contains(scheme) {
        return Err(accepted.unsupported());
    }
    let string_param = |name: &str| -> Result<Option<&str>, Error> {
        match params.iter().find(|(k, _)| *k == name).map(|(_, v)| v) {
            None => Ok(None),
            Some(Some(s)) => Ok(Some(s)),
            Some(None) => Err(Error::invalid_key("a Signature-Key parameter is not a string")),
        }
    };
    let key = match scheme {
        Scheme::Hwk => {
            if params.iter().any(|(k, _)| *k == "kid") {
                return Err(Error::invalid_key("hwk must not carry kid"));
            }
            let key = parse_hwk(params)?;
            // hwk's alg was forbidden before draft-hardt-httpbis-signature-key-08 and is required
            // since: accept it absent, `Ed25519`, or `EdDSA`; the key type is explicit either way.
            legacy_form |= !params.iter().any(|(name, _)| *name == "alg");
            SignatureKey::Hwk(key)
        }
        Scheme::JwksUri => {
            let (id, dwk, kid) = (string_param("id")?, string_param("dwk")?, string_param("kid")?);
            // The demo's agents sent no dwk: their only document was aauth-agent.json.
            let dwk = match dwk {
                None if legacy => {
                    legacy_form = true;
                    Some(names::dwk::AGENT)
                }
                dwk => dwk,
            };
            let (Some(id), Some(dwk), Some(kid)) = (id, dwk, kid) else {
                return Err(Error::invalid_key("jwks_uri needs id, dwk and kid"));
            };
            SignatureKey::JwksUri {
                id: id.to_owned(),
                dwk: dwk.to_owned(),
                kid: kid.to_owned(),
            }
        }
        Scheme::Jwt => {
            let token = string_param("jwt").map_err(|_| Error::invalid_jwt("the jwt parameter is not a string"))?;
            let token = token.ok_or(Error::invalid_jwt("the jwt scheme needs a jwt parameter"))?;
            SignatureKey::Jwt {
                token: token.to_owned(),
            }
        }
    };
    Ok(ParsedSignatureKey { key, legacy_form })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";

    #[test]
    fn schemes_display_as_their_wire_tokens_and_the_accepted_list_is_kept_in_order() {
        assert_eq!(Scheme::Hwk.to_string(), "hwk");
        assert_eq!(Scheme::JwksUri.to_string(), "jwks_uri");
        assert_eq!(Scheme::Jwt.to_string(), "jwt");
        let accepted = AcceptedSchemes::new([Scheme::Hwk, Scheme::Jwt]);
        assert_eq!(accepted.schemes(), &[Scheme::Hwk, Scheme::Jwt]);
    }

    #[test]
    fn an_hwk_without_alg_is_flagged_as_the_demo_generation_form() {
        let accepted = AcceptedSchemes::default();
        let without = format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#);
        let with = format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}";alg="Ed25519""#);
        for legacy in [false, true] {
            assert!(
                SignatureKey::parse_profiled(&without, "sig", &accepted, legacy)
                    .unwrap()
                    .legacy_form
            );
            assert!(
                !SignatureKey::parse_profiled(&with, "sig", &accepted, legacy)
                    .unwrap()
                    .legacy_form
            );
        }
    }

    #[test]
    fn hwk_with_and_without_alg() {
        let accepted = AcceptedSchemes::default();
        for field in [
            format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}";alg="Ed25519""#),
            format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#),
        ] {
            let SignatureKey::Hwk(jwk) = SignatureKey::parse(&field, "sig", &accepted).unwrap() else {
                panic!("not hwk");
            };
            assert_eq!(jwk.thumbprint(), "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U");
        }
    }

    #[test]
    fn unknown_scheme_is_unsupported_with_accept_list() {
        let accepted = AcceptedSchemes::new([Scheme::Jwt]);
        let err = SignatureKey::parse(r#"sig=x509;x5u="https://a.example""#, "sig", &accepted).unwrap_err();
        let mut headers = http::HeaderMap::new();
        err.write_headers(&mut headers).unwrap();
        assert_eq!(headers["signature-error"], "error=unsupported_scheme");
        assert_eq!(headers["accept-signature-scheme"], "jwt");
        let err =
            SignatureKey::parse(&format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#), "sig", &accepted).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::UnsupportedScheme));
    }

    #[test]
    fn unselected_members_are_ignored() {
        let field = format!(r#"other=foo, sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#);
        assert!(SignatureKey::parse(&field, "sig", &AcceptedSchemes::default()).is_ok());
    }

    #[test]
    fn common_jwt_shape_reads_as_the_dictionary_path_does() {
        let token = "eyJhbGciOiJFZDI1NTE5In0.eyJzdWIiOiJhIn0.c2ln-_";
        let field = format!(r#"sig=jwt;jwt="{token}""#);
        assert_eq!(common_jwt_member(&field, "sig"), Some(token));
        let dict = parse_dictionary_strict(&field).unwrap();
        let Some(ListEntry::Item(item)) = dict.get("sig") else {
            panic!("not an item")
        };
        assert!(matches!(&item.bare_item, BareItem::Token(t) if t.as_str() == "jwt"));
        let params: Vec<_> = item.params.iter().collect();
        assert_eq!(params.len(), 1);
        assert_eq!(params[0].0.as_str(), "jwt");
        assert!(matches!(params[0].1, BareItem::String(s) if s.as_str() == token));
    }

    #[test]
    fn uncommon_jwt_shapes_take_the_general_path() {
        for field in [
            r#"sig=jwt;jwt="a.b.c";x=1"#,
            r#"sig=jwt;jwt="a.b.c", other=hwk"#,
            r#"other=jwt;jwt="a.b.c""#,
            r#"sig=jwt;jwt="a b.c""#,
            r#"sig=jwt;jwt="a\".c""#,
            "sig=jwt;jwt=\"\"",
        ] {
            assert_eq!(common_jwt_member(field, "sig"), None, "{field}");
        }
    }

    /// The outcome of a parse, comparable: the key or the refusal's code and detail.
    fn outcome(result: Result<ParsedSignatureKey, Error>) -> String {
        match result {
            Ok(parsed) => format!("{:?} legacy={}", parsed.key, parsed.legacy_form),
            Err(error) => format!("{} {}", error.code(), error.detail()),
        }
    }

    /// Asserts that `field` takes the common-member fast path and that, for every scheme
    /// set and profile, it yields exactly what the general path yields.
    fn fast_equals_general(field: &str) {
        let mut params = [("", None); COMMON_MAX_PARAMS];
        assert!(common_member(field, "sig", &mut params).is_some(), "{field}");
        for accepted in [AcceptedSchemes::default(), AcceptedSchemes::new([Scheme::Jwt])] {
            for legacy in [false, true] {
                assert_eq!(
                    outcome(SignatureKey::parse_profiled(field, "sig", &accepted, legacy)),
                    outcome(SignatureKey::parse_general(field, "sig", &accepted, legacy)),
                    "{field}"
                );
            }
        }
    }

    #[test]
    fn common_member_shapes_read_as_the_dictionary_path_does() {
        for field in [
            format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}";alg="Ed25519""#),
            format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#),
            format!(r#"sig=hwk;x="{X}";crv="Ed25519";kty="OKP""#),
            format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}";kid="k""#),
            r#"sig=hwk;kty="oct";k="c2VjcmV0""#.to_owned(),
            r#"sig=jwks_uri;id="https://agent.example";dwk="aauth-agent.json";kid="k1""#.to_owned(),
            r#"sig=jwks_uri;id="https://agent.example";kid="k1""#.to_owned(),
            r#"sig=jwt;jwt="not a token""#.to_owned(),
            r#"sig=jwt;jwt="""#.to_owned(),
            r#"sig=nope;x="1""#.to_owned(),
            "sig=hwk".to_owned(),
            r#"sig=hwk;a="";b="";c="";d="";e="";f="""#.to_owned(),
        ] {
            fast_equals_general(&field);
        }
    }

    #[test]
    fn uncommon_member_shapes_take_the_general_path() {
        for field in [
            r#"sig=hwk; kty="OKP""#,
            r#"sig=hwk;kty"#,
            r#"sig=hwk;kty=1"#,
            r#"sig=hwk;kty=OKP"#,
            r#"sig=hwk;kty=1""#,
            r#"sig=hwk;kty="O\\KP""#,
            r#"sig=hwk;kty="OKP", other=hwk"#,
            r#"sig=hwk;kty="OKP";kty="OKP""#,
            r#"sig=hwk;a="";b="";c="";d="";e="";f="";g="""#,
            r#"sig=HWK;kty="OKP""#,
            r#"sig=_hwk;kty="OKP""#,
            r#"sig=hwk2;kty="OKP""#,
            r#"sig=hwk;Kty="OKP""#,
            r#"sig=hwk;kty="é""#,
            r#"sig1=hwk;kty="OKP""#,
            r#"other=hwk;kty="OKP""#,
            r#"sig="hwk""#,
            "sig=",
        ] {
            let mut params = [("", None); COMMON_MAX_PARAMS];
            assert_eq!(common_member(field, "sig", &mut params), None, "{field}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// Members built from the pieces agents send and pieces that break the shape:
        /// whenever the fast path takes one, it agrees with `sfv`.
        #[test]
        fn the_common_member_path_agrees_with_the_general_path(
            scheme in "(hwk|jwks_uri|jwt|nope|HWK|h2)",
            params in proptest::collection::vec(
                (
                    "(kty|crv|x|alg|kid|id|dwk|jwt|a|Kty|k-1|\\*)",
                    "(OKP|Ed25519|JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs|https://a.example|aauth-agent.json|a b|)",
                ),
                0..8,
            ),
            separator in "(;|; |;;)",
            tail in "(|, other=hwk| |\\?)",
        ) {
            let mut field = format!("sig={scheme}");
            for (i, (name, value)) in params.iter().enumerate() {
                field.push_str(if i == 1 { &separator } else { ";" });
                field.push_str(&format!("{name}=\"{value}\""));
            }
            field.push_str(&tail);
            let mut slots = [("", None); COMMON_MAX_PARAMS];
            if common_member(&field, "sig", &mut slots).is_some() {
                fast_equals_general(&field);
            }
        }
    }

    #[test]
    fn a_cached_hwk_key_is_the_key_parsing_gives() {
        let field = format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}";alg="Ed25519""#);
        let accepted = AcceptedSchemes::default();
        let first = SignatureKey::parse(&field, "sig", &accepted).unwrap();
        let second = SignatureKey::parse(&field, "sig", &accepted).unwrap();
        let (SignatureKey::Hwk(a), SignatureKey::Hwk(b)) = (first, second) else {
            panic!("not hwk");
        };
        assert_eq!(a, b);
        // Same x, different parameters: not the cached key.
        let no_alg = format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{X}""#);
        let SignatureKey::Hwk(c) = SignatureKey::parse(&no_alg, "sig", &accepted).unwrap() else {
            panic!("not hwk");
        };
        assert_eq!(c.alg(), None);
        assert_eq!(a.alg(), Some("Ed25519"));
    }

    #[test]
    fn a_refused_hwk_key_stays_refused() {
        let weak = r#"sig=hwk;kty="OKP";crv="Ed25519";x="AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";alg="Ed25519""#;
        let accepted = AcceptedSchemes::default();
        for _ in 0..2 {
            let err = SignatureKey::parse(weak, "sig", &accepted).unwrap_err();
            assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey));
        }
    }

    #[test]
    fn symmetric_key_in_hwk_is_invalid_key() {
        let err =
            SignatureKey::parse(r#"sig=hwk;kty="oct";k="c2VjcmV0""#, "sig", &AcceptedSchemes::default()).unwrap_err();
        assert_eq!(err.signature_code(), Some(SignatureErrorCode::InvalidKey));
    }
}
