//! Every way the layer refuses the signature itself (headers, `Signature-Input`,
//! components, times, the signature bytes, the authority, the body). Each test asserts
//! the status, the exact `Signature-Error` code, `Cache-Control: no-store`, that the
//! handler never ran and, where several checks share a code, the fixed `detail` naming
//! the check that refused. Key and token refusals are in `layer_rejections_keys.rs`.
//!
//! Covered elsewhere, not repeated here: a future `created` under the strict profile
//! (`legacy_profile.rs`), a body that does not match `Content-Digest` and a flipped
//! byte in a `jwt`-scheme signature (`httpsig_vectors.rs`), replays (`replay.rs`).

mod common;

use axum::body::Body;
use common::*;
use http::{HeaderValue, Method, Request, StatusCode};
use tower_aauth::testing::{KeySource, SignOptions, TestAgent};

/// A `GET /data` signed with `hwk` at `NOW` by the harness agent.
fn signed(h: &Harness) -> Request<Body> {
    let mut request = get("/data");
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    request
}

/// A `GET /data` signed with `hwk` at `created` with `options`.
fn signed_with(h: &Harness, created: u64, options: &SignOptions) -> Request<Body> {
    let mut request = get("/data");
    h.agent.sign_with(&mut request, &KeySource::Hwk, created, options);
    request
}

fn set(request: &mut Request<Body>, name: &'static str, value: &str) {
    request
        .headers_mut()
        .insert(name, HeaderValue::from_str(value).expect("test header is valid"));
}

fn header(request: &Request<Body>, name: &str) -> String {
    request.headers()[name].to_str().unwrap().to_owned()
}

fn options(edit: impl FnOnce(&mut SignOptions)) -> SignOptions {
    let mut options = SignOptions::default();
    edit(&mut options);
    options
}

const TOGETHER: &str = "Signature-Input, Signature and Signature-Key must be sent together";
const NOT_A_DICTIONARY: &str = "Signature-Input is not a valid structured dictionary";

// --- the three headers ----------------------------------------------------------------

#[tokio::test]
async fn every_partial_set_of_the_three_signature_headers_is_invalid_signature() {
    let names = ["signature-input", "signature", "signature-key"];
    // Bit i set: header i is kept. 0 (unsigned) and 7 (complete) are not partial.
    for kept in 1..7u8 {
        let h = Harness::new();
        let mut request = signed(&h);
        for (i, name) in names.iter().enumerate() {
            if kept & (1 << i) == 0 {
                request.headers_mut().remove(*name);
            }
        }
        assert_refused_because(&h, h.send(request).await, "invalid_signature", TOGETHER).await;
    }
}

#[tokio::test]
async fn a_malformed_signature_input_is_invalid_signature() {
    let cases = [
        (r#"sig=("@method" "@authority""#, NOT_A_DICTIONARY),
        ("sig", "Signature-Input member is not an inner list"),
        ("sig=1", "Signature-Input member is not an inner list"),
        ("sig=(@method)", NOT_A_DICTIONARY),
        (
            r#"sig=(method "@authority" "@path" "signature-key");created=1730217600"#,
            "a component identifier is not a string",
        ),
        (
            r#"sig=("@method" "@authority" "@path" "signature-key");created="1730217600""#,
            "a signature parameter has the wrong type",
        ),
        (
            r#"sig=("@method" "@authority" "@path" "signature-key");created=-5"#,
            "a signature time is negative",
        ),
        (
            r#"sig=("@method" "@authority" "@path" "signature-key");created=1730217600;keyid=7"#,
            "a signature parameter has the wrong type",
        ),
    ];
    for (input, detail) in cases {
        let h = Harness::new();
        let mut request = signed(&h);
        set(&mut request, "signature-input", input);
        assert_refused_because(&h, h.send(request).await, "invalid_signature", detail).await;
    }
}

#[tokio::test]
async fn a_second_signature_label_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let input = header(&request, "signature-input");
    let extra = input.replacen("sig=", "sig2=", 1);
    set(&mut request, "signature-input", &format!("{input}, {extra}"));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "exactly one signature label is accepted",
    )
    .await;
}

#[tokio::test]
async fn a_label_repeated_on_one_line_is_invalid_signature() {
    // RFC 9651 would let the last member win; an appended duplicate must not.
    let h = Harness::new();
    let mut request = signed(&h);
    let input = header(&request, "signature-input");
    set(&mut request, "signature-input", &format!("{input}, {input}"));
    assert_refused_because(&h, h.send(request).await, "invalid_signature", NOT_A_DICTIONARY).await;
}

#[tokio::test]
async fn a_label_repeated_on_a_second_header_line_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let input = request.headers()["signature-input"].clone();
    request.headers_mut().append("signature-input", input);
    assert_refused_because(&h, h.send(request).await, "invalid_signature", NOT_A_DICTIONARY).await;
}

#[tokio::test]
async fn signature_and_signature_input_labels_that_differ_are_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let signature = header(&request, "signature").replacen("sig=", "other=", 1);
    set(&mut request, "signature", &signature);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "Signature has no member for the signed label",
    )
    .await;
}

#[tokio::test]
async fn a_signature_key_without_the_signed_label_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let key = header(&request, "signature-key").replacen("sig=", "other=", 1);
    set(&mut request, "signature-key", &key);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "Signature-Key has no member for the signed label",
    )
    .await;
}

#[tokio::test]
async fn a_signature_header_over_the_default_8_kib_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    // A legal, unselected Signature-Key member that pushes the field past 8 KiB.
    let key = header(&request, "signature-key");
    set(
        &mut request,
        "signature-key",
        &format!("{key}, pad=\"{}\"", "a".repeat(8 * 1024)),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a header field exceeds the size limit",
    )
    .await;
}

#[tokio::test]
async fn the_header_cap_is_configurable_and_applies_to_joined_lines() {
    let h = Harness::with(|b| b.max_header_bytes(300));
    let request = signed(&h);
    let key = request.headers()["signature-key"].clone();
    assert!(key.len() < 300, "one line fits");
    let mut request = request;
    request.headers_mut().append(
        "signature-key",
        HeaderValue::from_str(&format!("pad=\"{}\"", "a".repeat(200))).unwrap(),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a header field exceeds the size limit",
    )
    .await;
}

#[tokio::test]
async fn a_covered_field_over_the_header_cap_is_invalid_signature() {
    // Whatever a signature covers is hashed: it is bounded like the signature headers.
    let h = Harness::with(|b| b.max_header_bytes(1024));
    let mut request = get("/data");
    set(&mut request, "x-note", &"n".repeat(1025));
    let components = options(|o| o.components.push("x-note".into()));
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a header field exceeds the size limit",
    )
    .await;
}

#[tokio::test]
async fn non_ascii_in_a_covered_field_is_invalid_signature() {
    let h = Harness::new();
    let mut request = get("/data");
    set(&mut request, "x-note", "cafe");
    let components = options(|o| o.components.push("x-note".into()));
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
    request
        .headers_mut()
        .insert("x-note", HeaderValue::from_bytes("café".as_bytes()).unwrap());
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a covered field holds non-ASCII or control characters",
    )
    .await;
}

#[tokio::test]
async fn non_ascii_in_a_signature_header_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let key = header(&request, "signature-key");
    request.headers_mut().insert(
        "signature-key",
        HeaderValue::from_bytes(format!("{key}, x=\"é\"").as_bytes()).unwrap(),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a covered field holds non-ASCII or control characters",
    )
    .await;
}

// --- covered components -----------------------------------------------------------------

#[tokio::test]
async fn an_uncovered_required_component_is_invalid_input_listing_every_required_one() {
    for dropped in ["@method", "@authority", "@path", "signature-key"] {
        let h = Harness::new();
        let request = signed_with(&h, NOW, &options(|o| o.components.retain(|c| c != dropped)));
        let response = h.send(request).await;
        assert_eq!(
            response.headers()["signature-error"],
            r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key")"#,
            "without {dropped}"
        );
        let body = assert_refused(&h, response, "invalid_input").await;
        assert_eq!(
            body["required_input"],
            serde_json::json!(["@method", "@authority", "@path", "signature-key"])
        );
    }
}

#[tokio::test]
async fn a_configured_extra_component_joins_the_required_input_list() {
    let h = Harness::with(|b| b.require_components(["content-digest"]));
    let response = h.send(signed(&h)).await;
    assert_eq!(
        response.headers()["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-digest")"#
    );
    assert_refused(&h, response, "invalid_input").await;
}

#[tokio::test]
async fn an_uncovered_query_is_invalid_input_when_the_configuration_requires_it() {
    let h = Harness::with(|b| b.require_query_coverage(true));
    let mut request = get("/data?page=2");
    // TestAgent covers @query whenever there is one: re-sign without it by hand.
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let input = header(&request, "signature-input").replace(r#" "@query""#, "");
    set(&mut request, "signature-input", &input);
    let response = h.send(request).await;
    assert_eq!(
        response.headers()["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "@query")"#
    );
    assert_refused(&h, response, "invalid_input").await;
}

#[tokio::test]
async fn an_unknown_derived_component_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "@status""#);
    set(&mut request, "signature-input", &input);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "unknown derived component",
    )
    .await;
}

#[tokio::test]
async fn an_upper_case_component_name_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    set(&mut request, "x-note", "hello");
    let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "X-Note""#);
    set(&mut request, "signature-input", &input);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a component name is not a lower-case field name",
    )
    .await;
}

#[tokio::test]
async fn a_component_covered_twice_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "@method""#);
    set(&mut request, "signature-input", &input);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a component is covered twice",
    )
    .await;
}

// --- created and expires ------------------------------------------------------------------

#[tokio::test]
async fn a_signature_without_created_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let input = header(&request, "signature-input").replace(&format!(";created={NOW}"), "");
    set(&mut request, "signature-input", &input);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature has no created parameter",
    )
    .await;
}

#[tokio::test]
async fn a_signature_older_than_the_window_is_invalid_signature() {
    let h = Harness::new();
    let request = signed_with(&h, NOW - 61, &SignOptions::default());
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature is too old",
    )
    .await;
}

#[tokio::test]
async fn the_window_is_configurable() {
    let h = Harness::with(|b| b.signature_window(10));
    let request = signed_with(&h, NOW - 11, &SignOptions::default());
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature is too old",
    )
    .await;
}

#[tokio::test]
async fn an_expires_in_the_past_is_invalid_signature() {
    let h = Harness::new();
    let request = signed_with(
        &h,
        NOW - 10,
        &options(|o| o.extra_params = format!(";expires={}", NOW - 1)),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature has expired",
    )
    .await;
}

#[tokio::test]
async fn an_expires_before_created_is_invalid_signature() {
    // Even with our clock before both, a signature that expires before it exists is void.
    let h = Harness::new();
    let request = signed_with(
        &h,
        NOW + 30,
        &options(|o| o.extra_params = format!(";expires={}", NOW + 20)),
    );
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature has expired",
    )
    .await;
}

// --- the signature bytes ------------------------------------------------------------------

#[tokio::test]
async fn a_signature_of_the_wrong_length_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    // 63 bytes of standard base64.
    set(&mut request, "signature", &format!("sig=:{}:", "A".repeat(84)));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "an Ed25519 signature is 64 bytes",
    )
    .await;
}

#[tokio::test]
async fn a_flipped_byte_in_an_hwk_signature_is_invalid_signature() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let h = Harness::new();
    let mut request = signed(&h);
    let value = header(&request, "signature");
    let mut bytes = STANDARD
        .decode(value.trim_start_matches("sig=:").trim_end_matches(':'))
        .unwrap();
    bytes[17] ^= 0x01;
    set(&mut request, "signature", &format!("sig=:{}:", STANDARD.encode(bytes)));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn a_signature_by_another_key_than_the_hwk_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    let other = TestAgent::from_seed([9; 32]);
    let mut forged = get("/data");
    other.sign(&mut forged, &KeySource::Hwk, NOW);
    set(&mut request, "signature", &header(&forged, "signature"));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn an_alg_parameter_naming_hmac_does_not_change_the_ed25519_check() {
    // `alg` never selects the algorithm: the key does. An HMAC claim with a signature
    // that is not the hwk key's Ed25519 signature fails.
    let h = Harness::new();
    let hmac = options(|o| o.extra_params = r#";alg="hmac-sha256""#.into());
    let mut request = signed_with(&h, NOW, &hmac);
    let mut forged = get("/data");
    TestAgent::from_seed([9; 32]).sign_with(&mut forged, &KeySource::Hwk, NOW, &hmac);
    set(&mut request, "signature", &header(&forged, "signature"));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn a_base64url_signature_is_invalid_signature_when_refused_by_configuration() {
    let h = Harness::with(|b| b.refuse_base64url_signatures());
    // Pick a `created` whose signature actually uses the URL-safe alphabet.
    let request = (0..64)
        .map(|back| signed_with(&h, NOW - back, &options(|o| o.base64url = true)))
        .find(|r| header(r, "signature").contains(['-', '_']))
        .expect("some signature has a URL-safe character");
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "Signature is not a valid structured dictionary",
    )
    .await;
}

#[tokio::test]
async fn a_keyid_naming_another_key_is_invalid_signature() {
    let h = Harness::new();
    let other = TestAgent::from_seed([9; 32]).thumbprint();
    let request = signed_with(&h, NOW, &options(|o| o.extra_params = format!(r#";keyid="{other}""#)));
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "keyid names a different key than Signature-Key",
    )
    .await;
}

// --- authority --------------------------------------------------------------------------

#[tokio::test]
async fn a_host_this_resource_does_not_serve_is_invalid_signature() {
    // Correctly signed for the host it names: the authority itself is what is refused.
    let h = Harness::new();
    let mut request = Request::get("/data")
        .header("host", "other.example")
        .body(Body::empty())
        .unwrap();
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the request's authority is not served by this resource",
    )
    .await;
}

#[tokio::test]
async fn an_absolute_form_target_and_a_host_that_disagree_are_invalid_signature() {
    let h = Harness::new();
    let mut request = signed(&h);
    set(&mut request, "host", "other.example");
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "the request target and Host disagree",
    )
    .await;
}

// --- the body ---------------------------------------------------------------------------

fn post(body: &'static [u8]) -> Request<Body> {
    Request::post(format!("{RESOURCE}/data"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_covered_content_digest_that_is_absent_is_invalid_signature() {
    let h = Harness::new();
    let mut request = post(b"{}");
    h.agent.sign_with_body(&mut request, b"{}", &KeySource::Hwk, NOW);
    request.headers_mut().remove("content-digest");
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "a covered field is absent",
    )
    .await;
}

#[tokio::test]
async fn a_content_digest_with_only_weak_algorithms_is_invalid_signature() {
    let h = Harness::new();
    let mut request = post(b"{}");
    set(&mut request, "content-digest", "md5=:mZFLkyvTelC5g8XnyQrpOw==:");
    let components = options(|o| o.components.extend(["content-type".into(), "content-digest".into()]));
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
    assert_refused_because(
        &h,
        h.send(request).await,
        "invalid_signature",
        "Content-Digest has no sha-256 or sha-512 member",
    )
    .await;
}

#[tokio::test]
async fn a_required_content_digest_that_is_not_covered_is_invalid_input() {
    let h = Harness::with(|b| b.require_components(["content-digest"]));
    let mut request = post(b"{}");
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    assert_refused(&h, h.send(request).await, "invalid_input").await;
}

#[tokio::test]
async fn a_signed_body_over_the_cap_is_413_without_signature_error() {
    let h = Harness::with(|b| b.max_body_bytes(16));
    let body: &[u8] = br#"{"a":"0123456789abcdef"}"#;
    let mut request = post(body);
    h.agent.sign_with_body(&mut request, body, &KeySource::Hwk, NOW);
    let response = h.send(request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(h.calls(), 0, "the inner service must not run");
}

#[tokio::test]
async fn a_signed_body_at_the_cap_is_served() {
    let body: &[u8] = br#"{"a":"0123456789abcdef"}"#;
    let h = Harness::with(|b| b.max_body_bytes(body.len()));
    let mut request = post(body);
    h.agent.sign_with_body(&mut request, body, &KeySource::Hwk, NOW);
    assert_eq!(h.send(request).await.status(), StatusCode::OK);
    assert_eq!(h.calls(), 1);
}

// --- garbage ----------------------------------------------------------------------------

#[tokio::test]
async fn garbage_in_any_signature_header_is_a_401_never_a_panic_or_500() {
    let garbage = [
        "",
        ",",
        "=",
        "sig=",
        "sig=:",
        "sig=::",
        "sig=:!!!!:",
        "sig=()",
        "sig=(\"\")",
        "sig=(\"@method\";req)",
        "sig=(\"@method\");created=99999999999999999999",
        "sig=(\"@method\");created=1.5",
        "sig=hwk;kty=OKP",
        "sig=jwt;jwt=\"a.b.c\"",
        "sig=jwt;jwt=\"....\"",
        "sig=jwks_uri;id=\"\";dwk=\"\";kid=\"\"",
        "sig=(scheme=hwk",
        "\t",
        "sig=?1",
        "sig=%\"x\"",
        "sig=@12",
    ];
    for name in ["signature-input", "signature", "signature-key"] {
        for value in garbage {
            let h = Harness::new();
            let mut request = signed(&h);
            set(&mut request, name, value);
            let response = h.send(request).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}: {value:?}");
            assert_eq!(response.headers().get_all("signature-error").iter().count(), 1);
            assert_eq!(h.calls(), 0);
        }
    }
    // And with a method no one signs for.
    let h = Harness::new();
    let mut request = signed(&h);
    *request.method_mut() = Method::from_bytes(b"BREW").unwrap();
    assert_refused(&h, h.send(request).await, "invalid_signature").await;
}
