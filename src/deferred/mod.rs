//! Deferred delivery: the [`DeferredPolicy`] of a guard that holds a request instead of
//! refusing it, the pending store and the polls (the rules are in the [`guard`](crate::guard)
//! module documentation, "Deferred delivery").

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
use crate::guard::requirement::{Requirement, RuleContext};
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
    /// [`guard`](crate::guard)); mount [`AAuth::pending_router`](crate::AAuth::pending_router) too.
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
        let cx = RuleContext::of_parts(request);
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
