//! The [`AAuth`] handle: every method a resource calls after building its configuration —
//! the verifying layer, guards, routers for the documents it serves, policy and key
//! rotation.
//!
//! The handle is the top of the house: it reaches each service through its constructor,
//! and no service reaches back to it.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::builder::AAuthBuilder;
use crate::clock::Clock;
use crate::guard::middleware::GuardLayer;
use crate::guard::requirement::Requirement;
use crate::jose::{Jwk, ResourceKey};
use crate::policy::ceiling::ScopeCeilings;
use crate::policy::identity::AgentBindings;
use crate::policy::revocation::Revocations;
use crate::profile::{Generation, Profile};
use crate::rar::require::RequireDetailLayer;
use crate::replay::single_use::SingleUseLayer;
use crate::replay::store::ReplayStore;
use crate::state::Shared;
use crate::token::Scopes;

/// The resource's AAuth configuration. Cheap to clone.
#[derive(Clone)]
pub struct AAuth {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for AAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuth")
            .field("resource", &self.shared.resource)
            .finish_non_exhaustive()
    }
}

impl AAuth {
    /// Starts a configuration for the resource identified by `resource`
    /// (`https://host`, exactly as agents will address it and as tokens name it in `aud`).
    pub fn builder(resource: impl Into<String>) -> AAuthBuilder {
        AAuthBuilder::new(resource.into())
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.shared.resource
    }

    /// The injected clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// The wire profile.
    pub fn profile(&self) -> Profile {
        self.shared.profile
    }

    /// The generation to answer a request in: the one recorded on its
    /// [`VerifiedRequest`](crate::VerifiedRequest) when it was verified, else the
    /// profile's default (draft -11 unless the profile is [`Profile::Legacy`]).
    pub fn generation_for(&self, verified: Option<&crate::verified::VerifiedRequest>) -> Generation {
        verified.map_or(self.shared.profile.default_generation(), |v| v.generation)
    }

    /// The verifying layer: put it outermost, around the whole router.
    pub fn layer(&self) -> crate::layer::AAuthLayer {
        crate::layer::AAuthLayer::new(self.shared.clone())
    }

    /// The revocation set the layer checks on every request (hot-reloadable).
    pub fn revocations(&self) -> &Revocations {
        &self.shared.revocations
    }

    /// The per-agent scope ceilings (hot-reloadable).
    pub fn scope_ceilings(&self) -> &ScopeCeilings {
        &self.shared.ceilings
    }

    /// The key → agent bindings ([`crate::policy`]).
    pub fn agent_bindings(&self) -> &Arc<dyn AgentBindings> {
        &self.shared.bindings
    }

    /// The replay store (also used for single-use grants): the configured one, measured
    /// (its errors and waits are counted, see [`Metric`](crate::Metric)).
    pub fn replay_store(&self) -> &Arc<dyn ReplayStore> {
        &self.shared.replay_store
    }

    /// The batch verifier's counters (all zero when batching is off). Not part of the
    /// stable API.
    #[doc(hidden)]
    pub fn batch_stats(&self) -> crate::batch::BatchStats {
        self.shared.batch.as_ref().map(|b| b.stats()).unwrap_or_default()
    }

    /// Number of verified tokens currently cached.
    pub fn cached_tokens(&self) -> u64 {
        self.shared.token_cache.entry_count()
    }

    /// Estimated bytes held by the verified-token cache (the sum of its entries'
    /// weights; bounded by [`TokenCacheOptions::max_bytes`](crate::TokenCacheOptions::max_bytes)).
    pub fn cached_token_bytes(&self) -> u64 {
        self.shared.token_cache.weighted_size()
    }

    /// Empties the verified-token cache: every token is verified against its issuer's
    /// current keys on its next use. Call it after learning that an issuer withdrew a key;
    /// otherwise tokens already verified stay accepted until their `exp`, at most
    /// [`TokenCacheOptions::max_age`](crate::TokenCacheOptions::max_age). (Revocations need no call: they are checked
    /// on every request.)
    pub fn forget_verified_tokens(&self) {
        self.shared.token_cache.clear();
    }

    /// A guard (for axum's `route_layer`) requiring an auth token granting **all** of
    /// `scopes`: the route of an API that acts for a person.
    ///
    /// | the request presents | four-party ([`auth_server`](AAuthBuilder::auth_server) configured) | three-party ([`person_server`](AAuthBuilder::person_server) only) |
    /// |---|---|---|
    /// | no signature | 401 `AAuth-Requirement: requirement=agent-token` (no resource token: sign first) | 401 `requirement=person-token` |
    /// | `hwk` or `jwks_uri` signature, no token | 401 `requirement=auth-token; resource-token="…"` for the access server | 401 `Signature-Error: error=unsupported_scheme` + `Accept-Signature-Scheme: jwt` |
    /// | agent token | 401 `requirement=auth-token; resource-token="…"` | 401 `requirement=person-token` (403 `no_person_server` if it names no `ps`) |
    /// | person token | 401 `requirement=auth-token; resource-token="…"` naming the person | 401 `requirement=auth-token; resource-token="…"` for its person server |
    /// | auth token granting every scope | **serve** | **serve** |
    /// | auth token lacking one | 401 `requirement=auth-token` step-up for the whole set (403 `insufficient_scope` with [`deny_insufficient_scope`](AAuthBuilder::deny_insufficient_scope)) | same |
    /// | a scope above the agent's [ceiling](crate::policy::ScopeCeilings) | 403 `scope_above_ceiling` | same |
    ///
    /// A signature or token the layer refuses never reaches the guard (`401` +
    /// `Signature-Error`, see the crate docs). The resource token asks for exactly
    /// `scopes`. The full decision table, with draft -11's matrix, is in
    /// [`crate::guard`].
    ///
    /// A configuration that trusts no auth server and no person server cannot be served
    /// by this guard: [`AAuthBuilder::build`] refuses declared scopes in that case, and
    /// this constructor logs a `tracing` warning (target `tower_aauth`) once.
    ///
    /// # Panics
    ///
    /// At start-up, if a scope is not a single RFC 6749 scope token.
    pub fn require_scopes<I, S>(&self, scopes: I) -> GuardLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        for scope in &scopes {
            assert!(
                Scopes::parse(scope).is_some_and(|s| s.len() == 1),
                "tower-aauth: {scope:?} is not a single RFC 6749 scope token"
            );
        }
        if !self.shared.authz.grantable {
            crate::diagnose::warn_unreachable_scope_guard();
        }
        self.require(Requirement::Scopes(Scopes::from_iter_unchecked(scopes)))
    }

    /// A guard for resource-managed access ([`session`](crate::session)): the route serves
    /// requests presenting a session token (`Authorization: AAuth <token>`, signed by the
    /// key the session is bound to, `authorization` covered) approved for every one of
    /// `scopes`, and requests whose auth token grants them all.
    ///
    /// | the request presents | answer |
    /// |---|---|
    /// | no signature | 401 `requirement=agent-token` (a session token alone is refused) |
    /// | a valid session for `scopes` | **serve**, the [`Session`](crate::session::Session) in the extensions; `AAuth-Access` when rotated |
    /// | a malformed, unknown, expired or revoked session token, or one bound to another key | 401 `invalid_session` |
    /// | an auth token granting every scope | **serve** |
    /// | nothing sufficient, `AAuth-Capabilities: interaction` declared | 202 `requirement=interaction` |
    /// | nothing sufficient, not declared | the [`require_scopes`](Self::require_scopes) answer (403 `interaction_required` without scopes) |
    ///
    /// Mount [`AAuth::pending_router`] too: the agent polls a pending URL for its token.
    ///
    /// # Panics
    ///
    /// At start-up, if a scope is not a single RFC 6749 scope token.
    pub fn require_session<I, S>(&self, scopes: I) -> GuardLayer<crate::session::SessionPolicy>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        for scope in &scopes {
            assert!(
                Scopes::parse(scope).is_some_and(|s| s.len() == 1),
                "tower-aauth: {scope:?} is not a single RFC 6749 scope token"
            );
        }
        crate::session::SessionPolicy::layer(self.shared.clone(), scopes)
    }

    /// The pending interaction of resource-managed access that `code` names, for the
    /// resource's own interaction page: what to show the person, and the decision
    /// ([`Interaction::approve`](crate::session::Interaction::approve), `deny`, `expire`;
    /// see [`session`](crate::session)). `None` for an unknown, decided or expired code,
    /// a store that cannot answer, and every look-up once this process saw 64 failed ones
    /// within the minute (a code is 50 bits; the limit keeps guessing hopeless).
    pub async fn interaction(&self, code: &str) -> Option<crate::session::Interaction> {
        crate::session::Interaction::find(&self.shared, code).await
    }

    /// A guard admitting any request whose signature the layer verified, whatever it
    /// signed with: exactly the requests the [`VerifiedAgent`](crate::VerifiedAgent)
    /// extractor accepts. The route for "any verified agent"; no person, no authorization.
    ///
    /// | the request presents | answer |
    /// |---|---|
    /// | no signature | 401 `AAuth-Requirement: requirement=agent-token` |
    /// | `hwk` signature (pseudonymous key) | **serve** |
    /// | `jwks_uri` signature (agent identifier) | **serve** |
    /// | agent token | **serve** |
    /// | person token | **serve** |
    /// | auth token | **serve** |
    ///
    /// A signature or token the layer refuses never reaches the guard (`401` +
    /// `Signature-Error`). [`VerifiedAgent::agent`](crate::VerifiedAgent::agent) tells the
    /// handler whether the agent is known.
    pub fn require_verified_agent(&self) -> GuardLayer {
        self.require(Requirement::Signature)
    }

    /// A guard admitting only requests that present the agent's own identity: an agent
    /// token (`aa-agent+jwt` under `Signature-Key` scheme `jwt`) or a `jwks_uri` signature
    /// naming the agent's identifier. This is draft -11's "agent identity" column: a
    /// person or auth token carries no agent identifier, so it is answered with
    /// `requirement=agent-token` even when the key is known to belong to an agent. For
    /// "any verified agent" use [`AAuth::require_verified_agent`].
    ///
    /// | the request presents | answer |
    /// |---|---|
    /// | no signature | 401 `AAuth-Requirement: requirement=agent-token` |
    /// | `hwk` signature | 401 `Signature-Error: error=unsupported_scheme` + `Accept-Signature-Scheme: jwt` |
    /// | `jwks_uri` signature | **serve** |
    /// | agent token | **serve** |
    /// | person token | 401 `requirement=agent-token` |
    /// | auth token | 401 `requirement=agent-token` |
    pub fn require_agent_token(&self) -> GuardLayer {
        self.require(Requirement::Agent)
    }

    /// The former name of [`AAuth::require_agent_token`], which it reads better as: it
    /// refuses auth-token-signed and `hwk` requests that the
    /// [`VerifiedAgent`](crate::VerifiedAgent) extractor accepts.
    #[deprecated(
        since = "0.1.0",
        note = "named for what it admits: require_agent_token() (agent token or jwks_uri signer), \
                or require_verified_agent() for any verified signature"
    )]
    pub fn require_agent(&self) -> GuardLayer {
        self.require_agent_token()
    }

    /// A guard requiring the person: a person token or an auth token (draft -11's "person
    /// identity" column).
    ///
    /// | the request presents | answer |
    /// |---|---|
    /// | no signature | 401 `AAuth-Requirement: requirement=person-token` |
    /// | `hwk` or `jwks_uri` signature, no token | 401 `Signature-Error: error=unsupported_scheme` + `Accept-Signature-Scheme: jwt` |
    /// | agent token naming a person server (`ps`) | 401 `requirement=person-token` |
    /// | agent token naming none | 403 `no_person_server` |
    /// | person token | **serve** |
    /// | auth token | **serve** |
    pub fn require_person(&self) -> GuardLayer {
        self.require(Requirement::Person)
    }

    /// The former name of [`AAuth::require_verified_agent`]: any verified signature,
    /// pseudonymous `hwk` included.
    #[deprecated(since = "0.1.0", note = "named for what it admits: require_verified_agent()")]
    pub fn require_signature(&self) -> GuardLayer {
        self.require_verified_agent()
    }

    /// A guard for any [`Requirement`]: combinations ([`Requirement::All`], all-of) and
    /// custom [`Rule`](crate::guard::Rule)s.
    ///
    /// | requirement | the same as | admits |
    /// |---|---|---|
    /// | [`Requirement::Signature`] | [`AAuth::require_verified_agent`] | every verified signature |
    /// | [`Requirement::Agent`] | [`AAuth::require_agent_token`] | an agent token or a `jwks_uri` signer |
    /// | [`Requirement::Person`] | [`AAuth::require_person`] | a person or auth token |
    /// | [`Requirement::Scopes`] | [`AAuth::require_scopes`] | an auth token granting every scope |
    /// | [`Requirement::All`] | stacking guards | what every member admits; the first refusal answers, scope needs are merged into one resource token |
    /// | [`Requirement::Rule`] | — | what the rule's [`Decision`](crate::guard::Decision) says: `Allow` serves, `NeedAgent` / `NeedPerson` / `NeedAuth(scopes)` challenge as the rows above, `Refuse` answers its error (403 for [`Error::forbidden`](crate::Error::forbidden)) |
    ///
    /// Each answer for each credential is in the tables of the guards above and in
    /// [`crate::guard`].
    pub fn require(&self, requirement: Requirement) -> GuardLayer {
        GuardLayer::new(self.shared.clone(), requirement)
    }

    /// Publishes `key` in the JWKS without signing with it yet (step 1 of the rotation
    /// procedure: wait for verifiers' caches before [`AAuth::rotate`]). `false` if its
    /// `kid` is already published, or if the keys come from a directory
    /// ([`AAuthBuilder::signing_keys_from`]: change the directory instead).
    pub fn stage_signing_key(&self, key: ResourceKey) -> bool {
        self.shared.authz.keys.stage(key)
    }

    /// Signs resource tokens with `key` from now on, publishing it if it was not staged.
    /// The previous key stays published until [`AAuth::retire_key`]. `false` (and no
    /// change) if `kid` is already published with other key material, or if the keys come
    /// from a directory.
    pub fn rotate(&self, key: ResourceKey) -> bool {
        self.shared.authz.keys.rotate(key)
    }

    /// Stops publishing the key `kid` (keep it at least the token lifetime plus your JWKS
    /// cache age after rotating). The active key cannot be retired, nor a key read from a
    /// directory (remove its file).
    pub fn retire_key(&self, kid: &str) -> bool {
        self.shared.authz.keys.retire(kid)
    }

    /// The published verification keys, active key first.
    pub fn public_keys(&self) -> Vec<Jwk> {
        self.shared.authz.keys.snapshot().public_keys(self.shared.clock.now())
    }

    /// The `kid` resource tokens are currently signed with.
    pub fn active_kid(&self) -> String {
        let now = self.shared.clock.now();
        self.shared.authz.keys.snapshot().active(now).kid().to_owned()
    }

    /// Reads the [signing-key directory](AAuthBuilder::signing_keys_from) again now, as
    /// SIGHUP and a change of the directory do under [`AAuth::watch_signing_keys`].
    ///
    /// # Errors
    ///
    /// The keys do not come from a directory, or the directory breaks a rule of
    /// [`AAuthBuilder::signing_keys_from`] (the message names the file and the reason, never
    /// key material). The ring in force then stays in force.
    pub fn reload_signing_keys(&self) -> Result<(), crate::error::ConfigError> {
        self.shared.authz.keys.reload(self.shared.clock.now())
    }

    /// Keeps the ring in step with its [directory](AAuthBuilder::signing_keys_from):
    /// spawn the future on the tokio runtime (`tokio::spawn(aauth.watch_signing_keys())`).
    /// It reads the directory at once, then whenever the listing, a file's size or its
    /// modification time changes (looked at every second) and on each SIGHUP (unix), and
    /// ends when the last clone of this `AAuth` is dropped. A directory that fails to load
    /// leaves the ring in force; the reason is logged as a `tracing` warning (target
    /// `tower_aauth`), and the next change or SIGHUP tries again. Scheduled activations
    /// and expiries need no reload: they are read from the clock when a token is minted.
    ///
    /// Without a directory the future ends at once, with a warning.
    pub fn watch_signing_keys(&self) -> impl Future<Output = ()> + Send + 'static {
        let directory = self.shared.authz.keys.directory();
        let (alive, reloading) = (Arc::downgrade(&self.shared), Arc::downgrade(&self.shared));
        async move {
            let Some(directory) = directory else {
                tracing::warn!(
                    target: "tower_aauth",
                    "watch_signing_keys: the signing keys were not read from a directory; nothing to watch"
                );
                return;
            };
            let alive = move || alive.strong_count() > 0;
            let reload = move || match reloading.upgrade() {
                Some(shared) => shared.authz.keys.reload(shared.clock.now()),
                None => Ok(()),
            };
            crate::keyring::watch(directory, alive, reload).await;
        }
    }

    /// How many resource tokens this configuration has minted (for monitoring, and to
    /// prove that refusals cost no signature).
    pub fn minted_resource_tokens(&self) -> u64 {
        self.shared.authz.keys.minted()
    }

    /// A router for the pending URLs of deferred requests (`/aauth/pending/{id}`, signed
    /// `GET`); merge it into the application's router, inside the AAuth layer. Merging it
    /// marks the pending URLs served: the layer (which must wrap the whole application,
    /// so that it can re-dispatch a held request through it) then answers their polls
    /// itself, and the router's own route answers only an unsigned poll that reached it
    /// without the layer (`401 requirement=agent-token`).
    #[cfg(feature = "axum")]
    pub fn pending_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::deferred::router(self.shared.clone())
    }

    /// Answers a poll of a pending URL that the layer did not answer (for services that do
    /// not use [`AAuth::pending_router`]). Since polls are answered by the layer once
    /// [`AAuth::serve_pending_urls`] was called, this answers only an unsigned poll
    /// (`401 requirement=agent-token`); a signed one reaching it means the layer does not
    /// wrap the whole application (`500 server_error`, logged at error level).
    pub async fn poll_pending<B: From<Bytes>>(&self, poll: http::request::Parts) -> Response<B> {
        crate::deferred::fallback(&self.shared, &poll)
    }

    /// Declares that this service serves pending URLs: the layer answers their polls
    /// (re-dispatching held requests through the application it wraps) and exempts them from the
    /// [default requirement](AAuthBuilder::default_requirement) as it does once
    /// [`AAuth::pending_router`] was called. Only URLs of the exact shape this crate issues
    /// are exempt; nothing under the prefix is before either call.
    pub fn serve_pending_urls(&self) {
        self.shared.pending.mark_served();
    }

    /// Bytes the held and finished pending records of the in-process store take now
    /// (bounded by [`DeferredOptions::capacity_bytes`](crate::DeferredOptions::capacity_bytes)).
    /// With a shared store (`RedisPendingStore`, feature `redis`) this process
    /// holds none and the answer is 0: the fleet's count is the store's `bytes` key.
    pub fn pending_bytes(&self) -> u64 {
        self.shared.pending.held_bytes()
    }

    /// A route guard passing only requests whose auth token carries an
    /// `authorization_details` entry of type `detail_type` that deserialises into `T` and
    /// that `check` accepts against the request:
    ///
    /// ```
    /// # use tower_aauth::AAuth;
    /// #[derive(serde::Deserialize)]
    /// struct Trade { symbol: String, quantity: u64 }
    ///
    /// # fn guard(aauth: &AAuth) {
    /// let guard = aauth.require_detail("trade", |trade: &Trade, request: &http::request::Parts| {
    ///     let query = request.uri.query().unwrap_or_default();
    ///     query == format!("symbol={}&quantity={}", trade.symbol, trade.quantity)
    /// });
    /// # }
    /// ```
    ///
    /// * No auth token: the challenge of the [`crate::guard`] table (as `require_scopes`
    ///   with no scope: `auth-token` with a resource token when one may be minted, else
    ///   `agent-token`/`person-token`); with [`RequireDetailLayer::step_up`](crate::guard::RequireDetailLayer::step_up), the resource
    ///   token carries the detail the request needs.
    /// * A query the signature does not cover: `401 invalid_input` naming `@query` (the
    ///   predicate and the step-up builder read the request, so what they read must be
    ///   signed); no resource token is minted.
    /// * No entry of the type accepted, or a malformed claim (not an array, more than
    ///   32 entries, an entry of the type that does not fit `T`): `403`
    ///   `insufficient_authorization_details`, the problem body naming the type in
    ///   `authorization_details_type`.
    /// * An entry accepted: the inner service runs (after consuming the grant, with
    ///   [`RequireDetailLayer::single_use`](crate::guard::RequireDetailLayer::single_use)).
    pub fn require_detail<T, F>(&self, detail_type: &'static str, check: F) -> RequireDetailLayer<T, F>
    where
        T: DeserializeOwned + 'static,
        F: Fn(&T, &Parts) -> bool + Clone + Send + Sync + 'static,
    {
        crate::rar::require::layer(self.shared.clone(), detail_type, check)
    }

    /// Single-use grants: a route that consumes the presented auth token's `(iss, jti)` the
    /// first time it is authorized, so a task-scoped grant (consent to one task, not a
    /// standing permission) cannot be used twice.
    ///
    /// Consumption happens *before* the handler runs, through the [`ReplayStore`](crate::replay::ReplayStore)'s atomic
    /// insert-once: of any number of concurrent requests presenting the grant (each with its
    /// own valid signature), exactly one reaches the handler; the others are `401 invalid_jwt`.
    /// The entry lives until the token's `exp` plus the allowed clock skew, after which the
    /// token is refused as expired anyway. A store that cannot answer is `503`, never a pass.
    ///
    /// This is opt-in per route: auth tokens are otherwise presented on every request for their
    /// lifetime, so a `jti` is not single-use by default. Put [`SingleUseLayer`](crate::guard::SingleUseLayer) *inside* the
    /// guards that authorize the route (in axum, `route_layer` it before them) so that only an
    /// authorized request consumes the grant; or use `require_detail(..).single_use()`, which
    /// consumes after its own check. Should a guard of this crate inside it refuse the request
    /// all the same, the grant is released again before the refusal is sent, as the layer
    /// releases a refused request's signature (see [`crate::replay`]); meanwhile a concurrent
    /// request presenting the same grant is refused as a second use.
    pub fn single_use(&self) -> SingleUseLayer {
        crate::replay::single_use::layer(self.shared.clone())
    }

    /// A metered route guard (for axum's `route_layer`): each request costs at most
    /// `max_cost` in `unit` at scale `decimals` (`meter("USD", 6, 1000)`: 0.001 USD),
    /// drawn from the budget its auth token grants (draft-hardt-aauth-budgets), and its
    /// response reports the balance in `AAuth-Budget`. Chain
    /// [`scopes`](crate::guard::GuardLayer::scopes) for the scopes the route also needs
    /// and [`offer`](crate::guard::GuardLayer::offer) for the budget its resource tokens
    /// offer. The table of answers, and how a handler reports a lower cost
    /// ([`Meter`](crate::budget::Meter)), are in [`crate::budget`].
    ///
    /// ```
    /// # use tower_aauth::AAuth;
    /// use tower_aauth::budget::Meter;
    /// # fn router(aauth: &AAuth) -> axum::Router {
    /// axum::Router::new().route(
    ///     "/report",
    ///     axum::routing::get(|meter: Meter| async move {
    ///         meter.charge(400); // this one was cheaper than the price
    ///         "report"
    ///     })
    ///     .route_layer(aauth.meter("USD", 6, 1000).scopes(["report"])),
    /// )
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// At start-up, if the price is not a budget amount (unit of 1 to 32 of
    /// `A-Za-z0-9-_.:/`, decimals at most 18, at most 15 digits), or names a unit or scale
    /// that [`BudgetOptions::unit`](crate::budget::BudgetOptions::unit) did not declare
    /// when units are declared.
    pub fn meter(
        &self,
        unit: &str,
        decimals: u32,
        max_cost: u64,
    ) -> crate::guard::GuardLayer<crate::budget::MeterPolicy> {
        crate::budget::meter::layer(self.shared.clone(), unit, decimals, max_cost)
    }

    /// The resource metadata document (`/.well-known/aauth-resource.json`).
    pub fn metadata(&self) -> Value {
        crate::well_known::metadata(&self.shared)
    }

    /// The JWKS document (public keys only).
    pub fn jwks(&self) -> Value {
        crate::well_known::jwks(&self.shared)
    }

    /// A router serving the resource metadata (`/.well-known/aauth-resource.json`) and the
    /// JWKS (`/.well-known/jwks.json`); merge it into the application's
    /// router, inside the AAuth layer (the layer lets unsigned requests through, and a
    /// default requirement never applies to these paths).
    #[cfg(feature = "axum")]
    pub fn well_known_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::well_known::router(self.shared.clone())
    }
}
