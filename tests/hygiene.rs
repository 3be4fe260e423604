//! Error and log hygiene over a battery of good and hostile requests, with discovery
//! running over an in-memory fetcher (so upstream documents are under the test's control)
//! and a capturing `tracing` subscriber at TRACE level:
//!
//! * every `401` carries exactly one `Signature-Error` with a registered code, and
//!   `Cache-Control: no-store`; its body is the fixed problem document;
//! * no response body holds upstream text, addresses or token bytes;
//! * no log line holds a full JWT, a signature value or a key, and attacker-chosen strings
//!   appear escaped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, SignOptions, TestAgent, TestIssuer};
use tower_aauth::{AAuth, SignatureErrorCode, testing::ManualClock, wire};
use tower_aauth::{
    BoxFuture,
    discovery::{Fetch, FetchError, FetchedDocument},
};

const NOW: u64 = 1_730_217_600;
const RESOURCE: &str = "https://resource.example";
const AS: &str = "https://as.example";
const AP: &str = "https://agent.example";
const BROKEN: &str = "https://broken.example";
/// What a broken upstream says; none of it may reach a client.
const UPSTREAM_TEXT: &str = "<html>internal error at 10.9.8.7: db password expired</html>";

#[derive(Clone, Default)]
struct MapFetch(Arc<Mutex<HashMap<String, Bytes>>>);

impl MapFetch {
    fn publish(&self, url: String, body: impl Into<Bytes>) {
        self.0.lock().unwrap().insert(url, body.into());
    }
}

impl Fetch for MapFetch {
    fn get<'a>(&'a self, url: &'a str, _max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        let found = self.0.lock().unwrap().get(url).cloned();
        Box::pin(async move { found.map(FetchedDocument::new).ok_or(FetchError::Status(404)) })
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct World {
    aauth: AAuth,
    agent: TestAgent,
    access_server: TestIssuer,
    /// Every secret-ish string sent: tokens, signature values, keys.
    sent: Vec<String>,
}

fn world() -> World {
    let fetch = MapFetch::default();
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    for (issuer, dwk, metadata, jwks) in [
        (AS, engine::dwk::ACCESS, access_server.metadata(), access_server.jwks()),
        (
            AP,
            engine::dwk::AGENT,
            json!({"issuer": AP, "jwks_uri": format!("{AP}/.well-known/jwks.json")}),
            agent.jwks(),
        ),
    ] {
        fetch.publish(format!("{issuer}/.well-known/{dwk}"), metadata.to_string());
        fetch.publish(format!("{issuer}/.well-known/jwks.json"), jwks.to_string());
    }
    fetch.publish(format!("{BROKEN}/.well-known/{}", engine::dwk::AGENT), UPSTREAM_TEXT);
    let aauth = AAuth::builder(RESOURCE)
        .clock(ManualClock::new(NOW))
        .fetcher(fetch)
        .auth_server(AS)
        .build()
        .unwrap();
    World {
        aauth,
        agent,
        access_server,
        sent: Vec::new(),
    }
}

fn router(aauth: &AAuth) -> Router {
    Router::new()
        .fallback(any(|| async { "handler ran" }))
        .layer(aauth.layer())
}

fn get(path: &str) -> Request<Body> {
    Request::get(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap()
}

/// The hostile battery, each with the code it must be refused with (`None`: must pass).
fn battery(world: &mut World) -> Vec<(&'static str, Request<Body>, Option<&'static str>)> {
    let agent = world.agent.clone();
    let jwk = agent.public_jwk();
    let auth = world.access_server.auth_token(RESOURCE, &jwk, "data.read", NOW);
    let mut expired_claims = world.access_server.auth_claims(RESOURCE, &jwk, "data.read", NOW - 7200);
    expired_claims["exp"] = json!(NOW - 1);
    let expired = world.access_server.sign(engine::typ::AUTH, &expired_claims);
    let untrusted =
        TestIssuer::new("https://evil.example", [9; 32], "evil").auth_token(RESOURCE, &jwk, "data.read", NOW);
    let forged = TestIssuer::new(AS, [9; 32], "as-key-1").auth_token(RESOURCE, &jwk, "data.read", NOW);
    world
        .sent
        .extend([auth.clone(), expired.clone(), untrusted.clone(), forged.clone()]);
    world.sent.push(jwk.x().to_owned());

    let signed = |path: &str, source: &KeySource, options: &SignOptions, created: u64| {
        let mut request = get(path);
        agent.sign_with(&mut request, source, created, options);
        request
    };
    let default = SignOptions::default();
    let mut cases = vec![
        ("hwk", signed("/a", &KeySource::Hwk, &default, NOW), None),
        (
            "auth token",
            signed("/a", &KeySource::Jwt(auth.clone()), &default, NOW),
            None,
        ),
        (
            "jwks_uri",
            signed("/a", &KeySource::agent_jwks(AP, "agent-key-1"), &default, NOW),
            None,
        ),
        (
            "expired token",
            signed("/a", &KeySource::Jwt(expired), &default, NOW),
            Some("expired_jwt"),
        ),
        (
            "untrusted issuer",
            signed("/a", &KeySource::Jwt(untrusted), &default, NOW),
            Some("invalid_jwt"),
        ),
        (
            "forged issuer signature",
            signed("/a", &KeySource::Jwt(forged), &default, NOW),
            Some("invalid_jwt"),
        ),
        (
            "attacker kid",
            signed("/a", &KeySource::agent_jwks(AP, r#"a\"b\\c"#), &default, NOW),
            Some("unknown_key"),
        ),
        (
            "broken upstream",
            signed("/a", &KeySource::agent_jwks(BROKEN, "k"), &default, NOW),
            Some("invalid_key"),
        ),
        (
            "future created",
            signed("/a", &KeySource::Hwk, &default, NOW + 3600),
            Some("clock_skew"),
        ),
        (
            "stale created",
            signed("/a", &KeySource::Hwk, &default, NOW - 3600),
            Some("invalid_signature"),
        ),
        (
            "signature-key not covered",
            signed(
                "/a",
                &KeySource::Hwk,
                &SignOptions {
                    components: vec!["@method".into(), "@authority".into(), "@path".into()],
                    ..SignOptions::default()
                },
                NOW,
            ),
            Some("invalid_input"),
        ),
    ];

    let mut tampered = signed("/a", &KeySource::Jwt(auth.clone()), &default, NOW);
    *tampered.uri_mut() = format!("{RESOURCE}/b").parse().unwrap();
    cases.push(("path swapped", tampered, Some("invalid_signature")));

    let mut unknown_scheme = signed("/a", &KeySource::Hwk, &default, NOW);
    unknown_scheme.headers_mut().insert(
        wire::SIGNATURE_KEY,
        r#"sig=x509;x5u="https://10.0.0.1/k""#.parse().unwrap(),
    );
    cases.push(("unknown scheme", unknown_scheme, Some("unsupported_scheme")));

    let mut partial = signed("/a", &KeySource::Hwk, &default, NOW);
    partial.headers_mut().remove(wire::SIGNATURE_KEY);
    cases.push(("partial headers", partial, Some("invalid_signature")));

    let mut garbage_jwt = signed(
        "/a",
        &KeySource::Jwt("eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.".into()),
        &default,
        NOW,
    );
    garbage_jwt.headers_mut().append("x-noise", "1".parse().unwrap());
    cases.push(("alg none", garbage_jwt, Some("invalid_jwt")));

    for (_, request, _) in &cases {
        for name in [wire::SIGNATURE, wire::SIGNATURE_KEY] {
            if let Some(value) = request.headers().get(name) {
                world.sent.push(value.to_str().unwrap().to_owned());
            }
        }
        if let Some(value) = request.headers().get(wire::SIGNATURE) {
            // The bare base64 too, not only the whole field.
            let value = value.to_str().unwrap();
            if let Some(bytes) = value.split(':').nth(1) {
                world.sent.push(bytes.to_owned());
            }
        }
    }
    cases
}

async fn check_refusal(name: &str, response: Response<Body>, code: &str, sent: &[String]) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    let errors: Vec<_> = response.headers().get_all(wire::SIGNATURE_ERROR).iter().collect();
    assert_eq!(errors.len(), 1, "{name}: exactly one Signature-Error");
    let value = errors[0].to_str().unwrap();
    let sent_code = value
        .strip_prefix("error=")
        .and_then(|rest| rest.split([',', ';']).next())
        .unwrap_or_default();
    assert!(
        SignatureErrorCode::ALL.iter().any(|c| c.as_str() == sent_code),
        "{name}: unregistered code in {value}"
    );
    assert_eq!(sent_code, code, "{name}");
    let cache_control: Vec<_> = response.headers().get_all(http::header::CACHE_CONTROL).iter().collect();
    assert_eq!(cache_control.len(), 1, "{name}");
    assert_eq!(cache_control[0], "no-store", "{name}");

    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
    let members: Vec<&str> = problem.as_object().unwrap().keys().map(String::as_str).collect();
    for member in &members {
        assert!(
            ["type", "title", "status", "error", "detail", "required_input"].contains(member),
            "{name}: unexpected member {member}"
        );
    }
    assert_eq!(problem["error"], code, "{name}");
    for leak in [
        "10.9.8.7",
        "internal error",
        "password",
        "<html>",
        "as.example",
        "agent.example",
        "eyJ",
    ] {
        assert!(!text.contains(leak), "{name}: body holds {leak:?}: {text}");
    }
    for secret in sent {
        assert!(!text.contains(secret.as_str()), "{name}: body echoes request bytes");
    }
}

/// Whether `text` holds something shaped like a compact JWT (`eyJ…​.eyJ…`).
fn holds_jwt(text: &str) -> bool {
    text.match_indices("eyJ").any(|(at, _)| {
        let rest = &text[at..];
        let header_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        rest[header_len..].starts_with(".eyJ")
    })
}

#[tokio::test]
async fn refusals_are_clean_and_logs_hold_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut world = world();
    let cases = battery(&mut world);
    let refusals = cases.iter().filter(|(_, _, code)| code.is_some()).count();
    assert!(refusals >= 12);
    for (name, request, expected) in cases {
        let response = router(&world.aauth).oneshot(request).await.unwrap();
        match expected {
            None => assert_eq!(response.status(), StatusCode::OK, "{name}"),
            Some(code) => check_refusal(name, response, code, &world.sent).await,
        }
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request refused"), "the battery was logged: {logs}");
    assert!(!holds_jwt(&logs), "a JWT reached the logs");
    for secret in &world.sent {
        assert!(
            !logs.contains(secret.as_str()),
            "a token, signature or key reached the logs"
        );
    }
    for line in logs.lines() {
        assert!(
            line.chars().all(|c| c == '\t' || (' '..='~').contains(&c) || c == '…'),
            "unescaped character in log line: {line:?}"
        );
    }
    // The attacker's kid `a"b\c` is logged escaped, never raw.
    assert!(logs.contains(r#"kid=a\"b\\c"#), "{logs}");
    assert!(!logs.contains(r#"a"b\c"#), "{logs}");
}

#[tokio::test]
async fn every_registered_code_is_answered_with_no_store_and_one_signature_error() {
    for &code in SignatureErrorCode::ALL {
        let response: Response<Body> = tower_aauth::Error::signature(code, "fixed").to_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get_all(wire::SIGNATURE_ERROR).iter().count(), 1);
        assert_eq!(response.headers()[wire::SIGNATURE_ERROR], format!("error={code}"));
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
    }
}
