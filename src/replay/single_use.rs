//! Single-use grants: a route that consumes the presented auth token's `(iss, jti)` the
//! first time it is authorized, so a task-scoped grant (consent to one task, not a
//! standing permission) cannot be used twice.
//!
//! Consumption happens *before* the handler runs, through the [`super::ReplayStore`]'s atomic
//! insert-once: of any number of concurrent requests presenting the grant (each with its
//! own valid signature), exactly one reaches the handler; the others are `401 invalid_jwt`.
//! The entry lives until the token's `exp` plus the allowed clock skew, after which the
//! token is refused as expired anyway. A store that cannot answer is `503`, never a pass.
//!
//! This is opt-in per route: auth tokens are otherwise presented on every request for their
//! lifetime, so a `jti` is not single-use by default. Put [`SingleUseLayer`] *inside* the
//! guards that authorize the route (in axum, `route_layer` it before them) so that only an
//! authorized request consumes the grant; or use `require_detail(..).single_use()`, which
//! consumes after its own check. Should a guard of this crate inside it refuse the request
//! all the same, the grant is released again before the refusal is sent, as the layer
//! releases a refused request's signature (see [`crate::replay`]); meanwhile a concurrent
//! request presenting the same grant is refused as a second use.

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

use super::{Insertion, Refused, Releasing, ReplayKey, ReplayStore};
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
            Err(error) => GuardFuture::refuse(error, Refused::of(request.extensions())),
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
    let refused = Refused::of(request.extensions());
    match shared.replay_store.try_insert(&key, ttl) {
        Some(Ok(Insertion::First)) => GuardFuture::consumed(
            inner.call(request),
            Grant {
                key,
                refused,
                store: shared.replay_store.clone(),
            },
        ),
        Some(Ok(Insertion::Repeat)) => GuardFuture::refuse(GRANT_USED, refused),
        Some(Err(error)) => GuardFuture::refuse(error, refused),
        None => {
            let shared = shared.clone();
            GuardFuture::boxed(async move {
                match shared.replay_store.insert(key, ttl).await {
                    Ok(Insertion::First) => {
                        let response = inner.call(request).await?;
                        if refused.matches(&response)
                            && let Some(release) = super::release(&shared.replay_store, key)
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
    }
}

/// A consumed grant, released if a guard further in refuses the request.
struct Grant {
    key: ReplayKey,
    /// The marker such a refusal carries.
    refused: Refused,
    store: Arc<dyn ReplayStore>,
}

type BoxedResponse<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

pin_project! {
    /// The response future of the crate's route guards: the inner service's own future
    /// when the decision was made in `call` (watched for a refusal further in when a grant
    /// was consumed), a boxed one when a networked store had to be awaited, or a ready
    /// refusal.
    pub struct GuardFuture<F, ResBody, E> {
        #[pin]
        state: GuardState<F, ResBody, E>,
    }
}

pin_project! {
    #[project = GuardProj]
    enum GuardState<F, ResBody, E> {
        Inner { #[pin] future: F },
        Consumed { #[pin] future: F, grant: Option<Grant> },
        Boxed { future: BoxedResponse<ResBody, E> },
        Ready { response: Option<Response<ResBody>> },
        Releasing { future: Releasing, response: Option<Response<ResBody>> },
    }
}

impl<F, ResBody, E> GuardFuture<F, ResBody, E> {
    pub(crate) fn inner(future: F) -> Self {
        GuardFuture {
            state: GuardState::Inner { future },
        }
    }

    fn consumed(future: F, grant: Grant) -> Self {
        GuardFuture {
            state: GuardState::Consumed {
                future,
                grant: Some(grant),
            },
        }
    }

    pub(crate) fn boxed(future: impl Future<Output = Result<Response<ResBody>, E>> + Send + 'static) -> Self {
        GuardFuture {
            state: GuardState::Boxed {
                future: Box::pin(future),
            },
        }
    }

    /// A refusal of the request `refused` names.
    pub(crate) fn respond(response: Response<ResBody>, refused: Refused) -> Self {
        GuardFuture {
            state: GuardState::Ready {
                response: Some(refused.mark(response)),
            },
        }
    }

    pub(crate) fn refuse(error: Error, refused: Refused) -> Self
    where
        ResBody: From<Bytes>,
    {
        Self::respond(error.to_response(), refused)
    }
}

impl<F, ResBody, E> Future for GuardFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                GuardProj::Inner { future } => return future.poll(cx),
                GuardProj::Consumed { future, grant } => {
                    let result = ready!(future.poll(cx));
                    match (result, grant.take()) {
                        (Ok(response), Some(grant)) if grant.refused.matches(&response) => {
                            match super::release(&grant.store, grant.key) {
                                None => return Poll::Ready(Ok(response)),
                                Some(future) => state.set(GuardState::Releasing {
                                    future,
                                    response: Some(response),
                                }),
                            }
                        }
                        (result, _) => return Poll::Ready(result),
                    }
                }
                GuardProj::Boxed { future } => return Poll::Ready(ready!(future.as_mut().poll(cx))),
                GuardProj::Ready { response } => return Poll::Ready(Ok(taken(response))),
                GuardProj::Releasing { future, response } => {
                    ready!(future.as_mut().poll(cx));
                    return Poll::Ready(Ok(taken(response)));
                }
            }
        }
    }
}

fn taken<B: From<Bytes>>(response: &mut Option<Response<B>>) -> Response<B> {
    response.take().unwrap_or_else(|| {
        Error::Misconfigured {
            detail: "response future polled after completion",
        }
        .to_response()
    })
}
