//! Real agents read our challenges: the pinned peers' own challenge parsers find the
//! resource token in the `401` our guards send — `AAuth-Requirement` in draft -11, and
//! the demo generation's `AAuth:` header for the aauth 0.3.4 agent — byte for byte.
//!
//! Needs `bash tests/interop/setup.sh` (without it the tests are reported ignored, and fail under `CI=true`: see `build.rs`).

mod support;

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use support::app::{AP, AS, App, PS, decode};
use support::peers::Peer;
use tower_aauth::Profile;
use tower_aauth::testing::KeySource;

/// A `401` challenge for `/data` answered to a `jwks_uri` agent.
async fn challenge(app: &App) -> Response<Body> {
    let response = app.get_signed("/data", &KeySource::agent_jwks(AP, "agent-key-1")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.calls(), 0, "the handler must not run");
    response
}

/// The response's headers as the driver's JSON input.
fn driver_input(response: &Response<Body>) -> Value {
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    json!({ "status": response.status().as_u16(), "headers": headers })
}

/// The resource token between `resource-token="` and the closing quote of `header`.
fn our_token(response: &Response<Body>, header: &str) -> String {
    let value = response.headers()[header].to_str().unwrap();
    let start = value.find("resource-token=\"").expect("a resource-token parameter") + "resource-token=\"".len();
    value[start..].split('"').next().unwrap().to_owned()
}

async fn assert_peer_reads_draft11_challenge(peer: Peer) {
    let launcher = peer.launcher_path();
    let app = App::four_party();
    let response = challenge(&app).await;
    let expected = our_token(&response, "aauth-requirement");
    let parsed = peer.run(&launcher, "parse-challenge", &driver_input(&response));
    assert_eq!(parsed["requirement"], "auth-token", "{parsed}");
    assert_eq!(parsed["resource_token"], expected.as_str(), "{parsed}");
    let (header, claims) = decode(&expected);
    assert_eq!(header["typ"], "aa-resource+jwt");
    assert_eq!(claims["aud"], AS);
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_reads_the_resource_token_from_our_auth_token_challenge() {
    assert_peer_reads_draft11_challenge(Peer::V05).await;
}

#[cfg_attr(
    skip_peer_js,
    ignore = "interop peer peer-js (npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_reads_the_resource_token_from_our_auth_token_challenge() {
    assert_peer_reads_draft11_challenge(Peer::Js).await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_reads_the_resource_token_from_our_draft11_challenge() {
    assert_peer_reads_draft11_challenge(Peer::V03).await;
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_reads_the_resource_token_from_our_legacy_challenge() {
    let launcher = Peer::V03.launcher_path();
    let app = App::with(|b| b.person_server(PS).auth_server(AS).profile(Profile::Legacy));
    let response = challenge(&app).await;
    assert!(
        response.headers().get("aauth-requirement").is_none(),
        "legacy answers in its own generation"
    );
    let expected = our_token(&response, "aauth");
    let parsed = Peer::V03.run(&launcher, "parse-challenge", &driver_input(&response));
    assert_eq!(parsed["header_used"], "aauth", "{parsed}");
    assert_eq!(parsed["resource_token"], expected.as_str(), "{parsed}");
    let (header, _) = decode(&expected);
    assert_eq!(header["typ"], "resource+jwt");
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_reads_the_signature_error_of_our_refusal() {
    let launcher = Peer::V05.launcher_path();
    let app = App::four_party();
    let mut request = support::app::get_request("/data");
    app.agent.sign(&mut request, &KeySource::Hwk, support::app::NOW - 3600);
    let response = app.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.calls(), 0);
    let parsed = Peer::V05.run(&launcher, "parse-challenge", &driver_input(&response));
    assert_eq!(parsed["signature_error"]["error"], "invalid_signature", "{parsed}");
}
