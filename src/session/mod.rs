//! Resource-managed access ([AAuth draft -11, "Resource-Managed Access", "Interaction
//! Required", "AAuth-Access" and "AAuth-Capabilities"][draft-11]): the resource runs its
//! own interaction (login, consent, payment) and then knows the agent by a session.
//!
//! # The exchange
//!
//! ```no_run
//! # use tower_aauth::AAuth;
//! # use tower_aauth::session::Session;
//! # fn app(aauth: AAuth) -> axum::Router {
//! use axum::extract::Query;
//! use axum::routing::{get, post};
//! #[derive(serde::Deserialize)]
//! struct Code { code: String }
//! let page = aauth.clone();
//! axum::Router::new()
//!     .route("/notes", get(|session: Session| async move { session.account })
//!         .route_layer(aauth.require_session(["notes.read"])))
//!     // The resource's own page, at `SessionOptions::interaction_path`.
//!     .route("/aauth/interaction", post(move |Query(Code { code }): Query<Code>| async move {
//!         let Some(interaction) = page.interaction(&code).await else { return "unknown code" };
//!         // ... the resource's own login and consent for `interaction.scopes`, then:
//!         if interaction.approve("account-42").await { "approved" } else { "too late" }
//!     }))
//!     .merge(aauth.pending_router())
//!     .layer(aauth.layer())
//! # }
//! ```
//!
//! 1. A verified agent without a session that declared `AAuth-Capabilities: interaction`
//!    gets `202 Accepted` with `Location` (a pending URL, `{resource}/aauth/pending/{id}`,
//!    answered by the layer like those of deferred delivery), `Retry-After`,
//!    `Cache-Control: no-store`, `{"status":"pending"}` and
//!    `AAuth-Requirement: requirement=interaction; url="{resource}{interaction_path}"; code="XXXXX-XXXXX"`.
//!    An agent that did not declare it gets the route's ordinary answer: the
//!    `auth-token` challenge for its scopes (an auth token granting them is served), or
//!    `403 interaction_required` for a route with no scopes.
//! 2. The person opens `{url}?code=…`; the resource's page looks the code up
//!    ([`AAuth::interaction`](crate::AAuth::interaction): the agent and the scopes to
//!    show), runs its own login and consent, and decides ([`Interaction::approve`] for
//!    its own account id, [`Interaction::deny`], [`Interaction::expire`]).
//! 3. The agent polls the pending URL (signed by the same key): `202` while waiting
//!    (`"interacting"` once the page looked the code up), `429 slow_down` when too fast,
//!    then `200` with `AAuth-Access: <token>` once approved, `403 denied`, or
//!    `408 expired`; `410` afterwards.
//! 4. The agent sends `Authorization: AAuth <token>` under a signature covering
//!    `authorization`; the guard admits it and handlers read the account with the
//!    [`Session`] extractor. Responses may carry a rotated token in `AAuth-Access`.
//!
//! Refusals: an unsigned request with a session token `401 requirement=agent-token`
//! (tokens are no bearer tokens); a signature not covering `authorization`
//! `401 Signature-Error: error=invalid_input`; a malformed, unknown, expired, revoked
//! credential, or one bound to another key, `401 invalid_session`; a pending URL polled
//! by another key `403 invalid_request`; a store that cannot answer, or is full,
//! `503 temporarily_unavailable`. Every refusal leaves the route's handler uncalled.
//!
//! Sessions and pending interactions live in one store bounded in bytes
//! ([`SessionOptions::capacity_bytes`]): in process by default, in Redis
//! (`SessionOptions::redis_store`, feature `redis`) to share them between replicas.
//! Session tokens are stored only as their SHA-256. Options: [`SessionOptions`], set
//! with [`AAuthBuilder::sessions`](crate::AAuthBuilder::sessions).
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod access;
pub(crate) mod capabilities;
pub(crate) mod interaction;
#[cfg(feature = "redis")]
mod redis_store;
pub(crate) mod store;

pub use access::{Session, SessionPolicy};
pub use interaction::Interaction;
pub use store::SessionOptions;
