//! Audit events: one structured `tracing` event per decision (documented on
//! [`AuditField`]).

use http::{Method, Response, StatusCode};

use super::identity::AgentId;
use crate::error::{AuditDecision, AuditOutcome};
use crate::names;
use crate::token::TokenKind;
use crate::verified::VerifiedRequest;

/// The `tracing` target of audit events: route it with a per-target filter, for example
/// `tower_aauth::audit=info`.
pub const AUDIT_TARGET: &str = "tower_aauth::audit";

/// Audit events: one structured `tracing` event per decision.
///
/// The layer emits exactly one event per request it sees, at `INFO` level under the target
/// [`AUDIT_TARGET`] (`tower_aauth::audit`), when the request's outcome is known: refused by the
/// layer, or answered by the inner service (guards included). Route it to your log
/// pipeline with a per-target filter, for example `tower_aauth::audit=info`. When no
/// subscriber listens to the target, the layer captures nothing for it.
///
/// # Fields
///
/// | field | when present | value |
/// |---|---|---|
/// | `decision` | always | `allow`, `challenge`, `deny` or `reject` |
/// | `reason` | always | a stable code: the `Signature-Error` code of a `401`, the problem code of a `403`/`503`, the `requirement` of a challenge, `verified` or `unsigned` for `allow` |
/// | `status` | always | the HTTP status answered |
/// | `method` | always | the request method |
/// | `route` | always | the request path, without the query, cut at 256 bytes |
/// | `detail` | refusals the crate made | the fixed explanation of [`crate::error::Error::detail`] |
/// | `kind` | a verified caller | `agent` (an AAuth signature) or `bot` (a Web Bot Auth signature, [`crate::bot`]) |
/// | `bot_origin` | a verified bot | the origin of its key directory |
/// | `agent` | a known agent | its identifier ([`VerifiedRequest::agent`](crate::VerifiedRequest::agent)) |
/// | `agent_provider` | a known agent | the provider that vouched for it (with `agent`, the identity) |
/// | `key_thumbprint` | a verified signature (a bot's included) | RFC 7638 thumbprint of the signing key |
/// | `scheme` | a verified signature | `hwk`, `jwks_uri` or `jwt` |
/// | `token_kind` | a verified token | its `typ` |
/// | `issuer` | a verified token | its `iss` |
/// | `subject` | a verified person or auth token | its `sub` (the person) |
/// | `scopes` | a verified auth token | the granted scopes, space-separated |
/// | `jti` | a verified token with `jti` | the token id (the revocation key with `issuer`) |
///
/// Tokens, signatures, keys and query strings are never logged. For a refusal before
/// verification completed, the identity fields are absent: nothing unverified is logged
/// as if it were an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditField {
    /// `decision`: `allow`, `challenge`, `deny` or `reject`.
    Decision,
    /// `reason`: a stable code.
    Reason,
    /// `status`: the HTTP status answered.
    Status,
    /// `method`: the request method.
    Method,
    /// `route`: the request path without the query.
    Route,
    /// `detail`: the fixed explanation of a refusal.
    Detail,
    /// `kind`: `agent` or `bot`.
    Kind,
    /// `bot_origin`: a verified bot's directory origin.
    BotOrigin,
    /// `agent`: the agent identifier.
    Agent,
    /// `agent_provider`: the provider that vouched for the agent.
    AgentProvider,
    /// `key_thumbprint`: the signing key's thumbprint.
    KeyThumbprint,
    /// `scheme`: the `Signature-Key` scheme.
    Scheme,
    /// `token_kind`: the token `typ`.
    TokenKind,
    /// `issuer`: the token issuer.
    Issuer,
    /// `subject`: the person.
    Subject,
    /// `scopes`: the granted scopes.
    Scopes,
    /// `jti`: the token id.
    Jti,
}

impl AuditField {
    /// Every field, in the order of the table above.
    pub const ALL: &'static [AuditField] = &[
        AuditField::Decision,
        AuditField::Reason,
        AuditField::Status,
        AuditField::Method,
        AuditField::Route,
        AuditField::Detail,
        AuditField::Kind,
        AuditField::BotOrigin,
        AuditField::Agent,
        AuditField::AgentProvider,
        AuditField::KeyThumbprint,
        AuditField::Scheme,
        AuditField::TokenKind,
        AuditField::Issuer,
        AuditField::Subject,
        AuditField::Scopes,
        AuditField::Jti,
    ];

    /// The field's name in the event.
    pub const fn name(self) -> &'static str {
        match self {
            AuditField::Decision => "decision",
            AuditField::Reason => "reason",
            AuditField::Status => "status",
            AuditField::Method => "method",
            AuditField::Route => "route",
            AuditField::Detail => "detail",
            AuditField::Kind => "kind",
            AuditField::BotOrigin => "bot_origin",
            AuditField::Agent => "agent",
            AuditField::AgentProvider => "agent_provider",
            AuditField::KeyThumbprint => "key_thumbprint",
            AuditField::Scheme => "scheme",
            AuditField::TokenKind => "token_kind",
            AuditField::Issuer => "issuer",
            AuditField::Subject => "subject",
            AuditField::Scopes => "scopes",
            AuditField::Jti => "jti",
        }
    }
}

/// Whether anyone listens to audit events (checked once per request).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: AUDIT_TARGET, tracing::Level::INFO)
}

/// What the layer keeps about a request until its outcome is known (only when
/// [`enabled`]).
pub(crate) struct AuditContext {
    pub(crate) method: Method,
    pub(crate) route: String,
    pub(crate) verified: Option<VerifiedRequest>,
    /// A verified Web Bot Auth bot ([`crate::bot`]), instead of a verified request.
    pub(crate) bot: Option<crate::bot::VerifiedBot>,
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
            bot: None,
        }
    }

    /// The event for a response the inner service produced.
    pub(crate) fn response<B>(&self, response: &Response<B>) {
        let mut outcome = classify(response, self.verified.is_some());
        if self.bot.is_some() && outcome == (AuditDecision::Allow, "unsigned") {
            outcome.1 = "bot";
        }
        let detail = response.extensions().get::<AuditOutcome>().map(|o| o.detail);
        self.emit(outcome.0, outcome.1, response.status(), detail);
    }

    /// The event for a refusal the layer made.
    pub(crate) fn refusal(&self, error: &crate::error::Error) {
        self.emit(
            error.audit_outcome().decision,
            error.code(),
            error.status(),
            Some(error.detail()),
        );
    }

    fn emit(&self, decision: AuditDecision, reason: &str, status: StatusCode, detail: Option<&str>) {
        let verified = self.verified.as_ref();
        let token = verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
        let scopes = token.filter(|c| !c.scope.is_empty()).map(|c| c.scope.to_string());
        let bot = self.bot.as_ref();
        let kind = match (verified, bot) {
            (Some(_), _) => Some("agent"),
            (None, Some(_)) => Some("bot"),
            (None, None) => None,
        };
        tracing::info!(
            target: AUDIT_TARGET,
            decision = decision.as_str(),
            reason,
            status = status.as_u16(),
            method = self.method.as_str(),
            route = self.route.as_str(),
            detail,
            agent = verified.and_then(VerifiedRequest::agent).map(AgentId::id),
            agent_provider = verified.and_then(VerifiedRequest::agent).map(AgentId::provider),
            kind,
            bot_origin = bot.map(crate::bot::VerifiedBot::directory_origin),
            key_thumbprint = verified
                .map(|v| &*v.key_thumbprint)
                .or_else(|| bot.map(crate::bot::VerifiedBot::thumbprint)),
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

/// The decision and reason of a response the inner service (or a guard) produced for a
/// request that was `verified` or unsigned: the reason is a fixed code, never text from
/// the request.
pub(crate) fn classify<B>(response: &Response<B>, verified: bool) -> (AuditDecision, &'static str) {
    let status = response.status();
    if let Some(outcome) = response.extensions().get::<AuditOutcome>() {
        (outcome.decision, outcome.reason)
    } else if status == StatusCode::UNAUTHORIZED
        && let Some(requirement) = response.headers().get(names::header::AAUTH_REQUIREMENT)
    {
        (AuditDecision::Challenge, requirement_reason(requirement.as_bytes()))
    } else if status == StatusCode::FORBIDDEN {
        (AuditDecision::Deny, "forbidden")
    } else if verified {
        (AuditDecision::Allow, "verified")
    } else {
        (AuditDecision::Allow, "unsigned")
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
        Some(names::requirement::AUTH_TOKEN) => names::requirement::AUTH_TOKEN,
        Some(names::requirement::PERSON_TOKEN) => names::requirement::PERSON_TOKEN,
        Some(names::requirement::AGENT_TOKEN) => names::requirement::AGENT_TOKEN,
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
