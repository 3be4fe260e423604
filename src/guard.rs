//! Route guards: the layer verifies, guards decide.
//!
//! The table follows the requirement responses of [AAuth draft -11, "Resource
//! Access"][draft-11]; where the draft leaves a choice, the table shows this crate's.
//!
//! A guard reads the [`VerifiedRequest`] the [`AAuthLayer`](crate::AAuthLayer) inserted,
//! evaluates a [`Requirement`] to a [`Decision`], and either calls the route or answers:
//!
//! | requirement → / request ↓ | [`Requirement::Agent`] | [`Requirement::Person`] | [`Requirement::Scopes`] |
//! |---|---|---|---|
//! | unsigned | 401 `agent-token` | 401 `person-token` | 401 `person-token` (four-party: `agent-token`) |
//! | `hwk` | 401 `unsupported_scheme` + `Accept-Signature-Scheme: jwt` | same | same (four-party: `auth-token` challenge) |
//! | `jwks_uri` signer | serve | 401 `unsupported_scheme` | as `hwk` |
//! | agent token | serve | 401 `person-token` (403 if it names no `ps`) | same (four-party: `auth-token` challenge) |
//! | person token | 401 `agent-token` | serve | 401 `auth-token; resource-token=…` |
//! | auth token, scopes ⊇ S | 401 `agent-token` | serve | serve |
//! | auth token, scopes ⊉ S | 401 `agent-token` | serve | 401 `auth-token` step-up (or 403 `insufficient_scope`) |
//! | [`Decision::Refuse`] by a rule | 403, no `Signature-Error` | same | same |
//!
//! "Four-party" means an access server is configured
//! ([`AAuthBuilder::auth_server`](crate::AAuthBuilder::auth_server)): resource tokens then
//! name it as `aud`, and any verified signature can get one (the flow of the AAuth demo
//! that the test kit's `testing::demo` reproduces).
//! Requests the layer refused never reach a guard (bad signatures, tokens failing their
//! claim rules, revoked tokens).
//!
//! [`Requirement::Scopes`] has **all-of** semantics: every listed scope must be granted by
//! the one auth token the request presents
//! ([RFC 6749 §3.3](https://www.rfc-editor.org/rfc/rfc6749#section-3.3), exact
//! case-sensitive match).
//! Stacking guards also means all-of. The step-up resource token asks for the route's
//! whole scope set, not only the missing part, because the agent will present a single
//! auth token next time.
//!
//! # Extending
//!
//! New requirement kinds are additive: implement [`Rule`] (or pass a closure to
//! [`Requirement::rule`]) and combine with [`Requirement::All`]. A rule sees the verified
//! request and the request head ([`Context`]) and returns a [`Decision`]; asking for
//! scopes ([`Decision::NeedAuth`]) reuses the minting and audience rules here.
//!
//! If the layer is missing (no [`VerifiedRequest`] and no trace of the layer), the guard
//! answers `500` and logs why, once per process at error level: a guard never passes a
//! request it could not judge. In debug builds (`debug_assertions`) the `500`'s problem
//! `detail` explains the fix, including axum's rule that `Router::layer` wraps only the
//! routes added before it; release builds answer the fixed `internal server error`.
//!
//! Guards belong on routes (`route_layer`). A requirement guard applied to a whole router
//! with `Router::layer` judges every request, `/health` and unknown paths included, except
//! the paths the layer's default requirement also leaves public: the resource metadata
//! (`/.well-known/aauth-resource.json`) and its JWKS (`/.well-known/jwks.json`), which
//! auth servers must be able to fetch, and the pending URLs of deferred routes.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod middleware;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use tower_service::Service;

use middleware::{BoxedResponse, GuardPolicy, Verdict, never};
pub use middleware::{Guard, GuardFuture, GuardLayer};

use crate::challenge::{Challenge, challenge_response, error_response};
use crate::config::{AAuth, Shared};
use crate::error::{Error, SignatureErrorCode};
use crate::layer::Inspected;
use crate::policy::PersonId;
use crate::resource_token::{Audience, MintRequest, Minter};
use crate::sigkey::Scheme;
use crate::token::{Scopes, TokenKind};
use crate::verifier::VerifiedRequest;

/// What a route requires. `#[non_exhaustive]`: new kinds arrive as variants or [`Rule`]s.
#[derive(Clone)]
#[non_exhaustive]
pub enum Requirement {
    /// Any verified signature, pseudonymous `hwk` included.
    Signature,
    /// An identified agent: an agent token, or a `jwks_uri` signer.
    Agent,
    /// The person: a person token or an auth token.
    Person,
    /// An auth token granting every one of these scopes.
    Scopes(Scopes),
    /// Every requirement, in order; the first refusal wins, scope needs are merged.
    All(Arc<[Requirement]>),
    /// A custom rule.
    Rule(Arc<dyn Rule>),
}

impl std::fmt::Debug for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Signature => f.write_str("Signature"),
            Requirement::Agent => f.write_str("Agent"),
            Requirement::Person => f.write_str("Person"),
            Requirement::Scopes(scopes) => f.debug_tuple("Scopes").field(scopes).finish(),
            Requirement::All(all) => f.debug_tuple("All").field(all).finish(),
            Requirement::Rule(_) => f.write_str("Rule(..)"),
        }
    }
}

impl Requirement {
    /// An auth token granting all of `scopes` (trusted configuration values).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Requirement::Scopes(Scopes::from_iter_unchecked(scopes))
    }

    /// A custom rule from a closure.
    pub fn rule(rule: impl Fn(&Context<'_>) -> Decision + Send + Sync + 'static) -> Self {
        Requirement::Rule(Arc::new(rule))
    }

    /// Evaluates the requirement (no I/O, no signing).
    pub fn evaluate(&self, cx: &Context<'_>) -> Decision {
        let token = cx.verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
        match self {
            Requirement::Signature => match cx.verified {
                Some(_) => Decision::Allow,
                None => Decision::NeedAgent,
            },
            Requirement::Agent => match (cx.verified, token.map(|t| t.kind)) {
                (None, _) => Decision::NeedAgent,
                (Some(_), Some(TokenKind::Agent)) => Decision::Allow,
                (Some(_), Some(_)) => Decision::NeedAgent,
                (Some(v), None) if v.scheme == Scheme::JwksUri => Decision::Allow,
                (Some(_), None) => Decision::Refuse(jwt_scheme_required()),
            },
            Requirement::Person => match (cx.verified, token) {
                (None, _) => Decision::NeedPerson,
                (Some(_), Some(t)) if matches!(t.kind, TokenKind::Person | TokenKind::Auth) => Decision::Allow,
                (Some(_), Some(t)) if t.ps.is_none() => Decision::Refuse(no_person_server()),
                (Some(_), Some(_)) => Decision::NeedPerson,
                (Some(_), None) => Decision::Refuse(jwt_scheme_required()),
            },
            Requirement::Scopes(required) => match token {
                Some(t) if t.kind == TokenKind::Auth && t.scope.contains_all(required) => Decision::Allow,
                _ => Decision::NeedAuth(required.clone()),
            },
            Requirement::All(all) => {
                let mut needed: Option<Scopes> = None;
                for requirement in all.iter() {
                    match requirement.evaluate(cx) {
                        Decision::Allow => {}
                        Decision::NeedAuth(scopes) => {
                            needed = Some(match needed {
                                None => scopes,
                                Some(before) => Scopes::from_iter_unchecked(before.iter().chain(scopes.iter())),
                            });
                        }
                        other => return other,
                    }
                }
                needed.map_or(Decision::Allow, Decision::NeedAuth)
            }
            Requirement::Rule(rule) => rule.check(cx),
        }
    }
}

/// A custom requirement.
///
/// Scopes a rule asks for ([`Decision::NeedAuth`]) end up in a resource token the
/// resource signs: take them from configuration, or from components the signature covers
/// ([`VerifiedRequest::covers`]), never from an unsigned part of the request.
pub trait Rule: Send + Sync + 'static {
    /// Decides on one request. Runs on every request to the guarded route: keep it cheap
    /// and free of I/O.
    fn check(&self, cx: &Context<'_>) -> Decision;
}

impl<F: Fn(&Context<'_>) -> Decision + Send + Sync + 'static> Rule for F {
    fn check(&self, cx: &Context<'_>) -> Decision {
        self(cx)
    }
}

/// What a requirement sees.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Context<'a> {
    /// The verified request, `None` when it was unsigned.
    pub verified: Option<&'a VerifiedRequest>,
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions.
    pub extensions: &'a Extensions,
}

impl<'a> Context<'a> {
    /// What a requirement sees of `request`.
    pub(crate) fn of_request<B>(request: &'a Request<B>) -> Self {
        let extensions = request.extensions();
        Context {
            verified: extensions.get::<VerifiedRequest>(),
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions,
        }
    }

    /// What a requirement sees of a request head.
    pub(crate) fn of_parts(parts: &'a Parts) -> Self {
        Context {
            verified: parts.extensions.get::<VerifiedRequest>(),
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// A requirement's verdict.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Decision {
    /// Serve.
    Allow,
    /// 401 `requirement=agent-token`.
    NeedAgent,
    /// 401 `requirement=person-token`.
    NeedPerson,
    /// An auth token granting these scopes is needed: 401 `auth-token` with a resource
    /// token when the resource may mint one, else the identity challenge that comes first.
    NeedAuth(Scopes),
    /// Refuse with this error: [`Error::Forbidden`] for a policy denial (`403`, never a
    /// `Signature-Error`), or a signature-level refusal.
    Refuse(Error),
}

fn jwt_scheme_required() -> Error {
    Error::Signature {
        code: SignatureErrorCode::UnsupportedScheme,
        detail: "this resource needs the agent to sign with a token (the jwt scheme)",
        required_input: None,
        accept: Some(HeaderValue::from_static(crate::wire::scheme::JWT)),
    }
}

fn no_person_server() -> Error {
    Error::Forbidden {
        code: "no_person_server",
        detail: "the agent token names no person server, so no person token can be obtained",
    }
}

/// Turns a decision into `None` (serve) or the response.
pub(crate) fn respond<B: From<Bytes>>(
    shared: &Shared,
    decision: Decision,
    verified: Option<&VerifiedRequest>,
) -> Option<Response<B>> {
    let generation = verified.map_or(shared.profile.default_generation(), |v| v.generation);
    let challenge = match decision {
        Decision::Allow => return None,
        Decision::NeedAgent => Challenge::AgentToken,
        Decision::NeedPerson => Challenge::PersonToken,
        Decision::Refuse(error) => return Some(error_response(shared, &error)),
        Decision::NeedAuth(scopes) => match need_auth(shared, &scopes, verified) {
            Ok(challenge) => challenge,
            Err(error) => return Some(error_response(shared, &error)),
        },
    };
    Some(challenge_response(shared, &challenge, generation))
}

pub(crate) fn need_auth(
    shared: &Shared,
    scopes: &Scopes,
    verified: Option<&VerifiedRequest>,
) -> Result<Challenge, Error> {
    need_auth_with(shared, scopes, verified, None)
}

/// The `auth-token` challenge of a `require_detail` step-up: a resource token carrying the
/// `authorization_details` the route requires (or the identity challenge that comes first).
pub(crate) fn detail_challenge<B: From<Bytes>>(
    shared: &Shared,
    verified: Option<&VerifiedRequest>,
    details: &serde_json::Value,
) -> Response<B> {
    let generation = verified.map_or(shared.profile.default_generation(), |v| v.generation);
    match need_auth_with(shared, &Scopes::default(), verified, Some(details)) {
        Ok(challenge) => challenge_response(shared, &challenge, generation),
        Err(error) => error_response(shared, &error),
    }
}

fn need_auth_with(
    shared: &Shared,
    scopes: &Scopes,
    verified: Option<&VerifiedRequest>,
    details: Option<&serde_json::Value>,
) -> Result<Challenge, Error> {
    let token = verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
    // A detail step-up is the route's own configuration; `deny_insufficient_scope` is about scopes.
    if details.is_none() && shared.authz.deny_step_up && token.is_some_and(|t| t.kind == TokenKind::Auth) {
        return Err(Error::Forbidden {
            code: "insufficient_scope",
            detail: "the auth token does not grant every scope this resource requires",
        });
    }
    let audience = Audience::select(shared.authz.access_server.as_deref(), verified.is_some(), token);
    match (audience, verified) {
        (Audience::Mint { aud, presented }, Some(v)) => {
            // Whatever asked for these scopes (a guard, a rule, a detail step-up), no
            // resource token is minted for more than the agent may use, nor towards a
            // person server whose grant this resource would not honour.
            let detail_types = details.into_iter().flat_map(crate::policy::detail_types);
            shared.ceilings.check(v, scopes.iter().chain(detail_types))?;
            if shared.authz.access_server.is_none() {
                let person = presented.and_then(|t| Some(PersonId::new(aud, t.sub.as_deref()?)));
                shared.consent.check_step_up(person, scopes, details)?;
            }
            crate::policy::bind_for_grant(shared, v);
            let agent = v.agent().map(crate::policy::AgentId::id);
            let minter = Minter {
                issuer: &shared.resource,
                lifetime: shared.authz.lifetime,
                keys: &shared.authz.keys,
            };
            let request = MintRequest {
                aud,
                agent_jkt: &v.key_thumbprint,
                scope: scopes,
                presented,
                agent,
                generation: v.generation,
                authorization_details: details,
            };
            let resource_token = minter.mint(&request, shared.clock.now());
            Ok(Challenge::AuthToken {
                resource_token,
                audience: aud.to_owned(),
            })
        }
        (Audience::NeedSignature, _) | (Audience::Mint { .. }, None) => Ok(Challenge::AgentToken),
        (Audience::NeedPersonToken, None) => Ok(Challenge::PersonToken),
        (Audience::NeedPersonToken, Some(_)) => match token {
            None => Err(jwt_scheme_required()),
            Some(t) if t.kind == TokenKind::Agent && t.ps.is_none() => Err(no_person_server()),
            Some(_) => Ok(Challenge::PersonToken),
        },
    }
}

/// Evaluates `requirement` against a request that went through the layer.
pub(crate) fn check<ResBody: From<Bytes>>(
    shared: &Shared,
    requirement: &Requirement,
    cx: &Context<'_>,
) -> Option<Response<ResBody>> {
    if let Some(response) = precheck(shared, requirement, cx.extensions) {
        return Some(response);
    }
    respond(shared, requirement.evaluate(cx), cx.verified)
}

/// What every guard checks before evaluating its requirement: that the layer ran, and the
/// scope ceilings.
pub(crate) fn precheck<ResBody: From<Bytes>>(
    shared: &Shared,
    requirement: &Requirement,
    extensions: &Extensions,
) -> Option<Response<ResBody>> {
    let verified = match layer_verdict(extensions, Reader::Guard) {
        Ok(verified) => verified,
        Err(error) => return Some(error_response(shared, &error)),
    };
    if let Some(verified) = verified
        && let Err(error) = check_ceilings(shared, requirement, verified)
    {
        return Some(error_response(shared, &error));
    }
    None
}

/// What reads the layer's result from a request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reader {
    Guard,
    Extractor,
}

/// The layer's result for a request: the verified request, or `None` for an unsigned one
/// it let through. A request the layer never saw is a `500` ([`without_layer`]): without
/// the layer a guard or extractor cannot tell an unsigned request from a forged one.
pub(crate) fn layer_verdict(extensions: &Extensions, reader: Reader) -> Result<Option<&VerifiedRequest>, Error> {
    match extensions.get::<VerifiedRequest>() {
        Some(verified) => Ok(Some(verified)),
        None if extensions.get::<Inspected>().is_some() => Ok(None),
        None => Err(without_layer(reader)),
    }
}

/// The `500` for a guard or extractor that ran without the layer, logged once per process
/// for the operator, who has a router to fix (the explanation: `crate::diagnose`).
pub(crate) fn without_layer(reader: Reader) -> Error {
    let detail = match reader {
        Reader::Guard => crate::diagnose::GUARD_WITHOUT_LAYER,
        Reader::Extractor => crate::diagnose::EXTRACTOR_WITHOUT_LAYER,
    };
    crate::diagnose::log_without_layer_once(detail);
    Error::Misconfigured { detail }
}

/// Per-agent scope ceilings ([`crate::policy::ScopeCeilings`]) before anything else: a
/// scope above the agent's ceiling is `403 scope_above_ceiling` whatever a token grants,
/// and no challenge is sent for it, since no consent raises a ceiling.
fn check_ceilings(shared: &Shared, requirement: &Requirement, verified: &VerifiedRequest) -> Result<(), Error> {
    let ceilings = shared.ceilings.snapshot();
    if ceilings.is_empty() {
        return Ok(());
    }
    let mut scopes = Vec::new();
    required_scopes(requirement, &mut scopes);
    ceilings.check(verified, scopes)
}

fn required_scopes<'r>(requirement: &'r Requirement, out: &mut Vec<&'r str>) {
    match requirement {
        Requirement::Scopes(scopes) => out.extend(scopes.iter()),
        Requirement::All(all) => all.iter().for_each(|r| required_scopes(r, out)),
        _ => {}
    }
}

/// The rule of the requirement guards ([`AAuth::require_scopes`] and friends): the
/// table above, as a policy of the [`GuardLayer`].
#[derive(Clone, Debug)]
pub struct RequirementPolicy {
    pub(crate) aauth: AAuth,
    pub(crate) requirement: Arc<Requirement>,
}

impl GuardLayer {
    /// A guard for `requirement`.
    pub fn new(aauth: AAuth, requirement: Requirement) -> Self {
        GuardLayer {
            policy: RequirementPolicy {
                aauth,
                requirement: Arc::new(requirement),
            },
        }
    }
}

impl<S, ReqBody, ResBody> GuardPolicy<S, ReqBody, ResBody> for RequirementPolicy
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Hold = Infallible;

    fn check(&self, request: &Parts) -> Verdict<ResBody, Infallible> {
        // Applied router-wide (`Router::layer`), a guard still leaves the documents the
        // layer's default requirement leaves public: the metadata, the JWKS, pending URLs.
        if crate::layer::is_public_path(&self.aauth.shared, request) {
            return Verdict::Allow;
        }
        match check(&self.aauth.shared, &self.requirement, &Context::of_parts(request)) {
            None => Verdict::Allow,
            Some(response) => Verdict::Answer(response),
        }
    }

    fn hold(&self, hold: Infallible, _: &mut S, _: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        never(hold)
    }
}
