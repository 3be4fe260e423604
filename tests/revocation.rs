//! Revocation (digest §7, CLM-10) and per-agent scope ceilings, checked on every request.

mod support;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, Response, StatusCode};
use support::harness::*;
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::policy::{AgentId, CeilingSet, PersonId, RevocationSet, Revoked, ScopeCeilings};
use tower_aauth::testing::{KeySource, TestIssuer};
use tower_aauth::wire;

const AGENT_ID: &str = "aauth:assistant@agent.example";
const PS: &str = "https://ps.example";

fn agent(id: &str) -> AgentId {
    id.parse().unwrap()
}

fn signed(harness: &Harness, method: &str, path: &str, source: &KeySource, created: u64) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{RESOURCE}{path}"))
        .body(Body::empty())
        .unwrap();
    harness.agent.sign(&mut request, source, created);
    request
}

fn agent_token(harness: &Harness) -> KeySource {
    KeySource::Jwt(
        harness
            .agent_provider
            .agent_token(AGENT_ID, &harness.agent.public_jwk(), NOW),
    )
}

fn auth_token(harness: &Harness) -> KeySource {
    KeySource::Jwt(harness.auth_token("data.read data.write"))
}

/// The at-… jti TestIssuer::auth_claims gives the harness agent.
fn auth_jti(harness: &Harness) -> String {
    let claims = harness
        .access_server
        .auth_claims(RESOURCE, &harness.agent.public_jwk(), "data.read", NOW);
    claims["jti"].as_str().unwrap().to_owned()
}

async fn assert_revoked(harness: &Harness, response: Response<Body>, person_token: bool) {
    let requirement = response
        .headers()
        .get(wire::AAUTH_REQUIREMENT)
        .map(|v| v.to_str().unwrap().to_owned());
    if person_token {
        assert_eq!(requirement.as_deref(), Some("requirement=person-token"));
    } else {
        assert_eq!(requirement, None, "no challenge for a revoked agent or key");
    }
    assert_refused(harness, response, "revoked_jwt").await;
}

#[tokio::test]
async fn a_revoked_agent_identifier_is_refused_under_the_jwt_scheme() {
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Agent(agent(AGENT_ID)))
        .unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &agent_token(&harness), NOW))
        .await;
    assert_revoked(&harness, response, false).await;
}

#[tokio::test]
async fn a_revoked_agent_identifier_is_refused_under_the_jwks_uri_scheme() {
    let harness = Harness::new();
    harness.aauth.revocations().revoke(Revoked::Agent(agent(AP))).unwrap();
    let source = KeySource::agent_jwks(AP, "agent-key-1");
    let response = harness.send(signed(&harness, "GET", "/data", &source, NOW)).await;
    assert_revoked(&harness, response, false).await;
}

#[tokio::test]
async fn a_revoked_key_thumbprint_is_refused_under_every_scheme() {
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::KeyThumbprint(harness.agent.thumbprint()))
        .unwrap();
    for source in [KeySource::Hwk, agent_token(&harness), auth_token(&harness)] {
        let response = harness.send(signed(&harness, "GET", "/data", &source, NOW)).await;
        assert_revoked(&harness, response, false).await;
    }
}

#[tokio::test]
async fn a_revoked_auth_token_jti_is_refused_and_asks_for_a_person_token() {
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Jti {
            issuer: AS.into(),
            jti: auth_jti(&harness),
        })
        .unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &auth_token(&harness), NOW))
        .await;
    assert_revoked(&harness, response, true).await;
}

#[tokio::test]
async fn a_jti_revoked_for_another_issuer_does_not_match() {
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Jti {
            issuer: "https://other-as.example".into(),
            jti: auth_jti(&harness),
        })
        .unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &auth_token(&harness), NOW))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_subject_refuses_its_auth_tokens_and_asks_for_a_person_token() {
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Person(PersonId::new(AS, "user-1")))
        .unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &auth_token(&harness), NOW))
        .await;
    assert_revoked(&harness, response, true).await;
}

#[tokio::test]
async fn a_revoked_subject_refuses_its_person_tokens_without_a_challenge() {
    let person_server = TestIssuer::new(PS, [9; 32], "ps-key-1");
    let ps_key = person_server.public_jwk();
    let harness = Harness::with(move |b| {
        let resolver = StaticResolver::new().with_key(PS, engine::dwk::PERSON, ps_key);
        b.key_resolver(resolver).person_server(PS)
    });
    let token = person_server.person_token(RESOURCE, &harness.agent.public_jwk(), NOW);
    let source = KeySource::Jwt(token);
    assert_eq!(
        harness
            .send(signed(&harness, "GET", "/data", &source, NOW))
            .await
            .status(),
        StatusCode::OK
    );
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Person(PersonId::new(PS, "person-1")))
        .unwrap();
    let response = harness.send(signed(&harness, "GET", "/data", &source, NOW + 1)).await;
    assert_revoked(&harness, response, false).await;
}

#[tokio::test]
async fn an_agent_token_sub_is_not_a_subject() {
    // Persons are people; agents are revoked as agents.
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Person(PersonId::new(AP, AGENT_ID)))
        .unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &agent_token(&harness), NOW))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn revocation_applies_to_a_token_already_in_the_verified_cache() {
    let harness = Harness::new();
    let source = auth_token(&harness);
    assert_eq!(
        harness
            .send(signed(&harness, "GET", "/data", &source, NOW))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(harness.aauth.cached_tokens(), 1);
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    harness
        .aauth
        .revocations()
        .revoke(Revoked::Jti {
            issuer: AS.into(),
            jti: auth_jti(&harness),
        })
        .unwrap();
    let response = harness.send(signed(&harness, "GET", "/data", &source, NOW + 1)).await;
    assert_revoked(&harness, response, true).await;
}

#[tokio::test]
async fn a_reload_takes_effect_on_the_next_request_without_a_restart() {
    let harness = Harness::new();
    let revocations = harness.aauth.revocations().clone();
    let document = format!(r#"{{"key_thumbprints": ["{}"]}}"#, harness.agent.thumbprint());
    assert_eq!(revocations.reload_json(document.as_bytes()).unwrap(), 1);
    let response = harness
        .send(signed(&harness, "GET", "/data", &KeySource::Hwk, NOW))
        .await;
    assert_revoked(&harness, response, false).await;
    // Emptied: served again.
    revocations.reload_json(b"{}").unwrap();
    let response = harness
        .send(signed(&harness, "GET", "/data", &KeySource::Hwk, NOW))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_reload_keeps_the_current_set_in_force() {
    let harness = Harness::new();
    let revocations = harness.aauth.revocations();
    revocations
        .revoke(Revoked::KeyThumbprint(harness.agent.thumbprint()))
        .unwrap();
    let error = revocations
        .reload_json(br#"{"key_thumbprints": ["not-a-thumbprint"]}"#)
        .unwrap_err();
    assert!(error.to_string().contains("key_thumbprints[0]"), "{error}");
    assert_eq!(revocations.snapshot().len(), 1);
    let response = harness
        .send(signed(&harness, "GET", "/data", &KeySource::Hwk, NOW))
        .await;
    assert_revoked(&harness, response, false).await;
}

#[test]
fn malformed_revocation_documents_are_errors_naming_the_entry() {
    let cases: [(&str, &str); 11] = [
        (r#"{"agent": ["x"]}"#, "unknown field"),
        (r#"{"agents": "x"}"#, "invalid type"),
        (r#"{"agents": [""]}"#, "agents[0]"),
        (r#"{"agents": ["aauth:ok@agent.example", "bad\u0000"]}"#, "agents[1]"),
        (r#"{"jtis": [{"iss": "as.example", "jti": "1"}]}"#, "jtis[0]"),
        (r#"{"jtis": [{"iss": "https://as.example"}]}"#, "missing field"),
        (
            r#"{"jtis": [{"iss": "https://as.example", "jti": "1", "nbf": 1}]}"#,
            "unknown field",
        ),
        (r#"{"persons": [], "persons": []}"#, "duplicate field"),
        (r#"{"subjects": ["a"]}"#, "unknown field"),
        (r#"{"persons": [{"iss": "ps.example", "sub": "a"}]}"#, "persons[0]"),
        (r#"["agents"]"#, "invalid type"),
    ];
    for (document, expected) in cases {
        let error = RevocationSet::from_json(document.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(expected), "{document}: {error}");
    }
    let too_long = format!(
        r#"{{"persons": [{{"iss": "https://ps.example", "sub": "{}"}}]}}"#,
        "x".repeat(1025)
    );
    assert!(RevocationSet::from_json(too_long.as_bytes()).is_err());
}

#[test]
fn a_jti_entry_may_carry_the_tokens_exp_and_a_malformed_one_is_an_error() {
    let set = RevocationSet::from_json(br#"{"jtis": [{"iss": "https://as.example", "jti": "1", "exp": 1788727813}]}"#)
        .unwrap();
    assert!(set.contains(&Revoked::Jti {
        issuer: "https://as.example".to_owned(),
        jti: "1".to_owned(),
    }));
    for exp in [r#""1788727813""#, "-1", "1.5", "null"] {
        let document = format!(r#"{{"jtis": [{{"iss": "https://as.example", "jti": "1", "exp": {exp}}}]}}"#);
        assert!(RevocationSet::from_json(document.as_bytes()).is_err(), "{exp}");
    }
}

#[test]
fn a_well_formed_document_loads_every_kind() {
    let set = RevocationSet::from_json(
        br#"{"agents": ["aauth:a@agent.example"],
             "key_thumbprints": ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"],
             "jtis": [{"iss": "https://as.example", "jti": "at-1"}],
             "persons": [{"iss": "https://ps.example", "sub": "8f14e45f"}]}"#,
    )
    .unwrap();
    assert_eq!(set.len(), 4);
    assert!(set.contains(&Revoked::Jti {
        issuer: "https://as.example".into(),
        jti: "at-1".into()
    }));
    assert!(set.contains(&Revoked::Agent(agent("aauth:a@agent.example"))));
}

#[tokio::test]
async fn a_malformed_revoke_call_is_an_error_and_changes_nothing() {
    let harness = Harness::new();
    let revocations = harness.aauth.revocations();
    assert!(revocations.revoke(Revoked::KeyThumbprint("short".into())).is_err());
    assert!("".parse::<AgentId>().is_err());
    assert!(
        revocations
            .revoke(Revoked::Person(PersonId::new("ps.example", "p")))
            .is_err()
    );
    assert!(revocations.snapshot().is_empty());
}

#[tokio::test]
async fn a_refused_revoked_request_does_not_consume_its_replay_slot() {
    let harness = Harness::new();
    let revoked = Revoked::KeyThumbprint(harness.agent.thumbprint());
    harness.aauth.revocations().revoke(revoked.clone()).unwrap();
    let request = signed(&harness, "POST", "/orders", &KeySource::Hwk, NOW);
    let mut again = Request::post(format!("{RESOURCE}/orders")).body(Body::empty()).unwrap();
    *again.headers_mut() = request.headers().clone();
    assert_revoked(&harness, harness.send(request).await, false).await;
    assert!(harness.aauth.revocations().unrevoke(&revoked));
    assert_eq!(harness.send(again).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_scope_above_the_agent_ceiling_is_forbidden_even_when_granted() {
    let ceilings = ScopeCeilings::from_set(CeilingSet::new().agent(agent(AGENT_ID), "data.read").unwrap());
    let harness = Harness::with(move |b| b.scope_ceilings(ceilings));
    let request = signed(&harness, "POST", "/data", &agent_token(&harness), NOW);
    let response = harness.ceiling_write_route().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(body_json(response).await["error"], "scope_above_ceiling");
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn a_raised_ceiling_is_hot_reloaded() {
    let ceilings = ScopeCeilings::from_set(CeilingSet::new().agent(agent(AGENT_ID), "data.read").unwrap());
    let handle = ceilings.clone();
    let harness = Harness::with(move |b| b.scope_ceilings(ceilings));
    let forbidden = signed(&harness, "POST", "/data", &agent_token(&harness), NOW);
    assert_eq!(
        harness.ceiling_write_route().oneshot(forbidden).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    handle
        .reload_json(format!(r#"{{"agents": {{"{AGENT_ID}": "data.read data.write"}}}}"#).as_bytes())
        .unwrap();
    let allowed = signed(&harness, "POST", "/data", &agent_token(&harness), NOW + 1);
    assert_eq!(
        harness.ceiling_write_route().oneshot(allowed).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn key_and_agent_ceilings_must_both_permit() {
    let harness = Harness::new();
    let thumbprint = harness.agent.thumbprint();
    let set = CeilingSet::new()
        .agent(agent(AGENT_ID), "data.read data.write")
        .unwrap()
        .key(thumbprint, "data.read")
        .unwrap();
    harness.aauth.scope_ceilings().replace(set);
    let request = signed(&harness, "POST", "/data", &agent_token(&harness), NOW);
    assert_eq!(
        harness.ceiling_write_route().oneshot(request).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_default_ceiling_applies_to_unlisted_agents_only() {
    let harness = Harness::new();
    harness.aauth.scope_ceilings().replace(
        CeilingSet::new()
            .default_ceiling("data.read")
            .unwrap()
            .agent(agent("aauth:other@agent.example"), "data.write")
            .unwrap(),
    );
    let hwk = signed(&harness, "POST", "/data", &KeySource::Hwk, NOW);
    assert_eq!(
        harness.ceiling_write_route().oneshot(hwk).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    harness.aauth.scope_ceilings().replace(
        CeilingSet::new()
            .default_ceiling("data.read")
            .unwrap()
            .agent(agent(AGENT_ID), "data.write")
            .unwrap(),
    );
    let listed = signed(&harness, "POST", "/data", &agent_token(&harness), NOW);
    assert_eq!(
        harness.ceiling_write_route().oneshot(listed).await.unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn malformed_ceiling_documents_are_errors() {
    for (document, expected) in [
        (r#"{"agents": {"a": "bad  scope"}}"#, "agents[0]"),
        (r#"{"agents": {"": "x"}}"#, "agents[0]"),
        (r#"{"key_thumbprints": {"short": "x"}}"#, "key_thumbprints[0]"),
        (r#"{"default": "a\"b"}"#, "default"),
        (r#"{"ceiling": {}}"#, "unknown field"),
        (r#"{"agents": ["x"]}"#, "invalid type"),
    ] {
        let error = CeilingSet::from_json(document.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(expected), "{document}: {error}");
    }
}

/// `require_scopes(["data.write"])` from the authorization guards, with a ceiling.
fn guarded_write(harness: &Harness) -> Router {
    let calls = harness.calls.clone();
    Router::new()
        .route(
            "/data",
            post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "written"
                }
            })
            .route_layer(harness.aauth.require_scopes(["data.write"])),
        )
        .layer(harness.aauth.layer())
}

#[tokio::test]
async fn require_scopes_denies_a_granted_scope_above_the_key_ceiling() {
    let harness = Harness::new();
    harness
        .aauth
        .scope_ceilings()
        .replace(CeilingSet::new().key(harness.agent.thumbprint(), "data.read").unwrap());
    let request = signed(&harness, "POST", "/data", &auth_token(&harness), NOW);
    let response = guarded_write(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(body_json(response).await["error"], "scope_above_ceiling");
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn require_scopes_does_not_challenge_for_a_scope_above_the_agent_ceiling() {
    // No consent raises a ceiling: no resource token is minted for it.
    let harness = Harness::new();
    harness
        .aauth
        .scope_ceilings()
        .replace(CeilingSet::new().agent(agent(AGENT_ID), "data.read").unwrap());
    let request = signed(&harness, "POST", "/data", &agent_token(&harness), NOW);
    let response = guarded_write(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(harness.aauth.minted_resource_tokens(), 0);
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn require_scopes_serves_a_granted_scope_under_the_ceiling() {
    let harness = Harness::new();
    harness.aauth.scope_ceilings().replace(
        CeilingSet::new()
            .key(harness.agent.thumbprint(), "data.read data.write")
            .unwrap(),
    );
    let request = signed(&harness, "POST", "/data", &auth_token(&harness), NOW);
    let response = guarded_write(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 1);
}
