//! Metrics through the `metrics` facade: each kind of request records exactly its series
//! with their labels, every request is counted once, label values come from the fixed
//! sets documented on `tower_aauth::Metric` whatever a client sends, and the example
//! serves them as Prometheus text on `AAUTH_METRICS_ADDR`.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{Request, StatusCode};
use support::discovery::MapFetch;
use support::fixtures::{AGENT_KID, AP, AS, NOW, RESOURCE, access_server, agent};
use support::metrics::{Recorded, Sample};
use tower::ServiceExt;
use tower_aauth::guard::Requirement;
use tower_aauth::replay::{Insertion, MemoryReplayStore, ReplayKey, ReplayOptions, ReplayProtection, ReplayStore};
use tower_aauth::testing::{KeySource, ManualClock, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, BoxFuture, Error, Metric, SignatureErrorCode};

const REQUESTS: &str = "tower_aauth_requests_total";
const VERIFICATION: &str = "tower_aauth_verification_seconds";
const TOKEN_CACHE: &str = "tower_aauth_token_cache_lookups_total";
const DISCOVERY_CACHE: &str = "tower_aauth_discovery_cache_lookups_total";
const FETCHES: &str = "tower_aauth_discovery_fetches_total";
const FAILURES: &str = "tower_aauth_discovery_failures_total";
const COOLDOWN: &str = "tower_aauth_discovery_cooldown_hits_total";
const NEGATIVE: &str = "tower_aauth_discovery_negative_hits_total";
const STORE_SECONDS: &str = "tower_aauth_store_seconds";
const STORE_ERRORS: &str = "tower_aauth_store_errors_total";

/// A resource that discovers keys through the default resolver over an in-memory fetcher
/// on which the agent (a `jwks_uri` signer at [`AP`]) and the access server publish.
struct World {
    aauth: AAuth,
    agent: TestAgent,
    access_server: TestIssuer,
    fetch: MapFetch,
}

impl World {
    fn new() -> Self {
        Self::with(|builder| builder)
    }

    fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let (agent, access_server) = (agent(), access_server());
        let fetch = MapFetch::default();
        fetch.publish(AP, "aauth-agent.json", &agent.jwks());
        fetch.publish(AS, "aauth-access.json", &access_server.jwks());
        let builder = AAuth::builder(RESOURCE)
            .clock(ManualClock::new(NOW))
            .fetcher(fetch.clone())
            .auth_server(AS)
            .scope("data.read", "Read");
        let aauth = adjust(builder).build().expect("valid configuration");
        World {
            aauth,
            agent,
            access_server,
            fetch,
        }
    }

    fn app(&self) -> Router {
        Router::new()
            .route("/data", get(|| async { "data" }).post(|| async { "written" }))
            .route(
                "/scoped",
                get(|| async { "scoped" }).route_layer(self.aauth.require_scopes(["data.read"])),
            )
            .route(
                "/deny",
                get(|| async { Error::forbidden("insufficient_scope", "not for you").into_response() }),
            )
            .fallback(|| async { "fallback" })
            .layer(self.aauth.layer())
    }

    fn signed(&self, method: &str, path: &str, source: &KeySource) -> Request<Body> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{RESOURCE}{path}"))
            .body(Body::empty())
            .unwrap();
        self.agent.sign(&mut request, source, NOW);
        request
    }

    fn auth_token(&self) -> String {
        self.access_server
            .auth_token(RESOURCE, &self.agent.public_jwk(), "data.read", NOW)
    }

    async fn send(&self, request: Request<Body>) -> StatusCode {
        self.app().oneshot(request).await.expect("infallible").status()
    }
}

fn jwks_uri(kid: &str) -> KeySource {
    KeySource::agent_jwks(AP, kid)
}

/// `(name, labels, count)` of what `recorded` took, for comparison with an expectation.
type Series = (String, Vec<(String, String)>, u64);

fn series(samples: Vec<Sample>) -> Vec<Series> {
    samples.into_iter().map(|s| (s.name, s.labels, s.count)).collect()
}

/// `(name, labels, count)` as a test writes it.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

fn expect(mut expected: Vec<Expected<'_>>) -> Vec<Series> {
    expected.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    expected
        .into_iter()
        .map(|(name, labels, count)| {
            let mut labels: Vec<(String, String)> =
                labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            labels.sort();
            (name.to_owned(), labels, count)
        })
        .collect()
}

const ALLOW_VERIFIED: &[(&str, &str)] = &[("code", "verified"), ("decision", "allow")];
const VERIFIED: &[(&str, &str)] = &[("outcome", "verified")];
const REFUSED: &[(&str, &str)] = &[("outcome", "refused")];

#[tokio::test]
async fn each_kind_of_request_records_exactly_its_series() {
    let recorded = Recorded::new();
    let world = World::new();
    recorded
        .scope(async {
            // Unsigned: counted, nothing verified.
            assert_eq!(world.send(support::fixtures::get("/data")).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![(REQUESTS, &[("code", "unsigned"), ("decision", "allow")], 1)])
            );

            // hwk: verified in the layer's call.
            let request = world.signed("GET", "/data", &KeySource::Hwk);
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![(REQUESTS, ALLOW_VERIFIED, 1), (VERIFICATION, VERIFIED, 1)])
            );

            // A signature over another path: refused with its Signature-Error code.
            let mut request = world.signed("GET", "/data", &KeySource::Hwk);
            *request.uri_mut() = format!("{RESOURCE}/other").parse().unwrap();
            assert_eq!(world.send(request).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "invalid_signature"), ("decision", "reject")], 1),
                    (VERIFICATION, REFUSED, 1),
                ])
            );

            // jwks_uri, cold: a discovery miss, one metadata and one JWKS fetch.
            let request = world.signed("GET", "/data", &jwks_uri(AGENT_KID));
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (VERIFICATION, VERIFIED, 1),
                    (DISCOVERY_CACHE, &[("cache", "miss")], 1),
                    (FETCHES, &[("document", "jwks")], 1),
                    (FETCHES, &[("document", "metadata")], 1),
                ])
            );

            // jwks_uri, warm: a discovery hit, no fetch.
            let request = world.signed("GET", "/data", &jwks_uri(AGENT_KID));
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (VERIFICATION, VERIFIED, 1),
                    (DISCOVERY_CACHE, &[("cache", "hit")], 1),
                ])
            );

            // An unknown kid of a known signer: answered from the cache within the cooldown.
            let request = world.signed("GET", "/data", &jwks_uri("no-such-kid"));
            assert_eq!(world.send(request).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "unknown_key"), ("decision", "reject")], 1),
                    (VERIFICATION, REFUSED, 1),
                    (DISCOVERY_CACHE, &[("cache", "hit")], 1),
                    (COOLDOWN, &[], 1),
                ])
            );

            // An auth token, first use: a token-cache miss, then the issuer's keys fetched.
            let token = world.auth_token();
            let request = world.signed("GET", "/scoped", &KeySource::Jwt(token.clone()));
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (VERIFICATION, VERIFIED, 1),
                    (TOKEN_CACHE, &[("cache", "miss")], 1),
                    (DISCOVERY_CACHE, &[("cache", "miss")], 1),
                    (FETCHES, &[("document", "jwks")], 1),
                    (FETCHES, &[("document", "metadata")], 1),
                ])
            );

            // The same token again: a token-cache hit, nothing discovered.
            let request = world.signed("GET", "/scoped", &KeySource::Jwt(token));
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (VERIFICATION, VERIFIED, 1),
                    (TOKEN_CACHE, &[("cache", "hit")], 1),
                ])
            );

            // A guard's challenge names the requirement.
            let request = world.signed("GET", "/scoped", &KeySource::Hwk);
            assert_eq!(world.send(request).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "auth-token"), ("decision", "challenge")], 1),
                    (VERIFICATION, VERIFIED, 1),
                ])
            );

            // A handler's 403 names its problem code.
            let request = world.signed("GET", "/deny", &KeySource::Hwk);
            assert_eq!(world.send(request).await, StatusCode::FORBIDDEN);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "insufficient_scope"), ("decision", "deny")], 1),
                    (VERIFICATION, VERIFIED, 1),
                ])
            );

            // A replayed POST: the in-memory store decides without I/O, so nothing is timed.
            let request = world.signed("POST", "/data", &KeySource::Hwk);
            let replay = support::fixtures::copy(&request);
            assert_eq!(world.send(request).await, StatusCode::OK);
            assert_eq!(world.send(replay).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (REQUESTS, &[("code", "invalid_signature"), ("decision", "reject")], 1),
                    (VERIFICATION, VERIFIED, 2),
                ])
            );
        })
        .await;
}

#[tokio::test]
async fn a_failing_issuer_counts_its_failure_then_negative_hits() {
    let recorded = Recorded::new();
    let world = World::new();
    let down = "https://down.example";
    recorded
        .scope(async {
            let request = world.signed("GET", "/data", &KeySource::agent_jwks(down, AGENT_KID));
            assert_eq!(world.send(request).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "invalid_key"), ("decision", "reject")], 1),
                    (VERIFICATION, REFUSED, 1),
                    (DISCOVERY_CACHE, &[("cache", "miss")], 1),
                    (FETCHES, &[("document", "metadata")], 1),
                    (FAILURES, &[], 1),
                ])
            );
            let request = world.signed("GET", "/data", &KeySource::agent_jwks(down, AGENT_KID));
            assert_eq!(world.send(request).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, &[("code", "invalid_key"), ("decision", "reject")], 1),
                    (VERIFICATION, REFUSED, 1),
                    (DISCOVERY_CACHE, &[("cache", "hit")], 1),
                    (NEGATIVE, &[], 1),
                ])
            );
        })
        .await;
    assert_eq!(world.fetch.total_calls(), 1);
}

#[tokio::test]
async fn the_default_requirement_s_answer_is_counted_once() {
    let recorded = Recorded::new();
    let world = World::with(|builder| builder.default_requirement(Requirement::Signature));
    recorded
        .scope(async {
            assert_eq!(
                world.send(support::fixtures::get("/anything")).await,
                StatusCode::UNAUTHORIZED
            );
        })
        .await;
    assert_eq!(
        series(recorded.take()),
        expect(vec![(
            REQUESTS,
            &[("code", "agent-token"), ("decision", "challenge")],
            1
        )])
    );
}

/// The in-memory store behind an asynchronous interface, as a networked store answers.
struct Networked(MemoryReplayStore);

impl ReplayStore for Networked {
    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.0.try_insert(&key, ttl).expect("the memory store decides at once")
        })
    }
}

#[tokio::test]
async fn a_networked_store_is_timed_and_a_full_one_counts_its_error() {
    let recorded = Recorded::new();
    let networked = World::with(|builder| {
        builder.replay(
            ReplayOptions::new()
                .protection(ReplayProtection::AllMethods)
                .store(Networked(MemoryReplayStore::new(100))),
        )
    });
    let full = World::with(|builder| builder.replay(ReplayOptions::new().store(MemoryReplayStore::new(1))));
    recorded
        .scope(async {
            let request = networked.signed("GET", "/data", &KeySource::Hwk);
            assert_eq!(networked.send(request).await, StatusCode::OK);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (VERIFICATION, VERIFIED, 1),
                    (
                        STORE_SECONDS,
                        &[("op", "insert"), ("outcome", "ok"), ("store", "replay")],
                        1
                    ),
                ])
            );

            let first = full.signed("POST", "/data", &KeySource::Hwk);
            let mut second = Request::post(format!("{RESOURCE}/data?n=2"))
                .body(Body::empty())
                .unwrap();
            full.agent.sign(&mut second, &KeySource::Hwk, NOW);
            assert_eq!(full.send(first).await, StatusCode::OK);
            assert_eq!(full.send(second).await, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                series(recorded.take()),
                expect(vec![
                    (REQUESTS, ALLOW_VERIFIED, 1),
                    (
                        REQUESTS,
                        &[("code", "temporarily_unavailable"), ("decision", "reject")],
                        1
                    ),
                    (VERIFICATION, VERIFIED, 2),
                    (STORE_ERRORS, &[("op", "insert"), ("store", "replay")], 1),
                ])
            );
        })
        .await;
}

/// Every value a label may take (the table on `Metric`), with the codes this test's
/// application passes to `Error::forbidden`.
fn allowed(label: &str, value: &str) -> bool {
    let problem_codes = [
        "temporarily_unavailable",
        "payload_too_large",
        "server_error",
        "forbidden",
        "insufficient_scope",
        "no_person_server",
        "auth_token_required",
        "invalid_request",
        tower_aauth::wire::SCOPE_ABOVE_CEILING,
        tower_aauth::wire::GRANT_NOT_HONOURED,
        tower_aauth::wire::DETAIL_MISMATCH,
    ];
    match label {
        "decision" => ["allow", "challenge", "deny", "reject"].contains(&value),
        "code" => {
            [
                "verified",
                "unsigned",
                "agent-token",
                "person-token",
                "auth-token",
                "other",
            ]
            .contains(&value)
                || problem_codes.contains(&value)
                || SignatureErrorCode::ALL.iter().any(|c| c.as_str() == value)
        }
        "outcome" => ["verified", "refused", "ok", "error"].contains(&value),
        "cache" => ["hit", "miss"].contains(&value),
        "document" => ["metadata", "jwks"].contains(&value),
        "store" => ["replay", "pending", "policy"].contains(&value),
        "op" => ["insert", "release", "read", "write"].contains(&value),
        _ => false,
    }
}

#[tokio::test]
async fn labels_come_from_fixed_sets_whatever_clients_send() {
    let recorded = Recorded::new();
    let world = World::new();
    let attacker = TestIssuer::new("https://attacker-issuer.example", [66; 32], "attacker-kid");
    let mut requests = Vec::new();
    for path in [
        "/attacker-path",
        "/data/%0d%0aattacker",
        "/%F0%9F%98%80attacker",
        "/scoped?attacker=1",
    ] {
        requests.push(support::fixtures::get(path));
        requests.push(world.signed("GET", path, &KeySource::Hwk));
        requests.push(world.signed("DELETE", path, &jwks_uri("attacker-kid")));
    }
    for issuer in ["https://attacker-issuer.example", "https://attacker.example"] {
        requests.push(world.signed("GET", "/data", &KeySource::agent_jwks(issuer, "attacker-kid-%0d%0a")));
    }
    let foreign = attacker.auth_token(RESOURCE, &world.agent.public_jwk(), "data.read attacker", NOW);
    requests.push(world.signed("GET", "/scoped", &KeySource::Jwt(foreign)));
    requests.push(world.signed("GET", "/scoped", &KeySource::Jwt("attacker.token.value".into())));
    let mut bad_signature = world.signed("POST", "/data", &KeySource::Hwk);
    *bad_signature.uri_mut() = format!("{RESOURCE}/attacker").parse().unwrap();
    requests.push(bad_signature);
    let sent = requests.len() as u64;
    recorded
        .scope(async {
            for request in requests {
                world.send(request).await;
            }
        })
        .await;

    let samples = recorded.all();
    let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    for sample in &samples {
        let metric = Metric::ALL
            .iter()
            .find(|m| m.name() == sample.name)
            .unwrap_or_else(|| panic!("{} is not in Metric::ALL {known:?}", sample.name));
        let mut keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let mut documented = metric.labels().to_vec();
        documented.sort_unstable();
        assert_eq!(keys, documented, "{}", sample.name);
        for (label, value) in &sample.labels {
            assert!(
                allowed(label, value),
                "{}: {label}={value:?} is not in its fixed set",
                sample.name
            );
            assert!(
                !value.contains("attacker"),
                "{}: a client's string became a label",
                sample.name
            );
        }
    }
    // Every request counted exactly once, and the varied requests reached several kinds.
    assert_eq!(recorded.count(REQUESTS, &[]), sent);
    let decisions: std::collections::BTreeSet<&str> = samples.iter().filter_map(|s| s.label("decision")).collect();
    assert!(decisions.len() >= 3, "{decisions:?}");
    assert!(recorded.count(FETCHES, &[]) >= 2, "{samples:?}");
}

/// The example binary, built by `cargo test` next to this test's own binary.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Kills the child when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`: status line and body.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the example listens");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn the_example_serves_prometheus_text_on_the_metrics_address() {
    use std::io::BufRead;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let mut child = Child(
        std::process::Command::new(example("resource_server"))
            .env("AAUTH_ADDR", &addr)
            .env("AAUTH_METRICS_ADDR", "127.0.0.1:0")
            .env("AAUTH_AUTH_SERVER", "https://auth.example")
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cargo test builds the examples"),
    );
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let (metrics, ready) = tokio::task::spawn_blocking(move || {
        let mut metrics = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(at) = line.split("metrics on http://").nth(1) {
                metrics = at.strip_suffix("/metrics").map(str::to_owned);
            }
            if line.contains("listening on") {
                return (metrics, true);
            }
        }
        (metrics, false)
    })
    .await
    .unwrap();
    assert!(ready, "the example did not start");
    let metrics = metrics.expect("the example names its metrics address");

    let challenge = http_get(&addr, "/data").await;
    assert!(challenge.starts_with("HTTP/1.1 401"), "{challenge}");
    let text = http_get(&metrics, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/plain"), "{text}");
    assert!(text.contains("# TYPE tower_aauth_requests_total counter"), "{text}");
    assert!(text.contains("# HELP tower_aauth_requests_total"), "{text}");
    assert!(
        text.contains(r#"tower_aauth_requests_total{decision="challenge",code="agent-token"} 1"#),
        "{text}"
    );
}
