//! The one state the services share, built only by the builder.
//!
//! [`Shared`] is frozen at [`AAuthBuilder::build`](crate::builder::AAuthBuilder::build):
//! the layer, every guard and the extractors read it through one `Arc`. Its fields are the
//! engine's parts (verification limits, caches, stores, policy), so that each service
//! takes from it only what its step needs.

use std::sync::Arc;
use std::time::Duration;

use crate::authz::Authz;
use crate::challenge::RejectionHook;
use crate::clock::Clock;
use crate::deferred::store::PendingStore;
use crate::discovery::admission::IdentifierPolicy;
use crate::discovery::resolve::KeyResolver;
use crate::httpsig::SignatureAlphabet;
use crate::names;
use crate::policy::ceiling::ScopeCeilings;
use crate::policy::consent::Consent;
use crate::policy::identity::AgentBindings;
use crate::policy::revocation::Revocations;
use crate::profile::Profile;
use crate::replay::store::{ReplayProtection, ReplayStore};
use crate::sigkey::AcceptedSchemes;
use crate::token::TokenPolicy;
use crate::token_cache::TokenCache;

/// Configuration shared by the layer and guards.
pub(crate) struct Shared {
    pub(crate) resource: String,
    pub(crate) scheme: String,
    /// Allowed authorities; the first is the resource identifier's own.
    pub(crate) authorities: Vec<String>,
    pub(crate) ignore_request_authority: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) resolver: Arc<dyn KeyResolver>,
    pub(crate) schemes: AcceptedSchemes,
    pub(crate) tokens: TokenPolicy,
    pub(crate) identifiers: IdentifierPolicy,
    pub(crate) token_identifiers: IdentifierPolicy,
    pub(crate) window: u64,
    pub(crate) max_skew: u64,
    pub(crate) header_cap: usize,
    pub(crate) max_components: usize,
    pub(crate) required: Vec<String>,
    pub(crate) require_query: bool,
    pub(crate) alphabet: SignatureAlphabet,
    pub(crate) max_body_bytes: usize,
    pub(crate) token_cache: TokenCache,
    pub(crate) profile: Profile,
    pub(crate) replay_protection: ReplayProtection,
    pub(crate) replay_store: Arc<dyn ReplayStore>,
    /// Signature window + skew: how long a signature could be accepted again.
    pub(crate) replay_ttl: Duration,
    pub(crate) revocations: Revocations,
    pub(crate) ceilings: ScopeCeilings,
    pub(crate) bindings: Arc<dyn AgentBindings>,
    /// The ceilings' and revocations' generations the bindings were last pinned for.
    pub(crate) pinned_for: std::sync::atomic::AtomicU64,
    pub(crate) consent: Consent,
    pub(crate) authz: Authz,
    /// Held requests of deferred routes ([`guard`](crate::guard)).
    pub(crate) pending: PendingStore,
    /// Budget counters and the metadata's budget members ([`crate::budget`]).
    pub(crate) budgets: crate::budget::options::Budgets,
    /// The revocation and authorization endpoints, when mounted.
    pub(crate) endpoints: crate::endpoint::config::Endpoints,
    /// Sessions and pending interactions of resource-managed access ([`session`](crate::session)).
    pub(crate) sessions: crate::session::store::Sessions,
    /// The batch verifier, when batching is on ([`crate::batch`]).
    pub(crate) batch: Option<Arc<crate::batch::Batcher>>,
    /// Web Bot Auth verification, when enabled ([`crate::bot`]).
    pub(crate) bots: Option<Arc<crate::bot::Bots>>,
    /// With Web Bot Auth on, where the nonces of bots on methods that are not
    /// replay-protected are remembered: a bounded store of their own, so that bot traffic
    /// cannot fill the replay store AAuth requests need.
    pub(crate) bot_nonces: Option<Arc<dyn crate::replay::store::ReplayStore>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The rejection hook, if one is configured.
    pub(crate) fn hook(&self) -> Option<&RejectionHook> {
        self.authz.hook.as_ref()
    }

    /// The paths neither the default requirement nor a guard applied router-wide applies
    /// to: the well-known documents, pending URLs while they are served (a poll
    /// carries its own requirement), the mounted endpoints (each checks its caller), and
    /// the interaction page of resource-managed access once a session guard exists (a
    /// person's browser opens it). Exact shapes only, never a prefix. None of them
    /// contains a dot segment or a percent sign, so a path equal to one is already in
    /// normal form and is routed as that resource; any other spelling
    /// (`/aauth/pending/x/../../admin`, `%2e%2e`) gets the requirement.
    pub(crate) fn is_public(&self, path: &str) -> bool {
        path == names::path::RESOURCE_METADATA
            || path == names::path::JWKS
            || self.pending.serves(path)
            || self.endpoints.serves(path)
            || self.sessions.serves_page(path)
    }

    /// [`Shared::is_public`] for a request head, by the path the agent signed (the
    /// original URI's, even inside a nested axum router).
    pub(crate) fn is_public_path(&self, request: &http::request::Parts) -> bool {
        #[cfg(feature = "axum")]
        if let Some(original) = request.extensions.get::<axum::extract::OriginalUri>() {
            return self.is_public(original.0.path());
        }
        self.is_public(request.uri.path())
    }
}

/// Marks every request the layer saw, so that guards and extractors can tell "no
/// signature" from "no layer", and extractors can answer with the layer's configuration.
#[derive(Clone)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct Inspected(pub(crate) Arc<Shared>);
