//! Single-use grants: the policy of [`AAuth::single_use`](crate::AAuth::single_use), which documents it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Request, Response};
use tower_service::Service;

use super::key::ReplayKey;
use super::store::{Insertion, Refused};
use crate::error::Error;
use crate::guard::middleware::GuardLayer;
use crate::guard::middleware::{BoxedResponse, Consume, Grant, GuardPolicy, Verdict, take_ready};
use crate::state::Shared;
use crate::token::TokenKind;
use crate::verified::VerifiedRequest;

/// The refusal for a second use of a single-use grant.
pub(crate) const GRANT_USED: Error = Error::invalid_jwt("the single-use grant was already used");

/// What consuming the request's grant needs: the key and how long to keep it.
pub(crate) fn grant_key(shared: &Shared, verified: Option<&VerifiedRequest>) -> Result<(ReplayKey, Duration), Error> {
    let token = verified
        .and_then(|v| v.token.as_ref())
        .filter(|t| t.claims.kind == TokenKind::Auth)
        .ok_or(Error(crate::error::Kind::Forbidden {
            code: "auth_token_required",
            detail: "this route is single-use and needs an auth token",
        }))?;
    let claims = &token.claims;
    let jti = claims
        .jti
        .as_deref()
        .ok_or(Error::invalid_jwt("a single-use grant needs a jti"))?;
    let now = shared.clock.now();
    let ttl = claims.exp.saturating_sub(now).saturating_add(shared.max_skew).max(1);
    Ok((ReplayKey::jti(&claims.iss, jti), Duration::from_secs(ttl)))
}

/// A single-use route: a [`GuardLayer`](crate::guard::GuardLayer) applying [`SingleUsePolicy`]. Build it with
/// [`AAuth::single_use`](crate::AAuth::single_use).
pub type SingleUseLayer = GuardLayer<SingleUsePolicy>;

/// The rule of [`SingleUseLayer`]: consume the presented auth token's `(iss, jti)`.
#[derive(Clone, Debug)]
pub struct SingleUsePolicy {
    shared: Arc<Shared>,
}

/// The single-use guard of this configuration ([`AAuth::single_use`](crate::AAuth::single_use)).
pub(crate) fn layer(shared: Arc<Shared>) -> SingleUseLayer {
    GuardLayer {
        policy: SingleUsePolicy { shared },
    }
}

impl<S, B, ResBody> GuardPolicy<S, B, ResBody> for SingleUsePolicy
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Hold = Consume;

    fn check(&self, request: &Parts) -> Verdict<ResBody, Consume> {
        consume(&self.shared, &request.extensions)
    }

    fn hold(&self, hold: Consume, inner: &mut S, request: Request<B>) -> BoxedResponse<ResBody, S::Error> {
        consume_later(&self.shared, hold, take_ready(inner), request)
    }
}

/// Consumes the request's grant when the store answers synchronously; otherwise the
/// request is handed to [`consume_later`].
pub(crate) fn consume<ResBody: From<Bytes>>(shared: &Shared, extensions: &Extensions) -> Verdict<ResBody, Consume> {
    let (key, ttl) = match grant_key(shared, extensions.get::<VerifiedRequest>()) {
        Ok(grant) => grant,
        Err(error) => return Verdict::Answer(error.to_response()),
    };
    match shared.replay_store.try_insert(&key, ttl) {
        Some(Ok(Insertion::First)) => Verdict::Consumed(Grant {
            key,
            refused: Refused::of(extensions),
            store: shared.replay_store.clone(),
        }),
        Some(Ok(Insertion::Repeat)) => Verdict::Answer(GRANT_USED.to_response()),
        Some(Err(error)) => Verdict::Answer(error.to_response()),
        None => Verdict::Hold(Consume { key, ttl }),
    }
}

/// Consumes the grant in a networked store, then calls `inner`; releases the grant when a
/// guard further in refuses the request.
pub(crate) fn consume_later<S, B, ResBody>(
    shared: &Arc<Shared>,
    Consume { key, ttl }: Consume,
    mut inner: S,
    request: Request<B>,
) -> BoxedResponse<ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    let refused = Refused::of(request.extensions());
    let shared = shared.clone();
    Box::pin(async move {
        match shared.replay_store.insert(key, ttl).await {
            Ok(Insertion::First) => {
                let response = inner.call(request).await?;
                if refused.matches(&response)
                    && let Some(release) = super::store::release(&shared.replay_store, key)
                {
                    release.await;
                }
                Ok(response)
            }
            Ok(Insertion::Repeat) => Ok(refused.mark(GRANT_USED.to_response())),
            Err(error) => Ok(refused.mark(error.to_response())),
        }
    })
}
