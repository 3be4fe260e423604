//! The revocation set: agents, keys, tokens and persons refused on every request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::identity::{AgentId, PersonId};
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

fn value(text: &str, _what: &'static str) -> Result<(), &'static str> {
    if text.is_empty() || text.len() > MAX_VALUE_BYTES || text.chars().any(char::is_control) {
        return Err("an agent identifier, jti or subject must be 1 to 1024 bytes with no control characters");
    }
    Ok(())
}

/// An immutable set of revocations (one snapshot of a [`Revocations`] handle).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    agents: HashSet<AgentId>,
    keys: HashSet<String>,
    /// `jti` → the issuers that token id is revoked for (lookups without allocating).
    jtis: HashMap<String, Vec<String>>,
    persons: HashSet<PersonId>,
    count: usize,
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
}

impl RevocationSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `entry` after checking its shape.
    pub fn insert(&mut self, entry: Revoked) -> Result<(), PolicyError> {
        entry
            .validate()
            .map_err(|reason| PolicyError::entry("revocation", 0, reason))?;
        if self.count >= MAX_REVOCATIONS {
            return Err(PolicyError::new("too many revocations in one set"));
        }
        let fresh = match entry {
            Revoked::Agent(id) => self.agents.insert(id),
            Revoked::KeyThumbprint(t) => self.keys.insert(t),
            Revoked::Jti { issuer, jti } => {
                let issuers = self.jtis.entry(jti).or_default();
                let fresh = !issuers.contains(&issuer);
                if fresh {
                    issuers.push(issuer);
                }
                fresh
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
                let before = issuers.len();
                issuers.retain(|i| i != issuer);
                let removed = issuers.len() != before;
                if issuers.is_empty() {
                    self.jtis.remove(jti);
                }
                removed
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
    ///  "jtis": [{"iss": "https://as.example", "jti": "at-42"}],
    ///  "persons": [{"iss": "https://ps.example", "sub": "8f14e45fceea167a5a36dedd4bea2543"}]}
    /// ```
    ///
    /// An agent is `aauth:local@domain` (its provider is `https://domain`) or a server
    /// identifier. Every member is optional; unknown members, duplicate members, wrong types and
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
        let mut add = |member: &'static str, index: usize, entry: Revoked| -> Result<(), PolicyError> {
            entry
                .validate()
                .map_err(|reason| PolicyError::entry(member, index, reason))?;
            set.insert(entry)
        };
        for (i, id) in document.agents.into_iter().enumerate() {
            let agent = id.parse().map_err(|_| {
                PolicyError::entry(
                    "agents",
                    i,
                    "an agent is aauth:local@domain or a server identifier https://host",
                )
            })?;
            add("agents", i, Revoked::Agent(agent))?;
        }
        for (i, t) in document.key_thumbprints.into_iter().enumerate() {
            add("key_thumbprints", i, Revoked::KeyThumbprint(t))?;
        }
        for (i, JtiEntry { iss, jti }) in document.jtis.into_iter().enumerate() {
            add("jtis", i, Revoked::Jti { issuer: iss, jti })?;
        }
        for (i, PersonEntry { iss, sub }) in document.persons.into_iter().enumerate() {
            add("persons", i, Revoked::Person(PersonId::new(iss, sub)))?;
        }
        Ok(set)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
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
            Revoked::Jti { issuer, jti } => self.jtis.get(jti).is_some_and(|issuers| issuers.contains(issuer)),
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
                .is_some_and(|issuers| issuers.contains(&claims.iss));
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

/// A hot-reloadable revocation set: clones share one set; every change is visible to the
/// next request on every clone, without a restart.
///
/// Reads are lock-free (an atomically swapped `Arc` snapshot); writers replace the whole
/// snapshot. A failed reload leaves the current set in force: nothing is un-revoked by a
/// bad file. A set holds at most 1 000 000 entries; a change that would exceed it is an
/// error and changes nothing.
#[derive(Clone, Default)]
pub struct Revocations {
    current: Arc<ArcSwap<RevocationSet>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
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

    /// Revokes one more thing.
    pub fn revoke(&self, entry: Revoked) -> Result<(), PolicyError> {
        entry
            .validate()
            .map_err(|reason| PolicyError::entry("revocation", 0, reason))?;
        let mut result = Ok(());
        self.current.rcu(|current| {
            let mut next = RevocationSet::clone(current);
            result = next.insert(entry.clone());
            next
        });
        self.changed();
        result
    }

    /// Lifts one revocation; whether it was present.
    pub fn unrevoke(&self, entry: &Revoked) -> bool {
        let mut removed = false;
        self.current.rcu(|current| {
            let mut next = RevocationSet::clone(current);
            removed = next.remove(entry);
            next
        });
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

    /// Replaces the whole set.
    pub fn replace(&self, set: RevocationSet) {
        self.current.store(Arc::new(set));
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

    /// Checks `request` against the set in force ([`RevocationSet::check`]).
    pub fn check(&self, request: &VerifiedRequest) -> Result<(), Error> {
        self.current.load().check(request)
    }
}
