//! Revocations and scope ceilings kept in step across replicas through Redis (feature
//! `redis`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::ceiling::{CeilingSet, ScopeCeilings};
use super::identity::{AgentBindings, AgentId, Binding, BindingRefused, MemoryAgentBindings};
use super::revocation::{RevocationOp, RevocationSet, Revocations};
use crate::clock::Clock;
use crate::error::{ConfigError, PolicyError};
use crate::metrics::{Op, Store};

/// Members per `SADD` when a whole set is written.
const SADD_CHUNK: usize = 10_000;
/// Longest excerpt of a malformed member or document quoted in a log line.
const QUOTE: usize = 120;

/// Keeps a replica's [`Revocations`] and [`ScopeCeilings`] in step with every other
/// replica's through one Redis.
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
///   [`RevocationSet::from_json`] and [`CeilingSet::from_json`] do, and swaps the
///   snapshots.
///
/// # Redis schema
///
/// With the default prefix `tower-aauth:policy:`:
///
/// | key | type | holds |
/// |---|---|---|
/// | `tower-aauth:policy:revocations` | set | one member per revoked entry: a revocation document with exactly one entry, compact, e.g. `{"agents":["aauth:assistant@agent.example"]}`, `{"key_thumbprints":["…"]}`, `{"jtis":[{"iss":"https://as.example","jti":"at-42"}]}`, `{"persons":[{"iss":"https://ps.example","sub":"…"}]}` |
/// | `tower-aauth:policy:ceilings` | string | the ceilings document ([`CeilingSet::from_json`]); absent: no ceilings |
/// | `tower-aauth:policy:version` | string (integer) | incremented by every write |
/// | channel `tower-aauth:policy:changed` | pub/sub | a message after every write (its payload is not read) |
/// | `tower-aauth:policy:binding:<thumbprint>` | string, expiring when the binding ends | a key → agent binding (with [`agent_bindings`](RedisPolicySyncBuilder::agent_bindings)): `{"thumbprint":"…","provider":"https://agent.example","agent":"aauth:assistant@agent.example","until":1767225600,"pinned":false}` |
/// | channel `tower-aauth:policy:bindings` | pub/sub | each binding written, as stored |
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
/// With [`agent_bindings`](RedisPolicySyncBuilder::agent_bindings), the bindings this
/// replica makes (an agent token or a `jwks_uri` signer seen with a key; see the
/// [`policy`](crate::policy) module) are published, and every other replica's are applied
/// here, so a grant presented to any replica is attributed to the agent that any replica
/// saw behind its key. Reads stay local; a binding made here is written by the same
/// background task (one `EVAL` per binding, pipelined), never on the request path.
///
/// * **First writer wins.** The script writes a binding only when the key is unbound or
///   bound to the same agent, and never shortens one. When two replicas bound one key to
///   two agents at the same moment, the one that reached Redis second adopts Redis's
///   binding, so every replica converges on one agent per key (later requests naming the
///   other are `401 invalid_jwt`).
/// * **A replica that starts, or resubscribes after an outage**, reads every stored
///   binding (`SCAN`) before it counts as current.
/// * **While Redis is unreachable** bindings stay local and queue (at most 50 000; beyond
///   that they stay local and a warning is logged); they are published when Redis
///   returns. A request that another replica would attribute meanwhile gets the default
///   ceiling here, as any unattributed request does, and the staleness bound above closes
///   the replica after 3 s anyway. A Redis restarted empty is refilled with every live
///   binding of every replica.
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
    revocations: Revocations,
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
    bindings: Option<(Arc<dyn AgentBindings>, Arc<dyn Clock>)>,
    poll_interval: Duration,
    max_staleness: Duration,
    timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RedisPolicySyncBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPolicySyncBuilder")
            .field("prefix", &self.prefix)
            .field("bindings", &self.bindings.is_some())
            .field("poll_interval", &self.poll_interval)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

impl RedisPolicySyncBuilder {
    /// Also shares the key → agent bindings ([`AAuth::agent_bindings`](crate::AAuth::agent_bindings),
    /// read by the layer's [`AAuth::clock`](crate::AAuth::clock)) with the other replicas:
    /// see "Key → agent bindings" above. [`start`](Self::start) refuses a store other than
    /// the crate's [`MemoryAgentBindings`] (another implementation shares itself).
    pub fn agent_bindings(mut self, bindings: &Arc<dyn AgentBindings>, clock: &Arc<dyn Clock>) -> Self {
        self.bindings = Some((bindings.clone(), clock.clone()));
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
        self.poll_interval = interval;
        self
    }

    /// How long after the last successful read the snapshots are trusted (default 3 s);
    /// past it, verified requests are answered `503`. Must exceed the polling interval
    /// plus the operation timeout.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// Budget for one Redis operation (default 500 ms).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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
    /// bindings that are not a [`MemoryAgentBindings`].
    pub async fn start(
        self,
        revocations: &Revocations,
        ceilings: &ScopeCeilings,
    ) -> Result<RedisPolicySync, ConfigError> {
        if self.poll_interval.is_zero() || self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "the polling interval and Redis timeouts must be positive",
            ));
        }
        if self.max_staleness <= self.poll_interval + self.timeout {
            return Err(ConfigError::new(
                "max_staleness must exceed the polling interval plus the operation timeout",
            ));
        }
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
        if revocations.link().attached() || ceilings.link().attached() {
            return Err(ConfigError::new("these revocations or ceilings are synced already"));
        }
        let bindings = match self.bindings {
            None => None,
            Some((store, clock)) => {
                let any: Arc<dyn std::any::Any + Send + Sync> = store;
                let memory = any.downcast::<MemoryAgentBindings>().map_err(|_| {
                    ConfigError::new("only the crate's MemoryAgentBindings can be synced through Redis")
                })?;
                if !memory.attach_sync() {
                    return Err(ConfigError::new("these agent bindings are synced already"));
                }
                Some(SharedBindings { memory, clock })
            }
        };
        if !revocations.attach(self.max_staleness) || !ceilings.attach(self.max_staleness) {
            return Err(ConfigError::new("these revocations or ceilings are synced already"));
        }
        let mut task = Task {
            manager,
            keys: Keys::new(&self.prefix),
            revocations: revocations.clone(),
            ceilings: ceilings.clone(),
            pushes: Some(pushes),
            poll_interval: self.poll_interval,
            timeout: self.timeout,
            seen: None,
            subscribed: false,
            failing: None,
            ceilings_document: None,
            bindings,
        };
        task.round().await;
        tokio::spawn(task.run());
        Ok(RedisPolicySync {
            revocations: revocations.clone(),
        })
    }
}

impl RedisPolicySync {
    /// Options for a sync through the Redis at `url` (`redis://host:port/db`; RESP3 is
    /// used, so Redis 6 or later).
    pub fn builder(url: impl Into<String>) -> RedisPolicySyncBuilder {
        RedisPolicySyncBuilder {
            url: url.into(),
            prefix: "tower-aauth:policy:".to_owned(),
            bindings: None,
            poll_interval: Duration::from_millis(250),
            max_staleness: Duration::from_secs(3),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        }
    }

    /// Replaces this replica's local revocation layer with a JSON document
    /// ([`RevocationSet::from_json`]): enforced with the shared set, never published.
    /// On error the layer in force stays. Returns the number of entries loaded.
    pub fn local_revocations_json(&self, bytes: &[u8]) -> Result<usize, PolicyError> {
        let set = RevocationSet::from_json(bytes)?;
        let len = set.len();
        self.revocations.install_local(set);
        Ok(len)
    }
}

struct Keys {
    revocations: String,
    ceilings: String,
    version: String,
    channel: String,
    /// Prefix of one binding's key (the thumbprint follows).
    binding: String,
    bindings_channel: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            revocations: format!("{prefix}revocations"),
            ceilings: format!("{prefix}ceilings"),
            version: format!("{prefix}version"),
            channel: format!("{prefix}changed"),
            binding: format!("{prefix}binding:"),
            bindings_channel: format!("{prefix}bindings"),
        }
    }
}

/// The bindings store a sync shares and the clock the layer reads it by.
struct SharedBindings {
    memory: Arc<MemoryAgentBindings>,
    clock: Arc<dyn Clock>,
}

/// Why a round did not confirm the snapshots.
enum Failure {
    Redis(redis::RedisError),
    Timeout,
    /// The version key does not hold an integer.
    Version,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Redis(error) => write!(f, "{error}"),
            Failure::Timeout => f.write_str("no answer within the operation timeout"),
            Failure::Version => f.write_str("the version key does not hold an integer"),
        }
    }
}

struct Task {
    manager: ConnectionManager,
    keys: Keys,
    revocations: Revocations,
    ceilings: ScopeCeilings,
    pushes: Option<UnboundedReceiver<PushInfo>>,
    poll_interval: Duration,
    timeout: Duration,
    /// The version the snapshots were last read at.
    seen: Option<u64>,
    subscribed: bool,
    /// Since when rounds fail (logged once per outage).
    failing: Option<Instant>,
    /// The ceilings document last installed from Redis (to refill an emptied Redis).
    ceilings_document: Option<String>,
    bindings: Option<SharedBindings>,
}

impl Task {
    async fn run(mut self) {
        let mut next_poll = tokio::time::Instant::now() + self.poll_interval;
        loop {
            let round = tokio::select! {
                () = tokio::time::sleep_until(next_poll) => true,
                push = next_push(&mut self.pushes) => match push {
                    Some(push) if push.kind == PushKind::Disconnection => {
                        self.subscribed = false;
                        true
                    }
                    // Another replica's binding: applied here, no read of Redis needed.
                    Some(push) => !self.apply_pushed_binding(&push),
                    None => true,
                },
                () = self.revocations.link().wake.notified() => true,
                () = self.ceilings.link().wake.notified() => true,
                () = bindings_queued(&self.bindings) => true,
            };
            if round {
                self.round().await;
                next_poll = tokio::time::Instant::now() + self.poll_interval;
            }
        }
    }

    /// Publishes what is queued, then reads what changed; confirms the snapshots when
    /// both succeeded.
    async fn round(&mut self) {
        let result = match self.flush().await {
            Ok(()) => {
                if !self.subscribed {
                    self.subscribed = self.subscribe().await;
                    // Bindings published while unsubscribed were missed: read them all.
                    if self.subscribed
                        && let Err(failure) = self.load_bindings().await
                    {
                        self.subscribed = false;
                        return self.failed(failure);
                    }
                }
                self.refresh().await
            }
            Err(failure) => Err(failure),
        };
        match result {
            Ok(()) if self.subscribed || self.bindings.is_none() => {
                self.revocations.link().confirm();
                self.ceilings.link().confirm();
                if let Some(since) = self.failing.take() {
                    tracing::info!(
                        target: "tower_aauth",
                        after_ms = since.elapsed().as_millis() as u64,
                        "shared policy (Redis) reachable again"
                    );
                }
            }
            // Without the subscription, bindings published by other replicas are not
            // arriving: not current.
            Ok(()) => {}
            Err(failure) => self.failed(failure),
        }
    }

    fn failed(&mut self, failure: Failure) {
        if self.failing.is_none() {
            self.failing = Some(Instant::now());
            tracing::warn!(
                target: "tower_aauth",
                error = %failure,
                "shared policy (Redis) unreadable; serving the snapshots until the staleness bound"
            );
        }
        if let Failure::Redis(error) = &failure
            && error.is_unrecoverable_error()
        {
            self.subscribed = false;
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, op: Op, pipe: &redis::Pipeline) -> Result<T, Failure> {
        let mut connection = self.manager.clone();
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Redis(error)),
            Err(_) => Err(Failure::Timeout),
        };
        crate::metrics::store_waited(Store::Policy, op, started, answer.is_ok());
        answer
    }

    async fn subscribe(&self) -> bool {
        let mut connection = self.manager.clone();
        matches!(
            tokio::time::timeout(
                self.timeout,
                connection.subscribe(&[&self.keys.channel, &self.keys.bindings_channel])
            )
            .await,
            Ok(Ok(()))
        )
    }

    /// Publishes the queued writes: the policy's in one transaction, then the bindings'.
    async fn flush(&mut self) -> Result<(), Failure> {
        self.flush_policy().await?;
        self.flush_bindings().await
    }

    async fn flush_policy(&mut self) -> Result<(), Failure> {
        let (ops, seq) = self.revocations.pending();
        let ceilings = self.ceilings.pending();
        if ops.is_empty() && ceilings.is_none() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in &ops {
            match op {
                RevocationOp::Add(entry) => {
                    if let Some(member) = member(entry) {
                        pipe.sadd(&self.keys.revocations, member).ignore();
                    }
                }
                RevocationOp::Remove(entry) => {
                    if let Some(member) = member(entry) {
                        pipe.srem(&self.keys.revocations, member).ignore();
                    }
                }
                RevocationOp::Replace(set) => {
                    pipe.del(&self.keys.revocations).ignore();
                    add_members(&mut pipe, &self.keys.revocations, set);
                }
            }
        }
        if let Some((_, document)) = &ceilings {
            pipe.set(&self.keys.ceilings, document.as_ref()).ignore();
        }
        pipe.incr(&self.keys.version, 1).ignore();
        pipe.publish(&self.keys.channel, "changed").ignore();
        self.query::<()>(Op::Write, &pipe).await?;
        self.revocations.acknowledge(seq);
        if let Some((seq, _)) = ceilings {
            self.ceilings.acknowledge(seq);
        }
        Ok(())
    }

    /// Reads the version; when it changed, the set and the document.
    async fn refresh(&mut self) -> Result<(), Failure> {
        let mut pipe = redis::pipe();
        pipe.get(&self.keys.version);
        let (version,): (Option<String>,) = self.query(Op::Read, &pipe).await?;
        let version = parse_version(version)?;
        match self.seen {
            Some(seen) if version.is_none() && seen > 0 => self.refill(seen).await?,
            Some(seen) if seen == version.unwrap_or(0) => return Ok(()),
            _ => {}
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(&self.keys.version)
            .smembers(&self.keys.revocations)
            .get(&self.keys.ceilings);
        let (version, members, document): (Option<String>, Vec<String>, Option<String>) =
            self.query(Op::Read, &pipe).await?;
        let version = parse_version(version)?;
        self.install_revocations(&members);
        self.install_ceilings(document);
        self.seen = Some(version.unwrap_or(0));
        Ok(())
    }

    /// Redis lost the keys this replica had read: add back its shared set and ceilings.
    async fn refill(&mut self, seen: u64) -> Result<(), Failure> {
        let shared = self.revocations.shared();
        tracing::warn!(
            target: "tower_aauth",
            entries = shared.len(),
            "shared policy (Redis) lost its version key; refilling it from this replica's snapshot"
        );
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_members(&mut pipe, &self.keys.revocations, &shared);
        if let Some(document) = &self.ceilings_document {
            pipe.cmd("SET")
                .arg(&self.keys.ceilings)
                .arg(document)
                .arg("NX")
                .ignore();
        }
        pipe.incr(&self.keys.version, seen.saturating_add(1)).ignore();
        pipe.publish(&self.keys.channel, "changed").ignore();
        self.query::<()>(Op::Write, &pipe).await?;
        if let Some(shared) = &self.bindings {
            shared.memory.requeue_live(shared.clock.now());
        }
        Ok(())
    }

    /// Writes the bindings made here (first writer wins, never shortened) and publishes
    /// each one written; adopts Redis's binding where another replica's came first.
    async fn flush_bindings(&mut self) -> Result<(), Failure> {
        let Some(shared) = &self.bindings else {
            return Ok(());
        };
        loop {
            let queued = shared.memory.queued(BINDINGS_PER_PIPELINE);
            if queued.is_empty() {
                return Ok(());
            }
            let now = shared.clock.now();
            let mut pipe = redis::pipe();
            for (thumbprint, binding) in &queued {
                let ttl_ms = binding.until.saturating_sub(now).saturating_mul(1000).max(1);
                pipe.cmd("EVAL")
                    .arg(BIND_SCRIPT)
                    .arg(1)
                    .arg(format!("{}{thumbprint}", self.keys.binding))
                    .arg(encode_binding(thumbprint, binding))
                    .arg(ttl_ms)
                    .arg(&self.keys.bindings_channel)
                    .arg(binding.agent.provider())
                    .arg(binding.agent.id())
                    .arg(binding.until)
                    .arg(u8::from(binding.pinned));
            }
            let replies: Vec<Option<String>> = self.query(Op::Write, &pipe).await?;
            for ((thumbprint, mine), reply) in queued.iter().zip(&replies) {
                let Some(text) = reply else { continue };
                match decode_binding(text, now) {
                    Some((_, theirs)) if theirs.agent != mine.agent => {
                        tracing::warn!(
                            target: "tower_aauth",
                            "a key was bound to two agents on two replicas at once; the binding written first holds"
                        );
                        shared.memory.yield_to_shared(thumbprint, theirs);
                    }
                    _ => {}
                }
            }
            shared.memory.acknowledge(queued.len());
        }
    }

    /// Reads every stored binding into this replica's store.
    async fn load_bindings(&mut self) -> Result<(), Failure> {
        let Some(shared) = &self.bindings else {
            return Ok(());
        };
        let pattern = format!("{}*", self.keys.binding);
        let mut cursor: u64 = 0;
        let mut loaded = 0usize;
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let ((next, keys),): ((u64, Vec<String>),) = self.query(Op::Read, &pipe).await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                pipe.cmd("MGET").arg(&keys);
                let (values,): (Vec<Option<String>>,) = self.query(Op::Read, &pipe).await?;
                let now = shared.clock.now();
                for text in values.iter().flatten() {
                    apply_binding(&shared.memory, text, now, &self.revocations, &self.ceilings);
                    loaded += 1;
                }
            }
            cursor = next;
            if cursor == 0 || loaded >= MAX_LOADED_BINDINGS {
                break;
            }
        }
        tracing::debug!(target: "tower_aauth", loaded, "shared key bindings read");
        Ok(())
    }

    /// Applies a binding published on the bindings channel; `false` for any other push.
    fn apply_pushed_binding(&self, push: &PushInfo) -> bool {
        let Some(shared) = &self.bindings else {
            return false;
        };
        if push.kind != PushKind::Message {
            return false;
        }
        let [channel, payload] = push.data.as_slice() else {
            return false;
        };
        let channel: Option<String> = redis::from_redis_value_ref(channel).ok();
        if channel.as_deref() != Some(self.keys.bindings_channel.as_str()) {
            return false;
        }
        if let Ok(text) = redis::from_redis_value_ref::<String>(payload) {
            apply_binding(
                &shared.memory,
                &text,
                shared.clock.now(),
                &self.revocations,
                &self.ceilings,
            );
        }
        true
    }

    fn install_revocations(&self, members: &[String]) {
        let mut set = RevocationSet::new();
        let mut malformed = 0usize;
        let mut first: Option<(String, String)> = None;
        for text in members {
            let problem = match RevocationSet::from_json(text.as_bytes()) {
                Ok(one) if one.len() == 1 => one.entries().try_for_each(|entry| set.insert(entry)).err(),
                Ok(_) => Some(PolicyError::new("a member holds exactly one entry")),
                Err(error) => Some(error),
            };
            if let Some(error) = problem {
                malformed += 1;
                first.get_or_insert_with(|| (quote(text), error.to_string()));
            }
        }
        if let Some((member, error)) = first {
            tracing::error!(
                target: "tower_aauth",
                malformed,
                member = %member,
                error = %error,
                "malformed members in the shared revocation set; nothing is lifted until they are fixed"
            );
            set = self.revocations.shared().union(&set);
        }
        self.revocations.install_shared(set);
    }

    fn install_ceilings(&mut self, document: Option<String>) {
        let set = match document.as_deref() {
            None => Ok(CeilingSet::new()),
            Some(text) => CeilingSet::from_json(text.as_bytes()),
        };
        match set {
            Ok(set) => {
                self.ceilings.install_shared(set);
                self.ceilings_document = document;
            }
            Err(error) => tracing::error!(
                target: "tower_aauth",
                document = %quote(document.as_deref().unwrap_or_default()),
                error = %error,
                "malformed shared ceilings document; the ceilings in force stay"
            ),
        }
    }
}

/// Resolves when a binding is queued (never without a bindings store).
async fn bindings_queued(bindings: &Option<SharedBindings>) {
    match bindings {
        Some(shared) => shared.memory.wake.notified().await,
        None => std::future::pending().await,
    }
}

/// Bindings written per pipelined round trip.
const BINDINGS_PER_PIPELINE: usize = 256;
/// The most stored bindings one load reads (the local store is byte-bounded anyway).
const MAX_LOADED_BINDINGS: usize = 500_000;
/// The longest stored binding text accepted.
const MAX_BINDING_TEXT: usize = 2048;
/// The furthest ahead a stored binding may end (bindings last a token's life plus the
/// longest grant lifetime: hours, not weeks).
const MAX_BINDING_AHEAD: u64 = 30 * 24 * 3600;

/// Writes a binding unless the key is bound to another agent (then answers that binding)
/// or already bound as long and as pinned (then answers nil); publishes what it wrote.
/// KEYS[1] the binding's key; ARGV: text, ttl ms, channel, provider, agent id, until,
/// pinned (1/0). Agents compare as [`AgentId`] does: an `aauth:` identifier alone,
/// anything else with its provider.
const BIND_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, c = pcall(cjson.decode, current)
  if ok and type(c) == 'table' then
    local same = c['agent'] == ARGV[5] and (string.sub(ARGV[5], 1, 6) == 'aauth:' or c['provider'] == ARGV[4])
    if not same then return current end
    local pinned = c['pinned'] == true
    if tonumber(c['until']) and tonumber(c['until']) >= tonumber(ARGV[6]) and (pinned or ARGV[7] == '0') then
      return false
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return false
"#;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBinding<'a> {
    thumbprint: &'a str,
    provider: &'a str,
    agent: &'a str,
    until: u64,
    pinned: bool,
}

fn encode_binding(thumbprint: &str, binding: &Binding) -> String {
    serde_json::to_string(&StoredBinding {
        thumbprint,
        provider: binding.agent.provider(),
        agent: binding.agent.id(),
        until: binding.until,
        pinned: binding.pinned,
    })
    .unwrap_or_default()
}

/// A stored or published binding, validated; `None` (and a log line) when it is not one.
fn decode_binding(text: &str, now: u64) -> Option<(String, Binding)> {
    let decoded = (text.len() <= MAX_BINDING_TEXT)
        .then(|| serde_json::from_str::<StoredBinding<'_>>(text).ok())
        .flatten()
        .filter(|stored| is_thumbprint(stored.thumbprint))
        .filter(|stored| stored.until > now && stored.until <= now.saturating_add(MAX_BINDING_AHEAD))
        .and_then(|stored| {
            let agent = AgentId::new(stored.provider, stored.agent).ok()?;
            Some((
                stored.thumbprint.to_owned(),
                Binding::new(agent, stored.until, stored.pinned),
            ))
        });
    if decoded.is_none() {
        tracing::error!(
            target: "tower_aauth",
            binding = %quote(text),
            "a shared key binding is malformed or out of range; ignored"
        );
    }
    decoded
}

/// A key thumbprint as the layer computes it: base64url SHA-256, 43 characters.
fn is_thumbprint(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Applies another replica's binding to this replica's store, pinned when this replica's
/// policy names the agent.
fn apply_binding(
    memory: &MemoryAgentBindings,
    text: &str,
    now: u64,
    revocations: &Revocations,
    ceilings: &ScopeCeilings,
) {
    let Some((thumbprint, mut binding)) = decode_binding(text, now) else {
        return;
    };
    binding.pinned |= revocations.names(&binding.agent) || ceilings.names(&binding.agent);
    if let Err(BindingRefused::BoundToAnother(_)) = memory.apply_shared(&thumbprint, &binding, now) {
        // This replica bound the key first; its own write will find Redis's and adopt it.
        tracing::debug!(target: "tower_aauth", "a shared binding names another agent than this replica's");
    }
}

async fn next_push(pushes: &mut Option<UnboundedReceiver<PushInfo>>) -> Option<PushInfo> {
    let Some(receiver) = pushes.as_mut() else {
        return std::future::pending().await;
    };
    let push = receiver.recv().await;
    if push.is_none() {
        *pushes = None;
    }
    push
}

fn member(entry: &super::revocation::Revoked) -> Option<String> {
    match entry.member() {
        Ok(member) => Some(member),
        Err(error) => {
            tracing::error!(target: "tower_aauth", error = %error, "a revocation cannot be shared; applied on this replica only");
            None
        }
    }
}

fn add_members(pipe: &mut redis::Pipeline, key: &str, set: &RevocationSet) {
    let members: Vec<String> = set.entries().filter_map(|entry| member(&entry)).collect();
    for chunk in members.chunks(SADD_CHUNK) {
        pipe.sadd(key, chunk).ignore();
    }
}

fn parse_version(version: Option<String>) -> Result<Option<u64>, Failure> {
    version
        .map(|text| text.parse::<u64>().map_err(|_| Failure::Version))
        .transpose()
}

fn quote(text: &str) -> String {
    text.chars().take(QUOTE).collect()
}
