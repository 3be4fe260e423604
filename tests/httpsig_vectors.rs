//! RFC 9421 Appendix B vectors and the digest's derived AAuth vectors, through our own
//! parser and signature-base builder.

mod support;

use axum::body::Body;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use support::harness::*;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::engine::{
    ParsedInput, RequestTarget, SignatureAlphabet, SignatureBase, decode_signature, verify_base,
};
use tower_aauth::testing::TestAgent;
use tower_aauth::{AAuth, testing::ManualClock};
use tower_aauth::{
    Jwk,
    engine::{AlgPolicy, b64url_decode},
};

const TEST_KEY_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
const TEST_KEY_D: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";

fn test_key() -> Jwk {
    let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":TEST_KEY_X,"kid":"test-key-ed25519"});
    Jwk::from_json(jwk.as_object().unwrap(), AlgPolicy::Legacy).unwrap()
}

fn test_agent() -> TestAgent {
    let seed: [u8; 32] = b64url_decode(TEST_KEY_D).unwrap().try_into().unwrap();
    TestAgent::from_seed(seed).with_kid("test-key-ed25519")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn rfc9421_b26_ed25519_base_is_byte_exact_and_verifies() {
    let input_field = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
    let signature_field =
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";
    let request_headers = headers(&[
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
    ]);
    let input = ParsedInput::parse(input_field, 24).unwrap();
    let target = RequestTarget {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
    };
    let mut base = SignatureBase::new();
    base.build(&input, &target, &request_headers).unwrap();
    let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
    assert_eq!(base.as_str(), expected);
    assert_eq!(base.as_bytes().len(), 284);
    let signature = decode_signature(signature_field, "sig-b26", SignatureAlphabet::StandardOnly).unwrap();
    verify_base(&base, &signature, &test_key()).unwrap();
    // Ed25519 is deterministic: re-signing reproduces the published bytes.
    assert_eq!(test_agent().key().sign_bytes(base.as_bytes()).to_vec(), signature);
}

fn b4_check(method: &str, authority: &str, query: &str, request_headers: &HeaderMap) -> bool {
    let input = ParsedInput::parse(
        r#"transform=("@method" "@path" "@authority" "accept");created=1618884473;keyid="test-key-ed25519""#,
        24,
    )
    .unwrap();
    let signature = decode_signature(
        "transform=:ZT1kooQsEHpZ0I1IjCqtQppOmIqlJPeo7DHR3SoMn0s5JZ1eRGS0A+vyYP9t/LXlh5QMFFQ6cpLt2m0pmj3NDA==:",
        "transform",
        SignatureAlphabet::StandardOnly,
    )
    .unwrap();
    let target = RequestTarget {
        method,
        scheme: "https",
        authority,
        path: "/demo",
        query: Some(query),
    };
    let mut base = SignatureBase::new();
    base.build(&input, &target, request_headers).is_ok() && verify_base(&base, &signature, &test_key()).is_ok()
}

#[test]
fn rfc9421_b4_original_request_verifies() {
    let h = headers(&[
        ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
        ("accept", "application/json"),
        ("accept", "*/*"),
    ]);
    assert!(b4_check("GET", "example.org", "name1=Value1&Name2=value2", &h));
}

#[test]
fn rfc9421_b4_added_query_param_and_header_still_verify() {
    let h = headers(&[
        ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
        ("accept", "application/json"),
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.5"),
    ]);
    assert!(b4_check(
        "GET",
        "example.org",
        "name1=Value1&Name2=value2&param=added",
        &h
    ));
}

#[test]
fn rfc9421_b4_removed_date_added_referer_folded_accept_still_verify() {
    let h = headers(&[
        ("referer", "https://developer.example.org/demo"),
        ("accept", "application/json, */*"),
    ]);
    assert!(b4_check("GET", "example.org", "name1=Value1&Name2=value2", &h));
}

#[test]
fn rfc9421_b4_reordered_fields_still_verify() {
    let h = headers(&[
        ("accept", "application/json"),
        ("accept", "*/*"),
        ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
    ]);
    assert!(b4_check("GET", "example.org", "name1=Value1&Name2=value2", &h));
}

#[test]
fn rfc9421_b4_changed_method_and_authority_fail() {
    let h = headers(&[
        ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
        ("accept", "application/json"),
        ("accept", "*/*"),
    ]);
    assert!(!b4_check("POST", "example.com", "name1=Value1&Name2=value2", &h));
}

#[test]
fn rfc9421_b4_swapped_accept_lines_fail() {
    let h = headers(&[
        ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
        ("accept", "*/*"),
        ("accept", "application/json"),
    ]);
    assert!(!b4_check("GET", "example.org", "name1=Value1&Name2=value2", &h));
}

#[test]
fn rfc9421_b25_hmac_signature_is_refused() {
    let input = ParsedInput::parse(
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
        24,
    )
    .unwrap();
    let h = headers(&[
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
    ]);
    let target = RequestTarget {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: None,
    };
    let mut base = SignatureBase::new();
    base.build(&input, &target, &h).unwrap();
    let signature = decode_signature(
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
        "sig-b25",
        SignatureAlphabet::StandardOnly,
    )
    .unwrap();
    assert_eq!(signature.len(), 32);
    assert!(verify_base(&base, &signature, &test_key()).is_err());
}

#[tokio::test]
async fn derived_v1_hwk_vector_reproduces_and_is_accepted() {
    let clock = ManualClock::new(1_730_217_600);
    let aauth = AAuth::builder("https://resource.example")
        .clock(clock)
        .key_resolver(StaticResolver::new())
        .build()
        .unwrap();
    let mut request = Request::get("https://resource.example/api/documents")
        .body(Body::empty())
        .unwrap();
    test_agent().sign(&mut request, &tower_aauth::testing::KeySource::Hwk, 1_730_217_600);
    assert_eq!(
        request.headers()["signature-key"],
        r#"sig=hwk;kty="OKP";crv="Ed25519";x="JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";alg="Ed25519""#
    );
    assert_eq!(
        request.headers()["signature-input"],
        r#"sig=("@method" "@authority" "@path" "signature-key");created=1730217600"#
    );
    assert_eq!(
        request.headers()["signature"],
        "sig=:8kOiO1nf5bJapozQYfxOtYFH5agR05q2GnJpV4xd83btd23lykSijPmkq6TopUzxlLMzYkVCvRkzBA1x4bDmAw==:"
    );
    let harness = Harness::new();
    let _ = harness;
    use tower::ServiceExt;
    let response = axum::Router::new()
        .fallback(|| async { "ok" })
        .layer(aauth.layer())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

const V2_JWT: &str = "eyJhbGciOiJFZDI1NTE5IiwidHlwIjoiYWEtYWdlbnQrand0Iiwia2lkIjoidGVzdC1rZXktZWQyNTUxOSJ9.eyJpc3MiOiJodHRwczovL2FnZW50LmV4YW1wbGUiLCJkd2siOiJhYXV0aC1hZ2VudC5qc29uIiwic3ViIjoiYWF1dGg6YXNzaXN0YW50QGFnZW50LmV4YW1wbGUiLCJqdGkiOiJhdC0wMDAxIiwiY25mIjp7Imp3ayI6eyJrdHkiOiJPS1AiLCJjcnYiOiJFZDI1NTE5IiwieCI6IkpyUUxqNVBfODlpWEVTOS12RmdySXkyOWNsRjlDQ19vUFBzdzNjNUQwYnMiLCJhbGciOiJFZDI1NTE5In19LCJpYXQiOjE3MzAyMTcwMDAsImV4cCI6MTczMDIyMDYwMH0.of07JN9C4FZwlMm3zqAaccS0Wh7DVYtntbUOkNaOHu98QT9O0KiicyuuZ5PgF_lN_qwEpFRa4uHPZ-nooPGGAw";

fn v2_request(body: &'static str, signature: &str) -> Request<Body> {
    Request::post("https://resource.example/api/items")
        .header("content-type", "application/json")
        .header("content-digest", "sha-256=:JW4rNhldbJ0lt4vw33ABnLYEIbCIz5bKIeVw+/w09rI=:")
        .header("signature-key", format!(r#"sig=jwt;jwt="{V2_JWT}""#))
        .header(
            "signature-input",
            r#"sig=("@method" "@authority" "@path" "content-type" "content-digest" "signature-key");created=1730217600"#,
        )
        .header("signature", signature)
        .body(Body::from(body))
        .unwrap()
}

fn v2_service() -> axum::Router {
    let issuer_key = {
        let jwk =
            serde_json::json!({"kty":"OKP","crv":"Ed25519","x":TEST_KEY_X,"kid":"test-key-ed25519","alg":"Ed25519"});
        Jwk::from_json(jwk.as_object().unwrap(), AlgPolicy::Strict).unwrap()
    };
    let aauth = AAuth::builder("https://resource.example")
        .clock(ManualClock::new(1_730_217_600))
        .key_resolver(StaticResolver::new().with_key("https://agent.example", engine::dwk::AGENT, issuer_key))
        .build()
        .unwrap();
    axum::Router::new()
        .fallback(|request: Request<Body>| async move {
            let verified = request
                .extensions()
                .get::<tower_aauth::VerifiedRequest>()
                .cloned()
                .unwrap();
            let body = axum::body::to_bytes(request.into_body(), 1024).await.unwrap();
            format!("{}:{}", verified.token_kind().unwrap(), String::from_utf8_lossy(&body))
        })
        .layer(aauth.layer())
}

const V2_SIGNATURE: &str =
    "sig=:IvBK5EjgmHvDw3obS2kFxbRjiCV8B9qpKnC9n3B+gKiufStxHS5spin9J2fVAulTwqherVgbvTjisfXufpUrCA==:";

#[tokio::test]
async fn derived_v2_jwt_agent_token_with_content_digest_is_accepted() {
    use tower::ServiceExt;
    let response = v2_service()
        .oneshot(v2_request(r#"{"name":"widget"}"#, V2_SIGNATURE))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    // The handler still receives the buffered body.
    assert_eq!(&body[..], br#"aa-agent+jwt:{"name":"widget"}"#);
}

#[tokio::test]
async fn derived_v2_with_a_swapped_body_is_invalid_signature() {
    use tower::ServiceExt;
    let response = v2_service()
        .oneshot(v2_request(r#"{"name":"gadget"}"#, V2_SIGNATURE))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
}

#[tokio::test]
async fn derived_v2_with_a_flipped_signature_byte_is_invalid_signature() {
    use tower::ServiceExt;
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode("IvBK5EjgmHvDw3obS2kFxbRjiCV8B9qpKnC9n3B+gKiufStxHS5spin9J2fVAulTwqherVgbvTjisfXufpUrCA==")
        .unwrap();
    bytes[10] ^= 1;
    let flipped = format!("sig=:{}:", base64::engine::general_purpose::STANDARD.encode(bytes));
    let response = v2_service()
        .oneshot(v2_request(r#"{"name":"widget"}"#, &flipped))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
}
