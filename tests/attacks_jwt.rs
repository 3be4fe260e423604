//! Attack catalogue §1.1: JWT algorithm confusion and JWS structure. Every case is an auth
//! token in `Signature-Key: sig=jwt;jwt="…"` on a request the agent signed correctly, so the
//! token is the only thing wrong; each is refused with `invalid_jwt`, the handler never
//! runs, and no issuer key is fetched (the verifier's cold-cache resolver counts lookups).

mod support;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::attack::*;
use tower_aauth::engine::b64url;

fn claims_text(harness: &Harness) -> String {
    harness.auth_claims().to_string()
}

fn header(alg: &str) -> String {
    json!({"alg": alg, "typ": "aa-auth+jwt", "kid": "as-key-1"}).to_string()
}

#[tokio::test]
async fn jwt_00_positive_control_a_valid_auth_token_is_accepted_after_one_key_lookup() {
    let harness = Harness::new();
    let token = raw_jwt(&header("Ed25519"), &claims_text(&harness), harness.access_server.key());
    harness.token_attack(&token).await.accepted();
    assert_eq!(harness.fetches(), 1, "the counting resolver sees the issuer key lookup");
}

#[tokio::test]
async fn jwt_01_alg_none_with_an_empty_signature() {
    let harness = Harness::new();
    let token = format!("{}.{}.", b64url(header("none")), b64url(claims_text(&harness)));
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_02_alg_none_case_variants() {
    for alg in ["None", "NONE", "nOnE", "none"] {
        let harness = Harness::new();
        let token = raw_jwt(&header(alg), &claims_text(&harness), harness.access_server.key());
        harness
            .token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new().chain_update(&inner).chain_update(message).finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize()
        .to_vec()
}

#[tokio::test]
async fn jwt_03_hs256_keyed_with_the_issuer_public_key() {
    let harness = Harness::new();
    let public = harness.access_server.public_jwk();
    let keys: [Vec<u8>; 3] = [
        public.verifying_key().as_bytes().to_vec(),
        public.to_json().to_string().into_bytes(),
        public.x().as_bytes().to_vec(),
    ];
    for key in keys {
        let signing_input = format!("{}.{}", b64url(header("HS256")), b64url(claims_text(&harness)));
        let token = format!(
            "{signing_input}.{}",
            b64url(hmac_sha256(&key, signing_input.as_bytes()))
        );
        harness
            .token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_04_header_alg_of_another_key_type() {
    for alg in ["ES256", "RS256", "PS256", "Ed448"] {
        let harness = Harness::new();
        let token = raw_jwt(&header(alg), &claims_text(&harness), harness.access_server.key());
        harness
            .token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_05_polymorphic_eddsa_in_the_strict_profile() {
    let harness = Harness::new();
    let token = raw_jwt(&header("EdDSA"), &claims_text(&harness), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_06_lower_case_or_unknown_alg() {
    for alg in ["ed25519", "ED25519", "ES256K", "Ed25519 ", ""] {
        let harness = Harness::new();
        let token = raw_jwt(&header(alg), &claims_text(&harness), harness.access_server.key());
        harness
            .token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_06_alg_of_the_wrong_json_type() {
    let harness = Harness::new();
    let header = r#"{"alg":["Ed25519"],"typ":"aa-auth+jwt","kid":"as-key-1"}"#;
    let token = raw_jwt(header, &claims_text(&harness), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_08_json_serialization_instead_of_compact() {
    let harness = Harness::new();
    let compact = raw_jwt(&header("Ed25519"), &claims_text(&harness), harness.access_server.key());
    let parts: Vec<&str> = compact.split('.').collect();
    let general = json!({"payload": parts[1], "signatures": [{"protected": parts[0], "signature": parts[2]}]});
    let escaped = general.to_string().replace('\\', "\\\\").replace('"', "\\\"");
    // The JSON serialization in the jwt parameter: an sf-string holds it once escaped.
    let request = harness.signed("/data", &tower_aauth::testing::KeySource::Jwt(escaped));
    harness
        .attack(request)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_09_wrong_segment_counts_and_empty_segments() {
    let harness = Harness::new();
    let token = raw_jwt(&header("Ed25519"), &claims_text(&harness), harness.access_server.key());
    let parts: Vec<&str> = token.split('.').collect();
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!("{token}."),
        format!("..{}", parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        parts[0].to_owned(),
    ];
    for case in cases {
        let harness = Harness::new();
        harness
            .token_attack(&case)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_10_jwe_five_segments_and_enc_header() {
    let harness = Harness::new();
    let jwe_header = b64url(r#"{"alg":"dir","enc":"A256GCM","typ":"aa-auth+jwt","kid":"as-key-1"}"#);
    let jwe = format!(
        "{jwe_header}..{}.{}.{}",
        b64url([1u8; 12]),
        b64url([2u8; 32]),
        b64url([3u8; 16])
    );
    harness
        .token_attack(&jwe)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;

    let harness = Harness::new();
    let header = r#"{"alg":"Ed25519","enc":"A256GCM","typ":"aa-auth+jwt","kid":"as-key-1"}"#;
    let token = raw_jwt(header, &claims_text(&harness), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_11_non_canonical_base64url_in_any_segment() {
    let harness = Harness::new();
    let token = raw_jwt(&header("Ed25519"), &claims_text(&harness), harness.access_server.key());
    let parts: Vec<&str> = token.split('.').collect();
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();

    // 64 bytes leave 4 unused bits in the last character: set one of them.
    let mut last_changed = parts[2].to_owned();
    let last = last_changed.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    last_changed.push(alphabet.as_bytes()[index ^ 0b0001] as char);
    let padded = URL_SAFE.encode(&signature);
    let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&signature);
    let mut cases = vec![
        format!("{}.{}.{last_changed}", parts[0], parts[1]),
        format!("{}.{}.{padded}", parts[0], parts[1]),
    ];
    // Padding on the header too, when its length leaves any.
    let header_padded = URL_SAFE.encode(header("Ed25519"));
    if header_padded != parts[0] {
        cases.push(format!("{header_padded}.{}.{}", parts[1], parts[2]));
    }
    if standard != parts[2] {
        cases.push(format!("{}.{}.{standard}", parts[0], parts[1]));
    }
    for case in cases {
        assert_ne!(case, token);
        let harness = Harness::new();
        harness
            .token_attack(&case)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_12_duplicate_header_members() {
    let harness = Harness::new();
    let header = r#"{"alg":"Ed25519","typ":"aa-auth+jwt","kid":"as-key-1","alg":"none"}"#;
    let token = raw_jwt(header, &claims_text(&harness), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;

    let harness = Harness::new();
    let header = r#"{"alg":"none","typ":"aa-auth+jwt","kid":"as-key-1","alg":"Ed25519"}"#;
    let token = raw_jwt(header, &claims_text(&harness), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_12_duplicate_claims() {
    let harness = Harness::new();
    let claims = claims_text(&harness);
    let duplicated = format!(r#"{{"aud":"https://other.example",{}"#, &claims[1..]);
    let token = raw_jwt(&header("Ed25519"), &duplicated, harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn jwt_13_crit_b64_and_zip_headers() {
    for extra in [
        r#""crit":["exp"]"#,
        r#""crit":["b64"],"b64":false"#,
        r#""b64":false"#,
        r#""zip":"DEF""#,
    ] {
        let harness = Harness::new();
        let header = format!(r#"{{"alg":"Ed25519","typ":"aa-auth+jwt","kid":"as-key-1",{extra}}}"#);
        let token = raw_jwt(&header, &claims_text(&harness), harness.access_server.key());
        harness
            .token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_14_non_utf8_json_lone_surrogates_and_non_object_payloads() {
    let harness = Harness::new();
    let key = harness.access_server.key();
    let utf16: Vec<u8> = [0xFEu8, 0xFF]
        .into_iter()
        .chain(header("Ed25519").encode_utf16().flat_map(|u| u.to_be_bytes()))
        .collect();
    let signing_input = format!("{}.{}", b64url(&utf16), b64url(claims_text(&harness)));
    let utf16_token = format!("{signing_input}.{}", b64url(key.sign_bytes(signing_input.as_bytes())));
    let claims = claims_text(&harness);
    let surrogate = format!(r#"{{"note":"\ud800",{}"#, &claims[1..]);
    let cases = [
        utf16_token,
        raw_jwt(&header("Ed25519"), &surrogate, key),
        raw_jwt(&header("Ed25519"), "[1,2,3]", key),
        raw_jwt(&header("Ed25519"), "\"a string\"", key),
        raw_jwt(&header("Ed25519"), "null", key),
        raw_jwt(&header("Ed25519"), &format!("{claims} trailing"), key),
    ];
    for case in cases {
        let harness = Harness::new();
        harness
            .token_attack(&case)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn jwt_15_nested_jwt_cty() {
    let harness = Harness::new();
    let inner = raw_jwt(&header("Ed25519"), &claims_text(&harness), harness.access_server.key());
    let header = r#"{"alg":"Ed25519","typ":"aa-auth+jwt","kid":"as-key-1","cty":"JWT"}"#;
    let token = raw_jwt(header, &json!({"jwt": inner}).to_string(), harness.access_server.key());
    harness
        .token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
#[should_panic(expected = "asserted nothing")]
async fn helper_fails_an_attack_test_that_asserts_nothing() {
    let harness = Harness::new();
    let token = format!("{}.{}.", b64url(header("none")), b64url(claims_text(&harness)));
    let _unchecked = harness.token_attack(&token).await;
}

/// A JWKS whose entry for `as-key-1` is `entry` (the issuer's real key bytes, other members
/// changed), and a token signed by the issuer's real key under that `kid`.
async fn published_as(entry: impl FnOnce(&mut serde_json::Value)) {
    let issuer = tower_aauth::testing::TestIssuer::new(AS, [2; 32], "as-key-1");
    let mut key = issuer.public_jwk().to_json();
    entry(&mut key);
    let (h, _) = discovering(json!({ "keys": [key] }));
    let token = issuer.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    h.token_attack(&token).await.refused("invalid_jwt").await;
}

#[tokio::test]
async fn jwt_04_b_header_ed25519_against_a_jwks_key_of_type_ec() {
    published_as(|key| {
        key["kty"] = json!("EC");
        key["crv"] = json!("P-256");
    })
    .await;
}

#[tokio::test]
async fn jwt_04_c_jwks_key_ed448_claiming_alg_ed25519() {
    published_as(|key| key["crv"] = json!("Ed448")).await;
}

#[tokio::test]
async fn jwt_07_a_jwks_key_without_alg_is_not_used() {
    published_as(|key| {
        key.as_object_mut().unwrap().remove("alg");
    })
    .await;
}
