//! The shared pending store (feature `redis`): records in Redis hashes, changed only by
//! compare-and-swap scripts, through one [`redis::aio::ConnectionManager`].

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use super::store::{PendingStoreError, PendingWrite, SharedPendingStore};
use crate::error::ConfigError;
use crate::future::BoxFuture;

/// Pending records of deferred delivery shared by every replica through Redis: a request
/// held by one replica is polled, run and answered by whichever replica the poll reaches.
/// Set it with [`DeferredOptions::store`](crate::DeferredOptions::store).
///
/// Keys (with the default prefix `tower-aauth:{pending}:`; the braces keep every key in
/// one Redis Cluster slot):
///
/// * `<prefix>r:<id>`, a hash: `v` the version, `s` the status (JSON: owner key
///   thumbprint, challenge, deadlines, phase), `q` the held request and, once it ran, `r`
///   the result (both in a bounded binary encoding), `w` the bytes counted for it. Its
///   time to live is the pending lifetime plus a grace period, then the auth token's
///   `exp` plus the grace period once a result is stored.
/// * `<prefix>bytes`, a counter: the bytes of every live record together, checked against
///   [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes) when a
///   request is held.
/// * `<prefix>ledger`, a sorted set: one member `<bytes>:<id>` per record, scored by its
///   expiry (Redis time, ms); holding a request first subtracts the records that expired.
///
/// Every change is one Lua script that applies only if the record's version is the one
/// the replica read, so of two replicas taking one record at once exactly one wins.
///
/// Failing closed: a connection error, a Redis error or no answer within the operation
/// timeout is `503` with `Retry-After: 1`, and nothing is held or run. A record or a
/// reply that does not decode (a field missing or unreadable, a reply of another type, a
/// key of another type: `WRONGTYPE`, or a script failing on what it read: `ERR`) is
/// `500 server_error`, and nothing is run. The connection
/// manager reconnects in the background; connecting is lazy.
#[derive(Clone)]
pub struct RedisPendingStore {
    manager: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisPendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPendingStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Options for [`RedisPendingStore`].
#[derive(Debug, Clone)]
pub struct RedisPendingStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl RedisPendingStoreBuilder {
    /// The key prefix (default `tower-aauth:{pending}:`): give each resource its own when
    /// several share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Budget for one operation, connection included (default 1 s). Past it: `503`.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Budget for one connection attempt (default 500 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Creates the store. Must run inside a Tokio runtime (the connection manager spawns
    /// its reconnection task); it does not wait for Redis to be reachable.
    pub async fn connect(self) -> Result<RedisPendingStore, ConfigError> {
        let manager = crate::redis_connection::manager(&self.url, self.timeout, self.connect_timeout)?;
        Ok(RedisPendingStore {
            manager,
            prefix: self.prefix.into(),
            timeout: self.timeout,
        })
    }
}

/// Prunes expired records from the ledger, then holds the new one if it fits.
/// KEYS: record, bytes, ledger. ARGV: status, request, weight, ttl ms, capacity, id.
const CREATE: &str = r"
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
local weight = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + weight > tonumber(ARGV[5]) then return 0 end
redis.call('INCRBY', KEYS[2], weight)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3] .. ':' .. ARGV[6])
redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[1], 'q', ARGV[2], 'w', weight)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// KEYS: record. ARGV: version, status. 1 when applied, 0 otherwise.
const UPDATE: &str = r"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[1]) + 1, 's', ARGV[2])
return 1
";

/// [`UPDATE`] returning the held request when applied (0 otherwise).
const CLAIM: &str = r"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
local request = redis.call('HGET', KEYS[1], 'q')
if not request then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[1]) + 1, 's', ARGV[2])
return request
";

/// KEYS: record, bytes, ledger. ARGV: version, status, result, weight, ttl ms, id.
const FINISH: &str = r"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = redis.call('HGET', KEYS[1], 'w') or '0'
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[1]) + 1, 's', ARGV[2], 'r', ARGV[3], 'w', ARGV[4])
redis.call('HDEL', KEYS[1], 'q')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('ZREM', KEYS[3], before .. ':' .. ARGV[6]) == 1 then
  redis.call('DECRBY', KEYS[2], tonumber(before))
end
redis.call('INCRBY', KEYS[2], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4] .. ':' .. ARGV[6])
return 1
";

impl RedisPendingStore {
    /// Options for a store at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisPendingStoreBuilder {
        RedisPendingStoreBuilder {
            url: url.into(),
            prefix: "tower-aauth:{pending}:".to_owned(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// A store at `url` with the default options.
    pub async fn connect(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).connect().await
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn record_key(&self, id: &str) -> String {
        self.key(&format!("r:{id}"))
    }

    async fn query(&self, command: redis::Cmd) -> Result<Value, PendingStoreError> {
        let mut connection = self.manager.clone();
        let reply = command.query_async::<Value>(&mut connection);
        match tokio::time::timeout(self.timeout, reply).await {
            Ok(Ok(value)) => Ok(value),
            // The key holds another type, or a script met fields it cannot read: the data
            // is not what this crate wrote.
            Ok(Err(error)) if matches!(error.code(), Some("WRONGTYPE" | "ERR")) => {
                tracing::error!(target: "tower_aauth", code = error.code(), "pending store (Redis) refused a record");
                Err(PendingStoreError::Corrupt)
            }
            Ok(Err(error)) => {
                tracing::warn!(target: "tower_aauth", kind = ?error.kind(), "pending store (Redis) failed");
                Err(PendingStoreError::Unavailable)
            }
            Err(_) => {
                tracing::warn!(target: "tower_aauth", "pending store (Redis) timed out");
                Err(PendingStoreError::Unavailable)
            }
        }
    }

    fn script(script: &str, keys: &[String], args: &[&[u8]]) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command.arg(script).arg(keys.len());
        for key in keys {
            command.arg(key);
        }
        for arg in args {
            command.arg(*arg);
        }
        command
    }

    /// A script's `1`/`0` answer.
    async fn applied(&self, command: redis::Cmd) -> Result<bool, PendingStoreError> {
        match self.query(command).await? {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            _ => Err(wrong_type()),
        }
    }
}

fn wrong_type() -> PendingStoreError {
    PendingStoreError::Corrupt
}

fn millis(ttl: Duration) -> Vec<u8> {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
        .into_bytes()
}

impl SharedPendingStore for RedisPendingStore {
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: PendingWrite<'a>,
        ttl: Duration,
        capacity: u64,
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>> {
        Box::pin(async move {
            let keys = [self.record_key(id), self.key("bytes"), self.key("ledger")];
            let weight = record.weight.to_string();
            let capacity = capacity.to_string();
            let args: [&[u8]; 6] = [
                record.status,
                record.data,
                weight.as_bytes(),
                &millis(ttl),
                capacity.as_bytes(),
                id.as_bytes(),
            ];
            self.applied(Self::script(CREATE, &keys, &args)).await
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<(u64, Vec<u8>)>, PendingStoreError>> {
        Box::pin(async move {
            let mut command = redis::cmd("HMGET");
            command.arg(self.record_key(id)).arg("v").arg("s");
            let Value::Array(fields) = self.query(command).await? else {
                return Err(wrong_type());
            };
            match fields.as_slice() {
                [Value::Nil, Value::Nil] => Ok(None),
                [Value::BulkString(version), Value::BulkString(status)] => {
                    let version = std::str::from_utf8(version)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or(PendingStoreError::Corrupt)?;
                    Ok(Some((version, status.clone())))
                }
                // A hash missing one of its fields, or fields of another type.
                _ => Err(PendingStoreError::Corrupt),
            }
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>> {
        Box::pin(async move {
            let version = version.to_string();
            let args: [&[u8]; 2] = [version.as_bytes(), status];
            self.applied(Self::script(UPDATE, &[self.record_key(id)], &args)).await
        })
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, PendingStoreError>> {
        Box::pin(async move {
            let version = version.to_string();
            let args: [&[u8]; 2] = [version.as_bytes(), status];
            match self.query(Self::script(CLAIM, &[self.record_key(id)], &args)).await? {
                Value::Int(0) => Ok(None),
                Value::BulkString(bytes) => Ok(Some(bytes)),
                _ => Err(wrong_type()),
            }
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
        result: PendingWrite<'a>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, PendingStoreError>> {
        Box::pin(async move {
            let keys = [self.record_key(id), self.key("bytes"), self.key("ledger")];
            let version = version.to_string();
            let weight = result.weight.to_string();
            let args: [&[u8]; 6] = [
                version.as_bytes(),
                status,
                result.data,
                weight.as_bytes(),
                &millis(ttl),
                id.as_bytes(),
            ];
            self.applied(Self::script(FINISH, &keys, &args)).await
        })
    }

    fn result<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, PendingStoreError>> {
        Box::pin(async move {
            let mut command = redis::cmd("HGET");
            command.arg(self.record_key(id)).arg("r");
            match self.query(command).await? {
                Value::Nil => Ok(None),
                Value::BulkString(bytes) => Ok(Some(bytes)),
                _ => Err(wrong_type()),
            }
        })
    }
}
