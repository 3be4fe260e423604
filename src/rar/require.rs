//! The `require_detail` route guard.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_service::Service;

use super::details::{AuthorizationDetails, DetailError};
use crate::challenge::error_response;
use crate::error::Error;
use crate::error::{AuditDecision, AuditOutcome};
use crate::guard::judge::{Reader, detail_challenge, layer_verdict, respond};
use crate::guard::middleware::GuardLayer;
use crate::guard::middleware::{BoxedResponse, Consume, GuardPolicy, Verdict, take_ready};
use crate::guard::requirement::Decision as GuardDecision;
use crate::replay::single_use::{consume, consume_later};
use crate::state::Shared;
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;

/// Requires an auth-token `authorization_details` entry of one type that the route's
/// predicate accepts: a [`GuardLayer`](crate::guard::GuardLayer) applying [`DetailPolicy`]. Build it with
/// [`AAuth::require_detail`](crate::AAuth::require_detail).
pub type RequireDetailLayer<T, F> = GuardLayer<DetailPolicy<T, F>>;

/// The rule of [`RequireDetailLayer`](crate::guard::RequireDetailLayer).
pub struct DetailPolicy<T, F> {
    shared: Arc<Shared>,
    detail_type: &'static str,
    check: F,
    single_use: bool,
    step_up: Option<StepUp>,
    _detail: PhantomData<fn() -> T>,
}

/// The detail guard of this configuration ([`AAuth::require_detail`](crate::AAuth::require_detail)).
pub(crate) fn layer<T, F>(shared: Arc<Shared>, detail_type: &'static str, check: F) -> RequireDetailLayer<T, F>
where
    T: DeserializeOwned + 'static,
    F: Fn(&T, &Parts) -> bool + Clone + Send + Sync + 'static,
{
    GuardLayer {
        policy: DetailPolicy {
            shared,
            detail_type,
            check,
            single_use: false,
            step_up: None,
            _detail: PhantomData,
        },
    }
}

/// Builds, from the request, the detail a step-up resource token asks for.
type StepUp = Arc<dyn Fn(&Parts) -> Option<Value> + Send + Sync>;

impl<T, F: Clone> Clone for DetailPolicy<T, F> {
    fn clone(&self) -> Self {
        DetailPolicy {
            shared: self.shared.clone(),
            detail_type: self.detail_type,
            check: self.check.clone(),
            single_use: self.single_use,
            step_up: self.step_up.clone(),
            _detail: PhantomData,
        }
    }
}

impl<T, F> std::fmt::Debug for DetailPolicy<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetailPolicy")
            .field("detail_type", &self.detail_type)
            .field("single_use", &self.single_use)
            .field("step_up", &self.step_up.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, F> RequireDetailLayer<T, F> {
    /// Also consumes the auth token's `(iss, jti)` when the check passes: the grant serves
    /// one request only; a second use is `401 invalid_jwt` (see
    /// [`AAuth::single_use`](crate::AAuth::single_use)).
    pub fn single_use(mut self) -> Self {
        self.policy.single_use = true;
        self
    }

    /// Answers a missing or non-matching detail with a step-up challenge instead of `403`:
    /// `401 AAuth-Requirement: requirement=auth-token; resource-token="…"` whose resource
    /// token carries `authorization_details: [detail]`, `detail` being what `build`
    /// returns for the request with `"type"` set to this guard's type. When `build`
    /// returns `None` (the request does not describe an approvable transaction), or the
    /// value does not serialise to a JSON object, the answer stays `403`.
    ///
    /// `build` sees the signed request only: the method and URI (a query the signature
    /// does not cover is refused first with `401 invalid_input`), and the headers the
    /// signature covers in full. The body is never available to it.
    pub fn step_up<D, G>(mut self, build: G) -> Self
    where
        D: Serialize,
        G: Fn(&Parts) -> Option<D> + Send + Sync + 'static,
    {
        let detail_type = self.policy.detail_type;
        self.policy.step_up = Some(Arc::new(move |parts: &Parts| {
            let mut detail = serde_json::to_value(build(parts)?).ok()?;
            detail.as_object_mut()?.insert("type".to_owned(), detail_type.into());
            Some(Value::Array(vec![detail]))
        }));
        self
    }
}

/// Why the guard did not pass a request.
enum Refusal {
    Error(Error),
    Mismatch(&'static str),
    NeedsGrant,
}

impl<T, F> DetailPolicy<T, F>
where
    T: DeserializeOwned,
    F: Fn(&T, &Parts) -> bool,
{
    fn decide(&self, parts: &Parts) -> Result<(), Refusal> {
        let verified = layer_verdict(&parts.extensions, Reader::Guard).map_err(Refusal::Error)?;
        let Some(token) = verified
            .and_then(|v| v.token.as_ref())
            .filter(|t| t.claims.kind == TokenKind::Auth)
        else {
            return Err(Refusal::NeedsGrant);
        };
        if let Some(verified) = verified {
            self.check_query_covered(parts, verified).map_err(Refusal::Error)?;
        }
        let details = token.authorization_details().map_err(mismatch_reason)?;
        let accepted = self.matches(&details, parts).map_err(mismatch_reason)?;
        if accepted {
            Ok(())
        } else {
            Err(Refusal::Mismatch(
                "no authorization detail of this type matches the request",
            ))
        }
    }

    fn matches(&self, details: &AuthorizationDetails<'_>, parts: &Parts) -> Result<bool, DetailError> {
        // Every entry of the type must have the right shape, even after one matched.
        let entries: Vec<T> = details.of_type(self.detail_type)?;
        Ok(entries.iter().any(|entry| (self.check)(entry, parts)))
    }

    /// `403` naming the detail type, with its audit outcome.
    fn mismatch<B: From<Bytes>>(&self, detail: &'static str) -> Response<B> {
        let error = Error(crate::error::Kind::Forbidden {
            code: crate::names::problem::DETAIL_MISMATCH,
            detail,
        });
        let body = crate::error::Problem {
            details_type: Some(self.detail_type),
            ..error.problem()
        };
        let mut response = Response::new(B::from(body.render()));
        *response.status_mut() = StatusCode::FORBIDDEN;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Err(unbuildable) = error.write_headers(headers) {
            return unbuildable.to_response();
        }
        response.extensions_mut().insert(AuditOutcome {
            decision: AuditDecision::Deny,
            reason: crate::names::problem::DETAIL_MISMATCH,
            detail,
        });
        response
    }
}

impl<T, F> DetailPolicy<T, F> {
    /// `401 invalid_input` when the request has a query its signature does not cover:
    /// the predicate and the step-up builder read it.
    fn check_query_covered(&self, parts: &Parts, verified: &VerifiedRequest) -> Result<(), Error> {
        if parts.uri.query().is_some() && !verified.covers("@query") {
            return Err(Error::invalid_input(
                self.shared.required.iter().cloned().chain(["@query".to_owned()]),
            ));
        }
        Ok(())
    }

    /// The detail a step-up resource token would carry, built from the signed part of the
    /// request only: a query the signature does not cover is refused (`invalid_input`)
    /// and the builder sees no header the signature does not cover in full, so nothing
    /// the resource signs into a token comes from outside the agent's signature. `None`
    /// without a builder, or for an unsigned request (which gets no resource token).
    fn step_up_details(&self, parts: &Parts) -> Result<Option<Value>, Error> {
        let (Some(build), Some(verified)) = (&self.step_up, parts.extensions.get::<VerifiedRequest>()) else {
            return Ok(None);
        };
        self.check_query_covered(parts, verified)?;
        let (mut signed, ()) = Request::new(()).into_parts();
        signed.method = parts.method.clone();
        signed.uri = parts.uri.clone();
        signed.version = parts.version;
        signed.extensions = parts.extensions.clone();
        for (name, value) in &parts.headers {
            if verified.covers(name.as_str()) {
                signed.headers.append(name, value.clone());
            }
        }
        Ok(build(&signed))
    }

    /// No auth token: the step-up challenge carrying the detail when configured and
    /// buildable, else the matrix's challenge for a route that needs an auth token.
    fn needs_grant<B: From<Bytes>>(&self, parts: &Parts) -> Response<B> {
        let verified = parts.extensions.get::<VerifiedRequest>();
        match self.step_up_details(parts) {
            Ok(Some(details)) => return detail_challenge(&self.shared, verified, &details),
            Ok(None) => {}
            Err(error) => return error_response(self.shared.hook(), &error),
        }
        let decision = GuardDecision::NeedAuth(Scopes::default());
        respond(&self.shared, decision, verified).unwrap_or_else(|| {
            error_response(
                self.shared.hook(),
                &Error(crate::error::Kind::Misconfigured {
                    detail: "a challenge decision produced no response",
                }),
            )
        })
    }
}

impl<T, F> DetailPolicy<T, F>
where
    T: DeserializeOwned,
    F: Fn(&T, &Parts) -> bool,
{
    /// A non-matching detail: `403`, or the step-up challenge when configured.
    fn refuse_or_step_up<B: From<Bytes>>(&self, parts: &Parts, detail: &'static str) -> Response<B> {
        match self.step_up_details(parts) {
            Ok(Some(details)) => detail_challenge(&self.shared, parts.extensions.get::<VerifiedRequest>(), &details),
            Ok(None) => self.mismatch(detail),
            Err(error) => error_response(self.shared.hook(), &error),
        }
    }
}

fn mismatch_reason(error: DetailError) -> Refusal {
    Refusal::Mismatch(error.detail())
}

impl<S, B, ResBody, T, F> GuardPolicy<S, B, ResBody> for DetailPolicy<T, F>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
    T: DeserializeOwned + 'static,
    F: Fn(&T, &Parts) -> bool + Clone + Send + Sync + 'static,
{
    type Hold = Consume;

    fn check(&self, parts: &Parts) -> Verdict<ResBody, Consume> {
        match self.decide(parts) {
            Ok(()) if self.single_use => consume(&self.shared, &parts.extensions),
            Ok(()) => Verdict::Allow,
            Err(Refusal::Error(error)) => Verdict::Answer(error_response(self.shared.hook(), &error)),
            Err(Refusal::Mismatch(detail)) => Verdict::Answer(self.refuse_or_step_up(parts, detail)),
            Err(Refusal::NeedsGrant) => Verdict::Answer(self.needs_grant(parts)),
        }
    }

    fn hold(&self, hold: Consume, inner: &mut S, request: Request<B>) -> BoxedResponse<ResBody, S::Error> {
        consume_later(&self.shared, hold, take_ready(inner), request)
    }
}
