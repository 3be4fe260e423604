//! What a route requires ([`Requirement`]) and a requirement's verdict ([`Decision`]):
//! pure evaluation over what the layer verified, no I/O and no signing.

use crate::error::{Error, SignatureErrorCode};
use crate::sigkey::Scheme;
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Uri};
use std::sync::Arc;

/// What a route requires. `#[non_exhaustive]`: new kinds arrive as variants or [`Rule`]s.
#[derive(Clone)]
#[non_exhaustive]
pub enum Requirement {
    /// Any verified signature, pseudonymous `hwk` included.
    Signature,
    /// An identified agent: an agent token, or a `jwks_uri` signer.
    Agent,
    /// The person: a person token or an auth token.
    Person,
    /// An auth token granting every one of these scopes.
    Scopes(Scopes),
    /// Every requirement, in order; the first refusal wins, scope needs are merged.
    All(Arc<[Requirement]>),
    /// A custom rule.
    Rule(Arc<dyn Rule>),
}

impl std::fmt::Debug for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Signature => f.write_str("Signature"),
            Requirement::Agent => f.write_str("Agent"),
            Requirement::Person => f.write_str("Person"),
            Requirement::Scopes(scopes) => f.debug_tuple("Scopes").field(scopes).finish(),
            Requirement::All(all) => f.debug_tuple("All").field(all).finish(),
            Requirement::Rule(_) => f.write_str("Rule(..)"),
        }
    }
}

impl Requirement {
    /// An auth token granting all of `scopes` (trusted configuration values).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Requirement::Scopes(Scopes::from_iter_unchecked(scopes))
    }

    /// A custom rule from a closure.
    pub fn rule(rule: impl Fn(&RuleContext<'_>) -> Decision + Send + Sync + 'static) -> Self {
        Requirement::Rule(Arc::new(rule))
    }

    /// Evaluates the requirement (no I/O, no signing).
    pub fn evaluate(&self, cx: &RuleContext<'_>) -> Decision {
        let token = cx.verified.and_then(|v| v.token.as_deref()).map(|t| &t.claims);
        match self {
            Requirement::Signature => match cx.verified {
                Some(_) => Decision::Allow,
                None => Decision::NeedAgent,
            },
            Requirement::Agent => match (cx.verified, token.map(|t| t.kind)) {
                (None, _) => Decision::NeedAgent,
                (Some(_), Some(TokenKind::Agent)) => Decision::Allow,
                (Some(_), Some(_)) => Decision::NeedAgent,
                (Some(v), None) if v.scheme == Scheme::JwksUri => Decision::Allow,
                (Some(_), None) => Decision::Refuse(jwt_scheme_required()),
            },
            Requirement::Person => match (cx.verified, token) {
                (None, _) => Decision::NeedPerson,
                (Some(_), Some(t)) if matches!(t.kind, TokenKind::Person | TokenKind::Auth) => Decision::Allow,
                (Some(_), Some(t)) if t.ps.is_none() => Decision::Refuse(no_person_server()),
                (Some(_), Some(_)) => Decision::NeedPerson,
                (Some(_), None) => Decision::Refuse(jwt_scheme_required()),
            },
            Requirement::Scopes(required) => match token {
                Some(t) if t.kind == TokenKind::Auth && t.scope.contains_all(required) => Decision::Allow,
                _ => Decision::NeedAuth(required.clone()),
            },
            Requirement::All(all) => {
                let mut needed: Option<Scopes> = None;
                for requirement in all.iter() {
                    match requirement.evaluate(cx) {
                        Decision::Allow => {}
                        Decision::NeedAuth(scopes) => {
                            needed = Some(match needed {
                                None => scopes,
                                Some(before) => Scopes::from_iter_unchecked(before.iter().chain(scopes.iter())),
                            });
                        }
                        other => return other,
                    }
                }
                needed.map_or(Decision::Allow, Decision::NeedAuth)
            }
            Requirement::Rule(rule) => rule.check(cx),
        }
    }
}

/// A custom requirement.
///
/// Scopes a rule asks for ([`Decision::NeedAuth`]) end up in a resource token the
/// resource signs: take them from configuration, or from components the signature covers
/// ([`VerifiedRequest::covers`](crate::VerifiedRequest::covers)), never from an unsigned part of the request.
pub trait Rule: Send + Sync + 'static {
    /// Decides on one request. Runs on every request to the guarded route: keep it cheap
    /// and free of I/O.
    fn check(&self, cx: &RuleContext<'_>) -> Decision;
}

impl<F: Fn(&RuleContext<'_>) -> Decision + Send + Sync + 'static> Rule for F {
    fn check(&self, cx: &RuleContext<'_>) -> Decision {
        self(cx)
    }
}

/// What a requirement sees.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RuleContext<'a> {
    /// The verified request, `None` when it was unsigned.
    pub verified: Option<&'a VerifiedRequest>,
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions.
    pub extensions: &'a Extensions,
}

impl<'a> RuleContext<'a> {
    /// What a requirement sees of `request`.
    pub(crate) fn of_request<B>(request: &'a Request<B>) -> Self {
        let extensions = request.extensions();
        RuleContext {
            verified: extensions.get::<VerifiedRequest>(),
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions,
        }
    }

    /// What a requirement sees of a request head.
    pub(crate) fn of_parts(parts: &'a Parts) -> Self {
        RuleContext {
            verified: parts.extensions.get::<VerifiedRequest>(),
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// A requirement's verdict.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Decision {
    /// Serve.
    Allow,
    /// 401 `requirement=agent-token`.
    NeedAgent,
    /// 401 `requirement=person-token`.
    NeedPerson,
    /// An auth token granting these scopes is needed: 401 `auth-token` with a resource
    /// token when the resource may mint one, else the identity challenge that comes first.
    NeedAuth(Scopes),
    /// Refuse with this error: a `403` [`Error`](crate::Error) ([`Error::forbidden`](crate::Error::forbidden)) for a policy denial (`403`, never a
    /// `Signature-Error`), or a signature-level refusal.
    Refuse(Error),
}

pub(super) fn jwt_scheme_required() -> Error {
    Error(crate::error::Kind::Signature {
        code: SignatureErrorCode::UnsupportedScheme,
        detail: "this resource needs the agent to sign with a token (the jwt scheme)",
        required_input: None,
        accept: Some(HeaderValue::from_static(crate::names::scheme::JWT)),
    })
}

pub(super) fn no_person_server() -> Error {
    Error(crate::error::Kind::Forbidden {
        code: "no_person_server",
        detail: "the agent token names no person server, so no person token can be obtained",
    })
}
