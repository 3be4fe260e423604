//! The builder of the [`AAuth`](crate::AAuth) handle.
//!
//! Everything the layer needs per request is computed here once, at build time
//! (canonical authorities, the `Accept-Signature-Scheme` value, the required component
//! list), into the one [`Shared`] state behind an `Arc`: cloning an [`AAuth`](crate::AAuth) or a layer
//! is a reference count increment.
//!
//! Options that weaken the protocol's guarantees (plain http on loopback, ignoring the
//! request's authority) sit behind [`AAuthBuilder::dangerous`], so that they are visible
//! in code review.

use std::sync::Arc;
use std::time::Duration;

use crate::aauth::AAuth;
use crate::authz::{Authz, MetadataFields};
use crate::challenge::RejectionBody;
use crate::challenge::RejectionHook;
use crate::clock::{Clock, SystemClock};
use crate::deferred::DeferredOptions;
use crate::discovery::admission::IdentifierPolicy;
use crate::discovery::cache::DiscoveryConfig;
use crate::discovery::resolve::Fetch;
use crate::discovery::resolve::KeyResolver;
use crate::error::ConfigError;
use crate::guard::requirement::Requirement;
use crate::httpsig::{DEFAULT_HEADER_CAP, DEFAULT_MAX_COMPONENTS, SignatureAlphabet};
use crate::jose::AlgPolicy;
use crate::jose::ResourceKey;
use crate::policy::ceiling::ScopeCeilings;
use crate::policy::consent::Consent;
use crate::policy::consent::GrantPolicy;
use crate::policy::identity::AgentBindings;
use crate::policy::identity::MemoryAgentBindings;
use crate::policy::revocation::Revocations;
use crate::profile::Profile;
use crate::replay::memory::MemoryReplayStore;
use crate::replay::store::ReplayOptions;
use crate::resource_token::{Keys, MAX_LIFETIME};
use crate::sigkey::{AcceptedSchemes, Scheme};
use crate::state::Shared;
use crate::token::Scopes;
use crate::token::{IssuerTrust, TokenKind, TokenPolicy};
use crate::token_cache::{TokenCache, TokenCacheOptions};

/// Builds an [`AAuth`](crate::AAuth). See each method for its default.
pub struct AAuthBuilder {
    resource: String,
    extra_authorities: Vec<String>,
    ignore_request_authority: bool,
    allow_http_loopback: bool,
    clock: Arc<dyn Clock>,
    resolver: Option<Arc<dyn KeyResolver>>,
    discovery: Option<DiscoveryConfig>,
    fetcher: Option<Arc<dyn Fetch>>,
    schemes: Vec<Scheme>,
    tokens: TokenPolicy,
    window: u64,
    max_skew: u64,
    header_cap: usize,
    max_components: usize,
    extra_required: Vec<String>,
    require_query: bool,
    alphabet: SignatureAlphabet,
    max_body_bytes: usize,
    token_cache: TokenCacheOptions,
    batch: Option<crate::batch::BatchOptions>,
    profile: Profile,
    replay: ReplayOptions,
    revocations: Revocations,
    ceilings: ScopeCeilings,
    bindings: Option<Arc<dyn AgentBindings>>,
    consent: Consent,
    endpoints: crate::endpoint::config::Endpoints,
    pub(crate) authz: AuthzOptions,
    sessions: crate::session::SessionOptions,
    web_bot_auth: Option<crate::bot::WebBotAuthOptions>,
}

impl std::fmt::Debug for AAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthBuilder")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl AAuthBuilder {
    pub(crate) fn new(resource: String) -> Self {
        AAuthBuilder {
            tokens: TokenPolicy::new(resource.clone()),
            resource,
            extra_authorities: Vec::new(),
            ignore_request_authority: false,
            allow_http_loopback: false,
            clock: Arc::new(SystemClock),
            resolver: None,
            discovery: None,
            fetcher: None,
            schemes: vec![Scheme::Jwt, Scheme::JwksUri, Scheme::Hwk],
            window: 60,
            max_skew: 60,
            header_cap: DEFAULT_HEADER_CAP,
            max_components: DEFAULT_MAX_COMPONENTS,
            extra_required: Vec::new(),
            require_query: false,
            alphabet: SignatureAlphabet::Lenient,
            max_body_bytes: 1024 * 1024,
            token_cache: TokenCacheOptions::new(),
            batch: None,
            profile: Profile::Draft11,
            replay: ReplayOptions::new(),
            revocations: Revocations::new(),
            ceilings: ScopeCeilings::new(),
            bindings: None,
            consent: Consent::default(),
            endpoints: Default::default(),
            authz: Default::default(),
            sessions: crate::session::SessionOptions::new(),
            web_bot_auth: None,
        }
    }

    /// Verifies Web Bot Auth signatures too (off by default): requests signed with
    /// `tag="web-bot-auth"` and no `Signature-Key` are verified against their
    /// `Signature-Agent`'s key directory and handed on as a
    /// [`VerifiedBot`](crate::bot::VerifiedBot), never as an AAuth agent. Directories are
    /// fetched with the [`fetcher`](Self::fetcher) (default: the guarded fetcher) under the
    /// [`discovery`](Self::discovery) limits, which may then be set together with a
    /// [`key_resolver`](Self::key_resolver). See [`crate::bot`].
    pub fn web_bot_auth(mut self, options: crate::bot::WebBotAuthOptions) -> Self {
        self.web_bot_auth = Some(options);
        self
    }

    /// Also serve requests addressed to `authority` (`host[:port]`), for example a second
    /// DNS name. `@authority` is taken from this list, never from `Host` unchecked.
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.extra_authorities.push(authority.into().to_ascii_lowercase());
        self
    }

    /// Injects the clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Injects a shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the key resolver (default: discovery over HTTPS with [`crate::discovery::ReqwestFetch`]).
    pub fn key_resolver(mut self, resolver: impl KeyResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Sizes, lifetimes, budgets and the issuer allow-list of the built-in discovery
    /// resolver (default: [`DiscoveryConfig::default`]).
    pub fn discovery(mut self, config: DiscoveryConfig) -> Self {
        self.discovery = Some(config);
        self
    }

    /// The HTTP client of the built-in discovery resolver (default: the guarded
    /// [`crate::discovery::ReqwestFetch`]). Bring your own for custom TLS roots, mTLS or an
    /// egress proxy; identifier admission, caching and budgets still apply.
    pub fn fetcher(mut self, fetch: impl Fetch) -> Self {
        self.fetcher = Some(Arc::new(fetch));
        self
    }

    /// Which `Signature-Key` schemes the layer accepts (default: `jwt`, `jwks_uri`, `hwk`,
    /// in that order of preference). Others are `unsupported_scheme`.
    pub fn accept_schemes(mut self, schemes: impl IntoIterator<Item = Scheme>) -> Self {
        self.schemes = schemes.into_iter().collect();
        self
    }

    /// Which token kinds are accepted in `Signature-Key` (default: agent, person, auth).
    pub fn accept_tokens(mut self, kinds: impl IntoIterator<Item = TokenKind>) -> Self {
        self.tokens.accepted = kinds.into_iter().collect();
        self
    }

    /// Trusts `issuer` as an access server: its `aa-auth+jwt` (`dwk` `aauth-access.json`)
    /// are accepted. Repeatable.
    pub fn auth_server(mut self, issuer: impl Into<String>) -> Self {
        self.tokens.access_servers.push(issuer.into());
        self
    }

    /// Trusts `issuer` as a person server: its person tokens identify people, and the
    /// scopes and `authorization_details` of its auth tokens (`dwk` `aauth-person.json`)
    /// are honoured as issued (see [`GrantPolicy`](crate::policy::GrantPolicy)). Repeatable.
    pub fn person_server(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        if let IssuerTrust::Listed(list) = &mut self.tokens.person_servers {
            list.push(issuer.clone());
        }
        self.consent.trusted.push(issuer);
        self
    }

    /// Accepts the tokens of any person server (draft -11's open three-party posture): person
    /// tokens identify their `(iss, sub)`, but the grants of a person server not named
    /// with [`AAuthBuilder::person_server`] are consent, not entitlement — honoured only
    /// as far as a [`AAuthBuilder::grant_policy`] approves. Fetches go to identifiers
    /// chosen by callers, bounded only by egress admission and the discovery budget: opt
    /// in deliberately.
    pub fn accept_any_person_server(mut self) -> Self {
        self.tokens.person_servers = IssuerTrust::Any;
        self
    }

    /// The resource's own policy for grants from person servers not trusted by name,
    /// keyed on the person `(iss, sub)` (default: none, so such grants serve no scope).
    pub fn grant_policy(mut self, policy: impl GrantPolicy) -> Self {
        self.consent.policy = Some(Arc::new(policy));
        self
    }

    /// The store of key → agent bindings (default: a [`MemoryAgentBindings`] of
    /// [`MemoryAgentBindings::DEFAULT_MAX_BYTES`], for one process). See
    /// [`crate::policy`].
    pub fn agent_bindings(mut self, bindings: impl AgentBindings) -> Self {
        self.bindings = Some(Arc::new(bindings));
        self
    }

    /// Restricts agent tokens to these agent providers (default: any).
    pub fn agent_providers(mut self, issuers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tokens.agent_providers = IssuerTrust::Listed(issuers.into_iter().map(Into::into).collect());
        self
    }

    /// The `created` window in seconds (default 60): older signatures are `invalid_signature`.
    pub fn signature_window(mut self, seconds: u64) -> Self {
        self.window = seconds;
        self
    }

    /// How far `created` or a token's `iat` may be ahead of our clock (default 60 s):
    /// beyond it, `clock_skew`.
    pub fn max_clock_skew(mut self, seconds: u64) -> Self {
        self.max_skew = seconds;
        self.tokens.max_iat_skew = seconds;
        self
    }

    /// Components every signature must cover in addition to `@method`, `@authority`,
    /// `@path` and `signature-key` (for example `content-digest`).
    pub fn require_components(mut self, components: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.extra_required.extend(components.into_iter().map(Into::into));
        self
    }

    /// Requires `@query` to be covered whenever the request has a query (default: off,
    /// because several agent libraries do not cover it).
    pub fn require_query_coverage(mut self, required: bool) -> Self {
        self.require_query = required;
        self
    }

    /// Which wire generations are accepted and answered (default [`Profile::Draft11`]).
    /// [`Profile::Legacy`] and [`Profile::Both`] add the demo generation's forms; see
    /// [`Profile`](crate::Profile).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Cap on each signature header and each covered field, in bytes, all lines of a
    /// field together (default 8 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.header_cap = bytes;
        self
    }

    /// Cap on a body buffered to check `Content-Digest` (default 1 MiB; larger is `413`).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Refuses base64url `Signature` byte sequences (RFC 9651 strictness). By default both
    /// alphabets are accepted because PyPI `aauth` sends base64url.
    pub fn refuse_base64url_signatures(mut self) -> Self {
        self.alphabet = SignatureAlphabet::StandardOnly;
        self
    }

    /// Verifies the signatures of concurrent requests together (default: off; see
    /// [`BatchOptions`](crate::BatchOptions)). A request arriving when no other
    /// verification is in flight is still verified at once.
    pub fn batch_verification(mut self, options: crate::batch::BatchOptions) -> Self {
        self.batch = Some(options);
        self
    }

    /// Bounds of the verified-token cache (default: [`TokenCacheOptions::new`](crate::TokenCacheOptions::new)).
    pub fn token_cache(mut self, options: TokenCacheOptions) -> Self {
        self.token_cache = options;
        self
    }

    /// Which requests are checked against which replay store (default:
    /// [`ReplayOptions::new`]: unsafe methods, an in-process store). See [`crate::replay`].
    pub fn replay(mut self, options: ReplayOptions) -> Self {
        self.replay = options;
        self
    }

    /// The revocation set (default: empty). Keep a clone of the handle to revoke or reload
    /// at run time; [`AAuth::revocations`](crate::AAuth::revocations) returns it too.
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// Per-agent scope ceilings (default: none). Hot-reloadable through the handle.
    pub fn scope_ceilings(mut self, ceilings: ScopeCeilings) -> Self {
        self.ceilings = ceilings;
        self
    }

    /// Options that weaken the protocol's guarantees, for development and special
    /// deployments: `builder.dangerous().allow_http_loopback()` returns the builder, so
    /// each weakening is one visible, greppable call in the chain.
    pub fn dangerous(self) -> DangerousAAuthBuilder {
        DangerousAAuthBuilder { builder: self }
    }

    /// Validates and freezes the configuration.
    ///
    /// # Errors
    ///
    /// Every refusal quotes the value and states the rule it breaks, for example:
    ///
    /// * an identifier (the resource's, an [`auth_server`](Self::auth_server),
    ///   [`person_server`](Self::person_server) or
    ///   [`agent_providers`](Self::agent_providers) entry) that is not exactly
    ///   `https://host`: a trailing `/`, a path, a port (`:443` included), a query or
    ///   fragment, userinfo, upper case, an IP address, a single-label name, `http` (except
    ///   on loopback with [`dangerous().allow_http_loopback()`](DangerousAAuthBuilder::allow_http_loopback),
    ///   where a port is allowed);
    /// * an extra [`authority`](Self::authority) that is not `host[:port]`;
    /// * a [`signing_keys_from`](Self::signing_keys_from) directory that cannot be read or
    ///   breaks one of its rules (the message names the file and the reason);
    /// * a [`scope`](Self::scope) outside the RFC 6749 grammar, a description or metadata
    ///   value with control characters, a resource-token lifetime outside 1–300 s;
    /// * declared scopes that no trusted server could ever grant: [`scope`](Self::scope)
    ///   was called but neither [`auth_server`](Self::auth_server),
    ///   [`person_server`](Self::person_server) nor
    ///   [`accept_any_person_server`](Self::accept_any_person_server) was, so every
    ///   `require_scopes` route would be unreachable. (A configuration that declares no
    ///   scope and trusts no server is the legitimate agent-identity-only posture; a
    ///   `require_scopes` guard built on it logs a `tracing` warning once, at target
    ///   `tower_aauth`.)
    ///
    /// ```
    /// use tower_aauth::AAuth;
    ///
    /// let slash = AAuth::builder("https://notes.example/").build().unwrap_err().to_string();
    /// assert!(slash.contains(r#""https://notes.example/" ends with "/""#), "{slash}");
    /// let port = AAuth::builder("https://notes.example:8443").build().unwrap_err().to_string();
    /// assert!(port.contains(r#"has the port ":8443""#), "{port}");
    /// ```
    pub fn build(self) -> Result<AAuth, ConfigError> {
        let identifiers = if self.allow_http_loopback {
            IdentifierPolicy::allowing_http_loopback()
        } else {
            IdentifierPolicy::strict()
        };
        if !identifiers.admits(&self.resource) {
            return Err(crate::diagnose::refused_identifier(
                "the resource identifier",
                &self.resource,
                &identifiers,
            ));
        }
        let (scheme, authority) = self
            .resource
            .split_once("://")
            .map(|(s, a)| (s.to_owned(), a.to_owned()))
            .ok_or_else(|| ConfigError::new("the resource identifier has no scheme"))?;
        let mut authorities = vec![authority];
        for extra in self.extra_authorities {
            if extra.is_empty()
                || !extra
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            {
                return Err(crate::diagnose::refused_authority(&extra));
            }
            authorities.push(extra);
        }
        if self.schemes.is_empty() {
            return Err(ConfigError::new("at least one Signature-Key scheme must be accepted"));
        }
        let mut required: Vec<String> = ["@method", "@authority", "@path", "signature-key"]
            .map(str::to_owned)
            .to_vec();
        for component in self.extra_required {
            let valid = !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"@-_.".contains(&b));
            if !valid {
                return Err(ConfigError::new(format!(
                    "the required component {component:?} is not a component name: lower-case \
                     a-z, 0-9, \"@\", \"-\", \"_\" and \".\" only (for example \"content-digest\")"
                )));
            }
            if !required.contains(&component) {
                required.push(component);
            }
        }
        let person_servers = match &self.tokens.person_servers {
            IssuerTrust::Listed(list) => list.as_slice(),
            IssuerTrust::Any => &[],
        };
        let agent_providers = match &self.tokens.agent_providers {
            IssuerTrust::Listed(list) => list.as_slice(),
            IssuerTrust::Any => &[],
        };
        for (role, list) in [
            ("the auth server identifier", &self.tokens.access_servers[..]),
            ("the person server identifier", person_servers),
            ("the agent provider identifier", agent_providers),
        ] {
            if let Some(refused) = list.iter().find(|issuer| !identifiers.admits(issuer)) {
                return Err(crate::diagnose::refused_identifier(role, refused, &identifiers));
            }
        }
        let can_grant = !self.tokens.access_servers.is_empty()
            || !person_servers.is_empty()
            || matches!(self.tokens.person_servers, IssuerTrust::Any);
        let budgets = self
            .authz
            .budgets
            .clone()
            .build(self.clock.clone(), self.allow_http_loopback)?;
        let (authz, deferred) = self
            .authz
            .build(&self.tokens.access_servers, can_grant, self.clock.now())?;
        let pending = crate::deferred::PendingStore::new(deferred);
        self.endpoints.validate(&self.schemes, &self.tokens, can_grant)?;
        self.sessions.validate()?;
        let sessions = crate::session::store::Sessions::new(self.sessions);
        let mut tokens = self.tokens;
        tokens.max_iat_skew = self.max_skew;
        if self.profile.accepts_legacy() {
            tokens.alg = AlgPolicy::Legacy;
            tokens.legacy = true;
        }
        // One budget of new origins for AAuth discovery and bot directories together.
        let new_origins = crate::discovery::cache::NewOrigins::new(
            self.discovery.as_ref().map_or_else(
                || crate::discovery::cache::DiscoveryConfig::default().new_issuers_per_minute,
                |config| config.new_issuers_per_minute,
            ),
            self.clock.now(),
        );
        let bots = match self.web_bot_auth {
            None => None,
            Some(options) => {
                let fetch = match &self.fetcher {
                    Some(fetch) => fetch.clone(),
                    None => default_fetch(&identifiers)?,
                };
                let cache = crate::bot::DirectoryCache::new(
                    fetch,
                    self.clock.clone(),
                    self.discovery.clone().unwrap_or_default(),
                    self.max_skew,
                    new_origins.clone(),
                );
                Some(Arc::new(crate::bot::Bots {
                    options,
                    cache,
                    identifiers: identifiers.clone(),
                    nonce_secret: Default::default(),
                }))
            }
        };
        let resolver: Arc<dyn KeyResolver> = match self.resolver {
            // With Web Bot Auth on, both also configure the directory fetches.
            Some(_) if (self.discovery.is_some() || self.fetcher.is_some()) && bots.is_none() => {
                return Err(ConfigError::new(
                    "discovery() and fetcher() configure the built-in resolver; they cannot be combined with key_resolver()",
                ));
            }
            Some(resolver) => resolver,
            None => {
                let fetch = match self.fetcher {
                    Some(fetch) => fetch,
                    None => default_fetch(&identifiers)?,
                };
                Arc::new(
                    crate::discovery::cache::DiscoveryResolver::builder(fetch)
                        .identifiers(identifiers.clone())
                        .config(self.discovery.unwrap_or_default())
                        .alg_policy(tokens.alg)
                        .clock(self.clock.clone())
                        .new_origins(new_origins)
                        .build(),
                )
            }
        };
        let token_cache = TokenCache::new(
            self.token_cache.max_bytes,
            self.token_cache.max_entries,
            self.token_cache.max_age,
            self.clock.clone(),
        );
        Ok(AAuth {
            shared: Arc::new(Shared {
                resource: self.resource,
                scheme,
                authorities,
                ignore_request_authority: self.ignore_request_authority,
                clock: self.clock,
                resolver,
                schemes: AcceptedSchemes::new(self.schemes),
                tokens,
                token_identifiers: identifiers.clone(),
                identifiers,
                window: self.window,
                max_skew: self.max_skew,
                header_cap: self.header_cap,
                max_components: self.max_components,
                required,
                require_query: self.require_query,
                alphabet: self.alphabet,
                max_body_bytes: self.max_body_bytes,
                token_cache,
                profile: self.profile,
                replay_protection: self.replay.protection,
                replay_store: Arc::new(crate::replay::measured::Measured(
                    self.replay
                        .store
                        .unwrap_or_else(|| Arc::new(MemoryReplayStore::default())),
                )),
                // +1: `created` and our clock have one-second resolution.
                replay_ttl: Duration::from_secs(self.window.saturating_add(self.max_skew).saturating_add(1)),
                revocations: self.revocations,
                ceilings: self.ceilings,
                bindings: self
                    .bindings
                    .unwrap_or_else(|| Arc::new(MemoryAgentBindings::default())),
                pinned_for: std::sync::atomic::AtomicU64::new(0),
                consent: self.consent,
                authz,
                pending,
                budgets,
                endpoints: self.endpoints,
                sessions,
                batch: self.batch.map(|options| Arc::new(crate::batch::Batcher::new(options))),
                bot_nonces: bots.as_ref().map(|bots| {
                    Arc::new(MemoryReplayStore::new(bots.options.nonce_capacity))
                        as Arc<dyn crate::replay::store::ReplayStore>
                }),
                bots,
            }),
        })
    }
}

// from src/authz.rs
impl AAuthBuilder {
    /// The key resource tokens are signed with and the JWKS publishes (default: a fresh
    /// key generated at start-up, which changes at every restart — fine for one replica,
    /// not for several behind one identifier). Replaces a
    /// [`signing_keys_from`](Self::signing_keys_from) directory.
    pub fn signing_key(mut self, key: ResourceKey) -> Self {
        self.authz.signing_key = Some(key);
        self.authz.signing_keys_dir = None;
        self
    }

    /// Reads the signing keys from the directory `dir` that every replica mounts, and
    /// follows the schedule its file names state; replaces a
    /// [`signing_key`](Self::signing_key). [`build`](Self::build) reads the directory and
    /// refuses one that breaks a rule below.
    ///
    #[doc = include_str!("../docs/key-ring.md")]
    pub fn signing_keys_from(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.authz.signing_keys_dir = Some(dir.into());
        self.authz.signing_key = None;
        self
    }

    /// Declares a scope and its Markdown description (`scope_descriptions` in the
    /// metadata). Repeatable.
    pub fn scope(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.authz.scopes.push((name.into(), description.into()));
        self
    }

    /// Lifetime of minted resource tokens in seconds (default and maximum 300).
    pub fn resource_token_lifetime(mut self, seconds: u64) -> Self {
        self.authz.lifetime = Some(seconds);
        self
    }

    /// Shapes the body of every `401`/`403`/`5xx` this crate answers. Status and protocol
    /// headers (`AAuth-Requirement`, `Signature-Error`, `Cache-Control`, …) are set after
    /// the hook and cannot be changed by it. Return `None` to keep the default body.
    pub fn rejection_hook(
        mut self,
        hook: impl Fn(&crate::challenge::Rejection<'_>) -> Option<RejectionBody> + Send + Sync + 'static,
    ) -> Self {
        self.authz.hook = Some(std::sync::Arc::new(hook));
        self
    }

    /// A requirement the layer itself enforces on every request except the well-known
    /// documents (exact paths) and, once they are served, pending URLs of the shape this
    /// crate issues (see [`guard`](crate::guard)), for services that protect everything. It
    /// runs before routing, so an unknown path is challenged rather than `404`; prefer
    /// per-route guards otherwise.
    pub fn default_requirement(mut self, requirement: Requirement) -> Self {
        self.authz.default_requirement = Some(requirement);
        self
    }

    /// Answers `403 insufficient_scope` instead of a step-up challenge when a valid auth
    /// token lacks a required scope (default: step-up, as [AAuth draft -11][draft-11]
    /// prefers).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub fn deny_insufficient_scope(mut self) -> Self {
        self.authz.deny_step_up = true;
        self
    }

    /// `name` in the resource metadata.
    pub fn metadata_name(mut self, name: impl Into<String>) -> Self {
        self.authz.metadata.name = Some(name.into());
        self
    }

    /// `description` (Markdown) in the resource metadata.
    pub fn metadata_description(mut self, description: impl Into<String>) -> Self {
        self.authz.metadata.description = Some(description.into());
        self
    }

    /// `documentation_uri` in the resource metadata (https).
    pub fn documentation_uri(mut self, uri: impl Into<String>) -> Self {
        self.authz.metadata.documentation_uri = Some(uri.into());
        self
    }

    /// `access_mode` in the resource metadata (advisory; for example `auth-token`).
    pub fn access_mode(mut self, mode: impl Into<String>) -> Self {
        self.authz.metadata.access_mode = Some(mode.into());
        self
    }
}

// from src/budget/mod.rs
impl AAuthBuilder {
    /// Budgets for the routes metered with [`AAuth::meter`](crate::AAuth::meter): the
    /// units and usage endpoint the metadata publishes, and where the counters live
    /// (default: in process, 16 MiB; see [`crate::budget`]).
    pub fn budgets(mut self, options: crate::budget::BudgetOptions) -> Self {
        self.authz.budgets = options;
        self
    }
}

// from src/session
impl AAuthBuilder {
    /// Lifetimes, limits and the store of resource-managed access (the routes guarded by
    /// [`AAuth::require_session`](crate::AAuth::require_session); see [`session`](crate::session)).
    pub fn sessions(mut self, options: crate::session::SessionOptions) -> Self {
        self.sessions = options;
        self
    }
}

// from src/deferred/mod.rs
impl AAuthBuilder {
    /// Serves the revocation endpoint ([AAuth draft -11, "Token Revocation"][draft-11])
    /// at `path` (for example `/aauth/revoke`) and advertises it as
    /// `revocation_endpoint` in the resource metadata: the layer answers it itself. A
    /// trusted access or person server revokes a token it issued with a signed `POST`
    /// of `{"jti", "exp"}`; the entry joins [`AAuth::revocations`](crate::AAuth::revocations)
    /// (published to every replica when the set is synced) until the token expires.
    /// It answers `200` (known token or not), `400 invalid_request` (a body that is not
    /// exactly that), `401` with `Signature-Error` (not a `jwks_uri` signature covering
    /// `content-type` and `content-digest`), `403 unsupported_iss` (a caller that is not
    /// a configured access server or trusted person server) and `429 rate_limited` with
    /// `Retry-After` (each caller: 100 requests at once, 20 more a second, 1 MiB of live
    /// entries). Opt-in: nothing is served at `path` otherwise.
    ///
    /// `build` fails if `path` is not a plain absolute path or collides with a path the
    /// crate serves.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub fn revocation_endpoint(mut self, path: impl Into<String>) -> Self {
        self.endpoints.revocation = Some(path.into());
        self
    }

    /// Serves the authorization endpoint ([AAuth draft -11, "Authorization
    /// Endpoint"][draft-11]) at `path` (for example `/aauth/authorize`) and advertises
    /// it as `authorization_endpoint` in the resource metadata: an agent presenting a
    /// person token `POST`s `{"scope", "account"?}` and is answered a resource token
    /// for those scopes (`400 invalid_scope` for a scope not declared with
    /// [`scope`](Self::scope)). `accounts` decides whether the person `(iss, sub)`
    /// holds a requested `account` ([`AccountDecision`](crate::policy::AccountDecision));
    /// a resource without accounts passes `|_, _| AccountDecision::NotHeld`.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub fn authorization_endpoint(
        mut self,
        path: impl Into<String>,
        accounts: impl Fn(&crate::policy::PersonId, &str) -> crate::policy::AccountDecision + Send + Sync + 'static,
    ) -> Self {
        self.endpoints.authorization = Some((path.into(), Arc::new(accounts)));
        self
    }

    /// Limits of deferred delivery for the routes that opt in with
    /// [`GuardLayer::deferred`](crate::guard::GuardLayer::deferred) (see [`guard`](crate::guard)).
    pub fn deferred_delivery(mut self, options: DeferredOptions) -> Self {
        self.authz.deferred = options;
        self
    }
}

/// Builder-side authorization options.
#[derive(Default)]
pub(crate) struct AuthzOptions {
    signing_key: Option<ResourceKey>,
    signing_keys_dir: Option<std::path::PathBuf>,
    scopes: Vec<(String, String)>,
    lifetime: Option<u64>,
    hook: Option<RejectionHook>,
    default_requirement: Option<Requirement>,
    metadata: MetadataFields,
    deny_step_up: bool,
    pub(crate) deferred: crate::deferred::DeferredOptions,
    budgets: crate::budget::options::BudgetOptions,
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

impl AuthzOptions {
    /// The frozen configuration, and the deferral limits for the pending store.
    pub(crate) fn build(
        self,
        access_servers: &[String],
        grantable: bool,
        now: u64,
    ) -> Result<(Authz, DeferredOptions), ConfigError> {
        for (scope, description) in &self.scopes {
            if Scopes::parse(scope).is_none_or(|s| s.len() != 1) {
                return Err(ConfigError::new(format!(
                    "scope {scope:?} is not a single RFC 6749 scope token: one or more of the \
                     visible ASCII characters except space, '\"' and '\\'"
                )));
            }
            if !printable(description) {
                return Err(ConfigError::new(format!(
                    "the description of scope {scope:?} contains control characters (line breaks \
                     included): descriptions are single-line text"
                )));
            }
        }
        if !self.scopes.is_empty() && !grantable {
            return Err(crate::diagnose::no_grantor(&self.scopes));
        }
        let m = &self.metadata;
        for (member, text) in [
            ("name", &m.name),
            ("description", &m.description),
            ("access_mode", &m.access_mode),
        ] {
            if let Some(text) = text.as_deref().filter(|text| !printable(text)) {
                return Err(ConfigError::new(format!(
                    "the metadata {member} {text:?} contains control characters (line breaks included)"
                )));
            }
        }
        if let Some(uri) = &m.documentation_uri
            && (!uri.starts_with("https://") || !uri.bytes().all(|b| (0x21..0x7f).contains(&b)))
        {
            return Err(ConfigError::new(format!(
                "documentation_uri {uri:?} is not an https URL: https://…, visible ASCII only"
            )));
        }
        let lifetime = self.lifetime.unwrap_or(MAX_LIFETIME);
        if lifetime == 0 || lifetime > MAX_LIFETIME {
            return Err(ConfigError::new(format!(
                "the resource-token lifetime {lifetime} s is out of range: from 1 to 300 seconds"
            )));
        }
        let keys = match self.signing_keys_dir {
            Some(dir) => Keys::from_directory(dir, now)?,
            None => {
                let key = self.signing_key.unwrap_or_else(ResourceKey::generate);
                if !key
                    .kid()
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
                {
                    return Err(ConfigError::new(format!(
                        "the signing key's kid {:?} is not visible ASCII without '\"' and '\\'",
                        key.kid()
                    )));
                }
                Keys::new(key)
            }
        };
        self.deferred.validate()?;
        let authz = Authz {
            keys,
            scopes: self.scopes,
            lifetime,
            hook: self.hook,
            default_requirement: self.default_requirement,
            metadata: self.metadata,
            access_server: access_servers.first().cloned(),
            grantable,
            deny_step_up: self.deny_step_up,
        };
        Ok((authz, self.deferred))
    }
}

#[cfg(feature = "reqwest")]
fn default_fetch(identifiers: &IdentifierPolicy) -> Result<Arc<dyn Fetch>, ConfigError> {
    Ok(if identifiers.allows_http_loopback() {
        Arc::new(crate::discovery::ReqwestFetch::allowing_http_loopback())
    } else {
        Arc::new(crate::discovery::ReqwestFetch::new())
    })
}

#[cfg(not(feature = "reqwest"))]
fn default_fetch(_: &IdentifierPolicy) -> Result<Arc<dyn Fetch>, ConfigError> {
    Err(ConfigError::new(
        "without the `reqwest` feature give a fetcher() or a key_resolver()",
    ))
}

/// Options that weaken the protocol's guarantees. Reach them with
/// [`AAuthBuilder::dangerous`]; each returns the builder.
pub struct DangerousAAuthBuilder {
    builder: AAuthBuilder,
}

impl std::fmt::Debug for DangerousAAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DangerousAAuthBuilder")
    }
}

impl DangerousAAuthBuilder {
    /// Admits `http://127.0.0.1:PORT`, `http://localhost:PORT` and `http://[::1]:PORT` as
    /// identifiers (ours, signers', issuers'), for local development and demos.
    pub fn allow_http_loopback(mut self) -> AAuthBuilder {
        self.builder.allow_http_loopback = true;
        self.builder
    }

    /// Always uses the resource identifier's authority for `@authority`, whatever `Host`
    /// says. For deployments behind a proxy that rewrites `Host`; cross-host replay is then
    /// stopped only by `aud` and the signature covering our authority.
    pub fn ignore_request_authority(mut self) -> AAuthBuilder {
        self.builder.ignore_request_authority = true;
        self.builder
    }

    /// Honours the scopes and `authorization_details` of **any** person server's auth
    /// tokens as issued, as if each were trusted by name. Any server can be a person
    /// server, so any caller can then grant itself any scope: only for resources whose
    /// scopes protect nothing a stranger may not do, or that check grants in handlers.
    pub fn honour_any_person_server_grants(mut self) -> AAuthBuilder {
        self.builder.consent.any = true;
        self.builder
    }
}
