//! Every way the layer refuses the signature itself (headers, `Signature-Input`,
//! components, times, the signature bytes, the authority, the body), as tables: one
//! [`Refusal`] row per case, named by the behaviour it pins. Every row asserts the status,
//! the exact `Signature-Error` code, `Cache-Control: no-store`, that the handler never ran
//! and, where several checks share a code, the fixed `detail` naming the check that
//! refused (or the exact `Signature-Error` value, for `invalid_input`). Key and token
//! refusals are in `layer_rejections_keys.rs`.
//!
//! Covered elsewhere, not repeated here: a future `created` under the strict profile
//! (`legacy_profile.rs`), a body that does not match `Content-Digest` and a flipped
//! byte in a `jwt`-scheme signature (`httpsig_vectors.rs`), replays (`replay.rs`).

mod support;

use axum::body::Body;
use http::{HeaderValue, Method, Request, StatusCode};
use support::harness::*;
use tower_aauth::AAuthBuilder;
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

/// One refusal case: a resource configured by `config` receives `request(&harness)`.
struct Refusal {
    /// The behaviour the row pins (named in every failure message).
    behaviour: &'static str,
    config: fn(AAuthBuilder) -> AAuthBuilder,
    request: fn(&Harness) -> Request<Body>,
    code: &'static str,
    expect: Expect,
}

/// What a row asserts beyond the code, status, `no-store` and the handler not running.
enum Expect {
    /// The problem's fixed `detail`: which check refused.
    Detail(&'static str),
    /// The exact `Signature-Error` field value.
    Field(&'static str),
    /// Nothing more.
    Code,
}

use Expect::{Code, Detail, Field};

/// The default configuration.
fn default(builder: AAuthBuilder) -> AAuthBuilder {
    builder
}

/// Runs every row on a fresh harness.
async fn refuse_all(rows: &[Refusal]) {
    for row in rows {
        let h = Harness::with(row.config);
        let response = h.send((row.request)(&h)).await;
        let case = row.behaviour;
        if let Field(value) = row.expect {
            assert_eq!(response.headers()["signature-error"], value, "{case}");
        }
        let body = assert_refused_case(case, &h, response, row.code).await;
        if let Detail(detail) = row.expect {
            assert_eq!(body["detail"], detail, "{case}: refused by the wrong check");
        }
    }
}

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
async fn malformed_and_inconsistent_signature_headers_are_invalid_signature() {
    refuse_all(&[
        Refusal {
            behaviour: "a second signature label",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = header(&request, "signature-input");
                let extra = input.replacen("sig=", "sig2=", 1);
                set(&mut request, "signature-input", &format!("{input}, {extra}"));
                request
            },
            code: "invalid_signature",
            expect: Detail("exactly one signature label is accepted"),
        },
        Refusal {
            // RFC 9651 would let the last member win; an appended duplicate must not.
            behaviour: "a label repeated on one line",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = header(&request, "signature-input");
                set(&mut request, "signature-input", &format!("{input}, {input}"));
                request
            },
            code: "invalid_signature",
            expect: Detail(NOT_A_DICTIONARY),
        },
        Refusal {
            behaviour: "a label repeated on a second header line",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = request.headers()["signature-input"].clone();
                request.headers_mut().append("signature-input", input);
                request
            },
            code: "invalid_signature",
            expect: Detail(NOT_A_DICTIONARY),
        },
        Refusal {
            behaviour: "Signature and Signature-Input labels that differ",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let signature = header(&request, "signature").replacen("sig=", "other=", 1);
                set(&mut request, "signature", &signature);
                request
            },
            code: "invalid_signature",
            expect: Detail("Signature has no member for the signed label"),
        },
        Refusal {
            behaviour: "a Signature-Key without the signed label",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let key = header(&request, "signature-key").replacen("sig=", "other=", 1);
                set(&mut request, "signature-key", &key);
                request
            },
            code: "invalid_signature",
            expect: Detail("Signature-Key has no member for the signed label"),
        },
        Refusal {
            behaviour: "a signature header over the default 8 KiB",
            config: default,
            request: |h| {
                let mut request = signed(h);
                // A legal, unselected Signature-Key member that pushes the field past 8 KiB.
                let key = header(&request, "signature-key");
                set(
                    &mut request,
                    "signature-key",
                    &format!("{key}, pad=\"{}\"", "a".repeat(8 * 1024)),
                );
                request
            },
            code: "invalid_signature",
            expect: Detail("a header field exceeds the size limit"),
        },
        Refusal {
            behaviour: "the header cap is configurable and applies to joined lines",
            config: |b| b.max_header_bytes(300),
            request: |h| {
                let mut request = signed(h);
                let key = request.headers()["signature-key"].clone();
                assert!(key.len() < 300, "one line fits");
                request.headers_mut().append(
                    "signature-key",
                    HeaderValue::from_str(&format!("pad=\"{}\"", "a".repeat(200))).unwrap(),
                );
                request
            },
            code: "invalid_signature",
            expect: Detail("a header field exceeds the size limit"),
        },
        Refusal {
            // Whatever a signature covers is hashed: it is bounded like the signature headers.
            behaviour: "a covered field over the header cap",
            config: |b| b.max_header_bytes(1024),
            request: |h| {
                let mut request = get("/data");
                set(&mut request, "x-note", &"n".repeat(1025));
                let components = options(|o| o.components.push("x-note".into()));
                h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
                request
            },
            code: "invalid_signature",
            expect: Detail("a header field exceeds the size limit"),
        },
        Refusal {
            behaviour: "non-ASCII in a covered field",
            config: default,
            request: |h| {
                let mut request = get("/data");
                set(&mut request, "x-note", "cafe");
                let components = options(|o| o.components.push("x-note".into()));
                h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
                request
                    .headers_mut()
                    .insert("x-note", HeaderValue::from_bytes("café".as_bytes()).unwrap());
                request
            },
            code: "invalid_signature",
            expect: Detail("a covered field holds non-ASCII or control characters"),
        },
        Refusal {
            behaviour: "non-ASCII in a signature header",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let key = header(&request, "signature-key");
                request.headers_mut().insert(
                    "signature-key",
                    HeaderValue::from_bytes(format!("{key}, x=\"é\"").as_bytes()).unwrap(),
                );
                request
            },
            code: "invalid_signature",
            expect: Detail("a covered field holds non-ASCII or control characters"),
        },
    ])
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
async fn components_the_configuration_requires_or_cannot_read_are_refused() {
    refuse_all(&[
        Refusal {
            behaviour: "a configured extra component joins the required-input list",
            config: |b| b.require_components(["content-digest"]),
            request: signed,
            code: "invalid_input",
            expect: Field(
                r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-digest")"#,
            ),
        },
        Refusal {
            behaviour: "an uncovered query when the configuration requires its coverage",
            config: |b| b.require_query_coverage(true),
            request: |h| {
                let mut request = get("/data?page=2");
                // TestAgent covers @query whenever there is one: re-sign without it by hand.
                h.agent.sign(&mut request, &KeySource::Hwk, NOW);
                let input = header(&request, "signature-input").replace(r#" "@query""#, "");
                set(&mut request, "signature-input", &input);
                request
            },
            code: "invalid_input",
            expect: Field(
                r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "@query")"#,
            ),
        },
        Refusal {
            behaviour: "an unknown derived component",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "@status""#);
                set(&mut request, "signature-input", &input);
                request
            },
            code: "invalid_signature",
            expect: Detail("unknown derived component"),
        },
        Refusal {
            behaviour: "an upper-case component name",
            config: default,
            request: |h| {
                let mut request = signed(h);
                set(&mut request, "x-note", "hello");
                let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "X-Note""#);
                set(&mut request, "signature-input", &input);
                request
            },
            code: "invalid_signature",
            expect: Detail("a component name is not a lower-case field name"),
        },
        Refusal {
            behaviour: "a component covered twice",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = header(&request, "signature-input").replace(r#""@path""#, r#""@path" "@method""#);
                set(&mut request, "signature-input", &input);
                request
            },
            code: "invalid_signature",
            expect: Detail("a component is covered twice"),
        },
    ])
    .await;
}

#[tokio::test]
async fn signatures_without_created_too_old_or_expired_are_invalid_signature() {
    refuse_all(&[
        Refusal {
            behaviour: "a signature without created",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let input = header(&request, "signature-input").replace(&format!(";created={NOW}"), "");
                set(&mut request, "signature-input", &input);
                request
            },
            code: "invalid_signature",
            expect: Detail("the signature has no created parameter"),
        },
        Refusal {
            behaviour: "a signature older than the window",
            config: default,
            request: |h| signed_with(h, NOW - 61, &SignOptions::default()),
            code: "invalid_signature",
            expect: Detail("the signature is too old"),
        },
        Refusal {
            behaviour: "the window is configurable",
            config: |b| b.signature_window(10),
            request: |h| signed_with(h, NOW - 11, &SignOptions::default()),
            code: "invalid_signature",
            expect: Detail("the signature is too old"),
        },
        Refusal {
            behaviour: "an expires in the past",
            config: default,
            request: |h| {
                signed_with(
                    h,
                    NOW - 10,
                    &options(|o| o.extra_params = format!(";expires={}", NOW - 1)),
                )
            },
            code: "invalid_signature",
            expect: Detail("the signature has expired"),
        },
        Refusal {
            // Even with our clock before both, a signature that expires before it exists is void.
            behaviour: "an expires before created",
            config: default,
            request: |h| {
                signed_with(
                    h,
                    NOW + 30,
                    &options(|o| o.extra_params = format!(";expires={}", NOW + 20)),
                )
            },
            code: "invalid_signature",
            expect: Detail("the signature has expired"),
        },
    ])
    .await;
}

#[tokio::test]
async fn signature_bytes_that_do_not_verify_are_invalid_signature() {
    refuse_all(&[
        Refusal {
            behaviour: "a signature of the wrong length",
            config: default,
            request: |h| {
                let mut request = signed(h);
                // 63 bytes of standard base64.
                set(&mut request, "signature", &format!("sig=:{}:", "A".repeat(84)));
                request
            },
            code: "invalid_signature",
            expect: Detail("an Ed25519 signature is 64 bytes"),
        },
        Refusal {
            behaviour: "a flipped byte in an hwk signature",
            config: default,
            request: |h| {
                use base64::Engine;
                use base64::engine::general_purpose::STANDARD;
                let mut request = signed(h);
                let value = header(&request, "signature");
                let mut bytes = STANDARD
                    .decode(value.trim_start_matches("sig=:").trim_end_matches(':'))
                    .unwrap();
                bytes[17] ^= 0x01;
                set(&mut request, "signature", &format!("sig=:{}:", STANDARD.encode(bytes)));
                request
            },
            code: "invalid_signature",
            expect: Detail("the signature does not verify"),
        },
        Refusal {
            behaviour: "a signature by another key than the hwk",
            config: default,
            request: |h| {
                let mut request = signed(h);
                let other = TestAgent::from_seed([9; 32]);
                let mut forged = get("/data");
                other.sign(&mut forged, &KeySource::Hwk, NOW);
                set(&mut request, "signature", &header(&forged, "signature"));
                request
            },
            code: "invalid_signature",
            expect: Detail("the signature does not verify"),
        },
        Refusal {
            // `alg` never selects the algorithm: the key does. An HMAC claim with a signature
            // that is not the hwk key's Ed25519 signature fails.
            behaviour: "an alg parameter naming HMAC does not change the Ed25519 check",
            config: default,
            request: |h| {
                let hmac = options(|o| o.extra_params = r#";alg="hmac-sha256""#.into());
                let mut request = signed_with(h, NOW, &hmac);
                let mut forged = get("/data");
                TestAgent::from_seed([9; 32]).sign_with(&mut forged, &KeySource::Hwk, NOW, &hmac);
                set(&mut request, "signature", &header(&forged, "signature"));
                request
            },
            code: "invalid_signature",
            expect: Detail("the signature does not verify"),
        },
        Refusal {
            behaviour: "a base64url signature when the configuration refuses them",
            config: |b| b.refuse_base64url_signatures(),
            request: |h| {
                // Pick a `created` whose signature actually uses the URL-safe alphabet.
                (0..64)
                    .map(|back| signed_with(h, NOW - back, &options(|o| o.base64url = true)))
                    .find(|r| header(r, "signature").contains(['-', '_']))
                    .expect("some signature has a URL-safe character")
            },
            code: "invalid_signature",
            expect: Detail("Signature is not a valid structured dictionary"),
        },
        Refusal {
            behaviour: "a keyid naming another key",
            config: default,
            request: |h| {
                let other = TestAgent::from_seed([9; 32]).thumbprint();
                signed_with(h, NOW, &options(|o| o.extra_params = format!(r#";keyid="{other}""#)))
            },
            code: "invalid_signature",
            expect: Detail("keyid names a different key than Signature-Key"),
        },
    ])
    .await;
}

#[tokio::test]
async fn an_authority_this_resource_does_not_serve_is_invalid_signature() {
    refuse_all(&[
        Refusal {
            // Correctly signed for the host it names: the authority itself is what is refused.
            behaviour: "a host this resource does not serve",
            config: default,
            request: |h| {
                let mut request = Request::get("/data")
                    .header("host", "other.example")
                    .body(Body::empty())
                    .unwrap();
                h.agent.sign(&mut request, &KeySource::Hwk, NOW);
                request
            },
            code: "invalid_signature",
            expect: Detail("the request's authority is not served by this resource"),
        },
        Refusal {
            behaviour: "an absolute-form target and a Host that disagree",
            config: default,
            request: |h| {
                let mut request = signed(h);
                set(&mut request, "host", "other.example");
                request
            },
            code: "invalid_signature",
            expect: Detail("the request target and Host disagree"),
        },
    ])
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
async fn a_body_whose_digest_is_missing_weak_or_uncovered_is_refused() {
    refuse_all(&[
        Refusal {
            behaviour: "a covered Content-Digest that is absent",
            config: default,
            request: |h| {
                let mut request = post(b"{}");
                h.agent.sign_with_body(&mut request, b"{}", &KeySource::Hwk, NOW);
                request.headers_mut().remove("content-digest");
                request
            },
            code: "invalid_signature",
            expect: Detail("a covered field is absent"),
        },
        Refusal {
            behaviour: "a Content-Digest with only weak algorithms",
            config: default,
            request: |h| {
                let mut request = post(b"{}");
                set(&mut request, "content-digest", "md5=:mZFLkyvTelC5g8XnyQrpOw==:");
                let components = options(|o| o.components.extend(["content-type".into(), "content-digest".into()]));
                h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &components);
                request
            },
            code: "invalid_signature",
            expect: Detail("Content-Digest has no sha-256 or sha-512 member"),
        },
        Refusal {
            behaviour: "a required Content-Digest that is not covered",
            config: |b| b.require_components(["content-digest"]),
            request: |h| {
                let mut request = post(b"{}");
                h.agent.sign(&mut request, &KeySource::Hwk, NOW);
                request
            },
            code: "invalid_input",
            expect: Code,
        },
    ])
    .await;
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
