//! The revocation endpoint (AAuth draft -11, "Token Revocation"; digest §7): a trusted
//! server's signed `POST` of `{"jti","exp"}` revokes a token it issued, in the set the
//! layer checks on every request. Every refusal leaves the set untouched and never
//! reaches the application.

mod support;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use serde_json::json;
use support::fixtures::{PS, decode, person_server};
use support::harness::*;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::policy::{PersonId, Revoked};
use tower_aauth::testing::{KeySource, SignOptions, TestAgent};

const PATH: &str = "/aauth/revoke";

/// A resource trusting the access server [`AS`] and the person server [`PS`], whose keys
/// (and the agent provider's) resolve statically, with the endpoint mounted.
fn resource() -> Harness {
    Harness::with(|builder| {
        builder
            .key_resolver(resolver())
            .person_server(PS)
            .revocation_endpoint(PATH)
    })
}

fn resolver() -> StaticResolver {
    let (agent, access, provider, person) = (
        support::fixtures::agent(),
        support::fixtures::access_server(),
        support::fixtures::agent_provider(),
        person_server(),
    );
    StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access.public_jwk())
        .with_key(AP, engine::dwk::AGENT, provider.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent.public_jwk())
        .with_key(PS, engine::dwk::PERSON, person.public_jwk())
}

fn url() -> String {
    format!("{RESOURCE}{PATH}")
}

/// The access server's signed revocation of `jti`.
fn revocation(harness: &Harness, jti: &str, exp: u64) -> Request<Body> {
    harness
        .access_server
        .revocation_request(&url(), engine::dwk::ACCESS, jti, exp, harness.clock_now())
        .map(Body::from)
}

trait Now {
    fn clock_now(&self) -> u64;
}

impl Now for Harness {
    fn clock_now(&self) -> u64 {
        tower_aauth::Clock::now(&self.clock)
    }
}

/// The access server's key as a signer, to build malformed revocations by hand.
fn access_signer() -> (TestAgent, KeySource) {
    let signer = TestAgent::from_seed([2; 32]).with_kid("as-key-1");
    let source = KeySource::JwksUri {
        id: AS.to_owned(),
        dwk: engine::dwk::ACCESS.to_owned(),
        kid: "as-key-1".to_owned(),
    };
    (signer, source)
}

/// A revocation signed by the access server with `body` as it is, `content_type` when
/// given, covering `content-type` and `content-digest`.
fn raw(body: &[u8], content_type: Option<&str>) -> Request<Body> {
    let (signer, source) = access_signer();
    let mut builder = Request::post(url());
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let mut request = builder.body(Body::from(body.to_vec())).unwrap();
    signer.sign_with_body(&mut request, body, &source, NOW);
    request
}

/// The auth token the harness agent presents, and its `jti` and `exp`.
fn auth_token(harness: &Harness) -> (KeySource, String, u64) {
    let token = harness.auth_token("data.read");
    let (_, claims) = decode(&token);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let exp = claims["exp"].as_u64().unwrap();
    (KeySource::Jwt(token), jti, exp)
}

fn agent_request(harness: &Harness, source: &KeySource) -> Request<Body> {
    let mut request = get("/data");
    harness.agent.sign(&mut request, source, NOW);
    request
}

fn revoked_jti(harness: &Harness, issuer: &str, jti: &str) -> bool {
    harness.aauth.revocations().snapshot().contains(&Revoked::Jti {
        issuer: issuer.to_owned(),
        jti: jti.to_owned(),
    })
}

/// Asserts a body error: `status`, the problem's `error` `code`, no `Signature-Error`,
/// the application not called and nothing revoked.
async fn assert_body_error(case: &str, harness: &Harness, response: Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "{case}");
    assert!(response.headers().get("signature-error").is_none(), "{case}");
    assert_eq!(response.headers()["content-type"], "application/problem+json", "{case}");
    let body = body_json(response).await;
    assert_eq!(body["error"], code, "{case}");
    assert_eq!(harness.calls(), 0, "{case}: the application must not run");
    assert!(
        harness.aauth.revocations().snapshot().is_empty(),
        "{case}: nothing revoked"
    );
}

#[tokio::test]
async fn an_access_server_revokes_its_auth_token_and_the_layer_refuses_it_from_then_on() {
    let harness = resource();
    let (token, jti, exp) = auth_token(&harness);
    let before = harness.send(agent_request(&harness, &token)).await;
    assert_eq!(before.status(), StatusCode::OK);
    let calls = harness.calls();

    let response = harness.send(revocation(&harness, &jti, exp)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    assert!(bytes.is_empty(), "200 with an empty body");
    assert_eq!(harness.calls(), calls, "the endpoint is answered by the layer");
    assert!(revoked_jti(&harness, AS, &jti));

    // The token is cached from the first request: revocation is still checked.
    let mut again = get("/data");
    harness.agent.sign(&mut again, &token, NOW + 1);
    let refused = harness.send(again).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["signature-error"], "error=revoked_jwt");
    assert_eq!(refused.headers()["aauth-requirement"], "requirement=person-token");
    assert_eq!(
        harness.calls(),
        calls,
        "the revoked token never reaches the application"
    );
}

#[tokio::test]
async fn a_person_server_revokes_its_person_token() {
    let harness = resource();
    let person = person_server();
    let token = person.person_token(RESOURCE, &harness.agent.public_jwk(), NOW);
    let (_, claims) = decode(&token);
    let jti = claims["jti"].as_str().unwrap();
    let revocation = person
        .revocation_request(&url(), engine::dwk::PERSON, jti, NOW + 3600, NOW)
        .map(Body::from);
    assert_eq!(harness.send(revocation).await.status(), StatusCode::OK);

    let response = harness.send(agent_request(&harness, &KeySource::Jwt(token))).await;
    assert_refused(&harness, response, "revoked_jwt").await;
}

#[tokio::test]
async fn an_unknown_token_is_answered_200_as_a_known_one_is() {
    let harness = resource();
    let response = harness.send(revocation(&harness, "never-seen", NOW + 600)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(revoked_jti(&harness, AS, "never-seen"), "remembered until its exp");
}

#[tokio::test]
async fn a_caller_revokes_only_its_own_tokens() {
    // The access server names the jti of the person server's token: the entry is the
    // access server's, and the person server's token stays valid.
    let harness = resource();
    let person = person_server();
    let token = person.person_token(RESOURCE, &harness.agent.public_jwk(), NOW);
    let (_, claims) = decode(&token);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(
        harness.send(revocation(&harness, jti, NOW + 3600)).await.status(),
        StatusCode::OK
    );
    assert!(revoked_jti(&harness, AS, jti));
    assert!(!revoked_jti(&harness, PS, jti));
    let response = harness.send(agent_request(&harness, &KeySource::Jwt(token))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_issuer_is_never_read_from_the_body() {
    let harness = resource();
    let body = json!({ "iss": PS, "jti": "pt-1", "exp": NOW + 60 }).to_string();
    let response = harness.send(raw(body.as_bytes(), Some("application/json"))).await;
    assert_body_error(
        "iss member",
        &harness,
        response,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn a_token_already_expired_is_answered_200_and_not_remembered() {
    let harness = resource();
    let response = harness.send(revocation(&harness, "old", NOW - 3600)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(harness.aauth.revocations().snapshot().is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_invalid_request_and_change_nothing() {
    let long_jti = "j".repeat(1025);
    let far = NOW + 3600 + 60 + 1;
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("not JSON", b"jti=1&exp=2".to_vec(), Some("application/json")),
        ("empty", Vec::new(), Some("application/json")),
        (
            "an array",
            br#"[{"jti":"a","exp":1}]"#.to_vec(),
            Some("application/json"),
        ),
        ("no exp", br#"{"jti":"a"}"#.to_vec(), Some("application/json")),
        (
            "no jti",
            format!(r#"{{"exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "exp a string",
            br#"{"jti":"a","exp":"1730217700"}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "exp negative",
            br#"{"jti":"a","exp":-1}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "exp a fraction",
            br#"{"jti":"a","exp":1730217700.5}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "jti empty",
            format!(r#"{{"jti":"","exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "jti a number",
            format!(r#"{{"jti":7,"exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "jti with a control character",
            format!(r#"{{"jti":"a\u0000","exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "jti too long",
            format!(r#"{{"jti":"{long_jti}","exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "an unknown member",
            format!(r#"{{"jti":"a","exp":{NOW},"x":1}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "a duplicate member",
            format!(r#"{{"jti":"a","jti":"b","exp":{NOW}}}"#).into_bytes(),
            Some("application/json"),
        ),
        (
            "deep nesting",
            format!(
                r#"{{"jti":"a","exp":{NOW},"x":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )
            .into_bytes(),
            Some("application/json"),
        ),
        (
            "not UTF-8",
            b"{\"jti\":\"\xff\",\"exp\":1}".to_vec(),
            Some("application/json"),
        ),
        (
            "text/plain",
            format!(r#"{{"jti":"a","exp":{NOW}}}"#).into_bytes(),
            Some("text/plain"),
        ),
        (
            "exp beyond any accepted lifetime",
            format!(r#"{{"jti":"a","exp":{far}}}"#).into_bytes(),
            Some("application/json"),
        ),
    ];
    for (case, body, content_type) in cases {
        let harness = resource();
        let response = harness.send(raw(&body, content_type)).await;
        assert_body_error(case, &harness, response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_body_above_the_cap_is_413_before_it_is_read() {
    let harness = resource();
    let body = format!(r#"{{"jti":"{}","exp":{NOW}}}"#, "j".repeat(9000));
    let response = harness.send(raw(body.as_bytes(), Some("application/json"))).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(harness.calls(), 0);
    assert!(harness.aauth.revocations().snapshot().is_empty());
}

#[tokio::test]
async fn a_caller_that_is_not_a_trusted_server_is_unsupported_iss() {
    // The agent provider signs as a server (jwks_uri) but issues no person or auth token
    // this resource accepts.
    let harness = resource();
    let provider = support::fixtures::agent_provider();
    let request = provider
        .revocation_request(&url(), engine::dwk::AGENT, "at-1", NOW + 60, NOW)
        .map(Body::from);
    let response = harness.send(request).await;
    assert_body_error(
        "agent provider",
        &harness,
        response,
        StatusCode::FORBIDDEN,
        "unsupported_iss",
    )
    .await;
}

#[tokio::test]
async fn signatures_that_are_not_a_servers_are_refused_with_signature_error() {
    let body = json!({ "jti": "at-1", "exp": NOW + 60 }).to_string();
    let harness = resource();
    let (token, _, _) = auth_token(&harness);
    let cases: Vec<(&str, Option<KeySource>, &str)> = vec![
        ("unsigned", None, "unsupported_scheme"),
        ("hwk", Some(KeySource::Hwk), "unsupported_scheme"),
        ("an auth token", Some(token), "unsupported_scheme"),
    ];
    for (case, source, code) in cases {
        let harness = resource();
        let mut request = Request::post(url())
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        if let Some(source) = &source {
            harness.agent.sign_with_body(&mut request, body.as_bytes(), source, NOW);
        }
        let response = harness.send(request).await;
        if code == "unsupported_scheme" {
            assert_eq!(response.headers()["accept-signature-scheme"], "jwks_uri", "{case}");
        }
        assert_refused_case(case, &harness, response, code).await;
        assert!(harness.aauth.revocations().snapshot().is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_revocation_must_cover_content_type_and_content_digest() {
    let body = json!({ "jti": "at-1", "exp": NOW + 60 }).to_string();
    let (signer, source) = access_signer();
    // Covering neither, or only the digest (no Content-Type header to cover).
    let mut neither = Request::post(url())
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    signer.sign(&mut neither, &source, NOW);
    let mut digest_only = Request::post(url()).body(Body::from(body.clone())).unwrap();
    signer.sign_with_body(&mut digest_only, body.as_bytes(), &source, NOW);
    for (case, request) in [("neither", neither), ("digest only", digest_only)] {
        let harness = resource();
        let response = harness.send(request).await;
        let problem = assert_refused_case(case, &harness, response, "invalid_input").await;
        let required = problem["required_input"].as_array().unwrap();
        assert!(
            required.contains(&json!("content-type")) && required.contains(&json!("content-digest")),
            "{case}"
        );
        assert!(harness.aauth.revocations().snapshot().is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_match_its_digest_is_refused() {
    let harness = resource();
    let (signer, source) = access_signer();
    let signed = json!({ "jti": "at-1", "exp": NOW + 60 }).to_string();
    let sent = json!({ "jti": "at-2", "exp": NOW + 60 }).to_string();
    let mut request = Request::post(url())
        .header("content-type", "application/json")
        .body(Body::from(sent))
        .unwrap();
    signer.sign_body_with(&mut request, signed.as_bytes(), &source, NOW, SignOptions::default());
    let response = harness.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("signature-error"));
    assert_eq!(harness.calls(), 0);
    assert!(harness.aauth.revocations().snapshot().is_empty());
}

#[tokio::test]
async fn a_caller_beyond_its_rate_is_429_with_retry_after_and_nothing_is_revoked() {
    let harness = resource();
    for i in 0..100 {
        let response = harness.send(revocation(&harness, &format!("at-{i}"), NOW + 600)).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i} of the burst");
    }
    let response = harness.send(revocation(&harness, "one-too-many", NOW + 600)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(body_json(response).await["error"], "rate_limited");
    assert!(!revoked_jti(&harness, AS, "one-too-many"));
    assert_eq!(harness.aauth.revocations().snapshot().len(), 100);

    // Another caller has its own allowance; a second later the first may send again.
    let person = person_server();
    let other = person
        .revocation_request(&url(), engine::dwk::PERSON, "pt-1", NOW + 600, NOW)
        .map(Body::from);
    assert_eq!(harness.send(other).await.status(), StatusCode::OK);
    harness.clock.advance(1);
    let response = harness.send(revocation(&harness, "after-a-second", NOW + 600)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_callers_live_entries_are_bounded_in_bytes() {
    let harness = resource();
    let exp = NOW + 3600;
    let mut accepted = 0usize;
    let refused = loop {
        // A request per second keeps the rate limiter out of the way.
        harness.clock.advance(1);
        let jti = format!("{accepted:04}{}", "j".repeat(1000));
        let response = harness.send(revocation(&harness, &jti, exp)).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        accepted += 1;
        assert!(accepted < 2000, "the budget never filled");
    };
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    // 1 MiB at about 1 100 bytes an entry.
    assert!((900..=1000).contains(&accepted), "{accepted} entries");
    assert_eq!(harness.aauth.revocations().snapshot().len(), accepted);
    // Another caller is not affected.
    let person = person_server();
    let other = person
        .revocation_request(&url(), engine::dwk::PERSON, "pt-1", exp, harness.clock_now())
        .map(Body::from);
    assert_eq!(harness.send(other).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn entries_lapse_after_exp_and_skew_and_are_pruned_by_the_next_write() {
    let harness = resource();
    assert_eq!(
        harness.send(revocation(&harness, "short", NOW + 10)).await.status(),
        StatusCode::OK
    );
    // An operator's entry without exp is never pruned.
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Person(PersonId::new(PS, "person-1")))
        .unwrap();
    harness.clock.advance(10 + 60);
    assert_eq!(
        harness.send(revocation(&harness, "next", NOW + 600)).await.status(),
        StatusCode::OK
    );
    assert!(revoked_jti(&harness, AS, "short"), "exp + skew not yet passed");
    harness.clock.advance(1);
    assert_eq!(
        harness.send(revocation(&harness, "later", NOW + 600)).await.status(),
        StatusCode::OK
    );
    assert!(!revoked_jti(&harness, AS, "short"), "lapsed: pruned");
    assert!(revoked_jti(&harness, AS, "next") && revoked_jti(&harness, AS, "later"));
    assert!(
        harness
            .aauth
            .revocations()
            .snapshot()
            .contains(&Revoked::Person(PersonId::new(PS, "person-1")))
    );
}

#[tokio::test]
async fn a_replayed_revocation_is_refused() {
    let harness = resource();
    let request = harness
        .access_server
        .revocation_request(&url(), engine::dwk::ACCESS, "at-1", NOW + 60, NOW);
    let copy = request.clone().map(Body::from);
    assert_eq!(harness.send(request.map(Body::from)).await.status(), StatusCode::OK);
    let response = harness.send(copy).await;
    assert_refused(&harness, response, "invalid_signature").await;
}

#[tokio::test]
async fn only_post_is_served() {
    let harness = resource();
    let mut request = get(PATH);
    let (signer, source) = access_signer();
    signer.sign(&mut request, &source, NOW);
    let response = harness.send(request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn a_default_requirement_does_not_apply_to_the_endpoint() {
    let harness = Harness::with(|builder| {
        builder
            .key_resolver(resolver())
            .revocation_endpoint(PATH)
            .default_requirement(tower_aauth::guard::Requirement::Person)
    });
    let response = harness.send(revocation(&harness, "at-1", NOW + 60)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_metadata_advertises_the_endpoint_only_when_mounted() {
    let mounted = resource();
    assert_eq!(
        mounted.aauth.metadata()["revocation_endpoint"],
        format!("{RESOURCE}{PATH}")
    );
    let plain = Harness::new();
    assert!(plain.aauth.metadata().get("revocation_endpoint").is_none());
    // Without the endpoint the path is the application's.
    let mut request = revocation(&plain, "at-1", NOW + 60);
    *request.uri_mut() = url().parse().unwrap();
    let response = plain.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(plain.calls(), 1);
}

#[test]
fn endpoint_paths_are_checked_at_build() {
    for bad in ["revoke", "/a/../b", "/.well-known/jwks.json", "/aauth/pending/x"] {
        let error = tower_aauth::AAuth::builder(RESOURCE)
            .key_resolver(StaticResolver::new())
            .auth_server(AS)
            .revocation_endpoint(bad)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("endpoint path"), "{bad}: {error}");
    }
    let same = tower_aauth::AAuth::builder(RESOURCE)
        .key_resolver(StaticResolver::new())
        .auth_server(AS)
        .revocation_endpoint("/aauth/x")
        .authorization_endpoint("/aauth/x", |_, _| tower_aauth::policy::AccountDecision::NotHeld)
        .build();
    assert!(same.is_err());
}

#[tokio::test]
async fn the_test_kits_auth_server_signs_revocations_the_endpoint_accepts() {
    let server = tower_aauth::testing::TestAuthServer::builder(AS)
        .clock(std::sync::Arc::new(tower_aauth::testing::ManualClock::new(NOW)))
        .build()
        .unwrap();
    let harness = Harness::with(|builder| {
        builder
            .key_resolver(StaticResolver::new().with_key(AS, engine::dwk::ACCESS, server.public_jwk()))
            .revocation_endpoint(PATH)
    });
    let response = harness
        .send(server.revocation_request(&url(), "at-kit", NOW + 60).map(Body::from))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(revoked_jti(&harness, AS, "at-kit"));
}

#[tokio::test]
async fn an_entry_is_enforced_until_its_exp_plus_skew_and_not_after() {
    // The caller says when its token expires; the entry lapses then (a token that lives
    // longer than its issuer said is its issuer's mistake).
    let harness = resource();
    let (token, jti, _) = auth_token(&harness);
    assert_eq!(
        harness.send(revocation(&harness, &jti, NOW + 10)).await.status(),
        StatusCode::OK
    );
    let at = |harness: &Harness, seconds: u64| {
        harness.clock.set(NOW + seconds);
        let mut request = get(&format!("/data?at={seconds}"));
        harness.agent.sign(&mut request, &token, NOW + seconds);
        request
    };
    let response = harness.send(at(&harness, 70)).await;
    assert_eq!(response.headers()["signature-error"], "error=revoked_jwt", "exp + skew");
    let response = harness.send(at(&harness, 71)).await;
    assert_eq!(response.status(), StatusCode::OK, "lapsed");
}

#[test]
fn an_endpoint_that_could_answer_nobody_is_a_configuration_error() {
    use tower_aauth::policy::AccountDecision;
    use tower_aauth::{AAuth, Scheme, TokenKind};
    let base = || AAuth::builder(RESOURCE).key_resolver(StaticResolver::new());
    let cases = [
        ("revocations, no trusted server", base().revocation_endpoint(PATH)),
        (
            "revocations, no jwks_uri",
            base()
                .auth_server(AS)
                .accept_schemes([Scheme::Jwt, Scheme::Hwk])
                .revocation_endpoint(PATH),
        ),
        (
            "authorization, no trusted server",
            base().authorization_endpoint("/authorize", |_, _| AccountDecision::NotHeld),
        ),
        (
            "authorization, no person tokens",
            base()
                .person_server(PS)
                .accept_tokens([TokenKind::Agent, TokenKind::Auth])
                .authorization_endpoint("/authorize", |_, _| AccountDecision::NotHeld),
        ),
    ];
    for (case, builder) in cases {
        let error = builder.build().unwrap_err().to_string();
        assert!(error.contains("endpoint is mounted"), "{case}: {error}");
    }
}

mod garbage {
    //! Any body a trusted caller signs is answered without a 5xx, and only a well-formed
    //! one changes the set.

    use proptest::prelude::any;
    use proptest::prelude::*;

    use super::*;

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            "[ -~]{0,64}".prop_map(String::into_bytes),
            (any::<Option<String>>(), any::<i64>(), any::<bool>()).prop_map(|(jti, exp, extra)| {
                let mut object = serde_json::Map::new();
                if let Some(jti) = jti {
                    object.insert("jti".into(), jti.into());
                }
                object.insert("exp".into(), exp.into());
                if extra {
                    object.insert("iss".into(), AS.into());
                }
                serde_json::Value::Object(object).to_string().into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_signed_body_of_any_bytes_is_never_a_server_error(body in body()) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let harness = resource();
            let response = rt.block_on(harness.send(raw(&body, Some("application/json"))));
            let status = response.status();
            prop_assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
            prop_assert_eq!(harness.calls(), 0);
            let changed = !harness.aauth.revocations().snapshot().is_empty();
            prop_assert!(!changed || status == StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn an_impostor_naming_a_trusted_server_fails_its_signature() {
    let harness = resource();
    let impostor = TestAgent::from_seed([66; 32]).with_kid("as-key-1");
    let (_, source) = access_signer();
    let body = json!({ "jti": "at-1", "exp": NOW + 60 }).to_string();
    let mut request = Request::post(url())
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    impostor.sign_with_body(&mut request, body.as_bytes(), &source, NOW);
    let response = harness.send(request).await;
    assert_refused(&harness, response, "invalid_signature").await;
    assert!(harness.aauth.revocations().snapshot().is_empty());
}

#[tokio::test]
async fn a_person_server_accepted_only_by_accept_any_is_unsupported_iss() {
    // Under accept_any_person_server() every server on the web is a person server; only
    // the servers the resource names may revoke, so strangers cannot grow the set.
    use support::policy::{SELF_PS, self_hosted_ps};
    let stranger = self_hosted_ps();
    let harness = Harness::with(|builder| {
        builder
            .key_resolver(resolver().with_key(SELF_PS, engine::dwk::PERSON, stranger.public_jwk()))
            .person_server(PS)
            .accept_any_person_server()
            .revocation_endpoint(PATH)
    });
    let request = stranger
        .revocation_request(&url(), engine::dwk::PERSON, "at-1", NOW + 60, NOW)
        .map(Body::from);
    let response = harness.send(request).await;
    assert_body_error("stranger", &harness, response, StatusCode::FORBIDDEN, "unsupported_iss").await;
}

#[test]
fn a_revocation_endpoint_with_no_named_server_is_a_configuration_error() {
    let refused = tower_aauth::AAuth::builder(RESOURCE)
        .accept_any_person_server()
        .revocation_endpoint(PATH)
        .build()
        .unwrap_err();
    assert!(refused.to_string().contains("named"), "{refused}");
}

#[tokio::test]
async fn a_second_revocation_with_a_later_exp_keeps_the_entry_until_the_later_one() {
    let harness = resource();
    let (token, jti, _) = auth_token(&harness);
    for exp in [NOW + 10, NOW + 600] {
        assert_eq!(
            harness.send(revocation(&harness, &jti, exp)).await.status(),
            StatusCode::OK
        );
    }
    let at = |harness: &Harness, seconds: u64| {
        harness.clock.set(NOW + seconds);
        let mut request = get(&format!("/data?at={seconds}"));
        harness.agent.sign(&mut request, &token, NOW + seconds);
        request
    };
    // Past the first exp + skew, the entry still holds: it lives to the later exp.
    let response = harness.send(at(&harness, 71)).await;
    assert_eq!(response.headers()["signature-error"], "error=revoked_jwt");
}
