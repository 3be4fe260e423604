//! A test kit (feature `test-util`) for resource-server authors: an agent that signs
//! requests and follows the AAuth flow, token issuers, and a small access server with
//! deferred consent, so that a resource's routes can be tested end to end in a few lines.
//!
//! ```
//! use tower_aauth::testing::{TestAgent, KeySource};
//!
//! let agent = TestAgent::from_seed([1; 32]);
//! let mut request = http::Request::get("https://resource.example/data").body(()).unwrap();
//! agent.sign(&mut request, &KeySource::Hwk, 1_730_217_600);
//! assert!(request.headers().contains_key("signature"));
//! ```
//!
//! # The parts
//!
//! * [`TestAgent`] signs requests with `hwk`, `jwks_uri` or `jwt`, and serves its own
//!   identity server ([`TestAgent::identity_router`]) for `jwks_uri`.
//! * [`AgentClient`] follows the whole flow over real HTTP: a signed request, a `401` with
//!   `requirement=auth-token`, the resource token posted to the auth server its `aud`
//!   names, `202` and polling of the pending URL (honouring `Retry-After` and
//!   `slow_down`), then the retry with the auth token under `Signature-Key` scheme `jwt`.
//! * [`TestAuthServer`] is an access server (axum router): it verifies the agent's
//!   signatures with this crate's own layer, verifies resource tokens with the resource's
//!   published keys, and issues `aa-auth+jwt` bound to the agent key, either at once or
//!   after a person's consent (programmatic [`TestAuthServer::approve`] /
//!   [`TestAuthServer::deny`], or the HTML consent page at the interaction URL).
//! * [`TestIssuer`] mints agent, person and auth tokens directly, for unit tests that need
//!   no server at all.
//! * [`demo`] wires all of them to a resource behind this crate's layer: the
//!   `cargo run --example demo` scenario, which the crate's own flow tests also run.
//!
//! Everything here trusts `http://127.0.0.1:PORT` identifiers, because it exists for tests
//! on loopback; none of it belongs in production.

mod agent;
mod auth_server;
pub mod demo;
mod flow;
mod issuer;

pub use crate::clock::ManualClock;
pub use agent::{KeySource, SignOptions, TestAgent};
pub use auth_server::{Consent, PendingState, TestAuthServer, TestAuthServerBuilder};
pub use flow::{AgentClient, Exchange, FlowError, FlowEvent, FlowOutcome, FlowStep};
pub use issuer::TestIssuer;

/// Bytes the process-wide cache of parsed public keys holds (`hwk` keys and token
/// confirmation keys enter it before any signature made with them verifies), counted
/// entry by entry. It never exceeds a fixed budget, whatever requests arrive.
pub fn parsed_key_cache_bytes() -> u64 {
    crate::jose::parsed_key_cache_bytes()
}
