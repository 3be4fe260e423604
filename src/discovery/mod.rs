//! Finding an issuer's keys: `{issuer}/.well-known/{dwk}` → `jwks_uri` → key by `kid`.
//!
//! The identifiers arrive in unauthenticated requests, so everything here is bounded and
//! admitted before it costs anything:
//!
//! * **Admission** ([`IdentifierPolicy`], then every resolved address): a strict
//!   raw-string grammar (`https://` + lower-case DNS name) before any URL parser or DNS;
//!   every resolved address checked against the special-purpose ranges.
//! * **Fetching** ([`Fetch`], default [`GuardedFetch`] / `ReqwestFetch`): no redirects, no
//!   environment proxies, connections pinned to the vetted addresses, body caps (64 KiB
//!   metadata, 256 KiB JWKS), a 5 s total timeout, JSON content types only, no
//!   decompression. Every failure looks the same to the client (`invalid_key`).
//! * **Caching** ([`DiscoveryResolver`], tuned by [`DiscoveryConfig`]): bounded by entries
//!   and weight; single-flight fetches; `max-age` clamped to [60 s, 24 h]; at most one
//!   refresh per issuer per cooldown for unknown `kid`s; failures cached with backoff;
//!   the last good keys served for a bounded time while an issuer is down; a global
//!   budget of never-seen issuers per minute (over it: `503` + `Retry-After`).
//! * **Observability**: counters through the `metrics` facade (fetches, failures, cache
//!   hits and misses, cooldown and negative hits, stale keys served, budget refusals; see
//!   [`Metric`](crate::Metric)), and `tracing` events for fetches, refreshes, failures,
//!   cooldown hits and budget refusals, with attacker-supplied strings escaped and
//!   truncated.
//!
//! The verifier asks a [`KeyResolver`] twice: first [`KeyResolver::cached`], which must
//! answer from memory without I/O (the hot path stays synchronous and unboxed, and also
//! answers cooldown and negative-cache refusals); only on a miss
//! [`KeyResolver::resolve`], which may fetch.

pub(crate) mod admission;
pub(crate) mod cache;
pub(crate) mod fetch;
pub(crate) mod keyset;
pub(crate) mod resolve;
pub(crate) mod shown;

pub use admission::{AdmittedUrl, IdentifierPolicy};
pub use cache::{DiscoveryConfig, DiscoveryResolver, DiscoveryResolverBuilder};
pub use fetch::{
    Connector, FetchError, FetchPolicy, FetchedDocument, GuardedFetch, NameResolver, PinnedRequest, SystemResolver,
};
#[cfg(feature = "reqwest")]
pub use fetch::{ReqwestConnector, ReqwestFetch};

pub use resolve::{Fetch, KeyQuery, KeyResolver, StaticResolver};
