//! Attack catalogue §1.13: request-body integrity (RFC 9530 `Content-Digest`). The
//! signature covers only the `Content-Digest` header; the layer hashes the body it actually
//! received. Each case is an `hwk` POST whose signature is valid over its headers.

mod support;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use support::attack::*;
use tower_aauth::testing::{KeySource, SignOptions};

/// RFC 9530 Appendix D: the representation and its two digests.
const HELLO: &[u8] = br#"{"hello": "world"}"#;
const HELLO_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
const HELLO_SHA512: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
/// `HELLO` gzip-encoded (mtime 0): what a Content-Encoding-confused client sends.
const HELLO_GZIP: [u8; 38] = [
    31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 171, 86, 202, 72, 205, 201, 201, 87, 178, 82, 80, 42, 207, 47, 202, 73, 81, 170,
    5, 0, 34, 174, 163, 134, 18, 0, 0, 0,
];

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post(format!("{RESOURCE}/data"))
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

/// A POST carrying `body` whose `Content-Digest` is `digest`, signed over the default
/// components plus `content-type` and `content-digest`.
fn signed_with_digest(h: &Harness, body: impl Into<Body>, digest: &str) -> Request<Body> {
    let mut request = post(body);
    request
        .headers_mut()
        .insert("content-digest", HeaderValue::from_str(digest).unwrap());
    let mut options = SignOptions::default();
    options
        .components
        .extend(["content-type".into(), "content-digest".into()]);
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    request
}

fn signed_body(h: &Harness, body: &'static [u8]) -> Request<Body> {
    let mut request = post(body);
    h.agent.sign_with_body(&mut request, body, &KeySource::Hwk, NOW);
    request
}

#[tokio::test]
async fn dig_00_positive_control_a_signed_body_with_its_digest_is_served() {
    let h = Harness::new();
    h.attack(signed_body(&h, br#"{"amount": 10}"#)).await.accepted();
}

#[tokio::test]
async fn dig_01_a_swapped_body_under_the_original_digest_is_invalid_signature() {
    let h = Harness::new();
    let original = signed_body(&h, br#"{"amount": 10}"#);
    let (parts, _) = original.into_parts();
    let swapped = Request::from_parts(parts, Body::from(r#"{"amount": 10000}"#));
    h.attack(swapped)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "the body does not match Content-Digest")
        .await;
}

#[tokio::test]
async fn dig_02_an_uncovered_digest_is_invalid_input_naming_both_body_components() {
    let h = Harness::with(|b| b.require_components(["content-type", "content-digest"]));
    let mut request = post(&br#"{"amount": 10}"#[..]);
    h.agent.sign(&mut request, &KeySource::Hwk, NOW);
    let headers = h.attack(request).await.without_fetch().refused("invalid_input").await;
    assert_eq!(
        headers["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-type" "content-digest")"#
    );
}

#[tokio::test]
async fn dig_02_a_covered_digest_that_is_missing_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed_body(&h, b"{}");
    request.headers_mut().remove("content-digest");
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "a covered field is absent")
        .await;
}

#[tokio::test]
async fn dig_03_only_weak_digest_algorithms_are_invalid_signature() {
    for digest in [
        "md5=:mZFLkyvTelC5g8XnyQrpOw==:",
        "sha=:vyGp6PvFo4RvsFtPoIWeCReyIC8=:",
        "unixsum=:MTIzNA==:",
        "unixcksum=:MTIzNA==:",
        "adler=:AAAAAQ==:",
        "crc32c=:AAAAAQ==:",
    ] {
        let h = Harness::new();
        h.attack(signed_with_digest(&h, HELLO, digest))
            .await
            .without_fetch()
            .refused_because("invalid_signature", "Content-Digest has no sha-256 or sha-512 member")
            .await;
    }
}

#[tokio::test]
async fn dig_04_a_right_sha256_beside_a_wrong_sha512_is_invalid_signature() {
    let h = Harness::new();
    let wrong_512 = format!("sha-512=:{}==:", "A".repeat(86));
    let digest = format!("{HELLO_SHA256}, {wrong_512}");
    h.attack(signed_with_digest(&h, HELLO, &digest))
        .await
        .without_fetch()
        .refused_because("invalid_signature", "the body does not match Content-Digest")
        .await;
}

#[tokio::test]
async fn dig_04_a_wrong_sha256_beside_a_right_sha512_is_invalid_signature() {
    let h = Harness::new();
    let digest = format!("sha-256=:{}=:, {HELLO_SHA512}", "A".repeat(43));
    h.attack(signed_with_digest(&h, HELLO, &digest))
        .await
        .without_fetch()
        .refused_because("invalid_signature", "the body does not match Content-Digest")
        .await;
}

#[tokio::test]
async fn dig_05_a_duplicate_digest_key_is_invalid_signature() {
    let h = Harness::new();
    let digest = format!("{HELLO_SHA256}, sha-256=:{}=:", "A".repeat(43));
    h.attack(signed_with_digest(&h, HELLO, &digest))
        .await
        .without_fetch()
        .refused_because("invalid_signature", "Content-Digest is not a valid dictionary")
        .await;
}

#[tokio::test]
async fn dig_05_a_key_repeated_across_two_signed_header_lines_is_invalid_signature() {
    // Signed over both lines (joined with ", "), so only the duplicate key can refuse it.
    let h = Harness::new();
    let mut request = post(HELLO);
    let headers = request.headers_mut();
    headers.append("content-digest", HeaderValue::from_static(HELLO_SHA256));
    let second = format!("sha-256=:{}=:", "A".repeat(43));
    headers.append("content-digest", HeaderValue::from_str(&second).unwrap());
    let mut options = SignOptions::default();
    options
        .components
        .extend(["content-type".into(), "content-digest".into()]);
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "Content-Digest is not a valid dictionary")
        .await;
}

/// A body of ready frames (data, then trailers).
struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn dig_06_a_digest_sent_only_in_trailers_is_invalid_signature() {
    // Trailers are not consulted: a covered Content-Digest must be a header field.
    let h = Harness::new();
    let mut request = signed_with_digest(&h, HELLO, HELLO_SHA256);
    request.headers_mut().remove("content-digest");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("content-digest", HeaderValue::from_static(HELLO_SHA256));
    let body = Body::new(Frames(
        [
            http_body::Frame::data(Bytes::from_static(HELLO)),
            http_body::Frame::trailers(trailers),
        ]
        .into(),
    ));
    let (parts, _) = request.into_parts();
    h.attack(Request::from_parts(parts, body))
        .await
        .without_fetch()
        .refused_because("invalid_signature", "a covered field is absent")
        .await;
}

#[tokio::test]
async fn dig_07_a_body_over_the_cap_is_413_before_hashing_it_all() {
    let h = Harness::with(|b| b.max_body_bytes(1024));
    let body: &'static [u8] = Box::leak(vec![b'a'; 64 * 1024].into_boxed_slice());
    let headers = h
        .attack(signed_body(&h, body))
        .await
        .without_fetch()
        .refused_with_status(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[http::header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn dig_08_the_rfc_9530_appendix_d_digests_are_accepted() {
    for digest in [HELLO_SHA256, HELLO_SHA512] {
        let h = Harness::new();
        h.attack(signed_with_digest(&h, HELLO, digest)).await.accepted();
    }
}

#[tokio::test]
async fn dig_08_a_gzip_body_under_the_digest_of_its_decoded_form_is_invalid_signature() {
    let h = Harness::new();
    let mut request = signed_with_digest(&h, HELLO_GZIP.to_vec(), HELLO_SHA256);
    request
        .headers_mut()
        .insert("content-encoding", HeaderValue::from_static("gzip"));
    h.attack(request)
        .await
        .without_fetch()
        .refused_because("invalid_signature", "the body does not match Content-Digest")
        .await;
}

#[tokio::test]
async fn dig_09_an_uncovered_content_type_is_invalid_input_when_bodies_must_be_described() {
    let h = Harness::with(|b| b.require_components(["content-type", "content-digest"]));
    let mut request = post(HELLO);
    request
        .headers_mut()
        .insert("content-digest", HeaderValue::from_static(HELLO_SHA256));
    let mut options = SignOptions::default();
    options.components.push("content-digest".into());
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    request
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/html"));
    let headers = h.attack(request).await.without_fetch().refused("invalid_input").await;
    let error = headers["signature-error"].to_str().unwrap();
    assert!(error.contains(r#""content-type""#), "{error}");
}
