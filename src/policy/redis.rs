//! The Redis [`SharedPolicyStore`]: revocations, scope ceilings and key → agent bindings
//! kept in step across replicas through Redis (feature `redis`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::ceiling::ScopeCeilings;
use super::identity::AgentBindings;
use super::revocation::Revocations;
use super::sync::{
    BindingWrite, PolicyNotice, PolicyState, PolicySync, PolicySyncBuilder, PolicyWrite, SharedPolicyStore,
    StoreFailure,
};
use crate::clock::Clock;
use crate::error::{ConfigError, PolicyError};
use crate::future::BoxFuture;

/// Members per `SADD` when many are written.
const SADD_CHUNK: usize = 10_000;

/// Keeps a replica's [`Revocations`] and [`ScopeCeilings`] (and, if asked, its key →
/// agent bindings) in step with every other replica's through one Redis: a
/// [`PolicySync`] over the crate's Redis [`SharedPolicyStore`].
///
/// The layer never talks to Redis: it reads the handles' local snapshots, as without a
/// sync. A background task does the rest, through one [`ConnectionManager`] (RESP3, so
/// that the same connection also carries the subscription):
///
/// * **Writes** through a synced handle ([`Revocations::revoke`], [`unrevoke`](Revocations::unrevoke),
///   [`replace`](Revocations::replace), [`reload_json`](Revocations::reload_json),
///   [`ScopeCeilings::replace`], [`ScopeCeilings::reload_json`]) apply to this replica at
///   once and are published in one `MULTI`/`EXEC` transaction: the change, `INCR` of the
///   version key, `PUBLISH` on the channel. A write made while Redis is unreachable stays
///   queued (at most 100 000) and is published when Redis answers again.
/// * **Reads**: the task subscribes to the channel and also reads the version key every
///   [`poll_interval`](RedisPolicySyncBuilder::poll_interval) (250 ms by default), so a
///   lost message or an operator's direct write (which need not publish) is picked up
///   within one interval. When the version changed it reads the revocation set and the
///   ceilings document in one transaction, validates them as
///   [`RevocationSet::from_json`](super::RevocationSet::from_json) and [`CeilingSet::from_json`](super::CeilingSet::from_json) do, and swaps the
///   snapshots.
///
/// # Redis schema
///
/// With the default prefix `tower-aauth:policy:`:
///
/// | key | type | holds |
/// |---|---|---|
/// | `tower-aauth:policy:revocations` | set | one member per revoked entry: a revocation document with exactly one entry, compact, e.g. `{"agents":["aauth:assistant@agent.example"]}`, `{"key_thumbprints":["…"]}`, `{"jtis":[{"iss":"https://as.example","jti":"at-42"}]}` (with `"exp":…` when the entry lapses once the token expired: the revocation endpoint's), `{"persons":[{"iss":"https://ps.example","sub":"…"}]}` |
/// | `tower-aauth:policy:ceilings` | string | the ceilings document ([`CeilingSet::from_json`](super::CeilingSet::from_json)); absent: no ceilings |
/// | `tower-aauth:policy:version` | string (integer) | incremented by every write |
/// | channel `tower-aauth:policy:changed` | pub/sub | a message after every write (its payload is not read) |
/// | `tower-aauth:policy:bindings` | hash | key thumbprint → binding of a key to an agent a policy names (with [`agent_bindings`](RedisPolicySyncBuilder::agent_bindings)): `{"thumbprint":"…","provider":"https://agent.example","agent":"aauth:assistant@agent.example","until":1767225600,"pinned":true}`; ended ones are deleted when a replica reads the hash |
/// | channel `tower-aauth:policy:bound` | pub/sub | each binding written, as stored |
///
/// **Why a set.** Revocations are entries, not a document: two replicas that revoke
/// different agents at the same moment each `SADD` one member, and both survive. A
/// document rewritten whole by each replica would keep only the last writer's view.
/// Ceilings are one document replaced whole; the last write wins.
///
/// **An operator's tool** writes the same keys, then increments the version (publishing
/// is optional; the poll finds the change within one interval):
///
/// ```text
/// redis-cli SADD tower-aauth:policy:revocations '{"agents":["aauth:assistant@agent.example"]}'
/// redis-cli INCR tower-aauth:policy:version
/// redis-cli SET tower-aauth:policy:ceilings '{"default":"reports:read"}'
/// redis-cli INCR tower-aauth:policy:version
/// ```
///
/// Lifting a revocation is `SREM` of its exact member text, then `INCR`. Never delete the
/// version key: a replica that finds it gone takes Redis for reset (see below).
///
/// # Bad input
///
/// * A member that is not a one-entry revocation document: the other members are
///   applied *on top of* the set in force (so a new revocation is still enforced), nothing
///   is lifted until the member is fixed, and an error is logged on every change.
/// * A malformed ceilings document: the ceilings in force stay; an error is logged.
/// * A key of the wrong type (the set holds a list, the version is not an integer): the
///   read fails, the snapshots stay, and the replica is not confirmed current (below).
///
/// # When Redis is unreachable
///
/// Fail closed after a bound. Each successful read confirms the snapshots current; for
/// [`max_staleness`](RedisPolicySyncBuilder::max_staleness) (3 s by default) after the
/// last confirmation the layer keeps serving from them, then answers every verified
/// request `503` with `Retry-After: 1` and no `Signature-Error` (a revocation written
/// through a replica that still reaches Redis might be missing here). A replica starts
/// closed and opens at its first successful read. Unsigned requests to open routes are
/// not affected. The connection manager reconnects by itself; the next poll after it
/// does (within about `poll_interval` + 200 ms) confirms the replica again.
///
/// A Redis that comes back **empty** (restarted without persistence) is refilled: a
/// replica that had seen a version and finds none re-adds its shared set (`SADD`, so
/// every replica's entries survive), sets the ceilings document it last read if none is
/// there (`SET … NX`) and raises the version past the one it had seen.
///
/// # Key → agent bindings
///
/// With [`agent_bindings`](RedisPolicySyncBuilder::agent_bindings), the bindings of the
/// agents a policy names (a ceiling or a revocation: the bindings that decide what a
/// grant naming no agent may do) travel between the replicas, so a grant presented to
/// any replica meets the ceiling or revocation of the agent any replica saw behind its
/// key. Bindings of agents no policy names stay on their replica: any agent provider can
/// mint agent tokens for as many keys as it likes, and the shared store only grows with
/// the policy. Reads stay local; bindings are written by the background task (one
/// `EVAL` per binding, pipelined, at most 1 024 a round), never on the request path.
///
/// * **Named later**: when a change of the policy names an agent, each replica pins the
///   bindings it holds for it and publishes them at once.
/// * **First writer wins.** The script writes a binding only when the key is unbound
///   (or its binding ended) or bound to the same agent, and never shortens one. When two
///   replicas bound one key to two agents at the same moment, the one that reached Redis
///   second adopts Redis's binding, so every replica converges on one agent per key
///   (later requests naming the other are `401 invalid_jwt`).
/// * **A replica that starts, or resubscribes**, reads the hash; while it cannot
///   subscribe it reads it every round. Each replica also writes its live bindings again
///   every 60 s, so a Redis emptied behind the replicas' backs has them back within that.
/// * **While Redis is unreachable** bindings queue (one entry per key, at most 50 000)
///   and are published when Redis returns. A replica that cannot confirm the policy for
///   `max_staleness` answers `503` and binds nothing. Writing or reading bindings never
///   decides whether a replica is current: a failure there costs propagation time only.
/// * **Bad input**: a stored or published binding that is not one valid document (size
///   over 2 KiB, a thumbprint that is not 43 base64url characters, an agent identifier
///   its provider may not name, an end in the past or more than 30 days ahead) is
///   ignored and logged; the bindings in force stay.
///
/// # Layers
///
/// What a [`Revocations`] handle held when the sync started, and what
/// [`local_revocations_json`](Self::local_revocations_json) installs, is this replica's
/// local layer (say, a file each replica reads): enforced in union with the shared set,
/// never published. [`Revocations::unrevoke`] does not lift a local entry.
#[derive(Clone)]
pub struct RedisPolicySync {
    sync: PolicySync,
}

impl std::fmt::Debug for RedisPolicySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPolicySync").finish_non_exhaustive()
    }
}

/// Options for [`RedisPolicySync`].
#[derive(Clone)]
pub struct RedisPolicySyncBuilder {
    url: String,
    prefix: String,
    sync: PolicySyncBuilder,
    timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RedisPolicySyncBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPolicySyncBuilder")
            .field("prefix", &self.prefix)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl RedisPolicySyncBuilder {
    /// Also shares the key → agent bindings ([`AAuth::agent_bindings`](crate::AAuth::agent_bindings),
    /// read by the layer's [`AAuth::clock`](crate::AAuth::clock)) with the other replicas:
    /// see "Key → agent bindings" above. [`start`](Self::start) refuses a store other than
    /// the crate's [`MemoryAgentBindings`](super::MemoryAgentBindings) (another
    /// implementation shares itself).
    pub fn agent_bindings(mut self, bindings: &Arc<dyn AgentBindings>, clock: &Arc<dyn Clock>) -> Self {
        self.sync = self.sync.agent_bindings(bindings, clock);
        self
    }

    /// The key prefix (default `tower-aauth:policy:`): resources that share one Redis
    /// but not their policy each take their own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often the version key is read (default 250 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.sync = self.sync.poll_interval(interval);
        self
    }

    /// How long after the last successful read the snapshots are trusted (default 3 s);
    /// past it, verified requests are answered `503`. Must exceed the polling interval
    /// plus the operation timeout.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.sync = self.sync.max_staleness(bound);
        self
    }

    /// Budget for one Redis operation (default 500 ms).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.sync = self.sync.operation_timeout(timeout);
        self
    }

    /// Budget for one connection attempt (default 500 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Attaches the sync to `revocations` and `ceilings` (the handles the layer reads:
    /// [`AAuth::revocations`](crate::AAuth::revocations),
    /// [`AAuth::scope_ceilings`](crate::AAuth::scope_ceilings)), reads Redis once
    /// (waiting at most the operation and connection timeouts; an unreachable Redis is
    /// not an error, the replica then answers `503` until it is reached) and starts the
    /// background task, which runs as long as the Tokio runtime.
    ///
    /// Errors: a zero interval or timeout, a staleness bound not above the polling
    /// interval plus the operation timeout, an invalid URL, a handle synced already, or
    /// bindings that are not a [`MemoryAgentBindings`](super::MemoryAgentBindings).
    pub async fn start(
        self,
        revocations: &Revocations,
        ceilings: &ScopeCeilings,
    ) -> Result<RedisPolicySync, ConfigError> {
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "the polling interval and the store timeouts must be positive",
            ));
        }
        self.sync.validate()?;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| ConfigError::new("the Redis URL is not valid"))?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|_| ConfigError::new("the Redis URL is not valid"))?;
        let (push_sender, pushes) = unbounded_channel();
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(push_sender);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| ConfigError::new("the Redis connection manager could not be created"))?;
        let store = RedisPolicyStore {
            manager,
            keys: Keys::new(&self.prefix),
            pushes: tokio::sync::Mutex::new(pushes),
        };
        let sync = self.sync.start(store, revocations, ceilings).await?;
        Ok(RedisPolicySync { sync })
    }
}

impl RedisPolicySync {
    /// Options for a sync through the Redis at `url` (`redis://host:port/db`; RESP3 is
    /// used, so Redis 6 or later).
    pub fn builder(url: impl Into<String>) -> RedisPolicySyncBuilder {
        RedisPolicySyncBuilder {
            url: url.into(),
            prefix: "tower-aauth:policy:".to_owned(),
            sync: PolicySync::builder(),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// Replaces this replica's local revocation layer with a JSON document
    /// ([`RevocationSet::from_json`](super::RevocationSet::from_json)(super::RevocationSet::from_json)): enforced with the
    /// shared set, never published. On error the layer in force stays. Returns the number
    /// of entries loaded.
    pub fn local_revocations_json(&self, bytes: &[u8]) -> Result<usize, PolicyError> {
        self.sync.local_revocations_json(bytes)
    }
}

struct Keys {
    revocations: String,
    ceilings: String,
    version: String,
    channel: String,
    /// The hash of shared bindings, by key thumbprint.
    bindings: String,
    bindings_channel: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            revocations: format!("{prefix}revocations"),
            ceilings: format!("{prefix}ceilings"),
            version: format!("{prefix}version"),
            channel: format!("{prefix}changed"),
            bindings: format!("{prefix}bindings"),
            bindings_channel: format!("{prefix}bound"),
        }
    }
}

/// The Redis [`SharedPolicyStore`] (schema on [`RedisPolicySync`]).
struct RedisPolicyStore {
    manager: ConnectionManager,
    keys: Keys,
    /// The connection's pushes (subscription messages and disconnections); read by the
    /// one sync task.
    pushes: tokio::sync::Mutex<UnboundedReceiver<PushInfo>>,
}

/// A version key that does not hold an integer.
#[derive(Debug)]
struct NotAVersion;

impl std::fmt::Display for NotAVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the version key does not hold an integer")
    }
}

impl std::error::Error for NotAVersion {}

fn parse_version(version: Option<String>) -> Result<Option<u64>, StoreFailure> {
    version
        .map(|text| text.parse::<u64>().map_err(|_| Box::new(NotAVersion) as StoreFailure))
        .transpose()
}

/// Writes a binding into the bindings hash unless its key is bound, until after now, to
/// another agent (then answers that binding) or to this agent as long (then answers nil);
/// publishes what it wrote. KEYS[1] the hash; ARGV: thumbprint, text, channel, provider,
/// agent id, until, now. Agents compare as `BindingWrite::same_agent` does; a stored
/// value that does not decode, or has ended, counts as absent.
const BIND_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, c = pcall(cjson.decode, current)
  if ok and type(c) == 'table' and tonumber(c['until']) and tonumber(c['until']) > tonumber(ARGV[7]) then
    local same = c['agent'] == ARGV[5] and (string.sub(ARGV[5], 1, 6) == 'aauth:' or c['provider'] == ARGV[4])
    if not same then return current end
    if tonumber(c['until']) >= tonumber(ARGV[6]) then return false end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return false
"#;

/// Answers the bindings of the hash whose `until` is after now and deletes the others
/// (ended, or not decodable). KEYS[1] the hash; ARGV: now, max.
const READ_BINDINGS_SCRIPT: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
for i = 1, #all, 2 do
  local ok, c = pcall(cjson.decode, all[i + 1])
  if ok and type(c) == 'table' and tonumber(c['until']) and tonumber(c['until']) > now then
    if #live < max then live[#live + 1] = all[i + 1] end
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"#;

impl RedisPolicyStore {
    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StoreFailure> {
        let mut connection = self.manager.clone();
        Ok(pipe.query_async::<T>(&mut connection).await?)
    }

    fn notice_of(&self, push: &PushInfo) -> Option<PolicyNotice> {
        match push.kind {
            PushKind::Disconnection => Some(PolicyNotice::Lost),
            PushKind::Message => {
                let [channel, payload] = push.data.as_slice() else {
                    return None;
                };
                let channel: String = redis::from_redis_value_ref(channel).ok()?;
                if channel == self.keys.bindings_channel {
                    redis::from_redis_value_ref::<String>(payload)
                        .ok()
                        .map(PolicyNotice::Binding)
                } else if channel == self.keys.channel {
                    Some(PolicyNotice::Changed)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

impl SharedPolicyStore for RedisPolicyStore {
    fn write<'a>(&'a self, write: &'a PolicyWrite) -> BoxFuture<'a, Result<(), StoreFailure>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if write.clear {
                pipe.del(&self.keys.revocations).ignore();
            }
            for chunk in write.remove.chunks(SADD_CHUNK) {
                pipe.srem(&self.keys.revocations, chunk).ignore();
            }
            for chunk in write.add.chunks(SADD_CHUNK) {
                pipe.sadd(&self.keys.revocations, chunk).ignore();
            }
            if let Some(document) = &write.ceilings {
                let set = pipe.cmd("SET").arg(&self.keys.ceilings).arg(document);
                if write.ceilings_only_if_absent {
                    set.arg("NX");
                }
                set.ignore();
            }
            pipe.incr(&self.keys.version, write.version_step.max(1)).ignore();
            pipe.publish(&self.keys.channel, "changed").ignore();
            self.query::<()>(&pipe).await
        })
    }

    fn version(&self) -> BoxFuture<'_, Result<Option<u64>, StoreFailure>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.get(&self.keys.version);
            let (version,): (Option<String>,) = self.query(&pipe).await?;
            parse_version(version)
        })
    }

    fn read(&self) -> BoxFuture<'_, Result<PolicyState, StoreFailure>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .get(&self.keys.version)
                .smembers(&self.keys.revocations)
                .get(&self.keys.ceilings);
            let (version, members, ceilings): (Option<String>, Vec<String>, Option<String>) = self.query(&pipe).await?;
            Ok(PolicyState::new(parse_version(version)?, members, ceilings))
        })
    }

    fn write_bindings<'a>(
        &'a self,
        bindings: &'a [BindingWrite],
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Option<String>>, StoreFailure>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for binding in bindings {
                pipe.cmd("EVAL")
                    .arg(BIND_SCRIPT)
                    .arg(1)
                    .arg(&self.keys.bindings)
                    .arg(&binding.thumbprint)
                    .arg(&binding.text)
                    .arg(&self.keys.bindings_channel)
                    .arg(&binding.provider)
                    .arg(&binding.agent)
                    .arg(binding.until)
                    .arg(now);
            }
            self.query(&pipe).await
        })
    }

    fn read_bindings(&self, now: u64, max: usize) -> BoxFuture<'_, Result<Vec<String>, StoreFailure>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("EVAL")
                .arg(READ_BINDINGS_SCRIPT)
                .arg(1)
                .arg(&self.keys.bindings)
                .arg(now)
                .arg(max);
            let (texts,): (Vec<String>,) = self.query(&pipe).await?;
            Ok(texts)
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            connection
                .subscribe(&[&self.keys.channel, &self.keys.bindings_channel])
                .await?;
            Ok(())
        })
    }

    fn notice(&self) -> BoxFuture<'_, PolicyNotice> {
        Box::pin(async move {
            let mut pushes = self.pushes.lock().await;
            loop {
                match pushes.recv().await {
                    Some(push) => {
                        if let Some(notice) = self.notice_of(&push) {
                            return notice;
                        }
                    }
                    // The connection manager is gone: no notice will ever come.
                    None => std::future::pending::<()>().await,
                }
            }
        })
    }
}
