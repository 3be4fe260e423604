//! What every harness shares: the parties' identifiers, their keys (from fixed seeds, so
//! that the same key appears on both sides of an interop test), a request builder and the
//! handler that counts its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use http::{Request, Response};
use serde_json::Value;
use tower_aauth::engine::b64url_decode;
use tower_aauth::testing::{TestAgent, TestIssuer};

/// The fixed clock every test starts at (the digest's derived vectors use it).
pub const NOW: u64 = 1_730_217_600;
/// Our resource identifier.
pub const RESOURCE: &str = "https://resource.example";
/// The trusted access server.
pub const AS: &str = "https://as.example";
/// An agent provider.
pub const AP: &str = "https://agent.example";
/// A person server.
pub const PS: &str = "https://ps.example";
/// The agent's identifier at its provider.
pub const AGENT_ID: &str = "aauth:assistant@agent.example";

/// The agent's key seed.
pub const AGENT_SEED: [u8; 32] = [1; 32];
/// The agent's `kid` in its provider's JWKS.
pub const AGENT_KID: &str = "agent-key-1";

/// The agent (seed [`AGENT_SEED`], kid [`AGENT_KID`]).
pub fn agent() -> TestAgent {
    TestAgent::from_seed(AGENT_SEED).with_kid(AGENT_KID)
}

/// The access server [`AS`].
pub fn access_server() -> TestIssuer {
    TestIssuer::new(AS, [2; 32], "as-key-1")
}

/// The agent provider [`AP`].
pub fn agent_provider() -> TestIssuer {
    TestIssuer::new(AP, [3; 32], "ap-key-1")
}

/// The person server [`PS`].
pub fn person_server() -> TestIssuer {
    TestIssuer::new(PS, [4; 32], "ps-key-1")
}

/// An unsigned `GET` of `path` on our resource.
pub fn get(path: &str) -> Request<Body> {
    Request::get(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap()
}

/// A copy of a body-less `request`: same method, URI and headers (a replay).
pub fn copy(request: &Request<Body>) -> Request<Body> {
    let mut copy = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .body(Body::empty())
        .unwrap();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// A handler that counts its calls in `calls` and answers `body`.
pub fn counting(
    calls: &Arc<AtomicUsize>,
    body: &'static str,
) -> impl Fn() -> std::future::Ready<&'static str> + Clone + Send + Sync + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(body)
    }
}

/// The response body as JSON (`Null` when it is not JSON).
pub async fn body_json(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Decodes a compact JWT's header and claims without verifying it.
pub fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut segment = || serde_json::from_slice(&b64url_decode(parts.next().unwrap()).unwrap()).unwrap();
    (segment(), segment())
}

/// A body of `bytes` that arrives after `delay`, `clock` moving `advance` seconds on
/// meanwhile: a client trickling its body.
pub fn late_body(
    clock: tower_aauth::testing::ManualClock,
    delay: std::time::Duration,
    advance: u64,
    bytes: &'static [u8],
) -> axum::body::Body {
    axum::body::Body::from_stream(futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        clock.advance(advance);
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(bytes))
    }))
}
