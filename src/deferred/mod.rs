//! Deferred delivery of the `auth-token` requirement ([AAuth draft -11, "Deferred
//! Responses" and "Auth Token Required"][draft-11]): instead of refusing with `401`, the
//! resource **holds** the request and executes it when the agent comes back with an auth
//! token.
//!
//! # Using it
//!
//! ```no_run
//! # use tower_aauth::AAuth;
//! # fn app(aauth: AAuth) -> axum::Router {
//! use axum::routing::post;
//! axum::Router::new()
//!     .route("/report", post(|| async { "done" })
//!         .route_layer(aauth.require_scopes(["report.write"]).deferred()))
//!     .merge(aauth.pending_router())   // serves /aauth/pending/{id}
//!     .merge(aauth.well_known_router())
//!     .layer(aauth.layer())
//! # }
//! ```
//!
//! A route opts in with [`GuardLayer::deferred`]; the store's limits are set once with
//! [`AAuthBuilder::deferred_delivery`] (defaults in [`DeferredOptions`]). Routes without the
//! modifier keep answering `401`.
//!
//! # The exchange
//!
//! 1. Where its guard would answer `401 requirement=auth-token; resource-token="…"`, a
//!    deferred route buffers the request (method, URI, headers, extensions, body up to
//!    [`DeferredOptions::max_body_bytes`]) and answers `202 Accepted` with `Location`
//!    (`{resource}/aauth/pending/{id}`, 128 random bits, same origin as the resource
//!    identifier), `Retry-After`, `Cache-Control: no-store`, the same `AAuth-Requirement`
//!    and `{"status":"pending"}`. A body over the cap, or a request answered in the demo
//!    generation (whose agents know no deferred delivery), gets the plain `401` instead.
//! 2. The agent polls the pending URL with a signed `GET`. The poll goes through the
//!    layer like any request (signature, token claims, revocation), and then:
//!    * unsigned → `401 requirement=agent-token`; unknown id → `404 not_found`;
//!    * signed by another key than the one that created it → `403 invalid_request`
//!      (nothing changes: the record is bound to the creating key's thumbprint);
//!    * past the pending lifetime → `408 expired`, and `410` afterwards;
//!    * sooner than `Retry-After` after the previous answer → `429 slow_down`, and the
//!      interval grows by five seconds;
//!    * a token satisfying the route's requirement (same evaluation as the guard, with
//!      the poll's identity and the held request's method, URI and headers) → the held
//!      request runs, **once**, with the poll's [`VerifiedRequest`] in its extensions,
//!      and its response is the poll's answer;
//!    * otherwise `202` pending again, carrying the same resource token while it is valid
//!      and a freshly minted one after it expired; a refusal the guard would give
//!      (policy `403`, scope ceiling, identity challenge) is given as is.
//! 3. The result is kept, keyed by the auth token's `jti`, until that token's `exp`: a
//!    repeated poll with the same token gets the stored response without running the
//!    handler again, so a repeated poll never runs the request twice. Any other poll of a
//!    finished request gets `410`.
//!
//! # Bounds
//!
//! Records live in a [`moka`] cache weighted by their bytes (held body plus stored
//! result, capped by [`DeferredOptions::capacity_bytes`]). The cap is enforced when a
//! request would be held: beyond it the request gets the plain `401` challenge, so
//! requests that never obtain a grant cannot evict the records of agents completing
//! theirs; each entry expires on its own
//! deadline (pending lifetime, or the auth token's `exp`) plus a grace period during which
//! `408`/`410` can still be told apart from `404`. Results above
//! [`DeferredOptions::max_result_bytes`] are answered `500 server_error`. Deadlines are
//! judged with the configured [`Clock`](crate::Clock); memory is reclaimed on wall time.
//!
//! Pending URLs are exempt from the layer's default requirement, like the well-known
//! documents (the poll carries its own requirement), once [`AAuth::pending_router`] or
//! [`AAuth::serve_pending_urls`] was called, and only in the exact shape ids are issued
//! in: nothing else under `/aauth/pending/` skips it.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

mod poll;
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
use crate::guard::requirement::{Context, Requirement};
use crate::profile::Generation;
use crate::replay::store::Refused;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

pub(crate) use poll::poll;
pub use store::DeferredOptions;
pub(crate) use store::PendingStore;
use store::{Exec, Stored};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl GuardLayer {
    /// Delivers this guard's `auth-token` requirement as `202 Accepted` and holds the
    /// request until a poll of its pending URL presents a sufficient auth token (see
    /// [`crate::deferred`]); mount [`AAuth::pending_router`] too.
    pub fn deferred(self) -> DeferredLayer {
        let RequirementPolicy { shared, requirement } = self.policy;
        GuardLayer {
            policy: DeferredPolicy { shared, requirement },
        }
    }
}

/// The router of the pending URLs ([`AAuth::pending_router`](crate::AAuth::pending_router)).
#[cfg(feature = "axum")]
pub(crate) fn router<S>(shared: Arc<Shared>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    shared.pending.mark_served();
    let path = format!("{}{{id}}", crate::names::path::PENDING_PREFIX);
    axum::Router::new().route(
        &path,
        axum::routing::get(move |request: Request<axum::body::Body>| {
            let shared = shared.clone();
            async move { poll::poll::<axum::body::Body>(&shared, request.into_parts().0).await }
        }),
    )
}

/// A guard that holds requests instead of refusing them: a [`GuardLayer`] applying
/// [`DeferredPolicy`]; made by [`GuardLayer::deferred`].
pub type DeferredLayer = GuardLayer<DeferredPolicy>;

/// The rule of a [`DeferredLayer`]: the requirement guard's, with its `auth-token`
/// challenge delivered as a `202` hold.
#[derive(Clone, Debug)]
pub struct DeferredPolicy {
    shared: Arc<Shared>,
    requirement: Arc<Requirement>,
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
    type Hold = Challenge;

    fn check(&self, request: &Parts) -> Verdict<ResBody, Challenge> {
        let cx = Context::of_parts(request);
        match judge(&self.shared, &self.requirement, &cx, &request.extensions, None) {
            Judged::Serve => Verdict::Allow,
            Judged::Answer(response) => Verdict::Answer(response),
            Judged::Defer(challenge) => Verdict::Hold(challenge),
        }
    }

    fn hold(&self, challenge: Challenge, inner: &mut S, request: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        let (shared, requirement, inner) = (self.shared.clone(), self.requirement.clone(), take_ready(inner));
        Box::pin(async move { Ok(hold(shared, requirement, challenge, inner, request).await) })
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
    cx: &Context<'_>,
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

/// Buffers the request, stores it with a way to run it later, and answers `202`.
async fn hold<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    requirement: Arc<Requirement>,
    challenge: Challenge,
    inner: S,
    request: Request<ReqBody>,
) -> Response<ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
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
    let Some(thumbprint) = parts
        .extensions
        .get::<VerifiedRequest>()
        .map(|v| v.key_thumbprint.clone())
    else {
        // `judge` defers only verified requests.
        return refused.mark(challenge_response(shared.hook(), &challenge, Generation::Draft11));
    };
    let body = match Limited::new(body, options.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        // Too large to hold (or unreadable): the agent resends it with the auth token.
        Err(_) => return refused.mark(challenge_response(shared.hook(), &challenge, Generation::Draft11)),
    };
    let max_result = options.max_result_bytes;
    let exec: Exec = Box::new(move |request: Request<Bytes>| Box::pin(execute(inner, request, max_result)));
    let record = store::Held {
        parts,
        body,
        exec,
        agent_jkt: thumbprint,
        requirement,
        challenge,
    };
    let accepted = |id: &str, retry_after: u64, challenge: &Challenge| {
        poll::pending_response(&shared, id, retry_after, Some(challenge))
    };
    match shared
        .pending
        .create(shared.clock.now(), shared.authz.lifetime, record, accepted)
    {
        Ok(accepted) => accepted,
        Err(held) => challenge_response(shared.hook(), &held.challenge, Generation::Draft11),
    }
}

/// Runs the held request through the route and collects its response.
async fn execute<S, ReqBody, ResBody>(mut inner: S, request: Request<Bytes>, max_result: usize) -> Option<Stored>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: From<Bytes>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    if std::future::poll_fn(|cx| inner.poll_ready(cx)).await.is_err() {
        tracing::warn!(target: "tower_aauth", "a deferred route was not ready to run its held request");
        return None;
    }
    let Ok(response) = inner.call(request.map(ReqBody::from)).await else {
        tracing::warn!(target: "tower_aauth", "a deferred route failed on its held request");
        return None;
    };
    let (parts, body) = response.into_parts();
    match Limited::new(body, max_result).collect().await {
        Ok(collected) => Some(Stored {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
        }),
        Err(_) => {
            tracing::warn!(target: "tower_aauth", "the response of a held request exceeds max_result_bytes or failed");
            None
        }
    }
}
