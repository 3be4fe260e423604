//! Attack catalogue §1.15 — policy: whose identity, whose authority, what capacity.
//!
//! One test per row, named by its ID. Each refusal asserts the status, the exact
//! `Signature-Error` code where there is one, and that the handler did not run.

mod attack_support;

#[allow(unused_imports)]
use attack_support::*;

// === POL-01 … POL-05: identity, binding, ceilings, consent ===
// (section: identity)

// === POL-06: replay capacity ===
// (section: replay)

// === POL-07 … POL-11: exemptions, coverage, minting, caches, legacy lifetime ===
// (section: hardening)

/// An agent token for the harness's agent, from its agent provider.
fn pol_agent_token(h: &Harness) -> String {
    h.agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW)
}

/// The claims of a resource token in a challenge.
fn pol_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&tower_aauth::jose::b64url_decode(payload).expect("base64url")).expect("JSON claims")
}

#[tokio::test]
async fn pol_07_nothing_under_the_pending_prefix_skips_the_default_requirement_while_no_pending_router_is_mounted() {
    use http::StatusCode;
    use tower_aauth::Requirement;
    for path in [
        "/aauth/pending/x/../../admin",
        "/aauth/pending/%2e%2e/%2e%2e/admin",
        "/aauth/pending/%2E%2E/admin",
        // The exact shape of an issued id, but nothing serves pending URLs.
        "/aauth/pending/AAAAAAAAAAAAAAAAAAAAAA",
        "/aauth/pending/",
    ] {
        let h = Harness::with(|b| b.default_requirement(Requirement::Agent));
        let headers = h.attack(get(path)).await.refused_with_status(StatusCode::UNAUTHORIZED);
        assert_eq!(requirement_of(&headers), "requirement=agent-token", "{path}");
    }
}

#[tokio::test]
async fn pol_07_a_mounted_pending_router_exempts_exactly_the_ids_it_issues() {
    use http::StatusCode;
    use tower_aauth::Requirement;
    use tower_aauth::testing::KeySource;
    // The default requirement asks for an auth token: an agent-token poll reaches the
    // pending router only if its URL is exempt (then `404`, the id is unknown).
    let id = "A".repeat(22);
    for (path, exempt) in [
        (format!("/aauth/pending/{id}"), true),
        (format!("/aauth/pending/{id}/"), false),
        (format!("/aauth/pending/{id}/../../../admin"), false),
        (format!("/aauth/pending/{}%41", &id[..20]), false),
        ("/aauth/pending/x/../../admin".to_owned(), false),
        ("/aauth/pending/%2e%2e/admin".to_owned(), false),
        (format!("/aauth/pending/{}", &id[1..]), false),
        (format!("/aauth/pending/{id}A"), false),
    ] {
        let h = Harness::with(|b| b.default_requirement(Requirement::scopes(["data.write"])));
        let request = h.signed(&path, &KeySource::Jwt(pol_agent_token(&h)));
        let response = send_routed(&h, h.aauth.pending_router(), request).await;
        if exempt {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(h.calls(), 0);
        } else {
            Attack::from_response(&h, response).challenged();
        }
    }
}

#[tokio::test]
async fn pol_08_required_signature_key_coverage_means_the_member_the_signature_uses() {
    use tower_aauth::testing::KeySource;
    let h0 = Harness::new();
    let token = h0
        .access_server
        .auth_token(RESOURCE, &h0.agent.public_jwk(), "data.read", NOW);
    // The token sits in the member the label selects; a decoy member is what gets covered.
    let decoy = h0.agent.signature_key_value(&KeySource::Hwk, "other");
    let signature_key = format!(r#"sig=jwt;jwt="{token}", {decoy}"#);
    for (coverage, refused) in [
        (r#""signature-key";key="other""#, true),
        (r#""signature-key";sf"#, true),
        (r#""signature-key";key="sig""#, false),
        (r#""signature-key""#, false),
    ] {
        let h = Harness::new();
        let mut request = get("/data");
        let components = format!(r#""@method" "@authority" "@path" {coverage}"#);
        sign_covering(&h, &mut request, &signature_key, &components);
        let attack = h.attack(request).await;
        if refused {
            let headers = attack.without_fetch().refused("invalid_input").await;
            let error = headers[tower_aauth::wire::header::SIGNATURE_ERROR].to_str().unwrap();
            assert!(
                error.contains(r#"required_input=("@method" "@authority" "@path" "signature-key")"#),
                "{coverage}: {error}"
            );
        } else {
            attack.accepted();
        }
    }
}

#[tokio::test]
async fn pol_08_required_authorization_coverage_means_the_whole_field() {
    use http::HeaderValue;
    use tower_aauth::testing::KeySource;
    for (coverage, refused) in [
        (r#""authorization";sf"#, true),
        (r#""authorization";key="sig""#, true),
        (r#""authorization""#, false),
    ] {
        let h = Harness::new();
        let mut request = get("/data");
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, HeaderValue::from_static("AAuth session-1"));
        let signature_key = h.agent.signature_key_value(&KeySource::Hwk, "sig");
        let components = format!(r#""@method" "@authority" "@path" "signature-key" {coverage}"#);
        sign_covering(&h, &mut request, &signature_key, &components);
        let attack = h.attack(request).await;
        if refused {
            let headers = attack.without_fetch().refused("invalid_input").await;
            let error = headers[tower_aauth::wire::header::SIGNATURE_ERROR].to_str().unwrap();
            assert!(error.contains(r#""authorization")"#), "{coverage}: {error}");
        } else {
            attack.accepted();
        }
    }
}

/// `POST /trade` behind `require_detail` with a step-up whose detail `build` makes.
fn pol_trade_routes(h: &Harness, build: fn(&http::request::Parts) -> Option<serde_json::Value>) -> axum::Router {
    use std::sync::atomic::Ordering;
    let calls = h.calls.clone();
    let handler = axum::routing::post(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { "handler ran" }
    });
    let guard = h
        .aauth
        .require_detail("trade", |_: &serde_json::Value, _: &http::request::Parts| true)
        .step_up(build);
    axum::Router::new().route("/trade", handler.route_layer(guard))
}

#[tokio::test]
async fn pol_09_no_step_up_resource_token_is_minted_from_a_query_the_signature_does_not_cover() {
    use tower_aauth::testing::KeySource;
    let from_query = |parts: &http::request::Parts| Some(serde_json::json!({ "query": parts.uri.query()? }));
    for (components, minted) in [
        (r#""@method" "@authority" "@path" "signature-key""#, false),
        (r#""@method" "@authority" "@path" "@query" "signature-key""#, true),
    ] {
        let h = Harness::new();
        let mut request = http::Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=5000"))
            .body(axum::body::Body::empty())
            .unwrap();
        let signature_key = h.agent.signature_key_value(&KeySource::Jwt(pol_agent_token(&h)), "sig");
        sign_covering(&h, &mut request, &signature_key, components);
        let response = send_routed(&h, pol_trade_routes(&h, from_query), request).await;
        let attack = Attack::from_response(&h, response);
        if minted {
            let token = attack.challenged();
            let details = &pol_claims(&token)["authorization_details"];
            assert_eq!(details[0]["query"], "symbol=ACME&quantity=5000");
            assert_eq!(h.aauth.minted_resource_tokens(), 1);
        } else {
            let headers = attack.refused("invalid_input").await;
            let error = headers[tower_aauth::wire::header::SIGNATURE_ERROR].to_str().unwrap();
            assert!(
                error.contains(r#"required_input=("@method" "@authority" "@path" "signature-key" "@query")"#),
                "{error}"
            );
            assert_eq!(h.aauth.minted_resource_tokens(), 0);
        }
    }
}

#[tokio::test]
async fn pol_09_a_step_up_detail_never_carries_a_header_the_signature_does_not_cover() {
    use http::HeaderValue;
    use tower_aauth::testing::KeySource;
    let from_header = |parts: &http::request::Parts| {
        let order = parts.headers.get("x-order")?.to_str().ok()?;
        Some(serde_json::json!({ "order": order }))
    };
    for (components, carried) in [
        (r#""@method" "@authority" "@path" "signature-key""#, false),
        (r#""@method" "@authority" "@path" "signature-key" "x-order";sf"#, false),
        (r#""@method" "@authority" "@path" "signature-key" "x-order""#, true),
    ] {
        let h = Harness::new();
        let mut request = http::Request::post(format!("{RESOURCE}/trade"))
            .body(axum::body::Body::empty())
            .unwrap();
        request.headers_mut().insert("x-order", HeaderValue::from_static("buy"));
        let signature_key = h.agent.signature_key_value(&KeySource::Jwt(pol_agent_token(&h)), "sig");
        sign_covering(&h, &mut request, &signature_key, components);
        let response = send_routed(&h, pol_trade_routes(&h, from_header), request).await;
        // Without the detail the route still challenges, with a token asking for nothing
        // taken from the request.
        let token = Attack::from_response(&h, response).challenged();
        let details = pol_claims(&token).get("authorization_details").cloned();
        match carried {
            true => assert_eq!(details, Some(serde_json::json!([{ "order": "buy", "type": "trade" }]))),
            false => assert_eq!(details, None, "{components}"),
        }
    }
}

#[tokio::test]
async fn pol_10_junk_key_parameters_of_refused_requests_stay_within_the_parsed_key_cache_budget() {
    use http::HeaderValue;
    use tower_aauth::httpsig::encode_signature;
    use tower_aauth::testing::{KeySource, parsed_key_cache_bytes};
    const REQUESTS: usize = 6_000;
    /// The cache's budget: what 6 000 requests pinning 8 KiB each (47 MiB) must not reach.
    const BUDGET: u64 = 2 * 1024 * 1024;
    let h = Harness::new();
    let key = h.agent.signature_key_value(&KeySource::Hwk, "sig");
    let input = format!(r#"sig=("@method" "@authority" "@path" "signature-key");created={NOW}"#);
    let signature = format!("sig=:{}:", encode_signature(&[0x5a; 64]));
    // The largest Signature-Key under the 8 KiB header cap.
    let padding = 8 * 1024 - key.len() - r#";junk="00000000""#.len();
    for i in 0..REQUESTS {
        let mut request = get("/data");
        let headers = request.headers_mut();
        let signature_key = format!(r#"{key};junk="{i:08}{}""#, "j".repeat(padding));
        assert_eq!(signature_key.len(), 8 * 1024);
        headers.insert(
            tower_aauth::wire::header::SIGNATURE_KEY,
            HeaderValue::from_str(&signature_key).unwrap(),
        );
        headers.insert(
            tower_aauth::wire::header::SIGNATURE_INPUT,
            HeaderValue::from_str(&input).unwrap(),
        );
        headers.insert(
            tower_aauth::wire::header::SIGNATURE,
            HeaderValue::from_str(&signature).unwrap(),
        );
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
    let held = parsed_key_cache_bytes();
    assert!(held <= BUDGET, "the parsed-key cache holds {held} bytes");
}

#[tokio::test]
async fn pol_11_a_legacy_token_without_iat_lives_at_most_its_kind_s_lifetime_from_now() {
    use tower_aauth::Profile;
    const YEAR: u64 = 365 * 24 * 3600;
    for profile in [Profile::Legacy, Profile::Both] {
        for (exp, accepted) in [(NOW + 10 * YEAR, false), (NOW + 3600 + 61, false), (NOW + 3600, true)] {
            let h = legacy_harness(profile);
            let mut claims = h
                .access_server
                .legacy_auth_claims(RESOURCE, &h.agent.public_jwk(), AP, "data.read", NOW);
            claims.as_object_mut().unwrap().remove("iat");
            claims["exp"] = exp.into();
            let token = h.access_server.sign_with_alg(
                tower_aauth::wire::typ::LEGACY_AUTH,
                tower_aauth::wire::alg::EDDSA,
                &claims,
            );
            let attack = h.token_attack(&token).await;
            if accepted {
                attack.accepted();
            } else {
                attack.refused("invalid_jwt").await;
            }
        }
    }
}

// === POL-12: four-party resource names the person ===
// (section: four-party)
