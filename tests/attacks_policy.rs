//! Attack catalogue §1.15 — policy: whose identity, whose authority, what capacity.
//!
//! One test per row, named by its ID. Each refusal asserts the status, the exact
//! `Signature-Error` code where there is one, and that the handler did not run.

mod attack_support;

#[allow(unused_imports)]
use attack_support::*;

// === POL-01 … POL-05: identity, binding, ceilings, consent ===
// (section: identity)

// === POL-06: replay capacity ===
// (section: replay)

mod pol_06 {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http::{Request, Response, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;
    use tower_aauth::replay::MemoryReplayStore;
    use tower_aauth::testing::{KeySource, TestAgent};
    use tower_aauth::{Decision, Error, Requirement};

    use super::attack_support::*;

    /// Far below the default so that a flood many times the capacity stays fast: what is
    /// shown is that refused requests leave no entry at all (`len() == 0`), which does not
    /// depend on the capacity. Before the fix, request 65 of such a flood was already `503`.
    const SMALL: u64 = 64;

    fn harness(store: &MemoryReplayStore) -> Harness {
        let store = store.clone();
        Harness::with(move |b| b.replay_store(store))
    }

    /// A POST signed with a throwaway `hwk` key (one per `n`), as a flooding client sends.
    fn throwaway_post(path: &str, n: u32) -> Request<Body> {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
        TestAgent::from_seed(seed).sign(&mut request, &KeySource::Hwk, NOW);
        request
    }

    /// A POST by the harness's agent presenting `token`, signed at `created`.
    fn authorized_post(h: &Harness, path: &str, token: &str, created: u64) -> Request<Body> {
        let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
        h.agent.sign(&mut request, &KeySource::Jwt(token.to_owned()), created);
        request
    }

    fn write_token(h: &Harness) -> String {
        h.access_server
            .auth_token(RESOURCE, &h.agent.public_jwk(), "data.write", NOW)
    }

    /// A byte-identical copy of a signed request.
    fn copy(request: &Request<Body>) -> Request<Body> {
        let mut copy = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .body(Body::empty())
            .unwrap();
        *copy.headers_mut() = request.headers().clone();
        copy
    }

    /// One route per guard of this crate, each in front of the harness's counting handler.
    fn routes(h: &Harness) -> Router {
        let calls = h.calls.clone();
        let handler = move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "handler ran"
            }
        };
        let closed = Requirement::rule(|_| {
            Decision::Refuse(Error::Forbidden {
                code: "closed",
                detail: "this route is closed",
            })
        });
        let a = &h.aauth;
        Router::new()
            .route(
                "/data",
                post(handler.clone()).route_layer(a.require_scopes(["data.write"])),
            )
            .route("/admin", post(handler.clone()).route_layer(a.require(closed)))
            .route(
                "/trade",
                post(handler.clone()).route_layer(a.require_detail("trade", |_: &Value, _: &_| true)),
            )
            .route(
                "/report",
                post(handler.clone()).route_layer(a.require_person().deferred()),
            )
            .route("/once", post(handler.clone()).route_layer(a.single_use()))
            // The documented order: the guard decides, then the grant is consumed.
            .route(
                "/task",
                post(handler.clone())
                    .route_layer(a.single_use())
                    .route_layer(a.require_scopes(["data.write"])),
            )
            // The other order: the grant is consumed, then the guard refuses.
            .route(
                "/admin-task",
                post(handler)
                    .route_layer(a.require_scopes(["admin"]))
                    .route_layer(a.single_use()),
            )
            .layer(a.layer())
    }

    async fn send(h: &Harness, request: Request<Body>) -> Response<Body> {
        routes(h).oneshot(request).await.expect("infallible")
    }

    /// Sends a throwaway-key POST to each guard in turn and asserts its refusal.
    async fn refuse_one_of_each(h: &Harness, n: u32) {
        let response = send(h, throwaway_post("/data", n)).await;
        Attack::from_response(h, response).challenged();
        let response = send(h, throwaway_post("/admin", n)).await;
        assert_eq!(Attack::from_response(h, response).forbidden().await, "closed");
        let response = send(h, throwaway_post("/trade", n)).await;
        Attack::from_response(h, response).challenged();
        let response = send(h, throwaway_post("/report", n)).await;
        Attack::from_response(h, response).refused("unsupported_scheme").await;
        let response = send(h, throwaway_post("/once", n)).await;
        assert_eq!(
            Attack::from_response(h, response).forbidden().await,
            "auth_token_required"
        );
        let response = send(h, throwaway_post("/task", n)).await;
        Attack::from_response(h, response).challenged();
    }

    const GUARDS: u64 = 6;

    /// POL-06: a flood of valid `hwk` POSTs that every kind of guard refuses, many times the
    /// store's capacity, leaves it empty; an authorized write and a single-use grant are then
    /// served.
    #[tokio::test]
    async fn pol_06_refused_requests_spend_no_replay_capacity() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let rounds = 4 * SMALL as u32;
        for n in 0..rounds {
            refuse_one_of_each(&h, n).await;
        }
        assert!(u64::from(rounds) * GUARDS > 20 * SMALL);
        assert_eq!(store.len(), 0, "refused requests left replay entries");

        let token = write_token(&h);
        let response = send(&h, authorized_post(&h, "/data", &token, NOW)).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 1)).await;
        Attack::from_response(&h, response).accepted();
        // Two signatures and one grant.
        assert_eq!(store.len(), 3);
    }

    /// POL-06 positive control: the store still refuses a replay of an admitted request after
    /// the flood, and keeps refusing the grant a second time.
    #[tokio::test]
    async fn pol_06_a_replay_of_an_admitted_request_is_still_invalid_signature() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        for n in 0..SMALL as u32 {
            refuse_one_of_each(&h, n).await;
        }
        let token = write_token(&h);
        let request = authorized_post(&h, "/data", &token, NOW);
        let replay = copy(&request);
        let response = send(&h, request).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, replay).await;
        Attack::from_response(&h, response).refused("invalid_signature").await;

        let request = authorized_post(&h, "/task", &token, NOW - 1);
        let replay = copy(&request);
        let response = send(&h, request).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, replay).await;
        Attack::from_response(&h, response).refused("invalid_signature").await;
        // A fresh signature presenting the consumed grant.
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 2)).await;
        Attack::from_response(&h, response).refused("invalid_jwt").await;
    }

    /// POL-06: a replay of a refused request is judged again and refused again, by the guard
    /// (not as a replay, since it was never admitted), and still leaves no entry.
    #[tokio::test]
    async fn pol_06_a_replay_of_a_refused_request_is_refused_again() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let challenged = throwaway_post("/data", 1);
        let forbidden = throwaway_post("/admin", 2);
        for _ in 0..3 {
            let response = send(&h, copy(&challenged)).await;
            Attack::from_response(&h, response).challenged();
            let response = send(&h, copy(&forbidden)).await;
            assert_eq!(Attack::from_response(&h, response).forbidden().await, "closed");
        }
        assert_eq!(store.len(), 0);
    }

    /// POL-06: a request the layer-wide default requirement refuses never reaches the store.
    #[tokio::test]
    async fn pol_06_a_flood_the_default_requirement_refuses_spends_no_capacity() {
        let store = MemoryReplayStore::new(SMALL);
        let h = {
            let store = store.clone();
            Harness::with(move |b| {
                b.replay_store(store)
                    .default_requirement(Requirement::scopes(["data.write"]))
            })
        };
        for n in 0..3 * SMALL as u32 {
            let response = h.send(throwaway_post("/anything", n)).await;
            Attack::from_response(&h, response).challenged();
        }
        assert_eq!(store.len(), 0);
        let token = write_token(&h);
        let request = authorized_post(&h, "/anything", &token, NOW);
        let replay = copy(&request);
        Attack::from_response(&h, h.send(request).await).accepted();
        h.calls.store(0, Ordering::SeqCst);
        Attack::from_response(&h, h.send(replay).await)
            .refused("invalid_signature")
            .await;
    }

    /// POL-06: a grant consumed by `single_use` outside a guard that then refuses is given
    /// back; the same grant is served on a route it authorizes.
    #[tokio::test]
    async fn pol_06_a_grant_consumed_before_a_refusing_guard_is_released() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let token = write_token(&h);
        for created in 0..3 {
            let request = authorized_post(&h, "/admin-task", &token, NOW - created);
            let response = send(&h, request).await;
            Attack::from_response(&h, response).challenged();
        }
        assert_eq!(store.len(), 0, "neither the signatures nor the grant are held");
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 10)).await;
        Attack::from_response(&h, response).accepted();
    }

    /// POL-06: the check is still one atomic insert before the handler: of 32 concurrent
    /// copies of an authorized write through a guarded route, exactly one is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pol_06_concurrent_copies_of_an_admitted_request_are_served_once() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let request = authorized_post(&h, "/data", &write_token(&h), NOW);
        let router = routes(&h);
        let tasks: Vec<_> = (0..32)
            .map(|_| tokio::spawn(router.clone().oneshot(copy(&request))))
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            if response.status() != StatusCode::OK {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
            }
            statuses.push(response.status());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(h.calls(), 1);
        assert_eq!(store.len(), 1);
    }

    /// POL-06 race: copies of a refused request in flight together. A copy that meets the
    /// original's entry is `invalid_signature`, the others meet the guard; none reaches the
    /// handler and no entry outlives them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pol_06_concurrent_copies_of_a_refused_request_are_all_refused() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let request = throwaway_post("/admin", 1);
        let router = routes(&h);
        let tasks: Vec<_> = (0..32)
            .map(|_| tokio::spawn(router.clone().oneshot(copy(&request))))
            .collect();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            match response.status() {
                StatusCode::FORBIDDEN => assert!(response.headers().get("signature-error").is_none()),
                StatusCode::UNAUTHORIZED => {
                    assert_eq!(response.headers()["signature-error"], "error=invalid_signature")
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(h.calls(), 0);
        assert_eq!(store.len(), 0);
        // Judged by the guard again afterwards.
        let response = send(&h, copy(&request)).await;
        assert_eq!(Attack::from_response(&h, response).forbidden().await, "closed");
    }

    /// POL-06 at the default capacity: 100 000 refused POSTs, then an authorized write and a
    /// single-use grant. About 27 s in a debug build on a loaded 2-core machine, so not in
    /// the default run (`cargo test --test attacks_policy -- --ignored`). The small-capacity
    /// tests above are equivalent: each refused request releases its own entry before its
    /// refusal is sent, so a sequential flood never holds more than one entry, and what they
    /// assert (`len() == 0` after twenty times the capacity, every refusal still the guard's
    /// own answer rather than `503`) holds at any capacity.
    #[ignore = "27 s in a debug build; the small-capacity tests show the same property"]
    #[tokio::test]
    async fn pol_06_the_default_store_survives_100_000_refused_posts() {
        let store = MemoryReplayStore::default();
        let h = harness(&store);
        let started = Instant::now();
        let router = routes(&h);
        for n in 0..100_000u32 {
            let response = router.clone().oneshot(throwaway_post("/admin", n)).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "request {n}");
        }
        assert_eq!(h.calls(), 0);
        assert_eq!(store.len(), 0);
        eprintln!("100 000 refused POSTs in {:?}", started.elapsed());
        let token = write_token(&h);
        let response = send(&h, authorized_post(&h, "/data", &token, NOW)).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 1)).await;
        Attack::from_response(&h, response).accepted();
    }
}

// === POL-07 … POL-11: exemptions, coverage, minting, caches, legacy lifetime ===
// (section: hardening)

// === POL-12: four-party resource names the person ===
// (section: four-party)
