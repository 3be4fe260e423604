//! Attack catalogue §1.6: cache poisoning and cache correctness. The built-in discovery
//! runs over an in-memory fetcher whose documents the test changes between requests; the
//! clock is manual, so lifetimes are exact.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use support::attack::{AS, NOW, RESOURCE, get};
use support::discovery::MapFetch;
use tower::ServiceExt;
use tower_aauth::discovery::{DiscoveryResolver, FetchedDocument, IdentifierPolicy};
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, Clock, ResourceKey, testing::ManualClock, wire};

const A: &str = "https://a.example";
const B: &str = "https://b.example";

struct World {
    aauth: AAuth,
    resolver: DiscoveryResolver<MapFetch>,
    fetch: MapFetch,
    clock: ManualClock,
    agent: TestAgent,
    access_server: TestIssuer,
    calls: Arc<AtomicUsize>,
}

fn world() -> World {
    let fetch = MapFetch::default();
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    fetch.publish(AS, engine::dwk::ACCESS, &access_server.jwks());
    for provider in [A, B] {
        fetch.publish(provider, engine::dwk::AGENT, &agent.jwks());
    }
    let clock = ManualClock::new(NOW);
    let resolver = DiscoveryResolver::builder(fetch.clone())
        .identifiers(IdentifierPolicy::default())
        .clock(Arc::new(clock.clone()))
        .build();
    let aauth = AAuth::builder(RESOURCE)
        .clock(clock.clone())
        .auth_server(AS)
        .key_resolver(resolver.clone())
        .build()
        .unwrap();
    World {
        aauth,
        resolver,
        fetch,
        clock,
        agent,
        access_server,
        calls: Arc::default(),
    }
}

impl World {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        let calls = self.calls.clone();
        Router::new()
            .fallback(any(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "handler ran" }
            }))
            .layer(self.aauth.layer())
            .oneshot(request)
            .await
            .unwrap()
    }

    fn signed(&self, source: &KeySource) -> Request<Body> {
        let mut request = get("/data");
        self.agent.sign(&mut request, source, self.clock.now());
        request
    }

    async fn with_token(&self, token: String) -> Response<Body> {
        self.send(self.signed(&KeySource::Jwt(token))).await
    }

    fn auth_token(&self) -> String {
        self.access_server
            .auth_token(RESOURCE, &self.agent.public_jwk(), "data.read", self.clock.now())
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn code(response: &Response<Body>) -> String {
    response.headers()[wire::SIGNATURE_ERROR].to_str().unwrap().to_owned()
}

fn metadata_url(issuer: &str, dwk: &str) -> String {
    format!("{issuer}/.well-known/{dwk}")
}

#[tokio::test]
async fn cache_01_metadata_for_one_name_claiming_another_plants_nothing_under_either() {
    let w = world();
    w.fetch.set_json(
        &metadata_url(A, engine::dwk::AGENT),
        &json!({"issuer": B, "jwks_uri": format!("{B}/jwks")}),
    );
    let response = w.send(w.signed(&KeySource::agent_jwks(A, "agent-key-1"))).await;
    assert_eq!(code(&response), "error=issuer_mismatch");
    assert_eq!(w.fetch.calls(&format!("{B}/jwks")), 0, "nothing fetched on B's behalf");
    // B's own request triggers B's own metadata fetch: nothing was cached under B.
    let response = w.send(w.signed(&KeySource::agent_jwks(B, "agent-key-1"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(w.fetch.calls(&metadata_url(B, engine::dwk::AGENT)), 1);
    assert_eq!(w.calls(), 1);
}

#[tokio::test]
async fn cache_02_a_key_published_for_one_role_never_verifies_another() {
    let w = world();
    // The access server's host also runs an agent provider, with another key.
    let agent_role_key = ResourceKey::from_seed([9; 32]).with_kid("as-key-1");
    w.fetch.set_json(
        &metadata_url(AS, engine::dwk::AGENT),
        &json!({"issuer": AS, "jwks_uri": format!("{AS}/agent-jwks")}),
    );
    w.fetch.set_json(
        &format!("{AS}/agent-jwks"),
        &json!({"keys": [agent_role_key.public_jwk().to_json()]}),
    );
    // Warm the agent-role entry, then present an auth token signed by the agent-role key.
    let agent_role = TestIssuer::new(AS, [9; 32], "as-key-1");
    let _ = w.send(w.signed(&KeySource::agent_jwks(AS, "as-key-1"))).await;
    let forged = agent_role.auth_token(RESOURCE, &w.agent.public_jwk(), "data.read", NOW);
    let response = w.with_token(forged).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(&response), "error=invalid_jwt");
    assert_eq!(w.calls(), 0);
}

#[tokio::test]
async fn cache_03_an_invalid_refresh_keeps_the_previous_keys_and_never_uses_the_bad_ones() {
    let w = world();
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    let mut bad = w.access_server.public_jwk().to_json();
    bad["alg"] = json!("ES256");
    w.fetch.set_json(&format!("{AS}/jwks"), &json!({ "keys": [bad] }));
    w.clock.advance(600);
    let fetched = w.fetch.total_calls();
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    assert!(w.fetch.total_calls() > fetched, "the refresh happened");
    assert_eq!(w.calls(), 2);
}

#[tokio::test]
async fn cache_04_max_age_is_clamped_to_between_a_minute_and_a_day() {
    let w = world();
    let jwks_url = format!("{AS}/jwks");
    let document =
        |max_age: u64| FetchedDocument::new(Bytes::from(w.access_server.jwks().to_string())).with_max_age(max_age);
    // A year is cut to a day.
    w.fetch.set_document(&jwks_url, document(31_536_000));
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    w.clock.advance(23 * 3600);
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    assert_eq!(w.fetch.calls(&jwks_url), 1, "fresh for a day");
    w.clock.advance(3601);
    // Zero is raised to a minute.
    w.fetch.set_document(&jwks_url, document(0));
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    assert_eq!(w.fetch.calls(&jwks_url), 2, "expired after the day");
    for _ in 0..10 {
        w.clock.advance(5);
        assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    }
    assert_eq!(w.fetch.calls(&jwks_url), 2, "no fetch per request under max-age=0");
}

#[tokio::test]
async fn cache_05_request_borne_keys_never_enter_the_issuer_cache() {
    let w = world();
    for n in 0..100u8 {
        let agent = TestAgent::from_seed([n; 32]);
        let mut request = get("/data");
        agent.sign(&mut request, &KeySource::Hwk, NOW);
        assert_eq!(w.send(request).await.status(), StatusCode::OK);
    }
    assert_eq!(w.resolver.cached_issuers(), 0);
    assert_eq!(w.fetch.total_calls(), 0);
    // cnf.jwk of an auth token does not either: only the access server's entry appears.
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    assert_eq!(w.resolver.cached_issuers(), 1);
}

#[tokio::test]
async fn cache_06_a_key_removed_upstream_is_unknown_after_the_refresh() {
    let w = world();
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    let replacement = ResourceKey::from_seed([8; 32]).with_kid("as-key-2");
    w.fetch.set_json(
        &format!("{AS}/jwks"),
        &json!({"keys": [replacement.public_jwk().to_json()]}),
    );
    w.clock.advance(600);
    let response = w.with_token(w.auth_token()).await;
    assert_eq!(code(&response), "error=unknown_key");
    assert_eq!(w.calls(), 1);
}

/// The catalogue's defence is an immediate, rate-limited refresh when a cached key fails
/// to verify. We do not refresh on a verification failure (an attacker could then drive
/// refreshes with bad signatures); a re-key under the same `kid` is picked up at the
/// entry's next refresh (5 minutes by default, bounded by `max-age`), and until then the
/// old key's answer is a refusal, never an acceptance of the new one by the old key.
#[tokio::test]
async fn cache_07_a_silent_re_key_under_the_same_kid_is_picked_up_at_the_next_refresh() {
    let w = world();
    assert_eq!(w.with_token(w.auth_token()).await.status(), StatusCode::OK);
    let rekeyed = TestIssuer::new(AS, [11; 32], "as-key-1");
    w.fetch.set_json(&format!("{AS}/jwks"), &rekeyed.jwks());
    let token = rekeyed.auth_token(RESOURCE, &w.agent.public_jwk(), "data.read", NOW);
    let fetched = w.fetch.total_calls();
    for _ in 0..20 {
        let response = w.with_token(token.clone()).await;
        assert_eq!(code(&response), "error=invalid_jwt");
    }
    assert_eq!(w.fetch.total_calls(), fetched, "bad signatures drive no refresh");
    w.clock.advance(301);
    let token = rekeyed.auth_token(RESOURCE, &w.agent.public_jwk(), "data.read", w.clock.now());
    assert_eq!(w.with_token(token).await.status(), StatusCode::OK);
    assert_eq!(w.calls(), 2);
}
