//! Misconfiguration, explained where the developer looks: a guard or extractor without the
//! layer (a `500` whose body explains the fix in debug builds, logged once per process),
//! a scope guard nobody can satisfy (a warning), and guards applied router-wide that
//! leave the well-known documents public.
//!
//! The explanations are logged once per process, so each kind is triggered by exactly one
//! test of this binary.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Response, StatusCode};
use support::fixtures::{AS, NOW, body_json, counting, get as get_request};
use tower::ServiceExt;
use tower_aauth::testing::{KeySource, TestAgent};
use tower_aauth::{AAuth, VerifiedAgent};

/// Collects what a `tracing` subscriber writes, for the current thread.
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
    /// Captures WARN and above on this thread until the guard is dropped.
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn lines_containing(&self, needle: &str) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

fn aauth() -> AAuth {
    AAuth::builder("https://resource.example")
        .auth_server(AS)
        .scope("data.read", "Read your data")
        .build()
        .unwrap()
}

fn signed(path: &str) -> http::Request<Body> {
    let mut request = get_request(path);
    TestAgent::from_seed([1; 32]).sign(&mut request, &KeySource::Hwk, NOW);
    request
}

/// Asserts the `500` of a missing layer: the explanation in debug builds, the fixed body in
/// release builds, no `Signature-Error`, no challenge.
async fn assert_explained_500(response: Response<Body>, explains: &str) {
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("signature-error").is_none());
    assert!(response.headers().get("aauth-requirement").is_none());
    let body = body_json(response).await;
    assert_eq!(body["error"], "server_error");
    let detail = body["detail"].as_str().unwrap();
    if cfg!(debug_assertions) {
        assert!(detail.contains(explains), "{detail}");
        assert!(
            detail.contains("axum's Router::layer wraps only the routes added before it"),
            "{detail}"
        );
        assert!(detail.contains(".layer(aauth.layer())"), "{detail}");
    } else {
        assert_eq!(detail, "internal server error");
    }
}

const GUARD: &str = "an AAuth guard ran on a request the AAuth layer never saw";
const EXTRACTOR: &str = "an AAuth extractor (VerifiedAgent, AuthGrant) ran on a request the AAuth layer never saw";

#[tokio::test]
async fn a_guard_without_the_layer_answers_an_explained_500_and_logs_it_once() {
    let (logs, _guard) = Logs::capture();
    let aauth = aauth();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // The layer missing altogether, and the layer added before the route (axum's
    // `Router::layer` wraps only the routes added before it).
    let missing = Router::new().route(
        "/data",
        get(counting(&calls, "served")).route_layer(aauth.require_scopes(["data.read"])),
    );
    let misplaced = Router::new().layer(aauth.layer()).route(
        "/data",
        get(counting(&calls, "served")).route_layer(aauth.require_verified_agent()),
    );
    for router in [missing, misplaced] {
        for request in [get_request("/data"), signed("/data")] {
            let response = router.clone().oneshot(request).await.unwrap();
            assert_explained_500(response, GUARD).await;
        }
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the route never runs"
    );
    let logged = logs.lines_containing(GUARD);
    assert_eq!(logged.len(), 1, "logged once per process: {logged:?}");
    assert!(logged[0].contains("ERROR"), "{}", logged[0]);
    assert!(logged[0].contains("route_layer"), "{}", logged[0]);
}

#[tokio::test]
async fn an_extractor_without_the_layer_answers_an_explained_500_and_logs_it_once() {
    let (logs, _guard) = Logs::capture();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new().route(
        "/whoami",
        get(move |agent: Option<VerifiedAgent>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { format!("{:?}", agent.map(|a| a.scheme)) }
        }),
    );
    for request in [get_request("/whoami"), signed("/whoami")] {
        let response = router.clone().oneshot(request).await.unwrap();
        assert_explained_500(response, EXTRACTOR).await;
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the handler never runs"
    );
    assert_eq!(logs.lines_containing(EXTRACTOR).len(), 1, "logged once per process");
}

#[tokio::test]
async fn a_scope_guard_nobody_can_satisfy_is_warned_about_once() {
    let (logs, _guard) = Logs::capture();
    const WARNING: &str = "require_scopes on a configuration that trusts no auth server and no person server";
    // Trusting a server that can grant scopes: no warning.
    let _ = aauth().require_scopes(["data.read"]);
    assert!(logs.lines_containing(WARNING).is_empty());
    // The agent-identity-only posture builds (no scope declared) …
    let identity_only = AAuth::builder("https://resource.example").build().unwrap();
    let _ = identity_only.require_verified_agent();
    assert!(logs.lines_containing(WARNING).is_empty());
    // … but a scope guard on it can never be satisfied.
    let _ = identity_only.require_scopes(["data.read"]);
    let _ = identity_only.require_scopes(["data.write"]);
    let warned = logs.lines_containing(WARNING);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("WARN"), "{}", warned[0]);
    assert!(warned[0].contains(".auth_server("), "{}", warned[0]);
}

/// A guard applied to the whole router with `Router::layer`: the well-known documents stay
/// public, everything else (including `/health` and unknown paths) is judged.
#[tokio::test]
async fn a_router_wide_guard_leaves_the_well_known_documents_public() {
    let aauth = aauth();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for guard in [aauth.require_scopes(["data.read"]), aauth.require_verified_agent()] {
        let router = Router::new()
            .route("/health", get(counting(&calls, "ok")))
            .merge(aauth.well_known_router())
            .layer(guard)
            .layer(aauth.layer());
        for path in ["/.well-known/aauth-resource.json", "/.well-known/jwks.json"] {
            let response = router.clone().oneshot(get_request(path)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let document = body_json(response).await;
            assert!(
                document.get("issuer").is_some() || document.get("keys").is_some(),
                "{path}"
            );
        }
        // Everything else is the guard's, exact paths only.
        for path in [
            "/health",
            "/nowhere",
            "/.well-known/aauth-resource.json/",
            "/.well-known/aauth-resource.jsonx",
            "/.well-known/jwks.json.bak",
            "/.well-known/other.json",
        ] {
            let response = router.clone().oneshot(get_request(path)).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(
                response.headers()["aauth-requirement"],
                "requirement=agent-token",
                "{path}"
            );
            assert!(response.headers().get("signature-error").is_none(), "{path}");
        }
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "/health is guarded router-wide"
    );
}

/// Guarding with `route_layer`, as the docs say, leaves `/health` public.
#[tokio::test]
async fn route_layer_guards_only_its_route() {
    let aauth = aauth();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/data",
            get(counting(&calls, "data")).route_layer(aauth.require_scopes(["data.read"])),
        )
        .route("/health", get(counting(&calls, "ok")))
        .merge(aauth.well_known_router())
        .layer(aauth.layer());
    let health = router.clone().oneshot(get_request("/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let missing = router.clone().oneshot(get_request("/nowhere")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let data = router.oneshot(get_request("/data")).await.unwrap();
    assert_eq!(data.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "only /health ran");
}
