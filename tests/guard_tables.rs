//! The tables in the guard constructors' docs (`AAuth::require_verified_agent`,
//! `require_agent_token`, `require_person`, `require_scopes`), row by row: every credential
//! a request can present, against every guard, in the three- and four-party postures.
//! Each refusal asserts the status, the exact `AAuth-Requirement` or `Signature-Error`
//! and that the route's handler never ran. The rows follow draft -11's decision matrix
//! (the protocol digest, §6.2); where the matrix leaves a choice, the docs state the
//! crate's.

mod support;

use axum::body::Body;
use http::Response;
use support::app::*;
use support::fixtures::body_json;
use tower_aauth::testing::KeySource;

/// What a credential presents.
#[derive(Debug, Clone, Copy)]
enum Presents {
    Unsigned,
    Hwk,
    JwksUri,
    AgentToken,
    AgentTokenWithoutPs,
    PersonToken,
    /// An auth token granting `data.read`.
    AuthToken,
    /// An auth token granting only `data.write`.
    AuthTokenLackingScope,
}

/// The documented answer.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Serve,
    /// 401 with exactly this `AAuth-Requirement`.
    Challenge(&'static str),
    /// 401 `requirement=auth-token; resource-token="…"`.
    AuthTokenChallenge,
    /// 401 with `Signature-Error: error=<code>` (+ `Accept-Signature-Scheme: jwt` for
    /// `unsupported_scheme`).
    SignatureError(&'static str),
    /// 403 with this problem `error`.
    Forbidden(&'static str),
}

use Answer::*;
use Presents::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Posture {
    ThreeParty,
    FourParty,
}

async fn send(posture: Posture, path: &str, presents: Presents) -> (App, Response<Body>) {
    let app = match posture {
        Posture::ThreeParty => App::three_party(),
        Posture::FourParty => App::four_party(),
    };
    let auth_token = |scope: &str| match posture {
        Posture::ThreeParty => app.ps_auth_token(Some(scope)),
        Posture::FourParty => app.as_auth_token(scope),
    };
    let source = match presents {
        Unsigned => None,
        Hwk => Some(KeySource::Hwk),
        JwksUri => Some(KeySource::agent_jwks(AP, "agent-key-1")),
        AgentToken => Some(jwt(app.agent_token())),
        AgentTokenWithoutPs => Some(jwt(app.agent_token_with(None))),
        PersonToken => Some(jwt(app.person_token())),
        AuthToken => Some(jwt(auth_token("data.read"))),
        AuthTokenLackingScope => Some(jwt(auth_token("data.write"))),
    };
    let response = match source {
        None => app.send(get_request(path)).await,
        Some(source) => app.get_signed(path, &source).await,
    };
    (app, response)
}

async fn check(posture: Posture, path: &str, rows: &[(Presents, Answer)]) {
    for &(presents, answer) in rows {
        let (app, response) = send(posture, path, presents).await;
        let context = format!("{posture:?} {path} presenting {presents:?}: expected {answer:?}");
        let status = response.status();
        match answer {
            Serve => assert!(status == 200 && app.calls() == 1, "{context}, got {status}"),
            Challenge(expected) => assert_challenge(&app, &response, expected),
            AuthTokenChallenge => {
                assert_auth_challenge(&app, &response);
            }
            SignatureError(code) => {
                assert_signature_error(&app, &response, code);
                if code == "unsupported_scheme" {
                    assert_eq!(response.headers()["accept-signature-scheme"], "jwt", "{context}");
                }
            }
            Forbidden(code) => {
                assert_forbidden(&app, &response);
                assert_eq!(body_json(response).await["error"], code, "{context}");
            }
        }
    }
}

const AGENT_TOKEN: &str = "requirement=agent-token";
const PERSON_TOKEN: &str = "requirement=person-token";

#[tokio::test]
async fn require_verified_agent_serves_every_verified_signature() {
    let rows = [
        (Unsigned, Challenge(AGENT_TOKEN)),
        (Hwk, Serve),
        (JwksUri, Serve),
        (AgentToken, Serve),
        (PersonToken, Serve),
        (AuthToken, Serve),
    ];
    for posture in [Posture::ThreeParty, Posture::FourParty] {
        check(posture, "/whoami", &rows).await;
    }
}

#[tokio::test]
async fn require_agent_token_serves_the_agents_own_identity_only() {
    let rows = [
        (Unsigned, Challenge(AGENT_TOKEN)),
        (Hwk, SignatureError("unsupported_scheme")),
        (JwksUri, Serve),
        (AgentToken, Serve),
        (PersonToken, Challenge(AGENT_TOKEN)),
        (AuthToken, Challenge(AGENT_TOKEN)),
    ];
    for posture in [Posture::ThreeParty, Posture::FourParty] {
        check(posture, "/agent", &rows).await;
    }
}

#[tokio::test]
async fn require_person_serves_person_and_auth_tokens() {
    let rows = [
        (Unsigned, Challenge(PERSON_TOKEN)),
        (Hwk, SignatureError("unsupported_scheme")),
        (JwksUri, SignatureError("unsupported_scheme")),
        (AgentToken, Challenge(PERSON_TOKEN)),
        (AgentTokenWithoutPs, Forbidden("no_person_server")),
        (PersonToken, Serve),
        (AuthToken, Serve),
    ];
    for posture in [Posture::ThreeParty, Posture::FourParty] {
        check(posture, "/person", &rows).await;
    }
}

#[tokio::test]
async fn require_scopes_four_party_challenges_every_signed_request_for_the_access_server() {
    let rows = [
        (Unsigned, Challenge(AGENT_TOKEN)),
        (Hwk, AuthTokenChallenge),
        (JwksUri, AuthTokenChallenge),
        (AgentToken, AuthTokenChallenge),
        (PersonToken, AuthTokenChallenge),
        (AuthToken, Serve),
        (AuthTokenLackingScope, AuthTokenChallenge),
    ];
    check(Posture::FourParty, "/data", &rows).await;
}

#[tokio::test]
async fn require_scopes_three_party_needs_the_person_first() {
    let rows = [
        (Unsigned, Challenge(PERSON_TOKEN)),
        (Hwk, SignatureError("unsupported_scheme")),
        (JwksUri, SignatureError("unsupported_scheme")),
        (AgentToken, Challenge(PERSON_TOKEN)),
        (AgentTokenWithoutPs, Forbidden("no_person_server")),
        (PersonToken, AuthTokenChallenge),
        (AuthToken, Serve),
        (AuthTokenLackingScope, AuthTokenChallenge),
    ];
    check(Posture::ThreeParty, "/data", &rows).await;
}

#[tokio::test]
async fn deny_insufficient_scope_turns_the_step_up_into_403_insufficient_scope() {
    for posture in [Posture::ThreeParty, Posture::FourParty] {
        let app = match posture {
            Posture::ThreeParty => App::with(|b| b.person_server(PS).deny_insufficient_scope()),
            Posture::FourParty => App::with(|b| b.person_server(PS).auth_server(AS).deny_insufficient_scope()),
        };
        let token = match posture {
            Posture::ThreeParty => app.ps_auth_token(Some("data.write")),
            Posture::FourParty => app.as_auth_token("data.write"),
        };
        let response = app.get_signed("/data", &jwt(token)).await;
        assert_forbidden(&app, &response);
        assert_eq!(body_json(response).await["error"], "insufficient_scope");
    }
}

/// The former names still build the same guards.
#[tokio::test]
#[allow(deprecated)]
async fn the_deprecated_names_are_the_renamed_guards() {
    use axum::routing::get;
    use tower::ServiceExt;
    let app = App::four_party();
    let router = axum::Router::new()
        .route("/agent", get(app.handler()).route_layer(app.aauth.require_agent()))
        .route("/whoami", get(app.handler()).route_layer(app.aauth.require_signature()))
        .layer(app.aauth.layer());
    let sign = |path: &str| {
        let mut request = get_request(path);
        app.agent.sign(&mut request, &KeySource::Hwk, NOW);
        request
    };
    let refused = router.clone().oneshot(sign("/agent")).await.unwrap();
    assert_signature_error(&app, &refused, "unsupported_scheme");
    let served = router.oneshot(sign("/whoami")).await.unwrap();
    assert_served(&app, &served);
}
