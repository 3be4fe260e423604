//! A small notes API behind tower-aauth, written from the README, the crate docs and the
//! examples only, and its integration test with the test kit (feature `test-util`).

use axum::{Json, Router, http::StatusCode, routing::get, routing::post};
use serde_json::{Value, json};
use tower_aauth::{AAuth, AuthGrant, VerifiedAgent};

// ---- the app ----------------------------------------------------------------------------

async fn list_notes(grant: AuthGrant) -> Json<Value> {
    Json(json!({ "notes": ["first note"], "person": grant.subject, "scope": grant.scopes.to_string() }))
}

async fn create_note(Json(note): Json<Value>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "saved": note })))
}

async fn whoami(agent: VerifiedAgent) -> Json<Value> {
    Json(json!({
        "agent": agent.agent.as_ref().map(|agent| agent.id()),
        "scheme": agent.scheme.as_str(),
        "key_thumbprint": &*agent.key_thumbprint,
    }))
}

fn app(aauth: &AAuth) -> Router {
    Router::new()
        .route(
            "/notes",
            get(list_notes)
                .route_layer(aauth.require_scopes(["notes.read"]))
                .merge(post(create_note).route_layer(aauth.require_scopes(["notes.write"]))),
        )
        .route("/whoami", get(whoami).route_layer(aauth.require_verified_agent()))
        .route("/health", get(|| async { "ok" }))
        .merge(aauth.well_known_router())
        .layer(aauth.layer())
}

// ---- the test ---------------------------------------------------------------------------

use http::Method;
use tower_aauth::testing::{KeySource, TestHarness};

const CHALLENGE: &str = r#"requirement=auth-token; resource-token=""#;

#[tokio::test]
async fn notes_api_scopes_health_and_whoami() -> Result<(), Box<dyn std::error::Error>> {
    let harness = TestHarness::spawn(|builder| {
        let aauth = builder
            .scope("notes.read", "Read your notes")
            .scope("notes.write", "Change your notes")
            .build()?;
        Ok(app(&aauth))
    })
    .await?;
    let agent = harness.agent(); // jwks_uri: signs as its own identity
    let notes = harness.url("/notes");

    // Signed, no token: challenged with a resource token for notes.read.
    let challenge = agent.get(&notes).await?;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let requirement = challenge.requirement().unwrap();
    assert!(requirement.starts_with(CHALLENGE), "{requirement}");
    assert_eq!(challenge.resource_token_claims().unwrap()["scope"], "notes.read");

    // The whole flow through the test auth server: auth token, then 200.
    let outcome = agent.fetch(Method::GET, &notes, None).await?;
    assert_eq!(outcome.response.status, StatusCode::OK);
    assert_eq!(outcome.response.json().unwrap()["scope"], "notes.read");
    let read_token = outcome.auth_token.expect("the flow obtained an auth token");

    // Writing with the read-only token: 401 step-up challenge for the route's scopes.
    let reader = agent.clone().with_source(KeySource::Jwt(read_token));
    let refused = reader
        .request(Method::POST, &notes, Some(&json!({ "text": "hi" })))
        .await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let requirement = refused.requirement().unwrap();
    assert!(requirement.starts_with(CHALLENGE), "{requirement}");
    assert_eq!(refused.resource_token_claims().unwrap()["scope"], "notes.write");
    assert!(refused.json().is_none_or(|body| body.get("saved").is_none()));

    // Public health check, unsigned.
    let health = agent.send_unsigned(Method::GET, &harness.url("/health")).await?;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok");

    // Any verified agent: signed is served and named; unsigned is told to sign.
    let whoami = harness.url("/whoami");
    let me = agent.get(&whoami).await?;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.json().unwrap();
    assert_eq!(me["agent"], harness.agent_id());
    assert_eq!(me["scheme"], "jwks_uri");
    let anonymous = agent.send_unsigned(Method::GET, &whoami).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.requirement(), Some("requirement=agent-token"));
    Ok(())
}
