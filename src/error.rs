//! One error type for every refusal the crate makes.
//!
//! Each variant maps to a stable, registered code ([`Error::code`]) and an HTTP status.
//! The human `detail` is always a fixed string chosen by this crate: keys, tokens,
//! signatures, addresses and upstream error text never reach a client through it.
//!
//! Every problem+json body the crate sends is rendered by one function (`Problem::render`),
//! and a misconfiguration's detail is masked in one place (`Error::public_detail`). A
//! response header that cannot be built is never replaced by another answer: the response
//! becomes a `500` whose logged detail names the header.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::names;

/// A `Signature-Error` code from the registry of
/// [draft-hardt-httpbis-signature-key-09](https://datatracker.ietf.org/doc/html/draft-hardt-httpbis-signature-key-09).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureErrorCode {
    /// `unsupported_algorithm`
    UnsupportedAlgorithm,
    /// `unsupported_scheme`
    UnsupportedScheme,
    /// `invalid_signature`
    InvalidSignature,
    /// `invalid_input`
    InvalidInput,
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_key`
    InvalidKey,
    /// `unknown_key`
    UnknownKey,
    /// `issuer_missing`
    IssuerMissing,
    /// `issuer_mismatch`
    IssuerMismatch,
    /// `invalid_jwt`
    InvalidJwt,
    /// `expired_jwt`
    ExpiredJwt,
    /// `revoked_jwt`
    RevokedJwt,
    /// `clock_skew`
    ClockSkew,
}

impl SignatureErrorCode {
    /// `error=<code>`: the whole `Signature-Error` value when nothing else is reported, as
    /// a static string so that a refusal needs no formatting.
    fn header_value(self) -> &'static str {
        match self {
            Self::UnsupportedAlgorithm => "error=unsupported_algorithm",
            Self::UnsupportedScheme => "error=unsupported_scheme",
            Self::InvalidSignature => "error=invalid_signature",
            Self::InvalidInput => "error=invalid_input",
            Self::InvalidRequest => "error=invalid_request",
            Self::InvalidKey => "error=invalid_key",
            Self::UnknownKey => "error=unknown_key",
            Self::IssuerMissing => "error=issuer_missing",
            Self::IssuerMismatch => "error=issuer_mismatch",
            Self::InvalidJwt => "error=invalid_jwt",
            Self::ExpiredJwt => "error=expired_jwt",
            Self::RevokedJwt => "error=revoked_jwt",
            Self::ClockSkew => "error=clock_skew",
        }
    }

    /// Every registered code this crate can emit.
    pub const ALL: &'static [SignatureErrorCode] = &[
        Self::UnsupportedAlgorithm,
        Self::UnsupportedScheme,
        Self::InvalidSignature,
        Self::InvalidInput,
        Self::InvalidRequest,
        Self::InvalidKey,
        Self::UnknownKey,
        Self::IssuerMissing,
        Self::IssuerMismatch,
        Self::InvalidJwt,
        Self::ExpiredJwt,
        Self::RevokedJwt,
        Self::ClockSkew,
    ];

    /// The registered token, as sent in `Signature-Error: error=<code>`.
    pub const fn as_str(self) -> &'static str {
        use names::code::*;
        match self {
            Self::UnsupportedAlgorithm => UNSUPPORTED_ALGORITHM,
            Self::UnsupportedScheme => UNSUPPORTED_SCHEME,
            Self::InvalidSignature => INVALID_SIGNATURE,
            Self::InvalidInput => INVALID_INPUT,
            Self::InvalidRequest => INVALID_REQUEST,
            Self::InvalidKey => INVALID_KEY,
            Self::UnknownKey => UNKNOWN_KEY,
            Self::IssuerMissing => ISSUER_MISSING,
            Self::IssuerMismatch => ISSUER_MISMATCH,
            Self::InvalidJwt => INVALID_JWT,
            Self::ExpiredJwt => EXPIRED_JWT,
            Self::RevokedJwt => REVOKED_JWT,
            Self::ClockSkew => CLOCK_SKEW,
        }
    }
}

impl std::fmt::Display for SignatureErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused. Opaque: read what a response needs with
/// [`Error::status`], [`Error::code`], [`Error::signature_code`], [`Error::detail`] and
/// [`Error::retry_after`], or send it with [`Error::to_response`]. A [`Rule`] refuses with
/// [`Error::forbidden`] (`403`) or [`Error::signature`] (`401`).
///
/// [`Rule`]: crate::guard::Rule
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct Error(pub(crate) Kind);

/// The kinds of refusal, each with its fixed status and headers.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Kind {
    /// A signature or credential failure: `401` with `Signature-Error`.
    #[error("{code}: {detail}")]
    Signature {
        /// The registered code.
        code: SignatureErrorCode,
        /// A fixed, non-secret explanation.
        detail: &'static str,
        /// For `invalid_input`: the components the request must cover.
        required_input: Option<Box<[String]>>,
        /// For `unsupported_scheme` / `unsupported_algorithm`: the advertised list.
        accept: Option<HeaderValue>,
    },
    /// A revoked agent, key, token or subject: `401` with `Signature-Error:
    /// error=revoked_jwt`. For a revoked auth token (`person_token`) also
    /// `AAuth-Requirement: requirement=person-token` ([draft -11](https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11), "Token
    /// Revocation"), never
    /// `requirement=auth-token`.
    #[error("revoked_jwt: {detail}")]
    Revoked {
        /// A fixed, non-secret explanation.
        detail: &'static str,
        /// Whether to ask for a person token (the revoked credential was an auth token).
        person_token: bool,
    },
    /// The resource cannot decide right now (discovery budget spent, replay store
    /// unreachable): `503` with `Retry-After`, no `Signature-Error`.
    #[error("temporarily unavailable: {detail}")]
    Unavailable {
        /// Seconds the client should wait.
        retry_after: u32,
        /// A fixed, non-secret explanation.
        detail: &'static str,
    },
    /// A signed body larger than the configured cap: `413`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A Web Bot Auth signature (or nonce) seen before: `429`, no `Signature-Error`, the
    /// answer the Web Bot Auth protocol draft gives to reuse.
    #[error("signature reused: {detail}")]
    Reused {
        /// A fixed, non-secret explanation.
        detail: &'static str,
    },
    /// A policy denial after successful verification: `403`, never with `Signature-Error`.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// A stable code for the problem body (for example `insufficient_scope`).
        code: &'static str,
        /// A fixed, non-secret explanation.
        detail: &'static str,
    },
    /// A misconfiguration detected at run time (for example an extractor without its
    /// layer): `500`. The detail goes to logs, never to the client, with one exception
    /// for developers: in debug builds (`debug_assertions`) the explanation of a guard or
    /// extractor running without the layer is the problem's `detail`. Release builds
    /// always answer `internal server error`.
    #[error("server misconfiguration: {detail}")]
    Misconfigured {
        /// A fixed explanation for the operator.
        detail: &'static str,
    },
}

impl Error {
    /// A `401` signature error with a fixed detail.
    pub const fn signature(code: SignatureErrorCode, detail: &'static str) -> Self {
        Error(Kind::Signature {
            code,
            detail,
            required_input: None,
            accept: None,
        })
    }

    /// A `403` policy denial (never with `Signature-Error`): `code` names it in the problem
    /// body (for example `insufficient_scope`), `detail` explains it. Both are sent to the
    /// client: keep them fixed and free of secrets.
    pub const fn forbidden(code: &'static str, detail: &'static str) -> Self {
        Error(Kind::Forbidden { code, detail })
    }

    /// `invalid_signature`.
    pub const fn invalid_signature(detail: &'static str) -> Self {
        Self::signature(SignatureErrorCode::InvalidSignature, detail)
    }

    /// `invalid_jwt`.
    pub const fn invalid_jwt(detail: &'static str) -> Self {
        Self::signature(SignatureErrorCode::InvalidJwt, detail)
    }

    /// `invalid_key`.
    pub const fn invalid_key(detail: &'static str) -> Self {
        Self::signature(SignatureErrorCode::InvalidKey, detail)
    }

    /// `invalid_input` naming the components the request must cover.
    pub fn invalid_input(required: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Error(Kind::Signature {
            code: SignatureErrorCode::InvalidInput,
            detail: "the signature does not cover every required component",
            required_input: Some(required.into_iter().map(Into::into).collect()),
            accept: None,
        })
    }

    /// The stable code: a registered `Signature-Error` code for `401`s, otherwise the
    /// problem-body code.
    pub fn code(&self) -> &'static str {
        match &self.0 {
            Kind::Signature { code, .. } => code.as_str(),
            Kind::Revoked { .. } => names::code::REVOKED_JWT,
            Kind::Unavailable { .. } => "temporarily_unavailable",
            Kind::PayloadTooLarge => "payload_too_large",
            Kind::Reused { .. } => names::problem::SIGNATURE_REUSED,
            Kind::Forbidden { code, .. } => code,
            Kind::Misconfigured { .. } => "server_error",
        }
    }

    /// The `Signature-Error` code, when this is a signature failure.
    pub fn signature_code(&self) -> Option<SignatureErrorCode> {
        match &self.0 {
            Kind::Signature { code, .. } => Some(*code),
            Kind::Revoked { .. } => Some(SignatureErrorCode::RevokedJwt),
            _ => None,
        }
    }

    /// The fixed human explanation.
    pub fn detail(&self) -> &'static str {
        match &self.0 {
            Kind::Signature { detail, .. }
            | Kind::Revoked { detail, .. }
            | Kind::Unavailable { detail, .. }
            | Kind::Forbidden { detail, .. }
            | Kind::Reused { detail }
            | Kind::Misconfigured { detail } => detail,
            Kind::PayloadTooLarge => "the signed request body exceeds the configured limit",
        }
    }

    /// For a `503`: the seconds the response's `Retry-After` asks the client to wait.
    pub fn retry_after(&self) -> Option<u32> {
        match &self.0 {
            Kind::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Kind::Signature { .. } | Kind::Revoked { .. } => StatusCode::UNAUTHORIZED,
            Kind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Reused { .. } => StatusCode::TOO_MANY_REQUESTS,
            Kind::Forbidden { .. } => StatusCode::FORBIDDEN,
            Kind::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 9457 problem document for this error: the body of its response, parsed.
    pub fn problem_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.problem_bytes()).expect("the problem body is JSON by construction")
    }

    /// The detail a client is told: a misconfiguration's cause is for the operator's logs,
    /// so clients get nothing specific.
    pub(crate) fn public_detail(&self) -> &'static str {
        match &self.0 {
            Kind::Misconfigured { detail } => misconfiguration_detail(detail, cfg!(debug_assertions)),
            _ => self.detail(),
        }
    }

    /// The problem document of this error, ready to render or to extend.
    pub(crate) fn problem(&self) -> Problem<'_> {
        Problem {
            status: self.status(),
            code: self.code(),
            detail: self.public_detail(),
            signature_error: matches!(&self.0, Kind::Signature { .. } | Kind::Revoked { .. }),
            required_input: match &self.0 {
                Kind::Signature { required_input, .. } => required_input.as_deref(),
                _ => None,
            },
            details_type: None,
        }
    }

    /// The protocol headers of the response: `Signature-Error` (and `Accept-Signature-*`)
    /// for signature failures, `Retry-After` for `503`, and always `Cache-Control: no-store`.
    ///
    /// # Errors
    ///
    /// A `required_input` component that is not an RFC 9651 string (for example one with a
    /// control character) cannot be put in `Signature-Error`: the returned
    /// a `500` [`Error`] is the answer to send instead, never an answer with a
    /// different code. Its own headers always build.
    pub fn write_headers(&self, headers: &mut http::HeaderMap) -> Result<(), Error> {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self.0 {
            Kind::Signature {
                code,
                required_input,
                accept,
                ..
            } => {
                headers.insert(
                    names::header::SIGNATURE_ERROR,
                    signature_error_value(*code, required_input.as_deref())?,
                );
                match (accept, code) {
                    (Some(accept), SignatureErrorCode::UnsupportedAlgorithm) => {
                        headers.insert(names::header::ACCEPT_SIGNATURE_ALG, accept.clone());
                    }
                    (Some(accept), _) => {
                        headers.insert(names::header::ACCEPT_SIGNATURE_SCHEME, accept.clone());
                    }
                    // The signature-key draft: `unsupported_algorithm` always says what is
                    // accepted, and Ed25519 is the one algorithm this crate verifies.
                    (None, SignatureErrorCode::UnsupportedAlgorithm) => {
                        headers.insert(
                            names::header::ACCEPT_SIGNATURE_ALG,
                            HeaderValue::from_static(names::alg::ED25519),
                        );
                    }
                    (None, _) => {}
                }
            }
            Kind::Revoked { person_token, .. } => {
                headers.insert(
                    names::header::SIGNATURE_ERROR,
                    HeaderValue::from_static(SignatureErrorCode::RevokedJwt.header_value()),
                );
                if *person_token {
                    headers.insert(
                        names::header::AAUTH_REQUIREMENT,
                        HeaderValue::from_static(names::requirement::PERSON_TOKEN_VALUE),
                    );
                }
            }
            Kind::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        Ok(())
    }

    /// The problem+json body of this error's response.
    fn problem_bytes(&self) -> Bytes {
        self.problem().render()
    }

    /// The complete response: status, protocol headers and a problem+json body.
    ///
    /// An error whose headers cannot be built is answered with the `500` of
    /// [`Error::write_headers`].
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        // Sized once for content-type, cache-control, signature-error and one more.
        let mut headers = http::HeaderMap::with_capacity(4);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Err(unbuildable) = self.write_headers(&mut headers) {
            return unbuildable.to_response();
        }
        let mut response = Response::new(B::from(self.problem_bytes()));
        *response.status_mut() = self.status();
        *response.headers_mut() = headers;
        response.extensions_mut().insert(self.audit_outcome());
        response
    }

    /// The audit decision and reason of this refusal.
    pub(crate) fn audit_outcome(&self) -> AuditOutcome {
        AuditOutcome {
            decision: match &self.0 {
                Kind::Forbidden { .. } => AuditDecision::Deny,
                _ => AuditDecision::Reject,
            },
            reason: self.code(),
            detail: self.detail(),
        }
    }
}

/// `error=<code>` and, for `invalid_input`, `required_input=("…" …)`. The components the
/// crate names are checked when the configuration is built; one that is not an RFC 9651
/// string can only come from an error built by hand.
fn signature_error_value(code: SignatureErrorCode, required: Option<&[String]>) -> Result<HeaderValue, Error> {
    let Some(required) = required.filter(|r| !r.is_empty()) else {
        return Ok(HeaderValue::from_static(code.header_value()));
    };
    let unbuildable = || header_unbuildable("a Signature-Error value could not be built");
    let mut list = sfv::ListSerializer::new();
    {
        let mut inner = list.inner_list();
        for component in required {
            let component = sfv::StringRef::from_str(component).map_err(|_| unbuildable())?;
            let _ = inner.bare_item(component);
        }
        let _ = inner.finish();
    }
    let serialized = list.finish().ok_or_else(unbuildable)?;
    let mut value = code.header_value().to_owned();
    value.push_str(", required_input=");
    value.push_str(&serialized);
    HeaderValue::from_str(&value).map_err(|_| unbuildable())
}

/// The `500` for a response header whose value could not be built, logged for the
/// operator: answering without the header, or with another one, would change the answer.
pub(crate) fn header_unbuildable(detail: &'static str) -> Error {
    tracing::error!(target: "tower_aauth", detail, "tower-aauth could not build a response header");
    Error(Kind::Misconfigured { detail })
}

/// An RFC 9457 problem document as every response of this crate renders it: straight to
/// bytes, because refusals are the one response an attacker can make us produce at will.
/// Members are written in sorted order, as `serde_json` would.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub(crate) status: StatusCode,
    pub(crate) code: &'a str,
    pub(crate) detail: &'a str,
    /// `type` is `urn:ietf:params:sig-error:<code>` rather than `about:blank`.
    pub(crate) signature_error: bool,
    pub(crate) required_input: Option<&'a [String]>,
    /// `authorization_details_type`, for a refused authorization detail.
    pub(crate) details_type: Option<&'a str>,
}

impl<'a> Problem<'a> {
    /// A problem with `type` `about:blank` and no extension member.
    pub(crate) fn plain(status: StatusCode, code: &'a str, detail: &'a str) -> Self {
        Problem {
            status,
            code,
            detail,
            signature_error: false,
            required_input: None,
            details_type: None,
        }
    }

    /// The body bytes.
    pub(crate) fn render(&self) -> Bytes {
        let mut out = String::with_capacity(256);
        out.push('{');
        if let Some(details_type) = self.details_type {
            out.push_str("\"authorization_details_type\":");
            push_json_string(&mut out, details_type);
            out.push(',');
        }
        out.push_str("\"detail\":");
        push_json_string(&mut out, self.detail);
        out.push_str(",\"error\":");
        push_json_string(&mut out, self.code);
        if let Some(required) = self.required_input {
            out.push_str(",\"required_input\":[");
            for (i, component) in required.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, component);
            }
            out.push(']');
        }
        out.push_str(",\"status\":");
        out.push_str(self.status.as_str());
        out.push_str(",\"title\":");
        push_json_string(&mut out, self.status.canonical_reason().unwrap_or("Error"));
        out.push_str(",\"type\":");
        if self.signature_error {
            out.push_str("\"urn:ietf:params:sig-error:");
            // Registered codes are lower-case ASCII tokens: nothing to escape.
            out.push_str(self.code);
            out.push('"');
        } else {
            out.push_str("\"about:blank\"");
        }
        out.push('}');
        Bytes::from(out)
    }
}

/// Appends `text` as a JSON string ([RFC 8259 §7](https://www.rfc-editor.org/rfc/rfc8259#section-7) escaping).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // The usual case: fixed details and codes need no escaping.
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Error {
    fn into_response(self) -> axum_core::response::Response {
        if let Kind::Misconfigured { detail } = &self.0 {
            tracing::error!(target: "tower_aauth", detail, "tower-aauth misconfiguration");
        }
        self.to_response::<axum_core::body::Body>()
    }
}

/// What was decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditDecision {
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

impl AuditDecision {
    /// The value of the `decision` field.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Challenge => "challenge",
            AuditDecision::Deny => "deny",
            AuditDecision::Reject => "reject",
        }
    }
}

/// Attached to the extensions of every response built from an [`Error`], so the
/// layer can name the decision and reason of a refusal a guard made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuditOutcome {
    /// The decision.
    pub(crate) decision: AuditDecision,
    /// The reason code.
    pub(crate) reason: &'static str,
    /// The fixed explanation.
    pub(crate) detail: &'static str,
}

/// A configuration mistake found by [`AAuthBuilder::build`](crate::AAuthBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tower-aauth configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

/// A malformed revocation or ceiling entry or document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tower-aauth policy: {message}")]
pub struct PolicyError {
    message: String,
    reason: &'static str,
}

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
            reason: "malformed policy document",
        }
    }

    pub(crate) fn entry(member: &str, index: usize, reason: &'static str) -> Self {
        PolicyError {
            message: format!("{member}[{index}]: {reason}"),
            reason,
        }
    }

    /// The fixed reason, without the position.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// The `500` detail of a guard that ran on a request the layer never saw.
pub(crate) const GUARD_WITHOUT_LAYER: &str = "an AAuth guard ran on a request the AAuth layer never saw, so it \
     cannot tell an unsigned request from a forged one and refuses to judge it. Put the layer \
     outside every guarded route: Router::new().route(\"/notes\", get(list).route_layer(aauth.\
     require_scopes([\"notes.read\"]))).merge(aauth.well_known_router()).layer(aauth.layer()). \
     axum's Router::layer wraps only the routes added before it: call .layer(aauth.layer()) \
     last, after every .route, .merge and .nest. Guard routes with route_layer, which applies \
     to matched routes only; Router::layer with a guard also guards /health and turns 404s \
     into challenges. (This explanation is sent in debug builds only; release builds answer \
     \"internal server error\" and log it.)";

/// The `500` detail of an extractor that ran on a request the layer never saw.
pub(crate) const EXTRACTOR_WITHOUT_LAYER: &str = "an AAuth extractor (VerifiedAgent, AuthGrant) ran on a request the \
     AAuth layer never saw, so it cannot tell an unsigned request from a forged one. Put the \
     layer outside every route that extracts: call .layer(aauth.layer()) last, after every \
     .route, .merge and .nest, because axum's Router::layer wraps only the routes added \
     before it. (This explanation is sent in debug builds only; release builds answer \
     \"internal server error\" and log it.)";

/// The detail a client is told for a misconfiguration: the explanation of a missing layer
/// in debug builds (`debug`), so that a developer sees it where they look; the fixed text
/// otherwise and for every other cause, which is for the operator's logs only.
pub(crate) fn misconfiguration_detail(detail: &'static str, debug: bool) -> &'static str {
    if debug && (detail == GUARD_WITHOUT_LAYER || detail == EXTRACTOR_WITHOUT_LAYER) {
        detail
    } else {
        "internal server error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Error> {
        let mut errors: Vec<Error> = SignatureErrorCode::ALL
            .iter()
            .map(|code| Error::signature(*code, "a fixed \"quoted\" detail\\ with\ttab"))
            .collect();
        errors.push(Error(Kind::Signature {
            code: SignatureErrorCode::InvalidInput,
            detail: "required components are not covered",
            required_input: Some(vec!["@method".to_owned(), "x-\"odd\"\u{1}".to_owned(), "é".to_owned()].into()),
            accept: None,
        }));
        errors.push(Error(Kind::Revoked {
            detail: "revoked",
            person_token: true,
        }));
        errors.push(Error(Kind::Unavailable {
            retry_after: 5,
            detail: "busy",
        }));
        errors.push(Error(Kind::PayloadTooLarge));
        errors.push(Error(Kind::Forbidden {
            code: "policy_denied",
            detail: "no",
        }));
        errors.push(Error(Kind::Misconfigured { detail: "secret cause" }));
        errors
    }

    /// The problem document built as a JSON tree, independently of [`Problem::render`].
    fn expected_document(error: &Error) -> serde_json::Value {
        let status = error.status();
        let code = error.code();
        let detail = match &error.0 {
            Kind::Misconfigured { .. } => "internal server error",
            _ => error.detail(),
        };
        let mut body = serde_json::json!({
            "type": match &error.0 {
                Kind::Signature { .. } | Kind::Revoked { .. } => format!("urn:ietf:params:sig-error:{code}"),
                _ => "about:blank".to_owned(),
            },
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "error": code,
            "detail": detail,
        });
        if let Kind::Signature {
            required_input: Some(required),
            ..
        } = &error.0
        {
            body["required_input"] = serde_json::json!(required);
        }
        body
    }

    #[test]
    fn the_rendered_problem_body_is_exactly_the_problem_document() {
        for error in every_kind() {
            let rendered: serde_json::Value = serde_json::from_slice(&error.problem_bytes()).expect("valid JSON");
            assert_eq!(rendered, expected_document(&error), "{error:?}");
            assert_eq!(error.problem_json(), rendered, "{error:?}");
        }
    }

    /// Bodies rendered by `serde_json` before there was one renderer keep their bytes:
    /// challenges, refused details and the hook's default body.
    #[test]
    fn the_rendered_bytes_are_those_serde_json_writes() {
        let errors = [
            Error::invalid_input(["@method", "content-digest"]),
            Error(Kind::Revoked {
                detail: "revoked",
                person_token: false,
            }),
            Error(Kind::Misconfigured { detail: "cause" }),
            Error(Kind::Forbidden {
                code: "insufficient_scope",
                detail: "a \"quoted\" scope",
            }),
        ];
        for error in errors {
            let serde = serde_json::to_vec(&expected_document(&error)).unwrap();
            assert_eq!(error.problem_bytes(), serde, "{error:?}");
        }
        let challenge = Problem::plain(StatusCode::UNAUTHORIZED, "agent_token_required", "Sign it.");
        let serde = serde_json::to_vec(&serde_json::json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "error": "agent_token_required",
            "detail": "Sign it.",
        }))
        .unwrap();
        assert_eq!(challenge.render(), serde);
        let forbidden = Error(Kind::Forbidden {
            code: "insufficient_authorization_details",
            detail: "no",
        });
        let mut document = expected_document(&forbidden);
        document["authorization_details_type"] = "payment_initiation".into();
        let detail = Problem {
            details_type: Some("payment_initiation"),
            ..forbidden.problem()
        };
        assert_eq!(detail.render(), serde_json::to_vec(&document).unwrap());
    }

    #[test]
    fn a_required_input_that_cannot_be_a_header_is_a_500_not_another_code() {
        let error = Error::invalid_input(["@method", "x-\u{1}"]);
        let mut headers = http::HeaderMap::new();
        let unbuildable = error.write_headers(&mut headers).expect_err("not an sf-string");
        assert!(matches!(
            unbuildable,
            Error(Kind::Misconfigured {
                detail: "a Signature-Error value could not be built"
            })
        ));
        assert!(headers.get(names::header::SIGNATURE_ERROR).is_none());
        let response: Response<Bytes> = error.to_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(names::header::SIGNATURE_ERROR).is_none());
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"], "server_error");
        assert_eq!(body["detail"], "internal server error");
    }

    #[test]
    fn unsupported_algorithm_always_names_the_accepted_algorithm() {
        let mut headers = http::HeaderMap::new();
        Error::signature(SignatureErrorCode::UnsupportedAlgorithm, "x")
            .write_headers(&mut headers)
            .unwrap();
        assert_eq!(headers[names::header::ACCEPT_SIGNATURE_ALG], "Ed25519");
        let mut headers = http::HeaderMap::new();
        Error::signature(SignatureErrorCode::InvalidKey, "x")
            .write_headers(&mut headers)
            .unwrap();
        assert!(headers.get(names::header::ACCEPT_SIGNATURE_ALG).is_none());
    }

    #[test]
    fn the_static_signature_error_value_is_error_equals_code() {
        for &code in SignatureErrorCode::ALL {
            assert_eq!(code.header_value(), format!("error={}", code.as_str()));
            assert_eq!(signature_error_value(code, None).unwrap(), code.header_value());
            assert_eq!(signature_error_value(code, Some(&[])).unwrap(), code.header_value());
        }
        let required = ["@method".to_owned(), "content-digest".to_owned()];
        assert_eq!(
            signature_error_value(SignatureErrorCode::InvalidInput, Some(&required)).unwrap(),
            r#"error=invalid_input, required_input=("@method" "content-digest")"#
        );
    }
}
