//! The integration test of the `tower_aauth::testing` docs as a file: an app with a
//! scope-guarded read and write, its test with [`TestHarness`], challenge → auth token →
//! `200`, and a scope refusal.
//!
//! Copy the app and the test into your own `tests/` directory. Here the test runs twice:
//! `cargo test --example first_hour` runs it as a test (`test = true` in `Cargo.toml`,
//! so a plain `cargo test` runs it too), and `cargo run --example first_hour` runs the
//! same scenario and exits non-zero if any answer differs.

use axum::{Json, Router, routing::get, routing::post};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_aauth::testing::{KeySource, TestHarness};
use tower_aauth::{AAuth, AuthGrant};

/// The app under test, built as production builds it.
fn app(aauth: &AAuth) -> Router {
    async fn read(grant: AuthGrant) -> Json<Value> {
        Json(json!({ "person": grant.subject, "scope": grant.scopes.to_string() }))
    }
    Router::new()
        .route(
            "/notes",
            get(read)
                .route_layer(aauth.require_scopes(["notes.read"]))
                .merge(post(|| async { "saved" }).route_layer(aauth.require_scopes(["notes.write"]))),
        )
        .route("/health", get(|| async { "ok" }))
        .merge(aauth.well_known_router())
        .layer(aauth.layer())
}

async fn notes_need_their_scopes() -> Result<(), Box<dyn std::error::Error>> {
    let harness = TestHarness::spawn(|builder| {
        let aauth = builder
            .scope("notes.read", "Read your notes")
            .scope("notes.write", "Change your notes")
            .build()?;
        Ok(app(&aauth))
    })
    .await?;
    let agent = harness.agent(); // signs as its own identity (jwks_uri)
    let notes = harness.url("/notes");

    // One signed request, nothing followed: the challenge.
    let challenge = agent.get(&notes).await?;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge
            .requirement()
            .unwrap()
            .starts_with("requirement=auth-token; resource-token=")
    );

    // The whole flow: challenge → auth server → auth token → 200.
    let outcome = agent.fetch(Method::GET, &notes, None).await?;
    assert_eq!(outcome.response.status, StatusCode::OK);
    assert_eq!(outcome.response.json().unwrap()["scope"], "notes.read");

    // A scope refusal: that auth token grants notes.read only, so writing is answered with
    // a step-up challenge asking for notes.write, and the handler never runs.
    let with_token = agent.clone().with_source(KeySource::Jwt(outcome.auth_token.unwrap()));
    let refused = with_token.request(Method::POST, &notes, None).await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .requirement()
            .unwrap()
            .starts_with("requirement=auth-token; resource-token=")
    );
    assert_ne!(refused.body, "saved");

    // No signature at all: sign first. The health check needs nothing.
    let unsigned = agent.send_unsigned(Method::GET, &notes).await?;
    assert_eq!(unsigned.requirement(), Some("requirement=agent-token"));
    let health = agent.send_unsigned(Method::GET, &harness.url("/health")).await?;
    assert_eq!(health.status, StatusCode::OK);
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    notes_need_their_scopes().await?;
    println!("challenge → auth token → 200, and the scope refusal: as expected");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn notes_need_their_scopes() {
        super::notes_need_their_scopes().await.unwrap();
    }
}
