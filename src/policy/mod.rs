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
//!   binding to the agent last seen using it (the section below says what a resource can
//!   and cannot know, below).
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
//! * **Consent** ([`GrantPolicy`]): a person server's grant is honoured only from a person
//!   server trusted by name or as far as a [`GrantPolicy`] approves.
//! * **Hot reload.** Both are `Arc`-swapped snapshots behind a cloneable handle: readers are
//!   lock-free (one atomic load per request; an empty set costs a length check), writers
//!   replace the snapshot, and a failed reload keeps the previous one. Malformed entries
//!   are errors naming the member and index; they never shrink or clear a set.
//! * **Audit** ([`AuditField`]): one `tracing` event per decision under [`AUDIT_TARGET`], with
//!   documented field names.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod admit;
pub(crate) mod audit;
pub(crate) mod ceiling;
pub(crate) mod consent;
pub(crate) mod identity;
pub(crate) mod revocation;

pub use crate::error::PolicyError;
pub use audit::{AUDIT_TARGET, AuditField};
pub use ceiling::{CeilingSet, ScopeCeilings};
pub use consent::GrantPolicy;
pub use identity::{AgentBindings, AgentId, Binding, BindingRefused, MemoryAgentBindings, PersonId};
pub use revocation::{RevocationSet, Revocations, Revoked};
