//! Published Ed25519 vectors through our own entry points: RFC 8032 §7.1, RFC 8037
//! Appendix A, and every Wycheproof `ed25519_test.json` case, decided by `Jwk::verify`
//! (our `verify_strict` wrapper) exactly as Wycheproof says, and by the layer's `hwk` path.
//! Sources and licences: tests/vectors/README.md.

mod support;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::harness::*;
use tower_aauth::engine;
use tower_aauth::{
    Jwk, ResourceKey,
    engine::{AlgPolicy, UnverifiedJws, b64url, b64url_decode, thumbprint_of_x},
};
use tower_aauth::{SignatureErrorCode, wire};

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/tests/vectors/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path);
    serde_json::from_str(&text).expect("vector file is JSON")
}

/// A public JWK for raw key bytes, as an issuer would publish it (draft -11: `alg` present).
fn jwk_of(public_key: &[u8]) -> Result<Jwk, tower_aauth::Error> {
    let object = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(public_key), "alg": "Ed25519"});
    Jwk::from_json(object.as_object().unwrap(), AlgPolicy::Strict)
}

#[test]
fn rfc8032_section_7_1_vectors_sign_and_verify_through_our_key_types() {
    let file = load("rfc/rfc8032-7.1-ed25519.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 5, "TEST 1, 2, 3, 1024 and SHA(abc)");
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let seed: [u8; 32] = hex(vector["secret_key"].as_str().unwrap()).try_into().unwrap();
        let public_key = hex(vector["public_key"].as_str().unwrap());
        let message = hex(vector["message"].as_str().unwrap());
        let signature = hex(vector["signature"].as_str().unwrap());

        let key = ResourceKey::from_seed(seed);
        assert_eq!(
            key.public_jwk().verifying_key().as_bytes().as_slice(),
            public_key,
            "{name}: public key"
        );
        // Ed25519 is deterministic: our signer must reproduce the published bytes.
        assert_eq!(key.sign_bytes(&message).to_vec(), signature, "{name}: signature");

        let jwk = jwk_of(&public_key).unwrap();
        assert!(jwk.verify(&message, &signature), "{name}: verifies");
        let mut flipped = signature.clone();
        flipped[10] ^= 0x01;
        assert!(
            !jwk.verify(&message, &flipped),
            "{name}: a flipped signature bit is refused"
        );
        let mut other = message.clone();
        other.push(0);
        assert!(!jwk.verify(&other, &signature), "{name}: a longer message is refused");
    }
}

/// RFC 8037 A.1/A.2 key, A.3 thumbprint, A.4 JWS.
const A_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const A_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const A3_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const A4_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

#[test]
fn rfc8037_a1_private_key_derives_the_a2_public_key_and_a3_thumbprint() {
    let seed: [u8; 32] = b64url_decode(A_D).unwrap().try_into().unwrap();
    let key = ResourceKey::from_seed(seed);
    assert_eq!(key.public_jwk().x(), A_X);
    assert_eq!(key.public_jwk().thumbprint(), A3_THUMBPRINT);
    assert_eq!(thumbprint_of_x(A_X), A3_THUMBPRINT);
}

#[test]
fn rfc8037_a2_public_jwk_without_alg_is_a_legacy_key_only() {
    let object = json!({"kty": "OKP", "crv": "Ed25519", "x": A_X});
    let strict = Jwk::from_json(object.as_object().unwrap(), AlgPolicy::Strict).unwrap_err();
    assert_eq!(strict.signature_code(), Some(SignatureErrorCode::UnsupportedAlgorithm));
    let legacy = Jwk::from_json(object.as_object().unwrap(), AlgPolicy::Legacy).unwrap();
    assert_eq!(legacy.thumbprint(), A3_THUMBPRINT);
}

#[test]
fn rfc8037_a4_signature_verifies_and_is_reproduced_by_our_signer() {
    let (signing_input, signature) = A4_JWS.rsplit_once('.').unwrap();
    let signature = b64url_decode(signature).unwrap();
    let object = json!({"kty": "OKP", "crv": "Ed25519", "x": A_X});
    let jwk = Jwk::from_json(object.as_object().unwrap(), AlgPolicy::Legacy).unwrap();
    assert!(jwk.verify(signing_input.as_bytes(), &signature));
    assert!(!jwk.verify(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd", &signature));

    let seed: [u8; 32] = b64url_decode(A_D).unwrap().try_into().unwrap();
    assert_eq!(
        ResourceKey::from_seed(seed)
            .sign_bytes(signing_input.as_bytes())
            .to_vec(),
        signature
    );
}

#[test]
fn rfc8037_a4_jws_is_refused_as_an_aauth_token_because_it_has_no_typ() {
    // A.4's header is `{"alg":"EdDSA"}`: structurally a JWS, but AAuth tokens are typed,
    // and draft -11 also refuses the polymorphic alg. Neither profile may accept it.
    for policy in [AlgPolicy::Strict, AlgPolicy::Legacy] {
        let error = UnverifiedJws::parse(A4_JWS, policy).unwrap_err();
        assert_eq!(
            error.signature_code(),
            Some(SignatureErrorCode::InvalidJwt),
            "{policy:?}"
        );
    }
}

#[test]
fn rfc8037_a4_payload_resigned_with_a_typ_parses_and_verifies_through_unverified_jws() {
    let seed: [u8; 32] = b64url_decode(A_D).unwrap().try_into().unwrap();
    let key = ResourceKey::from_seed(seed).with_kid("rfc8037");
    let token = key.sign_jwt(
        engine::typ::AGENT,
        engine::alg::ED25519,
        &json!({"note": "Example of Ed25519 signing"}),
    );
    let jws = UnverifiedJws::parse(&token, AlgPolicy::Strict).unwrap();
    jws.verify_with(&key.public_jwk()).unwrap();
    assert_eq!(jws.payload()["note"], "Example of Ed25519 signing");
}

struct WycheproofCase {
    id: u64,
    comment: String,
    flags: Vec<String>,
    public_key: Vec<u8>,
    jwk_x: String,
    message: Vec<u8>,
    signature: Vec<u8>,
    valid: bool,
}

fn wycheproof_cases() -> Vec<WycheproofCase> {
    let file = load("wycheproof/ed25519_test.json");
    let mut cases = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        let public_key = hex(group["publicKey"]["pk"].as_str().unwrap());
        let jwk_x = group["publicKeyJwk"]["x"].as_str().unwrap().to_owned();
        for test in group["tests"].as_array().unwrap() {
            let result = test["result"].as_str().unwrap();
            assert!(
                result == "valid" || result == "invalid",
                "no 'acceptable' case in this file"
            );
            cases.push(WycheproofCase {
                id: test["tcId"].as_u64().unwrap(),
                comment: test["comment"].as_str().unwrap().to_owned(),
                flags: test["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_owned())
                    .collect(),
                public_key: public_key.clone(),
                jwk_x: jwk_x.clone(),
                message: hex(test["msg"].as_str().unwrap()),
                signature: hex(test["sig"].as_str().unwrap()),
                valid: result == "valid",
            });
        }
    }
    cases
}

#[test]
fn wycheproof_ed25519_every_case_is_decided_as_wycheproof_says_by_jwk_verify() {
    let cases = wycheproof_cases();
    assert_eq!(cases.len(), 151);
    assert_eq!(cases.iter().filter(|c| c.valid).count(), 88);
    let mut disagreements = Vec::new();
    for case in &cases {
        let accepted = match jwk_of(&case.public_key) {
            Ok(jwk) => {
                // The group's own JWK spells the same key.
                assert_eq!(jwk.x(), case.jwk_x, "tc {}", case.id);
                jwk.verify(&case.message, &case.signature)
            }
            // A refused key refuses every signature made under it.
            Err(_) => false,
        };
        if accepted != case.valid {
            disagreements.push(format!("tc {} ({}, {:?})", case.id, case.comment, case.flags));
        }
    }
    assert!(
        disagreements.is_empty(),
        "decided differently from Wycheproof: {disagreements:#?}"
    );
}

#[test]
fn wycheproof_ed25519_keys_of_valid_cases_are_all_admitted() {
    for case in wycheproof_cases().iter().filter(|c| c.valid) {
        assert!(jwk_of(&case.public_key).is_ok(), "tc {}", case.id);
    }
}

fn hwk_request(x: &str, signature: &[u8]) -> Request<Body> {
    let mut request = get("/wycheproof");
    let headers = request.headers_mut();
    headers.insert(
        wire::SIGNATURE_INPUT,
        format!(r#"sig=("@method" "@authority" "@path" "signature-key");created={NOW}"#)
            .parse()
            .unwrap(),
    );
    headers.insert(
        wire::SIGNATURE,
        format!("sig=:{}:", STANDARD.encode(signature)).parse().unwrap(),
    );
    headers.insert(
        wire::SIGNATURE_KEY,
        format!(r#"sig=hwk;kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519""#)
            .parse()
            .unwrap(),
    );
    request
}

#[tokio::test]
async fn wycheproof_ed25519_signatures_through_the_hwk_path_are_refused_with_the_key_decision_of_jwk() {
    // Wycheproof signs its own messages, never our signature base, so through the layer
    // every case must be refused; what the layer must agree on with `Jwk::from_json` is
    // whether the key itself is admitted (`invalid_signature`) or not (`invalid_key`).
    let harness = Harness::new();
    for case in wycheproof_cases() {
        let expected = if jwk_of(&case.public_key).is_ok() {
            "invalid_signature"
        } else {
            "invalid_key"
        };
        let response = harness.send(hwk_request(&case.jwk_x, &case.signature)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "tc {}", case.id);
        let code = response.headers()["signature-error"].to_str().unwrap().to_owned();
        // A signature of the wrong length is refused before the key is even parsed.
        if case.signature.len() == 64 {
            assert_eq!(code, format!("error={expected}"), "tc {}", case.id);
        } else {
            assert_eq!(code, "error=invalid_signature", "tc {}", case.id);
        }
    }
    assert_eq!(harness.calls(), 0, "no Wycheproof signature reaches the handler");
}

#[tokio::test]
async fn hwk_path_positive_control_accepts_a_real_signature() {
    let harness = Harness::new();
    let mut request = get("/wycheproof");
    harness
        .agent
        .sign(&mut request, &tower_aauth::testing::KeySource::Hwk, NOW);
    let response = harness.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(harness.calls(), 1);
}
