//! Revocations, scope ceilings and key → agent bindings kept in step across replicas
//! through a shared store.
//!
//! Design: the layer never waits on the store. It reads the handles' local snapshots
//! ([`Revocations`], [`ScopeCeilings`], [`MemoryAgentBindings`]) as it does without a sync.
//! A background task, [`PolicySync`], does the rest through a [`SharedPolicyStore`]:
//! publishes what was written on this replica, applies what other replicas wrote, and
//! confirms the snapshots current. The store is a small contract (a versioned revocation
//! set, one ceilings document, expiring bindings written first-writer-wins, and notices);
//! Redis implements it (`RedisPolicySync`, feature `redis`), and so can any store that
//! offers atomic writes and change notices.
//!
//! The rules every store gets for free, because the task applies them:
//!
//! * **Writes** through a synced handle apply here at once, and queue until the store
//!   acknowledges them (at most 100 000 revocation changes and 50 000 bindings), so a
//!   write made during an outage is published when the store returns.
//! * **Reads**: on every notice and every polling interval the task reads the version;
//!   when it changed, the set and the document, validated as [`RevocationSet::from_json`]
//!   and [`CeilingSet::from_json`] do (a malformed member adds nothing it cannot parse
//!   and lifts nothing; a malformed document keeps the ceilings in force).
//! * **Freshness**: a replica serves verified requests from its snapshots for at most
//!   `max_staleness` after the store last confirmed them, then answers `503` with
//!   `Retry-After: 1` (fail closed). A replica starts closed.
//! * **A store that comes back empty** (version gone) is refilled from this replica: its
//!   shared set added back, its last ceilings document set if none is, the version
//!   raised past the one seen, its live bindings written again.
//! * **Bindings** (with [`PolicySyncBuilder::agent_bindings`]): first writer wins, a
//!   binding is never shortened, a replica that bound a key to another agent at the same
//!   moment adopts the stored one; a replica that (re)subscribes reads every binding.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ceiling::{CeilingSet, ScopeCeilings};
use super::identity::{AgentBindings, AgentId, Binding, BindingRefused, MemoryAgentBindings};
use super::revocation::{Entry, RevocationOp, RevocationSet, Revocations};
use crate::clock::Clock;
use crate::error::{ConfigError, PolicyError};
use crate::future::BoxFuture;
use crate::metrics::{Op, Store};

/// Why a store operation failed (the store's own error, logged once per outage).
pub type StoreFailure = Box<dyn StdError + Send + Sync>;

/// Where replicas share their revocations, scope ceilings and key → agent bindings.
///
/// Every method may fail (the store unreachable): [`PolicySync`] then serves the
/// snapshots until its staleness bound and retries. Each is called with the sync's
/// operation timeout around it.
pub trait SharedPolicyStore: Send + Sync + 'static {
    /// Applies `write` atomically (see [`PolicyWrite`]), raises the version by
    /// `write.version_step`, and sends every replica [`PolicyNotice::Changed`].
    fn write<'a>(&'a self, write: &'a PolicyWrite) -> BoxFuture<'a, Result<(), StoreFailure>>;

    /// The version, `None` when the store holds none (new, or reset).
    fn version(&self) -> BoxFuture<'_, Result<Option<u64>, StoreFailure>>;

    /// The version, the revocation members and the ceilings document, read together.
    fn read(&self) -> BoxFuture<'_, Result<PolicyState, StoreFailure>>;

    /// Writes each binding unless its thumbprint is bound, until after `now` (Unix
    /// seconds), to another agent ([`BindingWrite::same_agent`]) or to this one until
    /// `until` or later (a binding is never shortened); sends every replica
    /// [`PolicyNotice::Binding`] with the text of each one written. Answers, one per
    /// binding in order, the stored text of another agent's live binding that prevented
    /// the write, or `None`. A stored binding whose `until` passed counts as absent.
    fn write_bindings<'a>(
        &'a self,
        bindings: &'a [BindingWrite],
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Option<String>>, StoreFailure>>;

    /// The texts of the stored bindings whose `until` is after `now`, at most `max`; a
    /// store may forget the others.
    fn read_bindings(&self, now: u64, max: usize) -> BoxFuture<'_, Result<Vec<String>, StoreFailure>>;

    /// Starts (or restarts) delivery of notices: once it answers `Ok`, every change made
    /// afterwards reaches [`notice`](Self::notice).
    fn subscribe(&self) -> BoxFuture<'_, Result<(), StoreFailure>>;

    /// The next notice. Called by one task at a time; a store without notices returns a
    /// future that never completes (the sync then relies on polling alone).
    fn notice(&self) -> BoxFuture<'_, PolicyNotice>;
}

/// One atomic change of the shared policy, applied in this order: empty the revocation
/// set if `clear`, remove `remove`, add `add`, store `ceilings` (if `Some`; only when no
/// document is stored if `ceilings_only_if_absent`), raise the version by `version_step`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyWrite {
    /// Empty the revocation set first.
    pub clear: bool,
    /// Members to remove (compact one-entry revocation documents).
    pub remove: Vec<String>,
    /// Members to add.
    pub add: Vec<String>,
    /// The ceilings document to store.
    pub ceilings: Option<String>,
    /// Store `ceilings` only when none is stored (a refill must not overwrite a newer one).
    pub ceilings_only_if_absent: bool,
    /// How much the version grows (at least 1).
    pub version_step: u64,
}

/// What [`SharedPolicyStore::read`] answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyState {
    /// The version, `None` when there is none.
    pub version: Option<u64>,
    /// The revocation set's members.
    pub members: Vec<String>,
    /// The ceilings document, `None` when there is none.
    pub ceilings: Option<String>,
}

impl PolicyState {
    /// A state read from a store.
    pub fn new(version: Option<u64>, members: Vec<String>, ceilings: Option<String>) -> Self {
        PolicyState {
            version,
            members,
            ceilings,
        }
    }
}

/// One binding for [`SharedPolicyStore::write_bindings`]: a key of an agent a policy
/// names (only those are shared: the policy bounds their number, where any agent
/// provider could mint keys without end).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BindingWrite {
    /// The key thumbprint (43 base64url characters): the binding's identity in the store.
    pub thumbprint: String,
    /// The text to store and publish (JSON: `thumbprint`, `provider`, `agent`, `until`,
    /// `pinned`).
    pub text: String,
    /// The agent's provider.
    pub provider: String,
    /// The agent identifier.
    pub agent: String,
    /// Until when it binds (Unix seconds); the store may forget it after.
    pub until: u64,
}

impl BindingWrite {
    /// Whether a stored binding of `provider` and `agent` names this binding's agent: an
    /// `aauth:` identifier compares alone (it names its provider), any other with its
    /// provider.
    pub fn same_agent(&self, provider: &str, agent: &str) -> bool {
        agent == self.agent && (self.agent.starts_with("aauth:") || provider == self.provider)
    }
}

/// What a store tells the replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyNotice {
    /// The revocations or ceilings changed.
    Changed,
    /// A binding was written (its text).
    Binding(String),
    /// Notices may have been lost (a dropped connection): the sync subscribes again and
    /// reads everything.
    Lost,
}

/// Options for a [`PolicySync`].
#[derive(Clone)]
pub struct PolicySyncBuilder {
    poll_interval: Duration,
    max_staleness: Duration,
    timeout: Duration,
    bindings: Option<(Arc<dyn AgentBindings>, Arc<dyn Clock>)>,
}

impl std::fmt::Debug for PolicySyncBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySyncBuilder")
            .field("poll_interval", &self.poll_interval)
            .field("max_staleness", &self.max_staleness)
            .field("timeout", &self.timeout)
            .field("bindings", &self.bindings.is_some())
            .finish()
    }
}

impl Default for PolicySyncBuilder {
    fn default() -> Self {
        PolicySyncBuilder {
            poll_interval: Duration::from_millis(250),
            max_staleness: Duration::from_secs(3),
            timeout: Duration::from_millis(500),
            bindings: None,
        }
    }
}

impl PolicySyncBuilder {
    /// How often the version is read besides notices (default 250 ms): the bound on
    /// propagation when a notice is lost or a change was written without one.
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

    /// Budget for one store operation (default 500 ms).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also shares the key → agent bindings ([`AAuth::agent_bindings`](crate::AAuth::agent_bindings),
    /// read by the layer's [`AAuth::clock`](crate::AAuth::clock)).
    /// [`start`](Self::start) refuses a store other than the crate's
    /// [`MemoryAgentBindings`] (another implementation shares itself).
    pub fn agent_bindings(mut self, bindings: &Arc<dyn AgentBindings>, clock: &Arc<dyn Clock>) -> Self {
        self.bindings = Some((bindings.clone(), clock.clone()));
        self
    }

    /// Attaches the sync to `revocations` and `ceilings` (the handles the layer reads:
    /// [`AAuth::revocations`](crate::AAuth::revocations),
    /// [`AAuth::scope_ceilings`](crate::AAuth::scope_ceilings)), reads the store once
    /// (an unreachable store is not an error: the replica answers `503` until it is
    /// reached) and starts the background task, which runs as long as the Tokio runtime.
    ///
    /// Errors: a zero interval or timeout, a staleness bound not above the polling
    /// interval plus the operation timeout, a handle synced already, or bindings that are
    /// not a [`MemoryAgentBindings`].
    pub async fn start(
        self,
        store: impl SharedPolicyStore,
        revocations: &Revocations,
        ceilings: &ScopeCeilings,
    ) -> Result<PolicySync, ConfigError> {
        self.validate()?;
        if revocations.link().attached() || ceilings.link().attached() {
            return Err(ConfigError::new("these revocations or ceilings are synced already"));
        }
        let bindings = match &self.bindings {
            None => None,
            Some((store, clock)) => {
                let any: Arc<dyn std::any::Any + Send + Sync> = store.clone();
                let memory = any.downcast::<MemoryAgentBindings>().map_err(|_| {
                    ConfigError::new("only the crate's MemoryAgentBindings can be synced through a shared store")
                })?;
                if !memory.attach_sync() {
                    return Err(ConfigError::new("these agent bindings are synced already"));
                }
                Some(SharedBindings {
                    memory,
                    clock: clock.clone(),
                })
            }
        };
        if !revocations.attach(self.max_staleness) || !ceilings.attach(self.max_staleness) {
            return Err(ConfigError::new("these revocations or ceilings are synced already"));
        }
        let mut task = Task {
            store: Box::new(store),
            revocations: revocations.clone(),
            ceilings: ceilings.clone(),
            poll_interval: self.poll_interval,
            timeout: self.timeout,
            seen: None,
            subscribed: false,
            failing: None,
            ceilings_document: None,
            bindings,
            reasserted: Instant::now(),
        };
        task.round().await;
        tokio::spawn(task.run());
        Ok(PolicySync {
            revocations: revocations.clone(),
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval.is_zero() || self.timeout.is_zero() {
            return Err(ConfigError::new(
                "the polling interval and the store timeouts must be positive",
            ));
        }
        if self.max_staleness <= self.poll_interval + self.timeout {
            return Err(ConfigError::new(
                "max_staleness must exceed the polling interval plus the operation timeout",
            ));
        }
        Ok(())
    }
}

/// A running sync of one replica's policy handles with a [`SharedPolicyStore`] (see the
/// module documentation for what it guarantees).
#[derive(Clone)]
pub struct PolicySync {
    revocations: Revocations,
}

impl std::fmt::Debug for PolicySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySync").finish_non_exhaustive()
    }
}

impl PolicySync {
    /// Options: polling every 250 ms, snapshots trusted 3 s, 500 ms per store operation.
    pub fn builder() -> PolicySyncBuilder {
        PolicySyncBuilder::default()
    }

    /// Replaces this replica's local revocation layer with a JSON document
    /// ([`RevocationSet::from_json`]): enforced with the shared set, never published.
    /// On error the layer in force stays. Returns the number of entries loaded.
    ///
    /// What the [`Revocations`] handle held when the sync started is this layer too.
    /// [`Revocations::unrevoke`] does not lift a local entry.
    pub fn local_revocations_json(&self, bytes: &[u8]) -> Result<usize, PolicyError> {
        let set = RevocationSet::from_json(bytes)?;
        let len = set.len();
        self.revocations.install_local(set);
        Ok(len)
    }
}

/// The bindings store a sync shares and the clock the layer reads it by.
struct SharedBindings {
    memory: Arc<MemoryAgentBindings>,
    clock: Arc<dyn Clock>,
}

/// Why a round did not confirm the snapshots.
enum Failure {
    Store(StoreFailure),
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Store(error) => write!(f, "{error}"),
            Failure::Timeout => f.write_str("no answer within the operation timeout"),
        }
    }
}

/// Bindings written per store call.
const BINDINGS_PER_WRITE: usize = 256;
/// Store calls writing bindings per round.
const BINDING_BATCHES_PER_ROUND: usize = 4;
/// How often a replica writes its live pinned bindings again (a store emptied or behind
/// gets them back within this).
const REASSERT_EVERY: Duration = Duration::from_secs(60);
/// The most stored bindings one load reads (the local store is byte-bounded anyway).
const MAX_LOADED_BINDINGS: usize = 500_000;
/// The longest stored binding text accepted.
const MAX_BINDING_TEXT: usize = 2048;
/// The furthest ahead a stored binding may end (bindings last a token's life plus the
/// longest grant lifetime: hours, not weeks).
const MAX_BINDING_AHEAD: u64 = 30 * 24 * 3600;
/// Longest excerpt of a malformed member or document quoted in a log line.
const QUOTE: usize = 120;

struct Task {
    store: Box<dyn SharedPolicyStore>,
    revocations: Revocations,
    ceilings: ScopeCeilings,
    poll_interval: Duration,
    timeout: Duration,
    /// The version the snapshots were last read at.
    seen: Option<u64>,
    subscribed: bool,
    /// Since when rounds fail (logged once per outage).
    failing: Option<Instant>,
    /// The ceilings document last installed from the store (to refill an emptied one).
    ceilings_document: Option<String>,
    bindings: Option<SharedBindings>,
    /// When this replica last queued its live bindings again.
    reasserted: Instant,
}

impl Task {
    async fn run(mut self) {
        let mut next_poll = tokio::time::Instant::now() + self.poll_interval;
        loop {
            let round = tokio::select! {
                () = tokio::time::sleep_until(next_poll) => true,
                notice = self.store.notice() => match notice {
                    PolicyNotice::Lost => {
                        self.subscribed = false;
                        true
                    }
                    // Another replica's binding: applied here, no read needed.
                    PolicyNotice::Binding(text) => {
                        self.apply_binding_text(&text);
                        false
                    }
                    PolicyNotice::Changed => true,
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

    /// Publishes the policy written here, then reads what changed; confirms the
    /// snapshots when both succeeded. Then, apart from that verdict, keeps the
    /// subscription and the bindings in step: a store that refuses a subscription or a
    /// binding costs propagation time, never this replica's service.
    async fn round(&mut self) {
        let result = match self.refill_if_emptied().await {
            Ok(()) => match self.flush_policy().await {
                Ok(()) => self.refresh().await,
                Err(failure) => Err(failure),
            },
            Err(failure) => Err(failure),
        };
        let confirmed = result.is_ok();
        match result {
            Ok(()) => {
                self.revocations.link().confirm();
                self.ceilings.link().confirm();
                if let Some(since) = self.failing.take() {
                    tracing::info!(
                        target: "tower_aauth",
                        after_ms = since.elapsed().as_millis() as u64,
                        "shared policy store reachable again"
                    );
                }
            }
            Err(failure) => {
                if self.failing.is_none() {
                    self.failing = Some(Instant::now());
                    tracing::warn!(
                        target: "tower_aauth",
                        error = %failure,
                        "shared policy store unreadable; serving the snapshots until the staleness bound"
                    );
                }
            }
        }
        if confirmed {
            self.keep_subscription_and_bindings().await;
        }
    }

    /// Subscribes when not subscribed, publishes the bindings made here, reads the
    /// stored ones when notices may have been missed (just subscribed, or still not
    /// subscribed: polling), and re-asserts this replica's live bindings now and then
    /// (a store emptied behind the replicas' backs gets them back). Failures are logged
    /// and retried next round.
    async fn keep_subscription_and_bindings(&mut self) {
        let mut missed = false;
        if !self.subscribed {
            self.subscribed = self.call(Op::Read, self.store.subscribe()).await.is_ok();
            missed = true;
        }
        let Some(shared) = &self.bindings else {
            return;
        };
        let now = shared.clock.now();
        if shared.memory.take_overflow() || self.reasserted.elapsed() >= REASSERT_EVERY {
            shared.memory.requeue_live(now);
            self.reasserted = Instant::now();
        }
        if let Err(failure) = self.flush_bindings().await {
            tracing::debug!(target: "tower_aauth", error = %failure, "shared key bindings not written yet");
        }
        if missed && let Err(failure) = self.load_bindings().await {
            tracing::debug!(target: "tower_aauth", error = %failure, "shared key bindings not read yet");
        }
    }

    /// Runs one store call within the operation timeout, timed as `op`.
    async fn call<T>(&self, op: Op, call: BoxFuture<'_, Result<T, StoreFailure>>) -> Result<T, Failure> {
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Store(error)),
            Err(_) => Err(Failure::Timeout),
        };
        crate::metrics::store_waited(Store::Policy, op, started, answer.is_ok());
        answer
    }

    async fn flush_policy(&mut self) -> Result<(), Failure> {
        let (ops, seq) = self.revocations.pending();
        let ceilings = self.ceilings.pending();
        if ops.is_empty() && ceilings.is_none() {
            return Ok(());
        }
        let mut write = collapse(&ops);
        write.ceilings = ceilings.as_ref().map(|(_, document)| document.to_string());
        self.call(Op::Write, self.store.write(&write)).await?;
        self.revocations.acknowledge(seq);
        if let Some((seq, _)) = ceilings {
            self.ceilings.acknowledge(seq);
        }
        Ok(())
    }

    /// Reads the version; when it changed, the set and the document.
    /// Refills a store that lost the version this replica had seen, before anything is
    /// published to it: a write queued here would otherwise start the version again from
    /// 1, which may equal the version seen, and no replica would notice the loss.
    async fn refill_if_emptied(&mut self) -> Result<(), Failure> {
        let Some(seen) = self.seen.filter(|seen| *seen > 0) else {
            return Ok(());
        };
        if self.call(Op::Read, self.store.version()).await?.is_none() {
            self.refill(seen).await?;
        }
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), Failure> {
        let version = self.call(Op::Read, self.store.version()).await?;
        match self.seen {
            Some(seen) if version.is_none() && seen > 0 => self.refill(seen).await?,
            Some(seen) if seen == version.unwrap_or(0) => return Ok(()),
            _ => {}
        }
        let state = self.call(Op::Read, self.store.read()).await?;
        self.install_revocations(&state.members);
        self.install_ceilings(state.ceilings);
        self.seen = Some(state.version.unwrap_or(0));
        // Agents the policy names now have their keys pinned here, and so published to
        // the other replicas, without waiting for a request to notice.
        if let Some(shared) = &self.bindings {
            let (revocations, ceilings) = (&self.revocations, &self.ceilings);
            shared.memory.pin_named(
                &|agent| revocations.names(agent) || ceilings.names(agent),
                shared.clock.now(),
            );
        }
        Ok(())
    }

    /// The store lost the policy this replica had read: add back its shared set,
    /// ceilings and bindings.
    async fn refill(&mut self, seen: u64) -> Result<(), Failure> {
        let shared = self.revocations.shared();
        tracing::warn!(
            target: "tower_aauth",
            entries = shared.len(),
            "the shared policy store lost its version; refilling it from this replica's snapshot"
        );
        let write = PolicyWrite {
            add: shared.entries().filter_map(|entry| member(&entry)).collect(),
            ceilings: self.ceilings_document.clone(),
            ceilings_only_if_absent: true,
            version_step: seen.saturating_add(1),
            ..PolicyWrite::default()
        };
        self.call(Op::Write, self.store.write(&write)).await?;
        if let Some(shared) = &self.bindings {
            shared.memory.requeue_live(shared.clock.now());
        }
        Ok(())
    }

    /// Writes the bindings made here and adopts the stored binding where another
    /// replica's came first.
    async fn flush_bindings(&mut self) -> Result<(), Failure> {
        let Some(shared) = &self.bindings else {
            return Ok(());
        };
        // A few batches per round, so that a burst of bindings never holds up the policy
        // reads: what is left goes next round, at once.
        for _ in 0..BINDING_BATCHES_PER_ROUND {
            let queued = shared.memory.queued(BINDINGS_PER_WRITE);
            if queued.is_empty() {
                return Ok(());
            }
            let now = shared.clock.now();
            let writes: Vec<BindingWrite> = queued
                .iter()
                .filter(|(_, binding)| binding.until > now)
                .map(|(thumbprint, binding)| BindingWrite {
                    thumbprint: thumbprint.to_string(),
                    text: encode_binding(thumbprint, binding),
                    provider: binding.agent.provider().to_owned(),
                    agent: binding.agent.id().to_owned(),
                    until: binding.until,
                })
                .collect();
            let replies = if writes.is_empty() {
                Vec::new()
            } else {
                self.call(Op::Write, self.store.write_bindings(&writes, now)).await?
            };
            let written = queued.iter().filter(|(_, binding)| binding.until > now);
            for ((thumbprint, mine), reply) in written.zip(&replies) {
                let Some(text) = reply else { continue };
                if let Some((_, theirs)) = decode_binding(text, now)
                    && theirs.agent != mine.agent
                {
                    tracing::warn!(
                        target: "tower_aauth",
                        "a key was bound to two agents on two replicas at once; the binding written first holds"
                    );
                    shared.memory.yield_to_shared(thumbprint, theirs);
                }
            }
            shared.memory.acknowledge(queued.len());
        }
        if shared.memory.has_queued() {
            shared.memory.wake.notify_one();
        }
        Ok(())
    }

    /// Reads every stored binding into this replica's store.
    async fn load_bindings(&mut self) -> Result<(), Failure> {
        if self.bindings.is_none() {
            return Ok(());
        }
        let texts = self
            .call(
                Op::Read,
                self.store
                    .read_bindings(self.bindings.as_ref().map_or(0, |b| b.clock.now()), MAX_LOADED_BINDINGS),
            )
            .await?;
        if texts.len() >= MAX_LOADED_BINDINGS {
            tracing::warn!(
                target: "tower_aauth",
                loaded = texts.len(),
                "the shared key bindings were read up to their bound; the rest stay unread"
            );
        }
        for text in &texts {
            self.apply_binding_text(text);
        }
        tracing::debug!(target: "tower_aauth", loaded = texts.len(), "shared key bindings read");
        Ok(())
    }

    /// Applies another replica's binding here, pinned when this replica's policy names
    /// the agent.
    fn apply_binding_text(&self, text: &str) {
        let Some(shared) = &self.bindings else {
            return;
        };
        let now = shared.clock.now();
        let Some((thumbprint, mut binding)) = decode_binding(text, now) else {
            return;
        };
        // Only bindings of agents a policy names are shared: they are pinned everywhere.
        binding.pinned = true;
        if let Err(BindingRefused::BoundToAnother(_)) = shared.memory.apply_shared(&thumbprint, &binding, now) {
            // This replica bound the key first; its own write will find the stored one
            // and adopt it.
            tracing::debug!(target: "tower_aauth", "a shared binding names another agent than this replica's");
        }
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

/// The queued revocation changes as one write: the last whole-set replacement (if any)
/// and, per member, its last change after it.
fn collapse(ops: &[RevocationOp]) -> PolicyWrite {
    use std::collections::BTreeSet;
    let (mut clear, mut add, mut remove) = (false, BTreeSet::new(), BTreeSet::new());
    for op in ops {
        match op {
            RevocationOp::Add(entry) => {
                if let Some(member) = member(entry) {
                    remove.remove(&member);
                    add.insert(member);
                }
            }
            RevocationOp::Remove(entry) => {
                if let Some(member) = member(entry) {
                    add.remove(&member);
                    remove.insert(member);
                }
            }
            RevocationOp::Replace(set) => {
                clear = true;
                remove.clear();
                add = set.entries().filter_map(|entry| member(&entry)).collect();
            }
        }
    }
    PolicyWrite {
        clear,
        remove: remove.into_iter().collect(),
        add: add.into_iter().collect(),
        version_step: 1,
        ..PolicyWrite::default()
    }
}

/// Resolves when a binding is queued (never without a bindings store).
async fn bindings_queued(bindings: &Option<SharedBindings>) {
    match bindings {
        Some(shared) => shared.memory.wake.notified().await,
        None => std::future::pending().await,
    }
}

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

fn member(entry: &Entry) -> Option<String> {
    match entry.member() {
        Ok(member) => Some(member),
        Err(error) => {
            tracing::error!(target: "tower_aauth", error = %error, "a revocation cannot be shared; applied on this replica only");
            None
        }
    }
}

fn quote(text: &str) -> String {
    text.chars().take(QUOTE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked(n: u32) -> crate::policy::Revoked {
        crate::policy::Revoked::Agent(format!("aauth:a{n}@agent.example").parse().unwrap())
    }

    fn agent(n: u32) -> Entry {
        Entry::lasting(revoked(n))
    }

    #[test]
    fn queued_changes_collapse_to_the_last_change_of_each_member_after_the_last_replacement() {
        let mut set = RevocationSet::new();
        set.insert(revoked(3)).unwrap();
        let ops = [
            RevocationOp::Add(agent(1)),
            RevocationOp::Remove(agent(2)),
            RevocationOp::Replace(Arc::new(set)),
            RevocationOp::Add(agent(4)),
            RevocationOp::Remove(agent(3)),
            RevocationOp::Add(agent(5)),
            RevocationOp::Remove(agent(5)),
        ];
        let write = collapse(&ops);
        assert!(write.clear);
        let text = |n: u32| agent(n).member().unwrap();
        assert_eq!(write.add, vec![text(4)]);
        assert_eq!(write.remove, vec![text(3), text(5)]);
        assert_eq!(write.version_step, 1);
    }

    #[test]
    fn a_binding_compares_agents_as_agent_ids_do() {
        let write = BindingWrite {
            thumbprint: "t".repeat(43),
            text: String::new(),
            provider: "https://agent.example".into(),
            agent: "aauth:bot@agent.example".into(),
            until: 1,
        };
        assert!(write.same_agent("http://localhost:8001", "aauth:bot@agent.example"));
        assert!(!write.same_agent("https://agent.example", "aauth:other@agent.example"));
        let server = BindingWrite {
            agent: "https://signer.example".into(),
            provider: "https://signer.example".into(),
            ..write
        };
        assert!(!server.same_agent("https://evil.example", "https://signer.example"));
    }
}
