//! Attack catalogue §1.12: claims — issuer, audience, time, scope, identifiers. Each case
//! is a validly signed auth token (or, for scopes, a token on a `require_scopes` route)
//! with one claim changed.

mod support;

use serde_json::{Value, json};
use support::attack::*;
use tower_aauth::policy::Revoked;
use tower_aauth::testing::KeySource;

fn token_with(h: &Harness, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = h.auth_claims();
    edit(&mut claims);
    h.access_server.sign("aa-auth+jwt", &claims)
}

fn without(h: &Harness, claim: &str) -> String {
    token_with(h, |c| {
        c.as_object_mut().unwrap().remove(claim);
    })
}

/// The same claims as raw JSON text, for values `serde_json::Value` cannot hold.
fn token_with_raw_claim(h: &Harness, claim: &str, raw: &str) -> String {
    let mut claims = h.auth_claims();
    claims.as_object_mut().unwrap().remove(claim);
    let mut text = claims.to_string();
    text.pop();
    let payload = format!("{text},\"{claim}\":{raw}}}");
    let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "as-key-1"}).to_string();
    raw_jwt(&header, &payload, h.access_server.key())
}

fn scoped_request(h: &Harness, scope: &str) -> http::Request<axum::body::Body> {
    let token = token_with(h, |c| c["scope"] = json!(scope));
    h.signed("/data", &KeySource::Jwt(token))
}

// --- CLM ---------------------------------------------------------------------------------

#[tokio::test]
async fn clm_01_an_untrusted_issuer_is_invalid_jwt_before_any_fetch() {
    let h = Harness::new();
    let stranger = tower_aauth::testing::TestIssuer::new("https://rogue-as.example", [9; 32], "k");
    let token = stranger.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn clm_02_a_missing_or_foreign_audience_is_invalid_jwt() {
    let h = Harness::new();
    let token = without(&h, "aud");
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
    let h = Harness::new();
    let token = token_with(&h, |c| c["aud"] = json!("https://other.example"));
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn clm_03_audience_spelling_variants_are_invalid_jwt() {
    for aud in [
        "https://resource.example/",
        "HTTPS://RESOURCE.EXAMPLE",
        "https://resource.example:443",
        "https://Resource.example",
    ] {
        let h = Harness::new();
        let token = token_with(&h, |c| c["aud"] = json!(aud));
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn clm_04_an_audience_array_of_exactly_us_is_accepted() {
    let h = Harness::new();
    let token = token_with(&h, |c| c["aud"] = json!([RESOURCE]));
    h.token_attack(&token).await.accepted();
}

#[tokio::test]
async fn clm_04_multi_audience_empty_null_and_numeric_audiences_are_invalid_jwt() {
    for aud in [
        json!(["https://other.example", RESOURCE]),
        json!([]),
        Value::Null,
        json!(123),
    ] {
        let h = Harness::new();
        let token = token_with(&h, |c| c["aud"] = aud.clone());
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn clm_05_a_token_expired_one_second_ago_is_expired_jwt() {
    let h = Harness::new();
    let token = token_with(&h, |c| {
        c["iat"] = json!(NOW - 600);
        c["exp"] = json!(NOW - 1);
    });
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("expired_jwt")
        .await;
}

#[tokio::test]
async fn clm_06_a_lifetime_over_an_hour_is_invalid_jwt() {
    let h = Harness::new();
    let token = token_with(&h, |c| c["exp"] = json!(NOW + 7200));
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn clm_07_a_future_iat_is_clock_skew() {
    let h = Harness::new();
    let token = token_with(&h, |c| {
        c["iat"] = json!(NOW + 120);
        c["exp"] = json!(NOW + 1800);
    });
    h.token_attack(&token).await.without_fetch().refused("clock_skew").await;
}

#[tokio::test]
async fn clm_07_a_future_nbf_is_invalid_jwt() {
    let h = Harness::new();
    let token = token_with(&h, |c| c["nbf"] = json!(NOW + 120));
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn clm_08_numeric_type_games_in_exp_are_invalid_jwt() {
    for raw in [
        "\"9999999999\"",
        "1.7e9",
        "1e300",
        "-1",
        "18446744073709551616",
        "1730221200.0",
        "true",
    ] {
        let h = Harness::new();
        let token = token_with_raw_claim(&h, "exp", raw);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn clm_09_a_missing_sub_jti_or_iat_is_invalid_jwt() {
    for claim in ["sub", "jti", "iat", "exp", "iss"] {
        let h = Harness::new();
        let token = without(&h, claim);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn clm_10_a_revoked_jti_is_revoked_jwt() {
    let h = Harness::new();
    h.aauth
        .revocations()
        .revoke(Revoked::Jti {
            issuer: AS.into(),
            jti: "revoked-1".into(),
        })
        .unwrap();
    let token = token_with(&h, |c| c["jti"] = json!("revoked-1"));
    h.token_attack(&token).await.refused("revoked_jwt").await;
}

// --- SCP ---------------------------------------------------------------------------------

#[tokio::test]
async fn scp_01_a_superset_of_the_required_scopes_in_any_order_is_allowed() {
    let h = Harness::new();
    let request = scoped_request(&h, "data.write data.read");
    h.scoped_attack(request, &["data.read"]).await.accepted();
}

#[tokio::test]
async fn scp_02_prefix_suffix_and_case_variants_never_grant_the_scope() {
    for granted in ["data.reader", "data.read.all", "Data.Read", "data", "data.rea"] {
        let h = Harness::new();
        let request = scoped_request(&h, granted);
        h.scoped_attack(request, &["data.read"]).await.challenged();
    }
}

#[tokio::test]
async fn scp_03_a_malformed_scope_string_is_invalid_jwt() {
    for scope in [
        "data.read  data.write",
        " data.read",
        "data.read ",
        "data.read\tdata.write",
        "data.read\ndata.write",
        "data\"read",
        "data\\read",
        "data.réad",
    ] {
        let h = Harness::new();
        let token = token_with(&h, |c| c["scope"] = json!(scope));
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn scp_04_a_scope_that_is_not_a_string_is_invalid_jwt() {
    for scope in [json!(["data.read"]), json!(1), json!({"data.read": true})] {
        let h = Harness::new();
        let token = token_with(&h, |c| c["scope"] = scope.clone());
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn scp_05_duplicated_scopes_count_once_and_no_scope_grants_nothing() {
    let h = Harness::new();
    let request = scoped_request(&h, "data.read data.read");
    h.scoped_attack(request, &["data.read"]).await.accepted();

    let h = Harness::new();
    let request = h.signed("/data", &KeySource::Jwt(without(&h, "scope")));
    h.scoped_attack(request, &["data.read"]).await.challenged();

    // An empty scope string is the same as none: it grants nothing.
    let h = Harness::new();
    let request = scoped_request(&h, "");
    h.scoped_attack(request, &["data.read"]).await.challenged();
}

// --- UNI -----------------------------------------------------------------------------------

#[tokio::test]
async fn uni_01_a_homograph_issuer_is_invalid_jwt_before_any_fetch() {
    let h = Harness::new();
    let token = token_with(&h, |c| c["iss"] = json!("https://\u{0430}s.example"));
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn uni_02_json_escapes_decode_before_comparison() {
    let h = Harness::new();
    let header = r#"{"alg":"Ed25519","typ":"\u0061a-auth+jwt","kid":"as-key-1"}"#;
    let token = raw_jwt(header, &h.auth_claims().to_string(), h.access_server.key());
    h.token_attack(&token).await.accepted();
}

#[tokio::test]
async fn uni_03_control_characters_in_opaque_identifiers_are_invalid_jwt() {
    for (claim, value) in [
        ("sub", "a\u{0}b"),
        ("jti", "a\u{1b}b"),
        ("sub", "a\u{7f}"),
        ("jti", "x\ny"),
    ] {
        let logs = Logs::capture();
        let h = Harness::new();
        let token = token_with(&h, |c| c[claim] = json!(value));
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
        logs.assert_clean(&[&token]);
    }
}

/// AAUTH-11 allows upper case in `local` (digest §5: "do not case-fold"); the domain is a
/// lower-case DNS name.
#[tokio::test]
async fn uni_04_an_agent_identifier_outside_the_grammar_is_invalid_jwt() {
    let h = Harness::new();
    let token = h
        .agent_provider
        .agent_token("aauth:Assistant@agent.example", &h.agent.public_jwk(), NOW);
    h.token_attack(&token).await.accepted();
    for sub in [
        "aauth:My Agent@agent.example",
        "aauth:agent@Agent.Example",
        "assistant@agent.example",
        "aauth:@agent.example",
        "aauth:agent@",
    ] {
        let h = Harness::new();
        let token = h.agent_provider.agent_token(sub, &h.agent.public_jwk(), NOW);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}
