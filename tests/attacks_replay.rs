//! Attack catalogue §1.7: replay and cross-context replay of HTTP signatures. A signature
//! is good for one method, one authority, one path, a short window, and — for unsafe
//! methods — one use.

mod support;

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode};
use support::attack::*;
use support::fixtures::{copy, late_body};
use tower_aauth::replay::{MemoryReplayStore, ReplayOptions, ReplayProtection};
use tower_aauth::testing::{KeySource, SignOptions};

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()
}

fn signed(h: &Harness, method: &str, path: &str, created: u64) -> Request<Body> {
    let mut request = request(method, &format!("{RESOURCE}{path}"));
    h.agent.sign(&mut request, &KeySource::Hwk, created);
    request
}

/// `request` sent with another method or URI, headers unchanged.
fn moved(request: &Request<Body>, method: &str, uri: &str) -> Request<Body> {
    let mut moved = self::request(method, uri);
    *moved.headers_mut() = request.headers().clone();
    moved
}

fn set_input(request: &mut Request<Body>, input: &str) {
    request
        .headers_mut()
        .insert("signature-input", HeaderValue::from_str(input).unwrap());
}

fn input_of(request: &Request<Body>) -> String {
    request.headers()["signature-input"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn rpl_01_a_signature_without_created_or_older_than_the_window_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h, "GET", "/data", NOW);
    let input = input_of(&request).replace(&format!(";created={NOW}"), "");
    set_input(&mut request, &input);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;

    let h = Harness::new();
    let request = signed(&h, "GET", "/data", NOW - 61);
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "the signature is too old")
        .await;
}

#[tokio::test]
async fn rpl_02_a_signature_dated_in_the_future_is_clock_skew() {
    let h = Harness::new();
    let request = signed(&h, "GET", "/data", NOW + 120);
    h.attack(request).await.without_fetch().refused("clock_skew").await;
}

#[tokio::test]
async fn rpl_03_created_that_is_not_a_small_non_negative_integer_is_invalid_signature() {
    for created in ["-1", "1.5", "\"1730217600\"", "1730217600000000", "?1", ":AAAA:"] {
        let h = Harness::new();
        let mut request = signed(&h, "GET", "/data", NOW);
        let input = input_of(&request).replace(&format!("created={NOW}"), &format!("created={created}"));
        set_input(&mut request, &input);
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn rpl_04_an_expired_or_inverted_expires_is_invalid_signature() {
    for extra in [format!(";expires={}", NOW - 1), format!(";expires={}", NOW - 30)] {
        let h = Harness::new();
        let mut request = request("GET", &format!("{RESOURCE}/data"));
        let options = SignOptions {
            extra_params: extra,
            ..SignOptions::default()
        };
        h.agent.sign_with(&mut request, &KeySource::Hwk, NOW - 10, &options);
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn rpl_05_an_exact_replay_of_a_post_is_invalid_signature_and_never_reaches_the_handler() {
    let h = Harness::new();
    let original = signed(&h, "POST", "/orders", NOW);
    let replay = copy(&original);
    assert_eq!(h.send(original).await.status(), StatusCode::OK);
    h.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    h.attack(replay)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_06_a_replay_with_the_signature_re_encoded_is_still_a_replay() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let h = Harness::new();
    let original = signed(&h, "POST", "/orders", NOW);
    let mut replay = copy(&original);
    let value = original.headers()["signature"].to_str().unwrap();
    let bytes = STANDARD
        .decode(value.trim_start_matches("sig=:").trim_end_matches(':'))
        .unwrap();
    let re_encoded = format!("sig=:{}:", URL_SAFE_NO_PAD.encode(&bytes));
    assert_ne!(re_encoded, value);
    replay
        .headers_mut()
        .insert("signature", HeaderValue::from_str(&re_encoded).unwrap());
    assert_eq!(h.send(original).await.status(), StatusCode::OK);
    h.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    h.attack(replay)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_07_a_full_replay_store_stays_bounded_and_fails_closed() {
    let store = MemoryReplayStore::new(64);
    let h = Harness::with(|b| b.replay(ReplayOptions::new().store(store.clone())));
    for n in 0..64 {
        let request = signed(&h, "POST", &format!("/orders/{n}"), NOW);
        assert_eq!(h.send(request).await.status(), StatusCode::OK);
    }
    assert!(store.len() <= store.capacity());
    h.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let headers = h
        .attack(signed(&h, "POST", "/orders/overflow", NOW))
        .await
        .without_fetch()
        .refused_with_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(http::header::RETRY_AFTER));
    assert!(store.len() <= store.capacity(), "nothing stored beyond the cap");
}

#[tokio::test]
async fn rpl_08_a_signature_for_one_path_sent_to_another_is_invalid_signature() {
    let h = Harness::new();
    let original = signed(&h, "GET", "/a", NOW);
    let elsewhere = moved(&original, "GET", &format!("{RESOURCE}/b"));
    h.attack(elsewhere)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_09_a_signed_get_sent_as_delete_is_invalid_signature() {
    let h = Harness::new();
    let original = signed(&h, "GET", "/data", NOW);
    let deleting = moved(&original, "DELETE", &format!("{RESOURCE}/data"));
    h.attack(deleting)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_10_a_host_we_do_not_serve_is_refused_even_correctly_signed() {
    let h = Harness::new();
    let mut request = Request::get("/data")
        .header("host", "other.example")
        .body(Body::empty())
        .unwrap();
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    h.attack(request)
        .await
        .without_fetch()
        .refused_because(
            "invalid_signature",
            "the request's authority is not served by this resource",
        )
        .await;
}

#[tokio::test]
async fn rpl_10_x_forwarded_host_never_stands_in_for_the_host() {
    let h = Harness::new();
    let mut request = Request::get("/data")
        .header("host", "other.example")
        .header("x-forwarded-host", "resource.example")
        .header("forwarded", "host=resource.example")
        .body(Body::empty())
        .unwrap();
    let options = SignOptions {
        authority: Some("resource.example".into()),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_11_the_authority_is_normalised_before_it_is_compared() {
    let h = Harness::new();
    let mut request = Request::get("/data")
        .header("host", "RESOURCE.EXAMPLE:443")
        .body(Body::empty())
        .unwrap();
    let options = SignOptions {
        authority: Some("resource.example".into()),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request).await.accepted();
}

#[tokio::test]
async fn rpl_11_a_base_signed_over_the_unnormalised_authority_is_invalid_signature() {
    let h = Harness::new();
    let mut request = Request::get("/data")
        .header("host", "RESOURCE.EXAMPLE:443")
        .body(Body::empty())
        .unwrap();
    let options = SignOptions {
        authority: Some("RESOURCE.EXAMPLE:443".into()),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_12_an_uncovered_query_is_invalid_input_when_the_route_requires_it() {
    let h = Harness::with(|b| b.require_query_coverage(true));
    let mut request = signed(&h, "GET", "/data?amount=1", NOW);
    let input = input_of(&request).replace(r#" "@query""#, "");
    set_input(&mut request, &input);
    let headers = h.attack(request).await.without_fetch().refused("invalid_input").await;
    assert!(headers["signature-error"].to_str().unwrap().contains(r#""@query""#));
}

#[tokio::test]
async fn rpl_13_the_raw_path_is_what_is_verified_and_a_trailing_slash_matters() {
    let h = Harness::new();
    h.attack(signed(&h, "GET", "/a/%2e%2e/admin", NOW)).await.accepted();

    let h = Harness::new();
    let original = signed(&h, "GET", "/api/items", NOW);
    let slashed = moved(&original, "GET", &format!("{RESOURCE}/api/items/"));
    h.attack(slashed)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;

    let h = Harness::new();
    let original = signed(&h, "GET", "/a/%2e%2e/admin", NOW);
    let normalised = moved(&original, "GET", &format!("{RESOURCE}/admin"));
    h.attack(normalised)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_14_an_uncovered_aauth_authorization_header_is_invalid_input() {
    let h = Harness::new();
    let mut request = signed(&h, "GET", "/data", NOW);
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("AAuth session-token-1"));
    let headers = h.attack(request).await.without_fetch().refused("invalid_input").await;
    assert!(
        headers["signature-error"]
            .to_str()
            .unwrap()
            .contains(r#""authorization""#)
    );
}

#[tokio::test]
async fn rpl_14_a_covered_aauth_authorization_header_is_accepted_and_a_bearer_one_needs_no_coverage() {
    let h = Harness::new();
    let mut request = request("GET", &format!("{RESOURCE}/data"));
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("AAuth session-token-1"));
    let mut options = SignOptions::default();
    options.components.push("authorization".into());
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request).await.accepted();

    let h = Harness::new();
    let mut request = signed(&h, "GET", "/data", NOW);
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Basic dXNlcjpwYXNz"));
    h.attack(request).await.accepted();
}

#[tokio::test]
async fn rpl_15_a_nonce_parameter_is_signed_and_otherwise_ignored() {
    let h = Harness::new();
    let mut original = request("GET", &format!("{RESOURCE}/data"));
    let options = SignOptions {
        extra_params: ";nonce=\"n1\"".into(),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut original, &KeySource::Hwk, NOW, &options);
    let mut altered = copy(&original);
    h.attack(original).await.accepted();
    // The nonce is covered by @signature-params: changing it breaks the signature.
    let input = input_of(&altered).replace("n1", "n2");
    set_input(&mut altered, &input);
    let h = Harness::new();
    h.attack(altered)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn rpl_16_one_auth_token_serves_many_signed_requests_its_jti_is_not_single_use() {
    let h = Harness::with(|b| b.replay(ReplayOptions::new().protection(ReplayProtection::AllMethods)));
    let token = h
        .access_server
        .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    for path in ["/data/1", "/data/2", "/data/3"] {
        let mut signed = request("GET", &format!("{RESOURCE}{path}"));
        h.agent.sign(&mut signed, &KeySource::Jwt(token.clone()), NOW);
        assert_eq!(h.send(signed).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(h.calls(), 3);
}

const HELLO: &[u8] = br#"{"hello": "world"}"#;

#[tokio::test]
async fn an_aauth_copy_whose_body_arrives_after_the_window_is_refused() {
    let app = support::app::App::with(|b| b.auth_server(AS).signature_window(1).max_clock_skew(0));
    let router = axum::Router::new()
        .route("/data", axum::routing::post(app.handler()))
        .layer(app.aauth.layer());
    let mut original = Request::post(format!("{}/data", RESOURCE))
        .body(Body::from(HELLO))
        .unwrap();
    app.agent
        .sign_with_body(&mut original, HELLO, &tower_aauth::testing::KeySource::Hwk, NOW);
    let headers = original.headers().clone();
    let response = tower::ServiceExt::oneshot(router.clone(), original).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The entry lives window + skew + 1 = 2 s; the copy's body comes after it.
    let mut replay = Request::post(format!("{}/data", RESOURCE))
        .body(late_body(
            app.clock.clone(),
            std::time::Duration::from_millis(2200),
            3,
            HELLO,
        ))
        .unwrap();
    *replay.headers_mut() = headers;
    let response = tower::ServiceExt::oneshot(router, replay).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(app.calls(), 1, "the copy was not served");
}
