//! The pending store: [`DeferredOptions`], the [`PendingBackend`] trait a record store
//! implements (in process: [`LocalStore`]; shared: the Redis store), and the ids.
//!
//! A backend keeps records as data ([`record`](super::record)) and changes them only by
//! compare-and-swap on a version number, so that the state machine in
//! [`poll`](super::poll) is the same whichever store holds the record, and two replicas
//! polling one record at once cannot both take it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::record::{Corrupt, HeldRequest, NewRecord, Status, Stored};
use crate::error::ConfigError;
use crate::future::BoxFuture;
use crate::guard::requirement::Requirement;
use crate::names;

/// Seconds added to the interval on each `slow_down` (agents add 5 s: [AAuth draft -11,
/// "Deferred Responses"][draft-11]).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
pub(super) const SLOW_DOWN_STEP: u64 = 5;

/// Why a store could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// Unreachable, failed or too slow: `503` with `Retry-After`.
    Unavailable,
    /// A record or a reply that does not decode: `500`, and nothing runs.
    Corrupt(Corrupt),
}

impl From<Corrupt> for StoreError {
    fn from(corrupt: Corrupt) -> Self {
        StoreError::Corrupt(corrupt)
    }
}

/// A record's status and the version a change must name.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) version: u64,
    pub(crate) status: Status,
}

/// Where pending records live. Every change is a compare-and-swap on the record's
/// version: it applies only if nobody changed the record since it was read, and bumps the
/// version. Times to live are wall time; the record's own deadlines are in its status.
pub(crate) trait PendingBackend: Send + Sync + std::fmt::Debug {
    /// Stores a new record (version 1) if its bytes fit within `capacity`; `Ok(false)` when
    /// they do not.
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: NewRecord,
        ttl: Duration,
        capacity: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The record's status, `None` when there is no such record.
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>>;

    /// Replaces the status if the version is still `version`.
    fn update<'a>(&'a self, id: &'a str, version: u64, status: &'a Status) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// [`PendingBackend::update`], returning the held request when it applied.
    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
    ) -> BoxFuture<'a, Result<Option<Arc<HeldRequest>>, StoreError>>;

    /// [`PendingBackend::update`] that also drops the held request, stores `result` and
    /// gives the record `ttl` more.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
        result: Arc<Stored>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The stored result.
    fn result<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<Stored>>, StoreError>>;

    /// Bytes this store counts now, when it can tell without I/O.
    fn held_bytes(&self) -> u64;
}

/// Where held (`202`) requests live when every replica must see them
/// ([`DeferredOptions::store`]; Redis: [`RedisPendingStore`](crate::RedisPendingStore)).
///
/// A record is opaque bytes to the store: a status (small, changed on every step), the
/// held request (written once, handed out once) and, once it ran, its result. Every
/// change is a compare-and-swap on the record's version, which the store keeps: a change
/// naming another version applies nothing, so that of two replicas taking one record at
/// once exactly one wins. The crate encodes, bounds and decodes the bytes; a store never
/// interprets them.
pub trait SharedPendingStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new record (version 1) living `ttl`, unless the bytes of every live record
    /// plus `record.weight` would exceed `capacity` (then `Ok(false)`); the store counts
    /// the weights of the records it holds, across every replica.
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: PendingWrite<'a>,
        ttl: Duration,
        capacity: u64,
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>>;

    /// The record's version and status, `None` when there is no such record.
    #[allow(clippy::type_complexity)] // a pair, named by this doc
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>, PendingStoreError>>;

    /// Replaces the status and raises the version, if the version is still `version`.
    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>>;

    /// [`update`](Self::update), answering the held request's bytes when it applied.
    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, PendingStoreError>>;

    /// [`update`](Self::update) that also drops the held request, stores `result` (its
    /// weight replacing the record's) and gives the record `ttl` more.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
        result: PendingWrite<'a>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>>;

    /// The stored result's bytes.
    fn result<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, PendingStoreError>>;
}

/// Bytes written to a [`SharedPendingStore`]: a status and a held request (on
/// [`create`](SharedPendingStore::create)), or a status and a result (on
/// [`finish`](SharedPendingStore::finish)), and the weight the store counts for it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PendingWrite<'a> {
    /// The record's status.
    pub status: &'a [u8],
    /// The held request, or the result.
    pub data: &'a [u8],
    /// The bytes counted against the capacity.
    pub weight: u64,
}

/// Why a [`SharedPendingStore`] could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingStoreError {
    /// Unreachable, failed or too slow: the layer answers `503` with `Retry-After`, and
    /// nothing is held or run.
    Unavailable,
    /// The store holds something of another shape than it was given (a key of another
    /// type, a missing field): `500`, and nothing runs.
    Corrupt,
}

/// A [`SharedPendingStore`] as the crate's backend: the bytes encoded, bounded and
/// decoded here, every operation timed.
#[derive(Debug)]
pub(crate) struct SharedBackend {
    store: Arc<dyn SharedPendingStore>,
    /// The largest held request body, and result body (from the options).
    max_request: usize,
    max_result: usize,
}

impl SharedBackend {
    async fn timed<T>(
        op: crate::metrics::Op,
        call: BoxFuture<'_, Result<T, PendingStoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let answer = call.await;
        crate::metrics::store_waited(crate::metrics::Store::Pending, op, started, answer.is_ok());
        answer.map_err(|error| match error {
            PendingStoreError::Unavailable => StoreError::Unavailable,
            PendingStoreError::Corrupt => StoreError::Corrupt(Corrupt("the store's reply")),
        })
    }
}

impl PendingBackend for SharedBackend {
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: NewRecord,
        ttl: Duration,
        capacity: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (status, request) = (record.status.encode(), record.request.encode());
            let write = PendingWrite {
                status: &status,
                data: &request,
                weight: record.request.weight(),
            };
            Self::timed(crate::metrics::Op::Insert, self.store.create(id, write, ttl, capacity)).await
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>> {
        Box::pin(async move {
            let Some((version, status)) = Self::timed(crate::metrics::Op::Read, self.store.status(id)).await? else {
                return Ok(None);
            };
            if status.len() > super::record::MAX_STATUS_BYTES {
                return Err(Corrupt("status over its bound").into());
            }
            Ok(Some(Versioned {
                version,
                status: Status::decode(&status)?,
            }))
        })
    }

    fn update<'a>(&'a self, id: &'a str, version: u64, status: &'a Status) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let status = status.encode();
            Self::timed(crate::metrics::Op::Write, self.store.update(id, version, &status)).await
        })
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
    ) -> BoxFuture<'a, Result<Option<Arc<HeldRequest>>, StoreError>> {
        Box::pin(async move {
            let status = status.encode();
            match Self::timed(crate::metrics::Op::Write, self.store.claim(id, version, &status)).await? {
                None => Ok(None),
                // Taken: the record is `Running` now whatever the bytes say, so a request that
                // does not decode is never run, by this replica or any other.
                Some(bytes) => Ok(Some(Arc::new(HeldRequest::decode(&bytes, self.max_request)?))),
            }
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
        result: Arc<Stored>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (status, encoded) = (status.encode(), result.encode());
            let write = PendingWrite {
                status: &status,
                data: &encoded,
                weight: result.weight(),
            };
            Self::timed(
                crate::metrics::Op::Write,
                self.store.finish(id, version, &status, write, ttl),
            )
            .await
        })
    }

    fn result<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<Stored>>, StoreError>> {
        Box::pin(async move {
            match Self::timed(crate::metrics::Op::Read, self.store.result(id)).await? {
                None => Ok(None),
                Some(bytes) => Ok(Some(Arc::new(Stored::decode(&bytes, self.max_result)?))),
            }
        })
    }

    /// Not known without a round trip: the store counts the shared bytes.
    fn held_bytes(&self) -> u64 {
        0
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
    /// The shared store, when records must be seen by every replica.
    pub(crate) shared: Option<Arc<dyn SharedPendingStore>>,
}

impl Default for DeferredOptions {
    fn default() -> Self {
        DeferredOptions {
            lifetime: 300,
            retry_after: 5,
            max_body_bytes: 64 * 1024,
            max_result_bytes: 1024 * 1024,
            capacity_bytes: 64 * 1024 * 1024,
            shared: None,
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

    /// Keeps the pending records in a store every replica shares (Redis:
    /// [`RedisPendingStore`](crate::RedisPendingStore), feature `redis`) instead of in this
    /// process: a request held by one replica can be polled on any other (see
    /// [`guard`](crate::guard), "Deferred delivery across replicas"). The capacity then
    /// bounds the bytes of all replicas' records together.
    pub fn store(mut self, store: impl SharedPendingStore) -> Self {
        self.shared = Some(Arc::new(store));
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

/// Runs a held request through the route that held it (the service inside its deferred
/// guard); `None` when it failed or its response is over the bounds.
pub(crate) type Exec = Arc<dyn Fn(http::Request<bytes::Bytes>) -> BoxFuture<'static, Option<Stored>> + Send + Sync>;

/// What the replica that held a request keeps of it in process, beside the record: the
/// route's service and rule, and the held request's extensions (axum's path parameters
/// among them). A poll reaching this replica runs the request with it, under any layering;
/// a poll reaching another replica re-dispatches the record's data through that replica's
/// application instead.
pub(crate) struct Runner {
    pub(crate) exec: Exec,
    pub(crate) requirement: Arc<Requirement>,
    /// The URI as the route saw it (inside a nested router, without the prefix).
    pub(crate) uri: http::Uri,
    pub(crate) extensions: http::Extensions,
}

/// Every pending record, by id: the options, the backend and whether the pending URLs
/// are served.
pub(crate) struct PendingStore {
    pub(crate) options: DeferredOptions,
    pub(crate) backend: Arc<dyn PendingBackend>,
    /// The runners of the requests this replica held, for the pending lifetime.
    pub(crate) runners: moka::sync::Cache<String, Arc<Runner>>,
    /// Whether the application serves the pending URLs (it asked for the pending router,
    /// or declared that it answers them itself); until then nothing under the prefix is
    /// exempt from the layer's default requirement, and the layer answers no poll.
    served: AtomicBool,
}

impl PendingStore {
    pub(crate) fn new(options: DeferredOptions) -> Self {
        let backend: Arc<dyn PendingBackend> = match &options.shared {
            Some(store) => Arc::new(SharedBackend {
                store: store.clone(),
                max_request: options.max_body_bytes,
                max_result: options.max_result_bytes,
            }),
            None => Arc::new(LocalStore::new(options.capacity_bytes)),
        };
        let runners = moka::sync::Cache::builder()
            .time_to_live(Duration::from_secs(options.lifetime))
            .build();
        PendingStore {
            options,
            backend,
            runners,
            served: AtomicBool::new(false),
        }
    }

    /// Records that the pending URLs are served from now on.
    pub(crate) fn mark_served(&self) {
        self.served.store(true, Ordering::Release);
    }

    /// Whether the pending URLs are served.
    pub(crate) fn is_served(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// Whether `path` is a pending URL this store could have issued, and the pending URLs
    /// are served: the only paths under the prefix that skip the default requirement.
    pub(crate) fn serves(&self, path: &str) -> bool {
        self.served.load(Ordering::Acquire) && pending_id(path).is_some()
    }

    /// After a terminal answer, how long `408`/`410` stay distinguishable from `404`.
    pub(super) fn grace(&self) -> u64 {
        self.options.lifetime.max(60)
    }

    /// Bytes the held records take now (what [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes) bounds).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.backend.held_bytes()
    }
}

/// The id of a pending URL's path, if it has the shape ids are issued in.
pub(crate) fn pending_id(path: &str) -> Option<&str> {
    path.strip_prefix(names::path::PENDING_PREFIX)
        .filter(|id| is_pending_id(id))
}

/// The in-process backend: a [`moka`] cache weighted by bytes, each entry expiring on its
/// own time to live. Bytes are reserved on admission against the capacity and released
/// when an entry leaves the cache.
pub(crate) struct LocalStore {
    records: moka::sync::Cache<String, Arc<Entry>>,
    held_bytes: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").finish_non_exhaustive()
    }
}

struct Entry {
    /// Wall-time lifetime in the cache, read by [`EntryExpiry`] on every (re)insertion.
    ttl_secs: AtomicU64,
    weight: AtomicU32,
    record: Mutex<LocalRecord>,
}

struct LocalRecord {
    version: u64,
    status: Status,
    request: Option<Arc<HeldRequest>>,
    result: Option<Arc<Stored>>,
}

impl Entry {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalRecord> {
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

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl LocalStore {
    fn new(capacity: u64) -> Self {
        let held_bytes = Arc::new(AtomicU64::new(0));
        let released = held_bytes.clone();
        let records = moka::sync::Cache::builder()
            // The budget is enforced on admission (`create`); the cache's own bound is
            // only a backstop, so that it never evicts a live record to admit a new one.
            .max_capacity(capacity.saturating_mul(2))
            .weigher(|_: &String, entry: &Arc<Entry>| entry.weight.load(Ordering::Relaxed))
            .expire_after(EntryExpiry)
            .eviction_listener(move |_, entry: Arc<Entry>, cause| {
                // A replacement re-inserts the same record; its bytes were adjusted then.
                if cause != moka::notification::RemovalCause::Replaced {
                    released.fetch_sub(u64::from(entry.weight.load(Ordering::Relaxed)), Ordering::AcqRel);
                }
            })
            .build();
        LocalStore { records, held_bytes }
    }

    /// Applies `change` to the record if its version is `version`.
    fn swap<T>(&self, id: &str, version: u64, change: impl FnOnce(&mut LocalRecord) -> T) -> Option<T> {
        let entry = self.records.get(id)?;
        let mut record = entry.lock();
        if record.version != version {
            return None;
        }
        record.version += 1;
        Some(change(&mut record))
    }
}

impl PendingBackend for LocalStore {
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: NewRecord,
        ttl: Duration,
        capacity: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let weight = u32::try_from(record.request.weight()).unwrap_or(u32::MAX);
        let reserved = self
            .held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.saturating_add(u64::from(weight));
                (after <= capacity).then_some(after)
            });
        if reserved.is_err() {
            return ready(Ok(false));
        }
        let entry = Entry {
            ttl_secs: AtomicU64::new(ttl.as_secs()),
            weight: AtomicU32::new(weight),
            record: Mutex::new(LocalRecord {
                version: 1,
                status: record.status,
                request: Some(record.request),
                result: None,
            }),
        };
        self.records.insert(id.to_owned(), Arc::new(entry));
        ready(Ok(true))
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>> {
        let found = self.records.get(id).map(|entry| {
            let record = entry.lock();
            Versioned {
                version: record.version,
                status: record.status.clone(),
            }
        });
        ready(Ok(found))
    }

    fn update<'a>(&'a self, id: &'a str, version: u64, status: &'a Status) -> BoxFuture<'a, Result<bool, StoreError>> {
        let swapped = self.swap(id, version, |record| record.status = status.clone());
        ready(Ok(swapped.is_some()))
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
    ) -> BoxFuture<'a, Result<Option<Arc<HeldRequest>>, StoreError>> {
        let claimed = self.swap(id, version, |record| {
            record.status = status.clone();
            record.request.clone()
        });
        ready(Ok(claimed.flatten()))
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a Status,
        result: Arc<Stored>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let Some(entry) = self.records.get(id) else {
            return ready(Ok(false));
        };
        let weight = u32::try_from(result.weight()).unwrap_or(u32::MAX);
        {
            let mut record = entry.lock();
            if record.version != version {
                return ready(Ok(false));
            }
            record.version += 1;
            record.status = status.clone();
            record.request = None;
            record.result = Some(result);
        }
        entry.ttl_secs.store(ttl.as_secs(), Ordering::Relaxed);
        let before = entry.weight.swap(weight, Ordering::AcqRel);
        self.held_bytes.fetch_add(u64::from(weight), Ordering::AcqRel);
        self.held_bytes.fetch_sub(u64::from(before), Ordering::AcqRel);
        // Re-inserting applies the new deadline and weight (the held body is gone).
        self.records.insert(id.to_owned(), entry);
        ready(Ok(true))
    }

    fn result<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<Stored>>, StoreError>> {
        let result = self.records.get(id).and_then(|entry| entry.lock().result.clone());
        ready(Ok(result))
    }

    fn held_bytes(&self) -> u64 {
        self.records.run_pending_tasks();
        self.held_bytes.load(Ordering::Acquire)
    }
}

/// Length of an id: 16 bytes in unpadded base64url.
const ID_LEN: usize = 22;

/// 128 bits from the operating system's CSPRNG, base64url: the pending URL's secret part.
pub(crate) fn new_id() -> String {
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
