//! A Web Bot Auth signer and key directory ([`crate::bot`]), for tests on loopback.
//!
//! [`BotDirectory::spawn`] serves `/.well-known/http-message-signatures-directory` on a
//! loopback port with the directory media type and a response signature by each of its
//! keys; [`BotDirectory::signer`] is the signer of its first key, naming the directory in
//! `Signature-Agent`. A signer can also be built on its own with [`BotSigner::new`], for
//! an origin served elsewhere. The resource under test needs
//! `dangerous().allow_http_loopback()` to fetch an `http://127.0.0.1:PORT` directory.
//!
//! ```
//! use tower_aauth::testing::BotSigner;
//!
//! let signer = BotSigner::new([7; 32], "https://bots.example");
//! let mut request = http::Request::get("https://resource.example/data").body(()).unwrap();
//! signer.sign(&mut request, 1_800_000_000);
//! assert!(request.headers()["signature-input"].to_str().unwrap().contains(r#"tag="web-bot-auth""#));
//! assert_eq!(request.headers()["signature-agent"], r#"agent1="https://bots.example""#);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request};
use serde_json::{Value, json};

use super::agent::signature_base_of;
use crate::clock::{Clock, SystemClock};
use crate::httpsig::{ParsedInput, encode_signature};
use crate::jose::{Jwk, ResourceKey, b64url};
use crate::names;

/// How a [`BotSigner`] signs one request; [`BotSignOptions::default`] is what
/// [`BotSigner::sign`] does. Change fields to build the requests a verifier must refuse.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BotSignOptions {
    /// The covered components as serialized identifiers; `None`: `"@authority"` and the
    /// `Signature-Agent` member (or the whole field in the legacy form).
    pub components: Option<Vec<String>>,
    /// `expires`; `None`: `created` plus the signer's lifetime.
    pub expires: Option<u64>,
    /// Whether `expires` is sent at all.
    pub send_expires: bool,
    /// `nonce`: `Some(None)` for none, `None` for a fresh random one.
    pub nonce: Option<Option<String>>,
    /// `keyid`; `None`: the key's thumbprint.
    pub keyid: Option<String>,
    /// `tag`.
    pub tag: String,
    /// `alg`; `None`: not sent.
    pub alg: Option<String>,
    /// The `Signature-Agent` field as sent; `None`: built from the signer's agent URL.
    pub signature_agent: Option<String>,
}

impl Default for BotSignOptions {
    fn default() -> Self {
        BotSignOptions {
            components: None,
            expires: None,
            send_expires: true,
            nonce: None,
            keyid: None,
            tag: names::bot::TAG.to_owned(),
            alg: Some(names::bot::ED25519.to_owned()),
            signature_agent: None,
        }
    }
}

/// A Web Bot Auth signer: an Ed25519 key and the URL of its key directory, signing as
/// `draft-ietf-webbotauth-httpsig-protocol-01` asks (`tag="web-bot-auth"`, `@authority`
/// and `"signature-agent";key="agent1"` covered, `created`, `expires`, `keyid` the JWK
/// thumbprint, a random `nonce`), or with the legacy bare-String `Signature-Agent`
/// ([`BotSigner::legacy_agent_form`]).
#[derive(Debug, Clone)]
pub struct BotSigner {
    seed: [u8; 32],
    key: ResourceKey,
    agent: String,
    lifetime: u64,
    legacy: bool,
}

impl BotSigner {
    /// The signer of the key of `seed`, naming `agent` (an origin such as
    /// `https://bots.example`, or its directory URL) in `Signature-Agent`. Signatures live
    /// five minutes, as the Web Bot Auth libraries sign.
    pub fn new(seed: [u8; 32], agent: impl Into<String>) -> Self {
        BotSigner {
            seed,
            key: ResourceKey::from_seed(seed),
            agent: agent.into(),
            lifetime: 300,
            legacy: false,
        }
    }

    /// Sends `Signature-Agent` in the legacy form: one bare String, covered whole.
    pub fn legacy_agent_form(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Signatures live `seconds` (`expires - created`).
    pub fn lifetime(mut self, seconds: u64) -> Self {
        self.lifetime = seconds;
        self
    }

    /// The `Signature-Agent` URL.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The public key.
    pub fn public_jwk(&self) -> Jwk {
        self.key.public_jwk()
    }

    /// The key's RFC 7638 thumbprint: the signatures' `keyid`.
    pub fn thumbprint(&self) -> String {
        self.key.public_jwk().thumbprint()
    }

    /// The private key's raw 32 bytes (the Ed25519 seed), to hand the same key to another
    /// implementation.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// The private key as a JWK (`kty`, `crv`, `x`, `d`), to hand the same key to another
    /// implementation.
    pub fn private_jwk(&self) -> Value {
        let public = self.key.public_jwk();
        json!({ "kty": "OKP", "crv": "Ed25519", "x": public.x(), "d": b64url(self.seed) })
    }

    /// Signs `request` as created at `created` (Unix seconds), with a fresh nonce.
    pub fn sign<B>(&self, request: &mut Request<B>, created: u64) {
        self.sign_with(request, created, &BotSignOptions::default());
    }

    /// Signs `request` with explicit options.
    pub fn sign_with<B>(&self, request: &mut Request<B>, created: u64, options: &BotSignOptions) {
        let agent_field = options.signature_agent.clone().unwrap_or_else(|| {
            if self.legacy {
                format!("\"{}\"", self.agent)
            } else {
                format!("agent1=\"{}\"", self.agent)
            }
        });
        request.headers_mut().insert(
            names::bot::SIGNATURE_AGENT,
            HeaderValue::from_str(&agent_field).expect("Signature-Agent is ASCII"),
        );
        let components = options.components.clone().unwrap_or_else(|| {
            let agent = if self.legacy {
                "\"signature-agent\"".to_owned()
            } else {
                "\"signature-agent\";key=\"agent1\"".to_owned()
            };
            vec!["\"@authority\"".to_owned(), agent]
        });
        let mut params = format!("created={created}");
        if options.send_expires {
            let expires = options.expires.unwrap_or(created + self.lifetime);
            params.push_str(&format!(";expires={expires}"));
        }
        let keyid = options.keyid.clone().unwrap_or_else(|| self.thumbprint());
        params.push_str(&format!(";keyid=\"{keyid}\""));
        if let Some(alg) = &options.alg {
            params.push_str(&format!(";alg=\"{alg}\""));
        }
        let nonce = match &options.nonce {
            None => Some(random_nonce()),
            Some(nonce) => nonce.clone(),
        };
        if let Some(nonce) = nonce {
            params.push_str(&format!(";nonce=\"{nonce}\""));
        }
        params.push_str(&format!(";tag=\"{}\"", options.tag));
        let input_value = format!("sig1=({});{params}", components.join(" "));
        let input = ParsedInput::parse(&input_value, 64).expect("a bot signature input parses");
        let base = signature_base_of(request, None, &input);
        let signature = encode_signature(&self.key.sign_bytes(base.as_bytes()));
        let headers = request.headers_mut();
        headers.insert(
            names::header::SIGNATURE_INPUT,
            HeaderValue::from_str(&input_value).expect("Signature-Input is ASCII"),
        );
        headers.insert(
            names::header::SIGNATURE,
            HeaderValue::from_str(&format!("sig1=:{signature}:")).expect("Signature is ASCII"),
        );
    }
}

/// 32 random bytes, base64url.
fn random_nonce() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    b64url(bytes)
}

/// What a [`BotDirectory`] does wrong, to test that verifiers refuse it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum DirectoryFault {
    /// Nothing: a well-formed, signed directory.
    #[default]
    None,
    /// Answers with this status and an empty JWKS.
    Status(u16),
    /// Answers `302` to this location.
    Redirect(String),
    /// Answers with this content type.
    ContentType(String),
    /// Answers this body (with the right type and signatures).
    Body(Vec<u8>),
    /// Waits this long before answering.
    Delay(Duration),
    /// Sends no response signature.
    Unsigned,
}

#[derive(Debug)]
struct DirectoryState {
    signing: Vec<ResourceKey>,
    listed: Vec<Jwk>,
    fault: DirectoryFault,
    max_age: u64,
}

/// A Web Bot Auth key directory served on a loopback port (see the module docs).
#[derive(Debug)]
pub struct BotDirectory {
    origin: String,
    first_seed: [u8; 32],
    state: Arc<Mutex<DirectoryState>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BotDirectory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BotDirectory {
    /// Serves a directory holding the key of `seed`, its signatures timed by the system
    /// clock.
    pub async fn spawn(seed: [u8; 32]) -> std::io::Result<Self> {
        Self::spawn_with_clock(seed, Arc::new(SystemClock)).await
    }

    /// [`BotDirectory::spawn`], its response signatures timed by `clock`.
    pub async fn spawn_with_clock(seed: [u8; 32], clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(DirectoryState {
            signing: vec![ResourceKey::from_seed(seed)],
            listed: Vec::new(),
            fault: DirectoryFault::None,
            max_age: 300,
        }));
        let requests = Arc::new(AtomicUsize::new(0));
        let router = {
            let state = state.clone();
            let requests = requests.clone();
            axum::Router::new().route(
                names::bot::DIRECTORY_PATH,
                axum::routing::get(move |headers: http::HeaderMap| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let state = state.clone();
                    let clock = clock.clone();
                    async move { answer(&state, &headers, clock.now()).await }
                }),
            )
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(BotDirectory {
            origin,
            first_seed: seed,
            state,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The signer of the directory's first key, naming this directory's origin.
    pub fn signer(&self) -> BotSigner {
        BotSigner::new(self.first_seed, self.origin.clone())
    }

    /// Publishes the key of `seed` too, signing the directory with it.
    pub fn add_key(&self, seed: [u8; 32]) {
        self.lock().signing.push(ResourceKey::from_seed(seed));
    }

    /// Lists `key` without a response signature by it (another party's key).
    pub fn list_foreign_key(&self, key: Jwk) {
        self.lock().listed.push(key);
    }

    /// Stops publishing the key of thumbprint `thumbprint`.
    pub fn remove_key(&self, thumbprint: &str) {
        self.lock()
            .signing
            .retain(|k| !crate::jose::thumbprints_match(k.public_jwk().thumbprint_shared(), thumbprint));
    }

    /// Misbehaves from now on (or behaves again, with [`DirectoryFault::None`]).
    pub fn set_fault(&self, fault: DirectoryFault) {
        self.lock().fault = fault;
    }

    /// The `Cache-Control: max-age` sent (default 300).
    pub fn set_max_age(&self, seconds: u64) {
        self.lock().max_age = seconds;
    }

    /// How many times the directory was fetched.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirectoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn answer(
    state: &Mutex<DirectoryState>,
    request_headers: &http::HeaderMap,
    now: u64,
) -> http::Response<axum::body::Body> {
    let (signing, listed, fault, max_age) = {
        let state = state.lock().unwrap_or_else(|p| p.into_inner());
        (
            state.signing.clone(),
            state.listed.clone(),
            state.fault.clone(),
            state.max_age,
        )
    };
    if let DirectoryFault::Delay(delay) = &fault {
        tokio::time::sleep(*delay).await;
    }
    let mut keys: Vec<Value> = signing.iter().map(|k| k.public_jwk().to_json()).collect();
    keys.extend(listed.iter().map(Jwk::to_json));
    let mut body = serde_json::to_vec(&json!({ "keys": keys })).expect("JSON");
    let mut response = http::Response::builder()
        .header(http::header::CONTENT_TYPE, names::bot::DIRECTORY_MEDIA_TYPE)
        .header(http::header::CACHE_CONTROL, format!("max-age={max_age}"));
    match &fault {
        DirectoryFault::Status(status) => response = response.status(*status),
        DirectoryFault::Redirect(location) => {
            response = response.status(302).header(http::header::LOCATION, location.as_str());
        }
        DirectoryFault::ContentType(content_type) => {
            if let Some(headers) = response.headers_mut() {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_str(content_type).expect("an ASCII content type"),
                );
            }
        }
        DirectoryFault::Body(bytes) => body = bytes.clone(),
        _ => {}
    }
    if !matches!(fault, DirectoryFault::Unsigned) {
        let authority = request_headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut inputs = Vec::new();
        let mut signatures = Vec::new();
        for (i, key) in signing.iter().enumerate() {
            let params = format!(
                "(\"@authority\";req);created={now};expires={};keyid=\"{}\";alg=\"ed25519\";tag=\"{}\"",
                now + 300,
                key.public_jwk().thumbprint(),
                names::bot::DIRECTORY_TAG
            );
            let base = format!("\"@authority\";req: {authority}\n\"@signature-params\": {params}");
            inputs.push(format!("binding{i}={params}"));
            signatures.push(format!(
                "binding{i}=:{}:",
                encode_signature(&key.sign_bytes(base.as_bytes()))
            ));
        }
        if !inputs.is_empty() {
            response = response
                .header(names::header::SIGNATURE_INPUT, inputs.join(", "))
                .header(names::header::SIGNATURE, signatures.join(", "));
        }
    }
    response
        .body(axum::body::Body::from(body))
        .expect("a valid directory response")
}
