//! Attack catalogue §1.14: challenges and minting (MINT), our own JWKS, limits (LIM),
//! errors and logging (ERR) and timing (TIM). Timing rows assert the structural property
//! (same answer, no network wait, constant-time comparison), never a duration.

mod support;

use std::collections::HashSet;

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode};
use serde_json::{Value, json};
use support::attack::*;
use tower_aauth::engine::{b64url, b64url_decode};
use tower_aauth::testing::{KeySource, SignOptions, TestIssuer};
use tower_aauth::{AAuth, ResourceKey, wire};

fn claims_of(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&b64url_decode(parts.next().unwrap()).unwrap()).unwrap();
    let payload = serde_json::from_slice(&b64url_decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, payload)
}

fn resource_key() -> ResourceKey {
    ResourceKey::from_seed([7; 32]).with_kid("resource-key-1")
}

// --- MINT: the challenges we sign ----------------------------------------------------------

#[tokio::test]
async fn mint_01_an_unsigned_request_gets_no_resource_token() {
    let h = Harness::new();
    let response = h.send_scoped(get("/data"), &["data.read"]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let requirement = response.headers()[wire::AAUTH_REQUIREMENT].to_str().unwrap();
    assert_eq!(requirement, "requirement=agent-token");
    assert!(
        !requirement.contains("resource-token"),
        "nothing is signed for a stranger"
    );
    assert_eq!(h.aauth.minted_resource_tokens(), 0, "no signing operation");
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn mint_01_an_agent_whose_signature_fails_gets_no_resource_token() {
    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let signature = request.headers()["signature"].to_str().unwrap().replace(":A", ":B");
    let signature = if signature == request.headers()["signature"] {
        signature.replacen(":", ":A", 1)
    } else {
        signature
    };
    request
        .headers_mut()
        .insert("signature", HeaderValue::from_str(&signature).unwrap());
    let headers = h
        .scoped_attack(request, &["data.read"])
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
    assert!(headers.get(wire::AAUTH_REQUIREMENT).is_none());
    assert_eq!(h.aauth.minted_resource_tokens(), 0, "no signing operation");
}

#[tokio::test]
async fn mint_02_minted_resource_tokens_follow_the_fixed_template_with_unique_jtis() {
    let h = Harness::with(|b| b.signing_key(resource_key()));
    let thumbprint = h.agent.thumbprint();
    let mut jtis = HashSet::new();
    const MINTS: usize = 2_000;
    for n in 0..MINTS {
        h.calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let request = h.signed("/data", &KeySource::Hwk);
        let token = h.scoped_attack(request, &["data.read"]).await.challenged();
        let (header, claims) = claims_of(&token);
        if n == 0 {
            assert_eq!(header["typ"], "aa-resource+jwt");
            assert_eq!(header["alg"], "Ed25519");
            assert_eq!(header["kid"], "resource-key-1");
            assert_eq!(claims["iss"], RESOURCE);
            assert_eq!(claims["aud"], AS);
            assert_eq!(claims["agent_jkt"], thumbprint.as_str());
            assert_eq!(claims["scope"], "data.read");
            let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
            assert!(lifetime <= 300, "lifetime {lifetime}");
            // It verifies under our own published key.
            let jwk = resource_key().public_jwk();
            let parsed =
                tower_aauth::engine::UnverifiedJws::parse(&token, tower_aauth::engine::AlgPolicy::Strict).unwrap();
            parsed.verify_with(&jwk).expect("verifies under our JWKS key");
        }
        let jti = claims["jti"].as_str().unwrap().to_owned();
        assert!(
            b64url_decode(&jti).unwrap().len() >= 16,
            "jti carries ≥ 128 random bits"
        );
        assert!(jtis.insert(jti), "jti collision after {n} mints");
    }
    assert_eq!(jtis.len(), MINTS);
}

#[tokio::test]
async fn mint_03_challenges_are_no_store_and_their_resource_token_never_reaches_the_logs() {
    let logs = Logs::capture();
    let h = Harness::new();
    let token = h
        .scoped_attack(h.signed("/data", &KeySource::Hwk), &["data.read"])
        .await
        .challenged();
    logs.assert_clean(&[&token, token.split('.').nth(2).unwrap()]);
}

#[tokio::test]
async fn mint_04_our_jwks_publishes_public_members_only() {
    let aauth = AAuth::builder(RESOURCE).signing_key(resource_key()).build().unwrap();
    let jwks = aauth.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
        assert!(key["kid"].is_string());
        assert_eq!(key["alg"], "Ed25519");
        assert_eq!(key["use"], "sig");
    }
}

#[tokio::test]
async fn mint_04_a_rotated_out_key_stays_published_until_retired() {
    let aauth = AAuth::builder(RESOURCE).signing_key(resource_key()).build().unwrap();
    let next = ResourceKey::from_seed([8; 32]).with_kid("resource-key-2");
    assert!(aauth.stage_signing_key(next.clone()));
    assert!(aauth.rotate(next));
    let kids = |aauth: &AAuth| -> Vec<Value> {
        aauth.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect()
    };
    assert_eq!(aauth.active_kid(), "resource-key-2");
    assert!(
        kids(&aauth).contains(&json!("resource-key-1")),
        "the old key still verifies live tokens"
    );
    assert!(kids(&aauth).contains(&json!("resource-key-2")));
    assert!(aauth.retire_key("resource-key-1"));
    assert_eq!(kids(&aauth), vec![json!("resource-key-2")]);
}

#[tokio::test]
async fn mint_05_a_configured_value_that_would_inject_a_header_is_a_start_up_error() {
    for (name, description) in [
        ("data.read\r\nSet-Cookie: a=b", "Read"),
        ("data.read", "Read\r\nSet-Cookie: a=b"),
    ] {
        let built = AAuth::builder(RESOURCE).scope(name, description).build();
        assert!(built.is_err(), "{name:?} / {description:?} must not build");
    }
    assert!(
        AAuth::builder("https://resource.example\r\nSet-Cookie: a=b")
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn mint_06_debug_output_of_keys_and_configuration_holds_no_key_bytes() {
    let key = resource_key();
    let seed_b64 = b64url([7u8; 32]);
    let debug = format!("{key:?}");
    assert!(!debug.contains(&seed_b64) && !debug.contains("[7, 7"), "{debug}");
    let aauth = AAuth::builder(RESOURCE).signing_key(resource_key()).build().unwrap();
    let debug = format!("{aauth:?}");
    assert!(!debug.contains(&seed_b64) && !debug.contains("7, 7, 7"), "{debug}");
}

// --- LIM: sizes and counts -----------------------------------------------------------------

#[tokio::test]
async fn lim_01_a_9_kib_jwt_is_invalid_jwt_without_a_fetch() {
    let h = Harness::with(|b| b.max_header_bytes(64 * 1024));
    let mut claims = h.auth_claims();
    claims["padding"] = json!("a".repeat(9 * 1024));
    let token = h.access_server.sign("aa-auth+jwt", &claims);
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn lim_02_twenty_five_covered_components_are_invalid_signature() {
    let h = Harness::new();
    let mut request = get("/data");
    let mut options = SignOptions::default();
    for n in 0..21 {
        let name = format!("x-c{n}");
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        options.components.push(name);
    }
    assert_eq!(options.components.len(), 25);
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "too many covered components")
        .await;
}

#[tokio::test]
async fn lim_02_twenty_four_covered_components_are_accepted() {
    let h = Harness::new();
    let mut request = get("/data");
    let mut options = SignOptions::default();
    for n in 0..20 {
        let name = format!("x-c{n}");
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        options.components.push(name);
    }
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request).await.accepted();
}

#[tokio::test]
async fn lim_02_a_signature_input_over_the_header_cap_is_invalid_signature() {
    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let input = request.headers()["signature-input"].to_str().unwrap().to_owned();
    let padded = format!("{input};nonce=\"{}\"", "n".repeat(9 * 1024));
    request
        .headers_mut()
        .insert("signature-input", HeaderValue::from_str(&padded).unwrap());
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn lim_03_a_flood_of_header_lines_is_refused_by_the_server_before_the_layer() {
    let h = Harness::new();
    let mut raw = String::from("GET /data HTTP/1.1\r\nHost: resource.example\r\nConnection: close\r\n");
    for n in 0..101 {
        raw.push_str(&format!("x-flood-{n}: v\r\n"));
    }
    raw.push_str("\r\n");
    let status = raw_exchange(&h, &raw).await;
    assert_eq!(status, "431");
    assert_eq!(h.calls(), 0, "the inner service must not run");
}

#[tokio::test]
async fn lim_04_deeply_nested_json_in_a_token_is_invalid_jwt() {
    let h = Harness::new();
    let mut claims = h.auth_claims().to_string();
    claims.pop();
    let nested = format!("{claims},\"deep\":{}{}}}", "[".repeat(200), "]".repeat(200));
    let token = raw_jwt(
        &json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "as-key-1"}).to_string(),
        &nested,
        h.access_server.key(),
    );
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

// --- ERR: what refusals and logs may say ---------------------------------------------------

/// A battery of hostile requests carrying tokens, keys and attacker strings.
fn battery(h: &Harness) -> (Vec<Request<Body>>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut requests = Vec::new();
    let token = h
        .access_server
        .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW + 10_000);
    secrets.push(token.clone());
    requests.push(h.signed("/data", &KeySource::Jwt(token)));
    let stranger = TestIssuer::new("https://evil.example", [9; 32], "evil\r\nkid");
    let forged = stranger.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    secrets.push(forged.clone());
    requests.push(h.signed("/data", &KeySource::Jwt(forged)));
    let mut bad = h.signed("/data", &KeySource::Hwk);
    let signature = bad.headers()["signature"].to_str().unwrap().to_owned();
    secrets.push(signature.trim_start_matches("sig=:").trim_end_matches(':').to_owned());
    bad.headers_mut().insert(
        "signature-input",
        HeaderValue::from_bytes(b"sig=(\"@method\" \"x\xff\t").unwrap(),
    );
    requests.push(bad);
    let mut injected = h.signed("/data", &KeySource::Hwk);
    injected.headers_mut().insert(
        "signature-key",
        HeaderValue::from_static("sig=jwks_uri;id=\"https://evil.example/\\u000a\";dwk=\"x\";kid=\"\\\"\""),
    );
    requests.push(injected);
    (requests, secrets)
}

#[tokio::test]
async fn err_01_refusal_bodies_are_the_fixed_problem_document() {
    let h = Harness::new();
    let (requests, secrets) = battery(&h);
    for request in requests {
        let response = h.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a refusal echoed its input");
        }
        assert!(!text.contains("evil"), "{text}");
        assert_fixed_problem(&serde_json::from_slice(&body).unwrap());
    }
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn err_02_logs_of_refusals_hold_no_token_signature_or_raw_control_character() {
    let logs = Logs::capture();
    let h = Harness::new();
    let (requests, secrets) = battery(&h);
    for request in requests {
        assert_eq!(h.send(request).await.status(), StatusCode::UNAUTHORIZED);
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    logs.assert_clean(&secrets);
    assert!(!logs.text().contains("evil\r"), "attacker strings are escaped");
}

#[tokio::test]
async fn err_03_the_fuzz_seed_corpora_never_panic_or_500_through_the_layer() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut sent = 0;
    for (directory, header) in [
        ("signature_input", "signature-input"),
        ("signature", "signature"),
        ("signature_key", "signature-key"),
        ("jwt_claims", "signature-key"),
        ("content_digest", "content-digest"),
    ] {
        for entry in std::fs::read_dir(seeds.join(directory)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let h = Harness::new();
            let mut request = h.signed("/data", &KeySource::Hwk);
            let value = if directory == "jwt_claims" {
                format!("sig=jwt;jwt=\"{}\"", String::from_utf8_lossy(&bytes).trim())
            } else {
                String::from_utf8_lossy(&bytes).trim().to_owned()
            };
            let Ok(value) = HeaderValue::from_str(&value) else {
                continue;
            };
            request.headers_mut().insert(header, value);
            let response = h.send(request).await;
            assert!(
                !response.status().is_server_error(),
                "{directory}: {}",
                response.status()
            );
            sent += 1;
        }
    }
    assert!(sent >= 10, "the corpora were found ({sent} seeds)");
}

// --- TIM: timing ------------------------------------------------------------------------------

#[tokio::test]
async fn tim_01_a_remembered_failure_is_answered_alike_and_without_waiting_on_the_network() {
    use tower_aauth::{
        BoxFuture,
        discovery::{Fetch, FetchError, FetchedDocument},
    };
    #[derive(Clone, Default)]
    struct Failing(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Fetch for Failing {
        fn get<'a>(&'a self, _url: &'a str, _max: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Err(FetchError::Status(503)) })
        }
    }
    let fetch = Failing::default();
    let aauth = AAuth::builder(RESOURCE)
        .clock(tower_aauth::testing::ManualClock::new(NOW))
        .fetcher(fetch.clone())
        .build()
        .unwrap();
    let agent = tower_aauth::testing::TestAgent::from_seed([1; 32]).with_kid("k");
    let router = axum::Router::new()
        .fallback(axum::routing::any(|| async { "handler ran" }))
        .layer(aauth.layer());
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut request = get("/data");
        agent.sign(&mut request, &KeySource::agent_jwks("https://down.example", "k"), NOW);
        let response = tower::ServiceExt::oneshot(router.clone(), request).await.unwrap();
        answers.push((response.status(), response.headers()[wire::SIGNATURE_ERROR].clone()));
    }
    assert_eq!(
        fetch.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the failure is remembered"
    );
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
}

#[test]
fn tim_02_thumbprints_are_compared_in_constant_time() {
    use tower_aauth::engine::thumbprints_match;
    let a = "UDDReOZl1ipXAfp9wYsm13sDBMK5og--QWdBjzuf6o4";
    assert!(thumbprints_match(a, a));
    assert!(!thumbprints_match(a, &a.replace('U', "V")));
    assert!(!thumbprints_match(a, &a[..42]));
    // Structural: no security comparison of thumbprints or key hashes uses `==`.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("demo") {
                    stack.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                let compares = line.contains(" == ") || line.contains(" != ");
                let names_key_hash = line.contains("thumbprint") || line.contains("jkt");
                if compares && names_key_hash && !line.starts_with("//") && !line.contains(".len()") {
                    offenders.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "use jose::thumbprints_match: {offenders:#?}");
}
