//! Load and fault (issue #7, item 6): the layer behind a real HTTP server on 127.0.0.1,
//! driven over 64 keep-alive connections with a mix of valid, forged and replayed
//! requests; and an issuer whose JWKS endpoint stalls, then dies, in the middle of a run.
//!
//! Bounded in count (10 000 requests) and in time (every await has a deadline), and
//! loopback only. Nothing here measures speed: the deadlines are generous ceilings that
//! only a hang can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_aauth::discovery::{DiscoveryConfig, FetchPolicy, ReqwestFetch};
use tower_aauth::engine;
use tower_aauth::replay::{MemoryReplayStore, ReplayOptions};
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, wire};

const CONNECTIONS: usize = 64;
const REQUESTS: usize = 10_000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past the fetch timeout a request may take before it counts as hung: room
/// for a loaded 2-core machine, far below the stall.
const HANG_MARGIN: Duration = Duration::from_secs(9);
const STALL: Duration = Duration::from_secs(60);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An issuer on 127.0.0.1 serving metadata and a JWKS that can be told to stall, and that
/// can be killed.
struct Issuer {
    origin: String,
    stalled: Arc<AtomicBool>,
    jwks_hits: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct IssuerState {
    origin: String,
    jwks: Value,
    stalled: Arc<AtomicBool>,
    jwks_hits: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let stalled = Arc::new(AtomicBool::new(false));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let state = IssuerState {
            origin: origin.clone(),
            jwks,
            stalled: stalled.clone(),
            jwks_hits: jwks_hits.clone(),
        };
        let metadata = |State(state): State<IssuerState>| async move {
            axum::Json(json!({"issuer": state.origin, "jwks_uri": format!("{}/jwks.json", state.origin)}))
        };
        let jwks = |State(state): State<IssuerState>| async move {
            state.jwks_hits.fetch_add(1, Ordering::SeqCst);
            if state.stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(STALL).await;
            }
            axum::Json(state.jwks)
        };
        let app = Router::new()
            .route(&format!("/.well-known/{}", engine::dwk::AGENT), get(metadata))
            .route(&format!("/.well-known/{}", engine::dwk::ACCESS), get(metadata))
            .route("/jwks.json", get(jwks))
            .with_state(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Issuer {
            origin,
            stalled,
            jwks_hits,
            server,
        }
    }
}

/// The resource: `AAuthLayer` in front of a handler that counts its calls, on 127.0.0.1,
/// with discovery over the guarded fetcher (loopback admitted, 1 s fetch timeout) and the
/// in-memory replay store.
struct Resource {
    origin: String,
    aauth: AAuth,
    replay: MemoryReplayStore,
    calls: Arc<AtomicUsize>,
}

async fn resource(access_server: &str) -> Resource {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let replay = MemoryReplayStore::new(MemoryReplayStore::DEFAULT_CAPACITY);
    let mut builder = AAuth::builder(&origin)
        .auth_server(access_server)
        .fetcher(ReqwestFetch::with_policy({
            let mut policy = FetchPolicy::default();
            policy.allow_http_loopback = true;
            policy.timeout = FETCH_TIMEOUT;
            policy
        }))
        .discovery({
            let mut config = DiscoveryConfig::default();
            config.new_issuers_per_minute = 10_000;
            config
        })
        .replay(ReplayOptions::new().store(replay.clone()));
    builder = builder.dangerous().allow_http_loopback();
    let aauth = builder.build().expect("valid configuration");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .fallback(any(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "served"
            }
        }))
        .layer(aauth.layer());
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    Resource {
        origin,
        aauth,
        replay,
        calls,
    }
}

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Served,
    Refused(&'static str),
}

struct Planned {
    request: Request<Vec<u8>>,
    expect: Expect,
}

fn signed(agent: &TestAgent, method: &str, url: &str, source: &KeySource) -> Request<Vec<u8>> {
    let mut request = Request::builder().method(method).uri(url).body(Vec::new()).unwrap();
    agent.sign(&mut request, source, now());
    request
}

fn copy(request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut copy = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .body(request.body().clone())
        .unwrap();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Flips one character of the signature value, keeping it valid base64.
fn forge(mut request: Request<Vec<u8>>) -> Request<Vec<u8>> {
    let value = request.headers()[wire::SIGNATURE].to_str().unwrap().to_owned();
    let (head, rest) = value.split_once(":").expect("sig=:…:");
    let mut bytes = rest.as_bytes().to_vec();
    bytes[4] = if bytes[4] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}:{}", String::from_utf8(bytes).unwrap());
    request.headers_mut().insert(wire::SIGNATURE, forged.parse().unwrap());
    request
}

async fn send(client: &reqwest::Client, request: &Request<Vec<u8>>) -> (StatusCode, Option<String>) {
    let mut builder = client.request(request.method().clone(), request.uri().to_string());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder
        .body(request.body().clone())
        .send()
        .await
        .expect("the server answers");
    let code = response
        .headers()
        .get(wire::SIGNATURE_ERROR)
        .map(|v| v.to_str().unwrap().trim_start_matches("error=").to_owned());
    (response.status(), code)
}

fn client() -> reqwest::Client {
    // One client per task, one idle connection each: 64 tasks are 64 keep-alive connections.
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .no_proxy()
        .build()
        .unwrap()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_over_64_connections_are_each_answered_as_they_deserve() {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let provider = Issuer::start(agent.jwks()).await;
    // A JWKS depends only on the key, so the server can start before its origin is known.
    let access_keys = TestIssuer::new("https://unnamed.example", [2; 32], "as-key-1").jwks();
    let access_server = Issuer::start(access_keys).await;
    let access = TestIssuer::new(access_server.origin.clone(), [2; 32], "as-key-1");
    let resource = resource(&access_server.origin).await;
    let token = access.auth_token(&resource.origin, &agent.public_jwk(), "data.read", now());

    // Each connection's script: a fixed mix, so every kind crosses every connection. A
    // replay directly follows the original it copies, on the same connection, so the
    // original has been accepted before the copy arrives.
    let per_connection = REQUESTS / CONNECTIONS + 1;
    let mut scripts: Vec<Vec<Planned>> = (0..CONNECTIONS).map(|_| Vec::new()).collect();
    let jwt = KeySource::Jwt(token);
    let jwks = KeySource::agent_jwks(&provider.origin, "agent-key-1");
    let mut planned = 0;
    'plan: for step in 0..per_connection {
        for (connection, script) in scripts.iter_mut().enumerate() {
            if planned == REQUESTS {
                break 'plan;
            }
            let url = |path: &str| format!("{}{path}/{connection}/{step}", resource.origin);
            let kind = (connection + step) % 10;
            match kind {
                0..=3 => script.push(Planned {
                    request: signed(&agent, "GET", &url("/data"), &jwt),
                    expect: Expect::Served,
                }),
                4 | 5 => script.push(Planned {
                    request: signed(&agent, "GET", &url("/profile"), &jwks),
                    expect: Expect::Served,
                }),
                6 | 7 => script.push(Planned {
                    request: forge(signed(
                        &agent,
                        "GET",
                        &url("/data"),
                        if kind == 6 { &jwt } else { &KeySource::Hwk },
                    )),
                    expect: Expect::Refused(engine::code::INVALID_SIGNATURE),
                }),
                _ => {
                    let original = signed(&agent, "POST", &url("/orders"), &KeySource::Hwk);
                    let replay = copy(&original);
                    script.push(Planned {
                        request: original,
                        expect: Expect::Served,
                    });
                    script.push(Planned {
                        request: replay,
                        expect: Expect::Refused(engine::code::INVALID_SIGNATURE),
                    });
                    planned += 1;
                }
            }
            planned += 1;
        }
    }
    let total: usize = scripts.iter().map(Vec::len).sum();
    assert!(total >= REQUESTS, "{total} requests planned");
    let served_expected = scripts.iter().flatten().filter(|p| p.expect == Expect::Served).count();

    let resident_before = resident_bytes();
    let started = Instant::now();
    let tasks: Vec<_> = scripts
        .into_iter()
        .map(|script| {
            tokio::spawn(async move {
                let client = client();
                let mut wrong = Vec::new();
                let mut server_errors = 0;
                for planned in script {
                    let (status, code) = send(&client, &planned.request).await;
                    if status.is_server_error() {
                        server_errors += 1;
                    }
                    let got = match (status, code.as_deref()) {
                        (StatusCode::OK, None) => Some(Expect::Served),
                        (StatusCode::UNAUTHORIZED, Some(engine::code::INVALID_SIGNATURE)) => {
                            Some(Expect::Refused(engine::code::INVALID_SIGNATURE))
                        }
                        _ => None,
                    };
                    if got != Some(planned.expect) {
                        wrong.push(format!(
                            "{} {}: {status} {code:?}",
                            planned.request.method(),
                            planned.request.uri()
                        ));
                    }
                }
                (wrong, server_errors)
            })
        })
        .collect();
    let mut wrong = Vec::new();
    let mut server_errors = 0;
    for task in tasks {
        let (w, s) = tokio::time::timeout(Duration::from_secs(600), task)
            .await
            .expect("the run is bounded")
            .unwrap();
        wrong.extend(w);
        server_errors += s;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{total} requests over {CONNECTIONS} connections in {elapsed:?} ({:.0}/s)",
        total as f64 / elapsed.as_secs_f64()
    );

    assert_eq!(server_errors, 0, "no 5xx");
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        resource.calls.load(Ordering::SeqCst),
        served_expected,
        "the handler ran once per valid request"
    );
    // One JWKS fetch per issuer: the run is served from the caches.
    assert_eq!(provider.jwks_hits.load(Ordering::SeqCst), 1);
    assert_eq!(access_server.jwks_hits.load(Ordering::SeqCst), 1);
    // Bounded state: the replay store holds the accepted POSTs and nothing else.
    let posts = total - served_expected;
    assert!(
        resource.replay.len() <= posts as u64,
        "replay store: {}",
        resource.replay.len()
    );
    assert!(resource.replay.len() <= resource.replay.capacity());
    let growth = resident_bytes().saturating_sub(resident_before);
    assert!(growth < 256 << 20, "resident memory grew by {growth} bytes");
    let _ = &resource.aauth;
}

/// Sends `requests` concurrently and returns each answer with how long it took.
async fn timed(requests: Vec<Request<Vec<u8>>>) -> Vec<(StatusCode, Option<String>, Duration)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            tokio::spawn(async move {
                let client = client();
                let started = Instant::now();
                let (status, code) = send(&client, &request).await;
                (status, code, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        let answer = tokio::time::timeout(FETCH_TIMEOUT + HANG_MARGIN + Duration::from_secs(20), task)
            .await
            .expect("no request hangs")
            .unwrap();
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_then_dead_jwks_server_hangs_no_request_past_the_fetch_timeout() {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let healthy = Issuer::start(agent.jwks()).await;
    let mut faulty = Issuer::start(agent.jwks()).await;
    let resource = resource("https://as.example").await;
    let from = |issuer: &Issuer, n: usize| {
        signed(
            &agent,
            "GET",
            &format!("{}/data/{n}", resource.origin),
            &KeySource::agent_jwks(&issuer.origin, "agent-key-1"),
        )
    };

    // Warm: the healthy issuer's keys are cached.
    let warm = timed(vec![from(&healthy, 0)]).await;
    assert_eq!(warm[0].0, StatusCode::OK);

    // The faulty issuer's JWKS endpoint stalls: 32 first-sight requests for it, mixed with
    // 32 requests from the healthy issuer, all at once.
    faulty.stalled.store(true, Ordering::SeqCst);
    let mut requests: Vec<_> = (0..32).map(|n| from(&faulty, n)).collect();
    requests.extend((0..32).map(|n| from(&healthy, 100 + n)));
    let answers = timed(requests).await;
    for (status, code, took) in &answers[..32] {
        assert!(
            *took < FETCH_TIMEOUT + HANG_MARGIN,
            "a request waiting on the stalled issuer took {took:?}"
        );
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(code.as_deref(), Some(engine::code::INVALID_KEY));
    }
    for (status, _, _) in &answers[32..] {
        assert_eq!(*status, StatusCode::OK, "requests for a healthy issuer are unaffected");
    }
    // Single flight: 32 waiters made one JWKS request, not 32.
    assert_eq!(faulty.jwks_hits.load(Ordering::SeqCst), 1);

    // The faulty issuer dies: requests for it are refused promptly; the healthy one is
    // still served from cache.
    faulty.server.abort();
    let _ = (&mut faulty.server).await;
    let dead_agent = TestAgent::from_seed([9; 32]).with_kid("other-key");
    let mut requests = vec![signed(
        &dead_agent,
        "GET",
        &format!("{}/data/dead", resource.origin),
        &KeySource::agent_jwks(&faulty.origin, "other-key"),
    )];
    requests.push(from(&healthy, 200));
    let answers = timed(requests).await;
    assert!(answers[0].2 < FETCH_TIMEOUT + HANG_MARGIN, "took {:?}", answers[0].2);
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert!(!answers[0].0.is_server_error());
    assert_eq!(answers[1].0, StatusCode::OK);
    assert_eq!(
        healthy.jwks_hits.load(Ordering::SeqCst),
        1,
        "the healthy issuer was fetched once"
    );
}
