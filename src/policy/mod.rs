//! Per-agent governance: revocation, scope ceilings and audit events.
//!
//! # Design
//!
//! The seeds ask for each agent to be its own client: revocable on its own, limited by its
//! own scope ceiling, attributable in logs. The resource enforces that from what the layer
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
//!   `AAuth-Requirement: requirement=person-token` for a revoked auth token (digest §7),
//!   never `requirement=auth-token`. A revoked agent is refused with every key it was
//!   seen using, whatever token the key presents.
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

pub mod audit;
mod ceiling;
pub mod consent;
pub mod identity;
mod revocation;

pub use ceiling::{CeilingSet, SCOPE_ABOVE_CEILING, ScopeCeilings};
pub use consent::{GRANT_NOT_HONOURED, GrantPolicy};
pub use identity::{AgentBindings, AgentId, BindingConflict, MemoryAgentBindings, PersonId};
pub use revocation::{MAX_REVOCATIONS, RevocationSet, Revocations, Revoked};

use std::sync::Arc;

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

/// Sets [`VerifiedRequest::agent`] and records the key's binding.
fn identify(shared: &Shared, verified: &mut VerifiedRequest, now: u64) -> Result<(), Error> {
    let named = match (&verified.token, &verified.signer) {
        (Some(token), _) => token.claims.agent_id.as_ref().map(|agent| {
            let until = token.claims.exp.saturating_add(shared.tokens.max_grant_lifetime);
            (agent.clone(), until, token.claims.kind == TokenKind::Agent)
        }),
        (None, Some(signer)) => Some((
            AgentId::server(signer.clone()),
            now.saturating_add(shared.tokens.max_grant_lifetime),
            false,
        )),
        (None, None) => None,
    };
    let thumbprint = &*verified.key_thumbprint;
    match named {
        Some((agent, until, by_token)) => {
            let pinned = names_in_policy(shared, &agent);
            if let Err(conflict) = shared.bindings.bind(thumbprint, &agent, until, now, pinned) {
                tracing::debug!(
                    target: "tower_aauth",
                    bound_to = %conflict.bound_to,
                    "a key bound to one agent was presented as another"
                );
                return Err(if by_token || verified.token.is_some() {
                    Error::invalid_jwt("the signing key belongs to another agent")
                } else {
                    Error::invalid_key("the signing key belongs to another agent")
                });
            }
            verified.agent = Some(agent);
        }
        None => verified.agent = shared.bindings.agent_for(thumbprint, now),
    }
    Ok(())
}

/// Whether a ceiling or a revocation names `agent`: its bindings are then pinned.
fn names_in_policy(shared: &Shared, agent: &AgentId) -> bool {
    shared.ceilings.snapshot().names(agent) || shared.revocations.snapshot().contains(&Revoked::Agent(agent.clone()))
}

/// How far the resource honours a grant's issuer.
enum Honour {
    All,
    Scopes(Scopes, bool),
}

/// The grant the guards see: the auth token's `scope` narrowed to what its issuer is
/// honoured for and to the ceilings, `authorization_details` dropped when not honoured.
/// Allocates only when something is taken away.
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
    let (allowed, details_kept) = match &honour {
        Honour::All => (None, true),
        Honour::Scopes(scopes, details) => (Some(scopes), *details),
    };
    let effective = Scopes::from_iter_unchecked(
        claims
            .scope
            .iter()
            .filter(|s| allowed.is_none_or(|a| a.contains(s)) && ceilings.permits(verified, s)),
    );
    let has_details = claims.raw.contains_key(wire::claim::AUTHORIZATION_DETAILS);
    if effective.len() == claims.scope.len() && (details_kept || !has_details) {
        return;
    }
    let mut narrowed = claims.clone();
    let mut raw = (*claims.raw).clone();
    if effective.is_empty() {
        raw.remove("scope");
    } else {
        raw.insert("scope".into(), effective.to_string().into());
    }
    if !details_kept {
        raw.remove(wire::claim::AUTHORIZATION_DETAILS);
    }
    narrowed.scope = effective;
    narrowed.raw = Arc::new(raw);
    verified.token = Some(Arc::new(VerifiedToken {
        claims: narrowed,
        hash: token.hash,
    }));
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
