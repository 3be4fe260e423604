//! Resource tokens checked by independent verifiers (the `aauth-protocol` crate and the
//! real PyPI `aauth` 0.5.0 peer) against the JWKS our well-known router publishes; the
//! metadata document; key rotation; the rejection hook; the default requirement; and the
//! axum extractors.

mod support;

use aauth_protocol::jwk::{Algorithm, Jwks};
use aauth_protocol::jwt;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::StatusCode;
use serde_json::{Value, json};
use support::app::*;
use support::peers::Peer;
use tower::ServiceExt;
use tower_aauth::testing::KeySource;
use tower_aauth::{AuthGrant, ResourceKey, VerifiedAgent, guard::Requirement};

async fn json_body(response: http::Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A resource token minted for a person token, and the JWKS served by the app.
async fn minted(app: &App) -> (String, Value) {
    minted_for(app, app.person_token()).await
}

async fn minted_for(app: &App, presented: String) -> (String, Value) {
    let response = app.get_signed("/data", &jwt(presented)).await;
    let (token, _, _) = assert_auth_challenge(app, &response);
    let jwks = json_body(app.send(get_request("/.well-known/jwks.json")).await).await;
    (token, jwks)
}

#[tokio::test]
async fn minted_token_verifies_with_the_aauth_protocol_crate() {
    let app = App::three_party();
    let (token, jwks) = minted(&app).await;
    let jwks: Jwks = serde_json::from_value(jwks).unwrap();
    let decoded = jwt::decode(&token).unwrap();
    assert_eq!(decoded.typ(), Some("aa-resource+jwt"));
    let kid = decoded.kid().unwrap();
    let key = jwks.keys.iter().find(|k| k.kid.as_deref() == Some(kid)).unwrap();
    let alg = Algorithm::from_name(decoded.alg().unwrap()).expect("a fully specified alg");
    assert_eq!(key.algorithm().unwrap(), alg);
    assert!(decoded.verify_signature(key, alg));
    // Claim checks aauth-protocol leaves to the caller (its verify_token refuses this typ).
    let claims = &decoded.claims;
    assert_eq!(claims["iss"], RESOURCE);
    assert_eq!(claims["dwk"], "aauth-resource.json");
    assert_eq!(claims["aud"], PS);
    assert!(claims["exp"].as_u64().unwrap() > NOW);
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 300);
    assert_eq!(claims["agent_jkt"], app.agent.thumbprint());

    // A flipped signature byte does not verify: the check above can fail.
    let mut tampered = token.into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = jwt::decode(std::str::from_utf8(&tampered).unwrap()).unwrap();
    assert!(!tampered.verify_signature(key, alg));
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn minted_token_verifies_with_the_pypi_aauth_peer() {
    let launcher = Peer::V05.launcher_path();
    let app = App::three_party();
    // Without mission_s256: the peer would look the mission up in a mission store it
    // does not have here ("Mission is not active").
    let mut claims = app.person_claims();
    claims.as_object_mut().unwrap().remove("mission_s256");
    let presented = app.ps.sign(tower_aauth::engine::typ::PERSON, &claims);
    let (token, jwks) = minted_for(&app, presented.clone()).await;
    // The driver serves one JWKS to every issuer: ours plus the person server's key.
    let mut keys = jwks["keys"].as_array().unwrap().clone();
    keys.push(app.ps.public_jwk().to_json());
    let both = json!({ "keys": keys });
    let output = Peer::V05.run(
        &launcher,
        "verify-resource-token",
        &json!({
            "token": token, "jwks": both, "now": NOW + 1,
            "expected": { "iss": RESOURCE, "aud": PS, "presented_token": presented,
                          "ps": PS, "agent_jkt": app.agent.thumbprint() },
        }),
    );
    assert_eq!(output["valid"], true, "peer said: {output}");
    assert_eq!(output["claims"]["presented_jti"], "pt-1");

    // The same peer refuses the token against someone else's JWKS.
    let other = json!({ "keys": [ResourceKey::from_seed([8; 32]).with_kid("resource-key-1").public_jwk().to_json()] });
    let output = Peer::V05.run(
        &launcher,
        "verify-resource-token",
        &json!({ "token": token, "jwks": other, "now": NOW + 1, "expected": { "iss": RESOURCE, "aud": PS } }),
    );
    assert_eq!(output["valid"], false, "peer said: {output}");
}

#[tokio::test]
async fn metadata_names_issuer_jwks_scopes_and_signature_rules() {
    let app = App::three_party();
    let response = app.send(get_request("/.well-known/aauth-resource.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let doc = json_body(response).await;
    assert_eq!(doc["issuer"], RESOURCE);
    assert_eq!(doc["jwks_uri"], format!("{RESOURCE}/.well-known/jwks.json"));
    assert_eq!(doc["scope_descriptions"]["data.read"], "Read your data");
    assert_eq!(doc["scope_descriptions"]["data.write"], "Change your data");
    assert_eq!(doc["signature_window"], 60);
    assert_eq!(doc["accept_signature_algs"], json!(["Ed25519"]));
    assert_eq!(doc["accept_signature_schemes"], json!(["jwt", "jwks_uri", "hwk"]));
}

#[tokio::test]
async fn jwks_publishes_public_members_with_kid_alg_and_use_only_mint04() {
    let app = App::three_party();
    let jwks = json_body(app.send(get_request("/.well-known/jwks.json")).await).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
    members.sort();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(key["kid"], "resource-key-1");
    assert_eq!(key["alg"], "Ed25519");
    assert_eq!(key["use"], "sig");
}

#[tokio::test]
async fn rotation_publishes_first_signs_later_and_retires_without_restart() {
    let app = App::three_party();
    let next = ResourceKey::from_seed([9; 32]).with_kid("resource-key-2");
    assert!(app.aauth.stage_signing_key(next.clone()));
    let (token, jwks) = minted(&app).await;
    assert_eq!(decode(&token).0["kid"], "resource-key-1", "a staged key does not sign");
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    assert!(app.aauth.rotate(next));
    let (token, jwks) = minted(&app).await;
    assert_eq!(decode(&token).0["kid"], "resource-key-2");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        ["resource-key-2", "resource-key-1"],
        "the old key stays published"
    );

    assert!(app.aauth.retire_key("resource-key-1"));
    assert!(
        !app.aauth.retire_key("resource-key-2"),
        "the active key cannot be retired"
    );
    let jwks = json_body(app.send(get_request("/.well-known/jwks.json")).await).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn signing_key_debug_output_holds_no_key_material_mint06() {
    let key = resource_key();
    let printed = format!("{key:?}");
    let jwk = key.public_jwk();
    assert!(printed.contains("resource-key-1"));
    assert!(!printed.contains(jwk.x()));
    assert!(printed.contains("redacted"));
}

#[test]
fn configuration_values_that_would_break_headers_are_startup_errors_mint05() {
    for adjust in [
        (|b: tower_aauth::AAuthBuilder| b.scope("data.read\r\nSet-Cookie: x", "d")) as fn(_) -> _,
        |b| b.scope("data read", "two scopes"),
        |b| b.scope("data.read", "line\nbreak"),
        |b| b.resource_token_lifetime(301),
        |b| b.resource_token_lifetime(0),
        |b| b.signing_key(ResourceKey::from_seed([1; 32]).with_kid("a\"b")),
    ] {
        let result =
            adjust(tower_aauth::AAuth::builder(RESOURCE).key_resolver(tower_aauth::discovery::StaticResolver::new()))
                .build();
        assert!(result.is_err());
    }
}

#[tokio::test]
async fn resource_token_lifetime_is_configurable() {
    let app = App::with(|b| b.person_server(PS).resource_token_lifetime(60));
    let response = app.get_signed("/data", &jwt(app.person_token())).await;
    let (_, _, claims) = assert_auth_challenge(&app, &response);
    assert_eq!(claims["exp"], NOW + 60);
}

#[tokio::test]
async fn rejection_hook_shapes_bodies_while_headers_stay_protocol_correct() {
    let app = App::with(|b| {
        b.person_server(PS).rejection_hook(|rejection| {
            Some(tower_aauth::RejectionBody::json(&json!({
                "oops": rejection.code, "status": rejection.status.as_u16(),
                "requirement": rejection.requirement,
            })))
        })
    });
    let response = app.get_signed("/data", &jwt(app.person_token())).await;
    let (_, _, _) = assert_auth_challenge(&app, &response);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_body(response).await;
    assert_eq!(
        body,
        json!({"oops": "auth_token_required", "status": 401, "requirement": "auth-token"})
    );

    // A layer refusal keeps its Signature-Error.
    let mut request = get_request("/data");
    app.agent.sign(&mut request, &KeySource::Hwk, NOW - 3600);
    let response = app.send(request).await;
    assert_signature_error(&app, &response, "invalid_signature");
    assert_eq!(json_body(response).await["oops"], "invalid_signature");

    // A policy denial stays a bare 403.
    let response = app.get_signed("/policy", &KeySource::Hwk).await;
    assert_forbidden(&app, &response);
    assert_eq!(json_body(response).await["oops"], "policy_denied");
}

#[tokio::test]
async fn default_requirement_protects_every_path_but_the_well_known_documents() {
    let app = App::with(|b| b.person_server(PS).default_requirement(Requirement::Agent));
    let router = Router::new()
        .route("/anything", get(app.handler()))
        .merge(app.aauth.well_known_router())
        .layer(app.aauth.layer());
    let response = router.clone().oneshot(get_request("/anything")).await.unwrap();
    assert_challenge(&app, &response, "requirement=agent-token");
    let response = router
        .clone()
        .oneshot(get_request("/.well-known/aauth-resource.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut request = get_request("/anything");
    app.agent.sign(&mut request, &jwt(app.agent_token()), NOW);
    let response = router.oneshot(request).await.unwrap();
    assert_served(&app, &response);
}

// ---- extractors ----

fn extractor_app(app: &App) -> Router {
    async fn agent(agent: VerifiedAgent) -> axum::Json<Value> {
        axum::Json(json!({
            "scheme": agent.scheme.as_str(), "thumbprint": &*agent.key_thumbprint,
            "agent": agent.agent.as_ref().map(|a| a.id().to_owned()), "token": agent.token_kind.map(|k| k.typ()),
        }))
    }
    async fn grant(grant: AuthGrant) -> axum::Json<Value> {
        axum::Json(json!({
            "iss": grant.issuer, "sub": grant.subject, "scope": grant.scopes.to_string(),
            "aud": grant.audience, "jti": grant.jti, "exp": grant.expires_at,
            "claims_ps": grant.claims["ps"],
        }))
    }
    async fn optional(agent: Option<VerifiedAgent>, grant: Option<AuthGrant>) -> axum::Json<Value> {
        axum::Json(json!({ "agent": agent.is_some(), "grant": grant.is_some() }))
    }
    Router::new()
        .route("/agent", get(agent))
        .route("/grant", get(grant))
        .route("/optional", get(optional))
        .layer(app.aauth.layer())
}

#[tokio::test]
async fn verified_agent_names_scheme_thumbprint_agent_and_token_kind() {
    let app = App::three_party();
    let mut request = get_request("/agent");
    app.agent.sign(&mut request, &jwt(app.agent_token()), NOW);
    let body = json_body(extractor_app(&app).oneshot(request).await.unwrap()).await;
    assert_eq!(
        body,
        json!({"scheme": "jwt", "thumbprint": app.agent.thumbprint(), "agent": AGENT_ID, "token": "aa-agent+jwt"})
    );
}

#[tokio::test]
async fn verified_agent_on_an_unsigned_request_is_an_agent_token_challenge() {
    let app = App::three_party();
    let response = extractor_app(&app).oneshot(get_request("/agent")).await.unwrap();
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn auth_grant_exposes_the_auth_token() {
    let app = App::three_party();
    let mut request = get_request("/grant");
    app.agent
        .sign(&mut request, &jwt(app.ps_auth_token(Some("data.read"))), NOW);
    let body = json_body(extractor_app(&app).oneshot(request).await.unwrap()).await;
    assert_eq!(
        body,
        json!({"iss": PS, "sub": "person-1", "scope": "data.read", "aud": RESOURCE,
               "jti": "at-1", "exp": NOW + 3600, "claims_ps": PS})
    );
}

#[tokio::test]
async fn auth_grant_without_an_auth_token_follows_the_challenge_rules() {
    let app = App::three_party();
    let mut request = get_request("/grant");
    app.agent.sign(&mut request, &jwt(app.person_token()), NOW);
    let response = extractor_app(&app).oneshot(request).await.unwrap();
    let (_, _, claims) = assert_auth_challenge(&app, &response);
    assert!(claims.get("scope").is_none(), "no route scope to ask for");

    let response = extractor_app(&app).oneshot(get_request("/grant")).await.unwrap();
    assert_challenge(&app, &response, "requirement=person-token");
}

#[tokio::test]
async fn optional_extractors_yield_none_without_a_principal() {
    let app = App::three_party();
    let body = json_body(extractor_app(&app).oneshot(get_request("/optional")).await.unwrap()).await;
    assert_eq!(body, json!({"agent": false, "grant": false}));
    let mut request = get_request("/optional");
    app.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let body = json_body(extractor_app(&app).oneshot(request).await.unwrap()).await;
    assert_eq!(body, json!({"agent": true, "grant": false}));
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_500_never_a_pass() {
    let app = App::three_party();
    for path in ["/agent", "/grant", "/optional"] {
        let router = Router::new()
            .route("/agent", get(|_: VerifiedAgent| async { "served" }))
            .route("/grant", get(|_: AuthGrant| async { "served" }))
            .route("/optional", get(|_: Option<VerifiedAgent>| async { "served" }));
        let mut request = get_request(path);
        app.agent
            .sign(&mut request, &jwt(app.ps_auth_token(Some("data.read"))), NOW);
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
}
