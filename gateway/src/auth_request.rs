//! The nginx `auth_request` endpoint.
//!
//! nginx sends a body-less subrequest to `auth_request_path` carrying the client's
//! headers, with the original method in `X-Original-Method`, the original request target
//! in `X-Original-URI`, the client's `Host` kept (`proxy_set_header Host $http_host`) and,
//! if the signature covers it, the original `Content-Length` in
//! `X-Original-Content-Length`. The endpoint rebuilds that request and runs it through the
//! verified path with the [`Allow`](crate::service::Allow) terminal. nginx only honours
//! `2xx`, `401` and `403` from it (anything else becomes its own `500`), so:
//!
//! * allowed → `200` with the identity headers (for `auth_request_set`);
//! * `401` / `403` → as the layer or guard answered (challenge headers, problem body);
//! * anything else (`400`, `404` no route, `413`, `429`, `503`) → `403` with the original
//!   status in `x-aauth-status`: refused, never passed.
//!
//! The body never reaches this endpoint: a signature covering `content-digest` cannot be
//! checked here and is refused (`401 invalid_signature`, from the layer comparing the
//! digest with the empty body), so such requests need the reverse proxy or Envoy with
//! `with_request_body`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use tower::{Service, ServiceExt};

use crate::service::{HttpService, problem};

pub const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const ORIGINAL_CONTENT_LENGTH: HeaderName = HeaderName::from_static("x-original-content-length");
/// The status the verified path answered, when it is not one nginx honours.
pub const STATUS: HeaderName = HeaderName::from_static("x-aauth-status");

/// The auth-request listener: the endpoint, the well-known documents, `404` otherwise.
#[derive(Clone)]
pub struct AuthRequest {
    pub path: String,
    pub verified: HttpService,
}

impl Service<Request<Body>> for AuthRequest {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let verified = self.verified.clone();
        if request.uri().path() != self.path {
            if request.uri().path().starts_with("/.well-known/") {
                return Box::pin(verified.oneshot(request));
            }
            return Box::pin(async { Ok(problem(StatusCode::NOT_FOUND, "not_found", "no route matches")) });
        }
        Box::pin(async move {
            let original = match original_request(request) {
                Ok(original) => original,
                Err(detail) => return Ok(refused(problem(StatusCode::BAD_REQUEST, "invalid_request", detail))),
            };
            let answer = verified.oneshot(original).await?;
            Ok(for_nginx(answer))
        })
    }
}

/// The client's request as nginx describes it.
fn original_request(request: Request<Body>) -> Result<Request<Body>, &'static str> {
    let (mut parts, _) = request.into_parts();
    let method = parts
        .headers
        .get(&ORIGINAL_METHOD)
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
        .ok_or("X-Original-Method is missing or not a method")?;
    let uri = parts
        .headers
        .get(&ORIGINAL_URI)
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.starts_with('/'))
        .and_then(|value| value.parse::<Uri>().ok())
        .ok_or("X-Original-URI is missing or not an origin-form request target")?;
    if !parts.headers.contains_key(header::HOST) {
        return Err("Host is missing");
    }
    let length = parts.headers.get(&ORIGINAL_CONTENT_LENGTH).cloned();
    for name in [ORIGINAL_METHOD, ORIGINAL_URI, ORIGINAL_CONTENT_LENGTH] {
        parts.headers.remove(name);
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(length) = length.filter(|value| !value.is_empty()) {
        parts.headers.insert(header::CONTENT_LENGTH, length);
    }
    parts.method = method;
    parts.uri = uri;
    parts.extensions = http::Extensions::new();
    Ok(Request::from_parts(parts, Body::empty()))
}

/// A refusal nginx would turn into `500`: `403`, the status kept in `x-aauth-status`.
fn refused(mut response: Response<Body>) -> Response<Body> {
    let status = response.status();
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
        .headers_mut()
        .insert(STATUS, HeaderValue::from_str(status.as_str()).expect("three digits"));
    response
}

fn for_nginx(answer: Response<Body>) -> Response<Body> {
    let status = answer.status();
    if status == StatusCode::OK {
        // Only the identity matters to nginx; a well-known document's own answer is
        // served on its own location.
        let (parts, _) = answer.into_parts();
        let mut response = Response::new(Body::empty());
        for (name, value) in &parts.headers {
            if name.as_str().starts_with(crate::identity::PREFIX) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        return response;
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return answer;
    }
    refused(answer)
}
