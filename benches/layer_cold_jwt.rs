//! First sight of a token: every request presents an auth token never seen before, so
//! the layer verifies the token's signature, its claims and the HTTP signature (two
//! Ed25519 verifications). Tokens are minted and requests signed outside the timed
//! loop. Goal: ≤ 2.2 × the limit measured in the same run.
//!
//! Also reported, without a goal: the ratio to the request's own floor, the two
//! `verify_strict` over the real messages (`common::TwoVerifications`), which are longer
//! than the limit's 200 bytes.

mod common;

use std::cell::Cell;

use common::{Goal, Limit, Resource, TwoVerifications, benching, interleave, report, request_with};
use http::StatusCode;
use tower_aauth::testing::KeySource;

fn main() {
    let limit = Limit::new();
    let resource = Resource::guarded();
    let next = Cell::new(0u64);
    let fresh = |_: u64| {
        let jti = next.get();
        next.set(jti + 1);
        let token = resource.auth_token("data.read", jti);
        request_with(resource.signed_headers(&KeySource::Jwt(token)))
    };
    let cold = |iters: u64| resource.run_with(iters, &fresh);
    let first_token = resource.auth_token("data.read", u64::MAX);
    let first = resource.signed_headers(&KeySource::Jwt(first_token.clone()));
    assert_eq!(resource.status(&first), StatusCode::OK);
    assert_eq!(resource.aauth.cached_tokens(), 1);
    // The floor cycles through as many distinct tokens and requests as the limit does.
    let floor_requests: Vec<(String, _)> = (0..common::DISTINCT_SIGNATURES as u64)
        .map(|k| {
            let token = resource.auth_token("data.read", u64::MAX - 1 - k);
            let headers = resource.signed_headers(&KeySource::Jwt(token.clone()));
            (token, headers)
        })
        .collect();
    let floor = TwoVerifications::new(&floor_requests);

    if common::profile_sides(&limit, &mut |n| cold(n), &mut [("floor", &mut |n| floor.run(n))]) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("layer_cold_jwt");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("two_verifications", |b| b.iter_custom(|iters| floor.run(iters)));
    group.bench_function("layer_cold_jwt", |b| b.iter_custom(cold));
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "layer_cold_jwt",
            "limit",
            interleave(|n| limit.run(n), cold),
            Goal::AtMost(2.2),
        );
        let (signing_input, base) = floor.lengths();
        report(
            &format!("two_verifications({signing_input},{base} B)"),
            "limit",
            interleave(|n| limit.run(n), |n| floor.run(n)),
            Goal::None,
        );
        report(
            "layer_cold_jwt",
            "two_verifications",
            interleave(|n| floor.run(n), cold),
            Goal::None,
        );
    }
}
