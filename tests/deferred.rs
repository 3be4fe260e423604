//! Deferred delivery of the `auth-token` requirement (digest §6.3): `202` + pending URL,
//! the held request executed once on the first sufficient poll, stored results, key
//! binding, `slow_down`, expiry, and the bounds.

mod support;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::app::*;
use tower::ServiceExt;
use tower_aauth::DeferredOptions;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent};
use tower_aauth::{AAuthBuilder, VerifiedRequest};

const PREFIX: &str = "https://resource.example/aauth/pending/";

/// Four-party posture; `/report` (POST, `data.write`) and `/data` (GET, `data.read`) are
/// deferred, `/plain` (GET, `data.read`) is not.
fn app() -> App {
    app_with(|b| b)
}

fn app_with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> App {
    App::with(|b| adjust(b.person_server(PS).auth_server(AS)))
}

fn router(app: &App) -> Router {
    let a = &app.aauth;
    let calls = app.calls.clone();
    let handler = move |request: Request<Body>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let token = request
                .extensions()
                .get::<VerifiedRequest>()
                .and_then(|v| v.token.clone());
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut response = axum::Json(json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "content_type": parts.headers.get("content-type").map(|v| v.to_str().unwrap()),
                "body": String::from_utf8_lossy(&body),
                "token": token.as_ref().map(|t| t.claims.kind.typ()),
                "scope": token.as_ref().map(|t| t.claims.scope.to_string()),
            }))
            .into_response();
            response.headers_mut().insert("x-handler", "ran".parse().unwrap());
            response
        }
    };
    use axum::response::IntoResponse;
    Router::new()
        .route(
            "/report",
            post(handler.clone()).route_layer(a.require_scopes(["data.write"]).deferred()),
        )
        .route(
            "/data",
            get(handler.clone()).route_layer(a.require_scopes(["data.read"]).deferred()),
        )
        .route("/plain", get(handler).route_layer(a.require_scopes(["data.read"])))
        .merge(a.pending_router())
        .layer(a.layer())
}

async fn send(app: &App, request: Request<Body>) -> Response<Body> {
    router(app).oneshot(request).await.expect("infallible")
}

fn now(app: &App) -> u64 {
    use tower_aauth::Clock;
    app.clock.now()
}

/// The held request: a signed POST with a JSON body, presenting the agent token.
async fn post_report(app: &App, body: &str) -> Response<Body> {
    let mut request = Request::post(format!("{RESOURCE}/report"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    app.agent
        .sign_with_body(&mut request, body.as_bytes(), &jwt(app.agent_token()), now(app));
    send(app, request).await
}

/// A signed GET of `location` by `agent` with `source`, at the clock's time.
async fn poll_as(app: &App, agent: &TestAgent, location: &str, source: &KeySource) -> Response<Body> {
    let mut request = Request::get(location).body(Body::empty()).unwrap();
    agent.sign(&mut request, source, now(app));
    send(app, request).await
}

async fn poll(app: &App, location: &str, source: &KeySource) -> Response<Body> {
    poll_as(app, &app.agent, location, source).await
}

fn write_token(app: &App) -> KeySource {
    jwt(app.as_auth_token("data.write"))
}

/// An AS auth token for the agent with `scope` and `jti`, valid for `lifetime` seconds.
fn token_with(app: &App, scope: &str, jti: &str, lifetime: u64) -> KeySource {
    let mut claims = app
        .access_server
        .auth_claims(RESOURCE, &app.agent.public_jwk(), scope, NOW);
    claims["ps"] = PS.into();
    claims["jti"] = jti.into();
    claims["exp"] = (NOW + lifetime).into();
    jwt(app.access_server.sign(engine::typ::AUTH, &claims))
}

fn location(response: &Response<Body>) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn resource_token(response: &Response<Body>) -> String {
    let value = response.headers()["aauth-requirement"].to_str().unwrap();
    value
        .strip_prefix("requirement=auth-token; resource-token=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not an auth-token requirement: {value}"))
        .to_owned()
}

async fn json_body(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Asserts a `202 {"status":"pending"}` with every required header, and returns it.
async fn assert_pending(app: &App, response: Response<Body>, calls: usize) -> (String, Option<String>) {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("signature-error").is_none());
    let location = location(&response);
    assert!(location.starts_with(PREFIX), "{location}");
    let token = response
        .headers()
        .get("aauth-requirement")
        .map(|_| resource_token(&response));
    assert_eq!(json_body(response).await, json!({ "status": "pending" }));
    assert_eq!(app.calls(), calls, "handler calls");
    (location, token)
}

/// Asserts a problem answer of the pending URL with `code`, `no-store`, no handler run.
async fn assert_poll_problem(app: &App, response: Response<Body>, status: StatusCode, code: &str, calls: usize) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(json_body(response).await["error"], code);
    assert_eq!(app.calls(), calls, "handler calls");
}

/// Defers the POST and waits out `Retry-After`; returns the pending URL.
async fn deferred_report(app: &App) -> String {
    let response = post_report(app, r#"{"title":"q3"}"#).await;
    let (location, _) = assert_pending(app, response, 0).await;
    app.clock.advance(5);
    location
}

#[tokio::test]
async fn deferred_route_answers_202_with_pending_url_and_auth_token_requirement() {
    let app = app();
    let response = post_report(&app, "{}").await;
    let (location, token) = assert_pending(&app, response, 0).await;
    let id = location.strip_prefix(PREFIX).unwrap();
    assert!(id.len() >= 22, "128 random bits: {id}");
    let (header, claims) = decode(&token.expect("an auth-token requirement"));
    assert_eq!(header["typ"], engine::typ::RESOURCE);
    assert_eq!(claims["scope"], "data.write");
    assert_eq!(claims["aud"], AS);
    assert_eq!(claims["agent_jkt"], app.agent.thumbprint());
}

#[tokio::test]
async fn each_deferred_request_gets_its_own_pending_url() {
    let app = app();
    let first = location(&post_report(&app, "{}").await);
    // A second signature (the same one would be refused as a replay).
    app.clock.advance(1);
    let second = location(&post_report(&app, "{}").await);
    assert_ne!(first, second);
}

#[tokio::test]
async fn routes_without_the_modifier_still_answer_401() {
    let app = app();
    let mut request = get_request("/plain");
    app.agent.sign(&mut request, &jwt(app.agent_token()), NOW);
    let response = send(&app, request).await;
    assert_auth_challenge(&app, &response);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_sufficient_token_on_the_first_request_is_served_without_deferral() {
    let app = app();
    let mut request = get_request("/data");
    app.agent.sign(&mut request, &jwt(app.as_auth_token("data.read")), NOW);
    let response = send(&app, request).await;
    assert_served(&app, &response);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn first_sufficient_poll_runs_the_held_request_once_and_returns_its_response() {
    let app = app();
    let location = deferred_report(&app).await;
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-handler"], "ran");
    assert_eq!(app.calls(), 1, "the held request runs exactly once");
    let body = json_body(response).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/report");
    assert_eq!(body["content_type"], "application/json");
    assert_eq!(body["body"], r#"{"title":"q3"}"#);
    // The handler sees the identity the poll brought: the auth token.
    assert_eq!(body["token"], engine::typ::AUTH);
    assert_eq!(body["scope"], "data.write");
}

#[tokio::test]
async fn a_repeated_poll_with_the_same_token_gets_the_stored_result() {
    let app = app();
    let location = deferred_report(&app).await;
    let first = json_body(poll(&app, &location, &write_token(&app)).await).await;
    // Immediately (a retry after a lost response) and later: never run again.
    let again = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["x-handler"], "ran");
    assert_eq!(json_body(again).await, first);
    app.clock.advance(600);
    let later = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(json_body(later).await, first);
    assert_eq!(app.calls(), 1, "answered from the stored result");
}

#[tokio::test]
async fn the_stored_result_ends_with_the_auth_tokens_exp() {
    let app = app();
    let location = deferred_report(&app).await;
    let token = token_with(&app, "data.write", "at-short", 120);
    assert_eq!(poll(&app, &location, &token).await.status(), StatusCode::OK);
    app.clock.set(NOW + 120);
    let response = poll(&app, &location, &token).await;
    // The token expired: the layer refuses it before the pending URL is consulted.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=expired_jwt");
    // Presenting a fresh token does not bring the result back.
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::GONE, "invalid_code", 1).await;
}

#[tokio::test]
async fn another_auth_token_after_completion_gets_410() {
    let app = app();
    let location = deferred_report(&app).await;
    assert_eq!(poll(&app, &location, &write_token(&app)).await.status(), StatusCode::OK);
    let other = token_with(&app, "data.write", "at-other", 3600);
    let response = poll(&app, &location, &other).await;
    assert_poll_problem(&app, response, StatusCode::GONE, "invalid_code", 1).await;
}

#[tokio::test]
async fn a_poll_by_another_agent_key_is_403_and_changes_nothing() {
    let app = app();
    let location = deferred_report(&app).await;
    let intruder = TestAgent::from_seed([9; 32]).with_kid("intruder");
    let token = app
        .access_server
        .auth_token(RESOURCE, &intruder.public_jwk(), "data.write", NOW);
    let response = poll_as(&app, &intruder, &location, &jwt(token)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("accept-signature-scheme").is_none());
    assert_poll_problem(&app, response, StatusCode::FORBIDDEN, "invalid_request", 0).await;
    // The owner's poll is not slowed down by the intruder's and still runs the request.
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn a_poll_without_an_auth_token_is_pending_again_with_the_same_resource_token() {
    let app = app();
    let response = post_report(&app, "{}").await;
    let (location, first) = assert_pending(&app, response, 0).await;
    app.clock.advance(5);
    let minted = app.aauth.minted_resource_tokens();
    let response = poll(&app, &location, &jwt(app.agent_token())).await;
    let (again, token) = assert_pending(&app, response, 0).await;
    assert_eq!(again, location);
    assert_eq!(token, first, "the resource token is still valid");
    assert_eq!(app.aauth.minted_resource_tokens(), minted, "no new signature");
}

#[tokio::test]
async fn a_poll_after_the_resource_token_expired_carries_a_fresh_one() {
    let app = app_with(|b| b.resource_token_lifetime(60));
    let response = post_report(&app, "{}").await;
    let (location, first) = assert_pending(&app, response, 0).await;
    app.clock.advance(61);
    let response = poll(&app, &location, &jwt(app.agent_token())).await;
    let (_, fresh) = assert_pending(&app, response, 0).await;
    let fresh = fresh.expect("a fresh resource token");
    assert_ne!(Some(fresh.clone()), first);
    let (_, claims) = decode(&fresh);
    assert_eq!(claims["iat"], NOW + 61);
    assert_eq!(claims["scope"], "data.write");
}

#[tokio::test]
async fn a_poll_with_too_few_scopes_is_pending_again() {
    let app = app();
    let location = deferred_report(&app).await;
    let response = poll(&app, &location, &jwt(app.as_auth_token("data.read"))).await;
    let (_, token) = assert_pending(&app, response, 0).await;
    assert!(token.is_some());
    // The request is still held: a sufficient token later runs it.
    app.clock.advance(5);
    assert_eq!(poll(&app, &location, &write_token(&app)).await.status(), StatusCode::OK);
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn polling_faster_than_retry_after_is_429_slow_down() {
    let app = app();
    let response = post_report(&app, "{}").await;
    let (location, _) = assert_pending(&app, response, 0).await;
    app.clock.advance(2);
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(response.headers()["retry-after"], "10", "the interval grows by 5 s");
    assert_poll_problem(&app, response, StatusCode::TOO_MANY_REQUESTS, "slow_down", 0).await;
    app.clock.advance(10);
    assert_eq!(poll(&app, &location, &write_token(&app)).await.status(), StatusCode::OK);
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn after_its_lifetime_a_pending_request_is_408_expired_then_410() {
    let app = app_with(|b| b.deferred_delivery(DeferredOptions::new().lifetime(30)));
    let location = deferred_report(&app).await;
    app.clock.advance(25);
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::REQUEST_TIMEOUT, "expired", 0).await;
    app.clock.advance(5);
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::GONE, "invalid_code", 0).await;
}

#[tokio::test]
async fn an_unknown_pending_url_is_404() {
    let app = app();
    let response = poll(&app, &format!("{PREFIX}AAAAAAAAAAAAAAAAAAAAAA"), &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::NOT_FOUND, "not_found", 0).await;
}

#[tokio::test]
async fn an_unsigned_poll_asks_for_an_agent_token() {
    let app = app();
    let location = deferred_report(&app).await;
    let response = send(&app, Request::get(&location).body(Body::empty()).unwrap()).await;
    assert_challenge(&app, &response, "requirement=agent-token");
}

#[tokio::test]
async fn a_body_over_the_cap_is_not_held_and_gets_the_plain_401() {
    let app = app_with(|b| b.deferred_delivery(DeferredOptions::new().max_body_bytes(16)));
    let response = post_report(&app, r#"{"title":"far more than sixteen bytes"}"#).await;
    assert_auth_challenge(&app, &response);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_result_over_the_cap_is_500_server_error_and_the_request_ends() {
    let app = app_with(|b| b.deferred_delivery(DeferredOptions::new().max_result_bytes(8)));
    let location = deferred_report(&app).await;
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", 1).await;
    app.clock.advance(5);
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_poll_problem(&app, response, StatusCode::GONE, "invalid_code", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sufficient_polls_run_the_held_request_once() {
    let app = app();
    let location = deferred_report(&app).await;
    let router = router(&app);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut request = Request::get(&location).body(Body::empty()).unwrap();
            app.agent.sign(&mut request, &write_token(&app), now(&app));
            tokio::spawn(router.clone().oneshot(request))
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            // A poll arriving while the request runs is told to come back.
            StatusCode::ACCEPTED => assert!(response.headers().get("aauth-requirement").is_none()),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1, "the request ran and its result was returned");
    assert_eq!(app.calls(), 1, "exactly once");
}

#[tokio::test]
async fn a_default_requirement_does_not_apply_to_pending_urls() {
    let app = app_with(|b| b.default_requirement(tower_aauth::guard::Requirement::scopes(["data.write"])));
    // An id of the shape the store issues, but unknown to it.
    let unknown = "A".repeat(22);
    let mut request = Request::get(format!("{PREFIX}{unknown}")).body(Body::empty()).unwrap();
    app.agent.sign(&mut request, &jwt(app.agent_token()), NOW);
    let response = send(&app, request).await;
    assert_poll_problem(&app, response, StatusCode::NOT_FOUND, "not_found", 0).await;
}

#[test]
fn invalid_deferred_options_are_refused_at_build() {
    for options in [
        DeferredOptions::new().lifetime(0),
        DeferredOptions::new().lifetime(3601),
        DeferredOptions::new().lifetime(10).retry_after(11),
    ] {
        let result = tower_aauth::AAuth::builder(RESOURCE).deferred_delivery(options).build();
        assert!(result.is_err());
    }
}

#[tokio::test]
async fn a_flood_of_ungranted_requests_cannot_push_out_a_held_request() {
    let capacity = 8 * 1024;
    let app = app_with(|b| b.deferred_delivery(DeferredOptions::new().capacity_bytes(capacity)));
    let location = deferred_report(&app).await;
    // Throwaway keys, each asking to be held and never coming back with a grant.
    let mut challenged = 0;
    for n in 0..64u8 {
        let stranger = TestAgent::from_seed([n.wrapping_add(40); 32]);
        let body = "x".repeat(512);
        let mut request = Request::post(format!("{RESOURCE}/report"))
            .body(Body::from(body.clone()))
            .unwrap();
        stranger.sign_with_body(&mut request, body.as_bytes(), &KeySource::Hwk, now(&app));
        let response = send(&app, request).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
            assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
            challenged += 1;
        } else {
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        assert!(app.aauth.pending_bytes() <= capacity, "held within the budget");
    }
    assert!(challenged > 50, "beyond the budget requests get the plain challenge");
    assert_eq!(app.calls(), 0);
    let response = poll(&app, &location, &write_token(&app)).await;
    assert_eq!(response.status(), StatusCode::OK, "the first record was kept");
    assert_eq!(app.calls(), 1);
}
