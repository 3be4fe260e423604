//! Hostile token bytes at the layer: every malformed auth token is `401 invalid_jwt` (or
//! a more specific code) before any route runs, never a panic.

mod support;

use serde_json::{Value, json};
use support::app::*;
use tower_aauth::engine;
use tower_aauth::engine::b64url;

/// Signs arbitrary header and payload bytes with the person server's key.
fn forge(app: &App, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let signature = app.ps.key().sign_bytes(input.as_bytes());
    format!("{input}.{}", b64url(signature))
}

fn header() -> Value {
    json!({ "alg": "Ed25519", "typ": engine::typ::AUTH, "kid": "ps-key-1" })
}

fn claims(app: &App) -> Value {
    let mut claims = app.person_claims();
    claims["ps"] = PS.into();
    claims["scope"] = "data.read".into();
    claims["jti"] = "at-1".into();
    claims.as_object_mut().unwrap().remove("mission_s256");
    claims
}

async fn refused(app: &App, token: String, code: &str) {
    let response = app.get_signed("/data", &jwt(token)).await;
    assert_signature_error(app, &response, code);
}

#[tokio::test]
async fn the_well_formed_control_token_is_served() {
    let app = App::three_party();
    let token = forge(
        &app,
        header().to_string().as_bytes(),
        claims(&app).to_string().as_bytes(),
    );
    let response = app.get_signed("/data", &jwt(token)).await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn claims_of_the_wrong_json_type_are_invalid_jwt() {
    for (name, value) in [
        ("iss", json!(42)),
        ("dwk", json!(["aauth-person.json"])),
        ("aud", json!({"x": 1})),
        ("aud", json!([RESOURCE, "https://other.example"])),
        ("sub", json!(1)),
        ("jti", json!(null)),
        ("exp", json!("9999999999")),
        ("exp", json!(1.7e9)),
        ("iat", json!(-1)),
        ("scope", json!(["data.read"])),
        ("scope", json!(7)),
        ("ps", json!(true)),
        ("cnf", json!("key")),
    ] {
        let app = App::three_party();
        let mut claims = claims(&app);
        claims[name] = value;
        let token = forge(&app, header().to_string().as_bytes(), claims.to_string().as_bytes());
        refused(&app, token, "invalid_jwt").await;
    }
}

#[tokio::test]
async fn malformed_scope_strings_are_invalid_jwt_scp03() {
    for scope in ["a  b", " a", "a ", "a\tb", "a\nb", "a\"b", "a\\b", "dätä"] {
        let app = App::three_party();
        let mut claims = claims(&app);
        claims["scope"] = scope.into();
        let token = forge(&app, header().to_string().as_bytes(), claims.to_string().as_bytes());
        refused(&app, token, "invalid_jwt").await;
    }
}

#[tokio::test]
async fn duplicate_json_keys_are_invalid_jwt() {
    let app = App::three_party();
    let payload = claims(&app).to_string();
    let duplicated = payload.replacen('{', r#"{"scope":"admin","#, 1);
    let token = forge(&app, header().to_string().as_bytes(), duplicated.as_bytes());
    refused(&app, token, "invalid_jwt").await;
    let app = App::three_party();
    let header = r#"{"alg":"Ed25519","typ":"aa-auth+jwt","typ":"aa-auth+jwt","kid":"ps-key-1"}"#;
    let token = forge(&app, header.as_bytes(), claims(&app).to_string().as_bytes());
    refused(&app, token, "invalid_jwt").await;
}

#[tokio::test]
async fn crit_and_key_carrying_headers_are_invalid_jwt() {
    for (name, value) in [
        ("crit", json!(["exp"])),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        let app = App::three_party();
        let mut header = header();
        header[name] = value;
        let token = forge(&app, header.to_string().as_bytes(), claims(&app).to_string().as_bytes());
        refused(&app, token, "invalid_jwt").await;
    }
}

#[tokio::test]
async fn non_utf8_segments_are_invalid_jwt() {
    let app = App::three_party();
    let mut payload = claims(&app).to_string().into_bytes();
    payload.insert(1, 0xff);
    let token = forge(&app, header().to_string().as_bytes(), &payload);
    refused(&app, token, "invalid_jwt").await;
    let app = App::three_party();
    let token = forge(&app, &[0xc3, 0x28], claims(&app).to_string().as_bytes());
    refused(&app, token, "invalid_jwt").await;
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    let app = App::with(|b| b.person_server(PS).max_header_bytes(64 * 1024));
    let mut claims = claims(&app);
    claims["padding"] = "x".repeat(9 * 1024).into();
    let token = forge(&app, header().to_string().as_bytes(), claims.to_string().as_bytes());
    refused(&app, token, "invalid_jwt").await;
}

#[tokio::test]
async fn deeply_nested_json_is_invalid_jwt() {
    let app = App::three_party();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let payload = claims(&app)
        .to_string()
        .replacen('{', &format!(r#"{{"deep":{deep},"#), 1);
    let token = forge(&app, header().to_string().as_bytes(), payload.as_bytes());
    refused(&app, token, "invalid_jwt").await;
}

#[tokio::test]
async fn a_person_token_typ_with_auth_claims_is_never_authorization_typ03() {
    let app = App::three_party();
    let mut header = header();
    header["typ"] = engine::typ::PERSON.into();
    // A person token must not carry scope: refused outright rather than ignored.
    let token = forge(&app, header.to_string().as_bytes(), claims(&app).to_string().as_bytes());
    refused(&app, token, "invalid_jwt").await;
}
