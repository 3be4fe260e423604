//! Replay protection with the default in-memory store (attack catalogue RPL-05…07).

mod support;

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use support::fixtures::copy;
use support::harness::*;
use tower::ServiceExt;
use tower_aauth::replay::{MemoryReplayStore, ReplayOptions, ReplayProtection};
use tower_aauth::testing::{KeySource, SignOptions};

fn signed_post(harness: &Harness, path: &str) -> Request<Body> {
    let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
    request
}

#[tokio::test]
async fn a_replayed_post_is_refused_with_invalid_signature() {
    let harness = Harness::new();
    let request = signed_post(&harness, "/orders");
    let replay = copy(&request);
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 1);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let response = harness.send(replay).await;
    assert_refused(&harness, response, "invalid_signature").await;
}

#[tokio::test]
async fn every_unsafe_method_is_checked_by_default() {
    for method in ["PUT", "PATCH", "DELETE"] {
        let harness = Harness::new();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{RESOURCE}/orders/1"))
            .body(Body::empty())
            .unwrap();
        harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
        let replay = copy(&request);
        assert_eq!(harness.send(request).await.status(), StatusCode::OK, "{method}");
        harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
        assert_refused(&harness, harness.send(replay).await, "invalid_signature").await;
    }
}

#[tokio::test]
async fn a_repeated_get_is_served_by_default() {
    let harness = Harness::new();
    let mut request = get("/data");
    harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let again = copy(&request);
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    assert_eq!(harness.send(again).await.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 2);
}

#[tokio::test]
async fn all_methods_protection_refuses_a_repeated_get() {
    let harness = Harness::with(|b| b.replay(ReplayOptions::new().protection(ReplayProtection::AllMethods)));
    let mut request = get("/data");
    harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let again = copy(&request);
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&harness, harness.send(again).await, "invalid_signature").await;
}

#[tokio::test]
async fn protection_off_serves_a_repeated_post() {
    let harness = Harness::with(|b| b.replay(ReplayOptions::new().protection(ReplayProtection::Off)));
    let request = signed_post(&harness, "/orders");
    let again = copy(&request);
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    assert_eq!(harness.send(again).await.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 2);
}

#[tokio::test]
async fn two_fresh_signatures_of_the_same_request_are_both_served() {
    let harness = Harness::new();
    let first = signed_post(&harness, "/orders");
    let mut second = Request::post(format!("{RESOURCE}/orders")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut second, &KeySource::Hwk, NOW + 1);
    assert_eq!(harness.send(first).await.status(), StatusCode::OK);
    assert_eq!(harness.send(second).await.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 2);
}

#[tokio::test]
async fn re_encoding_the_signature_in_base64url_does_not_bypass_the_cache() {
    // RPL-06: the key is the signature base, not the Signature bytes or text.
    let harness = Harness::new();
    let mut standard = Request::post(format!("{RESOURCE}/orders")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut standard, &KeySource::Hwk, NOW);
    let mut url_safe = Request::post(format!("{RESOURCE}/orders")).body(Body::empty()).unwrap();
    let options = SignOptions {
        base64url: true,
        ..SignOptions::default()
    };
    harness.agent.sign_with(&mut url_safe, &KeySource::Hwk, NOW, &options);
    assert_ne!(standard.headers()["signature"], url_safe.headers()["signature"]);
    assert_eq!(harness.send(standard).await.status(), StatusCode::OK);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&harness, harness.send(url_safe).await, "invalid_signature").await;
}

#[tokio::test]
async fn a_replay_is_refused_on_the_slow_path_with_a_covered_body() {
    let harness = Harness::new();
    let body = br#"{"symbol":"ACME","qty":1}"#;
    let mut request = Request::post(format!("{RESOURCE}/trade"))
        .header("content-type", "application/json")
        .body(Body::from(&body[..]))
        .unwrap();
    harness.agent.sign_with_body(&mut request, body, &KeySource::Hwk, NOW);
    let mut replay = Request::post(format!("{RESOURCE}/trade"))
        .body(Body::from(&body[..]))
        .unwrap();
    *replay.headers_mut() = request.headers().clone();
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&harness, harness.send(replay).await, "invalid_signature").await;
}

#[tokio::test]
async fn a_replayed_token_request_is_refused_even_from_the_token_cache() {
    let harness = Harness::new();
    let token = harness.auth_token("data.write");
    let mut request = Request::post(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut request, &KeySource::Jwt(token.clone()), NOW);
    let replay = copy(&request);
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    assert_eq!(harness.aauth.cached_tokens(), 1);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_refused(&harness, harness.send(replay).await, "invalid_signature").await;
    // RPL-16: the same auth token on a new signature is served (no jti single-use).
    let mut fresh = Request::post(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut fresh, &KeySource::Jwt(token), NOW + 1);
    assert_eq!(harness.send(fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_signature_is_not_remembered() {
    // Written only after verification: a forged copy must not burn the real request.
    let harness = Harness::new();
    let request = signed_post(&harness, "/orders");
    let mut forged = copy(&request);
    forged.headers_mut().insert(
        "signature",
        "sig=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==:"
            .parse()
            .unwrap(),
    );
    assert_refused(&harness, harness.send(forged).await, "invalid_signature").await;
    assert_eq!(harness.send(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn thirty_two_concurrent_copies_are_served_exactly_once() {
    let harness = Harness::new();
    let request = signed_post(&harness, "/orders");
    let router = harness.router();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let router = router.clone();
            let request = copy(&request);
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 31);
    assert_eq!(harness.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_copies_on_two_threads_are_served_exactly_once() {
    let harness = Harness::new();
    let request = signed_post(&harness, "/orders");
    let router = harness.router();
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let router = router.clone();
            let request = copy(&request);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                router.oneshot(request).await.unwrap().status()
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn a_full_store_fails_closed_with_503_and_retry_after() {
    let harness = Harness::with(|b| b.replay(ReplayOptions::new().store(MemoryReplayStore::new(2))));
    for n in 0..2 {
        let mut request = Request::post(format!("{RESOURCE}/orders/{n}"))
            .body(Body::empty())
            .unwrap();
        harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
        assert_eq!(harness.send(request).await.status(), StatusCode::OK);
    }
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let response = harness.send(signed_post(&harness, "/orders/3")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(harness.calls(), 0);
    // A safe method is not checked by default, so it is still served.
    let mut read = get("/data");
    harness.agent.sign(&mut read, &KeySource::Hwk, NOW);
    assert_eq!(harness.send(read).await.status(), StatusCode::OK);
}
