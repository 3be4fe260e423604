//! Single-use grants: a route that consumes the presented auth token's `(iss, jti)` the
//! first time it is authorized, so a task-scoped grant cannot be used twice (seed 002,
//! "task-scoped authorization").
//!
//! Consumption happens *before* the handler runs, through the [`super::ReplayStore`]'s atomic
//! insert-once: of any number of concurrent requests presenting the grant (each with its
//! own valid signature), exactly one reaches the handler; the others are `401 invalid_jwt`.
//! The entry lives until the token's `exp` plus the allowed clock skew, after which the
//! token is refused as expired anyway. A store that cannot answer is `503`, never a pass.
//!
//! This is opt-in per route (RPL-16: auth tokens are otherwise presented on every request
//! for their lifetime). Put [`SingleUseLayer`] *inside* the guards that authorize the route
//! (in axum, `route_layer` it before them) so that only an authorized request consumes the
//! grant; or use `require_detail(..).single_use()`, which consumes after its own check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Insertion, ReplayKey};
use crate::config::{AAuth, Shared};
use crate::error::Error;
use crate::token::TokenKind;
use crate::verifier::VerifiedRequest;

/// The refusal for a second use of a single-use grant.
pub const GRANT_USED: Error = Error::invalid_jwt("the single-use grant was already used");

/// What consuming the request's grant needs: the key and how long to keep it.
pub(crate) fn grant_key(shared: &Shared, verified: Option<&VerifiedRequest>) -> Result<(ReplayKey, Duration), Error> {
    let token = verified
        .and_then(|v| v.token.as_ref())
        .filter(|t| t.claims.kind == TokenKind::Auth)
        .ok_or(Error::Forbidden {
            code: "auth_token_required",
            detail: "this route is single-use and needs an auth token",
        })?;
    let claims = &token.claims;
    let jti = claims
        .jti
        .as_deref()
        .ok_or(Error::invalid_jwt("a single-use grant needs a jti"))?;
    let now = shared.clock.now();
    let ttl = claims.exp.saturating_sub(now).saturating_add(shared.max_skew).max(1);
    Ok((ReplayKey::jti(&claims.iss, jti), Duration::from_secs(ttl)))
}

/// Marks a route single-use. Build it with [`AAuth::single_use`].
#[derive(Clone, Debug)]
pub struct SingleUseLayer {
    aauth: AAuth,
}

impl AAuth {
    /// A route layer consuming the presented auth token's `jti` on first use (see
    /// [`crate::replay::single_use`]).
    pub fn single_use(&self) -> SingleUseLayer {
        SingleUseLayer { aauth: self.clone() }
    }
}

impl<S> Layer<S> for SingleUseLayer {
    type Service = SingleUse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SingleUse {
            inner,
            shared: self.aauth.shared.clone(),
        }
    }
}

/// The service of [`SingleUseLayer`].
#[derive(Clone)]
pub struct SingleUse<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SingleUse<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleUse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for SingleUse<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        match grant_key(&self.shared, request.extensions().get::<VerifiedRequest>()) {
            Ok((key, ttl)) => consume_then_call(&self.shared, key, ttl, inner, request),
            Err(error) => GuardFuture::refuse(error),
        }
    }
}

/// Consumes `key` (synchronously when the store can) and calls `inner` on success.
pub(crate) fn consume_then_call<S, B, ResBody>(
    shared: &Arc<Shared>,
    key: ReplayKey,
    ttl: Duration,
    mut inner: S,
    request: Request<B>,
) -> GuardFuture<S::Future, ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    match shared.replay_store.try_insert(&key, ttl) {
        Some(Ok(Insertion::First)) => GuardFuture::inner(inner.call(request)),
        Some(Ok(Insertion::Repeat)) => GuardFuture::refuse(GRANT_USED),
        Some(Err(error)) => GuardFuture::refuse(error),
        None => {
            let shared = shared.clone();
            GuardFuture::boxed(async move {
                match shared.replay_store.insert(key, ttl).await {
                    Ok(Insertion::First) => inner.call(request).await,
                    Ok(Insertion::Repeat) => Ok(GRANT_USED.to_response()),
                    Err(error) => Ok(error.to_response()),
                }
            })
        }
    }
}

type BoxedResponse<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

pin_project! {
    /// The response future of the crate's route guards: the inner service's own future
    /// when the decision was made in `call`, a boxed one when a networked store had to be
    /// awaited, or a ready refusal.
    pub struct GuardFuture<F, ResBody, E> {
        #[pin]
        state: GuardState<F, ResBody, E>,
    }
}

pin_project! {
    #[project = GuardProj]
    enum GuardState<F, ResBody, E> {
        Inner { #[pin] future: F },
        Boxed { future: BoxedResponse<ResBody, E> },
        Ready { response: Option<Response<ResBody>> },
    }
}

impl<F, ResBody, E> GuardFuture<F, ResBody, E> {
    pub(crate) fn inner(future: F) -> Self {
        GuardFuture {
            state: GuardState::Inner { future },
        }
    }

    pub(crate) fn boxed(future: impl Future<Output = Result<Response<ResBody>, E>> + Send + 'static) -> Self {
        GuardFuture {
            state: GuardState::Boxed {
                future: Box::pin(future),
            },
        }
    }

    pub(crate) fn respond(response: Response<ResBody>) -> Self {
        GuardFuture {
            state: GuardState::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn refuse(error: Error) -> Self
    where
        ResBody: From<Bytes>,
    {
        Self::respond(error.to_response())
    }
}

impl<F, ResBody, E> Future for GuardFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            GuardProj::Inner { future } => future.poll(cx),
            GuardProj::Boxed { future } => Poll::Ready(ready!(future.as_mut().poll(cx))),
            GuardProj::Ready { response } => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                Error::Misconfigured {
                    detail: "response future polled after completion",
                }
                .to_response()
            }))),
        }
    }
}
