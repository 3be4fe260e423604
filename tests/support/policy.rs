//! The policy attacks' world (attack catalogue §1.15): the harness with every issuer's
//! key resolvable — the harness's own and the attackers' (a provider naming agents of its
//! choosing, a self-hosted person server) — and a router that answers who the layer says
//! the agent is.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::routing::{any, post};
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::guard::GuardLayer;
use tower_aauth::policy::AgentId;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, VerifiedRequest, testing::ManualClock};

use super::attack::*;

/// A provider that names agents of its own choosing.
pub const EVIL: &str = "https://evil.example";
/// A person server nobody configured: the caller's own.
pub const SELF_PS: &str = "https://self-ps.example";
/// The harness agent's identity at its real provider.
pub const AGENT: &str = "aauth:assistant@agent.example";

pub fn agent(id: &str) -> AgentId {
    id.parse().unwrap()
}

pub fn evil_provider() -> TestIssuer {
    TestIssuer::new(EVIL, [7; 32], "evil-key-1")
}

pub fn self_hosted_ps() -> TestIssuer {
    TestIssuer::new(SELF_PS, [8; 32], "self-ps-key-1")
}

/// Every issuer's key, the harness's and the attackers'.
pub fn resolver(h: &Harness) -> StaticResolver {
    StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, h.access_server.public_jwk())
        .with_key(AS, engine::dwk::LEGACY_ISSUER, h.access_server.public_jwk())
        .with_key(AP, engine::dwk::AGENT, h.agent_provider.public_jwk())
        .with_key(AP, engine::dwk::AGENT, h.agent.public_jwk())
        .with_key(PS, engine::dwk::PERSON, h.person_server.public_jwk())
        .with_key(EVIL, engine::dwk::AGENT, evil_provider().public_jwk())
        .with_key(SELF_PS, engine::dwk::PERSON, self_hosted_ps().public_jwk())
}

/// The harness with every issuer's key resolvable and `adjust` applied.
pub fn harness(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Harness {
    let keys = resolver(&Harness::new());
    Harness::with(move |b| adjust(b.key_resolver(keys)))
}

/// A three-party harness: no access server; person servers per `adjust`.
pub fn three_party(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Harness {
    let base = Harness::new();
    let builder = AAuth::builder(RESOURCE)
        .clock(ManualClock::new(NOW))
        .key_resolver(resolver(&base))
        .accept_any_person_server();
    Harness {
        aauth: adjust(builder).build().expect("valid configuration"),
        ..base
    }
}

/// A request to `path`, signed by the harness agent with `source` at `created`.
pub fn signed(h: &Harness, method: &str, path: &str, source: &KeySource, created: u64) -> Request<Body> {
    signed_by(&h.agent, method, path, source, created)
}

/// A request to `path`, signed by `signer` with `source` at `created`.
pub fn signed_by(signer: &TestAgent, method: &str, path: &str, source: &KeySource, created: u64) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{RESOURCE}{path}"))
        .body(Body::empty())
        .unwrap();
    signer.sign(&mut request, source, created);
    request
}

pub fn agent_token(h: &Harness, provider: &TestIssuer, sub: &str) -> KeySource {
    KeySource::Jwt(provider.agent_token(sub, &h.agent.public_jwk(), NOW))
}

pub fn auth_token(h: &Harness, scope: &str) -> KeySource {
    KeySource::Jwt(h.access_server.auth_token(RESOURCE, &h.agent.public_jwk(), scope, NOW))
}

/// A person-server grant from `ps` for the harness agent's key.
pub fn ps_grant(h: &Harness, ps: &TestIssuer, scope: &str, extra: Value) -> KeySource {
    let mut claims = ps.auth_claims(RESOURCE, &h.agent.public_jwk(), scope, NOW);
    claims["dwk"] = engine::dwk::PERSON.into();
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    KeySource::Jwt(ps.sign(engine::typ::AUTH, &claims))
}

/// Routes `/data` behind `guard` and answers everything else as `/whoami` does: the
/// agent the layer attributed the request to, as `id by provider`.
pub async fn send_guarded(h: &Harness, guard: GuardLayer, request: Request<Body>) -> Response<Body> {
    let calls = h.calls.clone();
    let handler = move |verified: Option<axum::Extension<VerifiedRequest>>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            verified
                .and_then(|v| v.agent().map(|a| format!("{} by {}", a.id(), a.provider())))
                .unwrap_or_default()
        }
    };
    let router = Router::new()
        .route("/data", post(handler.clone()).get(handler.clone()).route_layer(guard))
        .fallback(any(handler))
        .layer(h.aauth.layer());
    router.oneshot(request).await.expect("infallible")
}

/// `POST /data` behind `require_scopes(["data.write"])`, signed with `source`.
pub async fn write(h: &Harness, source: &KeySource, created: u64) -> Response<Body> {
    let guard = h.aauth.require_scopes(["data.write"]);
    send_guarded(h, guard, signed(h, "POST", "/data", source, created)).await
}

pub async fn whoami(h: &Harness, source: &KeySource, created: u64) -> (StatusCode, String) {
    let guard = h.aauth.require_verified_agent();
    let response = send_guarded(h, guard, signed(h, "GET", "/whoami", source, created)).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
