//! Replay protection shared by two resource instances through a real `redis-server`
//! (feature `redis`). The harness starts `redis-server` on a free loopback port and kills
//! it at the end; `.ci/run` installs it. Without `redis-server` on `PATH` the tests are
//! reported ignored (`build.rs` sets `skip_redis`), except under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use support::fixtures::copy;
use support::harness::*;
use support::redis::RedisServer;
use tower::ServiceExt;
use tower_aauth::replay::{RedisReplayStore, ReplayOptions};
use tower_aauth::testing::KeySource;

/// One resource instance with its own connection to the shared Redis.
async fn instance(redis: &RedisServer) -> Harness {
    let store = RedisReplayStore::builder(redis.url())
        .operation_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    Harness::with(move |b| b.replay(ReplayOptions::new().store(store)))
}

fn signed_post(harness: &Harness, path: &str, created: u64) -> Request<Body> {
    let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut request, &KeySource::Hwk, created);
    request
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_replay_sent_to_another_instance_is_refused() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let request = signed_post(&a, "/orders", NOW);
    let replay = copy(&request);
    assert_eq!(a.send(request).await.status(), StatusCode::OK);
    assert_refused(&b, b.send(replay).await, "invalid_signature").await;
    // A fresh signature is served by either instance.
    assert_eq!(
        b.send(signed_post(&b, "/orders", NOW + 1)).await.status(),
        StatusCode::OK
    );
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_copies_across_two_instances_are_served_exactly_once() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let request = signed_post(&a, "/orders", NOW);
    let (router_a, router_b) = (a.router(), b.router());
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let router = if i % 2 == 0 { router_a.clone() } else { router_b.clone() };
            let request = copy(&request);
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 31);
    assert_eq!(a.calls() + b.calls(), 1);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn redis_down_fails_closed_with_503_and_recovers_when_it_returns() {
    let mut redis = RedisServer::start();
    let a = instance(&redis).await;
    assert_eq!(a.send(signed_post(&a, "/orders/1", NOW)).await.status(), StatusCode::OK);

    redis.kill();
    a.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let response = a.send(signed_post(&a, "/orders/2", NOW)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(body_json(response).await["error"], "temporarily_unavailable");
    assert_eq!(a.calls(), 0, "nothing is served unprotected");

    // The same port again (a fresh, empty Redis): the manager reconnects by itself.
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut created = NOW + 1;
    loop {
        let status = a.send(signed_post(&a, "/orders/3", created)).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "did not recover after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
        created += 1;
        a.clock.set(created);
    }
    // And protection works again.
    let request = signed_post(&a, "/orders/4", created);
    let replay = copy(&request);
    assert_eq!(a.send(request).await.status(), StatusCode::OK);
    a.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&a, a.send(replay).await, "invalid_signature").await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn an_instance_started_before_redis_answers_503_then_serves() {
    let mut redis = RedisServer::start();
    redis.kill();
    let a = instance(&redis).await;
    let response = a.send(signed_post(&a, "/orders", NOW)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.calls(), 0);
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut created = NOW;
    while a.send(signed_post(&a, "/orders", created)).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
        created += 1;
        a.clock.set(created);
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_grant_is_consumed_once_across_two_instances() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let token = a.auth_token("data.write");
    let router = |harness: &Harness| {
        let calls = harness.calls.clone();
        axum::Router::new()
            .route(
                "/task",
                axum::routing::post(move || {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        "done"
                    }
                })
                .route_layer(harness.aauth.single_use()),
            )
            .layer(harness.aauth.layer())
    };
    let (router_a, router_b) = (router(&a), router(&b));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let harness = if i % 2 == 0 { &a } else { &b };
            let mut request = Request::post(format!("{RESOURCE}/task")).body(Body::empty()).unwrap();
            harness
                .agent
                .sign(&mut request, &KeySource::Jwt(token.clone()), NOW - i);
            let router = if i % 2 == 0 { router_a.clone() } else { router_b.clone() };
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 31);
    assert_eq!(a.calls() + b.calls(), 1);
}

/// POL-06 with the shared store: the requests guards refuse leave no key in Redis (each is
/// released with `DEL` before its refusal is sent), a grant consumed before a refusing
/// guard is released too, and admitted requests keep theirs.
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn refused_requests_leave_no_key_in_redis() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let calls = a.calls.clone();
    let handler = move || {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "done"
        }
    };
    let router = axum::Router::new()
        .route(
            "/data",
            axum::routing::post(handler.clone()).route_layer(a.aauth.require_scopes(["data.write"])),
        )
        .route(
            "/admin-task",
            axum::routing::post(handler.clone())
                .route_layer(a.aauth.require_scopes(["admin"]))
                .route_layer(a.aauth.single_use()),
        )
        .route(
            "/task",
            axum::routing::post(handler)
                .route_layer(a.aauth.single_use())
                .route_layer(a.aauth.require_scopes(["data.write"])),
        )
        .layer(a.aauth.layer());
    let keys = || async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("DBSIZE").query_async::<u64>(&mut connection).await.unwrap()
    };
    let assert_challenged = |response: http::Response<Body>| {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get("signature-error").is_none());
        let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
        assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
        assert_eq!(a.calls(), 0, "the handler must not run");
    };

    for n in 0..50u32 {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let mut request = Request::post(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
        tower_aauth::testing::TestAgent::from_seed(seed).sign(&mut request, &KeySource::Hwk, NOW);
        assert_challenged(router.clone().oneshot(request).await.unwrap());
    }
    assert_eq!(keys().await, 0, "refused requests left keys");

    let token = a.auth_token("data.write");
    let post = |path: &str, created: u64| {
        let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
        a.agent.sign(&mut request, &KeySource::Jwt(token.clone()), created);
        request
    };
    // The grant is consumed, then the inner guard refuses: both keys are released.
    assert_challenged(router.clone().oneshot(post("/admin-task", NOW)).await.unwrap());
    assert_eq!(keys().await, 0, "the refused grant was not released");

    let request = post("/data", NOW - 1);
    let replay = copy(&request);
    assert_eq!(router.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
    a.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&a, router.clone().oneshot(replay).await.unwrap(), "invalid_signature").await;
    assert_eq!(
        router.clone().oneshot(post("/task", NOW - 2)).await.unwrap().status(),
        StatusCode::OK
    );
    a.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(
        &a,
        router.clone().oneshot(post("/task", NOW - 3)).await.unwrap(),
        "invalid_jwt",
    )
    .await;
    // Two admitted signatures and the consumed grant; nothing of the refused ones.
    assert_eq!(keys().await, 3);
}
