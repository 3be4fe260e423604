//! The decision matrix of the digest §6.2, cell by cell, through an in-process axum app:
//! columns are the routes `/agent` (agent identity), `/person` (person identity) and
//! `/data` (auth token with `data.read`); rows are what the request presents.

mod support;

use http::StatusCode;
use support::app::*;
use tower_aauth::policy::Revoked;
use tower_aauth::testing::KeySource;

// ---- row: nothing (unsigned) ----

#[tokio::test]
async fn unsigned_on_agent_route_asks_for_an_agent_token() {
    let app = App::three_party();
    let response = app.send(get_request("/agent")).await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn unsigned_on_person_route_asks_for_a_person_token() {
    let app = App::three_party();
    let response = app.send(get_request("/person")).await;
    assert_challenge(&app, &response, "requirement=person-token");
}

#[tokio::test]
async fn unsigned_on_scope_route_asks_for_a_person_token_and_signs_nothing() {
    let app = App::three_party();
    let response = app.send(get_request("/data")).await;
    assert_challenge(&app, &response, "requirement=person-token");
    assert_eq!(app.aauth.minted_resource_tokens(), 0, "MINT-01: no signing oracle");
}

// ---- row: partial signature headers / bad signature ----

#[tokio::test]
async fn partial_signature_headers_are_refused_by_the_layer_on_every_route() {
    for path in ["/agent", "/person", "/data"] {
        let app = App::three_party();
        let mut request = get_request(path);
        app.agent.sign(&mut request, &jwt(app.person_token()), NOW);
        request.headers_mut().remove("signature");
        let response = app.send(request).await;
        assert_signature_error(&app, &response, "invalid_signature");
        assert!(response.headers().get("aauth-requirement").is_none());
    }
}

#[tokio::test]
async fn bad_signature_is_refused_by_the_layer_on_every_route() {
    for path in ["/agent", "/person", "/data"] {
        let app = App::three_party();
        let mut request = get_request(path);
        app.agent
            .sign(&mut request, &jwt(app.ps_auth_token(Some("data.read"))), NOW);
        // Signed for another path.
        *request.uri_mut() = format!("{RESOURCE}/other").parse().unwrap();
        let response = app.send(request).await;
        assert_signature_error(&app, &response, "invalid_signature");
    }
}

// ---- row: non-jwt scheme ----

#[tokio::test]
async fn hwk_on_every_identity_route_is_unsupported_scheme_naming_jwt() {
    for path in ["/agent", "/person", "/data"] {
        let app = App::three_party();
        let response = app.get_signed(path, &KeySource::Hwk).await;
        assert_signature_error(&app, &response, "unsupported_scheme");
        assert_eq!(response.headers()["accept-signature-scheme"], "jwt", "{path}");
        assert_eq!(app.aauth.minted_resource_tokens(), 0);
    }
}

#[tokio::test]
async fn jwks_uri_signer_is_an_agent_identity() {
    let app = App::three_party();
    let response = app
        .get_signed("/agent", &KeySource::agent_jwks(AP, "agent-key-1"))
        .await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn jwks_uri_signer_on_person_route_is_unsupported_scheme() {
    let app = App::three_party();
    let response = app
        .get_signed("/person", &KeySource::agent_jwks(AP, "agent-key-1"))
        .await;
    assert_signature_error(&app, &response, "unsupported_scheme");
}

// ---- row: valid agent token ----

#[tokio::test]
async fn agent_token_on_agent_route_is_served() {
    let app = App::three_party();
    let response = app.get_signed("/agent", &jwt(app.agent_token())).await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn agent_token_on_person_route_asks_for_a_person_token() {
    let app = App::three_party();
    let response = app.get_signed("/person", &jwt(app.agent_token())).await;
    assert_challenge(&app, &response, "requirement=person-token");
}

#[tokio::test]
async fn agent_token_on_scope_route_asks_for_a_person_token_typ02() {
    let app = App::three_party();
    let response = app.get_signed("/data", &jwt(app.agent_token())).await;
    assert_challenge(&app, &response, "requirement=person-token");
    assert_eq!(app.aauth.minted_resource_tokens(), 0);
}

#[tokio::test]
async fn agent_token_without_person_server_is_forbidden_where_a_person_is_needed() {
    for path in ["/person", "/data"] {
        let app = App::three_party();
        let response = app.get_signed(path, &jwt(app.agent_token_with(None))).await;
        assert_forbidden(&app, &response);
    }
}

// ---- row: valid person token ----

#[tokio::test]
async fn person_token_on_agent_route_asks_for_an_agent_token() {
    let app = App::three_party();
    let response = app.get_signed("/agent", &jwt(app.person_token())).await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn person_token_on_person_route_is_served() {
    let app = App::three_party();
    let response = app.get_signed("/person", &jwt(app.person_token())).await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn person_token_on_scope_route_gets_a_resource_token_never_200_typ03() {
    let app = App::three_party();
    let response = app.get_signed("/data", &jwt(app.person_token())).await;
    let (_, header, claims) = assert_auth_challenge(&app, &response);
    assert_eq!(header["typ"], "aa-resource+jwt");
    assert_eq!(header["alg"], "Ed25519");
    assert_eq!(header["kid"], "resource-key-1");
    assert_eq!(claims["iss"], RESOURCE);
    assert_eq!(claims["dwk"], "aauth-resource.json");
    assert_eq!(claims["aud"], PS, "three-party: aud is the person token's issuer");
    assert_eq!(claims["ps"], PS);
    assert_eq!(claims["sub"], "person-1");
    assert_eq!(claims["presented_jti"], "pt-1");
    assert_eq!(claims["mission_s256"], "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    assert_eq!(claims["tenant"], "org-1");
    assert_eq!(claims["agent_jkt"], app.agent.thumbprint());
    assert_eq!(claims["scope"], "data.read");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 300);
    assert!(claims.get("cnf").is_none() && claims.get("agent").is_none());
}

// ---- row: valid auth token, scope ⊇ S ----

#[tokio::test]
async fn sufficient_auth_token_on_agent_route_asks_for_an_agent_token() {
    let app = App::three_party();
    let response = app
        .get_signed("/agent", &jwt(app.ps_auth_token(Some("data.read"))))
        .await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn sufficient_auth_token_on_person_route_is_served() {
    let app = App::three_party();
    let response = app
        .get_signed("/person", &jwt(app.ps_auth_token(Some("data.read"))))
        .await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn sufficient_auth_token_on_scope_route_is_served() {
    let app = App::three_party();
    let response = app
        .get_signed("/data", &jwt(app.ps_auth_token(Some("data.read"))))
        .await;
    assert_served(&app, &response);
    assert_eq!(app.aauth.minted_resource_tokens(), 0);
}

#[tokio::test]
async fn superset_in_any_order_is_sufficient_scp01() {
    let app = App::three_party();
    let response = app
        .get_signed("/both", &jwt(app.ps_auth_token(Some("data.write data.read"))))
        .await;
    assert_served(&app, &response);
}

// ---- row: valid auth token, scope ⊉ S ----

#[tokio::test]
async fn insufficient_auth_token_on_agent_route_asks_for_an_agent_token() {
    let app = App::three_party();
    let response = app.get_signed("/agent", &jwt(app.ps_auth_token(Some("other")))).await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn insufficient_auth_token_on_person_route_is_served() {
    let app = App::three_party();
    let response = app.get_signed("/person", &jwt(app.ps_auth_token(Some("other")))).await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn insufficient_auth_token_on_scope_route_steps_up_with_a_fresh_resource_token() {
    let app = App::three_party();
    let response = app
        .get_signed("/both", &jwt(app.ps_auth_token(Some("data.read"))))
        .await;
    let (_, _, claims) = assert_auth_challenge(&app, &response);
    assert_eq!(claims["presented_jti"], "at-1", "the auth token is the presented token");
    assert_eq!(claims["aud"], PS, "aud is the auth token's ps");
    assert_eq!(claims["ps"], PS);
    assert_eq!(claims["sub"], "person-1");
    assert_eq!(
        claims["scope"], "data.read data.write",
        "the route's whole scope set: the agent presents one auth token"
    );
}

#[tokio::test]
async fn prefix_and_case_variants_do_not_grant_a_scope_scp02() {
    for granted in ["data.reader", "data.read.all", "Data.Read", "data.rea"] {
        let app = App::three_party();
        let response = app.get_signed("/data", &jwt(app.ps_auth_token(Some(granted)))).await;
        let (_, _, claims) = assert_auth_challenge(&app, &response);
        assert_eq!(claims["scope"], "data.read", "{granted}");
    }
}

#[tokio::test]
async fn duplicate_scopes_are_harmless_and_absence_grants_nothing_scp05() {
    let app = App::three_party();
    let response = app
        .get_signed("/data", &jwt(app.ps_auth_token(Some("data.read data.read"))))
        .await;
    assert_served(&app, &response);

    let app = App::three_party();
    let response = app.get_signed("/data", &jwt(app.ps_auth_token(None))).await;
    assert_auth_challenge(&app, &response);
}

#[tokio::test]
async fn step_up_can_be_configured_to_refuse_with_403() {
    let app = App::with(|b| b.person_server(PS).deny_insufficient_scope());
    let response = app.get_signed("/data", &jwt(app.ps_auth_token(Some("other")))).await;
    assert_forbidden(&app, &response);
    assert_eq!(app.aauth.minted_resource_tokens(), 0);
}

// ---- row: revoked person/auth token ----

#[tokio::test]
async fn revoked_person_token_is_revoked_jwt_on_every_route() {
    for path in ["/agent", "/person", "/data"] {
        let app = App::three_party();
        app.aauth
            .revocations()
            .revoke(Revoked::Jti {
                issuer: PS.into(),
                jti: "pt-1".into(),
            })
            .unwrap();
        let response = app.get_signed(path, &jwt(app.person_token())).await;
        assert_signature_error(&app, &response, "revoked_jwt");
        assert!(response.headers().get("aauth-requirement").is_none(), "{path}");
        assert_eq!(app.aauth.minted_resource_tokens(), 0, "MUST NOT name a revoked token");
    }
}

#[tokio::test]
async fn revoked_auth_token_is_revoked_jwt_asking_for_a_person_token_on_every_route() {
    for path in ["/agent", "/person", "/data"] {
        let app = App::three_party();
        app.aauth
            .revocations()
            .revoke(Revoked::Jti {
                issuer: PS.into(),
                jti: "at-1".into(),
            })
            .unwrap();
        let response = app.get_signed(path, &jwt(app.ps_auth_token(Some("data.read")))).await;
        assert_signature_error(&app, &response, "revoked_jwt");
        assert_eq!(response.headers()["aauth-requirement"], "requirement=person-token");
    }
}

// ---- row: verified but policy says no ----

#[tokio::test]
async fn policy_denial_after_verification_is_403_without_signature_headers() {
    for source in [
        KeySource::Hwk,
        KeySource::agent_jwks(AP, "agent-key-1"),
        KeySource::Jwt(String::new()),
    ] {
        let app = App::three_party();
        let source = match source {
            KeySource::Jwt(_) => jwt(app.ps_auth_token(Some("data.read"))),
            other => other,
        };
        let response = app.get_signed("/policy", &source).await;
        assert_forbidden(&app, &response);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "policy_denied");
    }
}

// ---- token kinds a route does not accept, and our own tokens ----

#[tokio::test]
async fn our_own_resource_token_is_never_a_credential_typ01() {
    let app = App::three_party();
    let response = app.get_signed("/data", &jwt(app.person_token())).await;
    let (token, _, _) = assert_auth_challenge(&app, &response);
    let app = App::three_party();
    let response = app.get_signed("/data", &jwt(token)).await;
    assert_signature_error(&app, &response, "invalid_jwt");
}

// ---- four-party posture (access server configured) ----

#[tokio::test]
async fn four_party_unsigned_on_scope_route_asks_for_an_agent_token() {
    let app = App::four_party();
    let response = app.send(get_request("/data")).await;
    assert_challenge(&app, &response, "requirement=agent-token");
    assert_eq!(app.aauth.minted_resource_tokens(), 0);
}

#[tokio::test]
async fn four_party_any_verified_scheme_gets_a_resource_token_for_the_access_server() {
    for source in [
        KeySource::Hwk,
        KeySource::agent_jwks(AP, "agent-key-1"),
        KeySource::Jwt(String::new()),
    ] {
        let app = App::four_party();
        let source = match source {
            KeySource::Jwt(_) => jwt(app.agent_token()),
            other => other,
        };
        let response = app.get_signed("/data", &source).await;
        let (_, _, claims) = assert_auth_challenge(&app, &response);
        assert_eq!(claims["aud"], AS);
        assert_eq!(claims["agent_jkt"], app.agent.thumbprint());
        assert_eq!(claims["scope"], "data.read");
        assert!(claims.get("presented_jti").is_none(), "nothing was presented");
    }
}

#[tokio::test]
async fn four_party_person_token_is_named_in_the_resource_token() {
    let app = App::four_party();
    let response = app.get_signed("/data", &jwt(app.person_token())).await;
    let (_, _, claims) = assert_auth_challenge(&app, &response);
    assert_eq!(claims["aud"], AS);
    assert_eq!(claims["presented_jti"], "pt-1");
    assert_eq!(claims["ps"], PS);
}

#[tokio::test]
async fn four_party_auth_token_from_the_access_server_is_served() {
    let app = App::four_party();
    let response = app.get_signed("/data", &jwt(app.as_auth_token("data.read"))).await;
    assert_served(&app, &response);
}

#[tokio::test]
async fn four_party_step_up_names_the_auth_token() {
    let app = App::four_party();
    let token = app.as_auth_token("data.read");
    let response = app.get_signed("/both", &jwt(token)).await;
    let (_, _, claims) = assert_auth_challenge(&app, &response);
    assert_eq!(claims["aud"], AS);
    assert_eq!(claims["ps"], PS);
    assert_eq!(claims["sub"], "user-1");
    assert!(claims["presented_jti"].as_str().unwrap().starts_with("at-"));
}

// ---- routing and wiring ----

#[tokio::test]
async fn unknown_paths_stay_404() {
    let app = App::three_party();
    let response = app.send(get_request("/nowhere")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app.get_signed("/nowhere", &jwt(app.person_token())).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn any_signature_route_serves_hwk_and_challenges_unsigned() {
    let app = App::three_party();
    let response = app.get_signed("/whoami", &KeySource::Hwk).await;
    assert_served(&app, &response);
    let app = App::three_party();
    let response = app.send(get_request("/whoami")).await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn a_guard_without_the_layer_is_a_500_never_a_pass() {
    use tower::ServiceExt;
    let app = App::three_party();
    let router = axum::Router::new().route(
        "/data",
        axum::routing::get(app.handler()).route_layer(app.aauth.require_scopes(["data.read"])),
    );
    let mut request = get_request("/data");
    app.agent
        .sign(&mut request, &jwt(app.ps_auth_token(Some("data.read"))), NOW);
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(app.calls(), 0);
}
