//! Replay protection: remember each accepted signature for as long as it could be
//! accepted again, and refuse the second use.
//!
//! # Design
//!
//! AAuth defines no nonce; the `created` window bounds replay in time and this module
//! closes the window itself (attack catalogue RPL-05…07, digest §1.5):
//!
//! * **What is remembered.** A [`ReplayKey`]: SHA-256 over a domain tag, the thumbprint of
//!   the key that verified the request and the exact signature base. Never the `Signature`
//!   bytes or text: base64 padding bits and alphabets (we accept both) and, for ECDSA,
//!   `(r, n−s)` give several valid encodings of one signature (RPL-06). The base covers
//!   `@signature-params`, so `created`, the label and the covered list are all in the key.
//! * **When.** Only after the signature (and any token) verified: an attacker cannot fill
//!   the store with garbage, and a forged request cannot burn a legitimate one's slot.
//! * **Which methods.** By default the unsafe ones (`POST`, `PUT`, `PATCH`, `DELETE`, and
//!   any method that is not `GET`/`HEAD`/`OPTIONS`/`TRACE`); [`ReplayProtection::AllMethods`]
//!   extends it to every request. A second use is `401 invalid_signature`.
//! * **How long.** Signature window + allowed clock skew: a signature is accepted from
//!   `created − skew` to `created + window`, so no entry can be needed for longer.
//! * **Failing closed.** A store that cannot answer ([`MemoryReplayStore`] full,
//!   [`RedisReplayStore`] unreachable) yields [`Error::Unavailable`]: `503` with
//!   `Retry-After`; the request is not served unprotected. Nothing is cached about the
//!   failure, so service resumes as soon as the store answers again.
//!
//! The [`ReplayStore`] trait has a synchronous [`ReplayStore::try_insert`] so that the
//! in-memory store keeps the layer's no-allocation fast path; a networked store answers
//! `None` there and is awaited through [`ReplayStore::insert`].
//!
//! The same stores back single-use grants: a [`ReplayKey::jti`] key consumes an auth
//! token's `(iss, jti)` once (RPL-16: only on routes that ask for it; an auth token is
//! otherwise presented on every request for its lifetime).

mod memory;
#[cfg(feature = "redis")]
mod redis_store;
pub mod single_use;

use std::time::Duration;

use http::Method;
use sha2::{Digest, Sha256};

pub use crate::discovery::BoxFuture;
use crate::error::Error;
pub use memory::MemoryReplayStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{RedisReplayStore, RedisReplayStoreBuilder};
pub use single_use::{GRANT_USED, GuardFuture, SingleUse, SingleUseLayer};

/// What a [`ReplayStore`] remembers: a 32-byte hash, never the signature or token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

impl ReplayKey {
    /// The key for a verified request signature: SHA-256 over a domain tag, the
    /// verifying key's thumbprint and the signature base.
    pub fn signature(key_thumbprint: &str, signature_base: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-aauth/replay/signature\0");
        hash.update(key_thumbprint.as_bytes());
        hash.update([0]);
        hash.update(signature_base);
        ReplayKey(hash.finalize().into())
    }

    /// The key consuming a token's `(iss, jti)` (single-use grants).
    pub fn jti(issuer: &str, jti: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-aauth/replay/jti\0");
        hash.update(issuer.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        ReplayKey(hash.finalize().into())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the hash (64 characters), as the Redis store names its keys.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }
}

/// The outcome of an insert-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// The key was not present and is now remembered: serve the request.
    First,
    /// The key was already present: a replay.
    Repeat,
}

/// Insert-once storage with a time to live.
///
/// Implementations must be atomic: of any number of concurrent inserts of one key, exactly
/// one answers [`Insertion::First`]. They must answer [`Error::Unavailable`] when they
/// cannot decide (full, unreachable), never [`Insertion::First`] by default.
pub trait ReplayStore: Send + Sync + 'static {
    /// Decides without I/O when the store can; `None` sends the caller to
    /// [`ReplayStore::insert`]. The default always answers `None`.
    fn try_insert(&self, key: &ReplayKey, ttl: Duration) -> Option<Result<Insertion, Error>> {
        let _ = (key, ttl);
        None
    }

    /// Remembers `key` for `ttl` unless it is already remembered.
    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>>;
}

/// Which requests the layer checks for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplayProtection {
    /// No replay cache; only the `created` window bounds replay.
    Off,
    /// Every method except `GET`, `HEAD`, `OPTIONS` and `TRACE` (the default).
    #[default]
    UnsafeMethods,
    /// Every request.
    AllMethods,
}

impl ReplayProtection {
    /// Whether a request with `method` is checked.
    pub fn covers(self, method: &Method) -> bool {
        match self {
            ReplayProtection::Off => false,
            ReplayProtection::AllMethods => true,
            ReplayProtection::UnsafeMethods => !is_safe(method),
        }
    }
}

/// RFC 9110 §9.2.1 safe methods.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The refusal for a second use of a signature.
pub(crate) const REPLAYED: Error = Error::invalid_signature("the signature was already used");

/// The refusal for a store that cannot answer.
pub(crate) fn unavailable(detail: &'static str) -> Error {
    Error::Unavailable { retry_after: 1, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_keys_depend_on_thumbprint_and_base() {
        let a = ReplayKey::signature("thumb-a", b"base");
        assert_eq!(a, ReplayKey::signature("thumb-a", b"base"));
        assert_ne!(a, ReplayKey::signature("thumb-b", b"base"));
        assert_ne!(a, ReplayKey::signature("thumb-a", b"base2"));
        // The separator keeps the thumbprint/base boundary unambiguous.
        assert_ne!(ReplayKey::signature("ab", b"c"), ReplayKey::signature("a", b"bc"));
    }

    #[test]
    fn jti_keys_are_separate_from_signature_keys() {
        assert_ne!(ReplayKey::jti("iss", "x"), ReplayKey::signature("iss", b"x"));
        assert_ne!(ReplayKey::jti("https://a", "1"), ReplayKey::jti("https://b", "1"));
    }

    #[test]
    fn unsafe_methods_are_covered_by_default() {
        let default = ReplayProtection::default();
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(default.covers(&method), "{method}");
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!default.covers(&method), "{method}");
            assert!(ReplayProtection::AllMethods.covers(&method));
        }
        assert!(!ReplayProtection::Off.covers(&Method::POST));
    }

    #[test]
    fn hex_is_lower_case_and_64_chars() {
        let hex = ReplayKey::jti("i", "j").to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
