//! Discovery policy with an in-memory fetcher and a virtual clock: hostile documents,
//! the new-issuer budget, the allow-list and the cache bounds.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::discovery::MapFetch;
use support::metrics::Recorded;
use tower_aauth::discovery::{DiscoveryConfig, DiscoveryResolver, FetchError, KeyQuery, KeyResolver};
use tower_aauth::testing::TestAgent;
use tower_aauth::{Clock, Error, Metric, SignatureErrorCode, testing::ManualClock};

const NOW: u64 = 1_730_217_600;
const DWK: &str = "aauth-agent.json";

fn resolver(fetch: &MapFetch, clock: &ManualClock, config: DiscoveryConfig) -> DiscoveryResolver<MapFetch> {
    DiscoveryResolver::builder(fetch.clone())
        .config(config)
        .clock(Arc::new(clock.clone()) as Arc<dyn Clock>)
        .build()
}

async fn lookup(resolver: &DiscoveryResolver<MapFetch>, issuer: &str, kid: &str) -> Result<String, Error> {
    let query = KeyQuery::new(issuer, DWK, kid);
    let answer = match resolver.cached(&query) {
        Some(answer) => answer,
        None => resolver.resolve(query).await,
    };
    answer.map(|key| key.thumbprint())
}

fn agent() -> TestAgent {
    TestAgent::from_seed([5; 32]).with_kid("k")
}

fn key_json(x: &str, kid: &str) -> serde_json::Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "Ed25519" })
}

/// A JWKS or metadata document that must be refused, and the code the caller sees.
struct Hostile {
    name: &'static str,
    metadata: Option<serde_json::Value>,
    jwks: Option<String>,
    code: SignatureErrorCode,
}

fn hostile_documents(issuer: &str) -> Vec<Hostile> {
    let x = agent().public_jwk().x().to_owned();
    let good = key_json(&x, "k");
    let many =
        |n: usize| json!({ "keys": (0..n).map(|i| key_json(&x, &format!("k{i}"))).collect::<Vec<_>>() }).to_string();
    vec![
        Hostile {
            name: "malformed JSON",
            metadata: None,
            jwks: Some(r#"{"keys":[{"kty":"OKP""#.into()),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "duplicate member names",
            metadata: None,
            jwks: Some(format!(r#"{{"keys":[],"keys":[{good}]}}"#)),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "keys not an array",
            metadata: None,
            jwks: Some(r#"{"keys":{"k":1}}"#.into()),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "10 000 keys",
            metadata: None,
            jwks: Some(many(10_000)),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "33 keys",
            metadata: None,
            jwks: Some(many(33)),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "deep nesting",
            metadata: None,
            jwks: Some(format!(r#"{{"keys":[],"x":{}{}}}"#, "[".repeat(1000), "]".repeat(1000))),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "duplicate kids",
            metadata: None,
            jwks: Some(json!({ "keys": [good, good] }).to_string()),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "another key type under the kid",
            metadata: None,
            jwks: Some(json!({ "keys": [{ "kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k" }] }).to_string()),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "huge x",
            metadata: None,
            jwks: Some(json!({ "keys": [key_json(&"A".repeat(100_000), "k")] }).to_string()),
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "issuer mismatch",
            metadata: Some(json!({ "issuer": "https://other.example", "jwks_uri": format!("{issuer}/jwks") })),
            jwks: None,
            code: SignatureErrorCode::IssuerMismatch,
        },
        Hostile {
            name: "issuer missing",
            metadata: Some(json!({ "jwks_uri": format!("{issuer}/jwks") })),
            jwks: None,
            code: SignatureErrorCode::IssuerMissing,
        },
        Hostile {
            name: "jwks_uri on another origin",
            metadata: Some(json!({ "issuer": issuer, "jwks_uri": "https://evil.example/jwks" })),
            jwks: None,
            code: SignatureErrorCode::InvalidKey,
        },
        Hostile {
            name: "jwks_uri over http",
            metadata: Some(json!({ "issuer": issuer, "jwks_uri": issuer.replace("https", "http") + "/jwks" })),
            jwks: None,
            code: SignatureErrorCode::InvalidKey,
        },
    ]
}

#[tokio::test]
async fn hostile_documents_are_refused_and_negatively_cached() {
    let issuer = "https://issuer.example";
    for case in hostile_documents(issuer) {
        let fetch = MapFetch::default();
        fetch.publish(issuer, DWK, &agent().jwks());
        if let Some(metadata) = &case.metadata {
            fetch.set_json(&format!("{issuer}/.well-known/{DWK}"), metadata);
        }
        if let Some(jwks) = &case.jwks {
            fetch.set(&format!("{issuer}/jwks"), jwks.clone());
        }
        let clock = ManualClock::new(NOW);
        let resolver = resolver(&fetch, &clock, DiscoveryConfig::default());
        for _ in 0..20 {
            let error = lookup(&resolver, issuer, "k").await.unwrap_err();
            assert_eq!(error.signature_code(), Some(case.code), "{}", case.name);
        }
        assert!(fetch.total_calls() <= 2, "{}: refused once, then cached", case.name);
        assert!(resolver.cached_issuers() <= 1, "{}", case.name);
    }
}

#[tokio::test]
async fn a_poisoned_metadata_document_plants_nothing_under_the_claimed_issuer() {
    // CACHE-01: a.example claims to be b.example; b.example's keys are fetched from b.
    let fetch = MapFetch::default();
    let a = "https://a.example";
    let b = "https://b.example";
    fetch.set_json(
        &format!("{a}/.well-known/{DWK}"),
        &json!({ "issuer": b, "jwks_uri": format!("{a}/jwks") }),
    );
    fetch.set_json(&format!("{a}/jwks"), &agent().jwks());
    let real_b = TestAgent::from_seed([6; 32]).with_kid("k");
    fetch.publish(b, DWK, &real_b.jwks());
    let clock = ManualClock::new(NOW);
    let resolver = resolver(&fetch, &clock, DiscoveryConfig::default());
    let error = lookup(&resolver, a, "k").await.unwrap_err();
    assert_eq!(error.signature_code(), Some(SignatureErrorCode::IssuerMismatch));
    assert_eq!(lookup(&resolver, b, "k").await.unwrap(), real_b.thumbprint());
    assert_eq!(fetch.calls(&format!("{b}/.well-known/{DWK}")), 1);
}

#[tokio::test]
async fn the_new_issuer_budget_refuses_with_503_and_retry_after_without_fetching() {
    let recorded = Recorded::new();
    recorded
        .scope(async {
            let fetch = MapFetch::default();
            for i in 0..10 {
                fetch.publish(&format!("https://i{i}.example"), DWK, &agent().jwks());
            }
            let clock = ManualClock::new(NOW);
            let config = {
                let mut config = DiscoveryConfig::default();
                config.new_issuers_per_minute = 3;
                config
            };
            let resolver = resolver(&fetch, &clock, config);
            for i in 0..3 {
                lookup(&resolver, &format!("https://i{i}.example"), "k").await.unwrap();
            }
            let calls = fetch.total_calls();
            for i in 3..10 {
                let error = lookup(&resolver, &format!("https://i{i}.example"), "k")
                    .await
                    .unwrap_err();
                assert!(
                    error.status() == http::StatusCode::SERVICE_UNAVAILABLE
                        && error.retry_after().is_some_and(|seconds| (1..=20).contains(&seconds)),
                    "{error:?}"
                );
                assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(error.signature_code(), None);
            }
            assert_eq!(fetch.total_calls(), calls, "no fetch over budget");
            assert_eq!(recorded.count(Metric::DiscoveryBudgetRefusals.name(), &[]), 7);
            // Known issuers are unaffected, and the budget refills with time.
            lookup(&resolver, "https://i0.example", "k").await.unwrap();
            clock.advance(20);
            lookup(&resolver, "https://i3.example", "k").await.unwrap();
            assert!(lookup(&resolver, "https://i4.example", "k").await.is_err());
        })
        .await;
}

#[tokio::test]
async fn concurrent_cold_requests_for_one_issuer_spend_one_budget_token() {
    let fetch = MapFetch::default();
    fetch.publish("https://one.example", DWK, &agent().jwks());
    fetch.publish("https://two.example", DWK, &agent().jwks());
    let clock = ManualClock::new(NOW);
    let config = {
        let mut config = DiscoveryConfig::default();
        config.new_issuers_per_minute = 2;
        config
    };
    let resolver = resolver(&fetch, &clock, config);
    let lookups = (0..50).map(|_| lookup(&resolver, "https://one.example", "k"));
    for result in futures_join(lookups).await {
        result.unwrap();
    }
    lookup(&resolver, "https://two.example", "k").await.unwrap();
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs = Vec::new();
    // Poll all together: start every future before awaiting any.
    let joined = std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, future) in set.iter_mut().enumerate() {
            if outputs.len() <= i {
                outputs.push(None);
            }
            if outputs[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => outputs[i] = Some(output),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    joined.await;
    outputs.into_iter().map(|o| o.expect("completed")).collect()
}

#[tokio::test]
async fn the_allow_list_refuses_other_issuers_without_fetching_and_skips_the_budget() {
    let fetch = MapFetch::default();
    fetch.publish("https://listed.example", DWK, &agent().jwks());
    fetch.publish("https://other.example", DWK, &agent().jwks());
    let clock = ManualClock::new(NOW);
    let config = {
        let mut config = DiscoveryConfig::default();
        config.allowed_issuers = Some(vec!["https://listed.example".into()]);
        config.new_issuers_per_minute = 0;
        config
    };
    let resolver = resolver(&fetch, &clock, config);
    lookup(&resolver, "https://listed.example", "k").await.unwrap();
    let error = lookup(&resolver, "https://other.example", "k").await.unwrap_err();
    assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidKey));
    assert_eq!(fetch.calls(&format!("https://other.example/.well-known/{DWK}")), 0);
}

#[tokio::test]
async fn the_cache_is_bounded_by_entries_and_weight() {
    let fetch = MapFetch::default();
    for i in 0..500 {
        fetch.publish(&format!("https://i{i}.example"), DWK, &agent().jwks());
    }
    let clock = ManualClock::new(NOW);
    let config = {
        let mut config = DiscoveryConfig::default();
        config.max_entries = 100;
        config.max_weight_bytes = 1 << 20;
        config.new_issuers_per_minute = 1000;
        config
    };
    let resolver = resolver(&fetch, &clock, config);
    for i in 0..500 {
        lookup(&resolver, &format!("https://i{i}.example"), "k").await.unwrap();
    }
    assert!(resolver.cached_issuers() <= 100, "{}", resolver.cached_issuers());
    assert!(resolver.cached_weight() <= 1 << 20);
}

#[tokio::test]
async fn a_transport_failure_is_invalid_key_and_retried_after_the_negative_ttl() {
    let recorded = Recorded::new();
    recorded
        .scope(async {
            let fetch = MapFetch::default();
            let issuer = "https://down.example";
            fetch.fail(&format!("{issuer}/.well-known/{DWK}"), FetchError::Timeout);
            let clock = ManualClock::new(NOW);
            let resolver = resolver(&fetch, &clock, DiscoveryConfig::default());
            for _ in 0..100 {
                let error = lookup(&resolver, issuer, "k").await.unwrap_err();
                assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidKey));
            }
            assert_eq!(fetch.total_calls(), 1);
            assert_eq!(recorded.count(Metric::DiscoveryNegativeHits.name(), &[]), 99);
            fetch.publish(issuer, DWK, &agent().jwks());
            clock.advance(31);
            assert_eq!(lookup(&resolver, issuer, "k").await.unwrap(), agent().thumbprint());
        })
        .await;
}

#[tokio::test]
async fn request_borne_keys_never_enter_the_issuer_cache() {
    // CACHE-05 at the resolver: only documents fetched for (issuer, dwk) create entries;
    // refusals before fetching create none.
    let fetch = MapFetch::default();
    let clock = ManualClock::new(NOW);
    let resolver = resolver(&fetch, &clock, DiscoveryConfig::default());
    for kid in ["a", "b", "c"] {
        let query = KeyQuery::new("https://x.example", "not-a-dwk.json", kid);
        assert!(resolver.resolve(query).await.is_err());
    }
    assert_eq!(resolver.cached_issuers(), 0);
}

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn attacker_supplied_strings_are_escaped_in_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fetch = MapFetch::default();
    fetch.publish("https://a.example", DWK, &agent().jwks());
    let clock = ManualClock::new(NOW);
    let resolver = resolver(&fetch, &clock, DiscoveryConfig::default());
    lookup(&resolver, "https://a.example", "k").await.unwrap();
    let kid = "evil\r\nINFO forged log line";
    assert!(lookup(&resolver, "https://a.example", kid).await.is_err());
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("evil\\r\\nINFO forged"), "{logs}");
    assert!(!logs.contains("\nINFO forged"), "{logs}");
}
