//! The verified-token cache (its design is documented on [`TokenCacheOptions`](crate::TokenCacheOptions)).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::verified::VerifiedToken;

/// Per-entry cost not visible in the token itself: the 32-byte key, moka's entry and
/// its deque/timer nodes, the `Arc` header. Measured with a counting allocator
/// (`examples/memory.rs`), rounded up.
const ENTRY_OVERHEAD: usize = 1100;

/// Bounds of the verified-token cache, for [`crate::AAuthBuilder::token_cache`]: what makes
/// the steady state cost one Ed25519 verification per request (the HTTP signature) instead
/// of two.
///
///
/// A token whose issuer signature and claims verified is kept under the SHA-256 of its
/// exact bytes. A hit skips the JWS parse, the claim checks and the issuer-key
/// verification; the request's own signature is still verified with the cached
/// `cnf.jwk` (already decompressed, its thumbprint already computed).
///
/// * **Expiry**: each entry lives until the token's `exp` (read from the injected
///   [`Clock`](crate::Clock) when it is inserted) or [`TokenCacheOptions::DEFAULT_MAX_AGE`](crate::TokenCacheOptions::DEFAULT_MAX_AGE), whichever comes first. The
///   verifier also compares `exp` with the clock on every hit, so an entry that moka has
///   not yet evicted is never accepted late.
/// * **Bounds**: the cache is weighed in bytes (an estimate of each entry's heap
///   footprint: strings, claims map and a measured per-entry overhead) and holds at most `max_bytes`. Every entry weighs
///   at least `max_bytes / max_entries`, so the entry count is bounded too. When full,
///   moka's TinyLFU admission keeps the tokens that are actually reused: a flood of
///   one-shot tokens cannot push out the working set.
/// * **Revocation** takes effect on the next request: the layer checks the revocation
///   set after verification on every request, cache hits included.
/// * **Issuer key rotation**: a token verified with a key that the issuer later withdraws
///   stays accepted from the cache until its `exp`, at most the cache's maximum age
///   (default [`TokenCacheOptions::DEFAULT_MAX_AGE`](crate::TokenCacheOptions::DEFAULT_MAX_AGE), five minutes), unless the operator calls
///   [`crate::AAuth::forget_verified_tokens`], which empties it at once.
#[derive(Debug, Clone)]
pub struct TokenCacheOptions {
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Duration,
}

impl Default for TokenCacheOptions {
    fn default() -> Self {
        TokenCacheOptions::new()
    }
}

impl TokenCacheOptions {
    /// The longest a verified token stays cached, whatever its `exp`: bounds how long a
    /// withdrawn issuer key keeps vouching for tokens it signed.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

    /// Default byte budget of the cache (64 MiB: about 19 000 typical auth tokens).
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

    /// The defaults: 100 000 entries, [`TokenCacheOptions::DEFAULT_MAX_BYTES`](crate::TokenCacheOptions::DEFAULT_MAX_BYTES), [`TokenCacheOptions::DEFAULT_MAX_AGE`](crate::TokenCacheOptions::DEFAULT_MAX_AGE).
    pub fn new() -> Self {
        TokenCacheOptions {
            max_entries: 100_000,
            max_bytes: TokenCacheOptions::DEFAULT_MAX_BYTES,
            max_age: TokenCacheOptions::DEFAULT_MAX_AGE,
        }
    }

    /// Bound on the number of verified tokens cached.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// Bound on the cache's estimated memory (default 64 MiB, about 19 000 typical auth
    /// tokens). Whichever of this and [`TokenCacheOptions::max_entries`](crate::TokenCacheOptions::max_entries) is reached first
    /// limits the cache.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The longest a verified token stays cached, whatever its `exp` (default five
    /// minutes): how long an issuer key withdrawn without
    /// [`crate::AAuth::forget_verified_tokens`] keeps vouching for tokens it signed.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }
}

/// A bounded cache of verified tokens, keyed by SHA-256 of the token bytes.
pub(crate) struct TokenCache {
    cache: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

impl TokenCache {
    /// A cache of at most `max_bytes` (estimated) and `max_entries` entries, each
    /// expiring at its token's `exp` by `clock`, or after `max_age`.
    pub(crate) fn new(max_bytes: u64, max_entries: u64, max_age: Duration, clock: Arc<dyn Clock>) -> Self {
        let floor = u32::try_from(max_bytes / max_entries.max(1)).unwrap_or(u32::MAX);
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_: &[u8; 32], token: &Arc<VerifiedToken>| {
                u32::try_from(estimated_bytes(token)).unwrap_or(u32::MAX).max(floor)
            })
            .expire_after(UntilExp { clock, max_age })
            .build();
        TokenCache { cache }
    }

    pub(crate) fn get(&self, hash: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        let found = self.cache.get(hash);
        crate::metrics::token_cache(found.is_some());
        found
    }

    pub(crate) fn insert(&self, hash: [u8; 32], token: Arc<VerifiedToken>) {
        self.cache.insert(hash, token);
    }

    /// Entries currently cached, after applying pending evictions.
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// The sum of the cached entries' weights (estimated bytes), after pending evictions.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }
}

/// moka expiry: at the token's `exp`, capped by the maximum age.
struct UntilExp {
    clock: Arc<dyn Clock>,
    max_age: Duration,
}

impl moka::Expiry<[u8; 32], Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], token: &Arc<VerifiedToken>, _: Instant) -> Option<Duration> {
        let left = token.claims.exp.saturating_sub(self.clock.now());
        Some(Duration::from_secs(left).min(self.max_age))
    }
}

/// An estimate of the heap bytes one cached token holds: the entry overhead, the
/// `VerifiedToken` itself, its strings and the raw claims map.
pub(crate) fn estimated_bytes(token: &VerifiedToken) -> usize {
    let claims = &token.claims;
    let strings = [
        Some(claims.iss.as_str()),
        Some(claims.dwk.as_str()),
        claims.sub.as_deref(),
        claims.aud.as_deref(),
        claims.jti.as_deref(),
        claims.ps.as_deref(),
        claims.agent.as_deref(),
        Some(claims.kid.as_str()),
    ];
    let owned: usize = strings.iter().flatten().map(|s| s.len()).sum::<usize>()
        + claims
            .agent_id
            .as_ref()
            .map_or(0, crate::policy::identity::AgentId::weight);
    let scopes: usize = claims
        .scope
        .iter()
        .map(|s| s.len() + size_of::<String>())
        .sum::<usize>()
        + 16;
    let cnf = claims.cnf.x().len()
        + claims.cnf.kid().map_or(0, str::len)
        + claims.cnf.alg().map_or(0, str::len)
        + claims.cnf.thumbprint_shared().len()
        + 16;
    let raw = map_bytes(&claims.raw) + 16;
    ENTRY_OVERHEAD + size_of::<VerifiedToken>() + 16 + owned + scopes + cnf + raw
}

/// Heap bytes of a JSON value as serde_json stores it (BTreeMap nodes approximated per
/// member).
fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|v| size_of::<Value>() + json_bytes(v)).sum(),
        Value::Object(map) => map_bytes(map),
        _ => 0,
    }
}

fn map_bytes(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    map.iter()
        // Key string, value slot and a share of the B-tree node.
        .map(|(k, v)| k.len() + size_of::<String>() + size_of::<serde_json::Value>() + 16 + json_bytes(v))
        .sum()
}

#[cfg(test)]
mod tests {
    use moka::Expiry;
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::jose::{AlgPolicy, ResourceKey, UnverifiedJws};
    use crate::names;
    use crate::token::TokenPolicy;

    const NOW: u64 = 1_730_217_600;

    fn token(jti: u64, exp: u64) -> Arc<VerifiedToken> {
        let issuer = ResourceKey::from_seed([2; 32]).with_kid("as-1");
        let agent = ResourceKey::from_seed([1; 32]).public_jwk();
        let jwt = issuer.sign_jwt(
            names::typ::AUTH,
            names::alg::ED25519,
            &json!({
                "iss": "https://as.example", "dwk": names::dwk::ACCESS, "aud": "https://resource.example",
                "jti": format!("t-{jti}"), "ps": "https://as.example", "sub": "user-1",
                "cnf": { "jwk": agent.to_json() }, "scope": "data.read", "iat": NOW, "exp": NOW + 600,
            }),
        );
        let mut policy = TokenPolicy::new("https://resource.example");
        policy.access_servers.push("https://as.example".into());
        let jws = UnverifiedJws::parse(&jwt, AlgPolicy::Strict).unwrap();
        let mut claims = policy.check_claims(&jws, NOW).unwrap();
        // Expiry is the cache's business here, not the claim checks'.
        claims.exp = exp;
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&jti.to_le_bytes());
        Arc::new(VerifiedToken { claims, hash })
    }

    fn expiry(max_age: Duration) -> UntilExp {
        UntilExp {
            clock: Arc::new(ManualClock::new(NOW)),
            max_age,
        }
    }

    #[test]
    fn an_entry_expires_at_the_tokens_exp() {
        let lifetime =
            expiry(Duration::from_secs(3600)).expire_after_create(&[0; 32], &token(1, NOW + 90), Instant::now());
        assert_eq!(lifetime, Some(Duration::from_secs(90)));
    }

    #[test]
    fn an_entry_never_outlives_the_maximum_age() {
        let lifetime = expiry(TokenCacheOptions::DEFAULT_MAX_AGE).expire_after_create(
            &[0; 32],
            &token(1, NOW + 86_400),
            Instant::now(),
        );
        assert_eq!(lifetime, Some(TokenCacheOptions::DEFAULT_MAX_AGE));
    }

    #[test]
    fn an_already_expired_token_is_not_kept() {
        let lifetime = expiry(TokenCacheOptions::DEFAULT_MAX_AGE).expire_after_create(
            &[0; 32],
            &token(1, NOW - 1),
            Instant::now(),
        );
        assert_eq!(lifetime, Some(Duration::ZERO));
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let one = estimated_bytes(&token(0, NOW + 600)) as u64;
        let cache = TokenCache::new(
            one * 10,
            1_000_000,
            TokenCacheOptions::DEFAULT_MAX_AGE,
            Arc::new(ManualClock::new(NOW)),
        );
        for jti in 0..100 {
            let token = token(jti, NOW + 600);
            cache.insert(token.hash, token);
        }
        assert!(
            cache.weighted_size() <= one * 10,
            "{} > {}",
            cache.weighted_size(),
            one * 10
        );
        assert!(cache.entry_count() <= 10);
    }

    #[test]
    fn the_entry_bound_holds_under_a_generous_byte_budget() {
        let cache = TokenCache::new(
            TokenCacheOptions::DEFAULT_MAX_BYTES,
            5,
            TokenCacheOptions::DEFAULT_MAX_AGE,
            Arc::new(ManualClock::new(NOW)),
        );
        for jti in 0..50 {
            let token = token(jti, NOW + 600);
            cache.insert(token.hash, token);
        }
        assert!(cache.entry_count() <= 5, "{}", cache.entry_count());
    }

    #[test]
    fn a_typical_auth_token_is_estimated_between_two_and_four_kib() {
        let bytes = estimated_bytes(&token(0, NOW + 600));
        assert!((2048..4096).contains(&bytes), "{bytes}");
    }

    #[test]
    fn clear_empties_the_cache() {
        let cache = TokenCache::new(
            TokenCacheOptions::DEFAULT_MAX_BYTES,
            100,
            TokenCacheOptions::DEFAULT_MAX_AGE,
            Arc::new(ManualClock::new(NOW)),
        );
        let token = token(1, NOW + 600);
        cache.insert(token.hash, token.clone());
        assert!(cache.get(&token.hash).is_some());
        cache.clear();
        assert!(cache.get(&token.hash).is_none());
        assert_eq!(cache.entry_count(), 0);
    }
}
