//! The shared store (feature `redis`): `SET key 1 NX PX ttl` through a
//! [`redis::aio::ConnectionManager`], so several replicas refuse each other's replays;
//! `DEL key` releases a refused request's key.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::key::ReplayKey;
use super::store::{Insertion, ReplayStore, unavailable};
use crate::error::ConfigError;
use crate::error::Error;
use crate::future::BoxFuture;

/// A replay store shared by every replica through Redis.
///
/// Each insert is one `SET <prefix><hex key> 1 NX PX <ttl ms>`: atomic on the server, so
/// of concurrent inserts of one key across all replicas exactly one succeeds. The key of a
/// request a guard refused is released with `DEL` before the refusal is sent (see
/// [`crate::replay`]); when that fails the key simply expires with its time to live.
///
/// Failing closed: a connection error, a Redis error or no answer within the operation
/// timeout is a `503` [`Error`](crate::Error) (`503`, `Retry-After: 1`); the request is not served.
/// The connection manager reconnects in the background after an I/O error, so service
/// resumes by itself once Redis answers again. Connecting is lazy: a replica starts (and
/// answers `503` to protected requests) while Redis is still down.
#[derive(Clone)]
pub struct RedisReplayStore {
    manager: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Options for [`RedisReplayStore`].
#[derive(Debug, Clone)]
pub struct RedisReplayStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl RedisReplayStoreBuilder {
    /// The key prefix (default `tower-aauth:replay:`): give each resource its own when
    /// several share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Budget for one insert, connection included (default 1 s). Past it: `503`.
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
    pub async fn connect(self) -> Result<RedisReplayStore, ConfigError> {
        let manager = crate::redis_connection::manager(&self.url, self.timeout, self.connect_timeout)?;
        Ok(RedisReplayStore {
            manager,
            prefix: self.prefix.into(),
            timeout: self.timeout,
        })
    }
}

impl RedisReplayStore {
    /// Options for a store at `url` (`redis://host:port/db`, `rediss://…` with TLS if the
    /// `redis` crate was built with it).
    pub fn builder(url: impl Into<String>) -> RedisReplayStoreBuilder {
        RedisReplayStoreBuilder {
            url: url.into(),
            prefix: "tower-aauth:replay:".to_owned(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// A store at `url` with the default options.
    pub async fn connect(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).connect().await
    }

    fn name(&self, key: &ReplayKey) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        name.push_str(&key.to_hex());
        name
    }

    async fn set_nx(&self, key: ReplayKey, ttl: Duration) -> Result<Insertion, Error> {
        let mut connection = self.manager.clone();
        let name = self.name(&key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command.arg(name).arg(1).arg("NX").arg("PX").arg(millis);
        let command = command.query_async::<Option<String>>(&mut connection);
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(Some(_))) => Ok(Insertion::First),
            Ok(Ok(None)) => Ok(Insertion::Repeat),
            Ok(Err(error)) => {
                tracing::warn!(target: "tower_aauth", kind = ?error.kind(), "replay store (Redis) failed; refusing");
                Err(unavailable("the replay store is unreachable"))
            }
            Err(_) => {
                tracing::warn!(target: "tower_aauth", "replay store (Redis) timed out; refusing");
                Err(unavailable("the replay store is unreachable"))
            }
        }
    }

    async fn del(&self, key: ReplayKey) -> Result<(), Error> {
        let mut connection = self.manager.clone();
        let mut command = redis::cmd("DEL");
        command.arg(self.name(&key));
        let command = command.query_async::<u64>(&mut connection);
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(target: "tower_aauth", kind = ?error.kind(), "replay store (Redis) failed to release");
                Err(unavailable("the replay store is unreachable"))
            }
            Err(_) => {
                tracing::warn!(target: "tower_aauth", "replay store (Redis) timed out releasing");
                Err(unavailable("the replay store is unreachable"))
            }
        }
    }
}

impl ReplayStore for RedisReplayStore {
    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
        Box::pin(self.set_nx(key, ttl))
    }

    fn try_release(&self, _: &ReplayKey) -> Option<Result<(), Error>> {
        None
    }

    /// `DEL`, within the operation timeout; on failure the entry expires by itself.
    fn release(&self, key: ReplayKey) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.del(key))
    }
}
