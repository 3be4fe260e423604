//! Budget counters shared by two resource instances through a real `redis-server`
//! (feature `redis`): a budget is spent once across the fleet, not once per replica. The
//! harness starts `redis-server` on a free loopback port; without it on `PATH` the tests
//! are reported ignored (`build.rs` sets `skip_redis`), except under `CI=true`.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get as route_get;
use http::{Response, StatusCode};
use serde_json::json;
use support::harness::{Harness, NOW, RESOURCE, body_json, get};
use support::redis::RedisServer;
use tower::ServiceExt;
use tower_aauth::budget::{BudgetOptions, RedisBudgetStore};
use tower_aauth::engine;
use tower_aauth::testing::KeySource;

/// One resource instance with its own connection to the shared Redis, metering `/report`
/// at 1000 USD at 6 decimals; every instance counts into `calls`.
struct Instance {
    harness: Harness,
    calls: Arc<AtomicUsize>,
}

impl Instance {
    async fn new(redis: &RedisServer, calls: Arc<AtomicUsize>) -> Self {
        let store = RedisBudgetStore::connect(redis.url()).await.unwrap();
        let harness = Harness::with(move |b| b.budgets(BudgetOptions::new().store(store)));
        Instance { harness, calls }
    }

    fn router(&self) -> Router {
        let aauth = &self.harness.aauth;
        let calls = self.calls.clone();
        Router::new()
            .route(
                "/report",
                route_get(move || {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                })
                .route_layer(aauth.meter("USD", 6, 1000).scopes(["report"])),
            )
            .layer(aauth.layer())
    }

    fn token(&self, amount: u64) -> String {
        let h = &self.harness;
        let mut claims = h
            .access_server
            .auth_claims(RESOURCE, &h.agent.public_jwk(), "report", NOW);
        claims["budget"] = json!({ "amount": amount, "unit": "USD", "decimals": 6 });
        h.access_server.sign(engine::typ::AUTH, &claims)
    }

    async fn send(&self, token: &str) -> Response<Body> {
        let mut request = get("/report");
        self.harness
            .agent
            .sign(&mut request, &KeySource::Jwt(token.to_owned()), NOW);
        self.router().oneshot(request).await.unwrap()
    }
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_budget_spent_on_one_instance_is_spent_on_the_other() {
    let redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (
        Instance::new(&redis, calls.clone()).await,
        Instance::new(&redis, calls.clone()).await,
    );
    let token = a.token(3000);
    for (instance, remaining) in [(&a, 2000), (&b, 1000), (&a, 0)] {
        let response = instance.send(&token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let expected = format!("remaining={remaining}; cost=1000; unit=\"USD\"; decimals=6");
        assert_eq!(response.headers()["aauth-budget"], expected.as_str());
    }
    let response = b.send(&token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["aauth-requirement"]
            .to_str()
            .unwrap()
            .ends_with("; reason=budget-exhausted")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_across_two_instances_spend_a_budget_once() {
    let redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let a = Arc::new(Instance::new(&redis, calls.clone()).await);
    let b = Arc::new(Instance::new(&redis, calls.clone()).await);
    let token = a.token(5000);
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let instance = if i % 2 == 0 { a.clone() } else { b.clone() };
            let token = token.clone();
            tokio::spawn(async move { instance.send(&token).await.status() })
        })
        .collect();
    let mut served = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => served += 1,
            status => assert_eq!(status, StatusCode::UNAUTHORIZED),
        }
    }
    assert_eq!(served, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn an_unreachable_store_answers_503_and_serves_nothing() {
    let mut redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let instance = Instance::new(&redis, calls.clone()).await;
    redis.kill();
    let response = instance.send(&instance.token(5000)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(body_json(response).await["error"], "temporarily_unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn a_counter_lives_as_long_as_its_token_by_the_resources_clock() {
    let redis = RedisServer::start();
    let instance = Instance::new(&redis, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(instance.send(&instance.token(5000)).await.status(), StatusCode::OK);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tower-aauth:budget:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one counter, named by a hash: {keys:?}");
    assert_eq!(keys[0].len(), "tower-aauth:budget:".len() + 64);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    // The token was issued at the resource's NOW for an hour (plus the allowed skew),
    // although Redis's own clock reads another year.
    assert!((3500..=3700).contains(&ttl), "ttl {ttl}");
}

/// The `resource_server` example, driven from outside its process: its metered
/// `GET /report` spends a budget the test kit's auth server granted, runs out, and the
/// counter outlives a restart of the process because it lives in Redis.
#[cfg_attr(skip_redis, ignore = "redis-server not found on PATH (apt-get install redis-server)")]
#[tokio::test]
async fn the_example_resource_server_meters_report_and_keeps_the_count_across_a_restart() {
    use support::fleet::{Replica, free_port};
    use tower_aauth::testing::{AgentClient, Consent, TestAgent, TestAuthServer};

    let redis = RedisServer::start();
    let auth_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_origin = format!("http://{}", auth_listener.local_addr().unwrap());
    let auth_server = TestAuthServer::builder(&auth_origin)
        .consent(Consent::Immediate)
        .budget_amount(2000)
        .build()
        .unwrap();
    let auth_router = auth_server.router();
    let auth_task = tokio::spawn(async move {
        let _ = axum::serve(auth_listener, auth_router).await;
    });
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}");
    let env = [
        ("AAUTH_RESOURCE", resource.clone()),
        ("AAUTH_AUTH_SERVER", auth_origin.clone()),
        ("AAUTH_ALLOW_HTTP_LOOPBACK", "1".to_owned()),
        ("AAUTH_REDIS_URL", redis.url()),
    ];
    let mut replica = Replica::start(port, &env);
    let agent = TestAgent::generate();
    let client = AgentClient::new(agent.clone(), KeySource::Hwk);
    let url = format!("{resource}/report");

    let first = client.fetch(http::Method::GET, &url, None).await.unwrap();
    let offered = first.transcript[0].resource_token_claims().unwrap();
    assert_eq!(
        offered["budget"],
        json!({"amount": 1_000_000, "unit": "USD", "decimals": 6})
    );
    assert_eq!(first.response.status, StatusCode::OK);
    assert_eq!(first.response.budget_figure("remaining"), Some(1000));
    assert_eq!(first.response.budget_figure("cost"), Some(1000));
    let token = KeySource::Jwt(first.auth_token.unwrap());

    replica.kill();
    replica.spawn();
    // A new client: the old one's pooled connection died with the process.
    let client = AgentClient::new(agent, KeySource::Hwk);
    let step = tower_aauth::testing::FlowStep::Retry;
    let second = client.send(step, http::Method::GET, &url, None, &token).await.unwrap();
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.budget_figure("remaining"), Some(0), "the restart kept the count");
    let spent = client.send(step, http::Method::GET, &url, None, &token).await.unwrap();
    assert_eq!(spent.status, StatusCode::UNAUTHORIZED);
    assert_eq!(spent.requirement_reason().as_deref(), Some("budget-exhausted"));
    assert_eq!(spent.budget_figure("remaining"), Some(0));
    auth_task.abort();
}
