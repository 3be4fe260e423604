//! First sight of a token: every request presents an auth token never seen before, so
//! the layer verifies the token's signature, its claims and the HTTP signature (two
//! Ed25519 verifications). Tokens are minted and requests signed outside the timed
//! loop. Goal: ≤ 2.2 × the limit measured in the same run.

mod common;

use std::cell::Cell;

use common::{Goal, Limit, Resource, benching, interleave, report, request_with};
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
    let first = resource.signed_headers(&KeySource::Jwt(resource.auth_token("data.read", u64::MAX)));
    assert_eq!(resource.status(&first), StatusCode::OK);
    assert_eq!(resource.aauth.cached_tokens(), 1);

    if common::profile(&limit, &mut |n| cold(n)) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("layer_cold_jwt");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
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
    }
}
