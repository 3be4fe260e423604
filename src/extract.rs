//! axum extractors for what the layer verified (feature `axum`).
//!
//! * [`VerifiedAgent`]: who signed — scheme, key thumbprint, agent identifier when known,
//!   token kind.
//! * [`AuthGrant`]: the verified auth token — issuer, subject, scopes, audience, `jti`,
//!   expiry and every claim for custom checks.
//!
//! As a plain extractor each refuses a request without it with the same challenge a guard
//! would send (`requirement=agent-token` for [`VerifiedAgent`], the auth-token rules with
//! no particular scope for [`AuthGrant`]). As `Option<…>` they yield `None` instead. In
//! both forms a request the AAuth layer never saw is a `500` with the cause in the logs,
//! never a silent pass. Prefer guards for authorization: an extractor runs after routing
//! and body extraction order is up to the handler.

use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use serde_json::{Map, Value};

use crate::guard::judge::{Reader, layer_verdict, respond, without_layer};
use crate::guard::requirement::Decision;
use crate::policy::identity::AgentId;
use crate::sigkey::Scheme;
use crate::state::Inspected;
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;

/// The verified signer of the request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedAgent {
    /// The `Signature-Key` scheme.
    pub scheme: Scheme,
    /// RFC 7638 thumbprint of the signing key.
    pub key_thumbprint: Arc<str>,
    /// The agent, when known ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent)): named by the request or bound
    /// to its key.
    pub agent: Option<AgentId>,
    /// The kind of token presented, if any.
    pub token_kind: Option<TokenKind>,
    /// Everything the layer verified.
    pub request: VerifiedRequest,
}

/// A verified auth token (`aa-auth+jwt`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthGrant {
    /// `iss`.
    pub issuer: String,
    /// `sub` (directed person identifier), when present.
    pub subject: Option<String>,
    /// `scope`.
    pub scopes: Scopes,
    /// `aud` (this resource).
    pub audience: Option<String>,
    /// `jti`.
    pub jti: Option<String>,
    /// `exp`.
    pub expires_at: u64,
    /// Every claim, for custom checks.
    pub claims: Arc<Map<String, Value>>,
}

/// Why an extractor refused: the challenge or error response, already rendered.
#[derive(Debug)]
pub struct ExtractRejection(pub(crate) Box<Response>);

impl IntoResponse for ExtractRejection {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl ExtractRejection {
    /// The rejection answering `error`.
    pub(crate) fn of_error(error: &crate::error::Error) -> Self {
        ExtractRejection(Box::new(error.to_response()))
    }
}

fn missing_layer() -> ExtractRejection {
    ExtractRejection(Box::new(without_layer(Reader::Extractor).to_response()))
}

/// `Ok(None)`: unsigned request that went through the layer.
fn verified(parts: &Parts) -> Result<Option<&VerifiedRequest>, ExtractRejection> {
    layer_verdict(&parts.extensions, Reader::Extractor)
        // `to_response`: `without_layer` has logged it (once per process).
        .map_err(|error| ExtractRejection(Box::new(error.to_response())))
}

fn agent(verified: &VerifiedRequest) -> VerifiedAgent {
    VerifiedAgent {
        scheme: verified.scheme,
        key_thumbprint: verified.key_thumbprint.clone(),
        agent: verified.agent().cloned(),
        token_kind: verified.token_kind(),
        request: verified.clone(),
    }
}

fn grant(verified: &VerifiedRequest) -> Option<AuthGrant> {
    let token = verified.token.as_deref()?;
    let claims = &token.claims;
    (claims.kind == TokenKind::Auth).then(|| AuthGrant {
        issuer: claims.iss.clone(),
        subject: claims.sub.clone(),
        scopes: claims.scope.clone(),
        audience: claims.aud.clone(),
        jti: claims.jti.clone(),
        expires_at: claims.exp,
        claims: claims.raw.clone(),
    })
}

/// The challenge for a missing principal, rendered with the layer's configuration.
fn challenge(parts: &Parts, decision: Decision) -> ExtractRejection {
    let verified = parts.extensions.get::<VerifiedRequest>();
    match parts.extensions.get::<Inspected>() {
        Some(Inspected(shared)) => ExtractRejection(Box::new(
            respond(shared, decision, verified).unwrap_or_else(|| *missing_layer().0),
        )),
        None => missing_layer(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedAgent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match verified(parts)? {
            Some(verified) => Ok(agent(verified)),
            None => Err(challenge(parts, Decision::NeedAgent)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedAgent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(verified(parts)?.map(agent))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthGrant {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match verified(parts)?.and_then(grant) {
            Some(grant) => Ok(grant),
            None => Err(challenge(parts, Decision::NeedAuth(Scopes::default()))),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthGrant {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(verified(parts)?.and_then(grant))
    }
}

impl AuthGrant {
    /// The grant's `authorization_details` (RFC 9396), validated. Empty when absent.
    pub fn authorization_details(
        &self,
    ) -> Result<crate::rar::details::AuthorizationDetails<'_>, crate::rar::details::DetailError> {
        crate::rar::details::AuthorizationDetails::parse(self.claims.get(crate::names::claim::AUTHORIZATION_DETAILS))
    }

    /// The entries of type `detail_type`, deserialised into `T` (see
    /// [`AuthorizationDetails::of_type`](crate::rar::details::AuthorizationDetails::of_type)).
    pub fn details<T: serde::de::DeserializeOwned>(
        &self,
        detail_type: &str,
    ) -> Result<Vec<T>, crate::rar::details::DetailError> {
        self.authorization_details()?.of_type(detail_type)
    }
}

/// A verified Web Bot Auth bot ([`crate::bot`]). A request without one is refused as
/// [`require_bot`](crate::guard::require_bot) refuses it (`403 bot_required`); an AAuth
/// agent is not a bot. As `Option<VerifiedBot>` it yields `None` instead.
impl<S: Send + Sync> FromRequestParts<S> for crate::bot::VerifiedBot {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match bot(parts)? {
            Some(bot) => Ok(bot),
            None => {
                let hook = parts
                    .extensions
                    .get::<Inspected>()
                    .and_then(|Inspected(shared)| shared.hook());
                Err(ExtractRejection(Box::new(crate::guard::bot::bot_required(hook))))
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for crate::bot::VerifiedBot {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        bot(parts)
    }
}

/// The verified bot, `Ok(None)` for any other request that went through the layer.
fn bot(parts: &Parts) -> Result<Option<crate::bot::VerifiedBot>, ExtractRejection> {
    if parts.extensions.get::<Inspected>().is_none() {
        return Err(missing_layer());
    }
    Ok(parts.extensions.get::<crate::bot::VerifiedBot>().cloned())
}
