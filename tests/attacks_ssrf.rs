//! Attack catalogue §1.4: SSRF through key discovery, attacked through the layer. The
//! agent signs with `jwks_uri` naming a hostile identifier (or a name that resolves
//! somewhere hostile); the built-in discovery runs over the guarded fetcher with an
//! injected resolver and connector (`F0`: both counters stay 0, nothing leaves the
//! process), or over real loopback servers for the transport-level rows.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::attack::{NOW, RESOURCE, get};
use support::discovery::{Canned, IssuerServer, ScriptedResolver};
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent};
use tower_aauth::{AAuth, AAuthBuilder, testing::ManualClock, wire};
use tower_aauth::{
    BoxFuture,
    discovery::{Connector, FetchError, FetchPolicy, FetchedDocument, GuardedFetch, PinnedRequest, ReqwestFetch},
};

const AGENT_ID: &str = "https://agent.example";

/// A connector that answers by URL from in-memory documents and records every target.
#[derive(Clone, Default)]
struct UrlConnector {
    documents: Arc<Mutex<HashMap<String, Bytes>>>,
    targets: Arc<Mutex<Vec<support::discovery::Target>>>,
}

impl UrlConnector {
    fn serve(&self, url: &str, body: &Value) {
        self.documents
            .lock()
            .unwrap()
            .insert(url.to_owned(), Bytes::from(body.to_string()));
    }

    fn calls(&self) -> usize {
        self.targets.lock().unwrap().len()
    }
}

impl Connector for UrlConnector {
    fn get<'a>(&'a self, request: PinnedRequest<'a>) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        self.targets
            .lock()
            .unwrap()
            .push((request.url.to_owned(), request.addresses.to_vec()));
        let found = self.documents.lock().unwrap().get(request.url).cloned();
        Box::pin(async move { found.map(FetchedDocument::new).ok_or(FetchError::Status(404)) })
    }
}

/// The resource over the guarded fetcher with an injected resolver and connector, and the
/// agent provider `agent.example` published on that connector.
struct World {
    aauth: AAuth,
    resolver: ScriptedResolver,
    connector: UrlConnector,
    agent: TestAgent,
    calls: Arc<AtomicUsize>,
}

fn world(addresses: Vec<Vec<IpAddr>>) -> World {
    world_with(addresses, |b| b)
}

fn world_with(addresses: Vec<Vec<IpAddr>>, adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> World {
    let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
    let resolver = ScriptedResolver::answering(addresses);
    let connector = UrlConnector::default();
    connector.serve(
        &format!("{AGENT_ID}/.well-known/{}", engine::dwk::AGENT),
        &json!({"issuer": AGENT_ID, "jwks_uri": format!("{AGENT_ID}/jwks.json")}),
    );
    connector.serve(&format!("{AGENT_ID}/jwks.json"), &agent.jwks());
    let fetch = GuardedFetch::with_parts(resolver.clone(), connector.clone(), {
        let mut policy = FetchPolicy::default();
        policy.allow_http_loopback = false;
        policy.timeout = Duration::from_secs(5);
        policy
    });
    let builder = AAuth::builder(RESOURCE).clock(ManualClock::new(NOW)).fetcher(fetch);
    World {
        aauth: adjust(builder).build().unwrap(),
        resolver,
        connector,
        agent,
        calls: Arc::default(),
    }
}

impl World {
    async fn send_as(&self, id: &str, dwk: &str) -> Response<Body> {
        let mut request = get("/data");
        let source = KeySource::JwksUri {
            id: id.into(),
            dwk: dwk.into(),
            kid: "agent-key-1".into(),
        };
        self.agent.sign(&mut request, &source, NOW);
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        let calls = self.calls.clone();
        let router = Router::new()
            .fallback(any(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "handler ran" }
            }))
            .layer(self.aauth.layer());
        router.oneshot(request).await.unwrap()
    }

    /// 401 with exactly `code`, the handler not run.
    async fn refused(&self, response: Response<Body>, code: &str) -> Bytes {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[wire::SIGNATURE_ERROR], format!("error={code}"));
        assert_eq!(self.calls.load(Ordering::SeqCst), 0, "the inner service must not run");
        axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap()
    }

    fn assert_f0(&self) {
        assert_eq!(self.resolver.calls(), 0, "no name resolution");
        assert_eq!(self.connector.calls(), 0, "no connection");
    }
}

fn public() -> Vec<IpAddr> {
    vec!["93.184.216.34".parse().unwrap()]
}

async fn refused_before_any_resolution(identifiers: &[&str]) {
    for id in identifiers {
        let w = world(vec![public()]);
        let response = w.send_as(id, engine::dwk::AGENT).await;
        w.refused(response, "invalid_key").await;
        w.assert_f0();
    }
}

#[tokio::test]
async fn ssrf_00_positive_control_a_public_agent_provider_is_fetched_and_served() {
    let w = world(vec![public()]);
    let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(w.connector.calls(), 2, "metadata and JWKS");
}

#[tokio::test]
async fn ssrf_01_non_https_identifiers_are_invalid_key_without_resolution() {
    refused_before_any_resolution(&[
        "http://agent.example",
        "file:///etc/passwd",
        "gopher://agent.example",
        "data:application/json,{}",
        "//agent.example",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_02_userinfo_and_parser_differentials_are_invalid_key() {
    refused_before_any_resolution(&[
        "https://u:p@agent.example",
        "https://agent.example\\@evil.example",
        "https://agent.example%40evil.example",
        "https://agent .example",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_03_identifiers_with_a_port_are_invalid_key() {
    refused_before_any_resolution(&[
        "https://agent.example:8443",
        "https://agent.example:22",
        "https://agent.example:443",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_04_identifiers_with_a_path_query_fragment_or_slash_are_invalid_key() {
    refused_before_any_resolution(&[
        "https://agent.example/",
        "https://agent.example/v1",
        "https://agent.example?x=1",
        "https://agent.example#f",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_05_ip_literals_in_every_spelling_are_invalid_key() {
    refused_before_any_resolution(&[
        "https://127.0.0.1",
        "https://2130706433",
        "https://0x7f.1",
        "https://0177.0.0.1",
        "https://127.1",
        "https://0",
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",
        "https://169.254.169.254",
        "https://[fd00::1]",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_06_normalisation_smuggling_is_invalid_key() {
    refused_before_any_resolution(&[
        "https://Agent.Example",
        "https://agent.example.",
        "https://agent..example",
    ])
    .await;
    // U-labels cannot even be signed: a covered field must be ASCII, so the signature
    // layer refuses them before discovery is consulted.
    for id in ["https://ägent.example", "https://\u{0430}gent.example"] {
        let w = world(vec![public()]);
        let mut request = get("/data");
        w.agent.sign(&mut request, &KeySource::Hwk, NOW);
        let value = format!(r#"sig=jwks_uri;id="{id}";dwk="aauth-agent.json";kid="agent-key-1""#);
        request.headers_mut().insert(
            wire::SIGNATURE_KEY,
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
        let response = w.send(request).await;
        w.refused(response, "invalid_signature").await;
        w.assert_f0();
    }
}

#[tokio::test]
async fn ssrf_07_a_dwk_outside_the_allow_list_is_invalid_key() {
    for dwk in ["../../admin", "a/b", "x?y", "%2e%2e", "jwks.json"] {
        let w = world(vec![public()]);
        let response = w.send_as(AGENT_ID, dwk).await;
        w.refused(response, "invalid_key").await;
        w.assert_f0();
    }
}

async fn refused_after_resolution_to(addresses: &[&str]) {
    for address in addresses {
        let w = world(vec![vec![address.parse().unwrap()]]);
        let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
        w.refused(response, "invalid_key").await;
        assert_eq!(w.connector.calls(), 0, "{address}: never connected");
    }
}

#[tokio::test]
async fn ssrf_08_a_name_resolving_to_a_special_purpose_ipv4_address_is_invalid_key() {
    refused_after_resolution_to(&[
        "127.0.0.1",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "198.18.0.1",
        "192.0.2.1",
        "224.0.0.1",
        "255.255.255.255",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_09_a_name_resolving_to_a_special_ipv6_or_embedded_ipv4_address_is_invalid_key() {
    refused_after_resolution_to(&[
        "::1",
        "fe80::1",
        "fd12::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::",
    ])
    .await;
}

#[tokio::test]
async fn ssrf_10_one_private_address_in_a_mixed_answer_refuses_the_name() {
    let w = world(vec![vec![
        "93.184.216.34".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ]]);
    let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
    w.refused(response, "invalid_key").await;
    assert_eq!(w.connector.calls(), 0);
}

#[tokio::test]
async fn ssrf_11_a_rebinding_name_is_resolved_once_per_fetch_and_connected_to_as_vetted() {
    let public_ip: IpAddr = "93.184.216.34".parse().unwrap();
    let w = world(vec![
        vec![public_ip],
        vec![public_ip],
        vec!["127.0.0.1".parse().unwrap()],
    ]);
    let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(w.resolver.calls(), 2, "one resolution for each of the two fetches");
    for (url, addresses) in w.connector.targets.lock().unwrap().iter() {
        assert!(
            addresses.iter().all(|a| a.ip() == public_ip),
            "{url} went to {addresses:?}"
        );
    }
}

/// A resource doing discovery over reqwest against loopback servers (development flag),
/// with a short fetch timeout.
fn loopback_resource(timeout: Duration) -> World {
    let mut builder = AAuth::builder(RESOURCE)
        .clock(ManualClock::new(NOW))
        .fetcher(ReqwestFetch::with_policy({
            let mut policy = FetchPolicy::default();
            policy.allow_http_loopback = true;
            policy.timeout = timeout;
            policy
        }));
    builder = builder.dangerous().allow_http_loopback();
    World {
        aauth: builder.build().unwrap(),
        resolver: ScriptedResolver::default(),
        connector: UrlConnector::default(),
        agent: TestAgent::from_seed([1; 32]).with_kid("agent-key-1"),
        calls: Arc::default(),
    }
}

async fn provider(agent: &TestAgent) -> IssuerServer {
    let server = IssuerServer::start().await;
    server.publish(engine::dwk::AGENT, &agent.jwks());
    server
}

fn metadata_path() -> String {
    format!("/.well-known/{}", engine::dwk::AGENT)
}

#[tokio::test]
async fn ssrf_12_redirects_are_never_followed() {
    for status in [301u16, 302, 307, 308] {
        let w = loopback_resource(Duration::from_secs(5));
        let server = provider(&w.agent).await;
        let target = IssuerServer::start().await;
        server.set(
            &metadata_path(),
            Canned::status(status).header("location", &target.url(&metadata_path())),
        );
        let response = w.send_as(&server.origin, engine::dwk::AGENT).await;
        w.refused(response, "invalid_key").await;
        assert_eq!(server.total_hits(), 1, "exactly one request");
        assert_eq!(target.total_hits(), 0, "the redirect target was never contacted");
    }
}

#[tokio::test]
async fn ssrf_13_a_metadata_jwks_uri_pointing_elsewhere_is_invalid_key() {
    for jwks_uri in [
        "http://agent.example/jwks.json",
        "https://10.0.0.1/k",
        "https://elsewhere.example/jwks.json",
    ] {
        let w = world(vec![public()]);
        w.connector.serve(
            &format!("{AGENT_ID}/.well-known/{}", engine::dwk::AGENT),
            &json!({"issuer": AGENT_ID, "jwks_uri": jwks_uri}),
        );
        let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
        w.refused(response, "invalid_key").await;
        assert_eq!(w.connector.calls(), 1, "{jwks_uri}: only the metadata was fetched");
    }
}

#[tokio::test]
async fn ssrf_14_ambient_proxy_variables_are_ignored() {
    // A dead proxy: a fetcher that honoured these would fail; ours goes direct.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    // SAFETY (of the test process): this binary's other tests either go direct too or
    // use injected connectors, so the variables cannot change their outcome.
    unsafe {
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            std::env::set_var(name, &proxy);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let w = loopback_resource(Duration::from_secs(5));
    let server = provider(&w.agent).await;
    let response = w.send_as(&server.origin, engine::dwk::AGENT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(&metadata_path()), 1, "reached directly");
}

#[tokio::test]
async fn ssrf_15_oversized_and_endless_bodies_are_invalid_key() {
    for canned in [
        Canned::raw("application/json", vec![b' '; 10 << 20]),
        Canned::raw("application/json", vec![b' '; 10 << 20]).chunked(64 * 1024),
        Canned::raw("application/json", vec![b' '; 64 * 1024 + 1]),
    ] {
        let w = loopback_resource(Duration::from_secs(5));
        let server = provider(&w.agent).await;
        server.set(&metadata_path(), canned);
        let response = w.send_as(&server.origin, engine::dwk::AGENT).await;
        w.refused(response, "invalid_key").await;
    }
}

#[tokio::test]
async fn ssrf_16_a_stalled_upstream_is_cut_off_at_the_fetch_timeout() {
    let w = loopback_resource(Duration::from_millis(500));
    let server = provider(&w.agent).await;
    server.set(
        &metadata_path(),
        Canned::json(&server.metadata()).delayed(Duration::from_secs(30)),
    );
    let started = Instant::now();
    let response = w.send_as(&server.origin, engine::dwk::AGENT).await;
    w.refused(response, "invalid_key").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ssrf_17_a_compressed_body_is_never_decompressed() {
    let w = loopback_resource(Duration::from_secs(5));
    let server = provider(&w.agent).await;
    // A gzip header in front of bytes that would expand: refused by its encoding, unread.
    let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bomb.extend(std::iter::repeat_n(0u8, 4096));
    server.set(
        &metadata_path(),
        Canned::raw("application/json", bomb).header("content-encoding", "gzip"),
    );
    let response = w.send_as(&server.origin, engine::dwk::AGENT).await;
    w.refused(response, "invalid_key").await;
}

#[tokio::test]
async fn ssrf_18_hostile_json_documents_are_invalid_key() {
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let many: Vec<Value> = (0..10_000)
        .map(|n| json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": format!("k{n}")}))
        .collect();
    let documents = [
        Bytes::from_static(b"not json"),
        Bytes::from(json!({"keys": "not an array"}).to_string()),
        Bytes::from(json!({ "keys": many }).to_string()),
        Bytes::from(format!("{{\"keys\":{deep}}}")),
    ];
    for document in documents {
        let w = world(vec![public()]);
        w.connector
            .documents
            .lock()
            .unwrap()
            .insert(format!("{AGENT_ID}/jwks.json"), document);
        let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        w.refused(response, "invalid_key").await;
    }
}

#[tokio::test]
async fn ssrf_19_metadata_naming_another_issuer_or_none_is_refused() {
    let w = world(vec![public()]);
    w.connector.serve(
        &format!("{AGENT_ID}/.well-known/{}", engine::dwk::AGENT),
        &json!({"issuer": "https://b.example", "jwks_uri": format!("{AGENT_ID}/jwks.json")}),
    );
    let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
    w.refused(response, "issuer_mismatch").await;
    assert_eq!(
        w.connector.calls(),
        1,
        "the JWKS of a mismatched issuer is never fetched"
    );

    let w = world(vec![public()]);
    w.connector.serve(
        &format!("{AGENT_ID}/.well-known/{}", engine::dwk::AGENT),
        &json!({"jwks_uri": format!("{AGENT_ID}/jwks.json")}),
    );
    let response = w.send_as(AGENT_ID, engine::dwk::AGENT).await;
    w.refused(response, "issuer_missing").await;
}

#[tokio::test]
async fn ssrf_20_a_tls_failure_is_invalid_key_and_certificates_are_never_waived() {
    // An https URL to a loopback server that cannot complete a TLS handshake: the fetch
    // fails closed. (Certificate verification itself is rustls with web PKI roots; the
    // crate has no switch to turn it off, which the source check below pins.)
    let w = loopback_resource(Duration::from_secs(5));
    let server = provider(&w.agent).await;
    let https_origin = server.origin.replace("http://", "https://");
    let response = w.send_as(&https_origin, engine::dwk::AGENT).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    w.refused(response, "invalid_key").await;
    let fetch = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/discovery/fetch.rs")).unwrap();
    assert!(
        !fetch.contains("danger_accept_invalid"),
        "certificate checks are never disabled"
    );
}

#[tokio::test]
async fn ssrf_21_every_discovery_failure_is_the_same_answer_byte_for_byte() {
    let mut bodies = Vec::new();
    // Refused address, DNS failure (empty answer), missing document, redirect.
    for addresses in [vec!["10.0.0.1".parse().unwrap()], Vec::new()] {
        let w = world(vec![addresses]);
        bodies.push(
            w.refused(w.send_as(AGENT_ID, engine::dwk::AGENT).await, "invalid_key")
                .await,
        );
    }
    let w = world(vec![public()]);
    w.connector.documents.lock().unwrap().clear();
    bodies.push(
        w.refused(w.send_as(AGENT_ID, engine::dwk::AGENT).await, "invalid_key")
            .await,
    );
    let w = loopback_resource(Duration::from_secs(5));
    let server = provider(&w.agent).await;
    server.set(&metadata_path(), Canned::status(500));
    bodies.push(
        w.refused(w.send_as(&server.origin, engine::dwk::AGENT).await, "invalid_key")
            .await,
    );
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]), "{bodies:?}");
}
