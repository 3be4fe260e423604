//! A test kit (feature `test-util`) for resource-server authors: an agent that signs
//! requests and follows the AAuth flow, token issuers, and a small access server with
//! deferred consent, so that a resource's routes can be tested end to end in a few lines.
//!
//! # A whole test
//!
//! [`TestHarness::spawn`] serves your app, an auth server it trusts and an agent's identity
//! server on loopback, and hands your closure the [`AAuthBuilder`](crate::AAuthBuilder)
//! already set for their identifiers. The agent then follows the real flow over HTTP:
//! a signed request, the `401` challenge with a resource token, the auth server, the
//! auth token, the retry.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use http::{Method, StatusCode};
//! use serde_json::{Value, json};
//! use tower_aauth::testing::{KeySource, TestHarness};
//! use tower_aauth::{AAuth, AuthGrant};
//!
//! /// The app under test, built as production builds it.
//! fn app(aauth: &AAuth) -> Router {
//!     async fn read(grant: AuthGrant) -> Json<Value> {
//!         Json(json!({ "person": grant.subject, "scope": grant.scopes.to_string() }))
//!     }
//!     Router::new()
//!         .route(
//!             "/notes",
//!             get(read)
//!                 .route_layer(aauth.require_scopes(["notes.read"]))
//!                 .merge(axum::routing::post(|| async { "saved" }).route_layer(aauth.require_scopes(["notes.write"]))),
//!         )
//!         .route("/health", get(|| async { "ok" }))
//!         .merge(aauth.well_known_router())
//!         .layer(aauth.layer())
//! }
//!
//! // In tests/notes.rs, with #[tokio::test] on it (examples/first_hour.rs is such a file).
//! async fn notes_need_their_scopes() -> Result<(), Box<dyn std::error::Error>> {
//!     let harness = TestHarness::spawn(|builder| {
//!         let aauth = builder
//!             .scope("notes.read", "Read your notes")
//!             .scope("notes.write", "Change your notes")
//!             .build()?;
//!         Ok(app(&aauth))
//!     })
//!     .await?;
//!     let agent = harness.agent(); // signs as its own identity (jwks_uri)
//!     let notes = harness.url("/notes");
//!
//!     // One signed request, nothing followed: the challenge.
//!     let challenge = agent.get(&notes).await?;
//!     assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
//!     assert!(challenge.requirement().unwrap().starts_with("requirement=auth-token; resource-token="));
//!
//!     // The whole flow: challenge → auth server → auth token → 200.
//!     let outcome = agent.fetch(Method::GET, &notes, None).await?;
//!     assert_eq!(outcome.response.status, StatusCode::OK);
//!     assert_eq!(outcome.response.json().unwrap()["scope"], "notes.read");
//!
//!     // A scope refusal: that auth token grants notes.read only, so writing is answered
//!     // with a step-up challenge asking for notes.write, and the handler never runs.
//!     let with_token = agent.clone().with_source(KeySource::Jwt(outcome.auth_token.unwrap()));
//!     let refused = with_token.request(Method::POST, &notes, None).await?;
//!     assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
//!     assert!(refused.requirement().unwrap().starts_with("requirement=auth-token; resource-token="));
//!     assert_ne!(refused.body, "saved");
//!
//!     // No signature at all: sign first.
//!     let unsigned = agent.send_unsigned(Method::GET, &notes).await?;
//!     assert_eq!(unsigned.requirement(), Some("requirement=agent-token"));
//!     Ok(())
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #     notes_need_their_scopes().await
//! # }
//! ```
//!
//! Signing one request by hand, with no server at all:
//!
//! ```
//! use tower_aauth::testing::{KeySource, TestAgent};
//!
//! let agent = TestAgent::from_seed([1; 32]);
//! let mut request = http::Request::get("https://resource.example/data").body(()).unwrap();
//! agent.sign(&mut request, &KeySource::Hwk, 1_730_217_600);
//! assert!(request.headers().contains_key("signature"));
//! ```
//!
//! # The parts
//!
//! * [`TestHarness`] binds the ports, configures the resource for them and serves the
//!   three servers below; [`TestHarness::builder`] picks the consent mode.
//! * [`TestAgent`] signs requests with `hwk`, `jwks_uri` or `jwt`, and serves its own
//!   identity server ([`TestAgent::identity_router`]) for `jwks_uri`.
//! * [`AgentClient`] follows the whole flow over real HTTP ([`AgentClient::fetch`]): a
//!   signed request, a `401` with `requirement=auth-token`, the resource token posted to
//!   the auth server its `aud` names, `202` and polling of the pending URL (honouring
//!   `Retry-After` and `slow_down`), then the retry with the auth token under
//!   `Signature-Key` scheme `jwt`. [`AgentClient::get`] and [`AgentClient::request`]
//!   send one signed request and follow nothing; [`AgentClient::send_unsigned`] sends
//!   one without a signature.
//! * [`TestAuthServer`] is an access server (axum router): it verifies the agent's
//!   signatures with this crate's own layer, verifies resource tokens with the resource's
//!   published keys, and issues `aa-auth+jwt` bound to the agent key, either at once or
//!   after a person's consent (programmatic [`TestAuthServer::approve`] /
//!   [`TestAuthServer::deny`], or the HTML consent page at the interaction URL).
//! * [`TestIssuer`] mints agent, person and auth tokens directly, for unit tests that need
//!   no server at all.
//! * [`BotSigner`] signs Web Bot Auth requests ([`crate::bot`]) and [`BotDirectory`]
//!   serves its key directory on loopback.
//! * [`demo`] wires all of them to a resource behind this crate's layer: the
//!   `cargo run --example demo` scenario, which the crate's own flow tests also run.
//!
//! Everything here trusts `http://127.0.0.1:PORT` identifiers, because it exists for tests
//! on loopback; none of it belongs in production.

mod agent;
mod auth_server;
mod bot;
pub mod demo;
mod flow;
mod harness;
mod issuer;

pub use crate::clock::ManualClock;
pub use agent::{KeySource, SignOptions, TestAgent};
pub use auth_server::{Consent, PendingState, TestAuthServer, TestAuthServerBuilder};
pub use bot::{BotDirectory, BotSignOptions, BotSigner, DirectoryFault};
pub use flow::{AgentClient, Exchange, FlowError, FlowEvent, FlowOutcome, FlowStep};
pub use harness::{HarnessError, TestHarness, TestHarnessBuilder};
pub use issuer::TestIssuer;

/// Bytes the process-wide cache of parsed public keys holds (`hwk` keys and token
/// confirmation keys enter it before any signature made with them verifies), counted
/// entry by entry. It never exceeds a fixed budget, whatever requests arrive.
pub fn parsed_key_cache_bytes() -> u64 {
    crate::jose::parsed_key_cache_bytes()
}
