//! A fleet: three `resource_server` example processes behind a real `haproxy` balancing
//! round-robin, sharing a real `redis-server` and the same signing keys (a directory each,
//! so that a rollout can reach one replica after the other), driven through the proxy by
//! the test kit's access server and agent. Every scenario is bounded in count and time and
//! stops by itself. The replicas are the example binary `cargo test` builds beside this
//! test: run `cargo build --all-features --example resource_server` first when running
//! this file alone.
//!
//! Without `haproxy` or `redis-server` on `PATH` the tests are reported ignored
//! (`build.rs` sets `skip_haproxy`/`skip_redis`), except under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::fleet::{Haproxy, Replica, TempDir, free_port};
use support::redis::RedisServer;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tower_aauth::testing::{AgentClient, Consent, KeySource, TestAgent, TestAuthServer};
use tower_aauth::{ResourceKey, engine};

/// One fleet at a time: each starts five processes on a two-core machine.
static ONE_FLEET: Mutex<()> = Mutex::const_new(());

const REPLICAS: usize = 3;

struct Fleet {
    redis: RedisServer,
    replicas: Vec<Replica>,
    proxy: Haproxy,
    auth_server: TestAuthServer,
    agent: TestAgent,
    agent_id: String,
    /// Each replica's signing-key directory (same keys; a rollout updates one at a time).
    keys: Vec<TempDir>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A replica's signing-key directory: the fleet's one PKCS#8 PEM key, as
/// `openssl genpkey -algorithm ed25519` writes it.
fn key_directory() -> TempDir {
    let keys = TempDir::new("fleet-keys");
    let pem = include_str!("vectors/pem/resource-key.pem");
    std::fs::write(keys.path().join("resource-1.pem"), pem).unwrap();
    keys
}

impl Fleet {
    async fn start() -> Fleet {
        let redis = RedisServer::start();
        let keys: Vec<TempDir> = (0..REPLICAS).map(|_| key_directory()).collect();
        let proxy_port = free_port();
        let resource = format!("http://127.0.0.1:{proxy_port}");
        let agent = TestAgent::generate();
        let (agent_id, agent_task) = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let id = format!("http://{}", listener.local_addr().unwrap());
            let router = agent.identity_router(&id);
            let task = tokio::spawn(async move {
                axum::serve(listener, router).await.unwrap();
            });
            (id, task)
        };
        let auth_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth_origin = format!("http://{}", auth_listener.local_addr().unwrap());
        // The seed's flow: 202 from the access server, then polls, then the token.
        let auth_server = TestAuthServer::builder(&auth_origin)
            .consent(Consent::AutoApprove)
            .retry_after(0)
            .signing_key(ResourceKey::generate().with_kid("fleet-as"))
            .build()
            .unwrap();
        let auth_router = auth_server.router();
        let auth_task = tokio::spawn(async move {
            axum::serve(auth_listener, auth_router).await.unwrap();
        });
        let replicas: Vec<Replica> = keys
            .iter()
            .map(|keys| {
                let env = [
                    ("AAUTH_RESOURCE", resource.clone()),
                    ("AAUTH_AUTH_SERVER", auth_origin.clone()),
                    ("AAUTH_ALLOW_HTTP_LOOPBACK", "1".to_owned()),
                    ("AAUTH_SIGNING_KEYS", keys.path().display().to_string()),
                    ("AAUTH_REDIS_URL", redis.url()),
                ];
                Replica::start(free_port(), &env)
            })
            .collect();
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let proxy = Haproxy::start(proxy_port, &ports);
        Fleet {
            redis,
            replicas,
            proxy,
            auth_server,
            agent,
            agent_id,
            keys,
            tasks: vec![agent_task, auth_task],
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proxy.origin())
    }

    /// The agent signing with its own identity (`jwks_uri`).
    fn client(&self) -> AgentClient {
        AgentClient::new(
            self.agent.clone(),
            KeySource::agent_jwks(&self.agent_id, self.agent.key().kid()),
        )
        .with_max_polling(Duration::from_secs(20))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn the_seed_flow_runs_through_the_proxy_whichever_replica_answers() {
    let _one = ONE_FLEET.lock().await;
    let fleet = Fleet::start().await;
    let client = fleet.client();
    // Each flow meets several replicas: the challenge, the access server's metadata and
    // JWKS fetches (through the proxy), the retry. A resource token minted by one replica
    // verifies against the JWKS another serves because they share the key directory.
    for round in 0..(2 * REPLICAS) {
        let outcome = client.fetch(Method::GET, &fleet.url("/data"), None).await.unwrap();
        assert_eq!(
            outcome.response.status,
            StatusCode::OK,
            "round {round}: {:?}",
            outcome.response
        );
        assert_eq!(outcome.response.json().unwrap()["scope"], "data.read");
    }
    let _ = &fleet.auth_server;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_deferred_order_held_by_one_replica_is_run_by_a_poll_that_reaches_another() {
    const ORDERS: usize = 3;
    let _one = ONE_FLEET.lock().await;
    let fleet = Fleet::start().await;
    let client = fleet.client();
    let replica = |exchange: &tower_aauth::testing::Exchange| exchange.header("x-replica").map(str::to_owned);
    let mut elsewhere = 0;
    for order in 0..ORDERS {
        let body = json!({ "item": "widget", "n": order });
        let outcome = client
            .fetch(Method::POST, &fleet.url("/orders"), Some(&body))
            .await
            .unwrap();
        let held = &outcome.transcript[0];
        assert_eq!(held.status, StatusCode::ACCEPTED, "order {order}: {held:?}");
        let ran = &outcome.response;
        assert_eq!(ran.status, StatusCode::OK, "order {order}: {ran:?}");
        let answer = ran.json().unwrap();
        assert_eq!(answer["placed"], true);
        assert_eq!(answer["order"], body, "the held request's own body ran");
        assert_eq!(answer["scope"], "orders.write");
        if replica(held) != replica(ran) {
            elsewhere += 1;
        }
        // A repeat of the poll gets the same answer, from whichever replica it reaches.
        let pending_url = outcome
            .transcript
            .iter()
            .rev()
            .find(|exchange| exchange.status == StatusCode::OK)
            .map(|exchange| exchange.url.clone())
            .unwrap();
        let token = outcome.auth_token.clone().unwrap();
        let again = client
            .clone()
            .with_source(KeySource::Jwt(token))
            .get(&pending_url)
            .await
            .unwrap();
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json().unwrap()["order"], body);
    }
    eprintln!("{elsewhere} of {ORDERS} held orders ran on a replica other than the one that held them");
    assert!(elsewhere > 0, "no poll reached another replica than the holder");
    let _ = &fleet.auth_server;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_replica_killed_mid_load_loses_no_accepted_write_and_the_others_keep_serving() {
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 150;
    let _one = ONE_FLEET.lock().await;
    let mut fleet = Fleet::start().await;
    let client = fleet.client();
    let url = fleet.url("/data");
    let first = client
        .fetch(Method::POST, &url, Some(&json!({ "n": 0 })))
        .await
        .unwrap();
    assert_eq!(first.response.status, StatusCode::OK, "{:?}", first.response);
    let writer = client.with_source(KeySource::Jwt(first.auth_token.expect("an auth token")));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (writer, url, answered) = (writer.clone(), url.clone(), answered.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(PER_WORKER);
                for n in 0..PER_WORKER {
                    let body = json!({ "worker": worker, "n": n });
                    let outcome = match writer.request(Method::POST, &url, Some(&body)).await {
                        Ok(exchange) => Ok(exchange),
                        Err(error) => Err(error.to_string()),
                    };
                    answered.fetch_add(1, Ordering::Relaxed);
                    outcomes.push(outcome);
                }
                outcomes
            })
        })
        .collect();
    // Kill replica 1 (SIGKILL) with requests in flight, a quarter of the way through.
    while answered.load(Ordering::Relaxed) < WORKERS * PER_WORKER / 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    fleet.replicas[1].kill();
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for worker in workers {
        for outcome in worker.await.unwrap() {
            match outcome {
                Ok(exchange) if exchange.status == StatusCode::OK => accepted.push(exchange),
                Ok(exchange) => failed.push(format!("{} {:?}", exchange.status, exchange.error_code())),
                Err(error) => failed.push(error),
            }
        }
    }
    // Only requests in flight on the killed replica may fail (the proxy retries a
    // connection that fails, never a request that may have run): at most one per worker.
    eprintln!(
        "fleet: {} accepted, {} failed: {failed:?}",
        accepted.len(),
        failed.len()
    );
    assert!(failed.len() <= WORKERS, "{failed:?}");
    assert_eq!(accepted.len() + failed.len(), WORKERS * PER_WORKER);
    // No request is accepted twice: each accepted write, sent again byte for byte, is a
    // replay on whichever replica the proxy picks (the replay store is shared).
    let http = reqwest::Client::new();
    for exchange in accepted.iter().step_by(accepted.len() / 10 + 1) {
        let mut again = http.post(&exchange.url).body(exchange.request_body.clone());
        for (name, value) in &exchange.request_headers {
            again = again.header(name, value);
        }
        let replayed = again.send().await.unwrap();
        assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            replayed.headers()["signature-error"],
            "error=invalid_signature",
            "a replayed write is refused"
        );
    }
    // The two others serve everything afterwards.
    for n in 0..30 {
        let exchange = writer
            .request(Method::POST, &url, Some(&json!({ "after": n })))
            .await
            .unwrap();
        assert_eq!(
            exchange.status,
            StatusCode::OK,
            "after the kill, request {n}: {exchange:?}"
        );
    }
    let _ = (&fleet.redis, &fleet.keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_revocation_written_into_redis_is_refused_by_every_replica_within_a_second() {
    let _one = ONE_FLEET.lock().await;
    let fleet = Fleet::start().await;
    let client = fleet.client();
    let url = fleet.url("/data");
    let granted = client.fetch(Method::GET, &url, None).await.unwrap();
    assert_eq!(granted.response.status, StatusCode::OK);
    let reader = client.with_source(KeySource::Jwt(granted.auth_token.expect("an auth token")));
    // An operator's tool, as `redis-cli` would: SADD the entry, INCR the version.
    let member = json!({ "key_thumbprints": [fleet.agent.thumbprint()] }).to_string();
    let redis = redis::Client::open(fleet.redis.url()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let written = std::time::Instant::now();
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg("tower-aauth:policy:revocations")
        .arg(&member)
        .ignore()
        .cmd("INCR")
        .arg("tower-aauth:policy:version")
        .ignore()
        .query_async(&mut connection)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every replica, round-robin, refuses it now.
    for round in 0..(2 * REPLICAS) {
        let exchange = reader.get(&url).await.unwrap();
        assert_eq!(exchange.status, StatusCode::UNAUTHORIZED, "round {round}: {exchange:?}");
        assert_eq!(exchange.signature_error(), Some("error=revoked_jwt"), "round {round}");
    }
    assert!(written.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_revocation_posted_through_the_proxy_to_one_replica_is_refused_by_every_replica_within_a_second() {
    let _one = ONE_FLEET.lock().await;
    let fleet = Fleet::start().await;
    let client = fleet.client();
    let url = fleet.url("/data");
    let granted = client.fetch(Method::GET, &url, None).await.unwrap();
    assert_eq!(granted.response.status, StatusCode::OK);
    let auth_token = granted.auth_token.expect("an auth token");
    let claims = unverified_payload(&auth_token);
    let (jti, exp) = (claims["jti"].as_str().unwrap(), claims["exp"].as_u64().unwrap());
    let reader = client.with_source(KeySource::Jwt(auth_token.clone()));
    for round in 0..REPLICAS {
        assert_eq!(reader.get(&url).await.unwrap().status, StatusCode::OK, "round {round}");
    }
    // The access server revokes its token at the resource's revocation endpoint; the
    // proxy hands the POST to one replica.
    let revocation = fleet
        .auth_server
        .revocation_request(&fleet.url("/aauth/revoke"), jti, exp);
    let http = reqwest::Client::new();
    let (parts, body) = revocation.into_parts();
    let mut post = http.post(parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        post = post.header(name, value);
    }
    let posted = std::time::Instant::now();
    let answer = post.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let took_it = answer.headers()["x-replica"].to_str().unwrap().to_owned();
    // Every replica, round-robin, refuses the token within a second.
    loop {
        let mut refused_by = std::collections::BTreeSet::new();
        for _ in 0..(2 * REPLICAS) {
            let exchange = reader.get(&url).await.unwrap();
            if exchange.status == StatusCode::UNAUTHORIZED {
                assert_eq!(exchange.signature_error(), Some("error=revoked_jwt"));
                refused_by.insert(exchange.header("x-replica").unwrap().to_owned());
            }
        }
        if refused_by.len() == REPLICAS {
            eprintln!(
                "fleet: revocation posted to {took_it} refused by all {REPLICAS} replicas after {} ms",
                posted.elapsed().as_millis()
            );
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(1),
            "after 1 s only {refused_by:?} refuse the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The claims of a compact JWT, unverified (the test reads its own token).
fn unverified_payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn redis_restarted_mid_load_is_answered_503_then_served_again_within_five_seconds() {
    let _one = ONE_FLEET.lock().await;
    let mut fleet = Fleet::start().await;
    let client = fleet.client();
    let url = fleet.url("/data");
    let granted = client
        .fetch(Method::POST, &url, Some(&json!({ "n": 0 })))
        .await
        .unwrap();
    assert_eq!(granted.response.status, StatusCode::OK);
    let writer = client.with_source(KeySource::Jwt(granted.auth_token.expect("an auth token")));
    fleet.redis.kill();
    // Writes need the shared replay store: refused with 503 + Retry-After while Redis is
    // down, never served unprotected.
    for n in 0..6 {
        let exchange = writer
            .request(Method::POST, &url, Some(&json!({ "down": n })))
            .await
            .unwrap();
        assert_eq!(
            exchange.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "write {n}: {exchange:?}"
        );
        assert!(exchange.header("retry-after").is_some());
        assert_eq!(exchange.signature_error(), None);
    }
    fleet.redis.spawn();
    let restarted = std::time::Instant::now();
    let mut served = 0;
    while served < 2 * REPLICAS {
        let exchange = writer
            .request(Method::POST, &url, Some(&json!({ "up": served })))
            .await
            .unwrap();
        if exchange.status == StatusCode::OK {
            served += 1;
        } else {
            served = 0;
            assert_eq!(exchange.status, StatusCode::SERVICE_UNAVAILABLE, "{exchange:?}");
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "not served again 5 s after Redis restarted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `kid` in the header of the resource token a challenge carries.
fn challenge_kid(exchange: &tower_aauth::testing::Exchange) -> Option<String> {
    let requirement = exchange.requirement()?;
    let token = requirement.split("resource-token=\"").nth(1)?.split('"').next()?;
    let header = engine::b64url_decode(token.split('.').next()?)?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    Some(header["kid"].as_str()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_haproxy, ignore = "haproxy not found on PATH (apt-get install haproxy)")]
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
async fn a_key_rotation_rolled_out_replica_by_replica_under_load_fails_no_request() {
    const MIN_REQUESTS: usize = 2_000;
    let _one = ONE_FLEET.lock().await;
    let fleet = Fleet::start().await;
    let url = fleet.url("/data");
    let exchanges = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let new_kid_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let new_seed = [42u8; 32];
    let new_kid = ResourceKey::from_seed(new_seed).kid().to_owned();
    // Full flows (challenge → access server → token → 200): each mints a resource token,
    // which the access server verifies against the JWKS it fetched through the proxy.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (fleet.client(), url.clone());
            let (exchanges, failures, new_kid_seen, stop, stopped) = (
                exchanges.clone(),
                failures.clone(),
                new_kid_seen.clone(),
                stop.clone(),
                stopped.clone(),
            );
            let new_kid = new_kid.clone();
            tokio::spawn(async move {
                while !stopped.load(Ordering::Relaxed) {
                    let flow = client.fetch(Method::GET, &url, None);
                    let outcome = tokio::select! {
                        outcome = flow => outcome,
                        () = stop.notified() => return,
                    };
                    match outcome {
                        Ok(outcome) if outcome.response.status == StatusCode::OK => {
                            exchanges.fetch_add(outcome.transcript.len(), Ordering::Relaxed);
                            if challenge_kid(&outcome.transcript[0]).as_deref() == Some(new_kid.as_str()) {
                                new_kid_seen.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(outcome) => failures.lock().await.push(format!("{:?}", outcome.response)),
                        Err(error) => failures.lock().await.push(error.to_string()),
                    }
                }
            })
        })
        .collect();
    // The rollout: the new key, signing from 62 s on, copied into one replica's directory
    // after the other (each replica publishes it within a second, and signs with it no
    // sooner than 60 s after publishing it).
    let signs_from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 62;
    let file = format!("resource-2.signs-from-{signs_from}.jwk");
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519",
        "d": engine::b64url(new_seed),
        "x": ResourceKey::from_seed(new_seed).public_jwk().x(),
    });
    for keys in &fleet.keys {
        std::fs::write(keys.path().join(&file), jwk.to_string()).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Load until every replica signs with the new key and the bounded count is reached.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while new_kid_seen.load(Ordering::Relaxed) < 10 || exchanges.load(Ordering::Relaxed) < MIN_REQUESTS {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation did not complete under load"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Keep the load on until every replica signs with the new key (the last one to
    // publish it signs 60 s after it did).
    let client = fleet.client();
    'rollout: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "not every replica signs with the new key"
        );
        for _ in 0..(2 * REPLICAS) {
            let challenge = client.get(&url).await.unwrap();
            if challenge_kid(&challenge).as_deref() != Some(new_kid.as_str()) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue 'rollout;
            }
        }
        break;
    }
    stopped.store(true, Ordering::Relaxed);
    stop.notify_waiters();
    for worker in workers {
        worker.await.unwrap();
    }
    let failures = failures.lock().await.clone();
    assert!(failures.is_empty(), "{} failed: {failures:?}", failures.len());
    assert!(exchanges.load(Ordering::Relaxed) >= MIN_REQUESTS);
}
