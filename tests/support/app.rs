//! An in-process axum application behind the AAuth layer with one guarded route per
//! requirement, whose handlers count their calls; and the issuers and tokens of the
//! three- and four-party postures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, ResourceKey, guard::Requirement, testing::ManualClock};

pub use super::fixtures::{AGENT_ID, AP, AS, NOW, PS, RESOURCE, decode};
use super::fixtures::{access_server, agent, agent_provider, counting, person_server};

pub struct App {
    pub aauth: AAuth,
    pub calls: Arc<AtomicUsize>,
    pub clock: ManualClock,
    pub agent: TestAgent,
    pub ps: TestIssuer,
    pub access_server: TestIssuer,
    pub ap: TestIssuer,
}

/// The resource's signing key in every test.
pub fn resource_key() -> ResourceKey {
    ResourceKey::from_seed([7; 32]).with_kid("resource-key-1")
}

impl App {
    /// AAUTH-11 three-party posture: no access server, one trusted person server.
    pub fn three_party() -> Self {
        Self::with(|b| b.person_server(PS))
    }

    /// The seed's four-party posture: an access server (and the person server).
    pub fn four_party() -> Self {
        Self::with(|b| b.person_server(PS).auth_server(AS))
    }

    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let clock = ManualClock::new(NOW);
        let (agent, ps, access_server, ap) = (agent(), person_server(), access_server(), agent_provider());
        let resolver = StaticResolver::new()
            .with_key(PS, engine::dwk::PERSON, ps.public_jwk())
            .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
            .with_key(AP, engine::dwk::AGENT, ap.public_jwk())
            .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
        let builder = AAuth::builder(RESOURCE)
            .clock(clock.clone())
            .key_resolver(resolver)
            .signing_key(resource_key())
            .scope("data.read", "Read your data")
            .scope("data.write", "Change your data");
        let aauth = adjust(builder).build().expect("valid configuration");
        App {
            aauth,
            calls: Arc::new(AtomicUsize::new(0)),
            clock,
            agent,
            ps,
            access_server,
            ap,
        }
    }

    /// `/agent`, `/person`, `/data` (data.read), `/both` (data.read + data.write),
    /// `/whoami` (any signature), `/policy` (a rule that refuses), well-known routes.
    pub fn router(&self) -> Router {
        let a = &self.aauth;
        let deny = Requirement::rule(|cx| match cx.verified {
            Some(_) => tower_aauth::guard::Decision::Refuse(tower_aauth::Error::forbidden(
                "policy_denied",
                "the resource's policy refuses this agent",
            )),
            None => tower_aauth::guard::Decision::NeedAgent,
        });
        Router::new()
            .route("/agent", get(self.handler()).route_layer(a.require_agent_token()))
            .route("/person", get(self.handler()).route_layer(a.require_person()))
            .route(
                "/data",
                get(self.handler()).route_layer(a.require_scopes(["data.read"])),
            )
            .route(
                "/both",
                get(self.handler()).route_layer(a.require_scopes(["data.read", "data.write"])),
            )
            .route("/whoami", get(self.handler()).route_layer(a.require_verified_agent()))
            .route("/policy", get(self.handler()).route_layer(a.require(deny)))
            .merge(a.well_known_router())
            .layer(a.layer())
    }

    pub fn handler(&self) -> impl Fn() -> std::future::Ready<&'static str> + Clone + Send + 'static {
        counting(&self.calls, "served")
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    /// GET `path` signed with `source`.
    pub async fn get_signed(&self, path: &str, source: &KeySource) -> Response<Body> {
        let mut request = get_request(path);
        self.agent.sign(&mut request, source, NOW);
        self.send(request).await
    }

    /// An agent token naming `ps` (or none).
    pub fn agent_token_with(&self, ps: Option<&str>) -> String {
        let mut claims = json!({
            "iss": AP, "dwk": engine::dwk::AGENT, "sub": AGENT_ID, "jti": "agt-1",
            "cnf": { "jwk": self.agent.public_jwk().to_json() },
            "iat": NOW, "exp": NOW + 3600,
        });
        if let Some(ps) = ps {
            claims["ps"] = ps.into();
        }
        self.ap.sign(engine::typ::AGENT, &claims)
    }

    pub fn agent_token(&self) -> String {
        self.agent_token_with(Some(PS))
    }

    pub fn person_claims(&self) -> Value {
        json!({
            "iss": PS, "dwk": engine::dwk::PERSON, "aud": RESOURCE, "sub": "person-1",
            "jti": "pt-1", "cnf": { "jwk": self.agent.public_jwk().to_json() },
            "mission_s256": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "tenant": "org-1",
            "iat": NOW, "exp": NOW + 3600,
        })
    }

    pub fn person_token(&self) -> String {
        self.ps.sign(engine::typ::PERSON, &self.person_claims())
    }

    /// An auth token issued by the person server (three-party).
    pub fn ps_auth_token(&self, scope: Option<&str>) -> String {
        let mut claims = json!({
            "iss": PS, "dwk": engine::dwk::PERSON, "aud": RESOURCE, "ps": PS, "sub": "person-1",
            "jti": "at-1", "cnf": { "jwk": self.agent.public_jwk().to_json() },
            "iat": NOW, "exp": NOW + 3600,
        });
        if let Some(scope) = scope {
            claims["scope"] = scope.into();
        }
        self.ps.sign(engine::typ::AUTH, &claims)
    }

    /// An auth token issued by the access server (four-party).
    pub fn as_auth_token(&self, scope: &str) -> String {
        let mut claims = self
            .access_server
            .auth_claims(RESOURCE, &self.agent.public_jwk(), scope, NOW);
        claims["ps"] = PS.into();
        self.access_server.sign(engine::typ::AUTH, &claims)
    }
}

/// An unsigned `GET` of `path` on the resource.
pub use super::fixtures::get as get_request;

pub fn jwt(token: String) -> KeySource {
    KeySource::Jwt(token)
}

/// Asserts a `401` challenge with exactly `expected` as `AAuth-Requirement`, no
/// `Signature-Error`, `no-store`, and that no handler ran.
pub fn assert_challenge(app: &App, response: &Response<Body>, expected: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let values: Vec<_> = response.headers().get_all("aauth-requirement").iter().collect();
    assert_eq!(values.len(), 1, "exactly one AAuth-Requirement");
    assert_eq!(values[0], expected);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(app.calls(), 0, "the handler must not run");
}

/// Asserts an `auth-token` challenge and returns the resource token's header and claims.
pub fn assert_auth_challenge(app: &App, response: &Response<Body>) -> (String, Value, Value) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let value = response.headers()["aauth-requirement"].to_str().unwrap();
    let token = value
        .strip_prefix("requirement=auth-token; resource-token=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not an auth-token challenge: {value}"));
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(app.calls(), 0, "the handler must not run");
    let (header, claims) = decode(token);
    (token.to_owned(), header, claims)
}

/// Asserts a `403` policy refusal: no `Signature-Error`, no `Accept-Signature-*`, no
/// `AAuth-Requirement`, `no-store`, handler not run.
pub fn assert_forbidden(app: &App, response: &Response<Body>) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    for name in [
        "signature-error",
        "accept-signature-scheme",
        "accept-signature-alg",
        "aauth-requirement",
    ] {
        assert!(response.headers().get(name).is_none(), "403 must not carry {name}");
    }
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(app.calls(), 0, "the handler must not run");
}

/// Asserts a `401` with exactly one `Signature-Error: error=<code>` and no handler call.
pub fn assert_signature_error(app: &App, response: &Response<Body>, code: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let values: Vec<_> = response.headers().get_all("signature-error").iter().collect();
    assert_eq!(values.len(), 1, "exactly one Signature-Error");
    assert_eq!(values[0], &format!("error={code}"));
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(app.calls(), 0, "the handler must not run");
}

pub fn assert_served(app: &App, response: &Response<Body>) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.calls(), 1, "the handler runs once");
}
