//! Deferred delivery across replicas (digest: deferred `auth-token`): two `AAuth`
//! instances with their own routers share one real `redis-server` for their pending
//! records. A request held by one is polled, run (once) and answered by the other; the
//! result, ownership, concurrency, a corrupt record and Redis going away are checked on
//! both. Without `redis-server` on `PATH` the tests are reported ignored (`build.rs` sets
//! `skip_redis`), except under `CI=true`, where they fail. The in-process store is
//! tests/deferred.rs.
#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::post;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::app::*;
use support::redis::RedisServer;
use tower::ServiceExt;
use tower_aauth::testing::{KeySource, TestAgent};
use tower_aauth::{AAuthService, Clock, DeferredOptions, RedisPendingStore, VerifiedRequest};

const PREFIX: &str = "https://resource.example/aauth/pending/";
const KEYS: &str = "tower-aauth:{pending}:";

/// One replica: its own `AAuth`, clock, replay store and router, the shared Redis.
async fn replica(redis: &RedisServer, options: DeferredOptions) -> App {
    let store = RedisPendingStore::builder(redis.url())
        .operation_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    App::with(|b| {
        b.person_server(PS)
            .auth_server(AS)
            .deferred_delivery(options.store(store))
    })
}

async fn replicas(redis: &RedisServer) -> (App, App) {
    (
        replica(redis, DeferredOptions::new()).await,
        replica(redis, DeferredOptions::new()).await,
    )
}

/// The replica's application: the AAuth layer wraps the whole router (a tower `Layer`
/// applied to it), so that a poll can re-dispatch a held request through it.
fn router(app: &App) -> AAuthService<Router> {
    tower::Layer::layer(&app.aauth.layer(), routes(app))
}

/// `/report` (POST, `data.write`, deferred), its handler counting the replica's calls.
fn routes(app: &App) -> Router {
    let a = &app.aauth;
    let calls = app.calls.clone();
    let handler = move |request: Request<Body>| {
        let calls = calls.clone();
        async move {
            let run = calls.fetch_add(1, Ordering::SeqCst) + 1;
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
                "scope": token.as_ref().map(|t| t.claims.scope.to_string()),
                "run": run,
            }))
            .into_response();
            *response.status_mut() = StatusCode::CREATED;
            response.headers_mut().insert("x-handler", "ran".parse().unwrap());
            response
        }
    };
    Router::new()
        .route(
            "/report",
            post(handler).route_layer(a.require_scopes(["data.write"]).deferred()),
        )
        .merge(a.pending_router())
}

async fn send(app: &App, request: Request<Body>) -> Response<Body> {
    router(app).oneshot(request).await.expect("infallible")
}

/// Moves every replica's clock by `seconds`.
fn advance(replicas: &[&App], seconds: u64) {
    for app in replicas {
        app.clock.advance(seconds);
    }
}

async fn post_report(app: &App, body: &str) -> Response<Body> {
    let mut request = Request::post(format!("{RESOURCE}/report"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    app.agent
        .sign_with_body(&mut request, body.as_bytes(), &jwt(app.agent_token()), app.clock.now());
    send(app, request).await
}

/// Holds a report on `app` and waits out `Retry-After` on every replica; the pending URL.
async fn held_on(app: &App, all: &[&App]) -> String {
    let response = post_report(app, r#"{"title":"q3"}"#).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["retry-after"], "5");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(PREFIX), "{location}");
    advance(all, 5);
    location
}

fn signed_poll(app: &App, agent: &TestAgent, location: &str, source: &KeySource) -> Request<Body> {
    let mut request = Request::get(location).body(Body::empty()).unwrap();
    agent.sign(&mut request, source, app.clock.now());
    request
}

async fn poll(app: &App, location: &str, source: &KeySource) -> Response<Body> {
    send(app, signed_poll(app, &app.agent, location, source)).await
}

fn write_token(app: &App) -> KeySource {
    jwt(app.as_auth_token("data.write"))
}

async fn json_body(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn total_calls(replicas: &[&App]) -> usize {
    replicas.iter().map(|app| app.calls()).sum()
}

/// A problem answer of the pending URL: status, exact code, `no-store`, and no handler
/// run on any replica.
async fn assert_problem(response: Response<Body>, status: StatusCode, code: &str, replicas: &[&App], calls: usize) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(json_body(response).await["error"], code);
    assert_eq!(total_calls(replicas), calls, "handler calls on all replicas");
}

async fn redis_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn record_key(location: &str) -> String {
    format!("{KEYS}r:{}", location.strip_prefix(PREFIX).unwrap())
}

async fn hset(redis: &RedisServer, key: &str, field: &str, value: &[u8]) {
    let mut connection = redis_connection(redis).await;
    redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap();
}

async fn hget(redis: &RedisServer, key: &str, field: &str) -> Option<Vec<u8>> {
    let mut connection = redis_connection(redis).await;
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async::<Option<Vec<u8>>>(&mut connection)
        .await
        .unwrap()
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_request_held_on_one_replica_runs_once_on_the_replica_polled_and_repeats_anywhere() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    assert_eq!(total_calls(&all), 0);

    let response = poll(&b, &location, &write_token(&b)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-handler"], "ran");
    assert_eq!((a.calls(), b.calls()), (0, 1), "run by the replica that was polled");
    let first = json_body(response).await;
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/report");
    assert_eq!(first["content_type"], "application/json");
    assert_eq!(first["body"], r#"{"title":"q3"}"#);
    assert_eq!(first["scope"], "data.write", "with the poll's identity");

    // The same auth token again, on the other replica: the stored answer, not a new run.
    let again = poll(&a, &location, &write_token(&a)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["x-handler"], "ran");
    assert_eq!(json_body(again).await, first);
    advance(&all, 600);
    assert_eq!(json_body(poll(&b, &location, &write_token(&b)).await).await, first);
    assert_eq!(total_calls(&all), 1, "the handler ran once");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn another_token_after_completion_gets_410_on_either_replica() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    assert_eq!(
        poll(&a, &location, &write_token(&a)).await.status(),
        StatusCode::CREATED
    );
    let mut claims = b
        .access_server
        .auth_claims(RESOURCE, &b.agent.public_jwk(), "data.write", NOW);
    claims["ps"] = PS.into();
    claims["jti"] = "at-other".into();
    let other = jwt(b.access_server.sign(tower_aauth::engine::typ::AUTH, &claims));
    let response = poll(&b, &location, &other).await;
    assert_problem(response, StatusCode::GONE, "invalid_code", &all, 1).await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_poll_by_another_agent_key_on_another_replica_is_403_and_runs_nothing() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    let intruder = TestAgent::from_seed([9; 32]).with_kid("intruder");
    let token = b
        .access_server
        .auth_token(RESOURCE, &intruder.public_jwk(), "data.write", NOW);
    let response = send(&b, signed_poll(&b, &intruder, &location, &jwt(token))).await;
    assert!(response.headers().get("accept-signature-scheme").is_none());
    assert_problem(response, StatusCode::FORBIDDEN, "invalid_request", &all, 0).await;
    // Nothing changed: the owner's poll is not slowed down and runs the request.
    let response = poll(&a, &location, &write_token(&a)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(total_calls(&all), 1);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_poll_without_an_auth_token_on_another_replica_is_pending_again_with_the_same_resource_token() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let response = post_report(&a, "{}").await;
    let first = response.headers()["aauth-requirement"].clone();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    advance(&all, 5);
    let response = poll(&b, &location, &jwt(b.agent_token())).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], location.as_str());
    assert_eq!(
        response.headers()["aauth-requirement"],
        first,
        "the resource token is still valid"
    );
    assert_eq!(
        b.aauth.minted_resource_tokens(),
        0,
        "nothing minted on the polled replica"
    );
    // Faster than Retry-After on the other replica: slow_down, shared.
    advance(&all, 2);
    let response = poll(&a, &location, &write_token(&a)).await;
    assert_eq!(response.headers()["retry-after"], "10");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "slow_down", &all, 0).await;
    advance(&all, 10);
    assert_eq!(
        poll(&b, &location, &write_token(&b)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(total_calls(&all), 1);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_polls_on_both_replicas_run_the_held_request_exactly_once() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    let (router_a, router_b) = (router(&a), router(&b));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (app, router) = if i % 2 == 0 { (&a, &router_a) } else { (&b, &router_b) };
            let request = signed_poll(app, &app.agent, &location, &write_token(app));
            tokio::spawn(router.clone().oneshot(request))
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        match response.status() {
            StatusCode::CREATED => {
                created += 1;
                assert_eq!(json_body(response).await["run"], 1);
            }
            // A poll arriving while another replica runs it is told to come back.
            StatusCode::ACCEPTED => assert!(response.headers().get("aauth-requirement").is_none()),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(created >= 1, "the request ran and its result was returned");
    assert_eq!(total_calls(&all), 1, "exactly once across the replicas");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_record_whose_status_does_not_decode_is_500_and_runs_nothing() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    for corrupt in [&b"{not json"[..], b"{\"agent_jkt\":1}", b"", &[0xff; 8]] {
        let location = held_on(&a, &all).await;
        hset(&redis, &record_key(&location), "s", corrupt).await;
        let response = poll(&b, &location, &write_token(&b)).await;
        assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
        advance(&all, 1);
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_held_request_that_does_not_decode_is_500_and_never_runs_on_any_replica() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    let key = record_key(&location);
    let mut request = hget(&redis, &key, "q").await.expect("the held request");
    // Cut short: its last length names bytes that are not there.
    request.truncate(request.len() - 3);
    hset(&redis, &key, "q", &request).await;
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
    // It was taken before it failed to decode: never run, by either replica.
    advance(&all, 5);
    let response = poll(&a, &location, &write_token(&a)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(total_calls(&all), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_record_of_the_wrong_redis_type_or_version_is_500_and_runs_nothing() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    // A version that is not a number.
    let location = held_on(&a, &all).await;
    hset(&redis, &record_key(&location), "v", b"one").await;
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
    // The key replaced by a string: Redis answers WRONGTYPE.
    let location = held_on(&a, &all).await;
    let mut connection = redis_connection(&redis).await;
    redis::cmd("SET")
        .arg(record_key(&location))
        .arg("x")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
    // A hash missing its status.
    let location = held_on(&a, &all).await;
    redis::cmd("HDEL")
        .arg(record_key(&location))
        .arg("s")
        .query_async::<i64>(&mut connection)
        .await
        .unwrap();
    let response = poll(&a, &location, &write_token(&a)).await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_run_that_never_reports_back_is_500_once_after_the_lifetime_then_410_and_never_runs() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    // What a replica that stopped mid-run leaves: the record taken, `Running`.
    let key = record_key(&location);
    let status = hget(&redis, &key, "s").await.unwrap();
    let mut status: Value = serde_json::from_slice(&status).unwrap();
    status["phase"] = json!({ "p": "running", "since": a.clock.now() });
    hset(&redis, &key, "s", &serde_json::to_vec(&status).unwrap()).await;
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "it may still be running");
    assert!(response.headers().get("aauth-requirement").is_none());
    advance(&all, 300);
    let response = poll(&a, &location, &write_token(&a)).await;
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
    advance(&all, 5);
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_problem(response, StatusCode::GONE, "invalid_code", &all, 0).await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn the_capacity_bounds_the_records_of_all_replicas_together() {
    let redis = RedisServer::start();
    let options = || DeferredOptions::new().capacity_bytes(4 * 1024);
    let (a, b) = (replica(&redis, options()).await, replica(&redis, options()).await);
    let all = [&a, &b];
    let mut held = 0;
    let mut challenged = 0;
    for n in 0..8u8 {
        let app = if n % 2 == 0 { &a } else { &b };
        let stranger = TestAgent::from_seed([n.wrapping_add(40); 32]);
        let body = "x".repeat(512);
        let mut request = Request::post(format!("{RESOURCE}/report"))
            .body(Body::from(body.clone()))
            .unwrap();
        stranger.sign_with_body(&mut request, body.as_bytes(), &KeySource::Hwk, app.clock.now());
        let response = send(app, request).await;
        match response.status() {
            StatusCode::ACCEPTED => held += 1,
            StatusCode::UNAUTHORIZED => {
                let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
                assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
                challenged += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(held >= 1 && challenged >= 4, "{held} held, {challenged} challenged");
    let mut connection = redis_connection(&redis).await;
    let used: u64 = redis::cmd("GET")
        .arg(format!("{KEYS}bytes"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(used > 0 && used <= 4 * 1024, "{used} bytes counted");
    assert_eq!(total_calls(&all), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn redis_down_is_503_for_holds_and_polls_nothing_runs_and_service_resumes() {
    let mut redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;

    redis.kill();
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(json_body(response).await["error"], "temporarily_unavailable");
    advance(&all, 1);
    let response = post_report(&a, "{}").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers().get("location").is_none());
    assert_eq!(json_body(response).await["error"], "temporarily_unavailable");
    assert_eq!(total_calls(&all), 0, "nothing runs without the store");

    // A fresh, empty Redis on the same port: the records are gone (404), and holding
    // works again once the connection manager reconnected.
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    let location = loop {
        advance(&all, 1);
        let response = post_report(&a, "{}").await;
        if response.status() == StatusCode::ACCEPTED {
            break response.headers()["location"].to_str().unwrap().to_owned();
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "did not recover after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    advance(&all, 5);
    let deadline = Instant::now() + Duration::from_secs(15);
    let response = loop {
        let response = poll(&b, &location, &write_token(&b)).await;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(Instant::now() < deadline, "replica B did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
        advance(&all, 1);
    };
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(total_calls(&all), 1);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn with_the_layer_on_single_routes_another_replica_refuses_with_500_and_the_holder_still_runs_it() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    // axum's `Router::layer` wraps each route, not the router: replica B cannot route the
    // held request, and says so without running anything.
    let per_route = routes(&b).layer(b.aauth.layer());
    let request = signed_poll(&b, &b.agent, &location, &write_token(&b));
    let response = per_route.oneshot(request).await.unwrap();
    assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &all, 0).await;
    // The record waits on: the replica that held it runs it, whatever its layering.
    advance(&all, 5);
    let per_route = routes(&a).layer(a.aauth.layer());
    let request = signed_poll(&a, &a.agent, &location, &write_token(&a));
    let response = per_route.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!((a.calls(), b.calls()), (1, 0));
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_replica_whose_layer_wraps_the_router_as_its_fallback_runs_a_request_held_elsewhere() {
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    // The axum way to wrap a whole router: as the fallback service of an outer one.
    let app = Router::new().fallback_service(routes(&b)).layer(b.aauth.layer());
    let request = signed_poll(&b, &b.agent, &location, &write_token(&b));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(json_body(response).await["path"], "/report");
    assert_eq!((a.calls(), b.calls()), (0, 1));
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn the_shared_pending_store_times_each_operation_under_the_pending_label() {
    use support::metrics::Recorded;
    let redis = RedisServer::start();
    let (a, b) = replicas(&redis).await;
    let recorded = Recorded::new();
    let location = recorded.scope(held_on(&a, &[&a, &b])).await;
    let series = |taken: Vec<support::metrics::Sample>| -> Vec<(String, String, u64)> {
        taken
            .into_iter()
            .filter(|s| s.name == "tower_aauth_store_seconds" && s.label("store") == Some("pending"))
            .map(|s| {
                assert_eq!(s.label("outcome"), Some("ok"));
                (
                    s.label("op").unwrap().to_owned(),
                    s.label("outcome").unwrap().to_owned(),
                    s.count,
                )
            })
            .collect()
    };
    assert_eq!(series(recorded.take()), [("insert".to_owned(), "ok".to_owned(), 1)]);
    let answer = recorded.scope(poll(&b, &location, &write_token(&b))).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let ops: Vec<String> = series(recorded.take()).into_iter().map(|(op, _, _)| op).collect();
    assert!(
        ops.contains(&"read".to_owned()) && ops.contains(&"write".to_owned()),
        "{ops:?}"
    );
}

// --- a store written outside the crate -----------------------------------------------------

/// A `SharedPendingStore` in memory that two replicas share: what any other store must
/// do, in the fewest lines (expiry left out: the test lives shorter than any record).
#[derive(Debug, Clone, Default)]
struct MemoryShared(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, HeldBytes>>>);

/// Version, status, held request, result, weight.
type HeldBytes = (u64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, u64);

impl MemoryShared {
    fn with<T>(&self, f: impl FnOnce(&mut std::collections::HashMap<String, HeldBytes>) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> tower_aauth::BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl tower_aauth::SharedPendingStore for MemoryShared {
    fn create<'a>(
        &'a self,
        id: &'a str,
        record: tower_aauth::PendingWrite<'a>,
        _ttl: Duration,
        capacity: u64,
    ) -> tower_aauth::BoxFuture<'a, Result<bool, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| {
            let used: u64 = records.values().map(|r| r.4).sum();
            if used + record.weight > capacity {
                return false;
            }
            let held = (
                1,
                record.status.to_vec(),
                Some(record.data.to_vec()),
                None,
                record.weight,
            );
            records.insert(id.to_owned(), held);
            true
        })))
    }

    fn status<'a>(
        &'a self,
        id: &'a str,
    ) -> tower_aauth::BoxFuture<'a, Result<Option<(u64, Vec<u8>)>, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| records.get(id).map(|r| (r.0, r.1.clone())))))
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> tower_aauth::BoxFuture<'a, Result<bool, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| match records.get_mut(id) {
            Some(r) if r.0 == version => {
                r.0 += 1;
                r.1 = status.to_vec();
                true
            }
            _ => false,
        })))
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
    ) -> tower_aauth::BoxFuture<'a, Result<Option<Vec<u8>>, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| match records.get_mut(id) {
            Some(r) if r.0 == version && r.2.is_some() => {
                r.0 += 1;
                r.1 = status.to_vec();
                r.2.clone()
            }
            _ => None,
        })))
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        status: &'a [u8],
        result: tower_aauth::PendingWrite<'a>,
        _ttl: Duration,
    ) -> tower_aauth::BoxFuture<'a, Result<bool, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| match records.get_mut(id) {
            Some(r) if r.0 == version => {
                *r = (
                    version + 1,
                    status.to_vec(),
                    None,
                    Some(result.data.to_vec()),
                    result.weight,
                );
                true
            }
            _ => false,
        })))
    }

    fn result<'a>(
        &'a self,
        id: &'a str,
    ) -> tower_aauth::BoxFuture<'a, Result<Option<Vec<u8>>, tower_aauth::PendingStoreError>> {
        ready(Ok(self.with(|records| records.get(id).and_then(|r| r.3.clone()))))
    }
}

#[tokio::test]
async fn a_store_written_outside_the_crate_carries_a_held_request_between_replicas() {
    let shared = MemoryShared::default();
    let replica = || {
        let store = shared.clone();
        App::with(move |b| {
            b.person_server(PS)
                .auth_server(AS)
                .deferred_delivery(DeferredOptions::new().store(store))
        })
    };
    let (a, b) = (replica(), replica());
    let all = [&a, &b];
    let location = held_on(&a, &all).await;
    assert_eq!(
        shared.with(|records| records.len()),
        1,
        "the record is in the shared store"
    );
    let response = poll(&b, &location, &write_token(&b)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!((a.calls(), b.calls()), (0, 1), "run by the replica that was polled");
    let again = poll(&a, &location, &write_token(&a)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(total_calls(&all), 1, "the stored answer, not a second run");
}
