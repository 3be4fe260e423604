//! Route guards: the layer verifies, guards decide.
//!
//! The table follows the requirement responses of [AAuth draft -11, "Resource
//! Access"][draft-11]; where the draft leaves a choice, the table shows this crate's.
//!
//! A guard reads the [`VerifiedRequest`](crate::VerifiedRequest) the [`AAuthLayer`](crate::AAuthLayer) inserted,
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
//! | a verified Web Bot Auth bot ([`crate::bot`]) | as unsigned | as unsigned | as unsigned |
//!
//! A bot is admitted only by [`require_bot`] / [`require_bot_from`], which refuse
//! everything else with `403 bot_required` and `Accept-Signature`.
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
//! request and the request head ([`RuleContext`]) and returns a [`Decision`]; asking for
//! scopes ([`Decision::NeedAuth`]) reuses the minting and audience rules here.
//!
//! If the layer is missing (no [`VerifiedRequest`](crate::VerifiedRequest) and no trace of the layer), the guard
//! answers `500` and logs why, once per process at error level: a guard never passes a
//! request it could not judge. In debug builds (`debug_assertions`) the `500`'s problem
//! `detail` explains the fix, including axum's rule that `Router::layer` wraps only the
//! routes added before it; release builds answer the fixed `internal server error`.
//!
//! Guards belong on routes (`route_layer`). On a `MethodRouter`, `route_layer` guards every
//! method added *before* it: to guard `GET` and `POST` of one path with different scopes,
//! build each method with its own guard and merge them,
//! `get(list).route_layer(aauth.require_scopes(["notes.read"])).merge(post(create).route_layer(aauth.require_scopes(["notes.write"])))`;
//! the chain `get(list).route_layer(read).post(create).route_layer(write)` would also
//! demand `notes.write` of `GET`. A requirement guard applied to a whole router
//! with `Router::layer` judges every request, `/health` and unknown paths included, except
//! the paths the layer's default requirement also leaves public: the resource metadata
//! (`/.well-known/aauth-resource.json`) and its JWKS (`/.well-known/jwks.json`), which
//! auth servers must be able to fetch, and the pending URLs of deferred routes.
//!
//! # Deferred delivery
//!
//! Deferred delivery of the `auth-token` requirement ([AAuth draft -11, "Deferred
//! Responses" and "Auth Token Required"][draft-11]): instead of refusing with `401`, the
//! resource **holds** the request and executes it when the agent comes back with an auth
//! token.
//!
//! ## Using it
//!
//! ```no_run
//! # use tower_aauth::AAuth;
//! # fn app(aauth: AAuth) -> axum::Router {
//! use axum::routing::post;
//! axum::Router::new()
//!     .route("/report", post(|| async { "done" })
//!         .route_layer(aauth.require_scopes(["report.write"]).deferred()))
//!     .merge(aauth.pending_router())   // serves /aauth/pending/{id}
//!     .merge(aauth.well_known_router())
//!     .layer(aauth.layer())
//! # }
//! ```
//!
//! A route opts in with [`GuardLayer::deferred`](crate::guard::GuardLayer::deferred); the store's limits are set once with
//! [`AAuthBuilder::deferred_delivery`](crate::AAuthBuilder::deferred_delivery) (defaults in [`DeferredOptions`](crate::DeferredOptions)). Routes without the
//! modifier keep answering `401`.
//!
//! ## The exchange
//!
//! 1. Where its guard would answer `401 requirement=auth-token; resource-token="…"`, a
//!    deferred route buffers the request as data (method, URI as the agent sent it,
//!    headers but the three signature headers, together at most 16 KiB, and the body up to
//!    [`DeferredOptions::max_body_bytes`](crate::DeferredOptions::max_body_bytes); its extensions stay in the holding process) and answers `202 Accepted` with `Location`
//!    (`{resource}/aauth/pending/{id}`, 128 random bits, same origin as the resource
//!    identifier), `Retry-After`, `Cache-Control: no-store`, the same `AAuth-Requirement`
//!    and `{"status":"pending"}`. A body over the cap, or a request answered in the demo
//!    generation (whose agents know no deferred delivery), gets the plain `401` instead.
//! 2. The agent polls the pending URL with a signed `GET`. The poll goes through the
//!    layer like any request (signature, token claims, revocation), and the layer answers
//!    it:
//!    * unsigned → `401 requirement=agent-token`; unknown id → `404 not_found`;
//!    * signed by another key than the one that created it → `403 invalid_request`
//!      (nothing changes: the record is bound to the creating key's thumbprint);
//!    * past the pending lifetime → `408 expired`, and `410` afterwards;
//!    * sooner than `Retry-After` after the previous answer → `429 slow_down`, and the
//!      interval grows by five seconds;
//!    * a token satisfying the route's requirement (same evaluation as the guard, with
//!      the poll's identity and the held request's method, URI and headers) → the held
//!      request runs, **once**, with the poll's [`VerifiedRequest`](crate::VerifiedRequest) in its extensions,
//!      and its response is the poll's answer (on another replica, see "Across replicas");
//!    * while another poll runs it → `202` without a challenge;
//!    * otherwise `202` pending again, carrying the same resource token while it is valid
//!      and a freshly minted one after it expired; a refusal the guard would give
//!      (policy `403`, scope ceiling, identity challenge) is given as is.
//! 3. The result is kept, keyed by the auth token's `jti`, until that token's `exp`: a
//!    repeated poll with the same token gets the stored response without running the
//!    handler again, so a repeated poll never runs the request twice. Any other poll of a
//!    finished request gets `410`.
//!
//! ## Across replicas
//!
//! With `DeferredOptions::store` (feature `redis`) the
//! records live in Redis, and whichever replica receives a poll answers it: it reads the
//! record, takes it with a compare-and-swap (of concurrent polls on any replicas exactly
//! one runs the request), and stores the result for the other replicas. The replica that
//! held the request runs it in process, as without Redis. Any other replica re-dispatches
//! it through the application its layer wraps, so for polls to be answered by every
//! replica the layer must wrap the whole router as a tower `Layer`
//! (`tower::Layer::layer(&aauth.layer(), router)`, or
//! `Router::new().fallback_service(router).layer(aauth.layer())`): axum's
//! `Router::layer` wraps each route separately, and such a replica answers a poll of a
//! request held elsewhere with `500 server_error`, running nothing and leaving the
//! request to the replica that holds it. Every replica must mount the same deferred routes; a held
//! request re-dispatched to a route without a deferred guard is answered by that route
//! and its pending request ends (`410` afterwards). When Redis is unreachable or slow
//! (past the operation timeout) holding and polling answer `503 temporarily_unavailable`
//! with `Retry-After: 1` and nothing is held or run; a record or a Redis reply that does
//! not decode is `500 server_error` and nothing runs. A replica that stops while it runs
//! a held request leaves the record running: polls get `202` until the pending lifetime
//! has passed since the run began, then `500 server_error` once (the request may have
//! run; its result is lost), then `410`. A held request never runs twice.
//! See `docs/deployment.md` for the keys and the costs.
//!
//! ## Bounds
//!
//! Records live in a [`moka`] cache (or in Redis, see above) weighted by their bytes
//! (held request or stored result, plus 1 KiB each, capped by [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes)). The cap is enforced when a
//! request would be held: beyond it the request gets the plain `401` challenge, so
//! requests that never obtain a grant cannot evict the records of agents completing
//! theirs; each entry expires on its own
//! deadline (pending lifetime, or the auth token's `exp`) plus a grace period during which
//! `408`/`410` can still be told apart from `404`. Results above
//! [`DeferredOptions::max_result_bytes`](crate::DeferredOptions::max_result_bytes) are answered `500 server_error`. Deadlines are
//! judged with the configured [`Clock`](crate::Clock); memory is reclaimed on wall time.
//!
//! Pending URLs are exempt from the layer's default requirement, like the well-known
//! documents (the poll carries its own requirement), once [`AAuth::pending_router`](crate::AAuth::pending_router) or
//! [`AAuth::serve_pending_urls`](crate::AAuth::serve_pending_urls) was called, and only in the exact shape ids are issued
//! in: nothing else under `/aauth/pending/` skips it.
//!
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod bot;
pub(crate) mod judge;
pub(crate) mod middleware;
pub(crate) mod requirement;

pub use crate::deferred::{DeferredLayer, DeferredPolicy};
pub use crate::rar::require::{DetailPolicy, RequireDetailLayer};
pub use crate::replay::single_use::{SingleUseLayer, SingleUsePolicy};
pub use bot::{BotPolicy, require_bot, require_bot_from};
pub use judge::RequirementPolicy;
pub use middleware::{Guard, GuardFuture, GuardLayer};
pub use requirement::{Decision, Requirement, Rule, RuleContext};
