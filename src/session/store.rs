//! Where sessions and pending interactions live: the [`SessionStore`] trait (opaque bytes
//! under opaque keys, each with a time to live), the in-process [`MemorySessionStore`]
//! bounded in bytes (the Redis store is in `redis_store`), the [`SessionOptions`], and
//! the records as the engine writes them.
//!
//! Keys never contain a usable secret: a session is stored under the SHA-256 of its
//! token, so a dump of the store gives no token an agent could present (and a token is
//! useless without the bound key anyway). A pending interaction is stored under its
//! pending id, and its code under the code's normal form, pointing to the id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::future::BoxFuture;

/// A store could not answer (unreachable, failed or too slow): the request gets
/// `503 temporarily_unavailable` with `Retry-After`, and nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreError;

/// Where sessions and pending interactions are kept: values of at most a few KiB under
/// keys this crate chooses, each expiring after its time to live. An implementation
/// bounds the bytes it keeps and refuses (`Ok(false)`) a value that does not fit rather
/// than evicting live ones.
pub(crate) trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores `value` under `key` (replacing any value there) for `ttl`; `Ok(false)` when
    /// it does not fit within the store's bound.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The value under `key`, if any and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;

    /// Removes the value under `key` and returns it, atomically: of two callers taking
    /// one key at once, at most one gets the value.
    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
}

/// Sessions (keys `s:…`) in one store, everything else (pending interactions, their
/// codes, pace and index) in another, each with its own share of the byte capacity.
#[derive(Debug)]
struct Split {
    sessions: Arc<dyn SessionStore>,
    interactions: Arc<dyn SessionStore>,
}

impl Split {
    fn of(&self, key: &str) -> &dyn SessionStore {
        if key.starts_with("s:") {
            &*self.sessions
        } else {
            &*self.interactions
        }
    }
}

impl SessionStore for Split {
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.of(key).put(key, value, ttl)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.of(key).get(key)
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.of(key).take(key)
    }
}

/// The in-process [`SessionStore`]: a [`moka`] cache weighted by bytes. A value that would
/// take the store past its capacity is refused; live values are never evicted to make
/// room. Sessions kept here are lost when the process stops and are not seen by other
/// replicas (see [`SessionOptions::redis_store`], feature `redis`).
pub(crate) struct MemorySessionStore {
    values: moka::sync::Cache<String, Arc<Entry>>,
    held: Arc<AtomicU64>,
    capacity: u64,
}

impl std::fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

struct Entry {
    value: Vec<u8>,
    ttl: Duration,
    weight: u32,
}

/// Bytes counted for each value beyond its key and bytes.
const ENTRY_OVERHEAD: u64 = 96;

struct EntryExpiry;

impl moka::Expiry<String, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(&self, _: &String, entry: &Arc<Entry>, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl MemorySessionStore {
    /// A store of at most `capacity_bytes` (keys, values and a fixed overhead each).
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let held = Arc::new(AtomicU64::new(0));
        let released = held.clone();
        let values = moka::sync::Cache::builder()
            // Admission (`put`) enforces the bound; the cache's own is a backstop only.
            .max_capacity(capacity_bytes.saturating_mul(2))
            .weigher(|_: &String, entry: &Arc<Entry>| entry.weight)
            .expire_after(EntryExpiry)
            .eviction_listener(move |_, entry: Arc<Entry>, _| {
                released.fetch_sub(u64::from(entry.weight), Ordering::AcqRel);
            })
            .build();
        MemorySessionStore {
            values,
            held,
            capacity: capacity_bytes,
        }
    }

    /// Bytes the live values take now.
    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.values.run_pending_tasks();
        self.held.load(Ordering::Acquire)
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl SessionStore for MemorySessionStore {
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        let bytes = (key.len() + value.len()) as u64 + ENTRY_OVERHEAD;
        let Ok(weight) = u32::try_from(bytes) else {
            return ready(Ok(false));
        };
        let capacity = self.capacity;
        // A value replacing one under the same key needs room only for its growth (the
        // replaced value is released right after, by the eviction listener): a full store
        // still lets a waiting interaction be decided.
        let replaced = self.values.get(key).map_or(0, |entry| u64::from(entry.weight));
        let fits = |held: u64| held.saturating_add(u64::from(weight)).saturating_sub(replaced) <= capacity;
        let reserved = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            fits(held).then_some(held.saturating_add(u64::from(weight)))
        });
        if reserved.is_err() {
            // Expired values may still be counted: release them and try once more.
            self.values.run_pending_tasks();
            let again = self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                fits(held).then_some(held.saturating_add(u64::from(weight)))
            });
            if again.is_err() {
                return ready(Ok(false));
            }
        }
        // A replaced value is released by the eviction listener (cause `Replaced`).
        self.values
            .insert(key.to_owned(), Arc::new(Entry { value, ttl, weight }));
        ready(Ok(true))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        ready(Ok(self.values.get(key).map(|entry| entry.value.clone())))
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        ready(Ok(self.values.remove(key).map(|entry| entry.value.clone())))
    }
}

/// Limits and lifetimes of resource-managed access. Defaults: sessions valid 1 hour and
/// rotated after half of it, never beyond 24 hours after the person's approval; pending
/// interactions 10 minutes with `Retry-After: 5`; the interaction page at
/// `/aauth/interaction`; an in-process store of 16 MiB for sessions and pending
/// interactions together (each session about 400 bytes, each interaction about 800).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionOptions {
    pub(crate) session_lifetime: u64,
    pub(crate) max_session_age: u64,
    pub(crate) interaction_lifetime: u64,
    pub(crate) retry_after: u64,
    pub(crate) interaction_path: String,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<super::redis_store::RedisSessionStore>,
    pub(crate) capacity_bytes: u64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            session_lifetime: 3600,
            max_session_age: 86_400,
            interaction_lifetime: 600,
            retry_after: 5,
            interaction_path: "/aauth/interaction".to_owned(),
            #[cfg(feature = "redis")]
            redis: None,
            capacity_bytes: 16 * 1024 * 1024,
        }
    }
}

impl SessionOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seconds a session token is valid (60 to 86 400). A session used after half of it
    /// is rotated: the response carries a new `AAuth-Access`, and the old token stays
    /// valid for 30 seconds more so that requests already in flight pass.
    pub fn session_lifetime(mut self, seconds: u64) -> Self {
        self.session_lifetime = seconds;
        self
    }

    /// Seconds after the person's approval beyond which no rotation extends a session
    /// (at least the session lifetime): then the agent must go through the interaction
    /// again.
    pub fn max_session_age(mut self, seconds: u64) -> Self {
        self.max_session_age = seconds;
        self
    }

    /// Seconds a pending interaction waits for the person's decision (60 to 3600).
    pub fn interaction_lifetime(mut self, seconds: u64) -> Self {
        self.interaction_lifetime = seconds;
        self
    }

    /// The `Retry-After` of the `202` answers, in seconds (at most the interaction
    /// lifetime).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The path of the resource's own interaction page (the `url` of
    /// `requirement=interaction` is the resource identifier followed by it): starts with
    /// `/`, no query, no fragment. Once a session guard exists this exact path (not the
    /// paths under it) is exempt from the layer's
    /// [default requirement](crate::AAuthBuilder::default_requirement), as the pending URLs
    /// are: a person's browser opens it unsigned. The page's own forms should post back
    /// to it.
    pub fn interaction_path(mut self, path: impl Into<String>) -> Self {
        self.interaction_path = path.into();
        self
    }

    /// Bytes the store may hold (with Redis, every replica's together): half for sessions,
    /// half for pending interactions, so that interactions, which any agent may start,
    /// never leave no room for the sessions of people who approved. A session or
    /// interaction that does not fit is refused with `503`; live ones are never evicted to
    /// make room.
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// Keeps sessions and pending interactions in Redis at `url` (`redis://host:port/db`),
    /// shared by every replica: an agent approved through one replica is served by all,
    /// and any replica answers the polls of any interaction. Give each resource its own
    /// `prefix` when several share one Redis (keep a `{…}` hash tag in it for Redis
    /// Cluster; for example `tower-aauth:{session}:`). Keys: `<prefix>k:<key>` a hash per
    /// value, `<prefix>bytes` the bytes of all live values (bounded by
    /// [`capacity_bytes`](Self::capacity_bytes)), `<prefix>ledger` their expiries. A
    /// connection error or no answer within 1 s is `503` with `Retry-After: 1`.
    /// Connecting is lazy; it must run inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    #[cfg(feature = "redis")]
    pub fn redis_store(mut self, url: &str, prefix: &str) -> Result<Self, ConfigError> {
        self.redis = Some(super::redis_store::RedisSessionStore::connect(url, prefix)?);
        Ok(self)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=86_400).contains(&self.session_lifetime) {
            return Err(ConfigError::new(
                "the session lifetime must be between 60 and 86400 seconds",
            ));
        }
        if self.max_session_age < self.session_lifetime {
            return Err(ConfigError::new(
                "the maximum session age must not be below the session lifetime",
            ));
        }
        if !(60..=3600).contains(&self.interaction_lifetime) {
            return Err(ConfigError::new(
                "the interaction lifetime must be between 60 and 3600 seconds",
            ));
        }
        if self.retry_after > self.interaction_lifetime {
            return Err(ConfigError::new(
                "the interaction Retry-After must not exceed its lifetime",
            ));
        }
        let path = &self.interaction_path;
        let valid = path.starts_with('/')
            && path.len() <= 256
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
            && !path.split('/').any(|segment| segment == "." || segment == "..");
        if !valid {
            return Err(ConfigError::new(
                "the interaction path must start with \"/\" and hold only a-z, A-Z, 0-9, \"/\", \"-\", \".\", \"_\" and \"~\" (no query, no fragment, no dot segment)",
            ));
        }
        Ok(())
    }
}

/// Seconds a rotated-out session token stays valid.
pub(crate) const ROTATION_GRACE: u64 = 30;

/// The engine's part of the shared state.
pub(crate) struct Sessions {
    pub(crate) options: SessionOptions,
    pub(crate) store: Arc<dyn SessionStore>,
    /// Failed code look-ups in the current window: (window start, count).
    pub(crate) failures: std::sync::Mutex<(u64, u32)>,
    /// Whether a session guard exists: only then is the interaction page exempt from the
    /// layer's default requirement.
    page_served: AtomicBool,
}

impl Sessions {
    pub(crate) fn new(options: SessionOptions) -> Self {
        // Half the bytes for sessions, half for pending interactions: anyone may start an
        // interaction, and a flood of them must never leave no room for the sessions of
        // people who approved.
        let half = options.capacity_bytes / 2;
        #[cfg(feature = "redis")]
        let (sessions, interactions): (Arc<dyn SessionStore>, Arc<dyn SessionStore>) = match &options.redis {
            Some(redis) => (
                Arc::new(redis.clone().share(half, ":sessions")),
                Arc::new(redis.clone().share(half, ":interactions")),
            ),
            None => (
                Arc::new(MemorySessionStore::new(half)),
                Arc::new(MemorySessionStore::new(half)),
            ),
        };
        #[cfg(not(feature = "redis"))]
        let (sessions, interactions): (Arc<dyn SessionStore>, Arc<dyn SessionStore>) = (
            Arc::new(MemorySessionStore::new(half)),
            Arc::new(MemorySessionStore::new(half)),
        );
        let store: Arc<dyn SessionStore> = Arc::new(Split { sessions, interactions });
        Sessions {
            options,
            store,
            failures: std::sync::Mutex::new((0, 0)),
            page_served: AtomicBool::new(false),
        }
    }

    /// Records that a session guard exists, so that people reach the interaction page.
    pub(crate) fn mark_page_served(&self) {
        self.page_served.store(true, Ordering::Release);
    }

    /// Whether `path` is exactly the interaction page's and a session guard exists: a
    /// browser, not an agent, opens it, with no signature.
    pub(crate) fn serves_page(&self, path: &str) -> bool {
        self.page_served.load(Ordering::Acquire) && path == self.options.interaction_path
    }
}

/// A session as stored (under the hash of its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// The thumbprint of the key every use must be signed with.
    pub(crate) jkt: String,
    /// The resource's own account id, chosen by its interaction page.
    pub(crate) account: String,
    /// The agent (`aauth:…` identifier and provider) when it was known.
    pub(crate) agent: Option<String>,
    /// The agent's provider, beside [`agent`](Self::agent): every use checks that agent's
    /// revocation and ceilings, whatever the key's binding says by then.
    #[serde(default)]
    pub(crate) agent_provider: Option<String>,
    /// The person who asked through the authorization endpoint, `(iss, sub)` of their
    /// person token: that person's revocation ends the session.
    #[serde(default)]
    pub(crate) person: Option<(String, String)>,
    pub(crate) scopes: Vec<String>,
    /// When the person approved (rotation never extends a session past the maximum age).
    pub(crate) approved_at: u64,
    pub(crate) issued_at: u64,
    pub(crate) expires_at: u64,
    /// Whether a successor was issued (this token then only lives out its grace).
    pub(crate) rotated: bool,
}

/// The state of a pending interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// Waiting for the person; `true` once the interaction page looked it up.
    Waiting(bool),
    Approved(String),
    Denied,
    Expired,
    /// Answered for good: polls get `410`.
    Over,
}

/// A pending interaction as stored (under its pending id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InteractionRecord {
    pub(crate) jkt: String,
    pub(crate) agent: Option<String>,
    #[serde(default)]
    pub(crate) agent_provider: Option<String>,
    /// The person who asked through the authorization endpoint (`iss`, `sub`), and the
    /// account they asked for.
    #[serde(default)]
    pub(crate) person: Option<(String, String)>,
    #[serde(default)]
    pub(crate) account: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// The code in display form.
    pub(crate) code: String,
    pub(crate) expires_at: u64,
    pub(crate) interval: u64,
    pub(crate) last_answer: u64,
    pub(crate) phase: Phase,
}

/// The key of a session: `s:` and the base64url SHA-256 of its token.
pub(crate) fn session_key(token: &str) -> String {
    use sha2::Digest;
    format!("s:{}", crate::jose::b64url(sha2::Sha256::digest(token.as_bytes())))
}

/// The key of a pending interaction.
pub(crate) fn interaction_key(id: &str) -> String {
    format!("i:{id}")
}

/// The key of an interaction code (in normal form), holding the pending id.
pub(crate) fn code_key(code: &str) -> String {
    format!("c:{code}")
}

/// Serialises a record; records are small, bounded structures.
pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// A record read back; `None` for bytes that do not decode (treated as absent).
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    if bytes.len() > 16 * 1024 {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_still_replaces_a_value_that_does_not_grow() {
        let store = MemorySessionStore::new(2048);
        let ttl = Duration::from_secs(60);
        let mut n = 0;
        while block(store.put(&format!("i:{n}"), vec![0; 200], ttl)) == Ok(true) {
            n += 1;
        }
        assert!(n > 1);
        // A waiting interaction decided while the store is full: same key, same size.
        assert_eq!(block(store.put("i:0", vec![1; 200], ttl)), Ok(true));
        assert_eq!(block(store.get("i:0")), Ok(Some(vec![1; 200])));
        // Growth still needs room.
        assert_eq!(block(store.put("i:0", vec![1; 2000], ttl)), Ok(false));
    }

    #[test]
    fn sessions_keep_their_half_of_the_bytes_whatever_interactions_take() {
        let sessions = Sessions::new(SessionOptions::new().capacity_bytes(8192));
        let ttl = Duration::from_secs(60);
        let mut held = 0;
        while block(sessions.store.put(&format!("i:{held}"), vec![0; 200], ttl)) == Ok(true) {
            held += 1;
        }
        assert!(held > 0, "interactions take their share, then are refused");
        assert_eq!(
            block(sessions.store.put("s:approved", vec![0; 200], ttl)),
            Ok(true),
            "a session still fits"
        );
    }

    fn block<T>(future: BoxFuture<'_, T>) -> T {
        let mut future = future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("the memory store answers at once"),
        }
    }

    #[test]
    fn the_memory_store_refuses_values_beyond_its_capacity_and_keeps_the_live_ones() {
        let store = MemorySessionStore::new(1000);
        let ttl = Duration::from_secs(60);
        assert_eq!(block(store.put("a", vec![0; 400], ttl)), Ok(true));
        assert_eq!(block(store.put("b", vec![0; 400], ttl)), Ok(true));
        assert_eq!(block(store.put("c", vec![0; 400], ttl)), Ok(false));
        assert!(block(store.get("a")).unwrap().is_some());
        assert!(block(store.get("b")).unwrap().is_some());
        assert!(block(store.get("c")).unwrap().is_none());
        assert!(store.held_bytes() <= 1000);
    }

    #[test]
    fn taking_a_value_frees_its_bytes_and_only_one_taker_gets_it() {
        let store = MemorySessionStore::new(1000);
        let ttl = Duration::from_secs(60);
        assert_eq!(block(store.put("a", vec![1; 700], ttl)), Ok(true));
        assert_eq!(block(store.take("a")).unwrap(), Some(vec![1; 700]));
        assert_eq!(block(store.take("a")).unwrap(), None);
        assert_eq!(store.held_bytes(), 0);
        assert_eq!(block(store.put("b", vec![1; 700], ttl)), Ok(true));
    }

    #[test]
    fn replacing_a_value_counts_only_the_new_one() {
        let store = MemorySessionStore::new(1000);
        let ttl = Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(block(store.put("a", vec![1; 300], ttl)), Ok(true));
        }
        assert_eq!(store.held_bytes(), 1 + 300 + ENTRY_OVERHEAD);
    }

    #[test]
    fn a_session_key_is_the_hash_of_the_token_not_the_token() {
        let key = session_key("secret-token");
        assert!(!key.contains("secret"));
        assert_eq!(key.len(), 2 + 43);
    }
}
