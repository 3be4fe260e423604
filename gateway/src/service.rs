//! The request path shared by the three modes:
//!
//! ```text
//! AAuth layer (verify) → well-known documents | route table → route guard → terminal
//! ```
//!
//! The route table is fixed at start (routes never overlap, so at most one matches); a
//! request no route matches, or whose path could be read differently by the upstream
//! (dot segments, encoded slashes), is refused here and never reaches a terminal. The
//! terminal is the forwarder (reverse proxy) or [`Allow`] (nginx and Envoy modes: the
//! gateway only answers whether, and with which identity).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};
use tower_aauth::AAuth;
use tower_aauth::guard::{require_bot, require_bot_from};

use crate::config::{Bots, Config, Route};
use crate::identity;

/// A fully built request path.
pub type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// A fixed problem+json refusal (no request text echoed).
pub fn problem(status: StatusCode, code: &'static str, detail: &'static str) -> Response<Body> {
    let body = serde_json::json!({
        "detail": detail,
        "error": code,
        "status": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the upstream could resolve `path` to another route than the one matched on it
/// as sent: a dot segment, an encoded `/`, `\` or `.`, or an empty segment.
pub fn ambiguous_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains('\\') {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") || lower.contains("%00") {
        return true;
    }
    path.split('/').any(|segment| segment == "." || segment == "..")
}

/// The nginx / Envoy terminal: `200` with the identity headers, no body.
#[derive(Clone)]
pub struct Allow;

impl Service<Request<Body>> for Allow {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let identity = identity::headers(request.extensions());
        std::future::ready(Ok(match identity {
            Ok(identity) => {
                let mut response = Response::new(Body::empty());
                response
                    .headers_mut()
                    .extend(identity.into_iter().map(|(n, v)| (Some(n), v)));
                response
            }
            Err(identity::Unrepresentable) => unrepresentable(),
        }))
    }
}

pub fn unrepresentable() -> Response<Body> {
    problem(
        StatusCode::FORBIDDEN,
        "identity_unrepresentable",
        "the verified identity cannot be passed on as a header value",
    )
}

/// One configured route with its guard over the terminal.
#[derive(Clone)]
struct Routed {
    route: Route,
    service: HttpService,
}

/// The route table.
#[derive(Clone)]
pub struct Dispatch {
    routes: Arc<[Routed]>,
}

impl Dispatch {
    pub fn new(aauth: &AAuth, config: &Config, terminal: HttpService) -> Self {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let service = match (&route.requirement, &route.bots) {
                    (Some(requirement), _) => {
                        let guarded = aauth.require(requirement.clone()).layer(terminal.clone());
                        BoxCloneSyncService::new(guarded)
                    }
                    (None, Some(Bots::Any)) => BoxCloneSyncService::new(require_bot().layer(terminal.clone())),
                    (None, Some(Bots::From(origins))) => {
                        BoxCloneSyncService::new(require_bot_from(origins.iter().cloned()).layer(terminal.clone()))
                    }
                    (None, None) => terminal.clone(),
                };
                Routed {
                    route: route.clone(),
                    service,
                }
            })
            .collect();
        Dispatch { routes }
    }
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if ambiguous_path(path) {
            return Box::pin(async {
                Ok(problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the path has dot segments, empty segments or encoded separators",
                ))
            });
        }
        let method = request.method();
        match self.routes.iter().find(|routed| routed.route.matches(method, path)) {
            None => Box::pin(async { Ok(problem(StatusCode::NOT_FOUND, "not_found", "no route matches")) }),
            Some(routed) => Box::pin(routed.service.clone().oneshot(request)),
        }
    }
}

/// The whole verified request path: the layer over the well-known documents and the route
/// table.
pub fn verified_path(aauth: &AAuth, config: &Config, terminal: HttpService) -> HttpService {
    let dispatch = Dispatch::new(aauth, config, terminal);
    let router = aauth.well_known_router::<()>().fallback_service(dispatch);
    BoxCloneSyncService::new(aauth.layer().layer(router))
}

/// Reads a body to bytes (tests and the ext_authz mapping), bounded.
pub async fn body_bytes(body: Body, cap: usize) -> Option<Bytes> {
    axum::body::to_bytes(body, cap).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_an_upstream_could_resolve_elsewhere_are_ambiguous() {
        for path in [
            "/a/../admin",
            "/a/./b",
            "/..",
            "//admin",
            "/a%2fb",
            "/a%2Fb",
            "/a%2e%2e/b",
            "/a\\b",
            "/a%5cb",
            "/a%00",
            "",
        ] {
            assert!(ambiguous_path(path), "{path:?}");
        }
        for path in ["/", "/data", "/a/b.c/d", "/a%20b", "/a/..b"] {
            assert!(!ambiguous_path(path), "{path:?}");
        }
    }
}
