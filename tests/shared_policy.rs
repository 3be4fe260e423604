//! Revocations and scope ceilings shared by two replicas (two `AAuth` instances) through a
//! real `redis-server` (feature `redis`): propagation within 1 s through the API and by an
//! operator's direct write, malformed members and documents, a key of the wrong type,
//! Redis stopped and restarted empty. The harness starts `redis-server` on a free
//! loopback port and kills it at the end; without it on `PATH` the tests are reported
//! ignored (`build.rs` sets `skip_redis`), except under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use support::harness::*;
use support::redis::{RedisServer, cli};
use tower::ServiceExt;
use tower_aauth::policy::{AgentId, RedisPolicySync, Revoked, ScopeCeilings};
use tower_aauth::testing::KeySource;

const AGENT_ID: &str = "aauth:assistant@agent.example";
const REVOCATIONS: &str = "tower-aauth:policy:revocations";
const CEILINGS: &str = "tower-aauth:policy:ceilings";
const VERSION: &str = "tower-aauth:policy:version";
/// The staleness bound the replicas here run with.
const MAX_STALENESS: Duration = Duration::from_millis(1500);
/// The propagation bound of issue #18.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// One replica: a resource with its own revocations and ceilings, synced through `redis`.
async fn replica(redis: &RedisServer) -> (Harness, RedisPolicySync) {
    let harness = Harness::new();
    let sync = RedisPolicySync::builder(redis.url())
        .poll_interval(Duration::from_millis(250))
        .max_staleness(MAX_STALENESS)
        .operation_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .start(harness.aauth.revocations(), harness.aauth.scope_ceilings())
        .await
        .expect("valid sync options");
    (harness, sync)
}

fn agent(id: &str) -> AgentId {
    id.parse().unwrap()
}

/// A `GET` signed with the harness agent's agent token (the agent is `AGENT_ID`).
fn as_agent(harness: &Harness) -> Request<Body> {
    let token = harness
        .agent_provider
        .agent_token(AGENT_ID, &harness.agent.public_jwk(), NOW);
    signed(harness, "GET", KeySource::Jwt(token))
}

/// A `GET` signed with an auth token granting `data.read` (its `jti` is [`auth_jti`]).
fn with_grant(harness: &Harness) -> Request<Body> {
    signed(harness, "GET", KeySource::Jwt(harness.auth_token("data.read")))
}

fn signed(harness: &Harness, method: &str, source: KeySource) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{RESOURCE}/data"))
        .body(Body::empty())
        .unwrap();
    harness.agent.sign(&mut request, &source, NOW);
    request
}

fn auth_jti(harness: &Harness) -> String {
    let claims = harness
        .access_server
        .auth_claims(RESOURCE, &harness.agent.public_jwk(), "data.read", NOW);
    claims["jti"].as_str().unwrap().to_owned()
}

fn reset_calls(harness: &Harness) {
    harness.calls.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// Sends `make()` to `harness` until the answer's status is `status` (the handler's call
/// count reset before each, so a refusal can assert it was not called) and returns that
/// answer with the time it took; panics after `within`.
async fn until_status(
    harness: &Harness,
    status: StatusCode,
    within: Duration,
    make: impl Fn(&Harness) -> Request<Body>,
) -> (Response<Body>, Duration) {
    let started = Instant::now();
    loop {
        reset_calls(harness);
        let response = harness.send(make(harness)).await;
        if response.status() == status {
            return (response, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}, expected {status}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts the fail-closed answer: `503`, `Retry-After: 1`, no `Signature-Error`, and the
/// handler not called.
async fn assert_unavailable(harness: &Harness, response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(harness.calls(), 0, "nothing is served on a stale snapshot");
    assert_eq!(body_json(response).await["error"], "temporarily_unavailable");
}

// --- a minimal RESP client: what `redis-cli` sends ---------------------------------------

// --- log capture ---------------------------------------------------------------------

/// Collects the `tracing` output of the current thread (the tests that read logs run on a
/// current-thread runtime, where the sync task runs too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn until_logged(logs: &Logs, needle: &str) {
    let started = Instant::now();
    while !logs.text().contains(needle) {
        assert!(
            started.elapsed() < ONE_SECOND * 2,
            "not logged: {needle}\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- the tests -----------------------------------------------------------------------

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_replica_is_enforced_by_the_other_within_one_second() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    assert_eq!(b.send(as_agent(&b)).await.status(), StatusCode::OK);

    let revoked = Revoked::Agent(agent(AGENT_ID));
    a.aauth.revocations().revoke(revoked.clone()).unwrap();
    let (response, took) = until_status(&b, StatusCode::UNAUTHORIZED, ONE_SECOND, as_agent).await;
    eprintln!(
        "revocation through replica A enforced by replica B after {} ms",
        took.as_millis()
    );
    assert_refused(&b, response, "revoked_jwt").await;
    // The entry is the canonical member of the shared set.
    assert_eq!(
        cli(&redis, &["SMEMBERS", REVOCATIONS]),
        r#"{"agents":["aauth:assistant@agent.example"]}"#
    );

    // Lifting travels the same way.
    assert!(a.aauth.revocations().unrevoke(&revoked));
    let (_, took) = until_status(&b, StatusCode::OK, ONE_SECOND, as_agent).await;
    eprintln!(
        "unrevocation through replica A lifted on replica B after {} ms",
        took.as_millis()
    );
    assert_eq!(cli(&redis, &["SCARD", REVOCATIONS]), "0");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_through_two_replicas_both_survive() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let by_a = Revoked::Agent(agent("aauth:one@agent.example"));
    let by_b = Revoked::Agent(agent("aauth:two@agent.example"));
    a.aauth.revocations().revoke(by_a.clone()).unwrap();
    b.aauth.revocations().revoke(by_b.clone()).unwrap();
    let started = Instant::now();
    loop {
        let (sa, sb) = (a.aauth.revocations().snapshot(), b.aauth.revocations().snapshot());
        if [&sa, &sb].iter().all(|s| s.contains(&by_a) && s.contains(&by_b)) {
            break;
        }
        assert!(started.elapsed() < ONE_SECOND, "a concurrent revocation was lost");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cli(&redis, &["SCARD", REVOCATIONS]), "2");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_direct_write_without_publish_is_enforced_within_one_second() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let member = format!(r#"{{"jtis":[{{"iss":"{AS}","jti":"{}"}}]}}"#, auth_jti(&a));
    assert_eq!(cli(&redis, &["SADD", REVOCATIONS, &member]), "1");
    assert_ne!(cli(&redis, &["INCR", VERSION]), "");
    // No PUBLISH: the poll of the version key finds it.
    for replica in [&a, &b] {
        let (response, took) = until_status(replica, StatusCode::UNAUTHORIZED, ONE_SECOND, with_grant).await;
        eprintln!("operator's SADD + INCR enforced after {} ms", took.as_millis());
        assert_eq!(response.headers()["aauth-requirement"], "requirement=person-token");
        assert_refused(replica, response, "revoked_jwt").await;
        // Only that token: the agent itself is served.
        assert_eq!(replica.send(as_agent(replica)).await.status(), StatusCode::OK);
    }
    assert_eq!(cli(&redis, &["SREM", REVOCATIONS, &member]), "1");
    cli(&redis, &["INCR", VERSION]);
    for replica in [&a, &b] {
        until_status(replica, StatusCode::OK, ONE_SECOND, with_grant).await;
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn malformed_members_lift_nothing_add_the_valid_ones_and_are_logged() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let revoked = Revoked::Agent(agent(AGENT_ID));
    a.aauth.revocations().revoke(revoked.clone()).unwrap();
    until_status(&b, StatusCode::UNAUTHORIZED, ONE_SECOND, as_agent).await;

    // One change: the revoked agent's member removed, a malformed member and a member
    // holding two entries added, and a valid new revocation.
    let newly = Revoked::Agent(agent("aauth:newly@agent.example"));
    cli(
        &redis,
        &["SREM", REVOCATIONS, r#"{"agents":["aauth:assistant@agent.example"]}"#],
    );
    cli(&redis, &["SADD", REVOCATIONS, "not json"]);
    cli(
        &redis,
        &[
            "SADD",
            REVOCATIONS,
            r#"{"agents":["aauth:x@agent.example","aauth:y@agent.example"]}"#,
        ],
    );
    cli(
        &redis,
        &["SADD", REVOCATIONS, r#"{"agents":["aauth:newly@agent.example"]}"#],
    );
    cli(&redis, &["INCR", VERSION]);

    let started = Instant::now();
    while !b.aauth.revocations().snapshot().contains(&newly) {
        assert!(started.elapsed() < ONE_SECOND, "the valid new member was not applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    until_logged(&logs, "malformed members in the shared revocation set").await;
    assert!(logs.text().contains("malformed=2"), "{}", logs.text());
    // Nothing was lifted: the agent whose member was removed is still refused.
    reset_calls(&b);
    assert_refused(&b, b.send(as_agent(&b)).await, "revoked_jwt").await;
    let snapshot = b.aauth.revocations().snapshot();
    assert!(!snapshot.contains(&Revoked::Agent(agent("aauth:x@agent.example"))));

    // Fixed: the removal applies.
    cli(&redis, &["SREM", REVOCATIONS, "not json"]);
    cli(
        &redis,
        &[
            "SREM",
            REVOCATIONS,
            r#"{"agents":["aauth:x@agent.example","aauth:y@agent.example"]}"#,
        ],
    );
    cli(&redis, &["INCR", VERSION]);
    until_status(&b, StatusCode::OK, ONE_SECOND, as_agent).await;
    assert!(b.aauth.revocations().snapshot().contains(&newly));
}

async fn write(harness: &Harness, created: u64) -> Response<Body> {
    reset_calls(harness);
    let token = harness
        .agent_provider
        .agent_token(AGENT_ID, &harness.agent.public_jwk(), NOW);
    let mut request = Request::post(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut request, &KeySource::Jwt(token), created);
    harness.ceiling_write_route().oneshot(request).await.unwrap()
}

async fn assert_above_ceiling(harness: &Harness, response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(harness.calls(), 0);
    assert_eq!(body_json(response).await["error"], "scope_above_ceiling");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn ceilings_travel_whole_and_a_malformed_document_keeps_those_in_force() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let mut created = NOW;
    assert_eq!(write(&b, created).await.status(), StatusCode::OK);

    a.aauth
        .scope_ceilings()
        .reload_json(format!(r#"{{"agents": {{"{AGENT_ID}": "data.read"}}}}"#).as_bytes())
        .unwrap();
    let started = Instant::now();
    let refused = loop {
        created += 1;
        let response = write(&b, created).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        assert!(started.elapsed() < ONE_SECOND, "the ceiling did not reach replica B");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "ceiling through replica A enforced by replica B after {} ms",
        started.elapsed().as_millis()
    );
    assert_above_ceiling(&b, refused).await;
    assert_eq!(
        cli(&redis, &["GET", CEILINGS]),
        r#"{"agents":{"aauth:assistant@agent.example":"data.read"},"key_thumbprints":{}}"#
    );

    // A malformed document (and then one naming an unknown member) changes nothing.
    for document in [r#"{"agents": 5}"#, r#"{"ceiling": {}}"#] {
        cli(&redis, &["SET", CEILINGS, document]);
        cli(&redis, &["INCR", VERSION]);
        until_logged(&logs, "malformed shared ceilings document").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        created += 1;
        assert_above_ceiling(&b, write(&b, created).await).await;
        assert_above_ceiling(&a, write(&a, created).await).await;
    }

    // An operator's valid document raises it everywhere.
    cli(
        &redis,
        &[
            "SET",
            CEILINGS,
            &format!(r#"{{"agents":{{"{AGENT_ID}":"data.read data.write"}}}}"#),
        ],
    );
    cli(&redis, &["INCR", VERSION]);
    let started = Instant::now();
    loop {
        created += 1;
        if write(&b, created).await.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < ONE_SECOND,
            "the raised ceiling did not reach replica B"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_keeps_the_set_then_fails_closed_until_fixed() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    a.aauth.revocations().revoke(Revoked::Agent(agent(AGENT_ID))).unwrap();
    until_status(&b, StatusCode::UNAUTHORIZED, ONE_SECOND, as_agent).await;

    // The set's key now holds a list.
    cli(&redis, &["DEL", REVOCATIONS]);
    cli(&redis, &["RPUSH", REVOCATIONS, r#"{"agents":[]}"#]);
    let broken = Instant::now();
    cli(&redis, &["INCR", VERSION]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The set in force stays: nothing is lifted by a reply of the wrong type.
    reset_calls(&b);
    assert_refused(&b, b.send(as_agent(&b)).await, "revoked_jwt").await;
    // Unconfirmed past the bound: fail closed.
    let (response, _) = until_status(&b, StatusCode::SERVICE_UNAVAILABLE, MAX_STALENESS * 2, as_agent).await;
    assert!(
        broken.elapsed() >= MAX_STALENESS - Duration::from_millis(300),
        "closed too early"
    );
    assert_unavailable(&b, response).await;

    // Fixed (an empty set): served again within a second.
    cli(&redis, &["DEL", REVOCATIONS]);
    cli(&redis, &["INCR", VERSION]);
    for replica in [&a, &b] {
        until_status(replica, StatusCode::OK, ONE_SECOND, as_agent).await;
    }

    // A version key that is not an integer is the same failure.
    cli(&redis, &["SET", VERSION, "seven"]);
    let (response, _) = until_status(&b, StatusCode::SERVICE_UNAVAILABLE, MAX_STALENESS * 2, as_agent).await;
    assert_unavailable(&b, response).await;
    cli(&redis, &["SET", VERSION, "100"]);
    until_status(&b, StatusCode::OK, ONE_SECOND, as_agent).await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_serves_the_snapshot_until_the_bound_then_503_and_an_empty_restart_is_refilled() {
    let mut redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let revoked = Revoked::Jti {
        issuer: AS.to_owned(),
        jti: auth_jti(&a),
    };
    a.aauth.revocations().revoke(revoked.clone()).unwrap();
    until_status(&b, StatusCode::UNAUTHORIZED, ONE_SECOND, with_grant).await;

    redis.kill();
    let killed = Instant::now();
    // Within the bound: the snapshot, revocation included.
    assert_eq!(b.send(as_agent(&b)).await.status(), StatusCode::OK);
    reset_calls(&b);
    assert_refused(&b, b.send(with_grant(&b)).await, "revoked_jwt").await;
    // A write made now applies here at once and is published when Redis returns.
    let later = Revoked::KeyThumbprint("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".to_owned());
    a.aauth.revocations().revoke(later.clone()).unwrap();

    // Past it: 503 on every replica, for every verified request.
    for replica in [&b, &a] {
        let (response, _) = until_status(replica, StatusCode::SERVICE_UNAVAILABLE, MAX_STALENESS * 2, as_agent).await;
        assert_unavailable(replica, response).await;
    }
    let closed_after = killed.elapsed();
    eprintln!("closed {} ms after Redis stopped", closed_after.as_millis());
    assert!(
        closed_after >= MAX_STALENESS - Duration::from_millis(300),
        "closed too early"
    );
    reset_calls(&b);
    assert_unavailable(&b, b.send(with_grant(&b)).await).await;
    // Unsigned requests are not the policy's business.
    reset_calls(&b);
    assert_eq!(b.send(get("/open")).await.status(), StatusCode::OK);
    assert_eq!(b.calls(), 1);

    // Restarted empty on the same port: both replicas reconnect and refill it.
    redis.spawn();
    let restarted = Instant::now();
    for replica in [&a, &b] {
        until_status(replica, StatusCode::OK, Duration::from_secs(3), as_agent).await;
    }
    eprintln!(
        "served again {} ms after Redis restarted",
        restarted.elapsed().as_millis()
    );
    for replica in [&a, &b] {
        reset_calls(replica);
        assert_refused(replica, replica.send(with_grant(replica)).await, "revoked_jwt").await;
    }
    let started = Instant::now();
    while !b.aauth.revocations().snapshot().contains(&later) {
        assert!(
            started.elapsed() < ONE_SECOND,
            "the write made while Redis was down was lost"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let members = cli(&redis, &["SMEMBERS", REVOCATIONS]);
    assert!(members.contains(r#""jtis":[{"#), "{members}");
    assert!(members.contains("NzbLsXh8uDCcd"), "{members}");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_reached_redis_answers_503_until_it_does() {
    let mut redis = RedisServer::start();
    redis.kill();
    let (a, _sync) = replica(&redis).await;
    reset_calls(&a);
    assert_unavailable(&a, a.send(as_agent(&a)).await).await;
    redis.spawn();
    until_status(&a, StatusCode::OK, Duration::from_secs(3), as_agent).await;
}

#[tokio::test]
async fn a_sync_is_refused_bad_options_and_a_second_attachment() {
    let redis_url = "redis://127.0.0.1:1/";
    let harness = Harness::new();
    let (revocations, ceilings) = (harness.aauth.revocations(), harness.aauth.scope_ceilings());
    let too_tight = RedisPolicySync::builder(redis_url)
        .poll_interval(Duration::from_millis(500))
        .max_staleness(Duration::from_millis(900))
        .start(revocations, ceilings)
        .await
        .unwrap_err();
    assert!(
        too_tight.to_string().contains("max_staleness must exceed"),
        "{too_tight}"
    );
    let bad_url = RedisPolicySync::builder("http://not-redis/")
        .start(revocations, ceilings)
        .await
        .unwrap_err();
    assert!(bad_url.to_string().contains("Redis URL"), "{bad_url}");
    // Refused options attached nothing: the layer still serves.
    assert_eq!(harness.send(as_agent(&harness)).await.status(), StatusCode::OK);

    let _sync = RedisPolicySync::builder(redis_url)
        .operation_timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(50))
        .start(revocations, ceilings)
        .await
        .unwrap();
    let again = RedisPolicySync::builder(redis_url)
        .start(revocations, &ScopeCeilings::new())
        .await
        .unwrap_err();
    assert!(again.to_string().contains("synced already"), "{again}");
}

// --- key → agent bindings ----------------------------------------------------------------

/// One replica whose key → agent bindings are shared too.
async fn replica_sharing_bindings(redis: &RedisServer) -> (Harness, RedisPolicySync) {
    let harness = Harness::new();
    let sync = RedisPolicySync::builder(redis.url())
        .poll_interval(Duration::from_millis(250))
        .max_staleness(MAX_STALENESS)
        .operation_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .agent_bindings(harness.aauth.agent_bindings(), harness.aauth.clock())
        .start(harness.aauth.revocations(), harness.aauth.scope_ceilings())
        .await
        .expect("valid sync options");
    (harness, sync)
}

/// The hash of shared bindings (default prefix).
const BINDINGS: &str = "tower-aauth:policy:bindings";

/// Names the agent in a ceiling through `harness` (shared with every replica): only the
/// bindings of agents a policy names are shared.
fn name_the_agent(harness: &Harness) {
    harness
        .aauth
        .scope_ceilings()
        .reload_json(format!(r#"{{"agents":{{"{AGENT_ID}":"data.read data.write"}}}}"#).as_bytes())
        .unwrap();
}

/// Waits until the binding of `harness`'s agent key is in Redis.
async fn until_stored(redis: &RedisServer, harness: &Harness) {
    let thumbprint = harness.agent.thumbprint();
    let started = Instant::now();
    while cli(redis, &["HEXISTS", BINDINGS, &thumbprint]) != "1" {
        assert!(started.elapsed() < ONE_SECOND, "the replica never wrote its binding");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Revokes the agent through `a` after `a` saw it with its key, then sends `b` a grant of
/// that key (a draft -11 auth token names no agent); the answer `b` settles on within 1 s.
async fn grant_on_b_after_the_agent_was_seen_on_a_and_revoked(
    a: &Harness,
    b: &Harness,
) -> (StatusCode, Response<Body>) {
    assert_eq!(a.send(as_agent(a)).await.status(), StatusCode::OK);
    a.aauth.revocations().revoke(Revoked::Agent(agent(AGENT_ID))).unwrap();
    let started = Instant::now();
    loop {
        reset_calls(b);
        let response = b.send(with_grant(b)).await;
        if response.status() == StatusCode::UNAUTHORIZED || started.elapsed() > ONE_SECOND {
            return (response.status(), response);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_on_one_replica_is_attributed_to_the_agent_another_replica_saw_behind_its_key() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica_sharing_bindings(&redis).await;
    let (b, _sync_b) = replica_sharing_bindings(&redis).await;
    let (status, response) = grant_on_b_after_the_agent_was_seen_on_a_and_revoked(&a, &b).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "replica B never learnt the key's agent"
    );
    assert_refused(&b, response, "revoked_jwt").await;
    // The binding is stored under the key's thumbprint, as documented.
    let stored = cli(&redis, &["HGET", BINDINGS, &a.agent.thumbprint()]);
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["agent"], AGENT_ID);
    assert_eq!(stored["provider"], AP);
    assert_eq!(stored["thumbprint"], a.agent.thumbprint());
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_bindings_the_other_replica_cannot_attribute_the_grant() {
    // The control for the test above: the same steps with policy shared but bindings not.
    let redis = RedisServer::start();
    let (a, _sync_a) = replica(&redis).await;
    let (b, _sync_b) = replica(&redis).await;
    let (status, _) = grant_on_b_after_the_agent_was_seen_on_a_and_revoked(&a, &b).await;
    assert!(
        b.aauth
            .revocations()
            .snapshot()
            .contains(&Revoked::Agent(agent(AGENT_ID))),
        "replica B has the revocation"
    );
    assert_eq!(status, StatusCode::OK, "replica B attributes the grant to no agent");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_on_one_replica_is_refused_as_another_agent_on_the_other() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica_sharing_bindings(&redis).await;
    let (b, _sync_b) = replica_sharing_bindings(&redis).await;
    name_the_agent(&a);
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::OK);
    // The first binding to reach Redis holds: wait for replica A's, so that the impostor's
    // on replica B comes second.
    until_stored(&redis, &a).await;
    let as_other_agent = |harness: &Harness| {
        let token =
            harness
                .agent_provider
                .agent_token("aauth:impostor@agent.example", &harness.agent.public_jwk(), NOW);
        signed(harness, "GET", KeySource::Jwt(token))
    };
    let (response, took) = until_status(&b, StatusCode::UNAUTHORIZED, ONE_SECOND, as_other_agent).await;
    eprintln!(
        "binding made on replica A enforced on replica B after {} ms",
        took.as_millis()
    );
    assert_refused(&b, response, "invalid_jwt").await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_malformed_shared_binding_is_ignored_and_logged_and_the_bindings_in_force_stay() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let redis = RedisServer::start();
    let (b, _sync_b) = replica_sharing_bindings(&redis).await;
    assert_eq!(b.send(as_agent(&b)).await.status(), StatusCode::OK);
    let thumbprint = b.agent.thumbprint();
    let garbage = [
        "not json".to_owned(),
        format!(
            r#"{{"thumbprint":"{thumbprint}","provider":"https://evil.example","agent":"aauth:impostor@agent.example","until":{},"pinned":false}}"#,
            NOW + 600
        ),
        format!(
            r#"{{"thumbprint":"short","provider":"{AP}","agent":"aauth:impostor@agent.example","until":{},"pinned":false}}"#,
            NOW + 600
        ),
        format!(
            r#"{{"thumbprint":"{thumbprint}","provider":"{AP}","agent":"aauth:impostor@agent.example","until":{},"pinned":false}}"#,
            NOW - 1
        ),
        "x".repeat(4096),
    ];
    for text in &garbage {
        cli(&redis, &["PUBLISH", "tower-aauth:policy:bound", text]);
    }
    until_logged(&logs, "a shared key binding is malformed or out of range; ignored").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The key is still the agent's, and the impostor's identity is still refused.
    assert_eq!(b.send(as_agent(&b)).await.status(), StatusCode::OK);
    let token = b
        .agent_provider
        .agent_token("aauth:impostor@agent.example", &b.agent.public_jwk(), NOW);
    reset_calls(&b);
    let response = b.send(signed(&b, "GET", KeySource::Jwt(token))).await;
    assert_refused(&b, response, "invalid_jwt").await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn bindings_are_shared_only_from_the_crates_own_store() {
    let redis = RedisServer::start();
    struct Custom;
    impl tower_aauth::policy::AgentBindings for Custom {
        fn binding(&self, _: &str, _: u64) -> Option<tower_aauth::policy::Binding> {
            None
        }
        fn bind(
            &self,
            _: &str,
            _: &AgentId,
            _: u64,
            _: u64,
            _: bool,
        ) -> Result<(), tower_aauth::policy::BindingRefused> {
            Ok(())
        }
        fn pin_named(&self, _: &dyn Fn(&AgentId) -> bool, _: u64) {}
    }
    let harness = Harness::with(|b| b.agent_bindings(Custom));
    let refused = RedisPolicySync::builder(redis.url())
        .agent_bindings(harness.aauth.agent_bindings(), harness.aauth.clock())
        .start(harness.aauth.revocations(), harness.aauth.scope_ceilings())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("MemoryAgentBindings"), "{refused}");
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_later_reads_the_bindings_made_before_it() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica_sharing_bindings(&redis).await;
    name_the_agent(&a);
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::OK);
    until_stored(&redis, &a).await;
    // Started now, replica B never received the publication: it reads the store.
    let (b, _sync_b) = replica_sharing_bindings(&redis).await;
    let token = b
        .agent_provider
        .agent_token("aauth:impostor@agent.example", &b.agent.public_jwk(), NOW);
    let response = b.send(signed(&b, "GET", KeySource::Jwt(token))).await;
    assert_refused(&b, response, "invalid_jwt").await;
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_two_replicas_bind_one_key_to_two_agents_the_binding_written_first_holds_on_both() {
    let redis = RedisServer::start();
    let (a, _sync_a) = replica_sharing_bindings(&redis).await;
    name_the_agent(&a);
    // Another replica bound the key to the impostor an instant earlier: its write is in
    // Redis, its publication not yet seen here.
    let thumbprint = a.agent.thumbprint();
    let first = format!(
        r#"{{"thumbprint":"{thumbprint}","provider":"{AP}","agent":"aauth:impostor@agent.example","until":{},"pinned":true}}"#,
        NOW + 3600
    );
    cli(&redis, &["HSET", BINDINGS, &thumbprint, &first]);
    // Replica A binds the key to its agent locally and serves that request…
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::OK);
    // …then its write finds the earlier binding, which it adopts.
    let (response, took) = until_status(&a, StatusCode::UNAUTHORIZED, ONE_SECOND, as_agent).await;
    eprintln!("replica A adopted the earlier binding after {} ms", took.as_millis());
    assert_refused(&a, response, "invalid_jwt").await;
    assert_eq!(
        cli(&redis, &["HGET", BINDINGS, &thumbprint]),
        first,
        "the first writer's binding is unchanged"
    );
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn the_sync_times_its_reads_under_the_policy_label_and_counts_an_unreachable_redis() {
    use support::metrics::Recorded;
    let redis = RedisServer::start();
    let recorded = Recorded::new();
    // The first read happens inside `start`, in the caller's task.
    let (_a, _sync) = recorded.scope(replica(&redis)).await;
    let timed: Vec<_> = recorded
        .take()
        .into_iter()
        .filter(|s| s.name == "tower_aauth_store_seconds" && s.label("store") == Some("policy"))
        .collect();
    assert!(
        timed
            .iter()
            .any(|s| s.label("op") == Some("read") && s.label("outcome") == Some("ok")),
        "{timed:?}"
    );
    let harness = Harness::new();
    let unreachable = format!("redis://127.0.0.1:{}/", support::fleet::free_port());
    let _sync = recorded
        .scope(
            RedisPolicySync::builder(unreachable)
                .operation_timeout(Duration::from_millis(100))
                .connect_timeout(Duration::from_millis(100))
                .start(harness.aauth.revocations(), harness.aauth.scope_ceilings()),
        )
        .await
        .expect("an unreachable Redis is not a configuration error");
    let errors: Vec<_> = recorded
        .take()
        .into_iter()
        .filter(|s| s.name == "tower_aauth_store_errors_total" && s.label("store") == Some("policy"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].label("op"), Some("read"));
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_agents_no_policy_names_stay_on_their_replica() {
    // Any agent provider can mint agent tokens for as many keys as it likes: their
    // bindings must not grow the shared store (or every replica's table) without end.
    let redis = RedisServer::start();
    let (a, _sync_a) = replica_sharing_bindings(&redis).await;
    for n in 0..50 {
        let key = tower_aauth::testing::TestAgent::generate();
        let token = a
            .agent_provider
            .agent_token(&format!("aauth:throwaway-{n}@agent.example"), &key.public_jwk(), NOW);
        let mut request = Request::builder()
            .uri(format!("{RESOURCE}/data"))
            .body(Body::empty())
            .unwrap();
        key.sign(&mut request, &KeySource::Jwt(token), NOW);
        assert_eq!(a.send(request).await.status(), StatusCode::OK);
    }
    // Named later, an agent's keys are shared then, without waiting for its next request.
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cli(&redis, &["HLEN", BINDINGS]), "0", "nothing named, nothing shared");
    name_the_agent(&a);
    until_stored(&redis, &a).await;
    assert_eq!(cli(&redis, &["HLEN", BINDINGS]), "1", "only the named agent's key");
}
