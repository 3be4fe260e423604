//! The seed's user-consent flow through real loopback servers: the resource behind our
//! layer, the test kit's auth server, the agent's identity server and the flow-following
//! agent. The first three tests run exactly what `cargo run --example demo` runs.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::json;
use tower_aauth::engine;
use tower_aauth::testing::demo::{self, Demo, DemoOptions, PersonAction};
use tower_aauth::testing::{
    AgentClient, Consent, Exchange, FlowStep, KeySource, PendingState, TestAgent, TestAuthServer,
};
use tower_aauth::{Generation, ResourceKey, wire};

async fn run(options: DemoOptions) -> demo::DemoReport {
    let narration = Arc::new(Mutex::new(String::new()));
    let sink = narration.clone();
    let print: demo::Printer = Arc::new(move |text: &str| sink.lock().unwrap().push_str(text));
    let report = demo::run(options, print).await.expect("the demo starts");
    assert!(
        report.passed(),
        "failed checks: {:?}\n{}",
        report.failures().map(|c| &c.name).collect::<Vec<_>>(),
        narration.lock().unwrap()
    );
    report
}

#[tokio::test]
async fn approved_consent_gets_an_auth_token_and_the_data() {
    let report = run(DemoOptions::for_person(PersonAction::Approve)).await;
    assert!(report.checks.iter().any(|c| c.name.contains("answered 200 JSON")));
}

#[tokio::test]
async fn the_demo_ends_with_a_bot_verified_and_named_as_a_bot() {
    let report = run(DemoOptions::for_person(PersonAction::Approve)).await;
    let bot = report.checks.iter().find(|c| c.name.contains("Web Bot Auth bot"));
    assert!(
        bot.is_some_and(|c| c.ok),
        "{:?}",
        report.checks.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn denied_consent_ends_with_403_denied() {
    let report = run(DemoOptions::for_person(PersonAction::Deny)).await;
    assert!(report.checks.iter().any(|c| c.name.contains("403 denied")));
}

#[tokio::test]
async fn unanswered_consent_ends_with_408_expired() {
    let options = DemoOptions {
        pending_lifetime: 2,
        ..DemoOptions::for_person(PersonAction::Ignore)
    };
    let report = run(options).await;
    assert!(report.checks.iter().any(|c| c.name.contains("408 expired")));
}

fn legacy(person: PersonAction) -> DemoOptions {
    DemoOptions {
        generation: Generation::Legacy,
        ..DemoOptions::for_person(person)
    }
}

#[tokio::test]
async fn legacy_generation_approved_consent_replays_the_seed_wire_format_to_the_200() {
    let report = run(legacy(PersonAction::Approve)).await;
    for check in [
        "sig=(scheme=jwks_uri",
        "AAuth: require=auth-token",
        "resource+jwt signed with EdDSA",
        "AAuth: require=interaction",
        "auth+jwt (EdDSA, no dwk)",
        "cnf.jwk has a kid and no alg",
        "answered 200 JSON",
        "hwk-signed GET /whoami",
    ] {
        assert!(report.checks.iter().any(|c| c.name.contains(check)), "{check}");
    }
}

#[tokio::test]
async fn legacy_generation_denied_consent_ends_with_403_denied() {
    let report = run(legacy(PersonAction::Deny)).await;
    assert!(report.checks.iter().any(|c| c.name.contains("403 denied")));
}

#[tokio::test]
async fn legacy_challenge_carries_no_aauth_requirement_and_a_draft11_agent_cannot_read_it() {
    let demo = Demo::start(&legacy(PersonAction::Approve))
        .await
        .expect("servers start");
    let challenge = demo
        .client()
        .send(
            FlowStep::Resource,
            Method::GET,
            &demo.data_url(),
            None,
            &demo.key_source(),
        )
        .await
        .unwrap();
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    assert!(challenge.header(wire::AAUTH_REQUIREMENT).is_none());
    let field = challenge
        .header(engine::header::AAUTH_LEGACY)
        .expect("an AAuth challenge");
    assert!(field.starts_with("require=auth-token; resource-token=\""), "{field}");
    assert!(field.ends_with(&format!("; auth-server=\"{}\"", demo.auth_server.issuer())));
    // A draft -11 client finds no challenge it understands and stops at the 401.
    let strict = AgentClient::new(demo.agent.clone(), demo.key_source());
    let outcome = strict.fetch(Method::GET, &demo.data_url(), None).await.unwrap();
    assert_eq!(outcome.response.status, StatusCode::UNAUTHORIZED);
    assert!(outcome.auth_token.is_none());
}

#[tokio::test]
async fn legacy_auth_server_refuses_a_draft11_resource_token() {
    let flow = deferred(0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let server = TestAuthServer::builder(&issuer)
        .generation(Generation::Legacy)
        .resource_key(&flow.demo.resource, flow.demo.resource_key.clone())
        .build()
        .unwrap();
    tokio::spawn(axum::serve(listener, server.router()).into_future());
    // The typ is checked before the audience: a draft -11 token is not a demo-generation one.
    let answer = flow
        .client
        .send(
            FlowStep::Token,
            Method::POST,
            &format!("{issuer}/token"),
            Some(&json!({ "resource_token": flow.resource_token })),
            &flow.demo.key_source(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code().as_deref(), Some("invalid_resource_token"));
    assert_eq!(answer.json().unwrap()["detail"], "the token is not a resource token");
}

/// Drives the flow by hand up to the auth server's 202.
struct Deferred {
    demo: Demo,
    client: AgentClient,
    resource_token: String,
    pending_url: String,
    code: String,
}

fn resource_token_of(exchange: &Exchange) -> String {
    let field = exchange.header(wire::AAUTH_REQUIREMENT).expect("a challenge");
    let start = field.find("resource-token=\"").expect("a resource token") + "resource-token=\"".len();
    field[start..].trim_end_matches('"').to_owned()
}

async fn token_request(demo: &Demo, client: &AgentClient, resource_token: &str, source: &KeySource) -> Exchange {
    let endpoint = format!("{}/token", demo.auth_server.issuer());
    client
        .send(
            FlowStep::Token,
            Method::POST,
            &endpoint,
            Some(&json!({ "resource_token": resource_token })),
            source,
        )
        .await
        .expect("the auth server answers")
}

async fn deferred(retry_after: u64) -> Deferred {
    let options = DemoOptions {
        retry_after,
        ..DemoOptions::default()
    };
    let demo = Demo::start(&options).await.expect("servers start");
    let client = demo.client();
    let challenge = client
        .send(
            FlowStep::Resource,
            Method::GET,
            &demo.data_url(),
            None,
            &demo.key_source(),
        )
        .await
        .unwrap();
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let resource_token = resource_token_of(&challenge);
    let accepted = token_request(&demo, &client, &resource_token, &demo.key_source()).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let pending_url = accepted.header("location").unwrap().to_owned();
    let requirement = accepted.header(wire::AAUTH_REQUIREMENT).unwrap();
    let code = requirement
        .rsplit("code=\"")
        .next()
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    Deferred {
        demo,
        client,
        resource_token,
        pending_url,
        code,
    }
}

impl Deferred {
    async fn poll_as(&self, client: &AgentClient, source: &KeySource) -> Exchange {
        client
            .send(FlowStep::Poll, Method::GET, &self.pending_url, None, source)
            .await
            .unwrap()
    }

    async fn poll(&self) -> Exchange {
        self.poll_as(&self.client, &self.demo.key_source()).await
    }
}

#[tokio::test]
async fn polling_faster_than_retry_after_gets_429_slow_down_and_a_longer_interval() {
    let flow = deferred(5).await;
    flow.demo.auth_server.approve(&flow.code);
    let answer = flow.poll().await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error_code().as_deref(), Some(engine::poll::SLOW_DOWN));
    assert_eq!(answer.header("retry-after"), Some("10"));
    assert!(answer.json().unwrap().get("auth_token").is_none());
    assert!(matches!(
        flow.demo.auth_server.pending_state(&flow.code),
        Some(PendingState::Approved { .. })
    ));
}

#[tokio::test]
async fn another_agent_polling_the_pending_url_gets_403_and_changes_nothing() {
    let flow = deferred(0).await;
    let intruder = AgentClient::new(TestAgent::generate(), KeySource::Hwk);
    let answer = flow.poll_as(&intruder, &KeySource::Hwk).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_ne!(answer.error_code().as_deref(), Some(engine::poll::DENIED));
    assert!(flow.demo.auth_server.approve(&flow.code));
    let own = flow.poll().await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.json().unwrap().contains_key("auth_token"));
}

#[tokio::test]
async fn an_unapproved_poll_is_202_pending_with_retry_after() {
    let flow = deferred(0).await;
    let answer = flow.poll().await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.header("retry-after"), Some("0"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.json().unwrap()["status"], "pending");
}

#[tokio::test]
async fn after_a_terminal_answer_the_pending_url_is_410() {
    let flow = deferred(0).await;
    assert!(flow.demo.auth_server.deny(&flow.code));
    let denied = flow.poll().await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.error_code().as_deref(), Some(engine::poll::DENIED));
    assert_eq!(flow.poll().await.status, StatusCode::GONE);
}

#[tokio::test]
async fn a_decided_code_cannot_be_decided_again() {
    let flow = deferred(0).await;
    assert!(flow.demo.auth_server.deny(&flow.code));
    assert!(!flow.demo.auth_server.approve(&flow.code));
    assert_eq!(flow.poll().await.error_code().as_deref(), Some(engine::poll::DENIED));
}

#[tokio::test]
async fn an_unsigned_poll_is_refused_with_a_signature_error() {
    let flow = deferred(0).await;
    let answer = reqwest::get(&flow.pending_url).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers()[wire::SIGNATURE_ERROR], "error=invalid_signature");
    assert!(flow.demo.auth_server.approve(&flow.code));
}

#[tokio::test]
async fn a_resource_token_bound_to_another_agent_is_refused() {
    let flow = deferred(0).await;
    let thief = AgentClient::new(TestAgent::generate(), KeySource::Hwk);
    let answer = token_request(&flow.demo, &thief, &flow.resource_token, &KeySource::Hwk).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code().as_deref(), Some("invalid_resource_token"));
}

#[tokio::test]
async fn a_resource_token_not_signed_by_its_resource_is_refused() {
    let flow = deferred(0).await;
    let claims = claims_of(&flow.resource_token);
    let forged = ResourceKey::generate().with_kid("resource-key-1").sign_jwt(
        engine::typ::RESOURCE,
        engine::alg::ED25519,
        &serde_json::Value::Object(claims),
    );
    let answer = token_request(&flow.demo, &flow.client, &forged, &flow.demo.key_source()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code().as_deref(), Some("invalid_resource_token"));
}

#[tokio::test]
async fn an_unsigned_token_request_never_reaches_consent() {
    let flow = deferred(0).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/token", flow.demo.auth_server.issuer()))
        .header("content-type", "application/json")
        .body(json!({ "resource_token": flow.resource_token }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(answer.headers().contains_key(wire::SIGNATURE_ERROR));
}

fn claims_of(token: &str) -> serde_json::Map<String, serde_json::Value> {
    let payload = token.split('.').nth(1).unwrap();
    tower_aauth::engine::parse_json_object(&tower_aauth::engine::b64url_decode(payload).unwrap()).unwrap()
}

/// An auth server on loopback with `consent`, trusting the resource key `resource`.
async fn auth_server(consent: Consent, resource: &str, key: &ResourceKey) -> TestAuthServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let server = TestAuthServer::builder(&issuer)
        .consent(consent)
        .retry_after(0)
        .resource_key(resource, key.public_jwk())
        .build()
        .unwrap();
    tokio::spawn(axum::serve(listener, server.router()).into_future());
    server
}

/// A resource token as a resource would mint it (digest §5.3, with an access server).
fn resource_token(key: &ResourceKey, resource: &str, auth_server: &str, agent: &TestAgent) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    key.sign_jwt(
        engine::typ::RESOURCE,
        engine::alg::ED25519,
        &json!({
            "iss": resource, "dwk": engine::dwk::RESOURCE, "aud": auth_server, "jti": "rt-1",
            "iat": now, "exp": now + 300, "agent_jkt": agent.thumbprint(), "scope": "data.read",
        }),
    )
}

const RESOURCE: &str = "https://resource.example";

#[tokio::test]
async fn immediate_consent_answers_200_with_an_auth_token_bound_to_the_agent() {
    let key = ResourceKey::generate();
    let server = auth_server(Consent::Immediate, RESOURCE, &key).await;
    let agent = TestAgent::generate();
    let client = AgentClient::new(agent.clone(), KeySource::Hwk);
    let token = resource_token(&key, RESOURCE, server.issuer(), &agent);
    let answer = client
        .send(
            FlowStep::Token,
            Method::POST,
            &format!("{}/token", server.issuer()),
            Some(&json!({ "resource_token": token })),
            &KeySource::Hwk,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json().unwrap();
    assert_eq!(body["expires_in"], 3600);
    let claims = claims_of(body["auth_token"].as_str().unwrap());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["iss"], server.issuer());
    assert_eq!(claims["dwk"], engine::dwk::ACCESS);
    assert_eq!(claims["scope"], "data.read");
    assert_eq!(claims["cnf"]["jwk"]["x"], agent.public_jwk().x());
    assert_eq!(claims["cnf"]["jwk"]["alg"], "Ed25519");
}

#[tokio::test]
async fn auto_approval_defers_once_and_the_first_poll_gets_the_token() {
    let key = ResourceKey::generate();
    let server = auth_server(Consent::AutoApprove, RESOURCE, &key).await;
    let agent = TestAgent::generate();
    let client = AgentClient::new(agent.clone(), KeySource::Hwk);
    let token = resource_token(&key, RESOURCE, server.issuer(), &agent);
    let endpoint = format!("{}/token", server.issuer());
    let body = json!({ "resource_token": token });
    let accepted = client
        .send(FlowStep::Token, Method::POST, &endpoint, Some(&body), &KeySource::Hwk)
        .await
        .unwrap();
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let pending = accepted.header("location").unwrap().to_owned();
    let granted = client
        .send(FlowStep::Poll, Method::GET, &pending, None, &KeySource::Hwk)
        .await
        .unwrap();
    assert_eq!(granted.status, StatusCode::OK);
    assert!(granted.json().unwrap().contains_key("auth_token"));
}

#[tokio::test]
async fn a_resource_token_for_another_auth_server_is_refused() {
    let key = ResourceKey::generate();
    let server = auth_server(Consent::Immediate, RESOURCE, &key).await;
    let agent = TestAgent::generate();
    let client = AgentClient::new(agent.clone(), KeySource::Hwk);
    let token = resource_token(&key, RESOURCE, "https://other-as.example", &agent);
    let answer = client
        .send(
            FlowStep::Token,
            Method::POST,
            &format!("{}/token", server.issuer()),
            Some(&json!({ "resource_token": token })),
            &KeySource::Hwk,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code().as_deref(), Some("invalid_resource_token"));
}
