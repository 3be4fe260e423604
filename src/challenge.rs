//! Challenges (`401` + `AAuth-Requirement`) and the rejection hook.
//!
//! # Wire forms
//!
//! Draft -11 (digest §6.1), exactly:
//!
//! ```text
//! AAuth-Requirement: requirement=agent-token
//! AAuth-Requirement: requirement=person-token
//! AAuth-Requirement: requirement=auth-token; resource-token="eyJ…"
//! ```
//!
//! `resource-token` is a *parameter of the `requirement` member* (RFC 9651 allows the space
//! after `;`); PyPI `aauth` 0.5 and `@hellocoop/httpsig` read it only there, never as a
//! second dictionary member. Requests answered in the demo generation get
//! `AAuth: require=auth-token; resource-token="…"; auth-server="…"` (and
//! `require=identity` for the two identity requirements) instead; never both headers.
//!
//! Every challenge and every refusal carries `Cache-Control: no-store` (attack MINT-03).
//!
//! # Rejection hook
//!
//! [`AAuthBuilder::rejection_hook`](crate::AAuthBuilder::rejection_hook) lets an application
//! replace the *body* of every `401`/`403`/`5xx` this crate produces (layer, guards,
//! extractors). Status and protocol headers are set by the crate after the hook ran and
//! cannot be changed by it, so a hook can never make a response protocol-incorrect.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::config::{Generation, Shared};
use crate::error::Error;
use crate::wire;

/// What a `401` challenge asks the agent for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `requirement=agent-token`: sign with an agent token.
    AgentToken,
    /// `requirement=person-token`: present a person token (the resource cannot mint yet).
    PersonToken,
    /// `requirement=auth-token; resource-token="…"`: take the resource token to the
    /// person or access server it names and come back with an auth token.
    AuthToken {
        /// The compact resource token.
        resource_token: String,
        /// Its `aud` (the demo generation names it in `auth-server`).
        audience: String,
    },
}

impl Challenge {
    /// The `requirement` token.
    pub fn requirement(&self) -> &'static str {
        match self {
            Challenge::AgentToken => wire::requirement::AGENT_TOKEN,
            Challenge::PersonToken => wire::requirement::PERSON_TOKEN,
            Challenge::AuthToken { .. } => wire::requirement::AUTH_TOKEN,
        }
    }

    /// The draft -11 `AAuth-Requirement` value.
    pub fn header_value(&self) -> HeaderValue {
        match self {
            Challenge::AuthToken { resource_token, .. } => sf_value(format!(
                "requirement={}; {}=\"{resource_token}\"",
                wire::requirement::AUTH_TOKEN,
                wire::requirement::RESOURCE_TOKEN_PARAM
            )),
            other => HeaderValue::from_static(match other {
                Challenge::AgentToken => "requirement=agent-token",
                _ => "requirement=person-token",
            }),
        }
    }

    /// The demo generation's `AAuth` value.
    pub fn legacy_header_value(&self) -> HeaderValue {
        match self {
            Challenge::AuthToken {
                resource_token,
                audience,
            } => sf_value(format!(
                "require=auth-token; {}=\"{resource_token}\"; {}=\"{audience}\"",
                wire::requirement::RESOURCE_TOKEN_PARAM,
                wire::requirement::LEGACY_AUTH_SERVER_PARAM,
            )),
            _ => HeaderValue::from_static("require=identity"),
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            Challenge::AgentToken => "agent_token_required",
            Challenge::PersonToken => "person_token_required",
            Challenge::AuthToken { .. } => "auth_token_required",
        }
    }

    fn detail(&self) -> &'static str {
        match self {
            Challenge::AgentToken => "Sign the request with an agent token.",
            Challenge::PersonToken => "Present a person token from your person server.",
            Challenge::AuthToken { .. } => {
                "Exchange the resource token in AAuth-Requirement for an auth token and retry."
            }
        }
    }

    /// Writes the challenge header for `generation` and `Cache-Control: no-store`.
    pub fn write_headers(&self, headers: &mut HeaderMap, generation: Generation) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match generation {
            Generation::Legacy => headers.insert(wire::header::AAUTH_LEGACY, self.legacy_header_value()),
            _ => headers.insert(wire::header::AAUTH_REQUIREMENT, self.header_value()),
        };
    }
}

/// Every value formatted here is built from registry tokens, our own compact JWT
/// (`[A-Za-z0-9_.-]`) and validated identifiers, all visible ASCII without `"` or `\`.
fn sf_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("requirement=person-token"))
}

/// What the rejection hook is told about a refusal. Every string is a fixed, non-secret
/// code or explanation chosen by this crate.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Rejection<'a> {
    /// The status the response will have.
    pub status: StatusCode,
    /// The stable code (a `Signature-Error` code, a challenge code such as
    /// `auth_token_required`, or a policy code such as `insufficient_scope`).
    pub code: &'a str,
    /// The fixed explanation.
    pub detail: &'a str,
    /// The `requirement` token of a challenge.
    pub requirement: Option<&'a str>,
}

/// A body chosen by the rejection hook.
#[derive(Debug, Clone)]
pub struct RejectionBody {
    /// Its `Content-Type`.
    pub content_type: HeaderValue,
    /// Its bytes.
    pub body: Bytes,
}

impl RejectionBody {
    /// A JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        RejectionBody {
            content_type: HeaderValue::from_static("application/json"),
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }
}

/// Shapes rejection bodies; `None` keeps the crate's problem+json body.
pub type RejectionHook = Arc<dyn Fn(&Rejection<'_>) -> Option<RejectionBody> + Send + Sync>;

pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Bytes {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "error": code,
        "detail": detail,
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

pub(crate) fn with_body<B: From<Bytes>>(
    hook: Option<&RejectionHook>,
    rejection: Rejection<'_>,
    default: impl FnOnce() -> (HeaderValue, Bytes),
) -> Response<B> {
    let (content_type, body) = match hook.and_then(|hook| hook(&rejection)) {
        Some(custom) => (custom.content_type, custom.body),
        None => default(),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = rejection.status;
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

/// The `401` for `challenge`, answered in `generation`.
pub(crate) fn challenge_response<B: From<Bytes>>(
    shared: &Shared,
    challenge: &Challenge,
    generation: Generation,
) -> Response<B> {
    let status = StatusCode::UNAUTHORIZED;
    let rejection = Rejection {
        status,
        code: challenge.error_code(),
        detail: challenge.detail(),
        requirement: Some(challenge.requirement()),
    };
    let mut response = with_body(shared.authz.hook.as_ref(), rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            problem(status, challenge.error_code(), challenge.detail()),
        )
    });
    challenge.write_headers(response.headers_mut(), generation);
    response
}

/// The response for `error`, its body shaped by the hook when one is configured.
pub(crate) fn error_response<B: From<Bytes>>(shared: &Shared, error: &Error) -> Response<B> {
    let Some(hook) = shared.authz.hook.as_ref() else {
        return error.to_response();
    };
    let code = error.code();
    let detail = match error {
        Error::Misconfigured { .. } => "internal server error",
        _ => error.detail(),
    };
    let rejection = Rejection {
        status: error.status(),
        code,
        detail,
        requirement: None,
    };
    let mut response = with_body(Some(hook), rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            Bytes::from(serde_json::to_vec(&error.problem_json()).unwrap_or_default()),
        )
    });
    error.write_headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_challenge_uses_the_parameter_form() {
        let challenge = Challenge::AuthToken {
            resource_token: "a.b.c".into(),
            audience: "https://as.example".into(),
        };
        assert_eq!(
            challenge.header_value(),
            "requirement=auth-token; resource-token=\"a.b.c\""
        );
        assert_eq!(
            challenge.legacy_header_value(),
            "require=auth-token; resource-token=\"a.b.c\"; auth-server=\"https://as.example\""
        );
        // It parses as an RFC 9651 dictionary whose member carries the parameter.
        let parsed = sfv::Parser::new(challenge.header_value().to_str().unwrap())
            .parse::<sfv::Dictionary>()
            .unwrap();
        let sfv::ListEntry::Item(item) = &parsed["requirement"] else {
            panic!("requirement is an item")
        };
        assert_eq!(
            item.bare_item,
            sfv::BareItem::Token(sfv::Token::try_from("auth-token".to_owned()).unwrap())
        );
        assert_eq!(item.params.len(), 1);
    }

    #[test]
    fn identity_challenges_have_no_parameters() {
        assert_eq!(Challenge::AgentToken.header_value(), "requirement=agent-token");
        assert_eq!(Challenge::PersonToken.header_value(), "requirement=person-token");
    }
}
