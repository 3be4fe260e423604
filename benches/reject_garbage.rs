//! Malformed signature headers are refused before anything expensive: each request is
//! one of a rotating set of broken requests, all answered `401` with `Signature-Error`.
//! Goal: ≤ 0.05 × the Ed25519 limit measured in the same run.

mod common;

use common::{Goal, Limit, Resource, benching, interleave, report, request_with};
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_aauth::testing::KeySource;

fn main() {
    let limit = Limit::new();
    let resource = Resource::new();
    let good = resource.signed_headers(&KeySource::Hwk);
    let broken = |name: &'static str, value: &str| {
        let mut headers = good.clone();
        headers.insert(name, HeaderValue::from_str(value).expect("ASCII"));
        headers
    };
    let mut missing_key = good.clone();
    missing_key.remove("signature-key");
    let cases: Vec<(&str, HeaderMap)> = vec![
        (
            "unparseable Signature-Input",
            broken("signature-input", "sig=(\"@method\" \"@path"),
        ),
        (
            "two labels",
            broken("signature-input", "a=(\"@method\");created=1, b=(\"@path\");created=1"),
        ),
        ("missing Signature-Key", missing_key),
        (
            "too few components",
            broken("signature-input", "sig=(\"@method\");created=1730217600"),
        ),
        (
            "stale created",
            broken(
                "signature-input",
                "sig=(\"@method\" \"@authority\" \"@path\" \"signature-key\");created=1000",
            ),
        ),
        ("short signature", broken("signature", "sig=:AAAA:")),
        ("unknown scheme", broken("signature-key", "sig=nope;x=\"1\"")),
    ];
    for (what, headers) in &cases {
        assert_eq!(resource.status(headers), StatusCode::UNAUTHORIZED, "{what}");
    }
    let garbage = |iters: u64| resource.run_with(iters, |i| request_with(cases[i as usize % cases.len()].1.clone()));

    if common::profile(&limit, &mut |n| garbage(n)) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("reject_garbage");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("reject_garbage", |b| b.iter_custom(garbage));
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "reject_garbage",
            "limit",
            interleave(|n| limit.run(n), garbage),
            Goal::AtMost(0.05),
        );
    }
}
