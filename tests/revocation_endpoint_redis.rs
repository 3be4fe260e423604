//! The revocation endpoint on replicas synced through a real `redis-server` (feature
//! `redis`): a revocation posted to one replica is enforced by the other within 1 s, its
//! shared member carries the token's `exp`, and once the token has expired the entry
//! leaves the shared set. Without `redis-server` on `PATH` the tests are reported
//! ignored, except under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use support::fixtures::decode;
use support::harness::*;
use support::redis::{RedisServer, cli};
use tower_aauth::engine;
use tower_aauth::policy::RedisPolicySync;
use tower_aauth::testing::KeySource;

const PATH: &str = "/aauth/revoke";
const REVOCATIONS: &str = "tower-aauth:policy:revocations";
const ONE_SECOND: Duration = Duration::from_secs(1);

async fn replica(redis: &RedisServer) -> (Harness, RedisPolicySync) {
    let harness = Harness::with(|builder| builder.revocation_endpoint(PATH));
    let sync = RedisPolicySync::builder(redis.url())
        .poll_interval(Duration::from_millis(250))
        .max_staleness(Duration::from_millis(1500))
        .operation_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .start(harness.aauth.revocations(), harness.aauth.scope_ceilings())
        .await
        .expect("valid sync options");
    (harness, sync)
}

/// A request presenting the harness agent's auth token; `n` makes each signature unique
/// (a repeated one would be refused as a replay).
fn with_grant(harness: &Harness, created: u64, n: usize) -> Request<Body> {
    let mut request = get(&format!("/data?n={n}"));
    let token = harness.auth_token("data.read");
    harness.agent.sign(&mut request, &KeySource::Jwt(token), created);
    request
}

fn revocation(harness: &Harness, jti: &str, exp: u64, created: u64) -> Request<Body> {
    harness
        .access_server
        .revocation_request(&format!("{RESOURCE}{PATH}"), engine::dwk::ACCESS, jti, exp, created)
        .map(Body::from)
}

async fn until(within: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_posted_to_one_replica_is_enforced_by_the_other_within_one_second() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    assert_eq!(b.send(with_grant(&b, NOW, 0)).await.status(), StatusCode::OK);
    let (_, claims) = decode(&b.auth_token("data.read"));
    let (jti, exp) = (claims["jti"].as_str().unwrap(), claims["exp"].as_u64().unwrap());

    assert_eq!(a.send(revocation(&a, jti, exp, NOW)).await.status(), StatusCode::OK);
    let mut n = 0;
    let took = until(ONE_SECOND, async || {
        n += 1;
        let response = b.send(with_grant(&b, NOW, n)).await;
        match response.status() {
            StatusCode::OK => false,
            _ => {
                assert_eq!(response.headers()["signature-error"], "error=revoked_jwt");
                true
            }
        }
    })
    .await;
    eprintln!(
        "revocation posted to replica A enforced by replica B after {} ms",
        took.as_millis()
    );
    assert_eq!(
        cli(&redis, &["SMEMBERS", REVOCATIONS]),
        format!(r#"{{"jtis":[{{"exp":{exp},"iss":"{AS}","jti":"{jti}"}}]}}"#)
    );

    // Past exp + skew the token is expired anyway; the next write prunes the entry from
    // the shared set, and from the other replica's snapshot.
    let later = exp + 60 + 1;
    a.clock.set(later);
    b.clock.set(later);
    assert_eq!(
        a.send(revocation(&a, "at-next", later + 600, later)).await.status(),
        StatusCode::OK
    );
    until(ONE_SECOND, async || {
        cli(&redis, &["SMEMBERS", REVOCATIONS])
            == format!(r#"{{"jtis":[{{"exp":{},"iss":"{AS}","jti":"at-next"}}]}}"#, later + 600)
    })
    .await;
    until(ONE_SECOND, async || b.aauth.revocations().snapshot().len() == 1).await;
}
