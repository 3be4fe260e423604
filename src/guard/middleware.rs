//! The one guard middleware: [`GuardLayer`](crate::guard::GuardLayer) → [`Guard`] → [`GuardFuture`], with a
//! policy per rule (the shape of tower-http's `ValidateRequest`).
//!
//! A policy decides on the request head in `call`, synchronously: serve, answer (a
//! refusal or a challenge), serve after consuming a single-use grant, or hand the request
//! to an asynchronous tail (a networked replay store, a deferred hold). Only that tail is
//! boxed; a decision made in `call` wraps the route's own future.
//!
//! Every answer of a guard carries the replay release marker ([`Refused`]), so that the
//! layer gives the refused request's replay entry back, and a grant consumed here is
//! released when a guard further in refuses the request.
//!
//! The policies are [`RequirementPolicy`](super::judge::RequirementPolicy) (the requirement
//! table), `SingleUsePolicy`, `DetailPolicy` and `DeferredPolicy`; the trait is sealed:
//! new rules are [`Rule`](super::Rule)s.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::polled_after_completion;
use crate::replay::key::ReplayKey;
use crate::replay::store::{Refused, Releasing, ReplayStore};

/// A boxed response future: the asynchronous tail of a policy.
pub type BoxedResponse<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

/// A policy's decision on one request.
pub enum Verdict<ResBody, H> {
    /// Call the route.
    Allow,
    /// Call the route; the grant was consumed and is released if a guard further in
    /// refuses the request.
    Consumed(Grant),
    /// Answer with this response instead of calling the route.
    Answer(Response<ResBody>),
    /// Hand the request to the policy's asynchronous tail ([`GuardPolicy::hold`]).
    Hold(H),
}

/// A rule of the guard middleware. Sealed: reachable only inside the crate.
pub trait GuardPolicy<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    /// What the asynchronous tail needs from `check`.
    type Hold;

    /// Decides on the request head, synchronously (no I/O but an in-memory store).
    fn check(&self, request: &Parts) -> Verdict<ResBody, Self::Hold>;

    /// The asynchronous tail: `inner` is the service that was polled ready.
    fn hold(&self, hold: Self::Hold, inner: &mut S, request: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error>;
}

/// For policies that never hold a request.
pub(crate) fn never<T>(hold: Infallible) -> T {
    match hold {}
}

/// The service that was polled ready, leaving a clone in its place: the one a request
/// handed to an asynchronous tail must be called on.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A consumed single-use grant, released if a guard further in refuses the request.
pub struct Grant {
    pub(crate) key: ReplayKey,
    /// The marker such a refusal carries.
    pub(crate) refused: Refused,
    pub(crate) store: std::sync::Arc<dyn ReplayStore>,
}

/// A single-use grant a networked store must consume before the route runs.
pub struct Consume {
    pub(crate) key: ReplayKey,
    pub(crate) ttl: std::time::Duration,
}

/// A route guard: apply with axum's `Router::route_layer` (or any tower `Layer` stack,
/// inside [`AAuthLayer`](crate::AAuthLayer)). Build it with
/// [`AAuth::require_scopes`](crate::AAuth::require_scopes) and friends,
/// [`AAuth::single_use`](crate::AAuth::single_use),
/// [`AAuth::require_detail`](crate::AAuth::require_detail) or
/// [`GuardLayer::deferred`](crate::guard::GuardLayer::deferred); `P` is the rule it applies.
#[derive(Clone, Debug)]
pub struct GuardLayer<P = super::judge::RequirementPolicy> {
    pub(crate) policy: P,
}

impl<S, P: Clone> Layer<S> for GuardLayer<P> {
    type Service = Guard<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of a [`GuardLayer`](crate::guard::GuardLayer).
#[derive(Clone)]
pub struct Guard<S, P = super::judge::RequirementPolicy> {
    inner: S,
    policy: P,
}

impl<S: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for Guard<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Guard<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: GuardPolicy<S, ReqBody, ResBody>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let verdict = self.policy.check(&parts);
        let request = Request::from_parts(parts, body);
        match verdict {
            Verdict::Allow => GuardFuture::new(State::Inner {
                future: self.inner.call(request),
            }),
            Verdict::Consumed(grant) => GuardFuture::new(State::Consumed {
                future: self.inner.call(request),
                grant: Some(grant),
            }),
            Verdict::Answer(response) => GuardFuture::new(State::Ready {
                response: Some(Refused::of(request.extensions()).mark(response)),
            }),
            Verdict::Hold(hold) => GuardFuture::new(State::Boxed {
                future: self.policy.hold(hold, &mut self.inner, request),
            }),
        }
    }
}

pin_project! {
    /// The response future of [`Guard`]: the route's own future when the decision was
    /// made in `call` (watched for a refusal further in when a single-use grant was
    /// consumed), a boxed one when a networked store or a deferred hold had to be
    /// awaited, or the guard's answer.
    ///
    /// Polled again after it completed, whatever the state it completed in, it answers
    /// `500` (a misconfiguration, as the layer's
    /// [`ResponseFuture`](crate::ResponseFuture) does) and never panics nor polls the
    /// route's future again.
    pub struct GuardFuture<F, ResBody, E> {
        #[pin]
        state: State<F, ResBody, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody, E> {
        Inner { #[pin] future: F },
        Consumed { #[pin] future: F, grant: Option<Grant> },
        Boxed { future: BoxedResponse<ResBody, E> },
        Ready { response: Option<Response<ResBody>> },
        Releasing { future: Releasing, response: Option<Response<ResBody>> },
        Done,
    }
}

impl<F, ResBody, E> GuardFuture<F, ResBody, E> {
    fn new(state: State<F, ResBody, E>) -> Self {
        GuardFuture { state }
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
                StateProj::Inner { future } => {
                    let result = ready!(future.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Consumed { future, grant } => {
                    let result = ready!(future.poll(cx));
                    let grant = grant.take();
                    state.set(State::Done);
                    match (result, grant) {
                        (Ok(response), Some(grant)) if grant.refused.matches(&response) => {
                            match crate::replay::store::release(&grant.store, grant.key) {
                                None => return Poll::Ready(Ok(response)),
                                Some(future) => state.set(State::Releasing {
                                    future,
                                    response: Some(response),
                                }),
                            }
                        }
                        (result, _) => return Poll::Ready(result),
                    }
                }
                StateProj::Boxed { future } => {
                    let result = ready!(future.as_mut().poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(polled_after_completion)));
                }
                StateProj::Releasing { future, response } => {
                    ready!(future.as_mut().poll(cx));
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => return Poll::Ready(Ok(polled_after_completion())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use http::StatusCode;

    use super::*;

    type Future = GuardFuture<Ready<Result<Response<Bytes>, Infallible>>, Bytes, Infallible>;

    fn status_of_two_polls(future: Future) -> (StatusCode, StatusCode) {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut status = || match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => response.status(),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => panic!("ready futures only"),
        };
        (status(), status())
    }

    #[test]
    fn a_future_polled_after_completion_answers_500_in_every_state() {
        let ok = || Response::new(Bytes::new());
        let inner = Future::new(State::Inner {
            future: std::future::ready(Ok(ok())),
        });
        let mut answer = ok();
        *answer.status_mut() = StatusCode::FORBIDDEN;
        let answered = Future::new(State::Ready { response: Some(answer) });
        let boxed = Future::new(State::Boxed {
            future: Box::pin(std::future::ready(Ok(ok()))),
        });
        let error = StatusCode::INTERNAL_SERVER_ERROR;
        assert_eq!(status_of_two_polls(inner), (StatusCode::OK, error));
        assert_eq!(status_of_two_polls(answered), (StatusCode::FORBIDDEN, error));
        assert_eq!(status_of_two_polls(boxed), (StatusCode::OK, error));
    }
}
