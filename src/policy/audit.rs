//! Audit events: one structured `tracing` event per decision.
//!
//! The layer emits exactly one event per request it sees, at `INFO` level under the target
//! [`TARGET`] (`tower_aauth::audit`), when the request's outcome is known: refused by the
//! layer, or answered by the inner service (guards included). Route it to your log
//! pipeline with a per-target filter, for example `tower_aauth::audit=info`. When no
//! subscriber listens to the target, the layer captures nothing for it.
//!
//! # Fields
//!
//! | field | when present | value |
//! |---|---|---|
//! | `decision` | always | `allow`, `challenge`, `deny` or `reject` ([`Decision`]) |
//! | `reason` | always | a stable code: the `Signature-Error` code of a `401`, the problem code of a `403`/`503`, the `requirement` of a challenge, `verified` or `unsigned` for `allow` |
//! | `status` | always | the HTTP status answered |
//! | `method` | always | the request method |
//! | `route` | always | the request path, without the query, cut at 256 bytes |
//! | `detail` | refusals the crate made | the fixed explanation of [`crate::Error::detail`] |
//! | `agent` | a known agent | its identifier ([`VerifiedRequest::agent`]) |
//! | `agent_provider` | a known agent | the provider that vouched for it (with `agent`, the identity) |
//! | `key_thumbprint` | a verified signature | RFC 7638 thumbprint of the signing key |
//! | `scheme` | a verified signature | `hwk`, `jwks_uri` or `jwt` |
//! | `token_kind` | a verified token | its `typ` |
//! | `issuer` | a verified token | its `iss` |
//! | `subject` | a verified person or auth token | its `sub` (the person) |
//! | `scopes` | a verified auth token | the granted scopes, space-separated |
//! | `jti` | a verified token with `jti` | the token id (the revocation key with `issuer`) |
//!
//! Tokens, signatures, keys and query strings are never logged. For a refusal before
//! verification completed, the identity fields are absent: nothing unverified is logged
//! as if it were an identity.

use http::{Method, Response, StatusCode};

use super::identity::AgentId;
use crate::token::TokenKind;
use crate::verifier::VerifiedRequest;
use crate::wire;

/// The `tracing` target of audit events.
pub const TARGET: &str = "tower_aauth::audit";

/// The field names of an audit event (see the module docs for their meaning).
pub mod field {
    /// `allow`, `challenge`, `deny` or `reject`.
    pub const DECISION: &str = "decision";
    /// Stable reason code.
    pub const REASON: &str = "reason";
    /// HTTP status.
    pub const STATUS: &str = "status";
    /// Request method.
    pub const METHOD: &str = "method";
    /// Request path without query.
    pub const ROUTE: &str = "route";
    /// Fixed explanation of a refusal.
    pub const DETAIL: &str = "detail";
    /// Agent identifier.
    pub const AGENT: &str = "agent";
    /// Signing-key thumbprint.
    pub const KEY_THUMBPRINT: &str = "key_thumbprint";
    /// `Signature-Key` scheme.
    pub const SCHEME: &str = "scheme";
    /// Token `typ`.
    pub const TOKEN_KIND: &str = "token_kind";
    /// Token issuer.
    pub const ISSUER: &str = "issuer";
    /// Person subject.
    pub const SUBJECT: &str = "subject";
    /// Granted scopes.
    pub const SCOPES: &str = "scopes";
    /// Token id.
    pub const JTI: &str = "jti";
    /// Every field name, in the order above.
    pub const ALL: [&str; 14] = [
        DECISION,
        REASON,
        STATUS,
        METHOD,
        ROUTE,
        DETAIL,
        AGENT,
        KEY_THUMBPRINT,
        SCHEME,
        TOKEN_KIND,
        ISSUER,
        SUBJECT,
        SCOPES,
        JTI,
    ];
}

/// What was decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Served.
    Allow,
    /// `401` with `AAuth-Requirement`: the agent can obtain what is missing.
    Challenge,
    /// `403`: verified, but policy says no.
    Deny,
    /// Refused for a signature or credential failure (`401` + `Signature-Error`), a body
    /// too large, or a store that cannot answer (`503`).
    Reject,
}

impl Decision {
    /// The value of the `decision` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Challenge => "challenge",
            Decision::Deny => "deny",
            Decision::Reject => "reject",
        }
    }
}

/// Attached to the extensions of every response built from an [`crate::Error`], so the
/// layer can name the decision and reason of a refusal a guard made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOutcome {
    /// The decision.
    pub decision: Decision,
    /// The reason code.
    pub reason: &'static str,
    /// The fixed explanation.
    pub detail: &'static str,
}

/// Whether anyone listens to audit events (checked once per request).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// What the layer keeps about a request until its outcome is known (only when
/// [`enabled`]).
pub(crate) struct AuditContext {
    pub(crate) method: Method,
    pub(crate) route: String,
    pub(crate) verified: Option<VerifiedRequest>,
}

const MAX_ROUTE_BYTES: usize = 256;

impl AuditContext {
    pub(crate) fn new(method: &Method, path: &str) -> Self {
        let mut end = path.len().min(MAX_ROUTE_BYTES);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        AuditContext {
            method: method.clone(),
            route: path[..end].to_owned(),
            verified: None,
        }
    }

    /// The event for a response the inner service produced.
    pub(crate) fn response<B>(&self, response: &Response<B>) {
        let status = response.status();
        if let Some(outcome) = response.extensions().get::<AuditOutcome>() {
            return self.emit(outcome.decision, outcome.reason, status, Some(outcome.detail));
        }
        let (decision, reason) = if status == StatusCode::UNAUTHORIZED
            && let Some(requirement) = response.headers().get(wire::header::AAUTH_REQUIREMENT)
        {
            (Decision::Challenge, requirement_reason(requirement.as_bytes()))
        } else if status == StatusCode::FORBIDDEN {
            (Decision::Deny, "forbidden")
        } else if self.verified.is_some() {
            (Decision::Allow, "verified")
        } else {
            (Decision::Allow, "unsigned")
        };
        self.emit(decision, reason, status, None);
    }

    /// The event for a refusal the layer made.
    pub(crate) fn refusal(&self, error: &crate::Error) {
        let decision = match error {
            crate::Error::Forbidden { .. } => Decision::Deny,
            _ => Decision::Reject,
        };
        self.emit(decision, error.code(), error.status(), Some(error.detail()));
    }

    fn emit(&self, decision: Decision, reason: &str, status: StatusCode, detail: Option<&str>) {
        let verified = self.verified.as_ref();
        let token = verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
        let scopes = token.filter(|c| !c.scope.is_empty()).map(|c| c.scope.to_string());
        tracing::info!(
            target: TARGET,
            decision = decision.as_str(),
            reason,
            status = status.as_u16(),
            method = self.method.as_str(),
            route = self.route.as_str(),
            detail,
            agent = verified.and_then(VerifiedRequest::agent).map(AgentId::id),
            agent_provider = verified.and_then(VerifiedRequest::agent).map(AgentId::provider),
            key_thumbprint = verified.map(|v| &*v.key_thumbprint),
            scheme = verified.map(|v| v.scheme.as_str()),
            token_kind = token.map(|c| c.kind.typ()),
            issuer = token.map(|c| c.iss.as_str()),
            subject = token.filter(|c| c.kind != TokenKind::Agent).and_then(|c| c.sub.as_deref()),
            scopes = scopes.as_deref(),
            jti = token.and_then(|c| c.jti.as_deref()),
            "aauth decision"
        );
    }
}

/// `requirement=auth-token; resource-token="…"` → `auth-token` (a registered token, so
/// the value is one of a few fixed strings; anything else is `other`).
fn requirement_reason(value: &[u8]) -> &'static str {
    let text = std::str::from_utf8(value).unwrap_or_default();
    let requirement = text
        .split([';', ','])
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == "requirement" || *k == "require")
        .map(|(_, v)| v.trim());
    match requirement {
        Some(wire::requirement::AUTH_TOKEN) => wire::requirement::AUTH_TOKEN,
        Some(wire::requirement::PERSON_TOKEN) => wire::requirement::PERSON_TOKEN,
        Some(wire::requirement::AGENT_TOKEN) => wire::requirement::AGENT_TOKEN,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_reasons_are_fixed_strings() {
        assert_eq!(
            requirement_reason(b"requirement=auth-token; resource-token=\"x\""),
            "auth-token"
        );
        assert_eq!(requirement_reason(b"requirement=person-token"), "person-token");
        assert_eq!(requirement_reason(b"require=agent-token"), "agent-token");
        assert_eq!(requirement_reason(b"requirement=interaction; code=\"x\""), "other");
        assert_eq!(requirement_reason(b"\xff"), "other");
    }

    #[test]
    fn routes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let context = AuditContext::new(&Method::GET, &long);
        assert!(context.route.len() <= MAX_ROUTE_BYTES);
        assert!(long.starts_with(&context.route));
    }
}
