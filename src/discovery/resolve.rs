//! The extension points of discovery: [`KeyResolver`] (what the layer asks for a key),
//! [`Fetch`] (how a document is fetched), the [`KeyQuery`] they are asked with, and a
//! [`StaticResolver`] for keys known in advance.

use std::collections::HashMap;
use std::sync::Arc;

use super::fetch::{FetchError, FetchedDocument};
use crate::error::{Error, SignatureErrorCode};
use crate::future::BoxFuture;
use crate::jose::Jwk;

/// Which key to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyQuery<'a> {
    /// The issuer's server identifier (`iss`, or the `jwks_uri` scheme's `id`).
    pub issuer: &'a str,
    /// The well-known document name.
    pub dwk: &'a str,
    /// The key id.
    pub kid: &'a str,
}

impl<'a> KeyQuery<'a> {
    /// The key `kid` of `issuer`, published through its well-known document `dwk`.
    pub fn new(issuer: &'a str, dwk: &'a str, kid: &'a str) -> Self {
        KeyQuery { issuer, dwk, kid }
    }
}

/// Resolves an issuer's verification key.
pub trait KeyResolver: Send + Sync + 'static {
    /// Answers from memory, without I/O: `None` when a fetch is needed.
    fn cached(&self, query: &KeyQuery<'_>) -> Option<Result<Arc<Jwk>, Error>>;

    /// Finds the key, fetching metadata and JWKS as needed.
    fn resolve<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Result<Arc<Jwk>, Error>>;

    /// The key `query` names failed to verify a token although its `kid` matched: the
    /// issuer may have re-keyed under the same `kid` ([AAuth draft -11, "JWKS Discovery
    /// and Caching"][draft-11]). Fetches the issuer's keys again, unless they were fetched
    /// less than the refresh floor ago, and answers the key now published under that
    /// `kid` (`unknown_key` once it is gone). `None`: nothing was fetched, and the
    /// failure stands. The default fetches nothing.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    fn refetch<'a>(&'a self, query: KeyQuery<'a>) -> BoxFuture<'a, Option<Result<Arc<Jwk>, Error>>> {
        let _ = query;
        Box::pin(std::future::ready(None))
    }
}

/// Fetches a document over HTTP(S). Implement it to bring your own client (TLS roots,
/// mTLS, an egress proxy); the default is [`ReqwestFetch`](crate::discovery::ReqwestFetch).
pub trait Fetch: Send + Sync + 'static {
    /// GETs `url`, refusing bodies over `max_bytes`.
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>>;
}

impl<F: Fetch + ?Sized> Fetch for Arc<F> {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        (**self).get(url, max_bytes)
    }
}

/// The well-known document names a signer may point at.
pub fn is_known_dwk(dwk: &str) -> bool {
    use crate::names::dwk::*;
    matches!(dwk, AGENT | PERSON | ACCESS | RESOURCE)
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
    use crate::jose::ResourceKey;

    fn query<'a>(issuer: &'a str, kid: &'a str) -> KeyQuery<'a> {
        KeyQuery {
            issuer,
            dwk: crate::names::dwk::ACCESS,
            kid,
        }
    }

    #[test]
    fn a_static_resolver_answers_from_memory_by_issuer_dwk_and_kid() {
        let key = ResourceKey::from_seed([9; 32]).with_kid("k1").public_jwk();
        let resolver = StaticResolver::new().with_key("https://as.example", crate::names::dwk::ACCESS, key.clone());
        let hit = resolver.cached(&query("https://as.example", "k1")).unwrap().unwrap();
        assert_eq!(*hit, key);
        for (issuer, kid) in [("https://as.example", "k2"), ("https://other.example", "k1")] {
            let miss = resolver.cached(&query(issuer, kid)).unwrap().unwrap_err();
            assert_eq!(miss.signature_code(), Some(SignatureErrorCode::UnknownKey));
        }
        let other_dwk = KeyQuery {
            dwk: crate::names::dwk::AGENT,
            ..query("https://as.example", "k1")
        };
        assert!(resolver.cached(&other_dwk).unwrap().is_err());
    }
}
