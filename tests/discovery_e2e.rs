//! Discovery end to end through the layer: the built-in resolver and guarded fetcher,
//! configured with `dangerous().allow_http_loopback()`, against issuers on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use support::discovery::{Canned, IssuerServer};
use tower::ServiceExt;
use tower_aauth::discovery::DiscoveryConfig;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, testing::ManualClock};

const NOW: u64 = 1_730_217_600;
const RESOURCE: &str = "https://resource.example";
const AGENT_DWK: &str = "aauth-agent.json";

struct Resource {
    aauth: AAuth,
    calls: Arc<AtomicUsize>,
    clock: ManualClock,
}

fn resource(loopback: bool, adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Resource {
    let clock = ManualClock::new(NOW);
    let mut builder = adjust(AAuth::builder(RESOURCE).clock(clock.clone()));
    if loopback {
        builder = builder.dangerous().allow_http_loopback();
    }
    Resource {
        aauth: builder.build().expect("valid configuration"),
        calls: Arc::default(),
        clock,
    }
}

impl Resource {
    fn router(&self) -> Router {
        let calls = self.calls.clone();
        Router::new()
            .fallback(any(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "served"
                }
            }))
            .layer(self.aauth.layer())
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn signed(&self, agent: &TestAgent, source: &KeySource) -> Request<Body> {
        let mut request = Request::get(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
        agent.sign(&mut request, source, self_now(&self.clock));
        request
    }

    async fn assert_refused(&self, response: Response<Body>, code: &str) {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "status for {code}");
        let errors: Vec<_> = response.headers().get_all("signature-error").iter().collect();
        assert_eq!(errors.len(), 1, "exactly one Signature-Error");
        assert_eq!(errors[0].to_str().unwrap(), format!("error={code}"));
        assert_eq!(self.calls(), 0, "the inner service must not run");
    }
}

fn self_now(clock: &ManualClock) -> u64 {
    use tower_aauth::Clock;
    clock.now()
}

fn agent() -> TestAgent {
    TestAgent::from_seed([1; 32]).with_kid("agent-key-1")
}

async fn agent_provider() -> IssuerServer {
    let server = IssuerServer::start().await;
    server.publish(AGENT_DWK, &agent().jwks());
    server
}

fn hits(server: &IssuerServer) -> (usize, usize) {
    (
        server.hits(&format!("/.well-known/{AGENT_DWK}")),
        server.hits("/.well-known/jwks.json"),
    )
}

#[tokio::test]
async fn a_jwks_uri_agent_on_loopback_is_verified_and_then_served_from_cache() {
    let server = agent_provider().await;
    let resource = resource(true, |b| b);
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    for _ in 0..5 {
        let response = resource.send(resource.signed(&agent(), &source)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(resource.calls(), 5);
    assert_eq!(hits(&server), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_cold_requests_through_the_layer_fetch_once() {
    let server = agent_provider().await;
    server.set(
        &format!("/.well-known/{AGENT_DWK}"),
        Canned::json(&server.metadata()).delayed(Duration::from_millis(200)),
    );
    let resource = Arc::new(resource(true, |b| b));
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let resource = resource.clone();
            let request = resource.signed(&agent(), &source);
            tokio::spawn(async move { resource.send(request).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(resource.calls(), 100);
    assert_eq!(hits(&server), (1, 1));
}

#[tokio::test]
async fn an_unknown_kid_is_unknown_key() {
    let server = agent_provider().await;
    let resource = resource(true, |b| b);
    let stranger = TestAgent::from_seed([2; 32]).with_kid("stranger");
    let source = KeySource::agent_jwks(&server.origin, "stranger");
    let response = resource.send(resource.signed(&stranger, &source)).await;
    resource.assert_refused(response, "unknown_key").await;
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_issuer_mismatch() {
    let server = agent_provider().await;
    server.set(
        &format!("/.well-known/{AGENT_DWK}"),
        Canned::json(&serde_json::json!({
            "issuer": "https://agent.example",
            "jwks_uri": server.url("/.well-known/jwks.json"),
        })),
    );
    let resource = resource(true, |b| b);
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    let response = resource.send(resource.signed(&agent(), &source)).await;
    resource.assert_refused(response, "issuer_mismatch").await;
    assert_eq!(hits(&server), (1, 0));
}

#[tokio::test]
async fn an_unreachable_issuer_is_invalid_key() {
    let server = agent_provider().await;
    server.set(&format!("/.well-known/{AGENT_DWK}"), Canned::status(503));
    let resource = resource(true, |b| b);
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    let response = resource.send(resource.signed(&agent(), &source)).await;
    resource.assert_refused(response, "invalid_key").await;
}

#[tokio::test]
async fn without_the_development_flag_a_loopback_signer_is_refused_without_contact() {
    let server = agent_provider().await;
    let resource = resource(false, |b| b);
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    let response = resource.send(resource.signed(&agent(), &source)).await;
    resource.assert_refused(response, "invalid_key").await;
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn an_exhausted_new_issuer_budget_is_503_with_retry_after_and_no_signature_error() {
    let first = agent_provider().await;
    let second = agent_provider().await;
    let config = {
        let mut config = DiscoveryConfig::default();
        config.new_issuers_per_minute = 1;
        config
    };
    let resource = resource(true, |b| b.discovery(config));
    let response = resource
        .send(resource.signed(&agent(), &KeySource::agent_jwks(&first.origin, "agent-key-1")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let calls = resource.calls();
    let response = resource
        .send(resource.signed(&agent(), &KeySource::agent_jwks(&second.origin, "agent-key-1")))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(!response.headers().contains_key("signature-error"));
    assert_eq!(resource.calls(), calls, "the inner service must not run");
    assert_eq!(second.total_hits(), 0);
}

#[tokio::test]
async fn an_auth_token_issuer_on_loopback_is_discovered_once() {
    let server = IssuerServer::start().await;
    let access_server = TestIssuer::new(server.origin.clone(), [4; 32], "as-key-1");
    server.set(
        "/.well-known/aauth-access.json",
        Canned::json(&access_server.metadata()),
    );
    server.set("/.well-known/jwks.json", Canned::json(&access_server.jwks()));
    let origin = server.origin.clone();
    let resource = resource(true, |b| b.auth_server(origin));
    for _ in 0..3 {
        let token = access_server.auth_token(RESOURCE, &agent().public_jwk(), "data.read", NOW);
        let response = resource.send(resource.signed(&agent(), &KeySource::Jwt(token))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.hits("/.well-known/aauth-access.json"), 1);
    assert_eq!(server.hits("/.well-known/jwks.json"), 1);
}

#[tokio::test]
async fn a_token_issuer_over_budget_is_503_not_invalid_jwt() {
    let server = IssuerServer::start().await;
    let access_server = TestIssuer::new(server.origin.clone(), [4; 32], "as-key-1");
    server.set(
        "/.well-known/aauth-access.json",
        Canned::json(&access_server.metadata()),
    );
    server.set("/.well-known/jwks.json", Canned::json(&access_server.jwks()));
    let origin = server.origin.clone();
    let config = {
        let mut config = DiscoveryConfig::default();
        config.new_issuers_per_minute = 0;
        config
    };
    let resource = resource(true, |b| b.auth_server(origin).discovery(config));
    let token = access_server.auth_token(RESOURCE, &agent().public_jwk(), "data.read", NOW);
    let response = resource.send(resource.signed(&agent(), &KeySource::Jwt(token))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key("signature-error"));
    assert_eq!(resource.calls(), 0);
    assert_eq!(server.total_hits(), 0);
}

#[tokio::test]
async fn a_down_issuer_keeps_signers_verified_until_the_stale_limit() {
    let server = agent_provider().await;
    let short = |v: &serde_json::Value| Canned::json(v).header("cache-control", "max-age=60");
    server.set(&format!("/.well-known/{AGENT_DWK}"), short(&server.metadata()));
    server.set("/.well-known/jwks.json", short(&agent().jwks()));
    let config = {
        let mut config = DiscoveryConfig::default();
        config.max_stale = Duration::from_secs(600);
        config
    };
    let resource = resource(true, |b| b.discovery(config));
    let source = KeySource::agent_jwks(&server.origin, "agent-key-1");
    assert_eq!(
        resource.send(resource.signed(&agent(), &source)).await.status(),
        StatusCode::OK
    );
    server.set(&format!("/.well-known/{AGENT_DWK}"), Canned::status(500));
    server.set("/.well-known/jwks.json", Canned::status(500));
    resource.clock.advance(120);
    assert_eq!(
        resource.send(resource.signed(&agent(), &source)).await.status(),
        StatusCode::OK
    );
    resource.clock.advance(600);
    let calls = resource.calls();
    let response = resource.send(resource.signed(&agent(), &source)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=unknown_key");
    assert_eq!(resource.calls(), calls);
}

#[tokio::test]
async fn discovery_settings_cannot_be_combined_with_a_custom_resolver() {
    let builder = AAuth::builder(RESOURCE)
        .key_resolver(tower_aauth::discovery::StaticResolver::new())
        .discovery(DiscoveryConfig::default());
    assert!(builder.build().is_err());
}
