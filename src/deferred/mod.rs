//! Deferred delivery: the [`DeferredPolicy`] of a guard that holds a request instead of
//! refusing it, the pending records and the polls (the rules are in the
//! [`guard`](crate::guard) module documentation, "Deferred delivery").
//!
//! # Design: records as data, polls answered by the layer
//!
//! A held request is pure data ([`record`]): method, URI, kept headers and body, each
//! bounded, plus a small status (owner key thumbprint, challenge, deadlines, phase) and,
//! once it ran, the collected result. It lives in a [`store::PendingBackend`]: in this
//! process ([`store::LocalStore`]) or in Redis (`RedisPendingStore`, feature `redis`),
//! shared by every replica. Nothing in a record can run by itself.
//!
//! A poll is answered by the [`AAuthService`](crate::AAuthService) that verified it, on
//! whichever replica it reaches: the layer reads the record ([`poll::begin`]), checks
//! ownership and the record's phase, and takes it (`Waiting` → `Running`, a
//! compare-and-swap: of polls on any replicas at once exactly one wins). Then:
//!
//! * on the replica that held the request, its [`store::Runner`] (the route's service
//!   inside the deferred guard, the guard's rule and the held request's extensions, kept
//!   in process for the pending lifetime) judges the request with the poll's identity and
//!   runs it, as before records were data, under any layering;
//! * on any other replica, the layer rebuilds the held request, marks it
//!   [`poll::Resumed`] (an extension only code in this process can set, so its consumed
//!   signature is not verified again) with the poll's [`VerifiedRequest`], and calls the
//!   service it wraps with it. When the layer wraps the whole application (a tower
//!   `Layer` applied to the router), the router routes it to the deferred route, whose
//!   guard judges it with the poll's identity exactly as a poll always was: it runs the
//!   route and collects its response, or answers `202` again, or refuses as its rule
//!   does. axum's `Router::layer` wraps each route instead: the request then reaches the
//!   pending route, which answers `500` and leaves the record waiting for the replica that
//!   holds it.
//!
//! The layer writes the outcome back ([`poll::Ticket::finish`]): the result, stored for
//! the auth token's `jti` until its `exp`; the record waiting again; or its end.
//!
//! The record is `Running` while one poll evaluates it; other polls get `202` meanwhile.
//! A replica that stops while running a held request leaves it `Running`: after the
//! pending lifetime a poll gets `500 server_error` once (the request may have run, its
//! result is lost), then `410`. A held request runs at most once, whatever fails.

mod poll;
pub(crate) mod record;
#[cfg(feature = "redis")]
pub(crate) mod redis_store;
pub(crate) mod store;

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use crate::challenge::{Challenge, challenge_response};
use crate::guard::judge::RequirementPolicy;
use crate::guard::middleware::GuardLayer;
use crate::guard::middleware::{BoxedResponse, GuardPolicy, Verdict, take_ready};
use crate::guard::requirement::{Requirement, RuleContext};
use crate::profile::Generation;
use crate::replay::store::Refused;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

pub(crate) use poll::{Begun, Resumed, Ticket, begin};
use poll::{Outcome, not_executed, pending_response, replay, store_failure};
use record::{HeldChallenge, HeldRequest, NewRecord, Phase, Status, Stored};
#[cfg(feature = "redis")]
pub use redis_store::{RedisPendingStore, RedisPendingStoreBuilder};
pub(crate) use store::PendingStore;
pub use store::{DeferredOptions, PendingStoreError, PendingWrite, SharedPendingStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl GuardLayer {
    /// Delivers this guard's `auth-token` requirement as `202 Accepted` and holds the
    /// request until a poll of its pending URL presents a sufficient auth token (see
    /// [`guard`](crate::guard)); mount [`AAuth::pending_router`](crate::AAuth::pending_router) too.
    pub fn deferred(self) -> DeferredLayer {
        let RequirementPolicy { shared, requirement } = self.policy;
        GuardLayer {
            policy: DeferredPolicy { shared, requirement },
        }
    }
}

/// The router of the pending URLs ([`AAuth::pending_router`](crate::AAuth::pending_router)):
/// it marks them served, so that the layer answers their polls; its own route answers
/// only a poll the layer did not ([`poll::fallback`]).
#[cfg(feature = "axum")]
pub(crate) fn router<S>(shared: Arc<Shared>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    shared.pending.mark_served();
    let path = format!("{}{{id}}", crate::names::path::PENDING_PREFIX);
    // Any method: a held request the layer re-dispatches lands here when the layer wraps
    // this route rather than the whole application, and must be told apart.
    axum::Router::new().route(
        &path,
        axum::routing::any(move |request: Request<axum::body::Body>| {
            let shared = shared.clone();
            async move {
                let parts = request.into_parts().0;
                if parts.method != http::Method::GET && parts.extensions.get::<Resumed>().is_none() {
                    let mut response = Response::new(axum::body::Body::empty());
                    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                    response
                        .headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static("GET,HEAD"));
                    return response;
                }
                poll::fallback::<axum::body::Body>(&shared, &parts)
            }
        }),
    )
}

/// [`AAuth::poll_pending`](crate::AAuth::poll_pending): the layer answers polls.
pub(crate) fn fallback<B: From<Bytes>>(shared: &Shared, poll: &Parts) -> Response<B> {
    poll::fallback(shared, poll)
}

/// A guard that holds requests instead of refusing them: a [`GuardLayer`](crate::guard::GuardLayer) applying
/// [`DeferredPolicy`]; made by [`GuardLayer::deferred`](crate::guard::GuardLayer::deferred).
pub type DeferredLayer = GuardLayer<DeferredPolicy>;

/// The rule of a [`DeferredLayer`]: the requirement guard's, with its `auth-token`
/// challenge delivered as a `202` hold.
#[derive(Clone, Debug)]
pub struct DeferredPolicy {
    shared: Arc<Shared>,
    requirement: Arc<Requirement>,
}

/// What the deferred guard's asynchronous tail does.
pub enum DeferredHold {
    /// Hold a new request behind this challenge.
    Hold(Challenge),
    /// Run a re-dispatched held request and collect its response.
    Run(Resumed),
}

impl<S, ReqBody, ResBody> GuardPolicy<S, ReqBody, ResBody> for DeferredPolicy
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Hold = DeferredHold;

    fn check(&self, request: &Parts) -> Verdict<ResBody, DeferredHold> {
        let cx = RuleContext::of_parts(request);
        // A held request a poll re-dispatched: judged with the poll's identity, once.
        let resumed = request.extensions.get::<Resumed>().filter(|r| r.take());
        let reuse = resumed.and_then(|r| r.0.reuse.as_ref());
        match judge(&self.shared, &self.requirement, &cx, &request.extensions, reuse) {
            Judged::Serve => match resumed {
                Some(resumed) => Verdict::Hold(DeferredHold::Run(resumed.clone())),
                None => Verdict::Allow,
            },
            Judged::Answer(response) => {
                if let Some(resumed) = resumed {
                    resumed.set(Outcome::Answered);
                }
                Verdict::Answer(response)
            }
            Judged::Defer(challenge) => match resumed {
                Some(resumed) => {
                    let response = pending_response(&self.shared, &resumed.0.id, resumed.0.interval, Some(&challenge));
                    resumed.set(Outcome::Deferred(reuse.is_none().then_some(challenge)));
                    Verdict::Answer(response)
                }
                None => Verdict::Hold(DeferredHold::Hold(challenge)),
            },
        }
    }

    fn hold(&self, hold: DeferredHold, inner: &mut S, request: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        let (shared, inner) = (self.shared.clone(), take_ready(inner));
        match hold {
            DeferredHold::Hold(challenge) => {
                let requirement = self.requirement.clone();
                Box::pin(async move { Ok(hold_request(shared, requirement, challenge, inner, request).await) })
            }
            DeferredHold::Run(resumed) => Box::pin(async move {
                let max_result = shared.pending.options.max_result_bytes;
                match execute(inner, request, max_result).await {
                    Some(stored) => {
                        let response = replay(&stored);
                        resumed.set(Outcome::Ran(Arc::new(stored)));
                        Ok(response)
                    }
                    None => {
                        resumed.set(Outcome::Failed);
                        Ok(not_executed(&shared))
                    }
                }
            }),
        }
    }
}

/// A guard's verdict when `auth-token` challenges may be deferred.
pub(crate) enum Judged<B> {
    Serve,
    Answer(Response<B>),
    /// The `auth-token` challenge to deliver in a `202`.
    Defer(Challenge),
}

/// The guard's decision, except that an `auth-token` challenge is handed back un-rendered.
/// `reuse` is a still valid challenge to repeat instead of minting a new resource token.
/// `precheck_extensions` are those of the request carrying the identity (the poll's).
pub(crate) fn judge<B: From<Bytes>>(
    shared: &Shared,
    requirement: &Requirement,
    cx: &RuleContext<'_>,
    precheck_extensions: &http::Extensions,
    reuse: Option<&Challenge>,
) -> Judged<B> {
    if let Some(response) = crate::guard::judge::precheck(shared, requirement, precheck_extensions) {
        return Judged::Answer(response);
    }
    let verified = cx.verified;
    match requirement.evaluate(cx) {
        crate::guard::requirement::Decision::NeedAuth(scopes)
            if verified.is_some_and(|v| v.generation == Generation::Draft11) =>
        {
            if let Some(challenge) = reuse {
                return Judged::Defer(challenge.clone());
            }
            let generation = Generation::Draft11;
            match crate::guard::judge::need_auth(shared, &scopes, verified) {
                Ok(challenge @ Challenge::AuthToken { .. }) => Judged::Defer(challenge),
                Ok(other) => Judged::Answer(challenge_response(shared.hook(), &other, generation)),
                Err(error) => Judged::Answer(crate::challenge::error_response(shared.hook(), &error)),
            }
        }
        decision => match crate::guard::judge::respond(shared, decision, verified) {
            None => Judged::Serve,
            Some(response) => Judged::Answer(response),
        },
    }
}

/// Buffers the request, stores it as a pending record, and answers `202`.
async fn hold_request<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    requirement: Arc<Requirement>,
    challenge: Challenge,
    inner: S,
    request: Request<ReqBody>,
) -> Response<ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let options = &shared.pending.options;
    let (parts, body) = request.into_parts();
    let refused = Refused::of(&parts.extensions);
    let plain = |refused: Refused| refused.mark(challenge_response(shared.hook(), &challenge, Generation::Draft11));
    let (Some(thumbprint), Some(held_challenge)) = (
        parts
            .extensions
            .get::<VerifiedRequest>()
            .map(|v| v.key_thumbprint.clone()),
        HeldChallenge::of(&challenge),
    ) else {
        // `judge` defers only verified requests, with an `auth-token` challenge.
        return plain(refused);
    };
    let body = match Limited::new(body, options.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        // Too large to hold (or unreadable): the agent resends it with the auth token.
        Err(_) => return plain(refused),
    };
    let uri = original_uri(&parts.uri, &parts.extensions);
    let Some(held) = HeldRequest::new(parts.method.clone(), uri, &parts.headers, body) else {
        return plain(refused);
    };
    let now = shared.clock.now();
    let record = NewRecord {
        status: Status {
            agent_jkt: thumbprint.to_string(),
            challenge: held_challenge,
            challenge_until: now + shared.authz.lifetime,
            expires_at: now + options.lifetime,
            interval: options.retry_after,
            // The 202 counts as the first answer: the agent waits `Retry-After` first.
            last_answer: now,
            phase: Phase::Waiting,
        },
        request: Arc::new(held),
    };
    let id = store::new_id();
    let ttl = std::time::Duration::from_secs(options.lifetime + shared.pending.grace());
    match shared
        .pending
        .backend
        .create(&id, record, ttl, options.capacity_bytes)
        .await
    {
        Ok(true) => {
            let max_result = options.max_result_bytes;
            // Shared by the polls of this replica; a clone is called each time.
            let inner = std::sync::Mutex::new(inner);
            let exec: store::Exec = Arc::new(move |request: Request<Bytes>| {
                let inner = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                Box::pin(execute(inner, request.map(ReqBody::from), max_result))
            });
            let runner = store::Runner {
                exec,
                requirement,
                uri: parts.uri,
                extensions: parts.extensions,
            };
            shared.pending.runners.insert(id.clone(), Arc::new(runner));
            pending_response(&shared, &id, options.retry_after, Some(&challenge))
        }
        Ok(false) => {
            tracing::debug!(target: "tower_aauth", "pending store full; answering the challenge instead");
            challenge_response(shared.hook(), &challenge, Generation::Draft11)
        }
        // Nothing was held: the agent may send the same request again.
        Err(error) => refused.mark(store_failure(&shared, error)),
    }
}

/// The URI the agent sent: the original one inside a nested axum router.
fn original_uri(uri: &http::Uri, extensions: &http::Extensions) -> http::Uri {
    #[cfg(feature = "axum")]
    if let Some(original) = extensions.get::<axum::extract::OriginalUri>() {
        return original.0.clone();
    }
    let _ = extensions;
    uri.clone()
}

/// Runs the held request through the route and collects its response; `None` when the
/// route failed or its response is over the bounds.
async fn execute<S, ReqBody, ResBody>(mut inner: S, request: Request<ReqBody>, max_result: usize) -> Option<Stored>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    if std::future::poll_fn(|cx| inner.poll_ready(cx)).await.is_err() {
        tracing::warn!(target: "tower_aauth", "a deferred route was not ready to run its held request");
        return None;
    }
    let Ok(response) = inner.call(request).await else {
        tracing::warn!(target: "tower_aauth", "a deferred route failed on its held request");
        return None;
    };
    let (parts, body) = response.into_parts();
    let stored = match Limited::new(body, max_result).collect().await {
        Ok(collected) => Stored::new(parts.status, parts.headers, collected.to_bytes()),
        Err(_) => None,
    };
    if stored.is_none() {
        tracing::warn!(target: "tower_aauth", "the response of a held request exceeds max_result_bytes or failed");
    }
    stored
}
