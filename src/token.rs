//! The AAuth tokens an agent presents in `Signature-Key: sig=jwt;jwt="…"`, and the rules
//! each kind is validated by ([AAuth draft -11, "AAuth Tokens"][draft-11]).
//!
//! Validation is split so that everything that costs no I/O runs before any key is
//! fetched ([`TokenPolicy::check_claims`]: `typ`, `dwk`, issuer trust, `aud`, times,
//! required claims, `cnf.jwk`); the issuer signature is checked afterwards with the key
//! discovery found. A token that fails any rule is a signature failure (`401`):
//! `expired_jwt` for `exp`, `clock_skew` for a future `iat`, `invalid_jwt` otherwise.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, SignatureErrorCode};
use crate::jose::{AlgPolicy, Jwk, UnverifiedJws, is_opaque_id};
use crate::names;
use crate::policy::identity::{AgentId, is_agent_identifier, provider_names};
use crate::profile::Generation;

/// The kind of a credential token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// `aa-agent+jwt`: the agent's identity, issued by its agent provider.
    Agent,
    /// `aa-person+jwt`: the person, issued by a person server; never authorization.
    Person,
    /// `aa-auth+jwt`: consented scopes, issued by a person or access server.
    Auth,
}

impl TokenKind {
    /// The `typ` of this kind in the strict profile.
    pub const fn typ(self) -> &'static str {
        match self {
            TokenKind::Agent => names::typ::AGENT,
            TokenKind::Person => names::typ::PERSON,
            TokenKind::Auth => names::typ::AUTH,
        }
    }

    /// Maps a `typ` ([RFC 7515
    /// §4.1.9](https://www.rfc-editor.org/rfc/rfc7515#section-4.1.9): `application/` prefix
    /// optional, case-insensitive).
    pub fn from_typ(typ: &str, legacy: bool) -> Option<Self> {
        let typ = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        let is = |name: &str| typ.eq_ignore_ascii_case(name);
        if is(names::typ::AGENT) {
            Some(TokenKind::Agent)
        } else if is(names::typ::PERSON) {
            Some(TokenKind::Person)
        } else if is(names::typ::AUTH) || (legacy && is(names::typ::LEGACY_AUTH)) {
            Some(TokenKind::Auth)
        } else if legacy && is(names::typ::LEGACY_AGENT) {
            Some(TokenKind::Agent)
        } else {
            None
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.typ())
    }
}

/// A space-separated scope set ([RFC 6749
/// §3.3](https://www.rfc-editor.org/rfc/rfc6749#section-3.3)), order irrelevant, duplicates
/// harmless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<[String]>);

impl Scopes {
    /// Parses the RFC 6749 grammar strictly: tokens of `%x21 / %x23-5B / %x5D-7E`
    /// separated by single spaces, no leading or trailing space.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Scopes::default());
        }
        let mut scopes: Vec<String> = Vec::new();
        for token in text.split(' ') {
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return None;
            }
            if !scopes.iter().any(|s| s == token) {
                scopes.push(token.to_owned());
            }
        }
        Some(Scopes(scopes.into()))
    }

    /// A scope set from trusted values (configuration).
    pub fn from_iter_unchecked<I: IntoIterator<Item = S>, S: Into<String>>(iter: I) -> Self {
        let mut scopes: Vec<String> = Vec::new();
        for scope in iter {
            let scope = scope.into();
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Scopes(scopes.into())
    }

    /// Whether `scope` is granted (exact, case-sensitive match).
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// Whether every scope of `required` is granted.
    pub fn contains_all(&self, required: &Scopes) -> bool {
        required.iter().all(|s| self.contains(s))
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Number of distinct scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
        }
        Ok(())
    }
}

/// The validated claims of a credential token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenClaims {
    /// Which kind of token.
    pub kind: TokenKind,
    /// `iss`.
    pub iss: String,
    /// `dwk` (the issuer's well-known document name).
    pub dwk: String,
    /// `sub`: the agent identifier (agent tokens) or the directed person id.
    pub sub: Option<String>,
    /// `aud`, when present (always our identifier once validated).
    pub aud: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `iat`.
    pub iat: Option<u64>,
    /// `exp`.
    pub exp: u64,
    /// `scope` (auth tokens).
    pub scope: Scopes,
    /// `ps`: the person server.
    pub ps: Option<String>,
    /// `cnf.jwk`: the key that must sign the request.
    pub cnf: Jwk,
    /// `agent` (demo generation auth tokens only).
    pub agent: Option<String>,
    /// The agent this token identifies: the pair `(iss, sub)` of an agent token, or the
    /// `agent` claim of a demo-generation auth token from an issuer trusted by name.
    pub(crate) agent_id: Option<AgentId>,
    /// The `kid` header the issuer key is selected by.
    pub kid: String,
    /// [`Generation::Legacy`] when the token used any demo-generation form (legacy
    /// `typ`, `EdDSA`, no `dwk`/`iat`/`ps`, a `cnf.jwk` without `alg`, …); only possible
    /// when [`TokenPolicy::legacy`] is on.
    pub generation: Generation,
    /// Every claim, for custom checks.
    pub raw: Arc<Map<String, Value>>,
}

/// Who may issue tokens of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerTrust {
    /// Any issuer with a valid identifier (egress admission and budgets still apply).
    Any,
    /// Only these issuer identifiers (exact string match).
    Listed(Vec<String>),
}

impl IssuerTrust {
    pub(crate) fn allows(&self, iss: &str) -> bool {
        match self {
            IssuerTrust::Any => true,
            IssuerTrust::Listed(list) => list.iter().any(|i| i == iss),
        }
    }
}

/// The claim rules, fixed at build time.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// Our resource identifier: the only accepted `aud`.
    pub resource: String,
    /// Token kinds accepted in `Signature-Key` at all.
    pub accepted: Vec<TokenKind>,
    /// Access servers (auth tokens with `dwk` `aauth-access.json`).
    pub access_servers: Vec<String>,
    /// Person servers (person tokens, and auth tokens with `dwk` `aauth-person.json`).
    pub person_servers: IssuerTrust,
    /// Agent providers (agent tokens).
    pub agent_providers: IssuerTrust,
    /// How far `iat` may be ahead of our clock (seconds).
    pub max_iat_skew: u64,
    /// Longest accepted agent-token lifetime (`exp − iat`; for a legacy token without
    /// `iat`, `exp − now` may exceed it by at most `max_iat_skew`).
    pub max_agent_lifetime: u64,
    /// Longest accepted person/auth-token lifetime (measured like the agent token's).
    pub max_grant_lifetime: u64,
    /// JOSE algorithm spellings.
    pub alg: AlgPolicy,
    /// Also accept the demo generation's typs and claims (see [`Profile`](crate::Profile)).
    pub legacy: bool,
}

impl TokenPolicy {
    /// A policy for `resource` with draft -11's defaults: all three kinds accepted, no
    /// trusted access or person servers, any agent provider, 60 s `iat` skew, 24 h agent
    /// and 1 h person/auth lifetimes.
    pub fn new(resource: impl Into<String>) -> Self {
        TokenPolicy {
            resource: resource.into(),
            accepted: vec![TokenKind::Agent, TokenKind::Person, TokenKind::Auth],
            access_servers: Vec::new(),
            person_servers: IssuerTrust::Listed(Vec::new()),
            agent_providers: IssuerTrust::Any,
            max_iat_skew: 60,
            max_agent_lifetime: 24 * 3600,
            max_grant_lifetime: 3600,
            alg: AlgPolicy::Strict,
            legacy: false,
        }
    }

    /// Every check that needs no key: `typ` first, then `dwk`, issuer trust, `aud`,
    /// times, required claims and `cnf.jwk`. Runs before any fetch.
    pub fn check_claims(&self, jws: &UnverifiedJws<'_>, now: u64) -> Result<TokenClaims, Error> {
        let typ = jws.typ().ok_or(Error::invalid_jwt("the token has no typ"))?;
        let kind =
            TokenKind::from_typ(typ, self.legacy).ok_or(Error::invalid_jwt("the token's typ is not a credential"))?;
        if !self.accepted.contains(&kind) {
            return Err(Error::invalid_jwt("this kind of token is not accepted here"));
        }
        let kid = jws.kid().ok_or(Error::invalid_jwt("the token has no kid"))?.to_owned();
        let claims = jws.payload();
        // Every relaxation below is gated on `self.legacy`; using one marks the token.
        let mut legacy_form = TokenKind::from_typ(typ, false).is_none() || jws.alg() == names::alg::EDDSA;
        let iss = req_str(claims, "iss")?;
        if !is_identifier_shaped(iss) {
            return Err(Error::invalid_jwt("the token's iss is not a server identifier"));
        }
        let dwk = match (claims.get("dwk"), kind) {
            (Some(Value::String(dwk)), _) => dwk.as_str(),
            // Before draft-hardt-aauth-protocol-00 tokens named no document: agents' keys were in
            // aauth-agent.json, auth servers' in aauth-issuer.json.
            (None, TokenKind::Agent) if self.legacy => names::dwk::AGENT,
            (None, TokenKind::Auth) if self.legacy => names::dwk::LEGACY_ISSUER,
            _ => return Err(Error::invalid_jwt("the token has no dwk")),
        };
        legacy_form |= !claims.contains_key("dwk");
        let trusted = match (kind, dwk) {
            (TokenKind::Agent, names::dwk::AGENT) => self.agent_providers.allows(iss),
            (TokenKind::Person, names::dwk::PERSON) => self.person_servers.allows(iss),
            (TokenKind::Auth, names::dwk::ACCESS) => self.access_servers.iter().any(|s| s == iss),
            (TokenKind::Auth, names::dwk::PERSON) => self.person_servers.allows(iss),
            (TokenKind::Auth, names::dwk::LEGACY_ISSUER) if self.legacy => self.access_servers.iter().any(|s| s == iss),
            _ => return Err(Error::invalid_jwt("the token's dwk does not fit its typ")),
        };
        if !trusted {
            return Err(Error::invalid_jwt("the token's issuer is not trusted here"));
        }

        let exp = req_u64(claims, "exp")?;
        let iat = opt_u64(claims, "iat")?;
        if let Some(nbf) = opt_u64(claims, "nbf")?
            && nbf > now
        {
            return Err(Error::invalid_jwt("the token is not valid yet"));
        }
        if exp <= now {
            return Err(Error::signature(
                SignatureErrorCode::ExpiredJwt,
                "the token has expired",
            ));
        }
        let max_lifetime = match kind {
            TokenKind::Agent => self.max_agent_lifetime,
            TokenKind::Person | TokenKind::Auth => self.max_grant_lifetime,
        };
        if let Some(iat) = iat {
            if iat > now.saturating_add(self.max_iat_skew) {
                return Err(Error::signature(
                    SignatureErrorCode::ClockSkew,
                    "the token was issued in the future",
                ));
            }
            if exp.saturating_sub(iat) > max_lifetime {
                return Err(Error::invalid_jwt("the token's lifetime is longer than allowed"));
            }
        } else if self.legacy {
            // Without `iat` the issue time is unknown; it was at best `now` plus the skew
            // an `iat` would be allowed, so what is left of the lifetime bounds it.
            if exp.saturating_sub(now) > max_lifetime.saturating_add(self.max_iat_skew) {
                return Err(Error::invalid_jwt("the token's lifetime is longer than allowed"));
            }
            legacy_form = true;
        } else {
            return Err(Error::invalid_jwt("the token has no iat"));
        }

        let sub = opt_id(claims, "sub")?;
        let jti = opt_id(claims, "jti")?;
        let ps = opt_str(claims, "ps")?;
        if let Some(ps) = ps
            && !is_identifier_shaped(ps)
        {
            return Err(Error::invalid_jwt("the token's ps is not a server identifier"));
        }
        let agent = opt_str(claims, "agent")?;
        let aud = match claims.get("aud") {
            None => None,
            Some(Value::String(aud)) => Some(aud.as_str()),
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(aud)] => Some(aud.as_str()),
                _ => return Err(Error::invalid_jwt("the token names more than one audience")),
            },
            Some(_) => return Err(Error::invalid_jwt("the token's aud is not a string")),
        };
        let scope = match claims.get("scope") {
            None => Scopes::default(),
            Some(Value::String(text)) => {
                Scopes::parse(text).ok_or(Error::invalid_jwt("the token's scope is malformed"))?
            }
            Some(_) => return Err(Error::invalid_jwt("the token's scope is not a string")),
        };

        match kind {
            TokenKind::Agent => {
                let sub = sub.ok_or(Error::invalid_jwt("the agent token has no sub"))?;
                // Before draft-hardt-aauth-protocol-01 the agent was named by its provider's URL
                // plus a delegate `sub`, and agent tokens carried no `jti`.
                if !is_agent_identifier(sub) || jti.is_none() {
                    if !self.legacy {
                        return Err(Error::invalid_jwt(if jti.is_none() {
                            "the agent token has no jti"
                        } else {
                            "the agent token's sub is not an agent identifier"
                        }));
                    }
                    legacy_form = true;
                }
                if let Some(parent) = opt_str(claims, "parent_agent")? {
                    if !is_agent_identifier(parent) {
                        return Err(Error::invalid_jwt(
                            "the agent token's parent_agent is not an agent identifier",
                        ));
                    }
                    if !provider_names(iss, parent) {
                        return Err(Error::invalid_jwt("the agent token names another provider's agent"));
                    }
                }
                // A provider vouches only for its own agents: `aauth:local@domain` is the
                // agent of the provider whose host is `domain`, never of another.
                if !provider_names(iss, sub) {
                    return Err(Error::invalid_jwt("the agent token names another provider's agent"));
                }
            }
            TokenKind::Person => {
                if claims.contains_key("scope") {
                    return Err(Error::invalid_jwt("a person token must not carry scope"));
                }
                require_grant_claims(sub, jti, aud, &self.resource)?;
            }
            TokenKind::Auth => {
                if ps.is_some() && sub.is_some() {
                    require_grant_claims(sub, jti, aud, &self.resource)?;
                    // A person server speaks only for itself: its grant names it as `ps`,
                    // or a step-up would carry its `sub` to another person server.
                    if dwk == names::dwk::PERSON && ps != Some(iss) {
                        return Err(Error::invalid_jwt("a person server's auth token names another ps"));
                    }
                } else if self.legacy {
                    // The March 2026 demo … draft-hardt-oauth-aauth-protocol-10: no `ps`, `sub`
                    // optional if `scope` is granted, `agent`/`act` optional (the signing
                    // context names no agent to compare them with); the audience stays ours.
                    legacy_form = true;
                    if aud != Some(self.resource.as_str()) {
                        return Err(Error::invalid_jwt("the token's audience is not this resource"));
                    }
                    if sub.is_none() && scope.is_empty() {
                        return Err(Error::invalid_jwt("the legacy auth token has neither sub nor scope"));
                    }
                    if claims.get("act").is_some_and(|act| !act.is_object()) {
                        return Err(Error::invalid_jwt("the auth token's act is not an object"));
                    }
                } else {
                    require_grant_claims(sub, jti, aud, &self.resource)?;
                    return Err(Error::invalid_jwt("the auth token has no ps"));
                }
            }
        }

        let cnf = cnf_jwk(claims, self.alg)?;
        legacy_form |= cnf.alg().is_none_or(|alg| alg == names::alg::EDDSA);
        let agent_id = match kind {
            // Before draft-hardt-aauth-protocol-01 the agent was its provider's URL and `sub` a
            // delegate id.
            TokenKind::Agent => sub.map(|sub| {
                if is_agent_identifier(sub) {
                    AgentId::trusted(iss, sub)
                } else {
                    AgentId::server(iss.into())
                }
            }),
            // The demo generation's `agent` claim is the issuer's word: believed only from
            // an issuer trusted by name, never from any person server that happens to verify.
            TokenKind::Auth if self.names_trusted_issuer(iss) => agent.and_then(agent_from_claim),
            _ => None,
        };
        Ok(TokenClaims {
            kind,
            iss: iss.to_owned(),
            dwk: dwk.to_owned(),
            sub: sub.map(str::to_owned),
            aud: aud.map(str::to_owned),
            jti: jti.map(str::to_owned),
            iat,
            exp,
            scope,
            ps: ps.map(str::to_owned),
            cnf,
            agent: agent.map(str::to_owned),
            agent_id,
            kid,
            generation: if legacy_form && self.legacy {
                Generation::Legacy
            } else {
                Generation::Draft11
            },
            raw: jws.payload_shared().clone(),
        })
    }
}

impl TokenPolicy {
    /// Whether `iss` is trusted by name: a configured access server or a listed person
    /// server (not merely any person server).
    fn names_trusted_issuer(&self, iss: &str) -> bool {
        self.access_servers.iter().any(|s| s == iss)
            || matches!(&self.person_servers, IssuerTrust::Listed(list) if list.iter().any(|s| s == iss))
    }
}

/// The agent a demo-generation `agent` claim names: an agent identifier (its provider
/// follows from its domain) or the agent's server URL.
fn agent_from_claim(agent: &str) -> Option<AgentId> {
    agent.parse().ok()
}

fn require_grant_claims(sub: Option<&str>, jti: Option<&str>, aud: Option<&str>, resource: &str) -> Result<(), Error> {
    match aud {
        Some(aud) if aud == resource => {}
        _ => return Err(Error::invalid_jwt("the token's audience is not this resource")),
    }
    if sub.is_none() {
        return Err(Error::invalid_jwt("the token has no sub"));
    }
    if jti.is_none() {
        return Err(Error::invalid_jwt("the token has no jti"));
    }
    Ok(())
}

fn cnf_jwk(claims: &Map<String, Value>, policy: AlgPolicy) -> Result<Jwk, Error> {
    let jwk = claims
        .get("cnf")
        .and_then(Value::as_object)
        .and_then(|cnf| cnf.get("jwk"))
        .and_then(Value::as_object)
        .ok_or(Error::invalid_jwt("the token has no cnf.jwk"))?;
    // Structurally incomplete confirmation keys are refused before decoding.
    if !["kty", "crv", "x"]
        .iter()
        .all(|m| jwk.get(*m).is_some_and(Value::is_string))
    {
        return Err(Error::invalid_jwt("the token's cnf.jwk is incomplete"));
    }
    Jwk::from_json_cached(jwk, policy)
}

fn req_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    opt_str(claims, name)?.ok_or(Error::invalid_jwt("the token lacks a required claim"))
}

fn opt_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid_jwt("a token claim has the wrong type")),
    }
}

fn opt_id<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Error> {
    match opt_str(claims, name)? {
        Some(id) if !is_opaque_id(id) => Err(Error::invalid_jwt("a token identifier claim holds invalid characters")),
        other => Ok(other),
    }
}

fn req_u64(claims: &Map<String, Value>, name: &str) -> Result<u64, Error> {
    opt_u64(claims, name)?.ok_or(Error::invalid_jwt("the token lacks a required time claim"))
}

fn opt_u64(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|v| *v <= i64::MAX as u64)
            .map(Some)
            .ok_or(Error::invalid_jwt("a token time claim is not a non-negative integer")),
        Some(_) => Err(Error::invalid_jwt("a token time claim is not a number")),
    }
}

/// Cheap shape check on `iss`/`ps` before the full admission rules of
/// [`crate::discovery::admission::IdentifierPolicy`]: an `https://` or `http://` URL of printable ASCII.
pub(crate) fn is_identifier_shaped(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://"))
        && value.len() <= 2048
        && value.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_draft_11_typ_and_displays_as_it() {
        for (kind, typ) in [
            (TokenKind::Agent, "aa-agent+jwt"),
            (TokenKind::Person, "aa-person+jwt"),
            (TokenKind::Auth, "aa-auth+jwt"),
        ] {
            assert_eq!(kind.typ(), typ);
            assert_eq!(kind.to_string(), typ);
            assert_eq!(TokenKind::from_typ(kind.typ(), false), Some(kind));
        }
    }

    #[test]
    fn an_empty_scope_string_is_an_empty_set_and_a_scope_is_not() {
        assert!(Scopes::parse("").unwrap().is_empty());
        assert!(!Scopes::parse("data.read").unwrap().is_empty());
    }

    #[test]
    fn typ_follows_media_type_rules_only() {
        assert_eq!(TokenKind::from_typ("aa-auth+jwt", false), Some(TokenKind::Auth));
        assert_eq!(
            TokenKind::from_typ("application/aa-auth+jwt", false),
            Some(TokenKind::Auth)
        );
        assert_eq!(TokenKind::from_typ("AA-AUTH+JWT", false), Some(TokenKind::Auth));
        assert_eq!(TokenKind::from_typ("aa-auth+jwt ", false), None);
        assert_eq!(TokenKind::from_typ("aa-auth+jwt;v=1", false), None);
        assert_eq!(TokenKind::from_typ("auth+jwt", false), None);
        assert_eq!(TokenKind::from_typ("auth+jwt", true), Some(TokenKind::Auth));
        assert_eq!(TokenKind::from_typ("aa-resource+jwt", true), None);
        assert_eq!(TokenKind::from_typ("resource+jwt", true), None);
    }

    #[test]
    fn scope_grammar() {
        assert_eq!(Scopes::parse("data.read data.write").unwrap().len(), 2);
        assert_eq!(Scopes::parse("data.read data.read").unwrap().len(), 1);
        for bad in ["a  b", " a", "a ", "a\tb", "a\"b", "a\\b", "ä"] {
            assert!(Scopes::parse(bad).is_none(), "{bad:?}");
        }
        let granted = Scopes::parse("data.write data.read").unwrap();
        assert!(granted.contains_all(&Scopes::parse("data.read").unwrap()));
        assert!(!granted.contains("Data.Read"));
        assert!(!granted.contains("data.rea"));
    }

    const NOW: u64 = 1_800_000_000;
    const RESOURCE: &str = "https://resource.example";
    const AS: &str = "https://as.example";

    fn agent_claims() -> Value {
        serde_json::json!({
            "iss": "https://agent.example",
            "dwk": names::dwk::AGENT,
            "sub": "aauth:assistant@agent.example",
            "jti": "j-1",
            "iat": NOW,
            "exp": NOW + 600,
            "cnf": { "jwk": crate::jose::ResourceKey::from_seed([6; 32]).public_jwk().to_json() },
        })
    }

    fn auth_claims() -> Value {
        let mut claims = agent_claims();
        claims["iss"] = AS.into();
        claims["dwk"] = names::dwk::ACCESS.into();
        claims["ps"] = "https://ps.example".into();
        claims["aud"] = RESOURCE.into();
        claims["scope"] = "data.read".into();
        claims
    }

    fn policy(legacy: bool) -> TokenPolicy {
        TokenPolicy {
            access_servers: vec![AS.to_owned()],
            alg: if legacy { AlgPolicy::Legacy } else { AlgPolicy::Strict },
            legacy,
            ..TokenPolicy::new(RESOURCE)
        }
    }

    fn check(policy: &TokenPolicy, typ: &str, alg: &str, claims: &Value, now: u64) -> Result<TokenClaims, Error> {
        let token = crate::jose::ResourceKey::from_seed([5; 32])
            .with_kid("k1")
            .sign_jwt(typ, alg, claims);
        let jws = UnverifiedJws::parse(&token, policy.alg)?;
        policy.check_claims(&jws, now)
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    #[test]
    fn draft_11_tokens_pass_both_policies_as_draft_11() {
        for legacy in [false, true] {
            let agent = check(&policy(legacy), "aa-agent+jwt", "Ed25519", &agent_claims(), NOW).unwrap();
            assert_eq!(agent.generation, Generation::Draft11);
            let auth = check(&policy(legacy), "aa-auth+jwt", "Ed25519", &auth_claims(), NOW).unwrap();
            assert_eq!((auth.kind, auth.generation), (TokenKind::Auth, Generation::Draft11));
        }
    }

    #[test]
    fn a_strict_policy_refuses_a_token_without_dwk_whatever_its_kind() {
        for (typ, claims) in [("aa-agent+jwt", agent_claims()), ("aa-auth+jwt", auth_claims())] {
            let error = check(&policy(false), typ, "Ed25519", &without(claims, "dwk"), NOW).unwrap_err();
            assert_eq!(
                (error.code(), error.detail()),
                ("invalid_jwt", "the token has no dwk"),
                "{typ}"
            );
        }
    }

    #[test]
    fn a_strict_policy_refuses_the_legacy_issuer_document_even_from_a_trusted_access_server() {
        let mut claims = auth_claims();
        claims["dwk"] = names::dwk::LEGACY_ISSUER.into();
        let error = check(&policy(false), "aa-auth+jwt", "Ed25519", &claims, NOW).unwrap_err();
        assert_eq!(error.code(), "invalid_jwt");
        let legacy = check(&policy(true), "aa-auth+jwt", "Ed25519", &claims, NOW).unwrap();
        assert_eq!(legacy.dwk, names::dwk::LEGACY_ISSUER);
    }

    #[test]
    fn a_legacy_policy_marks_an_eddsa_header_as_the_demo_generation() {
        let token = check(&policy(true), "aa-agent+jwt", "EdDSA", &agent_claims(), NOW).unwrap();
        assert_eq!(token.generation, Generation::Legacy);
    }

    #[test]
    fn a_legacy_policy_marks_a_missing_dwk_as_the_demo_generation() {
        let agent = check(
            &policy(true),
            "aa-agent+jwt",
            "Ed25519",
            &without(agent_claims(), "dwk"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            (agent.dwk.as_str(), agent.generation),
            (names::dwk::AGENT, Generation::Legacy)
        );
    }

    #[test]
    fn a_token_is_valid_from_exactly_its_nbf() {
        let mut claims = agent_claims();
        claims["nbf"] = (NOW + 10).into();
        let early = check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW + 9).unwrap_err();
        assert_eq!(early.code(), "invalid_jwt");
        check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW + 10).unwrap();
    }

    #[test]
    fn a_token_may_be_issued_up_to_exactly_the_allowed_skew_ahead() {
        let mut claims = agent_claims();
        claims["iat"] = (NOW + 60).into();
        check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW).unwrap();
        claims["iat"] = (NOW + 61).into();
        let error = check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW).unwrap_err();
        assert_eq!(error.signature_code(), Some(SignatureErrorCode::ClockSkew));
    }

    #[test]
    fn a_legacy_token_without_iat_may_outlive_now_by_at_most_its_kind_s_lifetime_plus_the_skew() {
        let legacy = policy(true);
        for (typ, claims, max) in [
            ("aa-agent+jwt", agent_claims(), legacy.max_agent_lifetime),
            ("aa-auth+jwt", auth_claims(), legacy.max_grant_lifetime),
        ] {
            let bound = max + legacy.max_iat_skew;
            let mut at_bound = without(claims, "iat");
            at_bound["exp"] = (NOW + bound).into();
            let token = check(&legacy, typ, "Ed25519", &at_bound, NOW).unwrap();
            assert_eq!(token.generation, Generation::Legacy, "{typ}");
            let mut beyond = at_bound.clone();
            beyond["exp"] = (NOW + bound + 1).into();
            let error = check(&legacy, typ, "Ed25519", &beyond, NOW).unwrap_err();
            assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidJwt), "{typ}");
            let mut ten_years = at_bound;
            ten_years["exp"] = (NOW + 10 * 365 * 24 * 3600).into();
            let error = check(&legacy, typ, "Ed25519", &ten_years, NOW).unwrap_err();
            assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidJwt), "{typ}");
        }
    }

    #[test]
    fn a_parent_agent_must_be_an_agent_identifier() {
        let mut claims = agent_claims();
        claims["parent_agent"] = "aauth:orchestrator@agent.example".into();
        check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW).unwrap();
        claims["parent_agent"] = "https://agent.example".into();
        let error = check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW).unwrap_err();
        assert_eq!(error.code(), "invalid_jwt");
    }

    #[test]
    fn a_legacy_policy_marks_a_confirmation_key_without_alg_as_the_demo_generation() {
        let mut claims = agent_claims();
        claims["cnf"]["jwk"].as_object_mut().unwrap().remove("alg");
        let token = check(&policy(true), "aa-agent+jwt", "Ed25519", &claims, NOW).unwrap();
        assert_eq!(token.generation, Generation::Legacy);
        assert!(check(&policy(false), "aa-agent+jwt", "Ed25519", &claims, NOW).is_err());
    }

    #[test]
    fn iss_and_ps_must_be_printable_http_urls_of_at_most_2048_bytes() {
        assert!(is_identifier_shaped("https://as.example"));
        assert!(is_identifier_shaped("http://127.0.0.1:8080"));
        let longest = format!("https://{}", "a".repeat(2048 - 8));
        assert!(is_identifier_shaped(&longest));
        for refused in [
            format!("{longest}a"),
            "ftp://as.example".to_owned(),
            "as.example".to_owned(),
            "https://as example".to_owned(),
            "https://as.example\u{7f}".to_owned(),
            "https://as.example/\u{e9}".to_owned(),
        ] {
            assert!(!is_identifier_shaped(&refused), "{refused}");
        }
        let mut claims = auth_claims();
        claims["ps"] = "ps.example".into();
        let error = check(&policy(false), "aa-auth+jwt", "Ed25519", &claims, NOW).unwrap_err();
        assert_eq!(error.detail(), "the token's ps is not a server identifier");
    }

    #[test]
    fn agent_identifier_grammar() {
        assert!(is_agent_identifier("aauth:assistant-v2@agent.example"));
        assert!(is_agent_identifier("aauth:My.Agent+sub@agent.example"));
        assert!(!is_agent_identifier("aauth:My Agent@agent.example"));
        assert!(!is_agent_identifier("https://agent.example"));
        assert!(!is_agent_identifier("aauth:@agent.example"));
    }
}
