//! The guards' judgement: a [`Decision`] turned into a response (a challenge with a
//! freshly minted resource token, a refusal, or nothing), and the requirement guard's
//! policy. Reads the shared state; the vocabulary it judges with lives in the parent.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Request, Response};
use tower_service::Service;

use super::middleware::{BoxedResponse, GuardLayer, GuardPolicy, Verdict, never};
use super::requirement::{Decision, Requirement, RuleContext, jwt_scheme_required, no_person_server};
use crate::challenge::{Challenge, challenge_response, error_response};
use crate::error::Error;
use crate::policy::identity::PersonId;
use crate::resource_token::{Audience, MintRequest, Minter};
use crate::state::{Inspected, Shared};
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;

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
        Decision::Refuse(error) => return Some(error_response(shared.hook(), &error)),
        Decision::NeedAuth(scopes) => match need_auth(shared, &scopes, verified) {
            Ok(challenge) => challenge,
            Err(error) => return Some(error_response(shared.hook(), &error)),
        },
    };
    Some(challenge_response(shared.hook(), &challenge, generation))
}

pub(crate) fn need_auth(
    shared: &Shared,
    scopes: &Scopes,
    verified: Option<&VerifiedRequest>,
) -> Result<Challenge, Error> {
    need_auth_with(shared, scopes, verified, None, None)
}

/// The `auth-token` challenge of a `require_detail` step-up: a resource token carrying the
/// `authorization_details` the route requires (or the identity challenge that comes first).
pub(crate) fn detail_challenge<B: From<Bytes>>(
    shared: &Shared,
    verified: Option<&VerifiedRequest>,
    details: &serde_json::Value,
) -> Response<B> {
    let generation = verified.map_or(shared.profile.default_generation(), |v| v.generation);
    match need_auth_with(shared, &Scopes::default(), verified, Some(details), None) {
        Ok(challenge) => challenge_response(shared.hook(), &challenge, generation),
        Err(error) => error_response(shared.hook(), &error),
    }
}

/// The `auth-token` challenge of a metered route ([`crate::budget`]): a resource token
/// asking for `scopes`, offering `budget` and reporting `consumed` (or the identity
/// challenge that comes first).
pub(crate) fn budget_challenge<B: From<Bytes>>(
    shared: &Shared,
    verified: Option<&VerifiedRequest>,
    scopes: &Scopes,
    budget: &serde_json::Value,
    consumed: Option<&serde_json::Value>,
) -> Response<B> {
    let generation = verified.map_or(shared.profile.default_generation(), |v| v.generation);
    match need_auth_with(shared, scopes, verified, None, Some((budget, consumed))) {
        Ok(challenge) => challenge_response(shared.hook(), &challenge, generation),
        Err(error) => error_response(shared.hook(), &error),
    }
}

fn need_auth_with(
    shared: &Shared,
    scopes: &Scopes,
    verified: Option<&VerifiedRequest>,
    details: Option<&serde_json::Value>,
    budget: Option<(&serde_json::Value, Option<&serde_json::Value>)>,
) -> Result<Challenge, Error> {
    let token = verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
    // A detail or budget step-up is the route's own configuration; `deny_insufficient_scope`
    // is about scopes.
    if details.is_none()
        && budget.is_none()
        && shared.authz.deny_step_up
        && token.is_some_and(|t| t.kind == TokenKind::Auth)
    {
        return Err(Error(crate::error::Kind::Forbidden {
            code: "insufficient_scope",
            detail: "the auth token does not grant every scope this resource requires",
        }));
    }
    let audience = Audience::select(shared.authz.access_server.as_deref(), verified.is_some(), token);
    match (audience, verified) {
        (Audience::Mint { aud, presented }, Some(v)) => {
            // Whatever asked for these scopes (a guard, a rule, a detail step-up), no
            // resource token is minted for more than the agent may use, nor towards a
            // person server whose grant this resource would not honour.
            let detail_types = details.into_iter().flat_map(crate::policy::admit::detail_types);
            shared.ceilings.check(v, scopes.iter().chain(detail_types))?;
            if shared.authz.access_server.is_none() {
                let person = presented.and_then(|t| Some(PersonId::new(aud, t.sub.as_deref()?)));
                shared.consent.check_step_up(person, scopes, details)?;
            }
            crate::policy::admit::bind_for_grant(shared, v);
            let agent = v.agent().map(crate::policy::identity::AgentId::id);
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
                budget: budget.map(|(budget, _)| budget),
                budget_consumed: budget.and_then(|(_, consumed)| consumed),
                account: None,
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
    cx: &RuleContext<'_>,
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
        Err(error) => return Some(error_response(shared.hook(), &error)),
    };
    if let Some(verified) = verified
        && let Err(error) = check_ceilings(shared, requirement, verified)
    {
        return Some(error_response(shared.hook(), &error));
    }
    None
}

/// What reads the layer's result from a request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reader {
    Guard,
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
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
        Reader::Guard => crate::error::GUARD_WITHOUT_LAYER,
        Reader::Extractor => crate::error::EXTRACTOR_WITHOUT_LAYER,
    };
    crate::diagnose::log_without_layer_once(detail);
    Error(crate::error::Kind::Misconfigured { detail })
}

/// Per-agent scope ceilings ([`crate::policy::ceiling::ScopeCeilings`]) before anything else: a
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

/// The rule of the requirement guards ([`AAuth::require_scopes`](crate::AAuth::require_scopes) and friends): the
/// table above, as a policy of the [`GuardLayer`](crate::guard::GuardLayer).
#[derive(Clone, Debug)]
pub struct RequirementPolicy {
    pub(crate) shared: Arc<Shared>,
    pub(crate) requirement: Arc<Requirement>,
}

impl GuardLayer {
    /// A guard for `requirement` ([`AAuth::require`](crate::AAuth::require)).
    pub(crate) fn new(shared: Arc<Shared>, requirement: Requirement) -> Self {
        GuardLayer {
            policy: RequirementPolicy {
                shared,
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
        if self.shared.is_public_path(request) {
            return Verdict::Allow;
        }
        match check(&self.shared, &self.requirement, &RuleContext::of_parts(request)) {
            None => Verdict::Allow,
            Some(response) => Verdict::Answer(response),
        }
    }

    fn hold(&self, hold: Infallible, _: &mut S, _: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        never(hold)
    }
}
