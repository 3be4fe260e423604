//! Route guards: the layer verifies, guards decide.
//!
//! The table follows the requirement responses of [AAuth draft -11, "Resource
//! Access"][draft-11]; where the draft leaves a choice, the table shows this crate's.
//!
//! A guard reads the [`VerifiedRequest`] the [`AAuthLayer`](crate::AAuthLayer) inserted,
//! evaluates a [`Requirement`] to a [`Decision`], and either calls the route or answers:
//!
//! | requirement → / request ↓ | [`Requirement::Agent`] | [`Requirement::Person`] | [`Requirement::Scopes`] |
//! |---|---|---|---|
//! | unsigned | 401 `agent-token` | 401 `person-token` | 401 `person-token` (four-party: `agent-token`) |
//! | `hwk` | 401 `unsupported_scheme` + `Accept-Signature-Scheme: jwt` | same | same (four-party: `auth-token` challenge) |
//! | `jwks_uri` signer | serve | 401 `unsupported_scheme` | as `hwk` |
//! | agent token | serve | 401 `person-token` (403 if it names no `ps`) | same (four-party: `auth-token` challenge) |
//! | person token | 401 `agent-token` | serve | 401 `auth-token; resource-token=…` |
//! | auth token, scopes ⊇ S | 401 `agent-token` | serve | serve |
//! | auth token, scopes ⊉ S | 401 `agent-token` | serve | 401 `auth-token` step-up (or 403 `insufficient_scope`) |
//! | [`Decision::Refuse`] by a rule | 403, no `Signature-Error` | same | same |
//!
//! "Four-party" means an access server is configured
//! ([`AAuthBuilder::auth_server`](crate::AAuthBuilder::auth_server)): resource tokens then
//! name it as `aud`, and any verified signature can get one (the flow of the AAuth demo
//! that the test kit's `testing::demo` reproduces).
//! Requests the layer refused never reach a guard (bad signatures, tokens failing their
//! claim rules, revoked tokens).
//!
//! [`Requirement::Scopes`] has **all-of** semantics: every listed scope must be granted by
//! the one auth token the request presents
//! ([RFC 6749 §3.3](https://www.rfc-editor.org/rfc/rfc6749#section-3.3), exact
//! case-sensitive match).
//! Stacking guards also means all-of. The step-up resource token asks for the route's
//! whole scope set, not only the missing part, because the agent will present a single
//! auth token next time.
//!
//! # Extending
//!
//! New requirement kinds are additive: implement [`Rule`] (or pass a closure to
//! [`Requirement::rule`]) and combine with [`Requirement::All`]. A rule sees the verified
//! request and the request head ([`Context`]) and returns a [`Decision`]; asking for
//! scopes ([`Decision::NeedAuth`]) reuses the minting and audience rules here.
//!
//! If the layer is missing (no [`VerifiedRequest`] and no trace of the layer), the guard
//! answers `500` and logs why: a guard never passes a request it could not judge.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod judge;
pub(crate) mod middleware;
pub(crate) mod requirement;

pub use crate::deferred::{DeferredLayer, DeferredPolicy};
pub use crate::rar::require::{DetailPolicy, RequireDetailLayer};
pub use crate::replay::single_use::{SingleUseLayer, SingleUsePolicy};
pub use judge::RequirementPolicy;
pub use middleware::{Guard, GuardFuture, GuardLayer};
pub use requirement::{Context, Decision, Requirement, Rule};
