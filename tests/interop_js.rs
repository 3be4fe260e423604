//! Interop with the real npm `@hellocoop/httpsig` 2.2.0 (signature-key -08, standard
//! base64, no `@query` by default): what it signs is accepted by our layer under the
//! strict profile, tampered variants are refused with the exact code before the handler
//! runs, and its verifier accepts what our `TestAgent` signs.
//!
//! Needs `bash tests/interop/setup.sh` (without it the tests are reported ignored, and fail under `CI=true`: see `build.rs`).

mod support;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::json;
use support::harness::{AP, Harness, NOW, RESOURCE, assert_refused, body_json};
use support::peers::{
    Peer, Scheme, SignRequest, harness, set_header, verify_input, with_flipped_signature, with_method, with_uri,
};
use tower_aauth::Profile;
use tower_aauth::engine;
use tower_aauth::testing::KeySource;

async fn assert_accepted(h: &Harness, request: Request<Body>, scheme: &str) -> serde_json::Value {
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
    assert_eq!(h.calls(), 1, "the handler ran once");
    let body = body_json(response).await;
    assert_eq!(body["scheme"], scheme);
    body
}

fn post(scheme: Scheme) -> SignRequest {
    SignRequest {
        method: "POST",
        headers: json!({ "content-type": "application/json" }),
        body: Some(r#"{"hello":"world"}"#.to_owned()),
        ..SignRequest::get("/data", scheme, NOW)
    }
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_hwk_get_is_accepted() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Hwk, NOW).sign(Peer::Js, &js);
    assert!(request.headers()["signature"].to_str().unwrap().ends_with("=:"));
    assert_accepted(&h, request, "hwk").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_get_with_uncovered_query_is_accepted() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data?x=1", Scheme::Hwk, NOW).sign(Peer::Js, &js);
    assert!(
        !request.headers()["signature-input"]
            .to_str()
            .unwrap()
            .contains("@query")
    );
    assert_accepted(&h, request, "hwk").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_uncovered_query_is_refused_when_query_coverage_is_required() {
    let js = Peer::Js.launcher_path();
    let h = Harness::with(|b| b.require_query_coverage(true));
    let request = SignRequest::get("/data?x=1", Scheme::Hwk, NOW).sign(Peer::Js, &js);
    assert_refused(&h, h.send(request).await, "invalid_input").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_query_covered_without_question_mark_is_refused() {
    // hellocoop serialises `@query` as `x=1`; RFC 9421 §2.2.7 says `?x=1`.
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest {
        components: vec!["@query"],
        ..SignRequest::get("/data?x=1", Scheme::Hwk, NOW)
    }
    .sign(Peer::Js, &js);
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_jwks_uri_get_is_accepted() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::JwksUri, NOW).sign(Peer::Js, &js);
    assert_accepted(&h, request, "jwks_uri").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_jwt_with_auth_token_is_accepted() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::Js, &js);
    let body = assert_accepted(&h, request, "jwt").await;
    assert_eq!(body["token"], engine::typ::AUTH);
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_post_with_default_content_digest_is_accepted() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = post(Scheme::Jwt(h.auth_token("data.write"))).sign(Peer::Js, &js);
    assert!(
        request.headers()["signature-input"]
            .to_str()
            .unwrap()
            .contains("\"content-digest\"")
    );
    assert_accepted(&h, request, "jwt").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_changed_path_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::Js, &js);
    let request = with_uri(request, &format!("{RESOURCE}/admin"));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_changed_method_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::Js, &js);
    assert_refused(&h, h.send(with_method(request, Method::PUT)).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_changed_covered_header_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let mut request = post(Scheme::Hwk).sign(Peer::Js, &js);
    set_header(&mut request, "content-type", "text/plain");
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_changed_body_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let (parts, _) = post(Scheme::Hwk).sign(Peer::Js, &js).into_parts();
    let request = Request::from_parts(parts, Body::from(r#"{"hello":"mallory"}"#));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_swapped_token_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let mut request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::Js, &js);
    let broader = h.auth_token("data.read data.write");
    set_header(&mut request, "signature-key", &format!(r#"sig=jwt;jwt="{broader}""#));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_request_with_flipped_signature_character_is_refused() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::Js, &js);
    assert_refused(&h, h.send(with_flipped_signature(request)).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[test]
fn hellocoop_2_2_0_verifies_our_hwk_jwks_uri_and_jwt_signatures() {
    let js = Peer::Js.launcher_path();
    let h = harness(Profile::Draft11);
    let sources = [
        (KeySource::Hwk, json!({"keys": []})),
        (KeySource::agent_jwks(AP, support::peers::AGENT_KID), h.agent.jwks()),
        (KeySource::Jwt(h.auth_token("data.read")), h.access_server.jwks()),
    ];
    for (source, jwks) in sources {
        let mut request = Request::get(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
        h.agent.sign(&mut request, &source, NOW);
        let verdict = Peer::Js.run(&js, "verify", &verify_input(&request, None, jwks.clone(), NOW));
        assert_eq!(verdict["verified"], true, "{source:?}: {verdict}");
        let tampered = with_uri(request, &format!("{RESOURCE}/admin"));
        let verdict = Peer::Js.run(&js, "verify", &verify_input(&tampered, None, jwks, NOW));
        assert_eq!(verdict["verified"], false, "{source:?}: a tampered path must fail");
    }
}
