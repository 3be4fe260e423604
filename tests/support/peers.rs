//! Drives the real third-party AAuth peers of `tests/interop` (installed by
//! `bash tests/interop/setup.sh`) and turns what they sign into requests for our layer.
//!
//! A peer missing: `build.rs` sets `skip_peer_v05` (`_v03`, `_js`, `_introspection`,
//! `_wba_py`, `_wba_js`) and
//! the tests that need it are reported ignored, with the reason; under `CI=true` they run
//! and fail (CI installs every peer).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use serde_json::{Value, json};
use tower_aauth::Profile;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::TestAgent;

use super::harness::{AP, AS, Harness};

pub use super::fixtures::{AGENT_KID, AGENT_SEED};
use super::fixtures::{access_server, agent, agent_provider};

/// A pinned real peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// PyPI `aauth` 0.5.0 + `aauth-signing` 0.2.0 (draft -11).
    V05,
    /// PyPI `aauth` 0.3.4 + `aauth-signing` 0.1.2 (the demo generation).
    V03,
    /// npm `@hellocoop/httpsig` 2.2.0.
    Js,
    /// PyPI `introspection-aauth` 0.1.0: a Person Server and an Access Server, run as
    /// servers (`introspection-server person|access`), not through [`Peer::run`].
    Introspection,
    /// PyPI `regent-httpsig` 0.7.3: a Web Bot Auth signer and verifier (`tests/support/bot_peers.rs`).
    WbaPy,
    /// npm `web-bot-auth` 0.1.3 over `http-message-sig` 0.2.0: Cloudflare's Web Bot Auth
    /// signer and verifier (`tests/support/bot_peers.rs`).
    WbaJs,
}

impl Peer {
    fn launcher(self) -> &'static str {
        match self {
            Peer::V05 => "peer-v05",
            Peer::V03 => "peer-v03",
            Peer::Js => "peer-js",
            Peer::Introspection => "introspection-server",
            Peer::WbaPy => "peer-wba-py",
            Peer::WbaJs => "peer-wba-js",
        }
    }

    /// The exact version string the driver reports (its `peer` field).
    pub fn pinned(self) -> &'static str {
        match self {
            Peer::V05 => "aauth 0.5.0 / aauth-signing 0.2.0",
            Peer::V03 => "aauth 0.3.4 / aauth-signing 0.1.2",
            Peer::Js => "@hellocoop/httpsig 2.2.0",
            Peer::Introspection => "introspection-aauth 0.1.0",
            Peer::WbaPy => "regent-httpsig 0.7.3",
            Peer::WbaJs => "web-bot-auth 0.1.3 / http-message-sig 0.2.0",
        }
    }

    /// The installed launcher. A test that calls this carries
    /// `#[cfg_attr(skip_peer_…, ignore = "…")]`, so it runs only when `build.rs` found the
    /// launcher, or under `CI=true`, where a missing peer fails the test here.
    pub fn launcher_path(self) -> PathBuf {
        let path = PathBuf::from(env!("AAUTH_TEST_PEER_DIR"))
            .join("bin")
            .join(self.launcher());
        assert!(
            path.is_file(),
            "interop peer {} ({}) is not installed at {}: run `bash tests/interop/setup.sh` \
             (only under CI=true does a missing peer fail its tests instead of ignoring them)",
            self.launcher(),
            self.pinned(),
            path.display()
        );
        path
    }

    /// Runs `subcommand` with `input`; the driver must exit 0 and report the pinned
    /// version.
    pub fn run(self, launcher: &PathBuf, subcommand: &str, input: &Value) -> Value {
        let mut child = Command::new(launcher)
            .arg(subcommand)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launcher.display()));
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.to_string().as_bytes())
            .expect("write the driver's input");
        let output = child.wait_with_output().expect("the driver ran");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} {subcommand} failed ({}): {stdout} {}",
            self.launcher(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let result: Value = serde_json::from_str(stdout.trim()).expect("the driver prints one JSON object");
        assert_eq!(result["peer"], self.pinned(), "the peer's pinned version");
        result
    }
}

/// The agent's private JWK (the driver's `private_jwk`): an Ed25519 `d` is the seed.
pub fn agent_private_jwk() -> Value {
    let agent = TestAgent::from_seed(AGENT_SEED);
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": agent.public_jwk().x(),
        "d": URL_SAFE_NO_PAD.encode(AGENT_SEED),
    })
}

/// What to ask a peer to sign.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// Absolute URL on our resource.
    pub url: String,
    /// Request headers before signing.
    pub headers: Value,
    /// Body text, if any.
    pub body: Option<String>,
    /// The driver's `scheme` plus its parameters (`jwt`, `jwks_uri`).
    pub scheme: Scheme,
    /// Extra components to cover.
    pub components: Vec<&'static str>,
    /// `created`.
    pub created: u64,
}

/// The driver's scheme selection.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `hwk`.
    Hwk,
    /// `jwks_uri` at the agent provider, `aauth-agent.json`, the agent's kid.
    JwksUri,
    /// `jwt` carrying this token.
    Jwt(String),
}

impl SignRequest {
    /// A `GET` of `path` on our resource at `created`.
    pub fn get(path: &str, scheme: Scheme, created: u64) -> Self {
        SignRequest {
            method: "GET",
            url: format!("{}{path}", super::harness::RESOURCE),
            headers: json!({}),
            body: None,
            scheme,
            components: Vec::new(),
            created,
        }
    }

    /// The driver's `sign` input for this request.
    pub fn to_json(&self) -> Value {
        let mut input = json!({
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
            "private_jwk": agent_private_jwk(),
            "created": self.created,
        });
        match &self.scheme {
            Scheme::Hwk => input["scheme"] = json!("hwk"),
            Scheme::JwksUri => {
                input["scheme"] = json!("jwks_uri");
                input["jwks_uri"] = json!({ "id": AP, "dwk": engine::dwk::AGENT, "kid": AGENT_KID });
            }
            Scheme::Jwt(token) => {
                input["scheme"] = json!("jwt");
                input["jwt"] = json!(token);
            }
        }
        if !self.components.is_empty() {
            input["components"] = json!(self.components);
        }
        input
    }

    /// Has `peer` sign this request and returns the signed `http::Request` (the driver's
    /// complete header set, byte for byte, and the body).
    pub fn sign(&self, peer: Peer, launcher: &PathBuf) -> Request<Body> {
        let signed = peer.run(launcher, "sign", &self.to_json());
        signed_request(self.method, &self.url, &signed["headers"], self.body.clone())
    }
}

/// `method url` with a driver's complete header set (`headers`, byte for byte) and `body`.
pub fn signed_request(method: &str, url: &str, headers: &Value, body: Option<String>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers.as_object().expect("a header object") {
        builder = builder.header(name.as_str(), value.as_str().expect("a string header"));
    }
    builder
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .expect("a valid request")
}

/// A response of ours as a driver's scripted `{status, headers, body}` (repeated fields
/// joined by `, `, the body as text).
pub async fn scripted(response: http::Response<Body>) -> Value {
    let (parts, body) = response.into_parts();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII"))
            .collect();
        headers.insert(name.as_str().to_owned(), json!(values.join(", ")));
    }
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("a bounded body");
    json!({
        "status": parts.status.as_u16(),
        "headers": headers,
        "body": String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"),
    })
}

/// A harness whose resolver also publishes the access server's key under the demo
/// generation's `aauth-issuer.json` (the issuers are the harness's, rebuilt from their
/// seeds).
pub fn harness(profile: Profile) -> Harness {
    let (access_server, agent_provider, agent) = (access_server(), agent_provider(), agent());
    let resolver = StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access_server.public_jwk())
        .with_key(AS, engine::dwk::LEGACY_ISSUER, access_server.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent_provider.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
    Harness::with(|b| b.key_resolver(resolver).profile(profile))
}

/// Replaces the value of header `name`.
pub fn set_header(request: &mut Request<Body>, name: &'static str, value: &str) {
    request
        .headers_mut()
        .insert(name, value.parse().expect("a valid header value"));
}

/// The request with its URI replaced (path or method tampering keeps every header).
pub fn with_uri(request: Request<Body>, uri: &str) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    parts.uri = uri.parse().expect("a valid URI");
    Request::from_parts(parts, body)
}

/// The request with its method replaced.
pub fn with_method(request: Request<Body>, method: http::Method) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    parts.method = method;
    Request::from_parts(parts, body)
}

/// The request with one character of its signature bytes changed (kept in the same
/// alphabet, so only the cryptographic check can notice).
pub fn with_flipped_signature(mut request: Request<Body>) -> Request<Body> {
    let field = request.headers()["signature"].to_str().expect("ASCII").to_owned();
    let start = field.find(":").expect("a byte sequence") + 1;
    let mut bytes = field.into_bytes();
    // The first character holds six signature bits; a different letter changes them.
    bytes[start] = if bytes[start] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).expect("ASCII");
    set_header(&mut request, "signature", &flipped);
    request
}

/// What a peer's `verify` needs for a request our `TestAgent` signed.
pub fn verify_input(request: &Request<Body>, body: Option<&str>, jwks: Value, now: u64) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().expect("ASCII"))))
        .collect();
    json!({
        "method": request.method().as_str(),
        "url": request.uri().to_string(),
        "headers": headers,
        "body": body,
        "jwks": jwks,
        "now": now,
        "window": 60,
    })
}
