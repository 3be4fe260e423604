//! Per-agent governance: revocation, scope ceilings and audit events.
//!
//! # Design
//!
//! Each agent is its own client: revocable on its own, limited by its own scope ceiling,
//! attributable in logs. The resource enforces that from what the layer
//! verified ([`VerifiedRequest`]), never from what a client claims:
//!
//! * **Agent identity** ([`VerifiedRequest::agent`]): always the pair [`AgentId`]
//!   `(provider, agent identifier)`, built only from what a trusted issuer vouched for,
//!   and for requests that name no agent (draft -11 auth tokens, `hwk`) from the key's
//!   binding to the agent last seen using it ([`identity`] explains what a resource can
//!   and cannot know).
//! * **Revocation** ([`Revocations`]): by agent, key thumbprint, token `(iss, jti)` or
//!   person `(iss, sub)`. The layer checks it on *every* verified request, including
//!   requests whose token came from the verified-token cache, before the replay store is
//!   written and before any guard or handler runs: `401 revoked_jwt`, with
//!   `AAuth-Requirement: requirement=person-token` for a revoked auth token (as [AAuth
//!   draft -11, "Token Revocation"][draft-11] asks), never `requirement=auth-token`. A
//!   revoked agent is refused with every key it was seen using, whatever token the key
//!   presents.
//! * **Scope ceilings** ([`ScopeCeilings`]): the most an agent may use, whatever a token
//!   grants. The layer narrows every auth token to the ceilings of its key and of the
//!   agent bound to that key before any guard, rule or extractor sees it, and a step-up
//!   above a ceiling is `403 scope_above_ceiling` — a denial, not a challenge, since no
//!   consent raises a ceiling. No resource token is minted above a ceiling.
//! * **Consent** ([`consent`]): a person server's grant is honoured only from a person
//!   server trusted by name or as far as a [`GrantPolicy`] approves.
//! * **Hot reload.** Both are `Arc`-swapped snapshots behind a cloneable handle: readers are
//!   lock-free (one atomic load per request; an empty set costs a length check), writers
//!   replace the snapshot, and a failed reload keeps the previous one. Malformed entries
//!   are errors naming the member and index; they never shrink or clear a set.
//! * **Audit** ([`audit`]): one `tracing` event per decision, with documented field names.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub mod audit;
mod ceiling;
pub mod consent;
pub mod identity;
mod revocation;

pub use ceiling::{CeilingSet, SCOPE_ABOVE_CEILING, ScopeCeilings};
pub use consent::{GRANT_NOT_HONOURED, GrantPolicy};
pub use identity::{AgentBindings, AgentId, Binding, BindingRefused, MemoryAgentBindings, PersonId};
pub use revocation::{MAX_REVOCATIONS, RevocationSet, Revocations, Revoked};

use std::sync::Arc;

use serde_json::Value;

use crate::config::Shared;
use crate::error::Error;
use crate::token::{Scopes, TokenKind};
use crate::verifier::{VerifiedRequest, VerifiedToken};
use crate::wire;

/// A malformed revocation or ceiling entry or document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tower-aauth policy: {message}")]
pub struct PolicyError {
    message: String,
    reason: &'static str,
}

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
            reason: "malformed policy document",
        }
    }

    pub(crate) fn entry(member: &str, index: usize, reason: &'static str) -> Self {
        PolicyError {
            message: format!("{member}[{index}]: {reason}"),
            reason,
        }
    }

    /// The fixed reason, without the position.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl VerifiedRequest {
    /// The agent behind the request: named by an agent token, a `jwks_uri` signer or a
    /// demo-generation `agent` claim from an issuer trusted by name; otherwise the agent
    /// the signing key is bound to (see [`identity`]). `None` when no agent was ever seen
    /// using this key: identify it by [`VerifiedRequest::key_thumbprint`].
    pub fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref()
    }

    /// The person: `(iss, sub)` of a verified person or auth token.
    pub fn person(&self) -> Option<PersonId> {
        let claims = &self.token.as_ref()?.claims;
        match claims.kind {
            TokenKind::Agent => None,
            _ => Some(PersonId::new(claims.iss.as_str(), claims.sub.as_deref()?)),
        }
    }
}

/// Everything the policy decides after the signature verified and before the replay
/// store, guards or handlers: who the agent is, whether anything is revoked, and what the
/// presented grant is worth here.
pub(crate) fn admit(shared: &Shared, verified: &mut VerifiedRequest) -> Result<(), Error> {
    let now = shared.clock.now();
    identify(shared, verified, now)?;
    shared.revocations.check(verified)?;
    narrow_grant(shared, verified);
    Ok(())
}

/// Bindings end on a five-minute grid, so that the requests of one grant extend a
/// binding once, not on every request.
const BINDING_GRID: u64 = 300;

fn on_grid(until: u64) -> u64 {
    until.div_ceil(BINDING_GRID).saturating_mul(BINDING_GRID)
}

/// Sets [`VerifiedRequest::agent`] and keeps the key's binding as long as the credentials
/// it presents: an agent token binds its key for the token's life plus the longest grant
/// lifetime, and a grant presented by a bound key keeps the binding until the grant ends.
fn identify(shared: &Shared, verified: &mut VerifiedRequest, now: u64) -> Result<(), Error> {
    pin_newly_named(shared, now);
    let grace = shared.tokens.max_grant_lifetime;
    let named = match (&verified.token, &verified.signer) {
        (Some(token), _) => token
            .claims
            .agent_id
            .as_ref()
            .map(|agent| (agent.clone(), token.claims.exp.saturating_add(grace))),
        (None, Some(signer)) => Some((AgentId::server(signer.clone()), now.saturating_add(grace))),
        (None, None) => None,
    };
    let thumbprint = &*verified.key_thumbprint;
    let (agent, until) = match named {
        Some(named) => named,
        None => {
            let Some(bound) = shared.bindings.binding(thumbprint, now) else {
                return Ok(());
            };
            let presented_until = verified
                .token
                .as_ref()
                .map_or(0, |t| t.claims.exp.saturating_add(grace));
            if presented_until > bound.until || (!bound.pinned && names_in_policy(shared, &bound.agent)) {
                bind(shared, verified, &bound.agent, presented_until, now)?;
            }
            verified.agent = Some(bound.agent);
            return Ok(());
        }
    };
    let current = shared.bindings.binding(thumbprint, now);
    let settled = current.is_some_and(|bound| {
        bound.agent == agent && bound.until >= on_grid(until) && (bound.pinned || !names_in_policy(shared, &agent))
    });
    if !settled {
        bind(shared, verified, &agent, until, now)?;
    }
    verified.agent = Some(agent);
    Ok(())
}

/// Binds the request's key to `agent` until at least `until`.
fn bind(shared: &Shared, verified: &VerifiedRequest, agent: &AgentId, until: u64, now: u64) -> Result<(), Error> {
    let pinned = names_in_policy(shared, agent);
    match shared
        .bindings
        .bind(&verified.key_thumbprint, agent, on_grid(until), now, pinned)
    {
        Ok(()) => Ok(()),
        Err(refused) => {
            tracing::debug!(target: "tower_aauth", ?refused, "a key binding was refused");
            let detail = match refused {
                BindingRefused::TooManyKeys => "the agent holds too many live keys",
                _ => "the signing key belongs to another agent",
            };
            Err(if verified.token.is_some() {
                Error::invalid_jwt(detail)
            } else {
                Error::invalid_key(detail)
            })
        }
    }
}

/// Before a resource token is minted for a request attributed to an agent: the grant it
/// will be exchanged for may live the longest grant lifetime from now, and must still be
/// attributed to the agent then.
pub(crate) fn bind_for_grant(shared: &Shared, verified: &VerifiedRequest) {
    if let Some(agent) = &verified.agent {
        let now = shared.clock.now();
        let until = now
            .saturating_add(shared.authz.lifetime)
            .saturating_add(shared.tokens.max_grant_lifetime);
        // A refusal here means the key is another agent's or the agent is at its key
        // bound; the request was admitted under its current binding either way.
        let _ = bind(shared, verified, agent, until, now);
    }
}

/// Whether a ceiling or a revocation names `agent`: its bindings are then pinned.
fn names_in_policy(shared: &Shared, agent: &AgentId) -> bool {
    shared.ceilings.names(agent) || shared.revocations.names(agent)
}

/// When the ceilings or revocations changed since the last request, pins the bindings of
/// every agent they now name (once per change).
fn pin_newly_named(shared: &Shared, now: u64) {
    let seen = shared.ceilings.generation() ^ shared.revocations.generation().rotate_left(32);
    // A load first: the steady state reads a shared line without writing it.
    let pinned_for = &shared.pinned_for;
    if pinned_for.load(std::sync::atomic::Ordering::Acquire) != seen
        && pinned_for.swap(seen, std::sync::atomic::Ordering::AcqRel) != seen
    {
        shared.bindings.pin_named(&|agent| names_in_policy(shared, agent), now);
    }
}

/// How far the resource honours a grant's issuer.
enum Honour {
    All,
    Scopes(Scopes, bool),
}

/// The grant the guards see: the auth token's `scope` narrowed to what its issuer is
/// honoured for and to the ceilings, and its `authorization_details` to the entries whose
/// type the ceilings permit (a ceiling lists detail types as it lists scopes), all of them
/// dropped when the issuer's details are not honoured. Allocates only when something is
/// taken away.
fn narrow_grant(shared: &Shared, verified: &mut VerifiedRequest) {
    let Some(token) = &verified.token else {
        return;
    };
    let claims = &token.claims;
    if claims.kind != TokenKind::Auth {
        return;
    }
    let honour = honour(shared, claims);
    let ceilings = shared.ceilings.snapshot();
    if ceilings.is_empty() && matches!(honour, Honour::All) {
        return;
    }
    let (allowed, details_honoured) = match &honour {
        Honour::All => (None, true),
        Honour::Scopes(scopes, details) => (Some(scopes), *details),
    };
    let effective = Scopes::from_iter_unchecked(
        claims
            .scope
            .iter()
            .filter(|s| allowed.is_none_or(|a| a.contains(s)) && ceilings.permits(verified, s)),
    );
    let details = claims.raw.get(wire::claim::AUTHORIZATION_DETAILS);
    let kept_details = match details {
        None => None,
        Some(_) if !details_honoured => Some(None),
        Some(details) if detail_types(details).all(|t| ceilings.permits(verified, t)) => None,
        Some(Value::Array(entries)) => {
            let kept: Vec<Value> = entries
                .iter()
                .filter(|entry| detail_type(entry).is_some_and(|t| ceilings.permits(verified, t)))
                .cloned()
                .collect();
            Some((!kept.is_empty()).then_some(Value::Array(kept)))
        }
        Some(_) => Some(None),
    };
    if effective.len() == claims.scope.len() && kept_details.is_none() {
        return;
    }
    let mut narrowed = claims.clone();
    let mut raw = (*claims.raw).clone();
    if effective.is_empty() {
        raw.remove("scope");
    } else {
        raw.insert("scope".into(), effective.to_string().into());
    }
    match kept_details {
        Some(Some(kept)) => {
            raw.insert(wire::claim::AUTHORIZATION_DETAILS.into(), kept);
        }
        Some(None) => {
            raw.remove(wire::claim::AUTHORIZATION_DETAILS);
        }
        None => {}
    }
    narrowed.scope = effective;
    narrowed.raw = Arc::new(raw);
    verified.token = Some(Arc::new(VerifiedToken {
        claims: narrowed,
        hash: token.hash,
    }));
}

/// The `type` of one `authorization_details` entry.
fn detail_type(entry: &Value) -> Option<&str> {
    entry.get("type").and_then(Value::as_str)
}

/// The types of an `authorization_details` array (an entry without one counts as the
/// empty type, which no ceiling lists).
pub(crate) fn detail_types(details: &Value) -> impl Iterator<Item = &str> {
    details
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| detail_type(entry).unwrap_or_default())
}

/// Whose grant this is and how far it is honoured (see [`consent`]).
fn honour(shared: &Shared, claims: &crate::token::TokenClaims) -> Honour {
    if claims.dwk != wire::dwk::PERSON || shared.consent.trusts(&claims.iss) {
        return Honour::All;
    }
    let Some(policy) = &shared.consent.policy else {
        return Honour::Scopes(Scopes::default(), false);
    };
    let Some(sub) = claims.sub.as_deref() else {
        return Honour::Scopes(Scopes::default(), false);
    };
    let person = PersonId::new(claims.iss.as_str(), sub);
    let details = claims
        .raw
        .get(wire::claim::AUTHORIZATION_DETAILS)
        .is_some_and(|details| policy.honours_details(&person, details));
    Honour::Scopes(policy.honoured_scopes(&person, &claims.scope), details)
}

/// The consent configuration, frozen at build time.
#[derive(Clone, Default)]
pub(crate) struct Consent {
    /// Person servers whose grants are honoured as issued.
    pub(crate) trusted: Vec<String>,
    /// Every person server's grants are honoured as issued (an explicit choice).
    pub(crate) any: bool,
    pub(crate) policy: Option<Arc<dyn GrantPolicy>>,
}

impl Consent {
    pub(crate) fn trusts(&self, person_server: &str) -> bool {
        self.any || self.trusted.iter().any(|ps| ps == person_server)
    }

    /// `Ok` when a grant for `scopes` (and `details`) from `person` would be honoured;
    /// else the `403` that replaces a step-up towards its person server.
    pub(crate) fn check_step_up(
        &self,
        person: Option<PersonId>,
        scopes: &Scopes,
        details: Option<&serde_json::Value>,
    ) -> Result<(), Error> {
        let refused = Error::Forbidden {
            code: GRANT_NOT_HONOURED,
            detail: "this resource does not honour that person server's grants for this request",
        };
        let Some(person) = person else {
            return Err(refused);
        };
        if self.trusts(person.issuer()) {
            return Ok(());
        }
        let Some(policy) = &self.policy else {
            return Err(refused);
        };
        let honoured = policy.honoured_scopes(&person, scopes);
        if !honoured.contains_all(scopes) || details.is_some_and(|d| !policy.honours_details(&person, d)) {
            return Err(refused);
        }
        Ok(())
    }
}
