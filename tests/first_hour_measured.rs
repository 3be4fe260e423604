//! Issue #23, item 5: the four-route app of the first hour and its integration test,
//! written again from the README, the rustdoc and `examples/first_hour.rs` alone.

use axum::{Json, Router, routing::get};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_aauth::testing::{KeySource, TestHarness};
use tower_aauth::{AAuth, AuthGrant, VerifiedAgent};

fn app(aauth: &AAuth) -> Router {
    async fn list(grant: AuthGrant) -> Json<Value> {
        Json(json!({ "notes": ["first"], "person": grant.subject }))
    }
    async fn create(grant: AuthGrant, Json(note): Json<Value>) -> Json<Value> {
        Json(json!({ "created": note, "scope": grant.scopes.to_string() }))
    }
    async fn whoami(agent: VerifiedAgent) -> Json<Value> {
        Json(json!({ "scheme": agent.scheme.as_str(), "agent": agent.agent.as_ref().map(|a| a.id()) }))
    }
    Router::new()
        .route(
            "/notes",
            get(list)
                .route_layer(aauth.require_scopes(["notes.read"]))
                .merge(axum::routing::post(create).route_layer(aauth.require_scopes(["notes.write"]))),
        )
        .route("/whoami", get(whoami).route_layer(aauth.require_verified_agent()))
        .route("/health", get(|| async { "ok" }))
        .merge(aauth.well_known_router())
        .layer(aauth.layer())
}

#[tokio::test]
async fn the_four_routes() -> Result<(), Box<dyn std::error::Error>> {
    let harness = TestHarness::spawn(|builder| {
        let aauth = builder
            .scope("notes.read", "Read your notes")
            .scope("notes.write", "Write your notes")
            .build()?;
        Ok(app(&aauth))
    })
    .await?;
    let agent = harness.agent();
    let notes = harness.url("/notes");

    // Read: challenge → token → 200.
    let read = agent.fetch(Method::GET, &notes, None).await?;
    assert_eq!(read.response.status, StatusCode::OK);
    assert_eq!(read.response.json().unwrap()["person"], "person-1");

    // Write with the read token: step-up, not served.
    let reader = agent.clone().with_source(KeySource::Jwt(read.auth_token.unwrap()));
    let refused = reader
        .request(Method::POST, &notes, Some(&json!({ "text": "x" })))
        .await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .requirement()
            .unwrap()
            .starts_with("requirement=auth-token; resource-token=")
    );

    // Write: its own flow.
    let written = agent.fetch(Method::POST, &notes, Some(&json!({ "text": "x" }))).await?;
    assert_eq!(written.response.status, StatusCode::OK);
    assert_eq!(written.response.json().unwrap()["created"]["text"], "x");

    // Any verified agent: identified or pseudonymous; unsigned is challenged.
    let whoami = harness.url("/whoami");
    assert_eq!(agent.get(&whoami).await?.json().unwrap()["scheme"], "jwks_uri");
    assert_eq!(harness.pseudonymous_agent().get(&whoami).await?.status, StatusCode::OK);
    let unsigned = agent.send_unsigned(Method::GET, &whoami).await?;
    assert_eq!(unsigned.requirement(), Some("requirement=agent-token"));

    // Public.
    assert_eq!(
        agent.send_unsigned(Method::GET, &harness.url("/health")).await?.status,
        StatusCode::OK
    );
    Ok(())
}
