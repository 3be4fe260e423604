//! An issuer that mints agent, person and auth tokens with its own key.

use serde_json::{Value, json};

use crate::jose::{Jwk, ResourceKey};
use crate::names;

/// An issuer (agent provider, person server, access server) that mints tokens with its
/// own key, for tests.
#[derive(Debug, Clone)]
pub struct TestIssuer {
    /// The issuer identifier.
    pub issuer: String,
    key: ResourceKey,
}

impl TestIssuer {
    /// An issuer with a deterministic key whose `kid` is `kid`.
    pub fn new(issuer: impl Into<String>, seed: [u8; 32], kid: &str) -> Self {
        TestIssuer {
            issuer: issuer.into(),
            key: ResourceKey::from_seed(seed).with_kid(kid),
        }
    }

    /// The issuer's public key.
    pub fn public_jwk(&self) -> Jwk {
        self.key.public_jwk()
    }

    /// The issuer's JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk().to_json()] })
    }

    /// The issuer's metadata document for `dwk` (`issuer`, `jwks_uri`).
    pub fn metadata(&self) -> Value {
        json!({ "issuer": self.issuer, "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer) })
    }

    /// The signing key.
    pub fn key(&self) -> &ResourceKey {
        &self.key
    }

    /// A revocation of the token `jti` (expiring at `exp`) for the resource's revocation
    /// endpoint at `url`: a `POST` of `{"jti","exp"}` signed by this issuer under
    /// `Signature-Key` scheme `jwks_uri` (`dwk` names its metadata document, e.g.
    /// `aauth-person.json`), covering `content-type` and `content-digest`, created at
    /// `created`.
    pub fn revocation_request(
        &self,
        url: &str,
        dwk: &str,
        jti: &str,
        exp: u64,
        created: u64,
    ) -> http::Request<bytes::Bytes> {
        super::agent::revocation_request(&self.key, &self.issuer, dwk, url, jti, exp, created)
    }

    /// Signs `claims` as a token of `typ` with `alg` `Ed25519`.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.key.sign_jwt(typ, names::alg::ED25519, claims)
    }

    /// An `aa-auth+jwt` for `resource`, bound to `agent`, granting `scope`, valid from
    /// `now` for an hour; issued as an access server (`dwk` `aauth-access.json`).
    pub fn auth_token(&self, resource: &str, agent: &Jwk, scope: &str, now: u64) -> String {
        self.sign(names::typ::AUTH, &self.auth_claims(resource, agent, scope, now))
    }

    /// The claims [`TestIssuer::auth_token`] signs, to modify before signing.
    pub fn auth_claims(&self, resource: &str, agent: &Jwk, scope: &str, now: u64) -> Value {
        json!({
            "iss": self.issuer,
            "dwk": names::dwk::ACCESS,
            "aud": resource,
            "jti": format!("at-{}", crate::jose::b64url(agent.thumbprint().as_bytes()).get(..12).unwrap_or_default()),
            "ps": self.issuer,
            "sub": "user-1",
            "cnf": { "jwk": agent.to_json() },
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// An `aa-agent+jwt` for agent `sub`, bound to `agent`, valid from `now` for an hour.
    pub fn agent_token(&self, sub: &str, agent: &Jwk, now: u64) -> String {
        self.sign(
            names::typ::AGENT,
            &json!({
                "iss": self.issuer,
                "dwk": names::dwk::AGENT,
                "sub": sub,
                "jti": format!("agt-{now}"),
                "cnf": { "jwk": agent.to_json() },
                "iat": now,
                "exp": now + 3600,
            }),
        )
    }

    /// A demo-generation auth token, as the March 2026 AAuth demo issued it: `typ` `auth+jwt`,
    /// `alg` `EdDSA`, no `dwk`, `cnf.jwk` without `alg`, an `agent` claim naming the agent
    /// provider `agent`, for `resource`, granting `scope`, valid from `now` for an hour.
    /// Accepted only under the legacy profiles, from a configured auth server whose key
    /// is published under `aauth-issuer.json`.
    pub fn legacy_auth_token(&self, resource: &str, agent_key: &Jwk, agent: &str, scope: &str, now: u64) -> String {
        self.key.sign_jwt(
            names::typ::LEGACY_AUTH,
            names::alg::EDDSA,
            &self.legacy_auth_claims(resource, agent_key, agent, scope, now),
        )
    }

    /// The claims [`TestIssuer::legacy_auth_token`] signs, to modify before signing with
    /// [`TestIssuer::sign_with_alg`].
    pub fn legacy_auth_claims(&self, resource: &str, agent_key: &Jwk, agent: &str, scope: &str, now: u64) -> Value {
        legacy_auth_claims(&self.issuer, resource, agent_key, agent, scope, now)
    }

    /// Signs `claims` as a token of `typ` with the given JOSE `alg` spelling
    /// (`Ed25519`, or the demo generation's `EdDSA`).
    pub fn sign_with_alg(&self, typ: &str, alg: &str, claims: &Value) -> String {
        self.key.sign_jwt(typ, alg, claims)
    }

    /// An `aa-person+jwt` for `resource`, bound to `agent`, valid from `now` for an hour.
    pub fn person_token(&self, resource: &str, agent: &Jwk, now: u64) -> String {
        self.sign(
            names::typ::PERSON,
            &json!({
                "iss": self.issuer,
                "dwk": names::dwk::PERSON,
                "aud": resource,
                "sub": "person-1",
                "jti": format!("pt-{now}"),
                "cnf": { "jwk": agent.to_json() },
                "iat": now,
                "exp": now + 3600,
            }),
        )
    }
}

/// The claims of a demo-generation auth token, as the March 2026 demo's auth server issued
/// them (`iss`, `aud`, `jti`, `cnf.jwk`, `iat`, `scope`, `exp`, `agent`): `cnf.jwk` keeps its
/// `kid` and drops `alg`, `agent` names the agent, valid from `now` for an hour.
pub(crate) fn legacy_auth_claims(
    issuer: &str,
    resource: &str,
    agent_key: &Jwk,
    agent: &str,
    scope: &str,
    now: u64,
) -> Value {
    let mut jwk = agent_key.to_json();
    if let Some(object) = jwk.as_object_mut() {
        object.remove("alg");
    }
    json!({
        "iss": issuer,
        "aud": resource,
        "jti": format!("legacy-at-{now}"),
        "cnf": { "jwk": jwk },
        "iat": now,
        "scope": scope,
        "exp": now + 3600,
        "agent": agent,
    })
}
