//! `AAuth-Capabilities` (digest §6.5): a route that can answer either way (a session
//! guard with scopes) answers `202 requirement=interaction` only to agents that declared
//! `interaction` in a valid RFC 9651 List of Tokens; every other agent gets the ordinary
//! challenge, and no interaction state is created for it.

mod support;

use http::StatusCode;
use support::session::*;
use tower_aauth::testing::KeySource;

/// The ordinary answer of `/notes` (`data.read`) in the four-party posture: an
/// `auth-token` challenge with a resource token.
fn assert_ordinary_challenge(rig: &Rig, response: &http::Response<axum::body::Body>, header: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
    let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
    assert!(
        requirement.starts_with("requirement=auth-token; resource-token=\""),
        "{header:?}: {requirement}"
    );
    assert!(response.headers().get("location").is_none());
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn only_a_declared_interaction_capability_gets_the_interaction_requirement() {
    let oversized = format!("interaction, {}", vec!["payment"; 80].join(", "));
    let many = format!("{}, interaction", vec!["x"; 20].join(", "));
    for (header, interacts) in [
        (Some("interaction"), true),
        (Some("payment, interaction"), true),
        (Some("interaction;v=1, clarification"), true),
        (Some("future-capability, \"text\", 12, (a b), interaction"), true),
        (None, false),
        (Some(""), false),
        (Some("payment, clarification"), false),
        (Some("Interaction"), false),
        (Some("\"interaction\""), false),
        (Some("(interaction)"), false),
        (Some("interaction,"), false),
        (Some("interaction;;"), false),
        (Some("interaction interaction"), false),
        (Some(oversized.as_str()), false),
        (Some(many.as_str()), false),
    ] {
        let rig = Rig::new();
        let response = rig
            .get_as(&rig.app.agent, &rig.agent_token(), "/notes", header, &[], false)
            .await;
        if interacts {
            assert_eq!(response.status(), StatusCode::ACCEPTED, "{header:?}");
            assert!(
                response.headers()["aauth-requirement"]
                    .to_str()
                    .unwrap()
                    .starts_with("requirement=interaction; ")
            );
            assert_eq!(
                rig.app.aauth.minted_resource_tokens(),
                0,
                "no resource token for {header:?}"
            );
        } else {
            assert_ordinary_challenge(&rig, &response, header.unwrap_or("absent"));
        }
    }
}

#[tokio::test]
async fn capability_field_lines_are_combined_before_parsing() {
    let rig = Rig::new();
    let mut request = http::Request::get(format!("{RESOURCE}/notes"))
        .header("aauth-capabilities", "payment")
        .header("aauth-capabilities", "interaction")
        .body(axum::body::Body::empty())
        .unwrap();
    rig.app.agent.sign(&mut request, &rig.agent_token(), rig.now());
    assert_eq!(rig.send(request).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_capability_field_that_is_not_ascii_declares_nothing() {
    let rig = Rig::new();
    let mut request = http::Request::get(format!("{RESOURCE}/notes"))
        .header(
            "aauth-capabilities",
            http::HeaderValue::from_bytes(b"interaction, caf\xc3\xa9").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    rig.app.agent.sign(&mut request, &rig.agent_token(), rig.now());
    let response = rig.send(request).await;
    assert_ordinary_challenge(&rig, &response, "non-ASCII");
}

#[tokio::test]
async fn an_auth_token_granting_the_scopes_is_served_whatever_the_agent_declared() {
    let rig = Rig::new();
    let token = jwt(rig.app.as_auth_token("data.read"));
    let response = rig
        .get_as(&rig.app.agent, &token, "/notes", Some("interaction"), &[], false)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response).await["account"], serde_json::Value::Null);
    assert_eq!(rig.calls(), 1);
}

#[tokio::test]
async fn an_agent_without_a_person_server_can_still_interact_with_the_resource() {
    // Three-party: an agent token naming no `ps` cannot satisfy `person-token`.
    let rig = Rig::with(|b| b);
    let rig = Rig {
        app: support::app::App::three_party(),
        ..rig
    };
    let no_ps = jwt(rig.app.agent_token_with(None));
    let refused = rig.get_as(&rig.app.agent, &no_ps, "/notes", None, &[], false).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(body_json(refused).await["error"], "no_person_server");
    let interacting = rig
        .get_as(&rig.app.agent, &no_ps, "/notes", Some("interaction"), &[], false)
        .await;
    assert_eq!(interacting.status(), StatusCode::ACCEPTED);
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn an_unsigned_request_declaring_interaction_is_asked_to_sign() {
    let rig = Rig::new();
    let request = http::Request::get(format!("{RESOURCE}/notes"))
        .header("aauth-capabilities", "interaction")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = rig.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["aauth-requirement"], "requirement=agent-token");
    assert!(response.headers().get("location").is_none());
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn a_pseudonymous_key_that_declared_interaction_may_interact() {
    let rig = Rig::new();
    let response = rig
        .get_as(
            &rig.app.agent,
            &KeySource::Hwk,
            "/notes",
            Some("interaction"),
            &[],
            false,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (_, code) = pending_of(&response);
    let found = rig.app.aauth.interaction(&code).await.unwrap();
    assert_eq!(found.key_thumbprint, rig.app.agent.thumbprint());
}
