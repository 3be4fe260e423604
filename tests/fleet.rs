//! A fleet: three `resource_server` example processes behind a real `haproxy` balancing
//! round-robin, sharing a real `redis-server` and one signing-key directory, driven through
//! the proxy by the test kit's access server and agent. Every scenario is bounded in count
//! and time and stops by itself.
//!
//! Without `haproxy` or `redis-server` on `PATH` the tests are reported ignored
//! (`build.rs` sets `skip_haproxy`/`skip_redis`), except under `CI=true`, where they fail.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::fleet::{Haproxy, Replica, TempDir, free_port};
use support::redis::RedisServer;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tower_aauth::ResourceKey;
use tower_aauth::testing::{AgentClient, KeySource, TestAgent, TestAuthServer};

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
    keys: TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The signing-key directory every replica reads: one PKCS#8 PEM key, as
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
        let keys = key_directory();
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
        let auth_server = TestAuthServer::builder(&auth_origin)
            .signing_key(ResourceKey::generate().with_kid("fleet-as"))
            .build()
            .unwrap();
        let auth_router = auth_server.router();
        let auth_task = tokio::spawn(async move {
            axum::serve(auth_listener, auth_router).await.unwrap();
        });
        let env = [
            ("AAUTH_RESOURCE", resource.clone()),
            ("AAUTH_AUTH_SERVER", auth_origin.clone()),
            ("AAUTH_ALLOW_HTTP_LOOPBACK", "1".to_owned()),
            ("AAUTH_SIGNING_KEYS", keys.path().display().to_string()),
            ("AAUTH_REDIS_URL", redis.url()),
        ];
        let replicas: Vec<Replica> = (0..REPLICAS).map(|_| Replica::start(free_port(), &env)).collect();
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
async fn a_replica_killed_mid_load_loses_no_accepted_write_and_the_others_keep_serving() {
    let _one = ONE_FLEET.lock().await;
    let mut fleet = Fleet::start().await;
    let client = fleet.client();
    // A write token, once; then bounded load of signed writes while one replica dies.
    let first = client
        .fetch(Method::POST, &fleet.url("/data"), Some(&serde_json::json!({"n": 0})))
        .await
        .unwrap();
    assert_eq!(first.response.status, StatusCode::OK, "{:?}", first.response);
    let writer = client
        .clone()
        .with_source(KeySource::Jwt(first.auth_token.expect("an auth token")));
    let accepted = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let url = fleet.url("/data");
    let load = {
        let (writer, accepted, failed, url) = (writer.clone(), accepted.clone(), failed.clone(), url.clone());
        tokio::spawn(async move {
            for n in 1..=300 {
                let exchange = writer
                    .request(Method::POST, &url, Some(&serde_json::json!({ "n": n })))
                    .await;
                match exchange {
                    Ok(e) if e.status == StatusCode::OK => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(e) => failed.lock().await.push((n, e.status)),
                    Err(error) => failed
                        .lock()
                        .await
                        .push((n, StatusCode::from_u16(599).unwrap_or_else(|_| panic!("{error}")))),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.replicas[1].kill();
    load.await.unwrap();
    let failed = failed.lock().await.clone();
    // Only requests in flight on the killed replica may fail, and only as a gateway error
    // (the proxy retries connections that fail; it cannot know whether a started write ran).
    assert!(
        failed
            .iter()
            .all(|(_, status)| *status == StatusCode::BAD_GATEWAY || *status == StatusCode::SERVICE_UNAVAILABLE),
        "{failed:?}"
    );
    assert!(
        failed.len() <= 4,
        "more failures than requests in flight at the kill: {failed:?}"
    );
    assert_eq!(accepted.load(Ordering::Relaxed) + failed.len(), 300);
    // The two others serve everything afterwards.
    let started = Instant::now();
    for n in 0..30 {
        let e = writer
            .request(Method::POST, &url, Some(&serde_json::json!({ "after": n })))
            .await
            .unwrap();
        assert_eq!(e.status, StatusCode::OK, "after the kill, request {n}: {e:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let _ = (&fleet.redis, &fleet.keys);
}
