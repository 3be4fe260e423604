//! The endpoints the layer answers itself, once mounted through the builder: the
//! revocation endpoint ([AAuth draft -11, "Token Revocation"][draft-11]) and the
//! authorization endpoint ([AAuth draft -11, "Authorization Endpoint"][draft-11]).
//!
//! Both are signed `POST`s with JSON bodies. The layer verifies the signature as for any
//! request (revocation, replay, `Content-Digest` against the body, capped at
//! [`MAX_BODY_BYTES`]) and, for a mounted path, hands the verified body bytes on in a
//! [`VerifiedBody`] extension, then answers here instead of calling the application. A
//! body the signature did not cover through `content-digest` is never read: `401
//! invalid_input`. Body errors are RFC 9457 problems with the draft's `error` codes;
//! nothing the client sent is echoed.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod authorize;
pub(crate) mod config;
pub(crate) mod revoke;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::state::Shared;
use config::Which;

/// Largest body an endpoint reads (a revocation is about 100 bytes, an authorization
/// request a few scopes): larger is `413` before the body is buffered further.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024;

/// The body bytes of a request to a mounted endpoint, checked against the signed
/// `Content-Digest`. Only the layer inserts it.
#[derive(Clone)]
pub(crate) struct VerifiedBody(pub(crate) Bytes);

/// An endpoint's answer: at once, or once the store behind a resource-managed
/// interaction answered.
pub(crate) enum Answer {
    Now(Response<Bytes>),
    Later(crate::future::BoxFuture<'static, Response<Bytes>>),
}

/// The answer of the endpoint mounted at `path` to `request` (after the layer verified
/// what it could).
pub(crate) fn answer<B>(shared: &Arc<Shared>, which: Which, request: &Request<B>) -> Answer {
    if request.method() != Method::POST {
        let mut response = problem_response(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "this endpoint accepts POST only",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Answer::Now(response);
    }
    match which {
        Which::Revocation => Answer::Now(revoke::answer(shared, request)),
        Which::Authorization => authorize::answer(shared, request),
    }
}

/// A problem+json body error (shaped by the rejection hook when one is configured).
pub(crate) fn problem_response(
    shared: &Shared,
    status: StatusCode,
    code: &'static str,
    detail: &'static str,
) -> Response<Bytes> {
    crate::challenge::problem_response(shared.hook(), status, code, detail)
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub(crate) fn is_json<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON answer with `Cache-Control: no-store`.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A text value a client may send in a body member: 1 to `max` bytes, no control
/// characters.
pub(crate) fn is_text(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)
}
