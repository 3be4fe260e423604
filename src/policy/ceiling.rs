//! Per-agent scope ceilings: the most an agent may ever use, whatever a token grants.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::identity::AgentId;
use super::revocation::Revoked;
use super::shared::Link;
use crate::error::Error;
use crate::error::PolicyError;
use crate::token::Scopes;
use crate::verified::VerifiedRequest;

/// One snapshot of ceilings.
///
/// Ceilings apply by agent ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent), the provider and identifier
/// pair, also for requests attributed to an agent through its key's binding) and by
/// signing-key thumbprint. When both name the request, a scope must be under **both**;
/// when neither does, the default ceiling applies (none by default: unlisted agents are
/// limited only by their tokens). Since an agent that never shows its identity to the
/// resource gets the default ceiling, a resource that must cap agents sets a default and
/// raises it per agent.
///
/// A ceiling lists `authorization_details` types as it lists scopes: an entry of type
/// `trade` is under a ceiling that lists `trade`. Entries of other types are removed from
/// the grant the guards see, and a step-up asking for them is `403 scope_above_ceiling`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CeilingSet {
    agents: HashMap<AgentId, Scopes>,
    keys: HashMap<String, Scopes>,
    default: Option<Scopes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    agents: HashMap<String, String>,
    #[serde(default)]
    key_thumbprints: HashMap<String, String>,
    #[serde(default)]
    default: Option<String>,
}

fn parse_scopes(text: &str) -> Result<Scopes, &'static str> {
    Scopes::parse(text).ok_or("a ceiling is a space-separated scope list (RFC 6749 §3.3)")
}

impl CeilingSet {
    /// No ceilings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits `agent` to `scopes`.
    pub fn agent(mut self, agent: AgentId, scopes: &str) -> Result<Self, PolicyError> {
        let scopes = parse_scopes(scopes).map_err(|reason| PolicyError::entry("agents", 0, reason))?;
        self.agents.insert(agent, scopes);
        Ok(self)
    }

    /// Limits the key with RFC 7638 thumbprint `thumbprint` to `scopes`.
    pub fn key(mut self, thumbprint: impl Into<String>, scopes: &str) -> Result<Self, PolicyError> {
        let thumbprint = thumbprint.into();
        Revoked::KeyThumbprint(thumbprint.clone())
            .validate()
            .map_err(|reason| PolicyError::entry("key_thumbprints", 0, reason))?;
        let scopes = parse_scopes(scopes).map_err(|reason| PolicyError::entry("key_thumbprints", 0, reason))?;
        self.keys.insert(thumbprint, scopes);
        Ok(self)
    }

    /// The ceiling for agents and keys not listed.
    pub fn default_ceiling(mut self, scopes: &str) -> Result<Self, PolicyError> {
        self.default = Some(parse_scopes(scopes).map_err(|reason| PolicyError::entry("default", 0, reason))?);
        Ok(self)
    }

    /// Reads ceilings from JSON:
    ///
    /// ```json
    /// {"agents": {"aauth:reporting@agent.example": "reports:read"},
    ///  "key_thumbprints": {"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs": "code:read code:write"},
    ///  "default": "reports:read"}
    /// ```
    ///
    /// Unknown or duplicate members, wrong types and malformed entries are errors.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > 16 * 1024 * 1024 {
            return Err(PolicyError::new("the ceiling document is larger than 16 MiB"));
        }
        let document: Document = serde_json::from_slice(bytes)
            .map_err(|e| PolicyError::new(format!("the ceiling document is not valid: {e}")))?;
        let mut set = CeilingSet::new();
        // Sorted so that the index in an error message is reproducible.
        let mut agents: Vec<_> = document.agents.into_iter().collect();
        agents.sort();
        for (i, (agent, scopes)) in agents.into_iter().enumerate() {
            let agent: AgentId = agent.parse().map_err(|_| {
                PolicyError::entry(
                    "agents",
                    i,
                    "an agent is aauth:local@domain or a server identifier https://host",
                )
            })?;
            set = set
                .agent(agent, &scopes)
                .map_err(|e| PolicyError::entry("agents", i, e.reason()))?;
        }
        let mut keys: Vec<_> = document.key_thumbprints.into_iter().collect();
        keys.sort();
        for (i, (key, scopes)) in keys.into_iter().enumerate() {
            set = set
                .key(key, &scopes)
                .map_err(|e| PolicyError::entry("key_thumbprints", i, e.reason()))?;
        }
        if let Some(default) = document.default {
            set = set.default_ceiling(&default)?;
        }
        Ok(set)
    }

    /// The set as the document [`from_json`](Self::from_json) reads, compact, members
    /// sorted; `None` when an agent's provider is not the one its identifier implies (the
    /// document cannot name it).
    pub(crate) fn to_json(&self) -> Option<String> {
        let mut agents = BTreeMap::new();
        for (agent, scopes) in &self.agents {
            let text = agent.to_string();
            if text.parse::<AgentId>().ok().as_ref() != Some(agent) {
                return None;
            }
            agents.insert(text, scopes.to_string());
        }
        let keys: BTreeMap<_, _> = self.keys.iter().map(|(k, s)| (k.as_str(), s.to_string())).collect();
        let mut document = serde_json::Map::new();
        document.insert("agents".into(), serde_json::json!(agents));
        document.insert("key_thumbprints".into(), serde_json::json!(keys));
        if let Some(default) = &self.default {
            document.insert("default".into(), default.to_string().into());
        }
        Some(serde_json::Value::Object(document).to_string())
    }

    /// Whether a ceiling names `agent`.
    pub fn names(&self, agent: &AgentId) -> bool {
        self.agents.contains_key(agent)
    }

    /// Whether no ceiling is configured.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.keys.is_empty() && self.default.is_none()
    }

    /// Whether `scope` is under every ceiling that applies to `request`.
    pub fn permits(&self, request: &VerifiedRequest, scope: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let by_agent = request.agent().and_then(|agent| self.agents.get(agent));
        let by_key = self.keys.get(&*request.key_thumbprint);
        match (by_agent, by_key) {
            (None, None) => self.default.as_ref().is_none_or(|d| d.contains(scope)),
            (agent, key) => agent.is_none_or(|c| c.contains(scope)) && key.is_none_or(|c| c.contains(scope)),
        }
    }

    /// `403 scope_above_ceiling` unless every scope of `required` is under the ceilings
    /// that apply to `request`. A ceiling is not raised by consent, so this is a denial,
    /// never a step-up challenge.
    pub fn check<'a>(
        &self,
        request: &VerifiedRequest,
        required: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Error> {
        if required.into_iter().all(|scope| self.permits(request, scope)) {
            Ok(())
        } else {
            Err(Error(crate::error::Kind::Forbidden {
                code: crate::names::problem::SCOPE_ABOVE_CEILING,
                detail: "the agent may not use this scope",
            }))
        }
    }

    /// `granted` narrowed to what the ceilings permit for `request`.
    pub fn effective(&self, request: &VerifiedRequest, granted: &Scopes) -> Scopes {
        if self.is_empty() {
            return granted.clone();
        }
        Scopes::from_iter_unchecked(granted.iter().filter(|s| self.permits(request, s)))
    }
}

/// Hot-reloadable ceilings shared by clones (same model as
/// [`super::Revocations`]: lock-free reads, whole-snapshot replacement, a failed reload
/// keeps the ceilings in force).
///
/// A handle kept in step with other replicas (`RedisPolicySync`, feature `redis`)
/// publishes every replacement as the one shared document (the last write wins).
#[derive(Clone, Default)]
pub struct ScopeCeilings {
    current: Arc<ArcSwap<CeilingSet>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    link: Arc<Link<CeilingOutbox>>,
}

/// The replacement made through a synced handle and not yet acknowledged by the shared
/// store, as the document to publish and its sequence number.
#[derive(Default)]
pub(crate) struct CeilingOutbox {
    pending: Option<(u64, Arc<str>)>,
    next_seq: u64,
}

impl std::fmt::Debug for ScopeCeilings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeCeilings").finish_non_exhaustive()
    }
}

impl ScopeCeilings {
    /// No ceilings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ceilings starting from `set`.
    pub fn from_set(set: CeilingSet) -> Self {
        ScopeCeilings {
            current: Arc::new(ArcSwap::from_pointee(set)),
            generation: Arc::default(),
            link: Arc::default(),
        }
    }

    /// Whether the ceilings in force name `agent`.
    pub(crate) fn names(&self, agent: &AgentId) -> bool {
        let current = self.current.load();
        !current.is_empty() && current.names(agent)
    }

    /// Counts changes, so that the layer can tell when the set changed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Replaces the ceilings. On a synced handle the set is also queued for the shared
    /// store, where it replaces the document of every replica.
    pub fn replace(&self, set: CeilingSet) {
        let mut outbox = self.link.outbox();
        if let Some(outbox) = outbox.as_mut() {
            match set.to_json() {
                Some(document) => {
                    outbox.next_seq += 1;
                    outbox.pending = Some((outbox.next_seq, document.into()));
                    self.link.wake.notify_one();
                }
                None => tracing::error!(
                    target: "tower_aauth",
                    "scope ceilings naming an agent by a provider its identifier does not imply \
                     cannot be shared; applied on this replica only"
                ),
            }
        }
        self.current.store(Arc::new(set));
        drop(outbox);
        self.changed();
    }

    /// Replaces the ceilings from JSON ([`CeilingSet::from_json`]); on error the current
    /// ceilings stay in force.
    pub fn reload_json(&self, bytes: &[u8]) -> Result<(), PolicyError> {
        self.replace(CeilingSet::from_json(bytes)?);
        Ok(())
    }

    /// The ceilings in force now.
    pub fn snapshot(&self) -> Arc<CeilingSet> {
        self.current.load_full()
    }

    /// [`CeilingSet::check`] against the ceilings in force.
    pub fn check<'a>(
        &self,
        request: &VerifiedRequest,
        required: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Error> {
        self.current.load().check(request, required)
    }

    /// `503` with `Retry-After: 1` when the handle is synced and its snapshot is older
    /// than the staleness bound (the layer asks on every verified request).
    pub(crate) fn ensure_current(&self) -> Result<(), Error> {
        self.link.check()
    }
}

/// The sync's side (feature `redis`).
impl ScopeCeilings {
    /// Attaches a sync; `false` when one is attached already.
    pub(crate) fn attach(&self, max_staleness: std::time::Duration) -> bool {
        self.link.attach(CeilingOutbox::default(), max_staleness)
    }

    /// The link (freshness gate and wake-up).
    pub(crate) fn link(&self) -> &Link<CeilingOutbox> {
        &self.link
    }

    /// The replacement waiting for the shared store, if any, with its sequence number.
    pub(crate) fn pending(&self) -> Option<(u64, Arc<str>)> {
        self.link.outbox().as_ref().and_then(|outbox| outbox.pending.clone())
    }

    /// The shared store holds the replacement numbered `seq`.
    pub(crate) fn acknowledge(&self, seq: u64) {
        if let Some(outbox) = self.link.outbox().as_mut()
            && outbox.pending.as_ref().is_some_and(|(s, _)| *s == seq)
        {
            outbox.pending = None;
        }
    }

    /// Installs the shared document just read, unless a replacement made here is still
    /// waiting to be published (it wins; the next read brings it back).
    pub(crate) fn install_shared(&self, set: CeilingSet) {
        let outbox = self.link.outbox();
        if outbox.as_ref().is_some_and(|outbox| outbox.pending.is_none()) && **self.current.load() != set {
            self.current.store(Arc::new(set));
            drop(outbox);
            self.changed();
        }
    }
}
