//! The real Web Bot Auth peers: Cloudflare's Rust crate `web-bot-auth` 0.7.0, driven in
//! process through an RFC 9421 message adapter over `http::Request`, and the drivers of
//! npm `web-bot-auth` 0.1.3 ([`Peer::WbaJs`]) and PyPI `regent-httpsig` 0.7.3
//! ([`Peer::WbaPy`]) in `tests/interop` (contract in its README, "Web Bot Auth peers").
//!
//! The Rust crate computes nothing from a request itself: its `UnsignedMessage` /
//! `SignedMessage` traits ask the application for each covered component's value. The
//! adapter here answers as RFC 9421 §2 defines them (in particular §2.1.2: a field
//! covered with `;key="m"` is the re-serialised Dictionary member `m`), so what it signs
//! and verifies is the crate's own signature base, parameters and Ed25519 code.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use http::Request;
use indexmap::IndexMap;
use serde_json::{Value, json};
use sfv::FieldType;
use web_bot_auth::components::{
    CoveredComponent, DerivedComponent, HTTPField, HTTPFieldParameters, HTTPFieldParametersSet,
};
use web_bot_auth::keyring::{Algorithm, JSONWebKeySet, KeyRing, Thumbprintable};
use web_bot_auth::message_signatures::{MessageSigner, SignedMessage, UnsignedMessage};
use web_bot_auth::{SignatureAgentLink, WebBotAuthVerifier};

pub use super::peers::Peer;
use super::peers::signed_request;

/// The bot's Ed25519 seed (its directory publishes the matching public key).
pub const BOT_SEED: [u8; 32] = [0x5b; 32];
/// A key no directory of the tests publishes.
pub const STRANGER_SEED: [u8; 32] = [0x6c; 32];
/// The label of the `Signature-Agent` Dictionary member the signers name.
pub const AGENT_MEMBER: &str = "agent1";
/// The lifetime the Web Bot Auth libraries sign for by default: five minutes.
pub const LIFETIME: u64 = 300;

/// An Ed25519 key of a bot.
#[derive(Debug, Clone, Copy)]
pub struct BotKey {
    pub seed: [u8; 32],
}

impl BotKey {
    pub const fn new(seed: [u8; 32]) -> Self {
        BotKey { seed }
    }

    /// The public key's `x`, base64url.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&self.seed).verifying_key().as_bytes())
    }

    /// `{"kty":"OKP","crv":"Ed25519","x"}`.
    pub fn public_jwk(&self) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "x": self.x() })
    }

    /// The public JWK plus `d` (the seed), as the drivers take it.
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.public_jwk();
        jwk["d"] = json!(URL_SAFE_NO_PAD.encode(self.seed));
        jwk
    }

    /// The RFC 7638 JWK SHA-256 thumbprint as the `web-bot-auth` crate computes it (an
    /// implementation independent of ours): the `keyid` Web Bot Auth signers send.
    pub fn thumbprint(&self) -> String {
        Thumbprintable::OKP {
            crv: "Ed25519".to_owned(),
            x: self.x(),
        }
        .b64_thumbprint()
    }
}

/// How a signer names its directory in `Signature-Agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentForm {
    /// The draft's RFC 9651 Dictionary, `agent1="<origin>"`.
    Dictionary,
    /// The legacy bare String, `"<origin>"`.
    Legacy,
}

impl AgentForm {
    /// The `Signature-Agent` field value naming `origin`.
    pub fn field(self, origin: &str) -> String {
        match self {
            AgentForm::Dictionary => format!("{AGENT_MEMBER}=\"{origin}\""),
            AgentForm::Legacy => format!("\"{origin}\""),
        }
    }
}

/// The header set of a request, for the drivers (`{name: value}`, repeated fields joined
/// by `, `).
pub fn header_object(request: &Request<Body>) -> Value {
    let mut headers = serde_json::Map::new();
    for name in request.headers().keys() {
        let values: Vec<&str> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII"))
            .collect();
        headers.insert(name.as_str().to_owned(), json!(values.join(", ")));
    }
    Value::Object(headers)
}

/// A `GET url` carrying the header set a driver printed.
pub fn request_from(url: &str, signed: &Value) -> Request<Body> {
    signed_request("GET", url, &signed["headers"], None)
}

/// A body-less copy of `request` (method, URI, every header): the same request sent again.
pub fn copy(request: &Request<Body>) -> Request<Body> {
    let mut again = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .body(Body::empty())
        .expect("a valid request");
    *again.headers_mut() = request.headers().clone();
    again
}

// --- npm web-bot-auth -----------------------------------------------------------------

/// Has npm `web-bot-auth` sign `GET url` carrying `Signature-Agent: agent_field` (none when
/// `None`), valid from `created` for [`LIFETIME`]. `components` (driver form: `"name"` or
/// `{"name","key"}`) replaces the library's default coverage when given.
pub fn js_sign(
    launcher: &PathBuf,
    key: &BotKey,
    url: &str,
    agent_field: Option<&str>,
    created: u64,
    components: Option<Value>,
) -> Value {
    let mut headers = serde_json::Map::new();
    if let Some(field) = agent_field {
        headers.insert("signature-agent".to_owned(), json!(field));
    }
    let mut job = json!({
        "method": "GET",
        "url": url,
        "headers": headers,
        "private_jwk": key.private_jwk(),
        "created": created,
        "expires": created + LIFETIME,
    });
    if let Some(components) = components {
        job["components"] = components;
    }
    Peer::WbaJs.run(launcher, "sign", &job)
}

/// Has npm `web-bot-auth`'s `verify` judge `request` at `now`, with `keys` as the
/// directory's JWKs (the driver picks the one whose thumbprint is the `keyid`).
pub fn js_verify(launcher: &PathBuf, request: &Request<Body>, keys: Value, now: u64) -> Value {
    let input = json!({
        "method": request.method().as_str(),
        "url": request.uri().to_string(),
        "headers": header_object(request),
        "keys": keys,
        "now": now,
    });
    Peer::WbaJs.run(launcher, "verify", &input)
}

// --- regent-httpsig -------------------------------------------------------------------

/// Has regent-httpsig's `EgressSigner` sign `method url` for the directory at `origin`,
/// valid from `created` for [`LIFETIME`] (its own `Signature-Agent`, legacy form).
pub fn py_sign(launcher: &PathBuf, method: &str, key: &BotKey, url: &str, origin: &str, created: u64) -> Value {
    let job = json!({
        "method": method,
        "url": url,
        "private_jwk": key.private_jwk(),
        "signature_agent": origin,
        "created": created,
        "expires": created + LIFETIME,
    });
    Peer::WbaPy.run(launcher, "sign", &job)
}

/// Has regent-httpsig's `HttpsigVerifier` judge `request` at `now`: it fetches the
/// directory its `Signature-Agent` names itself (127.0.0.1 exempted from its
/// public-address rule, nothing else).
pub fn py_verify(launcher: &PathBuf, request: &Request<Body>, now: u64) -> Value {
    let input = json!({
        "method": request.method().as_str(),
        "url": request.uri().to_string(),
        "headers": header_object(request),
        "loopback_host": "127.0.0.1",
        "now": now,
    });
    Peer::WbaPy.run(launcher, "verify", &input)
}

// --- the web-bot-auth crate -----------------------------------------------------------

/// `@authority` and `Signature-Agent`: what the crate's own example covers. `member` is
/// the Dictionary member (`;key=`), `None` for the legacy form (the whole field).
pub fn crate_components(member: Option<&str>) -> Vec<CoveredComponent> {
    let parameters = member
        .map(|m| vec![HTTPFieldParameters::Key(m.to_owned())])
        .unwrap_or_default();
    vec![
        CoveredComponent::Derived(DerivedComponent::Authority { req: false }),
        CoveredComponent::HTTP(HTTPField {
            name: "signature-agent".to_owned(),
            parameters: HTTPFieldParametersSet(parameters),
        }),
    ]
}

/// A request as the crate's message traits see it.
struct CrateMessage<'a> {
    request: &'a Request<Body>,
    cover: Vec<CoveredComponent>,
    signature_input: String,
    signature: String,
}

impl CrateMessage<'_> {
    /// RFC 9421 §2: the component's value(s) in this request; none when absent.
    fn values(&self, component: &CoveredComponent) -> Vec<String> {
        let uri = self.request.uri();
        match component {
            CoveredComponent::Derived(derived) => {
                let value = match derived {
                    DerivedComponent::Method { req: false } => self.request.method().as_str().to_owned(),
                    DerivedComponent::Authority { req: false } => {
                        let authority = uri.authority().expect("an absolute request URI");
                        let default_port = match uri.scheme_str() {
                            Some("https") => Some(443),
                            Some("http") => Some(80),
                            _ => None,
                        };
                        match authority.port_u16() {
                            Some(port) if Some(port) != default_port => {
                                format!("{}:{port}", authority.host().to_ascii_lowercase())
                            }
                            _ => authority.host().to_ascii_lowercase(),
                        }
                    }
                    DerivedComponent::TargetUri { req: false } => uri.to_string(),
                    DerivedComponent::Path { req: false } => uri.path().to_owned(),
                    DerivedComponent::Query { req: false } => format!("?{}", uri.query().unwrap_or("")),
                    DerivedComponent::Scheme { req: false } => uri.scheme_str().unwrap_or("").to_owned(),
                    _ => return Vec::new(),
                };
                vec![value]
            }
            CoveredComponent::HTTP(field) => {
                let values: Vec<String> = self
                    .request
                    .headers()
                    .get_all(field.name.as_str())
                    .iter()
                    .map(|v| v.to_str().expect("ASCII").trim().to_owned())
                    .collect();
                let member = field.parameters.0.iter().find_map(|p| match p {
                    HTTPFieldParameters::Key(key) => Some(key.as_str()),
                    _ => None,
                });
                match member {
                    None => values,
                    // §2.1.2: the member's value, re-serialised, from the combined field.
                    Some(member) => sfv::Parser::new(&values.join(", "))
                        .parse::<sfv::Dictionary>()
                        .ok()
                        .and_then(|dictionary| {
                            dictionary
                                .iter()
                                .find(|(key, _)| key.as_str() == member)
                                .and_then(|(_, entry)| match entry {
                                    sfv::ListEntry::Item(item) => Some(item.serialize()),
                                    sfv::ListEntry::InnerList(_) => None,
                                })
                        })
                        .into_iter()
                        .collect(),
                }
            }
        }
    }
}

impl UnsignedMessage for CrateMessage<'_> {
    fn fetch_components_to_cover(&self) -> IndexMap<CoveredComponent, String> {
        self.cover
            .iter()
            .map(|component| {
                let values = self.values(component);
                assert_eq!(values.len(), 1, "{component:?} has one value to sign");
                (component.clone(), values[0].clone())
            })
            .collect()
    }

    fn register_header_contents(&mut self, signature_input: String, signature_header: String) {
        self.signature_input = format!("sig1={signature_input}");
        self.signature = format!("sig1={signature_header}");
    }
}

impl SignedMessage for CrateMessage<'_> {
    fn lookup_component(&self, name: &CoveredComponent) -> Vec<String> {
        self.values(name)
    }
}

/// Signs `request` with the crate's `MessageSigner` (tag `web-bot-auth`, `keyid` the key's
/// thumbprint, `nonce`), covering `cover`; the crate takes `created` from the system clock
/// and `expires` = `created` + `lifetime`. Adds `Signature-Input` and `Signature` (label
/// `sig1`).
pub fn crate_sign(
    request: &mut Request<Body>,
    key: &BotKey,
    cover: Vec<CoveredComponent>,
    nonce: &str,
    lifetime: Duration,
) {
    let signer = MessageSigner {
        keyid: key.thumbprint(),
        nonce: nonce.to_owned(),
        tag: "web-bot-auth".to_owned(),
    };
    let mut message = CrateMessage {
        request: &*request,
        cover,
        signature_input: String::new(),
        signature: String::new(),
    };
    signer
        .generate_signature_headers_content(&mut message, lifetime, Algorithm::Ed25519, &key.seed)
        .expect("the crate signs");
    let (input, signature) = (message.signature_input, message.signature);
    let headers = request.headers_mut();
    headers.insert("signature-input", input.parse().expect("a header value"));
    headers.insert("signature", signature.parse().expect("a header value"));
}

/// What the crate's `WebBotAuthVerifier` made of a request.
#[derive(Debug)]
pub struct CrateVerdict {
    /// The directories its `Signature-Agent` names, as the crate parsed them.
    pub agents: Vec<String>,
    /// The `keyid` of the signature it selected.
    pub keyid: Option<String>,
    /// `possibly_insecure`'s expiry advice (0.7.0's `verify` does not look at `expires`).
    pub expired: Option<bool>,
    /// `verify`'s result against the directory's keys.
    pub verified: Result<(), String>,
}

/// Has the crate verify `request` the way its documentation shows: `parse`, the
/// directories it names, the expiry advice, then `verify` with a `KeyRing` holding the
/// directory document `directory` (a JWKS, imported by the crate, keyed by thumbprint).
pub fn crate_verify(request: &Request<Body>, directory: &Value) -> CrateVerdict {
    let message = CrateMessage {
        request,
        cover: Vec::new(),
        signature_input: String::new(),
        signature: String::new(),
    };
    let verifier = match WebBotAuthVerifier::parse(&message) {
        Ok(verifier) => verifier,
        Err(error) => {
            return CrateVerdict {
                agents: Vec::new(),
                keyid: None,
                expired: None,
                verified: Err(format!("parse: {error}")),
            };
        }
    };
    let agents = verifier
        .get_signature_agents()
        .iter()
        .map(|link| match link {
            SignatureAgentLink::External(url) => url.clone(),
            SignatureAgentLink::Inline(_) => "inline".to_owned(),
        })
        .collect();
    let details = &verifier.get_parsed_label().base.parameters.details;
    let keyid = details.keyid.clone();
    let expired = details.possibly_insecure(|_| false).is_expired;
    let mut keyring = KeyRing::default();
    let jwks: JSONWebKeySet = serde_json::from_value(directory.clone()).expect("a JWKS the crate reads");
    assert!(
        keyring.import_jwks(jwks).iter().all(Option::is_none),
        "every key imported"
    );
    let verified = verifier.verify(&keyring, None).map(|_| ()).map_err(|e| e.to_string());
    CrateVerdict {
        agents,
        keyid,
        expired,
        verified,
    }
}
