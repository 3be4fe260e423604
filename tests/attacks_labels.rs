//! Attack catalogue §1.8: labels, multiple signatures, stripping and downgrade. AAuth's
//! profile is one label, present in all three fields, naming one key.

mod support;

use axum::body::Body;
use http::{HeaderValue, Request};
use support::attack::*;
use tower_aauth::testing::{KeySource, SignOptions, TestAgent};

fn value(request: &Request<Body>, name: &str) -> String {
    request.headers()[name].to_str().unwrap().to_owned()
}

fn set(request: &mut Request<Body>, name: &'static str, value: &str) {
    request
        .headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
}

fn signed_with_label(h: &Harness, label: &str, source: &KeySource) -> Request<Body> {
    let mut request = get("/data");
    let options = SignOptions {
        label: label.into(),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, source, NOW, &options);
    request
}

#[tokio::test]
async fn lbl_01_every_partial_set_of_the_three_headers_is_invalid_signature() {
    let names = ["signature-input", "signature", "signature-key"];
    for kept in 1..7u8 {
        let h = Harness::new();
        let mut request = h.signed("/data", &KeySource::Hwk);
        for (i, name) in names.iter().enumerate() {
            if kept & (1 << i) == 0 {
                request.headers_mut().remove(*name);
            }
        }
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn lbl_02_labels_that_differ_between_the_fields_are_invalid_signature() {
    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let signature = value(&request, "signature").replacen("sig=", "sig2=", 1);
    set(&mut request, "signature", &signature);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;

    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let key = value(&request, "signature-key").replacen("sig=", "other=", 1);
    set(&mut request, "signature-key", &key);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn lbl_03_a_second_signature_is_refused_whichever_comes_first() {
    let h0 = Harness::new();
    let good = signed_with_label(&h0, "sig1", &KeySource::Hwk);
    let token = h0
        .access_server
        .auth_token(RESOURCE, &h0.agent.public_jwk(), "data.read", NOW);
    let forged = signed_with_label(&h0, "sig2", &KeySource::Jwt(token));
    let join = |a: &Request<Body>, b: &Request<Body>, name: &str| format!("{}, {}", value(a, name), value(b, name));
    for (first, second) in [(&good, &forged), (&forged, &good)] {
        let h = Harness::new();
        let mut request = get("/data");
        for name in ["signature-input", "signature", "signature-key"] {
            let joined = join(first, second, name);
            request.headers_mut().insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_str(&joined).unwrap(),
            );
        }
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
}

#[tokio::test]
async fn lbl_04_a_label_defined_twice_in_one_line_or_across_lines_is_invalid_signature() {
    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let input = value(&request, "signature-input");
    set(&mut request, "signature-input", &format!("{input}, {input}"));
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;

    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let input = value(&request, "signature-input");
    request
        .headers_mut()
        .append("signature-input", HeaderValue::from_str(&input).unwrap());
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn lbl_05_an_uncovered_signature_key_is_invalid_input_naming_it() {
    let h = Harness::new();
    let mut request = get("/data");
    let mut options = SignOptions::default();
    options.components.retain(|c| c != "signature-key");
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    let headers = h.attack(request).await.without_fetch().refused("invalid_input").await;
    assert!(value_of(&headers).contains(r#""signature-key""#));
}

fn value_of(headers: &http::HeaderMap) -> String {
    headers["signature-error"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn lbl_06_the_same_key_republished_under_another_scheme_breaks_the_covered_signature_key() {
    // Signed as hwk (signature-key covered), then the Signature-Key is swapped for a
    // jwks_uri naming an attacker-run identity that publishes the same public key.
    let h = Harness::new();
    let mut request = h.signed("/data", &KeySource::Hwk);
    let swapped = h
        .agent
        .signature_key_value(&KeySource::agent_jwks(AP, "agent-key-1"), "sig");
    set(&mut request, "signature-key", &swapped);
    h.attack(request).await.refused("invalid_signature").await;
}

#[tokio::test]
async fn lbl_07_unknown_or_unaccepted_schemes_are_unsupported_scheme_listing_the_accepted_set() {
    for scheme in ["x509", "jkt-jwt", "self-jwt", "cached", "foo"] {
        let h = Harness::new();
        let mut request = h.signed("/data", &KeySource::Hwk);
        set(&mut request, "signature-key", &format!("sig={scheme};x=\"1\""));
        let headers = h
            .attack(request)
            .await
            .without_fetch()
            .refused("unsupported_scheme")
            .await;
        assert_eq!(headers["accept-signature-scheme"], "jwt, jwks_uri, hwk");
    }
}

#[tokio::test]
async fn lbl_07_hwk_on_a_route_that_needs_an_auth_token_is_challenged_never_served() {
    let h = Harness::new();
    let request = h.signed("/data", &KeySource::Hwk);
    h.scoped_attack(request, &["data.read"]).await.challenged();
}

#[tokio::test]
async fn lbl_08_a_keyid_naming_another_key_is_invalid_signature() {
    let h = Harness::new();
    let other = TestAgent::from_seed([66; 32]);
    let mut request = get("/data");
    let options = SignOptions {
        extra_params: format!(";keyid=\"{}\"", other.thumbprint()),
        ..SignOptions::default()
    };
    h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}
