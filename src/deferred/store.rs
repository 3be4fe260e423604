//! Pending records and the poll rules (see the module above for the rules themselves).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};

use crate::challenge::Challenge;
use crate::error::ConfigError;
use crate::guard::requirement::Requirement;
use crate::names;

/// Runs a held request through its route; `None` when it failed.
pub(crate) type Exec = Box<dyn FnOnce(Request<Bytes>) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>> + Send>;

/// Seconds added to the interval on each `slow_down` (agents add 5 s: [AAuth draft -11,
/// "Deferred Responses"][draft-11]).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
pub(super) const SLOW_DOWN_STEP: u64 = 5;
/// Bytes counted for a record besides its bodies.
pub(super) const RECORD_OVERHEAD: usize = 1024;

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

pub(super) enum State {
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

pub(super) struct Record {
    pub(super) agent_jkt: Arc<str>,
    pub(super) requirement: Arc<Requirement>,
    pub(super) challenge: Challenge,
    /// When the current resource token expires.
    pub(super) challenge_until: u64,
    pub(super) state: State,
    pub(super) expires_at: u64,
    pub(super) interval: u64,
    pub(super) last_answer: u64,
}

pub(super) struct Entry {
    /// Wall-time lifetime in the cache, read by [`EntryExpiry`] on every (re)insertion.
    pub(super) ttl_secs: AtomicU64,
    pub(super) weight: AtomicU32,
    pub(super) record: Mutex<Record>,
}

impl Entry {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
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

/// Limits of deferred delivery. Defaults: pending lifetime 300 s, `Retry-After` 5 s, held
/// bodies up to 64 KiB, results up to 1 MiB, 64 MiB for all records together.
#[derive(Debug, Clone)]
pub struct DeferredOptions {
    pub(crate) lifetime: u64,
    pub(crate) retry_after: u64,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_result_bytes: usize,
    pub(crate) capacity_bytes: u64,
}

impl Default for DeferredOptions {
    fn default() -> Self {
        DeferredOptions {
            lifetime: 300,
            retry_after: 5,
            max_body_bytes: 64 * 1024,
            max_result_bytes: 1024 * 1024,
            capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

impl DeferredOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seconds a held request waits for an auth token (1 to 3600).
    pub fn lifetime(mut self, seconds: u64) -> Self {
        self.lifetime = seconds;
        self
    }

    /// The `Retry-After` of `202` answers, in seconds: the polling interval (at most the
    /// lifetime).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The largest request body that is held; larger requests get the plain `401`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The largest response of a held request that is stored and returned.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// Bytes all records may use together (held bodies, stored results and a fixed
    /// overhead each). A request that would go beyond it is not held: it gets the plain
    /// `401` challenge, and the records already held are never evicted to make room.
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.lifetime == 0 || self.lifetime > 3600 {
            return Err(ConfigError::new(
                "the deferred lifetime must be between 1 and 3600 seconds",
            ));
        }
        if self.retry_after > self.lifetime {
            return Err(ConfigError::new(
                "the deferred Retry-After must not exceed the lifetime",
            ));
        }
        Ok(())
    }
}

/// Every pending record, by id.
pub(crate) struct PendingStore {
    pub(crate) options: DeferredOptions,
    pub(super) records: moka::sync::Cache<String, Arc<Entry>>,
    /// Bytes of the records held now: a new request is held only within
    /// [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes), so a flood of requests that never get a grant
    /// cannot push out a record an agent is about to complete.
    pub(super) held_bytes: Arc<AtomicU64>,
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
        self.served.load(Ordering::Acquire)
            && path
                .strip_prefix(names::path::PENDING_PREFIX)
                .is_some_and(is_pending_id)
    }

    /// After a terminal answer, how long `408`/`410` stay distinguishable from `404`.
    pub(super) fn grace(&self) -> u64 {
        self.options.lifetime.max(60)
    }

    /// Stores `held` and answers its `202`; gives it back when the store has no room
    /// for it (the caller answers the plain challenge: the agent resends the request with
    /// its auth token).
    /// `accepted` builds the `202` from the new id, the polling interval and the challenge.
    pub(crate) fn create<B>(
        &self,
        now: u64,
        challenge_lifetime: u64,
        held: Held,
        accepted: impl FnOnce(&str, u64, &Challenge) -> Response<B>,
    ) -> Result<Response<B>, Box<Held>> {
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
        let response = accepted(&id, self.options.retry_after, &held.challenge);
        let entry = Entry {
            ttl_secs: AtomicU64::new(self.options.lifetime + self.grace()),
            weight: AtomicU32::new(weight),
            record: Mutex::new(Record {
                agent_jkt: held.agent_jkt,
                requirement: held.requirement,
                challenge: held.challenge,
                challenge_until: now + challenge_lifetime,
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

    /// Bytes the held records take now (what [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes) bounds).
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
