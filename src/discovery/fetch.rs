//! The HTTP side of discovery: the guarded fetcher.
//!
//! # Design
//!
//! [`GuardedFetch`] is three steps, each replaceable for tests or deployments:
//!
//! 1. **Admission** of the raw URL ([`super::admission::admit_url`]): scheme, host grammar,
//!    no port, no userinfo. Numeric-host tricks never reach a resolver.
//! 2. **Resolution** through a [`NameResolver`] (default: the system resolver), then a check
//!    of *every* resolved address ([`super::admission::is_public_address`]). One refused
//!    address refuses the name.
//! 3. **Connection** through a [`Connector`] that receives only the vetted socket
//!    addresses. The default [`ReqwestConnector`] builds a client whose DNS resolver
//!    answers with those addresses and nothing else, so there is no second lookup for a
//!    rebinding attacker to win. It follows no redirects, reads no proxy from the
//!    environment, does not decompress, caps the body while streaming it and checks the
//!    content type.
//!
//! The whole fetch (resolution included) runs under one total timeout.
//!
//! A deployment that needs its own TLS roots, mTLS or an egress proxy implements
//! [`super::Fetch`] directly, or a [`Connector`] to keep steps 1–2.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use super::admission::{admit_url, is_public_address};
use super::shown::Shown;
use crate::error::Error;
use crate::future::BoxFuture;

/// A fetched document: [`FetchedDocument::new`], with [`FetchedDocument::max_age`] when the
/// server sent a caching hint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchedDocument {
    /// The body, at most the requested number of bytes.
    pub body: Bytes,
    /// `Cache-Control: max-age`, when the server sent one (`no-store`/`no-cache` read as 0).
    pub max_age: Option<u64>,
    /// The response fields a document's reader may check beyond the body: `Content-Type`,
    /// and `Signature-Input` / `Signature` of a signed response (a Web Bot Auth key
    /// directory, [`crate::bot`]), each at most 8 KiB. Empty when the fetcher keeps none.
    pub headers: http::HeaderMap,
}

impl FetchedDocument {
    /// The same document, with the server's `Cache-Control: max-age` (seconds).
    pub fn with_max_age(mut self, seconds: u64) -> Self {
        self.max_age = Some(seconds);
        self
    }

    /// A document with no caching hint.
    pub fn new(body: impl Into<Bytes>) -> Self {
        FetchedDocument {
            body: body.into(),
            max_age: None,
            headers: http::HeaderMap::new(),
        }
    }

    /// The same document, with the response fields its reader checks (see
    /// [`FetchedDocument::headers`]).
    pub fn with_headers(mut self, headers: http::HeaderMap) -> Self {
        self.headers = headers;
        self
    }
}

/// Why a fetch failed. Never shown to clients: every variant becomes the same
/// `invalid_key` answer, so failures cannot be told apart from outside (no port-scanning
/// oracle).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL or the address it resolved to is not admitted.
    #[error("destination refused by egress policy")]
    Refused,
    /// Name resolution failed.
    #[error("name resolution failed")]
    Resolution,
    /// Connection, TLS or protocol failure.
    #[error("transport failure")]
    Transport,
    /// The total time limit passed.
    #[error("timed out")]
    Timeout,
    /// A status other than 200 (redirects included: they are never followed).
    #[error("unexpected status {0}")]
    Status(u16),
    /// The body exceeded the cap.
    #[error("response too large")]
    TooLarge,
    /// The content type is not JSON, or the body is content-encoded.
    #[error("unexpected content type or encoding")]
    ContentType,
}

impl FetchError {
    /// The client-facing error: one generic `invalid_key` for every cause.
    pub fn into_error(self) -> Error {
        Error::invalid_key("the signer's keys could not be fetched")
    }
}

/// Parses the cache lifetime out of a `Cache-Control` value: `max-age`, or 0 for
/// `no-store`/`no-cache` (the cache clamps it to its floor anyway).
#[cfg(any(test, feature = "reqwest"))]
pub(crate) fn max_age(cache_control: &str) -> Option<u64> {
    let mut found = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache") {
            return Some(0);
        }
        if let Some((name, value)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            found = value.trim().trim_matches('"').parse().ok().or(found);
        }
    }
    found
}

/// Resolves a host name to addresses. Inject one to control DNS (tests, split-horizon
/// deployments); the default is [`SystemResolver`].
pub trait NameResolver: Send + Sync + 'static {
    /// All addresses of `host` (a DNS name that passed admission).
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, FetchError>>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, FetchError>> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host, 0))
                .await
                .map_err(|_| FetchError::Resolution)?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// One GET, with its destination already vetted.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PinnedRequest<'a> {
    /// The URL, as admitted.
    pub url: &'a str,
    /// The URL's host.
    pub host: &'a str,
    /// The only addresses the connection may go to.
    pub addresses: &'a [SocketAddr],
    /// The body cap.
    pub max_bytes: usize,
    /// The time left for the whole request.
    pub timeout: Duration,
    /// Whether plain http is acceptable (loopback in development mode only).
    pub allow_http: bool,
}

/// Performs a vetted GET. Implement it to keep admission and address checks while
/// bringing your own HTTP client; the default is [`ReqwestConnector`].
pub trait Connector: Send + Sync + 'static {
    /// GETs `request.url`, connecting only to `request.addresses`.
    fn get<'a>(&'a self, request: PinnedRequest<'a>) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;
}

/// Settings of a [`GuardedFetch`]. Start from [`FetchPolicy::default`] and set the fields to
/// change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchPolicy {
    /// Admit http (and loopback addresses) for literal loopback origins (development only).
    pub allow_http_loopback: bool,
    /// Total time for one fetch, resolution included (default 5 s).
    pub timeout: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_http_loopback: false,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The default [`super::Fetch`]: URL admission, resolution with every address checked,
/// then a connection pinned to the checked addresses (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardedFetch<R, C> {
    resolver: R,
    connector: C,
    policy: FetchPolicy,
}

impl<R: NameResolver, C: Connector> GuardedFetch<R, C> {
    /// A fetcher over an injected resolver and connector.
    pub fn with_parts(resolver: R, connector: C, policy: FetchPolicy) -> Self {
        GuardedFetch {
            resolver,
            connector,
            policy,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    async fn fetch(&self, url: &str, max_bytes: usize) -> Result<FetchedDocument, FetchError> {
        let Some(admitted) = admit_url(url, self.policy.allow_http_loopback) else {
            tracing::debug!(url = %Shown(url), "discovery: URL refused before resolution");
            return Err(FetchError::Refused);
        };
        let addresses = match admitted.fixed_addresses {
            Some(addresses) => addresses,
            None => self.resolver.resolve(&admitted.host).await?,
        };
        if addresses.is_empty() {
            return Err(FetchError::Resolution);
        }
        if let Some(bad) = addresses
            .iter()
            .find(|ip| !(is_public_address(**ip) || (admitted.loopback && ip.is_loopback())))
        {
            tracing::warn!(host = %Shown(&admitted.host), address = %bad, "discovery: resolved address refused");
            return Err(FetchError::Refused);
        }
        let addresses: Vec<SocketAddr> = addresses
            .into_iter()
            .map(|ip| SocketAddr::new(ip, admitted.port))
            .collect();
        self.connector
            .get(PinnedRequest {
                url,
                host: &admitted.host,
                addresses: &addresses,
                max_bytes,
                timeout: self.policy.timeout,
                allow_http: admitted.loopback,
            })
            .await
    }
}

impl<R: NameResolver, C: Connector> super::resolve::Fetch for GuardedFetch<R, C> {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            tokio::time::timeout(self.policy.timeout, self.fetch(url, max_bytes))
                .await
                .unwrap_or(Err(FetchError::Timeout))
        })
    }
}

/// The default guarded fetcher: system resolver, reqwest connector.
#[cfg(feature = "reqwest")]
pub type ReqwestFetch = GuardedFetch<SystemResolver, ReqwestConnector>;

#[cfg(feature = "reqwest")]
impl GuardedFetch<SystemResolver, ReqwestConnector> {
    /// Default limits: https only, public addresses only, 5 s in total.
    pub fn new() -> Self {
        Self::with_policy(FetchPolicy::default())
    }

    /// Also admits http and loopback addresses for literal loopback origins
    /// (`http://127.0.0.1:PORT`, `http://localhost:PORT`, `http://[::1]:PORT`), for local
    /// development; every other destination is refused exactly as by [`Self::new`].
    pub fn allowing_http_loopback() -> Self {
        Self::with_policy(FetchPolicy {
            allow_http_loopback: true,
            ..FetchPolicy::default()
        })
    }

    /// With an explicit policy.
    pub fn with_policy(policy: FetchPolicy) -> Self {
        Self::with_parts(SystemResolver, ReqwestConnector, policy)
    }
}

#[cfg(feature = "reqwest")]
impl Default for GuardedFetch<SystemResolver, ReqwestConnector> {
    fn default() -> Self {
        Self::new()
    }
}

/// The default [`Connector`]: `reqwest` with rustls and the web PKI roots.
#[cfg(feature = "reqwest")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ReqwestConnector;

/// A reqwest DNS resolver that knows one name and answers it with the vetted addresses.
#[cfg(feature = "reqwest")]
struct PinnedResolve {
    host: String,
    addresses: Vec<SocketAddr>,
}

#[cfg(feature = "reqwest")]
impl reqwest::dns::Resolve for PinnedResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer: Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if name.as_str() == self.host {
                Ok(Box::new(self.addresses.clone().into_iter()))
            } else {
                Err("name not vetted by discovery".into())
            };
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(feature = "reqwest")]
impl Connector for ReqwestConnector {
    fn get<'a>(&'a self, request: PinnedRequest<'a>) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            // One client per fetch: its resolver knows only this fetch's vetted addresses.
            // Fetches are rare (cached, cooled down, budgeted), so the build cost is noise.
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .https_only(!request.allow_http)
                .dns_resolver(std::sync::Arc::new(PinnedResolve {
                    host: request.host.to_owned(),
                    addresses: request.addresses.to_vec(),
                }))
                .pool_max_idle_per_host(0)
                .connect_timeout(Duration::from_secs(2).min(request.timeout))
                .timeout(request.timeout)
                .user_agent(concat!("tower-aauth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|_| FetchError::Transport)?;
            let transport = |e: reqwest::Error| {
                if e.is_timeout() {
                    FetchError::Timeout
                } else {
                    FetchError::Transport
                }
            };
            let mut response = client
                .get(request.url)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::ACCEPT_ENCODING, "identity")
                .send()
                .await
                .map_err(transport)?;
            let document = read_checked(
                response.status(),
                response.headers(),
                response.content_length(),
                request.max_bytes,
            )?;
            let kept = kept_headers(response.headers());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > request.max_bytes {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchedDocument {
                body: Bytes::from(body),
                max_age: document,
                headers: kept,
            })
        })
    }
}

/// The response fields a reader may check (see [`FetchedDocument::headers`]), each kept
/// only when it is at most 8 KiB.
#[cfg(feature = "reqwest")]
fn kept_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    const KEPT: [&str; 3] = ["content-type", "signature-input", "signature"];
    const MAX_FIELD_BYTES: usize = 8 * 1024;
    let mut kept = http::HeaderMap::new();
    for name in KEPT {
        let mut total = 0;
        for value in headers.get_all(name) {
            total += value.len();
            if total > MAX_FIELD_BYTES {
                kept.remove(name);
                break;
            }
            kept.append(http::HeaderName::from_static(name), value.clone());
        }
    }
    kept
}

/// Status, content type, encoding and declared length checks; returns the `max-age`.
#[cfg(feature = "reqwest")]
fn read_checked(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    content_length: Option<u64>,
    max_bytes: usize,
) -> Result<Option<u64>, FetchError> {
    if status != http::StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    let header = |name| headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
    let essence = header(http::header::CONTENT_TYPE)
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !(essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))) {
        return Err(FetchError::ContentType);
    }
    // Never decompress: a compressed body would bypass the cap on what we hold in memory.
    if header(http::header::CONTENT_ENCODING).is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Err(FetchError::ContentType);
    }
    if content_length.is_some_and(|len| len > max_bytes as u64) {
        return Err(FetchError::TooLarge);
    }
    Ok(header(http::header::CACHE_CONTROL).and_then(max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lifetime_is_read() {
        assert_eq!(max_age("public, max-age=300"), Some(300));
        assert_eq!(max_age("max-age=\"60\""), Some(60));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("max-age=300, no-cache"), Some(0));
        assert_eq!(max_age("public"), None);
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn a_guarded_fetch_reports_the_policy_it_was_built_with() {
        let policy = FetchPolicy {
            allow_http_loopback: true,
            timeout: Duration::from_millis(1500),
        };
        let fetch = GuardedFetch::with_parts(SystemResolver, ReqwestConnector, policy);
        assert!(fetch.policy().allow_http_loopback);
        assert_eq!(fetch.policy().timeout, Duration::from_millis(1500));
        assert!(!GuardedFetch::new().policy().allow_http_loopback);
    }

    #[cfg(feature = "reqwest")]
    #[tokio::test]
    async fn the_pinned_resolver_answers_only_the_vetted_name_with_the_vetted_addresses() {
        use reqwest::dns::Resolve;
        let vetted: SocketAddr = "203.0.113.7:443".parse().unwrap();
        let resolver = PinnedResolve {
            host: "issuer.example".to_owned(),
            addresses: vec![vetted],
        };
        let answered: Vec<SocketAddr> = resolver
            .resolve("issuer.example".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(answered, vec![vetted]);
        assert!(resolver.resolve("other.example".parse().unwrap()).await.is_err());
    }
}
