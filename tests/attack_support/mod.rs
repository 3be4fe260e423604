//! Shared harness of the attack tests (tests/attacks_*.rs): a resource behind the layer
//! whose handler counts its calls, a key resolver that counts fetches, and [`Attack`], which
//! fails any negative test that forgets to assert its outcome.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use tower_aauth::discovery::{BoxFuture, KeyQuery, KeyResolver, StaticResolver};
use tower_aauth::jose::{Jwk, ResourceKey, b64url};
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, Error, ManualClock, wire};

pub const NOW: u64 = 1_730_217_600;
pub const RESOURCE: &str = "https://resource.example";
pub const AS: &str = "https://as.example";
pub const AP: &str = "https://agent.example";

/// A resolver with a cold cache: `cached` never answers, so every key lookup goes through
/// `resolve`, which is counted (the stand-in for an outbound fetch) and answered from pinned
/// keys.
#[derive(Clone)]
pub struct CountingResolver {
    inner: StaticResolver,
    fetches: Arc<AtomicUsize>,
}

impl KeyResolver for CountingResolver {
    fn cached(&self, _query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>> {
        None
    }

    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(query)
    }
}

pub struct Harness {
    pub aauth: AAuth,
    pub calls: Arc<AtomicUsize>,
    pub fetches: Arc<AtomicUsize>,
    pub agent: TestAgent,
    pub access_server: TestIssuer,
    pub agent_provider: TestIssuer,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let agent = TestAgent::from_seed([1; 32]).with_kid("agent-key-1");
        let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
        let agent_provider = TestIssuer::new(AP, [3; 32], "ap-key-1");
        let fetches = Arc::new(AtomicUsize::new(0));
        let resolver = CountingResolver {
            inner: StaticResolver::new()
                .with_key(AS, wire::dwk::ACCESS, access_server.public_jwk())
                .with_key(AP, wire::dwk::AGENT, agent_provider.public_jwk())
                .with_key(AP, wire::dwk::AGENT, agent.public_jwk()),
            fetches: fetches.clone(),
        };
        let builder = AAuth::builder(RESOURCE)
            .clock(ManualClock::new(NOW))
            .key_resolver(resolver)
            .auth_server(AS);
        Harness {
            aauth: adjust(builder).build().expect("valid configuration"),
            calls: Arc::new(AtomicUsize::new(0)),
            fetches,
            agent,
            access_server,
            agent_provider,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        let calls = self.calls.clone();
        let router = Router::new()
            .fallback(any(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "handler ran"
                }
            }))
            .layer(self.aauth.layer());
        router.oneshot(request).await.expect("infallible")
    }

    /// A GET to `path`, signed by the agent with `source` at `NOW`.
    pub fn signed(&self, path: &str, source: &KeySource) -> Request<Body> {
        let mut request = get(path);
        self.agent.sign(&mut request, source, NOW);
        request
    }

    /// Sends a request signed with `Signature-Key: sig=jwt;jwt="<token>"` and starts an
    /// [`Attack`] on its response.
    pub async fn token_attack(&self, token: &str) -> Attack<'_> {
        let response = self.send(self.signed("/data", &KeySource::Jwt(token.to_owned()))).await;
        Attack::new(self, response)
    }

    pub async fn attack(&self, request: Request<Body>) -> Attack<'_> {
        let response = self.send(request).await;
        Attack::new(self, response)
    }

    /// A valid auth token's claims for the agent's key.
    pub fn auth_claims(&self) -> Value {
        self.access_server
            .auth_claims(RESOURCE, &self.agent.public_jwk(), "data.read", NOW)
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap()
}

/// A compact JWS from raw header and payload JSON text, signed (Ed25519) by `key` over the
/// exact segments, so that structure, not the signature, is what a test varies.
pub fn raw_jwt(header: &str, payload: &str, key: &ResourceKey) -> String {
    let signing_input = format!("{}.{}", b64url(header), b64url(payload));
    let signature = key.sign_bytes(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(signature))
}

/// The outcome of one attack. Dropping it without asserting fails the test, so a negative
/// test that checks nothing cannot pass.
#[must_use = "assert the outcome of the attack"]
pub struct Attack<'h> {
    harness: &'h Harness,
    response: Option<Response<Body>>,
    asserted: bool,
    fetches_allowed: bool,
}

impl<'h> Attack<'h> {
    fn new(harness: &'h Harness, response: Response<Body>) -> Self {
        Attack {
            harness,
            response: Some(response),
            asserted: false,
            fetches_allowed: true,
        }
    }

    /// Also asserts that no key was fetched for this request (catalogue `F0`).
    pub fn without_fetch(mut self) -> Self {
        self.fetches_allowed = false;
        self
    }

    /// Asserts `401`, exactly one `Signature-Error` with `code`, `no-store`, the problem
    /// body naming the code, and that the inner service did not run (`H0`).
    pub async fn refused(mut self, code: &str) {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "status for {code}");
        let errors: Vec<_> = response
            .headers()
            .get_all(wire::header::SIGNATURE_ERROR)
            .iter()
            .collect();
        assert_eq!(errors.len(), 1, "exactly one Signature-Error");
        let value = errors[0].to_str().unwrap();
        assert!(
            value == format!("error={code}") || value.starts_with(&format!("error={code},")),
            "expected {code}, got {value}"
        );
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
        assert_eq!(self.harness.calls(), 0, "the inner service must not run");
        if !self.fetches_allowed {
            assert_eq!(self.harness.fetches(), 0, "no key may be fetched for this request");
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], code);
        self.asserted = true;
    }

    /// Asserts the request was served (a positive control).
    pub fn accepted(mut self) {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(self.harness.calls(), 1, "the inner service ran once");
        self.asserted = true;
    }
}

impl Drop for Attack<'_> {
    fn drop(&mut self) {
        if !self.asserted && !std::thread::panicking() {
            panic!("an attack test asserted nothing about its outcome");
        }
    }
}
