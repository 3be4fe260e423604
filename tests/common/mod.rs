//! Shared harness: a resource behind the layer whose handler counts its calls.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::testing::{TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, ManualClock, VerifiedRequest, wire};

/// The fixed clock every test starts at (the digest's derived vectors use it).
pub const NOW: u64 = 1_730_217_600;
/// Our resource identifier.
pub const RESOURCE: &str = "https://resource.example";
/// The trusted access server.
pub const AS: &str = "https://as.example";
/// An agent provider.
pub const AP: &str = "https://agent.example";

pub struct Harness {
    pub aauth: AAuth,
    pub calls: Arc<AtomicUsize>,
    pub clock: ManualClock,
    pub agent: TestAgent,
    pub access_server: TestIssuer,
    pub agent_provider: TestIssuer,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// A harness whose builder is adjusted by `adjust`.
    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let clock = ManualClock::new(NOW);
        let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
        let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
        let agent_provider = TestIssuer::new(AP, [3; 32], "ap-key-1");
        let resolver = StaticResolver::new()
            .with_key(AS, wire::dwk::ACCESS, access_server.public_jwk())
            .with_key(AP, wire::dwk::AGENT, agent_provider.public_jwk())
            .with_key(AP, wire::dwk::AGENT, agent.public_jwk());
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

pub fn get(path: &str) -> Request<Body> {
    Request::get(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap()
}

pub async fn body_json(response: Response<Body>) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// Asserts a refusal: status, exactly one `Signature-Error` with `code`, `no-store`, a
/// problem body naming the code, and that the handler did not run. Returns the problem
/// body, whose fixed `detail` tells which check refused.
pub async fn assert_refused(harness: &Harness, response: Response<Body>, code: &str) -> serde_json::Value {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "status for {code}");
    let errors: Vec<_> = response.headers().get_all("signature-error").iter().collect();
    assert_eq!(errors.len(), 1, "exactly one Signature-Error");
    let value = errors[0].to_str().unwrap();
    assert!(
        value == format!("error={code}") || value.starts_with(&format!("error={code},")),
        "expected {code}, got {value}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(harness.calls(), 0, "the inner service must not run");
    let body = body_json(response).await;
    assert_eq!(body["error"], code);
    assert_eq!(body["type"], format!("urn:ietf:params:sig-error:{code}"));
    body
}

/// [`assert_refused`], and the problem body's `detail` is `detail`: proves which check
/// refused when several share a code.
pub async fn assert_refused_because(harness: &Harness, response: Response<Body>, code: &str, detail: &str) {
    let body = assert_refused(harness, response, code).await;
    assert_eq!(body["detail"], detail, "refused by the wrong check");
}
