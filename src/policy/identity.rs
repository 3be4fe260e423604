//! Who an agent or a person is, and which agent stands behind a key (the design is in the
//! [`policy`](crate::policy) module documentation, "Who an agent is").

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use moka::ops::compute::Op;

use crate::error::PolicyError;

/// An agent: the provider that vouched for it and the agent identifier.
///
/// Compared as a pair, so an identifier claimed by another provider is another agent.
/// Parsed from text ([`FromStr`]) as either an AAuth agent identifier
/// `aauth:local@domain` (provider `https://domain`, the only provider that may name it)
/// or a server identifier `https://host` (a `jwks_uri` signer, or a demo-generation agent
/// URL), which is its own provider.
#[derive(Clone)]
pub struct AgentId {
    provider: Arc<str>,
    id: Arc<str>,
}

/// An AAuth agent identifier names its provider by its domain (every constructor checks
/// that the provider's host is that domain), so it is compared alone: the development
/// provider `http://localhost:8001` and a document's `aauth:bot@localhost` are then the
/// same agent. Any other identifier is compared with its provider.
impl PartialEq for AgentId {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && (self.id.starts_with("aauth:") || self.provider == other.provider)
    }
}

impl Eq for AgentId {}

impl std::hash::Hash for AgentId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        if !self.id.starts_with("aauth:") {
            self.provider.hash(state);
        }
    }
}

/// Server identifiers a policy document may name: `https://host`, or `http://` on
/// loopback with a port (development); anything else could never match a verified one.
pub(crate) fn is_server_identifier(text: &str) -> bool {
    crate::discovery::admission::IdentifierPolicy::allowing_http_loopback().admits(text)
}

impl AgentId {
    /// The agent `id` named by `provider`. Refused when `id` is an AAuth agent identifier
    /// whose domain is not the provider's host, or when either is empty, longer than
    /// 1024 bytes or holds control characters.
    pub fn new(provider: impl Into<Arc<str>>, id: impl Into<Arc<str>>) -> Result<Self, PolicyError> {
        let (provider, id) = (provider.into(), id.into());
        for value in [&*provider, &*id] {
            if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
                return Err(PolicyError::new(
                    "an agent's provider and identifier are 1 to 1024 bytes without control characters",
                ));
            }
        }
        if !is_server_identifier(&provider) {
            return Err(PolicyError::new(
                "an agent's provider is a server identifier (https://host, lower case, no port or path)",
            ));
        }
        if !provider_names(&provider, &id) {
            return Err(PolicyError::new(
                "an agent identifier's domain must be its provider's host",
            ));
        }
        Ok(AgentId { provider, id })
    }

    /// A pair the token rules already checked.
    pub(crate) fn trusted(provider: &str, id: &str) -> Self {
        AgentId {
            provider: provider.into(),
            id: id.into(),
        }
    }

    /// A server that is its own agent (a `jwks_uri` signer).
    pub(crate) fn server(id: Arc<str>) -> Self {
        AgentId {
            provider: id.clone(),
            id,
        }
    }

    /// The agent provider (`iss` of the agent token, or the signer itself).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The agent identifier (`aauth:local@domain`, or a URL for a server agent).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Approximate heap bytes held, for byte-bounded stores.
    pub(crate) fn weight(&self) -> usize {
        self.id.len()
            + if Arc::ptr_eq(&self.provider, &self.id) {
                0
            } else {
                self.provider.len()
            }
            + 32
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({:?} by {:?})", self.id, self.provider)
    }
}

impl fmt::Display for AgentId {
    /// The identifier alone when the provider follows from it, else `id (provider)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if implied_provider(&self.id).as_deref() == Some(&*self.provider) || self.id == self.provider {
            f.write_str(&self.id)
        } else {
            write!(f, "{} ({})", self.id, self.provider)
        }
    }
}

impl FromStr for AgentId {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(provider) = implied_provider(text) {
            return AgentId::new(provider, text);
        }
        if is_server_identifier(text) {
            return Ok(AgentId::server(text.into()));
        }
        Err(PolicyError::new(
            "an agent is aauth:local@domain or a server identifier https://host",
        ))
    }
}

/// `https://domain` for `aauth:local@domain`.
fn implied_provider(id: &str) -> Option<String> {
    if !is_agent_identifier(id) {
        return None;
    }
    id.rsplit_once('@').map(|(_, domain)| format!("https://{domain}"))
}

/// Whether `provider` may name agent `id`: an AAuth agent identifier's domain must be the
/// provider's host (any scheme and port, so loopback providers work in development);
/// other identifiers (a demo-generation delegate id under its provider) are the
/// provider's by construction, since the pair is the identity.
pub(crate) fn provider_names(provider: &str, id: &str) -> bool {
    if !id.starts_with("aauth:") {
        return true;
    }
    let Some((_, domain)) = id.rsplit_once('@') else {
        return false;
    };
    host_of(provider).is_some_and(|host| host == domain)
}

/// The host of `scheme://host[:port]`, without the port.
fn host_of(identifier: &str) -> Option<&str> {
    let (_, rest) = identifier.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(host, _)| &host[1..]);
    }
    Some(authority.rsplit_once(':').map_or(authority, |(host, _)| host))
}

/// A person: the person or access server that issued the token and its `sub` (directed,
/// unique only within that issuer).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PersonId {
    issuer: Arc<str>,
    subject: Arc<str>,
}

impl PersonId {
    /// The person `subject` at `issuer`.
    pub fn new(issuer: impl Into<Arc<str>>, subject: impl Into<Arc<str>>) -> Self {
        PersonId {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// Why a key was not bound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingRefused {
    /// The key is bound to this other agent.
    BoundToAnother(AgentId),
    /// The agent already holds as many live pinned keys as the store keeps for one agent.
    TooManyKeys,
}

/// What a key is bound to ([`Binding::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Binding {
    /// The agent.
    pub agent: AgentId,
    /// Until when (Unix seconds).
    pub until: u64,
    /// Whether the binding is kept whatever else the store must hold (see
    /// [`AgentBindings::bind`]).
    pub pinned: bool,
}

impl Binding {
    /// A binding to `agent` until `until` (Unix seconds), pinned or not.
    pub fn new(agent: AgentId, until: u64, pinned: bool) -> Self {
        Binding { agent, until, pinned }
    }
}

/// Key thumbprint → agent, for attributing requests that name no agent (draft -11 auth
/// tokens, `hwk`) to the agent seen using that key. Behind a trait so that replicas can
/// share one store; reads are on every request that names no agent, so keep them local.
///
/// The crate's own [`MemoryAgentBindings`] is shared across replicas by
/// `RedisPolicySyncBuilder::agent_bindings` (feature `redis`); another implementation
/// shares itself.
pub trait AgentBindings: std::any::Any + Send + Sync + 'static {
    /// The binding of the key `thumbprint` at `now` (Unix seconds), if any.
    fn binding(&self, thumbprint: &str, now: u64) -> Option<Binding>;

    /// Binds `thumbprint` to `agent` until at least `until` (Unix seconds): creates the
    /// binding, or extends it when it is to `agent` and ends earlier (never shortens it).
    /// `pinned` bindings (the agent is named by a ceiling or a revocation) must not be
    /// evicted before `until`, and pinning an existing binding pins it. A key bound to
    /// another agent is refused and its binding unchanged.
    fn bind(&self, thumbprint: &str, agent: &AgentId, until: u64, now: u64, pinned: bool)
    -> Result<(), BindingRefused>;

    /// Pins every live binding whose agent `named` accepts: called when the ceilings or
    /// the revocations change, so that bindings made before an agent was named cannot be
    /// pushed out afterwards.
    fn pin_named(&self, named: &dyn Fn(&AgentId) -> bool, now: u64);
}

/// Bindings made on this replica, oldest first, waiting to be published.
type Outbox = VecDeque<(Arc<str>, Binding)>;

/// The in-process [`AgentBindings`]: a byte-bounded cache for ordinary bindings, and a
/// table for pinned ones that only the agents a policy names can grow (at most
/// [`MemoryAgentBindings::MAX_KEYS_PER_PINNED_AGENT`] live keys each).
pub struct MemoryAgentBindings {
    ordinary: moka::sync::Cache<Arc<str>, Binding>,
    pinned: RwLock<HashMap<Arc<str>, Binding>>,
    /// Bindings made here, waiting to be published to other replicas; `None` while no
    /// sync is attached (then nothing is queued).
    outbox: Mutex<Option<Outbox>>,
    /// Wakes the sync when a binding is queued.
    pub(crate) wake: tokio::sync::Notify,
    /// A binding was left out of a full queue.
    overflowed: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for MemoryAgentBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAgentBindings")
            .field("bytes", &self.ordinary.weighted_size())
            .finish_non_exhaustive()
    }
}

/// Per-entry cost besides the strings: moka's entry, its deque and timer nodes, the
/// `Arc` headers (same order as the verified-token cache's measured overhead).
const ENTRY_OVERHEAD: u32 = 400;

impl MemoryAgentBindings {
    /// Default byte budget of the ordinary bindings (16 MiB, about 30 000 agents' keys).
    pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
    /// How many live keys one pinned agent may hold (a memory bound: pinned bindings are
    /// never evicted); beyond it new keys of that agent are refused.
    pub const MAX_KEYS_PER_PINNED_AGENT: usize = 4096;

    /// A store of at most `max_bytes` (estimated) ordinary bindings.
    pub fn new(max_bytes: u64) -> Self {
        let ordinary = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Arc<str>, binding: &Binding| {
                u32::try_from(key.len() + binding.agent.weight()).unwrap_or(u32::MAX) + ENTRY_OVERHEAD
            })
            // A memory backstop only: lookups compare `until` with the injected clock.
            .time_to_idle(Duration::from_secs(48 * 3600))
            .build();
        MemoryAgentBindings {
            ordinary,
            pinned: RwLock::new(HashMap::new()),
            outbox: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            overflowed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Estimated bytes held by ordinary bindings, after pending evictions.
    pub fn weighted_size(&self) -> u64 {
        self.ordinary.run_pending_tasks();
        self.ordinary.weighted_size()
    }

    /// Number of pinned bindings.
    pub fn pinned_len(&self) -> usize {
        self.pinned.read().map_or(0, |pinned| pinned.len())
    }
}

impl Default for MemoryAgentBindings {
    fn default() -> Self {
        MemoryAgentBindings::new(Self::DEFAULT_MAX_BYTES)
    }
}

/// The most bindings queued for publication while the shared store does not take them;
/// beyond it new ones stay local to this replica (and are logged).
const MAX_QUEUED: usize = 50_000;

impl MemoryAgentBindings {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Option<Outbox>> {
        self.outbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts queueing the bindings made here for a sync; `false` when one is attached.
    pub(crate) fn attach_sync(&self) -> bool {
        let mut outbox = self.outbox();
        if outbox.is_some() {
            return false;
        }
        *outbox = Some(VecDeque::new());
        true
    }

    /// Up to `max` queued bindings, oldest first, still queued until
    /// [`acknowledge`](Self::acknowledge)d.
    pub(crate) fn queued(&self, max: usize) -> Vec<(Arc<str>, Binding)> {
        self.outbox()
            .as_ref()
            .map(|queue| queue.iter().take(max).cloned().collect())
            .unwrap_or_default()
    }

    /// The first `count` queued bindings were published.
    pub(crate) fn acknowledge(&self, count: usize) {
        if let Some(queue) = self.outbox().as_mut() {
            queue.drain(..count.min(queue.len()));
        }
    }

    /// Queues a pinned binding for the other replicas (ordinary bindings stay here: only
    /// an agent a policy names needs its keys known fleet-wide, and only the policy can
    /// grow that set). One entry per key: a newer binding of a queued key replaces it.
    fn publish(&self, thumbprint: &str, binding: Binding) {
        if !binding.pinned {
            return;
        }
        let mut outbox = self.outbox();
        let Some(queue) = outbox.as_mut() else {
            return;
        };
        if let Some(queued) = queue
            .iter_mut()
            .find(|(key, _)| crate::jose::thumbprints_match(key, thumbprint))
        {
            queued.1 = binding;
            return;
        }
        if queue.len() >= MAX_QUEUED {
            drop(outbox);
            // Once per overflow: the next re-assertion of live bindings catches up.
            if !self.overflowed.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    target: "tower_aauth",
                    "the shared bindings store is behind; key bindings stay local until it catches up"
                );
            }
            return;
        }
        queue.push_back((thumbprint.into(), binding));
        drop(outbox);
        self.wake.notify_one();
    }

    /// Whether bindings were left out of the queue since the last call (it was full).
    pub(crate) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether bindings wait to be published.
    pub(crate) fn has_queued(&self) -> bool {
        self.outbox().as_ref().is_some_and(|queue| !queue.is_empty())
    }

    /// Applies a binding another replica made: as [`AgentBindings::bind`], never
    /// published again.
    pub(crate) fn apply_shared(&self, thumbprint: &str, binding: &Binding, now: u64) -> Result<(), BindingRefused> {
        self.bind_here(thumbprint, &binding.agent, binding.until, now, binding.pinned)
            .map(|_| ())
    }

    /// Queues every live pinned binding again (the shared store may have lost them), up
    /// to the queue's bound.
    pub(crate) fn requeue_live(&self, now: u64) {
        let pinned: Vec<(Arc<str>, Binding)> = self
            .pinned
            .read()
            .map(|table| {
                table
                    .iter()
                    .filter(|(_, b)| b.until > now)
                    .map(|(k, b)| (k.clone(), b.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (thumbprint, binding) in pinned {
            self.publish(&thumbprint, binding);
        }
    }

    /// The shared store holds another agent's binding for a key this replica bound first
    /// (two replicas raced): the shared one, written first, wins here too.
    pub(crate) fn yield_to_shared(&self, thumbprint: &str, binding: Binding) {
        let mut table = self.pinned_table();
        table.remove(thumbprint);
        if binding.pinned {
            table.insert(thumbprint.into(), binding);
        } else {
            drop(table);
            self.ordinary.insert(thumbprint.into(), binding);
        }
    }
}

impl MemoryAgentBindings {
    fn pinned_table(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Binding>> {
        self.pinned.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pin(
        table: &mut HashMap<Arc<str>, Binding>,
        thumbprint: &str,
        binding: Binding,
        now: u64,
    ) -> Result<(), BindingRefused> {
        if !table.contains_key(thumbprint) {
            table.retain(|_, b| b.until > now);
            let held = table.values().filter(|b| b.agent == binding.agent).count();
            if held >= Self::MAX_KEYS_PER_PINNED_AGENT {
                return Err(BindingRefused::TooManyKeys);
            }
        }
        table.insert(thumbprint.into(), binding);
        Ok(())
    }
}

impl AgentBindings for MemoryAgentBindings {
    fn binding(&self, thumbprint: &str, now: u64) -> Option<Binding> {
        if let Ok(pinned) = self.pinned.read()
            && !pinned.is_empty()
            && let Some(binding) = pinned.get(thumbprint)
            && binding.until > now
        {
            return Some(binding.clone());
        }
        self.ordinary.get(thumbprint).filter(|binding| binding.until > now)
    }

    fn bind(
        &self,
        thumbprint: &str,
        agent: &AgentId,
        until: u64,
        now: u64,
        pinned: bool,
    ) -> Result<(), BindingRefused> {
        if let Some(written) = self.bind_here(thumbprint, agent, until, now, pinned)? {
            self.publish(thumbprint, written);
        }
        Ok(())
    }

    fn pin_named(&self, named: &dyn Fn(&AgentId) -> bool, now: u64) {
        self.pin_named_here(named, now);
    }
}

impl MemoryAgentBindings {
    /// [`AgentBindings::bind`] on this replica; the binding written, if anything was.
    fn bind_here(
        &self,
        thumbprint: &str,
        agent: &AgentId,
        until: u64,
        now: u64,
        pinned: bool,
    ) -> Result<Option<Binding>, BindingRefused> {
        // The steady state: already bound to this agent for long enough; no write.
        match self.binding(thumbprint, now) {
            Some(bound) if bound.agent != *agent => return Err(BindingRefused::BoundToAnother(bound.agent)),
            Some(bound) if bound.until >= until && (bound.pinned || !pinned) => return Ok(None),
            _ => {}
        }
        if pinned {
            // Checked and written under the one lock, so two identities raced onto one
            // key cannot both pass.
            let mut table = self.pinned_table();
            let current = table
                .get(thumbprint)
                .cloned()
                .filter(|b| b.until > now)
                .or_else(|| self.ordinary.get(thumbprint).filter(|b| b.until > now));
            if let Some(bound) = &current
                && bound.agent != *agent
            {
                return Err(BindingRefused::BoundToAnother(bound.agent.clone()));
            }
            let until = current.map_or(until, |bound| bound.until.max(until));
            let binding = Binding {
                agent: agent.clone(),
                until,
                pinned: true,
            };
            return Self::pin(&mut table, thumbprint, binding.clone(), now).map(|()| Some(binding));
        }
        // One atomic step per key, so that two identities raced onto one key cannot both
        // pass the conflict check.
        let mut refused = None;
        let mut written = None;
        self.ordinary
            .entry(thumbprint.into())
            .and_compute_with(|current| match current.map(moka::Entry::into_value) {
                Some(bound) if bound.until > now && bound.agent != *agent => {
                    refused = Some(BindingRefused::BoundToAnother(bound.agent));
                    Op::Nop
                }
                Some(bound) if bound.until > now && bound.until >= until => Op::Nop,
                _ => {
                    let binding = Binding {
                        agent: agent.clone(),
                        until,
                        pinned: false,
                    };
                    written = Some(binding.clone());
                    Op::Put(binding)
                }
            });
        refused.map_or(Ok(written), Err)
    }

    fn pin_named_here(&self, named: &dyn Fn(&AgentId) -> bool, now: u64) {
        let promoted: Vec<(Arc<str>, Binding)> = self
            .ordinary
            .iter()
            .filter(|(_, b)| b.until > now && named(&b.agent))
            .map(|(key, b)| ((*key).clone(), b))
            .collect();
        if promoted.is_empty() {
            return;
        }
        let mut table = self.pinned_table();
        let mut pinned = Vec::new();
        for (thumbprint, mut binding) in promoted {
            binding.pinned = true;
            // An agent over its pinned keys keeps the rest as ordinary bindings.
            if Self::pin(&mut table, &thumbprint, binding.clone(), now).is_ok() {
                pinned.push((thumbprint, binding));
            }
        }
        drop(table);
        for (thumbprint, binding) in pinned {
            self.publish(&thumbprint, binding);
        }
    }
}

/// `aauth:local@domain` ([AAuth draft -11, "Agent Identifiers"][draft-11]): `local` of
/// ASCII letters, digits, `-`, `_`, `+`, `.`, 1–255 characters; `domain` a lower-case DNS
/// name.
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
pub fn is_agent_identifier(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("aauth:") else {
        return false;
    };
    let Some((local, domain)) = rest.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 255
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b))
        && crate::discovery::admission::is_dns_name(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> AgentId {
        id.parse().unwrap()
    }

    #[test]
    fn an_agent_identifier_belongs_to_the_provider_of_its_domain() {
        let cases = [
            ("https://agent.example", "aauth:bot@agent.example", true),
            ("https://evil.example", "aauth:bot@agent.example", false),
            ("https://agent.example", "aauth:bot@sub.agent.example", false),
            ("http://localhost:8080", "aauth:bot@localhost", true),
            ("https://agent.example", "delegate-7", true),
        ];
        for (provider, id, allowed) in cases {
            assert_eq!(AgentId::new(provider, id).is_ok(), allowed, "{provider} naming {id}");
        }
    }

    #[test]
    fn text_parses_to_the_pair_it_implies() {
        let parsed = agent("aauth:bot@agent.example");
        assert_eq!(
            (parsed.provider(), parsed.id()),
            ("https://agent.example", "aauth:bot@agent.example")
        );
        let server = agent("https://agent.example");
        assert_eq!(
            (server.provider(), server.id()),
            ("https://agent.example", "https://agent.example")
        );
        assert!("bot".parse::<AgentId>().is_err());
        assert_eq!(parsed.to_string(), "aauth:bot@agent.example");
        let delegate = AgentId::new("https://agent.example", "delegate-7").unwrap();
        assert_eq!(delegate.to_string(), "delegate-7 (https://agent.example)");
    }

    #[test]
    fn the_same_identifier_from_two_providers_is_two_agents() {
        let a = AgentId::new("https://agent.example", "delegate-7").unwrap();
        let b = AgentId::new("https://other.example", "delegate-7").unwrap();
        assert_ne!(a, b);
    }

    fn agent_of(store: &MemoryAgentBindings, key: &str, now: u64) -> Option<AgentId> {
        store.binding(key, now).map(|b| b.agent)
    }

    #[test]
    fn a_bound_key_refuses_another_agent_until_the_binding_ends() {
        let store = MemoryAgentBindings::default();
        let (a, b) = (agent("aauth:a@agent.example"), agent("aauth:b@agent.example"));
        store.bind("k1", &a, 100, 0, false).unwrap();
        assert_eq!(agent_of(&store, "k1", 50), Some(a.clone()));
        assert_eq!(
            store.bind("k1", &b, 200, 50, false),
            Err(BindingRefused::BoundToAnother(a))
        );
        assert_eq!(agent_of(&store, "k1", 100), None, "expired at until");
        store.bind("k1", &b, 200, 100, false).unwrap();
        assert_eq!(agent_of(&store, "k1", 150), Some(b));
    }

    #[test]
    fn a_binding_is_extended_and_never_shortened() {
        let store = MemoryAgentBindings::default();
        let a = agent("aauth:a@agent.example");
        store.bind("k1", &a, 100, 0, false).unwrap();
        store.bind("k1", &a, 500, 10, false).unwrap();
        assert_eq!(store.binding("k1", 10).unwrap().until, 500);
        store.bind("k1", &a, 200, 20, false).unwrap();
        assert_eq!(store.binding("k1", 20).unwrap().until, 500);
        store.bind("k1", &a, 300, 20, true).unwrap();
        let pinned = store.binding("k1", 20).unwrap();
        assert!(pinned.pinned);
        assert_eq!(pinned.until, 500, "pinning keeps the longer life");
    }

    #[test]
    fn a_pinned_binding_survives_a_flood_that_evicts_ordinary_ones() {
        let store = MemoryAgentBindings::new(64 * 1024);
        let capped = agent("aauth:capped@agent.example");
        store.bind("capped-key", &capped, 1_000, 0, true).unwrap();
        for i in 0..5_000 {
            let other = agent(&format!("aauth:flood{i}@evil.example"));
            store.bind(&format!("key-{i}"), &other, 1_000, 0, false).unwrap();
        }
        assert!(
            store.weighted_size() <= 64 * 1024,
            "ordinary bindings stay within their bytes"
        );
        assert_eq!(agent_of(&store, "capped-key", 1), Some(capped));
    }

    #[test]
    fn bindings_of_an_agent_named_later_are_pinned_on_request() {
        let store = MemoryAgentBindings::new(64 * 1024);
        let later = agent("aauth:later@agent.example");
        store.bind("later-key", &later, 1_000, 0, false).unwrap();
        store.pin_named(&|a| *a == later, 1);
        assert!(store.binding("later-key", 1).unwrap().pinned);
        for i in 0..5_000 {
            let other = agent(&format!("aauth:flood{i}@evil.example"));
            store.bind(&format!("key-{i}"), &other, 1_000, 0, false).unwrap();
        }
        assert_eq!(agent_of(&store, "later-key", 1), Some(later));
    }

    #[test]
    fn a_pinned_agent_holds_a_bounded_number_of_live_keys() {
        let store = MemoryAgentBindings::default();
        let capped = agent("aauth:capped@agent.example");
        for i in 0..MemoryAgentBindings::MAX_KEYS_PER_PINNED_AGENT {
            store.bind(&format!("k{i}"), &capped, 1_000, 0, true).unwrap();
        }
        assert_eq!(
            store.bind("one-more", &capped, 1_000, 0, true),
            Err(BindingRefused::TooManyKeys)
        );
        assert_eq!(agent_of(&store, "k0", 1), Some(capped.clone()));
        // Expired keys no longer count.
        store.bind("one-more", &capped, 2_000, 1_000, true).unwrap();
    }

    #[test]
    fn an_aauth_identifier_is_the_same_agent_from_its_loopback_provider() {
        let development = AgentId::new("http://localhost:8001", "aauth:bot@localhost").unwrap();
        assert_eq!(development, agent("aauth:bot@localhost"));
        let delegate = AgentId::new("https://agent.example", "delegate-7").unwrap();
        assert_ne!(delegate, AgentId::new("https://other.example", "delegate-7").unwrap());
    }

    #[test]
    fn a_provider_that_could_never_verify_is_refused() {
        for provider in [
            "https://agent.example/",
            "https://Agent.example",
            "https://agent.example:443",
            "http://agent.example",
        ] {
            assert!(provider.parse::<AgentId>().is_err(), "{provider}");
            assert!(AgentId::new(provider, "delegate").is_err(), "{provider}");
        }
    }
}
