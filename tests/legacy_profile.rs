//! The legacy profiles: the demo generation's forms are accepted under `Profile::Legacy`
//! and `Profile::Both`, each request records the generation to answer it in, and every
//! legacy form stays refused, with its exact code, under the default `Profile::Draft11`.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::harness::{AP, AS, Harness, NOW, RESOURCE, assert_refused, get};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, SignOptions, TestAgent, TestIssuer};
use tower_aauth::{Generation, Profile, VerifiedRequest};
use tower_aauth::{Jwk, engine::AlgPolicy};

/// The agent identifier the demo generation put in `agent` claims.
const DEMO_AGENT: &str = "https://agent.example";

/// The harness's issuers, rebuilt from their seeds so the resolver can also publish the
/// access server's key under the demo's `aauth-issuer.json`.
fn harness(profile: Profile) -> Harness {
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    let agent_provider = TestIssuer::new(AP, [3; 32], "ap-key-1");
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let resolver = StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
        .with_key(AS, engine::dwk::LEGACY_ISSUER, access_server.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent_provider.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
    Harness::with(|b| b.key_resolver(resolver).profile(profile))
}

/// Sends `request` through the layer; returns the response and what the handler saw.
async fn send(harness: &Harness, request: Request<Body>) -> (Response<Body>, Option<VerifiedRequest>) {
    let seen: Arc<Mutex<Option<VerifiedRequest>>> = Arc::default();
    let calls = harness.calls.clone();
    let sink = seen.clone();
    let router = Router::new()
        .fallback(any(move |request: Request<Body>| {
            let sink = sink.clone();
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                *sink.lock().unwrap() = request.extensions().get::<VerifiedRequest>().cloned();
                "ok"
            }
        }))
        .layer(harness.aauth.layer());
    let response = router.oneshot(request).await.unwrap();
    let verified = seen.lock().unwrap().clone();
    (response, verified)
}

fn legacy_options() -> SignOptions {
    SignOptions {
        legacy_signature_key: true,
        ..SignOptions::default()
    }
}

fn signed(harness: &Harness, source: &KeySource, options: &SignOptions) -> Request<Body> {
    let mut request = get("/data");
    harness.agent.sign_with(&mut request, source, NOW, options);
    request
}

/// The seed article's auth token: `auth+jwt`, `EdDSA`, no `dwk`, `cnf.jwk` without `alg`.
fn demo_auth_token(harness: &Harness) -> String {
    harness.access_server.legacy_auth_token(
        RESOURCE,
        &harness.agent.public_jwk(),
        DEMO_AGENT,
        "data.read data.write",
        NOW,
    )
}

fn agent_jwks_uri() -> KeySource {
    KeySource::agent_jwks(AP, "agent-key-1")
}

async fn assert_accepted(harness: &Harness, request: Request<Body>) -> VerifiedRequest {
    let (response, verified) = send(harness, request).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
    assert_eq!(harness.calls(), 1);
    verified.expect("the layer inserted a VerifiedRequest")
}

// ---- accepted under the legacy profile ----

#[tokio::test]
async fn seed_articles_jwks_uri_signature_key_without_dwk_is_accepted() {
    let h = harness(Profile::Legacy);
    let request = signed(&h, &agent_jwks_uri(), &legacy_options());
    assert_eq!(
        request.headers()["signature-key"],
        r#"sig=(scheme=jwks_uri id="https://agent.example" kid="agent-key-1")"#
    );
    let verified = assert_accepted(&h, request).await;
    assert_eq!(verified.signer.as_deref(), Some(AP));
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn seed_articles_jwt_signature_key_with_demo_auth_token_is_accepted() {
    let h = harness(Profile::Legacy);
    let token = demo_auth_token(&h);
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &legacy_options())).await;
    let claims = &verified.token.as_ref().expect("a verified token").claims;
    assert_eq!(claims.kind, tower_aauth::TokenKind::Auth);
    assert_eq!(claims.dwk, engine::dwk::LEGACY_ISSUER);
    assert_eq!(claims.agent.as_deref(), Some(DEMO_AGENT));
    assert!(claims.scope.contains("data.write"));
    assert_eq!(claims.generation, Generation::Legacy);
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn demo_hwk_signature_key_without_alg_is_accepted() {
    let h = harness(Profile::Legacy);
    let request = signed(&h, &KeySource::Hwk, &legacy_options());
    assert!(
        request.headers()["signature-key"]
            .to_str()
            .unwrap()
            .starts_with("sig=(scheme=hwk ")
    );
    let verified = assert_accepted(&h, request).await;
    assert_eq!(&*verified.key_thumbprint, h.agent.thumbprint());
}

#[tokio::test]
async fn structured_jwks_uri_without_dwk_is_accepted() {
    let h = harness(Profile::Legacy);
    let mut request = get("/data");
    request.headers_mut().insert(
        "signature-key",
        format!(r#"sig=jwks_uri;id="{AP}";kid="agent-key-1""#).parse().unwrap(),
    );
    sign_keeping_signature_key(&h.agent, &mut request);
    let verified = assert_accepted(&h, request).await;
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn demo_auth_token_in_structured_signature_key_with_base64url_signature_is_accepted() {
    let h = harness(Profile::Legacy);
    let options = SignOptions {
        base64url: true,
        ..SignOptions::default()
    };
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(demo_auth_token(&h)), &options)).await;
    assert_eq!(verified.token_kind(), Some(tower_aauth::TokenKind::Auth));
}

#[tokio::test]
async fn demo_agent_token_without_dwk_jti_or_aauth_identifier_is_accepted() {
    let h = harness(Profile::Legacy);
    let mut jwk = h.agent.public_jwk().to_json();
    jwk.as_object_mut().unwrap().remove("alg");
    let token = h.agent_provider.sign_with_alg(
        engine::typ::LEGACY_AGENT,
        engine::alg::EDDSA,
        &json!({ "iss": AP, "sub": "delegate-1", "cnf": { "jwk": jwk }, "iat": NOW, "exp": NOW + 3600 }),
    );
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    let claims = &verified.token.as_ref().unwrap().claims;
    assert_eq!(claims.kind, tower_aauth::TokenKind::Agent);
    assert_eq!(claims.dwk, engine::dwk::AGENT);
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn pre_draft11_auth_token_without_ps_but_with_agent_and_act_is_accepted() {
    let h = harness(Profile::Legacy);
    let mut claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let object = claims.as_object_mut().unwrap();
    object.remove("ps");
    object.insert("agent".into(), json!("aauth:assistant@agent.example"));
    object.insert("act".into(), json!({ "agent": "aauth:assistant@agent.example" }));
    let token = h.access_server.sign(engine::typ::AUTH, &claims);
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn draft11_requests_are_still_accepted_and_answered_in_legacy_under_legacy() {
    let h = harness(Profile::Legacy);
    let token = h.auth_token("data.read");
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    assert_eq!(verified.token.as_ref().unwrap().claims.generation, Generation::Draft11);
    assert_eq!(verified.generation, Generation::Legacy);
}

// ---- both generations side by side ----

#[tokio::test]
async fn both_answers_a_demo_request_in_the_demo_generation() {
    let h = harness(Profile::Both);
    let token = demo_auth_token(&h);
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &legacy_options())).await;
    assert_eq!(verified.generation, Generation::Legacy);
    assert_eq!(h.aauth.generation_for(Some(&verified)), Generation::Legacy);
}

#[tokio::test]
async fn both_answers_a_draft11_request_in_draft11() {
    let h = harness(Profile::Both);
    let token = h.auth_token("data.read");
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    assert_eq!(verified.generation, Generation::Draft11);
}

#[tokio::test]
async fn both_detects_a_demo_token_inside_a_structured_signature_key() {
    let h = harness(Profile::Both);
    let token = demo_auth_token(&h);
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn both_detects_a_demo_token_again_when_it_comes_from_the_token_cache() {
    let h = harness(Profile::Both);
    let token = demo_auth_token(&h);
    let first = assert_accepted(&h, signed(&h, &KeySource::Jwt(token.clone()), &SignOptions::default())).await;
    let (response, second) = send(&h, signed(&h, &KeySource::Jwt(token), &SignOptions::default())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.aauth.cached_tokens(), 1);
    assert_eq!(first.generation, Generation::Legacy);
    assert_eq!(second.unwrap().generation, Generation::Legacy);
}

#[test]
fn unsigned_requests_are_answered_in_the_profiles_default_generation() {
    assert_eq!(harness(Profile::Both).aauth.generation_for(None), Generation::Draft11);
    assert_eq!(harness(Profile::Legacy).aauth.generation_for(None), Generation::Legacy);
    assert_eq!(
        harness(Profile::Draft11).aauth.generation_for(None),
        Generation::Draft11
    );
}

// ---- the created window of the demo generation ----

#[tokio::test]
async fn future_created_is_invalid_signature_under_legacy() {
    let h = harness(Profile::Legacy);
    let mut request = get("/data");
    h.agent
        .sign_with(&mut request, &KeySource::Hwk, NOW + 61, &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_signature").await;
}

#[tokio::test]
async fn future_created_is_invalid_signature_for_a_demo_form_under_both() {
    let h = harness(Profile::Both);
    let mut request = get("/data");
    h.agent
        .sign_with(&mut request, &KeySource::Hwk, NOW + 61, &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_signature").await;
}

#[tokio::test]
async fn future_created_is_clock_skew_for_a_draft11_form_under_both() {
    let h = harness(Profile::Both);
    let mut request = get("/data");
    h.agent.sign(&mut request, &KeySource::Hwk, NOW + 61);
    assert_refused(&h, send(&h, request).await.0, "clock_skew").await;
}

#[tokio::test]
async fn created_within_sixty_seconds_ahead_is_accepted_under_legacy() {
    let h = harness(Profile::Legacy);
    let mut request = get("/data");
    h.agent
        .sign_with(&mut request, &KeySource::Hwk, NOW + 60, &legacy_options());
    assert_accepted(&h, request).await;
}

#[tokio::test]
async fn stale_created_is_invalid_signature_under_legacy() {
    let h = harness(Profile::Legacy);
    let mut request = get("/data");
    h.agent
        .sign_with(&mut request, &KeySource::Hwk, NOW - 61, &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_signature").await;
}

// ---- what the legacy profile still refuses ----

#[tokio::test]
async fn legacy_signature_key_bytes_are_covered_by_the_signature() {
    let h = harness(Profile::Legacy);
    let mut request = signed(&h, &agent_jwks_uri(), &legacy_options());
    // The parser tolerates a second space; the signature over the raw bytes does not.
    let widened = request.headers()["signature-key"]
        .to_str()
        .unwrap()
        .replacen(' ', "  ", 1);
    request.headers_mut().insert("signature-key", widened.parse().unwrap());
    assert_refused(&h, send(&h, request).await.0, "invalid_signature").await;
}

#[tokio::test]
async fn legacy_signature_with_changed_path_is_refused() {
    let h = harness(Profile::Legacy);
    let request = signed(&h, &KeySource::Jwt(demo_auth_token(&h)), &legacy_options());
    let (mut parts, body) = request.into_parts();
    parts.uri = format!("{RESOURCE}/admin").parse().unwrap();
    assert_refused(
        &h,
        send(&h, Request::from_parts(parts, body)).await.0,
        "invalid_signature",
    )
    .await;
}

#[tokio::test]
async fn demo_auth_token_for_another_resource_is_refused() {
    let h = harness(Profile::Legacy);
    let token = h.access_server.legacy_auth_token(
        "https://other.example",
        &h.agent.public_jwk(),
        DEMO_AGENT,
        "data.read",
        NOW,
    );
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn demo_auth_token_without_sub_or_scope_is_refused() {
    let h = harness(Profile::Legacy);
    let mut claims = h
        .access_server
        .legacy_auth_claims(RESOURCE, &h.agent.public_jwk(), DEMO_AGENT, "", NOW);
    claims.as_object_mut().unwrap().remove("scope");
    let token = h
        .access_server
        .sign_with_alg(engine::typ::LEGACY_AUTH, engine::alg::EDDSA, &claims);
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn demo_auth_token_from_an_untrusted_issuer_is_refused() {
    let h = harness(Profile::Legacy);
    let rogue = TestIssuer::new("https://rogue.example", [9; 32], "as-key-1");
    let token = rogue.legacy_auth_token(RESOURCE, &h.agent.public_jwk(), DEMO_AGENT, "data.read", NOW);
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn expired_demo_auth_token_is_refused() {
    let h = harness(Profile::Legacy);
    let token = h
        .access_server
        .legacy_auth_token(RESOURCE, &h.agent.public_jwk(), DEMO_AGENT, "data.read", NOW - 3600);
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "expired_jwt").await;
}

#[tokio::test]
async fn demo_auth_token_bound_to_another_key_is_refused() {
    let h = harness(Profile::Legacy);
    let thief = TestAgent::from_seed([7; 32]);
    let mut request = get("/data");
    thief.sign_with(
        &mut request,
        &KeySource::Jwt(demo_auth_token(&h)),
        NOW,
        &legacy_options(),
    );
    assert_refused(&h, send(&h, request).await.0, "invalid_signature").await;
}

#[tokio::test]
async fn eddsa_token_signed_by_a_key_the_issuer_does_not_publish_is_refused() {
    let h = harness(Profile::Legacy);
    let forger = TestIssuer::new(AS, [8; 32], "as-key-1");
    let token = forger.legacy_auth_token(RESOURCE, &h.agent.public_jwk(), DEMO_AGENT, "data.read", NOW);
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn resource_token_typ_is_refused_even_under_legacy() {
    let h = harness(Profile::Legacy);
    let claims = h
        .access_server
        .legacy_auth_claims(RESOURCE, &h.agent.public_jwk(), DEMO_AGENT, "data.read", NOW);
    let token = h
        .access_server
        .sign_with_alg(engine::typ::LEGACY_RESOURCE, engine::alg::EDDSA, &claims);
    let request = signed(&h, &KeySource::Jwt(token), &legacy_options());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

// ---- every legacy form is refused under the strict profile ----

#[tokio::test]
async fn strict_refuses_the_demo_signature_key_form_as_invalid_key() {
    for source in [KeySource::Hwk, agent_jwks_uri()] {
        let h = harness(Profile::Draft11);
        let request = signed(&h, &source, &legacy_options());
        assert_refused(&h, send(&h, request).await.0, "invalid_key").await;
    }
}

#[tokio::test]
async fn strict_refuses_jwks_uri_without_dwk_as_invalid_key() {
    let h = harness(Profile::Draft11);
    let mut request = get("/data");
    request.headers_mut().insert(
        "signature-key",
        format!(r#"sig=jwks_uri;id="{AP}";kid="agent-key-1""#).parse().unwrap(),
    );
    sign_keeping_signature_key(&h.agent, &mut request);
    assert_refused(&h, send(&h, request).await.0, "invalid_key").await;
}

#[tokio::test]
async fn strict_refuses_the_demo_auth_token_as_invalid_jwt() {
    let h = harness(Profile::Draft11);
    let request = signed(&h, &KeySource::Jwt(demo_auth_token(&h)), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn strict_refuses_eddsa_on_an_otherwise_draft11_token_as_invalid_jwt() {
    let h = harness(Profile::Draft11);
    let claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let token = h
        .access_server
        .sign_with_alg(engine::typ::AUTH, engine::alg::EDDSA, &claims);
    let request = signed(&h, &KeySource::Jwt(token), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn strict_refuses_a_cnf_jwk_without_alg_as_unsupported_algorithm() {
    let h = harness(Profile::Draft11);
    let mut claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    claims["cnf"]["jwk"].as_object_mut().unwrap().remove("alg");
    let token = h.access_server.sign(engine::typ::AUTH, &claims);
    let request = signed(&h, &KeySource::Jwt(token), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "unsupported_algorithm").await;
}

#[tokio::test]
async fn strict_refuses_legacy_typs_as_invalid_jwt() {
    for typ in [engine::typ::LEGACY_AUTH, engine::typ::LEGACY_AGENT] {
        let h = harness(Profile::Draft11);
        let claims = h
            .access_server
            .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
        let token = h.access_server.sign(typ, &claims);
        let request = signed(&h, &KeySource::Jwt(token), &SignOptions::default());
        assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
    }
}

#[tokio::test]
async fn strict_refuses_an_auth_token_without_ps_as_invalid_jwt() {
    let h = harness(Profile::Draft11);
    let mut claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    claims.as_object_mut().unwrap().remove("ps");
    let token = h.access_server.sign(engine::typ::AUTH, &claims);
    let request = signed(&h, &KeySource::Jwt(token), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn strict_refuses_an_agent_token_without_jti_as_invalid_jwt() {
    let h = harness(Profile::Draft11);
    let token = h.agent_provider.sign(
        engine::typ::AGENT,
        &json!({ "iss": AP, "dwk": engine::dwk::AGENT, "sub": "aauth:a@agent.example",
                 "cnf": { "jwk": h.agent.public_jwk().to_json() }, "iat": NOW, "exp": NOW + 3600 }),
    );
    let request = signed(&h, &KeySource::Jwt(token), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "invalid_jwt").await;
}

#[tokio::test]
async fn strict_refuses_a_signer_key_published_without_alg_as_unsupported_algorithm() {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let mut jwk = agent.public_jwk().to_json();
    jwk.as_object_mut().unwrap().remove("alg");
    let legacy_key = Jwk::from_json(jwk.as_object().unwrap(), AlgPolicy::Legacy).unwrap();
    for (profile, accepted) in [(Profile::Draft11, false), (Profile::Legacy, true)] {
        let resolver = StaticResolver::new().with_key(AP, engine::dwk::AGENT, legacy_key.clone());
        let h = Harness::with(|b| b.key_resolver(resolver).profile(profile));
        let request = signed(&h, &agent_jwks_uri(), &SignOptions::default());
        if accepted {
            let verified = assert_accepted(&h, request).await;
            assert_eq!(verified.generation, Generation::Legacy);
        } else {
            assert_refused(&h, send(&h, request).await.0, "unsupported_algorithm").await;
        }
    }
}

#[tokio::test]
async fn strict_answers_future_created_with_clock_skew() {
    let h = harness(Profile::Draft11);
    let mut request = get("/data");
    h.agent.sign(&mut request, &KeySource::Hwk, NOW + 61);
    assert_refused(&h, send(&h, request).await.0, "clock_skew").await;
}

/// Signs a `GET /data` over the `Signature-Key` already in `request`, for forms
/// `TestAgent` does not produce (it writes its own `Signature-Key`).
fn sign_keeping_signature_key(agent: &TestAgent, request: &mut Request<Body>) {
    let field = request.headers()["signature-key"].clone();
    let base = format!(
        "\"@method\": GET\n\"@authority\": resource.example\n\"@path\": /data\n\"signature-key\": {}\n\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"signature-key\");created={NOW}",
        field.to_str().unwrap()
    );
    let signature = agent.key().sign_bytes(base.as_bytes());
    let headers = request.headers_mut();
    headers.insert(
        "signature-input",
        format!(r#"sig=("@method" "@authority" "@path" "signature-key");created={NOW}"#)
            .parse()
            .unwrap(),
    );
    headers.insert(
        "signature",
        format!("sig=:{}:", tower_aauth::engine::encode_signature(&signature))
            .parse()
            .unwrap(),
    );
}

// ---- demo-generation discovery through the built-in resolver ----

/// Serves fixed documents by URL; anything else is a 404.
struct Documents(Vec<(String, Value)>);

impl tower_aauth::discovery::Fetch for Documents {
    fn get<'a>(
        &'a self,
        url: &'a str,
        _max_bytes: usize,
    ) -> tower_aauth::BoxFuture<'a, Result<tower_aauth::discovery::FetchedDocument, tower_aauth::discovery::FetchError>>
    {
        let found = self.0.iter().find(|(u, _)| u == url).map(|(_, doc)| doc.to_string());
        Box::pin(async move {
            found
                .map(tower_aauth::discovery::FetchedDocument::new)
                .ok_or(tower_aauth::discovery::FetchError::Status(404))
        })
    }
}

/// The demo's agent metadata (`agent`, no `issuer`) and a JWKS entry without `alg`.
fn demo_agent_documents(agent: &TestAgent) -> Documents {
    let mut jwk = agent.public_jwk().to_json();
    jwk.as_object_mut().unwrap().remove("alg");
    Documents(vec![
        (
            format!("{AP}/.well-known/aauth-agent.json"),
            json!({ "agent": AP, "jwks_uri": format!("{AP}/jwks.json") }),
        ),
        (format!("{AP}/jwks.json"), json!({ "keys": [jwk] })),
    ])
}

/// The harness's parties, with the built-in discovery resolver over `documents`
/// instead of pinned keys.
fn fetching_harness(profile: Profile, documents: Documents) -> Harness {
    let pinned = Harness::new();
    let aauth = tower_aauth::AAuth::builder(RESOURCE)
        .clock(pinned.clock.clone())
        .fetcher(documents)
        .auth_server(AS)
        .profile(profile)
        .build()
        .expect("valid configuration");
    Harness { aauth, ..pinned }
}

#[tokio::test]
async fn demo_agent_discovery_resolves_under_legacy() {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let h = fetching_harness(Profile::Legacy, demo_agent_documents(&agent));
    let verified = assert_accepted(&h, signed(&h, &agent_jwks_uri(), &legacy_options())).await;
    assert_eq!(&*verified.key_thumbprint, agent.thumbprint());
    assert_eq!(verified.generation, Generation::Legacy);
}

#[tokio::test]
async fn demo_agent_metadata_without_issuer_is_issuer_missing_under_strict() {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let h = fetching_harness(Profile::Draft11, demo_agent_documents(&agent));
    let request = signed(&h, &agent_jwks_uri(), &SignOptions::default());
    assert_refused(&h, send(&h, request).await.0, "issuer_missing").await;
}

#[tokio::test]
async fn demo_auth_server_keys_are_found_under_aauth_issuer_json_under_legacy() {
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    let documents = Documents(vec![
        (
            format!("{AS}/.well-known/aauth-issuer.json"),
            json!({ "issuer": AS, "jwks_uri": format!("{AS}/jwks.json") }),
        ),
        (format!("{AS}/jwks.json"), access_server.jwks()),
    ]);
    let h = fetching_harness(Profile::Legacy, documents);
    let verified = assert_accepted(&h, signed(&h, &KeySource::Jwt(demo_auth_token(&h)), &legacy_options())).await;
    assert_eq!(verified.token.unwrap().claims.dwk, engine::dwk::LEGACY_ISSUER);
}
