//! Shared harness of the attack tests (tests/attacks_*.rs): a resource behind the layer
//! whose handler counts its calls, a key resolver that counts fetches, and [`Attack`], which
//! fails any negative test that forgets to assert its outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use tower_aauth::engine::{self, b64url};
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, Error, testing::ManualClock, wire};
use tower_aauth::{
    BoxFuture,
    discovery::{KeyQuery, KeyResolver, StaticResolver},
};
use tower_aauth::{Jwk, ResourceKey};

pub use super::fixtures::{AP, AS, NOW, PS, RESOURCE, get};
use super::fixtures::{access_server, agent, agent_provider, counting, person_server};

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
    pub person_server: TestIssuer,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let (agent, access_server) = (agent(), access_server());
        let (agent_provider, person_server) = (agent_provider(), person_server());
        let fetches = Arc::new(AtomicUsize::new(0));
        let resolver = CountingResolver {
            inner: StaticResolver::new()
                .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
                .with_key(AP, engine::dwk::AGENT, agent_provider.public_jwk())
                .with_key(AP, engine::dwk::AGENT, agent.public_jwk())
                .with_key(PS, engine::dwk::PERSON, person_server.public_jwk()),
            fetches: fetches.clone(),
        };
        let builder = AAuth::builder(RESOURCE)
            .clock(ManualClock::new(NOW))
            .key_resolver(resolver)
            .auth_server(AS)
            .person_server(PS);
        Harness {
            aauth: adjust(builder).build().expect("valid configuration"),
            calls: Arc::new(AtomicUsize::new(0)),
            fetches,
            agent,
            access_server,
            agent_provider,
            person_server,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        let router = Router::new()
            .fallback(any(counting(&self.calls, "handler ran")))
            .layer(self.aauth.layer());
        router.oneshot(request).await.expect("infallible")
    }

    /// Sends `request` to a router whose `/data` route requires the auth-token scopes
    /// `scopes` (`require_scopes`) and whose every other path needs only a signature.
    pub async fn send_scoped(&self, request: Request<Body>, scopes: &[&str]) -> Response<Body> {
        let handler = counting(&self.calls, "handler ran");
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let router = Router::new()
            .route(
                "/data",
                // `any` would register only a fallback, which `route_layer` does not wrap.
                axum::routing::get(handler.clone())
                    .post(handler.clone())
                    .put(handler.clone())
                    .delete(handler.clone())
                    .route_layer(self.aauth.require_scopes(scopes)),
            )
            .fallback(any(handler))
            .layer(self.aauth.layer());
        router.oneshot(request).await.expect("infallible")
    }

    /// [`Harness::send_scoped`], then starts an [`Attack`] on the response.
    pub async fn scoped_attack(&self, request: Request<Body>, scopes: &[&str]) -> Attack<'_> {
        let response = self.send_scoped(request, scopes).await;
        Attack::new(self, response)
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

    /// Starts an attack on a response the test obtained itself.
    pub fn from_response(harness: &'h Harness, response: Response<Body>) -> Self {
        Self::new(harness, response)
    }

    /// Also asserts that no key was fetched for this request (catalogue `F0`).
    pub fn without_fetch(mut self) -> Self {
        self.fetches_allowed = false;
        self
    }

    /// Asserts `401`, exactly one `Signature-Error` with `code`, `no-store`, the problem
    /// body naming the code, and that the inner service did not run (`H0`). Returns the
    /// response headers for further checks (`required_input`, `Accept-Signature-*`).
    pub async fn refused(mut self, code: &str) -> HeaderMap {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "status for {code}");
        let errors: Vec<_> = response.headers().get_all(wire::SIGNATURE_ERROR).iter().collect();
        assert_eq!(errors.len(), 1, "exactly one Signature-Error");
        let value = errors[0].to_str().unwrap();
        assert!(
            value == format!("error={code}") || value.starts_with(&format!("error={code},")),
            "expected {code}, got {value}"
        );
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
        assert_eq!(self.harness.calls(), 0, "the inner service must not run");
        self.check_fetches();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], code);
        assert_fixed_problem(&body);
        self.asserted = true;
        parts.headers
    }

    /// Asserts a policy denial: `403`, no `Signature-Error` and no `Accept-Signature-*`
    /// (the request was authenticated), and the inner service did not run. Returns the
    /// problem document's `error` member.
    pub async fn forbidden(mut self) -> String {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        for name in response.headers().keys() {
            let name = name.as_str();
            assert!(
                name != wire::SIGNATURE_ERROR && !name.starts_with("accept-signature"),
                "a 403 carries no {name}"
            );
        }
        assert_eq!(self.harness.calls(), 0, "the inner service must not run");
        self.check_fetches();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        self.asserted = true;
        body["error"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts a first or step-up challenge (`RT`): `401`, `no-store`, an
    /// `AAuth-Requirement: requirement=auth-token; resource-token="…"`, no
    /// `Signature-Error`, and the inner service did not run. Returns the resource token.
    pub fn challenged(mut self) -> String {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get(wire::SIGNATURE_ERROR).is_none());
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
        let requirement = response.headers()[wire::AAUTH_REQUIREMENT].to_str().unwrap();
        assert!(requirement.starts_with("requirement=auth-token"), "{requirement}");
        let token = requirement
            .split("resource-token=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a resource token in the challenge");
        assert_eq!(self.harness.calls(), 0, "the inner service must not run");
        self.check_fetches();
        self.asserted = true;
        token.to_owned()
    }

    /// Asserts a refusal with `status` that carries no `Signature-Error` (413, 503, …)
    /// and that the inner service did not run. Returns the response headers.
    pub fn refused_with_status(mut self, status: StatusCode) -> HeaderMap {
        let response = self.response.take().expect("asserted once");
        assert_eq!(response.status(), status);
        assert!(response.headers().get(wire::SIGNATURE_ERROR).is_none());
        assert_eq!(self.harness.calls(), 0, "the inner service must not run");
        self.check_fetches();
        self.asserted = true;
        response.into_parts().0.headers
    }

    /// [`Attack::refused`], and the problem document's fixed `detail` is `detail`: for
    /// attacks whose code alone cannot show which check refused them.
    pub async fn refused_because(mut self, code: &str, detail: &str) {
        let response = self.response.take().expect("asserted once");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["detail"], detail, "the check that refused");
        self.response = Some(Response::from_parts(parts, Body::from(body)));
        self.refused(code).await;
    }

    fn check_fetches(&self) {
        if !self.fetches_allowed {
            assert_eq!(self.harness.fetches(), 0, "no key may be fetched for this request");
        }
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

/// A capturing `tracing` subscriber at TRACE level for the current thread (catalogue `L0`).
/// `#[tokio::test]` runs on the current thread, so everything the layer logs while the
/// guard lives is captured.
pub struct Logs {
    captured: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> Self {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(captured.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        Logs {
            captured,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.captured.lock().unwrap()).into_owned()
    }

    /// Asserts `L0`: no `secret` appears in the logs (tokens, signature values, keys), no
    /// compact JWT at all, and no raw CR or LF inside a log line (each event is one line).
    pub fn assert_clean(&self, secrets: &[&str]) {
        let text = self.text();
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(
                !text.contains(secret),
                "a secret reached the logs: {}…",
                &secret[..secret.len().min(12)]
            );
        }
        for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '=') {
            let parts: Vec<_> = word.split('.').collect();
            assert!(
                !(parts.len() == 3 && parts[0].starts_with("eyJ") && parts[1].starts_with("eyJ")),
                "a compact JWT reached the logs"
            );
        }
        assert!(!text.contains('\r'), "a raw CR reached the logs");
    }
}

/// ERR-01: a refusal's body is the fixed problem document — only these members, a
/// `detail` that is a short fixed sentence, and nothing echoed from the request.
pub fn assert_fixed_problem(body: &Value) {
    const MEMBERS: [&str; 6] = ["type", "title", "status", "error", "detail", "required_input"];
    let object = body.as_object().expect("a problem document is an object");
    for name in object.keys() {
        assert!(MEMBERS.contains(&name.as_str()), "unexpected problem member {name}");
    }
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.len() < 120, "detail is a short fixed sentence: {detail}");
    assert!(
        !detail.contains("eyJ") && !detail.contains("http") && !detail.contains('='),
        "detail echoes input: {detail}"
    );
}

/// A harness whose keys come from the real discovery resolver over in-memory documents
/// for the access server: `metadata` → `jwks`. Returns the harness and the fetch counter.
pub fn discovering(jwks: Value) -> (Harness, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tower_aauth::discovery::{DiscoveryResolver, Fetch, FetchError, FetchedDocument, IdentifierPolicy};
    #[derive(Clone)]
    struct Documents(Value, Value, std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Fetch for Documents {
        fn get<'a>(&'a self, url: &'a str, _max: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
            self.2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = if url.ends_with("jwks.json") { &self.1 } else { &self.0 };
            let body = serde_json::to_vec(body).unwrap();
            Box::pin(async move { Ok(FetchedDocument::new(body)) })
        }
    }
    let metadata = serde_json::json!({"issuer": AS, "jwks_uri": format!("{AS}/jwks.json")});
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let resolver = DiscoveryResolver::new(Documents(metadata, jwks, fetches.clone()), IdentifierPolicy::default());
    (Harness::with(|b| b.key_resolver(resolver)), fetches)
}

/// Serves the harness's layer (in front of its counting handler) on 127.0.0.1, writes
/// `raw` bytes to it over a fresh connection and returns the status code it answered,
/// for attacks that `http` types cannot express (folded lines, header floods).
pub async fn raw_exchange(h: &Harness, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let router = Router::new()
        .fallback(any(counting(&h.calls, "handler ran")))
        .layer(h.aauth.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    answer.split(' ').nth(1).unwrap_or_default().to_owned()
}

// --- Helpers of the §1.15 hardening attacks (tests/attacks_policy.rs) ----------------------

/// Sends `request` to `routes`, with the counting handler as the fallback, behind the
/// harness's layer: for attacks on what a mounted router changes.
pub async fn send_routed(h: &Harness, routes: Router, request: Request<Body>) -> Response<Body> {
    routes
        .fallback(any(counting(&h.calls, "handler ran")))
        .layer(h.aauth.layer())
        .oneshot(request)
        .await
        .expect("infallible")
}

/// Signs `request` as the agent at `NOW` under label `sig` over exactly `components`
/// (serialised identifiers, parameters included: `"signature-key";key="sig"`), with
/// `signature_key` as its `Signature-Key`. When this crate's own base builder refuses the
/// components (a `;key` on a field that is no dictionary), only the `@signature-params`
/// line is signed: the verifier has to refuse the request before the signature matters.
pub fn sign_covering(h: &Harness, request: &mut Request<Body>, signature_key: &str, components: &str) {
    use http::HeaderValue;
    use tower_aauth::engine::{ParsedInput, RequestTarget, SignatureBase, encode_signature};
    let input = format!("sig=({components});created={NOW}");
    let headers = request.headers_mut();
    headers.insert(wire::SIGNATURE_KEY, HeaderValue::from_str(signature_key).unwrap());
    headers.insert(wire::SIGNATURE_INPUT, HeaderValue::from_str(&input).unwrap());
    let parsed = ParsedInput::parse(&input, 64).expect("the test's input parses");
    let target = RequestTarget {
        method: request.method().as_str(),
        scheme: "https",
        authority: "resource.example",
        path: request.uri().path(),
        query: request.uri().query(),
    };
    let mut base = SignatureBase::new();
    let base = match base.build(&parsed, &target, request.headers()) {
        Ok(()) => base.as_str().to_owned(),
        Err(_) => format!("\"@signature-params\": {}", &input["sig=".len()..]),
    };
    let signature = h.agent.key().sign_bytes(base.as_bytes());
    request.headers_mut().insert(
        wire::SIGNATURE,
        HeaderValue::from_str(&format!("sig=:{}:", encode_signature(&signature))).unwrap(),
    );
}

/// A harness under `profile` whose resolver also publishes the access server's key under
/// the demo generation's `aauth-issuer.json`, so that legacy auth tokens verify.
pub fn legacy_harness(profile: tower_aauth::Profile) -> Harness {
    let access_server = access_server();
    let resolver = StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
        .with_key(AS, engine::dwk::LEGACY_ISSUER, access_server.public_jwk());
    Harness::with(|b| b.key_resolver(resolver).profile(profile))
}

/// The `AAuth-Requirement` of a refusal that carries no `Signature-Error`, after checking
/// `no-store`.
pub fn requirement_of(headers: &HeaderMap) -> String {
    assert_eq!(headers[http::header::CACHE_CONTROL], "no-store");
    headers[wire::AAUTH_REQUIREMENT].to_str().unwrap().to_owned()
}
