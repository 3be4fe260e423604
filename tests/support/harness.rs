//! A resource behind the layer whose handler counts its calls, and the refusal assertions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, VerifiedRequest, testing::ManualClock};

pub use super::fixtures::{AP, AS, NOW, RESOURCE, body_json, get};
use super::fixtures::{access_server, agent, agent_provider};

pub struct Harness {
    pub aauth: AAuth,
    pub calls: Arc<AtomicUsize>,
    pub clock: ManualClock,
    pub agent: TestAgent,
    pub access_server: TestIssuer,
    pub agent_provider: TestIssuer,
}

impl Harness {
    /// A route that needs `data.write`, enforcing the ceiling the way a guard does; counts
    /// the calls that pass it.
    pub fn ceiling_write_route(&self) -> Router {
        use axum::response::IntoResponse;
        let aauth = self.aauth.clone();
        let calls = self.calls.clone();
        Router::new()
            .route(
                "/data",
                axum::routing::post(move |request: Request<Body>| {
                    let aauth = aauth.clone();
                    let calls = calls.clone();
                    async move {
                        let verified = request.extensions().get::<VerifiedRequest>().unwrap();
                        if let Err(error) = aauth.scope_ceilings().check(verified, ["data.write"]) {
                            return error.into_response();
                        }
                        calls.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK.into_response()
                    }
                }),
            )
            .layer(self.aauth.layer())
    }

    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// A harness whose builder is adjusted by `adjust`.
    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let clock = ManualClock::new(NOW);
        let (agent, access_server, agent_provider) = (agent(), access_server(), agent_provider());
        let resolver = StaticResolver::new()
            .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
            .with_key(AP, engine::dwk::AGENT, agent_provider.public_jwk())
            .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
        let builder = AAuth::builder(RESOURCE)
            .clock(clock.clone())
            .key_resolver(resolver)
            .auth_server(AS);
        let aauth = adjust(builder).build().expect("valid configuration");
        Harness {
            aauth,
            calls: Arc::new(AtomicUsize::new(0)),
            clock,
            agent,
            access_server,
            agent_provider,
        }
    }

    pub fn router(&self) -> Router {
        let calls = self.calls.clone();
        Router::new()
            .fallback(any(move |request: Request<Body>| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let verified = request.extensions().get::<VerifiedRequest>().cloned();
                    let body = match verified {
                        Some(v) => serde_json::json!({
                            "scheme": v.scheme.as_str(),
                            "thumbprint": &*v.key_thumbprint,
                            "token": v.token_kind().map(|k| k.typ()),
                        }),
                        None => serde_json::json!({ "scheme": null }),
                    };
                    axum::Json(body)
                }
            }))
            .layer(self.aauth.layer())
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn auth_token(&self, scope: &str) -> String {
        self.access_server
            .auth_token(RESOURCE, &self.agent.public_jwk(), scope, NOW)
    }
}

/// Asserts a refusal: status, exactly one `Signature-Error` with `code`, `no-store`, a
/// problem body naming the code, and that the handler did not run. Returns the problem
/// body, whose fixed `detail` tells which check refused.
pub async fn assert_refused(harness: &Harness, response: Response<Body>, code: &str) -> serde_json::Value {
    assert_refused_case("", harness, response, code).await
}

/// [`assert_refused`] for the table row `case`, which every failure message names.
pub async fn assert_refused_case(
    case: &str,
    harness: &Harness,
    response: Response<Body>,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}: status for {code}");
    let errors: Vec<_> = response.headers().get_all("signature-error").iter().collect();
    assert_eq!(errors.len(), 1, "{case}: exactly one Signature-Error");
    let value = errors[0].to_str().unwrap();
    assert!(
        value == format!("error={code}") || value.starts_with(&format!("error={code},")),
        "{case}: expected {code}, got {value}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store", "{case}");
    assert_eq!(harness.calls(), 0, "{case}: the inner service must not run");
    let body = body_json(response).await;
    assert_eq!(body["error"], code, "{case}");
    assert_eq!(body["type"], format!("urn:ietf:params:sig-error:{code}"), "{case}");
    body
}

/// [`assert_refused`], and the problem body's `detail` is `detail`: proves which check
/// refused when several share a code.
pub async fn assert_refused_because(harness: &Harness, response: Response<Body>, code: &str, detail: &str) {
    let body = assert_refused(harness, response, code).await;
    assert_eq!(body["detail"], detail, "refused by the wrong check");
}
