//! Attacks on the Web Bot Auth path (catalogue: `docs/attacks-web-bot-auth.md`). Every
//! refusal asserts its status, its exact `Signature-Error` code, that the handler did not
//! run, and, where a cheap check suffices, that nothing was fetched.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use support::bots::{BotWorld, NOW, assert_bot_refused, get, json_of};
use support::fixtures::{copy, late_body};
use tower_aauth::Clock;
use tower_aauth::bot::WebBotAuthOptions;
use tower_aauth::discovery::DiscoveryConfig;
use tower_aauth::testing::{BotDirectory, BotSignOptions, BotSigner, DirectoryFault};

/// `/bot` signed by the world's signer with `adjust` applied to the default options.
fn signed_with(world: &BotWorld, adjust: impl FnOnce(&mut BotSignOptions)) -> Request<Body> {
    let mut options = BotSignOptions::default();
    adjust(&mut options);
    let mut request = get("/bot");
    world.signer.sign_with(&mut request, NOW, &options);
    request
}

// ---- Directory SSRF -------------------------------------------------------------------

#[tokio::test]
async fn a_signature_agent_naming_a_private_or_unadmitted_origin_is_refused_without_a_fetch() {
    for agent in [
        "https://10.0.0.1",
        "https://169.254.169.254",
        "https://127.0.0.2",
        "http://bots.example",
        "https://metadata",
        "https://bots.example:8443",
        "https://user@bots.example",
        "https://bots.example/other/path",
        "ftp://bots.example",
    ] {
        let world = BotWorld::new().await;
        let mut request = get("/bot");
        BotSigner::new(support::bots::BOT_SEED, agent).sign(&mut request, NOW);
        let response = world.send(request).await;
        assert_bot_refused(&world, response, "invalid_key").await;
        assert_eq!(world.fetches(), 0, "{agent}: refused before any fetch");
    }
}

#[tokio::test]
async fn a_loopback_directory_is_refused_without_the_loopback_fence() {
    let directory = BotDirectory::spawn([42; 32]).await.unwrap();
    let app = support::app::App::with(|b| {
        b.person_server(support::fixtures::PS)
            .web_bot_auth(WebBotAuthOptions::new())
    });
    let mut request = get("/agent");
    directory.signer().sign(&mut request, NOW);
    let response = app.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_key");
    assert_eq!(app.calls(), 0);
    assert_eq!(directory.requests(), 0);
}

#[tokio::test]
async fn a_redirecting_directory_is_not_followed() {
    let world = BotWorld::new().await;
    let elsewhere = BotDirectory::spawn([42; 32]).await.unwrap();
    world.directory.set_fault(DirectoryFault::Redirect(format!(
        "{}/.well-known/http-message-signatures-directory",
        elsewhere.origin()
    )));
    let response = world.send(world.signed("/bot")).await;
    assert_bot_refused(&world, response, "invalid_key").await;
    assert_eq!(elsewhere.requests(), 0, "the redirect was not followed");
}

#[tokio::test]
async fn a_directory_answering_other_than_200_is_refused() {
    for status in [201, 204, 304, 404, 500] {
        let world = BotWorld::new().await;
        world.directory.set_fault(DirectoryFault::Status(status));
        let response = world.send(world.signed("/bot")).await;
        assert_bot_refused(&world, response, "invalid_key").await;
    }
}

#[tokio::test]
async fn a_directory_of_another_media_type_is_refused() {
    for content_type in ["application/json", "application/jwk-set+json", "text/html"] {
        let world = BotWorld::new().await;
        world
            .directory
            .set_fault(DirectoryFault::ContentType(content_type.to_owned()));
        let response = world.send(world.signed("/bot")).await;
        assert_bot_refused(&world, response, "invalid_key").await;
    }
}

#[tokio::test]
async fn a_slow_directory_is_cut_at_the_fetch_timeout() {
    let world = BotWorld::new().await;
    world.directory.set_fault(DirectoryFault::Delay(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let response = world.send(world.signed("/bot")).await;
    assert!(started.elapsed() < Duration::from_secs(3), "the 1 s timeout applies");
    assert_bot_refused(&world, response, "invalid_key").await;
}

#[tokio::test]
async fn a_huge_directory_is_refused_at_the_body_cap() {
    let world = BotWorld::new().await;
    let padding = "x".repeat(300 * 1024);
    let body = format!(r#"{{"keys":[],"padding":"{padding}"}}"#);
    world.directory.set_fault(DirectoryFault::Body(body.into_bytes()));
    let response = world.send(world.signed("/bot")).await;
    assert_bot_refused(&world, response, "invalid_key").await;
}

#[tokio::test]
async fn hostile_directory_json_is_refused_and_never_a_5xx() {
    let deep = format!(r#"{{"keys":{}{}}}"#, "[".repeat(5000), "]".repeat(5000));
    for body in [
        b"not json".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        br#"{"keys":{"kty":"OKP"}}"#.to_vec(),
        br#"{"keys":[1,"two",null,{"kty":"OKP","crv":"Ed25519","x":"!!"}]}"#.to_vec(),
        br#"[]"#.to_vec(),
        deep.into_bytes(),
    ] {
        let world = BotWorld::new().await;
        world.directory.set_fault(DirectoryFault::Body(body));
        let response = world.send(world.signed("/bot")).await;
        assert_bot_refused(&world, response, "invalid_key").await;
    }
}

#[tokio::test]
async fn an_unsigned_directory_is_refused() {
    let world = BotWorld::new().await;
    world.directory.set_fault(DirectoryFault::Unsigned);
    let response = world.send(world.signed("/bot")).await;
    assert_bot_refused(&world, response, "invalid_key").await;
}

#[tokio::test]
async fn a_failed_directory_is_not_fetched_again_until_its_retry_time() {
    let world = BotWorld::new().await;
    world.directory.set_fault(DirectoryFault::Status(500));
    assert_bot_refused(&world, world.send(world.signed("/bot")).await, "invalid_key").await;
    world.directory.set_fault(DirectoryFault::None);
    assert_bot_refused(&world, world.send(world.signed("/bot")).await, "invalid_key").await;
    assert_eq!(world.directory.requests(), 1, "the failure is remembered");
    world.app.clock.advance(59);
    assert_bot_refused(&world, world.send(world.signed("/bot")).await, "invalid_key").await;
    assert_eq!(
        world.directory.requests(),
        1,
        "never sooner than the once-a-minute floor"
    );
    world.app.clock.advance(2);
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    assert_eq!(world.directory.requests(), 2);
}

// ---- Key confusion between directories ------------------------------------------------

#[tokio::test]
async fn a_directory_listing_another_partys_key_does_not_vouch_for_it() {
    let world = BotWorld::new().await;
    let victim = BotSigner::new([7; 32], world.directory.origin());
    world.directory.list_foreign_key(victim.public_jwk());
    let mut request = get("/bot");
    victim.sign(&mut request, NOW);
    let response = world.send(request).await;
    assert_bot_refused(&world, response, "unknown_key").await;
}

#[tokio::test]
async fn a_key_of_one_directory_is_not_accepted_under_another() {
    let world = BotWorld::new().await;
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    let other = BotDirectory::spawn_with_clock([9; 32], std::sync::Arc::new(world.app.clock.clone()))
        .await
        .unwrap();
    // The world's key, cached for its own directory, claimed for another one.
    let mut request = get("/bot");
    BotSigner::new(support::bots::BOT_SEED, other.origin()).sign(&mut request, NOW);
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=unknown_key");
    assert_eq!(world.calls(), 1, "only the first, honest request was served");
    assert_eq!(other.requests(), 1, "the other directory was asked, not the cache");
}

#[tokio::test]
async fn an_unknown_thumbprint_refetches_at_most_once_a_minute() {
    let world = BotWorld::new().await;
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    let stranger = BotSigner::new([8; 32], world.directory.origin());
    for _ in 0..3 {
        let mut request = get("/bot");
        stranger.sign(&mut request, NOW);
        let response = world.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["signature-error"], "error=unknown_key");
    }
    assert_eq!(world.directory.requests(), 1, "within the floor nothing is refetched");
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_removed_key_stops_being_accepted_once_the_directory_is_refetched() {
    let world = BotWorld::new().await;
    world.directory.set_max_age(60);
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    world.directory.add_key([44; 32]);
    world.directory.remove_key(&world.signer.thumbprint());
    world.app.clock.advance(61);
    let response = world.send(world.signed("/bot")).await;
    assert_eq!(response.headers()["signature-error"], "error=unknown_key");
    assert_eq!(world.calls(), 1);
}

// ---- Reuse ------------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_request_is_429_signature_reused() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let replay = copy(&request);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    let response = world.send(replay).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(json_of(response).await["error"], "signature_reused");
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_nonce_is_remembered_for_the_whole_accepted_lifetime() {
    let world = BotWorld::new().await;
    let mut first = get("/bot");
    world
        .signer
        .clone()
        .lifetime(3600)
        .sign_with(&mut first, NOW, &nonce("n-1"));
    let replay = copy(&first);
    assert_eq!(world.send(first).await.status(), StatusCode::OK);
    world.app.clock.advance(3000);
    let response = world.send(replay).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_nonce_is_refused_when_required_and_absent() {
    let world = BotWorld::with(WebBotAuthOptions::new().require_nonce(true), |b| b).await;
    let request = signed_with(&world, |o| o.nonce = Some(None));
    assert_bot_refused(&world, world.send(request).await, "invalid_signature").await;
    assert_eq!(world.fetches(), 0);
}

fn nonce(value: &str) -> BotSignOptions {
    let mut options = BotSignOptions::default();
    options.nonce = Some(Some(value.to_owned()));
    options
}

// ---- Missing coverage -------------------------------------------------------------------

#[tokio::test]
async fn a_signature_not_covering_what_the_protocol_requires_is_invalid_input() {
    let cases: &[(&str, &[&str])] = &[
        ("no @authority", &[r#""signature-agent";key="agent1""#]),
        ("no signature-agent", &[r#""@authority""#]),
        (
            "signature-agent re-serialised",
            &[r#""@authority""#, r#""signature-agent";sf"#],
        ),
        (
            "signature-agent twice",
            &[
                r#""@authority""#,
                r#""signature-agent";key="agent1""#,
                r#""signature-agent";key="agent2""#,
            ],
        ),
        ("only @path", &[r#""@path""#]),
    ];
    for (case, components) in cases {
        let world = BotWorld::new().await;
        let request = signed_with(&world, |o| {
            o.components = Some(components.iter().map(|c| (*c).to_owned()).collect());
            o.signature_agent = Some(format!(r#"agent1="{0}", agent2="{0}""#, world.directory.origin()));
        });
        let response = world.send(request).await;
        assert_bot_refused(&world, response, "invalid_input").await;
        assert_eq!(world.fetches(), 0, "{case}: refused without a fetch");
    }
}

#[tokio::test]
async fn target_uri_coverage_stands_for_authority() {
    let world = BotWorld::new().await;
    let request = signed_with(&world, |o| {
        o.components = Some(vec![
            r#""@target-uri""#.to_owned(),
            r#""signature-agent";key="agent1""#.to_owned(),
        ]);
    });
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_covered_signature_agent_that_is_absent_is_refused() {
    let world = BotWorld::new().await;
    let mut request = world.signed("/bot");
    request.headers_mut().remove("signature-agent");
    let response = world.send(request).await;
    assert_bot_refused(&world, response, "invalid_input").await;
    assert_eq!(world.fetches(), 0);
}

#[tokio::test]
async fn a_signature_agent_that_is_not_a_dictionary_is_refused_without_a_fetch() {
    for value in [
        r#""https://bots.example""#,
        "https://bots.example",
        r#"agent1=?1"#,
        r#"agent2="https://bots.example""#,
    ] {
        let world = BotWorld::new().await;
        let mut request = world.signed("/bot");
        request.headers_mut().insert("signature-agent", value.parse().unwrap());
        let response = world.send(request).await;
        assert_bot_refused(&world, response, "invalid_signature").await;
        assert_eq!(world.fetches(), 0, "{value}");
    }
}

#[tokio::test]
async fn a_swapped_signature_agent_member_breaks_the_signature() {
    let world = BotWorld::new().await;
    let other = BotDirectory::spawn_with_clock([42; 32], std::sync::Arc::new(world.app.clock.clone()))
        .await
        .unwrap();
    let mut request = world.signed("/bot");
    let swapped = format!(r#"agent1="{}""#, other.origin());
    request
        .headers_mut()
        .insert("signature-agent", swapped.parse().unwrap());
    let response = world.send(request).await;
    assert_bot_refused(&world, response, "invalid_signature").await;
}

#[tokio::test]
async fn a_tampered_request_is_refused() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let mut tampered = copy(&request);
    *tampered.uri_mut() = format!("{}/bot", "https://other.example").parse().unwrap();
    let response = world.send(tampered).await;
    assert_bot_refused(&world, response, "invalid_signature").await;
    let mut retargeted = get("/bot-name");
    *retargeted.headers_mut() = request.headers().clone();
    let response = world.send(retargeted).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "@path is not covered: another path of the same authority"
    );
}

// ---- Lifetime ---------------------------------------------------------------------------

#[tokio::test]
async fn signature_times_outside_the_rules_are_refused_without_a_fetch() {
    let cases: [(&str, Option<u64>); 4] = [
        ("no expires", None),
        ("expired", Some(NOW)),
        ("expires before created", Some(NOW - 10)),
        ("longer than an hour", Some(NOW + 3601)),
    ];
    for (case, expires) in cases {
        let world = BotWorld::new().await;
        let request = signed_with(&world, |o| match expires {
            None => o.send_expires = false,
            Some(expires) => o.expires = Some(expires),
        });
        let response = world.send(request).await;
        assert_bot_refused(&world, response, "invalid_signature").await;
        assert_eq!(world.fetches(), 0, "{case}");
    }
}

#[tokio::test]
async fn a_signature_created_in_the_future_is_clock_skew() {
    let world = BotWorld::new().await;
    let mut request = get("/bot");
    world.signer.sign(&mut request, NOW + 120);
    assert_bot_refused(&world, world.send(request).await, "clock_skew").await;
}

#[tokio::test]
async fn the_maximum_lifetime_is_configurable() {
    let world = BotWorld::with(WebBotAuthOptions::new().max_lifetime(Duration::from_secs(60)), |b| b).await;
    let request = signed_with(&world, |o| o.expires = Some(NOW + 61));
    assert_bot_refused(&world, world.send(request).await, "invalid_signature").await;
}

#[tokio::test]
async fn a_signature_past_its_expiry_is_refused_after_being_accepted() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let later = copy(&request);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    world.app.clock.advance(300);
    assert_bot_refused_after_first(&world, world.send(later).await).await;
}

async fn assert_bot_refused_after_first(world: &BotWorld, response: http::Response<Body>) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(world.calls(), 1);
}

// ---- keyid, alg ----------------------------------------------------------------------

#[tokio::test]
async fn a_keyid_of_the_wrong_shape_is_refused_without_a_fetch() {
    for keyid in [
        "",
        "short",
        &"A".repeat(44),
        &format!("{}=", "A".repeat(42)),
        "kid-1/../../x",
    ] {
        let world = BotWorld::new().await;
        let keyid = keyid.to_owned();
        let request = signed_with(&world, |o| o.keyid = Some(keyid.clone()));
        assert_bot_refused(&world, world.send(request).await, "invalid_signature").await;
        assert_eq!(world.fetches(), 0, "{keyid}");
    }
}

#[tokio::test]
async fn a_keyid_naming_another_key_of_the_directory_fails_the_signature() {
    let world = BotWorld::new().await;
    world.directory.add_key([45; 32]);
    let other = BotSigner::new([45; 32], world.directory.origin()).thumbprint();
    let request = signed_with(&world, |o| o.keyid = Some(other.clone()));
    assert_bot_refused(&world, world.send(request).await, "invalid_signature").await;
}

#[tokio::test]
async fn an_algorithm_other_than_ed25519_is_refused() {
    for alg in ["rsa-pss-sha512", "ecdsa-p256-sha256", "hmac-sha256"] {
        let world = BotWorld::new().await;
        let request = signed_with(&world, |o| o.alg = Some(alg.to_owned()));
        let response = world.send(request).await;
        assert_eq!(response.headers()["accept-signature-alg"], "Ed25519");
        assert_bot_refused(&world, response, "unsupported_algorithm").await;
        assert_eq!(world.fetches(), 0);
    }
}

#[tokio::test]
async fn a_signature_without_alg_is_accepted() {
    let world = BotWorld::new().await;
    let request = signed_with(&world, |o| o.alg = None);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
}

// ---- Dispatch -------------------------------------------------------------------------

#[tokio::test]
async fn a_signature_with_another_tag_stays_on_the_aauth_path() {
    let world = BotWorld::new().await;
    let request = signed_with(&world, |o| o.tag = "not-web-bot-auth".to_owned());
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(world.calls(), 0);
    assert_eq!(world.fetches(), 0);
}

#[tokio::test]
async fn garbage_signature_fields_are_never_a_5xx() {
    let world = BotWorld::new().await;
    for (input, signature) in [
        (r#"sig1=("@authority");tag="web-bot-auth""#, "sig1=:AAAA:"),
        (r#"sig1=();created=1;expires=2;tag="web-bot-auth""#, "sig1=:AAAA:"),
        (
            r#"sig1=("@authority" "signature-agent";key="agent1");created=1730217600;expires=1730217900;keyid="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";tag="web-bot-auth""#,
            "sig2=:AAAA:",
        ),
        (
            r#"sig1=("@authority" "signature-agent";key="agent1");created=1730217600;expires=1730217900;keyid="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";tag="web-bot-auth""#,
            "sig1=?1",
        ),
    ] {
        let mut request = get("/bot");
        request.headers_mut().insert("signature-input", input.parse().unwrap());
        request.headers_mut().insert("signature", signature.parse().unwrap());
        request.headers_mut().insert(
            "signature-agent",
            format!(r#"agent1="{}""#, world.directory.origin()).parse().unwrap(),
        );
        let response = world.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{input}");
        assert!(response.headers().contains_key("signature-error"), "{input}");
    }
    assert_eq!(world.calls(), 0);
    assert_eq!(world.fetches(), 0);
}

// ---- Body integrity ---------------------------------------------------------------------

/// `"@authority"`, the `Signature-Agent` member, `@method`, `@path` and `content-digest`.
fn with_digest(options: &mut BotSignOptions) {
    options.components = Some(
        [
            r#""@authority""#,
            r#""signature-agent";key="agent1""#,
            r#""@method""#,
            r#""@path""#,
            r#""content-digest""#,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
}

/// RFC 9530 Appendix D: `{"hello": "world"}` and its SHA-256 `Content-Digest`.
const HELLO: &[u8] = br#"{"hello": "world"}"#;
const HELLO_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";

/// A `POST /bot` whose signature covers a `Content-Digest` of `HELLO`, carrying `body`.
fn digest_post(world: &BotWorld, body: &'static [u8]) -> Request<Body> {
    let mut request = world.signed_post("/bot", body, |_| {});
    request
        .headers_mut()
        .insert("content-digest", http::HeaderValue::from_static(HELLO_SHA256));
    let mut options = BotSignOptions::default();
    with_digest(&mut options);
    world.signer.sign_with(&mut request, NOW, &options);
    request
}

#[tokio::test]
async fn a_body_matching_its_covered_content_digest_is_served() {
    let world = BotWorld::new().await;
    let response = world.send(digest_post(&world, HELLO)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_swapped_body_under_a_covered_content_digest_is_refused_with_the_key_cached() {
    let world = BotWorld::new().await;
    // The directory's key is cached: the warm path must check the body too.
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    world.app.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let response = world.send(digest_post(&world, br#"{"hello": "mallory"}"#)).await;
    assert_bot_refused(&world, response, "invalid_signature").await;
    assert_eq!(world.fetches(), 1, "the cached key served");
}

#[tokio::test]
async fn a_swapped_body_under_a_covered_content_digest_is_refused_on_a_cold_cache() {
    let world = BotWorld::new().await;
    let response = world.send(digest_post(&world, br#"{"hello": "mallory"}"#)).await;
    assert_bot_refused(&world, response, "invalid_signature").await;
}

#[tokio::test]
async fn a_body_over_the_cap_under_a_covered_content_digest_is_413() {
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| b.max_body_bytes(8)).await;
    let response = world.send(digest_post(&world, HELLO)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(world.calls(), 0);
}

// ---- Binding on replay-protected methods ------------------------------------------------

#[tokio::test]
async fn a_nonceless_signature_on_a_protected_method_must_cover_method_and_path() {
    let world = BotWorld::new().await;
    let request = world.signed_post("/bot", b"", |o| o.nonce = Some(None));
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@path")"#
    );
    assert_eq!(json_of(response).await["error"], "invalid_input");
    assert_eq!(world.calls(), 0);
    assert_eq!(world.fetches(), 0, "refused before any fetch");
}

#[tokio::test]
async fn a_nonceless_signature_on_a_protected_method_is_served_when_it_binds_the_request() {
    for bound in [[r#""@method""#, r#""@path""#], [r#""@method""#, r#""@target-uri""#]] {
        let world = BotWorld::new().await;
        let request = world.signed_post("/bot", b"", |o| {
            o.nonce = Some(None);
            let mut components = vec![
                r#""@authority""#.to_owned(),
                r#""signature-agent";key="agent1""#.to_owned(),
            ];
            components.extend(bound.map(str::to_owned));
            o.components = Some(components);
        });
        assert_eq!(world.send(request).await.status(), StatusCode::OK, "{bound:?}");
        assert_eq!(world.calls(), 1);
    }
}

#[tokio::test]
async fn a_signature_with_a_nonce_on_a_protected_method_needs_no_method_or_path() {
    let world = BotWorld::new().await;
    let request = world.signed_post("/bot", b"", |_| {});
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_nonceless_get_is_served_for_attribution_only() {
    let world = BotWorld::new().await;
    let request = signed_with(&world, |o| o.nonce = Some(None));
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn under_the_loopback_fence_only_http_127_0_0_1_with_a_port_is_fetched() {
    let world = BotWorld::new().await;
    let port = world.directory.origin().rsplit(':').next().unwrap().to_owned();
    for agent in [
        format!("http://localhost:{port}"),
        format!("https://localhost:{port}"),
        format!("http://[::1]:{port}"),
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1".to_owned(),
    ] {
        let mut request = get("/bot");
        BotSigner::new(support::bots::BOT_SEED, agent.clone()).sign(&mut request, NOW);
        let response = world.send(request).await;
        assert_bot_refused(&world, response, "invalid_key").await;
        assert_eq!(world.fetches(), 0, "{agent}: refused before any fetch");
    }
}

// ---- A failing directory ----------------------------------------------------------------

/// `/bot` signed now by the world's signer (the clock may have moved).
fn signed_now(world: &BotWorld) -> Request<Body> {
    let mut request = get("/bot");
    world.signer.sign(&mut request, world.app.clock.now());
    request
}

fn discovery(adjust: impl FnOnce(&mut DiscoveryConfig)) -> DiscoveryConfig {
    let mut config = DiscoveryConfig::default();
    adjust(&mut config);
    config
}

#[tokio::test]
async fn a_failing_directory_backs_off_doubling_up_to_the_ceiling() {
    let config = discovery(|c| {
        c.negative_ttl = Duration::from_secs(60);
        c.max_negative_ttl = Duration::from_secs(240);
    });
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| b.discovery(config)).await;
    world.directory.set_fault(DirectoryFault::Status(500));
    // Failures at t = 0, 60, 180, 420, 660: waits of 60, 120, 240, then the ceiling.
    let mut at = 0;
    for (wait, fetches) in [(0, 1), (60, 2), (120, 3), (240, 4), (240, 5)] {
        // One second short of the retry time, nothing is fetched.
        if wait > 0 {
            world.app.clock.set(NOW + at + wait - 1);
            assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
            assert_eq!(world.fetches(), fetches - 1, "before t = {}", at + wait);
        }
        at += wait;
        world.app.clock.set(NOW + at);
        assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
        assert_eq!(world.fetches(), fetches, "at t = {at}");
    }
}

#[tokio::test]
async fn a_refetch_after_a_failure_draws_on_the_new_origin_budget() {
    let config = discovery(|c| c.new_issuers_per_minute = 1);
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| b.discovery(config)).await;
    world.directory.set_fault(DirectoryFault::Status(500));
    assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
    world.app.clock.advance(60 - 1);
    world.directory.set_fault(DirectoryFault::None);
    // The retry time has not come: answered from memory, nothing charged.
    assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
    world.app.clock.advance(1);
    // Retry time, and the bucket holds a full token again: refetched.
    assert_eq!(world.send(signed_now(&world)).await.status(), StatusCode::OK);
    assert_eq!(world.fetches(), 2);

    // Failing again with an empty bucket: the refetch waits for the budget.
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| {
        b.discovery(discovery(|c| {
            c.new_issuers_per_minute = 1;
            c.negative_ttl = Duration::from_secs(30);
            c.min_ttl = Duration::from_secs(30);
        }))
    })
    .await;
    world.directory.set_fault(DirectoryFault::Status(500));
    assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
    world.app.clock.advance(30);
    let response = world.send(signed_now(&world)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30", "half a token is back in 30 s");
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(world.calls(), 0);
    assert_eq!(world.fetches(), 1, "not refetched over the budget");
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_previous_keys_until_they_would_go_stale() {
    let config = discovery(|c| c.max_stale = Duration::from_secs(100));
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| b.discovery(config)).await;
    world.directory.set_max_age(60);
    assert_eq!(world.send(signed_now(&world)).await.status(), StatusCode::OK);
    world.directory.set_fault(DirectoryFault::Status(500));
    world.app.clock.advance(61);
    assert_eq!(
        world.send(signed_now(&world)).await.status(),
        StatusCode::OK,
        "stale key served"
    );
    assert_eq!(world.fetches(), 2, "the refetch was tried");
    assert_eq!(world.calls(), 2);
    world.app.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    // Past freshness (60 s) plus max_stale (100 s): the key can no longer be confirmed.
    world.app.clock.set(NOW + 161);
    assert_bot_refused(&world, world.send(signed_now(&world)).await, "invalid_key").await;
}

#[tokio::test]
async fn a_flood_of_bot_nonces_on_safe_methods_leaves_the_replay_store_to_aauth() {
    use tower_aauth::replay::{MemoryReplayStore, ReplayOptions};
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| {
        b.replay(ReplayOptions::new().store(MemoryReplayStore::new(2)))
    })
    .await;
    for n in 0..5 {
        assert_eq!(
            world.send(world.signed("/bot")).await.status(),
            StatusCode::OK,
            "bot {n}"
        );
    }
    for n in 0..2 {
        assert_eq!(aauth_post(&world, NOW - n).await, StatusCode::OK, "AAuth request {n}");
    }
    assert_eq!(world.calls(), 7);
}

/// An AAuth (`hwk`) signed `POST /data` made at `created`, through the world's layer:
/// its status. A protected method, so its signature goes to the layer's replay store.
async fn aauth_post(world: &BotWorld, created: u64) -> StatusCode {
    let router = axum::Router::new()
        .route("/data", axum::routing::post(world.app.handler()))
        .layer(world.app.aauth.layer());
    let mut request = Request::post(format!("{}/data", support::bots::RESOURCE))
        .body(Body::empty())
        .unwrap();
    world
        .app
        .agent
        .sign(&mut request, &tower_aauth::testing::KeySource::Hwk, created);
    tower::ServiceExt::oneshot(router, request).await.unwrap().status()
}

#[tokio::test]
async fn a_full_bot_nonce_store_refuses_new_bot_nonces_with_503_and_nobody_else() {
    let world = BotWorld::with(WebBotAuthOptions::new().nonce_capacity(2), |b| b).await;
    for n in 0..2 {
        assert_eq!(
            world.send(world.signed("/bot")).await.status(),
            StatusCode::OK,
            "bot {n}"
        );
    }
    let response = world.send(world.signed("/bot")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(world.calls(), 2, "the third bot was not served");
    // A signature without a nonce needs no entry, and AAuth requests have their own store.
    let mut without_nonce = tower_aauth::testing::BotSignOptions::default();
    without_nonce.nonce = Some(None);
    let mut request = Request::get(format!("{}/bot", support::bots::RESOURCE))
        .body(Body::empty())
        .unwrap();
    world.signer.sign_with(&mut request, NOW, &without_nonce);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    assert_eq!(aauth_post(&world, NOW).await, StatusCode::OK);
    assert_eq!(world.calls(), 4);
}

/// The same headers on another method: a Web Bot Auth signature covering only
/// `@authority` and `Signature-Agent` is valid on any method and path.
fn as_method(request: &Request<Body>, method: http::Method) -> Request<Body> {
    let mut again = copy(request);
    *again.method_mut() = method;
    again
}

#[tokio::test]
async fn a_bot_filling_the_nonce_store_leaves_other_bots_protected_methods_served() {
    let world = BotWorld::with(WebBotAuthOptions::new().nonce_capacity(2), |b| b).await;
    let first = world.signed("/bot");
    let first_again = as_method(&first, http::Method::POST);
    assert_eq!(world.send(first).await.status(), StatusCode::OK);
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    // Another bot, while the bots' store is full: its POST is judged by the layer's store.
    let other = BotDirectory::spawn_with_clock([7; 32], std::sync::Arc::new(world.app.clock.clone()))
        .await
        .unwrap();
    let mut post = Request::post(format!("{}/bot", support::bots::RESOURCE))
        .body(Body::empty())
        .unwrap();
    other.signer().sign(&mut post, NOW);
    let replay = copy(&post);
    assert_eq!(world.send(post).await.status(), StatusCode::OK);
    assert_eq!(world.send(replay).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // A nonce the full store holds is still refused on a protected method.
    assert_eq!(world.send(first_again).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(world.calls(), 3);
}

#[tokio::test]
async fn with_shared_nonces_a_get_used_on_one_replica_is_refused_on_another_whatever_the_method() {
    use tower_aauth::replay::{MemoryReplayStore, ReplayOptions, ReplayStore};
    let shared: std::sync::Arc<dyn ReplayStore> = std::sync::Arc::new(MemoryReplayStore::new(1000));
    let replica = |store: std::sync::Arc<dyn ReplayStore>| {
        BotWorld::with(WebBotAuthOptions::new().shared_nonces(true), move |b| {
            b.replay(ReplayOptions::new().shared_store(store))
        })
    };
    let (one, two) = (replica(shared.clone()).await, replica(shared).await);
    let get = one.signed("/bot");
    let (as_post, as_get) = (as_method(&get, http::Method::POST), copy(&get));
    assert_eq!(one.send(get).await.status(), StatusCode::OK);
    assert_eq!(two.send(as_post).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(two.send(as_get).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(two.calls(), 0, "the other replica served no copy");
}

#[tokio::test]
async fn a_nonce_used_on_one_method_is_refused_on_any_other() {
    use http::Method;
    for (first, again) in [
        (Method::GET, Method::POST),
        (Method::POST, Method::GET),
        (Method::GET, Method::DELETE),
    ] {
        let world = BotWorld::new().await;
        let request = as_method(&world.signed("/bot"), first.clone());
        let replay = as_method(&request, again.clone());
        assert_eq!(world.send(request).await.status(), StatusCode::OK, "{first}");
        let response = world.send(replay).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{first} then {again}");
        assert!(response.headers().get("signature-error").is_none());
        assert_eq!(json_of(response).await["error"], "signature_reused");
        assert_eq!(world.calls(), 1, "{first} then {again}: the replay was not served");
    }
}

#[tokio::test]
async fn a_bot_refused_by_a_guard_on_a_protected_method_holds_no_nonce_entry() {
    let world = BotWorld::with(WebBotAuthOptions::new().nonce_capacity(1), |b| b).await;
    let router = axum::Router::new()
        .route(
            "/agent",
            axum::routing::post(world.app.handler()).route_layer(world.app.aauth.require_agent_token()),
        )
        .layer(world.app.aauth.layer());
    for _ in 0..3 {
        let refused = as_method(&world.signed("/agent"), http::Method::POST);
        let response = tower::ServiceExt::oneshot(router.clone(), refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(world.calls(), 0);
    // The refused requests gave their entries back: the one slot is free for a bot served.
    assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_nonce_on_a_safe_method_is_still_refused_the_second_time() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let replay = copy(&request);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    assert_eq!(world.send(replay).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_copy_whose_body_arrives_after_the_signature_expired_is_refused() {
    let world = BotWorld::with(WebBotAuthOptions::new(), |b| b.max_clock_skew(0)).await;
    let mut original = Request::post(format!("{}/bot", support::bots::RESOURCE))
        .body(Body::from(HELLO))
        .unwrap();
    original
        .headers_mut()
        .insert("content-digest", http::HeaderValue::from_static(HELLO_SHA256));
    let mut options = BotSignOptions::default();
    with_digest(&mut options);
    // The entry lives expires - now + skew + 1 = 2 s.
    options.expires = Some(NOW + 1);
    world.signer.sign_with(&mut original, NOW, &options);
    let headers = original.headers().clone();
    assert_eq!(world.send(original).await.status(), StatusCode::OK);
    // Accepted by the head (the signature is still valid on arrival), its body trickled in
    // past the first use's entry: the signature's time is checked again before the store.
    let mut replay = Request::post(format!("{}/bot", support::bots::RESOURCE))
        .body(late_body(
            world.app.clock.clone(),
            Duration::from_millis(2200),
            3,
            HELLO,
        ))
        .unwrap();
    *replay.headers_mut() = headers;
    let response = world.send(replay).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(world.calls(), 1, "the copy was not served");
}
