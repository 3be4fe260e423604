//! Every way the layer refuses the key a request names: the `Signature-Key` scheme,
//! `hwk` keys, `jwks_uri` signers and `jwt` tokens (strict profile). Each test asserts
//! the status, the exact `Signature-Error` code, `Cache-Control: no-store`, that the
//! handler never ran and, where several checks share a code, the fixed `detail`.
//!
//! Covered elsewhere, not repeated here: an unknown `kid` and issuer mismatches behind a
//! real fetch (`discovery_e2e.rs`), hostile identifiers and documents
//! (`discovery_ssrf.rs`, `discovery_policy.rs`), keys and tokens without a fully
//! specified `alg` or with `EdDSA` (`legacy_profile.rs`), revocation (`revocation.rs`).

mod support;

use axum::body::Body;
use http::{HeaderValue, Request};
use serde_json::{Value, json};
use support::harness::*;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, SignOptions, TestAgent, TestIssuer};
use tower_aauth::{Scheme, TokenKind};

fn signed_by(agent: &TestAgent, source: &KeySource) -> Request<Body> {
    let mut request = get("/data");
    agent.sign(&mut request, source, NOW);
    request
}

/// A request signed by the harness agent whose `Signature-Key` is then replaced by
/// `value`: the key check must refuse before the signature is even looked at.
fn with_signature_key(h: &Harness, value: &str) -> Request<Body> {
    let mut request = signed_by(&h.agent, &KeySource::Hwk);
    request
        .headers_mut()
        .insert("signature-key", HeaderValue::from_str(value).unwrap());
    request
}

fn jwt(token: String) -> KeySource {
    KeySource::Jwt(token)
}

/// An auth token from the harness access server with `edit` applied to its claims.
fn auth_token_with(h: &Harness, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    edit(&mut claims);
    h.access_server.sign(engine::typ::AUTH, &claims)
}

// --- the scheme -------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_scheme_is_unsupported_scheme_with_the_accepted_list() {
    let h = Harness::new();
    let request = with_signature_key(&h, r#"sig=x509;x5u="https://agent.example/cert.pem""#);
    let response = h.send(request).await;
    assert_eq!(response.headers()["accept-signature-scheme"], "jwt, jwks_uri, hwk");
    assert_eq!(response.headers()["signature-error"], "error=unsupported_scheme");
    assert_refused(&h, response, "unsupported_scheme").await;
}

#[tokio::test]
async fn a_known_scheme_the_configuration_does_not_accept_is_unsupported_scheme() {
    let h = Harness::with(|b| b.accept_schemes([Scheme::Jwt, Scheme::JwksUri]));
    let response = h.send(signed_by(&h.agent, &KeySource::Hwk)).await;
    assert_eq!(response.headers()["accept-signature-scheme"], "jwt, jwks_uri");
    assert_refused(&h, response, "unsupported_scheme").await;
}

#[tokio::test]
async fn a_signature_key_that_is_not_a_dictionary_is_invalid_key() {
    let h = Harness::new();
    let request = with_signature_key(&h, "sig=(scheme=hwk x=\"a\")");
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_key",
        "Signature-Key is not a valid structured dictionary",
    )
    .await;
}

// --- hwk --------------------------------------------------------------------------------

fn hwk(params: &str) -> String {
    format!("sig=hwk;{params}")
}

#[tokio::test]
async fn an_hwk_small_order_key_is_invalid_key() {
    // The identity point (y = 1): every signature verifies against it in a lax verifier.
    let h = Harness::new();
    let request = with_signature_key(
        &h,
        &hwk(r#"kty="OKP";crv="Ed25519";x="AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";alg="Ed25519""#),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_key",
        "the key is a small-order point",
    )
    .await;
}

#[tokio::test]
async fn an_hwk_x_in_non_canonical_base64url_is_invalid_key() {
    // Same 32 bytes, but the two unused low bits of the last character set.
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let h = Harness::new();
    let x = h.agent.public_jwk().x().to_owned();
    let last = ALPHABET.find(x.chars().last().unwrap()).unwrap();
    let altered = ALPHABET.as_bytes()[last | 0b01] as char;
    let x = format!("{}{altered}", &x[..42]);
    let request = with_signature_key(&h, &hwk(&format!(r#"kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519""#)));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_key",
        "the key's x is not canonical base64url",
    )
    .await;
}

#[tokio::test]
async fn an_hwk_x_of_the_wrong_length_is_invalid_key() {
    let h = Harness::new();
    let x = format!("{}=", h.agent.public_jwk().x());
    let request = with_signature_key(&h, &hwk(&format!(r#"kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519""#)));
    assert_refused_because(&h, h.send(request).await, "invalid_key", "the key's x is not 32 bytes").await;
}

#[tokio::test]
async fn an_hwk_missing_a_member_is_invalid_key() {
    let h0 = Harness::new();
    let x = h0.agent.public_jwk().x().to_owned();
    let cases = [
        (format!(r#"crv="Ed25519";x="{x}""#), "the key has no kty"),
        (format!(r#"kty="OKP";x="{x}""#), "the key has no crv"),
        (r#"kty="OKP";crv="Ed25519""#.to_owned(), "the key has no x"),
    ];
    for (params, detail) in cases {
        let h = Harness::new();
        let request = with_signature_key(&h, &hwk(&params));
        assert_refused_because(&h, h.send(request).await, "invalid_key", detail).await;
    }
}

#[tokio::test]
async fn an_hwk_symmetric_key_is_invalid_key() {
    let cases = [
        (
            r#"kty="oct";k="c2VjcmV0""#,
            "a public key must not carry private members",
        ),
        (r#"kty="oct";alg="HS256""#, "unsupported or invalid key type"),
    ];
    for (params, detail) in cases {
        let h = Harness::new();
        let request = with_signature_key(&h, &hwk(params));
        assert_refused_because(&h, h.send(request).await, "invalid_key", detail).await;
    }
}

#[tokio::test]
async fn an_hwk_with_a_private_member_is_invalid_key() {
    let h = Harness::new();
    let x = h.agent.public_jwk().x().to_owned();
    let request = with_signature_key(&h, &hwk(&format!(r#"kty="OKP";crv="Ed25519";x="{x}";d="{x}""#)));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_key",
        "a public key must not carry private members",
    )
    .await;
}

#[tokio::test]
async fn an_hwk_of_another_key_type_is_unsupported_algorithm() {
    let h = Harness::new();
    let request = with_signature_key(&h, &hwk(r#"kty="EC";crv="P-256";x="AAAA";y="AAAA""#));
    assert_refused(&h, h.send(request).await, "unsupported_algorithm").await;
}

#[tokio::test]
async fn an_hwk_with_a_kid_is_invalid_key() {
    let h = Harness::new();
    let x = h.agent.public_jwk().x().to_owned();
    let request = with_signature_key(
        &h,
        &hwk(&format!(r#"kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519";kid="k1""#)),
    );
    assert_refused_because(&h, h.send(request).await, "invalid_key", "hwk must not carry kid").await;
}

// --- jwks_uri ---------------------------------------------------------------------------

#[tokio::test]
async fn a_jwks_uri_signer_that_is_not_a_server_identifier_is_invalid_key() {
    for id in [
        "http://agent.example",
        "https://agent.example/path",
        "https://agent.example:8443",
        "https://user@agent.example",
        "https://127.0.0.1",
        "agent.example",
    ] {
        let h = Harness::new();
        let source = KeySource::agent_jwks(id, "agent-key-1");
        assert_refused_because(
            &h,
            h.send(signed_by(&h.agent, &source)).await,
            "invalid_key",
            "the signer identifier is not admitted",
        )
        .await;
    }
}

#[tokio::test]
async fn a_jwks_uri_with_an_unknown_dwk_is_invalid_key() {
    let h = Harness::new();
    let source = KeySource::JwksUri {
        id: AP.into(),
        dwk: "openid-configuration".into(),
        kid: "agent-key-1".into(),
    };
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &source)).await,
        "invalid_key",
        "the well-known document name is not recognised",
    )
    .await;
}

#[tokio::test]
async fn a_jwks_uri_missing_a_member_is_invalid_key() {
    for params in [
        r#"dwk="aauth-agent.json";kid="agent-key-1""#.to_owned(),
        format!(r#"id="{AP}";kid="agent-key-1""#),
        format!(r#"id="{AP}";dwk="aauth-agent.json""#),
    ] {
        let h = Harness::new();
        let request = with_signature_key(&h, &format!("sig=jwks_uri;{params}"));
        assert_refused_because(
            &h,
            h.send(request).await,
            "invalid_key",
            "jwks_uri needs id, dwk and kid",
        )
        .await;
    }
}

#[tokio::test]
async fn a_jwks_uri_request_signed_by_another_key_than_the_published_one_is_invalid_signature() {
    let h = Harness::new();
    let impostor = TestAgent::from_seed([9; 32]);
    let source = KeySource::agent_jwks(AP, "agent-key-1");
    assert_refused_because(
        &h,
        h.send(signed_by(&impostor, &source)).await,
        "invalid_signature",
        "the signature does not verify",
    )
    .await;
}

// --- jwt --------------------------------------------------------------------------------

const SIG86: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[tokio::test]
async fn a_malformed_jwt_is_invalid_jwt() {
    let cases = [
        ("abc".to_owned(), "the token does not have three segments"),
        ("a.b".to_owned(), "the token does not have three segments"),
        ("a.b.c.d".to_owned(), "the token does not have three segments"),
        ("a..c".to_owned(), "the token has an empty segment"),
        ("a+b.c.d".to_owned(), "the token is not a compact JWS"),
        ("e30.e30.AAAA".to_owned(), "the token's alg is not accepted"),
        (
            // {"alg":"none","typ":"aa-auth+jwt"}
            format!("eyJhbGciOiJub25lIiwidHlwIjoiYWEtYXV0aCtqd3QifQ.e30.{SIG86}"),
            "the token's alg is not accepted",
        ),
        (
            // {"alg":"HS256","typ":"aa-auth+jwt"}
            format!("eyJhbGciOiJIUzI1NiIsInR5cCI6ImFhLWF1dGgrand0In0.e30.{SIG86}"),
            "the token's alg is not accepted",
        ),
        (
            // {"alg":"Ed25519"}
            format!("eyJhbGciOiJFZDI1NTE5In0.e30.{SIG86}"),
            "the token has no typ",
        ),
        (
            // {"alg":"Ed25519","typ":"aa-auth+jwt","jwk":{}}
            format!("eyJhbGciOiJFZDI1NTE5IiwidHlwIjoiYWEtYXV0aCtqd3QiLCJqd2siOnt9fQ.e30.{SIG86}"),
            "the token carries a header this verifier refuses",
        ),
    ];
    for (token, detail) in cases {
        let h = Harness::new();
        let request = signed_by(&h.agent, &jwt(token.clone()));
        let body = assert_refused(&h, h.send(request).await, "invalid_jwt").await;
        assert_eq!(body["detail"], detail, "{token}");
    }
}

#[tokio::test]
async fn an_expired_auth_token_is_expired_jwt() {
    let h = Harness::new();
    let token = auth_token_with(&h, |c| {
        c["iat"] = json!(NOW - 600);
        c["exp"] = json!(NOW - 1);
    });
    assert_refused(&h, h.send(signed_by(&h.agent, &jwt(token))).await, "expired_jwt").await;
}

#[tokio::test]
async fn an_auth_token_for_another_resource_is_invalid_jwt() {
    let h = Harness::new();
    let token = auth_token_with(&h, |c| c["aud"] = json!("https://other.example"));
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's audience is not this resource",
    )
    .await;
}

#[tokio::test]
async fn an_auth_token_whose_aud_array_names_another_audience_too_is_invalid_jwt() {
    let h = Harness::new();
    let token = auth_token_with(&h, |c| c["aud"] = json!([RESOURCE, "https://other.example"]));
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token names more than one audience",
    )
    .await;
}

#[tokio::test]
async fn an_auth_token_from_an_untrusted_issuer_is_invalid_jwt() {
    let h = Harness::new();
    let rogue = TestIssuer::new("https://rogue.example", [7; 32], "rogue-1");
    let token = rogue.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's issuer is not trusted here",
    )
    .await;
}

#[tokio::test]
async fn an_agent_token_from_a_provider_outside_the_allow_list_is_invalid_jwt() {
    let h = Harness::with(|b| b.agent_providers(["https://other-provider.example"]));
    let token = h
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW);
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's issuer is not trusted here",
    )
    .await;
}

#[tokio::test]
async fn an_auth_token_signed_by_a_key_its_issuer_does_not_publish_is_invalid_jwt() {
    // Same iss and kid as the trusted access server, another private key.
    let h = Harness::new();
    let forger = TestIssuer::new(AS, [7; 32], "as-key-1");
    let token = forger.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn an_auth_token_naming_a_kid_its_issuer_does_not_publish_is_unknown_key() {
    let h = Harness::new();
    let other = TestIssuer::new(AS, [2; 32], "as-key-9");
    let token = other.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    assert_refused(&h, h.send(signed_by(&h.agent, &jwt(token))).await, "unknown_key").await;
}

#[tokio::test]
async fn a_resource_token_presented_as_a_credential_is_invalid_jwt() {
    let h = Harness::new();
    let claims = h
        .access_server
        .auth_claims(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let token = h.access_server.sign(engine::typ::RESOURCE, &claims);
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's typ is not a credential",
    )
    .await;
}

#[tokio::test]
async fn a_token_kind_the_configuration_does_not_accept_is_invalid_jwt() {
    let h = Harness::with(|b| b.accept_tokens([TokenKind::Auth]));
    let token = h
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW);
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "this kind of token is not accepted here",
    )
    .await;
}

#[tokio::test]
async fn a_request_signed_by_another_key_than_the_tokens_cnf_is_invalid_signature() {
    let h = Harness::new();
    let thief = TestAgent::from_seed([9; 32]);
    let token = h.auth_token("data.read");
    assert_refused_because(
        &h,
        h.send(signed_by(&thief, &jwt(token))).await,
        "invalid_signature",
        "the signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_clock_skew() {
    let h = Harness::new();
    let token = auth_token_with(&h, |c| {
        c["iat"] = json!(NOW + 120);
        c["exp"] = json!(NOW + 1200);
    });
    assert_refused(&h, h.send(signed_by(&h.agent, &jwt(token))).await, "clock_skew").await;
}

#[tokio::test]
async fn an_auth_token_living_longer_than_an_hour_is_invalid_jwt() {
    let h = Harness::new();
    let token = auth_token_with(&h, |c| c["exp"] = json!(NOW + 3601));
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token's lifetime is longer than allowed",
    )
    .await;
}

#[tokio::test]
async fn a_token_over_8_kib_is_invalid_jwt_even_when_the_header_cap_allows_it() {
    let h = Harness::with(|b| b.max_header_bytes(64 * 1024));
    let token = auth_token_with(&h, |c| c["pad"] = json!("x".repeat(9 * 1024)));
    assert_refused_because(
        &h,
        h.send(signed_by(&h.agent, &jwt(token))).await,
        "invalid_jwt",
        "the token exceeds the size limit",
    )
    .await;
}

#[tokio::test]
async fn a_token_bound_to_a_key_then_presented_with_a_keyid_for_another_is_invalid_signature() {
    let h = Harness::new();
    let options = SignOptions {
        extra_params: r#";keyid="someone-else""#.into(),
        ..SignOptions::default()
    };
    let mut request = get("/data");
    h.agent
        .sign_with(&mut request, &jwt(h.auth_token("data.read")), NOW, &options);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "keyid names a different key than Signature-Key",
    )
    .await;
}
