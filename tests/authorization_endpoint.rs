//! The authorization endpoint (AAuth draft -11, "Authorization Endpoint"; digest §5.4):
//! an agent presenting a person token asks for scopes and is answered a resource token,
//! or one of the draft's errors. No refusal mints a token or reaches the application.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::fixtures::{AS, NOW, PS, RESOURCE, access_server, agent, body_json, decode, person_server};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::policy::{AccountDecision, AgentId, CeilingSet, PersonId, Revoked};
use tower_aauth::testing::{KeySource, ManualClock, TestAgent};
use tower_aauth::{AAuth, AAuthBuilder, engine, wire};

const PATH: &str = "/aauth/authorize";

struct World {
    aauth: AAuth,
    agent: TestAgent,
    calls: Arc<AtomicUsize>,
}

/// The account decision every world uses: person-1 holds `acme`; `linked-later` needs a
/// step at the resource.
fn accounts(person: &tower_aauth::policy::PersonId, account: &str) -> AccountDecision {
    match (person.subject(), account) {
        ("person-1", "acme") => AccountDecision::Holds,
        (_, "linked-later") => AccountDecision::NeedsInteraction,
        _ => AccountDecision::NotHeld,
    }
}

/// Three-party: the person server [`PS`] is trusted, no access server.
fn world() -> World {
    world_with(|builder| builder)
}

fn world_with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> World {
    let agent = agent();
    let resolver = StaticResolver::new()
        .with_key(PS, engine::dwk::PERSON, person_server().public_jwk())
        .with_key(AS, engine::dwk::ACCESS, access_server().public_jwk())
        .with_key(
            support::fixtures::AP,
            engine::dwk::AGENT,
            support::fixtures::agent_provider().public_jwk(),
        );
    let builder = AAuth::builder(RESOURCE)
        .clock(ManualClock::new(NOW))
        .key_resolver(resolver)
        .person_server(PS)
        .scope("data.read", "Read your data")
        .scope("data.write", "Change your data")
        .authorization_endpoint(PATH, accounts);
    World {
        aauth: adjust(builder).build().unwrap(),
        agent,
        calls: Arc::default(),
    }
}

impl World {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        let calls = self.calls.clone();
        let router = Router::new()
            .fallback(any(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "application" }
            }))
            .layer(self.aauth.layer());
        router.oneshot(request).await.unwrap()
    }

    fn person_token(&self) -> String {
        person_server().person_token(RESOURCE, &self.agent.public_jwk(), NOW)
    }

    /// A POST of `body` presenting `source`, covering content-type and content-digest.
    fn post(&self, body: &[u8], content_type: Option<&str>, source: &KeySource) -> Request<Body> {
        let mut builder = Request::post(format!("{RESOURCE}{PATH}"));
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let mut request = builder.body(Body::from(body.to_vec())).unwrap();
        self.agent.sign_with_body(&mut request, body, source, NOW);
        request
    }

    /// The agent asks for `body` (JSON) with its person token.
    fn ask(&self, body: &Value) -> Request<Body> {
        let token = KeySource::Jwt(self.person_token());
        self.post(body.to_string().as_bytes(), Some("application/json"), &token)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The resource token of a `200`.
async fn resource_token(response: Response<Body>) -> (Value, Value) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = body_json(response).await;
    decode(body["resource_token"].as_str().expect("a resource_token member"))
}

/// Asserts a body error: status, the problem's `error`, no `Signature-Error`, nothing
/// minted, the application not called.
async fn assert_error(case: &str, world: &World, response: Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "{case}");
    assert!(response.headers().get(wire::SIGNATURE_ERROR).is_none(), "{case}");
    assert_eq!(response.headers()["content-type"], "application/problem+json", "{case}");
    assert_eq!(body_json(response).await["error"], code, "{case}");
    assert_eq!(world.aauth.minted_resource_tokens(), 0, "{case}: nothing minted");
    assert_eq!(world.calls(), 0, "{case}: the application must not run");
}

#[tokio::test]
async fn a_person_token_is_answered_a_resource_token_for_its_person_server() {
    let w = world();
    let response = w.send(w.ask(&json!({ "scope": "data.read data.write" }))).await;
    let (header, claims) = resource_token(response).await;
    assert_eq!(header["typ"], "aa-resource+jwt");
    assert_eq!(header["kid"], w.aauth.active_kid());
    assert_eq!(claims["iss"], RESOURCE);
    assert_eq!(claims["dwk"], "aauth-resource.json");
    assert_eq!(claims["aud"], PS, "three-party: the person token's issuer");
    assert_eq!(claims["ps"], PS);
    assert_eq!(claims["sub"], "person-1");
    assert_eq!(claims["presented_jti"], format!("pt-{NOW}"));
    assert_eq!(claims["agent_jkt"], w.agent.thumbprint());
    assert_eq!(claims["scope"], "data.read data.write");
    assert!(claims.get("account").is_none());
    assert!(claims.get("agent").is_none() && claims.get("cnf").is_none());
    assert_eq!(w.aauth.minted_resource_tokens(), 1);
    assert_eq!(w.calls(), 0, "answered by the layer");
}

#[tokio::test]
async fn mission_and_tenant_are_copied_from_the_person_token() {
    let w = world();
    let person = person_server();
    let token = person.sign(
        engine::typ::PERSON,
        &json!({
            "iss": PS, "dwk": "aauth-person.json", "aud": RESOURCE, "sub": "person-1",
            "jti": "pt-mission", "cnf": { "jwk": w.agent.public_jwk().to_json() },
            "iat": NOW, "exp": NOW + 600,
            "mission_s256": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "tenant": "t-1",
        }),
    );
    let body = json!({ "scope": "data.read" }).to_string();
    let response = w
        .send(w.post(body.as_bytes(), Some("application/json"), &KeySource::Jwt(token)))
        .await;
    let (_, claims) = resource_token(response).await;
    assert_eq!(claims["mission_s256"], "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    assert_eq!(claims["tenant"], "t-1");
    assert_eq!(claims["presented_jti"], "pt-mission");
}

#[tokio::test]
async fn with_an_access_server_the_resource_token_is_for_it() {
    let w = world_with(|builder| builder.auth_server(AS));
    let response = w.send(w.ask(&json!({ "scope": "data.read" }))).await;
    let (_, claims) = resource_token(response).await;
    assert_eq!(claims["aud"], AS);
    assert_eq!(claims["ps"], PS);
}

#[tokio::test]
async fn an_account_the_person_holds_is_echoed() {
    let w = world();
    let response = w.send(w.ask(&json!({ "scope": "data.read", "account": "acme" }))).await;
    let (_, claims) = resource_token(response).await;
    assert_eq!(claims["account"], "acme");
}

#[tokio::test]
async fn unknown_members_are_ignored() {
    let w = world();
    let response = w.send(w.ask(&json!({ "scope": "data.read", "login_hint": "x" }))).await;
    let (_, claims) = resource_token(response).await;
    assert_eq!(claims["scope"], "data.read");
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("not JSON", b"scope=data.read".to_vec(), Some("application/json")),
        ("an array", br#"["data.read"]"#.to_vec(), Some("application/json")),
        ("no scope", br#"{"account":"acme"}"#.to_vec(), Some("application/json")),
        (
            "scope not a string",
            br#"{"scope":["data.read"]}"#.to_vec(),
            Some("application/json"),
        ),
        ("scope empty", br#"{"scope":""}"#.to_vec(), Some("application/json")),
        (
            "scope not scope tokens",
            br#"{"scope":"data.read \"x"}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "account not a string",
            br#"{"scope":"data.read","account":7}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "account empty",
            br#"{"scope":"data.read","account":""}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "account with a control character",
            br#"{"scope":"data.read","account":"a\n"}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "a duplicate member",
            br#"{"scope":"data.read","scope":"data.write"}"#.to_vec(),
            Some("application/json"),
        ),
        (
            "not JSON by its type",
            br#"{"scope":"data.read"}"#.to_vec(),
            Some("text/plain"),
        ),
        ("no content type", br#"{"scope":"data.read"}"#.to_vec(), None),
    ];
    for (case, body, content_type) in cases {
        let w = world();
        let request = w.post(&body, content_type, &KeySource::Jwt(w.person_token()));
        let response = w.send(request).await;
        assert_error(case, &w, response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_scope_the_resource_does_not_define_is_invalid_scope() {
    for scope in ["data.delete", "data.read data.delete"] {
        let w = world();
        let response = w.send(w.ask(&json!({ "scope": scope }))).await;
        assert_error(scope, &w, response, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
}

#[tokio::test]
async fn an_account_the_person_does_not_hold_is_invalid_account() {
    let w = world();
    let response = w
        .send(w.ask(&json!({ "scope": "data.read", "account": "globex" })))
        .await;
    assert_error("globex", &w, response, StatusCode::BAD_REQUEST, "invalid_account").await;
}

#[tokio::test]
async fn an_account_that_needs_interaction_hands_the_person_over_to_the_resources_interaction() {
    let clock = ManualClock::new(NOW);
    let w = world_with(|builder| builder.clock(clock.clone()));
    let router = Router::new()
        .route(
            "/notes",
            axum::routing::get({
                let calls = w.calls.clone();
                move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { "notes" }
                }
            })
            .route_layer(w.aauth.require_session(["data.read"])),
        )
        .merge(w.aauth.pending_router())
        .layer(w.aauth.layer());
    let asked = w.ask(&json!({ "scope": "data.read", "account": "linked-later" }));
    let held = router.clone().oneshot(asked).await.unwrap();
    assert_eq!(held.status(), StatusCode::ACCEPTED);
    assert!(
        held.headers()["aauth-requirement"]
            .to_str()
            .unwrap()
            .starts_with("requirement=interaction"),
        "{:?}",
        held.headers()
    );
    let (location, code) = support::session::pending_of(&held);
    // The resource's own page sees who asked, and for which account, then approves.
    let interaction = w.aauth.interaction(&code).await.expect("the interaction is open");
    assert_eq!(
        interaction.person,
        Some(PersonId::new(PS, "person-1")),
        "the person of the person token"
    );
    assert_eq!(interaction.account.as_deref(), Some("linked-later"));
    assert!(interaction.approve("linked-later").await);
    clock.advance(5);
    let mut poll = Request::get(&location).body(Body::empty()).unwrap();
    w.agent.sign(&mut poll, &KeySource::Hwk, NOW + 5);
    let approved = router.clone().oneshot(poll).await.unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    let session = support::session::access_of(&approved).expect("the session arrives on the pending URL's 200");
    assert_eq!(w.calls(), 0, "the application is never called");
    let use_session = |created: u64| {
        let mut request = Request::get(format!("{RESOURCE}/notes"))
            .header("authorization", format!("AAuth {session}"))
            .body(Body::empty())
            .unwrap();
        let mut options = tower_aauth::testing::SignOptions::default();
        options.components.push("authorization".to_owned());
        w.agent.sign_with(&mut request, &KeySource::Hwk, created, &options);
        request
    };
    assert_eq!(
        router.clone().oneshot(use_session(NOW + 6)).await.unwrap().status(),
        StatusCode::OK
    );
    // The person who asked is revoked: the session they started ends with them.
    w.aauth
        .revocations()
        .revoke(Revoked::Person(PersonId::new(PS, "person-1")))
        .unwrap();
    let refused = router.oneshot(use_session(NOW + 7)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()[wire::SIGNATURE_ERROR], "error=revoked_jwt");
    assert_eq!(w.calls(), 1, "served once, before the revocation; not after");
}

#[tokio::test]
async fn a_scope_above_the_agents_ceiling_is_refused() {
    let w = world();
    let ceilings = CeilingSet::new().default_ceiling("data.read").unwrap();
    w.aauth.scope_ceilings().replace(ceilings);
    let response = w.send(w.ask(&json!({ "scope": "data.write" }))).await;
    assert_error("ceiling", &w, response, StatusCode::FORBIDDEN, "scope_above_ceiling").await;
}

#[tokio::test]
async fn without_a_person_token_the_answer_is_requirement_person_token() {
    let w = world();
    let body = json!({ "scope": "data.read" }).to_string();
    let agent_token =
        support::fixtures::agent_provider().agent_token("aauth:assistant@agent.example", &w.agent.public_jwk(), NOW);
    let auth_token = access_server().auth_token(RESOURCE, &w.agent.public_jwk(), "data.read", NOW);
    let unsigned = Request::post(format!("{RESOURCE}{PATH}"))
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let cases = vec![
        ("unsigned", unsigned),
        (
            "hwk",
            w.post(body.as_bytes(), Some("application/json"), &KeySource::Hwk),
        ),
        (
            "agent token",
            w.post(body.as_bytes(), Some("application/json"), &KeySource::Jwt(agent_token)),
        ),
        (
            "auth token",
            w.post(body.as_bytes(), Some("application/json"), &KeySource::Jwt(auth_token)),
        ),
    ];
    for (case, request) in cases {
        let w = world_with(|builder| builder.auth_server(AS));
        let response = w.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            response.headers()[wire::AAUTH_REQUIREMENT],
            "requirement=person-token",
            "{case}"
        );
        assert_eq!(w.aauth.minted_resource_tokens(), 0, "{case}");
        assert_eq!(w.calls(), 0, "{case}");
    }
}

#[tokio::test]
async fn a_body_the_signature_does_not_cover_is_invalid_input() {
    let w = world();
    let body = json!({ "scope": "data.read" }).to_string();
    let mut request = Request::post(format!("{RESOURCE}{PATH}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    w.agent.sign(&mut request, &KeySource::Jwt(w.person_token()), NOW);
    let response = w.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error = response.headers()[wire::SIGNATURE_ERROR].to_str().unwrap().to_owned();
    assert!(error.starts_with("error=invalid_input"), "{error}");
    assert!(error.contains("content-digest"), "{error}");
    assert_eq!(w.aauth.minted_resource_tokens(), 0);
    assert_eq!(w.calls(), 0);
}

#[tokio::test]
async fn a_revoked_person_token_is_refused_and_never_named_in_a_resource_token() {
    let w = world();
    w.aauth
        .revocations()
        .revoke(Revoked::Jti {
            issuer: PS.to_owned(),
            jti: format!("pt-{NOW}"),
        })
        .unwrap();
    let response = w.send(w.ask(&json!({ "scope": "data.read" }))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[wire::SIGNATURE_ERROR], "error=revoked_jwt");
    assert_eq!(w.aauth.minted_resource_tokens(), 0);
    assert_eq!(w.calls(), 0);
}

#[tokio::test]
async fn a_revoked_agent_gets_no_resource_token() {
    let w = world();
    // The agent's key is bound to its identifier by an agent token first.
    let token =
        support::fixtures::agent_provider().agent_token("aauth:assistant@agent.example", &w.agent.public_jwk(), NOW);
    let mut request = Request::get(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    w.agent.sign(&mut request, &KeySource::Jwt(token), NOW);
    assert_eq!(w.send(request).await.status(), StatusCode::OK);
    let agent: AgentId = "aauth:assistant@agent.example".parse().unwrap();
    w.aauth.revocations().revoke(Revoked::Agent(agent)).unwrap();
    let response = w.send(w.ask(&json!({ "scope": "data.read" }))).await;
    assert_eq!(response.headers()[wire::SIGNATURE_ERROR], "error=revoked_jwt");
    assert_eq!(w.aauth.minted_resource_tokens(), 0);
}

#[tokio::test]
async fn only_post_is_served() {
    let w = world();
    let mut request = Request::get(format!("{RESOURCE}{PATH}")).body(Body::empty()).unwrap();
    w.agent.sign(&mut request, &KeySource::Jwt(w.person_token()), NOW);
    let response = w.send(request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(w.calls(), 0);
    assert_eq!(w.aauth.minted_resource_tokens(), 0);
}

#[tokio::test]
async fn the_metadata_advertises_the_endpoint_only_when_mounted() {
    let w = world();
    assert_eq!(
        w.aauth.metadata()["authorization_endpoint"],
        format!("{RESOURCE}{PATH}")
    );
    let plain = AAuth::builder(RESOURCE)
        .key_resolver(StaticResolver::new())
        .build()
        .unwrap();
    assert!(plain.metadata().get("authorization_endpoint").is_none());
}

mod garbage {
    //! Any body an agent signs with its person token is answered without a 5xx and mints
    //! nothing unless it is a well-formed request for declared scopes.

    use proptest::prelude::any;
    use proptest::prelude::*;

    use super::*;

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            "[ -~]{0,64}".prop_map(String::into_bytes),
            (any::<String>(), any::<Option<String>>()).prop_map(|(scope, account)| {
                let mut object = serde_json::Map::new();
                object.insert("scope".into(), scope.into());
                if let Some(account) = account {
                    object.insert("account".into(), account.into());
                }
                Value::Object(object).to_string().into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_signed_body_of_any_bytes_is_never_a_server_error(body in body()) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let w = world();
            let request = w.post(&body, Some("application/json"), &KeySource::Jwt(w.person_token()));
            let response = rt.block_on(w.send(request));
            let status = response.status();
            prop_assert!(!status.is_server_error(), "{status}");
            prop_assert!(status == StatusCode::OK || status.is_client_error(), "{status}");
            prop_assert_eq!(w.calls(), 0);
            prop_assert_eq!(w.aauth.minted_resource_tokens(), u64::from(status == StatusCode::OK));
        }
    }
}
