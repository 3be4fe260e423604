//! Answering polls of pending URLs: the record's state machine (see the module
//! documentation of [`guard`](crate::guard)), run under the record's lock, then the held
//! request executed once outside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::store::{Entry, Exec, RECORD_OVERHEAD, SLOW_DOWN_STEP, State, Stored};
use super::{Judged, judge};
use crate::challenge::{Challenge, Rejection, challenge_response, problem, with_body};
use crate::guard::requirement::RuleContext;
use crate::names;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

/// What to do after the record's lock is released.
enum Step<B> {
    Answer(Response<B>),
    Execute {
        request: Request<Bytes>,
        exec: Exec,
        jti: Option<String>,
        until: u64,
    },
}

/// Answers one poll (the rules are in the module documentation).
pub(crate) async fn poll<B: From<Bytes>>(shared: &Arc<Shared>, poll: http::request::Parts) -> Response<B> {
    let Some(verified) = poll.extensions.get::<VerifiedRequest>() else {
        let generation = shared.profile.default_generation();
        return challenge_response(shared.hook(), &Challenge::AgentToken, generation);
    };
    let store = &shared.pending;
    let id = poll
        .uri
        .path()
        .strip_prefix(names::path::PENDING_PREFIX)
        .unwrap_or_default();
    let Some(entry) = store.records.get(id) else {
        return poll_problem(
            shared,
            StatusCode::NOT_FOUND,
            names::poll::NOT_FOUND,
            "no such pending request",
            None,
        );
    };
    let now = shared.clock.now();
    let step = decide(shared, &entry, id, &poll, verified, now);
    let (request, exec, jti, until) = match step {
        Step::Answer(response) => return response,
        Step::Execute {
            request,
            exec,
            jti,
            until,
        } => (request, exec, jti, until),
    };
    // If the poll is dropped mid-way the handler may have run in part: the record ends.
    let mut running = RunningGuard {
        entry: &entry,
        done: false,
    };
    let outcome = exec(request).await;
    running.done = true;
    let mut record = entry.lock();
    let Some(stored) = outcome else {
        record.state = State::Gone;
        return poll_problem(
            shared,
            StatusCode::INTERNAL_SERVER_ERROR,
            names::poll::SERVER_ERROR,
            "the held request could not be executed",
            None,
        );
    };
    let stored = Arc::new(stored);
    let response = replay(&stored);
    let weight = stored.body.len() + RECORD_OVERHEAD;
    record.state = State::Done {
        jti,
        until,
        result: stored,
    };
    drop(record);
    entry
        .ttl_secs
        .store(until.saturating_sub(now) + store.grace(), Ordering::Relaxed);
    let weight = u32::try_from(weight).unwrap_or(u32::MAX);
    let before = entry.weight.swap(weight, Ordering::AcqRel);
    store.held_bytes.fetch_add(u64::from(weight), Ordering::AcqRel);
    store.held_bytes.fetch_sub(u64::from(before), Ordering::AcqRel);
    // Re-inserting applies the new deadline and weight (the held body is gone).
    store.records.insert(id.to_owned(), entry.clone());
    response
}

struct RunningGuard<'a> {
    entry: &'a Entry,
    done: bool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.entry.lock().state = State::Gone;
        }
    }
}

fn decide<B: From<Bytes>>(
    shared: &Shared,
    entry: &Entry,
    id: &str,
    poll: &http::request::Parts,
    verified: &VerifiedRequest,
    now: u64,
) -> Step<B> {
    let mut record = entry.lock();
    if !crate::jose::thumbprints_match(&record.agent_jkt, &verified.key_thumbprint) {
        let error = crate::error::Error(crate::error::Kind::Forbidden {
            code: names::poll::INVALID_REQUEST,
            detail: "this pending request belongs to another agent key",
        });
        return Step::Answer(crate::challenge::error_response(shared.hook(), &error));
    }
    let claims = verified.token.as_deref().map(|t| &t.claims);
    match &record.state {
        State::Done { jti, until, result } => {
            let same = jti.is_some() && claims.and_then(|c| c.jti.as_ref()) == jti.as_ref();
            return Step::Answer(if same && now < *until {
                replay(result)
            } else {
                gone(shared)
            });
        }
        State::Gone => return Step::Answer(gone(shared)),
        State::Running => {
            return Step::Answer(pending_response(shared, id, record.interval, None));
        }
        State::Waiting { .. } if now >= record.expires_at => {
            record.state = State::Gone;
            return Step::Answer(poll_problem(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                names::poll::EXPIRED,
                "the pending request expired before an auth token was presented",
                None,
            ));
        }
        State::Waiting { .. } if now < record.last_answer + record.interval => {
            record.interval += SLOW_DOWN_STEP;
            record.last_answer = now;
            return Step::Answer(poll_problem(
                shared,
                StatusCode::TOO_MANY_REQUESTS,
                names::poll::SLOW_DOWN,
                "polled faster than Retry-After",
                Some(record.interval),
            ));
        }
        State::Waiting { .. } => {}
    }
    record.last_answer = now;
    let State::Waiting { parts, .. } = &record.state else {
        return Step::Answer(gone(shared));
    };
    // The held request is what is authorized; the poll brings the identity.
    let cx = RuleContext {
        verified: Some(verified),
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        extensions: &poll.extensions,
    };
    let reuse = (now < record.challenge_until).then_some(&record.challenge);
    match judge::<B>(shared, &record.requirement, &cx, &poll.extensions, reuse) {
        Judged::Answer(response) => Step::Answer(response),
        Judged::Defer(challenge) => {
            if reuse.is_none() {
                record.challenge = challenge;
                record.challenge_until = now + shared.authz.lifetime;
            }
            Step::Answer(pending_response(shared, id, record.interval, Some(&record.challenge)))
        }
        Judged::Serve => {
            let State::Waiting { mut parts, body, exec } = std::mem::replace(&mut record.state, State::Running) else {
                return Step::Answer(gone(shared));
            };
            parts.extensions.insert(verified.clone());
            Step::Execute {
                request: Request::from_parts(*parts, body),
                exec,
                jti: claims.and_then(|c| c.jti.clone()),
                until: claims.map_or(now, |c| c.exp),
            }
        }
    }
}

fn replay<B: From<Bytes>>(stored: &Stored) -> Response<B> {
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
fn poll_problem<B: From<Bytes>>(
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
