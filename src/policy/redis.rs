//! Revocations and scope ceilings kept in step across replicas through Redis (feature
//! `redis`).

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::ceiling::{CeilingSet, ScopeCeilings};
use super::revocation::{RevocationOp, RevocationSet, Revocations};
use crate::error::{ConfigError, PolicyError};

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
/// | `tower-aauth:policy:revocations` | set | one member per revoked entry: a revocation document with exactly one entry, compact, e.g. `{"agents":["aauth:assistant@agent.example"]}`, `{"key_thumbprints":["…"]}`, `{"jtis":[{"iss":"https://as.example","jti":"at-42"}]}` (with `"exp":…` when the entry lapses once the token expired: the revocation endpoint's), `{"persons":[{"iss":"https://ps.example","sub":"…"}]}` |
/// | `tower-aauth:policy:ceilings` | string | the ceilings document ([`CeilingSet::from_json`]); absent: no ceilings |
/// | `tower-aauth:policy:version` | string (integer) | incremented by every write |
/// | channel `tower-aauth:policy:changed` | pub/sub | a message after every write (its payload is not read) |
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
#[derive(Debug, Clone)]
pub struct RedisPolicySyncBuilder {
    url: String,
    prefix: String,
    poll_interval: Duration,
    max_staleness: Duration,
    timeout: Duration,
    connect_timeout: Duration,
}

impl RedisPolicySyncBuilder {
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
    /// interval plus the operation timeout, an invalid URL, or a handle synced already.
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
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            revocations: format!("{prefix}revocations"),
            ceilings: format!("{prefix}ceilings"),
            version: format!("{prefix}version"),
            channel: format!("{prefix}changed"),
        }
    }
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
}

impl Task {
    async fn run(mut self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.poll_interval) => {}
                push = next_push(&mut self.pushes) => {
                    if push.is_some_and(|push| push.kind == PushKind::Disconnection) {
                        self.subscribed = false;
                    }
                }
                () = self.revocations.link().wake.notified() => {}
                () = self.ceilings.link().wake.notified() => {}
            }
            self.round().await;
        }
    }

    /// Publishes what is queued, then reads what changed; confirms the snapshots when
    /// both succeeded.
    async fn round(&mut self) {
        let result = match self.flush().await {
            Ok(()) => {
                if !self.subscribed {
                    self.subscribed = self.subscribe().await;
                }
                self.refresh().await
            }
            Err(failure) => Err(failure),
        };
        match result {
            Ok(()) => {
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
            Err(failure) => {
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
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Failure> {
        let mut connection = self.manager.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Redis(error)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn subscribe(&self) -> bool {
        let mut connection = self.manager.clone();
        matches!(
            tokio::time::timeout(self.timeout, connection.subscribe(&self.keys.channel)).await,
            Ok(Ok(()))
        )
    }

    /// Publishes the queued writes in one transaction.
    async fn flush(&mut self) -> Result<(), Failure> {
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
        self.query::<()>(&pipe).await?;
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
        let (version,): (Option<String>,) = self.query(&pipe).await?;
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
        let (version, members, document): (Option<String>, Vec<String>, Option<String>) = self.query(&pipe).await?;
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
        self.query::<()>(&pipe).await
    }

    fn install_revocations(&self, members: &[String]) {
        let mut set = RevocationSet::new();
        let mut malformed = 0usize;
        let mut first: Option<(String, String)> = None;
        for text in members {
            let problem = match RevocationSet::from_json(text.as_bytes()) {
                Ok(one) if one.len() == 1 => one.entries().try_for_each(|entry| set.add(entry)).err(),
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

fn member(entry: &super::revocation::Entry) -> Option<String> {
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
