//! Per-agent governance: revocation, scope ceilings and audit events.
//!
//! # Design
//!
//! The seeds ask for each agent to be its own client: revocable on its own, limited by its
//! own scope ceiling, attributable in logs. The resource enforces that from what the layer
//! verified ([`VerifiedRequest`]), never from what a client claims:
//!
//! * **Agent identity** ([`VerifiedRequest::agent_id`]): the `sub` of an agent token, the
//!   `id` of a `jwks_uri` signer, or the `agent` claim of a demo-generation auth token. An
//!   AAUTH-11 auth token names no agent, and an `hwk` key is anonymous: those agents are
//!   known by their key thumbprint.
//! * **Revocation** ([`Revocations`]): by agent identifier, key thumbprint, token
//!   `(iss, jti)` or subject. The layer checks it on *every* verified request, including
//!   requests whose token came from the verified-token cache, before the replay store is
//!   written and before any guard or handler runs: `401 revoked_jwt`, with
//!   `AAuth-Requirement: requirement=person-token` for a revoked auth token (digest §7),
//!   never `requirement=auth-token`.
//! * **Scope ceilings** ([`ScopeCeilings`]): the most an agent may use, whatever a token
//!   grants. A route needing a scope above the ceiling is `403 scope_above_ceiling` — a
//!   denial, not a challenge, since no consent raises a ceiling.
//! * **Hot reload.** Both are `Arc`-swapped snapshots behind a cloneable handle: readers are
//!   lock-free (one atomic load per request; an empty set costs a length check), writers
//!   replace the snapshot, and a failed reload keeps the previous one. Malformed entries
//!   are errors naming the member and index; they never shrink or clear a set.
//! * **Audit** ([`audit`]): one `tracing` event per decision, with documented field names.

pub mod audit;
mod ceiling;
mod revocation;

pub use ceiling::{CeilingSet, SCOPE_ABOVE_CEILING, ScopeCeilings};
pub use revocation::{MAX_REVOCATIONS, RevocationSet, Revocations, Revoked};

use crate::token::TokenKind;
use crate::verifier::VerifiedRequest;

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
    /// The verified agent identifier, when the request names one: the `sub` of an agent
    /// token, the signer of a `jwks_uri` signature, or the `agent` claim of a
    /// demo-generation auth token. `None` for `hwk` and AAUTH-11 auth and person tokens
    /// (identify those agents by [`VerifiedRequest::key_thumbprint`]).
    pub fn agent_id(&self) -> Option<&str> {
        match &self.token {
            Some(token) => match token.claims.kind {
                TokenKind::Agent => token.claims.sub.as_deref(),
                _ => token.claims.agent.as_deref(),
            },
            None => self.signer.as_deref(),
        }
    }

    /// The person: the `sub` of a verified person or auth token.
    pub fn subject(&self) -> Option<&str> {
        let claims = &self.token.as_ref()?.claims;
        match claims.kind {
            TokenKind::Agent => None,
            _ => claims.sub.as_deref(),
        }
    }
}
