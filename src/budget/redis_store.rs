//! The shared budget counters (feature `redis`): each draw and refund is one `EVAL` of a
//! short script, atomic on the server, so the replicas of a fleet draw on one counter per
//! auth token.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::store::BudgetStore;
use crate::error::{ConfigError, Error};
use crate::future::BoxFuture;
use crate::replay::store::unavailable;

/// Adds `ARGV[1]` when the sum stays within `ARGV[2]`; a counter it creates expires after
/// `ARGV[3]` seconds. Returns the counter before. Amounts are at most 15 digits,
/// so Lua's doubles hold every sum exactly.
const DRAW: &str = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') \
    if v + tonumber(ARGV[1]) <= tonumber(ARGV[2]) then \
      redis.call('INCRBY', KEYS[1], ARGV[1]) \
      if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end \
    end \
    return v";

/// Subtracts `ARGV[1]`, never below 0, keeping the expiry; a missing counter stays
/// missing. Returns the counter after.
const REFUND: &str = "local v = redis.call('GET', KEYS[1]) \
    if not v then return 0 end \
    local n = tonumber(v) - tonumber(ARGV[1]) \
    if n < 0 then n = 0 end \
    redis.call('SET', KEYS[1], n, 'KEEPTTL') \
    return n";

/// Budget counters shared by every replica through Redis (6.0 or later).
///
/// Failing closed, as [`RedisReplayStore`](crate::replay::RedisReplayStore): an error or
/// no answer within a second is a `503`, and the request is not served; a refund that
/// fails leaves the reservation charged. Counters expire with their auth token (Redis's
/// relative lifetime, so Redis's clock need not agree with the resource's). Keys are `<prefix><64 hex digits>`.
#[derive(Clone)]
pub struct RedisBudgetStore {
    manager: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisBudgetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgetStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBudgetStore {
    /// A store at `url` (`redis://host:port/db`), keys prefixed `tower-aauth:budget:`.
    /// Must run inside a Tokio runtime; it does not wait for Redis to be reachable.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    pub async fn connect(url: impl Into<String>) -> Result<Self, ConfigError> {
        let timeout = Duration::from_secs(1);
        let manager = crate::redis_connection::manager(&url.into(), timeout, Duration::from_millis(500))?;
        Ok(RedisBudgetStore {
            manager,
            prefix: "tower-aauth:budget:".into(),
            timeout,
        })
    }

    /// The key prefix: give each resource its own when several share one Redis.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    fn name(&self, key: &[u8; 32]) -> String {
        use std::fmt::Write;
        key.iter().fold(self.prefix.to_string(), |mut name, byte| {
            let _ = write!(name, "{byte:02x}");
            name
        })
    }

    async fn eval<const N: usize>(&self, script: &'static str, key: [u8; 32], args: [u64; N]) -> Result<u64, Error> {
        let mut connection = self.manager.clone();
        let mut command = redis::cmd("EVAL");
        command.arg(script).arg(1).arg(self.name(&key));
        for arg in args {
            command.arg(arg);
        }
        let command = command.query_async::<i64>(&mut connection);
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(u64::try_from(value).unwrap_or(0)),
            Ok(Err(error)) => {
                tracing::warn!(target: "tower_aauth", kind = ?error.kind(), "budget store (Redis) failed; refusing");
                Err(unavailable("the budget store is unreachable"))
            }
            Err(_) => {
                tracing::warn!(target: "tower_aauth", "budget store (Redis) timed out; refusing");
                Err(unavailable("the budget store is unreachable"))
            }
        }
    }
}

impl BudgetStore for RedisBudgetStore {
    fn draw(&self, key: [u8; 32], amount: u64, limit: u64, ttl: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(self.eval(DRAW, key, [amount, limit, ttl.as_secs().max(1)]))
    }

    fn refund(&self, key: [u8; 32], amount: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(self.eval(REFUND, key, [amount]))
    }
}
