//! Attack catalogue §1.10: signature encoding and Ed25519 edge cases, through the layer
//! (`hwk`, so the key is exactly the bytes under test) and through `Jwk::verify`.

mod support;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderValue, Request};
use serde_json::Value;
use support::attack::*;
use tower_aauth::testing::KeySource;
use tower_aauth::{
    Jwk,
    engine::{AlgPolicy, b64url},
};

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn signature_bytes(request: &Request<Body>) -> Vec<u8> {
    let value = request.headers()["signature"].to_str().unwrap();
    STANDARD
        .decode(value.trim_start_matches("sig=:").trim_end_matches(':'))
        .unwrap()
}

fn with_signature(mut request: Request<Body>, bytes: &[u8]) -> Request<Body> {
    let value = format!("sig=:{}:", STANDARD.encode(bytes));
    request
        .headers_mut()
        .insert("signature", HeaderValue::from_str(&value).unwrap());
    request
}

fn with_hwk_x(mut request: Request<Body>, x: &str) -> Request<Body> {
    let value = format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519""#);
    request
        .headers_mut()
        .insert("signature-key", HeaderValue::from_str(&value).unwrap());
    request
}

/// `a + b` over 256-bit little-endian integers (wrapping).
fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut carry = 0u16;
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let sum = u16::from(*x) + u16::from(*y) + carry;
            carry = sum >> 8;
            sum as u8
        })
        .collect()
}

#[tokio::test]
async fn ed_01_a_base64url_signature_is_refused_when_the_strict_alphabet_is_configured() {
    let h = Harness::with(|b| b.refuse_base64url_signatures());
    let request = h.signed("/data", &KeySource::Hwk);
    let bytes = signature_bytes(&request);
    let mut request = request;
    let value = format!("sig=:{}:", URL_SAFE_NO_PAD.encode(&bytes));
    request
        .headers_mut()
        .insert("signature", HeaderValue::from_str(&value).unwrap());
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

/// §4 D3: base64url is accepted by default because PyPI `aauth` sends it; the bytes are
/// verified all the same, so the alphabet grants nothing.
#[tokio::test]
async fn ed_01_by_default_base64url_carries_the_same_bytes_and_nothing_more() {
    let h = Harness::new();
    let request = h.signed("/data", &KeySource::Hwk);
    let mut bytes = signature_bytes(&request);
    bytes[10] ^= 1;
    let mut request = request;
    let value = format!("sig=:{}:", URL_SAFE_NO_PAD.encode(&bytes));
    request
        .headers_mut()
        .insert("signature", HeaderValue::from_str(&value).unwrap());
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn ed_02_signatures_of_the_wrong_length_or_with_garbage_are_invalid_signature() {
    let h0 = Harness::new();
    let good = signature_bytes(&h0.signed("/data", &KeySource::Hwk));
    let public = h0.agent.public_jwk().verifying_key().to_bytes();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        good[..63].to_vec(),
        [good.as_slice(), &[0]].concat(),
        [&[0], good.as_slice()].concat(),
        [good.as_slice(), public.as_slice()].concat(),
        good[..32].to_vec(),
    ];
    for bytes in cases {
        let h = Harness::new();
        let request = with_signature(h.signed("/data", &KeySource::Hwk), &bytes);
        h.attack(request)
            .await
            .without_fetch()
            .refused_because("invalid_signature", "an Ed25519 signature is 64 bytes")
            .await;
    }
}

#[tokio::test]
async fn ed_03_a_malleated_scalar_s_plus_multiples_of_l_is_invalid_signature() {
    let mut two_l = add(&L, &L);
    let eight_l = {
        let four = add(&two_l, &two_l);
        add(&four, &four)
    };
    two_l.truncate(32);
    for multiple in [L.to_vec(), two_l, eight_l] {
        let h = Harness::new();
        let request = h.signed("/data", &KeySource::Hwk);
        let good = signature_bytes(&request);
        let s = add(&good[32..], &multiple);
        let malleated = [&good[..32], s.as_slice()].concat();
        h.attack(with_signature(request, &malleated))
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn ed_04_a_flipped_bit_anywhere_in_r_is_invalid_signature() {
    for bit in [0, 7, 100, 200, 255] {
        let h = Harness::new();
        let request = h.signed("/data", &KeySource::Hwk);
        let mut bytes = signature_bytes(&request);
        bytes[bit / 8] ^= 1 << (bit % 8);
        h.attack(with_signature(request, &bytes))
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn ed_05_the_identity_key_with_the_trivial_signature_is_invalid_key() {
    let h = Harness::new();
    let identity = {
        let mut y = [0u8; 32];
        y[0] = 1;
        b64url(y)
    };
    let mut trivial = [0u8; 64];
    trivial[0] = 1;
    let request = with_signature(with_hwk_x(h.signed("/data", &KeySource::Hwk), &identity), &trivial);
    h.attack(request).await.without_fetch().refused("invalid_key").await;
}

#[tokio::test]
async fn ed_06_non_canonical_point_encodings_of_a_are_invalid_key() {
    // y = p and y = p + 1 (p = 2^255 - 19): non-canonical encodings of 0 and 1.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut p_plus_1 = p;
    p_plus_1[0] = 0xee;
    for y in [p, p_plus_1] {
        let h = Harness::new();
        let request = with_hwk_x(h.signed("/data", &KeySource::Hwk), &b64url(y));
        h.attack(request).await.without_fetch().refused("invalid_key").await;
    }
}

#[tokio::test]
async fn ed_07_a_non_canonical_base64url_x_is_invalid_key() {
    // RFC 9421's test key, with the last character's unused bits set.
    let canonical = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
    let lax = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bt";
    let h = Harness::new();
    let request = with_hwk_x(h.signed("/data", &KeySource::Hwk), lax);
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_key", "the key's x is not canonical base64url")
        .await;
    assert!(
        Jwk::from_json(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": canonical, "alg": "Ed25519"})
                .as_object()
                .unwrap(),
            AlgPolicy::Strict
        )
        .is_ok()
    );
}

fn wycheproof() -> Vec<(Vec<u8>, Value)> {
    let path = format!(
        "{}/tests/vectors/wycheproof/ed25519_test.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut cases = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        let pk: Vec<u8> = hex(group["publicKey"]["pk"].as_str().unwrap());
        for test in group["tests"].as_array().unwrap() {
            let mut test = test.clone();
            test["msg_bytes"] = Value::from(hex(test["msg"].as_str().unwrap()));
            test["sig_bytes"] = Value::from(hex(test["sig"].as_str().unwrap()));
            cases.push((pk.clone(), test));
        }
    }
    cases
}

fn bytes(value: &Value) -> Vec<u8> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn ed_08_every_wycheproof_case_is_decided_as_wycheproof_says_by_our_wrapper() {
    let mut decided = 0;
    for (pk, test) in wycheproof() {
        let valid = test["result"] == "valid";
        let accepted = ed25519_dalek::VerifyingKey::from_bytes(pk.as_slice().try_into().unwrap())
            .ok()
            .map(|key| Jwk::from_verifying_key(key, None))
            .is_some_and(|jwk| jwk.verify(&bytes(&test["msg_bytes"]), &bytes(&test["sig_bytes"])));
        assert_eq!(accepted, valid, "tc {} {}", test["tcId"], test["comment"]);
        decided += 1;
    }
    assert_eq!(decided, 151);
}

#[test]
fn ed_08_malleability_and_invalid_encoding_families_are_all_refused() {
    let families = [
        "SignatureMalleability",
        "InvalidEncoding",
        "CompressedSignature",
        "TruncatedSignature",
    ];
    let mut refused = 0;
    for (pk, test) in wycheproof() {
        let flags: Vec<&str> = test["flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if !flags.iter().any(|f| families.contains(f)) {
            continue;
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(pk.as_slice().try_into().unwrap()).unwrap();
        let jwk = Jwk::from_verifying_key(key, None);
        assert!(
            !jwk.verify(&bytes(&test["msg_bytes"]), &bytes(&test["sig_bytes"])),
            "tc {}",
            test["tcId"]
        );
        refused += 1;
    }
    assert_eq!(refused, 37, "8 malleability + 22 encoding + 4 compressed + 3 truncated");
}

#[tokio::test]
async fn ed_09_ecdsa_keys_are_not_accepted_at_all() {
    for params in [
        r#"kty="EC";crv="P-256";x="AAAA";y="AAAA";alg="ES256""#,
        r#"kty="EC";crv="P-256";x="AAAA";y="AAAA""#,
    ] {
        let h = Harness::new();
        let mut request = h.signed("/data", &KeySource::Hwk);
        request.headers_mut().insert(
            "signature-key",
            HeaderValue::from_str(&format!("sig=hwk;{params}")).unwrap(),
        );
        let headers = h
            .attack(request)
            .await
            .without_fetch()
            .refused("unsupported_algorithm")
            .await;
        assert_eq!(headers["accept-signature-alg"], "Ed25519");
    }
}
