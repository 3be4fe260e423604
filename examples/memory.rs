//! Memory of the two caches under many distinct keys, measured with a counting global
//! allocator (see docs/performance.md).
//!
//! ```text
//! cargo run --release --example memory -- [tokens] [issuers]   # defaults 100000 100000
//! ```
//!
//! * Verified tokens: `tokens` requests, each with a distinct auth token, through the
//!   layer; first with a budget large enough to hold them all (bytes per entry, measured
//!   and estimated), then with a small budget to show the bound holds.
//! * Discovery: `issuers` distinct issuers resolved through the built-in resolver over an
//!   in-memory fetcher; same two phases.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_aauth::TokenCacheOptions;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, testing::ManualClock};
use tower_aauth::{
    BoxFuture,
    discovery::{
        DiscoveryConfig, DiscoveryResolver, Fetch, FetchError, FetchedDocument, KeyQuery, KeyResolver, StaticResolver,
    },
};

/// Live heap bytes, by the global allocator's own count.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const NOW: u64 = 1_730_217_600;
const RESOURCE: &str = "https://resource.example";
const AS: &str = "https://as.example";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("a count"));
    let tokens = args.next().unwrap_or(100_000);
    let issuers = args.next().unwrap_or(100_000);
    println!("verified-token cache, {tokens} distinct tokens");
    token_phase(tokens, tokens, 1 << 40).await;
    token_phase(tokens, 100_000, 8 << 20).await;
    println!("discovery cache, {issuers} distinct issuers");
    issuer_phase(issuers, issuers, 1 << 40).await;
    issuer_phase(issuers, 10_000, 4 << 20).await;
}

async fn token_phase(count: u64, max_entries: u64, max_bytes: u64) {
    let agent = TestAgent::from_seed([1; 32]);
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    let aauth = AAuth::builder(RESOURCE)
        .clock(ManualClock::new(NOW))
        .key_resolver(StaticResolver::new().with_key(AS, engine::dwk::ACCESS, access_server.public_jwk()))
        .auth_server(AS)
        .token_cache(TokenCacheOptions::new().max_entries(max_entries).max_bytes(max_bytes))
        .build()
        .expect("configuration");
    let router = Router::new()
        .route("/data", axum::routing::get(|| async {}))
        .layer(aauth.layer());
    let before = live();
    for i in 0..count {
        let mut claims = access_server.auth_claims(RESOURCE, &agent.public_jwk(), "data.read", NOW);
        claims["jti"] = format!("memory-{i}").into();
        let token = access_server.sign(engine::typ::AUTH, &claims);
        let mut request = Request::get(format!("{RESOURCE}/data"))
            .body(Body::empty())
            .expect("request");
        agent.sign(&mut request, &KeySource::Jwt(token), NOW);
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let entries = aauth.cached_tokens();
    let after = live();
    let held = after - before;
    println!(
        "  budget {max_entries} entries / {} MiB: {entries} cached, heap +{:.1} MiB, {:.0} B/entry measured, {:.0} B/entry estimated (weight {} B)",
        max_bytes >> 20,
        held as f64 / (1 << 20) as f64,
        held as f64 / entries.max(1) as f64,
        aauth.cached_token_bytes() as f64 / entries.max(1) as f64,
        aauth.cached_token_bytes(),
    );
    drop(router);
    drop(aauth);
}

/// Serves metadata and a one-key JWKS for any `https://iN.example`.
struct AnyIssuer {
    metadata: fn(&str) -> String,
    jwks: Bytes,
}

impl Fetch for AnyIssuer {
    fn get<'a>(&'a self, url: &'a str, _max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        let body = if url.ends_with("/jwks.json") {
            self.jwks.clone()
        } else {
            let issuer = url.split("/.well-known/").next().unwrap_or_default();
            Bytes::from((self.metadata)(issuer))
        };
        Box::pin(async move { Ok(FetchedDocument::new(body)) })
    }
}

async fn issuer_phase(count: u64, max_entries: u64, max_bytes: u64) {
    let key = TestIssuer::new(AS, [2; 32], "k1");
    let fetch = AnyIssuer {
        metadata: |issuer| format!(r#"{{"issuer":"{issuer}","jwks_uri":"{issuer}/jwks.json"}}"#),
        jwks: Bytes::from(key.jwks().to_string()),
    };
    let config = {
        let mut config = DiscoveryConfig::default();
        config.max_entries = max_entries;
        config.max_weight_bytes = max_bytes;
        config.new_issuers_per_minute = u32::MAX;
        config
    };
    let resolver = DiscoveryResolver::builder(Arc::new(fetch))
        .config(config)
        .clock(Arc::new(ManualClock::new(NOW)))
        .build();
    let before = live();
    for i in 0..count {
        let issuer = format!("https://i{i}.example");
        let query = KeyQuery::new(&issuer, engine::dwk::ACCESS, "k1");
        resolver.resolve(query).await.expect("resolves");
    }
    let entries = resolver.cached_issuers();
    let held = live() - before;
    println!(
        "  budget {max_entries} entries / {} MiB: {entries} cached, heap +{:.1} MiB, {:.0} B/entry measured, {:.0} B/entry estimated",
        max_bytes >> 20,
        held as f64 / (1 << 20) as f64,
        held as f64 / entries.max(1) as f64,
        resolver.cached_weight() as f64 / entries.max(1) as f64,
    );
}
