//! Finding an issuer's keys: `{issuer}/.well-known/{dwk}` → `jwks_uri` → key by `kid`.
//!
//! The identifiers arrive in unauthenticated requests, so everything here is bounded:
//! identifiers are admitted by a strict raw-string grammar before any DNS
//! ([`IdentifierPolicy`]), documents are size-capped and time-limited ([`Fetch`]), and the
//! cache is bounded ([`DiscoveryResolver`]).
//!
//! The verifier asks a [`KeyResolver`] twice: first [`KeyResolver::cached`], which must
//! answer from memory without I/O (the hot path stays synchronous and unboxed); only on a
//! miss [`KeyResolver::resolve`], which may fetch.

mod fetch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

#[cfg(feature = "reqwest")]
pub use fetch::ReqwestFetch;
pub use fetch::{FetchError, FetchedDocument};

use crate::error::{Error, SignatureErrorCode};
use crate::jose::{AlgPolicy, Jwk, parse_json_object};

/// A boxed, sendable future (the slow path only).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which key to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyQuery<'a> {
    /// The issuer's server identifier (`iss`, or the `jwks_uri` scheme's `id`).
    pub issuer: &'a str,
    /// The well-known document name.
    pub dwk: &'a str,
    /// The key id.
    pub kid: &'a str,
}

/// Resolves an issuer's verification key.
pub trait KeyResolver: Send + Sync + 'static {
    /// Answers from memory, without I/O: `None` when a fetch is needed.
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>>;

    /// Finds the key, fetching metadata and JWKS as needed.
    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>>;
}

/// Fetches a document over HTTP(S). Implement it to bring your own client (TLS roots,
/// mTLS, an egress proxy); the default is [`ReqwestFetch`].
pub trait Fetch: Send + Sync + 'static {
    /// GETs `url`, refusing bodies over `max_bytes`.
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;
}

/// Which identifiers may be fetched from.
#[derive(Debug, Clone, Default)]
pub struct IdentifierPolicy {
    allow_http_loopback: bool,
}

impl IdentifierPolicy {
    /// AAUTH-11 identifiers only: `https://` + lower-case DNS name, nothing else.
    pub fn strict() -> Self {
        IdentifierPolicy::default()
    }

    /// Also admits `http://127.0.0.1:PORT`, `http://localhost:PORT` and `http://[::1]:PORT`
    /// (development only: see [`crate::config::DangerousOptions`]).
    pub fn allowing_http_loopback() -> Self {
        IdentifierPolicy {
            allow_http_loopback: true,
        }
    }

    /// Whether http on loopback is admitted.
    pub fn allows_http_loopback(&self) -> bool {
        self.allow_http_loopback
    }

    /// Checks a server identifier by its raw string, before any URL parser or DNS sees it.
    pub fn admits(&self, identifier: &str) -> bool {
        if let Some(host) = identifier.strip_prefix("https://")
            && is_dns_name(host)
            && host.contains('.')
        {
            return true;
        }
        self.allow_http_loopback && is_loopback_origin(identifier)
    }
}

/// A lower-case LDH DNS name: labels of `[a-z0-9-]`, 1–63 characters, not starting or
/// ending with `-`, total ≤ 253, no trailing dot, and a last label starting with a letter
/// (so no spelling of an IP address, such as `127.1` or `2130706433`, passes).
pub fn is_dns_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let well_formed = labels.iter().all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    well_formed
        && labels
            .last()
            .is_some_and(|last| last.as_bytes()[0].is_ascii_lowercase())
}

/// `http(s)://127.0.0.1[:port]`, `http(s)://localhost[:port]`, `http(s)://[::1][:port]`.
fn is_loopback_origin(identifier: &str) -> bool {
    let Some(authority) = identifier
        .strip_prefix("http://")
        .or_else(|| identifier.strip_prefix("https://"))
    else {
        return false;
    };
    let (host, port) = match authority.strip_prefix("[::1]") {
        Some(rest) => ("[::1]", rest),
        None => match authority.split_once(':') {
            Some((host, port)) => (host, port),
            None => (authority, ""),
        },
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let port_ok = port.is_empty()
        || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0));
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && port_ok
}

/// The well-known document names a signer may point at.
pub fn is_known_dwk(dwk: &str) -> bool {
    use crate::wire::dwk::*;
    matches!(dwk, AGENT | PERSON | ACCESS | RESOURCE)
}

/// Sizes and times for discovery.
#[derive(Debug, Clone)]
pub struct DiscoveryLimits {
    /// Largest metadata document (bytes).
    pub max_metadata_bytes: usize,
    /// Largest JWKS (bytes).
    pub max_jwks_bytes: usize,
    /// Most keys read from one JWKS.
    pub max_keys: usize,
    /// How long a fetched key set is kept.
    pub ttl: Duration,
    /// Most issuers kept in the cache.
    pub max_issuers: u64,
}

impl Default for DiscoveryLimits {
    fn default() -> Self {
        DiscoveryLimits {
            max_metadata_bytes: 64 * 1024,
            max_jwks_bytes: 256 * 1024,
            max_keys: 32,
            ttl: Duration::from_secs(300),
            max_issuers: 10_000,
        }
    }
}

/// The usable keys of one issuer, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Jwk>>,
}

impl KeySet {
    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<Jwk>> {
        self.keys.get(kid)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a JWKS document. Keys that are not usable Ed25519 keys with a `kid` are
    /// skipped (an unselected key must never fail the set); a `kid` that appears twice is
    /// unusable. More than `max_keys` entries, or a document that is not a JWKS, fails.
    pub fn from_jwks(body: &[u8], max_keys: usize, policy: AlgPolicy) -> Result<Self, Error> {
        let document = parse_json_object(body).ok_or(Error::invalid_key("the JWKS is not a JSON object"))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(Error::invalid_key("the JWKS has no keys array"));
        };
        if entries.len() > max_keys {
            return Err(Error::invalid_key("the JWKS has too many keys"));
        }
        let mut keys: HashMap<String, Arc<Jwk>> = HashMap::new();
        let mut duplicated: Vec<String> = Vec::new();
        for entry in entries {
            let Some(object) = entry.as_object() else { continue };
            let Ok(jwk) = Jwk::from_json(object, policy) else {
                continue;
            };
            let Some(kid) = jwk.kid().map(str::to_owned) else {
                continue;
            };
            if keys.insert(kid.clone(), Arc::new(jwk)).is_some() {
                duplicated.push(kid);
            }
        }
        for kid in duplicated {
            keys.remove(&kid);
        }
        Ok(KeySet { keys })
    }
}

/// Parses metadata fetched for `issuer` and returns its `jwks_uri`.
///
/// `issuer` must be present and byte-equal to the identifier the document was fetched
/// under; `jwks_uri` must be on the same origin.
pub fn metadata_jwks_uri(body: &[u8], issuer: &str) -> Result<String, Error> {
    let document = parse_json_object(body).ok_or(Error::invalid_key("the metadata is not a JSON object"))?;
    match document.get("issuer") {
        None => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMissing,
                "the metadata has no issuer",
            ));
        }
        Some(Value::String(found)) if found == issuer => {}
        Some(_) => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMismatch,
                "the metadata issuer differs from the identifier",
            ));
        }
    }
    same_origin_jwks_uri(&document, issuer)
}

/// The document's `jwks_uri`, which must be on `issuer`'s origin.
fn same_origin_jwks_uri(document: &serde_json::Map<String, Value>, issuer: &str) -> Result<String, Error> {
    let Some(Value::String(jwks_uri)) = document.get("jwks_uri") else {
        return Err(Error::invalid_key("the metadata has no jwks_uri"));
    };
    let same_origin = jwks_uri
        .strip_prefix(issuer)
        .is_some_and(|rest| rest.starts_with('/') && !rest.starts_with("//"));
    if !same_origin || !jwks_uri.bytes().all(|b| (0x21..0x7f).contains(&b)) || jwks_uri.contains(['\\', '@', '#']) {
        return Err(Error::invalid_key(
            "the metadata's jwks_uri is not on the issuer's origin",
        ));
    }
    Ok(jwks_uri.clone())
}

/// [`metadata_jwks_uri`] for demo-generation documents: the signer's identifier may be
/// under `issuer` or `agent`, or absent; when present it must still equal `issuer`.
pub fn legacy_metadata_jwks_uri(body: &[u8], issuer: &str) -> Result<String, Error> {
    let document = parse_json_object(body).ok_or(Error::invalid_key("the metadata is not a JSON object"))?;
    match document.get("issuer").or_else(|| document.get("agent")) {
        None => {}
        Some(Value::String(found)) if found == issuer => {}
        Some(_) => {
            return Err(Error::signature(
                SignatureErrorCode::IssuerMismatch,
                "the metadata issuer differs from the identifier",
            ));
        }
    }
    same_origin_jwks_uri(&document, issuer)
}

/// The default [`KeyResolver`]: fetches metadata and JWKS through a [`Fetch`] and keeps
/// key sets in a bounded `moka` cache.
pub struct DiscoveryResolver<F: Fetch> {
    fetch: F,
    identifiers: IdentifierPolicy,
    limits: DiscoveryLimits,
    alg: AlgPolicy,
    keys: moka::sync::Cache<(String, String), Arc<KeySet>>,
}

impl<F: Fetch> std::fmt::Debug for DiscoveryResolver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryResolver")
            .field("identifiers", &self.identifiers)
            .field("limits", &self.limits)
            .field("cached_issuers", &self.keys.entry_count())
            .finish()
    }
}

impl<F: Fetch> DiscoveryResolver<F> {
    /// A resolver over `fetch` with default limits.
    pub fn new(fetch: F, identifiers: IdentifierPolicy) -> Self {
        Self::with_limits(fetch, identifiers, DiscoveryLimits::default())
    }

    /// A resolver with explicit limits.
    pub fn with_limits(fetch: F, identifiers: IdentifierPolicy, limits: DiscoveryLimits) -> Self {
        let keys = moka::sync::Cache::builder()
            .max_capacity(limits.max_issuers)
            .time_to_live(limits.ttl)
            .build();
        DiscoveryResolver {
            fetch,
            identifiers,
            limits,
            alg: AlgPolicy::Strict,
            keys,
        }
    }

    /// Accept legacy key spellings (`EdDSA`, no `alg`) in fetched JWKS. With
    /// [`AlgPolicy::Legacy`] the demo generation's discovery is accepted too: the auth
    /// server document `aauth-issuer.json`, and metadata that names its signer under
    /// `agent` instead of `issuer` or not at all (the `jwks_uri` must still be on the
    /// identifier's origin, which is what binds the keys to it).
    pub fn with_alg_policy(mut self, alg: AlgPolicy) -> Self {
        self.alg = alg;
        self
    }

    /// Number of issuers with a cached key set.
    pub fn cached_issuers(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }

    async fn fetch_key_set(&self, issuer: &str, dwk: &str) -> Result<KeySet, Error> {
        let metadata_url = format!("{issuer}/.well-known/{dwk}");
        let metadata = self
            .fetch
            .get(&metadata_url, self.limits.max_metadata_bytes)
            .await
            .map_err(|e| e.into_error())?;
        let jwks_uri = match self.alg {
            AlgPolicy::Strict => metadata_jwks_uri(&metadata.body, issuer)?,
            AlgPolicy::Legacy => legacy_metadata_jwks_uri(&metadata.body, issuer)?,
        };
        let jwks = self
            .fetch
            .get(&jwks_uri, self.limits.max_jwks_bytes)
            .await
            .map_err(|e| e.into_error())?;
        KeySet::from_jwks(&jwks.body, self.limits.max_keys, self.alg)
    }
}

impl<F: Fetch> KeyResolver for DiscoveryResolver<F> {
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>> {
        let set = self.keys.get(&(query.issuer.to_owned(), query.dwk.to_owned()))?;
        set.get(query.kid).cloned().map(Ok)
    }

    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>> {
        Box::pin(async move {
            if !self.identifiers.admits(query.issuer) {
                return Err(Error::invalid_key("the signer identifier is not admitted"));
            }
            let legacy_dwk = self.alg == AlgPolicy::Legacy && query.dwk == crate::wire::dwk::LEGACY_ISSUER;
            if !is_known_dwk(query.dwk) && !legacy_dwk {
                return Err(Error::invalid_key("the well-known document name is not recognised"));
            }
            let cache_key = (query.issuer.to_owned(), query.dwk.to_owned());
            if let Some(key) = self.keys.get(&cache_key).and_then(|set| set.get(query.kid).cloned()) {
                return Ok(key);
            }
            let set = Arc::new(self.fetch_key_set(query.issuer, query.dwk).await?);
            let found = set.get(query.kid).cloned();
            self.keys.insert(cache_key, set);
            found.ok_or(Error::signature(
                SignatureErrorCode::UnknownKey,
                "the issuer publishes no key with that kid",
            ))
        })
    }
}

/// A resolver over a fixed set of keys, for tests and for deployments that pin issuer
/// keys in configuration. Never fetches.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    keys: HashMap<(String, String, String), Arc<Jwk>>,
}

impl StaticResolver {
    /// An empty resolver.
    pub fn new() -> Self {
        StaticResolver::default()
    }

    /// Adds `key` for `(issuer, dwk)` under its `kid`.
    pub fn with_key(mut self, issuer: &str, dwk: &str, key: Jwk) -> Self {
        let kid = key.kid().unwrap_or_default().to_owned();
        self.keys
            .insert((issuer.to_owned(), dwk.to_owned(), kid), Arc::new(key));
        self
    }
}

impl KeyResolver for StaticResolver {
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>> {
        let key = (query.issuer.to_owned(), query.dwk.to_owned(), query.kid.to_owned());
        Some(self.keys.get(&key).cloned().ok_or(Error::signature(
            SignatureErrorCode::UnknownKey,
            "no pinned key with that kid",
        )))
    }

    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>> {
        let result = self
            .cached(&query)
            .unwrap_or_else(|| Err(Error::invalid_key("no pinned key")));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_by_raw_string() {
        let strict = IdentifierPolicy::strict();
        assert!(strict.admits("https://agent.example"));
        for bad in [
            "http://agent.example",
            "https://agent.example/",
            "https://agent.example:443",
            "https://Agent.example",
            "https://agent.example.",
            "https://127.0.0.1",
            "https://2130706433",
            "https://127.1",
            "https://0x7f.1",
            "https://[::1]",
            "https://u:p@agent.example",
            "https://agent.example\\@evil.example",
            "https://localhost",
            "http://127.0.0.1:8080",
        ] {
            assert!(!strict.admits(bad), "{bad}");
        }
        let dev = IdentifierPolicy::allowing_http_loopback();
        assert!(dev.admits("http://127.0.0.1:8080"));
        assert!(dev.admits("http://localhost:3000"));
        assert!(dev.admits("http://[::1]:9"));
        assert!(!dev.admits("http://127.0.0.2:8080"));
        assert!(!dev.admits("http://127.0.0.1:8080/"));
        assert!(!dev.admits("http://10.0.0.1:80"));
    }

    #[test]
    fn metadata_issuer_must_match() {
        let ok = br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(ok, "https://a.example").unwrap(),
            "https://a.example/jwks.json"
        );
        let other = br#"{"issuer":"https://b.example","jwks_uri":"https://b.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(other, "https://a.example")
                .unwrap_err()
                .signature_code(),
            Some(SignatureErrorCode::IssuerMismatch)
        );
        let missing = br#"{"jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            metadata_jwks_uri(missing, "https://a.example")
                .unwrap_err()
                .signature_code(),
            Some(SignatureErrorCode::IssuerMissing)
        );
        let cross = br#"{"issuer":"https://a.example","jwks_uri":"https://a.example.evil.example/jwks"}"#;
        assert!(metadata_jwks_uri(cross, "https://a.example").is_err());
    }

    #[test]
    fn legacy_metadata_may_name_its_signer_under_agent_or_not_at_all() {
        let id = "https://a.example";
        for ok in [
            &br#"{"agent":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#[..],
            br#"{"jwks_uri":"https://a.example/jwks.json"}"#,
            br#"{"issuer":"https://a.example","jwks_uri":"https://a.example/jwks.json"}"#,
        ] {
            assert_eq!(legacy_metadata_jwks_uri(ok, id).unwrap(), "https://a.example/jwks.json");
        }
        let other = br#"{"agent":"https://b.example","jwks_uri":"https://a.example/jwks.json"}"#;
        assert_eq!(
            legacy_metadata_jwks_uri(other, id).unwrap_err().signature_code(),
            Some(SignatureErrorCode::IssuerMismatch)
        );
        let cross = br#"{"jwks_uri":"https://b.example/jwks.json"}"#;
        assert!(legacy_metadata_jwks_uri(cross, id).is_err());
    }

    #[test]
    fn duplicate_kids_are_unusable_and_foreign_keys_skipped() {
        let x = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
        let body = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a","alg":"Ed25519"}},{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a","alg":"Ed25519"}},{{"kty":"RSA","n":"x","e":"AQAB","kid":"r"}},{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"b","alg":"Ed25519"}}]}}"#
        );
        let set = KeySet::from_jwks(body.as_bytes(), 32, AlgPolicy::Strict).unwrap();
        assert!(set.get("a").is_none());
        assert!(set.get("r").is_none());
        assert!(set.get("b").is_some());
    }
}
