//! The budget counters: one integer per granted budget, keyed by a hash of the auth
//! token's `(iss, jti)`, drawn on and refunded atomically, forgotten at the token's `exp`.
//!
//! The counter holds what is committed *plus* what is reserved for requests in flight, so
//! the draft's invariant ("The Budget Is a Hard Cap": committed consumption plus
//! outstanding reservations never exceed the granted amount) is one comparison inside one
//! atomic step: [`BudgetStore::draw`] adds only when the sum stays within the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::future::BoxFuture;

/// Where the budget counters live. An in-process map bounded in bytes is the default;
/// `RedisBudgetStore` (feature `redis`) shares them across replicas, which a fleet
/// serving one auth token from several replicas needs: each replica counting alone would
/// let the agent spend the budget once per replica.
///
/// Keys are 32-byte hashes (never a token or a `jti`); amounts are integers in the granted
/// budget's own scale, at most 15 digits.
pub trait BudgetStore: Send + Sync + 'static {
    /// Atomically: reads the counter `key` (0 when absent) and, if adding `amount` keeps
    /// it at most `limit`, adds it. Returns the counter as it was **before**: the draw
    /// happened exactly when `before + amount <= limit`. A counter created here is
    /// forgotten after `ttl` (the token's remaining lifetime: relative, so that the
    /// store's clock need not agree with the resource's).
    ///
    /// # Errors
    ///
    /// The store cannot answer (full, unreachable): the request is refused with `503`,
    /// never served unmetered.
    fn draw(&self, key: [u8; 32], amount: u64, limit: u64, ttl: Duration) -> BoxFuture<'_, Result<u64, Error>>;

    /// Atomically subtracts `amount` from the counter `key`, never below 0, and returns
    /// the counter after. A counter that is gone stays gone (answer 0). `amount` 0 reads.
    ///
    /// # Errors
    ///
    /// The store cannot answer. The reservation then stays drawn: the agent is charged
    /// the request's maximum, never more than its grant.
    fn refund(&self, key: [u8; 32], amount: u64) -> BoxFuture<'_, Result<u64, Error>>;
}

/// The counter key of the budget of the auth token `(iss, jti)`.
pub(crate) fn counter_key(issuer: &str, jti: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"tower-aauth/budget\0");
    hash.update(issuer.as_bytes());
    hash.update([0]);
    hash.update(jti.as_bytes());
    hash.finalize().into()
}

/// What one counter costs in memory: the key, the counter, its expiry and the map's own
/// bookkeeping (an estimate on the safe side).
const ENTRY_BYTES: usize = 32 + 8 + 8 + 48;

/// The default capacity: 16 MiB, about 170 000 live budgets.
const DEFAULT_CAPACITY_BYTES: usize = 16 * 1024 * 1024;

/// The default, in-process [`BudgetStore`]: a map bounded in bytes. Counters past their token's
/// `exp` are dropped when room is needed; a live counter is never evicted (forgetting it
/// would hand the agent its budget again), so a store full of live budgets refuses new
/// ones with `503` until some expire. Only auth tokens from issuers the resource trusts
/// reach it, each bringing one counter.
#[derive(Clone)]
pub(crate) struct MemoryBudgetStore {
    inner: Arc<Mutex<Counters>>,
    clock: Arc<dyn Clock>,
    capacity_bytes: usize,
}

#[derive(Default)]
struct Counters {
    map: HashMap<[u8; 32], Counter>,
}

#[derive(Clone, Copy)]
struct Counter {
    drawn: u64,
    expires_at: u64,
}

impl std::fmt::Debug for MemoryBudgetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudgetStore")
            .field("capacity_bytes", &self.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBudgetStore {
    fn default() -> Self {
        MemoryBudgetStore::new(DEFAULT_CAPACITY_BYTES)
    }
}

impl MemoryBudgetStore {
    /// A store holding at most `capacity_bytes` of counters.
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        MemoryBudgetStore::with_clock(capacity_bytes, Arc::new(SystemClock))
    }

    /// A store reading expiry against `clock` (the builder passes the resource's).
    pub(crate) fn with_clock(capacity_bytes: usize, clock: Arc<dyn Clock>) -> Self {
        MemoryBudgetStore {
            inner: Arc::new(Mutex::new(Counters::default())),
            clock,
            capacity_bytes,
        }
    }

    /// Bytes the live and not yet purged counters take.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.lock().map.len().saturating_mul(ENTRY_BYTES)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave a counter half-written: every
        // update is one assignment.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn draw_now(&self, key: [u8; 32], amount: u64, limit: u64, ttl: Duration) -> Result<u64, Error> {
        let now = self.clock.now();
        // At least a second: the request this draw serves is counted.
        let expires_at = now.saturating_add(ttl.as_secs().max(1));
        let mut counters = self.lock();
        if let Some(counter) = counters.map.get_mut(&key) {
            if counter.expires_at > now {
                let before = counter.drawn;
                if before.checked_add(amount).is_some_and(|after| after <= limit) {
                    counter.drawn = before + amount;
                }
                return Ok(before);
            }
            counters.map.remove(&key);
        }
        if (counters.map.len() + 1).saturating_mul(ENTRY_BYTES) > self.capacity_bytes {
            counters.map.retain(|_, counter| counter.expires_at > now);
            if (counters.map.len() + 1).saturating_mul(ENTRY_BYTES) > self.capacity_bytes {
                return Err(crate::replay::store::unavailable("the budget counters are full"));
            }
        }
        let drawn = if amount <= limit { amount } else { 0 };
        counters.map.insert(key, Counter { drawn, expires_at });
        Ok(0)
    }

    fn refund_now(&self, key: [u8; 32], amount: u64) -> u64 {
        let now = self.clock.now();
        let mut counters = self.lock();
        match counters.map.get_mut(&key) {
            Some(counter) if counter.expires_at > now => {
                counter.drawn = counter.drawn.saturating_sub(amount);
                counter.drawn
            }
            Some(_) => {
                counters.map.remove(&key);
                0
            }
            None => 0,
        }
    }
}

impl BudgetStore for MemoryBudgetStore {
    fn draw(&self, key: [u8; 32], amount: u64, limit: u64, ttl: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(std::future::ready(self.draw_now(key, amount, limit, ttl)))
    }

    fn refund(&self, key: [u8; 32], amount: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(std::future::ready(Ok(self.refund_now(key, amount))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn store(capacity: usize) -> (MemoryBudgetStore, ManualClock) {
        let clock = ManualClock::new(1_000);
        (MemoryBudgetStore::with_clock(capacity, Arc::new(clock.clone())), clock)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn block<T>(future: BoxFuture<'_, T>) -> T {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = future;
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("the memory store answers at once"),
        }
    }

    #[test]
    fn a_draw_happens_only_within_the_limit() {
        let (store, _) = store(1 << 20);
        let key = counter_key("https://as.example", "t1");
        assert_eq!(block(store.draw(key, 600, 1000, secs(1_000))).unwrap(), 0);
        assert_eq!(
            block(store.draw(key, 600, 1000, secs(1_000))).unwrap(),
            600,
            "refused: 1200 > 1000"
        );
        assert_eq!(
            block(store.draw(key, 400, 1000, secs(1_000))).unwrap(),
            600,
            "fits exactly"
        );
        assert_eq!(block(store.refund(key, 0)).unwrap(), 1000);
        assert_eq!(
            block(store.draw(key, u64::MAX, u64::MAX, secs(1_000))).unwrap(),
            1000,
            "no overflow"
        );
        assert_eq!(block(store.refund(key, 0)).unwrap(), 1000);
    }

    proptest::proptest! {
        /// Whatever the draws and refunds, the counter is what was drawn minus what was
        /// refunded, and never above the limit: a budget is never overspent.
        #[test]
        fn the_counter_never_exceeds_the_limit(
            limit in 0u64..=1_000_000,
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..=400_000), 0..64),
        ) {
            let (store, _) = store(1 << 20);
            let key = counter_key("https://as.example", "t1");
            let mut model = 0u64;
            for (is_draw, amount) in ops {
                if is_draw {
                    let before = block(store.draw(key, amount, limit, secs(1_000))).unwrap();
                    proptest::prop_assert_eq!(before, model);
                    if model + amount <= limit {
                        model += amount;
                    }
                } else {
                    let after = block(store.refund(key, amount)).unwrap();
                    model = model.saturating_sub(amount);
                    proptest::prop_assert_eq!(after, model);
                }
                proptest::prop_assert!(model <= limit);
            }
        }
    }

    #[test]
    fn a_refund_never_goes_below_zero() {
        let (store, _) = store(1 << 20);
        let key = counter_key("https://as.example", "t1");
        block(store.draw(key, 5, 10, secs(1_000))).unwrap();
        assert_eq!(block(store.refund(key, 9)).unwrap(), 0);
    }

    #[test]
    fn counters_are_forgotten_at_the_tokens_exp() {
        let (store, clock) = store(1 << 20);
        let key = counter_key("https://as.example", "t1");
        block(store.draw(key, 10, 10, secs(1_000))).unwrap();
        clock.set(2_000);
        assert_eq!(block(store.refund(key, 0)).unwrap(), 0);
        assert_eq!(store.held_bytes(), 0);
    }

    #[test]
    fn a_full_store_purges_expired_counters_and_refuses_rather_than_evicting_live_ones() {
        let (store, clock) = store(2 * ENTRY_BYTES);
        let key = |jti: &str| counter_key("https://as.example", jti);
        block(store.draw(key("a"), 1, 10, secs(500))).unwrap();
        block(store.draw(key("b"), 1, 10, secs(2_000))).unwrap();
        let full = block(store.draw(key("c"), 1, 10, secs(2_000))).unwrap_err();
        assert_eq!(full.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            block(store.refund(key("a"), 0)).unwrap(),
            1,
            "the live counter survived"
        );
        clock.set(1_500);
        assert_eq!(
            block(store.draw(key("c"), 1, 10, secs(2_000))).unwrap(),
            0,
            "room made by expiry"
        );
        assert!(store.held_bytes() <= 2 * ENTRY_BYTES);
    }
}
