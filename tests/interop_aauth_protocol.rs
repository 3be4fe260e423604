//! Interop with the `aauth-protocol` 0.2.0 crate (draft -11, another Rust
//! implementation): requests it signs with `hwk`, `jwks_uri` and `jwt` verify under our
//! layer in the strict profile, and a tampered one is refused before the handler runs.

mod support;

use aauth_protocol::SigningKey;
use aauth_protocol::httpsig::{Outgoing, SignatureKey, sign, sign_jwt};
use aauth_protocol::token::{TokenKind as TheirKind, mint};
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use support::harness::{AP, AS, Harness, NOW, RESOURCE, assert_refused, body_json};
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{TestAgent, TestIssuer};
use tower_aauth::{Jwk, engine::AlgPolicy};

/// The harness agent's seed: the same key on both sides.
const AGENT_SEED: [u8; 32] = [1; 32];
/// The harness access server's seed.
const AS_SEED: [u8; 32] = [2; 32];

fn their_agent() -> SigningKey {
    SigningKey::from_bytes(&AGENT_SEED)
}

/// The harness, whose resolver also knows the access server's key under the `kid`
/// `aauth-protocol` puts in tokens it mints (the key's RFC 7638 thumbprint).
fn harness() -> Harness {
    let access_server = TestIssuer::new(AS, AS_SEED, "as-key-1");
    let agent = TestAgent::from_seed(AGENT_SEED).with_kid("agent-key-1");
    let mut minted_kid = access_server.public_jwk().to_json();
    minted_kid["kid"] = json!(SigningKey::from_bytes(&AS_SEED).thumbprint());
    let minted_kid = Jwk::from_json(minted_kid.as_object().unwrap(), AlgPolicy::Strict).unwrap();
    let resolver = StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
        .with_key(AS, engine::dwk::ACCESS, minted_kid)
        .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
    Harness::with(|b| b.key_resolver(resolver))
}

fn outgoing<'a>(method: &'a str, url: &'a str, body: Option<&'a [u8]>) -> Outgoing<'a> {
    Outgoing {
        method,
        url,
        content_type: None,
        body,
        created: NOW as i64,
    }
}

/// Turns `aauth-protocol`'s header list into a request for our layer.
fn request(method: &str, url: &str, headers: Vec<(String, String)>, body: Option<&[u8]>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body.map(|b| Body::from(b.to_vec())).unwrap_or_else(Body::empty))
        .unwrap()
}

async fn assert_accepted(h: &Harness, request: Request<Body>, scheme: &str) -> serde_json::Value {
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
    assert_eq!(h.calls(), 1);
    let body = body_json(response).await;
    assert_eq!(body["scheme"], scheme);
    body
}

#[tokio::test]
async fn aauth_protocol_0_2_0_hwk_get_with_query_is_accepted() {
    let h = harness();
    let url = format!("{RESOURCE}/data?x=1");
    let headers = sign(&their_agent(), &SignatureKey::Hwk, &outgoing("GET", &url, None)).unwrap();
    let body = assert_accepted(&h, request("GET", &url, headers, None), "hwk").await;
    assert_eq!(body["thumbprint"], their_agent().thumbprint());
}

#[tokio::test]
async fn aauth_protocol_0_2_0_jwks_uri_get_is_accepted() {
    let h = harness();
    let url = format!("{RESOURCE}/data");
    let key = SignatureKey::JwksUri {
        id: AP.into(),
        dwk: engine::dwk::AGENT.into(),
        kid: "agent-key-1".into(),
    };
    let headers = sign(&their_agent(), &key, &outgoing("GET", &url, None)).unwrap();
    assert_accepted(&h, request("GET", &url, headers, None), "jwks_uri").await;
}

#[tokio::test]
async fn aauth_protocol_0_2_0_jwt_with_our_auth_token_is_accepted() {
    let h = harness();
    let url = format!("{RESOURCE}/data");
    let headers = sign_jwt(&their_agent(), &h.auth_token("data.read"), &outgoing("GET", &url, None)).unwrap();
    let body = assert_accepted(&h, request("GET", &url, headers, None), "jwt").await;
    assert_eq!(body["token"], engine::typ::AUTH);
}

#[tokio::test]
async fn aauth_protocol_0_2_0_jwt_with_an_auth_token_it_minted_is_accepted() {
    let h = harness();
    let token = mint(
        &SigningKey::from_bytes(&AS_SEED),
        TheirKind::Auth,
        &h.access_server
            .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW),
    );
    let url = format!("{RESOURCE}/data");
    let headers = sign_jwt(&their_agent(), &token, &outgoing("GET", &url, None)).unwrap();
    assert_accepted(&h, request("GET", &url, headers, None), "jwt").await;
}

#[tokio::test]
async fn aauth_protocol_0_2_0_post_with_content_digest_is_accepted() {
    let h = harness();
    let url = format!("{RESOURCE}/data");
    let body = br#"{"hello":"world"}"#;
    let headers = sign_jwt(
        &their_agent(),
        &h.auth_token("data.write"),
        &outgoing("POST", &url, Some(body)),
    )
    .unwrap();
    assert!(headers.iter().any(|(name, _)| name == "content-digest"));
    assert_accepted(&h, request("POST", &url, headers, Some(body)), "jwt").await;
}

#[tokio::test]
async fn aauth_protocol_0_2_0_request_with_changed_path_is_refused() {
    let h = harness();
    let url = format!("{RESOURCE}/data");
    let headers = sign_jwt(&their_agent(), &h.auth_token("data.read"), &outgoing("GET", &url, None)).unwrap();
    let tampered = request("GET", &format!("{RESOURCE}/admin"), headers, None);
    assert_refused(&h, h.send(tampered).await, "invalid_signature").await;
}

#[tokio::test]
async fn aauth_protocol_0_2_0_request_with_changed_body_is_refused() {
    let h = harness();
    let url = format!("{RESOURCE}/data");
    let headers = sign(&their_agent(), &SignatureKey::Hwk, &outgoing("POST", &url, Some(b"{}"))).unwrap();
    let tampered = request("POST", &url, headers, Some(br#"{"admin":true}"#));
    assert_refused(&h, h.send(tampered).await, "invalid_signature").await;
}
