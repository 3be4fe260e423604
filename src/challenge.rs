//! Challenges (`401` + `AAuth-Requirement`) and the rejection hook.
//!
//! # Wire forms
//!
//! [Draft -11](https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11) ("AAuth-Requirement"), exactly:
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
//! Every challenge and every refusal carries `Cache-Control: no-store`: a cached
//! challenge would hand one agent's resource token to another.
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

use crate::error::{Error, Problem};
use crate::names;
use crate::profile::Generation;

/// What a `401` challenge asks the agent for.
// The variants are named after the `requirement` values they send (`agent-token`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Eq)]
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
            Challenge::AgentToken => names::requirement::AGENT_TOKEN,
            Challenge::PersonToken => names::requirement::PERSON_TOKEN,
            Challenge::AuthToken { .. } => names::requirement::AUTH_TOKEN,
        }
    }

    /// The draft -11 `AAuth-Requirement` value.
    ///
    /// # Errors
    ///
    /// A resource token that is not an RFC 9651 string: the returned
    /// a `500` [`Error`](crate::Error) is the answer to send instead.
    pub fn header_value(&self) -> Result<HeaderValue, Error> {
        match self {
            Challenge::AuthToken { resource_token, .. } => {
                let mut value = String::with_capacity(64 + resource_token.len());
                value.push_str("requirement=");
                value.push_str(names::requirement::AUTH_TOKEN);
                value.push_str("; ");
                push_param(&mut value, names::requirement::RESOURCE_TOKEN_PARAM, resource_token);
                sf_value(value, "the AAuth-Requirement value could not be built")
            }
            Challenge::AgentToken => Ok(HeaderValue::from_static("requirement=agent-token")),
            Challenge::PersonToken => Ok(HeaderValue::from_static("requirement=person-token")),
        }
    }

    /// The demo generation's `AAuth` value.
    ///
    /// # Errors
    ///
    /// A resource token or audience that is not an RFC 9651 string: the returned
    /// a `500` [`Error`](crate::Error) is the answer to send instead.
    pub fn legacy_header_value(&self) -> Result<HeaderValue, Error> {
        match self {
            Challenge::AuthToken {
                resource_token,
                audience,
            } => {
                let mut value = String::with_capacity(96 + resource_token.len() + audience.len());
                value.push_str("require=auth-token; ");
                push_param(&mut value, names::requirement::RESOURCE_TOKEN_PARAM, resource_token);
                value.push_str("; ");
                push_param(&mut value, names::requirement::LEGACY_AUTH_SERVER_PARAM, audience);
                sf_value(value, "the AAuth value could not be built")
            }
            Challenge::AgentToken | Challenge::PersonToken => Ok(HeaderValue::from_static("require=identity")),
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
    ///
    /// # Errors
    ///
    /// As [`Challenge::header_value`]; nothing is written then.
    pub fn write_headers(&self, headers: &mut HeaderMap, generation: Generation) -> Result<(), Error> {
        let (name, value) = self.header(generation)?;
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(name, value);
        Ok(())
    }

    /// The challenge header for `generation`.
    fn header(&self, generation: Generation) -> Result<(&'static str, HeaderValue), Error> {
        Ok(match generation {
            Generation::Legacy => (names::header::AAUTH_LEGACY, self.legacy_header_value()?),
            _ => (names::header::AAUTH_REQUIREMENT, self.header_value()?),
        })
    }
}

/// Appends `name="value"`, `value` escaped as an RFC 9651 string. A character no
/// sf-string can hold is left in, for [`sf_value`] to refuse.
fn push_param(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The header value, if every character is one an sf-string can hold (printable ASCII);
/// else the `500` naming what could not be built. The crate's own values always are (our
/// compact JWT, registry tokens, identifiers of printable ASCII): only a challenge built
/// by hand, or a token's `ps` the issuer signed, could fail.
fn sf_value(value: String, what: &'static str) -> Result<HeaderValue, Error> {
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(crate::error::header_unbuildable(what));
    }
    HeaderValue::try_from(value).map_err(|_| crate::error::header_unbuildable(what))
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

/// A body chosen by the rejection hook: [`RejectionBody::new`] or [`RejectionBody::json`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RejectionBody {
    /// Its `Content-Type`.
    pub content_type: HeaderValue,
    /// Its bytes.
    pub body: Bytes,
}

impl RejectionBody {
    /// A body of `content_type`.
    pub fn new(content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        RejectionBody {
            content_type,
            body: body.into(),
        }
    }

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

/// The problem+json body of a refusal that is not an [`Error`](crate::Error).
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Bytes {
    Problem::plain(status, code, detail).render()
}

/// A refusal that is not an [`Error`](crate::Error): a problem+json body (shaped by
/// `hook` when one is configured) and `Cache-Control: no-store`.
pub(crate) fn problem_response<B: From<Bytes>>(
    hook: Option<&RejectionHook>,
    status: StatusCode,
    code: &'static str,
    detail: &'static str,
) -> Response<B> {
    let rejection = Rejection {
        status,
        code,
        detail,
        requirement: None,
    };
    let mut response = with_body(hook, rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            problem(status, code, detail),
        )
    });
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
    hook: Option<&RejectionHook>,
    challenge: &Challenge,
    generation: Generation,
) -> Response<B> {
    // Built before the hook sees the challenge, so that a challenge that cannot be sent
    // reaches the hook only as the `500` it becomes.
    let (name, value) = match challenge.header(generation) {
        Ok(header) => header,
        Err(unbuildable) => return error_response(hook, &unbuildable),
    };
    let status = StatusCode::UNAUTHORIZED;
    let rejection = Rejection {
        status,
        code: challenge.error_code(),
        detail: challenge.detail(),
        requirement: Some(challenge.requirement()),
    };
    let mut response = with_body(hook, rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            problem(status, challenge.error_code(), challenge.detail()),
        )
    });
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(name, value);
    response
}

/// The response for `error`, its body shaped by the hook when one is configured.
pub(crate) fn error_response<B: From<Bytes>>(hook: Option<&RejectionHook>, error: &Error) -> Response<B> {
    let Some(hook) = hook else {
        return error.to_response();
    };
    // Built before the hook sees the error, as for a challenge.
    let mut headers = HeaderMap::with_capacity(3);
    if let Err(unbuildable) = error.write_headers(&mut headers) {
        return error_response(Some(hook), &unbuildable);
    }
    let rejection = Rejection {
        status: error.status(),
        code: error.code(),
        detail: error.public_detail(),
        requirement: None,
    };
    let mut response = with_body(Some(hook), rejection, || {
        (
            HeaderValue::from_static("application/problem+json"),
            error.problem().render(),
        )
    });
    response.headers_mut().extend(headers);
    response
}

/// The one answer of every response future of this crate polled again after it finished:
/// a `500` naming the mistake, never a panic.
pub(crate) fn polled_after_completion<B: From<Bytes>>() -> Response<B> {
    Error(crate::error::Kind::Misconfigured {
        detail: "response future polled after completion",
    })
    .to_response()
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
            challenge.header_value().unwrap(),
            "requirement=auth-token; resource-token=\"a.b.c\""
        );
        assert_eq!(
            challenge.legacy_header_value().unwrap(),
            "require=auth-token; resource-token=\"a.b.c\"; auth-server=\"https://as.example\""
        );
        // It parses as an RFC 9651 dictionary whose member carries the parameter.
        let parsed = sfv::Parser::new(challenge.header_value().unwrap().to_str().unwrap())
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
        assert_eq!(Challenge::AgentToken.header_value().unwrap(), "requirement=agent-token");
        assert_eq!(
            Challenge::PersonToken.header_value().unwrap(),
            "requirement=person-token"
        );
    }

    /// Once answered `requirement=person-token`: a different answer than the one asked.
    #[test]
    fn a_challenge_that_cannot_be_a_header_is_a_500_not_another_requirement() {
        let challenge = Challenge::AuthToken {
            resource_token: "a.b\u{1}.c".into(),
            audience: "https://as.example".into(),
        };
        for value in [challenge.header_value(), challenge.legacy_header_value()] {
            let error = value.expect_err("a control character is no sf-string");
            assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert!(matches!(
            challenge.header_value(),
            Err(Error(crate::error::Kind::Misconfigured {
                detail: "the AAuth-Requirement value could not be built"
            }))
        ));
        let challenge = Challenge::AuthToken {
            resource_token: "a.b.c".into(),
            audience: "https://as.example/\u{e9}".into(),
        };
        assert!(
            challenge.header_value().is_ok(),
            "the draft form does not carry the audience"
        );
        assert!(matches!(
            challenge.legacy_header_value(),
            Err(Error(crate::error::Kind::Misconfigured {
                detail: "the AAuth value could not be built"
            }))
        ));
        let mut headers = HeaderMap::new();
        let written = challenge.write_headers(&mut headers, Generation::Legacy);
        assert!(written.is_err());
        assert!(
            headers.is_empty(),
            "nothing is written for a challenge that cannot be sent"
        );
    }

    fn unbuildable_challenge() -> Challenge {
        Challenge::AuthToken {
            resource_token: "a.b\u{1}.c".into(),
            audience: "https://as.example".into(),
        }
    }

    #[test]
    fn the_response_to_a_challenge_that_cannot_be_sent_is_the_500() {
        let aauth = crate::aauth::AAuth::builder("https://resource.example")
            .build()
            .unwrap();
        for generation in [Generation::Draft11, Generation::Legacy] {
            let response: Response<Bytes> =
                challenge_response(aauth.shared.hook(), &unbuildable_challenge(), generation);
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(response.headers().get(names::header::AAUTH_REQUIREMENT).is_none());
            assert!(response.headers().get(names::header::AAUTH_LEGACY).is_none());
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["error"], "server_error");
        }
    }

    /// The hook hears of the `500` only, never of the answer that could not be sent.
    #[test]
    fn the_hook_sees_only_the_500_of_a_header_that_cannot_be_built() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let aauth = crate::aauth::AAuth::builder("https://resource.example")
            .rejection_hook(move |rejection| {
                record
                    .lock()
                    .unwrap()
                    .push((rejection.status, rejection.code.to_owned()));
                None
            })
            .build()
            .unwrap();
        let response: Response<Bytes> =
            challenge_response(aauth.shared.hook(), &unbuildable_challenge(), Generation::Draft11);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let error = Error::invalid_input(["@method", "x-\u{7f}"]);
        let response: Response<Bytes> = error_response(aauth.shared.hook(), &error);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(names::header::SIGNATURE_ERROR).is_none());
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["detail"], "internal server error");
        let server_error = (StatusCode::INTERNAL_SERVER_ERROR, "server_error".to_owned());
        assert_eq!(*seen.lock().unwrap(), [server_error.clone(), server_error]);
    }

    #[test]
    fn a_quote_in_a_parameter_is_escaped_not_sent_raw() {
        let challenge = Challenge::AuthToken {
            resource_token: "a.b.c".into(),
            audience: "https://ps.example/\"x\\".into(),
        };
        let value = challenge.legacy_header_value().unwrap();
        assert_eq!(
            value,
            r#"require=auth-token; resource-token="a.b.c"; auth-server="https://ps.example/\"x\\""#
        );
        let parsed = sfv::Parser::new(value.to_str().unwrap())
            .parse::<sfv::Dictionary>()
            .unwrap();
        let sfv::ListEntry::Item(item) = &parsed["require"] else {
            panic!("require is an item")
        };
        assert_eq!(
            item.params.get("auth-server"),
            Some(&sfv::BareItem::String(
                sfv::String::from_string("https://ps.example/\"x\\".to_owned()).unwrap()
            ))
        );
    }
}
