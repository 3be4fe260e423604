//! What the layer lets through, and what it tells the handler: unsigned requests with no
//! identity; `hwk`, `jwks_uri` and `jwt` (agent and auth tokens) with the right
//! `VerifiedRequest`; the verified-token cache; multi-line fields; the lenient forms
//! the layer accepts on purpose.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{HeaderValue, Request, StatusCode};
use support::harness::*;
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, SignOptions};
use tower_aauth::{
    BoxFuture,
    discovery::{KeyQuery, KeyResolver, StaticResolver},
};
use tower_aauth::{Error, Generation, Jwk, Scheme, TokenKind, VerifiedRequest};

type Seen = Arc<Mutex<Vec<Option<VerifiedRequest>>>>;

/// The harness's layer over a handler that records the `VerifiedRequest` it sees.
fn recording(h: &Harness) -> (Router, Seen) {
    let seen: Seen = Arc::default();
    let calls = h.calls.clone();
    let record = seen.clone();
    let router = Router::new()
        .fallback(any(move |request: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            record
                .lock()
                .unwrap()
                .push(request.extensions().get::<VerifiedRequest>().cloned());
            std::future::ready("ok")
        }))
        .layer(h.aauth.layer());
    (router, seen)
}

/// Sends `request` and returns what the handler saw; fails unless it was served.
async fn served(h: &Harness, request: Request<Body>) -> Option<VerifiedRequest> {
    let (router, seen) = recording(h);
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
    seen.lock().unwrap().pop().expect("the handler ran")
}

fn signed(h: &Harness, source: &KeySource) -> Request<Body> {
    let mut request = get("/data");
    h.agent.sign(&mut request, source, NOW);
    request
}

const MINIMUM: [&str; 4] = ["@method", "@authority", "@path", "signature-key"];

#[tokio::test]
async fn an_unsigned_request_reaches_the_handler_without_identity() {
    let h = Harness::new();
    assert!(served(&h, get("/data")).await.is_none());
    assert_eq!(h.calls(), 1);
}

#[tokio::test]
async fn an_hwk_request_is_served_with_its_key_thumbprint() {
    let h = Harness::new();
    let verified = served(&h, signed(&h, &KeySource::Hwk)).await.unwrap();
    assert_eq!(verified.scheme, Scheme::Hwk);
    assert_eq!(&*verified.key_thumbprint, h.agent.thumbprint());
    assert_eq!(&*verified.label, "sig");
    assert_eq!(&*verified.covered, MINIMUM.map(str::to_owned));
    assert_eq!(verified.created, NOW);
    assert!(verified.signer.is_none());
    assert!(verified.token.is_none());
    assert_eq!(verified.generation, Generation::Draft11);
}

#[tokio::test]
async fn a_jwks_uri_request_is_served_with_its_signer() {
    let h = Harness::new();
    let verified = served(&h, signed(&h, &KeySource::agent_jwks(AP, "agent-key-1")))
        .await
        .unwrap();
    assert_eq!(verified.scheme, Scheme::JwksUri);
    assert_eq!(verified.signer.as_deref(), Some(AP));
    assert_eq!(&*verified.key_thumbprint, h.agent.thumbprint());
    assert!(verified.token.is_none());
}

#[tokio::test]
async fn an_agent_token_request_is_served_with_the_verified_agent_token() {
    let h = Harness::new();
    let agent = "aauth:assistant@agent.example";
    let token = h.agent_provider.agent_token(agent, &h.agent.public_jwk(), NOW);
    let verified = served(&h, signed(&h, &KeySource::Jwt(token))).await.unwrap();
    assert_eq!(verified.scheme, Scheme::Jwt);
    assert_eq!(verified.token_kind(), Some(TokenKind::Agent));
    let claims = &verified.token.as_ref().unwrap().claims;
    assert_eq!(claims.iss, AP);
    assert_eq!(claims.sub.as_deref(), Some(agent));
    assert_eq!(claims.cnf.thumbprint(), h.agent.thumbprint());
    assert_eq!(&*verified.key_thumbprint, h.agent.thumbprint());
}

#[tokio::test]
async fn an_auth_token_request_is_served_with_its_scopes_and_subject() {
    let h = Harness::new();
    let token = h.auth_token("data.read data.write");
    let verified = served(&h, signed(&h, &KeySource::Jwt(token))).await.unwrap();
    assert_eq!(verified.token_kind(), Some(TokenKind::Auth));
    let claims = &verified.token.as_ref().unwrap().claims;
    assert_eq!(claims.iss, AS);
    assert_eq!(claims.aud.as_deref(), Some(RESOURCE));
    assert_eq!(claims.sub.as_deref(), Some("user-1"));
    assert!(claims.scope.contains("data.read") && claims.scope.contains("data.write"));
    assert_eq!(&*verified.key_thumbprint, h.agent.thumbprint());
}

/// A resolver that counts how often the layer asks it anything.
#[derive(Clone)]
struct Counting {
    inner: StaticResolver,
    asked: Arc<AtomicUsize>,
}

impl KeyResolver for Counting {
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.cached(query)
    }

    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(query)
    }
}

#[tokio::test]
async fn a_token_verified_once_is_served_from_the_cache_without_asking_for_its_issuer_key() {
    let asked = Arc::new(AtomicUsize::new(0));
    let probe = Harness::new();
    let resolver = Counting {
        inner: StaticResolver::new().with_key(AS, engine::dwk::ACCESS, probe.access_server.public_jwk()),
        asked: asked.clone(),
    };
    let h = Harness::with(|b| b.key_resolver(resolver));
    let token = h.auth_token("data.read");

    let first = served(&h, signed(&h, &KeySource::Jwt(token.clone()))).await.unwrap();
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the first request looks the issuer key up"
    );
    assert_eq!(h.aauth.cached_tokens(), 1);

    // A fresh signature (another second) over the same token.
    let mut request = get("/data");
    h.agent.sign(&mut request, &KeySource::Jwt(token), NOW + 1);
    let second = served(&h, request).await.unwrap();
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second is answered from the token cache"
    );
    assert!(Arc::ptr_eq(
        first.token.as_ref().unwrap(),
        second.token.as_ref().unwrap()
    ));
}

#[tokio::test]
async fn a_signature_key_split_over_two_header_lines_is_joined() {
    let h = Harness::new();
    let mut request = get("/data");
    let other = r#"other=jwt;jwt="unused""#;
    let ours = h.agent.signature_key_value(&KeySource::Hwk, "sig");
    request
        .headers_mut()
        .append("signature-key", HeaderValue::from_static(other));
    request
        .headers_mut()
        .append("signature-key", HeaderValue::from_str(&ours).unwrap());
    sign_over_existing_signature_key(&h, &mut request, &format!("{other}, {ours}"));
    assert_eq!(served(&h, request).await.unwrap().scheme, Scheme::Hwk);
}

/// Signs `GET /data` covering the minimum, over the `Signature-Key` lines already in
/// `request` (whose joined value is `joined`), without replacing them.
fn sign_over_existing_signature_key(h: &Harness, request: &mut Request<Body>, joined: &str) {
    let base = format!(
        "\"@method\": GET\n\"@authority\": resource.example\n\"@path\": /data\n\"signature-key\": {joined}\n\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"signature-key\");created={NOW}"
    );
    let signature = h.agent.key().sign_bytes(base.as_bytes());
    let headers = request.headers_mut();
    headers.insert(
        "signature-input",
        HeaderValue::from_str(&format!(
            "sig=(\"@method\" \"@authority\" \"@path\" \"signature-key\");created={NOW}"
        ))
        .unwrap(),
    );
    headers.insert(
        "signature",
        HeaderValue::from_str(&format!("sig=:{}:", tower_aauth::engine::encode_signature(&signature))).unwrap(),
    );
}

#[tokio::test]
async fn a_covered_field_on_two_lines_is_signed_and_verified_joined() {
    let h = Harness::new();
    let mut request = get("/data");
    request.headers_mut().append("x-tag", HeaderValue::from_static("a"));
    request.headers_mut().append("x-tag", HeaderValue::from_static(" b "));
    let options = SignOptions {
        components: MINIMUM.map(str::to_owned).into_iter().chain(["x-tag".into()]).collect(),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    assert!(served(&h, request).await.unwrap().covers("x-tag"));
}

#[tokio::test]
async fn the_lines_of_a_covered_field_cannot_be_reordered() {
    let h = Harness::new();
    let mut request = get("/data");
    request.headers_mut().append("x-tag", HeaderValue::from_static("a"));
    request.headers_mut().append("x-tag", HeaderValue::from_static("b"));
    let options = SignOptions {
        components: MINIMUM.map(str::to_owned).into_iter().chain(["x-tag".into()]).collect(),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    request.headers_mut().remove("x-tag");
    request.headers_mut().append("x-tag", HeaderValue::from_static("b"));
    request.headers_mut().append("x-tag", HeaderValue::from_static("a"));
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}

#[tokio::test]
async fn a_base64url_signature_is_accepted_by_default() {
    let h = Harness::new();
    let mut request = get("/data");
    let options = SignOptions {
        base64url: true,
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    assert!(served(&h, request).await.is_some());
}

#[tokio::test]
async fn an_alg_parameter_naming_hmac_is_ignored_and_the_ed25519_signature_verifies() {
    let h = Harness::new();
    let mut request = get("/data");
    let options = SignOptions {
        extra_params: r#";alg="hmac-sha256""#.into(),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    assert_eq!(served(&h, request).await.unwrap().scheme, Scheme::Hwk);
}

#[tokio::test]
async fn created_at_either_edge_of_the_window_is_accepted() {
    for created in [NOW - 60, NOW + 60] {
        let h = Harness::new();
        let mut request = get("/data");
        h.agent.sign(&mut request, &KeySource::Hwk, created);
        assert_eq!(served(&h, request).await.unwrap().created, created);
    }
}

#[tokio::test]
async fn an_origin_form_request_with_our_host_and_its_default_port_is_served() {
    for host in ["resource.example", "RESOURCE.example", "resource.example:443"] {
        let h = Harness::new();
        let mut request = Request::get("/data").header("host", host).body(Body::empty()).unwrap();
        let options = SignOptions {
            authority: Some("resource.example".into()),
            ..SignOptions::default()
        };
        h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
        assert!(served(&h, request).await.is_some(), "Host: {host}");
    }
}

#[tokio::test]
async fn a_keyid_naming_the_hwk_thumbprint_is_accepted() {
    let h = Harness::new();
    let mut request = get("/data");
    let options = SignOptions {
        extra_params: format!(r#";keyid="{}""#, h.agent.thumbprint()),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    assert!(served(&h, request).await.is_some());
}
