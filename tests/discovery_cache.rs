//! The discovery cache under load and failure (attack catalogue §1.5, §1.6), against a
//! real HTTP issuer on 127.0.0.1 (fetched with the default guarded reqwest fetcher in
//! development mode) and a virtual clock.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::discovery::{Canned, IssuerServer};
use support::metrics::Recorded;
use tower_aauth::discovery::{
    DiscoveryConfig, DiscoveryResolver, IdentifierPolicy, KeyQuery, KeyResolver, ReqwestFetch,
};
use tower_aauth::testing::TestAgent;
use tower_aauth::{Clock, Metric, SignatureErrorCode, testing::ManualClock};

const NOW: u64 = 1_730_217_600;
const DWK: &str = "aauth-agent.json";
const METADATA: &str = "/.well-known/aauth-agent.json";
const JWKS: &str = "/.well-known/jwks.json";

struct Setup {
    server: IssuerServer,
    clock: ManualClock,
    resolver: DiscoveryResolver<ReqwestFetch>,
    agent: TestAgent,
}

async fn setup(config: DiscoveryConfig) -> Setup {
    let server = IssuerServer::start().await;
    let agent = TestAgent::from_seed([7; 32]).with_kid("key-1");
    server.publish(DWK, &agent.jwks());
    let clock = ManualClock::new(NOW);
    let resolver = DiscoveryResolver::builder(ReqwestFetch::allowing_http_loopback())
        .identifiers(IdentifierPolicy::allowing_http_loopback())
        .config(config)
        .clock(Arc::new(clock.clone()) as Arc<dyn Clock>)
        .build();
    Setup {
        server,
        clock,
        resolver,
        agent,
    }
}

impl Setup {
    fn query<'a>(&'a self, kid: &'a str) -> KeyQuery<'a> {
        KeyQuery::new(&self.server.origin, DWK, kid)
    }

    /// `cached()` first, as the verifier does; `resolve()` only on a miss.
    async fn key(&self, kid: &str) -> Result<String, tower_aauth::Error> {
        let query = self.query(kid);
        let key = match self.resolver.cached(&query) {
            Some(answer) => answer,
            None => self.resolver.resolve(query).await,
        };
        key.map(|k| k.thumbprint())
    }

    fn hits(&self) -> (usize, usize) {
        (self.server.hits(METADATA), self.server.hits(JWKS))
    }
}

fn code(result: Result<String, tower_aauth::Error>) -> Option<SignatureErrorCode> {
    result.unwrap_err().signature_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_cold_requests_make_one_metadata_and_one_jwks_fetch() {
    let recorded = Recorded::new();
    let setup = Arc::new(setup(DiscoveryConfig::default()).await);
    // Slow answers keep every request in flight together.
    setup.server.set(
        METADATA,
        Canned::json(&setup.server.metadata()).delayed(Duration::from_millis(200)),
    );
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let setup = setup.clone();
            tokio::spawn(recorded.scope(async move {
                setup
                    .resolver
                    .resolve(setup.query("key-1"))
                    .await
                    .map(|k| k.thumbprint())
            }))
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), setup.agent.thumbprint());
    }
    assert_eq!(setup.hits(), (1, 1));
    let fetches = |document| recorded.count(Metric::DiscoveryFetches.name(), &[("document", document)]);
    assert_eq!((fetches("metadata"), fetches("jwks")), (1, 1));
}

#[tokio::test]
async fn a_cached_key_is_answered_synchronously_without_fetching() {
    let setup = setup(DiscoveryConfig::default()).await;
    assert!(setup.resolver.cached(&setup.query("key-1")).is_none());
    setup.key("key-1").await.unwrap();
    for _ in 0..10 {
        let answer = setup.resolver.cached(&setup.query("key-1")).expect("in memory");
        assert_eq!(answer.unwrap().thumbprint(), setup.agent.thumbprint());
    }
    assert_eq!(setup.hits(), (1, 1));
}

#[tokio::test]
async fn random_unknown_kids_for_sixty_seconds_cause_at_most_one_refresh() {
    let recorded = Recorded::new();
    recorded
        .scope(async {
            let setup = setup(DiscoveryConfig::default()).await;
            setup.key("key-1").await.unwrap();
            for i in 0..1000u64 {
                if i % 17 == 16 {
                    setup.clock.advance(1);
                }
                let kid = format!("random-{}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                assert_eq!(code(setup.key(&kid).await), Some(SignatureErrorCode::UnknownKey));
            }
            assert!(setup.clock.now() - NOW < 60);
            let (_, jwks) = setup.hits();
            assert!(jwks <= 2, "{jwks} JWKS fetches");
            assert!(recorded.count(Metric::DiscoveryCooldownHits.name(), &[]) >= 998);
        })
        .await;
}

#[tokio::test]
async fn unknown_kids_refresh_once_per_cooldown() {
    let config = {
        let mut config = DiscoveryConfig::default();
        config.unknown_kid_cooldown = Duration::from_secs(30);
        config
    };
    let setup = setup(config).await;
    setup.key("key-1").await.unwrap();
    for second in 0..60 {
        for n in 0..5 {
            let kid = format!("unknown-{second}-{n}");
            assert_eq!(code(setup.key(&kid).await), Some(SignatureErrorCode::UnknownKey));
        }
        setup.clock.advance(1);
    }
    // Initial fetch at 0 s, refreshes at 30 s and 60 s would be a third: only 0 and 30.
    assert_eq!(setup.hits().1, 2);
    assert_eq!(setup.hits().0, 1, "metadata is still fresh: only the JWKS is refetched");
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_the_first_request_naming_the_new_kid() {
    let setup = setup(DiscoveryConfig::default()).await;
    setup.key("key-1").await.unwrap();
    setup.clock.advance(61);
    let rotated = TestAgent::from_seed([8; 32]).with_kid("key-2");
    setup.server.set(JWKS, Canned::json(&rotated.jwks()));
    assert_eq!(setup.key("key-2").await.unwrap(), rotated.thumbprint());
    assert_eq!(setup.hits().1, 2);
    // CACHE-06: the removed key is gone after that refresh.
    assert_eq!(code(setup.key("key-1").await), Some(SignatureErrorCode::UnknownKey));
    assert_eq!(setup.hits().1, 2);
}

#[tokio::test]
async fn a_new_kid_within_the_cooldown_is_unknown_without_a_fetch() {
    let setup = setup(DiscoveryConfig::default()).await;
    setup.key("key-1").await.unwrap();
    setup.clock.advance(59);
    let rotated = TestAgent::from_seed([8; 32]).with_kid("key-2");
    setup.server.set(JWKS, Canned::json(&rotated.jwks()));
    assert_eq!(code(setup.key("key-2").await), Some(SignatureErrorCode::UnknownKey));
    assert_eq!(setup.hits().1, 1);
}

fn short_lived(body: &serde_json::Value) -> Canned {
    Canned::json(body).header("cache-control", "max-age=60")
}

#[tokio::test]
async fn a_down_issuer_is_served_from_cache_until_the_stale_limit_then_unknown_key() {
    let recorded = Recorded::new();
    recorded
        .scope(async {
            let config = {
                let mut config = DiscoveryConfig::default();
                config.max_stale = Duration::from_secs(600);
                config
            };
            let setup = setup(config).await;
            setup.server.set(METADATA, short_lived(&setup.server.metadata()));
            setup.server.set(JWKS, short_lived(&setup.agent.jwks()));
            setup.key("key-1").await.unwrap();
            setup.server.set(METADATA, Canned::status(500));
            setup.server.set(JWKS, Canned::status(500));

            setup.clock.advance(61);
            assert_eq!(
                setup.key("key-1").await.unwrap(),
                setup.agent.thumbprint(),
                "stale keys served"
            );
            assert_eq!(setup.hits(), (2, 1), "one failed refresh");
            for _ in 0..50 {
                assert!(setup.key("key-1").await.is_ok());
            }
            assert_eq!(setup.hits(), (2, 1), "the failure is negatively cached");
            assert!(recorded.count(Metric::DiscoveryStaleServed.name(), &[]) >= 51);

            setup.clock.advance(600);
            assert_eq!(code(setup.key("key-1").await), Some(SignatureErrorCode::UnknownKey));
            assert!(setup.hits().0 <= 3);

            // The issuer comes back: keys are fetched again once the backoff has passed.
            setup.server.publish(DWK, &setup.agent.jwks());
            setup.clock.advance(300);
            assert_eq!(setup.key("key-1").await.unwrap(), setup.agent.thumbprint());
        })
        .await;
}

#[tokio::test]
async fn a_failing_issuer_is_fetched_once_per_negative_ttl_with_backoff() {
    let setup = setup(DiscoveryConfig::default()).await;
    setup.server.set(METADATA, Canned::status(500));
    for _ in 0..100 {
        assert_eq!(code(setup.key("key-1").await), Some(SignatureErrorCode::InvalidKey));
    }
    assert_eq!(setup.hits(), (1, 0));
    setup.clock.advance(31);
    assert!(setup.key("key-1").await.is_err());
    assert_eq!(setup.hits().0, 2);
    // Second consecutive failure: 60 s backoff.
    setup.clock.advance(31);
    assert!(setup.key("key-1").await.is_err());
    assert_eq!(setup.hits().0, 2);
    setup.clock.advance(30);
    assert!(setup.key("key-1").await.is_err());
    assert_eq!(setup.hits().0, 3);
}

#[tokio::test]
async fn a_long_max_age_is_clamped_to_the_ceiling() {
    let setup = setup(DiscoveryConfig::default()).await;
    let forever = |body: &serde_json::Value| Canned::json(body).header("cache-control", "max-age=31536000");
    setup.server.set(METADATA, forever(&setup.server.metadata()));
    setup.server.set(JWKS, forever(&setup.agent.jwks()));
    setup.key("key-1").await.unwrap();
    setup.clock.advance(24 * 3600 - 1);
    setup.key("key-1").await.unwrap();
    assert_eq!(setup.hits(), (1, 1));
    setup.clock.advance(2);
    setup.key("key-1").await.unwrap();
    assert_eq!(setup.hits(), (2, 2));
}

#[tokio::test]
async fn no_store_still_caches_for_the_floor() {
    let setup = setup(DiscoveryConfig::default()).await;
    let no_store = |body: &serde_json::Value| Canned::json(body).header("cache-control", "no-store, max-age=0");
    setup.server.set(METADATA, no_store(&setup.server.metadata()));
    setup.server.set(JWKS, no_store(&setup.agent.jwks()));
    setup.key("key-1").await.unwrap();
    setup.clock.advance(59);
    setup.key("key-1").await.unwrap();
    assert_eq!(setup.hits(), (1, 1));
    setup.clock.advance(2);
    setup.key("key-1").await.unwrap();
    assert_eq!(setup.hits(), (2, 2));
}

#[tokio::test]
async fn a_bad_refresh_never_evicts_good_keys() {
    let rotated = TestAgent::from_seed([9; 32]).with_kid("key-1");
    let x = rotated.public_jwk().x().to_owned();
    let bad_documents = [
        Canned::raw("application/json", "{not json"),
        Canned::json(&serde_json::json!({ "keys": "nope" })),
        Canned::json(
            &serde_json::json!({ "keys": [{ "kty": "EC", "crv": "Ed25519", "x": x, "kid": "key-1", "alg": "Ed25519" }] }),
        ),
        Canned::raw("text/html", rotated.jwks().to_string()),
    ];
    for bad in bad_documents {
        let recorded = Recorded::new();
        let setup = setup(DiscoveryConfig::default()).await;
        recorded
            .scope(async {
                setup.key("key-1").await.unwrap();
                setup.server.set(JWKS, bad);
                setup.clock.advance(301);
                assert_eq!(setup.key("key-1").await.unwrap(), setup.agent.thumbprint());
            })
            .await;
        assert_eq!(setup.hits().1, 2, "the refresh happened and was refused");
        assert_eq!(recorded.count(Metric::DiscoveryFailures.name(), &[]), 1);
    }
}
