//! Pending records and the poll rules (see the module above for the rules themselves).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

use super::{DeferredOptions, Judged, judge};
use crate::challenge::{Challenge, Rejection, challenge_response, problem, with_body};
use crate::config::Shared;
use crate::guard::{Context, Requirement};
use crate::verifier::VerifiedRequest;
use crate::wire;

/// Runs a held request through its route; `None` when it failed.
pub(crate) type Exec = Box<dyn FnOnce(Request<Bytes>) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>> + Send>;

/// Seconds added to the interval on each `slow_down` (agents add 5 s: [AAuth draft -11,
/// "Deferred Responses"][draft-11]).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
const SLOW_DOWN_STEP: u64 = 5;
/// Bytes counted for a record besides its bodies.
const RECORD_OVERHEAD: usize = 1024;

/// The response of an executed held request.
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What the guard hands over when it defers a request.
pub(crate) struct Held {
    pub(crate) parts: http::request::Parts,
    pub(crate) body: Bytes,
    pub(crate) exec: Exec,
    pub(crate) agent_jkt: Arc<str>,
    pub(crate) requirement: Arc<Requirement>,
    pub(crate) challenge: Challenge,
}

enum State {
    Waiting {
        parts: Box<http::request::Parts>,
        body: Bytes,
        exec: Exec,
    },
    /// A poll is executing the held request.
    Running,
    /// Executed; repeats with the auth token `jti` get `result` until `until`.
    Done {
        jti: Option<String>,
        until: u64,
        result: Arc<Stored>,
    },
    /// A terminal answer was given.
    Gone,
}

struct Record {
    agent_jkt: Arc<str>,
    requirement: Arc<Requirement>,
    challenge: Challenge,
    /// When the current resource token expires.
    challenge_until: u64,
    state: State,
    expires_at: u64,
    interval: u64,
    last_answer: u64,
}

struct Entry {
    /// Wall-time lifetime in the cache, read by [`EntryExpiry`] on every (re)insertion.
    ttl_secs: AtomicU64,
    weight: AtomicU32,
    record: Mutex<Record>,
}

impl Entry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct EntryExpiry;

impl moka::Expiry<String, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(entry.ttl_secs.load(Ordering::Relaxed)))
    }

    fn expire_after_update(&self, _: &String, entry: &Arc<Entry>, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(Duration::from_secs(entry.ttl_secs.load(Ordering::Relaxed)))
    }
}

/// Every pending record, by id.
pub(crate) struct PendingStore {
    pub(crate) options: DeferredOptions,
    records: moka::sync::Cache<String, Arc<Entry>>,
    /// Bytes of the records held now: a new request is held only within
    /// [`DeferredOptions::capacity_bytes`], so a flood of requests that never get a grant
    /// cannot push out a record an agent is about to complete.
    held_bytes: Arc<AtomicU64>,
    /// Whether the application serves the pending URLs (it asked for the pending router,
    /// or declared that it answers them itself); until then nothing under the prefix is
    /// exempt from the layer's default requirement.
    served: AtomicBool,
}

impl PendingStore {
    pub(crate) fn new(options: DeferredOptions) -> Self {
        let held_bytes = Arc::new(AtomicU64::new(0));
        let released = held_bytes.clone();
        let records = moka::sync::Cache::builder()
            // The budget is enforced on admission (`create`); the cache's own bound is
            // only a backstop, so that it never evicts a live record to admit a new one.
            .max_capacity(options.capacity_bytes.saturating_mul(2))
            .weigher(|_: &String, entry: &Arc<Entry>| entry.weight.load(Ordering::Relaxed))
            .expire_after(EntryExpiry)
            .eviction_listener(move |_, entry: Arc<Entry>, cause| {
                // A replacement re-inserts the same record; its bytes were adjusted then.
                if cause != moka::notification::RemovalCause::Replaced {
                    released.fetch_sub(u64::from(entry.weight.load(Ordering::Relaxed)), Ordering::AcqRel);
                }
            })
            .build();
        PendingStore {
            options,
            records,
            held_bytes,
            served: AtomicBool::new(false),
        }
    }

    /// Records that the pending URLs are served from now on.
    pub(crate) fn mark_served(&self) {
        self.served.store(true, Ordering::Release);
    }

    /// Whether `path` is a pending URL this store could have issued, and the pending URLs
    /// are served: the only paths under the prefix that skip the default requirement.
    pub(crate) fn serves(&self, path: &str) -> bool {
        self.served.load(Ordering::Acquire) && path.strip_prefix(wire::path::PENDING_PREFIX).is_some_and(is_pending_id)
    }

    /// After a terminal answer, how long `408`/`410` stay distinguishable from `404`.
    fn grace(&self) -> u64 {
        self.options.lifetime.max(60)
    }

    /// Stores `held` and answers its `202`; gives it back when the store has no room
    /// for it (the caller answers the plain challenge: the agent resends the request with
    /// its auth token).
    pub(crate) fn create<B: From<Bytes>>(&self, shared: &Shared, held: Held) -> Result<Response<B>, Box<Held>> {
        let now = shared.clock.now();
        let weight = held.body.len()
            + held
                .parts
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        let weight = u32::try_from(weight + RECORD_OVERHEAD).unwrap_or(u32::MAX);
        let budget = self.options.capacity_bytes;
        let reserved = self
            .held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.saturating_add(u64::from(weight));
                (after <= budget).then_some(after)
            });
        if reserved.is_err() {
            tracing::debug!(target: "tower_aauth", "pending store full; answering the challenge instead");
            return Err(Box::new(held));
        }
        let id = new_id();
        let response = pending_response(shared, &id, self.options.retry_after, Some(&held.challenge));
        let entry = Entry {
            ttl_secs: AtomicU64::new(self.options.lifetime + self.grace()),
            weight: AtomicU32::new(weight),
            record: Mutex::new(Record {
                agent_jkt: held.agent_jkt,
                requirement: held.requirement,
                challenge: held.challenge,
                challenge_until: now + shared.authz.lifetime,
                state: State::Waiting {
                    parts: Box::new(held.parts),
                    body: held.body,
                    exec: held.exec,
                },
                expires_at: now + self.options.lifetime,
                interval: self.options.retry_after,
                // The 202 counts as the first answer: the agent waits `Retry-After` first.
                last_answer: now,
            }),
        };
        self.records.insert(id, Arc::new(entry));
        Ok(response)
    }

    /// Bytes the held records take now (what [`DeferredOptions::capacity_bytes`] bounds).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.records.run_pending_tasks();
        self.held_bytes.load(Ordering::Acquire)
    }
}

/// Length of an id: 16 bytes in unpadded base64url.
const ID_LEN: usize = 22;

/// 128 bits from the operating system's CSPRNG, base64url: the pending URL's secret part.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    crate::jose::b64url(bytes)
}

/// Whether `id` has the shape [`new_id`] gives: one path segment of unpadded base64url,
/// so never a dot segment, a `/` or a percent-encoded byte.
fn is_pending_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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
        return challenge_response(shared, &Challenge::AgentToken, generation);
    };
    let store = &shared.authz.pending;
    let id = poll
        .uri
        .path()
        .strip_prefix(wire::path::PENDING_PREFIX)
        .unwrap_or_default();
    let Some(entry) = store.records.get(id) else {
        return poll_problem(
            shared,
            StatusCode::NOT_FOUND,
            wire::poll::NOT_FOUND,
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
            wire::poll::SERVER_ERROR,
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
        let error = crate::Error::Forbidden {
            code: wire::poll::INVALID_REQUEST,
            detail: "this pending request belongs to another agent key",
        };
        return Step::Answer(crate::challenge::error_response(shared, &error));
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
                wire::poll::EXPIRED,
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
                wire::poll::SLOW_DOWN,
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
    let cx = Context {
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
        wire::poll::INVALID_CODE,
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
    let body = serde_json::to_vec(&serde_json::json!({ "status": wire::poll::PENDING })).unwrap_or_default();
    let mut response = Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let location = format!("{}{}{id}", shared.resource, wire::path::PENDING_PREFIX);
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = challenge {
        match challenge.header_value() {
            Ok(value) => headers.insert(wire::header::AAUTH_REQUIREMENT, value),
            Err(unbuildable) => return crate::challenge::error_response(shared, &unbuildable),
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
    let mut response = with_body(shared.authz.hook.as_ref(), rejection, || {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_have_the_pending_id_shape() {
        for _ in 0..64 {
            assert!(is_pending_id(&new_id()));
        }
    }

    #[test]
    fn nothing_but_one_segment_of_22_base64url_characters_is_a_pending_id() {
        let id = "AAAAAAAAAAAAAAAAAAAAAA";
        assert!(is_pending_id(id));
        for other in [
            "",
            "x",
            &id[1..],
            &format!("{id}A"),
            &format!("{id}/"),
            "AAAAAAAAAAAAAAAAAAAA..",
            "AAAAAAAAAAAAAAAAAAA%2e",
            "AAAAAAAAAAAAAAAAAAAA+/",
            "AAAAAAAAAAA/AAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(!is_pending_id(other), "{other:?}");
        }
    }
}
