//! RFC 9396 `authorization_details` guards and single-use grants (the CIBA seed's
//! "POST /trade": the resource checks the exact transaction the person approved).

mod support;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use support::harness::*;
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::engine::{AlgPolicy, UnverifiedJws};
use tower_aauth::replay::{ReplayOptions, ReplayProtection};
use tower_aauth::testing::KeySource;

#[derive(Debug, Deserialize)]
struct Trade {
    symbol: String,
    quantity: u64,
}

/// The approved trade covers the request: same symbol, no more than the approved quantity.
fn check_trade(trade: &Trade, request: &Parts) -> bool {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    get("symbol") == Some(trade.symbol.as_str())
        && get("quantity")
            .and_then(|q| q.parse::<u64>().ok())
            .is_some_and(|q| q <= trade.quantity)
}

fn app(harness: &Harness, single_use: bool) -> Router {
    let calls = harness.calls.clone();
    let mut guard = harness.aauth.require_detail("trade", check_trade);
    if single_use {
        guard = guard.single_use();
    }
    Router::new()
        .route(
            "/trade",
            post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "executed"
                }
            })
            .route_layer(guard),
        )
        .layer(harness.aauth.layer())
}

/// An auth token whose `authorization_details` claim is `details` (omitted when `Null`).
fn token_with(harness: &Harness, details: Value) -> String {
    let mut claims = harness
        .access_server
        .auth_claims(RESOURCE, &harness.agent.public_jwk(), "trade", NOW);
    if !details.is_null() {
        claims[engine::claim::AUTHORIZATION_DETAILS] = details;
    }
    harness.access_server.sign(engine::typ::AUTH, &claims)
}

fn approved() -> Value {
    json!([{"type": "trade", "symbol": "ACME", "quantity": 10}])
}

fn trade(harness: &Harness, query: &str, token: &str, created: u64) -> Request<Body> {
    let mut request = Request::post(format!("{RESOURCE}/trade?{query}"))
        .body(Body::empty())
        .unwrap();
    harness
        .agent
        .sign(&mut request, &KeySource::Jwt(token.to_owned()), created);
    request
}

async fn assert_mismatch(harness: &Harness, response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body = body_json(response).await;
    assert_eq!(body["error"], "insufficient_authorization_details");
    assert_eq!(body["authorization_details_type"], "trade");
    assert_eq!(harness.calls(), 0, "the handler must not run");
}

#[tokio::test]
async fn an_approved_trade_within_its_details_is_executed() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = app(&harness, false)
        .oneshot(trade(&harness, "symbol=ACME&quantity=7", &token, NOW))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn a_quantity_above_the_approved_one_is_forbidden_naming_the_type() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = app(&harness, false)
        .oneshot(trade(&harness, "symbol=ACME&quantity=11", &token, NOW))
        .await
        .unwrap();
    assert_mismatch(&harness, response).await;
}

#[tokio::test]
async fn another_symbol_is_forbidden() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = app(&harness, false)
        .oneshot(trade(&harness, "symbol=EVIL&quantity=1", &token, NOW))
        .await
        .unwrap();
    assert_mismatch(&harness, response).await;
}

#[tokio::test]
async fn any_matching_entry_of_several_is_enough() {
    let harness = Harness::new();
    let token = token_with(
        &harness,
        json!([
            {"type": "payment", "amount": "5.00"},
            {"type": "trade", "symbol": "INIT", "quantity": 1},
            {"type": "trade", "symbol": "ACME", "quantity": 10}
        ]),
    );
    let response = app(&harness, false)
        .oneshot(trade(&harness, "symbol=ACME&quantity=10", &token, NOW))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_authorization_details_never_open_the_route() {
    let too_many: Vec<Value> = (0..33)
        .map(|_| json!({"type": "trade", "symbol": "ACME", "quantity": 10}))
        .collect();
    let cases = [
        ("absent", Value::Null),
        ("empty", json!([])),
        (
            "object, not array",
            json!({"type": "trade", "symbol": "ACME", "quantity": 10}),
        ),
        ("string", json!("trade ACME 10")),
        ("entry not an object", json!(["trade"])),
        ("entry without type", json!([{"symbol": "ACME", "quantity": 10}])),
        (
            "unknown types only",
            json!([{"type": "transfer", "symbol": "ACME", "quantity": 10}]),
        ),
        (
            "wrong member type",
            json!([{"type": "trade", "symbol": "ACME", "quantity": "10"}]),
        ),
        ("missing member", json!([{"type": "trade", "symbol": "ACME"}])),
        (
            "a malformed entry beside a matching one",
            json!([
                {"type": "trade", "symbol": "ACME", "quantity": 10},
                {"type": "trade", "symbol": "ACME", "quantity": -1}
            ]),
        ),
        ("too many entries", Value::Array(too_many)),
    ];
    for (case, details) in cases {
        let harness = Harness::new();
        let token = token_with(&harness, details);
        let response = app(&harness, false)
            .oneshot(trade(&harness, "symbol=ACME&quantity=1", &token, NOW))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{case}");
        assert_mismatch(&harness, response).await;
    }
}

#[tokio::test]
async fn no_auth_token_gets_the_matrix_challenge() {
    // Four-party (the harness trusts an access server): an unsigned request must first
    // sign; a signed one gets a resource token for the access server.
    let harness = Harness::new();
    let unsigned = Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=1"))
        .body(Body::empty())
        .unwrap();
    let response = app(&harness, false).oneshot(unsigned).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["aauth-requirement"], "requirement=agent-token");

    let agent_token =
        harness
            .agent_provider
            .agent_token("aauth:trader@agent.example", &harness.agent.public_jwk(), NOW);
    let mut agent = Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=1"))
        .body(Body::empty())
        .unwrap();
    harness.agent.sign(&mut agent, &KeySource::Jwt(agent_token), NOW);
    let response = app(&harness, false).oneshot(agent).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let claims = resource_token_claims(&harness, &response);
    assert_eq!(claims["aud"], AS);
    assert!(claims.get("authorization_details").is_none(), "no step-up configured");
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(harness.calls(), 0);
}

/// The verified claims of the resource token in a 401 `auth-token` challenge.
fn resource_token_claims(harness: &Harness, response: &Response<Body>) -> Value {
    let header = response.headers()["aauth-requirement"].to_str().unwrap();
    assert!(
        header.starts_with("requirement=auth-token; resource-token=\""),
        "{header}"
    );
    let token = header.split('"').nth(1).unwrap();
    let jws = UnverifiedJws::parse(token, AlgPolicy::Strict).unwrap();
    let keys = harness.aauth.public_keys();
    assert!(
        keys.iter().any(|key| jws.verify_with(key).is_ok()),
        "signed by the resource"
    );
    Value::Object(jws.payload().clone())
}

fn step_up_app(harness: &Harness) -> Router {
    let guard = harness
        .aauth
        .require_detail("trade", check_trade)
        .step_up(|request: &Parts| {
            let query: Vec<(String, String)> = url::form_urlencoded::parse(request.uri.query()?.as_bytes())
                .into_owned()
                .collect();
            let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            Some(json!({"symbol": get("symbol")?, "quantity": get("quantity")?.parse::<u64>().ok()?}))
        });
    let calls = harness.calls.clone();
    Router::new()
        .route(
            "/trade",
            post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "executed"
                }
            })
            .route_layer(guard),
        )
        .layer(harness.aauth.layer())
}

#[tokio::test]
async fn a_mismatch_with_step_up_asks_for_the_exact_transaction() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = step_up_app(&harness)
        .oneshot(trade(&harness, "symbol=ACME&quantity=50", &token, NOW))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("signature-error").is_none());
    let claims = resource_token_claims(&harness, &response);
    assert_eq!(
        claims["authorization_details"],
        json!([{"type": "trade", "symbol": "ACME", "quantity": 50}])
    );
    assert_eq!(claims["aud"], AS);
    assert_eq!(claims["agent_jkt"], harness.agent.thumbprint());
    assert_eq!(
        claims["presented_jti"],
        harness
            .access_server
            .auth_claims(RESOURCE, &harness.agent.public_jwk(), "", NOW)["jti"]
    );
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn no_auth_token_with_step_up_gets_a_resource_token_for_the_transaction() {
    let harness = Harness::new();
    let mut request = Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=3"))
        .body(Body::empty())
        .unwrap();
    harness.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let response = step_up_app(&harness).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let claims = resource_token_claims(&harness, &response);
    assert_eq!(
        claims["authorization_details"],
        json!([{"type": "trade", "symbol": "ACME", "quantity": 3}])
    );
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn step_up_without_a_describable_transaction_stays_forbidden() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = step_up_app(&harness)
        .oneshot(trade(&harness, "symbol=ACME", &token, NOW))
        .await
        .unwrap();
    assert_mismatch(&harness, response).await;
}

#[tokio::test]
async fn a_matching_detail_is_served_with_step_up_configured() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let response = step_up_app(&harness)
        .oneshot(trade(&harness, "symbol=ACME&quantity=10", &token, NOW))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn a_query_the_signature_does_not_cover_is_refused() {
    // The predicate reads the query, so it must be signed: an attacker could otherwise
    // change the quantity of a captured request.
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let mut signed = Request::post(format!("{RESOURCE}/trade")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut signed, &KeySource::Jwt(token), NOW);
    let mut tampered = Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=1"))
        .body(Body::empty())
        .unwrap();
    *tampered.headers_mut() = signed.headers().clone();
    let response = app(&harness, false).oneshot(tampered).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error = response.headers()["signature-error"].to_str().unwrap().to_owned();
    assert!(error.starts_with("error=invalid_input"), "{error}");
    assert!(error.contains("\"@query\""), "{error}");
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn a_single_use_grant_serves_once_and_then_is_invalid_jwt() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let first = app(&harness, true)
        .oneshot(trade(&harness, "symbol=ACME&quantity=1", &token, NOW))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    harness.calls.store(0, Ordering::SeqCst);
    // A new, valid signature with the same grant.
    let second = app(&harness, true)
        .oneshot(trade(&harness, "symbol=ACME&quantity=1", &token, NOW + 1))
        .await
        .unwrap();
    assert_refused(&harness, second, "invalid_jwt").await;
}

#[tokio::test]
async fn a_grant_is_reusable_without_single_use() {
    // RPL-16: auth tokens are presented on every request for their lifetime.
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    for created in [NOW, NOW + 1] {
        let response = app(&harness, false)
            .oneshot(trade(&harness, "symbol=ACME&quantity=1", &token, created))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(harness.calls(), 2);
}

#[tokio::test]
async fn a_refused_check_does_not_consume_the_grant() {
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let too_much = app(&harness, true)
        .oneshot(trade(&harness, "symbol=ACME&quantity=99", &token, NOW))
        .await
        .unwrap();
    assert_eq!(too_much.status(), StatusCode::FORBIDDEN);
    let within = app(&harness, true)
        .oneshot(trade(&harness, "symbol=ACME&quantity=5", &token, NOW + 1))
        .await
        .unwrap();
    assert_eq!(within.status(), StatusCode::OK);
}

async fn race(harness: &Harness, requests: Vec<Request<Body>>) -> Vec<StatusCode> {
    let router = app(harness, true);
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let router = router.clone();
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_uses_of_a_single_use_grant_serve_exactly_one() {
    // Distinct signatures (so the replay cache does not decide): the grant does.
    let harness = Harness::new();
    let token = token_with(&harness, approved());
    let requests = (0..32)
        .map(|i| trade(&harness, "symbol=ACME&quantity=1", &token, NOW - i))
        .collect();
    let statuses = race(&harness, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 31);
    assert_eq!(harness.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_identical_requests_serve_exactly_one_even_without_replay_protection() {
    let harness = Harness::with(|b| b.replay(ReplayOptions::new().protection(ReplayProtection::Off)));
    let token = token_with(&harness, approved());
    let request = trade(&harness, "symbol=ACME&quantity=1", &token, NOW);
    let requests = (0..32)
        .map(|_| {
            let mut copy = Request::post(request.uri().clone()).body(Body::empty()).unwrap();
            *copy.headers_mut() = request.headers().clone();
            copy
        })
        .collect();
    let statuses = race(&harness, requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn the_standalone_single_use_layer_consumes_the_grant() {
    let harness = Harness::new();
    let token = harness.auth_token("data.write");
    let calls = harness.calls.clone();
    let router = Router::new()
        .route(
            "/task",
            post(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "done"
                }
            })
            .route_layer(harness.aauth.single_use()),
        )
        .layer(harness.aauth.layer());
    let signed = |created| {
        let mut request = Request::post(format!("{RESOURCE}/task")).body(Body::empty()).unwrap();
        harness
            .agent
            .sign(&mut request, &KeySource::Jwt(token.clone()), created);
        request
    };
    assert_eq!(
        router.clone().oneshot(signed(NOW)).await.unwrap().status(),
        StatusCode::OK
    );
    harness.calls.store(0, Ordering::SeqCst);
    assert_refused(
        &harness,
        router.clone().oneshot(signed(NOW + 1)).await.unwrap(),
        "invalid_jwt",
    )
    .await;
    // Without an auth token the marker refuses rather than letting the request through.
    let mut hwk = Request::post(format!("{RESOURCE}/task")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut hwk, &KeySource::Hwk, NOW);
    let response = router.oneshot(hwk).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn the_handler_reads_the_approved_details_from_auth_grant() {
    let harness = Harness::new();
    let token = token_with(
        &harness,
        json!([{"type": "trade", "symbol": "ACME", "quantity": 10}, {"type": "note", "text": "hi"}]),
    );
    let router = Router::new()
        .route(
            "/trade",
            post(|grant: tower_aauth::AuthGrant| async move {
                let trades: Vec<Trade> = grant.details("trade").unwrap();
                assert_eq!(grant.authorization_details().unwrap().len(), 2);
                format!("{}x{}", trades[0].symbol, trades[0].quantity)
            })
            .route_layer(harness.aauth.require_detail("trade", check_trade)),
        )
        .layer(harness.aauth.layer());
    let response = router
        .oneshot(trade(&harness, "symbol=ACME&quantity=2", &token, NOW))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"ACMEx10");
}
