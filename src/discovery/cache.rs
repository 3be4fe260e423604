//! The default [`KeyResolver`]: a bounded cache of issuer key sets over a [`Fetch`].
//!
//! # Design
//!
//! One cache entry per `(issuer, dwk)` holds the last good key set, the `jwks_uri` the
//! metadata named, and three instants on the injected [`Clock`]: until when the keys are
//! fresh, until when they may still be served while the issuer cannot be reached
//! (stale-while-error), and when the issuer was last fetched. A failed fetch is recorded
//! in the same entry (negative caching, with exponential backoff) and never discards
//! keys that were good: documents are validated completely before they replace anything.
//!
//! Reads ([`KeyResolver::cached`]) are synchronous lookups in a `moka::sync::Cache`
//! (bounded by entry count and by weight) and answer everything that needs no fetch,
//! including "unknown `kid`, but this issuer was fetched less than a cooldown ago" and
//! "this issuer failed a moment ago". Fetches happen in [`KeyResolver::resolve`], through
//! a `moka::future::Cache` used for its `try_get_with`: concurrent callers that observed
//! the same entry generation share one fetch. The flight re-reads the store before
//! fetching, so a caller that arrives after a refresh finished uses its result instead
//! of fetching again.
//!
//! Time for every protocol rule comes from the [`Clock`] (tests use a virtual one); moka's
//! own real-time expiry is only a memory backstop.
//!
//! Costs an attacker can impose are bounded: fetches for never-seen issuers draw on a
//! global token bucket (over budget: `503` + `Retry-After`, no `Signature-Error`);
//! random `kid`s against a known issuer cause at most one fetch per cooldown; a failing
//! issuer at most one per negative TTL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::admission::IdentifierPolicy;
use super::keyset::{KeyLookup, KeySet, legacy_metadata_jwks_uri, metadata_jwks_uri};
use super::resolve::{Fetch, KeyQuery, KeyResolver, is_known_dwk};
use super::shown::Shown;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, SignatureErrorCode};
use crate::future::BoxFuture;
use crate::jose::{AlgPolicy, Jwk};

/// Sizes, lifetimes and budgets for discovery. Start from [`DiscoveryConfig::default`] and
/// set the fields to change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// Largest metadata document (default 64 KiB).
    pub max_metadata_bytes: usize,
    /// Largest JWKS (default 256 KiB).
    pub max_jwks_bytes: usize,
    /// Most entries in one JWKS (default 32); more fails the document.
    pub max_keys: usize,
    /// Lifetime of documents sent without `Cache-Control: max-age` (default 5 min).
    pub default_ttl: Duration,
    /// Floor for `max-age` (default 60 s): `no-store` or `max-age=0` cannot force a fetch
    /// per request.
    pub min_ttl: Duration,
    /// Ceiling for `max-age` (default 24 h).
    pub max_ttl: Duration,
    /// How long past their freshness keys are still served while refreshes fail
    /// (default 1 h). After that, requests naming them are `unknown_key`.
    pub max_stale: Duration,
    /// How long a failure is remembered before the issuer is tried again (default 30 s),
    /// doubling with each consecutive failure up to `max_negative_ttl`.
    pub negative_ttl: Duration,
    /// Longest backoff after repeated failures (default 5 min).
    pub max_negative_ttl: Duration,
    /// Least time between two fetches of one issuer caused by unknown `kid`s (default
    /// 60 s: [AAuth draft -11, "JWKS Discovery and Caching"][draft-11] forbids fetching an
    /// issuer's JWKS more than once a minute).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub unknown_kid_cooldown: Duration,
    /// Most cached issuers (default 10 000).
    pub max_entries: u64,
    /// Most cached bytes, approximately (default 32 MiB).
    pub max_weight_bytes: u64,
    /// Fetches of never-seen issuers allowed per minute, across all callers (default 30).
    /// Allow-listed issuers do not draw on it.
    pub new_issuers_per_minute: u32,
    /// When set, only these issuers are ever fetched; others are `invalid_key` without
    /// any network activity.
    pub allowed_issuers: Option<Vec<String>>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            max_metadata_bytes: 64 * 1024,
            max_jwks_bytes: 256 * 1024,
            max_keys: 32,
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            max_stale: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            max_negative_ttl: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(60),
            max_entries: 10_000,
            max_weight_bytes: 32 * 1024 * 1024,
            new_issuers_per_minute: 30,
            allowed_issuers: None,
        }
    }
}

/// What the cache knows about one `(issuer, dwk)`.
#[derive(Debug)]
struct Entry {
    /// Unique per stored entry; single-flight keys on it.
    generation: u64,
    jwks_uri: Option<Arc<str>>,
    metadata_fresh_until: u64,
    keys: Option<Arc<KeySet>>,
    fresh_until: u64,
    stale_until: u64,
    last_fetch: u64,
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    error: Error,
    retry_at: u64,
    streak: u32,
}

/// The answer the cache can give without fetching.
enum Answer {
    Key(Arc<Jwk>),
    Refused(Error),
    Fetch,
}

const UNKNOWN_KEY: Error = Error::signature(
    SignatureErrorCode::UnknownKey,
    "the issuer publishes no key with that kid",
);
const UNUSABLE_KEY: Error = Error::invalid_key("the key with that kid is not a usable Ed25519 key");

/// The default [`KeyResolver`]: fetches metadata and JWKS through a [`Fetch`] and keeps
/// key sets in a bounded cache (see the module docs). Cheap to clone; clones share the
/// cache.
pub struct DiscoveryResolver<F: Fetch> {
    inner: Arc<Inner<F>>,
}

impl<F: Fetch> Clone for DiscoveryResolver<F> {
    fn clone(&self) -> Self {
        DiscoveryResolver {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<F> {
    fetch: F,
    identifiers: IdentifierPolicy,
    config: DiscoveryConfig,
    alg: AlgPolicy,
    clock: Arc<dyn Clock>,
    store: moka::sync::Cache<String, Arc<Entry>>,
    flights: moka::future::Cache<(String, u64), Arc<Entry>>,
    generations: AtomicU64,
    budget: Arc<NewOrigins>,
}

impl<F: Fetch> std::fmt::Debug for DiscoveryResolver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryResolver")
            .field("identifiers", &self.inner.identifiers)
            .field("config", &self.inner.config)
            .field("cached_issuers", &self.inner.store.entry_count())
            .finish_non_exhaustive()
    }
}

/// Builds a [`DiscoveryResolver`].
pub struct DiscoveryResolverBuilder<F: Fetch> {
    fetch: F,
    identifiers: IdentifierPolicy,
    config: DiscoveryConfig,
    alg: AlgPolicy,
    clock: Arc<dyn Clock>,
    budget: Option<Arc<NewOrigins>>,
}

impl<F: Fetch> std::fmt::Debug for DiscoveryResolverBuilder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryResolverBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch> DiscoveryResolverBuilder<F> {
    /// Which identifiers may be fetched (default: strict `https://host`).
    pub fn identifiers(mut self, identifiers: IdentifierPolicy) -> Self {
        self.identifiers = identifiers;
        self
    }

    /// Sizes, lifetimes and budgets.
    pub fn config(mut self, config: DiscoveryConfig) -> Self {
        self.config = config;
        self
    }

    /// Accept legacy key spellings (`EdDSA`, no `alg`) in fetched JWKS. With
    /// [`AlgPolicy::Legacy`] the demo generation's discovery is accepted too: the auth
    /// server document `aauth-issuer.json`, and metadata that names its signer under
    /// `agent` instead of `issuer` or not at all (the `jwks_uri` must still be on the
    /// identifier's origin, which is what binds the keys to it).
    pub fn alg_policy(mut self, alg: AlgPolicy) -> Self {
        self.alg = alg;
        self
    }

    /// The clock for every lifetime, cooldown and budget (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Draws new origins from `budget`, shared with the Web Bot Auth directory cache.
    pub(crate) fn new_origins(mut self, budget: Arc<NewOrigins>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Builds the resolver.
    pub fn build(self) -> DiscoveryResolver<F> {
        let config = self.config;
        let entries = config.max_entries.max(1);
        let capacity = config.max_weight_bytes.max(entries);
        // Every entry weighs at least capacity / entries, so the weight bound also bounds
        // the entry count.
        let min_weight = u32::try_from(capacity.div_ceil(entries)).unwrap_or(u32::MAX);
        let backstop = memory_backstop(&config);
        let store = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(move |key: &String, entry: &Arc<Entry>| {
                let bytes = ENTRY_BASE_BYTES
                    + key.len()
                    + entry.jwks_uri.as_ref().map_or(0, |u| u.len())
                    + entry.keys.as_ref().map_or(0, |k| k.weight());
                u32::try_from(bytes).unwrap_or(u32::MAX).max(min_weight)
            })
            .time_to_live(backstop)
            .build();
        let flights = moka::future::Cache::builder()
            .max_capacity(entries)
            .time_to_live(Duration::from_secs(60))
            .build();
        let now = self.clock.now();
        let per_minute = config.new_issuers_per_minute;
        DiscoveryResolver {
            inner: Arc::new(Inner {
                fetch: self.fetch,
                identifiers: self.identifiers,
                alg: self.alg,
                clock: self.clock,
                store,
                flights,
                generations: AtomicU64::new(1),
                budget: self.budget.unwrap_or_else(|| NewOrigins::new(per_minute, now)),
                config,
            }),
        }
    }
}

impl<F: Fetch> DiscoveryResolver<F> {
    /// Starts a resolver over `fetch`.
    pub fn builder(fetch: F) -> DiscoveryResolverBuilder<F> {
        DiscoveryResolverBuilder {
            fetch,
            identifiers: IdentifierPolicy::strict(),
            config: DiscoveryConfig::default(),
            alg: AlgPolicy::Strict,
            clock: Arc::new(SystemClock),
            budget: None,
        }
    }

    /// A resolver over `fetch` with default limits and the system clock.
    pub fn new(fetch: F, identifiers: IdentifierPolicy) -> Self {
        Self::builder(fetch).identifiers(identifiers).build()
    }

    /// Number of cached `(issuer, dwk)` entries (good or failed).
    pub fn cached_issuers(&self) -> u64 {
        self.inner.store.run_pending_tasks();
        self.inner.store.entry_count()
    }

    /// Approximate bytes held by the cache.
    pub fn cached_weight(&self) -> u64 {
        self.inner.store.run_pending_tasks();
        self.inner.store.weighted_size()
    }
}

impl<F: Fetch> Inner<F> {
    fn store_key(issuer: &str, dwk: &str) -> String {
        // Neither part can contain a space: both passed admission.
        format!("{issuer} {dwk}")
    }

    fn ttl(&self, max_age: Option<u64>) -> u64 {
        let config = &self.config;
        max_age.unwrap_or(config.default_ttl.as_secs()).clamp(
            config.min_ttl.as_secs(),
            config.max_ttl.as_secs().max(config.min_ttl.as_secs()),
        )
    }

    /// What `entry` answers for `kid` at `now` without fetching. `fetched` marks the
    /// answer given right after a fetch, which is neither a cooldown nor a negative hit.
    fn answer(&self, entry: &Entry, kid: &str, now: u64, fetched: bool) -> Answer {
        let found = |keys: &KeySet| match keys.lookup(kid) {
            KeyLookup::Found(key) => Some(Answer::Key(key)),
            KeyLookup::Unusable => Some(Answer::Refused(UNUSABLE_KEY)),
            KeyLookup::Missing => None,
        };
        if let Some(keys) = &entry.keys
            && now < entry.fresh_until
        {
            if let Some(answer) = found(keys) {
                return answer;
            }
            let cooldown = self.config.unknown_kid_cooldown.as_secs();
            if now < entry.last_fetch.saturating_add(cooldown) {
                if !fetched {
                    crate::metrics::discovery_cooldown_hit();
                    tracing::debug!(kid = %Shown(kid), "discovery: unknown kid within the refresh cooldown");
                }
                return Answer::Refused(UNKNOWN_KEY);
            }
            return Answer::Fetch;
        }
        match &entry.failure {
            Some(failure) if now < failure.retry_at => {
                if !fetched {
                    crate::metrics::discovery_negative_hit();
                }
                match &entry.keys {
                    Some(keys) if now < entry.stale_until => {
                        let answer = found(keys).unwrap_or(Answer::Refused(UNKNOWN_KEY));
                        if matches!(answer, Answer::Key(_)) {
                            crate::metrics::discovery_stale_served();
                        }
                        answer
                    }
                    // Known once, unreachable past the stale limit: the key can no longer
                    // be confirmed.
                    Some(_) => Answer::Refused(UNKNOWN_KEY),
                    None => Answer::Refused(failure.error.clone()),
                }
            }
            _ => Answer::Fetch,
        }
    }

    /// Fetches for `key` unless a concurrent caller already did (see the module docs).
    async fn flight(
        &self,
        key: &str,
        issuer: &str,
        dwk: &str,
        observed: Option<Arc<Entry>>,
    ) -> Result<Arc<Entry>, Error> {
        let generation = observed.as_ref().map_or(0, |e| e.generation);
        let flight_key = (key.to_owned(), generation);
        let result = self
            .flights
            .try_get_with(flight_key.clone(), async {
                if let Some(current) = self.store.get(key)
                    && current.generation != generation
                {
                    return Ok(current);
                }
                if observed.is_none() {
                    self.charge_budget(issuer)?;
                }
                let entry = Arc::new(self.refresh(issuer, dwk, observed.as_deref()).await);
                self.store.insert(key.to_owned(), entry.clone());
                Ok::<_, Error>(entry)
            })
            .await;
        self.flights.invalidate(&flight_key).await;
        result.map_err(|error| (*error).clone())
    }

    /// A never-seen issuer draws one token from the global bucket.
    fn charge_budget(&self, issuer: &str) -> Result<(), Error> {
        if self
            .config
            .allowed_issuers
            .as_ref()
            .is_some_and(|list| list.iter().any(|i| i == issuer))
        {
            return Ok(());
        }
        let Err(retry_after) = self.budget.charge(self.config.new_issuers_per_minute, self.clock.now()) else {
            return Ok(());
        };
        tracing::warn!(issuer = %Shown(issuer), retry_after, "discovery: new-issuer budget exhausted");
        Err(Error(crate::error::Kind::Unavailable {
            retry_after,
            detail: "too many new issuers to discover right now",
        }))
    }

    /// Fetches metadata (unless still fresh) and JWKS, and builds the next entry. A
    /// failure keeps the previous keys and records itself.
    async fn refresh(&self, issuer: &str, dwk: &str, previous: Option<&Entry>) -> Entry {
        let now = self.clock.now();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(issuer = %Shown(issuer), dwk = %Shown(dwk), refresh = previous.is_some(), "discovery: fetching");
        match self.fetch_documents(issuer, dwk, previous, now).await {
            Ok((jwks_uri, metadata_fresh_until, keys, ttl)) => Entry {
                generation,
                jwks_uri: Some(jwks_uri),
                metadata_fresh_until,
                keys: Some(Arc::new(keys)),
                fresh_until: now.saturating_add(ttl),
                stale_until: now.saturating_add(ttl).saturating_add(self.config.max_stale.as_secs()),
                last_fetch: now,
                failure: None,
            },
            Err(error) => {
                crate::metrics::discovery_failure();
                let streak = previous
                    .and_then(|p| p.failure.as_ref())
                    .map_or(1, |f| f.streak.saturating_add(1));
                let backoff = self
                    .config
                    .negative_ttl
                    .as_secs()
                    .saturating_mul(1 << (streak - 1).min(16))
                    .min(
                        self.config
                            .max_negative_ttl
                            .as_secs()
                            .max(self.config.negative_ttl.as_secs()),
                    );
                tracing::info!(
                    issuer = %Shown(issuer),
                    dwk = %Shown(dwk),
                    code = error.code(),
                    retry_in = backoff,
                    "discovery: fetch failed"
                );
                Entry {
                    generation,
                    jwks_uri: previous.and_then(|p| p.jwks_uri.clone()),
                    metadata_fresh_until: previous.map_or(0, |p| p.metadata_fresh_until),
                    keys: previous.and_then(|p| p.keys.clone()),
                    fresh_until: previous.map_or(0, |p| p.fresh_until),
                    stale_until: previous.map_or(0, |p| p.stale_until),
                    last_fetch: now,
                    failure: Some(Failure {
                        error,
                        retry_at: now.saturating_add(backoff),
                        streak,
                    }),
                }
            }
        }
    }

    async fn fetch_documents(
        &self,
        issuer: &str,
        dwk: &str,
        previous: Option<&Entry>,
        now: u64,
    ) -> Result<(Arc<str>, u64, KeySet, u64), Error> {
        let known_uri = previous
            .filter(|p| now < p.metadata_fresh_until)
            .and_then(|p| p.jwks_uri.clone());
        let (jwks_uri, metadata_fresh_until) = match known_uri {
            Some(uri) => (uri, previous.map_or(0, |p| p.metadata_fresh_until)),
            None => {
                crate::metrics::discovery_fetch(false);
                let url = format!("{issuer}/.well-known/{dwk}");
                let metadata = self
                    .fetch
                    .get(&url, self.config.max_metadata_bytes)
                    .await
                    .map_err(|e| {
                        tracing::debug!(issuer = %Shown(issuer), cause = %e, "discovery: metadata fetch failed");
                        e.into_error()
                    })?;
                let uri = match self.alg {
                    AlgPolicy::Strict => metadata_jwks_uri(&metadata.body, issuer)?,
                    AlgPolicy::Legacy => legacy_metadata_jwks_uri(&metadata.body, issuer)?,
                };
                (Arc::from(uri), now.saturating_add(self.ttl(metadata.max_age)))
            }
        };
        crate::metrics::discovery_fetch(true);
        let jwks = self
            .fetch
            .get(&jwks_uri, self.config.max_jwks_bytes)
            .await
            .map_err(|e| {
                tracing::debug!(issuer = %Shown(issuer), cause = %e, "discovery: JWKS fetch failed");
                e.into_error()
            })?;
        let keys = KeySet::from_jwks(&jwks.body, self.config.max_keys, self.alg)?;
        tracing::debug!(issuer = %Shown(issuer), keys = keys.len(), "discovery: key set refreshed");
        Ok((jwks_uri, metadata_fresh_until, keys, self.ttl(jwks.max_age)))
    }

    fn admit(&self, query: &KeyQuery<'_>) -> Result<(), Error> {
        if !self.identifiers.admits(query.issuer) {
            return Err(Error::invalid_key("the signer identifier is not admitted"));
        }
        let legacy_dwk = self.alg == AlgPolicy::Legacy && query.dwk == crate::names::dwk::LEGACY_ISSUER;
        if !is_known_dwk(query.dwk) && !legacy_dwk {
            return Err(Error::invalid_key("the well-known document name is not recognised"));
        }
        if let Some(list) = &self.config.allowed_issuers
            && !list.iter().any(|i| i == query.issuer)
        {
            return Err(Error::invalid_key("the issuer is not on the discovery allow-list"));
        }
        Ok(())
    }
}

/// What a discovery cache entry weighs besides its strings and keys: the `Entry`, its
/// `Arc`, moka's node and its share of moka's bookkeeping. Calibrated against
/// `examples/memory.rs` with a byte budget, so with eviction running: 1 323 bytes of live
/// heap per one-key entry (2026-12-04, commit `588dc78`; the weigher then estimated 1 224
/// with a 700-byte base, so a 4 MiB budget held 4.3 MiB).
const ENTRY_BASE_BYTES: usize = 800;

/// moka's own expiry, a memory backstop only: never before the protocol could still use
/// an entry (fresh, then stale, then remembered as failed), and at most a year: moka
/// refuses lifetimes past 1000 years, and a configured `Duration::MAX` must not overflow.
fn memory_backstop(config: &DiscoveryConfig) -> Duration {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    config
        .max_ttl
        .saturating_add(config.max_stale)
        .saturating_add(config.max_negative_ttl)
        .min(YEAR)
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: u64,
}

/// The budget of never-seen origins to fetch from: one token bucket of
/// `new_issuers_per_minute`, shared by AAuth discovery and the Web Bot Auth directory
/// cache, so that the two together never fetch from more new origins than configured.
#[derive(Debug)]
pub(crate) struct NewOrigins(Mutex<Bucket>);

impl NewOrigins {
    /// A full bucket of `per_minute` tokens at `now`.
    pub(crate) fn new(per_minute: u32, now: u64) -> Arc<Self> {
        Arc::new(NewOrigins(Mutex::new(Bucket {
            tokens: f64::from(per_minute),
            updated: now,
        })))
    }

    /// Draws one token, refilled at `per_minute`; else the seconds until one is back.
    pub(crate) fn charge(&self, per_minute: u32, now: u64) -> Result<(), u32> {
        let per_minute = f64::from(per_minute);
        let mut bucket = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_sub(bucket.updated) as f64;
        bucket.tokens = (bucket.tokens + elapsed * per_minute / 60.0).min(per_minute);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        crate::metrics::discovery_budget_refusal();
        Err(if per_minute > 0.0 {
            ((1.0 - bucket.tokens) * 60.0 / per_minute).ceil().max(1.0) as u32
        } else {
            60
        })
    }
}

impl<F: Fetch> KeyResolver for DiscoveryResolver<F> {
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>> {
        let inner = &*self.inner;
        let answer = inner
            .store
            .get(&Inner::<F>::store_key(query.issuer, query.dwk))
            .and_then(
                |entry| match inner.answer(&entry, query.kid, inner.clock.now(), false) {
                    Answer::Key(key) => Some(Ok(key)),
                    Answer::Refused(error) => Some(Err(error)),
                    Answer::Fetch => None,
                },
            );
        crate::metrics::discovery_cache(answer.is_some());
        answer
    }

    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>> {
        Box::pin(async move {
            let inner = &*self.inner;
            inner.admit(&query)?;
            let key = Inner::<F>::store_key(query.issuer, query.dwk);
            let observed = inner.store.get(&key);
            if let Some(entry) = &observed {
                match inner.answer(entry, query.kid, inner.clock.now(), false) {
                    Answer::Key(key) => return Ok(key),
                    Answer::Refused(error) => return Err(error),
                    Answer::Fetch => {}
                }
            }
            let entry = inner.flight(&key, query.issuer, query.dwk, observed).await?;
            match inner.answer(&entry, query.kid, inner.clock.now(), true) {
                Answer::Key(key) => Ok(key),
                Answer::Refused(error) => Err(error),
                // Only with a zero cooldown or negative TTL: never fetch twice per request.
                Answer::Fetch => Err(entry.failure.as_ref().map_or(UNKNOWN_KEY, |f| f.error.clone())),
            }
        })
    }

    /// Same-`kid` re-keying: one fetch of a cached issuer, never within
    /// [`unknown_kid_cooldown`](DiscoveryConfig::unknown_kid_cooldown) of its last fetch
    /// (whatever caused that one), shared by concurrent callers. A failing fetch keeps
    /// the keys, so the failure stands.
    fn refetch<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Option<Result<Arc<Jwk>, Error>>> {
        Box::pin(async move {
            let inner = &*self.inner;
            inner.admit(&query).ok()?;
            let key = Inner::<F>::store_key(query.issuer, query.dwk);
            let observed = inner.store.get(&key)?;
            let floor = inner.config.unknown_kid_cooldown.as_secs();
            if inner.clock.now() < observed.last_fetch.saturating_add(floor) {
                crate::metrics::discovery_cooldown_hit();
                tracing::debug!(issuer = %Shown(query.issuer), "discovery: key failed to verify within the refresh cooldown");
                return None;
            }
            let entry = match inner.flight(&key, query.issuer, query.dwk, Some(observed)).await {
                Ok(entry) => entry,
                Err(error) => return Some(Err(error)),
            };
            Some(match inner.answer(&entry, query.kid, inner.clock.now(), true) {
                Answer::Key(key) => Ok(key),
                Answer::Refused(error) => Err(error),
                Answer::Fetch => Err(entry.failure.as_ref().map_or(UNKNOWN_KEY, |f| f.error.clone())),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    //! Boundaries of every lifetime the cache keeps, on a virtual clock and an in-memory
    //! fetcher: each deadline is probed one second before and exactly at the instant.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::discovery::fetch::FetchError;
    use crate::discovery::fetch::FetchedDocument;
    use crate::jose::ResourceKey;
    use crate::metrics::Metric;
    use crate::metrics::recorded::Recorded;

    const T0: u64 = 1_800_000_000;
    const ISSUER: &str = "https://issuer.example";
    const DWK: &str = crate::names::dwk::AGENT;
    const METADATA_URL: &str = "https://issuer.example/.well-known/aauth-agent.json";
    const JWKS_URL: &str = "https://issuer.example/jwks.json";

    /// Documents by URL; a URL without one fails with a transport error. Counts requests.
    #[derive(Default)]
    struct MemoryFetch {
        documents: Mutex<HashMap<String, FetchedDocument>>,
        requests: Mutex<HashMap<String, usize>>,
    }

    impl MemoryFetch {
        fn publish(&self, url: &str, body: &serde_json::Value, max_age: Option<u64>) {
            let body = serde_json::to_vec(body).unwrap().into();
            self.documents.lock().unwrap().insert(
                url.to_owned(),
                FetchedDocument {
                    body,
                    max_age,
                    headers: http::HeaderMap::new(),
                },
            );
        }

        fn withdraw(&self, url: &str) {
            self.documents.lock().unwrap().remove(url);
        }

        fn requests(&self, url: &str) -> usize {
            self.requests.lock().unwrap().get(url).copied().unwrap_or(0)
        }
    }

    impl Fetch for MemoryFetch {
        fn get<'a>(&'a self, url: &'a str, _: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
            *self.requests.lock().unwrap().entry(url.to_owned()).or_default() += 1;
            let found = self.documents.lock().unwrap().get(url).cloned();
            Box::pin(async move { found.ok_or(FetchError::Transport) })
        }
    }

    struct Setup {
        fetch: Arc<MemoryFetch>,
        clock: ManualClock,
        resolver: DiscoveryResolver<Arc<MemoryFetch>>,
    }

    fn key() -> Jwk {
        ResourceKey::from_seed([3; 32]).with_kid("k1").public_jwk()
    }

    /// An issuer whose metadata and JWKS live `metadata_age` and `jwks_age` seconds.
    fn setup(config: DiscoveryConfig, metadata_age: Option<u64>, jwks_age: Option<u64>) -> Setup {
        let fetch = Arc::new(MemoryFetch::default());
        fetch.publish(
            METADATA_URL,
            &serde_json::json!({ "issuer": ISSUER, "jwks_uri": JWKS_URL }),
            metadata_age,
        );
        fetch.publish(JWKS_URL, &serde_json::json!({ "keys": [key().to_json()] }), jwks_age);
        let clock = ManualClock::new(T0);
        let resolver = DiscoveryResolver::builder(fetch.clone())
            .config(config)
            .clock(Arc::new(clock.clone()))
            .build();
        Setup { fetch, clock, resolver }
    }

    fn query(kid: &str) -> KeyQuery<'_> {
        KeyQuery {
            issuer: ISSUER,
            dwk: DWK,
            kid,
        }
    }

    impl Setup {
        fn at(&self, offset: u64) -> &Self {
            self.clock.set(T0 + offset);
            self
        }

        /// What the synchronous read answers: `None` means the cache wants a fetch.
        fn cached(&self, kid: &str) -> Option<Result<String, SignatureErrorCode>> {
            self.resolver.cached(&query(kid)).map(|answer| {
                answer
                    .map(|key| key.thumbprint())
                    .map_err(|e| e.signature_code().expect("a Signature-Error"))
            })
        }

        async fn resolve(&self, kid: &str) -> Result<String, Error> {
            self.resolver.resolve(query(kid)).await.map(|key| key.thumbprint())
        }
    }

    fn found() -> Option<Result<String, SignatureErrorCode>> {
        Some(Ok(key().thumbprint()))
    }

    #[tokio::test]
    async fn keys_are_fresh_until_exactly_their_lifetime() {
        let setup = setup(DiscoveryConfig::default(), None, Some(120));
        setup.resolve("k1").await.unwrap();
        assert_eq!(setup.at(119).cached("k1"), found());
        assert_eq!(setup.at(120).cached("k1"), None);
    }

    #[tokio::test]
    async fn an_unknown_kid_is_refused_without_a_fetch_until_exactly_the_cooldown_ends() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let setup = setup(DiscoveryConfig::default(), None, None);
                setup.resolve("k1").await.unwrap();
                assert_eq!(setup.at(59).cached("k2"), Some(Err(SignatureErrorCode::UnknownKey)));
                assert_eq!(recorded.counter(Metric::DiscoveryCooldownHits.name(), &[]), 1);
                assert_eq!(setup.at(60).cached("k2"), None);
                assert_eq!(recorded.counter(Metric::DiscoveryCooldownHits.name(), &[]), 1);
            })
            .await;
    }

    #[tokio::test]
    async fn a_failure_is_remembered_until_exactly_its_retry_instant() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let setup = setup(DiscoveryConfig::default(), None, None);
                setup.fetch.withdraw(METADATA_URL);
                let error = setup.resolve("k1").await.unwrap_err();
                assert_eq!(error.code(), "invalid_key");
                assert_eq!(recorded.counter(Metric::DiscoveryFailures.name(), &[]), 1);
                let remembered = setup.at(29).resolver.cached(&query("k1")).expect("negative hit");
                assert_eq!(remembered.unwrap_err().to_string(), error.to_string());
                assert_eq!(recorded.counter(Metric::DiscoveryNegativeHits.name(), &[]), 1);
                assert!(setup.at(30).resolver.cached(&query("k1")).is_none());
            })
            .await;
    }

    #[tokio::test]
    async fn a_second_failure_doubles_the_backoff_up_to_its_ceiling() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let config = DiscoveryConfig {
                    max_negative_ttl: Duration::from_secs(50),
                    ..DiscoveryConfig::default()
                };
                let setup = setup(config, None, None);
                setup.fetch.withdraw(METADATA_URL);
                setup.resolve("k1").await.unwrap_err();
                setup.at(30).resolve("k1").await.unwrap_err();
                // 30 s, then 60 s capped at 50 s.
                assert!(setup.at(79).resolver.cached(&query("k1")).is_some());
                assert!(setup.at(80).resolver.cached(&query("k1")).is_none());
                assert_eq!(setup.fetch.requests(METADATA_URL), 2);
                assert_eq!(recorded.counter(Metric::DiscoveryFailures.name(), &[]), 2);
            })
            .await;
    }

    #[tokio::test]
    async fn stale_keys_are_served_while_the_issuer_fails_until_exactly_the_stale_limit() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let config = DiscoveryConfig {
                    max_stale: Duration::from_secs(600),
                    ..DiscoveryConfig::default()
                };
                // Fresh until T0 + 60, servable while failing until T0 + 660.
                let setup = setup(config, Some(3600), Some(60));
                setup.resolve("k1").await.unwrap();
                setup.fetch.withdraw(JWKS_URL);
                assert_eq!(setup.at(640).resolve("k1").await.unwrap(), key().thumbprint());
                assert_eq!(recorded.counter(Metric::DiscoveryStaleServed.name(), &[]), 1);
                // The failure is remembered until T0 + 670, past the stale limit.
                assert_eq!(setup.at(659).cached("k1"), found());
                assert_eq!(setup.at(660).cached("k1"), Some(Err(SignatureErrorCode::UnknownKey)));
                assert_eq!(recorded.counter(Metric::DiscoveryStaleServed.name(), &[]), 2);
                assert_eq!(setup.fetch.requests(JWKS_URL), 2);
            })
            .await;
    }

    #[tokio::test]
    async fn metadata_is_reused_until_exactly_its_own_lifetime() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let setup = setup(DiscoveryConfig::default(), Some(120), Some(60));
                setup.resolve("k1").await.unwrap();
                setup.at(60).resolve("k1").await.unwrap();
                assert_eq!(setup.fetch.requests(METADATA_URL), 1);
                assert_eq!(setup.fetch.requests(JWKS_URL), 2);
                setup.at(120).resolve("k1").await.unwrap();
                assert_eq!(setup.fetch.requests(METADATA_URL), 2);
                assert_eq!(setup.fetch.requests(JWKS_URL), 3);
                let fetches = |document| recorded.counter(Metric::DiscoveryFetches.name(), &[("document", document)]);
                assert_eq!((fetches("metadata"), fetches("jwks")), (2, 3));
            })
            .await;
    }

    #[tokio::test]
    async fn the_new_issuer_budget_refills_at_its_rate_and_says_when_to_retry() {
        let recorded = Recorded::new();
        recorded
            .scope(async {
                let config = DiscoveryConfig {
                    new_issuers_per_minute: 30,
                    ..DiscoveryConfig::default()
                };
                let setup = setup(config, None, None);
                let inner = &setup.resolver.inner;
                for _ in 0..30 {
                    inner.charge_budget("https://new.example").unwrap();
                }
                let refusal = inner.charge_budget("https://new.example").unwrap_err();
                assert!(refusal.retry_after() == Some(2), "{refusal:?}");
                assert_eq!(recorded.counter(Metric::DiscoveryBudgetRefusals.name(), &[]), 1);
                // Half a token after one second: still refused, one second to go.
                setup.at(1);
                let refusal = inner.charge_budget("https://new.example").unwrap_err();
                assert!(refusal.retry_after() == Some(1), "{refusal:?}");
                // One whole token after two seconds: exactly one more issuer.
                setup.at(2);
                inner.charge_budget("https://new.example").unwrap();
                inner.charge_budget("https://new.example").unwrap_err();
                // A long pause refills to the per-minute size and no further.
                setup.at(10_000);
                for _ in 0..30 {
                    inner.charge_budget("https://new.example").unwrap();
                }
                inner.charge_budget("https://new.example").unwrap_err();
                assert_eq!(recorded.counter(Metric::DiscoveryBudgetRefusals.name(), &[]), 4);
            })
            .await;
    }

    #[tokio::test]
    async fn allow_listed_issuers_do_not_draw_on_the_budget_and_others_are_not_admitted() {
        let config = DiscoveryConfig {
            new_issuers_per_minute: 0,
            allowed_issuers: Some(vec![ISSUER.to_owned()]),
            ..DiscoveryConfig::default()
        };
        let setup = setup(config, None, None);
        assert_eq!(setup.resolve("k1").await.unwrap(), key().thumbprint());
        let refusal = setup.resolver.inner.charge_budget("https://other.example").unwrap_err();
        assert!(refusal.retry_after() == Some(60), "{refusal:?}");
        let other = KeyQuery {
            issuer: "https://other.example",
            ..query("k1")
        };
        assert_eq!(setup.resolver.resolve(other).await.unwrap_err().code(), "invalid_key");
        assert_eq!(
            setup
                .fetch
                .requests("https://other.example/.well-known/aauth-agent.json"),
            0
        );
    }

    #[tokio::test]
    async fn only_known_well_known_names_and_admitted_identifiers_are_fetched() {
        let setup = setup(DiscoveryConfig::default(), None, None);
        for (issuer, dwk) in [
            ("http://issuer.example", DWK),
            ("https://issuer.example/path", DWK),
            (ISSUER, "openid-configuration"),
            (ISSUER, crate::names::dwk::LEGACY_ISSUER),
        ] {
            let error = setup
                .resolver
                .resolve(KeyQuery { issuer, dwk, kid: "k1" })
                .await
                .unwrap_err();
            assert_eq!(error.code(), "invalid_key", "{issuer} {dwk}");
        }
        assert_eq!(setup.fetch.requests.lock().unwrap().len(), 0);
        for dwk in [
            crate::names::dwk::AGENT,
            crate::names::dwk::PERSON,
            crate::names::dwk::ACCESS,
            crate::names::dwk::RESOURCE,
        ] {
            setup
                .resolver
                .inner
                .admit(&KeyQuery {
                    issuer: ISSUER,
                    dwk,
                    kid: "k1",
                })
                .unwrap();
        }
    }

    #[test]
    fn only_the_legacy_policy_admits_the_demo_generations_issuer_document() {
        let legacy = KeyQuery {
            dwk: crate::names::dwk::LEGACY_ISSUER,
            ..query("k1")
        };
        let resolver = |alg| {
            DiscoveryResolver::builder(MemoryFetch::default())
                .alg_policy(alg)
                .build()
        };
        resolver(AlgPolicy::Legacy).inner.admit(&legacy).unwrap();
        assert!(resolver(AlgPolicy::Strict).inner.admit(&legacy).is_err());
        assert!(
            resolver(AlgPolicy::Legacy)
                .inner
                .admit(&KeyQuery {
                    dwk: "x.json",
                    ..legacy
                })
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_weight_of_an_entry_counts_its_key_uri_and_keys_and_never_less_than_its_share() {
        // 10 000 entries in 10 000 bytes: a share of one byte, below any real entry.
        let config = DiscoveryConfig {
            max_weight_bytes: 10_000,
            ..DiscoveryConfig::default()
        };
        let setup = setup(config, None, None);
        setup.resolve("k1").await.unwrap();
        let key_set = KeySet::from_jwks(
            &serde_json::to_vec(&serde_json::json!({ "keys": [key().to_json()] })).unwrap(),
            32,
            AlgPolicy::Strict,
        )
        .unwrap();
        // 800: the calibrated entry base (`ENTRY_BASE_BYTES`), pinned here.
        let expected = 800 + Inner::<MemoryFetch>::store_key(ISSUER, DWK).len() + JWKS_URL.len() + key_set.weight();
        assert_eq!(setup.resolver.cached_issuers(), 1);
        assert_eq!(setup.resolver.cached_weight(), expected as u64);

        // 10 entries in 64 KiB: each weighs at least 6.4 KiB.
        let config = DiscoveryConfig {
            max_entries: 10,
            max_weight_bytes: 64 * 1024,
            ..DiscoveryConfig::default()
        };
        let setup = self::setup(config, None, None);
        setup.resolve("k1").await.unwrap();
        assert_eq!(setup.resolver.cached_weight(), (64 * 1024u64).div_ceil(10));
    }

    #[test]
    fn the_memory_backstop_outlives_every_protocol_lifetime_and_saturates() {
        let default = DiscoveryConfig::default();
        assert_eq!(memory_backstop(&default), Duration::from_secs(24 * 3600 + 3600 + 300));
        let unbounded = DiscoveryConfig {
            max_ttl: Duration::MAX,
            ..DiscoveryConfig::default()
        };
        assert_eq!(memory_backstop(&unbounded), Duration::from_secs(365 * 24 * 3600));
        // Building with it does not overflow.
        drop(
            DiscoveryResolver::builder(MemoryFetch::default())
                .config(unbounded)
                .build(),
        );
    }

    #[test]
    fn debug_output_names_the_configuration_and_no_keys() {
        let setup = setup(DiscoveryConfig::default(), None, None);
        let resolver = format!("{:?}", setup.resolver);
        assert!(resolver.starts_with("DiscoveryResolver {"), "{resolver}");
        assert!(resolver.contains("cached_issuers: 0"), "{resolver}");
        assert!(resolver.contains("max_keys: 32"), "{resolver}");
        let builder = format!("{:?}", DiscoveryResolver::builder(MemoryFetch::default()));
        assert!(builder.starts_with("DiscoveryResolverBuilder {"), "{builder}");
        assert!(builder.contains("new_issuers_per_minute: 30"), "{builder}");
    }
}
