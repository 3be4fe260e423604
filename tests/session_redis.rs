//! Resource-managed access across replicas with `SessionOptions::redis_store` (feature `redis`):
//! an interaction started on one replica is decided and polled on another, the session
//! is honoured by every replica, the store holds no usable token, its byte bound holds,
//! and an unreachable Redis is `503`. The harness starts `redis-server` on a loopback
//! port; without it the tests are reported ignored (`build.rs` sets `skip_redis`), except
//! under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use http::StatusCode;
use support::redis::RedisServer;
use support::session::*;
use tower_aauth::session::SessionOptions;
use tower_aauth::testing::{KeySource, TestAgent};

const PREFIX: &str = "test:{session}:";

fn replica(redis: &RedisServer, capacity: u64) -> Rig {
    let options = SessionOptions::new()
        .redis_store(&redis.url(), PREFIX)
        .unwrap()
        .capacity_bytes(capacity);
    Rig::with_options(options)
}

async fn redis_keys(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await.unwrap();
    let mut dump = Vec::new();
    for key in keys {
        let value: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(&mut connection).await.unwrap();
        dump.push((key, value));
    }
    dump
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn an_interaction_started_on_one_replica_completes_on_another_and_every_replica_honours_the_session() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis, 1 << 20), replica(&redis, 1 << 20));
    let started = a.request_interaction("/notes").await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let (location, code) = pending_of(&started);
    let found = b.app.aauth.interaction(&code).await.expect("seen by the other replica");
    assert_eq!(found.scopes, ["data.read"]);
    assert!(decide(&b.app.aauth, &code, Choice::Approve("acct-9".into())).await);
    b.app.clock.advance(5);
    let approved = b.poll(&location).await;
    assert_eq!(approved.status(), StatusCode::OK);
    let token = access_of(&approved).unwrap();
    let served = a.with_session("/notes", &token).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(body_json(served).await["account"], "acct-9");
    for (key, value) in redis_keys(&redis).await {
        assert!(!key.contains(&token), "{key}");
        assert!(!value.windows(token.len()).any(|w| w == token.as_bytes()), "{key}");
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_session_revoked_on_one_replica_is_refused_by_the_others() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis, 1 << 20), replica(&redis, 1 << 20));
    let token = a.session_for("/notes", "acct").await;
    let value = format!("AAuth {token}");
    let mut logout = http::Request::post(format!("{RESOURCE}/logout"))
        .header("authorization", &value)
        .body(axum::body::Body::empty())
        .unwrap();
    let mut options = tower_aauth::testing::SignOptions::default();
    options.components.push("authorization".to_owned());
    a.app.agent.sign_with(&mut logout, &a.agent_token(), a.now(), &options);
    assert_eq!(a.send(logout).await.status(), StatusCode::OK);
    let response = b.with_session("/notes", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(response).await["error"], "invalid_session");
    assert_eq!(b.calls(), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn the_redis_store_refuses_interactions_beyond_its_byte_bound() {
    let redis = RedisServer::start();
    let rig = replica(&redis, 4096);
    let mut statuses = Vec::new();
    for seed in 40..60u8 {
        let agent = TestAgent::from_seed([seed; 32]);
        let response = rig
            .get_as(&agent, &KeySource::Hwk, "/open", Some("interaction"), &[], false)
            .await;
        statuses.push(response.status());
    }
    assert!(statuses.contains(&StatusCode::ACCEPTED));
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let bytes: u64 = redis::cmd("GET")
        .arg(format!("{PREFIX}bytes:interactions"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(bytes <= 2048, "interactions hold at most half the bound: {bytes}");
    assert_eq!(rig.calls(), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn an_unreachable_redis_is_503_and_the_handler_does_not_run() {
    let mut redis = RedisServer::start();
    let rig = replica(&redis, 1 << 20);
    let token = rig.session_for("/notes", "acct").await;
    redis.kill();
    let response = rig.with_session("/notes", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let started = rig.request_interaction("/both").await;
    assert_eq!(started.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rig.calls(), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rotating_one_session_at_once_all_get_the_same_successor() {
    // Rotation reads, then writes: were successors random, requests racing through it
    // would fork one session into several, each living on out of reach of a logout.
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis, 1 << 20), replica(&redis, 1 << 20));
    let token = a.session_for("/notes", "acct").await;
    a.app.clock.advance(1800);
    b.app.clock.advance(1805);
    let (one, two, three, four) = tokio::join!(
        a.with_session("/notes", &token),
        b.with_session("/notes", &token),
        a.with_session("/notes", &token),
        b.with_session("/notes", &token),
    );
    let rotated: std::collections::BTreeSet<String> = [one, two, three, four].iter().filter_map(access_of).collect();
    assert!(!rotated.is_empty(), "due: the session rotates");
    assert_eq!(rotated.len(), 1, "{rotated:?}");
}
