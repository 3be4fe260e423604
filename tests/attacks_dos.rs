//! Attack catalogue §1.5: JWKS refresh and discovery denial of service. The built-in
//! discovery runs over an in-memory fetcher that counts every URL it is asked for.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use support::attack::{AS, Attack, Harness, NOW, RESOURCE, get, raw_jwt};
use support::discovery::MapFetch;
use tower::ServiceExt;
use tower_aauth::discovery::{DiscoveryConfig, FetchError};
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, Clock, testing::ManualClock, wire};

struct World {
    aauth: AAuth,
    fetch: MapFetch,
    clock: ManualClock,
    agent: TestAgent,
    access_server: TestIssuer,
    calls: Arc<AtomicUsize>,
}

fn world(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> World {
    let fetch = MapFetch::default();
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    fetch.publish(AS, engine::dwk::ACCESS, &access_server.jwks());
    let clock = ManualClock::new(NOW);
    let builder = AAuth::builder(RESOURCE)
        .clock(clock.clone())
        .auth_server(AS)
        .fetcher(fetch.clone());
    World {
        aauth: adjust(builder).build().unwrap(),
        fetch,
        clock,
        agent: TestAgent::from_seed([1; 32]).with_kid("agent-key-1"),
        access_server,
        calls: Arc::default(),
    }
}

impl World {
    fn router(&self) -> Router {
        let calls = self.calls.clone();
        Router::new()
            .fallback(any(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "handler ran" }
            }))
            .layer(self.aauth.layer())
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.unwrap()
    }

    fn signed(&self, source: &KeySource) -> Request<Body> {
        let mut request = get("/data");
        self.agent.sign(&mut request, source, self.clock.now());
        request
    }

    fn auth_token(&self) -> String {
        self.access_server
            .auth_token(RESOURCE, &self.agent.public_jwk(), "data.read", self.clock.now())
    }

    fn jwks_fetches(&self) -> usize {
        self.fetch.calls(&format!("{AS}/jwks"))
    }
}

fn code(response: &Response<Body>) -> String {
    response.headers()[wire::SIGNATURE_ERROR].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn dos_01_a_thousand_random_kids_cost_at_most_one_refresh() {
    let w = world(|b| b);
    // Warm the issuer with a real token, so every later miss is an unknown kid.
    assert_eq!(
        w.send(w.signed(&KeySource::Jwt(w.auth_token()))).await.status(),
        StatusCode::OK
    );
    let claims = w
        .access_server
        .auth_claims(RESOURCE, &w.agent.public_jwk(), "data.read", NOW)
        .to_string();
    for n in 0..1000 {
        let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": format!("random-{n}")}).to_string();
        let token = raw_jwt(&header, &claims, w.access_server.key());
        let response = w.send(w.signed(&KeySource::Jwt(token))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(code(&response), "error=unknown_key");
    }
    assert!(w.jwks_fetches() <= 2, "{} JWKS fetches", w.jwks_fetches());
    assert_eq!(w.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dos_02_a_hundred_concurrent_cold_requests_make_one_fetch_of_each_document() {
    let w = Arc::new(world(|b| b));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let w = w.clone();
            let request = w.signed(&KeySource::Jwt(w.auth_token()));
            tokio::spawn(async move { w.send(request).await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(w.fetch.calls(&format!("{AS}/.well-known/{}", engine::dwk::ACCESS)), 1);
    assert_eq!(w.jwks_fetches(), 1);
}

#[tokio::test]
async fn dos_03_never_seen_issuers_are_fetched_within_a_budget_and_the_rest_wait_without_fetching() {
    const BUDGET: u32 = 5;
    let w = world(|b| {
        b.discovery({
            let mut config = DiscoveryConfig::default();
            config.new_issuers_per_minute = BUDGET;
            config
        })
    });
    let providers: Vec<String> = (0..50).map(|n| format!("https://agent{n}.example")).collect();
    // Each provider is its own agent with its own key: one key is one agent's.
    let agents: Vec<TestAgent> = (0..50u8)
        .map(|n| TestAgent::from_seed([n + 100; 32]).with_kid("agent-key-1"))
        .collect();
    for (provider, agent) in providers.iter().zip(&agents) {
        w.fetch.publish(provider, engine::dwk::AGENT, &agent.jwks());
    }
    let mut refused = 0;
    for (provider, agent) in providers.iter().zip(&agents) {
        let before = w.fetch.total_calls();
        let mut request = get("/data");
        agent.sign(
            &mut request,
            &KeySource::agent_jwks(provider, "agent-key-1"),
            w.clock.now(),
        );
        let response = w.send(request).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(response.headers().contains_key(http::header::RETRY_AFTER));
            assert!(response.headers().get(wire::SIGNATURE_ERROR).is_none());
            assert_eq!(w.fetch.total_calls(), before, "a refused issuer costs no fetch");
            refused += 1;
        } else {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    assert_eq!(refused, 50 - BUDGET as usize);
    assert!(w.fetch.total_calls() <= 2 * BUDGET as usize);
    // A hot issuer stays cached.
    let before = w.fetch.total_calls();
    let mut request = get("/data");
    agents[0].sign(
        &mut request,
        &KeySource::agent_jwks(&providers[0], "agent-key-1"),
        w.clock.now(),
    );
    let response = w.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(w.fetch.total_calls(), before);
}

#[tokio::test]
async fn dos_04_a_failing_issuer_is_asked_once_within_the_negative_ttl() {
    let w = world(|b| b);
    let metadata = format!("{AS}/.well-known/{}", engine::dwk::ACCESS);
    w.fetch.fail(&metadata, FetchError::Status(500));
    for _ in 0..100 {
        let response = w.send(w.signed(&KeySource::Jwt(w.auth_token()))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(code(&response), "error=invalid_jwt");
    }
    assert_eq!(w.fetch.calls(&metadata), 1);
    assert_eq!(w.calls.load(Ordering::SeqCst), 0);
}

/// One way to spoil an otherwise good request.
type Spoil = dyn Fn(&Harness, &mut Request<Body>);

#[tokio::test]
async fn dos_05_cheap_failures_never_cost_a_fetch() {
    let garbage: Vec<(&str, Box<Spoil>)> = vec![
        (
            "invalid_signature",
            Box::new(|_, r| {
                r.headers_mut()
                    .insert("signature-input", HeaderValue::from_static("sig=(\"@method"));
            }),
        ),
        (
            "invalid_signature",
            Box::new(|_, r| {
                let big = "a".repeat(9 * 1024);
                r.headers_mut()
                    .insert("signature", HeaderValue::from_str(&format!("sig=:{big}:")).unwrap());
            }),
        ),
        (
            "invalid_input",
            Box::new(|_, r| {
                let input = r.headers()["signature-input"]
                    .to_str()
                    .unwrap()
                    .replace(r#" "@path""#, "");
                r.headers_mut()
                    .insert("signature-input", HeaderValue::from_str(&input).unwrap());
            }),
        ),
        (
            "invalid_signature",
            Box::new(|_, r| {
                let input = r.headers()["signature-input"]
                    .to_str()
                    .unwrap()
                    .replace(&format!("created={NOW}"), "created=1000");
                r.headers_mut()
                    .insert("signature-input", HeaderValue::from_str(&input).unwrap());
            }),
        ),
        (
            "unsupported_scheme",
            Box::new(|_, r| {
                r.headers_mut()
                    .insert("signature-key", HeaderValue::from_static("sig=x509;x=\"1\""));
            }),
        ),
        (
            "invalid_jwt",
            Box::new(|h, r| {
                let token = h.access_server.sign("at+jwt", &h.auth_claims());
                let value = format!("sig=jwt;jwt=\"{token}\"");
                r.headers_mut()
                    .insert("signature-key", HeaderValue::from_str(&value).unwrap());
            }),
        ),
        (
            "expired_jwt",
            Box::new(|h, r| {
                let mut claims = h.auth_claims();
                claims["iat"] = json!(NOW - 7200);
                claims["exp"] = json!(NOW - 3600);
                let token = h.access_server.sign("aa-auth+jwt", &claims);
                let value = format!("sig=jwt;jwt=\"{token}\"");
                r.headers_mut()
                    .insert("signature-key", HeaderValue::from_str(&value).unwrap());
            }),
        ),
    ];
    for (code, spoil) in garbage {
        let h = Harness::new();
        let token = h
            .access_server
            .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
        let mut request = h.signed("/data", &KeySource::Jwt(token));
        spoil(&h, &mut request);
        h.attack(request).await.without_fetch().refused(code).await;
    }
}

#[tokio::test]
async fn dos_06_a_stolen_token_with_a_bad_request_signature_costs_no_fetch() {
    let h = Harness::new();
    let token = h
        .access_server
        .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let thief = TestAgent::from_seed([66; 32]);
    let mut request = get("/data");
    thief.sign(&mut request, &KeySource::Jwt(token), NOW);
    let response = h.send(request).await;
    Attack::from_response(&h, response)
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn dos_07_a_failing_refresh_keeps_serving_the_last_good_keys() {
    let w = world(|b| b);
    assert_eq!(
        w.send(w.signed(&KeySource::Jwt(w.auth_token()))).await.status(),
        StatusCode::OK
    );
    // Past the 5-minute freshness lifetime (inside the 1-hour stale limit), the issuer
    // starts failing.
    w.clock.advance(600);
    let before = w.fetch.total_calls();
    w.fetch.fail(
        &format!("{AS}/.well-known/{}", engine::dwk::ACCESS),
        FetchError::Status(500),
    );
    w.fetch.fail(&format!("{AS}/jwks"), FetchError::Status(500));
    let response = w.send(w.signed(&KeySource::Jwt(w.auth_token()))).await;
    assert_eq!(response.status(), StatusCode::OK, "stale keys still verify");
    assert_eq!(w.calls.load(Ordering::SeqCst), 2);
    assert!(w.fetch.total_calls() > before, "a refresh was attempted and failed");
}
