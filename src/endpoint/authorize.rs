//! The authorization endpoint ([AAuth draft -11, "Authorization Endpoint"][draft-11]): an
//! agent asks for scopes before calling the API, and gets a resource token for its person
//! server (or access server) to turn into an auth token.
//!
//! * The request is a signed `POST` presenting a **person token** in `Signature-Key`
//!   (scheme `jwt`), covering `content-digest`: without a person token, `401
//!   AAuth-Requirement: requirement=person-token`; without `content-digest`, `401
//!   invalid_input`. A person token the layer refused (bad, expired, revoked) never gets
//!   here: it is the layer's `401` with `Signature-Error`, so a revoked person token is
//!   never named in a resource token.
//! * The body is JSON `{"scope": "…", "account": "…"}` (`account` optional; other members
//!   are ignored): a body that is not, or a scope that is not scope tokens, is `400
//!   invalid_request`; a scope the resource does not declare is `400 invalid_scope`; an
//!   account the person does not hold (the configured [`AccountDecision`]) is `400
//!   invalid_account`. A scope above the agent's ceiling is `403 scope_above_ceiling`,
//!   as at a guard.
//! * The answer is `200 {"resource_token": "…"}`: `aud` is the access server when one is
//!   configured, else the person token's issuer; `ps`, `sub`, `presented_jti`,
//!   `mission_s256` and `tenant` are copied from the person token, `agent_jkt` is the
//!   signing key's thumbprint, `scope` the requested scopes and `account` the echo of a
//!   held account.
//! * When the resource answers [`AccountDecision::NeedsInteraction`], the person is handed
//!   over to the resource's own interaction ([AAuth draft -11, "Interaction"][draft-11]):
//!   `202` with `requirement=interaction` and the pending URL the agent polls, the same
//!   resource-managed interaction a session guard starts; once the person approved, the
//!   poll's `200` carries the session (`AAuth-Access`).
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use std::sync::Arc;

use super::{Answer, VerifiedBody, is_json, is_text, json_response, problem_response};
use crate::challenge::{Challenge, challenge_response, error_response};
use crate::error::Error;
use crate::policy::AccountDecision;
use crate::policy::identity::PersonId;
use crate::resource_token::{Audience, MintRequest, Minter};
use crate::session::interaction::start_interaction;
use crate::state::Shared;
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;

/// Longest `account` accepted.
const MAX_ACCOUNT_BYTES: usize = 255;

/// What the agent asked for.
pub(crate) struct Asked {
    pub(crate) scope: Scopes,
    pub(crate) account: Option<String>,
}

pub(crate) fn answer<B>(shared: &Arc<Shared>, request: &Request<B>) -> Answer {
    match decide(shared, request) {
        Decided::Answer(response) => Answer::Now(response),
        Decided::Interaction(verified, asked) => {
            let shared = shared.clone();
            Answer::Later(Box::pin(async move {
                let scopes: Vec<String> = asked.scope.iter().map(str::to_owned).collect();
                start_interaction(&shared, &verified, &scopes, asked.account.as_deref()).await
            }))
        }
    }
}

/// What the checks decided: an answer, or the person's hand-over to the resource's own
/// interaction.
enum Decided {
    Answer(Response<Bytes>),
    Interaction(VerifiedRequest, Asked),
}

impl From<Response<Bytes>> for Decided {
    fn from(response: Response<Bytes>) -> Self {
        Decided::Answer(response)
    }
}

fn decide<B>(shared: &Shared, request: &Request<B>) -> Decided {
    let verified = request.extensions().get::<VerifiedRequest>();
    let person_token = verified
        .and_then(|v| v.token.as_ref())
        .filter(|t| t.claims.kind == TokenKind::Person);
    let (Some(verified), Some(person_token)) = (verified, person_token) else {
        let generation = verified.map_or(shared.profile.default_generation(), |v| v.generation);
        return challenge_response(shared.hook(), &Challenge::PersonToken, generation).into();
    };
    let body = request.extensions().get::<VerifiedBody>();
    let (true, Some(VerifiedBody(body))) = (verified.covers("content-digest"), body) else {
        let mut required = shared.required.clone();
        if !required.iter().any(|c| c == "content-digest") {
            required.push("content-digest".to_owned());
        }
        return error_response(shared.hook(), &Error::invalid_input(required)).into();
    };
    let Some(asked) = parse(request, body) else {
        return problem_response(
            shared,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not {\"scope\": scopes, \"account\"?: string} in JSON",
        )
        .into();
    };
    let declared = |scope: &str| shared.authz.scopes.iter().any(|(name, _)| name == scope);
    if !asked.scope.iter().all(declared) {
        return problem_response(
            shared,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a requested scope is not one this resource defines",
        )
        .into();
    }
    let claims = &person_token.claims;
    if let Some(account) = &asked.account {
        let Some(sub) = claims.sub.as_deref() else {
            return invalid_account(shared).into();
        };
        let person = PersonId::new(claims.iss.as_str(), sub);
        let decision = shared
            .endpoints
            .authorization
            .as_ref()
            .map_or(AccountDecision::NotHeld, |(_, accounts)| accounts(&person, account));
        match decision {
            AccountDecision::Holds => {}
            AccountDecision::NotHeld => return invalid_account(shared).into(),
            AccountDecision::NeedsInteraction => return Decided::Interaction(verified.clone(), asked),
        }
    }
    match mint(shared, verified, &asked) {
        Ok(token) => {
            let body = serde_json::json!({ "resource_token": token }).to_string();
            json_response(StatusCode::OK, Bytes::from(body)).into()
        }
        Err(error) => error_response(shared.hook(), &error).into(),
    }
}

/// `{"scope": scopes, "account"?: text}` in JSON.
fn parse<B>(request: &Request<B>, body: &Bytes) -> Option<Asked> {
    if !is_json(request) {
        return None;
    }
    let object = crate::jose::parse_json_object(body)?;
    let scope = Scopes::parse(object.get("scope")?.as_str()?).filter(|scope| !scope.is_empty())?;
    let account = match object.get("account") {
        None => None,
        Some(account) => Some(account.as_str().filter(|a| is_text(a, MAX_ACCOUNT_BYTES))?.to_owned()),
    };
    Some(Asked { scope, account })
}

fn invalid_account(shared: &Shared) -> Response<Bytes> {
    problem_response(
        shared,
        StatusCode::BAD_REQUEST,
        "invalid_account",
        "the person does not hold the requested account",
    )
}

/// The resource token for `asked`, after the checks a guard's challenge makes.
fn mint(shared: &Shared, verified: &VerifiedRequest, asked: &Asked) -> Result<String, Error> {
    let token = verified.token.as_deref().map(|t| &t.claims);
    let Audience::Mint { aud, presented } = Audience::select(shared.authz.access_server.as_deref(), true, token) else {
        return Err(Error::invalid_jwt("the request presents no person token"));
    };
    shared.ceilings.check(verified, asked.scope.iter())?;
    if shared.authz.access_server.is_none() {
        let person = presented.and_then(|t| Some(PersonId::new(aud, t.sub.as_deref()?)));
        shared.consent.check_step_up(person, &asked.scope, None)?;
    }
    crate::policy::admit::bind_for_grant(shared, verified);
    let minter = Minter {
        issuer: &shared.resource,
        lifetime: shared.authz.lifetime,
        keys: &shared.authz.keys,
    };
    let request = MintRequest {
        aud,
        agent_jkt: &verified.key_thumbprint,
        scope: &asked.scope,
        presented,
        agent: verified.agent().map(crate::policy::identity::AgentId::id),
        generation: verified.generation,
        authorization_details: None,
        budget: None,
        budget_consumed: None,
        account: asked.account.as_deref(),
    };
    Ok(minter.mint(&request, shared.clock.now()))
}
