//! Interop with the real PyPI agents: requests signed by `aauth` 0.5.0 + `aauth-signing`
//! 0.2.0 (draft -11, strict profile) and by `aauth` 0.3.4 + `aauth-signing` 0.1.2 (the
//! demo generation; legacy profile where its tokens need it) are accepted by our layer,
//! tampered variants are refused with the exact code before the handler runs, and both
//! libraries' own verifiers accept what our `TestAgent` signs.
//!
//! Needs `bash tests/interop/setup.sh` (without it the tests are reported ignored, and fail under `CI=true`: see `build.rs`).

mod support;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::json;
use support::harness::{AP, AS, Harness, NOW, RESOURCE, assert_refused, body_json};
use support::peers::{
    Peer, Scheme, SignRequest, harness, set_header, verify_input, with_flipped_signature, with_method, with_uri,
};
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, SignOptions};
use tower_aauth::{Profile, TokenKind, VerifiedRequest};

async fn assert_accepted(h: &Harness, request: Request<Body>, scheme: &str) {
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
    assert_eq!(h.calls(), 1, "the handler ran once");
    assert_eq!(body_json(response).await["scheme"], scheme);
}

/// The seed article's auth token (`auth+jwt`, `EdDSA`, no `dwk`, `cnf.jwk` without
/// `alg`), which aauth 0.3.4 agents present.
fn demo_auth_token(h: &Harness) -> String {
    h.access_server
        .legacy_auth_token(RESOURCE, &h.agent.public_jwk(), AP, "data.read data.write", NOW)
}

fn post(scheme: Scheme) -> SignRequest {
    SignRequest {
        method: "POST",
        headers: json!({ "content-type": "application/json" }),
        body: Some(r#"{"hello":"world"}"#.to_owned()),
        components: vec!["content-type", "content-digest"],
        ..SignRequest::get("/data", scheme, NOW)
    }
}

// ---- aauth 0.5.0 / aauth-signing 0.2.0 → our layer (strict profile) ----

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_hwk_get_with_query_is_accepted() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data?x=1", Scheme::Hwk, NOW).sign(Peer::V05, &v05);
    assert!(
        request.headers()["signature-input"]
            .to_str()
            .unwrap()
            .contains("\"@query\"")
    );
    assert_accepted(&h, request, "hwk").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_jwks_uri_get_is_accepted() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::JwksUri, NOW).sign(Peer::V05, &v05);
    assert_accepted(&h, request, "jwks_uri").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_jwt_with_auth_token_is_accepted() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["token"], engine::typ::AUTH);
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_jwt_with_agent_token_is_accepted() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let token = h
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW);
    let request = SignRequest::get("/data", Scheme::Jwt(token), NOW).sign(Peer::V05, &v05);
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["token"], engine::typ::AGENT);
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_post_covering_content_digest_is_accepted() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = post(Scheme::Jwt(h.auth_token("data.write"))).sign(Peer::V05, &v05);
    assert!(request.headers().contains_key("content-digest"));
    assert_accepted(&h, request, "jwt").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_changed_path_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    let request = with_uri(request, &format!("{RESOURCE}/admin"));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_changed_method_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    assert_refused(
        &h,
        h.send(with_method(request, Method::DELETE)).await,
        "invalid_signature",
    )
    .await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_changed_covered_header_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let mut request = post(Scheme::Hwk).sign(Peer::V05, &v05);
    set_header(&mut request, "content-type", "text/plain");
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_changed_body_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = post(Scheme::Hwk).sign(Peer::V05, &v05);
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Body::from(r#"{"hello":"mallory"}"#));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_swapped_token_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    // A valid token for the same key, but a broader grant than the one signed over.
    let mut request = request;
    let broader = h.auth_token("data.read data.write");
    set_header(&mut request, "signature-key", &format!(r#"sig=jwt;jwt="{broader}""#));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_request_with_flipped_signature_character_is_refused() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    assert_refused(&h, h.send(with_flipped_signature(request)).await, "invalid_signature").await;
}

// ---- aauth 0.3.4 / aauth-signing 0.1.2 → our layer ----

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_hwk_without_alg_is_accepted_under_draft11() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data?x=1", Scheme::Hwk, NOW).sign(Peer::V03, &v03);
    assert!(!request.headers()["signature-key"].to_str().unwrap().contains("alg="));
    assert_accepted(&h, request, "hwk").await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_jwks_uri_is_accepted_under_draft11() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::JwksUri, NOW).sign(Peer::V03, &v03);
    assert_accepted(&h, request, "jwks_uri").await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_jwt_with_demo_auth_token_is_accepted_under_legacy() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let request = SignRequest::get("/data?x=1", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["token"], TokenKind::Auth.typ());
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_jwt_with_demo_auth_token_is_refused_under_draft11() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Draft11);
    let request = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    assert_refused(&h, h.send(request).await, "invalid_jwt").await;
}

#[cfg_attr(
    any(skip_peer_v05, skip_peer_v03),
    ignore = "interop peers peer-v05 and peer-v03 not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_and_0_5_0_are_each_answered_in_their_generation_under_both() {
    let (v03, v05) = (Peer::V03.launcher_path(), Peer::V05.launcher_path());
    let h = harness(Profile::Both);
    let demo = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    let draft11 = SignRequest::get("/data", Scheme::Jwt(h.auth_token("data.read")), NOW).sign(Peer::V05, &v05);
    let mut generations = Vec::new();
    for request in [demo, draft11] {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = seen.clone();
        let app = axum::Router::new()
            .fallback(move |request: Request<Body>| {
                let sink = sink.clone();
                async move {
                    *sink.lock().unwrap() = request.extensions().get::<VerifiedRequest>().map(|v| v.generation);
                    "ok"
                }
            })
            .layer(h.aauth.layer());
        let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        generations.push(seen.lock().unwrap().expect("verified"));
    }
    assert_eq!(
        generations,
        [tower_aauth::Generation::Legacy, tower_aauth::Generation::Draft11]
    );
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_request_with_changed_path_is_refused() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let request = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    let request = with_uri(request, &format!("{RESOURCE}/admin"));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_request_with_changed_method_is_refused() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let request = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    assert_refused(
        &h,
        h.send(with_method(request, Method::POST)).await,
        "invalid_signature",
    )
    .await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_request_with_changed_query_is_refused() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let request = SignRequest::get("/data?x=1", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    let request = with_uri(request, &format!("{RESOURCE}/data?x=2"));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_request_with_swapped_token_is_refused() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let mut request = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    let other = h
        .access_server
        .legacy_auth_token(RESOURCE, &h.agent.public_jwk(), AP, "admin", NOW);
    set_header(&mut request, "signature-key", &format!(r#"sig=jwt;jwt="{other}""#));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_request_with_flipped_signature_character_is_refused() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    let request = SignRequest::get("/data", Scheme::Jwt(demo_auth_token(&h)), NOW).sign(Peer::V03, &v03);
    assert_refused(&h, h.send(with_flipped_signature(request)).await, "invalid_signature").await;
}

// ---- our TestAgent → the peers' own verifiers ----

/// Python's verifiers take only base64url signatures (`aauth_signing`'s regex), which
/// our signer emits on request.
fn python_options() -> SignOptions {
    SignOptions {
        base64url: true,
        ..SignOptions::default()
    }
}

fn our_signed(h: &Harness, source: &KeySource) -> Request<Body> {
    let mut request = Request::get(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    h.agent.sign_with(&mut request, source, NOW, &python_options());
    request
}

fn assert_peer_verifies(peer: Peer, launcher: &std::path::PathBuf, request: &Request<Body>, jwks: serde_json::Value) {
    let verdict = peer.run(launcher, "verify", &verify_input(request, None, jwks, NOW));
    assert_eq!(
        verdict["verified"],
        true,
        "{} refused our signature: {verdict}",
        peer.pinned()
    );
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[test]
fn aauth_0_5_0_verifies_our_hwk_jwks_uri_and_jwt_signatures() {
    let v05 = Peer::V05.launcher_path();
    let h = harness(Profile::Draft11);
    assert_peer_verifies(Peer::V05, &v05, &our_signed(&h, &KeySource::Hwk), json!({"keys": []}));
    let jwks_uri = KeySource::agent_jwks(AP, support::peers::AGENT_KID);
    assert_peer_verifies(Peer::V05, &v05, &our_signed(&h, &jwks_uri), h.agent.jwks());
    let token = h.auth_token("data.read");
    assert_peer_verifies(
        Peer::V05,
        &v05,
        &our_signed(&h, &KeySource::Jwt(token)),
        h.access_server.jwks(),
    );
    // The verifier is not a rubber stamp: a tampered path fails it.
    let tampered = with_uri(our_signed(&h, &KeySource::Hwk), &format!("{RESOURCE}/admin"));
    let verdict = Peer::V05.run(&v05, "verify", &verify_input(&tampered, None, json!({"keys": []}), NOW));
    assert_eq!(verdict["verified"], false);
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[test]
fn aauth_0_3_4_verifies_our_hwk_jwks_uri_and_demo_jwt_signatures() {
    let v03 = Peer::V03.launcher_path();
    let h = harness(Profile::Legacy);
    assert_peer_verifies(Peer::V03, &v03, &our_signed(&h, &KeySource::Hwk), json!({"keys": []}));
    let jwks_uri = KeySource::agent_jwks(AP, support::peers::AGENT_KID);
    assert_peer_verifies(Peer::V03, &v03, &our_signed(&h, &jwks_uri), h.agent.jwks());
    // PyJWT 2.15 knows `EdDSA`, not `Ed25519`: aauth 0.3.4 checks demo-generation tokens.
    let claims = json!({
        "iss": AS, "dwk": engine::dwk::ACCESS, "sub": "user-1", "jti": "t-1",
        "cnf": { "jwk": h.agent.public_jwk().to_json() }, "iat": NOW, "exp": NOW + 3600,
    });
    let token = h
        .access_server
        .sign_with_alg(engine::typ::AGENT, engine::alg::EDDSA, &claims);
    assert_peer_verifies(
        Peer::V03,
        &v03,
        &our_signed(&h, &KeySource::Jwt(token)),
        h.access_server.jwks(),
    );
    let tampered = with_method(our_signed(&h, &KeySource::Hwk), Method::DELETE);
    let verdict = Peer::V03.run(&v03, "verify", &verify_input(&tampered, None, json!({"keys": []}), NOW));
    assert_eq!(verdict["verified"], false);
}
