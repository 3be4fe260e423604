//! Same-`kid` re-keying (AAuth draft -11, "JWKS Discovery and Caching"; digest §3.4): a
//! token that fails under the cached key of its `kid` makes the resource refetch the
//! issuer's JWKS once, never within the once-a-minute floor, and never for a request
//! whose HTTP signature failed (DOS-06).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use support::discovery::MapFetch;
use support::fixtures::{AS, NOW, RESOURCE, get};
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, ManualClock, TestAgent, TestIssuer};
use tower_aauth::{AAuth, Clock, wire};

const KID: &str = "as-key-1";

struct World {
    aauth: AAuth,
    fetch: MapFetch,
    clock: ManualClock,
    agent: TestAgent,
    calls: Arc<AtomicUsize>,
}

/// The access server's key before and after re-keying under the same `kid`.
fn old_key() -> TestIssuer {
    TestIssuer::new(AS, [2; 32], KID)
}

fn new_key() -> TestIssuer {
    TestIssuer::new(AS, [9; 32], KID)
}

fn world() -> World {
    let fetch = MapFetch::default();
    fetch.publish(AS, engine::dwk::ACCESS, &old_key().jwks());
    let clock = ManualClock::new(NOW);
    let aauth = AAuth::builder(RESOURCE)
        .clock(clock.clone())
        .auth_server(AS)
        .fetcher(fetch.clone())
        .build()
        .unwrap();
    World {
        aauth,
        fetch,
        clock,
        agent: TestAgent::from_seed([1; 32]).with_kid("agent-key-1"),
        calls: Arc::default(),
    }
}

impl World {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        let calls = self.calls.clone();
        let router = Router::new()
            .fallback(any(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "served" }
            }))
            .layer(self.aauth.layer());
        router.oneshot(request).await.unwrap()
    }

    /// A request the agent signs, presenting an auth token `issuer` signed.
    fn request(&self, issuer: &TestIssuer) -> Request<Body> {
        let now = self.clock.now();
        let token = issuer.auth_token(RESOURCE, &self.agent.public_jwk(), "data.read", now);
        let mut request = get("/data");
        self.agent.sign(&mut request, &KeySource::Jwt(token), now);
        request
    }

    fn jwks_fetches(&self) -> usize {
        self.fetch.calls(&format!("{AS}/jwks"))
    }

    fn served(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Caches the old key with one fetch.
    async fn warm(&self) {
        assert_eq!(self.send(self.request(&old_key())).await.status(), StatusCode::OK);
        assert_eq!(self.jwks_fetches(), 1);
    }
}

fn signature_error(response: &Response<Body>) -> &str {
    response.headers()[wire::SIGNATURE_ERROR].to_str().unwrap()
}

#[tokio::test]
async fn a_key_rotated_under_the_same_kid_is_picked_up_by_one_refetch() {
    let w = world();
    w.warm().await;
    w.fetch.publish(AS, engine::dwk::ACCESS, &new_key().jwks());
    w.clock.advance(61);
    let response = w.send(w.request(&new_key())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(w.jwks_fetches(), 2, "exactly one refetch");
    // The new key is cached now: no further fetch.
    assert_eq!(w.send(w.request(&new_key())).await.status(), StatusCode::OK);
    assert_eq!(w.jwks_fetches(), 2);
}

#[tokio::test]
async fn within_the_once_a_minute_floor_no_refetch_happens_and_the_token_fails() {
    let w = world();
    w.warm().await;
    w.fetch.publish(AS, engine::dwk::ACCESS, &new_key().jwks());
    w.clock.advance(59);
    let response = w.send(w.request(&new_key())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(signature_error(&response), "error=invalid_jwt");
    assert_eq!(w.jwks_fetches(), 1, "no fetch within the floor");
    assert_eq!(w.served(), 1, "the refused request never reached the application");
    w.clock.advance(1);
    assert_eq!(w.send(w.request(&new_key())).await.status(), StatusCode::OK);
    assert_eq!(w.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_token_still_failing_after_the_refetch_is_invalid_jwt_and_the_next_costs_nothing() {
    let w = world();
    w.warm().await;
    w.clock.advance(61);
    let forger = TestIssuer::new(AS, [66; 32], KID);
    let response = w.send(w.request(&forger)).await;
    assert_eq!(signature_error(&response), "error=invalid_jwt");
    assert_eq!(w.jwks_fetches(), 2, "one refetch");
    for _ in 0..20 {
        let response = w.send(w.request(&forger)).await;
        assert_eq!(signature_error(&response), "error=invalid_jwt");
    }
    assert_eq!(w.jwks_fetches(), 2, "the floor holds: no further fetch");
    assert_eq!(w.served(), 1);
    // The good key still verifies.
    assert_eq!(w.send(w.request(&old_key())).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_kid_gone_after_the_refetch_is_unknown_key() {
    let w = world();
    w.warm().await;
    w.fetch.publish(
        AS,
        engine::dwk::ACCESS,
        &TestIssuer::new(AS, [9; 32], "as-key-2").jwks(),
    );
    w.clock.advance(61);
    let response = w.send(w.request(&new_key())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(signature_error(&response), "error=unknown_key");
    assert_eq!(w.jwks_fetches(), 2);
    assert_eq!(w.served(), 1);
}

#[tokio::test]
async fn a_storm_of_bad_request_signatures_causes_no_fetch() {
    // Tokens that would fail under the cached key, presented by a thief who cannot sign
    // with their cnf key: the request signature fails first, so nothing is refetched,
    // however long after the last fetch.
    let w = world();
    w.warm().await;
    w.fetch.publish(AS, engine::dwk::ACCESS, &new_key().jwks());
    w.clock.advance(3600 * 2);
    let thief = TestAgent::from_seed([77; 32]);
    for issuer in [new_key(), TestIssuer::new(AS, [66; 32], KID)] {
        for _ in 0..100 {
            let now = w.clock.now();
            let token = issuer.auth_token(RESOURCE, &w.agent.public_jwk(), "data.read", now);
            let mut request = get("/data");
            thief.sign(&mut request, &KeySource::Jwt(token), now);
            let response = w.send(request).await;
            assert_eq!(signature_error(&response), "error=invalid_signature");
        }
    }
    assert_eq!(w.fetch.total_calls(), 2, "only the warm-up's metadata and JWKS");
    assert_eq!(w.served(), 1);
}

#[tokio::test]
async fn a_server_signing_with_a_failing_key_causes_no_refetch() {
    // A jwks_uri signature that fails under the cached key is a failed HTTP signature:
    // no refetch, whatever the time since the last fetch.
    let w = world();
    let source = KeySource::JwksUri {
        id: AS.to_owned(),
        dwk: engine::dwk::ACCESS.to_owned(),
        kid: KID.to_owned(),
    };
    let signer = TestAgent::from_seed([2; 32]).with_kid(KID);
    let mut request = get("/data");
    signer.sign(&mut request, &source, NOW);
    assert_eq!(w.send(request).await.status(), StatusCode::OK);
    let fetched = w.fetch.total_calls();
    w.clock.advance(61);
    let impostor = TestAgent::from_seed([9; 32]).with_kid(KID);
    for _ in 0..50 {
        let mut request = get("/data");
        impostor.sign(&mut request, &source, w.clock.now());
        let response = w.send(request).await;
        assert_eq!(signature_error(&response), "error=invalid_signature");
    }
    assert_eq!(w.fetch.total_calls(), fetched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_under_a_re_keyed_kid_share_one_refetch() {
    let w = Arc::new(world());
    w.warm().await;
    w.fetch.publish(AS, engine::dwk::ACCESS, &new_key().jwks());
    w.clock.advance(61);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (w, request) = (w.clone(), w.request(&new_key()));
        tasks.spawn(async move { w.send(request).await.status() });
    }
    let responses = tasks.join_all().await;
    assert!(
        responses.iter().all(|status| *status == StatusCode::OK),
        "{responses:?}"
    );
    assert_eq!(w.jwks_fetches(), 2, "one shared refetch");
}
