//! Property: a request signed by an agent verifies through the layer whatever its method,
//! path, query and covered headers; changing any single byte of a covered component
//! (method, path, query or a covered header value) makes it `invalid_signature`.

mod support;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use proptest::prelude::*;
use proptest::sample::{Index, subsequence};
use support::harness::*;
use tower_aauth::replay::{ReplayOptions, ReplayProtection};
use tower_aauth::testing::{KeySource, SignOptions};

/// Characters allowed unescaped in a path segment or a query (RFC 3986 pchar minus `%`).
const URI_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@";
const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "QUERY", "X-CUSTOM",
];
const HEADER_NAMES: [&str; 6] = ["x-a", "x-b", "content-type", "accept", "x-request-id", "x-trace"];

#[derive(Debug, Clone)]
struct Case {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl Case {
    fn request(&self) -> Request<Body> {
        let query = self.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        let mut request = Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).unwrap())
            .uri(format!("{RESOURCE}{}{query}", self.path))
            .body(Body::empty())
            .unwrap();
        for (name, value) in &self.headers {
            request
                .headers_mut()
                .insert(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        request
    }

    fn options(&self) -> SignOptions {
        let mut options = SignOptions::default();
        options
            .components
            .extend(self.headers.iter().map(|(name, _)| (*name).to_owned()));
        options
    }
}

fn uri_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(URI_CHARS), 1..max)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

/// Visible ASCII without leading or trailing whitespace (which the base trims).
fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,24}[!-~])?"
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(&METHODS[..]),
        proptest::collection::vec(uri_text(12), 1..4),
        proptest::option::of(uri_text(24)),
        subsequence(&HEADER_NAMES[..], 0..=3),
        proptest::collection::vec(header_value(), 3),
    )
        .prop_map(|(method, segments, query, names, values)| Case {
            method: method.to_owned(),
            path: format!("/{}", segments.join("/")),
            query,
            headers: names.into_iter().zip(values).collect(),
        })
}

/// Which covered component to change, and where.
#[derive(Debug, Clone)]
enum Target {
    Method,
    Path,
    Query,
    Header(Index),
}

fn replace_at(text: &str, at: Index, pool: &[u8], pick: Index) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = at.index(bytes.len());
    let choices: Vec<u8> = pool.iter().copied().filter(|&b| b != bytes[i]).collect();
    bytes[i] = *pick.get(&choices);
    String::from_utf8(bytes).unwrap()
}

/// `case` with one byte of one covered component changed; `None` when the case has no
/// such component (no query, no covered header).
fn mutate(case: &Case, target: &Target, at: Index, pick: Index) -> Option<Case> {
    let mut changed = case.clone();
    match target {
        Target::Method => {
            changed.method = replace_at(&case.method, at, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-", pick);
        }
        Target::Path => {
            // Byte 0 is the leading `/`, which is not free to change.
            let tail = replace_at(&case.path[1..], at, URI_CHARS, pick);
            changed.path = format!("/{tail}");
        }
        Target::Query => changed.query = Some(replace_at(case.query.as_ref()?, at, URI_CHARS, pick)),
        Target::Header(which) => {
            if case.headers.is_empty() {
                return None;
            }
            let visible: Vec<u8> = (b'!'..=b'~').collect();
            let (_, value) = &mut changed.headers[which.index(case.headers.len())];
            *value = replace_at(value, at, &visible, pick);
        }
    }
    Some(changed)
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Method),
        Just(Target::Path),
        Just(Target::Query),
        any::<Index>().prop_map(Target::Header),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn harness() -> Harness {
    // Cases may repeat while shrinking; replays are not what this property is about.
    Harness::with(|b| b.replay(ReplayOptions::new().protection(ReplayProtection::Off)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_signed_request_verifies_and_any_changed_covered_byte_fails(
        case in case(),
        target in target(),
        at in any::<Index>(),
        pick in any::<Index>(),
    ) {
        let rt = runtime();
        let h = harness();
        let options = case.options();

        let mut request = case.request();
        h.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
        let response = rt.block_on(h.send(request));
        prop_assert_eq!(response.status(), StatusCode::OK, "{:?}", case);
        prop_assert_eq!(h.calls(), 1);

        if let Some(changed) = mutate(&case, &target, at, pick) {
            // Signed over the original, sent with the change.
            let mut original = case.request();
            h.agent.sign_with(&mut original, &KeySource::Hwk, NOW, &options);
            let mut tampered = changed.request();
            for name in ["signature-input", "signature", "signature-key"] {
                let value = original.headers()[name].clone();
                tampered.headers_mut().insert(name, value);
            }
            let response = rt.block_on(h.send(tampered));
            prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{:?} -> {:?}", case, changed);
            prop_assert_eq!(response.headers()["signature-error"].to_str().unwrap(), "error=invalid_signature");
            prop_assert_eq!(h.calls(), 1, "the tampered request never reached the handler");
            // The check that refused, from the problem body (a HEAD response has none).
            if changed.method != "HEAD" {
                let body = rt.block_on(body_json(response));
                prop_assert_eq!(body["detail"].as_str(), Some("the signature does not verify"), "{:?}", changed);
            }
        }
    }
}
