//! Authorization configuration: the resource's signing keys, scopes, resource-token
//! lifetime, the rejection hook and the layer-wide default requirement; and the
//! [`AAuth`] methods that hand out guards and rotate keys.
//!
//! Builder options are validated at [`AAuthBuilder::build`]: a scope name outside the
//! RFC 6749 grammar or a description or metadata string with control characters is a
//! start-up error, never a malformed header or document later (a configured value cannot
//! inject a header).

use crate::challenge::{RejectionBody, RejectionHook};
use crate::config::{AAuth, AAuthBuilder, ConfigError};
use crate::guard::{GuardLayer, Requirement};
use crate::jose::{Jwk, ResourceKey};
use crate::resource_token::{Keys, MAX_LIFETIME};
use crate::token::Scopes;

/// Optional descriptive members of `/.well-known/aauth-resource.json`.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetadataFields {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) documentation_uri: Option<String>,
    pub(crate) access_mode: Option<String>,
}

/// Builder-side authorization options.
#[derive(Default)]
pub(crate) struct AuthzOptions {
    signing_key: Option<ResourceKey>,
    scopes: Vec<(String, String)>,
    lifetime: Option<u64>,
    hook: Option<RejectionHook>,
    default_requirement: Option<Requirement>,
    metadata: MetadataFields,
    deny_step_up: bool,
    pub(crate) deferred: crate::deferred::DeferredOptions,
}

/// Frozen authorization configuration, inside [`AAuth`].
pub(crate) struct Authz {
    pub(crate) keys: Keys,
    pub(crate) scopes: Vec<(String, String)>,
    pub(crate) lifetime: u64,
    pub(crate) hook: Option<RejectionHook>,
    pub(crate) default_requirement: Option<Requirement>,
    pub(crate) metadata: MetadataFields,
    /// The access server resource tokens are minted for (four-party), if configured.
    pub(crate) access_server: Option<String>,
    /// Whether any trusted server could grant a scope (an auth server, a person server).
    pub(crate) grantable: bool,
    pub(crate) deny_step_up: bool,
    /// Held requests of deferred routes ([`crate::deferred`]).
    pub(crate) pending: crate::deferred::PendingStore,
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

impl AuthzOptions {
    pub(crate) fn build(self, access_servers: &[String], grantable: bool) -> Result<Authz, ConfigError> {
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
        self.deferred.validate()?;
        Ok(Authz {
            keys: Keys::new(key),
            scopes: self.scopes,
            lifetime,
            hook: self.hook,
            default_requirement: self.default_requirement,
            metadata: self.metadata,
            access_server: access_servers.first().cloned(),
            grantable,
            deny_step_up: self.deny_step_up,
            pending: crate::deferred::PendingStore::new(self.deferred),
        })
    }
}

impl AAuthBuilder {
    /// The key resource tokens are signed with and the JWKS publishes (default: a fresh
    /// key generated at start-up, which changes at every restart — fine for one replica,
    /// not for several behind one identifier).
    pub fn signing_key(mut self, key: ResourceKey) -> Self {
        self.authz.signing_key = Some(key);
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
    /// crate issues (see [`crate::deferred`]), for services that protect everything. It
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

impl AAuth {
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
    /// | [`Requirement::Rule`] | — | what the rule's [`Decision`](crate::Decision) says: `Allow` serves, `NeedAgent` / `NeedPerson` / `NeedAuth(scopes)` challenge as the rows above, `Refuse` answers its error (403 for [`Error::Forbidden`](crate::Error::Forbidden)) |
    ///
    /// Each answer for each credential is in the tables of the guards above and in
    /// [`crate::guard`].
    pub fn require(&self, requirement: Requirement) -> GuardLayer {
        GuardLayer::new(self.clone(), requirement)
    }

    /// Publishes `key` in the JWKS without signing with it yet (step 1 of the rotation
    /// procedure: wait for verifiers' caches before [`AAuth::rotate`]). `false` if its
    /// `kid` is already published.
    pub fn stage_signing_key(&self, key: ResourceKey) -> bool {
        self.shared.authz.keys.stage(key)
    }

    /// Signs resource tokens with `key` from now on, publishing it if it was not staged.
    /// The previous key stays published until [`AAuth::retire_key`]. `false` (and no
    /// change) if `kid` is already published with other key material.
    pub fn rotate(&self, key: ResourceKey) -> bool {
        self.shared.authz.keys.rotate(key)
    }

    /// Stops publishing the key `kid` (keep it at least the token lifetime plus your JWKS
    /// cache age after rotating). The active key cannot be retired.
    pub fn retire_key(&self, kid: &str) -> bool {
        self.shared.authz.keys.retire(kid)
    }

    /// The published verification keys, active key first.
    pub fn public_keys(&self) -> Vec<Jwk> {
        self.shared.authz.keys.snapshot().public_keys()
    }

    /// The `kid` resource tokens are currently signed with.
    pub fn active_kid(&self) -> String {
        self.shared.authz.keys.snapshot().active().kid().to_owned()
    }

    /// How many resource tokens this configuration has minted (for monitoring, and to
    /// prove that refusals cost no signature).
    pub fn minted_resource_tokens(&self) -> u64 {
        self.shared.authz.keys.minted()
    }
}
