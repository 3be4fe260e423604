//! An agent that signs requests, and the identity server that publishes its key.

use http::{HeaderValue, Request};
use serde_json::{Value, json};

use crate::Generation;
use crate::httpsig::{ParsedInput, RequestTarget, SignatureBase, digest::content_digest_sha256, encode_signature};
use crate::jose::{Jwk, ResourceKey};
use crate::names;

/// Which `Signature-Key` a [`TestAgent`] sends.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `sig=hwk;kty="OKP";crv="Ed25519";x="…";alg="Ed25519"`.
    Hwk,
    /// `sig=jwks_uri;id="…";dwk="…";kid="…"`.
    JwksUri {
        /// The signer's identifier.
        id: String,
        /// The well-known document name.
        dwk: String,
        /// The key id.
        kid: String,
    },
    /// `sig=jwt;jwt="…"`.
    Jwt(String),
}

impl KeySource {
    /// `jwks_uri` with `dwk` `aauth-agent.json`.
    pub fn agent_jwks(id: impl Into<String>, kid: impl Into<String>) -> Self {
        KeySource::JwksUri {
            id: id.into(),
            dwk: names::dwk::AGENT.to_owned(),
            kid: kid.into(),
        }
    }
}

/// What a [`TestAgent`] covers and how it signs.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Covered components in order (default `@method @authority @path signature-key`;
    /// `@query` is added when the request has a query).
    pub components: Vec<String>,
    /// The label (default `sig`).
    pub label: String,
    /// Overrides the `@authority` value (default: the URI's authority, else `Host`).
    pub authority: Option<String>,
    /// Emit base64url instead of standard base64 (as PyPI `aauth` does).
    pub base64url: bool,
    /// Extra signature parameters appended after `created` (already serialised, e.g.
    /// `;expires=1730217660`).
    pub extra_params: String,
    /// Send `Signature-Key` in the demo generation's non-RFC 9651 form
    /// (`sig=(scheme=jwt jwt="…")`, `jwks_uri` without `dwk` when it is
    /// `aauth-agent.json`, `hwk` without `alg`), as the March 2026 AAuth demo sends it.
    pub legacy_signature_key: bool,
}

impl SignOptions {
    /// The options an agent of `generation` signs with: the defaults for draft -11; the
    /// demo generation's `Signature-Key` form and base64url signatures, as the March 2026
    /// AAuth demo sends them, for [`Generation::Legacy`].
    pub fn for_generation(generation: Generation) -> Self {
        let legacy = generation == Generation::Legacy;
        SignOptions {
            base64url: legacy,
            legacy_signature_key: legacy,
            ..SignOptions::default()
        }
    }
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            components: ["@method", "@authority", "@path", "signature-key"]
                .map(str::to_owned)
                .to_vec(),
            label: "sig".to_owned(),
            authority: None,
            base64url: false,
            extra_params: String::new(),
            legacy_signature_key: false,
        }
    }
}

/// An agent with an Ed25519 key that signs requests.
#[derive(Debug, Clone)]
pub struct TestAgent {
    key: ResourceKey,
}

impl TestAgent {
    /// A fresh random key.
    pub fn generate() -> Self {
        TestAgent {
            key: ResourceKey::generate(),
        }
    }

    /// A deterministic key.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        TestAgent {
            key: ResourceKey::from_seed(seed),
        }
    }

    /// With an explicit `kid` (for `jwks_uri`).
    pub fn with_kid(self, kid: impl Into<String>) -> Self {
        TestAgent {
            key: self.key.with_kid(kid),
        }
    }

    /// The public JWK (`kid`, `alg` `Ed25519`).
    pub fn public_jwk(&self) -> Jwk {
        self.key.public_jwk()
    }

    /// The JWKS document publishing this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk().to_json()] })
    }

    /// RFC 7638 thumbprint of the key.
    pub fn thumbprint(&self) -> String {
        self.public_jwk().thumbprint()
    }

    /// The signing key (to mint tokens an agent provider would).
    pub fn key(&self) -> &ResourceKey {
        &self.key
    }

    /// The `Signature-Key` value for `source`.
    pub fn signature_key_value(&self, source: &KeySource, label: &str) -> String {
        match source {
            KeySource::Hwk => format!(
                r#"{label}=hwk;kty="OKP";crv="Ed25519";x="{}";alg="Ed25519""#,
                self.public_jwk().x()
            ),
            KeySource::JwksUri { id, dwk, kid } => format!(r#"{label}=jwks_uri;id="{id}";dwk="{dwk}";kid="{kid}""#),
            KeySource::Jwt(token) => format!(r#"{label}=jwt;jwt="{token}""#),
        }
    }

    /// The demo generation's `Signature-Key` value for `source` (not RFC 9651; accepted
    /// only under the legacy profiles).
    pub fn legacy_signature_key_value(&self, source: &KeySource, label: &str) -> String {
        match source {
            KeySource::Hwk => format!(
                r#"{label}=(scheme=hwk kty="OKP" crv="Ed25519" x="{}")"#,
                self.public_jwk().x()
            ),
            KeySource::JwksUri { id, dwk, kid } if dwk == names::dwk::AGENT => {
                format!(r#"{label}=(scheme=jwks_uri id="{id}" kid="{kid}")"#)
            }
            KeySource::JwksUri { id, dwk, kid } => {
                format!(r#"{label}=(scheme=jwks_uri id="{id}" dwk="{dwk}" kid="{kid}")"#)
            }
            KeySource::Jwt(token) => format!(r#"{label}=(scheme=jwt jwt="{token}")"#),
        }
    }

    /// Signs `request` with the default options.
    pub fn sign<B>(&self, request: &mut Request<B>, source: &KeySource, created: u64) {
        self.sign_with(request, source, created, &SignOptions::default());
    }

    /// Signs `request`, adding `Content-Digest` for `body` and covering it (plus
    /// `content-type` when present).
    pub fn sign_with_body<B>(&self, request: &mut Request<B>, body: &[u8], source: &KeySource, created: u64) {
        self.sign_body_with(request, body, source, created, SignOptions::default());
    }

    /// [`TestAgent::sign_with_body`] starting from `options` (`content-type` and
    /// `content-digest` are appended to its components).
    pub fn sign_body_with<B>(
        &self,
        request: &mut Request<B>,
        body: &[u8],
        source: &KeySource,
        created: u64,
        mut options: SignOptions,
    ) {
        request.headers_mut().insert(
            names::header::CONTENT_DIGEST,
            HeaderValue::from_str(&content_digest_sha256(body)).expect("digest is ASCII"),
        );
        if request.headers().contains_key(http::header::CONTENT_TYPE) {
            options.components.push("content-type".to_owned());
        }
        options.components.push("content-digest".to_owned());
        self.sign_with(request, source, created, &options);
    }

    /// Signs `request` with explicit options.
    pub fn sign_with<B>(&self, request: &mut Request<B>, source: &KeySource, created: u64, options: &SignOptions) {
        let label = &options.label;
        let headers = request.headers_mut();
        let signature_key = if options.legacy_signature_key {
            self.legacy_signature_key_value(source, label)
        } else {
            self.signature_key_value(source, label)
        };
        headers.insert(
            names::header::SIGNATURE_KEY,
            HeaderValue::from_str(&signature_key).expect("Signature-Key is ASCII"),
        );
        let mut components = options.components.clone();
        if request.uri().query().is_some() && !components.iter().any(|c| c == "@query") {
            components.push("@query".to_owned());
        }
        let list = components
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let input_value = format!("{label}=({list});created={created}{}", options.extra_params);
        let input = ParsedInput::parse(&input_value, 64).expect("test signature input parses");
        let base = signature_base_of(request, options.authority.clone(), &input);
        let signature = self.key.sign_bytes(base.as_bytes());
        let encoded = if options.base64url {
            crate::jose::b64url(signature)
        } else {
            encode_signature(&signature)
        };
        let headers = request.headers_mut();
        headers.insert(
            names::header::SIGNATURE_INPUT,
            HeaderValue::from_str(&input_value).expect("Signature-Input is ASCII"),
        );
        headers.insert(
            names::header::SIGNATURE,
            HeaderValue::from_str(&format!("{label}=:{encoded}:")).expect("Signature is ASCII"),
        );
    }
}

impl TestAgent {
    /// An axum router for the agent's identity server `id` (`http(s)://host[:port]`):
    /// `/.well-known/aauth-agent.json` (`issuer` = `id`, `jwks_uri`) and the JWKS it names.
    /// Serve it at `id` so that resources and auth servers can resolve a `jwks_uri`
    /// signature ([`KeySource::agent_jwks`]).
    pub fn identity_router(&self, id: &str) -> axum::Router {
        let metadata = json!({
            "issuer": id,
            "jwks_uri": format!("{id}{AGENT_JWKS_PATH}"),
        });
        let jwks = self.jwks();
        axum::Router::new()
            .route(
                &format!("/.well-known/{}", names::dwk::AGENT),
                axum::routing::get(move || std::future::ready(axum::Json(metadata))),
            )
            .route(
                AGENT_JWKS_PATH,
                axum::routing::get(move || std::future::ready(axum::Json(jwks))),
            )
    }
}

/// Where [`TestAgent::identity_router`] publishes the JWKS.
const AGENT_JWKS_PATH: &str = "/.well-known/jwks.json";

/// A revocation request (`POST` of `{"jti","exp"}`) to `url`, signed with `key` as the
/// server `issuer` under `jwks_uri`, covering `content-type` and `content-digest`.
pub(crate) fn revocation_request(
    key: &ResourceKey,
    issuer: &str,
    dwk: &str,
    url: &str,
    jti: &str,
    exp: u64,
    created: u64,
) -> Request<bytes::Bytes> {
    let body = bytes::Bytes::from(json!({ "jti": jti, "exp": exp }).to_string());
    let mut request = Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .expect("a valid revocation URL");
    let source = KeySource::JwksUri {
        id: issuer.to_owned(),
        dwk: dwk.to_owned(),
        kid: key.kid().to_owned(),
    };
    TestAgent { key: key.clone() }.sign_with_body(&mut request, &body, &source, created);
    request
}

/// The signature base of `request` for `input`, with `authority` or else the request's
/// own (its URI, then its `Host`) as `@authority`: how every signer of the test kit
/// builds what it signs.
pub(crate) fn signature_base_of<B>(
    request: &Request<B>,
    authority: Option<String>,
    input: &ParsedInput,
) -> SignatureBase {
    let authority = authority
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let scheme = request.uri().scheme_str().unwrap_or("https");
    let target = RequestTarget {
        method: request.method().as_str(),
        scheme,
        authority: &authority,
        path: request.uri().path(),
        query: request.uri().query(),
    };
    let mut base = SignatureBase::new();
    base.build(input, &target, request.headers())
        .expect("every covered component is present");
    base
}
