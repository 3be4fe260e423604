//! Audit events: exactly one structured event per decision, field by field, and never a
//! token or signature in them.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::{get as get_route, post};
use http::{Request, StatusCode};
use support::harness::*;
use tower::ServiceExt;
use tower_aauth::Error;
use tower_aauth::policy::Revoked;
use tower_aauth::policy::{AUDIT_TARGET, AuditField};
use tower_aauth::testing::KeySource;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

type Event = BTreeMap<String, String>;

/// Records every event of the audit target as a field → value map.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

struct Fields<'a>(&'a mut Event);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == AUDIT_TARGET {
            let mut fields = Event::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

impl Capture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The single event of one request.
    fn one(&self) -> Event {
        let mut events = self.take();
        assert_eq!(events.len(), 1, "exactly one audit event per request: {events:?}");
        events.pop().unwrap()
    }
}

const IDENTITY: [&str; 8] = [
    AuditField::Agent.name(),
    AuditField::KeyThumbprint.name(),
    AuditField::Scheme.name(),
    AuditField::TokenKind.name(),
    AuditField::Issuer.name(),
    AuditField::Subject.name(),
    AuditField::Scopes.name(),
    AuditField::Jti.name(),
];

/// An app whose routes answer the way guards would: allow, challenge, deny.
fn app(harness: &Harness) -> Router {
    Router::new()
        .route("/data", get_route(|| async { "data" }))
        .route(
            "/challenge",
            get_route(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        "aauth-requirement",
                        r#"requirement=auth-token; resource-token="eyJ.x.y""#,
                    )],
                )
                    .into_response()
            }),
        )
        .route(
            "/deny",
            post(|| async {
                Error::forbidden("insufficient_scope", "the grant does not cover this route").into_response()
            }),
        )
        .layer(harness.aauth.layer())
}

fn signed(harness: &Harness, method: &str, path: &str, source: &KeySource) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{RESOURCE}{path}?secret=q"))
        .body(Body::empty())
        .unwrap();
    harness.agent.sign(&mut request, source, NOW);
    request
}

fn assert_no_secrets(event: &Event, request: &Request<Body>) {
    let secrets: Vec<String> = ["signature", "signature-key", "signature-input"]
        .iter()
        .filter_map(|h| request.headers().get(*h))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    for value in event.values() {
        assert!(!value.contains("secret=q"), "query logged: {value}");
        for secret in &secrets {
            assert!(
                !secret.contains(value.as_str()) || value.len() < 40,
                "header material logged: {value}"
            );
        }
        assert!(!value.contains("eyJ"), "a token logged: {value}");
    }
}

#[tokio::test]
async fn an_allowed_auth_token_request_logs_every_identity_field() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let source = KeySource::Jwt(harness.auth_token("data.read data.write"));
    let request = signed(&harness, "GET", "/data", &source);
    let copy_headers = request.headers().clone();
    let response = app(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "allow");
    assert_eq!(event[AuditField::Reason.name()], "verified");
    assert_eq!(event[AuditField::Status.name()], "200");
    assert_eq!(event[AuditField::Method.name()], "GET");
    assert_eq!(event[AuditField::Route.name()], "/data");
    assert_eq!(event[AuditField::KeyThumbprint.name()], harness.agent.thumbprint());
    assert_eq!(event[AuditField::Scheme.name()], "jwt");
    assert_eq!(event[AuditField::TokenKind.name()], "aa-auth+jwt");
    assert_eq!(event[AuditField::Issuer.name()], AS);
    assert_eq!(event[AuditField::Subject.name()], "user-1");
    assert_eq!(event[AuditField::Scopes.name()], "data.read data.write");
    assert!(event[AuditField::Jti.name()].starts_with("at-"));
    assert!(
        !event.contains_key(AuditField::Agent.name()),
        "AAUTH-11 auth tokens name no agent"
    );
    assert!(!event.contains_key(AuditField::Detail.name()));
    let mut original = Request::get("/").body(Body::empty()).unwrap();
    *original.headers_mut() = copy_headers;
    assert_no_secrets(&event, &original);
    for name in event.keys().filter(|k| *k != "message") {
        assert!(
            AuditField::ALL.iter().any(|field| field.name() == name),
            "undocumented field {name}"
        );
    }
}

#[tokio::test]
async fn an_agent_token_request_logs_the_agent_identifier() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let token = harness
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &harness.agent.public_jwk(), NOW);
    let request = signed(&harness, "GET", "/data", &KeySource::Jwt(token));
    assert_eq!(app(&harness).oneshot(request).await.unwrap().status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Agent.name()], "aauth:assistant@agent.example");
    assert_eq!(event[AuditField::Issuer.name()], AP);
    assert_eq!(event[AuditField::TokenKind.name()], "aa-agent+jwt");
    assert!(
        !event.contains_key(AuditField::Subject.name()),
        "an agent is not a subject"
    );
    assert!(!event.contains_key(AuditField::Scopes.name()));
}

#[tokio::test]
async fn an_unsigned_request_is_an_allow_without_identity() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let response = app(&harness).oneshot(get("/data")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "allow");
    assert_eq!(event[AuditField::Reason.name()], "unsigned");
    for name in IDENTITY {
        assert!(!event.contains_key(name), "{name} without a verified identity");
    }
}

#[tokio::test]
async fn a_bad_signature_is_a_reject_without_identity() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let mut request = signed(&harness, "GET", "/data", &KeySource::Hwk);
    request.headers_mut().insert(
        "signature",
        "sig=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==:"
            .parse()
            .unwrap(),
    );
    let response = app(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "reject");
    assert_eq!(event[AuditField::Reason.name()], "invalid_signature");
    assert_eq!(event[AuditField::Status.name()], "401");
    assert!(event.contains_key(AuditField::Detail.name()));
    for name in IDENTITY {
        assert!(!event.contains_key(name), "{name} logged for an unverified request");
    }
}

#[tokio::test]
async fn a_revoked_request_is_a_reject_with_the_verified_identity() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    harness
        .aauth
        .revocations()
        .revoke(Revoked::KeyThumbprint(harness.agent.thumbprint()))
        .unwrap();
    let response = app(&harness)
        .oneshot(signed(&harness, "GET", "/data", &KeySource::Hwk))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "reject");
    assert_eq!(event[AuditField::Reason.name()], "revoked_jwt");
    assert_eq!(event[AuditField::Detail.name()], "the signing key is revoked");
    assert_eq!(event[AuditField::KeyThumbprint.name()], harness.agent.thumbprint());
    assert_eq!(event[AuditField::Scheme.name()], "hwk");
}

#[tokio::test]
async fn a_replay_is_a_reject_logged_once() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let request = signed(&harness, "POST", "/deny", &KeySource::Hwk);
    let mut replay = Request::post(request.uri().clone()).body(Body::empty()).unwrap();
    *replay.headers_mut() = request.headers().clone();
    app(&harness).oneshot(request).await.unwrap();
    capture.take();
    app(&harness).oneshot(replay).await.unwrap();
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "reject");
    assert_eq!(event[AuditField::Reason.name()], "invalid_signature");
    assert_eq!(event[AuditField::Detail.name()], "the signature was already used");
}

#[tokio::test]
async fn a_challenge_from_a_guard_is_logged_as_a_challenge() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let response = app(&harness)
        .oneshot(signed(&harness, "GET", "/challenge", &KeySource::Hwk))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "challenge");
    assert_eq!(event[AuditField::Reason.name()], "auth-token");
    assert_eq!(event[AuditField::Status.name()], "401");
    assert_eq!(event[AuditField::KeyThumbprint.name()], harness.agent.thumbprint());
    assert!(!event.values().any(|v| v.contains("eyJ")), "resource token logged");
}

#[tokio::test]
async fn a_denial_from_a_guard_is_logged_with_its_code() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let response = app(&harness)
        .oneshot(signed(&harness, "POST", "/deny", &KeySource::Hwk))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "deny");
    assert_eq!(event[AuditField::Reason.name()], "insufficient_scope");
    assert_eq!(event[AuditField::Detail.name()], "the grant does not cover this route");
    assert_eq!(event[AuditField::Method.name()], "POST");
    assert_eq!(event[AuditField::Route.name()], "/deny");
}

#[tokio::test]
async fn a_slow_path_request_is_logged_once_with_its_identity() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let body = br#"{"n":1}"#;
    let mut request = Request::post(format!("{RESOURCE}/deny"))
        .body(Body::from(&body[..]))
        .unwrap();
    harness.agent.sign_with_body(&mut request, body, &KeySource::Hwk, NOW);
    let response = app(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "deny");
    assert_eq!(event[AuditField::KeyThumbprint.name()], harness.agent.thumbprint());
}

#[derive(serde::Deserialize)]
struct Trade {
    symbol: String,
}

#[tokio::test]
async fn an_authorization_details_mismatch_is_a_deny_naming_its_code() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::new();
    let mut claims = harness
        .access_server
        .auth_claims(RESOURCE, &harness.agent.public_jwk(), "trade", NOW);
    claims["authorization_details"] = serde_json::json!([{"type": "trade", "symbol": "ACME"}]);
    let token = harness.access_server.sign(tower_aauth::engine::typ::AUTH, &claims);
    let guard = harness
        .aauth
        .require_detail("trade", |trade: &Trade, _: &http::request::Parts| {
            trade.symbol == "OTHER"
        });
    let router = Router::new()
        .route("/trade", post(|| async { "executed" }).route_layer(guard))
        .layer(harness.aauth.layer());
    let request = signed(&harness, "POST", "/trade", &KeySource::Jwt(token));
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "deny");
    assert_eq!(event[AuditField::Reason.name()], "insufficient_authorization_details");
    assert_eq!(event[AuditField::Scopes.name()], "trade");
    assert_eq!(event[AuditField::Subject.name()], "user-1");
}

#[tokio::test]
async fn a_refusal_by_the_default_requirement_is_logged_once() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::with(|builder| builder.default_requirement(tower_aauth::guard::Requirement::Signature));
    let response = app(&harness).oneshot(get("/data")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let event = capture.one();
    assert_eq!(event[AuditField::Decision.name()], "challenge");
    assert_eq!(event[AuditField::Reason.name()], "agent-token");
    assert_eq!(event[AuditField::Route.name()], "/data");
}

#[tokio::test]
async fn a_request_the_revocation_endpoint_answers_logs_one_event() {
    let capture = Capture::default();
    let _guard = capture.install();
    let harness = Harness::with(|builder| builder.revocation_endpoint("/aauth/revoke"));
    let request = harness
        .access_server
        .revocation_request(
            &format!("{RESOURCE}/aauth/revoke"),
            tower_aauth::engine::dwk::ACCESS,
            "at-1",
            NOW + 60,
            NOW,
        )
        .map(Body::from);
    let response = harness.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = capture.one();
    assert_eq!(event[AuditField::Status.name()], "200");
    assert_eq!(event[AuditField::Method.name()], "POST");
    assert_eq!(event[AuditField::Route.name()], "/aauth/revoke");
    assert_eq!(event[AuditField::Scheme.name()], "jwks_uri");
}
