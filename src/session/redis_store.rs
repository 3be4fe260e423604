//! The shared session store (feature `redis`): values in Redis hashes, their bytes
//! counted against a bound by Lua scripts, through one [`redis::aio::ConnectionManager`].

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use super::store::{SessionStore, StoreError};
use crate::error::ConfigError;
use crate::future::BoxFuture;

/// Sessions and pending interactions shared by every replica through Redis
/// ([`SessionOptions::redis_store`](super::SessionOptions::redis_store)).
///
/// Keys (default prefix `tower-aauth:{session}:`; the braces keep every key in one Redis
/// Cluster slot): `<prefix>k:<key>` a hash per value (`v` the value, `m` its ledger
/// member), expiring with it; `<prefix>bytes` the bytes of all live values; and
/// `<prefix>ledger`, a sorted set of `<bytes>:<nonce>` members scored by expiry, from
/// which each write first subtracts the values that expired. A write that would take the
/// count past the capacity is refused; live values are never evicted.
///
/// Failing closed: a connection error, a Redis error or no answer within the operation
/// timeout (1 s) is a [`StoreError`] (`503` with `Retry-After: 1`).
#[derive(Clone)]
pub(crate) struct RedisSessionStore {
    manager: ConnectionManager,
    prefix: Arc<str>,
    /// The bytes all values may take together (set from the options).
    capacity: u64,
    /// Which share of the capacity this handle counts against (`bytes:<part>`).
    part: &'static str,
    timeout: Duration,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Bytes counted for each value beyond its key and bytes.
const ENTRY_OVERHEAD: u64 = 128;

/// KEYS: value, bytes, ledger. ARGV: value, weight, ttl ms, capacity, nonce.
/// 1 when stored, 0 when it does not fit.
const PUT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
if #expired > 0 then
  local freed = 0
  for _, member in ipairs(expired) do
    freed = freed + tonumber(string.match(member, '^(%d+):'))
  end
  redis.call('ZREM', KEYS[3], unpack(expired))
  redis.call('DECRBY', KEYS[2], freed)
end
local old = redis.call('HGET', KEYS[1], 'm')
local before = 0
if old and redis.call('ZSCORE', KEYS[3], old) then
  before = tonumber(string.match(old, '^(%d+):'))
end
local weight = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used - before + weight > tonumber(ARGV[4]) then return 0 end
if before > 0 then
  redis.call('ZREM', KEYS[3], old)
  redis.call('DECRBY', KEYS[2], before)
end
local member = ARGV[2] .. ':' .. ARGV[5]
redis.call('INCRBY', KEYS[2], weight)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), member)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', member)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS: value, bytes, ledger. The value (and its bytes released), or nil.
const TAKE: &str = r"
local value = redis.call('HGET', KEYS[1], 'v')
if not value then return false end
local member = redis.call('HGET', KEYS[1], 'm')
redis.call('DEL', KEYS[1])
if member and redis.call('ZREM', KEYS[3], member) == 1 then
  redis.call('DECRBY', KEYS[2], tonumber(string.match(member, '^(%d+):')))
end
return value
";

impl RedisSessionStore {
    /// A store at `url` under `prefix`; connecting is lazy.
    pub(crate) fn connect(url: &str, prefix: &str) -> Result<Self, ConfigError> {
        let timeout = Duration::from_secs(1);
        let manager = crate::redis_connection::manager(url, timeout, Duration::from_millis(500))?;
        Ok(RedisSessionStore {
            manager,
            prefix: prefix.into(),
            capacity: 0,
            part: "",
            timeout,
        })
    }

    /// The store bounded by `capacity` bytes counted apart, as `part` (values are keyed
    /// as before; only the byte count and its ledger are this part's own).
    pub(crate) fn share(mut self, capacity: u64, part: &'static str) -> Self {
        self.capacity = capacity;
        self.part = part;
        self
    }

    fn keys(&self, key: &str) -> [String; 3] {
        let prefix = &self.prefix;
        [
            format!("{prefix}k:{key}"),
            format!("{prefix}bytes{}", self.part),
            format!("{prefix}ledger{}", self.part),
        ]
    }

    async fn run(&self, script: &str, keys: &[String], args: &[Vec<u8>]) -> Result<Value, StoreError> {
        let mut connection = self.manager.clone();
        let mut command = redis::cmd("EVAL");
        command.arg(script).arg(keys.len());
        for key in keys {
            command.arg(key);
        }
        for arg in args {
            command.arg(arg.as_slice());
        }
        match tokio::time::timeout(self.timeout, command.query_async::<Value>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::warn!(target: "tower_aauth", code = error.code(), "session store (Redis) failed");
                Err(StoreError)
            }
            Err(_) => Err(StoreError),
        }
    }
}

fn bytes_of(value: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        _ => Err(StoreError),
    }
}

impl SessionStore for RedisSessionStore {
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let weight = (key.len() + value.len()) as u64 + ENTRY_OVERHEAD;
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).map_err(|_| StoreError)?;
            let args = [
                value,
                weight.to_string().into_bytes(),
                ttl_ms.to_string().into_bytes(),
                self.capacity.to_string().into_bytes(),
                crate::jose::b64url(nonce).into_bytes(),
            ];
            match self.run(PUT, &self.keys(key), &args).await? {
                Value::Int(1) => Ok(true),
                Value::Int(0) => Ok(false),
                _ => Err(StoreError),
            }
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let [value_key, ..] = self.keys(key);
            let mut command = redis::cmd("HGET");
            command.arg(value_key).arg("v");
            match tokio::time::timeout(self.timeout, command.query_async::<Value>(&mut connection)).await {
                Ok(Ok(value)) => bytes_of(value),
                _ => Err(StoreError),
            }
        })
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move { bytes_of(self.run(TAKE, &self.keys(key), &[]).await?) })
    }
}
