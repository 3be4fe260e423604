//! [`TestAuthServer`]: a small access server (draft -11) for tests and the demo.
//!
//! # What it checks
//!
//! Every agent request (`/token`, each poll) goes through this crate's own
//! [`AAuthLayer`](crate::AAuthLayer), configured with the server's identifier as its
//! resource: the auth server verifies agents exactly as a resource does. A `/token` request
//! must be signed; its body is `{"resource_token": "…"}`. The resource token must be an
//! `aa-resource+jwt` signed by its `iss` (keys from `{iss}/.well-known/aauth-resource.json`
//! → `jwks_uri`, or pinned at construction), addressed to this server (`aud`), unexpired,
//! and bound to the key that signed the request (`agent_jkt`, compared in constant time).
//!
//! # What it issues
//!
//! An `aa-auth+jwt` with `dwk` `aauth-access.json`: `aud` = the resource token's `iss`,
//! `scope` = its `scope`, `sub` = the approving person, `cnf.jwk` = the agent's key,
//! lifetime at most one hour, and (draft-hardt-aauth-budgets) the resource token's `budget`
//! with its `unit` and `decimals` unchanged and its `amount` lowered to at most
//! [`TestAuthServerBuilder::budget_amount`] when one is set. Depending on [`Consent`], directly (`200`) or after a
//! deferred `202` whose pending URL the agent polls (see `pending.rs` for the poll rules).
//!
//! # The demo generation
//!
//! Built with [`TestAuthServerBuilder::generation`]`(`[`Generation::Legacy`]`)` it speaks the
//! March 2026 AAuth demo's generation instead: agents may sign with `sig=(scheme=… …)` and
//! base64url signatures (its layer runs [`Profile::Legacy`](crate::Profile::Legacy)); its
//! metadata is `/.well-known/aauth-issuer.json` (`token_endpoint`, `interaction_endpoint`);
//! resource tokens are `resource+jwt` (`EdDSA`, `dwk` optional); the `202` carries
//! `AAuth: require=interaction; code="…"` and echoes `status`, `location`, `require` and
//! `code` in its body; and the auth token is an `auth+jwt` (`EdDSA`) with `iss`, `aud`,
//! `jti`, `cnf.jwk` (with `kid`, without `alg`), `iat`, `scope`, `exp`, `agent` and `sub`.
//!
//! # What it does not do
//!
//! The consent page acts as the configured person without any login or CSRF token, wrong
//! interaction codes are not rate-limited, and pending records are kept in memory until
//! the server is dropped: it is a test double, never an auth server to deploy.

mod pending;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::aauth::AAuth;
use crate::clock::{Clock, SystemClock};
use crate::discovery::admission::IdentifierPolicy;
use crate::discovery::cache::DiscoveryResolver;
use crate::discovery::fetch::ReqwestFetch;
use crate::discovery::resolve::KeyQuery;
use crate::discovery::resolve::KeyResolver;
use crate::discovery::resolve::StaticResolver;
use crate::error::Error;
use crate::jose::{AlgPolicy, Jwk, ResourceKey, UnverifiedJws, b64url, is_opaque_id, parse_json_object};
use crate::names;
use crate::profile::Generation;
use crate::profile::Profile;
use crate::sigkey::{Scheme, SignatureKey};
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;

use super::issuer::legacy_auth_claims;
pub use pending::PendingState;
pub(crate) use pending::normalize_code;
use pending::{ConsentForm, InteractQuery, Store};

/// Longest auth-token lifetime the server issues (draft -11: at most one hour).
const MAX_AUTH_TOKEN_LIFETIME: u64 = 3600;
/// Longest resource-token lifetime accepted: an hour, generous for a test server ([AAuth
/// draft -11, "Resource Token"][draft-11] recommends at most five minutes).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
const MAX_RESOURCE_TOKEN_LIFETIME: u64 = 3600;
/// Allowed clock difference for a resource token's `iat`.
const IAT_SKEW: u64 = 60;

/// How the server decides on a `/token` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consent {
    /// Policy allows direct issuance: `200` with the auth token at once.
    Immediate,
    /// Deferred, but already approved: `202`, and the first poll returns the token.
    AutoApprove,
    /// Deferred until a person approves or denies (the default): through
    /// [`TestAuthServer::approve`] / [`TestAuthServer::deny`] or the consent page at the
    /// interaction URL.
    #[default]
    Person,
}

/// Builds a [`TestAuthServer`].
pub struct TestAuthServerBuilder {
    issuer: String,
    key: ResourceKey,
    clock: Arc<dyn Clock>,
    consent: Consent,
    person: String,
    retry_after: u64,
    pending_lifetime: u64,
    token_lifetime: u64,
    pinned: Option<StaticResolver>,
    resolver: Option<Arc<dyn KeyResolver>>,
    generation: Generation,
    budget_amount: Option<u64>,
}

impl std::fmt::Debug for TestAuthServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAuthServerBuilder")
            .field("issuer", &self.issuer)
            .field("consent", &self.consent)
            .finish_non_exhaustive()
    }
}

impl TestAuthServerBuilder {
    /// The signing key for auth tokens (default: a fresh random key).
    pub fn signing_key(mut self, key: ResourceKey) -> Self {
        self.key = key;
        self
    }

    /// The clock for token times, signature windows, pending expiry and polling intervals
    /// (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The consent mode (default [`Consent::Person`]).
    pub fn consent(mut self, consent: Consent) -> Self {
        self.consent = consent;
        self
    }

    /// The `sub` of the person who approves (default `person-1`).
    pub fn person(mut self, sub: impl Into<String>) -> Self {
        self.person = sub.into();
        self
    }

    /// Seconds an agent must wait between polls, sent as `Retry-After` (default 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = seconds;
        self
    }

    /// Seconds a pending request lives before it answers `408 expired` (default 300).
    pub fn pending_lifetime(mut self, seconds: u64) -> Self {
        self.pending_lifetime = seconds;
        self
    }

    /// Auth-token lifetime in seconds (default and maximum 3600).
    pub fn token_lifetime(mut self, seconds: u64) -> Self {
        self.token_lifetime = seconds.min(MAX_AUTH_TOKEN_LIFETIME);
        self
    }

    /// Pins the key of resource `issuer` instead of discovering it. Repeatable; once a key
    /// is pinned, resources without a pinned key are refused.
    pub fn resource_key(mut self, issuer: &str, key: Jwk) -> Self {
        let pinned = self.pinned.take().unwrap_or_default();
        self.pinned = Some(pinned.with_key(issuer, names::dwk::RESOURCE, key));
        self
    }

    /// The wire generation to speak (default [`Generation::Draft11`]; see the module docs
    /// for the demo generation).
    pub fn generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// Grants at most `amount` of any budget a resource token offers (default: the offer
    /// in full), as a person server sizing its allocation does (draft-hardt-aauth-budgets,
    /// "The Narrowing Chain"); the unit and scale stay the resource's.
    pub fn budget_amount(mut self, amount: u64) -> Self {
        self.budget_amount = Some(amount);
        self
    }

    /// Replaces how resource keys are found (default: discovery at
    /// `{iss}/.well-known/aauth-resource.json`).
    pub fn resource_key_resolver(mut self, resolver: impl KeyResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Builds the server. Fails when the identifier is neither `https://host` nor a
    /// loopback `http://` origin.
    pub fn build(self) -> Result<TestAuthServer, crate::error::ConfigError> {
        let profile = match self.generation {
            Generation::Legacy => Profile::Legacy,
            _ => Profile::Draft11,
        };
        let mut builder = AAuth::builder(&self.issuer)
            .profile(profile)
            .shared_clock(self.clock.clone())
            .accept_tokens([TokenKind::Agent]);
        let loopback = self.issuer.starts_with("http://");
        if loopback {
            // A test server on loopback: agents and resources live on http://127.0.0.1 too.
            builder = builder.dangerous().allow_http_loopback();
        }
        let aauth = builder.build()?;
        let identifiers = if loopback {
            IdentifierPolicy::allowing_http_loopback()
        } else {
            IdentifierPolicy::strict()
        };
        let resource_keys: Arc<dyn KeyResolver> = match (self.resolver, self.pinned) {
            (Some(resolver), _) => resolver,
            (None, Some(pinned)) => Arc::new(pinned),
            (None, None) => {
                let fetch = if loopback {
                    ReqwestFetch::allowing_http_loopback()
                } else {
                    ReqwestFetch::new()
                };
                Arc::new(DiscoveryResolver::new(fetch, identifiers.clone()))
            }
        };
        Ok(TestAuthServer {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                key: self.key,
                clock: self.clock,
                consent: self.consent,
                person: self.person,
                retry_after: self.retry_after,
                pending_lifetime: self.pending_lifetime,
                token_lifetime: self.token_lifetime,
                generation: self.generation,
                budget_amount: self.budget_amount,
                aauth,
                identifiers,
                resource_keys,
                store: Mutex::new(Store::default()),
            }),
        })
    }
}

/// A small access server for tests: see the module docs. Cheap to clone; every clone
/// controls the same pending requests.
#[derive(Clone)]
pub struct TestAuthServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TestAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAuthServer")
            .field("issuer", &self.inner.issuer)
            .field("consent", &self.inner.consent)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    key: ResourceKey,
    clock: Arc<dyn Clock>,
    consent: Consent,
    person: String,
    retry_after: u64,
    pending_lifetime: u64,
    token_lifetime: u64,
    generation: Generation,
    budget_amount: Option<u64>,
    aauth: AAuth,
    identifiers: IdentifierPolicy,
    resource_keys: Arc<dyn KeyResolver>,
    store: Mutex<Store>,
}

/// What a verified resource token asks for.
#[derive(Clone)]
struct Grant {
    resource: String,
    scope: String,
    /// The agent identifier, for the demo generation's `agent` claim: the verified
    /// `jwks_uri` signer, else the resource token's `agent`.
    agent: Option<String>,
    /// The budget offered, narrowed to the server's allocation.
    budget: Option<Value>,
}

impl TestAuthServer {
    /// Starts a server whose identifier is `issuer` (`https://host`, or
    /// `http://127.0.0.1:PORT` for a server on loopback).
    pub fn builder(issuer: impl Into<String>) -> TestAuthServerBuilder {
        TestAuthServerBuilder {
            issuer: issuer.into(),
            key: ResourceKey::generate(),
            clock: Arc::new(SystemClock),
            consent: Consent::default(),
            person: "person-1".to_owned(),
            retry_after: 1,
            pending_lifetime: 300,
            token_lifetime: MAX_AUTH_TOKEN_LIFETIME,
            pinned: None,
            resolver: None,
            generation: Generation::Draft11,
            budget_amount: None,
        }
    }

    /// The server identifier (`iss` of its auth tokens).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The public key auth tokens verify with (pin it in a resource's `StaticResolver`).
    pub fn public_jwk(&self) -> Jwk {
        self.inner.key.public_jwk()
    }

    /// A revocation of the token `jti` (expiring at `exp`) for the resource's revocation
    /// endpoint at `url`: a `POST` of `{"jti","exp"}` signed now by this server under
    /// `Signature-Key` scheme `jwks_uri` (`dwk` `aauth-access.json`), covering
    /// `content-type` and `content-digest`. Send it with any HTTP client.
    pub fn revocation_request(&self, url: &str, jti: &str, exp: u64) -> http::Request<Bytes> {
        let inner = &self.inner;
        crate::testing::agent::revocation_request(
            &inner.key,
            &inner.issuer,
            names::dwk::ACCESS,
            url,
            jti,
            exp,
            inner.clock.now(),
        )
    }

    /// The generation the server speaks.
    pub fn generation(&self) -> Generation {
        self.inner.generation
    }

    /// The metadata document's name: `aauth-access.json`, or `aauth-issuer.json` in the
    /// demo generation.
    pub fn metadata_dwk(&self) -> &'static str {
        match self.inner.generation {
            Generation::Legacy => names::dwk::LEGACY_ISSUER,
            _ => names::dwk::ACCESS,
        }
    }

    /// The metadata document served at `/.well-known/{`[`TestAuthServer::metadata_dwk`]`}`.
    pub fn metadata(&self) -> Value {
        let issuer = &self.inner.issuer;
        let token_member = match self.inner.generation {
            Generation::Legacy => crate::testing::flow::LEGACY_TOKEN_ENDPOINT,
            _ => "auth_token_endpoint",
        };
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            token_member: format!("{issuer}{TOKEN_PATH}"),
            "interaction_endpoint": format!("{issuer}{INTERACT_PATH}"),
        })
    }

    /// The router: metadata, JWKS, `/token`, `/pending/{id}` and the consent page
    /// `/interact`, behind this crate's verifying layer.
    pub fn router(&self) -> Router {
        let metadata = self.metadata();
        let jwks = json!({ "keys": [self.public_jwk().to_json()] });
        Router::new()
            .route(
                &format!("/.well-known/{}", self.metadata_dwk()),
                get(move || std::future::ready(axum::Json(metadata))),
            )
            .route(JWKS_PATH, get(move || std::future::ready(axum::Json(jwks))))
            .route(TOKEN_PATH, post(token_endpoint))
            .route("/pending/{id}", get(poll_endpoint))
            .route(INTERACT_PATH, get(consent_page).post(consent_decision))
            .with_state(self.clone())
            .layer(self.inner.aauth.layer())
    }

    /// Approves the pending request with interaction `code` as the configured person.
    /// Returns whether a pending request took the decision.
    pub fn approve(&self, code: &str) -> bool {
        let sub = self.inner.person.clone();
        self.decide(code, PendingState::Approved { sub })
    }

    /// Denies the pending request with interaction `code`. Returns whether a pending
    /// request took the decision.
    pub fn deny(&self, code: &str) -> bool {
        self.decide(code, PendingState::Denied)
    }

    /// The state of the pending request with interaction `code`, if it exists.
    pub fn pending_state(&self, code: &str) -> Option<PendingState> {
        self.store().state_by_code(code)
    }

    fn decide(&self, code: &str, decision: PendingState) -> bool {
        let now = self.inner.clock.now();
        self.store().decide(code, decision, now)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave a record half-written: every update
        // is a single assignment.
        self.inner.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verifies a resource token for the agent key `thumbprint`.
    async fn verify_resource_token(&self, token: &str, thumbprint: &str) -> Result<Grant, &'static str> {
        let now = self.inner.clock.now();
        let legacy = self.inner.generation == Generation::Legacy;
        let (policy, expected_typ) = match legacy {
            true => (AlgPolicy::Legacy, names::typ::LEGACY_RESOURCE),
            false => (AlgPolicy::Strict, names::typ::RESOURCE),
        };
        let jws = UnverifiedJws::parse(token, policy).map_err(|e| e.detail())?;
        let typ = jws.typ().unwrap_or_default();
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case(expected_typ) {
            return Err("the token is not a resource token");
        }
        let kid = jws.kid().ok_or("the resource token has no kid")?;
        let claims = jws.payload();
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let iss = text("iss").ok_or("the resource token has no iss")?;
        if !self.inner.identifiers.admits(iss) {
            return Err("the resource token's iss is not a server identifier");
        }
        // Before draft-hardt-aauth-protocol-00 resource tokens named no document.
        let dwk_ok = match claims.get("dwk") {
            None => legacy,
            Some(_) => text("dwk") == Some(names::dwk::RESOURCE),
        };
        if !dwk_ok {
            return Err("the resource token's dwk is not aauth-resource.json");
        }
        let aud = match claims.get("aud") {
            Some(Value::String(aud)) => Some(aud.as_str()),
            Some(Value::Array(items)) if items.len() == 1 => items[0].as_str(),
            _ => None,
        };
        if aud != Some(self.inner.issuer.as_str()) {
            return Err("the resource token is addressed to another server");
        }
        let (Some(iat), Some(exp)) = (number("iat"), number("exp")) else {
            return Err("the resource token lacks iat or exp");
        };
        if exp <= now {
            return Err("the resource token has expired");
        }
        if iat > now + IAT_SKEW || exp.saturating_sub(iat) > MAX_RESOURCE_TOKEN_LIFETIME {
            return Err("the resource token's lifetime is not acceptable");
        }
        if !text("jti").is_some_and(is_opaque_id) {
            return Err("the resource token has no jti");
        }
        let scope = text("scope")
            .and_then(Scopes::parse)
            .filter(|s| !s.is_empty())
            .ok_or("the resource token names no valid scope")?;
        let agent_jkt = text("agent_jkt").ok_or("the resource token has no agent_jkt")?;
        if !bool::from(agent_jkt.as_bytes().ct_eq(thumbprint.as_bytes())) {
            return Err("the resource token is bound to another agent key");
        }
        let query = KeyQuery {
            issuer: iss,
            dwk: names::dwk::RESOURCE,
            kid,
        };
        let key = match self.inner.resource_keys.cached(&query) {
            Some(key) => key,
            None => self.inner.resource_keys.resolve(query).await,
        }
        .map_err(|_| "the resource's key could not be found")?;
        jws.verify_with(&key)
            .map_err(|_| "the resource token's signature does not verify")?;
        let budget = match claims.get(names::claim::BUDGET) {
            None => None,
            Some(offer) => {
                let offer = crate::budget::claim::Budget::from_claim(offer)
                    .ok_or("the resource token's budget is malformed")?;
                let amount = self
                    .inner
                    .budget_amount
                    .map_or(offer.amount(), |cap| cap.min(offer.amount()));
                Some(json!({ "amount": amount, "unit": offer.unit(), "decimals": offer.decimals() }))
            }
        };
        Ok(Grant {
            budget,
            resource: iss.to_owned(),
            scope: scope.iter().collect::<Vec<_>>().join(" "),
            agent: text(names::claim::AGENT).map(str::to_owned),
        })
    }

    /// The public key that signed a verified request, as `cnf.jwk` will carry it.
    async fn signer_key(&self, headers: &HeaderMap, verified: &VerifiedRequest) -> Result<Jwk, Error> {
        let key = match (&verified.token, verified.scheme) {
            (Some(token), Scheme::Jwt) => token.claims.cnf.clone(),
            _ => {
                let field = headers
                    .get(names::header::SIGNATURE_KEY)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(Error::invalid_key("Signature-Key is unreadable"))?;
                let shared = &self.inner.aauth.shared;
                let legacy = shared.profile.accepts_legacy();
                match SignatureKey::parse_profiled(field, &verified.label, &shared.schemes, legacy)?.key {
                    SignatureKey::Hwk(jwk) => jwk,
                    SignatureKey::JwksUri { id, dwk, kid } => {
                        let query = KeyQuery {
                            issuer: &id,
                            dwk: &dwk,
                            kid: &kid,
                        };
                        let key = match shared.resolver.cached(&query) {
                            Some(key) => key?,
                            None => shared.resolver.resolve(query).await?,
                        };
                        (*key).clone()
                    }
                    SignatureKey::Jwt { .. } => return Err(Error::invalid_jwt("the token was not verified")),
                }
            }
        };
        if !crate::jose::thumbprints_match(&key.thumbprint(), &verified.key_thumbprint) {
            return Err(Error::invalid_key("the key differs from the one that signed"));
        }
        // Draft -11 wants `alg` on `cnf.jwk`; an `hwk` may have arrived without one.
        Ok(Jwk::from_verifying_key(
            *key.verifying_key(),
            key.kid().map(str::to_owned),
        ))
    }

    fn mint_auth_token(&self, grant: &Grant, sub: &str, agent: &Jwk) -> (String, u64) {
        let now = self.inner.clock.now();
        let lifetime = self.inner.token_lifetime;
        let issuer = &self.inner.issuer;
        if self.inner.generation == Generation::Legacy {
            let agent_id = grant.agent.as_deref().unwrap_or_default();
            let mut claims = legacy_auth_claims(issuer, &grant.resource, agent, agent_id, &grant.scope, now);
            claims["jti"] = random_id().into();
            claims["exp"] = (now + lifetime).into();
            claims["sub"] = sub.into();
            let token = self
                .inner
                .key
                .sign_jwt(names::typ::LEGACY_AUTH, names::alg::EDDSA, &claims);
            return (token, lifetime);
        }
        let claims = json!({
            "iss": issuer,
            "dwk": names::dwk::ACCESS,
            "aud": grant.resource,
            "jti": random_id(),
            "ps": issuer,
            "sub": sub,
            "cnf": { "jwk": agent.to_json() },
            "scope": grant.scope,
            "iat": now,
            "exp": now + lifetime,
        });
        let mut claims = claims;
        if let Some(budget) = &grant.budget {
            claims[names::claim::BUDGET] = budget.clone();
        }
        (
            self.inner.key.sign_jwt(names::typ::AUTH, names::alg::ED25519, &claims),
            lifetime,
        )
    }
}

const JWKS_PATH: &str = "/.well-known/jwks.json";
const TOKEN_PATH: &str = "/token";
const INTERACT_PATH: &str = "/interact";

/// An unguessable identifier: 128 bits from the operating system's CSPRNG.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    b64url(bytes)
}

/// An RFC 9457 problem with the AAuth `error` member.
fn problem(status: StatusCode, error: &'static str, detail: &'static str) -> Response {
    let body = json!({ "error": error, "detail": detail, "status": status.as_u16() });
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unsigned() -> Response {
    Error::invalid_signature("this endpoint needs a signed request").into_response()
}

async fn token_endpoint(
    State(server): State<TestAuthServer>,
    verified: Option<Extension<VerifiedRequest>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(Extension(verified)) = verified else {
        return unsigned();
    };
    let token = parse_json_object(&body).and_then(|body| match body.get("resource_token") {
        Some(Value::String(token)) => Some(token.clone()),
        _ => None,
    });
    let Some(token) = token else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be {\"resource_token\": \"…\"}",
        );
    };
    let grant = match server.verify_resource_token(&token, &verified.key_thumbprint).await {
        Ok(mut grant) => {
            if let Some(signer) = verified.agent() {
                grant.agent = Some(signer.id().to_owned());
            }
            grant
        }
        Err(detail) => return problem(StatusCode::BAD_REQUEST, "invalid_resource_token", detail),
    };
    let agent = match server.signer_key(&headers, &verified).await {
        Ok(agent) => agent,
        Err(error) => return error.into_response(),
    };
    let inner = &server.inner;
    if inner.consent == Consent::Immediate {
        let (token, expires_in) = server.mint_auth_token(&grant, &inner.person, &agent);
        return token_response(&token, expires_in);
    }
    let state = match inner.consent {
        Consent::AutoApprove => PendingState::Approved {
            sub: inner.person.clone(),
        },
        _ => PendingState::Pending,
    };
    let now = inner.clock.now();
    let record = pending::Record::new(agent, grant, state, now, inner.pending_lifetime, inner.retry_after);
    let location = format!("{}/pending/{}", inner.issuer, record.id);
    let code = record.code.clone();
    server.store().insert(record);
    let interaction = match inner.generation {
        Generation::Legacy => Interaction::Legacy { code: &code },
        _ => Interaction::Draft11 {
            url: &format!("{}{INTERACT_PATH}", inner.issuer),
            code: &code,
        },
    };
    pending_response(&location, inner.retry_after, Some(interaction), "pending")
}

/// The `interaction` requirement of a first `202`.
enum Interaction<'a> {
    /// `AAuth-Requirement: requirement=interaction; url="…"; code="…"`.
    Draft11 { url: &'a str, code: &'a str },
    /// `AAuth: require=interaction; code="…"`, echoed in the body.
    Legacy { code: &'a str },
}

/// `200 {"auth_token": …, "expires_in": …}`.
fn token_response(token: &str, expires_in: u64) -> Response {
    let mut response = axum::Json(json!({ "auth_token": token, "expires_in": expires_in })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `202` with `Location`, `Retry-After`, `Cache-Control: no-store` and `{"status": …}`
/// (the demo generation's first `202` also echoes `location`, `require` and `code`).
fn pending_response(
    location: &str,
    retry_after: u64,
    interaction: Option<Interaction<'_>>,
    status: &'static str,
) -> Response {
    let mut body = json!({ "status": status });
    let (header_name, requirement) = match interaction {
        None => (names::header::AAUTH_REQUIREMENT, None),
        Some(Interaction::Draft11 { url, code }) => (
            names::header::AAUTH_REQUIREMENT,
            Some(format!(
                r#"requirement={}; {}="{url}"; {}="{code}""#,
                names::requirement::INTERACTION,
                names::requirement::URL_PARAM,
                names::requirement::CODE_PARAM,
            )),
        ),
        Some(Interaction::Legacy { code }) => {
            body["location"] = location.into();
            body[names::requirement::LEGACY_REQUIRE] = names::requirement::INTERACTION.into();
            body[names::requirement::CODE_PARAM] = code.into();
            (
                names::header::AAUTH_LEGACY,
                Some(format!(
                    r#"{}={}; {}="{code}""#,
                    names::requirement::LEGACY_REQUIRE,
                    names::requirement::INTERACTION,
                    names::requirement::CODE_PARAM,
                )),
            )
        }
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(requirement) = requirement.and_then(|r| HeaderValue::try_from(r).ok()) {
        headers.insert(header_name, requirement);
    }
    response
}

async fn poll_endpoint(
    State(server): State<TestAuthServer>,
    verified: Option<Extension<VerifiedRequest>>,
    Path(id): Path<String>,
) -> Response {
    let Some(Extension(verified)) = verified else {
        return unsigned();
    };
    let now = server.inner.clock.now();
    let outcome = server.store().poll(&id, &verified.key_thumbprint, now);
    match outcome {
        pending::Poll::Unknown => problem(StatusCode::NOT_FOUND, "not_found", "no such pending request"),
        pending::Poll::OtherAgent => problem(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "this pending request belongs to another agent key",
        ),
        pending::Poll::Gone => problem(
            StatusCode::GONE,
            names::poll::INVALID_CODE,
            "this pending request is over",
        ),
        pending::Poll::SlowDown { retry_after } => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                names::poll::SLOW_DOWN,
                "polled faster than Retry-After",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        pending::Poll::Expired => problem(
            StatusCode::REQUEST_TIMEOUT,
            names::poll::EXPIRED,
            "the pending request expired before consent",
        ),
        pending::Poll::Denied => problem(StatusCode::FORBIDDEN, names::poll::DENIED, "the person declined"),
        pending::Poll::Waiting { retry_after, status } => {
            let location = format!("{}/pending/{id}", server.inner.issuer);
            pending_response(&location, retry_after, None, status)
        }
        pending::Poll::Approved { grant, sub, agent } => {
            let (token, expires_in) = server.mint_auth_token(&grant, &sub, &agent);
            token_response(&token, expires_in)
        }
    }
}

async fn consent_page(State(server): State<TestAuthServer>, Query(query): Query<InteractQuery>) -> Response {
    let now = server.inner.clock.now();
    let view = server.store().open(&query.code, now);
    pending::render_consent(&view, &server.inner.person)
}

async fn consent_decision(State(server): State<TestAuthServer>, Form(form): Form<ConsentForm>) -> Response {
    let decided = match form.decision.as_str() {
        "approve" => server.approve(&form.code),
        "deny" => server.deny(&form.code),
        _ => return (StatusCode::BAD_REQUEST, "unknown decision").into_response(),
    };
    pending::render_decision(decided, &form.decision)
}
