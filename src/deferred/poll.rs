//! Answering polls of pending URLs, on whichever replica they reach: the record's state
//! machine over a [`PendingBackend`](super::store::PendingBackend) (every change a
//! compare-and-swap), and the re-dispatch of the held request through the application
//! (see [`begin`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::record::{HeldChallenge, HeldRequest, Phase, Status, Stored};
use super::store::{Runner, SLOW_DOWN_STEP, StoreError, Versioned, pending_id};
use super::{Judged, judge};
use crate::challenge::{Challenge, Rejection, challenge_response, problem, with_body};
use crate::future::BoxFuture;
use crate::guard::requirement::RuleContext;
use crate::names;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

/// Compare-and-swap attempts before a poll racing others is told to come back.
const ATTEMPTS: usize = 4;

/// Marks a held request the layer re-dispatches for a poll. Only code in this process
/// can put it in a request's extensions: the layer passes such a request to the
/// application without verifying its signature again (consumed when it was held), and
/// the deferred guard on its route judges it with the poll's identity.
#[derive(Clone)]
pub struct Resumed(pub(crate) Arc<Resume>);

pub(crate) struct Resume {
    /// The pending id.
    pub(crate) id: String,
    /// The polling interval to answer a `202` with.
    pub(crate) interval: u64,
    /// The record's challenge while its resource token is valid.
    pub(crate) reuse: Option<Challenge>,
    outcome: Mutex<Outcome>,
}

/// What the deferred guard did with a re-dispatched request.
pub(crate) enum Outcome {
    /// No deferred guard saw it (the route has none).
    Untouched,
    /// A deferred guard took it and runs the route.
    Taken,
    /// The route ran; its response, collected.
    Ran(Arc<Stored>),
    /// The route failed, or its response was over the bounds.
    Failed,
    /// Not yet authorized: `202` again, with a freshly minted challenge if `Some`.
    Deferred(Option<Challenge>),
    /// Refused by the guard's rule (policy, ceiling, identity): the record waits on.
    Answered,
    /// It reached the pending route instead of the application: the layer wraps single
    /// routes (axum's `Router::layer`), not the router. Nothing ran; the record waits on.
    Unroutable,
}

impl Resumed {
    /// The first deferred guard to see the request takes it; `false` for any other.
    pub(crate) fn take(&self) -> bool {
        let mut outcome = self.0.lock();
        let first = matches!(*outcome, Outcome::Untouched);
        if first {
            *outcome = Outcome::Taken;
        }
        first
    }

    pub(crate) fn set(&self, outcome: Outcome) {
        *self.0.lock() = outcome;
    }
}

impl Resume {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first half of a poll: an answer, or the held request to re-dispatch.
pub(crate) enum Begun {
    Answer(Response<Bytes>),
    Dispatch(Box<(Request<Bytes>, Ticket)>),
}

/// A poll that took its record (`Running`): what it must write back once the
/// application answered the re-dispatched request.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    id: String,
    /// The record's version after the claim.
    version: u64,
    status: Status,
    resumed: Resumed,
    jti: Option<String>,
    until: u64,
}

/// Answers a poll up to the re-dispatch (the rules are in the [`guard`](crate::guard)
/// module documentation). `path` is the path the agent signed.
pub(crate) async fn begin(shared: Arc<Shared>, poll: http::request::Parts, path: String) -> Begun {
    let Some(verified) = poll.extensions.get::<VerifiedRequest>() else {
        let generation = shared.profile.default_generation();
        return Begun::Answer(challenge_response(shared.hook(), &Challenge::AgentToken, generation));
    };
    let id = pending_id(&path).unwrap_or_default();
    // A pending URL of resource-managed interaction ([`crate::session`]).
    if let Some(answer) = crate::session::interaction::poll(&shared, id, verified).await {
        return Begun::Answer(answer);
    }
    let now = shared.clock.now();
    let mut interval = shared.pending.options.retry_after;
    for _ in 0..ATTEMPTS {
        let versioned = match shared.pending.backend.status(id).await {
            Ok(Some(versioned)) => versioned,
            Ok(None) => {
                return Begun::Answer(poll_problem(
                    &shared,
                    StatusCode::NOT_FOUND,
                    names::poll::NOT_FOUND,
                    "no such pending request",
                    None,
                ));
            }
            Err(error) => return Begun::Answer(store_failure(&shared, error)),
        };
        interval = versioned.status.interval;
        match step(&shared, id, versioned, verified, &poll.extensions, now).await {
            Ok(Some(begun)) => return begun,
            // Another poll changed the record in between: read it again.
            Ok(None) => continue,
            Err(error) => return Begun::Answer(store_failure(&shared, error)),
        }
    }
    Begun::Answer(pending_response(&shared, id, interval, None))
}

/// One attempt on the record as read; `None` when a compare-and-swap lost a race.
async fn step(
    shared: &Arc<Shared>,
    id: &str,
    Versioned { version, mut status }: Versioned,
    verified: &VerifiedRequest,
    poll_extensions: &http::Extensions,
    now: u64,
) -> Result<Option<Begun>, StoreError> {
    let backend = &shared.pending.backend;
    if !crate::jose::thumbprints_match(&status.agent_jkt, &verified.key_thumbprint) {
        let error = crate::error::Error(crate::error::Kind::Forbidden {
            code: names::poll::INVALID_REQUEST,
            detail: "this pending request belongs to another agent key",
        });
        return Ok(Some(Begun::Answer(crate::challenge::error_response(
            shared.hook(),
            &error,
        ))));
    }
    let claims = verified.token.as_deref().map(|t| &t.claims);
    let answer = |response| Ok(Some(Begun::Answer(response)));
    match status.phase.clone() {
        Phase::Done { jti, until } => {
            let same = jti.is_some() && claims.and_then(|c| c.jti.as_ref()) == jti.as_ref();
            if same && now < until {
                return match backend.result(id).await? {
                    Some(stored) => answer(replay(&stored)),
                    None => answer(gone(shared)),
                };
            }
            answer(gone(shared))
        }
        Phase::Gone => answer(gone(shared)),
        Phase::Running { since } if now >= since.saturating_add(shared.pending.options.lifetime) => {
            // The replica running it never reported back (it stopped, or its store
            // write failed): the request may have run; it never runs again.
            status.phase = Phase::Gone;
            if !backend.update(id, version, &status).await? {
                return Ok(None);
            }
            tracing::warn!(target: "tower_aauth", "a held request's run never reported back; the pending request ends");
            answer(poll_problem(
                shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                names::poll::SERVER_ERROR,
                "the held request's run was interrupted",
                None,
            ))
        }
        Phase::Running { .. } => answer(pending_response(shared, id, status.interval, None)),
        Phase::Waiting if now >= status.expires_at => {
            status.phase = Phase::Gone;
            if !backend.update(id, version, &status).await? {
                return Ok(None);
            }
            answer(poll_problem(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                names::poll::EXPIRED,
                "the pending request expired before an auth token was presented",
                None,
            ))
        }
        Phase::Waiting if now < status.last_answer.saturating_add(status.interval) => {
            status.interval += SLOW_DOWN_STEP;
            status.last_answer = now;
            if !backend.update(id, version, &status).await? {
                return Ok(None);
            }
            answer(poll_problem(
                shared,
                StatusCode::TOO_MANY_REQUESTS,
                names::poll::SLOW_DOWN,
                "polled faster than Retry-After",
                Some(status.interval),
            ))
        }
        Phase::Waiting => {
            status.last_answer = now;
            status.phase = Phase::Running { since: now };
            let Some(held) = backend.claim(id, version, &status).await? else {
                return Ok(None);
            };
            let reuse = (now < status.challenge_until).then(|| status.challenge.challenge());
            let jti = claims.and_then(|c| c.jti.clone());
            let until = claims.map_or(now, |c| c.exp);
            if let Some(runner) = shared.pending.runners.get(id) {
                // Held by this replica: judged and run here, with its own extensions.
                let run = Run {
                    id,
                    held: &held,
                    verified,
                    poll_extensions,
                    reuse,
                    interval: status.interval,
                };
                let (outcome, response) = run.here(shared, &runner).await;
                write_back(shared, id, version + 1, status, outcome, jti, until).await;
                return answer(response);
            }
            let resumed = Resumed(Arc::new(Resume {
                id: id.to_owned(),
                interval: status.interval,
                reuse,
                outcome: Mutex::new(Outcome::Untouched),
            }));
            let request = rebuild(&held, verified.clone(), resumed.clone());
            let ticket = Ticket {
                shared: shared.clone(),
                id: id.to_owned(),
                version: version + 1,
                status,
                resumed,
                jti,
                until,
            };
            Ok(Some(Begun::Dispatch(Box::new((request, ticket)))))
        }
    }
}

/// The held request as the application receives it again: its method, URI, kept headers
/// and body, with the poll's identity. No other extension is carried over (neither the
/// held request's, which stayed on the replica that held it, nor the poll's).
fn rebuild(held: &HeldRequest, verified: VerifiedRequest, resumed: Resumed) -> Request<Bytes> {
    let mut request = Request::new(held.body.clone());
    *request.method_mut() = held.method.clone();
    *request.uri_mut() = held.uri.clone();
    *request.headers_mut() = held.headers.clone();
    request.extensions_mut().insert(verified);
    request.extensions_mut().insert(resumed);
    request
}

impl Ticket {
    /// Writes back what the deferred guard did with the request: its result (kept for
    /// the auth token's `jti` until its `exp`), the record waiting again, or its end.
    /// A failed write is logged; the poll's answer stands, and the record is judged
    /// interrupted after the pending lifetime (never run again).
    pub(crate) fn finish(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Ticket {
                shared,
                id,
                version,
                status,
                resumed,
                jti,
                until,
            } = self;
            let outcome = std::mem::replace(&mut *resumed.0.lock(), Outcome::Taken);
            write_back(&shared, &id, version, status, outcome, jti, until).await;
        })
    }
}

/// A held request taken by a poll on the replica that held it.
struct Run<'a> {
    id: &'a str,
    held: &'a HeldRequest,
    verified: &'a VerifiedRequest,
    poll_extensions: &'a http::Extensions,
    reuse: Option<Challenge>,
    interval: u64,
}

impl Run<'_> {
    /// The deferred guard's judgement with the poll's identity and the held request's
    /// method, URI and headers, then the route, as the guard does for a re-dispatch.
    async fn here(self, shared: &Shared, runner: &Runner) -> (Outcome, Response<Bytes>) {
        let cx = RuleContext {
            verified: Some(self.verified),
            method: &self.held.method,
            uri: &self.held.uri,
            headers: &self.held.headers,
            extensions: self.poll_extensions,
        };
        let reuse = self.reuse.as_ref();
        match judge::<Bytes>(shared, &runner.requirement, &cx, self.poll_extensions, reuse) {
            Judged::Answer(response) => (Outcome::Answered, response),
            Judged::Defer(challenge) => {
                let response = pending_response(shared, self.id, self.interval, Some(&challenge));
                (Outcome::Deferred(reuse.is_none().then_some(challenge)), response)
            }
            Judged::Serve => {
                let mut request = Request::new(self.held.body.clone());
                *request.method_mut() = self.held.method.clone();
                *request.uri_mut() = runner.uri.clone();
                *request.headers_mut() = self.held.headers.clone();
                *request.extensions_mut() = runner.extensions.clone();
                request.extensions_mut().insert(self.verified.clone());
                match (runner.exec)(request).await {
                    Some(stored) => {
                        let response = replay(&stored);
                        (Outcome::Ran(Arc::new(stored)), response)
                    }
                    None => (Outcome::Failed, not_executed(shared)),
                }
            }
        }
    }
}

/// The answer for a held request whose route failed or answered over the bounds.
pub(super) fn not_executed<B: From<Bytes>>(shared: &Shared) -> Response<B> {
    poll_problem(
        shared,
        StatusCode::INTERNAL_SERVER_ERROR,
        names::poll::SERVER_ERROR,
        "the held request could not be executed",
        None,
    )
}

/// Writes back what became of a taken record: its result (kept for the auth token's
/// `jti` until its `exp`), the record waiting again, or its end. A failed write is
/// logged; the poll's answer stands, and the record is judged interrupted after the
/// pending lifetime (never run again).
async fn write_back(
    shared: &Shared,
    id: &str,
    version: u64,
    mut status: Status,
    outcome: Outcome,
    jti: Option<String>,
    until: u64,
) {
    let now = shared.clock.now();
    let backend = &shared.pending.backend;
    let written = match outcome {
        Outcome::Ran(stored) => {
            status.phase = Phase::Done { jti, until };
            let ttl = until.saturating_sub(now) + shared.pending.grace();
            shared.pending.runners.invalidate(id);
            backend
                .finish(id, version, &status, stored, Duration::from_secs(ttl))
                .await
        }
        Outcome::Deferred(fresh) => {
            status.phase = Phase::Waiting;
            if let Some(fresh) = fresh.as_ref().and_then(HeldChallenge::of) {
                status.challenge = fresh;
                status.challenge_until = now + shared.authz.lifetime;
            }
            backend.update(id, version, &status).await
        }
        Outcome::Answered | Outcome::Unroutable => {
            status.phase = Phase::Waiting;
            backend.update(id, version, &status).await
        }
        Outcome::Untouched | Outcome::Taken | Outcome::Failed => {
            if matches!(outcome, Outcome::Untouched) {
                tracing::warn!(
                    target: "tower_aauth",
                    "a held request was re-dispatched to a route without a deferred guard; the pending request ends"
                );
            }
            shared.pending.runners.invalidate(id);
            status.phase = Phase::Gone;
            backend.update(id, version, &status).await
        }
    };
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(target: "tower_aauth", "a pending record changed while its poll ran"),
        Err(error) => tracing::warn!(target: "tower_aauth", ?error, "a pending record could not be written back"),
    }
}

/// The poll of a pending URL that the layer did not answer: unsigned (no layer, or an
/// unsigned poll) asks for an agent token; anything else means the layer is not the
/// outermost service, the only place a held request can be re-dispatched from.
pub(crate) fn fallback<B: From<Bytes>>(shared: &Shared, poll: &http::request::Parts) -> Response<B> {
    if let Some(resumed) = poll.extensions.get::<Resumed>() {
        resumed.set(Outcome::Unroutable);
        tracing::error!(
            target: "tower_aauth",
            "a request held by another replica cannot be re-dispatched: the AAuth layer wraps single routes \
             (Router::layer), not the whole application"
        );
        return poll_problem(
            shared,
            StatusCode::INTERNAL_SERVER_ERROR,
            names::poll::SERVER_ERROR,
            "the held request cannot be run by this replica",
            None,
        );
    }
    if poll.extensions.get::<VerifiedRequest>().is_none() {
        let generation = shared.profile.default_generation();
        return challenge_response(shared.hook(), &Challenge::AgentToken, generation);
    }
    tracing::error!(
        target: "tower_aauth",
        "a signed poll of a pending URL reached the pending router: the AAuth layer answers polls, and must wrap the whole application"
    );
    poll_problem(
        shared,
        StatusCode::INTERNAL_SERVER_ERROR,
        names::poll::SERVER_ERROR,
        "the pending URL is answered by the AAuth layer",
        None,
    )
}

/// `503` (with `Retry-After`) for an unreachable store; `500` for a record or reply that
/// does not decode.
pub(crate) fn store_failure<B: From<Bytes>>(shared: &Shared, error: StoreError) -> Response<B> {
    match error {
        StoreError::Unavailable => crate::challenge::error_response(
            shared.hook(),
            &crate::replay::store::unavailable("the pending store is unreachable"),
        ),
        StoreError::Corrupt(corrupt) => {
            tracing::error!(target: "tower_aauth", what = corrupt.0, "a pending record does not decode; refusing");
            poll_problem(
                shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                names::poll::SERVER_ERROR,
                "the pending request cannot be read",
                None,
            )
        }
    }
}

pub(super) fn replay<B: From<Bytes>>(stored: &Stored) -> Response<B> {
    let mut response = Response::new(B::from(stored.body.clone()));
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers.clone();
    response
}

fn gone<B: From<Bytes>>(shared: &Shared) -> Response<B> {
    poll_problem(
        shared,
        StatusCode::GONE,
        names::poll::INVALID_CODE,
        "this pending request is over",
        None,
    )
}

/// `202` with `Location`, `Retry-After`, `Cache-Control: no-store`, the challenge (if any)
/// and `{"status":"pending"}`.
pub(crate) fn pending_response<B: From<Bytes>>(
    shared: &Shared,
    id: &str,
    retry_after: u64,
    challenge: Option<&Challenge>,
) -> Response<B> {
    let body = serde_json::to_vec(&serde_json::json!({ "status": names::poll::PENDING })).unwrap_or_default();
    let mut response = Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let location = format!("{}{}{id}", shared.resource, names::path::PENDING_PREFIX);
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = challenge {
        match challenge.header_value() {
            Ok(value) => headers.insert(names::header::AAUTH_REQUIREMENT, value),
            Err(unbuildable) => return crate::challenge::error_response(shared.hook(), &unbuildable),
        };
    }
    response
}

/// A problem+json answer of the pending URL, its body shaped by the rejection hook.
pub(super) fn poll_problem<B: From<Bytes>>(
    shared: &Shared,
    status: StatusCode,
    code: &'static str,
    detail: &'static str,
    retry_after: Option<u64>,
) -> Response<B> {
    let rejection = Rejection {
        status,
        code,
        detail,
        requirement: None,
    };
    let mut response = with_body(shared.hook(), rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            problem(status, code, detail),
        )
    });
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
