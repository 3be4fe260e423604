//! The revocation set: agents, keys, tokens and persons refused on every request.
//!
//! A token entry may carry the token's `exp` (the revocation endpoint's entries, [AAuth
//! draft -11, "Token Revocation"][draft-11]): it is enforced until `exp` plus the allowed
//! clock skew, after which the token is refused as expired anyway, and it is then pruned
//! by the next endpoint write (from the shared store too, by its exact member text).
//! Entries without `exp` (an operator's) stay until lifted.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::identity::{AgentId, PersonId};
use super::shared::{Link, MAX_PENDING};
use crate::error::Error;
use crate::error::PolicyError;
use crate::token::TokenKind;
use crate::verified::VerifiedRequest;

/// One thing to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revoked {
    /// An agent ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent)): every request from that agent, and every
    /// request signed by a key it was seen using, whatever token that key presents.
    Agent(AgentId),
    /// The RFC 7638 thumbprint of a signing key (43 base64url characters): every request
    /// that key signed, under any scheme.
    KeyThumbprint(String),
    /// A token, by `(iss, jti)` (the revocation key of [AAuth draft -11, "Token
    /// Revocation"][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    Jti {
        /// The token's issuer.
        issuer: String,
        /// The token's `jti`.
        jti: String,
    },
    /// A person: every person or auth token of `(iss, sub)`.
    Person(PersonId),
}

/// Longest agent identifier, `jti` or subject accepted in a revocation entry.
const MAX_VALUE_BYTES: usize = 1024;
/// Most entries one set may hold.
pub(crate) const MAX_REVOCATIONS: usize = 1_000_000;

impl Revoked {
    /// Checks the entry's shape: a malformed entry would silently revoke nothing.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Revoked::Agent(_) => Ok(()),
            Revoked::Person(person) => {
                if !super::identity::is_server_identifier(person.issuer()) {
                    return Err("a person's issuer is not a server identifier (https://host)");
                }
                value(person.subject(), "a subject")
            }
            Revoked::KeyThumbprint(thumbprint) => {
                let shaped = thumbprint.len() == 43
                    && thumbprint
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if shaped {
                    Ok(())
                } else {
                    Err("a key thumbprint is 43 base64url characters (RFC 7638 SHA-256)")
                }
            }
            Revoked::Jti { issuer, jti } => {
                if !super::identity::is_server_identifier(issuer) {
                    return Err("a jti entry's issuer is not a server identifier (https://host)");
                }
                value(jti, "a jti")
            }
        }
    }
}

/// One entry of a set as the stores hold it: a [`Revoked`] and, for a token entry
/// written by the revocation endpoint, the token's `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) revoked: Revoked,
    /// The token's `exp` (`Revoked::Jti` only): the entry lapses after it (plus skew).
    pub(crate) exp: Option<u64>,
}

impl Entry {
    /// An entry in force until lifted.
    pub(crate) fn lasting(revoked: Revoked) -> Self {
        Entry { revoked, exp: None }
    }

    /// The one-entry document the shared store holds for it; a token entry with `exp`
    /// is `{"jtis":[{"exp":…,"iss":"…","jti":"…"}]}`.
    pub(crate) fn member(&self) -> Result<String, PolicyError> {
        match (&self.revoked, self.exp) {
            (Revoked::Jti { issuer, jti }, Some(exp)) => {
                Ok(serde_json::json!({ "jtis": [{ "iss": issuer, "jti": jti, "exp": exp }] }).to_string())
            }
            (revoked, _) => revoked.member(),
        }
    }

    /// Bytes an expiring entry is charged against its issuer's budget.
    pub(crate) fn charge(issuer: &str, jti: &str) -> usize {
        issuer.len() + jti.len() + ENTRY_OVERHEAD
    }
}

/// What an expiring token entry costs besides its two strings (map slots, the `exp`).
const ENTRY_OVERHEAD: usize = 96;

impl Revoked {
    /// The entry as a one-entry revocation document in compact canonical form (the member
    /// the shared store holds for it), e.g. `{"agents":["aauth:assistant@agent.example"]}`.
    /// An agent whose provider is not the one its identifier implies has no document
    /// form and is an error.
    pub(crate) fn member(&self) -> Result<String, PolicyError> {
        let document = match self {
            Revoked::Agent(agent) => {
                let text = agent.to_string();
                if text.parse::<AgentId>().ok().as_ref() != Some(agent) {
                    return Err(PolicyError::entry(
                        "agents",
                        0,
                        "this agent's provider is not the one its identifier implies: a revocation document cannot name it",
                    ));
                }
                serde_json::json!({ "agents": [text] })
            }
            Revoked::KeyThumbprint(thumbprint) => serde_json::json!({ "key_thumbprints": [thumbprint] }),
            Revoked::Jti { issuer, jti } => serde_json::json!({ "jtis": [{ "iss": issuer, "jti": jti }] }),
            Revoked::Person(person) => {
                serde_json::json!({ "persons": [{ "iss": person.issuer(), "sub": person.subject() }] })
            }
        };
        Ok(document.to_string())
    }
}

fn value(text: &str, _what: &'static str) -> Result<(), &'static str> {
    if text.is_empty() || text.len() > MAX_VALUE_BYTES || text.chars().any(char::is_control) {
        return Err("an agent identifier, jti or subject must be 1 to 1024 bytes with no control characters");
    }
    Ok(())
}

fn uncharge(bytes: &mut HashMap<String, usize>, issuer: &str, charge: usize) {
    if let Some(held) = bytes.get_mut(issuer) {
        *held = held.saturating_sub(charge);
        if *held == 0 {
            bytes.remove(issuer);
        }
    }
}

/// An immutable set of revocations (one snapshot of a [`Revocations`] handle).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    agents: HashSet<AgentId>,
    keys: HashSet<String>,
    /// `jti` → the issuers that token id is revoked for, each with the token's `exp` when
    /// the entry lapses (lookups without allocating).
    jtis: HashMap<String, Vec<(String, Option<u64>)>>,
    persons: HashSet<PersonId>,
    count: usize,
    /// Bytes of the expiring token entries, per issuer ([`Entry::charge`]).
    expiring_bytes: HashMap<String, usize>,
}

/// The JSON document [`RevocationSet::from_json`] reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    key_thumbprints: Vec<String>,
    #[serde(default)]
    jtis: Vec<JtiEntry>,
    #[serde(default)]
    persons: Vec<PersonEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonEntry {
    iss: String,
    sub: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JtiEntry {
    iss: String,
    jti: String,
    /// Absent: a lasting entry; `null` is not an `exp`.
    #[serde(default, deserialize_with = "present_u64")]
    exp: Option<u64>,
}

fn present_u64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(deserializer).map(Some)
}

impl RevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `entry` after checking its shape.
    pub fn insert(&mut self, entry: Revoked) -> Result<(), PolicyError> {
        self.add(Entry::lasting(entry))
    }

    /// Adds `entry` after checking its shape. A token entry present already keeps the
    /// longer life: none beats any `exp`, a later `exp` an earlier one.
    pub(crate) fn add(&mut self, entry: Entry) -> Result<(), PolicyError> {
        entry
            .revoked
            .validate()
            .map_err(|reason| PolicyError::entry("revocation", 0, reason))?;
        let exp = match entry.revoked {
            Revoked::Jti { .. } => entry.exp,
            _ => None,
        };
        if self.count >= MAX_REVOCATIONS && !self.contains(&entry.revoked) {
            return Err(PolicyError::new("too many revocations in one set"));
        }
        let fresh = match entry.revoked {
            Revoked::Agent(id) => self.agents.insert(id),
            Revoked::KeyThumbprint(t) => self.keys.insert(t),
            Revoked::Jti { issuer, jti } => {
                let charge = Entry::charge(&issuer, &jti);
                let issuers = self.jtis.entry(jti).or_default();
                match issuers.iter_mut().find(|(i, _)| *i == issuer) {
                    Some((_, held)) => {
                        let longer = match (*held, exp) {
                            (Some(held), Some(exp)) => Some(held.max(exp)),
                            _ => None,
                        };
                        if held.is_some() && longer.is_none() {
                            uncharge(&mut self.expiring_bytes, &issuer, charge);
                        }
                        *held = longer;
                        false
                    }
                    None => {
                        if exp.is_some() {
                            *self.expiring_bytes.entry(issuer.clone()).or_default() += charge;
                        }
                        issuers.push((issuer, exp));
                        true
                    }
                }
            }
            Revoked::Person(person) => self.persons.insert(person),
        };
        self.count += usize::from(fresh);
        Ok(())
    }

    /// Removes `entry`; whether it was present.
    pub fn remove(&mut self, entry: &Revoked) -> bool {
        let removed = match entry {
            Revoked::Agent(id) => self.agents.remove(id),
            Revoked::KeyThumbprint(t) => self.keys.remove(t),
            Revoked::Jti { issuer, jti } => {
                let Some(issuers) = self.jtis.get_mut(jti) else {
                    return false;
                };
                let Some(at) = issuers.iter().position(|(i, _)| i == issuer) else {
                    return false;
                };
                let (_, exp) = issuers.swap_remove(at);
                if issuers.is_empty() {
                    self.jtis.remove(jti);
                }
                if exp.is_some() {
                    uncharge(&mut self.expiring_bytes, issuer, Entry::charge(issuer, jti));
                }
                true
            }
            Revoked::Person(person) => self.persons.remove(person),
        };
        self.count -= usize::from(removed);
        removed
    }

    /// Reads a set from JSON:
    ///
    /// ```json
    /// {"agents": ["aauth:assistant@agent.example"],
    ///  "key_thumbprints": ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"],
    ///  "jtis": [{"iss": "https://as.example", "jti": "at-42"},
    ///           {"iss": "https://ps.example", "jti": "pt-7", "exp": 1788727813}],
    ///  "persons": [{"iss": "https://ps.example", "sub": "8f14e45fceea167a5a36dedd4bea2543"}]}
    /// ```
    ///
    /// An agent is `aauth:local@domain` (its provider is `https://domain`) or a server
    /// identifier. A `jtis` entry with `exp` (the token's, seconds since the epoch) lapses
    /// once the token has expired; one without stays until lifted. Every member is
    /// optional; unknown members, duplicate members, wrong types and
    /// malformed entries are errors naming the member and index (never a partial set).
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > 64 * 1024 * 1024 {
            return Err(PolicyError::new("the revocation document is larger than 64 MiB"));
        }
        let document: Document = serde_json::from_slice(bytes)
            .map_err(|e| PolicyError::new(format!("the revocation document is not valid: {e}")))?;
        let total =
            document.agents.len() + document.key_thumbprints.len() + document.jtis.len() + document.persons.len();
        if total > MAX_REVOCATIONS {
            return Err(PolicyError::new("too many revocations in one set"));
        }
        let mut set = RevocationSet::new();
        let mut add = |member: &'static str, index: usize, entry: Entry| -> Result<(), PolicyError> {
            entry
                .revoked
                .validate()
                .map_err(|reason| PolicyError::entry(member, index, reason))?;
            set.add(entry)
        };
        for (i, id) in document.agents.into_iter().enumerate() {
            let agent = id.parse().map_err(|_| {
                PolicyError::entry(
                    "agents",
                    i,
                    "an agent is aauth:local@domain or a server identifier https://host",
                )
            })?;
            add("agents", i, Entry::lasting(Revoked::Agent(agent)))?;
        }
        for (i, t) in document.key_thumbprints.into_iter().enumerate() {
            add("key_thumbprints", i, Entry::lasting(Revoked::KeyThumbprint(t)))?;
        }
        for (i, JtiEntry { iss, jti, exp }) in document.jtis.into_iter().enumerate() {
            let revoked = Revoked::Jti { issuer: iss, jti };
            add("jtis", i, Entry { revoked, exp })?;
        }
        for (i, PersonEntry { iss, sub }) in document.persons.into_iter().enumerate() {
            add("persons", i, Entry::lasting(Revoked::Person(PersonId::new(iss, sub))))?;
        }
        Ok(set)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Every entry, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let agents = self.agents.iter().cloned().map(Revoked::Agent).map(Entry::lasting);
        let keys = self
            .keys
            .iter()
            .cloned()
            .map(Revoked::KeyThumbprint)
            .map(Entry::lasting);
        let jtis = self.jtis.iter().flat_map(|(jti, issuers)| {
            issuers.iter().map(|(issuer, exp)| Entry {
                revoked: Revoked::Jti {
                    issuer: issuer.clone(),
                    jti: jti.clone(),
                },
                exp: *exp,
            })
        });
        let persons = self.persons.iter().cloned().map(Revoked::Person).map(Entry::lasting);
        agents.chain(keys).chain(jtis).chain(persons)
    }

    /// The token entries whose `exp` is before `horizon` (at most `limit` of them).
    pub(crate) fn lapsed(&self, horizon: u64, limit: usize) -> Vec<Entry> {
        if self.expiring_bytes.is_empty() {
            return Vec::new();
        }
        self.entries()
            .filter(|entry| entry.exp.is_some_and(|exp| exp < horizon))
            .take(limit)
            .collect()
    }

    /// The `exp` of the token entry `(issuer, jti)`: `None` when absent, `Some(None)` when
    /// it never lapses.
    pub(crate) fn token_exp(&self, issuer: &str, jti: &str) -> Option<Option<u64>> {
        let issuers = self.jtis.get(jti)?;
        issuers.iter().find(|(i, _)| i == issuer).map(|(_, exp)| *exp)
    }

    /// Bytes of `issuer`'s expiring token entries ([`Entry::charge`] each).
    pub(crate) fn expiring_bytes(&self, issuer: &str) -> usize {
        self.expiring_bytes.get(issuer).copied().unwrap_or(0)
    }

    /// This set with every entry of `other` added (entries were validated when inserted).
    pub(crate) fn union(&self, other: &RevocationSet) -> RevocationSet {
        let (mut union, smaller) = if self.len() >= other.len() {
            (self.clone(), other)
        } else {
            (other.clone(), self)
        };
        for entry in smaller.entries() {
            if union.add(entry).is_err() {
                break;
            }
        }
        union
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `entry` is in the set.
    pub fn contains(&self, entry: &Revoked) -> bool {
        match entry {
            Revoked::Agent(id) => self.agents.contains(id),
            Revoked::KeyThumbprint(t) => self.keys.contains(t),
            Revoked::Jti { issuer, jti } => self.token_exp(issuer, jti).is_some(),
            Revoked::Person(person) => self.persons.contains(person),
        }
    }

    /// The refusal for a request whose key, agent, token or person is revoked.
    ///
    /// A revoked auth token (by `jti` or subject) also asks for a person token, as [AAuth
    /// draft -11, "Token Revocation"][draft-11] says; a revoked agent or key does not, since a
    /// new grant would not help.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub fn check(&self, request: &VerifiedRequest) -> Result<(), Error> {
        self.check_at(request, 0)
    }

    /// [`RevocationSet::check`], where a token entry whose `exp` is before `horizon` (now
    /// less the allowed skew) has lapsed.
    pub(crate) fn check_at(&self, request: &VerifiedRequest, horizon: u64) -> Result<(), Error> {
        if self.is_empty() {
            return Ok(());
        }
        if !self.keys.is_empty() && self.keys.contains(&*request.key_thumbprint) {
            return Err(Error(crate::error::Kind::Revoked {
                detail: "the signing key is revoked",
                person_token: false,
            }));
        }
        if !self.agents.is_empty()
            && let Some(agent) = request.agent()
            && self.agents.contains(agent)
        {
            return Err(Error(crate::error::Kind::Revoked {
                detail: "the agent is revoked",
                person_token: false,
            }));
        }
        let Some(token) = &request.token else {
            return Ok(());
        };
        let claims = &token.claims;
        let grant = claims.kind == TokenKind::Auth;
        let jti_revoked = !self.jtis.is_empty()
            && claims
                .jti
                .as_ref()
                .and_then(|jti| self.jtis.get(jti))
                .and_then(|issuers| issuers.iter().find(|(issuer, _)| *issuer == claims.iss))
                .is_some_and(|(_, exp)| exp.is_none_or(|exp| exp >= horizon));
        let subject_revoked = !self.persons.is_empty()
            && claims.kind != TokenKind::Agent
            && claims
                .sub
                .as_deref()
                .is_some_and(|sub| self.persons.contains(&PersonId::new(claims.iss.as_str(), sub)));
        if jti_revoked || subject_revoked {
            return Err(Error(crate::error::Kind::Revoked {
                detail: if jti_revoked {
                    "the token is revoked"
                } else {
                    "the subject is revoked"
                },
                person_token: grant,
            }));
        }
        Ok(())
    }
}

/// Lapsed token entries pruned by one [`Revocations::revoke_until`].
pub(crate) const PRUNE_PER_WRITE: usize = 256;

/// Why [`Revocations::revoke_until`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UntilRefused {
    /// The entry is not well formed (a `jti` too long or with control characters).
    Malformed,
    /// The issuer's expiring entries are at their byte budget.
    Budget,
    /// The set or the queue of unpublished writes is full.
    Full,
}

/// A hot-reloadable revocation set: clones share one set; every change is visible to the
/// next request on every clone, without a restart.
///
/// Reads are lock-free (an atomically swapped `Arc` snapshot); writers replace the whole
/// snapshot. A failed reload leaves the current set in force: nothing is un-revoked by a
/// bad file. A set holds at most 1 000 000 entries; a change that would exceed it is an
/// error and changes nothing.
///
/// A handle kept in step with other replicas (`RedisPolicySync`, feature `redis`)
/// publishes every change made through it, and [`check`](Self::check) answers `503`
/// once the snapshot is older than the sync's staleness bound.
#[derive(Clone, Default)]
pub struct Revocations {
    current: Arc<ArcSwap<RevocationSet>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    link: Arc<Link<RevocationOutbox>>,
}

/// A change made through a synced handle, waiting to be published.
#[derive(Debug, Clone)]
pub(crate) enum RevocationOp {
    /// Add one entry to the shared set.
    Add(Entry),
    /// Remove one entry from the shared set.
    Remove(Entry),
    /// Replace the whole shared set.
    Replace(Arc<RevocationSet>),
}

/// What a synced handle composes its snapshot from: the shared set as last read, the
/// writes not yet acknowledged on top of it, and the replica-local layer (a file) added
/// to both.
#[derive(Default)]
pub(crate) struct RevocationOutbox {
    ops: VecDeque<(u64, RevocationOp)>,
    next_seq: u64,
    local: RevocationSet,
    shared: RevocationSet,
}

impl RevocationOutbox {
    fn push(&mut self, op: RevocationOp) -> Result<(), PolicyError> {
        if matches!(op, RevocationOp::Replace(_)) {
            self.ops.clear();
        }
        if self.ops.len() >= MAX_PENDING {
            return Err(PolicyError::new(
                "too many revocation changes are waiting for the shared store to acknowledge them",
            ));
        }
        self.next_seq += 1;
        self.ops.push_back((self.next_seq, op));
        Ok(())
    }

    /// The snapshot: the shared set with the pending writes applied, plus the local layer.
    fn compose(&self) -> RevocationSet {
        let mut shared = self.shared.clone();
        for (_, op) in &self.ops {
            match op {
                RevocationOp::Add(entry) => {
                    let _ = shared.add(entry.clone());
                }
                RevocationOp::Remove(entry) => {
                    shared.remove(&entry.revoked);
                }
                RevocationOp::Replace(set) => shared = RevocationSet::clone(set),
            }
        }
        shared.union(&self.local)
    }
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.current.load().len())
            .finish()
    }
}

impl Revocations {
    /// An empty, shared set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes one more thing. On a synced handle the entry is also queued for the shared
    /// store; an agent whose provider is not the one its identifier implies cannot be
    /// published and is then an error (and nothing changes).
    pub fn revoke(&self, entry: Revoked) -> Result<(), PolicyError> {
        entry
            .validate()
            .map_err(|reason| PolicyError::entry("revocation", 0, reason))?;
        let mut outbox = self.link.outbox();
        if outbox.is_some() {
            entry.member()?;
        }
        let mut result = Ok(());
        self.current.rcu(|current| {
            let mut next = RevocationSet::clone(current);
            result = next.insert(entry.clone());
            next
        });
        if let (Ok(()), Some(outbox)) = (&result, outbox.as_mut()) {
            result = outbox.push(RevocationOp::Add(Entry::lasting(entry)));
            self.link.wake.notify_one();
        }
        drop(outbox);
        self.changed();
        result
    }

    /// Revokes the token `(issuer, jti)` until its `exp` (the revocation endpoint's write),
    /// after pruning up to [`PRUNE_PER_WRITE`] token entries that lapsed before `horizon`
    /// (here and, on a synced handle, in the shared store). An entry present already is
    /// left as it is. Refused, changing nothing but the pruning, when `issuer`'s expiring
    /// entries would exceed `budget` bytes, or when the set or the outbox is full.
    pub(crate) fn revoke_until(
        &self,
        issuer: &str,
        jti: &str,
        exp: u64,
        horizon: u64,
        budget: usize,
    ) -> Result<(), UntilRefused> {
        let entry = Entry {
            revoked: Revoked::Jti {
                issuer: issuer.to_owned(),
                jti: jti.to_owned(),
            },
            exp: Some(exp),
        };
        entry.revoked.validate().map_err(|_| UntilRefused::Malformed)?;
        let mut outbox = self.link.outbox();
        let lapsed = self.current.load().lapsed(horizon, PRUNE_PER_WRITE);
        if !lapsed.is_empty() {
            self.current.rcu(|current| {
                let mut next = RevocationSet::clone(current);
                for entry in &lapsed {
                    next.remove(&entry.revoked);
                }
                next
            });
            if let Some(outbox) = outbox.as_mut() {
                for entry in lapsed {
                    // A full outbox keeps the member; a later write prunes it.
                    let _ = outbox.push(RevocationOp::Remove(entry));
                }
            }
        }
        let current = self.current.load();
        let held = current.token_exp(issuer, jti);
        let result = if let Some(Some(earlier)) = held.filter(|held| held.is_some_and(|held| held < exp)) {
            // Revoked again with a later `exp` (the issuer re-issued the `jti`, or its
            // first `exp` was short): the entry lives to the later one, here and in the
            // shared store (whose member names the `exp`).
            self.current.rcu(|current| {
                let mut next = RevocationSet::clone(current);
                let _ = next.add(entry.clone());
                next
            });
            match outbox.as_mut() {
                Some(outbox) => {
                    let before = Entry {
                        exp: Some(earlier),
                        ..entry.clone()
                    };
                    outbox
                        .push(RevocationOp::Remove(before))
                        .and_then(|()| outbox.push(RevocationOp::Add(entry)))
                        .map_err(|_| UntilRefused::Full)
                }
                None => Ok(()),
            }
        } else if held.is_some() {
            Ok(())
        } else if current.expiring_bytes(issuer) + Entry::charge(issuer, jti) > budget {
            Err(UntilRefused::Budget)
        } else if outbox.as_ref().is_some_and(|outbox| outbox.ops.len() >= MAX_PENDING) {
            Err(UntilRefused::Full)
        } else {
            let mut added = Ok(());
            self.current.rcu(|current| {
                let mut next = RevocationSet::clone(current);
                added = next.add(entry.clone());
                next
            });
            match (added, outbox.as_mut()) {
                (Ok(()), Some(outbox)) => outbox.push(RevocationOp::Add(entry)).map_err(|_| UntilRefused::Full),
                (Ok(()), None) => Ok(()),
                (Err(_), _) => Err(UntilRefused::Full),
            }
        };
        drop(current);
        if outbox.is_some() {
            self.link.wake.notify_one();
        }
        drop(outbox);
        self.changed();
        result
    }

    /// Lifts one revocation; whether it was present. On a synced handle the entry is also
    /// removed from the shared store; an entry of the replica-local layer stays in force
    /// (it is lifted by changing that layer's file).
    pub fn unrevoke(&self, entry: &Revoked) -> bool {
        let mut outbox = self.link.outbox();
        let local = outbox.as_ref().is_some_and(|outbox| outbox.local.contains(entry));
        let mut removed = false;
        let exp = match entry {
            Revoked::Jti { issuer, jti } => self.current.load().token_exp(issuer, jti).flatten(),
            _ => None,
        };
        if !local {
            self.current.rcu(|current| {
                let mut next = RevocationSet::clone(current);
                removed = next.remove(entry);
                next
            });
        }
        let entry = Entry {
            revoked: entry.clone(),
            exp,
        };
        if let Some(outbox) = outbox.as_mut()
            && outbox.push(RevocationOp::Remove(entry)).is_ok()
        {
            self.link.wake.notify_one();
        }
        drop(outbox);
        self.changed();
        removed
    }

    /// Whether the set in force revokes `agent`.
    pub(crate) fn names(&self, agent: &AgentId) -> bool {
        let current = self.current.load();
        !current.agents.is_empty() && current.agents.contains(agent)
    }

    /// Counts changes, so that the layer can tell when the set changed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Replaces the whole set. On a synced handle this replaces the shared set of every
    /// replica; the replica-local layer stays in force on top of it.
    pub fn replace(&self, set: RevocationSet) {
        let mut outbox = self.link.outbox();
        match outbox.as_mut() {
            Some(outbox) => {
                let set = Arc::new(set);
                let _ = outbox.push(RevocationOp::Replace(set.clone()));
                self.current.store(Arc::new(set.union(&outbox.local)));
                self.link.wake.notify_one();
            }
            None => self.current.store(Arc::new(set)),
        }
        drop(outbox);
        self.changed();
    }

    /// Replaces the whole set with a JSON document ([`RevocationSet::from_json`]); on
    /// error the current set stays in force. Returns the number of entries loaded.
    pub fn reload_json(&self, bytes: &[u8]) -> Result<usize, PolicyError> {
        let set = RevocationSet::from_json(bytes)?;
        let len = set.len();
        self.replace(set);
        Ok(len)
    }

    /// The set in force now.
    pub fn snapshot(&self) -> Arc<RevocationSet> {
        self.current.load_full()
    }

    /// Checks `request` against the set in force ([`RevocationSet::check`]); on a synced
    /// handle whose snapshot is older than the staleness bound, `503` with
    /// `Retry-After: 1` instead.
    pub fn check(&self, request: &VerifiedRequest) -> Result<(), Error> {
        self.check_at(request, 0)
    }

    /// [`Revocations::check`], where token entries whose `exp` is before `horizon` (now
    /// less the allowed skew) have lapsed.
    pub(crate) fn check_at(&self, request: &VerifiedRequest, horizon: u64) -> Result<(), Error> {
        self.link.check()?;
        self.current.load().check_at(request, horizon)
    }
}

/// The sync's side (feature `redis`).
impl Revocations {
    /// Attaches a sync; `false` when one is attached already. What the handle held
    /// before becomes its replica-local layer: it stays in force, unpublished.
    pub(crate) fn attach(&self, max_staleness: std::time::Duration) -> bool {
        let outbox = RevocationOutbox {
            local: RevocationSet::clone(&self.current.load()),
            ..RevocationOutbox::default()
        };
        self.link.attach(outbox, max_staleness)
    }

    /// The link (freshness gate and wake-up).
    pub(crate) fn link(&self) -> &Link<RevocationOutbox> {
        &self.link
    }

    /// The writes waiting for the shared store, oldest first, with the sequence number to
    /// acknowledge them by.
    pub(crate) fn pending(&self) -> (Vec<RevocationOp>, u64) {
        let outbox = self.link.outbox();
        let Some(outbox) = outbox.as_ref() else {
            return (Vec::new(), 0);
        };
        let ops = outbox.ops.iter().map(|(_, op)| op.clone()).collect();
        (ops, outbox.ops.back().map_or(0, |(seq, _)| *seq))
    }

    /// The shared store holds every write up to `seq`.
    pub(crate) fn acknowledge(&self, seq: u64) {
        if let Some(outbox) = self.link.outbox().as_mut() {
            while outbox.ops.front().is_some_and(|(s, _)| *s <= seq) {
                outbox.ops.pop_front();
            }
        }
    }

    /// The shared set as last read.
    pub(crate) fn shared(&self) -> RevocationSet {
        self.link
            .outbox()
            .as_ref()
            .map(|outbox| outbox.shared.clone())
            .unwrap_or_default()
    }

    /// Installs the shared set just read; the snapshot becomes it, with the pending writes
    /// applied and the local layer added.
    pub(crate) fn install_shared(&self, shared: RevocationSet) {
        let mut outbox = self.link.outbox();
        if let Some(outbox) = outbox.as_mut() {
            outbox.shared = shared;
            self.current.store(Arc::new(outbox.compose()));
        }
        drop(outbox);
        self.changed();
    }

    /// Replaces the replica-local layer.
    pub(crate) fn install_local(&self, local: RevocationSet) {
        let mut outbox = self.link.outbox();
        if let Some(outbox) = outbox.as_mut() {
            outbox.local = local;
            self.current.store(Arc::new(outbox.compose()));
        }
        drop(outbox);
        self.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: &str = "https://as.example";

    fn token(jti: &str, exp: Option<u64>) -> Entry {
        Entry {
            revoked: Revoked::Jti {
                issuer: AS.to_owned(),
                jti: jti.to_owned(),
            },
            exp,
        }
    }

    #[test]
    fn an_expiring_member_reads_back_as_the_same_entry_and_member() {
        for entry in [token("at-1", Some(1_788_727_813)), token("at-1", None)] {
            let member = entry.member().unwrap();
            let set = RevocationSet::from_json(member.as_bytes()).unwrap();
            let read: Vec<Entry> = set.entries().collect();
            assert_eq!(read, vec![entry.clone()]);
            assert_eq!(read[0].member().unwrap(), member, "the exact text SREM needs");
        }
        assert_eq!(
            token("at-1", Some(7)).member().unwrap(),
            r#"{"jtis":[{"exp":7,"iss":"https://as.example","jti":"at-1"}]}"#
        );
    }

    #[test]
    fn a_lasting_entry_beats_any_exp_and_a_later_exp_an_earlier_one() {
        let mut set = RevocationSet::new();
        set.add(token("a", Some(10))).unwrap();
        set.add(token("a", Some(20))).unwrap();
        set.add(token("a", Some(15))).unwrap();
        assert_eq!(set.token_exp(AS, "a"), Some(Some(20)));
        assert_eq!(set.len(), 1);
        set.add(token("a", None)).unwrap();
        assert_eq!(set.token_exp(AS, "a"), Some(None));
        set.add(token("a", Some(30))).unwrap();
        assert_eq!(set.token_exp(AS, "a"), Some(None));
        assert_eq!(set.expiring_bytes(AS), 0, "a lasting entry is not charged");
    }

    #[test]
    fn expiring_entries_are_charged_per_issuer_until_removed() {
        let mut set = RevocationSet::new();
        set.add(token("a", Some(10))).unwrap();
        set.add(token("b", Some(10))).unwrap();
        assert_eq!(set.expiring_bytes(AS), 2 * Entry::charge(AS, "a"));
        assert!(set.remove(&token("a", None).revoked));
        assert_eq!(set.expiring_bytes(AS), Entry::charge(AS, "b"));
        assert!(set.remove(&token("b", None).revoked));
        assert_eq!(set.expiring_bytes(AS), 0);
        assert!(set.expiring_bytes.is_empty(), "no per-issuer state left behind");
    }

    #[test]
    fn lapsed_entries_are_those_whose_exp_is_before_the_horizon() {
        let mut set = RevocationSet::new();
        set.add(token("old", Some(10))).unwrap();
        set.add(token("edge", Some(20))).unwrap();
        set.add(token("lasting", None)).unwrap();
        let lapsed = set.lapsed(20, PRUNE_PER_WRITE);
        assert_eq!(lapsed, vec![token("old", Some(10))]);
        assert_eq!(set.lapsed(1000, 1).len(), 1, "at most the limit");
    }

    #[test]
    fn revoke_until_prunes_lapsed_entries_and_refuses_past_the_budget() {
        let revocations = Revocations::new();
        revocations.revoke_until(AS, "old", 10, 0, 1 << 20).unwrap();
        revocations
            .revoke(Revoked::Jti {
                issuer: AS.to_owned(),
                jti: "kept".to_owned(),
            })
            .unwrap();
        revocations.revoke_until(AS, "new", 100, 50, 1 << 20).unwrap();
        let set = revocations.snapshot();
        assert_eq!(set.token_exp(AS, "old"), None, "lapsed before the horizon: pruned");
        assert_eq!(set.token_exp(AS, "kept"), Some(None));
        assert_eq!(set.token_exp(AS, "new"), Some(Some(100)));
        let budget = set.expiring_bytes(AS) + Entry::charge(AS, "x") - 1;
        assert_eq!(
            revocations.revoke_until(AS, "x", 100, 50, budget),
            Err(UntilRefused::Budget)
        );
        assert_eq!(
            revocations.revoke_until(AS, "new", 100, 50, 0),
            Ok(()),
            "present already"
        );
        assert_eq!(
            revocations.revoke_until(AS, "bad\u{0}", 100, 50, 1 << 20),
            Err(UntilRefused::Malformed)
        );
    }
}
