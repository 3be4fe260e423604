//! The in-process store (the default): a bounded map of 32-byte keys to their expiry,
//! split into shards that each have their own lock.
//!
//! An insert is one lock of one shard and one hash-map probe: nothing on the request path
//! waits for housekeeping. Expired entries stay until they are looked up again (then
//! they count as absent and are overwritten) or until the store is full (then a sweep
//! removes them all). Sweeps are what could cost: a full store under a flood would sweep
//! on every insert, so a sweep runs only when some entry has expired since the last one
//! and at most once per [`SWEEP_INTERVAL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::key::ReplayKey;
use super::store::{Insertion, ReplayStore, unavailable};
use crate::error::Error;
use crate::future::BoxFuture;

/// Independent locks; inserts of different keys rarely meet on one.
const SHARDS: usize = 16;

/// What an entry is remembered by: the first 128 bits of its key. Keys are hashes, so two
/// keys share a slot only by a 128-bit collision, which could refuse a request, never
/// admit one; the smaller entry (24 bytes with its expiry) keeps a full store's table in
/// fewer cache lines.
type Slot = [u64; 2];

fn slot(key: &ReplayKey) -> Slot {
    let bytes = key.as_bytes();
    let half = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    [half(0), half(8)]
}

/// `swept` while a sweep runs.
const SWEEPING: u64 = u64::MAX;

/// The least time between two sweeps of a full store.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// A replay store for one process: bounded, 32-byte keys, entries expiring with their
/// time to live.
///
/// At `capacity` live entries it refuses new keys with a `503` [`Error`](crate::Error)
/// instead of evicting: an evicted entry would make its signature replayable. A key
/// already remembered is still answered [`Insertion::Repeat`] when the store is full.
/// Expired entries are removed when the store is full, at most every 50 ms, so memory
/// never holds more than `capacity` entries.
///
/// Several replicas need a shared store: see `RedisReplayStore` (feature `redis`).
#[derive(Clone)]
pub struct MemoryReplayStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: [Mutex<HashMap<Slot, u64>>; SHARDS],
    /// Entries held, expired or not: never above `capacity`.
    held: AtomicU64,
    capacity: u64,
    /// The clock entries' expiries are counted on, in microseconds from this instant.
    origin: Instant,
    /// The earliest expiry among the entries held after the last sweep (or inserted since).
    earliest: AtomicU64,
    /// When the last sweep ran.
    swept: AtomicU64,
    /// [`SWEEP_INTERVAL`] in microseconds.
    sweep_interval: u64,
    /// Mixed into the choice of shard.
    shard_secret: u64,
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.inner.capacity)
            .field("held", &self.inner.held.load(Ordering::Relaxed))
            .finish()
    }
}

impl MemoryReplayStore {
    /// The default capacity: 100 000 live entries (a few MiB).
    pub const DEFAULT_CAPACITY: u64 = 100_000;

    /// A store holding at most `capacity` live entries (at least 1).
    pub fn new(capacity: u64) -> Self {
        Self::with_sweep_interval(capacity, SWEEP_INTERVAL)
    }

    fn with_sweep_interval(capacity: u64, interval: Duration) -> Self {
        MemoryReplayStore {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                held: AtomicU64::new(0),
                capacity: capacity.max(1),
                origin: Instant::now(),
                earliest: AtomicU64::new(u64::MAX),
                swept: AtomicU64::new(0),
                sweep_interval: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
                shard_secret: std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8),
            }),
        }
    }

    /// The configured capacity.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Entries held: expired ones are removed first, unless a sweep is already running
    /// (then some of them may still be counted).
    pub fn len(&self) -> u64 {
        self.inner.sweep_unless_sweeping(self.inner.now());
        self.inner.held.load(Ordering::Acquire)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Microseconds since `origin`.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &ReplayKey) -> MutexGuard<'_, HashMap<Slot, u64>> {
        // Keys are hashes of what the client chose, so it could pick keys of one shard;
        // mixed with a secret of the store, the shard is out of its reach.
        let mixed = (slot(key)[0] ^ self.shard_secret).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let shard = &self.shards[usize::try_from(mixed >> 60).unwrap_or(0) % SHARDS];
        // A panic while holding the lock cannot leave a half-made entry: take the map.
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert_now(&self, key: &ReplayKey, ttl: Duration) -> Result<Insertion, Error> {
        let now = self.now();
        // Rounded up, so that an entry never expires before its time to live.
        let expires = now
            .saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX))
            .saturating_add(1);
        for attempt in 0..2 {
            let mut shard = self.shard(key);
            if let Some(expiry) = shard.get_mut(&slot(key)) {
                if *expiry > now {
                    return Ok(Insertion::Repeat);
                }
                // Expired: the slot is reused for the new entry.
                *expiry = expires;
                self.earliest.fetch_min(expires, Ordering::AcqRel);
                return Ok(Insertion::First);
            }
            if self.reserve() {
                shard.insert(slot(key), expires);
                self.earliest.fetch_min(expires, Ordering::AcqRel);
                return Ok(Insertion::First);
            }
            drop(shard);
            if attempt == 0 && !self.sweep_if_due(now) {
                break;
            }
        }
        tracing::warn!(target: "tower_aauth", capacity = self.capacity, "replay cache full; refusing");
        Err(unavailable("the replay cache is full"))
    }

    /// Takes one slot of the capacity, if any is left.
    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.capacity).then_some(held + 1)
            })
            .is_ok()
    }

    /// Sweeps when an entry has expired since the last sweep and the last sweep is at least
    /// [`SWEEP_INTERVAL`] old; whether it swept.
    fn sweep_if_due(&self, now: u64) -> bool {
        let last = self.swept.load(Ordering::Acquire);
        if last == SWEEPING
            || self.earliest.load(Ordering::Acquire) > now
            || (last != 0 && now.saturating_sub(last) < self.sweep_interval)
        {
            return false;
        }
        self.sweep_from(last, now)
    }

    /// Sweeps unless another caller is sweeping; whether it swept.
    fn sweep_unless_sweeping(&self, now: u64) -> bool {
        let last = self.swept.load(Ordering::Acquire);
        last != SWEEPING && self.sweep_from(last, now)
    }

    /// One caller sweeps at a time, and the interval counts from the end of its sweep, so
    /// that sweeps of a large store never overlap or follow each other back to back.
    fn sweep_from(&self, last: u64, now: u64) -> bool {
        if self
            .swept
            .compare_exchange(last, SWEEPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.sweep(now);
        self.swept.store(self.now().clamp(1, SWEEPING - 1), Ordering::Release);
        true
    }

    /// Removes every expired entry and recomputes the earliest expiry.
    fn sweep(&self, now: u64) {
        self.earliest.store(u64::MAX, Ordering::Release);
        let mut earliest = u64::MAX;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, expiry| *expiry > now);
            earliest = shard.values().fold(earliest, |min, expiry| min.min(*expiry));
            let removed = u64::try_from(before - shard.len()).unwrap_or(u64::MAX);
            self.held.fetch_sub(removed, Ordering::AcqRel);
        }
        self.earliest.fetch_min(earliest, Ordering::AcqRel);
    }

    fn release(&self, key: &ReplayKey) {
        if self.shard(key).remove(&slot(key)).is_some() {
            self.held.fetch_sub(1, Ordering::AcqRel);
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
        Some(self.inner.insert_now(key, ttl))
    }

    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
        let result = self.inner.insert_now(&key, ttl);
        Box::pin(std::future::ready(result))
    }

    fn try_release(&self, key: &ReplayKey) -> Option<Result<(), Error>> {
        self.inner.release(key);
        Some(Ok(()))
    }

    fn release(&self, key: ReplayKey) -> BoxFuture<'_, Result<(), Error>> {
        self.inner.release(&key);
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
        let held: usize = store.inner.shards.iter().map(|shard| shard.lock().unwrap().len()).sum();
        assert_eq!(held, 1000);
    }

    #[test]
    fn a_full_store_of_unexpired_entries_refuses_without_sweeping() {
        let store = MemoryReplayStore::new(2);
        for n in 0..2 {
            assert_eq!(store.try_insert(&key(n), TTL).unwrap().unwrap(), Insertion::First);
        }
        for n in 2..100 {
            assert!(store.try_insert(&key(n), TTL).unwrap().is_err());
        }
        // Nothing had expired, so no refusal paid for a sweep.
        assert_eq!(store.inner.swept.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_full_store_sweeps_at_most_once_per_interval() {
        let store = MemoryReplayStore::with_sweep_interval(1, Duration::from_secs(3600));
        let instant = Duration::from_micros(1);
        assert_eq!(store.try_insert(&key(0), instant).unwrap().unwrap(), Insertion::First);
        std::thread::sleep(Duration::from_millis(2));
        // The expired entry is swept for the first newcomer, whose entry then fills the store.
        assert_eq!(store.try_insert(&key(1), instant).unwrap().unwrap(), Insertion::First);
        let swept = store.inner.swept.load(Ordering::Acquire);
        assert_ne!(swept, 0);
        std::thread::sleep(Duration::from_millis(2));
        // Expired again, but the last sweep is younger than the interval: refused, unswept.
        for n in 2..100 {
            assert!(store.try_insert(&key(n), TTL).unwrap().is_err());
        }
        assert_eq!(store.inner.swept.load(Ordering::Acquire), swept);
        // A remembered key is looked up, not swept: expired, it is new again.
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
    }

    #[test]
    fn keys_a_client_could_steer_to_one_shard_still_spread_over_the_shards() {
        let store = MemoryReplayStore::new(1000);
        // Keys whose first byte agrees: what a client grinding its nonces could send.
        let steered: Vec<ReplayKey> = (0..).map(key).filter(|key| key.as_bytes()[0] == 0).take(64).collect();
        for key in &steered {
            assert_eq!(store.try_insert(key, TTL).unwrap().unwrap(), Insertion::First);
        }
        let used = store
            .inner
            .shards
            .iter()
            .filter(|shard| !shard.lock().unwrap().is_empty())
            .count();
        assert!(used >= SHARDS / 2, "64 steered keys landed in {used} shards");
    }

    #[test]
    fn a_sweep_is_never_started_while_another_runs() {
        let store = MemoryReplayStore::with_sweep_interval(1, Duration::ZERO);
        assert_eq!(
            store.try_insert(&key(0), Duration::from_micros(1)).unwrap().unwrap(),
            Insertion::First
        );
        std::thread::sleep(Duration::from_millis(2));
        store.inner.swept.store(SWEEPING, Ordering::Release);
        // Expired and due, but a sweep is marked running: refused, nothing swept.
        assert!(store.try_insert(&key(1), TTL).unwrap().is_err());
        assert_eq!(store.inner.held.load(Ordering::Acquire), 1);
        assert_eq!(store.len(), 1, "len does not sweep either");
        // Once it has ended, the interval counts from its end.
        store.inner.swept.store(1, Ordering::Release);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        assert_ne!(store.inner.swept.load(Ordering::Acquire), SWEEPING);
    }

    #[test]
    fn an_expired_entry_is_new_again_without_waiting_for_a_sweep() {
        let store = MemoryReplayStore::new(10);
        assert_eq!(
            store.try_insert(&key(1), Duration::from_micros(1)).unwrap().unwrap(),
            Insertion::First
        );
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::First);
        assert_eq!(store.try_insert(&key(1), TTL).unwrap().unwrap(), Insertion::Repeat);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn expired_entries_free_their_slot_and_can_be_inserted_again() {
        let store = MemoryReplayStore::new(1);
        let short = Duration::from_millis(50);
        assert_eq!(store.try_insert(&key(1), short).unwrap().unwrap(), Insertion::First);
        assert!(store.try_insert(&key(2), short).unwrap().is_err());
        std::thread::sleep(Duration::from_millis(100));
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
