//! What verification established: the [`VerifiedRequest`](crate::VerifiedRequest) the layer inserts into a
//! request's extensions, and the [`VerifiedToken`](crate::VerifiedToken) it carries. Plain data, read by the
//! policy, the guards, the extractors and handlers; written only by the verifier and the
//! policy step.

use std::borrow::Cow;
use std::sync::Arc;

use crate::policy::identity::{AgentId, PersonId};
use crate::profile::Generation;
use crate::replay::key::ReplayKey;
use crate::sigkey::Scheme;
use crate::token::{TokenClaims, TokenKind};

/// What the layer learned about a request whose signature verified. Inserted into the
/// request's extensions for guards, extractors and handlers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedRequest {
    /// The `Signature-Key` scheme.
    pub scheme: Scheme,
    /// RFC 7638 thumbprint of the key that signed the request.
    pub key_thumbprint: Arc<str>,
    /// The signature label.
    pub label: Cow<'static, str>,
    /// The names of the components covered in full, in signed order: a field covered
    /// only in part (`;key="…"`, `;sf`) is left out, except the `Signature-Key` member the
    /// signature's label selects (see the signature-base rules of RFC 9421 §2.1).
    pub covered: Arc<[Cow<'static, str>]>,
    /// The signature's `created`.
    pub created: u64,
    /// For `jwks_uri`: the signer's identifier.
    pub signer: Option<Arc<str>>,
    /// For `jwt`: the verified token.
    pub token: Option<Arc<VerifiedToken>>,
    /// The wire generation to answer this request in: decided by the profile, and under
    /// [`Profile::Both`](crate::profile::Profile::Both) by whether the request used any
    /// demo-generation form (see [`Profile`](crate::Profile)).
    pub generation: Generation,
    /// The replay-store key, when this request's method is replay-checked; guards name it
    /// in their refusals so that the layer releases the entry (see [`crate::replay`]).
    pub(crate) replay: Option<ReplayKey>,
    /// The agent behind the request ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent)), set by the layer's
    /// policy step.
    pub(crate) agent: Option<AgentId>,
}

impl VerifiedRequest {
    /// The token's kind, if a token was presented.
    pub fn token_kind(&self) -> Option<TokenKind> {
        self.token.as_ref().map(|t| t.claims.kind)
    }

    /// Whether `component` (for example `@query`) was covered by the signature.
    pub fn covers(&self, component: &str) -> bool {
        self.covered.iter().any(|c| c == component)
    }
}

/// A token whose issuer signature and claims verified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// The validated claims.
    pub claims: TokenClaims,
    /// SHA-256 of the token's exact bytes (its cache key).
    pub hash: [u8; 32],
}

impl VerifiedRequest {
    /// The agent behind the request: named by an agent token, a `jwks_uri` signer or a
    /// demo-generation `agent` claim from an issuer trusted by name; otherwise the agent
    /// the signing key is bound to (see [`crate::policy`]). `None` when no agent was ever seen
    /// using this key: identify it by [`VerifiedRequest::key_thumbprint`](crate::VerifiedRequest::key_thumbprint).
    pub fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref()
    }

    /// The person: `(iss, sub)` of a verified person or auth token.
    pub fn person(&self) -> Option<PersonId> {
        let claims = &self.token.as_ref()?.claims;
        match claims.kind {
            TokenKind::Agent => None,
            _ => Some(PersonId::new(claims.iss.as_str(), claims.sub.as_deref()?)),
        }
    }
}
