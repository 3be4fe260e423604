//! The in-process store (the default): a bounded moka cache with per-entry expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::key::ReplayKey;
use super::store::{Insertion, ReplayStore, unavailable};
use crate::error::Error;
use crate::future::BoxFuture;

/// Each entry lives for the time to live it was inserted with.
struct PerEntryTtl;

impl Expiry<ReplayKey, Duration> for PerEntryTtl {
    fn expire_after_create(&self, _: &ReplayKey, ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// A replay store for one process: bounded, 32-byte keys, entries expiring with their
/// time to live.
///
/// At `capacity` live entries it refuses new keys with a `503` [`Error`](crate::Error) (`503`)
/// instead of evicting: an evicted entry would make its signature replayable.
/// The count of live entries is kept exactly on insert and released when moka reports an
/// expiry, so it can only overestimate; at the limit, pending expiries are processed before
/// refusing. The underlying cache is sized at twice the capacity, a hard memory bound even
/// if concurrent inserts race past the limit.
///
/// Several replicas need a shared store: see `RedisReplayStore` (feature `redis`).
#[derive(Clone)]
pub struct MemoryReplayStore {
    cache: Cache<ReplayKey, Duration>,
    live: Arc<AtomicU64>,
    capacity: u64,
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl MemoryReplayStore {
    /// The default capacity: 100 000 live entries (a few MiB).
    pub const DEFAULT_CAPACITY: u64 = 100_000;

    /// A store holding at most `capacity` live entries (at least 1).
    pub fn new(capacity: u64) -> Self {
        let capacity = capacity.max(1);
        let live = Arc::new(AtomicU64::new(0));
        let released = live.clone();
        let cache = Cache::builder()
            .max_capacity(capacity.saturating_mul(2))
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_, _, _| {
                // Saturating: never wrap below zero whatever order notifications arrive in.
                let _ = released.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
            })
            .build();
        MemoryReplayStore { cache, live, capacity }
    }

    /// The configured capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Live entries (after processing pending expiries).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.live.load(Ordering::Acquire)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_now(&self, key: &ReplayKey, ttl: Duration) -> Result<Insertion, Error> {
        if self.live.load(Ordering::Acquire) >= self.capacity {
            self.cache.run_pending_tasks();
            if self.live.load(Ordering::Acquire) >= self.capacity {
                // A replay is still a replay when the store is full.
                if self.cache.contains_key(key) {
                    return Ok(Insertion::Repeat);
                }
                tracing::warn!(target: "tower_aauth", capacity = self.capacity, "replay cache full; refusing");
                return Err(unavailable("the replay cache is full"));
            }
        }
        let entry = self.cache.entry(*key).or_insert_with(|| ttl);
        if entry.is_fresh() {
            self.live.fetch_add(1, Ordering::AcqRel);
            Ok(Insertion::First)
        } else {
            Ok(Insertion::Repeat)
        }
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        MemoryReplayStore::new(Self::DEFAULT_CAPACITY)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn try_insert(&self, key: &ReplayKey, ttl: Duration) -> Option<Result<Insertion, Error>> {
        Some(self.insert_now(key, ttl))
    }

    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
        let result = self.insert_now(&key, ttl);
        Box::pin(std::future::ready(result))
    }

    fn try_release(&self, key: &ReplayKey) -> Option<Result<(), Error>> {
        // The eviction listener gives the slot back (an explicit removal is notified too).
        self.cache.invalidate(key);
        Some(Ok(()))
    }

    fn release(&self, key: ReplayKey) -> BoxFuture<'_, Result<(), Error>> {
        self.cache.invalidate(&key);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn key(n: u32) -> ReplayKey {
        ReplayKey::jti("https://as.example", &n.to_string())
    }

    #[test]
    fn first_insert_wins_and_second_is_a_repeat() {
        let store = MemoryReplayStore::new(10);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::Repeat);
        assert_eq!(store.try_insert(&key(2), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_full_store_refuses_new_keys_with_unavailable() {
        let store = MemoryReplayStore::new(4);
        for n in 0..4 {
            assert_eq!(store.try_insert(&key(n), TTL).unwrap().unwrap(), Insertion::First);
        }
        let error = store.try_insert(&key(99), TTL).unwrap().unwrap_err();
        assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        // A replay of a remembered key is still recognised when full.
        assert_eq!(store.try_insert(&key(0), TTL).unwrap().unwrap(), Insertion::Repeat);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_keys() {
        let store = MemoryReplayStore::new(1000);
        let mut refused = 0;
        for n in 0..20_000 {
            if store.try_insert(&key(n), TTL).unwrap().is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 19_000);
        store.cache.run_pending_tasks();
        assert!(store.cache.entry_count() <= 1000);
    }

    #[test]
    fn expired_entries_free_their_slot_and_can_be_inserted_again() {
        let store = MemoryReplayStore::new(1);
        let short = Duration::from_millis(50);
        assert_eq!(store.try_insert(&key(1), short).unwrap().unwrap(), Insertion::First);
        assert!(store.try_insert(&key(2), short).unwrap().is_err());
        // moka's timer wheel processes per-entry expiry in buckets of about one second.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(store.try_insert(&key(2), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_released_key_frees_its_slot_and_can_be_inserted_again() {
        let store = MemoryReplayStore::new(2);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.try_insert(&key(2), TTL).unwrap().unwrap(), Insertion::First);
        assert!(store.try_insert(&key(3), TTL).unwrap().is_err(), "full");
        store.try_release(&key(1)).unwrap().unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.try_insert(&key(3), TTL).unwrap().unwrap(), Insertion::First);
        // The released key is new again; the kept one is still a repeat.
        store.try_release(&key(3)).unwrap().unwrap();
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.try_insert(&key(2), TTL).unwrap().unwrap(), Insertion::Repeat);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn releasing_an_absent_key_changes_nothing() {
        let store = MemoryReplayStore::new(2);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        store.try_release(&key(9)).unwrap().unwrap();
        store.try_release(&key(9)).unwrap().unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::Repeat);
    }

    #[test]
    fn a_flood_of_released_keys_never_fills_the_store() {
        let store = MemoryReplayStore::new(4);
        for n in 0..10_000 {
            assert_eq!(
                store.try_insert(&key(n), TTL).unwrap().unwrap(),
                Insertion::First,
                "{n}"
            );
            release_awaited(&store, key(n));
        }
        assert_eq!(store.len(), 0);
    }

    /// The awaited form, as the layer uses it for stores that need I/O.
    fn release_awaited(store: &MemoryReplayStore, key: ReplayKey) {
        let mut future = store.release(key);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(future.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(()))));
    }

    #[test]
    fn concurrent_inserts_of_one_key_have_exactly_one_winner() {
        let store = MemoryReplayStore::new(100);
        let winners = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..32)
                .map(|_| scope.spawn(|| store.try_insert(&key(7), TTL).unwrap().unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|i| *i == Insertion::First)
                .count()
        });
        assert_eq!(winners, 1);
    }
}
