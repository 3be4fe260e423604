//! Per-agent governance: revocation, scope ceilings and audit events.
//!
//! # Design
//!
//! Each agent is its own client: revocable on its own, limited by its own scope ceiling,
//! attributable in logs. The resource enforces that from what the layer
//! verified ([`VerifiedRequest`](crate::VerifiedRequest)), never from what a client claims:
//!
//! * **Agent identity** ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent)): always the pair [`AgentId`]
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
//! * **Across replicas** (feature `redis`): `RedisPolicySync` publishes every change made
//!   through a handle to Redis (revocations as a set, so concurrent writes from two
//!   replicas both survive; ceilings as one document) and keeps every replica's snapshot
//!   current through pub/sub and a 250 ms poll of a version key. Requests still read only
//!   the local snapshot; a replica that cannot confirm its snapshot for `max_staleness`
//!   answers verified requests `503` with `Retry-After`. Its documentation has the Redis
//!   schema, what an operator's tool writes, and the answer to each failure.
//! * **Audit** ([`AuditField`]): one `tracing` event per decision under [`AUDIT_TARGET`], with
//!   documented field names.
//!
//! # Who an agent is
//!
//! An identity is always a pair: the server that vouched for it and the identifier it
//! vouched for. [`AgentId`] is `(provider, agent identifier)`, [`PersonId`] is
//! `(issuer, sub)`. The layer builds an [`AgentId`] only from something a signature
//! covered and an issuer we accept for that claim:
//!
//! * an agent token: `(iss, sub)`, refused unless the domain of `sub` (and of
//!   `parent_agent`) is the host of `iss` — a provider names only its own agents;
//! * a `jwks_uri` signer: `(id, id)`, the server whose published key signed;
//! * the `agent` claim of a demo-generation auth token, only from an issuer trusted by
//!   name (a configured access server or a listed person server).
//!
//! A draft -11 auth token names no agent. The resource still knows the agent behind it
//! when it has seen that agent use the same key: every agent identity above is recorded
//! as *key thumbprint → agent* in an [`AgentBindings`] store, and a request that names no
//! agent is attributed to the agent its key is bound to. A binding lasts as long as the
//! credentials the key presents: an agent token's life plus the longest grant lifetime
//! accepted; a grant presented by a bound key extends it to the grant's end plus that
//! lifetime; minting a resource token for a bound key extends it to cover the grant it
//! will be exchanged for. What a resource can and cannot know:
//!
//! * **Known**: the agent behind an auth token whose key the resource saw with an agent
//!   token or as a `jwks_uri` signer, and every grant that key goes on presenting.
//! * **Not known**: the agent behind a key this resource (or, with a shared store, this
//!   fleet) never saw identified. Such a request gets the *default* ceiling. A resource
//!   that caps agents should therefore set a default ceiling and raise it per agent,
//!   rather than lower it per agent: an agent that never shows its identity then gets the
//!   least, not the most.
//! * **Refused**: a key already bound to one agent presented with another agent's
//!   identity (`401 invalid_jwt`, or `invalid_key` for a `jwks_uri` signer). A key is one
//!   agent's; a second identity for it is an agent trying to leave its own ceiling.
//!
//! Bindings of agents named in the ceilings or the revocation set are *pinned*: a flood
//! of throwaway agents can evict other bindings from the byte-bounded store, never those.
//! An agent named later (a hot reload) has its existing bindings pinned on the next
//! request. A pinned agent holds at most
//! [`MemoryAgentBindings::MAX_KEYS_PER_PINNED_AGENT`] live keys; its next key is refused
//! (`the agent holds too many live keys`), never bound where it could be evicted.
//!
//! Demo-generation agents are their provider: an agent token whose `sub` is a delegate id
//! names the agent `(iss, iss)`, the same agent its auth tokens' `agent` URL names.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod account;
pub(crate) mod admit;
pub(crate) mod audit;
pub(crate) mod ceiling;
pub(crate) mod consent;
pub(crate) mod identity;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod revocation;
pub(crate) mod shared;
mod sync;

pub use crate::error::PolicyError;
pub use account::AccountDecision;
pub use audit::{AUDIT_TARGET, AuditField};
pub use ceiling::{CeilingSet, ScopeCeilings};
pub use consent::GrantPolicy;
pub use identity::{AgentBindings, AgentId, Binding, BindingRefused, MemoryAgentBindings, PersonId};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisPolicySync, RedisPolicySyncBuilder};
pub use revocation::{RevocationSet, Revocations, Revoked};
pub use sync::{
    BindingWrite, PolicyNotice, PolicyState, PolicySync, PolicySyncBuilder, PolicyWrite, SharedPolicyStore,
    StoreFailure,
};
